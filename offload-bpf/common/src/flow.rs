//! Flow events: what the programs tell the loader about the packets whose
//! exits make a Hubble event (router-core's `flow::observe`), through the
//! `FLOWS` ring buffer.
//!
//! Owns the event's layout, the settings that switch events on and limit
//! their rate, and the per-CPU state of the limit. Which exits make an event
//! is router-core's; turning an event into a flow the loader's.
//!
//! ```text
//!  FLOW_SETTINGS[0] ──> on?, events per second, burst (per CPU)
//!  FLOW_STATE[0] (per CPU) ──> tokens, last refill, egress of the frame in flight
//!  FLOWS (ring buffer) ──> FlowEvent
//!  FLOW_COUNTERS[counter] (per CPU) ──> sent, rate-limited, ring full
//! ```
//!
//! One event (`FlowEvent`, 160 bytes):
//!
//! ```text
//!  0                   4                   8                  12                  16
//! +-------------------+-------------------+-------------------+-------------------+
//! |            ktime (ns, CLOCK_MONOTONIC)|  ingress ifindex  |  egress ifindex   |
//! +----+----+----+----+-------------------+---------+---------+-------------------+
//! |rsn |from| to |dcap|   packet length   |captured |  zero                       |
//! +----+----+----+----+-------------------+---------+-----------------------------+
//! |        the observed IP packet's first FLOW_BYTES (128) bytes ...              |
//! +-------------------------------------------------------------------------------+
//! ```

/// Bytes of the observed IP packet an event carries: the largest IPv4
/// header (60) or the IPv6 header (40), and the transport header.
pub const FLOW_BYTES: usize = 128;

/// Bytes of the `FLOWS` ring buffer (a power of two pages): ~1,700 events.
pub const RING_BYTES: u32 = 256 * 1024;

/// `FlowEvent::from` and `FlowEvent::to`: the side of the node a port leads to.
pub mod side {
    /// No side (`to` of an exit that sends nothing).
    pub const NONE: u8 = 0;
    /// A local pod's interface.
    pub const ENDPOINT: u8 = 1;
    /// A network device or a tunnel.
    pub const NETWORK: u8 = 2;
}

/// Indexes of the `FLOW_COUNTERS` map.
pub mod counter {
    /// Events written to the ring.
    pub const SENT: u32 = 0;
    /// Events not written: over the rate limit.
    pub const RATE_LIMITED: u32 = 1;
    /// Events not written: the ring was full (the reader is behind).
    pub const RING_FULL: u32 = 2;
    /// Entries of the map.
    pub const COUNT: u32 = 3;
}

/// One flow event: a packet's exit and the start of the packet it is about.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// When (`bpf_ktime_get_ns`: CLOCK_MONOTONIC).
    pub ktime: u64,
    /// The interface the frame arrived on.
    pub ingress: u32,
    /// The interface it leaves by (0: none).
    pub egress: u32,
    /// The exit (`router_core::datapath::Reason as u8`).
    pub reason: u8,
    /// Where the frame came from (one of [`side`]).
    pub from: u8,
    /// Where it goes (one of [`side`]).
    pub to: u8,
    /// 1 when the packet is the inner one of a decapsulated tunnel frame.
    pub decapsulated: u8,
    /// Length of the observed IP packet as it was seen.
    pub len: u32,
    /// Bytes of [`FlowEvent::bytes`] filled.
    pub captured: u16,
    /// Zero.
    pub pad: [u8; 6],
    /// The observed IP packet's first bytes (after an encapsulation, the
    /// inner packet's).
    pub bytes: [u8; FLOW_BYTES],
}

/// The one entry of `FLOW_SETTINGS`: flow events are off until the loader
/// switches them on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// 1: events on.
    pub enabled: u32,
    /// Events per second each CPU may send.
    pub rate: u32,
    /// Events a CPU may send at once after a quiet spell.
    pub burst: u32,
}

/// Per-CPU state of the flow events (entry 0 of `FLOW_STATE`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Credit of the rate limit, in events × 10⁹ (an event costs 10⁹).
    pub credit: u64,
    /// When the credit was last topped up (ns).
    pub refilled: u64,
    /// The interface the frame in flight was redirected to.
    pub egress: u32,
    /// Where the observed IP packet starts in the frame in flight, when it
    /// was encapsulated.
    pub inner_at: u32,
}

impl State {
    /// Top up the credit for the time since the last event and take one
    /// event's worth: whether the event may be sent.
    #[inline(always)]
    pub fn take(&mut self, now: u64, settings: &Settings) -> bool {
        const EVENT: u64 = 1_000_000_000;
        let cap = u64::from(settings.burst.max(1)) * EVENT;
        let elapsed = now.saturating_sub(self.refilled);
        // Past a second the bucket is full whatever the rate: no overflow.
        let added = if elapsed >= EVENT {
            cap
        } else {
            elapsed * u64::from(settings.rate)
        };
        self.credit = self.credit.saturating_add(added).min(cap);
        self.refilled = now;
        if self.credit < EVENT {
            return false;
        }
        self.credit -= EVENT;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, burst: u32) -> Settings {
        Settings {
            enabled: 1,
            rate,
            burst,
        }
    }

    #[test]
    fn a_quiet_cpu_sends_a_burst_then_the_rate() {
        let s = settings(1000, 5);
        let mut state = State::default();
        let now = 10_000_000_000;
        let sent = (0..10).filter(|_| state.take(now, &s)).count();
        assert_eq!(sent, 5, "the burst, then nothing at the same instant");
        // 1,000 per second: one more every millisecond.
        assert!(!state.take(now + 999_999, &s));
        assert!(state.take(now + 1_000_000, &s));
        assert!(!state.take(now + 1_000_001, &s));
    }

    #[test]
    fn a_long_quiet_spell_refills_only_to_the_burst() {
        let s = settings(u32::MAX, 3);
        let mut state = State::default();
        assert_eq!((0..10).filter(|_| state.take(u64::MAX / 2, &s)).count(), 3);
    }

    #[test]
    fn the_event_layout_has_no_implicit_padding() {
        assert_eq!(
            core::mem::size_of::<FlowEvent>(),
            8 + 4 + 4 + 4 + 4 + 2 + 6 + FLOW_BYTES
        );
        assert_eq!(core::mem::size_of::<State>(), 24);
    }
}
