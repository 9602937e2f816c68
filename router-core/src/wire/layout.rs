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

use super::{geneve, vxlan};

/// Ethernet header length (no VLAN tag).
pub const ETHERNET_HEADER_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
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

// Both encapsulations share one overhead only while their base headers are
// the same length.
const _: () = assert!(vxlan::HEADER_LEN == geneve::HEADER_LEN);
const _: () = assert!(ENCAP_OVERHEAD == 50);
