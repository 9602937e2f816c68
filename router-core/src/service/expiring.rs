//! A bounded map whose entries carry a deadline, with an index by deadline
//! so expired entries come out in order without a scan. The storage under
//! [`super::conntrack`] and [`super::affinity`], like the LRU hash maps
//! Cilium keeps them in; what a deadline means is theirs to decide.

use alloc::collections::{BTreeMap, BTreeSet};
use smoltcp::time::Instant;

/// No room for another entry: the table is at its size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

#[derive(Clone, Debug)]
pub(crate) struct Expiring<K: Ord + Copy, V> {
    entries: BTreeMap<K, (Instant, V)>,
    deadlines: BTreeSet<(Instant, K)>,
    capacity: usize,
}

impl<K: Ord + Copy, V> Expiring<K, V> {
    /// An empty map holding at most `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        Expiring {
            entries: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every value and its deadline, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&V, Instant)> {
        self.entries.values().map(|(deadline, v)| (v, *deadline))
    }

    /// The entry under `key` and its deadline, if it is still live at `now`.
    pub(crate) fn get_mut(&mut self, key: &K, now: Instant) -> Option<(Instant, &mut V)> {
        match self.entries.get_mut(key) {
            Some((deadline, value)) if *deadline > now => Some((*deadline, value)),
            _ => None,
        }
    }

    /// Move `key`'s deadline.
    pub(crate) fn set_deadline(&mut self, key: &K, deadline: Instant) {
        if let Some((old, _)) = self.entries.get_mut(key) {
            self.deadlines.remove(&(*old, *key));
            *old = deadline;
            self.deadlines.insert((deadline, *key));
        }
    }

    /// Add or replace the entry under `key`; [`Full`] when a new key finds
    /// the map at capacity.
    pub(crate) fn insert(&mut self, key: K, value: V, deadline: Instant) -> Result<(), Full> {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            return Err(Full);
        }
        if let Some((old, _)) = self.entries.insert(key, (deadline, value)) {
            self.deadlines.remove(&(old, key));
        }
        self.deadlines.insert((deadline, key));
        Ok(())
    }

    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let (deadline, value) = self.entries.remove(key)?;
        self.deadlines.remove(&(deadline, *key));
        Some(value)
    }

    /// Remove and return the entry with the earliest deadline if that
    /// deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(K, V)> {
        let &(deadline, key) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop_first();
        let (_, value) = self.entries.remove(&key)?;
        Some((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn entries_expire_in_deadline_order_and_capacity_holds() {
        let mut map = Expiring::new(2);
        assert_eq!(map.insert(1, "a", at(10)), Ok(()));
        assert_eq!(map.insert(2, "b", at(5)), Ok(()));
        assert_eq!(map.insert(3, "c", at(1)), Err(Full));
        assert_eq!(
            map.insert(1, "a2", at(12)),
            Ok(()),
            "replacing needs no room"
        );
        map.set_deadline(&2, at(20));
        assert!(map.get_mut(&1, at(11)).is_some());
        assert!(
            map.get_mut(&1, at(12)).is_none(),
            "a deadline reached is expired"
        );
        assert_eq!(map.pop_expired(at(11)), None);
        assert_eq!(map.pop_expired(at(12)), Some((1, "a2")));
        assert_eq!(map.pop_expired(at(30)), Some((2, "b")));
        assert_eq!(map.len(), 0);
        assert_eq!(map.insert(3, "c", at(1)), Ok(()));
        assert_eq!(map.remove(&3), Some("c"));
        assert_eq!(map.pop_expired(at(100)), None);
    }
}
