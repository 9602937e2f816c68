//! Hubble for the lab: the Kubernetes nodes' flow events, named as each
//! node's ipcache would name their addresses (and the endpoints a node
//! lists, `cilium-dbg endpoint list`); and each step's BGP events.
//!
//! Owns collecting the nodes' events (in time order, ties in node-name
//! order), filling the lab's ipcache (its pods and nodes), the socket
//! load-balancer's translation events, and keeping the previous step's
//! flows (for `observe`) and, when asked, all of them (for `--flows`).
//! What makes an event, how an address is named from the observing node
//! and how flows are printed are router-core's ([`router_core::flow`],
//! [`router_core::cilium::ipcache`]).

use std::net::{IpAddr, SocketAddr};

use router_core::cilium::ipcache::IpCache;
use router_core::cilium::table::EndpointRow;
use router_core::flow::hubble::{Endpoint, Observed};
use router_core::flow::{Flow, L4, Observation, Packet, Point, Verdict};

use super::workloads::PodInfo;
use super::{Cluster, Role};

/// The flows a run keeps.
#[derive(Debug, Default)]
pub struct Flows {
    /// The flows of the last step that was not an `observe`.
    pub last: Vec<Observed>,
    /// Every flow of the run, when recorded (`--flows FILE`).
    pub all: Option<Vec<Observed>>,
    /// What the watched segments carried during the last step.
    pub captures: std::collections::BTreeMap<
        crate::segment::SegmentId,
        Vec<(smoltcp::time::Instant, Vec<u8>)>,
    >,
    /// What BGP did on every host during the last step (time, host, event).
    pub bgp: Vec<(
        smoltcp::time::Instant,
        String,
        nexthop_netstack::apps::bgp::BgpEvent,
    )>,
}

impl Cluster {
    /// Close a step: the nodes' flow events since the previous step become
    /// the ones `observe` shows (and are added to the record), and every
    /// host's BGP events the step's.
    pub fn close_step(&mut self) {
        let flows = self.take_flows();
        if let Some(all) = &mut self.flows.all {
            all.extend(flows.iter().cloned());
        }
        self.flows.last = flows;
        let hosts: Vec<(String, crate::node::NodeId)> =
            self.hosts.iter().map(|(n, &id)| (n.clone(), id)).collect();
        self.flows.bgp.clear();
        for (name, id) in hosts {
            for (at, event) in self.engine.node_mut(id).host.take_bgp_events() {
                self.flows.bgp.push((at, name.clone(), event));
            }
        }
        self.flows.bgp.sort_by_key(|e| e.0);
        let watched: Vec<_> = self.flows.captures.keys().copied().collect();
        for seg in watched {
            let frames = self.engine.take_watched(seg);
            self.flows.captures.insert(seg, frames);
        }
    }

    /// The segment a `capture` step names (a segment, or the one `HOST:IF`
    /// is on) and, for an interface, its MAC: tcpdump on an interface sees
    /// the frames to and from it and the broadcasts.
    pub fn capture_point(
        &self,
        target: &str,
    ) -> Option<(
        crate::segment::SegmentId,
        Option<smoltcp::wire::EthernetAddress>,
    )> {
        match crate::lab::topology::EndpointRef::parse(target) {
            Some(e) => {
                let endpoint = self.interface(&e)?;
                let host = &self.host(&e.node)?.host;
                let mac = host.ports().iter().find(|p| p.name == e.interface)?.mac;
                Some((self.engine.segment_of(endpoint)?, Some(mac)))
            }
            None => Some((self.engine.segment_named(target)?, None)),
        }
    }

    /// Start keeping the frames of every segment a `capture` step names.
    pub(super) fn watch_captures(&mut self) {
        let steps = self.lab.scenario.steps.clone();
        for step in steps {
            if let crate::lab::Action::Capture { target, .. } = &step.action
                && let Some((seg, _)) = self.capture_point(target)
            {
                self.engine.watch(seg);
                self.flows.captures.entry(seg).or_default();
            }
        }
    }

    /// The Kubernetes nodes' flow events since the last call, named.
    fn take_flows(&mut self) -> Vec<Observed> {
        let nodes: Vec<(String, crate::node::NodeId)> = self
            .hosts
            .iter()
            .filter(|&(_, &id)| self.engine.node(id).role == Role::K8sNode)
            .map(|(name, &id)| (name.clone(), id))
            .collect();
        let mut flows = Vec::new();
        let mut ipcache = None;
        for (name, id) in nodes {
            for flow in self.engine.node_mut(id).host.take_flows() {
                let ipcache = ipcache.get_or_insert_with(|| self.ipcache());
                flows.push(Observed {
                    source: ipcache.endpoint(&name, flow.packet.src),
                    destination: ipcache.endpoint(&name, flow.packet.dst),
                    node: name.clone(),
                    flow,
                });
            }
        }
        flows.sort_by_key(|o| o.flow.micros);
        flows
    }

    /// The cluster's ipcache: its pods and its Kubernetes nodes' addresses.
    fn ipcache(&self) -> IpCache {
        let mut cache = IpCache::new();
        for pod in self.workloads.pods() {
            cache.insert_pod(IpAddr::V4(pod.ip), self.pod_endpoint(pod));
        }
        for (name, &id) in &self.hosts {
            let h = self.engine.node(id);
            if h.role == Role::K8sNode {
                for addr in h.host.addresses() {
                    cache.insert_node(addr, name);
                }
            }
        }
        cache
    }

    fn pod_endpoint(&self, pod: &PodInfo) -> Endpoint {
        let mut labels: Vec<String> = pod
            .labels
            .iter()
            .map(|(k, v)| format!("k8s:{k}={v}"))
            .collect();
        labels.push(format!("k8s:io.kubernetes.pod.namespace={}", pod.namespace));
        Endpoint {
            identity: self.identities.get(&pod.labels).copied().unwrap_or(0),
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            labels,
        }
    }

    /// `node`'s endpoints as `cilium-dbg endpoint list` lists them: its
    /// pods and its own `reserved:host` endpoint. IDs are stable per pod
    /// name (Cilium draws them at random), distinct on the node.
    pub fn endpoint_rows(&self, node: &str) -> Result<Vec<EndpointRow>, String> {
        if self.workloads.node(node).is_none() {
            return Err(format!("no k8s-node named {node:?}"));
        }
        let host = EndpointRow::host(node, &Default::default());
        let mut used = std::collections::BTreeSet::from([host.id]);
        let mut id_for = |name: &str| {
            let id = router_core::cilium::table::endpoint_id(name, &used);
            used.insert(id);
            id
        };
        let mut rows = vec![host];
        for pod in self.workloads.pods().filter(|p| p.node == node) {
            let e = self.pod_endpoint(pod);
            rows.push(EndpointRow {
                id: id_for(&pod.name),
                identity: e.identity,
                labels: e.labels,
                ipv4: Some(pod.ip),
                ipv6: None,
                status: "ready".into(),
            });
        }
        Ok(rows)
    }

    /// The socket load-balancer's events for `client`'s connect to the
    /// service `frontend`, translated to `backend`: `pre-xlate-fwd TRACED`
    /// and `post-xlate-fwd TRANSLATED`, on the client's node.
    pub fn record_socket_translation(
        &mut self,
        client: &PodInfo,
        frontend: SocketAddr,
        backend: SocketAddr,
        udp: bool,
    ) {
        let Some(id) = self.host_id(&client.node) else {
            return;
        };
        let micros = self.engine.now().total_micros();
        let event = |point, verdict, to: SocketAddr| Flow {
            micros,
            observation: Observation {
                point: Some(point),
                verdict,
            },
            packet: Packet {
                src: IpAddr::V4(client.ip),
                dst: to.ip(),
                l4: if udp {
                    L4::Udp {
                        src: 0,
                        dst: to.port(),
                    }
                } else {
                    L4::Tcp {
                        src: 0,
                        dst: to.port(),
                        flags: 0,
                    }
                },
            },
            reply: None,
        };
        let host = &mut self.engine.node_mut(id).host;
        host.record_flow(event(Point::PreXlateFwd, Verdict::Traced, frontend));
        host.record_flow(event(Point::PostXlateFwd, Verdict::Translated, backend));
    }
}
