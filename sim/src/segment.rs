//! L2 segments: a point-to-point link or a learning switch, with latency, loss, MTU and up/down.
//!
//! A segment decides the fate of each frame put on it — who receives a copy, which copies are
//! lost, or why the frame never made it onto the wire — and leaves timing and delivery to the
//! engine. A link hands every frame to the other end, whatever its destination MAC (filtering is
//! the receiving NIC's job). A switch learns source MACs per endpoint, forwards known unicast to
//! one endpoint, and floods broadcast, multicast and unknown unicast to every endpoint but the
//! sender. Loss is drawn per receiving copy from the segment's own forked RNG.
//!
//! Up/down exists for the whole segment and for each endpoint (a port, as in `ip link set eth1
//! down`). A down port on a link takes the whole link down, like a pulled cable; a down port on a
//! switch only disconnects that endpoint: the switch forgets MACs learned there and stops
//! forwarding to it. A frame in flight is lost if, when it would arrive, the segment or either
//! end's port is down.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use router_core::wire::layout::ETHERNET_HEADER_LEN;
use smoltcp::time::Duration;
use smoltcp::wire::EthernetAddress;

use crate::node::Endpoint;
use crate::rng::SimRng;

/// The largest MTU a segment accepts (so every frame fits a classic pcap record and an IP packet).
pub const MAX_MTU: usize = 65_535;

/// A segment in one [`Engine`](crate::Engine); only the engine hands these out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub(crate) usize);

impl SegmentId {
    /// Position of the segment in the order segments were added, from 0.
    pub const fn index(self) -> usize {
        self.0
    }
}

/// How a segment connects its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// A cable between exactly two endpoints.
    Link,
    /// A MAC-learning switch between any number of endpoints.
    Switch,
}

/// A segment's physical behaviour; change it mid-run to inject faults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentParams {
    /// One-way delay from transmission to delivery.
    pub latency: Duration,
    /// Probability in `[0, 1]` that a receiving copy is lost.
    pub loss: f64,
    /// Largest Ethernet payload (like `ip link ... mtu`): frames longer than
    /// [`ETHERNET_HEADER_LEN`]` + mtu` bytes are dropped.
    pub mtu: usize,
}

impl Default for SegmentParams {
    /// A 100 µs, lossless, 1500-byte-MTU segment.
    fn default() -> Self {
        Self {
            latency: Duration::from_micros(100),
            loss: 0.0,
            mtu: 1500,
        }
    }
}

impl SegmentParams {
    /// Checks the values make sense; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(format!(
                "loss must be a probability in [0, 1], got {}",
                self.loss
            ));
        }
        if self.mtu == 0 || self.mtu > MAX_MTU {
            return Err(format!(
                "mtu must be between 1 and {MAX_MTU}, got {}",
                self.mtu
            ));
        }
        Ok(())
    }
}

/// Why a frame, or one copy of it, was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// The segment or a port at either end was down when the frame was sent, or went down while
    /// it was in flight.
    LinkDown,
    /// Shorter than an Ethernet header.
    Malformed,
    /// Longer than the segment's MTU allows.
    Mtu,
    /// Lost in transit (the segment's loss probability).
    Loss,
    /// A switch filtered it: the destination was learned on the sender's own endpoint.
    Filtered,
    /// Nobody else is attached to the segment.
    NoReceiver,
}

impl DropReason {
    /// Short kebab-case name used in trace lines and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LinkDown => "link-down",
            Self::Malformed => "malformed",
            Self::Mtu => "mtu",
            Self::Loss => "loss",
            Self::Filtered => "filtered",
            Self::NoReceiver => "no-receiver",
        }
    }

    /// Stable numeric code, part of the trace hash encoding.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Self::LinkDown => 1,
            Self::Malformed => 2,
            Self::Mtu => 3,
            Self::Loss => 4,
            Self::Filtered => 5,
            Self::NoReceiver => 6,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of what happened to the frames sent on a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// Copies handed to a receiving node.
    pub delivered: u64,
    /// Frames or copies not delivered, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
}

impl SegmentStats {
    /// How many were dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(&reason).copied().unwrap_or(0)
    }
}

/// What became of one frame, or one copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Deliver a copy to this endpoint after the segment's latency.
    Deliver(Endpoint),
    /// The copy for this endpoint was lost in transit.
    Lost(Endpoint),
    /// The frame went to nobody, for this reason.
    Dropped(DropReason),
}

/// The segment's verdict on one transmitted frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transmission {
    /// Whether the frame made it onto the medium (and so into a capture of it).
    pub(crate) on_wire: bool,
    /// One entry per receiver, or a single [`Fate::Dropped`].
    pub(crate) fates: Vec<Fate>,
}

impl Transmission {
    fn rejected(reason: DropReason) -> Self {
        Self {
            on_wire: false,
            fates: vec![Fate::Dropped(reason)],
        }
    }
}

/// One segment's state: endpoints, parameters, up/down, the switch's learned MACs and its RNG.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) name: String,
    kind: SegmentKind,
    params: SegmentParams,
    up: bool,
    endpoints: Vec<Endpoint>,
    down_endpoints: BTreeSet<Endpoint>,
    fdb: BTreeMap<EthernetAddress, Endpoint>,
    rng: SimRng,
    pub(crate) stats: SegmentStats,
}

impl Segment {
    /// A segment that is up and has no endpoints; `params` must be valid.
    pub(crate) fn new(name: String, kind: SegmentKind, params: SegmentParams, rng: SimRng) -> Self {
        Self {
            name,
            kind,
            params,
            up: true,
            endpoints: Vec::new(),
            down_endpoints: BTreeSet::new(),
            fdb: BTreeMap::new(),
            rng,
            stats: SegmentStats::default(),
        }
    }

    /// Whether another endpoint may attach (a link takes two).
    pub(crate) fn is_full(&self) -> bool {
        self.kind == SegmentKind::Link && self.endpoints.len() >= 2
    }

    pub(crate) fn attach(&mut self, endpoint: Endpoint) {
        debug_assert!(!self.is_full(), "attaching to a full link");
        self.endpoints.push(endpoint);
    }

    pub(crate) const fn params(&self) -> &SegmentParams {
        &self.params
    }

    /// Replaces the parameters; `params` must be valid.
    pub(crate) fn set_params(&mut self, params: SegmentParams) {
        self.params = params;
    }

    pub(crate) const fn is_up(&self) -> bool {
        self.up
    }

    /// Brings the segment up or down; going down forgets learned MACs, as a bridge does.
    pub(crate) fn set_up(&mut self, up: bool) {
        self.up = up;
        if !up {
            self.fdb.clear();
        }
    }

    pub(crate) fn is_endpoint_up(&self, endpoint: Endpoint) -> bool {
        !self.down_endpoints.contains(&endpoint)
    }

    /// Brings one endpoint's port up or down; going down forgets the MACs learned on it.
    pub(crate) fn set_endpoint_up(&mut self, endpoint: Endpoint, up: bool) {
        if up {
            self.down_endpoints.remove(&endpoint);
        } else {
            self.down_endpoints.insert(endpoint);
            self.fdb.retain(|_, learned| *learned != endpoint);
        }
    }

    /// Whether a frame from `from` can still reach `to` now: the segment and both ports are up.
    pub(crate) fn carries(&self, from: Endpoint, to: Endpoint) -> bool {
        self.up && self.is_endpoint_up(from) && self.is_endpoint_up(to)
    }

    /// Decides the fate of `frame` sent by `from`, learning its source MAC on a switch.
    pub(crate) fn transmit(&mut self, from: Endpoint, frame: &[u8]) -> Transmission {
        let link_broken = self.kind == SegmentKind::Link && !self.down_endpoints.is_empty();
        if !self.up || !self.is_endpoint_up(from) || link_broken {
            return Transmission::rejected(DropReason::LinkDown);
        }
        if frame.len() < ETHERNET_HEADER_LEN {
            return Transmission::rejected(DropReason::Malformed);
        }
        if frame.len() > ETHERNET_HEADER_LEN + self.params.mtu {
            return Transmission::rejected(DropReason::Mtu);
        }
        let receivers: Vec<Endpoint> = match self.kind {
            SegmentKind::Link => self.others(from),
            SegmentKind::Switch => {
                let dst = EthernetAddress::from_bytes(&frame[0..6]);
                let src = EthernetAddress::from_bytes(&frame[6..12]);
                if src.is_unicast() {
                    self.fdb.insert(src, from);
                }
                // Only unicast sources are learned, so a hit means a unicast destination.
                match self.fdb.get(&dst) {
                    Some(&to) if to == from => {
                        return Transmission {
                            on_wire: true,
                            fates: vec![Fate::Dropped(DropReason::Filtered)],
                        };
                    }
                    Some(&to) => vec![to],
                    _ => self.others(from),
                }
            }
        };
        if receivers.is_empty() {
            return Transmission {
                on_wire: true,
                fates: vec![Fate::Dropped(DropReason::NoReceiver)],
            };
        }
        let fates = receivers
            .into_iter()
            .map(|to| {
                if self.rng.chance(self.params.loss) {
                    Fate::Lost(to)
                } else {
                    Fate::Deliver(to)
                }
            })
            .collect();
        Transmission {
            on_wire: true,
            fates,
        }
    }

    /// Every endpoint but `from` whose port is up.
    fn others(&self, from: Endpoint) -> Vec<Endpoint> {
        self.endpoints
            .iter()
            .copied()
            .filter(|&e| e != from && self.is_endpoint_up(e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::time::Duration;

    use super::{DropReason, Fate, Segment, SegmentKind, SegmentParams, Transmission};
    use crate::node::{Endpoint, NodeId, PortId};
    use crate::rng::SimRng;
    use crate::testing::{self, mac};

    fn ep(node: usize) -> Endpoint {
        Endpoint {
            node: NodeId(node),
            port: PortId(0),
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
        testing::frame(dst, src, payload, 0)
    }

    fn segment(kind: SegmentKind, n: usize) -> Segment {
        let mut s = Segment::new("s".into(), kind, SegmentParams::default(), SimRng::new(1));
        for i in 0..n {
            s.attach(ep(i));
        }
        s
    }

    fn delivered(t: &Transmission) -> Vec<Endpoint> {
        t.fates
            .iter()
            .filter_map(|f| match f {
                Fate::Deliver(e) => Some(*e),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn params_are_validated() {
        assert!(SegmentParams::default().validate().is_ok());
        let bad_loss = SegmentParams {
            loss: 1.5,
            ..SegmentParams::default()
        };
        assert!(bad_loss.validate().unwrap_err().contains("loss"));
        let nan_loss = SegmentParams {
            loss: f64::NAN,
            ..SegmentParams::default()
        };
        assert!(nan_loss.validate().is_err());
        let zero_mtu = SegmentParams {
            mtu: 0,
            ..SegmentParams::default()
        };
        assert!(zero_mtu.validate().unwrap_err().contains("mtu"));
        let latency = SegmentParams {
            latency: Duration::from_secs(1),
            ..SegmentParams::default()
        };
        assert!(latency.validate().is_ok());
    }

    #[test]
    fn link_delivers_to_the_other_end_whatever_the_mac() {
        let mut s = segment(SegmentKind::Link, 2);
        assert!(s.is_full());
        let t = s.transmit(ep(0), &frame(mac(9), mac(0), 46));
        assert!(t.on_wire);
        assert_eq!(delivered(&t), [ep(1)]);
        let t = s.transmit(ep(1), &frame([0xff; 6], mac(1), 46));
        assert_eq!(delivered(&t), [ep(0)]);
    }

    #[test]
    fn link_with_one_end_has_no_receiver() {
        let mut s = segment(SegmentKind::Link, 1);
        assert!(!s.is_full());
        let t = s.transmit(ep(0), &frame(mac(1), mac(0), 46));
        assert_eq!(t.fates, [Fate::Dropped(DropReason::NoReceiver)]);
    }

    #[test]
    fn mtu_bounds_the_payload_not_the_header() {
        let mut s = segment(SegmentKind::Link, 2);
        s.set_params(SegmentParams {
            mtu: 100,
            ..*s.params()
        });
        let fits = s.transmit(ep(0), &frame(mac(1), mac(0), 100));
        assert_eq!(delivered(&fits), [ep(1)]);
        let too_big = s.transmit(ep(0), &frame(mac(1), mac(0), 101));
        assert!(!too_big.on_wire);
        assert_eq!(too_big.fates, [Fate::Dropped(DropReason::Mtu)]);
    }

    #[test]
    fn runts_and_down_segments_drop() {
        let mut s = segment(SegmentKind::Switch, 2);
        let runt = s.transmit(ep(0), &[0u8; 13]);
        assert_eq!(runt, Transmission::rejected(DropReason::Malformed));
        s.set_up(false);
        assert!(!s.is_up());
        let down = s.transmit(ep(0), &frame(mac(1), mac(0), 46));
        assert_eq!(down, Transmission::rejected(DropReason::LinkDown));
    }

    #[test]
    fn switch_floods_unknown_then_forwards_learned() {
        let mut s = segment(SegmentKind::Switch, 3);
        assert!(!s.is_full());
        // 0 -> 1, unknown: flooded to 1 and 2; 0's MAC is learned.
        let t = s.transmit(ep(0), &frame(mac(1), mac(0), 46));
        assert_eq!(delivered(&t), [ep(1), ep(2)]);
        // 1 -> 0, known: only 0; 1's MAC is learned.
        let t = s.transmit(ep(1), &frame(mac(0), mac(1), 46));
        assert_eq!(delivered(&t), [ep(0)]);
        // 0 -> 1 now known too.
        let t = s.transmit(ep(0), &frame(mac(1), mac(0), 46));
        assert_eq!(delivered(&t), [ep(1)]);
        // Broadcast floods to all but the sender.
        let t = s.transmit(ep(2), &frame([0xff; 6], mac(2), 46));
        assert_eq!(delivered(&t), [ep(0), ep(1)]);
        // Destination learned on the sender's own endpoint: filtered.
        let t = s.transmit(ep(2), &frame(mac(2), mac(2), 46));
        assert_eq!(t.fates, [Fate::Dropped(DropReason::Filtered)]);
        assert!(t.on_wire);
    }

    #[test]
    fn switch_follows_a_moved_mac_and_forgets_on_down() {
        let mut s = segment(SegmentKind::Switch, 3);
        s.transmit(ep(0), &frame([0xff; 6], mac(7), 46));
        assert_eq!(
            delivered(&s.transmit(ep(1), &frame(mac(7), mac(1), 46))),
            [ep(0)]
        );
        // MAC 7 moves to endpoint 2 (e.g. a gratuitous ARP after failover).
        s.transmit(ep(2), &frame([0xff; 6], mac(7), 46));
        assert_eq!(
            delivered(&s.transmit(ep(1), &frame(mac(7), mac(1), 46))),
            [ep(2)]
        );
        s.set_up(false);
        s.set_up(true);
        assert_eq!(
            delivered(&s.transmit(ep(1), &frame(mac(7), mac(1), 46))),
            [ep(0), ep(2)]
        );
    }

    #[test]
    fn a_down_port_breaks_a_link_both_ways() {
        let mut s = segment(SegmentKind::Link, 2);
        s.set_endpoint_up(ep(1), false);
        assert!(!s.is_endpoint_up(ep(1)));
        assert!(!s.carries(ep(0), ep(1)));
        for from in [ep(0), ep(1)] {
            let t = s.transmit(from, &frame(mac(9), mac(0), 46));
            assert_eq!(t, Transmission::rejected(DropReason::LinkDown));
        }
        s.set_endpoint_up(ep(1), true);
        assert!(s.carries(ep(0), ep(1)));
        assert_eq!(
            delivered(&s.transmit(ep(0), &frame(mac(9), mac(0), 46))),
            [ep(1)]
        );
    }

    #[test]
    fn a_down_port_on_a_switch_disconnects_only_that_endpoint() {
        let mut s = segment(SegmentKind::Switch, 3);
        s.transmit(ep(2), &frame([0xff; 6], mac(2), 46));
        s.set_endpoint_up(ep(2), false);
        // MAC 2 was forgotten, and the flood skips the down port.
        assert_eq!(
            delivered(&s.transmit(ep(0), &frame(mac(2), mac(0), 46))),
            [ep(1)]
        );
        assert_eq!(
            s.transmit(ep(2), &frame(mac(0), mac(2), 46)),
            Transmission::rejected(DropReason::LinkDown)
        );
        assert!(s.carries(ep(0), ep(1)));
        assert!(!s.carries(ep(0), ep(2)));
        s.set_endpoint_up(ep(1), false);
        let t = s.transmit(ep(0), &frame([0xff; 6], mac(0), 46));
        assert_eq!(t.fates, [Fate::Dropped(DropReason::NoReceiver)]);
    }

    #[test]
    fn multicast_sources_are_not_learned() {
        let mut s = segment(SegmentKind::Switch, 3);
        let group = [0x01, 0, 0x5e, 0, 0, 1];
        s.transmit(ep(0), &frame(mac(1), group, 46));
        assert_eq!(
            delivered(&s.transmit(ep(1), &frame(group, mac(1), 46))),
            [ep(0), ep(2)]
        );
    }

    #[test]
    fn loss_is_per_copy_and_seeded() {
        let lossy = SegmentParams {
            loss: 0.5,
            ..SegmentParams::default()
        };
        let run = |seed| {
            let mut s = Segment::new("s".into(), SegmentKind::Switch, lossy, SimRng::new(seed));
            for i in 0..3 {
                s.attach(ep(i));
            }
            (0..64)
                .flat_map(|_| s.transmit(ep(0), &frame([0xff; 6], mac(0), 46)).fates)
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a.len(), 128);
        let lost = a.iter().filter(|f| matches!(f, Fate::Lost(_))).count();
        assert!((40..88).contains(&lost), "{lost}");
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
    }
}
