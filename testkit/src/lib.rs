//! The helpers every test that runs real programs in network namespaces
//! shares (the simulator's tap tests, the interop tests in `tests/`, the eBPF
//! live tests and benchmark in `offload-bpf/`). Depends on nothing of nexthop,
//! so using it never pulls in the agent or the eBPF toolchain.
//!
//! - [`skip_reason`]: why a namespace test cannot run here (not root, a
//!   program missing), to print and return early.
//! - [`run`], [`sh`]: a command that must succeed; [`wait_for`]: polling with
//!   a deadline; [`stop`], [`Process`]: ending child processes.
//! - [`Namespaces`]: network namespaces named uniquely per process and test,
//!   with veths, deleted on drop (and, on the next run, those of a process that
//!   died); [`Entered`], [`in_ns`]: a thread inside one.
//! - [`Frr`]: FRR (zebra + bgpd) started by hand inside a namespace with
//!   private paths, queried with `vtysh ... json`, stopped on drop.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What a test running FRR in a namespace needs.
pub const FRR_PROGRAMS: [&str; 4] = [
    "/usr/lib/frr/zebra",
    "/usr/lib/frr/bgpd",
    "vtysh",
    "unshare",
];

/// Whether a test must skip for want of `programs` (or root); prints why.
pub fn skips(programs: &[&str]) -> bool {
    match skip_reason(programs) {
        Some(reason) => {
            eprintln!("skipped: {reason}");
            true
        }
        None => false,
    }
}

/// Why a namespace test cannot run here (not root, or one of `programs`
/// missing: a path, or a name looked up in `PATH`).
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

/// Run `cmd`; its output, or a panic naming the command and its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run a command given as words; its stdout (it must succeed).
pub fn sh(args: &[&str]) -> String {
    let out = run(Command::new(args[0]).args(&args[1..]));
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// Stop a child: SIGTERM, then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
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

/// A child process killed on drop (also when the test fails).
#[derive(Debug)]
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prefix of every namespace [`Namespaces`] creates; the process id follows.
const PREFIX: &str = "nh";

/// The network namespaces of one test, named `nh<pid>x<n><name>`, and a
/// scratch directory; all deleted on drop.
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    names: Vec<String>,
    /// A scratch directory for the test's files, removed on drop.
    pub dir: PathBuf,
}

impl Namespaces {
    /// Namespaces called `names` (short: interface-name-like), each with
    /// loopback up. First deletes the namespaces of earlier runs whose
    /// process is gone (an aborted run cannot clean up after itself).
    pub fn new(names: &[&str]) -> Namespaces {
        static RUN: AtomicU32 = AtomicU32::new(0);
        remove_orphans();
        let prefix = format!(
            "{PREFIX}{}x{}",
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
            ns.add(name);
        }
        ns
    }

    /// One more namespace called `name`, with loopback up; its full name.
    pub fn add(&mut self, name: &str) -> String {
        let full = self.name(name);
        sh(&["ip", "netns", "add", &full]);
        self.names.push(full.clone());
        self.exec(name, &["ip", "link", "set", "lo", "up"]);
        full
    }

    /// The full name of namespace `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Run a command in namespace `name`; its stdout (it must succeed).
    pub fn exec(&self, name: &str, args: &[&str]) -> String {
        let full = self.name(name);
        let mut all = vec!["ip", "netns", "exec", &full];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        sh(&[
            "ip",
            "-n",
            &self.name(a),
            "link",
            "add",
            a_if,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            &self.name(b),
        ]);
        self.exec(a, &["ip", "link", "set", a_if, "up"]);
        self.exec(b, &["ip", "link", "set", b_if, "up"]);
    }

    /// Wait until each of `interfaces` in `ns` reports carrier.
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

/// Delete the namespaces named by [`Namespaces`] for a process that no
/// longer exists.
fn remove_orphans() {
    let Ok(listed) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('x'))
            .map(|(pid, _)| pid)
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
            let _ = fs::remove_dir_all(std::env::temp_dir().join(name));
        }
    }
}

/// The calling thread inside a namespace until dropped.
#[derive(Debug)]
pub struct Entered {
    original: File,
}

impl Entered {
    /// Move the calling thread into namespace `ns` (full name).
    pub fn new(ns: &str) -> Self {
        let original = File::open("/proc/thread-self/ns/net").unwrap();
        let target = File::open(format!("/var/run/netns/{ns}")).unwrap();
        // SAFETY: setns on an open namespace file; affects only this thread.
        let entered = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns into {ns}");
        Entered { original }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: as in `Entered::new`, back to the namespace the thread came from.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Run `f` on a thread inside namespace `ns` (full name) and return what it returns.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = Entered::new(ns);
            f()
        })
        .join()
        .unwrap()
    })
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
