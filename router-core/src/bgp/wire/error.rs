//! What the decoder reports about malformed input, and why an encoder refused.
//!
//! RFC 4271 §6 answers every error with a NOTIFICATION and a session reset;
//! RFC 7606 softens that for UPDATE path attributes. A decode either fails
//! with an [`Error`] (send its NOTIFICATION, close the session) or succeeds,
//! and a decoded UPDATE lists the [`AttributeError`]s it recovered from, each
//! with the [`ErrorAction`] the session must take.

use alloc::vec::Vec;
use core::fmt;

use super::notification::{ErrorCode, HeaderError, Notification, OpenError, UpdateError};

/// A message that cannot be accepted: the session sends this NOTIFICATION
/// and closes ("session reset", RFC 7606 §2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    /// The NOTIFICATION to send.
    pub notification: Notification,
}

impl Error {
    /// An error answered by `code` with diagnostic `data`.
    pub fn new(code: ErrorCode, data: Vec<u8>) -> Error {
        Error {
            notification: Notification::new(code, data),
        }
    }

    /// A Message Header Error (code 1).
    pub fn header(subcode: HeaderError, data: Vec<u8>) -> Error {
        Error::new(ErrorCode::MessageHeader(subcode), data)
    }

    /// An OPEN Message Error (code 2).
    pub fn open(subcode: OpenError, data: Vec<u8>) -> Error {
        Error::new(ErrorCode::Open(subcode), data)
    }

    /// An UPDATE Message Error (code 3).
    pub fn update(subcode: UpdateError, data: Vec<u8>) -> Error {
        Error::new(ErrorCode::Update(subcode), data)
    }

    /// The error code and subcode to send.
    pub fn code(&self) -> ErrorCode {
        self.notification.code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.notification.code;
        write!(
            f,
            "malformed BGP message: NOTIFICATION {}/{} ({:?})",
            code.code(),
            code.subcode(),
            code
        )
    }
}

/// How a session recovers from a malformed UPDATE attribute (RFC 7606 §2).
/// The third approach, session reset, is a decode [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorAction {
    /// Drop the attribute and process the UPDATE without it.
    AttributeDiscard,
    /// Treat every prefix the UPDATE announces as withdrawn.
    TreatAsWithdraw,
}

/// One attribute problem an UPDATE was decoded past, for the session to act
/// on and log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttributeError {
    /// The attribute's type code (for a missing attribute, the one missing).
    pub type_code: u8,
    /// What the session must do.
    pub action: ErrorAction,
    /// The subcode RFC 4271 would have sent: the kind of problem.
    pub reason: UpdateError,
}

/// Why a representation could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitError {
    /// The message would exceed the 4096-octet limit of RFC 4271 §4.1.
    MessageTooLong {
        /// The length it would have had.
        len: usize,
    },
    /// A field is longer than its length field can express (a capability
    /// value over 255 octets, an AS_PATH segment over 255 ASes, ...).
    FieldTooLong,
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::MessageTooLong { len } => {
                write!(f, "BGP message of {len} octets exceeds 4096")
            }
            EmitError::FieldTooLong => f.write_str("BGP field too long for its length field"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn display_names_code_and_subcode() {
        let e = Error::update(UpdateError::MalformedAsPath, Vec::new());
        assert_eq!(e.code(), ErrorCode::Update(UpdateError::MalformedAsPath));
        assert!(format!("{e}").contains("3/11"));
        assert!(format!("{}", EmitError::MessageTooLong { len: 5000 }).contains("5000"));
    }
}
