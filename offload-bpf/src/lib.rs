//! The eBPF offload of router-core's datapath: the embedded XDP object, the
//! translation of router-core tables into its maps, loading and map sync, and
//! the differential harness that proves the program equal to the reference.
//!
//! - [`object`]: the XDP object `build.rs` builds from `ebpf/` and embeds.
//! - [`snapshot`]: router-core tables → map contents (pure, no kernel needed).
//! - [`services`]: router-core's service table → the service maps' contents.
//! - [`datapath`]: load the object, sync snapshots into its maps, test-run
//!   frames and read the per-reason counters.
//! - [`flows`]: the programs' flow events, read from their ring buffer.
//!
//! The programs live in `ebpf/` (a workspace of their own, built for
//! `bpfel-unknown-none` only) and the map layouts in `common/`.
//!
//! Route changes reach the program without blackholes (double-buffered maps
//! flipped after a full write) and a pinned datapath keeps forwarding while
//! its owner restarts: see [`datapath`].

pub mod datapath;
pub mod flows;
pub mod object;
pub mod services;
pub mod snapshot;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod service_differential;
