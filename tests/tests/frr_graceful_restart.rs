//! Graceful restart (RFC 4724) with real FRR 8.4.4, both ways:
//! - our agent restarts (SIGTERM, then a new process) within the restart
//!   time: FRR keeps our pod CIDR, stale, then refreshed, and never drops it;
//! - FRR's bgpd dies (SIGKILL) and comes back: our agent keeps FRR's route,
//!   stale, until FRR's End-of-RIB.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nexthop_testkit::{FRR_PROGRAMS, Frr, Namespaces, skips, wait_for};
use nexthop_tests::{Agent, SinglePeer};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

const FRR_CONF: &str = "frr defaults traditional
!
router bgp 65000
 bgp router-id 10.0.3.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp graceful-restart
 bgp graceful-restart preserve-fw-state
 bgp graceful-restart restart-time 30
 bgp graceful-restart select-defer-time 5
 neighbor 10.0.3.1 remote-as 65001
 neighbor 10.0.3.1 timers 3 9
 !
 address-family ipv4 unicast
  network 10.10.3.0/24
 exit-address-family
!
";

const POD: &str = "172.20.3.0/24";
const FRR_ROUTE: &str = "10.10.3.0/24";

fn node() -> SinglePeer<'static> {
    SinglePeer {
        node: "node3",
        addresses: ["10.0.3.1", "fd00:3::1"],
        pod_cidrs: [POD, "fd00:20:3::/64"],
        local_asn: 65001,
        peer: (65000, "10.0.3.2"),
        communities: ("65001:300", "65001:3:3"),
        advertise: true,
        graceful_restart: Some(30),
    }
}

/// FRR's path for our pod CIDR: `Some(stale)` when present.
fn frr_pod(frr: &Frr) -> Option<bool> {
    let table = frr.json("show bgp ipv4 unicast json");
    let paths = table["routes"][POD].as_array()?;
    let path = paths.first()?;
    Some(path["stale"].as_bool().unwrap_or(false))
}

fn frr_established(frr: &Frr) -> bool {
    let summary = frr.json("show bgp ipv4 unicast summary json");
    summary["peers"]["10.0.3.1"]["state"] == "Established"
}

/// Our agent's received route from FRR: `Some(stale)` when present.
fn agent_route(agent: &Agent) -> Option<bool> {
    let out = agent.query(
        AGENT,
        &["routes", "received", "ipv4", "unicast", "--output", "json"],
    );
    let routes: serde_json::Value = serde_json::from_str(&out).ok()?;
    let route = routes
        .as_array()?
        .iter()
        .find(|r| r["prefix"] == FRR_ROUTE)?;
    Some(route["stale"].as_bool().unwrap_or(false))
}

/// Polls `probe` every 100 ms on a thread until stopped; returns what it saw.
struct Watch<T: Send + 'static> {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<T>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T: Send + 'static> Watch<T> {
    fn start(probe: impl Fn() -> T + Send + 'static) -> Watch<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let value = probe();
                v.lock().unwrap().push(value);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Watch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl<T: Send + 'static> Drop for Watch<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn graceful_restart_of_our_agent_and_of_frr() {
    if skips(&FRR_PROGRAMS) {
        return;
    }
    let ns = Namespaces::new(&["n", "r"]);
    ns.veth("n", "eth1", "r", "eth1");
    ns.exec("n", &["ip", "addr", "add", "10.0.3.1/24", "dev", "eth1"]);
    ns.exec("r", &["ip", "addr", "add", "10.0.3.2/24", "dev", "eth1"]);
    ns.wait_carrier("n", &["eth1"]);
    ns.wait_carrier("r", &["eth1"]);
    let frr = Arc::new(Frr::start(
        &ns.name("r"),
        &ns.dir.join("frr"),
        "router",
        FRR_CONF,
    ));
    let config_dir = ns.dir.join("node3");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(config_dir.join("bgp.yaml"), node().yaml()).unwrap();
    let first_dir = ns.dir.join("first");
    fs::create_dir_all(&first_dir).unwrap();
    let agent = Agent::start(AGENT, &ns.name("n"), "node3", &config_dir, &first_dir);
    let frr_log = || format!("--- bgpd log\n{}", frr.bgpd_log());
    wait_for(
        "FRR to have our pod CIDR, fresh",
        Duration::from_secs(15),
        || (frr_established(&frr) && frr_pod(&frr) == Some(false)).then_some(()),
        || format!("{}\n--- agent\n{}", frr_log(), agent.log()),
    );

    // Our agent restarts: FRR keeps the route throughout, stale meanwhile.
    let probe = frr.clone();
    let watch = Watch::start(move || frr_pod(&probe));
    drop(agent);
    wait_for(
        "FRR to mark our pod CIDR stale",
        Duration::from_secs(10),
        || (frr_pod(&frr) == Some(true)).then_some(()),
        frr_log,
    );
    let second_dir = ns.dir.join("second");
    fs::create_dir_all(&second_dir).unwrap();
    let agent = Agent::start(AGENT, &ns.name("n"), "node3", &config_dir, &second_dir);
    wait_for(
        "FRR to refresh our pod CIDR",
        Duration::from_secs(15),
        || (frr_established(&frr) && frr_pod(&frr) == Some(false)).then_some(()),
        || format!("{}\n--- agent\n{}", frr_log(), agent.log()),
    );
    let seen = watch.finish();
    assert!(
        seen.iter().all(Option::is_some),
        "FRR dropped our route during the restart: {seen:?}\n{}",
        frr_log()
    );
    assert!(seen.contains(&Some(true)), "never stale: {seen:?}");

    // FRR restarts: our agent keeps its route stale until its End-of-RIB.
    wait_for(
        "our agent to have FRR's route, fresh",
        Duration::from_secs(10),
        || (agent_route(&agent) == Some(false)).then_some(()),
        || {
            let received = agent.query(AGENT, &["routes", "received"]);
            format!("{received}\n--- agent\n{}", agent.log())
        },
    );
    let socket = agent.socket.clone();
    let watch = Watch::start(move || {
        let out = std::process::Command::new(AGENT)
            .args(["bgp", "routes", "received", "ipv4", "unicast"])
            .args(["--output", "json", "--socket"])
            .arg(&socket)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let routes: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        routes.as_array().and_then(|r| {
            r.iter()
                .find(|r| r["prefix"] == FRR_ROUTE)
                .map(|r| r["stale"].as_bool().unwrap_or(false))
        })
    });
    frr.restart_bgpd();
    wait_for(
        "FRR back, our session Established and FRR's route fresh after its End-of-RIB",
        Duration::from_secs(20),
        || {
            let log = agent.log();
            let eors = log.matches("End-of-RIB received").count();
            (frr_established(&frr) && eors >= 2 && agent_route(&agent) == Some(false)).then_some(())
        },
        || format!("{}\n--- agent\n{}", frr_log(), agent.log()),
    );
    let seen = watch.finish();
    assert!(
        seen.iter().all(Option::is_some),
        "our agent dropped FRR's route during its restart: {seen:?}\n{}",
        agent.log()
    );
    assert!(
        seen.contains(&Some(true)),
        "never stale: {seen:?}\n{}",
        agent.log()
    );
    let log = agent.log();
    assert!(
        log.contains("keeping the peer's routes as stale (graceful restart)"),
        "{log}"
    );
}
