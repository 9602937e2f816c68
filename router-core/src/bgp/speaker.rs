//! One BGP instance, sans-IO: the single owner of its sessions and its RIB.
//!
//! Inputs are plain values fed with the time, [`Speaker::handle`]`(now,
//! Input)`: configuration (a peer added or removed, an export policy, a route
//! originated or withdrawn), what a connection did (connected, failed or
//! closed, bytes received) and the passing of time ([`Input::Timers`], due
//! at [`Speaker::poll_at`]). Outputs are plain values, [`Action`]s:
//! connections to open (port, TTL, TCP MD5 key, bind address), bytes to
//! write, TTLs to set, connections to close, FIB changes, and what each
//! session reports for logs. The simulator's hosts (smoltcp) and the agent
//! (kernel TCP) carry actions out and report what their sockets see; every
//! decision is made here.
//!
//! Owns: the sessions ([`crate::bgp::fsm`]) and their timers' deadlines, the
//! RIB ([`crate::bgp::rib`]), the originated routes with when each was first
//! originated, the routes a peer sent that carry our own AS (refused by the
//! RIB, RFC 4271 §9.1.2, but listed as received as Cilium lists them), and a
//! count of Loc-RIB changes. Does not own: which peers and routes a node
//! wants (`cilium::node` decides that for a Cilium node, the FRR config for a
//! router), sockets, or the clock.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use smoltcp::time::Instant;

use super::fsm::{self, Event, Negotiated, Session, State, Timer};
use super::rib::policy::Policy;
use super::rib::{self, BgpRoute, PeerConfig, PeerId, Rib, RibConfig, RouteAttrs};
use super::wire::{AttributeError, Family, NextHop, Notification, PathAttributes};

/// How to reach a peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    /// The peer's TCP port.
    pub port: u16,
    /// The local address to bind, when one is wanted.
    pub bind: Option<IpAddr>,
    /// The TCP MD5 signature key (RFC 2385).
    pub md5_key: Option<String>,
}

/// A peer to run a session with.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    /// The session's settings (passive peers wait for the peer to connect).
    pub session: fsm::Config,
    /// How the RIB treats the peer (address, next-hop-self addresses, export).
    pub rib: PeerConfig,
    /// Take the peer's routes into the RIB; off, they are dropped on
    /// arrival (FRR's `ebgp-requires-policy` without an inbound policy).
    pub import: bool,
    /// How to reach it.
    pub transport: Transport,
}

/// An input to the speaker.
#[derive(Clone, Debug)]
pub enum Input {
    /// Add a peer and start its session (ManualStart), replacing one at the
    /// same address.
    AddPeer(Box<PeerSpec>),
    /// Stop the peer's session (ManualStop: a Cease) and forget it and the
    /// routes it gave.
    RemovePeer(IpAddr),
    /// Replace the export policy towards a peer, sending what changes.
    SetExportPolicy(IpAddr, Policy),
    /// Originate a prefix (network statement, pod CIDR, LoadBalancer IP),
    /// replacing its attributes if already originated.
    Originate(IpNet, Box<PathAttributes>),
    /// Stop originating a prefix.
    Withdraw(IpNet),
    /// The connection to the peer is up (ours completed, or one from it was
    /// accepted: see [`Speaker::accepts`]); `local` is our address on it.
    Connected {
        /// The peer.
        peer: IpAddr,
        /// Our end's address.
        local: Option<IpAddr>,
    },
    /// The connection attempt failed, or the connection was lost or closed
    /// by the peer.
    ConnectionFailed(IpAddr),
    /// Octets read from the peer's connection, in order.
    Received(IpAddr, Vec<u8>),
    /// Time passed: every timer due at `now` fires.
    Timers,
    /// The process exits: sessions where both sides do graceful restart are
    /// closed without a NOTIFICATION, so the peer keeps our routes until we
    /// are back (RFC 4724); the others stop with a Cease. Every peer is
    /// forgotten.
    Exit,
}

/// Something the runtime must do, or may log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a connection (dropping any earlier one to the peer).
    Connect {
        /// The peer.
        peer: IpAddr,
        /// Its port.
        port: u16,
        /// IP TTL of the connection's packets.
        ttl: u8,
        /// The local address to bind.
        bind: Option<IpAddr>,
        /// The TCP MD5 key.
        md5_key: Option<String>,
    },
    /// Use this IP TTL on the peer's connection.
    SetTtl {
        /// The peer.
        peer: IpAddr,
        /// The TTL.
        ttl: u8,
    },
    /// Write these octets to the peer's connection.
    Send {
        /// The peer.
        peer: IpAddr,
        /// The octets.
        bytes: Vec<u8>,
    },
    /// Close the peer's connection once what was sent is written (or
    /// abandon the attempt).
    Close {
        /// The peer.
        peer: IpAddr,
    },
    /// Install (`Some`) or remove (`None`) the BGP route of a prefix.
    Fib {
        /// The prefix.
        prefix: IpNet,
        /// Its next hops.
        route: Option<BgpRoute>,
    },
    /// What a session did, for logs.
    Report {
        /// The peer.
        peer: IpAddr,
        /// What happened.
        report: Report,
    },
}

/// What a session did, as the runtimes log it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The FSM state changed.
    State {
        /// The old state.
        from: State,
        /// The new state.
        to: State,
    },
    /// The session reached Established with this.
    Established(Box<Negotiated>),
    /// A NOTIFICATION was sent or received.
    Notification {
        /// Sent by us.
        sent: bool,
        /// The message.
        notification: Notification,
    },
    /// The Established session ended; the peer's routes of `stale`
    /// families stay (graceful restart helper), `kept` of them.
    Down {
        /// Families kept stale.
        stale: BTreeSet<Family>,
        /// Routes kept.
        kept: usize,
    },
    /// Routes announced by the peer.
    Announced(usize),
    /// Routes withdrawn by the peer.
    Withdrawn(usize),
    /// End-of-RIB received.
    EndOfRib(Family),
    /// The peer's stale routes of a family were purged.
    PurgedStale(Family),
    /// The peer asked for our routes again.
    RefreshRequested(Family),
    /// RFC 7606 attribute errors in an UPDATE (treat-as-withdraw or discard).
    AttributeErrors(Vec<AttributeError>),
    /// Whoever configures the speaker stopped the session, for this reason
    /// (e.g. "no longer selected", "settings changed").
    Stopped(&'static str),
    /// Routes ignored for a semantically incorrect NEXT_HOP (RFC 4271 §6.3:
    /// unspecified, multicast or broadcast, or our own address).
    BadNextHop {
        /// The next hop.
        next_hop: IpAddr,
        /// How many routes carried it.
        routes: usize,
    },
}

/// A received route the RIB refused: our AS is in its path.
#[derive(Clone, Debug)]
pub struct Looped {
    /// Its attributes.
    pub attrs: Arc<RouteAttrs>,
    /// Kept from a restarting peer.
    pub stale: bool,
}

/// One peer: its session and what the speaker keeps about it.
#[derive(Debug)]
pub struct Peer {
    session: Session,
    rib_id: PeerId,
    import: bool,
    transport: Transport,
    local_v6: Option<Ipv6Addr>,
    /// Our address on the current connection.
    local: Option<IpAddr>,
    connected: bool,
    looped: BTreeMap<IpNet, Looped>,
    last_notification: Option<(bool, Notification)>,
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

    /// How it is reached.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The routes it sent that carry our own AS.
    pub fn looped(&self) -> &BTreeMap<IpNet, Looped> {
        &self.looped
    }

    /// The last NOTIFICATION: (sent by us, message).
    pub fn last_notification(&self) -> Option<&(bool, Notification)> {
        self.last_notification.as_ref()
    }
}

/// One BGP instance.
#[derive(Debug)]
pub struct Speaker {
    rib: Rib,
    peers: BTreeMap<IpAddr, Peer>,
    originated: BTreeMap<IpNet, Instant>,
    fib_since: BTreeMap<IpNet, Instant>,
    version: u64,
    queue: VecDeque<(IpAddr, fsm::Output)>,
    actions: Vec<Action>,
    now: Instant,
}

impl Speaker {
    /// A speaker with no peers.
    pub fn new(config: RibConfig) -> Speaker {
        Speaker {
            rib: Rib::new(config),
            peers: BTreeMap::new(),
            originated: BTreeMap::new(),
            fib_since: BTreeMap::new(),
            version: 0,
            queue: VecDeque::new(),
            actions: Vec::new(),
            now: Instant::ZERO,
        }
    }

    /// The RIB.
    pub fn rib(&self) -> &Rib {
        &self.rib
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

    /// The table version: how many times the Loc-RIB changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the FIB route of `prefix` last changed, if it has one.
    pub fn fib_since(&self, prefix: IpNet) -> Option<Instant> {
        self.fib_since.get(&prefix).copied()
    }

    /// When `prefix` was first originated, if it is.
    pub fn originated_since(&self, prefix: IpNet) -> Option<Instant> {
        self.originated.get(&prefix).copied()
    }

    /// Whether a connection from `peer` would be taken (RFC 4271 §8 event
    /// 14, TcpConnection_Valid): a known peer with no connection, waiting in
    /// Active or Connect.
    pub fn accepts(&self, peer: IpAddr) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            !p.connected && matches!(p.session.state(), State::Active | State::Connect)
        })
    }

    /// Whether any peer waits for connections (a passive session).
    pub fn listens(&self) -> bool {
        self.peers.values().any(|p| p.session.config().passive)
    }

    /// When [`Input::Timers`] is next due.
    pub fn poll_at(&self) -> Option<Instant> {
        self.peers
            .values()
            .flat_map(|p| Timer::ALL.into_iter().filter_map(|t| p.session.deadline(t)))
            .min()
    }

    /// Feed one input at `now`; what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        self.now = now;
        match input {
            Input::AddPeer(spec) => self.add_peer(*spec),
            Input::RemovePeer(address) => self.remove_peer(address),
            Input::SetExportPolicy(address, policy) => {
                if let Some(id) = self.peers.get(&address).map(|p| p.rib_id) {
                    let out = self.rib.set_export_policy(id, policy);
                    self.rib_outputs(out);
                }
            }
            Input::Originate(prefix, attributes) => {
                self.version += 1;
                self.originated.entry(prefix).or_insert(now);
                let out = self.rib.originate(prefix, *attributes);
                self.rib_outputs(out);
            }
            Input::Withdraw(prefix) => {
                if self.originated.remove(&prefix).is_some() {
                    self.version += 1;
                    let out = self.rib.withdraw_originated(prefix);
                    self.rib_outputs(out);
                }
            }
            Input::Connected { peer, local } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = true;
                    p.local = local;
                    let v4 = match local {
                        Some(IpAddr::V4(v4)) => Some(v4),
                        Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped(),
                        None => None,
                    };
                    let v6 = match local {
                        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => Some(v6),
                        _ => p.local_v6,
                    };
                    if local.is_some() {
                        self.rib.set_local_addresses(p.rib_id, v4, v6);
                    }
                    self.event(peer, Event::Connected);
                }
            }
            Input::ConnectionFailed(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.connected = false;
                    self.event(peer, Event::ConnectionFailed);
                }
            }
            Input::Received(peer, bytes) => self.event(peer, Event::Received(bytes)),
            Input::Timers => {
                let due: Vec<(IpAddr, Timer)> = self
                    .peers
                    .iter()
                    .flat_map(|(a, p)| {
                        Timer::ALL
                            .into_iter()
                            .filter(|t| p.session.deadline(*t).is_some_and(|at| at <= now))
                            .map(|t| (*a, t))
                    })
                    .collect();
                for (peer, timer) in due {
                    // An earlier timer's consequences may have re-armed or
                    // cancelled this one.
                    let still = self
                        .peers
                        .get(&peer)
                        .and_then(|p| p.session.deadline(timer))
                        .is_some_and(|at| at <= now);
                    if still {
                        self.event(peer, Event::TimerExpired(timer));
                    }
                }
            }
            Input::Exit => {
                let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
                for address in addresses {
                    if self.graceful(address) {
                        self.actions.push(Action::Close { peer: address });
                        self.forget(address);
                    } else {
                        self.remove_peer(address);
                    }
                }
            }
        }
        self.drain();
        core::mem::take(&mut self.actions)
    }

    /// Established, with graceful restart on both sides.
    fn graceful(&self, address: IpAddr) -> bool {
        self.peers.get(&address).is_some_and(|p| {
            p.session.state() == State::Established
                && p.session.config().graceful_restart.is_some()
                && p.session
                    .negotiated()
                    .is_some_and(|n| n.peer_graceful_restart.is_some())
        })
    }

    fn add_peer(&mut self, spec: PeerSpec) {
        let address = spec.rib.address;
        self.remove_peer(address);
        let peer = Peer {
            session: Session::new(spec.session),
            local_v6: spec.rib.local_v6,
            local: None,
            rib_id: self.rib.add_peer(spec.rib),
            import: spec.import,
            transport: spec.transport,
            connected: false,
            looped: BTreeMap::new(),
            last_notification: None,
        };
        self.peers.insert(address, peer);
        self.event(address, Event::ManualStart);
    }

    fn remove_peer(&mut self, address: IpAddr) {
        if !self.peers.contains_key(&address) {
            return;
        }
        self.event(address, Event::ManualStop);
        self.drain();
        if self.peers.get(&address).is_some_and(|p| p.connected) {
            self.actions.push(Action::Close { peer: address });
        }
        self.forget(address);
    }

    fn forget(&mut self, address: IpAddr) {
        if let Some(peer) = self.peers.remove(&address) {
            self.queue.retain(|(a, _)| *a != address);
            let out = self.rib.remove_peer(peer.rib_id);
            self.rib_outputs(out);
        }
    }

    fn event(&mut self, address: IpAddr, event: Event) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        for o in peer.session.handle(self.now, event) {
            self.queue.push_back((address, o));
        }
    }

    fn drain(&mut self) {
        while let Some((address, output)) = self.queue.pop_front() {
            self.output(address, output);
        }
    }

    fn report(&mut self, peer: IpAddr, report: Report) {
        self.actions.push(Action::Report { peer, report });
    }

    fn output(&mut self, address: IpAddr, output: fsm::Output) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let local_as = self.rib.config().local_as;
        match output {
            fsm::Output::Connect { ttl } => {
                peer.connected = false;
                let t = &peer.transport;
                self.actions.push(Action::Connect {
                    peer: address,
                    port: t.port,
                    ttl,
                    bind: t.bind.filter(|b| b.is_ipv4() == address.is_ipv4()),
                    md5_key: t.md5_key.clone(),
                });
            }
            fsm::Output::SetTtl(ttl) => self.actions.push(Action::SetTtl { peer: address, ttl }),
            fsm::Output::Close => {
                peer.connected = false;
                self.actions.push(Action::Close { peer: address });
            }
            fsm::Output::Send(bytes) => self.actions.push(Action::Send {
                peer: address,
                bytes,
            }),
            fsm::Output::ArmTimer { .. } | fsm::Output::CancelTimer(_) => {
                // The session keeps its deadlines: see `poll_at`.
            }
            fsm::Output::StateChange { from, to } => {
                self.report(address, Report::State { from, to });
            }
            fsm::Output::Notification { sent, notification } => {
                peer.last_notification = Some((sent, notification.clone()));
                self.report(address, Report::Notification { sent, notification });
            }
            fsm::Output::AttributeErrors(errors) => {
                self.report(address, Report::AttributeErrors(errors));
            }
            fsm::Output::Announce { .. } | fsm::Output::Withdraw { .. } if !peer.import => {}
            fsm::Output::Announce {
                next_hop, prefixes, ..
            } if bad_next_hop(&next_hop, peer.local) => {
                let report = Report::BadNextHop {
                    next_hop: next_hop_addr(&next_hop),
                    routes: prefixes.len(),
                };
                self.report(address, report);
            }
            _ => {
                track_looped(peer, local_as, &output);
                let id = peer.rib_id;
                let out = self.rib.apply(id, &output);
                let report = match &output {
                    fsm::Output::Established(n) => Some(Report::Established(n.clone())),
                    fsm::Output::PeerDown { stale } => Some(Report::Down {
                        stale: stale.clone(),
                        kept: self.rib.received_count(id),
                    }),
                    fsm::Output::Announce { prefixes, .. } => {
                        Some(Report::Announced(prefixes.len()))
                    }
                    fsm::Output::Withdraw { prefixes, .. } => {
                        Some(Report::Withdrawn(prefixes.len()))
                    }
                    fsm::Output::EndOfRib(f) => Some(Report::EndOfRib(*f)),
                    fsm::Output::PurgeStale(f) => Some(Report::PurgedStale(*f)),
                    fsm::Output::RefreshRequested(f) => Some(Report::RefreshRequested(*f)),
                    _ => None,
                };
                self.rib_outputs(out);
                if let Some(report) = report {
                    self.report(address, report);
                }
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
                    self.actions.push(Action::Fib { prefix, route });
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

fn next_hop_addr(next_hop: &NextHop) -> IpAddr {
    match next_hop {
        NextHop::Ipv4(v4) => IpAddr::V4(*v4),
        NextHop::Ipv6 { global, .. } => IpAddr::V6(*global),
    }
}

/// Whether routes with this NEXT_HOP must be ignored (RFC 4271 §6.3): it
/// is unspecified, multicast or broadcast, or our own address.
fn bad_next_hop(next_hop: &NextHop, ours: Option<IpAddr>) -> bool {
    let addr = next_hop_addr(next_hop);
    let unusable = match addr {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    unusable || Some(addr) == ours
}

/// Keep the routes `output` announces with our AS in their path (the RIB
/// refuses them), and follow their withdrawal and staleness.
fn track_looped(peer: &mut Peer, local_as: u32, output: &fsm::Output) {
    match output {
        fsm::Output::Announce {
            next_hop,
            attributes,
            prefixes,
            ..
        } => {
            let looped = attributes
                .as_path
                .as_ref()
                .is_some_and(|p| p.segments.iter().any(|s| s.asns.contains(&local_as)));
            if looped {
                let attrs = Arc::new(RouteAttrs {
                    next_hop: *next_hop,
                    attributes: (**attributes).clone(),
                });
                for prefix in prefixes {
                    let route = Looped {
                        attrs: attrs.clone(),
                        stale: false,
                    };
                    peer.looped.insert(prefix.trunc(), route);
                }
            } else {
                for prefix in prefixes {
                    peer.looped.remove(&prefix.trunc());
                }
            }
        }
        fsm::Output::Withdraw { prefixes, .. } => {
            for prefix in prefixes {
                peer.looped.remove(&prefix.trunc());
            }
        }
        fsm::Output::PeerDown { stale } => {
            peer.looped.retain(|p, _| stale.contains(&Family::of(p)));
            for route in peer.looped.values_mut() {
                route.stale = true;
            }
        }
        fsm::Output::EndOfRib(family) | fsm::Output::PurgeStale(family) => {
            peer.looped
                .retain(|p, r| !(r.stale && Family::of(p) == *family));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
