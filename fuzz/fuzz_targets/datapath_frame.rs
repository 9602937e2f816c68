//! Run arbitrary bytes through the reference datapath as a frame received on
//! one of a small host's ports (chosen by the first byte). The host has
//! connected, gateway, ECMP, blackhole and VXLAN/Geneve tunnel routes, an
//! announced address and a tunnel endpoint, so every pipeline stage is
//! reachable. The pipeline must never panic, and its output must be a frame.
//!
//! Run from the workspace root: `cargo +nightly fuzz run datapath_frame -- -max_total_time=60`.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use router_core::PortId;
use router_core::datapath::{Config, PortConfig, Reason, Tables, TunnelConfig, process};
use router_core::fib::{Encap, Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour::{self, arp, ndp};
use smoltcp::wire::EthernetAddress;

struct Host {
    fib: Fib,
    neighbours: neighbour::Table,
    ports: BTreeMap<PortId, PortConfig>,
    identities: BTreeMap<IpAddr, u32>,
    config: Config,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid")
}

fn host() -> Host {
    let mac = |b| EthernetAddress([2, 0, 0, 0, 0, b]);
    let mut ports = BTreeMap::new();
    for (i, addr) in [(0u16, "192.168.10.100"), (1, "172.20.0.1")] {
        ports.insert(
            PortId(i),
            PortConfig {
                addrs: arp::PortAddrs {
                    mac: mac(i as u8),
                    owned: vec![addr.parse().expect("valid")],
                    announced: vec!["192.168.10.211".parse().expect("valid")],
                },
                ipv6: ndp::PortAddrsV6 {
                    owned: vec!["fd00::1".parse().expect("valid")],
                    announced: vec!["fd00::211".parse().expect("valid")],
                },
                mtu: 1500,
            },
        );
    }
    let mut fib = Fib::new();
    let route = |nh: Vec<Nexthop>| Route::new(Protocol::Static, nh);
    let tunnel = |encap| Nexthop {
        kind: NexthopKind::Tunnel {
            endpoint: ip("192.168.10.101"),
            encap,
            vni: None,
        },
        weight: 1,
    };
    fib.insert(
        "192.168.10.0/24".parse().expect("valid"),
        &route(vec![Nexthop::connected(PortId(0))]),
    );
    fib.insert(
        "172.20.0.0/24".parse().expect("valid"),
        &route(vec![Nexthop::connected(PortId(1))]),
    );
    fib.insert(
        "10.0.0.0/8".parse().expect("valid"),
        &route(vec![
            Nexthop::gateway(ip("192.168.10.1"), PortId(0)),
            Nexthop::gateway(ip("192.168.10.2"), PortId(0)),
        ]),
    );
    fib.insert(
        "172.20.1.0/24".parse().expect("valid"),
        &route(vec![tunnel(Encap::Vxlan)]),
    );
    fib.insert(
        "172.20.2.0/24".parse().expect("valid"),
        &route(vec![tunnel(Encap::Geneve)]),
    );
    fib.insert(
        "10.99.0.0/16".parse().expect("valid"),
        &route(vec![Nexthop {
            kind: NexthopKind::Blackhole,
            weight: 1,
        }]),
    );
    fib.insert(
        "fd00:1::/32".parse().expect("valid"),
        &route(vec![Nexthop::gateway(ip("fd00::2"), PortId(0))]),
    );
    let mut neighbours = neighbour::Table::new(neighbour::Config::default());
    for (a, p) in [
        ("192.168.10.1", 0),
        ("192.168.10.101", 0),
        ("172.20.0.5", 1),
        ("fd00::2", 0),
    ] {
        neighbours.insert_permanent(ip(a), PortId(p), mac(0x10 + p as u8));
    }
    Host {
        fib,
        neighbours,
        ports,
        identities: BTreeMap::from([(ip("172.20.0.5"), 4242)]),
        config: Config {
            tunnel: Some(TunnelConfig::new(
                "192.168.10.100".parse().expect("valid"),
                mac(0xee),
            )),
            ..Config::default()
        },
    }
}

fuzz_target!(|data: &[u8]| {
    static HOST: OnceLock<Host> = OnceLock::new();
    let h = HOST.get_or_init(host);
    let Some((&port, frame)) = data.split_first() else {
        return;
    };
    let tables = Tables {
        fib: &h.fib,
        neighbours: &h.neighbours,
        ports: &h.ports,
        identities: &h.identities,
        config: &h.config,
    };
    let mut out = Vec::new();
    let verdict = process(&tables, PortId(u16::from(port % 3)), frame, &mut out);
    if verdict.reason == Reason::Forwarded || verdict.reason == Reason::Encapsulated {
        assert!(
            out.len() >= 14 + 20,
            "a transmitted frame carries Ethernet and IP"
        );
    }
});
