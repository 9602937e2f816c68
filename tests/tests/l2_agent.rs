//! L2 announcements on real nodes: three agents (n1, n2, n3), each with its
//! XDP datapath on its own port of a test bridge, electing through a real
//! etcd (Debian's `etcd-server`, on loopback), a router namespace on the
//! bridge asking with `arping`. `policy1` selects n1 and n2 (n3's labels do
//! not match). Checked:
//! - only the leader answers ARP for the service's address, and two agents
//!   never announce it at once (a watcher polls all three throughout);
//! - the leader's link going down hands the address over within a jittered
//!   retry; `kill -9` of the leader's agent with its link down, within the
//!   lease's bound; the router's neighbour entry follows by gratuitous ARP;
//! - with etcd gone, the leader stops at its renew deadline and nobody else
//!   starts.
//!
//! The agents run in the test's own root-namespace veth ends (named for the
//! test's process), so that they reach etcd on loopback; the other ends are
//! on a bridge in a namespace of the test's, with the router. Only ARP
//! crosses: no IP packet is sent to the service address. Everything is
//! removed on drop, also when the test fails. Needs root; prints why it
//! skips otherwise (and, for etcd, fails under `CI=true`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexthop_testkit::{Etcd, Namespaces, Process, sh, skips, wait_for};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");
const VIP: &str = "192.168.77.211";
/// The lease timings: duration, renew deadline, retry period.
const LEASE: (&str, &str, &str) = ("3s", "1s", "200ms");

/// One node: its agent, its root-namespace port and the pin directory of
/// its datapath.
struct Node {
    name: &'static str,
    port: String,
    pin_dir: PathBuf,
    agent: Option<Process>,
}

/// The whole lab; agents stopped and datapaths removed on drop, before the
/// namespaces (whose deletion takes the veth pairs with them).
struct Lab {
    nodes: Vec<Node>,
    dir: PathBuf,
    ns: Namespaces,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            drop(node.agent.take());
            let _ = Command::new(AGENT)
                .args(["datapath", "remove", "--pin-dir"])
                .arg(&node.pin_dir)
                .status();
            let _ = Command::new("ip")
                .args(["link", "del", &node.port])
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const OBJECTS: &str = "
apiVersion: v1
kind: Node
metadata: { name: n1, labels: { role: lb } }
---
apiVersion: v1
kind: Node
metadata: { name: n2, labels: { role: lb } }
---
apiVersion: v1
kind: Node
metadata: { name: n3, labels: { role: other } }
---
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: { name: pool }
spec: { blocks: [{ start: 192.168.77.211, stop: 192.168.77.215 }] }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default, labels: { app: web } }
spec: { type: LoadBalancer, ports: [{ port: 80 }] }
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: { name: policy1 }
spec:
  serviceSelector: { matchLabels: { app: web } }
  nodeSelector: { matchLabels: { role: lb } }
  interfaces: ['^nl[0-9]+n[0-9]$']
  loadBalancerIPs: true
";

impl Lab {
    fn new(etcd: &Etcd) -> Lab {
        let ns = Namespaces::new(&["lan", "rtr"]);
        let dir = ns.dir.join("agents");
        std::fs::create_dir_all(dir.join("config")).unwrap();
        std::fs::write(dir.join("config/objects.yaml"), OBJECTS).unwrap();
        ns.exec("lan", &["ip", "link", "add", "br0", "type", "bridge"]);
        ns.exec("lan", &["ip", "link", "set", "br0", "up"]);
        ns.veth("rtr", "eth1", "lan", "r1");
        ns.exec("lan", &["ip", "link", "set", "r1", "master", "br0"]);
        ns.exec(
            "rtr",
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        );
        ns.exec(
            "rtr",
            &["ip", "addr", "add", "192.168.77.200/24", "dev", "eth1"],
        );
        let mut lab = Lab {
            nodes: Vec::new(),
            dir,
            ns,
        };
        let pid = std::process::id() % 1_000_000;
        for (i, name) in ["n1", "n2", "n3"].into_iter().enumerate() {
            let port = format!("nl{pid}n{}", i + 1);
            let pin_dir = PathBuf::from(format!("/sys/fs/bpf/nh-l2-{pid}-{name}"));
            lab.nodes.push(Node {
                name,
                port: port.clone(),
                pin_dir,
                agent: None,
            });
            let lan = lab.ns.name("lan");
            sh(&[
                "ip", "link", "add", &port, "type", "veth", "peer", "name", name, "netns", &lan,
            ]);
            sh(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{port}.disable_ipv6=1"),
            ]);
            sh(&["ip", "link", "set", &port, "up"]);
            lab.ns
                .exec("lan", &["ip", "link", "set", name, "master", "br0", "up"]);
        }
        for i in 0..lab.nodes.len() {
            lab.start(i, etcd);
        }
        lab
    }

    fn start(&mut self, i: usize, etcd: &Etcd) {
        let node = &self.nodes[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name))).unwrap();
        let (duration, deadline, retry) = LEASE;
        let child = Command::new(AGENT)
            .args(["run", "--node", node.name, "--config-dir"])
            .arg(self.dir.join("config"))
            .arg("--socket")
            .arg(self.socket(i))
            .args(["--lease-store", &format!("etcd:{}", etcd.endpoint())])
            .args(["--enable-l2-announcements"])
            .args(["--l2-announcements-lease-duration", duration])
            .args(["--l2-announcements-renew-deadline", deadline])
            .args(["--l2-announcements-retry-period", retry])
            .args(["--datapath-interface", &node.port, "--datapath-generic"])
            .arg("--datapath-pin-dir")
            .arg(&node.pin_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].agent = Some(Process(child));
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", self.nodes[i].name))
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.join(format!("{}.log", n.name)));
                format!("--- {} ---\n{}", n.name, log.unwrap_or_default())
            })
            .collect()
    }

    fn mac(&self, i: usize) -> String {
        let path = format!("/sys/class/net/{}/address", self.nodes[i].port);
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        sh(&["ip", "link", "set", &self.nodes[i].port, state]);
    }

    /// `arping -c COUNT` from the router: the MACs that answered.
    fn arping(&self, count: u32) -> BTreeSet<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns.name("rtr"), "arping", "-c"])
            .arg(count.to_string())
            .args(["-w", &(count + 1).to_string(), "-i", "eth1", VIP])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once("bytes from ")?.1.split_whitespace().next())
            .map(str::to_lowercase)
            .collect()
    }

    /// The router's neighbour entry for the address: its MAC, if any.
    fn router_neighbour(&self) -> Option<String> {
        let out = self.ns.exec("rtr", &["ip", "neigh", "show", VIP]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }
}

/// The nodes whose agent lists the address (agents that do not answer
/// count as not announcing: a dead agent's datapath is checked by arping).
fn announcing(sockets: &[PathBuf]) -> Vec<usize> {
    (0..sockets.len())
        .filter(|&i| lists_vip(&sockets[i]))
        .collect()
}

fn lists_vip(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"{\"query\":\"l2-announce\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.contains(&format!("\"ip\":\"{VIP}\""))
}

/// Polls every agent every 20 ms until stopped; remembers any moment two
/// announced at once.
struct Watcher {
    stop: Arc<AtomicBool>,
    overlaps: Arc<Mutex<Vec<Vec<usize>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(sockets: Vec<PathBuf>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, overlaps) = (stop.clone(), overlaps.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = announcing(&sockets);
                    if now.len() > 1 {
                        overlaps.lock().unwrap().push(now);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Watcher {
            stop,
            overlaps,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Vec<usize>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.overlaps.lock().unwrap().clone()
    }
}

/// Wait until exactly one of `candidates` announces; which, and how long it
/// took.
fn leader_among(
    lab: &Lab,
    sockets: &[PathBuf],
    candidates: &[usize],
    within: Duration,
) -> (usize, Duration) {
    let start = Instant::now();
    let leader = wait_for(
        "one leader",
        within,
        || match announcing(sockets).as_slice() {
            [one] if candidates.contains(one) => Some(*one),
            _ => None,
        },
        || lab.logs(),
    );
    (leader, start.elapsed())
}

#[test]
fn only_the_leader_answers_arp_and_failover_follows_the_lease() {
    if skips(&["ip", "arping", "sysctl"]) || Etcd::skips() {
        return;
    }
    let mut etcd = Etcd::start();
    let mut lab = Lab::new(&etcd);
    let sockets: Vec<PathBuf> = (0..3).map(|i| lab.socket(i)).collect();
    let watcher = Watcher::start(sockets.clone());

    let (first, took) = leader_among(&lab, &sockets, &[0, 1], Duration::from_secs(20));
    println!("first leader n{} after {took:?}", first + 1);
    // The datapath answers once loaded and attached (a few seconds).
    wait_for(
        "the leader's datapath answers",
        Duration::from_secs(20),
        || (!lab.arping(1).is_empty()).then_some(()),
        || lab.logs(),
    );
    let macs = lab.arping(3);
    assert_eq!(
        macs,
        BTreeSet::from([lab.mac(first)]),
        "only the leader answers"
    );
    // The router knows the address at the leader (arping's packet socket
    // leaves the kernel's table alone): a stale entry, as traffic leaves it.
    let mac = lab.mac(first);
    lab.ns.exec(
        "rtr",
        &[
            "ip", "neigh", "replace", VIP, "lladdr", &mac, "dev", "eth1", "nud", "stale",
        ],
    );

    // The leader's link goes down: it steps down and frees the lease.
    lab.link(first, false);
    let other = 1 - first;
    let (second, took) = leader_among(&lab, &sockets, &[other], Duration::from_secs(5));
    println!("link down: n{} took over after {took:?}", second + 1);
    assert!(
        took < Duration::from_secs(1),
        "link-down failover took {took:?}\n{}",
        lab.logs()
    );
    wait_for(
        "the router's entry moved by gratuitous ARP",
        Duration::from_secs(2),
        || (lab.router_neighbour() == Some(lab.mac(second))).then_some(()),
        || lab.ns.exec("rtr", &["ip", "neigh"]),
    );
    assert_eq!(lab.arping(2), BTreeSet::from([lab.mac(second)]));
    lab.link(first, true);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(announcing(&sockets), [second], "the old leader follows");

    // kill -9 of the leader's agent, and its link down (its pinned
    // datapath would go on answering otherwise).
    drop(lab.nodes[second].agent.take());
    lab.link(second, false);
    let (third, took) = leader_among(&lab, &sockets, &[first], Duration::from_secs(10));
    println!(
        "kill -9 + link down: n{} took over after {took:?}",
        third + 1
    );
    assert!(
        took < Duration::from_secs(6),
        "crash failover took {took:?}"
    );
    assert_eq!(lab.arping(2), BTreeSet::from([lab.mac(third)]));

    // etcd gone: the leader stops at its renew deadline; nobody starts.
    etcd.kill();
    let gone = Instant::now();
    wait_for(
        "the leader stops without its store",
        Duration::from_secs(3),
        || announcing(&sockets).is_empty().then_some(()),
        || lab.logs(),
    );
    println!("etcd killed: the leader stopped after {:?}", gone.elapsed());
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        announcing(&sockets).is_empty(),
        "nobody announces without the store"
    );
    assert!(lab.arping(2).is_empty(), "nobody answers ARP");
    let overlaps = watcher.finish();
    assert!(
        overlaps.is_empty(),
        "two announced at once: {overlaps:?}\n{}",
        lab.logs()
    );
    assert!(!lab.logs().contains("panicked"), "{}", lab.logs());
}
