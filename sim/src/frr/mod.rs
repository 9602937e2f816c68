//! The FRR-style ToR router: its configuration language ([`config`]),
//! `router bgp` run from it on the router's BGP speaker ([`bgpd`]) and its
//! `show` commands ([`vtysh`]).

pub mod bgpd;
pub mod config;
pub mod vtysh;
