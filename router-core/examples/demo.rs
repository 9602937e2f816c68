//! router-core demo: the routing tables of the seed lab's k8s-ctr node and ToR
//! router, built with router-core and printed the way Linux shows them.
//!
//! Run: `cargo run -p router-core --example demo`
//!
//! This is not the simulator (that is `nexthop-sim`); it exercises the FIB,
//! ECMP and ARP responder that both runtimes share, on the addresses of
//! shared/seeds (seed 002 scenario 2 and the LoadBalancer IP of seed 000).

use std::net::{IpAddr, Ipv4Addr};

use router_core::PortId;
use router_core::ecmp::{FlowKey, HashPolicy};
use router_core::fib::{Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour::arp::{self, PortAddrs};
use smoltcp::wire::EthernetAddress;

const ETH1: PortId = PortId(1);
const ETH2: PortId = PortId(2);
const CILIUM_HOST: PortId = PortId(10);

fn name(p: PortId) -> String {
    match p {
        ETH1 => "eth1".into(),
        ETH2 => "eth2".into(),
        CILIUM_HOST => "cilium_host".into(),
        other => other.to_string(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("demo addresses are valid")
}

fn print_routes(host: &str, fib: &Fib) {
    println!("$ ip route   # {host}");
    for r in fib.routes() {
        let mut line = String::new();
        r.write_ip_route(&mut line, name)
            .expect("writing to a String");
        println!("{line}");
    }
    println!();
}

fn k8s_ctr() -> Fib {
    let mut fib = Fib::new();
    let connected = |p| Route::new(Protocol::Connected, vec![Nexthop::connected(p)]);
    let via = |proto, gw: &str, p| Route::new(proto, vec![Nexthop::gateway(ip(gw), p)]);
    fib.insert("192.168.10.0/24".parse().unwrap(), &connected(ETH1));
    fib.insert("172.20.0.201/32".parse().unwrap(), &connected(CILIUM_HOST));
    fib.insert(
        "172.20.0.0/24".parse().unwrap(),
        &via(Protocol::Connected, "172.20.0.201", CILIUM_HOST),
    );
    fib.insert(
        "172.20.1.0/24".parse().unwrap(),
        &via(Protocol::Connected, "192.168.10.101", ETH1),
    );
    for p in ["10.10.0.0/16", "172.20.0.0/16", "192.168.20.0/24"] {
        fib.insert(
            p.parse().unwrap(),
            &via(Protocol::Static, "192.168.10.200", ETH1),
        );
    }
    fib
}

fn router() -> Fib {
    let mut fib = Fib::new();
    let connected = |p| Route::new(Protocol::Connected, vec![Nexthop::connected(p)]);
    fib.insert("192.168.10.0/24".parse().unwrap(), &connected(ETH1));
    fib.insert("192.168.20.0/24".parse().unwrap(), &connected(ETH2));
    let lb = Route::new(
        Protocol::Ebgp,
        vec![
            Nexthop::gateway(ip("192.168.10.100"), ETH1),
            Nexthop::gateway(ip("192.168.10.101"), ETH1),
            Nexthop::gateway(ip("192.168.20.100"), ETH2),
        ],
    );
    fib.insert("172.16.1.1/32".parse().unwrap(), &lb);
    fib
}

fn route_get(fib: &Fib, dst: &str) {
    let line = match fib.lookup(ip(dst)).and_then(|g| fib.group(g)) {
        None => format!("RTNETLINK answers: Network is unreachable ({dst})"),
        Some(g) => match g.members()[0].kind {
            NexthopKind::Gateway { addr, port } => {
                format!("{dst} via {addr} dev {}", name(port))
            }
            NexthopKind::Connected { port } => {
                format!("{dst} dev {}", name(port))
            }
            other => format!("{dst} {other:?}"),
        },
    };
    println!("$ ip route get {dst}\n{line}");
}

fn ecmp_spread(fib: &Fib, policy: HashPolicy) {
    let group = fib
        .group(fib.lookup(ip("172.16.1.1")).expect("the LB route"))
        .expect("its group");
    let mut hits = std::collections::BTreeMap::new();
    for sport in 0..100u16 {
        let flow = FlowKey {
            src: ip("192.168.10.200"),
            dst: ip("172.16.1.1"),
            protocol: 6,
            src_port: 40_000 + sport,
            dst_port: 80,
        };
        let nh = match group.select(&flow, policy, 0).kind {
            NexthopKind::Gateway { addr, port } => format!("via {addr} dev {}", name(port)),
            other => format!("{other:?}"),
        };
        *hits.entry(nh).or_insert(0) += 1;
    }
    println!("100 TCP connections 192.168.10.200 -> 172.16.1.1:80, hash {policy:?}:");
    for (nh, n) in hits {
        println!("  {n:>3}  {nh}");
    }
}

fn main() {
    println!("router-core demo: seed 002's native-routing tables, built by hand\n");
    let ctr = k8s_ctr();
    print_routes("k8s-ctr", &ctr);
    route_get(&ctr, "172.20.1.10");
    route_get(&ctr, "172.20.2.36");
    route_get(&ctr, "8.8.8.8");
    println!();

    let rtr = router();
    print_routes(
        "router (after BGP: LoadBalancer IP 172.16.1.1 over 3 nodes)",
        &rtr,
    );
    ecmp_spread(&rtr, HashPolicy::L3);
    ecmp_spread(&rtr, HashPolicy::L4);
    println!();

    let mac = EthernetAddress([0x08, 0x00, 0x27, 0x00, 0x10, 0x00]);
    let port = PortAddrs {
        mac,
        owned: vec![Ipv4Addr::new(192, 168, 10, 100)],
        announced: vec![Ipv4Addr::new(192, 168, 10, 211)],
    };
    let asker = EthernetAddress([0x08, 0x00, 0x27, 0x00, 0x10, 0xc8]);
    for target in [
        Ipv4Addr::new(192, 168, 10, 211),
        Ipv4Addr::new(192, 168, 10, 99),
    ] {
        let req = arp::request(asker, Ipv4Addr::new(192, 168, 10, 200), target);
        let verdict = arp::respond(ETH1, &port, &req);
        match verdict.reply {
            Ok(frame) => println!(
                "ARP who-has {target}: reply, {} bytes, is-at {mac}",
                frame.len()
            ),
            Err(why) => println!("ARP who-has {target}: no reply ({why:?})"),
        }
    }
}
