//! The ARP responder: which requests a port answers, and the frames it sends.
//!
//! Owns the answer-or-not decision (reply only for addresses the host owns on
//! that port or announces there, e.g. LoadBalancer IPs with L2 announcements),
//! what the sender of an ARP packet teaches the neighbour table, and the
//! request, reply and gratuitous frames. Bytes go through smoltcp's `wire`
//! types (RFC 826 layout). The table's state lives in [`super::table`].

use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};

use super::table::Event;
use crate::port::PortId;

/// What a port answers ARP for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortAddrs {
    /// The port's MAC address.
    pub mac: EthernetAddress,
    /// Addresses configured on the port.
    pub owned: Vec<Ipv4Addr>,
    /// Addresses announced on the port on behalf of others (L2 announcements).
    pub announced: Vec<Ipv4Addr>,
}

impl PortAddrs {
    /// Whether this port answers for `addr`.
    pub fn answers_for(&self, addr: Ipv4Addr) -> bool {
        self.owned.contains(&addr) || self.announced.contains(&addr)
    }
}

/// Why a frame got no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silence {
    /// Not an ARP frame.
    NotArp,
    /// An ARP frame too short or not Ethernet/IPv4.
    Malformed,
    /// A request for an address this port neither owns nor announces.
    NotOurs,
    /// A reply, or a gratuitous announcement: nothing to answer.
    NotARequest,
}

/// The responder's verdict on one received frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The reply frame to send back on the ingress port, or why there is none.
    pub reply: Result<Vec<u8>, Silence>,
    /// What the neighbour table should learn from the sender, if anything.
    pub learn: Option<Event>,
}

/// Decide what to do with `frame`, received on `port` configured as `addrs`.
pub fn respond(port: PortId, addrs: &PortAddrs, frame: &[u8]) -> Verdict {
    let silent = |why| Verdict {
        reply: Err(why),
        learn: None,
    };
    let (operation, sha, spa, tpa) = match parse(frame) {
        Ok(fields) => fields,
        Err(why) => return silent(why),
    };
    let gratuitous = spa == tpa;
    let for_us = addrs.answers_for(tpa);
    let learn = (!spa.is_unspecified() && sha.is_unicast()).then_some(Event::Heard {
        addr: IpAddr::V4(spa),
        port,
        mac: sha,
        create: !gratuitous && (for_us || operation == ArpOperation::Reply),
    });
    let reply = match operation {
        ArpOperation::Request if gratuitous => Err(Silence::NotARequest),
        ArpOperation::Request if for_us => Ok(frame_for(
            addrs.mac,
            sha,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: addrs.mac,
                source_protocol_addr: tpa,
                target_hardware_addr: sha,
                target_protocol_addr: spa,
            },
        )),
        ArpOperation::Request => Err(Silence::NotOurs),
        _ => Err(Silence::NotARequest),
    };
    Verdict { reply, learn }
}

/// The sender of an ARP reply: its address and MAC (what `arping` prints).
pub fn reply_of(frame: &[u8]) -> Option<(Ipv4Addr, EthernetAddress)> {
    match parse(frame) {
        Ok((ArpOperation::Reply, sha, spa, _)) => Some((spa, sha)),
        _ => None,
    }
}

/// An Ethernet/IPv4 ARP frame's operation, sender MAC, sender and target
/// addresses.
fn parse(frame: &[u8]) -> Result<(ArpOperation, EthernetAddress, Ipv4Addr, Ipv4Addr), Silence> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Silence::NotArp)?;
    if eth.ethertype() != EthernetProtocol::Arp {
        return Err(Silence::NotArp);
    }
    match ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) {
        Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) => Ok((
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
        )),
        _ => Err(Silence::Malformed),
    }
}

/// A broadcast request from `mac`/`src` asking for `target`.
pub fn request(mac: EthernetAddress, src: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    frame_for(
        mac,
        EthernetAddress::BROADCAST,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: mac,
            source_protocol_addr: src,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: target,
        },
    )
}

/// A gratuitous ARP (a broadcast request for our own address, RFC 5227 §3
/// "ARP Announcement"), sent when `addr` moves to this port.
pub fn gratuitous(mac: EthernetAddress, addr: Ipv4Addr) -> Vec<u8> {
    request(mac, addr, addr)
}

fn frame_for(src: EthernetAddress, dst: EthernetAddress, arp: ArpRepr) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
    const PEER: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);

    fn addrs() -> PortAddrs {
        PortAddrs {
            mac: OURS,
            owned: vec![Ipv4Addr::new(192, 168, 10, 100)],
            announced: vec![Ipv4Addr::new(192, 168, 10, 211)],
        }
    }

    fn ask(target: [u8; 4]) -> Vec<u8> {
        request(PEER, Ipv4Addr::new(192, 168, 10, 200), target.into())
    }

    /// An ARP request as tcpdump -xx shows it for `arping -I eth1 192.168.10.100`
    /// from 192.168.10.200 (02:00:00:00:00:02), written out by hand from RFC 826.
    const REQUEST_BYTES: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x02, 0, 0, 0, 0, 0x02, 192, 168, 10, 200, // sender
        0, 0, 0, 0, 0, 0, 192, 168, 10, 100, // target
    ];

    #[test]
    fn request_bytes_match_rfc_826_layout() {
        assert_eq!(ask([192, 168, 10, 100]), REQUEST_BYTES);
    }

    #[test]
    fn answers_owned_and_announced_addresses() {
        for target in [[192, 168, 10, 100], [192, 168, 10, 211]] {
            let v = respond(PortId(1), &addrs(), &ask(target));
            let reply = v.reply.expect("a reply");
            let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
            assert_eq!(eth.dst_addr(), PEER);
            assert_eq!(eth.src_addr(), OURS);
            let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
            let ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } = arp
            else {
                unreachable!("only one ARP representation exists")
            };
            assert_eq!(operation, ArpOperation::Reply);
            assert_eq!(source_hardware_addr, OURS);
            assert_eq!(source_protocol_addr, Ipv4Addr::from(target));
            assert_eq!(target_protocol_addr, Ipv4Addr::new(192, 168, 10, 200));
            assert!(matches!(v.learn, Some(Event::Heard { create: true, .. })));
        }
    }

    #[test]
    fn stays_silent_for_others() {
        let v = respond(PortId(1), &addrs(), &ask([192, 168, 10, 101]));
        assert_eq!(v.reply, Err(Silence::NotOurs));
        assert!(matches!(v.learn, Some(Event::Heard { create: false, .. })));
    }

    #[test]
    fn gratuitous_only_updates() {
        let g = gratuitous(PEER, Ipv4Addr::new(192, 168, 10, 211));
        let v = respond(PortId(1), &addrs(), &g);
        assert_eq!(v.reply, Err(Silence::NotARequest));
        assert!(matches!(v.learn, Some(Event::Heard { create: false, .. })));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            respond(PortId(0), &addrs(), &[0; 10]).reply,
            Err(Silence::NotArp)
        );
        let mut bad = REQUEST_BYTES;
        bad[18] = 8; // hardware length 8: not Ethernet/IPv4
        assert_eq!(
            respond(PortId(0), &addrs(), &bad).reply,
            Err(Silence::Malformed)
        );
        assert_eq!(
            respond(PortId(0), &addrs(), &REQUEST_BYTES[..20]).reply,
            Err(Silence::Malformed)
        );
    }
}
