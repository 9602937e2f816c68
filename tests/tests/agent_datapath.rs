//! `nexthop-agent datapath` on a router namespace: src — rtr — dst over veth.
//! The agent mirrors rtr's kernel routes and neighbours into the XDP datapath
//! on r0 and r1; pings cross rtr as frames the program forwards (its
//! counters say so), keep crossing while no agent runs, and a route added to
//! the kernel is picked up by the next agent, which takes over the pinned
//! datapath; its Prometheus page counts them too. `datapath remove` detaches
//! it. Needs root; skips with the reason.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nexthop_offload_bpf::datapath::{Attachment, Capacity, Datapath, mount_bpffs};
use nexthop_testkit::{Namespaces, in_ns, sh, skips, wait_for};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

/// The pin directory of one test on the bpf filesystem; removed with the
/// agent's own `datapath remove` on drop.
struct Pins(PathBuf);

impl Pins {
    fn new(tag: &str) -> Result<Pins, String> {
        let root = Path::new("/sys/fs/bpf");
        mount_bpffs(root).map_err(|e| e.to_string())?;
        Ok(Pins(root.join(tag)))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = Command::new(AGENT)
            .args(["datapath", "remove", "--pin-dir"])
            .arg(&self.0)
            .status();
    }
}

/// A `datapath run` in rtr, stopped (SIGTERM) on drop.
struct Run {
    child: Child,
    log: PathBuf,
}

impl Run {
    fn start(ns: &Namespaces, pins: &Pins, n: u32) -> Run {
        let log = ns.dir.join(format!("datapath-{n}.log"));
        // nsenter, not `ip netns exec`: the latter remounts /sys, hiding the bpffs.
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", ns.name("rtr")))
            .args([AGENT, "datapath", "run"])
            .args(["-i", "r0", "-i", "r1", "--interval-ms", "200"])
            .args(["--metrics", "127.0.0.1:9962", "--pin-dir"])
            .arg(&pins.0)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let run = Run { child, log };
        wait_for(
            "the datapath to attach",
            Duration::from_secs(20),
            || run.log().contains("datapath attached").then_some(()),
            || run.log(),
        );
        run
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: the agent exits, the datapath stays.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "agent exited with {status}: {}",
            self.log()
        );
        self.log()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `XDP_PASS` program on the far ends of rtr's veths (src's s0, dst's
/// d0): a veth only wakes its peer for frames sent with `XDP_TX` when the
/// peer has an XDP program. Detached on drop.
struct Peers(Datapath, Vec<Attachment>);

impl Peers {
    fn attach(ns: &Namespaces, ends: &[(&str, &'static str)]) -> Peers {
        let mut dp = Datapath::load(&Capacity::default()).expect("the XDP object loads");
        let mut attached = Vec::new();
        for &(name, interface) in ends {
            in_ns(&ns.name(name), || {
                attached.push(dp.attach_peer(interface).expect("attach the pass program"));
            });
        }
        Peers(dp, attached)
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for a in self.1.drain(..) {
            let _ = self.0.detach(a);
        }
    }
}

fn forwarded(pins: &Pins) -> u64 {
    let out = Command::new(AGENT)
        .args(["datapath", "stats", "-o", "json", "--pin-dir"])
        .arg(&pins.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    stats["Forwarded"].as_u64().unwrap()
}

fn ping(ns: &Namespaces, to: &str) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name("src"),
            "ping",
            "-c",
            "4",
            "-i",
            "0.2",
            "-W",
            "2",
            to,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn agent_mirrors_kernel_routes_into_xdp_and_survives_restarts() {
    if skips(&["ip", "ping", "nsenter", "curl"]) {
        return;
    }
    let ns = Namespaces::new(&["src", "rtr", "dst"]);
    let pins = match Pins::new(&ns.name("pins")) {
        Ok(p) => p,
        Err(why) => {
            nexthop_testkit::skip(&why);
            return;
        }
    };
    ns.veth("src", "s0", "rtr", "r0");
    ns.veth("rtr", "r1", "dst", "d0");
    ns.exec("src", &["ip", "addr", "add", "10.72.1.2/24", "dev", "s0"]);
    ns.exec("rtr", &["ip", "addr", "add", "10.72.1.1/24", "dev", "r0"]);
    ns.exec("rtr", &["ip", "addr", "add", "10.72.2.1/24", "dev", "r1"]);
    ns.exec("dst", &["ip", "addr", "add", "10.72.2.2/24", "dev", "d0"]);
    ns.exec("dst", &["ip", "addr", "add", "10.72.9.1/32", "dev", "lo"]);
    ns.exec(
        "src",
        &["ip", "route", "add", "default", "via", "10.72.1.1"],
    );
    ns.exec(
        "dst",
        &["ip", "route", "add", "default", "via", "10.72.2.1"],
    );
    // The kernel forwards what the datapath passes up (first packets, before
    // a neighbour is known).
    ns.exec("rtr", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let _peers = Peers::attach(&ns, &[("src", "s0"), ("dst", "d0")]);
    ns.wait_carrier("rtr", &["r0", "r1"]);

    let first = Run::start(&ns, &pins, 1);
    assert!(ping(&ns, "10.72.2.2"), "{}", first.log());
    let before = wait_for(
        "pings forwarded by XDP once rtr knows both neighbours",
        Duration::from_secs(10),
        || {
            let before = forwarded(&pins);
            (ping(&ns, "10.72.2.2") && forwarded(&pins) >= before + 8).then_some(before)
        },
        || first.log(),
    );
    let log = first.stop();
    assert!(log.contains("kernel state changed: synced"), "{log}");

    // No agent: the pinned datapath still forwards.
    let unowned = forwarded(&pins);
    assert!(unowned >= before + 8);
    assert!(
        ping(&ns, "10.72.2.2"),
        "pings cross rtr with no agent running"
    );
    assert!(
        forwarded(&pins) >= unowned + 8,
        "4 requests and 4 replies forwarded by XDP with no agent"
    );

    // A route added meanwhile reaches the datapath through the next agent.
    ns.exec(
        "rtr",
        &["ip", "route", "add", "10.72.9.0/24", "via", "10.72.2.2"],
    );
    let second = Run::start(&ns, &pins, 2);
    let before = forwarded(&pins);
    assert!(ping(&ns, "10.72.9.1"), "{}", second.log());
    assert!(forwarded(&pins) >= before + 8, "{}", second.log());
    let metrics = ns.exec("rtr", &["curl", "-s", "http://127.0.0.1:9962/metrics"]);
    let scraped: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "nexthop_datapath_packets_total{reason=\"forwarded\",action=\"transmit\"} ",
            )
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no forwarded counter in\n{metrics}"));
    assert!(scraped >= before + 8, "{metrics}");
    let table = sh(&[
        AGENT,
        "datapath",
        "stats",
        "--pin-dir",
        pins.0.to_str().unwrap(),
    ]);
    assert!(
        table.starts_with("REASON") && table.contains("Forwarded"),
        "{table}"
    );
    second.stop();

    // Removing the pins detaches the program from r0 and r1.
    sh(&[
        AGENT,
        "datapath",
        "remove",
        "--pin-dir",
        pins.0.to_str().unwrap(),
    ]);
    let link = ns.exec("rtr", &["ip", "-d", "link", "show", "r0"]);
    assert!(!link.contains("prog/xdp"), "{link}");
    let gone = Command::new(AGENT)
        .args(["datapath", "stats", "--pin-dir"])
        .arg(&pins.0)
        .output()
        .unwrap();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("REASONS"));
}
