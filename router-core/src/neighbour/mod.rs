//! Neighbours: resolving nexthop IP addresses to link-layer addresses.
//!
//! `table` is the per-host neighbour state machine (ARP now, NDP-ready: keys
//! are `IpAddr`); `arp` decides which ARP requests a port answers and builds
//! the frames. Forwarding decisions that use the table live in the datapath.

pub mod arp;
pub mod table;

pub use table::{Config, Entry, Event, Output, State, Table};
