//! A simulated host: router-core's tables and datapath for every frame, one
//! smoltcp interface for the host's own traffic, driven by `(now, input)`.
//!
//! Owns the host's ports, FIB, neighbour table and datapath settings, the slow
//! path around the datapath (ARP and neighbour discovery learning and
//! resolution with a bounded queue per nexthop, ICMP errors, the forwarding
//! switch) and the smoltcp interface with its sockets and applications. In
//! front of the datapath, [`service`] carries out router-core's service
//! datapath (DNAT, SNAT, DSR dispatch, connection tracking) on the nodes that
//! serve services. Every forwarding, ARP, NDP, service and framing decision is
//! router-core's: smoltcp sees bare IP packets for the host's own addresses and
//! hands back bare IP packets, which [`pipeline::originate`] routes. Links,
//! latency and the clock belong to whoever drives the host (the simulator).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use router_core::PortId;
use router_core::datapath::pipeline::{self, PortConfig, Tables};
use router_core::datapath::{self, Reason};
use router_core::fib::{self, Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::flow::Side;
use router_core::neighbour::{self, Event, Output, arp, ndp};
use router_core::wire::geneve::DsrOption;
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;
use smoltcp::iface::{self, Interface, SocketHandle, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use crate::apps::bgp::Bgp;
use crate::apps::{
    Apps, CurlId, CurlOptions, CurlResult, HttpClient, HttpServer, Ping, PingId, PingOptions,
    PingReport,
};
use crate::device::IpDevice;
use crate::icmp;

mod bgp;
mod flows;
pub mod service;

pub use flows::FlowLog;

use service::{Origin, Services, Verdict};

/// Bound on stack/datapath rounds in one [`Host::poll`] (a safety net, never reached in practice).
const MAX_ROUNDS: usize = 256;
/// How long a learnt path MTU is kept (Linux's `net.ipv4.route.mtu_expires`).
const PMTU_EXPIRES: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(600);
/// First ephemeral port (IANA dynamic range, 49152–65535).
const EPHEMERAL: u16 = 49152;

/// One interface of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Interface name (`eth0`).
    pub name: String,
    /// MAC address.
    pub mac: EthernetAddress,
    /// Addresses with their prefix lengths; each adds a connected route.
    pub addrs: Vec<IpNet>,
    /// Largest IP packet the port sends.
    pub mtu: u16,
}

impl PortSpec {
    /// A port with a 1500-byte MTU.
    pub fn new(name: &str, mac: EthernetAddress, addrs: Vec<IpNet>) -> Self {
        PortSpec {
            name: name.to_owned(),
            mac,
            addrs,
            mtu: 1500,
        }
    }
}

/// Everything a host is built from.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Host name (what `whoami` answers).
    pub name: String,
    /// Interfaces; the i-th is `PortId(i)`.
    pub ports: Vec<PortSpec>,
    /// Whether the host forwards packets between ports (a router or node does, a pod or
    /// an external client does not).
    pub forwarding: bool,
    /// ECMP hash policy and seed, tunnel endpoint.
    pub datapath: datapath::Config,
    /// Neighbour table timers.
    pub neighbour: neighbour::Config,
    /// Packets queued per unresolved nexthop; more are dropped and counted.
    pub pending_per_nexthop: usize,
    /// Seed of everything the host randomises: TCP initial sequence numbers,
    /// the first ephemeral port, ping identifiers.
    pub seed: u64,
}

impl HostConfig {
    /// A non-forwarding host with no ports, default timers, 3 queued packets per nexthop.
    pub fn new(name: &str) -> Self {
        HostConfig {
            name: name.to_owned(),
            ports: Vec::new(),
            forwarding: false,
            datapath: datapath::Config::default(),
            neighbour: neighbour::Config::default(),
            pending_per_nexthop: 3,
            seed: 0,
        }
    }
}

/// A configuration the host cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The host stack holds at most `max` addresses.
    TooManyAddresses {
        /// Addresses configured.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An address that cannot be assigned to an interface (multicast, broadcast, unspecified).
    BadAddress {
        /// The port's name.
        port: String,
        /// The address.
        addr: IpNet,
    },
    /// An MTU below IPv4's minimum of 68.
    MtuTooSmall {
        /// The port's name.
        port: String,
        /// The MTU.
        mtu: u16,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::TooManyAddresses { count, max } => {
                write!(f, "{count} addresses, a host holds at most {max}")
            }
            ConfigError::BadAddress { port, addr } => {
                write!(f, "port {port}: {addr} is not a unicast address")
            }
            ConfigError::MtuTooSmall { port, mtu } => {
                write!(f, "port {port}: MTU {mtu} is below 68")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// What happened to the host's packets, for the simulator's reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datapath exits of received frames, indexed by [`Reason`] (a frame re-run after
    /// ARP resolution counts once per run).
    pub received: [u64; Reason::COUNT],
    /// Datapath exits of packets the host itself sent, indexed by [`Reason`].
    pub originated: [u64; Reason::COUNT],
    /// Transit frames dropped because forwarding is off.
    pub not_forwarding: u64,
    /// Packets dropped because their nexthop's queue was full.
    pub queue_overflow: u64,
    /// Packets dropped because their nexthop did not answer ARP.
    pub unresolved: u64,
    /// ARP requests sent.
    pub arp_requests: u64,
    /// Neighbour solicitations sent.
    pub neighbour_solicitations: u64,
    /// ICMP errors sent (time exceeded, unreachable, fragmentation needed).
    pub icmp_errors: u64,
    /// Packets over the egress MTU without DF, dropped: the simulator does
    /// not fragment.
    pub not_fragmented: u64,
}

impl Counters {
    /// Received frames that left the datapath for `reason`.
    pub fn received(&self, reason: Reason) -> u64 {
        self.received[reason as usize]
    }

    /// Host-originated packets that left the datapath for `reason`.
    pub fn originated(&self, reason: Reason) -> u64 {
        self.originated[reason as usize]
    }
}

/// A packet waiting for its nexthop's MAC address.
#[derive(Clone, Debug)]
enum Queued {
    /// A received frame, re-run through the datapath once resolved.
    Received { ingress: PortId, frame: Vec<u8> },
    /// A received frame the service stage dispatched, re-run through the
    /// service stage and the datapath once resolved.
    Dispatched { ingress: PortId, frame: Vec<u8> },
    /// An IP packet of the host's own, routed again once resolved.
    Originated(Vec<u8>),
}

/// One simulated host (pod, router, Kubernetes node, external client).
pub struct Host {
    name: String,
    ports: Vec<PortSpec>,
    datapath_ports: BTreeMap<PortId, PortConfig>,
    fib: Fib,
    neighbours: neighbour::Table,
    identities: BTreeMap<IpAddr, u32>,
    datapath: datapath::Config,
    forwarding: bool,
    pending_per_nexthop: usize,
    pending: BTreeMap<IpAddr, VecDeque<Queued>>,
    counters: Counters,
    iface: Interface,
    device: IpDevice,
    sockets: SocketSet<'static>,
    apps: Apps,
    bgp: Option<Bgp>,
    services: Services,
    /// Ports whose frames are in-cluster traffic for the service stage
    /// (pods' ports); frames on the others come from outside.
    local_ports: BTreeSet<PortId>,
    /// Sockets of a stopped BGP whose resets are still to go out.
    bgp_closing: Vec<SocketHandle>,
    /// Flow events, when kept ([`Host::enable_flows`]).
    flows: Option<FlowLog>,
    /// Path MTUs learnt from "fragmentation needed": destination → (MTU,
    /// until when).
    pmtu: BTreeMap<IpAddr, (u16, Instant)>,
    /// Events of a stopped BGP not taken yet.
    bgp_stopped_events: Vec<(Instant, crate::apps::bgp::BgpEvent)>,
    outbox: Vec<(PortId, Vec<u8>)>,
    /// The address an `arping` (or `ndisc6`) asks for, and the replies seen for it.
    arping: Option<(IpAddr, Vec<(Instant, EthernetAddress)>)>,
    now: Instant,
    next_port: u16,
    next_ident: u16,
    next_app: u32,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("ports", &self.ports)
            .field("forwarding", &self.forwarding)
            .field("counters", &self.counters)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// Build a host: its ports, their connected routes, an empty neighbour table and
    /// the smoltcp interface holding every port address.
    pub fn new(config: HostConfig) -> Result<Host, ConfigError> {
        let max = smoltcp::config::IFACE_MAX_ADDR_COUNT;
        let count = config.ports.iter().map(|p| p.addrs.len()).sum();
        if count > max {
            return Err(ConfigError::TooManyAddresses { count, max });
        }
        for p in &config.ports {
            if p.mtu < 68 {
                return Err(ConfigError::MtuTooSmall {
                    port: p.name.clone(),
                    mtu: p.mtu,
                });
            }
            if let Some(&addr) = p.addrs.iter().find(|a| !assignable(a.addr())) {
                return Err(ConfigError::BadAddress {
                    port: p.name.clone(),
                    addr,
                });
            }
        }
        let mut fib = Fib::compact();
        let mut datapath_ports = BTreeMap::new();
        for (i, p) in config.ports.iter().enumerate() {
            let id = PortId(i as u16);
            let connected = Route::new(Protocol::Connected, vec![Nexthop::connected(id)]);
            for net in &p.addrs {
                fib.insert(net.trunc(), &connected);
            }
            let port = PortConfig {
                addrs: arp::PortAddrs {
                    mac: p.mac,
                    owned: p.addrs.iter().filter_map(|a| v4(a.addr())).collect(),
                    announced: Vec::new(),
                },
                ipv6: ndp::PortAddrsV6 {
                    owned: p.addrs.iter().filter_map(|a| v6(a.addr())).collect(),
                    announced: Vec::new(),
                },
                mtu: p.mtu,
            };
            datapath_ports.insert(id, port);
        }
        let mtu = config.ports.iter().map(|p| p.mtu).min().unwrap_or(1500);
        let mut device = IpDevice::new(usize::from(mtu));
        let mut iface_config = iface::Config::new(HardwareAddress::Ip);
        iface_config.random_seed = config.seed;
        let mut iface = Interface::new(iface_config, &mut device, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            for net in config.ports.iter().flat_map(|p| &p.addrs) {
                let cidr = IpCidr::new(net.addr().into(), net.prefix_len());
                addrs.push(cidr).expect("the address count was checked");
            }
        });
        // Everything leaves through the one IP device, where router-core routes it:
        // the gateways are placeholders that `Medium::Ip` never resolves.
        let routes = iface.routes_mut();
        routes
            .add_default_ipv4_route(Ipv4Addr::new(0, 0, 0, 1))
            .expect("room for two default routes");
        routes
            .add_default_ipv6_route(Ipv6Addr::LOCALHOST)
            .expect("room for two default routes");
        Ok(Host {
            name: config.name,
            ports: config.ports,
            datapath_ports,
            fib,
            neighbours: neighbour::Table::new(config.neighbour),
            identities: BTreeMap::new(),
            datapath: config.datapath,
            forwarding: config.forwarding,
            pending_per_nexthop: config.pending_per_nexthop,
            pending: BTreeMap::new(),
            counters: Counters::default(),
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            apps: Apps::default(),
            bgp: None,
            services: Services::new(config.seed ^ 0x5e41_1ce5),
            local_ports: BTreeSet::new(),
            bgp_closing: Vec::new(),
            flows: None,
            pmtu: BTreeMap::new(),
            bgp_stopped_events: Vec::new(),
            outbox: Vec::new(),
            arping: None,
            now: Instant::ZERO,
            next_port: EPHEMERAL + (config.seed % 16384) as u16,
            next_ident: (config.seed >> 16) as u16,
            next_app: 0,
        })
    }

    /// The host name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The ports; the i-th is `PortId(i)`.
    pub fn ports(&self) -> &[PortSpec] {
        &self.ports
    }

    /// The port named `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        let i = self.ports.iter().position(|p| p.name == name)?;
        Some(PortId(i as u16))
    }

    /// Every address of every port, in port order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ports
            .iter()
            .flat_map(|p| p.addrs.iter().map(|a| a.addr()))
    }

    /// The FIB (connected routes plus what was added).
    pub fn fib(&self) -> &Fib {
        &self.fib
    }

    /// Add or replace a route (static, BGP, …) for `prefix`.
    pub fn add_route(&mut self, prefix: IpNet, route: &Route) -> fib::Change {
        self.fib.insert(prefix, route)
    }

    /// Remove the route of `protocol` at `distance` for `prefix`.
    pub fn remove_route(
        &mut self,
        prefix: IpNet,
        protocol: Protocol,
        distance: u8,
    ) -> Option<fib::Change> {
        self.fib.remove(prefix, protocol, distance)
    }

    /// The neighbour table.
    pub fn neighbours(&self) -> &neighbour::Table {
        &self.neighbours
    }

    /// Add a port without addresses (e.g. a node's `lxc` port towards a new pod).
    pub fn add_port(
        &mut self,
        name: &str,
        mac: EthernetAddress,
        mtu: u16,
    ) -> Result<PortId, ConfigError> {
        if mtu < 68 {
            return Err(ConfigError::MtuTooSmall {
                port: name.to_string(),
                mtu,
            });
        }
        let id = PortId(self.ports.len() as u16);
        self.ports.push(PortSpec {
            name: name.to_string(),
            mac,
            addrs: Vec::new(),
            mtu,
        });
        let port = PortConfig {
            addrs: arp::PortAddrs {
                mac,
                owned: Vec::new(),
                announced: Vec::new(),
            },
            ipv6: Default::default(),
            mtu,
        };
        self.datapath_ports.insert(id, port);
        Ok(id)
    }

    /// Answer ARP (IPv4) or neighbour solicitations (IPv6) for `addr` on
    /// `port` without owning it (Cilium answers its pods' requests for the
    /// `cilium_host` gateway this way, and L2 announcements the services'
    /// addresses). False if the port is unknown.
    pub fn announce(&mut self, port: PortId, addr: IpAddr) -> bool {
        let Some(p) = self.datapath_ports.get_mut(&port) else {
            return false;
        };
        match addr {
            IpAddr::V4(a) if !p.addrs.announced.contains(&a) => p.addrs.announced.push(a),
            IpAddr::V6(a) if !p.ipv6.announced.contains(&a) => p.ipv6.announced.push(a),
            _ => {}
        }
        true
    }

    /// Stop answering for `addr` on `port`; whether it was answered.
    pub fn withdraw(&mut self, port: PortId, addr: IpAddr) -> bool {
        let Some(p) = self.datapath_ports.get_mut(&port) else {
            return false;
        };
        let (before, after) = match addr {
            IpAddr::V4(a) => {
                let before = p.addrs.announced.len();
                p.addrs.announced.retain(|x| *x != a);
                (before, p.addrs.announced.len())
            }
            IpAddr::V6(a) => {
                let before = p.ipv6.announced.len();
                p.ipv6.announced.retain(|x| *x != a);
                (before, p.ipv6.announced.len())
            }
        };
        before != after
    }

    /// Tell the link that `addr` is now at `port`'s MAC (an address taken
    /// over: neighbours that know it update their entry): a gratuitous ARP
    /// for IPv4, an unsolicited neighbour advertisement for IPv6.
    pub fn announce_takeover(&mut self, port: PortId, addr: IpAddr) {
        if let Some(p) = self.datapath_ports.get(&port) {
            let frame = match addr {
                IpAddr::V4(a) => arp::gratuitous(p.addrs.mac, a),
                IpAddr::V6(a) => ndp::unsolicited_advertisement(p.addrs.mac, a),
            };
            self.outbox.push((port, frame));
        }
    }

    /// `arping TARGET` (IPv4) or `ndisc6 TARGET` (IPv6): one ARP request or
    /// neighbour solicitation for `target` on the port whose subnet holds
    /// it; the replies are collected for [`Host::arping_replies`]. The
    /// port's name, or `None` if no port's subnet holds the target.
    pub fn arping(&mut self, target: IpAddr) -> Option<String> {
        let port = self
            .ports
            .iter()
            .position(|p| p.addrs.iter().any(|a| a.contains(&target)))?;
        if self.arping.as_ref().is_none_or(|(t, _)| *t != target) {
            self.arping = Some((target, Vec::new()));
        }
        self.solicit(target, PortId(port as u16));
        Some(self.ports[port].name.clone())
    }

    /// The replies to `arping` seen since the last call: when, and whose MAC.
    pub fn arping_replies(&mut self) -> Vec<(Instant, EthernetAddress)> {
        self.arping
            .as_mut()
            .map(|(_, seen)| std::mem::take(seen))
            .unwrap_or_default()
    }

    /// A permanent neighbour entry (an endpoint whose MAC the agent knows).
    pub fn add_neighbour(&mut self, addr: IpAddr, port: PortId, mac: EthernetAddress) {
        self.neighbours.insert_permanent(addr, port, mac);
    }

    /// Set the security identity of a source address (the VNI of its tunnelled traffic).
    pub fn set_identity(&mut self, addr: IpAddr, identity: u32) {
        self.identities.insert(addr, identity);
    }

    /// Choose the ECMP flow hash (Linux `fib_multipath_hash_policy`).
    pub fn set_hash_policy(&mut self, policy: router_core::ecmp::HashPolicy) {
        self.datapath.hash_policy = policy;
    }

    /// Set (or take down) the host's tunnel endpoint.
    pub fn set_tunnel(&mut self, tunnel: Option<router_core::datapath::TunnelConfig>) {
        self.datapath.tunnel = tunnel;
    }

    /// Whether the host forwards transit packets.
    pub fn forwarding(&self) -> bool {
        self.forwarding
    }

    /// Turn forwarding on or off.
    pub fn set_forwarding(&mut self, on: bool) {
        self.forwarding = on;
    }

    /// Packet counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn tables(&self) -> Tables<'_> {
        Tables {
            fib: &self.fib,
            neighbours: &self.neighbours,
            ports: &self.datapath_ports,
            identities: &self.identities,
            config: &self.datapath,
        }
    }

    /// An Ethernet frame arrived on `port` at `now`.
    pub fn receive(&mut self, now: Instant, port: PortId, frame: &[u8]) {
        self.advance(now);
        self.run_received(now, port, frame);
    }

    /// Let the host act at `now`: the stack and applications run, and every frame
    /// to send comes back with its port, in order.
    pub fn poll(&mut self, now: Instant) -> Vec<(PortId, Vec<u8>)> {
        self.advance(now);
        for _ in 0..MAX_ROUNDS {
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let acted = self.apps.poll(now, &mut self.sockets) | self.poll_bgp(now);
            let sent = self.device.take_tx();
            let emitted = !sent.is_empty();
            for packet in sent {
                self.originate(now, packet);
            }
            if !acted && !emitted && !self.device.has_rx() {
                break;
            }
        }
        std::mem::take(&mut self.outbox)
    }

    /// When the host next needs [`Host::poll`] if no frame arrives first.
    pub fn poll_at(&mut self) -> Option<Instant> {
        if !self.outbox.is_empty() || self.device.has_rx() {
            return Some(self.now);
        }
        let stack = self.iface.poll_at(self.now, &self.sockets);
        let bgp = self.bgp.as_ref().and_then(Bgp::poll_at);
        [self.neighbours.poll_at(), stack, self.apps.poll_at(), bgp]
            .into_iter()
            .flatten()
            .min()
    }

    /// Serve `whoami` over HTTP on TCP `port` (traefik/whoami's answer).
    pub fn serve_http(&mut self, port: u16) {
        let addrs = self.addresses().collect();
        let server = HttpServer::new(&self.name, addrs, port);
        self.apps.servers.insert(port, server);
    }

    /// Requests the HTTP server on `port` answered, if there is one.
    pub fn http_served(&self, port: u16) -> Option<u64> {
        self.apps.servers.get(&port).map(HttpServer::served)
    }

    /// Start `curl http://TARGET/` at `now`; the result comes with later polls.
    pub fn curl(&mut self, now: Instant, target: SocketAddr, options: CurlOptions) -> CurlId {
        self.advance(now);
        let src = self.source_address(target.ip()).unwrap_or(match target {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let local = SocketAddr::new(src, self.ephemeral_port());
        let cx = self.iface.context();
        let client = HttpClient::start(now, cx, &mut self.sockets, local, target, options);
        let id = CurlId(self.next_app_id());
        self.apps.curls.insert(id, client);
        id
    }

    /// The result of a `curl` run, once it is done.
    pub fn curl_result(&self, id: CurlId) -> Option<&CurlResult> {
        self.apps.curls.get(&id)?.result()
    }

    /// Start pinging `target` at `now`; replies come with later polls.
    pub fn ping(&mut self, now: Instant, target: Ipv4Addr, options: PingOptions) -> PingId {
        self.advance(now);
        let src = match (options.source, self.source_address(IpAddr::V4(target))) {
            (Some(a), _) | (None, Some(IpAddr::V4(a))) => a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let ident = self.next_ident;
        self.next_ident = self.next_ident.wrapping_add(1);
        let mtu = self.route_mtu(IpAddr::V4(target));
        let pmtu = self.path_mtu(now, IpAddr::V4(target)).map(|(mtu, _)| mtu);
        let ping = Ping::start(
            now,
            &mut self.sockets,
            (src, target),
            ident,
            options,
            (mtu, pmtu),
        );
        let id = PingId(self.next_app_id());
        self.apps.pings.insert(id, ping);
        id
    }

    /// What a `ping` run saw so far.
    pub fn ping_report(&self, id: PingId) -> Option<&PingReport> {
        self.apps.pings.get(&id).map(Ping::report)
    }

    /// The MTU of the route towards `dst`: its egress port's, less the
    /// tunnel headers for a route into a tunnel; `None` without a route.
    pub fn route_mtu(&self, dst: IpAddr) -> Option<u16> {
        let group = self.fib.lookup(dst).and_then(|g| self.fib.group(g))?;
        match group.members().first()?.kind {
            NexthopKind::Gateway { port, .. } | NexthopKind::Connected { port } => {
                Some(self.ports.get(usize::from(port.0))?.mtu)
            }
            NexthopKind::Tunnel { endpoint, .. } => {
                let underlay = self.route_mtu(endpoint)?;
                let overhead = router_core::wire::layout::ENCAP_OVERHEAD as u16;
                Some(underlay.saturating_sub(overhead))
            }
            NexthopKind::Blackhole => None,
        }
    }

    /// The path MTU the host learnt towards `dst` from an ICMP
    /// "fragmentation needed" (RFC 1191), while it lasts: the MTU and how
    /// long it is kept still (Linux's `mtu_expires`, 600 s).
    pub fn path_mtu(&self, now: Instant, dst: IpAddr) -> Option<(u16, smoltcp::time::Duration)> {
        let &(mtu, until) = self.pmtu.get(&dst)?;
        (until > now).then(|| (mtu, until - now))
    }

    /// Learn a path MTU from an ICMP "fragmentation needed" about a packet
    /// of ours (in `ip`, a packet the host receives).
    fn learn_pmtu(&mut self, ip: &[u8]) {
        let Some(icmp) = ip.get(usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4..) else {
            return;
        };
        if ip.first().map(|b| b >> 4) != Some(4)
            || ip.get(9) != Some(&1)
            || icmp.get(..2) != Some(&[3, 4])
        {
            return;
        }
        let (Some(mtu), Some(quoted)) = (icmp.get(6..8), icmp.get(8..28)) else {
            return;
        };
        let mtu = u16::from_be_bytes([mtu[0], mtu[1]]);
        let src = IpAddr::from(<[u8; 4]>::try_from(&quoted[12..16]).expect("four bytes"));
        let dst = IpAddr::from(<[u8; 4]>::try_from(&quoted[16..20]).expect("four bytes"));
        if mtu >= 68 && self.addresses().any(|a| a == src) {
            let until = self.now + PMTU_EXPIRES;
            self.pmtu.insert(dst, (mtu, until));
        }
    }

    /// The source address the host uses towards `dst`: `dst` itself if it is ours,
    /// else an address of the egress port (preferring one on the nexthop's subnet),
    /// else any address of the family.
    pub fn source_address(&self, dst: IpAddr) -> Option<IpAddr> {
        if self.addresses().any(|a| a == dst) {
            return Some(dst);
        }
        let group = self.fib.lookup(dst).and_then(|g| self.fib.group(g));
        let egress = group.and_then(|g| match g.members().first()?.kind {
            NexthopKind::Gateway { addr, port } => Some((port, addr)),
            NexthopKind::Connected { port } => Some((port, dst)),
            NexthopKind::Tunnel { .. } | NexthopKind::Blackhole => None,
        });
        let same_family = |a: &IpNet| a.addr().is_ipv4() == dst.is_ipv4();
        let on_port = egress.and_then(|(port, near)| {
            let addrs = &self.ports.get(usize::from(port.0))?.addrs;
            let mut family = addrs.iter().filter(|a| same_family(a));
            let first = family.clone().next();
            family
                .find(|a| a.contains(&near))
                .or(first)
                .map(IpNet::addr)
        });
        on_port.or_else(|| {
            let all = self.ports.iter().flat_map(|p| &p.addrs);
            all.filter(|a| same_family(a)).map(IpNet::addr).next()
        })
    }

    fn next_app_id(&mut self) -> u32 {
        self.next_app += 1;
        self.next_app
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = self.next_port.checked_add(1).unwrap_or(EPHEMERAL);
        port
    }

    /// Move the clock to `now` and run the neighbour table's timers if due.
    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.neighbours.poll_at().is_some_and(|at| at <= now) {
            self.neighbour_event(now, Event::Tick);
        }
    }

    /// The service translation stage (LoadBalancer frontends, their flows).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The service translation stage, to configure frontends.
    pub fn services_mut(&mut self) -> &mut Services {
        &mut self.services
    }

    /// Frames arriving on `port` come from a pod of this node: in-cluster
    /// traffic (`internalTrafficPolicy`) for the service stage.
    pub fn set_pod_port(&mut self, port: PortId) {
        self.local_ports.insert(port);
    }

    /// Keep flow events from now on (a Cilium node's Hubble).
    pub fn enable_flows(&mut self) {
        self.flows.get_or_insert_with(FlowLog::default);
    }

    /// The flow events recorded since the last call (none unless enabled).
    pub fn take_flows(&mut self) -> Vec<router_core::flow::Flow> {
        self.flows.as_mut().map(FlowLog::take).unwrap_or_default()
    }

    /// Record a flow event made outside the datapath (a socket's service
    /// translation), if flows are kept.
    pub fn record_flow(&mut self, flow: router_core::flow::Flow) {
        if let Some(log) = &mut self.flows {
            log.push(flow);
        }
    }

    /// Which side of the node a port leads to: a pod, or the network.
    fn side(&self, port: PortId) -> Side {
        if self.local_ports.contains(&port) {
            Side::Endpoint
        } else {
            Side::Network
        }
    }

    /// Record the flow event of a datapath exit, if flows are kept.
    /// `ingress` is `None` for the host's own packets. Nothing is looked up
    /// unless flows are kept: this runs for every packet.
    fn observe(
        &mut self,
        now: Instant,
        ingress: Option<PortId>,
        verdict: &pipeline::Verdict,
        ip: &[u8],
    ) {
        if self.flows.is_none() {
            return;
        }
        let from = ingress.map_or(Side::Host, |p| self.side(p));
        let to = verdict.egress.map(|p| self.side(p));
        if let Some(log) = &mut self.flows {
            log.exit(now, (from, to), verdict.reason, verdict.decapsulated, ip);
        }
    }

    /// Run a received frame through service translation and the datapath and
    /// carry out the verdict.
    fn run_received(&mut self, now: Instant, ingress: PortId, frame: &[u8]) {
        if !self.services.is_idle() {
            let origin = if self.local_ports.contains(&ingress) {
                Origin::Local
            } else {
                Origin::External
            };
            let mut translated = frame.to_vec();
            match self.services.translate(now, origin, &mut translated) {
                Verdict::Untouched => {}
                Verdict::Dropped(why) => {
                    if let (Some(log), Some(ip)) = (&mut self.flows, frame.get(ETH..)) {
                        log.service_drop(now, router_core::flow::DropReason::of_service(why), ip);
                    }
                    return;
                }
                Verdict::Translated => return self.route_received(now, ingress, &translated),
                Verdict::Dispatch { node, service } => {
                    return self.dispatch(now, ingress, frame, &translated, node, service);
                }
            }
        }
        self.route_received(now, ingress, frame);
    }

    /// Send a service request, rewritten to its backend (`translated`), in
    /// Geneve to the backend's `node` with the DSR option (`frame` is the
    /// request as received, re-run when the node's MAC is not known yet).
    fn dispatch(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        translated: &[u8],
        node: Ipv4Addr,
        service: DsrOption,
    ) {
        let mut out = Vec::new();
        let v = pipeline::dispatch(&self.tables(), translated, node, service, &mut out);
        self.counters.received[v.reason as usize] += 1;
        self.observe(now, Some(ingress), &v, v.observed_ip(&out));
        match v.reason {
            Reason::Encapsulated => {
                let egress = v.egress.expect("transmit verdicts name a port");
                self.outbox.push((egress, out));
            }
            Reason::NeighbourMiss => {
                let (addr, port) = v.resolve.expect("a miss names the nexthop");
                let frame = frame.to_vec();
                self.enqueue(now, addr, port, Queued::Dispatched { ingress, frame });
            }
            _ => {}
        }
    }

    /// Run a received frame through the datapath and carry out the verdict.
    fn route_received(&mut self, now: Instant, ingress: PortId, frame: &[u8]) {
        let mut out = Vec::new();
        let v = pipeline::process(&self.tables(), ingress, frame, &mut out);
        self.counters.received[v.reason as usize] += 1;
        self.observe(now, Some(ingress), &v, v.observed_ip(&out));
        if let Some(service) = v.dsr {
            self.services.accept_dispatched(now, &out, service);
        }
        match v.reason {
            Reason::ArpReply | Reason::ArpOther => {
                self.learn_arp(now, ingress, frame);
                if let Some(egress) = v.egress {
                    self.outbox.push((egress, out));
                }
            }
            Reason::NdpReply => {
                self.learn_ndp(now, ingress, frame);
                self.outbox.push((ingress, out));
            }
            Reason::NdpOther => {
                if let Some(reply) = self.learn_ndp(now, ingress, frame) {
                    self.outbox.push((ingress, reply));
                }
            }
            // A reply a tunnel brought back to the address this node's
            // service datapath SNATed a flow to (its cilium_host address in
            // tunnel mode): translated back, it leaves like the host's own.
            Reason::Local if v.decapsulated && !self.services.is_idle() => {
                let mut inner = out.clone();
                match self.services.translate(now, Origin::External, &mut inner) {
                    Verdict::Translated => self.originate(now, inner[ETH..].to_vec()),
                    _ => self.deliver_local(&out[ETH..]),
                }
            }
            Reason::Local => self.deliver_local(&out[ETH..]),
            Reason::Forwarded
            | Reason::Encapsulated
            | Reason::NeighbourMiss
            | Reason::TtlExceeded
            | Reason::NoRoute
            | Reason::FragmentationNeeded
                if !self.forwarding =>
            {
                self.counters.not_forwarding += 1;
            }
            Reason::Forwarded | Reason::Encapsulated => {
                let egress = v.egress.expect("transmit verdicts name a port");
                self.outbox.push((egress, out));
            }
            Reason::NeighbourMiss => {
                let (addr, port) = v.resolve.expect("a miss names the nexthop");
                let frame = frame.to_vec();
                self.enqueue(now, addr, port, Queued::Received { ingress, frame });
            }
            Reason::TtlExceeded => {
                let from = self.port_ipv4(ingress);
                self.icmp_error(now, icmp::Error::TtlExceeded, from, &out[ETH..]);
            }
            Reason::NoRoute => {
                let from = self.port_ipv4(ingress);
                self.icmp_error(now, icmp::Error::NetUnreachable, from, &out[ETH..]);
            }
            Reason::FragmentationNeeded => {
                let from = self.port_ipv4(ingress);
                self.too_big(now, v.mtu, from, &out[ETH..]);
            }
            _ => {}
        }
    }

    /// A packet over the way out's MTU: ICMP "fragmentation needed" with
    /// the MTU when it has DF set (RFC 1191), else dropped and counted.
    fn too_big(&mut self, now: Instant, mtu: Option<u16>, from: Option<Ipv4Addr>, ip: &[u8]) {
        let df =
            ip.first().is_some_and(|b| b >> 4 == 4) && ip.get(6).is_some_and(|f| f & 0x40 != 0);
        match mtu {
            Some(mtu) if df => {
                self.icmp_error(now, icmp::Error::FragmentationNeeded { mtu }, from, ip);
            }
            _ => self.counters.not_fragmented += 1,
        }
    }

    /// Route an IP packet of the host's own and carry out the verdict.
    fn originate(&mut self, now: Instant, packet: Vec<u8>) {
        let mut out = Vec::new();
        let v = pipeline::originate(&self.tables(), &packet, &mut out);
        self.counters.originated[v.reason as usize] += 1;
        self.observe(now, None, &v, &packet);
        match v.reason {
            Reason::Forwarded | Reason::Encapsulated => {
                let egress = v.egress.expect("transmit verdicts name a port");
                self.outbox.push((egress, out));
            }
            Reason::Local => {
                self.learn_pmtu(&packet);
                self.device.deliver(packet);
            }
            Reason::NeighbourMiss => {
                let (addr, port) = v.resolve.expect("a miss names the nexthop");
                self.enqueue(now, addr, port, Queued::Originated(packet));
            }
            Reason::NoRoute => {
                let from = source_v4(&packet);
                self.icmp_error(now, icmp::Error::NetUnreachable, from, &packet);
            }
            Reason::FragmentationNeeded => {
                let from = source_v4(&packet);
                self.too_big(now, v.mtu, from, &packet);
            }
            _ => {}
        }
    }

    /// Hand an IP packet (Ethernet stripped, padding trimmed) to smoltcp.
    fn deliver_local(&mut self, ip: &[u8]) {
        let len = match ip.first().map(|b| b >> 4) {
            Some(4) if ip.len() >= 4 => usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            Some(6) if ip.len() >= 6 => 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])),
            _ => ip.len(),
        };
        self.learn_pmtu(ip);
        self.device.deliver(ip[..len.min(ip.len())].to_vec());
    }

    /// Send `error` about `original` from `from`, when ICMP allows one.
    fn icmp_error(
        &mut self,
        now: Instant,
        error: icmp::Error,
        from: Option<Ipv4Addr>,
        original: &[u8],
    ) {
        if let Some(packet) = from.and_then(|from| icmp::error(error, from, original)) {
            self.counters.icmp_errors += 1;
            self.originate(now, packet);
        }
    }

    /// The first IPv4 address of `port`, else of the host.
    fn port_ipv4(&self, port: PortId) -> Option<Ipv4Addr> {
        let on_port = self.ports.get(usize::from(port.0)).into_iter();
        on_port
            .chain(&self.ports)
            .flat_map(|p| &p.addrs)
            .find_map(|a| v4(a.addr()))
    }

    /// Queue a packet for `addr` (bounded) and ask the neighbour table to resolve it.
    fn enqueue(&mut self, now: Instant, addr: IpAddr, port: PortId, packet: Queued) {
        let queue = self.pending.entry(addr).or_default();
        if queue.len() < self.pending_per_nexthop {
            queue.push_back(packet);
        } else {
            self.counters.queue_overflow += 1;
        }
        self.neighbour_event(now, Event::Resolve { addr, port });
    }

    /// Feed the neighbour table and carry out what it asks.
    fn neighbour_event(&mut self, now: Instant, event: Event) {
        let mut outputs = Vec::new();
        self.neighbours.handle(now, event, &mut outputs);
        for output in outputs {
            match output {
                Output::Request { addr, port } => self.solicit(addr, port),
                Output::Resolved { addr, .. } => {
                    for packet in self.pending.remove(&addr).unwrap_or_default() {
                        match packet {
                            Queued::Received { ingress, frame } => {
                                self.route_received(now, ingress, &frame)
                            }
                            Queued::Dispatched { ingress, frame } => {
                                self.run_received(now, ingress, &frame)
                            }
                            Queued::Originated(packet) => self.originate(now, packet),
                        }
                    }
                }
                Output::Unreachable { addr } => {
                    for packet in self.pending.remove(&addr).unwrap_or_default() {
                        self.counters.unresolved += 1;
                        let (from, ip) = match &packet {
                            Queued::Received { ingress, frame }
                            | Queued::Dispatched { ingress, frame } => {
                                (self.port_ipv4(*ingress), &frame[ETH..])
                            }
                            Queued::Originated(packet) => (source_v4(packet), &packet[..]),
                        };
                        let ip = ip.to_vec();
                        self.icmp_error(now, icmp::Error::HostUnreachable, from, &ip);
                    }
                }
            }
        }
    }

    /// Ask who has `addr` on `port`: a broadcast ARP request (IPv4) or a
    /// neighbour solicitation to its solicited-node address (IPv6), from
    /// the port's address on the target's subnet (else its first address of
    /// the family).
    fn solicit(&mut self, addr: IpAddr, port: PortId) {
        let Some(spec) = self.ports.get(usize::from(port.0)) else {
            return;
        };
        let mut owned = spec
            .addrs
            .iter()
            .filter(|a| a.addr().is_ipv4() == addr.is_ipv4());
        let first = owned.clone().next();
        let Some(src) = owned.find(|a| a.contains(&addr)).or(first) else {
            return;
        };
        let frame = match (src.addr(), addr) {
            (IpAddr::V4(src), IpAddr::V4(target)) => {
                self.counters.arp_requests += 1;
                arp::request(spec.mac, src, target)
            }
            (IpAddr::V6(src), IpAddr::V6(target)) => {
                self.counters.neighbour_solicitations += 1;
                ndp::solicitation(spec.mac, src, target)
            }
            _ => return,
        };
        self.outbox.push((port, frame));
    }

    /// Learn the sender of an ARP frame (replies, requests, announcements).
    fn learn_arp(&mut self, now: Instant, port: PortId, frame: &[u8]) {
        let Some(addrs) = self.datapath_ports.get(&port) else {
            return;
        };
        if let (Some((target, seen)), Some(reply)) = (&mut self.arping, arp::reply_of(frame))
            && IpAddr::V4(reply.0) == *target
        {
            seen.push((now, reply.1));
        }
        if let Some(event) = arp::respond(port, &addrs.addrs, frame).learn {
            self.neighbour_event(now, event);
        }
    }

    /// Learn from a neighbour discovery frame (solicitations, advertisements)
    /// as the host stack does behind the datapath; the advertisement the
    /// slow path sends for a solicitation the datapath left to it, if any.
    fn learn_ndp(&mut self, now: Instant, port: PortId, frame: &[u8]) -> Option<Vec<u8>> {
        let addrs = self.datapath_ports.get(&port)?;
        let verdict = ndp::respond(port, addrs.addrs.mac, &addrs.ipv6, frame);
        if let (Some((target, seen)), Some(advert)) =
            (&mut self.arping, ndp::advertisement_of(frame))
            && IpAddr::V6(advert.0) == *target
        {
            seen.push((now, advert.1));
        }
        if let Some(event) = verdict.learn {
            self.neighbour_event(now, event);
        }
        verdict.reply.ok()
    }
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn v6(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// The source address of an IPv4 packet.
fn source_v4(packet: &[u8]) -> Option<Ipv4Addr> {
    let bytes: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    (packet[0] >> 4 == 4).then(|| Ipv4Addr::from(bytes))
}

/// Whether an interface may hold `a`.
fn assignable(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Host {
        let mut c = HostConfig::new("r");
        let mac = |n| EthernetAddress([2, 0, 0, 0, 0, n]);
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        c.ports = vec![
            PortSpec::new(
                "eth0",
                mac(1),
                vec![net("10.0.1.1/24"), net("fd00:1::1/64")],
            ),
            PortSpec::new("eth1", mac(2), vec![net("10.0.2.1/24"), net("10.0.9.1/24")]),
        ];
        c.forwarding = true;
        let mut h = Host::new(c).unwrap();
        let gw = Route::new(
            Protocol::Static,
            vec![Nexthop::gateway("10.0.9.254".parse().unwrap(), PortId(1))],
        );
        h.add_route("0.0.0.0/0".parse().unwrap(), &gw);
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn port_addresses_become_connected_routes() {
        let h = router();
        let routes: Vec<String> = h.fib().routes().map(|r| r.to_string()).collect();
        assert_eq!(
            routes,
            [
                "0.0.0.0/0 via 10.0.9.254 dev port1 proto static",
                "10.0.1.0/24 dev port0 proto kernel scope link",
                "10.0.2.0/24 dev port1 proto kernel scope link",
                "10.0.9.0/24 dev port1 proto kernel scope link",
                "fd00:1::/64 dev port0 proto kernel scope link",
            ]
        );
        assert_eq!(h.port_id("eth1"), Some(PortId(1)));
        assert_eq!(h.port_id("eth7"), None);
    }

    #[test]
    fn source_address_follows_the_route() {
        let h = router();
        assert_eq!(h.source_address(ip("10.0.1.7")), Some(ip("10.0.1.1")));
        assert_eq!(h.source_address(ip("10.0.2.1")), Some(ip("10.0.2.1")));
        // Via the gateway on eth1: the address on the gateway's subnet.
        assert_eq!(h.source_address(ip("8.8.8.8")), Some(ip("10.0.9.1")));
        assert_eq!(h.source_address(ip("fd00:1::9")), Some(ip("fd00:1::1")));
        assert_eq!(h.source_address(ip("fd00:7::9")), Some(ip("fd00:1::1")));
    }

    #[test]
    fn solicitations_come_from_the_address_on_the_targets_subnet() {
        let mut h = router();
        h.solicit(ip("10.0.9.254"), PortId(1));
        h.solicit(ip("10.0.2.5"), PortId(1));
        h.solicit(ip("fd00:1::9"), PortId(0));
        h.solicit(ip("fd00:1::9"), PortId(1));
        let sent = h.poll(Instant::ZERO);
        assert_eq!(sent.len(), 3);
        let mac = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let expect =
            |src: &str, dst: &str| arp::request(mac, src.parse().unwrap(), dst.parse().unwrap());
        assert_eq!(sent[0], (PortId(1), expect("10.0.9.1", "10.0.9.254")));
        assert_eq!(sent[1], (PortId(1), expect("10.0.2.1", "10.0.2.5")));
        let ns = ndp::solicitation(
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            "fd00:1::1".parse().unwrap(),
            "fd00:1::9".parse().unwrap(),
        );
        assert_eq!(sent[2], (PortId(0), ns));
        assert_eq!(h.counters().arp_requests, 2);
        assert_eq!(h.counters().neighbour_solicitations, 1);
    }

    #[test]
    fn ipv6_neighbours_are_resolved_and_announced_addresses_answered() {
        let mut h = router();
        let peer = EthernetAddress([2, 0xaa, 0, 0, 0, 9]);
        let v6 = |a: &str| a.parse::<Ipv6Addr>().unwrap();
        // A forwarded packet for a neighbour not yet known waits for its advertisement.
        let mut frame = Vec::new();
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0xbb, 0, 0, 0, 1, 0x86, 0xdd]);
        frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        frame.extend_from_slice(&v6("fd00:7::1").octets());
        frame.extend_from_slice(&v6("fd00:1::9").octets());
        frame.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
        h.receive(Instant::ZERO, PortId(1), &frame);
        let sent = h.poll(Instant::ZERO);
        assert_eq!(sent.len(), 1);
        assert_eq!(ndp::message_type(&sent[0].1), Some(135));
        let mut advert = ndp::unsolicited_advertisement(peer, v6("fd00:1::9"));
        advert[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        h.receive(Instant::from_millis(1), PortId(0), &advert);
        let sent = h.poll(Instant::from_millis(1));
        assert_eq!(sent.len(), 1, "the waiting packet goes out");
        assert_eq!((sent[0].0, &sent[0].1[0..6]), (PortId(0), &peer.0[..]));
        // An announced address is answered, and stops being when withdrawn.
        let vip = ip("fd00:1::211");
        assert!(h.announce(PortId(0), vip));
        let ask = ndp::solicitation(peer, v6("fd00:1::9"), v6("fd00:1::211"));
        h.receive(Instant::from_millis(2), PortId(0), &ask);
        let sent = h.poll(Instant::from_millis(2));
        assert_eq!(h.counters().received(Reason::NdpReply), 1);
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        assert_eq!(
            ndp::advertisement_of(&sent[0].1),
            Some((v6("fd00:1::211"), mac))
        );
        assert!(h.withdraw(PortId(0), vip));
        h.receive(Instant::from_millis(3), PortId(0), &ask);
        assert!(h.poll(Instant::from_millis(3)).is_empty());
        // A solicitation the datapath leaves to the slow path is answered there.
        let mut bare = ndp::solicitation(peer, v6("fd00:1::9"), v6("fd00:1::1"));
        bare.truncate(bare.len() - 8);
        bare[18..20].copy_from_slice(&24u16.to_be_bytes());
        bare[56..58].fill(0);
        let sum = router_core::datapath::checksum::sum(&bare[22..54])
            + 24
            + 58
            + router_core::datapath::checksum::sum(&bare[54..]);
        let check = !router_core::datapath::checksum::fold(sum);
        bare[56..58].copy_from_slice(&check.to_be_bytes());
        h.receive(Instant::from_millis(4), PortId(0), &bare);
        assert_eq!(h.counters().received(Reason::NdpOther), 3);
        let sent = h.poll(Instant::from_millis(4));
        assert_eq!(
            ndp::advertisement_of(&sent[0].1),
            Some((v6("fd00:1::1"), mac))
        );
    }

    #[test]
    fn frames_on_unknown_ports_are_counted() {
        let mut h = router();
        h.receive(Instant::ZERO, PortId(9), &[0; 60]);
        assert_eq!(h.counters().received(Reason::UnknownPort), 1);
        assert!(h.poll(Instant::ZERO).is_empty());
        assert_eq!(h.poll_at(), None);
    }
}
