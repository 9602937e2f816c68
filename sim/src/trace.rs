//! The run's trace: one record per frame (or copy) delivered or dropped, in event order, and a
//! hash over the records and the frame bytes.
//!
//! Two runs of the same lab with the same seed must produce the same [`TraceHash`]; the
//! determinism check compares exactly that. The hash covers each record's fields in a fixed
//! little-endian encoding followed by the frame's bytes, so it changes if any frame differs by a
//! single bit, arrives a microsecond later, or is dropped for another reason.

use std::fmt;

use router_core::hash::Fnv1a;
use smoltcp::time::Instant;

use crate::node::Endpoint;
use crate::segment::{DropReason, SegmentId};

/// What happened to a frame or one copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handed to the receiving node.
    Delivered,
    /// Not delivered, for this reason.
    Dropped(DropReason),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered => f.write_str("delivered"),
            Self::Dropped(reason) => write!(f, "dropped {reason}"),
        }
    }
}

/// One line of the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    /// When it was delivered, or when it was dropped.
    pub at: Instant,
    /// The segment the frame was sent on.
    pub segment: SegmentId,
    /// The sender.
    pub from: Endpoint,
    /// The receiver of this copy; `None` when the frame was dropped before reaching anyone.
    pub to: Option<Endpoint>,
    /// Frame length in bytes.
    pub len: usize,
    /// Delivered or dropped.
    pub outcome: Outcome,
}

/// The trace hash: FNV-1a 64 over every record and frame, printed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceHash(pub u64);

impl fmt::Display for TraceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The running hash over every record of a run and their count; the
/// records themselves, in the order the events happened, only when kept
/// ([`Trace::keeping_records`]): a long run delivers millions of frames.
#[derive(Debug, Clone)]
pub struct Trace {
    records: Option<Vec<TraceRecord>>,
    count: u64,
    hasher: Fnv1a,
}

impl Default for Trace {
    fn default() -> Self {
        Self {
            records: None,
            count: 0,
            hasher: Fnv1a::new(),
        }
    }
}

impl Trace {
    /// An empty trace that hashes and counts records without keeping them.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty trace that also keeps every record.
    pub fn keeping_records() -> Self {
        Self {
            records: Some(Vec::new()),
            ..Self::default()
        }
    }

    /// Appends `record` for `frame` (whose length must be `record.len`).
    pub(crate) fn record(&mut self, record: TraceRecord, frame: &[u8]) {
        debug_assert_eq!(record.len, frame.len());
        let h = &mut self.hasher;
        h.write(&record.at.total_micros().to_le_bytes());
        h.write(&(record.segment.0 as u64).to_le_bytes());
        write_endpoint(h, record.from);
        match record.to {
            None => h.write(&[0]),
            Some(to) => {
                h.write(&[1]);
                write_endpoint(h, to);
            }
        }
        h.write(&(record.len as u64).to_le_bytes());
        h.write(&[match record.outcome {
            Outcome::Delivered => 0,
            Outcome::Dropped(reason) => reason.code(),
        }]);
        h.write(frame);
        self.count += 1;
        if let Some(records) = &mut self.records {
            records.push(record);
        }
    }

    /// All records so far, oldest first (none unless kept).
    pub fn records(&self) -> &[TraceRecord] {
        self.records.as_deref().unwrap_or_default()
    }

    /// How many records there were, kept or not.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hash over all records so far.
    pub fn hash(&self) -> TraceHash {
        TraceHash(self.hasher.finish())
    }
}

fn write_endpoint(h: &mut Fnv1a, e: Endpoint) {
    h.write(&(e.node.0 as u64).to_le_bytes());
    h.write(&e.port.0.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use smoltcp::time::Instant;

    use super::{Outcome, Trace, TraceHash, TraceRecord};
    use crate::node::{Endpoint, NodeId, PortId};
    use crate::segment::{DropReason, SegmentId};

    fn record(at_us: i64, outcome: Outcome) -> TraceRecord {
        TraceRecord {
            at: Instant::from_micros(at_us),
            segment: SegmentId(0),
            from: Endpoint {
                node: NodeId(0),
                port: PortId(0),
            },
            to: Some(Endpoint {
                node: NodeId(1),
                port: PortId(0),
            }),
            len: 3,
            outcome,
        }
    }

    fn hash_of(records: &[(TraceRecord, [u8; 3])]) -> TraceHash {
        let mut t = Trace::keeping_records();
        for (r, f) in records {
            t.record(*r, f);
        }
        t.hash()
    }

    #[test]
    fn hash_depends_on_time_outcome_and_bytes() {
        let base = hash_of(&[(record(5, Outcome::Delivered), [1, 2, 3])]);
        assert_eq!(base, hash_of(&[(record(5, Outcome::Delivered), [1, 2, 3])]));
        assert_ne!(base, hash_of(&[(record(6, Outcome::Delivered), [1, 2, 3])]));
        assert_ne!(base, hash_of(&[(record(5, Outcome::Delivered), [1, 2, 4])]));
        assert_ne!(
            base,
            hash_of(&[(record(5, Outcome::Dropped(DropReason::Loss)), [1, 2, 3])])
        );
        let mut no_receiver = record(5, Outcome::Delivered);
        no_receiver.to = None;
        assert_ne!(base, hash_of(&[(no_receiver, [1, 2, 3])]));
    }

    #[test]
    fn records_keep_order_and_hash_prints_as_hex() {
        let mut t = Trace::keeping_records();
        let mut lean = Trace::new();
        assert_eq!(t.hash().to_string(), "cbf29ce484222325");
        for trace in [&mut t, &mut lean] {
            trace.record(record(1, Outcome::Delivered), &[0; 3]);
            trace.record(record(2, Outcome::Dropped(DropReason::Mtu)), &[0; 3]);
        }
        let times: Vec<i64> = t.records().iter().map(|r| r.at.total_micros()).collect();
        assert_eq!(times, [1, 2]);
        // Not keeping records changes neither the hash nor the count.
        assert_eq!((lean.hash(), lean.count()), (t.hash(), 2));
        assert!(lean.records().is_empty());
        assert_eq!(t.hash().to_string().len(), 16);
        assert_eq!(
            Outcome::Dropped(DropReason::LinkDown).to_string(),
            "dropped link-down"
        );
    }
}
