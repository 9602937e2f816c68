//! Simulated hosts: router-core forwarding plus smoltcp for the host's own
//! traffic, sans-IO and driven by `(now, input)`.
//!
//! - [`host`]: [`Host`], its ports, tables, slow path and counters;
//! - [`device`]: the in-memory IP device under the host's smoltcp interface;
//! - [`icmp`]: the ICMP errors the host sends (time exceeded, unreachable);
//! - [`apps`]: `whoami` HTTP server, `curl` and `ping` on the host's sockets.
//!
//! A driver (the simulator) hands each received frame to [`Host::receive`],
//! calls [`Host::poll`] to get frames to send, and asks [`Host::poll_at`] when
//! to poll again. Nothing here reads a clock or OS randomness: time comes in as
//! smoltcp `Instant`s, randomness from [`HostConfig::seed`]. The "deliver locally
//! or forward" decision is router-core's, never smoltcp's.

pub mod apps;
pub mod device;
pub mod host;
pub mod icmp;

pub use apps::{
    CurlError, CurlId, CurlOptions, CurlResult, HttpResponse, PingError, PingId, PingOptions,
    PingReply, PingReport,
};
pub use host::{ConfigError, Counters, Host, HostConfig, PortSpec};

#[cfg(test)]
mod tests;
