//! The core Kubernetes objects and Cilium's `CiliumNode` and
//! `CiliumEndpoint` that the control plane reads: nodes (labels, addresses,
//! pod CIDRs), services (the addresses it may advertise), secrets (TCP MD5
//! passwords) and endpoints (pods' identities and addresses, for naming flows).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

use super::meta::{ObjectMeta, option_from_str, vec_from_str};
use crate::base64::decode as base64_decode;

/// A Kubernetes `Node` (core/v1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Node {
    /// Name and labels (the BGP node selectors match these labels).
    pub metadata: ObjectMeta,
    /// The pod CIDRs Kubernetes' own IPAM assigned.
    #[serde(default)]
    pub spec: NodeSpec,
    /// The node's addresses.
    #[serde(default)]
    pub status: NodeStatus,
}

/// `Node.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    /// `spec.podCIDRs`.
    #[serde(default, rename = "podCIDRs", deserialize_with = "vec_from_str")]
    pub pod_cidrs: Vec<IpNet>,
}

/// `Node.status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct NodeStatus {
    /// `status.addresses`.
    #[serde(default)]
    pub addresses: Vec<NodeAddress>,
}

/// One `Node.status.addresses` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The address (an IP for the IP types, a name for `Hostname`).
    pub address: String,
}

impl Node {
    /// The node's first `InternalIP` that is an IPv4 address: Cilium's
    /// default BGP router ID.
    pub fn internal_ipv4(&self) -> Option<Ipv4Addr> {
        self.status
            .addresses
            .iter()
            .filter(|a| a.kind == "InternalIP")
            .find_map(|a| a.address.parse().ok())
    }
}

/// A `CiliumNode` (cilium.io/v2): the pod CIDRs Cilium's own IPAM assigned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CiliumNode {
    /// Named after its Kubernetes node.
    pub metadata: ObjectMeta,
    /// `spec.ipam`.
    #[serde(default)]
    pub spec: CiliumNodeSpec,
}

/// `CiliumNode.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CiliumNodeSpec {
    /// `spec.ipam`.
    #[serde(default)]
    pub ipam: CiliumNodeIpam,
}

/// `CiliumNode.spec.ipam`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CiliumNodeIpam {
    /// `spec.ipam.podCIDRs`.
    #[serde(default, rename = "podCIDRs", deserialize_with = "vec_from_str")]
    pub pod_cidrs: Vec<IpNet>,
}

/// A `CiliumEndpoint` (cilium.io/v2): a pod as its node's agent publishes
/// it, with its security identity and addresses; what the other nodes name
/// its traffic by (their ipcache).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CiliumEndpoint {
    /// Named (and namespaced) after its pod.
    pub metadata: ObjectMeta,
    /// Identity and addresses.
    #[serde(default)]
    pub status: CiliumEndpointStatus,
}

/// `CiliumEndpoint.status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct CiliumEndpointStatus {
    /// `status.identity`.
    #[serde(default)]
    pub identity: EndpointIdentity,
    /// `status.networking`.
    #[serde(default)]
    pub networking: EndpointNetworking,
}

/// `CiliumEndpoint.status.identity`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointIdentity {
    /// The numeric security identity.
    #[serde(default)]
    pub id: u32,
    /// Its labels (`k8s:app=webpod`).
    #[serde(default)]
    pub labels: Vec<String>,
}

/// `CiliumEndpoint.status.networking`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointNetworking {
    /// The pod's addresses.
    #[serde(default)]
    pub addressing: Vec<EndpointAddressing>,
    /// The address of the node the pod runs on.
    #[serde(default, rename = "node")]
    pub node_ip: Option<IpAddr>,
}

/// One entry of `status.networking.addressing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointAddressing {
    /// IPv4 address.
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address.
    #[serde(default)]
    pub ipv6: Option<Ipv6Addr>,
}

impl CiliumEndpoint {
    /// The pod's addresses.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.status.networking.addressing.iter().flat_map(|a| {
            a.ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain(a.ipv6.map(IpAddr::V6))
        })
    }
}

/// A Kubernetes `Service` (core/v1): what a Service advertisement can
/// announce. `status.loadBalancer` is filled by LB-IPAM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Service {
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// Addresses and traffic policies.
    #[serde(default)]
    pub spec: ServiceSpec,
    /// The allocated load-balancer addresses.
    #[serde(default)]
    pub status: ServiceStatus,
}

/// `Service.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `spec.clusterIP`; `None` (the string) for headless services.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// `spec.clusterIPs` (dual stack).
    #[serde(default, rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    /// `spec.externalIPs`.
    #[serde(default, rename = "externalIPs", deserialize_with = "vec_from_str")]
    pub external_ips: Vec<IpAddr>,
    /// Only services without a class, or of Cilium's BGP class, are announced.
    #[serde(default)]
    pub load_balancer_class: Option<String>,
    /// `Cluster` (the default) or `Local`.
    #[serde(default)]
    pub external_traffic_policy: Option<String>,
    /// `Cluster` (the default) or `Local`.
    #[serde(default)]
    pub internal_traffic_policy: Option<String>,
    /// `spec.ports` (two services sharing an LB address may not overlap).
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `spec.selector`: the labels of the pods that back the service.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// `None` (the default) or `ClientIP`.
    #[serde(default)]
    pub session_affinity: Option<String>,
    /// `spec.sessionAffinityConfig`: the `ClientIP` timeout.
    #[serde(default)]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// `spec.allocateLoadBalancerNodePorts`: whether a `LoadBalancer`
    /// service gets NodePorts (the default) or not.
    #[serde(default)]
    pub allocate_load_balancer_node_ports: Option<bool>,
}

/// `Service.spec.sessionAffinityConfig`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SessionAffinityConfig {
    /// `clientIP`.
    #[serde(default, rename = "clientIP")]
    pub client_ip: Option<ClientIpConfig>,
}

/// `Service.spec.sessionAffinityConfig.clientIP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIpConfig {
    /// How long a client sticks to its backend after its last connection,
    /// seconds (Kubernetes: 10800 by default, at most 86400).
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

/// One `Service.spec.ports` entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ServicePort {
    /// The port's name.
    #[serde(default)]
    pub name: Option<String>,
    /// `TCP` (the default), `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// The service port.
    pub port: u16,
    /// The backends' port; `port` when absent.
    #[serde(default, rename = "targetPort")]
    pub target_port: Option<TargetPort>,
    /// `nodePort`: the port on every node (NodePort and LoadBalancer
    /// services); allocated when absent.
    #[serde(default, rename = "nodePort")]
    pub node_port: Option<u16>,
}

/// `targetPort`: a number, or the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port's name.
    Name(String),
}

impl ServicePort {
    /// The protocol, `TCP` when unset.
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("TCP")
    }
}

/// `Service.status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `status.loadBalancer`.
    #[serde(default)]
    pub load_balancer: LoadBalancerStatus,
}

/// `Service.status.loadBalancer`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct LoadBalancerStatus {
    /// `status.loadBalancer.ingress`.
    #[serde(default)]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// One load-balancer ingress point.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct LoadBalancerIngress {
    /// The address, when the ingress point is an IP.
    #[serde(default, deserialize_with = "option_from_str")]
    pub ip: Option<IpAddr>,
}

/// The load-balancer class Cilium's BGP control plane announces besides
/// class-less services.
pub const BGP_LOAD_BALANCER_CLASS: &str = "io.cilium/bgp-control-plane";

impl Service {
    /// The labels Service advertisement selectors match: the service's own
    /// plus `io.kubernetes.service.name` and `io.kubernetes.service.namespace`,
    /// as Cilium adds them.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.metadata.labels.clone();
        labels.insert(
            "io.kubernetes.service.name".into(),
            self.metadata.name.clone(),
        );
        labels.insert(
            "io.kubernetes.service.namespace".into(),
            self.namespace().into(),
        );
        labels
    }

    /// The namespace, `default` when unset.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// The cluster IPs (`clusterIPs`, else `clusterIP`), without `None`.
    pub fn cluster_ips(&self) -> Vec<IpAddr> {
        let listed = if self.spec.cluster_ips.is_empty() {
            self.spec.cluster_ip.iter().cloned().collect()
        } else {
            self.spec.cluster_ips.clone()
        };
        listed.iter().filter_map(|ip| ip.parse().ok()).collect()
    }

    /// The load-balancer ingress IPs, for a `LoadBalancer` service whose class
    /// Cilium's BGP control plane handles.
    pub fn load_balancer_ips(&self) -> Vec<IpAddr> {
        let class_ok = self
            .spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == BGP_LOAD_BALANCER_CLASS);
        if self.spec.kind.as_deref() != Some("LoadBalancer") || !class_ok {
            return Vec::new();
        }
        let ingress = &self.status.load_balancer.ingress;
        ingress.iter().filter_map(|i| i.ip).collect()
    }

    /// `externalTrafficPolicy: Local`.
    pub fn external_traffic_local(&self) -> bool {
        self.spec.external_traffic_policy.as_deref() == Some("Local")
    }

    /// `internalTrafficPolicy: Local`.
    pub fn internal_traffic_local(&self) -> bool {
        self.spec.internal_traffic_policy.as_deref() == Some("Local")
    }

    /// `sessionAffinity: ClientIP`: its timeout in seconds (Kubernetes'
    /// 10800 when `sessionAffinityConfig` does not set one); `None` without
    /// affinity.
    pub fn client_ip_affinity_seconds(&self) -> Option<u32> {
        if self.spec.session_affinity.as_deref() != Some("ClientIP") {
            return None;
        }
        let configured = self
            .spec
            .session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds);
        Some(configured.unwrap_or(crate::service::affinity::DEFAULT_TIMEOUT_SECONDS))
    }

    /// Whether the service has NodePorts: type `NodePort`, or `LoadBalancer`
    /// unless `allocateLoadBalancerNodePorts: false`.
    pub fn has_node_ports(&self) -> bool {
        match self.spec.kind.as_deref() {
            Some("NodePort") => true,
            Some("LoadBalancer") => self.spec.allocate_load_balancer_node_ports != Some(false),
            _ => false,
        }
    }
}

/// The label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A discovery.k8s.io/v1 `EndpointSlice`: some of a Service's endpoints,
/// each with its addresses, readiness and node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Name, namespace and labels (`kubernetes.io/service-name`).
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default)]
    pub address_type: String,
    /// The endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// The ports every endpoint serves.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Its addresses (one, in practice).
    #[serde(default, deserialize_with = "vec_from_str")]
    pub addresses: Vec<IpAddr>,
    /// Ready, serving, terminating.
    #[serde(default)]
    pub conditions: EndpointConditions,
    /// The node it runs on.
    #[serde(default)]
    pub node_name: Option<String>,
    /// The zone it runs in.
    #[serde(default)]
    pub zone: Option<String>,
}

/// An endpoint's conditions; an absent condition means true for `ready`
/// and `serving` and false for `terminating`, as the API defines them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointConditions {
    /// Ready to take new connections.
    #[serde(default)]
    pub ready: Option<bool>,
    /// Serving, even while terminating.
    #[serde(default)]
    pub serving: Option<bool>,
    /// Being deleted.
    #[serde(default)]
    pub terminating: Option<bool>,
}

/// One port of a slice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EndpointPort {
    /// The port's name, matching the Service port's.
    #[serde(default)]
    pub name: Option<String>,
    /// The port number.
    #[serde(default)]
    pub port: Option<u16>,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: Option<String>,
}

impl EndpointSlice {
    /// The Service it belongs to: (namespace, name), from its label.
    pub fn service(&self) -> Option<(String, String)> {
        let name = self.metadata.labels.get(SERVICE_NAME_LABEL)?;
        let namespace = self.metadata.namespace.as_deref().unwrap_or("default");
        Some((namespace.into(), name.clone()))
    }
}

impl Endpoint {
    /// Whether traffic may be sent to it: ready and not terminating.
    pub fn is_active(&self) -> bool {
        self.conditions.ready != Some(false) && self.conditions.terminating != Some(true)
    }
}

/// A Kubernetes `Secret` (core/v1) holding a BGP password under the key
/// `password`, in `data` (base64) or `stringData` (plain).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// Base64-encoded values.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// Plain values; they win over `data` (as the API server merges them).
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
}

/// The namespace Cilium reads BGP secrets from (`bgp-secrets-namespace`).
pub const BGP_SECRETS_NAMESPACE: &str = "kube-system";

/// Why a secret yields no password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretError {
    /// Neither `data` nor `stringData` has the key.
    MissingKey(&'static str),
    /// `data.<key>` is not valid base64 or not UTF-8.
    BadBase64(&'static str),
}

impl core::fmt::Display for SecretError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SecretError::MissingKey(key) => write!(f, "no data.{key} or stringData.{key}"),
            SecretError::BadBase64(key) => write!(f, "data.{key} is not base64-encoded UTF-8"),
        }
    }
}

impl Secret {
    /// The value of `password`.
    pub fn password(&self) -> Result<String, SecretError> {
        const KEY: &str = "password";
        if let Some(plain) = self.string_data.get(KEY) {
            return Ok(plain.clone());
        }
        let encoded = self.data.get(KEY).ok_or(SecretError::MissingKey(KEY))?;
        let bytes = base64_decode(encoded).ok_or(SecretError::BadBase64(KEY))?;
        String::from_utf8(bytes).map_err(|_| SecretError::BadBase64(KEY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_password_prefers_string_data() {
        let mut secret = Secret::default();
        assert_eq!(secret.password(), Err(SecretError::MissingKey("password")));
        secret.data.insert("password".into(), "czNjcjN0".into());
        assert_eq!(secret.password().as_deref(), Ok("s3cr3t"));
        secret.string_data.insert("password".into(), "plain".into());
        assert_eq!(secret.password().as_deref(), Ok("plain"));
        secret.string_data.clear();
        secret.data.insert("password".into(), "!!".into());
        assert_eq!(secret.password(), Err(SecretError::BadBase64("password")));
    }

    #[test]
    fn node_router_id_is_the_first_internal_ipv4() {
        let node = Node {
            status: NodeStatus {
                addresses: alloc::vec![
                    NodeAddress {
                        kind: "Hostname".into(),
                        address: "k8s-w0".into()
                    },
                    NodeAddress {
                        kind: "InternalIP".into(),
                        address: "fd00::1".into()
                    },
                    NodeAddress {
                        kind: "InternalIP".into(),
                        address: "192.168.20.100".into()
                    },
                ],
            },
            ..Node::default()
        };
        assert_eq!(node.internal_ipv4(), Some(Ipv4Addr::new(192, 168, 20, 100)));
    }

    #[test]
    fn service_addresses_follow_type_and_class() {
        let mut svc = Service {
            metadata: ObjectMeta::named("webpod"),
            ..Service::default()
        };
        svc.spec.cluster_ip = Some("10.96.54.159".into());
        svc.status.load_balancer.ingress.push(LoadBalancerIngress {
            ip: Some("172.16.1.1".parse().unwrap()),
        });
        assert_eq!(
            svc.cluster_ips(),
            ["10.96.54.159".parse::<IpAddr>().unwrap()]
        );
        assert!(svc.load_balancer_ips().is_empty(), "not a LoadBalancer");
        svc.spec.kind = Some("LoadBalancer".into());
        assert_eq!(
            svc.load_balancer_ips(),
            ["172.16.1.1".parse::<IpAddr>().unwrap()]
        );
        svc.spec.load_balancer_class = Some("other".into());
        assert!(svc.load_balancer_ips().is_empty());
        svc.spec.cluster_ip = Some("None".into());
        assert!(svc.cluster_ips().is_empty());
        let labels = svc.selector_labels();
        assert_eq!(labels["io.kubernetes.service.name"], "webpod");
        assert_eq!(labels["io.kubernetes.service.namespace"], "default");
    }

    #[test]
    fn service_ports_and_selector_decode() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec:\n  selector: { app: web }\n  ports:\n  - { port: 80, targetPort: 8080 }\n  - { name: dns, port: 53, protocol: UDP, targetPort: dns }\n  - { port: 443 }\n";
        let objects = crate::cilium::objects::tests::parse(yaml).unwrap();
        let spec = &objects.services[&("default".into(), "web".into())].spec;
        assert_eq!(spec.selector["app"], "web");
        let targets: Vec<_> = spec.ports.iter().map(|p| p.target_port.clone()).collect();
        assert_eq!(
            targets,
            [
                Some(TargetPort::Number(8080)),
                Some(TargetPort::Name("dns".into())),
                None
            ]
        );
        assert_eq!(spec.ports[1].protocol(), "UDP");
        assert_eq!(spec.ports[2].protocol(), "TCP");
    }

    #[test]
    fn node_ports_and_session_affinity_decode() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec:\n  type: NodePort\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } }\n  ports:\n  - { port: 80, nodePort: 30285 }\n  - { port: 81 }\n";
        let objects = crate::cilium::objects::tests::parse(yaml).unwrap();
        let svc = &objects.services[&("default".into(), "web".into())];
        let node_ports: Vec<_> = svc.spec.ports.iter().map(|p| p.node_port).collect();
        assert_eq!(node_ports, [Some(30285), None]);
        assert_eq!(svc.client_ip_affinity_seconds(), Some(600));
        assert!(svc.has_node_ports());
        let mut svc = svc.clone();
        svc.spec.session_affinity_config = None;
        assert_eq!(svc.client_ip_affinity_seconds(), Some(10800));
        svc.spec.session_affinity = Some("None".into());
        assert_eq!(svc.client_ip_affinity_seconds(), None);
        svc.spec.kind = Some("LoadBalancer".into());
        assert!(svc.has_node_ports());
        svc.spec.allocate_load_balancer_node_ports = Some(false);
        assert!(!svc.has_node_ports());
        svc.spec.kind = None;
        assert!(!svc.has_node_ports());
    }
}
