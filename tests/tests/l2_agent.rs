//! L2 announcements on real nodes ([`nexthop_tests::l2lab`]): only the
//! leader answers ARP for the service's address, only the IPv6 service's
//! leader answers neighbour solicitations for its address, and two agents never
//! announce it at once (a watcher polls all three throughout); the leader's
//! link going down hands the address over within a jittered retry; `kill
//! -9` of the leader's agent with its link down, within the lease's bound;
//! the router's neighbour entry follows by gratuitous ARP; with etcd gone,
//! the leader stops at its renew deadline and nobody else starts; an agent
//! stopped with SIGTERM leaves a datapath that no longer answers. Needs
//! root; prints why it skips otherwise (and, for etcd, fails under
//! `CI=true`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nexthop_testkit::{Etcd, sh, skips, wait_for};
use nexthop_tests::l2lab::{Lab, VIP, VIP6, Watcher, announcing, announcing_ip, leader_among};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");
/// The lease timings: duration, renew deadline, retry period.
const LEASE: [&str; 3] = ["3s", "1s", "200ms"];

/// Once node `i`'s datapath has its new announcements (the controller
/// hands them over with the gratuitous ARP; the map sync follows), it
/// answers ARP for the address, and it alone.
fn only_answers(lab: &Lab, i: usize) {
    wait_for(
        "the new leader's datapath answers",
        Duration::from_secs(5),
        || (!lab.arping(1).is_empty()).then_some(()),
        || lab.logs(),
    );
    assert_eq!(lab.arping(2), BTreeSet::from([lab.mac(i)]));
}

#[test]
fn only_the_leader_answers_arp_and_failover_follows_the_lease() {
    if skips(&["ip", "arping", "ndisc6", "sysctl"]) || Etcd::skips() {
        return;
    }
    let mut etcd = Etcd::start();
    let mut lab = Lab::new(Path::new(AGENT), &etcd, LEASE);
    let sockets: Vec<PathBuf> = (0..3).map(|i| lab.socket(i)).collect();
    let watcher = Watcher::start(sockets.clone());

    let (first, took) = leader_among(&lab, &sockets, &[0, 1], Duration::from_secs(20));
    println!("first leader n{} after {took:?}", first + 1);
    // The datapath answers once loaded and attached (a few seconds).
    wait_for(
        "the leader's datapath answers",
        Duration::from_secs(20),
        || (!lab.arping(1).is_empty()).then_some(()),
        || lab.logs(),
    );
    let macs = lab.arping(3);
    assert_eq!(
        macs,
        BTreeSet::from([lab.mac(first)]),
        "only the leader answers"
    );
    // IPv6: the other service is led through its own lease; only its
    // leader's datapath answers neighbour solicitations for it.
    let leader6 = wait_for(
        "one leader of the IPv6 address",
        Duration::from_secs(20),
        || match announcing_ip(&sockets, VIP6).as_slice() {
            [one] => Some(*one),
            _ => None,
        },
        || lab.logs(),
    );
    wait_for(
        "the IPv6 leader's datapath answers",
        Duration::from_secs(10),
        || (!lab.ndisc().is_empty()).then_some(()),
        || lab.logs(),
    );
    assert_eq!(
        lab.ndisc(),
        BTreeSet::from([lab.mac(leader6)]),
        "only the IPv6 leader answers"
    );
    // The router knows the address at the leader (arping's packet socket
    // leaves the kernel's table alone): a stale entry, as traffic leaves it.
    let mac = lab.mac(first);
    lab.ns.exec(
        "rtr",
        &[
            "ip", "neigh", "replace", VIP, "lladdr", &mac, "dev", "eth1", "nud", "stale",
        ],
    );

    // The leader's link goes down: it steps down and frees the lease.
    lab.link(first, false);
    let other = 1 - first;
    let (second, took) = leader_among(&lab, &sockets, &[other], Duration::from_secs(5));
    println!("link down: n{} took over after {took:?}", second + 1);
    assert!(
        took < Duration::from_secs(1),
        "link-down failover took {took:?}\n{}",
        lab.logs()
    );
    wait_for(
        "the router's entry moved by gratuitous ARP",
        Duration::from_secs(2),
        || (lab.router_neighbour() == Some(lab.mac(second))).then_some(()),
        || lab.ns.exec("rtr", &["ip", "neigh"]),
    );
    only_answers(&lab, second);
    lab.link(first, true);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(announcing(&sockets), [second], "the old leader follows");

    // kill -9 of the leader's agent, and its link down (its pinned
    // datapath would go on answering otherwise).
    drop(lab.nodes[second].agent.take());
    lab.link(second, false);
    let (third, took) = leader_among(&lab, &sockets, &[first], Duration::from_secs(10));
    println!(
        "kill -9 + link down: n{} took over after {took:?}",
        third + 1
    );
    assert!(
        took < Duration::from_secs(6),
        "crash failover took {took:?}"
    );
    only_answers(&lab, third);

    // etcd gone: the leader stops at its renew deadline; nobody starts.
    etcd.kill();
    let gone = Instant::now();
    wait_for(
        "the leader stops without its store",
        Duration::from_secs(3),
        || announcing(&sockets).is_empty().then_some(()),
        || lab.logs(),
    );
    println!("etcd killed: the leader stopped after {:?}", gone.elapsed());
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        announcing(&sockets).is_empty(),
        "nobody announces without the store"
    );
    assert!(lab.arping(2).is_empty(), "nobody answers ARP");

    // etcd back: the last agent standing leads again. Stopped with SIGTERM,
    // it withdraws the address from its datapath, which stays attached.
    etcd.restart();
    let (last, _) = leader_among(&lab, &sockets, &[first], Duration::from_secs(10));
    wait_for(
        "the leader answers again",
        Duration::from_secs(5),
        || (lab.arping(1) == BTreeSet::from([lab.mac(last)])).then_some(()),
        || lab.logs(),
    );
    let mut agent = lab.nodes[last].agent.take().expect("running");
    sh(&["kill", "-TERM", &agent.0.id().to_string()]);
    let status = agent.0.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", lab.logs());
    assert!(
        lab.arping(2).is_empty(),
        "the stopped agent's datapath does not answer\n{}",
        lab.logs()
    );
    let overlaps = watcher.finish();
    assert!(
        overlaps.is_empty(),
        "two announced at once: {overlaps:?}\n{}",
        lab.logs()
    );
    assert!(!lab.logs().contains("panicked"), "{}", lab.logs());
}
