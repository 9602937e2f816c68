//! NOTIFICATION (RFC 4271 §4.5): the error a speaker reports before it closes
//! the session, with the error codes and subcodes of RFC 4271 §4.5 and §6 and
//! the later registrations (RFC 4486, RFC 5492, RFC 6608, RFC 7313, RFC 8538).
//!
//! Also owns the Shutdown Communication of RFC 8203 carried by the Cease
//! subcodes Administrative Shutdown and Administrative Reset.

use alloc::string::String;
use alloc::vec::Vec;

use super::reader::Reader;

/// Declares a one-octet subcode enum that keeps values it does not name.
macro_rules! subcode_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A subcode this codec does not name.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(subcode: $name) -> u8 {
                match subcode {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

subcode_enum! {
    /// Subcodes of Message Header Error (code 1, RFC 4271 §6.1).
    pub enum HeaderError {
        /// 0: no specific subcode.
        Unspecific = 0,
        /// 1: the marker is not all ones.
        ConnectionNotSynchronized = 1,
        /// 2: the Length field is out of range for the message (data: the Length field).
        BadMessageLength = 2,
        /// 3: the Type field is not known (data: the Type field).
        BadMessageType = 3,
    }
}

subcode_enum! {
    /// Subcodes of OPEN Message Error (code 2, RFC 4271 §6.2, RFC 5492).
    pub enum OpenError {
        /// 0: no specific subcode.
        Unspecific = 0,
        /// 1: the version is not 4 (data: the highest supported version, two octets).
        UnsupportedVersionNumber = 1,
        /// 2: the peer's AS is not the configured one, or is 0 (RFC 7607).
        BadPeerAs = 2,
        /// 3: the BGP Identifier is not acceptable (e.g. 0, RFC 6286).
        BadBgpIdentifier = 3,
        /// 4: an optional parameter other than Capabilities.
        UnsupportedOptionalParameter = 4,
        /// 6: a Hold Time of one or two seconds, or one refused by local policy.
        UnacceptableHoldTime = 6,
        /// 7: a capability the local speaker requires is missing (RFC 5492).
        UnsupportedCapability = 7,
    }
}

subcode_enum! {
    /// Subcodes of UPDATE Message Error (code 3, RFC 4271 §6.3).
    pub enum UpdateError {
        /// 0: no specific subcode.
        Unspecific = 0,
        /// 1: the lengths of the fields or attributes do not add up, or an
        /// attribute that must appear once appears twice.
        MalformedAttributeList = 1,
        /// 2: a well-known attribute this speaker does not know (data: the attribute).
        UnrecognizedWellKnownAttribute = 2,
        /// 3: a well-known mandatory attribute is missing (data: its type code).
        MissingWellKnownAttribute = 3,
        /// 4: the Optional or Transitive flag conflicts with the type code.
        AttributeFlagsError = 4,
        /// 5: the attribute length does not fit the type code.
        AttributeLengthError = 5,
        /// 6: ORIGIN has an undefined value.
        InvalidOriginAttribute = 6,
        /// 8: NEXT_HOP is syntactically incorrect.
        InvalidNextHopAttribute = 8,
        /// 9: an optional attribute is malformed (data: the attribute).
        OptionalAttributeError = 9,
        /// 10: the NLRI or Withdrawn Routes field is syntactically incorrect.
        InvalidNetworkField = 10,
        /// 11: AS_PATH is syntactically incorrect.
        MalformedAsPath = 11,
    }
}

subcode_enum! {
    /// Subcodes of Finite State Machine Error (code 5, RFC 6608).
    pub enum FsmError {
        /// 0: no specific subcode.
        Unspecific = 0,
        /// 1: a message other than OPEN or NOTIFICATION in OpenSent.
        UnexpectedInOpenSent = 1,
        /// 2: a message other than KEEPALIVE or NOTIFICATION in OpenConfirm.
        UnexpectedInOpenConfirm = 2,
        /// 3: an OPEN in Established.
        UnexpectedInEstablished = 3,
    }
}

subcode_enum! {
    /// Subcodes of Cease (code 6, RFC 4486, RFC 8538, RFC 9384).
    pub enum Cease {
        /// 0: no specific subcode.
        Unspecific = 0,
        /// 1: the peer sent more prefixes than allowed.
        MaximumPrefixesReached = 1,
        /// 2: the session was shut down by the operator (RFC 8203 message).
        AdministrativeShutdown = 2,
        /// 3: the peer was removed from the configuration.
        PeerDeconfigured = 3,
        /// 4: the session was reset by the operator (RFC 8203 message).
        AdministrativeReset = 4,
        /// 5: the connection was refused.
        ConnectionRejected = 5,
        /// 6: another configuration change requires a reset.
        OtherConfigurationChange = 6,
        /// 7: this connection lost connection collision resolution.
        ConnectionCollisionResolution = 7,
        /// 8: the speaker ran out of resources.
        OutOfResources = 8,
        /// 9: graceful restart must not be used for this reset (RFC 8538).
        HardReset = 9,
        /// 10: BFD declared the peer down (RFC 9384).
        BfdDown = 10,
    }
}

subcode_enum! {
    /// Subcodes of ROUTE-REFRESH Message Error (code 7, RFC 7313).
    pub enum RouteRefreshError {
        /// 0: reserved.
        Reserved = 0,
        /// 1: a ROUTE-REFRESH whose length is wrong for its subtype (data: the message).
        InvalidMessageLength = 1,
    }
}

/// The error code and subcode of a NOTIFICATION.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorCode {
    /// 1: Message Header Error.
    MessageHeader(HeaderError),
    /// 2: OPEN Message Error.
    Open(OpenError),
    /// 3: UPDATE Message Error.
    Update(UpdateError),
    /// 4: Hold Timer Expired (subcode 0).
    HoldTimerExpired,
    /// 5: Finite State Machine Error.
    Fsm(FsmError),
    /// 6: Cease.
    Cease(Cease),
    /// 7: ROUTE-REFRESH Message Error.
    RouteRefresh(RouteRefreshError),
    /// Any other pair, including Hold Timer Expired with a non-zero subcode.
    Unknown {
        /// The error code.
        code: u8,
        /// The error subcode.
        subcode: u8,
    },
}

impl ErrorCode {
    /// The code for wire values `code` and `subcode`.
    pub fn new(code: u8, subcode: u8) -> ErrorCode {
        match (code, subcode) {
            (1, s) => ErrorCode::MessageHeader(s.into()),
            (2, s) => ErrorCode::Open(s.into()),
            (3, s) => ErrorCode::Update(s.into()),
            (4, 0) => ErrorCode::HoldTimerExpired,
            (5, s) => ErrorCode::Fsm(s.into()),
            (6, s) => ErrorCode::Cease(s.into()),
            (7, s) => ErrorCode::RouteRefresh(s.into()),
            (code, subcode) => ErrorCode::Unknown { code, subcode },
        }
    }

    /// The Error Code octet.
    pub fn code(self) -> u8 {
        match self {
            ErrorCode::MessageHeader(_) => 1,
            ErrorCode::Open(_) => 2,
            ErrorCode::Update(_) => 3,
            ErrorCode::HoldTimerExpired => 4,
            ErrorCode::Fsm(_) => 5,
            ErrorCode::Cease(_) => 6,
            ErrorCode::RouteRefresh(_) => 7,
            ErrorCode::Unknown { code, .. } => code,
        }
    }

    /// The Error Subcode octet.
    pub fn subcode(self) -> u8 {
        match self {
            ErrorCode::MessageHeader(s) => s.into(),
            ErrorCode::Open(s) => s.into(),
            ErrorCode::Update(s) => s.into(),
            ErrorCode::HoldTimerExpired => 0,
            ErrorCode::Fsm(s) => s.into(),
            ErrorCode::Cease(s) => s.into(),
            ErrorCode::RouteRefresh(s) => s.into(),
            ErrorCode::Unknown { subcode, .. } => subcode,
        }
    }
}

/// A NOTIFICATION message body (RFC 4271 §4.5).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Error code    | Error subcode |   Data (variable)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code and subcode.
    pub code: ErrorCode,
    /// Diagnostic data, whose meaning depends on the code.
    pub data: Vec<u8>,
}

/// The longest RFC 8203 Shutdown Communication, in octets.
pub const MAX_SHUTDOWN_MESSAGE: usize = 255;

impl Notification {
    /// A NOTIFICATION with `code` and `data`.
    pub fn new(code: ErrorCode, data: Vec<u8>) -> Notification {
        Notification { code, data }
    }

    /// A Cease with subcode `subcode` carrying the Shutdown Communication
    /// `message` (RFC 8203 §2), cut at a character boundary to 255 octets.
    pub fn cease_with_message(subcode: Cease, message: &str) -> Notification {
        let mut end = message.len().min(MAX_SHUTDOWN_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = Vec::with_capacity(end + 1);
        data.push(end as u8);
        data.extend_from_slice(&message.as_bytes()[..end]);
        Notification::new(ErrorCode::Cease(subcode), data)
    }

    /// The Shutdown Communication of an Administrative Shutdown or Reset
    /// (RFC 8203), if the data holds a well-formed one. Invalid UTF-8 is
    /// replaced, as the RFC asks receivers to log what they can.
    pub fn shutdown_message(&self) -> Option<String> {
        if !matches!(
            self.code,
            ErrorCode::Cease(Cease::AdministrativeShutdown | Cease::AdministrativeReset)
        ) {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        Some(String::from_utf8_lossy(text).into_owned())
    }

    /// The message as logs and `bgp peers` show it: `4/0 Hold Timer
    /// Expired`, with the shutdown message when there is one.
    pub fn describe(&self) -> String {
        let code = self.code;
        let name = match code {
            ErrorCode::MessageHeader(s) => alloc::format!("Message Header Error / {s:?}"),
            ErrorCode::Open(s) => alloc::format!("OPEN Message Error / {s:?}"),
            ErrorCode::Update(s) => alloc::format!("UPDATE Message Error / {s:?}"),
            ErrorCode::HoldTimerExpired => "Hold Timer Expired".into(),
            ErrorCode::Fsm(s) => alloc::format!("Finite State Machine Error / {s:?}"),
            ErrorCode::Cease(s) => alloc::format!("Cease / {s:?}"),
            ErrorCode::RouteRefresh(s) => alloc::format!("ROUTE-REFRESH Message Error / {s:?}"),
            ErrorCode::Unknown { .. } => "unknown".into(),
        };
        let mut text = alloc::format!("{}/{} {name}", code.code(), code.subcode());
        if let Some(message) = self.shutdown_message() {
            text.push_str(&alloc::format!(" ({message:?})"));
        }
        text
    }

    /// Parse a NOTIFICATION body (the bytes after the header). Any code and
    /// subcode is accepted: a speaker never answers a NOTIFICATION.
    pub fn parse(body: &[u8]) -> Option<Notification> {
        let mut r = Reader::new(body);
        let code = r.u8()?;
        let subcode = r.u8()?;
        Some(Notification::new(
            ErrorCode::new(code, subcode),
            r.rest().to_vec(),
        ))
    }

    /// Append the body to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        buf.push(self.code.code());
        buf.push(self.code.subcode());
        buf.extend_from_slice(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn codes_round_trip_through_wire_values() {
        for code in 0..=8u8 {
            for subcode in 0..=12u8 {
                let c = ErrorCode::new(code, subcode);
                assert_eq!((c.code(), c.subcode()), (code, subcode));
            }
        }
        assert_eq!(ErrorCode::new(4, 0), ErrorCode::HoldTimerExpired);
        assert_eq!(
            ErrorCode::new(4, 1),
            ErrorCode::Unknown {
                code: 4,
                subcode: 1
            }
        );
        assert_eq!(
            ErrorCode::new(3, 11),
            ErrorCode::Update(UpdateError::MalformedAsPath)
        );
        assert_eq!(ErrorCode::new(6, 9), ErrorCode::Cease(Cease::HardReset));
    }

    #[test]
    fn golden_bad_message_length() {
        // RFC 4271 §6.1: 1/2 with the offending Length field as data.
        let n = Notification::new(
            ErrorCode::MessageHeader(HeaderError::BadMessageLength),
            vec![0x10, 0x01],
        );
        let mut buf = Vec::new();
        n.emit(&mut buf);
        assert_eq!(buf, [0x01, 0x02, 0x10, 0x01]);
        assert_eq!(Notification::parse(&buf), Some(n));
    }

    #[test]
    fn short_body_is_rejected() {
        assert_eq!(Notification::parse(&[]), None);
        assert_eq!(Notification::parse(&[6]), None);
    }

    #[test]
    fn shutdown_communication() {
        let n = Notification::cease_with_message(Cease::AdministrativeShutdown, "maintenance");
        assert_eq!(n.data[0], 11);
        assert_eq!(n.shutdown_message().as_deref(), Some("maintenance"));

        // Cut at 255 octets without splitting a character.
        let long = "é".repeat(200);
        let n = Notification::cease_with_message(Cease::AdministrativeReset, &long);
        assert_eq!(n.data[0], 254);
        assert_eq!(n.shutdown_message().unwrap().chars().count(), 127);

        // Length byte beyond the data: no message.
        let bad = Notification::new(
            ErrorCode::Cease(Cease::AdministrativeShutdown),
            vec![9, b'x'],
        );
        assert_eq!(bad.shutdown_message(), None);
        let other = Notification::new(ErrorCode::Cease(Cease::PeerDeconfigured), vec![1, b'x']);
        assert_eq!(other.shutdown_message(), None);
    }

    #[test]
    fn notifications_are_described_with_numbers_and_names() {
        let n = Notification::new(ErrorCode::HoldTimerExpired, Vec::new());
        assert_eq!(n.describe(), "4/0 Hold Timer Expired");
        let n = Notification::cease_with_message(Cease::AdministrativeShutdown, "bye");
        assert_eq!(n.describe(), "6/2 Cease / AdministrativeShutdown (\"bye\")");
    }
}
