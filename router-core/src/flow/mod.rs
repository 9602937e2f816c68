//! Flow events: what the datapath did with one packet, in Hubble's terms.
//!
//! Owns the mapping from a datapath exit ([`Reason`], a service-stage drop)
//! and the sides a packet came from and went to onto Hubble's observation
//! points, verdicts and drop reasons ([`observe`]), and the summary of the
//! packet a flow carries ([`Packet`]). Both are allocation-free, so the eBPF
//! programs can make the same calls. The direction of a flow (request or
//! reply) is [`direction`]'s; names, filters and Hubble's text and JSON
//! layouts are [`hubble`]'s. Collecting events, timestamps and rate limits
//! belong to the runtime.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::datapath::Reason;

#[cfg(feature = "alloc")]
pub mod direction;
#[cfg(feature = "alloc")]
pub mod hubble;

/// Where a packet came from or goes to, as the node sees its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A local pod's interface (Cilium's `lxc` devices).
    Endpoint,
    /// A network device (uplink) or a tunnel.
    Network,
    /// The node's own stack.
    Host,
}

/// Hubble's trace observation points (`TraceObservationPoint` numbers) and
/// the socket load-balancer's translation points.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Point {
    /// Handed to the node's stack.
    ToStack = 3,
    /// Encapsulated into the overlay.
    ToOverlay = 4,
    /// Sent out of a network device.
    ToNetwork = 11,
    /// Delivered to a local pod.
    ToEndpoint = 101,
    /// A socket's connect to a service address, before translation.
    PreXlateFwd = 200,
    /// The same connect, translated to the chosen backend.
    PostXlateFwd = 201,
}

impl Point {
    /// The name `hubble observe` prints (`to-network`).
    pub fn name(self) -> &'static str {
        match self {
            Point::ToStack => "to-stack",
            Point::ToOverlay => "to-overlay",
            Point::ToNetwork => "to-network",
            Point::ToEndpoint => "to-endpoint",
            Point::PreXlateFwd => "pre-xlate-fwd",
            Point::PostXlateFwd => "post-xlate-fwd",
        }
    }

    /// The protobuf enum name Hubble's JSON carries (`TO_NETWORK`).
    pub fn json_name(self) -> &'static str {
        match self {
            Point::ToStack => "TO_STACK",
            Point::ToOverlay => "TO_OVERLAY",
            Point::ToNetwork => "TO_NETWORK",
            Point::ToEndpoint => "TO_ENDPOINT",
            Point::PreXlateFwd => "SOCK_XLATE_POINT_PRE_DIRECTION_FWD",
            Point::PostXlateFwd => "SOCK_XLATE_POINT_POST_DIRECTION_FWD",
        }
    }

    /// Every point, for parsing `--type trace:NAME`.
    pub const ALL: [Point; 6] = [
        Point::ToStack,
        Point::ToOverlay,
        Point::ToNetwork,
        Point::ToEndpoint,
        Point::PreXlateFwd,
        Point::PostXlateFwd,
    ];
}

/// Hubble's verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// The packet went on.
    Forwarded,
    /// The packet was dropped, for this reason.
    Dropped(DropReason),
    /// A service address was translated to a backend.
    Translated,
    /// An event on the way (a socket's connect before translation).
    Traced,
}

impl Verdict {
    /// The name Hubble prints and filters on (`FORWARDED`).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Forwarded => "FORWARDED",
            Verdict::Dropped(_) => "DROPPED",
            Verdict::Translated => "TRANSLATED",
            Verdict::Traced => "TRACED",
        }
    }
}

/// Cilium's drop reasons (the numbers of `DropReason` in Hubble's flow API)
/// for the drops this datapath makes.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Truncated or inconsistent headers, a bad checksum.
    InvalidPacket = 134,
    /// Larger than the egress MTU with DF set.
    FragNeeded = 136,
    /// Conntrack had no room for the flow.
    CtMapInsertionFailed = 155,
    /// A service address with no backend for the traffic.
    ServiceBackendNotFound = 158,
    /// The tunnel endpoint is unknown or would loop.
    NoTunnelEndpoint = 160,
    /// No SNAT mapping could be made.
    NoNatMapping = 167,
    /// No route, or a blackhole route.
    FibLookupFailed = 169,
    /// A tunnel header this node must not accept.
    InvalidVni = 183,
    /// The TTL ran out.
    TtlExceeded = 196,
}

impl DropReason {
    /// The description `hubble observe` prints in place of an observation point.
    pub fn description(self) -> &'static str {
        match self {
            DropReason::InvalidPacket => "Invalid packet",
            DropReason::FragNeeded => "Fragmentation needed",
            DropReason::CtMapInsertionFailed => "CT: Map insertion failed",
            DropReason::ServiceBackendNotFound => "Service backend not found",
            DropReason::NoTunnelEndpoint => "No tunnel/encapsulation endpoint (datapath BUG!)",
            DropReason::NoNatMapping => "No mapping for NAT masquerade",
            DropReason::FibLookupFailed => "FIB lookup failed",
            DropReason::InvalidVni => "Invalid VNI",
            DropReason::TtlExceeded => "TTL exceeded",
        }
    }

    /// The protobuf enum name Hubble's JSON carries (`FIB_LOOKUP_FAILED`).
    pub fn json_name(self) -> &'static str {
        match self {
            DropReason::InvalidPacket => "INVALID_PACKET_DROPPED",
            DropReason::FragNeeded => "FRAG_NEEDED",
            DropReason::CtMapInsertionFailed => "CT_MAP_INSERTION_FAILED",
            DropReason::ServiceBackendNotFound => "SERVICE_BACKEND_NOT_FOUND",
            DropReason::NoTunnelEndpoint => "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT",
            DropReason::NoNatMapping => "NO_MAPPING_FOR_NAT_MASQUERADE",
            DropReason::FibLookupFailed => "FIB_LOOKUP_FAILED",
            DropReason::InvalidVni => "INVALID_VNI",
            DropReason::TtlExceeded => "TTL_EXCEEDED",
        }
    }

    /// The drop reason of a service-stage drop.
    #[cfg(feature = "alloc")]
    pub fn of_service(drop: crate::service::datapath::DropReason) -> Self {
        use crate::service::datapath::DropReason as ServiceDrop;
        match drop {
            ServiceDrop::NoBackend => DropReason::ServiceBackendNotFound,
            ServiceDrop::ConntrackFull => DropReason::CtMapInsertionFailed,
            ServiceDrop::NatExhausted | ServiceDrop::NoNodeAddress => DropReason::NoNatMapping,
            ServiceDrop::NoBackendNode => DropReason::NoTunnelEndpoint,
        }
    }
}

/// What a flow event says about a packet: where it was seen (none for a
/// drop, which Hubble shows by its reason) and the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The observation point.
    pub point: Option<Point>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The flow event a datapath exit makes, if any, for a packet that came
/// from `from` and (for a transmit) leaves towards `to`.
///
/// A Cilium node reports its pods' traffic and the drops it makes: a
/// pod's packet leaving on the network (`to-network`) or into the overlay
/// (`to-overlay`), anything delivered to a pod (`to-endpoint`), a pod's or
/// a tunnel's packet for the node itself (`to-stack`), and every drop of a
/// packet it did not send itself. The node's own traffic on the network
/// (BGP, the API server) and link-layer exchanges (ARP, neighbour
/// discovery) make none, nor does a packet waiting for its nexthop's
/// address (it is observed when it goes on).
pub fn observe(
    from: Side,
    to: Option<Side>,
    reason: Reason,
    decapsulated: bool,
) -> Option<Observation> {
    let forwarded = |point| {
        Some(Observation {
            point: Some(point),
            verdict: Verdict::Forwarded,
        })
    };
    let dropped = |why| {
        (from != Side::Host).then_some(Observation {
            point: None,
            verdict: Verdict::Dropped(why),
        })
    };
    match reason {
        Reason::Forwarded if to == Some(Side::Endpoint) => forwarded(Point::ToEndpoint),
        Reason::Forwarded if from == Side::Host => None,
        Reason::Forwarded => forwarded(Point::ToNetwork),
        Reason::Encapsulated => forwarded(Point::ToOverlay),
        Reason::Local if from == Side::Endpoint || decapsulated => forwarded(Point::ToStack),
        Reason::TtlExceeded => dropped(DropReason::TtlExceeded),
        Reason::NoRoute | Reason::Blackhole => dropped(DropReason::FibLookupFailed),
        Reason::FragmentationNeeded => dropped(DropReason::FragNeeded),
        Reason::Malformed | Reason::BadChecksum => dropped(DropReason::InvalidPacket),
        Reason::TunnelLoop => dropped(DropReason::NoTunnelEndpoint),
        Reason::BadTunnelHeader => dropped(DropReason::InvalidVni),
        Reason::Local
        | Reason::ArpReply
        | Reason::ArpOther
        | Reason::NdpReply
        | Reason::NdpOther
        | Reason::NeighbourMiss
        | Reason::SlowPath
        | Reason::OtherProtocol
        | Reason::OtherHost
        | Reason::UnknownPort => None,
    }
}

/// TCP flag bits as in the TCP header's 13th octet.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
    /// The flags in the order Hubble prints them (`SYN, ACK`, `ACK, FIN`),
    /// with their names.
    pub const ORDER: [(u8, &str); 8] = [
        (SYN, "SYN"),
        (ACK, "ACK"),
        (RST, "RST"),
        (FIN, "FIN"),
        (PSH, "PSH"),
        (URG, "URG"),
        (ECE, "ECE"),
        (CWR, "CWR"),
    ];
}

/// The transport part of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    /// TCP with its ports and flags ([`tcp_flags`]).
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Flag bits.
        flags: u8,
    },
    /// UDP with its ports.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// ICMPv4 type and code.
    Icmp4 {
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
    },
    /// ICMPv6 type and code.
    Icmp6 {
        /// Type.
        kind: u8,
        /// Code.
        code: u8,
    },
    /// Another protocol (or a header cut short): its protocol number.
    Other(u8),
}

impl L4 {
    /// Source and destination ports, for TCP and UDP.
    pub fn ports(self) -> Option<(u16, u16)> {
        match self {
            L4::Tcp { src, dst, .. } | L4::Udp { src, dst } => Some((src, dst)),
            _ => None,
        }
    }

    /// The protocol's name as `hubble observe --protocol` takes it.
    pub fn protocol(self) -> &'static str {
        match self {
            L4::Tcp { .. } => "tcp",
            L4::Udp { .. } => "udp",
            L4::Icmp4 { .. } => "icmpv4",
            L4::Icmp6 { .. } => "icmpv6",
            L4::Other(_) => "other",
        }
    }
}

/// The addresses and transport header of a packet: what a flow records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport.
    pub l4: L4,
}

impl Packet {
    /// Read an IPv4 or IPv6 packet (no Ethernet header). `None` if the
    /// IP header itself is cut short; a cut-short transport header gives
    /// [`L4::Other`].
    ///
    /// Layouts read (RFC 791 §3.1, RFC 8200 §3, RFC 9293 §3.1, RFC 768):
    /// ```text
    /// IPv4: ver/ihl(1) tos(1) len(2) id(2) frag(2) ttl(1) proto@9 csum(2) src@12 dst@16
    /// IPv6: ver(4b).. len@4(2) next@6 hop(1) src@8(16) dst@24(16), transport @40
    /// TCP:  sport@0 dport@2 seq(4) ack(4) off(1) flags@13
    /// UDP:  sport@0 dport@2    ICMP: type@0 code@1
    /// ```
    pub fn parse(ip: &[u8]) -> Option<Packet> {
        let (src, dst, proto, l4) = match ip.first()? >> 4 {
            4 if ip.len() >= 20 => {
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let src = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16]).ok()?);
                let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20]).ok()?);
                let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
                let l4 = if first_fragment { ip.get(ihl..) } else { None };
                (IpAddr::V4(src), IpAddr::V4(dst), ip[9], l4)
            }
            6 if ip.len() >= 40 => {
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?);
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?);
                (IpAddr::V6(src), IpAddr::V6(dst), ip[6], ip.get(40..))
            }
            _ => return None,
        };
        let l4 = l4.unwrap_or(&[]);
        let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
        let l4 = match proto {
            6 if l4.len() >= 14 => L4::Tcp {
                src: port(0),
                dst: port(2),
                flags: l4[13],
            },
            17 if l4.len() >= 4 => L4::Udp {
                src: port(0),
                dst: port(2),
            },
            1 if l4.len() >= 2 => L4::Icmp4 {
                kind: l4[0],
                code: l4[1],
            },
            58 if l4.len() >= 2 => L4::Icmp6 {
                kind: l4[0],
                code: l4[1],
            },
            other => L4::Other(other),
        };
        Some(Packet { src, dst, l4 })
    }
}

/// One flow event: when, what was seen and about which packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Time in microseconds since the runtime's epoch.
    pub micros: i64,
    /// Where and with what verdict.
    pub observation: Observation,
    /// The packet.
    pub packet: Packet,
    /// Whether the packet is a reply of its connection; `None` where that is
    /// not known (a socket's translation events).
    pub reply: Option<bool>,
}

#[cfg(all(test, feature = "alloc"))]
mod tests;
