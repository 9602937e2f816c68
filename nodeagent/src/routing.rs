//! The routes the agent installs in the node's kernel for its routing mode:
//! router-core's `cilium::routing` (the simulator's nodes get theirs from
//! it too), today native routing with `--auto-direct-node-routes`: every
//! other node's pod CIDR via that node when they share a subnet. The XDP
//! datapath mirrors the kernel's routes, so it forwards on them too.
//!
//! Owns installing the routes (`ip route replace … proto kernel`, as
//! Cilium's agent marks them) and removing those it installed that are no
//! longer wanted; the nodes come from the objects (`Node` InternalIPs, pod
//! CIDRs from `CiliumNode` or `Node`), the node's subnets from its
//! connected routes. Does not own the node's own pod routes (`endpoints`).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use router_core::cilium::Objects;
use router_core::cilium::routing::{PeerNode, RoutingMode, agent_routes};
use router_core::fib::NexthopKind;
use tracing::{info, warn};

use crate::kernel::{KernelState, Target, ip};

/// One installed route: destination, gateway, device.
type Installed = (Ipv4Net, Ipv4Addr, String);

/// The routes this agent installed.
#[derive(Debug)]
pub struct NodeRoutes {
    node: String,
    mode: RoutingMode,
    installed: BTreeSet<Installed>,
}

impl NodeRoutes {
    /// Routes for node `node` in `mode`.
    pub fn new(node: &str, mode: RoutingMode) -> Self {
        NodeRoutes {
            node: node.into(),
            mode,
            installed: BTreeSet::new(),
        }
    }

    /// The nodes of `objects` with an InternalIP and an IPv4 pod CIDR.
    fn peers(objects: &Objects) -> Vec<PeerNode> {
        objects
            .nodes
            .iter()
            .filter_map(|(name, node)| {
                let ip = node.internal_ipv4()?;
                let pod_cidr = objects.pod_cidrs(name).into_iter().find_map(|c| match c {
                    IpNet::V4(v4) => Some(v4),
                    IpNet::V6(_) => None,
                })?;
                Some(PeerNode {
                    name: name.clone(),
                    ip,
                    pod_cidr,
                })
            })
            .collect()
    }

    /// What the node's routes should be for `objects`, given the kernel's
    /// connected subnets: (destination, gateway, device).
    fn wanted(&self, objects: &Objects, state: &KernelState) -> BTreeSet<Installed> {
        let peers = Self::peers(objects);
        let Some(me) = peers.iter().find(|p| p.name == self.node) else {
            return BTreeSet::new();
        };
        // The node's subnets: its connected routes, by device.
        let mut devices = Vec::new();
        let mut ports = Vec::new();
        for route in &state.routes {
            let (IpNet::V4(net), Target::Unicast(hops)) = (route.prefix, &route.target) else {
                continue;
            };
            if let [hop] = hops.as_slice()
                && hop.gateway.is_none()
            {
                ports.push((devices.len() as u16, net));
                devices.push(hop.dev.clone());
            }
        }
        // The own pod CIDR's route (via cilium_host) is the endpoints'.
        agent_routes(
            self.mode,
            me,
            Ipv4Addr::UNSPECIFIED,
            &ports,
            u16::MAX,
            &peers,
        )
        .into_iter()
        .filter(|r| r.dst != IpNet::V4(me.pod_cidr))
        .filter_map(|r| {
            let IpNet::V4(dst) = r.dst else { return None };
            match r.route.nexthops.first()?.kind {
                NexthopKind::Gateway {
                    addr: IpAddr::V4(gw),
                    port,
                } => Some((dst, gw, devices.get(usize::from(port.0))?.clone())),
                _ => None,
            }
        })
        .collect()
    }

    /// Bring the kernel's routes to what `objects` ask for: install the
    /// missing ones, remove those installed before and no longer wanted.
    /// Each failure is logged with the route; the others go on.
    pub fn reconcile(&mut self, objects: &Objects) {
        let state = match KernelState::read() {
            Ok(s) => s,
            Err(e) => return warn!("node routes not reconciled: {e}"),
        };
        let wanted = self.wanted(objects, &state);
        for (dst, gw, dev) in self
            .installed
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let args = [
                "route",
                "del",
                &dst.to_string(),
                "via",
                &gw.to_string(),
                "dev",
                &dev,
            ];
            match ip(None, &args) {
                Ok(_) => info!(%dst, %gw, dev, "node route removed"),
                Err(e) => warn!("{e}"),
            }
            self.installed.remove(&(dst, gw, dev));
        }
        for (dst, gw, dev) in wanted {
            if self.installed.contains(&(dst, gw, dev.clone())) {
                continue;
            }
            let args = [
                "route",
                "replace",
                &dst.to_string(),
                "via",
                &gw.to_string(),
                "dev",
                &dev,
                "proto",
                "kernel",
            ];
            match ip(None, &args) {
                Ok(_) => {
                    info!(%dst, %gw, dev, "node route installed");
                    self.installed.insert((dst, gw, dev));
                }
                Err(e) => warn!("{e}"),
            }
        }
    }
}
