//! A netstack host as an engine node, with what the simulator knows about it.
//!
//! Owns the mapping between the engine's port numbers (attach order) and the
//! host's ports (configuration order: loopbacks and `cilium_host` are never
//! attached), the display notes `ip route` needs, the node's L2 announcer
//! (driven on the host's wake-ups) and whether it is down. Forwarding and
//! applications are the [`nexthop_netstack::Host`]'s.

use std::collections::BTreeMap;

use ipnet::IpNet;
use nexthop_netstack::Host;
use smoltcp::time::Instant;

use super::l2::L2Node;
use crate::node::{Node, Poll, PortId};
use crate::show::RouteNote;

/// What a simulated host is in the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A Kubernetes node.
    K8sNode,
    /// A router.
    Router,
    /// An external host.
    External,
    /// A pod on `node`.
    Pod {
        /// The node it runs on.
        node: String,
    },
}

/// A host in the engine.
#[derive(Debug)]
pub struct SimHost {
    /// The host: tables, datapath, smoltcp, applications.
    pub host: Host,
    /// What it is.
    pub role: Role,
    /// `src`/`mtu` beside routes in `ip route`.
    pub notes: BTreeMap<IpNet, RouteNote>,
    /// Engine port → host port.
    to_host: Vec<router_core::PortId>,
    /// Host port → engine port.
    to_engine: BTreeMap<router_core::PortId, PortId>,
    /// Frames sent on host ports that are not attached to any segment.
    pub unattached_drops: u64,
    /// A k8s-node's L2 announcer, when L2 announcements are enabled.
    pub l2: Option<L2Node>,
    /// Crashed or rebooting: receives nothing, sends nothing, runs nothing.
    pub down: bool,
}

impl SimHost {
    /// Wrap `host`.
    pub fn new(host: Host, role: Role) -> Self {
        SimHost {
            host,
            role,
            notes: BTreeMap::new(),
            to_host: Vec::new(),
            to_engine: BTreeMap::new(),
            unattached_drops: 0,
            l2: None,
            down: false,
        }
    }

    /// The engine's port for host port `port`, if it is attached.
    pub fn engine_port(&self, port: router_core::PortId) -> Option<PortId> {
        self.to_engine.get(&port).copied()
    }

    /// Record that host port `port` was attached as the engine's port `engine`.
    pub fn attached(&mut self, port: router_core::PortId, engine: PortId) {
        debug_assert_eq!(
            usize::from(engine.0),
            self.to_host.len(),
            "engine numbers ports in attach order"
        );
        self.to_host.push(port);
        self.to_engine.insert(port, engine);
    }
}

impl Node for SimHost {
    fn receive(&mut self, now: Instant, port: PortId, frame: Vec<u8>) {
        if self.down {
            return;
        }
        if let Some(&p) = self.to_host.get(usize::from(port.0)) {
            self.host.receive(now, p, &frame);
        }
    }

    fn poll(&mut self, now: Instant) -> Poll {
        if self.down {
            return Poll::default();
        }
        if let Some(l2) = &mut self.l2 {
            l2.poll(now, &mut self.host);
        }
        let mut transmit = Vec::new();
        for (port, frame) in self.host.poll(now) {
            match self.to_engine.get(&port) {
                Some(&p) => transmit.push((p, frame)),
                None => self.unattached_drops += 1,
            }
        }
        let l2 = self.l2.as_ref().and_then(L2Node::poll_at);
        Poll {
            transmit,
            wake_at: [self.host.poll_at(), l2].into_iter().flatten().min(),
        }
    }
}
