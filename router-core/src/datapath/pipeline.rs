//! The reference datapath: one frame in, a verdict and the frame out.
//!
//! Owns the pipeline order of shared/DESIGN.md ("Datapath, specified once"):
//! Ethernet → ARP reply → NDP reply → IPv4/IPv6 checks → local delivery → tunnel decap →
//! FIB longest-prefix match → ECMP member by flow hash → neighbour lookup →
//! TTL/hop-limit decrement (incremental checksum) → MAC rewrite or tunnel encap.
//! It reads tables and never changes them: learning, ARP resolution and ICMP
//! are the slow path's, reached through [`Action::Pass`](super::Action::Pass).
//! The eBPF programs implement the same function and are tested against it.
//!
//! Output bytes: for a transmit, the frame to send (IP frames trimmed to the IP
//! length, i.e. without Ethernet padding); for a pass, the frame the host stack
//! should see (the inner frame after a decap, otherwise the input unchanged);
//! for a drop, the frame as it was when dropped.
//!
//! [`originate`] is the same route-and-frame tail for IP packets the host's own
//! stack sends: no ingress checks, no TTL decrement.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, UdpPacket,
};

use super::checksum;
use super::reason::Reason;
use crate::ecmp::{HashPolicy, hash};
use crate::fib::{Encap, Fib, NexthopKind};
use crate::neighbour::{self, arp, ndp};
use crate::port::PortId;
use crate::service::datapath::Mode;
use crate::wire::geneve::DsrOption;
use crate::wire::layout::{
    ENCAP_OVERHEAD, ETHERNET_HEADER_LEN as ETH, IPV4_HEADER_LEN, OUTER_TTL, OUTER_TUNNEL_AT,
    OUTER_UDP_AT, UDP_HEADER_LEN,
};
use crate::wire::{self, geneve, vxlan};

/// Cilium's reserved identity `world`: the VNI of traffic from unknown sources.
pub const IDENTITY_WORLD: u32 = 2;

/// One port as the datapath sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortConfig {
    /// MAC and the IPv4 addresses the port owns or announces (answers ARP for).
    pub addrs: arp::PortAddrs,
    /// The IPv6 addresses the port owns or announces (answers neighbour
    /// solicitations for).
    pub ipv6: ndp::PortAddrsV6,
    /// Largest IP packet the port sends.
    pub mtu: u16,
}

/// The host's tunnel endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// Underlay source address of encapsulated frames; decap accepts frames to it.
    pub local: Ipv4Addr,
    /// UDP port of VXLAN (8472 like Linux and Cilium, or 4789).
    pub vxlan_port: u16,
    /// UDP port of Geneve (6081).
    pub geneve_port: u16,
    /// Destination MAC of the inner frame (every node's tunnel device MAC).
    pub inner_mac: EthernetAddress,
    /// Accept Geneve frames carrying Cilium's DSR option (service requests
    /// dispatched to this node, `loadBalancer.dsrDispatch: geneve`); without
    /// it their critical option makes them [`Reason::BadTunnelHeader`].
    pub dsr: bool,
}

impl TunnelConfig {
    /// Cilium-compatible ports for a tunnel endpoint at `local`.
    pub fn new(local: Ipv4Addr, inner_mac: EthernetAddress) -> Self {
        TunnelConfig {
            local,
            vxlan_port: vxlan::PORT_LINUX,
            geneve_port: geneve::PORT,
            inner_mac,
            dsr: false,
        }
    }

    /// A Cilium node's tunnel endpoint at `local`, if it has one: in tunnel
    /// routing mode (`tunnel_routing`), and for DSR's Geneve dispatch
    /// (`loadBalancer.mode` dsr or hybrid), which also accepts the requests
    /// other nodes dispatch to it. Inner frames go to [`NODE_TUNNEL_MAC`].
    pub fn for_node(local: Ipv4Addr, tunnel_routing: bool, lb_mode: Mode) -> Option<Self> {
        let dsr = lb_mode != Mode::Snat;
        (tunnel_routing || dsr).then(|| TunnelConfig {
            dsr,
            ..TunnelConfig::new(local, NODE_TUNNEL_MAC)
        })
    }
}

/// The MAC inner frames are addressed to on every node's tunnel endpoint
/// (a locally administered address, as Cilium's `cilium_vxlan` device's is
/// of no account to the receiver).
pub const NODE_TUNNEL_MAC: EthernetAddress = EthernetAddress([0x02, 0xc1, 0x11, 0x00, 0x00, 0x01]);

/// Datapath-wide settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// Which fields feed the ECMP flow hash.
    pub hash_policy: HashPolicy,
    /// Seed of the flow hash.
    pub hash_seed: u32,
    /// The tunnel endpoint, if the host has one.
    pub tunnel: Option<TunnelConfig>,
}

/// Everything the pipeline reads.
#[derive(Clone, Copy, Debug)]
pub struct Tables<'a> {
    /// Routes and nexthop groups.
    pub fib: &'a Fib,
    /// Link-layer addresses of nexthops.
    pub neighbours: &'a neighbour::Table,
    /// The host's ports.
    pub ports: &'a BTreeMap<PortId, PortConfig>,
    /// Security identity per source address (Cilium's ipcache), the VNI of encapsulated traffic.
    pub identities: &'a BTreeMap<IpAddr, u32>,
    /// Settings.
    pub config: &'a Config,
}

/// The tables a host owns and lends to [`process`] as [`Tables`].
#[derive(Clone, Debug)]
pub struct OwnedTables {
    /// Routes and nexthop groups.
    pub fib: Fib,
    /// Link-layer addresses of nexthops.
    pub neighbours: neighbour::Table,
    /// The host's ports.
    pub ports: BTreeMap<PortId, PortConfig>,
    /// Security identity per source address.
    pub identities: BTreeMap<IpAddr, u32>,
    /// Settings.
    pub config: Config,
}

impl OwnedTables {
    /// The tables as the pipeline reads them.
    pub fn tables(&self) -> Tables<'_> {
        Tables {
            fib: &self.fib,
            neighbours: &self.neighbours,
            ports: &self.ports,
            identities: &self.identities,
            config: &self.config,
        }
    }
}

/// The outcome for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Why (and so what: [`Reason::action`]).
    pub reason: Reason,
    /// The port to transmit on, for transmit verdicts.
    pub egress: Option<PortId>,
    /// For [`Reason::NeighbourMiss`]: the address to resolve and its port.
    pub resolve: Option<(IpAddr, PortId)>,
    /// For a frame decapsulated from Geneve with Cilium's DSR option: the
    /// service address the inner request was sent to (the service stage
    /// answers the flow's replies from it).
    pub dsr: Option<DsrOption>,
    /// The verdict is the inner frame's, after a decapsulation (the output
    /// is the inner frame).
    pub decapsulated: bool,
    /// For [`Reason::FragmentationNeeded`]: the largest packet the way out
    /// takes (the egress MTU, less the tunnel headers when encapsulating),
    /// what an ICMP "fragmentation needed" tells the sender.
    pub mtu: Option<u16>,
    /// For [`Reason::Encapsulated`]: where the encapsulated IP packet
    /// starts in the output frame (past the outer headers, options and the
    /// inner Ethernet header).
    pub inner_at: Option<usize>,
}

impl Verdict {
    fn of(reason: Reason) -> Self {
        Verdict {
            reason,
            egress: None,
            resolve: None,
            dsr: None,
            decapsulated: false,
            mtu: None,
            inner_at: None,
        }
    }

    /// The IP packet a flow event of this verdict is about, in the frame
    /// `out` the datapath left: the frame's own, or after an encapsulation
    /// the inner one (empty when `out` holds none).
    pub fn observed_ip<'a>(&self, out: &'a [u8]) -> &'a [u8] {
        out.get(self.inner_at.unwrap_or(ETH)..).unwrap_or_default()
    }
    fn transmit(reason: Reason, port: PortId) -> Self {
        Verdict {
            egress: Some(port),
            ..Verdict::of(reason)
        }
    }
    fn too_big(mtu: usize) -> Self {
        Verdict {
            mtu: Some(u16::try_from(mtu).unwrap_or(u16::MAX)),
            ..Verdict::of(Reason::FragmentationNeeded)
        }
    }
}

/// Run `frame`, received on `ingress`, through the pipeline; `out` receives the output bytes.
pub fn process(t: &Tables, ingress: PortId, frame: &[u8], out: &mut Vec<u8>) -> Verdict {
    out.clear();
    out.extend_from_slice(frame);
    let Some(port) = t.ports.get(&ingress) else {
        return Verdict::of(Reason::UnknownPort);
    };
    let Ok(eth) = EthernetFrame::new_checked(&out[..]) else {
        return Verdict::of(Reason::Malformed);
    };
    let dst = eth.dst_addr();
    if dst != port.addrs.mac && !dst.is_broadcast() && !dst.is_multicast() {
        return Verdict::of(Reason::OtherHost);
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => match arp::respond(ingress, &port.addrs, &out[..]).reply {
            Ok(reply) => {
                *out = reply;
                Verdict::transmit(Reason::ArpReply, ingress)
            }
            Err(arp::Silence::Malformed) => Verdict::of(Reason::Malformed),
            Err(_) => Verdict::of(Reason::ArpOther),
        },
        EthernetProtocol::Ipv4 => ipv4(t, out, false),
        EthernetProtocol::Ipv6 if ndp::message_type(out).is_some() => {
            neighbour_discovery(ingress, port, out)
        }
        EthernetProtocol::Ipv6 => ipv6(t, out),
        _ => Verdict::of(Reason::OtherProtocol),
    }
}

/// Answer a neighbour solicitation of the shape the datapath answers
/// ([`ndp::datapath_answers_shape`]) for an address of the port; every other
/// neighbour discovery message is the stack's.
fn neighbour_discovery(ingress: PortId, port: &PortConfig, out: &mut Vec<u8>) -> Verdict {
    if !ndp::datapath_answers_shape(out) {
        return Verdict::of(Reason::NdpOther);
    }
    match ndp::respond(ingress, port.addrs.mac, &port.ipv6, out).reply {
        Ok(reply) => {
            *out = reply;
            Verdict::transmit(Reason::NdpReply, ingress)
        }
        Err(_) => Verdict::of(Reason::NdpOther),
    }
}

/// Route an IP packet the host itself sends (`packet` starts at the IP header):
/// FIB lookup → ECMP member → neighbour → Ethernet framing or tunnel encap, as
/// for a forwarded packet but without the ingress checks and without touching
/// the TTL or hop limit. `out` receives the packet behind an Ethernet header;
/// its MAC addresses are filled in for transmit verdicts and zero otherwise.
/// A destination the host owns gives [`Reason::Local`]: the caller loops it back.
pub fn originate(t: &Tables, packet: &[u8], out: &mut Vec<u8>) -> Verdict {
    out.clear();
    out.resize(ETH, 0);
    out.extend_from_slice(packet);
    let (routed, src) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(ip) = Ipv4Packet::new_checked(&out[ETH..]) else {
                return Verdict::of(Reason::Malformed);
            };
            let not_fragment = ip.frag_offset() == 0 && !ip.more_frags();
            (routed_v4(t, &ip, not_fragment, false), ip.src_addr().into())
        }
        Some(6) => {
            let Ok(ip) = Ipv6Packet::new_checked(&out[ETH..]) else {
                return Verdict::of(Reason::Malformed);
            };
            (routed_v6(t, &ip, false), ip.src_addr().into())
        }
        _ => return Verdict::of(Reason::Malformed),
    };
    let ethertype = match routed.dst {
        IpAddr::V4(_) => EthernetProtocol::Ipv4,
        IpAddr::V6(_) => EthernetProtocol::Ipv6,
    };
    out[12..ETH].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    if is_local(t, routed.dst) {
        return Verdict::of(Reason::Local);
    }
    forward(t, out, routed, src)
}

/// The routing-relevant facts of an IP packet at `out[ETH..]`.
#[derive(Clone, Copy, Debug)]
struct Routed {
    dst: IpAddr,
    /// IP header + payload length.
    len: usize,
    /// The flow hash (inner flow for tunnels).
    hash: u32,
    /// Whether the TTL or hop limit is decremented (forwarded, not originated).
    decrement: bool,
}

/// Flow hash and length of an IPv4 packet.
fn routed_v4(t: &Tables, ip: &Ipv4Packet<&[u8]>, not_fragment: bool, decrement: bool) -> Routed {
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let l4 = ports_of(ip.next_header(), ip.payload(), not_fragment);
    let c = t.config;
    let hash = hash::hash_v4(c.hash_policy, c.hash_seed, src.to_bits(), dst.to_bits(), l4);
    Routed {
        dst: IpAddr::V4(dst),
        len: usize::from(ip.total_len()),
        hash,
        decrement,
    }
}

/// Flow hash and length of an IPv6 packet.
fn routed_v6(t: &Tables, ip: &Ipv6Packet<&[u8]>, decrement: bool) -> Routed {
    let l4 = ports_of(ip.next_header(), ip.payload(), true);
    let words = |a: Ipv6Addr| {
        let o = a.octets();
        core::array::from_fn(|i| {
            u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
        })
    };
    let c = t.config;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let hash = hash::hash_v6(c.hash_policy, c.hash_seed, words(src), words(dst), l4);
    Routed {
        dst: IpAddr::V6(dst),
        len: 40 + usize::from(ip.payload_len()),
        hash,
        decrement,
    }
}

fn ports_of(proto: IpProtocol, l4: &[u8], first_fragment: bool) -> (u8, u16, u16) {
    let has_ports = matches!(proto, IpProtocol::Tcp | IpProtocol::Udp) || u8::from(proto) == 132; // SCTP
    if has_ports && first_fragment && l4.len() >= 4 {
        let sport = u16::from_be_bytes([l4[0], l4[1]]);
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        (u8::from(proto), sport, dport)
    } else {
        (u8::from(proto), 0, 0)
    }
}

fn ipv4(t: &Tables, out: &mut Vec<u8>, decapsulated: bool) -> Verdict {
    let Ok(ip) = Ipv4Packet::new_checked(&out[ETH..]) else {
        return Verdict::of(Reason::Malformed);
    };
    if ip.version() != 4 {
        return Verdict::of(Reason::Malformed);
    }
    if !ip.verify_checksum() {
        return Verdict::of(Reason::BadChecksum);
    }
    if usize::from(ip.header_len()) != IPV4_HEADER_LEN {
        return Verdict::of(Reason::SlowPath);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let not_fragment = ip.frag_offset() == 0 && !ip.more_frags();
    if dst.is_broadcast() || dst.is_multicast() || is_local(t, IpAddr::V4(dst)) {
        // UDP to our tunnel endpoint on a tunnel port: VXLAN (true) or Geneve (false).
        let tunnel = t
            .config
            .tunnel
            .filter(|tun| tun.local == dst)
            .and_then(|tun| {
                let port = UdpPacket::new_checked(ip.payload()).ok()?.dst_port();
                let udp = ip.next_header() == IpProtocol::Udp && not_fragment;
                (udp && (port == tun.vxlan_port || port == tun.geneve_port))
                    .then_some(port == tun.vxlan_port)
            });
        return match tunnel {
            Some(is_vxlan) if !decapsulated => decap(t, out, is_vxlan),
            _ => Verdict::of(Reason::Local),
        };
    }
    if ip.hop_limit() <= 1 {
        return Verdict::of(Reason::TtlExceeded);
    }
    let routed = routed_v4(t, &ip, not_fragment, true);
    forward(t, out, routed, IpAddr::V4(src))
}

fn ipv6(t: &Tables, out: &mut Vec<u8>) -> Verdict {
    let Ok(ip) = Ipv6Packet::new_checked(&out[ETH..]) else {
        return Verdict::of(Reason::Malformed);
    };
    if ip.version() != 6 {
        return Verdict::of(Reason::Malformed);
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if dst.is_multicast() || dst.is_unicast_link_local() || is_local(t, IpAddr::V6(dst)) {
        return Verdict::of(Reason::Local);
    }
    if ip.next_header() == IpProtocol::HopByHop {
        return Verdict::of(Reason::SlowPath);
    }
    if ip.hop_limit() <= 1 {
        return Verdict::of(Reason::TtlExceeded);
    }
    let routed = routed_v6(t, &ip, true);
    forward(t, out, routed, IpAddr::V6(src))
}

fn is_local(t: &Tables, addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            t.config.tunnel.is_some_and(|tun| tun.local == a)
                || t.ports.values().any(|p| p.addrs.answers_for(a))
        }
        IpAddr::V6(a) => t.ports.values().any(|p| p.ipv6.answers_for(a)),
    }
}

/// FIB lookup, ECMP member, then the member's kind decides.
fn forward(t: &Tables, out: &mut Vec<u8>, pkt: Routed, src: IpAddr) -> Verdict {
    let Some(group) = t.fib.lookup(pkt.dst).and_then(|g| t.fib.group(g)) else {
        return Verdict::of(Reason::NoRoute);
    };
    match group.select_by_hash(pkt.hash).kind {
        NexthopKind::Blackhole => Verdict::of(Reason::Blackhole),
        NexthopKind::Gateway { addr, port } => to_neighbour(t, out, pkt, port, addr),
        NexthopKind::Connected { port } => to_neighbour(t, out, pkt, port, pkt.dst),
        NexthopKind::Tunnel {
            endpoint,
            encap,
            vni,
        } => {
            let vni =
                vni.unwrap_or_else(|| t.identities.get(&src).copied().unwrap_or(IDENTITY_WORLD));
            encapsulate(t, out, pkt, endpoint, encap, vni, None)
        }
    }
}

/// Dispatch a service request to its backend's node (`loadBalancer.mode:
/// dsr` with `dsrDispatch: geneve`): the request `frame` (already DNATed to
/// the backend) goes, TTL decremented, in Geneve to `node` with Cilium's DSR
/// option carrying the service address `dsr`, so that the backend's node
/// answers from it directly. Routed and framed as a tunnel route's packet;
/// the VNI is the source's identity.
pub fn dispatch(
    t: &Tables,
    frame: &[u8],
    node: Ipv4Addr,
    dsr: DsrOption,
    out: &mut Vec<u8>,
) -> Verdict {
    out.clear();
    out.extend_from_slice(frame);
    let Ok(ip) = Ipv4Packet::new_checked(&out[ETH..]) else {
        return Verdict::of(Reason::Malformed);
    };
    if ip.hop_limit() <= 1 {
        return Verdict::of(Reason::TtlExceeded);
    }
    let not_fragment = ip.frag_offset() == 0 && !ip.more_frags();
    let src = IpAddr::V4(ip.src_addr());
    let routed = routed_v4(t, &ip, not_fragment, true);
    let vni = t.identities.get(&src).copied().unwrap_or(IDENTITY_WORLD);
    let node = IpAddr::V4(node);
    encapsulate(t, out, routed, node, Encap::Geneve, vni, Some(dsr))
}

/// Decrement the TTL or hop limit of a forwarded IP packet at `out[ETH..]`, fixing the
/// IPv4 checksum; originated packets keep theirs.
fn decrement_hop_limit(out: &mut [u8], pkt: Routed) {
    if !pkt.decrement {
        return;
    }
    let ip = &mut out[ETH..];
    if ip[0] >> 4 == 4 {
        let old = u16::from_be_bytes([ip[8], ip[9]]);
        ip[8] -= 1;
        let new = u16::from_be_bytes([ip[8], ip[9]]);
        let check = checksum::update16(u16::from_be_bytes([ip[10], ip[11]]), old, new);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
    } else {
        ip[7] -= 1;
    }
}

fn set_macs(out: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    out[0..6].copy_from_slice(dst.as_bytes());
    out[6..12].copy_from_slice(src.as_bytes());
}

/// Deliver on the link of `port` to `nexthop`'s MAC.
fn to_neighbour(
    t: &Tables,
    out: &mut Vec<u8>,
    pkt: Routed,
    port: PortId,
    nexthop: IpAddr,
) -> Verdict {
    let Some(egress) = t.ports.get(&port) else {
        return Verdict::of(Reason::UnknownPort);
    };
    if pkt.len > usize::from(egress.mtu) {
        return Verdict::too_big(usize::from(egress.mtu));
    }
    let Some(mac) = t.neighbours.lookup(nexthop) else {
        return Verdict {
            resolve: Some((nexthop, port)),
            ..Verdict::of(Reason::NeighbourMiss)
        };
    };
    out.truncate(ETH + pkt.len);
    decrement_hop_limit(out, pkt);
    set_macs(out, egress.addrs.mac, mac);
    Verdict::transmit(Reason::Forwarded, port)
}

/// Wrap the routed frame in Ethernet/IPv4/UDP/VXLAN-or-Geneve towards
/// `endpoint`; Geneve carries `dsr` as an option when given.
fn encapsulate(
    t: &Tables,
    out: &mut Vec<u8>,
    pkt: Routed,
    endpoint: IpAddr,
    encap: Encap,
    vni: u32,
    dsr: Option<DsrOption>,
) -> Verdict {
    let (Some(tun), IpAddr::V4(remote)) = (t.config.tunnel, endpoint) else {
        return Verdict::of(Reason::TunnelLoop);
    };
    let Some(group) = t.fib.lookup(endpoint).and_then(|g| t.fib.group(g)) else {
        return Verdict::of(Reason::NoRoute);
    };
    let (port, nexthop) = match group.select_by_hash(pkt.hash).kind {
        NexthopKind::Gateway { addr, port } => (port, addr),
        NexthopKind::Connected { port } => (port, endpoint),
        NexthopKind::Blackhole => return Verdict::of(Reason::Blackhole),
        NexthopKind::Tunnel { .. } => return Verdict::of(Reason::TunnelLoop),
    };
    let Some(egress) = t.ports.get(&port) else {
        return Verdict::of(Reason::UnknownPort);
    };
    let options = dsr.map(|d| d.emit());
    let options: &[u8] = options.as_ref().map_or(&[], |o| &o[..]);
    // The outer IP packet: outer IPv4, UDP and tunnel headers, the inner
    // Ethernet header (together ENCAP_OVERHEAD), options, the packet.
    let inner_mtu = usize::from(egress.mtu).saturating_sub(ENCAP_OVERHEAD + options.len());
    if pkt.len > inner_mtu {
        return Verdict::too_big(inner_mtu);
    }
    let Some(mac) = t.neighbours.lookup(nexthop) else {
        return Verdict {
            resolve: Some((nexthop, port)),
            ..Verdict::of(Reason::NeighbourMiss)
        };
    };
    out.truncate(ETH + pkt.len);
    decrement_hop_limit(out, pkt);
    set_macs(out, egress.addrs.mac, tun.inner_mac);

    let (dport, tunnel_header) = match encap {
        Encap::Vxlan => (tun.vxlan_port, {
            let mut h = [0u8; vxlan::HEADER_LEN];
            vxlan::Repr { vni }.emit(&mut vxlan::Header::new_unchecked(&mut h[..]));
            h.to_vec()
        }),
        Encap::Geneve => (tun.geneve_port, {
            let mut h = alloc::vec![0u8; geneve::HEADER_LEN];
            let repr = geneve::Repr {
                protocol: geneve::PROTOCOL_ETHERNET,
                vni,
                oam: false,
            };
            repr.emit(&mut geneve::Header::new_unchecked(&mut h[..]));
            if !options.is_empty() {
                // Opt Len in words; C: the DSR option is critical.
                h[0] = (options.len() / 4) as u8;
                h[1] = 0x40;
                h.extend_from_slice(options);
            }
            h
        }),
    };
    let outer = Outer {
        src_mac: egress.addrs.mac,
        dst_mac: mac,
        src: tun.local,
        dst: remote,
        sport: source_port(pkt.hash),
        dport,
    };
    let headers = outer.emit(out.len(), &tunnel_header);
    let inner_at = headers.len() + ETH;
    out.splice(0..0, headers);
    Verdict {
        inner_at: Some(inner_at),
        ..Verdict::transmit(Reason::Encapsulated, port)
    }
}

/// Outer UDP source port from the inner flow hash: 49152 + the hash's top 14 bits.
#[inline(always)]
pub fn source_port(flow_hash: u32) -> u16 {
    49152 | (flow_hash >> 18) as u16
}

/// The outer headers of an encapsulated frame.
struct Outer {
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
}

impl Outer {
    /// Ethernet + IPv4 (DF, TTL 64, ID 0) + UDP (checksum 0) + the tunnel
    /// header (8 bytes, more with Geneve options), for an inner frame of
    /// `inner_len` bytes.
    fn emit(&self, inner_len: usize, tunnel: &[u8]) -> Vec<u8> {
        let mut h = alloc::vec![0u8; OUTER_TUNNEL_AT + tunnel.len()];
        h[0..6].copy_from_slice(self.dst_mac.as_bytes());
        h[6..12].copy_from_slice(self.src_mac.as_bytes());
        h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let udp_len = (UDP_HEADER_LEN + tunnel.len() + inner_len) as u16;
        let ip = &mut h[ETH..OUTER_UDP_AT];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(IPV4_HEADER_LEN as u16 + udp_len).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = OUTER_TTL;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&self.src.octets());
        ip[16..20].copy_from_slice(&self.dst.octets());
        let check = checksum::compute(ip);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        let udp = &mut h[OUTER_UDP_AT..OUTER_TUNNEL_AT];
        udp[0..2].copy_from_slice(&self.sport.to_be_bytes());
        udp[2..4].copy_from_slice(&self.dport.to_be_bytes());
        udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        h[OUTER_TUNNEL_AT..].copy_from_slice(tunnel);
        h
    }
}

/// Strip the outer headers of a tunnel frame addressed to us and route the inner frame.
fn decap(t: &Tables, out: &mut Vec<u8>, is_vxlan: bool) -> Verdict {
    // The caller checked the outer IPv4 (20-byte header) and UDP headers.
    let udp_at = OUTER_UDP_AT;
    let Ok(udp) = UdpPacket::new_checked(&out[udp_at..]) else {
        return Verdict::of(Reason::Malformed);
    };
    let udp_end = udp_at + usize::from(udp.len());
    let tunnel_at = OUTER_TUNNEL_AT;
    let mut dsr = None;
    let inner_at = if is_vxlan {
        match vxlan::Header::new_checked(&out[tunnel_at..udp_end]).map(|h| vxlan::Repr::parse(&h)) {
            Ok(Ok(_)) => tunnel_at + vxlan::HEADER_LEN,
            Ok(Err(_)) => return Verdict::of(Reason::BadTunnelHeader),
            Err(_) => return Verdict::of(Reason::Malformed),
        }
    } else {
        let Ok(header) = geneve::Header::new_checked(&out[tunnel_at..udp_end]) else {
            return Verdict::of(Reason::Malformed);
        };
        let parsed = if t.config.tunnel.is_some_and(|tun| tun.dsr) {
            geneve::Repr::parse_with_dsr(&header)
        } else {
            geneve::Repr::parse(&header).map(|r| (r, None))
        };
        match parsed {
            Ok((r, _)) if r.oam => return Verdict::of(Reason::SlowPath),
            Ok((r, option)) if r.protocol == geneve::PROTOCOL_ETHERNET => {
                dsr = option;
                tunnel_at + header.header_len()
            }
            Ok(_) | Err(wire::Error::Invalid(_)) => return Verdict::of(Reason::BadTunnelHeader),
            Err(wire::Error::Truncated) => return Verdict::of(Reason::Malformed),
        }
    };
    if udp_end < inner_at + ETH {
        return Verdict::of(Reason::Malformed);
    }
    out.truncate(udp_end);
    out.drain(..inner_at);
    let ethertype = u16::from_be_bytes([out[12], out[13]]);
    let verdict = match EthernetProtocol::from(ethertype) {
        EthernetProtocol::Ipv4 => ipv4(t, out, true),
        EthernetProtocol::Ipv6 => ipv6(t, out),
        _ => Verdict::of(Reason::OtherProtocol),
    };
    Verdict {
        dsr,
        decapsulated: true,
        ..verdict
    }
}
