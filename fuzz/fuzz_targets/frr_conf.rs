//! The simulator's FRR configuration subset (`frr.conf`) from arbitrary
//! text. Must hold: no panic; a refusal names a line of the text; what
//! parses is a configuration bgpd can be started with (its `router bgp`
//! block, if any, has an AS).
//!
//! Run from the workspace root:
//! `cargo +nightly fuzz run frr_conf fuzz/corpus/frr_conf fuzz/seeds/frr_conf -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexthop_sim::frr::config::FrrConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match FrrConfig::parse(text) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            assert!(e.line >= 1 && e.line <= lines + 1, "line {} of {lines}: {e}", e.line);
        }
    }
});
