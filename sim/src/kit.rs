//! A kit for property tests of your own network, in your own `cargo test`.
//!
//! Owns the small API a test needs: load a lab (or one you write in a
//! temporary directory), drive it with the scenario's own verbs, let virtual
//! time pass, and ask where packets go, what the FIBs hold and how BGP
//! stands. With the `proptest` feature, [`strategies`] draws prefixes and
//! fault schedules. Running steps is [`crate::run`]'s, the walks
//! [`crate::paths`]', faults [`crate::explore`]'s.
//!
//! ```no_run
//! use nexthop_sim::kit::Sim;
//! use nexthop_sim::paths::End;
//!
//! let mut sim = Sim::load("examples/labs/bgp-dsr", 1).unwrap();
//! sim.run_scenario();
//! sim.step("link: down k8s-w1:eth1").unwrap();
//! sim.step("wait: 30s").unwrap();
//! // The LoadBalancer address is still served from the router.
//! let lb = "172.16.1.1".parse().unwrap();
//! assert!(sim.paths("router", lb).iter().all(|p| p.end == End::Served));
//! ```

use std::net::IpAddr;
use std::path::Path as FsPath;

use ipnet::IpNet;
use router_core::cilium::status::PeerStatus;
use router_core::fib::NexthopKind;
use smoltcp::time::{Duration, Instant};

use crate::EngineConfig;
use crate::cluster::Cluster;
use crate::explore::Schedule;
use crate::lab::{Lab, Scenario};
use crate::paths::{self, Path};
use crate::run::{self, Report, StepReport};

/// A lab running on virtual time.
pub struct Sim {
    cluster: Cluster,
    seed: u64,
    events: u64,
    steps: Vec<StepReport>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("lab", &self.cluster.lab.topology.name)
            .field("seed", &self.seed)
            .field("now", &self.now())
            .field("steps", &self.steps.len())
            .finish()
    }
}

/// One route of a host's FIB.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The prefix.
    pub prefix: IpNet,
    /// Its nexthops (ECMP members).
    pub nexthops: Vec<NexthopKind>,
}

impl Sim {
    /// The lab in directory `dir`, built with `seed` (nothing run yet).
    pub fn load(dir: impl AsRef<FsPath>, seed: u64) -> Result<Sim, String> {
        let lab = Lab::load(dir.as_ref()).map_err(|e| e.to_string())?;
        Sim::new(lab, seed)
    }

    /// `lab`, built with `seed`.
    pub fn new(lab: Lab, seed: u64) -> Result<Sim, String> {
        let cluster = Cluster::build(lab, EngineConfig::new(seed))?;
        Ok(Sim {
            cluster,
            seed,
            events: 0,
            steps: Vec::new(),
        })
    }

    /// Run the lab's own scenario; its report.
    pub fn run_scenario(&mut self) -> Report {
        for step in self.cluster.lab.scenario.steps.clone() {
            let r = run::run_step(&mut self.cluster, &step, &mut self.events);
            self.steps.push(r);
        }
        self.report()
    }

    /// Run one step written as in `scenario.yaml`, e.g. `"link: down
    /// k8s-w1:eth1"`, `"wait: 5s"`, `"curl: router 172.16.1.1 --count 10"`,
    /// or a mapping with `expect:`; its report (whose `passed()` says whether
    /// its expectations held). A step that does not read is an error.
    pub fn step(&mut self, yaml: &str) -> Result<StepReport, String> {
        let text = format!("steps:\n  - {}\n", yaml.replace('\n', "\n    "));
        let scenario = Scenario::parse(FsPath::new("step"), &text).map_err(|e| e.to_string())?;
        let step = scenario.steps.into_iter().next().ok_or("no step")?;
        let r = run::run_step(&mut self.cluster, &step, &mut self.events);
        self.steps.push(r.clone());
        Ok(r)
    }

    /// Inject and heal the faults of `schedule` around the lab's scenario
    /// steps (as `explore` runs them), then let `quiet` pass; the report.
    pub fn run_with_faults(&mut self, schedule: &Schedule, quiet: Duration) -> Report {
        let steps = schedule.interleave(&self.cluster.lab.scenario.steps, quiet);
        for (step, _) in steps {
            let r = run::run_step(&mut self.cluster, &step, &mut self.events);
            self.steps.push(r);
        }
        self.report()
    }

    /// Let `by` pass.
    pub fn advance(&mut self, by: Duration) -> Result<(), String> {
        let until = self.cluster.engine.now() + by;
        self.events += self.cluster.run_until(until)?;
        Ok(())
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.cluster.engine.now()
    }

    /// Host `host`'s FIB, in prefix order; empty for an unknown host.
    pub fn routes(&self, host: &str) -> Vec<Route> {
        let Some(h) = self.cluster.host(host) else {
            return Vec::new();
        };
        let mut routes: Vec<Route> = (h.host.fib().routes())
            .map(|r| Route {
                prefix: r.prefix,
                nexthops: r.group.members().iter().map(|m| m.kind).collect(),
            })
            .collect();
        routes.sort();
        routes
    }

    /// Where a packet from host `from` to `dst` would go, one path per ECMP
    /// branch ([`paths::paths`]).
    pub fn paths(&self, from: &str, dst: IpAddr) -> Vec<Path> {
        paths::paths(&self.cluster, from, dst)
    }

    /// Every Cilium node's BGP peers (`cilium bgp peers`).
    pub fn bgp_peers(&self) -> Vec<PeerStatus> {
        self.cluster.bgp_peers()
    }

    /// The steps run so far, as a report.
    pub fn report(&self) -> Report {
        run::report(&self.cluster, self.seed, self.steps.clone(), self.events)
    }

    /// The cluster, for anything this kit does not ask directly.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The cluster, to change it directly.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// `proptest` strategies for your own properties.
#[cfg(feature = "proptest")]
pub mod strategies {
    use ipnet::Ipv4Net;
    use proptest::prelude::*;

    use crate::explore::{FaultKind, Schedule};
    use crate::lab::Lab;

    /// An IPv4 prefix inside `within` (its host bits zero), at least as long.
    pub fn ipv4_prefix_in(within: Ipv4Net) -> impl Strategy<Value = Ipv4Net> {
        let base = u32::from(within.network());
        let len = within.prefix_len();
        (len..=32u8, any::<u32>()).prop_map(move |(l, bits)| {
            let host = if len == 0 {
                bits
            } else {
                bits & (u32::MAX >> len)
            };
            Ipv4Net::new((base | host).into(), l)
                .expect("length at most 32")
                .trunc()
        })
    }

    /// A fault schedule for `lab` (1 to `max` faults of `kinds`, on what its
    /// scenario leaves alone), as `explore` draws them; shrinks towards
    /// smaller seeds, the schedule printed with a failure.
    pub fn fault_schedule(
        lab: &Lab,
        kinds: &[FaultKind],
        max: usize,
    ) -> impl Strategy<Value = Schedule> {
        let (lab, kinds) = (lab.clone(), kinds.to_vec());
        any::<u64>().prop_map(move |seed| Schedule::draw(&lab, seed, &kinds, max))
    }
}
