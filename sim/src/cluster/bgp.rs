//! Cilium's BGP control plane on the Kubernetes nodes, as the agent runs it:
//! the BGP objects applied (`CiliumBGPClusterConfig`, `CiliumBGPPeerConfig`,
//! `CiliumBGPAdvertisement`) and the cluster's nodes and services go through
//! router-core's [`desired`] for each node, and the node's BGP speaker
//! (router-core's sessions and RIB over the host's smoltcp TCP) is brought
//! in line: instance, peers (a changed peer restarts its session), the
//! prefixes each peer may receive (an export policy per peer, as Cilium's
//! per-advertisement export policies) and the originated prefixes.
//!
//! Received routes are not installed in the node's FIB, as Cilium does;
//! a k8s-node's `import-bgp-routes: true` in the topology installs them.
//! The `bgp peers` / `bgp routes` tables are router-core's
//! [`router_core::cilium::table`], filled from the speakers. Ages of
//! advertised and received routes count from their session's
//! establishment: the RIB keeps no per-path time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use nexthop_netstack::apps::bgp::PeerSpec;
use router_core::bgp::fsm::{Config, State};
use router_core::bgp::rib::{PeerConfig, RibConfig};
use router_core::cilium::bgp::Afi;
use router_core::cilium::desired::RouteAttributes;
use router_core::cilium::export::{export_policy, originated_attributes};
use router_core::cilium::kube::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeSpec, NodeStatus, Service,
    ServiceSpec, ServiceStatus,
};
use router_core::cilium::meta::ObjectMeta;
use router_core::cilium::status::{
    FamilyStatus, MessageCounts, PeerStatus, RouteStatus, Table, render_attributes,
};
use router_core::cilium::{DesiredPeer, LocalEndpoints, Object, Objects, desired, session};
use smoltcp::time::Instant;

use super::Cluster;

/// The BGP objects applied and what each node runs.
#[derive(Debug, Default)]
pub struct ControlPlane {
    objects: Objects,
    nodes: BTreeMap<String, Running>,
}

/// What one node's speaker runs.
#[derive(Debug, Clone)]
struct Running {
    local_asn: u32,
    router_id: Ipv4Addr,
    /// Peers by address, with their settings (routes left out).
    peers: BTreeMap<IpAddr, DesiredPeer>,
    /// The prefixes each peer may receive.
    exports: BTreeMap<IpAddr, BTreeSet<IpNet>>,
    /// Originated prefixes, their attributes and since when.
    originated: BTreeMap<IpNet, (RouteAttributes, Instant)>,
}

impl ControlPlane {
    /// Take in a BGP object (replacing one of the same kind and name).
    pub fn apply(&mut self, object: &Object) {
        self.objects.insert(object.clone());
    }

    /// Forget a BGP object.
    pub fn delete(&mut self, object: &Object) {
        let o = &mut self.objects;
        match object {
            Object::ClusterConfig(c) => drop(o.cluster_configs.remove(&c.metadata.name)),
            Object::PeerConfig(c) => drop(o.peer_configs.remove(&c.metadata.name)),
            Object::Advertisement(c) => drop(o.advertisements.remove(&c.metadata.name)),
            Object::Node(_) | Object::Service(_) | Object::Secret(_) | Object::CiliumNode(_) => {}
        }
    }
}

/// The session settings the agent derives from a desired peer (MD5 is not simulated).
fn session_config(
    node: &str,
    local_asn: u32,
    router_id: Ipv4Addr,
    peer: &DesiredPeer,
) -> Result<Config, String> {
    if peer.password.is_some() {
        return Err(format!(
            "peer {} ({}): TCP MD5 (authSecretRef) is not simulated",
            peer.name, peer.address
        ));
    }
    let seed = session::seed(&format!("{node}/{}", peer.name));
    peer.session_config(local_asn, router_id, false, seed)
}

fn without_routes(peer: &DesiredPeer) -> DesiredPeer {
    let mut p = peer.clone();
    for f in &mut p.families {
        f.routes.clear();
    }
    p
}

impl Cluster {
    /// Take in or forget a BGP object and bring every node in line.
    pub(super) fn apply_bgp(&mut self, object: &Object, delete: bool) -> Result<(), String> {
        if delete {
            self.bgp.delete(object);
        } else {
            self.bgp.apply(object);
        }
        self.reconcile_bgp()
    }

    /// The objects `desired` reads: the BGP objects plus the cluster's
    /// nodes (labels, InternalIP, pod CIDR) and services (labels, type,
    /// traffic policy, LB-IPAM's ingress addresses).
    fn bgp_objects(&self) -> Objects {
        let mut objects = self.bgp.objects.clone();
        for n in self.workloads.nodes() {
            let addresses = self
                .address_of(&n.name)
                .map(|a| NodeAddress {
                    kind: "InternalIP".into(),
                    address: a.to_string(),
                })
                .into_iter()
                .collect();
            objects.insert(Object::Node(Node {
                metadata: ObjectMeta {
                    labels: n.labels.clone(),
                    ..ObjectMeta::named(&n.name)
                },
                spec: NodeSpec {
                    pod_cidrs: vec![IpNet::V4(n.ipam.cidr())],
                },
                status: NodeStatus { addresses },
            }));
        }
        for svc in self.workloads.services() {
            let ingress = self
                .lb
                .addresses(&svc.namespace, &svc.name)
                .into_iter()
                .map(|ip| LoadBalancerIngress { ip: Some(ip) })
                .collect();
            objects.insert(Object::Service(Service {
                metadata: ObjectMeta {
                    namespace: Some(svc.namespace.clone()),
                    labels: svc.labels.clone(),
                    ..ObjectMeta::named(&svc.name)
                },
                spec: ServiceSpec {
                    kind: Some(svc.kind.clone()),
                    cluster_ip: Some(svc.cluster_ip.to_string()),
                    external_traffic_policy: Some(
                        if svc.external_local {
                            "Local"
                        } else {
                            "Cluster"
                        }
                        .into(),
                    ),
                    ..ServiceSpec::default()
                },
                status: ServiceStatus {
                    load_balancer: LoadBalancerStatus { ingress },
                },
            }));
        }
        objects
    }

    /// The services with a ready endpoint on `node`.
    fn local_endpoints(&self, node: &str) -> LocalEndpoints {
        self.workloads
            .services()
            .filter(|svc| self.workloads.endpoints(svc).iter().any(|p| p.node == node))
            .map(|svc| (svc.namespace.clone(), svc.name.clone()))
            .collect()
    }

    /// Bring every node's speaker in line with the objects.
    pub(super) fn reconcile_bgp(&mut self) -> Result<(), String> {
        let objects = self.bgp_objects();
        let names: Vec<String> = self
            .workloads
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        for name in names {
            let d = desired(&objects, &name, &self.local_endpoints(&name));
            self.reconcile_node(&name, d.router_id, d.instances.first())?;
        }
        Ok(())
    }

    fn reconcile_node(
        &mut self,
        name: &str,
        router_id: Option<Ipv4Addr>,
        want: Option<&router_core::cilium::DesiredInstance>,
    ) -> Result<(), String> {
        let now = self.engine.now();
        let id = self.hosts[name];
        let install = self
            .lab
            .topology
            .nodes
            .get(name)
            .is_some_and(|n| n.import_bgp_routes);
        let current = self.bgp.nodes.remove(name);
        let host = &mut self.engine.node_mut(id).host;
        let Some(instance) = want else {
            if let Some(c) = current {
                for addr in c.peers.keys() {
                    host.bgp_remove_peer(now, *addr);
                }
                host.bgp_stop(now);
            }
            self.engine.wake_node(id);
            return Ok(());
        };
        let router_id = router_id.ok_or_else(|| format!("node {name} has no InternalIP"))?;
        let mut running = match current {
            Some(c) if c.local_asn == instance.local_asn && c.router_id == router_id => c,
            previous => {
                if let Some(c) = previous {
                    for addr in c.peers.keys() {
                        host.bgp_remove_peer(now, *addr);
                    }
                }
                let mut rib = RibConfig::new(instance.local_asn, router_id);
                rib.install = install;
                host.bgp_start(now, rib);
                Running {
                    local_asn: instance.local_asn,
                    router_id,
                    peers: BTreeMap::new(),
                    exports: BTreeMap::new(),
                    originated: BTreeMap::new(),
                }
            }
        };
        let wanted: BTreeMap<IpAddr, &DesiredPeer> =
            instance.peers.iter().map(|p| (p.address, p)).collect();
        let gone: Vec<IpAddr> = running
            .peers
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            host.bgp_remove_peer(now, addr);
            running.peers.remove(&addr);
            running.exports.remove(&addr);
        }
        let mut routes: BTreeMap<IpNet, RouteAttributes> = BTreeMap::new();
        for (&addr, peer) in &wanted {
            let prefixes: BTreeSet<IpNet> = peer
                .families
                .iter()
                .flat_map(|f| f.routes.keys().copied())
                .collect();
            for f in &peer.families {
                routes.extend(f.routes.iter().map(|(p, a)| (*p, a.clone())));
            }
            let settings = without_routes(peer);
            if running.peers.get(&addr) != Some(&settings) {
                let session = session_config(name, instance.local_asn, router_id, peer)?;
                let local_v4 = match host.source_address(addr) {
                    Some(IpAddr::V4(v4)) => Some(v4),
                    _ => None,
                };
                let mut rib = PeerConfig::new(addr, local_v4);
                rib.export = export_policy(&prefixes);
                host.bgp_add_peer(
                    now,
                    PeerSpec {
                        session,
                        rib,
                        import: true,
                    },
                );
                running.peers.insert(addr, settings);
            } else if running.exports.get(&addr) != Some(&prefixes) {
                host.bgp_set_export_policy(now, addr, export_policy(&prefixes));
            }
            running.exports.insert(addr, prefixes);
        }
        let withdrawn: Vec<IpNet> = running
            .originated
            .keys()
            .filter(|p| !routes.contains_key(p))
            .copied()
            .collect();
        for prefix in withdrawn {
            host.bgp_withdraw(now, prefix);
            running.originated.remove(&prefix);
        }
        for (prefix, attrs) in routes {
            if running.originated.get(&prefix).map(|(a, _)| a) != Some(&attrs) {
                host.bgp_originate(now, prefix, originated_attributes(&attrs));
                running.originated.insert(prefix, (attrs, now));
            }
        }
        self.bgp.nodes.insert(name.to_string(), running);
        self.engine.wake_node(id);
        Ok(())
    }

    /// `cilium bgp peers`: every node's peers, nodes in name order.
    pub fn bgp_peers(&self) -> Vec<PeerStatus> {
        let now = self.engine.now();
        let mut out = Vec::new();
        for (node, running) in &self.bgp.nodes {
            let Some(speaker) = self.host(node).and_then(|h| h.host.bgp()) else {
                continue;
            };
            for (addr, desired) in &running.peers {
                let Some(peer) = speaker.peers().get(addr) else {
                    continue;
                };
                let session = peer.session();
                let rib = speaker.rib();
                let families = desired
                    .families
                    .iter()
                    .map(|f| {
                        let v4 = f.afi == Afi::Ipv4;
                        let count = |p: &IpNet| p.addr().is_ipv4() == v4;
                        FamilyStatus {
                            afi: if v4 { "ipv4" } else { "ipv6" }.into(),
                            safi: "unicast".into(),
                            received: rib
                                .adj_rib_in(peer.rib_id())
                                .filter(|(p, _)| count(p))
                                .count(),
                            advertised: rib
                                .adj_rib_out(peer.rib_id())
                                .filter(|(p, _)| count(p))
                                .count(),
                        }
                    })
                    .collect();
                let state = session.state();
                out.push(PeerStatus {
                    node: node.clone(),
                    instance: String::new(),
                    name: desired.name.clone(),
                    local_asn: running.local_asn,
                    peer_asn: desired
                        .peer_asn
                        .or_else(|| session.negotiated().map(|n| n.peer_as)),
                    peer_address: *addr,
                    state: state.name().to_string(),
                    uptime_secs: (state == State::Established)
                        .then(|| session.uptime(now).map(|d| d.secs()))
                        .flatten(),
                    families,
                    messages_received: MessageCounts::from(&session.stats().received),
                    messages_sent: MessageCounts::from(&session.stats().sent),
                    last_notification: None,
                });
            }
        }
        out
    }

    /// `cilium bgp routes TABLE ipv4 unicast`: every node's routes of the
    /// table, nodes in name order.
    pub fn bgp_routes(&self, table: Table) -> Vec<RouteStatus> {
        let now = self.engine.now();
        let mut out = Vec::new();
        for (node, running) in &self.bgp.nodes {
            let Some(speaker) = self.host(node).and_then(|h| h.host.bgp()) else {
                continue;
            };
            let route = |peer: Option<IpAddr>,
                         prefix: IpNet,
                         next_hop: IpAddr,
                         age: u64,
                         attrs: Vec<String>,
                         stale: bool| RouteStatus {
                table,
                node: node.clone(),
                vrouter: running.local_asn,
                peer,
                prefix,
                next_hop,
                age_secs: age,
                attrs,
                stale,
            };
            if table == Table::Available {
                for (prefix, (attrs, since)) in &running.originated {
                    let nh = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
                    let shown = render_attributes(&originated_attributes(attrs), nh);
                    out.push(route(
                        None,
                        *prefix,
                        nh,
                        (now - *since).secs(),
                        shown,
                        false,
                    ));
                }
                continue;
            }
            for (addr, peer) in speaker.peers() {
                let age = peer.session().uptime(now).map_or(0, |d| d.secs());
                let rib = speaker.rib();
                if table == Table::Received {
                    for (prefix, path) in rib.adj_rib_in(peer.rib_id()) {
                        let nh = path.attrs.next_hop_addr();
                        let shown = render_attributes(&path.attrs.attributes, nh);
                        out.push(route(Some(*addr), prefix, nh, age, shown, path.stale));
                    }
                } else {
                    for (prefix, attrs) in rib.adj_rib_out(peer.rib_id()) {
                        let nh = attrs.next_hop_addr();
                        let shown = render_attributes(&attrs.attributes, nh);
                        out.push(route(Some(*addr), prefix, nh, age, shown, false));
                    }
                }
            }
        }
        out
    }
}
