//! The NDP responder (RFC 4861): which neighbour solicitations a port answers,
//! and the advertisements it sends.
//!
//! Owns the answer-or-not decision (only for addresses the host owns on that
//! port or announces there, e.g. LoadBalancer IPs with L2 announcements), the
//! receive checks of §7.1, what a solicitation or advertisement teaches the
//! neighbour table, and the solicitation and advertisement frames. Bytes and
//! the ICMPv6 checksum go through smoltcp's `wire` types. Router discovery,
//! redirects, duplicate address detection of our own addresses and extension
//! headers are not handled; the table's state lives in [`super::table`].
//!
//! Neighbor Solicitation (§4.3), ICMPv6 type 135, in IPv6 with hop limit 255:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |     Code      |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Reserved                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                       Target Address                          +
//! |                     (128 bits, 4 words)                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Options (Source Link-Layer Address, type 1) ...
//! +-+-+-+-+-+-+-+-+-+-+-+-+-
//! ```
//!
//! Neighbor Advertisement (§4.4), ICMPv6 type 136: the same, with the flags
//! Router, Solicited and Override in the first three bits of the reserved word
//! and a Target Link-Layer Address option (type 2):
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|S|O|                     Reserved                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A link-layer address option on Ethernet (§4.6.1, RFC 2464 §8):
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Type      |  Length = 1   |    Link-Layer Address ...     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    ... (6 octets in all)                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv6Addr};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv6Message, Icmpv6Packet,
    Icmpv6Repr, IpProtocol, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr,
};

use super::table::Event;
use crate::port::PortId;
use crate::wire::layout::{
    ETHERNET_HEADER_LEN, NEIGHBOUR_ADVERTISEMENT, NEIGHBOUR_SOLICITATION, SOLICITATION_LEN,
    SOLICITATION_OPTION_AT,
};

/// The hop limit every Neighbor Discovery message is sent and must arrive with
/// (§7.1): 255 proves it did not cross a router.
const HOP_LIMIT: u8 = 255;

/// The all-nodes multicast address ff02::1, where unsolicited and DAD
/// advertisements go (§7.2.4, §7.2.6).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// What a port answers neighbour solicitations for (its MAC is the port's,
/// passed beside it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortAddrsV6 {
    /// Addresses configured on the port.
    pub owned: Vec<Ipv6Addr>,
    /// Addresses announced on the port on behalf of others (L2 announcements).
    pub announced: Vec<Ipv6Addr>,
}

impl PortAddrsV6 {
    /// Whether this port answers for `addr`.
    pub fn answers_for(&self, addr: Ipv6Addr) -> bool {
        self.owned.contains(&addr) || self.announced.contains(&addr)
    }
}

/// Why a frame got no reply.
///
/// Its own type rather than [`super::arp::Silence`]: most reasons are the
/// receive checks of RFC 4861 §7.1, which ARP has no counterpart for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Not an Ethernet/IPv6/ICMPv6 neighbour solicitation or advertisement.
    NotNdp,
    /// The IPv6 packet or the ICMPv6 message is shorter than its headers say
    /// (a solicitation or advertisement has at least 24 octets).
    Truncated,
    /// The IPv6 hop limit is not 255: the message may have crossed a router.
    HopLimit,
    /// The ICMPv6 checksum is wrong.
    Checksum,
    /// The ICMPv6 code is not 0.
    Code,
    /// An option has length zero or runs past the end of the message.
    BadOption,
    /// The target address is multicast.
    MulticastTarget,
    /// A solicitation from the unspecified address (duplicate address
    /// detection) carrying a source link-layer address option.
    DadWithLinkLayer,
    /// A solicitation from the unspecified address not sent to a
    /// solicited-node multicast address.
    DadNotSolicitedNode,
    /// An advertisement to a multicast address with the Solicited flag set.
    SolicitedToMulticast,
    /// A solicitation for an address this port neither owns nor announces.
    NotOurs,
    /// An advertisement: nothing to answer.
    NotASolicitation,
}

/// The responder's verdict on one received frame.
///
/// The shape of [`super::arp::Verdict`], with NDP's reasons for silence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The advertisement to send back on the ingress port, or why there is none.
    pub reply: Result<Vec<u8>, Silence>,
    /// What the neighbour table should learn from the sender, if anything.
    pub learn: Option<Event>,
}

/// A neighbour solicitation or advertisement that passed the checks of §7.1.
enum Message {
    Solicit {
        /// The Ethernet source, where a reply goes without a link-layer option.
        eth_src: EthernetAddress,
        src: Ipv6Addr,
        target: Ipv6Addr,
        lladdr: Option<EthernetAddress>,
    },
    Advert {
        eth_src: EthernetAddress,
        flags: NdiscNeighborFlags,
        target: Ipv6Addr,
        lladdr: Option<EthernetAddress>,
    },
}

/// Decide what to do with `frame`, received on `port` (MAC `mac`) configured as `addrs`.
///
/// A valid solicitation for an address the port answers for gets a solicited
/// advertisement with the Override flag (§7.2.4), sent to the solicitation's
/// source, or to all nodes with Solicited clear when the source is unspecified
/// (duplicate address detection). The sender's link-layer address option is
/// learned as for ARP: an entry is created only when the solicitation is for
/// us, otherwise only an existing one is refreshed. An advertisement with
/// Override set and a target link-layer option refreshes an existing entry
/// (§7.2.5 discards it when there is none).
pub fn respond(port: PortId, mac: EthernetAddress, addrs: &PortAddrsV6, frame: &[u8]) -> Verdict {
    let message = match parse(frame) {
        Ok(message) => message,
        Err(why) => {
            return Verdict {
                reply: Err(why),
                learn: None,
            };
        }
    };
    match message {
        Message::Solicit {
            eth_src,
            src,
            target,
            lladdr,
        } => {
            let for_us = addrs.answers_for(target);
            let learn = lladdr
                .filter(|mac| !src.is_unspecified() && mac.is_unicast())
                .map(|mac| Event::Heard {
                    addr: IpAddr::V6(src),
                    port,
                    mac,
                    create: for_us,
                });
            let reply = if !for_us {
                Err(Silence::NotOurs)
            } else if src.is_unspecified() {
                Ok(advertisement(
                    mac,
                    multicast_mac(ALL_NODES),
                    ALL_NODES,
                    target,
                    NdiscNeighborFlags::OVERRIDE,
                ))
            } else {
                Ok(advertisement(
                    mac,
                    lladdr.unwrap_or(eth_src),
                    src,
                    target,
                    NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                ))
            };
            Verdict { reply, learn }
        }
        Message::Advert {
            flags,
            target,
            lladdr,
            ..
        } => Verdict {
            reply: Err(Silence::NotASolicitation),
            learn: lladdr
                .filter(|mac| flags.contains(NdiscNeighborFlags::OVERRIDE) && mac.is_unicast())
                .map(|mac| Event::Heard {
                    addr: IpAddr::V6(target),
                    port,
                    mac,
                    create: false,
                }),
        },
    }
}

/// The target of a neighbour advertisement and its MAC (what an `ndping`
/// probe prints): the target link-layer option, or the Ethernet source when
/// the advertisement carries none.
pub fn advertisement_of(frame: &[u8]) -> Option<(Ipv6Addr, EthernetAddress)> {
    match parse(frame) {
        Ok(Message::Advert {
            eth_src,
            target,
            lladdr,
            ..
        }) => Some((target, lladdr.unwrap_or(eth_src))),
        _ => None,
    }
}

/// A solicitation from `mac`/`src` for `target`, sent to the target's
/// solicited-node multicast address (§7.2.2) with a source link-layer option.
pub fn solicitation(mac: EthernetAddress, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dst = solicited_node(target);
    frame_for(
        mac,
        multicast_mac(dst),
        src,
        dst,
        NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr: Some(mac.into()),
        },
    )
}

/// The unsolicited advertisement a node sends to all nodes when `addr` moves
/// to it (§7.2.6): Override set, Solicited clear, with a target link-layer
/// option naming `mac`.
pub fn unsolicited_advertisement(mac: EthernetAddress, addr: Ipv6Addr) -> Vec<u8> {
    advertisement(
        mac,
        multicast_mac(ALL_NODES),
        ALL_NODES,
        addr,
        NdiscNeighborFlags::OVERRIDE,
    )
}

/// The ICMPv6 type of `frame` when it is a neighbour solicitation or
/// advertisement directly behind an IPv6 header whose lengths hold; `None`
/// for any other frame (and for a truncated or non-version-6 packet, which
/// the datapath drops as malformed before asking).
pub fn message_type(frame: &[u8]) -> Option<u8> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let kind = *ip.payload().first()?;
    (eth.ethertype() == EthernetProtocol::Ipv6
        && ip.version() == 6
        && ip.next_header() == IpProtocol::Icmpv6
        && matches!(kind, NEIGHBOUR_SOLICITATION | NEIGHBOUR_ADVERTISEMENT))
    .then_some(kind)
}

/// Whether `frame` is a solicitation of the shape a datapath answers itself
/// (the reference pipeline and the XDP program alike): a message of
/// [`SOLICITATION_LEN`] octets whose one option is the source link-layer
/// address. Every multicast solicitation has it, §4.3 requiring the option
/// there; unicast reachability probes and duplicate address detection may
/// not, and are the slow path's, which runs [`respond`] on them. The
/// datapath still runs [`respond`]'s checks on the frames it answers.
pub fn datapath_answers_shape(frame: &[u8]) -> bool {
    message_type(frame) == Some(NEIGHBOUR_SOLICITATION)
        && u16::from_be_bytes([
            frame[ETHERNET_HEADER_LEN + 4],
            frame[ETHERNET_HEADER_LEN + 5],
        ]) == SOLICITATION_LEN as u16
        && frame[SOLICITATION_OPTION_AT..SOLICITATION_OPTION_AT + 2] == [1, 1]
}

/// Parse `frame` and apply the receive checks of §7.1.1 and §7.1.2.
fn parse(frame: &[u8]) -> Result<Message, Silence> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Silence::NotNdp)?;
    if eth.ethertype() != EthernetProtocol::Ipv6 {
        return Err(Silence::NotNdp);
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).map_err(|_| Silence::Truncated)?;
    let ip_repr = Ipv6Repr::parse(&ip).map_err(|_| Silence::NotNdp)?;
    if ip_repr.next_header != IpProtocol::Icmpv6 {
        return Err(Silence::NotNdp);
    }
    if ip.payload().len() < 4 {
        return Err(Silence::Truncated);
    }
    let icmp = Icmpv6Packet::new_unchecked(ip.payload());
    if !matches!(
        icmp.msg_type(),
        Icmpv6Message::NeighborSolicit | Icmpv6Message::NeighborAdvert
    ) {
        return Err(Silence::NotNdp);
    }
    icmp.check_len().map_err(|_| Silence::Truncated)?;
    let (src, dst) = (ip_repr.src_addr, ip_repr.dst_addr);
    if ip_repr.hop_limit != HOP_LIMIT {
        return Err(Silence::HopLimit);
    }
    if !icmp.verify_checksum(&src, &dst) {
        return Err(Silence::Checksum);
    }
    if icmp.msg_code() != 0 {
        return Err(Silence::Code);
    }
    // The checksum and code are checked above; what is left to fail is an option.
    let repr = Icmpv6Repr::parse(&src, &dst, &icmp, &ChecksumCapabilities::ignored())
        .map_err(|_| Silence::BadOption)?;
    let eth_src = eth.src_addr();
    let (target, message) = match repr {
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
            target_addr,
            lladdr,
        }) => {
            let lladdr = lladdr.map(|l| ethernet(l.as_bytes()));
            if src.is_unspecified() && lladdr.is_some() {
                return Err(Silence::DadWithLinkLayer);
            }
            if src.is_unspecified() && dst != solicited_node(target_addr) {
                return Err(Silence::DadNotSolicitedNode);
            }
            let message = Message::Solicit {
                eth_src,
                src,
                target: target_addr,
                lladdr,
            };
            (target_addr, message)
        }
        Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
            flags,
            target_addr,
            lladdr,
        }) => {
            if dst.is_multicast() && flags.contains(NdiscNeighborFlags::SOLICITED) {
                return Err(Silence::SolicitedToMulticast);
            }
            let message = Message::Advert {
                eth_src,
                flags,
                target: target_addr,
                lladdr: lladdr.map(|l| ethernet(l.as_bytes())),
            };
            (target_addr, message)
        }
        _ => return Err(Silence::NotNdp),
    };
    if target.is_multicast() {
        return Err(Silence::MulticastTarget);
    }
    Ok(message)
}

/// An Ethernet address from a link-layer option's bytes: smoltcp hands over
/// six, or eight when something in the build enables its 802.15.4 medium.
fn ethernet(bytes: &[u8]) -> EthernetAddress {
    let mut mac = [0; 6];
    let n = bytes.len().min(6);
    mac[..n].copy_from_slice(&bytes[..n]);
    EthernetAddress(mac)
}

/// The solicited-node multicast address of `addr`: ff02::1:ff00:0/104 and its
/// low 24 bits (RFC 4291 §2.7.1).
fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let [.., a, b, c] = addr.octets();
    let mut octets = [0u8; 16];
    octets[..2].copy_from_slice(&[0xff, 0x02]);
    octets[11..].copy_from_slice(&[0x01, 0xff, a, b, c]);
    Ipv6Addr::from(octets)
}

/// The Ethernet address IPv6 multicast `addr` is sent to: 33:33 and its low
/// 32 bits (RFC 2464 §7).
fn multicast_mac(addr: Ipv6Addr) -> EthernetAddress {
    let [.., a, b, c, d] = addr.octets();
    EthernetAddress([0x33, 0x33, a, b, c, d])
}

/// An advertisement from `mac` for `target` with `flags` and a target
/// link-layer option, from `target` to `dst` (at `dst_mac`).
fn advertisement(
    mac: EthernetAddress,
    dst_mac: EthernetAddress,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    flags: NdiscNeighborFlags,
) -> Vec<u8> {
    frame_for(
        mac,
        dst_mac,
        target,
        dst,
        NdiscRepr::NeighborAdvert {
            flags,
            target_addr: target,
            lladdr: Some(mac.into()),
        },
    )
}

fn frame_for(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ndisc: NdiscRepr,
) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    };
    let icmp = Icmpv6Repr::Ndisc(ndisc);
    let ip = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: HOP_LIMIT,
    };
    let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + icmp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv6Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet);
    icmp.emit(
        &src,
        &dst,
        &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OURS: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const PEER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
    const PEER_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xc8);
    const OWNED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x64);
    const ANNOUNCED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xd3);
    const FOREIGN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x65);

    /// Offsets into the fixtures: the IPv6 hop limit, the ICMPv6 message and
    /// its code, checksum and target, and the link-layer option's length.
    const HOP: usize = 21;
    const ICMP: usize = 54;
    const CODE: usize = 55;
    const CHECKSUM: usize = 56;
    const TARGET: usize = 62;
    const OPT_LEN: usize = 79;

    /// A solicitation as `ndisc6 2001:db8::d3 eth1` sends it from
    /// 2001:db8::c8 (02:00:00:00:00:02), written out by hand from RFC 2464 §7 (33:33 + low 32 bits), RFC 8200 §3,
    /// RFC 4291 §2.7.1 (solicited-node ff02::1:ff00:d3) and RFC 4861 §4.3.
    /// The checksum 0x19bd was computed with RFC 1071's sum over the RFC 8200
    /// §8.1 pseudo-header in Python, and `rfc_1071` below agrees.
    const SOLICIT_BYTES: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0xd3, 0x02, 0, 0, 0, 0, 0x02, 0x86, 0xdd, // Ethernet
        0x60, 0, 0, 0, 0x00, 0x20, 58, 255, // version, length 32, ICMPv6, hop limit
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc8, // source
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0xd3, // destination
        135, 0, 0x19, 0xbd, 0, 0, 0, 0, // type, code, checksum, reserved
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd3, // target
        1, 1, 0x02, 0, 0, 0, 0, 0x02, // source link-layer address option
    ];

    /// The answer, written out by hand from RFC 4861 §4.4 and §7.2.4: from
    /// the target to the solicitation's source, Solicited and Override set, a
    /// target link-layer address option. Checksum 0x8809, computed as above.
    const ADVERT_BYTES: [u8; 86] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd, // Ethernet
        0x60, 0, 0, 0, 0x00, 0x20, 58, 255, // version, length 32, ICMPv6, hop limit
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd3, // source
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc8, // destination
        136, 0, 0x88, 0x09, 0x60, 0, 0, 0, // type, code, checksum, S|O flags
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd3, // target
        2, 1, 0x02, 0, 0, 0, 0, 0x01, // target link-layer address option
    ];

    fn addrs() -> PortAddrsV6 {
        PortAddrsV6 {
            owned: vec![OWNED],
            announced: vec![ANNOUNCED],
        }
    }

    /// RFC 1071's checksum of an IPv6/ICMPv6 packet (RFC 8200 §8.1 pseudo-header),
    /// written independently of smoltcp; 0 when the checksum field is right.
    fn rfc_1071(frame: &[u8]) -> u16 {
        let icmp = &frame[ICMP..];
        let mut data = frame[22..54].to_vec();
        data.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 58]);
        data.extend_from_slice(icmp);
        let mut sum: u32 = data
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// `frame` with its checksum recomputed, so that a later check is reached.
    fn fixed(mut frame: Vec<u8>) -> Vec<u8> {
        frame[CHECKSUM..CHECKSUM + 2].fill(0);
        let sum = rfc_1071(&frame);
        frame[CHECKSUM..CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
        frame
    }

    /// A solicitation from `src` to `dst` for `target`, built with smoltcp.
    fn solicit(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, ll: bool) -> Vec<u8> {
        let lladdr = ll.then_some(PEER.into());
        let ns = NdiscRepr::NeighborSolicit {
            target_addr: target,
            lladdr,
        };
        frame_for(PEER, multicast_mac(dst), src, dst, ns)
    }

    /// The IPv6 header and NDP message of `frame`, parsed by smoltcp with
    /// checksum verification.
    fn parsed(frame: &[u8]) -> (EthernetAddress, Ipv6Repr, NdiscRepr<'_>) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.ethertype(), EthernetProtocol::Ipv6);
        let ip = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let ip_repr = Ipv6Repr::parse(&ip).unwrap();
        let icmp = Icmpv6Packet::new_checked(&frame[ICMP..]).unwrap();
        let caps = ChecksumCapabilities::default();
        let repr = Icmpv6Repr::parse(&ip_repr.src_addr, &ip_repr.dst_addr, &icmp, &caps);
        let Ok(Icmpv6Repr::Ndisc(ndisc)) = repr else {
            panic!("not a valid NDP message: {repr:?}")
        };
        (eth.dst_addr(), ip_repr, ndisc)
    }

    #[test]
    fn fixtures_checksums_are_right() {
        assert_eq!(rfc_1071(&SOLICIT_BYTES), 0);
        assert_eq!(rfc_1071(&ADVERT_BYTES), 0);
    }

    #[test]
    fn solicitation_bytes_match_rfc_4861_layout() {
        assert_eq!(solicitation(PEER, PEER_IP, ANNOUNCED), SOLICIT_BYTES);
    }

    #[test]
    fn answers_an_announced_address_with_the_rfc_bytes() {
        let v = respond(PortId(1), OURS, &addrs(), &SOLICIT_BYTES);
        let reply = v.reply.expect("a reply");
        assert_eq!(reply, ADVERT_BYTES);
        let (dst_mac, ip, ndisc) = parsed(&reply);
        assert_eq!(dst_mac, PEER);
        assert_eq!((ip.src_addr, ip.dst_addr), (ANNOUNCED, PEER_IP));
        assert_eq!(ip.hop_limit, 255);
        assert_eq!(
            ndisc,
            NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::SOLICITED | NdiscNeighborFlags::OVERRIDE,
                target_addr: ANNOUNCED,
                lladdr: Some(OURS.into()),
            }
        );
        assert_eq!(
            v.learn,
            Some(Event::Heard {
                addr: IpAddr::V6(PEER_IP),
                port: PortId(1),
                mac: PEER,
                create: true,
            })
        );
    }

    #[test]
    fn answers_an_owned_address_to_the_ethernet_source_without_an_option() {
        let ns = solicit(PEER_IP, solicited_node(OWNED), OWNED, false);
        let v = respond(PortId(1), OURS, &addrs(), &ns);
        let (dst_mac, ip, ndisc) = parsed(v.reply.as_ref().expect("a reply"));
        assert_eq!(dst_mac, PEER);
        assert_eq!(ip.dst_addr, PEER_IP);
        assert!(
            matches!(ndisc, NdiscRepr::NeighborAdvert { target_addr, .. } if target_addr == OWNED)
        );
        assert_eq!(v.learn, None);
    }

    #[test]
    fn stays_silent_for_a_foreign_target_and_only_refreshes() {
        let ns = solicit(PEER_IP, solicited_node(FOREIGN), FOREIGN, true);
        let v = respond(PortId(1), OURS, &addrs(), &ns);
        assert_eq!(v.reply, Err(Silence::NotOurs));
        assert!(matches!(v.learn, Some(Event::Heard { create: false, .. })));
    }

    #[test]
    fn duplicate_address_detection_is_answered_to_all_nodes_unsolicited() {
        let dad = solicit(
            Ipv6Addr::UNSPECIFIED,
            solicited_node(ANNOUNCED),
            ANNOUNCED,
            false,
        );
        let v = respond(PortId(1), OURS, &addrs(), &dad);
        let (dst_mac, ip, ndisc) = parsed(v.reply.as_ref().expect("a reply"));
        assert_eq!(dst_mac, EthernetAddress([0x33, 0x33, 0, 0, 0, 0x01]));
        assert_eq!((ip.src_addr, ip.dst_addr), (ANNOUNCED, ALL_NODES));
        assert!(matches!(
            ndisc,
            NdiscRepr::NeighborAdvert { flags, .. } if flags == NdiscNeighborFlags::OVERRIDE
        ));
        assert_eq!(v.learn, None);
    }

    #[test]
    fn duplicate_address_detection_must_follow_section_7_1_1() {
        let with_option = solicit(
            Ipv6Addr::UNSPECIFIED,
            solicited_node(ANNOUNCED),
            ANNOUNCED,
            true,
        );
        let to_all_nodes = solicit(Ipv6Addr::UNSPECIFIED, ALL_NODES, ANNOUNCED, false);
        for (frame, why) in [
            (with_option, Silence::DadWithLinkLayer),
            (to_all_nodes, Silence::DadNotSolicitedNode),
        ] {
            let v = respond(PortId(1), OURS, &addrs(), &frame);
            assert_eq!((v.reply, v.learn), (Err(why), None));
        }
    }

    #[test]
    fn each_failed_check_has_its_reason() {
        let with = |at: usize, byte: u8| {
            let mut frame = SOLICIT_BYTES.to_vec();
            frame[at] = byte;
            frame
        };
        let mut short = SOLICIT_BYTES[..ICMP + 20].to_vec();
        short[19] = 20; // the IPv6 payload length says 20: one short of a solicitation
        let mut echo = with(ICMP, 128);
        echo.truncate(ICMP + 8);
        echo[19] = 8;
        let mut arp = SOLICIT_BYTES.to_vec();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let cases = [
            (vec![0; 10], Silence::NotNdp),
            (arp, Silence::NotNdp),
            (with(20, 17), Silence::NotNdp),
            (fixed(echo), Silence::NotNdp),
            (SOLICIT_BYTES[..40].to_vec(), Silence::Truncated),
            (SOLICIT_BYTES[..ICMP + 20].to_vec(), Silence::Truncated),
            (fixed(short), Silence::Truncated),
            (with(HOP, 64), Silence::HopLimit),
            (with(CHECKSUM, 0), Silence::Checksum),
            (fixed(with(CODE, 1)), Silence::Code),
            (fixed(with(OPT_LEN, 0)), Silence::BadOption),
            (fixed(with(OPT_LEN, 2)), Silence::BadOption),
            (fixed(with(TARGET, 0xff)), Silence::MulticastTarget),
        ];
        for (frame, why) in cases {
            let v = respond(PortId(1), OURS, &addrs(), &frame);
            assert_eq!((v.reply, v.learn), (Err(why), None), "{frame:02x?}");
        }
    }

    #[test]
    fn unsolicited_advertisement_parses_back() {
        let na = unsolicited_advertisement(OURS, ANNOUNCED);
        let (dst_mac, ip, ndisc) = parsed(&na);
        assert_eq!(dst_mac, EthernetAddress([0x33, 0x33, 0, 0, 0, 0x01]));
        assert_eq!(
            (ip.src_addr, ip.dst_addr, ip.hop_limit),
            (ANNOUNCED, ALL_NODES, 255)
        );
        assert_eq!(
            ndisc,
            NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::OVERRIDE,
                target_addr: ANNOUNCED,
                lladdr: Some(OURS.into()),
            }
        );
        assert_eq!(advertisement_of(&na), Some((ANNOUNCED, OURS)));
        let v = respond(PortId(3), OURS, &PortAddrsV6::default(), &na);
        assert_eq!(v.reply, Err(Silence::NotASolicitation));
        assert_eq!(
            v.learn,
            Some(Event::Heard {
                addr: IpAddr::V6(ANNOUNCED),
                port: PortId(3),
                mac: OURS,
                create: false,
            })
        );
    }

    #[test]
    fn advertisement_of_reads_replies_only() {
        assert_eq!(advertisement_of(&ADVERT_BYTES), Some((ANNOUNCED, OURS)));
        assert_eq!(advertisement_of(&SOLICIT_BYTES), None);
        let mut bare = ADVERT_BYTES[..ICMP + 24].to_vec();
        bare[19] = 24;
        assert_eq!(advertisement_of(&fixed(bare)), Some((ANNOUNCED, OURS)));
    }

    #[test]
    fn a_solicited_advertisement_to_multicast_is_dropped() {
        let mut na = unsolicited_advertisement(PEER, FOREIGN);
        na[ICMP + 4] = 0x60;
        let v = respond(PortId(1), OURS, &addrs(), &fixed(na));
        assert_eq!(
            (v.reply, v.learn),
            (Err(Silence::SolicitedToMulticast), None)
        );
    }

    /// Whatever `respond` makes of `frame`, it does not panic, and a reply is
    /// a valid advertisement from this port.
    fn check(frame: &[u8]) {
        if let Ok(reply) = respond(PortId(1), OURS, &addrs(), frame).reply {
            let (target, mac) = advertisement_of(&reply).expect("an advertisement");
            assert!(addrs().answers_for(target));
            assert_eq!(mac, OURS);
        }
    }

    proptest! {
        // A fixed seed: the same cases in every run, so a failure replays.
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(12),
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..128)) {
            check(&frame);
        }

        #[test]
        fn mutated_solicitations_never_panic(
            edits in proptest::collection::vec((0..SOLICIT_BYTES.len(), any::<u8>()), 1..4),
            len in 0..=SOLICIT_BYTES.len() + 8,
            checksum in any::<bool>(),
        ) {
            let mut frame = SOLICIT_BYTES.to_vec();
            frame.resize(SOLICIT_BYTES.len() + 8, 0);
            for (at, byte) in edits {
                frame[at] = byte;
            }
            frame.truncate(len);
            check(&frame);
            if checksum && frame.len() >= ICMP + 4 {
                check(&fixed(frame));
            }
        }
    }
}
