//! Resilient bucket tables: which member of a nexthop group each hash bucket goes to.
//!
//! Owns the bucket → member assignment and how it changes when members come
//! and go (like Linux resilient nexthop groups): removing a member moves only
//! that member's buckets; adding one takes about `1/(N+1)` of the buckets from
//! the others. It does not hash flows (see [`super::hash`]) nor know what a
//! member is (the FIB's nexthops).

use alloc::vec;
use alloc::vec::Vec;

use super::hash::bucket_of;

/// Buckets per multi-member group. A power of two; 256 gives weights a 1/256 granularity.
pub const BUCKETS: usize = 256;

/// A bucket → member-index table. Members are indices into the owning group's member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets {
    table: Vec<u16>,
}

impl Buckets {
    /// A fresh table for members with these weights (all weights ≥ 1), spread evenly.
    pub fn new(weights: &[u16]) -> Self {
        Self::assign(vec![None; BUCKETS], weights)
    }

    /// The table of a one-member group: every bucket on member 0.
    pub fn single() -> Self {
        Buckets {
            table: vec![0; BUCKETS],
        }
    }

    /// The table after the member list changed. `old_to_new[m]` is the new index of
    /// old member `m`, or `None` if it is gone; `weights` are the new members' weights.
    /// Buckets of surviving members stay put unless that member holds more than its
    /// share (more than one bucket over), so flows of unchanged members keep their nexthop.
    pub fn rebalance(&self, old_to_new: &[Option<usize>], weights: &[u16]) -> Self {
        let table = self
            .table
            .iter()
            .map(|&m| old_to_new.get(usize::from(m)).copied().flatten())
            .collect();
        Self::assign(table, weights)
    }

    fn assign(mut table: Vec<Option<usize>>, weights: &[u16]) -> Self {
        assert!(!weights.is_empty() && weights.len() <= usize::from(u16::MAX));
        let targets = shares(weights, table.len());
        let mut counts = vec![0usize; weights.len()];
        for m in table.iter().flatten() {
            counts[*m] += 1;
        }
        // Release the excess of members more than one bucket over their share, from the end.
        for slot in table.iter_mut().rev() {
            if let Some(m) = *slot
                && counts[m] > targets[m] + 1
            {
                counts[m] -= 1;
                *slot = None;
            }
        }
        // Hand each free bucket to the member furthest below its share (lowest index on ties).
        for slot in table.iter_mut().filter(|s| s.is_none()) {
            let m = (0..weights.len())
                .max_by_key(|&m| (targets[m] as isize - counts[m] as isize, usize::MAX - m))
                .expect("at least one member");
            counts[m] += 1;
            *slot = Some(m);
        }
        Buckets {
            table: table.into_iter().map(|m| m.unwrap_or(0) as u16).collect(),
        }
    }

    /// The member index that owns bucket `b`.
    #[inline]
    pub fn member(&self, b: usize) -> usize {
        usize::from(self.table[b])
    }

    /// The member index for a flow hash.
    #[inline]
    pub fn select(&self, hash: u32) -> usize {
        self.member(bucket_of(hash, self.table.len()))
    }

    /// The raw table (member index per bucket), e.g. to copy into an eBPF map.
    pub fn as_slice(&self) -> &[u16] {
        &self.table
    }
}

/// Integer shares of `total` buckets proportional to `weights` (largest remainder, lowest index first).
fn shares(weights: &[u16], total: usize) -> Vec<usize> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w.max(1))).sum();
    let exact = |w: u16| u64::from(w.max(1)) * total as u64;
    let mut t: Vec<usize> = weights.iter().map(|&w| (exact(w) / sum) as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by_key(|&m| (core::cmp::Reverse(exact(weights[m]) % sum), m));
    let missing = total - t.iter().sum::<usize>();
    for &m in order.iter().take(missing) {
        t[m] += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(b: &Buckets, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for i in 0..BUCKETS {
            c[b.member(i)] += 1;
        }
        c
    }

    #[test]
    fn fresh_table_honours_weights() {
        assert_eq!(counts(&Buckets::new(&[1, 1, 1, 1]), 4), vec![64; 4]);
        assert_eq!(counts(&Buckets::new(&[1, 3]), 2), vec![64, 192]);
        assert_eq!(counts(&Buckets::new(&[1, 1, 1]), 3), vec![86, 85, 85]);
    }

    #[test]
    fn fresh_table_interleaves_members() {
        let b = Buckets::new(&[1, 1]);
        assert_eq!(&b.as_slice()[..4], &[0, 1, 0, 1]);
    }

    #[test]
    fn removing_a_member_moves_only_its_buckets() {
        let old = Buckets::new(&[1, 1, 1]);
        let new = old.rebalance(&[Some(0), None, Some(1)], &[1, 1]);
        for b in 0..BUCKETS {
            match old.member(b) {
                0 => assert_eq!(new.member(b), 0),
                2 => assert_eq!(new.member(b), 1),
                _ => {}
            }
        }
        assert_eq!(counts(&new, 2), vec![128, 128]);
    }
}
