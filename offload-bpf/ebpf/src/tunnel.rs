//! VXLAN and Geneve in place: strip the outer headers of a tunnel frame
//! addressed to us ([`decap`]) and push Ethernet/IPv4/UDP/tunnel headers in
//! front of a routed frame ([`push_outer`]), with `bpf_xdp_adjust_head` and
//! `bpf_xdp_adjust_tail`. Header layouts and exit reasons are those of
//! router-core's `datapath::pipeline` (`decap`, `encapsulate`, `Outer::emit`)
//! and `wire::{vxlan, geneve}`.

use aya_ebpf::helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail};
use aya_ebpf::programs::XdpContext;
use router_core::datapath::Reason;
use router_core::datapath::checksum;
use router_core::wire::geneve::DSR_OPTION_LEN;
use router_core::wire::layout::{
    ENCAP_OVERHEAD, ETHERNET_HEADER_LEN as ETH, IPV4_HEADER_LEN, OUTER_TTL, OUTER_TUNNEL_AT,
    OUTER_UDP_AT, UDP_HEADER_LEN,
};
use router_core::wire::{geneve, vxlan};

use crate::packet::{be16, read, write};

/// Cilium's DSR option of a dispatched request: the service's IPv4
/// address and port.
pub type Dsr = ([u8; 4], u16);

/// Remove the outer headers of the VXLAN (`is_vxlan`) or Geneve frame in
/// `ctx`, whose outer IPv4 and UDP headers the caller checked, and trim the
/// inner frame to the UDP length. On success the context holds the inner
/// frame; with `dsr`, a Geneve frame may carry Cilium's DSR option, which
/// is returned.
#[inline(always)]
pub fn decap(ctx: &XdpContext, is_vxlan: bool, dsr: bool) -> Result<Option<Dsr>, Reason> {
    let udp_len = usize::from(be16(ctx, OUTER_UDP_AT + 4).ok_or(Reason::Malformed)?);
    let udp_end = OUTER_UDP_AT + udp_len;
    if udp_end < OUTER_TUNNEL_AT + vxlan::HEADER_LEN {
        return Err(Reason::Malformed);
    }
    let header = read::<[u8; 8]>(ctx, OUTER_TUNNEL_AT).ok_or(Reason::Malformed)?;
    let (inner_at, option) = if is_vxlan {
        if header[0] & vxlan::FLAG_VNI == 0 {
            return Err(Reason::BadTunnelHeader);
        }
        (OUTER_TUNNEL_AT + vxlan::HEADER_LEN, None)
    } else if dsr {
        geneve_inner_dsr(ctx, &header, udp_end)?
    } else {
        (geneve_inner(ctx, &header, udp_end)?, None)
    };
    if udp_end < inner_at + ETH {
        return Err(Reason::Malformed);
    }
    let tail = (ctx.data_end() - ctx.data()) as i64 - udp_end as i64;
    // SAFETY: shrinks the frame to the UDP length; later accesses re-check bounds.
    if tail > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(tail as i32)) } != 0 {
        return Err(Reason::Malformed);
    }
    // SAFETY: drops `inner_at` (< udp_end ≤ frame length) bytes from the front.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, inner_at as i32) } != 0 {
        return Err(Reason::Malformed);
    }
    Ok(option)
}

/// Check a Geneve header (`header`: its fixed part) ending before `udp_end`
/// like router-core's `geneve::Repr::parse`; the offset of the inner frame.
#[inline(always)]
fn geneve_inner(ctx: &XdpContext, header: &[u8; 8], udp_end: usize) -> Result<usize, Reason> {
    let options_len = usize::from(header[0] & 0x3f) * 4;
    let inner_at = OUTER_TUNNEL_AT + geneve::HEADER_LEN + options_len;
    if udp_end < inner_at {
        return Err(Reason::Malformed);
    }
    if header[0] >> 6 != 0 || header[1] & 0x40 != 0 {
        return Err(Reason::BadTunnelHeader);
    }
    critical_option(ctx, options_len)?;
    if header[1] & 0x80 != 0 {
        return Err(Reason::SlowPath);
    }
    if u16::from_be_bytes([header[2], header[3]]) != geneve::PROTOCOL_ETHERNET {
        return Err(Reason::BadTunnelHeader);
    }
    Ok(inner_at)
}

/// As [`geneve_inner`] where DSR dispatch is accepted (router-core's
/// `geneve::Repr::parse_with_dsr`): the DSR option is looked for first (a
/// malformed TLV before it refuses the frame), critical options are
/// counted over every whole TLV, and the frame is refused when one other
/// than the DSR option is critical. The fixed header's C bit is not
/// looked at.
#[inline(always)]
fn geneve_inner_dsr(
    ctx: &XdpContext,
    header: &[u8; 8],
    udp_end: usize,
) -> Result<(usize, Option<Dsr>), Reason> {
    let options_len = usize::from(header[0] & 0x3f) * 4;
    let inner_at = OUTER_TUNNEL_AT + geneve::HEADER_LEN + options_len;
    if udp_end < inner_at {
        return Err(Reason::Malformed);
    }
    let dsr = dsr_option(ctx, options_len)?;
    if header[0] >> 6 != 0 {
        return Err(Reason::BadTunnelHeader);
    }
    if critical_options(ctx, options_len) > usize::from(dsr.is_some()) {
        return Err(Reason::BadTunnelHeader);
    }
    if header[1] & 0x80 != 0 {
        return Err(Reason::SlowPath);
    }
    if u16::from_be_bytes([header[2], header[3]]) != geneve::PROTOCOL_ETHERNET {
        return Err(Reason::BadTunnelHeader);
    }
    Ok((inner_at, dsr))
}

/// The first whole DSR option among the `options_len` option bytes
/// (router-core's `geneve::DsrOption::find`): at most
/// `geneve::MAX_OPTIONS` TLVs are walked; one running past the end is
/// malformed, more are refused.
#[inline(always)]
fn dsr_option(ctx: &XdpContext, options_len: usize) -> Result<Option<Dsr>, Reason> {
    let base = OUTER_TUNNEL_AT + geneve::HEADER_LEN;
    let mut offset = 0usize;
    for _ in 0..geneve::MAX_OPTIONS {
        if offset >= options_len {
            return Ok(None);
        }
        if options_len - offset < 4 {
            return Err(Reason::Malformed);
        }
        let at = base + (offset & 0xff);
        let option = read::<[u8; 4]>(ctx, at).ok_or(Reason::Malformed)?;
        let len = 4 + usize::from(option[3] & 0x1f) * 4;
        if options_len - offset < len {
            return Err(Reason::Malformed);
        }
        let class = u16::from_be_bytes([option[0], option[1]]);
        if class == geneve::DSR_CLASS && option[2] == geneve::DSR_TYPE && len == DSR_OPTION_LEN {
            let data = read::<[u8; 8]>(ctx, at + 4).ok_or(Reason::Malformed)?;
            let addr = [data[0], data[1], data[2], data[3]];
            return Ok(Some((addr, u16::from_be_bytes([data[4], data[5]]))));
        }
        offset += len;
    }
    Err(Reason::BadTunnelHeader)
}

/// How many whole option TLVs among the `options_len` option bytes have
/// their critical bit set (a TLV running past the end ends the walk).
#[inline(always)]
fn critical_options(ctx: &XdpContext, options_len: usize) -> usize {
    let base = OUTER_TUNNEL_AT + geneve::HEADER_LEN;
    let (mut offset, mut critical) = (0usize, 0usize);
    // Options take at most 63 words, a TLV at least one.
    for _ in 0..63 {
        if options_len < offset + 4 {
            break;
        }
        let Some(option) = read::<[u8; 4]>(ctx, base + (offset & 0xff)) else {
            break;
        };
        if option[2] & 0x80 != 0 {
            critical += 1;
        }
        offset += 4 + usize::from(option[3] & 0x1f) * 4;
    }
    critical
}

/// Walk at most `geneve::MAX_OPTIONS` option TLVs in the `options_len` bytes
/// after the fixed Geneve header: a critical one, a run past the end or too
/// many options refuse the frame (router-core's `has_critical_option`).
#[inline(always)]
fn critical_option(ctx: &XdpContext, options_len: usize) -> Result<(), Reason> {
    let base = OUTER_TUNNEL_AT + geneve::HEADER_LEN;
    let mut offset = 0usize;
    for _ in 0..geneve::MAX_OPTIONS {
        if offset >= options_len {
            return Ok(());
        }
        if options_len - offset < 4 {
            return Err(Reason::Malformed);
        }
        let option = read::<[u8; 4]>(ctx, base + (offset & 0xff)).ok_or(Reason::Malformed)?;
        if option[2] & 0x80 != 0 {
            return Err(Reason::BadTunnelHeader);
        }
        let len = 4 + usize::from(option[3] & 0x1f) * 4;
        if options_len - offset < len {
            return Err(Reason::Malformed);
        }
        offset += len;
    }
    Err(Reason::BadTunnelHeader)
}

/// The outer headers of one encapsulated frame.
pub struct Outer {
    /// Next hop's MAC.
    pub dst_mac: [u8; 6],
    /// Egress port's MAC.
    pub src_mac: [u8; 6],
    /// Tunnel endpoint addresses, network order.
    pub src: [u8; 4],
    /// Remote endpoint.
    pub dst: [u8; 4],
    /// UDP source port (from the inner flow hash).
    pub sport: u16,
    /// UDP destination port (VXLAN or Geneve).
    pub dport: u16,
    /// The 8-byte VXLAN or Geneve header.
    pub tunnel: [u8; 8],
}

/// Outer UDP source port from the inner flow hash: 49152 + the hash's top 14
/// bits (router-core's `pipeline::source_port`).
#[inline(always)]
pub fn source_port(flow_hash: u32) -> u16 {
    49152 | (flow_hash >> 18) as u16
}

/// The VXLAN header for `vni` (router-core's `vxlan::Repr::emit`).
#[inline(always)]
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    [vxlan::FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// The Geneve header for `vni`, no options (router-core's `geneve::Repr::emit`).
#[inline(always)]
pub fn geneve_header(vni: u32) -> [u8; 8] {
    let v = vni.to_be_bytes();
    let p = geneve::PROTOCOL_ETHERNET.to_be_bytes();
    [0, 0, p[0], p[1], v[1], v[2], v[3], 0]
}

/// Grow the frame by [`ENCAP_OVERHEAD`] + `N` bytes at the front and write
/// `outer` there: Ethernet, IPv4 (DF, TTL 64, ID 0), UDP (checksum 0),
/// tunnel header, then `options` (Geneve options, marked critical in the
/// header when there are any, as router-core's `pipeline::encapsulate`
/// marks the DSR option). Written field by field into the packet (the BPF
/// stack is small).
#[inline(always)]
pub fn push_outer<const N: usize>(
    ctx: &XdpContext,
    outer: &Outer,
    options: &[u8; N],
) -> Option<()> {
    let inner_len = ctx.data_end() - ctx.data();
    let udp_len = (UDP_HEADER_LEN + outer.tunnel.len() + N + inner_len) as u16;
    let total = (IPV4_HEADER_LEN as u16 + udp_len).to_be_bytes();
    // Version/IHL, DSCP, total length, ID 0, DF, TTL, UDP: the first 10 bytes.
    let ip_start = [0x45, 0, total[0], total[1], 0, 0, 0x40, 0, OUTER_TTL, 17];
    let mut acc = checksum::sum(&ip_start) + checksum::sum(&outer.src) + checksum::sum(&outer.dst);
    acc = u32::from(!checksum::fold(acc));
    // SAFETY: grows the headroom side; later accesses re-check bounds.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -((ENCAP_OVERHEAD + N) as i32)) } != 0 {
        return None;
    }
    let mut tunnel = outer.tunnel;
    if N > 0 {
        // Opt Len in 4-byte words; C: a critical option follows.
        tunnel[0] = (N / 4) as u8;
        tunnel[1] = 0x40;
    }
    write(ctx, 0, outer.dst_mac)?;
    write(ctx, 6, outer.src_mac)?;
    write(ctx, 12, 0x0800u16.to_be_bytes())?;
    write(ctx, ETH, ip_start)?;
    write(ctx, ETH + 10, (acc as u16).to_be_bytes())?;
    write(ctx, ETH + 12, outer.src)?;
    write(ctx, ETH + 16, outer.dst)?;
    write(ctx, OUTER_UDP_AT, outer.sport.to_be_bytes())?;
    write(ctx, OUTER_UDP_AT + 2, outer.dport.to_be_bytes())?;
    write(ctx, OUTER_UDP_AT + 4, udp_len.to_be_bytes())?;
    write(ctx, OUTER_UDP_AT + 6, [0u8; 2])?;
    write(ctx, OUTER_TUNNEL_AT, tunnel)?;
    if N > 0 {
        write(ctx, OUTER_TUNNEL_AT + 8, *options)?;
    }
    Some(())
}
