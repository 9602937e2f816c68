//! An L2 announcement lab on real nodes, for the agent's L2 test and the
//! failover benchmark: three `nexthop-agent run` processes (n1, n2, n3), each
//! with its XDP datapath (generic mode) on its own port of a test bridge,
//! electing through an etcd; a router namespace on the bridge asking with
//! `arping`. `policy1` selects n1 and n2 (n3's labels do not match).
//!
//! The agents run on root-namespace veth ends named for the test's process,
//! so that they reach etcd on loopback; the other ends are on a bridge in a
//! namespace of the lab's, with the router. Only ARP crosses: nothing sends
//! an IP packet to the service address. Agents, datapaths, veths and
//! namespaces are removed on drop, also when a test fails.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nexthop_testkit::{Etcd, Namespaces, Process, sh, wait_for};

/// The service's address.
pub const VIP: &str = "192.168.77.211";
/// The IPv6 service's address (a service of its own, led through its own lease).
pub const VIP6: &str = "fd00:77::211";

/// One node: its agent, its root-namespace port and the pin directory of
/// its datapath.
#[derive(Debug)]
pub struct Node {
    /// Its Node object's name.
    pub name: &'static str,
    /// Its root-namespace port, where its datapath answers.
    pub port: String,
    pin_dir: PathBuf,
    /// Its agent, while running.
    pub agent: Option<Process>,
}

/// The whole lab; agents stopped and datapaths removed on drop, before the
/// namespaces (whose deletion takes the veth pairs with them).
#[derive(Debug)]
pub struct Lab {
    /// n1, n2, n3.
    pub nodes: Vec<Node>,
    agent: PathBuf,
    dir: PathBuf,
    /// The lab's namespaces: `lan` (the bridge) and `rtr` (the router).
    pub ns: Namespaces,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            drop(node.agent.take());
            let _ = Command::new(&self.agent)
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

/// The cluster every agent reads.
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
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: { name: pool6 }
spec:
  blocks: [{ start: 'fd00:77::211', stop: 'fd00:77::215' }]
  serviceSelector: { matchLabels: { family: v6 } }
---
apiVersion: v1
kind: Service
metadata:
  name: web6
  namespace: default
  labels: { app: web, family: v6 }
  annotations: { lbipam.cilium.io/ips: 'fd00:77::211' }
spec: { type: LoadBalancer, ports: [{ port: 80 }] }
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
    /// The lab with `agent` (the `nexthop-agent` binary) on every node,
    /// leases in `etcd` with `lease` (duration, renew deadline, retry
    /// period, as the agent's flags take them).
    pub fn new(agent: &Path, etcd: &Etcd, lease: [&str; 3]) -> Lab {
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
        ns.exec(
            "rtr",
            &["sysctl", "-qw", "net.ipv6.conf.eth1.disable_ipv6=0"],
        );
        ns.exec(
            "rtr",
            &[
                "ip",
                "addr",
                "add",
                "fd00:77::200/64",
                "dev",
                "eth1",
                "nodad",
            ],
        );
        let mut lab = Lab {
            nodes: Vec::new(),
            agent: agent.to_path_buf(),
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
            lab.start(i, etcd, lease);
        }
        lab
    }

    fn start(&mut self, i: usize, etcd: &Etcd, [duration, deadline, retry]: [&str; 3]) {
        let node = &self.nodes[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name))).unwrap();
        let child = Command::new(&self.agent)
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

    /// Node `i`'s query socket.
    pub fn socket(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}.sock", self.nodes[i].name))
    }

    /// Every agent's log.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.join(format!("{}.log", n.name)));
                format!("--- {} ---\n{}", n.name, log.unwrap_or_default())
            })
            .collect()
    }

    /// Node `i`'s port MAC, as arping prints it.
    pub fn mac(&self, i: usize) -> String {
        let path = format!("/sys/class/net/{}/address", self.nodes[i].port);
        std::fs::read_to_string(path).unwrap().trim().to_string()
    }

    /// Take node `i`'s port up or down.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        sh(&["ip", "link", "set", &self.nodes[i].port, state]);
    }

    /// `arping -c COUNT` from the router: the MACs that answered.
    pub fn arping(&self, count: u32) -> BTreeSet<String> {
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

    /// `ndisc6 -m` from the router (one solicitation for [`VIP6`], every
    /// advertisement within a second): the MACs that answered, as
    /// [`Lab::mac`] prints them.
    pub fn ndisc(&self) -> BTreeSet<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns.name("rtr"), "ndisc6", "-m", "-n"])
            .args(["-r", "1", "-w", "1000", VIP6, "eth1"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("Target link-layer address: "))
            .map(|mac| mac.trim().to_lowercase())
            .collect()
    }

    /// Ask with one ARP request at a time (100 ms each) until node `i`'s
    /// port answers, for at most `within`: the time from `since` to that
    /// first answer.
    pub fn first_reply(&self, i: usize, since: Instant, within: Duration) -> Option<Duration> {
        let mac = self.mac(i);
        while since.elapsed() < within {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns.name("rtr"), "arping", "-c", "1"])
                .args(["-w", "0.1", "-i", "eth1", VIP])
                .output()
                .ok()?;
            if String::from_utf8_lossy(&out.stdout)
                .to_lowercase()
                .contains(&mac)
            {
                return Some(since.elapsed());
            }
        }
        None
    }

    /// The router's neighbour entry for the address: its MAC, if any.
    pub fn router_neighbour(&self) -> Option<String> {
        let out = self.ns.exec("rtr", &["ip", "neigh", "show", VIP]);
        out.split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_string)
    }
}

/// The nodes whose agent lists [`VIP`] (agents that do not answer count
/// as not announcing: a dead agent's datapath is checked by arping).
pub fn announcing(sockets: &[PathBuf]) -> Vec<usize> {
    announcing_ip(sockets, VIP)
}

/// The nodes whose agent lists `ip`.
pub fn announcing_ip(sockets: &[PathBuf], ip: &str) -> Vec<usize> {
    (0..sockets.len())
        .filter(|&i| lists(&sockets[i], ip))
        .collect()
}

fn lists(socket: &Path, ip: &str) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"{\"query\":\"l2-announce\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.contains(&format!("\"ip\":\"{ip}\""))
}

/// Polls every agent every 20 ms until stopped; remembers any moment two
/// announced one address at once.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    overlaps: Arc<Mutex<Vec<Vec<usize>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Start polling `sockets`.
    pub fn start(sockets: Vec<PathBuf>) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let overlaps = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, overlaps) = (stop.clone(), overlaps.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for ip in [VIP, VIP6] {
                        let now = announcing_ip(&sockets, ip);
                        if now.len() > 1 {
                            overlaps.lock().unwrap().push(now);
                        }
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

    /// Stop; the moments two announced at once (none, if all is well).
    pub fn finish(mut self) -> Vec<Vec<usize>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.overlaps.lock().unwrap().clone()
    }
}

/// Wait until exactly one of `candidates` announces; which, and how long it
/// took.
pub fn leader_among(
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
