//! The eBPF offload of router-core's datapath: the embedded XDP object, the
//! translation of router-core tables into its maps, loading and map sync, and
//! the differential harness that proves the program equal to the reference.
//!
//! - [`object`]: the XDP object `build.rs` builds from `ebpf/` and embeds.
//! - [`snapshot`]: router-core tables → map contents (pure, no kernel needed).
//! - [`datapath`]: load the object, sync snapshots into its maps, test-run
//!   frames and read the per-reason counters.
//!
//! The programs live in `ebpf/` (a workspace of their own, built for
//! `bpfel-unknown-none` only) and the map layouts in `common/`.
//!
//! # Route changes without blackholes (plan)
//!
//! Today [`datapath::Datapath::sync`] writes only what changed, in dependency
//! order: neighbours, ports and local addresses first, then nexthops and bucket
//! tables, then trie leaves and nodes, and the direct tables last, so a new
//! direct entry never points at nodes that are not written yet. That is not
//! enough on its own: router-core's poptrie reuses freed node and leaf slots in
//! the same update, so a packet walking the old subtree while its slots are
//! rewritten can read a mix. The fix planned is double buffering: every array
//! map gets two halves and `CONFIG` an active-half index; a sync brings the
//! inactive half up to date (diffing against that half's own shadow), flips the
//! index with one 8-byte write, and never touches the half in use. Programs run
//! under RCU, and syncs are far apart compared with a program run, so a walk
//! never sees a half being rewritten. Hash maps (neighbours, ports, local
//! addresses) change entry by entry, which is atomic per entry already.

pub mod datapath;
pub mod object;
pub mod snapshot;

#[cfg(test)]
mod differential;
