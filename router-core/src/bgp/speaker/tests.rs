//! The seed's BGP lab in miniature, deterministic and in memory: three
//! Kubernetes nodes in AS 65001 each originate a pod /24 and the same
//! LoadBalancer /32 to a ToR in AS 65000 (FRR with `maximum-paths 4` and
//! `bgp bestpath as-path multipath-relax`). Four [`Speaker`]s; the
//! connections are queues of inputs, so this is the harness a runtime is:
//! carry out actions, report what the "sockets" saw.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::net::Ipv4Addr;

use super::*;
use crate::bgp::fsm::{Config, PeerAs};
use crate::bgp::wire::{AsPath, NextHop, Origin};
use crate::fib::Protocol;

const TOR: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 200);
const NODES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 168, 10, 101),
    Ipv4Addr::new(192, 168, 10, 102),
    Ipv4Addr::new(192, 168, 20, 100),
];
const LB_IP: &str = "172.16.1.1/32";
const T0: Instant = Instant::ZERO;

struct Lab {
    /// Speakers by their own address: the three nodes, then the ToR.
    speakers: BTreeMap<IpAddr, Speaker>,
    /// Connected pairs (a, b) with a < b.
    connected: BTreeSet<(IpAddr, IpAddr)>,
    queue: VecDeque<(IpAddr, Input)>,
    fibs: BTreeMap<IpAddr, BTreeMap<IpNet, BgpRoute>>,
    log: Vec<String>,
}

fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    if a < b { (a, b) } else { (b, a) }
}

impl Lab {
    /// Run every queued input and what follows.
    fn run(&mut self) {
        while let Some((at, input)) = self.queue.pop_front() {
            let actions = self
                .speakers
                .get_mut(&at)
                .expect("speaker")
                .handle(T0, input);
            for action in actions {
                self.carry_out(at, action);
            }
        }
    }

    fn carry_out(&mut self, at: IpAddr, action: Action) {
        match action {
            Action::Connect { peer, .. } => {
                if self.speakers[&peer].accepts(at) || self.wants(peer, at) {
                    self.connected.insert(pair(at, peer));
                    self.queue.push_back((
                        at,
                        Input::Connected {
                            peer,
                            local: Some(at),
                        },
                    ));
                    self.queue.push_back((
                        peer,
                        Input::Connected {
                            peer: at,
                            local: Some(peer),
                        },
                    ));
                } else {
                    self.queue.push_back((at, Input::ConnectionFailed(peer)));
                }
            }
            Action::Send { peer, bytes } if self.connected.contains(&pair(at, peer)) => {
                self.queue.push_back((peer, Input::Received(at, bytes)));
            }
            Action::Close { peer } if self.connected.remove(&pair(at, peer)) => {
                self.queue.push_back((peer, Input::ConnectionFailed(at)));
            }
            Action::Fib { prefix, route } => {
                let fib = self.fibs.entry(at).or_default();
                match route {
                    Some(r) => fib.insert(prefix, r),
                    None => fib.remove(&prefix),
                };
            }
            Action::Report {
                peer,
                report: Report::State { to, .. },
            } => {
                self.log.push(format!("{at} -> {peer}: {}", to.name()));
            }
            _ => {}
        }
    }

    /// An active peer racing us: it accepts while Connect too.
    fn wants(&self, at: IpAddr, from: IpAddr) -> bool {
        self.speakers[&at]
            .peers()
            .get(&from)
            .is_some_and(|p| !p.is_connected() && p.session().state() == State::Connect)
    }

    fn input(&mut self, at: Ipv4Addr, input: Input) {
        self.queue.push_back((IpAddr::V4(at), input));
        self.run();
    }

    fn speaker(&self, at: Ipv4Addr) -> &Speaker {
        &self.speakers[&IpAddr::V4(at)]
    }
}

/// What a session with the ToR negotiates.
fn tor_session() -> Negotiated {
    Negotiated {
        peer_as: 65000,
        peer_id: TOR,
        hold_time: 9,
        keepalive_time: 3,
        families: [Family::IPV4_UNICAST].into(),
        four_octet_as: true,
        route_refresh: true,
        extended_next_hop: BTreeSet::new(),
        peer_graceful_restart: None,
        notification_restart: false,
    }
}

fn spec(config: Config, peer: Ipv4Addr, local: Ipv4Addr) -> Input {
    Input::AddPeer(Box::new(PeerSpec {
        session: config,
        rib: PeerConfig::new(IpAddr::V4(peer), Some(local)),
        import: true,
        transport: Transport {
            port: 179,
            ..Transport::default()
        },
    }))
}

fn lab() -> Lab {
    let mut tor_config = RibConfig::new(65000, TOR);
    tor_config.maximum_paths = 4;
    tor_config.multipath_relax = true;
    let mut lab = Lab {
        speakers: BTreeMap::new(),
        connected: BTreeSet::new(),
        queue: VecDeque::new(),
        fibs: BTreeMap::new(),
        log: Vec::new(),
    };
    lab.speakers
        .insert(IpAddr::V4(TOR), Speaker::new(tor_config));
    for (i, &addr) in NODES.iter().enumerate() {
        lab.speakers
            .insert(IpAddr::V4(addr), Speaker::new(RibConfig::new(65001, addr)));
        // The ToR: passive, `remote-as external`, multihop for the node
        // behind the router.
        let mut c = Config::new(65000, PeerAs::External, TOR);
        c.passive = true;
        c.ttl = if i == 2 { 2 } else { 1 };
        c.seed = i as u64;
        lab.input(TOR, spec(c, addr, TOR));
        for n in 0..2 {
            let prefix: IpNet = if n == 0 {
                format!("172.20.{i}.0/24").parse().unwrap()
            } else {
                LB_IP.parse().unwrap()
            };
            lab.input(addr, Input::Originate(prefix, Box::default()));
        }
        // The node: Cilium-like, active, AS 65001.
        let mut c = Config::new(65001, PeerAs::Exact(65000), addr);
        c.seed = 100 + i as u64;
        lab.input(addr, spec(c, TOR, addr));
    }
    lab
}

#[test]
fn tor_learns_pod_cidrs_and_multipaths_the_lb_ip() {
    let lab = lab();
    for s in lab.speakers.values() {
        for peer in s.peers().values() {
            assert_eq!(peer.session().state(), State::Established);
        }
    }
    let tor_fib = &lab.fibs[&IpAddr::V4(TOR)];
    for (i, node) in NODES.iter().enumerate() {
        let prefix: IpNet = format!("172.20.{i}.0/24").parse().unwrap();
        assert_eq!(
            tor_fib[&prefix],
            BgpRoute {
                protocol: Protocol::Ebgp,
                nexthops: vec![IpAddr::V4(*node)],
            }
        );
    }
    // The /32 from all three: best by lowest router id, two more multipaths.
    let lb: IpNet = LB_IP.parse().unwrap();
    let paths = lab.speaker(TOR).rib().paths(lb);
    assert_eq!(paths.len(), 3);
    assert!(paths.iter().all(|p| p.selected));
    assert_eq!(paths[0].attrs.next_hop_addr(), IpAddr::V4(NODES[0]));
    assert_eq!(tor_fib[&lb].nexthops.len(), 3);
    // The nodes share AS 65001: the ToR sends them nothing back.
    for node in NODES {
        let speaker = lab.speaker(node);
        assert!(lab.fibs.get(&IpAddr::V4(node)).is_none_or(|f| f.is_empty()));
        assert_eq!(speaker.rib().len(), 2);
        assert!(speaker.peers()[&IpAddr::V4(TOR)].looped().is_empty());
        assert_eq!(speaker.originated_since(LB_IP.parse().unwrap()), Some(T0));
    }
}

#[test]
fn a_node_leaving_shrinks_the_ecmp_group_and_replays_identically() {
    let run = || {
        let mut lab = lab();
        // `enable-bgp=false` on the first node: its session stops.
        lab.input(NODES[0], Input::RemovePeer(IpAddr::V4(TOR)));
        lab
    };
    let lab = run();
    let tor_fib = &lab.fibs[&IpAddr::V4(TOR)];
    let lb: IpNet = LB_IP.parse().unwrap();
    assert_eq!(
        tor_fib[&lb].nexthops,
        vec![IpAddr::V4(NODES[1]), IpAddr::V4(NODES[2])]
    );
    assert!(!tor_fib.contains_key(&"172.20.0.0/24".parse().unwrap()));
    assert!(lab.speaker(NODES[0]).peers().is_empty());
    // The ToR saw a Cease.
    let at_tor = &lab.speaker(TOR).peers()[&IpAddr::V4(NODES[0])];
    assert_ne!(at_tor.session().state(), State::Established);
    assert!(matches!(at_tor.last_notification(), Some((false, _))));
    assert_eq!(lab.log, run().log);
}

#[test]
fn exit_leaves_graceful_restart_sessions_without_a_notification() {
    let mut lab = lab();
    let mut gr = Config::new(65001, PeerAs::Exact(65000), NODES[0]);
    gr.graceful_restart = Some(crate::bgp::fsm::GracefulRestartConfig::default());
    let mut tor_side = Config::new(65000, PeerAs::External, TOR);
    tor_side.passive = true;
    tor_side.graceful_restart = Some(crate::bgp::fsm::GracefulRestartConfig::default());
    lab.input(TOR, spec(tor_side, NODES[0], TOR));
    lab.input(NODES[0], spec(gr, TOR, NODES[0]));
    assert_eq!(
        lab.speaker(NODES[0]).peers()[&IpAddr::V4(TOR)]
            .session()
            .state(),
        State::Established
    );
    lab.input(NODES[0], Input::Exit);
    let at_tor = &lab.speaker(TOR).peers()[&IpAddr::V4(NODES[0])];
    assert!(
        at_tor.last_notification().is_none(),
        "no Cease on a graceful exit"
    );
    // The ToR keeps the node's routes, stale, until it is back.
    let pod: IpNet = "172.20.0.0/24".parse().unwrap();
    assert!(lab.fibs[&IpAddr::V4(TOR)].contains_key(&pod));
    // The other nodes have no graceful restart: a Cease.
    lab.input(NODES[1], Input::Exit);
    let at_tor = &lab.speaker(TOR).peers()[&IpAddr::V4(NODES[1])];
    assert!(at_tor.last_notification().is_some());
}

#[test]
fn routes_with_our_as_are_listed_until_withdrawn_and_imports_can_be_refused() {
    let mut node = Speaker::new(RibConfig::new(65001, NODES[0]));
    let mut c = Config::new(65001, PeerAs::Exact(65000), NODES[0]);
    c.passive = true;
    node.handle(T0, spec(c, TOR, NODES[0]));
    let announce = |asns: Vec<u32>, prefix: &str| fsm::Output::Announce {
        family: Family::IPV4_UNICAST,
        next_hop: NextHop::Ipv4(TOR),
        attributes: Box::new(PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(asns)),
            ..PathAttributes::default()
        }),
        prefixes: vec![prefix.parse().unwrap()],
    };
    let tor = IpAddr::V4(TOR);
    node.output(tor, fsm::Output::Established(Box::new(tor_session())));
    node.output(tor, announce(vec![65000, 65001], "172.20.9.0/24"));
    node.output(tor, announce(vec![65000], "10.10.0.0/16"));
    let peer = &node.peers()[&tor];
    assert_eq!(peer.looped().len(), 1);
    assert_eq!(node.rib().received_count(peer.rib_id()), 1);
    node.output(
        tor,
        fsm::Output::Withdraw {
            family: Family::IPV4_UNICAST,
            prefixes: vec!["172.20.9.0/24".parse().unwrap()],
        },
    );
    assert!(node.peers()[&tor].looped().is_empty());
    // A peer whose routes are not imported: nothing kept at all.
    node.peers.get_mut(&tor).unwrap().import = false;
    node.output(tor, announce(vec![65000], "10.11.0.0/16"));
    node.output(tor, announce(vec![65000, 65001], "172.20.8.0/24"));
    let peer = &node.peers()[&tor];
    assert_eq!(
        (
            peer.looped().len(),
            node.rib().received_count(peer.rib_id())
        ),
        (0, 1)
    );
}

#[test]
fn routes_with_a_semantically_incorrect_next_hop_are_ignored_and_reported() {
    let mut node = Speaker::new(RibConfig::new(65001, NODES[0]));
    let mut c = Config::new(65001, PeerAs::Exact(65000), NODES[0]);
    c.passive = true;
    node.handle(T0, spec(c, TOR, NODES[0]));
    let tor = IpAddr::V4(TOR);
    node.handle(
        T0,
        Input::Connected {
            peer: tor,
            local: Some(IpAddr::V4(NODES[0])),
        },
    );
    node.output(tor, fsm::Output::Established(Box::new(tor_session())));
    for (next_hop, ignored) in [
        (Ipv4Addr::UNSPECIFIED, true),
        (Ipv4Addr::new(224, 0, 0, 5), true),
        (Ipv4Addr::BROADCAST, true),
        (NODES[0], true),
        (TOR, false),
    ] {
        node.output(
            tor,
            fsm::Output::Announce {
                family: Family::IPV4_UNICAST,
                next_hop: NextHop::Ipv4(next_hop),
                attributes: Box::new(PathAttributes {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::sequence(vec![65000])),
                    ..PathAttributes::default()
                }),
                prefixes: vec![
                    format!("10.{}.0.0/16", next_hop.octets()[0])
                        .parse()
                        .unwrap(),
                ],
            },
        );
        let reported = node.actions.iter().any(|a| {
            matches!(a, Action::Report { report: Report::BadNextHop { next_hop: n, routes: 1 }, .. } if *n == IpAddr::V4(next_hop))
        });
        assert_eq!(reported, ignored, "{next_hop}");
        node.actions.clear();
    }
    let id = node.peers()[&tor].rib_id();
    assert_eq!(
        node.rib().received_count(id),
        1,
        "only the route via the ToR"
    );
}
