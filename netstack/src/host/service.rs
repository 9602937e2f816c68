//! The service stage of a simulated node: router-core's service datapath
//! (`router_core::service::datapath::Service`, Cilium's kube-proxy
//! replacement) in front of the routing pipeline.
//!
//! Owns only carrying it out on Ethernet frames: reading a frame's 5-tuple
//! and rewriting it (`router_core::service::packet`), where the frame came
//! from ([`Origin`]: a pod port is local, anything else is outside), and
//! the random number each packet gets, from the host's seed. Which
//! frontends exist, which backend a flow gets, conntrack, affinity, SNAT
//! and masquerading are router-core's; the table comes from whoever runs the node (the
//! simulator builds it with `router_core::service::frontend`).

use router_core::hash::splitmix64;
use router_core::service::datapath::{self, Config, Connect, DropReason, Service, Tracked};
pub use router_core::service::datapath::{Counters, Origin};
use router_core::service::masquerade::Masquerade;
use router_core::service::table::{L3n4, ServiceTable};
use router_core::wire::geneve::DsrOption;
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;
use smoltcp::time::Instant;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// What the stage did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a service packet: route it as it is.
    Untouched,
    /// Rewritten (a flow to a backend, or a reply to a client): route it.
    Translated,
    /// Rewritten to a backend on another node, and to be dispatched there
    /// in Geneve with the service address (DSR).
    Dispatch {
        /// The backend's node.
        node: Ipv4Addr,
        /// The service address the client asked for.
        service: DsrOption,
    },
    /// Dropped, and why.
    Dropped(DropReason),
}

/// A node's service datapath and the random numbers it draws.
#[derive(Clone, Debug)]
pub struct Services {
    service: Service,
    rng: u64,
    /// Counts the changes of the table or settings served.
    generation: u64,
}

impl Services {
    /// No frontends yet; Cilium's defaults; random numbers from `seed`.
    pub fn new(seed: u64) -> Self {
        let config = Config::default();
        let table = ServiceTable::new(&config.maglev, BTreeMap::new());
        Services {
            service: Service::new(config, table),
            rng: seed,
            generation: 0,
        }
    }

    /// Use `config` from now on (its SNAT addresses included): the flows
    /// tracked so far are forgotten when it differs from the current one
    /// (a restarted agent's datapath).
    pub fn configure(&mut self, config: Config) {
        if *self.service.config() != config {
            let table = self.service.table().clone();
            self.service = Service::new(config, table);
            self.generation += 1;
        }
    }

    /// Serve `table` from now on (tracked flows keep their backends while
    /// those exist).
    pub fn set_table(&mut self, table: ServiceTable) {
        if *self.service.table() != table {
            self.service.set_table(table);
            self.generation += 1;
        }
    }

    /// How many times the table or the settings served have changed: while
    /// it stays the same, every tracked connection keeps its backend.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Masquerade pods' traffic leaving the node as `masquerade` says
    /// (`None`: not at all).
    pub fn set_masquerade(&mut self, masquerade: Option<Masquerade>) {
        self.service.set_masquerade(masquerade);
    }

    /// The masquerading in force.
    pub fn masquerade(&self) -> Option<&Masquerade> {
        self.service.masquerade()
    }

    /// The table served.
    pub fn table(&self) -> &ServiceTable {
        self.service.table()
    }

    /// What a pod's `connect()` to `frontend` becomes (router-core's
    /// socket-level choice). Each call is a new socket, so its slot is a
    /// random number of this node's, for TCP and UDP alike (a fresh UDP
    /// socket's cookie is as unforeseeable).
    pub fn connect(&mut self, frontend: &L3n4) -> Connect {
        let slot = u64::from(splitmix64(&mut self.rng) as u32);
        self.service.connect(frontend, slot)
    }

    /// Nothing to do: no frontends, no masquerading and no flows.
    pub fn is_idle(&self) -> bool {
        self.service.table().frontends().next().is_none()
            && self.service.masquerade().is_none()
            && self.service.connections() == 0
    }

    /// The connections tracked at `now`.
    pub fn tracked(&self, now: Instant) -> impl Iterator<Item = Tracked> + '_ {
        self.service.tracked(now)
    }

    /// Flows opened, SNATed and packets dropped so far.
    pub fn counters(&self) -> Counters {
        self.service.counters()
    }

    /// Translate an Ethernet frame from `origin` in place if it is an IPv4
    /// or IPv6 frame of a service flow.
    pub fn translate(&mut self, now: Instant, origin: Origin, frame: &mut [u8]) -> Verdict {
        if !matches!(frame.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd])) {
            return Verdict::Untouched;
        }
        let Some(ip) = frame.get_mut(ETH..) else {
            return Verdict::Untouched;
        };
        let rng = &mut self.rng;
        match self
            .service
            .translate(now, origin, ip, || splitmix64(rng) as u32)
        {
            datapath::Verdict::NotService => Verdict::Untouched,
            datapath::Verdict::Translated(_) | datapath::Verdict::Reply(_) => Verdict::Translated,
            datapath::Verdict::Dispatch { node, service, .. } => match (node, service.addr) {
                (IpAddr::V4(node), IpAddr::V4(addr)) => {
                    let service = DsrOption {
                        addr,
                        port: service.port,
                    };
                    Verdict::Dispatch { node, service }
                }
                // Never: router-core dispatches IPv4 only (`NoBackendNode`).
                _ => Verdict::Dropped(DropReason::NoBackendNode),
            },
            datapath::Verdict::Drop(why) => Verdict::Dropped(why),
        }
    }

    /// A request dispatched here in Geneve with the DSR option `service`,
    /// decapsulated to `frame`: track it, so that the backend's replies
    /// leave from the service address.
    pub fn accept_dispatched(&mut self, now: Instant, frame: &[u8], service: DsrOption) {
        if let Some(ip) = frame.get(ETH..) {
            self.service.accept_dispatched_packet(now, ip, service);
        }
    }
}
