//! The BGP session: one peer's RFC 4271 §8 finite state machine, sans-IO.
//!
//! A [`Session`] owns one connection's protocol state — the FSM state, its
//! timers (as deadlines the runtime arms), framing of the received byte
//! stream, what the two OPENs negotiated, message counters — and the
//! graceful-restart helper's view of the peer (RFC 4724 §4.2). It is driven
//! by [`Session::handle`]`(now, `[`Event`]`) -> Vec<`[`Output`]`>`. Sockets,
//! clocks and route selection are not its business: the transport carries
//! out connects, sends, closes and timers, and the RIB
//! ([`crate::bgp::rib`]) consumes the route outputs.
//!
//! ```text
//!              ManualStart / AutomaticStart (IdleHoldTimer)
//!   Idle ───────────────────────────────> Connect ──(connect fails)──> Active
//!    ^   └─(passive)──────────────────────────────────────────────────> │
//!    │          Connected: send OPEN                  ConnectRetryTimer ─┘
//!    │   Connect/Active ──────────> OpenSent ──(OPEN accepted: KEEPALIVE)──> OpenConfirm
//!    │                                                                        │ KEEPALIVE
//!    └── error, NOTIFICATION, HoldTimer, ManualStop ──── Established <───────┘
//! ```
//!
//! Deliberate differences from the letter of RFC 4271 §8.2.2, as FRR does:
//! a failed outgoing connection moves Connect to Active (not Idle) and the
//! ConnectRetryTimer tries again; a passive session never connects; a
//! received NOTIFICATION is never answered; an expiry of a timer that is not
//! armed (a race with a cancel) is ignored. After any drop other than
//! ManualStop, the IdleHoldTimer (§8.1.1's optional IdleHoldTime) brings
//! the session back with an AutomaticStart.
//!
//! Connection collisions (§6.8) involve two connections, hence two sessions:
//! see [`collision`].

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use ipnet::IpNet;
use smoltcp::time::{Duration, Instant};

use super::wire::notification::{Cease, FsmError, OpenError};
use super::wire::{
    AttributeError, DecodeContext, EmitError, Error, ErrorAction, ErrorCode, Family, HEADER_LEN,
    Header, Message, MessageType, NextHop, Notification, Open, PathAttributes, Prefixes,
    RouteRefresh, SegmentType, Update, attributes::type_code, notification::UpdateError,
};
use crate::hash::splitmix64;

pub mod collision;
mod negotiate;
#[cfg(test)]
mod tests;

pub use negotiate::Negotiated;

/// The hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2
/// suggests 4 minutes).
const LARGE_HOLD: Duration = Duration::from_secs(240);

/// The AS numbers a peer may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAs {
    /// Exactly this AS.
    Exact(u32),
    /// The local AS (FRR's `remote-as internal`).
    Internal,
    /// Any AS but the local one (FRR's `remote-as external`).
    External,
}

impl PeerAs {
    fn accepts(self, local_as: u32, asn: u32) -> bool {
        match self {
            PeerAs::Exact(a) => a == asn,
            PeerAs::Internal => asn == local_as,
            PeerAs::External => asn != local_as,
        }
    }
}

/// Graceful restart (RFC 4724) as this speaker announces and helps with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time announced: how long peers keep our routes after we drop.
    pub restart_time: u16,
    /// Announce the N bit (RFC 8538).
    pub notification: bool,
    /// Announce the R bit: this speaker has just restarted.
    pub restarting: bool,
    /// Announce the F bit for every family: forwarding survived our restart.
    pub forwarding_preserved: bool,
    /// After a restarting peer comes back, how long its stale routes wait
    /// for its End-of-RIB (FRR's `stalepath-time`).
    pub stale_path_time: Duration,
}

impl Default for GracefulRestartConfig {
    /// FRR's defaults: 120 s restart time, N bit, 360 s stale-path time.
    fn default() -> Self {
        GracefulRestartConfig {
            restart_time: 120,
            notification: true,
            restarting: false,
            forwarding_preserved: false,
            stale_path_time: Duration::from_secs(360),
        }
    }
}

/// How a session behaves towards one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our AS.
    pub local_as: u32,
    /// The AS the peer must have.
    pub peer_as: PeerAs,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Hold time we propose, in seconds (0, or at least 3).
    pub hold_time: u16,
    /// Keepalive interval in seconds; `None` for a third of the hold time.
    pub keepalive_time: Option<u16>,
    /// ConnectRetryTime (RFC 4271 §10), jittered.
    pub connect_retry_time: Duration,
    /// How long the session stays Idle after a drop before it starts again
    /// (jittered).
    pub idle_hold_time: Duration,
    /// DelayOpenTime (RFC 4271 §8.1.1): wait this long for the peer's OPEN
    /// before sending ours; `None` sends at once.
    pub delay_open_time: Option<Duration>,
    /// Never connect; wait for the peer (RFC 4271 events 4 and 5).
    pub passive: bool,
    /// Families announced with the multiprotocol capability.
    pub families: Vec<Family>,
    /// Announce extended next hop for IPv4 unicast over IPv6 (RFC 8950).
    pub extended_next_hop: bool,
    /// Announce graceful restart and help restarting peers; `None` to do neither.
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// IP TTL for the connection: 1 for directly connected eBGP, more for
    /// eBGP multihop, 255 for iBGP.
    pub ttl: u8,
    /// Seed of the jitter (RFC 4271 §10).
    pub seed: u64,
}

impl Config {
    /// Defaults as Cilium uses them: hold 90 s, keepalive 30 s, connect
    /// retry 120 s, IPv4 and IPv6 unicast, TTL 1, graceful restart off.
    pub fn new(local_as: u32, peer_as: PeerAs, router_id: Ipv4Addr) -> Config {
        Config {
            local_as,
            peer_as,
            router_id,
            hold_time: 90,
            keepalive_time: Some(30),
            connect_retry_time: Duration::from_secs(120),
            idle_hold_time: Duration::from_secs(5),
            delay_open_time: None,
            passive: false,
            families: alloc::vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            extended_next_hop: false,
            graceful_restart: None,
            ttl: 1,
            seed: 0,
        }
    }
}

/// The session states of RFC 4271 §8.2.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// Refusing connections, waiting for a start.
    Idle,
    /// Connecting to the peer.
    Connect,
    /// Waiting for the peer to connect (or for the next connect attempt).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Exchanging routes.
    Established,
}

impl State {
    /// The lower-case name `bgp peers` prints.
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "opensent",
            State::OpenConfirm => "openconfirm",
            State::Established => "established",
        }
    }
}

/// The session's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// ConnectRetryTimer (event 9: ConnectRetryTimer_Expires).
    ConnectRetry,
    /// HoldTimer (event 10: HoldTimer_Expires).
    Hold,
    /// KeepaliveTimer (event 11: KeepaliveTimer_Expires).
    Keepalive,
    /// DelayOpenTimer (event 12: DelayOpenTimer_Expires).
    DelayOpen,
    /// IdleHoldTimer (event 13: IdleHoldTimer_Expires), then AutomaticStart.
    IdleHold,
    /// The graceful-restart helper's timer (RFC 4724 §4.2): the peer's
    /// Restart Time while it is down, the stale-path time once it is back.
    /// On expiry its remaining stale routes are purged.
    GracefulRestart,
}

/// How many [`Timer`]s there are.
const TIMER_COUNT: usize = 6;

impl Timer {
    /// Every timer, in the order a runtime fires those due at once.
    pub const ALL: [Timer; TIMER_COUNT] = [
        Timer::ConnectRetry,
        Timer::Hold,
        Timer::Keepalive,
        Timer::DelayOpen,
        Timer::IdleHold,
        Timer::GracefulRestart,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// An input to the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Event 1: ManualStart (event 4 when [`Config::passive`]).
    ManualStart,
    /// Event 2: ManualStop. Sends a Cease (Administrative Shutdown, or Hard
    /// Reset when the N bit was negotiated, RFC 8538 §5) and stays Idle.
    ManualStop,
    /// Event 3: AutomaticStart (event 5 when [`Config::passive`]).
    AutomaticStart,
    /// Events 9–13 and the graceful-restart timer: a timer armed with
    /// [`Output::ArmTimer`] reached its deadline.
    TimerExpired(Timer),
    /// Events 16 Tcp_CR_Acked and 17 TcpConnectionConfirmed: our connection
    /// completed, or the transport accepted one from this peer after its
    /// event 14 TcpConnection_Valid checks (address, and for an accepted
    /// connection, [`collision::on_inbound`]).
    Connected,
    /// Event 18: TcpConnectionFails (refused, reset or closed by the peer).
    ConnectionFailed,
    /// Octets read from the connection, in order; messages may be split or
    /// joined anywhere. The session frames them (events 19–28).
    Received(Vec<u8>),
    /// Event 23: OpenCollisionDump — this connection lost collision
    /// resolution ([`collision::loser`]).
    OpenCollisionDump,
    /// Send this UPDATE (from the RIB) if Established; one too long for a
    /// message is split by its prefixes.
    SendUpdate(Box<Update>),
    /// Ask the peer to resend its routes of a family (RFC 2918).
    SendRouteRefresh(Family),
}

/// Something the session wants done or reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer with this IP TTL.
    Connect {
        /// TTL for the connection's packets (eBGP multihop).
        ttl: u8,
    },
    /// Use this IP TTL on the connection just reported [`Event::Connected`].
    SetTtl(u8),
    /// Close the connection (or abandon the attempt).
    Close,
    /// Write these octets to the connection.
    Send(Vec<u8>),
    /// Report [`Event::TimerExpired`] at `at`, replacing any earlier deadline.
    ArmTimer {
        /// Which timer.
        timer: Timer,
        /// When it expires.
        at: Instant,
    },
    /// Forget the timer.
    CancelTimer(Timer),
    /// The state changed.
    StateChange {
        /// The old state.
        from: State,
        /// The new state.
        to: State,
    },
    /// The session reached Established with what was negotiated: the RIB
    /// sends its routes for these families (then End-of-RIB).
    Established(Box<Negotiated>),
    /// A NOTIFICATION was sent or received (for logs).
    Notification {
        /// Sent by us (else received).
        sent: bool,
        /// The message.
        notification: Notification,
    },
    /// The Established session ended. The peer's routes of the `stale`
    /// families stay, marked stale (graceful restart helper); all others go.
    PeerDown {
        /// Families kept stale until End-of-RIB or [`Output::PurgeStale`].
        stale: BTreeSet<Family>,
    },
    /// Install these prefixes from the peer with these attributes.
    Announce {
        /// Their family.
        family: Family,
        /// Their next hop (from NEXT_HOP or MP_REACH_NLRI).
        next_hop: NextHop,
        /// Path attributes without NEXT_HOP, MP_REACH_NLRI and MP_UNREACH_NLRI.
        attributes: Box<PathAttributes>,
        /// The prefixes.
        prefixes: Vec<IpNet>,
    },
    /// Remove these prefixes from the peer.
    Withdraw {
        /// Their family.
        family: Family,
        /// The prefixes.
        prefixes: Vec<IpNet>,
    },
    /// The peer sent End-of-RIB for the family: its initial routes are all
    /// in, and its remaining stale routes of the family go.
    EndOfRib(Family),
    /// Remove the peer's stale routes of this family (graceful restart
    /// timer expired, or the peer came back without preserving them).
    PurgeStale(Family),
    /// The peer asked for our routes of this family again (ROUTE-REFRESH).
    RefreshRequested(Family),
    /// An UPDATE had attribute errors handled under RFC 7606 (for logs).
    AttributeErrors(Vec<AttributeError>),
}

/// Messages of each type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// OPEN messages.
    pub open: u64,
    /// UPDATE messages.
    pub update: u64,
    /// NOTIFICATION messages.
    pub notification: u64,
    /// KEEPALIVE messages.
    pub keepalive: u64,
    /// ROUTE-REFRESH messages.
    pub route_refresh: u64,
}

impl MessageCounts {
    fn count(&mut self, kind: MessageType) {
        let n = match kind {
            MessageType::Open => &mut self.open,
            MessageType::Update => &mut self.update,
            MessageType::Notification => &mut self.notification,
            MessageType::Keepalive => &mut self.keepalive,
            MessageType::RouteRefresh => &mut self.route_refresh,
        };
        *n += 1;
    }

    fn add(&mut self, other: &MessageCounts) {
        self.open += other.open;
        self.update += other.update;
        self.notification += other.notification;
        self.keepalive += other.keepalive;
        self.route_refresh += other.route_refresh;
    }

    /// All messages.
    pub fn total(&self) -> u64 {
        self.open + self.update + self.notification + self.keepalive + self.route_refresh
    }
}

/// What `bgp peers` shows about a session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent.
    pub sent: MessageCounts,
    /// Messages received.
    pub received: MessageCounts,
    /// Times the session reached Established.
    pub established_transitions: u32,
    /// When the current Established period began.
    pub established_at: Option<Instant>,
    /// The last NOTIFICATION sent.
    pub last_notification_sent: Option<Notification>,
    /// The last NOTIFICATION received.
    pub last_notification_received: Option<Notification>,
}

/// A received message as an RFC 4271 §8.1.4 event.
#[derive(Debug)]
enum Incoming {
    /// Event 19 BGPOpen (event 20 when the DelayOpenTimer runs).
    BgpOpen(Open),
    /// Event 21: BGPHeaderErr.
    BgpHeaderErr(Error),
    /// Event 22: BGPOpenMsgErr.
    BgpOpenMsgErr(Error),
    /// Event 24: NotifMsgVerErr.
    NotifMsgVerErr(Notification),
    /// Event 25: NotifMsg.
    NotifMsg(Notification),
    /// Event 26: KeepAliveMsg.
    KeepAliveMsg,
    /// Event 27: UpdateMsg.
    UpdateMsg(Box<Update>),
    /// Event 28: UpdateMsgErr; also a malformed ROUTE-REFRESH (RFC 7313 §5).
    UpdateMsgErr(Error),
    /// A ROUTE-REFRESH (RFC 2918 §4), handled in Established.
    RouteRefresh(RouteRefresh),
}

impl Incoming {
    fn classify(parsed: Result<Message, Error>) -> Incoming {
        match parsed {
            Ok(Message::Open(o)) => Incoming::BgpOpen(o),
            Ok(Message::Update(u)) => Incoming::UpdateMsg(u),
            Ok(Message::Keepalive) => Incoming::KeepAliveMsg,
            Ok(Message::RouteRefresh(rr)) => Incoming::RouteRefresh(rr),
            Ok(Message::Notification(n)) => {
                if n.code == ErrorCode::Open(OpenError::UnsupportedVersionNumber) {
                    Incoming::NotifMsgVerErr(n)
                } else {
                    Incoming::NotifMsg(n)
                }
            }
            Err(e) => match e.code() {
                ErrorCode::MessageHeader(_) => Incoming::BgpHeaderErr(e),
                ErrorCode::Open(_) => Incoming::BgpOpenMsgErr(e),
                _ => Incoming::UpdateMsgErr(e),
            },
        }
    }
}

/// Why the connection is being torn down.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cause {
    /// ManualStop or collision: never graceful, no automatic restart.
    Stop(Option<Notification>),
    /// We send this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The connection failed, or an event made the session give up silently.
    Transport,
}

/// One BGP session (see the module documentation).
#[derive(Clone, Debug)]
pub struct Session {
    config: Config,
    state: State,
    timers: [Option<Instant>; TIMER_COUNT],
    rng: u64,
    automatic: bool,
    rx: Vec<u8>,
    ctx: DecodeContext,
    open: Open,
    negotiated: Option<Negotiated>,
    stale: BTreeSet<Family>,
    stats: Stats,
}

impl Session {
    /// A session in Idle; nothing happens until [`Event::ManualStart`].
    pub fn new(config: Config) -> Session {
        Session {
            open: negotiate::local_open(&config),
            rng: config.seed,
            config,
            state: State::Idle,
            timers: [None; TIMER_COUNT],
            automatic: false,
            rx: Vec::new(),
            ctx: DecodeContext::default(),
            negotiated: None,
            stale: BTreeSet::new(),
            stats: Stats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What the OPENs negotiated, once the peer's OPEN was accepted.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Counters and the last errors.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How long the session has been Established.
    pub fn uptime(&self, now: Instant) -> Option<Duration> {
        self.stats.established_at.map(|t| now - t)
    }

    /// Families whose routes from this peer are kept stale (graceful restart).
    pub fn stale_families(&self) -> &BTreeSet<Family> {
        &self.stale
    }

    /// When a timer expires, if armed.
    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.timers[timer.index()]
    }

    /// Feed one event at `now`.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<Output> {
        let mut out = Vec::new();
        match event {
            Event::ManualStart => {
                self.automatic = true;
                self.start(now, &mut out);
            }
            Event::AutomaticStart => self.start(now, &mut out),
            Event::ManualStop => self.manual_stop(now, &mut out),
            Event::TimerExpired(timer) => self.timer_expired(now, timer, &mut out),
            Event::Connected => self.connected(now, &mut out),
            Event::ConnectionFailed => self.connection_failed(now, &mut out),
            Event::Received(bytes) => self.received(now, &bytes, &mut out),
            Event::OpenCollisionDump => {
                if matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    let cease = Notification::new(
                        ErrorCode::Cease(Cease::ConnectionCollisionResolution),
                        Vec::new(),
                    );
                    self.reset(now, Cause::Stop(Some(cease)), &mut out);
                }
            }
            Event::SendUpdate(update) => {
                if self.state == State::Established {
                    self.send_update(now, *update, &mut out);
                }
            }
            Event::SendRouteRefresh(family) => {
                let ok = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.route_refresh && n.families.contains(&family));
                if self.state == State::Established && ok {
                    let rr = Message::RouteRefresh(RouteRefresh::request(family));
                    self.send(&rr, &mut out);
                }
            }
        }
        out
    }

    /// Take over the peer-lifetime state of `previous`, the session this
    /// one replaces after winning collision resolution (RFC 4271 §6.8):
    /// the graceful-restart helper's stale families and timer, automatic
    /// restart, and the counters. Returns the timer to re-arm here.
    pub fn inherit(&mut self, previous: &Session) -> Vec<Output> {
        self.automatic |= previous.automatic;
        self.stale.extend(previous.stale.iter().copied());
        let prev = &previous.stats;
        self.stats.sent.add(&prev.sent);
        self.stats.received.add(&prev.received);
        self.stats.established_transitions += prev.established_transitions;
        let mut out = Vec::new();
        if let Some(at) = previous.deadline(Timer::GracefulRestart) {
            self.arm(Timer::GracefulRestart, at, &mut out);
        }
        out
    }

    fn goto(&mut self, to: State, out: &mut Vec<Output>) {
        if self.state != to {
            out.push(Output::StateChange {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn arm(&mut self, timer: Timer, at: Instant, out: &mut Vec<Output>) {
        self.timers[timer.index()] = Some(at);
        out.push(Output::ArmTimer { timer, at });
    }

    fn cancel(&mut self, timer: Timer, out: &mut Vec<Output>) {
        if self.timers[timer.index()].take().is_some() {
            out.push(Output::CancelTimer(timer));
        }
    }

    /// `d` scaled by a factor in 0.75..=1.0 (RFC 4271 §10), from the seed.
    fn jitter(&mut self, d: Duration) -> Duration {
        let z = splitmix64(&mut self.rng);
        let per_mille = 750 + z % 251;
        Duration::from_micros(d.total_micros() / 1000 * per_mille)
    }

    fn arm_connect_retry(&mut self, now: Instant, out: &mut Vec<Output>) {
        let d = self.jitter(self.config.connect_retry_time);
        self.arm(Timer::ConnectRetry, now + d, out);
    }

    fn send(&mut self, msg: &Message, out: &mut Vec<Output>) {
        match msg.to_bytes(&self.ctx) {
            Ok(bytes) => {
                self.stats.sent.count(msg.kind());
                out.push(Output::Send(bytes));
            }
            Err(EmitError::MessageTooLong { .. }) => {
                if let Message::Update(u) = msg
                    && let Some((a, b)) = split(u)
                {
                    self.send(&Message::Update(Box::new(a)), out);
                    self.send(&Message::Update(Box::new(b)), out);
                }
            }
            Err(EmitError::FieldTooLong) => {}
        }
    }

    fn send_open(&mut self, now: Instant, out: &mut Vec<Output>) {
        let open = Message::Open(self.open.clone());
        self.send(&open, out);
        self.arm(Timer::Hold, now + LARGE_HOLD, out);
        self.goto(State::OpenSent, out);
    }

    fn restart_keepalive(&mut self, now: Instant, out: &mut Vec<Output>) {
        let keepalive = self.negotiated.as_ref().map_or(0, |n| n.keepalive_time);
        if keepalive > 0 {
            let at = now + Duration::from_secs(keepalive.into());
            self.arm(Timer::Keepalive, at, out);
        }
    }

    fn restart_hold(&mut self, now: Instant, out: &mut Vec<Output>) {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        if hold > 0 {
            self.arm(Timer::Hold, now + Duration::from_secs(hold.into()), out);
        }
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.state != State::Idle {
            return;
        }
        self.cancel(Timer::IdleHold, out);
        if self.config.passive {
            self.goto(State::Active, out);
        } else {
            self.arm_connect_retry(now, out);
            out.push(Output::Connect {
                ttl: self.config.ttl,
            });
            self.goto(State::Connect, out);
        }
    }

    fn manual_stop(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.automatic = false;
        self.cancel(Timer::IdleHold, out);
        if self.state == State::Idle {
            return;
        }
        let hard = self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.notification_restart);
        let cease = if hard {
            let admin = u8::from(Cease::AdministrativeShutdown);
            Notification::new(ErrorCode::Cease(Cease::HardReset), alloc::vec![6, admin])
        } else {
            Notification::new(ErrorCode::Cease(Cease::AdministrativeShutdown), Vec::new())
        };
        let sends = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        self.reset(now, Cause::Stop(sends.then_some(cease)), out);
    }

    /// Tear the connection down and go Idle (the common tail of most
    /// error transitions in RFC 4271 §8.2.2).
    fn reset(&mut self, now: Instant, cause: Cause, out: &mut Vec<Output>) {
        let sent = match &cause {
            Cause::Stop(n) => n.clone(),
            Cause::Sent(n) => Some(n.clone()),
            Cause::Received(_) | Cause::Transport => None,
        };
        if let Some(n) = sent {
            self.send(&Message::Notification(n.clone()), out);
            self.stats.last_notification_sent = Some(n.clone());
            out.push(Output::Notification {
                sent: true,
                notification: n,
            });
        }
        out.push(Output::Close);
        for timer in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::DelayOpen,
        ] {
            self.cancel(timer, out);
        }
        if self.state == State::Established {
            self.peer_down(now, &cause, out);
        }
        self.rx.clear();
        self.ctx = DecodeContext::default();
        self.negotiated = None;
        self.goto(State::Idle, out);
        if self.automatic && !matches!(cause, Cause::Stop(_)) {
            let d = self.jitter(self.config.idle_hold_time);
            self.arm(Timer::IdleHold, now + d, out);
        }
    }

    /// The Established session ended: which routes the RIB keeps stale
    /// (RFC 4724 §4.2, RFC 8538 §4).
    fn peer_down(&mut self, now: Instant, cause: &Cause, out: &mut Vec<Output>) {
        self.stats.established_at = None;
        let Some(n) = &self.negotiated else {
            return;
        };
        let graceful = self.config.graceful_restart.is_some()
            && match cause {
                Cause::Transport => true,
                Cause::Sent(x) | Cause::Received(x) => {
                    n.notification_restart && x.code != ErrorCode::Cease(Cease::HardReset)
                }
                Cause::Stop(_) => false,
            };
        let restart_time = n
            .peer_graceful_restart
            .as_ref()
            .map_or(0, |gr| gr.restart_time);
        let stale = if graceful && restart_time > 0 {
            n.restart_families()
        } else {
            BTreeSet::new()
        };
        if stale.is_empty() {
            self.stale.clear();
            self.cancel(Timer::GracefulRestart, out);
        } else {
            self.stale = stale.clone();
            let at = now + Duration::from_secs(restart_time.into());
            self.arm(Timer::GracefulRestart, at, out);
        }
        out.push(Output::PeerDown { stale });
    }

    fn timer_expired(&mut self, now: Instant, timer: Timer, out: &mut Vec<Output>) {
        match self.timers[timer.index()] {
            Some(at) if at <= now => self.timers[timer.index()] = None,
            _ => return,
        }
        match (timer, self.state) {
            (Timer::ConnectRetry, State::Connect | State::Active) => {
                if self.state == State::Connect {
                    out.push(Output::Close);
                }
                self.cancel(Timer::DelayOpen, out);
                self.arm_connect_retry(now, out);
                out.push(Output::Connect {
                    ttl: self.config.ttl,
                });
                self.goto(State::Connect, out);
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                let n = Notification::new(ErrorCode::HoldTimerExpired, Vec::new());
                self.reset(now, Cause::Sent(n), out);
            }
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                self.send(&Message::Keepalive, out);
                self.restart_keepalive(now, out);
            }
            (Timer::DelayOpen, State::Connect | State::Active) => self.send_open(now, out),
            (Timer::IdleHold, State::Idle) => self.start(now, out),
            (Timer::GracefulRestart, _) => {
                for family in core::mem::take(&mut self.stale) {
                    out.push(Output::PurgeStale(family));
                }
            }
            _ => {}
        }
    }

    fn connected(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            State::Idle => out.push(Output::Close),
            State::Connect | State::Active => {
                out.push(Output::SetTtl(self.config.ttl));
                self.cancel(Timer::ConnectRetry, out);
                self.rx.clear();
                match self.config.delay_open_time {
                    Some(d) => self.arm(Timer::DelayOpen, now + d, out),
                    None => self.send_open(now, out),
                }
            }
            State::OpenSent | State::OpenConfirm | State::Established => {}
        }
    }

    fn connection_failed(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            State::Idle => {}
            State::Connect | State::Active | State::OpenSent => {
                self.cancel(Timer::DelayOpen, out);
                self.cancel(Timer::Hold, out);
                self.rx.clear();
                if !self.config.passive && self.deadline(Timer::ConnectRetry).is_none() {
                    self.arm_connect_retry(now, out);
                }
                self.goto(State::Active, out);
            }
            State::OpenConfirm | State::Established => self.reset(now, Cause::Transport, out),
        }
    }

    fn received(&mut self, now: Instant, bytes: &[u8], out: &mut Vec<Output>) {
        if self.state == State::Idle {
            return;
        }
        self.rx.extend_from_slice(bytes);
        let mut pos = 0;
        while self.state != State::Idle {
            let rest = &self.rx[pos..];
            let Some(head) = rest.get(..HEADER_LEN) else {
                break;
            };
            let incoming = match Header::parse(head) {
                Err(e) => Incoming::BgpHeaderErr(e),
                Ok(h) => {
                    let Some(msg) = rest.get(..usize::from(h.length)) else {
                        break;
                    };
                    pos += msg.len();
                    self.stats.received.count(h.kind);
                    Incoming::classify(Message::parse(msg, &self.ctx))
                }
            };
            self.message(now, incoming, out);
        }
        if self.state == State::Idle {
            self.rx.clear();
        } else {
            self.rx.drain(..pos);
        }
    }

    fn fsm_error(&mut self, now: Instant, out: &mut Vec<Output>) {
        let subcode = match self.state {
            State::OpenSent => FsmError::UnexpectedInOpenSent,
            State::OpenConfirm => FsmError::UnexpectedInOpenConfirm,
            State::Established => FsmError::UnexpectedInEstablished,
            State::Connect | State::Active => {
                self.reset(now, Cause::Transport, out);
                return;
            }
            State::Idle => return,
        };
        let n = Notification::new(ErrorCode::Fsm(subcode), Vec::new());
        self.reset(now, Cause::Sent(n), out);
    }

    fn message(&mut self, now: Instant, incoming: Incoming, out: &mut Vec<Output>) {
        let waiting_open = self.deadline(Timer::DelayOpen).is_some();
        match (incoming, self.state) {
            (Incoming::NotifMsg(n) | Incoming::NotifMsgVerErr(n), _) => {
                self.stats.last_notification_received = Some(n.clone());
                out.push(Output::Notification {
                    sent: false,
                    notification: n.clone(),
                });
                self.reset(now, Cause::Received(n), out);
            }
            (
                Incoming::BgpHeaderErr(e) | Incoming::BgpOpenMsgErr(e) | Incoming::UpdateMsgErr(e),
                _,
            ) => self.reset(now, Cause::Sent(e.notification), out),
            (Incoming::BgpOpen(open), State::OpenSent) => self.open_received(now, open, out),
            (Incoming::BgpOpen(open), State::Connect | State::Active) if waiting_open => {
                self.cancel(Timer::DelayOpen, out);
                let mine = Message::Open(self.open.clone());
                self.send(&mine, out);
                self.goto(State::OpenSent, out);
                self.open_received(now, open, out);
            }
            (Incoming::KeepAliveMsg, State::OpenConfirm) => {
                self.restart_hold(now, out);
                self.goto(State::Established, out);
                self.established(now, out);
            }
            (Incoming::KeepAliveMsg, State::Established) => self.restart_hold(now, out),
            (Incoming::UpdateMsg(update), State::Established) => {
                self.restart_hold(now, out);
                self.update_received(*update, out);
            }
            (Incoming::RouteRefresh(rr), State::Established) => {
                self.restart_hold(now, out);
                let known = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.families.contains(&rr.family));
                if known && rr.subtype == super::wire::RefreshSubtype::Request {
                    out.push(Output::RefreshRequested(rr.family));
                }
            }
            _ => self.fsm_error(now, out),
        }
    }

    /// The peer's OPEN in OpenSent: the checks that need configuration
    /// (RFC 4271 §6.2), then negotiation and OpenConfirm.
    fn open_received(&mut self, now: Instant, open: Open, out: &mut Vec<Output>) {
        let asn = open.asn();
        let local_as = self.config.local_as;
        if !self.config.peer_as.accepts(local_as, asn) {
            let e = Error::open(OpenError::BadPeerAs, open.my_as.to_be_bytes().to_vec());
            self.reset(now, Cause::Sent(e.notification), out);
            return;
        }
        if asn == local_as && open.bgp_identifier == self.config.router_id {
            let e = Error::open(OpenError::BadBgpIdentifier, Vec::new());
            self.reset(now, Cause::Sent(e.notification), out);
            return;
        }
        let n = Negotiated::new(&self.open, &open, self.config.keepalive_time);
        self.ctx = n.decode_context();
        self.negotiated = Some(n);
        self.send(&Message::Keepalive, out);
        self.cancel(Timer::Hold, out);
        self.restart_hold(now, out);
        self.restart_keepalive(now, out);
        self.goto(State::OpenConfirm, out);
    }

    fn established(&mut self, now: Instant, out: &mut Vec<Output>) {
        let Some(n) = self.negotiated.clone() else {
            return;
        };
        self.stats.established_at = Some(now);
        self.stats.established_transitions += 1;
        out.push(Output::Established(Box::new(n.clone())));
        if self.stale.is_empty() {
            return;
        }
        // RFC 4724 §4.2: families the peer no longer preserves go now.
        let kept: BTreeSet<Family> = n
            .restart_families()
            .intersection(&n.forwarding_preserved())
            .copied()
            .collect();
        let gone: Vec<Family> = self.stale.difference(&kept).copied().collect();
        for family in gone {
            self.stale.remove(&family);
            out.push(Output::PurgeStale(family));
        }
        match self.config.graceful_restart {
            Some(gr) if !self.stale.is_empty() => {
                self.arm(Timer::GracefulRestart, now + gr.stale_path_time, out);
            }
            _ => self.cancel(Timer::GracefulRestart, out),
        }
    }

    fn update_received(&mut self, mut update: Update, out: &mut Vec<Output>) {
        let Some(n) = &self.negotiated else {
            return;
        };
        if let Some(family) = update.end_of_rib_family() {
            out.push(Output::EndOfRib(family));
            if self.stale.remove(&family) && self.stale.is_empty() {
                self.cancel(Timer::GracefulRestart, out);
            }
            return;
        }
        if !n.four_octet_as {
            update.attributes.merge_as4();
        }
        // RFC 4271 §6.3: from an external peer the leftmost AS must be the
        // peer's; RFC 7606 §3 h makes a mismatch treat-as-withdraw.
        let announces = !update.nlri.is_empty() || update.attributes.mp_reach.is_some();
        if announces && n.peer_as != self.config.local_as && first_as(&update) != Some(n.peer_as) {
            update.errors.push(AttributeError {
                type_code: type_code::AS_PATH,
                action: ErrorAction::TreatAsWithdraw,
                reason: UpdateError::MalformedAsPath,
            });
        }
        if !update.errors.is_empty() {
            out.push(Output::AttributeErrors(update.errors.clone()));
        }
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = update
            .withdrawn_prefixes()
            .into_iter()
            .partition(|p| matches!(p, IpNet::V4(_)));
        for (family, prefixes) in [(Family::IPV4_UNICAST, v4), (Family::IPV6_UNICAST, v6)] {
            if !prefixes.is_empty() {
                out.push(Output::Withdraw { family, prefixes });
            }
        }
        if update.treat_as_withdraw() {
            return;
        }
        let mut attributes = update.attributes;
        let mp_reach = attributes.mp_reach.take();
        attributes.mp_unreach = None;
        let next_hop = attributes.next_hop.take();
        if let (false, Some(nh)) = (update.nlri.is_empty(), next_hop) {
            out.push(Output::Announce {
                family: Family::IPV4_UNICAST,
                next_hop: NextHop::Ipv4(nh),
                attributes: Box::new(attributes.clone()),
                prefixes: update.nlri.iter().map(|&p| IpNet::V4(p)).collect(),
            });
        }
        if let Some(mp) = mp_reach.filter(|m| !m.nlri.is_empty()) {
            out.push(Output::Announce {
                family: mp.nlri.family(),
                next_hop: mp.next_hop,
                attributes: Box::new(attributes),
                prefixes: mp.nlri.iter().collect(),
            });
        }
    }

    fn send_update(&mut self, now: Instant, update: Update, out: &mut Vec<Output>) {
        self.send(&Message::Update(Box::new(update)), out);
        self.restart_keepalive(now, out);
    }
}

/// The leftmost AS of the UPDATE's AS_PATH.
fn first_as(update: &Update) -> Option<u32> {
    let segment = update.attributes.as_path.as_ref()?.segments.first()?;
    match segment.kind {
        SegmentType::Sequence | SegmentType::Set => segment.asns.first().copied(),
        SegmentType::ConfedSequence | SegmentType::ConfedSet => None,
    }
}

/// Halve an UPDATE too long for one message: withdrawals apart from
/// announcements, the NLRI field apart from MP_REACH_NLRI, else the
/// longest prefix list in two.
fn split(update: &Update) -> Option<(Update, Update)> {
    let (mut a, mut b) = (update.clone(), update.clone());
    let attrs = &update.attributes;
    let announces = !update.nlri.is_empty() || attrs.mp_reach.is_some();
    let withdraws = !update.withdrawn.is_empty() || attrs.mp_unreach.is_some();
    if announces && withdraws {
        a.nlri.clear();
        a.attributes = PathAttributes {
            mp_unreach: a.attributes.mp_unreach.take(),
            ..PathAttributes::default()
        };
        b.withdrawn.clear();
        b.attributes.mp_unreach = None;
    } else if !update.nlri.is_empty() && attrs.mp_reach.is_some() {
        a.attributes.mp_reach = None;
        b.nlri.clear();
    } else if !update.withdrawn.is_empty() && attrs.mp_unreach.is_some() {
        a.attributes.mp_unreach = None;
        b.withdrawn.clear();
    } else if update.withdrawn.len() > 1 {
        b.withdrawn = a.withdrawn.split_off(a.withdrawn.len() / 2);
    } else if update.nlri.len() > 1 {
        b.nlri = a.nlri.split_off(a.nlri.len() / 2);
    } else {
        let (x, y) = match (&mut a.attributes.mp_reach, &mut b.attributes.mp_reach) {
            (Some(x), Some(y)) => (&mut x.nlri, &mut y.nlri),
            _ => match (&mut a.attributes.mp_unreach, &mut b.attributes.mp_unreach) {
                (Some(x), Some(y)) => (&mut x.withdrawn, &mut y.withdrawn),
                _ => return None,
            },
        };
        match (x, y) {
            (Prefixes::Ipv4(x), Prefixes::Ipv4(y)) if x.len() > 1 => *y = x.split_off(x.len() / 2),
            (Prefixes::Ipv6(x), Prefixes::Ipv6(y)) if x.len() > 1 => *y = x.split_off(x.len() / 2),
            _ => return None,
        }
    }
    Some((a, b))
}
