//! Hosts wired together by a tiny test driver (point-to-point links with 1 ms
//! latency, a virtual clock): back to back, and client – router – server as in
//! the seed labs' routed topology. The driver also checks the contract a
//! simulator relies on: right after a poll, a host never asks to be polled again
//! at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use router_core::PortId;
use router_core::datapath::Reason;
use router_core::fib::{Nexthop, Protocol, Route};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Packet};

use crate::{CurlError, CurlOptions, Host, HostConfig, PingOptions, PortSpec};

const LATENCY: Duration = Duration::from_millis(1);

/// Hosts, links between their ports, frames in flight and everything delivered.
struct Lab {
    hosts: Vec<Host>,
    links: BTreeMap<(usize, PortId), (usize, PortId)>,
    now: Instant,
    in_flight: BTreeMap<(Instant, u64), (usize, PortId, Vec<u8>)>,
    seq: u64,
    /// (time, receiving host, port, frame) of every delivery.
    log: Vec<(Instant, usize, PortId, Vec<u8>)>,
}

impl Lab {
    fn new(hosts: Vec<Host>) -> Self {
        Lab {
            hosts,
            links: BTreeMap::new(),
            now: Instant::ZERO,
            in_flight: BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
        }
    }

    fn link(&mut self, a: usize, pa: u16, b: usize, pb: u16) {
        self.links.insert((a, PortId(pa)), (b, PortId(pb)));
        self.links.insert((b, PortId(pb)), (a, PortId(pa)));
    }

    fn poll_all(&mut self) {
        for i in 0..self.hosts.len() {
            for (port, frame) in self.hosts[i].poll(self.now) {
                if let Some(&(peer, peer_port)) = self.links.get(&(i, port)) {
                    self.seq += 1;
                    let at = self.now + LATENCY;
                    self.in_flight
                        .insert((at, self.seq), (peer, peer_port, frame));
                }
            }
        }
    }

    /// Run the lab until `until` (virtual time).
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.poll_all();
            let now = self.now;
            let wakes = self.hosts.iter_mut().filter_map(Host::poll_at);
            let wakes: Vec<Instant> = wakes.collect();
            assert!(
                wakes.iter().all(|&w| w > now),
                "a polled host wants polling again at once"
            );
            let frames = self.in_flight.keys().next().map(|k| k.0);
            let Some(next) = wakes.into_iter().chain(frames).min() else {
                self.now = until;
                return;
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (host, port, frame) = entry.remove();
                self.hosts[host].receive(self.now, port, &frame);
                self.log.push((self.now, host, port, frame));
            }
        }
        panic!("the lab never went quiet before {until}");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}

fn mac(n: u8) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0, n])
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

fn host(name: &str, n: u8, ports: &[&str], forwarding: bool) -> HostConfig {
    let mut c = HostConfig::new(name);
    c.seed = u64::from(n) * 1_000_003;
    c.forwarding = forwarding;
    c.ports = ports
        .iter()
        .enumerate()
        .map(|(i, a)| PortSpec::new(&format!("eth{i}"), mac(n * 16 + i as u8), vec![net(a)]))
        .collect();
    c
}

fn default_via(h: &mut Host, gw: &str) {
    let gw: IpAddr = gw.parse().unwrap();
    let route = Route::new(Protocol::Static, vec![Nexthop::gateway(gw, PortId(0))]);
    h.add_route(net("0.0.0.0/0"), &route);
}

const CLIENT: usize = 0;
const ROUTER: usize = 1;
const SERVER: usize = 2;

/// client 10.0.1.10 — (eth0 10.0.1.1) router (eth1 10.0.2.1) — server 10.0.2.10 (whoami on 80).
fn routed(router_forwards: bool) -> Lab {
    let mut client = Host::new(host("client", 1, &["10.0.1.10/24"], false)).unwrap();
    let router = Host::new(host(
        "router",
        2,
        &["10.0.1.1/24", "10.0.2.1/24"],
        router_forwards,
    ))
    .unwrap();
    let mut server = Host::new(host("server", 3, &["10.0.2.10/24"], false)).unwrap();
    default_via(&mut client, "10.0.1.1");
    default_via(&mut server, "10.0.2.1");
    server.serve_http(80);
    let mut lab = Lab::new(vec![client, router, server]);
    lab.link(CLIENT, 0, ROUTER, 0);
    lab.link(ROUTER, 1, SERVER, 0);
    lab
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn back_to_back_ping_and_curl() {
    let a = Host::new(host("a", 1, &["10.0.0.1/24"], false)).unwrap();
    let mut b = Host::new(host("b", 2, &["10.0.0.2/24"], false)).unwrap();
    b.serve_http(80);
    let mut lab = Lab::new(vec![a, b]);
    lab.link(0, 0, 1, 0);

    let ping = lab.hosts[0].ping(lab.now, v4("10.0.0.2"), PingOptions::default());
    lab.run_for(Duration::from_secs(4));
    let report = lab.hosts[0].ping_report(ping).unwrap();
    assert!(report.done && report.all_replied(), "{report:?}");
    assert!(report.replies.iter().all(|r| r.ttl == 64));
    // The first request waited for ARP (one round trip).
    assert_eq!(report.replies[0].rtt, Duration::from_millis(4));
    assert_eq!(report.replies[1].rtt, Duration::from_millis(2));
    assert!(report.replies[0].from == v4("10.0.0.2"));

    let curl = lab.hosts[0].curl(lab.now, sock("10.0.0.2:80"), CurlOptions::default());
    lab.run_for(Duration::from_secs(2));
    let result = lab.hosts[0].curl_result(curl).unwrap();
    assert!(result.ok(), "{result:?}");
    let body = result.body().unwrap();
    assert!(body.starts_with("Hostname: b\nIP: 10.0.0.2\n"), "{body}");
    assert!(
        body.contains(&format!("RemoteAddr: {}\n", result.local)),
        "{body}"
    );
    assert_eq!(result.local.ip(), IpAddr::from([10, 0, 0, 1]));
    assert_eq!(lab.hosts[1].http_served(80), Some(1));
    // Both learned each other over ARP; no forwarding happened.
    for (h, peer) in [(0, "10.0.0.2"), (1, "10.0.0.1")] {
        let n = lab.hosts[h].neighbours().lookup(peer.parse().unwrap());
        assert_eq!(n, Some(mac(if h == 0 { 32 } else { 16 })));
        assert_eq!(lab.hosts[h].counters().received(Reason::Forwarded), 0);
    }
    assert_eq!(lab.hosts[0].counters().arp_requests, 1);
}

#[test]
fn ping_crosses_the_router_with_ttl_63() {
    let mut lab = routed(true);
    let ping = lab.hosts[CLIENT].ping(lab.now, v4("10.0.2.10"), PingOptions::default());
    lab.run_for(Duration::from_secs(4));
    let report = lab.hosts[CLIENT].ping_report(ping).unwrap();
    assert!(report.all_replied(), "{report:?}");
    assert!(report.replies.iter().all(|r| r.ttl == 63), "{report:?}");
    // The echo requests reached the server with TTL 63 too.
    let at_server: Vec<u8> = lab
        .log
        .iter()
        .filter(|(_, h, _, _)| *h == SERVER)
        .filter_map(|(_, _, _, f)| {
            let eth = EthernetFrame::new_checked(&f[..]).ok()?;
            (eth.ethertype() == EthernetProtocol::Ipv4).then_some(())?;
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            Some(ip.hop_limit())
        })
        .collect();
    assert_eq!(at_server, [63, 63, 63]);
    let router = &lab.hosts[ROUTER];
    assert_eq!(router.counters().received(Reason::Forwarded), 6);
    for n in ["10.0.1.10", "10.0.2.10"] {
        assert!(router.neighbours().lookup(n.parse().unwrap()).is_some());
    }
}

#[test]
fn curl_through_the_router_reaches_whoami_repeatedly() {
    let mut lab = routed(true);
    let mut locals = Vec::new();
    for _ in 0..3 {
        let id = lab.hosts[CLIENT].curl(lab.now, sock("10.0.2.10:80"), CurlOptions::default());
        lab.run_for(Duration::from_secs(1));
        let result = lab.hosts[CLIENT].curl_result(id).unwrap().clone();
        assert!(result.ok(), "{result:?}");
        let body = result.body().unwrap();
        assert!(body.starts_with("Hostname: server\n"), "{body}");
        assert!(body.contains(&format!("RemoteAddr: {}\n", result.local)));
        assert_eq!(result.local.ip(), IpAddr::from([10, 0, 1, 10]));
        assert!(result.elapsed < Duration::from_millis(50), "{result:?}");
        locals.push(result.local.port());
    }
    assert_eq!(locals[1], locals[0] + 1, "ephemeral ports count up");
    assert_eq!(lab.hosts[SERVER].http_served(80), Some(3));
}

#[test]
fn curl_fails_cleanly_on_closed_ports_and_dead_addresses() {
    let mut lab = routed(true);
    let refused = lab.hosts[CLIENT].curl(lab.now, sock("10.0.2.10:8080"), CurlOptions::default());
    let silent = lab.hosts[CLIENT].curl(lab.now, sock("10.0.2.99:80"), CurlOptions::default());
    lab.run_for(Duration::from_secs(3));
    let r = lab.hosts[CLIENT].curl_result(refused).unwrap();
    assert_eq!(r.outcome, Err(CurlError::Refused));
    let s = lab.hosts[CLIENT].curl_result(silent).unwrap();
    assert_eq!(s.outcome, Err(CurlError::ConnectTimeout));
    assert_eq!(s.elapsed, Duration::from_secs(1));
}

#[test]
fn ttl_expiry_yields_time_exceeded_from_the_ingress_address() {
    let mut lab = routed(true);
    let options = PingOptions {
        count: 1,
        ttl: 1,
        ..PingOptions::default()
    };
    let ping = lab.hosts[CLIENT].ping(lab.now, v4("10.0.2.10"), options);
    lab.run_for(Duration::from_secs(2));
    let report = lab.hosts[CLIENT].ping_report(ping).unwrap();
    assert!(report.replies.is_empty());
    assert_eq!(report.errors.len(), 1, "{report:?}");
    let e = report.errors[0];
    assert_eq!((e.from, e.icmp_type, e.code), (v4("10.0.1.1"), 11, 0));
    assert_eq!(e.describe(), "Time to live exceeded");
    assert_eq!(lab.hosts[ROUTER].counters().icmp_errors, 1);
}

#[test]
fn no_route_yields_net_unreachable() {
    let mut lab = routed(true);
    let options = PingOptions {
        count: 1,
        ..PingOptions::default()
    };
    let ping = lab.hosts[CLIENT].ping(lab.now, v4("192.0.2.1"), options);
    lab.run_for(Duration::from_secs(2));
    let report = lab.hosts[CLIENT].ping_report(ping).unwrap();
    let e = report.errors[0];
    assert_eq!((e.from, e.icmp_type, e.code), (v4("10.0.1.1"), 3, 0));
    assert_eq!(lab.hosts[ROUTER].counters().received(Reason::NoRoute), 1);
}

#[test]
fn a_host_without_forwarding_drops_transit_traffic() {
    let mut lab = routed(false);
    let ping = lab.hosts[CLIENT].ping(lab.now, v4("10.0.2.10"), PingOptions::default());
    lab.run_for(Duration::from_secs(4));
    let report = lab.hosts[CLIENT].ping_report(ping).unwrap();
    assert!(report.done && report.replies.is_empty() && report.errors.is_empty());
    let router = lab.hosts[ROUTER].counters();
    assert_eq!(router.not_forwarding, 3);
    assert_eq!(router.received(Reason::Forwarded), 0);
    // The router still answers for itself.
    let ping = lab.hosts[CLIENT].ping(lab.now, v4("10.0.1.1"), PingOptions::default());
    lab.run_for(Duration::from_secs(4));
    assert!(lab.hosts[CLIENT].ping_report(ping).unwrap().all_replied());
}

#[test]
fn a_nexthop_that_never_answers_fails_the_ping_cleanly() {
    let mut lab = routed(true);
    let nowhere = Route::new(
        Protocol::Static,
        vec![Nexthop::gateway("10.0.2.99".parse().unwrap(), PortId(1))],
    );
    lab.hosts[ROUTER].add_route(net("10.0.3.0/24"), &nowhere);
    let options = PingOptions {
        count: 5,
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        ..PingOptions::default()
    };
    let ping = lab.hosts[CLIENT].ping(lab.now, v4("10.0.3.5"), options);
    lab.run_for(Duration::from_secs(8));
    let report = lab.hosts[CLIENT].ping_report(ping).unwrap();
    assert!(report.done && report.replies.is_empty(), "{report:?}");
    // Three requests queued for the nexthop, two overflowed; after three unanswered
    // ARP requests the queued ones get host unreachable.
    let router = lab.hosts[ROUTER].counters();
    // The client's own ARP request taught the router its address: all three
    // requests asked for the silent gateway.
    assert_eq!(router.arp_requests, 3);
    assert_eq!(router.queue_overflow, 2);
    assert_eq!(router.unresolved, 3);
    assert_eq!(report.errors.len(), 3, "{report:?}");
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.from == v4("10.0.1.1") && e.describe() == "Destination Host Unreachable")
    );
}

#[test]
fn same_inputs_same_frames() {
    let run = || {
        let mut lab = routed(true);
        lab.hosts[CLIENT].ping(lab.now, v4("10.0.2.10"), PingOptions::default());
        lab.hosts[CLIENT].curl(lab.now, sock("10.0.2.10:80"), CurlOptions::default());
        lab.run_for(Duration::from_secs(5));
        lab.log
    };
    let first = run();
    assert!(first.len() > 20);
    assert_eq!(first, run());
}

#[test]
fn bad_configurations_are_refused() {
    let mut c = host("x", 1, &["10.0.0.1/24"], false);
    c.ports[0].addrs.push(net("224.0.0.1/32"));
    assert!(Host::new(c).unwrap_err().to_string().contains("eth0"));
    let mut c = host("x", 1, &["10.0.0.1/24"], false);
    c.ports[0].mtu = 10;
    assert!(Host::new(c).is_err());
    let mut c = host("x", 1, &["10.0.0.1/24"], false);
    c.ports[0].addrs = (1..=9).map(|i| net(&format!("10.0.{i}.1/24"))).collect();
    assert!(matches!(
        Host::new(c),
        Err(crate::ConfigError::TooManyAddresses { count: 9, max: 8 })
    ));
}

#[test]
fn pod_gateways_reach_each_other_through_a_vxlan_tunnel() {
    use router_core::datapath::TunnelConfig;
    use router_core::fib::{Encap, NexthopKind};
    let tunnel_mac = EthernetAddress([0x02, 0, 0, 0, 0xee, 0xee]);
    let node = |name: &str, n: u8, underlay: &str, pods: &str| {
        let mut c = host(name, n, &[underlay, pods], true);
        let local = net(underlay).addr().to_string();
        c.datapath.tunnel = Some(TunnelConfig::new(v4(&local), tunnel_mac));
        Host::new(c).unwrap()
    };
    let via_tunnel = |endpoint: &str| {
        let kind = NexthopKind::Tunnel {
            endpoint: endpoint.parse().unwrap(),
            encap: Encap::Vxlan,
            vni: None,
        };
        Route::new(Protocol::Kernel, vec![Nexthop { kind, weight: 1 }])
    };
    let mut a = node("k8s-ctr", 1, "192.168.10.100/24", "172.20.0.1/24");
    let mut b = node("k8s-w1", 2, "192.168.10.101/24", "172.20.1.1/24");
    a.add_route(net("172.20.1.0/24"), &via_tunnel("192.168.10.101"));
    b.add_route(net("172.20.0.0/24"), &via_tunnel("192.168.10.100"));
    let mut lab = Lab::new(vec![a, b]);
    lab.link(0, 0, 1, 0);
    let options = PingOptions {
        source: Some(v4("172.20.0.1")),
        ..PingOptions::default()
    };
    let ping = lab.hosts[0].ping(lab.now, v4("172.20.1.1"), options);
    lab.run_for(Duration::from_secs(4));
    let report = lab.hosts[0].ping_report(ping).unwrap();
    assert!(report.all_replied(), "{report:?}");
    assert!(report.replies.iter().all(|r| r.ttl == 64), "{report:?}");
    for h in &lab.hosts {
        assert_eq!(h.counters().originated(Reason::Encapsulated), 3);
        assert_eq!(h.counters().received(Reason::Local), 3);
    }
    // On the wire: VXLAN to port 8472 between the underlay addresses.
    let (_, _, _, frame) = lab
        .log
        .iter()
        .find(|(_, h, _, f)| *h == 1 && f.len() > 100)
        .unwrap();
    let outer = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert_eq!(outer.dst_addr(), v4("192.168.10.101"));
    assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 8472);
}

mod bgp {
    use std::net::IpAddr;

    use router_core::bgp::fsm::{Config, GracefulRestartConfig, PeerAs, State};
    use router_core::bgp::rib::{PeerConfig, RibConfig};
    use router_core::fib::{NexthopKind, Protocol};
    use smoltcp::time::Duration;

    use router_core::bgp::speaker::{Input, PeerSpec, Speaker, Transport};

    use super::{CLIENT, Lab, ROUTER, SERVER, net, routed, v4};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn spec(
        local_as: u32,
        peer_as: u32,
        id: &str,
        peer: &str,
        local: &str,
        passive: bool,
    ) -> Input {
        let mut session = Config::new(local_as, PeerAs::Exact(peer_as), v4(id));
        session.passive = passive;
        session.hold_time = 9;
        session.keepalive_time = Some(3);
        session.connect_retry_time = Duration::from_secs(1);
        session.idle_hold_time = Duration::from_secs(1);
        session.graceful_restart = Some(GracefulRestartConfig {
            restart_time: 15,
            ..GracefulRestartConfig::default()
        });
        Input::AddPeer(Box::new(PeerSpec {
            session,
            rib: PeerConfig::new(ip(peer), Some(v4(local))),
            import: true,
            transport: Transport {
                port: 179,
                ..Transport::default()
            },
        }))
    }

    fn originate(prefix: &str) -> Input {
        Input::Originate(net(prefix), Box::default())
    }

    fn speaker(lab: &Lab, host: usize) -> &Speaker {
        lab.hosts[host].bgp().unwrap().speaker().unwrap()
    }

    fn start_router(lab: &mut Lab) {
        let now = lab.now;
        let r = &mut lab.hosts[ROUTER];
        let mut rib = RibConfig::new(65000, v4("10.0.1.1"));
        rib.maximum_paths = 4;
        r.bgp_start(now, rib);
        r.bgp_input(
            now,
            spec(65000, 65001, "10.0.1.1", "10.0.1.10", "10.0.1.1", true),
        );
        r.bgp_input(
            now,
            spec(65000, 65001, "10.0.1.1", "10.0.2.10", "10.0.2.1", true),
        );
        r.bgp_input(now, originate("10.10.1.0/24"));
    }

    /// Client and server (AS 65001, active, routes not installed, as
    /// Cilium) peer with the router (AS 65000, passive, installing with
    /// multipath); both originate 172.16.1.1/32, the router installs it as
    /// a two-way ECMP route at distance 20.
    fn peered() -> Lab {
        let mut lab = routed(true);
        start_router(&mut lab);
        let now = lab.now;
        for (i, me, router) in [
            (CLIENT, "10.0.1.10", "10.0.1.1"),
            (SERVER, "10.0.2.10", "10.0.2.1"),
        ] {
            let h = &mut lab.hosts[i];
            let mut rib = RibConfig::new(65001, v4(me));
            rib.install = false;
            h.bgp_start(now, rib);
            h.bgp_input(now, spec(65001, 65000, me, router, me, false));
            h.bgp_input(now, originate("172.16.1.1/32"));
        }
        lab.hosts[CLIENT].bgp_input(now, originate("172.20.0.0/24"));
        lab.run_for(Duration::from_secs(5));
        lab
    }

    fn state(lab: &Lab, host: usize, peer: &str) -> State {
        speaker(lab, host).peers()[&ip(peer)].session().state()
    }

    #[test]
    fn sessions_establish_over_smoltcp_and_the_router_installs_ecmp() {
        let lab = peered();
        assert_eq!(state(&lab, ROUTER, "10.0.1.10"), State::Established);
        assert_eq!(state(&lab, ROUTER, "10.0.2.10"), State::Established);
        let fib = lab.hosts[ROUTER].fib();
        let g = fib.group(fib.lookup(ip("172.16.1.1")).unwrap()).unwrap();
        let hops: Vec<IpAddr> = g
            .members()
            .iter()
            .filter_map(|m| match m.kind {
                NexthopKind::Gateway { addr, .. } => Some(addr),
                _ => None,
            })
            .collect();
        assert_eq!(hops, vec![ip("10.0.1.10"), ip("10.0.2.10")]);
        let installed = fib
            .routes()
            .find(|r| r.prefix == net("172.16.1.1/32"))
            .unwrap()
            .route;
        assert_eq!(
            (installed.protocol, installed.distance),
            (Protocol::Ebgp, 20)
        );
        // The server learned the router's network, not the client's pod
        // CIDR (its AS_PATH holds the server's AS too), and does not
        // install received routes.
        let server = speaker(&lab, SERVER).rib();
        assert_eq!(server.paths(net("10.10.1.0/24")).len(), 1);
        assert!(server.paths(net("172.20.0.0/24")).is_empty());
        let fib = lab.hosts[SERVER].fib();
        assert!(fib.routes().all(|r| r.route.protocol != Protocol::Ebgp));
    }

    #[test]
    fn a_router_restart_leaves_stale_routes_on_the_peers_until_it_is_back() {
        let mut lab = peered();
        let now = lab.now;
        lab.hosts[ROUTER].bgp_stop(now);
        assert!(lab.hosts[ROUTER].fib().lookup(ip("172.16.1.1")).is_none());
        lab.run_for(Duration::from_millis(100));
        assert_ne!(state(&lab, SERVER, "10.0.2.1"), State::Established);
        let paths = speaker(&lab, SERVER).rib().paths(net("10.10.1.0/24"));
        assert!(paths.len() == 1 && paths[0].stale, "kept stale: {paths:?}");
        start_router(&mut lab);
        lab.run_for(Duration::from_secs(5));
        assert_eq!(state(&lab, SERVER, "10.0.2.1"), State::Established);
        let paths = speaker(&lab, SERVER).rib().paths(net("10.10.1.0/24"));
        assert!(paths.len() == 1 && !paths[0].stale);
        assert!(lab.hosts[ROUTER].fib().lookup(ip("172.16.1.1")).is_some());
    }
}

/// client 10.0.1.10 — (10.0.1.1) node A (10.0.3.1) — (10.0.3.2) node B; A's pod
/// 10.0.2.10 and B's pod 10.0.4.10 both back 172.16.1.1:80 on A.
#[test]
fn a_load_balancer_address_reaches_local_and_remote_backends() {
    use router_core::service::Protocol as L4;
    use router_core::service::datapath::Config;
    use router_core::service::maglev;
    use router_core::service::table::{
        BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable,
    };

    let mut client = Host::new(host("client", 1, &["10.0.1.10/24"], false)).unwrap();
    let mut a = Host::new(host(
        "node-a",
        2,
        &["10.0.1.1/24", "10.0.2.1/24", "10.0.3.1/24"],
        true,
    ))
    .unwrap();
    let mut b = Host::new(host("node-b", 3, &["10.0.3.2/24", "10.0.4.1/24"], true)).unwrap();
    let mut local = Host::new(host("local-pod", 4, &["10.0.2.10/24"], false)).unwrap();
    let mut remote = Host::new(host("remote-pod", 5, &["10.0.4.10/24"], false)).unwrap();
    default_via(&mut client, "10.0.1.1");
    default_via(&mut local, "10.0.2.1");
    default_via(&mut remote, "10.0.4.1");
    let via_b = Route::new(
        Protocol::Static,
        vec![Nexthop::gateway(v4("10.0.3.2").into(), PortId(2))],
    );
    a.add_route(net("10.0.4.0/24"), &via_b);
    let via_a = Route::new(
        Protocol::Static,
        vec![Nexthop::gateway(v4("10.0.3.1").into(), PortId(0))],
    );
    b.add_route(net("0.0.0.0/0"), &via_a);
    local.serve_http(80);
    remote.serve_http(80);
    let l3n4 = |s: &str| {
        let addr: std::net::SocketAddr = s.parse().unwrap();
        L3n4 {
            addr: addr.ip(),
            port: addr.port(),
            protocol: L4::Tcp,
        }
    };
    let backend = |s: &str, local| BackendSpec {
        addr: l3n4(s),
        state: BackendState::Active,
        local,
        weight: 100,
        node: None,
    };
    let vip = FrontendSpec {
        service: ("default".into(), "web".into()),
        kind: FrontendKind::LoadBalancer,
        external_local: false,
        internal_local: false,
        affinity_seconds: None,
        backends: vec![
            backend("10.0.2.10:80", true),
            backend("10.0.4.10:80", false),
        ],
    };
    let table = ServiceTable::new(
        &maglev::Config::default(),
        BTreeMap::from([(l3n4("172.16.1.1:80"), vip)]),
    );
    a.services_mut().configure(Config {
        snat_v4: Some(v4("10.0.3.1")),
        ..Config::default()
    });
    a.services_mut().set_table(table);
    let mut lab = Lab::new(vec![client, a, b, local, remote]);
    lab.link(0, 0, 1, 0);
    lab.link(1, 1, 3, 0);
    lab.link(1, 2, 2, 0);
    lab.link(2, 1, 4, 0);

    let mut remote_addrs = BTreeMap::new();
    for _ in 0..12 {
        let curl = lab.hosts[0].curl(lab.now, sock("172.16.1.1:80"), CurlOptions::default());
        lab.run_for(Duration::from_secs(2));
        let result = lab.hosts[0].curl_result(curl).unwrap();
        assert!(result.ok(), "{result:?}");
        let body = result.body().unwrap();
        let line = |key: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .to_string()
        };
        let remote_ip = line("RemoteAddr: ").split(':').next().unwrap().to_string();
        remote_addrs.insert(line("Hostname: "), remote_ip);
    }
    // The local backend saw the client, the remote one node A's address.
    assert_eq!(
        remote_addrs.get("local-pod").map(String::as_str),
        Some("10.0.1.10")
    );
    assert_eq!(
        remote_addrs.get("remote-pod").map(String::as_str),
        Some("10.0.3.1")
    );
    let c = lab.hosts[1].services().counters();
    assert_eq!(c.opened, 12);
    assert!(c.snat > 0 && c.snat < 12, "{c:?}");
}

/// The router as a Cilium node whose eth0 leads to a pod (the client):
/// its flow events for a ping that crosses, one whose TTL runs out and one
/// with no route.
#[test]
fn a_node_records_its_pods_flows_and_its_drops() {
    use router_core::flow::{DropReason, L4, Point, Verdict};
    let mut lab = routed(true);
    lab.hosts[ROUTER].set_pod_port(PortId(0));
    lab.hosts[ROUTER].enable_flows();
    let mut ping = |target: &str, ttl: u8| {
        let options = PingOptions {
            count: 1,
            ttl,
            ..PingOptions::default()
        };
        lab.hosts[CLIENT].ping(lab.now, v4(target), options);
        lab.run_for(Duration::from_secs(2));
        lab.hosts[ROUTER].take_flows()
    };
    let seen = |flows: &[router_core::flow::Flow]| -> Vec<(Option<Point>, Verdict, Option<bool>)> {
        flows
            .iter()
            .map(|f| (f.observation.point, f.observation.verdict, f.reply))
            .collect()
    };
    let crossed = ping("10.0.2.10", 64);
    assert_eq!(
        seen(&crossed),
        [
            (Some(Point::ToNetwork), Verdict::Forwarded, Some(false)),
            (Some(Point::ToEndpoint), Verdict::Forwarded, Some(true)),
        ]
    );
    assert_eq!(crossed[0].packet.l4, L4::Icmp4 { kind: 8, code: 0 });
    assert_eq!(crossed[1].packet.src, IpAddr::V4(v4("10.0.2.10")));
    // The error the node sends back is delivered to the pod too.
    let expired = ping("10.0.2.10", 1);
    assert_eq!(
        seen(&expired),
        [
            (None, Verdict::Dropped(DropReason::TtlExceeded), Some(false)),
            (Some(Point::ToEndpoint), Verdict::Forwarded, Some(true)),
        ]
    );
    let unroutable = ping("192.0.2.1", 64);
    assert_eq!(
        seen(&unroutable)[0],
        (
            None,
            Verdict::Dropped(DropReason::FibLookupFailed),
            Some(false)
        )
    );
    // A host that does not keep flows records none.
    assert!(lab.hosts[CLIENT].take_flows().is_empty());
}

/// A narrower link on the way answers a DF packet with "fragmentation
/// needed" and its MTU (RFC 1191); a request over the sender's own route
/// MTU never leaves.
#[test]
fn a_narrow_link_answers_df_packets_with_its_mtu() {
    let mut config = host("router", 2, &["10.0.1.1/24", "10.0.2.1/24"], true);
    config.ports[1].mtu = 1400;
    let mut lab = routed(true);
    lab.hosts[ROUTER] = Host::new(config).unwrap();
    let options = |count, size| PingOptions {
        count,
        size,
        dont_fragment: true,
        ..PingOptions::default()
    };
    let server = v4("10.0.2.10");
    // Over the client's own 1500: refused before it is sent.
    let huge = lab.hosts[CLIENT].ping(lab.now, server, options(1, 1473));
    lab.run_for(Duration::from_secs(2));
    let report = lab.hosts[CLIENT].ping_report(huge).unwrap();
    assert_eq!(
        report.local_errors,
        [(0, "sendmsg: Message too large".to_string())]
    );
    let big = lab.hosts[CLIENT].ping(lab.now, server, options(2, 1472));
    lab.run_for(Duration::from_secs(3));
    let report = lab.hosts[CLIENT].ping_report(big).unwrap().clone();
    assert!(report.replies.is_empty());
    let e = report.errors[0];
    assert_eq!(
        (e.from, e.icmp_type, e.code, e.mtu),
        (v4("10.0.1.1"), 3, 4, 1400)
    );
    assert_eq!(e.describe(), "Frag needed and DF set (mtu = 1400)");
    // The socket learnt the path MTU: its second request fails at home.
    let local = "local error: message too long, mtu=1400".to_string();
    assert_eq!(report.local_errors, [(1, local.clone())]);
    // So did the host, for ten minutes: a new ping fails at once.
    let (mtu, left) = lab.hosts[CLIENT]
        .path_mtu(lab.now, IpAddr::V4(server))
        .unwrap();
    assert_eq!(mtu, 1400);
    assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
    let again = lab.hosts[CLIENT].ping(lab.now, server, options(1, 1472));
    lab.run_for(Duration::from_secs(2));
    assert_eq!(
        lab.hosts[CLIENT].ping_report(again).unwrap().local_errors,
        [(0, local)]
    );
    let fits = lab.hosts[CLIENT].ping(lab.now, server, options(1, 1372));
    lab.run_for(Duration::from_secs(2));
    assert_eq!(
        lab.hosts[CLIENT].ping_report(fits).unwrap().replies.len(),
        1
    );
    assert_eq!(lab.hosts[ROUTER].counters().icmp_errors, 1);
    // Ten minutes on, the path MTU is forgotten.
    lab.run_for(Duration::from_secs(600));
    assert_eq!(
        lab.hosts[CLIENT].path_mtu(lab.now, IpAddr::V4(server)),
        None
    );
}
