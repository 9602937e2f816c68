//! A lab brought to life: hosts, links and Kubernetes workloads on the engine.
//!
//! `ipam` hands out pod CIDRs and addresses; `workloads` keeps the Kubernetes
//! objects and scheduling decisions; `routes` says which routes the agent
//! installs; `host` wraps a netstack host as an engine node; `lbipam` asks
//! router-core's LB-IPAM for LoadBalancer addresses, `services` programs them on the nodes, `bgp`
//! runs Cilium's BGP control plane and `l2` its L2 announcements. [`Cluster`] owns
//! the engine and keeps hosts, links and routes in step with the workloads.
//! Running scenario steps is [`crate::run`]'s job.

pub mod bgp;
mod flows;
pub mod host;
pub mod ipam;
pub mod l2;
pub mod lbipam;
mod services;
mod upgrade;
pub mod workloads;

use router_core::cilium::routing as routes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;

use ipnet::{IpNet, Ipv4Net};
use nexthop_netstack::{Host, HostConfig, PortSpec};
use router_core::cilium::{Object as CiliumObject, Objects};
use router_core::datapath::{Config as DatapathConfig, TunnelConfig};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Nexthop, Protocol, Route};
use router_core::hash::Fnv1a;
use smoltcp::wire::EthernetAddress;

pub use host::{Role, SimHost};
use workloads::{App, Change, PodInfo, Workloads};

use crate::engine::{Engine, EngineConfig};
use crate::lab::Lab;
use crate::lab::kube::Object;
use crate::lab::topology::{EndpointRef, NodeKind};
use crate::lab::values::RoutingMode;
use crate::node::{Endpoint, NodeId};
use crate::segment::{SegmentId, SegmentKind, SegmentParams};
use crate::show::RouteNote;

/// Name of a node's gateway port towards its pods (Cilium's `cilium_host`).
pub const CILIUM_HOST: &str = "cilium_host";
/// Latency of the veth pair between a pod and its node.
const POD_LINK_LATENCY_US: u64 = 10;

/// A deterministic, locally administered MAC for `host`'s `port`.
pub fn mac_for(host: &str, port: &str) -> EthernetAddress {
    let mut h = Fnv1a::new();
    h.write(host.as_bytes());
    h.write(b"/");
    h.write(port.as_bytes());
    let b = h.finish().to_be_bytes();
    EthernetAddress([0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// A pod's link to its node.
#[derive(Debug, Clone, Copy)]
struct PodLink {
    segment: SegmentId,
    node: NodeId,
}

/// A stopped pod's engine node and link, taken again by a pod of the same
/// name (a bare Pod deleted and applied again): engine names are unique.
#[derive(Debug, Clone, Copy)]
struct Retired {
    pod: NodeId,
    link: PodLink,
}

/// The running lab.
#[derive(Debug)]
pub struct Cluster {
    /// The engine with every host.
    pub engine: Engine<SimHost>,
    /// The lab as loaded.
    pub lab: Lab,
    /// Kubernetes state.
    pub workloads: Workloads,
    hosts: BTreeMap<String, NodeId>,
    interfaces: BTreeMap<EndpointRef, Endpoint>,
    pods: BTreeMap<String, PodLink>,
    retired: BTreeMap<String, Retired>,
    identities: BTreeMap<BTreeMap<String, String>, u32>,
    /// The Cilium objects applied (the BGP kinds and LB-IPAM pools), as
    /// router-core reads them.
    cilium: Objects,
    /// LB-IPAM's state and tables.
    lb: lbipam::LoadBalancers,
    /// The API server's leases.
    api: Rc<RefCell<l2::ApiServer>>,
    /// Seed of the L2 announcers' retry jitter.
    l2_seed: u64,
    /// What happens to down nodes, and when: a reboot ends, or Kubernetes
    /// gives up on a node and its endpoints go not-ready.
    timeline: BTreeMap<smoltcp::time::Instant, Vec<(String, l2::NodeEvent)>>,
    /// Nodes down for longer than the node monitor's grace period: their
    /// pods' endpoints are not ready.
    not_ready: std::collections::BTreeSet<String>,
    /// Seed of NodePort allocation.
    node_port_seed: u64,
    /// The services' NodePorts.
    node_ports: router_core::service::nodeport::NodePorts,
    /// What the service tables could not serve.
    service_problems: Vec<String>,
    /// The nodes' flow events, as steps close them.
    pub flows: flows::Flows,
    /// Values of a `helm upgrade` the agents have not restarted with yet.
    pending_values: Option<crate::lab::Values>,
}

impl Cluster {
    /// Build the lab's hosts and links and apply its start-up manifests.
    pub fn build(lab: Lab, config: EngineConfig) -> Result<Self, String> {
        let mut engine = Engine::new(config);
        let rng = engine.fork_rng("cluster");
        let values = &lab.values;
        let k8s_hosts: Vec<String> = lab
            .topology
            .nodes
            .iter()
            .filter(|(_, n)| n.kind == NodeKind::K8sNode)
            .map(|(name, _)| name.clone())
            .collect();
        let pool = ipam::ClusterPool::new(
            values.ipam.operator.cluster_pool_ipv4_pod_cidr_list.clone(),
            values.ipam.operator.cluster_pool_ipv4_mask_size,
        );
        let mut workloads = Workloads::new(k8s_hosts.clone(), pool, rng.fork("workloads"));
        // Nodes join in the order of their Node objects, then the rest by name.
        let declared: Vec<(String, BTreeMap<String, String>)> = lab
            .manifests
            .iter()
            .flat_map(|m| &m.objects)
            .filter_map(|o| match o {
                Object::Core(CiliumObject::Node(n)) => {
                    Some((n.metadata.name.clone(), n.metadata.labels.clone()))
                }
                _ => None,
            })
            .collect();
        for (name, labels) in &declared {
            if !k8s_hosts.contains(name) {
                return Err(format!(
                    "Node/{name}: no k8s-node host of that name in the topology"
                ));
            }
            workloads.join(name, labels.clone())?;
        }
        for name in &k8s_hosts {
            if workloads.node(name).is_none() {
                workloads.join(name, BTreeMap::new())?;
            }
        }

        let mut hosts = BTreeMap::new();
        let mut interfaces = BTreeMap::new();
        for (name, spec) in &lab.topology.nodes {
            if spec.kind == NodeKind::Bridge {
                continue;
            }
            let mut ports: Vec<PortSpec> = spec
                .interfaces
                .iter()
                .map(|(ifname, i)| {
                    let addrs = i
                        .ipv4
                        .map(IpNet::V4)
                        .into_iter()
                        .chain(i.ipv6.map(IpNet::V6))
                        .collect();
                    let mut p = PortSpec::new(ifname, mac_for(name, ifname), addrs);
                    p.mtu = i.mtu.unwrap_or(lab.topology.defaults.mtu);
                    p
                })
                .collect();
            let node_info = workloads.node(name).cloned();
            if let Some(n) = &node_info {
                let addr = IpNet::V4(Ipv4Net::new(n.router_ip, 32).expect("/32"));
                ports.push(PortSpec::new(
                    CILIUM_HOST,
                    mac_for(name, CILIUM_HOST),
                    vec![addr],
                ));
            }
            let underlay = ports.iter().flat_map(|p| &p.addrs).find_map(|a| match a {
                IpNet::V4(a) if !a.addr().is_loopback() => Some(a.addr()),
                _ => None,
            });
            let tunnel = underlay
                .filter(|_| spec.kind == NodeKind::K8sNode)
                .and_then(|local| {
                    TunnelConfig::for_node(
                        local,
                        values.routing_mode == RoutingMode::Tunnel,
                        values.services.mode,
                    )
                });
            let mut config = HostConfig::new(name);
            config.ports = ports;
            config.forwarding = spec.kind != NodeKind::External;
            config.seed = rng.fork(&format!("host/{name}")).next_u64();
            config.datapath = DatapathConfig {
                hash_policy: if spec.multipath_hash_policy == 1 {
                    HashPolicy::L4
                } else {
                    HashPolicy::L3
                },
                hash_seed: rng.fork(&format!("ecmp/{name}")).next_u64() as u32,
                tunnel,
            };
            let host = Host::new(config).map_err(|e| format!("host {name}: {e}"))?;
            let role = match spec.kind {
                NodeKind::K8sNode => Role::K8sNode,
                NodeKind::Router => Role::Router,
                _ => Role::External,
            };
            let mut sim_host = SimHost::new(host, role);
            if sim_host.role == Role::K8sNode {
                sim_host.host.enable_flows();
            }
            for i in spec.interfaces.values() {
                if let Some(a) = i.ipv4 {
                    sim_host.notes.insert(
                        IpNet::V4(a.trunc()),
                        RouteNote {
                            src: Some(a.addr()),
                            ..RouteNote::default()
                        },
                    );
                }
            }
            for (i, r) in spec.routes.iter().enumerate() {
                let nh =
                    static_nexthop(&sim_host.host, &r.via, r.dev.as_deref()).ok_or_else(|| {
                        let what = match (&r.via, &r.dev) {
                            (Some(via), _) => format!("gateway {via}"),
                            (None, Some(dev)) => format!("device {dev}"),
                            (None, None) => "the route".into(),
                        };
                        format!(
                            "topology.yaml: nodes.{name}.routes[{i}]: {what} is on no connected subnet"
                        )
                    })?;
                let mut route = Route::new(Protocol::Static, vec![nh]);
                route.metric = r.metric;
                sim_host.host.add_route(r.dst, &route);
            }
            for &port in &spec.serve_http {
                sim_host.host.serve_http(port);
            }
            let id = engine.add_node(name, sim_host).map_err(|e| e.to_string())?;
            hosts.insert(name.clone(), id);
        }

        // Bridges are switches; other links are cables.
        let mut switches = BTreeMap::new();
        let defaults = &lab.topology.defaults;
        for (name, spec) in &lab.topology.nodes {
            if spec.kind == NodeKind::Bridge {
                let params = SegmentParams {
                    latency: defaults.latency.0,
                    mtu: usize::from(defaults.mtu),
                    ..SegmentParams::default()
                };
                let seg = engine
                    .add_segment(name, SegmentKind::Switch, params)
                    .map_err(|e| e.to_string())?;
                switches.insert(name.clone(), seg);
            }
        }
        for link in &lab.topology.links {
            let ends: Vec<EndpointRef> = link
                .endpoints
                .iter()
                .map(|e| EndpointRef::parse(e).expect("checked at load"))
                .collect();
            let params = SegmentParams {
                latency: link.latency.unwrap_or(defaults.latency).0,
                loss: link.loss.unwrap_or(0.0),
                mtu: usize::from(link.mtu.unwrap_or(defaults.mtu)),
            };
            let segment = match ends.iter().find_map(|e| switches.get(&e.node)) {
                Some(&seg) => seg,
                None => {
                    let name = format!("{}--{}", link.endpoints[0], link.endpoints[1]);
                    engine
                        .add_segment(&name, SegmentKind::Link, params)
                        .map_err(|e| e.to_string())?
                }
            };
            for end in ends.iter().filter(|e| !switches.contains_key(&e.node)) {
                let node = hosts[&end.node];
                let host_port = engine
                    .node(node)
                    .host
                    .port_id(&end.interface)
                    .expect("checked at load");
                let port = engine
                    .attach(segment, node, &end.interface)
                    .map_err(|e| e.to_string())?;
                engine.node_mut(node).attached(host_port, port);
                interfaces.insert(end.clone(), Endpoint { node, port });
            }
        }

        let mut cluster = Cluster {
            engine,
            lab,
            workloads,
            hosts,
            interfaces,
            pods: BTreeMap::new(),
            retired: BTreeMap::new(),
            identities: BTreeMap::new(),
            cilium: Objects::default(),
            lb: lbipam::LoadBalancers::default(),
            api: Rc::default(),
            l2_seed: rng.fork("l2announce").next_u64(),
            node_port_seed: rng.fork("nodeport").next_u64(),
            node_ports: Default::default(),
            service_problems: Vec::new(),
            timeline: BTreeMap::new(),
            not_ready: std::collections::BTreeSet::new(),
            flows: flows::Flows::default(),
            pending_values: None,
        };
        cluster.install_agent_routes();
        cluster.start_routers()?;
        let objects: Vec<Object> = cluster
            .lab
            .manifests
            .iter()
            .flat_map(|m| m.objects.clone())
            .collect();
        for object in objects {
            cluster.apply(&object)?;
        }
        cluster.check_bgp()?;
        cluster.watch_captures();
        Ok(cluster)
    }

    /// The engine node of a host or pod.
    pub fn host_id(&self, name: &str) -> Option<NodeId> {
        self.hosts.get(name).copied()
    }

    /// The host or pod called `name`.
    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.host_id(name).map(|id| self.engine.node(id))
    }

    /// Host names (topology hosts and pods), in name order.
    pub fn host_names(&self) -> impl Iterator<Item = &String> {
        self.hosts.keys()
    }

    /// The engine endpoint of a topology interface.
    pub fn interface(&self, e: &EndpointRef) -> Option<Endpoint> {
        self.interfaces.get(e).copied()
    }

    /// Apply a Kubernetes object and follow its consequences.
    pub fn apply(&mut self, object: &Object) -> Result<(), String> {
        if let Some(o) = cilium_kind(object) {
            self.cilium.insert(o.clone());
            return self
                .follow_cilium(o)
                .map_err(|e| format!("{}: {e}", object.id()));
        }
        let changes = self
            .workloads
            .apply(object)
            .map_err(|e| format!("{}: {e}", object.id()))?;
        self.follow(changes)?;
        self.settle()
    }

    /// Delete a Kubernetes object and follow its consequences.
    pub fn delete(&mut self, object: &Object) -> Result<(), String> {
        if let Some(o) = cilium_kind(object) {
            let meta = o.metadata();
            self.cilium
                .remove(o.kind(), meta.namespace.as_deref(), &meta.name);
            return self
                .follow_cilium(o)
                .map_err(|e| format!("{}: {e}", object.id()));
        }
        let changes = self
            .workloads
            .delete(object)
            .map_err(|e| format!("{}: {e}", object.id()))?;
        self.follow(changes)?;
        self.settle()
    }

    /// Bring LB-IPAM (after a pool changed) or the nodes' control planes in
    /// line with the Cilium objects.
    fn follow_cilium(&mut self, changed: &CiliumObject) -> Result<(), String> {
        match changed {
            CiliumObject::LoadBalancerIPPool(_) => self.settle(),
            _ => {
                self.reconcile_nodes();
                Ok(())
            }
        }
    }

    /// Take an interface's link up or down; the nodes' control planes
    /// follow (an L2 announcement leader whose link went steps down).
    pub fn set_link(&mut self, interface: Endpoint, up: bool) {
        self.engine.set_port_up(interface, up);
        self.reconcile_nodes();
    }

    /// Every node's control planes (BGP, L2 announcements) from the objects.
    fn reconcile_nodes(&mut self) {
        let objects = self.node_objects();
        self.reconcile_bgp(&objects);
        self.reconcile_l2(&objects);
    }

    fn follow(&mut self, changes: Vec<Change>) -> Result<(), String> {
        for change in changes {
            match change {
                Change::PodAdded(pod) => self.start_pod(&pod)?,
                Change::PodRemoved(pod) => self.stop_pod(&pod),
            }
        }
        Ok(())
    }

    /// Run each FRR router's static routes and `router bgp`.
    fn start_routers(&mut self) -> Result<(), String> {
        let configs = self.lab.frr.clone();
        for (name, config) in &configs {
            let id = self.hosts[name];
            let now = self.engine.now();
            let h = &mut self.engine.node_mut(id).host;
            for (dst, via) in &config.static_routes {
                let nh = static_nexthop(h, &Some(*via), None).ok_or_else(|| {
                    format!(
                        "{name}: frr: ip route {dst} {via}: the gateway is on no connected subnet"
                    )
                })?;
                h.add_route(*dst, &Route::new(Protocol::Static, vec![nh]));
            }
            crate::frr::bgpd::start(h, now, config, false)
                .map_err(|e| format!("{name}: frr: {e}"))?;
        }
        Ok(())
    }

    /// Restart an FRR router's bgpd (`systemctl restart frr`).
    pub fn restart_router(&mut self, name: &str) -> Result<(), String> {
        let config = self
            .lab
            .frr
            .get(name)
            .ok_or_else(|| format!("{name:?} is not a router with an FRR configuration"))?
            .clone();
        let id = self.hosts[name];
        let now = self.engine.now();
        crate::frr::bgpd::start(&mut self.engine.node_mut(id).host, now, &config, true)?;
        self.engine.wake_node(id);
        Ok(())
    }

    /// Set a host's ECMP hash (`sysctl net.ipv4.fib_multipath_hash_policy`).
    pub fn set_hash_policy(&mut self, name: &str, policy: HashPolicy) -> Result<(), String> {
        let id = self
            .host_id(name)
            .ok_or_else(|| format!("no host named {name:?}"))?;
        self.engine.node_mut(id).host.set_hash_policy(policy);
        Ok(())
    }

    /// Set or remove (`None`) a node's label, as `kubectl label node`.
    pub fn label(&mut self, node: &str, key: &str, value: Option<&str>) -> Result<(), String> {
        let mut labels = self
            .workloads
            .node(node)
            .ok_or_else(|| format!("no node named {node:?}"))?
            .labels
            .clone();
        match value {
            Some(v) => labels.insert(key.to_string(), v.to_string()),
            None => labels.remove(key),
        };
        self.workloads.join(node, labels)?;
        self.settle()
    }

    /// `kubectl drain NODE` (evict Deployment pods, mark unschedulable) or
    /// `kubectl uncordon NODE`.
    pub fn drain(&mut self, node: &str, drain: bool) -> Result<(), String> {
        if drain {
            let changes = self.workloads.drain(node)?;
            self.follow(changes)?;
        } else {
            self.workloads.set_cordoned(node, false)?;
        }
        self.settle()
    }

    /// `kubectl scale deployment NAME --replicas N`.
    pub fn scale(&mut self, deployment: &str, replicas: u32) -> Result<(), String> {
        let changes = self.workloads.scale(deployment, replicas)?;
        self.follow(changes)?;
        self.settle()
    }

    /// Add a static route on a host, as `ip route add DST via GW`.
    pub fn add_static_route(&mut self, host: &str, dst: IpNet, via: IpAddr) -> Result<(), String> {
        let id = self
            .host_id(host)
            .ok_or_else(|| format!("no host named {host:?}"))?;
        let h = &mut self.engine.node_mut(id).host;
        let nh = static_nexthop(h, &Some(via), None)
            .ok_or_else(|| format!("{host}: gateway {via} is on no connected subnet"))?;
        h.add_route(dst, &Route::new(Protocol::Static, vec![nh]));
        self.engine.wake_node(id);
        Ok(())
    }

    /// Routes every node's agent installs (idempotent: re-run after membership changes).
    fn install_agent_routes(&mut self) {
        for (id, routes) in self.agent_routes(&self.lab.values) {
            let h = self.engine.node_mut(id);
            for r in routes {
                h.host.add_route(r.dst, &r.route);
                let note = RouteNote {
                    src: r.src,
                    mtu: r.mtu,
                    shown_as: r.shown_as,
                };
                h.notes.insert(r.dst, note);
            }
        }
    }

    /// Take out the routes every node's agent installed under `values`.
    fn remove_agent_routes(&mut self, values: &crate::lab::Values) {
        for (id, routes) in self.agent_routes(values) {
            let h = self.engine.node_mut(id);
            for r in routes {
                h.host
                    .remove_route(r.dst, r.route.protocol, r.route.distance);
                h.notes.remove(&r.dst);
            }
        }
    }

    /// The routes each node's agent installs under `values`.
    fn agent_routes(&self, values: &crate::lab::Values) -> Vec<(NodeId, Vec<routes::AgentRoute>)> {
        let peers: Vec<routes::PeerNode> = self
            .workloads
            .nodes()
            .iter()
            .filter_map(|n| {
                let host = self.host(&n.name)?;
                let ip = underlay_ip(&host.host)?;
                Some(routes::PeerNode {
                    name: n.name.clone(),
                    ip,
                    pod_cidr: n.ipam.cidr(),
                })
            })
            .collect();
        let mut out = Vec::new();
        for peer in &peers {
            let router_ip = self
                .workloads
                .node(&peer.name)
                .expect("a joined node")
                .router_ip;
            let id = self.hosts[&peer.name];
            let h = self.engine.node(id);
            let ports: Vec<(u16, Ipv4Net)> = h
                .host
                .ports()
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    p.addrs.iter().filter_map(move |a| match a {
                        IpNet::V4(a) if p.name != CILIUM_HOST => Some((i as u16, a.trunc())),
                        _ => None,
                    })
                })
                .collect();
            let cilium_host = h
                .host
                .port_id(CILIUM_HOST)
                .expect("k8s nodes have cilium_host")
                .0;
            let routes = routes::agent_routes(
                values.routing(),
                peer,
                router_ip,
                &ports,
                cilium_host,
                &peers,
            );
            out.push((id, routes));
        }
        out
    }

    fn identity(&mut self, labels: &BTreeMap<String, String>) -> u32 {
        let next = 256 + self.identities.len() as u32;
        *self.identities.entry(labels.clone()).or_insert(next)
    }

    fn start_pod(&mut self, pod: &PodInfo) -> Result<(), String> {
        let node_id = self.hosts[&pod.node];
        let router_ip = self
            .workloads
            .node(&pod.node)
            .expect("placed on a node")
            .router_ip;
        let addr = IpNet::V4(Ipv4Net::new(pod.ip, 32).expect("/32"));
        let pod_mac = mac_for(&pod.name, "eth0");
        // Cilium gives pods the MTU left inside a tunnel in tunnel mode.
        let mtu = match self.lab.values.routing_mode {
            RoutingMode::Tunnel => routes::TUNNEL_ROUTE_MTU,
            _ => 1500,
        };
        let mut config = HostConfig::new(&pod.name);
        config.ports = vec![PortSpec {
            mtu,
            ..PortSpec::new("eth0", pod_mac, vec![addr])
        }];
        config.forwarding = false;
        config.seed = self
            .engine
            .fork_rng(&format!("pod/{}", pod.name))
            .next_u64();
        let mut host = Host::new(config).map_err(|e| format!("pod {}: {e}", pod.name))?;
        let eth0 = router_core::PortId(0);
        host.add_route(
            "0.0.0.0/0".parse().expect("valid"),
            &Route::new(
                Protocol::Static,
                vec![Nexthop::gateway(IpAddr::V4(router_ip), eth0)],
            ),
        );
        if pod.app == App::Whoami {
            host.serve_http(80);
        }
        let sim_host = SimHost::new(
            host,
            Role::Pod {
                node: pod.node.clone(),
            },
        );
        let retired = self
            .retired
            .remove(&pod.name)
            .filter(|r| r.link.node == node_id);
        let pod_id = match retired {
            Some(r) => {
                *self.engine.node_mut(r.pod) = sim_host;
                self.engine.wake_node(r.pod);
                r.pod
            }
            None => self
                .engine
                .add_node(&pod.name, sim_host)
                .map_err(|e| e.to_string())?,
        };

        // Named after the pod, not its address: a stopped pod's port stays
        // on the node, and its address may go to a new pod.
        let mut h = Fnv1a::new();
        h.write(pod.name.as_bytes());
        let lxc = format!("lxc{:012x}", h.finish() >> 16);
        let lxc_mac = mac_for(&pod.node, &lxc);
        let identity = self.identity(&pod.labels);
        let node = self.engine.node_mut(node_id);
        let lxc_port = match retired {
            Some(_) => node.host.port_id(&lxc).expect("a retired pod's port stays"),
            None => node
                .host
                .add_port(&lxc, lxc_mac, mtu)
                .map_err(|e| e.to_string())?,
        };
        node.host.announce(lxc_port, router_ip.into());
        node.host.set_pod_port(lxc_port);
        node.host
            .add_neighbour(IpAddr::V4(pod.ip), lxc_port, pod_mac);
        node.host.set_identity(IpAddr::V4(pod.ip), identity);
        node.host.add_route(
            addr,
            &Route::new(Protocol::Kernel, vec![Nexthop::connected(lxc_port)]),
        );

        let segment = match retired {
            Some(r) => {
                // The same engine ports as before: eth0 is the pod's port 0.
                self.engine
                    .node_mut(pod_id)
                    .attached(eth0, crate::node::PortId(0));
                self.engine.set_segment_up(r.link.segment, true);
                r.link.segment
            }
            None => self.link_pod(pod, pod_id, node_id, &lxc, (eth0, lxc_port))?,
        };
        self.hosts.insert(pod.name.clone(), pod_id);
        self.pods.insert(
            pod.name.clone(),
            PodLink {
                segment,
                node: node_id,
            },
        );
        Ok(())
    }

    /// The link between a new pod and its node.
    fn link_pod(
        &mut self,
        pod: &PodInfo,
        pod_id: NodeId,
        node_id: NodeId,
        lxc: &str,
        (eth0, lxc_port): (router_core::PortId, router_core::PortId),
    ) -> Result<SegmentId, String> {
        let params = SegmentParams {
            latency: smoltcp::time::Duration::from_micros(POD_LINK_LATENCY_US),
            ..SegmentParams::default()
        };
        let segment = self
            .engine
            .add_segment(
                &format!("{}:eth0--{}:{lxc}", pod.name, pod.node),
                SegmentKind::Link,
                params,
            )
            .map_err(|e| e.to_string())?;
        let p = self
            .engine
            .attach(segment, pod_id, "eth0")
            .map_err(|e| e.to_string())?;
        self.engine.node_mut(pod_id).attached(eth0, p);
        let p = self
            .engine
            .attach(segment, node_id, lxc)
            .map_err(|e| e.to_string())?;
        self.engine.node_mut(node_id).attached(lxc_port, p);
        Ok(segment)
    }

    fn stop_pod(&mut self, pod: &PodInfo) {
        let Some(link) = self.pods.remove(&pod.name) else {
            return;
        };
        self.engine.set_segment_up(link.segment, false);
        if let Some(&pod_id) = self.hosts.get(&pod.name) {
            self.engine.node_mut(pod_id).down = true;
            self.retired
                .insert(pod.name.clone(), Retired { pod: pod_id, link });
        }
        let addr = IpNet::V4(Ipv4Net::new(pod.ip, 32).expect("/32"));
        self.engine
            .node_mut(link.node)
            .host
            .remove_route(addr, Protocol::Kernel, 0);
        self.hosts.remove(&pod.name);
    }

    /// Whether the port named `name` of a node leads to a pod (hidden in `ip route`).
    pub fn is_endpoint_port(name: &str) -> bool {
        name.starts_with("lxc")
    }

    /// The address to reach `name`: an IPv4 address; a pod's IP (`POD`, or
    /// `PREFIX@NODE` for the first pod on NODE whose name starts with PREFIX, e.g.
    /// `webpod@k8s-w0`); or a host's first IPv4 address.
    pub fn address_of(&self, name: &str) -> Option<Ipv4Addr> {
        if let Ok(ip) = name.parse() {
            return Some(ip);
        }
        if let Some((prefix, node)) = name.split_once('@') {
            return self
                .workloads
                .pods()
                .find(|p| p.node == node && p.name.starts_with(prefix))
                .map(|p| p.ip);
        }
        if let Some(p) = self.workloads.pod(name) {
            return Some(p.ip);
        }
        self.host(name).and_then(|h| underlay_ip(&h.host))
    }
}

/// A host's first non-loopback IPv4 address outside `cilium_host` (a node's InternalIP).
fn underlay_ip(host: &Host) -> Option<Ipv4Addr> {
    host.ports()
        .iter()
        .filter(|p| p.name != CILIUM_HOST)
        .flat_map(|p| &p.addrs)
        .find_map(|a| match a {
            IpNet::V4(a) if !a.addr().is_loopback() => Some(a.addr()),
            _ => None,
        })
}

/// The nexthop of a static route: via a gateway (on `dev`, or on the port whose subnet holds it), or on-link.
fn static_nexthop(host: &Host, via: &Option<IpAddr>, dev: Option<&str>) -> Option<Nexthop> {
    let dev_port = dev.and_then(|d| host.port_id(d));
    match via {
        Some(gw) => {
            let port = dev_port.or_else(|| {
                host.ports()
                    .iter()
                    .position(|p| p.addrs.iter().any(|a| a.contains(gw)))
                    .map(|i| router_core::PortId(i as u16))
            })?;
            Some(Nexthop::gateway(*gw, port))
        }
        None => dev_port.map(Nexthop::connected),
    }
}

/// The Cilium object a lab object is, unless it is a Node or a Service
/// (which are the workloads').
fn cilium_kind(object: &Object) -> Option<&CiliumObject> {
    match object {
        Object::Core(CiliumObject::Node(_) | CiliumObject::Service(_)) => None,
        Object::Core(o) => Some(o),
        Object::Pod(..) | Object::Deployment(..) => None,
    }
}
