//! ECMP: flows spread evenly over balanced members, weights are honoured, and
//! member changes move only the flows they must (resilient bucket tables).

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use router_core::ecmp::{BUCKETS, Buckets, FlowKey, HashPolicy};

/// `n` distinct TCP flows derived from `seed` (different source ports and addresses).
fn flows(seed: u32, n: u32) -> impl Iterator<Item = FlowKey> {
    (0..n).map(move |i| {
        let x = seed.wrapping_mul(0x9e37_79b9).wrapping_add(i);
        FlowKey {
            src: IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 | (x & 0xffff))),
            dst: IpAddr::V4(Ipv4Addr::new(172, 16, 1, 1)),
            protocol: 6,
            src_port: 1024 + (x >> 16) as u16,
            dst_port: 80,
        }
    })
}

fn counts(b: &Buckets, members: usize) -> Vec<usize> {
    let mut c = vec![0; members];
    for i in 0..BUCKETS {
        c[b.member(i)] += 1;
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// 20,000 flows over N equal members: every member's share is within 10% of 1/N.
    #[test]
    fn balanced_members_share_flows_evenly(n in 2usize..=8, seed in any::<u32>(), hash_seed in any::<u32>()) {
        let table = Buckets::new(&vec![1; n]);
        let mut hits = vec![0u32; n];
        let total = 20_000;
        for f in flows(seed, total) {
            hits[table.select(f.hash(HashPolicy::L4, hash_seed))] += 1;
        }
        let fair = f64::from(total) / n as f64;
        for h in hits {
            prop_assert!((f64::from(h) - fair).abs() <= 0.10 * fair, "{} flows vs fair {}", h, fair);
        }
    }

    /// Fresh tables give every member its exact share of buckets, ±1.
    #[test]
    fn weights_are_honoured(weights in prop::collection::vec(1u16..=8, 1..=16)) {
        let table = Buckets::new(&weights);
        let sum: usize = weights.iter().map(|&w| usize::from(w)).sum();
        for (m, c) in counts(&table, weights.len()).into_iter().enumerate() {
            let exact = BUCKETS as f64 * f64::from(weights[m]) / sum as f64;
            prop_assert!((c as f64 - exact).abs() < 1.0 + 1e-9, "member {} has {} buckets, share {}", m, c, exact);
        }
    }

    /// Removing one of N members moves only that member's buckets (and so flows).
    #[test]
    fn removing_a_member_moves_only_its_flows(n in 2usize..=16, gone in any::<prop::sample::Index>(), seed in any::<u32>()) {
        let gone = gone.index(n);
        let old = Buckets::new(&vec![1; n]);
        let map: Vec<Option<usize>> = (0..n).map(|m| match m.cmp(&gone) {
            std::cmp::Ordering::Less => Some(m),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => Some(m - 1),
        }).collect();
        let new = old.rebalance(&map, &vec![1; n - 1]);
        for f in flows(seed, 2_000) {
            let h = f.hash(HashPolicy::L4, 0);
            if let Some(m) = map[old.select(h)] {
                prop_assert_eq!(new.select(h), m);
            }
        }
        for c in counts(&new, n - 1) {
            prop_assert!(c.abs_diff(BUCKETS / (n - 1)) <= 2);
        }
    }

    /// Adding a member to N moves at most ⌈B/(N+1)⌉ + 1 buckets, all of them to the newcomer
    /// but for the rounding slack.
    #[test]
    fn adding_a_member_moves_about_one_share(n in 1usize..=16) {
        let old = Buckets::new(&vec![1; n]);
        let map: Vec<Option<usize>> = (0..n).map(Some).collect();
        let new = old.rebalance(&map, &vec![1; n + 1]);
        let moved = (0..BUCKETS).filter(|&b| old.member(b) != new.member(b)).count();
        prop_assert!(moved <= BUCKETS.div_ceil(n + 1) + 1, "moved {} of {} buckets", moved, BUCKETS);
        let to_new = (0..BUCKETS).filter(|&b| new.member(b) == n).count();
        prop_assert!(to_new + 1 >= moved);
    }
}
