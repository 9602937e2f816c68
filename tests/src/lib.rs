//! Cross-crate integration tests (BGP interop with FRR/BIRD/GoBGP in network
//! namespaces, VXLAN interop with the kernel, agent labs), and the helpers
//! they share:
//!
//! - [`Namespaces`]: network namespaces named uniquely per test run, with
//!   veths and bridges, deleted on drop (also when a test fails).
//! - [`Frr`]: FRR 8.4 (zebra + bgpd) started by hand inside a namespace with
//!   private paths, queried with `vtysh ... json`, stopped on drop.
//! - [`Agent`]: a `nexthop-agent run` inside a namespace, killed on drop.
//! - [`Bird`], [`Gobgp`]: BIRD 2 and GoBGP 3 in the foreground inside a
//!   namespace, queried with `birdc` / `gobgp`, killed on drop.
//! - [`feeder`]: an eBGP route feeder for ingest benchmarks.
//! - [`skip_reason`], [`wait_for`]: skipping with a printed reason, polling
//!   with a deadline.

pub mod feeder;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why a namespace test cannot run here (not root, or a program missing).
pub fn skip_reason(programs: &[&str]) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the effective user.
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Some("needs root (network namespaces)".into());
    }
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists() && which(p).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("missing {}", missing.join(", ")))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Run a command; its stdout, or a panic naming the command and its stderr.
pub fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Poll `check` until it returns `Some`, or panic after `timeout` with
/// `what` and the last value `describe` gives.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    describe: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                describe()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

static RUN: AtomicU32 = AtomicU32::new(0);

/// A set of network namespaces for one test, named `nh<pid><n><name>`.
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    names: Vec<String>,
    /// A scratch directory for the test's files, removed on drop.
    pub dir: PathBuf,
}

impl Namespaces {
    /// Namespaces called `names` (short: interface-name-like).
    pub fn new(names: &[&str]) -> Namespaces {
        let prefix = format!(
            "nh{}x{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut ns = Namespaces {
            prefix,
            names: Vec::new(),
            dir,
        };
        for name in names {
            let full = ns.name(name);
            sh(&["ip", "netns", "add", &full]);
            ns.names.push(full);
            ns.exec(name, &["ip", "link", "set", "lo", "up"]);
        }
        ns
    }

    /// The full name of namespace `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Run a command in namespace `name`.
    pub fn exec(&self, name: &str, args: &[&str]) -> String {
        let full = self.name(name);
        let mut all = vec!["ip", "netns", "exec", &full];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        let tmp = format!("v{}", RUN.fetch_add(1, Ordering::Relaxed));
        let tmp_a = format!("{tmp}a{}", std::process::id() % 10000);
        let tmp_b = format!("{tmp}b{}", std::process::id() % 10000);
        sh(&[
            "ip", "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ]);
        sh(&["ip", "link", "set", &tmp_a, "netns", &self.name(a)]);
        sh(&["ip", "link", "set", &tmp_b, "netns", &self.name(b)]);
        self.exec(a, &["ip", "link", "set", &tmp_a, "name", a_if]);
        self.exec(b, &["ip", "link", "set", &tmp_b, "name", b_if]);
        self.exec(a, &["ip", "link", "set", a_if, "up"]);
        self.exec(b, &["ip", "link", "set", b_if, "up"]);
    }

    /// Wait until every interface of `ns` that is not `lo` reports carrier.
    pub fn wait_carrier(&self, ns: &str, interfaces: &[&str]) {
        for interface in interfaces {
            wait_for(
                &format!("carrier on {ns}/{interface}"),
                Duration::from_secs(5),
                || {
                    let out = self.exec(
                        ns,
                        &["cat", &format!("/sys/class/net/{interface}/operstate")],
                    );
                    matches!(out.trim(), "up" | "unknown").then_some(())
                },
                String::new,
            );
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// FRR (zebra + bgpd) inside a namespace, with every path private.
#[derive(Debug)]
pub struct Frr {
    dir: PathBuf,
    ns: String,
    hostname: String,
    bgpd_args: String,
}

impl Frr {
    /// Start zebra and bgpd in namespace `ns` (full name) with kernel
    /// hostname `hostname`, then load `config` (an integrated frr.conf).
    pub fn start(ns: &str, dir: &Path, hostname: &str, config: &str) -> Frr {
        Frr::start_with(ns, dir, hostname, config, &[])
    }

    /// [`Frr::start`], with extra bgpd options (e.g. `-n`: no FIB).
    pub fn start_with(
        ns: &str,
        dir: &Path,
        hostname: &str,
        config: &str,
        bgpd_args: &[&str],
    ) -> Frr {
        fs::create_dir_all(dir).unwrap();
        let frr = Frr {
            dir: dir.to_path_buf(),
            ns: ns.to_string(),
            hostname: hostname.to_string(),
            bgpd_args: bgpd_args.join(" "),
        };
        let d = dir.display().to_string();
        fs::write(dir.join("frr.conf"), config).unwrap();
        fs::write(dir.join("vtysh.conf"), "service integrated-vtysh-config\n").unwrap();
        for daemon in ["zebra", "bgpd"] {
            fs::write(dir.join(format!("{daemon}.conf")), "").unwrap();
        }
        // The daemons drop to the frr user and write here.
        sh(&["chown", "-R", "frr:frr", &d]);
        for daemon in ["zebra", "bgpd"] {
            frr.daemon(daemon);
        }
        frr.vtysh(&["-b"]);
        frr
    }

    fn daemon(&self, daemon: &str) {
        let d = self.dir.display().to_string();
        let hostname = &self.hostname;
        let extra = if daemon == "bgpd" {
            self.bgpd_args.as_str()
        } else {
            ""
        };
        let command = format!(
            "hostname {hostname} && exec /usr/lib/frr/{daemon} -d -F traditional -P 0 {extra} \
             -f {d}/{daemon}.conf -i {d}/{daemon}.pid -z {d}/zserv.api --vty_socket {d} \
             --log file:{d}/{daemon}.log"
        );
        sh(&[
            "ip", "netns", "exec", &self.ns, "unshare", "--uts", "sh", "-c", &command,
        ]);
    }

    /// Kill bgpd (SIGKILL: no NOTIFICATION, as in a crash) and start it
    /// again with the same configuration; zebra keeps running.
    pub fn restart_bgpd(&self) {
        let pid = self.bgpd_pid();
        sh(&["kill", "-KILL", &pid]);
        while Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemon("bgpd");
        self.vtysh(&["-b"]);
    }

    fn vtysh(&self, args: &[&str]) -> String {
        let d = self.dir.display().to_string();
        let mut all = vec!["vtysh", "--vty_socket", &d, "--config_dir", &d];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// `vtysh -c COMMAND` parsed as JSON.
    pub fn json(&self, command: &str) -> serde_json::Value {
        let out = self.vtysh(&["-c", command]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{command}: {e}: {out}"))
    }

    /// The bgpd log.
    pub fn bgpd_log(&self) -> String {
        fs::read_to_string(self.dir.join("bgpd.log")).unwrap_or_default()
    }

    /// bgpd's pid.
    pub fn bgpd_pid(&self) -> String {
        fs::read_to_string(self.dir.join("bgpd.pid"))
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        let pids: Vec<String> = ["bgpd", "zebra"]
            .iter()
            .filter_map(|d| fs::read_to_string(self.dir.join(format!("{d}.pid"))).ok())
            .map(|p| p.trim().to_string())
            .collect();
        let kill = |signal: &str, pid: &str| {
            let _ = Command::new("kill")
                .args([signal, pid])
                .stderr(Stdio::null())
                .status();
        };
        for pid in &pids {
            kill("-CONT", pid);
            kill("-TERM", pid);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && pids
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in &pids {
            kill("-KILL", pid);
        }
    }
}

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
        let out = Command::new(bin)
            .arg("bgp")
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

/// Stop a child: SIGTERM, then SIGKILL after `grace`.
fn stop(child: &mut Child, grace: Duration) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
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
