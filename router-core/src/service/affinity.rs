//! Session affinity `ClientIP`: a client keeps reaching the backend it
//! reached last, as long as it comes back within the service's timeout.
//!
//! Owns the (frontend, client address) → backend table and its timing,
//! as Cilium's `cilium_lb4_affinity` map and `lb4_affinity_backend_id`
//! (`bpf/lib/lb.h`) define them: an entry is used while `now` is before
//! `last_used + timeout` and every use moves `last_used` to `now`. Whether
//! the remembered backend may still be used is the datapath's question.

use core::net::IpAddr;
use smoltcp::time::{Duration, Instant};

use super::expiring::Expiring;

/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`
/// (`DefaultClientIPServiceAffinitySeconds`, three hours).
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10800;

/// The largest timeout Kubernetes accepts (`MaxClientIPServiceAffinitySeconds`, a day).
pub const MAX_TIMEOUT_SECONDS: u32 = 86400;

/// Entries Cilium's affinity map holds (`CILIUM_LB_AFFINITY_MAP_MAX_ENTRIES`).
pub const MAX_ENTRIES: usize = 65536;

/// The affinity table, keyed by a frontend `F` and the client's address.
#[derive(Clone, Debug)]
pub struct Affinity<F: Ord + Copy, B> {
    entries: Expiring<(F, IpAddr), B>,
}

impl<F: Ord + Copy, B: Copy> Affinity<F, B> {
    /// An empty table holding at most `capacity` clients.
    pub fn new(capacity: usize) -> Self {
        Affinity {
            entries: Expiring::new(capacity),
        }
    }

    /// The backend `client` last reached through `frontend`, if that was
    /// less than `timeout` before `now`; the use refreshes the entry.
    pub fn get(
        &mut self,
        now: Instant,
        frontend: F,
        client: IpAddr,
        timeout: Duration,
    ) -> Option<B> {
        let key = (frontend, client);
        let (_, backend) = self.entries.get_mut(&key, now)?;
        let backend = *backend;
        self.entries.set_deadline(&key, now + timeout);
        Some(backend)
    }

    /// Remember that `client` reached `backend` through `frontend` at `now`;
    /// `false` when the table is full (the flow still goes through, it is
    /// just not remembered).
    pub fn record(
        &mut self,
        now: Instant,
        frontend: F,
        client: IpAddr,
        backend: B,
        timeout: Duration,
    ) -> bool {
        self.entries
            .insert((frontend, client), backend, now + timeout)
            .is_ok()
    }

    /// Drop the entries whose timeout ran out by `now`.
    pub fn expire(&mut self, now: Instant) {
        while self.entries.pop_expired(now).is_some() {}
    }

    /// Clients remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_until_timeout_after_last_use() {
        let mut table: Affinity<u16, u32> = Affinity::new(2);
        let client = IpAddr::from([192, 168, 1, 9]);
        let timeout = Duration::from_secs(u64::from(DEFAULT_TIMEOUT_SECONDS));
        assert!(table.record(Instant::from_secs(0), 1, client, 42, timeout));
        assert_eq!(
            table.get(Instant::from_secs(10_000), 1, client, timeout),
            Some(42)
        );
        assert_eq!(
            table.get(Instant::from_secs(10_000), 2, client, timeout),
            None
        );
        // Used at 10000 s: sticky until 10000 + 10800, not including it.
        assert_eq!(
            table.get(Instant::from_secs(20_799), 1, client, timeout),
            Some(42)
        );
        assert_eq!(
            table.get(Instant::from_secs(20_799 + 10_800), 1, client, timeout),
            None
        );
        table.expire(Instant::from_secs(40_000));
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_remembers_no_more() {
        let mut table: Affinity<u16, u32> = Affinity::new(1);
        let t = Duration::from_secs(10);
        assert!(table.record(Instant::from_secs(0), 1, IpAddr::from([1, 1, 1, 1]), 5, t));
        assert!(!table.record(Instant::from_secs(0), 1, IpAddr::from([2, 2, 2, 2]), 5, t));
        assert_eq!(table.len(), 1);
    }
}
