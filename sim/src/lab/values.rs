//! Cilium's Helm values (`values.yaml`): the settings that shape the datapath.
//!
//! Read in the same form as `helm install cilium --values values.yaml`. The
//! keys below are honoured; every other key of Cilium's chart is accepted and
//! listed as ignored in the run report, so a real values file can be reused.
//! A honoured key with a bad value is an error naming file, line and key.

use std::path::Path;

use ipnet::Ipv4Net;
use router_core::lease::Timings;
use router_core::service::datapath::{Algorithm, Mode};
use router_core::service::maglev;
use router_core::service::masquerade;
use router_core::service::nodeport::PortRange;
use serde::Deserialize;

use super::duration::Dur;
use super::error::LabError;

/// How pod traffic crosses nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// Routed natively by the underlay.
    Native,
    /// Encapsulated between nodes (Cilium's default).
    #[default]
    Tunnel,
}

/// The encapsulation of tunnel mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TunnelProtocol {
    /// VXLAN on UDP 8472.
    #[default]
    Vxlan,
    /// Geneve on UDP 6081.
    Geneve,
}

/// `ipam.operator`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamOperator {
    /// `clusterPoolIPv4PodCIDRList`.
    #[serde(rename = "clusterPoolIPv4PodCIDRList", default = "default_pool")]
    pub cluster_pool_ipv4_pod_cidr_list: Vec<Ipv4Net>,
    /// `clusterPoolIPv4MaskSize`.
    #[serde(rename = "clusterPoolIPv4MaskSize", default = "default_mask")]
    pub cluster_pool_ipv4_mask_size: u8,
}

fn default_pool() -> Vec<Ipv4Net> {
    vec!["10.0.0.0/8".parse().expect("valid")]
}

fn default_mask() -> u8 {
    24
}

impl Default for IpamOperator {
    fn default() -> Self {
        IpamOperator {
            cluster_pool_ipv4_pod_cidr_list: default_pool(),
            cluster_pool_ipv4_mask_size: default_mask(),
        }
    }
}

/// `ipam`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ipam {
    /// Only `cluster-pool` is simulated.
    #[serde(default = "default_ipam_mode")]
    pub mode: String,
    /// Operator settings.
    #[serde(default)]
    pub operator: IpamOperator,
}

fn default_ipam_mode() -> String {
    "cluster-pool".into()
}

impl Default for Ipam {
    fn default() -> Self {
        Ipam {
            mode: default_ipam_mode(),
            operator: IpamOperator::default(),
        }
    }
}

/// `bgpControlPlane`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpControlPlane {
    /// `bgpControlPlane.statusReport`.
    #[serde(default)]
    pub status_report: StatusReport,
}

/// `bgpControlPlane.statusReport`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusReport {
    /// `enabled` (default true): nodes report CiliumBGPNodeConfig status.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

impl Default for StatusReport {
    fn default() -> Self {
        StatusReport { enabled: true }
    }
}

/// `l2announcements`: L2 announcements and their leases (Cilium's defaults
/// 15 s, 5 s, 2 s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2Announcements {
    /// `enabled` (default false).
    #[serde(default)]
    pub enabled: bool,
    /// `leaseDuration`.
    #[serde(default = "lease_duration")]
    pub lease_duration: Dur,
    /// `leaseRenewDeadline`.
    #[serde(default = "lease_renew_deadline")]
    pub lease_renew_deadline: Dur,
    /// `leaseRetryPeriod`.
    #[serde(default = "lease_retry_period")]
    pub lease_retry_period: Dur,
}

fn lease_duration() -> Dur {
    Dur(Timings::CILIUM.duration)
}

fn lease_renew_deadline() -> Dur {
    Dur(Timings::CILIUM.renew_deadline)
}

fn lease_retry_period() -> Dur {
    Dur(Timings::CILIUM.retry_period)
}

impl Default for L2Announcements {
    fn default() -> Self {
        L2Announcements {
            enabled: false,
            lease_duration: lease_duration(),
            lease_renew_deadline: lease_renew_deadline(),
            lease_retry_period: lease_retry_period(),
        }
    }
}

impl L2Announcements {
    /// The lease timings.
    pub fn timings(&self) -> Timings {
        Timings {
            duration: self.lease_duration.0,
            renew_deadline: self.lease_renew_deadline.0,
            retry_period: self.lease_retry_period.0,
        }
    }
}

/// `loadBalancer`: the service datapath's backend selection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// `algorithm`: `random` (default) or `maglev`.
    #[serde(default)]
    pub algorithm: Option<String>,
    /// `mode`: `snat` (default), `dsr` or `hybrid`.
    #[serde(default)]
    pub mode: Option<String>,
    /// `dsrDispatch`: how DSR reaches the backend's node; `geneve` is
    /// simulated (Cilium's default `opt` and `ipip` are not).
    #[serde(default)]
    pub dsr_dispatch: Option<String>,
}

/// `maglev`: the Maglev table's size and the cluster-wide hash seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    /// `tableSize` (default 16381, one of Cilium's primes).
    #[serde(default)]
    pub table_size: Option<u32>,
    /// `hashSeed` (base64 of 12 bytes; default Cilium's built-in seed).
    #[serde(default)]
    pub hash_seed: Option<String>,
}

/// `nodePort`: where NodePorts come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePort {
    /// `range`: `"FIRST,LAST"` (default 30000–32767).
    #[serde(default)]
    pub range: Option<String>,
}

/// `bpf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bpf {
    /// `masquerade`: masquerade in eBPF rather than with iptables (the same
    /// behaviour here).
    #[serde(default)]
    pub masquerade: bool,
}

/// `ipMasqAgent.config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpMasqAgentConfig {
    /// `nonMasqueradeCIDRs`.
    #[serde(rename = "nonMasqueradeCIDRs", default)]
    pub non_masquerade_cidrs: Vec<Ipv4Net>,
}

/// `ipMasqAgent`: destinations pods reach without masquerading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct IpMasqAgent {
    /// `enabled`.
    #[serde(default)]
    pub enabled: bool,
    /// `config`.
    #[serde(default)]
    pub config: IpMasqAgentConfig,
}

/// The honoured subset of Cilium's Helm values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Values {
    /// `ipam`.
    #[serde(default)]
    pub ipam: Ipam,
    /// `routingMode`.
    #[serde(default)]
    pub routing_mode: RoutingMode,
    /// `tunnelProtocol`.
    #[serde(default)]
    pub tunnel_protocol: TunnelProtocol,
    /// `autoDirectNodeRoutes`.
    #[serde(default)]
    pub auto_direct_node_routes: bool,
    /// `ipv4NativeRoutingCIDR`.
    #[serde(rename = "ipv4NativeRoutingCIDR")]
    pub ipv4_native_routing_cidr: Option<Ipv4Net>,
    /// `enableIPv4Masquerade` (on by default, as in Cilium's chart).
    #[serde(rename = "enableIPv4Masquerade", default = "enabled")]
    pub enable_ipv4_masquerade: bool,
    /// `bpf`.
    #[serde(default)]
    pub bpf: Bpf,
    /// `ipMasqAgent`.
    #[serde(default)]
    pub ip_masq_agent: IpMasqAgent,
    /// `bgpControlPlane`.
    #[serde(default)]
    pub bgp_control_plane: BgpControlPlane,
    /// `l2announcements`.
    #[serde(default)]
    pub l2announcements: L2Announcements,
    /// `loadBalancer`.
    #[serde(default)]
    pub load_balancer: LoadBalancer,
    /// `maglev`.
    #[serde(default)]
    pub maglev: Maglev,
    /// `nodePort`.
    #[serde(default)]
    pub node_port: NodePort,
    /// The service datapath's settings from the three above, checked.
    #[serde(skip)]
    pub services: ServiceValues,
    /// Keys present in the file that the simulator does not use, as dotted paths.
    #[serde(skip)]
    pub ignored: Vec<String>,
    /// The values as written (the file, then any `helm upgrade --set`s), for
    /// the next upgrade.
    #[serde(skip)]
    pub source: String,
}

impl Default for Values {
    fn default() -> Self {
        Values {
            ipam: Ipam::default(),
            routing_mode: RoutingMode::Tunnel,
            tunnel_protocol: TunnelProtocol::Vxlan,
            auto_direct_node_routes: false,
            ipv4_native_routing_cidr: None,
            enable_ipv4_masquerade: true,
            bpf: Bpf::default(),
            ip_masq_agent: IpMasqAgent::default(),
            bgp_control_plane: BgpControlPlane::default(),
            l2announcements: L2Announcements::default(),
            load_balancer: LoadBalancer::default(),
            maglev: Maglev::default(),
            node_port: NodePort::default(),
            services: ServiceValues::default(),
            ignored: Vec::new(),
            source: String::new(),
        }
    }
}

/// The dotted keys this module honours (everything else is reported as ignored).
const HONOURED: [&str; 23] = [
    "ipam.mode",
    "ipam.operator.clusterPoolIPv4PodCIDRList",
    "ipam.operator.clusterPoolIPv4MaskSize",
    "routingMode",
    "tunnelProtocol",
    "autoDirectNodeRoutes",
    "ipv4NativeRoutingCIDR",
    "enableIPv4Masquerade",
    "bpf.masquerade",
    "ipMasqAgent.enabled",
    "ipMasqAgent.config.nonMasqueradeCIDRs",
    "kubeProxyReplacement",
    "bgpControlPlane.statusReport.enabled",
    "l2announcements.enabled",
    "l2announcements.leaseDuration",
    "l2announcements.leaseRenewDeadline",
    "l2announcements.leaseRetryPeriod",
    "loadBalancer.algorithm",
    "loadBalancer.mode",
    "loadBalancer.dsrDispatch",
    "maglev.tableSize",
    "maglev.hashSeed",
    "nodePort.range",
];

/// The service datapath's settings: `loadBalancer.algorithm`,
/// `maglev.tableSize`, `maglev.hashSeed` and `nodePort.range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceValues {
    /// Backend selection.
    pub algorithm: Algorithm,
    /// SNAT, DSR or hybrid.
    pub mode: Mode,
    /// Maglev's table size and seeds.
    pub maglev: maglev::Config,
    /// NodePorts' range.
    pub node_ports: PortRange,
}

impl Default for ServiceValues {
    fn default() -> Self {
        ServiceValues {
            algorithm: Algorithm::Random,
            mode: Mode::Snat,
            maglev: maglev::Config::default(),
            node_ports: PortRange::DEFAULT,
        }
    }
}

impl Values {
    /// The routing mode, with `autoDirectNodeRoutes` and `tunnelProtocol`.
    pub fn routing(&self) -> router_core::cilium::routing::RoutingMode {
        use router_core::cilium::routing::RoutingMode as Mode;
        match self.routing_mode {
            RoutingMode::Native => Mode::Native {
                auto_direct_node_routes: self.auto_direct_node_routes,
            },
            RoutingMode::Tunnel => Mode::Tunnel(match self.tunnel_protocol {
                TunnelProtocol::Vxlan => router_core::fib::Encap::Vxlan,
                TunnelProtocol::Geneve => router_core::fib::Encap::Geneve,
            }),
        }
    }

    /// What masquerading the values ask for (`None`: off).
    pub fn masquerade(&self) -> Option<masquerade::Settings> {
        self.enable_ipv4_masquerade.then(|| masquerade::Settings {
            native_routing_cidr: self.ipv4_native_routing_cidr,
            non_masquerade: if self.ip_masq_agent.enabled {
                self.ip_masq_agent.config.non_masquerade_cidrs.clone()
            } else {
                Vec::new()
            },
            tunnel: self.routing_mode == RoutingMode::Tunnel,
        })
    }

    /// Parse a values file.
    pub fn parse(file: &Path, text: &str) -> Result<Self, LabError> {
        let raw: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| LabError::yaml(file, &e))?;
        let mut values: Values = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
            let key = e.path().to_string();
            let needle = key.rsplit('.').next().unwrap_or(&key).to_string();
            LabError::at(file, text, key, Some(&needle), e.inner().to_string())
        })?;
        let err = |key: &str, msg: String| {
            LabError::at(
                file,
                text,
                key,
                Some(key.rsplit('.').next().unwrap_or(key)),
                msg,
            )
        };
        if values.ipam.mode != "cluster-pool" {
            return Err(err(
                "ipam.mode",
                format!("{:?} is not simulated (cluster-pool)", values.ipam.mode),
            ));
        }
        let mask = values.ipam.operator.cluster_pool_ipv4_mask_size;
        for pool in &values.ipam.operator.cluster_pool_ipv4_pod_cidr_list {
            if mask < pool.prefix_len() || mask > 30 {
                return Err(err(
                    "ipam.operator.clusterPoolIPv4MaskSize",
                    format!("/{mask} does not fit in pool {pool} (and must be at most /30)"),
                ));
            }
        }
        values.services.algorithm = match values.load_balancer.algorithm.as_deref() {
            None => Algorithm::Random,
            Some(name) => Algorithm::from_name(name).ok_or_else(|| {
                err(
                    "loadBalancer.algorithm",
                    format!("{name:?} is neither random nor maglev"),
                )
            })?,
        };
        values.services.mode = match values.load_balancer.mode.as_deref() {
            None => Mode::Snat,
            Some(name) => Mode::from_name(name).ok_or_else(|| {
                err(
                    "loadBalancer.mode",
                    format!("{name:?} is not snat, dsr or hybrid"),
                )
            })?,
        };
        let dispatch = values.load_balancer.dsr_dispatch.as_deref();
        if values.services.mode != Mode::Snat && dispatch != Some("geneve") {
            return Err(err(
                "loadBalancer.dsrDispatch",
                format!(
                    "DSR dispatch {:?} is not simulated; set loadBalancer.dsrDispatch: geneve",
                    dispatch.unwrap_or("opt")
                ),
            ));
        }
        if values.routing_mode == RoutingMode::Native
            && values.enable_ipv4_masquerade
            && values.ipv4_native_routing_cidr.is_none()
        {
            return Err(err(
                "routingMode",
                "native routing with masquerading needs ipv4NativeRoutingCIDR \
                 (or enableIPv4Masquerade: false), as Cilium's agent refuses to start without it"
                    .to_string(),
            ));
        }
        let size = values
            .maglev
            .table_size
            .unwrap_or(maglev::DEFAULT_TABLE_SIZE);
        let seed = values
            .maglev
            .hash_seed
            .as_deref()
            .unwrap_or(maglev::DEFAULT_HASH_SEED);
        values.services.maglev = maglev::Config::new(size, seed).map_err(|e| {
            let key = match e {
                maglev::ConfigError::TableSize(_) => "maglev.tableSize",
                _ => "maglev.hashSeed",
            };
            err(key, e.to_string())
        })?;
        if let Some(range) = &values.node_port.range {
            values.services.node_ports = parse_range(range).ok_or_else(|| {
                err(
                    "nodePort.range",
                    format!("{range:?} is not FIRST,LAST with 1 <= FIRST <= LAST <= 65535"),
                )
            })?;
        }
        let mut keys = Vec::new();
        leaf_keys(&raw, String::new(), &mut keys);
        values.ignored = keys
            .into_iter()
            .filter(|k| !HONOURED.contains(&k.as_str()))
            .collect();
        values.source = text.to_string();
        Ok(values)
    }

    /// The agent's configuration these values give, as `cilium config
    /// view` lists it (its keys, sorted), for the keys the simulator honours.
    pub fn config_view(&self) -> Vec<(String, String)> {
        let on = |b: bool| b.to_string();
        let mut keys = vec![
            ("auto-direct-node-routes", on(self.auto_direct_node_routes)),
            (
                "bpf-lb-algorithm",
                self.services.algorithm.name().to_string(),
            ),
            ("bpf-lb-mode", self.services.mode.name().to_string()),
            ("enable-bpf-masquerade", on(self.bpf.masquerade)),
            ("enable-ipv4-masquerade", on(self.enable_ipv4_masquerade)),
            ("enable-l2-announcements", on(self.l2announcements.enabled)),
            ("ipam", self.ipam.mode.clone()),
            (
                "routing-mode",
                match self.routing_mode {
                    RoutingMode::Native => "native",
                    RoutingMode::Tunnel => "tunnel",
                }
                .to_string(),
            ),
            (
                "tunnel-protocol",
                match self.tunnel_protocol {
                    TunnelProtocol::Vxlan => "vxlan",
                    TunnelProtocol::Geneve => "geneve",
                }
                .to_string(),
            ),
            ("tunnel-source-port-range", "0-0".to_string()),
        ];
        if let Some(cidr) = self.ipv4_native_routing_cidr {
            keys.push(("ipv4-native-routing-cidr", cidr.to_string()));
        }
        keys.sort();
        keys.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// One key of [`Values::config_view`] (empty if it has none).
    pub fn config_view_value(&self, key: &str) -> String {
        self.config_view()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// These values with `sets` applied, as `helm upgrade --reuse-values
    /// --set KEY=VALUE` makes them (a value reads as YAML: `true`, `1450`,
    /// `tunnel`). A key the simulator honours but cannot change mid-run
    /// ([`UPGRADABLE`] lists those it can), or a bad value, is an error
    /// naming the `--set`.
    pub fn upgrade(&self, sets: &[(String, String)]) -> Result<Values, String> {
        let mut raw: serde_norway::Value = match serde_norway::from_str(&self.source) {
            Ok(serde_norway::Value::Mapping(m)) => serde_norway::Value::Mapping(m),
            _ => serde_norway::Value::Mapping(Default::default()),
        };
        for (key, value) in sets {
            let at = |m: String| format!("--set {key}={value}: {m}");
            if HONOURED.contains(&key.as_str()) && !UPGRADABLE.contains(&key.as_str()) {
                return Err(at(format!(
                    "changing {key} mid-run is not simulated (these are: {})",
                    UPGRADABLE.join(", ")
                )));
            }
            let scalar: serde_norway::Value =
                serde_norway::from_str(value).map_err(|e| at(e.to_string()))?;
            let mut node = &mut raw;
            for part in key.split('.') {
                let serde_norway::Value::Mapping(map) = node else {
                    return Err(at(format!("{part:?} is under a key that is not a map")));
                };
                node = map
                    .entry(serde_norway::Value::String(part.to_string()))
                    .or_insert(serde_norway::Value::Null);
                if node.is_null() {
                    *node = serde_norway::Value::Mapping(Default::default());
                }
            }
            *node = scalar;
        }
        let text = serde_norway::to_string(&raw).map_err(|e| e.to_string())?;
        Values::parse(Path::new("helm upgrade --set"), &text).map_err(|e| e.to_string())
    }
}

/// The keys `helm upgrade --set` may change mid-run: the nodes reconfigure
/// when the agents restart (`rollout restart ds/cilium`).
pub const UPGRADABLE: [&str; 9] = [
    "routingMode",
    "tunnelProtocol",
    "autoDirectNodeRoutes",
    "ipv4NativeRoutingCIDR",
    "enableIPv4Masquerade",
    "bpf.masquerade",
    "loadBalancer.algorithm",
    "loadBalancer.mode",
    "loadBalancer.dsrDispatch",
];

/// `"30000,32767"` (Cilium's `nodePort.range`; `-` is accepted too).
fn parse_range(range: &str) -> Option<PortRange> {
    let (first, last) = range.split_once([',', '-'])?;
    let (first, last) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    (first >= 1 && first <= last).then_some(PortRange { first, last })
}

fn leaf_keys(v: &serde_norway::Value, prefix: String, out: &mut Vec<String>) {
    match v {
        serde_norway::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                let path = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, path, out);
            }
        }
        _ if !prefix.is_empty() => out.push(prefix),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_000: &str = r#"
ipam:
  mode: cluster-pool
  operator:
    clusterPoolIPv4PodCIDRList: ["172.20.0.0/16"]
routingMode: native
autoDirectNodeRoutes: false
ipv4NativeRoutingCIDR: 172.20.0.0/16
kubeProxyReplacement: true
bgpControlPlane: { enabled: true }
hubble: { enabled: true, relay: { enabled: true } }
"#;

    #[test]
    fn reads_the_seed_install() {
        let v = Values::parse(Path::new("values.yaml"), SEED_000).unwrap();
        assert_eq!(v.routing_mode, RoutingMode::Native);
        assert!(!v.auto_direct_node_routes);
        assert_eq!(v.ipam.operator.cluster_pool_ipv4_mask_size, 24);
        assert_eq!(
            v.ignored,
            vec![
                "bgpControlPlane.enabled",
                "hubble.enabled",
                "hubble.relay.enabled"
            ]
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = Values::parse(
            Path::new("values.yaml"),
            &SEED_000.replace("routingMode: native", "routingMode: fast"),
        )
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("routingMode"));
        assert_eq!(e.line, Some(6));
        let e = Values::parse(
            Path::new("values.yaml"),
            &SEED_000.replace("172.20.0.0/16\"]", "172.20.0.0/33\"]"),
        )
        .unwrap_err();
        assert!(
            e.key
                .unwrap()
                .starts_with("ipam.operator.clusterPoolIPv4PodCIDRList")
        );
    }

    #[test]
    fn upgrades_set_keys_and_refuse_what_cannot_change_mid_run() {
        let values = Values::parse(
            Path::new("values.yaml"),
            "routingMode: native\nautoDirectNodeRoutes: true\nipv4NativeRoutingCIDR: 172.20.0.0/16\nhubble:\n  enabled: true\n",
        )
        .unwrap();
        let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let mut sets = set("routingMode", "tunnel");
        sets.extend(set("tunnelProtocol", "geneve"));
        sets.extend(set("autoDirectNodeRoutes", "false"));
        sets.extend(set("installNoConntrackIptablesRules", "false"));
        let up = values.upgrade(&sets).unwrap();
        assert_eq!(up.routing_mode, RoutingMode::Tunnel);
        assert_eq!(up.tunnel_protocol, TunnelProtocol::Geneve);
        assert!(!up.auto_direct_node_routes);
        assert_eq!(up.ipv4_native_routing_cidr, values.ipv4_native_routing_cidr);
        assert!(
            up.ignored
                .contains(&"installNoConntrackIptablesRules".to_string())
        );
        // The next upgrade starts from this one.
        let back = up.upgrade(&set("routingMode", "native")).unwrap();
        assert_eq!(back.tunnel_protocol, TunnelProtocol::Geneve);
        let err = values
            .upgrade(&set("routingMode", "carrier-pigeon"))
            .unwrap_err();
        assert!(err.contains("routingMode"), "{err}");
        let err = values.upgrade(&set("ipam.mode", "kubernetes")).unwrap_err();
        assert!(
            err.starts_with(
                "--set ipam.mode=kubernetes: changing ipam.mode mid-run is not simulated"
            ),
            "{err}"
        );
        let err = values.upgrade(&set("hubble.enabled.x", "1")).unwrap_err();
        assert!(err.contains("not a map"), "{err}");
    }

    #[test]
    fn masquerading_follows_ciliums_keys() {
        let parse = |text: &str| Values::parse(Path::new("values.yaml"), text);
        let e = parse("routingMode: native\n").unwrap_err().to_string();
        assert!(
            e.contains("ipv4NativeRoutingCIDR") && e.contains("routingMode"),
            "{e}"
        );
        let off = parse("routingMode: native\nenableIPv4Masquerade: false\n").unwrap();
        assert_eq!(off.masquerade(), None);
        let on = parse(
            "ipv4NativeRoutingCIDR: 10.0.0.0/16\nbpf: { masquerade: true }\n\
             ipMasqAgent: { enabled: true, config: { nonMasqueradeCIDRs: [10.1.0.0/16] } }\n",
        )
        .unwrap();
        let settings = on.masquerade().expect("on by default");
        assert_eq!(
            settings.native_routing_cidr,
            Some("10.0.0.0/16".parse().unwrap())
        );
        assert_eq!(
            settings.non_masquerade,
            vec!["10.1.0.0/16".parse().unwrap()]
        );
        assert!(settings.tunnel);
        assert!(on.ignored.is_empty(), "{:?}", on.ignored);
    }
}
