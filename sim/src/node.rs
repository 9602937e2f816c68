//! What sits at a segment endpoint: the sans-IO [`Node`] trait and the ids naming nodes and ports.
//!
//! A node never sees the engine. It is handed frames and the current time, and answers with plain
//! values — frames to transmit and when it next wants to be polled — which the engine carries out.
//! That is the same `(now, input) -> outputs` shape as router-core and smoltcp, so a host built
//! from them plugs in without adapters that own time or sockets.

use std::fmt;

use smoltcp::time::Instant;

/// A node in one [`Engine`](crate::Engine); only the engine hands these out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub(crate) usize);

impl NodeId {
    /// Position of the node in the order nodes were added, from 0.
    pub const fn index(self) -> usize {
        self.0
    }
}

/// One of a node's ports. Ports are numbered per node from 0 in the order they were attached to
/// segments, so a node built with a list of interfaces knows `PortId(i)` is its `i`-th.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// A (node, port) pair: where a segment meets a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The node.
    pub node: NodeId,
    /// The node's port.
    pub port: PortId,
}

/// What a node wants done after it was polled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Poll {
    /// Ethernet frames to transmit, in order, each on one of the node's ports.
    pub transmit: Vec<(PortId, Vec<u8>)>,
    /// When to poll the node again if no frame arrives first; `None` means only on arrival.
    /// Each poll replaces the previous request (a node has one pending wake-up at most), and a
    /// time not after `now` means "again now, after what is already due".
    pub wake_at: Option<Instant>,
}

/// Anything attached to segments: a host, a router, a test probe.
///
/// The engine calls [`Node::poll`] once when the node is added, after every [`Node::receive`],
/// and when a requested wake-up time comes. Frames a node hands back go out at the time of the
/// poll that returned them.
pub trait Node {
    /// An Ethernet frame arrived on `port` at `now`.
    fn receive(&mut self, now: Instant, port: PortId, frame: Vec<u8>);

    /// Lets the node act at `now`: returns the frames to send and its next wake-up.
    fn poll(&mut self, now: Instant) -> Poll;
}
