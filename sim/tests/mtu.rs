//! Path MTU in a lab: a router whose far interface takes 1400 bytes answers
//! DF packets with "fragmentation needed"; the sender learns the path MTU
//! (ping, `ip route get`'s cache, tracepath).

use std::path::{Path, PathBuf};

use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use nexthop_sim::run;

fn lab_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/labs")
        .join(name)
}

#[test]
fn a_narrow_link_is_learnt_as_the_path_mtu() {
    let dir = std::env::temp_dir().join(format!("nexthop-sim-mtu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("k8s")).expect("temp dir");
    let src = lab_dir("native-routing-no-adr");
    for f in ["values.yaml", "k8s/00-nodes.yaml", "k8s/10-apps.yaml"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    let topology = std::fs::read_to_string(src.join("topology.yaml")).expect("read");
    let narrow = topology.replace(
        "eth2: { ipv4: 192.168.20.200/24 }",
        "eth2: { ipv4: 192.168.20.200/24, mtu: 1400 }",
    );
    assert_ne!(narrow, topology, "the router's eth2 is in the topology");
    std::fs::write(dir.join("topology.yaml"), narrow).expect("write");
    std::fs::write(
        dir.join("scenario.yaml"),
        "steps:
  - converge: 1s
  - ping: k8s-ctr 192.168.20.100 --count 2 -M do -s 1472
    expect:
      received: 0
      contains:
        - From 192.168.10.200 icmp_seq=0 Frag needed and DF set (mtu = 1400)
        - 'ping: local error: message too long, mtu=1400'
  - show: route-get k8s-ctr 192.168.20.100
    expect: { contains: ['cache expires {n}sec mtu 1400'] }
  - ping: k8s-ctr 192.168.20.100 --count 1 -M do -s 1372
    expect: { received: 1 }
  - tracepath: k8s-ctr 192.168.20.100
    expect: { contains: ['1?: [LOCALHOST] pmtu 1400', 'Resume: pmtu 1400 hops 2 back 2'] }
  - wait: 600s
  - name: forgotten after ten minutes, the path MTU is found again hop by hop
    tracepath: k8s-ctr 192.168.20.100
    expect:
      contains:
        - '1?: [LOCALHOST] pmtu 1500'
        - '2: 192.168.10.200 {*}ms pmtu 1400'
        - 'Resume: pmtu 1400 hops 2 back 2'
",
    )
    .expect("write");
    let lab = Lab::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut cluster = Cluster::build(lab, EngineConfig::new(1)).expect("builds");
    let report = run::run(&mut cluster, 1);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert!(report.passed(), "{}", report.render());
}
