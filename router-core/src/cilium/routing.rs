//! The routes the Cilium agent installs on a node for its routing mode,
//! for both runtimes (the simulator's nodes and the node agent).
//!
//! Owns the rule set, not the FIB: given the nodes and this node's connected
//! subnets, say which routes exist — the own pod CIDR via `cilium_host` (whose
//! address is the `cilium_host` port's, so its /32 is a connected route);
//! with native routing and `autoDirectNodeRoutes`, other nodes' pod CIDRs via
//! those nodes when they share a subnet; with tunnel routing, every other
//! node's pod CIDR into the tunnel (`mtu 1450`). Pods' own /32 routes are the
//! runtime's business.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use crate::fib::{Encap, Nexthop, NexthopKind, Protocol, Route};
use crate::wire::layout::ENCAP_OVERHEAD;

/// Cilium's `routingMode` (with `autoDirectNodeRoutes` and `tunnelProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingMode {
    /// `native`: pods' addresses on the wire; with `autoDirectNodeRoutes`,
    /// routes to the pod CIDRs of nodes on a shared subnet.
    Native {
        /// `autoDirectNodeRoutes`.
        auto_direct_node_routes: bool,
    },
    /// `tunnel`, with this `tunnelProtocol`.
    Tunnel(Encap),
}

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

/// The routes node `me` gets in `mode`. `ports` are its underlay interfaces
/// (index, subnet); `cilium_host` is the index of its `cilium_host` port.
pub fn agent_routes(
    mode: RoutingMode,
    me: &PeerNode,
    router_ip: Ipv4Addr,
    ports: &[(u16, Ipv4Net)],
    cilium_host: u16,
    nodes: &[PeerNode],
) -> Vec<AgentRoute> {
    let host_port = crate::PortId(cilium_host);
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
        match mode {
            RoutingMode::Native {
                auto_direct_node_routes: true,
            } => {
                if let Some(&(port, _)) = ports.iter().find(|(_, net)| net.contains(&peer.ip)) {
                    let nh = Nexthop::gateway(IpAddr::V4(peer.ip), crate::PortId(port));
                    out.push(AgentRoute {
                        dst: IpNet::V4(peer.pod_cidr),
                        route: Route::new(Protocol::Kernel, vec![nh]),
                        src: None,
                        mtu: None,
                        shown_as: None,
                    });
                }
            }
            RoutingMode::Native { .. } => {}
            RoutingMode::Tunnel(encap) => {
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
    use alloc::string::ToString;

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

    fn dsts(mode: RoutingMode) -> Vec<String> {
        let ports = [(1, "192.168.10.0/24".parse().unwrap())];
        let ns = nodes();
        agent_routes(
            mode,
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
        let mode = RoutingMode::Native {
            auto_direct_node_routes: true,
        };
        assert_eq!(dsts(mode), ["172.20.0.0/24", "172.20.1.0/24"]);
    }

    #[test]
    fn native_without_auto_direct_routes_has_only_its_own() {
        let mode = RoutingMode::Native {
            auto_direct_node_routes: false,
        };
        assert_eq!(dsts(mode), ["172.20.0.0/24"]);
    }

    #[test]
    fn tunnel_mode_routes_every_other_node_into_the_tunnel() {
        assert_eq!(
            dsts(RoutingMode::Tunnel(Encap::Vxlan)),
            ["172.20.0.0/24", "172.20.1.0/24", "172.20.2.0/24"]
        );
    }
}
