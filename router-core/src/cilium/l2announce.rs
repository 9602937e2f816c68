//! One node's L2 announcements: which service addresses this node answers
//! ARP (IPv4) and NDP (IPv6) for, on which interfaces, decided by one lease
//! per service as Cilium's L2 announcer decides it. Both runtimes drive
//! this type and carry out its [`Action`]s: the lease requests against
//! their store, and "announce"/"withdraw" on their ARP and NDP responders
//! (announcing starts with a gratuitous ARP or an unsolicited neighbour
//! advertisement).
//!
//! A node takes part in a service's election when a
//! `CiliumL2AnnouncementPolicy` selects both the node (node selector, with
//! `kubernetes.io/hostname` as the kubelet sets it) and the service (service
//! selector over its labels plus `io.kubernetes.service.{name,namespace}`),
//! the service has an address the policy announces (`loadBalancerIPs`:
//! its ingress addresses; `externalIPs`: `spec.externalIPs`), its class is
//! none or `io.cilium/l2-announcer`, and one of the node's interfaces that
//! the policy's regular expressions match is up. Lease names are Cilium's:
//! `cilium-l2announce-<namespace>-<service>` in `kube-system`.
//!
//! Where this goes beyond Cilium:
//! - interfaces that are down do not count: a leader whose last announcing
//!   interface loses its link steps down at once and frees its leases, so
//!   another node takes over within a retry period instead of a lease
//!   duration;
//! - with `externalTrafficPolicy: Local` only nodes with a ready local
//!   endpoint take part (a leader without one would drop the traffic);
//! - services that share an address (LB-IPAM's sharing key) are elected
//!   together: the first of them (by namespace and name) holds the group's
//!   election, the addresses move with it, and only its leader takes part
//!   in the others' (whose records follow within a lease duration). Two
//!   nodes never answer for one address.
//!
//! Owns: the elections ([`crate::lease::Elector`]s), the announced entries,
//! the policies' problems. Does not own: the lease store, the responders,
//! LB-IPAM (the objects come with their ingress addresses filled in).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use smoltcp::time::Instant;

use super::desired::local_endpoints;
use super::kube::Service;
use super::l2policy::L2AnnouncementPolicy;
use super::objects::Objects;
use crate::hash::fnv1a;
use crate::lease::{self, Elector, Input, Output, Timings};

/// The prefix of Cilium's L2 announcement lease names.
pub const LEASE_PREFIX: &str = "cilium-l2announce";
/// The namespace the leases live in (Cilium's agent namespace).
pub const LEASE_NAMESPACE: &str = "kube-system";
/// The load-balancer class Cilium's L2 announcer serves besides class-less
/// services.
pub const L2_LOAD_BALANCER_CLASS: &str = "io.cilium/l2-announcer";
/// The label the kubelet sets on every node.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The policy condition of an interface expression that does not compile.
pub const BAD_INTERFACE_REGEX: &str = "io.cilium/bad-interface-regex";

/// One address announced on one interface (a row of Cilium's `l2-announce`
/// table).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The address.
    pub ip: IpAddr,
    /// The interface it is answered on.
    pub interface: String,
}

/// One of the node's interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its link is up.
    pub up: bool,
}

/// A problem with a policy, as a status condition of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyCondition {
    /// The policy.
    pub policy: String,
    /// The condition type, e.g. [`BAD_INTERFACE_REGEX`].
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// What the runtime is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `request` for the lease to the store; answer with
    /// [`L2Announcer::handle`] and the same lease and id.
    Lease {
        /// The lease's name.
        lease: String,
        /// The request's id.
        id: u64,
        /// The request.
        request: lease::Request,
    },
    /// Start answering for the entry, and say so at once (gratuitous ARP,
    /// unsolicited neighbour advertisement).
    Announce(Entry),
    /// Stop answering for the entry.
    Withdraw(Entry),
}

/// The lease name of a service.
pub fn lease_name(namespace: &str, service: &str) -> String {
    format!("{LEASE_PREFIX}-{namespace}-{service}")
}

/// One service's election.
#[derive(Debug)]
struct Election {
    elector: Elector,
    /// The lease of its address group's first service (its own if first).
    primary: String,
    /// What this node announces for it when leading its group.
    entries: BTreeSet<Entry>,
    /// Still selected (an unselected election runs until its lease is
    /// released, then goes).
    selected: bool,
}

/// One node's L2 announcer.
#[derive(Debug)]
pub struct L2Announcer {
    node: String,
    timings: Timings,
    seed: u64,
    elections: BTreeMap<String, Election>,
    announced: BTreeSet<Entry>,
    conditions: Vec<PolicyCondition>,
}

impl L2Announcer {
    /// The announcer of node `node`, with lease timings (corrected as
    /// Cilium corrects them: see [`Timings::corrected`]) and a seed for
    /// the electors' retry jitter.
    pub fn new(node: &str, timings: Timings, seed: u64) -> (Self, Vec<String>) {
        let (timings, warnings) = timings.corrected();
        let announcer = L2Announcer {
            node: node.into(),
            timings,
            seed,
            elections: BTreeMap::new(),
            announced: BTreeSet::new(),
            conditions: Vec::new(),
        };
        (announcer, warnings)
    }

    /// What this node answers for now (Cilium's `l2-announce` table).
    pub fn entries(&self) -> &BTreeSet<Entry> {
        &self.announced
    }

    /// The leases this node holds as leader.
    pub fn leading(&self) -> impl Iterator<Item = &str> {
        self.elections
            .iter()
            .filter(|(_, e)| e.elector.is_leading())
            .map(|(l, _)| l.as_str())
    }

    /// The leases this node takes part in or still releases.
    pub fn leases(&self) -> impl Iterator<Item = &str> {
        self.elections.keys().map(String::as_str)
    }

    /// The policies' problems found by the last [`Self::reconcile`].
    pub fn conditions(&self) -> &[PolicyCondition] {
        &self.conditions
    }

    /// Lease writes sent so far by the running elections.
    pub fn writes(&self) -> u64 {
        self.elections.values().map(|e| e.elector.writes()).sum()
    }

    /// When [`Self::tick`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        self.elections
            .values()
            .filter_map(|e| e.elector.poll_at())
            .min()
    }

    /// Bring the elections in line with the objects (services with their
    /// ingress addresses filled in) and the node's interfaces.
    pub fn reconcile(
        &mut self,
        now: Instant,
        objects: &Objects,
        interfaces: &[Interface],
    ) -> Vec<Action> {
        self.conditions.clear();
        let wanted = self.wanted(objects, interfaces);
        for election in self.elections.values_mut() {
            election.selected = false;
        }
        for (lease, (primary, entries)) in wanted {
            let seed = self.seed ^ fnv1a(lease.as_bytes());
            let election = self.elections.entry(lease).or_insert_with(|| Election {
                elector: Elector::new(now, &self.node, self.timings, seed),
                primary: String::new(),
                entries: BTreeSet::new(),
                selected: true,
            });
            election.primary = primary;
            election.entries = entries;
            election.selected = true;
        }
        self.settle(now, Vec::new())
    }

    /// The store answered request `id` of `lease`.
    pub fn handle(
        &mut self,
        now: Instant,
        lease: &str,
        id: u64,
        response: lease::Response,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(e) = self.elections.get_mut(lease) {
            let out = e.elector.handle(now, Input::Response { id, response });
            collect(lease, out, &mut actions);
        }
        self.settle(now, actions)
    }

    /// Time passed: renewals, retries, deadlines.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for (lease, e) in &mut self.elections {
            collect(lease, e.elector.handle(now, Input::Tick), &mut actions);
        }
        self.settle(now, actions)
    }

    /// Step down everywhere and free the leases held (the agent stopping).
    pub fn stop(&mut self, now: Instant) -> Vec<Action> {
        for e in self.elections.values_mut() {
            e.selected = false;
        }
        self.settle(now, Vec::new())
    }

    /// For each service this node could announce: its lease, its group's
    /// first lease, and its entries on this node's up interfaces.
    fn wanted(
        &mut self,
        objects: &Objects,
        interfaces: &[Interface],
    ) -> BTreeMap<String, (String, BTreeSet<Entry>)> {
        let mut node_labels = objects
            .nodes
            .get(&self.node)
            .map(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        node_labels
            .entry(HOSTNAME_LABEL.into())
            .or_insert_with(|| self.node.clone());
        let mut policies = Vec::new();
        for policy in objects.l2_policies.values() {
            let Some(devices) = self.devices(policy, interfaces) else {
                continue;
            };
            let spec = &policy.spec;
            if spec
                .node_selector
                .as_ref()
                .is_none_or(|s| s.matches(&node_labels))
            {
                policies.push((policy, devices));
            }
        }
        let local = local_endpoints(objects, &self.node);
        // Every selected service's addresses, and its entries here.
        let mut selected: BTreeMap<String, (BTreeSet<IpAddr>, BTreeSet<Entry>)> = BTreeMap::new();
        for ((namespace, name), service) in &objects.services {
            if !announceable(service) {
                continue;
            }
            let labels = service.selector_labels();
            let mut ips = BTreeSet::new();
            let mut entries = BTreeSet::new();
            for (policy, devices) in &policies {
                let spec = &policy.spec;
                if !spec
                    .service_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&labels))
                {
                    continue;
                }
                let mut addrs = Vec::new();
                if spec.load_balancer_ips {
                    addrs.extend(
                        service
                            .status
                            .load_balancer
                            .ingress
                            .iter()
                            .filter_map(|i| i.ip),
                    );
                }
                if spec.external_ips {
                    addrs.extend(service.spec.external_ips.iter().copied());
                }
                for ip in addrs {
                    ips.insert(ip);
                    for interface in devices {
                        entries.insert(Entry {
                            ip,
                            interface: interface.clone(),
                        });
                    }
                }
            }
            let key = (namespace.clone(), name.clone());
            if service.external_traffic_local() && !local.contains(&key) {
                entries.clear();
            }
            if !ips.is_empty() {
                selected.insert(lease_name(namespace, name), (ips, entries));
            }
        }
        // Address groups: a service's group is led by the first service
        // (in lease-name order) it shares an address with, transitively.
        let mut primary: BTreeMap<String, String> = BTreeMap::new();
        let mut owner: BTreeMap<IpAddr, String> = BTreeMap::new();
        for (lease, (ips, _)) in &selected {
            let mut root = lease.clone();
            for ip in ips {
                if let Some(other) = owner.get(ip) {
                    let other_root = find(&primary, other);
                    if other_root < root {
                        root = other_root;
                    }
                }
            }
            for ip in ips {
                if let Some(other) = owner.get(ip).cloned() {
                    let other_root = find(&primary, &other);
                    if other_root != root {
                        primary.insert(other_root, root.clone());
                    }
                }
                owner.entry(*ip).or_insert_with(|| lease.clone());
            }
            primary.insert(lease.clone(), root);
        }
        selected
            .into_iter()
            .map(|(lease, (_, entries))| {
                let root = find(&primary, &lease);
                (lease, (root, entries))
            })
            .collect()
    }

    /// The node's up interfaces a policy's expressions match (all up ones
    /// when it lists none); `None`, with a condition, if one does not
    /// compile.
    fn devices(
        &mut self,
        policy: &L2AnnouncementPolicy,
        interfaces: &[Interface],
    ) -> Option<Vec<String>> {
        let mut regexes = Vec::new();
        for expr in &policy.spec.interfaces {
            match interface_regex(expr) {
                Ok(r) => regexes.push(r),
                Err(message) => {
                    self.conditions.push(PolicyCondition {
                        policy: policy.metadata.name.clone(),
                        kind: BAD_INTERFACE_REGEX,
                        message,
                    });
                    return None;
                }
            }
        }
        Some(
            interfaces
                .iter()
                .filter(|i| i.up)
                .filter(|i| regexes.is_empty() || regexes.iter().any(|r| r.is_match(&i.name)))
                .map(|i| i.name.clone())
                .collect(),
        )
    }

    /// Apply who takes part where, drop finished elections, and turn the
    /// change in what is led into announce/withdraw actions.
    fn settle(&mut self, now: Instant, mut actions: Vec<Action>) -> Vec<Action> {
        // Groups' first services before the others (two passes: a primary's
        // leadership decides its followers').
        for pass in 0..2 {
            let leading: BTreeSet<String> = self.leading().map(String::from).collect();
            for (lease, e) in &mut self.elections {
                let is_primary = e.primary == *lease;
                if (pass == 0) != is_primary {
                    continue;
                }
                let takes_part = e.selected
                    && !e.entries.is_empty()
                    && (is_primary || leading.contains(&e.primary));
                collect(
                    lease,
                    e.elector.handle(now, Input::Participate(takes_part)),
                    &mut actions,
                );
            }
        }
        self.elections
            .retain(|_, e| e.selected || !e.elector.is_idle());
        let leading: BTreeSet<&str> = self.leading().collect();
        let announced: BTreeSet<Entry> = self
            .elections
            .values()
            .filter(|e| e.selected && leading.contains(e.primary.as_str()))
            .flat_map(|e| e.entries.iter().cloned())
            .collect();
        for gone in self.announced.difference(&announced) {
            actions.push(Action::Withdraw(gone.clone()));
        }
        for new in announced.difference(&self.announced) {
            actions.push(Action::Announce(new.clone()));
        }
        self.announced = announced;
        actions
    }
}

/// Whether the L2 announcer serves a service of this class and type.
fn announceable(service: &Service) -> bool {
    service
        .spec
        .load_balancer_class
        .as_deref()
        .is_none_or(|c| c == L2_LOAD_BALANCER_CLASS)
}

/// A policy's interface expression: Go's RE2 syntax, unanchored, over ASCII
/// names (`\d` is `[0-9]`, as in Go).
fn interface_regex(expr: &str) -> Result<Regex, String> {
    Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(expr)
        .map_err(|e| format!("interface expression {expr:?} does not compile: {e}"))
}

/// The root of `lease`'s group.
fn find(primary: &BTreeMap<String, String>, lease: &str) -> String {
    let mut at = lease;
    while let Some(up) = primary.get(at) {
        if up == at {
            break;
        }
        at = up;
    }
    at.into()
}

fn collect(lease: &str, out: Vec<Output>, actions: &mut Vec<Action>) {
    for o in out {
        if let Output::Request { id, request } = o {
            actions.push(Action::Lease {
                lease: lease.into(),
                id,
                request,
            });
        }
    }
}

#[cfg(test)]
mod tests;
