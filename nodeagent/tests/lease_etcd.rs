//! The agent's etcd lease store against a real etcd (Debian `etcd-server`,
//! started on loopback by [`Etcd`]): the store's operations one by one, and
//! three of router-core's lease electors (n1, n2, n3; 3 s / 1 s / 200 ms)
//! electing through it — one leader; takeover after the leader dies, after
//! it steps down, and none while etcd is down.
//!
//! The measured takeover times are printed (`cargo test -p nexthop-agent
//! --test lease_etcd -- --nocapture`); they are the wall-clock figures of
//! docs/benchmarks.md. Skips, printing why, without an `etcd` program (fails
//! under `CI=true`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use nexthop_agent::lease_store::{Clock, LeaseStore};
use nexthop_testkit::Etcd;
use router_core::lease::{Elector, Input, Output, Record, Request, Response, Timings};
use smoltcp::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PREFIX: &str = "nexthop/leases";
const NAMESPACE: &str = "kube-system";
const LEASE: &str = "cilium-l2announce-default-web";

async fn store(etcd: &Etcd) -> LeaseStore {
    LeaseStore::etcd(&[etcd.endpoint()], PREFIX, NAMESPACE, Clock::start())
        .await
        .unwrap()
}

fn record(holder: &str, at: Instant, transitions: u32) -> Record {
    Record {
        holder: holder.into(),
        duration: Duration::from_secs(3),
        acquired: at,
        renewed: at + Duration::from_millis(1500),
        transitions,
    }
}

fn written(response: Response) -> u64 {
    match response {
        Response::Written(version) => version.parse().unwrap(),
        other => panic!("not written: {other:?}"),
    }
}

#[tokio::test]
async fn store_operations_against_etcd() {
    if Etcd::skips() {
        return;
    }
    let mut etcd = Etcd::start();
    let store = store(&etcd).await;
    let now = store.clock().now();

    assert_eq!(store.call(LEASE, Request::Get).await, Response::Got(None));
    let first = record("n1", now, 0);
    let v1 = written(store.call(LEASE, Request::Create(first.clone())).await);
    assert_eq!(
        store
            .call(LEASE, Request::Create(record("n2", now, 0)))
            .await,
        Response::Conflict
    );
    let Response::Got(Some(got)) = store.call(LEASE, Request::Get).await else {
        panic!("the created lease is not there");
    };
    assert_eq!(got.record, first);
    assert_eq!(got.version, v1.to_string());

    let second = record("n2", now + Duration::from_secs(1), 1);
    let update = |record: &Record, version: &str| Request::Update {
        record: record.clone(),
        version: version.into(),
    };
    let v2 = written(store.call(LEASE, update(&second, &v1.to_string())).await);
    assert!(v2 > v1);
    let stale = record("n3", now, 2);
    assert_eq!(
        store.call(LEASE, update(&stale, &v1.to_string())).await,
        Response::Conflict,
        "an update at a stale version"
    );
    assert_eq!(
        store.call(LEASE, update(&stale, "not-a-revision")).await,
        Response::Conflict
    );
    assert_eq!(
        store.call("absent", update(&stale, &v2.to_string())).await,
        Response::Conflict,
        "an update of a lease that is not there"
    );
    let Response::Got(Some(got)) = store.call(LEASE, Request::Get).await else {
        panic!("the lease is gone");
    };
    assert_eq!((got.record, got.version), (second.clone(), v2.to_string()));

    // A lease in another namespace is another key; listing reads one namespace.
    let other = LeaseStore::etcd(&[etcd.endpoint()], PREFIX, "other", Clock::start())
        .await
        .unwrap();
    written(
        other
            .call(LEASE, Request::Create(record("x", now, 0)))
            .await,
    );
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, LEASE);
    assert_eq!(listed[0].1.record, second);

    // A value the store cannot read is never taken for a lease, nor for none.
    etcd.put(
        &format!("{PREFIX}/{NAMESPACE}/garbled"),
        b"{\"holderIdentity\": 7",
    );
    match store.call("garbled", Request::Get).await {
        Response::Unavailable(message) => assert!(
            message.starts_with(&format!(
                "lease garbled: bad value at {PREFIX}/{NAMESPACE}/garbled: "
            )),
            "{message}"
        ),
        other => panic!("a garbled value read as {other:?}"),
    }
    assert_eq!(
        store.call("garbled", Request::Create(stale.clone())).await,
        Response::Conflict
    );
    assert_eq!(
        store.list().await.unwrap().len(),
        1,
        "the garbled lease is left out"
    );

    // etcd hung: answered Unavailable at the bound (1 s), naming the endpoint.
    etcd.pause(true);
    let asked = StdInstant::now();
    let answer = store.call(LEASE, Request::Get).await;
    let waited = asked.elapsed();
    etcd.pause(false);
    assert_eq!(
        answer,
        Response::Unavailable(format!(
            "lease {LEASE}: etcd {}: no answer within 1s",
            etcd.endpoint()
        ))
    );
    assert!(
        (StdDuration::from_millis(950)..StdDuration::from_millis(1500)).contains(&waited),
        "{waited:?}"
    );
    println!("etcd hung: a request answered Unavailable after {waited:?}");
    let v3 = written(store.call(LEASE, update(&second, &v2.to_string())).await);

    // etcd gone: answered Unavailable, naming the endpoint, within the bound.
    etcd.kill();
    let asked = StdInstant::now();
    match store.call(LEASE, Request::Get).await {
        Response::Unavailable(message) => {
            assert!(message.contains(&etcd.endpoint()), "{message}");
            println!("etcd down: {message}");
        }
        other => panic!("answered without etcd: {other:?}"),
    }
    let waited = asked.elapsed();
    assert!(waited < StdDuration::from_millis(1500), "{waited:?}");
    println!("etcd down: a request answered Unavailable after {waited:?}");

    // Back again: the same client reconnects.
    etcd.restart();
    let restarted = StdInstant::now();
    let got = loop {
        match store.call(LEASE, Request::Get).await {
            Response::Got(got) => break got,
            Response::Unavailable(message) => {
                assert!(
                    restarted.elapsed() < StdDuration::from_secs(10),
                    "{message}"
                );
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    };
    println!(
        "etcd restarted: the client answered again after {:?}",
        restarted.elapsed()
    );
    let got = got.expect("the lease survives a restart");
    assert_eq!(got.record, second);
    assert_eq!(got.version, v3.to_string());
}

const TIMINGS: Timings = Timings {
    duration: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(1),
    retry_period: Duration::from_millis(200),
};

/// Who leads, and every time two did at once.
#[derive(Debug, Default)]
struct Leaders {
    now: BTreeSet<String>,
    overlaps: Vec<String>,
    /// Every change: (when, node, leading).
    log: Vec<(StdInstant, String, bool)>,
}

type Shared = Arc<Mutex<Leaders>>;

/// One node: an elector driven by a task, answering its requests through
/// its own store (its own connection and clock, as on its own machine).
struct Node {
    participate: mpsc::UnboundedSender<bool>,
    task: JoinHandle<()>,
}

impl Node {
    fn start(name: &str, store: LeaseStore, seed: u64, leaders: Shared) -> Node {
        let (participate, control) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(name.to_string(), store, seed, control, leaders));
        Node { participate, task }
    }
}

async fn drive(
    name: String,
    store: LeaseStore,
    seed: u64,
    mut control: mpsc::UnboundedReceiver<bool>,
    leaders: Shared,
) {
    let clock = store.clock();
    let mut elector = Elector::new(clock.now(), &name, TIMINGS, seed);
    let (answer, mut answers) = mpsc::unbounded_channel();
    let mut outputs = elector.handle(clock.now(), Input::Tick);
    loop {
        for output in outputs.drain(..) {
            match output {
                Output::Request { id, request } => {
                    let (store, answer) = (store.clone(), answer.clone());
                    tokio::spawn(async move {
                        let response = store.call(LEASE, request).await;
                        let _ = answer.send(Input::Response { id, response });
                    });
                }
                Output::Leading(on) => {
                    let mut l = leaders.lock().unwrap();
                    l.log.push((StdInstant::now(), name.clone(), on));
                    if on {
                        l.now.insert(name.clone());
                        if l.now.len() > 1 {
                            let overlap = format!("{:?} lead at once", l.now);
                            l.overlaps.push(overlap);
                        }
                    } else {
                        l.now.remove(&name);
                    }
                }
            }
        }
        let wake = elector.poll_at().map(|at| clock.deadline(at));
        let input = tokio::select! {
            Some(input) = answers.recv() => input,
            on = control.recv() => match on {
                Some(on) => Input::Participate(on),
                None => return,
            },
            _ = sleep_until(wake) => Input::Tick,
        };
        outputs = elector.handle(clock.now(), input);
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Wait until one of `candidates` leads; who, and how long it took.
async fn leader_among(
    leaders: &Shared,
    candidates: &[&str],
    within: StdDuration,
) -> (String, StdDuration) {
    let started = StdInstant::now();
    loop {
        {
            let l = leaders.lock().unwrap();
            assert!(l.overlaps.is_empty(), "{:?}\n{:?}", l.overlaps, l.log);
            if let Some(leader) = l.now.iter().find(|n| candidates.contains(&n.as_str())) {
                return (leader.clone(), started.elapsed());
            }
            assert!(
                started.elapsed() < within,
                "no leader among {candidates:?} within {within:?}: {:?}",
                l.log
            );
        }
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    }
}

/// `d` in seconds, for the printed figures.
fn secs(d: StdDuration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[tokio::test]
async fn three_electors_over_one_etcd() {
    if Etcd::skips() {
        return;
    }
    let mut etcd = Etcd::start();
    let leaders = Shared::default();
    let names = ["n1", "n2", "n3"];
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        nodes.push(Some(Node::start(
            name,
            store(&etcd).await,
            0x1ea5e + i as u64,
            leaders.clone(),
        )));
    }
    let node = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let retry = StdDuration::from_millis(200);
    let slack = StdDuration::from_millis(500);
    println!(
        "lease timings: duration 3 s, renew deadline 1 s, retry period 200 ms; slack {slack:?}"
    );

    // One leader.
    let (first, took) = leader_among(&leaders, &names, StdDuration::from_secs(5)).await;
    println!("first leader {first} after {}", secs(took));
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    assert_eq!(leaders.lock().unwrap().now.len(), 1);

    // The leader dies (its elector dropped, no release): another takes over
    // once the lease expires, within duration + retry × 2.2.
    let dead = nodes[node(&first)].take().unwrap();
    dead.task.abort();
    let _ = dead.task.await;
    leaders.lock().unwrap().now.remove(&first);
    let others: Vec<&str> = names.iter().copied().filter(|n| *n != first).collect();
    let bound = StdDuration::from_secs(3) + retry.mul_f64(2.2) + slack;
    let (second, took) = leader_among(&leaders, &others, bound).await;
    println!(
        "leader {first} dropped: {second} leads after {} (bound {}: duration + retry × 2.2 + slack)",
        secs(took),
        secs(bound)
    );

    // The new leader steps down (releases): the last one takes over at its
    // next retry.
    let third = others.iter().copied().find(|n| *n != second).unwrap();
    let stepping = nodes[node(&second)].as_ref().unwrap();
    stepping.participate.send(false).unwrap();
    let bound = retry.mul_f64(2.2) + slack;
    let (taker, took) = leader_among(&leaders, &[third], bound).await;
    println!(
        "{second} stepped down: {taker} leads after {} (bound {}: retry × 2.2 + slack)",
        secs(took),
        secs(bound)
    );
    assert!(!leaders.lock().unwrap().now.contains(&second));
    stepping.participate.send(true).unwrap();
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    assert_eq!(
        leaders.lock().unwrap().now.iter().collect::<Vec<_>>(),
        [third],
        "the leader keeps its lease when the other comes back"
    );

    // etcd dies: the leader stops within its renew deadline, nobody starts.
    etcd.kill();
    let killed = StdInstant::now();
    let bound = StdDuration::from_secs(1) + slack;
    let stopped = loop {
        if leaders.lock().unwrap().now.is_empty() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < bound,
            "{third} still leads {bound:?} after etcd died"
        );
        tokio::time::sleep(StdDuration::from_millis(5)).await;
    };
    println!(
        "etcd killed: {third} stops leading after {} (bound {}: renew deadline + slack)",
        secs(stopped),
        secs(bound)
    );
    let watch = StdDuration::from_secs(3) + retry.mul_f64(2.2) + StdDuration::from_secs(1);
    tokio::time::sleep(watch).await;
    {
        let l = leaders.lock().unwrap();
        assert!(
            l.now.is_empty(),
            "{:?} lead without etcd: {:?}",
            l.now,
            l.log
        );
    }
    println!("etcd down: nobody leads for {} more", secs(watch));

    // etcd back: a leader again.
    etcd.restart();
    let (again, took) = leader_among(
        &leaders,
        &[second.as_str(), third],
        StdDuration::from_secs(10),
    )
    .await;
    println!("etcd restarted: {again} leads after {}", secs(took));
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    let l = leaders.lock().unwrap();
    assert_eq!(l.now.len(), 1, "{:?}", l.log);
    assert!(l.overlaps.is_empty(), "{:?}", l.overlaps);
    drop(l);
    for node in nodes.into_iter().flatten() {
        node.task.abort();
    }
}

/// `nexthop-agent lease list|get` on the stored leases.
#[tokio::test]
async fn lease_command_reads_etcd() {
    if Etcd::skips() {
        return;
    }
    let etcd = Etcd::start();
    let store = store(&etcd).await;
    let clock = store.clock();
    let held = record("n1", clock.now(), 4);
    let version = written(store.call(LEASE, Request::Create(held.clone())).await);
    let agent = |args: &[&str]| {
        let store = format!("etcd:{}", etcd.endpoint());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nexthop-agent"))
            .args(["lease"])
            .args(args)
            .args(["--lease-store", &store])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, table, err) = agent(&["list"]);
    assert!(ok, "{err}");
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let renewed = nexthop_agent::lease_store::rfc3339(clock.to_wall(held.renewed));
    assert_eq!(
        lines,
        [
            vec![
                "NAME",
                "HOLDER",
                "DURATION",
                "TRANSITIONS",
                "ACQUIRED",
                "RENEWED",
                "VERSION"
            ],
            vec![
                LEASE,
                "n1",
                "3s",
                "4",
                &nexthop_agent::lease_store::rfc3339(clock.to_wall(held.acquired)),
                &renewed,
                &version.to_string()
            ]
        ],
        "{table}"
    );

    let (ok, json, err) = agent(&["get", LEASE, "-o", "json"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "name": LEASE,
            "version": version.to_string(),
            "spec": {
                "holderIdentity": "n1",
                "leaseDurationSeconds": 3,
                "acquireTime": nexthop_agent::lease_store::rfc3339(clock.to_wall(held.acquired)),
                "renewTime": renewed,
                "leaseTransitions": 4,
            }
        }])
    );

    let (ok, _, err) = agent(&["get", "absent"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            "nexthop-agent: lease absent not found (etcd {}, namespace kube-system)",
            etcd.endpoint()
        )
    );
}
