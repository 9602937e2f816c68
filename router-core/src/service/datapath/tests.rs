use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::*;
use crate::service::Protocol;
use crate::service::table::{BackendSpec, FrontendKind, FrontendSpec};

const CLIENT: [u8; 4] = [203, 0, 113, 7];
const POD: [u8; 4] = [10, 244, 1, 20];
const NODE_A: [u8; 4] = [192, 168, 10, 1];
const NODE_B: [u8; 4] = [192, 168, 10, 2];
const CLUSTER_IP: [u8; 4] = [10, 96, 0, 10];
/// Backends: one on node A, two elsewhere.
const LOCAL: [u8; 4] = [10, 244, 1, 5];
const REMOTE: [[u8; 4]; 2] = [[10, 244, 2, 5], [10, 244, 3, 5]];

fn l3n4(addr: [u8; 4], port: u16) -> L3n4 {
    L3n4 {
        addr: IpAddr::from(addr),
        port,
        protocol: Protocol::Tcp,
    }
}

fn backend(addr: [u8; 4], local: bool, state: BackendState) -> BackendSpec {
    BackendSpec {
        addr: l3n4(addr, 8080),
        state,
        local,
        weight: maglev::DEFAULT_WEIGHT,
        node: None,
    }
}

fn backends() -> Vec<BackendSpec> {
    let mut all = alloc::vec![backend(LOCAL, true, BackendState::Active)];
    all.extend(
        REMOTE
            .iter()
            .map(|a| backend(*a, false, BackendState::Active)),
    );
    all
}

struct Svc {
    external_local: bool,
    affinity_seconds: Option<u32>,
    backends: Vec<BackendSpec>,
}

impl Default for Svc {
    fn default() -> Self {
        Svc {
            external_local: false,
            affinity_seconds: None,
            backends: backends(),
        }
    }
}

/// A ClusterIP 10.96.0.10:80 and NodePort `node`:30080 of one service.
fn table(config: &Config, node: [u8; 4], svc: Svc) -> ServiceTable {
    let spec = |kind| FrontendSpec {
        service: ("default".into(), "web".into()),
        kind,
        external_local: svc.external_local,
        internal_local: false,
        affinity_seconds: svc.affinity_seconds,
        backends: svc.backends.clone(),
    };
    let frontends: BTreeMap<L3n4, FrontendSpec> = [
        (l3n4(CLUSTER_IP, 80), spec(FrontendKind::ClusterIp)),
        (l3n4(node, 30080), spec(FrontendKind::NodePort)),
    ]
    .into();
    ServiceTable::new(&config.maglev, frontends)
}

fn config(algorithm: Algorithm) -> Config {
    Config {
        algorithm,
        maglev: maglev::Config::new(1021, maglev::DEFAULT_HASH_SEED).unwrap(),
        snat_v4: Some(Ipv4Addr::from(NODE_A)),
        ..Config::default()
    }
}

fn service(algorithm: Algorithm, svc: Svc) -> Service {
    let config = config(algorithm);
    Service::new(config, table(&config, NODE_A, svc))
}

fn packet(src: [u8; 4], src_port: u16, dst: L3n4, flags: TcpFlags, origin: Origin) -> Packet {
    Packet {
        tuple: Tuple {
            src: IpAddr::from(src),
            dst: dst.addr,
            src_port,
            dst_port: dst.port,
            protocol: dst.protocol,
        },
        flags,
        origin,
    }
}

fn at(s: i64) -> Instant {
    Instant::from_secs(s)
}

fn translated(v: Verdict) -> Tuple {
    match v {
        Verdict::Translated(t) => t,
        other => panic!("not translated: {other:?}"),
    }
}

#[test]
fn cluster_ip_from_a_pod_is_load_balanced_and_replies_come_back_from_the_vip() {
    let mut svc = service(Algorithm::Random, Svc::default());
    let syn = packet(
        POD,
        40000,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    // random 1 of 3 active backends (IDs in address order: local, remote 0, remote 1).
    let t = translated(svc.process(at(0), &syn, 1));
    assert_eq!((t.dst, t.dst_port), (IpAddr::from(REMOTE[0]), 8080));
    assert_eq!(
        (t.src, t.src_port),
        (IpAddr::from(POD), 40000),
        "no SNAT from a pod"
    );
    // The flow stays on its backend whatever the random number.
    let ack = Packet {
        flags: TcpFlags::ACK,
        ..syn
    };
    assert_eq!(svc.process(at(1), &ack, 2), Verdict::Translated(t));
    let reply = Packet {
        tuple: t.reversed(),
        flags: TcpFlags::SYN.with(TcpFlags::ACK),
        origin: Origin::Local,
    };
    assert_eq!(
        svc.process(at(1), &reply, 0),
        Verdict::Reply(syn.tuple.reversed())
    );
    assert_eq!(svc.connections(), 1);
}

#[test]
fn outside_traffic_to_a_cluster_ip_or_an_unknown_address_is_not_service() {
    let mut svc = service(Algorithm::Random, Svc::default());
    let outside = packet(
        CLIENT,
        40000,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::External,
    );
    assert_eq!(svc.process(at(0), &outside, 0), Verdict::NotService);
    let other = packet(
        POD,
        40000,
        l3n4([10, 96, 0, 11], 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    assert_eq!(svc.process(at(0), &other, 0), Verdict::NotService);
    assert_eq!(svc.connections(), 0);
}

#[test]
fn node_port_from_outside_to_a_remote_backend_is_source_nated_and_reversed() {
    let mut svc = service(Algorithm::Random, Svc::default());
    let req = packet(
        CLIENT,
        1234,
        l3n4(NODE_A, 30080),
        TcpFlags::SYN,
        Origin::External,
    );
    let t = translated(svc.process(at(0), &req, 2));
    assert_eq!(t.dst, IpAddr::from(REMOTE[1]));
    assert_eq!(t.src, IpAddr::from(NODE_A), "SNAT to the node address");
    assert!((32768..=65535).contains(&t.src_port), "port {}", t.src_port);
    assert_eq!(svc.nat_mappings(), 1);
    let reply = Packet {
        tuple: t.reversed(),
        flags: TcpFlags::SYN.with(TcpFlags::ACK),
        origin: Origin::External,
    };
    let back = Tuple {
        src: IpAddr::from(NODE_A),
        src_port: 30080,
        dst: IpAddr::from(CLIENT),
        dst_port: 1234,
        protocol: Protocol::Tcp,
    };
    assert_eq!(svc.process(at(1), &reply, 0), Verdict::Reply(back));
    // Half-open: gone after 60 s, and its port with it.
    let other = packet(
        POD,
        1,
        l3n4([10, 96, 0, 11], 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    svc.process(at(61), &other, 0);
    assert_eq!((svc.connections(), svc.nat_mappings()), (0, 0));
    // A local backend is reached without SNAT.
    let t = translated(svc.process(at(62), &req, 0));
    assert_eq!((t.dst, t.src), (IpAddr::from(LOCAL), IpAddr::from(CLIENT)));
}

#[test]
fn external_traffic_policy_local_without_a_local_backend_drops() {
    let svc_spec = Svc {
        external_local: true,
        backends: REMOTE
            .iter()
            .map(|a| backend(*a, false, BackendState::Active))
            .collect(),
        ..Svc::default()
    };
    let mut svc = service(Algorithm::Maglev, svc_spec);
    let req = packet(
        CLIENT,
        1234,
        l3n4(NODE_A, 30080),
        TcpFlags::SYN,
        Origin::External,
    );
    assert_eq!(
        svc.process(at(0), &req, 0),
        Verdict::Drop(DropReason::NoBackend)
    );
    // The same NodePort from a pod on this node follows the internal policy.
    let local = packet(POD, 1234, l3n4(NODE_A, 30080), TcpFlags::SYN, Origin::Local);
    assert!(matches!(
        svc.process(at(0), &local, 0),
        Verdict::Translated(_)
    ));
}

#[test]
fn maglev_sends_a_flow_to_the_same_backend_through_any_node() {
    let config_a = config(Algorithm::Maglev);
    let config_b = Config {
        snat_v4: Some(Ipv4Addr::from(NODE_B)),
        ..config_a
    };
    let mut a = Service::new(config_a, table(&config_a, NODE_A, Svc::default()));
    // Node B's own view: its NodePort address, the same backends (none of them local to it).
    let on_b = Svc {
        backends: backends()
            .into_iter()
            .map(|b| BackendSpec { local: false, ..b })
            .collect(),
        ..Svc::default()
    };
    let mut b = Service::new(config_b, table(&config_b, NODE_B, on_b));
    for port in 1000..1100 {
        let via_a = packet(
            CLIENT,
            port,
            l3n4(NODE_A, 30080),
            TcpFlags::SYN,
            Origin::External,
        );
        let via_b = packet(
            CLIENT,
            port,
            l3n4(NODE_B, 30080),
            TcpFlags::SYN,
            Origin::External,
        );
        let ta = translated(a.process(at(0), &via_a, port.into()));
        let tb = translated(b.process(at(0), &via_b, 7));
        assert_eq!(
            (ta.dst, ta.dst_port),
            (tb.dst, tb.dst_port),
            "client port {port}"
        );
    }
}

#[test]
fn client_ip_affinity_keeps_a_client_on_its_backend_until_the_timeout() {
    let svc_spec = Svc {
        affinity_seconds: Some(100),
        ..Svc::default()
    };
    let mut svc = service(Algorithm::Random, svc_spec);
    let first = packet(
        POD,
        40000,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    let backend = translated(svc.process(at(0), &first, 0)).dst;
    for (i, t) in [10, 50, 149].into_iter().enumerate() {
        let next = packet(
            POD,
            40001 + i as u16,
            l3n4(CLUSTER_IP, 80),
            TcpFlags::SYN,
            Origin::Local,
        );
        assert_eq!(
            translated(svc.process(at(t), &next, 1 + i as u32)).dst,
            backend
        );
    }
    // Last used at 149 s: forgotten at 249 s, so random picks again.
    let late = packet(
        POD,
        50000,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    assert_ne!(translated(svc.process(at(249), &late, 1)).dst, backend);
}

#[test]
fn terminating_backends_drain_and_removed_ones_are_replaced() {
    let config = config(Algorithm::Random);
    let mut svc = Service::new(config, table(&config, NODE_A, Svc::default()));
    let syn = packet(
        POD,
        40000,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    let first = translated(svc.process(at(0), &syn, 0));
    assert_eq!(first.dst, IpAddr::from(LOCAL));
    // The local backend starts terminating: its flow keeps going...
    let mut terminating = backends();
    terminating[0].state = BackendState::Terminating;
    let spec = || Svc {
        backends: terminating.clone(),
        ..Svc::default()
    };
    svc.set_table(table(&config, NODE_A, spec()));
    let ack = Packet {
        flags: TcpFlags::ACK,
        ..syn
    };
    assert_eq!(svc.process(at(1), &ack, 0), Verdict::Translated(first));
    // ...but a new SYN on the same tuple goes to an active backend.
    let again = translated(svc.process(at(2), &syn, 0));
    assert_eq!(again.dst, IpAddr::from(REMOTE[0]));
    // The backend disappears: its flows move on their next packet.
    svc.set_table(table(
        &config,
        NODE_A,
        Svc {
            backends: alloc::vec![backend(REMOTE[1], false, BackendState::Active)],
            ..Svc::default()
        },
    ));
    assert_eq!(
        translated(svc.process(at(3), &ack, 0)).dst,
        IpAddr::from(REMOTE[1])
    );
    assert_eq!(svc.connections(), 1);
}

#[test]
fn a_full_conntrack_table_drops_without_leaking_nat_ports() {
    let config = Config {
        limits: conntrack::Limits { tcp: 1, non_tcp: 1 },
        ..config(Algorithm::Random)
    };
    let mut svc = Service::new(config, table(&config, NODE_A, Svc::default()));
    let first = packet(
        CLIENT,
        1000,
        l3n4(NODE_A, 30080),
        TcpFlags::SYN,
        Origin::External,
    );
    assert!(matches!(
        svc.process(at(0), &first, 1),
        Verdict::Translated(_)
    ));
    let second = packet(
        CLIENT,
        1001,
        l3n4(NODE_A, 30080),
        TcpFlags::SYN,
        Origin::External,
    );
    assert_eq!(
        svc.process(at(0), &second, 1),
        Verdict::Drop(DropReason::ConntrackFull)
    );
    assert_eq!((svc.connections(), svc.nat_mappings()), (1, 1));
}

#[test]
fn snat_without_a_node_address_of_the_family_is_a_drop() {
    let config = Config {
        snat_v4: None,
        ..config(Algorithm::Random)
    };
    let mut svc = Service::new(config, table(&config, NODE_A, Svc::default()));
    let req = packet(
        CLIENT,
        1000,
        l3n4(NODE_A, 30080),
        TcpFlags::SYN,
        Origin::External,
    );
    assert_eq!(
        svc.process(at(0), &req, 1),
        Verdict::Drop(DropReason::NoNodeAddress)
    );
}

#[test]
fn a_frontend_without_backends_drops_new_flows() {
    let mut svc = service(
        Algorithm::Maglev,
        Svc {
            backends: Vec::new(),
            ..Svc::default()
        },
    );
    let req = packet(
        POD,
        1000,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    assert_eq!(
        svc.process(at(0), &req, 0),
        Verdict::Drop(DropReason::NoBackend)
    );
}

#[test]
fn dsr_dispatches_to_the_backends_node_which_answers_from_the_service() {
    // Node A balances; REMOTE[0] runs on node B, REMOTE[1]'s node is unknown.
    let mut all = backends();
    all[1].node = Some(IpAddr::from(NODE_B));
    let mut lb = Service::new(
        Config {
            mode: Mode::Dsr,
            ..config(Algorithm::Random)
        },
        table(
            &config(Algorithm::Random),
            NODE_A,
            Svc {
                backends: all,
                ..Svc::default()
            },
        ),
    );
    let frontend = l3n4(NODE_A, 30080);
    let syn = packet(CLIENT, 40000, frontend, TcpFlags::SYN, Origin::External);
    // random 1: REMOTE[0], dispatched with the client's address kept.
    let Verdict::Dispatch {
        tuple,
        node,
        service,
    } = lb.process(at(0), &syn, 1)
    else {
        panic!("not dispatched");
    };
    assert_eq!((tuple.src, tuple.src_port), (IpAddr::from(CLIENT), 40000));
    assert_eq!((tuple.dst, tuple.dst_port), (IpAddr::from(REMOTE[0]), 8080));
    assert_eq!((node, service), (IpAddr::from(NODE_B), frontend));
    // The flow's next packet goes the same way, whatever the random number.
    let ack = packet(CLIENT, 40000, frontend, TcpFlags::ACK, Origin::External);
    assert!(matches!(lb.process(at(1), &ack, 0), Verdict::Dispatch { tuple: t, .. } if t == tuple));
    // The local backend is translated in place; no SNAT either way.
    let other = packet(CLIENT, 40001, frontend, TcpFlags::SYN, Origin::External);
    let t = translated(lb.process(at(1), &other, 0));
    assert_eq!((t.src, t.dst), (IpAddr::from(CLIENT), IpAddr::from(LOCAL)));
    // A backend whose node is unknown cannot be dispatched to.
    let third = packet(CLIENT, 40002, frontend, TcpFlags::SYN, Origin::External);
    assert_eq!(
        lb.process(at(1), &third, 2),
        Verdict::Drop(DropReason::NoBackendNode)
    );
    assert_eq!(lb.counters().dispatched, 2);

    // Node B tracks the dispatched request and answers it from the service.
    let mut b = Service::new(config(Algorithm::Random), ServiceTable::default());
    b.accept_dispatched(at(1), &tuple, TcpFlags::SYN, frontend);
    let reply = Packet {
        tuple: tuple.reversed(),
        flags: TcpFlags::SYN.with(TcpFlags::ACK),
        origin: Origin::Local,
    };
    let Verdict::Reply(r) = b.process(at(1), &reply, 0) else {
        panic!("not a reply");
    };
    assert_eq!((r.src, r.src_port), (frontend.addr, frontend.port));
    assert_eq!((r.dst, r.dst_port), (IpAddr::from(CLIENT), 40000));
    assert_eq!(b.counters().replies, 1);
}

#[test]
fn hybrid_mode_dispatches_tcp_and_snats_udp() {
    let mut all = backends();
    for b in &mut all {
        b.node = Some(IpAddr::from(NODE_B));
    }
    let udp = |b: &BackendSpec| BackendSpec {
        addr: L3n4 {
            protocol: Protocol::Udp,
            ..b.addr
        },
        ..b.clone()
    };
    let config = Config {
        mode: Mode::Hybrid,
        ..config(Algorithm::Random)
    };
    let spec = |protocol, backends: Vec<BackendSpec>| FrontendSpec {
        service: ("default".into(), "dns".into()),
        kind: FrontendKind::NodePort,
        external_local: false,
        internal_local: false,
        affinity_seconds: None,
        backends: backends
            .iter()
            .map(|b| BackendSpec {
                addr: L3n4 { protocol, ..b.addr },
                ..b.clone()
            })
            .collect(),
    };
    let tcp_frontend = l3n4(NODE_A, 30053);
    let udp_frontend = L3n4 {
        protocol: Protocol::Udp,
        ..tcp_frontend
    };
    let udp_backends: Vec<BackendSpec> = all.iter().map(udp).collect();
    let frontends = BTreeMap::from([
        (tcp_frontend, spec(Protocol::Tcp, all)),
        (udp_frontend, spec(Protocol::Udp, udp_backends)),
    ]);
    let mut lb = Service::new(config, ServiceTable::new(&config.maglev, frontends));
    let tcp = packet(CLIENT, 5000, tcp_frontend, TcpFlags::SYN, Origin::External);
    assert!(matches!(
        lb.process(at(0), &tcp, 1),
        Verdict::Dispatch { .. }
    ));
    let dns = packet(CLIENT, 5000, udp_frontend, TcpFlags::NONE, Origin::External);
    let t = translated(lb.process(at(0), &dns, 1));
    assert_eq!(t.src, IpAddr::from(NODE_A), "SNAT for UDP");
}

#[test]
fn a_socket_connect_gets_a_backend_without_tracking_it() {
    let random = service(Algorithm::Random, Svc::default());
    let frontend = l3n4(CLUSTER_IP, 80);
    // slot 1 of 3 active backends, as for a packet-level flow.
    assert_eq!(
        random.connect(&frontend, 1),
        Connect::Backend(l3n4(REMOTE[0], 8080))
    );
    assert_eq!(random.connections(), 0, "the socket carries the backend");
    assert_eq!(
        random.connect(&l3n4(CLUSTER_IP, 81), 1),
        Connect::NotService
    );
    // Maglev plays no part at the socket: the slot picks, as with random.
    let maglev = service(Algorithm::Maglev, Svc::default());
    assert!((0..50).all(|slot| maglev.connect(&frontend, slot) == random.connect(&frontend, slot)));
    // No active backend: the connect fails.
    let none = service(
        Algorithm::Random,
        Svc {
            backends: Vec::new(),
            ..Svc::default()
        },
    );
    assert_eq!(none.connect(&frontend, 1), Connect::Unreachable);
}

/// Node A's masquerading: pods 10.244.1.0/24, the cluster's pods and
/// 10.244.0.0/16 natively routed, node B's address excluded.
fn masquerading() -> Masquerade {
    use super::masquerade::{NodeAddresses, Settings};
    let settings = Settings {
        native_routing_cidr: Some("10.244.0.0/16".parse().unwrap()),
        non_masquerade: Vec::new(),
        tunnel: false,
    };
    let nodes = [
        NodeAddresses {
            local: true,
            addrs: alloc::vec![Ipv4Addr::from(NODE_A)],
            pods: alloc::vec!["10.244.1.0/24".parse().unwrap()],
        },
        NodeAddresses {
            local: false,
            addrs: alloc::vec![Ipv4Addr::from(NODE_B)],
            pods: alloc::vec!["10.244.2.0/24".parse().unwrap()],
        },
    ];
    Masquerade::for_node(Ipv4Addr::from(NODE_A), &settings, &nodes)
}

#[test]
fn pods_talking_to_the_world_are_masqueraded_and_their_replies_reversed() {
    let mut svc = service(Algorithm::Random, Svc::default());
    let outside = l3n4(CLIENT, 443);
    let syn = packet(POD, 40000, outside, TcpFlags::SYN, Origin::Local);
    assert_eq!(
        svc.process(at(0), &syn, 7),
        Verdict::NotService,
        "off by default"
    );
    svc.set_masquerade(Some(masquerading()));
    let t = translated(svc.process(at(1), &syn, 7));
    assert_eq!(
        (t.src, t.dst, t.dst_port),
        (IpAddr::from(NODE_A), IpAddr::from(CLIENT), 443)
    );
    assert_eq!(
        t.src_port, 40000,
        "the pod's port is kept when it is in the range"
    );
    // A second pod on the same port to the same server gets another port.
    let other = packet(
        [10, 244, 1, 21],
        40000,
        outside,
        TcpFlags::SYN,
        Origin::Local,
    );
    let u = translated(svc.process(at(1), &other, 7));
    assert_ne!(u.src_port, t.src_port);
    let reply = Packet {
        tuple: t.reversed(),
        flags: TcpFlags::SYN.with(TcpFlags::ACK),
        origin: Origin::External,
    };
    assert_eq!(
        svc.process(at(2), &reply, 0),
        Verdict::Reply(syn.tuple.reversed())
    );
    let ack = packet(POD, 40000, outside, TcpFlags::ACK, Origin::Local);
    assert_eq!(svc.process(at(3), &ack, 0), Verdict::Translated(t));
    assert_eq!(svc.counters().masqueraded, 2);
    assert_eq!(svc.nat_mappings(), 2);
    // In-cluster destinations and the service stage itself are untouched.
    let pod_b = packet(
        POD,
        40001,
        l3n4(REMOTE[0], 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    assert_eq!(svc.process(at(4), &pod_b, 0), Verdict::NotService);
    let node_b = packet(POD, 40002, l3n4(NODE_B, 22), TcpFlags::SYN, Origin::Local);
    assert_eq!(svc.process(at(4), &node_b, 0), Verdict::NotService);
    let vip = packet(
        POD,
        40003,
        l3n4(CLUSTER_IP, 80),
        TcpFlags::SYN,
        Origin::Local,
    );
    let v = translated(svc.process(at(4), &vip, 0));
    assert_eq!(
        v.src,
        IpAddr::from(POD),
        "a service flow from a pod keeps its source"
    );
}

#[test]
fn replies_to_connections_from_outside_are_not_masqueraded() {
    let mut svc = service(Algorithm::Random, Svc::default());
    svc.set_masquerade(Some(masquerading()));
    let pod = l3n4(POD, 8080);
    let syn = packet(CLIENT, 5555, pod, TcpFlags::SYN, Origin::External);
    assert_eq!(svc.process(at(0), &syn, 0), Verdict::NotService);
    assert_eq!(svc.connections(), 1, "tracked");
    let reply = Packet {
        tuple: syn.tuple.reversed(),
        flags: TcpFlags::SYN.with(TcpFlags::ACK),
        origin: Origin::Local,
    };
    assert_eq!(svc.process(at(1), &reply, 0), Verdict::NotService);
    assert_eq!(svc.counters().masqueraded, 0);
    // Once the connection is forgotten (60 s half-open), the pod's packet
    // to the client opens a masqueraded flow, as Cilium's would.
    assert!(matches!(
        svc.process(at(62), &reply, 0),
        Verdict::Translated(_)
    ));
}
