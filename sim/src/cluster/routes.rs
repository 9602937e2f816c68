//! The routes the Cilium agent installs on a node, for the lab's routing mode.
//!
//! Owns the rule set, not the FIB: given the nodes and this node's connected
//! subnets, say which routes exist — the own pod CIDR via `cilium_host` (whose
//! address is the `cilium_host` port's, so its /32 is a connected route);
//! with native routing and `autoDirectNodeRoutes`, other nodes' pod CIDRs via
//! those nodes when they share a subnet; with tunnel routing, every other
//! node's pod CIDR into the tunnel (`mtu 1450`). Pods' own /32 routes are the
//! cluster's business ([`super::Cluster`]).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use router_core::fib::{Encap, Nexthop, NexthopKind, Protocol, Route};
use router_core::wire::layout::ENCAP_OVERHEAD;

use crate::lab::values::{RoutingMode, TunnelProtocol, Values};

/// The inner MTU of pod routes into a tunnel on a 1500-byte underlay (1450).
pub const TUNNEL_ROUTE_MTU: u16 = 1500 - ENCAP_OVERHEAD as u16;

/// What the agent needs to know about a node to route to its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNode {
    /// Node name.
    pub name: String,
    /// Underlay address (the node's InternalIP).
    pub ip: Ipv4Addr,
    /// Pod CIDR.
    pub pod_cidr: Ipv4Net,
}

/// One route the agent installs, with what `ip route` shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRoute {
    /// Destination.
    pub dst: IpNet,
    /// The route.
    pub route: Route,
    /// `src` shown by `ip route`.
    pub src: Option<Ipv4Addr>,
    /// `mtu` shown by `ip route`.
    pub mtu: Option<u16>,
    /// The nexthop `ip route` shows, when it differs from the FIB's.
    pub shown_as: Option<String>,
}

/// The routes node `me` gets. `ports` are its underlay interfaces (index, subnet);
/// `cilium_host` is the index of its `cilium_host` port.
pub fn agent_routes(
    values: &Values,
    me: &PeerNode,
    router_ip: Ipv4Addr,
    ports: &[(u16, Ipv4Net)],
    cilium_host: u16,
    nodes: &[PeerNode],
) -> Vec<AgentRoute> {
    let host_port = router_core::PortId(cilium_host);
    let mut out = vec![AgentRoute {
        dst: IpNet::V4(me.pod_cidr),
        route: Route::new(
            Protocol::Kernel,
            vec![Nexthop::gateway(IpAddr::V4(router_ip), host_port)],
        ),
        src: Some(router_ip),
        mtu: None,
        shown_as: None,
    }];
    for peer in nodes.iter().filter(|n| n.name != me.name) {
        match values.routing_mode {
            RoutingMode::Native if values.auto_direct_node_routes => {
                if let Some(&(port, _)) = ports.iter().find(|(_, net)| net.contains(&peer.ip)) {
                    let nh = Nexthop::gateway(IpAddr::V4(peer.ip), router_core::PortId(port));
                    out.push(AgentRoute {
                        dst: IpNet::V4(peer.pod_cidr),
                        route: Route::new(Protocol::Kernel, vec![nh]),
                        src: None,
                        mtu: None,
                        shown_as: None,
                    });
                }
            }
            RoutingMode::Native => {}
            RoutingMode::Tunnel => {
                let encap = match values.tunnel_protocol {
                    TunnelProtocol::Vxlan => Encap::Vxlan,
                    TunnelProtocol::Geneve => Encap::Geneve,
                };
                let nh = Nexthop {
                    kind: NexthopKind::Tunnel {
                        endpoint: IpAddr::V4(peer.ip),
                        encap,
                        vni: None,
                    },
                    weight: 1,
                };
                out.push(AgentRoute {
                    dst: IpNet::V4(peer.pod_cidr),
                    route: Route::new(Protocol::Kernel, vec![nh]),
                    src: Some(router_ip),
                    mtu: Some(TUNNEL_ROUTE_MTU),
                    shown_as: Some(format!("via {router_ip} dev cilium_host")),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> Vec<PeerNode> {
        [
            ("k8s-ctr", "192.168.10.100", "172.20.0.0/24"),
            ("k8s-w1", "192.168.10.101", "172.20.1.0/24"),
            ("k8s-w0", "192.168.20.100", "172.20.2.0/24"),
        ]
        .iter()
        .map(|(n, ip, c)| PeerNode {
            name: n.to_string(),
            ip: ip.parse().unwrap(),
            pod_cidr: c.parse().unwrap(),
        })
        .collect()
    }

    fn dsts(values: &Values) -> Vec<String> {
        let ports = [(1, "192.168.10.0/24".parse().unwrap())];
        let ns = nodes();
        agent_routes(
            values,
            &ns[0],
            "172.20.0.201".parse().unwrap(),
            &ports,
            9,
            &ns,
        )
        .iter()
        .map(|r| r.dst.to_string())
        .collect()
    }

    #[test]
    fn native_auto_direct_routes_only_to_nodes_on_a_shared_subnet() {
        let v = Values {
            routing_mode: RoutingMode::Native,
            auto_direct_node_routes: true,
            ..Values::default()
        };
        assert_eq!(dsts(&v), ["172.20.0.0/24", "172.20.1.0/24"]);
    }

    #[test]
    fn native_without_auto_direct_routes_has_only_its_own() {
        let v = Values {
            routing_mode: RoutingMode::Native,
            ..Values::default()
        };
        assert_eq!(dsts(&v), ["172.20.0.0/24"]);
    }

    #[test]
    fn tunnel_mode_routes_every_other_node_into_the_tunnel() {
        let v = Values::default();
        assert_eq!(
            dsts(&v),
            ["172.20.0.0/24", "172.20.1.0/24", "172.20.2.0/24"]
        );
    }
}
