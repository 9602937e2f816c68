//! Random tables shaped like an Internet table, shared by the FIB benchmark
//! and the XDP benchmark (`offload-bpf/benches/xdp.rs` includes this file by
//! path): a seeded SplitMix64 and IPv4 prefix lengths in roughly the DFZ mix.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use router_core::hash::splitmix64;

/// SplitMix64: deterministic tables and addresses on every run.
pub struct Rng(pub u64);
impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }
    /// A value drawn with the given weights.
    pub fn pick<T: Copy>(&mut self, weighted: &[(u32, T)]) -> T {
        let total: u32 = weighted.iter().map(|w| w.0).sum();
        let mut r = (self.next() % u64::from(total)) as u32;
        for &(w, v) in weighted {
            if r < w {
                return v;
            }
            r -= w;
        }
        unreachable!("r < total")
    }
}

/// IPv4 prefix lengths with weights (60% /24, 10% /23, 12% /22, …).
pub const V4_LENGTHS: [(u32, u8); 17] = [
    (600, 24),
    (100, 23),
    (120, 22),
    (50, 21),
    (40, 20),
    (30, 19),
    (20, 18),
    (15, 17),
    (20, 16),
    (1, 8),
    (1, 10),
    (1, 12),
    (2, 14),
    (3, 15),
    (5, 25),
    (3, 28),
    (2, 32),
];

/// `n` distinct random IPv4 prefixes with the [`V4_LENGTHS`] mix, none of
/// whose addresses `exclude` rejects.
pub fn v4_prefixes(n: usize, rng: &mut Rng, exclude: fn(Ipv4Addr) -> bool) -> BTreeSet<Ipv4Net> {
    let mut set = BTreeSet::new();
    while set.len() < n {
        let len = rng.pick(&V4_LENGTHS);
        let addr = Ipv4Addr::from_bits(rng.next() as u32);
        if !exclude(addr) {
            set.insert(Ipv4Net::new(addr, len).unwrap().trunc());
        }
    }
    set
}
