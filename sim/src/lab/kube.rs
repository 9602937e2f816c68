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

use router_core::cilium::kube::{Service, TargetPort};
use router_core::cilium::meta::TypeMeta;
use router_core::cilium::selector::LabelSelector;
use router_core::cilium::{Kind, Object as CoreObject};
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

/// Deployment spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// Replicas (default 1).
    pub replicas: Option<u32>,
    /// Pod selector (the template's labels are what pods get).
    #[serde(default)]
    pub selector: LabelSelector,
    /// Pod template.
    pub template: PodTemplate,
}

/// One Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A bare pod.
    Pod(Meta, PodSpec),
    /// A deployment.
    Deployment(Meta, DeploymentSpec),
    /// An object of a kind router-core reads, with router-core's types (the
    /// agent's own): `Node`, `Service`, `CiliumLoadBalancerIPPool` and the
    /// Cilium BGP kinds.
    Core(CoreObject),
}

impl Object {
    /// `Kind/namespace/name` (`Kind/name` for cluster-scoped kinds), as
    /// people refer to objects.
    pub fn id(&self) -> String {
        let (kind, m) = match self {
            Object::Core(o) => return core_id(o),
            Object::Pod(m, _) => ("Pod", m),
            Object::Deployment(m, _) => ("Deployment", m),
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
        let named = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .is_some_and(|n| !n.is_empty());
        if !named {
            return Err(doc_err(
                Some("metadata.name".into()),
                format!("{kind} without a name"),
            ));
        }
        fn typed<S: for<'de> Deserialize<'de> + Default>(
            value: serde_norway::Value,
        ) -> Result<Typed<S>, (String, String)> {
            serde_path_to_error::deserialize(value)
                .map_err(|e| (e.path().to_string(), e.inner().to_string()))
        }
        let object = match kind.as_str() {
            "Pod" => typed::<PodSpec>(value).map(|t| Object::Pod(t.metadata, t.spec)),
            "Deployment" => typed::<Option<DeploymentSpec>>(value).and_then(|t| match t.spec {
                Some(spec) => Ok(Object::Deployment(t.metadata, spec)),
                None => Err((
                    "spec".into(),
                    "a Deployment needs a spec with a template".into(),
                )),
            }),
            "Node"
            | "Service"
            | "CiliumLoadBalancerIPPool"
            | "CiliumBGPClusterConfig"
            | "CiliumBGPPeerConfig"
            | "CiliumBGPAdvertisement"
            | "CiliumBGPNodeConfigOverride"
            | "CiliumL2AnnouncementPolicy" => core(value),
            other => Err((
                "kind".into(),
                format!(
                    "kind {other:?} is not supported (Node, Pod, Deployment, Service, CiliumLoadBalancerIPPool, CiliumBGPClusterConfig, CiliumBGPPeerConfig, CiliumBGPAdvertisement, CiliumBGPNodeConfigOverride, CiliumL2AnnouncementPolicy)"
                ),
            )),
        }
        .map_err(|(key, message)| doc_err(Some(key), message))?;
        objects.push(object);
    }
    Ok(objects)
}

/// Read an object of a kind router-core reads with router-core's types;
/// errors name the field path. A Service must also be one the simulator can
/// run: an IPv4 `clusterIP` (or none, to have one allocated) and numeric
/// `targetPort`s.
fn core(value: serde_norway::Value) -> Result<Object, (String, String)> {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let meta = TypeMeta {
        api_version: text("apiVersion"),
        kind: text("kind"),
    };
    let kind = Kind::of(&meta).ok_or_else(|| {
        let wanted = if meta.kind.starts_with("Cilium") {
            "cilium.io/v2 (or v2alpha1)"
        } else {
            "v1"
        };
        (
            "apiVersion".to_string(),
            format!(
                "{} needs apiVersion {wanted}, not {:?}",
                meta.kind, meta.api_version
            ),
        )
    })?;
    let mut track = serde_path_to_error::Track::new();
    let object = kind
        .deserialize(serde_path_to_error::Deserializer::new(value, &mut track))
        .map_err(|e| (track.path().to_string(), e.to_string()))?;
    if let CoreObject::Service(svc) = &object {
        simulated_service(svc)?;
    }
    Ok(Object::Core(object))
}

/// Whether the simulator can run `svc` (the field and why, if not).
fn simulated_service(svc: &Service) -> Result<(), (String, String)> {
    if let Some(ip) = &svc.spec.cluster_ip
        && ip.parse::<Ipv4Addr>().is_err()
    {
        return Err((
            "spec.clusterIP".into(),
            format!(
                "{ip:?} is not an IPv4 address (the simulator has no headless or IPv6 services)"
            ),
        ));
    }
    for (i, port) in svc.spec.ports.iter().enumerate() {
        if let Some(TargetPort::Name(name)) = &port.target_port {
            return Err((
                format!("spec.ports[{i}].targetPort"),
                format!("named target ports are not supported ({name:?})"),
            ));
        }
    }
    Ok(())
}

/// `Kind/name` of an object read with router-core's types
/// (`Kind/namespace/name` for namespaced kinds).
fn core_id(o: &CoreObject) -> String {
    let (kind, m) = (o.kind(), o.metadata());
    match kind {
        Kind::Service | Kind::Secret | Kind::EndpointSlice => {
            let namespace = m.namespace.as_deref().unwrap_or("default");
            format!("{}/{namespace}/{}", kind.name(), m.name)
        }
        _ => o.id(),
    }
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
        let Object::Core(CoreObject::LoadBalancerIPPool(p)) = &objs[0] else {
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
    fn nodes_and_services_are_router_core_objects_the_simulator_can_run() {
        let objs = parse(Path::new("k8s.yaml"), MANIFEST).unwrap();
        let Object::Core(CoreObject::Service(svc)) = &objs[2] else {
            panic!("a service")
        };
        assert_eq!(svc.spec.selector["app"], "webpod");
        assert_eq!(svc.spec.ports[0].target_port, Some(TargetPort::Number(80)));
        let cases = [
            (
                "targetPort: 80",
                "targetPort: http",
                "spec.ports[0].targetPort",
            ),
            (
                "ports: [{ port: 80",
                "clusterIP: None\n  ports: [{ port: 80",
                "spec.clusterIP",
            ),
            (
                "ports: [{ port: 80",
                "ports: [{ port: http",
                "spec.ports[0].port",
            ),
        ];
        for (from, to, key) in cases {
            let e = parse(Path::new("k8s.yaml"), &MANIFEST.replace(from, to)).unwrap_err();
            assert_eq!((e.line, e.key.as_deref()), (Some(26), Some(key)), "{e}");
        }
        let e = parse(Path::new("k8s.yaml"), &MANIFEST.replacen("v1", "v2", 1)).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("apiVersion"), "{e}");
        assert!(e.message.contains("needs apiVersion v1"), "{e}");
        let e = parse(
            Path::new("k8s.yaml"),
            &MANIFEST.replace("name: k8s-ctr", "uid: x"),
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("metadata.name"), "{e}");
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
