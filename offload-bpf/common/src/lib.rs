//! The map layouts nexthop's eBPF programs and their loader agree on.
//!
//! Owns only `#[repr(C)]` keys and values and the map sizes; filling the maps is
//! the loader's job (`nexthop-offload-bpf`), reading them the programs' (the
//! eBPF crate). The FIB node layout itself is router-core's [`lpm::Node`],
//! wrapped here so the loader can implement `aya::Pod` for it (feature `user`).
//!
//! ```text
//!  V4_DIRECT/V4_NODES/V4_LEAVES ─┐ poptrie walk (router_core::lpm::lookup)
//!  V6_DIRECT/V6_NODES/V6_LEAVES ─┴──> leaf = group id
//!  GROUP_BUCKETS[group id][bucket_of(flow hash)] ──> nexthop slot
//!    (a leaf with SINGLE_NEXTHOP set is the slot itself)
//!  NEXTHOPS[slot] ──> kind, port, address ──> NEIGHBOURS[address] ──> MAC
//!  PORTS[port] ──> ifindex, MAC, MTU          CONFIG[0] ──> hash, tunnel endpoint
//!  INGRESS[ifindex] / IFINDEX_PORTS[ifindex] ──> port + 1 / port
//!  LOCAL[address] ──> for the host
//!  ARP_ADDRS[port, IPv4] ──> answered by ARP  IDENTITIES[source] ──> VNI
//!  NDP_ADDRS[port, IPv6] ──> answered by NDP
//!  LOCAL_FILTER[low 16 bits of an address] ──> "may be in LOCAL"
//!  REASONS[reason] ──> per-CPU packet counter
//!  FLOW_SETTINGS[0] ──> flow events on?  FLOWS ──> flow events (ring buffer)
//!  ACTIVE[0] ──> the half of the double-buffered maps packets read
//! ```
//!
//! The tries, group buckets, nexthops, ports and settings are double-buffered:
//! those maps hold [`HALVES`] copies, entry `i` of half `h` at `h * capacity + i`.
#![no_std]
#![warn(missing_docs)]

use router_core::lpm;

pub mod flow;
pub mod service;

/// Buckets per nexthop group: the same as router-core's `ecmp::BUCKETS`.
pub const BUCKETS: usize = 256;

/// Direct-table entries of the IPv4 trie (router-core's `fib::V4_DIRECT_BITS`).
pub const V4_DIRECT_BITS: u32 = 18;
/// Direct-table entries of the IPv6 trie (router-core's `fib::V6_DIRECT_BITS`).
pub const V6_DIRECT_BITS: u32 = 16;

/// Copies of each double-buffered map: the half packets read and the one the loader rewrites.
pub const HALVES: u32 = 2;

/// Default capacity of each half of a node array (the loader may resize before loading).
pub const DEFAULT_NODES: u32 = 1 << 16;
/// Default capacity of each leaf array.
pub const DEFAULT_LEAVES: u32 = 1 << 18;
/// Default number of nexthop groups (group ids `1..DEFAULT_GROUPS`).
pub const DEFAULT_GROUPS: u32 = 1 << 12;
/// Default number of nexthop slots.
pub const DEFAULT_NEXTHOPS: u32 = 1 << 14;
/// Default number of neighbour entries.
pub const DEFAULT_NEIGHBOURS: u32 = 1 << 14;
/// Ports (`PortId` values `0..MAX_PORTS`).
pub const MAX_PORTS: u32 = 256;
/// Default number of local addresses (owned, announced, tunnel endpoint), and
/// and of (port, address) pairs ARP or NDP answers for.
pub const DEFAULT_LOCAL: u32 = 1 << 12;
/// Default number of source identities (Cilium's ipcache).
pub const DEFAULT_IDENTITIES: u32 = 1 << 16;
/// Entries of the `REASONS` counter map: one per `router_core::datapath::Reason`.
pub const REASONS: u32 = router_core::datapath::Reason::COUNT as u32;

/// One poptrie node in a map: router-core's layout, unchanged.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibNode(pub lpm::Node);

/// The bucket table of one nexthop group: the nexthop slot of every bucket.
/// Single-member groups have every bucket on their one slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBuckets(pub [u32; BUCKETS]);

impl Default for GroupBuckets {
    /// An unused group: every bucket on slot 0 (an unused nexthop).
    fn default() -> Self {
        GroupBuckets([0; BUCKETS])
    }
}

/// What a nexthop slot does with a packet ([`Nexthop::kind`]).
pub mod kind {
    /// Via the gateway at [`super::Nexthop::addr`] on the port.
    pub const GATEWAY: u8 = 1;
    /// The destination itself is on the port's link.
    pub const CONNECTED: u8 = 2;
    /// Encapsulated to the tunnel endpoint at the address.
    pub const TUNNEL: u8 = 3;
    /// Dropped.
    pub const BLACKHOLE: u8 = 4;
}

/// Address family tags of [`IpKey`].
pub mod family {
    /// IPv4: the address is in the first four bytes.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// An IPv4 or IPv6 address as a map key: family tag, zero padding, 16 address bytes
/// (IPv4 in the first four, the rest zero). Every byte is defined, so equal
/// addresses are equal keys.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpKey {
    /// [`family::V4`] or [`family::V6`].
    pub family: u8,
    /// Always zero.
    pub pad: [u8; 3],
    /// Address bytes in network order.
    pub addr: [u8; 16],
}

impl IpKey {
    /// The key of an IPv4 address given as its four bytes.
    #[inline(always)]
    pub fn v4(octets: [u8; 4]) -> Self {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&octets);
        IpKey {
            family: family::V4,
            pad: [0; 3],
            addr,
        }
    }

    /// The key of an IPv6 address.
    #[inline(always)]
    pub fn v6(octets: [u8; 16]) -> Self {
        IpKey {
            family: family::V6,
            pad: [0; 3],
            addr: octets,
        }
    }
}

/// One member of a nexthop group, by slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nexthop {
    /// One of [`kind`]; 0 is an unused slot.
    pub kind: u8,
    /// For tunnels: one of [`encap`].
    pub encap: u8,
    /// The egress port (`PortId`) for gateways and connected nexthops.
    pub port: u16,
    /// For tunnels: the configured VNI, or [`VNI_FROM_IDENTITY`].
    pub vni: u32,
    /// The gateway or tunnel endpoint address (unused for connected and blackhole).
    pub addr: IpKey,
    /// For gateways: the gateway's MAC when [`Nexthop::resolved`] is 1, so
    /// that forwarding needs no neighbour lookup (the loader rewrites the slot
    /// when the neighbour changes).
    pub mac: [u8; 6],
    /// 1 when [`Nexthop::mac`] holds the gateway's resolved MAC, else 0.
    pub resolved: u8,
    /// Always zero.
    pub pad: u8,
    /// A copy of port [`Nexthop::port`] (ifindex 0: no such port), so that
    /// forwarding reads one entry less.
    pub egress: Port,
}

/// Interface indexes below this find their port in the `INGRESS` array (one
/// load); larger ones in the `IFINDEX_PORTS` hash map.
pub const INGRESS_IFINDEXES: u32 = 1 << 16;

/// Words of the local-address filter: one bit per value of an address's low 16 bits.
pub const LOCAL_FILTER_WORDS: u32 = (1 << 16) / 64;

/// The bit of the local-address filter for `key`: its last two address bytes.
/// A clear bit proves the address is not in `LOCAL`, saving the hash lookup
/// for almost every forwarded packet; a set bit means "look it up".
#[inline(always)]
pub fn local_filter_bit(key: &IpKey) -> (u32, u64) {
    let at = if key.family == family::V4 { 2 } else { 14 };
    let low = u32::from(u16::from_be_bytes([key.addr[at], key.addr[at + 1]]));
    (low / 64, 1 << (low % 64))
}

/// Set in a trie leaf value that is a nexthop slot (the only member of its
/// group) rather than a group id: forwarding skips the group's bucket table.
pub const SINGLE_NEXTHOP: u32 = 1 << 30;

/// [`Nexthop::vni`] meaning "carry the source's security identity".
pub const VNI_FROM_IDENTITY: u32 = u32::MAX;

/// The VNI of traffic from sources without an identity: Cilium's reserved
/// identity `world` (router-core's `datapath::pipeline::IDENTITY_WORLD`).
pub const IDENTITY_WORLD: u32 = 2;

/// A neighbour's link-layer address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

/// One port of the host, indexed by `PortId`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Port {
    /// The kernel interface index frames leave by; 0 for an unused slot.
    pub ifindex: u32,
    /// The port's MAC: source of forwarded frames.
    pub mac: [u8; 6],
    /// Largest IP packet the port sends.
    pub mtu: u16,
}

/// An IPv4 address a port answers ARP requests for (owned or announced there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArpKey {
    /// The port (`PortId`).
    pub port: u16,
    /// Always zero.
    pub pad: [u8; 2],
    /// The address in network order.
    pub addr: [u8; 4],
}

/// An IPv6 address a port answers neighbour solicitations for (owned or
/// announced there).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NdpKey {
    /// The port (`PortId`).
    pub port: u16,
    /// Always zero.
    pub pad: [u8; 2],
    /// The address in network order.
    pub addr: [u8; 16],
}

/// [`Nexthop::encap`] values.
pub mod encap {
    /// VXLAN (RFC 7348).
    pub const VXLAN: u8 = 0;
    /// Geneve (RFC 8926).
    pub const GENEVE: u8 = 1;
}

/// Datapath-wide settings, the one entry of the `CONFIG` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Seed of the flow hash.
    pub hash_seed: u32,
    /// 0: L3 hash (addresses), 1: L4 hash (5-tuple); Linux `fib_multipath_hash_policy`.
    pub hash_policy: u8,
    /// 1 when the host has a tunnel endpoint (the fields below), else 0.
    pub tunnel: u8,
    /// UDP port of VXLAN.
    pub vxlan_port: u16,
    /// Underlay address of the tunnel endpoint, network order.
    pub tunnel_local: [u8; 4],
    /// UDP port of Geneve.
    pub geneve_port: u16,
    /// Destination MAC of encapsulated inner frames.
    pub inner_mac: [u8; 6],
    /// 1 when Geneve frames carrying Cilium's DSR option are accepted
    /// (service requests dispatched to this node), else 0.
    pub dsr: u8,
    /// Zero.
    pub pad: [u8; 3],
    /// Which ports face this node's pods (Cilium's `lxc` devices): bit
    /// `port % 32` of word `port / 32`. Flow events name their sides by it.
    pub pod_ports: [u32; MAX_PORTS as usize / 32],
}

impl Config {
    /// Whether port `id` faces this node's pods. Port ids are below
    /// [`MAX_PORTS`] (the loader refuses others); a larger one reads as
    /// `id % MAX_PORTS`.
    #[inline(always)]
    pub fn is_pod_port(&self, id: u16) -> bool {
        // The mask, with no range check the compiler could fold it into,
        // bounds the index for the verifier.
        let word = usize::from(id / 32) & (self.pod_ports.len() - 1);
        self.pod_ports[word] & (1 << (id % 32)) != 0
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are `#[repr(C)]`/`#[repr(transparent)]` over integers and byte
    // arrays with no implicit padding, so every bit pattern is a valid value.
    unsafe impl aya::Pod for super::FibNode {}
    unsafe impl aya::Pod for super::GroupBuckets {}
    unsafe impl aya::Pod for super::IpKey {}
    unsafe impl aya::Pod for super::Nexthop {}
    unsafe impl aya::Pod for super::Mac {}
    unsafe impl aya::Pod for super::Port {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::ArpKey {}
    unsafe impl aya::Pod for super::NdpKey {}
    unsafe impl aya::Pod for super::service::FlowKey {}
    unsafe impl aya::Pod for super::service::L3n4Key {}
    unsafe impl aya::Pod for super::service::FrontendKey {}
    unsafe impl aya::Pod for super::service::BackendSet {}
    unsafe impl aya::Pod for super::service::BackendKey {}
    unsafe impl aya::Pod for super::service::Backend {}
    unsafe impl aya::Pod for super::service::Connection {}
    unsafe impl aya::Pod for super::service::AffinityKey {}
    unsafe impl aya::Pod for super::service::AffinityEntry {}
    unsafe impl aya::Pod for super::service::ServiceConfig {}
    unsafe impl aya::Pod for super::service::Inputs {}
    unsafe impl aya::Pod for super::service::SocketKey {}
    unsafe impl aya::Pod for super::service::Work {}
    unsafe impl aya::Pod for super::flow::FlowEvent {}
    unsafe impl aya::Pod for super::flow::Settings {}
    unsafe impl aya::Pod for super::flow::State {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FibNode>(), 24);
        assert_eq!(size_of::<GroupBuckets>(), 4 * BUCKETS);
        assert_eq!(size_of::<IpKey>(), 20);
        assert_eq!(size_of::<Nexthop>(), 1 + 1 + 2 + 4 + 20 + 6 + 1 + 1 + 12);
        assert_eq!(size_of::<Mac>(), 6);
        assert_eq!(size_of::<Port>(), 4 + 6 + 2);
        assert_eq!(size_of::<Config>(), 4 + 1 + 1 + 2 + 4 + 2 + 6 + 4 + 32);
        assert_eq!(size_of::<ArpKey>(), 8);
        assert_eq!(size_of::<NdpKey>(), 20);
    }

    #[test]
    fn local_filter_bits_come_from_the_last_two_address_bytes() {
        assert_eq!(local_filter_bit(&IpKey::v4([10, 0, 1, 65])), (5, 1 << 1));
        let mut v6 = [0; 16];
        v6[15] = 3;
        assert_eq!(local_filter_bit(&IpKey::v6(v6)), (0, 1 << 3));
    }

    #[test]
    fn ipv4_keys_zero_the_tail() {
        let k = IpKey::v4([10, 0, 0, 1]);
        assert_eq!(k.family, family::V4);
        assert_eq!(&k.addr[..4], &[10, 0, 0, 1]);
        assert!(k.addr[4..].iter().all(|&b| b == 0));
    }
}
