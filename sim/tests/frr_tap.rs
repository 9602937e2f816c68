//! The bgp lab with its ToR replaced by real FRR 8.4.4 (issue 6, item 7): FRR
//! runs in a network namespace whose two tap devices are bridged onto the lab's
//! `upper` and `lower` switches (`--tap upper:frr=… --tap lower:frr=…`, real
//! time), and must learn the three simulated nodes' pod CIDRs over BGP with the
//! right next hops — the multihop session of k8s-w0 included.
//!
//! Needs root, FRR (zebra, bgpd, vtysh) and /dev/net/tun; prints why it skips
//! otherwise (scripts/test-all.sh installs FRR). Traffic stays inside the
//! namespace and the taps.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nexthop_testkit::{Frr, Namespaces, Process, skip, skips, wait_for};

/// The seed's frr.conf (seeds_000_001_004.md #8) without the `network` of a
/// loopback this namespace does not have.
const FRR_CONF: &str = "frr defaults traditional
log syslog informational
!
router bgp 65000
  bgp router-id 192.168.10.200
  bgp graceful-restart
  no bgp ebgp-requires-policy
  bgp bestpath as-path multipath-relax
  maximum-paths 4
  neighbor CILIUM peer-group
  neighbor CILIUM remote-as external
  neighbor 192.168.10.100 peer-group CILIUM
  neighbor 192.168.10.101 peer-group CILIUM
  neighbor 192.168.20.100 peer-group CILIUM
!
";

#[test]
fn real_frr_learns_the_simulated_nodes_routes_through_taps() {
    if skips(&["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh", "ip"]) {
        return;
    }
    if !Path::new("/dev/net/tun").exists() {
        skip("no /dev/net/tun");
        return;
    }
    let ns = Namespaces::new(&["frr"]);
    let full = ns.name("frr");
    for (tap, addr) in [("tapu", "192.168.10.200/24"), ("tapl", "192.168.20.200/24")] {
        ns.exec("frr", &["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.exec("frr", &["ip", "addr", "add", addr, "dev", tap]);
        ns.exec("frr", &["ip", "link", "set", tap, "up"]);
    }
    ns.exec("frr", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let frr = Frr::start(&full, &ns.dir.join("frr"), "router", FRR_CONF);

    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/labs/bgp-real-frr");
    let log = std::fs::File::create(ns.dir.join("sim.log")).expect("log file");
    let _sim = Process(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &full,
                env!("CARGO_BIN_EXE_nexthop-sim"),
                "run",
            ])
            .args(["--tap", "upper:frr=tapu", "--tap", "lower:frr=tapl"])
            .arg(&lab)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("nexthop-sim starts"),
    );

    let want = [
        ("172.20.0.0/24", "192.168.10.100"),
        ("172.20.1.0/24", "192.168.10.101"),
        ("172.20.2.0/24", "192.168.20.100"),
    ];
    let sim_log = ns.dir.join("sim.log");
    wait_for(
        "FRR to learn the three pod CIDRs from the simulated nodes",
        Duration::from_secs(40),
        || {
            let rib = frr.json("show bgp ipv4 unicast json");
            want.iter()
                .all(|(prefix, nexthop)| {
                    rib["routes"][*prefix].as_array().is_some_and(|paths| {
                        paths
                            .iter()
                            .any(|p| p["nexthops"][0]["ip"] == *nexthop && p["path"] == "65001")
                    })
                })
                .then_some(())
        },
        || {
            format!(
                "FRR: {}
simulator:
{}
bgpd.log:
{}",
                frr.json("show bgp ipv4 unicast json"),
                std::fs::read_to_string(&sim_log).unwrap_or_default(),
                frr.bgpd_log()
            )
        },
    );
    let summary = frr.json("show bgp ipv4 unicast summary json");
    for peer in ["192.168.10.100", "192.168.10.101", "192.168.20.100"] {
        assert_eq!(summary["peers"][peer]["state"], "Established", "{summary}");
    }
}
