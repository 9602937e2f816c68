//! Cluster-pool IPAM, as Cilium's operator and agent do it.
//!
//! Owns the split of `clusterPoolIPv4PodCIDRList` into per-node pod CIDRs of
//! `clusterPoolIPv4MaskSize` (in node-join order, like the operator), and each
//! node's RNG for its addresses inside its CIDR: first the router address
//! (`cilium_host`), then one per pod, picked at random among the free ones
//! (router-core's `ipam::node`, which the agent uses too). Does not know
//! about hosts or routes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::rng::SimRng;

/// The operator's pool of pod CIDRs.
#[derive(Debug, Clone)]
pub struct ClusterPool {
    pools: Vec<Ipv4Net>,
    mask: u8,
    next: usize,
}

impl ClusterPool {
    /// A pool handing out `/mask` blocks from `pools` in order.
    pub fn new(pools: Vec<Ipv4Net>, mask: u8) -> Self {
        ClusterPool {
            pools,
            mask,
            next: 0,
        }
    }

    /// The next pod CIDR, or `None` when every pool is used up.
    pub fn allocate(&mut self) -> Option<Ipv4Net> {
        let mut index = self.next;
        for pool in &self.pools {
            let blocks = 1usize << (self.mask - pool.prefix_len());
            if index < blocks {
                self.next += 1;
                let base =
                    pool.network().to_bits() + ((index as u32) << (32 - u32::from(self.mask)));
                return Some(
                    Ipv4Net::new(Ipv4Addr::from_bits(base), self.mask)
                        .expect("mask checked at load"),
                );
            }
            index -= blocks;
        }
        None
    }
}

/// One node's pod addresses: router-core's allocator drawing from the
/// node's seeded RNG.
#[derive(Debug, Clone)]
pub struct NodeIpam {
    addresses: router_core::ipam::node::NodeIpam,
    rng: SimRng,
}

impl NodeIpam {
    /// Addresses of `cidr`, drawn with `rng`.
    pub fn new(cidr: Ipv4Net, rng: SimRng) -> Self {
        NodeIpam {
            addresses: router_core::ipam::node::NodeIpam::new(cidr),
            rng,
        }
    }

    /// The node's pod CIDR.
    pub fn cidr(&self) -> Ipv4Net {
        self.addresses.cidr()
    }

    /// A random free address (not the network or broadcast address), or `None` when full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        let rng = &mut self.rng;
        self.addresses.allocate(|free| rng.below(free))
    }

    /// Give an address back.
    pub fn release(&mut self, addr: Ipv4Addr) {
        self.addresses.release(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_in_join_order() {
        let mut pool = ClusterPool::new(vec!["172.20.0.0/16".parse().unwrap()], 24);
        let got: Vec<String> = (0..3)
            .map(|_| pool.allocate().unwrap().to_string())
            .collect();
        assert_eq!(got, ["172.20.0.0/24", "172.20.1.0/24", "172.20.2.0/24"]);
        let mut tiny = ClusterPool::new(
            vec![
                "10.0.0.0/23".parse().unwrap(),
                "10.9.0.0/24".parse().unwrap(),
            ],
            24,
        );
        assert_eq!(tiny.allocate().unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(tiny.allocate().unwrap().to_string(), "10.0.1.0/24");
        assert_eq!(tiny.allocate().unwrap().to_string(), "10.9.0.0/24");
        assert_eq!(tiny.allocate(), None);
    }

    #[test]
    fn node_addresses_are_random_unique_and_exhaust() {
        let cidr: Ipv4Net = "172.20.1.0/30".parse().unwrap();
        let mut ipam = NodeIpam::new(cidr, SimRng::new(1));
        let a = ipam.allocate().unwrap();
        let b = ipam.allocate().unwrap();
        assert_ne!(a, b);
        assert!(cidr.contains(&a) && cidr.contains(&b));
        assert_eq!(ipam.allocate(), None);
        ipam.release(a);
        assert_eq!(ipam.allocate(), Some(a));
        let mut again = NodeIpam::new("172.20.1.0/24".parse().unwrap(), SimRng::new(1));
        let mut other = NodeIpam::new("172.20.1.0/24".parse().unwrap(), SimRng::new(2));
        let x: Vec<_> = (0..5).map(|_| again.allocate().unwrap()).collect();
        let y: Vec<_> = (0..5).map(|_| other.allocate().unwrap()).collect();
        assert_ne!(x, y, "seed changes the addresses");
    }
}
