//! ROUTE-REFRESH (RFC 2918 §3) with the message subtypes of enhanced route
//! refresh (RFC 7313 §3.2). Outbound route filtering (RFC 5291) is not
//! negotiated, so the body is always four octets.

use alloc::vec::Vec;

use super::error::Error;
use super::family::Family;
use super::notification::{ErrorCode, RouteRefreshError};

/// The ROUTE-REFRESH Message Subtype (RFC 7313 §3.2), "Reserved" in RFC 2918.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefreshSubtype {
    /// 0: a plain route refresh request.
    Request,
    /// 1: Beginning of Route Refresh (BoRR).
    Begin,
    /// 2: End of Route Refresh (EoRR).
    End,
    /// Any other value; RFC 7313 says to ignore such messages.
    Unknown(u8),
}

impl From<u8> for RefreshSubtype {
    fn from(value: u8) -> Self {
        match value {
            0 => RefreshSubtype::Request,
            1 => RefreshSubtype::Begin,
            2 => RefreshSubtype::End,
            other => RefreshSubtype::Unknown(other),
        }
    }
}

impl From<RefreshSubtype> for u8 {
    fn from(subtype: RefreshSubtype) -> u8 {
        match subtype {
            RefreshSubtype::Request => 0,
            RefreshSubtype::Begin => 1,
            RefreshSubtype::End => 2,
            RefreshSubtype::Unknown(other) => other,
        }
    }
}

/// A ROUTE-REFRESH message body.
///
/// ```text
///  0       7      15      23      31
/// +-------+-------+-------+-------+
/// |      AFI      |Subtype| SAFI  |
/// +-------+-------+-------+-------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteRefresh {
    /// The family to refresh.
    pub family: Family,
    /// Request, or the start or end of a refresh.
    pub subtype: RefreshSubtype,
}

impl RouteRefresh {
    /// A plain request to resend the routes of `family`.
    pub fn request(family: Family) -> RouteRefresh {
        RouteRefresh {
            family,
            subtype: RefreshSubtype::Request,
        }
    }

    /// Parse a ROUTE-REFRESH body. Any length other than four octets is a
    /// ROUTE-REFRESH Message Error / Invalid Message Length (7/1, RFC 7313
    /// §5), with the body as data.
    pub fn parse(body: &[u8]) -> Result<RouteRefresh, Error> {
        let &[a0, a1, subtype, safi] = body else {
            return Err(Error::new(
                ErrorCode::RouteRefresh(RouteRefreshError::InvalidMessageLength),
                body.to_vec(),
            ));
        };
        Ok(RouteRefresh {
            family: Family::new(u16::from_be_bytes([a0, a1]), safi),
            subtype: subtype.into(),
        })
    }

    /// Append the body to `buf`.
    pub fn emit(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&u16::from(self.family.afi).to_be_bytes());
        buf.push(self.subtype.into());
        buf.push(self.family.safi.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn golden() {
        let rr = RouteRefresh::request(Family::IPV6_UNICAST);
        let mut buf = Vec::new();
        rr.emit(&mut buf);
        assert_eq!(buf, [0, 2, 0, 1]);
        assert_eq!(RouteRefresh::parse(&buf), Ok(rr));
        let eorr = RouteRefresh::parse(&[0, 1, 2, 1]).unwrap();
        assert_eq!(eorr.subtype, RefreshSubtype::End);
        assert_eq!(
            RouteRefresh::parse(&[0, 1, 255, 1]).unwrap().subtype,
            RefreshSubtype::Unknown(255)
        );
    }

    #[test]
    fn wrong_length() {
        let e = RouteRefresh::parse(&[0, 1, 1, 1, 0]).unwrap_err();
        assert_eq!(
            e.code(),
            ErrorCode::RouteRefresh(RouteRefreshError::InvalidMessageLength)
        );
        assert_eq!(e.notification.data, vec![0, 1, 1, 1, 0]);
    }
}
