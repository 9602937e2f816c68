//! Virtual time: the current instant and the agenda of events still to happen.
//!
//! Time starts at zero and moves only forward, and only when the engine takes the next event or
//! runs to a deadline; nothing here reads the wall clock. Events due at the same instant come out
//! in the order they were scheduled (a sequence number breaks ties), so a run never depends on
//! heap or hash order. What an event *means* is the engine's business: the clock stores any `E`.

use std::collections::BTreeMap;

use smoltcp::time::Instant;

/// Names one scheduled event, for [`Clock::cancel`]. Unique for the life of a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerId {
    micros: i64,
    seq: u64,
}

impl TimerId {
    /// When the event is due.
    pub fn at(self) -> Instant {
        Instant::from_micros(self.micros)
    }
}

/// A virtual clock and its agenda of pending events, ordered by (time, sequence number).
#[derive(Debug)]
pub struct Clock<E> {
    now: Instant,
    next_seq: u64,
    agenda: BTreeMap<TimerId, E>,
}

impl<E> Default for Clock<E> {
    fn default() -> Self {
        Self {
            now: Instant::ZERO,
            next_seq: 0,
            agenda: BTreeMap::new(),
        }
    }
}

impl<E> Clock<E> {
    /// A clock at time zero with nothing scheduled.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current virtual time.
    pub const fn now(&self) -> Instant {
        self.now
    }

    /// Schedules `event` at `at`; a time in the past means now (after everything already due now).
    pub fn schedule(&mut self, at: Instant, event: E) -> TimerId {
        let id = TimerId {
            micros: at.max(self.now).total_micros(),
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.agenda.insert(id, event);
        id
    }

    /// Removes a pending event and returns it; `None` if it already ran or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<E> {
        self.agenda.remove(&id)
    }

    /// How many events are pending.
    pub fn pending(&self) -> usize {
        self.agenda.len()
    }

    /// When the earliest pending event is due, if any.
    pub fn next_due(&self) -> Option<Instant> {
        self.agenda.first_key_value().map(|(id, _)| id.at())
    }

    /// Takes the earliest pending event due no later than `until` (no limit if `None`) and moves
    /// the clock to its time.
    pub fn pop_next(&mut self, until: Option<Instant>) -> Option<E> {
        let due = self.next_due()?;
        if until.is_some_and(|limit| due > limit) {
            return None;
        }
        let (_, event) = self.agenda.pop_first()?;
        self.now = due;
        Some(event)
    }

    /// Moves the clock forward to `t` (never backward). Events due before `t` must have been taken
    /// first; they would otherwise run late, so this is checked in debug builds.
    pub fn advance_to(&mut self, t: Instant) {
        debug_assert!(
            self.next_due().is_none_or(|due| due >= t),
            "advancing the clock past a pending event"
        );
        self.now = self.now.max(t);
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::time::Instant;

    use super::Clock;

    fn ms(n: i64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn events_come_out_by_time_then_schedule_order() {
        let mut clock = Clock::new();
        clock.schedule(ms(5), "late");
        clock.schedule(ms(1), "first");
        clock.schedule(ms(1), "second");
        clock.schedule(ms(3), "middle");
        let mut order = Vec::new();
        while let Some(e) = clock.pop_next(None) {
            order.push((clock.now(), e));
        }
        assert_eq!(
            order,
            [
                (ms(1), "first"),
                (ms(1), "second"),
                (ms(3), "middle"),
                (ms(5), "late")
            ]
        );
    }

    #[test]
    fn cancel_removes_only_that_event() {
        let mut clock = Clock::new();
        let a = clock.schedule(ms(1), 'a');
        clock.schedule(ms(1), 'b');
        assert_eq!(a.at(), ms(1));
        assert_eq!(clock.cancel(a), Some('a'));
        assert_eq!(clock.cancel(a), None);
        assert_eq!(clock.pending(), 1);
        assert_eq!(clock.pop_next(None), Some('b'));
        assert_eq!(clock.pop_next(None), None);
    }

    #[test]
    fn pop_respects_the_deadline_and_advance_moves_forward_only() {
        let mut clock = Clock::new();
        clock.schedule(ms(10), ());
        assert_eq!(clock.pop_next(Some(ms(9))), None);
        assert_eq!(clock.now(), ms(0));
        clock.advance_to(ms(9));
        assert_eq!(clock.now(), ms(9));
        clock.advance_to(ms(2));
        assert_eq!(clock.now(), ms(9));
        assert_eq!(clock.pop_next(Some(ms(10))), Some(()));
        assert_eq!(clock.now(), ms(10));
    }

    #[test]
    fn past_times_run_now_after_what_is_already_due() {
        let mut clock = Clock::new();
        clock.schedule(ms(4), 1);
        clock.advance_to(ms(4));
        clock.schedule(ms(4), 2);
        let late = clock.schedule(ms(1), 3);
        assert_eq!(late.at(), ms(4));
        let order: Vec<i32> = std::iter::from_fn(|| clock.pop_next(None)).collect();
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(clock.now(), ms(4));
    }
}
