//! The agent's readers of iproute2's JSON output (`ip -json addr|route|neigh
//! show`) from arbitrary text; the first byte picks the reader. Must hold: no
//! panic; a refusal names the command it read; routes and local addresses
//! are of the family asked for.
//!
//! Run from the workspace root:
//! `cargo +nightly fuzz run ip_json fuzz/corpus/ip_json fuzz/seeds/ip_json -- -max_total_time=600`.
#![no_main]

// The agent's own parsing module, built on its own: the agent crate's build
// compiles the eBPF object, which a sanitizer build does not survive.
#[path = "../../nodeagent/src/kernel/iproute.rs"]
mod iproute;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let named = |e: String| assert!(e.starts_with("ip -json "), "unnamed refusal: {e}");
    let family = |v6: bool, a: std::net::IpAddr| a.is_ipv6() == v6;
    match kind % 6 {
        0 => {
            if let Err(e) = iproute::parse_links(text) {
                named(e);
            }
        }
        k @ (1 | 2) => match iproute::parse_routes(text, k == 2) {
            Ok(routes) => assert!(routes.iter().all(|r| family(k == 2, r.prefix.addr()))),
            Err(e) => named(e),
        },
        k @ (3 | 4) => match iproute::parse_local(text, k == 4) {
            Ok(addrs) => assert!(addrs.iter().all(|&a| family(k == 4, a))),
            Err(e) => named(e),
        },
        _ => {
            if let Err(e) = iproute::parse_neighbours(text) {
                named(e);
            }
        }
    }
});
