//! Seeded randomness: one xoshiro256** generator per subsystem, forked by name from the run's seed.
//!
//! [`SimRng::fork`] derives a child's seed from the parent's *seed* and a label only (never from
//! the parent's current state), so a subsystem's stream does not depend on how many numbers any
//! other subsystem drew, nor on which other subsystems exist. Seeds are expanded with SplitMix64,
//! as the xoshiro authors recommend. Nothing here reads OS randomness.

use router_core::hash::{Fnv1a, splitmix64};

/// A deterministic pseudo-random generator (xoshiro256**) that remembers its seed for forking.
#[derive(Debug, Clone)]
pub struct SimRng {
    seed: u64,
    state: [u64; 4],
}

impl SimRng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let state = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Self { seed, state }
    }

    /// The seed this generator was created from.
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// An independent generator for the subsystem called `label`, e.g. `"segment/lan0"`.
    ///
    /// The same parent seed and label always give the same child, whatever this generator has
    /// drawn so far.
    pub fn fork(&self, label: &str) -> Self {
        let mut h = Fnv1a::new();
        h.write(&self.seed.to_le_bytes());
        h.write(label.as_bytes());
        Self::new(h.finish())
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform value in `0..bound` (Lemire's multiply-and-reject: no modulo bias).
    ///
    /// # Panics
    /// If `bound` is zero, since the range would be empty.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "SimRng::below needs a non-empty range");
        let mut wide = u128::from(self.next_u64()) * u128::from(bound);
        // `as u64` keeps the low 64 bits of the product: that truncation is the method.
        if (wide as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (wide as u64) < threshold {
                wide = u128::from(self.next_u64()) * u128::from(bound);
            }
        }
        (wide >> 64) as u64
    }

    /// A uniform value in `[0, 1)` with 53 bits of precision.
    pub fn unit_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// True with probability `p`. Draws nothing when the answer is certain (`p <= 0`, `p >= 1`
    /// or NaN, which counts as 0), so a lossless link consumes no randomness.
    pub fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.unit_f64() < p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SimRng;

    #[test]
    fn xoshiro256starstar_reference_vector() {
        let mut rng = SimRng {
            seed: 0,
            state: [1, 2, 3, 4],
        };
        let got: Vec<u64> = (0..10).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                11_520,
                0,
                1_509_978_240,
                1_215_971_899_390_074_240,
                1_216_172_134_540_287_360,
                607_988_272_756_665_600,
                16_172_922_978_634_559_625,
                8_476_171_486_693_032_832,
                10_595_114_339_597_558_777,
                2_904_607_092_377_533_576,
            ]
        );
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<u64> = {
            let mut r = SimRng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = SimRng::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = SimRng::new(8);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn fork_ignores_parent_draws_and_separates_labels() {
        let parent = SimRng::new(42);
        let mut used = parent.clone();
        for _ in 0..100 {
            used.next_u64();
        }
        let mut x = parent.fork("segment/lan");
        let mut y = used.fork("segment/lan");
        let mut z = parent.fork("segment/wan");
        let (x1, y1, z1) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert_eq!(x1, y1);
        assert_ne!(x1, z1);
        assert_eq!(parent.fork("a").seed(), SimRng::new(42).fork("a").seed());
        assert_ne!(parent.fork("a").seed(), SimRng::new(43).fork("a").seed());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SimRng::new(1);
        let mut seen = [0u32; 3];
        for _ in 0..3000 {
            let v = rng.below(3);
            seen[usize::try_from(v).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| (850..1150).contains(&n)), "{seen:?}");
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn chance_is_certain_at_the_ends_without_drawing() {
        let mut rng = SimRng::new(3);
        let before = rng.clone().next_u64();
        assert!(!rng.chance(0.0));
        assert!(!rng.chance(f64::NAN));
        assert!(rng.chance(1.0));
        assert_eq!(rng.next_u64(), before);
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2300..2700).contains(&hits), "{hits}");
    }

    #[test]
    fn unit_f64_in_half_open_interval() {
        let mut rng = SimRng::new(9);
        assert!(
            (0..1000)
                .map(|_| rng.unit_f64())
                .all(|v| (0.0..1.0).contains(&v))
        );
    }
}
