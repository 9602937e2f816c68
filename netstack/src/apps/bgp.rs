//! A BGP speaker on the host's own TCP: router-core's sans-IO sessions and
//! one RIB, carried over smoltcp sockets.
//!
//! Owns the sessions (one per configured peer, keyed by the peer's address),
//! their sockets and timers, the listening socket on port 179 for passive
//! peers, and the [`Rib`]. It mirrors the agent's runtime over kernel TCP:
//! session outputs become socket connects, writes, closes, TTLs and timer
//! deadlines; route outputs go to the RIB; the RIB's UPDATEs go back to the
//! sessions and its FIB changes wait in [`Speaker::take_fib`] for the host,
//! which resolves next hops and installs them. Opening connections is the
//! host's job too (it picks the source address and the ephemeral port), so
//! [`Speaker::take_connects`] hands over the wanted connects.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use router_core::bgp::fsm::{self, Event, Session, State, Timer};
use router_core::bgp::rib::policy::Policy;
use router_core::bgp::rib::{self, BgpRoute, PeerConfig, PeerId, Rib, RibConfig};
use router_core::bgp::wire::PathAttributes;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

/// The BGP port.
pub const BGP_PORT: u16 = 179;
/// Socket buffer size in each direction.
const BUFFER: usize = 65536;

/// A peer to run a session with.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// The session's settings (passive peers wait on port 179).
    pub session: fsm::Config,
    /// How the RIB treats the peer (address, next-hop-self address, export).
    pub rib: PeerConfig,
    /// Take the peer's routes into the RIB; off, they are dropped on
    /// arrival (FRR's `ebgp-requires-policy` without an inbound policy).
    pub import: bool,
}

/// One peer: its session, connection and timers.
#[derive(Debug)]
pub struct Peer {
    session: Session,
    rib_id: PeerId,
    socket: Option<SocketHandle>,
    established_socket: bool,
    timers: BTreeMap<Timer, Instant>,
    outbox: VecDeque<u8>,
    ttl: u8,
    import: bool,
}

impl Peer {
    /// The session (state, counters, what was negotiated).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The peer's name in the RIB.
    pub fn rib_id(&self) -> PeerId {
        self.rib_id
    }
}

/// A connection the speaker wants opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The peer's address (port 179).
    pub peer: IpAddr,
    /// IP TTL of the connection's packets.
    pub ttl: u8,
}

/// A BGP speaker: sessions, sockets, timers and the RIB.
#[derive(Debug)]
pub struct Speaker {
    rib: Rib,
    peers: BTreeMap<IpAddr, Peer>,
    listener: Option<SocketHandle>,
    /// Sockets aborted but not yet closed (their RST is still to go out).
    closing: Vec<SocketHandle>,
    connects: Vec<Connect>,
    fib: Vec<(IpNet, Option<BgpRoute>)>,
    /// When each prefix's FIB route last changed.
    fib_since: BTreeMap<IpNet, Instant>,
    /// Counts changes to the Loc-RIB (FRR's table version).
    version: u64,
    /// Session outputs not yet carried out, per peer.
    queue: VecDeque<(IpAddr, fsm::Output)>,
    now: Instant,
}

impl Speaker {
    /// A speaker with no peers.
    pub fn new(config: RibConfig) -> Speaker {
        Speaker {
            rib: Rib::new(config),
            peers: BTreeMap::new(),
            listener: None,
            closing: Vec::new(),
            connects: Vec::new(),
            fib: Vec::new(),
            fib_since: BTreeMap::new(),
            version: 0,
            queue: VecDeque::new(),
            now: Instant::ZERO,
        }
    }

    /// The RIB.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// The table version: how many times the Loc-RIB changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the FIB route of `prefix` last changed, if it has one.
    pub fn fib_since(&self, prefix: IpNet) -> Option<Instant> {
        self.fib_since.get(&prefix).copied()
    }

    /// The peers by address.
    pub fn peers(&self) -> &BTreeMap<IpAddr, Peer> {
        &self.peers
    }

    /// The peer whose RIB name is `id`.
    pub fn peer_by_id(&self, id: PeerId) -> Option<(IpAddr, &Peer)> {
        self.peers
            .iter()
            .find(|(_, p)| p.rib_id == id)
            .map(|(a, p)| (*a, p))
    }

    /// Add a peer and start its session (replacing one at the same address).
    pub fn add_peer(&mut self, now: Instant, sockets: &mut SocketSet<'static>, spec: PeerSpec) {
        let address = spec.rib.address;
        self.remove_peer(now, sockets, address);
        let ttl = spec.session.ttl;
        let peer = Peer {
            session: Session::new(spec.session),
            rib_id: self.rib.add_peer(spec.rib),
            socket: None,
            established_socket: false,
            timers: BTreeMap::new(),
            outbox: VecDeque::new(),
            ttl,
            import: spec.import,
        };
        self.peers.insert(address, peer);
        self.event(now, sockets, address, Event::ManualStart);
    }

    /// Stop the peer's session (Cease) and forget it and its routes.
    pub fn remove_peer(&mut self, now: Instant, sockets: &mut SocketSet<'static>, address: IpAddr) {
        if !self.peers.contains_key(&address) {
            return;
        }
        self.event(now, sockets, address, Event::ManualStop);
        if let Some(mut peer) = self.peers.remove(&address) {
            Self::flush(sockets, &mut peer);
            if let Some(h) = peer.socket.take() {
                sockets.get_mut::<tcp::Socket>(h).close();
                self.closing.push(h);
            }
            let out = self.rib.remove_peer(peer.rib_id);
            self.rib_outputs(out);
            self.drain(now, sockets);
        }
    }

    /// Replace the export policy of the peer at `address`, sending what
    /// changes.
    pub fn set_export_policy(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        address: IpAddr,
        policy: Policy,
    ) {
        let Some(id) = self.peers.get(&address).map(|p| p.rib_id) else {
            return;
        };
        self.now = now;
        let out = self.rib.set_export_policy(id, policy);
        self.rib_outputs(out);
        self.drain(now, sockets);
    }

    /// Originate `prefix` (network statement, pod CIDR, LoadBalancer IP).
    pub fn originate(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        prefix: IpNet,
        attributes: PathAttributes,
    ) {
        self.now = now;
        self.version += 1;
        let out = self.rib.originate(prefix, attributes);
        self.rib_outputs(out);
        self.drain(now, sockets);
    }

    /// Stop originating `prefix`.
    pub fn withdraw_originated(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        prefix: IpNet,
    ) {
        self.now = now;
        self.version += 1;
        let out = self.rib.withdraw_originated(prefix);
        self.rib_outputs(out);
        self.drain(now, sockets);
    }

    /// Abort every connection at once, as when the process dies: the peers
    /// see a reset, no NOTIFICATION. The speaker is not usable afterwards
    /// except to let the resets go out ([`Speaker::poll`]).
    pub fn abort(&mut self, sockets: &mut SocketSet<'static>) {
        for peer in self.peers.values_mut() {
            if let Some(h) = peer.socket.take() {
                sockets.get_mut::<tcp::Socket>(h).abort();
                self.closing.push(h);
            }
            peer.timers.clear();
        }
        if let Some(h) = self.listener.take() {
            sockets.get_mut::<tcp::Socket>(h).abort();
            self.closing.push(h);
        }
        self.peers.clear();
    }

    /// Whether nothing is left to do: no peers, no listener, no socket
    /// still closing.
    pub fn is_idle(&self) -> bool {
        self.peers.is_empty() && self.listener.is_none() && self.closing.is_empty()
    }

    /// Connections to open: the host opens each and reports it with
    /// [`Speaker::connecting`].
    pub fn take_connects(&mut self) -> Vec<Connect> {
        std::mem::take(&mut self.connects)
    }

    /// The host opened the socket `handle` towards `peer` (or could not:
    /// `None`).
    pub fn connecting(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        peer: IpAddr,
        handle: Option<SocketHandle>,
    ) {
        match handle {
            Some(h) => match self.peers.get_mut(&peer) {
                Some(p) if p.socket.is_none() => {
                    p.socket = Some(h);
                    p.established_socket = false;
                }
                _ => {
                    sockets.get_mut::<tcp::Socket>(h).abort();
                    self.closing.push(h);
                }
            },
            None => self.event(now, sockets, peer, Event::ConnectionFailed),
        }
    }

    /// FIB changes for the host: per prefix the new next hops, or `None`
    /// to remove the prefix's BGP route.
    pub fn take_fib(&mut self) -> Vec<(IpNet, Option<BgpRoute>)> {
        std::mem::take(&mut self.fib)
    }

    /// A fresh TCP socket with the speaker's buffers.
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
        let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
        for address in addresses {
            acted |= self.poll_peer(now, sockets, address);
        }
        acted
    }

    /// When the speaker next needs a poll: now if bytes wait to be
    /// written or connections to be opened, else the earliest timer.
    pub fn poll_at(&self) -> Option<Instant> {
        let busy = !self.connects.is_empty()
            || !self.fib.is_empty()
            || self
                .peers
                .values()
                .any(|p| p.socket.is_some() && p.established_socket && !p.outbox.is_empty());
        if busy {
            return Some(self.now);
        }
        self.peers
            .values()
            .flat_map(|p| p.timers.values())
            .min()
            .copied()
    }

    /// Keep a socket listening on 179 while any peer is passive; hand an
    /// incoming connection to its peer's session, refuse unknown sources.
    fn accept(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let passive = self.peers.values().any(|p| p.session.config().passive);
        let mut acted = false;
        if let Some(h) = self.listener {
            let socket = sockets.get_mut::<tcp::Socket>(h);
            if !socket.is_listening() {
                self.listener = None;
                let remote = socket.remote_endpoint().map(|e| IpAddr::from(e.addr));
                let wanted = remote.filter(|r| {
                    self.peers.get(r).is_some_and(|p| {
                        p.socket.is_none()
                            && matches!(p.session.state(), State::Active | State::Connect)
                    })
                });
                match wanted {
                    Some(r) => {
                        let ttl = self.peers[&r].ttl;
                        socket.set_hop_limit(Some(ttl));
                        let p = self.peers.get_mut(&r).expect("checked above");
                        p.socket = Some(h);
                        p.established_socket = false;
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

    fn poll_peer(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        address: IpAddr,
    ) -> bool {
        let mut acted = false;
        let due: Vec<Timer> = self.peers[&address]
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| *t)
            .collect();
        for timer in due {
            if let Some(p) = self.peers.get_mut(&address) {
                p.timers.remove(&timer);
            }
            self.event(now, sockets, address, Event::TimerExpired(timer));
            acted = true;
        }
        let Some(h) = self.peers.get(&address).and_then(|p| p.socket) else {
            return acted;
        };
        let socket = sockets.get_mut::<tcp::Socket>(h);
        let state = socket.state();
        let was_up = self.peers[&address].established_socket;
        if !was_up && state == tcp::State::Established {
            self.peers
                .get_mut(&address)
                .expect("present")
                .established_socket = true;
            self.event(now, sockets, address, Event::Connected);
            acted = true;
        }
        let Some(h) = self.peers.get(&address).and_then(|p| p.socket) else {
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
        let gone = match socket.state() {
            tcp::State::Closed | tcp::State::TimeWait | tcp::State::Closing => true,
            tcp::State::CloseWait | tcp::State::LastAck => !socket.can_recv(),
            _ => false,
        };
        if !received.is_empty() {
            self.event(now, sockets, address, Event::Received(received));
            acted = true;
        }
        if let Some(peer) = self.peers.get_mut(&address) {
            acted |= Self::flush(sockets, peer);
        }
        if gone && self.peers.get(&address).and_then(|p| p.socket) == Some(h) {
            let p = self.peers.get_mut(&address).expect("present");
            p.socket = None;
            sockets.get_mut::<tcp::Socket>(h).abort();
            self.closing.push(h);
            self.event(now, sockets, address, Event::ConnectionFailed);
            acted = true;
        }
        acted
    }

    /// Write what fits of the peer's pending bytes.
    fn flush(sockets: &mut SocketSet<'static>, peer: &mut Peer) -> bool {
        match peer.socket {
            Some(h) => write_out(sockets.get_mut::<tcp::Socket>(h), &mut peer.outbox) > 0,
            None => false,
        }
    }

    /// Hand `event` to the peer's session and carry out everything it
    /// leads to.
    fn event(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        address: IpAddr,
        event: Event,
    ) {
        self.now = now;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        for o in peer.session.handle(now, event) {
            self.queue.push_back((address, o));
        }
        self.drain(now, sockets);
    }

    fn drain(&mut self, now: Instant, sockets: &mut SocketSet<'static>) {
        self.now = now;
        while let Some((address, output)) = self.queue.pop_front() {
            self.output(sockets, address, output);
        }
    }

    fn output(&mut self, sockets: &mut SocketSet<'static>, address: IpAddr, output: fsm::Output) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        match &output {
            fsm::Output::Connect { ttl } => {
                peer.ttl = *ttl;
                if let Some(h) = peer.socket.take() {
                    sockets.get_mut::<tcp::Socket>(h).abort();
                    self.closing.push(h);
                }
                peer.outbox.clear();
                self.connects.push(Connect {
                    peer: address,
                    ttl: *ttl,
                });
            }
            fsm::Output::SetTtl(ttl) => {
                peer.ttl = *ttl;
                if let Some(h) = peer.socket {
                    sockets.get_mut::<tcp::Socket>(h).set_hop_limit(Some(*ttl));
                }
            }
            fsm::Output::Close => {
                if let Some(h) = peer.socket.take() {
                    // What the session sent last (a NOTIFICATION) goes out
                    // before the FIN.
                    let socket = sockets.get_mut::<tcp::Socket>(h);
                    write_out(socket, &mut peer.outbox);
                    peer.outbox.clear();
                    socket.close();
                    self.closing.push(h);
                }
                peer.established_socket = false;
            }
            fsm::Output::Send(bytes) => peer.outbox.extend(bytes.iter()),
            fsm::Output::ArmTimer { timer, at } => {
                peer.timers.insert(*timer, *at);
            }
            fsm::Output::CancelTimer(timer) => {
                peer.timers.remove(timer);
            }
            fsm::Output::Announce { .. } if !peer.import => {}
            _ => {
                let id = peer.rib_id;
                let out = self.rib.apply(id, &output);
                self.rib_outputs(out);
            }
        }
    }

    fn rib_outputs(&mut self, outputs: Vec<rib::Output>) {
        for o in outputs {
            match o {
                rib::Output::Fib { prefix, route } => {
                    self.version += 1;
                    match route {
                        Some(_) => self.fib_since.insert(prefix, self.now),
                        None => self.fib_since.remove(&prefix),
                    };
                    self.fib.push((prefix, route));
                }
                rib::Output::Send { peer, update } => {
                    let Some((address, p)) = self.peers.iter_mut().find(|(_, p)| p.rib_id == peer)
                    else {
                        continue;
                    };
                    let address = *address;
                    for o in p.session.handle(self.now, Event::SendUpdate(update)) {
                        self.queue.push_back((address, o));
                    }
                }
            }
        }
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
