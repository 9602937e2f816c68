//! Path attributes (RFC 4271 §4.3 and §5): the well-known ones, AGGREGATOR,
//! COMMUNITIES (RFC 1997), LARGE_COMMUNITIES (RFC 8092), MP_REACH_NLRI and
//! MP_UNREACH_NLRI for IPv4/IPv6 unicast (RFC 4760 §3-4, RFC 2545 and
//! RFC 8950 next hops), AS4_PATH and AS4_AGGREGATOR (RFC 6793). Any other
//! optional attribute is kept raw with its flags, so a transitive one can be
//! passed on with the Partial bit set.
//!
//! Decoding follows RFC 7606: each malformed attribute is answered with
//! attribute-discard, treat-as-withdraw or session reset as §7 of that RFC
//! (and RFC 6793 §6, RFC 8092 §6 for the later attributes) prescribes.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |O|T|P|E|  0    |  Type Code    | Length (1 octet, 2 if E)      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Value (Length octets)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!  O: Optional, T: Transitive, P: Partial, E: Extended Length
//! ```

use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::DecodeContext;
use super::error::{AttributeError, EmitError, Error, ErrorAction};
use super::family::Family;
use super::nlri;
use super::notification::UpdateError;
use super::open::AS_TRANS;
use super::reader::Reader;

/// Attribute type codes this codec decodes.
pub mod type_code {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MED: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITIES: u8 = 32;
}
use type_code::*;

/// ORIGIN (type 1, well-known mandatory, one octet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// 0: learned from an interior protocol.
    Igp,
    /// 1: learned from EGP.
    Egp,
    /// 2: learned some other way.
    Incomplete,
}

/// The kind of an AS_PATH segment (RFC 4271 §4.3, RFC 5065 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SegmentType {
    /// 1: AS_SET, unordered.
    Set,
    /// 2: AS_SEQUENCE, ordered, nearest AS first.
    Sequence,
    /// 3: AS_CONFED_SEQUENCE.
    ConfedSequence,
    /// 4: AS_CONFED_SET.
    ConfedSet,
}

impl SegmentType {
    fn from_u8(value: u8) -> Option<SegmentType> {
        Some(match value {
            1 => SegmentType::Set,
            2 => SegmentType::Sequence,
            3 => SegmentType::ConfedSequence,
            4 => SegmentType::ConfedSet,
            _ => return None,
        })
    }

    fn to_u8(self) -> u8 {
        match self {
            SegmentType::Set => 1,
            SegmentType::Sequence => 2,
            SegmentType::ConfedSequence => 3,
            SegmentType::ConfedSet => 4,
        }
    }
}

/// One AS_PATH segment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsSegment {
    /// Set or sequence.
    pub kind: SegmentType,
    /// The AS numbers, 1 to 255 of them on the wire.
    pub asns: Vec<u32>,
}

/// AS_PATH (type 2) or AS4_PATH (type 17): segments of AS numbers, two or
/// four octets each.
///
/// ```text
/// +----------------+----------------+----------------------------+
/// | segment type   | segment length | AS numbers (length × 2|4)  |
/// +----------------+----------------+----------------------------+
///  ... repeated
/// ```
///
/// A segment with no AS numbers, an unknown segment type or a segment
/// running past the attribute makes the whole path malformed (RFC 7606 §7.2).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsPath {
    /// Segments, nearest first.
    pub segments: Vec<AsSegment>,
}

impl core::fmt::Display for AsPath {
    /// The path as FRR and Cilium print it: sequences as `65001 65000`, sets
    /// (and confederation segments) as `{65002,65003}`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            let sequence = s.kind == SegmentType::Sequence;
            let (open, sep, close) = if sequence {
                ("", " ", "")
            } else {
                ("{", ",", "}")
            };
            f.write_str(open)?;
            for (j, asn) in s.asns.iter().enumerate() {
                if j > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{asn}")?;
            }
            f.write_str(close)?;
        }
        Ok(())
    }
}

impl AsPath {
    /// A path of one AS_SEQUENCE (empty if `asns` is).
    pub fn sequence(asns: Vec<u32>) -> AsPath {
        let segments = if asns.is_empty() {
            Vec::new()
        } else {
            alloc::vec![AsSegment {
                kind: SegmentType::Sequence,
                asns,
            }]
        };
        AsPath { segments }
    }

    /// The path length as RFC 4271 §9.1.2.2 and RFC 5065 §5.3 count it: each
    /// AS in a sequence counts one, a set counts one, confederation
    /// segments count nothing.
    pub fn hop_count(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                SegmentType::ConfedSequence | SegmentType::ConfedSet => 0,
            })
            .sum()
    }

    fn parse(value: &[u8], four_octet: bool) -> Option<AsPath> {
        let mut r = Reader::new(value);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = SegmentType::from_u8(r.u8()?)?;
            let count = r.u8()?;
            if count == 0 {
                return None;
            }
            let mut asns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                asns.push(if four_octet {
                    r.u32()?
                } else {
                    u32::from(r.u16()?)
                });
            }
            segments.push(AsSegment { kind, asns });
        }
        Some(AsPath { segments })
    }

    /// Append the value; in two octets, AS numbers that do not fit become
    /// AS_TRANS (RFC 6793 §4.2.2).
    fn emit(&self, four_octet: bool, buf: &mut Vec<u8>) -> Result<(), EmitError> {
        for s in &self.segments {
            buf.push(s.kind.to_u8());
            buf.push(u8::try_from(s.asns.len()).map_err(|_| EmitError::FieldTooLong)?);
            for &asn in &s.asns {
                if four_octet {
                    buf.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let asn = u16::try_from(asn).unwrap_or(AS_TRANS);
                    buf.extend_from_slice(&asn.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    fn needs_four_octets(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// The path without confederation segments, as AS4_PATH carries it
    /// (RFC 6793 §4.2.2).
    fn without_confederation(&self) -> AsPath {
        AsPath {
            segments: self
                .segments
                .iter()
                .filter(|s| matches!(s.kind, SegmentType::Sequence | SegmentType::Set))
                .cloned()
                .collect(),
        }
    }

    /// The leading segments of this path worth `hops` in [`Self::hop_count`]
    /// terms, splitting a sequence if needed.
    fn leading(&self, mut hops: usize) -> Vec<AsSegment> {
        let mut out = Vec::new();
        for s in &self.segments {
            if hops == 0 {
                break;
            }
            match s.kind {
                SegmentType::Sequence => {
                    let n = hops.min(s.asns.len());
                    out.push(AsSegment {
                        kind: s.kind,
                        asns: s.asns[..n].to_vec(),
                    });
                    hops -= n;
                }
                SegmentType::Set => {
                    out.push(s.clone());
                    hops -= 1;
                }
                SegmentType::ConfedSequence | SegmentType::ConfedSet => out.push(s.clone()),
            }
        }
        out
    }
}

/// AGGREGATOR (type 7) or AS4_AGGREGATOR (type 18): the AS and router that
/// aggregated the route.
///
/// ```text
/// +-------------------------------+-------------------------------+
/// | AS (2 octets, 4 with RFC 6793 or in AS4_AGGREGATOR)           |
/// +-------------------------------+-------------------------------+
/// | IPv4 address of the aggregating speaker (4 octets)            |
/// +-------------------------------+-------------------------------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Aggregator {
    /// The aggregating AS.
    pub asn: u32,
    /// The aggregating speaker's BGP Identifier or address.
    pub address: Ipv4Addr,
}

impl Aggregator {
    fn parse(value: &[u8], four_octet: bool) -> Option<Aggregator> {
        let mut r = Reader::new(value);
        let asn = if four_octet {
            r.u32()?
        } else {
            u32::from(r.u16()?)
        };
        let address = r.ipv4()?;
        r.is_empty().then_some(Aggregator { asn, address })
    }

    fn emit(&self, four_octet: bool, buf: &mut Vec<u8>) {
        if four_octet {
            buf.extend_from_slice(&self.asn.to_be_bytes());
        } else {
            let asn = u16::try_from(self.asn).unwrap_or(AS_TRANS);
            buf.extend_from_slice(&asn.to_be_bytes());
        }
        buf.extend_from_slice(&self.address.octets());
    }
}

/// A community (RFC 1997): conventionally `AS:value` in two 16-bit halves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    /// NO_EXPORT: do not advertise outside the AS (or confederation).
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    /// NO_ADVERTISE: do not advertise to any peer.
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);
    /// NO_EXPORT_SUBCONFED: do not advertise to external peers.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xffff_ff03);

    /// The community `asn:value`.
    pub fn new(asn: u16, value: u16) -> Community {
        Community((u32::from(asn) << 16) | u32::from(value))
    }
}

/// A large community (RFC 8092): `global:local1:local2`.
///
/// ```text
/// +-------------------------------+-------------------------------+
/// |                 Global Administrator (4 octets)               |
/// +-------------------------------+-------------------------------+
/// |                 Local Data Part 1 (4 octets)                  |
/// +-------------------------------+-------------------------------+
/// |                 Local Data Part 2 (4 octets)                  |
/// +-------------------------------+-------------------------------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    /// Global Administrator, usually the AS that defines the community.
    pub global_admin: u32,
    /// Local Data Part 1.
    pub local_data_1: u32,
    /// Local Data Part 2.
    pub local_data_2: u32,
}

/// The next hop in MP_REACH_NLRI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NextHop {
    /// An IPv4 next hop (4 octets).
    Ipv4(Ipv4Addr),
    /// An IPv6 next hop (16 octets, or 32 with a link-local address,
    /// RFC 2545 §3), for IPv6 routes or, with RFC 8950, IPv4 routes.
    Ipv6 {
        /// The global address.
        global: Ipv6Addr,
        /// The link-local address, when the peer is on the same link.
        link_local: Option<Ipv6Addr>,
    },
}

/// The prefixes of one unicast family.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Prefixes {
    /// IPv4 unicast prefixes.
    Ipv4(Vec<Ipv4Net>),
    /// IPv6 unicast prefixes.
    Ipv6(Vec<Ipv6Net>),
}

impl Prefixes {
    /// No prefixes of `family`, if it is one this codec carries.
    pub fn empty(family: Family) -> Option<Prefixes> {
        match family {
            Family::IPV4_UNICAST => Some(Prefixes::Ipv4(Vec::new())),
            Family::IPV6_UNICAST => Some(Prefixes::Ipv6(Vec::new())),
            _ => None,
        }
    }

    /// The family of these prefixes.
    pub fn family(&self) -> Family {
        match self {
            Prefixes::Ipv4(_) => Family::IPV4_UNICAST,
            Prefixes::Ipv6(_) => Family::IPV6_UNICAST,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        match self {
            Prefixes::Ipv4(p) => p.is_empty(),
            Prefixes::Ipv6(p) => p.is_empty(),
        }
    }

    /// The prefixes as [`IpNet`]s.
    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        let (v4, v6) = match self {
            Prefixes::Ipv4(p) => (&p[..], &[][..]),
            Prefixes::Ipv6(p) => (&[][..], &p[..]),
        };
        v4.iter()
            .map(|&p| IpNet::V4(p))
            .chain(v6.iter().map(|&p| IpNet::V6(p)))
    }

    fn parse(family: Family, field: &[u8]) -> Option<Prefixes> {
        match family {
            Family::IPV4_UNICAST => nlri::parse_ipv4(field).map(Prefixes::Ipv4),
            Family::IPV6_UNICAST => nlri::parse_ipv6(field).map(Prefixes::Ipv6),
            _ => None,
        }
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        match self {
            Prefixes::Ipv4(p) => nlri::emit_ipv4(p, buf),
            Prefixes::Ipv6(p) => nlri::emit_ipv6(p, buf),
        }
    }
}

fn emit_family(family: Family, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&u16::from(family.afi).to_be_bytes());
    buf.push(family.safi.into());
}

/// MP_REACH_NLRI (type 14, RFC 4760 §3): reachable prefixes of one family
/// and their next hop.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Length of Next Hop Network Address (1 octet)            |
/// +---------------------------------------------------------+
/// | Network Address of Next Hop (variable)                  |
/// +---------------------------------------------------------+
/// | Reserved (1 octet)                                      |
/// +---------------------------------------------------------+
/// | Network Layer Reachability Information (variable)       |
/// +---------------------------------------------------------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MpReach {
    /// The next hop for every prefix.
    pub next_hop: NextHop,
    /// The prefixes, which also give the AFI/SAFI.
    pub nlri: Prefixes,
}

/// MP_UNREACH_NLRI (type 15, RFC 4760 §4): withdrawn prefixes of one family.
/// With no prefixes it is the End-of-RIB marker of that family.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Withdrawn Routes (variable)                             |
/// +---------------------------------------------------------+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MpUnreach {
    /// The withdrawn prefixes, which also give the AFI/SAFI.
    pub withdrawn: Prefixes,
}

bitflags::bitflags! {
    /// An attribute's flags octet. Attributes this codec does not decode keep
    /// O, T and P ([`AttributeFlags::KEPT`]); Extended Length is a matter of
    /// encoding, and the low four bits are unused (sent as zero).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct AttributeFlags: u8 {
        /// O: optional (else well-known).
        const OPTIONAL = 0x80;
        /// T: transitive.
        const TRANSITIVE = 0x40;
        /// P: some speaker on the way did not recognise it.
        const PARTIAL = 0x20;
        /// E: the length field is two octets.
        const EXTENDED_LENGTH = 0x10;
    }
}

impl AttributeFlags {
    /// The flags an attribute keeps: O, T and P.
    pub const KEPT: AttributeFlags = AttributeFlags::OPTIONAL
        .union(AttributeFlags::TRANSITIVE)
        .union(AttributeFlags::PARTIAL);
    /// The flags of a well-known attribute: T.
    const WELL_KNOWN: AttributeFlags = AttributeFlags::TRANSITIVE;
    /// O and T: what the attribute kind is (the rest is state or encoding).
    const KIND: AttributeFlags = AttributeFlags::OPTIONAL.union(AttributeFlags::TRANSITIVE);
}

/// An optional attribute this codec does not decode, kept as received.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawAttribute {
    /// Flags as received.
    pub flags: AttributeFlags,
    /// Type code: never one this codec decodes.
    pub type_code: u8,
    /// The value.
    pub value: Vec<u8>,
}

impl RawAttribute {
    /// The attribute to pass on to other peers (RFC 4271 §5): an optional
    /// transitive one with the Partial bit set, nothing for a non-transitive one.
    pub fn for_propagation(&self) -> Option<RawAttribute> {
        self.flags
            .contains(AttributeFlags::KIND)
            .then(|| RawAttribute {
                flags: self.flags | AttributeFlags::PARTIAL,
                ..self.clone()
            })
    }
}

/// The path attributes of an UPDATE, one field per attribute this codec
/// decodes. Absent attributes are `None`, `false` or empty (COMMUNITIES and
/// LARGE_COMMUNITIES cannot be empty on the wire).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Option<Origin>,
    /// AS_PATH (empty for a route originated in the sender's own AS).
    pub as_path: Option<AsPath>,
    /// NEXT_HOP, for the prefixes in the UPDATE's NLRI field.
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE (no value).
    pub atomic_aggregate: bool,
    /// AGGREGATOR.
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES, in the order received.
    pub communities: Vec<Community>,
    /// MP_REACH_NLRI.
    pub mp_reach: Option<MpReach>,
    /// MP_UNREACH_NLRI.
    pub mp_unreach: Option<MpUnreach>,
    /// AS4_PATH, only between a 4-octet and a 2-octet speaker.
    pub as4_path: Option<AsPath>,
    /// AS4_AGGREGATOR, only between a 4-octet and a 2-octet speaker.
    pub as4_aggregator: Option<Aggregator>,
    /// LARGE_COMMUNITY values, in the order received.
    pub large_communities: Vec<LargeCommunity>,
    /// Optional attributes this codec does not decode, by type code.
    pub unknown: Vec<RawAttribute>,
}

/// How an attribute's malformation is handled (RFC 7606 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handling {
    Reset,
    Recover(ErrorAction),
}

/// The flags an attribute must have (O and T), and the handling of its errors.
struct Spec {
    kind: AttributeFlags,
    malformed: Handling,
}

fn spec(type_code: u8) -> Option<Spec> {
    use ErrorAction::*;
    use Handling::*;
    const WELL_KNOWN: AttributeFlags = AttributeFlags::WELL_KNOWN;
    const OPTIONAL: AttributeFlags = AttributeFlags::OPTIONAL;
    const OPTIONAL_TRANSITIVE: AttributeFlags = AttributeFlags::KIND;
    let (kind, malformed) = match type_code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF => (WELL_KNOWN, Recover(TreatAsWithdraw)),
        ATOMIC_AGGREGATE => (WELL_KNOWN, Recover(AttributeDiscard)),
        MED => (OPTIONAL, Recover(TreatAsWithdraw)),
        AGGREGATOR => (OPTIONAL_TRANSITIVE, Recover(AttributeDiscard)),
        COMMUNITIES | LARGE_COMMUNITIES => (OPTIONAL_TRANSITIVE, Recover(TreatAsWithdraw)),
        MP_REACH_NLRI | MP_UNREACH_NLRI => (OPTIONAL, Reset),
        AS4_PATH | AS4_AGGREGATOR => (OPTIONAL_TRANSITIVE, Recover(AttributeDiscard)),
        _ => return None,
    };
    Some(Spec { kind, malformed })
}

/// A malformed value: the subcode that names the problem.
type Malformed = UpdateError;

fn exact<const N: usize>(value: &[u8]) -> Result<[u8; N], Malformed> {
    value
        .try_into()
        .map_err(|_| UpdateError::AttributeLengthError)
}

fn parse_mp_family(r: &mut Reader<'_>) -> Option<Family> {
    Some(Family::new(r.u16()?, r.u8()?))
}

/// Whether MP attributes of `family` are decoded on this session.
fn accepts(ctx: &DecodeContext, family: Family) -> bool {
    Prefixes::empty(family).is_some() && ctx.families.contains(&family)
}

impl MpReach {
    /// `Ok(None)`: a family this session does not decode.
    fn parse(value: &[u8], ctx: &DecodeContext) -> Result<Option<MpReach>, Malformed> {
        let bad = UpdateError::OptionalAttributeError;
        let mut r = Reader::new(value);
        let family = parse_mp_family(&mut r).ok_or(bad)?;
        let nh_len = r.u8().ok_or(bad)?;
        let nh = r.take(usize::from(nh_len)).ok_or(bad)?;
        r.u8().ok_or(bad)?;
        if !accepts(ctx, family) {
            return Ok(None);
        }
        let mut nh = Reader::new(nh);
        let v6 = |nh: &mut Reader<'_>| -> Option<NextHop> {
            let global = nh.ipv6()?;
            let link_local = if nh.is_empty() {
                None
            } else {
                Some(nh.ipv6()?)
            };
            nh.is_empty()
                .then_some(NextHop::Ipv6 { global, link_local })
        };
        let next_hop = match (family, nh_len) {
            (Family::IPV4_UNICAST, 4) => nh.ipv4().map(NextHop::Ipv4),
            (Family::IPV4_UNICAST, 16 | 32) if ctx.extended_next_hop.contains(&family) => {
                v6(&mut nh)
            }
            (Family::IPV6_UNICAST, 16 | 32) => v6(&mut nh),
            _ => None,
        }
        .ok_or(bad)?;
        let nlri = Prefixes::parse(family, r.rest()).ok_or(bad)?;
        Ok(Some(MpReach { next_hop, nlri }))
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        emit_family(self.nlri.family(), buf);
        match self.next_hop {
            NextHop::Ipv4(a) => {
                buf.push(4);
                buf.extend_from_slice(&a.octets());
            }
            NextHop::Ipv6 { global, link_local } => {
                buf.push(if link_local.is_some() { 32 } else { 16 });
                buf.extend_from_slice(&global.octets());
                if let Some(ll) = link_local {
                    buf.extend_from_slice(&ll.octets());
                }
            }
        }
        buf.push(0);
        self.nlri.emit(buf);
    }
}

impl MpUnreach {
    /// `Ok(None)`: a family this session does not decode.
    fn parse(value: &[u8], ctx: &DecodeContext) -> Result<Option<MpUnreach>, Malformed> {
        let bad = UpdateError::OptionalAttributeError;
        let mut r = Reader::new(value);
        let family = parse_mp_family(&mut r).ok_or(bad)?;
        if !accepts(ctx, family) {
            return Ok(None);
        }
        let withdrawn = Prefixes::parse(family, r.rest()).ok_or(bad)?;
        Ok(Some(MpUnreach { withdrawn }))
    }

    fn emit(&self, buf: &mut Vec<u8>) {
        emit_family(self.withdrawn.family(), buf);
        self.withdrawn.emit(buf);
    }
}

/// The bytes `f` writes.
fn value(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v);
    v
}

/// The bytes `f` writes, unless it fails.
fn try_value(f: impl FnOnce(&mut Vec<u8>) -> Result<(), EmitError>) -> Result<Vec<u8>, EmitError> {
    let mut v = Vec::new();
    f(&mut v)?;
    Ok(v)
}

/// Split `value` into `N`-octet chunks; it must be a non-empty multiple of `N`.
fn chunks<const N: usize>(value: &[u8]) -> Result<impl Iterator<Item = [u8; N]> + '_, Malformed> {
    if value.is_empty() || !value.len().is_multiple_of(N) {
        return Err(UpdateError::OptionalAttributeError);
    }
    Ok(value
        .chunks_exact(N)
        .filter_map(|c| <[u8; N]>::try_from(c).ok()))
}

/// Whether an overrun of the attributes field leaves every NLRI of this
/// UPDATE known (RFC 7606 §4, §5.1): an MP attribute, which senders put
/// first, was already read, or the session can carry no MP attribute.
fn nlri_located(attrs: &PathAttributes, ctx: &DecodeContext) -> bool {
    attrs.mp_reach.is_some()
        || attrs.mp_unreach.is_some()
        || (ctx.families.iter().all(|f| *f == Family::IPV4_UNICAST)
            && ctx.extended_next_hop.is_empty())
}

impl PathAttributes {
    /// Decode the Path Attributes field of an UPDATE.
    ///
    /// Returns `Err` when the session must be reset: an unrecognised
    /// well-known attribute (3/2), a repeated or malformed MP_REACH_NLRI /
    /// MP_UNREACH_NLRI (3/1, 3/9), or attribute lengths that overrun the
    /// field when some NLRI may be hidden in what could not be read (3/1).
    /// Every other problem is appended to `errors` with its RFC 7606 action
    /// and the attribute is left out; repeated attributes other than the MP
    /// ones are discarded after the first (RFC 7606 §3 g).
    pub fn parse(
        field: &[u8],
        ctx: &DecodeContext,
        errors: &mut Vec<AttributeError>,
    ) -> Result<PathAttributes, Error> {
        let mut attrs = PathAttributes::default();
        let mut seen = [false; 256];
        let mut r = Reader::new(field);
        while !r.is_empty() {
            let start = r.as_slice();
            let header = (r.u8(), r.u8());
            let len = match header.0 {
                Some(f)
                    if AttributeFlags::from_bits_retain(f)
                        .contains(AttributeFlags::EXTENDED_LENGTH) =>
                {
                    r.u16()
                }
                _ => r.u8().map(u16::from),
            };
            let (Some(flags), Some(code), Some(value)) =
                (header.0, header.1, len.and_then(|l| r.take(usize::from(l))))
            else {
                if !nlri_located(&attrs, ctx) {
                    return Err(Error::update(
                        UpdateError::MalformedAttributeList,
                        Vec::new(),
                    ));
                }
                errors.push(AttributeError {
                    type_code: header.1.unwrap_or(0),
                    action: ErrorAction::TreatAsWithdraw,
                    reason: UpdateError::MalformedAttributeList,
                });
                break;
            };
            let tlv = &start[..start.len() - r.remaining()];
            if core::mem::replace(&mut seen[usize::from(code)], true) {
                if matches!(code, MP_REACH_NLRI | MP_UNREACH_NLRI) {
                    return Err(Error::update(
                        UpdateError::MalformedAttributeList,
                        Vec::new(),
                    ));
                }
                errors.push(AttributeError {
                    type_code: code,
                    action: ErrorAction::AttributeDiscard,
                    reason: UpdateError::MalformedAttributeList,
                });
                continue;
            }
            let flags = AttributeFlags::from_bits_retain(flags);
            attrs.decode_one(flags, code, value, tlv, ctx, errors)?;
        }
        attrs.unknown.sort_by_key(|a| a.type_code);
        Ok(attrs)
    }

    /// Decode one attribute into `self`.
    fn decode_one(
        &mut self,
        flags: AttributeFlags,
        code: u8,
        value: &[u8],
        tlv: &[u8],
        ctx: &DecodeContext,
        errors: &mut Vec<AttributeError>,
    ) -> Result<(), Error> {
        let Some(spec) = spec(code) else {
            let flags = flags & AttributeFlags::KEPT;
            if !flags.contains(AttributeFlags::OPTIONAL) {
                return Err(Error::update(
                    UpdateError::UnrecognizedWellKnownAttribute,
                    tlv.to_vec(),
                ));
            }
            self.unknown.push(RawAttribute {
                flags,
                type_code: code,
                value: value.to_vec(),
            });
            return Ok(());
        };
        let fail = |handling: Handling, reason: UpdateError, errors: &mut Vec<AttributeError>| {
            match handling {
                Handling::Reset => Err(Error::update(reason, tlv.to_vec())),
                Handling::Recover(action) => {
                    errors.push(AttributeError {
                        type_code: code,
                        action,
                        reason,
                    });
                    Ok(())
                }
            }
        };
        if flags & AttributeFlags::KIND != spec.kind {
            // RFC 7606 §3 c: treat-as-withdraw unless the attribute's own
            // rules are stricter (MP attributes) or softer (AS4_*, RFC 6793 §6).
            let handling = match spec.malformed {
                Handling::Recover(ErrorAction::AttributeDiscard)
                    if matches!(code, AS4_PATH | AS4_AGGREGATOR) =>
                {
                    spec.malformed
                }
                Handling::Reset => Handling::Reset,
                Handling::Recover(_) => Handling::Recover(ErrorAction::TreatAsWithdraw),
            };
            return fail(handling, UpdateError::AttributeFlagsError, errors);
        }
        if ctx.four_octet_as && matches!(code, AS4_PATH | AS4_AGGREGATOR) {
            // RFC 6793 §6: a NEW speaker discards these from a NEW speaker.
            return fail(
                Handling::Recover(ErrorAction::AttributeDiscard),
                UpdateError::Unspecific,
                errors,
            );
        }
        match self.decode_value(code, value, ctx) {
            Ok(true) => Ok(()),
            // An MP attribute of a family this session does not carry.
            Ok(false) => fail(
                Handling::Recover(ErrorAction::AttributeDiscard),
                UpdateError::Unspecific,
                errors,
            ),
            Err(reason) => fail(spec.malformed, reason, errors),
        }
    }

    /// Decode a value into its field; `Ok(false)` if ignored.
    fn decode_value(
        &mut self,
        code: u8,
        value: &[u8],
        ctx: &DecodeContext,
    ) -> Result<bool, Malformed> {
        match code {
            ORIGIN => {
                self.origin = Some(match exact::<1>(value)? {
                    [0] => Origin::Igp,
                    [1] => Origin::Egp,
                    [2] => Origin::Incomplete,
                    _ => return Err(UpdateError::InvalidOriginAttribute),
                });
            }
            AS_PATH => {
                self.as_path = Some(
                    AsPath::parse(value, ctx.four_octet_as).ok_or(UpdateError::MalformedAsPath)?,
                );
            }
            NEXT_HOP => self.next_hop = Some(Ipv4Addr::from(exact::<4>(value)?)),
            MED => self.med = Some(u32::from_be_bytes(exact(value)?)),
            LOCAL_PREF => self.local_pref = Some(u32::from_be_bytes(exact(value)?)),
            ATOMIC_AGGREGATE => {
                exact::<0>(value)?;
                self.atomic_aggregate = true;
            }
            AGGREGATOR => {
                self.aggregator = Some(
                    Aggregator::parse(value, ctx.four_octet_as)
                        .ok_or(UpdateError::AttributeLengthError)?,
                );
            }
            COMMUNITIES => {
                self.communities = chunks::<4>(value)?
                    .map(|c| Community(u32::from_be_bytes(c)))
                    .collect();
            }
            LARGE_COMMUNITIES => {
                self.large_communities = chunks::<12>(value)?
                    .map(|c| {
                        let word =
                            |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                        LargeCommunity {
                            global_admin: word(0),
                            local_data_1: word(4),
                            local_data_2: word(8),
                        }
                    })
                    .collect();
            }
            MP_REACH_NLRI => {
                self.mp_reach = MpReach::parse(value, ctx)?;
                return Ok(self.mp_reach.is_some());
            }
            MP_UNREACH_NLRI => {
                self.mp_unreach = MpUnreach::parse(value, ctx)?;
                return Ok(self.mp_unreach.is_some());
            }
            AS4_PATH => {
                self.as4_path =
                    Some(AsPath::parse(value, true).ok_or(UpdateError::OptionalAttributeError)?);
            }
            AS4_AGGREGATOR => {
                self.as4_aggregator =
                    Some(Aggregator::parse(value, true).ok_or(UpdateError::AttributeLengthError)?);
            }
            _ => {}
        }
        Ok(true)
    }

    /// Append the Path Attributes field to `buf`, encoded for a session
    /// negotiated as `ctx`: MP_REACH_NLRI and MP_UNREACH_NLRI first (RFC 7606
    /// §5.1), then the others by type code, the Extended Length bit set only
    /// for values over 255 octets.
    ///
    /// With 2-octet AS numbers (RFC 6793 §4.2.2), AS numbers that do not fit
    /// become AS_TRANS, and AS4_PATH / AS4_AGGREGATOR carry the real ones
    /// (the fields of `self` if set, else derived from AS_PATH / AGGREGATOR).
    /// With 4-octet AS numbers, AS4_PATH and AS4_AGGREGATOR are never sent.
    pub fn emit(&self, ctx: &DecodeContext, buf: &mut Vec<u8>) -> Result<(), EmitError> {
        const WELL_KNOWN: AttributeFlags = AttributeFlags::WELL_KNOWN;
        const OPTIONAL: AttributeFlags = AttributeFlags::OPTIONAL;
        const OPTIONAL_TRANSITIVE: AttributeFlags = AttributeFlags::KIND;
        let four = ctx.four_octet_as;
        let mut out: Vec<(AttributeFlags, u8, Vec<u8>)> = Vec::new();
        if let Some(mp) = &self.mp_reach {
            out.push((OPTIONAL, MP_REACH_NLRI, value(|b| mp.emit(b))));
        }
        if let Some(mp) = &self.mp_unreach {
            out.push((OPTIONAL, MP_UNREACH_NLRI, value(|b| mp.emit(b))));
        }
        if let Some(origin) = self.origin {
            let v = match origin {
                Origin::Igp => 0,
                Origin::Egp => 1,
                Origin::Incomplete => 2,
            };
            out.push((WELL_KNOWN, ORIGIN, alloc::vec![v]));
        }
        if let Some(path) = &self.as_path {
            out.push((WELL_KNOWN, AS_PATH, try_value(|b| path.emit(four, b))?));
        }
        if let Some(nh) = self.next_hop {
            out.push((WELL_KNOWN, NEXT_HOP, nh.octets().to_vec()));
        }
        if let Some(med) = self.med {
            out.push((OPTIONAL, MED, med.to_be_bytes().to_vec()));
        }
        if let Some(lp) = self.local_pref {
            out.push((WELL_KNOWN, LOCAL_PREF, lp.to_be_bytes().to_vec()));
        }
        if self.atomic_aggregate {
            out.push((WELL_KNOWN, ATOMIC_AGGREGATE, Vec::new()));
        }
        if let Some(agg) = self.aggregator {
            out.push((
                OPTIONAL_TRANSITIVE,
                AGGREGATOR,
                value(|b| agg.emit(four, b)),
            ));
        }
        if !self.communities.is_empty() {
            let v = self.communities.iter().flat_map(|c| c.0.to_be_bytes());
            out.push((OPTIONAL_TRANSITIVE, COMMUNITIES, v.collect()));
        }
        if !four {
            let as4_path = self.as4_path.clone().or_else(|| {
                let path = self.as_path.as_ref()?;
                path.needs_four_octets()
                    .then(|| path.without_confederation())
            });
            if let Some(path) = as4_path {
                out.push((
                    OPTIONAL_TRANSITIVE,
                    AS4_PATH,
                    try_value(|b| path.emit(true, b))?,
                ));
            }
            let as4_aggregator = self
                .as4_aggregator
                .or(self.aggregator.filter(|a| a.asn > u32::from(u16::MAX)));
            if let Some(agg) = as4_aggregator {
                out.push((
                    OPTIONAL_TRANSITIVE,
                    AS4_AGGREGATOR,
                    value(|b| agg.emit(true, b)),
                ));
            }
        }
        if !self.large_communities.is_empty() {
            let v = self.large_communities.iter().flat_map(|c| {
                [c.global_admin, c.local_data_1, c.local_data_2]
                    .into_iter()
                    .flat_map(u32::to_be_bytes)
            });
            out.push((OPTIONAL_TRANSITIVE, LARGE_COMMUNITIES, v.collect()));
        }
        for raw in &self.unknown {
            out.push((
                raw.flags & AttributeFlags::KEPT,
                raw.type_code,
                raw.value.clone(),
            ));
        }
        out.sort_by_key(|&(_, code, _)| match code {
            MP_REACH_NLRI => 0,
            MP_UNREACH_NLRI => 1,
            code => 2 + u16::from(code),
        });
        for (flags, code, value) in out {
            if let Ok(len) = u8::try_from(value.len()) {
                buf.extend_from_slice(&[flags.bits(), code, len]);
            } else {
                let len = u16::try_from(value.len()).map_err(|_| EmitError::FieldTooLong)?;
                buf.extend_from_slice(&[(flags | AttributeFlags::EXTENDED_LENGTH).bits(), code]);
                buf.extend_from_slice(&len.to_be_bytes());
            }
            buf.extend_from_slice(&value);
        }
        Ok(())
    }

    /// Fold AS4_PATH and AS4_AGGREGATOR, as received from a 2-octet speaker,
    /// into AS_PATH and AGGREGATOR (RFC 6793 §4.2.3), and clear them.
    ///
    /// If AGGREGATOR names an AS other than AS_TRANS, both AS4 attributes
    /// are ignored; AS4_PATH is also ignored if it is longer than AS_PATH.
    /// Otherwise the leading AS numbers of AS_PATH that AS4_PATH does not
    /// cover are kept in front of AS4_PATH.
    pub fn merge_as4(&mut self) {
        let as4_path = self.as4_path.take();
        let as4_aggregator = self.as4_aggregator.take();
        if let Some(agg) = self.aggregator {
            if agg.asn != u32::from(AS_TRANS) {
                return;
            }
            if as4_aggregator.is_some() {
                self.aggregator = as4_aggregator;
            }
        }
        let (Some(as4), Some(path)) = (as4_path, &self.as_path) else {
            return;
        };
        let (hops, hops4) = (path.hop_count(), as4.hop_count());
        if hops < hops4 {
            return;
        }
        let mut segments = path.leading(hops - hops4);
        segments.extend(as4.segments);
        self.as_path = Some(AsPath { segments });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_paths_print_like_frr() {
        let path = AsPath {
            segments: alloc::vec![
                AsSegment {
                    kind: SegmentType::Sequence,
                    asns: alloc::vec![65001, 65000]
                },
                AsSegment {
                    kind: SegmentType::Set,
                    asns: alloc::vec![65002, 65003]
                },
            ],
        };
        assert_eq!(alloc::format!("{path}"), "65001 65000 {65002,65003}");
        assert_eq!(alloc::format!("{}", AsPath::default()), "");
    }
    use alloc::vec;

    fn ctx4() -> DecodeContext {
        DecodeContext::new(true, [Family::IPV4_UNICAST, Family::IPV6_UNICAST])
    }

    fn ctx2() -> DecodeContext {
        DecodeContext::new(false, [Family::IPV4_UNICAST])
    }

    fn parse(field: &[u8], ctx: &DecodeContext) -> (PathAttributes, Vec<AttributeError>) {
        let mut errors = Vec::new();
        let attrs = PathAttributes::parse(field, ctx, &mut errors).unwrap();
        (attrs, errors)
    }

    fn reset(field: &[u8], ctx: &DecodeContext) -> Error {
        PathAttributes::parse(field, ctx, &mut Vec::new()).unwrap_err()
    }

    fn one_error(
        field: &[u8],
        ctx: &DecodeContext,
        type_code: u8,
        action: ErrorAction,
        reason: UpdateError,
    ) {
        let (attrs, errors) = parse(field, ctx);
        assert_eq!(
            errors,
            vec![AttributeError {
                type_code,
                action,
                reason
            }],
            "{field:02x?}"
        );
        assert_eq!(attrs, PathAttributes::default(), "{field:02x?}");
    }

    fn emit(attrs: &PathAttributes, ctx: &DecodeContext) -> Vec<u8> {
        let mut buf = Vec::new();
        attrs.emit(ctx, &mut buf).unwrap();
        buf
    }

    /// Every decoded attribute, 4-octet AS, written from the layouts of
    /// RFC 4271 §4.3, RFC 1997, RFC 8092 and RFC 4760 §3.
    const GOLDEN_4: &[u8] = &[
        0x80, 14, 44, 0, 2, 1, 32, // MP_REACH IPv6 unicast, next hop 32 octets
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // 2001:db8::1
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // fe80::1
        0, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 1, // reserved, 2001:db8:1::/48
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 16, 2, 2, 0, 0, 0xfd, 0xe9, 0xfa, 0x56, 0xea, 1, 1, 1, 0, 0, 0xfd,
        0xea, // AS_PATH
        0x40, 3, 4, 192, 0, 2, 1, // NEXT_HOP
        0x80, 4, 4, 0, 0, 0, 10, // MED 10
        0x40, 5, 4, 0, 0, 0, 100, // LOCAL_PREF 100
        0x40, 6, 0, // ATOMIC_AGGREGATE
        0xc0, 7, 8, 0, 0, 0xfd, 0xe9, 10, 0, 0, 1, // AGGREGATOR 65001 10.0.0.1
        0xc0, 8, 8, 0xfd, 0xe8, 0, 100, 0xff, 0xff, 0xff, 0x01, // 65000:100, NO_EXPORT
        0xc0, 32, 12, 0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2, // 65000:1:2
        0xe0, 99, 2, 0xab, 0xcd, // unknown optional transitive, partial
    ];

    fn golden_attrs() -> PathAttributes {
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath {
                segments: vec![
                    AsSegment {
                        kind: SegmentType::Sequence,
                        asns: vec![65001, 4_200_000_001],
                    },
                    AsSegment {
                        kind: SegmentType::Set,
                        asns: vec![65002],
                    },
                ],
            }),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            med: Some(10),
            local_pref: Some(100),
            atomic_aggregate: true,
            aggregator: Some(Aggregator {
                asn: 65001,
                address: Ipv4Addr::new(10, 0, 0, 1),
            }),
            communities: vec![Community::new(65000, 100), Community::NO_EXPORT],
            mp_reach: Some(MpReach {
                next_hop: NextHop::Ipv6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: Prefixes::Ipv6(vec!["2001:db8:1::/48".parse().unwrap()]),
            }),
            mp_unreach: None,
            as4_path: None,
            as4_aggregator: None,
            large_communities: vec![LargeCommunity {
                global_admin: 65000,
                local_data_1: 1,
                local_data_2: 2,
            }],
            unknown: vec![RawAttribute {
                flags: AttributeFlags::KEPT,
                type_code: 99,
                value: vec![0xab, 0xcd],
            }],
        }
    }

    #[test]
    fn golden_four_octet() {
        let (attrs, errors) = parse(GOLDEN_4, &ctx4());
        assert_eq!(errors, vec![]);
        assert_eq!(attrs, golden_attrs());
        assert_eq!(emit(&attrs, &ctx4()), GOLDEN_4);
        assert_eq!(attrs.as_path.as_ref().unwrap().hop_count(), 3);
    }

    #[test]
    fn two_octet_peer_gets_as_trans_and_as4_attributes() {
        let mut attrs = golden_attrs();
        attrs.mp_reach = None;
        attrs.aggregator = Some(Aggregator {
            asn: 4_200_000_002,
            address: Ipv4Addr::new(10, 0, 0, 2),
        });
        let bytes = emit(&attrs, &ctx2());
        let (mut decoded, errors) = parse(&bytes, &ctx2());
        assert_eq!(errors, vec![]);
        assert_eq!(
            decoded.as_path.as_ref().unwrap().segments[0].asns,
            vec![65001, u32::from(AS_TRANS)]
        );
        assert_eq!(decoded.aggregator.unwrap().asn, u32::from(AS_TRANS));
        assert_eq!(decoded.as4_path, attrs.as_path);
        assert_eq!(decoded.as4_aggregator, attrs.aggregator);
        decoded.merge_as4();
        assert_eq!(decoded, attrs);
        // A 4-octet session never carries the AS4 attributes.
        let mut with_as4 = attrs.clone();
        with_as4.as4_path = Some(AsPath::sequence(vec![1]));
        assert_eq!(emit(&with_as4, &ctx4()), emit(&attrs, &ctx4()));
    }

    #[test]
    fn merge_as4_keeps_leading_two_octet_hops() {
        // An old speaker (AS 65010) prepended itself in front of the AS4_PATH.
        let mut attrs = PathAttributes {
            as_path: Some(AsPath::sequence(vec![65010, 65011, u32::from(AS_TRANS)])),
            as4_path: Some(AsPath::sequence(vec![65011, 4_200_000_000])),
            ..PathAttributes::default()
        };
        attrs.merge_as4();
        assert_eq!(
            attrs.as_path,
            Some(AsPath {
                segments: vec![
                    AsSegment {
                        kind: SegmentType::Sequence,
                        asns: vec![65010]
                    },
                    AsSegment {
                        kind: SegmentType::Sequence,
                        asns: vec![65011, 4_200_000_000]
                    },
                ]
            })
        );
        assert_eq!(attrs.as4_path, None);
        // AS4_PATH longer than AS_PATH is ignored.
        let mut attrs = PathAttributes {
            as_path: Some(AsPath::sequence(vec![65010])),
            as4_path: Some(AsPath::sequence(vec![1, 2])),
            ..PathAttributes::default()
        };
        attrs.merge_as4();
        assert_eq!(attrs.as_path, Some(AsPath::sequence(vec![65010])));
        // An AGGREGATOR other than AS_TRANS voids both AS4 attributes.
        let agg = Aggregator {
            asn: 65020,
            address: Ipv4Addr::new(1, 2, 3, 4),
        };
        let mut attrs = PathAttributes {
            as_path: Some(AsPath::sequence(vec![u32::from(AS_TRANS)])),
            aggregator: Some(agg),
            as4_path: Some(AsPath::sequence(vec![4_200_000_000])),
            as4_aggregator: Some(Aggregator {
                asn: 4_200_000_000,
                ..agg
            }),
            ..PathAttributes::default()
        };
        attrs.merge_as4();
        assert_eq!(
            attrs.as_path,
            Some(AsPath::sequence(vec![u32::from(AS_TRANS)]))
        );
        assert_eq!(attrs.aggregator, Some(agg));
    }

    #[test]
    fn extended_length_and_empty_as_path() {
        let attrs = PathAttributes {
            as_path: Some(AsPath::default()),
            communities: (0..100).map(Community).collect(),
            ..PathAttributes::default()
        };
        let bytes = emit(&attrs, &ctx4());
        assert_eq!(&bytes[..3], &[0x40, 2, 0]);
        assert_eq!(&bytes[3..7], &[0xd0, 8, 1, 144]);
        assert_eq!(parse(&bytes, &ctx4()), (attrs, vec![]));
        // Extended length on a short attribute is accepted too.
        let (attrs, _) = parse(&[0x50, 1, 0, 1, 2], &ctx4());
        assert_eq!(attrs.origin, Some(Origin::Incomplete));
    }

    #[test]
    fn treat_as_withdraw_errors() {
        use ErrorAction::TreatAsWithdraw as W;
        use UpdateError::*;
        let c = &ctx4();
        one_error(&[0x40, 1, 2, 0, 0], c, ORIGIN, W, AttributeLengthError);
        one_error(&[0x40, 1, 1, 3], c, ORIGIN, W, InvalidOriginAttribute);
        one_error(&[0x40, 2, 2, 2, 0], c, AS_PATH, W, MalformedAsPath);
        one_error(
            &[0x40, 2, 6, 5, 1, 0, 0, 0, 1],
            c,
            AS_PATH,
            W,
            MalformedAsPath,
        );
        one_error(
            &[0x40, 2, 6, 2, 2, 0, 0, 0, 1],
            c,
            AS_PATH,
            W,
            MalformedAsPath,
        );
        one_error(&[0x40, 2, 1, 2], c, AS_PATH, W, MalformedAsPath);
        // A 2-octet AS_PATH read as 4-octet: length does not divide.
        one_error(
            &[0x40, 2, 4, 2, 1, 0xfd, 0xe9],
            c,
            AS_PATH,
            W,
            MalformedAsPath,
        );
        one_error(
            &[0x40, 3, 5, 1, 2, 3, 4, 5],
            c,
            NEXT_HOP,
            W,
            AttributeLengthError,
        );
        one_error(&[0x80, 4, 3, 0, 0, 1], c, MED, W, AttributeLengthError);
        one_error(&[0x40, 5, 2, 0, 1], c, LOCAL_PREF, W, AttributeLengthError);
        one_error(&[0xc0, 8, 0], c, COMMUNITIES, W, OptionalAttributeError);
        one_error(
            &[0xc0, 8, 5, 0, 0, 0, 1, 2],
            c,
            COMMUNITIES,
            W,
            OptionalAttributeError,
        );
        one_error(
            &[0xc0, 32, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            c,
            LARGE_COMMUNITIES,
            W,
            OptionalAttributeError,
        );
        // Flags: ORIGIN marked optional, MED marked transitive, ATOMIC_AGGREGATE optional.
        one_error(&[0xc0, 1, 1, 0], c, ORIGIN, W, AttributeFlagsError);
        one_error(&[0xc0, 4, 4, 0, 0, 0, 1], c, MED, W, AttributeFlagsError);
        one_error(&[0x80, 6, 0], c, ATOMIC_AGGREGATE, W, AttributeFlagsError);
    }

    #[test]
    fn attribute_discard_errors() {
        use ErrorAction::AttributeDiscard as D;
        use UpdateError::*;
        let c = &ctx4();
        one_error(
            &[0x40, 6, 1, 0],
            c,
            ATOMIC_AGGREGATE,
            D,
            AttributeLengthError,
        );
        one_error(
            &[0xc0, 7, 6, 0xfd, 0xe9, 10, 0, 0, 1],
            c,
            AGGREGATOR,
            D,
            AttributeLengthError,
        );
        one_error(
            &[0xc0, 7, 8, 0, 0, 0xfd, 0xe9, 10, 0, 0, 1],
            &ctx2(),
            AGGREGATOR,
            D,
            AttributeLengthError,
        );
        let c2 = &ctx2();
        one_error(
            &[0xc0, 17, 2, 2, 0],
            c2,
            AS4_PATH,
            D,
            OptionalAttributeError,
        );
        one_error(
            &[0xc0, 18, 6, 0, 0, 0, 1, 0, 0],
            c2,
            AS4_AGGREGATOR,
            D,
            AttributeLengthError,
        );
        one_error(
            &[0x40, 17, 6, 2, 1, 0, 0, 0, 1],
            c2,
            AS4_PATH,
            D,
            AttributeFlagsError,
        );
        // From a 4-octet speaker the AS4 attributes are always discarded.
        one_error(&[0xc0, 17, 6, 2, 1, 0, 0, 0, 1], c, AS4_PATH, D, Unspecific);
        // MP attributes of a family not negotiated (IPv6 on an IPv4-only session).
        one_error(&[0x80, 15, 3, 0, 2, 1], c2, MP_UNREACH_NLRI, D, Unspecific);
        one_error(&[0x80, 15, 3, 0, 25, 70], c, MP_UNREACH_NLRI, D, Unspecific);
    }

    #[test]
    fn duplicates_keep_the_first() {
        let (attrs, errors) = parse(&[0x40, 1, 1, 0, 0x40, 1, 1, 2], &ctx4());
        assert_eq!(attrs.origin, Some(Origin::Igp));
        assert_eq!(
            errors,
            vec![AttributeError {
                type_code: ORIGIN,
                action: ErrorAction::AttributeDiscard,
                reason: UpdateError::MalformedAttributeList
            }]
        );
    }

    #[test]
    fn session_reset_errors() {
        let c = &ctx4();
        let code = |e: Error| (e.notification.code, e.notification.data);
        let upd = |s| super::super::notification::ErrorCode::Update(s);
        // Duplicate MP_UNREACH_NLRI.
        let dup = [0x80, 15, 3, 0, 2, 1, 0x80, 15, 3, 0, 2, 1];
        assert_eq!(
            code(reset(&dup, c)),
            (upd(UpdateError::MalformedAttributeList), vec![])
        );
        // Unrecognised well-known attribute: data is the attribute.
        assert_eq!(
            code(reset(&[0x40, 1, 1, 0, 0x40, 40, 1, 7], c)),
            (
                upd(UpdateError::UnrecognizedWellKnownAttribute),
                vec![0x40, 40, 1, 7]
            )
        );
        // MP_REACH_NLRI: IPv6 next hop of 8 octets, truncated header, bad
        // prefix, IPv6 next hop for IPv4 without RFC 8950.
        let bad_mp: [&[u8]; 5] = [
            &[0x80, 14, 13, 0, 2, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x80, 14, 2, 0, 2],
            &[0x80, 14, 10, 0, 1, 1, 4, 10, 0, 0, 1, 0, 33],
            &[
                0x80, 14, 21, 0, 1, 1, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                0,
            ],
            &[0x80, 15, 5, 0, 2, 1, 64, 0x20],
        ];
        for attr in bad_mp {
            assert_eq!(
                code(reset(attr, c)),
                (upd(UpdateError::OptionalAttributeError), attr.to_vec()),
                "{attr:02x?}"
            );
        }
        // MP_REACH_NLRI with wrong flags.
        assert_eq!(
            code(reset(&[0xc0, 15, 3, 0, 2, 1], c)).0,
            upd(UpdateError::AttributeFlagsError)
        );
        // Overrun with NLRI possibly hidden (IPv6 negotiated, no MP read yet).
        assert_eq!(
            code(reset(&[0x40, 1, 1, 0, 0x40, 2, 9, 2], c)),
            (upd(UpdateError::MalformedAttributeList), vec![])
        );
        assert_eq!(
            code(reset(&[0x40, 1], c)).0,
            upd(UpdateError::MalformedAttributeList)
        );
    }

    #[test]
    fn overrun_is_treat_as_withdraw_when_nlri_are_known() {
        // IPv4-only session: the NLRI field is all there is.
        let (attrs, errors) = parse(&[0x40, 1, 1, 0, 0x40, 2, 9, 2], &ctx2());
        assert_eq!(attrs.origin, Some(Origin::Igp));
        assert_eq!(
            errors,
            vec![AttributeError {
                type_code: AS_PATH,
                action: ErrorAction::TreatAsWithdraw,
                reason: UpdateError::MalformedAttributeList
            }]
        );
        // MP_UNREACH_NLRI read first: its prefixes are known.
        let (attrs, errors) = parse(&[0x80, 15, 3, 0, 2, 1, 0x50], &ctx4());
        assert!(attrs.mp_unreach.is_some());
        assert_eq!(errors[0].action, ErrorAction::TreatAsWithdraw);
    }

    #[test]
    fn extended_next_hop_for_ipv4() {
        let mut ctx = ctx4();
        ctx.extended_next_hop.insert(Family::IPV4_UNICAST);
        let attrs = PathAttributes {
            mp_reach: Some(MpReach {
                next_hop: NextHop::Ipv6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: None,
                },
                nlri: Prefixes::Ipv4(vec!["10.0.0.0/24".parse().unwrap()]),
            }),
            ..PathAttributes::default()
        };
        let bytes = emit(&attrs, &ctx);
        assert_eq!(&bytes[..7], &[0x80, 14, 25, 0, 1, 1, 16]);
        assert_eq!(parse(&bytes, &ctx), (attrs, vec![]));
        assert!(PathAttributes::parse(&bytes, &ctx4(), &mut Vec::new()).is_err());
    }

    #[test]
    fn unknown_optional_attributes() {
        // Kept in type-code order; non-transitive ones are not passed on.
        let (attrs, errors) = parse(&[0x80, 200, 1, 1, 0xc0, 100, 0], &ctx4());
        assert_eq!(errors, vec![]);
        let codes: Vec<u8> = attrs.unknown.iter().map(|a| a.type_code).collect();
        assert_eq!(codes, [100, 200]);
        let transitive = attrs.unknown[0].for_propagation().unwrap();
        assert!(transitive.flags.contains(AttributeFlags::PARTIAL));
        assert_eq!(attrs.unknown[1].for_propagation(), None);
        assert_eq!(emit(&attrs, &ctx4()), [0xc0, 100, 0, 0x80, 200, 1, 1]);
    }

    #[test]
    fn oversize_fields_are_refused() {
        let attrs = PathAttributes {
            as_path: Some(AsPath::sequence((0..256).collect())),
            ..PathAttributes::default()
        };
        assert_eq!(
            attrs.emit(&ctx4(), &mut Vec::new()),
            Err(EmitError::FieldTooLong)
        );
        let attrs = PathAttributes {
            unknown: vec![RawAttribute {
                flags: AttributeFlags::default(),
                type_code: 250,
                value: vec![0; 70_000],
            }],
            ..PathAttributes::default()
        };
        assert_eq!(
            attrs.emit(&ctx4(), &mut Vec::new()),
            Err(EmitError::FieldTooLong)
        );
    }
}
