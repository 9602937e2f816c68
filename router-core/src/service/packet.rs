//! Where a service packet's 5-tuple sits in an IP packet, and rewriting it.
//!
//! Owns reading the 5-tuple and TCP flags of an IPv4 packet (any header
//! length) or an IPv6 packet (no extension headers) carrying TCP or UDP, and
//! rewriting its addresses and ports to a translated tuple with incremental
//! checksum updates (RFC 1624): the IPv4 header checksum, and the TCP or UDP
//! checksum, which covers the pseudo-header's addresses (RFC 9293 §3.1, RFC
//! 768, RFC 8200 §8.1). A UDP/IPv4 packet without a checksum (zero) keeps
//! none. Fragments (other than a whole unfragmented packet), SCTP (whose
//! CRC32c cannot be updated incrementally) and other protocols are not
//! service packets here. Allocation-free, over byte offsets, so the eBPF
//! programs can share it.
//!
//! The fields read and written, after the IP header (at `l4`):
//!
//! ```text
//!  IPv4: src 12..16, dst 16..20, header checksum 10..12, IHL in byte 0
//!  IPv6: src  8..24, dst 24..40, next header 6, transport at 40
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |  l4 + 0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  UDP: Length                  |  UDP: Checksum                |  l4 + 4
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   TCP: flags at l4 + 13, checksum at l4 + 16..18
//! ```

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Protocol, Tuple};
use crate::datapath::checksum;

/// IPv4's protocol numbers of TCP and UDP.
const TCP: u8 = 6;
const UDP: u8 = 17;

/// Byte access to a packet's headers: a slice here, a fixed buffer with
/// masked indices in eBPF (where the verifier must see every index bounded).
pub trait Bytes {
    /// Byte `at`, or `None` past the packet's end.
    fn byte(&self, at: usize) -> Option<u8>;
    /// Set byte `at`; nothing past the packet's end.
    fn set_byte(&mut self, at: usize, value: u8);
}

impl Bytes for [u8] {
    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        self.get(at).copied()
    }
    #[inline(always)]
    fn set_byte(&mut self, at: usize, value: u8) {
        if let Some(b) = self.get_mut(at) {
            *b = value;
        }
    }
}

/// A service packet's 5-tuple and where its transport header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The 5-tuple.
    pub tuple: Tuple,
    /// The TCP flags byte (0 for UDP).
    pub flags: u8,
    /// Offset of the transport header in the IP packet.
    pub l4: usize,
}

/// The 5-tuple of the IP packet `ip` (starting at the IP header), if it is
/// an unfragmented TCP or UDP packet whose headers are all there.
pub fn parse<B: Bytes + ?Sized>(ip: &B) -> Option<Parsed> {
    let first = ip.byte(0)?;
    let (src, dst, protocol, l4) = match first >> 4 {
        4 => {
            let l4 = usize::from(first & 0x0f) * 4;
            let fragment = read16(ip, 6)? & 0x3fff;
            if l4 < 20 || fragment != 0 {
                return None;
            }
            let src = Ipv4Addr::from(read::<4, B>(ip, 12)?);
            let dst = Ipv4Addr::from(read::<4, B>(ip, 16)?);
            (IpAddr::V4(src), IpAddr::V4(dst), ip.byte(9)?, l4)
        }
        6 => {
            let src = Ipv6Addr::from(read::<16, B>(ip, 8)?);
            let dst = Ipv6Addr::from(read::<16, B>(ip, 24)?);
            (IpAddr::V6(src), IpAddr::V6(dst), ip.byte(6)?, 40)
        }
        _ => return None,
    };
    let (protocol, header) = match protocol {
        TCP => (Protocol::Tcp, 20),
        UDP => (Protocol::Udp, 8),
        _ => return None,
    };
    ip.byte(l4 + header - 1)?;
    Some(Parsed {
        tuple: Tuple {
            src,
            dst,
            src_port: read16(ip, l4)?,
            dst_port: read16(ip, l4 + 2)?,
            protocol,
        },
        flags: if protocol == Protocol::Tcp {
            ip.byte(l4 + 13)?
        } else {
            0
        },
        l4,
    })
}

/// The length the IP packet `ip` says it has (IPv4's total length, IPv6's
/// 40 + payload length), at most the bytes there are; `None` when its
/// header is cut short or of another version. What follows is padding.
pub fn ip_len<B: Bytes + ?Sized>(ip: &B, available: usize) -> Option<usize> {
    let said = match ip.byte(0)? >> 4 {
        4 => usize::from(read16(ip, 2)?),
        6 => 40 + usize::from(read16(ip, 4)?),
        _ => return None,
    };
    Some(said.min(available))
}

/// Rewrite the packet `parsed` came from to carry `to`'s addresses and
/// ports, updating its checksums. `to` must be of the packet's family and
/// protocol (what the service datapath hands back); a mismatch leaves the
/// packet as it was and returns false.
pub fn rewrite<B: Bytes + ?Sized>(ip: &mut B, parsed: &Parsed, to: &Tuple) -> bool {
    let from = parsed.tuple;
    if from.protocol != to.protocol || from.src.is_ipv4() != to.src.is_ipv4() {
        return false;
    }
    let (src_at, dst_at, header_check) = match from.src {
        IpAddr::V4(_) => (12, 16, Some(10)),
        IpAddr::V6(_) => (8, 24, None),
    };
    let l4_check = parsed.l4
        + match from.protocol {
            Protocol::Tcp => 16,
            _ => 6,
        };
    // A UDP/IPv4 packet sent without a checksum keeps none.
    let l4_has_check =
        !(from.protocol == Protocol::Udp && from.src.is_ipv4() && read16(ip, l4_check) == Some(0));
    let mut words = Changes {
        ip,
        header: 0,
        l4: 0,
    };
    words.address(src_at, to.src);
    words.address(dst_at, to.dst);
    words.word(parsed.l4, to.src_port, false);
    words.word(parsed.l4 + 2, to.dst_port, false);
    let Changes { ip, header, l4 } = words;
    if let Some(at) = header_check {
        adjust(ip, at, header);
    }
    if l4_has_check {
        let check = adjust(ip, l4_check, l4);
        if to.protocol == Protocol::Udp && check == Some(0) {
            // RFC 768: a computed zero is sent as all ones.
            write16(ip, l4_check, 0xffff);
        }
    }
    true
}

/// Add the one's complement sum of changes `delta` to the checksum at `at`
/// (RFC 1624 eqn. 3 over all changed words at once); the new checksum.
#[inline(always)]
fn adjust<B: Bytes + ?Sized>(ip: &mut B, at: usize, delta: u32) -> Option<u16> {
    let check = read16(ip, at)?;
    let updated = !checksum::fold(u32::from(!check) + delta);
    write16(ip, at, updated);
    Some(updated)
}

/// The `N` bytes at `at`, if the packet has them.
#[inline(always)]
fn read<const N: usize, B: Bytes + ?Sized>(ip: &B, at: usize) -> Option<[u8; N]> {
    let mut out = [0; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = ip.byte(at + i)?;
    }
    Some(out)
}

/// The big-endian word at `at`, if the packet has it.
#[inline(always)]
fn read16<B: Bytes + ?Sized>(ip: &B, at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(read::<2, B>(ip, at)?))
}

/// Set the big-endian word at `at`, if the packet has it.
#[inline(always)]
fn write16<B: Bytes + ?Sized>(ip: &mut B, at: usize, value: u16) {
    let [hi, lo] = value.to_be_bytes();
    ip.set_byte(at, hi);
    ip.set_byte(at + 1, lo);
}

/// Word-by-word changes to a packet, and the one's complement sums of the
/// changes each checksum covers. Every word is written and summed (an
/// unchanged word adds `!old + old`, one's complement zero), so the rewrite
/// has no data-dependent branch: the eBPF verifier follows one path.
struct Changes<'a, B: Bytes + ?Sized> {
    ip: &'a mut B,
    /// Changes the IPv4 header checksum covers (the addresses).
    header: u32,
    /// Changes the transport checksum covers (pseudo-header and ports).
    l4: u32,
}

impl<B: Bytes + ?Sized> Changes<'_, B> {
    /// Set the address at `at` (4 or 16 bytes), a pseudo-header field.
    #[inline(always)]
    fn address(&mut self, at: usize, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.words(at, &a.octets(), true),
            IpAddr::V6(a) => self.words(at, &a.octets(), true),
        }
    }

    #[inline(always)]
    fn words(&mut self, at: usize, bytes: &[u8], in_ip_header: bool) {
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            self.word(
                at + 2 * i,
                u16::from_be_bytes([pair[0], pair[1]]),
                in_ip_header,
            );
        }
    }

    /// Set the 16-bit word at `at`; the transport checksum always covers
    /// it, the IPv4 header checksum when it is in the header.
    #[inline(always)]
    fn word(&mut self, at: usize, new: u16, in_ip_header: bool) {
        let Some(old) = read16(self.ip, at) else {
            return;
        };
        write16(self.ip, at, new);
        let delta = u32::from(!old) + u32::from(new);
        self.l4 += delta;
        if in_ip_header {
            self.header += delta;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpControl, TcpPacket,
        TcpRepr, TcpSeqNumber, UdpPacket, UdpRepr,
    };

    /// An IP packet built (and checksummed) by smoltcp.
    fn packet(t: &Tuple, payload: &[u8]) -> Vec<u8> {
        let caps = ChecksumCapabilities::default();
        let (src, dst) = (IpAddress::from(t.src), IpAddress::from(t.dst));
        let (l4, proto): (Vec<u8>, IpProtocol) = match t.protocol {
            Protocol::Tcp => {
                let repr = TcpRepr {
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                    control: TcpControl::Syn,
                    seq_number: TcpSeqNumber(7),
                    ack_number: None,
                    window_len: 512,
                    window_scale: None,
                    max_seg_size: None,
                    sack_permitted: false,
                    sack_ranges: [None; 3],
                    timestamp: None,
                    payload,
                };
                let mut b = alloc::vec![0; repr.buffer_len()];
                repr.emit(&mut TcpPacket::new_unchecked(&mut b), &src, &dst, &caps);
                (b, IpProtocol::Tcp)
            }
            _ => {
                let repr = UdpRepr {
                    src_port: t.src_port,
                    dst_port: t.dst_port,
                };
                let mut b = alloc::vec![0; 8 + payload.len()];
                repr.emit(
                    &mut UdpPacket::new_unchecked(&mut b),
                    &src,
                    &dst,
                    payload.len(),
                    |p| p.copy_from_slice(payload),
                    &caps,
                );
                (b, IpProtocol::Udp)
            }
        };
        let mut out = match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let repr = Ipv4Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: proto,
                    payload_len: l4.len(),
                    hop_limit: 64,
                };
                let mut b = alloc::vec![0; 20];
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut b), &caps);
                b
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let repr = Ipv6Repr {
                    src_addr: s,
                    dst_addr: d,
                    next_header: proto,
                    payload_len: l4.len(),
                    hop_limit: 64,
                };
                let mut b = alloc::vec![0; 40];
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut b));
                b
            }
            _ => unreachable!("one family"),
        };
        out.extend_from_slice(&l4);
        out
    }

    fn tuple(v6: bool, tcp: bool, a: [u16; 4]) -> Tuple {
        let addr = |x: u16| {
            if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, x >> 8, x))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | u32::from(x)))
            }
        };
        Tuple {
            src: addr(a[0]),
            dst: addr(a[1]),
            src_port: a[2],
            dst_port: a[3],
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
        }
    }

    proptest! {
        /// Rewriting a packet gives exactly the packet built with the new
        /// tuple: the checksums updated incrementally equal those computed
        /// from scratch.
        #[test]
        fn a_rewrite_equals_the_packet_built_translated(
            v6 in any::<bool>(),
            tcp in any::<bool>(),
            from in any::<[u16; 4]>(),
            to in any::<[u16; 4]>(),
            payload in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let (a, b) = (tuple(v6, tcp, from), tuple(v6, tcp, to));
            let mut p = packet(&a, &payload);
            let parsed = parse(&p[..]).expect("a service packet");
            prop_assert_eq!(parsed.tuple, a);
            prop_assert!(rewrite(&mut p[..], &parsed, &b));
            prop_assert_eq!(p, packet(&b, &payload));
        }
    }

    #[test]
    fn syn_flags_are_read_and_fragments_are_not_service_packets() {
        let t = tuple(false, true, [1, 2, 40000, 80]);
        let mut p = packet(&t, b"");
        assert_eq!(parse(&p[..]).map(|x| x.flags), Some(0x02));
        p[6] = 0x20; // more fragments
        assert_eq!(parse(&p[..]), None);
        let u = packet(&tuple(false, false, [1, 2, 3, 4]), b"x");
        assert_eq!(parse(&u[..20 + 7]), None, "truncated UDP header");
        let mut other = u.clone();
        other[9] = 132;
        assert_eq!(parse(&other[..]), None, "SCTP is not handled here");
    }

    #[test]
    fn udp_without_a_checksum_keeps_none() {
        let (a, b) = (
            tuple(false, false, [1, 2, 3, 4]),
            tuple(false, false, [5, 6, 7, 8]),
        );
        let mut p = packet(&a, b"abc");
        p[26..28].fill(0);
        let parsed = parse(&p[..]).unwrap();
        assert!(rewrite(&mut p[..], &parsed, &b));
        assert_eq!(&p[26..28], &[0, 0]);
        assert!(Ipv4Packet::new_checked(&p[..]).unwrap().verify_checksum());
        let mixed = tuple(true, false, [5, 6, 7, 8]);
        assert!(!rewrite(&mut p[..], &parsed, &mixed), "another family");
    }
}
