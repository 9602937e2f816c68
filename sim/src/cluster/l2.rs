//! L2 announcements on the simulated cluster: each k8s-node runs
//! router-core's [`L2Announcer`] and this module only carries out its
//! actions — lease requests against the cluster's API server, and
//! announce/withdraw on the node's ARP responder, with a gratuitous ARP on
//! taking over — and hands it the objects (services with LB-IPAM's ingress
//! addresses, policies) and the node's interfaces with their link state.
//!
//! The API server keeps the leases in router-core's
//! [`MemoryStore`](router_core::lease::MemoryStore); a request is applied
//! when sent and answered after the server's latency. Every running node
//! reaches it (its links notwithstanding) unless a step takes it away: then
//! requests go unanswered, and each elector gives its request up at its
//! renew deadline. IPv6 addresses are elected but
//! not answered for: the simulated hosts have no NDP responder yet.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

use nexthop_netstack::Host;
use router_core::cilium::Objects;
use router_core::cilium::l2announce::{Action, Entry, Interface, L2Announcer};
use router_core::lease::{MemoryStore, Request, Response, Versioned};
use smoltcp::time::{Duration, Instant};

use super::Cluster;
use crate::show;

/// How long a node may be unreachable before Kubernetes marks it NotReady
/// and its pods' endpoints not ready (kube-controller-manager's
/// `--node-monitor-grace-period`, 40 s).
pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(40);

/// Something due to happen to a down node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeEvent {
    /// Its reboot ends.
    Boot,
    /// Kubernetes gives up on it: its endpoints go not-ready.
    NotReady,
}

/// How long the API server takes to answer, unless a step says otherwise.
pub const API_LATENCY: Duration = Duration::from_millis(2);

/// The cluster's API server, as far as leases go.
#[derive(Debug)]
pub struct ApiServer {
    store: MemoryStore,
    /// When each lease was created (for `AGE`).
    created: BTreeMap<String, Instant>,
    /// How long an answer takes.
    latency: Duration,
    /// Whether requests reach it.
    reachable: bool,
    /// Nodes whose requests do not reach it (a partition).
    cut_off: BTreeSet<String>,
    /// Writes accepted.
    writes: u64,
}

impl Default for ApiServer {
    fn default() -> Self {
        ApiServer {
            store: MemoryStore::default(),
            created: BTreeMap::new(),
            latency: API_LATENCY,
            reachable: true,
            cut_off: BTreeSet::new(),
            writes: 0,
        }
    }
}

impl ApiServer {
    /// Carry out a request `node` sent at `now`: the answer and when it
    /// arrives, or `None` while the server is unreachable from it.
    fn request(
        &mut self,
        now: Instant,
        node: &str,
        lease: &str,
        request: Request,
    ) -> Option<(Instant, Response)> {
        if !self.reachable || self.cut_off.contains(node) {
            return None;
        }
        let response = self.store.apply(lease, request);
        if matches!(response, Response::Written(_)) {
            self.writes += 1;
            self.created.entry(lease.into()).or_insert(now);
        }
        Some((now + self.latency, response))
    }

    /// `kubectl -n kube-system get lease`: NAME, HOLDER, AGE.
    pub fn rows(&self, now: Instant) -> Vec<[String; 3]> {
        self.store
            .leases()
            .map(|(name, v): (&str, &Versioned)| {
                let age = self.created.get(name).map_or(Duration::ZERO, |c| now - *c);
                [name.into(), v.record.holder.clone(), show::age(age)]
            })
            .collect()
    }
}

/// One node's L2 announcer and the answers on their way to it.
#[derive(Debug)]
pub struct L2Node {
    /// The node's name.
    node: String,
    announcer: L2Announcer,
    api: Rc<RefCell<ApiServer>>,
    answers: VecDeque<(Instant, String, u64, Response)>,
}

impl L2Node {
    /// `node`'s announcer talking to `api`.
    pub fn new(node: &str, announcer: L2Announcer, api: Rc<RefCell<ApiServer>>) -> Self {
        L2Node {
            node: node.into(),
            announcer,
            api,
            answers: VecDeque::new(),
        }
    }

    /// What the node answers for (`l2-announce`).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.announcer.entries().iter()
    }

    /// Follow the objects and the interfaces.
    pub fn reconcile(
        &mut self,
        now: Instant,
        objects: &Objects,
        interfaces: &[Interface],
        host: &mut Host,
    ) {
        let actions = self.announcer.reconcile(now, objects, interfaces);
        self.carry_out(now, actions, host);
    }

    /// Deliver the answers due and let time pass.
    pub fn poll(&mut self, now: Instant, host: &mut Host) {
        while self.answers.front().is_some_and(|a| a.0 <= now) {
            let (_, lease, id, response) = self.answers.pop_front().expect("checked");
            let actions = self.announcer.handle(now, &lease, id, response);
            self.carry_out(now, actions, host);
        }
        let actions = self.announcer.tick(now);
        self.carry_out(now, actions, host);
    }

    /// When [`Self::poll`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        let answer = self.answers.front().map(|a| a.0);
        [answer, self.announcer.poll_at()]
            .into_iter()
            .flatten()
            .min()
    }

    fn carry_out(&mut self, now: Instant, actions: Vec<Action>, host: &mut Host) {
        for action in actions {
            match action {
                Action::Lease { lease, id, request } => {
                    let answer = self
                        .api
                        .borrow_mut()
                        .request(now, &self.node, &lease, request);
                    if let Some((at, response)) = answer {
                        let after = self.answers.partition_point(|a| a.0 <= at);
                        self.answers.insert(after, (at, lease, id, response));
                    }
                }
                Action::Announce(entry) => {
                    if let Some(port) = host.port_id(&entry.interface) {
                        host.announce(port, entry.ip);
                        host.announce_takeover(port, entry.ip);
                    }
                }
                Action::Withdraw(entry) => {
                    if let Some(port) = host.port_id(&entry.interface) {
                        host.withdraw(port, entry.ip);
                    }
                }
            }
        }
    }
}

impl Cluster {
    /// Bring every running node's L2 announcer in line with the objects
    /// and its links (nothing when `l2announcements.enabled` is false).
    pub(super) fn reconcile_l2(&mut self, objects: &Objects) {
        let values = &self.lab.values.l2announcements;
        if !values.enabled {
            return;
        }
        let timings = values.timings();
        let now = self.engine.now();
        for name in self.node_names() {
            let id = self.hosts[&name];
            let interfaces = self.node_interfaces(&name);
            let api = Rc::clone(&self.api);
            let seed = self.l2_seed ^ router_core::hash::fnv1a(name.as_bytes());
            let node = self.engine.node_mut(id);
            if node.down {
                continue;
            }
            let l2 = node.l2.get_or_insert_with(|| {
                let (announcer, _) = L2Announcer::new(&name, timings, seed);
                L2Node::new(&name, announcer, api)
            });
            l2.reconcile(now, objects, &interfaces, &mut node.host);
            self.engine.wake_node(id);
        }
    }

    /// Take a node down at once, as a crash or the start of a reboot: it
    /// stops receiving, sending and running (its BGP speaker and L2
    /// announcer die with it); with `until`, it boots again then. Still
    /// down after [`NODE_MONITOR_GRACE`], its pods' endpoints go not-ready.
    pub fn node_down(&mut self, node: &str, until: Option<Instant>) -> Result<(), String> {
        let id = self
            .workloads
            .node(node)
            .and_then(|_| self.host_id(node))
            .ok_or_else(|| format!("no node named {node:?}"))?;
        let now = self.engine.now();
        let host = self.engine.node_mut(id);
        host.down = true;
        host.l2 = None;
        host.host.bgp_stop(now);
        if let Some(at) = until {
            self.timeline
                .entry(at)
                .or_default()
                .push((node.into(), NodeEvent::Boot));
        }
        self.timeline
            .entry(now + NODE_MONITOR_GRACE)
            .or_default()
            .push((node.into(), NodeEvent::NotReady));
        Ok(())
    }

    /// Run the engine to `deadline`, carrying out the down nodes' events
    /// on the way: reboots ending, endpoints of nodes down too long going
    /// not-ready.
    pub fn run_until(&mut self, deadline: Instant) -> Result<u64, String> {
        let mut events = 0;
        loop {
            let next = self.timeline.first_key_value().map(|(t, _)| *t);
            let until = next.filter(|t| *t <= deadline).unwrap_or(deadline);
            let stats = self.engine.run_until(until).map_err(|e| e.to_string())?;
            events += stats.events;
            if until == deadline && next.is_none_or(|t| t > deadline) {
                return Ok(events);
            }
            let (_, due) = self.timeline.pop_first().expect("an event is due");
            for (node, event) in due {
                let id = self.hosts[&node];
                match event {
                    NodeEvent::Boot => {
                        self.engine.node_mut(id).down = false;
                        self.engine.wake_node(id);
                        self.not_ready.remove(&node);
                    }
                    NodeEvent::NotReady if self.engine.node(id).down => {
                        self.not_ready.insert(node);
                    }
                    NodeEvent::NotReady => {}
                }
            }
            self.settle()?;
        }
    }

    /// Whether `node`'s pods' endpoints are ready (not on a node down for
    /// longer than [`NODE_MONITOR_GRACE`]).
    pub(super) fn endpoints_ready_on(&self, node: &str) -> bool {
        !self.not_ready.contains(node)
    }

    /// A node's topology interfaces and whether each has its link.
    fn node_interfaces(&self, node: &str) -> Vec<Interface> {
        let Some(spec) = self.lab.topology.nodes.get(node) else {
            return Vec::new();
        };
        spec.interfaces
            .keys()
            .map(|name| {
                let end = crate::lab::topology::EndpointRef {
                    node: node.into(),
                    interface: name.clone(),
                };
                let up = self
                    .interface(&end)
                    .and_then(|e| self.engine.is_port_up(e))
                    .unwrap_or(false);
                Interface {
                    name: name.clone(),
                    up,
                }
            })
            .collect()
    }

    /// `kubectl -n kube-system get lease` rows for the L2 announcement
    /// leases.
    pub fn lease_rows(&self) -> Vec<[String; 3]> {
        self.api.borrow().rows(self.engine.now())
    }

    /// Make the API server reachable or not, and change how long it takes
    /// to answer.
    /// Make the API server reachable or not — from every node, or only
    /// from `node` (a partition) — and change how long it takes to answer.
    pub fn set_api_server(
        &mut self,
        reachable: bool,
        latency: Option<Duration>,
        node: Option<&str>,
    ) {
        let mut api = self.api.borrow_mut();
        match (node, reachable) {
            (None, _) => api.reachable = reachable,
            (Some(n), false) => {
                api.cut_off.insert(n.into());
            }
            (Some(n), true) => {
                api.cut_off.remove(n);
            }
        }
        if let Some(l) = latency {
            api.latency = l;
        }
    }

    /// Lease writes the API server accepted so far.
    pub fn lease_writes(&self) -> u64 {
        self.api.borrow().writes
    }

    /// What a node answers ARP for (`db/show l2-announce`).
    pub fn l2_table(&self, node: &str) -> Result<Vec<Entry>, String> {
        let host = self
            .host(node)
            .ok_or_else(|| format!("no node named {node:?}"))?;
        Ok(host.l2.iter().flat_map(L2Node::entries).cloned().collect())
    }
}
