//! The BGP controller: turns the configuration into running peer tasks and
//! keeps them in step as it changes (start, stop, restart on a settings
//! change, new routes without a restart), one shared RIB per BGP instance,
//! and answers status queries from the RIBs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;
use router_core::bgp::rib::{PathInfo, PeerId};
use router_core::bgp::wire::Family;
use router_core::cilium::bgp::Afi;
use router_core::cilium::desired::RouteAttributes;
use router_core::cilium::{Objects, desired};
use tracing::{error, info, warn};

use crate::instance::{Instance, SharedInstance};
use crate::peer::{self, Command, PeerHandle, PeerSpec};
use crate::status::{
    FamilyStatus, PeerStatus, RouteStatus, Table, next_hop_address, render_attributes,
};

/// Peers are keyed by instance and peer name.
type PeerKey = (String, String);

/// Instances are keyed by name, AS and router id (a change of either
/// starts a new RIB).
type InstanceKey = (String, u32, Ipv4Addr);

fn instance_key(spec: &PeerSpec) -> InstanceKey {
    (spec.instance.clone(), spec.local_asn, spec.router_id)
}

fn family(afi: Afi) -> Family {
    match afi {
        Afi::Ipv4 => Family::IPV4_UNICAST,
        Afi::Ipv6 => Family::IPV6_UNICAST,
    }
}

fn family_of(prefix: &IpNet) -> Family {
    match prefix {
        IpNet::V4(_) => Family::IPV4_UNICAST,
        IpNet::V6(_) => Family::IPV6_UNICAST,
    }
}

/// The running BGP control plane of one node.
#[derive(Debug)]
pub struct Controller {
    node: String,
    router_id: Option<Ipv4Addr>,
    peers: BTreeMap<PeerKey, PeerHandle>,
    instances: BTreeMap<InstanceKey, SharedInstance>,
    reported: BTreeSet<String>,
}

impl Controller {
    /// A controller for `node`, with `router_id` overriding the Node's
    /// InternalIP.
    pub fn new(node: &str, router_id: Option<Ipv4Addr>) -> Controller {
        Controller {
            node: node.into(),
            router_id,
            peers: BTreeMap::new(),
            instances: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    /// The specs `objects` ask this node to run.
    fn specs(&mut self, objects: &Objects) -> BTreeMap<PeerKey, PeerSpec> {
        let want = desired(objects, &self.node);
        let mut issues: BTreeSet<String> = want.issues.iter().cloned().collect();
        let router_id = self.router_id.or(want.router_id);
        let node = objects.nodes.get(&self.node);
        let bind_v4 = node.and_then(|n| n.internal_ipv4()).map(IpAddr::V4);
        let local_v6 = node.and_then(|n| {
            n.status
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP")
                .find_map(|a| a.address.parse::<Ipv6Addr>().ok())
        });
        let bind_v6 = local_v6.map(IpAddr::V6);
        let mut specs = BTreeMap::new();
        match router_id {
            None if !want.instances.is_empty() => {
                issues.insert(format!(
                    "node {:?} has no IPv4 InternalIP and no --router-id was given: no BGP instances",
                    self.node
                ));
            }
            None => {}
            Some(router_id) => {
                for instance in want.instances {
                    for peer in instance.peers {
                        let bind = if peer.address.is_ipv4() {
                            bind_v4
                        } else {
                            bind_v6
                        };
                        let key = (instance.name.clone(), peer.name.clone());
                        let spec = PeerSpec {
                            node: self.node.clone(),
                            instance: instance.name.clone(),
                            local_asn: instance.local_asn,
                            router_id,
                            bind,
                            local_v6,
                            peer,
                        };
                        specs.insert(key, spec);
                    }
                }
            }
        }
        for issue in &issues {
            if !self.reported.contains(issue) {
                warn!(node = %self.node, "{issue}");
            }
        }
        self.reported = issues;
        specs
    }

    /// Bring the running peers in line with `objects`.
    pub fn reconcile(&mut self, objects: &Objects) {
        let specs = self.specs(objects);
        let stale: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, h)| {
                specs
                    .get(*k)
                    .is_none_or(|s| s.settings() != h.spec.settings())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(handle) = self.peers.remove(&key) {
                let why = if specs.contains_key(&key) {
                    "settings changed"
                } else {
                    "no longer selected"
                };
                info!(instance = %key.0, peer = %key.1, "removing peer: {why}");
                let _ = handle.commands.send(Command::Stop);
            }
        }
        let mut originated: BTreeMap<InstanceKey, BTreeMap<IpNet, RouteAttributes>> =
            BTreeMap::new();
        for spec in specs.values() {
            let routes = originated.entry(instance_key(spec)).or_default();
            for (prefix, route) in spec.routes() {
                routes.entry(prefix).or_insert(route);
            }
        }
        self.instances.retain(|k, _| originated.contains_key(k));
        for (key, routes) in originated {
            let instance = self
                .instances
                .entry(key.clone())
                .or_insert_with(|| Instance::shared(key.1, key.2));
            instance.lock().unwrap().set_originated(routes);
        }
        for (key, spec) in specs {
            let instance = self.instances[&instance_key(&spec)].clone();
            match self.peers.get_mut(&key) {
                Some(handle) => {
                    if handle.spec != spec {
                        instance
                            .lock()
                            .unwrap()
                            .set_export(handle.id, &spec.prefixes());
                        handle.view.lock().unwrap().spec = spec.clone();
                        handle.spec = spec;
                    }
                }
                None => match peer::spawn(spec, instance) {
                    Ok(handle) => {
                        self.peers.insert(key, handle);
                    }
                    Err(e) => error!(instance = %key.0, peer = %key.1, "cannot start peer: {e}"),
                },
            }
        }
    }

    /// Stop every peer as the agent exits (a Cease, except on graceful
    /// restart sessions, see [`Command::Exit`]) and wait for their tasks.
    pub async fn shutdown(&mut self) {
        let peers = std::mem::take(&mut self.peers);
        for handle in peers.values() {
            let _ = handle.commands.send(Command::Exit);
        }
        for (_, handle) in peers {
            let _ = handle.task.await;
        }
    }

    /// The peers, as `bgp peers` shows them.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = Instant::now();
        self.peers
            .values()
            .map(|handle| {
                let view = handle.view.lock().unwrap();
                let instance = handle.instance.lock().unwrap();
                let rib = &instance.rib;
                let spec = &view.spec;
                let single_family = spec.peer.families.len() == 1;
                let families = spec
                    .peer
                    .families
                    .iter()
                    .map(|f| {
                        let family = family(f.afi);
                        // One family: the RIB's running count, without a walk.
                        let accepted = if single_family {
                            rib.received_count(handle.id)
                        } else {
                            rib.adj_rib_in(handle.id)
                                .filter(|(p, _)| family_of(p) == family)
                                .count()
                        };
                        let looped = instance
                            .looped(handle.id)
                            .filter(|(p, _)| family_of(p) == family)
                            .count();
                        let received = accepted + looped;
                        FamilyStatus {
                            afi: f.afi.to_string(),
                            safi: f.safi.to_string(),
                            received,
                            advertised: rib
                                .adj_rib_out(handle.id)
                                .filter(|(p, _)| family_of(p) == family)
                                .count(),
                        }
                    })
                    .collect();
                PeerStatus {
                    node: spec.node.clone(),
                    instance: spec.instance.clone(),
                    name: spec.peer.name.clone(),
                    local_asn: spec.local_asn,
                    peer_asn: spec.peer.peer_asn.or(view.negotiated_as),
                    peer_address: spec.peer.address,
                    state: view.state.name().into(),
                    uptime_secs: view.established_at.map(|t| now.duration_since(t).as_secs()),
                    families,
                    messages_received: (&view.stats.received).into(),
                    messages_sent: (&view.stats.sent).into(),
                    last_notification: view.last_notification.clone(),
                }
            })
            .collect()
    }

    /// Every route: each instance's originated routes in its Loc-RIB
    /// (available: Cilium rejects received routes on import, so its Loc-RIB
    /// holds only these), and per peer its Adj-RIB-Out (advertised) and its
    /// Adj-RIB-In with the routes refused for an AS loop (received). The RIB keeps no
    /// time per path: a peer's routes are as old as its session, originated
    /// ones date from their origination.
    pub fn routes(&self) -> Vec<RouteStatus> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut ages: BTreeMap<PeerId, u64> = BTreeMap::new();
        for handle in self.peers.values() {
            let view = handle.view.lock().unwrap();
            let age = view
                .established_at
                .map_or(0, |t| now.duration_since(t).as_secs());
            ages.insert(handle.id, age);
        }
        for ((_, local_asn, _), shared) in &self.instances {
            let instance = shared.lock().unwrap();
            let peers: Vec<&PeerHandle> = self
                .peers
                .values()
                .filter(|h| Arc::ptr_eq(&h.instance, shared))
                .collect();
            let row = |table, peer: Option<IpAddr>, prefix: IpNet, path: &PathInfo<'_>, age| {
                let next_hop = next_hop_address(&path.attrs.next_hop);
                RouteStatus {
                    table,
                    node: self.node.clone(),
                    vrouter: *local_asn,
                    peer,
                    prefix,
                    next_hop,
                    age_secs: age,
                    attrs: render_attributes(&path.attrs.attributes, next_hop),
                    stale: path.stale,
                }
            };
            for (prefix, path) in instance.rib.loc_rib() {
                if path.peer != PeerId::LOCAL {
                    continue;
                }
                let age = instance
                    .originated_since(&prefix)
                    .map_or(0, |since| now.duration_since(since).as_secs());
                out.push(row(Table::Available, None, prefix, &path, age));
            }
            for handle in &peers {
                let age = ages.get(&handle.id).copied().unwrap_or(0);
                let address = Some(handle.spec.peer.address);
                for (prefix, attrs) in instance.rib.adj_rib_out(handle.id) {
                    let path = PathInfo {
                        peer: handle.id,
                        attrs,
                        best: true,
                        selected: true,
                        stale: false,
                    };
                    out.push(row(Table::Advertised, address, prefix, &path, age));
                }
            }
            for handle in &peers {
                let age = ages.get(&handle.id).copied().unwrap_or(0);
                let address = Some(handle.spec.peer.address);
                let mut received: BTreeMap<IpNet, PathInfo<'_>> =
                    instance.rib.adj_rib_in(handle.id).collect();
                for (prefix, looped) in instance.looped(handle.id) {
                    let path = PathInfo {
                        peer: handle.id,
                        attrs: &looped.attrs,
                        best: false,
                        selected: false,
                        stale: looped.stale,
                    };
                    received.insert(*prefix, path);
                }
                for (prefix, path) in received {
                    out.push(row(Table::Received, address, prefix, &path, age));
                }
            }
        }
        out
    }
}
