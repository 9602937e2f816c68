//! The maps the programs read, filled by the loader (`nexthop-offload-bpf`'s
//! `maps` module). Layouts and default sizes come from the common crate; the
//! loader resizes the node, leaf, group, nexthop and neighbour maps before loading.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, PerCpuArray, ProgramArray};
use nexthop_offload_bpf_common::{
    ArpKey, Config, DEFAULT_GROUPS, DEFAULT_IDENTITIES, DEFAULT_LEAVES, DEFAULT_LOCAL,
    DEFAULT_NEIGHBOURS, DEFAULT_NEXTHOPS, DEFAULT_NODES, FibNode, GroupBuckets, IpKey, MAX_PORTS,
    Mac, Nexthop, Port, REASONS as COUNT, V4_DIRECT_BITS, V6_DIRECT_BITS,
};

/// IPv4 poptrie direct table.
#[map]
pub static V4_DIRECT: Array<u32> = Array::with_max_entries(1 << V4_DIRECT_BITS, 0);
/// IPv4 poptrie nodes.
#[map]
pub static V4_NODES: Array<FibNode> = Array::with_max_entries(DEFAULT_NODES, 0);
/// IPv4 poptrie leaves (group ids).
#[map]
pub static V4_LEAVES: Array<u32> = Array::with_max_entries(DEFAULT_LEAVES, 0);
/// IPv6 poptrie direct table.
#[map]
pub static V6_DIRECT: Array<u32> = Array::with_max_entries(1 << V6_DIRECT_BITS, 0);
/// IPv6 poptrie nodes.
#[map]
pub static V6_NODES: Array<FibNode> = Array::with_max_entries(DEFAULT_NODES, 0);
/// IPv6 poptrie leaves (group ids).
#[map]
pub static V6_LEAVES: Array<u32> = Array::with_max_entries(DEFAULT_LEAVES, 0);
/// Bucket table of every nexthop group, by group id.
#[map]
pub static GROUP_BUCKETS: Array<GroupBuckets> = Array::with_max_entries(DEFAULT_GROUPS, 0);
/// Nexthops, by slot.
#[map]
pub static NEXTHOPS: Array<Nexthop> = Array::with_max_entries(DEFAULT_NEXTHOPS, 0);
/// Resolved neighbours: address → MAC.
#[map]
pub static NEIGHBOURS: HashMap<IpKey, Mac> = HashMap::with_max_entries(DEFAULT_NEIGHBOURS, 0);
/// The host's ports, by `PortId`.
#[map]
pub static PORTS: Array<Port> = Array::with_max_entries(MAX_PORTS, 0);
/// Datapath settings (entry 0).
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
/// Which port a frame arrived on: ingress ifindex → `PortId`.
#[map]
pub static IFINDEX_PORTS: HashMap<u32, u16> = HashMap::with_max_entries(MAX_PORTS, 0);
/// Addresses of this host (owned, announced, tunnel endpoint): value 1.
#[map]
pub static LOCAL: HashMap<IpKey, u8> = HashMap::with_max_entries(DEFAULT_LOCAL, 0);
/// (port, IPv4 address) pairs ARP requests are answered for: value 1.
#[map]
pub static ARP_ADDRS: HashMap<ArpKey, u8> = HashMap::with_max_entries(DEFAULT_LOCAL, 0);
/// Security identity of a source address: the VNI of its encapsulated traffic.
#[map]
pub static IDENTITIES: HashMap<IpKey, u32> = HashMap::with_max_entries(DEFAULT_IDENTITIES, 0);
/// Tail call targets: [`INNER`] is the pipeline's second pass over a decapsulated frame.
#[map]
pub static PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// Index of the `nexthop_inner` program in [`PROGRAMS`].
pub const INNER: u32 = 0;
/// Packets per exit reason (index: `Reason as u8`).
#[map]
pub static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNT, 0);
