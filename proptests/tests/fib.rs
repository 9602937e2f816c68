//! FIB (RIB + poptrie) against the naive linear model, IPv4 and IPv6:
//! overlapping prefixes, replacement by another protocol, metric ties, removal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nexthop_proptests::naive_fib::{NaiveFib, NaiveRoute};
use proptest::prelude::*;
use router_core::PortId;
use router_core::fib::{Fib, Nexthop, Protocol, Route};

const PROTOCOLS: [Protocol; 4] = [
    Protocol::Connected,
    Protocol::Static,
    Protocol::Ebgp,
    Protocol::Ibgp,
];

#[derive(Clone, Debug)]
enum Op {
    Insert(IpNet, usize, u32, Vec<u8>),
    Remove(IpNet, usize),
}

/// Addresses clustered around a few bases so that prefixes overlap a lot.
fn v4_addr() -> impl Strategy<Value = u32> + Clone {
    let bases = [
        0x0a00_0000u32,
        0x0a01_0200,
        0xc0a8_0a00,
        0xac14_0000,
        0x0000_0000,
        0xffff_ff00,
    ];
    prop_oneof![
        4 => (0..bases.len(), any::<u32>(), 0u32..=24)
            .prop_map(move |(b, noise, bits)| bases[b] ^ (noise & ((1u64 << bits) - 1) as u32)),
        1 => any::<u32>(),
    ]
}

fn v6_addr() -> impl Strategy<Value = u128> + Clone {
    let bases = [
        0x2001_0db8u128 << 96,
        (0x2001_0db8_0001u128) << 80,
        0xfd00u128 << 112,
        0,
    ];
    prop_oneof![
        4 => (0..bases.len(), any::<u128>(), 0u32..=100)
            .prop_map(move |(b, noise, bits)| bases[b] ^ (noise & ((1u128 << bits) - 1))),
        1 => any::<u128>(),
    ]
}

fn v4_prefix() -> impl Strategy<Value = IpNet> + Clone {
    (v4_addr(), prop_oneof![1 => 0u8..=7, 6 => 8u8..=32]).prop_map(|(a, l)| {
        IpNet::new(IpAddr::V4(Ipv4Addr::from_bits(a)), l)
            .unwrap()
            .trunc()
    })
}

fn v6_prefix() -> impl Strategy<Value = IpNet> + Clone {
    (v6_addr(), prop_oneof![1 => 0u8..=15, 6 => 16u8..=128]).prop_map(|(a, l)| {
        IpNet::new(IpAddr::V6(Ipv6Addr::from_bits(a)), l)
            .unwrap()
            .trunc()
    })
}

fn ops(prefix: impl Strategy<Value = IpNet> + Clone) -> impl Strategy<Value = Vec<Op>> {
    let insert = (
        prefix.clone(),
        0..PROTOCOLS.len(),
        0u32..3,
        prop::collection::vec(0u8..4, 1..3),
    )
        .prop_map(|(p, proto, metric, nh)| Op::Insert(p, proto, metric, nh));
    let remove = (prefix, 0..PROTOCOLS.len()).prop_map(|(p, proto)| Op::Remove(p, proto));
    prop::collection::vec(prop_oneof![4 => insert, 1 => remove], 1..48)
}

fn nexthops(ids: &[u8], v6: bool) -> Vec<Nexthop> {
    ids.iter()
        .map(|&i| {
            let gw = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(i) + 1))
            } else {
                IpAddr::V4(Ipv4Addr::new(192, 168, 0, i + 1))
            };
            Nexthop::gateway(gw, PortId(u16::from(i % 2)))
        })
        .collect()
}

/// Apply `ops` to both, then compare every query address and the installed routes.
fn check(ops: &[Op], queries: &[IpAddr], v6: bool) -> Result<(), TestCaseError> {
    let mut fib = Fib::new();
    let mut model = NaiveFib::default();
    for op in ops {
        match op {
            Op::Insert(prefix, proto, metric, nh) => {
                let protocol = PROTOCOLS[*proto];
                let mut route = Route::new(protocol, nexthops(nh, v6));
                route.metric = *metric;
                fib.insert(*prefix, &route);
                model.insert(NaiveRoute {
                    prefix: *prefix,
                    protocol,
                    distance: route.distance,
                    metric: *metric,
                    nexthops: route.nexthops.clone(),
                });
            }
            Op::Remove(prefix, proto) => {
                let protocol = PROTOCOLS[*proto];
                fib.remove(*prefix, protocol, protocol.default_distance());
                model.remove(*prefix, protocol, protocol.default_distance());
            }
        }
    }
    let mut probes: Vec<IpAddr> = queries.to_vec();
    for op in ops {
        let (Op::Insert(p, ..) | Op::Remove(p, _)) = op;
        probes.extend([p.network(), p.broadcast()]);
    }
    for addr in probes {
        let got = fib
            .lookup(addr)
            .map(|g| fib.group(g).unwrap().members().to_vec());
        let want = model.lookup(addr).map(<[Nexthop]>::to_vec);
        prop_assert_eq!(got, want, "lookup of {}", addr);
    }
    for installed in fib.routes() {
        let want = model
            .winner(installed.prefix)
            .expect("installed prefix exists in the model");
        prop_assert_eq!(installed.group.members(), want.nexthops.as_slice());
        prop_assert_eq!(installed.route.protocol, want.protocol);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn ipv4_fib_matches_naive_lpm(ops in ops(v4_prefix()), queries in prop::collection::vec(v4_addr(), 64)) {
        let queries: Vec<IpAddr> = queries.into_iter().map(|a| IpAddr::V4(Ipv4Addr::from_bits(a))).collect();
        check(&ops, &queries, false)?;
    }

    #[test]
    fn ipv6_fib_matches_naive_lpm(ops in ops(v6_prefix()), queries in prop::collection::vec(v6_addr(), 64)) {
        let queries: Vec<IpAddr> = queries.into_iter().map(|a| IpAddr::V6(Ipv6Addr::from_bits(a))).collect();
        check(&ops, &queries, true)?;
    }
}
