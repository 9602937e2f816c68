//! BGP on the host's own TCP: router-core's speakers carried over smoltcp
//! sockets.
//!
//! A host runs either one [`Speaker`] (a router, e.g. FRR's bgpd) or a Cilium
//! node's control plane ([`NodeBgp`], one speaker per BGP instance). Either
//! way every decision is router-core's: this module only carries out their
//! [`Action`]s — connects handed to the host (which picks the source address
//! and ephemeral port), bytes written, TTLs set, connections closed, FIB
//! changes handed to the host — and reports what the sockets see (connected,
//! bytes, closed) and the passing of time back as [`Input`]s. Connections are
//! keyed by instance and peer address. A listening socket on port 179 waits
//! while any peer is passive; an incoming connection goes to the instance
//! whose speaker [`Speaker::accepts`] it, others are refused.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use router_core::bgp::rib::BgpRoute;
use router_core::bgp::speaker::{Action, Input, Speaker};
use router_core::cilium::Objects;
use router_core::cilium::node::{InstanceAction, NodeBgp};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

/// The BGP port.
pub const BGP_PORT: u16 = 179;
/// Socket buffer size in each direction.
const BUFFER: usize = 65536;
/// The instance name of a router's single speaker.
pub const ROUTER_INSTANCE: &str = "default";

/// What runs BGP on the host.
#[derive(Debug)]
pub enum Control {
    /// One speaker, configured by the host's role (a router).
    Router(Box<Speaker>),
    /// A Cilium node's control plane.
    Node(NodeBgp),
}

impl Control {
    fn handle(&mut self, now: Instant, instance: &str, input: Input) -> Vec<InstanceAction> {
        match self {
            Control::Router(s) => s
                .handle(now, input)
                .into_iter()
                .map(|a| (ROUTER_INSTANCE.into(), a))
                .collect(),
            Control::Node(n) => n.handle(now, instance, input),
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        match self {
            Control::Router(s) => s.poll_at(),
            Control::Node(n) => n.poll_at(),
        }
    }

    fn timers(&mut self, now: Instant) -> Vec<InstanceAction> {
        match self {
            Control::Router(_) => self.handle(now, ROUTER_INSTANCE, Input::Timers),
            Control::Node(n) => n.timers(now),
        }
    }

    fn speakers(&self) -> Vec<(&str, &Speaker)> {
        match self {
            Control::Router(s) => vec![(ROUTER_INSTANCE, &**s)],
            Control::Node(n) => n.speakers().collect(),
        }
    }

    /// The instance that takes a connection from `peer`.
    fn accepting(&self, peer: IpAddr) -> Option<String> {
        self.speakers()
            .into_iter()
            .find(|(_, s)| s.accepts(peer))
            .map(|(name, _)| name.to_string())
    }
}

/// A connection the host is asked to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The instance.
    pub instance: String,
    /// The peer's address.
    pub peer: IpAddr,
    /// The peer's port.
    pub port: u16,
    /// IP TTL of the connection's packets.
    pub ttl: u8,
    /// The local address to use, when the speaker names one.
    pub bind: Option<IpAddr>,
}

/// One connection's socket and what waits to be written to it.
#[derive(Debug, Default)]
struct Conn {
    socket: Option<SocketHandle>,
    established: bool,
    outbox: VecDeque<u8>,
}

type Key = (String, IpAddr);

/// Most events kept until someone takes them (older ones are dropped).
const EVENTS: usize = 10_000;

/// What BGP did, for a timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BgpEvent {
    /// A session's report (state change, UPDATE counts, End-of-RIB, …).
    Session {
        /// The instance (a router's speaker: `router`).
        instance: String,
        /// The peer.
        peer: IpAddr,
        /// What happened.
        report: router_core::bgp::speaker::Report,
    },
    /// A route BGP installed (its next hops) or removed (none).
    Route {
        /// The prefix.
        prefix: IpNet,
        /// Next hops; empty when the route left the FIB.
        via: Vec<IpAddr>,
    },
}

/// BGP on a host: the control plane and its sockets.
#[derive(Debug)]
pub struct Bgp {
    control: Control,
    conns: BTreeMap<Key, Conn>,
    listener: Option<SocketHandle>,
    /// Sockets aborted but not yet closed (their RST is still to go out).
    closing: Vec<SocketHandle>,
    connects: Vec<Connect>,
    fib: Vec<(IpNet, Option<BgpRoute>)>,
    events: VecDeque<(Instant, BgpEvent)>,
    now: Instant,
}

impl Bgp {
    /// BGP run by `control`, no connections yet.
    pub fn new(control: Control) -> Bgp {
        Bgp {
            control,
            conns: BTreeMap::new(),
            listener: None,
            closing: Vec::new(),
            connects: Vec::new(),
            fib: Vec::new(),
            events: VecDeque::new(),
            now: Instant::ZERO,
        }
    }

    /// What runs BGP.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The router's speaker, if the host is a router.
    pub fn speaker(&self) -> Option<&Speaker> {
        match &self.control {
            Control::Router(s) => Some(s),
            Control::Node(_) => None,
        }
    }

    /// The node's control plane, if the host is a Cilium node.
    pub fn node(&self) -> Option<&NodeBgp> {
        match &self.control {
            Control::Node(n) => Some(n),
            Control::Router(_) => None,
        }
    }

    /// The events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<(Instant, BgpEvent)> {
        self.events.drain(..).collect()
    }

    fn event(&mut self, now: Instant, event: BgpEvent) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back((now, event));
    }

    /// Feed the router's speaker (configuration: peers, routes).
    pub fn router_input(&mut self, now: Instant, sockets: &mut SocketSet<'static>, input: Input) {
        let actions = self.control.handle(now, ROUTER_INSTANCE, input);
        self.carry_out(now, sockets, actions);
    }

    /// Reconcile the node's control plane with `objects`.
    pub fn reconcile(&mut self, now: Instant, sockets: &mut SocketSet<'static>, objects: &Objects) {
        if let Control::Node(n) = &mut self.control {
            let actions = n.reconcile(now, objects);
            self.carry_out(now, sockets, actions);
        }
    }

    /// Abort every connection at once, as when the process dies: the peers
    /// see a reset, no NOTIFICATION. Returns the sockets whose resets are
    /// still to go out (remove each once closed).
    pub fn abort(mut self, sockets: &mut SocketSet<'static>) -> Vec<SocketHandle> {
        let handles = self.conns.values_mut().filter_map(|c| c.socket.take());
        for h in handles.chain(self.listener.take()) {
            sockets.get_mut::<tcp::Socket>(h).abort();
            self.closing.push(h);
        }
        self.closing
    }

    /// The prefixes whose BGP routes are in the FIB now.
    pub fn installed(&self) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = self
            .control
            .speakers()
            .iter()
            .flat_map(|(_, s)| {
                s.rib()
                    .loc_rib()
                    .map(|(p, _)| p)
                    .filter(|p| s.rib().route(*p).is_some())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Connections to open: the host opens each and reports it with
    /// [`Bgp::connecting`].
    pub fn take_connects(&mut self) -> Vec<Connect> {
        std::mem::take(&mut self.connects)
    }

    /// The host opened the socket `handle` for `connect` (or could not:
    /// `None`).
    pub fn connecting(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        connect: &Connect,
        handle: Option<SocketHandle>,
    ) {
        let key = (connect.instance.clone(), connect.peer);
        match handle {
            Some(h) => match self.conns.get_mut(&key) {
                Some(c) if c.socket.is_none() => {
                    c.socket = Some(h);
                    c.established = false;
                }
                _ => {
                    sockets.get_mut::<tcp::Socket>(h).abort();
                    self.closing.push(h);
                }
            },
            None => self.input(
                now,
                sockets,
                &connect.instance,
                Input::ConnectionFailed(connect.peer),
            ),
        }
    }

    /// FIB changes for the host: per prefix the new next hops, or `None`
    /// to remove the prefix's BGP route.
    pub fn take_fib(&mut self) -> Vec<(IpNet, Option<BgpRoute>)> {
        std::mem::take(&mut self.fib)
    }

    /// A fresh TCP socket with BGP's buffers.
    pub fn socket() -> tcp::Socket<'static> {
        tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUFFER]),
            tcp::SocketBuffer::new(vec![0; BUFFER]),
        )
    }

    /// Move bytes, accept connections, fire due timers. Returns whether
    /// anything happened.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        self.now = now;
        let mut acted = false;
        self.closing.retain(|&h| {
            let closed = sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed;
            if closed {
                sockets.remove(h);
            }
            !closed
        });
        acted |= self.accept(sockets);
        if self.control.poll_at().is_some_and(|at| at <= now) {
            let actions = self.control.timers(now);
            self.carry_out(now, sockets, actions);
            acted = true;
        }
        let keys: Vec<Key> = self.conns.keys().cloned().collect();
        for key in keys {
            acted |= self.poll_conn(now, sockets, &key);
        }
        acted
    }

    /// When BGP next needs a poll: now if bytes wait to be written,
    /// connections to be opened or routes to be installed, else the
    /// earliest timer.
    pub fn poll_at(&self) -> Option<Instant> {
        let busy = !self.connects.is_empty()
            || !self.fib.is_empty()
            || self
                .conns
                .values()
                .any(|c| c.socket.is_some() && c.established && !c.outbox.is_empty());
        if busy {
            return Some(self.now);
        }
        self.control.poll_at()
    }

    fn input(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        instance: &str,
        input: Input,
    ) {
        let actions = self.control.handle(now, instance, input);
        self.carry_out(now, sockets, actions);
    }

    /// Keep a socket listening on 179 while any peer is passive; hand an
    /// incoming connection to the instance that takes it, refuse others.
    fn accept(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let passive = self.control.speakers().iter().any(|(_, s)| s.listens());
        let mut acted = false;
        if let Some(h) = self.listener {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if !socket.is_listening() {
                self.listener = None;
                let remote = socket.remote_endpoint().map(|e| IpAddr::from(e.addr));
                let taker = remote.and_then(|r| self.control.accepting(r).map(|i| (i, r)));
                match taker {
                    Some(key) => {
                        let conn = self.conns.entry(key).or_default();
                        // A handshake of the peer's still under way (not
                        // yet reported connected) gives way to the newer
                        // one; left alone it would go back to listening,
                        // unpolled, and swallow a later SYN.
                        if let Some(old) = conn.socket.replace(h) {
                            sockets.get_mut::<tcp::Socket>(old).abort();
                            self.closing.push(old);
                        }
                        conn.established = false;
                        conn.outbox.clear();
                    }
                    None => {
                        socket.abort();
                        self.closing.push(h);
                    }
                }
                acted = true;
            }
        }
        if passive && self.listener.is_none() {
            let mut socket = Self::socket();
            socket
                .listen(BGP_PORT)
                .expect("a fresh socket listens on a non-zero port");
            self.listener = Some(sockets.add(socket));
            acted = true;
        }
        acted
    }

    fn poll_conn(&mut self, now: Instant, sockets: &mut SocketSet<'static>, key: &Key) -> bool {
        let (instance, peer) = (key.0.as_str(), key.1);
        let Some(h) = self.conns.get(key).and_then(|c| c.socket) else {
            return false;
        };
        let mut acted = false;
        let socket = sockets.get_mut::<tcp::Socket>(h);
        if !self.conns[key].established && socket.state() == tcp::State::Established {
            let local = socket.local_endpoint().map(|e| IpAddr::from(e.addr));
            self.conns.get_mut(key).expect("present").established = true;
            self.input(now, sockets, instance, Input::Connected { peer, local });
            acted = true;
        }
        let Some(h) = self.conns.get(key).and_then(|c| c.socket) else {
            return acted;
        };
        let socket = sockets.get_mut::<tcp::Socket>(h);
        let mut received = Vec::new();
        while socket.can_recv() {
            let _ = socket.recv(|data| {
                received.extend_from_slice(data);
                (data.len(), ())
            });
        }
        // An accepted socket whose handshake was reset goes back to Listen
        // (RFC 9293 §3.10.7.3) and would take the next SYN, from anyone:
        // its connection to `peer` is over.
        let other = socket
            .remote_endpoint()
            .is_some_and(|e| IpAddr::from(e.addr) != peer);
        let gone = other
            || match socket.state() {
                tcp::State::Closed
                | tcp::State::Listen
                | tcp::State::TimeWait
                | tcp::State::Closing => true,
                tcp::State::CloseWait | tcp::State::LastAck => !socket.can_recv(),
                _ => false,
            };
        if !received.is_empty() {
            self.input(now, sockets, instance, Input::Received(peer, received));
            acted = true;
        }
        if let Some(conn) = self.conns.get_mut(key) {
            acted |= flush(sockets, conn);
        }
        if gone && self.conns.get(key).and_then(|c| c.socket) == Some(h) {
            let conn = self.conns.get_mut(key).expect("present");
            conn.socket = None;
            conn.established = false;
            sockets.get_mut::<tcp::Socket>(h).abort();
            self.closing.push(h);
            self.input(now, sockets, instance, Input::ConnectionFailed(peer));
            acted = true;
        }
        acted
    }

    fn carry_out(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        actions: Vec<InstanceAction>,
    ) {
        self.now = now;
        for (instance, action) in actions {
            match action {
                Action::Connect {
                    peer,
                    port,
                    ttl,
                    bind,
                    md5_key: _,
                } => {
                    let conn = self.conns.entry((instance.clone(), peer)).or_default();
                    if let Some(h) = conn.socket.take() {
                        sockets.get_mut::<tcp::Socket>(h).abort();
                        self.closing.push(h);
                    }
                    conn.established = false;
                    conn.outbox.clear();
                    self.connects.push(Connect {
                        instance,
                        peer,
                        port,
                        ttl,
                        bind,
                    });
                }
                Action::SetTtl { peer, ttl } => {
                    if let Some(h) = self.conns.get(&(instance, peer)).and_then(|c| c.socket) {
                        sockets.get_mut::<tcp::Socket>(h).set_hop_limit(Some(ttl));
                    }
                }
                Action::Send { peer, bytes } => {
                    let conn = self.conns.entry((instance, peer)).or_default();
                    conn.outbox.extend(bytes.iter());
                }
                Action::Close { peer } => {
                    if let Some(conn) = self.conns.get_mut(&(instance, peer)) {
                        if let Some(h) = conn.socket.take() {
                            // What the session sent last (a NOTIFICATION)
                            // goes out before the FIN.
                            let socket = sockets.get_mut::<tcp::Socket>(h);
                            write_out(socket, &mut conn.outbox);
                            socket.close();
                            self.closing.push(h);
                        }
                        conn.outbox.clear();
                        conn.established = false;
                    }
                }
                Action::Fib { prefix, route } => {
                    let via = route
                        .as_ref()
                        .map(|r| r.nexthops.clone())
                        .unwrap_or_default();
                    self.event(now, BgpEvent::Route { prefix, via });
                    self.fib.push((prefix, route));
                }
                Action::Report { peer, report } => {
                    let instance = instance.clone();
                    self.event(
                        now,
                        BgpEvent::Session {
                            instance,
                            peer,
                            report,
                        },
                    );
                }
            }
        }
    }
}

/// Write what fits of the connection's pending bytes.
fn flush(sockets: &mut SocketSet<'static>, conn: &mut Conn) -> bool {
    match conn.socket {
        Some(h) if conn.established => {
            write_out(sockets.get_mut::<tcp::Socket>(h), &mut conn.outbox) > 0
        }
        _ => false,
    }
}

/// Write what fits of `outbox` to `socket`; the bytes written.
fn write_out(socket: &mut tcp::Socket<'static>, outbox: &mut VecDeque<u8>) -> usize {
    if !socket.may_send() || outbox.is_empty() {
        return 0;
    }
    let (a, b) = outbox.as_slices();
    let mut written = socket.send_slice(a).unwrap_or(0);
    if written == a.len() {
        written += socket.send_slice(b).unwrap_or(0);
    }
    outbox.drain(..written);
    written
}
