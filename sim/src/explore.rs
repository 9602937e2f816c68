//! `nexthop-sim explore`: fault campaigns over a lab.
//!
//! Owns drawing fault schedules, running a lab's scenario with one
//! interleaved, the invariants checked along the way and after convergence,
//! shrinking a failing schedule, and the campaign's summary. Running steps
//! is [`crate::run`]'s; the faults are the scenario's own verbs (`link`,
//! `loss`, `latency`, `apiserver`, `reboot`, `restart`).
//!
//! A run draws 1 to `max_faults` faults from its seed ([`Schedule::draw`]),
//! each injected before one scenario step and healed before a later one (or
//! after the last), on interfaces, nodes and routers the scenario itself
//! never touches. Then:
//!
//! - before every step: no forwarding loop (a walk of the FIBs,
//!   [`crate::paths`], from every forwarding host towards every prefix any
//!   host routes never comes back to a host it passed), never two nodes
//!   answering ARP for one address, and no tracked connection moved to
//!   another backend (a connection a node's conntrack held at the previous
//!   check and still holds keeps its backend);
//! - the lab's own expectations hold for the steps before the first fault
//!   (the later ones run unchecked: labs tie steps to what happened just
//!   before, which faults shift);
//! - after a final quiet period every host's FIB and every BGP session's
//!   state are what the same lab reaches without faults (the baseline,
//!   which passes all its expectations): no blackhole or stale route left,
//!   sessions Established again.
//!
//! A failing run's schedule is shrunk to the fewest faults that still fail;
//! the run's seed replays it (`--replay`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::IpNet;
use router_core::hash::splitmix64;
use smoltcp::time::Duration;

use crate::EngineConfig;
use crate::cluster::Cluster;
use crate::lab::topology::{EndpointRef, NodeKind};
use crate::lab::{Action, Dur, Expect, Lab, Step};
use crate::paths::{self, End};
use crate::run::{self, Report};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// An interface's link down.
    Link,
    /// Loss on a link.
    Loss,
    /// Added latency on a link.
    Latency,
    /// A node cut off: every link of it down, and from the API server.
    Partition,
    /// A node down for a while (power lost, then booted).
    Crash,
    /// A node's agent restarted (down for a second).
    Restart,
    /// An FRR router's bgpd restarted (graceful restart).
    RouterRestart,
}

impl FaultKind {
    /// Every kind, in the summary's order.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Link,
        FaultKind::Loss,
        FaultKind::Latency,
        FaultKind::Partition,
        FaultKind::Crash,
        FaultKind::Restart,
        FaultKind::RouterRestart,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Link => "link",
            FaultKind::Loss => "loss",
            FaultKind::Latency => "latency",
            FaultKind::Partition => "partition",
            FaultKind::Crash => "crash",
            FaultKind::Restart => "restart",
            FaultKind::RouterRestart => "router-restart",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown fault {name:?} (known: {})", known.join(", "))
            })
    }
}

/// One fault of a schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// What it is.
    pub kind: FaultKind,
    /// Injected before scenario step `at` (from 0).
    pub at: usize,
    /// Healed before scenario step `until` (`> at`; the scenario's length:
    /// after its last step).
    pub until: usize,
    /// The steps that inject it.
    pub inject: Vec<Action>,
    /// The steps that heal it.
    pub heal: Vec<Action>,
    /// What it does, for people.
    pub what: String,
}

/// The faults of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    /// The faults, in the order drawn.
    pub faults: Vec<Fault>,
}

impl Schedule {
    /// The first step a fault precedes; `None` without faults.
    fn first(&self) -> Option<usize> {
        self.faults.iter().map(|f| f.at).min()
    }
}

impl Schedule {
    /// The scenario's `steps` with the faults' injections and healings
    /// between them, then a `quiet` period; each step with whether its
    /// expectations count (before the first fault only).
    pub fn interleave(&self, steps: &[Step], quiet: Duration) -> Vec<(Step, bool)> {
        let n = steps.len();
        let first = self.first().unwrap_or(n);
        let extra = |name: String, action: Action| Step {
            name,
            action,
            expect: Expect::default(),
            line: 0,
        };
        let mut plan = Vec::new();
        for i in 0..=n {
            for f in self.faults.iter().filter(|f| f.until == i) {
                for a in &f.heal {
                    plan.push((extra(format!("fault over: {}", f.what), a.clone()), false));
                }
            }
            for f in self.faults.iter().filter(|f| f.at == i) {
                for a in &f.inject {
                    plan.push((extra(format!("fault: {}", f.what), a.clone()), false));
                }
            }
            if let Some(step) = steps.get(i) {
                plan.push((step.clone(), i < first));
            }
        }
        plan.push((
            extra("quiet period".into(), Action::Wait(Dur(quiet))),
            false,
        ));
        plan
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return writeln!(f, "  (no faults)");
        }
        for fault in &self.faults {
            writeln!(
                f,
                "  {}: {} from before step {} until before step {}",
                fault.kind.name(),
                fault.what,
                fault.at + 1,
                fault.until + 1
            )?;
        }
        Ok(())
    }
}

/// What the lab offers faults, leaving out whatever its scenario touches.
struct Targets {
    /// Host interfaces on links (k8s-nodes' and routers'), with the link's
    /// own latency and loss.
    links: Vec<(EndpointRef, Dur, f64)>,
    /// K8s-nodes.
    nodes: Vec<String>,
    /// Routers running FRR.
    routers: Vec<String>,
    /// L2 announcements are on (a partition cuts the API server off too).
    leases: bool,
}

impl Targets {
    fn of(lab: &Lab) -> Targets {
        let mut touched_nodes = BTreeSet::new();
        let mut touched_links = BTreeSet::new();
        for step in &lab.scenario.steps {
            match &step.action {
                Action::Link { endpoint, .. }
                | Action::Loss { endpoint, .. }
                | Action::Latency { endpoint, .. } => {
                    touched_links.insert(endpoint.clone());
                }
                Action::Down { node, .. }
                | Action::Restart(node)
                | Action::Drain { node, .. }
                | Action::ApiServer {
                    node: Some(node), ..
                } => {
                    touched_nodes.insert(node.clone());
                }
                _ => {}
            }
        }
        let topology = &lab.topology;
        let faultable = |name: &str| {
            topology.nodes.get(name).is_some_and(|n| {
                matches!(n.kind, NodeKind::K8sNode | NodeKind::Router)
                    && !touched_nodes.contains(name)
            })
        };
        let mut links = Vec::new();
        for link in &topology.links {
            for end in &link.endpoints {
                let Some(e) = EndpointRef::parse(end) else {
                    continue;
                };
                if faultable(&e.node) && !touched_links.contains(&e) {
                    let latency = link.latency.unwrap_or(topology.defaults.latency);
                    links.push((e, latency, link.loss.unwrap_or(0.0)));
                }
            }
        }
        let of_kind = |kind: NodeKind| -> Vec<String> {
            (topology.nodes.iter())
                .filter(|(name, n)| n.kind == kind && faultable(name))
                .map(|(name, _)| name.clone())
                .collect()
        };
        Targets {
            links,
            nodes: of_kind(NodeKind::K8sNode),
            routers: of_kind(NodeKind::Router)
                .into_iter()
                .filter(|r| lab.frr.contains_key(r))
                .collect(),
            leases: lab.values.l2announcements.enabled,
        }
    }

    /// The kinds among `wanted` this lab has targets for.
    fn kinds(&self, wanted: &[FaultKind]) -> Vec<FaultKind> {
        (wanted.iter().copied())
            .filter(|k| match k {
                FaultKind::Link | FaultKind::Loss | FaultKind::Latency => !self.links.is_empty(),
                FaultKind::Partition | FaultKind::Crash | FaultKind::Restart => {
                    !self.nodes.is_empty()
                }
                FaultKind::RouterRestart => !self.routers.is_empty(),
            })
            .collect()
    }
}

/// Random numbers from a run's seed.
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        (splitmix64(&mut self.0) % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.below(from.len())]
    }
}

impl Schedule {
    /// The schedule of the run with seed `seed`: 1 to `max` faults of the
    /// `kinds` the lab has targets for (none when it has none).
    pub fn draw(lab: &Lab, seed: u64, kinds: &[FaultKind], max: usize) -> Schedule {
        let targets = Targets::of(lab);
        let kinds = targets.kinds(kinds);
        let steps = lab.scenario.steps.len();
        if kinds.is_empty() || steps == 0 {
            return Schedule::default();
        }
        let mut d = Draw(seed);
        let count = 1 + d.below(max.max(1));
        let faults = (0..count)
            .map(|_| {
                let kind = *d.pick(&kinds);
                let at = d.below(steps);
                let until = at + 1 + d.below(steps - at);
                let (inject, heal, what) = fault(kind, &targets, &mut d);
                Fault {
                    kind,
                    at,
                    until,
                    inject,
                    heal,
                    what,
                }
            })
            .collect();
        Schedule { faults }
    }
}

/// The steps of one fault of `kind` and its healing, with a description.
fn fault(kind: FaultKind, t: &Targets, d: &mut Draw) -> (Vec<Action>, Vec<Action>, String) {
    let dur = |s: &&str| Dur::parse(s).expect("a valid duration");
    match kind {
        FaultKind::Link => {
            let (e, _, _) = d.pick(&t.links).clone();
            let what = format!("link down {}:{}", e.node, e.interface);
            let down = Action::Link {
                endpoint: e.clone(),
                up: false,
            };
            (
                vec![down],
                vec![Action::Link {
                    endpoint: e,
                    up: true,
                }],
                what,
            )
        }
        FaultKind::Loss => {
            let (e, _, loss) = d.pick(&t.links).clone();
            let probability = *d.pick(&[0.1, 0.3, 0.6]);
            let what = format!("loss {probability} on {}:{}", e.node, e.interface);
            let inject = Action::Loss {
                endpoint: e.clone(),
                probability,
            };
            let heal = Action::Loss {
                endpoint: e,
                probability: loss,
            };
            (vec![inject], vec![heal], what)
        }
        FaultKind::Latency => {
            let (e, latency, _) = d.pick(&t.links).clone();
            let added = dur(d.pick(&["20ms", "200ms", "1s"]));
            let what = format!("latency {added} on {}:{}", e.node, e.interface);
            let inject = Action::Latency {
                endpoint: e.clone(),
                latency: added,
            };
            let heal = Action::Latency {
                endpoint: e,
                latency,
            };
            (vec![inject], vec![heal], what)
        }
        FaultKind::Partition => {
            let node = d.pick(&t.nodes).clone();
            let mine: Vec<EndpointRef> = (t.links.iter())
                .filter(|(e, _, _)| e.node == node)
                .map(|(e, _, _)| e.clone())
                .collect();
            let link = |up: bool| -> Vec<Action> {
                (mine.iter())
                    .map(|e| Action::Link {
                        endpoint: e.clone(),
                        up,
                    })
                    .collect()
            };
            let (mut inject, mut heal) = (link(false), link(true));
            if t.leases {
                let api = |reachable: bool| Action::ApiServer {
                    reachable,
                    latency: None,
                    node: Some(node.clone()),
                };
                inject.push(api(false));
                heal.push(api(true));
            }
            (inject, heal, format!("{node} cut off"))
        }
        FaultKind::Crash => {
            let node = d.pick(&t.nodes).clone();
            let down_for = dur(d.pick(&["10s", "30s", "60s"]));
            let what = format!("{node} down for {down_for}");
            let inject = Action::Down {
                node,
                down_for: Some(down_for),
            };
            (vec![inject], Vec::new(), what)
        }
        FaultKind::Restart => {
            let node = d.pick(&t.nodes).clone();
            let what = format!("{node}'s agent restarted");
            let inject = Action::Down {
                node,
                down_for: Some(dur(&"1s")),
            };
            (vec![inject], Vec::new(), what)
        }
        FaultKind::RouterRestart => {
            let router = d.pick(&t.routers).clone();
            let what = format!("{router}'s bgpd restarted");
            (vec![Action::Restart(router)], Vec::new(), what)
        }
    }
}

/// What a converged network looks like: every host's routes and every BGP
/// session's state, as text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Converged {
    routes: BTreeMap<String, BTreeSet<String>>,
    sessions: BTreeSet<String>,
}

impl Converged {
    fn of(cluster: &Cluster) -> Converged {
        let mut routes = BTreeMap::new();
        for name in cluster.host_names() {
            let Some(h) = cluster.host(name) else {
                continue;
            };
            let set = (h.host.fib().routes())
                .map(|r| format!("{} {:?}", r.prefix, r.group.members()))
                .collect();
            routes.insert(name.clone(), set);
        }
        let sessions = (cluster.bgp_peers().iter())
            .map(|p| format!("{} {} {}: {}", p.node, p.instance, p.peer_address, p.state))
            .collect();
        Converged { routes, sessions }
    }

    /// How `self` differs from `baseline`, a line each (at most a few per host).
    fn differences(&self, baseline: &Converged) -> Vec<String> {
        let mut out = Vec::new();
        for (host, want) in &baseline.routes {
            let have = self.routes.get(host).cloned().unwrap_or_default();
            let missing: Vec<&String> = want.difference(&have).take(3).collect();
            let extra: Vec<&String> = have.difference(want).take(3).collect();
            if !missing.is_empty() || !extra.is_empty() {
                out.push(format!(
                    "{host}'s FIB differs from the run without faults: missing {missing:?}, extra {extra:?}"
                ));
            }
        }
        let missing: Vec<&String> = baseline.sessions.difference(&self.sessions).collect();
        if !missing.is_empty() {
            let now: Vec<&String> = self.sessions.difference(&baseline.sessions).collect();
            out.push(format!(
                "BGP sessions differ from the run without faults: expected {missing:?}, have {now:?}"
            ));
        }
        out
    }
}

/// A forwarding loop: from every forwarding host, towards every prefix any
/// host routes ([`paths`]), the first walk that comes back to a host it
/// passed.
fn loops(cluster: &Cluster) -> Vec<String> {
    let mut prefixes = BTreeSet::new();
    for name in cluster.host_names() {
        if let Some(h) = cluster.host(name) {
            prefixes.extend(h.host.fib().routes().map(|r| r.prefix));
        }
    }
    let prefixes: Vec<IpNet> = prefixes
        .into_iter()
        .filter(|p| p.prefix_len() > 0)
        .collect();
    let dsts: Vec<IpAddr> = prefixes.iter().map(|p| representative(*p)).collect();
    for name in cluster.host_names() {
        if !cluster.host(name).is_some_and(|h| paths::forwards(&h.role)) {
            continue;
        }
        let walks = paths::paths_to(cluster, name, &dsts);
        for ((dst, walks), prefix) in walks.into_iter().zip(&prefixes) {
            if let Some(l) = walks.iter().find(|w| w.end == End::Loop) {
                return vec![format!(
                    "forwarding loop towards {dst} ({prefix}): {}",
                    l.hosts.join(" → ")
                )];
            }
        }
    }
    Vec::new()
}

/// An address inside `prefix` to walk towards (its first host address).
fn representative(prefix: IpNet) -> IpAddr {
    match prefix {
        IpNet::V4(p) if p.prefix_len() < 31 => IpAddr::V4((u32::from(p.network()) + 1).into()),
        IpNet::V6(p) if p.prefix_len() < 127 => IpAddr::V6((u128::from(p.network()) + 1).into()),
        p => p.network(),
    }
}

/// Two nodes answering ARP for one address.
fn double_answers(cluster: &Cluster) -> Vec<String> {
    if !cluster.lab.values.l2announcements.enabled {
        return Vec::new();
    }
    let mut by_addr: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for node in cluster.workloads.nodes() {
        for entry in cluster.l2_table(&node.name).unwrap_or_default() {
            by_addr
                .entry(entry.ip)
                .or_default()
                .insert(node.name.clone());
        }
    }
    (by_addr.into_iter())
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(ip, nodes)| format!("{ip} is answered by {nodes:?} at once"))
        .collect()
}

/// A tracked connection at a check: when it was opened (which tells a
/// connection from a later one with the same tuple) and its backend (the
/// reply's source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    opened: smoltcp::time::Instant,
    backend: (IpAddr, u16),
}

/// Every node's tracked service connections at a check, and its service
/// table's generation.
#[derive(Clone, Debug, Default)]
struct Tracked {
    conns: BTreeMap<(String, router_core::service::Tuple), Held>,
    generations: BTreeMap<String, u64>,
}

fn tracked(cluster: &Cluster) -> Tracked {
    let now = cluster.engine.now();
    let mut out = Tracked::default();
    for node in cluster.workloads.nodes() {
        let Some(h) = cluster.host(&node.name) else {
            continue;
        };
        let services = h.host.services();
        out.generations
            .insert(node.name.clone(), services.generation());
        for t in services.tracked(now) {
            let held = Held {
                opened: t.opened,
                backend: (t.reply.src, t.reply.src_port),
            };
            out.conns.insert((node.name.clone(), t.original), held);
        }
    }
    out
}

/// Connections tracked at both checks (the same entry: opened at the same
/// time) whose backend changed in between, on a node whose service table
/// stayed the same: Cilium picks a tracked connection's backend again only
/// when its frontend or backend goes away, and router-core only by opening
/// a new entry.
fn moved(before: &Tracked, now: &Tracked) -> Vec<String> {
    now.conns
        .iter()
        .filter_map(|(key, held)| {
            let old = before.conns.get(key)?;
            let (node, t) = key;
            let same_table = before.generations.get(node) == now.generations.get(node);
            let same_entry = old.opened == held.opened;
            (same_table && same_entry && old.backend != held.backend).then(|| {
                let (a, b) = (old.backend, held.backend);
                format!(
                    "{node}: connection {}:{} -> {}:{} moved from backend {}:{} to {}:{}",
                    t.src, t.src_port, t.dst, t.dst_port, a.0, a.1, b.0, b.1
                )
            })
        })
        .collect()
}

/// One run's result.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The report: the scenario's steps with the faults between them.
    pub report: Report,
    /// Invariants that did not hold, each with the step it was seen at.
    pub violations: Vec<String>,
    /// Invariant checks made.
    pub checks: u64,
    /// Where the network converged to.
    pub converged: Converged,
}

/// How a campaign runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Runs.
    pub runs: u32,
    /// The campaign's seed (each run's seed derives from it).
    pub seed: u64,
    /// The lab's own seed (the same in every run and the baseline).
    pub lab_seed: u64,
    /// Kinds of faults to draw.
    pub faults: Vec<FaultKind>,
    /// Most faults per run.
    pub max_faults: usize,
    /// Parallel runs.
    pub jobs: usize,
    /// How long the network is left alone after the faults.
    pub quiet: Duration,
}

impl Options {
    /// The seed of run `index`.
    pub fn run_seed(&self, index: u32) -> u64 {
        let mut s = self.seed ^ u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        splitmix64(&mut s)
    }
}

/// Run `lab` with `schedule`; with `baseline`, compare where it converges.
pub fn run_schedule(
    lab: &Lab,
    opts: &Options,
    schedule: &Schedule,
    baseline: Option<&Converged>,
    pcap: Option<PathBuf>,
) -> Result<RunOutcome, String> {
    let config = EngineConfig {
        pcap_dir: pcap,
        ..EngineConfig::new(opts.lab_seed)
    };
    let mut cluster = Cluster::build(lab.clone(), config)?;
    let plan = schedule.interleave(&lab.scenario.steps, opts.quiet);
    let (mut events, mut checks, mut violations) = (0, 0u64, Vec::new());
    let mut steps = Vec::new();
    let mut connections = Tracked::default();
    for (k, (step, checked)) in plan.iter().enumerate() {
        let now = tracked(&cluster);
        let found = (loops(&cluster).into_iter())
            .chain(double_answers(&cluster))
            .chain(moved(&connections, &now));
        for v in found {
            violations.push(format!("before step {} ({}): {v}", k + 1, step.name));
        }
        connections = now;
        checks += 3;
        let report = run::run_step(&mut cluster, step, &mut events);
        if *checked {
            checks += report.checks.len() as u64;
            if !report.passed() {
                let failed: Vec<String> = (report.checks.iter())
                    .filter(|c| !c.passed)
                    .map(|c| format!("expect {}: got {}", c.expected, c.actual))
                    .chain(report.error.clone())
                    .collect();
                violations.push(format!(
                    "step {} ({}, scenario.yaml:{}): {}",
                    k + 1,
                    step.name,
                    step.line,
                    failed.join("; ")
                ));
            }
        }
        steps.push(report);
    }
    let converged = Converged::of(&cluster);
    if let Some(baseline) = baseline {
        checks += 2;
        violations.extend(converged.differences(baseline));
    }
    cluster.engine.flush_captures().map_err(|e| e.to_string())?;
    Ok(RunOutcome {
        report: run::report(&cluster, opts.lab_seed, steps, events),
        violations,
        checks,
        converged,
    })
}

/// A failing run.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Its seed (`--replay`).
    pub seed: u64,
    /// Its schedule.
    pub schedule: Schedule,
    /// The fewest of its faults that still fail.
    pub shrunk: Schedule,
    /// What did not hold (the shrunk schedule's).
    pub violations: Vec<String>,
}

/// A campaign's result.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The lab's name.
    pub lab: String,
    /// Runs made.
    pub runs: u32,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Invariant checks made.
    pub checks: u64,
    /// The failing runs, by run index.
    pub failures: BTreeMap<u32, Failure>,
}

impl Summary {
    /// The summary table.
    pub fn table(&self, seconds: f64) -> String {
        let mut s = String::new();
        let kinds: Vec<String> = FaultKind::ALL
            .iter()
            .map(|k| k.name().to_uppercase())
            .collect();
        let _ = writeln!(
            s,
            "{:<22} {:>5} {:>7} {} {:>8} {:>6} {:>7}",
            "LAB",
            "RUNS",
            "FAULTS",
            kinds.join(" "),
            "CHECKS",
            "FAILED",
            "RUNS/S"
        );
        let counts: Vec<String> = (FaultKind::ALL.iter().zip(&kinds))
            .map(|(k, name)| {
                let n = self.faults.get(k).copied().unwrap_or(0);
                format!("{n:>width$}", width = name.len())
            })
            .collect();
        let total: u64 = self.faults.values().sum();
        let _ = writeln!(
            s,
            "{:<22} {:>5} {:>7} {} {:>8} {:>6} {:>7.1}",
            self.lab,
            self.runs,
            total,
            counts.join(" "),
            self.checks,
            self.failures.len(),
            f64::from(self.runs) / seconds.max(1e-9)
        );
        s
    }

    /// Each failure: its seed, its shrunk schedule, what did not hold.
    pub fn failures(&self) -> String {
        let mut s = String::new();
        for (index, f) in &self.failures {
            let _ = writeln!(
                s,
                "run {index} failed (seed {}; replay: --replay {}); shrunk from {} to {} faults:",
                f.seed,
                f.seed,
                f.schedule.faults.len(),
                f.shrunk.faults.len()
            );
            let _ = write!(s, "{}", f.shrunk);
            for v in &f.violations {
                let _ = writeln!(s, "  violated: {v}");
            }
        }
        s
    }
}

/// The fewest faults of `schedule` that still fail (greedy: drop one fault
/// at a time while the rest fails), with what they violate (`violations`:
/// the whole schedule's).
pub fn shrink(
    lab: &Lab,
    opts: &Options,
    baseline: &Converged,
    schedule: &Schedule,
    violations: Vec<String>,
) -> (Schedule, Vec<String>) {
    let mut current = (schedule.clone(), violations);
    'shrinking: loop {
        for i in 0..current.0.faults.len() {
            let mut fewer = current.0.clone();
            fewer.faults.remove(i);
            if let Ok(out) = run_schedule(lab, opts, &fewer, Some(baseline), None)
                && !out.violations.is_empty()
            {
                current = (fewer, out.violations);
                continue 'shrinking;
            }
        }
        return current;
    }
}

/// The run without faults, which must pass its own expectations.
pub fn baseline(lab: &Lab, opts: &Options) -> Result<Converged, String> {
    let out = run_schedule(lab, opts, &Schedule::default(), None, None)?;
    if !out.violations.is_empty() || !out.report.passed() {
        return Err(format!(
            "{}: the lab fails without faults:\n{}{}",
            lab.topology.name,
            out.report.render(),
            out.violations.join("\n")
        ));
    }
    Ok(out.converged)
}

/// Run a campaign over `lab`; `progress(done, failed)` after every run.
pub fn explore(
    lab: &Lab,
    opts: &Options,
    progress: impl Fn(u32, usize) + Sync,
) -> Result<Summary, String> {
    let baseline = baseline(lab, opts)?;
    let next = AtomicUsize::new(0);
    let summary = Mutex::new(Summary {
        lab: lab.topology.name.clone(),
        ..Summary::default()
    });
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Ok(index) = u32::try_from(index) else {
                        break;
                    };
                    if index >= opts.runs {
                        break;
                    }
                    let seed = opts.run_seed(index);
                    let schedule = Schedule::draw(lab, seed, &opts.faults, opts.max_faults);
                    let outcome = run_schedule(lab, opts, &schedule, Some(&baseline), None);
                    let failure = match outcome {
                        Ok(out) if out.violations.is_empty() => Ok((out.checks, None)),
                        Ok(out) => {
                            let (shrunk, violations) =
                                shrink(lab, opts, &baseline, &schedule, out.violations);
                            Ok((
                                out.checks,
                                Some(Failure {
                                    seed,
                                    schedule: schedule.clone(),
                                    shrunk,
                                    violations,
                                }),
                            ))
                        }
                        Err(e) => Err(e),
                    };
                    let mut s = summary.lock().expect("not poisoned");
                    s.runs += 1;
                    for f in &schedule.faults {
                        *s.faults.entry(f.kind).or_default() += 1;
                    }
                    match failure {
                        Ok((checks, failed)) => {
                            s.checks += checks;
                            if let Some(f) = failed {
                                s.failures.insert(index, f);
                            }
                        }
                        Err(e) => errors.lock().expect("not poisoned").push(e),
                    }
                    progress(s.runs, s.failures.len());
                }
            });
        }
    });
    if let Some(e) = errors
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .next()
    {
        return Err(e);
    }
    Ok(summary.into_inner().expect("not poisoned"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::service::{Protocol, Tuple};

    #[test]
    fn a_connection_that_changes_backend_is_caught() {
        use smoltcp::time::Instant;
        let t = Tuple {
            src: "172.20.0.5".parse().unwrap(),
            dst: "10.96.0.10".parse().unwrap(),
            src_port: 40000,
            dst_port: 80,
            protocol: Protocol::Tcp,
        };
        let b1 = ("172.20.1.7".parse().unwrap(), 80);
        let b2 = ("172.20.2.9".parse().unwrap(), 80);
        let node = || "k8s-ctr".to_string();
        let at = |opened: i64, backend, generation: u64| Tracked {
            conns: [(
                (node(), t),
                Held {
                    opened: Instant::from_secs(opened),
                    backend,
                },
            )]
            .into(),
            generations: [(node(), generation)].into(),
        };
        assert!(moved(&at(1, b1, 7), &at(1, b1, 7)).is_empty());
        assert_eq!(
            moved(&at(1, b1, 7), &at(1, b2, 7)),
            [
                "k8s-ctr: connection 172.20.0.5:40000 -> 10.96.0.10:80 moved from backend 172.20.1.7:80 to 172.20.2.9:80"
            ]
        );
        // Legitimate: a new connection with the same tuple, a table that
        // changed in between, a connection not tracked before.
        assert!(moved(&at(1, b1, 7), &at(5, b2, 7)).is_empty());
        assert!(moved(&at(1, b1, 7), &at(1, b2, 8)).is_empty());
        assert!(moved(&Tracked::default(), &at(1, b2, 7)).is_empty());
    }
}
