//! The fixed message header (RFC 4271 §4.1) and its checks (§6.1): the
//! marker, the Length field against the limits for each message type, and
//! the Type field. A transport reads the header first to learn how many
//! octets the message has.

use alloc::vec::Vec;

use super::error::Error;
use super::notification::HeaderError;
use super::reader::Reader;

/// The marker: sixteen octets of ones.
pub const MARKER: [u8; 16] = [0xff; 16];
/// Length of the header, and of a KEEPALIVE.
pub const HEADER_LEN: usize = 19;
/// The largest message RFC 4271 allows.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The message Type field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageType {
    /// 1: OPEN (RFC 4271 §4.2).
    Open,
    /// 2: UPDATE (RFC 4271 §4.3).
    Update,
    /// 3: NOTIFICATION (RFC 4271 §4.5).
    Notification,
    /// 4: KEEPALIVE (RFC 4271 §4.4).
    Keepalive,
    /// 5: ROUTE-REFRESH (RFC 2918 §3).
    RouteRefresh,
}

impl MessageType {
    /// The type for a Type field, if known.
    pub fn from_u8(value: u8) -> Option<MessageType> {
        Some(match value {
            1 => MessageType::Open,
            2 => MessageType::Update,
            3 => MessageType::Notification,
            4 => MessageType::Keepalive,
            5 => MessageType::RouteRefresh,
            _ => return None,
        })
    }

    /// The Type field value.
    pub fn to_u8(self) -> u8 {
        match self {
            MessageType::Open => 1,
            MessageType::Update => 2,
            MessageType::Notification => 3,
            MessageType::Keepalive => 4,
            MessageType::RouteRefresh => 5,
        }
    }

    /// The smallest and largest total length for this type (RFC 4271 §6.1).
    fn length_bounds(self) -> (usize, usize) {
        match self {
            MessageType::Open => (29, MAX_MESSAGE_LEN),
            MessageType::Update => (23, MAX_MESSAGE_LEN),
            MessageType::Notification => (21, MAX_MESSAGE_LEN),
            MessageType::Keepalive => (HEADER_LEN, HEADER_LEN),
            MessageType::RouteRefresh => (23, MAX_MESSAGE_LEN),
        }
    }
}

/// The message header.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +                                                               +
/// |                           Marker                              |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Length               |      Type     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Total message length, header included.
    pub length: u16,
    /// Message type.
    pub kind: MessageType,
}

impl Header {
    /// Parse and check the header at the start of `buf`, which must hold at
    /// least [`HEADER_LEN`] octets (fewer is a Bad Message Length).
    ///
    /// Checks, in this order: marker (1/1), Length within 19..=4096 (1/2,
    /// data: the Length field), Type (1/3, data: the Type field), Length
    /// within the bounds for the type (1/2).
    pub fn parse(buf: &[u8]) -> Result<Header, Error> {
        let mut r = Reader::new(buf);
        let (Some(marker), Some(length), Some(kind)) = (r.take(16), r.u16(), r.u8()) else {
            return Err(Error::header(HeaderError::BadMessageLength, Vec::new()));
        };
        if marker != MARKER {
            return Err(Error::header(
                HeaderError::ConnectionNotSynchronized,
                Vec::new(),
            ));
        }
        let bad_length =
            || Error::header(HeaderError::BadMessageLength, length.to_be_bytes().into());
        let len = usize::from(length);
        if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
            return Err(bad_length());
        }
        let Some(kind) = MessageType::from_u8(kind) else {
            return Err(Error::header(HeaderError::BadMessageType, [kind].into()));
        };
        let (min, max) = kind.length_bounds();
        if !(min..=max).contains(&len) {
            return Err(bad_length());
        }
        Ok(Header { length, kind })
    }

    /// The header's octets.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0xff; HEADER_LEN];
        out[16..18].copy_from_slice(&self.length.to_be_bytes());
        out[18] = self.kind.to_u8();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::notification::ErrorCode;
    use alloc::vec;

    fn header(length: u16, kind: u8) -> Vec<u8> {
        let mut b = MARKER.to_vec();
        b.extend_from_slice(&length.to_be_bytes());
        b.push(kind);
        b
    }

    fn code(e: Error) -> (ErrorCode, Vec<u8>) {
        (e.notification.code, e.notification.data)
    }

    #[test]
    fn keepalive_header_golden() {
        let h = Header {
            length: 19,
            kind: MessageType::Keepalive,
        };
        let buf = h.to_bytes();
        assert_eq!(buf.to_vec(), header(19, 4));
        assert_eq!(Header::parse(&buf), Ok(h));
    }

    #[test]
    fn marker_not_all_ones() {
        let mut b = header(19, 4);
        b[3] = 0;
        assert_eq!(
            code(Header::parse(&b).unwrap_err()),
            (
                ErrorCode::MessageHeader(HeaderError::ConnectionNotSynchronized),
                vec![]
            )
        );
    }

    #[test]
    fn lengths_out_of_range() {
        let bad = |len: u16, kind: u8| {
            assert_eq!(
                code(Header::parse(&header(len, kind)).unwrap_err()),
                (
                    ErrorCode::MessageHeader(HeaderError::BadMessageLength),
                    len.to_be_bytes().to_vec()
                ),
                "length {len} type {kind}"
            );
        };
        bad(18, 4);
        bad(4097, 2);
        bad(20, 4);
        bad(28, 1);
        bad(22, 2);
        bad(20, 3);
        bad(22, 5);
        for (len, kind) in [(29, 1), (23, 2), (21, 3), (19, 4), (23, 5), (4096, 2)] {
            assert!(Header::parse(&header(len, kind)).is_ok());
        }
    }

    #[test]
    fn unknown_type() {
        assert_eq!(
            code(Header::parse(&header(19, 6)).unwrap_err()),
            (
                ErrorCode::MessageHeader(HeaderError::BadMessageType),
                vec![6]
            )
        );
    }

    #[test]
    fn short_buffer() {
        assert_eq!(
            code(Header::parse(&MARKER).unwrap_err()).0,
            ErrorCode::MessageHeader(HeaderError::BadMessageLength)
        );
    }
}
