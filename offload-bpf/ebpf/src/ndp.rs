//! The NDP responder of router-core's pipeline (its `neighbour_discovery`
//! step over `neighbour::ndp`): a neighbour solicitation of the shape the
//! datapath answers (`ndp::datapath_answers_shape`: a 32-octet message whose
//! one option is the source link-layer address) that passes RFC 4861 §7.1's
//! checks and asks for an address the ingress port owns or announces is
//! turned, in place, into the solicited advertisement router-core builds
//! (Solicited and Override set, a target link-layer option) and sent back
//! with `XDP_TX`. Every other neighbour discovery message goes to the host
//! stack.

use aya_ebpf::bindings::xdp_action::XDP_TX;
use aya_ebpf::programs::XdpContext;
use nexthop_offload_bpf_common::{NdpKey, Port};
use router_core::datapath::{Reason, checksum};
use router_core::wire::layout::{
    ETHERNET_HEADER_LEN as ETH, ICMPV6_AT, IPV6_HEADER_LEN, NEIGHBOUR_ADVERTISEMENT,
    NEIGHBOUR_SOLICITATION, SOLICITATION_LEN, SOLICITATION_OPTION_AT,
};

use crate::forward::exit;
use crate::maps::NDP_ADDRS;
use crate::packet::{be16, read, trim_to, write};

/// ICMPv6's protocol number.
const ICMPV6: u8 = 58;
/// The hop limit neighbour discovery messages carry (§7.1).
const HOP_LIMIT: u8 = 255;
/// Solicited and Override (§4.4), the first octet of the flags word.
const SOLICITED_OVERRIDE: u8 = 0x60;
/// A link-layer address option of one 8-octet unit: source (1), target (2).
const SOURCE_OPTION: [u8; 2] = [1, 1];
const TARGET_OPTION: [u8; 2] = [2, 1];
/// Where a solicitation's or advertisement's target address starts.
const TARGET_AT: usize = ICMPV6_AT + 8;

/// The ICMPv6 type of the frame when it is a neighbour solicitation or
/// advertisement directly behind an IPv6 header whose lengths hold
/// (router-core's `ndp::message_type`).
#[inline(always)]
pub fn message_type(ctx: &XdpContext) -> Option<u8> {
    let ip_len = ctx.data_end() - ctx.data() - ETH;
    let header = read::<[u8; 8]>(ctx, ETH)?;
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if ip_len < IPV6_HEADER_LEN + payload_len
        || payload_len == 0
        || header[0] >> 4 != 6
        || header[6] != ICMPV6
    {
        return None;
    }
    let kind = read::<u8>(ctx, ICMPV6_AT)?;
    (kind == NEIGHBOUR_SOLICITATION || kind == NEIGHBOUR_ADVERTISEMENT).then_some(kind)
}

/// Ones'-complement sum of the ICMPv6 message of [`SOLICITATION_LEN`]
/// octets in the frame and its pseudo-header (RFC 8200 §8.1: the IPv6
/// addresses, the length and the next header).
#[inline(always)]
fn message_sum(ctx: &XdpContext) -> Option<u32> {
    let addresses = read::<[u8; 32]>(ctx, ETH + 8)?;
    let message = read::<[u8; SOLICITATION_LEN]>(ctx, ICMPV6_AT)?;
    let pseudo = SOLICITATION_LEN as u32 + u32::from(ICMPV6) + checksum::sum(&addresses);
    Some(pseudo + checksum::sum(&message))
}

/// Answer the neighbour discovery message of type `kind` that `ctx` holds,
/// received on `port_id` (`port`).
#[inline(always)]
pub fn respond(ctx: &XdpContext, port_id: u16, port: &Port, kind: u8) -> (Reason, u32) {
    let shape = kind == NEIGHBOUR_SOLICITATION
        && be16(ctx, ETH + 4) == Some(SOLICITATION_LEN as u16)
        && read::<[u8; 2]>(ctx, SOLICITATION_OPTION_AT) == Some(SOURCE_OPTION);
    if !shape {
        return exit(Reason::NdpOther);
    }
    let (Some(src), Some(target), Some(requester)) = (
        read::<[u8; 16]>(ctx, ETH + 8),
        read::<[u8; 16]>(ctx, TARGET_AT),
        read::<[u8; 6]>(ctx, SOLICITATION_OPTION_AT + 2),
    ) else {
        return exit(Reason::NdpOther);
    };
    let valid = read::<u8>(ctx, ETH + 7) == Some(HOP_LIMIT)
        && message_sum(ctx).map(checksum::fold) == Some(0xffff)
        && read::<u8>(ctx, ICMPV6_AT + 1) == Some(0)
        && src != [0; 16]
        && target[0] != 0xff;
    let key = NdpKey {
        port: port_id,
        pad: [0; 2],
        addr: target,
    };
    // SAFETY: only presence is read.
    if !valid || unsafe { NDP_ADDRS.get(&key) }.is_none() {
        return exit(Reason::NdpOther);
    }
    if !trim_to(ctx, ICMPV6_AT + SOLICITATION_LEN) {
        return exit(Reason::Malformed);
    }
    // Version 6, traffic class and flow label zero; the length, next header
    // and hop limit stay as checked, and so does the target.
    let written = write(ctx, 0, requester)
        .and_then(|()| write(ctx, 6, port.mac))
        .and_then(|()| write(ctx, ETH, [0x60u8, 0, 0, 0]))
        .and_then(|()| write(ctx, ETH + 8, target))
        .and_then(|()| write(ctx, ETH + 24, src))
        .and_then(|()| write(ctx, ICMPV6_AT, [NEIGHBOUR_ADVERTISEMENT, 0, 0, 0]))
        .and_then(|()| write(ctx, ICMPV6_AT + 4, [SOLICITED_OVERRIDE, 0, 0, 0]))
        .and_then(|()| write(ctx, SOLICITATION_OPTION_AT, TARGET_OPTION))
        .and_then(|()| write(ctx, SOLICITATION_OPTION_AT + 2, port.mac))
        .and_then(|()| message_sum(ctx))
        .and_then(|sum| write(ctx, ICMPV6_AT + 2, (!checksum::fold(sum)).to_be_bytes()));
    match written {
        Some(()) => (Reason::NdpReply, XDP_TX),
        None => exit(Reason::Malformed),
    }
}
