//! Connection collision detection (RFC 4271 §6.8), for whoever owns a
//! peer's connections.
//!
//! A [`Session`] drives one connection. When both speakers connect at once,
//! the owner (the transport's accept loop) runs a second session for the
//! inbound connection, alongside the first, and asks [`loser`] which one to
//! dump once the peer's BGP Identifier is known. The loser gets
//! [`Event::OpenCollisionDump`](super::Event::OpenCollisionDump) and is
//! dropped; if the inbound one wins, it takes over the peer with
//! [`Session::inherit`]. This keeps each session single-connection.

use core::net::Ipv4Addr;

use super::{Session, State};

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The peer connected to us.
    Inbound,
    /// We connected to the peer.
    Outbound,
}

/// What to do with a connection the peer opens to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Hand it to the existing session ([`super::Event::Connected`]); drop
    /// any outgoing attempt of ours still in progress.
    Accept,
    /// Close it: the session is Idle (not started) or already Established.
    Refuse,
    /// Both sides connected: run a second session on it and resolve with
    /// [`loser`].
    Contend,
}

/// What to do with an inbound connection for a peer whose session is in
/// `state`. RFC 4271 §6.8: a collision with an Established session is
/// resolved in its favour.
pub fn on_inbound(state: State) -> Arrival {
    match state {
        State::Idle | State::Established => Arrival::Refuse,
        State::Connect | State::Active => Arrival::Accept,
        State::OpenSent | State::OpenConfirm => Arrival::Contend,
    }
}

/// Which of two sessions with the same peer must be dumped, once either
/// has the peer's BGP Identifier (from its OPEN): the connection opened by
/// the speaker with the lower identifier is closed. `None` while neither
/// has received an OPEN.
pub fn loser(outbound: &Session, inbound: &Session) -> Option<Direction> {
    let remote = outbound
        .negotiated()
        .or(inbound.negotiated())
        .map(|n| n.peer_id)?;
    Some(resolve(outbound.config().router_id, remote))
}

/// The comparison of RFC 4271 §6.8 on the identifiers as 4-octet unsigned
/// integers: if ours is lower, our connection (outbound) goes.
pub fn resolve(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> Direction {
    if u32::from(local_id) < u32::from(remote_id) {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}
