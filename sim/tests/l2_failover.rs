//! L2 announcement failover in virtual time, over many seeds: from the
//! leader's loss (a crash, or its announcing link going down) to another
//! node answering ARP for the address, with Cilium's lease timings and with
//! 3 s / 1 s / 200 ms. Prints the figures docs/benchmarks.md quotes and
//! checks them against the bounds the timings imply; also counts lease
//! writes per second per announced service.

use std::path::{Path, PathBuf};

use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use nexthop_sim::lab::duration::Dur;
use nexthop_sim::lab::topology::EndpointRef;
use router_core::lease::Timings;
use smoltcp::time::Duration;

const VIP: &str = "192.168.10.211";
const SEEDS: u64 = 30;

fn lab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/l2-announce")
}

/// The l2-announce lab up to `policy1`, with these lease timings.
fn cluster(seed: u64, timings: Timings) -> Cluster {
    let dir = lab_dir();
    let mut lab = Lab::load(&dir).unwrap();
    let l2 = &mut lab.values.l2announcements;
    l2.lease_duration = Dur(timings.duration);
    l2.lease_renew_deadline = Dur(timings.renew_deadline);
    l2.lease_retry_period = Dur(timings.retry_period);
    let mut c = Cluster::build(lab, EngineConfig::new(seed)).unwrap();
    for file in ["lb/pool.yaml", "lb/webpod-lb.yaml", "l2/policy1.yaml"] {
        for o in Lab::manifest(&dir, Path::new(file)).unwrap().objects {
            c.apply(&o).unwrap();
        }
    }
    c
}

fn leader(c: &Cluster) -> Option<String> {
    ["k8s-ctr", "k8s-w1", "k8s-w0"]
        .into_iter()
        .find(|n| {
            c.l2_table(n)
                .unwrap()
                .iter()
                .any(|e| e.ip.to_string() == VIP)
        })
        .map(String::from)
}

fn run(c: &mut Cluster, d: Duration) {
    let until = c.engine.now() + d;
    c.run_until(until).unwrap();
}

/// Failover times in ms over the seeds, after `lose` takes the leader out.
fn failovers(timings: Timings, lose: fn(&mut Cluster, &str)) -> Vec<u64> {
    let mut times = Vec::new();
    for seed in 0..SEEDS {
        let mut c = cluster(seed, timings);
        run(&mut c, Duration::from_secs(20));
        let old = leader(&c).expect("a leader");
        lose(&mut c, &old);
        let lost = c.engine.now();
        loop {
            run(&mut c, Duration::from_millis(10));
            if let Some(new) = leader(&c).filter(|n| *n != old) {
                assert_ne!(new, "k8s-w0");
                break;
            }
            assert!(
                c.engine.now() - lost < Duration::from_secs(120),
                "seed {seed}: no takeover"
            );
        }
        times.push((c.engine.now() - lost).total_millis());
    }
    times.sort_unstable();
    times
}

fn crash(c: &mut Cluster, node: &str) {
    c.node_down(node, None).unwrap();
}

fn link_down(c: &mut Cluster, node: &str) {
    let e = c
        .interface(&EndpointRef {
            node: node.into(),
            interface: "eth1".into(),
        })
        .unwrap();
    c.set_link(e, false);
}

fn report(what: &str, t: Timings, times: &[u64]) -> (u64, u64) {
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "failover {what}, lease {}/{}/{}: median {median} ms, max {max} ms over {} seeds",
        t.duration,
        t.renew_deadline,
        t.retry_period,
        times.len()
    );
    (median, max)
}

const FAST: Timings = Timings {
    duration: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(1),
    retry_period: Duration::from_millis(200),
};

/// A follower takes over once it has seen the record unchanged for the
/// lease's duration; it sees each renewal up to a jittered retry (× 2.2)
/// late and checks again a jittered retry later: at most duration +
/// 2 × 2.2 retries + a renew interval after the leader's last renewal.
fn crash_bound(t: Timings) -> u64 {
    (t.duration + t.retry_period * 44 / 10 + t.renew_interval()).total_millis()
}

#[test]
fn a_crashed_leader_is_replaced_within_the_lease_bound() {
    for t in [Timings::CILIUM, FAST] {
        let (_, max) = report("after a crash", t, &failovers(t, crash));
        assert!(max <= crash_bound(t), "{max} ms > {} ms", crash_bound(t));
    }
}

#[test]
fn a_leader_losing_its_link_hands_over_within_a_jittered_retry() {
    for t in [Timings::CILIUM, FAST] {
        let (_, max) = report("after link down", t, &failovers(t, link_down));
        let bound = (t.retry_period * 22 / 10 + Duration::from_millis(50)).total_millis();
        assert!(max <= bound, "{max} ms > {bound} ms");
    }
}

#[test]
fn lease_writes_per_announced_service() {
    for t in [Timings::CILIUM, FAST] {
        let mut c = cluster(1, t);
        run(&mut c, Duration::from_secs(10));
        let before = c.lease_writes();
        run(&mut c, Duration::from_secs(100));
        let per_second = (c.lease_writes() - before) as f64 / 100.0;
        let client_go = 1.0 / t.retry_period.total_millis() as f64 * 1000.0;
        println!(
            "lease writes, lease {}/{}/{}: {per_second:.2}/s per service (Cilium's client-go renews every retry period: {client_go:.2}/s)",
            t.duration, t.renew_deadline, t.retry_period
        );
        let expected = 1000.0 / t.renew_interval().total_millis() as f64;
        assert!(
            (per_second - expected).abs() < 0.05,
            "{per_second} vs {expected}"
        );
    }
}
