//! The neighbour table: IP address → link-layer address, and when to ask.
//!
//! Owns each entry's state (incomplete, reachable, stale, failed), request
//! retries, a global request rate limit and expiry, driven by `(now, event)`.
//! It emits requests to send as values; building the ARP (or, later, NDP)
//! packet is the caller's job (see [`super::arp`]).
//!
//! ```text
//!   Resolve ──> INCOMPLETE ──(reply)──> REACHABLE ──(reachable_time)──> STALE ──(gc_time)──> gone
//!                  │   ^ retry every retrans_time    ^───(heard again)────┘
//!                  └─(max_probes unanswered)──> FAILED ──(failed_time)──> gone
//! ```

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::IpAddr;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

use crate::port::PortId;

/// Timers and limits of the table (defaults follow Linux's `neigh` sysctls).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long a confirmed entry stays reachable (`base_reachable_time`).
    pub reachable_time: Duration,
    /// How long an unconfirmed stale entry is kept before removal (`gc_stale_time`).
    pub gc_time: Duration,
    /// Interval between requests for one address (`retrans_time`).
    pub retrans_time: Duration,
    /// Unanswered requests before the entry fails (`mcast_solicit`).
    pub max_probes: u8,
    /// How long a failed entry answers "unreachable" without new requests.
    pub failed_time: Duration,
    /// Requests the whole table may send back to back.
    pub burst: u32,
    /// One more request is allowed per this interval once the burst is spent.
    pub request_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            reachable_time: Duration::from_secs(30),
            gc_time: Duration::from_secs(60),
            retrans_time: Duration::from_secs(1),
            max_probes: 3,
            failed_time: Duration::from_secs(3),
            burst: 10,
            request_interval: Duration::from_millis(100),
        }
    }
}

/// The state of one neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requested, no answer yet. `probes` requests sent; the next is due at `next`.
    Incomplete {
        /// Requests sent so far.
        probes: u8,
        /// When the next request (or failure) is due.
        next: Instant,
    },
    /// Confirmed recently; usable until `until`.
    Reachable {
        /// Link-layer address.
        mac: EthernetAddress,
        /// When it turns stale.
        until: Instant,
    },
    /// Not confirmed recently but still usable; removed at `until` unless heard again.
    Stale {
        /// Link-layer address.
        mac: EthernetAddress,
        /// When it is removed.
        until: Instant,
    },
    /// Configured, never expires and is never overwritten by what is heard (`ip neigh ... permanent`).
    Permanent {
        /// Link-layer address.
        mac: EthernetAddress,
    },
    /// No answer to `max_probes` requests; resolution fails fast until `until`.
    Failed {
        /// When the entry is removed.
        until: Instant,
    },
}

/// One neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The port the neighbour is on.
    pub port: PortId,
    /// Its state.
    pub state: State,
}

impl Entry {
    /// The link-layer address, if the entry can be used for forwarding.
    pub fn mac(&self) -> Option<EthernetAddress> {
        match self.state {
            State::Reachable { mac, .. } | State::Stale { mac, .. } | State::Permanent { mac } => {
                Some(mac)
            }
            _ => None,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Incomplete { next, .. } => Some(next),
            State::Reachable { until, .. }
            | State::Stale { until, .. }
            | State::Failed { until } => Some(until),
            State::Permanent { .. } => None,
        }
    }
}

/// An input to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A packet needs the link-layer address of `addr` on `port`.
    Resolve {
        /// The address to resolve.
        addr: IpAddr,
        /// The port it is reached through.
        port: PortId,
    },
    /// An ARP packet (or NDP message) told us `addr` is at `mac`.
    Heard {
        /// The sender's IP address.
        addr: IpAddr,
        /// The port it arrived on.
        port: PortId,
        /// The sender's link-layer address.
        mac: EthernetAddress,
        /// Whether to create an entry if none exists (a request addressed to us or
        /// a reply); gratuitous announcements only update existing entries.
        create: bool,
    },
    /// Time passed; process what is due.
    Tick,
}

/// What the table asks the caller to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send a request for `addr` on `port`.
    Request {
        /// The address to ask for.
        addr: IpAddr,
        /// The port to ask on.
        port: PortId,
    },
    /// `addr` resolved: packets waiting for it can go.
    Resolved {
        /// The resolved address.
        addr: IpAddr,
        /// Its link-layer address.
        mac: EthernetAddress,
    },
    /// `addr` did not answer: drop what waits for it (and send ICMP unreachable).
    Unreachable {
        /// The address that failed.
        addr: IpAddr,
    },
}

/// The neighbour table of one host.
#[derive(Clone, Debug)]
pub struct Table {
    config: Config,
    entries: BTreeMap<IpAddr, Entry>,
    tokens: u32,
    refill_at: Option<Instant>,
}

impl Table {
    /// An empty table.
    pub fn new(config: Config) -> Self {
        Table {
            config,
            entries: BTreeMap::new(),
            tokens: config.burst,
            refill_at: None,
        }
    }

    /// The entry for `addr`.
    pub fn get(&self, addr: IpAddr) -> Option<&Entry> {
        self.entries.get(&addr)
    }

    /// The link-layer address to forward to `addr`, if usable now.
    pub fn lookup(&self, addr: IpAddr) -> Option<EthernetAddress> {
        self.entries.get(&addr)?.mac()
    }

    /// All entries in address order (for `ip neigh`-style display).
    pub fn entries(&self) -> impl Iterator<Item = (&IpAddr, &Entry)> {
        self.entries.iter()
    }

    /// Add a permanent-looking entry (e.g. from configuration): reachable until `until`.
    pub fn insert_reachable(
        &mut self,
        addr: IpAddr,
        port: PortId,
        mac: EthernetAddress,
        until: Instant,
    ) {
        let state = State::Reachable { mac, until };
        self.entries.insert(addr, Entry { port, state });
    }

    /// Add a permanent entry (configuration, or an endpoint the agent knows).
    pub fn insert_permanent(&mut self, addr: IpAddr, port: PortId, mac: EthernetAddress) {
        let state = State::Permanent { mac };
        self.entries.insert(addr, Entry { port, state });
    }

    /// When [`Event::Tick`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        let entries = self.entries.values().filter_map(Entry::deadline).min();
        match (entries, self.refill_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Feed one event at `now`; outputs are appended to `out`.
    pub fn handle(&mut self, now: Instant, event: Event, out: &mut Vec<Output>) {
        self.refill(now);
        match event {
            Event::Resolve { addr, port } => self.resolve(now, addr, port, out),
            Event::Heard {
                addr,
                port,
                mac,
                create,
            } => self.heard(now, addr, port, mac, create, out),
            Event::Tick => {}
        }
        self.expire(now, out);
    }

    fn resolve(&mut self, now: Instant, addr: IpAddr, port: PortId, out: &mut Vec<Output>) {
        match self.entries.get(&addr).map(|e| e.state) {
            Some(State::Failed { .. }) => out.push(Output::Unreachable { addr }),
            Some(
                State::Reachable { mac, .. } | State::Stale { mac, .. } | State::Permanent { mac },
            ) => out.push(Output::Resolved { addr, mac }),
            Some(State::Incomplete { .. }) => {}
            None => {
                let state = State::Incomplete {
                    probes: 0,
                    next: now,
                };
                self.entries.insert(addr, Entry { port, state });
            }
        }
    }

    fn heard(
        &mut self,
        now: Instant,
        addr: IpAddr,
        port: PortId,
        mac: EthernetAddress,
        create: bool,
        out: &mut Vec<Output>,
    ) {
        let waiting = match self.entries.get(&addr) {
            None if !create => return,
            None => false,
            Some(e) if matches!(e.state, State::Permanent { .. }) => return,
            Some(e) => matches!(e.state, State::Incomplete { .. }),
        };
        let until = now + self.config.reachable_time;
        let state = State::Reachable { mac, until };
        self.entries.insert(addr, Entry { port, state });
        if waiting {
            out.push(Output::Resolved { addr, mac });
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Output>) {
        let due: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline().is_some_and(|d| d <= now))
            .map(|(&a, _)| a)
            .collect();
        for addr in due {
            let entry = self.entries[&addr];
            match entry.state {
                State::Incomplete { probes, .. } if probes >= self.config.max_probes => {
                    let until = now + self.config.failed_time;
                    self.set(addr, State::Failed { until });
                    out.push(Output::Unreachable { addr });
                }
                State::Incomplete { probes, .. } => {
                    if self.take_token(now) {
                        out.push(Output::Request {
                            addr,
                            port: entry.port,
                        });
                        let next = now + self.config.retrans_time;
                        self.set(
                            addr,
                            State::Incomplete {
                                probes: probes + 1,
                                next,
                            },
                        );
                    } else {
                        let next = self.refill_at.expect("no token implies a refill time");
                        self.set(addr, State::Incomplete { probes, next });
                    }
                }
                State::Reachable { mac, .. } => {
                    let until = now + self.config.gc_time;
                    self.set(addr, State::Stale { mac, until });
                }
                State::Stale { .. } | State::Failed { .. } => {
                    self.entries.remove(&addr);
                }
                State::Permanent { .. } => {}
            }
        }
    }

    fn set(&mut self, addr: IpAddr, state: State) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.state = state;
        }
    }

    fn refill(&mut self, now: Instant) {
        while let Some(at) = self.refill_at {
            if at > now {
                break;
            }
            self.tokens += 1;
            self.refill_at =
                (self.tokens < self.config.burst).then(|| at + self.config.request_interval);
        }
    }

    fn take_token(&mut self, now: Instant) -> bool {
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        if self.refill_at.is_none() {
            self.refill_at = Some(now + self.config.request_interval);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    fn run(t: &mut Table, ms: i64, e: Event) -> Vec<Output> {
        let mut out = Vec::new();
        t.handle(at(ms), e, &mut out);
        out
    }

    #[test]
    fn resolve_requests_then_reply_resolves() {
        let mut t = Table::new(Config::default());
        let addr = ip("192.168.10.1");
        let port = PortId(1);
        let out = run(&mut t, 0, Event::Resolve { addr, port });
        assert_eq!(out, [Output::Request { addr, port }]);
        let heard = Event::Heard {
            addr,
            port,
            mac: MAC,
            create: true,
        };
        assert_eq!(
            run(&mut t, 10, heard),
            [Output::Resolved { addr, mac: MAC }]
        );
        assert_eq!(t.lookup(addr), Some(MAC));
    }

    #[test]
    fn unanswered_requests_fail_then_expire() {
        let mut t = Table::new(Config::default());
        let addr = ip("10.0.0.9");
        let port = PortId(0);
        let mut requests = 0;
        let mut failed_at = None;
        run(&mut t, 0, Event::Resolve { addr, port });
        requests += 1;
        for ms in (100..=4_000).step_by(100) {
            for o in run(&mut t, ms, Event::Tick) {
                match o {
                    Output::Request { .. } => requests += 1,
                    Output::Unreachable { .. } => failed_at = failed_at.or(Some(ms)),
                    Output::Resolved { .. } => panic!("nobody answered"),
                }
            }
        }
        assert_eq!(requests, 3);
        assert_eq!(failed_at, Some(3000));
        let resolve = Event::Resolve { addr, port };
        assert_eq!(run(&mut t, 4_500, resolve), [Output::Unreachable { addr }]);
        run(&mut t, 6_000, Event::Tick);
        assert!(t.get(addr).is_none());
        assert_eq!(
            run(&mut t, 6_100, resolve),
            [Output::Request { addr, port }]
        );
    }

    #[test]
    fn reachable_turns_stale_then_goes() {
        let mut t = Table::new(Config::default());
        let addr = ip("10.0.0.2");
        let heard = Event::Heard {
            addr,
            port: PortId(0),
            mac: MAC,
            create: true,
        };
        run(&mut t, 0, heard);
        run(&mut t, 30_000, Event::Tick);
        assert!(matches!(t.get(addr).unwrap().state, State::Stale { .. }));
        assert_eq!(t.lookup(addr), Some(MAC));
        run(&mut t, 90_000, Event::Tick);
        assert!(t.get(addr).is_none());
    }

    #[test]
    fn gratuitous_updates_only_known_entries() {
        let mut t = Table::new(Config::default());
        let addr = ip("10.0.0.3");
        let g = |mac| Event::Heard {
            addr,
            port: PortId(0),
            mac,
            create: false,
        };
        run(&mut t, 0, g(MAC));
        assert!(t.get(addr).is_none());
        t.insert_reachable(addr, PortId(0), MAC, at(1_000_000));
        let other = EthernetAddress([2, 0, 0, 0, 0, 2]);
        run(&mut t, 1, g(other));
        assert_eq!(t.lookup(addr), Some(other));
    }

    #[test]
    fn permanent_entries_never_expire_nor_change() {
        let mut t = Table::new(Config::default());
        let addr = ip("172.20.0.10");
        t.insert_permanent(addr, PortId(3), MAC);
        assert_eq!(t.poll_at(), None);
        let other = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let heard = Event::Heard {
            addr,
            port: PortId(3),
            mac: other,
            create: true,
        };
        run(&mut t, 1_000_000, heard);
        assert_eq!(t.lookup(addr), Some(MAC));
        let resolve = Event::Resolve {
            addr,
            port: PortId(3),
        };
        assert_eq!(
            run(&mut t, 2_000_000, resolve),
            [Output::Resolved { addr, mac: MAC }]
        );
    }

    #[test]
    fn requests_respect_the_rate_limit() {
        let config = Config {
            burst: 2,
            ..Config::default()
        };
        let mut t = Table::new(config);
        let mut out = Vec::new();
        for i in 0..5u8 {
            let addr = IpAddr::from([10, 0, 0, i]);
            t.handle(
                at(0),
                Event::Resolve {
                    addr,
                    port: PortId(0),
                },
                &mut out,
            );
        }
        assert_eq!(out.len(), 2);
        assert_eq!(t.poll_at(), Some(at(100)));
        out.clear();
        t.handle(at(100), Event::Tick, &mut out);
        assert_eq!(out.len(), 1);
    }
}
