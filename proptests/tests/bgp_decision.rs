//! BGP decision process invariants, through the RIB and on the selection
//! function itself: the result does not depend on arrival order, withdrawing
//! everything empties the RIB, the multipath set is drawn from the
//! candidates and led by the best, and a path strictly better at some step
//! than every other is chosen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use proptest::prelude::*;
use router_core::bgp::fsm::Negotiated;
use router_core::bgp::rib::decision::{self, Candidate, Params};
use router_core::bgp::rib::{BgpRoute, Output, PeerConfig, PeerId, Rib, RibConfig, RouteAttrs};
use router_core::bgp::wire::{AsPath, Family, NextHop, Origin, PathAttributes};

const LOCAL_AS: u32 = 65000;

/// One peer and the path it announces.
#[derive(Clone, Debug)]
struct Spec {
    ibgp: bool,
    local_pref: Option<u32>,
    first_as: u32,
    hops: usize,
    origin: u8,
    med: Option<u32>,
    /// Indices into [`prefixes`] it announces.
    prefixes: BTreeSet<usize>,
}

fn prefixes() -> Vec<IpNet> {
    (0..6u32)
        .map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0xac14_0000 + (i << 8)), 24).unwrap()))
        .collect()
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        prop::option::of(prop_oneof![Just(100u32), Just(200)]),
        65001u32..65004,
        1usize..4,
        0u8..3,
        prop::option::of(0u32..3),
        prop::collection::btree_set(0usize..6, 1..6),
    )
        .prop_map(
            |(ibgp, local_pref, first_as, hops, origin, med, prefixes)| Spec {
                ibgp,
                local_pref,
                first_as,
                hops,
                origin,
                med,
                prefixes,
            },
        )
}

/// Peers with distinct BGP identifiers (a shuffled subset of 1..=200).
fn specs() -> impl Strategy<Value = (Vec<Spec>, Vec<u8>)> {
    prop::collection::vec(spec(), 1..7).prop_flat_map(|specs| {
        let n = specs.len();
        let ids = prop::sample::subsequence((1..=200u8).collect::<Vec<_>>(), n).prop_shuffle();
        (Just(specs), ids)
    })
}

fn origin(o: u8) -> Origin {
    [Origin::Igp, Origin::Egp, Origin::Incomplete][usize::from(o)]
}

fn attributes(s: &Spec) -> PathAttributes {
    let mut path = vec![s.first_as];
    path.extend((1..s.hops).map(|i| 64512 + i as u32));
    PathAttributes {
        origin: Some(origin(s.origin)),
        as_path: Some(AsPath::sequence(path)),
        med: s.med,
        local_pref: s.local_pref,
        ..PathAttributes::default()
    }
}

fn negotiated(asn: u32, id: Ipv4Addr) -> Negotiated {
    Negotiated {
        peer_as: asn,
        peer_id: id,
        hold_time: 90,
        keepalive_time: 30,
        families: [Family::IPV4_UNICAST].into(),
        four_octet_as: true,
        route_refresh: true,
        extended_next_hop: BTreeSet::new(),
        peer_graceful_restart: None,
        notification_restart: false,
    }
}

/// A RIB with one Established peer per spec; returns the peers' ids.
fn setup(specs: &[Spec], ids: &[u8], maximum_paths: u8, relax: bool) -> (Rib, Vec<PeerId>) {
    let mut config = RibConfig::new(LOCAL_AS, Ipv4Addr::new(10, 0, 0, 254));
    config.maximum_paths = maximum_paths;
    config.multipath_relax = relax;
    let mut rib = Rib::new(config);
    let peers = specs
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (s, &id))| {
            let addr = Ipv4Addr::new(10, 0, 1, i as u8 + 1);
            let p = rib.add_peer(PeerConfig::new(
                IpAddr::V4(addr),
                Some(Ipv4Addr::new(10, 0, 0, 254)),
            ));
            let asn = if s.ibgp { LOCAL_AS } else { s.first_as };
            rib.peer_up(p, &negotiated(asn, Ipv4Addr::new(1, 1, 1, id)));
            p
        })
        .collect();
    (rib, peers)
}

fn announce(rib: &mut Rib, peer: PeerId, i: usize, s: &Spec, fib: &mut BTreeMap<IpNet, BgpRoute>) {
    let nh = NextHop::Ipv4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
    let all = prefixes();
    let mine: Vec<IpNet> = s.prefixes.iter().map(|&p| all[p]).collect();
    track(fib, rib.announce(peer, nh, attributes(s), &mine));
}

fn track(fib: &mut BTreeMap<IpNet, BgpRoute>, out: Vec<Output>) {
    for o in out {
        if let Output::Fib { prefix, route } = o {
            match route {
                Some(r) => fib.insert(prefix, r),
                None => fib.remove(&prefix),
            };
        }
    }
}

/// Per prefix: the selected paths' peers, best first.
fn selection(rib: &Rib) -> BTreeMap<IpNet, Vec<PeerId>> {
    prefixes()
        .into_iter()
        .map(|p| {
            let sel = rib
                .paths(p)
                .iter()
                .filter(|x| x.selected)
                .map(|x| x.peer)
                .collect();
            (p, sel)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn best_is_independent_of_arrival_order(
        (specs, ids) in specs(),
        order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
        maximum_paths in 1u8..5,
        relax in any::<bool>(),
    ) {
        let (mut a, peers) = setup(&specs, &ids, maximum_paths, relax);
        let (mut b, _) = setup(&specs, &ids, maximum_paths, relax);
        let (mut fib_a, mut fib_b) = (BTreeMap::new(), BTreeMap::new());
        for (i, s) in specs.iter().enumerate() {
            announce(&mut a, peers[i], i, s, &mut fib_a);
        }
        for &i in order.iter().filter(|&&i| i < specs.len()) {
            announce(&mut b, peers[i], i, &specs[i], &mut fib_b);
        }
        prop_assert_eq!(selection(&a), selection(&b));
        prop_assert_eq!(fib_a, fib_b);
    }

    #[test]
    fn withdrawing_everything_empties_the_rib(
        (specs, ids) in specs(),
        order in Just((0..7usize).collect::<Vec<_>>()).prop_shuffle(),
        down in any::<bool>(),
    ) {
        let (mut rib, peers) = setup(&specs, &ids, 4, true);
        let mut fib = BTreeMap::new();
        for (i, s) in specs.iter().enumerate() {
            announce(&mut rib, peers[i], i, s, &mut fib);
        }
        prop_assert!(!rib.is_empty());
        for &i in order.iter().filter(|&&i| i < specs.len()) {
            let out = if down {
                rib.peer_down(peers[i], &BTreeSet::new())
            } else {
                let all = prefixes();
                let mine: Vec<IpNet> = specs[i].prefixes.iter().map(|&p| all[p]).collect();
                rib.withdraw(peers[i], &mine)
            };
            track(&mut fib, out);
        }
        prop_assert!(rib.is_empty());
        prop_assert_eq!(rib.loc_rib().count(), 0);
        prop_assert!(fib.is_empty());
        for &p in &peers {
            prop_assert_eq!(rib.adj_rib_out(p).count(), 0);
        }
        prop_assert_eq!(rib.attribute_sets(), 0);
    }

    #[test]
    fn multipath_is_drawn_from_the_candidates_and_led_by_the_best(
        (specs, ids) in specs(),
        maximum_paths in 1u8..5,
        relax in any::<bool>(),
    ) {
        let (mut rib, peers) = setup(&specs, &ids, maximum_paths, relax);
        let mut fib = BTreeMap::new();
        for (i, s) in specs.iter().enumerate() {
            announce(&mut rib, peers[i], i, s, &mut fib);
        }
        for prefix in prefixes() {
            let paths = rib.paths(prefix);
            let candidates: BTreeSet<PeerId> = specs
                .iter()
                .zip(&peers)
                .filter(|(s, _)| s.prefixes.iter().any(|&p| prefixes()[p] == prefix))
                .map(|(_, &p)| p)
                .collect();
            prop_assert_eq!(paths.iter().map(|p| p.peer).collect::<BTreeSet<_>>(), candidates.clone());
            let selected: Vec<_> = paths.iter().filter(|p| p.selected).collect();
            if candidates.is_empty() {
                prop_assert!(selected.is_empty());
                continue;
            }
            prop_assert!(selected[0].best);
            prop_assert!(!selected.is_empty() && selected.len() <= usize::from(maximum_paths));
            let best = selected[0].attrs;
            for s in &selected {
                let (a, b) = (&s.attrs.attributes, &best.attributes);
                prop_assert_eq!(a.local_pref.unwrap_or(100), b.local_pref.unwrap_or(100));
                prop_assert_eq!(a.as_path.as_ref().map(AsPath::hop_count), b.as_path.as_ref().map(AsPath::hop_count));
                prop_assert_eq!(a.origin, b.origin);
                if !relax {
                    prop_assert_eq!(&a.as_path, &b.as_path);
                }
            }
            let hops: BTreeSet<IpAddr> = selected.iter().map(|s| s.attrs.next_hop_addr()).collect();
            prop_assert_eq!(fib.get(&prefix).map(|r| r.nexthops.iter().copied().collect()), Some(hops));
        }
    }

    #[test]
    fn a_path_strictly_better_at_some_step_wins(
        step in 0usize..8,
        others in prop::collection::vec(
            (0u32..1000, any::<bool>(), 1usize..4, 0u8..3, 65001u32..65003, 0u32..4, any::<bool>(), 0u32..4, 2u8..250, any::<u8>()),
            1..6,
        ),
        winner in (0u32..1000, any::<bool>(), 1usize..4, 0u8..3, 65001u32..65003, 0u32..4, any::<bool>(), 0u32..4, 2u8..250, any::<u8>()),
        maximum_paths in 1u8..5,
        relax in any::<bool>(),
    ) {
        // (local_pref, local, hops, origin, neighbour AS, MED, eBGP, IGP cost, router id, address)
        type Key = (u32, bool, usize, u8, u32, u32, bool, u32, u8, u8);
        let mut w: Key = winner;
        let mut rows: Vec<Key> = others;
        for r in rows.iter_mut() {
            // Equal to the winner at every step before `step`.
            if step > 0 { r.0 = w.0; }
            if step > 1 { r.1 = w.1; }
            if step > 2 { r.2 = w.2; }
            if step > 3 { r.3 = w.3; }
            if step > 4 { r.5 = w.5; }
            if step > 5 { r.6 = w.6; }
            if step > 6 { r.7 = w.7; }
        }
        // Strictly better at `step` than every other path.
        match step {
            0 => { w.0 = rows.iter().map(|r| r.0).max().unwrap() + 1; }
            1 => { w.1 = true; for r in &mut rows { r.1 = false; } }
            2 => { w.2 = 1; for r in &mut rows { r.2 = r.2.max(2); } }
            3 => { w.3 = 0; for r in &mut rows { r.3 = r.3.max(1); } }
            4 => { w.5 = 0; for r in &mut rows { r.4 = w.4; r.5 = r.5.max(1); } }
            5 => { w.6 = true; for r in &mut rows { r.6 = false; } }
            6 => { w.7 = 0; for r in &mut rows { r.7 = r.7.max(1); } }
            _ => { w.8 = 1; }
        }
        let attrs: Vec<RouteAttrs> = std::iter::once(&w).chain(&rows).map(|k| {
            let mut path = vec![k.4];
            path.extend((1..k.2).map(|i| 64512 + i as u32));
            RouteAttrs {
                next_hop: NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, k.9)),
                attributes: PathAttributes {
                    origin: Some(origin(k.3)),
                    as_path: Some(AsPath::sequence(path)),
                    med: Some(k.5),
                    local_pref: Some(k.0),
                    ..PathAttributes::default()
                },
            }
        }).collect();
        let candidates: Vec<Candidate<'_>> = std::iter::once(&w).chain(&rows).zip(&attrs).map(|(k, a)| Candidate {
            attrs: a,
            local: k.1,
            ebgp: k.6,
            router_id: Ipv4Addr::new(1, 1, 1, k.8),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, k.9)),
            igp_cost: k.7,
        }).collect();
        let params = Params { local_as: LOCAL_AS, default_local_pref: 100, maximum_paths, multipath_relax: relax };
        let selected = decision::select(&candidates, &params);
        prop_assert_eq!(selected.first(), Some(&0));
        prop_assert!(selected.len() <= usize::from(maximum_paths));
        prop_assert!(selected.iter().all(|&i| i < candidates.len()));
    }
}
