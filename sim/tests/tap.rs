//! The real-time tap bridge end to end: `nexthop-sim run --tap` inside a fresh network namespace,
//! whose kernel sits behind the tap device and pings and curls a simulated pod while a simulated
//! pod pings it. Traffic stays inside that namespace (only `lo` and the tap, routes only to the
//! lab's subnets). Needs root, /dev/net/tun, `ip`, `ping` and `curl`; skips with the reason
//! otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;

/// The seed both the simulator run and the in-process build use, so pod addresses agree.
const SEED: u64 = 1;
/// The lab's `wait` step: the simulator must take at least this long in real time.
const LAB_WAIT: Duration = Duration::from_secs(8);
/// The most the simulator run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn lab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/tap-bridge")
}

/// Why this machine cannot run the test, if it cannot.
fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("not root (tap devices and network namespaces need it)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["ip", "ping", "curl"] {
        if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// A network namespace and the simulator running in it; dropping it kills the simulator and
/// deletes the namespace, which deletes the tap device inside it.
struct Namespace {
    name: String,
    simulator: Option<Child>,
}

impl Namespace {
    fn create(name: &str) -> Self {
        let ns = Namespace {
            name: name.to_owned(),
            simulator: None,
        };
        run(Command::new("ip").args(["netns", "add", name]));
        ns
    }

    /// `ip -n NS ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        run(Command::new("ip").args(["-n", &self.name]).args(args));
    }

    /// A command run inside the namespace.
    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(mut child) = self.simulator.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `command` to completion and fails the test if it fails.
fn run(command: &mut Command) -> Output {
    let out = command.output().expect("command starts");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_namespace_behind_a_tap_pings_and_curls_a_simulated_pod() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::load(&lab_dir()).expect("the test lab loads");
    let cluster = Cluster::build(lab, EngineConfig::new(SEED)).expect("the test lab builds");
    let pod = cluster.address_of("webpod").expect("webpod has an address");

    // Unique per run: the process id and the clock's sub-second digits.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tag = format!("{}x{}", std::process::id() % 100_000, nanos % 1000);
    let tap = format!("nht{tag}");
    let mut ns = Namespace::create(&format!("nexthop-tap-{tag}"));
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
    ns.ip(&["addr", "add", "192.168.30.1/24", "dev", &tap]);
    ns.ip(&["link", "set", &tap, "up"]);
    for lab_subnet in ["172.20.0.0/16", "192.168.10.0/24"] {
        ns.ip(&["route", "add", lab_subnet, "via", "192.168.30.200"]);
    }

    let started = Instant::now();
    let simulator = ns
        .exec(env!("CARGO_BIN_EXE_nexthop-sim"))
        .arg("run")
        .arg(lab_dir())
        .args(["--seed", &SEED.to_string()])
        .args(["--tap", &format!("router:eth3={tap}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the simulator starts");
    ns.simulator = Some(simulator);

    let pod = pod.to_string();
    let reachable = (0..20).any(|_| {
        ns.exec("ping")
            .args(["-c", "1", "-W", "1", &pod])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        reachable,
        "webpod {pod} never answered a ping from the namespace"
    );
    let ping = run(ns
        .exec("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "2", &pod]));
    let ping = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.contains("3 received"), "{ping}");
    let curl = run(ns
        .exec("curl")
        .args(["-sS", "--max-time", "5", &format!("http://{pod}/")]));
    let body = String::from_utf8_lossy(&curl.stdout);
    assert!(body.contains("Hostname: webpod"), "{body}");
    assert!(body.contains("192.168.30.1"), "the client address: {body}");

    let mut simulator = ns.simulator.take().expect("started above");
    let status = loop {
        if let Some(status) = simulator
            .try_wait()
            .expect("the simulator can be waited on")
        {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = simulator.kill();
            panic!("the simulator ran longer than {RUN_LIMIT:?}");
        }
        sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let mut report = String::new();
    let mut stderr = String::new();
    simulator
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut report)
        .expect("utf-8 report");
    simulator
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
