//! The topology file (`topology.yaml`), in the style of containerlab.
//!
//! ```yaml
//! name: native-routing
//! defaults: { latency: 100us, mtu: 1500 }
//! nodes:
//!   k8s-ctr:
//!     kind: k8s-node
//!     interfaces:
//!       eth1: { ipv4: 192.168.10.100/24 }
//!     routes:
//!       - { dst: 192.168.20.0/24, via: 192.168.10.200 }
//!   router:
//!     kind: router
//!     frr: frr.conf                # optional: run FRR's `router bgp` from this file
//!     serve-http: [80]             # optional: whoami on these TCP ports
//!     interfaces:
//!       eth1: { ipv4: 192.168.10.200/24 }
//!       loop1: { ipv4: 10.10.1.200/24, loopback: true }
//!   upper: { kind: bridge }
//! links:
//!   - endpoints: ["k8s-ctr:eth1", "upper:p1"]
//!   - endpoints: ["router:eth1", "upper:p2"]
//! ```
//! A link between two hosts is a point-to-point segment; every `bridge` node is
//! one learning switch whatever its port names. Unknown keys are errors. This
//! module only reads and checks the file; [`crate::cluster`] builds from it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

use super::duration::Dur;
use super::error::LabError;

/// What a topology node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A Kubernetes node running the Cilium-style agent (forwards; hosts pods).
    K8sNode,
    /// An IP router (forwards between its ports).
    Router,
    /// An external host (does not forward).
    External,
    /// A learning switch (an L2 segment).
    Bridge,
}

/// One interface of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    /// IPv4 address with prefix length.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address with prefix length.
    pub ipv6: Option<Ipv6Net>,
    /// MTU (default from `defaults.mtu`).
    pub mtu: Option<u16>,
    /// A loopback-like interface: addressed, never linked.
    #[serde(default)]
    pub loopback: bool,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: IpNet,
    /// Gateway (on a connected subnet).
    pub via: Option<IpAddr>,
    /// Interface, for on-link routes or to pin the gateway's interface.
    pub dev: Option<String>,
    /// Metric.
    #[serde(default)]
    pub metric: u32,
}

/// One topology node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeSpec {
    /// What it is.
    pub kind: NodeKind,
    /// Interfaces by name.
    #[serde(default)]
    pub interfaces: BTreeMap<String, InterfaceSpec>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Linux `fib_multipath_hash_policy` (0: L3, 1: L4).
    #[serde(default)]
    pub multipath_hash_policy: u8,
    /// A router's FRR configuration file, relative to the lab directory.
    pub frr: Option<String>,
    /// A k8s-node installs the routes its BGP peers send (Cilium does not).
    #[serde(default)]
    pub import_bgp_routes: bool,
    /// TCP ports a router or external host serves `whoami` on (a web
    /// server outside the cluster, which shows who reached it).
    #[serde(default)]
    pub serve_http: Vec<u16>,
}

/// A link between two endpoints `node:interface`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The two ends.
    pub endpoints: [String; 2],
    /// One-way latency (default from `defaults`).
    pub latency: Option<Dur>,
    /// Loss probability 0..1.
    pub loss: Option<f64>,
    /// MTU of the link (default from `defaults`).
    pub mtu: Option<u16>,
}

/// The smallest MTU an interface or link may have: IPv4's 68 octets
/// (RFC 791).
pub const MIN_MTU: u16 = 68;

/// Defaults for links and interfaces.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// One-way latency of links.
    #[serde(default = "default_latency")]
    pub latency: Dur,
    /// MTU of links and interfaces.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

fn default_latency() -> Dur {
    Dur(smoltcp::time::Duration::from_micros(100))
}

fn default_mtu() -> u16 {
    1500
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            latency: default_latency(),
            mtu: default_mtu(),
        }
    }
}

/// The whole topology file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Lab name.
    pub name: String,
    /// Link defaults.
    #[serde(default)]
    pub defaults: Defaults,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeSpec>,
    /// Links.
    #[serde(default)]
    pub links: Vec<LinkSpec>,
}

/// A parsed `node:interface` endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointRef {
    /// Node name.
    pub node: String,
    /// Interface name.
    pub interface: String,
}

impl EndpointRef {
    /// Parse `node:interface`.
    pub fn parse(s: &str) -> Option<Self> {
        let (node, interface) = s.split_once(':')?;
        (!node.is_empty() && !interface.is_empty()).then(|| EndpointRef {
            node: node.to_string(),
            interface: interface.to_string(),
        })
    }
}

impl Topology {
    /// Parse and check a topology file's text.
    pub fn parse(file: &Path, text: &str) -> Result<Self, LabError> {
        // Through a generic value first: it refuses a key given twice (a
        // map of nodes would keep the last one without a word).
        serde_norway::from_str::<serde_norway::Value>(text)
            .map_err(|e| LabError::yaml(file, &e))?;
        let topo: Topology = serde_norway::from_str(text).map_err(|e| LabError::yaml(file, &e))?;
        topo.check(file, text)?;
        Ok(topo)
    }

    fn check(&self, file: &Path, text: &str) -> Result<(), LabError> {
        let err = |key: String, needle: &str, msg: String| {
            LabError::at(file, text, key, Some(needle), msg)
        };
        let small_mtu = |mtu: Option<u16>| mtu.filter(|m| *m < MIN_MTU);
        if let Some(mtu) = small_mtu(Some(self.defaults.mtu)) {
            return Err(err(
                "defaults.mtu".into(),
                "mtu",
                format!("MTU {mtu} is below {MIN_MTU} (IPv4's minimum)"),
            ));
        }
        for (name, node) in &self.nodes {
            for (ifname, interface) in &node.interfaces {
                if let Some(mtu) = small_mtu(interface.mtu) {
                    return Err(err(
                        format!("nodes.{name}.interfaces.{ifname}.mtu"),
                        "mtu",
                        format!("MTU {mtu} is below {MIN_MTU} (IPv4's minimum)"),
                    ));
                }
            }
            if node.kind == NodeKind::Bridge
                && (!node.interfaces.is_empty() || !node.routes.is_empty())
            {
                return Err(err(
                    format!("nodes.{name}"),
                    name,
                    "a bridge has no interfaces or routes".into(),
                ));
            }
            if node.frr.is_some() && node.kind != NodeKind::Router {
                return Err(err(
                    format!("nodes.{name}.frr"),
                    "frr",
                    "only a router runs FRR".into(),
                ));
            }
            if node.import_bgp_routes && node.kind != NodeKind::K8sNode {
                return Err(err(
                    format!("nodes.{name}.import-bgp-routes"),
                    "import-bgp-routes",
                    "only a k8s-node runs Cilium's BGP control plane".into(),
                ));
            }
            if !node.serve_http.is_empty() && node.kind == NodeKind::Bridge {
                return Err(err(
                    format!("nodes.{name}.serve-http"),
                    "serve-http",
                    "a bridge has no address to serve on".into(),
                ));
            }
            if node.multipath_hash_policy > 1 {
                return Err(err(
                    format!("nodes.{name}.multipath-hash-policy"),
                    "multipath-hash-policy",
                    "must be 0 (L3) or 1 (L4)".into(),
                ));
            }
            for (i, r) in node.routes.iter().enumerate() {
                if let Some(j) = node.routes[..i].iter().position(|o| o.dst == r.dst) {
                    return Err(err(
                        format!("nodes.{name}.routes[{i}]"),
                        &r.dst.to_string(),
                        format!(
                            "{} is already routed by routes[{j}]: one route per prefix (the simulator keeps one per protocol, a second metric does not add a backup)",
                            r.dst
                        ),
                    ));
                }
                if r.via.is_none() && r.dev.is_none() {
                    return Err(err(
                        format!("nodes.{name}.routes[{i}]"),
                        &r.dst.to_string(),
                        "a route needs `via` or `dev`".into(),
                    ));
                }
                if let Some(dev) = &r.dev
                    && !node.interfaces.contains_key(dev)
                {
                    return Err(err(
                        format!("nodes.{name}.routes[{i}].dev"),
                        dev,
                        format!("{name} has no interface {dev:?}"),
                    ));
                }
            }
        }
        let mut used = BTreeMap::new();
        for (i, link) in self.links.iter().enumerate() {
            if let Some(mtu) = small_mtu(link.mtu) {
                return Err(err(
                    format!("links[{i}].mtu"),
                    "mtu",
                    format!("MTU {mtu} is below {MIN_MTU} (IPv4's minimum)"),
                ));
            }
            let bridges = link
                .endpoints
                .iter()
                .filter_map(|e| EndpointRef::parse(e))
                .filter(|e| {
                    self.nodes
                        .get(&e.node)
                        .is_some_and(|n| n.kind == NodeKind::Bridge)
                })
                .count();
            if bridges == 2 {
                return Err(err(
                    format!("links[{i}].endpoints"),
                    &link.endpoints[0],
                    "a link between two bridges (or a bridge and itself) would carry no frames: join hosts to one bridge instead".into(),
                ));
            }
            if let Some(loss) = link.loss
                && !(0.0..=1.0).contains(&loss)
            {
                return Err(err(
                    format!("links[{i}].loss"),
                    "loss",
                    format!("{loss} is not a probability in 0..1"),
                ));
            }
            for (j, end) in link.endpoints.iter().enumerate() {
                let key = format!("links[{i}].endpoints[{j}]");
                let Some(ep) = EndpointRef::parse(end) else {
                    return Err(err(key, end, format!("{end:?} is not node:interface")));
                };
                let Some(node) = self.nodes.get(&ep.node) else {
                    return Err(err(key, end, format!("no node named {:?}", ep.node)));
                };
                if node.kind != NodeKind::Bridge {
                    match node.interfaces.get(&ep.interface) {
                        None => {
                            return Err(err(
                                key,
                                end,
                                format!("{} has no interface {:?}", ep.node, ep.interface),
                            ));
                        }
                        Some(i) if i.loopback => {
                            return Err(err(
                                key,
                                end,
                                "a loopback interface cannot be linked".into(),
                            ));
                        }
                        Some(_) => {}
                    }
                }
                if let Some(first) = used.insert(ep.clone(), i) {
                    return Err(err(
                        key,
                        end,
                        format!("{end} is already used by links[{first}]"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: t
nodes:
  a:
    kind: router
    interfaces:
      eth1: { ipv4: 192.168.10.1/24 }
  b:
    kind: external
    interfaces:
      eth0: { ipv4: 192.168.10.2/24 }
    routes:
      - { dst: 0.0.0.0/0, via: 192.168.10.1 }
  sw: { kind: bridge }
links:
  - endpoints: ["a:eth1", "sw:p1"]
  - endpoints: ["b:eth0", "sw:p2"]
"#;

    fn parse(text: &str) -> Result<Topology, LabError> {
        Topology::parse(Path::new("topology.yaml"), text)
    }

    #[test]
    fn parses_a_small_lab() {
        let t = parse(GOOD).unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.links.len(), 2);
        assert_eq!(t.defaults.mtu, 1500);
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let bad = GOOD.replace("kind: external", "kind: external\n    colour: blue");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.line, Some(10));
        assert!(e.to_string().starts_with("topology.yaml:10:"), "{e}");
        assert!(e.message.contains("colour"), "{e}");
    }

    #[test]
    fn bad_values_and_references_are_named() {
        let e = parse(&GOOD.replace("192.168.10.2/24", "192.168.10.300/24")).unwrap_err();
        assert_eq!(e.line, Some(11), "{e}");
        let e = parse(&GOOD.replace("\"b:eth0\"", "\"c:eth0\"")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("links[1].endpoints[0]"));
        assert_eq!(e.line, Some(17));
        assert!(e.message.contains("no node named \"c\""));
        let e = parse(&GOOD.replace("\"b:eth0\"", "\"b:eth9\"")).unwrap_err();
        assert!(e.message.contains("no interface"), "{e}");
        let e = parse(&GOOD.replace("\"sw:p2\"", "\"sw:p1\"")).unwrap_err();
        assert!(e.message.contains("already used"), "{e}");
        let path = Path::new("topology.yaml");
        let twice = "name: t\nnodes:\n  a:\n    kind: router\n    interfaces:\n      eth0: {ipv4: 10.0.0.1/24}\n    routes:\n      - {dst: 10.9.0.0/16, via: 10.0.0.2}\n      - {dst: 10.9.0.0/16, via: 10.0.0.3, metric: 100}\nlinks: []\n";
        let e = Topology::parse(path, twice).unwrap_err().to_string();
        assert!(
            e.contains("nodes.a.routes[1]") && e.contains("already routed by routes[0]"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_nodes_bridge_to_bridge_links_and_tiny_mtus_are_refused() {
        let path = Path::new("topology.yaml");
        let twice = "name: t\nnodes:\n  a: {kind: external}\n  a: {kind: router}\nlinks: []\n";
        let e = Topology::parse(path, twice).unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
        let bridges = "name: t\nnodes:\n  s1: {kind: bridge}\n  s2: {kind: bridge}\nlinks:\n  - endpoints: [\"s1:p1\", \"s2:p1\"]\n";
        let e = Topology::parse(path, bridges).unwrap_err().to_string();
        assert!(
            e.contains("links[0].endpoints") && e.contains("two bridges"),
            "{e}"
        );
        let mtu = "name: t\nnodes:\n  a:\n    kind: external\n    interfaces:\n      eth0: {ipv4: 10.0.0.1/24, mtu: 0}\nlinks: []\n";
        let e = Topology::parse(path, mtu).unwrap_err().to_string();
        assert!(
            e.contains("topology.yaml:6")
                && e.contains("nodes.a.interfaces.eth0.mtu: MTU 0 is below 68"),
            "{e}"
        );
    }
}
