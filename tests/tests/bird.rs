//! Interop with BIRD 2 (AS 4200000001, a 4-octet AS) in network
//! namespaces: one IPv4 session carrying IPv4 and IPv6 unicast (MP-BGP,
//! IPv6 next hops). BIRD announces static routes and our agent receives
//! them; BIRD receives our pod CIDRs with the advertisement's standard and
//! large communities; removing the advertisement makes BIRD drop them.

use std::fs;
use std::time::Duration;

use nexthop_testkit::{Namespaces, skips, wait_for};
use nexthop_tests::{Agent, Bird, SinglePeer};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

const BIRD_CONF: &str = "router id 10.0.0.2;
protocol device {}
protocol static s4 { ipv4; route 10.10.1.0/24 blackhole; }
protocol static s6 { ipv6; route fd00:10:1::/64 blackhole; }
protocol bgp node {
  local 10.0.0.2 as 4200000001;
  neighbor 10.0.0.1 as 65001;
  passive on;
  hold time 9;
  keepalive time 3;
  ipv4 { import all; export all; };
  ipv6 { import all; export all; next hop address fd00:1::2; };
}
";

fn node(advertise: bool) -> SinglePeer<'static> {
    SinglePeer {
        node: "node1",
        addresses: ["10.0.0.1", "fd00:1::1"],
        pod_cidrs: ["172.20.1.0/24", "fd00:20:1::/64"],
        local_asn: 65001,
        peer: (4200000001, "10.0.0.2"),
        communities: ("65001:100", "4200000001:1:2"),
        advertise,
        graceful_restart: None,
    }
}

#[test]
fn bird_routes_both_ways_with_communities_and_withdrawal() {
    if skips(&["bird", "birdc"]) {
        return;
    }
    let ns = Namespaces::new(&["n", "b"]);
    ns.veth("n", "eth1", "b", "eth1");
    for (name, v4, v6) in [
        ("n", "10.0.0.1/24", "fd00:1::1/64"),
        ("b", "10.0.0.2/24", "fd00:1::2/64"),
    ] {
        ns.exec(name, &["ip", "addr", "add", v4, "dev", "eth1"]);
        ns.exec(name, &["ip", "addr", "add", v6, "dev", "eth1", "nodad"]);
        ns.wait_carrier(name, &["eth1"]);
    }
    let bird = Bird::start(&ns.name("b"), &ns.dir.join("bird"), BIRD_CONF);
    let config_dir = ns.dir.join("node1");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(config_dir.join("bgp.yaml"), node(true).yaml()).unwrap();
    let agent = Agent::start(AGENT, &ns.name("n"), "node1", &config_dir, &ns.dir);
    let logs = || {
        format!(
            "--- birdc show protocols all node\n{}--- agent\n{}",
            bird.try_show("show protocols all node"),
            agent.log()
        )
    };

    let route4 = wait_for(
        "BIRD to receive our IPv4 pod CIDR",
        Duration::from_secs(15),
        || {
            let r = bird.cli("show route 172.20.1.0/24 all");
            r.contains("BGP.large_community").then_some(r)
        },
        logs,
    );
    assert!(route4.contains("BGP.as_path: 65001"), "{route4}");
    assert!(route4.contains("BGP.next_hop: 10.0.0.1"), "{route4}");
    assert!(route4.contains("BGP.community: (65001,100)"), "{route4}");
    assert!(
        route4.contains("BGP.large_community: (4200000001, 1, 2)"),
        "{route4}"
    );
    let route6 = wait_for(
        "BIRD to receive our IPv6 pod CIDR",
        Duration::from_secs(10),
        || {
            let r = bird.cli("show route fd00:20:1::/64 all");
            r.contains("BGP.next_hop").then_some(r)
        },
        logs,
    );
    assert!(route6.contains("BGP.next_hop: fd00:1::1"), "{route6}");

    let peers = agent.peers_json(AGENT).unwrap();
    assert_eq!(peers[0]["peer_asn"], 4200000001u32, "{peers}");
    let received = wait_for(
        "our agent to receive BIRD's routes",
        Duration::from_secs(10),
        || {
            let r = agent.query(AGENT, &["routes", "received", "ipv4", "unicast"]);
            r.contains("10.10.1.0/24").then_some(r)
        },
        logs,
    );
    assert!(received.contains("{AsPath: 4200000001}"), "{received}");
    assert!(received.contains("{Nexthop: 10.0.0.2}"), "{received}");
    let received6 = wait_for(
        "our agent to receive BIRD's IPv6 route",
        Duration::from_secs(10),
        || {
            let r = agent.query(AGENT, &["routes", "received", "ipv6", "unicast"]);
            r.contains("fd00:10:1::/64").then_some(r)
        },
        logs,
    );
    assert!(received6.contains("{Nexthop: fd00:1::2}"), "{received6}");

    // Removing the advertisement withdraws both pod CIDRs from BIRD.
    fs::write(config_dir.join("bgp.yaml"), node(false).yaml()).unwrap();
    wait_for(
        "BIRD to drop our pod CIDRs",
        Duration::from_secs(10),
        || {
            let r4 = bird.cli("show route 172.20.1.0/24");
            let r6 = bird.cli("show route fd00:20:1::/64");
            (!r4.contains("172.20.1.0/24") && !r6.contains("fd00:20:1::/64")).then_some(())
        },
        logs,
    );
    let established = bird.cli("show protocols node");
    assert!(established.contains("Established"), "{established}");
}
