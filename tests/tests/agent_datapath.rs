//! `nexthop-agent datapath` on a router namespace: src — rtr — dst over veth.
//! The agent mirrors rtr's kernel routes and neighbours into the XDP datapath
//! on r0 and r1; pings cross rtr as frames the program forwards (its
//! counters say so), keep crossing while no agent runs, and a route added to
//! the kernel is picked up by the next agent, which takes over the pinned
//! datapath; its Prometheus page counts them too. `datapath remove` detaches
//! it. Needs root; skips with the reason.
//!
//! With `--kube-proxy-replacement`, `nexthop-agent run` serves a
//! LoadBalancer service from its config directory in the same datapath:
//! clients in src reach the backend in dst through an address rtr's kernel
//! knows nothing of, source-NATed to rtr's InternalIP, and a connection
//! opened through it outlives `kill -9` of the agent and its restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nexthop_offload_bpf::datapath::{Attachment, Capacity, Datapath, cgroup2_mount, mount_bpffs};
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
            || run.log().contains("datapath running").then_some(()),
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
    fn attach(ns: &Namespaces, ends: &[(&str, &str)]) -> Peers {
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

/// src 10.72.1.2 — r0 10.72.1.1 [rtr] r1 10.72.2.1 — dst 10.72.2.2, src and
/// dst routing everything through rtr.
fn src_rtr_dst(ns: &Namespaces) {
    ns.veth("src", "s0", "rtr", "r0");
    ns.veth("rtr", "r1", "dst", "d0");
    run_in(ns, "src", "ip addr add 10.72.1.2/24 dev s0");
    run_in(ns, "rtr", "ip addr add 10.72.1.1/24 dev r0");
    run_in(ns, "rtr", "ip addr add 10.72.2.1/24 dev r1");
    run_in(ns, "dst", "ip addr add 10.72.2.2/24 dev d0");
    run_in(ns, "src", "ip route add default via 10.72.1.1");
    run_in(ns, "dst", "ip route add default via 10.72.2.1");
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
    src_rtr_dst(&ns);
    ns.exec("dst", &["ip", "addr", "add", "10.72.9.1/32", "dev", "lo"]);
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

/// A cgroup (v2) of the test's own, removed on drop (once its processes are gone).
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str) -> Result<Cgroup, String> {
        let root = cgroup2_mount().ok_or("no cgroup2 hierarchy is mounted")?;
        let path = root.join(tag);
        fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Cgroup(path))
    }

    /// Run `script` with `sh` in rtr's namespace, from inside this cgroup
    /// (so its sockets are the cgroup's); its standard output.
    fn run(&self, ns: &Namespaces, script: &str) -> String {
        let procs = self.0.join("cgroup.procs");
        let inside = format!("echo $$ > {} && exec {script}", procs.display());
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", ns.name("rtr")))
            .args(["sh", "-c", &inside])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

/// A node an agent runs on: its namespace (and Node object) name, its
/// datapath interfaces (uplinks, then those facing its pods) and further
/// arguments.
struct Node {
    name: &'static str,
    interfaces: &'static [&'static str],
    pods: &'static [&'static str],
    args: &'static [&'static str],
}

impl Node {
    /// The agent's query socket.
    fn socket(&self, ns: &Namespaces) -> PathBuf {
        ns.dir.join(format!("agent-{}.sock", self.name))
    }
}

/// A `nexthop-agent run` serving services; killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// rtr's agent, as the single-node tests run it.
    fn start(ns: &Namespaces, pins: &Pins, cgroup: &Cgroup, config: &Path, n: u32) -> Agent {
        let node = Node {
            name: "rtr",
            interfaces: &["r0", "r1"],
            pods: &[],
            args: &[],
        };
        Agent::start_on(ns, &node, pins, cgroup, config, n)
    }

    /// The agent of `node` (in the namespace of its name) serving services
    /// from `config` with `--kube-proxy-replacement`, socket-level
    /// load-balancing in `cgroup`; started `n`-th (its log's name).
    fn start_on(
        ns: &Namespaces,
        node: &Node,
        pins: &Pins,
        cgroup: &Cgroup,
        config: &Path,
        n: u32,
    ) -> Agent {
        let log = ns.dir.join(format!("agent-{}-{n}.log", node.name));
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", ns.name(node.name)))
            .args([AGENT, "run", "--node", node.name, "--config-dir"])
            .arg(config)
            .arg("--socket")
            .arg(node.socket(ns));
        for interface in node.interfaces {
            command.args(["--datapath-interface", interface]);
        }
        for interface in node.pods {
            command.args(["--datapath-pod-interface", interface]);
        }
        let child = command
            .arg("--datapath-pin-dir")
            .arg(&pins.0)
            .arg("--kube-proxy-replacement")
            .arg("--cgroup-root")
            .arg(&cgroup.0)
            .args(node.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let agent = Agent { child, log };
        wait_for(
            "the agent's datapath to attach",
            Duration::from_secs(20),
            || {
                agent
                    .log()
                    .contains("socket-level load-balancing attached")
                    .then_some(())
            },
            || agent.log(),
        );
        agent
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: nothing gets to clean up.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rtr's Node (InternalIP 10.72.2.1) and another, webpod as a LoadBalancer
/// service on 172.16.7.1:80 (LB-IPAM's first address of its pool) with
/// cluster IP 10.96.0.10, and its one endpoint, 10.72.2.2:5001 on the other
/// node.
fn service_config(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let objects = "apiVersion: v1\nkind: Node\nmetadata: {name: rtr}\nspec: {podCIDRs: [10.244.0.0/24]}\n\
status:\n  addresses: [{type: InternalIP, address: 10.72.2.1}]\n---\n\
apiVersion: v1\nkind: Node\nmetadata: {name: other}\nspec: {podCIDRs: [10.244.1.0/24]}\n\
status:\n  addresses: [{type: InternalIP, address: 10.72.2.2}]\n---\n\
apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: pool}\n\
spec:\n  allowFirstLastIPs: \"No\"\n  blocks: [{cidr: 172.16.7.0/24}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: webpod, namespace: default}\n\
spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.10\n  ports: [{protocol: TCP, port: 80, targetPort: 5001, nodePort: 30285}]\n\
status:\n  loadBalancer:\n    ingress: [{ip: 172.16.7.1}]\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: webpod-abcde, namespace: default, labels: {kubernetes.io/service-name: webpod}}\n\
addressType: IPv4\nports: [{name: \"\", port: 5001, protocol: TCP}]\n\
endpoints:\n- {addresses: [10.72.2.2], conditions: {ready: true, serving: true, terminating: false}, nodeName: other}\n";
    fs::write(dir.join("objects.yaml"), objects).unwrap();
}

#[test]
fn agent_serves_a_loadbalancer_service_in_xdp_and_connections_outlive_it() {
    if skips(&["ip", "nsenter", "ping"]) {
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
    src_rtr_dst(&ns);
    let _peers = Peers::attach(&ns, &[("src", "s0"), ("dst", "d0")]);
    ns.wait_carrier("rtr", &["r0", "r1"]);
    // rtr's kernel knows both neighbours and nothing of 172.16.7.1: only the
    // XDP service stage can carry a connection to it.
    ns.exec("rtr", &["ping", "-c", "1", "-W", "2", "10.72.1.2"]);
    ns.exec("rtr", &["ping", "-c", "1", "-W", "2", "10.72.2.2"]);
    let cgroup = match Cgroup::new(&ns.name("cgroup")) {
        Ok(c) => c,
        Err(why) => {
            nexthop_testkit::skip(&why);
            return;
        }
    };
    let config = ns.dir.join("config");
    service_config(&config);
    let agent = Agent::start(&ns, &pins, &cgroup, &config, 1);

    let listener = in_ns(&ns.name("dst"), || {
        TcpListener::bind("10.72.2.2:5001").unwrap()
    });
    let connections = 6;
    let server = std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut conn, peer) = listener.accept().unwrap();
            let mut data = Vec::new();
            conn.read_to_end(&mut data).unwrap();
            conn.write_all(format!("RemoteAddr: {peer}\n").as_bytes())
                .unwrap();
            conn.write_all(&data).unwrap();
        }
    });
    let lb: SocketAddr = "172.16.7.1:80".parse().unwrap();
    let connect = || {
        wait_for(
            "a connection to the LoadBalancer address",
            Duration::from_secs(10),
            || {
                in_ns(&ns.name("src"), || {
                    TcpStream::connect_timeout(&lb, Duration::from_secs(1)).ok()
                })
            },
            || agent.log(),
        )
    };
    for _ in 0..connections - 1 {
        let mut conn = connect();
        conn.write_all(b"hello").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = String::new();
        conn.read_to_string(&mut back).unwrap();
        assert!(
            back.starts_with("RemoteAddr: 10.72.2.1:") && back.ends_with("hello"),
            "the backend sees rtr's InternalIP: {back}"
        );
    }
    let list = sh(&[
        AGENT,
        "service",
        "list",
        "--socket",
        ns.dir.join("agent-rtr.sock").to_str().unwrap(),
    ]);
    assert!(
        list.contains("172.16.7.1:80/TCP") && list.contains("10.72.2.2:5001/TCP"),
        "{list}"
    );

    // One more connection, written to across kill -9 and a restart.
    let mut long = connect();
    long.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    long.write_all(b"before ").unwrap();
    let log = agent.kill();
    assert!(log.contains("datapath attached"), "{log}");
    long.write_all(b"unowned ").unwrap();
    let agent = Agent::start(&ns, &pins, &cgroup, &config, 2);
    long.write_all(b"after").unwrap();
    long.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = String::new();
    long.read_to_string(&mut back).unwrap();
    server.join().unwrap();
    assert!(
        back.starts_with("RemoteAddr: 10.72.2.1:") && back.ends_with("before unowned after"),
        "one connection across the agent's death and restart: {back}\n{}",
        agent.log()
    );

    // The cluster IP, from a process of the cgroup the restarted agent
    // took the socket programs over in: rtr's kernel has no route to
    // 10.96.0.10, so only connect()'s translation reaches the backend.
    let listener = in_ns(&ns.name("dst"), || {
        TcpListener::bind("10.72.2.2:5001").unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().unwrap();
        conn.write_all(format!("RemoteAddr: {peer}\n").as_bytes())
            .unwrap();
    });
    let got = cgroup.run(&ns, "bash -c 'cat < /dev/tcp/10.96.0.10/80'");
    server.join().unwrap();
    assert!(
        got.starts_with("RemoteAddr: 10.72.2.1:"),
        "connect() to the cluster IP reaches the backend from rtr's own address: {got}\n{}",
        agent.log()
    );
}

/// Run `command` (words separated by spaces) in namespace `name`.
fn run_in(ns: &Namespaces, name: &str, command: &str) {
    ns.exec(name, &command.split(' ').collect::<Vec<_>>());
}

/// Where the three-node lab's backends run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backends {
    /// b1–b4 on the fabric (10.73.10.1h), on a node `w` no agent runs:
    /// every backend is remote to every ingress node.
    Fabric,
    /// b1–b3 as pods behind n1–n3 (10.73.2k.2, the node's pod port n{k}p).
    Pods,
}

impl Backends {
    /// Each backend's namespace, address and node.
    fn all(self) -> Vec<(String, String, String)> {
        match self {
            Backends::Fabric => (1..=4)
                .map(|h| (format!("b{h}"), format!("10.73.10.1{h}"), "w".into()))
                .collect(),
            Backends::Pods => (1..=3)
                .map(|k| (format!("b{k}"), format!("10.73.2{k}.2"), format!("n{k}")))
                .collect(),
        }
    }
}

/// Three nodes n1–n3 between a client and the fabric, each with the pins
/// and cgroup of its agent:
///
/// ```text
/// client ─(10.73.k.0/24: ck—nku)─ nk ─(nkf)─ br0 in fabric (10.73.10.0/24, nk = .k)
///   lo: 10.73.9.1, .2                └─(nkp, 10.73.2k.0/24)─ bk   (Backends::Pods)
/// ```
struct ThreeNodes {
    /// The XDP_PASS programs on the far ends of the nodes' ports.
    _peers: Peers,
    pins: Vec<Pins>,
    cgroups: Vec<Cgroup>,
    config: PathBuf,
    backends: Backends,
    ns: Namespaces,
}

impl ThreeNodes {
    /// The lab; `None` when the test must skip (said why).
    fn build(backends: Backends) -> Option<ThreeNodes> {
        if skips(&["ip", "nsenter", "ping"]) {
            return None;
        }
        let mut names = vec!["client", "n1", "n2", "n3", "fabric"];
        let hosts = backends.all();
        names.extend(hosts.iter().map(|(b, _, _)| b.as_str()));
        let ns = Namespaces::new(&names);
        let (mut pins, mut cgroups) = (Vec::new(), Vec::new());
        for k in 1..=3 {
            let pin = Pins::new(&ns.name(&format!("pins{k}")));
            let cgroup = Cgroup::new(&ns.name(&format!("cgroup{k}")));
            match (pin, cgroup) {
                (Ok(p), Ok(c)) => {
                    pins.push(p);
                    cgroups.push(c);
                }
                (Err(why), _) | (_, Err(why)) => {
                    nexthop_testkit::skip(&why);
                    return None;
                }
            }
        }
        run_in(&ns, "fabric", "ip link add br0 type bridge");
        run_in(&ns, "fabric", "ip link set br0 up");
        // Replies of DSR come back on another link than their requests left.
        run_in(&ns, "client", "sysctl -qw net.ipv4.conf.all.rp_filter=0");
        run_in(&ns, "client", "ip addr add 10.73.9.1/32 dev lo");
        run_in(&ns, "client", "ip addr add 10.73.9.2/32 dev lo");
        let mut far_ends = Vec::new();
        for k in 1..=3u8 {
            let n = format!("n{k}");
            ns.veth("client", &format!("c{k}"), &n, &format!("n{k}u"));
            ns.veth(&n, &format!("n{k}f"), "fabric", &format!("p{k}"));
            run_in(&ns, "fabric", &format!("ip link set p{k} master br0"));
            run_in(
                &ns,
                "client",
                &format!("sysctl -qw net.ipv4.conf.c{k}.rp_filter=0"),
            );
            run_in(
                &ns,
                "client",
                &format!("ip addr add 10.73.{k}.2/24 dev c{k}"),
            );
            run_in(
                &ns,
                "client",
                &format!("ip route add 10.73.10.{k}/32 via 10.73.{k}.1"),
            );
            run_in(&ns, &n, &format!("ip addr add 10.73.{k}.1/24 dev n{k}u"));
            run_in(&ns, &n, &format!("ip addr add 10.73.10.{k}/24 dev n{k}f"));
            run_in(
                &ns,
                &n,
                &format!("ip route add 10.73.9.0/24 via 10.73.{k}.2"),
            );
            far_ends.push(("client".to_string(), format!("c{k}")));
            far_ends.push(("fabric".to_string(), format!("p{k}")));
        }
        for (k, (b, addr, _)) in hosts.iter().enumerate() {
            let k = k + 1;
            match backends {
                Backends::Fabric => {
                    ns.veth(b, "eth0", "fabric", &format!("q{k}"));
                    run_in(&ns, "fabric", &format!("ip link set q{k} master br0"));
                    run_in(&ns, b, &format!("ip addr add {addr}/24 dev eth0"));
                }
                Backends::Pods => {
                    ns.veth(b, "eth0", &format!("n{k}"), &format!("n{k}p"));
                    run_in(
                        &ns,
                        &format!("n{k}"),
                        &format!("ip addr add 10.73.2{k}.1/24 dev n{k}p"),
                    );
                    run_in(&ns, b, &format!("ip addr add {addr}/24 dev eth0"));
                    run_in(&ns, b, &format!("ip route add default via 10.73.2{k}.1"));
                    far_ends.push((b.clone(), "eth0".to_string()));
                }
            }
        }
        let ends: Vec<(&str, &str)> = far_ends
            .iter()
            .map(|(n, i)| (n.as_str(), i.as_str()))
            .collect();
        let peers = Peers::attach(&ns, &ends);
        for k in 1..=3u8 {
            let n = format!("n{k}");
            let mut ports = vec![format!("n{k}u"), format!("n{k}f")];
            if backends == Backends::Pods {
                ports.push(format!("n{k}p"));
            }
            ns.wait_carrier(&n, &ports.iter().map(String::as_str).collect::<Vec<_>>());
            // The kernel's neighbours, which the agents mirror.
            let mut near = vec![format!("10.73.{k}.2")];
            near.extend((1..=3).filter(|&j| j != k).map(|j| format!("10.73.10.{j}")));
            match backends {
                Backends::Fabric => near.extend(hosts.iter().map(|(_, a, _)| a.clone())),
                Backends::Pods => near.push(format!("10.73.2{k}.2")),
            }
            for addr in near {
                run_in(&ns, &n, &format!("ping -c 1 -W 2 {addr}"));
            }
        }
        let config = ns.dir.join("config");
        fs::create_dir_all(&config).unwrap();
        Some(ThreeNodes {
            _peers: peers,
            pins,
            cgroups,
            config,
            backends,
            ns,
        })
    }

    /// The objects with the service's endpoints on the backends `serving`
    /// (their indexes, from 0).
    fn objects(&self, serving: &[usize]) -> String {
        three_node_objects(&self.backends.all(), serving)
    }

    /// Agents on n1–n3 serving `objects` with `args`.
    fn start(&self, objects: &str, args: &'static [&'static str]) -> Vec<Agent> {
        fs::write(self.config.join("objects.yaml"), objects).unwrap();
        let nodes = [
            Node {
                name: "n1",
                interfaces: &["n1u", "n1f"],
                pods: &["n1p"],
                args,
            },
            Node {
                name: "n2",
                interfaces: &["n2u", "n2f"],
                pods: &["n2p"],
                args,
            },
            Node {
                name: "n3",
                interfaces: &["n3u", "n3f"],
                pods: &["n3p"],
                args,
            },
        ];
        nodes
            .iter()
            .zip(self.pins.iter().zip(&self.cgroups))
            .map(|(node, (pins, cgroup))| {
                let node = Node {
                    pods: if self.backends == Backends::Pods {
                        node.pods
                    } else {
                        &[]
                    },
                    ..*node
                };
                Agent::start_on(&self.ns, &node, pins, cgroup, &self.config, 1)
            })
            .collect()
    }
}

/// The three-node lab's objects: nodes n1–n3 (InternalIP 10.73.10.k, pods
/// 10.73.2k.0/24) and `w`, and `dns` as a UDP LoadBalancer service on 172.16.8.1:53 (NodePort
/// 30053) with the backends `serving` of `hosts` (namespace, address, node)
/// listening on 5353.
fn three_node_objects(hosts: &[(String, String, String)], serving: &[usize]) -> String {
    let mut objects = String::new();
    for (name, addr, pods) in [
        ("n1", "10.73.10.1", "[10.73.21.0/24]"),
        ("n2", "10.73.10.2", "[10.73.22.0/24]"),
        ("n3", "10.73.10.3", "[10.73.23.0/24]"),
        ("w", "10.73.10.20", "[]"),
    ] {
        objects += &format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec: {{podCIDRs: {pods}}}\n\
             status:\n  addresses: [{{type: InternalIP, address: {addr}}}]\n---\n"
        );
    }
    objects += "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: pool}\n\
spec:\n  allowFirstLastIPs: \"No\"\n  blocks: [{cidr: 172.16.8.0/24}]\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: default}\n\
spec:\n  type: LoadBalancer\n  clusterIP: 10.96.0.53\n  ports: [{protocol: UDP, port: 53, targetPort: 5353, nodePort: 30053}]\n\
status:\n  loadBalancer:\n    ingress: [{ip: 172.16.8.1}]\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: dns-abcde, namespace: default, labels: {kubernetes.io/service-name: dns}}\n\
addressType: IPv4\nports: [{name: \"\", port: 5353, protocol: UDP}]\nendpoints:\n";
    for &i in serving {
        let (_, addr, node) = &hosts[i];
        objects += &format!(
            "- {{addresses: [{addr}], conditions: {{ready: true, serving: true, terminating: false}}, nodeName: {node}}}\n"
        );
    }
    objects
}

/// UDP servers on the lab's backends answering every datagram with their
/// name and the address it came from, until dropped.
struct Servers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(lab: &ThreeNodes) -> Servers {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = lab
            .backends
            .all()
            .into_iter()
            .map(|(name, addr, _)| {
                let socket = in_ns(&lab.ns.name(&name), || {
                    UdpSocket::bind(format!("{addr}:5353")).unwrap()
                });
                socket
                    .set_read_timeout(Some(Duration::from_millis(100)))
                    .unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        if let Ok((_, from)) = socket.recv_from(&mut buf) {
                            let answer = format!("{name} {}", from.ip());
                            let _ = socket.send_to(answer.as_bytes(), from);
                        }
                    }
                })
            })
            .collect();
        Servers { stop, threads }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Flows from `client` (its source ports `ports`) to `to` through node
/// `via` (1–3): each one's answer (the backend's name and the source it
/// saw), checking every reply comes from `to`.
fn flows(
    ns: &Namespaces,
    client: &str,
    via: u8,
    to: SocketAddr,
    ports: std::ops::Range<u16>,
) -> BTreeMap<u16, String> {
    run_in(
        ns,
        "client",
        &format!("ip route replace {}/32 via 10.73.{via}.1", to.ip()),
    );
    in_ns(&ns.name("client"), || {
        ports
            .map(|port| {
                let socket = UdpSocket::bind((client, port)).unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut buf = [0u8; 64];
                let mut answer = None;
                for _ in 0..3 {
                    socket.send_to(b"?", to).unwrap();
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        answer = Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                        break;
                    }
                }
                let (answer, from) = answer
                    .unwrap_or_else(|| panic!("no answer to {client}:{port} → {to} via n{via}"));
                assert_eq!(from, to, "the reply comes from the service address");
                (port, answer)
            })
            .collect()
    })
}

/// The backends named in `answers`.
fn reached(answers: &BTreeMap<u16, String>) -> BTreeSet<&str> {
    answers
        .values()
        .filter_map(|a| a.split(' ').next())
        .collect()
}

#[test]
fn three_agents_balance_a_service_with_maglev_alike_and_a_removed_backend_moves_only_its_flows() {
    let Some(lab) = ThreeNodes::build(Backends::Fabric) else {
        return;
    };
    let agents = lab.start(
        &lab.objects(&[0, 1, 2, 3]),
        &["--bpf-lb-algorithm", "maglev"],
    );
    let _servers = Servers::start(&lab);
    let lb: SocketAddr = "172.16.8.1:53".parse().unwrap();

    // Every node reaches every backend, through the LB address and its NodePort.
    let through: Vec<BTreeMap<u16, String>> = (1..=3)
        .map(|k| flows(&lab.ns, "10.73.9.1", k, lb, 20000..20200))
        .collect();
    for k in 1..=3u8 {
        let nodeport: SocketAddr = format!("10.73.10.{k}:30053").parse().unwrap();
        let by_nodeport = flows(&lab.ns, "10.73.9.1", k, nodeport, 21000..21100);
        for seen in [&through[usize::from(k - 1)], &by_nodeport] {
            assert_eq!(
                reached(seen).len(),
                4,
                "n{k} reaches every backend: {seen:?}"
            );
            assert!(
                seen.values()
                    .all(|a| a.ends_with(&format!(" 10.73.10.{k}"))),
                "the backends see n{k}'s SNAT address: {seen:?}"
            );
        }
    }
    // Maglev with one seed: a flow reaches one backend whichever node it
    // enters (the source each backend sees is that node's; the names agree).
    let names = |m: &BTreeMap<u16, String>| -> Vec<String> {
        m.values()
            .map(|a| a.split(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&through[0]),
        names(&through[1]),
        "n1 and n2 pick alike"
    );
    assert_eq!(
        names(&through[0]),
        names(&through[2]),
        "n1 and n3 pick alike"
    );

    // Remove b4: flows measured before through n1 and after through n2
    // (which never saw this client, so Maglev alone decides).
    let before = flows(&lab.ns, "10.73.9.2", 1, lb, 22000..22400);
    let synced = |a: &Agent| a.log().matches("the service table changed: synced").count();
    let counts: Vec<usize> = agents.iter().map(synced).collect();
    fs::write(lab.config.join("objects.yaml"), lab.objects(&[0, 1, 2])).unwrap();
    for (a, &n) in agents.iter().zip(&counts) {
        wait_for(
            "the agents to serve the table without b4",
            Duration::from_secs(20),
            || (synced(a) > n).then_some(()),
            || a.log(),
        );
    }
    let after = flows(&lab.ns, "10.73.9.2", 2, lb, 22000..22400);
    let name = |a: &String| a.split(' ').next().unwrap().to_string();
    let of_b4 = before.values().filter(|b| name(b) == "b4").count();
    let moved_b4 = before
        .iter()
        .filter(|(p, b)| name(b) == "b4" && name(&after[*p]) != "b4")
        .count();
    let others = before.len() - of_b4;
    let moved_others = before
        .iter()
        .filter(|(p, b)| name(b) != "b4" && name(&after[*p]) != name(b))
        .count();
    println!(
        "removing 1 of 4 backends (Maglev, M 16381): {moved_b4} of b4's {of_b4} flows moved; \
         {moved_others} of the other {others} flows moved ({:.1}%)",
        100.0 * moved_others as f64 / others as f64
    );
    assert_eq!(moved_b4, of_b4, "every flow of the removed backend moves");
    assert!(of_b4 > 0, "some flows reached b4 before");
    assert!(
        moved_others * 10 <= others,
        "Maglev keeps the other flows where they were: {moved_others} of {others} moved"
    );
}

/// Packets the client received on each of c1–c3.
fn client_rx(ns: &Namespaces) -> Vec<u64> {
    (1..=3)
        .map(|k| {
            // `ip netns exec` mounts the namespace's own sysfs.
            let path = format!("/sys/class/net/c{k}/statistics/rx_packets");
            ns.exec("client", &["cat", &path]).trim().parse().unwrap()
        })
        .collect()
}

#[test]
fn three_agents_in_dsr_mode_dispatch_to_the_backends_node_which_answers_the_client_directly() {
    let Some(lab) = ThreeNodes::build(Backends::Pods) else {
        return;
    };
    let _agents = lab.start(&lab.objects(&[0, 1, 2]), &["--bpf-lb-mode", "dsr"]);
    let _servers = Servers::start(&lab);
    let lb: SocketAddr = "172.16.8.1:53".parse().unwrap();
    let rx_before = client_rx(&lab.ns);
    let answers = flows(&lab.ns, "10.73.9.1", 1, lb, 23000..23300);
    let rx_after = client_rx(&lab.ns);
    assert_eq!(
        reached(&answers).len(),
        3,
        "n1 reaches every backend: {answers:?}"
    );
    assert!(
        answers.values().all(|a| a.ends_with(" 10.73.9.1")),
        "every backend sees the client's own address: {answers:?}"
    );
    let per_backend: Vec<u64> = (1..=3)
        .map(|k| {
            answers
                .values()
                .filter(|a| a.starts_with(&format!("b{k} ")))
                .count() as u64
        })
        .collect();
    let got: Vec<u64> = rx_after
        .iter()
        .zip(&rx_before)
        .map(|(a, b)| a - b)
        .collect();
    println!(
        "DSR through n1: answers per backend (b1 on n1, b2 on n2, b3 on n3) {per_backend:?}; \
         packets the client received on its links to n1, n2, n3 {got:?}"
    );
    for k in 1..3 {
        assert!(
            got[k] >= per_backend[k],
            "b{}'s answers come straight from its node n{}: {got:?} vs {per_backend:?}",
            k + 1,
            k + 1
        );
    }
    assert!(
        got[0] < per_backend.iter().sum::<u64>(),
        "answers of the other nodes' backends bypass n1: {got:?} vs {per_backend:?}"
    );
}

/// A UDP server in the client's namespace on `at`, answering every
/// datagram with the address it came from, until dropped.
fn outside_server(ns: &Namespaces, at: SocketAddr) -> Servers {
    let socket = in_ns(&ns.name("client"), || UdpSocket::bind(at).unwrap());
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while !running.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(from.ip().to_string().as_bytes(), from);
            }
        }
    });
    Servers {
        stop,
        threads: vec![thread],
    }
}

/// What the outside server `to` says it saw, asked from pod `pod` (its
/// namespace and address) on source port `port`; `None` without an answer.
fn ask_from_pod(ns: &Namespaces, pod: (&str, &str), port: u16, to: SocketAddr) -> Option<String> {
    in_ns(&ns.name(pod.0), || {
        let socket = UdpSocket::bind((pod.1, port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 64];
        for _ in 0..3 {
            socket.send_to(b"?", to).unwrap();
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                assert_eq!(from, to, "the answer comes from the server's own address");
                return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        None
    })
}

#[test]
fn pods_reaching_outside_the_native_routing_cidr_are_masqueraded_and_their_inbound_flows_are_not() {
    let Some(lab) = ThreeNodes::build(Backends::Pods) else {
        return;
    };
    let server: SocketAddr = "10.73.9.1:6000".parse().unwrap();
    let _server = outside_server(&lab.ns, server);
    let pods = [
        ("b1", "10.73.21.2"),
        ("b2", "10.73.22.2"),
        ("b3", "10.73.23.2"),
    ];
    // Without masquerading the outside sees the pods' own addresses, which
    // it has no route back to.
    let agents = lab.start(&lab.objects(&[0, 1, 2]), &[]);
    for (k, pod) in pods.iter().enumerate() {
        assert_eq!(
            ask_from_pod(&lab.ns, *pod, 41000 + k as u16, server),
            None,
            "{pod:?} is not masqueraded"
        );
    }
    drop(agents);
    let _agents = lab.start(
        &lab.objects(&[0, 1, 2]),
        &[
            "--enable-bpf-masquerade",
            "--ipv4-native-routing-cidr",
            "10.73.16.0/20",
        ],
    );
    let mut seen = Vec::new();
    for (k, pod) in pods.iter().enumerate() {
        for port in [42000, 42001] {
            let answer = ask_from_pod(&lab.ns, *pod, port + 10 * k as u16, server);
            assert_eq!(
                answer.as_deref(),
                Some(format!("10.73.10.{}", k + 1).as_str()),
                "{pod:?} is masqueraded to its node's InternalIP"
            );
            seen.push(answer.unwrap());
        }
    }
    // Someone outside reaching a pod directly: the pod's answers keep its
    // address (the connection was tracked when it came in).
    let _backends = Servers::start(&lab);
    let answers = flows(
        &lab.ns,
        "10.73.9.2",
        1,
        "10.73.21.2:5353".parse().unwrap(),
        43000..43020,
    );
    assert!(
        answers.values().all(|a| a == "b1 10.73.9.2"),
        "b1 sees the client and answers from its own address: {answers:?}"
    );
    println!(
        "masquerading: the outside saw {seen:?} from b1–b3; 20 flows from outside to b1 answered unmasqueraded"
    );
}

/// The simulator's flows of `tests/labs/flows` (one node, two pods and a
/// router; pings pod to pod and pod to router), in Hubble's JSON layout.
fn simulated_flows() -> Vec<serde_json::Value> {
    use nexthop_sim::{cluster::Cluster, engine::EngineConfig, lab::Lab, run};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/flows");
    let lab = Lab::load(&dir).expect("the flows lab loads");
    let mut cluster = Cluster::build(lab, EngineConfig::new(1)).expect("the flows lab builds");
    cluster.flows.all = Some(Vec::new());
    let report = run::run(&mut cluster, 1);
    assert!(
        report.passed(),
        "the simulator runs the lab:\n{}",
        report.render()
    );
    let flows = cluster.flows.all.take().unwrap_or_default();
    flows
        .iter()
        .map(|o| serde_json::to_value(router_core::flow::hubble::Json::of(o)).unwrap())
        .collect()
}

/// A flow's JSON without its times: what both runtimes must agree on.
fn timeless(mut flow: serde_json::Value) -> serde_json::Value {
    let object = flow.as_object_mut().expect("a flow is an object");
    object.remove("time");
    if let Some(inner) = object.get_mut("flow").and_then(|f| f.as_object_mut()) {
        inner.remove("time");
    }
    flow
}

/// The pods of the simulated flows: name → (address, identity, labels).
fn pods_of(flows: &[serde_json::Value]) -> BTreeMap<String, (String, u64, Vec<String>)> {
    let mut pods = BTreeMap::new();
    for f in flows {
        let f = &f["flow"];
        for (end, ip) in [("source", "source"), ("destination", "destination")] {
            let e = &f[end];
            if let Some(name) = e["pod_name"].as_str() {
                let labels = e["labels"].as_array().unwrap();
                pods.insert(
                    name.to_string(),
                    (
                        f["IP"][ip].as_str().unwrap().to_string(),
                        e["identity"].as_u64().unwrap(),
                        labels.iter().map(|l| l.as_str().unwrap().into()).collect(),
                    ),
                );
            }
        }
    }
    pods
}

/// The flows lab on namespaces: k8s-ctr's agent with `--enable-hubble`,
/// its pods as namespaces behind `lxc-*` veths (addresses and identities as
/// the simulator gave them, published as CiliumEndpoints), the router on
/// eth1. The same pings as the lab's scenario; `nexthop-agent observe`
/// shows the simulator's flows, field for field but the times.
#[test]
fn agent_observe_shows_the_simulators_flows_for_the_same_traffic() {
    if skips(&["ip", "nsenter", "ping"]) {
        return;
    }
    let simulated = simulated_flows();
    let pods = pods_of(&simulated);
    // Each pod's namespace and the node's end of its veth.
    const LXC: [(&str, &str); 2] = [("curl-pod", "lxc-curl"), ("webpod", "lxc-web")];
    assert!(
        pods.keys().map(String::as_str).eq(LXC.map(|(pod, _)| pod)),
        "{pods:?}"
    );
    let ns = Namespaces::new(&["k8s-ctr", "router", "curl-pod", "webpod"]);
    let (pins, cgroup) = match (Pins::new(&ns.name("pins")), Cgroup::new(&ns.name("cgroup"))) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(why), _) | (_, Err(why)) => return nexthop_testkit::skip(&why),
    };
    // No IPv6: router solicitations and MLD reports would be flows too.
    for name in ["k8s-ctr", "router", "curl-pod", "webpod"] {
        run_in(&ns, name, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
        run_in(&ns, name, "sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    }
    run_in(&ns, "k8s-ctr", "sysctl -qw net.ipv4.ip_forward=1");
    ns.veth("k8s-ctr", "eth1", "router", "eth1");
    run_in(&ns, "k8s-ctr", "ip addr add 192.168.10.100/24 dev eth1");
    run_in(&ns, "router", "ip addr add 192.168.10.200/24 dev eth1");
    run_in(
        &ns,
        "router",
        "ip route add 172.20.0.0/16 via 192.168.10.100",
    );
    let gateway = "172.20.0.1";
    let mut ends = vec![("router", "eth1")];
    for (name, lxc) in LXC {
        let ip = &pods[name].0;
        ns.veth(name, "eth0", "k8s-ctr", lxc);
        run_in(&ns, name, &format!("ip addr add {ip}/32 dev eth0"));
        run_in(&ns, name, &format!("ip route add {gateway} dev eth0"));
        run_in(&ns, name, &format!("ip route add default via {gateway}"));
        run_in(
            &ns,
            "k8s-ctr",
            &format!("ip addr add {gateway}/32 dev {lxc}"),
        );
        run_in(&ns, "k8s-ctr", &format!("ip route add {ip}/32 dev {lxc}"));
        ends.push((name, "eth0"));
    }
    let _peers = Peers::attach(&ns, &ends);
    ns.wait_carrier("k8s-ctr", &["eth1", "lxc-curl", "lxc-web"]);
    // The kernel's neighbours, which the datapath mirrors.
    for (ip, _, _) in pods.values() {
        run_in(&ns, "k8s-ctr", &format!("ping -c 1 -W 2 {ip}"));
    }
    run_in(&ns, "k8s-ctr", "ping -c 1 -W 2 192.168.10.200");
    let config = ns.dir.join("config");
    fs::create_dir_all(&config).unwrap();
    let mut objects = String::from(
        "apiVersion: v1\nkind: Node\nmetadata: {name: k8s-ctr}\nspec: {podCIDRs: [172.20.0.0/24]}\n\
         status:\n  addresses: [{type: InternalIP, address: 192.168.10.100}]\n",
    );
    for (name, (ip, identity, labels)) in &pods {
        objects += &format!(
            "---\napiVersion: cilium.io/v2\nkind: CiliumEndpoint\n\
             metadata: {{name: {name}, namespace: default}}\n\
             status:\n  identity: {{id: {identity}, labels: {labels:?}}}\n\
             \x20 networking: {{addressing: [{{ipv4: {ip}}}], node: 192.168.10.100}}\n"
        );
    }
    fs::write(config.join("objects.yaml"), objects).unwrap();
    let node = Node {
        name: "k8s-ctr",
        interfaces: &["eth1"],
        pods: &["lxc-curl", "lxc-web"],
        args: &["--enable-hubble"],
    };
    let agent = Agent::start_on(&ns, &node, &pins, &cgroup, &config, 1);
    wait_for(
        "the agent to name flows by the CiliumEndpoints",
        Duration::from_secs(10),
        || {
            agent
                .log()
                .contains("flows named by the cluster's endpoints")
                .then_some(())
        },
        || agent.log(),
    );
    let webpod = &pods["webpod"].0;
    for target in [webpod.as_str(), "192.168.10.200"] {
        run_in(&ns, "curl-pod", &format!("ping -c 2 -i 0.2 -W 2 {target}"));
    }
    let observe = |flags: &[&str]| {
        let out = Command::new(AGENT)
            .arg("observe")
            .arg("--socket")
            .arg(node.socket(&ns))
            .args(flags)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "observe {flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let flows = || -> Vec<serde_json::Value> {
        observe(&["-o", "json", "--last", "100"])
            .lines()
            .map(|l| timeless(serde_json::from_str(l).expect("observe prints JSON lines")))
            .collect()
    };
    let got = wait_for(
        "the agent to show the simulator's number of flows",
        Duration::from_secs(5),
        || Some(flows()).filter(|got| got.len() >= simulated.len()),
        || format!("{:#?}", flows()),
    );
    let want: Vec<serde_json::Value> = simulated.into_iter().map(timeless).collect();
    assert_eq!(got, want, "the agent's flows are the simulator's");
    let compact = observe(&["--pod", "curl-pod"]);
    println!("nexthop-agent observe --pod curl-pod:\n{compact}");
    assert!(compact.contains("-> default/webpod"), "{compact}");
    let drops = observe(&["--verdict", "DROPPED"]);
    assert!(drops.is_empty(), "no drops: {drops}");
    // Following: the kept flows (the last one: once printed, the follower
    // is subscribed), then each new one as it comes.
    let mut follow = Command::new(AGENT)
        .arg("observe")
        .arg("--socket")
        .arg(node.socket(&ns))
        .args(["--follow", "--last", "1", "--to-ip", "192.168.10.200"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next = |what| {
        lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("observe --follow printed no {what}"))
    };
    let kept = next("kept flow");
    run_in(&ns, "curl-pod", "ping -c 1 -W 2 192.168.10.200");
    let line = next("new flow");
    let _ = follow.kill();
    let _ = follow.wait();
    assert_ne!(kept, line);
    assert!(
        line.ends_with("-> 192.168.10.200 (world) to-network FORWARDED (ICMPv4 EchoRequest)"),
        "{line}"
    );
}
