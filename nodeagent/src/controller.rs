//! The node controller: one tokio task that owns the node's control planes
//! — BGP (router-core's [`NodeBgp`]), carried out over kernel TCP
//! ([`crate::connection`]): dials, writes, TTLs, closes; and, when enabled,
//! L2 announcements ([`crate::l2`]) — its service table ([`crate::services`],
//! handed to the XDP datapath when it serves services) and the passing of
//! time. Objects to reconcile, status queries and the exit arrive as
//! commands through a [`Controller`] handle; the connection tasks only move
//! bytes and report what their sockets saw. No state is shared: status
//! queries are answered by the task between two events.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use router_core::bgp::speaker::{Action, Input, Report};
use router_core::cilium::Objects;
use router_core::cilium::node::{InstanceAction, NodeBgp, NodeOptions};
use router_core::cilium::status::{NodeConfigStatus, PeerStatus, RouteStatus};
use smoltcp::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::connection::{self, Connection, Io, Key};
use crate::l2::{self, Answer, L2, L2Config};
use crate::lease_store::Clock;
use crate::services::{self, Served};
use router_core::cilium::l2announce::Entry;
use router_core::cilium::table::{self, ServiceRow};
use router_core::service::table::ServiceTable;

/// A request to the controller task.
#[derive(Debug)]
enum Command {
    Reconcile(Box<Objects>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(oneshot::Sender<Vec<RouteStatus>>),
    NodeConfig(oneshot::Sender<NodeConfigStatus>),
    L2Announce(oneshot::Sender<Vec<Entry>>),
    Services(oneshot::Sender<Vec<ServiceRow>>),
    Exit(oneshot::Sender<()>),
}

/// A handle on the running controller; clones talk to the same task.
#[derive(Clone, Debug)]
pub struct Controller {
    commands: mpsc::UnboundedSender<Command>,
}

impl Controller {
    /// Start the controller of a node ([`node_options`]), with L2
    /// announcements if `l2` says how, its service table built with
    /// `services` and handed to `served` (the datapath) when given; the task
    /// ends after [`Controller::shutdown`].
    pub fn spawn(
        options: NodeOptions,
        l2: Option<L2Config>,
        services: services::Options,
        served: Option<watch::Sender<Option<Served>>>,
    ) -> (Controller, JoinHandle<()>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(Driver::new(options, l2, services, served).run(rx));
        (Controller { commands }, task)
    }

    /// Bring the running instances and peers in line with `objects`.
    pub fn reconcile(&self, objects: Objects) {
        let _ = self.commands.send(Command::Reconcile(Box::new(objects)));
    }

    /// The peers, as `bgp peers` shows them.
    pub async fn peers(&self) -> Vec<PeerStatus> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Peers(tx));
        rx.await.unwrap_or_default()
    }

    /// Every route, as `bgp routes` shows them.
    pub async fn routes(&self) -> Vec<RouteStatus> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Routes(tx));
        rx.await.unwrap_or_default()
    }

    /// The node's CiliumBGPNodeConfig status.
    pub async fn node_config(&self) -> NodeConfigStatus {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::NodeConfig(tx));
        rx.await.unwrap_or_default()
    }

    /// The addresses this node answers ARP for (`l2-announce`).
    pub async fn l2_announce(&self) -> Vec<Entry> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::L2Announce(tx));
        rx.await.unwrap_or_default()
    }

    /// The node's service table, as `cilium-dbg service list` shows it.
    pub async fn services(&self) -> Vec<ServiceRow> {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Services(tx));
        rx.await.unwrap_or_default()
    }

    /// Stop every session as the agent exits — graceful-restart sessions
    /// are left without a NOTIFICATION, so the peer keeps our routes — and
    /// wait until what was sent is written.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        let _ = self.commands.send(Command::Exit(tx));
        let _ = rx.await;
    }
}

/// How the agent runs a node's control plane: as Cilium does (received
/// routes not installed), TCP MD5 available, `router_id` overriding the
/// Node's InternalIP, CiliumBGPNodeConfig status reported or not.
pub fn node_options(node: &str, router_id: Option<Ipv4Addr>, status_report: bool) -> NodeOptions {
    NodeOptions {
        router_id,
        status_report,
        ..NodeOptions::new(node)
    }
}

/// One connection's state in the task.
#[derive(Debug, Default)]
struct Conn {
    /// Bumped whenever the connection is dropped: older reports are stale.
    generation: u64,
    /// A dial in progress, since when, and whether it signs with MD5.
    dialing: Option<(JoinHandle<()>, std::time::Instant, bool)>,
    established: Option<Connection>,
}

struct Driver {
    node: NodeBgp,
    l2: Option<L2>,
    answers: mpsc::UnboundedReceiver<Answer>,
    clock: Clock,
    conns: BTreeMap<Key, Conn>,
    reports: mpsc::UnboundedSender<connection::Report>,
    report_rx: mpsc::UnboundedReceiver<connection::Report>,
    /// Writers still flushing a closed connection's last bytes.
    flushing: Vec<JoinHandle<()>>,
    /// The node's service table ([`crate::services`]).
    services: ServiceTable,
    /// What it could not serve, as last logged.
    service_problems: Vec<String>,
    /// How the table is built.
    service_options: services::Options,
    /// Where the datapath reads what it serves, if it serves services.
    served: Option<watch::Sender<Option<Served>>>,
}

impl Driver {
    fn new(
        options: NodeOptions,
        l2: Option<L2Config>,
        service_options: services::Options,
        served: Option<watch::Sender<Option<Served>>>,
    ) -> Driver {
        let (reports, report_rx) = mpsc::unbounded_channel();
        let (answer_tx, answers) = mpsc::unbounded_channel();
        let clock = l2.as_ref().map_or_else(Clock::start, |c| c.store.clock());
        let l2 = l2.map(|config| L2::new(&options.name, config, answer_tx));
        Driver {
            node: NodeBgp::new(options),
            l2,
            answers,
            clock,
            conns: BTreeMap::new(),
            reports,
            report_rx,
            flushing: Vec::new(),
            services: ServiceTable::default(),
            service_problems: Vec::new(),
            service_options,
            served,
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        let l2 = self.l2.as_ref().and_then(L2::poll_at);
        let at = [self.node.poll_at(), l2].into_iter().flatten().min()?;
        Some(self.clock.deadline(at))
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut links = tokio::time::interval(l2::LINK_POLL);
        loop {
            let deadline = self.deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Reconcile(objects)) => self.reconcile(&objects),
                    Some(Command::Peers(tx)) => {
                        let _ = tx.send(self.node.peers(self.now()));
                    }
                    Some(Command::Routes(tx)) => {
                        let _ = tx.send(self.node.routes(self.now()));
                    }
                    Some(Command::NodeConfig(tx)) => {
                        let _ = tx.send(self.node.node_config_status(self.now()));
                    }
                    Some(Command::L2Announce(tx)) => {
                        let _ = tx.send(self.l2.as_ref().map(L2::entries).unwrap_or_default());
                    }
                    Some(Command::Services(tx)) => {
                        let _ = tx.send(table::service_rows(&self.services));
                    }
                    Some(Command::Exit(tx)) => {
                        self.exit().await;
                        let _ = tx.send(());
                        return;
                    }
                    None => {
                        self.exit().await;
                        return;
                    }
                },
                Some((key, generation, io)) = self.report_rx.recv() => {
                    if self.conns.get(&key).is_some_and(|c| c.generation == generation) {
                        self.io(key, io);
                    }
                }
                Some(answer) = self.answers.recv() => {
                    let now = self.now();
                    if let Some(l2) = &mut self.l2 {
                        l2.answer(now, answer);
                    }
                }
                _ = links.tick(), if self.l2.is_some() => {
                    let now = self.now();
                    if let Some(l2) = &mut self.l2 {
                        l2.poll_links(now);
                    }
                }
                () = sleep_until(deadline) => {
                    let now = self.now();
                    let actions = self.node.timers(now);
                    self.carry_out(actions);
                    if let Some(l2) = &mut self.l2 {
                        l2.tick(now);
                    }
                }
            }
            self.flushing.retain(|t| !t.is_finished());
        }
    }

    fn reconcile(&mut self, objects: &Objects) {
        let before: Vec<String> = self.node.issues().to_vec();
        let now = self.now();
        let actions = self.node.reconcile(now, objects);
        for issue in self.node.issues() {
            if !before.contains(issue) {
                warn!(node = %self.node.options().name, "{issue}");
            }
        }
        self.carry_out(actions);
        if let Some(l2) = &mut self.l2 {
            l2.reconcile(now, objects);
        }
        let node = &self.node.options().name;
        let (table, problems) = services::table(objects, node, &self.service_options);
        for problem in &problems {
            if !self.service_problems.contains(problem) {
                warn!(node = %node, "{problem}");
            }
        }
        if let Some(served) = &self.served {
            let now = services::served(objects, node, &self.service_options, table.clone());
            served.send_if_modified(|was| {
                let changed = was.as_ref() != Some(&now);
                *was = Some(now);
                changed
            });
        }
        self.services = table;
        self.service_problems = problems;
    }

    async fn exit(&mut self) {
        let now = self.now();
        if let Some(l2) = &mut self.l2 {
            l2.stop(now, Duration::from_secs(1)).await;
        }
        let actions = self.node.exit(self.now());
        self.carry_out(actions);
        let keys: Vec<Key> = self.conns.keys().cloned().collect();
        for key in keys {
            self.drop_connection(&key);
        }
        let flushing = std::mem::take(&mut self.flushing);
        let all = futures::future::join_all(flushing);
        if tokio::time::timeout(Duration::from_secs(2), all)
            .await
            .is_err()
        {
            warn!("some peers did not take our last messages within 2 s");
        }
    }

    fn input(&mut self, instance: &str, input: Input) {
        let actions = self.node.handle(self.now(), instance, input);
        self.carry_out(actions);
    }

    fn io(&mut self, key: Key, io: Io) {
        let (instance, peer) = (key.0.clone(), key.1);
        match io {
            Io::Connected(stream) => {
                let conn = self.conns.entry(key.clone()).or_default();
                let since = conn.dialing.take().map(|(_, since, _)| since);
                let c = Connection::start(stream, key, conn.generation, self.reports.clone());
                debug!(%instance, %peer, local = ?c.local, after = ?since.map(|s| s.elapsed()), "TCP connected");
                let local = c.local;
                conn.established = Some(c);
                self.input(&instance, Input::Connected { peer, local });
            }
            Io::ConnectFailed(e) => {
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.dialing = None;
                }
                info!(%instance, %peer, error = %e, "TCP connection failed");
                self.input(&instance, Input::ConnectionFailed(peer));
            }
            Io::Data(bytes) => self.input(&instance, Input::Received(peer, bytes)),
            Io::Closed(error) => {
                match error {
                    Some(e) => info!(%instance, %peer, error = %e, "TCP connection lost"),
                    None => info!(%instance, %peer, "TCP connection closed by the peer"),
                }
                self.drop_connection(&key);
                self.input(&instance, Input::ConnectionFailed(peer));
            }
        }
    }

    /// Abandon the connection or the dial. A dial that never completed on
    /// an MD5 session is most likely a key mismatch: Linux drops segments
    /// with a bad or missing signature silently.
    fn drop_connection(&mut self, key: &Key) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.generation += 1;
        if let Some((task, since, md5)) = conn.dialing.take() {
            task.abort();
            if md5 {
                warn!(
                    instance = %key.0,
                    peer = %key.1,
                    waited = ?since.elapsed(),
                    "TCP connect timed out on an MD5 session: TCP MD5 signature mismatch or no key (probable; the peer's kernel drops such segments silently)"
                );
            }
        }
        if let Some(c) = conn.established.take() {
            self.flushing.push(c.close());
        }
    }

    fn carry_out(&mut self, actions: Vec<InstanceAction>) {
        for (instance, action) in actions {
            match action {
                Action::Connect {
                    peer,
                    port,
                    ttl,
                    bind,
                    md5_key,
                } => {
                    let key = (instance.clone(), peer);
                    self.drop_connection(&key);
                    let md5 = md5_key.is_some();
                    debug!(%instance, %peer, ?bind, ttl, md5, "connecting");
                    let dial = connection::dial_of(peer, port, ttl, bind, md5_key);
                    let conn = self.conns.entry(key.clone()).or_default();
                    let task = connection::dial(key, conn.generation, dial, self.reports.clone());
                    conn.dialing = Some((task, std::time::Instant::now(), md5));
                }
                Action::SetTtl { peer, ttl } => {
                    let conn = self.conns.get(&(instance.clone(), peer));
                    if let Some(c) = conn.and_then(|c| c.established.as_ref())
                        && let Err(e) = c.set_ttl(peer, ttl)
                    {
                        warn!(%instance, %peer, error = %e, ttl, "cannot set the IP TTL");
                    }
                }
                Action::Send { peer, bytes } => {
                    let conn = self.conns.get(&(instance, peer));
                    if let Some(c) = conn.and_then(|c| c.established.as_ref()) {
                        c.send(bytes);
                    }
                }
                Action::Close { peer } => self.drop_connection(&(instance, peer)),
                Action::Fib { prefix, .. } => {
                    debug!(%instance, %prefix, "received routes are not installed");
                }
                Action::Report { peer, report } => log(&instance, peer, report),
            }
        }
    }
}

/// A session's report as a log line.
fn log(instance: &str, peer: std::net::IpAddr, report: Report) {
    match report {
        Report::State { from, to } => {
            info!(%instance, %peer, "BGP session state {} -> {}", from.name(), to.name());
        }
        Report::Established(n) => info!(
            %instance,
            %peer,
            peer_as = n.peer_as,
            peer_id = %n.peer_id,
            hold = n.hold_time,
            keepalive = n.keepalive_time,
            families = ?n.families,
            "BGP session established"
        ),
        Report::Notification { sent, notification } => {
            let direction = if sent { "sent" } else { "received" };
            warn!(%instance, %peer, "NOTIFICATION {direction}: {}", notification.describe());
        }
        Report::Down { stale, kept } => {
            if !stale.is_empty() {
                info!(%instance, %peer, families = ?stale, kept, "keeping the peer's routes as stale (graceful restart)");
            }
        }
        Report::Announced(n) => debug!(%instance, %peer, prefixes = n, "routes received"),
        Report::Withdrawn(n) => debug!(%instance, %peer, prefixes = n, "routes withdrawn"),
        Report::EndOfRib(family) => info!(%instance, %peer, ?family, "End-of-RIB received"),
        Report::PurgedStale(family) => {
            info!(%instance, %peer, ?family, "purging the peer's stale routes");
        }
        Report::RefreshRequested(family) => {
            debug!(%instance, %peer, ?family, "route refresh requested");
        }
        Report::AttributeErrors(errors) => {
            warn!(%instance, %peer, ?errors, "UPDATE attribute errors (RFC 7606)");
        }
        Report::Stopped(why) => info!(%instance, %peer, "removing peer: {why}"),
        Report::BadNextHop { next_hop, routes } => warn!(
            %instance,
            %peer,
            %next_hop,
            routes,
            "routes ignored: semantically incorrect NEXT_HOP (RFC 4271 §6.3)"
        ),
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
