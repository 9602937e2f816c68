//! The stateful differential: router-core's service stage and pipeline
//! against the loaded XDP programs, over generated service tables and
//! packet *sequences* (requests, replies to what came out, retransmits,
//! FIN/RST, time passing beyond lifetimes, fragments, truncated headers).
//!
//! Time and randomness enter both sides as the same input: each packet
//! carries a clock reading and a random number, handed to router-core's
//! `Service::translate` and written to the program's `SVC_INPUTS` map before
//! the packet's test run, so `random` selection and SNAT ports are compared
//! too. After every packet the verdicts and output bytes must match; after
//! every sequence the live connections (original and reply tuples,
//! frontend, state, deadline) and the counters.
//!
//! Replies are built from what came out earlier in the sequence (the
//! reference's output, which the program's matched), so they hit the
//! connections the sequence opened. Masquerading is drawn too: one of the
//! clients is a local pod, and the world (198.51.100.0/24) lies beyond the
//! native routing CIDR, partly in a non-masquerade CIDR.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use nexthop_offload_bpf_common::service::{FlowKey, L3n4Key};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use router_core::PortId;
use router_core::datapath::Reason;
use router_core::datapath::checksum;
use router_core::datapath::pipeline::{Config, TunnelConfig, Verdict, dispatch, process};
use router_core::ecmp::HashPolicy;
use router_core::fib::Nexthop;
use router_core::service::Protocol;
use router_core::service::datapath::{self, Algorithm, Mode, Origin, Service};
use router_core::service::maglev;
use router_core::service::masquerade::{Masquerade, NodeAddresses, Settings};
use router_core::service::table::{
    BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable,
};
use router_core::wire::geneve::DsrOption;
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use crate::datapath::{Capacity, Datapath, privileged};
use crate::differential::{Lab, Oddity, expected_action, hex, ipv4_frame, mac_of, port};
use crate::services::ServiceMaps;
use crate::snapshot::Snapshot;

/// The node address NodePorts listen on and outside traffic is SNATed to.
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// Maglev table size of the generated tables (the smallest Cilium allows).
const MAGLEV_SIZE: u32 = 251;
/// The MAC of encapsulated inner frames.
const INNER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x0d, 0x5e]);
/// Gateways: clients behind port 0, backends behind port 1.
const CLIENT_GW: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);
const BACKEND_GW: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 2);

/// Frontend addresses: a ClusterIP, the node (NodePort), a LoadBalancer IP.
fn frontend_addr(kind: FrontendKind) -> Ipv4Addr {
    match kind {
        FrontendKind::ClusterIp => Ipv4Addr::new(10, 96, 0, 10),
        FrontendKind::NodePort => NODE,
        FrontendKind::LoadBalancer | FrontendKind::ExternalIp => Ipv4Addr::new(172, 16, 1, 1),
    }
}

/// One generated service table and the settings it is served with.
#[derive(Clone, Debug)]
struct Services {
    config: datapath::Config,
    frontends: BTreeMap<L3n4, FrontendSpec>,
    /// Port 0 (the test run's ingress) faces pods: in-cluster traffic.
    pod_ingress: bool,
    /// Geneve frames carrying Cilium's DSR option are accepted (requests
    /// other nodes dispatch here).
    accept_dsr: bool,
    /// Pods' traffic leaving the node is masqueraded.
    masquerade: Option<Masquerade>,
}

/// A client's address: three outside the cluster, the fourth a pod of
/// this node (10.0.1.0/24).
fn client_addr(client: u8) -> Ipv4Addr {
    match client {
        0..3 => Ipv4Addr::new(203, 0, 113, client + 1),
        _ => Ipv4Addr::new(10, 0, 1, 9),
    }
}

/// This node's masquerading (its pods 10.0.1.0/24, node 192.168.0.2's
/// 10.0.0.0/24), with or without the native routing CIDR 10.0.0.0/16 and
/// the non-masquerade CIDR 198.51.100.0/25, in native or tunnel mode.
fn masquerade() -> impl Strategy<Value = Option<Masquerade>> {
    let settings =
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(native, nonmasq, tunnel)| {
            Settings {
                native_routing_cidr: native.then(|| "10.0.0.0/16".parse().unwrap()),
                non_masquerade: if nonmasq {
                    vec!["198.51.100.0/25".parse().unwrap()]
                } else {
                    Vec::new()
                },
                tunnel,
            }
        });
    prop_oneof![
        1 => Just(None),
        2 => settings.prop_map(|settings| {
            let nodes = [
                NodeAddresses {
                    local: true,
                    addrs: vec![NODE],
                    pods: vec!["10.0.1.0/24".parse().unwrap()],
                },
                NodeAddresses {
                    local: false,
                    addrs: vec![Ipv4Addr::new(192, 168, 0, 2)],
                    pods: vec!["10.0.0.0/24".parse().unwrap()],
                },
            ];
            Some(Masquerade::for_node(NODE, &settings, &nodes))
        }),
    ]
}

fn backend() -> impl Strategy<Value = BackendSpec> {
    (0u8..2, 1u8..5, prop::bool::weighted(0.8), any::<bool>()).prop_map(
        |(node, host, active, local)| BackendSpec {
            addr: L3n4 {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, node, host)),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            state: if active {
                BackendState::Active
            } else {
                BackendState::Terminating
            },
            local,
            weight: 100,
            node: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, node + 1))),
        },
    )
}

fn frontend() -> impl Strategy<Value = (L3n4, FrontendSpec)> {
    let kind = prop::sample::select(vec![
        FrontendKind::ClusterIp,
        FrontendKind::NodePort,
        FrontendKind::LoadBalancer,
    ]);
    let protocol = prop_oneof![3 => Just(Protocol::Tcp), 1 => Just(Protocol::Udp)];
    let affinity =
        prop_oneof![3 => Just(None), 1 => prop::sample::select(vec![Some(5u32), Some(10800)])];
    (
        kind,
        prop::sample::select(vec![80u16, 30080]),
        protocol,
        any::<bool>(),
        any::<bool>(),
        affinity,
        prop::collection::vec(backend(), 0..5),
    )
        .prop_map(
            |(kind, port, protocol, external_local, internal_local, affinity, backends)| {
                let backends = backends
                    .into_iter()
                    .map(|mut b| {
                        b.addr.protocol = protocol;
                        b
                    })
                    .collect();
                let addr = L3n4 {
                    addr: IpAddr::V4(frontend_addr(kind)),
                    port,
                    protocol,
                };
                let spec = FrontendSpec {
                    service: ("default".into(), "web".into()),
                    kind,
                    external_local,
                    internal_local,
                    affinity_seconds: affinity,
                    backends,
                };
                (addr, spec)
            },
        )
}

fn services() -> impl Strategy<Value = Services> {
    let algorithm = prop_oneof![Just(Algorithm::Random), Just(Algorithm::Maglev)];
    let snat = prop_oneof![6 => Just(Some(NODE)), 1 => Just(None)];
    let mode = prop_oneof![2 => Just(Mode::Snat), 1 => Just(Mode::Dsr), 1 => Just(Mode::Hybrid)];
    (
        prop::collection::vec(frontend(), 1..5)
            .prop_map(|fs| fs.into_iter().collect::<BTreeMap<_, _>>()),
        algorithm,
        snat,
        any::<bool>(),
        mode,
        prop::bool::weighted(0.8),
        masquerade(),
    )
        .prop_map(
            |(frontends, algorithm, snat_v4, pod_ingress, mode, accept_dsr, masquerade)| Services {
                config: datapath::Config {
                    algorithm,
                    maglev: maglev::Config::new(MAGLEV_SIZE, maglev::DEFAULT_HASH_SEED)
                        .expect("a supported size"),
                    snat_v4,
                    mode,
                    ..datapath::Config::default()
                },
                frontends,
                pod_ingress,
                accept_dsr,
                masquerade,
            },
        )
}

/// Where a generated packet goes and what it carries.
#[derive(Clone, Debug)]
enum Step {
    /// A client's packet to an address and port.
    Request {
        client: u8,
        client_port: u16,
        dst: Ipv4Addr,
        dst_port: u16,
        udp: bool,
        flags: u8,
    },
    /// A client's packet to the `index`-th frontend of the table (modulo
    /// their number).
    Frontend {
        index: usize,
        client: u8,
        client_port: u16,
        flags: u8,
    },
    /// A reply to the output of the `of`-th packet before (modulo those
    /// sent so far), from its destination back to its source.
    Reply { of: usize, flags: u8 },
    /// A client's request to the `index`-th frontend, dispatched here by
    /// another node (DSR): in Geneve from 192.168.0.2 to this node with
    /// Cilium's DSR option, the request rewritten to backend host
    /// `backend`. `options`: 0 the DSR option alone, 1 a non-critical
    /// option before it, 2 an unknown critical option too, 3 a DSR-like
    /// option of the wrong length, 4 none.
    Dispatched {
        index: usize,
        client: u8,
        client_port: u16,
        backend: u8,
        flags: u8,
        options: u8,
    },
}

/// One packet of a sequence: what, when (seconds after the previous one),
/// the random number it gets, and how it may be malformed.
#[derive(Clone, Debug)]
struct Packet {
    step: Step,
    after: u64,
    random: u32,
    odd: Oddity,
    /// Bytes of the frame kept (`None`: all).
    truncate: Option<usize>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn flags() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![
        SYN,
        SYN,
        ACK,
        ACK,
        ACK | 0x08,
        SYN | ACK,
        0x01 | ACK,
        0x04,
        0x04 | ACK,
    ])
}

fn step() -> impl Strategy<Value = Step> {
    let dst = prop::sample::select(vec![
        frontend_addr(FrontendKind::ClusterIp),
        NODE,
        frontend_addr(FrontendKind::LoadBalancer),
        Ipv4Addr::new(10, 0, 1, 3),
        Ipv4Addr::new(198, 51, 100, 7),
        Ipv4Addr::new(198, 51, 100, 200),
    ]);
    prop_oneof![
        3 => (0u8..4, prop::sample::select(vec![40000u16, 40001, 1234]), dst,
              prop::sample::select(vec![80u16, 80, 30080, 30080, 8080]), prop::bool::weighted(0.25), flags())
            .prop_map(|(client, client_port, dst, dst_port, udp, flags)| Step::Request {
                client, client_port, dst, dst_port, udp, flags,
            }),
        4 => (any::<usize>(), 0u8..4, prop::sample::select(vec![40000u16, 40001, 1234]), flags())
            .prop_map(|(index, client, client_port, flags)| Step::Frontend {
                index, client, client_port, flags,
            }),
        3 => (any::<usize>(), flags()).prop_map(|(of, flags)| Step::Reply { of, flags }),
        2 => (
            any::<usize>(),
            0u8..3,
            prop::sample::select(vec![40000u16, 40001, 1234]),
            1u8..5,
            flags(),
            prop_oneof![8 => Just(0u8), 1 => 1u8..5],
        )
            .prop_map(|(index, client, client_port, backend, flags, options)| {
                Step::Dispatched { index, client, client_port, backend, flags, options }
            }),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    let after = prop::sample::select(vec![0u64, 0, 0, 1, 4, 6, 11, 61, 10801]);
    let odd = prop_oneof![12 => Just(Oddity::NONE), 1 => crate::differential::oddity()];
    let truncate = prop_oneof![12 => Just(None), 1 => (14usize..60).prop_map(Some)];
    (step(), after, any::<u32>(), odd, truncate).prop_map(|(step, after, random, odd, truncate)| {
        Packet {
            step,
            after,
            random,
            odd,
            truncate,
        }
    })
}

/// A TCP or UDP header and payload with its checksum over the pseudo-header.
fn transport(src: Ipv4Addr, dst: Ipv4Addr, udp: bool, ports: (u16, u16), flags: u8) -> Vec<u8> {
    let mut l4 = if udp {
        vec![0u8; 8 + 4]
    } else {
        vec![0u8; 20 + 4]
    };
    l4[0..2].copy_from_slice(&ports.0.to_be_bytes());
    l4[2..4].copy_from_slice(&ports.1.to_be_bytes());
    let check_at = if udp {
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
        6
    } else {
        l4[12] = 5 << 4;
        l4[13] = flags;
        16
    };
    let n = l4.len();
    l4[n - 4..].copy_from_slice(b"data");
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, if udp { 17 } else { 6 }]);
    pseudo.extend_from_slice(&(n as u16).to_be_bytes());
    let sum = checksum::sum(&pseudo) + checksum::sum(&l4);
    let check = !checksum::fold(sum);
    l4[check_at..check_at + 2].copy_from_slice(&check.to_be_bytes());
    l4
}

/// A client's request as dispatched to a backend.
struct Request {
    client: (Ipv4Addr, u16),
    backend: Ipv4Addr,
    flags: u8,
}

/// `request` to frontend `f`, rewritten to its backend (port 8080) and
/// dispatched here in Geneve from 192.168.0.2 with Cilium's DSR option
/// (`options` as [`Step::Dispatched`] says); `odd` spoils the inner packet.
fn dispatched_frame(f: &L3n4, request: &Request, options: u8, odd: Oddity) -> Vec<u8> {
    let IpAddr::V4(service) = f.addr else {
        return Vec::new();
    };
    let udp = f.protocol == Protocol::Udp;
    let (client, client_port) = request.client;
    let l4 = transport(
        client,
        request.backend,
        udp,
        (client_port, 8080),
        request.flags,
    );
    let mut inner = ipv4_frame(
        client,
        request.backend,
        63,
        if udp { 17 } else { 6 },
        &l4,
        odd,
    );
    inner[0..6].copy_from_slice(&INNER_MAC.0);
    let dsr = DsrOption {
        addr: service,
        port: f.port,
    }
    .emit();
    let other = [0x01, 0x02, 0x03, 0x01, 0xab, 0xab, 0xab, 0xab];
    let unknown_critical = [0x01, 0x02, 0x83, 0x00];
    let mut opts: Vec<u8> = match options {
        0 => dsr.to_vec(),
        1 => [&other[..], &dsr[..]].concat(),
        2 => [&dsr[..], &unknown_critical[..]].concat(),
        3 => {
            let mut long = dsr.to_vec();
            long[3] = 3;
            long.extend_from_slice(&[0; 4]);
            long
        }
        _ => Vec::new(),
    };
    let mut geneve = vec![
        (opts.len() / 4) as u8,
        if opts.is_empty() { 0 } else { 0x40 },
        0x65,
        0x58,
        0,
        0,
        1,
        0,
    ];
    geneve.append(&mut opts);
    let udp_len = (8 + geneve.len() + inner.len()) as u16;
    let mut payload = vec![0xc0, 0x01, 0x17, 0xc1];
    payload.extend_from_slice(&udp_len.to_be_bytes());
    payload.extend_from_slice(&[0, 0]);
    payload.extend(geneve);
    payload.extend(inner);
    ipv4_frame(
        Ipv4Addr::new(192, 168, 0, 2),
        NODE,
        64,
        17,
        &payload,
        Oddity::NONE,
    )
}

/// The frame of packet `p`, given the table's frontends and the outputs of
/// the packets before it (a reply to nothing becomes a client's packet to a
/// backend directly).
fn frame(p: &Packet, frontends: &[L3n4], outputs: &[Vec<u8>]) -> Vec<u8> {
    let direct = (
        Ipv4Addr::new(203, 0, 113, 1),
        Ipv4Addr::new(10, 0, 1, 3),
        false,
        (40000, 8080),
        SYN,
    );
    let (src, dst, udp, ports, flags) = match p.step {
        Step::Dispatched {
            index,
            client,
            client_port,
            backend,
            flags,
            options,
        } => {
            let f = frontends[index % frontends.len().max(1)];
            let request = Request {
                client: (Ipv4Addr::new(203, 0, 113, client + 1), client_port),
                backend: Ipv4Addr::new(10, 0, backend % 2, backend),
                flags,
            };
            let mut f = dispatched_frame(&f, &request, options, p.odd);
            if let Some(n) = p.truncate {
                f.truncate(n);
            }
            return f;
        }
        Step::Request {
            client,
            client_port,
            dst,
            dst_port,
            udp,
            flags,
        } => (
            client_addr(client),
            dst,
            udp,
            (client_port, dst_port),
            flags,
        ),
        Step::Frontend {
            index,
            client,
            client_port,
            flags,
        } => {
            let f = frontends[index % frontends.len().max(1)];
            let IpAddr::V4(dst) = f.addr else {
                return Vec::new();
            };
            (
                client_addr(client),
                dst,
                f.protocol == Protocol::Udp,
                (client_port, f.port),
                flags,
            )
        }
        Step::Reply { of, flags } => {
            let earlier = outputs
                .iter()
                .rev()
                .filter(|o| o.len() >= ETH + 24 && o[12..14] == [0x08, 0x00])
                .nth(of % outputs.len().max(1));
            let ip = earlier.map_or(&[][..], |o| &o[ETH..]);
            let l4 = ip.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
            if ip.len() < l4.max(20) + 4 {
                direct
            } else {
                let at = |i: usize| [ip[i], ip[i + 1], ip[i + 2], ip[i + 3]];
                let port = |i: usize| u16::from_be_bytes([ip[l4 + i], ip[l4 + i + 1]]);
                (
                    Ipv4Addr::from(at(16)),
                    Ipv4Addr::from(at(12)),
                    ip[9] == 17,
                    (port(2), port(0)),
                    flags,
                )
            }
        }
    };
    let l4 = transport(src, dst, udp, ports, flags);
    let mut f = ipv4_frame(src, dst, 64, if udp { 17 } else { 6 }, &l4, p.odd);
    if let Some(n) = p.truncate {
        f.truncate(n);
    }
    f
}

/// The forwarding tables every case routes with: clients behind port 0,
/// backends behind port 1.
fn lab(accept_dsr: bool) -> Lab {
    let ports = [port(0, 1500), port(1, 1500)].into_iter().collect();
    let routes = vec![
        (
            "203.0.113.0/24".parse().unwrap(),
            vec![Nexthop::gateway(IpAddr::V4(CLIENT_GW), PortId(0))],
        ),
        (
            "10.0.0.0/16".parse().unwrap(),
            vec![Nexthop::gateway(IpAddr::V4(BACKEND_GW), PortId(1))],
        ),
        // The backends' nodes, which DSR dispatches requests to.
        (
            "192.168.0.0/24".parse().unwrap(),
            vec![Nexthop::gateway(IpAddr::V4(BACKEND_GW), PortId(1))],
        ),
        // The world beyond the cluster, which pods' traffic is masqueraded to.
        (
            "198.51.100.0/24".parse().unwrap(),
            vec![Nexthop::gateway(IpAddr::V4(BACKEND_GW), PortId(1))],
        ),
    ];
    let neighbours = [CLIENT_GW, BACKEND_GW]
        .into_iter()
        .map(|a| (IpAddr::V4(a), mac_of(IpAddr::V4(a))))
        .collect();
    Lab {
        routes,
        neighbours,
        ports,
        identities: BTreeMap::new(),
        config: Config {
            hash_policy: HashPolicy::L4,
            hash_seed: 7,
            tunnel: Some(TunnelConfig {
                dsr: accept_dsr,
                ..TunnelConfig::new(NODE, INNER_MAC)
            }),
        },
        pods: BTreeSet::new(),
    }
}

/// How the reference may be perturbed (the negative control).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reference {
    Exact,
    /// Every packet's random number off by one.
    ShiftedRandom,
    /// Masquerading left out.
    NoMasquerade,
}

/// The live connections of the program's maps at `now`, as router-core lists them.
fn program_connections(dp: &Datapath, now_ns: u64) -> Result<BTreeSet<String>, String> {
    let conns = dp.connections().map_err(|e| e.to_string())?;
    Ok(conns
        .iter()
        .filter(|(_, c)| c.deadline > now_ns)
        .map(|(k, c)| describe(k, &c.reply, &c.frontend, c.state, c.deadline))
        .collect())
}

fn describe(
    original: &FlowKey,
    reply: &FlowKey,
    frontend: &L3n4Key,
    state: u8,
    deadline: u64,
) -> String {
    format!(
        "{:?} reply {:?} frontend {:?}:{} state {state:#04x} deadline {deadline}",
        original.tuple(),
        reply.tuple(),
        frontend.ip(),
        frontend.port
    )
}

fn nanos(t: Instant) -> u64 {
    t.total_micros() as u64 * 1000
}

/// Run `sequences` through both sides over `services`; `Err` describes the
/// first mismatch.
fn compare(
    dp: &mut Datapath,
    services: &Services,
    sequences: &[Vec<Packet>],
    reference: Reference,
) -> Result<(), String> {
    let lab = lab(services.accept_dsr);
    let built = lab.build();
    let tables = built.tables();
    let table = ServiceTable::new(&services.config.maglev, services.frontends.clone());
    let pods: BTreeSet<PortId> = services
        .pod_ingress
        .then_some(PortId(0))
        .into_iter()
        .collect();
    let mut snapshot = Snapshot::new(&tables, Lab::ifindex).map_err(|e| e.to_string())?;
    let mut maps = ServiceMaps::new(&services.config, &table, &pods).map_err(|e| e.to_string())?;
    if let Some(m) = &services.masquerade {
        maps = maps.with_masquerade(m).map_err(|e| e.to_string())?;
    }
    snapshot.services = Some(maps);
    dp.sync(&snapshot).map_err(|e| e.to_string())?;
    let addresses: Vec<L3n4> = services.frontends.keys().copied().collect();
    let origin = if services.pod_ingress {
        Origin::Local
    } else {
        Origin::External
    };
    for (n, sequence) in sequences.iter().enumerate() {
        dp.clear_connections().map_err(|e| e.to_string())?;
        let counts_before = dp.service_counts().map_err(|e| e.to_string())?;
        let mut service = Service::new(services.config, table.clone());
        if reference != Reference::NoMasquerade {
            service.set_masquerade(services.masquerade.clone());
        }
        // A fresh clock per sequence, far from zero.
        let mut now = Instant::from_secs(1_000_000 + 100_000 * n as i64);
        let mut outputs: Vec<Vec<u8>> = Vec::new();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for (i, p) in sequence.iter().enumerate() {
            now += Duration::from_secs(p.after);
            let input = frame(p, &addresses, &outputs);
            let mut translated = input.clone();
            let random = match reference {
                Reference::Exact | Reference::NoMasquerade => p.random,
                Reference::ShiftedRandom => p.random.wrapping_add(1),
            };
            let decided = match translated.get_mut(ETH..) {
                Some(ip) => service.translate(now, origin, ip, || random),
                None => datapath::Verdict::NotService,
            };
            let (action, verdict): (u32, Option<Verdict>) = match decided {
                datapath::Verdict::Drop(_) => {
                    want = translated.clone();
                    (1, None)
                }
                datapath::Verdict::Dispatch { node, service, .. } => {
                    let (IpAddr::V4(node), IpAddr::V4(addr)) = (node, service.addr) else {
                        return Err(format!("router-core dispatched over IPv6: {decided:?}"));
                    };
                    let dsr = DsrOption {
                        addr,
                        port: service.port,
                    };
                    let v = dispatch(&tables, &translated, node, dsr, &mut want);
                    (expected_action(&v), Some(v))
                }
                _ => {
                    let v = process(&tables, PortId(0), &translated, &mut want);
                    // As a node does: a request dispatched here is tracked.
                    if let (Some(dsr), Some(ip)) = (v.dsr, want.get(ETH..)) {
                        service.accept_dispatched_packet(now, ip, dsr);
                    }
                    (expected_action(&v), Some(v))
                }
            };
            dp.set_service_inputs(Some((nanos(now), p.random)))
                .map_err(|e| e.to_string())?;
            let got_action = dp.test_run(&input, &mut got).map_err(|e| e.to_string())?;
            if got_action != action || got != want {
                return Err(format!(
                    "mismatch at packet {i} of a sequence\nservices: {services:#?}\nsequence: {sequence:#?}\n\
                     frame: {}\nrouter-core: {decided:?} then {verdict:?} → XDP {action} {}\nxdp program: XDP {got_action} {}",
                    hex(&input),
                    hex(&want),
                    hex(&got)
                ));
            }
            outputs.push(want.clone());
        }
        let want_conns: BTreeSet<String> = service
            .tracked(now)
            .map(|t| {
                describe(
                    &FlowKey::of(&t.original),
                    &FlowKey::of(&t.reply),
                    &L3n4Key::new(t.frontend.addr, t.frontend.port, t.frontend.protocol),
                    t.state.0,
                    nanos(t.deadline),
                )
            })
            .collect();
        let got_conns = program_connections(dp, nanos(now))?;
        if want_conns != got_conns {
            return Err(format!(
                "connections differ after a sequence\nservices: {services:#?}\nsequence: {sequence:#?}\n\
                 router-core: {want_conns:#?}\nxdp program: {got_conns:#?}"
            ));
        }
        let c = service.counters();
        let after = dp.service_counts().map_err(|e| e.to_string())?;
        let got_counts: Vec<u64> = after
            .iter()
            .zip(counts_before)
            .map(|(a, b)| a - b)
            .collect();
        let want_counts = vec![
            c.opened,
            c.snat,
            c.no_backend,
            c.other_drops,
            c.replies,
            c.dispatched,
            c.masqueraded,
        ];
        if got_counts != want_counts {
            return Err(format!(
                "counters differ\nservices: {services:#?}\nsequence: {sequence:#?}\n\
                 router-core {want_counts:?}\nxdp program {got_counts:?}"
            ));
        }
    }
    dp.set_service_inputs(None).map_err(|e| e.to_string())?;
    Ok(())
}

/// Tables generated; each runs `SEQUENCES` sequences of up to `PACKETS` packets.
const TABLES: u32 = 200;
const SEQUENCES: usize = 500;
const PACKETS: usize = 8;

fn cases() -> impl Strategy<Value = (Services, Vec<Vec<Packet>>)> {
    (
        services(),
        prop::collection::vec(prop::collection::vec(packet(), 1..=PACKETS), SEQUENCES),
    )
}

fn load() -> Option<Datapath> {
    if let Err(why) = privileged() {
        nexthop_testkit::skip(&format!("the stateful differential test: {why}"));
        return None;
    }
    let capacity = Capacity {
        maglev_size: MAGLEV_SIZE,
        ..Capacity::default()
    };
    Some(Datapath::load(&capacity).expect("the XDP object loads"))
}

fn run(
    tables: u32,
    reference: Reference,
) -> Result<(usize, [u64; 7], [u64; Reason::COUNT]), String> {
    let Some(dp) = load() else {
        return Ok((0, [0; 7], [0; Reason::COUNT]));
    };
    let dp = std::cell::RefCell::new(dp);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: tables,
        failure_persistence: None,
        max_shrink_iters: 32,
        ..RunnerConfig::default()
    });
    let sequences = std::cell::Cell::new(0);
    let result = runner.run(&cases(), |(services, seqs)| {
        sequences.set(sequences.get() + seqs.len());
        compare(&mut dp.borrow_mut(), &services, &seqs, reference).map_err(TestCaseError::fail)
    });
    result.map_err(|e| e.to_string())?;
    let dp = dp.borrow();
    let counts = dp.service_counts().map_err(|e| e.to_string())?;
    let reasons = dp.reason_counts().map_err(|e| e.to_string())?;
    Ok((sequences.get(), counts, reasons))
}

#[test]
fn xdp_service_stage_matches_router_core_over_packet_sequences() {
    let start = std::time::Instant::now();
    let (sequences, counts, reasons) =
        run(TABLES, Reference::Exact).unwrap_or_else(|e| panic!("{e}"));
    if sequences == 0 {
        return;
    }
    let exits: Vec<(Reason, u64)> = (0..Reason::COUNT as u8)
        .filter_map(|i| Some((Reason::from_index(i)?, reasons[usize::from(i)])))
        .filter(|&(_, n)| n > 0)
        .collect();
    eprintln!(
        "{sequences} sequences over {TABLES} service tables in {:?}, 0 mismatches; \
         opened {} snat {} no-backend {} other drops {} replies {} dispatched {} \
         masqueraded {}; pipeline exits {exits:?}",
        start.elapsed(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6]
    );
    for (what, n) in [
        ("opened", 0),
        ("snat", 1),
        ("no backend", 2),
        ("other drops", 3),
        ("replies", 4),
        ("dispatched", 5),
        ("masqueraded", 6),
    ] {
        assert!(counts[n] > 0, "no generated packet counted as {what}");
    }
}

/// A perturbed reference must be caught within 20 tables.
fn assert_caught(reference: Reference, what: &str) {
    let Err(e) = run(20, reference) else {
        if privileged().is_ok() {
            panic!("{what} went unnoticed");
        }
        return;
    };
    assert!(e.contains("mismatch") || e.contains("differ"), "{e}");
}

#[test]
fn negative_control_a_shifted_random_number_is_caught() {
    assert_caught(
        Reference::ShiftedRandom,
        "a reference drawing other random numbers",
    );
}

#[test]
fn negative_control_a_reference_without_masquerading_is_caught() {
    assert_caught(
        Reference::NoMasquerade,
        "a reference that does not masquerade",
    );
}
