//! The selection logic: from every object and a node's name to the BGP
//! instances that node runs, each peer's resolved settings, and the prefixes
//! it originates towards each peer. Pure: no IO, no clock.
//!
//! The rules follow Cilium's BGP control plane v2: a cluster config applies
//! to the nodes its `nodeSelector` matches (all nodes when absent; when
//! several match, the first by name wins); a peer takes its settings from its
//! `peerConfigRef` (Cilium's defaults without one); a peer-config family
//! carries the advertisements its label selector matches; `PodCIDR`
//! advertises the node's pod CIDRs (the `CiliumNode`'s, else the `Node`'s),
//! `Service` the selected services' addresses of the listed types, honouring
//! `externalTrafficPolicy`/`internalTrafficPolicy: Local`.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::bgp::{
    AdvertisementEntry, AdvertisementType, Afi, FamilyAdvertisements, PeerConfigSpec, Safi,
    ServiceAddressType,
};
use super::kube::{BGP_SECRETS_NAMESPACE, Service};
use super::objects::Objects;
use crate::bgp::wire::{Community, LargeCommunity};

/// Cilium's default connect-retry time, seconds.
pub const DEFAULT_CONNECT_RETRY: u32 = 120;
/// Cilium's default hold time, seconds.
pub const DEFAULT_HOLD_TIME: u32 = 90;
/// Cilium's default keepalive interval, seconds.
pub const DEFAULT_KEEPALIVE: u32 = 30;
/// Cilium's default graceful-restart time, seconds.
pub const DEFAULT_RESTART_TIME: u16 = 120;
/// The BGP port.
pub const BGP_PORT: u16 = 179;

/// Services (namespace, name) that have an active endpoint on a node: the
/// ones a `Local` traffic policy lets the node advertise.
pub type LocalEndpoints = BTreeSet<(String, String)>;

/// The services with an active (ready, not terminating) endpoint on `node`,
/// from the EndpointSlices.
pub fn local_endpoints(objects: &Objects, node: &str) -> LocalEndpoints {
    objects
        .endpoint_slices
        .values()
        .filter(|slice| {
            slice
                .endpoints
                .iter()
                .any(|e| e.is_active() && e.node_name.as_deref() == Some(node))
        })
        .filter_map(|slice| slice.service())
        .collect()
}

/// What one node runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredNode {
    /// The node's default router ID (its first IPv4 `InternalIP`).
    pub router_id: Option<Ipv4Addr>,
    /// The cluster config that selected the node.
    pub cluster_config: Option<String>,
    /// The instances, in config order.
    pub instances: Vec<DesiredInstance>,
    /// Configuration problems found on the way (each left out what it names).
    pub issues: Vec<String>,
}

/// One BGP instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredInstance {
    /// `bgpInstances[].name`.
    pub name: String,
    /// The local AS (the node's override, else the cluster config's).
    pub local_asn: u32,
    /// The BGP identifier the node's override gives it (else the node's).
    pub router_id: Option<Ipv4Addr>,
    /// The peers, in config order.
    pub peers: Vec<DesiredPeer>,
}

/// One peer with its settings resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPeer {
    /// `peers[].name`.
    pub name: String,
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's TCP port.
    pub port: u16,
    /// The session's source address the node's override gives it (else
    /// the node's InternalIP of the peer's family).
    pub local_address: Option<IpAddr>,
    /// The peer's AS; `None` accepts the AS its OPEN carries.
    pub peer_asn: Option<u32>,
    /// Timers, seconds.
    pub timers: PeerTimers,
    /// IP TTL for eBGP sessions.
    pub ebgp_multihop: u8,
    /// The graceful-restart time announced, when enabled.
    pub graceful_restart: Option<u16>,
    /// The TCP MD5 password.
    pub password: Option<Password>,
    /// Families with the routes to originate in each.
    pub families: Vec<DesiredFamily>,
}

/// Resolved timers, seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerTimers {
    /// Connect-retry.
    pub connect_retry: u32,
    /// Hold time proposed in our OPEN.
    pub hold: u32,
    /// Keepalive interval.
    pub keepalive: u32,
}

/// A TCP MD5 password; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// One address family of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredFamily {
    /// The AFI.
    pub afi: Afi,
    /// The SAFI.
    pub safi: Safi,
    /// Prefixes to originate and their attributes.
    pub routes: BTreeMap<IpNet, RouteAttributes>,
}

/// Attributes an advertisement attaches to an originated prefix (merged when
/// several advertisements name the same prefix).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteAttributes {
    /// COMMUNITIES.
    pub communities: BTreeSet<Community>,
    /// LARGE_COMMUNITIES.
    pub large_communities: BTreeSet<LargeCommunity>,
    /// LOCAL_PREF (iBGP only); the highest asked for wins.
    pub local_preference: Option<u32>,
    /// Cilium-style export policy names that produced the route, e.g.
    /// `tor-switch-ipv4-PodCIDR`.
    pub policies: BTreeSet<String>,
}

/// The BGP control plane `node` runs given `objects`.
pub fn desired(objects: &Objects, node: &str) -> DesiredNode {
    let mut out = DesiredNode::default();
    let Some(k8s_node) = objects.nodes.get(node) else {
        out.issues
            .push(format!("no Node named {node:?}: no BGP instances"));
        return out;
    };
    out.router_id = k8s_node.internal_ipv4();
    let labels = &k8s_node.metadata.labels;
    let mut selecting = objects.cluster_configs.values().filter(|c| {
        c.spec
            .node_selector
            .as_ref()
            .is_none_or(|s| s.matches(labels))
    });
    let Some(config) = selecting.next() else {
        return out;
    };
    for other in selecting {
        out.issues.push(format!(
            "CiliumBGPClusterConfig {:?} also selects node {node:?}; using {:?}",
            other.metadata.name, config.metadata.name
        ));
    }
    out.cluster_config = Some(config.metadata.name.clone());
    let pod_cidrs = objects.pod_cidrs(node);
    let local_endpoints = local_endpoints(objects, node);
    let context = Context {
        objects,
        pod_cidrs,
        local_endpoints: &local_endpoints,
    };
    let overrides = objects
        .node_overrides
        .get(node)
        .map(|o| &o.spec.bgp_instances[..])
        .unwrap_or_default();
    for o in overrides {
        if !config.spec.bgp_instances.iter().any(|i| i.name == o.name) {
            out.issues.push(format!(
                "CiliumBGPNodeConfigOverride {node:?}: no instance {:?} in CiliumBGPClusterConfig {:?}; override not applied",
                o.name, config.metadata.name
            ));
        }
        if let Some(port) = o.local_port {
            out.issues.push(format!(
                "CiliumBGPNodeConfigOverride {node:?} instance {:?}: localPort {port} is not supported (the node only dials its peers); ignored",
                o.name
            ));
        }
    }
    for instance in &config.spec.bgp_instances {
        let over = overrides.iter().find(|o| o.name == instance.name);
        let Some(local_asn) = over.and_then(|o| o.local_asn).or(instance.local_asn) else {
            out.issues
                .push(format!("bgpInstances {:?} has no localASN", instance.name));
            continue;
        };
        if local_asn == 0 {
            out.issues.push(format!(
                "bgpInstances {:?}: localASN 0 is reserved (RFC 7607); instance not run",
                instance.name
            ));
            continue;
        }
        let mut peers: Vec<DesiredPeer> = Vec::new();
        for peer in &instance.peers {
            if peers.iter().any(|p| p.name == peer.name) {
                out.issues.push(format!(
                    "instance {:?} has two peers named {:?}; the second is not configured",
                    instance.name, peer.name
                ));
                continue;
            }
            let local_address = over
                .and_then(|o| o.peers.iter().find(|p| p.name == peer.name))
                .and_then(|p| p.local_address);
            match context.peer(peer, &mut out.issues) {
                Ok(p) => peers.push(DesiredPeer { local_address, ..p }),
                Err(why) => out.issues.push(format!(
                    "instance {:?} peer {:?}: {why}; peer not configured",
                    instance.name, peer.name
                )),
            }
        }
        out.instances.push(DesiredInstance {
            name: instance.name.clone(),
            local_asn,
            router_id: over.and_then(|o| o.router_id),
            peers,
        });
    }
    out
}

struct Context<'a> {
    objects: &'a Objects,
    pod_cidrs: Vec<IpNet>,
    local_endpoints: &'a LocalEndpoints,
}

impl Context<'_> {
    fn peer(
        &self,
        peer: &super::bgp::Peer,
        issues: &mut Vec<String>,
    ) -> Result<DesiredPeer, String> {
        let address = peer
            .peer_address
            .ok_or("no peerAddress (auto-discovery is not supported)")?;
        let default = PeerConfigSpec::default();
        let spec = match &peer.peer_config_ref {
            None => &default,
            Some(r) => {
                &self
                    .objects
                    .peer_configs
                    .get(&r.name)
                    .ok_or_else(|| format!("CiliumBGPPeerConfig {:?} not found", r.name))?
                    .spec
            }
        };
        let timers = PeerTimers {
            connect_retry: spec
                .timers
                .connect_retry_time_seconds
                .unwrap_or(DEFAULT_CONNECT_RETRY),
            hold: spec.timers.hold_time_seconds.unwrap_or(DEFAULT_HOLD_TIME),
            keepalive: spec
                .timers
                .keep_alive_time_seconds
                .unwrap_or(DEFAULT_KEEPALIVE),
        };
        if timers.hold != 0 && timers.hold < 3 {
            return Err(format!("holdTimeSeconds {} is below 3", timers.hold));
        }
        if timers.keepalive > timers.hold {
            return Err(format!(
                "keepAliveTimeSeconds {} exceeds holdTimeSeconds {}",
                timers.keepalive, timers.hold
            ));
        }
        let password = match &spec.auth_secret_ref {
            None => None,
            Some(name) => Some(Password(self.password(name)?)),
        };
        let default_families = [Afi::Ipv4, Afi::Ipv6].map(|afi| FamilyAdvertisements {
            afi,
            safi: Safi::Unicast,
            advertisements: None,
        });
        let families = if spec.families.is_empty() {
            &default_families[..]
        } else {
            &spec.families[..]
        };
        Ok(DesiredPeer {
            name: peer.name.clone(),
            address,
            port: spec.transport.peer_port.unwrap_or(BGP_PORT),
            local_address: None,
            peer_asn: peer.peer_asn.filter(|&asn| asn != 0),
            timers,
            ebgp_multihop: spec.ebgp_multihop.unwrap_or(1).max(1),
            graceful_restart: spec.graceful_restart.enabled.then(|| {
                spec.graceful_restart
                    .restart_time_seconds
                    .unwrap_or(DEFAULT_RESTART_TIME)
            }),
            password,
            families: families
                .iter()
                .map(|f| self.family(&peer.name, f, issues))
                .collect(),
        })
    }

    fn password(&self, name: &str) -> Result<String, String> {
        let key = (String::from(BGP_SECRETS_NAMESPACE), String::from(name));
        let secret = self
            .objects
            .secrets
            .get(&key)
            .or_else(|| {
                self.objects
                    .secrets
                    .get(&(String::from("default"), name.into()))
            })
            .ok_or_else(|| format!("auth Secret {name:?} not found in {BGP_SECRETS_NAMESPACE}"))?;
        secret
            .password()
            .map_err(|e| format!("auth Secret {name:?}: {e}"))
    }

    fn family(
        &self,
        peer: &str,
        family: &FamilyAdvertisements,
        issues: &mut Vec<String>,
    ) -> DesiredFamily {
        let mut routes: BTreeMap<IpNet, RouteAttributes> = BTreeMap::new();
        let selected = family
            .advertisements
            .as_ref()
            .filter(|_| family.safi == Safi::Unicast);
        let adverts = self
            .objects
            .advertisements
            .values()
            .filter(|a| selected.is_some_and(|s| s.matches(&a.metadata.labels)));
        for advert in adverts {
            for entry in &advert.spec.advertisements {
                if matches!(
                    entry.advertisement_type,
                    AdvertisementType::CiliumPodIPPool | AdvertisementType::Interface
                ) {
                    issues.push(format!(
                        "CiliumBGPAdvertisement {:?}: {:?} advertisements are not supported; skipped",
                        advert.metadata.name, entry.advertisement_type
                    ));
                    continue;
                }
                for (prefix, policy) in self.prefixes(peer, family.afi, entry) {
                    let attrs = routes.entry(prefix).or_default();
                    let c = &entry.attributes.communities;
                    attrs.communities.extend(c.standard.iter().map(|s| s.0));
                    attrs.communities.extend(c.well_known.iter().map(|w| w.0));
                    attrs.large_communities.extend(c.large.iter().map(|l| l.0));
                    attrs.local_preference = attrs
                        .local_preference
                        .max(entry.attributes.local_preference);
                    attrs.policies.insert(policy);
                }
            }
        }
        DesiredFamily {
            afi: family.afi,
            safi: family.safi,
            routes,
        }
    }

    /// The prefixes one advertisement entry yields in `afi`, each with the
    /// export policy name Cilium gives it.
    fn prefixes(&self, peer: &str, afi: Afi, entry: &AdvertisementEntry) -> Vec<(IpNet, String)> {
        match entry.advertisement_type {
            AdvertisementType::PodCIDR => self
                .pod_cidrs
                .iter()
                .filter(|c| afi.contains(c.addr()))
                .map(|&c| (c, format!("{peer}-{afi}-PodCIDR")))
                .collect(),
            AdvertisementType::Service => {
                let Some(selector) = &entry.selector else {
                    return Vec::new();
                };
                let types: BTreeSet<ServiceAddressType> = entry
                    .service
                    .iter()
                    .flat_map(|s| s.addresses.iter().copied())
                    .collect();
                let mut out = Vec::new();
                for svc in self.objects.services.values() {
                    if !selector.matches(&svc.selector_labels()) {
                        continue;
                    }
                    for &kind in &types {
                        let policy = format!(
                            "{peer}-{afi}-Service-{}-{}-{kind}",
                            svc.metadata.name,
                            svc.namespace()
                        );
                        out.extend(
                            self.service_addresses(svc, kind)
                                .into_iter()
                                .filter(|ip| afi.contains(*ip))
                                .map(|ip| (IpNet::from(ip), policy.clone())),
                        );
                    }
                }
                out
            }
            AdvertisementType::CiliumPodIPPool | AdvertisementType::Interface => Vec::new(),
        }
    }

    fn service_addresses(&self, svc: &Service, kind: ServiceAddressType) -> Vec<IpAddr> {
        let key = (String::from(svc.namespace()), svc.metadata.name.clone());
        let local = self.local_endpoints.contains(&key);
        match kind {
            ServiceAddressType::LoadBalancerIP if !svc.external_traffic_local() || local => {
                svc.load_balancer_ips()
            }
            ServiceAddressType::ExternalIP if !svc.external_traffic_local() || local => {
                svc.spec.external_ips.clone()
            }
            ServiceAddressType::ClusterIP if !svc.internal_traffic_local() || local => {
                svc.cluster_ips()
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cilium::objects::tests::parse;
    use alloc::string::ToString;

    /// The seed's lab A (seeds 000 §000.2.4, 003 lab A): the Cilium BGP
    /// resources verbatim (the bundled lab's file), three nodes, CiliumNode
    /// pod CIDRs, the LB service.
    pub(crate) const LAB_A: &str = concat!(
        include_str!("../../../examples/labs/bgp/bgp/cilium-bgp.yaml"),
        r#"---
apiVersion: v1
kind: Node
metadata:
  name: k8s-w0
  labels: {enable-bgp: "true", kubernetes.io/hostname: k8s-w0}
  annotations: {node.alpha.kubernetes.io/ttl: "0"}
spec:
  podCIDR: 10.244.2.0/24
  podCIDRs: [10.244.2.0/24]
status:
  addresses:
  - {type: InternalIP, address: 192.168.20.100}
  - {type: Hostname, address: k8s-w0}
---
apiVersion: cilium.io/v2
kind: CiliumNode
metadata: {name: k8s-w0}
spec:
  ipam: {podCIDRs: [172.20.2.0/24]}
---
apiVersion: v1
kind: Node
metadata:
  name: k8s-w1
  labels: {enable-bgp: "false"}
spec:
  podCIDRs: [10.244.1.0/24]
---
apiVersion: cilium.io/v2
kind: CiliumBGPAdvertisement
metadata:
  name: bgp-advertisements-lb-exip-webpod
  labels:
    advertise: bgp
spec:
  advertisements:
    - advertisementType: "Service"
      service:
        addresses:
          - LoadBalancerIP
      selector:
        matchExpressions:
          - { key: app, operator: In, values: [ webpod ] }
      attributes:
        communities:
          standard: ["65001:100"]
          wellKnown: ["no-export"]
          large: ["65001:1:2"]
---
apiVersion: v1
kind: Service
metadata: {name: webpod, namespace: default, labels: {app: webpod}}
spec: {type: LoadBalancer, clusterIP: 10.96.54.159, externalTrafficPolicy: Cluster}
status: {loadBalancer: {ingress: [{ip: 172.16.1.1}]}}
"#
    );

    pub(crate) fn lab_a() -> Objects {
        parse(LAB_A).unwrap()
    }

    #[test]
    fn seed_lab_a_node_runs_the_tor_session() {
        let got = desired(&lab_a(), "k8s-w0");
        assert_eq!(got.issues, Vec::<String>::new());
        assert_eq!(got.router_id, Some(Ipv4Addr::new(192, 168, 20, 100)));
        assert_eq!(got.cluster_config.as_deref(), Some("cilium-bgp"));
        let [instance] = &got.instances[..] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (instance.name.as_str(), instance.local_asn),
            ("instance-65001", 65001)
        );
        let [peer] = &instance.peers[..] else {
            panic!("{instance:?}")
        };
        assert_eq!(peer.name, "tor-switch");
        assert_eq!(peer.address, "192.168.10.200".parse::<IpAddr>().unwrap());
        assert_eq!((peer.port, peer.peer_asn), (179, Some(65000)));
        let timers = PeerTimers {
            connect_retry: 120,
            hold: 9,
            keepalive: 3,
        };
        assert_eq!(peer.timers, timers);
        assert_eq!((peer.ebgp_multihop, peer.graceful_restart), (2, Some(15)));
        assert_eq!(peer.password, None);
        let [family] = &peer.families[..] else {
            panic!("{peer:?}")
        };
        assert_eq!((family.afi, family.safi), (Afi::Ipv4, Safi::Unicast));
        let prefixes: Vec<String> = family.routes.keys().map(|p| p.to_string()).collect();
        assert_eq!(
            prefixes,
            ["172.16.1.1/32", "172.20.2.0/24"],
            "CiliumNode CIDR, not 10.244"
        );
        let pod = &family.routes[&"172.20.2.0/24".parse().unwrap()];
        assert!(pod.communities.is_empty());
        assert_eq!(
            pod.policies.iter().collect::<Vec<_>>(),
            ["tor-switch-ipv4-PodCIDR"]
        );
        let lb = &family.routes[&"172.16.1.1/32".parse().unwrap()];
        assert_eq!(
            lb.policies.iter().collect::<Vec<_>>(),
            ["tor-switch-ipv4-Service-webpod-default-LoadBalancerIP"]
        );
        let communities: Vec<_> = lb.communities.iter().copied().collect();
        assert_eq!(
            communities,
            [Community::new(65001, 100), Community::NO_EXPORT]
        );
        let large = LargeCommunity {
            global_admin: 65001,
            local_data_1: 1,
            local_data_2: 2,
        };
        assert_eq!(lb.large_communities.iter().collect::<Vec<_>>(), [&large]);
    }

    #[test]
    fn unselected_and_unknown_nodes_run_nothing() {
        let objects = lab_a();
        let w1 = desired(&objects, "k8s-w1");
        assert_eq!((w1.instances.len(), w1.issues.len()), (0, 0));
        let ghost = desired(&objects, "ghost");
        assert!(ghost.instances.is_empty());
        assert_eq!(ghost.issues, ["no Node named \"ghost\": no BGP instances"]);
    }

    #[test]
    fn node_pod_cidrs_when_no_cilium_node() {
        let mut objects = lab_a();
        objects.cilium_nodes.clear();
        let got = desired(&objects, "k8s-w0");
        let routes = &got.instances[0].peers[0].families[0].routes;
        assert!(routes.contains_key(&"10.244.2.0/24".parse().unwrap()));
    }

    #[test]
    fn local_traffic_policy_needs_a_local_endpoint() {
        let mut objects = lab_a();
        let key = (String::from("default"), String::from("webpod"));
        objects
            .services
            .get_mut(&key)
            .unwrap()
            .spec
            .external_traffic_policy = Some("Local".into());
        let lb: IpNet = "172.16.1.1/32".parse().unwrap();
        let without = desired(&objects, "k8s-w0");
        assert!(
            !without.instances[0].peers[0].families[0]
                .routes
                .contains_key(&lb)
        );
        let slice = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: webpod-x1, namespace: default, labels: {kubernetes.io/service-name: webpod}}
addressType: IPv4
endpoints:
- {addresses: [172.20.2.10], conditions: {ready: true}, nodeName: k8s-w0}
- {addresses: [172.20.1.10], nodeName: k8s-w1}
- {addresses: [172.20.0.10], conditions: {ready: false}, nodeName: k8s-ctr}
- {addresses: [172.20.0.11], conditions: {ready: true, terminating: true}, nodeName: k8s-ctr}
ports: [{name: http, port: 80, protocol: TCP}]
"#;
        objects.endpoint_slices = parse(slice).unwrap().endpoint_slices;
        let advertised = |objects: &Objects, node: &str| {
            desired(objects, node)
                .instances
                .first()
                .is_some_and(|i| i.peers[0].families[0].routes.contains_key(&lb))
        };
        assert!(advertised(&objects, "k8s-w0"));
        assert_eq!(
            local_endpoints(&objects, "k8s-w1"),
            LocalEndpoints::from([key])
        );
        assert!(
            local_endpoints(&objects, "k8s-ctr").is_empty(),
            "not ready, or terminating: not local endpoints"
        );
        // The endpoint moves away: so does the advertisement.
        let slice = objects.endpoint_slices.values_mut().next().unwrap();
        slice.endpoints[0].node_name = Some("k8s-w1".into());
        assert!(!advertised(&objects, "k8s-w0"));
    }

    #[test]
    fn defaults_secrets_and_problems() {
        let mut objects = lab_a();
        let extra = r#"
apiVersion: cilium.io/v2alpha1
kind: CiliumBGPPeerConfig
metadata: {name: md5}
spec:
  authSecretRef: bgp-auth
  transport: {peerPort: 1179}
---
apiVersion: v1
kind: Secret
metadata: {name: bgp-auth, namespace: kube-system}
data: {password: czNjcjN0}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumBGPClusterConfig
metadata: {name: cilium-bgp}
spec:
  bgpInstances:
  - name: a
    localASN: 4200000001
    peers:
    - {name: md5-peer, peerAddress: "fd00::1", peerConfigRef: {group: cilium.io, kind: CiliumBGPPeerConfig, name: md5}}
    - {name: no-config, peerASN: 0, peerAddress: 10.0.0.1}
    - {name: missing, peerASN: 1, peerAddress: 10.0.0.2, peerConfigRef: {name: nope}}
    - {name: no-address, peerASN: 1}
  - name: b
"#;
        for (k, v) in parse(extra).unwrap().peer_configs {
            objects.peer_configs.insert(k, v);
        }
        let parsed = parse(extra).unwrap();
        objects.secrets = parsed.secrets;
        objects.cluster_configs = parsed.cluster_configs;
        let got = desired(&objects, "k8s-w1");
        assert_eq!(got.instances.len(), 1, "no nodeSelector selects every node");
        let peers = &got.instances[0].peers;
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].password, Some(Password("s3cr3t".into())));
        assert_eq!(format!("{:?}", peers[0].password), "Some(Password(..))");
        assert_eq!((peers[0].port, peers[0].peer_asn), (1179, None));
        let defaults = PeerTimers {
            connect_retry: 120,
            hold: 90,
            keepalive: 30,
        };
        assert_eq!(peers[1].timers, defaults);
        assert_eq!(
            (peers[1].ebgp_multihop, peers[1].graceful_restart),
            (1, None)
        );
        let afis: Vec<Afi> = peers[1].families.iter().map(|f| f.afi).collect();
        assert_eq!(afis, [Afi::Ipv4, Afi::Ipv6]);
        assert!(peers[1].families.iter().all(|f| f.routes.is_empty()));
        assert_eq!(
            got.issues,
            [
                "instance \"a\" peer \"missing\": CiliumBGPPeerConfig \"nope\" not found; peer not configured",
                "instance \"a\" peer \"no-address\": no peerAddress (auto-discovery is not supported); peer not configured",
                "bgpInstances \"b\" has no localASN",
            ]
        );
    }

    #[test]
    fn reserved_as_and_duplicate_peer_names_are_problems() {
        let mut objects = lab_a();
        let config = objects.cluster_configs.get_mut("cilium-bgp").unwrap();
        let mut twin = config.spec.bgp_instances[0].peers[0].clone();
        twin.peer_address = Some("192.168.10.201".parse().unwrap());
        config.spec.bgp_instances[0].peers.push(twin);
        let mut zero = config.spec.bgp_instances[0].clone();
        zero.name = "zero".into();
        zero.local_asn = Some(0);
        config.spec.bgp_instances.push(zero);
        let got = desired(&objects, "k8s-w0");
        assert_eq!(
            got.issues,
            [
                "instance \"instance-65001\" has two peers named \"tor-switch\"; the second is not configured",
                "bgpInstances \"zero\": localASN 0 is reserved (RFC 7607); instance not run",
            ]
        );
        assert_eq!(got.instances.len(), 1);
        assert_eq!(got.instances[0].peers.len(), 1);
    }

    #[test]
    fn bad_documents_name_the_field() {
        let cases = [
            (
                "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p}\nspec: {timers: {holdTimeSeconds: nine}}",
                "spec.timers.holdTimeSeconds: invalid type",
            ),
            (
                "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: c}\nspec: {nodeSelector: {}}",
                "spec: missing field `bgpInstances`",
            ),
            (
                "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: c}\nspec: {bgpInstances: [{name: i, localASN: 1, peers: [{name: p, peerAddress: 10.0.0.300}]}]}",
                "spec.bgpInstances[0].peers[0].peerAddress: \"10.0.0.300\": invalid IP address syntax",
            ),
            (
                "apiVersion: cilium.io/v2\nkind: CiliumBGPAdvertisement\nmetadata: {name: a}\nspec: {advertisements: [{advertisementType: Bogus}]}",
                "spec.advertisements[0].advertisementType: unknown variant `Bogus`",
            ),
            (
                "apiVersion: cilium.io/v2\nkind: CiliumBGPAdvertisement\nmetadata: {name: a}\nspec: {advertisements: [{advertisementType: Service, attributes: {communities: {standard: [\"65536:1\"]}}}]}",
                "spec.advertisements[0].attributes.communities.standard[0]: \"65536:1\" is not a community",
            ),
            (
                "apiVersion: v1\nkind: Node\nmetadata: {labels: {a: b}}",
                "metadata: missing field `name`",
            ),
        ];
        for (yaml, want) in cases {
            let err = parse(yaml).unwrap_err();
            assert!(err.starts_with(want), "{err}\n  wanted {want}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let yaml = "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p, uid: x}\nspec: {newField: [1], timers: {holdTimeSeconds: 9, future: true}}\nstatus: {}";
        let objects = parse(yaml).unwrap();
        assert_eq!(
            objects.peer_configs["p"].spec.timers.hold_time_seconds,
            Some(9)
        );
    }
}
