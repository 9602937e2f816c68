//! The control-plane differential: generated clusters — nodes with labels,
//! services of each type and traffic policy with endpoints spread over the
//! nodes, an LB pool, several BGP instances and peers, peer configs,
//! advertisements with selectors and attributes — go through the
//! simulator (a lab directory: topology, Helm values, manifests with Pods on
//! their nodes; loaded and built as `nexthop-sim run` does) and through the
//! agent (a configuration directory as `nexthop-agent run --config-dir`
//! reads it: Nodes, Services with their LB ingress, EndpointSlices with the
//! simulator's pod addresses), in process and without sockets. For every
//! node the desired peers (`bgp peers`), originated routes (`bgp routes
//! available`), what each peer is to be sent with its attributes, the
//! problems reported, the service table (`service list`) and the
//! masquerading (the simulator's from the Helm values, the agent's from
//! `--enable-bpf-masquerade --ipv4-native-routing-cidr`) must be identical.
//! A mismatch prints both directories' YAML so the case can be replayed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use router_core::cilium::node::{NodeBgp, NodeOptions};
use router_core::cilium::status::Table;
use router_core::cilium::table;
use router_core::service::masquerade::{Masquerade, Settings};
use router_core::service::table::ServiceTable;
use smoltcp::time::Instant;

const PEERS: [&str; 3] = ["192.168.10.200", "192.168.10.201", "192.168.20.1"];
const APPS: [&str; 3] = ["web", "api", "db"];

#[derive(Clone, Debug)]
struct Service {
    app: usize,
    load_balancer: bool,
    external_local: bool,
    internal_local: bool,
    /// An `externalIPs` entry: 192.0.2.(this).
    external_ip: Option<u8>,
    /// The LB address asked for (`lbipam.cilium.io/ips`), in the pool:
    /// 172.16.1.(this + 20 × the service's index); none: LB-IPAM picks.
    lb_ip: Option<u8>,
    /// The node of each endpoint.
    pods_on: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Peer {
    address: usize,
    asn: Option<u32>,
    config: Option<usize>,
}

#[derive(Clone, Debug)]
struct Instance {
    asn: u32,
    peers: Vec<Peer>,
}

#[derive(Clone, Debug)]
struct PeerConfig {
    hold: u32,
    multihop: Option<u8>,
    graceful_restart: bool,
    /// Families: (IPv6, advertisement label).
    families: Vec<(bool, Option<usize>)>,
}

#[derive(Clone, Debug)]
enum Entry {
    PodCidr,
    Service {
        app: usize,
        lb: bool,
        cluster_ip: bool,
        external_ip: bool,
        community: Option<u16>,
        local_pref: Option<u32>,
    },
}

#[derive(Clone, Debug)]
struct Spec {
    /// Each node's `enable-bgp` and `rack` labels.
    nodes: Vec<(bool, usize)>,
    services: Vec<Service>,
    /// The cluster config's node selector: `enable-bgp: "true"` or none.
    selector: bool,
    instances: Vec<Instance>,
    peer_configs: Vec<PeerConfig>,
    /// Advertisements: (label, entries).
    adverts: Vec<(usize, Vec<Entry>)>,
    /// A `CiliumBGPNodeConfigOverride` for node-0 of instance-0: router id
    /// 10.255.0.(this), a local AS, a source address for peer-0.
    node_override: Option<(u8, Option<u32>, bool)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let nodes = prop::collection::vec((any::<bool>(), 0..2usize), 1..=3);
    let service = (
        0..2usize,
        any::<bool>(),
        (any::<bool>(), any::<bool>()),
        prop::option::of(1..20u8),
        prop::option::of(1..9u8),
        prop::collection::vec(0..3usize, 0..=3),
    )
        .prop_map(
            |(
                app,
                load_balancer,
                (external_local, internal_local),
                lb_ip,
                external_ip,
                pods_on,
            )| {
                Service {
                    app,
                    load_balancer,
                    external_local,
                    internal_local,
                    external_ip,
                    lb_ip,
                    pods_on,
                }
            },
        );
    let peer = (
        0..PEERS.len(),
        prop::option::of(65000..65003u32),
        prop::option::of(0..2usize),
    )
        .prop_map(|(address, asn, config)| Peer {
            address,
            asn,
            config,
        });
    let instance = (65001..65004u32, prop::collection::vec(peer, 0..=2))
        .prop_map(|(asn, peers)| Instance { asn, peers });
    let peer_config = (
        prop::sample::select(vec![9u32, 30, 90]),
        prop::option::of(1..4u8),
        any::<bool>(),
        prop::collection::vec((any::<bool>(), prop::option::of(0..2usize)), 1..=2),
    )
        .prop_map(|(hold, multihop, graceful_restart, families)| PeerConfig {
            hold,
            multihop,
            graceful_restart,
            families,
        });
    let entry = prop_oneof![
        1 => Just(Entry::PodCidr),
        3 =>
        (
            0..2usize,
            (any::<bool>(), any::<bool>(), any::<bool>()),
            prop::option::weighted(0.7, 1..5u16),
            prop::option::of(prop::sample::select(vec![100u32, 200]))
        )
            .prop_map(|(app, (lb, cluster_ip, external_ip), community, local_pref)| Entry::Service {
                app,
                lb,
                cluster_ip,
                external_ip,
                community,
                local_pref,
            }),
    ];
    let advert = (0..2usize, prop::collection::vec(entry, 1..=2));
    (
        nodes,
        prop::collection::vec(service, 0..=3),
        any::<bool>(),
        prop::collection::vec(instance, 1..=2),
        prop::collection::vec(peer_config, 1..=2),
        prop::collection::vec(advert, 0..=3),
        prop::option::of((1..9u8, prop::option::of(65100..65102u32), any::<bool>())),
    )
        .prop_map(
            |(nodes, services, selector, instances, peer_configs, adverts, node_override)| {
                // Instance names are unique by construction; peers of one
                // instance by address (a repeated address is one peer).
                let instances = instances
                    .into_iter()
                    .map(|mut i| {
                        let mut seen = Vec::new();
                        i.peers.retain(|p| {
                            let new = !seen.contains(&p.address);
                            seen.push(p.address);
                            new
                        });
                        i
                    })
                    .collect();
                Spec {
                    nodes,
                    services,
                    selector,
                    instances,
                    peer_configs,
                    adverts,
                    node_override,
                }
            },
        )
}

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

fn node_ip(i: usize) -> String {
    format!("192.168.10.{}", 11 + i)
}

/// The BGP objects and the LB pool: the same documents for both runtimes.
fn bgp_yaml(spec: &Spec) -> String {
    let mut y = String::new();
    y.push_str(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: bgp}\nspec:\n",
    );
    if spec.selector {
        y.push_str("  nodeSelector: {matchLabels: {enable-bgp: \"true\"}}\n");
    }
    y.push_str("  bgpInstances:\n");
    for (i, instance) in spec.instances.iter().enumerate() {
        let _ = writeln!(y, "  - name: instance-{i}\n    localASN: {}", instance.asn);
        y.push_str("    peers:\n");
        if instance.peers.is_empty() {
            y.truncate(y.len() - "    peers:\n".len());
            y.push_str("    peers: []\n");
        }
        for (j, peer) in instance.peers.iter().enumerate() {
            let _ = write!(
                y,
                "    - {{name: peer-{j}, peerAddress: {}",
                PEERS[peer.address]
            );
            if let Some(asn) = peer.asn {
                let _ = write!(y, ", peerASN: {asn}");
            }
            if let Some(c) = peer.config {
                let _ = write!(y, ", peerConfigRef: {{name: config-{c}}}");
            }
            y.push_str("}\n");
        }
    }
    for (i, config) in spec.peer_configs.iter().enumerate() {
        let _ = writeln!(
            y,
            "---\napiVersion: cilium.io/v2alpha1\nkind: CiliumBGPPeerConfig\nmetadata: {{name: config-{i}}}\nspec:\n  timers: {{holdTimeSeconds: {}, keepAliveTimeSeconds: 3}}",
            config.hold
        );
        if let Some(hops) = config.multihop {
            let _ = writeln!(y, "  ebgpMultihop: {hops}");
        }
        let _ = writeln!(
            y,
            "  gracefulRestart: {{enabled: {}, restartTimeSeconds: 15}}",
            config.graceful_restart
        );
        y.push_str("  families:\n");
        for (v6, label) in &config.families {
            let afi = if *v6 { "ipv6" } else { "ipv4" };
            let _ = write!(y, "  - afi: {afi}\n    safi: unicast\n");
            if let Some(l) = label {
                let _ = writeln!(
                    y,
                    "    advertisements: {{matchLabels: {{advertise: set-{l}}}}}"
                );
            }
        }
    }
    for (i, (label, entries)) in spec.adverts.iter().enumerate() {
        let _ = writeln!(
            y,
            "---\napiVersion: cilium.io/v2\nkind: CiliumBGPAdvertisement\nmetadata:\n  name: advert-{i}\n  labels: {{advertise: set-{label}}}\nspec:\n  advertisements:"
        );
        for entry in entries {
            match entry {
                Entry::PodCidr => y.push_str("  - advertisementType: PodCIDR\n"),
                Entry::Service {
                    app,
                    lb,
                    cluster_ip,
                    external_ip,
                    community,
                    local_pref,
                } => {
                    let mut addresses = Vec::new();
                    if *lb {
                        addresses.push("LoadBalancerIP");
                    }
                    if *cluster_ip {
                        addresses.push("ClusterIP");
                    }
                    if *external_ip {
                        addresses.push("ExternalIP");
                    }
                    let _ = writeln!(
                        y,
                        "  - advertisementType: Service\n    service: {{addresses: [{}]}}\n    selector: {{matchLabels: {{app: {}}}}}",
                        addresses.join(", "),
                        APPS[*app]
                    );
                    if community.is_some() || local_pref.is_some() {
                        y.push_str("    attributes:\n");
                        if let Some(c) = community {
                            let _ = writeln!(y, "      communities: {{standard: [\"65001:{c}\"]}}");
                        }
                        if let Some(lp) = local_pref {
                            let _ = writeln!(y, "      localPreference: {lp}");
                        }
                    }
                }
            }
        }
    }
    if let Some((id, asn, source)) = spec.node_override {
        let _ = writeln!(
            y,
            "---\napiVersion: cilium.io/v2\nkind: CiliumBGPNodeConfigOverride\nmetadata: {{name: node-0}}\nspec:\n  bgpInstances:\n  - name: instance-0\n    routerID: 10.255.0.{id}"
        );
        if let Some(asn) = asn {
            let _ = writeln!(y, "    localASN: {asn}");
        }
        if source {
            let _ = writeln!(
                y,
                "    peers: [{{name: peer-0, localAddress: 192.168.10.99}}]"
            );
        }
    }
    y.push_str(
        "---\napiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: pool}\nspec:\n  blocks: [{cidr: 172.16.1.0/24}]\n",
    );
    y
}

fn node_labels(spec: &Spec, i: usize) -> String {
    let (bgp, rack) = spec.nodes[i];
    format!("{{enable-bgp: \"{bgp}\", rack: rack-{rack}}}")
}

fn service_ip(i: usize) -> String {
    format!("10.96.0.{}", 10 + i)
}

/// A service's document, as both runtimes read it (the LB address comes
/// from LB-IPAM in each).
fn service_yaml(svc: &Service, i: usize) -> String {
    let kind = if svc.load_balancer {
        "LoadBalancer"
    } else {
        "ClusterIP"
    };
    let policy = |local| if local { "Local" } else { "Cluster" };
    let external_ips = match svc.external_ip {
        Some(ip) => format!("\n  externalIPs: [192.0.2.{ip}]"),
        None => String::new(),
    };
    let annotations = match svc.lb_ip {
        Some(ip) => format!(
            "\n  annotations: {{lbipam.cilium.io/ips: \"172.16.1.{}\"}}",
            usize::from(ip) + 20 * i
        ),
        None => String::new(),
    };
    // Kubernetes fixes every NodePort; the simulator would draw its own.
    let node_port = if svc.load_balancer {
        format!(", nodePort: {}", 30000 + i)
    } else {
        String::new()
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: default\n  labels: {{app: {app}}}{annotations}\nspec:\n  type: {kind}\n  clusterIP: {cip}\n  externalTrafficPolicy: {etp}\n  internalTrafficPolicy: {itp}{external_ips}\n  selector: {{app: {app}, svc: svc-{i}}}\n  ports: [{{port: 80, protocol: TCP{node_port}}}]\n",
        app = APPS[svc.app],
        cip = service_ip(i),
        etp = policy(svc.external_local),
        itp = policy(svc.internal_local),
    )
}

/// The simulator's lab: k8s nodes on one bridge, Pods on their nodes.
fn write_lab(dir: &Path, spec: &Spec) {
    let mut topology = String::from("name: differential\nnodes:\n  lan: {kind: bridge}\n");
    let mut links = String::from("links:\n");
    for i in 0..spec.nodes.len() {
        let _ = writeln!(
            topology,
            "  {}:\n    kind: k8s-node\n    interfaces:\n      eth1: {{ipv4: {}/24}}",
            node_name(i),
            node_ip(i)
        );
        let _ = writeln!(
            links,
            "  - endpoints: [\"{}:eth1\", \"lan:p{i}\"]",
            node_name(i)
        );
    }
    let values = "ipam:\n  mode: cluster-pool\n  operator:\n    clusterPoolIPv4PodCIDRList: [\"10.0.0.0/16\"]\n    clusterPoolIPv4MaskSize: 24\nroutingMode: native\nautoDirectNodeRoutes: true\nipv4NativeRoutingCIDR: 10.0.0.0/16\nbgpControlPlane:\n  enabled: true\n";
    let mut manifests = String::new();
    for i in 0..spec.nodes.len() {
        let _ = writeln!(
            manifests,
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels: {}\n---",
            node_name(i),
            node_labels(spec, i)
        );
    }
    for (i, svc) in spec.services.iter().enumerate() {
        manifests.push_str(&service_yaml(svc, i));
        manifests.push_str("---\n");
        for (j, node) in svc
            .pods_on
            .iter()
            .filter(|n| **n < spec.nodes.len())
            .enumerate()
        {
            let _ = writeln!(
                manifests,
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: svc-{i}-pod-{j}\n  labels: {{app: {app}, svc: svc-{i}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: w, image: traefik/whoami}}]\n---",
                app = APPS[svc.app],
                node = node_name(*node)
            );
        }
    }
    manifests.push_str(&bgp_yaml(spec));
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::write(dir.join("topology.yaml"), topology + &links).unwrap();
    std::fs::write(dir.join("values.yaml"), values).unwrap();
    std::fs::write(dir.join("scenario.yaml"), "steps: []\n").unwrap();
    std::fs::write(dir.join("k8s/objects.yaml"), manifests).unwrap();
}

/// The agent's directory: what the API would hold — Nodes with their
/// InternalIP and pod CIDR (cluster-pool: node i gets 10.0.i.0/24 in join
/// order), Services, one EndpointSlice per service with the pods' addresses
/// (`pod_ips`, the simulator's, in pod name order), the pool.
fn write_agent_dir(dir: &Path, spec: &Spec, pod_ips: &BTreeMap<String, String>) {
    let mut y = String::new();
    for i in 0..spec.nodes.len() {
        let _ = writeln!(
            y,
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels: {}\nspec: {{podCIDRs: [10.0.{i}.0/24]}}\nstatus: {{addresses: [{{type: InternalIP, address: {}}}]}}\n---",
            node_name(i),
            node_labels(spec, i),
            node_ip(i)
        );
    }
    for (i, svc) in spec.services.iter().enumerate() {
        y.push_str(&service_yaml(svc, i));
        let _ = writeln!(
            y,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-x\n  namespace: default\n  labels: {{kubernetes.io/service-name: svc-{i}}}\naddressType: IPv4\nendpoints:"
        );
        let on: BTreeMap<String, usize> = svc
            .pods_on
            .iter()
            .copied()
            .filter(|n| *n < spec.nodes.len())
            .enumerate()
            .map(|(j, node)| (format!("svc-{i}-pod-{j}"), node))
            .collect();
        if on.is_empty() {
            y.truncate(y.len() - "endpoints:\n".len());
            y.push_str("endpoints: []\n");
        }
        for (j, (pod, node)) in on.iter().enumerate() {
            let ip = pod_ips
                .get(pod)
                .cloned()
                .unwrap_or_else(|| format!("10.0.{node}.{}", 100 + j));
            let _ = writeln!(
                y,
                "- {{addresses: [{ip}], conditions: {{ready: true}}, nodeName: {}}}",
                node_name(*node)
            );
        }
        y.push_str("ports: [{port: 80, protocol: TCP}]\n---\n");
    }
    y.push_str(&bgp_yaml(spec));
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("objects.yaml"), y).unwrap();
}

/// What one node's control plane shows: the tables and what each peer is
/// to be sent, as text.
fn view(node: &NodeBgp) -> String {
    let t0 = Instant::ZERO;
    let peers = node.peers(t0);
    let routes = node.routes(t0);
    let available: Vec<_> = routes
        .iter()
        .filter(|r| r.table == Table::Available)
        .collect();
    let mut out = table::peers(&peers);
    out.push_str(&table::routes(Table::Available, &available));
    for (name, speaker) in node.speakers() {
        let rib = speaker.rib().config();
        let _ = writeln!(
            out,
            "{name}: AS {} router id {}",
            rib.local_as, rib.router_id
        );
        for (address, peer) in speaker.peers() {
            let _ = writeln!(
                out,
                "  {address} {:?} {:?}",
                peer.transport(),
                peer.session().config()
            );
        }
    }
    for ((instance, peer), paths) in node.advertisements() {
        let _ = writeln!(out, "{instance} -> {peer}:");
        for (prefix, attrs) in paths {
            let _ = writeln!(out, "  {prefix} {attrs:?}");
        }
    }
    for issue in node.issues() {
        let _ = writeln!(out, "issue: {issue}");
    }
    out
}

/// A node's `service list` and masquerading.
fn service_view(services: &ServiceTable, masquerade: Option<&Masquerade>) -> String {
    table::service_list(&table::service_rows(services)) + &format!("{masquerade:?}\n")
}

/// Each node's view through the simulator and its pods' addresses, or the
/// error that stopped the lab from building.
type SimOutcome = Result<(BTreeMap<String, String>, BTreeMap<String, String>), String>;

fn through_sim(dir: &Path, spec: &Spec) -> SimOutcome {
    let lab = Lab::load(dir).map_err(|e| e.to_string())?;
    let cluster = Cluster::build(lab, EngineConfig::new(1))?;
    let views = (0..spec.nodes.len())
        .map(|i| {
            let name = node_name(i);
            let host = cluster
                .host(&name)
                .ok_or_else(|| format!("no host {name}"))?;
            let node = host
                .host
                .bgp()
                .and_then(|b| b.node())
                .ok_or_else(|| format!("{name} runs no BGP control plane"))?;
            let stage = host.host.services();
            let services = service_view(stage.table(), stage.masquerade());
            Ok((name, view(node) + &services))
        })
        .collect::<Result<_, String>>()?;
    let pods = cluster
        .workloads
        .pods()
        .map(|p| (p.name.clone(), p.ip.to_string()))
        .collect();
    Ok((views, pods))
}

/// Each node's view through the agent's configuration directory (LB-IPAM
/// included) and node options.
fn through_agent(dir: &Path, spec: &Spec) -> BTreeMap<String, String> {
    let loaded = nexthop_agent::config::load(dir).expect("readable");
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let objects = nexthop_agent::config::Directory::new(dir).with_lb_ipam(&loaded.objects);
    (0..spec.nodes.len())
        .map(|i| {
            let name = node_name(i);
            let mut node = NodeBgp::new(NodeOptions {
                tcp_md5: false,
                ..nexthop_agent::controller::node_options(&name, None, true)
            });
            node.reconcile(Instant::ZERO, &objects);
            let options = nexthop_agent::services::Options {
                masquerade: Some(Settings {
                    native_routing_cidr: Some("10.0.0.0/16".parse().unwrap()),
                    ..Settings::default()
                }),
                ..Default::default()
            };
            let (table, _) = nexthop_agent::services::table(&objects, &name, &options);
            let served = nexthop_agent::services::served(&objects, &name, &options, table);
            let services = service_view(&served.table, served.masquerade.as_ref());
            (name, view(&node) + &services)
        })
        .collect()
}

struct Case {
    root: PathBuf,
}

impl Case {
    fn new(n: u64) -> Case {
        let root = std::env::temp_dir().join(format!("nexthop-cp-diff-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        Case { root }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// What a compared case exercised.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Some peer is to be sent a route with a community or LOCAL_PREF.
    #[default]
    AttributesSent,
    /// Some peer is to be sent routes.
    RoutesSent,
    /// A node config override gave an instance its router id.
    Overridden,
    /// Peers run, nothing to send.
    PeersOnly,
    /// No node runs a peer.
    Nothing,
    /// Both report the same problem in the objects.
    Refused,
}

fn outcome(views: &BTreeMap<String, String>) -> Outcome {
    let all: String = views.values().cloned().collect();
    if all.contains("router id 10.255.0.") {
        Outcome::Overridden
    } else if all.contains("communities: [Community") || all.contains("local_pref: Some") {
        Outcome::AttributesSent
    } else if all.lines().any(|l| l.starts_with("  ") && l.contains('/')) {
        Outcome::RoutesSent
    } else if all.contains(" -> ") {
        Outcome::PeersOnly
    } else {
        Outcome::Nothing
    }
}

/// Compare the two runtimes on `spec`; `Err` describes a difference with
/// both directories' YAML.
fn compare(spec: &Spec, n: u64, tamper: impl Fn(&Path)) -> Result<Outcome, String> {
    let case = Case::new(n);
    let (lab, agent) = (case.root.join("lab"), case.root.join("agent"));
    write_lab(&lab, spec);
    let sim = through_sim(&lab, spec);
    let pods = sim.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
    write_agent_dir(&agent, spec, &pods);
    tamper(&agent);
    let agent_view = through_agent(&agent, spec);
    let replay = || {
        format!(
            "--- lab k8s/objects.yaml\n{}\n--- agent objects.yaml\n{}",
            std::fs::read_to_string(lab.join("k8s/objects.yaml")).unwrap_or_default(),
            std::fs::read_to_string(agent.join("objects.yaml")).unwrap_or_default()
        )
    };
    match sim {
        Ok((sim_view, _)) => {
            for (node, sim) in &sim_view {
                let agent = &agent_view[node];
                if sim != agent {
                    return Err(format!(
                        "{node} differs\n--- simulator\n{sim}\n--- agent\n{agent}\n{}",
                        replay()
                    ));
                }
            }
            Ok(outcome(&sim_view))
        }
        // The simulator refuses a lab whose BGP objects have problems (a
        // lab is a test): the agent must report the same first problem
        // (nodes in name order).
        Err(e) => {
            let first = agent_view.iter().find_map(|(node, v)| {
                v.lines()
                    .find_map(|l| l.strip_prefix("issue: "))
                    .map(|i| format!("node {node}: {i}"))
            });
            if first.as_deref() == Some(e.as_str()) {
                Ok(Outcome::Refused)
            } else {
                Err(format!(
                    "the simulator refused the lab: {e}\nthe agent's first issue: {first:?}\n{}",
                    replay()
                ))
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("NEXTHOP_CP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn the_simulator_and_the_agent_run_the_same_control_plane() {
    // A fixed seed: the same cases in every run, so a failure replays.
    let config = ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let counter = std::sync::atomic::AtomicU64::new(0);
    let seen = std::sync::Mutex::new(BTreeMap::<String, u32>::new());
    let result = runner.run(&spec(), |spec| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = compare(&spec, n, |_| {}).map_err(TestCaseError::fail)?;
        *seen
            .lock()
            .unwrap()
            .entry(format!("{outcome:?}"))
            .or_default() += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must reach every kind of case, or the comparison
    // proves little.
    let seen = seen.into_inner().unwrap();
    eprintln!("cases by outcome: {seen:?}");
    for outcome in [
        Outcome::AttributesSent,
        Outcome::RoutesSent,
        Outcome::Overridden,
        Outcome::PeersOnly,
        Outcome::Nothing,
        Outcome::Refused,
    ] {
        let n = seen.get(&format!("{outcome:?}")).copied().unwrap_or(0);
        assert!(
            n * 100 >= cases(),
            "{outcome:?} in only {n} cases: {seen:?}"
        );
    }
}

/// The negative control: an agent that loses one endpoint (its
/// EndpointSlice says the pod is not ready) must be caught, in the service
/// tables and in BGP.
#[test]
fn a_deliberate_difference_is_caught() {
    let spec = Spec {
        nodes: vec![(true, 0), (true, 1)],
        services: vec![Service {
            app: 0,
            load_balancer: true,
            external_local: true,
            internal_local: false,
            external_ip: None,
            lb_ip: Some(7),
            pods_on: vec![1],
        }],
        selector: true,
        instances: vec![Instance {
            asn: 65001,
            peers: vec![Peer {
                address: 0,
                asn: Some(65000),
                config: Some(0),
            }],
        }],
        peer_configs: vec![PeerConfig {
            hold: 9,
            multihop: None,
            graceful_restart: true,
            families: vec![(false, Some(0))],
        }],
        adverts: vec![(
            0,
            vec![Entry::Service {
                app: 0,
                lb: true,
                cluster_ip: false,
                external_ip: false,
                community: Some(1),
                local_pref: None,
            }],
        )],
        node_override: None,
    };
    let same = compare(&spec, u64::MAX - 1, |_| {}).expect("the same without tampering");
    assert_eq!(same, Outcome::AttributesSent);
    let tampered = compare(&spec, u64::MAX, |dir| {
        let file = dir.join("objects.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("{ready: true}", "{ready: false}")).unwrap();
    });
    let error = tampered.expect_err("a lost endpoint must show");
    // node-0 first: its service table lost the backend (node-1 also stops
    // advertising 172.16.1.7/32, eTP Local).
    assert!(error.contains("node-0 differs"), "{error}");
    assert!(error.contains("172.16.1.7:80/TCP"), "{error}");
    assert!(error.contains("--- agent objects.yaml"), "{error}");
}
