//! The Kubernetes side of a lab: nodes, pods, services and their endpoints.
//!
//! Owns what the API server and the scheduler would: which nodes joined (and
//! in which order, for IPAM), which pods exist, where they run and what address
//! they got, which services select which pods. Applying or deleting manifests
//! yields [`Change`]s that [`super::Cluster`] turns into hosts and routes.
//! Placement is deterministic: eligible nodes, fewest replicas of the same
//! workload first, then fewest pods, then join order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use router_core::cilium::Object as CoreObject;
use router_core::cilium::kube::{Service, ServicePort, TargetPort};

use super::ipam::{ClusterPool, NodeIpam};
use crate::lab::kube::{Meta, Object, PodSpec};
use crate::rng::SimRng;

/// What runs in a pod, decided by its first container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// `traefik/whoami`-style HTTP server on port 80.
    Whoami,
    /// Anything else: a client shell (curl, ping).
    Client,
}

impl App {
    fn of(spec: &PodSpec) -> Self {
        match spec.containers.first() {
            Some(c) if c.image.contains("whoami") => App::Whoami,
            _ => App::Client,
        }
    }
}

/// A Kubernetes node (a `k8s-node` host of the topology).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Name (the topology host).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Pod addresses (`CiliumNode` `spec.ipam.podCIDRs`).
    pub ipam: NodeIpam,
    /// The `cilium_host` address: the pods' gateway.
    pub router_ip: Ipv4Addr,
    /// Unschedulable (drained).
    pub cordoned: bool,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The node it runs on.
    pub node: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// What it runs.
    pub app: App,
    /// The Deployment that owns it.
    pub owner: Option<String>,
    /// When it started, in the order pods started (newer is larger).
    pub started: u64,
}

/// The backends' port of a service port: `targetPort`, else `port` (the
/// lab loader refuses named target ports).
pub fn target_port(port: &ServicePort) -> u16 {
    match port.target_port {
        Some(TargetPort::Number(n)) => n,
        _ => port.port,
    }
}

/// A service's ClusterIP, as [`Workloads`] writes it into `spec.clusterIP`
/// (given in the manifest or allocated, as the API server does).
pub fn cluster_ip(svc: &Service) -> Option<Ipv4Addr> {
    svc.spec.cluster_ip.as_deref()?.parse().ok()
}

/// Something the hosts must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A pod started.
    PodAdded(PodInfo),
    /// A pod went away.
    PodRemoved(PodInfo),
}

#[derive(Debug, Clone)]
struct Deployment {
    meta: Meta,
    replicas: u32,
    template: PodSpec,
    labels: BTreeMap<String, String>,
    hash: String,
}

/// The cluster's API state.
#[derive(Debug, Clone)]
pub struct Workloads {
    nodes: Vec<NodeInfo>,
    pods: BTreeMap<(String, String), PodInfo>,
    deployments: BTreeMap<(String, String), Deployment>,
    services: BTreeMap<(String, String), Service>,
    hosts: Vec<String>,
    pool: ClusterPool,
    rng: SimRng,
    next_service_ip: u32,
    /// Pods started so far (each pod's `started`).
    pods_started: u64,
}

/// Kubernetes' safe alphabet for generated names (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl Workloads {
    /// An empty cluster of the topology's `k8s-node` `hosts`, whose nodes take pod
    /// CIDRs from `pool`, with names and addresses drawn from `rng`.
    pub fn new(hosts: Vec<String>, pool: ClusterPool, rng: SimRng) -> Self {
        Workloads {
            hosts,
            nodes: Vec::new(),
            pods: BTreeMap::new(),
            deployments: BTreeMap::new(),
            services: BTreeMap::new(),
            pool,
            rng,
            next_service_ip: 0,
            pods_started: 0,
        }
    }

    /// A node joins (or updates its labels). Returns its pod CIDR.
    pub fn join(
        &mut self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Ipv4Net, String> {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == name) {
            n.labels = labels;
            return Ok(n.ipam.cidr());
        }
        let cidr = self
            .pool
            .allocate()
            .ok_or_else(|| format!("node {name}: the cluster pool has no pod CIDR left"))?;
        let mut ipam = NodeIpam::new(cidr, self.rng.fork(&format!("ipam/{name}")));
        let router_ip = ipam
            .allocate()
            .ok_or_else(|| format!("node {name}: pod CIDR {cidr} is too small"))?;
        self.nodes.push(NodeInfo {
            name: name.to_string(),
            labels,
            ipam,
            router_ip,
            cordoned: false,
        });
        Ok(cidr)
    }

    /// Nodes in join order.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Pods by (namespace, name).
    pub fn pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.pods.values()
    }

    /// The pod called `name` (any namespace, `default` first).
    pub fn pod(&self, name: &str) -> Option<&PodInfo> {
        self.pods
            .get(&("default".to_string(), name.to_string()))
            .or_else(|| self.pods.values().find(|p| p.name == name))
    }

    /// The service called `name` (any namespace, `default` first), or with this ClusterIP.
    pub fn service(&self, name_or_ip: &str) -> Option<&Service> {
        self.services
            .get(&("default".to_string(), name_or_ip.to_string()))
            .or_else(|| {
                self.services.values().find(|s| {
                    s.metadata.name == name_or_ip
                        || s.spec.cluster_ip.as_deref() == Some(name_or_ip)
                })
            })
    }

    /// The pods a service selects, in name order.
    pub fn endpoints(&self, svc: &Service) -> Vec<&PodInfo> {
        let selector = &svc.spec.selector;
        self.pods
            .values()
            .filter(|p| {
                p.namespace == svc.namespace()
                    && !selector.is_empty()
                    && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .collect()
    }

    /// Apply one object.
    pub fn apply(&mut self, object: &Object) -> Result<Vec<Change>, String> {
        match object {
            Object::Core(CoreObject::Node(node)) => {
                let meta = &node.metadata;
                if !self.hosts.contains(&meta.name) {
                    return Err(format!(
                        "Node/{}: no k8s-node host of that name in the topology",
                        meta.name
                    ));
                }
                self.join(&meta.name, meta.labels.clone())?;
                Ok(Vec::new())
            }
            Object::Pod(meta, spec) => {
                let key = (meta.namespace().to_string(), meta.name.clone());
                if self.pods.contains_key(&key) {
                    return Ok(Vec::new());
                }
                let node = self.place(spec, None)?;
                let pod = self.start(meta.name.clone(), meta, &meta.labels, spec, node, None)?;
                Ok(vec![Change::PodAdded(pod)])
            }
            Object::Deployment(meta, spec) => {
                let key = (meta.namespace().to_string(), meta.name.clone());
                let hash = match self.deployments.get(&key) {
                    Some(d) => d.hash.clone(),
                    None => self.random_name(10),
                };
                let deployment = Deployment {
                    meta: meta.clone(),
                    replicas: spec.replicas.unwrap_or(1),
                    template: spec.template.spec.clone(),
                    labels: spec.template.metadata.labels.clone(),
                    hash,
                };
                self.deployments.insert(key.clone(), deployment);
                self.reconcile(&key)
            }
            Object::Core(CoreObject::Service(svc)) => {
                let key = (svc.namespace().to_string(), svc.metadata.name.clone());
                let kept = self.services.get(&key).and_then(cluster_ip);
                let cluster_ip = match cluster_ip(svc).or(kept) {
                    Some(ip) => ip,
                    None => self.service_ip(),
                };
                let mut svc = svc.clone();
                svc.metadata.namespace = Some(key.0.clone());
                svc.spec.kind.get_or_insert_with(|| "ClusterIP".into());
                svc.spec.cluster_ip = Some(cluster_ip.to_string());
                self.services.insert(key, svc);
                Ok(Vec::new())
            }
            // The Cilium kinds belong to the BGP control plane and LB-IPAM.
            Object::Core(_) => Ok(Vec::new()),
        }
    }

    /// Delete one object (a Node object cannot be deleted: drain it instead).
    pub fn delete(&mut self, object: &Object) -> Result<Vec<Change>, String> {
        match object {
            Object::Core(CoreObject::Node(node)) => Err(format!(
                "Node/{}: deleting nodes is not simulated",
                node.metadata.name
            )),
            Object::Pod(meta, _) => {
                let key = (meta.namespace().to_string(), meta.name.clone());
                Ok(self.stop(&key).into_iter().collect())
            }
            Object::Deployment(meta, _) => {
                let key = (meta.namespace().to_string(), meta.name.clone());
                self.deployments.remove(&key);
                let owned: Vec<_> = self
                    .pods
                    .iter()
                    .filter(|(k, p)| k.0 == key.0 && p.owner.as_deref() == Some(&key.1))
                    .map(|(k, _)| k.clone())
                    .collect();
                Ok(owned.iter().filter_map(|k| self.stop(k)).collect())
            }
            Object::Core(CoreObject::Service(svc)) => {
                let key = (svc.namespace().to_string(), svc.metadata.name.clone());
                self.services.remove(&key);
                Ok(Vec::new())
            }
            Object::Core(_) => Ok(Vec::new()),
        }
    }

    /// Every service, by (namespace, name).
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// `kubectl drain`: mark the node unschedulable and evict the pods
    /// Deployments own, which their Deployments start again elsewhere.
    /// Other pods stay (as without `--force`).
    pub fn drain(&mut self, node: &str) -> Result<Vec<Change>, String> {
        self.set_cordoned(node, true)?;
        let evicted: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, p)| p.node == node && p.owner.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let mut changes: Vec<Change> = evicted.iter().filter_map(|k| self.stop(k)).collect();
        let owners: BTreeSet<(String, String)> = self.deployments.keys().cloned().collect();
        for key in owners {
            changes.extend(self.reconcile(&key)?);
        }
        Ok(changes)
    }

    /// `kubectl cordon` (`true`) or `uncordon` (`false`).
    pub fn set_cordoned(&mut self, node: &str, cordoned: bool) -> Result<(), String> {
        let n = self
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .ok_or_else(|| format!("no node named {node:?}"))?;
        n.cordoned = cordoned;
        Ok(())
    }

    /// `kubectl scale deployment NAME --replicas N` (namespace `default`).
    pub fn scale(&mut self, name: &str, replicas: u32) -> Result<Vec<Change>, String> {
        let key = ("default".to_string(), name.to_string());
        let d = self
            .deployments
            .get_mut(&key)
            .ok_or_else(|| format!("no Deployment default/{name}"))?;
        d.replicas = replicas;
        self.reconcile(&key)
    }

    /// Scale every replica set towards its desired count.
    fn reconcile(&mut self, key: &(String, String)) -> Result<Vec<Change>, String> {
        let d = self.deployments[key].clone();
        let mut changes = Vec::new();
        let mut mine: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(k, p)| k.0 == key.0 && p.owner.as_deref() == Some(&key.1))
            .map(|(k, _)| k.clone())
            .collect();
        while mine.len() > d.replicas as usize {
            let k = self.to_remove(&mine).expect("more pods than replicas");
            mine.retain(|m| *m != k);
            changes.extend(self.stop(&k));
        }
        for _ in mine.len()..d.replicas as usize {
            let node = self.place(&d.template, Some(&key.1))?;
            let name = format!("{}-{}-{}", d.meta.name, d.hash, self.random_name(5));
            let pod = self.start(
                name,
                &d.meta,
                &d.labels,
                &d.template,
                node,
                Some(key.1.clone()),
            )?;
            changes.push(Change::PodAdded(pod));
        }
        Ok(changes)
    }

    fn start(
        &mut self,
        name: String,
        meta: &Meta,
        labels: &BTreeMap<String, String>,
        spec: &PodSpec,
        node: usize,
        owner: Option<String>,
    ) -> Result<PodInfo, String> {
        let n = &mut self.nodes[node];
        let ip = n
            .ipam
            .allocate()
            .ok_or_else(|| format!("node {}: no pod address left in {}", n.name, n.ipam.cidr()))?;
        let pod = PodInfo {
            name: name.clone(),
            namespace: meta.namespace().to_string(),
            labels: labels.clone(),
            node: n.name.clone(),
            ip,
            app: App::of(spec),
            owner,
            started: self.pods_started,
        };
        self.pods_started += 1;
        self.pods.insert((pod.namespace.clone(), name), pod.clone());
        Ok(pod)
    }

    /// The pod of `pods` (all running and ready) a scale-down removes
    /// first, as Kubernetes' ReplicaSet controller ranks them
    /// (`ActivePodsWithRanks`): one doubled up on a node with more of
    /// them, then the newest.
    fn to_remove(&self, pods: &[(String, String)]) -> Option<(String, String)> {
        let on_node = |node: &str| pods.iter().filter(|k| self.pods[*k].node == node).count();
        pods.iter()
            .max_by_key(|k| {
                let p = &self.pods[*k];
                (on_node(&p.node), p.started)
            })
            .cloned()
    }

    fn stop(&mut self, key: &(String, String)) -> Option<Change> {
        let pod = self.pods.remove(key)?;
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == pod.node) {
            n.ipam.release(pod.ip);
        }
        Some(Change::PodRemoved(pod))
    }

    /// Pick a node for a pod of `owner` (a Deployment) with `spec`.
    fn place(&self, spec: &PodSpec, owner: Option<&str>) -> Result<usize, String> {
        if let Some(name) = &spec.node_name {
            return self
                .nodes
                .iter()
                .position(|n| &n.name == name)
                .ok_or_else(|| format!("nodeName {name:?} is not a node of the cluster"));
        }
        // Pods per node, and pods of this owner per node, in one pass.
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for p in self.pods.values() {
            let c = counts.entry(p.node.as_str()).or_default();
            c.1 += 1;
            if owner.is_some() && p.owner.as_deref() == owner {
                c.0 += 1;
            }
        }
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                !n.cordoned
                    && spec
                        .node_selector
                        .iter()
                        .all(|(k, v)| n.labels.get(k) == Some(v))
            })
            .min_by_key(|(i, n)| {
                let (mine, all) = counts.get(n.name.as_str()).copied().unwrap_or_default();
                (mine, all, *i)
            })
            .map(|(i, _)| i)
            .ok_or_else(|| "no schedulable node matches the pod's nodeSelector".to_string())
    }

    fn random_name(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(ALPHABET[self.rng.below(ALPHABET.len() as u64) as usize]))
            .collect()
    }

    /// The next ClusterIP from 10.96.0.0/12, starting at 10.96.0.10 (.1 is `kubernetes`).
    fn service_ip(&mut self) -> Ipv4Addr {
        let base = u32::from(Ipv4Addr::new(10, 96, 0, 10));
        loop {
            let ip = Ipv4Addr::from_bits(base + self.next_service_ip);
            self.next_service_ip += 1;
            if !self.services.values().any(|s| cluster_ip(s) == Some(ip)) {
                return ip;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::kube;
    use std::path::Path;

    fn cluster() -> Workloads {
        let pool = ClusterPool::new(vec!["172.20.0.0/16".parse().unwrap()], 24);
        let hosts = ["k8s-ctr", "k8s-w1", "k8s-w0"].map(String::from).to_vec();
        let mut w = Workloads::new(hosts, pool, SimRng::new(1));
        for n in ["k8s-ctr", "k8s-w1", "k8s-w0"] {
            w.join(n, BTreeMap::new()).unwrap();
        }
        w
    }

    const APPS: &str = "kind: Deployment\nmetadata: { name: webpod }\nspec:\n  replicas: 3\n  selector: { matchLabels: { app: webpod } }\n  template:\n    metadata: { labels: { app: webpod } }\n    spec: { containers: [{ name: w, image: traefik/whoami }] }\n---\nkind: Pod\nmetadata: { name: curl-pod, labels: { app: curl } }\nspec: { nodeName: k8s-ctr, containers: [{ name: c, image: nicolaka/netshoot }] }\n---\napiVersion: v1\nkind: Service\nmetadata: { name: webpod }\nspec: { selector: { app: webpod }, ports: [{ port: 80 }] }\n";

    #[test]
    fn nodes_get_pod_cidrs_in_join_order() {
        let w = cluster();
        let cidrs: Vec<String> = w
            .nodes()
            .iter()
            .map(|n| n.ipam.cidr().to_string())
            .collect();
        assert_eq!(cidrs, ["172.20.0.0/24", "172.20.1.0/24", "172.20.2.0/24"]);
        for n in w.nodes() {
            assert!(n.ipam.cidr().contains(&n.router_ip));
        }
    }

    #[test]
    fn deployments_spread_pods_and_services_select_them() {
        let mut w = cluster();
        let mut changes = Vec::new();
        for o in kube::parse(Path::new("apps.yaml"), APPS).unwrap() {
            changes.extend(w.apply(&o).unwrap());
        }
        assert_eq!(changes.len(), 4);
        let nodes: Vec<&str> = w
            .pods()
            .filter(|p| p.app == App::Whoami)
            .map(|p| p.node.as_str())
            .collect();
        let mut sorted = nodes.clone();
        sorted.sort();
        assert_eq!(sorted, ["k8s-ctr", "k8s-w0", "k8s-w1"]);
        let curl = w.pod("curl-pod").unwrap();
        assert_eq!((curl.node.as_str(), curl.app), ("k8s-ctr", App::Client));
        let svc = w.service("webpod").unwrap().clone();
        assert_eq!(cluster_ip(&svc), Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(w.endpoints(&svc).len(), 3);
        for p in w.pods() {
            let node = w.node(&p.node).unwrap();
            assert!(node.ipam.cidr().contains(&p.ip));
            assert!(p.owner.is_none() || p.name.starts_with("webpod-"));
        }
    }

    #[test]
    fn scaling_down_and_deleting_stop_pods() {
        let mut w = cluster();
        let objs = kube::parse(Path::new("apps.yaml"), APPS).unwrap();
        for o in &objs {
            w.apply(o).unwrap();
        }
        let Object::Deployment(meta, mut spec) = objs[0].clone() else {
            unreachable!()
        };
        spec.replicas = Some(1);
        let changes = w.apply(&Object::Deployment(meta, spec)).unwrap();
        assert_eq!(
            changes
                .iter()
                .filter(|c| matches!(c, Change::PodRemoved(_)))
                .count(),
            2
        );
        let changes = w.delete(&objs[0]).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(w.pods().count(), 1);
    }
}
