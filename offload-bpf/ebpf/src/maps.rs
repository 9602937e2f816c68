//! The maps the programs read, filled by the loader (`nexthop-offload-bpf`'s
//! `datapath` module). Layouts and default sizes come from the common crate.
//!
//! The tables a route change rewrites are double-buffered: every array map
//! below marked "per half" holds two copies, entry `i` of half `h` at
//! `h * capacity + i`, and [`ACTIVE`] says which half packets read. The loader
//! rewrites the other half, flips [`ACTIVE`] with one 4-byte write and waits
//! for an RCU grace period before it touches the retired half again, so a
//! packet reads one consistent generation. The capacity of each half is a
//! load-time constant (the `*_CAP` globals), so the verifier knows every bound.
//! Hash maps change entry by entry (each update is atomic) and are shared.

use aya_ebpf::Global;
use aya_ebpf::bindings::BPF_F_NO_PREALLOC;
use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf};
use nexthop_offload_bpf_common::service::{
    AffinityEntry, AffinityKey, Backend, BackendKey, BackendSet, Connection, DEFAULT_AFFINITY,
    DEFAULT_BACKENDS, DEFAULT_CONNECTIONS, DEFAULT_FRONTENDS, DEFAULT_MAGLEV_SETS,
    DEFAULT_MASQ_EXCLUSIONS, DEFAULT_SLOTS, DEFAULT_SOCKETS, FlowKey, FrontendKey, Inputs, L3n4Key,
    ServiceConfig, SocketKey, Work, counter,
};
use nexthop_offload_bpf_common::{
    ArpKey, Config, DEFAULT_GROUPS, DEFAULT_IDENTITIES, DEFAULT_LEAVES, DEFAULT_LOCAL,
    DEFAULT_NEIGHBOURS, DEFAULT_NEXTHOPS, DEFAULT_NODES, FibNode, GroupBuckets, HALVES,
    INGRESS_IFINDEXES, IpKey, LOCAL_FILTER_WORDS, MAX_PORTS, Mac, NdpKey, Nexthop, Port,
    REASONS as COUNT, V4_DIRECT_BITS, V6_DIRECT_BITS, flow, local_filter_bit,
};

/// Which half of the double-buffered maps packets read (entry 0: 0 or 1).
#[map]
pub static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);
/// IPv4 poptrie direct table, per half.
#[map]
pub static V4_DIRECT: Array<u32> = Array::with_max_entries(HALVES << V4_DIRECT_BITS, 0);
/// IPv4 poptrie nodes, per half.
#[map]
pub static V4_NODES: Array<FibNode> = Array::with_max_entries(HALVES * DEFAULT_NODES, 0);
/// IPv4 poptrie leaves (group ids), per half.
#[map]
pub static V4_LEAVES: Array<u32> = Array::with_max_entries(HALVES * DEFAULT_LEAVES, 0);
/// IPv6 poptrie direct table, per half.
#[map]
pub static V6_DIRECT: Array<u32> = Array::with_max_entries(HALVES << V6_DIRECT_BITS, 0);
/// IPv6 poptrie nodes, per half.
#[map]
pub static V6_NODES: Array<FibNode> = Array::with_max_entries(HALVES * DEFAULT_NODES, 0);
/// IPv6 poptrie leaves (group ids), per half.
#[map]
pub static V6_LEAVES: Array<u32> = Array::with_max_entries(HALVES * DEFAULT_LEAVES, 0);
/// Bucket table of every nexthop group, by group id, per half.
#[map]
pub static GROUP_BUCKETS: Array<GroupBuckets> = Array::with_max_entries(HALVES * DEFAULT_GROUPS, 0);
/// Nexthops, by slot, per half.
#[map]
pub static NEXTHOPS: Array<Nexthop> = Array::with_max_entries(HALVES * DEFAULT_NEXTHOPS, 0);
/// The host's ports, by `PortId`, per half.
#[map]
pub static PORTS: Array<Port> = Array::with_max_entries(HALVES * MAX_PORTS, 0);
/// Datapath settings, one entry per half.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(HALVES, 0);
/// The filter over [`LOCAL`] (`local_filter_bit`), per half.
#[map]
pub static LOCAL_FILTER: Array<u64> = Array::with_max_entries(HALVES * LOCAL_FILTER_WORDS, 0);
/// Resolved neighbours: address → MAC.
#[map]
pub static NEIGHBOURS: HashMap<IpKey, Mac> = HashMap::with_max_entries(DEFAULT_NEIGHBOURS, 0);
/// Which port a frame arrived on, for ifindexes below `INGRESS_IFINDEXES`:
/// `PortId + 1` (0: not a port), per half.
#[map]
pub static INGRESS: Array<u16> = Array::with_max_entries(HALVES * INGRESS_IFINDEXES, 0);
/// Which port a frame arrived on, for larger ifindexes: ifindex → `PortId`.
#[map]
pub static IFINDEX_PORTS: HashMap<u32, u16> = HashMap::with_max_entries(MAX_PORTS, 0);
/// Addresses of this host (owned, announced, tunnel endpoint): value 1.
#[map]
pub static LOCAL: HashMap<IpKey, u8> = HashMap::with_max_entries(DEFAULT_LOCAL, 0);
/// (port, IPv4 address) pairs ARP requests are answered for: value 1.
#[map]
pub static ARP_ADDRS: HashMap<ArpKey, u8> = HashMap::with_max_entries(DEFAULT_LOCAL, 0);
/// (port, IPv6 address) pairs neighbour solicitations are answered for: value 1.
#[map]
pub static NDP_ADDRS: HashMap<NdpKey, u8> = HashMap::with_max_entries(DEFAULT_LOCAL, 0);
/// Security identity of a source address: the VNI of its encapsulated traffic.
#[map]
pub static IDENTITIES: HashMap<IpKey, u32> = HashMap::with_max_entries(DEFAULT_IDENTITIES, 0);
/// Tail call targets: [`INNER`] is the pipeline's second pass over a
/// decapsulated frame, [`FULL`] and [`V6`] the parts the attached fast path
/// hands ARP and tunnel frames and IPv6 frames to, and [`NDP`] the
/// neighbour discovery part the IPv6 part hands solicitations and
/// advertisements to.
#[map]
pub static PROGRAMS: ProgramArray = ProgramArray::with_max_entries(9, 0);
/// Slot of the `nexthop_inner` program in [`PROGRAMS`].
pub const INNER: u32 = 0;
/// Slot of the `nexthop_full` program in [`PROGRAMS`].
pub const FULL: u32 = 1;
/// Slot of the `nexthop_v6` program in [`PROGRAMS`].
pub const V6: u32 = 2;
/// Slot of the `nexthop_ndp` program in [`PROGRAMS`].
pub const NDP: u32 = 3;
/// Slot of the `nexthop_service` program in [`PROGRAMS`].
pub const SERVICE: u32 = 4;
/// Slot of the `nexthop_service_open` program in [`PROGRAMS`].
pub const SERVICE_OPEN: u32 = 5;
/// Slot of the `nexthop_service_apply` program in [`PROGRAMS`].
pub const SERVICE_APPLY: u32 = 6;
/// Slot of the dispatch of a service request to its backend's node (DSR).
pub const DISPATCH: u32 = 7;
/// Slot of the tracking of a request dispatched to this node (DSR).
pub const SERVICE_ACCEPT: u32 = 8;
/// Service stage settings, one entry per half.
#[map]
pub static SVC_CONFIG: Array<ServiceConfig> = Array::with_max_entries(HALVES, 0);
/// Frontends: (half, frontend, scope) → backend set.
#[map]
pub static SVC_FRONTENDS: HashMap<FrontendKey, BackendSet> =
    HashMap::with_max_entries(2 * HALVES * DEFAULT_FRONTENDS, 0);
/// The sets' active backend IDs, ascending per set, per half.
#[map]
pub static SVC_SLOTS: Array<u32> = Array::with_max_entries(HALVES * DEFAULT_SLOTS, 0);
/// Maglev tables, M entries each, per half.
#[map]
pub static SVC_MAGLEV: Array<u32> =
    Array::with_max_entries(HALVES * DEFAULT_MAGLEV_SETS * 16381, 0);
/// Backend ID → address, per half.
#[map]
pub static SVC_IDS: Array<L3n4Key> = Array::with_max_entries(HALVES * DEFAULT_BACKENDS, 0);
/// Backends: (half, address) → ID, state, locality, node.
#[map]
pub static SVC_BACKENDS: HashMap<BackendKey, Backend> =
    HashMap::with_max_entries(HALVES * DEFAULT_BACKENDS, 0);
/// Destinations never masqueraded: (half, IPv4 prefix), longest match
/// (`service::masq_key`).
#[map]
pub static MASQ_EXCLUDE: LpmTrie<[u8; 8], u8> =
    LpmTrie::with_max_entries(HALVES * DEFAULT_MASQ_EXCLUSIONS, BPF_F_NO_PREALLOC);
/// Tracked connections by original tuple.
#[map]
pub static CT: LruHashMap<FlowKey, Connection> =
    LruHashMap::with_max_entries(DEFAULT_CONNECTIONS, 0);
/// Reply tuple → original tuple of the connection it belongs to.
#[map]
pub static CT_REPLY: LruHashMap<FlowKey, FlowKey> =
    LruHashMap::with_max_entries(DEFAULT_CONNECTIONS, 0);
/// Session affinity: (frontend, client) → backend.
#[map]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityEntry> =
    LruHashMap::with_max_entries(DEFAULT_AFFINITY, 0);
/// Sockets the socket-level balancer sent to a backend → the frontend
/// they asked for.
#[map]
pub static SOCK_REVNAT: LruHashMap<SocketKey, L3n4Key> =
    LruHashMap::with_max_entries(DEFAULT_SOCKETS, 0);
/// The clock and random number, when the loader gives them (entry 0).
#[map]
pub static SVC_INPUTS: Array<Inputs> = Array::with_max_entries(1, 0);
/// The service stage's scratch space for the packet in flight, per CPU.
#[map]
pub static SVC_WORK: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);
/// Service stage counters, per CPU (index: `counter::*`).
#[map]
pub static SVC_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);
/// Flow events (`FlowEvent`), when `FLOW_SETTINGS` has them on.
#[map]
pub static FLOWS: RingBuf = RingBuf::with_byte_size(flow::RING_BYTES, 0);
/// Whether flow events are sent, and at what rate (entry 0).
#[map]
pub static FLOW_SETTINGS: Array<flow::Settings> = Array::with_max_entries(1, 0);
/// The rate limit's state and the frame in flight's egress, per CPU.
#[map]
pub static FLOW_STATE: PerCpuArray<flow::State> = PerCpuArray::with_max_entries(1, 0);
/// Flow events sent and lost, per CPU (index: `flow::counter::*`).
#[map]
pub static FLOW_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(flow::counter::COUNT, 0);
/// Packets per exit reason (index: `Reason as u8`).
#[map]
pub static REASONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNT, 0);

/// Node entries per half (set by the loader).
#[unsafe(no_mangle)]
static NODES_CAP: Global<u32> = Global::new(DEFAULT_NODES);
/// Leaf entries per half (set by the loader).
#[unsafe(no_mangle)]
static LEAVES_CAP: Global<u32> = Global::new(DEFAULT_LEAVES);
/// Group entries per half (set by the loader).
#[unsafe(no_mangle)]
static GROUPS_CAP: Global<u32> = Global::new(DEFAULT_GROUPS);
/// Nexthop slots per half (set by the loader).
#[unsafe(no_mangle)]
static NEXTHOPS_CAP: Global<u32> = Global::new(DEFAULT_NEXTHOPS);
/// Backend slots per half (set by the loader).
#[unsafe(no_mangle)]
static SVC_SLOTS_CAP: Global<u32> = Global::new(DEFAULT_SLOTS);
/// Backend IDs per half (set by the loader).
#[unsafe(no_mangle)]
static SVC_IDS_CAP: Global<u32> = Global::new(DEFAULT_BACKENDS);
/// Maglev entries per half: tables × M (set by the loader).
#[unsafe(no_mangle)]
static SVC_MAGLEV_CAP: Global<u32> = Global::new(DEFAULT_MAGLEV_SETS * 16381);

/// The half of the double-buffered maps one packet reads, fixed when its
/// processing starts.
#[derive(Clone, Copy)]
pub struct Half(u32);

impl Half {
    /// The half [`ACTIVE`] names now.
    #[inline(always)]
    pub fn active() -> Self {
        Half(ACTIVE.get(0).copied().unwrap_or(0) & 1)
    }

    /// Where entry `i` of this half lives in a map of `capacity` entries per half.
    #[inline(always)]
    fn index(self, i: u32, capacity: u32) -> Option<u32> {
        (i < capacity).then_some(self.0 * capacity + i)
    }

    /// Entry `i` of this half of `map`.
    #[inline(always)]
    fn get<T>(self, map: &'static Array<T>, i: u32, capacity: u32) -> Option<&'static T> {
        map.get(self.index(i, capacity)?)
    }

    /// The datapath settings.
    #[inline(always)]
    pub fn config(self) -> Config {
        self.get(&CONFIG, 0, 1).copied().unwrap_or_default()
    }

    /// Whether port `id` faces this node's pods (read in place: the
    /// verifier refuses variable offsets into a copy on the stack).
    #[inline(always)]
    pub fn is_pod_port(self, id: u16) -> bool {
        self.get(&CONFIG, 0, 1).is_some_and(|c| c.is_pod_port(id))
    }

    /// The port a frame received on interface `ifindex` arrived on.
    #[inline(always)]
    pub fn ingress(self, ifindex: u32) -> Option<u16> {
        if ifindex < INGRESS_IFINDEXES {
            let port = *self.get(&INGRESS, ifindex, INGRESS_IFINDEXES)?;
            return port.checked_sub(1);
        }
        // SAFETY: the value is copied out at once.
        unsafe { IFINDEX_PORTS.get(&ifindex) }.copied()
    }

    /// Port `id`, if it is in use.
    #[inline(always)]
    pub fn port(self, id: u16) -> Option<&'static Port> {
        self.get(&PORTS, u32::from(id), MAX_PORTS)
            .filter(|p| p.ifindex != 0)
    }

    /// Whether `key` is an address of this host: the filter word of this
    /// half first, the `LOCAL` hash map only when its bit is set.
    #[inline(always)]
    pub fn is_local(self, key: &IpKey) -> bool {
        let (word, bit) = local_filter_bit(key);
        let maybe = self
            .get(&LOCAL_FILTER, word, LOCAL_FILTER_WORDS)
            .is_some_and(|w| w & bit != 0);
        // SAFETY: only presence is read.
        maybe && unsafe { LOCAL.get(key) }.is_some()
    }

    /// The bucket table of nexthop group `id`.
    #[inline(always)]
    pub fn group(self, id: u32) -> Option<&'static GroupBuckets> {
        self.get(&GROUP_BUCKETS, id, GROUPS_CAP.load())
    }

    /// Nexthop slot `slot`.
    #[inline(always)]
    pub fn nexthop(self, slot: u32) -> Option<&'static Nexthop> {
        self.get(&NEXTHOPS, slot, NEXTHOPS_CAP.load())
    }

    /// Entry `i` of a direct table of `1 << bits` entries per half.
    #[inline(always)]
    pub fn direct(self, map: &'static Array<u32>, bits: u32, i: usize) -> Option<u32> {
        self.get(map, i as u32, 1 << bits).copied()
    }

    /// Node `i` of a trie.
    #[inline(always)]
    pub fn node(self, map: &'static Array<FibNode>, i: u32) -> Option<&'static FibNode> {
        self.get(map, i, NODES_CAP.load())
    }

    /// Leaf `i` of a trie.
    #[inline(always)]
    pub fn leaf(self, map: &'static Array<u32>, i: u32) -> Option<u32> {
        self.get(map, i, LEAVES_CAP.load()).copied()
    }

    /// The half's byte in the service maps' keys.
    #[inline(always)]
    pub fn key(self) -> u8 {
        self.0 as u8
    }

    /// The service stage settings.
    #[inline(always)]
    pub fn service_config(self) -> Option<&'static ServiceConfig> {
        self.get(&SVC_CONFIG, 0, 1)
    }

    /// Backend slot `i` (a backend ID).
    #[inline(always)]
    pub fn slot(self, i: u32) -> Option<u32> {
        self.get(&SVC_SLOTS, i, SVC_SLOTS_CAP.load()).copied()
    }

    /// Maglev entry `i` (set × M + index).
    #[inline(always)]
    pub fn maglev(self, i: u32) -> Option<u32> {
        self.get(&SVC_MAGLEV, i, SVC_MAGLEV_CAP.load()).copied()
    }

    /// The address of backend `id`.
    #[inline(always)]
    pub fn backend_addr(self, id: u32) -> Option<L3n4Key> {
        self.get(&SVC_IDS, id, SVC_IDS_CAP.load()).copied()
    }
}
