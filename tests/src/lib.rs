//! Cross-crate integration tests (BGP interop with FRR/BIRD/GoBGP in network
//! namespaces, VXLAN interop with the kernel, agent labs), and the helpers
//! only they use (namespaces, FRR, skipping and polling come from
//! `nexthop-testkit`):
//!
//! - [`Agent`]: a `nexthop-agent run` inside a namespace, killed on drop.
//! - [`Bird`], [`Gobgp`]: BIRD 2 and GoBGP 3 in the foreground inside a
//!   namespace, queried with `birdc` / `gobgp`, killed on drop.
//! - [`SinglePeer`]: the Cilium resources of one node peering with one router.
//! - [`feeder`]: an eBGP route feeder for ingest benchmarks.
//! - [`l2lab`]: three agents announcing a service's address on a test
//!   bridge, leases in etcd, for the L2 test and the failover benchmark.

pub mod feeder;
pub mod l2lab;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nexthop_testkit::{stop, wait_for};

/// A running `nexthop-agent run` in a namespace.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    /// Its query socket.
    pub socket: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

impl Agent {
    /// Start the agent binary `bin` in namespace `ns` (full name) for `node`
    /// with configuration directory `config_dir`; files go to `dir`.
    pub fn start(bin: &str, ns: &str, node: &str, config_dir: &Path, dir: &Path) -> Agent {
        let socket = dir.join(format!("{node}.sock"));
        let log = dir.join(format!("{node}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, bin, "run", "--node", node])
            .arg("--config-dir")
            .arg(config_dir)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, socket, log }
    }

    /// The agent's process id (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `bgp peers --output json`.
    pub fn peers_json(&self, bin: &str) -> Option<serde_json::Value> {
        let out = Command::new(bin)
            .args(["bgp", "peers", "--output", "json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// A `bgp` query's table output.
    pub fn query(&self, bin: &str, args: &[&str]) -> String {
        let mut all = vec!["bgp"];
        all.extend_from_slice(args);
        self.ask(bin, &all)
    }

    /// Any query's output (`service list`, `l2-announce`, ...).
    pub fn ask(&self, bin: &str, args: &[&str]) -> String {
        let out = Command::new(bin)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
    }
}

/// BIRD 2 in the foreground inside a namespace, with its own control socket.
#[derive(Debug)]
pub struct Bird {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Bird {
    /// Start `bird -f` in namespace `ns` (full name) with `config`; files
    /// go to `dir`. Returns once `birdc` answers.
    pub fn start(ns: &str, dir: &Path, config: &str) -> Bird {
        fs::create_dir_all(dir).unwrap();
        let conf = dir.join("bird.conf");
        fs::write(&conf, config).unwrap();
        let socket = dir.join("bird.ctl");
        let log = dir.join("bird.log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let bird = Bird { child, socket, log };
        wait_for(
            "birdc to answer",
            Duration::from_secs(5),
            || {
                bird.try_cli("show status")
                    .filter(|s| s.contains("Daemon is up"))
            },
            || bird.log(),
        );
        bird
    }

    /// `birdc COMMAND`'s output, or what went wrong (for failure reports).
    pub fn try_show(&self, command: &str) -> String {
        self.try_cli(command)
            .unwrap_or_else(|| format!("birdc {command} failed\n{}", self.log()))
    }

    fn try_cli(&self, command: &str) -> Option<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.socket)
            .args(command.split_whitespace())
            .output()
            .ok()?;
        // birdc exits with 1 for answers such as "Network not found".
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout.starts_with("BIRD ").then_some(stdout)
    }

    /// `birdc COMMAND`'s output.
    pub fn cli(&self, command: &str) -> String {
        self.try_cli(command)
            .unwrap_or_else(|| panic!("birdc {command} failed\n{}", self.log()))
    }

    /// BIRD's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// BIRD's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
    }
}

/// GoBGP 3 (`gobgpd`) in a namespace, its gRPC API on 127.0.0.1 there.
#[derive(Debug)]
pub struct Gobgp {
    child: Child,
    ns: String,
    log: PathBuf,
}

impl Gobgp {
    /// Start gobgpd in namespace `ns` (full name) with the TOML `config`;
    /// files go to `dir`. Returns once `gobgp global` answers.
    pub fn start(ns: &str, dir: &Path, config: &str) -> Gobgp {
        fs::create_dir_all(dir).unwrap();
        let conf = dir.join("gobgpd.toml");
        fs::write(&conf, config).unwrap();
        let log = dir.join("gobgpd.log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "gobgpd", "-t", "toml", "-f"])
            .arg(&conf)
            .args(["--api-hosts", "127.0.0.1:50051", "--log-plain"])
            .stdout(fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gobgp = Gobgp {
            child,
            ns: ns.to_string(),
            log,
        };
        wait_for(
            "gobgp to answer",
            Duration::from_secs(10),
            || gobgp.try_cli(&["global"]),
            || gobgp.log(),
        );
        gobgp
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp"])
            .args(["-u", "127.0.0.1", "-p", "50051"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `gobgp ARGS...`'s output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("gobgp {args:?} failed\n{}", self.log()))
    }

    /// gobgpd's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// gobgpd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gobgp {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
    }
}

/// One node peering with one router, in Cilium's resources: both unicast
/// families, the pod CIDRs advertised (when `advertise`) with a standard
/// and a large community, short timers.
#[derive(Clone, Debug)]
pub struct SinglePeer<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its InternalIPs (IPv4, then IPv6: the next hop of IPv6 routes).
    pub addresses: [&'a str; 2],
    /// `spec.podCIDRs`.
    pub pod_cidrs: [&'a str; 2],
    /// Our AS.
    pub local_asn: u32,
    /// The router's AS and address.
    pub peer: (u32, &'a str),
    /// The advertisement's communities: standard, large.
    pub communities: (&'a str, &'a str),
    /// Whether the CiliumBGPAdvertisement exists.
    pub advertise: bool,
    /// `gracefulRestart.restartTimeSeconds`, if enabled.
    pub graceful_restart: Option<u32>,
}

impl SinglePeer<'_> {
    /// The YAML documents.
    pub fn yaml(&self) -> String {
        let [v4, v6] = self.addresses;
        let [pod4, pod6] = self.pod_cidrs;
        let (standard, large) = self.communities;
        let (peer_asn, peer_address) = self.peer;
        let node = self.node;
        let local_asn = self.local_asn;
        let graceful_restart = match self.graceful_restart {
            Some(t) => format!("{{enabled: true, restartTimeSeconds: {t}}}"),
            None => "{enabled: false}".into(),
        };
        let mut yaml = format!(
            r#"apiVersion: v1
kind: Node
metadata: {{name: {node}, labels: {{enable-bgp: "true"}}}}
spec: {{podCIDRs: [{pod4}, {pod6}]}}
status: {{addresses: [{{type: InternalIP, address: {v4}}}, {{type: InternalIP, address: "{v6}"}}]}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {{name: peer}}
spec:
  timers: {{holdTimeSeconds: 9, keepAliveTimeSeconds: 3, connectRetryTimeSeconds: 1}}
  gracefulRestart: {graceful_restart}
  families:
  - {{afi: ipv4, safi: unicast, advertisements: {{matchLabels: {{advertise: bgp}}}}}}
  - {{afi: ipv6, safi: unicast, advertisements: {{matchLabels: {{advertise: bgp}}}}}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {{name: bgp}}
spec:
  nodeSelector: {{matchLabels: {{enable-bgp: "true"}}}}
  bgpInstances:
  - name: instance
    localASN: {local_asn}
    peers: [{{name: router, peerASN: {peer_asn}, peerAddress: {peer_address}, peerConfigRef: {{name: peer}}}}]
"#
        );
        if self.advertise {
            yaml.push_str(&format!(
                r#"---
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata: {{name: pods, labels: {{advertise: bgp}}}}
spec:
  advertisements:
  - advertisementType: PodCIDR
    attributes:
      communities: {{standard: ["{standard}"], large: ["{large}"]}}
"#
            ));
        }
        yaml
    }
}
