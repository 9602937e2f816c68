//! Simulated hosts: router-core forwarding plus smoltcp for the host's own
//! traffic, sans-IO and driven by `(now, input)`.
//!
//! - [`host`]: [`Host`], its ports, tables, slow path and counters;
//! - [`device`]: the in-memory IP device under the host's smoltcp interface;
//! - [`icmp`]: the ICMP errors the host sends (time exceeded, unreachable);
//! - [`apps`]: `whoami` HTTP server, `curl`, `ping` and a BGP speaker on the
//!   host's sockets (the speaker's routes go into the host's FIB).
//!
//! A driver (the simulator) hands each received frame to [`Host::receive`],
//! calls [`Host::poll`] to get frames to send, and asks [`Host::poll_at`] when
//! to poll again. Nothing here reads a clock or OS randomness: time comes in as
//! smoltcp `Instant`s, randomness from [`HostConfig::seed`]. The "deliver locally
//! or forward" decision is router-core's, never smoltcp's.
//!
//! Two hosts on one cable, driven by hand:
//!
//! ```
//! use nexthop_netstack::{Duration, Host, HostConfig, Instant, PingOptions, PortSpec};
//! use smoltcp::wire::EthernetAddress;
//!
//! let host = |name: &str, n: u8| {
//!     let mut c = HostConfig::new(name);
//!     let addr = format!("10.0.0.{n}/24").parse().unwrap();
//!     c.ports = vec![PortSpec::new("eth0", EthernetAddress([2, 0, 0, 0, 0, n]), vec![addr])];
//!     Host::new(c).unwrap()
//! };
//! let mut hosts = [host("a", 1), host("b", 2)];
//! let ping = hosts[0].ping(Instant::ZERO, "10.0.0.2".parse().unwrap(), PingOptions::default());
//! let mut now = Instant::ZERO;
//! while now < Instant::from_secs(3) {
//!     for i in 0..2 {
//!         for (port, frame) in hosts[i].poll(now) {
//!             hosts[1 - i].receive(now, port, &frame); // a zero-latency cable
//!         }
//!     }
//!     now += Duration::from_millis(1);
//! }
//! assert!(hosts[0].ping_report(ping).unwrap().all_replied());
//! ```

pub mod apps;
pub mod device;
pub mod host;
pub mod icmp;

pub use apps::{
    CurlError, CurlId, CurlOptions, CurlResult, HttpResponse, PingError, PingId, PingOptions,
    PingReply, PingReport,
};
pub use host::{ConfigError, Counters, Host, HostConfig, PortSpec};
pub use router_core::PortId;
pub use smoltcp::time::{Duration, Instant};

#[cfg(test)]
mod tests;
