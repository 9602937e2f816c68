//! Masquerade of pod traffic leaving the node (Cilium's
//! `enableIPv4Masquerade` with `bpf.masquerade`): which new flows that are
//! not a service's are source-NATed to the node's address, and which are
//! tracked so that they are not.
//!
//! Owns the decision Cilium's `snat_v4_needs_masquerade` (`bpf/lib/nat.h`)
//! makes for a packet leaving through a native device, and the set of
//! destinations it never masquerades:
//!
//! - a packet from a local pod is masqueraded unless its destination is
//!   excluded: `ipv4NativeRoutingCIDR`, ip-masq-agent's
//!   `nonMasqueradeCIDRs`, the cluster's pod CIDRs (reached natively or
//!   through the overlay, never through a native device), this node's own
//!   addresses (delivered to its stack) and, in native routing, the other
//!   nodes' addresses (Cilium punts pod-to-remote-node traffic to the stack
//!   unless it tunnels);
//! - a reply of a connection someone outside opened to a local pod is not
//!   (Cilium's `ct_is_reply4` check): so such connections are tracked when
//!   they arrive, unless their source is excluded anyway.
//!
//! The node's address is the one Cilium calls `IPV4_MASQUERADE`, the
//! address of the device with the node's InternalIP. IPv4 only, as
//! `ipv4NativeRoutingCIDR` is; TCP and UDP (what the service stage parses).
//! Port allocation, conntrack and rewriting are the service datapath's
//! (`datapath::Service::set_masquerade`); [`action`] is allocation-free so
//! the eBPF stage decides with it too.

use core::net::{IpAddr, Ipv4Addr};

#[cfg(feature = "alloc")]
use alloc::vec::Vec;
#[cfg(feature = "alloc")]
use ipnet::Ipv4Net;

/// What a new flow that is not a service's gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: it goes on as it is, untracked.
    Pass,
    /// Source NAT to the node's address (a local pod talking to the world).
    Masquerade,
    /// Track it untranslated: someone outside opened it to a local pod, so
    /// the pod's replies are not masqueraded.
    TrackInbound,
}

/// The decision for a packet from `src` to `dst` that opens no service
/// flow; `external` when it arrived on an uplink (else from a local pod),
/// `is_pod` whether an address is a local pod's, `excluded` whether a
/// destination is never masqueraded.
#[inline(always)]
pub fn action(
    external: bool,
    src: IpAddr,
    dst: IpAddr,
    is_pod: impl Fn(Ipv4Addr) -> bool,
    excluded: impl Fn(Ipv4Addr) -> bool,
) -> Action {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (src, dst) else {
        return Action::Pass;
    };
    if external {
        if is_pod(dst) && !excluded(src) {
            Action::TrackInbound
        } else {
            Action::Pass
        }
    } else if is_pod(src) && !excluded(dst) {
        Action::Masquerade
    } else {
        Action::Pass
    }
}

/// What Cilium's settings say about masquerading, cluster-wide.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// `ipv4NativeRoutingCIDR`.
    pub native_routing_cidr: Option<Ipv4Net>,
    /// ip-masq-agent's `nonMasqueradeCIDRs` (when it is enabled).
    pub non_masquerade: Vec<Ipv4Net>,
    /// `routingMode: tunnel` (pod traffic to other nodes' addresses is then
    /// masqueraded, as it leaves outside the overlay).
    pub tunnel: bool,
}

/// One node of the cluster as masquerading sees it.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddresses {
    /// This node itself.
    pub local: bool,
    /// Its addresses (InternalIP, `cilium_host`).
    pub addrs: Vec<Ipv4Addr>,
    /// Its pod CIDRs.
    pub pods: Vec<Ipv4Net>,
}

/// One node's masquerading: its address, its pods, what is never
/// masqueraded.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Masquerade {
    addr: Ipv4Addr,
    pods: Vec<Ipv4Net>,
    exclude: Vec<Ipv4Net>,
}

#[cfg(feature = "alloc")]
impl Masquerade {
    /// The masquerading of the node that is `local` among `nodes`, to
    /// `addr`, under `settings`.
    pub fn for_node(addr: Ipv4Addr, settings: &Settings, nodes: &[NodeAddresses]) -> Self {
        let mut exclude: Vec<Ipv4Net> = settings.native_routing_cidr.into_iter().collect();
        exclude.extend(&settings.non_masquerade);
        let mut pods = Vec::new();
        for node in nodes {
            exclude.extend(&node.pods);
            if node.local {
                pods.extend(&node.pods);
            }
            if node.local || !settings.tunnel {
                exclude.extend(node.addrs.iter().map(|a| Ipv4Net::from(*a)));
            }
        }
        exclude.push(Ipv4Net::from(addr));
        exclude.sort();
        exclude.dedup();
        pods.sort();
        pods.dedup();
        Masquerade {
            addr,
            pods,
            exclude,
        }
    }

    /// The address pod traffic is masqueraded to.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// This node's pod CIDRs.
    pub fn pods(&self) -> &[Ipv4Net] {
        &self.pods
    }

    /// The destinations never masqueraded, in order.
    pub fn exclusions(&self) -> &[Ipv4Net] {
        &self.exclude
    }

    /// [`action`] with this node's pods and exclusions.
    pub fn action(&self, external: bool, src: IpAddr, dst: IpAddr) -> Action {
        let is_pod = |a: Ipv4Addr| self.pods.iter().any(|p| p.contains(&a));
        let excluded = |a: Ipv4Addr| self.exclude.iter().any(|p| p.contains(&a));
        action(external, src, dst, is_pod, excluded)
    }
}

#[cfg(feature = "serde")]
impl Masquerade {
    /// `node`'s masquerading in the cluster `objects` describe (every
    /// Node's IPv4 InternalIPs, its pod CIDRs as `Objects::pod_cidrs`
    /// gives them), to its first IPv4 InternalIP; `None` when it has none.
    pub fn for_objects(
        objects: &crate::cilium::Objects,
        node: &str,
        settings: &Settings,
    ) -> Option<Self> {
        let addr = objects.nodes.get(node)?.internal_ipv4()?;
        let nodes: Vec<NodeAddresses> = objects
            .nodes
            .iter()
            .map(|(name, n)| NodeAddresses {
                local: name == node,
                addrs: (n.status.addresses.iter())
                    .filter(|a| a.kind == "InternalIP")
                    .filter_map(|a| a.address.parse().ok())
                    .collect(),
                pods: (objects.pod_cidrs(name).into_iter())
                    .filter_map(|c| match c {
                        ipnet::IpNet::V4(c) => Some(c),
                        ipnet::IpNet::V6(_) => None,
                    })
                    .collect(),
            })
            .collect();
        Some(Masquerade::for_node(addr, settings, &nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Two nodes: 192.168.10.1 (10.0.1.0/24, this one) and .2 (10.0.2.0/24).
    fn cluster(native: Option<&str>, tunnel: bool) -> Masquerade {
        let settings = Settings {
            native_routing_cidr: native.map(net),
            non_masquerade: alloc::vec![net("10.1.0.0/16")],
            tunnel,
        };
        let nodes = [
            NodeAddresses {
                local: true,
                addrs: alloc::vec!["192.168.10.1".parse().unwrap()],
                pods: alloc::vec![net("10.0.1.0/24")],
            },
            NodeAddresses {
                local: false,
                addrs: alloc::vec!["192.168.10.2".parse().unwrap()],
                pods: alloc::vec![net("10.0.2.0/24")],
            },
        ];
        Masquerade::for_node("192.168.10.1".parse().unwrap(), &settings, &nodes)
    }

    #[test]
    fn pods_talking_to_the_world_are_masqueraded_and_in_cluster_traffic_is_not() {
        let m = cluster(Some("10.0.0.0/16"), false);
        let pod = ip("10.0.1.5");
        assert_eq!(m.action(false, pod, ip("8.8.8.8")), Action::Masquerade);
        for keep in [
            "10.0.2.9",
            "10.0.1.6",
            "10.1.3.4",
            "192.168.10.1",
            "192.168.10.2",
        ] {
            assert_eq!(m.action(false, pod, ip(keep)), Action::Pass, "{keep}");
        }
        // Not from a local pod (the host, a forwarded packet): not masqueraded.
        assert_eq!(m.action(false, ip("10.0.2.9"), ip("8.8.8.8")), Action::Pass);
        // IPv6 is not masqueraded.
        assert_eq!(
            m.action(false, ip("fd00::5"), ip("2001:db8::1")),
            Action::Pass
        );
    }

    #[test]
    fn tunnel_mode_masquerades_traffic_to_other_nodes_but_not_to_their_pods() {
        let m = cluster(None, true);
        let pod = ip("10.0.1.5");
        assert_eq!(m.action(false, pod, ip("192.168.10.2")), Action::Masquerade);
        assert_eq!(m.action(false, pod, ip("192.168.10.1")), Action::Pass);
        assert_eq!(m.action(false, pod, ip("10.0.2.9")), Action::Pass);
    }

    #[test]
    fn connections_from_outside_to_local_pods_are_tracked() {
        let m = cluster(Some("10.0.0.0/16"), false);
        let outside = ip("203.0.113.7");
        assert_eq!(
            m.action(true, outside, ip("10.0.1.5")),
            Action::TrackInbound
        );
        // From another node's pod: its replies are not masqueraded anyway.
        assert_eq!(m.action(true, ip("10.0.2.9"), ip("10.0.1.5")), Action::Pass);
        // To the node or another node's pods: not this node's to track.
        assert_eq!(m.action(true, outside, ip("192.168.10.1")), Action::Pass);
        assert_eq!(m.action(true, outside, ip("10.0.2.9")), Action::Pass);
    }
}
