//! KEEPALIVE (RFC 4271 §4.4): a header with no body, sent to keep the hold
//! timer from expiring. The header check ([`super::header::Header::parse`])
//! already rejects a KEEPALIVE of any other length with Bad Message Length.

use super::header::{HEADER_LEN, MARKER};

/// A complete KEEPALIVE message.
///
/// ```text
/// +---------------------------------------------------------------+
/// |                    Marker (16 octets of 0xff)                 |
/// +-------------------------------+---------------+---------------+
/// |         Length = 19           |   Type = 4    |
/// +-------------------------------+---------------+
/// ```
pub const KEEPALIVE: [u8; HEADER_LEN] = {
    let mut msg = [0u8; HEADER_LEN];
    let mut i = 0;
    while i < MARKER.len() {
        msg[i] = MARKER[i];
        i += 1;
    }
    msg[17] = HEADER_LEN as u8;
    msg[18] = 4;
    msg
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::header::{Header, MessageType};

    #[test]
    fn keepalive_bytes() {
        assert_eq!(&KEEPALIVE[..16], &[0xff; 16]);
        assert_eq!(&KEEPALIVE[16..], &[0, 19, 4]);
        assert_eq!(
            Header::parse(&KEEPALIVE).unwrap(),
            Header {
                length: 19,
                kind: MessageType::Keepalive
            }
        );
    }
}
