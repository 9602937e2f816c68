//! Service translation on a node: the load-balancer addresses (LoadBalancer
//! ingress IPs) the node serves, as Cilium's kube-proxy replacement in SNAT
//! mode does them.
//!
//! A frame for a frontend (`address:port/protocol`) that opens a new flow gets
//! a backend chosen at random (from the host's seed); the flow is kept in a
//! connection-tracking table keyed by its 5-tuple, so every later packet of it
//! goes to the same backend. The destination is rewritten to the backend
//! (DNAT); when the backend runs on another node the source is rewritten too,
//! to the node's SNAT address and a free port (SNAT), so that the reply comes
//! back through this node; a backend on this node sees the client's address.
//! Replies are recognised by their own 5-tuple and translated back (source =
//! the frontend, destination = the client). Idle flows expire after
//! [`FLOW_TIMEOUT`]. IPv4 TCP and UDP only; fragments pass untouched.
//!
//! Decision for the future: this stage lives in the host, in front of
//! router-core's datapath, not inside it. Moving it into router-core would
//! need the eBPF counterpart in `offload-bpf/` and its differential test
//! (the datapath's rule: one behaviour, two runtimes); until then the
//! simulator's nodes translate here and the datapath only routes.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use router_core::hash::splitmix64;
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

/// How long a flow without packets is kept.
pub const FLOW_TIMEOUT: Duration = Duration::from_secs(120);

/// A transport protocol a frontend listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    fn of(p: IpProtocol) -> Option<Self> {
        match p {
            IpProtocol::Tcp => Some(Protocol::Tcp),
            IpProtocol::Udp => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// A service address: `address:port/protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    /// Address and port.
    pub addr: SocketAddrV4,
    /// Protocol.
    pub protocol: Protocol,
}

/// A backend of a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    /// Address and port.
    pub addr: SocketAddrV4,
    /// It runs on this node (no SNAT: it sees the client's address).
    pub local: bool,
}

/// A flow's 5-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Tuple {
    protocol: Protocol,
    src: SocketAddrV4,
    dst: SocketAddrV4,
}

/// A tracked flow: what its packets are rewritten to.
#[derive(Clone, Copy, Debug)]
struct Flow {
    /// The forward direction after translation.
    translated: Tuple,
    last_seen: Instant,
}

/// What the stage did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a service packet: route it as it is.
    Untouched,
    /// Rewritten (a flow to a backend, or a reply to a client): route it.
    Translated,
    /// For a frontend with no backend: drop it.
    NoBackend,
}

/// Counts of the stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Flows opened to a frontend (each picked a backend).
    pub flows: u64,
    /// Of those, flows to a backend on another node (SNAT).
    pub snat_flows: u64,
    /// Frames dropped for a frontend without backends.
    pub no_backend: u64,
}

/// The frontends a node serves and its connection-tracking table.
#[derive(Clone, Debug)]
pub struct Services {
    frontends: BTreeMap<Frontend, Vec<Backend>>,
    snat: Option<Ipv4Addr>,
    flows: BTreeMap<Tuple, Flow>,
    /// Reply tuple (backend → client or SNAT address) → the flow's original tuple.
    replies: BTreeMap<Tuple, Tuple>,
    rng: u64,
    counters: Counters,
}

impl Services {
    /// No frontends; backend choices drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Services {
            frontends: BTreeMap::new(),
            snat: None,
            flows: BTreeMap::new(),
            replies: BTreeMap::new(),
            rng: seed,
            counters: Counters::default(),
        }
    }

    /// Whether no frontend is configured and no flow is tracked.
    pub fn is_idle(&self) -> bool {
        self.frontends.is_empty() && self.flows.is_empty()
    }

    /// Serve `frontend` with `backends` (replacing its previous ones; open
    /// flows keep their backend).
    pub fn set(&mut self, frontend: Frontend, backends: Vec<Backend>) {
        self.frontends.insert(frontend, backends);
    }

    /// Stop serving `frontend`.
    pub fn remove(&mut self, frontend: &Frontend) {
        self.frontends.remove(frontend);
    }

    /// The frontends served, in order.
    pub fn frontends(&self) -> impl Iterator<Item = (&Frontend, &[Backend])> {
        self.frontends.iter().map(|(f, b)| (f, b.as_slice()))
    }

    /// The address flows to other nodes' backends leave from.
    pub fn set_snat_address(&mut self, addr: Option<Ipv4Addr>) {
        self.snat = addr;
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Translate an Ethernet frame in place if it belongs to a service flow.
    pub fn translate(&mut self, now: Instant, frame: &mut [u8]) -> Verdict {
        let Some(tuple) = tuple_of(frame) else {
            return Verdict::Untouched;
        };
        if let Some(flow) = self.flows.get_mut(&tuple) {
            flow.last_seen = now;
            let t = flow.translated;
            rewrite(frame, t.src, t.dst);
            return Verdict::Translated;
        }
        if let Some(&original) = self.replies.get(&tuple) {
            if let Some(flow) = self.flows.get_mut(&original) {
                flow.last_seen = now;
            }
            rewrite(frame, original.dst, original.src);
            return Verdict::Translated;
        }
        let frontend = Frontend {
            addr: tuple.dst,
            protocol: tuple.protocol,
        };
        let Some(count) = self.frontends.get(&frontend).map(Vec::len) else {
            return Verdict::Untouched;
        };
        if count == 0 {
            self.counters.no_backend += 1;
            return Verdict::NoBackend;
        }
        let pick = (splitmix64(&mut self.rng) % count as u64) as usize;
        let backend = self.frontends[&frontend][pick];
        self.expire(now);
        let src = match (backend.local, self.snat) {
            (false, Some(snat)) => {
                self.counters.snat_flows += 1;
                SocketAddrV4::new(
                    snat,
                    self.free_port(tuple.protocol, snat, backend.addr, tuple.src.port()),
                )
            }
            _ => tuple.src,
        };
        let translated = Tuple {
            protocol: tuple.protocol,
            src,
            dst: backend.addr,
        };
        let reply = Tuple {
            protocol: tuple.protocol,
            src: backend.addr,
            dst: src,
        };
        self.counters.flows += 1;
        self.flows.insert(
            tuple,
            Flow {
                translated,
                last_seen: now,
            },
        );
        self.replies.insert(reply, tuple);
        rewrite(frame, src, backend.addr);
        Verdict::Translated
    }

    /// A port on `snat` towards `backend` no tracked flow uses, trying `wanted` first.
    fn free_port(
        &self,
        protocol: Protocol,
        snat: Ipv4Addr,
        backend: SocketAddrV4,
        wanted: u16,
    ) -> u16 {
        let taken = |port: u16| {
            self.replies.contains_key(&Tuple {
                protocol,
                src: backend,
                dst: SocketAddrV4::new(snat, port),
            })
        };
        let mut port = wanted;
        while taken(port) {
            port = if port == u16::MAX { 1024 } else { port + 1 };
        }
        port
    }

    /// Forget flows idle for longer than [`FLOW_TIMEOUT`].
    fn expire(&mut self, now: Instant) {
        let idle: Vec<Tuple> = self
            .flows
            .iter()
            .filter(|(_, f)| f.last_seen + FLOW_TIMEOUT < now)
            .map(|(t, _)| *t)
            .collect();
        for t in idle {
            self.flows.remove(&t);
            self.replies.retain(|_, original| *original != t);
        }
    }
}

/// The 5-tuple of an unfragmented IPv4 TCP/UDP frame.
fn tuple_of(frame: &[u8]) -> Option<Tuple> {
    if frame.len() < ETH || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&frame[ETH..]).ok()?;
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let protocol = Protocol::of(ip.next_header())?;
    let (sport, dport) = match protocol {
        Protocol::Tcp => {
            let t = TcpPacket::new_checked(ip.payload()).ok()?;
            (t.src_port(), t.dst_port())
        }
        Protocol::Udp => {
            let u = UdpPacket::new_checked(ip.payload()).ok()?;
            (u.src_port(), u.dst_port())
        }
    };
    Some(Tuple {
        protocol,
        src: SocketAddrV4::new(ip.src_addr(), sport),
        dst: SocketAddrV4::new(ip.dst_addr(), dport),
    })
}

/// Set a frame's addresses and ports and recompute its checksums
/// (the frame was checked by [`tuple_of`]).
fn rewrite(frame: &mut [u8], src: SocketAddrV4, dst: SocketAddrV4) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[ETH..]);
    ip.set_src_addr(*src.ip());
    ip.set_dst_addr(*dst.ip());
    ip.fill_checksum();
    let (s, d) = (IpAddress::Ipv4(*src.ip()), IpAddress::Ipv4(*dst.ip()));
    match ip.next_header() {
        IpProtocol::Tcp => {
            let mut t = TcpPacket::new_unchecked(ip.payload_mut());
            t.set_src_port(src.port());
            t.set_dst_port(dst.port());
            t.fill_checksum(&s, &d);
        }
        IpProtocol::Udp => {
            let mut u = UdpPacket::new_unchecked(ip.payload_mut());
            u.set_src_port(src.port());
            u.set_dst_port(dst.port());
            u.fill_checksum(&s, &d);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    /// An Ethernet + IPv4 + TCP SYN frame.
    fn tcp(src: &str, dst: &str) -> Vec<u8> {
        let (src, dst) = (sock(src), sock(dst));
        let mut f = vec![0u8; ETH + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = Ipv4Packet::new_unchecked(&mut f[ETH..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(40);
        ip.set_hop_limit(64);
        ip.set_next_header(IpProtocol::Tcp);
        ip.clear_flags();
        ip.set_frag_offset(0);
        ip.set_src_addr(*src.ip());
        ip.set_dst_addr(*dst.ip());
        ip.fill_checksum();
        let mut t = TcpPacket::new_unchecked(ip.payload_mut());
        t.set_header_len(20);
        t.set_src_port(src.port());
        t.set_dst_port(dst.port());
        t.set_syn(true);
        t.fill_checksum(&IpAddress::Ipv4(*src.ip()), &IpAddress::Ipv4(*dst.ip()));
        f
    }

    fn seen(frame: &[u8]) -> (SocketAddrV4, SocketAddrV4) {
        let ip = Ipv4Packet::new_checked(&frame[ETH..]).unwrap();
        assert!(ip.verify_checksum());
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        let (s, d) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        assert!(t.verify_checksum(&s, &d));
        (
            SocketAddrV4::new(ip.src_addr(), t.src_port()),
            SocketAddrV4::new(ip.dst_addr(), t.dst_port()),
        )
    }

    const VIP: &str = "172.16.1.1:80";
    const CLIENT: &str = "192.168.10.200:50000";

    fn services(local: bool) -> Services {
        let mut s = Services::new(7);
        s.set_snat_address(Some("192.168.10.101".parse().unwrap()));
        let frontend = Frontend {
            addr: sock(VIP),
            protocol: Protocol::Tcp,
        };
        let backend = Backend {
            addr: sock("172.20.0.5:80"),
            local,
        };
        s.set(frontend, vec![backend]);
        s
    }

    #[test]
    fn a_local_backend_sees_the_client_and_replies_come_from_the_frontend() {
        let mut s = services(true);
        let mut f = tcp(CLIENT, VIP);
        assert_eq!(s.translate(Instant::ZERO, &mut f), Verdict::Translated);
        assert_eq!(seen(&f), (sock(CLIENT), sock("172.20.0.5:80")));
        let mut reply = tcp("172.20.0.5:80", CLIENT);
        assert_eq!(s.translate(Instant::ZERO, &mut reply), Verdict::Translated);
        assert_eq!(seen(&reply), (sock(VIP), sock(CLIENT)));
        assert_eq!(s.counters().snat_flows, 0);
    }

    #[test]
    fn a_remote_backend_sees_the_node_and_replies_are_reversed() {
        let mut s = services(false);
        let mut f = tcp(CLIENT, VIP);
        s.translate(Instant::ZERO, &mut f);
        let (src, dst) = seen(&f);
        assert_eq!(
            (src, dst),
            (sock("192.168.10.101:50000"), sock("172.20.0.5:80"))
        );
        let mut again = tcp(CLIENT, VIP);
        s.translate(Instant::from_millis(1), &mut again);
        assert_eq!(seen(&again), (src, dst), "one flow, one backend");
        let mut reply = tcp("172.20.0.5:80", "192.168.10.101:50000");
        assert_eq!(s.translate(Instant::ZERO, &mut reply), Verdict::Translated);
        assert_eq!(seen(&reply), (sock(VIP), sock(CLIENT)));
        let c = s.counters();
        assert_eq!((c.flows, c.snat_flows), (1, 1));
    }

    #[test]
    fn snat_ports_do_not_collide_and_idle_flows_expire() {
        let mut s = services(false);
        let mut a = tcp(CLIENT, VIP);
        let mut b = tcp("192.168.10.201:50000", VIP);
        s.translate(Instant::ZERO, &mut a);
        s.translate(Instant::ZERO, &mut b);
        assert_eq!(seen(&a).0.port(), 50000);
        assert_eq!(seen(&b).0.port(), 50001);
        let late = Instant::ZERO + FLOW_TIMEOUT + Duration::from_secs(1);
        let mut c = tcp("192.168.10.202:50000", VIP);
        s.translate(late, &mut c);
        assert_eq!(
            seen(&c).0.port(),
            50000,
            "the idle flows released their ports"
        );
        assert_eq!(s.flows.len(), 1);
    }

    #[test]
    fn backends_are_picked_at_random_and_none_means_drop() {
        let mut s = services(true);
        let frontend = Frontend {
            addr: sock(VIP),
            protocol: Protocol::Tcp,
        };
        let backends = (1..=3)
            .map(|i| Backend {
                addr: sock(&format!("172.20.0.{i}:80")),
                local: true,
            })
            .collect();
        s.set(frontend, backends);
        let mut picked = std::collections::BTreeSet::new();
        for port in 40000..40030 {
            let mut f = tcp(&format!("192.168.10.200:{port}"), VIP);
            s.translate(Instant::ZERO, &mut f);
            picked.insert(seen(&f).1);
        }
        assert_eq!(picked.len(), 3);
        s.set(frontend, Vec::new());
        let mut f = tcp("192.168.10.200:1", VIP);
        assert_eq!(s.translate(Instant::ZERO, &mut f), Verdict::NoBackend);
        let mut other = tcp(CLIENT, "172.16.1.2:80");
        assert_eq!(s.translate(Instant::ZERO, &mut other), Verdict::Untouched);
    }
}
