//! Network namespaces for the live tests and the XDP benchmark (included by
//! both: `tests/live.rs` as a module, `benches/xdp.rs` by path): a lab of
//! namespaces joined by veths, named after the process and deleted on drop
//! (the next run removes those of a process that died), commands and sysfs
//! reads inside them, and running code on a thread inside one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use smoltcp::wire::EthernetAddress;

/// Namespaces of one test, deleted (with their veths) on drop.
pub struct Lab {
    /// Prefix of the namespaces' names (unique to this process and lab).
    pub tag: String,
    namespaces: Vec<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Run `cmd`; it must succeed.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Lab {
    /// A lab named after this process and `test`; first removes the
    /// namespaces of earlier runs of these tests whose process is gone
    /// (an aborted run cannot clean up after itself).
    pub fn new(test: &str) -> Lab {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let listed = run(Command::new("ip").args(["netns", "list"]));
        for line in String::from_utf8_lossy(&listed.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let pid = name.strip_prefix("nhbpf").and_then(|r| r.split('-').next());
            if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Lab {
            tag: format!("nhbpf{}-{n}-{test}", std::process::id()),
            namespaces: Vec::new(),
        }
    }

    /// A fresh namespace with loopback up and IPv6 off (no ND or MLD noise).
    pub fn ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.tag);
        run(Command::new("ip").args(["netns", "add", &ns]));
        self.namespaces.push(ns.clone());
        self.sh(&ns, "ip link set lo up; sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
        ns
    }

    /// Run a shell command in `ns`; it must succeed.
    pub fn sh(&self, ns: &str, script: &str) -> Output {
        run(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", script]))
    }

    /// A veth pair `a_if` (in `a`, address `a_addr`) — `b_if` (in `b`, `b_addr`).
    pub fn link(&self, a: (&str, &str, &str), b: (&str, &str, &str)) {
        self.link_indexed(a, None, b);
    }

    /// [`Lab::link`], `a_if` with the interface index `index`.
    pub fn link_indexed(
        &self,
        (a, a_if, a_addr): (&str, &str, &str),
        index: Option<u32>,
        (b, b_if, b_addr): (&str, &str, &str),
    ) {
        let index = index.map(|i| i.to_string());
        let index_args = index.as_deref().map(|i| ["index", i]);
        run(Command::new("ip")
            .args(["-n", a, "link", "add", a_if])
            .args(index_args.iter().flatten())
            .args(["type", "veth", "peer", "name", b_if, "netns", b]));
        self.sh(
            a,
            &format!("ip addr add {a_addr} dev {a_if}; ip link set {a_if} up"),
        );
        self.sh(
            b,
            &format!("ip addr add {b_addr} dev {b_if}; ip link set {b_if} up"),
        );
    }

    /// The contents of the file at `path` inside `ns`, trimmed.
    pub fn read(&self, ns: &str, path: &str) -> String {
        let out = self.sh(ns, &format!("cat {path}"));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The MAC of `dev` in `ns`.
    pub fn mac(&self, ns: &str, dev: &str) -> EthernetAddress {
        let text = self.read(ns, &format!("/sys/class/net/{dev}/address"));
        EthernetAddress::from_bytes(
            &text
                .split(':')
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>(),
        )
    }

    /// The interface index of `dev` in `ns`.
    pub fn ifindex(&self, ns: &str, dev: &str) -> u32 {
        self.read(ns, &format!("/sys/class/net/{dev}/ifindex"))
            .parse()
            .unwrap()
    }

    /// Packets `dev` in `ns` has received.
    pub fn rx_packets(&self, ns: &str, dev: &str) -> u64 {
        self.read(ns, &format!("/sys/class/net/{dev}/statistics/rx_packets"))
            .parse()
            .unwrap()
    }

    /// The id of the XDP program attached to `dev` in `ns`.
    pub fn xdp_prog_id(&self, ns: &str, dev: &str) -> u32 {
        let out = self.sh(ns, &format!("ip -d -j link show dev {dev}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let at = text
            .find("\"prog\":{")
            .expect("an XDP program on the device");
        let rest = &text[at..];
        let id = &rest[rest.find("\"id\":").unwrap() + 5..];
        id[..id.find(|c: char| !c.is_ascii_digit()).unwrap()]
            .parse()
            .unwrap()
    }
}

/// The calling thread inside a namespace until dropped.
pub struct Entered {
    original: File,
}

impl Entered {
    /// Move the calling thread into `ns`.
    pub fn new(ns: &str) -> Self {
        let original = File::open("/proc/thread-self/ns/net").unwrap();
        let target = File::open(format!("/var/run/netns/{ns}")).unwrap();
        // SAFETY: setns on an open namespace file; affects only this thread.
        assert_eq!(
            unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        Entered { original }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // SAFETY: as in `Entered::new`, back to the namespace the thread came from.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) };
    }
}

/// Run `f` on a thread inside `ns` and return what it returns.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let _inside = Entered::new(&ns);
        f()
    })
    .join()
    .unwrap()
}
