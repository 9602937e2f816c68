//! Test-only nodes and frame builders for exercising segments and the engine end to end.

use std::collections::VecDeque;

use smoltcp::time::Instant;

use crate::node::{Node, Poll, PortId};

/// A locally administered unicast MAC ending in `n`.
pub(crate) fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// An Ethernet frame from `src` to `dst` (EtherType 0x88b5, local experimental) with `payload`
/// bytes after the header, the first of which is `tag`.
pub(crate) fn frame(dst: [u8; 6], src: [u8; 6], payload: usize, tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(14 + payload, 0);
    if payload > 0 {
        f[14] = tag;
    }
    f
}

/// A scripted node: sends frames at given times, optionally answers each frame it receives with
/// one to the sender's MAC, and records what it received and when it was polled.
#[derive(Debug, Default)]
pub(crate) struct Probe {
    /// This node's MAC, the source of its replies.
    pub(crate) mac: [u8; 6],
    /// Frames to send, by time (must be sorted).
    pub(crate) script: VecDeque<(Instant, PortId, Vec<u8>)>,
    /// Reply to every received frame on the port it came in on.
    pub(crate) reflect: bool,
    /// Drop the rest of the script when a frame arrives (to observe wake-up cancellation).
    pub(crate) forget_script_on_receive: bool,
    /// Ask to be polled again immediately, forever (a runaway node).
    pub(crate) spin: bool,
    /// What arrived: time, port, frame.
    pub(crate) received: Vec<(Instant, PortId, Vec<u8>)>,
    /// When the node was polled.
    pub(crate) polls: Vec<Instant>,
    /// Replies waiting for the next poll.
    pub(crate) replies: Vec<(PortId, Vec<u8>)>,
}

impl Probe {
    /// A node that sends `script` and ignores what it receives.
    pub(crate) fn sender(mac: [u8; 6], script: Vec<(Instant, PortId, Vec<u8>)>) -> Self {
        Self {
            mac,
            script: script.into(),
            ..Self::default()
        }
    }

    /// A node that answers every frame.
    pub(crate) fn reflector(mac: [u8; 6]) -> Self {
        Self {
            mac,
            reflect: true,
            ..Self::default()
        }
    }

    /// When frames arrived, as microseconds.
    pub(crate) fn arrival_micros(&self) -> Vec<i64> {
        self.received
            .iter()
            .map(|(at, _, _)| at.total_micros())
            .collect()
    }
}

impl Node for Probe {
    fn receive(&mut self, now: Instant, port: PortId, frame: Vec<u8>) {
        if self.reflect {
            let mut reply = frame.clone();
            reply.copy_within(6..12, 0);
            reply[6..12].copy_from_slice(&self.mac);
            self.replies.push((port, reply));
        }
        if self.forget_script_on_receive {
            self.script.clear();
        }
        self.received.push((now, port, frame));
    }

    fn poll(&mut self, now: Instant) -> Poll {
        self.polls.push(now);
        let mut transmit = std::mem::take(&mut self.replies);
        while self.script.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, port, frame)) = self.script.pop_front() {
                transmit.push((port, frame));
            }
        }
        let wake_at = if self.spin {
            Some(now)
        } else {
            self.script.front().map(|(at, _, _)| *at)
        };
        Poll { transmit, wake_at }
    }
}
