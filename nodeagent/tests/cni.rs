//! `nexthop-cni` against a running agent on namespaces: a node (`node`,
//! uplink `eth1` to `outside`) whose agent sets pods up (`--cni-state-dir`)
//! with the XDP datapath on; pods are namespaces the test makes, as a
//! container runtime would, and hands to the plugin with the CNI
//! environment. Checks the specification's results and errors, pod to pod
//! traffic forwarded by the XDP program on the pods' `lxc` interfaces, the
//! state surviving `kill -9` of the agent, and DEL giving everything back;
//! and that pods lose no packet and no byte while their agent restarts.
//! Needs root; skips with the reason.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nexthop_offload_bpf::datapath::mount_bpffs;
use nexthop_testkit::{Namespaces, skips, wait_for};
use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent");
const CNI: &str = env!("CARGO_BIN_EXE_nexthop-cni");

/// The node's agent; killed (`-9`) on drop, its pins removed by the lab.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The namespaces, the agent's files and its pins (removed on drop).
struct Lab {
    ns: Namespaces,
    pins: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(AGENT)
            .args(["datapath", "remove", "--pin-dir"])
            .arg(&self.pins)
            .status();
    }
}

impl Lab {
    fn build() -> Option<Lab> {
        if skips(&["ip", "nsenter", "ping"]) {
            return None;
        }
        let root = Path::new("/sys/fs/bpf");
        if let Err(e) = mount_bpffs(root) {
            nexthop_testkit::skip(&format!("no bpf filesystem: {e}"));
            return None;
        }
        let ns = Namespaces::new(&["node", "outside", "pod1", "pod2", "pod3"]);
        let pins = root.join(ns.name("pins"));
        for name in ["node", "pod1", "pod2", "pod3"] {
            ns.exec(name, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        }
        ns.exec("node", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ns.veth("node", "eth1", "outside", "eth1");
        ns.exec(
            "node",
            &["ip", "addr", "add", "192.168.30.1/24", "dev", "eth1"],
        );
        let config = ns.dir.join("config");
        fs::create_dir_all(&config).unwrap();
        fs::write(
            config.join("node.yaml"),
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [10.244.1.0/24]}\n\
             status:\n  addresses: [{type: InternalIP, address: 192.168.30.1}]\n",
        )
        .unwrap();
        Some(Lab { ns, pins })
    }

    fn socket(&self) -> PathBuf {
        self.ns.dir.join("agent.sock")
    }

    /// Start the node's agent (`n`: its log's number) and wait for its datapath.
    fn agent(&self, n: u32) -> Agent {
        start_agent(&self.ns, "node", &self.socket(), &self.pins, &[], n)
    }

    /// Run the plugin for `command` on pod namespace `pod`; see [`cni`].
    fn cni(&self, command: &str, pod: &str, netns: Option<&Path>) -> (Value, i32) {
        cni(&self.ns, &self.socket(), command, pod, netns)
    }

    fn agent_query(&self, args: &[&str]) -> String {
        let out = Command::new(AGENT)
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn forwarded(&self) -> u64 {
        let out = Command::new(AGENT)
            .args(["datapath", "stats", "-o", "json", "--pin-dir"])
            .arg(&self.pins)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Forwarded"].as_u64().unwrap()
    }
}

/// Start the agent of node `node` (its namespace, named `n1` in the
/// objects when `node` is `node`) with `--cni-state-dir` and the datapath on
/// `eth1`, answering on `socket`; `n` numbers its log. Waits until it knows
/// its pod CIDR.
fn start_agent(
    ns: &Namespaces,
    node: &str,
    socket: &Path,
    pins: &Path,
    args: &[&str],
    n: u32,
) -> Agent {
    let name = if node == "node" { "n1" } else { node };
    let log = ns.dir.join(format!("agent-{node}-{n}.log"));
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", ns.name(node)))
        .args([AGENT, "run", "--node", name, "--config-dir"])
        .arg(ns.dir.join("config"))
        .arg("--socket")
        .arg(socket)
        .arg("--cni-state-dir")
        .arg(ns.dir.join(format!("cni-{node}")))
        .args(["--datapath-interface", "eth1", "--datapath-pin-dir"])
        .arg(pins)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent { child, log };
    wait_for(
        "the agent to know its pod CIDR",
        Duration::from_secs(20),
        || agent.log().contains("pod CIDR").then_some(()),
        || agent.log(),
    );
    agent
}

/// Run the plugin for `command` on pod namespace `pod` (container `pod`'s
/// name) against the agent on `socket`; its output as JSON (`Null` when
/// empty) and exit code.
fn cni(
    ns: &Namespaces,
    socket: &Path,
    command: &str,
    pod: &str,
    netns: Option<&Path>,
) -> (Value, i32) {
    let netns = netns.map_or_else(
        || PathBuf::from(format!("/var/run/netns/{}", ns.name(pod))),
        Path::to_path_buf,
    );
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "cilium",
        "type": "nexthop-cni",
        "socket": socket,
    });
    let mut child = Command::new(CNI)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("container-{pod}"))
        .env("CNI_NETNS", &netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .env(
            "CNI_ARGS",
            format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    (value, out.status.code().unwrap_or(-1))
}

/// Wait until `agent`'s datapath runs on `interfaces` interfaces.
fn attached(agent: &Agent, interfaces: usize) {
    wait_for(
        &format!("the datapath on {interfaces} interfaces"),
        Duration::from_secs(20),
        || (agent.log().matches("datapath attached").count() >= interfaces).then_some(()),
        || agent.log(),
    );
}

/// The address an ADD result gives the pod.
fn address(result: &Value) -> String {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.trim_end_matches("/32").to_string()
}

#[test]
fn cni_sets_pods_up_through_the_agent_and_the_xdp_datapath_forwards_between_them() {
    let Some(lab) = Lab::build() else { return };
    // No agent yet: ADD is to be tried again later; VERSION needs none.
    let (err, code) = lab.cni("ADD", "pod1", None);
    assert_eq!((code, err["code"].as_u64()), (1, Some(11)), "{err}");
    let (version, code) = lab.cni("VERSION", "pod1", None);
    assert_eq!(code, 0);
    assert!(version["supportedVersions"].to_string().contains("1.0.0"));

    let agent = lab.agent(1);
    let (status, code) = lab.cni("STATUS", "pod1", None);
    assert_eq!((code, status), (0, Value::Null));
    let (one, code) = lab.cni("ADD", "pod1", None);
    assert_eq!(code, 0, "{one}\n{}", agent.log());
    let (two, code) = lab.cni("ADD", "pod2", None);
    assert_eq!(code, 0, "{two}");
    let (ip1, ip2) = (address(&one), address(&two));
    let gateway = one["ips"][0]["gateway"].as_str().unwrap().to_string();
    for ip in [&ip1, &ip2, &gateway] {
        assert!(ip.starts_with("10.244.1."), "{ip} from the pod CIDR");
    }
    assert_ne!(ip1, ip2);
    assert_eq!(one["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(one["interfaces"][1]["name"], "eth0");
    let lxc1 = one["interfaces"][0]["name"].as_str().unwrap().to_string();
    assert!(lxc1.starts_with("lxc"), "{lxc1}");
    // The pod's side, as the result says.
    let addr = lab
        .ns
        .exec("pod1", &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addr.contains(&format!("{ip1}/32")), "{addr}");
    let route = lab.ns.exec("pod1", &["ip", "route", "show", "default"]);
    assert!(
        route.contains(&format!("default via {gateway} dev eth0")),
        "{route}"
    );
    // Adding again answers the same.
    assert_eq!(lab.cni("ADD", "pod1", None).0, one);
    let (check, code) = lab.cni("CHECK", "pod1", None);
    assert_eq!((code, check), (0, Value::Null));

    attached(&agent, 3);
    let before = lab.forwarded();
    lab.ns
        .exec("pod1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip2]);
    let forwarded = lab.forwarded() - before;
    assert!(
        forwarded >= 6,
        "the XDP program forwarded {forwarded} of 6 frames"
    );
    let list = lab.agent_query(&["endpoint", "list"]);
    println!("nexthop-agent endpoint list:\n{list}");
    assert!(list.contains("reserved:host") && list.contains(&ip1) && list.contains(&ip2));
    assert!(
        list.contains("reserved:init"),
        "no CiliumEndpoint names them: {list}"
    );
    let status = lab.agent_query(&["status"]);
    println!("nexthop-agent status:\n{status}");
    assert!(
        status.contains("IPAM:                    IPv4: 3/254 allocated from 10.244.1.0/24"),
        "the router address and two pods: {status}"
    );
    assert!(
        status.contains("XDP   [eth1] and 2 pod interfaces"),
        "{status}"
    );
    assert_eq!(lab.agent_query(&["status", "--brief"]), "OK\n");

    // kill -9 and a new agent: the pods keep their addresses and a new pod
    // gets another one.
    drop(agent);
    let agent = lab.agent(2);
    let (three, code) = lab.cni("ADD", "pod3", None);
    assert_eq!(code, 0, "{three}\n{}", agent.log());
    let ip3 = address(&three);
    assert!(ip3 != ip1 && ip3 != ip2, "{ip3} is new");
    let list = lab.agent_query(&["endpoint", "list"]);
    assert!(
        list.contains(&ip1) && list.contains(&ip2) && list.contains(&ip3),
        "{list}"
    );
    lab.ns.exec("pod3", &["ping", "-c", "1", "-W", "2", &ip1]);

    // DEL gives the interfaces and the address back; twice is fine; a DEL
    // after the runtime removed the namespace too.
    let (del, code) = lab.cni("DEL", "pod1", None);
    assert_eq!((code, del), (0, Value::Null));
    assert_eq!(lab.cni("DEL", "pod1", None).1, 0);
    let links = lab.ns.exec("node", &["ip", "-o", "link"]);
    assert!(!links.contains(&lxc1), "{links}");
    let (check, code) = lab.cni("CHECK", "pod1", None);
    assert_eq!((code, check["code"].as_u64()), (1, Some(3)), "{check}");
    let gone = Path::new("/var/run/netns/does-not-exist");
    assert_eq!(lab.cni("DEL", "pod2", Some(gone)).1, 0);
    let (err, code) = lab.cni("ADD", "pod9", Some(gone));
    assert_eq!((code, err["code"].as_u64()), (1, Some(5)), "{err}");
    assert!(
        err["msg"].as_str().unwrap().contains("does-not-exist"),
        "names the namespace: {err}"
    );
    let list = lab.agent_query(&["endpoint", "list"]);
    assert!(
        !list.contains(&ip1) && !list.contains(&ip2) && list.contains(&ip3),
        "{list}"
    );
}

/// The two ends of a TCP stream: the receiver (the numbers that arrived in
/// order, or the first error) and the sender.
type Stream = (
    std::thread::JoinHandle<Result<u32, String>>,
    std::thread::JoinHandle<Result<(), String>>,
);

/// A TCP stream from `from` to `to` (pod namespaces, `to` listening on
/// `addr`): `count` numbers, one every 5 ms.
fn stream(lab: &Lab, (from, to): (&str, &str), addr: std::net::SocketAddr, count: u32) -> Stream {
    use std::io::Read;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let server_ns = lab.ns.name(to);
    let server = std::thread::spawn(move || {
        nexthop_testkit::in_ns(&server_ns, || {
            let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
            ready_tx.send(()).unwrap();
            let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut next = 0u32;
            let mut word = [0u8; 4];
            while next < count {
                conn.read_exact(&mut word)
                    .map_err(|e| format!("after {next} numbers: {e}"))?;
                let got = u32::from_be_bytes(word);
                if got != next {
                    return Err(format!("{got} where {next} was due"));
                }
                next += 1;
            }
            Ok(next)
        })
    });
    ready
        .recv_timeout(Duration::from_secs(5))
        .expect("the server listens");
    let client_ns = lab.ns.name(from);
    let client = std::thread::spawn(move || {
        nexthop_testkit::in_ns(&client_ns, || {
            let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            for i in 0..count {
                conn.write_all(&i.to_be_bytes())
                    .map_err(|e| format!("writing {i}: {e}"))?;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    });
    (server, client)
}

/// Pods keep talking while their node's agent is killed (`-9`) and started
/// again, then stopped (SIGTERM) and started again (a new binary would
/// take over the same way: the pinned datapath forwards meanwhile and the
/// new program replaces the old one in place): a ping every 10 ms loses
/// nothing and a TCP stream goes on unbroken, through the XDP datapath.
#[test]
fn pods_lose_nothing_while_their_agent_is_killed_and_restarted() {
    let Some(lab) = Lab::build() else { return };
    let agent = lab.agent(1);
    let (one, _) = lab.cni("ADD", "pod1", None);
    let (two, _) = lab.cni("ADD", "pod2", None);
    let ip2 = address(&two);
    assert!(address(&one).starts_with("10.244.1."), "{one}");
    attached(&agent, 3);
    let before = lab.forwarded();
    let ping = Command::new("ip")
        .args(["netns", "exec", &lab.ns.name("pod1")])
        .args(["ping", "-q", "-i", "0.01", "-c", "700", &ip2])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (server, client) = stream(
        &lab,
        ("pod1", "pod2"),
        format!("{ip2}:7000").parse().unwrap(),
        1000,
    );
    std::thread::sleep(Duration::from_secs(1));
    drop(agent);
    std::thread::sleep(Duration::from_millis(500));
    let mut agent = lab.agent(2);
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status();
    let _ = agent.child.wait();
    let _agent = lab.agent(3);
    let out = ping.wait_with_output().unwrap();
    let output = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = output
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_string();
    client
        .join()
        .unwrap()
        .expect("the client wrote every number");
    let received = server.join().unwrap().expect("the stream is unbroken");
    assert_eq!(received, 1000);
    assert!(
        summary.contains("700 packets transmitted, 700 received, 0% packet loss"),
        "{output}"
    );
    let forwarded = lab.forwarded() - before;
    assert!(
        forwarded >= 1400,
        "the XDP program forwarded {forwarded} frames (pings both ways and the stream)"
    );
    println!(
        "across kill -9 and SIGTERM restarts: {summary}, 1000 numbers in order, {forwarded} frames forwarded by XDP"
    );
}

/// A datapath that cannot start (here: an interface the node does not
/// have) is reported by `status`, naming the interface, and the agent goes
/// on setting pods up (routed by the kernel).
#[test]
fn a_failed_datapath_is_reported_and_pods_are_still_set_up() {
    let Some(lab) = Lab::build() else { return };
    let log = lab.ns.dir.join("agent-broken.log");
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", lab.ns.name("node")))
        .args([AGENT, "run", "--node", "n1", "--config-dir"])
        .arg(lab.ns.dir.join("config"))
        .arg("--socket")
        .arg(lab.socket())
        .arg("--cni-state-dir")
        .arg(lab.ns.dir.join("cni"))
        .args(["--datapath-interface", "nosuchif0", "--datapath-pin-dir"])
        .arg(&lab.pins)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent = Agent { child, log };
    let brief = wait_for(
        "status to report the datapath",
        Duration::from_secs(20),
        || {
            let out = Command::new(AGENT)
                .args(["status", "--brief", "--socket"])
                .arg(lab.socket())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("Datapath")
                .then_some((text, out.status.success()))
        },
        || agent.log(),
    );
    assert!(!brief.1, "status --brief fails: {}", brief.0);
    assert!(
        brief.0.contains("nosuchif0"),
        "names the interface: {}",
        brief.0
    );
    let (one, code) = lab.cni("ADD", "pod1", None);
    assert_eq!(code, 0, "{one}\n{}", agent.log());
    let (two, _) = lab.cni("ADD", "pod2", None);
    lab.ns
        .exec("pod1", &["ping", "-c", "1", "-W", "2", &address(&two)]);
}

/// Two nodes on one subnet, each agent with `--auto-direct-node-routes`:
/// each routes the other's pod CIDR via the other (`proto kernel`, as the
/// simulator's `ip route` shows Cilium's), and a pod on one reaches a pod
/// on the other through both XDP datapaths.
#[test]
fn auto_direct_node_routes_join_two_nodes_pods() {
    if skips(&["ip", "nsenter", "ping"]) {
        return;
    }
    let root = Path::new("/sys/fs/bpf");
    if let Err(e) = mount_bpffs(root) {
        return nexthop_testkit::skip(&format!("no bpf filesystem: {e}"));
    }
    let ns = Namespaces::new(&["n1", "n2", "pod1", "pod2"]);
    let pins: Vec<PathBuf> = ["pins1", "pins2"]
        .iter()
        .map(|p| root.join(ns.name(p)))
        .collect();
    let _unpin = Unpin(pins.clone());
    for name in ["n1", "n2", "pod1", "pod2"] {
        ns.exec(name, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    }
    ns.veth("n1", "eth1", "n2", "eth1");
    let config = ns.dir.join("config");
    fs::create_dir_all(&config).unwrap();
    let mut objects = String::new();
    for k in 1..=2 {
        let n = format!("n{k}");
        ns.exec(&n, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        ns.exec(
            &n,
            &[
                "ip",
                "addr",
                "add",
                &format!("192.168.30.{k}/24"),
                "dev",
                "eth1",
            ],
        );
        objects += &format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\nspec: {{podCIDRs: [10.244.{k}.0/24]}}\n\
             status:\n  addresses: [{{type: InternalIP, address: 192.168.30.{k}}}]\n"
        );
    }
    fs::write(config.join("nodes.yaml"), objects).unwrap();
    ns.exec("n1", &["ping", "-c", "1", "-W", "2", "192.168.30.2"]);
    let sockets: Vec<PathBuf> = (1..=2)
        .map(|k| ns.dir.join(format!("agent-n{k}.sock")))
        .collect();
    let args = ["--auto-direct-node-routes"];
    let agents: Vec<Agent> = (0..2)
        .map(|i| start_agent(&ns, &format!("n{}", i + 1), &sockets[i], &pins[i], &args, 1))
        .collect();
    let (one, code) = cni(&ns, &sockets[0], "ADD", "pod1", None);
    assert_eq!(code, 0, "{one}");
    let (two, code) = cni(&ns, &sockets[1], "ADD", "pod2", None);
    assert_eq!(code, 0, "{two}");
    let (ip1, ip2) = (address(&one), address(&two));
    assert!(ip1.starts_with("10.244.1.") && ip2.starts_with("10.244.2."));
    for agent in &agents {
        attached(agent, 2);
    }
    for (node, route) in [
        ("n1", "10.244.2.0/24 via 192.168.30.2 dev eth1 proto kernel"),
        ("n2", "10.244.1.0/24 via 192.168.30.1 dev eth1 proto kernel"),
    ] {
        wait_for(
            &format!("{node}'s route to the other node's pods"),
            Duration::from_secs(10),
            || {
                let routes = ns.exec(node, &["ip", "route"]);
                routes.lines().any(|l| l.trim() == route).then_some(())
            },
            || ns.exec(node, &["ip", "route"]),
        );
    }
    let forwarded = |pins: &Path| {
        let out = Command::new(AGENT)
            .args(["datapath", "stats", "-o", "json", "--pin-dir"])
            .arg(pins)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["Forwarded"]
            .as_u64()
            .unwrap()
    };
    // The first exchange teaches the nodes each other's MACs (the kernel's
    // neighbours, which the datapaths mirror).
    ns.exec("pod1", &["ping", "-c", "1", "-W", "2", &ip2]);
    std::thread::sleep(Duration::from_millis(1500));
    let before = [forwarded(&pins[0]), forwarded(&pins[1])];
    ns.exec("pod1", &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip2]);
    let after = [forwarded(&pins[0]), forwarded(&pins[1])];
    for k in 0..2 {
        let stats = Command::new(AGENT)
            .args(["datapath", "stats", "--pin-dir"])
            .arg(&pins[k])
            .output()
            .unwrap();
        assert!(
            after[k] - before[k] >= 6,
            "node n{}'s XDP program forwarded {} of 6 frames\n{}\n{}",
            k + 1,
            after[k] - before[k],
            String::from_utf8_lossy(&stats.stdout),
            agents[k].log()
        );
    }
}

/// Removes the datapaths pinned under these directories on drop.
struct Unpin(Vec<PathBuf>);

impl Drop for Unpin {
    fn drop(&mut self) {
        for pins in &self.0 {
            let _ = Command::new(AGENT)
                .args(["datapath", "remove", "--pin-dir"])
                .arg(pins)
                .status();
        }
    }
}
