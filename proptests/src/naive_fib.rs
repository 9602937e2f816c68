//! A deliberately simple FIB model: a flat list of candidates, scanned linearly.
//!
//! Route selection and longest-prefix match written the obvious way, so the
//! real FIB (RIB + poptrie) can be checked against it on random tables.

use std::net::IpAddr;

use ipnet::IpNet;
use router_core::fib::{Nexthop, Protocol};

/// One candidate route in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NaiveRoute {
    /// Destination prefix (host bits cleared).
    pub prefix: IpNet,
    /// Source protocol.
    pub protocol: Protocol,
    /// Administrative distance.
    pub distance: u8,
    /// Metric.
    pub metric: u32,
    /// Nexthops, sorted.
    pub nexthops: Vec<Nexthop>,
}

/// The model: every candidate in insertion order.
#[derive(Clone, Debug, Default)]
pub struct NaiveFib {
    routes: Vec<NaiveRoute>,
}

impl NaiveFib {
    /// Add or replace the candidate of the same prefix, protocol and distance.
    pub fn insert(&mut self, mut route: NaiveRoute) {
        route.prefix = route.prefix.trunc();
        route.nexthops.sort();
        route.nexthops.dedup();
        self.remove(route.prefix, route.protocol, route.distance);
        self.routes.push(route);
    }

    /// Remove the candidate of this prefix, protocol and distance.
    pub fn remove(&mut self, prefix: IpNet, protocol: Protocol, distance: u8) {
        let prefix = prefix.trunc();
        self.routes
            .retain(|r| !(r.prefix == prefix && r.protocol == protocol && r.distance == distance));
    }

    /// The winning candidate of exactly `prefix`: lowest (distance, metric, protocol).
    pub fn winner(&self, prefix: IpNet) -> Option<&NaiveRoute> {
        self.routes
            .iter()
            .filter(|r| r.prefix == prefix)
            .min_by_key(|r| (r.distance, r.metric, r.protocol))
    }

    /// The nexthops of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&[Nexthop]> {
        let best = self
            .routes
            .iter()
            .filter(|r| r.prefix.contains(&addr))
            .map(|r| r.prefix)
            .max_by_key(|p| p.prefix_len())?;
        self.winner(best).map(|r| r.nexthops.as_slice())
    }
}
