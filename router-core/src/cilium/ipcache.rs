//! What a node knows of an address, as Cilium's ipcache holds it: a pod
//! with its namespace, name and security identity, a node of the cluster,
//! or the world. Hubble names both ends of a flow by it.
//!
//! Owns the lookup and its precedence (a pod's address first, then a
//! node's; the observing node itself is `host`, any other `remote-node`).
//! Filled from `CiliumEndpoint` and `Node` objects ([`IpCache::of`]) on a
//! real node, from the lab's pods and hosts in the simulator. Does not own
//! identity allocation.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use super::objects::Objects;
use crate::flow::hubble::{Endpoint, identity};

/// Addresses → pods and nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpCache {
    pods: BTreeMap<IpAddr, Endpoint>,
    nodes: BTreeMap<IpAddr, String>,
}

impl IpCache {
    /// An empty cache: every address is the world.
    pub fn new() -> Self {
        IpCache::default()
    }

    /// `addr` is a pod's (unless an earlier pod has it).
    pub fn insert_pod(&mut self, addr: IpAddr, pod: Endpoint) {
        self.pods.entry(addr).or_insert(pod);
    }

    /// `addr` is node `name`'s (unless an earlier node has it).
    pub fn insert_node(&mut self, addr: IpAddr, name: &str) {
        self.nodes.entry(addr).or_insert_with(|| name.into());
    }

    /// The cache a node builds from the cluster's objects: every
    /// `CiliumEndpoint`'s addresses and every `Node`'s.
    pub fn of(objects: &Objects) -> Self {
        let mut cache = IpCache::new();
        for ((namespace, name), cep) in &objects.cilium_endpoints {
            let mut labels: Vec<String> = cep.status.identity.labels.clone();
            let namespace_label = format!("k8s:io.kubernetes.pod.namespace={namespace}");
            if !labels.contains(&namespace_label) {
                labels.push(namespace_label);
            }
            let pod = Endpoint {
                identity: cep.status.identity.id,
                namespace: namespace.clone(),
                pod: name.clone(),
                labels,
            };
            for addr in cep.addresses() {
                cache.insert_pod(addr, pod.clone());
            }
        }
        for (name, node) in &objects.nodes {
            for a in &node.status.addresses {
                if let Ok(addr) = a.address.parse() {
                    cache.insert_node(addr, name);
                }
            }
        }
        cache
    }

    /// Pod addresses known.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Node addresses known.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// What node `observer` knows of `addr`: a pod with its identity, the
    /// node itself (`host`), another node (`remote-node`), or `world`.
    pub fn endpoint(&self, observer: &str, addr: IpAddr) -> Endpoint {
        if let Some(pod) = self.pods.get(&addr) {
            return pod.clone();
        }
        match self.nodes.get(&addr) {
            Some(node) if node == observer => Endpoint::reserved(identity::HOST),
            Some(_) => Endpoint::reserved(identity::REMOTE_NODE),
            None => Endpoint::reserved(identity::WORLD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::objects::tests::parse;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: k8s-ctr}
status:
  addresses:
  - {type: InternalIP, address: 192.168.10.100}
  - {type: Hostname, address: k8s-ctr}
---
apiVersion: v1
kind: Node
metadata: {name: k8s-w1}
status:
  addresses: [{type: InternalIP, address: 192.168.10.101}]
---
apiVersion: cilium.io/v2
kind: CiliumEndpoint
metadata: {name: curl-pod, namespace: default}
status:
  identity:
    id: 21500
    labels: ["k8s:app=curl", "k8s:io.kubernetes.pod.namespace=default"]
  networking:
    addressing: [{ipv4: 172.20.0.88}]
    node: 192.168.10.100
"#;

    #[test]
    fn pods_come_from_cilium_endpoints_and_nodes_from_their_addresses() {
        let cache = IpCache::of(&parse(OBJECTS).unwrap());
        let pod = cache.endpoint("k8s-w1", "172.20.0.88".parse().unwrap());
        assert_eq!(
            (pod.namespace.as_str(), pod.pod.as_str()),
            ("default", "curl-pod")
        );
        assert_eq!(pod.identity, 21500);
        assert_eq!(pod.labels.len(), 2, "the namespace label is not doubled");
        let ctr = "192.168.10.100".parse().unwrap();
        assert_eq!(cache.endpoint("k8s-ctr", ctr).identity, identity::HOST);
        assert_eq!(
            cache.endpoint("k8s-w1", ctr).identity,
            identity::REMOTE_NODE
        );
        let outside = "8.8.8.8".parse().unwrap();
        assert_eq!(cache.endpoint("k8s-w1", outside).identity, identity::WORLD);
    }
}
