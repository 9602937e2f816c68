//! One BGP peer as a tokio task: router-core's sans-IO [`Session`] driven
//! over kernel TCP. The task dials the peer (the agent is the initiator, as
//! Cilium is), carries out the session's outputs (connects, sends, closes,
//! timers, TTL) and feeds what the session learns to the instance's RIB,
//! sending the UPDATEs the RIB asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use router_core::bgp::fsm::{Config, Event, Output, Session, State, Stats, Timer};
use router_core::bgp::rib::PeerId;
use router_core::bgp::wire::{ErrorCode, Notification, Update};
use router_core::cilium::desired::RouteAttributes;
use router_core::cilium::{DesiredPeer, session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::instance::SharedInstance;
use crate::transport::{self, Dial};

/// Everything that defines a session; a change restarts it. The routes to
/// originate live in `peer.families` and change without a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The node's name.
    pub node: String,
    /// The instance's name.
    pub instance: String,
    /// Our AS.
    pub local_asn: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The local address to bind.
    pub bind: Option<IpAddr>,
    /// The node's IPv6 address: the next hop of IPv6 routes sent over an
    /// IPv4 session (MP-BGP).
    pub local_v6: Option<Ipv6Addr>,
    /// The peer as configured.
    pub peer: DesiredPeer,
}

impl PeerSpec {
    /// The spec without its routes: two specs with equal settings need no
    /// session restart between them.
    pub fn settings(&self) -> PeerSpec {
        let mut s = self.clone();
        for f in &mut s.peer.families {
            f.routes.clear();
        }
        s
    }

    /// The prefixes this peer is sent.
    pub fn prefixes(&self) -> BTreeSet<IpNet> {
        self.peer
            .families
            .iter()
            .flat_map(|f| f.routes.keys().copied())
            .collect()
    }

    /// The routes to originate, all families together.
    pub fn routes(&self) -> BTreeMap<IpNet, RouteAttributes> {
        let mut routes = BTreeMap::new();
        for f in &self.peer.families {
            routes.extend(f.routes.iter().map(|(p, a)| (*p, a.clone())));
        }
        routes
    }

    /// The session configuration. Routes are never installed from BGP and
    /// the datapath outlives the agent: forwarding survives its restart (the
    /// graceful-restart F bit).
    pub fn config(&self) -> Result<Config, String> {
        let key = format!("{}/{}/{}", self.node, self.instance, self.peer.name);
        self.peer
            .session_config(self.local_asn, self.router_id, true, session::seed(&key))
    }
}

/// What the task shares with queries.
#[derive(Debug)]
pub struct PeerView {
    /// The spec the task runs.
    pub spec: PeerSpec,
    /// The FSM state.
    pub state: State,
    /// When the session became Established.
    pub established_at: Option<Instant>,
    /// The AS the peer's OPEN carried.
    pub negotiated_as: Option<u32>,
    /// Session counters.
    pub stats: Stats,
    /// The last NOTIFICATION, rendered.
    pub last_notification: Option<String>,
}

/// A request to a running peer task.
#[derive(Debug)]
pub enum Command {
    /// Stop the session (Cease) and end the task.
    Stop,
    /// The agent is exiting: a session where both sides do graceful
    /// restart is left without a NOTIFICATION, so the peer keeps our
    /// routes until we are back (RFC 4724); others stop as with `Stop`.
    Exit,
}

/// A running peer.
#[derive(Debug)]
pub struct PeerHandle {
    /// The spec it runs.
    pub spec: PeerSpec,
    /// Commands.
    pub commands: mpsc::UnboundedSender<Command>,
    /// Its state, for queries.
    pub view: Arc<Mutex<PeerView>>,
    /// Its instance.
    pub instance: SharedInstance,
    /// Its name in the instance's RIB.
    pub id: PeerId,
    /// The task.
    pub task: JoinHandle<()>,
}

/// Start a peer task of `instance`.
pub fn spawn(spec: PeerSpec, instance: SharedInstance) -> Result<PeerHandle, String> {
    let config = spec.config()?;
    let (mailbox, updates) = mpsc::unbounded_channel();
    let id = instance
        .lock()
        .unwrap()
        .add_peer(spec.peer.address, &spec.prefixes(), mailbox);
    let view = Arc::new(Mutex::new(PeerView {
        spec: spec.clone(),
        state: State::Idle,
        established_at: None,
        negotiated_as: None,
        stats: Stats::default(),
        last_notification: None,
    }));
    let (commands, rx) = mpsc::unbounded_channel();
    let (io_tx, io_rx) = mpsc::unbounded_channel();
    let runner = Runner {
        label: format!("{}/{} {}", spec.instance, spec.peer.name, spec.peer.address),
        spec: spec.clone(),
        session: Session::new(config),
        epoch: Instant::now(),
        view: view.clone(),
        instance: instance.clone(),
        id,
        io_tx,
        generation: 0,
        connecting: None,
        conn: None,
        timers: BTreeMap::new(),
    };
    let task = tokio::spawn(runner.run(rx, updates, io_rx));
    Ok(PeerHandle {
        spec,
        commands,
        view,
        instance,
        id,
        task,
    })
}

/// Something the connection tasks report, tagged with the connection's
/// generation so reports from an abandoned connection are ignored.
enum Io {
    Connected(tokio::net::TcpStream),
    ConnectFailed(std::io::Error),
    Data(Vec<u8>),
    Closed(Option<std::io::Error>),
}

struct Connection {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
    fd: std::os::fd::RawFd,
}

struct Runner {
    label: String,
    spec: PeerSpec,
    session: Session,
    epoch: Instant,
    view: Arc<Mutex<PeerView>>,
    instance: SharedInstance,
    id: PeerId,
    io_tx: mpsc::UnboundedSender<(u64, Io)>,
    generation: u64,
    connecting: Option<(JoinHandle<()>, Instant)>,
    conn: Option<Connection>,
    timers: BTreeMap<Timer, Instant>,
}

impl Runner {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut updates: mpsc::UnboundedReceiver<Box<Update>>,
        mut io: mpsc::UnboundedReceiver<(u64, Io)>,
    ) {
        info!(peer = %self.label, node = %self.spec.node, "starting BGP session");
        self.event(Event::ManualStart);
        let exiting = loop {
            let next = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (*t, *at));
            let sleep = next.map(|(_, at)| tokio::time::Instant::from_std(at));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => break false,
                    Some(Command::Exit) => break true,
                },
                Some(update) = updates.recv() => self.event(Event::SendUpdate(update)),
                Some((generation, report)) = io.recv() => {
                    if generation == self.generation {
                        self.io(report);
                    }
                }
                () = sleep_until(sleep) => {
                    if let Some((timer, _)) = next {
                        self.timers.remove(&timer);
                        self.event(Event::TimerExpired(timer));
                    }
                }
            }
        };
        if let Some((attempt, _)) = self.connecting.take() {
            attempt.abort();
        }
        if exiting && self.graceful() {
            info!(peer = %self.label, "leaving the BGP session without a NOTIFICATION: the peer keeps our routes (graceful restart)");
        } else {
            info!(peer = %self.label, "stopping BGP session");
            self.event(Event::ManualStop);
        }
        self.drop_connection();
        self.instance.lock().unwrap().remove_peer(self.id);
    }

    /// Established, with graceful restart on both sides.
    fn graceful(&self) -> bool {
        self.session.state() == State::Established
            && self.spec.peer.graceful_restart.is_some()
            && self
                .session
                .negotiated()
                .is_some_and(|n| n.peer_graceful_restart.is_some())
    }

    fn now(&self) -> smoltcp::time::Instant {
        let micros = i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX);
        smoltcp::time::Instant::from_micros(micros)
    }

    fn event(&mut self, event: Event) {
        let now = self.now();
        let outputs = self.session.handle(now, event);
        for output in outputs {
            self.output(output);
        }
        let stats = self.session.stats().clone();
        self.view.lock().unwrap().stats = stats;
    }

    fn io(&mut self, report: Io) {
        match report {
            Io::Connected(stream) => {
                let since = self.connecting.take().map(|(_, since)| since);
                let local = stream.local_addr();
                let Ok(local) = local else {
                    self.event(Event::ConnectionFailed);
                    return;
                };
                debug!(peer = %self.label, %local, after = ?since.map(|s| s.elapsed()), "TCP connected");
                let (v4, v6) = match local.ip() {
                    IpAddr::V4(v4) => (Some(v4), self.spec.local_v6),
                    IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                        Some(v4) => (Some(v4), self.spec.local_v6),
                        None => (None, Some(v6)),
                    },
                };
                self.instance
                    .lock()
                    .unwrap()
                    .set_local_addresses(self.id, v4, v6);
                let fd = stream.as_raw_fd();
                let (mut read_half, mut write_half) = stream.into_split();
                let (writer, mut outbox) = mpsc::unbounded_channel::<Vec<u8>>();
                tokio::spawn(async move {
                    while let Some(bytes) = outbox.recv().await {
                        if write_half.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    let _ = write_half.shutdown().await;
                });
                let tx = self.io_tx.clone();
                let generation = self.generation;
                let reader = tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        match read_half.read(&mut buf).await {
                            Ok(0) => {
                                let _ = tx.send((generation, Io::Closed(None)));
                                return;
                            }
                            Ok(n) => {
                                let _ = tx.send((generation, Io::Data(buf[..n].to_vec())));
                            }
                            Err(e) => {
                                let _ = tx.send((generation, Io::Closed(Some(e))));
                                return;
                            }
                        }
                    }
                });
                self.conn = Some(Connection { writer, reader, fd });
                self.event(Event::Connected);
            }
            Io::ConnectFailed(e) => {
                self.connecting = None;
                info!(peer = %self.label, error = %e, "TCP connection failed");
                self.event(Event::ConnectionFailed);
            }
            Io::Data(bytes) => self.event(Event::Received(bytes)),
            Io::Closed(error) => {
                match error {
                    Some(e) => info!(peer = %self.label, error = %e, "TCP connection lost"),
                    None => info!(peer = %self.label, "TCP connection closed by the peer"),
                }
                self.drop_connection();
                self.event(Event::ConnectionFailed);
            }
        }
    }

    /// Abandon the connection or the connection attempt. An attempt that
    /// never completed on an MD5 session is most likely a key mismatch:
    /// Linux drops segments with a bad or missing signature silently.
    fn drop_connection(&mut self) {
        self.generation += 1;
        if let Some((task, since)) = self.connecting.take() {
            task.abort();
            if self.spec.peer.password.is_some() {
                warn!(
                    peer = %self.label,
                    waited = ?since.elapsed(),
                    "TCP connect timed out on an MD5 session: TCP MD5 signature mismatch or no key (probable; the peer's kernel drops such segments silently)"
                );
            }
        }
        if let Some(conn) = self.conn.take() {
            conn.reader.abort();
        }
    }

    fn output(&mut self, output: Output) {
        let own = self.instance.lock().unwrap().apply(self.id, &output);
        match output {
            Output::Connect { ttl } => self.connect(ttl),
            Output::SetTtl(ttl) => {
                if let Some(conn) = &self.conn
                    && let Err(e) = transport::set_ttl(conn.fd, self.spec.peer.address, ttl)
                {
                    warn!(peer = %self.label, error = %e, ttl, "cannot set the IP TTL");
                }
            }
            Output::Close => self.drop_connection(),
            Output::Send(bytes) => {
                if let Some(conn) = &self.conn {
                    let _ = conn.writer.send(bytes);
                }
            }
            Output::ArmTimer { timer, at } => {
                let micros = u64::try_from(at.total_micros()).unwrap_or(0);
                self.timers
                    .insert(timer, self.epoch + Duration::from_micros(micros));
            }
            Output::CancelTimer(timer) => {
                self.timers.remove(&timer);
            }
            Output::StateChange { from, to } => {
                info!(peer = %self.label, "BGP session state {} -> {}", from.name(), to.name());
                let mut view = self.view.lock().unwrap();
                view.state = to;
                if to == State::Established {
                    view.established_at = Some(Instant::now());
                } else if from == State::Established {
                    view.established_at = None;
                }
            }
            Output::Established(negotiated) => {
                info!(
                    peer = %self.label,
                    peer_as = negotiated.peer_as,
                    peer_id = %negotiated.peer_id,
                    hold = negotiated.hold_time,
                    keepalive = negotiated.keepalive_time,
                    families = ?negotiated.families,
                    "BGP session established"
                );
                self.view.lock().unwrap().negotiated_as = Some(negotiated.peer_as);
            }
            Output::Notification { sent, notification } => {
                let text = describe(&notification);
                let direction = if sent { "sent" } else { "received" };
                warn!(peer = %self.label, "NOTIFICATION {direction}: {text}");
                self.view.lock().unwrap().last_notification = Some(format!("{direction} {text}"));
            }
            Output::PeerDown { stale } => {
                if !stale.is_empty() {
                    let kept = self.instance.lock().unwrap().rib.received_count(self.id);
                    info!(peer = %self.label, families = ?stale, kept, "keeping the peer's routes as stale (graceful restart)");
                }
            }
            Output::Announce { prefixes, .. } => {
                debug!(peer = %self.label, prefixes = prefixes.len(), "routes received");
            }
            Output::Withdraw { prefixes, .. } => {
                debug!(peer = %self.label, prefixes = prefixes.len(), "routes withdrawn");
            }
            Output::EndOfRib(family) => {
                info!(peer = %self.label, ?family, "End-of-RIB received");
            }
            Output::PurgeStale(family) => {
                info!(peer = %self.label, ?family, "purging the peer's stale routes");
            }
            Output::RefreshRequested(family) => {
                debug!(peer = %self.label, ?family, "route refresh requested");
            }
            Output::AttributeErrors(errors) => {
                warn!(peer = %self.label, ?errors, "UPDATE attribute errors (RFC 7606)");
            }
        }
        for update in own {
            self.event(Event::SendUpdate(Box::new(update)));
        }
    }

    fn connect(&mut self, ttl: u8) {
        self.drop_connection();
        let peer = &self.spec.peer;
        let bind = self
            .spec
            .bind
            .filter(|b| b.is_ipv4() == peer.address.is_ipv4());
        let dial = Dial {
            peer: SocketAddr::new(peer.address, peer.port),
            local: bind,
            md5_key: peer.password.as_ref().map(|p| p.0.clone()),
            ttl,
        };
        debug!(peer = %self.label, ?bind, ttl, md5 = dial.md5_key.is_some(), "connecting");
        let tx = self.io_tx.clone();
        let generation = self.generation;
        let task = tokio::spawn(async move {
            let report = match transport::connect(&dial).await {
                Ok(stream) => Io::Connected(stream),
                Err(e) => Io::ConnectFailed(e),
            };
            let _ = tx.send((generation, report));
        });
        self.connecting = Some((task, Instant::now()));
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A NOTIFICATION as a log line: `4/0 Hold Timer Expired`, with the
/// shutdown message when there is one.
pub fn describe(n: &Notification) -> String {
    let code = n.code;
    let name = match code {
        ErrorCode::MessageHeader(s) => format!("Message Header Error / {s:?}"),
        ErrorCode::Open(s) => format!("OPEN Message Error / {s:?}"),
        ErrorCode::Update(s) => format!("UPDATE Message Error / {s:?}"),
        ErrorCode::HoldTimerExpired => "Hold Timer Expired".to_string(),
        ErrorCode::Fsm(s) => format!("Finite State Machine Error / {s:?}"),
        ErrorCode::Cease(s) => format!("Cease / {s:?}"),
        ErrorCode::RouteRefresh(s) => format!("ROUTE-REFRESH Message Error / {s:?}"),
        ErrorCode::Unknown { .. } => "unknown".to_string(),
    };
    let mut text = format!("{}/{} {name}", code.code(), code.subcode());
    if let Some(message) = n.shutdown_message() {
        text.push_str(&format!(" ({message:?})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::bgp::wire::notification::Cease;
    use router_core::bgp::wire::{DecodeContext, Message};

    #[test]
    fn notifications_are_described_with_numbers_and_names() {
        let n = Notification::new(ErrorCode::HoldTimerExpired, Vec::new());
        assert_eq!(describe(&n), "4/0 Hold Timer Expired");
        let n = Notification::cease_with_message(Cease::AdministrativeShutdown, "bye");
        assert_eq!(describe(&n), "6/2 Cease / AdministrativeShutdown (\"bye\")");
        let bytes = Message::Notification(n)
            .to_bytes(&DecodeContext::default())
            .unwrap();
        assert!(bytes.len() > 19);
    }
}
