//! The host's side of BGP ([`crate::apps::bgp`]): starting and stopping
//! what runs it (a router's speaker or a Cilium node's control plane),
//! opening the connections it asks for (source address, ephemeral port,
//! TTL) and installing its routes in the FIB, each next hop on the port that
//! reaches it; eBGP routes at distance 20 (and metric 20, as zebra installs
//! them in the kernel: `proto bgp metric 20`), several next hops as one ECMP
//! group.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use router_core::PortId;
use router_core::bgp::rib::{BgpRoute, RibConfig};
use router_core::bgp::speaker::{Input, Speaker};
use router_core::cilium::Objects;
use router_core::cilium::node::{NodeBgp, NodeOptions};
use router_core::fib::{NexthopKind, Protocol};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;

use super::Host;
use crate::apps::bgp::{Bgp, Control};

impl Host {
    /// Run a router's BGP speaker with `config`, replacing whatever ran
    /// BGP as a restarted process would: connections reset, routes leave
    /// the FIB.
    pub fn bgp_start(&mut self, now: Instant, config: RibConfig) {
        self.bgp_stop(now);
        self.bgp = Some(Bgp::new(Control::Router(Box::new(Speaker::new(config)))));
    }

    /// Run a Cilium node's BGP control plane, replacing whatever ran BGP.
    pub fn bgp_start_node(&mut self, now: Instant, options: NodeOptions) {
        self.bgp_stop(now);
        self.bgp = Some(Bgp::new(Control::Node(NodeBgp::new(options))));
    }

    /// Stop BGP at once, as if the process died: connections reset, BGP
    /// routes leave the FIB.
    pub fn bgp_stop(&mut self, now: Instant) {
        self.advance(now);
        if let Some(mut bgp) = self.bgp.take() {
            self.bgp_stopped_events.extend(bgp.take_events());
            let installed = bgp.installed();
            self.bgp_closing.extend(bgp.abort(&mut self.sockets));
            for prefix in installed {
                self.install_bgp(prefix, None);
            }
        }
    }

    /// What BGP did since the last call (sessions' reports, routes in and
    /// out of the FIB), oldest first.
    pub fn take_bgp_events(&mut self) -> Vec<(Instant, crate::apps::bgp::BgpEvent)> {
        let mut events = std::mem::take(&mut self.bgp_stopped_events);
        events.extend(self.bgp.as_mut().map(Bgp::take_events).unwrap_or_default());
        events
    }

    /// BGP on this host, if it runs.
    pub fn bgp(&self) -> Option<&Bgp> {
        self.bgp.as_ref()
    }

    /// Feed the router's speaker a configuration input (a peer, a route,
    /// an export policy); no-op unless a router speaker runs.
    pub fn bgp_input(&mut self, now: Instant, input: Input) {
        self.advance(now);
        if let Some(b) = self.bgp.as_mut() {
            b.router_input(now, &mut self.sockets, input);
        }
    }

    /// Bring the node's BGP control plane in line with `objects`.
    pub fn bgp_reconcile(&mut self, now: Instant, objects: &Objects) {
        self.advance(now);
        if let Some(b) = self.bgp.as_mut() {
            b.reconcile(now, &mut self.sockets, objects);
        }
    }

    /// One round of BGP: sockets, timers, connects, FIB changes. Returns
    /// whether anything happened.
    pub(super) fn poll_bgp(&mut self, now: Instant) -> bool {
        let before = self.bgp_closing.len();
        let sockets = &mut self.sockets;
        self.bgp_closing.retain(|&h| {
            let closed = sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed;
            if closed {
                sockets.remove(h);
            }
            !closed
        });
        let mut acted = self.bgp_closing.len() != before;
        let Some(mut bgp) = self.bgp.take() else {
            return acted;
        };
        acted |= bgp.poll(now, &mut self.sockets);
        for connect in bgp.take_connects() {
            let peer = SocketAddr::new(connect.peer, connect.port);
            let src = connect.bind.or_else(|| self.source_address(connect.peer));
            let handle = src.and_then(|src| {
                let local = SocketAddr::new(src, self.ephemeral_port());
                let mut socket = Bgp::socket();
                socket.set_hop_limit(Some(connect.ttl));
                let cx = self.iface.context();
                socket.connect(cx, peer, local).ok()?;
                Some(self.sockets.add(socket))
            });
            bgp.connecting(now, &mut self.sockets, &connect, handle);
            acted = true;
        }
        for (prefix, route) in bgp.take_fib() {
            self.install_bgp(prefix, route.as_ref());
            acted = true;
        }
        self.bgp = Some(bgp);
        acted
    }

    /// Replace the BGP route of `prefix` (none: remove it).
    fn install_bgp(&mut self, prefix: IpNet, route: Option<&BgpRoute>) {
        for p in [Protocol::Ebgp, Protocol::Ibgp] {
            self.fib.remove(prefix, p, p.default_distance());
        }
        let resolved = route.and_then(|r| r.to_fib(|addr| self.port_towards(addr)));
        if let Some(mut r) = resolved {
            // As zebra installs BGP routes in the kernel: metric = distance.
            r.metric = u32::from(r.distance);
            self.fib.insert(prefix, &r);
        }
    }

    /// The port the FIB sends `addr` out of.
    fn port_towards(&self, addr: IpAddr) -> Option<PortId> {
        let group = self.fib.group(self.fib.lookup(addr)?)?;
        match group.members().first()?.kind {
            NexthopKind::Connected { port } | NexthopKind::Gateway { port, .. } => Some(port),
            NexthopKind::Tunnel { .. } | NexthopKind::Blackhole => None,
        }
    }
}
