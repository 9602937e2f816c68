//! The design's promise (see the crate's doc), property-tested with
//! nexthop-sim's kit: for any node and any moment within the scenario's
//! calm, and after any fault schedule `explore` could draw.

use nexthop_kit_lb_failover::{FAILOVER_SECONDS, NODES, lab, serving_nodes};
use nexthop_sim::Duration;
use nexthop_sim::explore::FaultKind;
use nexthop_sim::kit::Sim;
use nexthop_sim::kit::strategies::fault_schedule;
use nexthop_sim::lab::Lab;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// One node's uplink down at any moment: within the failover bound the
    /// ToR sends the address only to the two others, each of which serves
    /// it; once the uplink is back all three serve it again.
    #[test]
    fn losing_one_nodes_uplink_moves_the_address_within_hold_and_restart_time(
        node in 0..NODES.len(),
        after_ms in 0u64..5_000,
        seed in 1u64..1_000,
    ) {
        let mut sim = Sim::load(lab(), seed).unwrap();
        prop_assert!(sim.run_scenario().passed());
        prop_assert_eq!(serving_nodes(&sim).map(|n| n.len()), Ok(3));
        sim.advance(Duration::from_millis(after_ms)).unwrap();
        let (name, uplink) = NODES[node];
        sim.step(&format!("link: down {name}:{uplink}")).unwrap();
        sim.advance(Duration::from_secs(FAILOVER_SECONDS)).unwrap();
        let serving = serving_nodes(&sim).map_err(TestCaseError::fail)?;
        prop_assert_eq!(serving.len(), 2, "{:?}", serving);
        prop_assert!(!serving.iter().any(|n| n == name), "{:?} still gets it", name);
        sim.step(&format!("link: up {name}:{uplink}")).unwrap();
        // Cilium's connect retry is 120 s.
        sim.advance(Duration::from_secs(130)).unwrap();
        prop_assert_eq!(serving_nodes(&sim).map(|n| n.len()), Ok(3));
    }
}

#[test]
fn whatever_faults_hit_the_scenario_the_address_is_served_by_all_three_after() {
    let lab = Lab::load(&lab()).unwrap();
    let kinds = FaultKind::ALL.to_vec();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    runner
        .run(&fault_schedule(&lab, &kinds, 3), |schedule| {
            let mut sim = Sim::new(lab.clone(), 1).unwrap();
            sim.run_with_faults(&schedule, Duration::from_secs(300));
            let serving = serving_nodes(&sim).map_err(TestCaseError::fail)?;
            prop_assert_eq!(serving.len(), 3, "after\n{}{:?}", schedule, serving);
            Ok(())
        })
        .unwrap();
}

/// The naive promise does not hold, and the property above would say so:
/// ten seconds after k8s-ctr's uplink went down (its session gone after the
/// 9 s hold time) the ToR still sends the address to it, the route kept
/// stale for graceful restart.
#[test]
fn the_hold_time_alone_is_not_enough_graceful_restart_keeps_the_route() {
    let mut sim = Sim::load(lab(), 1).unwrap();
    assert!(sim.run_scenario().passed());
    sim.step("link: down k8s-ctr:eth1").unwrap();
    sim.advance(Duration::from_secs(10)).unwrap();
    let serving = serving_nodes(&sim).unwrap();
    assert!(serving.iter().any(|n| n == "k8s-ctr"), "{serving:?}");
}
