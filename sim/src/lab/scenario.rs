//! The scenario file (`scenario.yaml`): ordered steps with expectations.
//!
//! ```yaml
//! steps:
//!   - converge: 10s
//!   - name: curl reaches only the local backend
//!     curl: curl-pod webpod --count 30
//!     expect: { ok-at-least: 1, failed-at-least: 1 }
//!   - show: routes k8s-ctr
//!     expect: { contains: ["172.20.1.0/24 via 192.168.10.101 dev eth1 proto kernel"] }
//!   - link: down router:eth2
//!   - ping: k8s-ctr 192.168.20.100 --count 3
//!     expect: { received: 0 }
//! ```
//! Each step has exactly one verb. Verbs and their arguments:
//! `apply FILE`, `delete FILE` (Kubernetes manifests, relative to the lab);
//! `wait DURATION`; `converge [DURATION]` (run until nothing is pending, at most
//! DURATION, default 60s); `curl FROM TARGET [--count N] [--port P]`;
//! `ping FROM TARGET [--count N] [-s SIZE] [-M do]`; `tracepath FROM TARGET`;
//! `show routes|neighbours|addr HOST`; `show route-get HOST ADDR`; `show pods`;
//! `show ciliumnodes`; `show bgp peers`; `show bgp nodeconfig NODE`; `show bgp routes
//! [available|advertised|received]`; `vtysh ROUTER show …` (FRR's `show` commands);
//! `route add HOST PREFIX via GATEWAY`; `label NODE KEY=VALUE`; `unlabel NODE KEY`;
//! `drain NODE`; `uncordon NODE`; `scale DEPLOYMENT --replicas N`; `restart ROUTER`;
//! `hash-policy ROUTER 0|1`;
//! `link down|up NODE:IF`; `loss NODE:IF PROBABILITY`; `latency NODE:IF DURATION`;
//! `arping FROM IPV4 [--count N]`; `ndisc6 FROM IPV6 [--count N]`; `show leases`; `show l2-announce NODE`;
//! `show service-list NODE`; `show bpf-lb-list NODE`; `show kube-proxy-replacement NODE`;
//! `apiserver down|up [--from NODE]|latency DURATION` (the leases' store;
//! `--from`: only that node's requests, a partition);
//! `reboot NODE [--for DURATION]` (down, then back; default 30s);
//! `crash NODE` (down for good);
//! `helm upgrade [--reuse-values] --set KEY=VALUE …` (staged until)
//! `rollout restart [-n kube-system] ds/cilium`; `show config`; `show status NODE`; `show endpoints NODE`;
//! `capture SEGMENT|HOST:IF [-c N] [FILTER]` (`tcpdump -nn` of the previous step);
//! `observe [FLAGS]` (the previous step's flows as `hubble observe` prints
//! them; its flags `--pod`, `--from-pod`, `--to-pod`, `--namespace`, `--ip`,
//! `--port`, `--protocol`, `--verdict`, `--type`, `--node-name`, `--last N`,
//! `--print-node-name`, `-o json`).
//! Unknown keys, verbs and arguments are errors naming the file, line and key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::duration::Dur;
use super::error::LabError;
use super::topology::EndpointRef;

/// What a step's result must satisfy. Every field set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    /// curl: exactly this many requests answered.
    pub ok: Option<u32>,
    /// curl: at least this many answered.
    pub ok_at_least: Option<u32>,
    /// curl: at most this many answered.
    pub ok_at_most: Option<u32>,
    /// curl: exactly this many failed.
    pub failed: Option<u32>,
    /// curl: at least this many failed.
    pub failed_at_least: Option<u32>,
    /// curl: exactly this many distinct backends answered.
    pub backends: Option<u32>,
    /// curl: exactly this many nodes' service stages took the flows in
    /// (for a LoadBalancer address).
    pub ingress_nodes: Option<u32>,
    /// curl: exactly this many nodes' service datapaths translated replies
    /// back to the service address (the ingress nodes with SNAT; with DSR
    /// the backends' nodes).
    pub reply_nodes: Option<u32>,
    /// curl: exactly this many distinct client addresses the backends saw
    /// (whoami's `RemoteAddr`: the client's own, or a node's SNAT address).
    pub remote_addrs: Option<u32>,
    /// ping, arping: exactly this many replies.
    pub received: Option<u32>,
    /// ping: replies carry this TTL.
    pub ttl: Option<u8>,
    /// show: lines (whitespace-normalised) that must appear.
    #[serde(default)]
    pub contains: Vec<String>,
    /// show: lines that must not appear.
    #[serde(default)]
    pub not_contains: Vec<String>,
    /// show: text no line may contain anywhere.
    #[serde(default)]
    pub not_mentioning: Vec<String>,
}

/// One action of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Apply a manifest.
    Apply(PathBuf),
    /// Delete the objects of a manifest.
    Delete(PathBuf),
    /// Let virtual time pass.
    Wait(Dur),
    /// Run until nothing is pending, at most this long.
    Converge(Dur),
    /// HTTP GETs from a pod or host to a service, pod or address.
    Curl {
        /// Client pod or host.
        from: String,
        /// Service name, pod name, host name or IP address.
        target: String,
        /// Requests.
        count: u32,
        /// Port (default: the service's first port, else 80).
        port: Option<u16>,
    },
    /// ICMP echo.
    Ping {
        /// Source pod or host.
        from: String,
        /// Destination.
        target: String,
        /// Echo requests.
        count: u32,
        /// Payload bytes (`-s`; default 56).
        size: Option<u16>,
        /// `-M do`: refuse to send requests over the route's MTU.
        dont_fragment: bool,
    },
    /// Print a host's routes (`ip route` style).
    ShowRoutes(String),
    /// Print a host's neighbours (`ip neigh` style).
    ShowNeighbours(String),
    /// `ip -br addr` on a host.
    ShowAddr(String),
    /// `ip route get ADDR` on a host.
    RouteGet {
        /// The host.
        host: String,
        /// The address.
        addr: std::net::IpAddr,
    },
    /// `tracepath -n TARGET` from a host or pod.
    Tracepath {
        /// Source pod or host.
        from: String,
        /// Destination.
        target: String,
    },
    /// Print the pods (`kubectl get pod -o wide` style).
    ShowPods,
    /// Print the nodes with their pod CIDRs (`kubectl get ciliumnode` style).
    ShowNodes,
    /// Print the services (`kubectl get svc` style).
    ShowServices,
    /// Print the LB-IPAM pools (`kubectl get ippools` style).
    ShowIpPools,
    /// Print every node's BGP peers (`cilium bgp peers`).
    ShowBgpPeers,
    /// Print every node's BGP routes of a table (`cilium bgp routes`).
    ShowBgpRoutes(router_core::cilium::status::Table),
    /// Print a node's CiliumBGPNodeConfig status (`kubectl get
    /// ciliumbgpnodeconfig NODE -o json | jq .status`).
    ShowBgpNodeConfig(String),
    /// Run a `show` command on an FRR router (`vtysh -c 'show …'`).
    Vtysh {
        /// The router.
        host: String,
        /// The command after `show`, e.g. `ip bgp summary`.
        command: String,
    },
    /// Set (`Some`) or remove a node label (`kubectl label node`).
    Label {
        /// The node.
        node: String,
        /// The label key.
        key: String,
        /// The value; `None` removes the label.
        value: Option<String>,
    },
    /// `kubectl drain NODE` (true) or `kubectl uncordon NODE`.
    Drain {
        /// The node.
        node: String,
        /// Drain (else uncordon).
        drain: bool,
    },
    /// `kubectl scale deployment NAME --replicas N`.
    Scale {
        /// The Deployment (namespace `default`).
        deployment: String,
        /// Replicas.
        replicas: u32,
    },
    /// Restart an FRR router's bgpd (graceful restart).
    Restart(String),
    /// Set a router's `fib_multipath_hash_policy` (0: L3, 1: L4).
    HashPolicy {
        /// The router.
        host: String,
        /// 0 or 1.
        policy: u8,
    },
    /// Add a static route on a host (`ip route add`).
    RouteAdd {
        /// The host.
        host: String,
        /// Destination.
        dst: ipnet::IpNet,
        /// Gateway.
        via: std::net::IpAddr,
    },
    /// Take an interface's link down or up.
    Link {
        /// The interface.
        endpoint: EndpointRef,
        /// Up (true) or down.
        up: bool,
    },
    /// Set the loss probability of the link an interface is on.
    Loss {
        /// The interface.
        endpoint: EndpointRef,
        /// Loss probability 0..1.
        probability: f64,
    },
    /// Set the one-way latency of the link an interface is on.
    Latency {
        /// The interface.
        endpoint: EndpointRef,
        /// The latency.
        latency: Dur,
    },
    /// `arping TARGET` from a host: ARP requests, one a second.
    Arping {
        /// The host asking.
        from: String,
        /// The address asked for.
        target: std::net::Ipv4Addr,
        /// Requests.
        count: u32,
    },
    /// `ndisc6 TARGET` from a host: neighbour solicitations, one a second
    /// until one is answered.
    Ndisc6 {
        /// The host asking.
        from: String,
        /// The address asked for.
        target: std::net::Ipv6Addr,
        /// Most solicitations (ndisc6's `-r`, default 3).
        count: u32,
    },
    /// Print the L2 announcement leases (`kubectl -n kube-system get lease`).
    ShowLeases,
    /// Print what a node answers ARP for (`cilium-dbg shell -- db/show
    /// l2-announce`).
    ShowL2Announce(String),
    /// Print a node's service table (`cilium-dbg service list`).
    ShowServiceList(String),
    /// Print a node's services map entries (`cilium-dbg bpf lb list`).
    ShowBpfLbList(String),
    /// Print a node's `KubeProxyReplacement Details` (`cilium status --verbose`).
    ShowKubeProxyReplacement(String),
    /// The API server's leases: reachable or not, and how long answers take.
    ApiServer {
        /// Whether requests reach it.
        reachable: bool,
        /// How long it takes to answer, if changed.
        latency: Option<Dur>,
        /// Only from this node (a partition); `None`: from every node.
        node: Option<String>,
    },
    /// `helm upgrade cilium --reuse-values --set KEY=VALUE …`: stage new
    /// Helm values (the agents take them on `rollout restart ds/cilium`).
    HelmUpgrade(Vec<(String, String)>),
    /// `kubectl rollout restart -n kube-system ds/cilium`.
    RolloutRestart,
    /// `cilium config view` (the honoured keys).
    ShowConfig,
    /// `cilium-dbg endpoint list` on a node.
    ShowEndpoints(String),
    /// `tcpdump -nn` of what a segment (a switch or link name, or the one
    /// `HOST:IF` is on, seen from that interface) carried in the previous
    /// step.
    Capture {
        /// Segment name or `HOST:IF`.
        target: String,
        /// `-c N`: the first N frames only.
        count: Option<usize>,
        /// The filter expression.
        filter: crate::capture::Filter,
    },
    /// The `Routing` and `Masquerading` lines of `cilium status` on a node.
    ShowStatus(String),
    /// Print the flows of the previous step (`hubble observe` with its
    /// filter flags).
    Observe(router_core::flow::hubble::Filter),
    /// Take a node down: for a while (`reboot`), or for good (`crash`).
    Down {
        /// The node.
        node: String,
        /// How long a reboot keeps it down; `None`: a crash.
        down_for: Option<Dur>,
    },
}

impl Action {
    /// Whether the step shows what the previous step did (`observe`,
    /// `capture`): it runs nothing, and the previous step's events stay.
    pub fn looks_back(&self) -> bool {
        matches!(self, Action::Observe(_) | Action::Capture { .. })
    }
}

/// A step: a title, an action and what its result must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Title for the report (defaults to the command).
    pub name: String,
    /// What to do.
    pub action: Action,
    /// What must hold afterwards.
    pub expect: Expect,
    /// Line in the scenario file.
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<String>,
    apply: Option<String>,
    delete: Option<String>,
    wait: Option<String>,
    #[serde(default, deserialize_with = "present")]
    converge: Option<Option<String>>,
    curl: Option<String>,
    ping: Option<String>,
    show: Option<String>,
    vtysh: Option<String>,
    route: Option<String>,
    label: Option<String>,
    unlabel: Option<String>,
    drain: Option<String>,
    uncordon: Option<String>,
    scale: Option<String>,
    restart: Option<String>,
    #[serde(rename = "hash-policy")]
    hash_policy: Option<String>,
    link: Option<String>,
    loss: Option<String>,
    latency: Option<String>,
    arping: Option<String>,
    ndisc6: Option<String>,
    apiserver: Option<String>,
    reboot: Option<String>,
    crash: Option<String>,
    tracepath: Option<String>,
    helm: Option<String>,
    rollout: Option<String>,
    capture: Option<String>,
    #[serde(default, deserialize_with = "present")]
    observe: Option<Option<String>>,
    #[serde(default)]
    expect: Expect,
}

/// A key that is present (even with an empty value) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    seed: Option<u64>,
    steps: Vec<RawStep>,
}

/// A whole scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Seed to use when the command line gives none.
    pub seed: Option<u64>,
    /// The steps in order.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Parse a scenario file.
    pub fn parse(file: &Path, text: &str) -> Result<Self, LabError> {
        let raw: RawScenario =
            serde_norway::from_str(text).map_err(|e| LabError::yaml(file, &e))?;
        let step_lines = step_lines(text);
        let mut steps = Vec::new();
        for (i, s) in raw.steps.into_iter().enumerate() {
            let line = step_lines.get(i).copied().unwrap_or(1);
            let err = |key: &str, msg: String| LabError {
                file: file.to_path_buf(),
                line: Some(line),
                key: Some(format!("steps[{i}].{key}")),
                message: msg,
            };
            let verbs: Vec<(&str, Option<String>)> = [
                ("apply", s.apply),
                ("delete", s.delete),
                ("wait", s.wait),
                ("converge", s.converge.map(|c| c.unwrap_or_default())),
                ("curl", s.curl),
                ("ping", s.ping),
                ("show", s.show),
                ("vtysh", s.vtysh),
                ("route", s.route),
                ("label", s.label),
                ("unlabel", s.unlabel),
                ("drain", s.drain),
                ("uncordon", s.uncordon),
                ("scale", s.scale),
                ("restart", s.restart),
                ("hash-policy", s.hash_policy),
                ("link", s.link),
                ("loss", s.loss),
                ("latency", s.latency),
                ("arping", s.arping),
                ("ndisc6", s.ndisc6),
                ("apiserver", s.apiserver),
                ("reboot", s.reboot),
                ("crash", s.crash),
                ("tracepath", s.tracepath),
                ("helm", s.helm),
                ("rollout", s.rollout),
                ("capture", s.capture),
                ("observe", s.observe.map(|o| o.unwrap_or_default())),
            ]
            .into_iter()
            .filter_map(|(verb, args)| args.map(|a| (verb, Some(a))))
            .collect();
            let [(verb, Some(args))] = verbs.as_slice() else {
                return Err(LabError {
                    key: Some(format!("steps[{i}]")),
                    ..err(
                        "",
                        format!("a step needs exactly one verb, found {}", verbs.len()),
                    )
                });
            };
            let action = parse_action(verb, args).map_err(|m| err(verb, m))?;
            steps.push(Step {
                name: s
                    .name
                    .unwrap_or_else(|| format!("{verb} {args}").trim().to_string()),
                action,
                expect: s.expect,
                line,
            });
        }
        Ok(Scenario {
            seed: raw.seed,
            steps,
        })
    }
}

/// Lines where each `- ` item of `steps:` starts.
fn step_lines(text: &str) -> Vec<usize> {
    let mut in_steps = false;
    let mut indent = None;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("steps:") {
            in_steps = true;
            continue;
        }
        if !in_steps {
            continue;
        }
        let trimmed = line.trim_start();
        let this = line.len() - trimmed.len();
        if trimmed.starts_with("- ") || trimmed == "-" {
            if indent.is_none() {
                indent = Some(this);
            }
            if indent == Some(this) {
                lines.push(n + 1);
            }
        } else if !trimmed.is_empty() && !trimmed.starts_with('#') && this == 0 {
            in_steps = false;
        }
    }
    lines
}

/// How long `reboot NODE` keeps a node down.
const DEFAULT_REBOOT: &str = "30s";

fn parse_action(verb: &str, args: &str) -> Result<Action, String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let endpoint =
        |s: &str| EndpointRef::parse(s).ok_or_else(|| format!("{s:?} is not NODE:INTERFACE"));
    match (verb, words.as_slice()) {
        ("apply", [f]) => Ok(Action::Apply(PathBuf::from(f))),
        ("delete", [f]) => Ok(Action::Delete(PathBuf::from(f))),
        ("wait", [d]) => Ok(Action::Wait(Dur::parse(d)?)),
        ("converge", []) => Ok(Action::Converge(Dur::parse("60s")?)),
        ("converge", [d]) => Ok(Action::Converge(Dur::parse(d)?)),
        ("curl", [from, target, rest @ ..]) => {
            let opts = options(rest, &["--count", "--port"])?;
            Ok(Action::Curl {
                from: from.to_string(),
                target: target.to_string(),
                count: opts.get("--count").copied().unwrap_or(1),
                port: opts
                    .get("--port")
                    .map(|&p| u16::try_from(p).map_err(|_| format!("port {p} out of range")))
                    .transpose()?,
            })
        }
        ("ping", [from, target, rest @ ..]) => {
            // `-M do|want|dont` (path MTU discovery) is the one word option.
            let mut numeric = Vec::new();
            let mut dont_fragment = false;
            let mut words = rest.iter();
            while let Some(&w) = words.next() {
                if w == "-M" {
                    dont_fragment = match words.next() {
                        Some(&"do") => true,
                        Some(&("want" | "dont")) => false,
                        other => return Err(format!("-M {other:?}: not do, want or dont")),
                    };
                } else {
                    numeric.push(w);
                }
            }
            let opts = options(&numeric, &["--count", "-s"])?;
            Ok(Action::Ping {
                from: from.to_string(),
                target: target.to_string(),
                count: opts.get("--count").copied().unwrap_or(3),
                size: opts.get("-s").map(|&s| s as u16),
                dont_fragment,
            })
        }
        ("show", ["routes", host]) => Ok(Action::ShowRoutes(host.to_string())),
        ("show", ["pods"]) => Ok(Action::ShowPods),
        ("show", ["services" | "svc"]) => Ok(Action::ShowServices),
        ("show", ["ippools" | "ippool" | "lbippools" | "lbippool"]) => Ok(Action::ShowIpPools),
        ("show", ["bgp", "peers"]) => Ok(Action::ShowBgpPeers),
        ("show", ["bgp", "nodeconfig", node]) => Ok(Action::ShowBgpNodeConfig(node.to_string())),
        ("show", ["bgp", "routes", rest @ ..]) => {
            use router_core::cilium::status::Table;
            let table = match rest {
                [] | ["available", ..] => Table::Available,
                ["advertised", ..] => Table::Advertised,
                ["received", ..] => Table::Received,
                _ => {
                    return Err(format!(
                        "bgp routes {rest:?}: the table is available, advertised or received"
                    ));
                }
            };
            Ok(Action::ShowBgpRoutes(table))
        }
        ("show", ["ciliumnodes" | "nodes"]) => Ok(Action::ShowNodes),
        ("show", ["leases" | "lease"]) => Ok(Action::ShowLeases),
        ("show", ["l2-announce", node]) => Ok(Action::ShowL2Announce(node.to_string())),
        ("show", ["service-list", node]) => Ok(Action::ShowServiceList(node.to_string())),
        ("show", ["bpf-lb-list", node]) => Ok(Action::ShowBpfLbList(node.to_string())),
        ("show", ["kube-proxy-replacement", node]) => {
            Ok(Action::ShowKubeProxyReplacement(node.to_string()))
        }
        ("arping", [from, target, rest @ ..]) => {
            let opts = options(rest, &["--count"])?;
            Ok(Action::Arping {
                from: from.to_string(),
                target: target
                    .parse()
                    .map_err(|_| format!("{target:?} is not an IPv4 address"))?,
                count: opts.get("--count").copied().unwrap_or(1),
            })
        }
        ("ndisc6", [from, target, rest @ ..]) => {
            let opts = options(rest, &["--count"])?;
            Ok(Action::Ndisc6 {
                from: from.to_string(),
                target: target
                    .parse()
                    .map_err(|_| format!("{target:?} is not an IPv6 address"))?,
                count: opts.get("--count").copied().unwrap_or(3),
            })
        }
        ("apiserver", ["down"]) => Ok(Action::ApiServer {
            reachable: false,
            latency: None,
            node: None,
        }),
        ("apiserver", ["up"]) => Ok(Action::ApiServer {
            reachable: true,
            latency: None,
            node: None,
        }),
        ("apiserver", [state @ ("down" | "up"), "--from", node]) => Ok(Action::ApiServer {
            reachable: *state == "up",
            latency: None,
            node: Some(node.to_string()),
        }),
        ("apiserver", ["latency", d]) => Ok(Action::ApiServer {
            reachable: true,
            latency: Some(Dur::parse(d)?),
            node: None,
        }),
        ("reboot", [node]) => Ok(Action::Down {
            node: node.to_string(),
            down_for: Some(Dur::parse(DEFAULT_REBOOT)?),
        }),
        ("reboot", [node, "--for", d]) => Ok(Action::Down {
            node: node.to_string(),
            down_for: Some(Dur::parse(d)?),
        }),
        ("observe", flags) => {
            let filter = router_core::flow::hubble::Filter::parse(flags.iter().copied())
                .map_err(|e| e.to_string())?;
            if filter.follow {
                return Err("--follow is the agent's: a step observes the previous step".into());
            }
            Ok(Action::Observe(filter))
        }
        ("crash", [node]) => Ok(Action::Down {
            node: node.to_string(),
            down_for: None,
        }),
        ("show", ["addr" | "address", host]) => Ok(Action::ShowAddr(host.to_string())),
        ("show", ["route-get", host, addr]) => Ok(Action::RouteGet {
            host: host.to_string(),
            addr: addr
                .parse()
                .map_err(|_| format!("{addr:?} is not an IP address"))?,
        }),
        ("helm", ["upgrade", rest @ ..]) => {
            let mut sets = Vec::new();
            let mut words = rest.iter();
            while let Some(&w) = words.next() {
                match w {
                    "--set" => {
                        let kv = words.next().ok_or("--set needs KEY=VALUE")?;
                        for kv in kv.split(',') {
                            let (k, v) = kv
                                .split_once('=')
                                .ok_or_else(|| format!("--set {kv:?} is not KEY=VALUE"))?;
                            sets.push((k.to_string(), v.to_string()));
                        }
                    }
                    "--namespace" | "-n" | "--version" => {
                        words.next();
                    }
                    "--reuse-values" | "cilium" | "cilium/cilium" => {}
                    other => {
                        return Err(format!(
                            "helm upgrade: {other:?} is not simulated (--set KEY=VALUE, --reuse-values)"
                        ));
                    }
                }
            }
            if sets.is_empty() {
                return Err("helm upgrade needs at least one --set KEY=VALUE".into());
            }
            Ok(Action::HelmUpgrade(sets))
        }
        ("rollout", ["restart", "ds/cilium" | "daemonset/cilium"])
        | (
            "rollout",
            [
                "restart",
                "-n" | "--namespace",
                "kube-system",
                "ds/cilium" | "daemonset/cilium",
            ],
        ) => Ok(Action::RolloutRestart),
        ("capture", [target, rest @ ..]) => {
            let (count, rest) = match rest {
                ["-c", n, rest @ ..] => (
                    Some(n.parse().map_err(|_| format!("-c {n:?} is not a count"))?),
                    rest,
                ),
                _ => (None, rest),
            };
            Ok(Action::Capture {
                target: target.to_string(),
                count,
                filter: crate::capture::Filter::parse(rest)?,
            })
        }
        ("show", ["config"]) => Ok(Action::ShowConfig),
        ("show", ["endpoints" | "endpoint-list", node]) => {
            Ok(Action::ShowEndpoints(node.to_string()))
        }
        ("show", ["status", node]) => Ok(Action::ShowStatus(node.to_string())),
        ("tracepath", [from, target]) => Ok(Action::Tracepath {
            from: from.to_string(),
            target: target.to_string(),
        }),
        ("show", ["neighbours" | "neighbors", host]) => {
            Ok(Action::ShowNeighbours(host.to_string()))
        }
        ("vtysh", [host, "show", command @ ..]) if !command.is_empty() => Ok(Action::Vtysh {
            host: host.to_string(),
            command: command.join(" "),
        }),
        ("label", [node, kv]) => {
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv:?} is not KEY=VALUE"))?;
            Ok(Action::Label {
                node: node.to_string(),
                key: key.to_string(),
                value: Some(value.to_string()),
            })
        }
        ("drain" | "uncordon", [node]) => Ok(Action::Drain {
            node: node.to_string(),
            drain: verb == "drain",
        }),
        ("scale", [deployment, "--replicas", n]) => Ok(Action::Scale {
            deployment: deployment.to_string(),
            replicas: n
                .parse()
                .map_err(|_| format!("--replicas {n:?} is not a number"))?,
        }),
        ("restart", [host]) => Ok(Action::Restart(host.to_string())),
        ("hash-policy", [host, p @ ("0" | "1")]) => Ok(Action::HashPolicy {
            host: host.to_string(),
            policy: if *p == "1" { 1 } else { 0 },
        }),
        ("unlabel", [node, key]) => Ok(Action::Label {
            node: node.to_string(),
            key: key.to_string(),
            value: None,
        }),
        ("route", ["add", host, dst, "via", via]) => Ok(Action::RouteAdd {
            host: host.to_string(),
            dst: dst
                .parse::<ipnet::IpNet>()
                .map_err(|_| format!("{dst:?} is not a prefix"))?
                .trunc(),
            via: via
                .parse()
                .map_err(|_| format!("{via:?} is not an address"))?,
        }),
        ("link", [dir @ ("down" | "up"), ep]) => Ok(Action::Link {
            endpoint: endpoint(ep)?,
            up: *dir == "up",
        }),
        ("loss", [ep, p]) => {
            let probability: f64 = p.parse().map_err(|_| format!("{p:?} is not a number"))?;
            if !(0.0..=1.0).contains(&probability) {
                return Err(format!("loss {probability} is not in 0..1"));
            }
            Ok(Action::Loss {
                endpoint: endpoint(ep)?,
                probability,
            })
        }
        ("latency", [ep, d]) => Ok(Action::Latency {
            endpoint: endpoint(ep)?,
            latency: Dur::parse(d)?,
        }),
        _ => Err(format!(
            "cannot read {verb:?} arguments {args:?}; see docs/labs.md for the verbs"
        )),
    }
}

fn options<'a>(
    words: &[&'a str],
    known: &[&str],
) -> Result<std::collections::BTreeMap<&'a str, u32>, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut it = words.iter();
    while let Some(&flag) = it.next() {
        if !known.contains(&flag) {
            return Err(format!(
                "unknown option {flag:?} (known: {})",
                known.join(", ")
            ));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag} {value:?} is not a number"))?;
        let limit = match flag {
            "--count" => MAX_COUNT,
            _ => u64::from(u16::MAX),
        };
        if n > limit {
            return Err(format!(
                "{flag} {n} is more than the most a step allows, {limit}"
            ));
        }
        out.insert(flag, u32::try_from(n).expect("bounded above"));
    }
    Ok(out)
}

/// The most requests or echoes one `curl` or `ping` step sends: a step is
/// a probe, and its virtual time and memory grow with the count.
pub const MAX_COUNT: u64 = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded_with_a_clear_limit() {
        assert_eq!(
            parse_action("ping", "a b --count 70000").unwrap_err(),
            "--count 70000 is more than the most a step allows, 10000"
        );
        assert_eq!(
            parse_action("curl", "a b --count 10000000000").unwrap_err(),
            "--count 10000000000 is more than the most a step allows, 10000"
        );
        assert_eq!(
            parse_action("curl", "a b --port 70000").unwrap_err(),
            "--port 70000 is more than the most a step allows, 65535"
        );
        assert!(parse_action("curl", "a b --count 10000").is_ok());
    }

    const TEXT: &str = "seed: 7\nsteps:\n  - converge: 10s\n  - name: cross-node\n    curl: curl-pod webpod --count 30\n    expect: { ok-at-least: 1 }\n  - show: routes k8s-ctr\n  - link: down router:eth2\n  - converge:\n";

    #[test]
    fn parses_steps_with_lines() {
        let s = Scenario::parse(Path::new("scenario.yaml"), TEXT).unwrap();
        assert_eq!(s.seed, Some(7));
        assert_eq!(s.steps.len(), 5);
        assert_eq!(s.steps[1].line, 4);
        assert_eq!(s.steps[1].name, "cross-node");
        assert_eq!(
            s.steps[1].action,
            Action::Curl {
                from: "curl-pod".into(),
                target: "webpod".into(),
                count: 30,
                port: None
            }
        );
        assert_eq!(s.steps[1].expect.ok_at_least, Some(1));
        assert_eq!(s.steps[2].name, "show routes k8s-ctr");
        assert!(matches!(s.steps[3].action, Action::Link { up: false, .. }));
        assert_eq!(
            s.steps[4].action,
            Action::Converge(Dur::parse("60s").unwrap())
        );
    }

    #[test]
    fn errors_name_step_line_and_key() {
        let e = Scenario::parse(
            Path::new("s.yaml"),
            &TEXT.replace("--count 30", "--cuont 30"),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4));
        assert_eq!(e.key.as_deref(), Some("steps[1].curl"));
        assert!(e.message.contains("--cuont"), "{e}");
        let e = Scenario::parse(
            Path::new("s.yaml"),
            &TEXT.replace("ok-at-least", "ok-at-leest"),
        )
        .unwrap_err();
        assert!(e.message.contains("ok-at-leest"), "{e}");
        assert_eq!(e.line, Some(6));
        let e = Scenario::parse(
            Path::new("s.yaml"),
            &TEXT.replace(
                "  - show: routes k8s-ctr\n",
                "  - show: routes k8s-ctr\n    wait: 1s\n",
            ),
        )
        .unwrap_err();
        assert!(e.message.contains("exactly one verb"), "{e}");
    }
}
