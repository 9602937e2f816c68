//! The ARP responder of router-core's `neighbour::arp::respond`: a request for
//! an address the ingress port owns or announces is turned, in place, into the
//! 42-byte reply router-core builds and sent back with `XDP_TX`. Everything
//! else ARP (replies, gratuitous announcements, other targets) goes to the host
//! stack, which learns from it; frames that are not Ethernet/IPv4 ARP drop.

use aya_ebpf::bindings::xdp_action::XDP_TX;
use aya_ebpf::programs::XdpContext;
use nexthop_offload_bpf_common::{ArpKey, Port};
use router_core::datapath::Reason;
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;

use crate::forward::exit;
use crate::maps::ARP_ADDRS;
use crate::packet::{read, trim_to, write};

/// An Ethernet/IPv4 ARP packet.
const ARP_LEN: usize = 28;
/// htype Ethernet, ptype IPv4, hlen 6, plen 4.
const ETHERNET_IPV4: [u8; 6] = [0, 1, 0x08, 0x00, 6, 4];

/// Answer the ARP frame `ctx` holds, received on `port_id` (`port`).
#[inline(always)]
pub fn respond(ctx: &XdpContext, port_id: u16, port: &Port) -> (Reason, u32) {
    let Some(arp) = read::<[u8; ARP_LEN]>(ctx, ETH) else {
        return exit(Reason::Malformed);
    };
    if arp[..6] != ETHERNET_IPV4 {
        return exit(Reason::Malformed);
    }
    let operation = u16::from_be_bytes([arp[6], arp[7]]);
    let sha = [arp[8], arp[9], arp[10], arp[11], arp[12], arp[13]];
    let spa = [arp[14], arp[15], arp[16], arp[17]];
    let tpa = [arp[24], arp[25], arp[26], arp[27]];
    let key = ArpKey {
        port: port_id,
        pad: [0; 2],
        addr: tpa,
    };
    // SAFETY: only presence is read.
    if operation != 1 || spa == tpa || unsafe { ARP_ADDRS.get(&key) }.is_none() {
        return exit(Reason::ArpOther);
    }
    if !trim_to(ctx, ETH + ARP_LEN) {
        return exit(Reason::Malformed);
    }
    // The request's htype..plen stay; the rest is rewritten field by field.
    let written = write(ctx, 0, sha)
        .and_then(|()| write(ctx, 6, port.mac))
        .and_then(|()| write(ctx, ETH + 6, 2u16.to_be_bytes()))
        .and_then(|()| write(ctx, ETH + 8, port.mac))
        .and_then(|()| write(ctx, ETH + 14, tpa))
        .and_then(|()| write(ctx, ETH + 18, sha))
        .and_then(|()| write(ctx, ETH + 24, spa));
    match written {
        Some(()) => (Reason::ArpReply, XDP_TX),
        None => exit(Reason::Malformed),
    }
}
