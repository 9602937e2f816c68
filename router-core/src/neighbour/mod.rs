//! Neighbours: resolving nexthop IP addresses to link-layer addresses.
//!
//! `table` is the per-host neighbour state machine (ARP now, NDP-ready: keys
//! are `IpAddr`); `arp` and `ndp` decide which ARP requests and IPv6 neighbour
//! solicitations a port answers and build the frames. Forwarding decisions that
//! use the table live in the datapath; when to announce an address is
//! `cilium::l2announce`'s.

pub mod arp;
pub mod ndp;
pub mod table;

pub use table::{Config, Entry, Event, Output, State, Table};
