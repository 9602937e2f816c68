//! Cross-crate integration tests (BGP interop with FRR/BIRD/GoBGP in network
//! namespaces, VXLAN interop with the kernel, agent labs), and the helpers
//! they share:
//!
//! - [`Namespaces`]: network namespaces named uniquely per test run, with
//!   veths and bridges, deleted on drop (also when a test fails).
//! - [`Frr`]: FRR 8.4 (zebra + bgpd) started by hand inside a namespace with
//!   private paths, queried with `vtysh ... json`, stopped on drop.
//! - [`Agent`]: a `nexthop-agent run` inside a namespace, killed on drop.
//! - [`skip_reason`], [`wait_for`]: skipping with a printed reason, polling
//!   with a deadline.

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
}

impl Frr {
    /// Start zebra and bgpd in namespace `ns` (full name) with kernel
    /// hostname `hostname`, then load `config` (an integrated frr.conf).
    pub fn start(ns: &str, dir: &Path, hostname: &str, config: &str) -> Frr {
        fs::create_dir_all(dir).unwrap();
        let frr = Frr {
            dir: dir.to_path_buf(),
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
            let command = format!(
                "hostname {hostname} && exec /usr/lib/frr/{daemon} -d -F traditional -P 0 \
                 -f {d}/{daemon}.conf -i {d}/{daemon}.pid -z {d}/zserv.api --vty_socket {d} \
                 --log file:{d}/{daemon}.log"
            );
            sh(&[
                "ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c", &command,
            ]);
        }
        frr.vtysh(&["-b"]);
        frr
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
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
