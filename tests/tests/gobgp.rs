//! Interop with GoBGP 3 in network namespaces, our agent on a 4-octet AS
//! (4200000010): one IPv4 session carrying IPv4 and IPv6 unicast (MP-BGP,
//! IPv6 next hops). GoBGP is passive (it waits 5–10 s before dialling) and
//! announces routes from its global RIB, which our agent receives; GoBGP
//! receives our pod CIDRs with the advertisement's standard and large
//! communities; removing the advertisement makes GoBGP drop them.

use std::fs;
use std::time::Duration;

use nexthop_testkit::{Namespaces, skips, wait_for};
use nexthop_tests::{Agent, Gobgp, SinglePeer};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

const GOBGP_CONF: &str = r#"[global.config]
  as = 65002
  router-id = "10.0.1.2"
  local-address-list = ["10.0.1.2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.1.1"
    peer-as = 4200000010
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
  [neighbors.transport.config]
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#;

fn node(advertise: bool) -> SinglePeer<'static> {
    SinglePeer {
        node: "node2",
        addresses: ["10.0.1.1", "fd00:2::1"],
        pod_cidrs: ["172.20.2.0/24", "fd00:20:2::/64"],
        local_asn: 4200000010,
        peer: (65002, "10.0.1.2"),
        communities: ("64512:200", "4200000010:3:4"),
        advertise,
        graceful_restart: None,
    }
}

#[test]
fn gobgp_routes_both_ways_with_communities_and_withdrawal() {
    if skips(&["gobgpd", "gobgp"]) {
        return;
    }
    let ns = Namespaces::new(&["n", "g"]);
    ns.veth("n", "eth1", "g", "eth1");
    for (name, v4, v6) in [
        ("n", "10.0.1.1/24", "fd00:2::1/64"),
        ("g", "10.0.1.2/24", "fd00:2::2/64"),
    ] {
        ns.exec(name, &["ip", "addr", "add", v4, "dev", "eth1"]);
        ns.exec(name, &["ip", "addr", "add", v6, "dev", "eth1", "nodad"]);
        ns.wait_carrier(name, &["eth1"]);
    }
    let gobgp = Gobgp::start(&ns.name("g"), &ns.dir.join("gobgp"), GOBGP_CONF);
    gobgp.cli(&["global", "rib", "add", "-a", "ipv4", "10.20.1.0/24"]);
    gobgp.cli(&[
        "global",
        "rib",
        "add",
        "-a",
        "ipv6",
        "fd00:10:2::/64",
        "nexthop",
        "fd00:2::2",
    ]);
    let config_dir = ns.dir.join("node2");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(config_dir.join("bgp.yaml"), node(true).yaml()).unwrap();
    let agent = Agent::start(AGENT, &ns.name("n"), "node2", &config_dir, &ns.dir);
    let logs = || {
        format!(
            "--- gobgp neighbor\n{}--- agent\n{}",
            gobgp.cli(&["neighbor"]),
            agent.log()
        )
    };

    let rib4 = wait_for(
        "GoBGP to receive our IPv4 pod CIDR",
        Duration::from_secs(15),
        || {
            let r = gobgp.cli(&["global", "rib", "-a", "ipv4", "172.20.2.0/24"]);
            r.contains("172.20.2.0/24").then_some(r)
        },
        logs,
    );
    assert!(rib4.contains("10.0.1.1"), "{rib4}");
    assert!(rib4.contains("4200000010"), "{rib4}");
    assert!(rib4.contains("{Communities: 64512:200}"), "{rib4}");
    assert!(
        rib4.contains("{LargeCommunity: [ 4200000010:3:4]}"),
        "{rib4}"
    );
    let rib6 = wait_for(
        "GoBGP to receive our IPv6 pod CIDR",
        Duration::from_secs(10),
        || {
            let r = gobgp.cli(&["global", "rib", "-a", "ipv6", "fd00:20:2::/64"]);
            r.contains("fd00:20:2::/64").then_some(r)
        },
        logs,
    );
    assert!(rib6.contains("fd00:2::1"), "{rib6}");

    let received = wait_for(
        "our agent to receive GoBGP's routes",
        Duration::from_secs(10),
        || {
            let r = agent.query(AGENT, &["routes", "received", "ipv4", "unicast"]);
            r.contains("10.20.1.0/24").then_some(r)
        },
        logs,
    );
    assert!(received.contains("{AsPath: 65002}"), "{received}");
    assert!(received.contains("{Nexthop: 10.0.1.2}"), "{received}");
    wait_for(
        "our agent to receive GoBGP's IPv6 route",
        Duration::from_secs(10),
        || {
            let r = agent.query(AGENT, &["routes", "received", "ipv6", "unicast"]);
            r.contains("fd00:10:2::/64").then_some(r)
        },
        logs,
    );

    // Removing the advertisement withdraws both pod CIDRs from GoBGP.
    fs::write(config_dir.join("bgp.yaml"), node(false).yaml()).unwrap();
    wait_for(
        "GoBGP to drop our pod CIDRs",
        Duration::from_secs(10),
        || {
            let r4 = gobgp.cli(&["global", "rib", "-a", "ipv4"]);
            let r6 = gobgp.cli(&["global", "rib", "-a", "ipv6"]);
            (!r4.contains("172.20.2.0/24") && !r6.contains("fd00:20:2::/64")).then_some(())
        },
        logs,
    );
    let neighbor = gobgp.cli(&["neighbor"]);
    assert!(neighbor.contains("Establ"), "{neighbor}");
}
