//! On random small topologies of routers with random static routes (loops included), every
//! packet the simulator delivers to its destination followed a loop-free path that agrees with
//! each sender's FIB, and every packet caught in a loop dies by TTL with an ICMP time exceeded.
//!
//! Routers `r0..rN` (3 to 6) are joined by random point-to-point links `10.K.0.0/24` (`.1` on
//! the lower-numbered router); each router has an end host `hI` on `192.168.I.0/24` (router `.1`,
//! host `.2`, default route via the router). Hosts ping random addresses. Paths are rebuilt from
//! the engine trace: each delivered trace record is paired with the frame its receiver got, and
//! an IPv4 packet is identified along its path by its bytes with TTL and checksum zeroed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use nexthop_netstack::{Host, HostConfig, PingOptions, PortSpec};
use nexthop_sim::cluster::{Role, SimHost, mac_for};
use nexthop_sim::{
    Duration, Endpoint, Engine, EngineConfig, Instant, Node, NodeId, Outcome, Poll, PortId,
    SegmentKind, SegmentParams,
};
use proptest::prelude::*;
use router_core::datapath::Reason;
use router_core::fib::{Nexthop, NexthopKind, Protocol, Route};

/// Most routers in a topology (and so, candidate links: every pair).
const MAX_ROUTERS: usize = 6;
/// How long each case runs: pings start in the first 100 ms and time out within a second.
const RUN_FOR: Duration = Duration::from_secs(3);

/// A simulated host that keeps every frame it receives, in order.
#[derive(Debug)]
struct Recorded {
    host: SimHost,
    received: Vec<Vec<u8>>,
}

impl Node for Recorded {
    fn receive(&mut self, now: Instant, port: PortId, frame: Vec<u8>) {
        self.received.push(frame.clone());
        self.host.receive(now, port, frame);
    }

    fn poll(&mut self, now: Instant) -> Poll {
        self.host.poll(now)
    }
}

/// A random lab: which router pairs are linked, static routes and pings.
#[derive(Debug, Clone)]
struct Case {
    routers: usize,
    /// One flag per router pair `(a, b)`, `a < b`, in [`pairs`] order.
    linked: Vec<bool>,
    /// (router, destination, link choice): the destination indexes [`destinations`], the link
    /// choice indexes the router's links (the gateway is the router at the far end).
    routes: Vec<(usize, usize, usize)>,
    /// (host, target address index, TTL, start in ms).
    pings: Vec<(usize, usize, u8, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    let pairs = MAX_ROUTERS * (MAX_ROUTERS - 1) / 2;
    (
        3..=MAX_ROUTERS,
        prop::collection::vec(prop::bool::weighted(0.45), pairs),
        prop::collection::vec((0..MAX_ROUTERS, 0..MAX_ROUTERS + 3, 0..8usize), 0..24),
        prop::collection::vec((0..MAX_ROUTERS, 0..64usize, 2u8..=64, 0..100u64), 1..10),
    )
        .prop_map(|(routers, linked, routes, pings)| Case {
            routers,
            linked,
            routes,
            pings,
        })
}

/// Every router pair `(a, b)` with `a < b`, in a fixed order.
fn pairs(routers: usize) -> Vec<(usize, usize)> {
    (0..routers)
        .flat_map(|a| (a + 1..routers).map(move |b| (a, b)))
        .collect()
}

/// The prefixes static routes may cover: each host subnet, their aggregate and the default.
fn destinations(routers: usize) -> Vec<IpNet> {
    (0..routers)
        .map(|i| net(Ipv4Addr::new(192, 168, i as u8, 0), 24))
        .chain([
            net(Ipv4Addr::new(192, 168, 0, 0), 16),
            net(Ipv4Addr::UNSPECIFIED, 0),
        ])
        .collect()
}

fn net(addr: Ipv4Addr, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new(addr, len).expect("valid prefix"))
}

/// The built lab: the engine and who owns which address.
struct Lab {
    engine: Engine<Recorded>,
    routers: Vec<NodeId>,
    hosts: Vec<NodeId>,
    owners: BTreeMap<Ipv4Addr, NodeId>,
}

fn build(case: &Case) -> Lab {
    let n = case.routers;
    let links: Vec<(usize, usize)> = pairs(n)
        .into_iter()
        .zip(&case.linked)
        .filter_map(|(pair, &on)| on.then_some(pair))
        .collect();
    let link_addr = |k: usize, end: u8| Ipv4Addr::new(10, k as u8, 0, end);
    let stub_addr = |i: usize, end: u8| Ipv4Addr::new(192, 168, i as u8, end);
    let mut engine = Engine::new(EngineConfig {
        trace_records: true,
        ..EngineConfig::new(7)
    });
    let params = SegmentParams {
        latency: Duration::from_micros(100),
        ..SegmentParams::default()
    };
    let mut owners = BTreeMap::new();

    // Ports of router i: its stub towards hI, then one per link in link order.
    let mut router_ports: Vec<Vec<(String, Ipv4Addr, String)>> = (0..n)
        .map(|i| vec![("eth0".into(), stub_addr(i, 1), format!("r{i}--h{i}"))])
        .collect();
    // Per router, its links as (port index, gateway at the far end).
    let mut router_links: Vec<Vec<(u16, Ipv4Addr)>> = vec![Vec::new(); n];
    for (k, &(a, b)) in links.iter().enumerate() {
        for (me, mine, theirs) in [(a, 1, 2), (b, 2, 1)] {
            let port = router_ports[me].len() as u16;
            router_links[me].push((port, link_addr(k, theirs)));
            router_ports[me].push((
                format!("eth{port}"),
                link_addr(k, mine),
                format!("r{a}--r{b}"),
            ));
        }
    }
    let mut segments = BTreeMap::new();
    for ports in &router_ports {
        for (_, _, segment) in ports {
            if !segments.contains_key(segment) {
                let id = engine
                    .add_segment(segment, SegmentKind::Link, params)
                    .expect("unique segment");
                segments.insert(segment.clone(), id);
            }
        }
    }

    let destinations = destinations(n);
    let mut routers = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..n {
        let name = format!("r{i}");
        let mut config = HostConfig::new(&name);
        config.forwarding = true;
        config.ports = router_ports[i]
            .iter()
            .map(|(port, addr, _)| PortSpec::new(port, mac_for(&name, port), vec![net(*addr, 24)]))
            .collect();
        let mut host = Host::new(config).expect("a valid router");
        let mut routed = Vec::new();
        for &(router, dest, choice) in &case.routes {
            let dst = destinations[dest % destinations.len()];
            if router % n != i || router_links[i].is_empty() || routed.contains(&dst) {
                continue;
            }
            routed.push(dst);
            let (port, gateway) = router_links[i][choice % router_links[i].len()];
            let nexthop = Nexthop::gateway(IpAddr::V4(gateway), router_core::PortId(port));
            host.add_route(dst, &Route::new(Protocol::Static, vec![nexthop]));
        }
        let id = attach(
            &mut engine,
            &name,
            host,
            Role::Router,
            &router_ports[i],
            &segments,
        );
        for (_, addr, _) in &router_ports[i] {
            owners.insert(*addr, id);
        }
        routers.push(id);

        let name = format!("h{i}");
        let mut config = HostConfig::new(&name);
        config.seed = i as u64;
        config.ports = vec![PortSpec::new(
            "eth0",
            mac_for(&name, "eth0"),
            vec![net(stub_addr(i, 2), 24)],
        )];
        let mut host = Host::new(config).expect("a valid host");
        let gateway = Nexthop::gateway(IpAddr::V4(stub_addr(i, 1)), router_core::PortId(0));
        host.add_route(
            net(Ipv4Addr::UNSPECIFIED, 0),
            &Route::new(Protocol::Static, vec![gateway]),
        );
        let ports = [("eth0".to_owned(), stub_addr(i, 2), format!("r{i}--h{i}"))];
        let id = attach(&mut engine, &name, host, Role::External, &ports, &segments);
        owners.insert(stub_addr(i, 2), id);
        hosts.push(id);
    }
    Lab {
        engine,
        routers,
        hosts,
        owners,
    }
}

/// Adds `host` and attaches its ports in order, so engine port i is host port i.
fn attach(
    engine: &mut Engine<Recorded>,
    name: &str,
    host: Host,
    role: Role,
    ports: &[(String, Ipv4Addr, String)],
    segments: &BTreeMap<String, nexthop_sim::SegmentId>,
) -> NodeId {
    let node = Recorded {
        host: SimHost::new(host, role),
        received: Vec::new(),
    };
    let id = engine.add_node(name, node).expect("unique node");
    for (i, (port, _, segment)) in ports.iter().enumerate() {
        let p = engine
            .attach(segments[segment], id, port)
            .expect("attaches");
        engine
            .node_mut(id)
            .host
            .attached(router_core::PortId(i as u16), p);
    }
    id
}

/// One delivered copy of a packet: sender and receiver ports, and the TTL it carried.
#[derive(Debug, Clone, Copy)]
struct Hop {
    from: Endpoint,
    to: Endpoint,
    ttl: u8,
}

/// An IPv4 packet's identity along its path: its bytes with TTL and header checksum zeroed.
fn identity(packet: &[u8]) -> Vec<u8> {
    let mut key = packet.to_vec();
    key[8] = 0;
    key[10] = 0;
    key[11] = 0;
    key
}

/// The IPv4 packet in an Ethernet frame (padding trimmed), if it carries one.
fn ipv4(frame: &[u8]) -> Option<&[u8]> {
    let packet = frame.get(14..).filter(|_| frame[12..14] == [0x08, 0x00])?;
    let len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    packet.get(..len).filter(|p| p.len() >= 20)
}

fn addr(packet: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3])
}

/// Every IPv4 packet's hops, in trace order, keyed by identity.
fn paths(lab: &Lab) -> BTreeMap<Vec<u8>, (Vec<u8>, Vec<Hop>)> {
    let mut next: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut paths: BTreeMap<Vec<u8>, (Vec<u8>, Vec<Hop>)> = BTreeMap::new();
    for record in lab.engine.trace().records() {
        assert_eq!(record.outcome, Outcome::Delivered, "loss 0, links up");
        let to = record.to.expect("delivered copies have a receiver");
        let seen = next.entry(to.node).or_default();
        let frame = &lab.engine.node(to.node).received[*seen];
        *seen += 1;
        assert_eq!(frame.len(), record.len, "the trace and the receiver agree");
        if let Some(packet) = ipv4(frame) {
            let hop = Hop {
                from: record.from,
                to,
                ttl: packet[8],
            };
            paths
                .entry(identity(packet))
                .or_insert_with(|| (packet.to_vec(), Vec::new()))
                .1
                .push(hop);
        }
    }
    paths
}

/// Whether `sender` sending towards `dst` on `port` to `receiver` is what its FIB says.
fn agrees_with_fib(
    lab: &Lab,
    sender: NodeId,
    port: PortId,
    dst: Ipv4Addr,
    receiver: NodeId,
) -> bool {
    let fib = lab.engine.node(sender).host.host.fib();
    let Some(group) = fib.lookup(IpAddr::V4(dst)).and_then(|g| fib.group(g)) else {
        return false;
    };
    group.members().iter().any(|nh| match nh.kind {
        NexthopKind::Gateway {
            addr: IpAddr::V4(gw),
            port: p,
        } => p.0 == port.0 && lab.owners.get(&gw) == Some(&receiver),
        NexthopKind::Connected { port: p } => {
            p.0 == port.0 && lab.owners.get(&dst) == Some(&receiver)
        }
        _ => false,
    })
}

/// What a case showed, to see that the checks were not vacuous.
#[derive(Debug, Default)]
struct Seen {
    /// Packets delivered to their destination.
    delivered: usize,
    /// Packets that went round a loop.
    looped: usize,
}

fn check(case: &Case) -> Result<Seen, TestCaseError> {
    let mut lab = build(case);
    let targets: Vec<Ipv4Addr> = lab.owners.keys().copied().collect();
    let mut pinged = Vec::new();
    for &(host, target, ttl, start_ms) in &case.pings {
        let host = host % case.routers;
        let target = targets[target % targets.len()];
        if pinged.contains(&(host, target)) {
            continue;
        }
        pinged.push((host, target));
        let id = lab.hosts[host];
        let start = Instant::from_millis(start_ms as i64);
        lab.engine.run_until(start).expect("runs");
        let options = PingOptions {
            count: 1,
            ttl,
            ..PingOptions::default()
        };
        lab.engine
            .node_mut(id)
            .host
            .host
            .ping(start, target, options);
        lab.engine.wake_node(id);
    }
    lab.engine
        .run_until(Instant::ZERO + RUN_FOR)
        .expect("runs without exhausting the event budget");

    // Per router: packets whose TTL ran out there, and how many of them were ICMP errors
    // (about which no error is sent).
    let mut ttl_deaths: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    let mut seen = Seen::default();
    for (packet, hops) in paths(&lab).values() {
        let (src, dst) = (addr(packet, 12), addr(packet, 16));
        let last = hops.last().expect("at least one hop");
        let mut receivers: Vec<NodeId> = hops.iter().map(|h| h.to.node).collect();
        receivers.sort();
        receivers.dedup();
        let looped = receivers.len() < hops.len();
        seen.looped += usize::from(looped);
        prop_assert_eq!(
            lab.owners.get(&src),
            Some(&hops[0].from.node),
            "a packet starts at its source"
        );
        for (k, hop) in hops.iter().enumerate() {
            prop_assert!(
                agrees_with_fib(&lab, hop.from.node, hop.from.port, dst, hop.to.node),
                "hop {} of {} -> {} is not what {}'s FIB says",
                k,
                src,
                dst,
                lab.engine.node_name(hop.from.node)
            );
            if let Some(next) = hops.get(k + 1) {
                prop_assert_eq!(next.from.node, hop.to.node, "hops chain");
                prop_assert_eq!(next.ttl + 1, hop.ttl, "each router takes one off the TTL");
            }
        }
        if lab.owners.get(&dst) == Some(&last.to.node) {
            seen.delivered += 1;
            prop_assert!(!looped, "{} -> {} was delivered after a loop", src, dst);
            continue;
        }
        // Not delivered: the last receiver, a router, dropped it; by TTL if it looped.
        prop_assert!(lab.routers.contains(&last.to.node));
        if looped {
            prop_assert!(
                last.ttl <= 1,
                "{} -> {} left a loop with TTL {}",
                src,
                dst,
                last.ttl
            );
        }
        if last.ttl <= 1 {
            let is_error = packet[9] == 1 && matches!(packet[20], 3 | 11);
            let deaths = ttl_deaths.entry(last.to.node).or_default();
            deaths.0 += 1;
            deaths.1 += u64::from(is_error);
        }
    }
    for &router in &lab.routers {
        let counters = lab.engine.node(router).host.host.counters();
        let (deaths, error_deaths) = ttl_deaths.get(&router).copied().unwrap_or_default();
        prop_assert_eq!(counters.received(Reason::TtlExceeded), deaths);
        prop_assert!(
            counters.icmp_errors >= deaths - error_deaths,
            "{} sent no time exceeded for some packet whose TTL ran out there",
            lab.engine.node_name(router)
        );
    }
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn delivered_packets_follow_loop_free_paths_that_agree_with_the_fibs(case in case()) {
        check(&case)?;
    }
}

/// A fixed case with a known loop: r0 and r1 send 192.168.2.0/24 to each other, while h0 and h1
/// reach each other through r0 and r1.
#[test]
fn a_known_loop_is_caught_and_a_known_path_delivers() {
    let mut linked = vec![false; MAX_ROUTERS * (MAX_ROUTERS - 1) / 2];
    linked[0] = true; // r0 - r1
    linked[MAX_ROUTERS - 1] = true; // r1 - r2, the first pair of r1 (pairs of r0 come first)
    // Destinations: 0..3 are the host subnets. r1's links: to r0 first, then to r2.
    let routes = vec![(0, 1, 0), (1, 0, 0), (0, 2, 0), (1, 2, 0)];
    // Target addresses in order: 10.0.0.1, 10.0.0.2, 10.1.0.1, 10.1.0.2, 192.168.0.1,
    // 192.168.0.2, 192.168.1.1, 192.168.1.2 (h1), 192.168.2.1, 192.168.2.2 (h2).
    let pings = vec![(0, 7, 64, 0), (0, 9, 64, 0)];
    let seen = check(&Case {
        routers: 3,
        linked,
        routes,
        pings,
    })
    .expect("the properties hold");
    // Delivered: h0's request to h1, h1's reply, and the time exceeded about h0's request to
    // h2, which loops between r0 and r1 (both route 192.168.0.0/24 towards h0).
    assert_eq!(seen.delivered, 3, "{seen:?}");
    assert_eq!(seen.looped, 1, "{seen:?}");
}
