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
