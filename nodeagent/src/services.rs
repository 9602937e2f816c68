//! The node's service table: router-core's frontends and backends for this
//! node from the cluster's objects (`router_core::service::frontend::node_table`,
//! as the simulator's nodes derive theirs), with the load-balancing settings
//! of Cilium's `--bpf-lb-*` flags ([`Options`]; Cilium's defaults: random
//! selection, Maglev M = 16381) and NodePorts from 30000–32767.
//!
//! NodePorts a Service does not fix are allocated by router-core from
//! [`NODE_PORT_SEED`]: the same on every agent, so all nodes agree. (On a
//! cluster with an API server, Kubernetes fixes every NodePort.) With
//! `--kube-proxy-replacement` the XDP datapath serves what [`served`]
//! returns (`crate::offload`); `service list` prints the table either way.

use std::path::Path;

use ipnet::Ipv4Net;
use router_core::cilium::Objects;
use router_core::datapath::pipeline::TunnelConfig;
use router_core::service::datapath::{self, Algorithm, Mode};
use router_core::service::frontend;
use router_core::service::maglev;
use router_core::service::masquerade::{self, Masquerade};
use router_core::service::nodeport::{self, PortRange};
use router_core::service::table::ServiceTable;

/// The seed NodePorts are allocated from when a Service does not fix one.
pub const NODE_PORT_SEED: u64 = 0;

/// How new flows pick their backends (Cilium's `--bpf-lb-algorithm`,
/// `--bpf-lb-mode`, `--bpf-lb-maglev-table-size`, `--bpf-lb-maglev-hash-seed`),
/// and which pod traffic is masqueraded (`--enable-bpf-masquerade`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `random` or `maglev`.
    pub algorithm: Algorithm,
    /// `snat`, `dsr` or `hybrid` (DSR dispatched in Geneve).
    pub mode: Mode,
    /// The Maglev table size and seeds.
    pub maglev: maglev::Config,
    /// Masquerading of pods' traffic leaving the node (`None`: off).
    pub masquerade: Option<masquerade::Settings>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            algorithm: Algorithm::Random,
            mode: Mode::Snat,
            maglev: maglev::Config::default(),
            masquerade: None,
        }
    }
}

/// What the node's datapath serves: its settings and its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The settings, with the node's InternalIP as the SNAT address.
    pub config: datapath::Config,
    /// The frontends and backends.
    pub table: ServiceTable,
    /// The node's tunnel endpoint for DSR's Geneve dispatch (modes `dsr`
    /// and `hybrid`), at its InternalIP.
    pub tunnel: Option<TunnelConfig>,
    /// Its pods' traffic leaving the cluster is masqueraded to its
    /// InternalIP as this says.
    pub masquerade: Option<Masquerade>,
}

/// `node`'s service table and what could not be served, each problem named
/// after its service.
pub fn table(objects: &Objects, node: &str, options: &Options) -> (ServiceTable, Vec<String>) {
    let (node_ports, port_problems) =
        nodeport::allocate(objects, PortRange::DEFAULT, NODE_PORT_SEED);
    let (table, problems) = frontend::node_table(objects, node, &node_ports, &options.maglev);
    let problems = port_problems
        .iter()
        .map(ToString::to_string)
        .chain(problems.iter().map(ToString::to_string))
        .collect();
    (table, problems)
}

/// What `node`'s datapath serves for `table`: outside traffic to a backend
/// on another node is source-NATed to the node's first IPv4 InternalIP, or
/// (`dsr`, `hybrid`) dispatched in Geneve from it, and pods' traffic
/// leaving the cluster masqueraded to it, as the simulator's nodes in
/// native routing do.
pub fn served(objects: &Objects, node: &str, options: &Options, table: ServiceTable) -> Served {
    let internal = objects.nodes.get(node).and_then(|n| n.internal_ipv4());
    let config = datapath::Config {
        algorithm: options.algorithm,
        mode: options.mode,
        maglev: options.maglev,
        snat_v4: internal,
        ..datapath::Config::default()
    };
    let tunnel = internal.and_then(|local| TunnelConfig::for_node(local, false, options.mode));
    let masquerade = (options.masquerade.as_ref())
        .and_then(|settings| Masquerade::for_objects(objects, node, settings));
    Served {
        config,
        table,
        tunnel,
        masquerade,
    }
}

/// ip-masq-agent's configuration file, as Cilium reads it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IpMasqAgentConfig {
    #[serde(rename = "nonMasqueradeCIDRs", default)]
    non_masquerade_cidrs: Vec<Ipv4Net>,
}

/// The `nonMasqueradeCIDRs` of ip-masq-agent's configuration at `path`
/// (YAML, or JSON, which is YAML too); an unreadable file or a bad entry is
/// an error naming the file.
pub fn non_masquerade_cidrs(path: &Path) -> Result<Vec<Ipv4Net>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--ip-masq-agent-config-path {}: {e}", path.display()))?;
    let config: IpMasqAgentConfig = serde_norway::from_str(&text)
        .map_err(|e| format!("--ip-masq-agent-config-path {}: {e}", path.display()))?;
    Ok(config.non_masquerade_cidrs)
}
