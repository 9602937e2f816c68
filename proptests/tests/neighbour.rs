//! The neighbour table never sends requests faster than its rate limit, nor
//! asks for one address more often than its retransmit interval.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use router_core::PortId;
use router_core::neighbour::{Config, Event, Output, Table};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;

#[derive(Clone, Debug)]
enum Input {
    Resolve(u8),
    Heard(u8),
    Tick,
}

fn input() -> impl Strategy<Value = (u64, Input)> {
    let input = prop_oneof![
        4 => (0u8..32).prop_map(Input::Resolve),
        1 => (0u8..32).prop_map(Input::Heard),
        2 => Just(Input::Tick),
    ];
    (0u64..400, input)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn requests_never_exceed_the_rate_limit(
        burst in 1u32..6,
        interval_ms in 10u64..500,
        inputs in prop::collection::vec(input(), 1..200),
    ) {
        let config = Config {
            burst,
            request_interval: Duration::from_millis(interval_ms),
            ..Config::default()
        };
        let mut table = Table::new(config);
        let mut now = 0u64;
        let mut sent: Vec<(u64, IpAddr)> = Vec::new();
        let mut out = Vec::new();
        for (gap, input) in inputs {
            now += gap;
            let addr = |i: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
            let event = match input {
                Input::Resolve(i) => Event::Resolve { addr: addr(i), port: PortId(0) },
                Input::Heard(i) => Event::Heard {
                    addr: addr(i),
                    port: PortId(0),
                    mac: EthernetAddress([2, 0, 0, 0, 0, i]),
                    create: true,
                },
                Input::Tick => Event::Tick,
            };
            table.handle(Instant::from_millis(now as i64), event, &mut out);
            sent.extend(out.drain(..).filter_map(|o| match o {
                Output::Request { addr, .. } => Some((now, addr)),
                _ => None,
            }));
        }
        // Token bucket: between any two requests at most `burst` + elapsed/interval.
        for i in 0..sent.len() {
            for j in i..sent.len() {
                let allowed = u64::from(burst) + (sent[j].0 - sent[i].0) / interval_ms;
                prop_assert!((j - i + 1) as u64 <= allowed,
                    "{} requests between {} ms and {} ms", j - i + 1, sent[i].0, sent[j].0);
            }
        }
        let mut last: BTreeMap<IpAddr, u64> = BTreeMap::new();
        for (t, addr) in sent {
            if let Some(prev) = last.insert(addr, t) {
                prop_assert!(t - prev >= config.retrans_time.total_millis(),
                    "{} asked at {} ms and {} ms", addr, prev, t);
            }
        }
    }
}
