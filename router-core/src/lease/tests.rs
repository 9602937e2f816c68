//! Electors for one lease on several nodes over a [`MemoryStore`] whose
//! answers take time, with nodes dying and the store going away: never two
//! leaders, and takeover within the bounds the timings imply.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;
use crate::hash::splitmix64;

const LEASE: &str = "cilium-l2announce-default-webpod";
const STEP: Duration = Duration::from_millis(10);

fn fast() -> Timings {
    Timings {
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

struct Cluster {
    now: Instant,
    store: MemoryStore,
    store_up: bool,
    latency: Duration,
    nodes: Vec<Option<Elector>>,
    /// Answers on their way: (arrival, node, id, response).
    wire: VecDeque<(Instant, usize, u64, Response)>,
    /// (time, node, leading) for every change of leadership.
    log: Vec<(Instant, usize, bool)>,
}

impl Cluster {
    fn new(nodes: usize, timings: Timings, seed: u64) -> Cluster {
        let now = Instant::from_secs(1);
        let nodes = (0..nodes)
            .map(|i| {
                Some(Elector::new(
                    now,
                    &format!("node{i}"),
                    timings,
                    splitmix64(&mut (seed ^ i as u64)),
                ))
            })
            .collect();
        Cluster {
            now,
            store: MemoryStore::default(),
            store_up: true,
            latency: Duration::from_millis(3),
            nodes,
            wire: VecDeque::new(),
            log: Vec::new(),
        }
    }

    fn input(&mut self, node: usize, input: Input) {
        let Some(e) = self.nodes[node].as_mut() else {
            return;
        };
        for o in e.handle(self.now, input) {
            match o {
                Output::Request { id, request } => {
                    let response = if self.store_up {
                        self.store.apply(LEASE, request)
                    } else {
                        Response::Unavailable("connection refused".into())
                    };
                    self.wire
                        .push_back((self.now + self.latency, node, id, response));
                }
                Output::Leading(on) => self.log.push((self.now, node, on)),
            }
        }
    }

    fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].as_ref().is_some_and(|e| e.is_leading()))
            .collect()
    }

    /// Run for `d`, checking that at most one node leads at any time.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += STEP;
            while self.wire.front().is_some_and(|w| w.0 <= self.now) {
                let (_, node, id, response) = self.wire.pop_front().unwrap();
                self.input(node, Input::Response { id, response });
            }
            for n in 0..self.nodes.len() {
                self.input(n, Input::Tick);
            }
            let leaders = self.leaders();
            assert!(
                leaders.len() <= 1,
                "two leaders at {}: {leaders:?}",
                self.now
            );
        }
    }

    fn kill(&mut self, node: usize) {
        self.nodes[node] = None;
    }

    /// When `node` last started leading.
    fn took_over(&self, node: usize) -> Option<Instant> {
        self.log
            .iter()
            .rev()
            .find(|(_, n, on)| *n == node && *on)
            .map(|(t, _, _)| *t)
    }

    fn holder(&self) -> String {
        self.store
            .leases()
            .next()
            .map(|(_, v)| v.record.holder.clone())
            .unwrap_or_default()
    }
}

#[test]
fn the_first_elector_creates_the_lease_and_leads() {
    let mut c = Cluster::new(1, fast(), 1);
    c.run(Duration::from_millis(50));
    assert_eq!(c.leaders(), [0]);
    let (_, v) = c.store.leases().next().unwrap();
    assert_eq!(v.record.holder, "node0");
    assert_eq!(v.record.transitions, 0);
    assert_eq!(v.record.duration, Duration::from_secs(3));
}

#[test]
fn a_leader_renews_every_half_deadline_with_one_write_each() {
    let mut c = Cluster::new(1, Timings::CILIUM, 1);
    c.run(Duration::from_secs(60));
    let writes = c.nodes[0].as_ref().unwrap().writes();
    // One create at the first tick (10 ms in), then a renewal every 2.5 s
    // up to 57.51 s: 24 (Cilium's client-go renews every 2 s: 30).
    assert_eq!(writes, 24, "writes in a minute");
}

#[test]
fn only_one_of_three_leads_and_the_others_follow_the_holder() {
    for seed in 0..50 {
        let mut c = Cluster::new(3, fast(), seed);
        c.run(Duration::from_secs(10));
        let leaders = c.leaders();
        assert_eq!(leaders.len(), 1, "seed {seed}");
        let holder = format!("node{}", leaders[0]);
        assert_eq!(c.holder(), holder);
        for e in c.nodes.iter().flatten() {
            assert_eq!(e.holder(), Some(holder.as_str()), "seed {seed}");
        }
    }
}

#[test]
fn a_dead_leader_is_replaced_within_duration_plus_jittered_retry() {
    let t = fast();
    let bound = t.duration + t.retry_period + t.retry_period * 12 / 10 + STEP * 2;
    for seed in 0..50 {
        let mut c = Cluster::new(3, t, seed);
        c.run(Duration::from_secs(5));
        let old = c.leaders()[0];
        let died = c.now;
        c.kill(old);
        c.run(Duration::from_secs(6));
        let new = c.leaders();
        assert_eq!(new.len(), 1, "seed {seed}");
        assert_ne!(new[0], old);
        let took = c.took_over(new[0]).unwrap() - died;
        assert!(
            took <= bound,
            "seed {seed}: takeover after {took}, bound {bound}"
        );
        let (_, v) = c.store.leases().next().unwrap();
        assert_eq!(v.record.transitions, 1, "seed {seed}");
    }
}

#[test]
fn stepping_down_frees_the_lease_for_a_takeover_within_a_retry() {
    let t = fast();
    let bound = t.retry_period + t.retry_period * 12 / 10 + STEP * 2;
    for seed in 0..50 {
        let mut c = Cluster::new(3, t, seed);
        c.run(Duration::from_secs(5));
        let old = c.leaders()[0];
        let stepped = c.now;
        c.input(old, Input::Participate(false));
        assert!(c.leaders().is_empty(), "seed {seed}: stepped down at once");
        c.run(Duration::from_secs(2));
        let new = c.leaders();
        assert_eq!(new.len(), 1, "seed {seed}");
        assert_ne!(new[0], old);
        let took = c.took_over(new[0]).unwrap() - stepped;
        assert!(
            took <= bound,
            "seed {seed}: takeover after {took}, bound {bound}"
        );
        // Back in, it follows: the lease is held.
        c.input(old, Input::Participate(true));
        c.run(Duration::from_secs(5));
        assert_eq!(c.leaders(), new, "seed {seed}");
    }
}

#[test]
fn without_the_store_the_leader_stops_at_its_deadline_and_nobody_takes_over() {
    let t = fast();
    for seed in 0..20 {
        let mut c = Cluster::new(3, t, seed);
        c.run(Duration::from_secs(5));
        let old = c.leaders()[0];
        let down = c.now;
        c.store_up = false;
        c.run(Duration::from_secs(10));
        assert!(c.leaders().is_empty(), "seed {seed}");
        let (stopped, node, on) = *c.log.last().unwrap();
        assert_eq!((node, on), (old, false));
        assert!(
            stopped - down <= t.renew_deadline,
            "seed {seed}: led {} after the store went",
            stopped - down
        );
        assert!(
            c.log
                .iter()
                .all(|&(at, n, on)| at < down || n == old && !on),
            "seed {seed}: {:?}",
            c.log
        );
        c.store_up = true;
        c.run(Duration::from_secs(5));
        assert_eq!(c.leaders().len(), 1, "seed {seed}: a leader again");
    }
}

#[test]
fn a_slow_store_never_gives_two_leaders() {
    for seed in 0..20 {
        let mut c = Cluster::new(3, fast(), seed);
        c.latency = Duration::from_millis(400);
        c.run(Duration::from_secs(8));
        assert_eq!(c.leaders().len(), 1, "seed {seed}");
        let old = c.leaders()[0];
        c.kill(old);
        c.run(Duration::from_secs(8));
        assert_eq!(c.leaders().len(), 1, "seed {seed}");
    }
}

#[test]
fn an_unanswered_request_times_out_and_is_retried() {
    let mut e = Elector::new(Instant::from_secs(0), "n1", fast(), 7);
    let out = e.handle(Instant::from_secs(0), Input::Tick);
    assert!(matches!(
        out[..],
        [Output::Request {
            id: 0,
            request: Request::Get
        }]
    ));
    assert!(e.handle(Instant::from_millis(999), Input::Tick).is_empty());
    let out = e.handle(Instant::from_secs(1), Input::Tick);
    assert!(matches!(
        out[..],
        [Output::Request {
            id: 1,
            request: Request::Get
        }]
    ));
    // A late answer to the first is ignored.
    let late = Input::Response {
        id: 0,
        response: Response::Got(None),
    };
    assert!(e.handle(Instant::from_millis(1001), late).is_empty());
}

#[test]
fn cilium_corrects_timings_as_it_documents() {
    assert_eq!(Timings::CILIUM.corrected(), (Timings::CILIUM, Vec::new()));
    let (t, w) = Timings {
        duration: Duration::from_millis(500),
        renew_deadline: Duration::from_secs(5),
        retry_period: Duration::ZERO,
    }
    .corrected();
    assert_eq!(
        t,
        Timings {
            duration: Duration::from_secs(1),
            renew_deadline: Duration::from_millis(500),
            retry_period: Duration::from_millis(200),
        }
    );
    assert_eq!(w.len(), 3, "{w:?}");
    let (t, w) = Timings {
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_secs(1),
    }
    .corrected();
    assert_eq!(t.retry_period, Duration::from_millis(500));
    assert!(w[0].contains("× 1.2"), "{w:?}");
}

#[test]
fn the_memory_store_refuses_stale_versions_and_double_creates() {
    let mut s = MemoryStore::default();
    let r = Record {
        holder: "a".into(),
        duration: Duration::from_secs(15),
        acquired: Instant::ZERO,
        renewed: Instant::ZERO,
        transitions: 0,
    };
    assert_eq!(
        s.apply("l", Request::Create(r.clone())),
        Response::Written("1".into())
    );
    assert_eq!(s.apply("l", Request::Create(r.clone())), Response::Conflict);
    let update = |version: &str| Request::Update {
        record: r.clone(),
        version: version.into(),
    };
    assert_eq!(s.apply("l", update("1")), Response::Written("2".into()));
    assert_eq!(s.apply("l", update("1")), Response::Conflict);
    assert_eq!(s.apply("m", update("2")), Response::Conflict);
}
