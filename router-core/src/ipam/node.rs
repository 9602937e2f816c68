//! One node's pod addresses, as Cilium's agent hands them out in
//! cluster-pool mode: any free address of the node's pod CIDR but its
//! network and broadcast addresses, picked at random.
//!
//! Owns which addresses are taken. The randomness is the caller's (the
//! simulator's seeded RNG, the agent's draw), passed in as a pick among the
//! free addresses, so that both runtimes make the same choice for the same
//! draw. Does not own the split of the cluster's pools into node CIDRs (the
//! operator's) nor what an address is used for.

use alloc::collections::BTreeSet;
use core::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The addresses of one pod CIDR and which are taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIpam {
    cidr: Ipv4Net,
    used: BTreeSet<Ipv4Addr>,
}

impl NodeIpam {
    /// Every address of `cidr` free.
    pub fn new(cidr: Ipv4Net) -> Self {
        NodeIpam {
            cidr,
            used: BTreeSet::new(),
        }
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The addresses taken.
    pub fn used(&self) -> &BTreeSet<Ipv4Addr> {
        &self.used
    }

    /// Hosts of the CIDR: all of its addresses but network and broadcast.
    fn hosts(&self) -> (u32, u32) {
        let first = self.cidr.network().to_bits() + 1;
        let last = self.cidr.broadcast().to_bits().saturating_sub(1);
        (first, last)
    }

    /// Take a free address: the `pick(free)`-th free one (`pick` is given
    /// how many are free and returns an index below that), or `None` when
    /// none is free.
    pub fn allocate(&mut self, pick: impl FnOnce(u64) -> u64) -> Option<Ipv4Addr> {
        let (first, last) = self.hosts();
        let size = u64::from(last.checked_sub(first)?) + 1;
        let free = size - self.used.len() as u64;
        if free == 0 {
            return None;
        }
        let mut nth = pick(free) % free;
        for bits in first..=last {
            let addr = Ipv4Addr::from_bits(bits);
            if self.used.contains(&addr) {
                continue;
            }
            if nth == 0 {
                self.used.insert(addr);
                return Some(addr);
            }
            nth -= 1;
        }
        None
    }

    /// Take `addr` (an address handed out before a restart): whether it is
    /// one of the CIDR's hosts and was free.
    pub fn reserve(&mut self, addr: Ipv4Addr) -> bool {
        let (first, last) = self.hosts();
        (first..=last).contains(&addr.to_bits()) && self.used.insert(addr)
    }

    /// Give an address back.
    pub fn release(&mut self, addr: Ipv4Addr) {
        self.used.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_the_picked_free_hosts_and_run_out() {
        let cidr: Ipv4Net = "172.20.1.0/30".parse().unwrap();
        let mut ipam = NodeIpam::new(cidr);
        let a = ipam.allocate(|free| {
            assert_eq!(free, 2);
            1
        });
        assert_eq!(a, Some("172.20.1.2".parse().unwrap()));
        assert_eq!(ipam.allocate(|_| 7), Some("172.20.1.1".parse().unwrap()));
        assert_eq!(ipam.allocate(|_| 0), None);
        ipam.release(a.unwrap());
        assert_eq!(ipam.allocate(|_| 0), a);
    }

    #[test]
    fn reserving_takes_only_free_hosts_of_the_cidr() {
        let mut ipam = NodeIpam::new("10.0.0.0/24".parse().unwrap());
        assert!(ipam.reserve("10.0.0.9".parse().unwrap()));
        assert!(!ipam.reserve("10.0.0.9".parse().unwrap()), "taken");
        assert!(!ipam.reserve("10.0.0.0".parse().unwrap()), "network");
        assert!(!ipam.reserve("10.0.0.255".parse().unwrap()), "broadcast");
        assert!(!ipam.reserve("10.0.1.1".parse().unwrap()), "outside");
        assert_eq!(ipam.used().len(), 1);
    }
}
