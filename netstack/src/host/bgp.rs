//! The host's side of its BGP speaker ([`crate::apps::bgp`]): opening the
//! connections the sessions ask for (source address, ephemeral port, TTL)
//! and installing the RIB's routes in the FIB, each next hop on the port
//! that reaches it; eBGP routes at distance 20 (and metric 20, as zebra
//! installs them in the kernel: `proto bgp metric 20`), several next hops
//! as one ECMP group.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use router_core::PortId;
use router_core::bgp::rib::policy::Policy;
use router_core::bgp::rib::{BgpRoute, RibConfig};
use router_core::bgp::wire::PathAttributes;
use router_core::fib::{NexthopKind, Protocol};
use smoltcp::time::Instant;

use super::Host;
use crate::apps::bgp::{BGP_PORT, PeerSpec, Speaker};

impl Host {
    /// Run a BGP speaker with `config` on this host, replacing any running
    /// one as a restarted process would: its connections are reset and its
    /// routes leave the FIB.
    pub fn bgp_start(&mut self, now: Instant, config: RibConfig) {
        self.bgp_stop(now);
        self.bgp = Some(Speaker::new(config));
    }

    /// Stop the speaker at once, as if the process died: connections reset,
    /// BGP routes leave the FIB.
    pub fn bgp_stop(&mut self, now: Instant) {
        self.advance(now);
        if let Some(mut speaker) = self.bgp.take() {
            let installed: Vec<IpNet> = speaker
                .rib()
                .loc_rib()
                .map(|(p, _)| p)
                .filter(|p| speaker.rib().route(*p).is_some())
                .collect();
            speaker.abort(&mut self.sockets);
            for prefix in installed {
                self.install_bgp(prefix, None);
            }
            self.bgp_dying.push(speaker);
        }
    }

    /// The BGP speaker, if one runs.
    pub fn bgp(&self) -> Option<&Speaker> {
        self.bgp.as_ref()
    }

    /// Add a BGP peer (no-op without a speaker).
    pub fn bgp_add_peer(&mut self, now: Instant, spec: PeerSpec) {
        self.advance(now);
        if let Some(s) = self.bgp.as_mut() {
            s.add_peer(now, &mut self.sockets, spec);
        }
    }

    /// Remove the BGP peer at `address` (Cease, then its routes go).
    pub fn bgp_remove_peer(&mut self, now: Instant, address: IpAddr) {
        self.advance(now);
        if let Some(s) = self.bgp.as_mut() {
            s.remove_peer(now, &mut self.sockets, address);
        }
    }

    /// Replace the export policy towards the BGP peer at `address`.
    pub fn bgp_set_export_policy(&mut self, now: Instant, address: IpAddr, policy: Policy) {
        self.advance(now);
        if let Some(s) = self.bgp.as_mut() {
            s.set_export_policy(now, &mut self.sockets, address, policy);
        }
    }

    /// Originate `prefix` in BGP.
    pub fn bgp_originate(&mut self, now: Instant, prefix: IpNet, attributes: PathAttributes) {
        self.advance(now);
        if let Some(s) = self.bgp.as_mut() {
            s.originate(now, &mut self.sockets, prefix, attributes);
        }
    }

    /// Stop originating `prefix` in BGP.
    pub fn bgp_withdraw(&mut self, now: Instant, prefix: IpNet) {
        self.advance(now);
        if let Some(s) = self.bgp.as_mut() {
            s.withdraw_originated(now, &mut self.sockets, prefix);
        }
    }

    /// One round of the speaker: sessions, connects, FIB changes. Returns
    /// whether anything happened.
    pub(super) fn poll_bgp(&mut self, now: Instant) -> bool {
        let mut acted = false;
        for dying in &mut self.bgp_dying {
            acted |= dying.poll(now, &mut self.sockets);
        }
        self.bgp_dying.retain(|s| !s.is_idle());
        let Some(mut speaker) = self.bgp.take() else {
            return acted;
        };
        acted |= speaker.poll(now, &mut self.sockets);
        for connect in speaker.take_connects() {
            let peer = SocketAddr::new(connect.peer, BGP_PORT);
            let src = self.source_address(connect.peer);
            let handle = src.and_then(|src| {
                let local = SocketAddr::new(src, self.ephemeral_port());
                let mut socket = Speaker::socket();
                socket.set_hop_limit(Some(connect.ttl));
                let cx = self.iface.context();
                socket.connect(cx, peer, local).ok()?;
                Some(self.sockets.add(socket))
            });
            speaker.connecting(now, &mut self.sockets, connect.peer, handle);
            acted = true;
        }
        for (prefix, route) in speaker.take_fib() {
            self.install_bgp(prefix, route.as_ref());
            acted = true;
        }
        self.bgp = Some(speaker);
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
