//! The service datapath's map layouts (router-core's `service`: Cilium's
//! kube-proxy replacement), and the conversions between router-core's
//! tuples and their map keys, so the program and the loader encode alike.
//!
//! ```text
//!  SVC_CONFIG[half] ──> on/off, algorithm, Maglev M and seeds, SNAT
//!                       addresses, lifetimes, which ports face pods
//!  SVC_FRONTENDS[half, frontend, scope] ──> backend set: first slot and
//!                       count in SVC_SLOTS, Maglev table, affinity seconds
//!  SVC_SLOTS[half][first + random % count] ──> backend ID (ascending)
//!  SVC_MAGLEV[half][set * M + hash % M] ──> backend ID
//!  SVC_IDS[half][backend ID] ──> backend address, port, protocol
//!  SVC_BACKENDS[half, backend] ──> ID, state, local, node address
//!  MASQ_EXCLUDE[half, IPv4 prefix] ──> destinations never masqueraded (LPM)
//!
//!  CT[original tuple] ──> reply tuple, frontend, state, deadline (LRU)
//!  CT_REPLY[reply tuple] ──> original tuple (LRU)
//!  AFFINITY[frontend, client] ──> backend, deadline (LRU)
//!  SVC_INPUTS[0] ──> the clock and the random number, when given
//!  SVC_WORK[0] ──> per-CPU scratch: the headers, the rewrite target
//!  SVC_COUNTERS[counter] ──> per-CPU counts (router-core's `Counters`)
//! ```
//!
//! The table maps are double-buffered like the FIB (the hash maps carry the
//! half in their keys); the connection maps are shared and written by the
//! programs. Addresses are 16 bytes, IPv4 in the first four.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use router_core::service::{Protocol, Tuple};

use crate::family;

/// Default frontends (per half, per scope).
pub const DEFAULT_FRONTENDS: u32 = 1 << 12;
/// Default backends (IDs `1..DEFAULT_BACKENDS`, per half).
pub const DEFAULT_BACKENDS: u32 = 1 << 14;
/// Default backend slots of all sets together (per half).
pub const DEFAULT_SLOTS: u32 = 1 << 16;
/// Default Maglev tables (per half); each holds M entries.
pub const DEFAULT_MAGLEV_SETS: u32 = 16;
/// Default connections tracked.
pub const DEFAULT_CONNECTIONS: u32 = 1 << 16;
/// Default clients remembered for session affinity
/// (`CILIUM_LB_AFFINITY_MAP_MAX_ENTRIES`).
pub const DEFAULT_AFFINITY: u32 = 1 << 16;
/// Default sockets remembered as talking to a backend in a frontend's
/// stead (`CILIUM_LB4_REVERSE_NAT_SK_MAP_MAX_ENTRIES`).
pub const DEFAULT_SOCKETS: u32 = 1 << 16;
/// A set without a Maglev table.
pub const NO_MAGLEV: u32 = u32::MAX;

/// Frontend scopes (router-core's `Origin`): which backend set applies.
pub mod scope {
    /// Traffic from this node's pods and host (`internalTrafficPolicy`).
    pub const INTERNAL: u8 = 0;
    /// Traffic arriving on an uplink (`externalTrafficPolicy`).
    pub const EXTERNAL: u8 = 1;
}

/// `ServiceConfig::mode` (router-core's `service::datapath::Mode`).
pub mod mode {
    /// Requests to a backend elsewhere are source-NATed to the node.
    pub const SNAT: u8 = 0;
    /// Requests to a backend elsewhere are dispatched to its node in Geneve.
    pub const DSR: u8 = 1;
    /// TCP as [`DSR`], the rest as [`SNAT`].
    pub const HYBRID: u8 = 2;
}

/// Entries of `SVC_COUNTERS`, as router-core's `service::datapath::Counters`.
pub mod counter {
    /// Flows opened to a frontend.
    pub const OPENED: u32 = 0;
    /// Of those, flows source-NATed to the node's address.
    pub const SNAT: u32 = 1;
    /// Packets dropped for a frontend without a backend.
    pub const NO_BACKEND: u32 = 2;
    /// Packets dropped for another reason.
    pub const OTHER_DROPS: u32 = 3;
    /// Replies translated back to a frontend's address.
    pub const REPLIES: u32 = 4;
    /// Requests dispatched to a backend's node (DSR).
    pub const DISPATCHED: u32 = 5;
    /// Flows of local pods masqueraded to the node's address.
    pub const MASQUERADED: u32 = 6;
    /// Entries of the map.
    pub const COUNT: u32 = 7;
}

/// `Connection::kind` (router-core's `service::datapath` flow kinds).
pub mod kind {
    /// A flow to a frontend.
    pub const SERVICE: u8 = 0;
    /// A local pod's flow to the world, source-NATed to the node's address.
    pub const MASQUERADE: u8 = 1;
    /// A flow from outside to a local pod, tracked untranslated.
    pub const INBOUND: u8 = 2;
}

/// Pod CIDRs of this node `ServiceConfig` holds (masquerading's local pods).
pub const MASQ_PODS: usize = 4;

/// Default destinations never masqueraded (per half).
pub const DEFAULT_MASQ_EXCLUSIONS: u32 = 1 << 12;

/// Key data of `MASQ_EXCLUDE`, an LPM trie whose prefix length counts the
/// half's byte too (8 + the prefix's length):
///
/// ```text
///  0        1        2        3        4        5        8
/// +--------+--------+--------+--------+--------+--------+
/// |  half  |         IPv4 address (prefix)     |  zero  |
/// +--------+--------+--------+--------+--------+--------+
/// ```
#[inline(always)]
pub fn masq_key(half: u8, addr: Ipv4Addr) -> [u8; 8] {
    let o = addr.octets();
    [half, o[0], o[1], o[2], o[3], 0, 0, 0]
}

/// Encode an address: family and 16 bytes.
#[inline(always)]
fn encode(addr: IpAddr) -> (u8, [u8; 16]) {
    match addr {
        IpAddr::V4(a) => {
            let mut b = [0; 16];
            let o = a.octets();
            b[0] = o[0];
            b[1] = o[1];
            b[2] = o[2];
            b[3] = o[3];
            (family::V4, b)
        }
        IpAddr::V6(a) => (family::V6, a.octets()),
    }
}

/// Decode an address; `None` for an unknown family.
#[inline(always)]
fn decode(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        family::V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        family::V6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
        _ => None,
    }
}

/// A 5-tuple (router-core's `service::Tuple`): the key of `CT` and
/// `CT_REPLY`, and `CT_REPLY`'s value. Ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// `family::V4` or `family::V6`.
    pub family: u8,
    /// IP protocol number.
    pub protocol: u8,
    /// Zero.
    pub pad: [u8; 2],
}

impl FlowKey {
    /// The key of `t`.
    #[inline(always)]
    pub fn of(t: &Tuple) -> Self {
        let (family, src) = encode(t.src);
        let (_, dst) = encode(t.dst);
        FlowKey {
            src,
            dst,
            src_port: t.src_port,
            dst_port: t.dst_port,
            family,
            protocol: t.protocol.number(),
            pad: [0; 2],
        }
    }

    /// Make this the key of `t`, field by field (no temporary: eBPF stack
    /// space is scarce).
    #[inline(always)]
    pub fn set(&mut self, t: &Tuple) {
        let (family, src) = encode(t.src);
        self.src = src;
        self.dst = encode(t.dst).1;
        self.src_port = t.src_port;
        self.dst_port = t.dst_port;
        self.family = family;
        self.protocol = t.protocol.number();
        self.pad = [0; 2];
    }

    /// The key of the tuple going the other way.
    #[inline(always)]
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// The tuple this key encodes; `None` if it encodes none.
    #[inline(always)]
    pub fn tuple(&self) -> Option<Tuple> {
        Some(Tuple {
            src: decode(self.family, &self.src)?,
            dst: decode(self.family, &self.dst)?,
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: Protocol::from_number(self.protocol)?,
        })
    }
}

/// An address, port and protocol (router-core's `service::table::L3n4`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L3n4Key {
    /// The address.
    pub addr: [u8; 16],
    /// The port, host order.
    pub port: u16,
    /// `family::V4` or `family::V6`.
    pub family: u8,
    /// IP protocol number.
    pub protocol: u8,
}

impl L3n4Key {
    /// The key of `addr:port/protocol`.
    #[inline(always)]
    pub fn new(addr: IpAddr, port: u16, protocol: Protocol) -> Self {
        let (family, addr) = encode(addr);
        L3n4Key {
            addr,
            port,
            family,
            protocol: protocol.number(),
        }
    }

    /// The address this key holds; `None` if it holds none.
    #[inline(always)]
    pub fn ip(&self) -> Option<IpAddr> {
        decode(self.family, &self.addr)
    }
}

/// Key of `SVC_FRONTENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrontendKey {
    /// The frontend.
    pub frontend: L3n4Key,
    /// The half of the table it belongs to.
    pub half: u8,
    /// `scope::INTERNAL` or `scope::EXTERNAL`.
    pub scope: u8,
    /// Zero.
    pub pad: [u8; 2],
}

/// Value of `SVC_FRONTENDS`: the backend set of one scope of a frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendSet {
    /// Its first slot in `SVC_SLOTS`.
    pub first: u32,
    /// Active backends (slots).
    pub count: u32,
    /// Its Maglev table's index in `SVC_MAGLEV`, or [`NO_MAGLEV`].
    pub maglev: u32,
    /// `sessionAffinity: ClientIP` timeout in seconds; 0 without affinity.
    pub affinity: u32,
}

/// Key of `SVC_BACKENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendKey {
    /// The backend.
    pub backend: L3n4Key,
    /// The half of the table it belongs to.
    pub half: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// Value of `SVC_BACKENDS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// Its ID (its entry in `SVC_IDS`, what the sets' slots hold).
    pub id: u32,
    /// The address of its node (DSR), when `node_family` is set.
    pub node: [u8; 16],
    /// `family::V4`, `family::V6`, or 0 when the node is unknown.
    pub node_family: u8,
    /// 1 while terminating (keeps its flows, takes no new ones).
    pub terminating: u8,
    /// 1 when it runs on this node.
    pub local: u8,
    /// Zero.
    pub pad: u8,
}

/// Value of `CT`: one tracked connection, keyed by its original tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// Its reply tuple (the request as sent on, reversed).
    pub reply: FlowKey,
    /// The frontend the client asked for.
    pub frontend: L3n4Key,
    /// router-core's `service::lifetime::State`.
    pub state: u8,
    /// What it is ([`kind`]).
    pub kind: u8,
    /// Zero.
    pub pad: [u8; 2],
    /// The backend's node its requests are dispatched to in Geneve (DSR),
    /// IPv4; zero when they are not.
    pub dispatch: [u8; 4],
    /// Zero.
    pub pad2: [u8; 4],
    /// When it expires, in the clock's nanoseconds.
    pub deadline: u64,
}

/// Key of `AFFINITY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AffinityKey {
    /// The frontend.
    pub frontend: L3n4Key,
    /// The client's address.
    pub client: [u8; 16],
    /// The client's family.
    pub family: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// Value of `AFFINITY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityEntry {
    /// The backend the client reached last.
    pub backend: L3n4Key,
    /// Zero.
    pub pad: [u8; 4],
    /// When the entry expires, in the clock's nanoseconds.
    pub deadline: u64,
}

/// Value of `SVC_CONFIG` (one per half).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceConfig {
    /// 1 when the service stage runs.
    pub enabled: u8,
    /// 0: random, 1: Maglev (router-core's `lookup::Algorithm`).
    pub algorithm: u8,
    /// 1 when `snat_v4` is set.
    pub has_snat_v4: u8,
    /// 1 when `snat_v6` is set.
    pub has_snat_v6: u8,
    /// Maglev table size M.
    pub maglev_size: u32,
    /// `HASH_INIT4_SEED` and `HASH_INIT6_SEED`.
    pub seeds: [u32; 2],
    /// Lifetimes in seconds: TCP SYN, TCP established, TCP closing, others.
    pub lifetimes: [u32; 4],
    /// The node's IPv4 address outside traffic is source-NATed to.
    pub snat_v4: [u8; 4],
    /// The node's IPv6 address outside traffic is source-NATed to.
    pub snat_v6: [u8; 16],
    /// `loadBalancer.mode`: 0 snat, 1 dsr, 2 hybrid (router-core's `Mode`).
    pub mode: u8,
    /// 1 when pods' traffic is masqueraded (router-core's
    /// `Service::set_masquerade`; the exclusions are in `MASQ_EXCLUDE`).
    pub masquerade: u8,
    /// Entries of `masq_pods` in use.
    pub masq_pod_count: u8,
    /// Zero.
    pub pad: u8,
    /// Which ports face this node's pods (bit `port % 64` of word
    /// `port / 64`): their traffic is in-cluster.
    pub pod_ports: [u64; 4],
    /// The address pods' traffic is masqueraded to.
    pub masq_addr: [u8; 4],
    /// This node's pod CIDRs (masquerading's local pods): their addresses.
    pub masq_pods: [[u8; 4]; MASQ_PODS],
    /// Their prefix lengths.
    pub masq_pod_lens: [u8; MASQ_PODS],
}

/// Bytes of a packet's IP and transport headers the service stage copies:
/// the longest IPv4 header and a TCP header (IPv6: 40 + 20).
pub const HEADERS: usize = 80;

/// Size of the buffer the headers are copied to: a power of two, so a
/// masked index is in bounds where the verifier can see it.
pub const HEADER_BUFFER: usize = 128;

/// Value of `SVC_WORK`: one CPU's scratch space for the packet in flight
/// between the service stage's programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    /// A copy of the packet's headers (up to [`HEADERS`] bytes), rewritten in place.
    pub headers: [u8; HEADER_BUFFER],
    /// The tuple the packet is rewritten to.
    pub to: FlowKey,
    /// The packet's own tuple.
    pub key: FlowKey,
    /// The original tuple of the connection the packet belongs to.
    pub original: FlowKey,
    /// A connection being created.
    pub conn: Connection,
    /// Header bytes copied.
    pub len: u16,
    /// Where the transport header starts in them.
    pub l4: u16,
    /// The node the rewritten packet is dispatched to (DSR), IPv4; zero
    /// when it is routed on.
    pub dispatch: [u8; 4],
    /// The service of a request dispatched to this node (the DSR option of
    /// the tunnel frame just decapsulated), IPv4, and its port.
    pub accept: [u8; 4],
    /// The port of `accept`.
    pub accept_port: u16,
    /// 1 while the decapsulated frame's request is still to be tracked.
    pub accept_pending: u8,
    /// Zero.
    pub pad: u8,
}

/// Value of `SVC_INPUTS`: where the clock and the random numbers come from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// 0: the kernel's (`bpf_ktime_get_ns`, `bpf_get_prandom_u32`);
    /// 1: the two fields below (the differential harness's replay).
    pub given: u32,
    /// The random number, when given.
    pub random: u32,
    /// The time in nanoseconds, when given.
    pub now: u64,
}

/// Key of `SOCK_REVNAT`: a socket (its cookie) and the backend the
/// socket-level balancer gave it (Cilium's `ipv4_revnat_tuple`). The value
/// is the frontend the socket asked for, which `recvmsg()` and
/// `getpeername()` show in the backend's place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketKey {
    /// The socket's cookie (`SO_COOKIE`).
    pub cookie: u64,
    /// The backend.
    pub backend: L3n4Key,
    /// Zero.
    pub pad: [u8; 4],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<L3n4Key>(), 20);
        assert_eq!(size_of::<FrontendKey>(), 24);
        assert_eq!(size_of::<BackendSet>(), 16);
        assert_eq!(size_of::<BackendKey>(), 24);
        assert_eq!(size_of::<Backend>(), 24);
        assert_eq!(size_of::<Connection>(), 40 + 20 + 4 + 8 + 8);
        assert_eq!(size_of::<AffinityKey>(), 40);
        assert_eq!(size_of::<AffinityEntry>(), 32);
        assert_eq!(
            size_of::<ServiceConfig>(),
            4 + 4 + 8 + 16 + 4 + 16 + 4 + 32 + 4 + 16 + 4
        );
        assert_eq!(size_of::<Inputs>(), 16);
        assert_eq!(size_of::<SocketKey>(), 32);
        assert_eq!(size_of::<Work>(), HEADER_BUFFER + 3 * 40 + 80 + 8 + 8);
    }

    #[test]
    fn keys_round_trip_tuples() {
        let t = Tuple {
            src: "fd00::7".parse().unwrap(),
            dst: "fd00::1".parse().unwrap(),
            src_port: 40000,
            dst_port: 80,
            protocol: Protocol::Udp,
        };
        assert_eq!(FlowKey::of(&t).tuple(), Some(t));
        let v4 = Tuple {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 96, 0, 10]),
            ..t
        };
        let key = FlowKey::of(&v4);
        assert!(key.src[4..].iter().all(|&b| b == 0));
        assert_eq!(key.tuple(), Some(v4));
        assert_eq!(FlowKey::default().tuple(), None);
    }
}
