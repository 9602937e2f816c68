//! BGP ingest benchmark: nexthop-agent, FRR 8.4 (`bgpd -n`), BIRD 2 and
//! GoBGP 3, each fed by the same `bgp-feeder` processes over a veth between
//! two network namespaces. Measures the time from the feeders' go until
//! the target reports every path received (polled every 10 ms, or every 2%
//! of the elapsed time when that is longer, through each
//! daemon's per-peer counters: `bgp peers`, `show bgp summary json`,
//! `show protocols all`, `gobgp neighbor`), the time until its CPU goes
//! idle (no CPU time for 500 ms), and its resident memory growth (VmRSS minus the baseline with the
//! sessions up and empty). Prints a Markdown table; no assertions.
//!
//! Root; `cargo bench -p nexthop-tests --bench bgp_ingest`. Filters:
//! `BGP_INGEST_TARGETS=nexthop,frr,bird,gobgp`, `BGP_INGEST_PREFIXES=100000,1000000`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nexthop_testkit::{Frr, Namespaces, skip_reason};
use nexthop_tests::{Agent, Bird, Gobgp};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");
const FEEDER: &str = env!("CARGO_BIN_EXE_bgp-feeder");
const TARGET_IP: &str = "10.255.0.1";
const TARGET_AS: u32 = 65000;

fn feeder_ip(k: u32) -> String {
    format!("10.255.1.{}", k + 1)
}

fn feeder_as(k: u32) -> u32 {
    65101 + k
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Nexthop,
    Frr,
    Bird,
    Gobgp,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Nexthop => "nexthop",
            Target::Frr => "frr",
            Target::Bird => "bird",
            Target::Gobgp => "gobgp",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Target::Nexthop => "nexthop-agent",
            Target::Frr => "FRR 8.4.4 (bgpd -n)",
            Target::Bird => "BIRD 2.0.12",
            Target::Gobgp => "GoBGP 3.10",
        }
    }

    fn programs(self) -> &'static [&'static str] {
        match self {
            Target::Nexthop => &[],
            Target::Frr => &[
                "/usr/lib/frr/zebra",
                "/usr/lib/frr/bgpd",
                "vtysh",
                "unshare",
            ],
            Target::Bird => &["bird", "birdc"],
            Target::Gobgp => &["gobgpd", "gobgp"],
        }
    }

    /// The target dials the feeders (nexthop, like Cilium, is the initiator).
    fn dials(self) -> bool {
        self == Target::Nexthop
    }
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    prefixes: u32,
    peers: u32,
    as_path_every: Option<u32>,
}

impl Scenario {
    fn paths(&self) -> u64 {
        u64::from(self.prefixes) * u64::from(self.peers)
    }
}

struct Outcome {
    reported: Duration,
    idle: Duration,
    rss: u64,
}

/// A running target and how to ask it for its received path count.
enum Daemon {
    Nexthop(Agent),
    Frr(Frr),
    Bird(Bird),
    Gobgp(Gobgp),
}

impl Daemon {
    fn start(target: Target, ns: &Namespaces, peers: u32) -> Daemon {
        let ns_name = ns.name("t");
        let dir = ns.dir.join(target.name());
        fs::create_dir_all(&dir).unwrap();
        match target {
            Target::Nexthop => {
                let config = dir.join("config");
                fs::create_dir_all(&config).unwrap();
                fs::write(config.join("bgp.yaml"), nexthop_config(peers)).unwrap();
                Daemon::Nexthop(Agent::start(AGENT, &ns_name, "bench", &config, &dir))
            }
            Target::Frr => Daemon::Frr(Frr::start_with(
                &ns_name,
                &dir,
                "router",
                &frr_config(peers),
                &["-n"],
            )),
            Target::Bird => Daemon::Bird(Bird::start(&ns_name, &dir, &bird_config(peers))),
            Target::Gobgp => Daemon::Gobgp(Gobgp::start(&ns_name, &dir, &gobgp_config(peers))),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Daemon::Nexthop(a) => a.pid(),
            Daemon::Frr(f) => f.bgpd_pid().parse().unwrap(),
            Daemon::Bird(b) => b.pid(),
            Daemon::Gobgp(g) => g.pid(),
        }
    }

    /// Paths received, as the daemon reports them.
    fn count(&self) -> u64 {
        match self {
            Daemon::Nexthop(a) => a.peers_json(AGENT).map_or(0, |peers| {
                let peers = peers.as_array().cloned().unwrap_or_default();
                peers
                    .iter()
                    .flat_map(|p| p["families"].as_array().cloned().unwrap_or_default())
                    .map(|f| f["received"].as_u64().unwrap_or(0))
                    .sum()
            }),
            Daemon::Frr(f) => {
                let summary = f.json("show bgp ipv4 unicast summary json");
                summary["peers"].as_object().map_or(0, |p| {
                    p.values().map(|v| v["pfxRcd"].as_u64().unwrap_or(0)).sum()
                })
            }
            Daemon::Bird(b) => b
                .try_show("show protocols all")
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Routes:"))
                .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
                .sum(),
            Daemon::Gobgp(g) => g
                .cli(&["neighbor"])
                .lines()
                .skip(1)
                .filter_map(|l| {
                    l.split_whitespace()
                        .last()?
                        .replace(',', "")
                        .parse::<u64>()
                        .ok()
                })
                .sum(),
        }
    }
}

fn nexthop_config(peers: u32) -> String {
    let list: Vec<String> = (0..peers)
        .map(|k| {
            format!(
                "    - {{name: feeder{k}, peerASN: {}, peerAddress: {}, peerConfigRef: {{name: feeder}}}}",
                feeder_as(k),
                feeder_ip(k)
            )
        })
        .collect();
    format!(
        r#"apiVersion: v1
kind: Node
metadata: {{name: bench, labels: {{enable-bgp: "true"}}}}
status: {{addresses: [{{type: InternalIP, address: {TARGET_IP}}}]}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {{name: feeder}}
spec:
  timers: {{holdTimeSeconds: 180, keepAliveTimeSeconds: 60, connectRetryTimeSeconds: 1}}
  families: [{{afi: ipv4, safi: unicast}}]
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {{name: bench}}
spec:
  nodeSelector: {{matchLabels: {{enable-bgp: "true"}}}}
  bgpInstances:
  - name: bench
    localASN: {TARGET_AS}
    peers:
{}
"#,
        list.join("\n")
    )
}

fn frr_config(peers: u32) -> String {
    let mut conf = format!(
        "frr defaults traditional\n!\nrouter bgp {TARGET_AS}\n bgp router-id {TARGET_IP}\n no bgp ebgp-requires-policy\n"
    );
    for k in 0..peers {
        conf.push_str(&format!(
            " neighbor {} remote-as {}\n",
            feeder_ip(k),
            feeder_as(k)
        ));
    }
    conf.push_str(" address-family ipv4 unicast\n");
    for k in 0..peers {
        conf.push_str(&format!("  neighbor {} route-map NONE out\n", feeder_ip(k)));
    }
    conf.push_str(" exit-address-family\n!\nroute-map NONE deny 10\n!\n");
    conf
}

fn bird_config(peers: u32) -> String {
    let mut conf = format!("router id {TARGET_IP};\nprotocol device {{}}\n");
    for k in 0..peers {
        conf.push_str(&format!(
            "protocol bgp feeder{k} {{ local {TARGET_IP} as {TARGET_AS}; neighbor {} as {}; passive on; ipv4 {{ import all; export none; }}; }}\n",
            feeder_ip(k),
            feeder_as(k)
        ));
    }
    conf
}

fn gobgp_config(peers: u32) -> String {
    let mut conf = format!(
        "[global.config]\n  as = {TARGET_AS}\n  router-id = \"{TARGET_IP}\"\n  local-address-list = [\"{TARGET_IP}\"]\n[global.apply-policy.config]\n  default-export-policy = \"reject-route\"\n"
    );
    for k in 0..peers {
        conf.push_str(&format!(
            "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n  [neighbors.transport.config]\n    passive-mode = true\n",
            feeder_ip(k),
            feeder_as(k)
        ));
    }
    conf
}

/// One feeder process: its stdin (the go signal) and its stdout lines.
struct Feeder {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Feeder {
    fn start(ns: &Namespaces, k: u32, target: Target, scenario: &Scenario) -> Feeder {
        let ip = feeder_ip(k);
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &ns.name("f"), FEEDER]);
        if target.dials() {
            command.args(["--listen", &ip]);
        } else {
            command.args(["--connect", TARGET_IP, "--bind", &ip]);
        }
        command.args(["--as", &feeder_as(k).to_string(), "--next-hop", &ip]);
        command.args(["--first", "16.0.0.0"]);
        command.args(["--count", &scenario.prefixes.to_string()]);
        if let Some(every) = scenario.as_path_every {
            command.args(["--as-path-every", &every.to_string()]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Feeder {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) if line == "ready" => Ok(()),
            Ok(line) => Err(format!("feeder said {line:?}")),
            Err(_) => Err("feeder never established its session".into()),
        }
    }

    fn go(&mut self) {
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin.write_all(b"go\n");
            let _ = stdin.flush();
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the name.
    field(11) + field(12)
}

fn run(target: Target, scenario: &Scenario) -> Result<Outcome, String> {
    let ns = Namespaces::new(&["t", "f"]);
    ns.veth("t", "eth0", "f", "eth0");
    ns.exec(
        "t",
        &[
            "ip",
            "addr",
            "add",
            &format!("{TARGET_IP}/16"),
            "dev",
            "eth0",
        ],
    );
    for k in 0..scenario.peers {
        let address = format!("{}/16", feeder_ip(k));
        ns.exec("f", &["ip", "addr", "add", &address, "dev", "eth0"]);
    }
    ns.wait_carrier("t", &["eth0"]);
    ns.wait_carrier("f", &["eth0"]);
    let mut feeders: Vec<Feeder> = Vec::new();
    let daemon;
    if target.dials() {
        for k in 0..scenario.peers {
            feeders.push(Feeder::start(&ns, k, target, scenario));
        }
        daemon = Daemon::start(target, &ns, scenario.peers);
    } else {
        daemon = Daemon::start(target, &ns, scenario.peers);
        std::thread::sleep(Duration::from_millis(500));
        for k in 0..scenario.peers {
            feeders.push(Feeder::start(&ns, k, target, scenario));
        }
    }
    for f in &feeders {
        f.wait_ready(Duration::from_secs(30))?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let pid = daemon.pid();
    let baseline = rss_bytes(pid);
    let expected = scenario.paths();
    let start = Instant::now();
    for f in &mut feeders {
        f.go();
    }
    let deadline = start + Duration::from_secs(600);
    let reported = loop {
        if daemon.count() >= expected {
            break start.elapsed();
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {expected} paths after 600 s",
                daemon.count()
            ));
        }
        // Every 10 ms, or 2% of the time so far: a poll costs the target
        // (and the shared cores) too, gobgp's CLI most of all.
        std::thread::sleep(Duration::from_millis(10).max(start.elapsed() / 50));
    };
    let mut ticks = cpu_ticks(pid);
    let mut last_change = start.elapsed();
    while start.elapsed() - last_change < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(20));
        let now = cpu_ticks(pid);
        if now != ticks {
            ticks = now;
            last_change = start.elapsed();
        }
    }
    let idle = last_change.max(reported);
    let rss = rss_bytes(pid).saturating_sub(baseline);
    drop(feeders);
    drop(daemon);
    Ok(Outcome {
        reported,
        idle,
        rss,
    })
}

fn env_list(name: &str) -> Option<Vec<String>> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

fn main() {
    if let Some(reason) = skip_reason(&["ip"]) {
        println!("bgp_ingest skipped: {reason}");
        return;
    }
    let targets: Vec<Target> = [Target::Nexthop, Target::Frr, Target::Bird, Target::Gobgp]
        .into_iter()
        .filter(|t| env_list("BGP_INGEST_TARGETS").is_none_or(|l| l.iter().any(|n| n == t.name())))
        .filter(|t| match skip_reason(t.programs()) {
            Some(reason) => {
                println!("{}: skipped ({reason})", t.label());
                false
            }
            None => true,
        })
        .collect();
    let sizes: Vec<u32> = env_list("BGP_INGEST_PREFIXES")
        .map(|l| l.iter().filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    println!(
        "| target | prefixes × peers | AS_PATHs | until reported | until idle | RSS growth | bytes/path |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &prefixes in &sizes {
        let scenarios = [
            Scenario {
                prefixes,
                peers: 1,
                as_path_every: None,
            },
            Scenario {
                prefixes,
                peers: 1,
                as_path_every: Some(10),
            },
            Scenario {
                prefixes,
                peers: 4,
                as_path_every: None,
            },
        ];
        for scenario in &scenarios {
            for &target in &targets {
                let paths = match scenario.as_path_every {
                    Some(n) => format!("one per {n} prefixes"),
                    None => "one".into(),
                };
                let shape = format!("{} × {}", prefixes, scenario.peers);
                match run(target, scenario) {
                    Ok(o) => println!(
                        "| {} | {shape} | {paths} | {:.2} s | {:.2} s | {:.0} MiB | {:.0} |",
                        target.label(),
                        o.reported.as_secs_f64(),
                        o.idle.as_secs_f64(),
                        o.rss as f64 / (1024.0 * 1024.0),
                        o.rss as f64 / scenario.paths() as f64,
                    ),
                    Err(e) => println!(
                        "| {} | {shape} | {paths} | failed: {e} | | | |",
                        target.label()
                    ),
                }
            }
        }
    }
}
