//! The discrete-event loop: nodes and segments on one virtual clock.
//!
//! Build with [`Engine::new`], then [`Engine::add_node`], [`Engine::add_segment`] and
//! [`Engine::attach`]. Run with [`Engine::run_until`] or [`Engine::run_until_quiescent`]; between
//! runs the caller may change the world ([`Engine::set_segment_up`], [`Engine::set_port_up`],
//! [`Engine::set_segment_params`], [`Engine::node_mut`] then [`Engine::wake_node`]), which is how
//! scenario steps and fault injection happen. Read results with [`Engine::trace`],
//! [`Engine::segment_stats`] and [`Engine::trace_line`]; call [`Engine::flush_captures`] at the end.
//!
//! There are two kinds of events: a copy of a frame arriving at an endpoint, and a node's wake-up.
//! Each node has at most one wake-up pending; every poll replaces it. Every random choice comes
//! from an RNG forked per segment (`"segment/NAME"`) from the seed, and nothing reads the wall
//! clock, so the same build steps, run steps and seed give the same trace and captures.
//!
//! The one exception is a run bridged to the real world: [`Engine::add_outside_node`] adds
//! endpoints that stand for real devices, and [`Engine::connect_outside`] hands the clock and
//! those devices to an [`Outside`] (see [`crate::outside`]); such a run is not deterministic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use smoltcp::time::Instant;

use crate::clock::{Clock, TimerId};
use crate::error::SimError;
use crate::node::{Endpoint, Node, NodeId, PortId};
use crate::outside::Outside;
use crate::pcap::PcapWriter;
use crate::rng::SimRng;
use crate::segment::{
    DropReason, Fate, Segment, SegmentId, SegmentKind, SegmentParams, SegmentStats,
};
use crate::trace::{Outcome, Trace, TraceRecord};

/// Events one run call may process before it gives up with [`SimError::EventBudgetExhausted`].
pub const DEFAULT_EVENT_BUDGET: u64 = 10_000_000;

/// How to set up an [`Engine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Most events a single run call may process.
    pub event_budget: u64,
    /// If set, each segment is captured to `DIR/SEGMENT.pcap`.
    pub pcap_dir: Option<PathBuf>,
    /// Keep every trace record ([`Trace::records`]), not only the hash and
    /// the count.
    pub trace_records: bool,
}

impl EngineConfig {
    /// The default budget, no captures, no trace records kept.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            event_budget: DEFAULT_EVENT_BUDGET,
            pcap_dir: None,
            trace_records: false,
        }
    }
}

/// What one run call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    /// Events processed.
    pub events: u64,
    /// Virtual time at the end of the run.
    pub now: Instant,
}

#[derive(Debug)]
enum Event {
    /// A copy of `frame`, sent by `from` on `segment`, reaches `to`.
    Arrive {
        segment: SegmentId,
        from: Endpoint,
        to: Endpoint,
        frame: Vec<u8>,
    },
    /// A node's requested wake-up.
    Wake(NodeId),
}

/// What occupies a node slot: a simulated node, or an endpoint for the world outside.
#[derive(Debug)]
enum Occupant<N> {
    Simulated(N),
    Outside,
}

#[derive(Debug)]
struct NodeSlot<N> {
    name: String,
    node: Occupant<N>,
    ports: Vec<PortSlot>,
    wake: Option<TimerId>,
}

#[derive(Debug)]
struct PortSlot {
    name: String,
    segment: SegmentId,
}

#[derive(Debug)]
struct Capture {
    path: PathBuf,
    writer: PcapWriter<BufWriter<File>>,
}

/// A simulation: nodes of type `N` (use an enum for several kinds), segments, a clock, a trace.
///
/// Ids passed in must come from this engine; others may panic or name the wrong thing.
#[derive(Debug)]
pub struct Engine<N> {
    config: EngineConfig,
    clock: Clock<Event>,
    rng: SimRng,
    nodes: Vec<NodeSlot<N>>,
    segments: Vec<Segment>,
    captures: Vec<Option<Capture>>,
    /// Segments whose frames are kept in memory (as a `tcpdump` would see
    /// them) until taken.
    watched: BTreeMap<SegmentId, Vec<(Instant, Vec<u8>)>>,
    trace: Trace,
    outside: Option<Box<dyn Outside>>,
}

impl<N: Node> Engine<N> {
    /// An empty simulation at time zero.
    pub fn new(config: EngineConfig) -> Self {
        let trace = if config.trace_records {
            Trace::keeping_records()
        } else {
            Trace::new()
        };
        Self {
            rng: SimRng::new(config.seed),
            config,
            clock: Clock::new(),
            nodes: Vec::new(),
            segments: Vec::new(),
            captures: Vec::new(),
            watched: BTreeMap::new(),
            trace,
            outside: None,
        }
    }

    /// The run's seed.
    pub const fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The current virtual time.
    pub const fn now(&self) -> Instant {
        self.clock.now()
    }

    /// An RNG for the subsystem `label` (e.g. `"node/k8s-ctr"`), forked from the seed: the same
    /// label always gets the same stream. Labels starting with `segment/` belong to segments.
    pub fn fork_rng(&self, label: &str) -> SimRng {
        self.rng.fork(label)
    }

    /// Adds a node with a unique name; it is first polled at the current time.
    pub fn add_node(&mut self, name: &str, node: N) -> Result<NodeId, SimError> {
        self.check_new_node(name)?;
        let id = NodeId(self.nodes.len());
        let wake = self.clock.schedule(self.clock.now(), Event::Wake(id));
        self.nodes.push(NodeSlot {
            name: name.to_owned(),
            node: Occupant::Simulated(node),
            ports: Vec::new(),
            wake: Some(wake),
        });
        Ok(id)
    }

    /// Adds an outside node with a unique name: an endpoint that simulates nothing and stands
    /// for a real device. Attach it to segments like any node; frames delivered to it go to the
    /// connected [`Outside`] (or nowhere, if none is connected), and frames the outside brings in
    /// are sent from its ports. It is never polled, and [`Engine::node`] must not be asked for it.
    pub fn add_outside_node(&mut self, name: &str) -> Result<NodeId, SimError> {
        self.check_new_node(name)?;
        let id = NodeId(self.nodes.len());
        self.nodes.push(NodeSlot {
            name: name.to_owned(),
            node: Occupant::Outside,
            ports: Vec::new(),
            wake: None,
        });
        Ok(id)
    }

    /// Hands the outside nodes' traffic and the clock to `outside`: from now on every run waits
    /// on it until each event is due (see [`crate::outside`]).
    pub fn connect_outside(&mut self, outside: Box<dyn Outside>) {
        self.outside = Some(outside);
    }

    /// Adds a segment with a unique name (also its capture file's name), up and with no endpoints.
    pub fn add_segment(
        &mut self,
        name: &str,
        kind: SegmentKind,
        params: SegmentParams,
    ) -> Result<SegmentId, SimError> {
        check_name("segment", name, FILE_NAME)?;
        if name == "." || name == ".." {
            return Err(SimError::BadName {
                what: "segment",
                name: name.to_owned(),
                reason: "it is not a file name",
            });
        }
        if self.segments.iter().any(|s| s.name == name) {
            return Err(SimError::DuplicateName {
                what: "segment",
                name: name.to_owned(),
            });
        }
        params.validate().map_err(|reason| SimError::BadParams {
            segment: name.to_owned(),
            reason,
        })?;
        let capture = match &self.config.pcap_dir {
            None => None,
            Some(dir) => {
                let path = dir.join(format!("{name}.pcap"));
                let writer = std::fs::create_dir_all(dir)
                    .and_then(|()| File::create(&path))
                    .and_then(|file| PcapWriter::new(BufWriter::new(file)))
                    .map_err(|source| SimError::Capture {
                        path: path.clone(),
                        source,
                    })?;
                Some(Capture { path, writer })
            }
        };
        let id = SegmentId(self.segments.len());
        let rng = self.rng.fork(&format!("segment/{name}"));
        self.segments
            .push(Segment::new(name.to_owned(), kind, params, rng));
        self.captures.push(capture);
        Ok(id)
    }

    /// Gives `node` a new port called `port_name`, attached to `segment`. Ports are numbered per
    /// node from 0 in attach order.
    pub fn attach(
        &mut self,
        segment: SegmentId,
        node: NodeId,
        port_name: &str,
    ) -> Result<PortId, SimError> {
        check_name("port", port_name, NO_COLON)?;
        let slot = &self.nodes[node.index()];
        let endpoint_name = format!("{}:{port_name}", slot.name);
        if slot.ports.iter().any(|p| p.name == port_name) {
            return Err(SimError::DuplicateName {
                what: "port",
                name: endpoint_name,
            });
        }
        let port = PortId(
            u16::try_from(slot.ports.len()).map_err(|_| SimError::BadName {
                what: "port",
                name: endpoint_name.clone(),
                reason: "a node has at most 65536 ports",
            })?,
        );
        let seg = &mut self.segments[segment.index()];
        if seg.is_full() {
            return Err(SimError::LinkFull {
                segment: seg.name.clone(),
                endpoint: endpoint_name,
            });
        }
        seg.attach(Endpoint { node, port });
        self.nodes[node.index()].ports.push(PortSlot {
            name: port_name.to_owned(),
            segment,
        });
        Ok(port)
    }

    /// Brings a segment up or down. Frames sent while it is down, and frames in flight when they
    /// would arrive on a down segment, are dropped as [`DropReason::LinkDown`].
    pub fn set_segment_up(&mut self, segment: SegmentId, up: bool) {
        self.segments[segment.index()].set_up(up);
    }

    /// Whether a segment is up.
    pub fn is_segment_up(&self, segment: SegmentId) -> bool {
        self.segments[segment.index()].is_up()
    }

    /// Brings one port up or down, like `ip link set PORT up|down`. On a link this takes the whole
    /// link down; on a switch it disconnects only this endpoint. Frames are dropped as for
    /// [`Engine::set_segment_up`]. `false` if the node has no such port.
    pub fn set_port_up(&mut self, endpoint: Endpoint, up: bool) -> bool {
        match self.segment_of(endpoint) {
            Some(segment) => {
                self.segments[segment.index()].set_endpoint_up(endpoint, up);
                true
            }
            None => false,
        }
    }

    /// Whether a port is up; `None` if the node has no such port.
    pub fn is_port_up(&self, endpoint: Endpoint) -> Option<bool> {
        self.segment_of(endpoint)
            .map(|segment| self.segments[segment.index()].is_endpoint_up(endpoint))
    }

    /// The segment a port is attached to, if the node has that port.
    pub fn segment_of(&self, endpoint: Endpoint) -> Option<SegmentId> {
        self.nodes[endpoint.node.index()]
            .ports
            .get(usize::from(endpoint.port.0))
            .map(|p| p.segment)
    }

    /// Changes a segment's latency, loss or MTU for frames sent from now on.
    pub fn set_segment_params(
        &mut self,
        segment: SegmentId,
        params: SegmentParams,
    ) -> Result<(), SimError> {
        let seg = &mut self.segments[segment.index()];
        params.validate().map_err(|reason| SimError::BadParams {
            segment: seg.name.clone(),
            reason,
        })?;
        seg.set_params(params);
        Ok(())
    }

    /// A segment's current parameters.
    pub fn segment_params(&self, segment: SegmentId) -> SegmentParams {
        *self.segments[segment.index()].params()
    }

    /// A simulated node, to inspect it (panics for an outside node).
    pub fn node(&self, node: NodeId) -> &N {
        match &self.nodes[node.index()].node {
            Occupant::Simulated(n) => n,
            Occupant::Outside => panic!("{} is an outside node", self.node_name(node)),
        }
    }

    /// A simulated node, to change it (panics for an outside node); follow with
    /// [`Engine::wake_node`] so it can act on the change.
    pub fn node_mut(&mut self, node: NodeId) -> &mut N {
        let slot = &mut self.nodes[node.index()];
        match &mut slot.node {
            Occupant::Simulated(n) => n,
            Occupant::Outside => panic!("{} is an outside node", slot.name),
        }
    }

    /// Polls `node` at the current time, after everything already due now.
    pub fn wake_node(&mut self, node: NodeId) {
        self.set_wake(node, Some(self.clock.now()));
    }

    /// Runs every event due up to and including `deadline`, then moves the clock to `deadline`.
    pub fn run_until(&mut self, deadline: Instant) -> Result<RunStats, SimError> {
        self.run(Some(deadline))
    }

    /// Runs until no event is pending; the clock stays at the last event's time.
    pub fn run_until_quiescent(&mut self) -> Result<RunStats, SimError> {
        self.run(None)
    }

    /// The trace so far.
    pub const fn trace(&self) -> &Trace {
        &self.trace
    }

    /// A segment's delivery and drop counters.
    pub fn segment_stats(&self, segment: SegmentId) -> &SegmentStats {
        &self.segments[segment.index()].stats
    }

    /// A node's name.
    pub fn node_name(&self, node: NodeId) -> &str {
        &self.nodes[node.index()].name
    }

    /// A segment's name.
    pub fn segment_name(&self, segment: SegmentId) -> &str {
        &self.segments[segment.index()].name
    }

    /// The segment called `name` (a bridge of the topology is the switch segment of its name).
    pub fn segment_named(&self, name: &str) -> Option<SegmentId> {
        self.segments
            .iter()
            .position(|s| s.name == name)
            .map(SegmentId)
    }

    /// An endpoint as `node:port`, e.g. `router:eth1`.
    pub fn endpoint_name(&self, endpoint: Endpoint) -> String {
        let slot = &self.nodes[endpoint.node.index()];
        format!(
            "{}:{}",
            slot.name,
            slot.ports[usize::from(endpoint.port.0)].name
        )
    }

    /// A trace record as one line: `SECONDS SEGMENT FROM > TO len N OUTCOME`, with `*` for no
    /// receiver, e.g. `0.001000 lan a:eth0 > b:eth0 len 60 delivered`.
    pub fn trace_line(&self, record: &TraceRecord) -> String {
        let micros = record.at.total_micros();
        let to = record
            .to
            .map_or_else(|| "*".to_owned(), |to| self.endpoint_name(to));
        format!(
            "{}.{:06} {} {} > {} len {} {}",
            micros.div_euclid(1_000_000),
            micros.rem_euclid(1_000_000),
            self.segment_name(record.segment),
            self.endpoint_name(record.from),
            to,
            record.len,
            record.outcome
        )
    }

    /// Keep the frames sent on `segment` in memory from now on, for
    /// [`Engine::take_watched`].
    pub fn watch(&mut self, segment: SegmentId) {
        self.watched.entry(segment).or_default();
    }

    /// The frames sent on `segment` since the last call (with when they
    /// were sent), if it is watched.
    pub fn take_watched(&mut self, segment: SegmentId) -> Vec<(Instant, Vec<u8>)> {
        self.watched
            .get_mut(&segment)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Writes out buffered capture data; call before reading the pcap files.
    pub fn flush_captures(&mut self) -> Result<(), SimError> {
        for capture in self.captures.iter_mut().flatten() {
            capture.writer.flush().map_err(|source| SimError::Capture {
                path: capture.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn run(&mut self, until: Option<Instant>) -> Result<RunStats, SimError> {
        let budget = self.config.event_budget;
        let mut events = 0;
        loop {
            let next = self
                .clock
                .next_due()
                .filter(|&t| until.is_none_or(|limit| t <= limit));
            if self.outside.is_some() {
                let Some(target) = next.or(until) else {
                    break;
                };
                if !self.wait_outside(target)? {
                    continue;
                }
                if next.is_none() {
                    break;
                }
            }
            let due = next.is_some();
            if due && events >= budget {
                return Err(SimError::EventBudgetExhausted {
                    budget,
                    now: self.clock.now(),
                    pending: self.clock.pending(),
                    seed: self.config.seed,
                });
            }
            let Some(event) = self.clock.pop_next(until) else {
                break;
            };
            events += 1;
            self.handle(event)?;
        }
        if let Some(deadline) = until {
            self.clock.advance_to(deadline);
        }
        Ok(RunStats {
            events,
            now: self.clock.now(),
        })
    }

    /// Lets the outside world run until `target` (a pending event or the deadline) and sends
    /// what came in; `true` if `target` was reached with nothing coming in.
    fn wait_outside(&mut self, target: Instant) -> Result<bool, SimError> {
        let Some(outside) = &mut self.outside else {
            return Ok(true);
        };
        let (reached, incoming) = outside.wait(self.clock.now(), target);
        self.clock.advance_to(reached.min(target));
        let quiet = incoming.is_empty();
        for (from, frame) in incoming {
            self.transmit(from, frame)?;
        }
        Ok(quiet && reached >= target)
    }

    fn handle(&mut self, event: Event) -> Result<(), SimError> {
        match event {
            Event::Wake(node) => {
                self.nodes[node.index()].wake = None;
                self.poll_node(node)
            }
            Event::Arrive {
                segment,
                from,
                to,
                frame,
            } => {
                let outcome = if self.segments[segment.index()].carries(from, to) {
                    Outcome::Delivered
                } else {
                    Outcome::Dropped(DropReason::LinkDown)
                };
                self.record(segment, from, Some(to), outcome, &frame);
                if outcome != Outcome::Delivered {
                    return Ok(());
                }
                let now = self.clock.now();
                match &mut self.nodes[to.node.index()].node {
                    Occupant::Simulated(node) => {
                        node.receive(now, to.port, frame);
                        self.poll_node(to.node)
                    }
                    Occupant::Outside => {
                        if let Some(outside) = &mut self.outside {
                            outside.send(to, frame);
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    fn poll_node(&mut self, node: NodeId) -> Result<(), SimError> {
        let now = self.clock.now();
        let Occupant::Simulated(n) = &mut self.nodes[node.index()].node else {
            return Ok(());
        };
        let poll = n.poll(now);
        for (port, frame) in poll.transmit {
            self.transmit(Endpoint { node, port }, frame)?;
        }
        self.set_wake(node, poll.wake_at);
        Ok(())
    }

    fn set_wake(&mut self, node: NodeId, at: Option<Instant>) {
        let now = self.clock.now();
        let at = at.map(|t| t.max(now));
        let slot = &mut self.nodes[node.index()];
        if slot.wake.map(TimerId::at) == at {
            return;
        }
        if let Some(old) = slot.wake.take() {
            self.clock.cancel(old);
        }
        slot.wake = at.map(|t| self.clock.schedule(t, Event::Wake(node)));
    }

    fn transmit(&mut self, from: Endpoint, mut frame: Vec<u8>) -> Result<(), SimError> {
        let segment = self.segment_of(from).ok_or_else(|| SimError::UnknownPort {
            node: self.nodes[from.node.index()].name.clone(),
            port: from.port.0,
        })?;
        let now = self.clock.now();
        let seg = &mut self.segments[segment.index()];
        let transmission = seg.transmit(from, &frame);
        let arrival = now + seg.params().latency;
        if transmission.on_wire
            && let Some(frames) = self.watched.get_mut(&segment)
        {
            frames.push((now, frame.clone()));
        }
        if transmission.on_wire
            && let Some(capture) = &mut self.captures[segment.index()]
        {
            capture
                .writer
                .write_frame(now, &frame)
                .map_err(|source| SimError::Capture {
                    path: capture.path.clone(),
                    source,
                })?;
        }
        let copies = transmission.fates.len();
        for (i, fate) in transmission.fates.into_iter().enumerate() {
            match fate {
                Fate::Deliver(to) => {
                    let frame = if i + 1 == copies {
                        std::mem::take(&mut frame)
                    } else {
                        frame.clone()
                    };
                    let event = Event::Arrive {
                        segment,
                        from,
                        to,
                        frame,
                    };
                    self.clock.schedule(arrival, event);
                }
                Fate::Lost(to) => {
                    self.record(
                        segment,
                        from,
                        Some(to),
                        Outcome::Dropped(DropReason::Loss),
                        &frame,
                    );
                }
                Fate::Dropped(reason) => {
                    self.record(segment, from, None, Outcome::Dropped(reason), &frame);
                }
            }
        }
        Ok(())
    }

    fn check_new_node(&self, name: &str) -> Result<(), SimError> {
        check_name("node", name, NO_COLON)?;
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(SimError::DuplicateName {
                what: "node",
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn record(
        &mut self,
        segment: SegmentId,
        from: Endpoint,
        to: Option<Endpoint>,
        outcome: Outcome,
        frame: &[u8],
    ) {
        let stats = &mut self.segments[segment.index()].stats;
        match outcome {
            Outcome::Delivered => stats.delivered += 1,
            Outcome::Dropped(reason) => *stats.dropped.entry(reason).or_default() += 1,
        }
        let record = TraceRecord {
            at: self.clock.now(),
            segment,
            from,
            to,
            len: frame.len(),
            outcome,
        };
        self.trace.record(record, frame);
    }
}

/// `node:port` names an endpoint, so neither part may contain `:`.
const NO_COLON: (&[char], &str) = (
    &[':'],
    "it cannot contain ':', which separates node and port",
);
/// A segment's name is its capture file's name.
const FILE_NAME: (&[char], &str) = (
    &['/', '\\'],
    "it names a capture file, so it cannot contain '/' or '\\'",
);

/// Rejects empty names, names with whitespace, and names with the `forbidden` characters.
fn check_name(
    what: &'static str,
    name: &str,
    (forbidden, why): (&[char], &'static str),
) -> Result<(), SimError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else if name.contains(forbidden) {
        Some(why)
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(SimError::BadName {
            what,
            name: name.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    /// A configuration that keeps every trace record, as these tests read them.
    fn traced(seed: u64) -> super::EngineConfig {
        super::EngineConfig {
            trace_records: true,
            ..super::EngineConfig::new(seed)
        }
    }

    use smoltcp::time::{Duration, Instant};

    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::{Engine, EngineConfig};
    use crate::error::SimError;
    use crate::node::{Endpoint, NodeId, PortId};
    use crate::outside::Outside;
    use crate::pcap::tests::{arp_request, scratch_dir, tshark_decodes, udp};
    use crate::rng::SimRng;
    use crate::segment::{DropReason, SegmentId, SegmentKind, SegmentParams};
    use crate::testing::{Probe, frame, mac};
    use crate::trace::TraceHash;

    const P0: PortId = PortId(0);

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    fn link(latency_ms: u64, loss: f64) -> SegmentParams {
        SegmentParams {
            latency: Duration::from_millis(latency_ms),
            loss,
            ..SegmentParams::default()
        }
    }

    /// Sender `a` (MAC 1) and reflector `b` (MAC 2) on one link; `a` sends one 60-byte frame to
    /// `b` at each of `times_ms`.
    fn pair(
        config: EngineConfig,
        params: SegmentParams,
        times_ms: &[i64],
    ) -> (Engine<Probe>, NodeId, NodeId, SegmentId) {
        let script = times_ms
            .iter()
            .enumerate()
            .map(|(i, &t)| (ms(t), P0, frame(mac(2), mac(1), 46, i as u8)))
            .collect();
        let mut engine = Engine::new(config);
        let a = engine.add_node("a", Probe::sender(mac(1), script)).unwrap();
        let b = engine.add_node("b", Probe::reflector(mac(2))).unwrap();
        let l = engine
            .add_segment("a-b", SegmentKind::Link, params)
            .unwrap();
        engine.attach(l, a, "eth0").unwrap();
        engine.attach(l, b, "eth0").unwrap();
        (engine, a, b, l)
    }

    fn trace_lines(engine: &Engine<Probe>) -> Vec<String> {
        engine
            .trace()
            .records()
            .iter()
            .map(|r| engine.trace_line(r))
            .collect()
    }

    /// What a [`ScriptedOutside`] was sent, and the times it was asked to wait until.
    #[derive(Debug, Default)]
    struct OutsideLog {
        sent: Vec<(Endpoint, Vec<u8>)>,
        waits: Vec<Instant>,
    }

    /// An outside world on virtual time: brings in scripted frames and logs the rest.
    #[derive(Debug, Default)]
    struct ScriptedOutside {
        incoming: VecDeque<(Instant, Endpoint, Vec<u8>)>,
        log: Rc<RefCell<OutsideLog>>,
    }

    impl Outside for ScriptedOutside {
        fn send(&mut self, to: Endpoint, frame: Vec<u8>) {
            self.log.borrow_mut().sent.push((to, frame));
        }

        fn wait(&mut self, _now: Instant, until: Instant) -> (Instant, Vec<(Endpoint, Vec<u8>)>) {
            self.log.borrow_mut().waits.push(until);
            match self.incoming.front() {
                Some((at, _, _)) if *at <= until => {
                    let (at, from, frame) = self.incoming.pop_front().expect("front exists");
                    (at, vec![(from, frame)])
                }
                _ => (until, Vec::new()),
            }
        }
    }

    #[test]
    fn outside_nodes_exchange_frames_with_the_outside_which_paces_the_run() {
        let mut engine = Engine::new(traced(1));
        let b = engine.add_node("b", Probe::reflector(mac(2))).unwrap();
        let tap = engine.add_outside_node("tap0").unwrap();
        assert!(matches!(
            engine.add_outside_node("b"),
            Err(SimError::DuplicateName { .. })
        ));
        let l = engine
            .add_segment("l", SegmentKind::Link, link(1, 0.0))
            .unwrap();
        engine.attach(l, b, "eth0").unwrap();
        let port = engine.attach(l, tap, "tap").unwrap();
        let from = Endpoint { node: tap, port };
        let outside = ScriptedOutside {
            incoming: [(ms(5), from, frame(mac(2), mac(1), 46, 7))].into(),
            ..ScriptedOutside::default()
        };
        let log = Rc::clone(&outside.log);
        engine.connect_outside(Box::new(outside));
        let stats = engine.run_until(ms(20)).unwrap();
        assert_eq!(stats.now, ms(20));
        assert_eq!(engine.node(b).arrival_micros(), [6_000]);
        assert_eq!(
            trace_lines(&engine),
            [
                "0.006000 l tap0:tap > b:eth0 len 60 delivered",
                "0.007000 l b:eth0 > tap0:tap len 60 delivered",
            ]
        );
        let OutsideLog { sent, waits } = &*log.borrow();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, from);
        assert_eq!(sent[0].1[..6], mac(1));
        // b's first poll, the deadline (cut short by the incoming frame), then each event.
        assert_eq!(waits, &[ms(0), ms(20), ms(6), ms(7), ms(20)]);
    }

    #[test]
    #[should_panic(expected = "tap0 is an outside node")]
    fn an_outside_node_is_not_a_simulated_one() {
        let mut engine: Engine<Probe> = Engine::new(traced(1));
        let tap = engine.add_outside_node("tap0").unwrap();
        engine.wake_node(tap);
        engine.run_until_quiescent().unwrap();
        let _ = engine.node(tap);
    }

    #[test]
    fn latency_adds_up_over_a_round_trip() {
        let (mut engine, a, b, l) = pair(traced(1), link(1, 0.0), &[0, 5]);
        let stats = engine.run_until_quiescent().unwrap();
        assert_eq!(stats.now, ms(7));
        assert_eq!(engine.node(b).arrival_micros(), [1_000, 6_000]);
        assert_eq!(engine.node(a).arrival_micros(), [2_000, 7_000]);
        assert_eq!(engine.segment_stats(l).delivered, 4);
        assert_eq!(
            trace_lines(&engine),
            [
                "0.001000 a-b a:eth0 > b:eth0 len 60 delivered",
                "0.002000 a-b b:eth0 > a:eth0 len 60 delivered",
                "0.006000 a-b a:eth0 > b:eth0 len 60 delivered",
                "0.007000 a-b b:eth0 > a:eth0 len 60 delivered",
            ]
        );
    }

    #[test]
    fn forked_rngs_depend_on_seed_and_label_only() {
        let mut one: Engine<Probe> = Engine::new(traced(3));
        let two: Engine<Probe> = Engine::new(traced(3));
        one.add_segment("s", SegmentKind::Switch, SegmentParams::default())
            .unwrap();
        let seed_of = |e: &Engine<Probe>, label| e.fork_rng(label).seed();
        assert_eq!(seed_of(&one, "node/a"), seed_of(&two, "node/a"));
        assert_eq!(
            seed_of(&one, "node/a"),
            SimRng::new(3).fork("node/a").seed()
        );
        assert_ne!(seed_of(&one, "node/a"), seed_of(&one, "node/b"));
    }

    #[test]
    fn run_until_moves_the_clock_to_the_deadline() {
        let (mut engine, _, b, _) = pair(traced(1), link(1, 0.0), &[0, 5]);
        let first = engine.run_until(ms(3)).unwrap();
        assert_eq!(first.now, ms(3));
        assert_eq!(engine.now(), ms(3));
        assert_eq!(engine.node(b).arrival_micros(), [1_000]);
        // Exactly at the deadline still runs.
        engine.run_until(ms(6)).unwrap();
        assert_eq!(engine.node(b).arrival_micros(), [1_000, 6_000]);
        let idle = engine.run_until(ms(100)).unwrap();
        assert_eq!(idle.now, ms(100));
        assert_eq!(engine.run_until_quiescent().unwrap().events, 0);
    }

    fn lossy_arrivals(seed: u64) -> (Vec<i64>, u64, u64, TraceHash) {
        let times: Vec<i64> = (0..200).collect();
        let mut b_only = link(1, 0.3);
        b_only.latency = Duration::from_micros(10);
        let (mut engine, _, b, l) = pair(traced(seed), b_only, &times);
        engine.run_until_quiescent().unwrap();
        let stats = engine.segment_stats(l);
        let hash = engine.trace().hash();
        (
            engine.node(b).arrival_micros(),
            stats.delivered,
            stats.dropped(DropReason::Loss),
            hash,
        )
    }

    #[test]
    fn loss_is_reproducible_per_seed_and_changes_with_it() {
        let (arrivals, delivered, lost, hash) = lossy_arrivals(1);
        // 200 requests and one reply per request that arrived, each copy lost with p = 0.3.
        let requests_through = arrivals.len() as u64;
        assert_eq!(delivered + lost, 200 + requests_through);
        assert!((110..170).contains(&requests_through), "{requests_through}");
        assert_eq!(lossy_arrivals(1), (arrivals.clone(), delivered, lost, hash));
        let other = lossy_arrivals(2);
        assert_ne!(other.0, arrivals);
        assert_ne!(other.3, hash);
    }

    #[test]
    fn another_segment_does_not_perturb_a_segments_losses() {
        let arrivals = |with_extra: bool| {
            let times: Vec<i64> = (0..100).collect();
            let (mut engine, _, b, _) = pair(traced(5), link(1, 0.5), &times);
            if with_extra {
                let c = engine.add_node("c", Probe::reflector(mac(3))).unwrap();
                let s = engine
                    .add_segment("extra", SegmentKind::Switch, link(1, 0.5))
                    .unwrap();
                engine.attach(s, c, "eth0").unwrap();
            }
            engine.run_until_quiescent().unwrap();
            engine.node(b).arrival_micros()
        };
        assert_eq!(arrivals(false), arrivals(true));
    }

    #[test]
    fn a_down_link_drops_new_and_in_flight_frames() {
        let (mut engine, a, b, l) = pair(traced(1), link(2, 0.0), &[0, 10, 20]);
        // The first frame is in flight at 1 ms when the link goes down.
        engine.run_until(ms(1)).unwrap();
        engine.set_segment_up(l, false);
        assert!(!engine.is_segment_up(l));
        engine.run_until(ms(15)).unwrap();
        engine.set_segment_up(l, true);
        engine.run_until_quiescent().unwrap();
        assert_eq!(engine.node(b).arrival_micros(), [22_000]);
        assert_eq!(engine.node(a).arrival_micros(), [24_000]);
        assert_eq!(engine.segment_stats(l).dropped(DropReason::LinkDown), 2);
        assert_eq!(
            trace_lines(&engine)[..2],
            [
                "0.002000 a-b a:eth0 > b:eth0 len 60 dropped link-down",
                "0.010000 a-b a:eth0 > * len 60 dropped link-down",
            ]
        );
    }

    #[test]
    fn a_down_switch_port_cuts_off_one_node() {
        let mut engine = Engine::new(traced(1));
        let script = vec![
            (ms(0), P0, frame([0xff; 6], mac(1), 46, 0)),
            (ms(10), P0, frame([0xff; 6], mac(1), 46, 1)),
            (ms(20), P0, frame([0xff; 6], mac(1), 46, 2)),
        ];
        let a = engine.add_node("a", Probe::sender(mac(1), script)).unwrap();
        let b = engine.add_node("b", Probe::sender(mac(2), vec![])).unwrap();
        let c = engine.add_node("c", Probe::sender(mac(3), vec![])).unwrap();
        let sw = engine
            .add_segment("lan", SegmentKind::Switch, link(2, 0.0))
            .unwrap();
        let ports: Vec<_> = [a, b, c]
            .map(|n| Endpoint {
                node: n,
                port: engine.attach(sw, n, "eth0").unwrap(),
            })
            .into();
        // c's port goes down while the first broadcast is in flight, and comes back at 15 ms.
        engine.run_until(ms(1)).unwrap();
        assert!(engine.set_port_up(ports[2], false));
        assert_eq!(engine.is_port_up(ports[2]), Some(false));
        engine.run_until(ms(15)).unwrap();
        assert!(engine.set_port_up(ports[2], true));
        engine.run_until_quiescent().unwrap();
        assert_eq!(engine.node(b).arrival_micros(), [2_000, 12_000, 22_000]);
        assert_eq!(engine.node(c).arrival_micros(), [22_000]);
        assert_eq!(engine.segment_stats(sw).dropped(DropReason::LinkDown), 1);
        let missing = Endpoint {
            node: a,
            port: PortId(5),
        };
        assert!(!engine.set_port_up(missing, false));
        assert_eq!(engine.is_port_up(missing), None);
        assert_eq!(engine.segment_of(ports[1]), Some(sw));
    }

    #[test]
    fn frames_over_the_mtu_are_dropped_and_counted() {
        let mut engine = Engine::new(traced(1));
        let script = vec![
            (ms(0), P0, frame(mac(2), mac(1), 1500, 0)),
            (ms(1), P0, frame(mac(2), mac(1), 1501, 1)),
        ];
        let a = engine.add_node("a", Probe::sender(mac(1), script)).unwrap();
        let b = engine.add_node("b", Probe::sender(mac(2), vec![])).unwrap();
        let l = engine
            .add_segment("l", SegmentKind::Link, SegmentParams::default())
            .unwrap();
        engine.attach(l, a, "eth0").unwrap();
        engine.attach(l, b, "eth0").unwrap();
        engine.run_until_quiescent().unwrap();
        assert_eq!(engine.node(b).received.len(), 1);
        assert_eq!(engine.node(b).received[0].2.len(), 1514);
        assert_eq!(engine.segment_stats(l).dropped(DropReason::Mtu), 1);
        // Lowering the MTU mid-run applies to later frames.
        engine
            .set_segment_params(
                l,
                SegmentParams {
                    mtu: 1000,
                    ..engine.segment_params(l)
                },
            )
            .unwrap();
        engine.node_mut(a).script = vec![(ms(2), P0, frame(mac(2), mac(1), 1001, 2))].into();
        engine.wake_node(a);
        engine.run_until_quiescent().unwrap();
        assert_eq!(engine.segment_stats(l).dropped(DropReason::Mtu), 2);
    }

    #[test]
    fn a_switch_floods_unknown_and_forwards_learned_macs() {
        let mut engine = Engine::new(traced(1));
        let script = vec![
            (ms(0), P0, frame(mac(2), mac(1), 46, 0)),
            (ms(10), P0, frame(mac(2), mac(1), 46, 1)),
            (ms(20), P0, frame([0xff; 6], mac(1), 46, 2)),
        ];
        let a = engine.add_node("a", Probe::sender(mac(1), script)).unwrap();
        let b = engine.add_node("b", Probe::reflector(mac(2))).unwrap();
        let c = engine.add_node("c", Probe::sender(mac(3), vec![])).unwrap();
        let sw = engine
            .add_segment("lan", SegmentKind::Switch, link(1, 0.0))
            .unwrap();
        for n in [a, b, c] {
            engine.attach(sw, n, "eth0").unwrap();
        }
        engine.run_until_quiescent().unwrap();
        // b's MAC unknown at 0 ms: flooded to b and c. b's reply goes to a only (learned at 0 ms).
        // At 10 ms b is known: only b. The broadcast at 20 ms reaches b and c; b answers a.
        assert_eq!(engine.node(b).arrival_micros(), [1_000, 11_000, 21_000]);
        assert_eq!(engine.node(c).arrival_micros(), [1_000, 21_000]);
        assert_eq!(engine.node(a).arrival_micros(), [2_000, 12_000, 22_000]);
        assert_eq!(engine.segment_stats(sw).delivered, 8);
    }

    #[test]
    fn a_later_poll_cancels_a_pending_wake_up() {
        let mut engine = Engine::new(traced(1));
        let mut waiting = Probe::sender(mac(1), vec![(ms(10), P0, frame(mac(2), mac(1), 46, 0))]);
        waiting.forget_script_on_receive = true;
        let a = engine.add_node("a", waiting).unwrap();
        let b = engine
            .add_node(
                "b",
                Probe::sender(mac(2), vec![(ms(0), P0, frame(mac(1), mac(2), 46, 0))]),
            )
            .unwrap();
        let l = engine
            .add_segment("l", SegmentKind::Link, link(1, 0.0))
            .unwrap();
        engine.attach(l, a, "eth0").unwrap();
        engine.attach(l, b, "eth0").unwrap();
        let stats = engine.run_until_quiescent().unwrap();
        // Polled at start and on arrival at 1 ms; the 10 ms wake-up was cancelled.
        assert_eq!(engine.node(a).polls, [ms(0), ms(1)]);
        assert_eq!(stats.now, ms(1));
        assert!(engine.node(b).received.is_empty());
    }

    #[test]
    fn a_runaway_node_exhausts_the_event_budget() {
        let config = EngineConfig {
            event_budget: 1000,
            ..traced(77)
        };
        let mut engine = Engine::new(config);
        let spinner = Probe {
            spin: true,
            ..Probe::default()
        };
        let n = engine.add_node("spinner", spinner).unwrap();
        let err = engine.run_until(ms(1)).unwrap_err();
        assert!(matches!(
            err,
            SimError::EventBudgetExhausted {
                budget: 1000,
                seed: 77,
                ..
            }
        ));
        assert!(err.to_string().contains("seed 77"), "{err}");
        assert_eq!(engine.node(n).polls.len(), 1000);
        assert_eq!(engine.now(), ms(0));
    }

    #[test]
    fn bad_topologies_and_bad_transmissions_are_named_errors() {
        let mut engine: Engine<Probe> = Engine::new(traced(1));
        let a = engine.add_node("a", Probe::default()).unwrap();
        let b = engine.add_node("b", Probe::default()).unwrap();
        let c = engine.add_node("c", Probe::default()).unwrap();
        let dup = engine.add_node("a", Probe::default()).unwrap_err();
        assert_eq!(dup.to_string(), "node name \"a\" is used twice");
        assert!(matches!(
            engine.add_node("a:b", Probe::default()),
            Err(SimError::BadName { .. })
        ));
        assert!(matches!(
            engine.add_node("", Probe::default()),
            Err(SimError::BadName { .. })
        ));
        let l = engine
            .add_segment("l", SegmentKind::Link, SegmentParams::default())
            .unwrap();
        assert!(matches!(
            engine.add_segment("l", SegmentKind::Switch, SegmentParams::default()),
            Err(SimError::DuplicateName { .. })
        ));
        for bad in ["x/y", "..", "a b"] {
            assert!(matches!(
                engine.add_segment(bad, SegmentKind::Switch, SegmentParams::default()),
                Err(SimError::BadName { .. })
            ));
        }
        let lossy = engine
            .add_segment("lossy", SegmentKind::Link, link(1, 2.0))
            .unwrap_err();
        assert!(
            lossy.to_string().starts_with("segment \"lossy\": loss"),
            "{lossy}"
        );
        assert!(matches!(
            engine.set_segment_params(l, link(1, -0.1)),
            Err(SimError::BadParams { .. })
        ));
        assert_eq!(engine.attach(l, a, "eth0").unwrap(), PortId(0));
        assert!(matches!(
            engine.attach(l, a, "eth0"),
            Err(SimError::DuplicateName { .. })
        ));
        assert_eq!(engine.attach(l, b, "eth1").unwrap(), PortId(0));
        let full = engine.attach(l, c, "eth0").unwrap_err();
        assert_eq!(
            full.to_string(),
            "link \"l\" already connects two endpoints; cannot attach c:eth0"
        );
        engine.node_mut(a).script = vec![(ms(0), PortId(3), frame(mac(2), mac(1), 46, 0))].into();
        let unknown = engine.run_until_quiescent().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "node \"a\" transmitted on port 3, which is not attached to any segment"
        );
    }

    /// Builds and runs a small lossy lab: a switch with a reflector and two senders, one of which
    /// also has a link to a fourth node. Returns the trace hash and the capture files' bytes.
    fn small_lab(seed: u64, dir: &std::path::Path) -> (TraceHash, Vec<u8>, Vec<u8>) {
        let config = EngineConfig {
            pcap_dir: Some(dir.to_path_buf()),
            ..traced(seed)
        };
        let mut engine = Engine::new(config);
        let script_a = (0..50)
            .map(|i| (ms(i), P0, frame(mac(9), mac(1), 46 + i as usize, i as u8)))
            .collect();
        let script_c = (0..50)
            .flat_map(|i| {
                [
                    (ms(i), P0, frame([0xff; 6], mac(3), 60, i as u8)),
                    (ms(i), PortId(1), frame(mac(4), mac(3), 80, i as u8)),
                ]
            })
            .collect();
        let a = engine
            .add_node("a", Probe::sender(mac(1), script_a))
            .unwrap();
        let b = engine.add_node("b", Probe::reflector(mac(9))).unwrap();
        let c = engine
            .add_node("c", Probe::sender(mac(3), script_c))
            .unwrap();
        let d = engine.add_node("d", Probe::reflector(mac(4))).unwrap();
        let lan = engine
            .add_segment("lan", SegmentKind::Switch, link(1, 0.2))
            .unwrap();
        let wan = engine
            .add_segment("c-d", SegmentKind::Link, link(3, 0.2))
            .unwrap();
        for n in [a, b, c] {
            engine.attach(lan, n, "eth0").unwrap();
        }
        engine.attach(wan, c, "eth1").unwrap();
        engine.attach(wan, d, "eth0").unwrap();
        engine.run_until_quiescent().unwrap();
        engine.flush_captures().unwrap();
        (
            engine.trace().hash(),
            std::fs::read(dir.join("lan.pcap")).unwrap(),
            std::fs::read(dir.join("c-d.pcap")).unwrap(),
        )
    }

    #[test]
    fn same_seed_gives_identical_trace_and_captures() {
        let dir = scratch_dir("determinism");
        let first = small_lab(11, &dir.join("first"));
        let second = small_lab(11, &dir.join("second"));
        assert_eq!(first, second);
        let other = small_lab(12, &dir.join("other"));
        assert_ne!(first.0, other.0);
        assert_ne!(first.1, other.1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn captures_decode_in_tshark() {
        let dir = scratch_dir("engine-pcap");
        let config = EngineConfig {
            pcap_dir: Some(dir.clone()),
            ..traced(1)
        };
        let mut engine = Engine::new(config);
        let script = vec![
            (ms(0), P0, arp_request()),
            (ms(1), P0, udp(b"hello")),
            (Instant::from_micros(1_500_250), P0, udp(&[1; 1400])),
        ];
        let a = engine.add_node("a", Probe::sender(mac(1), script)).unwrap();
        let b = engine.add_node("b", Probe::reflector(mac(2))).unwrap();
        let l = engine
            .add_segment("a-b", SegmentKind::Link, link(1, 0.0))
            .unwrap();
        engine.attach(l, a, "eth0").unwrap();
        engine.attach(l, b, "eth0").unwrap();
        engine.run_until_quiescent().unwrap();
        engine.flush_captures().unwrap();
        let path = dir.join("a-b.pcap");
        // Three frames sent and three reflected.
        if let Some(summary) = tshark_decodes(&path, 6) {
            assert!(summary.contains("1.500250"), "{summary}");
            assert!(summary.contains("ARP"), "{summary}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
