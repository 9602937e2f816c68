//! The loaded XDP datapath: load the embedded object, keep its maps equal to a
//! [`Snapshot`], run frames through it with `BPF_PROG_TEST_RUN`, read counters.
//!
//! # Route changes without blackholes
//!
//! The maps a route change rewrites (tries, group buckets, nexthops, ports,
//! ingress ports, settings, the local-address filter) are double-buffered (see the eBPF crate's `maps`): packets read
//! the half `ACTIVE` names, [`Datapath::sync`] brings the other half up to the
//! new snapshot (writing only entries that differ from what that half holds),
//! flips `ACTIVE` with one 4-byte write, then waits for an RCU grace period, so
//! that no program run still reads the retired half when the next sync starts
//! rewriting it. Every packet therefore sees either the old tables or the new
//! ones, never a mix. Hash maps (neighbours, local addresses, ARP, NDP, identities,
//! ingress ports of large ifindexes) are shared by both halves: new entries go in before the
//! flip, stale ones come out after the grace period.
//!
//! # Pinning
//!
//! [`Datapath::load_pinned`] keeps the maps and the XDP links on a bpffs, so
//! forwarding goes on with the last tables while the process that owns the
//! datapath restarts. Loading again from the same directory reuses the maps
//! (their layout is checked), learns which half is active, and
//! [`Datapath::attach`] replaces the program on the pinned link atomically.
//! [`remove_pins`] detaches everything and frees the maps.
//!
//! Needs root (CAP_BPF and CAP_NET_ADMIN).

use std::collections::BTreeMap;
use std::fmt;
use std::mem::size_of;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::Key;
use aya::maps::{Array, HashMap, MapData, MapError, MapInfo, PerCpuArray, ProgramArray, RingBuf};
use aya::pin::PinError;
use aya::programs::cgroup_sock_addr::CgroupSockAddrLinkId;
use aya::programs::links::{FdLink, LinkError, PinnedLink};
use aya::programs::xdp::{XdpLink, XdpLinkId};
use aya::programs::{CgroupSockAddr, ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader, Pod};
use nexthop_offload_bpf_common::{
    ArpKey, Config, DEFAULT_GROUPS, DEFAULT_IDENTITIES, DEFAULT_LEAVES, DEFAULT_LOCAL,
    DEFAULT_NEIGHBOURS, DEFAULT_NEXTHOPS, DEFAULT_NODES, FibNode, GroupBuckets, HALVES,
    INGRESS_IFINDEXES, IpKey, LOCAL_FILTER_WORDS, MAX_PORTS, Mac, NdpKey, Nexthop, Port, REASONS,
    V4_DIRECT_BITS, V6_DIRECT_BITS, flow,
};
use router_core::datapath::Reason;

use crate::flows::{BadEvent, Counters, Event, FlowReader, Limit};
use crate::object::object;
use crate::snapshot::{Snapshot, Trie};

mod services;
mod sockets;

pub use sockets::cgroup2_mount;

use nexthop_offload_bpf_common::service::{
    AffinityEntry, AffinityKey, Backend, BackendKey, BackendSet, Connection, DEFAULT_AFFINITY,
    DEFAULT_BACKENDS, DEFAULT_CONNECTIONS, DEFAULT_FRONTENDS, DEFAULT_MAGLEV_SETS,
    DEFAULT_MASQ_EXCLUSIONS, DEFAULT_SLOTS, DEFAULT_SOCKETS, FlowKey, FrontendKey, Inputs, L3n4Key,
    ServiceConfig, SocketKey, Work, counter,
};
use services::ServiceMapsSync;

/// Name of the XDP program in the object.
pub const PROGRAM: &str = "nexthop";
/// Name of the program the pipeline tail-calls for the inner frame of a decap.
pub const INNER_PROGRAM: &str = "nexthop_inner";
/// Name of the part of the pipeline the attached fast path tail-calls for ARP
/// and tunnel frames.
pub const FULL_PROGRAM: &str = "nexthop_full";
/// Name of the part of the pipeline the attached fast path tail-calls for IPv6 frames.
pub const V6_PROGRAM: &str = "nexthop_v6";
/// Name of the part the IPv6 part tail-calls for neighbour discovery.
pub const NDP_PROGRAM: &str = "nexthop_ndp";
/// Name of the service stage program (tail-called by [`PROGRAM`]).
pub const SERVICE_PROGRAM: &str = "nexthop_service";
/// Name of the service stage's program for new flows.
pub const SERVICE_OPEN_PROGRAM: &str = "nexthop_service_open";
/// Name of the service stage's program that rewrites the packet.
pub const SERVICE_APPLY_PROGRAM: &str = "nexthop_service_apply";
/// Name of the program that dispatches a service request to its backend's
/// node in Geneve (DSR).
pub const DISPATCH_PROGRAM: &str = "nexthop_dispatch";
/// Name of the service stage's program that tracks a request dispatched
/// to this node (DSR).
pub const SERVICE_ACCEPT_PROGRAM: &str = "nexthop_service_accept";
/// Name of the `XDP_PASS` program for the peer end of veth ports.
pub const PEER_PROGRAM: &str = "nexthop_peer";
/// Names of the socket-level balancer's programs (cgroup `connect`,
/// `sendmsg`, `recvmsg` and `getpeername`, IPv4 and IPv6), attached by
/// [`Datapath::attach_sockets`].
pub const SOCKET_PROGRAMS: [&str; 8] = [
    "nexthop_sock_connect4",
    "nexthop_sock_connect6",
    "nexthop_sock_sendmsg4",
    "nexthop_sock_sendmsg6",
    "nexthop_sock_recvmsg4",
    "nexthop_sock_recvmsg6",
    "nexthop_sock_getpeername4",
    "nexthop_sock_getpeername6",
];

/// One attachment made by [`Datapath::attach`] or [`Datapath::attach_peer`].
#[derive(Debug)]
pub enum Attachment {
    /// Owned by this process: detached when the [`Datapath`] is dropped.
    Owned {
        /// The program attached.
        program: &'static str,
        /// Its link.
        link: XdpLinkId,
    },
    /// A socket program owned by this process, attached to a cgroup.
    OwnedSocket {
        /// The program attached.
        program: &'static str,
        /// Its link.
        link: CgroupSockAddrLinkId,
    },
    /// Pinned at this path: stays attached until [`Datapath::detach`] or [`remove_pins`].
    Pinned(PathBuf),
}

/// Map sizes chosen at load time (each half of a double-buffered map has these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Entries of each node array.
    pub nodes: u32,
    /// Entries of each leaf array.
    pub leaves: u32,
    /// Group ids `0..groups`.
    pub groups: u32,
    /// Nexthop slots.
    pub nexthops: u32,
    /// Neighbour entries.
    pub neighbours: u32,
    /// Local addresses, and (port, address) pairs ARP or NDP answers for.
    pub local: u32,
    /// Source identities.
    pub identities: u32,
    /// Service frontends (per scope).
    pub frontends: u32,
    /// Service backends.
    pub backends: u32,
    /// Backend slots of all backend sets together.
    pub slots: u32,
    /// Maglev tables.
    pub maglev_tables: u32,
    /// Entries of each Maglev table (`maglev.tableSize`, M).
    pub maglev_size: u32,
    /// Tracked connections.
    pub connections: u32,
    /// Clients remembered for session affinity.
    pub affinity: u32,
    /// Sockets the socket-level balancer sent to a backend.
    pub sockets: u32,
    /// Destinations never masqueraded.
    pub masquerade_exclusions: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            nodes: DEFAULT_NODES,
            leaves: DEFAULT_LEAVES,
            groups: DEFAULT_GROUPS,
            nexthops: DEFAULT_NEXTHOPS,
            neighbours: DEFAULT_NEIGHBOURS,
            local: DEFAULT_LOCAL,
            identities: DEFAULT_IDENTITIES,
            frontends: DEFAULT_FRONTENDS,
            backends: DEFAULT_BACKENDS,
            slots: DEFAULT_SLOTS,
            maglev_tables: DEFAULT_MAGLEV_SETS,
            maglev_size: router_core::service::maglev::DEFAULT_TABLE_SIZE,
            connections: DEFAULT_CONNECTIONS,
            affinity: DEFAULT_AFFINITY,
            sockets: DEFAULT_SOCKETS,
            masquerade_exclusions: DEFAULT_MASQ_EXCLUSIONS,
        }
    }
}

/// What one map of the object looks like in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapShape {
    /// Key size in bytes.
    pub key: u32,
    /// Value size in bytes.
    pub value: u32,
    /// Entries (both halves of a double-buffered map).
    pub entries: u32,
}

impl fmt::Display for MapShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries of {}-byte keys and {}-byte values",
            self.entries, self.key, self.value
        )
    }
}

/// Every map of the object and its shape for `c`.
fn layout(c: &Capacity) -> [(&'static str, MapShape); 39] {
    fn shape<K, V>(entries: u32) -> MapShape {
        MapShape {
            key: size_of::<K>() as u32,
            value: size_of::<V>() as u32,
            entries,
        }
    }
    [
        ("ACTIVE", shape::<u32, u32>(1)),
        ("V4_DIRECT", shape::<u32, u32>(HALVES << V4_DIRECT_BITS)),
        ("V4_NODES", shape::<u32, FibNode>(HALVES * c.nodes)),
        ("V4_LEAVES", shape::<u32, u32>(HALVES * c.leaves)),
        ("V6_DIRECT", shape::<u32, u32>(HALVES << V6_DIRECT_BITS)),
        ("V6_NODES", shape::<u32, FibNode>(HALVES * c.nodes)),
        ("V6_LEAVES", shape::<u32, u32>(HALVES * c.leaves)),
        (
            "GROUP_BUCKETS",
            shape::<u32, GroupBuckets>(HALVES * c.groups),
        ),
        ("NEXTHOPS", shape::<u32, Nexthop>(HALVES * c.nexthops)),
        ("PORTS", shape::<u32, Port>(HALVES * MAX_PORTS)),
        ("CONFIG", shape::<u32, Config>(HALVES)),
        (
            "LOCAL_FILTER",
            shape::<u32, u64>(HALVES * LOCAL_FILTER_WORDS),
        ),
        ("NEIGHBOURS", shape::<IpKey, Mac>(c.neighbours)),
        ("INGRESS", shape::<u32, u16>(HALVES * INGRESS_IFINDEXES)),
        ("IFINDEX_PORTS", shape::<u32, u16>(MAX_PORTS)),
        ("LOCAL", shape::<IpKey, u8>(c.local)),
        ("ARP_ADDRS", shape::<ArpKey, u8>(c.local)),
        ("NDP_ADDRS", shape::<NdpKey, u8>(c.local)),
        ("IDENTITIES", shape::<IpKey, u32>(c.identities)),
        ("PROGRAMS", shape::<u32, u32>(9)),
        ("REASONS", shape::<u32, u64>(REASONS)),
        ("FLOWS", shape::<(), ()>(flow::RING_BYTES)),
        ("FLOW_SETTINGS", shape::<u32, flow::Settings>(1)),
        ("FLOW_STATE", shape::<u32, flow::State>(1)),
        ("FLOW_COUNTERS", shape::<u32, u64>(flow::counter::COUNT)),
        ("SVC_CONFIG", shape::<u32, ServiceConfig>(HALVES)),
        (
            "SVC_FRONTENDS",
            shape::<FrontendKey, BackendSet>(2 * HALVES * c.frontends),
        ),
        ("SVC_SLOTS", shape::<u32, u32>(HALVES * c.slots)),
        (
            "SVC_MAGLEV",
            shape::<u32, u32>(HALVES * c.maglev_tables * c.maglev_size),
        ),
        ("SVC_IDS", shape::<u32, L3n4Key>(HALVES * c.backends)),
        (
            "SVC_BACKENDS",
            shape::<BackendKey, Backend>(HALVES * c.backends),
        ),
        ("CT", shape::<FlowKey, Connection>(c.connections)),
        ("CT_REPLY", shape::<FlowKey, FlowKey>(c.connections)),
        ("AFFINITY", shape::<AffinityKey, AffinityEntry>(c.affinity)),
        ("SOCK_REVNAT", shape::<SocketKey, L3n4Key>(c.sockets)),
        ("SVC_INPUTS", shape::<u32, Inputs>(1)),
        ("SVC_COUNTERS", shape::<u32, u64>(counter::COUNT)),
        (
            "MASQ_EXCLUDE",
            shape::<Key<[u8; 8]>, u8>(HALVES * c.masquerade_exclusions),
        ),
        ("SVC_WORK", shape::<u32, Work>(1)),
    ]
}

/// Why loading, syncing or running failed.
#[derive(Debug)]
pub enum Error {
    /// The object did not load (verifier, permissions, map creation).
    Load(EbpfError),
    /// The program did not load or run.
    Program(ProgramError),
    /// A map operation failed.
    Map(MapError),
    /// The object lacks a map or program this crate expects.
    Missing(&'static str),
    /// A snapshot does not fit a map.
    TooLarge {
        /// The map.
        map: &'static str,
        /// Entries needed.
        need: usize,
        /// Entries available.
        capacity: u32,
    },
    /// The pin directory is not on a bpffs.
    NotBpffs(PathBuf),
    /// A map pinned by an earlier run has another shape than this load needs.
    PinnedShape {
        /// The pinned map.
        path: PathBuf,
        /// What it is.
        found: MapShape,
        /// What this load needs.
        want: MapShape,
    },
    /// Pinning, opening or removing a pinned object failed.
    Pin(PathBuf, String),
    /// Waiting for the RCU grace period after a flip failed.
    GracePeriod(std::io::Error),
    /// The cgroup directory to attach the socket programs to could not be opened.
    Cgroup(PathBuf, std::io::Error),
    /// Turning off a veth peer's transmit checksum offload failed.
    Offload(String, std::io::Error),
    /// The service table's Maglev tables have another size than the maps
    /// were loaded for.
    MaglevSize {
        /// The table's M.
        table: u32,
        /// The M of the loaded maps.
        loaded: u32,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Load(e) => write!(f, "loading the XDP object: {e}"),
            Error::Program(e) => write!(f, "XDP program: {e}"),
            Error::Map(e) => write!(f, "map operation: {e}"),
            Error::Missing(name) => write!(f, "the XDP object has no {name}"),
            Error::TooLarge {
                map,
                need,
                capacity,
            } => write!(f, "map {map} needs {need} entries, has {capacity}"),
            Error::NotBpffs(dir) => write!(
                f,
                "{} is not on a bpf filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`)",
                dir.display()
            ),
            Error::PinnedShape { path, found, want } => write!(
                f,
                "pinned map {} holds {found} but this datapath needs {want}: \
                 load with the capacity it was created with, or remove the pin \
                 directory (forwarding stops until the new datapath is attached)",
                path.display()
            ),
            Error::Pin(path, e) => write!(f, "pinned object {}: {e}", path.display()),
            Error::Offload(interface, e) => write!(
                f,
                "turning off transmit checksum offload on {interface} (ETHTOOL_STXCSUM): {e}"
            ),
            Error::MaglevSize { table, loaded } => write!(
                f,
                "the service table's Maglev tables have {table} entries, the maps were loaded for {loaded} (Capacity::maglev_size)"
            ),
            Error::Cgroup(path, e) => write!(f, "cgroup {}: {e}", path.display()),
            Error::GracePeriod(e) => write!(
                f,
                "membarrier(MEMBARRIER_CMD_GLOBAL) (an RCU grace period) failed: {e} \
                 (kernels booted with nohz_full do not support it)"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<EbpfError> for Error {
    fn from(e: EbpfError) -> Self {
        Error::Load(e)
    }
}
impl From<ProgramError> for Error {
    fn from(e: ProgramError) -> Self {
        Error::Program(e)
    }
}
impl From<MapError> for Error {
    fn from(e: MapError) -> Self {
        Error::Map(e)
    }
}

/// One double-buffered array map and, per half, the values written so far
/// (entries past the end of that list are unknown and always written).
struct HalvedArray<V: Pod> {
    name: &'static str,
    map: Array<MapData, V>,
    capacity: u32,
    held: [Vec<V>; 2],
}

impl<V: Pod + PartialEq> HalvedArray<V> {
    fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, Error> {
        let map = Array::try_from(ebpf.take_map(name).ok_or(Error::Missing(name))?)?;
        Ok(HalvedArray {
            name,
            capacity: map.len() / HALVES,
            map,
            held: [Vec::new(), Vec::new()],
        })
    }

    /// Make `half` hold `want` at its start, writing the entries that differ.
    fn sync(&mut self, half: u32, want: &[V]) -> Result<usize, Error> {
        if want.len() > self.capacity as usize {
            return Err(Error::TooLarge {
                map: self.name,
                need: want.len(),
                capacity: self.capacity,
            });
        }
        let held = &mut self.held[half as usize];
        let base = half * self.capacity;
        let mut written = 0;
        for (i, v) in want.iter().enumerate() {
            if held.get(i) != Some(v) {
                self.map.set(base + i as u32, v, 0)?;
                if i < held.len() {
                    held[i] = *v;
                } else {
                    held.push(*v);
                }
                written += 1;
            }
        }
        Ok(written)
    }
}

/// One hash map and the entries it holds.
struct HashMapSync<K: Pod + Ord, V: Pod> {
    map: HashMap<MapData, K, V>,
    held: BTreeMap<K, V>,
}

impl<K: Pod + Ord, V: Pod + PartialEq> HashMapSync<K, V> {
    /// Take the map, learning what it holds (a pinned map keeps its entries).
    fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, Error> {
        let map: HashMap<MapData, K, V> =
            HashMap::try_from(ebpf.take_map(name).ok_or(Error::Missing(name))?)?;
        let held = map.iter().collect::<Result<_, _>>()?;
        Ok(HashMapSync { map, held })
    }

    /// Insert new and changed entries.
    fn upsert(&mut self, want: &BTreeMap<K, V>) -> Result<usize, Error> {
        let mut written = 0;
        for (k, v) in want {
            if self.held.get(k) != Some(v) {
                self.map.insert(k, v, 0)?;
                self.held.insert(*k, *v);
                written += 1;
            }
        }
        Ok(written)
    }

    /// Remove entries `want` no longer has.
    fn prune(&mut self, want: &BTreeMap<K, V>) -> Result<usize, Error> {
        let gone: Vec<K> = self
            .held
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for k in &gone {
            self.map.remove(k)?;
            self.held.remove(k);
        }
        Ok(gone.len())
    }
}

/// The maps of one trie.
struct TrieMaps {
    direct: HalvedArray<u32>,
    nodes: HalvedArray<FibNode>,
    leaves: HalvedArray<u32>,
}

impl TrieMaps {
    fn take(ebpf: &mut Ebpf, names: [&'static str; 3]) -> Result<Self, Error> {
        Ok(TrieMaps {
            direct: HalvedArray::take(ebpf, names[0])?,
            nodes: HalvedArray::take(ebpf, names[1])?,
            leaves: HalvedArray::take(ebpf, names[2])?,
        })
    }

    fn sync(&mut self, half: u32, t: &Trie) -> Result<usize, Error> {
        Ok(self.leaves.sync(half, &t.leaves)?
            + self.nodes.sync(half, &t.nodes)?
            + self.direct.sync(half, &t.direct)?)
    }
}

/// Every map the loader writes, and which half packets read.
struct Maps {
    active: Array<MapData, u32>,
    /// The half `active` names.
    half: u32,
    v4: TrieMaps,
    v6: TrieMaps,
    groups: HalvedArray<GroupBuckets>,
    nexthops: HalvedArray<Nexthop>,
    ports: HalvedArray<Port>,
    config: HalvedArray<Config>,
    local_filter: HalvedArray<u64>,
    ingress: HalvedArray<u16>,
    neighbours: HashMapSync<IpKey, Mac>,
    ifindex_ports: HashMapSync<u32, u16>,
    local: HashMapSync<IpKey, u8>,
    arp: HashMapSync<ArpKey, u8>,
    ndp: HashMapSync<NdpKey, u8>,
    identities: HashMapSync<IpKey, u32>,
    services: ServiceMapsSync,
    reasons: PerCpuArray<MapData, u64>,
    flow_settings: Array<MapData, flow::Settings>,
    flow_counters: PerCpuArray<MapData, u64>,
    /// The reading end of the flow events, until an owner takes it.
    flows: Option<FlowReader>,
    /// Holds the tail call target installed.
    _programs: ProgramArray<MapData>,
}

impl Maps {
    fn take(
        ebpf: &mut Ebpf,
        programs: ProgramArray<MapData>,
        maglev_size: u32,
    ) -> Result<Self, Error> {
        let active = Array::try_from(ebpf.take_map("ACTIVE").ok_or(Error::Missing("ACTIVE"))?)?;
        let half = active.get(&0, 0)? & 1;
        let reasons = ebpf.take_map("REASONS").ok_or(Error::Missing("REASONS"))?;
        let take = |ebpf: &mut Ebpf, name| ebpf.take_map(name).ok_or(Error::Missing(name));
        Ok(Maps {
            active,
            half,
            v4: TrieMaps::take(ebpf, ["V4_DIRECT", "V4_NODES", "V4_LEAVES"])?,
            v6: TrieMaps::take(ebpf, ["V6_DIRECT", "V6_NODES", "V6_LEAVES"])?,
            groups: HalvedArray::take(ebpf, "GROUP_BUCKETS")?,
            nexthops: HalvedArray::take(ebpf, "NEXTHOPS")?,
            ports: HalvedArray::take(ebpf, "PORTS")?,
            config: HalvedArray::take(ebpf, "CONFIG")?,
            local_filter: HalvedArray::take(ebpf, "LOCAL_FILTER")?,
            ingress: HalvedArray::take(ebpf, "INGRESS")?,
            neighbours: HashMapSync::take(ebpf, "NEIGHBOURS")?,
            ifindex_ports: HashMapSync::take(ebpf, "IFINDEX_PORTS")?,
            local: HashMapSync::take(ebpf, "LOCAL")?,
            arp: HashMapSync::take(ebpf, "ARP_ADDRS")?,
            ndp: HashMapSync::take(ebpf, "NDP_ADDRS")?,
            identities: HashMapSync::take(ebpf, "IDENTITIES")?,
            services: ServiceMapsSync::take(ebpf, maglev_size)?,
            reasons: PerCpuArray::try_from(reasons)?,
            flow_settings: Array::try_from(take(ebpf, "FLOW_SETTINGS")?)?,
            flow_counters: PerCpuArray::try_from(take(ebpf, "FLOW_COUNTERS")?)?,
            flows: Some(FlowReader::new(RingBuf::try_from(take(ebpf, "FLOWS")?)?)),
            _programs: programs,
        })
    }

    /// Bring `half` up to `s`: the double-buffered maps only, dependencies first.
    fn write_half(&mut self, half: u32, s: &Snapshot) -> Result<usize, Error> {
        let mut ports = vec![Port::default(); MAX_PORTS as usize];
        for (&id, &p) in &s.ports {
            ports[usize::from(id)] = p;
        }
        let mut ingress = vec![0u16; INGRESS_IFINDEXES as usize];
        for (&ifindex, &port) in s.ifindex_ports.range(..INGRESS_IFINDEXES) {
            ingress[ifindex as usize] = port + 1;
        }
        let max_group = s.groups.keys().next_back().map_or(0, |&g| g as usize + 1);
        let mut groups = vec![GroupBuckets::default(); max_group];
        for (&id, &table) in &s.groups {
            groups[id as usize] = table;
        }
        Ok(self.ingress.sync(half, &ingress)?
            + self.ports.sync(half, &ports)?
            + self.config.sync(half, &[s.config])?
            + self.local_filter.sync(half, &s.local_filter)?
            + self.nexthops.sync(half, &s.nexthops)?
            + self.groups.sync(half, &groups)?
            + self.v4.sync(half, &s.v4)?
            + self.v6.sync(half, &s.v6)?
            + self.services.write_half(half, s.services.as_ref())?)
    }

    /// New and changed hash map entries, before a flip.
    fn upsert(&mut self, s: &Snapshot, h: &Hashed) -> Result<usize, Error> {
        Ok(self.neighbours.upsert(&s.neighbours)?
            + self.local.upsert(&h.local)?
            + self.arp.upsert(&h.arp)?
            + self.ndp.upsert(&h.ndp)?
            + self.identities.upsert(&s.identities)?
            + self.ifindex_ports.upsert(&h.ifindex_ports)?)
    }

    /// Hash map entries `s` no longer has, after the grace period.
    fn prune(&mut self, s: &Snapshot, h: &Hashed) -> Result<usize, Error> {
        Ok(self.ifindex_ports.prune(&h.ifindex_ports)?
            + self.local.prune(&h.local)?
            + self.arp.prune(&h.arp)?
            + self.ndp.prune(&h.ndp)?
            + self.identities.prune(&s.identities)?
            + self.neighbours.prune(&s.neighbours)?)
    }

    /// See [`Datapath::sync`].
    fn sync(&mut self, s: &Snapshot) -> Result<usize, Error> {
        let h = Hashed::of(s);
        let next = self.half ^ 1;
        let services = self.services.wanted(next, s.services.as_ref())?;
        let mut n = self.upsert(s, &h)? + self.services.upsert(&services)?;
        n += self.write_half(next, s)?;
        self.active.set(0, next, 0)?;
        self.half = next;
        grace_period()?;
        n += self.prune(s, &h)? + self.services.prune(&services)?;
        Ok(n)
    }
}

/// What the hash maps built from sets or shared with an array should hold.
struct Hashed {
    local: BTreeMap<IpKey, u8>,
    arp: BTreeMap<ArpKey, u8>,
    ndp: BTreeMap<NdpKey, u8>,
    /// Only the ifindexes `INGRESS` cannot index.
    ifindex_ports: BTreeMap<u32, u16>,
}

impl Hashed {
    fn of(s: &Snapshot) -> Self {
        Hashed {
            local: s.local.iter().map(|&k| (k, 1)).collect(),
            arp: s.arp.iter().map(|&k| (k, 1)).collect(),
            ndp: s.ndp.iter().map(|&k| (k, 1)).collect(),
            ifindex_ports: s
                .ifindex_ports
                .range(INGRESS_IFINDEXES..)
                .map(|(&i, &p)| (i, p))
                .collect(),
        }
    }
}

/// Wait until every program run that started before now has finished.
/// `membarrier(MEMBARRIER_CMD_GLOBAL)` is `synchronize_rcu()` in the kernel,
/// and XDP programs run inside RCU read-side sections (softirq, or
/// `rcu_read_lock` for test runs).
fn grace_period() -> Result<(), Error> {
    // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, libc::MEMBARRIER_CMD_GLOBAL, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(Error::GracePeriod(std::io::Error::last_os_error()))
    }
}

/// The loaded XDP object, its programs and its maps.
pub struct Datapath {
    ebpf: Ebpf,
    maps: Maps,
    /// Where maps and links are pinned, for a pinned datapath.
    pins: Option<PathBuf>,
}

impl fmt::Debug for Datapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datapath")
            .field("active half", &self.maps.half)
            .field("pins", &self.pins)
            .finish_non_exhaustive()
    }
}

/// `ethtool -K INTERFACE` settings [`ethtool_set`] changes.
pub mod ethtool {
    /// `ETHTOOL_STXCSUM`: transmit checksum offload.
    pub const TX_CHECKSUM: u32 = 0x17;
    /// `ETHTOOL_SGRO`: generic receive offload.
    pub const GRO: u32 = 0x2c;
}

/// `ethtool -K INTERFACE SETTING on|off` in the calling thread's network
/// namespace (`setting`: one of [`ethtool`]).
pub fn ethtool_set(interface: &str, setting: u32, on: bool) -> std::io::Result<()> {
    /// `struct ethtool_value`.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let name = interface.as_bytes();
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    let mut value = EthtoolValue {
        cmd: setting,
        data: u32::from(on),
    };
    // SAFETY: a zeroed `ifreq` gets the NUL-terminated name and a pointer to
    // `value`, which outlives the ioctl; the socket is closed on every path.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, &src) in req.ifr_name.iter_mut().zip(name) {
            *dst = src as libc::c_char;
        }
        req.ifr_ifru.ifru_data = (&raw mut value).cast();
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let r = libc::ioctl(fd, libc::SIOCETHTOOL, &mut req);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 { Err(error) } else { Ok(()) }
    }
}

/// Mount a bpf filesystem on `root` (an existing directory, usually
/// `/sys/fs/bpf`) unless one is there already.
pub fn mount_bpffs(root: &Path) -> Result<(), Error> {
    use std::os::unix::ffi::OsStrExt as _;
    if on_bpffs(root) {
        return Ok(());
    }
    let target = std::ffi::CString::new(root.as_os_str().as_bytes())
        .map_err(|e| Error::Pin(root.to_path_buf(), e.to_string()))?;
    // SAFETY: NUL-terminated strings that outlive the call, no data argument.
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Error::Pin(
            root.to_path_buf(),
            format!(
                "mounting a bpf filesystem: {}",
                std::io::Error::last_os_error()
            ),
        ))
    }
}

/// The bpffs magic number (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn on_bpffs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` writes into the zeroed struct we pass and reads the C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

impl Datapath {
    /// Load the embedded object with maps of the given sizes (needs root).
    /// The maps and attachments live as long as this object.
    pub fn load(capacity: &Capacity) -> Result<Self, Error> {
        Self::load_with(capacity, None)
    }

    /// Load the embedded object with its maps pinned in `dir/maps` (reused
    /// when an earlier run left them there) and its links pinned in
    /// `dir/links`, so forwarding outlives this process. `dir` must be on a
    /// bpffs; it is created if missing.
    pub fn load_pinned(capacity: &Capacity, dir: &Path) -> Result<Self, Error> {
        for sub in ["maps", "links"] {
            let path = dir.join(sub);
            if let Err(e) = std::fs::create_dir_all(&path) {
                if dir.ancestors().skip(1).any(on_bpffs) {
                    return Err(Error::Pin(path.clone(), e.to_string()));
                }
                return Err(Error::NotBpffs(dir.to_path_buf()));
            }
        }
        if !on_bpffs(dir) {
            return Err(Error::NotBpffs(dir.to_path_buf()));
        }
        for (name, want) in layout(capacity) {
            let path = dir.join("maps").join(name);
            if !path.exists() {
                continue;
            }
            let info =
                MapInfo::from_pin(&path).map_err(|e| Error::Pin(path.clone(), e.to_string()))?;
            let found = MapShape {
                key: info.key_size(),
                value: info.value_size(),
                entries: info.max_entries(),
            };
            if found != want {
                return Err(Error::PinnedShape { path, found, want });
            }
        }
        Self::load_with(capacity, Some(dir))
    }

    fn load_with(capacity: &Capacity, pins: Option<&Path>) -> Result<Self, Error> {
        let layout = layout(capacity);
        let pin_paths: Vec<(&str, PathBuf)> = match pins {
            Some(dir) => layout
                .iter()
                .map(|&(name, _)| (name, dir.join("maps").join(name)))
                .collect(),
            None => Vec::new(),
        };
        let mut loader = EbpfLoader::new();
        for &(name, shape) in &layout {
            loader.map_max_entries(name, shape.entries);
        }
        for (name, path) in &pin_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .override_global("NODES_CAP", &capacity.nodes, true)
            .override_global("LEAVES_CAP", &capacity.leaves, true)
            .override_global("GROUPS_CAP", &capacity.groups, true)
            .override_global("NEXTHOPS_CAP", &capacity.nexthops, true)
            .override_global("SVC_SLOTS_CAP", &capacity.slots, true)
            .override_global("SVC_IDS_CAP", &capacity.backends, true)
            .override_global(
                "SVC_MAGLEV_CAP",
                &(capacity.maglev_tables * capacity.maglev_size),
                true,
            )
            .load(object())?;
        for name in [
            PROGRAM,
            FULL_PROGRAM,
            V6_PROGRAM,
            NDP_PROGRAM,
            SERVICE_PROGRAM,
            SERVICE_OPEN_PROGRAM,
            SERVICE_APPLY_PROGRAM,
            DISPATCH_PROGRAM,
            SERVICE_ACCEPT_PROGRAM,
            INNER_PROGRAM,
            PEER_PROGRAM,
        ] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(Error::Missing(name))?
                .try_into()?;
            program.load()?;
        }
        for name in SOCKET_PROGRAMS {
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or(Error::Missing(name))?
                .try_into()?;
            program.load()?;
        }
        let mut programs = ProgramArray::try_from(
            ebpf.take_map("PROGRAMS")
                .ok_or(Error::Missing("PROGRAMS"))?,
        )?;
        // Slots as in the eBPF crate's `maps`: INNER 0, FULL 1, V6 2, NDP 3,
        // SERVICE 4, SERVICE_OPEN 5, SERVICE_APPLY 6, DISPATCH 7,
        // SERVICE_ACCEPT 8.
        let slots = [
            (0, INNER_PROGRAM),
            (1, FULL_PROGRAM),
            (2, V6_PROGRAM),
            (3, NDP_PROGRAM),
            (4, SERVICE_PROGRAM),
            (5, SERVICE_OPEN_PROGRAM),
            (6, SERVICE_APPLY_PROGRAM),
            (7, DISPATCH_PROGRAM),
            (8, SERVICE_ACCEPT_PROGRAM),
        ];
        for (slot, name) in slots {
            let program: &Xdp = ebpf.program(name).ok_or(Error::Missing(name))?.try_into()?;
            programs.set(slot, program.fd()?, 0)?;
        }
        Ok(Datapath {
            maps: Maps::take(&mut ebpf, programs, capacity.maglev_size)?,
            ebpf,
            pins: pins.map(Path::to_path_buf),
        })
    }

    /// Make the maps hold `s` without a moment where packets see a mix of the
    /// old and new tables (see the module docs). Returns the number of
    /// entries written or removed.
    pub fn sync(&mut self, s: &Snapshot) -> Result<usize, Error> {
        self.maps.sync(s)
    }

    /// The half of the double-buffered maps packets read now (0 or 1).
    pub fn active_half(&self) -> u32 {
        self.maps.half
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut Xdp, Error> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or(Error::Missing(name))?
            .try_into()?)
    }

    /// Attach `program` to `interface`; pinned datapaths pin the link as
    /// `PROGRAM@INTERFACE`, or replace the program of a link pinned there by an
    /// earlier run (atomically: no packet goes unprocessed).
    fn attach_program(
        &mut self,
        program: &'static str,
        interface: &str,
        mode: XdpMode,
    ) -> Result<Attachment, Error> {
        let Some(dir) = self.pins.clone() else {
            let link = self.program_mut(program)?.attach(interface, mode)?;
            return Ok(Attachment::Owned { program, link });
        };
        let path = dir.join("links").join(format!("{program}@{interface}"));
        let xdp = self.program_mut(program)?;
        let id = if path.exists() {
            let pinned = PinnedLink::from_pin(&path)
                .map_err(|e: LinkError| Error::Pin(path.clone(), e.to_string()))?;
            let link = XdpLink::try_from(FdLink::from(pinned))
                .map_err(|e| Error::Pin(path.clone(), e.to_string()))?;
            xdp.attach_to_link(link)?
        } else {
            let id = xdp.attach(interface, mode)?;
            let link: FdLink = xdp
                .take_link(id)?
                .try_into()
                .map_err(|e: LinkError| Error::Pin(path.clone(), e.to_string()))?;
            link.pin(&path)
                .map_err(|e: PinError| Error::Pin(path.clone(), e.to_string()))?;
            return Ok(Attachment::Pinned(path));
        };
        // The pin keeps the link; this process holds no reference to it.
        drop(xdp.take_link(id)?);
        Ok(Attachment::Pinned(path))
    }

    /// Attach the datapath to the port `interface` (a name in the calling
    /// thread's network namespace) in `mode`. It stays attached until
    /// [`Datapath::detach`], and until this object is dropped unless pinned.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<Attachment, Error> {
        self.attach_program(PROGRAM, interface, mode)
    }

    /// Forget the attachment of a pinned datapath to `interface`, an
    /// interface that is gone (its pinned link is removed); nothing for an
    /// interface never attached.
    pub fn forget(&mut self, interface: &str) -> Result<(), Error> {
        let Some(dir) = &self.pins else {
            return Ok(());
        };
        let path = dir.join("links").join(format!("{PROGRAM}@{interface}"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Pin(path, e.to_string()))
            }
            _ => Ok(()),
        }
    }

    /// Attach the `XDP_PASS` program to `interface`, the peer end of a veth
    /// port, so that native `XDP_TX` and redirects into the port reach it, and
    /// turn off its transmit checksum offload: a veth hands frames over with
    /// their L4 checksum left to "the hardware" (`CHECKSUM_PARTIAL`), a mark
    /// XDP does not carry, so a frame the datapath redirects would leave with
    /// the checksum unfinished. (Physical NICs finish it before the wire.)
    pub fn attach_peer(&mut self, interface: &str) -> Result<Attachment, Error> {
        let attachment = self.attach_program(PEER_PROGRAM, interface, XdpMode::Driver)?;
        ethtool_set(interface, ethtool::TX_CHECKSUM, false)
            .map_err(|e| Error::Offload(interface.to_string(), e))?;
        Ok(attachment)
    }

    /// Detach one attachment (a pinned one is unpinned).
    pub fn detach(&mut self, attachment: Attachment) -> Result<(), Error> {
        match attachment {
            Attachment::Owned { program, link } => Ok(self.program_mut(program)?.detach(link)?),
            Attachment::OwnedSocket { program, link } => {
                Ok(self.socket_program(program)?.detach(link)?)
            }
            Attachment::Pinned(path) => {
                std::fs::remove_file(&path).map_err(|e| Error::Pin(path.clone(), e.to_string()))
            }
        }
    }

    /// Run `frame` through the program once as if received on the loopback
    /// device of the caller's namespace; `out` receives the frame as the program left it.
    /// Returns the XDP verdict.
    pub fn test_run(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<u32, Error> {
        test_run(&self.ebpf, frame, out)
    }

    /// Run `frame` through the program `repeat` times as [`Datapath::test_run`]
    /// does; the verdict and the kernel-reported mean duration of one run.
    pub fn timed_run(
        &self,
        frame: &[u8],
        out: &mut Vec<u8>,
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), Error> {
        timed_run(&self.ebpf, frame, out, repeat)
    }

    /// Packets counted per exit reason, summed over CPUs (index: `Reason as usize`).
    pub fn reason_counts(&self) -> Result<[u64; Reason::COUNT], Error> {
        sum_per_cpu(&self.maps.reasons)
    }

    /// Send flow events from now on, each CPU within `limit`; `None`
    /// stops them (the default of a freshly loaded datapath).
    pub fn set_flows(&mut self, limit: Option<Limit>) -> Result<(), Error> {
        let settings = limit.map_or(flow::Settings::default(), |l| flow::Settings {
            enabled: 1,
            rate: l.rate,
            burst: l.burst,
        });
        Ok(self.maps.flow_settings.set(0, settings, 0)?)
    }

    /// Flow events sent and lost so far, summed over CPUs.
    pub fn flow_counters(&self) -> Result<Counters, Error> {
        sum_per_cpu(&self.maps.flow_counters).map(Counters::from)
    }

    /// The reading end of the flow events, to be read elsewhere (`None`
    /// once taken).
    pub fn take_flow_reader(&mut self) -> Option<FlowReader> {
        self.maps.flows.take()
    }

    /// The flow events waiting, oldest first (`None` once the reader was taken).
    pub fn flow_events(&mut self) -> Option<Vec<Result<Event, BadEvent>>> {
        self.maps.flows.as_mut().map(FlowReader::drain)
    }

    /// The clock (nanoseconds) and random number the service stage uses
    /// from now on: `Some` replays these for every packet (the differential
    /// harness), `None` goes back to the kernel's.
    pub fn set_service_inputs(&mut self, given: Option<(u64, u32)>) -> Result<(), Error> {
        self.maps.services.set_inputs(given)
    }

    /// The service stage's connection entries (some may have expired and
    /// not been evicted yet: compare their deadlines with the clock).
    pub fn connections(&self) -> Result<BTreeMap<FlowKey, Connection>, Error> {
        self.maps.services.connections()
    }

    /// The reply index: reply tuple → original tuple.
    pub fn connection_replies(&self) -> Result<BTreeMap<FlowKey, FlowKey>, Error> {
        self.maps.services.replies()
    }

    /// The session affinity entries.
    pub fn affinity(&self) -> Result<BTreeMap<AffinityKey, AffinityEntry>, Error> {
        self.maps.services.affinity()
    }

    /// Forget every tracked connection and affinity.
    pub fn clear_connections(&mut self) -> Result<(), Error> {
        self.maps.services.clear()
    }

    /// The service stage's counters summed over CPUs (index: `counter::*`
    /// of the common crate, as router-core's `service::datapath::Counters`).
    pub fn service_counts(&self) -> Result<[u64; counter::COUNT as usize], Error> {
        self.maps.services.counters()
    }
}

/// See [`Datapath::test_run`].
fn test_run(ebpf: &Ebpf, frame: &[u8], out: &mut Vec<u8>) -> Result<u32, Error> {
    let (verdict, _) = timed_run(ebpf, frame, out, 1)?;
    Ok(verdict)
}

/// Run `frame` through the program `repeat` times; the verdict and the
/// kernel-reported mean duration of one run.
fn timed_run(
    ebpf: &Ebpf,
    frame: &[u8],
    out: &mut Vec<u8>,
    repeat: u32,
) -> Result<(u32, std::time::Duration), Error> {
    out.clear();
    // Room for the outer headers of an encapsulation.
    out.resize(frame.len() + 64, 0);
    let program: &Xdp = ebpf
        .program(PROGRAM)
        .ok_or(Error::Missing(PROGRAM))?
        .try_into()?;
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out[..]),
        repeat,
        ..TestRunOptions::new()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, result.duration))
}

/// Packets counted per exit reason by the datapath pinned under `dir`, summed
/// over CPUs (index: `Reason as usize`), without loading anything.
pub fn pinned_reason_counts(dir: &Path) -> Result<[u64; Reason::COUNT], Error> {
    pinned_per_cpu(dir, "REASONS")
}

/// The flow event counters of the datapath pinned under `dir`.
pub fn pinned_flow_counters(dir: &Path) -> Result<Counters, Error> {
    pinned_per_cpu(dir, "FLOW_COUNTERS").map(Counters::from)
}

/// The per-CPU counter map `name` pinned under `dir`, summed over CPUs.
fn pinned_per_cpu<const N: usize>(dir: &Path, name: &str) -> Result<[u64; N], Error> {
    let path = dir.join("maps").join(name);
    let data = MapData::from_pin(&path).map_err(|e| Error::Pin(path.clone(), e.to_string()))?;
    sum_per_cpu(&PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))?)
}

fn sum_per_cpu<const N: usize>(counters: &PerCpuArray<MapData, u64>) -> Result<[u64; N], Error> {
    let mut counts = [0; N];
    for (i, c) in counts.iter_mut().enumerate() {
        *c = counters.get(&(i as u32), 0)?.iter().sum();
    }
    Ok(counts)
}

/// Detach every link pinned under `dir` and free its pinned maps: what an
/// operator runs to take the datapath out of a node.
pub fn remove_pins(dir: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::Pin(dir.to_path_buf(), e.to_string()))
        }
        _ => Ok(()),
    }
}

/// Whether this process may load eBPF programs, or why not.
pub fn privileged() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or("no Uid line in /proc/self/status")?;
    if euid == "0" {
        Ok(())
    } else {
        Err(format!(
            "not root (euid {euid}): loading XDP programs needs CAP_BPF and CAP_NET_ADMIN"
        ))
    }
}

#[cfg(test)]
mod tests {
    //! Route changes under traffic: one thread runs frames through the program
    //! while the main thread flips the maps between two tables whose tries
    //! share nothing. Every frame must come out as router-core forwards it
    //! under one table or the other. The negative control rewrites the half
    //! packets read, in place, and must be caught mixing the two.

    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicBool, Ordering};

    use router_core::PortId;
    use router_core::datapath::Config as DpConfig;
    use router_core::fib::{Nexthop as FibNexthop, NexthopKind};
    use smoltcp::wire::EthernetAddress;

    use super::*;
    use crate::differential::{Lab, Oddity, expected_action, hex, ipv4_frame, port, reference};

    /// xorshift64: the same tables and frames every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 32) as u32
        }
    }

    /// A table of `count` prefixes in 10.0.0.0/8 (lengths 12–28) over 64
    /// gateways numbered from `first_gateway`, plus a default route.
    fn lab(rng: &mut Rng, count: usize, first_gateway: u8) -> Lab {
        let gateway = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 255, 1, first_gateway + i));
        let via = |i: u8| {
            vec![FibNexthop {
                kind: NexthopKind::Gateway {
                    addr: gateway(i),
                    port: PortId(1),
                },
                weight: 1,
            }]
        };
        let mut routes = vec![("0.0.0.0/0".parse().unwrap(), via(64))];
        for i in 0..count {
            let len = 12 + (rng.next() % 17) as u8;
            let addr = Ipv4Addr::from(0x0a00_0000 | (rng.next() & 0x00ff_ffff));
            let prefix = ipnet::Ipv4Net::new(addr, len).unwrap().trunc();
            routes.push((prefix.into(), via((i % 64) as u8)));
        }
        Lab {
            routes,
            neighbours: (0..=64)
                .map(|i| {
                    (
                        gateway(i),
                        EthernetAddress([2, 0xcc, 0, 0, first_gateway, i]),
                    )
                })
                .collect(),
            ports: [port(0, 1500), port(1, 1500)].into_iter().collect(),
            identities: BTreeMap::new(),
            config: DpConfig::default(),
            pods: Default::default(),
        }
    }

    /// UDP frames to addresses inside the prefixes of either table.
    fn probes(rng: &mut Rng, labs: [&Lab; 2], count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let routes = &labs[i % 2].routes;
                let ipnet::IpNet::V4(prefix) =
                    routes[1 + rng.next() as usize % (routes.len() - 1)].0
                else {
                    unreachable!("IPv4 tables")
                };
                let host =
                    u32::from(prefix.network()) | (rng.next() & !u32::from(prefix.netmask()));
                let udp = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];
                let src = Ipv4Addr::new(192, 0, 2, 7);
                ipv4_frame(src, Ipv4Addr::from(host), 64, 17, &udp, Oddity::NONE)
            })
            .collect()
    }

    /// What a run of the probes while the maps change saw.
    struct Outcome {
        runs: u64,
        torn: u64,
        first: Option<String>,
    }

    /// Flip the maps between `labs` `rounds` times with `write` while another
    /// thread runs the probes; count outputs that are router-core's under neither table.
    fn under_traffic(
        dp: &mut Datapath,
        labs: [&Lab; 2],
        probes: &[Vec<u8>],
        rounds: usize,
        write: fn(&mut Maps, &Snapshot) -> Result<usize, Error>,
    ) -> Outcome {
        let built = labs.map(Lab::build);
        let snapshots = built
            .each_ref()
            .map(|b| Snapshot::new(&b.tables(), Lab::ifindex).unwrap());
        let expected: Vec<[(u32, Vec<u8>); 2]> = probes
            .iter()
            .map(|f| {
                built.each_ref().map(|b| {
                    let mut out = Vec::new();
                    let verdict = reference(&b.tables(), f, &mut out);
                    assert_eq!(verdict.reason, Reason::Forwarded, "{}", hex(f));
                    (expected_action(&verdict), out)
                })
            })
            .collect();
        dp.sync(&snapshots[0]).unwrap();
        let Datapath { ebpf, maps, .. } = dp;
        let ebpf: &Ebpf = ebpf;
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let prober = scope.spawn(|| {
                let mut outcome = Outcome {
                    runs: 0,
                    torn: 0,
                    first: None,
                };
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for (frame, want) in probes.iter().zip(&expected) {
                        let action = test_run(ebpf, frame, &mut out).unwrap();
                        outcome.runs += 1;
                        if !want.iter().any(|(a, bytes)| *a == action && *bytes == out) {
                            outcome.torn += 1;
                            outcome.first.get_or_insert_with(|| {
                                format!("frame {} → XDP {action} {}", hex(frame), hex(&out))
                            });
                        }
                    }
                }
                outcome
            });
            for round in 1..=rounds {
                write(maps, &snapshots[round % 2]).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            prober.join().unwrap()
        })
    }

    /// The negative control: what sync did before double buffering — rewrite
    /// the half packets read, in place.
    fn overwrite_active(maps: &mut Maps, s: &Snapshot) -> Result<usize, Error> {
        let h = Hashed::of(s);
        let n = maps.upsert(s, &h)? + maps.write_half(maps.half, s)?;
        Ok(n + maps.prune(s, &h)?)
    }

    fn setup() -> Option<(Datapath, Lab, Lab, Vec<Vec<u8>>)> {
        if let Err(why) = privileged() {
            nexthop_testkit::skip(&why.to_string());
            return None;
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let a = lab(&mut rng, 4000, 0);
        let b = lab(&mut rng, 4000, 100);
        let probes = probes(&mut rng, [&a, &b], 256);
        let dp = Datapath::load(&Capacity::default()).expect("the XDP object loads");
        Some((dp, a, b, probes))
    }

    #[test]
    fn route_changes_never_show_packets_a_mix_of_tables() {
        let Some((mut dp, a, b, probes)) = setup() else {
            return;
        };
        let outcome = under_traffic(&mut dp, [&a, &b], &probes, 40, Maps::sync);
        eprintln!(
            "{} runs during 40 flips, {} torn",
            outcome.runs, outcome.torn
        );
        assert!(
            outcome.runs > 1000,
            "the prober ran only {} frames",
            outcome.runs
        );
        assert_eq!(outcome.torn, 0, "first: {:?}", outcome.first);
    }

    #[test]
    fn negative_control_in_place_rewrites_are_caught() {
        let Some((mut dp, a, b, probes)) = setup() else {
            return;
        };
        let outcome = under_traffic(&mut dp, [&a, &b], &probes, 40, overwrite_active);
        eprintln!(
            "{} runs during 40 in-place rewrites, {} torn",
            outcome.runs, outcome.torn
        );
        assert!(outcome.torn > 0, "in-place rewrites were never caught");
    }
}
