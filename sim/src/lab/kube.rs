//! Kubernetes objects a lab applies: `Node`, `Pod`, `Deployment`, `Service`,
//! and Cilium's `CiliumLoadBalancerIPPool`, `CiliumBGPClusterConfig`,
//! `CiliumBGPPeerConfig` and `CiliumBGPAdvertisement` (the Cilium kinds read
//! with router-core's [`router_core::cilium`] types, the agent's own).
//!
//! Manifests are read as `kubectl apply` would take them: multi-document YAML,
//! fields the simulator has no use for are accepted and ignored (they are
//! Kubernetes' schema, not ours), but a kind we do not know, or a field with a
//! value of the wrong type, is an error naming the file, the document's line
//! and the field path. What the objects mean is [`crate::cluster`]'s business.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use router_core::cilium::meta::TypeMeta;
use router_core::cilium::{Kind, Object as CiliumObject};
use serde::Deserialize;

use super::error::LabError;

/// Object metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Meta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (`default` when absent).
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Meta {
    /// The namespace, `default` when absent.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// A container: its image decides which application the simulator runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image, e.g. `traefik/whoami`.
    pub image: String,
}

/// The part of a pod spec the simulator uses.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// Pin to a node.
    pub node_name: Option<String>,
    /// Node label selector.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Containers.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// Affinity rules; any `podAntiAffinity` spreads replicas over nodes.
    pub affinity: Option<serde_norway::Value>,
}

/// A pod template.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PodTemplate {
    /// Template metadata (labels).
    #[serde(default)]
    pub metadata: Meta,
    /// Pod spec.
    #[serde(default)]
    pub spec: PodSpec,
}

/// A label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    /// Labels that must match.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Deployment spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Replicas (default 1).
    pub replicas: Option<u32>,
    /// Pod selector.
    #[serde(default)]
    pub selector: Selector,
    /// Pod template.
    pub template: PodTemplate,
}

/// A service port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Service port.
    pub port: u16,
    /// Backend port (defaults to `port`). Named ports are not supported.
    pub target_port: Option<u16>,
    /// Protocol (TCP).
    pub protocol: Option<String>,
    /// Port name.
    pub name: Option<String>,
}

/// Service spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Backend selector.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// A fixed ClusterIP, else one is allocated.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<Ipv4Addr>,
    /// `Cluster` (default) or `Local`.
    pub external_traffic_policy: Option<String>,
}

/// One Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A node: name and labels.
    Node(Meta),
    /// A bare pod.
    Pod(Meta, PodSpec),
    /// A deployment.
    Deployment(Meta, DeploymentSpec),
    /// A service.
    Service(Meta, ServiceSpec),
    /// An object read with router-core's types: the Cilium BGP kinds and
    /// `CiliumLoadBalancerIPPool`.
    Cilium(CiliumObject),
}

impl Object {
    /// `Kind/namespace/name`, as people refer to objects.
    pub fn id(&self) -> String {
        let (kind, m) = match self {
            Object::Node(m) => return format!("Node/{}", m.name),
            Object::Cilium(o) => return cilium_id(o),
            Object::Pod(m, _) => ("Pod", m),
            Object::Deployment(m, _) => ("Deployment", m),
            Object::Service(m, _) => ("Service", m),
        };
        format!("{kind}/{}/{}", m.namespace(), m.name)
    }
}

#[derive(Deserialize)]
struct Typed<S> {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: S,
}

#[derive(Deserialize, Default)]
struct NoSpec {}

/// Read every object of a multi-document manifest.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Object>, LabError> {
    let mut objects = Vec::new();
    let starts = document_lines(text);
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let line = starts.get(i).copied();
        let doc_err = |key: Option<String>, message: String| LabError {
            file: file.to_path_buf(),
            line,
            key,
            message,
        };
        let value = serde_norway::Value::deserialize(doc).map_err(|e| LabError::yaml(file, &e))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| {
                doc_err(
                    Some("kind".into()),
                    format!("document {} has no kind", i + 1),
                )
            })?
            .to_string();
        fn typed<S: for<'de> Deserialize<'de> + Default>(
            value: serde_norway::Value,
        ) -> Result<Typed<S>, (String, String)> {
            serde_path_to_error::deserialize(value)
                .map_err(|e| (e.path().to_string(), e.inner().to_string()))
        }
        let object = match kind.as_str() {
            "Node" => typed::<NoSpec>(value).map(|t| Object::Node(t.metadata)),
            "Pod" => typed::<PodSpec>(value).map(|t| Object::Pod(t.metadata, t.spec)),
            "Deployment" => typed::<Option<DeploymentSpec>>(value).and_then(|t| match t.spec {
                Some(spec) => Ok(Object::Deployment(t.metadata, spec)),
                None => Err((
                    "spec".into(),
                    "a Deployment needs a spec with a template".into(),
                )),
            }),
            "Service" => typed::<ServiceSpec>(value).map(|t| Object::Service(t.metadata, t.spec)),
            "CiliumLoadBalancerIPPool"
            | "CiliumBGPClusterConfig"
            | "CiliumBGPPeerConfig"
            | "CiliumBGPAdvertisement" => cilium(value),
            other => Err((
                "kind".into(),
                format!(
                    "kind {other:?} is not supported (Node, Pod, Deployment, Service, CiliumLoadBalancerIPPool, CiliumBGPClusterConfig, CiliumBGPPeerConfig, CiliumBGPAdvertisement)"
                ),
            )),
        }
        .map_err(|(key, message)| doc_err(Some(key), message))?;
        let name_missing = match &object {
            Object::Node(m)
            | Object::Pod(m, _)
            | Object::Deployment(m, _)
            | Object::Service(m, _) => m.name.is_empty(),
            Object::Cilium(o) => cilium_id(o).ends_with('/'),
        };
        if name_missing {
            return Err(doc_err(
                Some("metadata.name".into()),
                format!("{kind} without a name"),
            ));
        }
        objects.push(object);
    }
    Ok(objects)
}

/// Read a Cilium object with router-core's types; errors name the field path.
fn cilium(value: serde_norway::Value) -> Result<Object, (String, String)> {
    let meta = TypeMeta {
        api_version: value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        kind: value
            .get("kind")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
    };
    let kind = Kind::of(&meta).ok_or_else(|| {
        (
            "apiVersion".to_string(),
            format!(
                "{} needs apiVersion cilium.io/v2 (or v2alpha1), not {:?}",
                meta.kind, meta.api_version
            ),
        )
    })?;
    let mut track = serde_path_to_error::Track::new();
    kind.deserialize(serde_path_to_error::Deserializer::new(value, &mut track))
        .map(Object::Cilium)
        .map_err(|e| (track.path().to_string(), e.to_string()))
}

/// `Kind/name` of a Cilium object.
fn cilium_id(o: &CiliumObject) -> String {
    let (kind, name) = match o {
        CiliumObject::ClusterConfig(c) => ("CiliumBGPClusterConfig", &c.metadata.name),
        CiliumObject::PeerConfig(c) => ("CiliumBGPPeerConfig", &c.metadata.name),
        CiliumObject::Advertisement(c) => ("CiliumBGPAdvertisement", &c.metadata.name),
        CiliumObject::Node(c) => ("Node", &c.metadata.name),
        CiliumObject::Service(c) => ("Service", &c.metadata.name),
        CiliumObject::Secret(c) => ("Secret", &c.metadata.name),
        CiliumObject::CiliumNode(c) => ("CiliumNode", &c.metadata.name),
        CiliumObject::EndpointSlice(c) => ("EndpointSlice", &c.metadata.name),
        CiliumObject::LoadBalancerIPPool(c) => ("CiliumLoadBalancerIPPool", &c.metadata.name),
    };
    format!("{kind}/{name}")
}

/// The 1-based line each YAML document starts on (the line after its `---`).
fn document_lines(text: &str) -> Vec<usize> {
    let mut starts = vec![1];
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("---") {
            if n == 0 {
                starts[0] = 2;
            } else {
                starts.push(n + 2);
            }
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"apiVersion: v1
kind: Node
metadata:
  name: k8s-ctr
  labels: { enable-bgp: "true" }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webpod
spec:
  replicas: 3
  selector:
    matchLabels: { app: webpod }
  template:
    metadata:
      labels: { app: webpod }
    spec:
      affinity:
        podAntiAffinity: {}
      containers:
        - name: webpod
          image: traefik/whoami
          ports: [{ containerPort: 80 }]
---
apiVersion: v1
kind: Service
metadata:
  name: webpod
spec:
  selector: { app: webpod }
  ports: [{ port: 80, targetPort: 80 }]
"#;

    #[test]
    fn reads_nodes_deployments_services() {
        let objs = parse(Path::new("k8s.yaml"), MANIFEST).unwrap();
        assert_eq!(objs.len(), 3);
        assert_eq!(objs[0].id(), "Node/k8s-ctr");
        let Object::Deployment(_, d) = &objs[1] else {
            panic!("a deployment")
        };
        assert_eq!(d.replicas, Some(3));
        assert_eq!(d.template.spec.containers[0].image, "traefik/whoami");
        assert_eq!(objs[2].id(), "Service/default/webpod");
    }

    #[test]
    fn reads_load_balancer_pools() {
        let pool = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: { name: cilium-pool }\nspec:\n  allowFirstLastIPs: \"No\"\n  blocks:\n  - cidr: 172.16.1.0/24\n  - { start: 192.168.10.211, stop: 192.168.10.215 }\n  serviceSelector: { matchLabels: { app: webpod } }\n";
        let objs = parse(Path::new("pool.yaml"), pool).unwrap();
        let Object::Cilium(CiliumObject::LoadBalancerIPPool(p)) = &objs[0] else {
            panic!("a pool")
        };
        assert_eq!(objs[0].id(), "CiliumLoadBalancerIPPool/cilium-pool");
        assert_eq!(p.blocks().len(), 2);
        assert!(p.spec.service_selector.is_some());
        let bad = pool.replace("stop: 192.168.10.215", "stop: 192.168.10.1");
        let e = parse(Path::new("pool.yaml"), &bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("spec.blocks[1]"), "{e}");
        let bad = pool.replace("\"No\"", "maybe");
        let e = parse(Path::new("pool.yaml"), &bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("spec.allowFirstLastIPs"), "{e}");
        let bad = pool.replace("cilium.io/v2", "v1");
        let e = parse(Path::new("pool.yaml"), &bad).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("apiVersion"), "{e}");
    }

    #[test]
    fn bad_values_name_document_line_and_field() {
        let bad = MANIFEST.replace("replicas: 3", "replicas: three");
        let e = parse(Path::new("k8s.yaml"), &bad).unwrap_err();
        assert_eq!(e.line, Some(7));
        assert_eq!(e.key.as_deref(), Some("spec.replicas"));
        let bad = MANIFEST.replace("kind: Service", "kind: Ingress");
        let e = parse(Path::new("k8s.yaml"), &bad).unwrap_err();
        assert!(e.message.contains("Ingress"), "{e}");
        assert_eq!(e.line, Some(26));
    }
}
