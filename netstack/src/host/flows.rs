//! The host's flow log: router-core's flow events for what its datapath did
//! with each packet, kept when asked for (a Cilium node's Hubble).
//!
//! Owns the recorded events and the memory of which side opened each
//! connection (for `->` and `<-`). Which exits make an event, and what it
//! says, is router-core's [`flow::observe`]; naming and printing are the
//! caller's.

use router_core::datapath::Reason;
use router_core::flow::{
    self, DropReason, Flow, Observation, Side, Verdict, direction::Directions,
};
use smoltcp::time::Instant;

/// Connections whose opener is remembered.
const DIRECTIONS: usize = 4096;

/// Recorded flow events, oldest first.
#[derive(Clone, Debug)]
pub struct FlowLog {
    records: Vec<Flow>,
    directions: Directions,
}

impl Default for FlowLog {
    fn default() -> Self {
        FlowLog {
            records: Vec::new(),
            directions: Directions::new(DIRECTIONS),
        }
    }
}

impl FlowLog {
    /// Record the event, if any, of a datapath exit for the IP packet `ip`.
    pub fn exit(
        &mut self,
        now: Instant,
        (from, to): (Side, Option<Side>),
        reason: Reason,
        decapsulated: bool,
        ip: &[u8],
    ) {
        if let Some(observation) = flow::observe(from, to, reason, decapsulated) {
            self.observed(now, observation, ip);
        }
    }

    /// Record a drop by the service stage.
    pub fn service_drop(&mut self, now: Instant, why: DropReason, ip: &[u8]) {
        let observation = Observation {
            point: None,
            verdict: Verdict::Dropped(why),
        };
        self.observed(now, observation, ip);
    }

    fn observed(&mut self, now: Instant, observation: Observation, ip: &[u8]) {
        if let Some(flow) = self.directions.flow(now.total_micros(), observation, ip) {
            self.records.push(flow);
        }
    }

    /// Record an event made outside the datapath (a socket's translation).
    pub fn push(&mut self, flow: Flow) {
        self.records.push(flow);
    }

    /// The events recorded since the last call.
    pub fn take(&mut self) -> Vec<Flow> {
        std::mem::take(&mut self.records)
    }
}
