//! Parse arbitrary bytes as VXLAN and Geneve headers and as an ARP and a
//! neighbour discovery frame: the parsers must never panic, a parsed Geneve
//! header's options must lie inside the buffer, and what the datapath
//! answers itself the full NDP responder answers too.
//!
//! Run from the workspace root: `cargo +nightly fuzz run tunnel_headers -- -max_total_time=60`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router_core::PortId;
use router_core::neighbour::{arp, ndp};
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
    let v6 = ndp::PortAddrsV6 {
        owned: vec!["fd00::1".parse().expect("valid")],
        announced: vec!["fd00::211".parse().expect("valid")],
    };
    let mac = smoltcp::wire::EthernetAddress([2, 0, 0, 0, 0, 1]);
    let verdict = ndp::respond(PortId(0), mac, &v6, data);
    if ndp::datapath_answers_shape(data) && verdict.reply.is_ok() {
        assert_eq!(ndp::message_type(data), Some(135));
    }
});
