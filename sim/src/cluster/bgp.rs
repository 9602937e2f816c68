//! Cilium's BGP control plane on the Kubernetes nodes: each k8s-node host
//! runs router-core's [`NodeBgp`](router_core::cilium::node::NodeBgp)
//! (through netstack's BGP on the host's smoltcp TCP), and this module only
//! translates the cluster into the objects it reads — the Cilium objects
//! applied (`CiliumBGPClusterConfig`, `CiliumBGPPeerConfig`,
//! `CiliumBGPAdvertisement`, LB-IPAM pools), and the cluster's Nodes,
//! Services (with LB-IPAM's ingress addresses) and EndpointSlices (from the
//! pods the services select) — and collects the status the nodes report for
//! `bgp peers` / `bgp routes`. Every decision (instances, peers, restarts,
//! what each peer is sent, traffic policies) is router-core's.
//!
//! Received routes are not installed in the node's FIB, as Cilium does; a
//! k8s-node's `import-bgp-routes: true` in the topology installs them.

use std::collections::BTreeMap;

use ipnet::IpNet;
use router_core::cilium::kube::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice, Node, NodeAddress, NodeSpec,
    NodeStatus, SERVICE_NAME_LABEL,
};
use router_core::cilium::lbipam::with_ingress;
use router_core::cilium::meta::ObjectMeta;
use router_core::cilium::node::NodeOptions;
use router_core::cilium::status::{NodeConfigStatus, PeerStatus, RouteStatus, Table};
use router_core::cilium::{Object, Objects};

use super::Cluster;

impl Cluster {
    /// The objects the nodes' control planes read: the Cilium objects plus the
    /// cluster's nodes (labels, InternalIP, pod CIDR), services (with the
    /// ingress addresses router-core's LB-IPAM decided) and one
    /// EndpointSlice per service (its pods, each with its node, and the
    /// service's target ports).
    pub(super) fn node_objects(&self) -> Objects {
        let mut objects = self.cilium.clone();
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
            objects.insert(Object::Service(svc.clone()));
            let endpoints = self
                .workloads
                .endpoints(svc)
                .into_iter()
                .map(|pod| Endpoint {
                    addresses: vec![pod.ip.into()],
                    conditions: EndpointConditions {
                        ready: Some(self.endpoints_ready_on(&pod.node)),
                        ..EndpointConditions::default()
                    },
                    node_name: Some(pod.node.clone()),
                    zone: None,
                })
                .collect();
            objects.insert(Object::EndpointSlice(EndpointSlice {
                metadata: ObjectMeta {
                    namespace: Some(svc.namespace().into()),
                    labels: BTreeMap::from([(
                        SERVICE_NAME_LABEL.into(),
                        svc.metadata.name.clone(),
                    )]),
                    ..ObjectMeta::named(&svc.metadata.name)
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: svc
                    .spec
                    .ports
                    .iter()
                    .map(|sp| EndpointPort {
                        name: sp.name.clone(),
                        port: Some(super::workloads::target_port(sp)),
                        protocol: sp.protocol.clone(),
                    })
                    .collect(),
            }));
        }
        with_ingress(&objects, self.lb.decisions())
    }

    /// The first problem a node's control plane found in the BGP objects:
    /// a lab is a test, so the step (or the lab's start) that leaves one
    /// fails. Objects are applied one by one, as `kubectl apply` does, so a
    /// reference may dangle until the manifest's later documents arrive:
    /// this is checked once a whole manifest is in.
    pub fn check_bgp(&self) -> Result<(), String> {
        for name in self.node_names() {
            let node = self.host(&name).and_then(|h| h.host.bgp()?.node());
            if let Some(issue) = node.and_then(|n| n.issues().first()) {
                return Err(format!("node {name}: {issue}"));
            }
        }
        Ok(())
    }

    /// Bring every node's BGP control plane in line with the objects.
    pub(super) fn reconcile_bgp(&mut self, objects: &Objects) {
        let now = self.engine.now();
        let status_report = self.lab.values.bgp_control_plane.status_report.enabled;
        let names: Vec<String> = self
            .workloads
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        for name in names {
            let id = self.hosts[&name];
            let install = self
                .lab
                .topology
                .nodes
                .get(&name)
                .is_some_and(|n| n.import_bgp_routes);
            let host = &mut self.engine.node_mut(id).host;
            if host.bgp().and_then(|b| b.node()).is_none() {
                host.bgp_start_node(
                    now,
                    NodeOptions {
                        install,
                        tcp_md5: false,
                        status_report,
                        ..NodeOptions::new(&name)
                    },
                );
            }
            host.bgp_reconcile(now, objects);
            self.engine.wake_node(id);
        }
    }

    /// `cilium bgp peers`: every node's peers, nodes in name order.
    pub fn bgp_peers(&self) -> Vec<PeerStatus> {
        let now = self.engine.now();
        self.node_names()
            .iter()
            .filter_map(|n| self.host(n)?.host.bgp()?.node())
            .flat_map(|node| node.peers(now))
            .collect()
    }

    /// `cilium bgp routes TABLE ipv4 unicast`: every node's routes of the
    /// table, nodes in name order.
    pub fn bgp_routes(&self, table: Table) -> Vec<RouteStatus> {
        let now = self.engine.now();
        self.node_names()
            .iter()
            .filter_map(|n| self.host(n)?.host.bgp()?.node())
            .flat_map(|node| node.routes(now))
            .filter(|r| r.table == table)
            .collect()
    }

    /// `kubectl get ciliumbgpnodeconfig NODE -o json`'s status, when the
    /// node runs BGP.
    pub fn bgp_node_config(&self, node: &str) -> Option<NodeConfigStatus> {
        let bgp = self.host(node)?.host.bgp()?.node()?;
        let selected = bgp.speakers().next().is_some();
        selected.then(|| bgp.node_config_status(self.engine.now()))
    }

    /// The Kubernetes nodes' names, sorted.
    pub(super) fn node_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .workloads
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        names.sort();
        names
    }
}
