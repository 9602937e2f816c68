//! Address families: the AFI/SAFI pairs that name what a route is for
//! (RFC 4760 §3, IANA "Address Family Numbers" and "SAFI Values").
//!
//! Unknown values are kept as they are, so capabilities for families this
//! codec does not decode still round-trip.

use ipnet::IpNet;

/// Address Family Identifier (two octets on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Afi {
    /// IPv4 (1).
    Ipv4,
    /// IPv6 (2).
    Ipv6,
    /// Any other AFI.
    Unknown(u16),
}

impl From<u16> for Afi {
    fn from(value: u16) -> Self {
        match value {
            1 => Afi::Ipv4,
            2 => Afi::Ipv6,
            other => Afi::Unknown(other),
        }
    }
}

impl From<Afi> for u16 {
    fn from(afi: Afi) -> u16 {
        match afi {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
            Afi::Unknown(other) => other,
        }
    }
}

/// Subsequent Address Family Identifier (one octet on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Safi {
    /// Unicast forwarding (1).
    Unicast,
    /// Multicast forwarding (2).
    Multicast,
    /// Any other SAFI.
    Unknown(u8),
}

impl From<u8> for Safi {
    fn from(value: u8) -> Self {
        match value {
            1 => Safi::Unicast,
            2 => Safi::Multicast,
            other => Safi::Unknown(other),
        }
    }
}

impl From<Safi> for u8 {
    fn from(safi: Safi) -> u8 {
        match safi {
            Safi::Unicast => 1,
            Safi::Multicast => 2,
            Safi::Unknown(other) => other,
        }
    }
}

/// An AFI/SAFI pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Family {
    /// The address family.
    pub afi: Afi,
    /// The subsequent address family.
    pub safi: Safi,
}

impl Family {
    /// IPv4 unicast (1/1): the family of the UPDATE's own NLRI fields.
    pub const IPV4_UNICAST: Family = Family {
        afi: Afi::Ipv4,
        safi: Safi::Unicast,
    };
    /// IPv6 unicast (2/1), carried in MP_REACH_NLRI / MP_UNREACH_NLRI.
    pub const IPV6_UNICAST: Family = Family {
        afi: Afi::Ipv6,
        safi: Safi::Unicast,
    };

    /// The unicast family of `prefix`'s address family.
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }

    /// The pair for wire values `afi` and `safi`.
    pub fn new(afi: u16, safi: u8) -> Family {
        Family {
            afi: afi.into(),
            safi: safi.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_values_round_trip() {
        for afi in [0u16, 1, 2, 25, 0xffff] {
            assert_eq!(u16::from(Afi::from(afi)), afi);
        }
        for safi in [0u8, 1, 2, 4, 128, 255] {
            assert_eq!(u8::from(Safi::from(safi)), safi);
        }
        assert_eq!(Family::new(2, 1), Family::IPV6_UNICAST);
        assert_eq!(Family::new(25, 70).afi, Afi::Unknown(25));
    }

    #[test]
    fn family_of_a_prefix() {
        let v4: IpNet = "10.0.0.0/8".parse().unwrap();
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(Family::of(&v4), Family::IPV4_UNICAST);
        assert_eq!(Family::of(&v6), Family::IPV6_UNICAST);
    }
}
