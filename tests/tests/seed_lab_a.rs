//! Seed lab A (seeds 000 §000.2.4, 003 lab A) on network namespaces: a
//! router running real FRR 8.4.4 with the seed's frr.conf, three nodes
//! running `nexthop-agent` with the seed's Cilium BGP resources. FRR must
//! see three Established sessions and each node's pod /24 via that node;
//! relabelling a node `enable-bgp=false` must take its session down and
//! withdraw its route, and restoring the label must bring both back. With
//! the seed's LoadBalancer service at `externalTrafficPolicy: Local`, FRR
//! must learn the LB /32 only from the nodes with a ready endpoint (as the
//! bundled BGP lab shows it in the simulator), and moving the endpoints must
//! move the advertisements; the agent's `service list` shows the service.

use std::fs;
use std::path::Path;
use std::time::Duration;

use nexthop_testkit::{FRR_PROGRAMS, Frr, Namespaces, skips, wait_for};
use nexthop_tests::Agent;

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

/// The seed's frr.conf (§000.2.3), with the neighbours added.
const FRR_CONF: &str = "frr defaults traditional
hostname router
no ipv6 forwarding
service integrated-vtysh-config
!
router bgp 65000
 bgp router-id 192.168.10.200
 no bgp ebgp-requires-policy
 bgp graceful-restart
 bgp bestpath as-path multipath-relax
 neighbor CILIUM peer-group
 neighbor CILIUM remote-as external
 neighbor 192.168.10.100 peer-group CILIUM
 neighbor 192.168.10.101 peer-group CILIUM
 neighbor 192.168.20.100 peer-group CILIUM
 !
 address-family ipv4 unicast
  network 10.10.1.0/24
  maximum-paths 4
 exit-address-family
!
";

/// The seed's Cilium resources verbatim (§000.2.4; the bundled lab's file),
/// plus a short connect-retry so a test never waits Cilium's default 120 s.
fn cilium_bgp() -> String {
    include_str!("../../examples/labs/bgp/bgp/cilium-bgp.yaml").replace(
        "    keepAliveTimeSeconds: 3\n",
        "    keepAliveTimeSeconds: 3\n    connectRetryTimeSeconds: 2\n",
    )
}

struct Node {
    name: &'static str,
    ns: &'static str,
    ip: &'static str,
    pod_cidr: &'static str,
}

const NODES: [Node; 3] = [
    Node {
        name: "k8s-ctr",
        ns: "ctr",
        ip: "192.168.10.100",
        pod_cidr: "172.20.0.0/24",
    },
    Node {
        name: "k8s-w1",
        ns: "w1",
        ip: "192.168.10.101",
        pod_cidr: "172.20.1.0/24",
    },
    Node {
        name: "k8s-w0",
        ns: "w0",
        ip: "192.168.20.100",
        pod_cidr: "172.20.2.0/24",
    },
];

fn node_yaml(node: &Node, enable_bgp: bool) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {}\n  labels:\n    enable-bgp: \"{enable_bgp}\"\n\
         spec:\n  podCIDRs: [10.244.0.0/24]\nstatus:\n  addresses:\n  - {{type: InternalIP, address: {}}}\n\
         ---\napiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata:\n  name: {}\nspec:\n  ipam:\n    podCIDRs: [{}]\n",
        node.name, node.ip, node.name, node.pod_cidr
    )
}

/// Router `r` with eth1 192.168.10.200 (a bridge joining ctr and w1) and
/// eth2 192.168.20.200 (w0), loop1 10.10.1.200/24; the seed's static routes.
fn topology() -> Namespaces {
    let ns = Namespaces::new(&["r", "ctr", "w1", "w0"]);
    ns.exec("r", &["ip", "link", "add", "eth1", "type", "bridge"]);
    ns.exec("r", &["ip", "link", "set", "eth1", "up"]);
    ns.exec(
        "r",
        &["ip", "addr", "add", "192.168.10.200/24", "dev", "eth1"],
    );
    ns.veth("ctr", "eth1", "r", "p-ctr");
    ns.veth("w1", "eth1", "r", "p-w1");
    for port in ["p-ctr", "p-w1"] {
        ns.exec("r", &["ip", "link", "set", port, "master", "eth1"]);
    }
    ns.veth("w0", "eth1", "r", "eth2");
    ns.exec(
        "r",
        &["ip", "addr", "add", "192.168.20.200/24", "dev", "eth2"],
    );
    ns.exec("r", &["ip", "link", "add", "loop1", "type", "ifb"]);
    ns.exec("r", &["ip", "link", "set", "loop1", "up"]);
    ns.exec(
        "r",
        &["ip", "addr", "add", "10.10.1.200/24", "dev", "loop1"],
    );
    ns.exec("r", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for node in &NODES {
        ns.exec(
            node.ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", node.ip),
                "dev",
                "eth1",
            ],
        );
    }
    for n in ["ctr", "w1"] {
        ns.exec(
            n,
            &[
                "ip",
                "route",
                "add",
                "192.168.20.0/24",
                "via",
                "192.168.10.200",
            ],
        );
    }
    ns.exec(
        "w0",
        &[
            "ip",
            "route",
            "add",
            "192.168.10.0/24",
            "via",
            "192.168.20.200",
        ],
    );
    for n in ["ctr", "w1", "w0"] {
        ns.wait_carrier(n, &["eth1"]);
    }
    ns.wait_carrier("r", &["eth1", "eth2"]);
    ns
}

/// Each neighbour's state in `show bgp summary json`.
fn neighbour_states(frr: &Frr) -> Vec<(String, String)> {
    let summary = frr.json("show bgp ipv4 unicast summary json");
    let peers = summary["peers"].as_object().cloned().unwrap_or_default();
    peers
        .iter()
        .map(|(addr, p)| (addr.clone(), p["state"].as_str().unwrap_or("?").to_string()))
        .collect()
}

/// Prefix → next hops of the best and multipath paths in `show bgp ipv4 unicast json`.
fn routes(frr: &Frr) -> Vec<(String, Vec<String>)> {
    let table = frr.json("show bgp ipv4 unicast json");
    let routes = table["routes"].as_object().cloned().unwrap_or_default();
    routes
        .iter()
        .map(|(prefix, paths)| {
            let hops = paths
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|p| p["nexthops"].as_array().cloned().unwrap_or_default())
                .filter_map(|h| h["ip"].as_str().map(String::from))
                .collect();
            (prefix.clone(), hops)
        })
        .collect()
}

fn established(frr: &Frr, ip: &str) -> bool {
    neighbour_states(frr)
        .iter()
        .any(|(a, s)| a == ip && s == "Established")
}

fn has_route(frr: &Frr, prefix: &str, next_hop: &str) -> bool {
    routes(frr)
        .iter()
        .any(|(p, hops)| p == prefix && hops.iter().any(|h| h == next_hop))
}

/// Write `text` as `dir/name` whole (written aside, then renamed), so the
/// agent never reads half a file.
fn write_file(dir: &Path, name: &str, text: &str) {
    fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

fn write_config(dir: &Path, node: &Node, enable_bgp: bool) {
    write_file(dir, "cilium-bgp.yaml", &cilium_bgp());
    write_file(dir, "node.yaml", &node_yaml(node, enable_bgp));
}

/// The seed's LB advertisement, pool and webpod service with
/// `externalTrafficPolicy: Local` (the bundled lab's files), the address
/// LB-IPAM gives it (the pool's first usable address) in its status.
fn lb_local_service() -> String {
    let documents = [
        include_str!("../../examples/labs/bgp/bgp/cilium-bgp-lb.yaml"),
        include_str!("../../examples/labs/bgp/lb/pool.yaml"),
        include_str!("../../examples/labs/bgp/lb/webpod-local.yaml"),
    ];
    documents.join("---\n") + "status:\n  loadBalancer:\n    ingress:\n    - ip: 172.16.1.1\n"
}

/// webpod's EndpointSlice with one ready endpoint on each of `nodes`.
fn endpoints_on(nodes: &[&Node]) -> String {
    let mut text = String::from(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: webpod-abcde\n  namespace: default\n  labels: {kubernetes.io/service-name: webpod}\naddressType: IPv4\nports: [{name: \"\", port: 80, protocol: TCP}]\nendpoints:\n",
    );
    for (i, node) in nodes.iter().enumerate() {
        let pod = node.pod_cidr.replace(".0/24", &format!(".{}", 10 + i));
        text.push_str(&format!(
            "- {{addresses: [{pod}], conditions: {{ready: true, serving: true, terminating: false}}, nodeName: {}}}\n",
            node.name
        ));
    }
    text
}

/// The next hops FRR has for `prefix`, sorted.
fn next_hops(frr: &Frr, prefix: &str) -> Vec<String> {
    let mut hops: Vec<String> = routes(frr)
        .into_iter()
        .filter(|(p, _)| p == prefix)
        .flat_map(|(_, hops)| hops)
        .collect();
    hops.sort();
    hops
}

#[test]
fn seed_lab_a_frr_sees_three_nodes_and_relabelling_withdraws() {
    if skips(&FRR_PROGRAMS) {
        return;
    }
    let ns = topology();
    let frr = Frr::start(&ns.name("r"), &ns.dir.join("frr"), "router", FRR_CONF);
    let agents: Vec<Agent> = NODES
        .iter()
        .map(|node| {
            let dir = ns.dir.join(node.name);
            write_config(&dir, node, true);
            Agent::start(AGENT, &ns.name(node.ns), node.name, &dir, &ns.dir)
        })
        .collect();
    let logs = || {
        let mut text = format!(
            "FRR neighbours: {:?}\nFRR routes: {:?}\n",
            neighbour_states(&frr),
            routes(&frr)
        );
        for (node, agent) in NODES.iter().zip(&agents) {
            text.push_str(&format!("--- {} log\n{}", node.name, agent.log()));
        }
        text.push_str(&format!(
            "--- bgpd log (tail)\n{}",
            tail(&frr.bgpd_log(), 30)
        ));
        text
    };

    wait_for(
        "three Established sessions and three pod /24s on FRR",
        Duration::from_secs(30),
        || {
            NODES
                .iter()
                .all(|n| established(&frr, n.ip) && has_route(&frr, n.pod_cidr, n.ip))
                .then_some(())
        },
        logs,
    );

    // The agents' own view, in Cilium's layout.
    let peers = agents[2].query(AGENT, &["peers"]);
    let lines: Vec<&str> = peers.lines().collect();
    assert_eq!(
        lines[0],
        "Node     Local AS   Peer AS   Peer Address     Session State   Uptime   Family         Received   Advertised"
    );
    assert!(
        lines[1].starts_with("k8s-w0   65001      65000     192.168.10.200   established"),
        "{peers}"
    );
    let status = agents[2].query(AGENT, &["nodeconfig"]);
    for line in [
        "\"name\": \"instance-65001\",",
        "\"peeringState\": \"established\",",
        "\"appliedHoldTimeSeconds\": 9,",
    ] {
        assert!(status.contains(line), "{line} in {status}");
    }
    let available = agents[2].query(AGENT, &["routes", "available", "ipv4", "unicast"]);
    assert!(
        available.contains("k8s-w0   65001     172.20.2.0/24   0.0.0.0"),
        "{available}"
    );
    assert!(
        available.contains("[{Origin: i} {Nexthop: 0.0.0.0}]"),
        "{available}"
    );
    let received = wait_for(
        "the router's routes received by k8s-w0",
        Duration::from_secs(10),
        || {
            let r = agents[2].query(AGENT, &["routes", "received"]);
            (r.contains("10.10.1.0/24") && r.contains("172.20.0.0/24")).then_some(r)
        },
        logs,
    );
    assert!(received.contains("{AsPath: 65000}"), "{received}");
    // Received routes are not installed in the node's kernel (like Cilium).
    let kernel = ns.exec("w0", &["ip", "route", "show"]);
    assert!(
        !kernel.contains("10.10.1.0/24") && !kernel.contains("172.20."),
        "{kernel}"
    );

    // Maintenance: k8s-w0 loses its enable-bgp label.
    let w0 = &NODES[2];
    write_config(&ns.dir.join(w0.name), w0, false);
    wait_for(
        "k8s-w0's session down and its pod /24 withdrawn",
        Duration::from_secs(15),
        || {
            (!established(&frr, w0.ip) && !routes(&frr).iter().any(|(p, _)| p == w0.pod_cidr))
                .then_some(())
        },
        logs,
    );
    assert!(
        established(&frr, NODES[0].ip) && established(&frr, NODES[1].ip),
        "{}",
        logs()
    );
    assert!(
        agents[2].log().contains("no longer selected"),
        "{}",
        agents[2].log()
    );

    // Restore.
    write_config(&ns.dir.join(w0.name), w0, true);
    wait_for(
        "k8s-w0 back: Established and its pod /24 again",
        Duration::from_secs(20),
        || (established(&frr, w0.ip) && has_route(&frr, w0.pod_cidr, w0.ip)).then_some(()),
        logs,
    );
}

#[test]
fn seed_lab_a_local_traffic_policy_is_advertised_only_from_endpoint_nodes() {
    if skips(&FRR_PROGRAMS) {
        return;
    }
    const LB: &str = "172.16.1.1/32";
    let ns = topology();
    let frr = Frr::start(&ns.name("r"), &ns.dir.join("frr"), "router", FRR_CONF);
    let [ctr, w1, w0] = &NODES;
    let agents: Vec<Agent> = NODES
        .iter()
        .map(|node| {
            let dir = ns.dir.join(node.name);
            write_config(&dir, node, true);
            write_file(&dir, "webpod.yaml", &lb_local_service());
            write_file(&dir, "endpoints.yaml", &endpoints_on(&[w1]));
            Agent::start(AGENT, &ns.name(node.ns), node.name, &dir, &ns.dir)
        })
        .collect();
    let logs = || {
        let mut text = format!("FRR routes: {:?}\n", routes(&frr));
        for (node, agent) in NODES.iter().zip(&agents) {
            text.push_str(&format!("--- {} log\n{}", node.name, agent.log()));
        }
        text
    };
    wait_for(
        "three sessions, the LB /32 from k8s-w1 alone",
        Duration::from_secs(30),
        || {
            let all_up = NODES.iter().all(|n| has_route(&frr, n.pod_cidr, n.ip));
            (all_up && next_hops(&frr, LB) == [w1.ip]).then_some(())
        },
        logs,
    );
    // Still so once everything has settled: the others never advertise it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(next_hops(&frr, LB), [w1.ip], "{}", logs());
    let advertised = agents[0].query(AGENT, &["routes", "advertised", "ipv4", "unicast"]);
    assert!(
        !advertised.contains(LB),
        "k8s-ctr has no endpoint: {advertised}"
    );
    // The agent's service table, as `cilium-dbg service list` prints it:
    // webpod's LB address and NodePort (the file fixes no cluster IP), with
    // k8s-w1's pod behind each.
    let services = agents[0].ask(AGENT, &["service", "list"]);
    let rows: Vec<String> = services
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        [
            "ID Frontend Service Type Backend",
            "1 172.16.1.1:80/TCP LoadBalancer 1 => 172.20.1.10:80/TCP (active)",
            "2 0.0.0.0:30285/TCP NodePort 1 => 172.20.1.10:80/TCP (active)",
        ],
        "{services}"
    );

    // The endpoints move to k8s-ctr and k8s-w0: so do the advertisements.
    for node in &NODES {
        write_file(
            &ns.dir.join(node.name),
            "endpoints.yaml",
            &endpoints_on(&[ctr, w0]),
        );
    }
    wait_for(
        "the LB /32 from k8s-ctr and k8s-w0, no longer from k8s-w1",
        Duration::from_secs(20),
        || {
            let mut want = vec![ctr.ip.to_string(), w0.ip.to_string()];
            want.sort();
            (next_hops(&frr, LB) == want).then_some(())
        },
        logs,
    );
    let advertised = agents[0].query(AGENT, &["routes", "advertised", "ipv4", "unicast"]);
    assert!(advertised.contains(LB), "{advertised}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
