//! The discrete-event loop: nodes and segments on one virtual clock.
//!
//! Build with [`Engine::new`], then [`Engine::add_node`], [`Engine::add_segment`] and
//! [`Engine::attach`]. Run with [`Engine::run_until`] or [`Engine::run_until_quiescent`]; between
//! runs the caller may change the world ([`Engine::set_segment_up`],
//! [`Engine::set_segment_params`], [`Engine::node_mut`] then [`Engine::wake_node`]), which is how
//! scenario steps and fault injection happen. Read results with [`Engine::trace`],
//! [`Engine::segment_stats`] and [`Engine::trace_line`]; call [`Engine::flush_captures`] at the end.
//!
//! There are two kinds of events: a copy of a frame arriving at an endpoint, and a node's wake-up.
//! Each node has at most one wake-up pending; every poll replaces it. Every random choice comes
//! from an RNG forked per segment (`"segment/NAME"`) from the seed, and nothing reads the wall
//! clock, so the same build steps, run steps and seed give the same trace and captures.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use smoltcp::time::Instant;

use crate::clock::{Clock, TimerId};
use crate::error::SimError;
use crate::node::{Endpoint, Node, NodeId, PortId};
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
}

impl EngineConfig {
    /// The default budget and no captures.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            event_budget: DEFAULT_EVENT_BUDGET,
            pcap_dir: None,
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

#[derive(Debug)]
struct NodeSlot<N> {
    name: String,
    node: N,
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
    trace: Trace,
}

impl<N: Node> Engine<N> {
    /// An empty simulation at time zero.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            rng: SimRng::new(config.seed),
            config,
            clock: Clock::new(),
            nodes: Vec::new(),
            segments: Vec::new(),
            captures: Vec::new(),
            trace: Trace::new(),
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

    /// Adds a node with a unique name; it is first polled at the current time.
    pub fn add_node(&mut self, name: &str, node: N) -> Result<NodeId, SimError> {
        check_name("node", name, NO_COLON)?;
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(SimError::DuplicateName {
                what: "node",
                name: name.to_owned(),
            });
        }
        let id = NodeId(self.nodes.len());
        let wake = self.clock.schedule(self.clock.now(), Event::Wake(id));
        self.nodes.push(NodeSlot {
            name: name.to_owned(),
            node,
            ports: Vec::new(),
            wake: Some(wake),
        });
        Ok(id)
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

    /// A node, to inspect it.
    pub fn node(&self, node: NodeId) -> &N {
        &self.nodes[node.index()].node
    }

    /// A node, to change it; follow with [`Engine::wake_node`] so it can act on the change.
    pub fn node_mut(&mut self, node: NodeId) -> &mut N {
        &mut self.nodes[node.index()].node
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
            let due = self
                .clock
                .next_due()
                .is_some_and(|t| until.is_none_or(|limit| t <= limit));
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
                let outcome = if self.segments[segment.index()].is_up() {
                    Outcome::Delivered
                } else {
                    Outcome::Dropped(DropReason::LinkDown)
                };
                self.record(segment, from, Some(to), outcome, &frame);
                if outcome != Outcome::Delivered {
                    return Ok(());
                }
                let now = self.clock.now();
                self.nodes[to.node.index()]
                    .node
                    .receive(now, to.port, frame);
                self.poll_node(to.node)
            }
        }
    }

    fn poll_node(&mut self, node: NodeId) -> Result<(), SimError> {
        let now = self.clock.now();
        let poll = self.nodes[node.index()].node.poll(now);
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
        let slot = &self.nodes[from.node.index()];
        let segment = slot
            .ports
            .get(usize::from(from.port.0))
            .ok_or_else(|| SimError::UnknownPort {
                node: slot.name.clone(),
                port: from.port.0,
            })?
            .segment;
        let now = self.clock.now();
        let seg = &mut self.segments[segment.index()];
        let transmission = seg.transmit(from, &frame);
        let arrival = now + seg.params().latency;
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
