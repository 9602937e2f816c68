//! ICMPv4 errors the host sends about packets it could not deliver.
//!
//! Owns the message layout (RFC 792: type, code, the offending IP header and
//! the start of its payload) and the RFC 1122 §3.2.2 rules on when not to send
//! one. Which error a datapath exit deserves, and from which address, is the
//! host's decision; routing the message is router-core's.

use core::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr};

/// TTL of the errors the host sends.
pub const TTL: u8 = 64;
/// Errors are at most this long (RFC 1812 §4.3.2.3: the minimum reassembly size).
const MAX_LEN: usize = 576;

/// An error the host reports to a packet's source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Type 11 code 0: the TTL ran out in transit (what traceroute collects).
    TtlExceeded,
    /// Type 3 code 0: no route to the destination network.
    NetUnreachable,
    /// Type 3 code 1: the destination (or the nexthop) did not answer ARP.
    HostUnreachable,
    /// Type 3 code 4: too big for the next hop with DF set; carries the
    /// next hop's MTU (RFC 1191 §4).
    FragmentationNeeded {
        /// The largest packet the next hop takes.
        mtu: u16,
    },
}

impl Error {
    fn type_code(self) -> (u8, u8) {
        match self {
            Error::TtlExceeded => (11, 0),
            Error::NetUnreachable => (3, 0),
            Error::HostUnreachable => (3, 1),
            Error::FragmentationNeeded { .. } => (3, 4),
        }
    }
}

/// The IPv4 packet carrying `error` about `original` (an IP packet) from `from`,
/// or `None` when none may be sent: not IPv4, a non-unicast source, a fragment
/// other than the first, or an ICMP error itself.
pub fn error(error: Error, from: Ipv4Addr, original: &[u8]) -> Option<Vec<u8>> {
    let orig = Ipv4Packet::new_checked(original).ok()?;
    let src = orig.src_addr();
    if orig.version() != 4
        || src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || orig.frag_offset() != 0
    {
        return None;
    }
    let header_len = usize::from(orig.header_len());
    if orig.next_header() == IpProtocol::Icmp {
        let icmp_type = *original.get(header_len)?;
        if !matches!(icmp_type, 0 | 8 | 13 | 14 | 17 | 18) {
            return None;
        }
    }
    let quoted = &original[..usize::from(orig.total_len()).min(original.len())];
    let quoted = &quoted[..quoted.len().min(MAX_LEN - 20 - 8)];
    let repr = Ipv4Repr {
        src_addr: from,
        dst_addr: src,
        next_header: IpProtocol::Icmp,
        payload_len: 8 + quoted.len(),
        hop_limit: TTL,
    };
    let mut packet = vec![0u8; 20 + repr.payload_len];
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    repr.emit(&mut ip, &ChecksumCapabilities::default());
    let (kind, code) = error.type_code();
    let icmp = &mut packet[20..];
    icmp[0] = kind;
    icmp[1] = code;
    if let Error::FragmentationNeeded { mtu } = error {
        icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    }
    icmp[8..].copy_from_slice(quoted);
    let check = router_core::datapath::checksum::compute(icmp);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Icmpv4Message, Icmpv4Packet};

    /// An IPv4 packet 10.0.1.10 → 10.0.2.10 of `proto` with an 8-byte payload.
    fn packet(proto: u8, first_payload_byte: u8) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 1, 10),
            dst_addr: Ipv4Addr::new(10, 0, 2, 10),
            next_header: IpProtocol::from(proto),
            payload_len: 8,
            hop_limit: 1,
        };
        let mut p = vec![0u8; 28];
        repr.emit(
            &mut Ipv4Packet::new_unchecked(&mut p[..]),
            &ChecksumCapabilities::default(),
        );
        p[20] = first_payload_byte;
        p
    }

    #[test]
    fn time_exceeded_quotes_the_packet_back_to_its_source() {
        let orig = packet(17, 0x30);
        let from = Ipv4Addr::new(10, 0, 1, 1);
        let bytes = error(Error::TtlExceeded, from, &orig).unwrap();
        let ip = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src_addr(), from);
        assert_eq!(ip.dst_addr(), Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(ip.hop_limit(), TTL);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), Icmpv4Message::TimeExceeded);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(&ip.payload()[8..], &orig[..]);
    }

    #[test]
    fn unreachable_codes() {
        let from = Ipv4Addr::new(10, 0, 1, 1);
        for (e, code) in [(Error::NetUnreachable, 0), (Error::HostUnreachable, 1)] {
            let bytes = error(e, from, &packet(6, 0)).unwrap();
            assert_eq!(&bytes[20..22], &[3, code]);
        }
    }

    #[test]
    fn fragmentation_needed_carries_the_next_hops_mtu() {
        let from = Ipv4Addr::new(10, 0, 1, 1);
        let bytes = error(
            Error::FragmentationNeeded { mtu: 1450 },
            from,
            &packet(6, 0),
        )
        .unwrap();
        let icmp = Icmpv4Packet::new_checked(&bytes[20..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(&bytes[20..22], &[3, 4]);
        assert_eq!(&bytes[26..28], &1450u16.to_be_bytes());
    }

    #[test]
    fn never_about_errors_or_garbage() {
        let from = Ipv4Addr::new(10, 0, 1, 1);
        assert!(error(Error::TtlExceeded, from, &packet(1, 11)).is_none());
        assert!(error(Error::TtlExceeded, from, &packet(1, 8)).is_some());
        assert!(error(Error::TtlExceeded, from, &[0x45, 0]).is_none());
        let mut broadcast = packet(17, 0);
        broadcast[12..16].copy_from_slice(&[255; 4]);
        assert!(error(Error::TtlExceeded, from, &broadcast).is_none());
    }
}
