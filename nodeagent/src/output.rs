//! `bgp peers` and `bgp routes` tables: router-core's
//! [`router_core::cilium::table`], shared with the simulator.

pub use router_core::cilium::table::{go_duration, peers, routes, tabulate};
