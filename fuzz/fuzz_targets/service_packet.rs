//! Read arbitrary bytes as an IP packet's service 5-tuple and rewrite it to
//! a tuple made of the input's last bytes: no panic; a rewritten packet
//! reads back as the new tuple; checksums that held before hold after
//! (the incremental updates equal a recomputation).
//!
//! Run from the workspace root: `cargo +nightly fuzz run service_packet -- -max_total_time=60`.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use router_core::service::packet;
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket};

/// Whether the IP packet's IPv4 header and transport checksums hold.
fn checksums_hold(ip: &[u8], parsed: &packet::Parsed) -> bool {
    let (src, dst) = (
        IpAddress::from(parsed.tuple.src),
        IpAddress::from(parsed.tuple.dst),
    );
    let (header_ok, payload) = match parsed.tuple.src {
        IpAddr::V4(_) => {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                return false;
            };
            (p.verify_checksum(), p.payload().to_vec())
        }
        IpAddr::V6(_) => {
            let Ok(p) = Ipv6Packet::new_checked(ip) else {
                return false;
            };
            (true, p.payload().to_vec())
        }
    };
    let transport_ok = match parsed.tuple.protocol {
        router_core::service::Protocol::Tcp => TcpPacket::new_checked(&payload[..])
            .is_ok_and(|t| t.verify_checksum(&src, &dst)),
        _ => UdpPacket::new_checked(&payload[..]).is_ok_and(|u| {
            u.checksum() == 0 && parsed.tuple.src.is_ipv4() || u.verify_checksum(&src, &dst)
        }),
    };
    header_ok && transport_ok
}

fuzz_target!(|data: &[u8]| {
    let Some(parsed) = packet::parse(data) else {
        return;
    };
    let mut to = parsed.tuple;
    let tail: Vec<u8> = data.iter().rev().take(36).copied().collect();
    if tail.len() == 36 {
        let mut v6 = [0u8; 16];
        v6.copy_from_slice(&tail[..16]);
        let mut w6 = [0u8; 16];
        w6.copy_from_slice(&tail[16..32]);
        (to.src, to.dst) = match to.src {
            IpAddr::V4(_) => (
                IpAddr::V4(Ipv4Addr::new(v6[0], v6[1], v6[2], v6[3])),
                IpAddr::V4(Ipv4Addr::new(w6[0], w6[1], w6[2], w6[3])),
            ),
            IpAddr::V6(_) => (IpAddr::V6(Ipv6Addr::from(v6)), IpAddr::V6(Ipv6Addr::from(w6))),
        };
        to.src_port = u16::from_be_bytes([tail[32], tail[33]]);
        to.dst_port = u16::from_be_bytes([tail[34], tail[35]]);
    }
    let held = checksums_hold(data, &parsed);
    let mut rewritten = data.to_vec();
    assert!(packet::rewrite(&mut rewritten[..], &parsed, &to));
    let again = packet::parse(&rewritten[..]).expect("still a service packet");
    assert_eq!(again.tuple, to);
    if held {
        assert!(checksums_hold(&rewritten, &again), "checksums broke");
    }
});
