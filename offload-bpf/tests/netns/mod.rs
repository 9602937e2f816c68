//! The namespace lab of the live tests and the benchmarks (included by
//! each: `tests/live.rs` as a module, `benches/xdp.rs` and `benches/lb.rs`
//! by path), on
//! `nexthop-testkit`'s namespaces: namespaces with IPv6 and reverse-path
//! filtering off, veths with addresses, shell commands and sysfs reads inside
//! them, and the XDP program attached to a device.

use std::process::{Command, Output};

use nexthop_testkit::{Namespaces, run};
use smoltcp::wire::EthernetAddress;

/// Namespaces of one test, deleted (with their veths) on drop.
pub struct Lab {
    test: String,
    namespaces: Namespaces,
}

impl Lab {
    /// A lab for the test called `test`.
    pub fn new(test: &str) -> Lab {
        Lab {
            test: test.to_string(),
            namespaces: Namespaces::new(&[]),
        }
    }

    /// A fresh namespace with loopback up and IPv6 off (no ND or MLD noise);
    /// its full name.
    pub fn ns(&mut self, name: &str) -> String {
        let ns = self.namespaces.add(&format!("{}-{name}", self.test));
        self.sh(&ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
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
