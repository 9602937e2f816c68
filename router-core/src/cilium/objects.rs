//! The set of objects a node's BGP control plane is computed from, and which
//! `apiVersion`/`kind` pairs it understands.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use ipnet::IpNet;

use serde::{Deserialize, Deserializer};

use super::bgp::{Advertisement, ClusterConfig, NodeConfigOverride, PeerConfig};
use super::kube::{CiliumEndpoint, CiliumNode, EndpointSlice, Node, Secret, Service};
use super::l2policy::L2AnnouncementPolicy;
use super::lbpool::LoadBalancerIPPool;
use super::meta::{ObjectMeta, TypeMeta};

/// A kind of object nexthop reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 `Node`.
    Node,
    /// core/v1 `Service`.
    Service,
    /// core/v1 `Secret`.
    Secret,
    /// discovery.k8s.io/v1 `EndpointSlice`.
    EndpointSlice,
    /// cilium.io/v2 `CiliumNode`.
    CiliumNode,
    /// cilium.io/v2 `CiliumEndpoint`.
    CiliumEndpoint,
    /// cilium.io/v2 or v2alpha1 `CiliumBGPClusterConfig`.
    ClusterConfig,
    /// cilium.io/v2 or v2alpha1 `CiliumBGPPeerConfig`.
    PeerConfig,
    /// cilium.io/v2 or v2alpha1 `CiliumBGPAdvertisement`.
    Advertisement,
    /// cilium.io/v2 or v2alpha1 `CiliumBGPNodeConfigOverride`.
    NodeConfigOverride,
    /// cilium.io/v2 or v2alpha1 `CiliumLoadBalancerIPPool`.
    LoadBalancerIPPool,
    /// cilium.io/v2alpha1 or v2 `CiliumL2AnnouncementPolicy`.
    L2AnnouncementPolicy,
}

impl Kind {
    /// Every kind nexthop reads.
    pub const ALL: [Kind; 12] = [
        Kind::Node,
        Kind::Service,
        Kind::Secret,
        Kind::EndpointSlice,
        Kind::CiliumNode,
        Kind::CiliumEndpoint,
        Kind::ClusterConfig,
        Kind::PeerConfig,
        Kind::Advertisement,
        Kind::NodeConfigOverride,
        Kind::LoadBalancerIPPool,
        Kind::L2AnnouncementPolicy,
    ];

    /// The kind a document's `apiVersion` and `kind` name, if nexthop reads it.
    pub fn of(meta: &TypeMeta) -> Option<Kind> {
        let cilium = matches!(
            meta.api_version.as_str(),
            "cilium.io/v2" | "cilium.io/v2alpha1"
        );
        let core = meta.api_version == "v1";
        Some(match meta.kind.as_str() {
            "Node" if core => Kind::Node,
            "Service" if core => Kind::Service,
            "Secret" if core => Kind::Secret,
            "EndpointSlice" if meta.api_version == "discovery.k8s.io/v1" => Kind::EndpointSlice,
            "CiliumNode" if meta.api_version == "cilium.io/v2" => Kind::CiliumNode,
            "CiliumEndpoint" if meta.api_version == "cilium.io/v2" => Kind::CiliumEndpoint,
            "CiliumBGPClusterConfig" if cilium => Kind::ClusterConfig,
            "CiliumBGPPeerConfig" if cilium => Kind::PeerConfig,
            "CiliumBGPAdvertisement" if cilium => Kind::Advertisement,
            "CiliumBGPNodeConfigOverride" if cilium => Kind::NodeConfigOverride,
            "CiliumLoadBalancerIPPool" if cilium => Kind::LoadBalancerIPPool,
            "CiliumL2AnnouncementPolicy" if cilium => Kind::L2AnnouncementPolicy,
            _ => return None,
        })
    }

    /// The `kind` its documents carry.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Service => "Service",
            Kind::Secret => "Secret",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::CiliumNode => "CiliumNode",
            Kind::CiliumEndpoint => "CiliumEndpoint",
            Kind::ClusterConfig => "CiliumBGPClusterConfig",
            Kind::PeerConfig => "CiliumBGPPeerConfig",
            Kind::Advertisement => "CiliumBGPAdvertisement",
            Kind::NodeConfigOverride => "CiliumBGPNodeConfigOverride",
            Kind::LoadBalancerIPPool => "CiliumLoadBalancerIPPool",
            Kind::L2AnnouncementPolicy => "CiliumL2AnnouncementPolicy",
        }
    }

    /// Deserialize a whole document of this kind.
    pub fn deserialize<'de, D: Deserializer<'de>>(self, d: D) -> Result<Object, D::Error> {
        Ok(match self {
            Kind::Node => Object::Node(Node::deserialize(d)?),
            Kind::Service => Object::Service(Service::deserialize(d)?),
            Kind::Secret => Object::Secret(Secret::deserialize(d)?),
            Kind::EndpointSlice => Object::EndpointSlice(EndpointSlice::deserialize(d)?),
            Kind::CiliumNode => Object::CiliumNode(CiliumNode::deserialize(d)?),
            Kind::CiliumEndpoint => Object::CiliumEndpoint(CiliumEndpoint::deserialize(d)?),
            Kind::ClusterConfig => Object::ClusterConfig(ClusterConfig::deserialize(d)?),
            Kind::PeerConfig => Object::PeerConfig(PeerConfig::deserialize(d)?),
            Kind::Advertisement => Object::Advertisement(Advertisement::deserialize(d)?),
            Kind::NodeConfigOverride => {
                Object::NodeConfigOverride(NodeConfigOverride::deserialize(d)?)
            }
            Kind::LoadBalancerIPPool => {
                Object::LoadBalancerIPPool(LoadBalancerIPPool::deserialize(d)?)
            }
            Kind::L2AnnouncementPolicy => {
                Object::L2AnnouncementPolicy(L2AnnouncementPolicy::deserialize(d)?)
            }
        })
    }
}

/// One decoded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// A `Node`.
    Node(Node),
    /// A `Service`.
    Service(Service),
    /// A `Secret`.
    Secret(Secret),
    /// An `EndpointSlice`.
    EndpointSlice(EndpointSlice),
    /// A `CiliumNode`.
    CiliumNode(CiliumNode),
    /// A `CiliumEndpoint`.
    CiliumEndpoint(CiliumEndpoint),
    /// A `CiliumBGPClusterConfig`.
    ClusterConfig(ClusterConfig),
    /// A `CiliumBGPPeerConfig`.
    PeerConfig(PeerConfig),
    /// A `CiliumBGPAdvertisement`.
    Advertisement(Advertisement),
    /// A `CiliumBGPNodeConfigOverride`.
    NodeConfigOverride(NodeConfigOverride),
    /// A `CiliumLoadBalancerIPPool`.
    LoadBalancerIPPool(LoadBalancerIPPool),
    /// A `CiliumL2AnnouncementPolicy`.
    L2AnnouncementPolicy(L2AnnouncementPolicy),
}

impl Object {
    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Node(_) => Kind::Node,
            Object::Service(_) => Kind::Service,
            Object::Secret(_) => Kind::Secret,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::CiliumNode(_) => Kind::CiliumNode,
            Object::CiliumEndpoint(_) => Kind::CiliumEndpoint,
            Object::ClusterConfig(_) => Kind::ClusterConfig,
            Object::PeerConfig(_) => Kind::PeerConfig,
            Object::Advertisement(_) => Kind::Advertisement,
            Object::NodeConfigOverride(_) => Kind::NodeConfigOverride,
            Object::LoadBalancerIPPool(_) => Kind::LoadBalancerIPPool,
            Object::L2AnnouncementPolicy(_) => Kind::L2AnnouncementPolicy,
        }
    }

    /// Its `metadata`.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Node(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::CiliumNode(o) => &o.metadata,
            Object::CiliumEndpoint(o) => &o.metadata,
            Object::ClusterConfig(o) => &o.metadata,
            Object::PeerConfig(o) => &o.metadata,
            Object::Advertisement(o) => &o.metadata,
            Object::NodeConfigOverride(o) => &o.metadata,
            Object::LoadBalancerIPPool(o) => &o.metadata,
            Object::L2AnnouncementPolicy(o) => &o.metadata,
        }
    }

    /// `Kind/name`, as `kubectl` names it.
    pub fn id(&self) -> String {
        alloc::format!("{}/{}", self.kind().name(), self.metadata().name)
    }
}

/// Every object, by kind and name (services and secrets by namespace and
/// name). A later object with the same key replaces an earlier one, as
/// `kubectl apply` would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Cilium nodes by name.
    pub cilium_nodes: BTreeMap<String, CiliumNode>,
    /// Cilium endpoints (pods) by (namespace, name).
    pub cilium_endpoints: BTreeMap<(String, String), CiliumEndpoint>,
    /// Services by (namespace, name).
    pub services: BTreeMap<(String, String), Service>,
    /// Secrets by (namespace, name).
    pub secrets: BTreeMap<(String, String), Secret>,
    /// Endpoint slices by (namespace, name).
    pub endpoint_slices: BTreeMap<(String, String), EndpointSlice>,
    /// Cluster configs by name.
    pub cluster_configs: BTreeMap<String, ClusterConfig>,
    /// Peer configs by name.
    pub peer_configs: BTreeMap<String, PeerConfig>,
    /// Advertisements by name.
    pub advertisements: BTreeMap<String, Advertisement>,
    /// Node config overrides by name (the node's).
    pub node_overrides: BTreeMap<String, NodeConfigOverride>,
    /// LB-IPAM pools by name.
    pub lb_pools: BTreeMap<String, LoadBalancerIPPool>,
    /// L2 announcement policies by name.
    pub l2_policies: BTreeMap<String, L2AnnouncementPolicy>,
}

impl Objects {
    /// `node`'s pod CIDRs: its CiliumNode's (Cilium's own IPAM), else its
    /// Node's `spec.podCIDRs`.
    pub fn pod_cidrs(&self, node: &str) -> Vec<IpNet> {
        self.cilium_nodes
            .get(node)
            .map(|c| c.spec.ipam.pod_cidrs.clone())
            .filter(|cidrs| !cidrs.is_empty())
            .or_else(|| self.nodes.get(node).map(|n| n.spec.pod_cidrs.clone()))
            .unwrap_or_default()
    }

    /// Add (or replace) an object.
    pub fn insert(&mut self, object: Object) {
        match object {
            Object::Node(o) => {
                self.nodes.insert(o.metadata.name.clone(), o);
            }
            Object::CiliumNode(o) => {
                self.cilium_nodes.insert(o.metadata.name.clone(), o);
            }
            Object::Service(o) => {
                let key = (o.namespace().into(), o.metadata.name.clone());
                self.services.insert(key, o);
            }
            Object::Secret(o) => {
                let ns = o
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                self.secrets.insert((ns, o.metadata.name.clone()), o);
            }
            Object::EndpointSlice(o) => {
                let ns = o.metadata.namespace.as_deref().unwrap_or("default");
                let key = (ns.into(), o.metadata.name.clone());
                self.endpoint_slices.insert(key, o);
            }
            Object::CiliumEndpoint(o) => {
                let ns = o.metadata.namespace.as_deref().unwrap_or("default");
                let key = (ns.into(), o.metadata.name.clone());
                self.cilium_endpoints.insert(key, o);
            }
            Object::ClusterConfig(o) => {
                self.cluster_configs.insert(o.metadata.name.clone(), o);
            }
            Object::PeerConfig(o) => {
                self.peer_configs.insert(o.metadata.name.clone(), o);
            }
            Object::Advertisement(o) => {
                self.advertisements.insert(o.metadata.name.clone(), o);
            }
            Object::NodeConfigOverride(o) => {
                self.node_overrides.insert(o.metadata.name.clone(), o);
            }
            Object::LoadBalancerIPPool(o) => {
                self.lb_pools.insert(o.metadata.name.clone(), o);
            }
            Object::L2AnnouncementPolicy(o) => {
                self.l2_policies.insert(o.metadata.name.clone(), o);
            }
        }
    }

    /// Remove the object with `object`'s kind, namespace and name; whether
    /// there was one.
    pub fn delete(&mut self, object: &Object) -> bool {
        let meta = object.metadata();
        self.remove(object.kind(), meta.namespace.as_deref(), &meta.name)
    }

    /// Remove the object of `kind` named `name` (in `namespace` for services,
    /// secrets, endpoint slices and Cilium endpoints, `default` when `None`, as
    /// [`Objects::insert`] keys them); whether there was one.
    pub fn remove(&mut self, kind: Kind, namespace: Option<&str>, name: &str) -> bool {
        let key = || {
            (
                String::from(namespace.unwrap_or("default")),
                String::from(name),
            )
        };
        match kind {
            Kind::Node => self.nodes.remove(name).is_some(),
            Kind::CiliumNode => self.cilium_nodes.remove(name).is_some(),
            Kind::Service => self.services.remove(&key()).is_some(),
            Kind::Secret => self.secrets.remove(&key()).is_some(),
            Kind::EndpointSlice => self.endpoint_slices.remove(&key()).is_some(),
            Kind::CiliumEndpoint => self.cilium_endpoints.remove(&key()).is_some(),
            Kind::ClusterConfig => self.cluster_configs.remove(name).is_some(),
            Kind::PeerConfig => self.peer_configs.remove(name).is_some(),
            Kind::Advertisement => self.advertisements.remove(name).is_some(),
            Kind::NodeConfigOverride => self.node_overrides.remove(name).is_some(),
            Kind::LoadBalancerIPPool => self.lb_pools.remove(name).is_some(),
            Kind::L2AnnouncementPolicy => self.l2_policies.remove(name).is_some(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::ToString;

    /// Every document of `yaml`, as the agent's config directory reads them.
    pub(crate) fn parse(yaml: &str) -> Result<Objects, String> {
        let mut objects = Objects::default();
        for doc in serde_norway::Deserializer::from_str(yaml) {
            let value = serde_norway::Value::deserialize(doc).map_err(|e| e.to_string())?;
            let meta = TypeMeta::deserialize(&value).map_err(|e| e.to_string())?;
            let kind = Kind::of(&meta).ok_or("unknown kind")?;
            let mut track = serde_path_to_error::Track::new();
            let object = kind
                .deserialize(serde_path_to_error::Deserializer::new(&value, &mut track))
                .map_err(|e| alloc::format!("{}: {e}", track.path()))?;
            objects.insert(object);
        }
        Ok(objects)
    }

    fn meta(api_version: &str, kind: &str) -> TypeMeta {
        TypeMeta {
            api_version: api_version.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn kinds_need_their_api_group() {
        assert_eq!(Kind::of(&meta("v1", "Node")), Some(Kind::Node));
        assert_eq!(Kind::of(&meta("cilium.io/v2", "Node")), None);
        assert_eq!(
            Kind::of(&meta("cilium.io/v2alpha1", "CiliumBGPPeerConfig")),
            Some(Kind::PeerConfig)
        );
        assert_eq!(
            Kind::of(&meta("cilium.io/v2", "CiliumBGPClusterConfig")),
            Some(Kind::ClusterConfig)
        );
        assert_eq!(Kind::of(&meta("v1", "ConfigMap")), None);
        assert_eq!(
            Kind::of(&meta("discovery.k8s.io/v1", "EndpointSlice")),
            Some(Kind::EndpointSlice)
        );
        assert_eq!(Kind::of(&meta("v1", "EndpointSlice")), None);
        assert_eq!(Kind::of(&meta("cilium.io/v2", "CiliumBGPNodeConfig")), None);
        assert_eq!(
            Kind::of(&meta("cilium.io/v2alpha1", "CiliumLoadBalancerIPPool")),
            Some(Kind::LoadBalancerIPPool)
        );
        assert_eq!(Kind::of(&meta("v1", "CiliumLoadBalancerIPPool")), None);
    }

    #[test]
    fn remove_takes_out_one_object_by_kind_and_key() {
        use crate::cilium::kube::{Node, Service};
        let mut objects = Objects::default();
        let service = |namespace: Option<&str>| Service {
            metadata: ObjectMeta {
                namespace: namespace.map(String::from),
                ..ObjectMeta::named("web")
            },
            ..Service::default()
        };
        objects.insert(Object::Service(service(None)));
        objects.insert(Object::Service(service(Some("prod"))));
        objects.insert(Object::Node(Node {
            metadata: ObjectMeta::named("web"),
            ..Node::default()
        }));
        assert!(objects.remove(Kind::Service, None, "web"));
        assert!(!objects.remove(Kind::Service, None, "web"));
        assert!(!objects.remove(Kind::PeerConfig, None, "web"));
        let services: alloc::vec::Vec<_> = objects.services.keys().cloned().collect();
        assert_eq!(services, [("prod".into(), "web".into())]);
        assert!(objects.nodes.contains_key("web"));
        let node = Object::Node(objects.nodes["web"].clone());
        assert_eq!(node.kind(), Kind::Node);
        let meta = node.metadata();
        assert!(objects.remove(node.kind(), meta.namespace.as_deref(), &meta.name));
        assert!(objects.nodes.is_empty());
    }
}
