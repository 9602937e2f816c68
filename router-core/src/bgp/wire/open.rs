//! OPEN (RFC 4271 §4.2) and its checks (§6.2), with capabilities carried as
//! optional parameters (RFC 5492 §4) and the extended optional parameters
//! length of RFC 9072 when they outgrow one octet.
//!
//! Checks that need configuration (is this the peer AS we expect, is the
//! identifier our own, is the hold time acceptable by policy) belong to the
//! session; this module rejects only what no configuration could accept.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use super::capability::Capability;
use super::error::{EmitError, Error};
use super::notification::OpenError;
use super::reader::Reader;

/// The BGP version this codec speaks.
pub const BGP_VERSION: u8 = 4;
/// AS_TRANS (RFC 6793 §9): stands in for a 4-octet AS in 2-octet fields.
pub const AS_TRANS: u16 = 23456;

/// Optional parameter type for capabilities (RFC 5492).
const PARAM_CAPABILITIES: u8 = 2;
/// Non-Ext OP Type marking the extended format (RFC 9072 §2).
const PARAM_EXTENDED: u8 = 255;

/// An OPEN message body.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// Optional parameter:              With RFC 9072 (Opt Parm Len 255,
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+    first octet 255, then a 2-octet
/// |  Parm. Type   | Parm. Length  |  Extended Opt. Parm. Length, and
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+    2-octet parameter lengths)
/// ~   Parameter Value (variable)  ~
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The version is always 4 and not stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Open {
    /// My Autonomous System: the sender's AS, or [`AS_TRANS`] when it does
    /// not fit in two octets.
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 or at least 3.
    pub hold_time: u16,
    /// The sender's BGP Identifier.
    pub bgp_identifier: Ipv4Addr,
    /// Capabilities, in the order sent.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN from AS `asn`: My Autonomous System is `asn` or [`AS_TRANS`].
    /// Add [`Capability::FourOctetAs`] to `capabilities` to announce the
    /// full number.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        capabilities: Vec<Capability>,
    ) -> Open {
        Open {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_identifier,
            capabilities,
        }
    }

    /// The sender's AS: from the 4-octet AS capability if present (RFC 6793
    /// §4.1), else My Autonomous System.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Parse an OPEN body (the bytes after the header).
    ///
    /// Errors: version other than 4 (2/1, data: 0x0004), AS 0 in My
    /// Autonomous System or the 4-octet AS capability (2/2, RFC 7607), a
    /// hold time of 1 or 2 (2/6), BGP Identifier 0 (2/3, RFC 6286), an
    /// optional parameter other than capabilities (2/4), and parameter or
    /// capability lengths that do not add up or a known capability with a
    /// malformed value (2/0, data: the offending bytes).
    pub fn parse(body: &[u8]) -> Result<Open, Error> {
        let malformed = |data: &[u8]| Error::open(OpenError::Unspecific, data.to_vec());
        let mut r = Reader::new(body);
        let (Some(version), Some(my_as), Some(hold_time), Some(bgp_identifier), Some(opt_len)) =
            (r.u8(), r.u16(), r.u16(), r.ipv4(), r.u8())
        else {
            return Err(malformed(body));
        };
        if version != BGP_VERSION {
            return Err(Error::open(
                OpenError::UnsupportedVersionNumber,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ));
        }
        if my_as == 0 {
            return Err(Error::open(OpenError::BadPeerAs, Vec::new()));
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(Error::open(OpenError::UnacceptableHoldTime, Vec::new()));
        }
        if bgp_identifier == Ipv4Addr::UNSPECIFIED {
            return Err(Error::open(OpenError::BadBgpIdentifier, Vec::new()));
        }

        let rest = r.rest();
        let extended = opt_len == PARAM_EXTENDED && rest.first() == Some(&PARAM_EXTENDED);
        let params = if extended {
            let mut r = Reader::new(&rest[1..]);
            let len = r.u16().ok_or_else(|| malformed(rest))?;
            let params = r.take(usize::from(len)).ok_or_else(|| malformed(rest))?;
            if !r.is_empty() {
                return Err(malformed(rest));
            }
            params
        } else if rest.len() == usize::from(opt_len) {
            rest
        } else {
            return Err(malformed(rest));
        };

        let mut capabilities = Vec::new();
        let mut r = Reader::new(params);
        while !r.is_empty() {
            let start = r;
            let kind = r.u8().ok_or_else(|| malformed(params))?;
            let len = if extended {
                r.u16()
            } else {
                r.u8().map(u16::from)
            }
            .ok_or_else(|| malformed(start.as_slice()))?;
            let value = r
                .take(usize::from(len))
                .ok_or_else(|| malformed(start.as_slice()))?;
            if kind != PARAM_CAPABILITIES {
                return Err(Error::open(
                    OpenError::UnsupportedOptionalParameter,
                    Vec::new(),
                ));
            }
            parse_capabilities(value, &mut capabilities)?;
        }
        Ok(Open {
            my_as,
            hold_time,
            bgp_identifier,
            capabilities,
        })
    }

    /// Append the body to `buf`. All capabilities go in one optional
    /// parameter; past 255 octets the RFC 9072 format is used. Fails if a
    /// capability value is over 255 octets.
    pub fn emit(&self, buf: &mut Vec<u8>) -> Result<(), EmitError> {
        let mut caps = Vec::new();
        for c in &self.capabilities {
            c.emit(&mut caps)?;
        }
        buf.push(BGP_VERSION);
        buf.extend_from_slice(&self.my_as.to_be_bytes());
        buf.extend_from_slice(&self.hold_time.to_be_bytes());
        buf.extend_from_slice(&self.bgp_identifier.octets());
        if caps.is_empty() {
            buf.push(0);
        } else if let Ok(len) = u8::try_from(caps.len() + 2) {
            buf.push(len);
            buf.push(PARAM_CAPABILITIES);
            buf.push(caps.len() as u8);
            buf.extend_from_slice(&caps);
        } else {
            let caps_len = u16::try_from(caps.len()).map_err(|_| EmitError::FieldTooLong)?;
            let params_len = caps_len.checked_add(3).ok_or(EmitError::FieldTooLong)?;
            buf.push(PARAM_EXTENDED);
            buf.push(PARAM_EXTENDED);
            buf.extend_from_slice(&params_len.to_be_bytes());
            buf.push(PARAM_CAPABILITIES);
            buf.extend_from_slice(&caps_len.to_be_bytes());
            buf.extend_from_slice(&caps);
        }
        Ok(())
    }
}

/// Decode the capabilities in one Capabilities optional parameter.
fn parse_capabilities(value: &[u8], out: &mut Vec<Capability>) -> Result<(), Error> {
    let mut r = Reader::new(value);
    while !r.is_empty() {
        let start = r;
        let bad = || Error::open(OpenError::Unspecific, start.as_slice().to_vec());
        let (Some(code), Some(len)) = (r.u8(), r.u8()) else {
            return Err(bad());
        };
        let Some(cap_value) = r.take(usize::from(len)) else {
            return Err(bad());
        };
        let tlv = &start.as_slice()[..2 + usize::from(len)];
        match Capability::parse(code, cap_value) {
            Some(Capability::FourOctetAs(0)) => {
                return Err(Error::open(OpenError::BadPeerAs, Vec::new()));
            }
            Some(cap) => out.push(cap),
            None => return Err(Error::open(OpenError::Unspecific, tlv.to_vec())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::capability::{GracefulRestart, GracefulRestartFamily};
    use crate::bgp::wire::family::Family;
    use crate::bgp::wire::notification::ErrorCode;
    use alloc::vec;

    /// An OPEN body as FRR 8.4 sends it to an IPv4 unicast eBGP peer: AS
    /// 65000, hold 180, router id 192.168.10.200, capabilities MP IPv4
    /// unicast, route refresh (new and old Cisco code 128), 4-octet AS,
    /// graceful restart (helper, N bit) and FQDN (73, kept raw). Written
    /// from the layouts of RFC 4271 §4.2 / RFC 5492 following the order FRR
    /// puts capabilities in; not a capture.
    const FRR_LIKE: &[u8] = &[
        4, 0xfd, 0xe8, 0, 180, 192, 168, 10, 200, // version, AS, hold, id
        30, 2, 28, // opt parm len, capabilities parameter
        1, 4, 0, 1, 0, 1, // MP IPv4 unicast
        128, 0, // route refresh (old)
        2, 0, // route refresh
        65, 4, 0, 0, 0xfd, 0xe8, // 4-octet AS 65000
        64, 2, 0x40, 120, // graceful restart, N bit, 120 s
        73, 6, 3, b't', b'o', b'r', 0, 0, // FQDN "tor", no domain
    ];

    fn frr_like() -> Open {
        Open {
            my_as: 65000,
            hold_time: 180,
            bgp_identifier: Ipv4Addr::new(192, 168, 10, 200),
            capabilities: vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Unknown {
                    code: 128,
                    value: vec![],
                },
                Capability::RouteRefresh,
                Capability::FourOctetAs(65000),
                Capability::GracefulRestart(GracefulRestart {
                    restarting: false,
                    notification: true,
                    restart_time: 120,
                    families: vec![],
                }),
                Capability::Unknown {
                    code: 73,
                    value: vec![3, b't', b'o', b'r', 0, 0],
                },
            ],
        }
    }

    fn error(body: &[u8]) -> (ErrorCode, Vec<u8>) {
        let e = Open::parse(body).unwrap_err();
        (e.notification.code, e.notification.data)
    }

    #[test]
    fn golden_round_trip() {
        let open = Open::parse(FRR_LIKE).unwrap();
        assert_eq!(open, frr_like());
        assert_eq!(open.asn(), 65000);
        let mut buf = Vec::new();
        open.emit(&mut buf).unwrap();
        assert_eq!(buf, FRR_LIKE);
    }

    #[test]
    fn capabilities_across_several_parameters() {
        let body = [
            4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 12, 2, 4, 65, 2, 0, 0, 2, 4, 65, 2, 0, 1,
        ];
        // Two parameters, each with a malformed 4-octet AS (length 2).
        assert_eq!(
            error(&body),
            (ErrorCode::Open(OpenError::Unspecific), vec![65, 2, 0, 0])
        );
        let body = [
            4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 8, 2, 2, 2, 0, 2, 2, 128, 0,
        ];
        let open = Open::parse(&body).unwrap();
        assert_eq!(open.capabilities.len(), 2);
        assert_eq!(open.asn(), 65000);
    }

    #[test]
    fn four_octet_as_and_as_trans() {
        let open = Open::new(
            4_200_000_001,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![Capability::FourOctetAs(4_200_000_001)],
        );
        assert_eq!(open.my_as, AS_TRANS);
        assert_eq!(open.asn(), 4_200_000_001);
        let mut buf = Vec::new();
        open.emit(&mut buf).unwrap();
        assert_eq!(&buf[1..3], &[0x5b, 0xa0]);
        assert_eq!(Open::parse(&buf).unwrap(), open);
    }

    #[test]
    fn extended_optional_parameters() {
        let families: Vec<_> = (0..70)
            .map(|i| GracefulRestartFamily {
                family: Family::new(1, i),
                forwarding_preserved: i % 2 == 0,
            })
            .collect();
        let caps: Vec<_> = (0..3)
            .map(|_| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting: true,
                    notification: false,
                    restart_time: 300,
                    families: families[..60].to_vec(),
                })
            })
            .collect();
        let open = Open::new(65001, 0, Ipv4Addr::new(1, 1, 1, 1), caps);
        let mut buf = Vec::new();
        open.emit(&mut buf).unwrap();
        assert_eq!(&buf[9..11], &[255, 255]);
        assert_eq!(Open::parse(&buf).unwrap(), open);
    }

    #[test]
    fn field_errors() {
        let mut body = FRR_LIKE.to_vec();
        body[0] = 3;
        assert_eq!(
            error(&body),
            (
                ErrorCode::Open(OpenError::UnsupportedVersionNumber),
                vec![0, 4]
            )
        );
        let mut body = FRR_LIKE.to_vec();
        body[1..3].copy_from_slice(&[0, 0]);
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::BadPeerAs));
        for hold in [1u8, 2] {
            let mut body = FRR_LIKE.to_vec();
            body[3..5].copy_from_slice(&[0, hold]);
            assert_eq!(
                error(&body).0,
                ErrorCode::Open(OpenError::UnacceptableHoldTime)
            );
        }
        let mut body = FRR_LIKE.to_vec();
        body[5..9].copy_from_slice(&[0; 4]);
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::BadBgpIdentifier));
    }

    #[test]
    fn parameter_errors() {
        // Authentication parameter (type 1, deprecated).
        let body = [4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 3, 1, 1, 0];
        assert_eq!(
            error(&body).0,
            ErrorCode::Open(OpenError::UnsupportedOptionalParameter)
        );
        // Opt Parm Len longer than the body.
        let body = [4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 5, 2, 2, 2, 0];
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::Unspecific));
        // Parameter length past Opt Parm Len.
        let body = [4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 2, 2, 9];
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::Unspecific));
        // Capability length past the parameter.
        let body = [4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 4, 2, 2, 65, 4];
        assert_eq!(
            error(&body),
            (ErrorCode::Open(OpenError::Unspecific), vec![65, 4])
        );
        // 4-octet AS 0.
        let body = [
            4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 8, 2, 6, 65, 4, 0, 0, 0, 0,
        ];
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::BadPeerAs));
        // Truncated fixed part and truncated extended length.
        assert_eq!(error(&[4, 0, 1]).0, ErrorCode::Open(OpenError::Unspecific));
        let body = [4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 255, 255, 0];
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::Unspecific));
        // Extended length shorter than what follows.
        let body = [4, 0xfd, 0xe8, 0, 90, 10, 0, 0, 1, 255, 255, 0, 0, 7];
        assert_eq!(error(&body).0, ErrorCode::Open(OpenError::Unspecific));
    }
}
