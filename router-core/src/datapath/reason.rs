//! Why a packet left the datapath the way it did: one code per exit, counted
//! per port like Cilium's drop reasons, identical in router-core and eBPF.

/// What happens to the frame.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Send the output frame on a port.
    Transmit = 0,
    /// Hand the frame to the host stack (slow path).
    Pass = 1,
    /// Discard it.
    Drop = 2,
}

/// Every exit of the pipeline. The discriminant is the counter index.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Routed to a nexthop on the link.
    Forwarded = 0,
    /// Routed into a VXLAN or Geneve tunnel.
    Encapsulated = 1,
    /// ARP request for an owned or announced address: answered on the ingress port.
    ArpReply = 2,
    /// Addressed to this host (or broadcast/multicast): for the host stack.
    Local = 3,
    /// The nexthop's link-layer address is unknown: the slow path resolves it.
    NeighbourMiss = 4,
    /// TTL or hop limit would reach zero: the host stack sends ICMP time exceeded.
    TtlExceeded = 5,
    /// No route: the host stack answers (ICMP unreachable) or drops.
    NoRoute = 6,
    /// Larger than the egress MTU: the host stack fragments or sends ICMP.
    FragmentationNeeded = 7,
    /// IPv4 options, IPv6 extension headers we do not walk, or OAM: slow path.
    SlowPath = 8,
    /// An ARP packet not answered here (replies, other targets): the stack learns from it.
    ArpOther = 9,
    /// Not IPv4, IPv6 or ARP (LLDP, …): for the host stack.
    OtherProtocol = 10,
    /// Truncated or inconsistent headers.
    Malformed = 11,
    /// IPv4 header checksum wrong.
    BadChecksum = 12,
    /// Unicast frame for another MAC address.
    OtherHost = 13,
    /// Route is a blackhole.
    Blackhole = 14,
    /// A tunnel endpoint routed into a tunnel again, or an unsupported endpoint family.
    TunnelLoop = 15,
    /// A tunnel header we must not accept (VXLAN I bit clear, Geneve critical option, version).
    BadTunnelHeader = 16,
    /// A frame arrived on a port the tables do not know.
    UnknownPort = 17,
    /// Neighbour solicitation for an owned or announced IPv6 address:
    /// answered on the ingress port.
    NdpReply = 18,
    /// A neighbour discovery message not answered here (advertisements,
    /// other targets, solicitations the datapath leaves to the slow path):
    /// the stack learns from it and answers what is its to answer.
    NdpOther = 19,
}

impl Reason {
    /// Number of reasons (size of a counter array).
    pub const COUNT: usize = 20;

    /// The action each reason implies.
    pub fn action(self) -> Action {
        match self {
            Reason::Forwarded | Reason::Encapsulated | Reason::ArpReply | Reason::NdpReply => {
                Action::Transmit
            }
            Reason::Local
            | Reason::NeighbourMiss
            | Reason::TtlExceeded
            | Reason::NoRoute
            | Reason::FragmentationNeeded
            | Reason::SlowPath
            | Reason::ArpOther
            | Reason::NdpOther
            | Reason::OtherProtocol => Action::Pass,
            Reason::Malformed
            | Reason::BadChecksum
            | Reason::OtherHost
            | Reason::Blackhole
            | Reason::TunnelLoop
            | Reason::BadTunnelHeader
            | Reason::UnknownPort => Action::Drop,
        }
    }

    /// The reason with this counter index.
    pub fn from_index(i: u8) -> Option<Self> {
        const ALL: [Reason; Reason::COUNT] = [
            Reason::Forwarded,
            Reason::Encapsulated,
            Reason::ArpReply,
            Reason::Local,
            Reason::NeighbourMiss,
            Reason::TtlExceeded,
            Reason::NoRoute,
            Reason::FragmentationNeeded,
            Reason::SlowPath,
            Reason::ArpOther,
            Reason::OtherProtocol,
            Reason::Malformed,
            Reason::BadChecksum,
            Reason::OtherHost,
            Reason::Blackhole,
            Reason::TunnelLoop,
            Reason::BadTunnelHeader,
            Reason::UnknownPort,
            Reason::NdpReply,
            Reason::NdpOther,
        ];
        ALL.get(usize::from(i)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip() {
        for i in 0..Reason::COUNT as u8 {
            assert_eq!(Reason::from_index(i).map(|r| r as u8), Some(i));
        }
        assert_eq!(Reason::from_index(Reason::COUNT as u8), None);
    }
}
