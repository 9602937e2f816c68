//! Errors from building a simulation or running it; each message names the thing at fault.

use std::fmt;
use std::io;
use std::path::PathBuf;

use smoltcp::time::Instant;

/// Why a simulation could not be built or run.
#[derive(Debug)]
pub enum SimError {
    /// Two nodes, or two segments, with one name.
    DuplicateName {
        /// `"node"` or `"segment"`.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A name that cannot be used (empty, or unusable as a capture file name).
    BadName {
        /// `"node"`, `"segment"` or `"port"`.
        what: &'static str,
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Segment parameters out of range.
    BadParams {
        /// The segment.
        segment: String,
        /// What is wrong, from [`SegmentParams::validate`](crate::SegmentParams::validate).
        reason: String,
    },
    /// A third endpoint on a point-to-point link.
    LinkFull {
        /// The link.
        segment: String,
        /// The endpoint that did not fit, as `node:port`.
        endpoint: String,
    },
    /// A node transmitted on a port it does not have.
    UnknownPort {
        /// The node.
        node: String,
        /// The port number it used.
        port: u16,
    },
    /// The run processed its whole event budget without finishing: something loops.
    EventBudgetExhausted {
        /// The budget.
        budget: u64,
        /// Virtual time when it ran out.
        now: Instant,
        /// Events still pending.
        pending: usize,
        /// The run's seed, to reproduce it.
        seed: u64,
    },
    /// Writing a capture file failed.
    Capture {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateName { what, name } => write!(f, "{what} name {name:?} is used twice"),
            Self::BadName { what, name, reason } => {
                write!(f, "{what} name {name:?} is not usable: {reason}")
            }
            Self::BadParams { segment, reason } => write!(f, "segment {segment:?}: {reason}"),
            Self::LinkFull { segment, endpoint } => write!(
                f,
                "link {segment:?} already connects two endpoints; cannot attach {endpoint}"
            ),
            Self::UnknownPort { node, port } => write!(
                f,
                "node {node:?} transmitted on port {port}, which is not attached to any segment"
            ),
            Self::EventBudgetExhausted {
                budget,
                now,
                pending,
                seed,
            } => write!(
                f,
                "event budget of {budget} exhausted at t={now} with {pending} events pending \
                 (seed {seed}): a node re-arming itself without end or frames looping?"
            ),
            Self::Capture { path, source } => {
                write!(f, "cannot write capture {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Capture { source, .. } => Some(source),
            _ => None,
        }
    }
}
