//! Connection tracking for service flows, with Cilium's per-state lifetimes
//! and table sizes; time is passed in.
//!
//! Owns one entry per connection, found from a packet of either direction
//! (the original tuple, client → frontend, or the reply tuple, backend →
//! client or NAT address), its TCP state as far as lifetimes need it, and
//! when it expires. It does not decide what an entry means (the datapath
//! stores its translation in the entry's value) nor allocate NAT ports.
//!
//! Lifetimes (`bpf/lib/conntrack.h` `ct_update_timeout` and the `ACTION_CLOSE`
//! branch of `__ct_lookup`; defaults of the agent flags in
//! `daemon/cmd/daemon_main.go`):
//!
//! ```text
//!  TCP, only SYNs seen so far ........ bpf-ct-timeout-regular-tcp-syn   60 s
//!  TCP, a non-SYN packet seen ........ bpf-ct-timeout-service-tcp     8000 s
//!  TCP, FIN/RST seen both ways ....... bpf-ct-timeout-regular-tcp-fin  10 s
//!  UDP, SCTP ......................... bpf-ct-timeout-service-any      60 s
//! ```
//!
//! Which lifetime a packet gives its connection is `lifetime`'s decision
//! (shared with the eBPF programs); this table keeps the deadlines. Sizes: `bpf-ct-global-tcp-max` 524288 and `bpf-ct-global-any-max` 262144
//! (`pkg/option/config.go`). Cilium's LRU maps evict silently when full;
//! here a full table is an outcome ([`Full`]) the caller counts and drops on,
//! as Cilium's `lb4_local` drops when `ct_create4` fails.

use alloc::collections::BTreeMap;
use smoltcp::time::{Duration, Instant};

use super::expiring::Expiring;
use super::lifetime::{Lifetime, State};
use super::{Protocol, Tuple};

pub use super::expiring::Full;
pub use super::lifetime::{Direction, TcpFlags};

/// How long an entry lives after its last packet, per state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP while only SYNs have been seen (`bpf-ct-timeout-regular-tcp-syn`).
    pub tcp_syn: Duration,
    /// TCP once a non-SYN packet was seen (`bpf-ct-timeout-service-tcp`).
    pub tcp_established: Duration,
    /// TCP once both directions sent FIN or RST (`bpf-ct-timeout-regular-tcp-fin`).
    pub tcp_closing: Duration,
    /// UDP and SCTP (`bpf-ct-timeout-service-any`).
    pub non_tcp: Duration,
}

impl Timeouts {
    /// Cilium's defaults: 60 s, 8000 s, 10 s, 60 s.
    pub const CILIUM: Timeouts = Timeouts {
        tcp_syn: Duration::from_secs(60),
        tcp_established: Duration::from_secs(8000),
        tcp_closing: Duration::from_secs(10),
        non_tcp: Duration::from_secs(60),
    };

    /// How long `lifetime` lasts.
    pub fn of(&self, lifetime: Lifetime) -> Duration {
        match lifetime {
            Lifetime::TcpSyn => self.tcp_syn,
            Lifetime::TcpEstablished => self.tcp_established,
            Lifetime::TcpClosing => self.tcp_closing,
            Lifetime::NonTcp => self.non_tcp,
        }
    }
}

/// How many entries each table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TCP connections (`bpf-ct-global-tcp-max`).
    pub tcp: usize,
    /// Other connections (`bpf-ct-global-any-max`).
    pub non_tcp: usize,
}

impl Limits {
    /// Cilium's defaults: 524288 TCP and 262144 other entries.
    pub const CILIUM: Limits = Limits {
        tcp: 2 << 18,
        non_tcp: 2 << 17,
    };
}

/// One tracked connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<V> {
    /// What the owner stores for it.
    pub value: V,
    /// Its tuple in the original direction (the key).
    pub original: Tuple,
    /// Its tuple in the reply direction.
    pub reply: Tuple,
    /// Its state, as far as its lifetime depends on it.
    pub state: State,
    /// When it was opened (a connection reopened with the same tuple is a
    /// new entry, opened later).
    pub opened: Instant,
}

impl<V> Entry<V> {
    /// Whether either direction is still open (Cilium's `ct_entry_alive`).
    pub fn alive(&self) -> bool {
        self.state.alive()
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a, V> {
    /// Which way the packet goes.
    pub direction: Direction,
    /// The entry, its lifetime already updated for this packet.
    pub entry: &'a mut Entry<V>,
}

/// The connection-tracking table: TCP and other protocols in separate,
/// separately bounded tables, as Cilium keeps them.
#[derive(Clone, Debug)]
pub struct Conntrack<V> {
    tcp: Expiring<Tuple, Entry<V>>,
    non_tcp: Expiring<Tuple, Entry<V>>,
    replies: BTreeMap<Tuple, Tuple>,
    timeouts: Timeouts,
}

impl<V> Conntrack<V> {
    /// An empty table.
    pub fn new(limits: Limits, timeouts: Timeouts) -> Self {
        Conntrack {
            tcp: Expiring::new(limits.tcp),
            non_tcp: Expiring::new(limits.non_tcp),
            replies: BTreeMap::new(),
            timeouts,
        }
    }

    /// Connections tracked (some may have expired and not been popped yet).
    pub fn len(&self) -> usize {
        self.tcp.len() + self.non_tcp.len()
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&mut self, protocol: Protocol) -> &mut Expiring<Tuple, Entry<V>> {
        match protocol {
            Protocol::Tcp => &mut self.tcp,
            Protocol::Udp | Protocol::Sctp => &mut self.non_tcp,
        }
    }

    /// The live connection a packet with `tuple` and `flags` belongs to, in
    /// either direction, with its state and lifetime updated for the packet.
    pub fn lookup(&mut self, now: Instant, tuple: &Tuple, flags: TcpFlags) -> Option<Found<'_, V>> {
        let (direction, key) = match self.replies.get(tuple) {
            Some(original) => (Direction::Reply, *original),
            None => (Direction::Original, *tuple),
        };
        let timeouts = self.timeouts;
        let table = self.table(key.protocol);
        let (_, entry) = table.get_mut(&key, now)?;
        let tcp = entry.original.protocol == Protocol::Tcp;
        if let Some(lifetime) = entry.state.packet(tcp, direction, flags) {
            table.set_deadline(&key, now + timeouts.of(lifetime));
        }
        let (_, entry) = table.get_mut(&key, now)?;
        Some(Found { direction, entry })
    }

    /// Track a new connection opened by a packet with `flags`; [`Full`] when
    /// its table is at capacity. An entry already under `original` is
    /// replaced.
    pub fn insert(
        &mut self,
        now: Instant,
        original: Tuple,
        reply: Tuple,
        value: V,
        flags: TcpFlags,
    ) -> Result<(), Full> {
        let (state, lifetime) = State::opened(original.protocol == Protocol::Tcp, flags);
        let entry = Entry {
            value,
            original,
            reply,
            state,
            opened: now,
        };
        let life = self.timeouts.of(lifetime);
        self.remove(&original);
        self.table(original.protocol)
            .insert(original, entry, now + life)?;
        self.replies.insert(reply, original);
        Ok(())
    }

    /// Whether a tracked connection has `reply` as its reply tuple (what
    /// makes a SNAT port taken).
    pub fn has_reply(&self, reply: &Tuple) -> bool {
        self.replies.contains_key(reply)
    }

    /// Every tracked connection and its deadline, TCP first, each table in
    /// tuple order (some may have expired and not been popped yet).
    pub fn entries(&self) -> impl Iterator<Item = (&Entry<V>, Instant)> {
        self.tcp.iter().chain(self.non_tcp.iter())
    }

    /// Stop tracking the connection whose original tuple is `original`.
    pub fn remove(&mut self, original: &Tuple) -> Option<Entry<V>> {
        let entry = self.table(original.protocol).remove(original)?;
        self.forget_reply(&entry);
        Some(entry)
    }

    /// Remove and return one connection whose lifetime ended at or before
    /// `now` (call until `None`).
    pub fn pop_expired(&mut self, now: Instant) -> Option<Entry<V>> {
        let (_, entry) = self
            .tcp
            .pop_expired(now)
            .or_else(|| self.non_tcp.pop_expired(now))?;
        self.forget_reply(&entry);
        Some(entry)
    }

    /// Drop the reply index of `entry`, unless a later connection with the
    /// same reply tuple took it over.
    fn forget_reply(&mut self, entry: &Entry<V>) {
        if self.replies.get(&entry.reply) == Some(&entry.original) {
            self.replies.remove(&entry.reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::IpAddr;

    fn at(s: i64) -> Instant {
        Instant::from_secs(s)
    }

    fn tuple(protocol: Protocol) -> Tuple {
        Tuple {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 96, 0, 10]),
            src_port: 40000,
            dst_port: 80,
            protocol,
        }
    }

    fn reply(protocol: Protocol) -> Tuple {
        Tuple {
            src: IpAddr::from([10, 244, 1, 5]),
            dst: IpAddr::from([10, 0, 0, 1]),
            src_port: 8080,
            dst_port: 40000,
            protocol,
        }
    }

    fn table() -> Conntrack<u32> {
        Conntrack::new(Limits::CILIUM, Timeouts::CILIUM)
    }

    /// Whether the connection is still there at `t` (looked up with no flags,
    /// which itself refreshes a live TCP entry, so only ask once per case).
    fn live_at(ct: &mut Conntrack<u32>, t: i64, p: Protocol) -> bool {
        ct.lookup(at(t), &tuple(p), TcpFlags::NONE).is_some()
    }

    #[test]
    fn cilium_defaults() {
        assert_eq!(Limits::CILIUM.tcp, 524_288);
        assert_eq!(Limits::CILIUM.non_tcp, 262_144);
        assert_eq!(Timeouts::CILIUM.tcp_established, Duration::from_secs(8000));
    }

    #[test]
    fn syn_only_lives_60_seconds_then_established_8000() {
        let mut ct = table();
        ct.insert(
            at(0),
            tuple(Protocol::Tcp),
            reply(Protocol::Tcp),
            7,
            TcpFlags::SYN,
        )
        .unwrap();
        let mut probe = ct.clone();
        assert!(live_at(&mut probe, 59, Protocol::Tcp));
        let mut probe = ct.clone();
        assert!(
            !live_at(&mut probe, 60, Protocol::Tcp),
            "half-open expires at 60 s"
        );
        let found = ct
            .lookup(
                at(1),
                &reply(Protocol::Tcp),
                TcpFlags::SYN.with(TcpFlags::ACK),
            )
            .unwrap();
        assert_eq!(found.direction, Direction::Reply);
        assert_eq!(found.entry.value, 7);
        ct.lookup(at(2), &tuple(Protocol::Tcp), TcpFlags::ACK)
            .unwrap();
        let mut probe = ct.clone();
        assert!(live_at(&mut probe, 8001, Protocol::Tcp));
        assert!(!live_at(&mut ct, 8002, Protocol::Tcp));
    }

    #[test]
    fn fin_both_ways_closes_in_10_seconds_and_syn_reopens() {
        let mut ct = table();
        let (t, r) = (tuple(Protocol::Tcp), reply(Protocol::Tcp));
        ct.insert(at(0), t, r, 1, TcpFlags::SYN).unwrap();
        ct.lookup(at(0), &r, TcpFlags::SYN.with(TcpFlags::ACK))
            .unwrap();
        ct.lookup(at(1), &t, TcpFlags::FIN.with(TcpFlags::ACK))
            .unwrap();
        let found = ct
            .lookup(at(2), &r, TcpFlags::FIN.with(TcpFlags::ACK))
            .unwrap();
        assert!(!found.entry.alive());
        // The last ACK does not extend a closed connection.
        ct.lookup(at(3), &t, TcpFlags::ACK).unwrap();
        let mut probe = ct.clone();
        assert!(
            !live_at(&mut probe, 12, Protocol::Tcp),
            "closed at 2 s + 10 s"
        );
        let found = ct.lookup(at(5), &t, TcpFlags::SYN).unwrap();
        assert!(found.entry.alive());
        assert!(live_at(&mut ct, 60, Protocol::Tcp));
    }

    #[test]
    fn rst_before_the_handshake_closes_both_ways() {
        let mut ct = table();
        let (t, r) = (tuple(Protocol::Tcp), reply(Protocol::Tcp));
        ct.insert(at(0), t, r, 1, TcpFlags::SYN).unwrap();
        let found = ct
            .lookup(at(1), &r, TcpFlags::RST.with(TcpFlags::ACK))
            .unwrap();
        assert!(!found.entry.alive());
        assert!(!live_at(&mut ct, 11, Protocol::Tcp));
    }

    #[test]
    fn udp_lives_60_seconds_after_its_last_packet() {
        let mut ct = table();
        let (t, r) = (tuple(Protocol::Udp), reply(Protocol::Udp));
        ct.insert(at(0), t, r, 1, TcpFlags::NONE).unwrap();
        ct.lookup(at(50), &r, TcpFlags::NONE).unwrap();
        assert!(ct.pop_expired(at(109)).is_none());
        assert_eq!(ct.pop_expired(at(110)).map(|e| e.original), Some(t));
        assert!(
            ct.lookup(at(110), &r, TcpFlags::NONE).is_none(),
            "the reply index goes too"
        );
        assert!(ct.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_connections() {
        let mut ct = Conntrack::new(Limits { tcp: 1, non_tcp: 1 }, Timeouts::CILIUM);
        let t = tuple(Protocol::Tcp);
        ct.insert(at(0), t, reply(Protocol::Tcp), 1, TcpFlags::SYN)
            .unwrap();
        let other = Tuple {
            src_port: 40001,
            ..t
        };
        let other_reply = Tuple {
            dst_port: 40001,
            ..reply(Protocol::Tcp)
        };
        assert_eq!(
            ct.insert(at(0), other, other_reply, 2, TcpFlags::SYN),
            Err(Full)
        );
        assert!(ct.lookup(at(0), &other_reply, TcpFlags::NONE).is_none());
        ct.insert(
            at(0),
            tuple(Protocol::Udp),
            reply(Protocol::Udp),
            3,
            TcpFlags::NONE,
        )
        .unwrap();
        assert_eq!(ct.pop_expired(at(60)).map(|e| e.value), Some(1));
        assert_eq!(
            ct.insert(at(60), other, other_reply, 2, TcpFlags::SYN),
            Ok(())
        );
    }
}
