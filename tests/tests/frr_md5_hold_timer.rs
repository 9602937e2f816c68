//! TCP MD5 and the hold timer against real FRR 8.4.4: a node with the right
//! password reaches Established, a node with a wrong one never does and its
//! agent says why; freezing bgpd (SIGSTOP) makes our session drop within the
//! hold time with NOTIFICATION 4/0 and a log line.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use nexthop_testkit::{FRR_PROGRAMS, Frr, Namespaces, skips, wait_for};
use nexthop_tests::Agent;

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

const FRR_CONF: &str = "frr defaults traditional
!
router bgp 65000
 bgp router-id 192.168.10.200
 no bgp ebgp-requires-policy
 neighbor 192.168.10.100 remote-as 65001
 neighbor 192.168.10.100 password s3cr3t
 neighbor 192.168.10.101 remote-as 65001
 neighbor 192.168.10.101 password s3cr3t
!
";

fn config(node: &str, ip: &str, password_b64: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Node
metadata: {{name: {node}, labels: {{enable-bgp: "true"}}}}
spec: {{podCIDRs: [172.20.9.0/24]}}
status: {{addresses: [{{type: InternalIP, address: {ip}}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bgp-auth, namespace: kube-system}}
data: {{password: {password_b64}}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {{name: md5}}
spec:
  authSecretRef: bgp-auth
  timers: {{holdTimeSeconds: 9, keepAliveTimeSeconds: 3, connectRetryTimeSeconds: 2}}
  families: [{{afi: ipv4, safi: unicast}}]
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {{name: bgp}}
spec:
  nodeSelector: {{matchLabels: {{enable-bgp: "true"}}}}
  bgpInstances:
  - name: instance-65001
    localASN: 65001
    peers: [{{name: tor, peerASN: 65000, peerAddress: 192.168.10.200, peerConfigRef: {{name: md5}}}}]
"#
    )
}

fn state(frr: &Frr, ip: &str) -> String {
    let summary = frr.json("show bgp ipv4 unicast summary json");
    summary["peers"][ip]["state"]
        .as_str()
        .unwrap_or("?")
        .to_string()
}

fn our_state(agent: &Agent) -> String {
    agent
        .peers_json(AGENT)
        .and_then(|p| p[0]["state"].as_str().map(String::from))
        .unwrap_or_default()
}

#[test]
fn md5_right_key_establishes_wrong_key_never_and_hold_timer_expires() {
    if skips(&FRR_PROGRAMS) {
        return;
    }
    let ns = Namespaces::new(&["r", "good", "bad"]);
    ns.exec("r", &["ip", "link", "add", "eth1", "type", "bridge"]);
    ns.exec("r", &["ip", "link", "set", "eth1", "up"]);
    ns.exec(
        "r",
        &["ip", "addr", "add", "192.168.10.200/24", "dev", "eth1"],
    );
    for (node, ip) in [("good", "192.168.10.100"), ("bad", "192.168.10.101")] {
        ns.veth(node, "eth1", "r", &format!("p-{node}"));
        ns.exec(
            "r",
            &["ip", "link", "set", &format!("p-{node}"), "master", "eth1"],
        );
        ns.exec(
            node,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth1"],
        );
        ns.wait_carrier(node, &["eth1"]);
    }
    ns.wait_carrier("r", &["eth1"]);
    let frr = Frr::start(&ns.name("r"), &ns.dir.join("frr"), "router", FRR_CONF);
    let start = |node: &str, ip: &str, password_b64: &str| {
        let dir = ns.dir.join(node);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("bgp.yaml"), config(node, ip, password_b64)).unwrap();
        Agent::start(AGENT, &ns.name(node), node, &dir, &ns.dir)
    };
    // "s3cr3t" and "wrong!" in base64.
    let good = start("good", "192.168.10.100", "czNjcjN0");
    let bad = start("bad", "192.168.10.101", "d3Jvbmch");
    let logs = || {
        format!(
            "FRR: good {} bad {}\n--- good\n{}--- bad\n{}",
            state(&frr, "192.168.10.100"),
            state(&frr, "192.168.10.101"),
            good.log(),
            bad.log()
        )
    };

    wait_for(
        "the right password to establish",
        Duration::from_secs(20),
        || {
            (state(&frr, "192.168.10.100") == "Established" && our_state(&good) == "established")
                .then_some(())
        },
        logs,
    );
    wait_for(
        "the wrong-password agent to say why it cannot connect",
        Duration::from_secs(15),
        || {
            bad.log()
                .contains("TCP MD5 signature mismatch or no key")
                .then_some(())
        },
        logs,
    );
    assert_ne!(state(&frr, "192.168.10.101"), "Established", "{}", logs());
    assert_ne!(our_state(&bad), "established", "{}", logs());

    // Freeze bgpd: no more KEEPALIVEs; our 9 s hold timer must fire.
    let pid = frr.bgpd_pid();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let frozen = Instant::now();
    wait_for(
        "the hold timer to expire",
        Duration::from_secs(14),
        || {
            good.log()
                .contains("NOTIFICATION sent: 4/0 Hold Timer Expired")
                .then_some(())
        },
        logs,
    );
    let waited = frozen.elapsed();
    assert!(
        waited <= Duration::from_secs(13),
        "hold timer fired after {waited:?}"
    );
    assert_ne!(our_state(&good), "established", "{}", logs());
    assert!(
        good.log().contains("BGP session state established -> idle"),
        "{}",
        logs()
    );
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
}
