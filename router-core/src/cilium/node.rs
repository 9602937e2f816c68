//! One Cilium node's BGP control plane: from the cluster's objects to the
//! BGP instances the node runs, and what they report. Both runtimes drive
//! this type — the simulator's k8s-node over smoltcp, `nexthop-agent` over
//! kernel TCP — and only carry out its [`Action`]s and report their sockets'
//! events back, each tagged with the instance it belongs to.
//!
//! [`NodeBgp::reconcile`] takes every object ([`desired`] picks what this
//! node runs: every `bgpInstances` entry, each peer's settings, the prefixes
//! each peer is sent) and brings the running [`Speaker`]s in line: an
//! instance whose AS or router id changed starts afresh, a peer whose
//! settings changed restarts its session, a peer whose prefixes changed gets
//! a new export policy without a restart, originated routes follow. The
//! statuses `bgp peers` and `bgp routes` print come from here too.
//!
//! Owns: the speakers, what each was last asked to run, the problems found
//! in the objects. Does not own: which objects exist (the runtimes' object
//! sources), sockets, timers' clocks, or printing ([`super::table`]).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use smoltcp::time::Instant;

use super::bgp::Afi;
use super::desired::{DesiredInstance, DesiredPeer, RouteAttributes, desired};
use super::export::{export_policy, originated_attributes};
use super::objects::Objects;
use super::session;
use super::status::{
    FamilyStatus, MessageCounts, NodeConfigStatus, PeerStatus, RouteStatus, Table,
    next_hop_address, render_attributes,
};
use crate::bgp::fsm::State;
use crate::bgp::rib::{PeerConfig, PeerId, RibConfig};
use crate::bgp::speaker::{Action, Input, PeerSpec, Report, Speaker, Transport};
use crate::bgp::wire::{Family, PathAttributes};

/// What a runtime tells the control plane about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// The node's name (its `Node` object).
    pub name: String,
    /// A router id that overrides the Node's first IPv4 InternalIP.
    pub router_id: Option<Ipv4Addr>,
    /// Install received routes in the node's FIB (Cilium never does; a
    /// simulated node can be told to, `import-bgp-routes`).
    pub install: bool,
    /// The runtime can sign TCP segments (RFC 2385 MD5).
    pub tcp_md5: bool,
    /// Report `CiliumBGPNodeConfig` status (Helm's
    /// `bgpControlPlane.statusReport.enabled`, default true).
    pub status_report: bool,
}

impl NodeOptions {
    /// Options for `name` as Cilium runs it: router id from the Node,
    /// received routes not installed, TCP MD5 available.
    pub fn new(name: &str) -> NodeOptions {
        NodeOptions {
            name: name.into(),
            router_id: None,
            install: false,
            tcp_md5: true,
            status_report: true,
        }
    }
}

/// An action of one instance's speaker.
pub type InstanceAction = (String, Action);

/// A running instance.
#[derive(Debug)]
struct Instance {
    local_asn: u32,
    router_id: Ipv4Addr,
    speaker: Speaker,
    /// Peers by address, with their settings (routes left out).
    peers: BTreeMap<IpAddr, DesiredPeer>,
    /// The prefixes each peer is sent.
    exports: BTreeMap<IpAddr, BTreeSet<IpNet>>,
    /// Originated prefixes and their attributes.
    originated: BTreeMap<IpNet, RouteAttributes>,
}

/// One node's BGP control plane.
#[derive(Debug)]
pub struct NodeBgp {
    options: NodeOptions,
    instances: BTreeMap<String, Instance>,
    issues: Vec<String>,
}

fn without_routes(peer: &DesiredPeer) -> DesiredPeer {
    let mut p = peer.clone();
    for f in &mut p.families {
        f.routes.clear();
    }
    p
}

fn family(afi: Afi) -> Family {
    match afi {
        Afi::Ipv4 => Family::IPV4_UNICAST,
        Afi::Ipv6 => Family::IPV6_UNICAST,
    }
}

/// The keys of `have` that `want` lacks.
fn missing<K: Ord + Copy, V, W>(have: &BTreeMap<K, V>, want: &BTreeMap<K, W>) -> Vec<K> {
    have.keys()
        .filter(|k| !want.contains_key(k))
        .copied()
        .collect()
}

fn stopped(peer: IpAddr, why: &'static str) -> Action {
    Action::Report {
        peer,
        report: Report::Stopped(why),
    }
}

/// The node's addresses towards its peers: its InternalIPs.
#[derive(Clone, Copy, Default)]
struct Local {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl NodeBgp {
    /// A node running nothing yet.
    pub fn new(options: NodeOptions) -> NodeBgp {
        NodeBgp {
            options,
            instances: BTreeMap::new(),
            issues: Vec::new(),
        }
    }

    /// The options it runs with.
    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// Problems found in the objects at the last reconcile, each naming
    /// what it left out.
    pub fn issues(&self) -> &[String] {
        &self.issues
    }

    /// The instances' speakers by name.
    pub fn speakers(&self) -> impl Iterator<Item = (&str, &Speaker)> {
        self.instances
            .iter()
            .map(|(name, i)| (name.as_str(), &i.speaker))
    }

    /// Bring the running instances in line with `objects`.
    pub fn reconcile(&mut self, now: Instant, objects: &Objects) -> Vec<InstanceAction> {
        let want = desired(objects, &self.options.name);
        self.issues = want.issues;
        let default_id = self.options.router_id.or(want.router_id);
        let node = objects.nodes.get(&self.options.name);
        let local = Local {
            v4: node.and_then(|n| n.internal_ipv4()),
            v6: node.and_then(|n| {
                n.status
                    .addresses
                    .iter()
                    .filter(|a| a.kind == "InternalIP")
                    .find_map(|a| a.address.parse().ok())
            }),
        };
        // Each instance's router id: the node's override, else the
        // runtime's, else the Node's first IPv4 InternalIP.
        let mut wanted: BTreeMap<String, (DesiredInstance, Ipv4Addr)> = BTreeMap::new();
        for instance in want.instances {
            match instance.router_id.or(default_id) {
                Some(id) => {
                    wanted.insert(instance.name.clone(), (instance, id));
                }
                None => self.issues.push(format!(
                    "instance {:?}: node {:?} has no IPv4 InternalIP and no router id was given; instance not run",
                    instance.name, self.options.name
                )),
            }
        }
        let mut out = Vec::new();
        let gone: Vec<String> = self
            .instances
            .iter()
            .filter(|(name, running)| {
                wanted.get(*name).is_none_or(|(w, id)| {
                    running.router_id != *id || running.local_asn != w.local_asn
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(mut running) = self.instances.remove(&name) {
                let why = if wanted.contains_key(&name) {
                    "the instance's AS or router id changed"
                } else {
                    "no longer selected"
                };
                let peers: Vec<IpAddr> = running.peers.keys().copied().collect();
                for peer in peers {
                    out.push((name.clone(), stopped(peer, why)));
                    let actions = running.speaker.handle(now, Input::RemovePeer(peer));
                    out.extend(actions.into_iter().map(|a| (name.clone(), a)));
                }
            }
        }
        for (name, (instance, router_id)) in &wanted {
            let actions = self.reconcile_instance(now, instance, *router_id, local);
            out.extend(actions.into_iter().map(|a| (name.clone(), a)));
        }
        out
    }

    fn reconcile_instance(
        &mut self,
        now: Instant,
        want: &DesiredInstance,
        router_id: Ipv4Addr,
        local: Local,
    ) -> Vec<Action> {
        let install = self.options.install;
        let running = self.instances.entry(want.name.clone()).or_insert_with(|| {
            let mut rib = RibConfig::new(want.local_asn, router_id);
            rib.install = install;
            Instance {
                local_asn: want.local_asn,
                router_id,
                speaker: Speaker::new(rib),
                peers: BTreeMap::new(),
                exports: BTreeMap::new(),
                originated: BTreeMap::new(),
            }
        });
        let mut out = Vec::new();
        let wanted: BTreeMap<IpAddr, &DesiredPeer> =
            want.peers.iter().map(|p| (p.address, p)).collect();
        let gone = missing(&running.peers, &wanted);
        for address in gone {
            out.push(stopped(address, "no longer selected"));
            out.extend(running.speaker.handle(now, Input::RemovePeer(address)));
            running.peers.remove(&address);
            running.exports.remove(&address);
        }
        let mut routes: BTreeMap<IpNet, RouteAttributes> = BTreeMap::new();
        for (&address, peer) in &wanted {
            let prefixes: BTreeSet<IpNet> = peer
                .families
                .iter()
                .flat_map(|f| f.routes.keys().copied())
                .collect();
            for f in &peer.families {
                for (prefix, attrs) in &f.routes {
                    routes.entry(*prefix).or_insert_with(|| attrs.clone());
                }
            }
            let settings = without_routes(peer);
            if running.peers.get(&address) != Some(&settings) {
                if peer.password.is_some() && !self.options.tcp_md5 {
                    self.issues.push(format!(
                        "instance {:?} peer {:?}: TCP MD5 (authSecretRef) is not available here; peer not configured",
                        want.name, peer.name
                    ));
                    continue;
                }
                let key = format!("{}/{}/{}", self.options.name, want.name, peer.name);
                let session =
                    match peer.session_config(want.local_asn, router_id, true, session::seed(&key))
                    {
                        Ok(session) => session,
                        Err(why) => {
                            self.issues.push(format!(
                                "instance {:?}: {why}; peer not configured",
                                want.name
                            ));
                            continue;
                        }
                    };
                let mut rib = PeerConfig::new(address, None);
                rib.local_v6 = local.v6;
                rib.export = export_policy(&prefixes);
                let bind = peer.local_address.or(match address {
                    IpAddr::V4(_) => local.v4.map(IpAddr::V4),
                    IpAddr::V6(_) => local.v6.map(IpAddr::V6),
                });
                let spec = PeerSpec {
                    session,
                    rib,
                    import: true,
                    transport: Transport {
                        port: peer.port,
                        bind,
                        md5_key: peer.password.as_ref().map(|p| p.0.clone()),
                    },
                };
                if running.peers.contains_key(&address) {
                    out.push(stopped(address, "settings changed"));
                }
                out.extend(running.speaker.handle(now, Input::AddPeer(Box::new(spec))));
                running.peers.insert(address, settings);
            } else if running.exports.get(&address) != Some(&prefixes) {
                let policy = export_policy(&prefixes);
                out.extend(
                    running
                        .speaker
                        .handle(now, Input::SetExportPolicy(address, policy)),
                );
            }
            running.exports.insert(address, prefixes);
        }
        let withdrawn = missing(&running.originated, &routes);
        for prefix in withdrawn {
            out.extend(running.speaker.handle(now, Input::Withdraw(prefix)));
            running.originated.remove(&prefix);
        }
        for (prefix, attrs) in routes {
            if running.originated.get(&prefix) != Some(&attrs) {
                let path = Box::new(originated_attributes(&attrs));
                out.extend(running.speaker.handle(now, Input::Originate(prefix, path)));
                running.originated.insert(prefix, attrs);
            }
        }
        out
    }

    /// Feed one transport event or tick to an instance's speaker.
    pub fn handle(&mut self, now: Instant, instance: &str, input: Input) -> Vec<InstanceAction> {
        match self.instances.get_mut(instance) {
            Some(running) => running
                .speaker
                .handle(now, input)
                .into_iter()
                .map(|a| (instance.into(), a))
                .collect(),
            None => Vec::new(),
        }
    }

    /// When the next timer of any instance is due.
    pub fn poll_at(&self) -> Option<Instant> {
        self.instances
            .values()
            .filter_map(|i| i.speaker.poll_at())
            .min()
    }

    /// Fire every timer due at `now`.
    pub fn timers(&mut self, now: Instant) -> Vec<InstanceAction> {
        let due: Vec<String> = self
            .instances
            .iter()
            .filter(|(_, i)| i.speaker.poll_at().is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        let mut out = Vec::new();
        for name in due {
            out.extend(self.handle(now, &name, Input::Timers));
        }
        out
    }

    /// The process exits ([`Input::Exit`] to every instance); nothing runs
    /// afterwards.
    pub fn exit(&mut self, now: Instant) -> Vec<InstanceAction> {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            out.extend(self.handle(now, &name, Input::Exit));
        }
        self.instances.clear();
        out
    }

    /// What each peer of each instance is to be sent, by (instance, peer
    /// address): the originated routes its export policy lets through,
    /// with the attributes they are originated with (the RIB adds our AS
    /// and the next hop when it sends them).
    pub fn advertisements(&self) -> BTreeMap<(String, IpAddr), BTreeMap<IpNet, PathAttributes>> {
        let mut out = BTreeMap::new();
        for (name, running) in &self.instances {
            for (address, prefixes) in &running.exports {
                let paths = prefixes
                    .iter()
                    .filter_map(|p| {
                        let attrs = running.originated.get(p)?;
                        Some((*p, originated_attributes(attrs)))
                    })
                    .collect();
                out.insert((name.clone(), *address), paths);
            }
        }
        out
    }

    /// `bgp peers`: every peer of every instance, instances by name, peers
    /// by address.
    pub fn peers(&self, now: Instant) -> Vec<PeerStatus> {
        let mut out = Vec::new();
        for (name, running) in &self.instances {
            let speaker = &running.speaker;
            let rib = speaker.rib();
            for (address, desired) in &running.peers {
                let Some(peer) = speaker.peers().get(address) else {
                    continue;
                };
                let session = peer.session();
                let id = peer.rib_id();
                // One family: the RIB's running counts, without a walk (a
                // full table must not make `bgp peers` slow).
                let single = desired.families.len() == 1;
                let families = desired
                    .families
                    .iter()
                    .map(|f| {
                        let fam = family(f.afi);
                        let ours = |p: &IpNet| Family::of(p) == fam;
                        let (accepted, advertised) = if single {
                            (rib.received_count(id), rib.advertised_count(id))
                        } else {
                            (
                                rib.adj_rib_in(id).filter(|(p, _)| ours(p)).count(),
                                rib.adj_rib_out(id).filter(|(p, _)| ours(p)).count(),
                            )
                        };
                        let looped = peer.looped().keys().filter(|p| ours(p)).count();
                        FamilyStatus {
                            afi: f.afi.to_string(),
                            safi: f.safi.to_string(),
                            received: accepted + looped,
                            advertised,
                        }
                    })
                    .collect();
                let state = session.state();
                out.push(PeerStatus {
                    node: self.options.name.clone(),
                    instance: name.clone(),
                    name: desired.name.clone(),
                    local_asn: running.local_asn,
                    peer_asn: desired
                        .peer_asn
                        .or_else(|| session.negotiated().map(|n| n.peer_as)),
                    peer_address: *address,
                    state: state.name().into(),
                    uptime_secs: (state == State::Established)
                        .then(|| session.uptime(now).map(|d| d.secs()))
                        .flatten(),
                    families,
                    messages_received: MessageCounts::from(&session.stats().received),
                    messages_sent: MessageCounts::from(&session.stats().sent),
                    applied_timers: session
                        .negotiated()
                        .filter(|_| state == State::Established)
                        .map(|n| (n.hold_time, n.keepalive_time)),
                    last_notification: peer.last_notification().map(|(sent, n)| {
                        let direction = if *sent { "sent" } else { "received" };
                        format!("{direction} {}", n.describe())
                    }),
                });
            }
        }
        out
    }

    /// The node's `CiliumBGPNodeConfig` status: empty when status
    /// reporting is off, as Cilium leaves it (`"status": {}`).
    pub fn node_config_status(&self, now: Instant) -> NodeConfigStatus {
        if !self.options.status_report {
            return NodeConfigStatus::default();
        }
        NodeConfigStatus::of(&self.peers(now))
    }

    /// `bgp routes`: every route of every instance — its originated routes
    /// (available), per peer the routes sent (advertised) and received
    /// (received: those refused for our AS in their path included, as
    /// Cilium lists them). Ages count from origination, and for a peer's
    /// routes from its session's establishment: the RIB keeps no per-path
    /// time.
    pub fn routes(&self, now: Instant) -> Vec<RouteStatus> {
        let mut out = Vec::new();
        for running in self.instances.values() {
            let speaker = &running.speaker;
            let rib = speaker.rib();
            let row = |table, peer, prefix, next_hop, age, attrs, stale| RouteStatus {
                table,
                node: self.options.name.clone(),
                vrouter: running.local_asn,
                peer,
                prefix,
                next_hop,
                age_secs: age,
                attrs,
                stale,
            };
            for (prefix, path) in rib.loc_rib() {
                if path.peer != PeerId::LOCAL {
                    continue;
                }
                let age = speaker
                    .originated_since(prefix)
                    .map_or(0, |since| (now - since).secs());
                let nh = next_hop_address(&path.attrs.next_hop);
                let attrs = render_attributes(&path.attrs.attributes, nh);
                out.push(row(Table::Available, None, prefix, nh, age, attrs, false));
            }
            for (address, peer) in speaker.peers() {
                let age = peer.session().uptime(now).map_or(0, |d| d.secs());
                for (prefix, attrs) in rib.adj_rib_out(peer.rib_id()) {
                    let nh = next_hop_address(&attrs.next_hop);
                    let shown = render_attributes(&attrs.attributes, nh);
                    let peer = Some(*address);
                    out.push(row(Table::Advertised, peer, prefix, nh, age, shown, false));
                }
            }
            for (address, peer) in speaker.peers() {
                let age = peer.session().uptime(now).map_or(0, |d| d.secs());
                // Learned routes and those refused for our AS alike, by prefix.
                let learned = rib
                    .adj_rib_in(peer.rib_id())
                    .map(|(p, path)| (p, path.attrs, path.stale));
                let looped = peer.looped().iter().map(|(p, l)| (*p, &*l.attrs, l.stale));
                let mut received: BTreeMap<IpNet, RouteStatus> = BTreeMap::new();
                for (prefix, attrs, stale) in learned.chain(looped) {
                    let nh = next_hop_address(&attrs.next_hop);
                    let shown = render_attributes(&attrs.attributes, nh);
                    let r = row(
                        Table::Received,
                        Some(*address),
                        prefix,
                        nh,
                        age,
                        shown,
                        stale,
                    );
                    received.insert(prefix, r);
                }
                out.extend(received.into_values());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
