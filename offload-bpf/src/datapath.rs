//! The loaded XDP datapath: load the embedded object, keep its maps equal to a
//! [`Snapshot`], run frames through it with `BPF_PROG_TEST_RUN`, read counters.
//!
//! Sync writes only entries that differ from what the maps hold (a shadow copy
//! of the last snapshot), in dependency order; see the crate docs for why and
//! for the double-buffering plan. Needs root (CAP_BPF and CAP_NET_ADMIN).

use std::collections::BTreeMap;
use std::fmt;

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray, ProgramArray};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, EbpfLoader, Pod};
use nexthop_offload_bpf_common::{
    ArpKey, Config, DEFAULT_GROUPS, DEFAULT_IDENTITIES, DEFAULT_LEAVES, DEFAULT_LOCAL,
    DEFAULT_NEIGHBOURS, DEFAULT_NEXTHOPS, DEFAULT_NODES, FibNode, GroupBuckets, IpKey, Mac,
    Nexthop, Port, V4_DIRECT_BITS, V6_DIRECT_BITS,
};
use router_core::datapath::Reason;

use crate::object::object;
use crate::snapshot::{Snapshot, Trie};

/// Name of the XDP program in the object.
pub const PROGRAM: &str = "nexthop";
/// Name of the program the pipeline tail-calls for the inner frame of a decap.
pub const INNER_PROGRAM: &str = "nexthop_inner";
/// Name of the `XDP_PASS` program for the peer end of veth ports.
pub const PEER_PROGRAM: &str = "nexthop_peer";

/// One attachment made by [`Datapath::attach`] or [`Datapath::attach_peer`].
#[derive(Debug)]
pub struct Attachment {
    program: &'static str,
    link: XdpLinkId,
}

/// Map sizes chosen at load time.
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
    /// Local addresses, and (port, address) pairs ARP answers for.
    pub local: u32,
    /// Source identities.
    pub identities: u32,
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
        }
    }
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

/// One array map and the values it holds (missing entries hold `V::default()`).
struct ArrayMap<V: Pod> {
    name: &'static str,
    map: Array<MapData, V>,
    held: Vec<V>,
}

impl<V: Pod + Default + PartialEq> ArrayMap<V> {
    fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, Error> {
        let map = ebpf.take_map(name).ok_or(Error::Missing(name))?;
        Ok(ArrayMap {
            name,
            map: Array::try_from(map)?,
            held: Vec::new(),
        })
    }

    /// Write the entries of `want` that differ from what the map holds.
    fn sync(&mut self, want: &[V]) -> Result<usize, Error> {
        let capacity = self.map.len();
        if want.len() > capacity as usize {
            return Err(Error::TooLarge {
                map: self.name,
                need: want.len(),
                capacity,
            });
        }
        if self.held.len() < want.len() {
            self.held.resize(want.len(), V::default());
        }
        let mut written = 0;
        for (i, (v, held)) in want.iter().zip(self.held.iter_mut()).enumerate() {
            if v != held {
                self.map.set(i as u32, v, 0)?;
                *held = *v;
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
    fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Self, Error> {
        let map = ebpf.take_map(name).ok_or(Error::Missing(name))?;
        Ok(HashMapSync {
            map: HashMap::try_from(map)?,
            held: BTreeMap::new(),
        })
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
    direct: ArrayMap<u32>,
    nodes: ArrayMap<FibNode>,
    leaves: ArrayMap<u32>,
}

impl TrieMaps {
    fn take(ebpf: &mut Ebpf, names: [&'static str; 3], direct_bits: u32) -> Result<Self, Error> {
        let mut direct = ArrayMap::take(ebpf, names[0])?;
        // A fresh map holds zeros, which would read as node 0: force a full first write.
        direct.held = vec![u32::MAX; 1 << direct_bits];
        Ok(TrieMaps {
            direct,
            nodes: ArrayMap::take(ebpf, names[1])?,
            leaves: ArrayMap::take(ebpf, names[2])?,
        })
    }

    /// Leaves and nodes before the direct table that points at them.
    fn sync(&mut self, t: &Trie) -> Result<usize, Error> {
        Ok(self.leaves.sync(&t.leaves)?
            + self.nodes.sync(&t.nodes)?
            + self.direct.sync(&t.direct)?)
    }
}

/// The loaded XDP object, its program and its maps.
pub struct Datapath {
    ebpf: Ebpf,
    v4: TrieMaps,
    v6: TrieMaps,
    groups: ArrayMap<GroupBuckets>,
    nexthops: ArrayMap<Nexthop>,
    neighbours: HashMapSync<IpKey, Mac>,
    ports: ArrayMap<Port>,
    ifindex_ports: HashMapSync<u32, u16>,
    local: HashMapSync<IpKey, u8>,
    arp: HashMapSync<ArpKey, u8>,
    identities: HashMapSync<IpKey, u32>,
    config: ArrayMap<Config>,
    reasons: PerCpuArray<MapData, u64>,
    /// Holds the tail call target installed.
    _programs: ProgramArray<MapData>,
}

impl fmt::Debug for Datapath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Datapath").finish_non_exhaustive()
    }
}

impl Datapath {
    /// Load the embedded object with maps of the given sizes (needs root).
    pub fn load(capacity: &Capacity) -> Result<Self, Error> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("V4_NODES", capacity.nodes)
            .map_max_entries("V6_NODES", capacity.nodes)
            .map_max_entries("V4_LEAVES", capacity.leaves)
            .map_max_entries("V6_LEAVES", capacity.leaves)
            .map_max_entries("GROUP_BUCKETS", capacity.groups)
            .map_max_entries("NEXTHOPS", capacity.nexthops)
            .map_max_entries("NEIGHBOURS", capacity.neighbours)
            .map_max_entries("LOCAL", capacity.local)
            .map_max_entries("ARP_ADDRS", capacity.local)
            .map_max_entries("IDENTITIES", capacity.identities)
            .load(object())?;
        for name in [PROGRAM, INNER_PROGRAM, PEER_PROGRAM] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(Error::Missing(name))?
                .try_into()?;
            program.load()?;
        }
        let mut programs = ProgramArray::try_from(
            ebpf.take_map("PROGRAMS")
                .ok_or(Error::Missing("PROGRAMS"))?,
        )?;
        let inner: &Xdp = ebpf
            .program(INNER_PROGRAM)
            .ok_or(Error::Missing(INNER_PROGRAM))?
            .try_into()?;
        programs.set(0, inner.fd()?, 0)?;
        let reasons = ebpf.take_map("REASONS").ok_or(Error::Missing("REASONS"))?;
        Ok(Datapath {
            v4: TrieMaps::take(
                &mut ebpf,
                ["V4_DIRECT", "V4_NODES", "V4_LEAVES"],
                V4_DIRECT_BITS,
            )?,
            v6: TrieMaps::take(
                &mut ebpf,
                ["V6_DIRECT", "V6_NODES", "V6_LEAVES"],
                V6_DIRECT_BITS,
            )?,
            groups: ArrayMap::take(&mut ebpf, "GROUP_BUCKETS")?,
            nexthops: ArrayMap::take(&mut ebpf, "NEXTHOPS")?,
            neighbours: HashMapSync::take(&mut ebpf, "NEIGHBOURS")?,
            ports: ArrayMap::take(&mut ebpf, "PORTS")?,
            ifindex_ports: HashMapSync::take(&mut ebpf, "IFINDEX_PORTS")?,
            local: HashMapSync::take(&mut ebpf, "LOCAL")?,
            arp: HashMapSync::take(&mut ebpf, "ARP_ADDRS")?,
            identities: HashMapSync::take(&mut ebpf, "IDENTITIES")?,
            config: ArrayMap::take(&mut ebpf, "CONFIG")?,
            reasons: PerCpuArray::try_from(reasons)?,
            _programs: programs,
            ebpf,
        })
    }

    /// Make the maps hold `s`, writing only what changed, leaves of the
    /// dependency graph first. Returns the number of entries written or removed.
    pub fn sync(&mut self, s: &Snapshot) -> Result<usize, Error> {
        let mut ports = vec![Port::default(); self.ports.map.len() as usize];
        for (&id, &p) in &s.ports {
            ports[usize::from(id)] = p;
        }
        let max_group = s.groups.keys().next_back().map_or(0, |&g| g as usize + 1);
        let mut groups = vec![GroupBuckets::default(); max_group];
        for (&id, &table) in &s.groups {
            groups[id as usize] = table;
        }
        let local: BTreeMap<IpKey, u8> = s.local.iter().map(|&k| (k, 1)).collect();
        let arp: BTreeMap<ArpKey, u8> = s.arp.iter().map(|&k| (k, 1)).collect();
        let mut n = self.neighbours.upsert(&s.neighbours)?;
        n += self.ports.sync(&ports)?;
        n += self.local.upsert(&local)?;
        n += self.arp.upsert(&arp)?;
        n += self.identities.upsert(&s.identities)?;
        n += self.ifindex_ports.upsert(&s.ifindex_ports)?;
        n += self.config.sync(&[s.config])?;
        n += self.nexthops.sync(&s.nexthops)?;
        n += self.groups.sync(&groups)?;
        n += self.v4.sync(&s.v4)?;
        n += self.v6.sync(&s.v6)?;
        n += self.ifindex_ports.prune(&s.ifindex_ports)?;
        n += self.local.prune(&local)?;
        n += self.arp.prune(&arp)?;
        n += self.identities.prune(&s.identities)?;
        n += self.neighbours.prune(&s.neighbours)?;
        Ok(n)
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut Xdp, Error> {
        Ok(self
            .ebpf
            .program_mut(name)
            .ok_or(Error::Missing(name))?
            .try_into()?)
    }

    /// Attach the datapath to the port `interface` (a name in the calling
    /// thread's network namespace) in `mode`; it stays attached until
    /// [`Datapath::detach`] or until this object is dropped.
    pub fn attach(&mut self, interface: &str, mode: XdpMode) -> Result<Attachment, Error> {
        let link = self.program_mut(PROGRAM)?.attach(interface, mode)?;
        Ok(Attachment {
            program: PROGRAM,
            link,
        })
    }

    /// Attach the `XDP_PASS` program to `interface`, the peer end of a veth
    /// port, so that native `XDP_TX` and redirects into the port reach it.
    pub fn attach_peer(&mut self, interface: &str) -> Result<Attachment, Error> {
        let link = self
            .program_mut(PEER_PROGRAM)?
            .attach(interface, XdpMode::Driver)?;
        Ok(Attachment {
            program: PEER_PROGRAM,
            link,
        })
    }

    /// Detach one attachment.
    pub fn detach(&mut self, attachment: Attachment) -> Result<(), Error> {
        Ok(self
            .program_mut(attachment.program)?
            .detach(attachment.link)?)
    }

    /// Run `frame` through the program once as if received on the loopback
    /// device of the caller's namespace; `out` receives the frame as the program left it.
    /// Returns the XDP verdict.
    pub fn test_run(&self, frame: &[u8], out: &mut Vec<u8>) -> Result<u32, Error> {
        out.clear();
        // Room for the outer headers of an encapsulation.
        out.resize(frame.len() + 64, 0);
        let program: &Xdp = self
            .ebpf
            .program(PROGRAM)
            .ok_or(Error::Missing(PROGRAM))?
            .try_into()?;
        let result = program.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out[..]),
            ..TestRunOptions::new()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok(result.return_value)
    }

    /// Packets counted per exit reason, summed over CPUs (index: `Reason as usize`).
    pub fn reason_counts(&self) -> Result<[u64; Reason::COUNT], Error> {
        let mut counts = [0; Reason::COUNT];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = self.reasons.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(counts)
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
