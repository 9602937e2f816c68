//! The node's service table: router-core's frontends and backends for this
//! node from the cluster's objects (`router_core::service::frontend::node_table`,
//! as the simulator's nodes derive theirs), with Cilium's defaults (random
//! selection, Maglev M = 16381, NodePorts 30000–32767).
//!
//! NodePorts a Service does not fix are allocated by router-core from
//! [`NODE_PORT_SEED`]: the same on every agent, so all nodes agree. (On a
//! cluster with an API server, Kubernetes fixes every NodePort.) The
//! datapath that serves the table is not on the agent yet; the table is
//! what `service list` prints.

use router_core::cilium::Objects;
use router_core::service::frontend;
use router_core::service::maglev;
use router_core::service::nodeport::{self, PortRange};
use router_core::service::table::ServiceTable;

/// The seed NodePorts are allocated from when a Service does not fix one.
pub const NODE_PORT_SEED: u64 = 0;

/// `node`'s service table and what could not be served, each problem named
/// after its service.
pub fn table(objects: &Objects, node: &str) -> (ServiceTable, Vec<String>) {
    let (node_ports, port_problems) =
        nodeport::allocate(objects, PortRange::DEFAULT, NODE_PORT_SEED);
    let (table, problems) =
        frontend::node_table(objects, node, &node_ports, &maglev::Config::default());
    let problems = port_problems
        .iter()
        .map(ToString::to_string)
        .chain(problems.iter().map(ToString::to_string))
        .collect();
    (table, problems)
}
