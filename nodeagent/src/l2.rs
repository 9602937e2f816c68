//! L2 announcements on a real node: router-core's [`L2Announcer`] (owned by
//! the controller task, beside the BGP control plane) carried out here —
//! lease requests against the [`LeaseStore`] in their own tasks, the
//! addresses led handed to the XDP datapath's ARP responder (a
//! [`watch`] channel the datapath loop follows), a gratuitous ARP or an
//! unsolicited neighbour advertisement from the interface on taking an
//! address over, and the interfaces' link state read
//! from `/sys/class/net` every [`LINK_POLL`].
//!
//! Owns: the announcer, the link states last read, the led set. Does not
//! own: the store's connection ([`crate::lease_store`]), the datapath
//! ([`crate::offload`]), the objects.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use router_core::cilium::Objects;
use router_core::cilium::l2announce::{Action, Entry, Interface, L2Announcer, PolicyCondition};
use router_core::lease::{Response, Timings};
use router_core::neighbour::{arp, ndp};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::lease_store::LeaseStore;

/// How often the interfaces' link state is read.
pub const LINK_POLL: Duration = Duration::from_millis(100);

/// The addresses this node answers ARP for, by interface.
pub type Announced = BTreeSet<Entry>;

/// A store's answer on its way back to the controller task.
pub type Answer = (String, u64, Response);

/// What the agent was told to run L2 announcements with.
#[derive(Debug)]
pub struct L2Config {
    /// Where the leases are.
    pub store: LeaseStore,
    /// `--l2-announcements-lease-duration` and the two others.
    pub timings: Timings,
    /// The interfaces that may announce (the datapath's).
    pub interfaces: Vec<String>,
    /// Where the led addresses go (the datapath loop).
    pub announced: watch::Sender<Announced>,
}

/// The announcer and what it needs to act.
#[derive(Debug)]
pub struct L2 {
    announcer: L2Announcer,
    store: LeaseStore,
    interfaces: Vec<Interface>,
    announced: watch::Sender<Announced>,
    answers: mpsc::UnboundedSender<Answer>,
    objects: Objects,
    /// The policy problems already logged.
    logged: Vec<PolicyCondition>,
}

impl L2 {
    /// The announcer of `node`; store answers come back on `answers`.
    pub fn new(node: &str, config: L2Config, answers: mpsc::UnboundedSender<Answer>) -> L2 {
        let (announcer, warnings) = L2Announcer::new(node, config.timings, random_seed());
        for w in warnings {
            warn!("l2 announcements: {w}");
        }
        let interfaces = config
            .interfaces
            .iter()
            .map(|name| Interface {
                name: name.clone(),
                up: link_up(name),
            })
            .collect();
        info!(store = %config.store.describe(), interfaces = ?config.interfaces, "L2 announcements on");
        L2 {
            announcer,
            store: config.store,
            interfaces,
            announced: config.announced,
            answers,
            objects: Objects::default(),
            logged: Vec::new(),
        }
    }

    /// What the node answers for (the `l2-announce` table).
    pub fn entries(&self) -> Vec<Entry> {
        self.announcer.entries().iter().cloned().collect()
    }

    /// When [`Self::tick`] is next due.
    pub fn poll_at(&self) -> Option<Instant> {
        self.announcer.poll_at()
    }

    /// New objects.
    pub fn reconcile(&mut self, now: Instant, objects: &Objects) {
        self.objects = objects.clone();
        let actions = self
            .announcer
            .reconcile(now, &self.objects, &self.interfaces);
        let conditions = self.announcer.conditions();
        for c in conditions.iter().filter(|c| !self.logged.contains(c)) {
            warn!(policy = %c.policy, condition = c.kind, "{}", c.message);
        }
        self.logged = conditions.to_vec();
        self.carry_out(actions);
    }

    /// Time passed.
    pub fn tick(&mut self, now: Instant) {
        let actions = self.announcer.tick(now);
        self.carry_out(actions);
    }

    /// The store answered.
    pub fn answer(&mut self, now: Instant, (lease, id, response): Answer) {
        let actions = self.announcer.handle(now, &lease, id, response);
        self.carry_out(actions);
    }

    /// Read the links again; a change reconciles (a leader whose link went
    /// down steps down at once).
    pub fn poll_links(&mut self, now: Instant) {
        let mut changed = false;
        for i in &mut self.interfaces {
            let up = link_up(&i.name);
            if up != i.up {
                info!(interface = %i.name, up, "link state changed");
                i.up = up;
                changed = true;
            }
        }
        if changed {
            let actions = self
                .announcer
                .reconcile(now, &self.objects, &self.interfaces);
            self.carry_out(actions);
        }
    }

    /// Step down everywhere and free the leases held, waiting up to
    /// `within` for the store to take the releases.
    pub async fn stop(&mut self, now: Instant, within: Duration) {
        let mut calls = Vec::new();
        for action in self.announcer.stop(now) {
            if let Action::Lease { lease, request, .. } = action {
                let store = self.store.clone();
                calls.push(async move { store.call(&lease, request).await });
            }
        }
        self.announced.send_replace(Announced::new());
        let _ = tokio::time::timeout(within, futures::future::join_all(calls)).await;
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        let mut led = self.announced.borrow().clone();
        for action in actions {
            match action {
                Action::Lease { lease, id, request } => {
                    let store = self.store.clone();
                    let answers = self.answers.clone();
                    tokio::spawn(async move {
                        let response = store.call(&lease, request).await;
                        let _ = answers.send((lease, id, response));
                    });
                }
                Action::Announce(entry) => {
                    info!(ip = %entry.ip, interface = %entry.interface, "announcing");
                    if let Err(e) = announce(&entry.interface, entry.ip) {
                        warn!(ip = %entry.ip, interface = %entry.interface, "announcement not sent: {e}");
                    }
                    led.insert(entry);
                }
                Action::Withdraw(entry) => {
                    info!(ip = %entry.ip, interface = %entry.interface, "no longer announcing");
                    led.remove(&entry);
                }
            }
        }
        self.announced.send_if_modified(|current| {
            let changed = *current != led;
            *current = led;
            changed
        });
    }
}

/// Whether `/sys/class/net/NAME/operstate` says the link is up (`unknown`,
/// as tun devices and loopback say, counts as up).
fn link_up(name: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
        .is_ok_and(|s| matches!(s.trim(), "up" | "unknown"))
}

/// A seed for the electors' retry jitter from the OS.
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != 8 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        return nanos as u64 ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(bytes)
}

/// `aa:bb:cc:dd:ee:ff` as the kernel prints a MAC.
fn parse_mac(text: &str) -> Option<EthernetAddress> {
    let mut bytes = [0u8; 6];
    let mut parts = text.split(':');
    for b in &mut bytes {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(EthernetAddress(bytes))
}

/// Tell the link `interface` now answers for `ip`, through a packet
/// socket: a gratuitous ARP (IPv4) or an unsolicited neighbour
/// advertisement to all nodes (IPv6), from the interface's MAC.
fn announce(interface: &str, ip: IpAddr) -> io::Result<()> {
    let sys = |what: &str| std::fs::read_to_string(format!("/sys/class/net/{interface}/{what}"));
    let mac = parse_mac(sys("address")?.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no MAC address"))?;
    let name =
        CString::new(interface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a C string that lives for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    let (frame, destination) = match ip {
        IpAddr::V4(ip) => (arp::gratuitous(mac, ip), [0xff; 6]),
        IpAddr::V6(ip) => (
            ndp::unsolicited_advertisement(mac, ip),
            [0x33, 0x33, 0, 0, 0, 1],
        ),
    };
    // SAFETY: plain socket creation; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&destination);
    // SAFETY: the frame and the address outlive the call; sizes are theirs.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let result = if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_read_as_the_kernel_prints_them() {
        assert_eq!(
            parse_mac("02:06:82:67:80:e9"),
            Some(EthernetAddress([2, 6, 0x82, 0x67, 0x80, 0xe9]))
        );
        assert_eq!(parse_mac("02:06:82:67:80"), None);
        assert_eq!(parse_mac("02:06:82:67:80:e9:00"), None);
        assert_eq!(parse_mac("zz:06:82:67:80:e9"), None);
    }

    /// What a packet socket on `lo` sees while `send` runs: the frames.
    fn frames_on_loopback(send: impl FnOnce()) -> Vec<Vec<u8>> {
        // SAFETY: plain socket calls on a descriptor closed below.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from((libc::ETH_P_ALL as u16).to_be()),
            );
            assert!(fd >= 0, "packet socket: {}", io::Error::last_os_error());
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            send();
            let mut frames = Vec::new();
            let mut buf = [0u8; 2048];
            loop {
                let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                if n <= 0 {
                    break;
                }
                frames.push(buf[..n as usize].to_vec());
            }
            libc::close(fd);
            frames
        }
    }

    #[test]
    fn takeovers_are_announced_by_arp_and_ndp() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            nexthop_testkit::skip("needs root (packet sockets)");
            return;
        }
        let v6: std::net::Ipv6Addr = "fd00:77::211".parse().unwrap();
        let v4: std::net::Ipv4Addr = "192.168.77.211".parse().unwrap();
        let frames = frames_on_loopback(|| {
            announce("lo", IpAddr::V6(v6)).unwrap();
            announce("lo", IpAddr::V4(v4)).unwrap();
        });
        let advertised = frames.iter().find_map(|f| ndp::advertisement_of(f));
        assert_eq!(advertised.map(|(a, _)| a), Some(v6), "{frames:?}");
        let garp = frames
            .iter()
            .any(|f| f.len() >= 42 && f[12..14] == [8, 6] && f[28..32] == v4.octets());
        assert!(garp, "a gratuitous ARP for {v4}: {frames:?}");
        assert!(announce("no-such-link0", IpAddr::V4(v4)).is_err());
    }

    #[test]
    fn loopback_counts_as_up_and_a_missing_link_as_down() {
        assert!(link_up("lo"));
        assert!(!link_up("no-such-link0"));
    }
}
