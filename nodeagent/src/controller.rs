//! The BGP controller: turns the configuration into running peer tasks and
//! keeps them in step as it changes (start, stop, restart on a settings
//! change, new routes without a restart), and answers status queries.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use router_core::cilium::{LocalEndpoints, Objects, desired};
use tracing::{error, info, warn};

use crate::advertise::family_of;
use crate::peer::{self, Command, PeerHandle, PeerSpec};
use crate::status::{FamilyStatus, PeerStatus, RouteStatus, Table, render_attributes};

/// Peers are keyed by instance and peer name.
type PeerKey = (String, String);

/// The running BGP control plane of one node.
#[derive(Debug)]
pub struct Controller {
    node: String,
    router_id: Option<Ipv4Addr>,
    peers: BTreeMap<PeerKey, PeerHandle>,
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
            reported: BTreeSet::new(),
        }
    }

    /// The specs `objects` ask this node to run.
    fn specs(&mut self, objects: &Objects) -> BTreeMap<PeerKey, PeerSpec> {
        let want = desired(objects, &self.node, &LocalEndpoints::new());
        let mut issues: BTreeSet<String> = want.issues.iter().cloned().collect();
        let router_id = self.router_id.or(want.router_id);
        let node = objects.nodes.get(&self.node);
        let bind_v4 = node.and_then(|n| n.internal_ipv4()).map(IpAddr::V4);
        let bind_v6 = node.and_then(|n| {
            n.status
                .addresses
                .iter()
                .filter(|a| a.kind == "InternalIP")
                .find_map(|a| a.address.parse::<std::net::Ipv6Addr>().ok())
                .map(IpAddr::V6)
        });
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
        for (key, spec) in specs {
            match self.peers.get_mut(&key) {
                Some(handle) => {
                    if handle.spec != spec {
                        let _ = handle.commands.send(Command::Routes(spec.routes()));
                        handle.view.lock().unwrap().spec = spec.clone();
                        handle.spec = spec;
                    }
                }
                None => match peer::spawn(spec) {
                    Ok(handle) => {
                        self.peers.insert(key, handle);
                    }
                    Err(e) => error!(instance = %key.0, peer = %key.1, "cannot start peer: {e}"),
                },
            }
        }
    }

    /// Stop every peer (each sends a Cease) and wait for their tasks.
    pub async fn shutdown(&mut self) {
        let peers = std::mem::take(&mut self.peers);
        for handle in peers.values() {
            let _ = handle.commands.send(Command::Stop);
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
                let spec = &view.spec;
                let families = spec
                    .peer
                    .families
                    .iter()
                    .map(|f| {
                        let family = match f.afi {
                            router_core::cilium::bgp::Afi::Ipv4 => {
                                router_core::bgp::wire::Family::IPV4_UNICAST
                            }
                            router_core::cilium::bgp::Afi::Ipv6 => {
                                router_core::bgp::wire::Family::IPV6_UNICAST
                            }
                        };
                        FamilyStatus {
                            afi: f.afi.to_string(),
                            safi: f.safi.to_string(),
                            received: view
                                .received
                                .keys()
                                .filter(|p| family_of(p) == family)
                                .count(),
                            advertised: view.sent.keys().filter(|p| family_of(p) == family).count(),
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

    /// Every route: originated (per instance), advertised and received (per peer).
    pub fn routes(&self) -> Vec<RouteStatus> {
        let now = Instant::now();
        let mut available: BTreeMap<(u32, ipnet::IpNet), RouteStatus> = BTreeMap::new();
        let mut per_peer = Vec::new();
        for handle in self.peers.values() {
            let view = handle.view.lock().unwrap();
            let spec = &view.spec;
            for (prefix, (attrs, since)) in &view.originated {
                let unspecified = match prefix {
                    ipnet::IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    ipnet::IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                };
                let age = now.duration_since(*since).as_secs();
                let route = RouteStatus {
                    table: Table::Available,
                    node: spec.node.clone(),
                    vrouter: spec.local_asn,
                    peer: None,
                    prefix: *prefix,
                    next_hop: unspecified,
                    age_secs: age,
                    attrs: render_attributes(&peer::originated_attributes(attrs), unspecified),
                    stale: false,
                };
                let entry = available.entry((spec.local_asn, *prefix)).or_insert(route);
                entry.age_secs = entry.age_secs.max(age);
            }
            for (prefix, sent) in &view.sent {
                per_peer.push(RouteStatus {
                    table: Table::Advertised,
                    node: spec.node.clone(),
                    vrouter: spec.local_asn,
                    peer: Some(spec.peer.address),
                    prefix: *prefix,
                    next_hop: sent.next_hop,
                    age_secs: now.duration_since(sent.since).as_secs(),
                    attrs: render_attributes(&sent.attributes, sent.next_hop),
                    stale: false,
                });
            }
            for (prefix, received) in &view.received {
                per_peer.push(RouteStatus {
                    table: Table::Received,
                    node: spec.node.clone(),
                    vrouter: spec.local_asn,
                    peer: Some(spec.peer.address),
                    prefix: *prefix,
                    next_hop: received.next_hop,
                    age_secs: now.duration_since(received.since).as_secs(),
                    attrs: render_attributes(&received.attributes, received.next_hop),
                    stale: received.stale,
                });
            }
        }
        available.into_values().chain(per_peer).collect()
    }
}
