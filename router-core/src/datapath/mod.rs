//! The packet datapath both runtimes share.
//!
//! `reason` (exit codes and actions) and `checksum` (ones'-complement
//! arithmetic) are allocation-free and compiled into the eBPF programs too;
//! `pipeline` is the reference implementation of the whole datapath that the
//! simulator runs and the eBPF programs are differentially tested against.

pub mod checksum;
#[cfg(feature = "alloc")]
pub mod pipeline;
pub mod reason;

#[cfg(feature = "alloc")]
pub use pipeline::{Config, OwnedTables, PortConfig, Tables, TunnelConfig, Verdict, process};
pub use reason::{Action, Reason};

#[cfg(all(test, feature = "alloc"))]
mod tests;
