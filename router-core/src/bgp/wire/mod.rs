//! The BGP-4 wire codec: bytes to messages and back, and nothing else.
//!
//! Each message, capability and path attribute has a parsed representation
//! with `parse` and `emit`, documented with its RFC section and layout. A
//! decoder never panics: it returns a value, or an [`Error`] holding the
//! NOTIFICATION to send (RFC 4271 §6), and a decoded UPDATE lists the
//! attribute errors recovered from under RFC 7606. What was negotiated for
//! the session comes in as a [`DecodeContext`]. Framing a TCP stream,
//! timers and what to do with routes belong to the session.
//!
//! - [`header`]: marker, length and type; how many octets a message has.
//! - [`open`] and [`capability`]: OPEN and the capabilities it carries.
//! - [`update`], [`attributes`], [`family`]: UPDATE, path attributes, AFI/SAFI.
//! - [`notification`]: NOTIFICATION and its error codes; [`error`]: decode outcomes.
//! - [`keepalive`], [`route_refresh`]: the two small messages.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;

pub mod attributes;
pub mod capability;
pub mod error;
pub mod family;
pub mod header;
pub mod keepalive;
mod nlri;
pub mod notification;
pub mod open;
mod reader;
pub mod route_refresh;
pub mod update;

pub use attributes::{
    Aggregator, AsPath, AsSegment, AttributeFlags, Community, LargeCommunity, MpReach, MpUnreach,
    NextHop, Origin, PathAttributes, Prefixes, RawAttribute, SegmentType,
};
pub use capability::{Capability, ExtendedNextHop, GracefulRestart, GracefulRestartFamily};
pub use error::{AttributeError, EmitError, Error, ErrorAction};
pub use family::{Afi, Family, Safi};
pub use header::{HEADER_LEN, Header, MAX_MESSAGE_LEN, MessageType};
pub use keepalive::KEEPALIVE;
pub use notification::{ErrorCode, Notification};
pub use open::{AS_TRANS, Open};
pub use route_refresh::{RefreshSubtype, RouteRefresh};
pub use update::Update;

use notification::HeaderError;

/// What the session negotiated that changes how UPDATEs are encoded and
/// decoded. The same context is used in both directions.
///
/// ADD-PATH (RFC 7911) is never negotiated, so NLRI carry no path identifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecodeContext {
    /// Both sides sent the 4-octet AS capability (RFC 6793): AS_PATH and
    /// AGGREGATOR carry four-octet AS numbers.
    pub four_octet_as: bool,
    /// Families both sides announced with the multiprotocol capability
    /// (RFC 4760 §8); MP_REACH_NLRI / MP_UNREACH_NLRI of other families are
    /// discarded. The UPDATE's own NLRI fields are always decoded as IPv4
    /// unicast.
    pub families: BTreeSet<Family>,
    /// Families whose MP_REACH_NLRI may carry an IPv6 next hop (RFC 8950),
    /// i.e. IPv4 unicast when the extended next hop capability was exchanged.
    pub extended_next_hop: BTreeSet<Family>,
}

impl DecodeContext {
    /// A context with 4-octet AS numbers set as given and `families` negotiated.
    pub fn new(four_octet_as: bool, families: impl IntoIterator<Item = Family>) -> DecodeContext {
        DecodeContext {
            four_octet_as,
            families: families.into_iter().collect(),
            extended_next_hop: BTreeSet::new(),
        }
    }
}

/// One BGP message.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE (boxed: it is much larger than the other messages).
    Update(Box<Update>),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// The message type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Parse one whole message. `buf` must hold exactly the octets the
    /// header's Length field announces (read the header first with
    /// [`Header::parse`] to frame a stream); any other size is a Bad Message
    /// Length (1/2).
    pub fn parse(buf: &[u8], ctx: &DecodeContext) -> Result<Message, Error> {
        let header = Header::parse(buf)?;
        if usize::from(header.length) != buf.len() {
            return Err(Error::header(
                HeaderError::BadMessageLength,
                header.length.to_be_bytes().to_vec(),
            ));
        }
        let body = &buf[HEADER_LEN..];
        Ok(match header.kind {
            MessageType::Open => Message::Open(Open::parse(body)?),
            MessageType::Update => Message::Update(Box::new(Update::parse(body, ctx)?)),
            MessageType::Notification => {
                let bad_length = || {
                    Error::header(
                        HeaderError::BadMessageLength,
                        header.length.to_be_bytes().to_vec(),
                    )
                };
                Message::Notification(Notification::parse(body).ok_or_else(bad_length)?)
            }
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => Message::RouteRefresh(RouteRefresh::parse(body)?),
        })
    }

    /// Append the whole message, header included, to `buf`, encoded for a
    /// session negotiated as `ctx`. On error `buf` is left as it was.
    pub fn emit(&self, ctx: &DecodeContext, buf: &mut Vec<u8>) -> Result<(), EmitError> {
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        let body = match self {
            Message::Open(open) => open.emit(buf),
            Message::Update(update) => update.emit(ctx, buf),
            Message::Notification(n) => {
                n.emit(buf);
                Ok(())
            }
            Message::Keepalive => Ok(()),
            Message::RouteRefresh(rr) => {
                rr.emit(buf);
                Ok(())
            }
        };
        let len = buf.len() - start;
        let checked = body.and_then(|()| {
            u16::try_from(len)
                .ok()
                .filter(|&l| usize::from(l) <= MAX_MESSAGE_LEN)
                .ok_or(EmitError::MessageTooLong { len })
        });
        match checked {
            Ok(length) => {
                let header = Header {
                    length,
                    kind: self.kind(),
                };
                buf[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
                Ok(())
            }
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }

    /// The message as a new buffer; see [`Message::emit`].
    pub fn to_bytes(&self, ctx: &DecodeContext) -> Result<Vec<u8>, EmitError> {
        let mut buf = Vec::new();
        self.emit(ctx, &mut buf)?;
        Ok(buf)
    }
}
