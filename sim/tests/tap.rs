//! The real-time tap bridge end to end: `nexthop-sim run --tap` inside a fresh network namespace,
//! whose kernel sits behind the tap device and pings and curls a simulated pod while a simulated
//! pod pings it. Traffic stays inside that namespace (only `lo` and the tap, routes only to the
//! lab's subnets). Needs root, /dev/net/tun, `ip`, `ping` and `curl`; skips with the reason
//! otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use nexthop_testkit::{Namespaces, Process, run, skip, skips};

/// The seed both the simulator run and the in-process build use, so pod addresses agree.
const SEED: u64 = 1;
/// The lab's `wait` step: the simulator must take at least this long in real time.
const LAB_WAIT: Duration = Duration::from_secs(8);
/// The most the simulator run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn lab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/tap-bridge")
}

/// A command run inside namespace `ns` (full name).
fn exec(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

#[test]
fn a_namespace_behind_a_tap_pings_and_curls_a_simulated_pod() {
    if skips(&["ip", "ping", "curl"]) {
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        skip("/dev/net/tun is missing");
        return;
    }
    let lab = Lab::load(&lab_dir()).expect("the test lab loads");
    let cluster = Cluster::build(lab, EngineConfig::new(SEED)).expect("the test lab builds");
    let pod = cluster.address_of("webpod").expect("webpod has an address");

    // The tap lives in the test's own namespace, so its name need not be unique.
    let tap = "nhtap0";
    let namespaces = Namespaces::new(&["tap"]);
    let ns = namespaces.name("tap");
    namespaces.exec("tap", &["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
    namespaces.exec("tap", &["ip", "addr", "add", "192.168.30.1/24", "dev", tap]);
    namespaces.exec("tap", &["ip", "link", "set", tap, "up"]);
    for lab_subnet in ["172.20.0.0/16", "192.168.10.0/24"] {
        namespaces.exec(
            "tap",
            &["ip", "route", "add", lab_subnet, "via", "192.168.30.200"],
        );
    }

    let started = Instant::now();
    let mut simulator = Process(
        exec(&ns, env!("CARGO_BIN_EXE_nexthop-sim"))
            .arg("run")
            .arg(lab_dir())
            .args(["--seed", &SEED.to_string()])
            .args(["--tap", &format!("router:eth3={tap}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the simulator starts"),
    );

    let pod = pod.to_string();
    let reachable = (0..20).any(|_| {
        exec(&ns, "ping")
            .args(["-c", "1", "-W", "1", &pod])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        reachable,
        "webpod {pod} never answered a ping from the namespace"
    );
    let ping = run(exec(&ns, "ping").args(["-c", "3", "-i", "0.2", "-W", "2", &pod]));
    let ping = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.contains("3 received"), "{ping}");
    let curl = run(exec(&ns, "curl").args(["-sS", "--max-time", "5", &format!("http://{pod}/")]));
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(body.contains("Hostname: webpod"), "{body}");
    assert!(body.contains("192.168.30.1"), "the client address: {body}");

    let status = loop {
        if let Some(status) = simulator
            .0
            .try_wait()
            .expect("the simulator can be waited on")
        {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            panic!("the simulator ran longer than {RUN_LIMIT:?}");
        }
        sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let mut report = String::new();
    let mut stderr = String::new();
    simulator
        .0
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut report)
        .expect("utf-8 report");
    simulator
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("utf-8 errors");
    assert!(status.success(), "{report}\n{stderr}");
    assert!(stderr.contains("running in real time"), "{stderr}");
    assert!(report.contains("4 passed, 0 failed"), "{report}");
    assert!(
        report.contains("64 bytes from 192.168.30.1: icmp_seq=2 ttl=62"),
        "{report}"
    );
    assert!(
        elapsed >= LAB_WAIT,
        "the wait step did not wait: the run took {elapsed:?}"
    );
}
