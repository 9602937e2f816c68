//! nexthop's routing core: the tables and state machines that both runtimes
//! (the simulator and the node agent with its eBPF datapath) share.
//!
//! Sans-IO: nothing here reads a clock, a socket or OS randomness. Time comes
//! in as [`smoltcp::time::Instant`] values, randomness as seeds, and every
//! state machine answers `(now, input)` with outputs the caller carries out.
//!
//! - [`fib`]: RIB and FIB, longest-prefix match, nexthop groups.
//! - [`ecmp`]: flow hashing and resilient member selection.
//! - [`neighbour`]: the ARP neighbour table and the ARP responder.
#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod ecmp;
pub mod fib;
pub mod neighbour;
pub mod port;

pub use port::PortId;
