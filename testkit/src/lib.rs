//! The helpers every test that runs real programs in network namespaces
//! shares (the simulator's tap tests, the interop tests in `tests/`, the eBPF
//! live tests and benchmark in `offload-bpf/`). Depends on nothing of nexthop,
//! so using it never pulls in the agent or the eBPF toolchain.
//!
//! - [`skip_reason`]: why a namespace test cannot run here (not root, a
//!   program missing); [`skip`], [`skips`]: say so and return early — or,
//!   under `CI=true`, fail.
//! - [`run`], [`sh`]: a command that must succeed; [`wait_for`]: polling with
//!   a deadline; [`stop`], [`Process`]: ending child processes.
//! - [`Namespaces`]: network namespaces named uniquely per process and test,
//!   with veths, deleted on drop (and, on the next run, those of a process that
//!   died); [`Entered`], [`in_ns`]: a thread inside one.
//! - [`Frr`]: FRR (zebra + bgpd) started by hand inside a namespace with
//!   private paths, queried with `vtysh ... json`, stopped on drop.
//! - [`Etcd`]: a single-member etcd on loopback, with ports and a data
//!   directory of its own, killed and removed on drop; [`Etcd::skips`]: why
//!   a test cannot have one (and, under `CI=true`, a failure instead).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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

/// Skip a test that cannot run here, saying why — or, under `CI=true`,
/// fail with the reason: the test command installs everything the tests
/// need, so a skip in CI would be a test that never ran passing.
pub fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{why}; CI=true: tests must not skip in CI");
    }
    eprintln!("skipped: {why}");
}

/// Whether a test must skip for want of `programs` (or root); says why
/// through [`skip`] (which fails under `CI=true`).
pub fn skips(programs: &[&str]) -> bool {
    match skip_reason(programs) {
        Some(reason) => {
            skip(&reason);
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

/// A single-member etcd cluster on 127.0.0.1: client and peer ports picked
/// free for it, its data, log and pid file in a directory of its own
/// (`$TMPDIR/nh-etcd-<pid>x<n>`). Killed and removed on drop, also when the
/// test panics; a later [`Etcd::start`] removes what a test process killed
/// outright left behind. Tests using it run in parallel and repeatedly.
#[derive(Debug)]
pub struct Etcd {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Prefix of the directories [`Etcd`] creates; the process id follows.
const ETCD_PREFIX: &str = "nh-etcd-";

impl Etcd {
    /// Whether a test needing etcd must skip because the `etcd` program is
    /// missing; prints why. Under `CI=true` it panics instead: the test
    /// command installs `etcd-server`, so a skip there would hide a failure.
    pub fn skips() -> bool {
        if which("etcd").is_some() {
            return false;
        }
        skip("missing etcd (Debian etcd-server)");
        true
    }

    /// Start etcd and wait until it answers (panics after 30 s, with its
    /// log). Ports that another program took between choosing and binding
    /// are chosen again.
    pub fn start() -> Etcd {
        static RUN: AtomicU32 = AtomicU32::new(0);
        remove_orphan_etcds();
        let dir = std::env::temp_dir().join(format!(
            "{ETCD_PREFIX}{}x{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let mut attempt = 0;
        loop {
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            let mut etcd = Etcd {
                dir: dir.clone(),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            };
            etcd.spawn();
            match etcd.wait_ready() {
                Ok(()) => return etcd,
                Err(log) if attempt < 5 && log.contains("address already in use") => {
                    attempt += 1;
                }
                Err(log) => panic!("etcd did not start:\n{log}"),
            }
        }
    }

    /// Its client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kill it (SIGKILL: no goodbye to its clients, as in a crash); its data
    /// stays for [`Etcd::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop it (SIGSTOP) or let it go on (SIGCONT): a store that accepts
    /// connections and never answers, as a hung one does.
    pub fn pause(&self, paused: bool) {
        if let Some(child) = &self.child {
            let signal = if paused { "-STOP" } else { "-CONT" };
            sh(&["kill", signal, &child.id().to_string()]);
        }
    }

    /// Start it again on the same ports with the same data, and wait until
    /// it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        if let Err(log) = self.wait_ready() {
            panic!("etcd did not restart:\n{log}");
        }
    }

    /// Put `value` at `key`, through etcd's JSON gateway (`/v3/kv/put`):
    /// for tests that store what a client would refuse to write.
    pub fn put(&self, key: &str, value: &[u8]) {
        let body = serde_json::json!({"key": base64(key.as_bytes()), "value": base64(value)});
        let answer = self
            .http("POST", "/v3/kv/put", &body.to_string())
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "etcd put {key}: {answer}"
        );
    }

    /// Its log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let child = Command::new("etcd")
            .arg("--name=nh")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=nh={peer}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("etcd does not start: {e}"));
        fs::write(self.dir.join("etcd.pid"), child.id().to_string()).unwrap();
        self.child = Some(child);
    }

    /// Wait until `/health` says true; the log if it exits or times out.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("etcd exited ({status}):\n{}", self.log()));
            }
            if self
                .http("GET", "/health", "")
                .is_ok_and(|a| a.contains(r#""health":"true""#))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("etcd not healthy after 30 s:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request to the client port; the whole answer.
    fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<String> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port on 127.0.0.1 free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}

/// Kill the etcds and remove the directories of [`Etcd`]s whose test
/// process no longer exists.
fn remove_orphan_etcds() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix(ETCD_PREFIX)
            .and_then(|rest| rest.split_once('x'))
            .map(|(pid, _)| pid.to_string())
            .filter(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        let Some(owner) = owner else { continue };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = entry.path();
        if let Ok(pid) = fs::read_to_string(dir.join("etcd.pid")) {
            let pid = pid.trim();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // Only that etcd: its command line names the directory.
            if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Standard base64 with padding (what etcd's JSON gateway reads for bytes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_the_standard_says() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn etcd_starts_answers_restarts_and_cleans_up() {
        if Etcd::skips() {
            return;
        }
        let mut etcd = Etcd::start();
        let mut other = Etcd::start();
        assert_ne!(etcd.endpoint(), other.endpoint());
        etcd.put("k", b"v");
        let dir = etcd.dir.clone();
        etcd.kill();
        assert!(etcd.http("GET", "/health", "").is_err());
        etcd.restart();
        let read = serde_json::json!({"key": base64(b"k")}).to_string();
        let answer = etcd.http("POST", "/v3/kv/range", &read).unwrap();
        assert!(answer.contains(&base64(b"v")), "{answer}");
        other.kill();
        drop(other);
        drop(etcd);
        assert!(!dir.exists());
    }
}
