//! L2 announcement failover on real nodes, wall clock
//! ([`nexthop_tests::l2lab`]: three agents with their XDP datapaths, leases
//! in etcd): the time from the leader's loss to the first ARP reply from the
//! new leader's port, for the leader's link going down and for `kill -9` of
//! its agent with its link down, with Cilium's lease timings and with
//! 3 s / 1 s / 200 ms. Medians over rounds, each on a fresh lab.
//!
//! `cargo bench -p nexthop-tests --bench l2_failover` (root);
//! `L2_FAILOVER_ROUNDS` (default 5) sets the rounds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nexthop_testkit::{Etcd, skips};
use nexthop_tests::l2lab::{Lab, leader_among};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

fn median(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    if skips(&["ip", "arping", "sysctl"]) || Etcd::skips() {
        return;
    }
    let rounds: usize = std::env::var("L2_FAILOVER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let leases = [
        ("Cilium's defaults", ["15s", "5s", "2s"]),
        ("3s/1s/200ms", ["3s", "1s", "200ms"]),
    ];
    for (label, lease) in leases {
        let (mut link, mut crash) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let etcd = Etcd::start();
            let mut lab = Lab::new(Path::new(AGENT), &etcd, lease);
            let sockets: Vec<PathBuf> = (0..3).map(|i| lab.socket(i)).collect();
            let (first, _) = leader_among(&lab, &sockets, &[0, 1], Duration::from_secs(60));
            let up = Instant::now();
            lab.first_reply(first, up, Duration::from_secs(30))
                .expect("the leader's datapath answers");
            let second = 1 - first;
            lab.link(first, false);
            let lost = Instant::now();
            let took = lab
                .first_reply(second, lost, Duration::from_secs(60))
                .expect("a takeover after link down");
            link.push(took);
            lab.link(first, true);
            std::thread::sleep(Duration::from_secs(1));
            drop(lab.nodes[second].agent.take());
            lab.link(second, false);
            let lost = Instant::now();
            let took_crash = lab
                .first_reply(first, lost, Duration::from_secs(60))
                .expect("a takeover after kill -9");
            crash.push(took_crash);
            eprintln!(
                "{label}, round {round}/{rounds}: link down {took:?}, kill -9 {took_crash:?}"
            );
        }
        let (m, lo, hi) = median(link);
        println!(
            "{label}: link down -> first ARP reply from the new leader: median {m:.2?} ({lo:.2?}-{hi:.2?}) over {rounds} rounds"
        );
        let (m, lo, hi) = median(crash);
        println!(
            "{label}: kill -9 + link down -> first ARP reply from the new leader: median {m:.2?} ({lo:.2?}-{hi:.2?}) over {rounds} rounds"
        );
    }
}
