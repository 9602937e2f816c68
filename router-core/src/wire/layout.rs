//! Header lengths and offsets of the frames the datapath parses and builds,
//! written once for the reference pipeline, the simulator, the simulated hosts
//! and the eBPF programs: the Ethernet header, and the outer headers an
//! encapsulation puts in front of the inner frame with their TTL.
//!
//! An encapsulated frame is, from its first byte: outer Ethernet
//! ([`ETHERNET_HEADER_LEN`]), outer IPv4 without options
//! ([`IPV4_HEADER_LEN`]), UDP ([`UDP_HEADER_LEN`], at [`OUTER_UDP_AT`]), the
//! VXLAN header or Geneve base header (at [`OUTER_TUNNEL_AT`]), then the inner
//! Ethernet frame (at [`ENCAP_OVERHEAD`]).
//!
//! A neighbour solicitation the datapaths answer themselves (RFC 4861 §4.3;
//! `neighbour::ndp` says which) is, from its first byte: Ethernet, IPv6 with
//! no extension header ([`IPV6_HEADER_LEN`]), then the ICMPv6 message (at
//! [`ICMPV6_AT`]) of [`SOLICITATION_LEN`] octets whose one option, the source
//! link-layer address, starts at [`SOLICITATION_OPTION_AT`].

use super::{geneve, vxlan};

/// Ethernet header length (no VLAN tag).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 header length (without extension headers).
pub const IPV6_HEADER_LEN: usize = 40;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

/// Where the outer UDP header of a tunnel frame starts.
pub const OUTER_UDP_AT: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;
/// Where the VXLAN or Geneve header of a tunnel frame starts.
pub const OUTER_TUNNEL_AT: usize = OUTER_UDP_AT + UDP_HEADER_LEN;
/// Bytes either encapsulation (VXLAN, or Geneve without options) adds in
/// front of the inner frame: 50. The same number is what the tunnel takes from
/// the underlay's IP MTU (outer IPv4 + UDP + tunnel header + inner Ethernet).
pub const ENCAP_OVERHEAD: usize = OUTER_TUNNEL_AT + vxlan::HEADER_LEN;
/// TTL of the outer IPv4 header of encapsulated frames.
pub const OUTER_TTL: u8 = 64;

/// Where an ICMPv6 message directly behind the IPv6 header starts.
pub const ICMPV6_AT: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
/// ICMPv6 type of a neighbour solicitation (RFC 4861 §4.3).
pub const NEIGHBOUR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a neighbour advertisement (RFC 4861 §4.4).
pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// ICMPv6 length of a solicitation with one Ethernet link-layer address
/// option: type, code, checksum, reserved, target (24) and the option (8).
/// An advertisement with one such option has the same length.
pub const SOLICITATION_LEN: usize = 32;
/// Where the one option of such a solicitation starts.
pub const SOLICITATION_OPTION_AT: usize = ICMPV6_AT + 24;

// Both encapsulations share one overhead only while their base headers are
// the same length.
const _: () = assert!(vxlan::HEADER_LEN == geneve::HEADER_LEN);
const _: () = assert!(ENCAP_OVERHEAD == 50);
