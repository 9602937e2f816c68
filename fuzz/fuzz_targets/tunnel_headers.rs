//! Parse arbitrary bytes as VXLAN and Geneve headers and as an ARP frame: the
//! parsers must never panic, and a parsed Geneve header's options must lie
//! inside the buffer.
//!
//! Run from the workspace root: `cargo +nightly fuzz run tunnel_headers -- -max_total_time=60`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router_core::PortId;
use router_core::neighbour::arp;
use router_core::wire::{geneve, vxlan};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = vxlan::Header::new_checked(data) {
        let _ = vxlan::Repr::parse(&h);
        assert_eq!(h.payload().len(), data.len() - vxlan::HEADER_LEN);
    }
    if let Ok(h) = geneve::Header::new_checked(data) {
        assert!(h.header_len() <= data.len());
        let _ = geneve::Repr::parse(&h);
        let _ = h.has_critical_option();
    }
    let addrs = arp::PortAddrs {
        owned: vec!["192.168.10.100".parse().expect("valid")],
        ..arp::PortAddrs::default()
    };
    let _ = arp::respond(PortId(0), &addrs, data);
});
