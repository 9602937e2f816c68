//! The seed's BGP lab in miniature, deterministic and in memory: three
//! Kubernetes nodes in AS 65001 each originate a pod /24 and the same
//! LoadBalancer /32 to a ToR in AS 65000 (FRR with `maximum-paths 4` and
//! `bgp bestpath as-path multipath-relax`). Sessions and RIBs are the real
//! ones; the connections are byte queues.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;

use smoltcp::time::Instant;

use super::*;
use crate::bgp::fsm::{Config, Event, PeerAs, Session, State};

/// One BGP speaker: a RIB and a session per peer.
struct Speaker {
    rib: Rib,
    sessions: BTreeMap<PeerId, Session>,
    fib: BTreeMap<IpNet, BgpRoute>,
}

/// A connection end: (speaker, peer id at that speaker).
type End = (usize, PeerId);

struct Lab {
    speakers: Vec<Speaker>,
    links: Vec<(End, End)>,
    connected: BTreeSet<(usize, u32)>,
    queue: VecDeque<(End, Event)>,
    log: Vec<String>,
}

impl Lab {
    fn other(&self, end: End) -> End {
        self.links
            .iter()
            .find_map(|&(a, b)| {
                if a == end {
                    Some(b)
                } else if b == end {
                    Some(a)
                } else {
                    None
                }
            })
            .expect("linked")
    }

    fn is_connected(&self, end: End) -> bool {
        self.connected.contains(&(end.0, end.1.0))
    }

    fn set_connected(&mut self, end: End, up: bool) {
        for e in [end, self.other(end)] {
            if up {
                self.connected.insert((e.0, e.1.0));
            } else {
                self.connected.remove(&(e.0, e.1.0));
            }
        }
    }

    /// Run every queued event and what follows, at time zero.
    fn run(&mut self) {
        let now = Instant::from_secs(0);
        while let Some((end, event)) = self.queue.pop_front() {
            let (s, peer) = end;
            let outputs = self.speakers[s]
                .sessions
                .get_mut(&peer)
                .expect("session")
                .handle(now, event);
            for o in outputs {
                match &o {
                    fsm::Output::Connect { .. } => {
                        let far = self.other(end);
                        let state = self.speakers[far.0].sessions[&far.1].state();
                        if matches!(state, State::Active | State::Connect) {
                            self.set_connected(end, true);
                            self.queue.push_back((end, Event::Connected));
                            self.queue.push_back((far, Event::Connected));
                        } else {
                            self.queue.push_back((end, Event::ConnectionFailed));
                        }
                    }
                    fsm::Output::Send(bytes) if self.is_connected(end) => {
                        let far = self.other(end);
                        self.queue.push_back((far, Event::Received(bytes.clone())));
                    }
                    fsm::Output::Close if self.is_connected(end) => {
                        self.set_connected(end, false);
                        let far = self.other(end);
                        self.queue.push_back((far, Event::ConnectionFailed));
                    }
                    fsm::Output::StateChange { to, .. } => {
                        self.log
                            .push(alloc::format!("{s}/{}: {}", peer.0, to.name()));
                    }
                    _ => {}
                }
                let rib_out = self.speakers[s].rib.apply(peer, &o);
                self.route(s, rib_out);
            }
        }
    }

    fn route(&mut self, s: usize, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Send { peer, update } => {
                    self.queue.push_back(((s, peer), Event::SendUpdate(update)));
                }
                Output::Fib { prefix, route } => {
                    let fib = &mut self.speakers[s].fib;
                    match route {
                        Some(r) => fib.insert(prefix, r),
                        None => fib.remove(&prefix),
                    };
                }
            }
        }
    }
}

const TOR_ID: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 200);
const NODES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 168, 10, 101),
    Ipv4Addr::new(192, 168, 10, 102),
    Ipv4Addr::new(192, 168, 20, 100),
];
const LB_IP: &str = "172.16.1.1/32";

fn lab() -> Lab {
    let mut tor_config = RibConfig::new(65000, TOR_ID);
    tor_config.maximum_paths = 4;
    tor_config.multipath_relax = true;
    let mut tor = Speaker {
        rib: Rib::new(tor_config),
        sessions: BTreeMap::new(),
        fib: BTreeMap::new(),
    };
    let mut speakers = Vec::new();
    let mut links = Vec::new();
    for (i, &addr) in NODES.iter().enumerate() {
        // The ToR: passive, `remote-as external`, multihop for the node
        // behind the router.
        let mut c = Config::new(65000, PeerAs::External, TOR_ID);
        c.passive = true;
        c.ttl = if i == 2 { 2 } else { 1 };
        c.seed = i as u64;
        let at_tor = tor
            .rib
            .add_peer(PeerConfig::new(IpAddr::V4(addr), Some(TOR_ID)));
        tor.sessions.insert(at_tor, Session::new(c));
        // The node: Cilium-like, active, AS 65001.
        let mut node = Speaker {
            rib: Rib::new(RibConfig::new(65001, addr)),
            sessions: BTreeMap::new(),
            fib: BTreeMap::new(),
        };
        let mut c = Config::new(65001, PeerAs::Exact(65000), addr);
        c.seed = 100 + i as u64;
        let at_node = node
            .rib
            .add_peer(PeerConfig::new(IpAddr::V4(TOR_ID), Some(addr)));
        node.sessions.insert(at_node, Session::new(c));
        speakers.push(node);
        links.push(((i, at_node), (3, at_tor)));
    }
    speakers.push(tor);
    Lab {
        speakers,
        links,
        connected: BTreeSet::new(),
        queue: VecDeque::new(),
        log: Vec::new(),
    }
}

fn start(lab: &mut Lab) {
    for i in 0..3 {
        let pod_cidr: IpNet = alloc::format!("172.20.{i}.0/24").parse().unwrap();
        for prefix in [pod_cidr, LB_IP.parse().unwrap()] {
            let out = lab.speakers[i]
                .rib
                .originate(prefix, PathAttributes::default());
            lab.route(i, out);
        }
    }
    let ends: Vec<(End, End)> = lab.links.clone();
    for (node, tor) in ends {
        lab.queue.push_back((tor, Event::ManualStart));
        lab.queue.push_back((node, Event::ManualStart));
    }
    lab.run();
}

#[test]
fn tor_learns_pod_cidrs_and_multipaths_the_lb_ip() {
    let mut lab = lab();
    start(&mut lab);
    for s in &lab.speakers {
        for session in s.sessions.values() {
            assert_eq!(session.state(), State::Established);
        }
    }
    let tor = &lab.speakers[3];
    for (i, node) in NODES.iter().enumerate() {
        let prefix: IpNet = alloc::format!("172.20.{i}.0/24").parse().unwrap();
        assert_eq!(
            tor.fib[&prefix],
            BgpRoute {
                protocol: Protocol::Ebgp,
                nexthops: vec![IpAddr::V4(*node)],
            }
        );
    }
    // The /32 from all three: best by lowest router id, two more multipaths.
    let lb: IpNet = LB_IP.parse().unwrap();
    let paths = tor.rib.paths(lb);
    assert_eq!(paths.len(), 3);
    assert!(paths.iter().all(|p| p.selected));
    let best = paths[0].attrs.next_hop_addr();
    assert_eq!(best, IpAddr::V4(NODES[0]));
    assert_eq!(tor.fib[&lb].nexthops.len(), 3);
    // The nodes share AS 65001: the ToR sends them nothing back.
    for node in &lab.speakers[..3] {
        assert!(node.fib.is_empty());
        assert_eq!(node.rib.len(), 2);
    }
}

#[test]
fn a_node_leaving_shrinks_the_ecmp_group() {
    let mut lab = lab();
    start(&mut lab);
    // `enable-bgp=false` on the first node: its session stops.
    let (node, _) = lab.links[0];
    lab.queue.push_back((node, Event::ManualStop));
    lab.run();
    let tor = &lab.speakers[3];
    let lb: IpNet = LB_IP.parse().unwrap();
    assert_eq!(
        tor.fib[&lb].nexthops,
        vec![IpAddr::V4(NODES[1]), IpAddr::V4(NODES[2])]
    );
    assert!(!tor.fib.contains_key(&"172.20.0.0/24".parse().unwrap()));
    // Same inputs, same trace.
    let mut again = self::lab();
    start(&mut again);
    let (node, _) = again.links[0];
    again.queue.push_back((node, Event::ManualStop));
    again.run();
    assert_eq!(lab.log, again.log);
}
