//! Flow events from the loaded programs: the `FLOWS` ring buffer's
//! records decoded into router-core's terms.
//!
//! Owns reading the ring buffer and checking each record (a record that is
//! not a well-formed event is an error naming what is wrong, never a
//! panic). The event a record stands for is router-core's
//! [`flow::observe`] on the record's inputs, the same call the program
//! made to decide to send it. Naming endpoints, directions and timestamps
//! belong to the reader's owner.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use aya::maps::{MapData, RingBuf};
use nexthop_offload_bpf_common::flow::{FLOW_BYTES, FlowEvent, counter, side};
use router_core::datapath::Reason;
use router_core::flow::{self, Observation, Side};

/// One decoded flow event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// When, in CLOCK_MONOTONIC nanoseconds.
    pub ktime: u64,
    /// The interface the frame arrived on.
    pub ingress: u32,
    /// The interface it left by, for a transmit.
    pub egress: Option<u32>,
    /// The exit.
    pub reason: Reason,
    /// Whether the packet is the inner one of a decapsulated tunnel frame.
    pub decapsulated: bool,
    /// The event: observation point and verdict.
    pub observation: Observation,
    /// Length of the observed IP packet.
    pub len: u32,
    /// Its first bytes (up to `FLOW_BYTES`).
    pub bytes: Vec<u8>,
}

/// A ring buffer record that is not a well-formed event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEvent(pub String);

impl fmt::Display for BadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad flow event: {}", self.0)
    }
}

impl std::error::Error for BadEvent {}

fn side_of(code: u8, what: &str) -> Result<Option<Side>, BadEvent> {
    match code {
        side::NONE => Ok(None),
        side::ENDPOINT => Ok(Some(Side::Endpoint)),
        side::NETWORK => Ok(Some(Side::Network)),
        other => Err(BadEvent(format!("{what} side {other} is not a side"))),
    }
}

/// Decode one ring buffer record.
pub fn decode(record: &[u8]) -> Result<Event, BadEvent> {
    let size = size_of::<FlowEvent>();
    if record.len() != size {
        return Err(BadEvent(format!(
            "{} bytes where an event has {size}",
            record.len()
        )));
    }
    // SAFETY: `record` holds `size_of::<FlowEvent>()` bytes and every bit
    // pattern is a valid `FlowEvent` (integers and bytes only).
    let e: FlowEvent = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let reason = Reason::from_index(e.reason)
        .ok_or_else(|| BadEvent(format!("exit reason {} is unknown", e.reason)))?;
    let from =
        side_of(e.from, "source")?.ok_or_else(|| BadEvent("the source side is missing".into()))?;
    let to = side_of(e.to, "destination")?;
    let decapsulated = match e.decapsulated {
        0 => false,
        1 => true,
        other => return Err(BadEvent(format!("decapsulated flag {other}"))),
    };
    let observation = flow::observe(from, to, reason, decapsulated).ok_or_else(|| {
        BadEvent(format!(
            "{reason:?} from {from:?} to {to:?} makes no flow event"
        ))
    })?;
    let captured = usize::from(e.captured);
    if captured > FLOW_BYTES {
        return Err(BadEvent(format!(
            "{captured} bytes captured of at most {FLOW_BYTES}"
        )));
    }
    Ok(Event {
        ktime: e.ktime,
        ingress: e.ingress,
        egress: (e.egress != 0).then_some(e.egress),
        reason,
        decapsulated,
        observation,
        len: e.len,
        bytes: e.bytes[..captured].to_vec(),
    })
}

/// The reading end of the `FLOWS` ring buffer (one per datapath: records
/// are consumed as they are read). Its file descriptor turns readable
/// when events arrive.
pub struct FlowReader {
    ring: RingBuf<MapData>,
}

impl FlowReader {
    pub(crate) fn new(ring: RingBuf<MapData>) -> Self {
        FlowReader { ring }
    }

    /// Every event waiting, oldest first.
    pub fn drain(&mut self) -> Vec<Result<Event, BadEvent>> {
        let mut out = Vec::new();
        while let Some(record) = self.ring.next() {
            out.push(decode(&record));
        }
        out
    }
}

impl fmt::Debug for FlowReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowReader").finish_non_exhaustive()
    }
}

impl AsRawFd for FlowReader {
    fn as_raw_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }
}

impl AsFd for FlowReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ring.as_fd()
    }
}

/// Flow events sent and lost, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events written to the ring.
    pub sent: u64,
    /// Events not written: over the rate limit.
    pub rate_limited: u64,
    /// Events not written: the ring was full.
    pub ring_full: u64,
}

impl From<[u64; counter::COUNT as usize]> for Counters {
    /// The counters in `FLOW_COUNTERS` order.
    fn from([sent, rate_limited, ring_full]: [u64; counter::COUNT as usize]) -> Self {
        Counters {
            sent,
            rate_limited,
            ring_full,
        }
    }
}

impl Counters {
    /// Events lost, whatever the cause.
    pub fn lost(&self) -> u64 {
        self.rate_limited + self.ring_full
    }
}

/// How many flow events each CPU may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Events per second.
    pub rate: u32,
    /// Events at once after a quiet spell.
    pub burst: u32,
}

impl Default for Limit {
    /// 10,000 events a second per CPU, bursts of 1,000: every flow of a
    /// node's pods in ordinary use, and a bounded load on the ring and the
    /// agent under a flood.
    fn default() -> Self {
        Limit {
            rate: 10_000,
            burst: 1_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexthop_offload_bpf_common::flow::FlowEvent;
    use router_core::flow::{Point, Verdict};

    fn record(e: &FlowEvent) -> Vec<u8> {
        // SAFETY: a plain-old-data struct viewed as its bytes.
        unsafe {
            std::slice::from_raw_parts((e as *const FlowEvent).cast::<u8>(), size_of::<FlowEvent>())
        }
        .to_vec()
    }

    fn event() -> FlowEvent {
        FlowEvent {
            ktime: 7,
            ingress: 3,
            egress: 4,
            reason: Reason::Forwarded as u8,
            from: side::ENDPOINT,
            to: side::NETWORK,
            decapsulated: 0,
            len: 40,
            captured: 2,
            pad: [0; 6],
            bytes: [0x45; FLOW_BYTES],
        }
    }

    #[test]
    fn a_record_decodes_to_router_cores_observation() {
        let e = decode(&record(&event())).unwrap();
        assert_eq!(e.egress, Some(4));
        assert_eq!(
            e.observation,
            Observation {
                point: Some(Point::ToNetwork),
                verdict: Verdict::Forwarded
            }
        );
        assert_eq!(e.bytes, vec![0x45, 0x45]);
    }

    #[test]
    fn bad_records_are_named_errors() {
        let short = decode(&[0; 10]).unwrap_err();
        assert!(short.0.contains("10 bytes"), "{short}");
        let mut e = event();
        e.reason = 250;
        assert!(decode(&record(&e)).unwrap_err().0.contains("250"));
        let mut e = event();
        e.to = 9;
        assert!(decode(&record(&e)).unwrap_err().0.contains("side 9"));
        let mut e = event();
        e.reason = Reason::ArpReply as u8;
        assert!(
            decode(&record(&e))
                .unwrap_err()
                .0
                .contains("makes no flow event")
        );
        let mut e = event();
        e.captured = 500;
        assert!(decode(&record(&e)).unwrap_err().0.contains("500 bytes"));
    }
}
