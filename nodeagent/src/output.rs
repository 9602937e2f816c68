//! `bgp peers`, `bgp routes` and `l2-announce` tables: router-core's
//! [`router_core::cilium::table`], shared with the simulator.

pub use router_core::cilium::table::{go_duration, l2_announce, peers, routes, tabulate};
