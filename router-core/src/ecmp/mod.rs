//! Equal-cost multipath: flow hashing and resilient member selection.
//!
//! `hash` turns a packet's flow into a 32-bit value (L3 or L4 policy, seeded);
//! `buckets` maps that value to a member of a nexthop group so that membership
//! changes disturb as few flows as possible. Both are pure arithmetic shared with
//! the eBPF datapath. Nexthop groups themselves live in the FIB.

#[cfg(feature = "alloc")]
pub mod buckets;
pub mod hash;

#[cfg(feature = "alloc")]
pub use buckets::{BUCKETS, Buckets};
pub use hash::{FlowKey, HashPolicy, bucket_of};
