//! UPDATE (RFC 4271 §4.3): routes withdrawn, path attributes and routes
//! announced, decoded under the RFC 7606 error handling, and the End-of-RIB
//! marker of RFC 4724 §2.
//!
//! A decoded [`Update`] says which prefixes the session must install and
//! which it must withdraw ([`Update::announced`], [`Update::withdrawn_prefixes`])
//! with treat-as-withdraw already applied; semantic checks that need the
//! session (is the next hop our own address, is the first AS the peer's)
//! are left to it.

use alloc::vec::Vec;

use ipnet::{IpNet, Ipv4Net};

use super::DecodeContext;
use super::attributes::{MpUnreach, PathAttributes, Prefixes, type_code};
use super::error::{AttributeError, EmitError, Error, ErrorAction};
use super::family::Family;
use super::nlri;
use super::notification::UpdateError;
use super::reader::Reader;

/// An UPDATE message body.
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Update {
    /// IPv4 unicast prefixes withdrawn.
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes, including MP_REACH_NLRI / MP_UNREACH_NLRI.
    pub attributes: PathAttributes,
    /// IPv4 unicast prefixes announced with these attributes.
    pub nlri: Vec<Ipv4Net>,
    /// Attribute errors recovered from while decoding (RFC 7606); empty for
    /// an UPDATE built to be sent, and ignored by [`Update::emit`].
    pub errors: Vec<AttributeError>,
}

impl Update {
    /// Parse an UPDATE body (the bytes after the header).
    ///
    /// Session-reset errors: Withdrawn Routes Length or Total Path Attribute
    /// Length running past the message (3/1), a malformed prefix in the
    /// Withdrawn Routes or NLRI field (3/10), and the attribute errors of
    /// [`PathAttributes::parse`]. A well-known mandatory attribute missing
    /// while prefixes are announced is treat-as-withdraw (RFC 7606 §3 d).
    pub fn parse(body: &[u8], ctx: &DecodeContext) -> Result<Update, Error> {
        let list = || Error::update(UpdateError::MalformedAttributeList, Vec::new());
        let network = || Error::update(UpdateError::InvalidNetworkField, Vec::new());
        let mut r = Reader::new(body);
        let withdrawn_len = r.u16().ok_or_else(list)?;
        let withdrawn = r.take(usize::from(withdrawn_len)).ok_or_else(list)?;
        let attrs_len = r.u16().ok_or_else(list)?;
        let attrs = r.take(usize::from(attrs_len)).ok_or_else(list)?;
        let withdrawn = nlri::parse_ipv4(withdrawn).ok_or_else(network)?;
        let mut errors = Vec::new();
        let attributes = PathAttributes::parse(attrs, ctx, &mut errors)?;
        let nlri = nlri::parse_ipv4(r.rest()).ok_or_else(network)?;
        let mut update = Update {
            withdrawn,
            attributes,
            nlri,
            errors,
        };
        update.check_mandatory();
        Ok(update)
    }

    /// Record well-known mandatory attributes missing for the prefixes
    /// announced (RFC 4271 §5, RFC 4760 §3: NEXT_HOP only for the NLRI field).
    fn check_mandatory(&mut self) {
        let a = &self.attributes;
        let mp_nlri = a.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
        if self.nlri.is_empty() && !mp_nlri {
            return;
        }
        let missing = [
            (type_code::ORIGIN, a.origin.is_none()),
            (type_code::AS_PATH, a.as_path.is_none()),
            (
                type_code::NEXT_HOP,
                !self.nlri.is_empty() && a.next_hop.is_none(),
            ),
        ];
        for (type_code, absent) in missing {
            if absent && !self.errors.iter().any(|e| e.type_code == type_code) {
                self.errors.push(AttributeError {
                    type_code,
                    action: ErrorAction::TreatAsWithdraw,
                    reason: UpdateError::MissingWellKnownAttribute,
                });
            }
        }
    }

    /// Append the body to `buf`, encoded for a session negotiated as `ctx`.
    pub fn emit(&self, ctx: &DecodeContext, buf: &mut Vec<u8>) -> Result<(), EmitError> {
        let mut field = Vec::new();
        nlri::emit_ipv4(&self.withdrawn, &mut field);
        let len = u16::try_from(field.len()).map_err(|_| EmitError::FieldTooLong)?;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&field);
        field.clear();
        self.attributes.emit(ctx, &mut field)?;
        let len = u16::try_from(field.len()).map_err(|_| EmitError::FieldTooLong)?;
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&field);
        nlri::emit_ipv4(&self.nlri, buf);
        Ok(())
    }

    /// Whether the UPDATE must be handled as treat-as-withdraw (RFC 7606 §2).
    pub fn treat_as_withdraw(&self) -> bool {
        self.errors
            .iter()
            .any(|e| e.action == ErrorAction::TreatAsWithdraw)
    }

    fn reachable(&self) -> impl Iterator<Item = IpNet> + '_ {
        let mp = self.attributes.mp_reach.iter().flat_map(|m| m.nlri.iter());
        self.nlri.iter().map(|&p| IpNet::V4(p)).chain(mp)
    }

    /// Prefixes to install with these attributes: the NLRI field and
    /// MP_REACH_NLRI, or none under treat-as-withdraw.
    pub fn announced(&self) -> Vec<IpNet> {
        if self.treat_as_withdraw() {
            return Vec::new();
        }
        self.reachable().collect()
    }

    /// Prefixes to withdraw: Withdrawn Routes and MP_UNREACH_NLRI, plus
    /// every announced prefix under treat-as-withdraw.
    pub fn withdrawn_prefixes(&self) -> Vec<IpNet> {
        let mp = self
            .attributes
            .mp_unreach
            .iter()
            .flat_map(|m| m.withdrawn.iter());
        let mut out: Vec<IpNet> = self
            .withdrawn
            .iter()
            .map(|&p| IpNet::V4(p))
            .chain(mp)
            .collect();
        if self.treat_as_withdraw() {
            out.extend(self.reachable());
        }
        out
    }

    /// The End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for
    /// IPv4 unicast, else one with only an empty MP_UNREACH_NLRI. `None` for
    /// a family this codec does not carry.
    pub fn end_of_rib(family: Family) -> Option<Update> {
        let mut update = Update::default();
        if family != Family::IPV4_UNICAST {
            update.attributes.mp_unreach = Some(MpUnreach {
                withdrawn: Prefixes::empty(family)?,
            });
        }
        Some(update)
    }

    /// The family whose End-of-RIB marker this UPDATE is, if it is one.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || !self.errors.is_empty() {
            return None;
        }
        let mut rest = self.attributes.clone();
        match rest.mp_unreach.take() {
            None if rest == PathAttributes::default() => Some(Family::IPV4_UNICAST),
            Some(m) if m.withdrawn.is_empty() && rest == PathAttributes::default() => {
                Some(m.withdrawn.family())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::attributes::{AsPath, MpReach, NextHop, Origin};
    use crate::bgp::wire::header::MARKER;
    use crate::bgp::wire::notification::ErrorCode;
    use crate::bgp::wire::{Message, MessageType};
    use alloc::boxed::Box;
    use alloc::vec;
    use core::net::Ipv4Addr;

    fn ctx() -> DecodeContext {
        DecodeContext::new(true, [Family::IPV4_UNICAST, Family::IPV6_UNICAST])
    }

    fn message(body: &[u8]) -> Vec<u8> {
        let mut m = MARKER.to_vec();
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(2);
        m.extend_from_slice(body);
        m
    }

    /// An eBGP announcement of 10.0.1.0/24 from AS 65001 as FRR sends it to a
    /// 4-octet peer, written from RFC 4271 §4.3 (not a capture).
    const ANNOUNCE: &[u8] = &[
        0, 0, // no withdrawn routes
        0, 20, // path attributes
        0x40, 1, 1, 0, // ORIGIN IGP
        0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9, // AS_PATH 65001
        0x40, 3, 4, 192, 168, 10, 1, // NEXT_HOP
        24, 10, 0, 1, // 10.0.1.0/24
    ];

    fn announce() -> Update {
        Update {
            withdrawn: vec![],
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence(vec![65001])),
                next_hop: Some(Ipv4Addr::new(192, 168, 10, 1)),
                ..PathAttributes::default()
            },
            nlri: vec!["10.0.1.0/24".parse().unwrap()],
            errors: vec![],
        }
    }

    #[test]
    fn golden_announcement() {
        let u = Update::parse(ANNOUNCE, &ctx()).unwrap();
        assert_eq!(u, announce());
        assert_eq!(u.announced(), vec!["10.0.1.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(u.withdrawn_prefixes(), vec![]);
        let bytes = Message::Update(Box::new(u)).to_bytes(&ctx()).unwrap();
        assert_eq!(bytes, message(ANNOUNCE));
    }

    #[test]
    fn golden_end_of_rib() {
        // RFC 4724 §2: IPv4 is the minimal UPDATE, 23 octets.
        let v4 = Update::end_of_rib(Family::IPV4_UNICAST).unwrap();
        let bytes = Message::Update(Box::new(v4)).to_bytes(&ctx()).unwrap();
        assert_eq!(bytes, message(&[0, 0, 0, 0]));
        // IPv6: only MP_UNREACH_NLRI with AFI 2, SAFI 1 and no prefixes.
        let v6 = Update::end_of_rib(Family::IPV6_UNICAST).unwrap();
        let bytes6 = Message::Update(Box::new(v6)).to_bytes(&ctx()).unwrap();
        assert_eq!(bytes6, message(&[0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]));
        for (bytes, family) in [
            (bytes, Family::IPV4_UNICAST),
            (bytes6, Family::IPV6_UNICAST),
        ] {
            let Message::Update(u) = Message::parse(&bytes, &ctx()).unwrap() else {
                panic!("not an UPDATE");
            };
            assert_eq!(u.end_of_rib_family(), Some(family));
        }
        assert_eq!(announce().end_of_rib_family(), None);
        assert_eq!(Update::end_of_rib(Family::new(1, 128)), None);
        // An UPDATE left empty by a discarded attribute is not End-of-RIB.
        let u = Update::parse(&[0, 0, 0, 4, 0x40, 6, 1, 0], &ctx()).unwrap();
        assert_eq!(u.end_of_rib_family(), None);
        // Nor is one withdrawing IPv6 prefixes.
        let u = Update::parse(&[0, 0, 0, 8, 0x80, 15, 5, 0, 2, 1, 8, 0x20], &ctx()).unwrap();
        assert_eq!(u.end_of_rib_family(), None);
    }

    #[test]
    fn treat_as_withdraw_withdraws_everything_announced() {
        // ORIGIN 7 (invalid), plus an IPv6 route in MP_REACH_NLRI.
        let mut body = vec![0, 0, 0, 0];
        let attrs = [
            0x80, 14, 26, 0, 2, 1, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
            32, 0x20, 1, 0x0d, 0xb8, // 2001:db8::/32
            0x40, 1, 1, 7, 0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 1,
        ];
        body[3] = attrs.len() as u8;
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&[8, 10]);
        let u = Update::parse(&body, &ctx()).unwrap();
        assert!(u.treat_as_withdraw());
        assert_eq!(u.announced(), vec![]);
        let w: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        assert_eq!(u.withdrawn_prefixes(), w);
        assert_eq!(
            u.errors,
            vec![AttributeError {
                type_code: type_code::ORIGIN,
                action: ErrorAction::TreatAsWithdraw,
                reason: UpdateError::InvalidOriginAttribute,
            }]
        );
    }

    #[test]
    fn missing_mandatory_attributes() {
        // NLRI with only ORIGIN: AS_PATH and NEXT_HOP missing.
        let body = [0, 0, 0, 4, 0x40, 1, 1, 0, 24, 10, 0, 1];
        let u = Update::parse(&body, &ctx()).unwrap();
        let missing: Vec<(u8, UpdateError)> =
            u.errors.iter().map(|e| (e.type_code, e.reason)).collect();
        assert_eq!(
            missing,
            [
                (type_code::AS_PATH, UpdateError::MissingWellKnownAttribute),
                (type_code::NEXT_HOP, UpdateError::MissingWellKnownAttribute)
            ]
        );
        assert!(u.treat_as_withdraw());
        // MP_REACH_NLRI alone needs ORIGIN and AS_PATH but no NEXT_HOP.
        let mp = Update {
            attributes: PathAttributes {
                origin: Some(Origin::Egp),
                as_path: Some(AsPath::default()),
                mp_reach: Some(MpReach {
                    next_hop: NextHop::Ipv6 {
                        global: "2001:db8::2".parse().unwrap(),
                        link_local: None,
                    },
                    nlri: Prefixes::Ipv6(vec!["2001:db8:2::/48".parse().unwrap()]),
                }),
                ..PathAttributes::default()
            },
            ..Update::default()
        };
        let mut body = Vec::new();
        mp.emit(&ctx(), &mut body).unwrap();
        assert_eq!(Update::parse(&body, &ctx()).unwrap(), mp);
        // Withdrawals need no attributes at all.
        let w = Update::parse(&[0, 2, 8, 10, 0, 0], &ctx()).unwrap();
        assert_eq!(w.errors, vec![]);
        assert_eq!(
            w.withdrawn_prefixes(),
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn field_length_errors() {
        let code = |body: &[u8]| Update::parse(body, &ctx()).unwrap_err().code();
        let list = ErrorCode::Update(UpdateError::MalformedAttributeList);
        let network = ErrorCode::Update(UpdateError::InvalidNetworkField);
        assert_eq!(code(&[0, 5, 8, 10, 0, 0]), list);
        assert_eq!(code(&[0, 0, 0, 9, 0x40, 1, 1, 0]), list);
        assert_eq!(code(&[0]), list);
        assert_eq!(code(&[0, 2, 33, 10, 0, 0]), network);
        assert_eq!(code(&[0, 0, 0, 0, 24, 10, 0]), network);
        assert_eq!(code(&[0, 0, 0, 0, 40, 10, 0, 0, 0, 0]), network);
    }

    #[test]
    fn message_framing() {
        let ctx = ctx();
        let keepalive = Message::Keepalive.to_bytes(&ctx).unwrap();
        assert_eq!(keepalive, crate::bgp::wire::KEEPALIVE);
        assert_eq!(Message::parse(&keepalive, &ctx), Ok(Message::Keepalive));
        // The buffer must be exactly the announced length.
        let mut long = message(ANNOUNCE);
        long.push(0);
        let e = Message::parse(&long, &ctx).unwrap_err();
        assert_eq!(e.notification.data, vec![0, 47]);
        assert_eq!(
            e.code(),
            ErrorCode::MessageHeader(crate::bgp::wire::notification::HeaderError::BadMessageLength)
        );
        // Too many prefixes for 4096 octets: refused, buffer untouched.
        let big = Update {
            withdrawn: (0..1100u32)
                .map(|i| Ipv4Net::new(Ipv4Addr::from(i << 8), 24).unwrap())
                .collect(),
            ..Update::default()
        };
        let mut buf = vec![1, 2, 3];
        assert_eq!(
            Message::Update(Box::new(big)).emit(&ctx, &mut buf),
            Err(EmitError::MessageTooLong { len: 19 + 4 + 4400 })
        );
        assert_eq!(buf, [1, 2, 3]);
        assert_eq!(Message::Keepalive.kind(), MessageType::Keepalive);
    }
}
