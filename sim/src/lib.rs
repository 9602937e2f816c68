//! The deterministic simulator (`nexthop-sim`): whole cluster labs on virtual time.
//!
//! The engine and its outputs:
//! - [`clock`]: virtual time and the event agenda, ordered by (time, sequence number);
//! - [`engine`]: the discrete-event loop that carries frames between [`Node`]s over segments,
//!   with an event budget against runaway loops;
//! - [`node`]: the sans-IO trait for whatever sits at a segment endpoint;
//! - [`segment`]: point-to-point links and learning switches with latency, loss, MTU, and up/down
//!   per segment and per port;
//! - [`rng`]: the seeded xoshiro256** generator, forked per subsystem by name;
//! - [`trace`]: every frame delivered or dropped, and the trace hash for determinism checks;
//! - [`pcap`]: classic pcap writing, one capture file per segment;
//! - [`error`]: build and run errors, each naming what is at fault;
//! - [`outside`] and [`tap`]: outside nodes, and the real-time bridge to Linux tap devices.
//!
//! The labs on top of it:
//! - [`lab`]: the lab directory (topology, Helm values, manifests, scenario), errors with file,
//!   line and key;
//! - [`cluster`]: hosts (netstack: router-core + smoltcp) for nodes, pods, routers and clients,
//!   Kubernetes state, the routes Cilium's agent installs, and the objects each node's
//!   router-core control plane reads;
//! - [`frr`]: the FRR-style router (`frr.conf`, `vtysh` outputs);
//! - [`run`] and [`show`]: scenario steps, expectations and the tables they print.
//!
//! Time is smoltcp's [`Instant`]/[`Duration`], re-exported here. Nothing in this crate reads the
//! wall clock or OS randomness, except the real-time tap bridge ([`tap`]), which is not
//! deterministic.
//!
//! A minimal run:
//!
//! ```
//! use nexthop_sim::{Duration, Engine, EngineConfig, Instant, Node, Poll, PortId};
//! use nexthop_sim::{SegmentKind, SegmentParams};
//!
//! /// Sends one broadcast frame at start and counts what it receives.
//! #[derive(Debug, Default)]
//! struct Hello { sent: bool, received: usize }
//!
//! impl Node for Hello {
//!     fn receive(&mut self, _now: Instant, _port: PortId, _frame: Vec<u8>) {
//!         self.received += 1;
//!     }
//!     fn poll(&mut self, _now: Instant) -> Poll {
//!         let mut poll = Poll::default();
//!         if !self.sent {
//!             self.sent = true;
//!             // Broadcast destination, our MAC, a local-experimental EtherType.
//!             let frame = [[0xff; 6], [2, 0, 0, 0, 0, 1]].concat();
//!             poll.transmit.push((PortId(0), [frame, vec![0x88, 0xb5]].concat()));
//!         }
//!         poll
//!     }
//! }
//!
//! let mut engine = Engine::new(EngineConfig::new(1));
//! let a = engine.add_node("a", Hello::default())?;
//! let b = engine.add_node("b", Hello::default())?;
//! let params = SegmentParams { latency: Duration::from_millis(2), ..SegmentParams::default() };
//! let link = engine.add_segment("a-b", SegmentKind::Link, params)?;
//! engine.attach(link, a, "eth0")?;
//! engine.attach(link, b, "eth0")?;
//! let stats = engine.run_until_quiescent()?;
//! assert_eq!(stats.now, Instant::from_millis(2));
//! assert_eq!(engine.node(b).received, 1);
//! println!("trace hash {}", engine.trace().hash());
//! # Ok::<(), nexthop_sim::SimError>(())
//! ```

pub mod capture;
pub mod clock;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod explore;
pub mod frr;
pub mod html;
pub mod kit;
pub mod lab;
pub mod node;
pub mod outside;
pub mod paths;
pub mod pcap;
pub mod rng;
pub mod run;
pub mod segment;
pub mod show;
pub mod tap;
#[cfg(test)]
mod testing;
pub mod trace;

pub use clock::{Clock, TimerId};
pub use engine::{DEFAULT_EVENT_BUDGET, Engine, EngineConfig, RunStats};
pub use error::SimError;
pub use node::{Endpoint, Node, NodeId, Poll, PortId};
pub use outside::Outside;
pub use pcap::PcapWriter;
pub use rng::SimRng;
pub use segment::{DropReason, SegmentId, SegmentKind, SegmentParams, SegmentStats};
pub use smoltcp::time::{Duration, Instant};
pub use trace::{Outcome, Trace, TraceHash, TraceRecord};
