//! The design under test, as its operators would write it down: the bundled
//! `bgp-dsr` lab (three Cilium nodes announcing one LoadBalancer address to
//! an FRR ToR over BGP with a 9 s hold time, ECMP over the three) and the
//! promise they make about it — losing one node's uplink costs at most the
//! hold time plus a second before the ToR stops sending to that node, and
//! the address is served through every node again once the uplink is back
//! and BGP has reconnected. `tests/failover.rs` checks the promise for every
//! node and every moment, and after any fault schedule.

use std::net::IpAddr;
use std::path::PathBuf;

use nexthop_sim::kit::Sim;
use nexthop_sim::paths::End;

/// The lab directory.
pub fn lab() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../labs/bgp-dsr")
}

/// The nodes announcing the address, each with its uplink.
pub const NODES: [(&str, &str); 3] = [("k8s-ctr", "eth1"), ("k8s-w0", "eth1"), ("k8s-w1", "eth1")];

/// The LoadBalancer address.
pub fn lb() -> IpAddr {
    "172.16.1.1".parse().expect("an address")
}

/// The promise's bound on failover: BGP's hold time (9 s), the
/// graceful-restart time (15 s, `CiliumBGPPeerConfig`), plus a second.
pub const FAILOVER_SECONDS: u64 = 9 + 15 + 1;

/// The nodes the ToR sends the address to now, if every way it sends it
/// ends at a node that serves it; `Err` with the paths otherwise.
pub fn serving_nodes(sim: &Sim) -> Result<Vec<String>, String> {
    let paths = sim.paths("router", lb());
    if paths.is_empty() || paths.iter().any(|p| p.end != End::Served) {
        return Err(format!("the router's paths to {}: {paths:?}", lb()));
    }
    let mut nodes: Vec<String> = paths
        .iter()
        .filter_map(|p| p.hosts.last().cloned())
        .collect();
    nodes.sort();
    nodes.dedup();
    Ok(nodes)
}
