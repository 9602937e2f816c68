//! Applications on the host's own stack: sans-IO, polled with the host.
//!
//! - [`http_server`]: the `whoami` HTTP server;
//! - [`curl`]: one HTTP GET with curl's timeouts;
//! - [`ping`]: ICMP echo with TTL and RTT per reply;
//! - [`bgp`]: a BGP speaker (sessions and RIB) over the host's TCP.
//!
//! [`Apps`] owns the running instances and their ids; the host owns the sockets
//! they use and decides addresses and ports.

pub mod bgp;
pub mod curl;
pub mod http_server;
pub mod ping;

use std::collections::BTreeMap;

use smoltcp::iface::SocketSet;
use smoltcp::time::Instant;

pub use curl::{CurlError, CurlOptions, CurlResult, HttpClient, HttpResponse};
pub use http_server::HttpServer;
pub use ping::{Ping, PingError, PingOptions, PingReply, PingReport};

/// Names one `curl` run of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CurlId(pub u32);

/// Names one `ping` run of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PingId(pub u32);

/// The applications running on one host.
#[derive(Debug, Default)]
pub struct Apps {
    /// HTTP servers, one per TCP port.
    pub servers: BTreeMap<u16, HttpServer>,
    /// `curl` runs, running or done.
    pub curls: BTreeMap<CurlId, HttpClient>,
    /// `ping` runs, running or done.
    pub pings: BTreeMap<PingId, Ping>,
}

impl Apps {
    /// Poll every application at `now`. Returns whether any of them acted.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let mut acted = false;
        for s in self.servers.values_mut() {
            acted |= s.poll(sockets);
        }
        for c in self.curls.values_mut() {
            acted |= c.poll(now, sockets);
        }
        for p in self.pings.values_mut() {
            acted |= p.poll(now, sockets);
        }
        acted
    }

    /// The earliest timer of any application.
    pub fn poll_at(&self) -> Option<Instant> {
        let curls = self.curls.values().filter_map(HttpClient::poll_at);
        let pings = self.pings.values().filter_map(Ping::poll_at);
        curls.chain(pings).min()
    }
}
