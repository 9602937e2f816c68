//! The XDP service stage's cost per packet, beside router-core's reference
//! service stage and pipeline measured in the same run (the anchor).
//!
//! Tables: 10, 1,000 and 10,000 LoadBalancer services (172.16.x.y:80), each
//! with three backends on other nodes (SNAT to the node), random or Maglev
//! (M = 16381; equal backend sets share one table). Paths, as frames
//! arriving on the node's uplink (port 0, the test run's loopback ingress):
//!
//! - `routed, no services`: a UDP frame to a backend address, the stage off;
//! - `routed`: the same frame with the stage on (it finds no connection and
//!   no frontend, and hands the frame to the pipeline);
//! - `established`: a TCP segment of a tracked connection to a service
//!   (DNAT + SNAT rewrite, then routed);
//! - `reply`: the backend's answer to it, translated back;
//! - `new flow`: a SYN from a fresh client port each call (a backend picked,
//!   a SNAT port allocated, the connection tracked).
//!
//! Every call runs once (`repeat` 1: a forwarded frame leaves with the next
//! hop's MACs, which a repeat would see as another host's). Figures are the
//! median of 301 kernel-reported durations (`BPF_PROG_TEST_RUN`), in ns; the reference is the median of
//! timed loops of `Service::translate` + `pipeline::process` on the same
//! frames. Needs root; prints why it skips otherwise.
//!
//! `cargo bench -p nexthop-offload-bpf --bench service`

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as Clock};

use std::mem::size_of;

use nexthop_offload_bpf::datapath::{Capacity, Datapath, privileged};
use nexthop_offload_bpf::services::ServiceMaps;
use nexthop_offload_bpf::snapshot::Snapshot;
use nexthop_offload_bpf_common::service::{Connection, FlowKey};
use router_core::PortId;
use router_core::datapath::checksum;
use router_core::datapath::{Config, OwnedTables, PortConfig, process};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Fib, Nexthop, Protocol as RouteProtocol, Route};
use router_core::neighbour::{self, arp::PortAddrs};
use router_core::service::Protocol;
use router_core::service::datapath::{self, Algorithm, Origin, Service};
use router_core::service::table::{
    BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable,
};
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const PORT0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

/// Two ports (uplink 0 towards clients, 1 towards the backends' nodes),
/// resolved gateways on both.
fn tables() -> OwnedTables {
    let mut fib = Fib::new();
    let gateways = [
        ("203.0.113.0/24", Ipv4Addr::new(10, 255, 0, 2), 0),
        ("10.0.0.0/8", Ipv4Addr::new(10, 255, 1, 2), 1),
    ];
    let mut neighbours = neighbour::Table::new(neighbour::Config::default());
    for (prefix, gw, port) in gateways {
        fib.insert(
            prefix.parse().unwrap(),
            &Route::new(
                RouteProtocol::Static,
                vec![Nexthop::gateway(IpAddr::V4(gw), PortId(port))],
            ),
        );
        let mac = EthernetAddress([0x02, 0xaa, 0, 0, 0, port as u8]);
        neighbours.insert_reachable(
            IpAddr::V4(gw),
            PortId(port),
            mac,
            Instant::from_secs(1_i64 << 40),
        );
    }
    let ports = (0u16..2)
        .map(|p| {
            let config = PortConfig {
                addrs: PortAddrs {
                    mac: EthernetAddress([0x02, 0, 0, 0, 0, p as u8 + 1]),
                    owned: vec![Ipv4Addr::new(10, 255, p as u8, 1)],
                    announced: vec![],
                },
                ipv6: Default::default(),
                mtu: 1500,
            };
            (PortId(p), config)
        })
        .collect();
    OwnedTables {
        fib,
        neighbours,
        ports,
        identities: BTreeMap::new(),
        config: Config {
            hash_policy: HashPolicy::L4,
            hash_seed: 1,
            tunnel: None,
        },
    }
}

/// `n` LoadBalancer services, each with the same three remote backends.
fn services(n: u32, algorithm: Algorithm) -> (datapath::Config, ServiceTable) {
    let config = datapath::Config {
        algorithm,
        snat_v4: Some(NODE),
        ..datapath::Config::default()
    };
    let backends: Vec<BackendSpec> = (1..=3)
        .map(|h| BackendSpec {
            addr: L3n4 {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, h, 5)),
                port: 8080,
                protocol: Protocol::Tcp,
            },
            state: BackendState::Active,
            local: false,
            weight: 100,
            node: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, h + 1))),
        })
        .collect();
    let frontends = (0..n)
        .map(|i| {
            let addr = L3n4 {
                addr: IpAddr::V4(Ipv4Addr::new(172, 16, (i >> 8) as u8, i as u8)),
                port: 80,
                protocol: Protocol::Tcp,
            };
            let spec = FrontendSpec {
                service: ("default".into(), format!("svc-{i}")),
                kind: FrontendKind::LoadBalancer,
                external_local: false,
                internal_local: false,
                affinity_seconds: None,
                backends: backends.clone(),
            };
            (addr, spec)
        })
        .collect();
    let table = ServiceTable::new(&config.maglev, frontends);
    (config, table)
}

/// An Ethernet frame to port 0 carrying TCP (`flags`) or UDP (`None`).
fn frame(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), flags: Option<u8>) -> Vec<u8> {
    let mut l4 = match flags {
        Some(flags) => {
            let mut t = vec![0u8; 20];
            t[12] = 5 << 4;
            t[13] = flags;
            t
        }
        None => {
            let mut u = vec![0u8; 8];
            u[4..6].copy_from_slice(&8u16.to_be_bytes());
            u
        }
    };
    // A payload that makes the frame 128 bytes long.
    l4.extend_from_slice(&[0x55; 128 - 14 - 20 - 20]);
    l4[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
    let proto = if flags.is_some() { 6 } else { 17 };
    if proto == 17 {
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.0.octets());
    pseudo.extend_from_slice(&dst.0.octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    let check = !checksum::fold(checksum::sum(&pseudo) + checksum::sum(&l4));
    let at = if proto == 6 { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&check.to_be_bytes());
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.0.octets());
    ip[16..20].copy_from_slice(&dst.0.octets());
    let check = checksum::compute(&ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&PORT0_MAC);
    f.extend_from_slice(&[0x02, 0xbb, 0, 0, 0, 1, 0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

/// The frame going the other way of `out` (an output frame), with `flags`.
fn reply_to(out: &[u8], flags: u8) -> Vec<u8> {
    let ip = &out[ETH..];
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    let port = |at: usize| u16::from_be_bytes([ip[20 + at], ip[21 + at]]);
    frame((addr(16), port(2)), (addr(12), port(0)), Some(flags))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median kernel-reported ns per run of `calls` test runs of `repeat`.
fn cost(dp: &Datapath, frame: &[u8], repeat: u32, calls: usize) -> (Duration, u32) {
    let mut out = Vec::new();
    let mut verdict = 0;
    let runs = (0..calls)
        .map(|_| {
            let (v, d) = dp.timed_run(frame, &mut out, repeat).expect("test run");
            verdict = v;
            d
        })
        .collect();
    (median(runs), verdict)
}

/// Median ns per packet of router-core's stage + pipeline over `frames`
/// (each run on a fresh service so new flows stay new).
fn reference(config: datapath::Config, table: &ServiceTable, frames: &[Vec<u8>]) -> Duration {
    let owned = tables();
    let t = owned.tables();
    let mut rounds = Vec::new();
    for round in 0..7 {
        let mut service = Service::new(config, table.clone());
        let mut out = Vec::new();
        let now = Instant::from_secs(1000 + round);
        let start = Clock::now();
        for f in frames {
            let mut f = f.clone();
            service.translate(now, Origin::External, &mut f[ETH..], || 7);
            std::hint::black_box(process(&t, PortId(0), &f, &mut out));
        }
        rounds.push(start.elapsed() / frames.len() as u32);
    }
    median(rounds)
}

fn ns(d: Duration) -> String {
    format!("{}", d.as_nanos())
}

fn main() {
    if let Err(why) = privileged() {
        eprintln!("skipping the XDP service benchmark: {why}");
        return;
    }
    let owned = tables();
    let ifindex = |id: PortId| Some(if id.0 == 0 { 1 } else { 100 + u32::from(id.0) });
    let base = Snapshot::new(&owned.tables(), ifindex).expect("the tables fit");
    let capacity = Capacity {
        frontends: 1 << 14,
        ..Capacity::default()
    };
    let mut dp = Datapath::load(&capacity).expect("the XDP object loads");
    let routed = frame((CLIENT, 40000), (Ipv4Addr::new(10, 0, 1, 5), 8080), None);
    dp.sync(&base).expect("sync");
    let (off, _) = cost(&dp, &routed, 1, 301);
    println!(
        "XDP service stage, ns per packet (kernel-reported test-run durations, medians of 301 calls; frames of 116-128 bytes)"
    );
    println!("routed, no services: {} ns", ns(off));
    println!();
    println!(
        "{:<10} {:<7} {:>7} {:>12} {:>6} {:>9} {:>15} {:>6}",
        "services",
        "algo",
        "routed",
        "established",
        "reply",
        "new flow",
        "router-core ref",
        "x ref"
    );
    for n in [10u32, 1_000, 10_000] {
        for algorithm in [Algorithm::Random, Algorithm::Maglev] {
            let (config, table) = services(n, algorithm);
            let mut snapshot = base.clone();
            snapshot.services =
                Some(ServiceMaps::new(&config, &table, &BTreeSet::new()).expect("the table fits"));
            dp.sync(&snapshot).expect("sync");
            dp.clear_connections().expect("clear");
            let lb = Ipv4Addr::new(172, 16, ((n - 1) >> 8) as u8, (n - 1) as u8);
            let (routed_cost, _) = cost(&dp, &routed, 1, 301);
            let request = frame((CLIENT, 40000), (lb, 80), Some(0x10));
            let mut out = Vec::new();
            dp.test_run(&request, &mut out).expect("test run");
            let (established, verdict) = cost(&dp, &request, 1, 301);
            assert_eq!(
                verdict,
                4,
                "the request is redirected to the backend's port: {:?} {:?}",
                dp.service_counts(),
                dp.reason_counts()
            );
            let reply = reply_to(&out, 0x10);
            let (back, verdict) = cost(&dp, &reply, 1, 301);
            assert_eq!(verdict, 3, "the reply goes back out of the uplink");
            let syns: Vec<Vec<u8>> = (0..301u16)
                .map(|i| frame((CLIENT, 10_000 + i), (lb, 80), Some(0x02)))
                .collect();
            let fresh: Vec<Duration> = syns.iter().map(|f| cost(&dp, f, 1, 1).0).collect();
            let new_flow = median(fresh);
            let mixed: Vec<Vec<u8>> = syns
                .iter()
                .cloned()
                .chain(std::iter::repeat_n(request.clone(), 301))
                .collect();
            let anchor = reference(config, &table, &mixed);
            let xdp_mixed = (new_flow + established) / 2;
            println!(
                "{:<10} {:<7} {:>7} {:>12} {:>6} {:>9} {:>15} {:>6.1}",
                n,
                format!("{algorithm:?}").to_lowercase(),
                ns(routed_cost),
                ns(established),
                ns(back),
                ns(new_flow),
                ns(anchor),
                anchor.as_secs_f64() / xdp_mixed.as_secs_f64()
            );
        }
    }
    println!();
    println!(
        "x ref: router-core's stage + pipeline per packet (half new flows, half established, in userspace) over the XDP mean of the same two paths"
    );
    let (key, value) = (size_of::<FlowKey>(), size_of::<Connection>());
    println!(
        "connection state in the maps: {} bytes per connection (CT key {key} + value {value}, CT_REPLY key {key} + value {key}), before the kernel's per-element overhead",
        3 * key + value
    );
}
