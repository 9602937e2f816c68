//! The agent's Hubble: the XDP datapath's flow events, named and kept for
//! `nexthop-agent observe`.
//!
//! Owns the buffer of the last flows (Hubble's event buffer, oldest dropped
//! first), turning a datapath event into a flow (its wall-clock time, its
//! direction, both ends named through the ipcache the controller keeps
//! current from the cluster's objects), and following: every new flow goes
//! to the `observe -f` connections. Which exits make an event is
//! router-core's (`flow::observe`, run by the eBPF programs and checked again
//! on decoding); filters and layouts are router-core's `flow::hubble`, the
//! ones the simulator's `observe` step prints with.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use nexthop_offload_bpf::flows::{Event, FlowReader};
use router_core::cilium::ipcache::IpCache;
use router_core::flow::direction::Directions;
use router_core::flow::hubble::{Filter, Observed};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;
use tracing::{info, warn};

/// Flows kept (Hubble's default `hubble-event-buffer-capacity`).
pub const DEFAULT_CAPACITY: usize = 4095;

/// Flows `observe` prints without `--last` or `--follow` (as `hubble observe`).
pub const DEFAULT_LAST: usize = 20;

/// Connections whose opener is remembered (for `->` and `<-`).
const DIRECTIONS: usize = 65536;

/// What the buffer holds, behind one lock.
#[derive(Debug)]
struct State {
    node: String,
    flows: VecDeque<Observed>,
    capacity: usize,
    directions: Directions,
    ipcache: IpCache,
    /// Events that were not well-formed (each logged).
    bad: u64,
}

/// The node's flow buffer, shared by the datapath's reader, the controller
/// (names) and the query socket.
#[derive(Clone, Debug)]
pub struct Hubble {
    state: Arc<Mutex<State>>,
    follow: broadcast::Sender<Observed>,
}

impl Hubble {
    /// An empty buffer of `capacity` flows for node `node`.
    pub fn new(node: &str, capacity: usize) -> Self {
        Hubble {
            state: Arc::new(Mutex::new(State {
                node: node.into(),
                flows: VecDeque::new(),
                capacity: capacity.max(1),
                directions: Directions::new(DIRECTIONS),
                ipcache: IpCache::new(),
                bad: 0,
            })),
            follow: broadcast::channel(1024).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data: go on with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Name flows from now on by `ipcache` (the cluster's objects changed).
    pub fn set_ipcache(&self, ipcache: IpCache) {
        let mut state = self.lock();
        if state.ipcache != ipcache {
            state.ipcache = ipcache;
            info!(
                pods = state.ipcache.pods(),
                nodes = state.ipcache.nodes(),
                "flows named by the cluster's endpoints"
            );
        }
    }

    /// Keep the flow of one datapath event, seen at CLOCK_MONOTONIC `ktime`
    /// when the wall clock was `epoch_offset` ahead of it (microseconds).
    pub fn record(&self, event: &Event, epoch_offset: i64) {
        let micros = epoch_offset + (event.ktime / 1000) as i64;
        let mut state = self.lock();
        let Some(flow) = state
            .directions
            .flow(micros, event.observation, &event.bytes)
        else {
            state.bad += 1;
            warn!(?event, "a flow event without an IP packet");
            return;
        };
        let observed = Observed {
            node: state.node.clone(),
            source: state.ipcache.endpoint(&state.node, flow.packet.src),
            destination: state.ipcache.endpoint(&state.node, flow.packet.dst),
            flow,
        };
        if state.flows.len() == state.capacity {
            state.flows.pop_front();
        }
        state.flows.push_back(observed.clone());
        drop(state);
        // Nobody following is no error.
        let _ = self.follow.send(observed);
    }

    /// Count an event that could not be decoded.
    pub fn bad_event(&self, why: &str) {
        self.lock().bad += 1;
        warn!("{why}");
    }

    /// The kept flows `filter` selects, printed; without `--last` (and
    /// not following) the last [`DEFAULT_LAST`], as `hubble observe`.
    pub fn lines(&self, filter: &Filter) -> Vec<String> {
        let mut filter = filter.clone();
        if filter.last.is_none() && !filter.follow {
            filter.last = Some(DEFAULT_LAST);
        }
        let flows: Vec<Observed> = self.lock().flows.iter().cloned().collect();
        print(&filter, &flows)
    }

    /// New flows from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Observed> {
        self.follow.subscribe()
    }

    /// Flows kept at most.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// Flows kept now, and events that could not be decoded.
    pub fn counts(&self) -> (usize, u64) {
        let state = self.lock();
        (state.flows.len(), state.bad)
    }
}

/// `flows` printed as `filter` asks (compact lines or JSON).
pub fn print(filter: &Filter, flows: &[Observed]) -> Vec<String> {
    filter.print(flows, |json| {
        serde_json::to_string(json).expect("a flow serializes to JSON")
    })
}

/// How far the wall clock is ahead of CLOCK_MONOTONIC, in microseconds.
fn epoch_offset() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let monotonic = ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000;
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    wall - monotonic
}

/// Read the datapath's flow events into `hubble` until the reader fails.
pub async fn read(reader: FlowReader, hubble: Hubble) -> std::io::Result<()> {
    // SAFETY: the reader owns the ring buffer's map and with it the file
    // descriptor, open and the same for as long as it lives (moved in here).
    let mut fd = unsafe { AsyncFd::register_with_interest(reader, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    loop {
        let mut ready = fd.readable_mut().await?;
        let offset = epoch_offset();
        for event in ready.get_inner_mut().drain() {
            match event {
                Ok(event) => hubble.record(&event, offset),
                Err(e) => hubble.bad_event(&e.to_string()),
            }
        }
        ready.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::datapath::Reason;
    use router_core::flow::{Observation, Point, Verdict};

    /// A UDP packet 10.0.0.1:1000 → 10.0.0.2:53.
    fn udp() -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        p[20..22].copy_from_slice(&1000u16.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p
    }

    fn event(ktime: u64, bytes: Vec<u8>) -> Event {
        Event {
            ktime,
            ingress: 2,
            egress: Some(3),
            reason: Reason::Forwarded,
            decapsulated: false,
            observation: Observation {
                point: Some(Point::ToNetwork),
                verdict: Verdict::Forwarded,
            },
            len: bytes.len() as u32,
            bytes,
        }
    }

    #[test]
    fn the_buffer_keeps_the_last_flows_named_by_the_ipcache() {
        let hubble = Hubble::new("k8s-ctr", 3);
        let mut ipcache = IpCache::new();
        ipcache.insert_node("10.0.0.2".parse().unwrap(), "k8s-w1");
        hubble.set_ipcache(ipcache);
        for i in 0..5 {
            hubble.record(&event(i * 1_000_000, udp()), 0);
        }
        hubble.record(&event(9, vec![1, 2, 3]), 0);
        assert_eq!(hubble.counts(), (3, 1), "three kept, one bad event");
        let all = Filter::parse(["--last", "10"]).unwrap();
        let lines = hubble.lines(&all);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("Jan  1 00:00:00.002"), "{}", lines[0]);
        assert!(
            lines[0].contains(
                "10.0.0.1:1000 (world) -> 10.0.0.2:53 (remote-node) to-network FORWARDED (UDP)"
            ),
            "{}",
            lines[0]
        );
        let json = Filter::parse(["-o", "json", "--last", "1"]).unwrap();
        let line = &hubble.lines(&json)[0];
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["flow"]["node_name"], "k8s-ctr", "{line}");
    }

    #[test]
    fn without_last_observe_prints_twenty_and_following_gets_new_flows() {
        let hubble = Hubble::new("n", DEFAULT_CAPACITY);
        let mut follow = hubble.subscribe();
        for i in 0..30 {
            hubble.record(&event(i, udp()), 0);
        }
        assert_eq!(hubble.lines(&Filter::default()).len(), DEFAULT_LAST);
        assert_eq!(follow.try_recv().unwrap().flow.micros, 0);
    }
}
