//! The node control plane on the seed's lab A objects: what it runs, how it
//! follows changes, what it reports.

use alloc::vec;

use super::*;
use crate::cilium::desired::tests::lab_a;
use crate::cilium::objects::tests::parse;

const T0: Instant = Instant::ZERO;

fn tor() -> IpAddr {
    "192.168.10.200".parse().unwrap()
}

fn connects(actions: &[InstanceAction]) -> Vec<(String, IpAddr, u16, u8, Option<IpAddr>)> {
    actions
        .iter()
        .filter_map(|(i, a)| match a {
            Action::Connect {
                peer,
                port,
                ttl,
                bind,
                ..
            } => Some((i.clone(), *peer, *port, *ttl, *bind)),
            _ => None,
        })
        .collect()
}

/// Run timers until the first connect attempt (the IdleHold jitter).
fn first_connects(node: &mut NodeBgp, mut actions: Vec<InstanceAction>) -> Vec<InstanceAction> {
    for _ in 0..10 {
        if !connects(&actions).is_empty() {
            return actions;
        }
        let at = node.poll_at().expect("a timer runs");
        actions = node.timers(at);
    }
    panic!("no connect: {actions:?}")
}

#[test]
fn the_seed_node_dials_the_tor_from_its_internal_ip() {
    let mut node = NodeBgp::new(NodeOptions::new("k8s-w0"));
    let actions = node.reconcile(T0, &lab_a());
    assert_eq!(node.issues(), &[] as &[String]);
    let actions = first_connects(&mut node, actions);
    let w0: IpAddr = "192.168.20.100".parse().unwrap();
    assert_eq!(
        connects(&actions),
        [("instance-65001".into(), tor(), 179, 2, Some(w0))]
    );
    let [peer] = &node.peers(T0)[..] else {
        panic!()
    };
    assert_eq!(
        (peer.instance.as_str(), peer.name.as_str(), peer.local_asn),
        ("instance-65001", "tor-switch", 65001)
    );
    assert_eq!(
        (peer.peer_asn, peer.state.as_str()),
        (Some(65000), "connect")
    );
    let available: Vec<String> = node
        .routes(T0)
        .iter()
        .filter(|r| r.table == Table::Available)
        .map(|r| alloc::format!("{} {}", r.prefix, r.attrs.join(" ")))
        .collect();
    assert_eq!(
        available,
        [
            "172.16.1.1/32 {Origin: i} {Nexthop: 0.0.0.0} {Communities: 65001:100, 65535:65281} {LargeCommunity: 65001:1:2}",
            "172.20.2.0/24 {Origin: i} {Nexthop: 0.0.0.0}"
        ]
    );
}

#[test]
fn every_instance_runs_and_changes_restart_only_what_they_must() {
    let mut objects = lab_a();
    let two = parse(
        r#"
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: cilium-bgp}
spec:
  nodeSelector: {matchLabels: {enable-bgp: "true"}}
  bgpInstances:
  - name: instance-65001
    localASN: 65001
    peers:
    - {name: tor-switch, peerASN: 65000, peerAddress: 192.168.10.200, peerConfigRef: {name: cilium-peer}}
  - name: instance-65011
    localASN: 65011
    peers:
    - {name: edge, peerASN: 65100, peerAddress: 192.168.30.1}
"#,
    )
    .unwrap();
    objects.cluster_configs = two.cluster_configs;
    let mut node = NodeBgp::new(NodeOptions::new("k8s-w0"));
    let actions = node.reconcile(T0, &objects);
    let actions = first_connects(&mut node, actions);
    let mut peers: Vec<(String, IpAddr)> = connects(&actions)
        .into_iter()
        .map(|(i, p, ..)| (i, p))
        .collect();
    if peers.len() < 2 {
        let at = node.poll_at().unwrap();
        peers.extend(
            connects(&node.timers(at))
                .into_iter()
                .map(|(i, p, ..)| (i, p)),
        );
    }
    peers.sort();
    assert_eq!(
        peers,
        [
            ("instance-65001".into(), tor()),
            ("instance-65011".into(), "192.168.30.1".parse().unwrap())
        ]
    );
    assert_eq!(node.speakers().count(), 2);
    let lb: IpNet = "172.16.1.1/32".parse().unwrap();
    let sent = node.advertisements();
    let to_tor = &sent[&("instance-65001".into(), tor())];
    assert!(to_tor.contains_key(&lb) && to_tor.len() == 2, "{to_tor:?}");
    let to_edge = &sent[&("instance-65011".into(), "192.168.30.1".parse().unwrap())];
    assert!(to_edge.is_empty(), "no peer config: no advertisements");
    // The LB service leaves the advertisement: an export change, no restart.
    objects.services.clear();
    let again = node.reconcile(T0, &objects);
    assert!(
        again
            .iter()
            .all(|(_, a)| !matches!(a, Action::Connect { .. } | Action::Close { .. })),
        "{again:?}"
    );
    assert!(node.routes(T0).iter().all(|r| r.prefix != lb));
    assert!(!node.advertisements()[&("instance-65001".into(), tor())].contains_key(&lb));
    // A new hold time restarts the ToR session only.
    let peer_config = objects.peer_configs.get_mut("cilium-peer").unwrap();
    peer_config.spec.timers.hold_time_seconds = Some(30);
    let restarted = node.reconcile(T0, &objects);
    let states: Vec<(String, State)> = restarted
        .iter()
        .filter_map(|(i, a)| match a {
            Action::Report {
                report: Report::State { to, .. },
                ..
            } => Some((i.clone(), *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            ("instance-65001".into(), State::Idle),
            ("instance-65001".into(), State::Connect)
        ],
        "stopped, started afresh: {restarted:?}"
    );
    // The node leaves the selector: every instance stops.
    objects
        .nodes
        .get_mut("k8s-w0")
        .unwrap()
        .metadata
        .labels
        .clear();
    node.reconcile(T0, &objects);
    assert_eq!(node.speakers().count(), 0);
    assert!(node.peers(T0).is_empty());
}

#[test]
fn local_traffic_policy_follows_the_endpoints() {
    let mut objects = lab_a();
    let key = (String::from("default"), String::from("webpod"));
    let svc = objects.services.get_mut(&key).unwrap();
    svc.spec.external_traffic_policy = Some("Local".into());
    let lb: IpNet = "172.16.1.1/32".parse().unwrap();
    let originated = |node: &NodeBgp| {
        node.routes(T0)
            .iter()
            .any(|r| r.table == Table::Available && r.prefix == lb)
    };
    let mut node = NodeBgp::new(NodeOptions::new("k8s-w0"));
    node.reconcile(T0, &objects);
    assert!(!originated(&node), "no local endpoint");
    objects.endpoint_slices = parse(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: webpod-1, namespace: default, labels: {kubernetes.io/service-name: webpod}}
addressType: IPv4
endpoints: [{addresses: [172.20.2.7], conditions: {ready: true}, nodeName: k8s-w0}]
"#,
    )
    .unwrap()
    .endpoint_slices;
    node.reconcile(T0, &objects);
    assert!(originated(&node));
}

#[test]
fn md5_peers_need_a_runtime_that_signs() {
    let mut objects = lab_a();
    let extra = parse(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: bgp-auth, namespace: kube-system}
stringData: {password: s3cr3t}
"#,
    )
    .unwrap();
    objects.secrets = extra.secrets;
    let peer_config = objects.peer_configs.get_mut("cilium-peer").unwrap();
    peer_config.spec.auth_secret_ref = Some("bgp-auth".into());
    let mut options = NodeOptions::new("k8s-w0");
    options.tcp_md5 = false;
    let mut node = NodeBgp::new(options);
    node.reconcile(T0, &objects);
    assert_eq!(
        node.issues(),
        [
            "instance \"instance-65001\" peer \"tor-switch\": TCP MD5 (authSecretRef) is not available here; peer not configured"
        ]
    );
    let mut node = NodeBgp::new(NodeOptions::new("k8s-w0"));
    let actions = node.reconcile(T0, &objects);
    let actions = first_connects(&mut node, actions);
    let keys: Vec<Option<String>> = actions
        .iter()
        .filter_map(|(_, a)| match a {
            Action::Connect { md5_key, .. } => Some(md5_key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys, vec![Some("s3cr3t".into())]);
}

#[test]
fn a_node_override_sets_router_id_as_and_source_address() {
    let mut objects = lab_a();
    let over = parse(
        r#"
apiVersion: cilium.io/v2
kind: CiliumBGPNodeConfigOverride
metadata: {name: k8s-w0}
spec:
  bgpInstances:
  - name: instance-65001
    routerID: 10.255.0.1
    localASN: 65009
    peers:
    - {name: tor-switch, localAddress: 192.168.20.101}
  - {name: instance-nope, localPort: 1790}
"#,
    )
    .unwrap();
    objects.node_overrides = over.node_overrides;
    let mut node = NodeBgp::new(NodeOptions::new("k8s-w0"));
    let actions = node.reconcile(T0, &objects);
    assert_eq!(
        node.issues(),
        [
            "CiliumBGPNodeConfigOverride \"k8s-w0\": no instance \"instance-nope\" in CiliumBGPClusterConfig \"cilium-bgp\"; override not applied",
            "CiliumBGPNodeConfigOverride \"k8s-w0\" instance \"instance-nope\": localPort 1790 is not supported (the node only dials its peers); ignored",
        ]
    );
    let actions = first_connects(&mut node, actions);
    let source: IpAddr = "192.168.20.101".parse().unwrap();
    assert_eq!(connects(&actions)[0].4, Some(source));
    let [peer] = &node.peers(T0)[..] else {
        panic!()
    };
    assert_eq!(peer.local_asn, 65009);
    let (_, speaker) = node.speakers().next().unwrap();
    assert_eq!(
        speaker.rib().config().router_id,
        Ipv4Addr::new(10, 255, 0, 1)
    );
    // Another node is not overridden.
    let mut other = NodeBgp::new(NodeOptions::new("k8s-ctr"));
    let mut ctr = objects.clone();
    let mut renamed = ctr.nodes["k8s-w0"].clone();
    renamed.metadata.name = "k8s-ctr".into();
    ctr.nodes.insert("k8s-ctr".into(), renamed);
    other.reconcile(T0, &ctr);
    assert!(other.issues().is_empty(), "{:?}", other.issues());
    assert_eq!(other.peers(T0)[0].local_asn, 65001);
}

#[test]
fn node_config_status_lists_each_instance_unless_reporting_is_off() {
    let mut node = NodeBgp::new(NodeOptions::new("k8s-w0"));
    node.reconcile(T0, &lab_a());
    let status = node.node_config_status(T0);
    let json = serde_json::to_string(&status).unwrap();
    assert_eq!(
        json,
        r#"{"bgpInstances":[{"name":"instance-65001","localASN":65001,"peers":[{"name":"tor-switch","peerAddress":"192.168.10.200","peerASN":65000,"peeringState":"connect","routeCount":[{"afi":"ipv4","safi":"unicast","advertised":0,"received":0}]}]}]}"#
    );
    let mut quiet = NodeBgp::new(NodeOptions {
        status_report: false,
        ..NodeOptions::new("k8s-w0")
    });
    quiet.reconcile(T0, &lab_a());
    assert_eq!(
        serde_json::to_string(&quiet.node_config_status(T0)).unwrap(),
        "{}"
    );
}
