//! The world outside a simulation: what an engine's outside nodes stand for, and the clock a
//! real-time run follows.
//!
//! An *outside node* ([`Engine::add_outside_node`](crate::Engine::add_outside_node)) is a
//! segment endpoint that simulates nothing: frames delivered to it leave the simulation through
//! [`Outside::send`], and frames from the real world enter through [`Outside::wait`] as if the
//! outside node had sent them. Once an [`Outside`] is connected
//! ([`Engine::connect_outside`](crate::Engine::connect_outside)), the engine no longer jumps from
//! event to event: it asks the outside to wait until each event is due, so virtual time follows
//! whatever clock the outside keeps (the wall clock, for [`crate::tap`]). Such a run is only as
//! deterministic as the outside world.

use std::fmt;

use smoltcp::time::Instant;

use crate::node::Endpoint;

/// Real devices behind outside nodes, and the clock the run follows.
pub trait Outside: fmt::Debug {
    /// A frame the simulation delivered to the outside node's port `to`, to pass on now.
    fn send(&mut self, to: Endpoint, frame: Vec<u8>);

    /// Waits until virtual time `until` comes on this outside's clock, or until frames come in
    /// from outside, whichever is first. Returns the virtual time reached (from `now` to
    /// `until`; less than `until` only if frames came in) and the frames, each with the outside
    /// node's port that sends it into the simulation.
    fn wait(&mut self, now: Instant, until: Instant) -> (Instant, Vec<(Endpoint, Vec<u8>)>);
}
