//! Running a lab's scenario: each step acts on the cluster, prints what an
//! operator would see, and is checked against its expectations.
//!
//! Owns the step semantics (how long a curl waits, how a ClusterIP is
//! translated at the socket, what `show routes` prints) and the run report.
//! Building the cluster is [`crate::cluster`]'s job; the command line is in
//! `main.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use nexthop_netstack::apps::{CurlOptions, PingOptions};
use router_core::service::datapath::Connect;
use serde::Serialize;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use crate::cluster::{Cluster, Role};
use crate::lab::{Action, Expect, Lab, Step};
use crate::show;

/// How often a waiting step lets the engine run before checking on its app.
const SLICE: Duration = Duration::from_millis(10);

/// One expectation and whether it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was expected, e.g. `ok = 30`.
    pub expected: String,
    /// What was seen.
    pub actual: String,
    /// Whether it held.
    pub passed: bool,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// Step title.
    pub name: String,
    /// Line in scenario.yaml.
    pub line: usize,
    /// Virtual time when the step finished, in seconds.
    pub time: String,
    /// What an operator would see.
    pub output: Vec<String>,
    /// Expectations.
    pub checks: Vec<Check>,
    /// An error that stopped the step.
    pub error: Option<String>,
}

impl StepReport {
    /// Whether the step ran and every expectation held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.checks.iter().all(|c| c.passed)
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Lab name.
    pub lab: String,
    /// Seed.
    pub seed: u64,
    /// Steps.
    pub steps: Vec<StepReport>,
    /// Helm values present but not simulated.
    pub ignored_values: Vec<String>,
    /// Virtual time at the end, in seconds.
    pub virtual_seconds: f64,
    /// Frames delivered or dropped.
    pub frames: u64,
    /// Events processed.
    pub events: u64,
    /// Hash of the frame trace (same seed ⇒ same hash).
    pub trace_hash: String,
}

impl Report {
    /// Whether every step passed.
    pub fn passed(&self) -> bool {
        self.steps.iter().all(StepReport::passed)
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "lab {} (seed {})", self.lab, self.seed);
        if !self.ignored_values.is_empty() {
            let _ = writeln!(
                s,
                "values not simulated: {}",
                self.ignored_values.join(", ")
            );
        }
        for (i, step) in self.steps.iter().enumerate() {
            let mark = if step.passed() { "ok" } else { "FAIL" };
            let _ = writeln!(
                s,
                "\n[{}] {} (t={}s, scenario.yaml:{}) {mark}",
                i + 1,
                step.name,
                step.time,
                step.line
            );
            for line in &step.output {
                let _ = writeln!(s, "    {line}");
            }
            for c in &step.checks {
                let m = if c.passed { "ok  " } else { "FAIL" };
                let _ = writeln!(s, "  {m} expect {}: got {}", c.expected, c.actual);
            }
            if let Some(e) = &step.error {
                let _ = writeln!(s, "  FAIL {e}");
            }
        }
        let passed = self.steps.iter().filter(|s| s.passed()).count();
        let _ = writeln!(
            s,
            "\n{passed} passed, {} failed; {:.3} virtual seconds, {} events, {} frames, trace hash {}",
            self.steps.len() - passed,
            self.virtual_seconds,
            self.events,
            self.frames,
            self.trace_hash
        );
        s
    }
}

/// What `nexthop-sim check` finds without running the scenario, on a
/// cluster just built from the lab (building already refuses bad
/// interfaces, routes, FRR settings and start-up manifests): every file a
/// step applies or deletes reads cleanly, and every host, pod, node and
/// interface a step names exists (a pod named in a step must be a Pod of
/// some manifest of the lab). The first problem, with its scenario line.
pub fn check(cluster: &Cluster) -> Result<(), String> {
    let lab = &cluster.lab;
    let pod_names = |objects: &[crate::lab::kube::Object]| -> Vec<String> {
        objects
            .iter()
            .filter_map(|o| match o {
                crate::lab::kube::Object::Pod(meta, _) => Some(meta.name.clone()),
                _ => None,
            })
            .collect()
    };
    let mut pods: std::collections::BTreeSet<String> = lab
        .manifests
        .iter()
        .flat_map(|m| pod_names(&m.objects))
        .collect();
    let is_host = |name: &str| lab.topology.nodes.contains_key(name);
    let is_node = |name: &str| {
        lab.topology
            .nodes
            .get(name)
            .is_some_and(|n| n.kind == crate::lab::topology::NodeKind::K8sNode)
    };
    // The values as the scenario's `helm upgrade`s leave them.
    let mut values = lab.values.clone();
    for step in &lab.scenario.steps {
        let at = |message: String| format!("scenario.yaml:{}: {message}", step.line);
        let known = |name: &str, pods: &std::collections::BTreeSet<String>| {
            is_host(name) || pods.contains(name)
        };
        match &step.action {
            Action::Apply(file) | Action::Delete(file) => {
                let manifest = Lab::manifest(&lab.dir, file).map_err(|e| at(e.to_string()))?;
                pods.extend(pod_names(&manifest.objects));
            }
            Action::Curl { from, .. } | Action::Ping { from, .. } if !known(from, &pods) => {
                return Err(at(format!("no host or pod named {from:?}")));
            }
            Action::HelmUpgrade(sets) => {
                values = values.upgrade(sets).map_err(at)?;
            }
            Action::Capture { target, .. } if cluster.capture_point(target).is_none() => {
                return Err(at(format!("no segment or interface {target:?}")));
            }
            Action::ShowRoutes(host)
            | Action::ShowNeighbours(host)
            | Action::ShowAddr(host)
            | Action::RouteGet { host, .. }
            | Action::Tracepath { from: host, .. }
                if !known(host, &pods) =>
            {
                return Err(at(format!("no host or pod named {host:?}")));
            }
            Action::Vtysh { host, .. } if !lab.frr.contains_key(host) => {
                return Err(at(format!(
                    "{host:?} is not a router with an FRR configuration"
                )));
            }
            Action::Restart(host) if !lab.frr.contains_key(host) => {
                return Err(at(format!(
                    "{host:?} is not a router with an FRR configuration"
                )));
            }
            Action::HashPolicy { host, .. } | Action::RouteAdd { host, .. } if !is_host(host) => {
                return Err(at(format!("no host named {host:?}")));
            }
            Action::Label { node, .. } | Action::Drain { node, .. } if !is_node(node) => {
                return Err(at(format!("no k8s-node named {node:?}")));
            }
            Action::ApiServer {
                node: Some(node), ..
            }
            | Action::ShowBgpNodeConfig(node)
            | Action::ShowL2Announce(node)
            | Action::ShowServiceList(node)
            | Action::ShowBpfLbList(node)
            | Action::ShowKubeProxyReplacement(node)
            | Action::ShowEndpoints(node)
            | Action::ShowStatus(node)
            | Action::Down { node, .. }
                if !is_node(node) =>
            {
                return Err(at(format!("no k8s-node named {node:?}")));
            }
            Action::Arping { from, .. } if !is_host(from) => {
                return Err(at(format!("no host named {from:?}")));
            }
            Action::Link { endpoint, .. }
            | Action::Loss { endpoint, .. }
            | Action::Latency { endpoint, .. }
                if cluster.interface(endpoint).is_none() =>
            {
                return Err(at(format!(
                    "no interface {}:{}",
                    endpoint.node, endpoint.interface
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Run every step of the lab's scenario on `cluster`.
pub fn run(cluster: &mut Cluster, seed: u64) -> Report {
    let steps = cluster.lab.scenario.steps.clone();
    let mut events = 0;
    let reports = steps
        .iter()
        .map(|step| run_step(cluster, step, &mut events))
        .collect();
    report(cluster, seed, reports, events)
}

/// Run one step on `cluster`, counting the engine's events in `events`.
pub fn run_step(cluster: &mut Cluster, step: &Step, events: &mut u64) -> StepReport {
    let mut report = StepReport {
        name: step.name.clone(),
        line: step.line,
        time: String::new(),
        output: Vec::new(),
        checks: Vec::new(),
        error: None,
    };
    if let Err(e) = execute(cluster, step, &mut report, events) {
        report.error = Some(e);
    }
    if !step.action.looks_back() {
        cluster.close_step();
    }
    report.time = format!("{:.3}", secs(cluster.engine.now()));
    report
}

/// The run's report: `steps` as they ran on `cluster` with `seed`.
pub fn report(cluster: &Cluster, seed: u64, steps: Vec<StepReport>, events: u64) -> Report {
    Report {
        lab: cluster.lab.topology.name.clone(),
        seed,
        steps,
        ignored_values: cluster.lab.values.ignored.clone(),
        virtual_seconds: secs(cluster.engine.now()),
        frames: cluster.engine.trace().count(),
        events,
        trace_hash: cluster.engine.trace().hash().to_string(),
    }
}

fn secs(t: Instant) -> f64 {
    t.total_micros() as f64 / 1e6
}

fn advance(cluster: &mut Cluster, by: Duration, events: &mut u64) -> Result<(), String> {
    let deadline = cluster.engine.now() + by;
    *events += cluster.run_until(deadline)?;
    Ok(())
}

fn execute(
    cluster: &mut Cluster,
    step: &Step,
    report: &mut StepReport,
    events: &mut u64,
) -> Result<(), String> {
    match &step.action {
        Action::Wait(d) | Action::Converge(d) => advance(cluster, d.0, events),
        Action::Apply(file) | Action::Delete(file) => {
            let manifest = Lab::manifest(&cluster.lab.dir, file).map_err(|e| e.to_string())?;
            let apply = matches!(step.action, Action::Apply(_));
            let objects: Vec<_> = if apply {
                manifest.objects.clone()
            } else {
                manifest.objects.iter().rev().cloned().collect()
            };
            for o in &objects {
                if apply {
                    cluster.apply(o)?;
                } else {
                    cluster.delete(o)?;
                }
                report.output.push(format!(
                    "{} {}",
                    o.id(),
                    if apply { "configured" } else { "deleted" }
                ));
            }
            cluster.check_bgp()
        }
        Action::Curl {
            from,
            target,
            count,
            port,
        } => {
            curl(
                cluster,
                from,
                target,
                *count,
                *port,
                &step.expect,
                report,
                events,
            )?;
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Ping {
            from,
            target,
            count,
            size,
            dont_fragment,
        } => {
            let options = PingOptions {
                count: u16::try_from(*count).map_err(|_| "too many pings")?,
                size: size.unwrap_or(PingOptions::default().size),
                dont_fragment: *dont_fragment,
                ..PingOptions::default()
            };
            ping(cluster, from, target, options, &step.expect, report, events)?;
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowRoutes(host) => {
            let h = cluster
                .host(host)
                .ok_or_else(|| format!("no host or pod named {host:?}"))?;
            report.output = route_lines(h);
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowAddr(host) => {
            let id = cluster
                .host_id(host)
                .ok_or_else(|| format!("no host or pod named {host:?}"))?;
            let h = cluster.engine.node(id);
            let rows: Vec<(String, &str, Vec<ipnet::IpNet>)> = h
                .host
                .ports()
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let port = router_core::PortId(i as u16);
                    let state = match h.engine_port(port) {
                        Some(engine_port) => {
                            let e = crate::node::Endpoint {
                                node: id,
                                port: engine_port,
                            };
                            let engine = &cluster.engine;
                            let up = !h.down
                                && engine.is_port_up(e) == Some(true)
                                && engine
                                    .segment_of(e)
                                    .is_some_and(|s| engine.is_segment_up(s));
                            if up { "UP" } else { "DOWN" }
                        }
                        // Loopbacks and cilium_host: never linked.
                        None if p.name.starts_with("lo") => "UNKNOWN",
                        None => "UP",
                    };
                    (p.name.clone(), state, p.addrs.clone())
                })
                .collect();
            report.output = show::ip_br_addr(&rows);
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::RouteGet { host, addr } => {
            let h = cluster
                .host(host)
                .ok_or_else(|| format!("no host or pod named {host:?}"))?;
            report.output = show::ip_route_get(&h.host, &h.notes, *addr, cluster.engine.now());
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Tracepath { from, target } => {
            tracepath(cluster, from, target, report, events)?;
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowNeighbours(host) => {
            let h = cluster
                .host(host)
                .ok_or_else(|| format!("no host or pod named {host:?}"))?;
            let name = |p: router_core::PortId| h.host.ports()[usize::from(p.0)].name.clone();
            report.output = show::ip_neigh(h.host.neighbours(), &name);
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowPods => {
            let rows: Vec<[String; 5]> = cluster
                .workloads
                .pods()
                .map(|p| {
                    let ip = p.ip.to_string();
                    [
                        p.name.clone(),
                        "1/1".into(),
                        "Running".into(),
                        ip,
                        p.node.clone(),
                    ]
                })
                .collect();
            report.output = show::table(&["NAME", "READY", "STATUS", "IP", "NODE"], &rows);
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowNodes => {
            let rows: Vec<[String; 4]> = cluster
                .workloads
                .nodes()
                .iter()
                .map(|n| {
                    let internal = cluster
                        .address_of(&n.name)
                        .map_or(String::new(), |a| a.to_string());
                    [
                        n.name.clone(),
                        n.router_ip.to_string(),
                        internal,
                        n.ipam.cidr().to_string(),
                    ]
                })
                .collect();
            report.output = show::table(
                &["NAME", "CILIUMINTERNALIP", "INTERNALIP", "PODCIDRS"],
                &rows,
            );
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowServices => {
            report.output = show::table(
                &["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"],
                &cluster.service_rows(),
            );
            let conditions = cluster.service_conditions();
            if !conditions.is_empty() {
                report.output.push(String::new());
                report.output.extend(show::table(
                    &[
                        "NAME",
                        "IPAMREQUESTSATISFIED",
                        "REASON",
                        "LOADBALANCER INGRESS",
                        "MESSAGE",
                    ],
                    &conditions,
                ));
            }
            // What the nodes' service tables could not serve, as the
            // agent logs it.
            if !cluster.service_problems().is_empty() {
                report.output.push(String::new());
                for problem in cluster.service_problems() {
                    report.output.push(format!("Warning: {problem}"));
                }
            }
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowIpPools => {
            let rows = cluster.pool_rows();
            report.output = if rows.is_empty() {
                vec!["No resources found".into()]
            } else {
                let mut out =
                    show::table(&["NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE"], &rows);
                out.push(String::new());
                out.extend(show::table(
                    &["POOL", "CONDITION", "STATUS", "REASON", "MESSAGE"],
                    &cluster.pool_conditions(),
                ));
                out
            };
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowBgpPeers => {
            let text = router_core::cilium::table::peers(&cluster.bgp_peers());
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowBgpNodeConfig(node) => {
            let status = cluster
                .bgp_node_config(node)
                .ok_or_else(|| format!("no CiliumBGPNodeConfig for {node:?}: it runs no BGP"))?;
            let object = router_core::cilium::status::NodeConfigObject { status };
            let text = serde_json::to_string_pretty(&object).map_err(|e| e.to_string())?;
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowBgpRoutes(table) => {
            let routes = cluster.bgp_routes(*table);
            let refs: Vec<_> = routes.iter().collect();
            let text = router_core::cilium::table::routes(*table, &refs);
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Vtysh { host, command } => {
            let config = cluster
                .lab
                .frr
                .get(host)
                .ok_or_else(|| format!("{host:?} is not a router with an FRR configuration"))?;
            let h = cluster.host(host).expect("FRR routers are hosts");
            let text = crate::frr::vtysh::show(&h.host, config, cluster.engine.now(), command)?;
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Label { node, key, value } => {
            cluster.label(node, key, value.as_deref())?;
            report.output.push(format!(
                "node/{node} {}",
                if value.is_some() {
                    "labeled"
                } else {
                    "unlabeled"
                }
            ));
            Ok(())
        }
        Action::Drain { node, drain } => {
            cluster.drain(node, *drain)?;
            report.output.push(format!(
                "node/{node} {}",
                if *drain { "drained" } else { "uncordoned" }
            ));
            Ok(())
        }
        Action::Scale {
            deployment,
            replicas,
        } => {
            cluster.scale(deployment, *replicas)?;
            report
                .output
                .push(format!("deployment.apps/{deployment} scaled"));
            Ok(())
        }
        Action::Restart(host) => cluster.restart_router(host),
        Action::HashPolicy { host, policy } => {
            let p = if *policy == 1 {
                router_core::ecmp::HashPolicy::L4
            } else {
                router_core::ecmp::HashPolicy::L3
            };
            cluster.set_hash_policy(host, p)?;
            report
                .output
                .push(format!("net.ipv4.fib_multipath_hash_policy = {policy}"));
            Ok(())
        }
        Action::RouteAdd { host, dst, via } => cluster.add_static_route(host, *dst, *via),
        Action::Link { endpoint, up } => {
            let e = cluster.interface(endpoint).ok_or_else(|| {
                format!(
                    "{}:{} is not a linked interface",
                    endpoint.node, endpoint.interface
                )
            })?;
            cluster.set_link(e, *up);
            Ok(())
        }
        Action::Arping {
            from,
            target,
            count,
        } => arping(cluster, from, *target, *count, &step.expect, report, events),
        Action::Ndisc6 {
            from,
            target,
            count,
        } => ndisc6(cluster, from, *target, *count, &step.expect, report, events),
        Action::ShowLeases => {
            let rows = cluster.lease_rows();
            report.output = if rows.is_empty() {
                vec![format!(
                    "No resources found in {} namespace.",
                    router_core::cilium::l2announce::LEASE_NAMESPACE
                )]
            } else {
                show::table(&["NAME", "HOLDER", "AGE"], &rows)
            };
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowL2Announce(node) => {
            let text = router_core::cilium::table::l2_announce(&cluster.l2_table(node)?);
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowServiceList(node) | Action::ShowBpfLbList(node) => {
            let host = cluster
                .host(node)
                .ok_or_else(|| format!("no k8s-node named {node:?}"))?;
            let rows = router_core::cilium::table::service_rows(host.host.services().table());
            let text = match &step.action {
                Action::ShowBpfLbList(_) => router_core::cilium::table::bpf_lb_list(&rows),
                _ => router_core::cilium::table::service_list(&rows),
            };
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowKubeProxyReplacement(node) => {
            let text = router_core::cilium::table::kube_proxy_replacement(
                &cluster.kube_proxy_replacement(node)?,
            );
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ApiServer {
            reachable,
            latency,
            node,
        } => {
            cluster.set_api_server(*reachable, latency.map(|d| d.0), node.as_deref());
            Ok(())
        }
        Action::HelmUpgrade(sets) => {
            cluster.helm_upgrade(sets)?;
            report
                .output
                .push("Release \"cilium\" has been upgraded. Happy Helming!".into());
            Ok(())
        }
        Action::RolloutRestart => {
            cluster.restart_agents()?;
            report.output.push("daemonset.apps/cilium restarted".into());
            Ok(())
        }
        Action::ShowConfig => {
            report.output = cluster
                .lab
                .values
                .config_view()
                .into_iter()
                .map(|(k, v)| format!("{k:<40}{v}"))
                .collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Capture {
            target,
            count,
            filter,
        } => {
            let (seg, mac) = cluster
                .capture_point(target)
                .ok_or_else(|| format!("no segment or interface {target:?}"))?;
            let seen = |frame: &[u8]| {
                let (dst, src) = (frame.get(..6), frame.get(6..12));
                mac.is_none_or(|m| {
                    dst.is_some_and(|d| d == m.as_bytes() || d[0] & 1 == 1)
                        || src == Some(m.as_bytes())
                })
            };
            let frames: Vec<_> = cluster
                .flows
                .captures
                .get(&seg)
                .into_iter()
                .flatten()
                .filter(|(_, f)| seen(f) && filter.matches(f))
                .take(count.unwrap_or(usize::MAX))
                .collect();
            for (at, frame) in &frames {
                report.output.extend(crate::capture::lines(*at, frame));
            }
            report
                .output
                .push(format!("{} packets captured", frames.len()));
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowEndpoints(node) => {
            let rows = cluster.endpoint_rows(node)?;
            let text = router_core::cilium::table::endpoint_list(&rows);
            report.output = text.lines().map(str::to_string).collect();
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::ShowStatus(node) => {
            report.output = cluster.cilium_status(node)?;
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Observe(filter) => {
            let lines = filter.print(&cluster.flows.last, |json| {
                serde_json::to_string(json).expect("flows serialize")
            });
            report.output.extend(lines);
            check_lines(&report.output.clone(), &step.expect, report);
            Ok(())
        }
        Action::Down { node, down_for } => {
            let until = down_for.map(|d| cluster.engine.now() + d.0);
            cluster.node_down(node, until)?;
            report.output.push(match down_for {
                Some(d) => format!("{node} is down, back in {d}"),
                None => format!("{node} is down"),
            });
            Ok(())
        }
        Action::Loss {
            endpoint,
            probability,
        } => set_segment(cluster, endpoint, |p| p.loss = *probability),
        Action::Latency { endpoint, latency } => {
            set_segment(cluster, endpoint, |p| p.latency = latency.0)
        }
    }
}

/// Change the parameters of the segment `endpoint` is on.
/// A host's `ip route`: a node's routes to its own pods' `lxc` ports are
/// left out, as Cilium keeps them in eBPF maps rather than the table.
pub fn route_lines(h: &crate::cluster::host::SimHost) -> Vec<String> {
    let name = |p: router_core::PortId| h.host.ports()[usize::from(p.0)].name.clone();
    let is_node = h.role == Role::K8sNode;
    let hide = |r: &router_core::fib::Installed| {
        is_node
            && r.group.members().iter().any(|n| match n.kind {
                router_core::fib::NexthopKind::Connected { port } => {
                    Cluster::is_endpoint_port(&name(port))
                }
                _ => false,
            })
    };
    show::ip_route(h.host.fib(), &name, &h.notes, &hide)
}

fn set_segment(
    cluster: &mut Cluster,
    endpoint: &crate::lab::topology::EndpointRef,
    change: impl FnOnce(&mut crate::segment::SegmentParams),
) -> Result<(), String> {
    let e = cluster.interface(endpoint).ok_or_else(|| {
        format!(
            "{}:{} is not a linked interface",
            endpoint.node, endpoint.interface
        )
    })?;
    let seg = cluster
        .engine
        .segment_of(e)
        .ok_or("interface has no segment")?;
    let mut params = cluster.engine.segment_params(seg);
    change(&mut params);
    cluster
        .engine
        .set_segment_params(seg, params)
        .map_err(|e| e.to_string())
}

/// Where a curl from `from` goes: a service (translated at the client's
/// socket, as Cilium's socket-level balancer does: the client pod's node
/// picks the backend with router-core's service datapath), a pod, a host,
/// or an address.
fn resolve(
    cluster: &mut Cluster,
    from: &str,
    target: &str,
    port: Option<u16>,
) -> Result<SocketAddr, String> {
    if let Some(svc) = cluster.workloads.service(target).cloned() {
        let sp = match port {
            Some(p) => svc.spec.ports.iter().find(|sp| sp.port == p),
            None => svc.spec.ports.first(),
        }
        .ok_or_else(|| match port {
            Some(p) => format!("service {} has no port {p}", svc.metadata.name),
            None => format!("service {} has no ports", svc.metadata.name),
        })?;
        let name = &svc.metadata.name;
        let client = cluster.workloads.pod(from).cloned().ok_or_else(|| {
            format!("service {name} is reached by name from pods (socket load-balancing); {from} is not a pod")
        })?;
        let cluster_ip = svc
            .spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| format!("service {name} has no cluster IP"))?;
        let protocol = router_core::service::Protocol::from_name(sp.protocol())
            .ok_or_else(|| format!("service {name}: protocol {:?}", sp.protocol()))?;
        let frontend = router_core::service::table::L3n4 {
            addr: cluster_ip,
            port: sp.port,
            protocol,
        };
        let node = cluster
            .host_id(&client.node)
            .ok_or_else(|| format!("no node {:?}", client.node))?;
        let backend = cluster
            .engine
            .node_mut(node)
            .host
            .services_mut()
            .connect(&frontend);
        return match backend {
            Connect::Backend(b) => {
                let backend = SocketAddr::new(b.addr, b.port);
                let frontend = SocketAddr::new(frontend.addr, frontend.port);
                let udp = protocol == router_core::service::Protocol::Udp;
                cluster.record_socket_translation(&client, frontend, backend, udp);
                Ok(backend)
            }
            Connect::Unreachable => Err(format!("service {name} has no endpoints")),
            Connect::NotService => Err(format!(
                "service {name}: {}:{} is not in {}'s service table",
                frontend.addr, frontend.port, client.node
            )),
        };
    }
    let ip = cluster
        .address_of(target)
        .ok_or_else(|| format!("no service, pod, host or address {target:?}"))?;
    Ok(SocketAddr::new(IpAddr::V4(ip), port.unwrap_or(80)))
}

#[allow(clippy::too_many_arguments)]
fn curl(
    cluster: &mut Cluster,
    from: &str,
    target: &str,
    count: u32,
    port: Option<u16>,
    expect: &Expect,
    report: &mut StepReport,
    events: &mut u64,
) -> Result<(), String> {
    let id = cluster
        .host_id(from)
        .ok_or_else(|| format!("no host or pod named {from:?}"))?;
    let mut answered: BTreeMap<String, u32> = BTreeMap::new();
    let mut remote: BTreeMap<String, u32> = BTreeMap::new();
    let mut failed: BTreeMap<String, u32> = BTreeMap::new();
    let counters_before = cluster.service_counters();
    for _ in 0..count {
        let addr = match resolve(cluster, from, target, port) {
            Ok(a) => a,
            Err(e) => {
                *failed.entry(e).or_default() += 1;
                continue;
            }
        };
        let options = CurlOptions::default();
        let now = cluster.engine.now();
        let curl = cluster.engine.node_mut(id).host.curl(now, addr, options);
        cluster.engine.wake_node(id);
        let give_up = now + options.max_time + Duration::from_secs(1);
        loop {
            advance(cluster, SLICE, events)?;
            let host = &cluster.engine.node(id).host;
            if let Some(result) = host.curl_result(curl) {
                match result.body() {
                    Some(body) if result.ok() => {
                        let who = body
                            .lines()
                            .find_map(|l| l.strip_prefix("Hostname: "))
                            .unwrap_or("(no Hostname line)");
                        *answered.entry(who.to_string()).or_default() += 1;
                        // whoami's `RemoteAddr: IP:PORT`; the port differs every time.
                        let seen = body
                            .lines()
                            .find_map(|l| l.strip_prefix("RemoteAddr: "))
                            .and_then(|a| a.parse::<SocketAddr>().ok())
                            .map_or("(no RemoteAddr line)".to_string(), |a| a.ip().to_string());
                        *remote.entry(seen).or_default() += 1;
                    }
                    _ => {
                        let why = match &result.outcome {
                            Err(e) => format!("{e:?}"),
                            Ok(r) => format!("HTTP {}", r.status),
                        };
                        *failed.entry(why).or_default() += 1;
                    }
                }
                break;
            }
            if cluster.engine.now() >= give_up {
                *failed.entry("no result".into()).or_default() += 1;
                break;
            }
        }
    }
    let ok: u32 = answered.values().sum();
    let bad: u32 = failed.values().sum();
    let shown = match port {
        Some(p) => format!("{target}:{p}"),
        None => target.to_string(),
    };
    report.output.push(format!(
        "{count} x curl --connect-timeout 1 {shown} from {from}"
    ));
    for (who, n) in &answered {
        report.output.push(format!("{n:>5}  Hostname: {who}"));
    }
    for (addr, n) in &remote {
        report.output.push(format!("{n:>5}  RemoteAddr: {addr}"));
    }
    for (why, n) in &failed {
        report.output.push(format!("{n:>5}  failed: {why}"));
    }
    // Which nodes' service datapaths took the flows in (LoadBalancer
    // addresses, NodePorts), and which translated the replies back.
    let (mut ingress, mut replying) = (0, 0);
    let counters = cluster.service_counters();
    let deltas: Vec<(&String, u64, u64)> = counters
        .iter()
        .zip(&counters_before)
        .map(|((node, after), (_, before))| {
            // A datapath reconfigured mid-step starts counting afresh.
            (
                node,
                after.opened.saturating_sub(before.opened),
                after.replies.saturating_sub(before.replies),
            )
        })
        .collect();
    for &(node, opened, _) in &deltas {
        if opened > 0 {
            ingress += 1;
            report.output.push(format!("{opened:>5}  ingress: {node}"));
        }
    }
    for &(node, _, replies) in &deltas {
        if replies > 0 {
            replying += 1;
            report.output.push(format!("{replies:>5}  replies: {node}"));
        }
    }
    let mut checks = Vec::new();
    let mut check = |expected: String, actual: String, passed: bool| {
        checks.push(Check {
            expected,
            actual,
            passed,
        })
    };
    if let Some(n) = expect.ok {
        check(format!("ok = {n}"), ok.to_string(), ok == n);
    }
    if let Some(n) = expect.ok_at_least {
        check(format!("ok >= {n}"), ok.to_string(), ok >= n);
    }
    if let Some(n) = expect.ok_at_most {
        check(format!("ok <= {n}"), ok.to_string(), ok <= n);
    }
    if let Some(n) = expect.failed {
        check(format!("failed = {n}"), bad.to_string(), bad == n);
    }
    if let Some(n) = expect.failed_at_least {
        check(format!("failed >= {n}"), bad.to_string(), bad >= n);
    }
    if let Some(n) = expect.ingress_nodes {
        check(
            format!("ingress nodes = {n}"),
            ingress.to_string(),
            ingress == n,
        );
    }
    if let Some(n) = expect.backends {
        let got = answered.len() as u32;
        check(format!("backends = {n}"), got.to_string(), got == n);
    }
    if let Some(n) = expect.reply_nodes {
        check(
            format!("reply nodes = {n}"),
            replying.to_string(),
            replying == n,
        );
    }
    if let Some(n) = expect.remote_addrs {
        let got = remote.len() as u32;
        check(format!("remote addresses = {n}"), got.to_string(), got == n);
    }
    report.checks.extend(checks);
    Ok(())
}

fn ping(
    cluster: &mut Cluster,
    from: &str,
    target: &str,
    options: PingOptions,
    expect: &Expect,
    report: &mut StepReport,
    events: &mut u64,
) -> Result<(), String> {
    let (id, dst) = probe_ends(cluster, from, target)?;
    let r = run_ping(cluster, id, dst, options, events)?;
    report.output.push(format!(
        "PING {target} ({dst}) {}({}) bytes of data, from {from}",
        options.size, r.packet_len
    ));
    // In the order of the requests, as ping prints them as they come.
    let mut lines: Vec<(u16, String)> = r
        .local_errors
        .iter()
        .map(|(seq, why)| (*seq, format!("ping: {why}")))
        .collect();
    lines.extend(r.replies.iter().map(|reply| {
        let line = format!(
            "{} bytes from {}: icmp_seq={} ttl={} time={:.2} ms",
            r.packet_len - 20,
            reply.from,
            reply.seq,
            reply.ttl,
            reply.rtt.total_micros() as f64 / 1000.0
        );
        (reply.seq, line)
    }));
    lines.extend(r.errors.iter().map(|e| {
        (
            e.seq,
            format!("From {} icmp_seq={} {}", e.from, e.seq, e.describe()),
        )
    }));
    lines.sort_by_key(|(seq, _)| *seq);
    report.output.extend(lines.into_iter().map(|(_, l)| l));
    let received = r.replies.len() as u32;
    let loss = 100 * (u32::from(r.transmitted) - received.min(u32::from(r.transmitted)))
        / u32::from(r.transmitted.max(1));
    let errors = r.errors.len() + r.local_errors.len();
    let errors = if errors > 0 {
        format!(", +{errors} errors")
    } else {
        String::new()
    };
    report.output.push(format!(
        "{} packets transmitted, {received} received{errors}, {loss}% packet loss",
        r.transmitted
    ));
    check_received(expect, received, report);
    if let Some(ttl) = expect.ttl {
        let ttls: Vec<String> = r.replies.iter().map(|x| x.ttl.to_string()).collect();
        report.checks.push(Check {
            expected: format!("ttl = {ttl}"),
            actual: if ttls.is_empty() {
                "no replies".into()
            } else {
                ttls.join(",")
            },
            passed: !r.replies.is_empty() && r.replies.iter().all(|x| x.ttl == ttl),
        });
    }
    Ok(())
}

/// The host a probe (ping, tracepath) leaves from and the address it goes to.
fn probe_ends(
    cluster: &Cluster,
    from: &str,
    target: &str,
) -> Result<(crate::node::NodeId, std::net::Ipv4Addr), String> {
    let id = cluster
        .host_id(from)
        .ok_or_else(|| format!("no host or pod named {from:?}"))?;
    let dst = cluster
        .address_of(target)
        .ok_or_else(|| format!("no pod, host or address {target:?}"))?;
    Ok((id, dst))
}

/// Run one `ping` from the host `id` to `dst` until it is over.
fn run_ping(
    cluster: &mut Cluster,
    id: crate::node::NodeId,
    dst: std::net::Ipv4Addr,
    options: PingOptions,
    events: &mut u64,
) -> Result<nexthop_netstack::apps::PingReport, String> {
    let now = cluster.engine.now();
    let ping = cluster.engine.node_mut(id).host.ping(now, dst, options);
    cluster.engine.wake_node(id);
    let give_up = now
        + options.interval * u32::from(options.count)
        + options.timeout
        + Duration::from_secs(1);
    while !cluster
        .engine
        .node(id)
        .host
        .ping_report(ping)
        .is_some_and(|r| r.done)
        && cluster.engine.now() < give_up
    {
        advance(cluster, SLICE, events)?;
    }
    let report = cluster
        .engine
        .node(id)
        .host
        .ping_report(ping)
        .ok_or("ping vanished")?
        .clone();
    Ok(report)
}

/// `tracepath -n TARGET` from `from`: one probe per hop with the TTL one
/// higher each time, each as large as the path MTU known so far, with DF
/// set. A hop's "time exceeded" names it; a "fragmentation needed" lowers
/// the path MTU and the hop is probed again; the target's echo reply ends
/// the walk with `Resume: pmtu P hops H back B`.
fn tracepath(
    cluster: &mut Cluster,
    from: &str,
    target: &str,
    report: &mut StepReport,
    events: &mut u64,
) -> Result<(), String> {
    const MAX_HOPS: u8 = 30;
    let (id, dst) = probe_ends(cluster, from, target)?;
    let host = &cluster.engine.node(id).host;
    let route_mtu = host
        .route_mtu(IpAddr::V4(dst))
        .ok_or_else(|| format!("{from} has no route to {dst}"))?;
    let learnt = host.path_mtu(cluster.engine.now(), IpAddr::V4(dst));
    let mut pmtu = learnt.map_or(route_mtu, |(m, _)| m.min(route_mtu));
    let out = &mut report.output;
    out.push(format!(" 1?: [LOCALHOST]{:>22}pmtu {pmtu}", ""));
    let ms = |d: Duration| format!("{:.3}ms", d.total_micros() as f64 / 1000.0);
    let mut ttl = 1;
    while ttl <= MAX_HOPS {
        let options = PingOptions {
            count: 1,
            ttl,
            size: pmtu.saturating_sub(28),
            dont_fragment: true,
            ..PingOptions::default()
        };
        let r = run_ping(cluster, id, dst, options, events)?;
        if let Some(reply) = r.replies.first() {
            out.push(format!(
                "{ttl:>2}:  {:<40}{} reached",
                reply.from,
                ms(reply.rtt)
            ));
            let back = 65 - i32::from(reply.ttl);
            out.push(format!("     Resume: pmtu {pmtu} hops {ttl} back {back}"));
            return Ok(());
        }
        match r.errors.first() {
            Some(e) if (e.icmp_type, e.code) == (3, 4) && e.mtu < pmtu && e.mtu >= 68 => {
                pmtu = e.mtu;
                out.push(format!(
                    "{ttl:>2}:  {:<40}{} pmtu {pmtu}",
                    e.from,
                    ms(e.rtt)
                ));
                continue;
            }
            Some(e) if e.icmp_type == 11 => {
                out.push(format!("{ttl:>2}:  {:<40}{}", e.from, ms(e.rtt)));
            }
            Some(e) => {
                out.push(format!("{ttl:>2}:  {:<40}{}", e.from, e.describe()));
                out.push(format!("     Resume: pmtu {pmtu}"));
                return Ok(());
            }
            None => out.push(format!("{ttl:>2}:  no reply")),
        }
        ttl += 1;
    }
    out.push(format!("     Too many hops: pmtu {pmtu}"));
    out.push(format!("     Resume: pmtu {pmtu}"));
    Ok(())
}

/// `arping -c COUNT TARGET` from `from`: one request a second, each
/// answered within the second or `Timeout` (Thomas Habets' arping's
/// output, as seed 002 shows it).
fn arping(
    cluster: &mut Cluster,
    from: &str,
    target: std::net::Ipv4Addr,
    count: u32,
    expect: &Expect,
    report: &mut StepReport,
    events: &mut u64,
) -> Result<(), String> {
    report.output.push(format!("ARPING {target}"));
    let mut received = 0;
    for index in 0..count {
        match solicit(cluster, from, target.into(), events)? {
            (_, Some((rtt, mac))) => {
                received += 1;
                report.output.push(format!(
                    "60 bytes from {} ({target}): index={index} time={:.3} msec",
                    show::mac(mac),
                    rtt.total_micros() as f64 / 1000.0
                ));
            }
            (_, None) => report.output.push("Timeout".into()),
        }
    }
    report.output.push(String::new());
    report.output.push(format!("--- {target} statistics ---"));
    report.output.push(format!(
        "{count} packets transmitted, {received} packets received, {}% unanswered (0 extra)",
        100 * (count - received) / count.max(1)
    ));
    check_lines(&report.output.clone(), expect, report);
    check_received(expect, received, report);
    Ok(())
}

/// `ndisc6 -r COUNT TARGET IF` from `from`: a neighbour solicitation a
/// second until one is answered, in ndisc6's output.
fn ndisc6(
    cluster: &mut Cluster,
    from: &str,
    target: std::net::Ipv6Addr,
    count: u32,
    expect: &Expect,
    report: &mut StepReport,
    events: &mut u64,
) -> Result<(), String> {
    let mut received = 0;
    for index in 0..count {
        let (interface, reply) = solicit(cluster, from, target.into(), events)?;
        if index == 0 {
            report
                .output
                .push(format!("Soliciting {target} ({target}) on {interface}..."));
        }
        if let Some((_, mac)) = reply {
            received = 1;
            let mac = show::mac(mac).to_uppercase();
            report
                .output
                .push(format!("Target link-layer address: {mac}"));
            report.output.push(format!(" from {target}"));
            break;
        }
        report.output.push("Timed out.".into());
    }
    if received == 0 {
        report.output.push("No response.".into());
    }
    check_lines(&report.output.clone(), expect, report);
    check_received(expect, received, report);
    Ok(())
}

/// One ARP request (IPv4) or neighbour solicitation (IPv6) from `from` for
/// `target`, then a second: the interface it left by, and the first reply's
/// round trip and MAC if one came within the second.
fn solicit(
    cluster: &mut Cluster,
    from: &str,
    target: std::net::IpAddr,
    events: &mut u64,
) -> Result<(String, Option<(Duration, EthernetAddress)>), String> {
    let id = cluster
        .host_id(from)
        .ok_or_else(|| format!("no host named {from:?}"))?;
    let sent = cluster.engine.now();
    let interface = cluster
        .engine
        .node_mut(id)
        .host
        .arping(target)
        .ok_or_else(|| format!("{from} has no interface on {target}'s subnet"))?;
    cluster.engine.wake_node(id);
    let next = sent + Duration::from_secs(1);
    let mut reply = None;
    while reply.is_none() && cluster.engine.now() < next {
        advance(cluster, SLICE, events)?;
        reply = cluster
            .engine
            .node_mut(id)
            .host
            .arping_replies()
            .first()
            .map(|&(at, mac)| (at - sent, mac));
    }
    let now = cluster.engine.now();
    if now < next {
        advance(cluster, next - now, events)?;
    }
    Ok((interface, reply))
}

/// `received`: exactly this many replies (ping, arping).
fn check_received(expect: &Expect, received: u32, report: &mut StepReport) {
    if let Some(n) = expect.received {
        report.checks.push(Check {
            expected: format!("received = {n}"),
            actual: received.to_string(),
            passed: received == n,
        });
    }
}

fn check_lines(lines: &[String], expect: &Expect, report: &mut StepReport) {
    let have: Vec<String> = lines.iter().map(|l| show::normalise(l)).collect();
    let wanted = expect.contains.iter().map(|w| (w, true));
    let unwanted = expect.not_contains.iter().map(|w| (w, false));
    for (line, want) in wanted.chain(unwanted) {
        let w = show::normalise(line);
        let present = have.iter().any(|h| show::matches(&w, h));
        report.checks.push(Check {
            expected: format!("{}line {w:?}", if want { "" } else { "no " }),
            actual: match (present, want) {
                (true, _) => "present",
                (false, true) => "missing",
                (false, false) => "absent",
            }
            .into(),
            passed: present == want,
        });
    }
    for text in &expect.not_mentioning {
        let found = lines.iter().find(|l| l.contains(text.as_str()));
        report.checks.push(Check {
            expected: format!("no line mentioning {text:?}"),
            actual: found.map_or("none".into(), |l| format!("{:?}", show::normalise(l))),
            passed: found.is_none(),
        });
    }
}
