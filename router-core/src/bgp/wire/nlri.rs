//! Prefix encoding in NLRI and Withdrawn Routes fields (RFC 4271 §4.3,
//! RFC 4760 §5 for IPv6): a length in bits followed by just enough octets to
//! hold it. ADD-PATH path identifiers are never expected (not negotiated).
//!
//! ```text
//! +---------------------------+
//! |   Length (1 octet)        |
//! +---------------------------+
//! |   Prefix (variable)       |
//! +---------------------------+
//! ```
//!
//! Decoding rejects a length over 32 (IPv4) or 128 (IPv6) and a prefix that
//! runs past the field; bits past the length are cleared.

use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::reader::Reader;

/// Read one prefix of at most `N * 8` bits.
fn prefix<const N: usize>(r: &mut Reader<'_>) -> Option<([u8; N], u8)> {
    let len = r.u8()?;
    if usize::from(len) > N * 8 {
        return None;
    }
    let octets = usize::from(len).div_ceil(8);
    let mut addr = [0u8; N];
    addr[..octets].copy_from_slice(r.take(octets)?);
    Some((addr, len))
}

/// Decode a whole field of IPv4 prefixes; `None` if any is malformed.
pub(crate) fn parse_ipv4(field: &[u8]) -> Option<Vec<Ipv4Net>> {
    let mut r = Reader::new(field);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (addr, len) = prefix::<4>(&mut r)?;
        out.push(Ipv4Net::new(Ipv4Addr::from(addr), len).ok()?.trunc());
    }
    Some(out)
}

/// Decode a whole field of IPv6 prefixes; `None` if any is malformed.
pub(crate) fn parse_ipv6(field: &[u8]) -> Option<Vec<Ipv6Net>> {
    let mut r = Reader::new(field);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (addr, len) = prefix::<16>(&mut r)?;
        out.push(Ipv6Net::new(Ipv6Addr::from(addr), len).ok()?.trunc());
    }
    Some(out)
}

fn emit_prefix(octets: &[u8], len: u8, buf: &mut Vec<u8>) {
    buf.push(len);
    buf.extend_from_slice(&octets[..usize::from(len).div_ceil(8)]);
}

/// Append IPv4 prefixes, host bits cleared.
pub(crate) fn emit_ipv4(prefixes: &[Ipv4Net], buf: &mut Vec<u8>) {
    for p in prefixes {
        emit_prefix(&p.trunc().addr().octets(), p.prefix_len(), buf);
    }
}

/// Append IPv6 prefixes, host bits cleared.
pub(crate) fn emit_ipv6(prefixes: &[Ipv6Net], buf: &mut Vec<u8>) {
    for p in prefixes {
        emit_prefix(&p.trunc().addr().octets(), p.prefix_len(), buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn golden_ipv4() {
        let nets: Vec<Ipv4Net> = vec![
            "10.1.0.0/16".parse().unwrap(),
            "0.0.0.0/0".parse().unwrap(),
            "192.0.2.1/32".parse().unwrap(),
            "172.16.128.0/17".parse().unwrap(),
        ];
        let mut buf = Vec::new();
        emit_ipv4(&nets, &mut buf);
        assert_eq!(buf, [16, 10, 1, 0, 32, 192, 0, 2, 1, 17, 172, 16, 128]);
        assert_eq!(parse_ipv4(&buf), Some(nets));
    }

    #[test]
    fn golden_ipv6() {
        let nets: Vec<Ipv6Net> = vec!["2001:db8::/32".parse().unwrap(), "::/0".parse().unwrap()];
        let mut buf = Vec::new();
        emit_ipv6(&nets, &mut buf);
        assert_eq!(buf, [32, 0x20, 0x01, 0x0d, 0xb8, 0]);
        assert_eq!(parse_ipv6(&buf), Some(nets));
    }

    #[test]
    fn host_bits_are_cleared() {
        // /9 whose second octet has bits past the length set.
        assert_eq!(
            parse_ipv4(&[9, 10, 0xff]),
            Some(vec!["10.128.0.0/9".parse().unwrap()])
        );
        let mut buf = Vec::new();
        emit_ipv4(&["10.255.1.2/9".parse().unwrap()], &mut buf);
        assert_eq!(buf, [9, 10, 0x80]);
    }

    #[test]
    fn malformed() {
        assert_eq!(parse_ipv4(&[33, 1, 2, 3, 4, 5]), None);
        assert_eq!(parse_ipv4(&[24, 10, 0]), None);
        assert_eq!(parse_ipv6(&[129; 17]), None);
        assert_eq!(parse_ipv6(&[64, 0x20, 0x01]), None);
        assert_eq!(parse_ipv4(&[]), Some(vec![]));
    }
}
