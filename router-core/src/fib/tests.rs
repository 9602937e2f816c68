use alloc::string::ToString;
use alloc::vec;

use super::*;
use crate::port::PortId;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn via(gw: &str, port: u16) -> Nexthop {
    Nexthop::gateway(gw.parse().unwrap(), PortId(port))
}

fn stat(nh: Vec<Nexthop>) -> Route {
    Route::new(Protocol::Static, nh)
}

fn hop(fib: &Fib, addr: &str) -> Option<Nexthop> {
    let g = fib.lookup(addr.parse().unwrap())?;
    let members = fib.group(g).unwrap().members();
    assert_eq!(members.len(), 1);
    Some(members[0])
}

#[test]
fn longest_prefix_wins() {
    let mut fib = Fib::new();
    fib.insert(net("0.0.0.0/0"), &stat(vec![via("192.168.0.1", 0)]));
    fib.insert(net("10.0.0.0/8"), &stat(vec![via("192.168.0.2", 0)]));
    fib.insert(net("10.1.2.0/24"), &stat(vec![via("192.168.0.3", 0)]));
    fib.insert(net("10.1.2.128/25"), &stat(vec![via("192.168.0.4", 0)]));
    fib.insert(net("10.1.2.200/32"), &stat(vec![via("192.168.0.5", 0)]));
    assert_eq!(hop(&fib, "8.8.8.8"), Some(via("192.168.0.1", 0)));
    assert_eq!(hop(&fib, "10.9.9.9"), Some(via("192.168.0.2", 0)));
    assert_eq!(hop(&fib, "10.1.2.1"), Some(via("192.168.0.3", 0)));
    assert_eq!(hop(&fib, "10.1.2.129"), Some(via("192.168.0.4", 0)));
    assert_eq!(hop(&fib, "10.1.2.200"), Some(via("192.168.0.5", 0)));
    assert_eq!(hop(&fib, "10.1.2.201"), Some(via("192.168.0.4", 0)));

    fib.remove(net("10.1.2.128/25"), Protocol::Static, 1);
    assert_eq!(hop(&fib, "10.1.2.129"), Some(via("192.168.0.3", 0)));
    assert_eq!(hop(&fib, "10.1.2.200"), Some(via("192.168.0.5", 0)));
    fib.remove(net("0.0.0.0/0"), Protocol::Static, 1);
    assert_eq!(hop(&fib, "8.8.8.8"), None);
}

#[test]
fn ipv6_longest_prefix_wins() {
    let mut fib = Fib::new();
    fib.insert(net("2001:db8::/32"), &stat(vec![via("fe80::1", 1)]));
    fib.insert(net("2001:db8:1::/48"), &stat(vec![via("fe80::2", 1)]));
    fib.insert(net("2001:db8:1::1/128"), &stat(vec![via("fe80::3", 1)]));
    assert_eq!(hop(&fib, "2001:db8:2::1"), Some(via("fe80::1", 1)));
    assert_eq!(hop(&fib, "2001:db8:1::2"), Some(via("fe80::2", 1)));
    assert_eq!(hop(&fib, "2001:db8:1::1"), Some(via("fe80::3", 1)));
    assert_eq!(hop(&fib, "2001:db9::1"), None);
}

#[test]
fn lower_distance_wins_and_the_loser_is_kept() {
    let mut fib = Fib::new();
    let p = net("172.20.0.0/16");
    fib.insert(
        p,
        &Route::new(Protocol::Ebgp, vec![via("192.168.10.200", 1)]),
    );
    assert_eq!(
        fib.insert(p, &stat(vec![via("192.168.10.1", 1)])),
        Change::WinnerChanged
    );
    assert_eq!(hop(&fib, "172.20.1.1"), Some(via("192.168.10.1", 1)));
    assert_eq!(fib.candidates(p).len(), 2);
    fib.remove(p, Protocol::Static, 1);
    assert_eq!(hop(&fib, "172.20.1.1"), Some(via("192.168.10.200", 1)));
}

#[test]
fn metric_breaks_distance_ties() {
    let mut fib = Fib::new();
    let p = net("10.0.0.0/8");
    let mut a = stat(vec![via("1.1.1.1", 0)]);
    a.metric = 100;
    let mut b = Route::new(Protocol::Kernel, vec![via("2.2.2.2", 0)]);
    b.distance = 1;
    b.metric = 10;
    fib.insert(p, &a);
    fib.insert(p, &b);
    assert_eq!(hop(&fib, "10.0.0.1"), Some(via("2.2.2.2", 0)));
}

#[test]
fn groups_are_interned_and_freed() {
    let mut fib = Fib::new();
    let nh = vec![via("192.168.0.1", 0), via("192.168.0.2", 0)];
    fib.insert(net("10.0.0.0/24"), &stat(nh.clone()));
    fib.insert(
        net("10.0.1.0/24"),
        &stat(nh.iter().rev().copied().collect()),
    );
    assert_eq!(fib.groups().len(), 1);
    fib.remove(net("10.0.0.0/24"), Protocol::Static, 1);
    assert_eq!(fib.groups().len(), 1);
    fib.remove(net("10.0.1.0/24"), Protocol::Static, 1);
    assert_eq!(fib.groups().len(), 0);
}

#[test]
fn replacing_a_route_keeps_surviving_members_flows() {
    let mut fib = Fib::new();
    let p = net("172.16.1.1/32");
    let three = vec![via("10.0.0.1", 0), via("10.0.0.2", 0), via("10.0.0.3", 0)];
    fib.insert(p, &Route::new(Protocol::Ebgp, three));
    let g = fib
        .group(fib.lookup("172.16.1.1".parse().unwrap()).unwrap())
        .unwrap()
        .clone();
    fib.insert(
        p,
        &Route::new(Protocol::Ebgp, vec![via("10.0.0.1", 0), via("10.0.0.3", 0)]),
    );
    let g2 = fib
        .group(fib.lookup("172.16.1.1".parse().unwrap()).unwrap())
        .unwrap();
    for h in (0..u32::MAX).step_by(1 << 20) {
        let before = g.select_by_hash(h);
        if before.kind != via("10.0.0.2", 0).kind {
            assert_eq!(g2.select_by_hash(h), before);
        }
    }
}

#[test]
fn routes_iterate_in_prefix_order_and_print_like_ip_route() {
    let mut fib = Fib::new();
    fib.insert(net("10.1.0.0/16"), &stat(vec![via("192.168.0.1", 2)]));
    fib.insert(net("10.0.0.0/8"), &stat(vec![via("192.168.0.1", 2)]));
    fib.insert(
        net("192.168.0.0/24"),
        &Route::new(Protocol::Connected, vec![Nexthop::connected(PortId(2))]),
    );
    let lines: Vec<_> = fib.routes().map(|r| r.to_string()).collect();
    assert_eq!(
        lines,
        vec![
            "10.0.0.0/8 via 192.168.0.1 dev port2 proto static",
            "10.1.0.0/16 via 192.168.0.1 dev port2 proto static",
            "192.168.0.0/24 dev port2 proto kernel scope link",
        ]
    );
}

#[test]
fn shorter_prefix_starting_a_slot_block_is_not_painted_into_it() {
    // Regression found by proptests/tests/fib.rs: 10.0.0.0/14 shares its first
    // key with the /18 direct slot of 10.0.0.0/24 but covers more than it.
    let mut fib = Fib::new();
    fib.insert(net("10.0.0.0/14"), &stat(vec![via("192.168.0.1", 0)]));
    fib.insert(net("10.0.0.0/24"), &stat(vec![via("192.168.0.2", 0)]));
    assert_eq!(hop(&fib, "10.3.0.1"), Some(via("192.168.0.1", 0)));
    assert_eq!(hop(&fib, "10.0.0.1"), Some(via("192.168.0.2", 0)));
    assert_eq!(hop(&fib, "10.0.1.1"), Some(via("192.168.0.1", 0)));
}

#[test]
fn compiled_arrays_only_reference_live_groups() {
    // The eBPF snapshot copies every leaf: freed runs must not keep stale group ids.
    let mut fib = Fib::new();
    for i in 0..64u8 {
        let p: IpNet = alloc::format!("10.{i}.1.0/24").parse().unwrap();
        fib.insert(
            p,
            &stat(vec![via(&alloc::format!("192.168.0.{}", i + 1), 0)]),
        );
    }
    for i in (0..64u8).step_by(2) {
        let p: IpNet = alloc::format!("10.{i}.1.0/24").parse().unwrap();
        fib.remove(p, Protocol::Static, 1);
    }
    let t = fib.trie_v4();
    let direct = t
        .direct()
        .iter()
        .filter(|&&d| d & poptrie::LEAF_FLAG != 0)
        .map(|&d| d & !poptrie::LEAF_FLAG);
    for g in direct
        .chain(t.leaves().iter().copied())
        .filter(|&g| g != poptrie::NO_ROUTE)
    {
        assert!(fib.group(GroupId(g)).is_some(), "stale group {g}");
    }
}

#[test]
fn compact_fib_answers_like_a_full_one() {
    let mut full = Fib::new();
    let mut small = Fib::compact();
    for (p, gw) in [
        ("0.0.0.0/0", "192.168.0.1"),
        ("10.0.0.0/8", "192.168.0.2"),
        ("10.1.2.0/24", "192.168.0.3"),
        ("10.1.2.7/32", "192.168.0.4"),
        ("2001:db8::/32", "192.168.0.5"),
    ] {
        full.insert(net(p), &stat(vec![via(gw, 0)]));
        small.insert(net(p), &stat(vec![via(gw, 0)]));
    }
    for a in [
        "8.8.8.8",
        "10.9.9.9",
        "10.1.2.1",
        "10.1.2.7",
        "2001:db8::1",
        "2001:db9::1",
    ] {
        assert_eq!(hop(&small, a), hop(&full, a), "{a}");
    }
    assert!(small.trie_v4().memory_bytes() < 4096);
}
