//! The simulator's lab files from arbitrary text: `topology.yaml`,
//! `scenario.yaml`, `values.yaml` and Kubernetes/Cilium manifests. The
//! first byte picks the file; the rest is its text. Must hold: no panic;
//! a refusal is an error naming the file (and, where the text had lines,
//! a line within it).
//!
//! Run from the workspace root:
//! `cargo +nightly fuzz run lab_files fuzz/corpus/lab_files fuzz/seeds/lab_files -- -max_total_time=600`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nexthop_sim::lab::error::LabError;
use nexthop_sim::lab::{Scenario, Topology, Values, kube};

/// Lines as YAML counts them: `\n`, `\r\n` and a lone `\r` each end one.
fn yaml_lines(text: &str) -> usize {
    text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 1
}

/// The refusal names `name` and a line no later than the text's last.
fn named(e: &LabError, name: &str, text: &str) {
    let shown = e.to_string();
    assert!(shown.contains(name), "{shown}");
    if let Some(line) = e.line {
        assert!(line <= yaml_lines(text) + 1, "line {line}: {shown}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            if let Err(e) = Topology::parse(Path::new("topology.yaml"), text) {
                named(&e, "topology.yaml", text);
            }
        }
        1 => {
            if let Err(e) = Scenario::parse(Path::new("scenario.yaml"), text) {
                named(&e, "scenario.yaml", text);
            }
        }
        2 => {
            if let Err(e) = Values::parse(Path::new("values.yaml"), text) {
                named(&e, "values.yaml", text);
            }
        }
        _ => {
            if let Err(e) = kube::parse(Path::new("k8s/objects.yaml"), text) {
                named(&e, "k8s/objects.yaml", text);
            }
        }
    }
});
