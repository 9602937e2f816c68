//! The real-time tap bridge: `nexthop-sim run LAB --tap HOST:PORT=TAPNAME` attaches a topology
//! interface to a Linux tap device, so real hosts and daemons exchange frames with simulated ones.
//!
//! `HOST:PORT` is either a host's interface declared in `topology.yaml` with its address but
//! left out of `links:` (an unlinked interface), which [`attach`] links to an outside node
//! named after the tap device over a segment with the topology's default latency and MTU; or a
//! `bridge` node with any port name (`upper:frr`), whose switch gets the outside node as one
//! more port — so a real router (FRR in a namespace) can stand on a simulated segment. The
//! engine gets a bridge that moves frames between those outside nodes and the devices: frames
//! sent to the outside node are written to the tap; frames read from the tap enter the
//! simulation there.
//!
//! With a tap the lab runs in real time: virtual time follows the wall clock, so `wait: 10s`
//! takes ten seconds. `WallClock` is the only place in the simulator that reads the wall
//! clock; a run with a tap is therefore not deterministic (its trace hash differs from run to
//! run), and `--check-determinism` refuses it.

use std::fmt;
use std::io::ErrorKind;
use std::str::FromStr;

use smoltcp::time::{Duration, Instant};
use tun_tap::{Iface, Mode};

use crate::cluster::Cluster;
use crate::error::SimError;
use crate::lab::topology::{EndpointRef, NodeKind};
use crate::node::{Endpoint, NodeId};
use crate::outside::Outside;
use crate::segment::{SegmentId, SegmentKind, SegmentParams};

/// Longest Linux interface name (`IFNAMSIZ` less the terminating NUL).
const MAX_DEVICE_NAME: usize = 15;
/// How long the bridge sleeps between looks at the devices while nothing is due.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Largest frame read from a device.
const MAX_FRAME: usize = 65_536;
/// Name of an outside node's only port.
const TAP_PORT: &str = "tap";

/// One `--tap HOST:PORT=TAPNAME` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    /// The topology interface, `HOST:PORT`.
    pub interface: EndpointRef,
    /// The tap device; opened if it exists, created (until the run ends) if not.
    pub device: String,
}

impl FromStr for TapSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (endpoint, device) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not HOST:PORT=TAPNAME"))?;
        let interface =
            EndpointRef::parse(endpoint).ok_or_else(|| format!("{endpoint:?} is not HOST:PORT"))?;
        if device.is_empty()
            || device.len() > MAX_DEVICE_NAME
            || device.contains(['/', ':', '%'])
            || device.chars().any(char::is_whitespace)
        {
            return Err(format!(
                "{device:?} is not a tap device name (1 to {MAX_DEVICE_NAME} characters, \
                 no '/', ':', '%' or whitespace)"
            ));
        }
        Ok(TapSpec {
            interface,
            device: device.to_owned(),
        })
    }
}

impl TapSpec {
    /// The bridged interface as `HOST:PORT`.
    pub fn interface_name(&self) -> String {
        format!("{}:{}", self.interface.node, self.interface.interface)
    }
}

impl fmt::Display for TapSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.interface_name(), self.device)
    }
}

/// What a `--tap` attaches to.
enum Bridged {
    /// A bridge's switch segment.
    Switch(SegmentId),
    /// An unlinked host interface.
    Port((NodeId, router_core::PortId)),
}

/// Opens (or creates) each tap device, links each interface to it and switches the cluster's
/// engine to real time from its current virtual time.
pub fn attach(cluster: &mut Cluster, specs: &[TapSpec]) -> Result<(), String> {
    let mut ports = Vec::new();
    for spec in specs {
        let switch = cluster
            .lab
            .topology
            .nodes
            .get(&spec.interface.node)
            .filter(|n| n.kind == NodeKind::Bridge)
            .and_then(|_| cluster.engine.segment_named(&spec.interface.node));
        let bridged = match switch {
            Some(segment) => Bridged::Switch(segment),
            None => Bridged::Port(bridged_port(cluster, spec)?),
        };
        let device = Iface::without_packet_info(&spec.device, Mode::Tap)
            .and_then(|dev| dev.set_non_blocking().map(|()| dev))
            .map_err(|e| format!("--tap {spec}: cannot open tap device: {e}"))?;
        let endpoint = match bridged {
            Bridged::Switch(segment) => join_switch(cluster, spec, segment)?,
            Bridged::Port(port) => link(cluster, spec, port)?,
        };
        ports.push((endpoint, device));
    }
    let clock = WallClock::starting_at(cluster.engine.now());
    cluster.engine.connect_outside(Box::new(TapBridge {
        ports,
        clock,
        buffer: vec![0; MAX_FRAME],
    }));
    Ok(())
}

/// The host and its port that `spec` bridges, checked to be an unlinked, non-loopback interface.
fn bridged_port(
    cluster: &Cluster,
    spec: &TapSpec,
) -> Result<(NodeId, router_core::PortId), String> {
    let EndpointRef { node, interface } = &spec.interface;
    let err = |why: String| format!("--tap {spec}: {why}");
    let interface_spec = cluster
        .lab
        .topology
        .nodes
        .get(node)
        .filter(|n| n.kind != NodeKind::Bridge)
        .ok_or_else(|| err(format!("no host {node:?} in the topology")))?
        .interfaces
        .get(interface)
        .ok_or_else(|| err(format!("{node} has no interface {interface:?}")))?;
    if interface_spec.loopback {
        return Err(err("a loopback interface cannot be bridged".into()));
    }
    if cluster.interface(&spec.interface).is_some() {
        return Err(err(format!(
            "{node}:{interface} is linked in topology.yaml; a bridged interface must be unlinked"
        )));
    }
    let host = cluster
        .host_id(node)
        .ok_or_else(|| err(format!("no host {node:?}")))?;
    let port = cluster
        .engine
        .node(host)
        .host
        .port_id(interface)
        .ok_or_else(|| err(format!("{node} has no port {interface:?}")))?;
    Ok((host, port))
}

/// Links the bridged `(host, port)` to a new outside node named after the device, with the
/// topology's default latency and MTU; returns the outside node's port.
fn link(
    cluster: &mut Cluster,
    spec: &TapSpec,
    (host, host_port): (NodeId, router_core::PortId),
) -> Result<Endpoint, String> {
    let defaults = &cluster.lab.topology.defaults;
    let params = SegmentParams {
        latency: defaults.latency.0,
        mtu: usize::from(defaults.mtu),
        ..SegmentParams::default()
    };
    let err = |e: SimError| format!("--tap {spec}: {e}");
    let engine = &mut cluster.engine;
    let outside = engine.add_outside_node(&spec.device).map_err(err)?;
    let segment = engine
        .add_segment(
            &format!("{}--{}", spec.interface_name(), spec.device),
            SegmentKind::Link,
            params,
        )
        .map_err(err)?;
    let port = engine
        .attach(segment, host, &spec.interface.interface)
        .map_err(err)?;
    engine.node_mut(host).attached(host_port, port);
    let tap_port = engine.attach(segment, outside, TAP_PORT).map_err(err)?;
    Ok(Endpoint {
        node: outside,
        port: tap_port,
    })
}

/// Adds an outside node named after the device as one more port of a bridge's switch.
fn join_switch(
    cluster: &mut Cluster,
    spec: &TapSpec,
    segment: SegmentId,
) -> Result<Endpoint, String> {
    let err = |e: SimError| format!("--tap {spec}: {e}");
    let engine = &mut cluster.engine;
    let outside = engine.add_outside_node(&spec.device).map_err(err)?;
    let port = engine.attach(segment, outside, TAP_PORT).map_err(err)?;
    Ok(Endpoint {
        node: outside,
        port,
    })
}

/// The wall clock read as virtual time: the only place the simulator reads the wall clock.
#[derive(Debug)]
struct WallClock {
    start: std::time::Instant,
    virtual_start: Instant,
}

impl WallClock {
    /// A clock that reads `virtual_start` now.
    fn starting_at(virtual_start: Instant) -> Self {
        WallClock {
            start: std::time::Instant::now(),
            virtual_start,
        }
    }

    /// The virtual time it is now on the wall clock.
    fn now(&self) -> Instant {
        let elapsed = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.virtual_start + Duration::from_micros(elapsed)
    }
}

/// Moves frames between outside nodes and tap devices, and paces the run on the wall clock.
#[derive(Debug)]
struct TapBridge {
    ports: Vec<(Endpoint, Iface)>,
    clock: WallClock,
    buffer: Vec<u8>,
}

impl TapBridge {
    /// Every frame waiting on any device, with the outside port it enters from.
    fn read_all(&mut self) -> Vec<(Endpoint, Vec<u8>)> {
        let mut frames = Vec::new();
        for (endpoint, device) in &self.ports {
            loop {
                match device.recv(&mut self.buffer) {
                    Ok(n) => frames.push((*endpoint, self.buffer[..n].to_vec())),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // WouldBlock: nothing more now. Any other error (the device went away)
                    // reads as silence, like an unplugged cable.
                    Err(_) => break,
                }
            }
        }
        frames
    }
}

impl Outside for TapBridge {
    fn send(&mut self, to: Endpoint, frame: Vec<u8>) {
        if let Some((_, device)) = self.ports.iter().find(|(e, _)| *e == to) {
            // A full queue or a device that is down drops the frame, as a real NIC would.
            let _ = device.send(&frame);
        }
    }

    fn wait(&mut self, now: Instant, until: Instant) -> (Instant, Vec<(Endpoint, Vec<u8>)>) {
        loop {
            let frames = self.read_all();
            let wall = self.clock.now();
            if !frames.is_empty() {
                return (wall.max(now).min(until), frames);
            }
            if wall >= until {
                return (until, frames);
            }
            let nap = (until - wall).min(POLL_INTERVAL);
            std::thread::sleep(std::time::Duration::from_micros(nap.total_micros()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{TapSpec, attach};
    use crate::EngineConfig;
    use crate::cluster::Cluster;
    use crate::lab::Lab;

    #[test]
    fn only_unlinked_host_interfaces_can_be_bridged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/native-routing");
        let lab = Lab::load(&dir).unwrap();
        let mut cluster = Cluster::build(lab, EngineConfig::new(1)).unwrap();
        for (spec, why) in [
            ("router:eth1=nhx", "is linked in topology.yaml"),
            ("router:loop1=nhx", "a loopback interface cannot be bridged"),
            ("router:eth9=nhx", "router has no interface \"eth9\""),
            ("nobody:eth0=nhx", "no host \"nobody\""),
        ] {
            let e = attach(&mut cluster, &[spec.parse().unwrap()]).unwrap_err();
            assert!(e.starts_with(&format!("--tap {spec}: ")), "{e}");
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn specs_parse_and_print_back() {
        let spec: TapSpec = "router:eth3=nhtap0".parse().unwrap();
        assert_eq!(spec.interface.node, "router");
        assert_eq!(spec.interface.interface, "eth3");
        assert_eq!(spec.device, "nhtap0");
        assert_eq!(spec.to_string(), "router:eth3=nhtap0");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (bad, why) in [
            ("router:eth3", "is not HOST:PORT=TAPNAME"),
            ("router=tap0", "is not HOST:PORT"),
            ("router:eth3=", "is not a tap device name"),
            (
                "router:eth3=a-very-long-tap-name",
                "is not a tap device name",
            ),
            ("router:eth3=tap%d", "is not a tap device name"),
        ] {
            let e = bad.parse::<TapSpec>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
