//! Capabilities advertised in OPEN (RFC 5492): multiprotocol (RFC 4760 §8),
//! route refresh (RFC 2918 §2), extended next hop (RFC 8950 §3), graceful
//! restart (RFC 4724 §3, with the N bit of RFC 8538 §2) and 4-octet AS
//! numbers (RFC 6793 §3). Any other capability is kept as raw bytes.
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! ~                              ~
//! +------------------------------+
//! ```

use alloc::vec::Vec;

use super::error::EmitError;
use super::family::{Afi, Family};
use super::reader::Reader;

/// Capability codes this codec decodes.
mod code {
    pub(super) const MULTIPROTOCOL: u8 = 1;
    pub(super) const ROUTE_REFRESH: u8 = 2;
    pub(super) const EXTENDED_NEXT_HOP: u8 = 5;
    pub(super) const GRACEFUL_RESTART: u8 = 64;
    pub(super) const FOUR_OCTET_AS: u8 = 65;
}

/// One NLRI family that may carry next hops of another address family
/// (RFC 8950 §3), e.g. IPv4 unicast routes with IPv6 next hops.
///
/// ```text
/// +-----------------------------------------------------+
/// | NLRI AFI - 1 (2 octets)                             |
/// +-----------------------------------------------------+
/// | NLRI SAFI - 1 (2 octets)                            |
/// +-----------------------------------------------------+
/// | Nexthop AFI - 1 (2 octets)                          |
/// +-----------------------------------------------------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtendedNextHop {
    /// The family of the routes.
    pub nlri: Family,
    /// The address family of their next hops.
    pub next_hop_afi: Afi,
}

/// One family in the graceful restart capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GracefulRestartFamily {
    /// The address family.
    pub family: Family,
    /// The F bit: forwarding state for this family survived the restart.
    pub forwarding_preserved: bool,
}

/// The graceful restart capability (RFC 4724 §3, RFC 8538 §2).
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits)                           |
/// +--------------------------------------------------+
/// | Restart Time in seconds (12 bits)                |
/// +--------------------------------------------------+
/// | Address Family Identifier (16 bits)              |
/// +--------------------------------------------------+
/// | Subsequent Address Family Identifier (8 bits)    |
/// +--------------------------------------------------+
/// | Flags for Address Family (8 bits)                |
/// +--------------------------------------------------+
/// | ...  (AFI, SAFI, flags repeated)                 |
/// +--------------------------------------------------+
///
/// Restart Flags:  0 1 2 3        Family flags:  0 1 2 3 4 5 6 7
///                +-+-+-+-+                     +-+-+-+-+-+-+-+-+
///                |R|N|   |                     |F|   Reserved  |
///                +-+-+-+-+                     +-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// The R bit: the sender has restarted.
    pub restarting: bool,
    /// The N bit (RFC 8538): the sender supports graceful restart for
    /// NOTIFICATION messages too (all but Hard Reset).
    pub notification: bool,
    /// Restart Time in seconds; only the low 12 bits are sent.
    pub restart_time: u16,
    /// Families whose routes the sender retains across a restart.
    pub families: Vec<GracefulRestartFamily>,
}

const GR_RESTARTING: u16 = 0x8000;
const GR_NOTIFICATION: u16 = 0x4000;
const GR_TIME_MASK: u16 = 0x0fff;
const GR_FORWARDING: u8 = 0x80;

/// One capability.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Code 1: the sender handles this family (value: AFI, reserved, SAFI).
    Multiprotocol(Family),
    /// Code 2: the sender accepts ROUTE-REFRESH (empty value).
    RouteRefresh,
    /// Code 5: families that may carry next hops of another family.
    ExtendedNextHop(Vec<ExtendedNextHop>),
    /// Code 64: graceful restart.
    GracefulRestart(GracefulRestart),
    /// Code 65: the sender's 4-octet AS number.
    FourOctetAs(u32),
    /// Any other capability, or one of the above whose value this codec
    /// cannot represent (e.g. a 16-bit SAFI beyond 255), kept as sent.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Capability {
    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => code::MULTIPROTOCOL,
            Capability::RouteRefresh => code::ROUTE_REFRESH,
            Capability::ExtendedNextHop(_) => code::EXTENDED_NEXT_HOP,
            Capability::GracefulRestart(_) => code::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => code::FOUR_OCTET_AS,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Decode one capability value. `None` means a capability this codec
    /// knows, with a value of the wrong shape.
    pub fn parse(code: u8, value: &[u8]) -> Option<Capability> {
        let mut r = Reader::new(value);
        let cap = match code {
            code::MULTIPROTOCOL => {
                let afi = r.u16()?;
                r.u8()?;
                Capability::Multiprotocol(Family::new(afi, r.u8()?))
            }
            code::ROUTE_REFRESH => Capability::RouteRefresh,
            code::EXTENDED_NEXT_HOP => {
                if value.is_empty() || !value.len().is_multiple_of(6) {
                    return None;
                }
                let mut entries = Vec::new();
                while !r.is_empty() {
                    let (afi, safi, nh_afi) = (r.u16()?, r.u16()?, r.u16()?);
                    let Ok(safi) = u8::try_from(safi) else {
                        return Some(Capability::Unknown {
                            code,
                            value: value.to_vec(),
                        });
                    };
                    entries.push(ExtendedNextHop {
                        nlri: Family::new(afi, safi),
                        next_hop_afi: nh_afi.into(),
                    });
                }
                Capability::ExtendedNextHop(entries)
            }
            code::GRACEFUL_RESTART => {
                let head = r.u16()?;
                if !r.remaining().is_multiple_of(4) {
                    return None;
                }
                let mut families = Vec::new();
                while !r.is_empty() {
                    let family = Family::new(r.u16()?, r.u8()?);
                    let flags = r.u8()?;
                    families.push(GracefulRestartFamily {
                        family,
                        forwarding_preserved: flags & GR_FORWARDING != 0,
                    });
                }
                Capability::GracefulRestart(GracefulRestart {
                    restarting: head & GR_RESTARTING != 0,
                    notification: head & GR_NOTIFICATION != 0,
                    restart_time: head & GR_TIME_MASK,
                    families,
                })
            }
            code::FOUR_OCTET_AS => Capability::FourOctetAs(r.u32()?),
            _ => {
                return Some(Capability::Unknown {
                    code,
                    value: value.to_vec(),
                });
            }
        };
        r.is_empty().then_some(cap)
    }

    /// Append the value (without code and length) to `buf`.
    fn emit_value(&self, buf: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol(f) => {
                buf.extend_from_slice(&u16::from(f.afi).to_be_bytes());
                buf.push(0);
                buf.push(f.safi.into());
            }
            Capability::RouteRefresh => {}
            Capability::ExtendedNextHop(entries) => {
                for e in entries {
                    buf.extend_from_slice(&u16::from(e.nlri.afi).to_be_bytes());
                    buf.extend_from_slice(&u16::from(u8::from(e.nlri.safi)).to_be_bytes());
                    buf.extend_from_slice(&u16::from(e.next_hop_afi).to_be_bytes());
                }
            }
            Capability::GracefulRestart(gr) => {
                let mut head = gr.restart_time & GR_TIME_MASK;
                if gr.restarting {
                    head |= GR_RESTARTING;
                }
                if gr.notification {
                    head |= GR_NOTIFICATION;
                }
                buf.extend_from_slice(&head.to_be_bytes());
                for f in &gr.families {
                    buf.extend_from_slice(&u16::from(f.family.afi).to_be_bytes());
                    buf.push(f.family.safi.into());
                    buf.push(if f.forwarding_preserved {
                        GR_FORWARDING
                    } else {
                        0
                    });
                }
            }
            Capability::FourOctetAs(asn) => buf.extend_from_slice(&asn.to_be_bytes()),
            Capability::Unknown { value, .. } => buf.extend_from_slice(value),
        }
    }

    /// Append code, length and value to `buf`. Fails if the value is over
    /// 255 octets.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), EmitError> {
        buf.push(self.code());
        let len_at = buf.len();
        buf.push(0);
        self.emit_value(buf);
        let len = buf.len() - len_at - 1;
        buf[len_at] = u8::try_from(len).map_err(|_| EmitError::FieldTooLong)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::family::Safi;
    use alloc::vec;

    fn round_trip(cap: Capability, golden: &[u8]) {
        let mut buf = Vec::new();
        cap.emit(&mut buf).unwrap();
        assert_eq!(buf, golden, "{cap:?}");
        assert_eq!(Capability::parse(golden[0], &golden[2..]), Some(cap));
    }

    #[test]
    fn golden_capabilities() {
        round_trip(
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            &[1, 4, 0, 2, 0, 1],
        );
        round_trip(Capability::RouteRefresh, &[2, 0]);
        round_trip(
            Capability::FourOctetAs(4_200_000_000),
            &[65, 4, 0xfa, 0x56, 0xea, 0x00],
        );
        round_trip(
            Capability::ExtendedNextHop(vec![ExtendedNextHop {
                nlri: Family::IPV4_UNICAST,
                next_hop_afi: Afi::Ipv6,
            }]),
            &[5, 6, 0, 1, 0, 1, 0, 2],
        );
        round_trip(
            Capability::GracefulRestart(GracefulRestart {
                restarting: true,
                notification: true,
                restart_time: 120,
                families: vec![
                    GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    },
                    GracefulRestartFamily {
                        family: Family::IPV6_UNICAST,
                        forwarding_preserved: false,
                    },
                ],
            }),
            &[64, 10, 0xc0, 120, 0, 1, 1, 0x80, 0, 2, 1, 0],
        );
        round_trip(
            Capability::Unknown {
                code: 70,
                value: vec![],
            },
            &[70, 0],
        );
    }

    #[test]
    fn graceful_restart_time_is_twelve_bits() {
        let Some(Capability::GracefulRestart(gr)) = Capability::parse(64, &[0x3f, 0xff]) else {
            panic!("not decoded");
        };
        assert_eq!(gr.restart_time, 4095);
        assert!(!gr.restarting && !gr.notification);
    }

    #[test]
    fn malformed_values() {
        assert_eq!(Capability::parse(1, &[0, 1, 0]), None);
        assert_eq!(Capability::parse(1, &[0, 1, 0, 1, 9]), None);
        assert_eq!(Capability::parse(2, &[0]), None);
        assert_eq!(Capability::parse(5, &[]), None);
        assert_eq!(Capability::parse(5, &[0, 1, 0, 1, 0]), None);
        assert_eq!(Capability::parse(64, &[0]), None);
        assert_eq!(Capability::parse(64, &[0, 0, 0, 1, 1]), None);
        assert_eq!(Capability::parse(65, &[0, 0, 1]), None);
    }

    #[test]
    fn wide_safi_is_kept_raw() {
        let value = [0, 1, 0x01, 0x01, 0, 2];
        assert_eq!(
            Capability::parse(5, &value),
            Some(Capability::Unknown {
                code: 5,
                value: value.to_vec()
            })
        );
        assert_eq!(
            Capability::parse(1, &[0, 25, 0, 70]),
            Some(Capability::Multiprotocol(Family {
                afi: Afi::Unknown(25),
                safi: Safi::Unknown(70)
            }))
        );
    }

    #[test]
    fn oversize_value_is_refused() {
        let cap = Capability::Unknown {
            code: 200,
            value: vec![0; 256],
        };
        assert_eq!(cap.emit(&mut Vec::new()), Err(EmitError::FieldTooLong));
    }
}
