//! RIB tests: each decision step on its own, multipath, export rules and
//! policy, graceful-restart stale routes.

use alloc::vec;

use super::policy::{CommunitySet, PrefixList, PrefixListEntry, Set, Statement};
use super::*;
use crate::bgp::wire::{AsPath, AsSegment, Community, SegmentType};

const LOCAL_AS: u32 = 65000;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn rib() -> Rib {
    Rib::new(RibConfig::new(LOCAL_AS, ROUTER_ID))
}

fn multipath_rib(maximum_paths: u8, relax: bool) -> Rib {
    let mut c = RibConfig::new(LOCAL_AS, ROUTER_ID);
    c.maximum_paths = maximum_paths;
    c.multipath_relax = relax;
    Rib::new(c)
}

fn negotiated(asn: u32, id: Ipv4Addr) -> Negotiated {
    Negotiated {
        peer_as: asn,
        peer_id: id,
        hold_time: 90,
        keepalive_time: 30,
        families: [Family::IPV4_UNICAST, Family::IPV6_UNICAST].into(),
        four_octet_as: true,
        route_refresh: true,
        extended_next_hop: BTreeSet::new(),
        peer_graceful_restart: None,
        notification_restart: false,
    }
}

/// A peer at `addr` in AS `asn` with BGP Identifier `id`, Established.
fn peer(rib: &mut Rib, addr: &str, asn: u32, id: &str) -> PeerId {
    let config = PeerConfig::new(IpAddr::V4(v4(addr)), Some(v4("10.0.0.254")));
    let p = rib.add_peer(config);
    rib.peer_up(p, &negotiated(asn, v4(id)));
    p
}

fn attrs(path: Vec<u32>) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(path)),
        ..PathAttributes::default()
    }
}

fn learn(rib: &mut Rib, p: PeerId, nh: &str, a: PathAttributes, prefix: &str) -> Vec<Output> {
    rib.announce(p, NextHop::Ipv4(v4(nh)), a, &[net(prefix)])
}

fn best(rib: &Rib, prefix: &str) -> PeerId {
    rib.paths(net(prefix))[0].peer
}

fn selected(rib: &Rib, prefix: &str) -> Vec<PeerId> {
    rib.paths(net(prefix))
        .iter()
        .filter(|p| p.selected)
        .map(|p| p.peer)
        .collect()
}

fn sends(out: &[Output]) -> Vec<(PeerId, &Update)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { peer, update } => Some((*peer, &**update)),
            Output::Fib { .. } => None,
        })
        .collect()
}

const P: &str = "172.20.0.0/24";

#[test]
fn step_1_highest_local_pref() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", LOCAL_AS, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", LOCAL_AS, "2.2.2.2");
    let mut low = attrs(vec![]);
    low.local_pref = Some(100);
    let mut high = attrs(vec![65001, 65002]);
    high.local_pref = Some(200);
    learn(&mut r, a, "10.0.0.1", low, P);
    learn(&mut r, b, "10.0.0.2", high, P);
    assert_eq!(best(&r, P), b);
}

#[test]
fn step_2_local_route() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), P);
    assert!(r.route(net(P)).is_some());
    let out = r.originate(net(P), PathAttributes::default());
    assert_eq!(best(&r, P), PeerId::LOCAL);
    assert_eq!(r.route(net(P)), None);
    assert!(out.contains(&Output::Fib {
        prefix: net(P),
        route: None
    }));
    let origin = r.paths(net(P))[0].attrs.attributes.origin;
    assert_eq!(origin, Some(Origin::Igp));
}

#[test]
fn step_3_shortest_as_path_with_sets_counting_one() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001, 1, 2]), P);
    let mut with_set = attrs(vec![65002]);
    with_set.as_path.as_mut().unwrap().segments.push(AsSegment {
        kind: SegmentType::Set,
        asns: vec![7, 8, 9, 10],
    });
    learn(&mut r, b, "10.0.0.2", with_set, P);
    assert_eq!(best(&r, P), b);
}

#[test]
fn step_4_lowest_origin() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    let mut incomplete = attrs(vec![65001]);
    incomplete.origin = Some(Origin::Incomplete);
    learn(&mut r, a, "10.0.0.1", incomplete, P);
    let mut egp = attrs(vec![65002]);
    egp.origin = Some(Origin::Egp);
    learn(&mut r, b, "10.0.0.2", egp, P);
    assert_eq!(best(&r, P), b);
}

#[test]
fn step_5_med_within_the_neighbour_as_only() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65001, "2.2.2.2");
    let c = peer(&mut r, "10.0.0.3", 65003, "3.3.3.3");
    let med = |path, m| {
        let mut x = attrs(path);
        x.med = Some(m);
        x
    };
    learn(&mut r, a, "10.0.0.1", med(vec![65001], 10), P);
    learn(&mut r, b, "10.0.0.2", med(vec![65001], 5), P);
    assert_eq!(best(&r, P), b);
    // A lower MED from another AS does not count: b (2.2.2.2) still wins
    // over c (3.3.3.3) on the router id.
    learn(&mut r, c, "10.0.0.3", med(vec![65003], 0), P);
    assert_eq!(best(&r, P), b);
    // Missing MED counts as 0.
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), P);
    assert_eq!(best(&r, P), a);
}

#[test]
fn step_6_ebgp_over_ibgp() {
    let mut r = rib();
    let i = peer(&mut r, "10.0.0.1", LOCAL_AS, "1.1.1.1");
    let e = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    learn(&mut r, i, "10.0.0.1", attrs(vec![65009]), P);
    learn(&mut r, e, "10.0.0.2", attrs(vec![65002]), P);
    assert_eq!(best(&r, P), e);
    assert_eq!(r.route(net(P)).unwrap().protocol, Protocol::Ebgp);
}

#[test]
fn step_7_lowest_igp_cost() {
    let mut c = RibConfig::new(LOCAL_AS, ROUTER_ID);
    c.igp_cost = |nh| {
        if nh == IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)) {
            10
        } else {
            1
        }
    };
    let mut r = Rib::new(c);
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), P);
    learn(&mut r, b, "10.0.0.2", attrs(vec![65002]), P);
    assert_eq!(best(&r, P), b);
}

#[test]
fn steps_8_and_9_router_id_then_address() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.9", 65001, "1.1.1.2");
    let b = peer(&mut r, "10.0.0.2", 65002, "1.1.1.3");
    learn(&mut r, b, "10.0.0.2", attrs(vec![65002]), P);
    learn(&mut r, a, "10.0.0.9", attrs(vec![65001]), P);
    assert_eq!(best(&r, P), a);
    let c = peer(&mut r, "10.0.0.3", 65003, "1.1.1.2");
    learn(&mut r, c, "10.0.0.3", attrs(vec![65003]), P);
    assert_eq!(best(&r, P), c);
}

#[test]
fn as_loops_and_ebgp_local_pref_on_import() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let mut lp = attrs(vec![65001]);
    lp.local_pref = Some(500);
    learn(&mut r, a, "10.0.0.1", lp, P);
    assert_eq!(r.paths(net(P))[0].attrs.attributes.local_pref, None);
    // A path through our own AS replaces the route with nothing.
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001, LOCAL_AS]), P);
    assert!(r.is_empty());
}

fn three_paths(r: &mut Rib, paths: [Vec<u32>; 3]) -> [PeerId; 3] {
    let ids = [
        ("10.0.0.1", "1.1.1.1"),
        ("10.0.0.2", "2.2.2.2"),
        ("10.0.0.3", "3.3.3.3"),
    ];
    let mut out = [PeerId::LOCAL; 3];
    for (i, ((addr, id), path)) in ids.into_iter().zip(paths).enumerate() {
        out[i] = peer(r, addr, path[0], id);
        learn(r, out[i], addr, attrs(path), P);
    }
    out
}

#[test]
fn multipath_identical_as_paths() {
    let mut r = multipath_rib(4, false);
    let [a, b, c] = three_paths(&mut r, [vec![65001], vec![65001], vec![65001]]);
    assert_eq!(selected(&r, P), vec![a, b, c]);
    let route = r.route(net(P)).unwrap();
    assert_eq!(route.nexthops.len(), 3);
    // maximum-paths caps the set, best first.
    let mut r = multipath_rib(2, false);
    let [a, b, _] = three_paths(&mut r, [vec![65001], vec![65001], vec![65001]]);
    assert_eq!(selected(&r, P), vec![a, b]);
    // maximum-paths 1: best only.
    let mut r = multipath_rib(1, true);
    let [a, _, _] = three_paths(&mut r, [vec![65001], vec![65001], vec![65001]]);
    assert_eq!(selected(&r, P), vec![a]);
}

#[test]
fn multipath_relax() {
    let paths = || [vec![65001], vec![65002], vec![65003, 65004]];
    let mut r = multipath_rib(4, false);
    let [a, _, _] = three_paths(&mut r, paths());
    assert_eq!(selected(&r, P), vec![a]);
    let mut r = multipath_rib(4, true);
    let [a, b, _] = three_paths(&mut r, paths());
    assert_eq!(selected(&r, P), vec![a, b]);
    // Withdrawing the best promotes the next and shrinks the group.
    let out = r.withdraw(a, &[net(P)]);
    assert_eq!(selected(&r, P), vec![b]);
    assert!(out.contains(&Output::Fib {
        prefix: net(P),
        route: Some(BgpRoute {
            protocol: Protocol::Ebgp,
            nexthops: vec![IpAddr::V4(v4("10.0.0.2"))],
        })
    }));
}

#[test]
fn fib_route_resolves_ports() {
    let route = BgpRoute {
        protocol: Protocol::Ebgp,
        nexthops: vec![IpAddr::V4(v4("10.0.0.1")), IpAddr::V4(v4("10.9.0.1"))],
    };
    let fib = route
        .to_fib(|a| (a == IpAddr::V4(v4("10.0.0.1"))).then_some(PortId(3)))
        .unwrap();
    assert_eq!(
        fib.nexthops,
        vec![Nexthop::gateway(IpAddr::V4(v4("10.0.0.1")), PortId(3))]
    );
    assert_eq!(fib.distance, 20);
    assert_eq!(route.to_fib(|_| None), None);
}

#[test]
fn ebgp_export_rules() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    let c = peer(&mut r, "10.0.0.3", 65001, "3.3.3.3");
    let out = learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), P);
    // Only b: not back to a, not to c whose AS is in the path.
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    let (to, u) = s[0];
    assert_eq!(to, b);
    assert_eq!(u.nlri, vec![P.parse().unwrap()]);
    assert_eq!(u.attributes.next_hop, Some(v4("10.0.0.254")));
    assert_eq!(
        u.attributes.as_path,
        Some(AsPath::sequence(vec![LOCAL_AS, 65001]))
    );
    assert_eq!(r.adj_rib_out(c).count(), 0);
    assert_eq!(r.adj_rib_out(b).count(), 1);
    assert_eq!(r.adj_rib_in(a).count(), 1);
    // Withdrawn: withdrawn from b.
    let out = r.withdraw(a, &[net(P)]);
    let s = sends(&out);
    assert_eq!(s[0].0, b);
    assert_eq!(s[0].1.withdrawn, vec![P.parse().unwrap()]);
    assert_eq!(r.adj_rib_out(b).count(), 0);
}

#[test]
fn ibgp_learned_routes_stay_off_ibgp_peers() {
    let mut r = rib();
    let i1 = peer(&mut r, "10.0.0.1", LOCAL_AS, "1.1.1.1");
    let i2 = peer(&mut r, "10.0.0.2", LOCAL_AS, "2.2.2.2");
    let e = peer(&mut r, "10.0.0.3", 65003, "3.3.3.3");
    let out = learn(&mut r, i1, "10.0.0.1", attrs(vec![65009]), P);
    let s = sends(&out);
    assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![e]);
    // eBGP-learned routes go to both iBGP peers, next hop unchanged,
    // LOCAL_PREF set.
    let out = learn(&mut r, e, "10.0.0.3", attrs(vec![65003]), "10.3.0.0/16");
    let s = sends(&out);
    assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), vec![i1, i2]);
    assert_eq!(s[0].1.attributes.next_hop, Some(v4("10.0.0.3")));
    assert_eq!(s[0].1.attributes.local_pref, Some(100));
}

#[test]
fn originated_routes_are_advertised_with_our_as() {
    let mut r = rib();
    let e = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let out = r.originate(net("10.244.0.0/24"), PathAttributes::default());
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, e);
    let a = &s[0].1.attributes;
    assert_eq!(a.origin, Some(Origin::Igp));
    assert_eq!(a.as_path, Some(AsPath::sequence(vec![LOCAL_AS])));
    assert_eq!(a.next_hop, Some(v4("10.0.0.254")));
    // IPv6 needs a local IPv6 address towards the peer.
    let out = r.originate(net("2001:db8:44::/64"), PathAttributes::default());
    assert!(sends(&out).is_empty());
    let mut r2 = rib();
    let mut config = PeerConfig::new(IpAddr::V4(v4("10.0.0.1")), None);
    config.local_v6 = Some("2001:db8::fe".parse().unwrap());
    let p = r2.add_peer(config);
    r2.originate(net("2001:db8:44::/64"), PathAttributes::default());
    let out = r2.peer_up(p, &negotiated(65001, v4("1.1.1.1")));
    let s = sends(&out);
    let mp = s[0].1.attributes.mp_reach.as_ref().unwrap();
    assert_eq!(
        mp.nlri,
        Prefixes::Ipv6(vec!["2001:db8:44::/64".parse().unwrap()])
    );
    // Then End-of-RIB for both families.
    assert_eq!(s[1].1.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    assert_eq!(s[2].1.end_of_rib_family(), Some(Family::IPV6_UNICAST));
}

#[test]
fn peer_up_sends_the_table_grouped_then_end_of_rib() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.0.0/24");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.2.0.0/24");
    r.originate(net("10.244.0.0/24"), PathAttributes::default());
    let b = r.add_peer(PeerConfig::new(
        IpAddr::V4(v4("10.0.0.2")),
        Some(v4("10.0.0.254")),
    ));
    let mut n = negotiated(65002, v4("2.2.2.2"));
    n.families = [Family::IPV4_UNICAST].into();
    let out = r.peer_up(b, &n);
    let s = sends(&out);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].1.nlri.len() + s[1].1.nlri.len(), 3);
    assert_eq!(s[2].1.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    // A refresh resends the Adj-RIB-Out.
    let again = r.refresh(b, Family::IPV4_UNICAST);
    assert_eq!(sends(&again), s[..2].to_vec());
}

fn deny_list(prefix: &str) -> Policy {
    Policy {
        statements: vec![
            Statement {
                prefix_list: Some(PrefixList {
                    entries: vec![PrefixListEntry {
                        permit: true,
                        prefix: net(prefix),
                        ge: None,
                        le: Some(32),
                    }],
                }),
                community: None,
                action: Action::Deny,
            },
            Statement {
                prefix_list: None,
                community: None,
                action: Action::Permit(Set {
                    communities: Some(CommunitySet::Add(vec![Community::new(65000, 100)])),
                    ..Set::default()
                }),
            },
        ],
        default: Action::Deny,
    }
}

#[test]
fn export_policy() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    r.set_export_policy(b, deny_list("10.1.0.0/16"));
    let out = learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.2.0/24");
    assert!(sends(&out).is_empty());
    let out = learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.2.0.0/24");
    let s = sends(&out);
    assert_eq!(
        s[0].1.attributes.communities,
        vec![Community::new(65000, 100)]
    );
    // Changing the policy withdraws what it now denies and sends what it permits.
    let out = r.set_export_policy(b, deny_list("10.2.0.0/16"));
    let s = sends(&out);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].1.withdrawn, vec!["10.2.0.0/24".parse().unwrap()]);
    assert_eq!(s[1].1.nlri, vec!["10.1.2.0/24".parse().unwrap()]);
    // NO_EXPORT keeps a route from eBGP peers.
    let mut no_export = attrs(vec![65001]);
    no_export.communities = vec![Community::NO_EXPORT];
    let out = learn(&mut r, a, "10.0.0.1", no_export, "10.3.0.0/24");
    assert!(sends(&out).is_empty());
}

#[test]
fn graceful_restart_stale_then_refresh() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.0.0/24");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.2.0.0/24");
    let fib_before = r.route(net("10.1.0.0/24"));
    let out = r.peer_down(a, &[Family::IPV4_UNICAST].into());
    // Nothing changes for the FIB or for b; the paths are stale.
    assert!(out.is_empty());
    assert_eq!(r.route(net("10.1.0.0/24")), fib_before);
    assert!(r.paths(net("10.1.0.0/24"))[0].stale);
    assert_eq!(r.adj_rib_out(b).count(), 2);
    // a comes back and refreshes one route; End-of-RIB drops the other.
    r.peer_up(a, &negotiated(65001, v4("1.1.1.1")));
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.0.0/24");
    assert!(!r.paths(net("10.1.0.0/24"))[0].stale);
    let out = r.purge_stale(a, Family::IPV4_UNICAST);
    assert_eq!(r.len(), 1);
    assert!(out.contains(&Output::Fib {
        prefix: net("10.2.0.0/24"),
        route: None
    }));
    let s = sends(&out);
    assert_eq!(s[0].1.withdrawn, vec!["10.2.0.0/24".parse().unwrap()]);
}

#[test]
fn graceful_restart_stale_then_purge() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.0.0/24");
    r.announce(
        a,
        NextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        },
        attrs(vec![65001]),
        &[net("2001:db8:1::/48")],
    );
    // Only IPv4 is kept across the restart.
    r.peer_down(a, &[Family::IPV4_UNICAST].into());
    assert_eq!(r.len(), 1);
    // The restart timer expires.
    let out = r.apply(a, &fsm::Output::PurgeStale(Family::IPV4_UNICAST));
    assert!(r.is_empty());
    assert_eq!(
        out,
        vec![Output::Fib {
            prefix: net("10.1.0.0/24"),
            route: None
        }]
    );
    assert_eq!(r.attribute_sets(), 0);
}

#[test]
fn attribute_sets_are_shared_and_released() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    let prefixes: Vec<IpNet> = (0..100u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap()))
        .collect();
    r.announce(
        a,
        NextHop::Ipv4(v4("10.0.0.1")),
        attrs(vec![65001]),
        &prefixes,
    );
    assert_eq!((r.len(), r.attribute_sets()), (100, 1));
    assert_eq!(r.received_count(a), 100);
    let b = peer(&mut r, "10.0.0.2", 65002, "2.2.2.2");
    assert_eq!(r.adj_rib_out(b).count(), 100);
    assert_eq!(r.advertised_count(b), 100);
    r.withdraw(a, &prefixes[..10]);
    assert_eq!(r.received_count(a), 90);
    assert_eq!(r.attribute_sets(), 2);
    r.remove_peer(a);
    assert_eq!((r.len(), r.attribute_sets()), (0, 0));
    assert_eq!(r.adj_rib_out(b).count(), 0);
}

#[test]
fn local_addresses_set_after_add_are_the_next_hops_sent() {
    let mut r = rib();
    let p = r.add_peer(PeerConfig::new(IpAddr::V4(v4("10.0.0.1")), None));
    r.originate(net("10.244.0.0/24"), PathAttributes::default());
    r.originate(net("2001:db8:44::/64"), PathAttributes::default());
    r.set_local_addresses(
        p,
        Some(v4("10.0.0.9")),
        Some("2001:db8::9".parse().unwrap()),
    );
    let out = r.peer_up(p, &negotiated(65001, v4("1.1.1.1")));
    let s = sends(&out);
    assert_eq!(s[0].1.attributes.next_hop, Some(v4("10.0.0.9")));
    let mp = s[1].1.attributes.mp_reach.as_ref().unwrap();
    assert_eq!(
        mp.next_hop,
        NextHop::Ipv6 {
            global: "2001:db8::9".parse().unwrap(),
            link_local: None
        }
    );
}

#[test]
fn end_of_rib_without_stale_paths_changes_nothing() {
    let mut r = rib();
    let a = peer(&mut r, "10.0.0.1", 65001, "1.1.1.1");
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.0.0/24");
    assert!(
        r.apply(a, &fsm::Output::EndOfRib(Family::IPV4_UNICAST))
            .is_empty()
    );
    assert_eq!(r.received_count(a), 1);
    // After a restart, the first End-of-RIB purges; a second has nothing to do.
    r.peer_down(a, &[Family::IPV4_UNICAST].into());
    r.peer_up(a, &negotiated(65001, v4("1.1.1.1")));
    assert!(!r.purge_stale(a, Family::IPV4_UNICAST).is_empty());
    assert!(r.is_empty());
    learn(&mut r, a, "10.0.0.1", attrs(vec![65001]), "10.1.0.0/24");
    assert!(r.purge_stale(a, Family::IPV4_UNICAST).is_empty());
    assert_eq!(r.len(), 1);
}
