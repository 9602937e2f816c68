//! nexthop's routing core: the tables and state machines that both runtimes
//! (the simulator and the node agent with its eBPF datapath) share.
//!
//! Sans-IO: nothing here reads a clock, a socket or OS randomness. Time comes
//! in as [`smoltcp::time::Instant`] values, randomness as seeds, and every
//! state machine answers `(now, input)` with outputs the caller carries out.
//!
//! - [`bgp`]: BGP-4: wire codec, session state machine, RIBs and decision process.
//! - `cilium` (feature `serde`): Cilium's BGP control-plane objects and
//!   which instances, peers and prefixes they give a node.
//! - [`fib`]: RIB and FIB, longest-prefix match, nexthop groups.
//! - [`lpm`]: the poptrie layout and lookup walk (shared with eBPF).
//! - [`ecmp`]: flow hashing and resilient member selection.
//! - [`hash`]: FNV-1a and SplitMix64, for stable seed-derived numbers.
//! - [`neighbour`]: the ARP neighbour table and the ARP responder.
//! - [`datapath`]: the reference packet pipeline, exit reasons, checksums.
//! - [`flow`]: flow events (Hubble's observation points, verdicts, drop
//!   reasons) and `hubble observe`'s filters and layouts.
//! - [`ipam`]: LB-IPAM (LoadBalancer addresses from pools).
//! - [`lease`]: a lease elector (one holder at a time) over a shared store.
//! - [`service`]: service load-balancing (Cilium's kube-proxy replacement):
//!   frontends, backends, Maglev, conntrack, NAT.
//! - [`wire`]: VXLAN and Geneve headers (the rest comes from smoltcp's `wire`).
//!
//! Features: `alloc` (tables and state machines) and `std` (extras), both on by
//! default. Without them only the allocation-free arithmetic the eBPF programs
//! share is built: [`lpm`], [`ecmp::hash`], [`datapath::reason`],
//! [`datapath::checksum`], [`hash`], [`wire`], [`port`], [`service::lookup`],
//! [`service::packet`].
//! Feature `serde` (off by default, not implied by `std`) adds the `cilium`
//! model and the service table built from it.
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
mod base64;
#[cfg(feature = "alloc")]
pub mod bgp;
#[cfg(feature = "serde")]
pub mod cilium;
pub mod datapath;
pub mod ecmp;
#[cfg(feature = "alloc")]
pub mod fib;
pub mod flow;
pub mod hash;
#[cfg(feature = "alloc")]
pub mod ipam;
#[cfg(feature = "alloc")]
pub mod lease;
pub mod lpm;
#[cfg(feature = "alloc")]
pub mod neighbour;
pub mod port;
pub mod service;
pub mod wire;

pub use port::PortId;
