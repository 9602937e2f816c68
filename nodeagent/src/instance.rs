//! One BGP instance's routes: router-core's [`Rib`] shared by the instance's
//! peer tasks, the routes the node originates into it, and delivery of the
//! UPDATEs it asks for to each peer's task.
//!
//! Like Cilium, received routes are kept but never installed (the RIB
//! reports no FIB changes) and each peer is sent only the prefixes its
//! advertisements select: its export policy is a prefix list of them,
//! everything else denied (so received routes are not passed on).
//! Routes carrying our own AS, which the RIB refuses (RFC 4271 §9.1.2),
//! are still listed as received, as Cilium lists them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipnet::IpNet;
use router_core::bgp::fsm;
use router_core::bgp::rib::{self, PeerConfig, PeerId, Rib, RibConfig, RouteAttrs};
use router_core::bgp::wire::{Family, Update};
use router_core::cilium::desired::RouteAttributes;
use router_core::cilium::export::{export_policy, originated_attributes};
use tokio::sync::mpsc;

/// An instance shared by its peer tasks and the controller.
pub type SharedInstance = Arc<Mutex<Instance>>;

/// A BGP instance's RIB and its peers' mailboxes.
#[derive(Debug)]
pub struct Instance {
    /// The RIB.
    pub rib: Rib,
    mailboxes: BTreeMap<PeerId, mpsc::UnboundedSender<Box<Update>>>,
    originated: BTreeMap<IpNet, (RouteAttributes, Instant)>,
    looped: BTreeMap<PeerId, BTreeMap<IpNet, Looped>>,
}

/// A received route the RIB refused: our AS is in its path.
#[derive(Clone, Debug)]
pub struct Looped {
    /// Its attributes.
    pub attrs: Arc<RouteAttrs>,
    /// Kept from a restarting peer.
    pub stale: bool,
}

fn family_of(prefix: &IpNet) -> Family {
    match prefix {
        IpNet::V4(_) => Family::IPV4_UNICAST,
        IpNet::V6(_) => Family::IPV6_UNICAST,
    }
}

impl Instance {
    /// An empty instance for AS `local_as`.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Instance {
        let mut config = RibConfig::new(local_as, router_id);
        config.install = false;
        Instance {
            rib: Rib::new(config),
            mailboxes: BTreeMap::new(),
            originated: BTreeMap::new(),
            looped: BTreeMap::new(),
        }
    }

    /// A new shared instance.
    pub fn shared(local_as: u32, router_id: Ipv4Addr) -> SharedInstance {
        Arc::new(Mutex::new(Instance::new(local_as, router_id)))
    }

    /// Add a peer at `address` that is sent `prefixes`; UPDATEs for it that
    /// other tasks cause arrive in `mailbox`.
    pub fn add_peer(
        &mut self,
        address: IpAddr,
        prefixes: &BTreeSet<IpNet>,
        mailbox: mpsc::UnboundedSender<Box<Update>>,
    ) -> PeerId {
        let mut config = PeerConfig::new(address, None);
        config.export = export_policy(prefixes);
        let id = self.rib.add_peer(config);
        self.mailboxes.insert(id, mailbox);
        id
    }

    /// Remove a peer and the routes it gave.
    pub fn remove_peer(&mut self, id: PeerId) {
        self.mailboxes.remove(&id);
        self.looped.remove(&id);
        let out = self.rib.remove_peer(id);
        self.deliver(out, None);
    }

    /// Our addresses towards peer `id`: the next hops it is sent.
    pub fn set_local_addresses(&mut self, id: PeerId, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) {
        self.rib.set_local_addresses(id, v4, v6);
    }

    /// Feed a session output of peer `id` to the RIB; the UPDATEs for `id`
    /// itself are returned, the others go to their peers' mailboxes.
    pub fn apply(&mut self, id: PeerId, output: &fsm::Output) -> Vec<Update> {
        self.track_looped(id, output);
        let out = self.rib.apply(id, output);
        self.deliver(out, Some(id))
    }

    /// Send peer `id` exactly `prefixes` (of those originated).
    pub fn set_export(&mut self, id: PeerId, prefixes: &BTreeSet<IpNet>) {
        let out = self.rib.set_export_policy(id, export_policy(prefixes));
        self.deliver(out, None);
    }

    /// Originate exactly `routes` from now on.
    pub fn set_originated(&mut self, routes: BTreeMap<IpNet, RouteAttributes>) {
        let now = Instant::now();
        let gone: Vec<IpNet> = self
            .originated
            .keys()
            .filter(|p| !routes.contains_key(p))
            .copied()
            .collect();
        let mut out = Vec::new();
        for prefix in gone {
            self.originated.remove(&prefix);
            out.extend(self.rib.withdraw_originated(prefix));
        }
        for (prefix, route) in routes {
            if self
                .originated
                .get(&prefix)
                .is_some_and(|(r, _)| *r == route)
            {
                continue;
            }
            out.extend(self.rib.originate(prefix, originated_attributes(&route)));
            self.originated.insert(prefix, (route, now));
        }
        self.deliver(out, None);
    }

    fn track_looped(&mut self, id: PeerId, output: &fsm::Output) {
        let local_as = self.rib.config().local_as;
        match output {
            fsm::Output::Announce {
                next_hop,
                attributes,
                prefixes,
                ..
            } => {
                let looped = attributes
                    .as_path
                    .as_ref()
                    .is_some_and(|p| p.segments.iter().any(|s| s.asns.contains(&local_as)));
                if looped {
                    let attrs = Arc::new(RouteAttrs {
                        next_hop: *next_hop,
                        attributes: (**attributes).clone(),
                    });
                    let table = self.looped.entry(id).or_default();
                    for prefix in prefixes {
                        let route = Looped {
                            attrs: attrs.clone(),
                            stale: false,
                        };
                        table.insert(prefix.trunc(), route);
                    }
                } else if let Some(table) = self.looped.get_mut(&id) {
                    for prefix in prefixes {
                        table.remove(&prefix.trunc());
                    }
                }
            }
            fsm::Output::Withdraw { prefixes, .. } => {
                if let Some(table) = self.looped.get_mut(&id) {
                    for prefix in prefixes {
                        table.remove(&prefix.trunc());
                    }
                }
            }
            fsm::Output::PeerDown { stale } => {
                if let Some(table) = self.looped.get_mut(&id) {
                    table.retain(|p, _| stale.contains(&family_of(p)));
                    for route in table.values_mut() {
                        route.stale = true;
                    }
                }
            }
            fsm::Output::EndOfRib(family) | fsm::Output::PurgeStale(family) => {
                if let Some(table) = self.looped.get_mut(&id) {
                    table.retain(|p, r| !(r.stale && family_of(p) == *family));
                }
            }
            _ => {}
        }
    }

    /// The routes from peer `id` the RIB refused (our AS in their path).
    pub fn looped(&self, id: PeerId) -> impl Iterator<Item = (&IpNet, &Looped)> {
        self.looped.get(&id).into_iter().flatten()
    }

    /// When the node started originating `prefix`.
    pub fn originated_since(&self, prefix: &IpNet) -> Option<Instant> {
        self.originated.get(prefix).map(|(_, since)| *since)
    }

    fn deliver(&self, out: Vec<rib::Output>, own: Option<PeerId>) -> Vec<Update> {
        let mut mine = Vec::new();
        for output in out {
            if let rib::Output::Send { peer, update } = output {
                if Some(peer) == own {
                    mine.push(*update);
                } else if let Some(mailbox) = self.mailboxes.get(&peer) {
                    let _ = mailbox.send(update);
                }
            }
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::bgp::fsm::Negotiated;
    use router_core::bgp::wire::{AsPath, Community, NextHop, Origin, PathAttributes};

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn negotiated(asn: u32) -> Negotiated {
        Negotiated {
            peer_as: asn,
            peer_id: Ipv4Addr::new(192, 168, 10, 200),
            hold_time: 9,
            keepalive_time: 3,
            families: [Family::IPV4_UNICAST, Family::IPV6_UNICAST].into(),
            four_octet_as: true,
            route_refresh: true,
            extended_next_hop: BTreeSet::new(),
            peer_graceful_restart: None,
            notification_restart: false,
        }
    }

    fn route(community: Option<Community>) -> RouteAttributes {
        RouteAttributes {
            communities: community.into_iter().collect(),
            ..RouteAttributes::default()
        }
    }

    #[test]
    fn each_peer_gets_its_prefixes_with_next_hop_self_and_received_routes_stay() {
        let mut i = Instance::new(65001, Ipv4Addr::new(10, 0, 0, 1));
        let (tx_a, mut rx_a) = mpsc::unbounded_channel();
        let (tx_b, mut rx_b) = mpsc::unbounded_channel();
        let pod = net("172.20.0.0/24");
        let svc = net("10.96.0.10/32");
        let a = i.add_peer("10.0.0.254".parse().unwrap(), &[pod].into(), tx_a);
        let b = i.add_peer("10.0.1.254".parse().unwrap(), &[pod, svc].into(), tx_b);
        i.set_local_addresses(a, Some(Ipv4Addr::new(10, 0, 0, 1)), None);
        i.set_local_addresses(b, Some(Ipv4Addr::new(10, 0, 1, 1)), None);
        i.set_originated(
            [
                (pod, route(Some(Community::new(65000, 100)))),
                (svc, route(None)),
            ]
            .into(),
        );
        let up = i.apply(a, &fsm::Output::Established(Box::new(negotiated(65000))));
        let [announce, eor4, eor6] = &up[..] else {
            panic!("{up:?}")
        };
        assert_eq!(announce.nlri, [pod.to_string().parse().unwrap()]);
        let attrs = &announce.attributes;
        assert_eq!(attrs.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(attrs.as_path, Some(AsPath::sequence(vec![65001])));
        assert_eq!(attrs.communities, [Community::new(65000, 100)]);
        assert!(eor4.end_of_rib_family().is_some() && eor6.end_of_rib_family().is_some());
        assert_eq!(
            i.apply(b, &fsm::Output::Established(Box::new(negotiated(65002))))
                .len(),
            4
        );
        // A route from a: kept, not passed on to b.
        let learned = fsm::Output::Announce {
            family: Family::IPV4_UNICAST,
            next_hop: NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 254)),
            attributes: Box::new(PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence(vec![65000])),
                ..PathAttributes::default()
            }),
            prefixes: vec![net("10.10.0.0/16")],
        };
        assert!(i.apply(a, &learned).is_empty());
        // One with our AS in its path: refused by the RIB, listed as looped.
        let looped = fsm::Output::Announce {
            family: Family::IPV4_UNICAST,
            next_hop: NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 254)),
            attributes: Box::new(PathAttributes {
                as_path: Some(AsPath::sequence(vec![65000, 65001])),
                ..PathAttributes::default()
            }),
            prefixes: vec![net("172.20.9.0/24")],
        };
        i.apply(a, &looped);
        assert_eq!(i.looped(a).count(), 1);
        i.apply(
            a,
            &fsm::Output::Withdraw {
                family: Family::IPV4_UNICAST,
                prefixes: vec![net("172.20.9.0/24")],
            },
        );
        assert_eq!(i.looped(a).count(), 0);
        assert!(rx_b.try_recv().is_err());
        assert_eq!(i.rib.received_count(a), 1);
        assert_eq!(i.rib.adj_rib_in(a).count(), 1);
        // Dropping the pod CIDR withdraws it from both, through their mailboxes.
        i.set_originated([(svc, route(None))].into());
        let w = rx_a.try_recv().unwrap();
        assert_eq!(w.withdrawn, [pod.to_string().parse().unwrap()]);
        assert!(rx_b.try_recv().is_ok());
        assert_eq!(i.rib.advertised_count(a), 0);
        assert_eq!(i.rib.advertised_count(b), 1);
        // Narrowing b's export withdraws the service from it.
        i.set_export(b, &BTreeSet::new());
        assert!(rx_b.try_recv().unwrap().withdrawn.len() == 1);
        assert_eq!(i.rib.advertised_count(b), 0);
    }
}
