//! Fault campaigns over every bundled lab: `nexthop-sim explore` with every
//! kind of fault, `NEXTHOP_EXPLORE_RUNS` runs per lab (default 200), no
//! invariant may break. Prints each lab's summary row (runs per second,
//! faults injected, checks made).

use std::path::Path;

use nexthop_sim::explore::{self, FaultKind, Options};
use nexthop_sim::lab::Lab;
use smoltcp::time::Duration;

fn runs() -> u32 {
    std::env::var("NEXTHOP_EXPLORE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn every_bundled_lab_survives_a_fault_campaign() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs");
    let mut labs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("topology.yaml").exists())
        .collect();
    labs.sort();
    assert!(labs.len() >= 8, "{labs:?}");
    let mut failed = String::new();
    let mut header = true;
    for dir in labs {
        let lab = Lab::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let opts = Options {
            runs: runs(),
            seed: 1,
            lab_seed: lab.scenario.seed.unwrap_or(1),
            faults: FaultKind::ALL.to_vec(),
            max_faults: 3,
            jobs: 2,
            quiet: Duration::from_secs(300),
        };
        let started = std::time::Instant::now();
        let summary = explore::explore(&lab, &opts, |_, _| {})
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let table = summary.table(started.elapsed().as_secs_f64());
        let mut lines = table.lines();
        let head = lines.next().unwrap_or_default();
        if header {
            eprintln!("{head}");
            header = false;
        }
        for l in lines {
            eprintln!("{l}");
        }
        assert_eq!(summary.runs, opts.runs);
        failed += &summary.failures();
    }
    assert!(failed.is_empty(), "{failed}");
}
