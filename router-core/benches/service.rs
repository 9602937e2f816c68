//! Service load-balancing figures: Maglev table build time, how many flows
//! move when a backend leaves or joins (Maglev side by side with the naive
//! `hash % N` as the anchor, and the ideal 1/N), the service datapath's cost
//! per packet for new and established flows, and conntrack memory per
//! connection (measured with a counting allocator).
//!
//! Run: `cargo bench -p router-core --bench service` (add `-- --quick` for
//! fewer rounds). Medians over rounds; no assertions.

#[path = "support/counting.rs"]
mod counting;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use router_core::hash::splitmix64;
use router_core::service::conntrack::{Limits, TcpFlags};
use router_core::service::datapath::{Config, Origin, Packet, Service};
use router_core::service::lookup::{flow_hash_v4, maglev_backend};
use router_core::service::maglev::{self, Backend};
use router_core::service::table::{
    BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable,
};
use router_core::service::{Protocol, Tuple};
use smoltcp::time::Instant as SimInstant;

fn backend(i: u32) -> Backend {
    Backend {
        id: i + 1,
        addr: IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i)),
        port: 8080,
        protocol: Protocol::Tcp,
        weight: maglev::DEFAULT_WEIGHT,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Milliseconds to build one table of `n` backends at size `m`.
fn build_ms(m: u32, n: u32, rounds: usize) -> f64 {
    let config = maglev::Config::new(m, maglev::DEFAULT_HASH_SEED).expect("a supported size");
    let backends: Vec<Backend> = (0..n).map(backend).collect();
    let times = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(maglev::lookup_table(&config, black_box(&backends)));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(times)
}

/// Flow hashes of `flows` random clients to port 80.
fn flows(flows: usize, seed: u32) -> Vec<u32> {
    let mut state = 7;
    (0..flows)
        .map(|_| {
            let r = splitmix64(&mut state);
            let client = Ipv4Addr::from(r as u32);
            flow_hash_v4(seed, client, (r >> 32) as u16, 80, 6)
        })
        .collect()
}

/// Share of `hashes` whose backend changes from `before` to `after`.
fn moved(hashes: &[u32], before: impl Fn(u32) -> u32, after: impl Fn(u32) -> u32) -> f64 {
    let n = hashes.iter().filter(|&&h| before(h) != after(h)).count();
    n as f64 / hashes.len() as f64
}

fn disruption(m: u32, n: u32, hashes: &[u32]) {
    let config = maglev::Config::new(m, maglev::DEFAULT_HASH_SEED).expect("a supported size");
    let all: Vec<Backend> = (0..n).map(backend).collect();
    let table = maglev::lookup_table(&config, &all);
    // Remove the middle backend; add one more.
    let gone = n / 2;
    let fewer: Vec<Backend> = all.iter().copied().filter(|b| b.id != gone + 1).collect();
    let without = maglev::lookup_table(&config, &fewer);
    let more: Vec<Backend> = (0..=n).map(backend).collect();
    let with = maglev::lookup_table(&config, &more);
    let lut = |t: &Vec<u32>| {
        let t = t.clone();
        move |h: u32| maglev_backend(&t[..], h)
    };
    // The anchor: backend `hash % count` over the sorted IDs.
    let modulo = |ids: Vec<u32>| move |h: u32| ids[h as usize % ids.len()];
    let ids = |v: &[Backend]| v.iter().map(|b| b.id).collect::<Vec<_>>();
    let maglev_remove = moved(hashes, lut(&table), lut(&without));
    let modulo_remove = moved(hashes, modulo(ids(&all)), modulo(ids(&fewer)));
    let maglev_add = moved(hashes, lut(&table), lut(&with));
    let modulo_add = moved(hashes, modulo(ids(&all)), modulo(ids(&more)));
    println!(
        "M={m:<6} N={n:<5} remove one: maglev {maglev_remove:.4}  hash%N {modulo_remove:.4}  ideal {:.4}   \
         add one: maglev {maglev_add:.4}  hash%N {modulo_add:.4}  ideal {:.4}",
        1.0 / f64::from(n),
        1.0 / f64::from(n + 1)
    );
}

fn datapath(backends: u32) -> Service {
    let config = Config {
        snat_v4: Some(Ipv4Addr::new(192, 168, 10, 100)),
        limits: Limits {
            tcp: 1 << 20,
            non_tcp: 1 << 20,
        },
        ..Config::default()
    };
    let spec = FrontendSpec {
        service: ("default".into(), "web".into()),
        kind: FrontendKind::LoadBalancer,
        external_local: false,
        internal_local: false,
        affinity_seconds: None,
        backends: (0..backends)
            .map(|i| BackendSpec {
                addr: L3n4 {
                    addr: IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i)),
                    port: 8080,
                    protocol: Protocol::Tcp,
                },
                state: BackendState::Active,
                local: i == 0,
                weight: maglev::DEFAULT_WEIGHT,
                node: None,
            })
            .collect(),
    };
    let frontend = L3n4 {
        addr: IpAddr::V4(Ipv4Addr::new(172, 16, 1, 1)),
        port: 80,
        protocol: Protocol::Tcp,
    };
    let table = ServiceTable::new(&config.maglev, BTreeMap::from([(frontend, spec)]));
    Service::new(config, table)
}

fn syn(i: u32, flags: TcpFlags) -> Packet {
    Packet {
        tuple: Tuple {
            src: IpAddr::V4(Ipv4Addr::from(0xcb00_0000 + i)),
            dst: IpAddr::V4(Ipv4Addr::new(172, 16, 1, 1)),
            src_port: 40000 + (i % 20000) as u16,
            dst_port: 80,
            protocol: Protocol::Tcp,
        },
        flags,
        origin: Origin::External,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 11 };
    println!("Maglev table build (median of {rounds}):");
    for m in [16381, 65521] {
        for n in [10, 100, 1000] {
            println!(
                "  M={m:<6} backends={n:<5} {:>8.2} ms",
                build_ms(m, n, rounds)
            );
        }
    }

    let seeds = maglev::Config::default();
    let hashes = flows(200_000, seeds.seed_jhash0);
    println!("\nFlows moved when one backend leaves or joins (200k flows):");
    for n in [3, 10, 100] {
        disruption(16381, n, &hashes);
    }

    let connections = if quick { 20_000 } else { 100_000 };
    let before = counting::live();
    let mut dp = datapath(10);
    let table_bytes = counting::live() - before;
    let now = SimInstant::from_millis(1);
    let mut state = 3;
    let start = Instant::now();
    for i in 0..connections {
        let random = splitmix64(&mut state) as u32;
        black_box(dp.process(now, &syn(i, TcpFlags::SYN), random));
    }
    let new_ns = start.elapsed().as_nanos() as f64 / f64::from(connections);
    let conntrack_bytes = counting::live() - before - table_bytes;
    let start = Instant::now();
    for i in 0..connections {
        black_box(dp.process(now, &syn(i, TcpFlags::ACK), 0));
    }
    let established_ns = start.elapsed().as_nanos() as f64 / f64::from(connections);
    println!(
        "\nService datapath (router-core, 10 backends, {connections} connections, SNAT for remote backends):"
    );
    println!("  new flow          {new_ns:>8.0} ns/packet");
    println!("  established flow  {established_ns:>8.0} ns/packet");
    println!(
        "  conntrack + NAT   {:>8.0} bytes/connection ({} connections tracked)",
        conntrack_bytes as f64 / f64::from(connections),
        dp.connections()
    );
}
