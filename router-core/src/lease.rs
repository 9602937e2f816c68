//! A lease elector: at most one holder at a time for a named lease kept in a
//! shared store — a Kubernetes `coordination.k8s.io/v1` Lease, a key in
//! etcd, the simulator's API server — by the rules of client-go's leader
//! election, which Cilium's L2 announcements use.
//!
//! The store is reached only through plain values: the elector asks with a
//! [`Request`] (tagged with an id) and the runtime answers with a
//! [`Response`] carrying that id. Nothing here reads a clock or a store.
//!
//! ```text
//!            Get ──────────▶ none ──▶ Create(me) ──▶ Written ──▶ leading
//!             │
//!             └─▶ record held by another, seen changing within
//!                 its duration ──▶ follower: Get again after a jittered
//!                 retry period (retry × [1, 2.2), as client-go)
//!             └─▶ free, released or expired ──▶ Update(me, version) ──▶ …
//!
//!   leading: Update(me, last version) every renew interval; no renewal
//!            for renew-deadline since the last one was sent ──▶ stop leading
//! ```
//!
//! Expiry is judged as client-go judges it, by the follower's own clock: a
//! record expires `duration` after the follower first saw it in its current
//! version, never by the times written in it (the nodes' clocks may differ).
//! A leader stops at `sent + renew_deadline` of its last successful renewal,
//! and `renew_deadline < duration`, so no follower can take over while it
//! still announces.
//!
//! Two choices differ from client-go, both for the operator's sake:
//! - a leader renews every `max(retry_period, renew_deadline / 2)`, not every
//!   `retry_period`: fewer store writes per lease, and a failed renewal still
//!   has half the deadline left for retries;
//! - a leader renews with the version it last wrote, without reading first
//!   (a conflict sends it back to reading): one request per renewal.
//!
//! [`Input::Participate`]`(false)` steps down at once and writes the lease
//! free (holder empty, duration 1 s, as client-go releases), so a follower
//! takes over at its next retry instead of after the lease's duration.
//!
//! Owns: one lease's election state. Does not own: the store, what a leader
//! does (announcing), or which leases to run (the L2 announcer of `cilium`
//! decides that).

use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::time::{Duration, Instant};

use crate::hash::splitmix64;

/// The three durations of a lease (Helm's `l2announcements.leaseDuration`,
/// `leaseRenewDeadline`, `leaseRetryPeriod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a record stays valid after a follower saw it change.
    pub duration: Duration,
    /// How long a leader goes on without a successful renewal.
    pub renew_deadline: Duration,
    /// How often a follower tries, and a leader retries a failed renewal.
    pub retry_period: Duration,
}

/// client-go's jitter factor: a follower waits `retry × (1 + 1.2 × r)`,
/// `r` in `[0, 1)`.
const JITTER_PERCENT: u64 = 120;

impl Timings {
    /// Cilium's defaults: 15 s, 5 s, 2 s.
    pub const CILIUM: Timings = Timings {
        duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(5),
        retry_period: Duration::from_secs(2),
    };

    /// The timings corrected as Cilium corrects them (`leaseTimings`), with
    /// a warning for each correction: duration at least 1 s; a zero renew
    /// deadline is 1 s and a zero retry period 200 ms; a renew deadline not
    /// below the duration becomes half of it; a retry period whose jitter
    /// (× 1.2) reaches the renew deadline becomes half the deadline.
    pub fn corrected(self) -> (Timings, Vec<String>) {
        let mut t = self;
        let mut warnings = Vec::new();
        if t.duration < Duration::from_secs(1) {
            warnings.push(alloc::format!(
                "leaseDuration {} must be at least 1s, using 1s",
                t.duration
            ));
            t.duration = Duration::from_secs(1);
        }
        if t.renew_deadline == Duration::ZERO {
            warnings.push("leaseRenewDeadline must be above 0, using 1s".into());
            t.renew_deadline = Duration::from_secs(1);
        }
        if t.retry_period == Duration::ZERO {
            warnings.push("leaseRetryPeriod must be above 0, using 200ms".into());
            t.retry_period = Duration::from_millis(200);
        }
        if t.duration <= t.renew_deadline {
            warnings.push(alloc::format!(
                "leaseDuration {} must be greater than leaseRenewDeadline {}, using half of it",
                t.duration,
                t.renew_deadline
            ));
            t.renew_deadline = t.duration / 2;
        }
        if t.renew_deadline.total_micros() <= t.retry_period.total_micros() * JITTER_PERCENT / 100 {
            warnings.push(alloc::format!(
                "leaseRenewDeadline {} must be greater than leaseRetryPeriod {} × 1.2, using half the deadline",
                t.renew_deadline,
                t.retry_period
            ));
            t.retry_period = t.renew_deadline / 2;
        }
        (t, warnings)
    }

    /// How often a leader renews: `max(retry_period, renew_deadline / 2)`.
    pub fn renew_interval(&self) -> Duration {
        self.retry_period.max(self.renew_deadline / 2)
    }
}

/// What a lease holds (a Lease's `spec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// `holderIdentity`; empty when nobody holds it (released).
    pub holder: String,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// `acquireTime`, on the writer's clock.
    pub acquired: Instant,
    /// `renewTime`, on the writer's clock.
    pub renewed: Instant,
    /// `leaseTransitions`: how many times the holder changed.
    pub transitions: u32,
}

/// A record with the store's version of it (a `resourceVersion`, an etcd
/// `mod_revision`), which an update must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The record.
    pub record: Record,
    /// Its version in the store.
    pub version: String,
}

/// What the elector asks the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read the lease.
    Get,
    /// Create the lease; fails with [`Response::Conflict`] if it exists.
    Create(Record),
    /// Replace the lease if it still has `version`; else
    /// [`Response::Conflict`].
    Update {
        /// The new record.
        record: Record,
        /// The version it replaces.
        version: String,
    },
}

/// The store's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// The lease, or `None` if it does not exist (answers [`Request::Get`]).
    Got(Option<Versioned>),
    /// Created or updated; the new version.
    Written(String),
    /// It exists already (create) or has another version (update).
    Conflict,
    /// The store could not be reached or failed; what it said.
    Unavailable(String),
}

/// What the elector is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed: renew, retry or give up leadership as due.
    Tick,
    /// The store answered the request `id`.
    Response {
        /// The id of the request answered.
        id: u64,
        /// The answer.
        response: Response,
    },
    /// Take part in the election (`true`), or step down at once, release
    /// the lease if held, and stop trying (`false`).
    Participate(bool),
}

/// What the elector wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this request to the store and answer with its id.
    Request {
        /// Tag for the [`Input::Response`].
        id: u64,
        /// The request.
        request: Request,
    },
    /// Leadership changed: start (`true`) or stop (`false`) acting as leader.
    Leading(bool),
}

/// A request in flight.
#[derive(Clone, Debug)]
struct Pending {
    id: u64,
    sent: Instant,
    /// The record written, for writes.
    writes: Option<Record>,
}

/// One lease's election, for one identity.
#[derive(Clone, Debug)]
pub struct Elector {
    identity: String,
    timings: Timings,
    rng: u64,
    /// The record last read or written, and when this elector first saw it.
    observed: Option<(Versioned, Instant)>,
    /// The observed version is known to be current (our own last write):
    /// renew without reading first.
    own_version: bool,
    /// When the last successful write as holder was sent.
    renewed_at: Option<Instant>,
    leading: bool,
    participating: bool,
    /// Write the lease free once nothing is in flight.
    release: bool,
    pending: Option<Pending>,
    next_try: Instant,
    next_id: u64,
    writes: u64,
}

impl Elector {
    /// An elector for `identity` (the node's name) that starts trying at
    /// `now`. `seed` draws the followers' retry jitter.
    pub fn new(now: Instant, identity: &str, timings: Timings, seed: u64) -> Self {
        Elector {
            identity: identity.into(),
            timings,
            rng: seed,
            observed: None,
            own_version: false,
            renewed_at: None,
            leading: false,
            participating: true,
            release: false,
            pending: None,
            next_try: now,
            next_id: 0,
            writes: 0,
        }
    }

    /// Whether this elector leads.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// The holder of the record last seen (empty when released), if any.
    pub fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .map(|(v, _)| v.record.holder.as_str())
    }

    /// The record last seen.
    pub fn record(&self) -> Option<&Record> {
        self.observed.as_ref().map(|(v, _)| &v.record)
    }

    /// Neither taking part nor holding anything back: nothing left to do.
    pub fn is_idle(&self) -> bool {
        !self.participating && !self.release && self.pending.is_none()
    }

    /// Writes (creates and updates) sent so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// When [`Input::Tick`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut at_least = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some(p) = &self.pending {
            at_least(p.sent + self.timings.renew_deadline);
        } else if self.participating || self.release {
            at_least(self.next_try);
        }
        if let (true, Some(r)) = (self.leading, self.renewed_at) {
            at_least(r + self.timings.renew_deadline);
        }
        at
    }

    /// One input at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {}
            Input::Response { id, response } => {
                if self.pending.as_ref().is_some_and(|p| p.id == id) {
                    let pending = self.pending.take().expect("checked above");
                    self.answered(now, pending, response, &mut out);
                }
            }
            Input::Participate(on) => {
                if on && !self.participating {
                    self.participating = true;
                    self.release = false;
                    self.next_try = now;
                } else if !on && self.participating {
                    self.participating = false;
                    self.step_down(&mut out);
                    let claiming = self
                        .pending
                        .as_ref()
                        .and_then(|p| p.writes.as_ref())
                        .is_some_and(|r| !r.holder.is_empty());
                    self.release = self.holds() || claiming;
                    self.next_try = now;
                }
            }
        }
        self.tick(now, &mut out);
        out
    }

    fn holds(&self) -> bool {
        self.holder() == Some(self.identity.as_str())
    }

    fn step_down(&mut self, out: &mut Vec<Output>) {
        if self.leading {
            self.leading = false;
            out.push(Output::Leading(false));
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        if let (true, Some(r)) = (self.leading, self.renewed_at)
            && now >= r + self.timings.renew_deadline
        {
            self.step_down(out);
            self.own_version = false;
        }
        if let Some(p) = &self.pending {
            if now < p.sent + self.timings.renew_deadline {
                return;
            }
            // Never answered: as if the store were unreachable.
            self.pending = None;
            self.own_version = false;
            self.next_try = now;
        }
        if now < self.next_try || !(self.participating || self.release) {
            return;
        }
        match (&self.observed, self.own_version) {
            (Some((v, _)), true) => {
                let record = if self.participating {
                    self.claim(now)
                } else {
                    self.freed(now)
                };
                let version = v.version.clone();
                self.send(now, Request::Update { record, version }, out);
            }
            _ => self.send(now, Request::Get, out),
        }
    }

    fn send(&mut self, now: Instant, request: Request, out: &mut Vec<Output>) {
        let id = self.next_id;
        self.next_id += 1;
        let writes = match &request {
            Request::Get => None,
            Request::Create(r) | Request::Update { record: r, .. } => Some(r.clone()),
        };
        if writes.is_some() {
            self.writes += 1;
        }
        self.pending = Some(Pending {
            id,
            sent: now,
            writes,
        });
        out.push(Output::Request { id, request });
    }

    /// The record that makes this identity the holder: acquire time and
    /// transitions kept when it holds already, else a new term.
    fn claim(&self, now: Instant) -> Record {
        match &self.observed {
            Some((v, _)) if v.record.holder == self.identity => Record {
                renewed: now,
                duration: self.timings.duration,
                ..v.record.clone()
            },
            observed => Record {
                holder: self.identity.clone(),
                duration: self.timings.duration,
                acquired: now,
                renewed: now,
                transitions: observed
                    .as_ref()
                    .map_or(0, |(v, _)| v.record.transitions + 1),
            },
        }
    }

    /// The record that frees the lease (client-go's release: no holder,
    /// duration 1 s, transitions kept).
    fn freed(&self, now: Instant) -> Record {
        Record {
            holder: String::new(),
            duration: Duration::from_secs(1),
            acquired: now,
            renewed: now,
            transitions: self.record().map_or(0, |r| r.transitions),
        }
    }

    fn retry_later(&mut self, now: Instant) {
        let retry = self.timings.retry_period;
        self.next_try = if self.leading {
            now + retry
        } else {
            let r = splitmix64(&mut self.rng) >> 44;
            let extra = retry.total_micros() * JITTER_PERCENT / 100 * r / (1 << 20);
            now + retry + Duration::from_micros(extra)
        };
    }

    fn answered(
        &mut self,
        now: Instant,
        pending: Pending,
        response: Response,
        out: &mut Vec<Output>,
    ) {
        match response {
            Response::Got(None) => {
                self.observed = None;
                self.release = false;
                if self.participating {
                    let record = self.claim(now);
                    self.send(now, Request::Create(record), out);
                }
            }
            Response::Got(Some(v)) => {
                if self.observed.as_ref().is_none_or(|(o, _)| *o != v) {
                    self.observed = Some((v, now));
                }
                let (v, seen) = self.observed.as_ref().expect("set above");
                let version = v.version.clone();
                if !self.participating {
                    if self.holds() {
                        let record = self.freed(now);
                        self.send(now, Request::Update { record, version }, out);
                    } else {
                        self.release = false;
                    }
                } else if !v.record.holder.is_empty()
                    && v.record.holder != self.identity
                    && now < *seen + v.record.duration
                {
                    self.step_down(out);
                    self.retry_later(now);
                } else {
                    let record = self.claim(now);
                    self.send(now, Request::Update { record, version }, out);
                }
            }
            Response::Written(version) => {
                let record = pending
                    .writes
                    .expect("only writes are answered with Written");
                let holds = record.holder == self.identity;
                self.observed = Some((Versioned { record, version }, now));
                self.own_version = holds;
                if !holds {
                    // The release landed.
                    self.release = false;
                } else if self.participating {
                    self.renewed_at = Some(pending.sent);
                    if !self.leading {
                        self.leading = true;
                        out.push(Output::Leading(true));
                    }
                    self.next_try = pending.sent + self.timings.renew_interval();
                } else {
                    // Stepped down while this claim was in flight: free it now.
                    self.next_try = now;
                }
            }
            Response::Conflict | Response::Unavailable(_) => {
                self.own_version = false;
                self.retry_later(now);
            }
        }
    }
}

/// Leases in memory: the store's rules (versions, create-if-absent,
/// update-if-unchanged) for a runtime that keeps leases itself, as the
/// simulator's API server does.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    leases: alloc::collections::BTreeMap<String, Versioned>,
    revision: u64,
}

impl MemoryStore {
    /// Carry out `request` on the lease `name`.
    pub fn apply(&mut self, name: &str, request: Request) -> Response {
        match request {
            Request::Get => Response::Got(self.leases.get(name).cloned()),
            Request::Create(record) => {
                if self.leases.contains_key(name) {
                    return Response::Conflict;
                }
                self.write(name, record)
            }
            Request::Update { record, version } => {
                if self.leases.get(name).is_none_or(|v| v.version != version) {
                    return Response::Conflict;
                }
                self.write(name, record)
            }
        }
    }

    fn write(&mut self, name: &str, record: Record) -> Response {
        self.revision += 1;
        let version = alloc::format!("{}", self.revision);
        self.leases.insert(
            name.into(),
            Versioned {
                record,
                version: version.clone(),
            },
        );
        Response::Written(version)
    }

    /// Every lease, by name.
    pub fn leases(&self) -> impl Iterator<Item = (&str, &Versioned)> {
        self.leases.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Remove a lease (Cilium's agents delete released leases they no
    /// longer select).
    pub fn remove(&mut self, name: &str) -> Option<Versioned> {
        self.leases.remove(name)
    }
}

#[cfg(test)]
mod tests;
