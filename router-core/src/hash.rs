//! The two small, fixed-definition hash and mixing functions every part of
//! nexthop uses for stable, seed-derived numbers: FNV-1a 64 ([`Fnv1a`],
//! [`fnv1a`]) for hashing names and records (the simulator's trace hash and
//! RNG fork labels, BGP connect-retry seeds, deterministic MACs) and SplitMix64
//! ([`splitmix64`]) for expanding a seed into a stream (RNG seeding, timer
//! jitter, port choice).
//!
//! Both outputs are fixed by their definitions (no per-process keys, no
//! platform dependence), so a value computed on one machine matches every
//! other. Allocation-free. Not the ECMP flow hash, which is `ecmp::hash`.

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// An incremental FNV-1a 64 hasher: [`Fnv1a::write`] any number of times,
/// then [`Fnv1a::finish`]; the same as [`fnv1a`] of the concatenation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Fnv1a {
    /// A hasher that has seen nothing (its value is the offset basis).
    pub const fn new() -> Self {
        Self(FNV_OFFSET_BASIS)
    }

    /// Hash `bytes` in.
    pub const fn write(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            self.0 = (self.0 ^ bytes[i] as u64).wrapping_mul(FNV_PRIME);
            i += 1;
        }
    }

    /// The hash of everything written so far.
    pub const fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// FNV-1a 64 of `bytes`.
pub const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::new();
    h.write(bytes);
    h.finish()
}

/// SplitMix64 (Steele, Lea, Flood): advances `state` and returns the next output.
pub const fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::{Fnv1a, fnv1a, splitmix64};

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fnv1a_incremental_equals_one_shot() {
        let mut h = Fnv1a::new();
        h.write(b"foo");
        h.write(b"");
        h.write(b"bar");
        assert_eq!(h.finish(), fnv1a(b"foobar"));
    }

    #[test]
    fn splitmix64_reference_vector() {
        let mut state = 1_234_567;
        let got = [(); 5].map(|()| splitmix64(&mut state));
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423,
                4_593_380_528_125_082_431,
                16_408_922_859_458_223_821,
            ]
        );
    }
}
