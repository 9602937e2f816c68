//! From Cilium's objects to one node's [`ServiceTable`]: the frontends a
//! node serves for each `Service` and the backends its `EndpointSlice`s
//! give them, as Cilium's agent derives them.
//!
//! Owns the translation: frontends for every cluster IP, every node address
//! with the service's NodePort, every `status.loadBalancer.ingress` address
//! and every `spec.externalIPs` entry, each per service port; backends from
//! the slices labelled with the service's name, matched to the service port
//! by port name and protocol, of the frontend's address family; each
//! backend's state from its conditions (ready → active; terminating and
//! still serving → terminating; otherwise left out); local when its
//! `nodeName` is this node; the traffic policies and `ClientIP` affinity.
//! It does not allocate NodePorts ([`super::nodeport`]) or LoadBalancer
//! addresses (`cilium::lbipam`), nor handle packets.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use super::Protocol;
use super::maglev;
use super::nodeport::{NodePorts, ServiceName};
use super::table::{BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable};
use crate::cilium::Objects;
use crate::cilium::kube::{Endpoint, EndpointSlice, Service, ServicePort};

/// Why part of a service got no frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A port's protocol is not `TCP`, `UDP` or `SCTP`.
    Protocol {
        /// The service.
        service: ServiceName,
        /// The protocol it names.
        protocol: String,
    },
    /// An endpoint names a node no Node object describes: it is served,
    /// but DSR cannot dispatch to it.
    UnknownNode {
        /// The service.
        service: ServiceName,
        /// The node its EndpointSlice names.
        node: String,
    },
    /// Another service already has this frontend (the first in (namespace,
    /// name) order keeps it).
    Conflict {
        /// The service.
        service: ServiceName,
        /// The frontend.
        frontend: L3n4,
        /// The service holding it.
        holder: ServiceName,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Protocol {
                service: (ns, name),
                protocol,
            } => write!(
                f,
                "service {ns}/{name}: protocol {protocol:?} is not TCP, UDP or SCTP"
            ),
            Problem::UnknownNode {
                service: (ns, name),
                node,
            } => write!(
                f,
                "service {ns}/{name}: an endpoint is on node {node:?}, which no Node object describes"
            ),
            Problem::Conflict {
                service: (ns, name),
                frontend,
                holder: (hns, hname),
            } => write!(
                f,
                "service {ns}/{name}: frontend {}:{}/{} already belongs to {hns}/{hname}",
                frontend.addr,
                frontend.port,
                frontend.protocol.name()
            ),
        }
    }
}

/// The node the table is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeContext {
    /// Its name (`nodeName` of its endpoints).
    pub name: String,
    /// Its addresses: every one serves the NodePorts.
    pub addresses: Vec<IpAddr>,
}

/// An endpoint's backend state, or `None` when it takes no traffic.
fn state(endpoint: &Endpoint) -> Option<BackendState> {
    let c = endpoint.conditions;
    let ready = c.ready.unwrap_or(true);
    let serving = c.serving.unwrap_or(ready);
    match (c.terminating.unwrap_or(false), ready, serving) {
        (false, true, _) => Some(BackendState::Active),
        (true, _, true) => Some(BackendState::Terminating),
        _ => None,
    }
}

/// The backends `slices` give service port `port` (protocol `protocol`) on
/// `node`, each with its node's address from `nodes`; endpoints on nodes
/// `nodes` does not know are listed in `unknown`.
fn backends(
    slices: &[&EndpointSlice],
    port: &ServicePort,
    protocol: Protocol,
    node: &str,
    nodes: &BTreeMap<&str, IpAddr>,
    unknown: &mut BTreeSet<String>,
) -> Vec<BackendSpec> {
    let name = port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        let Some(target) = slice.ports.iter().find(|p| {
            p.name.as_deref().unwrap_or("") == name
                && Protocol::from_name(p.protocol.as_deref().unwrap_or("TCP")) == Some(protocol)
        }) else {
            continue;
        };
        let Some(target_port) = target.port else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let Some(state) = state(endpoint) else {
                continue;
            };
            let node_address = endpoint.node_name.as_deref().and_then(|n| {
                let found = nodes.get(n).copied();
                if found.is_none() {
                    unknown.insert(n.into());
                }
                found
            });
            for addr in &endpoint.addresses {
                out.push(BackendSpec {
                    addr: L3n4 {
                        addr: *addr,
                        port: target_port,
                        protocol,
                    },
                    state,
                    local: endpoint.node_name.as_deref() == Some(node),
                    weight: maglev::DEFAULT_WEIGHT,
                    node: node_address,
                });
            }
        }
    }
    out
}

/// The frontend addresses of `service`, with their kinds, for port index
/// `index` whose service port is `port`.
fn addresses(
    service: &Service,
    key: &ServiceName,
    index: usize,
    port: &ServicePort,
    node: &NodeContext,
    node_ports: &NodePorts,
) -> Vec<(IpAddr, u16, FrontendKind)> {
    let mut out: Vec<(IpAddr, u16, FrontendKind)> = service
        .cluster_ips()
        .into_iter()
        .map(|ip| (ip, port.port, FrontendKind::ClusterIp))
        .collect();
    if let Some(node_port) = node_ports.get(&key.0, &key.1, index) {
        out.extend(
            node.addresses
                .iter()
                .map(|a| (*a, node_port, FrontendKind::NodePort)),
        );
    }
    if service.spec.kind.as_deref() == Some("LoadBalancer") {
        let ingress = service
            .status
            .load_balancer
            .ingress
            .iter()
            .filter_map(|i| i.ip);
        out.extend(ingress.map(|ip| (ip, port.port, FrontendKind::LoadBalancer)));
    }
    out.extend(
        service
            .spec
            .external_ips
            .iter()
            .map(|ip| (*ip, port.port, FrontendKind::ExternalIp)),
    );
    out
}

/// The service table of the node named `name` as its Node object describes
/// it (every `InternalIP` serves the NodePorts): what both runtimes serve.
pub fn node_table(
    objects: &Objects,
    name: &str,
    node_ports: &NodePorts,
    maglev: &maglev::Config,
) -> (ServiceTable, Vec<Problem>) {
    let addresses = objects
        .nodes
        .get(name)
        .map(|n| {
            n.status
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let node = NodeContext {
        name: name.into(),
        addresses,
    };
    service_table(objects, &node, node_ports, maglev)
}

/// The service table of `node`: `objects`' services with the NodePorts of
/// `node_ports`, Maglev tables built with `maglev`; what could not be
/// served is in the problems, the rest is served.
pub fn service_table(
    objects: &Objects,
    node: &NodeContext,
    node_ports: &NodePorts,
    maglev: &maglev::Config,
) -> (ServiceTable, Vec<Problem>) {
    let mut specs: BTreeMap<L3n4, FrontendSpec> = BTreeMap::new();
    let mut problems = Vec::new();
    let nodes: BTreeMap<&str, IpAddr> = objects
        .nodes
        .iter()
        .filter_map(|(name, n)| Some((name.as_str(), IpAddr::V4(n.internal_ipv4()?))))
        .collect();
    for (key, service) in &objects.services {
        if service.spec.kind.as_deref() == Some("ExternalName") {
            continue;
        }
        let slices: Vec<&EndpointSlice> = objects
            .endpoint_slices
            .values()
            .filter(|s| s.service().as_ref() == Some(key))
            .collect();
        for (index, port) in service.spec.ports.iter().enumerate() {
            let Some(protocol) = Protocol::from_name(port.protocol()) else {
                problems.push(Problem::Protocol {
                    service: key.clone(),
                    protocol: port.protocol().into(),
                });
                continue;
            };
            let mut unknown = BTreeSet::new();
            let all = backends(&slices, port, protocol, &node.name, &nodes, &mut unknown);
            for n in unknown {
                let problem = Problem::UnknownNode {
                    service: key.clone(),
                    node: n,
                };
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
            for (addr, frontend_port, kind) in
                addresses(service, key, index, port, node, node_ports)
            {
                let frontend = L3n4 {
                    addr,
                    port: frontend_port,
                    protocol,
                };
                if let Some(holder) = specs.get(&frontend) {
                    problems.push(Problem::Conflict {
                        service: key.clone(),
                        frontend,
                        holder: holder.service.clone(),
                    });
                    continue;
                }
                let same_family: Vec<BackendSpec> = all
                    .iter()
                    .filter(|b| b.addr.addr.is_ipv4() == addr.is_ipv4())
                    .cloned()
                    .collect();
                specs.insert(
                    frontend,
                    FrontendSpec {
                        service: key.clone(),
                        kind,
                        external_local: service.external_traffic_local(),
                        internal_local: service.internal_traffic_local(),
                        affinity_seconds: service.client_ip_affinity_seconds(),
                        backends: same_family,
                    },
                );
            }
        }
    }
    (ServiceTable::new(maglev, specs), problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::objects::tests::parse;
    use crate::service::nodeport::{PortRange, allocate};
    use alloc::format;

    const LAB: &str = "\
apiVersion: v1
kind: Service
metadata: { name: webpod }
spec:
  type: LoadBalancer
  clusterIP: 10.96.54.159
  externalIPs: [ 192.0.2.80 ]
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  ports: [ { port: 80, targetPort: 80, nodePort: 30285 } ]
status:
  loadBalancer: { ingress: [ { ip: 172.16.1.1 } ] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: webpod-abc, labels: { kubernetes.io/service-name: webpod } }
addressType: IPv4
ports: [ { port: 80, protocol: TCP } ]
endpoints:
- { addresses: [ 10.244.1.5 ], nodeName: k8s-w1 }
- { addresses: [ 10.244.2.5 ], nodeName: k8s-w2 }
- { addresses: [ 10.244.1.6 ], nodeName: k8s-w1, conditions: { ready: false, serving: true, terminating: true } }
- { addresses: [ 10.244.1.7 ], nodeName: k8s-w1, conditions: { ready: false } }
---
apiVersion: v1
kind: Service
metadata: { name: webpod-copy }
spec:
  clusterIP: 10.96.0.99
  externalIPs: [ 192.0.2.80 ]
  ports: [ { port: 80 }, { port: 53, protocol: ICMP } ]
---
apiVersion: v1
kind: Node
metadata: { name: k8s-w1 }
status: { addresses: [ { type: InternalIP, address: 192.168.10.101 } ] }
";

    fn l3n4(addr: &str, port: u16) -> L3n4 {
        L3n4 {
            addr: addr.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn a_lab_service_becomes_frontends_with_policies_and_states() {
        let objects = parse(LAB).unwrap();
        let (ports, nodeport_problems) = allocate(&objects, PortRange::DEFAULT, 1);
        assert!(nodeport_problems.is_empty());
        let node = NodeContext {
            name: "k8s-w1".into(),
            addresses: alloc::vec!["192.168.10.101".parse().unwrap()],
        };
        let (table, problems) = service_table(&objects, &node, &ports, &maglev::Config::default());
        let kinds: Vec<(L3n4, FrontendKind)> =
            table.frontends().map(|(a, f)| (*a, f.kind)).collect();
        assert_eq!(
            kinds,
            [
                (l3n4("10.96.0.99", 80), FrontendKind::ClusterIp),
                (l3n4("10.96.54.159", 80), FrontendKind::ClusterIp),
                (l3n4("172.16.1.1", 80), FrontendKind::LoadBalancer),
                (l3n4("192.0.2.80", 80), FrontendKind::ExternalIp),
                (l3n4("192.168.10.101", 30285), FrontendKind::NodePort),
            ]
        );
        let messages: Vec<String> = problems.iter().map(|p| format!("{p}")).collect();
        assert_eq!(
            messages,
            [
                "service default/webpod: an endpoint is on node \"k8s-w2\", which no Node object describes",
                "service default/webpod-copy: frontend 192.0.2.80:80/TCP already belongs to default/webpod",
                "service default/webpod-copy: protocol \"ICMP\" is not TCP, UDP or SCTP",
            ]
        );
        let id = |a: &str| table.backend_id(&l3n4(a, 80)).unwrap();
        let (local, remote, terminating) = (id("10.244.1.5"), id("10.244.2.5"), id("10.244.1.6"));
        assert_eq!(
            table.backend_id(&l3n4("10.244.1.7", 80)),
            None,
            "not ready, not serving"
        );
        assert_eq!(
            table.backend(terminating).unwrap().state,
            BackendState::Terminating
        );
        // Where DSR dispatches to: the Node's InternalIP, unknown for k8s-w2.
        let node_of = |id| table.backend(id).unwrap().node;
        assert_eq!(node_of(local), Some("192.168.10.101".parse().unwrap()));
        assert_eq!(node_of(remote), None);
        let node_port = table.frontend(&l3n4("192.168.10.101", 30285)).unwrap();
        assert_eq!(
            node_port.external.as_ref().unwrap().active,
            [local],
            "externalTrafficPolicy: Local"
        );
        assert_eq!(node_port.internal.active, [local, remote]);
        assert_eq!(node_port.affinity_seconds, Some(10800));
        assert_eq!(node_port.internal.maglev.len(), 16381);
    }
}
