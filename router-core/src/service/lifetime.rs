//! How long a tracked connection lives: its TCP state as far as lifetimes
//! need it, folded packet by packet, and which of Cilium's lifetimes applies.
//!
//! Owns the transitions of Cilium's `__ct_lookup` (`bpf/lib/conntrack.h`)
//! and the choice `ct_update_timeout` makes, as plain values so the
//! reference conntrack (`conntrack`, which keeps entries and deadlines) and
//! the eBPF programs (which keep them in LRU maps) fold packets alike.
//! It does not keep entries nor know the lifetimes' lengths (those are
//! configuration: `conntrack::Timeouts` here, a map value in eBPF).
//!
//! ```text
//!  State (one byte)
//!   bit 0  a non-SYN packet was seen       bit 1  SYN seen, original direction
//!   bit 2  SYN seen, reply direction       bit 3  closing, original direction
//!   bit 4  closing, reply direction
//!
//!  TCP, only SYNs seen so far ........ Lifetime::TcpSyn
//!  TCP, a non-SYN packet seen ........ Lifetime::TcpEstablished
//!  TCP, FIN/RST seen both ways ....... Lifetime::TcpClosing (not extended)
//!  UDP, SCTP ......................... Lifetime::NonTcp
//! ```
//!
//! Every packet of a live connection restarts its lifetime; once both
//! directions are closing, packets no longer extend it, and a SYN reopens
//! it. An RST before both SYNs were seen closes both directions at once.

/// A TCP header's flags byte (`0` for other protocols).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No flags (also what non-TCP packets carry).
    pub const NONE: TcpFlags = TcpFlags(0);
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);

    /// Whether every flag of `other` is set.
    #[inline(always)]
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags and `other`'s.
    pub fn with(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
}

/// Which way a packet goes on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From the side that opened it (client → frontend).
    Original,
    /// The other way (backend → client).
    Reply,
}

/// Which of Cilium's lifetimes a connection gets after a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// TCP while only SYNs have been seen (`bpf-ct-timeout-regular-tcp-syn`).
    TcpSyn,
    /// TCP once a non-SYN packet was seen (`bpf-ct-timeout-service-tcp`).
    TcpEstablished,
    /// TCP once both directions sent FIN or RST (`bpf-ct-timeout-regular-tcp-fin`).
    TcpClosing,
    /// UDP and SCTP (`bpf-ct-timeout-service-any`).
    NonTcp,
}

const SEEN_NON_SYN: u8 = 1 << 0;
const SYN_SEEN: [u8; 2] = [1 << 1, 1 << 2];
const CLOSING: [u8; 2] = [1 << 3, 1 << 4];
const BOTH_CLOSING: u8 = CLOSING[0] | CLOSING[1];

/// A connection's state, as far as its lifetime depends on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct State(pub u8);

impl State {
    /// Whether either direction is still open (Cilium's `ct_entry_alive`).
    #[inline(always)]
    pub fn alive(self) -> bool {
        self.0 & BOTH_CLOSING != BOTH_CLOSING
    }

    /// The state of a connection a packet with `flags` opens, and its lifetime.
    #[inline(always)]
    pub fn opened(tcp: bool, flags: TcpFlags) -> (State, Lifetime) {
        let mut state = State::default();
        let lifetime = state
            .packet(tcp, Direction::Original, flags)
            .unwrap_or(Lifetime::TcpClosing);
        (state, lifetime)
    }

    /// Fold a packet going `direction` with `flags` into the state. Returns
    /// the connection's new lifetime, or `None` when the packet does not
    /// extend it (both directions closing, not reopened).
    #[inline(always)]
    pub fn packet(&mut self, tcp: bool, direction: Direction, flags: TcpFlags) -> Option<Lifetime> {
        if !tcp {
            return Some(Lifetime::NonTcp);
        }
        let reopened = self.track(direction, flags);
        self.lifetime(flags, reopened)
    }

    /// Whether a SYN going `direction` would reopen this closing connection.
    #[inline(always)]
    pub fn reopens(self, flags: TcpFlags) -> bool {
        let closes = flags.contains(TcpFlags::FIN) || flags.contains(TcpFlags::RST);
        !closes && flags.contains(TcpFlags::SYN) && self.0 & BOTH_CLOSING != 0
    }

    /// `__ct_lookup`'s flag handling; whether a SYN reopened the connection.
    #[inline(always)]
    fn track(&mut self, direction: Direction, flags: TcpFlags) -> bool {
        let d = match direction {
            Direction::Original => 0,
            Direction::Reply => 1,
        };
        let closes = flags.contains(TcpFlags::FIN) || flags.contains(TcpFlags::RST);
        if closes {
            let handshake = SYN_SEEN[0] | SYN_SEEN[1];
            if flags.contains(TcpFlags::RST) && self.0 & handshake != handshake {
                self.0 |= BOTH_CLOSING;
            } else {
                self.0 |= CLOSING[d];
            }
            return false;
        }
        let reopened = self.reopens(flags);
        if flags.contains(TcpFlags::SYN) {
            self.0 |= SYN_SEEN[d];
        }
        if reopened {
            self.0 &= !BOTH_CLOSING;
        }
        reopened
    }

    /// `ct_update_timeout`'s choice after a TCP packet with `flags`.
    #[inline(always)]
    fn lifetime(&mut self, flags: TcpFlags, reopened: bool) -> Option<Lifetime> {
        let closes = flags.contains(TcpFlags::FIN) || flags.contains(TcpFlags::RST);
        if !self.alive() {
            return closes.then_some(Lifetime::TcpClosing);
        }
        if closes && !reopened {
            // One direction closing: the connection stays up; the packet
            // still counts as activity.
            self.0 |= SEEN_NON_SYN;
            return Some(Lifetime::TcpEstablished);
        }
        if !flags.contains(TcpFlags::SYN) {
            self.0 |= SEEN_NON_SYN;
        }
        Some(if self.0 & SEEN_NON_SYN != 0 {
            Lifetime::TcpEstablished
        } else {
            Lifetime::TcpSyn
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN_ACK: TcpFlags = TcpFlags(0x12);
    const FIN_ACK: TcpFlags = TcpFlags(0x11);

    #[test]
    fn a_handshake_goes_from_syn_to_established() {
        let (mut s, life) = State::opened(true, TcpFlags::SYN);
        assert_eq!(life, Lifetime::TcpSyn);
        assert_eq!(
            s.packet(true, Direction::Reply, SYN_ACK),
            Some(Lifetime::TcpSyn)
        );
        assert_eq!(
            s.packet(true, Direction::Original, TcpFlags::ACK),
            Some(Lifetime::TcpEstablished)
        );
    }

    #[test]
    fn fin_both_ways_closes_and_a_syn_reopens() {
        let (mut s, _) = State::opened(true, TcpFlags::SYN);
        s.packet(true, Direction::Reply, SYN_ACK);
        s.packet(true, Direction::Original, FIN_ACK);
        assert!(s.alive());
        assert_eq!(
            s.packet(true, Direction::Reply, FIN_ACK),
            Some(Lifetime::TcpClosing)
        );
        assert!(!s.alive());
        assert_eq!(s.packet(true, Direction::Original, TcpFlags::ACK), None);
        assert!(s.reopens(TcpFlags::SYN));
        assert_eq!(
            s.packet(true, Direction::Original, TcpFlags::SYN),
            Some(Lifetime::TcpEstablished)
        );
        assert!(s.alive());
    }

    #[test]
    fn rst_before_the_handshake_closes_both_ways() {
        let (mut s, _) = State::opened(true, TcpFlags::SYN);
        assert_eq!(
            s.packet(true, Direction::Reply, TcpFlags(0x14)),
            Some(Lifetime::TcpClosing)
        );
        assert!(!s.alive());
    }

    #[test]
    fn other_protocols_always_get_the_non_tcp_lifetime() {
        let (mut s, life) = State::opened(false, TcpFlags::NONE);
        assert_eq!(life, Lifetime::NonTcp);
        assert_eq!(
            s.packet(false, Direction::Reply, TcpFlags::RST),
            Some(Lifetime::NonTcp)
        );
        assert!(s.alive());
    }
}
