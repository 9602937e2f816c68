//! The service stage of the reference datapath: what happens to one packet
//! of a service flow, given the node's [`ServiceTable`], the time and a
//! random number.
//!
//! Owns the per-packet decision Cilium's `lb4_local` (`bpf/lib/lb.h`) makes
//! and the state behind it: a packet of a tracked connection follows it (a
//! request to its backend, a reply translated back to the frontend); a new
//! flow to a frontend picks a backend — the one session affinity remembers,
//! else `random` (`random % count` over the active backends, as
//! `lb4_select_backend_id_random`) or Maglev (`table[hash % M]`) — and is
//! tracked. A tracked flow whose backend went away, or is terminating and
//! sees a new SYN, picks again; a terminating backend keeps its other
//! packets (Cilium drains, it does not cut). Traffic from outside the node
//! to a backend on another node is source-NATed to the node's address
//! (`loadBalancer.mode: snat`). With [`Service::set_masquerade`], a new
//! flow that is not a service's gets `masquerade::action`'s treatment: a
//! local pod's traffic to the world is source-NATed to the node's address
//! the same way (its replies reversed like a service's), a connection from
//! outside to a local pod is tracked untranslated so its replies are not.
//!
//! [`Service::process`] takes a packet's 5-tuple and TCP flags;
//! [`Service::translate`] reads them from an IP packet and applies the
//! [`Verdict`]'s tuple to it (addresses, ports, checksums). Routing the
//! result is the pipeline's.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use smoltcp::time::{Duration, Instant};

use super::Tuple;
use super::affinity::{self, Affinity};
use super::conntrack::{self, Conntrack, Direction, TcpFlags};
use super::lifetime::State;
pub use super::lookup::Algorithm;
use super::lookup::{self, NO_BACKEND};
use super::maglev;
use super::masquerade::{self, Masquerade};
use super::nat::{Exhausted, PortRange};
use super::packet;
use super::table::{BackendSet, BackendState, L3n4, ServiceTable};
use crate::hash::splitmix64;
use crate::wire::geneve::DsrOption;

/// How a request from outside reaches a backend on another node
/// (`loadBalancer.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Source NAT to this node's address; replies come back through it
    /// (Cilium's default).
    #[default]
    Snat,
    /// Direct server return: the request is dispatched to the backend's
    /// node, which answers the client directly from the service address.
    Dsr,
    /// DSR for TCP, SNAT for UDP.
    Hybrid,
}

impl Mode {
    /// The name Cilium's `loadBalancer.mode` and `--bpf-lb-mode` use.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Snat => "snat",
            Mode::Dsr => "dsr",
            Mode::Hybrid => "hybrid",
        }
    }

    /// The mode Cilium names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Mode::Snat, Mode::Dsr, Mode::Hybrid]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// The datapath's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `loadBalancer.algorithm`.
    pub algorithm: Algorithm,
    /// `loadBalancer.mode`.
    pub mode: Mode,
    /// The Maglev seeds (the flow hash uses `seed_jhash0`/`seed_jhash1`).
    pub maglev: maglev::Config,
    /// The node's IPv4 address outside traffic is source-NATed to.
    pub snat_v4: Option<Ipv4Addr>,
    /// The node's IPv6 address outside traffic is source-NATed to.
    pub snat_v6: Option<Ipv6Addr>,
    /// Conntrack table sizes.
    pub limits: conntrack::Limits,
    /// Conntrack lifetimes.
    pub timeouts: conntrack::Timeouts,
    /// Clients the affinity table remembers.
    pub affinity_entries: usize,
}

impl Default for Config {
    /// Cilium's defaults (random, M = 16381 with the built-in seed, its
    /// conntrack sizes and lifetimes), without SNAT addresses.
    fn default() -> Self {
        Config {
            algorithm: Algorithm::Random,
            mode: Mode::Snat,
            maglev: maglev::Config::default(),
            snat_v4: None,
            snat_v6: None,
            limits: conntrack::Limits::CILIUM,
            timeouts: conntrack::Timeouts::CILIUM,
            affinity_entries: affinity::MAX_ENTRIES,
        }
    }
}

/// Where a packet entered the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// From a pod or the host on this node (`internalTrafficPolicy` applies).
    Local,
    /// On one of the node's uplinks (`externalTrafficPolicy` applies).
    External,
}

/// What the service stage is given about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Its 5-tuple.
    pub tuple: Tuple,
    /// Its TCP flags ([`TcpFlags::NONE`] for UDP and SCTP).
    pub flags: TcpFlags,
    /// Where it entered.
    pub origin: Origin,
}

/// Why a service packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The frontend has no backend for this traffic (Cilium's `DROP_NO_SERVICE`).
    NoBackend,
    /// The conntrack table is full (`DROP_CT_CREATE_FAILED`).
    ConntrackFull,
    /// No SNAT port was free (`DROP_NAT_NO_MAPPING`).
    NatExhausted,
    /// SNAT was needed but the node has no address of the flow's family.
    NoNodeAddress,
    /// DSR was needed but the backend's node address is unknown, or it or
    /// the service is not IPv4 (Cilium's DSR option carries IPv4 only).
    NoBackendNode,
}

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not service traffic: pass it on unchanged.
    NotService,
    /// A request: rewrite it to this tuple (backend as destination, node
    /// address and port as source when SNAT applies).
    Translated(Tuple),
    /// A reply: rewrite it to this tuple (frontend as source, client as
    /// destination).
    Reply(Tuple),
    /// A request to dispatch (DSR): rewrite it to `tuple` (the backend as
    /// destination, the client's source kept) and send it to the backend's
    /// `node`, telling it the `service` address to answer from.
    Dispatch {
        /// The request's new tuple.
        tuple: Tuple,
        /// The backend's node.
        node: IpAddr,
        /// The frontend the client asked for.
        service: L3n4,
    },
    /// Drop it.
    Drop(DropReason),
}

/// What a socket's `connect()` or `sendmsg()` to an address becomes
/// ([`Service::connect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    /// Not a frontend: the call goes on to the address as given.
    NotService,
    /// The socket talks to this backend instead.
    Backend(L3n4),
    /// A frontend without a backend for in-cluster traffic: the call fails
    /// with `EHOSTUNREACH`, as Cilium's `sock4_connect` makes it.
    Unreachable,
}

/// What a tracked connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A flow to a frontend.
    Service,
    /// A local pod's flow to the world, source-NATed to the node's address.
    Masquerade,
    /// A flow from outside to a local pod, tracked untranslated.
    Inbound,
}

/// What conntrack keeps about a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Flow {
    kind: Kind,
    /// The frontend the client asked for (the original destination, for
    /// flows that are not a service's: what replies come from).
    frontend: L3n4,
    backend: L3n4,
    /// The request as sent on (after DNAT, and SNAT if any).
    translated: Tuple,
    /// The backend's node, when requests are dispatched to it (DSR).
    dispatch: Option<IpAddr>,
}

/// One tracked connection as [`Service::tracked`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// Its tuple as the client sent it.
    pub original: Tuple,
    /// Its tuple in the reply direction (the request as sent on, reversed).
    pub reply: Tuple,
    /// The frontend the client asked for.
    pub frontend: L3n4,
    /// Its state, as far as its lifetime depends on it.
    pub state: State,
    /// When it was opened.
    pub opened: Instant,
    /// When it expires.
    pub deadline: Instant,
}

/// What the datapath did so far, for statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Flows opened to a frontend (each picked a backend).
    pub opened: u64,
    /// Of those, flows source-NATed to the node's address.
    pub snat: u64,
    /// Packets dropped for a frontend without a backend for them.
    pub no_backend: u64,
    /// Packets dropped for another reason (conntrack full, SNAT exhausted,
    /// no node address).
    pub other_drops: u64,
    /// Replies translated back to a frontend's address.
    pub replies: u64,
    /// Requests dispatched to a backend's node (DSR).
    pub dispatched: u64,
    /// Flows of local pods masqueraded to the node's address.
    pub masqueraded: u64,
}

/// The service datapath of one node: its table and the state of its flows.
#[derive(Clone, Debug)]
pub struct Service {
    config: Config,
    table: ServiceTable,
    conntrack: Conntrack<Flow>,
    affinity: Affinity<L3n4, L3n4>,
    masquerade: Option<Masquerade>,
    counters: Counters,
}

impl Service {
    /// A datapath serving `table`, with no flows yet.
    pub fn new(config: Config, table: ServiceTable) -> Self {
        Service {
            conntrack: Conntrack::new(config.limits, config.timeouts),
            affinity: Affinity::new(config.affinity_entries),
            masquerade: None,
            counters: Counters::default(),
            config,
            table,
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the datapath did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Serve `table` from now on; tracked flows keep their backends while
    /// those exist.
    pub fn set_table(&mut self, table: ServiceTable) {
        self.table = table;
    }

    /// The table served.
    pub fn table(&self) -> &ServiceTable {
        &self.table
    }

    /// Masquerade local pods' traffic as `masquerade` says from now on
    /// (`None`: not at all); flows tracked so far keep their translation.
    pub fn set_masquerade(&mut self, masquerade: Option<Masquerade>) {
        self.masquerade = masquerade;
    }

    /// The masquerading in force.
    pub fn masquerade(&self) -> Option<&Masquerade> {
        self.masquerade.as_ref()
    }

    /// Connections tracked.
    pub fn connections(&self) -> usize {
        self.conntrack.len()
    }

    /// Every connection tracked and live at `now`, in tuple order (TCP first).
    pub fn tracked(&self, now: Instant) -> impl Iterator<Item = Tracked> + '_ {
        self.conntrack
            .entries()
            .filter(move |(_, deadline)| *deadline > now)
            .map(|(e, deadline)| Tracked {
                original: e.original,
                reply: e.reply,
                frontend: e.value.frontend,
                state: e.state,
                opened: e.opened,
                deadline,
            })
    }

    /// Connections source-NATed to a node address (each holds a port).
    pub fn nat_mappings(&self) -> usize {
        self.conntrack
            .entries()
            .filter(|(e, _)| e.value.translated.src != e.original.src)
            .count()
    }

    /// The verdict for `packet` at `now`; `random` is the packet's random
    /// number (Cilium's `get_prandom_u32()`), used by `random` selection and
    /// SNAT port choice.
    pub fn process(&mut self, now: Instant, packet: &Packet, random: u32) -> Verdict {
        let verdict = self.decide(now, packet, random);
        let c = &mut self.counters;
        match verdict {
            Verdict::Drop(DropReason::NoBackend) => c.no_backend += 1,
            Verdict::Drop(_) => c.other_drops += 1,
            Verdict::Reply(_) => c.replies += 1,
            Verdict::Dispatch { .. } => c.dispatched += 1,
            Verdict::NotService | Verdict::Translated(_) => {}
        }
        verdict
    }

    /// Run the IP packet `ip` (from its IP header on) through the stage
    /// in place: read its 5-tuple (`packet::parse`), decide as
    /// [`Service::process`] does, and rewrite it to the verdict's tuple with
    /// its checksums (`packet::rewrite`). A packet that is not an
    /// unfragmented TCP or UDP packet is [`Verdict::NotService`] and left
    /// alone. `random` is asked for the packet's random number once its
    /// 5-tuple is read (so other packets draw none). Both runtimes'
    /// reference for the service stage.
    pub fn translate(
        &mut self,
        now: Instant,
        origin: Origin,
        ip: &mut [u8],
        random: impl FnOnce() -> u32,
    ) -> Verdict {
        let Some(parsed) = packet::parse(ip) else {
            return Verdict::NotService;
        };
        let random = random();
        let packet = Packet {
            tuple: parsed.tuple,
            flags: TcpFlags(parsed.flags),
            origin,
        };
        let verdict = self.process(now, &packet, random);
        match verdict {
            Verdict::Translated(to) | Verdict::Reply(to) | Verdict::Dispatch { tuple: to, .. } => {
                packet::rewrite(ip, &parsed, &to);
            }
            Verdict::NotService | Verdict::Drop(_) => {}
        }
        verdict
    }

    /// [`Service::accept_dispatched`] for the IP packet `ip` (from its IP
    /// header on) a Geneve frame with Cilium's DSR option `dsr` carried
    /// here: its 5-tuple read with `packet::parse` within the packet's own
    /// length (padding after it, which forwarding trims, is not looked
    /// at); a packet it does not take is left alone.
    pub fn accept_dispatched_packet(&mut self, now: Instant, ip: &[u8], dsr: DsrOption) {
        let Some(len) = packet::ip_len(ip, ip.len()) else {
            return;
        };
        let Some(parsed) = packet::parse(&ip[..len]) else {
            return;
        };
        let frontend = L3n4 {
            addr: IpAddr::V4(dsr.addr),
            port: dsr.port,
            protocol: parsed.tuple.protocol,
        };
        let flags = TcpFlags(parsed.flags);
        self.accept_dispatched(now, &parsed.tuple, flags, frontend);
    }

    /// A request the service's load-balancing node dispatched here (DSR:
    /// the frame came in Geneve with Cilium's DSR option naming `service`):
    /// track its flow so that the backend's replies leave from `service`
    /// straight to the client. The request itself goes on untouched.
    pub fn accept_dispatched(
        &mut self,
        now: Instant,
        tuple: &Tuple,
        flags: TcpFlags,
        service: L3n4,
    ) {
        self.expire(now);
        if self.conntrack.lookup(now, tuple, flags).is_some() {
            return;
        }
        let flow = Flow {
            kind: Kind::Service,
            frontend: service,
            backend: L3n4 {
                addr: tuple.dst,
                port: tuple.dst_port,
                protocol: tuple.protocol,
            },
            translated: *tuple,
            dispatch: None,
        };
        if self
            .conntrack
            .insert(now, *tuple, tuple.reversed(), flow, flags)
            .is_err()
        {
            self.counters.other_drops += 1;
        }
    }

    fn decide(&mut self, now: Instant, packet: &Packet, random: u32) -> Verdict {
        self.expire(now);
        let tuple = packet.tuple;
        let stale = match self.conntrack.lookup(now, &tuple, packet.flags) {
            Some(found) if found.direction == Direction::Reply => {
                let flow = found.entry.value;
                if flow.kind == Kind::Inbound {
                    return Verdict::NotService;
                }
                let client = found.entry.original;
                return Verdict::Reply(Tuple {
                    src: flow.frontend.addr,
                    src_port: flow.frontend.port,
                    dst: client.src,
                    dst_port: client.src_port,
                    protocol: client.protocol,
                });
            }
            Some(found) => {
                let flow = found.entry.value;
                match flow.kind {
                    Kind::Masquerade => return Verdict::Translated(flow.translated),
                    Kind::Inbound => return Verdict::NotService,
                    Kind::Service => {}
                }
                let state = self
                    .table
                    .backend_id(&flow.backend)
                    .and_then(|id| self.table.backend(id))
                    .map(|b| b.state);
                let syn = packet.flags.contains(TcpFlags::SYN);
                let keep = self.table.frontend(&flow.frontend).is_some()
                    && match state {
                        Some(BackendState::Active) => true,
                        Some(BackendState::Terminating) => !syn,
                        None => false,
                    };
                if keep {
                    self.remember(now, &flow.frontend, tuple.src, flow.backend);
                    return match flow.dispatch {
                        Some(node) => Verdict::Dispatch {
                            tuple: flow.translated,
                            node,
                            service: flow.frontend,
                        },
                        None => Verdict::Translated(flow.translated),
                    };
                }
                true
            }
            None => false,
        };
        if stale {
            self.forget(&tuple);
        }
        self.open(now, packet, random)
    }

    /// A new flow: find its frontend, pick a backend, translate and track it.
    fn open(&mut self, now: Instant, packet: &Packet, random: u32) -> Verdict {
        let tuple = packet.tuple;
        let frontend_addr = L3n4 {
            addr: tuple.dst,
            port: tuple.dst_port,
            protocol: tuple.protocol,
        };
        let Some(frontend) = self.table.frontend(&frontend_addr) else {
            return self.unserved(now, packet, random);
        };
        let set = match packet.origin {
            Origin::Local => &frontend.internal,
            Origin::External => match &frontend.external {
                Some(set) => set,
                None => return Verdict::NotService,
            },
        };
        let affinity = frontend
            .affinity_seconds
            .map(|s| Duration::from_secs(u64::from(s)));
        let remembered = affinity
            .and_then(|t| self.affinity.get(now, frontend_addr, tuple.src, t))
            .and_then(|b| self.table.backend_id(&b))
            .filter(|id| set.active.contains(id));
        let id = match remembered {
            Some(id) => id,
            None => match self.select(set, &tuple, affinity.is_some(), random) {
                NO_BACKEND => return Verdict::Drop(DropReason::NoBackend),
                id => id,
            },
        };
        let Some(backend) = self.table.backend(id).copied() else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let dnat = Tuple {
            dst: backend.addr.addr,
            dst_port: backend.addr.port,
            ..tuple
        };
        let dsr = match self.config.mode {
            Mode::Snat => false,
            Mode::Dsr => true,
            Mode::Hybrid => tuple.protocol == super::Protocol::Tcp,
        };
        let dispatch = if packet.origin == Origin::External && !backend.local && dsr {
            // Cilium's DSR option and its Geneve underlay carry IPv4 only.
            match (backend.node, frontend_addr.addr) {
                (Some(node @ IpAddr::V4(_)), IpAddr::V4(_)) => Some(node),
                _ => return Verdict::Drop(DropReason::NoBackendNode),
            }
        } else {
            None
        };
        let translated = if dispatch.is_some() {
            dnat
        } else if packet.origin == Origin::External && !backend.local {
            let node = match backend.addr.addr {
                IpAddr::V4(_) => self.config.snat_v4.map(IpAddr::V4),
                IpAddr::V6(_) => self.config.snat_v6.map(IpAddr::V6),
            };
            let Some(node) = node else {
                return Verdict::Drop(DropReason::NoNodeAddress);
            };
            match self.snat(&dnat, node, random) {
                Ok(t) => t,
                Err(Exhausted) => return Verdict::Drop(DropReason::NatExhausted),
            }
        } else {
            dnat
        };
        let flow = Flow {
            kind: Kind::Service,
            frontend: frontend_addr,
            backend: backend.addr,
            translated,
            dispatch,
        };
        if self
            .conntrack
            .insert(now, tuple, translated.reversed(), flow, packet.flags)
            .is_err()
        {
            return Verdict::Drop(DropReason::ConntrackFull);
        }
        self.remember(now, &frontend_addr, tuple.src, backend.addr);
        self.counters.opened += 1;
        if translated.src != tuple.src {
            self.counters.snat += 1;
        }
        match dispatch {
            Some(node) => Verdict::Dispatch {
                tuple: translated,
                node,
                service: frontend_addr,
            },
            None => Verdict::Translated(translated),
        }
    }

    /// A new flow to no frontend: masqueraded, tracked or passed as
    /// `masquerade::action` decides.
    fn unserved(&mut self, now: Instant, packet: &Packet, random: u32) -> Verdict {
        let tuple = packet.tuple;
        let Some(m) = &self.masquerade else {
            return Verdict::NotService;
        };
        let external = packet.origin == Origin::External;
        let (kind, translated) = match m.action(external, tuple.src, tuple.dst) {
            masquerade::Action::Pass => return Verdict::NotService,
            masquerade::Action::TrackInbound => (Kind::Inbound, tuple),
            masquerade::Action::Masquerade => {
                match self.snat(&tuple, IpAddr::V4(m.addr()), random) {
                    Ok(t) => (Kind::Masquerade, t),
                    Err(Exhausted) => return Verdict::Drop(DropReason::NatExhausted),
                }
            }
        };
        let destination = L3n4 {
            addr: tuple.dst,
            port: tuple.dst_port,
            protocol: tuple.protocol,
        };
        let flow = Flow {
            kind,
            frontend: destination,
            backend: destination,
            translated,
            dispatch: None,
        };
        if self
            .conntrack
            .insert(now, tuple, translated.reversed(), flow, packet.flags)
            .is_err()
        {
            return Verdict::Drop(DropReason::ConntrackFull);
        }
        if kind == Kind::Inbound {
            return Verdict::NotService;
        }
        self.counters.masqueraded += 1;
        Verdict::Translated(translated)
    }

    /// `tuple` source-NATed to `node` on the first free port (the packet's
    /// `random` number stirred once, as the service SNAT and masquerade
    /// both draw it).
    fn snat(&self, tuple: &Tuple, node: IpAddr, random: u32) -> Result<Tuple, Exhausted> {
        let mut state = u64::from(random);
        let nat_random = splitmix64(&mut state) as u32;
        let conntrack = &self.conntrack;
        PortRange::default().allocate(tuple, node, nat_random, |r| conntrack.has_reply(r))
    }

    /// What Cilium's socket-level balancer (`cgroup/connect4`, `sendmsg4`)
    /// makes of a pod's `connect()` or `sendmsg()` to `frontend`, before any
    /// packet: the in-cluster backend at slot `slot` ([`lookup::socket_slot`]:
    /// a random number for TCP, the socket's cookie for UDP), whatever the
    /// algorithm (Maglev needs the flow's source, which the socket does not
    /// have yet). No conntrack entry is made (the socket carries the
    /// backend's address) and affinity is not consulted.
    pub fn connect(&self, frontend: &L3n4, slot: u64) -> Connect {
        let Some(f) = self.table.frontend(frontend) else {
            return Connect::NotService;
        };
        match lookup::select_for_socket(&f.internal.active[..], slot) {
            NO_BACKEND => Connect::Unreachable,
            id => self
                .table
                .backend(id)
                .map_or(Connect::Unreachable, |b| Connect::Backend(b.addr)),
        }
    }

    /// A backend ID from `set` for a new flow, or [`NO_BACKEND`].
    fn select(&self, set: &BackendSet, tuple: &Tuple, affinity: bool, random: u32) -> u32 {
        let seeds = &self.config.maglev;
        let flow = lookup::Flow {
            client: tuple.src,
            client_port: tuple.src_port,
            service_port: tuple.dst_port,
            protocol: tuple.protocol.number(),
            affinity,
        };
        lookup::select(
            self.config.algorithm,
            &set.active[..],
            &set.maglev[..],
            [seeds.seed_jhash0, seeds.seed_jhash1],
            &flow,
            random,
        )
    }

    /// Refresh or record `client`'s affinity to `backend`, if the frontend has it.
    fn remember(&mut self, now: Instant, frontend: &L3n4, client: IpAddr, backend: L3n4) {
        let timeout = self
            .table
            .frontend(frontend)
            .and_then(|f| f.affinity_seconds)
            .map(|s| Duration::from_secs(u64::from(s)));
        if let Some(timeout) = timeout {
            self.affinity
                .record(now, *frontend, client, backend, timeout);
        }
    }

    /// Stop tracking the flow `original` opened.
    fn forget(&mut self, original: &Tuple) {
        self.conntrack.remove(original);
    }

    /// Drop the flows and affinities whose time ran out.
    fn expire(&mut self, now: Instant) {
        while self.conntrack.pop_expired(now).is_some() {}
        self.affinity.expire(now);
    }
}

#[cfg(test)]
mod tests;
