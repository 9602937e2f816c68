//! FIB lookup benchmark: nexthop's FIB (RIB + poptrie) side by side with the
//! `prefix-trie` crate on the same tables and the same addresses, in one run.
//!
//! Run: `cargo bench -p router-core --bench fib` (add `-- --quick` for the 1k and
//! 100k tables only). Prints median ns/lookup over batches and the heap each
//! structure holds (measured with a counting allocator). No assertions.
//!
//! Tables are random but shaped like an Internet table: IPv4 prefix lengths
//! follow roughly the DFZ mix (60% /24, 10% /23, 12% /22, …), IPv6 under 2000::/3
//! with mostly /48 and /32. Addresses are either uniformly random ("random") or
//! drawn inside a random table prefix ("hit").

#[path = "support/counting.rs"]
mod counting;
#[path = "support/prefixes.rs"]
mod prefixes;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use router_core::PortId;
use router_core::fib::{Fib, Nexthop, Protocol, Route};

use prefixes::Rng;

const V6_LENGTHS: [(u32, u8); 8] = [
    (500, 48),
    (150, 32),
    (100, 40),
    (100, 44),
    (50, 36),
    (50, 29),
    (30, 64),
    (20, 56),
];

fn v4_table(n: usize, rng: &mut Rng) -> Vec<Ipv4Net> {
    let set = prefixes::v4_prefixes(n, rng, |_| false);
    shuffle(set.into_iter().collect(), rng)
}

fn v6_table(n: usize, rng: &mut Rng) -> Vec<Ipv6Net> {
    let mut set = BTreeSet::new();
    while set.len() < n {
        let len = rng.pick(&V6_LENGTHS);
        let bits = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | (1u128 << 125);
        set.insert(
            Ipv6Net::new(Ipv6Addr::from_bits(bits), len)
                .unwrap()
                .trunc(),
        );
    }
    shuffle(set.into_iter().collect(), rng)
}

fn shuffle<T>(mut v: Vec<T>, rng: &mut Rng) -> Vec<T> {
    for i in (1..v.len()).rev() {
        v.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    v
}

fn nexthops() -> Vec<Nexthop> {
    (0..16u8)
        .map(|i| {
            Nexthop::gateway(
                IpAddr::V4(Ipv4Addr::new(192, 168, i, 1)),
                PortId(u16::from(i)),
            )
        })
        .collect()
}

/// Build both structures from `prefixes`, returning them with their heap sizes.
fn build<P: Copy + Into<IpNet> + prefix_trie::Prefix>(
    prefixes: &[P],
) -> (Fib, usize, PrefixMap<P, u32>, usize, f64) {
    let hops = nexthops();
    let before = counting::live();
    let started = Instant::now();
    let mut fib = Fib::new();
    for (i, &p) in prefixes.iter().enumerate() {
        fib.insert(
            p.into(),
            &Route::new(Protocol::Ebgp, vec![hops[i % hops.len()]]),
        );
    }
    let build_s = started.elapsed().as_secs_f64();
    let fib_bytes = counting::live() - before;
    let before = counting::live();
    let mut map = PrefixMap::new();
    for (i, &p) in prefixes.iter().enumerate() {
        map.insert(p, (i % hops.len()) as u32 + 1);
    }
    let map_bytes = counting::live() - before;
    (fib, fib_bytes, map, map_bytes, build_s)
}

const BATCH: usize = 100_000;
const BATCHES: usize = 21;

/// Median ns/lookup of `f` over the addresses, in batches, interleaving the two
/// contenders batch by batch so both see the same machine noise.
fn race<A: Copy>(
    addrs: &[A],
    mut ours: impl FnMut(A) -> u32,
    mut theirs: impl FnMut(A) -> u32,
) -> (f64, f64) {
    let mut a = Vec::new();
    let mut b = Vec::new();
    for round in 0..BATCHES {
        let chunk = &addrs[(round * BATCH) % (addrs.len() - BATCH + 1)..][..BATCH];
        let t = Instant::now();
        let mut acc = 0u32;
        for &x in chunk {
            acc = acc.wrapping_add(ours(black_box(x)));
        }
        black_box(acc);
        a.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
        let t = Instant::now();
        let mut acc = 0u32;
        for &x in chunk {
            acc = acc.wrapping_add(theirs(black_box(x)));
        }
        black_box(acc);
        b.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    (median(a), median(b))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn row(table: &str, addrs: &str, ours: f64, theirs: f64) {
    println!(
        "{table:<14} {addrs:<7} {ours:>12.1} {theirs:>14.1} {:>9.2}x",
        theirs / ours
    );
}

fn v4_case(n: usize, rng: &mut Rng) {
    let prefixes = v4_table(n, rng);
    let (fib, fib_bytes, map, map_bytes, build_s) = build(&prefixes);
    let random: Vec<u32> = (0..BATCH * 4).map(|_| rng.next() as u32).collect();
    let hit: Vec<u32> = (0..BATCH * 4)
        .map(|_| {
            let p = prefixes[(rng.next() % prefixes.len() as u64) as usize];
            p.network().to_bits() | (rng.next() as u32 & !p.netmask().to_bits())
        })
        .collect();
    let label = format!("v4 {}", human(n));
    for (name, addrs) in [("random", &random), ("hit", &hit)] {
        let (a, b) = race(
            addrs,
            |x| fib.lookup_v4(Ipv4Addr::from_bits(x)),
            |x| {
                map.get_lpm(&Ipv4Net::new(Ipv4Addr::from_bits(x), 32).unwrap())
                    .map_or(0, |(_, &v)| v)
            },
        );
        row(&label, name, a, b);
    }
    memory(
        &label,
        fib.trie_v4().memory_bytes(),
        fib_bytes,
        map_bytes,
        build_s,
    );
    check_agree(
        &hit,
        |x| fib.lookup_v4(Ipv4Addr::from_bits(x)) != 0,
        |x| {
            map.get_lpm(&Ipv4Net::new(Ipv4Addr::from_bits(x), 32).unwrap())
                .is_some()
        },
    );
}

fn v6_case(n: usize, rng: &mut Rng) {
    let prefixes = v6_table(n, rng);
    let (fib, fib_bytes, map, map_bytes, build_s) = build(&prefixes);
    let random: Vec<u128> = (0..BATCH * 4)
        .map(|_| (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | (1u128 << 125))
        .collect();
    let hit: Vec<u128> = (0..BATCH * 4)
        .map(|_| {
            let p = prefixes[(rng.next() % prefixes.len() as u64) as usize];
            let host = u128::from(rng.next()) << 64 | u128::from(rng.next());
            p.network().to_bits() | (host & !p.netmask().to_bits())
        })
        .collect();
    let label = format!("v6 {}", human(n));
    for (name, addrs) in [("random", &random), ("hit", &hit)] {
        let (a, b) = race(
            addrs,
            |x| fib.lookup_v6(Ipv6Addr::from_bits(x)),
            |x| {
                map.get_lpm(&Ipv6Net::new(Ipv6Addr::from_bits(x), 128).unwrap())
                    .map_or(0, |(_, &v)| v)
            },
        );
        row(&label, name, a, b);
    }
    memory(
        &label,
        fib.trie_v6().memory_bytes(),
        fib_bytes,
        map_bytes,
        build_s,
    );
    check_agree(
        &hit,
        |x| fib.lookup_v6(Ipv6Addr::from_bits(x)) != 0,
        |x| {
            map.get_lpm(&Ipv6Net::new(Ipv6Addr::from_bits(x), 128).unwrap())
                .is_some()
        },
    );
}

/// Both must find a route for every table-hitting address (a sanity check on the race).
fn check_agree<A: Copy>(addrs: &[A], ours: impl Fn(A) -> bool, theirs: impl Fn(A) -> bool) {
    let disagree = addrs
        .iter()
        .filter(|&&a| ours(a) != theirs(a) || !ours(a))
        .count();
    if disagree > 0 {
        println!("  !! {disagree} table-hitting addresses found no route in one of the two");
    }
}

fn memory(label: &str, trie: usize, fib: usize, map: usize, build_s: f64) {
    MEM.with(|m| {
        m.borrow_mut().push(format!(
            "{label:<14} {:>12.2} {:>14.2} {:>16.2} {:>12.2}",
            mib(trie),
            mib(fib),
            mib(map),
            build_s
        ))
    });
}

thread_local! {
    static MEM: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut rng = Rng(0x006e_6578_7468_6f70);
    println!("FIB lookup, median ns/lookup over {BATCHES} batches of {BATCH} addresses");
    println!(
        "{:<14} {:<7} {:>12} {:>14} {:>10}",
        "table", "addrs", "nexthop ns", "prefix-trie ns", "speedup"
    );
    for n in [1_000, 100_000, 1_000_000] {
        if quick && n > 100_000 {
            continue;
        }
        v4_case(n, &mut rng);
    }
    v6_case(100_000, &mut rng);
    println!();
    println!("Memory (MiB, heap bytes held) and nexthop FIB build time (s, one insert per prefix)");
    println!(
        "{:<14} {:>12} {:>14} {:>16} {:>12}",
        "table", "poptrie", "nexthop FIB", "prefix-trie map", "build s"
    );
    MEM.with(|m| m.borrow().iter().for_each(|l| println!("{l}")));
}
