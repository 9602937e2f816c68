//! Session tests: every event in every state, then whole sessions between
//! two in-memory sessions exchanging bytes.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;

use super::collision::{self, Arrival, Direction};
use super::*;
use crate::bgp::wire::{
    AsPath, Capability, GracefulRestart, GracefulRestartFamily, MpReach, Origin,
};

const A_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn at(secs: i64) -> Instant {
    Instant::from_secs(secs)
}

/// Late enough for every armed timer to be due.
fn late() -> Instant {
    at(1_000_000)
}

fn config() -> Config {
    Config::new(65001, PeerAs::Exact(65000), A_ID)
}

fn ctx() -> DecodeContext {
    DecodeContext::new(true, [Family::IPV4_UNICAST, Family::IPV6_UNICAST])
}

fn bytes(msg: Message) -> Vec<u8> {
    msg.to_bytes(&ctx()).unwrap()
}

fn peer_open_with(caps: Vec<Capability>) -> Vec<u8> {
    bytes(Message::Open(Open::new(65000, 90, B_ID, caps)))
}

fn peer_open() -> Vec<u8> {
    peer_open_with(vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::FourOctetAs(65000),
    ])
}

fn announce(prefix: &str, path: Vec<u32>) -> Update {
    Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(path)),
            next_hop: Some(B_ID),
            ..PathAttributes::default()
        },
        nlri: vec![prefix.parse().unwrap()],
        ..Update::default()
    }
}

fn states(out: &[Output]) -> Vec<State> {
    out.iter()
        .filter_map(|o| match o {
            Output::StateChange { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

fn sent(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(b) => Some(Message::parse(b, &ctx()).unwrap()),
            _ => None,
        })
        .collect()
}

fn notification(out: &[Output]) -> Option<ErrorCode> {
    sent(out).into_iter().find_map(|m| match m {
        Message::Notification(n) => Some(n.code),
        _ => None,
    })
}

fn in_state(state: State) -> Session {
    let mut s = Session::new(config());
    let steps: &[Event] = match state {
        State::Idle => &[],
        State::Connect => &[Event::ManualStart],
        State::Active => &[Event::ManualStart, Event::ConnectionFailed],
        State::OpenSent => &[Event::ManualStart, Event::Connected],
        State::OpenConfirm => &[
            Event::ManualStart,
            Event::Connected,
            Event::Received(peer_open()),
        ],
        State::Established => &[
            Event::ManualStart,
            Event::Connected,
            Event::Received(peer_open()),
            Event::Received(KEEPALIVE_BYTES.to_vec()),
        ],
    };
    for e in steps {
        s.handle(at(0), e.clone());
    }
    assert_eq!(s.state(), state);
    s
}

const KEEPALIVE_BYTES: [u8; HEADER_LEN] = crate::bgp::wire::KEEPALIVE;

#[test]
fn every_event_in_every_state() {
    use State::*;
    let mut bad_header = KEEPALIVE_BYTES.to_vec();
    bad_header[0] = 0;
    let mut bad_open = peer_open();
    bad_open[HEADER_LEN] = 3;
    let update = bytes(Message::Update(Box::new(announce(
        "10.1.0.0/24",
        vec![65000],
    ))));
    let notif = bytes(Message::Notification(Notification::new(
        ErrorCode::Cease(Cease::AdministrativeReset),
        vec![],
    )));
    let events: Vec<(&str, Event)> = vec![
        ("ManualStart", Event::ManualStart),
        ("ManualStop", Event::ManualStop),
        ("AutomaticStart", Event::AutomaticStart),
        (
            "ConnectRetryTimer",
            Event::TimerExpired(Timer::ConnectRetry),
        ),
        ("HoldTimer", Event::TimerExpired(Timer::Hold)),
        ("KeepaliveTimer", Event::TimerExpired(Timer::Keepalive)),
        ("DelayOpenTimer", Event::TimerExpired(Timer::DelayOpen)),
        ("IdleHoldTimer", Event::TimerExpired(Timer::IdleHold)),
        ("Connected", Event::Connected),
        ("TcpConnectionFails", Event::ConnectionFailed),
        ("BGPOpen", Event::Received(peer_open())),
        ("KeepAliveMsg", Event::Received(KEEPALIVE_BYTES.to_vec())),
        ("UpdateMsg", Event::Received(update)),
        ("NotifMsg", Event::Received(notif)),
        ("BGPHeaderErr", Event::Received(bad_header)),
        ("BGPOpenMsgErr", Event::Received(bad_open)),
        ("OpenCollisionDump", Event::OpenCollisionDump),
    ];
    // One row per state, one column per event above.
    let table: [(State, [State; 17]); 6] = [
        (
            Idle,
            [
                Connect, Idle, Connect, Idle, Idle, Idle, Idle, Idle, Idle, Idle, Idle, Idle, Idle,
                Idle, Idle, Idle, Idle,
            ],
        ),
        (
            Connect,
            [
                Connect, Idle, Connect, Connect, Connect, Connect, Connect, Connect, OpenSent,
                Active, Idle, Idle, Idle, Idle, Idle, Idle, Connect,
            ],
        ),
        (
            Active,
            [
                Active, Idle, Active, Connect, Active, Active, Active, Active, OpenSent, Active,
                Idle, Idle, Idle, Idle, Idle, Idle, Active,
            ],
        ),
        (
            OpenSent,
            [
                OpenSent,
                Idle,
                OpenSent,
                OpenSent,
                Idle,
                OpenSent,
                OpenSent,
                OpenSent,
                OpenSent,
                Active,
                OpenConfirm,
                Idle,
                Idle,
                Idle,
                Idle,
                Idle,
                Idle,
            ],
        ),
        (
            OpenConfirm,
            [
                OpenConfirm,
                Idle,
                OpenConfirm,
                OpenConfirm,
                Idle,
                OpenConfirm,
                OpenConfirm,
                OpenConfirm,
                OpenConfirm,
                Idle,
                Idle,
                Established,
                Idle,
                Idle,
                Idle,
                Idle,
                Idle,
            ],
        ),
        (
            Established,
            [
                Established,
                Idle,
                Established,
                Established,
                Idle,
                Established,
                Established,
                Established,
                Established,
                Idle,
                Idle,
                Established,
                Established,
                Idle,
                Idle,
                Idle,
                Idle,
            ],
        ),
    ];
    for (state, row) in table {
        for ((name, event), expected) in events.iter().zip(row) {
            let mut s = in_state(state);
            s.handle(late(), event.clone());
            assert_eq!(s.state(), expected, "{state:?} + {name}");
        }
    }
}

#[test]
fn fsm_errors_name_the_state() {
    let update = bytes(Message::Update(Box::new(announce(
        "10.1.0.0/24",
        vec![65000],
    ))));
    let cases = [
        (
            State::OpenSent,
            KEEPALIVE_BYTES.to_vec(),
            FsmError::UnexpectedInOpenSent,
        ),
        (
            State::OpenConfirm,
            update,
            FsmError::UnexpectedInOpenConfirm,
        ),
        (
            State::Established,
            peer_open(),
            FsmError::UnexpectedInEstablished,
        ),
    ];
    for (state, msg, subcode) in cases {
        let out = in_state(state).handle(at(1), Event::Received(msg));
        assert_eq!(notification(&out), Some(ErrorCode::Fsm(subcode)));
    }
}

#[test]
fn open_checks_peer_as_and_identifier() {
    let mut s = in_state(State::OpenSent);
    let wrong = bytes(Message::Open(Open::new(65999, 90, B_ID, vec![])));
    let out = s.handle(at(1), Event::Received(wrong));
    assert_eq!(
        notification(&out),
        Some(ErrorCode::Open(OpenError::BadPeerAs))
    );
    // iBGP with our own identifier.
    let mut config = Config::new(65000, PeerAs::Internal, A_ID);
    config.families = vec![Family::IPV4_UNICAST];
    let mut s = Session::new(config);
    s.handle(at(0), Event::ManualStart);
    s.handle(at(0), Event::Connected);
    let same_id = bytes(Message::Open(Open::new(65000, 90, A_ID, vec![])));
    let out = s.handle(at(1), Event::Received(same_id));
    assert_eq!(
        notification(&out),
        Some(ErrorCode::Open(OpenError::BadBgpIdentifier))
    );
    // remote-as external refuses our own AS.
    let mut config = config_external();
    config.local_as = 65000;
    let mut s = Session::new(config);
    s.handle(at(0), Event::ManualStart);
    s.handle(at(0), Event::Connected);
    let out = s.handle(at(1), Event::Received(peer_open()));
    assert_eq!(
        notification(&out),
        Some(ErrorCode::Open(OpenError::BadPeerAs))
    );
}

fn config_external() -> Config {
    Config::new(65001, PeerAs::External, A_ID)
}

#[test]
fn hold_timer_expiry_sends_4_0_then_closes() {
    let mut s = in_state(State::Established);
    let hold = s.deadline(Timer::Hold).unwrap();
    assert_eq!(hold, at(90));
    // Too early: nothing.
    assert_eq!(s.handle(at(89), Event::TimerExpired(Timer::Hold)), vec![]);
    let out = s.handle(hold, Event::TimerExpired(Timer::Hold));
    let notif_at = out
        .iter()
        .position(|o| matches!(o, Output::Send(b) if b[HEADER_LEN..] == [4, 0]))
        .expect("NOTIFICATION 4/0 sent");
    let close_at = out.iter().position(|o| *o == Output::Close).unwrap();
    assert!(notif_at < close_at);
    assert!(out.contains(&Output::PeerDown {
        stale: BTreeSet::new()
    }));
    assert_eq!(states(&out), vec![State::Idle]);
    assert_eq!(s.stats().sent.notification, 1);
    // It comes back by itself after the idle hold time.
    let idle_hold = s.deadline(Timer::IdleHold).unwrap();
    assert!(idle_hold > hold && idle_hold <= hold + Duration::from_secs(5));
    let out = s.handle(idle_hold, Event::TimerExpired(Timer::IdleHold));
    assert!(out.contains(&Output::Connect { ttl: 1 }));
}

#[test]
fn keepalives_and_hold_restart() {
    let mut s = in_state(State::Established);
    assert_eq!(s.deadline(Timer::Keepalive), Some(at(30)));
    let out = s.handle(at(30), Event::TimerExpired(Timer::Keepalive));
    assert_eq!(sent(&out), vec![Message::Keepalive]);
    assert_eq!(s.deadline(Timer::Keepalive), Some(at(60)));
    s.handle(at(50), Event::Received(KEEPALIVE_BYTES.to_vec()));
    assert_eq!(s.deadline(Timer::Hold), Some(at(140)));
    // Hold time 0: neither timer runs.
    let mut s = in_state(State::OpenSent);
    s.handle(
        at(1),
        Event::Received(bytes(Message::Open(Open::new(65000, 0, B_ID, vec![])))),
    );
    assert_eq!(s.state(), State::OpenConfirm);
    assert_eq!(s.deadline(Timer::Hold), None);
    assert_eq!(s.deadline(Timer::Keepalive), None);
}

#[test]
fn connect_retry_is_jittered_from_the_seed() {
    let deadline = |seed| {
        let mut c = config();
        c.seed = seed;
        let mut s = Session::new(c);
        s.handle(at(0), Event::ManualStart);
        s.deadline(Timer::ConnectRetry).unwrap()
    };
    let (a, b) = (deadline(1), deadline(2));
    assert_eq!(a, deadline(1));
    assert_ne!(a, b);
    for d in [a, b] {
        assert!(d >= at(90) && d <= at(120), "{d}");
    }
    // Passive sessions never connect.
    let mut c = config();
    c.passive = true;
    let mut s = Session::new(c);
    let out = s.handle(at(0), Event::ManualStart);
    assert_eq!(states(&out), vec![State::Active]);
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
    assert_eq!(s.deadline(Timer::ConnectRetry), None);
}

#[test]
fn multihop_ttl_is_an_output() {
    let mut c = config();
    c.ttl = 2;
    let mut s = Session::new(c);
    assert_eq!(
        s.handle(at(0), Event::ManualStart)[1],
        Output::Connect { ttl: 2 }
    );
    assert_eq!(s.handle(at(0), Event::Connected)[0], Output::SetTtl(2));
}

#[test]
fn delay_open_waits_for_the_peer() {
    let mut c = config();
    c.delay_open_time = Some(Duration::from_secs(5));
    let mut s = Session::new(c.clone());
    s.handle(at(0), Event::ManualStart);
    let out = s.handle(at(0), Event::Connected);
    assert!(sent(&out).is_empty());
    assert_eq!(s.deadline(Timer::DelayOpen), Some(at(5)));
    // The peer's OPEN first: ours, then KEEPALIVE, straight to OpenConfirm.
    let out = s.handle(at(1), Event::Received(peer_open()));
    assert!(matches!(
        sent(&out)[..],
        [Message::Open(_), Message::Keepalive]
    ));
    assert_eq!(s.state(), State::OpenConfirm);
    // Or the timer first: our OPEN and OpenSent.
    let mut s = Session::new(c);
    s.handle(at(0), Event::ManualStart);
    s.handle(at(0), Event::Connected);
    let out = s.handle(at(5), Event::TimerExpired(Timer::DelayOpen));
    assert!(matches!(sent(&out)[..], [Message::Open(_)]));
    assert_eq!(s.state(), State::OpenSent);
}

#[test]
fn manual_stop_sends_cease() {
    let mut s = in_state(State::Established);
    let out = s.handle(at(1), Event::ManualStop);
    assert_eq!(
        notification(&out),
        Some(ErrorCode::Cease(Cease::AdministrativeShutdown))
    );
    assert_eq!(s.deadline(Timer::IdleHold), None);
    assert_eq!(
        s.stats().last_notification_sent.as_ref().map(|n| n.code),
        Some(ErrorCode::Cease(Cease::AdministrativeShutdown))
    );
}

#[test]
fn updates_become_route_outputs() {
    let mut s = in_state(State::Established);
    let mut u = announce("10.1.0.0/24", vec![65000, 65100]);
    u.withdrawn = vec!["10.9.0.0/16".parse().unwrap()];
    u.attributes.mp_reach = None;
    let out = s.handle(at(1), Event::Received(bytes(Message::Update(Box::new(u)))));
    assert_eq!(
        out[1..],
        [
            Output::Withdraw {
                family: Family::IPV4_UNICAST,
                prefixes: vec!["10.9.0.0/16".parse().unwrap()],
            },
            Output::Announce {
                family: Family::IPV4_UNICAST,
                next_hop: NextHop::Ipv4(B_ID),
                attributes: Box::new(PathAttributes {
                    origin: Some(Origin::Igp),
                    as_path: Some(AsPath::sequence(vec![65000, 65100])),
                    ..PathAttributes::default()
                }),
                prefixes: vec!["10.1.0.0/24".parse().unwrap()],
            }
        ]
    );
    // The leftmost AS is not the peer's: treat-as-withdraw.
    let u = announce("10.2.0.0/24", vec![65100]);
    let out = s.handle(at(2), Event::Received(bytes(Message::Update(Box::new(u)))));
    assert!(
        matches!(&out[1], Output::AttributeErrors(e) if e[0].reason == UpdateError::MalformedAsPath)
    );
    assert_eq!(
        out[2],
        Output::Withdraw {
            family: Family::IPV4_UNICAST,
            prefixes: vec!["10.2.0.0/24".parse().unwrap()],
        }
    );
    assert_eq!(out.len(), 3);
    // An invalid ORIGIN from the codec: treat-as-withdraw too.
    let mut raw = bytes(Message::Update(Box::new(announce(
        "10.3.0.0/24",
        vec![65000],
    ))));
    let origin_at = raw.windows(3).position(|w| w == [0x40, 1, 1]).unwrap();
    raw[origin_at + 3] = 9;
    let out = s.handle(at(3), Event::Received(raw));
    assert!(matches!(out.last(), Some(Output::Withdraw { .. })));
    // A session-reset error: NOTIFICATION with the codec's code.
    let mut bad = bytes(Message::Update(Box::default()));
    bad[HEADER_LEN + 1] = 9;
    let out = s.handle(at(4), Event::Received(bad));
    assert_eq!(
        notification(&out),
        Some(ErrorCode::Update(UpdateError::MalformedAttributeList))
    );
    assert_eq!(s.state(), State::Idle);
}

/// A session Established with a peer whose OPEN carried `caps`.
fn established_with(caps: Vec<Capability>) -> Session {
    let mut s = Session::new(config());
    s.handle(at(0), Event::ManualStart);
    s.handle(at(0), Event::Connected);
    s.handle(at(0), Event::Received(peer_open_with(caps)));
    s.handle(at(0), Event::Received(KEEPALIVE_BYTES.to_vec()));
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn attribute_discard_keeps_the_route() {
    let mut s = in_state(State::Established);
    let mut raw = bytes(Message::Update(Box::new(announce(
        "10.4.0.0/24",
        vec![65000],
    ))));
    // Append a malformed AGGREGATOR (3 octets): RFC 7606 attribute-discard.
    let aggregator = [0xc0, 7, 3, 1, 2, 3];
    let attrs_len_at = HEADER_LEN + 2;
    let attrs_len = u16::from_be_bytes([raw[attrs_len_at], raw[attrs_len_at + 1]]);
    let end = attrs_len_at + 2 + usize::from(attrs_len);
    raw.splice(end..end, aggregator);
    let total = raw.len() as u16;
    raw[16..18].copy_from_slice(&total.to_be_bytes());
    raw[attrs_len_at..attrs_len_at + 2].copy_from_slice(&(attrs_len + 6).to_be_bytes());
    let out = s.handle(at(1), Event::Received(raw));
    assert!(matches!(&out[1], Output::AttributeErrors(e)
        if e[0].action == ErrorAction::AttributeDiscard && e[0].type_code == 7));
    assert!(
        matches!(&out[2], Output::Announce { attributes, .. } if attributes.aggregator.is_none())
    );
    assert_eq!(s.state(), State::Established);
}

#[test]
fn as4_path_from_a_two_octet_peer_is_merged() {
    let mut s = established_with(vec![Capability::Multiprotocol(Family::IPV4_UNICAST)]);
    assert!(!s.negotiated().unwrap().four_octet_as);
    let u = announce("10.5.0.0/24", vec![65000, 4_200_000_001]);
    let two_octet = DecodeContext::new(false, [Family::IPV4_UNICAST]);
    let raw = Message::Update(Box::new(u)).to_bytes(&two_octet).unwrap();
    let out = s.handle(at(1), Event::Received(raw));
    let Output::Announce { attributes, .. } = &out[1] else {
        panic!("{out:?}");
    };
    assert_eq!(
        attributes.as_path,
        Some(AsPath::sequence(vec![65000, 4_200_000_001]))
    );
    assert_eq!(attributes.as4_path, None);
}

#[test]
fn ipv6_routes_and_end_of_rib() {
    let mut s = established_with(vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::Multiprotocol(Family::IPV6_UNICAST),
        Capability::FourOctetAs(65000),
    ]);
    let nh = NextHop::Ipv6 {
        global: "2001:db8::2".parse().unwrap(),
        link_local: None,
    };
    let u = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000])),
            mp_reach: Some(MpReach {
                next_hop: nh,
                nlri: Prefixes::Ipv6(vec!["2001:db8:1::/48".parse().unwrap()]),
            }),
            ..PathAttributes::default()
        },
        ..Update::default()
    };
    let eor = Update::end_of_rib(Family::IPV6_UNICAST).unwrap();
    let mut stream = bytes(Message::Update(Box::new(u)));
    stream.extend(bytes(Message::Update(Box::new(eor))));
    // Split anywhere: framing holds partial messages.
    let (x, y) = stream.split_at(7);
    assert!(s.handle(at(1), Event::Received(x.to_vec())).is_empty());
    let out = s.handle(at(1), Event::Received(y.to_vec()));
    assert!(matches!(
        &out[1],
        Output::Announce { family, next_hop, .. } if *family == Family::IPV6_UNICAST && *next_hop == nh
    ));
    assert_eq!(out.last(), Some(&Output::EndOfRib(Family::IPV6_UNICAST)));
    assert_eq!(s.stats().received.update, 2);
}

#[test]
fn long_updates_are_split() {
    let mut s = in_state(State::Established);
    let mut u = announce("10.0.0.0/24", vec![65001]);
    u.nlri = (0..2000u32)
        .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
        .collect();
    u.withdrawn = vec!["192.168.0.0/16".parse().unwrap()];
    let out = s.handle(at(1), Event::SendUpdate(Box::new(u.clone())));
    let msgs = sent(&out);
    assert!(msgs.len() >= 3);
    let mut nlri = Vec::new();
    let mut withdrawn = Vec::new();
    for m in msgs {
        let Message::Update(m) = m else { panic!() };
        nlri.extend(m.nlri);
        withdrawn.extend(m.withdrawn);
    }
    assert_eq!(nlri, u.nlri);
    assert_eq!(withdrawn, u.withdrawn);
    // Not Established: nothing is sent.
    let mut s = in_state(State::OpenConfirm);
    assert!(s.handle(at(1), Event::SendUpdate(Box::new(u))).is_empty());
}

#[test]
fn route_refresh_both_ways() {
    let mut s = established_with(vec![Capability::RouteRefresh]);
    let out = s.handle(at(1), Event::SendRouteRefresh(Family::IPV4_UNICAST));
    assert_eq!(
        sent(&out),
        vec![Message::RouteRefresh(RouteRefresh::request(
            Family::IPV4_UNICAST
        ))]
    );
    let rr = bytes(Message::RouteRefresh(RouteRefresh::request(
        Family::IPV4_UNICAST,
    )));
    let out = s.handle(at(1), Event::Received(rr));
    assert!(out.contains(&Output::RefreshRequested(Family::IPV4_UNICAST)));
    // IPv6 was not negotiated: neither way.
    assert!(
        s.handle(at(1), Event::SendRouteRefresh(Family::IPV6_UNICAST))
            .is_empty()
    );
}

/// Two sessions joined by an in-memory connection, with their timers.
struct Pair {
    now: Instant,
    sides: [Session; 2],
    timers: [BTreeMap<Timer, Instant>; 2],
    log: [Vec<Output>; 2],
    connected: bool,
}

impl Pair {
    fn new(a: Config, b: Config) -> Pair {
        Pair {
            now: at(0),
            sides: [Session::new(a), Session::new(b)],
            timers: [BTreeMap::new(), BTreeMap::new()],
            log: [Vec::new(), Vec::new()],
            connected: false,
        }
    }

    /// Feed `event` to side `i` and carry out everything that follows.
    fn feed(&mut self, i: usize, event: Event) {
        let mut queue = VecDeque::from([(i, event)]);
        while let Some((i, event)) = queue.pop_front() {
            let out = self.sides[i].handle(self.now, event);
            for o in &out {
                match o {
                    Output::Connect { .. } if !self.connected => {
                        let other = self.sides[1 - i].state();
                        if collision::on_inbound(other) == Arrival::Accept {
                            self.connected = true;
                            queue.push_back((i, Event::Connected));
                            queue.push_back((1 - i, Event::Connected));
                        } else {
                            queue.push_back((i, Event::ConnectionFailed));
                        }
                    }
                    Output::Send(b) if self.connected => {
                        queue.push_back((1 - i, Event::Received(b.clone())));
                    }
                    Output::Close if self.connected => {
                        self.connected = false;
                        queue.push_back((1 - i, Event::ConnectionFailed));
                    }
                    Output::ArmTimer { timer, at } => {
                        self.timers[i].insert(*timer, *at);
                    }
                    Output::CancelTimer(t) => {
                        self.timers[i].remove(t);
                    }
                    _ => {}
                }
            }
            self.log[i].extend(out);
        }
    }

    /// Advance to the next timer of either side and fire it.
    fn step(&mut self) {
        let (i, timer, when) = (0..2)
            .flat_map(|i| self.timers[i].iter().map(move |(t, a)| (i, *t, *a)))
            .min_by_key(|&(i, _, a)| (a, i))
            .expect("a timer");
        self.timers[i].remove(&timer);
        self.now = when;
        self.feed(i, Event::TimerExpired(timer));
    }

    fn run_until(&mut self, until: Instant) {
        while self
            .timers
            .iter()
            .flat_map(|t| t.values())
            .any(|&a| a <= until)
        {
            self.step();
        }
        self.now = until;
    }
}

fn pair_configs() -> (Config, Config) {
    let mut a = Config::new(65001, PeerAs::External, A_ID);
    let mut b = Config::new(65000, PeerAs::External, B_ID);
    a.seed = 1;
    b.seed = 2;
    b.passive = true;
    b.idle_hold_time = Duration::from_secs(1);
    (a, b)
}

#[test]
fn two_sessions_establish_and_exchange_routes() {
    let (a, b) = pair_configs();
    let mut p = Pair::new(a, b);
    p.feed(1, Event::ManualStart);
    p.feed(0, Event::ManualStart);
    assert_eq!(p.sides[0].state(), State::Established);
    assert_eq!(p.sides[1].state(), State::Established);
    let n = p.sides[1].negotiated().unwrap();
    assert_eq!(
        (n.peer_as, n.peer_id, n.hold_time, n.keepalive_time),
        (65001, A_ID, 90, 30)
    );
    assert!(n.four_octet_as && n.route_refresh);
    assert_eq!(n.families.len(), 2);
    // A announces a route and End-of-RIB; B learns both.
    let mut u = announce("172.20.0.0/24", vec![65001]);
    u.attributes.next_hop = Some(A_ID);
    p.feed(0, Event::SendUpdate(Box::new(u)));
    let eor = Update::end_of_rib(Family::IPV4_UNICAST).unwrap();
    p.feed(0, Event::SendUpdate(Box::new(eor)));
    let learned: Vec<&Output> = p.log[1]
        .iter()
        .filter(|o| matches!(o, Output::Announce { .. } | Output::EndOfRib(_)))
        .collect();
    assert!(
        matches!(learned[0], Output::Announce { next_hop: NextHop::Ipv4(a), .. } if *a == A_ID)
    );
    assert_eq!(learned[1], &Output::EndOfRib(Family::IPV4_UNICAST));
    // Keepalives keep it up for an hour.
    p.run_until(at(3600));
    assert_eq!(p.sides[0].state(), State::Established);
    assert_eq!(p.sides[1].uptime(p.now), Some(Duration::from_secs(3600)));
    assert!(p.sides[0].stats().sent.keepalive >= 3600 / 30);
    // A stops: B sees the Cease and drops A's routes.
    p.feed(0, Event::ManualStop);
    assert_eq!(p.sides[1].state(), State::Idle);
    assert!(p.log[1].contains(&Output::PeerDown {
        stale: BTreeSet::new()
    }));
    assert_eq!(
        p.sides[1]
            .stats()
            .last_notification_received
            .as_ref()
            .map(|n| n.code),
        Some(ErrorCode::Cease(Cease::AdministrativeShutdown))
    );
}

fn gr_config(mut c: Config, preserved: bool) -> Config {
    c.graceful_restart = Some(GracefulRestartConfig {
        forwarding_preserved: preserved,
        ..GracefulRestartConfig::default()
    });
    c
}

/// B helps A: A's session drops without NOTIFICATION and comes back.
fn gr_pair() -> Pair {
    let (a, b) = pair_configs();
    let mut p = Pair::new(gr_config(a, true), gr_config(b, false));
    p.feed(1, Event::ManualStart);
    p.feed(0, Event::ManualStart);
    assert_eq!(p.sides[1].state(), State::Established);
    p.connected = false;
    p.feed(1, Event::ConnectionFailed);
    p.feed(0, Event::ConnectionFailed);
    let stale = BTreeSet::from([Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    assert!(p.log[1].contains(&Output::PeerDown {
        stale: stale.clone()
    }));
    assert_eq!(p.sides[1].stale_families(), &stale);
    assert_eq!(p.sides[1].deadline(Timer::GracefulRestart), Some(at(120)));
    p
}

#[test]
fn graceful_restart_stale_then_end_of_rib() {
    let mut p = gr_pair();
    // A restarts within the restart time (idle hold, then connect).
    p.run_until(at(10));
    assert_eq!(p.sides[1].state(), State::Established);
    // Back within the restart time: the stale-path timer replaces it.
    assert!(p.sides[1].deadline(Timer::GracefulRestart).unwrap() > at(360));
    assert!(!p.log[1].iter().any(|o| matches!(o, Output::PurgeStale(_))));
    for family in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        let eor = Update::end_of_rib(family).unwrap();
        p.feed(0, Event::SendUpdate(Box::new(eor)));
    }
    assert!(p.log[1].contains(&Output::EndOfRib(Family::IPV6_UNICAST)));
    assert!(p.sides[1].stale_families().is_empty());
    assert_eq!(p.sides[1].deadline(Timer::GracefulRestart), None);
    assert!(!p.log[1].iter().any(|o| matches!(o, Output::PurgeStale(_))));
}

#[test]
fn graceful_restart_stale_then_purge() {
    let mut p = gr_pair();
    // A stays down past its restart time.
    p.feed(0, Event::ManualStop);
    p.run_until(at(200));
    assert!(p.log[1].contains(&Output::PurgeStale(Family::IPV4_UNICAST)));
    assert!(p.log[1].contains(&Output::PurgeStale(Family::IPV6_UNICAST)));
    assert!(p.sides[1].stale_families().is_empty());
}

#[test]
fn graceful_restart_without_forwarding_state_purges_at_once() {
    let (a, b) = pair_configs();
    let mut p = Pair::new(gr_config(a, false), gr_config(b, false));
    p.feed(1, Event::ManualStart);
    p.feed(0, Event::ManualStart);
    p.connected = false;
    p.feed(1, Event::ConnectionFailed);
    p.feed(0, Event::ConnectionFailed);
    p.run_until(at(10));
    assert_eq!(p.sides[1].state(), State::Established);
    // The F bit is clear: the stale routes go when the session is back.
    let up = p.log[1]
        .iter()
        .rposition(|o| matches!(o, Output::Established(_)))
        .unwrap();
    assert!(p.log[1][up..].contains(&Output::PurgeStale(Family::IPV4_UNICAST)));
    assert_eq!(p.sides[1].deadline(Timer::GracefulRestart), None);
}

#[test]
fn graceful_restart_and_notifications() {
    // Without the N bit a NOTIFICATION ends graceful restart; with it
    // (RFC 8538), a Hold Timer Expired keeps routes but a Hard Reset does not.
    for (n_bit, hard, graceful) in [
        (false, false, false),
        (true, false, true),
        (true, true, false),
    ] {
        let (a, b) = pair_configs();
        let (mut a, mut b) = (gr_config(a, true), gr_config(b, true));
        for c in [&mut a, &mut b] {
            if let Some(gr) = &mut c.graceful_restart {
                gr.notification = n_bit;
            }
        }
        let mut p = Pair::new(a, b);
        p.feed(1, Event::ManualStart);
        p.feed(0, Event::ManualStart);
        let code = if hard {
            ErrorCode::Cease(Cease::HardReset)
        } else {
            ErrorCode::HoldTimerExpired
        };
        let n = bytes(Message::Notification(Notification::new(code, vec![])));
        p.feed(1, Event::Received(n));
        let down = p.log[1].iter().find_map(|o| match o {
            Output::PeerDown { stale } => Some(!stale.is_empty()),
            _ => None,
        });
        assert_eq!(down, Some(graceful), "N bit {n_bit}, hard reset {hard}");
    }
}

#[test]
fn collision_resolution() {
    // A (10.0.0.1) connected to B and B to A; both sessions of A got B's OPEN.
    let mut outbound = in_state(State::OpenConfirm);
    assert_eq!(collision::on_inbound(outbound.state()), Arrival::Contend);
    let mut inbound = Session::new(config());
    inbound.handle(at(0), Event::AutomaticStart);
    inbound.handle(at(0), Event::Connected);
    assert_eq!(
        collision::loser(&outbound, &inbound),
        Some(Direction::Outbound)
    );
    inbound.handle(at(0), Event::Received(peer_open()));
    // Ours is lower: our outbound connection is dumped with Cease 7.
    let out = outbound.handle(at(1), Event::OpenCollisionDump);
    assert_eq!(
        notification(&out),
        Some(ErrorCode::Cease(Cease::ConnectionCollisionResolution))
    );
    assert_eq!(outbound.state(), State::Idle);
    assert_eq!(outbound.deadline(Timer::IdleHold), None);
    inbound.inherit(&outbound);
    assert_eq!(inbound.stats().sent.open, 2);
    inbound.handle(at(1), Event::Received(KEEPALIVE_BYTES.to_vec()));
    assert_eq!(inbound.state(), State::Established);
    // A higher local identifier keeps its own connection.
    assert_eq!(
        collision::resolve(Ipv4Addr::new(10, 0, 0, 9), B_ID),
        Direction::Inbound
    );
    // Neither side has an OPEN yet: undecided.
    let fresh = in_state(State::OpenSent);
    assert_eq!(collision::loser(&fresh, &in_state(State::OpenSent)), None);
    assert_eq!(collision::on_inbound(State::Established), Arrival::Refuse);
    assert_eq!(collision::on_inbound(State::Active), Arrival::Accept);
}

#[test]
fn inherit_carries_the_restart_timer() {
    let p = gr_pair();
    let mut winner = Session::new(p.sides[1].config().clone());
    let out = winner.inherit(&p.sides[1]);
    assert_eq!(
        out,
        vec![Output::ArmTimer {
            timer: Timer::GracefulRestart,
            at: at(120)
        }]
    );
    assert_eq!(winner.stale_families().len(), 2);
}

#[test]
fn graceful_restart_families_in_open() {
    let mut c = config();
    c.graceful_restart = Some(GracefulRestartConfig::default());
    let s = Session::new(c);
    let caps = &s.open.capabilities;
    assert!(caps.contains(&Capability::GracefulRestart(GracefulRestart {
        restarting: false,
        notification: true,
        restart_time: 120,
        families: vec![
            GracefulRestartFamily {
                family: Family::IPV4_UNICAST,
                forwarding_preserved: false
            },
            GracefulRestartFamily {
                family: Family::IPV6_UNICAST,
                forwarding_preserved: false
            },
        ],
    })));
}
