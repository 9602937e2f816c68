//! The pipeline of router-core's reference datapath
//! (`router_core::datapath::pipeline`), step for step, over the maps:
//! ingress port → Ethernet → ARP reply → NDP reply → IPv4/IPv6 checks → local delivery →
//! tunnel decap → FIB → ECMP → neighbour → TTL/hop-limit decrement
//! (incremental checksum) → MAC rewrite or tunnel encap.
//!
//! The steps are split over three programs by [`Part`], each a tail call away
//! from the others and each deciding its frames from scratch, so together
//! they behave as the one pipeline (the differential harness runs them as
//! attached): the attached [`Part::Fast`] forwards routed IPv4 frames and
//! hands ARP and tunnel frames, untouched, to [`Part::Full`] and IPv6 frames
//! to [`Part::V6`], which hands neighbour discovery to [`Part::NDP`]. When
//! the node serves services, IP frames first go through the service stage
//! (`service`, its own program), which hands them on to the full or IPv6
//! part. The
//! common case then runs in a program with a third of the code and half the
//! stack of the whole pipeline.
//!
//! Every exit counts its [`Reason`], sends its flow event (`flows`) and maps
//! its [`Action`] to an XDP verdict: transmit is `XDP_TX` on the ingress port
//! or `bpf_redirect` to the egress port's ifindex, pass is `XDP_PASS`, drop is
//! `XDP_DROP`. The frame left in the context is router-core's output frame
//! (after a decap, the inner one).

use aya_ebpf::bindings::xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX};
use aya_ebpf::helpers::{bpf_redirect, bpf_xdp_adjust_tail};
use aya_ebpf::programs::XdpContext;
use nexthop_offload_bpf_common::service::FlowKey;
use nexthop_offload_bpf_common::{
    Config, IDENTITY_WORLD, IpKey, Nexthop, Port, VNI_FROM_IDENTITY, encap, family, kind,
};
use router_core::datapath::checksum;
use router_core::datapath::{Action, Reason};
use router_core::ecmp::{HashPolicy, hash};
use router_core::wire::geneve::{self, DSR_OPTION_LEN};
use router_core::wire::layout::{
    ENCAP_OVERHEAD, ETHERNET_HEADER_LEN as ETH, IPV4_HEADER_LEN, OUTER_UDP_AT, UDP_HEADER_LEN,
};

use crate::maps::{
    FULL, Half, IDENTITIES, INNER, NDP, NEIGHBOURS, PROGRAMS, REASONS, SERVICE, SERVICE_ACCEPT,
    SVC_WORK, V6,
};
use crate::packet::{be16, ptr_at, read, write};
use crate::tunnel::{self, Outer};
use crate::{arp, fib, flows, ndp};

/// Most bytes of an IPv4 header (IHL 15).
const MAX_IPV4_HEADER: usize = 60;

/// Which frames a program of the pipeline handles itself (the others go to
/// the program that does, by tail call, untouched).
pub struct Part;

impl Part {
    /// Routed IPv4; ARP, tunnels and IPv6 elsewhere. The attached program.
    pub const FAST: u8 = 0;
    /// ARP and IPv4, tunnels included; IPv6 elsewhere.
    pub const FULL: u8 = 1;
    /// IPv6, tunnels included; ARP, IPv4 and neighbour discovery elsewhere.
    pub const V6: u8 = 2;
    /// Neighbour discovery; everything else elsewhere.
    pub const NDP: u8 = 3;
}

/// Run the pipeline's part `PART` on one received frame and count its exit reason.
#[inline(always)]
pub fn run<const PART: u8>(ctx: &XdpContext) -> u32 {
    count(ctx, process::<PART>(ctx), false)
}

/// Run the rest of the pipeline on the inner frame of a decapsulated tunnel
/// frame (the tail call target of [`run`]) and count its exit reason.
#[inline(always)]
pub fn run_inner(ctx: &XdpContext) -> u32 {
    count(ctx, inner(ctx), true)
}

/// Count the exit's reason and send its flow event, if it makes one;
/// `decapsulated` when the frame is the inner one of a tunnel frame.
#[inline(always)]
fn count(ctx: &XdpContext, (reason, verdict): (Reason, u32), decapsulated: bool) -> u32 {
    if let Some(counter) = REASONS.get_ptr_mut(reason as u32) {
        // SAFETY: a per-CPU slot, written only by this CPU while this program runs.
        unsafe { *counter += 1 };
    }
    flows::exit(ctx, reason, decapsulated);
    verdict
}

/// The exit for a reason whose action is pass or drop.
#[inline(always)]
pub fn exit(reason: Reason) -> (Reason, u32) {
    let verdict = match reason.action() {
        Action::Drop => XDP_DROP,
        Action::Pass | Action::Transmit => XDP_PASS,
    };
    (reason, verdict)
}

/// The facts of an IP packet the forwarding steps need.
struct Routed {
    /// The source's map key (its identity is the VNI of encapsulated traffic).
    src: IpKey,
    /// The destination's map key (neighbour of connected routes).
    dst: IpKey,
    /// The nexthop group of the longest matching prefix.
    group: Option<u32>,
    /// IP header + payload length.
    len: usize,
    /// The flow hash.
    hash: u32,
}

/// What the IPv4 checks decided.
enum Step {
    /// Route the packet.
    Route(Routed),
    /// Decapsulate: VXLAN (true) or Geneve (false) to our tunnel endpoint.
    Decap(bool),
}

#[inline(always)]
fn process<const PART: u8>(ctx: &XdpContext) -> (Reason, u32) {
    let half = Half::active();
    let ingress_ifindex = ctx.ingress_ifindex() as u32;
    let Some(ingress) = half.ingress(ingress_ifindex) else {
        return exit(Reason::UnknownPort);
    };
    let Some(port) = half.port(ingress) else {
        return exit(Reason::UnknownPort);
    };
    let (Some(dst_mac), Some(ethertype)) = (read::<[u8; 6]>(ctx, 0), be16(ctx, 12)) else {
        return exit(Reason::Malformed);
    };
    // The service stage goes first, as in router-core's node.
    if PART == Part::FAST
        && matches!(ethertype, 0x0800 | 0x86dd)
        && half.service_config().is_some_and(|c| c.enabled != 0)
    {
        return hand_over(ctx, SERVICE);
    }
    // Group bit: broadcast and multicast.
    if dst_mac != port.mac && dst_mac[0] & 1 == 0 {
        return exit(Reason::OtherHost);
    }
    let config = half.config();
    let routed = match ethertype {
        0x0806 if PART != Part::FULL => return hand_over(ctx, FULL),
        0x0806 => return arp::respond(ctx, ingress, port),
        0x0800 if PART == Part::V6 || PART == Part::NDP => return hand_over(ctx, FULL),
        0x0800 => match ipv4(ctx, half, &config, false) {
            Ok(Step::Route(routed)) => Ok(routed),
            Ok(Step::Decap(_)) if PART == Part::FAST => return hand_over(ctx, FULL),
            Ok(Step::Decap(is_vxlan)) => return decap(ctx, is_vxlan, config.dsr != 0),
            Err(reason) => Err(reason),
        },
        0x86dd if PART == Part::FAST || PART == Part::FULL => return hand_over(ctx, V6),
        0x86dd => match (ndp::message_type(ctx), PART == Part::NDP) {
            (Some(kind), true) => return ndp::respond(ctx, ingress, port, kind),
            (Some(_), false) => return hand_over(ctx, NDP),
            (None, true) => return hand_over(ctx, V6),
            (None, false) => ipv6(ctx, half, &config),
        },
        _ => return exit(Reason::OtherProtocol),
    };
    match routed {
        Ok(routed) => forward::<PART>(ctx, half, ingress_ifindex, routed),
        Err(reason) => exit(reason),
    }
}

/// Continue with the program in slot `part` of `PROGRAMS` (a tail call), the frame untouched.
#[inline(always)]
fn hand_over(ctx: &XdpContext, part: u32) -> (Reason, u32) {
    // SAFETY: on success the call does not return; the context is the one we run with.
    unsafe { PROGRAMS.tail_call(ctx, part) };
    // The loader fills every slot before attaching: only a broken load gets here.
    (Reason::Malformed, XDP_ABORTED)
}

/// Strip the tunnel headers and continue with the inner frame in the
/// `INNER` program (a tail call: a fresh stack for the second pass). A
/// DSR option (accepted with `dsr`) is left in the service stage's
/// scratch space for the second pass to track its request.
#[inline(always)]
fn decap(ctx: &XdpContext, is_vxlan: bool, dsr: bool) -> (Reason, u32) {
    let option = match tunnel::decap(ctx, is_vxlan, dsr) {
        Ok(option) => option,
        Err(reason) => return exit(reason),
    };
    let Some(work) = SVC_WORK.get_ptr_mut(0) else {
        return (Reason::Malformed, XDP_ABORTED);
    };
    // SAFETY: this CPU's scratch entry, used by one program run at a time.
    let work = unsafe { &mut *work };
    work.accept_pending = u8::from(option.is_some());
    if let Some((addr, port)) = option {
        work.accept = addr;
        work.accept_port = port;
    }
    // SAFETY: on success the call does not return; the context is the one we run with.
    unsafe { PROGRAMS.tail_call(ctx, INNER) };
    // The loader installs INNER before attaching: only a broken load gets here.
    (Reason::Malformed, XDP_ABORTED)
}

/// The inner frame's IP checks and route lookup, then forwarding; a
/// request dispatched here (DSR) is first tracked by the service stage's
/// `nexthop_service_accept`, which comes back here.
#[inline(always)]
fn inner(ctx: &XdpContext) -> (Reason, u32) {
    if SVC_WORK.get(0).is_some_and(|w| w.accept_pending != 0) {
        return hand_over(ctx, SERVICE_ACCEPT);
    }
    let half = Half::active();
    let config = half.config();
    let routed = match be16(ctx, 12) {
        Some(0x0800) => match ipv4(ctx, half, &config, true) {
            Ok(Step::Route(routed)) => Ok(routed),
            Ok(Step::Decap(_)) => Err(Reason::Local),
            Err(reason) => Err(reason),
        },
        Some(0x86dd) => ipv6(ctx, half, &config),
        Some(_) => Err(Reason::OtherProtocol),
        None => Err(Reason::Malformed),
    };
    match routed {
        Ok(routed) => forward::<{ Part::FULL }>(ctx, half, ctx.ingress_ifindex() as u32, routed),
        Err(reason) => exit(reason),
    }
}

/// The hash policy and seed of the config.
#[inline(always)]
fn hash_config(c: &Config) -> (HashPolicy, u32) {
    let policy = if c.hash_policy == 1 {
        HashPolicy::L4
    } else {
        HashPolicy::L3
    };
    (policy, c.hash_seed)
}

/// Protocol and ports for the L4 hash, read from the transport header at
/// `l4` when the packet carries ports there (`payload` bytes of it).
#[inline(always)]
fn ports_of(ctx: &XdpContext, proto: u8, l4: usize, payload: usize, first: bool) -> (u8, u16, u16) {
    let has_ports = matches!(proto, 6 | 17 | 132);
    if has_ports && first && payload >= 4 {
        if let (Some(sport), Some(dport)) = (be16(ctx, l4), be16(ctx, l4 + 2)) {
            return (proto, sport, dport);
        }
    }
    (proto, 0, 0)
}

/// Whether the IPv4 packet (20-byte header, `payload` bytes after it) to our
/// tunnel endpoint is UDP to a tunnel port: `Some(true)` for VXLAN, `Some(false)` for Geneve.
#[inline(always)]
fn tunnel_port(ctx: &XdpContext, c: &Config, proto: u8, payload: usize) -> Option<bool> {
    let udp_len = usize::from(be16(ctx, OUTER_UDP_AT + 4)?);
    if c.tunnel == 0
        || proto != 17
        || payload < UDP_HEADER_LEN
        || udp_len < UDP_HEADER_LEN
        || udp_len > payload
    {
        return None;
    }
    let port = be16(ctx, OUTER_UDP_AT + 2)?;
    (port == c.vxlan_port || port == c.geneve_port).then_some(port == c.vxlan_port)
}

/// The first 20 bytes of the IPv4 header, its length and the packet's
/// total length, checked against each other and the frame as smoltcp's
/// `Ipv4Packet::new_checked` does.
#[inline(always)]
fn ipv4_header(ctx: &XdpContext) -> Result<([u8; IPV4_HEADER_LEN], usize, usize), Reason> {
    let ip_len = ctx.data_end() - ctx.data() - ETH;
    let header = read::<[u8; IPV4_HEADER_LEN]>(ctx, ETH).ok_or(Reason::Malformed)?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if ip_len < header_len || header_len > total_len || ip_len < total_len {
        return Err(Reason::Malformed);
    }
    Ok((header, header_len, total_len))
}

/// IPv4 checks, local delivery, tunnel detection and the route lookup.
/// `decapsulated`: the inner packet of a tunnel frame (never decapsulated again).
#[inline(always)]
fn ipv4(ctx: &XdpContext, half: Half, config: &Config, decapsulated: bool) -> Result<Step, Reason> {
    let (header, header_len, total_len) = ipv4_header(ctx)?;
    if header[0] >> 4 != 4 {
        return Err(Reason::Malformed);
    }
    if !header_checksum_ok(ctx, &header, header_len) {
        return Err(Reason::BadChecksum);
    }
    if header_len != IPV4_HEADER_LEN {
        return Err(Reason::SlowPath);
    }
    let src = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let dst = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
    let key = IpKey::v4(dst.to_be_bytes());
    let flags_frag = u16::from_be_bytes([header[6], header[7]]);
    let not_fragment = flags_frag & 0x3fff == 0;
    if dst == u32::MAX || dst >> 28 == 0xe || half.is_local(&key) {
        if !decapsulated && not_fragment && dst == u32::from_be_bytes(config.tunnel_local) {
            if let Some(is_vxlan) = tunnel_port(ctx, config, header[9], total_len - IPV4_HEADER_LEN)
            {
                return Ok(Step::Decap(is_vxlan));
            }
        }
        return Err(Reason::Local);
    }
    if header[8] <= 1 {
        return Err(Reason::TtlExceeded);
    }
    let l4 = ports_of(
        ctx,
        header[9],
        ETH + IPV4_HEADER_LEN,
        total_len - IPV4_HEADER_LEN,
        not_fragment,
    );
    let (policy, seed) = hash_config(config);
    Ok(Step::Route(Routed {
        src: IpKey::v4(src.to_be_bytes()),
        dst: key,
        group: fib::lookup_v4(half, dst),
        len: total_len,
        hash: hash::hash_v4(policy, seed, src, dst, l4),
    }))
}

/// Whether the IPv4 header of `header_len` bytes (the caller checked they are
/// in the packet) sums to `0xffff`. `first` holds its first 20 bytes; options
/// are read word by word (the loop unrolls to constant offsets the verifier follows).
#[inline(always)]
fn header_checksum_ok(ctx: &XdpContext, first: &[u8; 20], header_len: usize) -> bool {
    let mut acc = 0u32;
    for i in 0..MAX_IPV4_HEADER / 2 {
        if 2 * i >= header_len {
            break;
        }
        let word = if i < 10 {
            u16::from_be_bytes([first[2 * i], first[2 * i + 1]])
        } else {
            match be16(ctx, ETH + 2 * i) {
                Some(word) => word,
                None => return false,
            }
        };
        acc += u32::from(word);
    }
    checksum::fold(acc) == 0xffff
}

/// IPv6 checks, local delivery and the route lookup.
#[inline(always)]
fn ipv6(ctx: &XdpContext, half: Half, config: &Config) -> Result<Routed, Reason> {
    let ip_len = ctx.data_end() - ctx.data() - ETH;
    let header = read::<[u8; 8]>(ctx, ETH).ok_or(Reason::Malformed)?;
    let src = read::<[u8; 16]>(ctx, ETH + 8).ok_or(Reason::Malformed)?;
    let dst = read::<[u8; 16]>(ctx, ETH + 24).ok_or(Reason::Malformed)?;
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if ip_len < 40 + payload_len {
        return Err(Reason::Malformed);
    }
    if header[0] >> 4 != 6 {
        return Err(Reason::Malformed);
    }
    let key = IpKey::v6(dst);
    let link_local = dst[0] == 0xfe && dst[1] & 0xc0 == 0x80;
    if dst[0] == 0xff || link_local || half.is_local(&key) {
        return Err(Reason::Local);
    }
    let next_header = header[6];
    if next_header == 0 {
        return Err(Reason::SlowPath);
    }
    if header[7] <= 1 {
        return Err(Reason::TtlExceeded);
    }
    let l4 = ports_of(ctx, next_header, ETH + 40, payload_len, true);
    let (policy, seed) = hash_config(config);
    Ok(Routed {
        src: IpKey::v6(src),
        dst: key,
        group: fib::lookup_v6(half, fib::V6Key::new(&dst)),
        len: 40 + payload_len,
        hash: hash::hash_v6(policy, seed, words(&src), words(&dst), l4),
    })
}

/// An IPv6 address as four big-endian words.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_be_bytes([a[4], a[5], a[6], a[7]]),
        u32::from_be_bytes([a[8], a[9], a[10], a[11]]),
        u32::from_be_bytes([a[12], a[13], a[14], a[15]]),
    ]
}

/// FIB result → ECMP member → neighbour → rewrite or encapsulate, and transmit.
#[inline(always)]
fn forward<const PART: u8>(
    ctx: &XdpContext,
    half: Half,
    ingress_ifindex: u32,
    pkt: Routed,
) -> (Reason, u32) {
    let Some(nexthop) = pkt.group.and_then(|g| fib::select(half, g, pkt.hash)) else {
        return exit(Reason::NoRoute);
    };
    let neighbour = match nexthop.kind {
        kind::BLACKHOLE => return exit(Reason::Blackhole),
        kind::GATEWAY => nexthop.addr,
        kind::CONNECTED => pkt.dst,
        kind::TUNNEL if PART == Part::FAST => return hand_over(ctx, FULL),
        kind::TUNNEL => return encapsulate(ctx, half, &pkt, nexthop),
        _ => return exit(Reason::NoRoute),
    };
    let egress = &nexthop.egress;
    if egress.ifindex == 0 {
        return exit(Reason::UnknownPort);
    }
    if pkt.len > usize::from(egress.mtu) {
        return exit(Reason::FragmentationNeeded);
    }
    let Some(mac) = neighbour_mac(nexthop, &neighbour) else {
        return exit(Reason::NeighbourMiss);
    };
    if transmit(ctx, pkt.len, egress, mac).is_none() {
        return exit(Reason::Malformed);
    }
    (Reason::Forwarded, redirect(egress, ingress_ifindex))
}

/// The MAC to send to for `nexthop`: a gateway's comes with the nexthop
/// (resolved or not); a connected destination's from the neighbour map.
#[inline(always)]
fn neighbour_mac(nexthop: &Nexthop, neighbour: &IpKey) -> Option<[u8; 6]> {
    if nexthop.kind == kind::GATEWAY {
        return (nexthop.resolved == 1).then_some(nexthop.mac);
    }
    // SAFETY: the MAC is copied out at once.
    (unsafe { NEIGHBOURS.get(neighbour) }).map(|m| m.0)
}

/// `XDP_TX` back out of the ingress port, or a redirect to the egress port.
#[inline(always)]
fn redirect(egress: &Port, ingress_ifindex: u32) -> u32 {
    flows::sent_to(egress.ifindex);
    if egress.ifindex == ingress_ifindex {
        XDP_TX
    } else {
        // SAFETY: a helper call with plain integer arguments.
        unsafe { bpf_redirect(egress.ifindex, 0) as u32 }
    }
}

/// Where and how a frame is encapsulated.
struct Tunnel {
    /// The remote endpoint, network order.
    remote: [u8; 4],
    /// `encap::GENEVE` or VXLAN.
    encap: u8,
    /// The VNI.
    vni: u32,
    /// Cilium's DSR option (Geneve only).
    dsr: Option<[u8; DSR_OPTION_LEN]>,
}

/// The VNI of `src`'s traffic: its identity.
#[inline(always)]
fn identity_vni(src: &IpKey) -> u32 {
    // SAFETY: the identity is copied out at once.
    (unsafe { IDENTITIES.get(src) })
        .copied()
        .unwrap_or(IDENTITY_WORLD)
}

/// Encapsulate towards a tunnel route's endpoint.
#[inline(always)]
fn encapsulate(ctx: &XdpContext, half: Half, pkt: &Routed, tunnel: &Nexthop) -> (Reason, u32) {
    if tunnel.addr.family != family::V4 {
        return exit(Reason::TunnelLoop);
    }
    let vni = if tunnel.vni == VNI_FROM_IDENTITY {
        identity_vni(&pkt.src)
    } else {
        tunnel.vni
    };
    let a = &tunnel.addr.addr;
    let to = Tunnel {
        remote: [a[0], a[1], a[2], a[3]],
        encap: tunnel.encap,
        vni,
        dsr: None,
    };
    encapsulate_to(ctx, half, pkt, &to)
}

/// Route the tunnel endpoint, then wrap the frame in outer headers towards
/// it (router-core's `pipeline::encapsulate`).
#[inline(always)]
fn encapsulate_to(ctx: &XdpContext, half: Half, pkt: &Routed, tunnel: &Tunnel) -> (Reason, u32) {
    let config = half.config();
    if config.tunnel == 0 {
        return exit(Reason::TunnelLoop);
    }
    let remote = tunnel.remote;
    let group = fib::lookup_v4(half, u32::from_be_bytes(remote));
    let Some(underlay) = group.and_then(|g| fib::select(half, g, pkt.hash)) else {
        return exit(Reason::NoRoute);
    };
    let neighbour = match underlay.kind {
        kind::GATEWAY => underlay.addr,
        kind::CONNECTED => IpKey::v4(remote),
        kind::BLACKHOLE => return exit(Reason::Blackhole),
        _ => return exit(Reason::TunnelLoop),
    };
    let egress = &underlay.egress;
    if egress.ifindex == 0 {
        return exit(Reason::UnknownPort);
    }
    let options = if tunnel.dsr.is_some() {
        DSR_OPTION_LEN
    } else {
        0
    };
    // The outer IP packet: outer IPv4, UDP and tunnel headers, the inner
    // Ethernet header (together ENCAP_OVERHEAD), options, the packet.
    if pkt.len + ENCAP_OVERHEAD + options > usize::from(egress.mtu) {
        return exit(Reason::FragmentationNeeded);
    }
    let Some(mac) = neighbour_mac(underlay, &neighbour) else {
        return exit(Reason::NeighbourMiss);
    };
    let (dport, header) = if tunnel.encap == encap::GENEVE {
        (config.geneve_port, tunnel::geneve_header(tunnel.vni))
    } else {
        (config.vxlan_port, tunnel::vxlan_header(tunnel.vni))
    };
    let outer = Outer {
        dst_mac: mac,
        src_mac: egress.mac,
        src: config.tunnel_local,
        dst: remote,
        sport: tunnel::source_port(pkt.hash),
        dport,
        tunnel: header,
    };
    if transmit(ctx, pkt.len, egress, config.inner_mac).is_none() {
        return exit(Reason::Malformed);
    }
    let pushed = match &tunnel.dsr {
        Some(option) => tunnel::push_outer(ctx, &outer, option),
        None => tunnel::push_outer(ctx, &outer, &[]),
    };
    if pushed.is_none() {
        return exit(Reason::Malformed);
    }
    flows::encapsulated(ETH + ENCAP_OVERHEAD + options);
    (
        Reason::Encapsulated,
        redirect(egress, ctx.ingress_ifindex() as u32),
    )
}

/// Dispatch a service request to its backend's node (DSR, router-core's
/// `pipeline::dispatch`): the frame, rewritten to the backend by the
/// service stage, goes TTL decremented in Geneve to the node the stage
/// left in its scratch space, with Cilium's DSR option naming the service.
#[inline(always)]
pub fn run_dispatch(ctx: &XdpContext) -> u32 {
    count(ctx, dispatch(ctx), false)
}

#[inline(always)]
fn dispatch(ctx: &XdpContext) -> (Reason, u32) {
    let Some(work) = SVC_WORK.get(0) else {
        return (Reason::Malformed, XDP_ABORTED);
    };
    let (node, service) = (work.dispatch, work.conn.frontend);
    let half = Half::active();
    let pkt = match dispatched_v4(ctx, &half.config(), &work.to) {
        Ok(pkt) => pkt,
        Err(reason) => return exit(reason),
    };
    let mut dsr = [0u8; DSR_OPTION_LEN];
    dsr[0..2].copy_from_slice(&geneve::DSR_CLASS.to_be_bytes());
    dsr[2] = geneve::DSR_TYPE;
    dsr[3] = ((DSR_OPTION_LEN - 4) / 4) as u8;
    dsr[4..8].copy_from_slice(&service.addr[..4]);
    dsr[8..10].copy_from_slice(&service.port.to_be_bytes());
    let tunnel = Tunnel {
        remote: node,
        encap: encap::GENEVE,
        vni: identity_vni(&pkt.src),
        dsr: Some(dsr),
    };
    encapsulate_to(ctx, half, &pkt, &tunnel)
}

/// The length and flow hash of the IPv4 packet being dispatched, whose
/// 5-tuple the service stage rewrote to `to` (its header checked as
/// smoltcp's `Ipv4Packet::new_checked` does, its TTL above 1). The stage
/// takes unfragmented TCP and UDP only, so the ports are the tuple's.
#[inline(always)]
fn dispatched_v4(ctx: &XdpContext, config: &Config, to: &FlowKey) -> Result<Routed, Reason> {
    let (header, _, total_len) = ipv4_header(ctx)?;
    if header[8] <= 1 {
        return Err(Reason::TtlExceeded);
    }
    let src = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let dst = u32::from_be_bytes([header[16], header[17], header[18], header[19]]);
    let l4 = (to.protocol, to.src_port, to.dst_port);
    let (policy, seed) = hash_config(config);
    Ok(Routed {
        src: IpKey::v4(src.to_be_bytes()),
        dst: IpKey::v4(dst.to_be_bytes()),
        group: None,
        len: total_len,
        hash: hash::hash_v4(policy, seed, src, dst, l4),
    })
}

/// Trim Ethernet padding after the IP packet, decrement the TTL or hop limit
/// (fixing the IPv4 checksum) and rewrite the MACs (source: the egress port).
#[inline(always)]
fn transmit(ctx: &XdpContext, ip_len: usize, egress: &Port, dst_mac: [u8; 6]) -> Option<()> {
    let padding = (ctx.data_end() - ctx.data()) as i64 - (ETH + ip_len) as i64;
    // SAFETY: shrinks the frame by `padding` bytes; every later access re-checks bounds.
    if padding > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(padding as i32)) } != 0 {
        return None;
    }
    let version = read::<u8>(ctx, ETH)? >> 4;
    if version == 4 {
        let ttl_proto = be16(ctx, ETH + 8)?;
        let check = be16(ctx, ETH + 10)?;
        let new = ttl_proto.wrapping_sub(0x0100);
        write(ctx, ETH + 8, new.to_be_bytes())?;
        let check = checksum::update16(check, ttl_proto, new);
        write(ctx, ETH + 10, check.to_be_bytes())?;
    } else {
        let hop_limit = ptr_at::<u8>(ctx, ETH + 7)?;
        // SAFETY: `ptr_at` checked the byte is inside the packet.
        unsafe { *hop_limit = (*hop_limit).wrapping_sub(1) };
    }
    write(ctx, 0, dst_mac)?;
    write(ctx, 6, egress.mac)?;
    Some(())
}
