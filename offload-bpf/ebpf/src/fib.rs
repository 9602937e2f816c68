//! Route lookup in the maps: router-core's poptrie walk ([`lpm::lookup`]) over
//! the trie maps of one [`Half`], then the ECMP member from the group's bucket
//! table with router-core's [`bucket_of`]. The same code as the userspace FIB, reading maps.
//!
//! IPv6 keys are [`V6Key`] rather than router-core's `u128`: the BPF backend has
//! no 128-bit shifts (`__ashlti3` is not supported), so the key arithmetic is
//! done on two `u64` halves; the walk itself is router-core's.

use aya_ebpf::maps::Array;
use nexthop_offload_bpf_common::{
    BUCKETS, FibNode, Nexthop, SINGLE_NEXTHOP, V4_DIRECT_BITS, V6_DIRECT_BITS,
};
use router_core::ecmp::bucket_of;
use router_core::lpm::{self, Arrays, Key, NO_ROUTE, Node};

use crate::maps::{Half, V4_DIRECT, V4_LEAVES, V4_NODES, V6_DIRECT, V6_LEAVES, V6_NODES};

/// The three arrays of one compiled trie in one half of the maps.
struct Trie {
    half: Half,
    direct: &'static Array<u32>,
    direct_bits: u32,
    nodes: &'static Array<FibNode>,
    leaves: &'static Array<u32>,
}

impl Arrays for Trie {
    #[inline(always)]
    fn direct(&self, i: usize) -> Option<u32> {
        self.half.direct(self.direct, self.direct_bits, i)
    }
    #[inline(always)]
    fn node(&self, i: u32) -> Option<Node> {
        self.half.node(self.nodes, i).map(|n| n.0)
    }
    #[inline(always)]
    fn leaf(&self, i: u32) -> Option<u32> {
        self.half.leaf(self.leaves, i)
    }
}

/// The nexthop group of the longest IPv4 prefix containing `dst`, if any.
#[inline(always)]
pub fn lookup_v4(half: Half, dst: u32) -> Option<u32> {
    let trie = Trie {
        half,
        direct: &V4_DIRECT,
        direct_bits: V4_DIRECT_BITS,
        nodes: &V4_NODES,
        leaves: &V4_LEAVES,
    };
    let group = lpm::lookup(&trie, V4_DIRECT_BITS, dst);
    (group != NO_ROUTE).then_some(group)
}

/// An IPv6 address as a trie key: its high and low 64 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct V6Key {
    hi: u64,
    lo: u64,
}

impl V6Key {
    /// The key of an address in network byte order.
    #[inline(always)]
    pub fn new(octets: &[u8; 16]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = *octets;
        V6Key {
            hi: u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            lo: u64::from_be_bytes([i, j, k, l, m, n, o, p]),
        }
    }

    /// The key shifted left by `n < 128` bits.
    #[inline(always)]
    fn shl(self, n: u32) -> Self {
        match n {
            0 => self,
            1..64 => V6Key {
                hi: (self.hi << n) | (self.lo >> (64 - n)),
                lo: self.lo << n,
            },
            _ => V6Key {
                hi: self.lo << (n - 64),
                lo: 0,
            },
        }
    }

    /// The all-ones key shifted right by `n` bits (`n < 128`): the host-bit mask of a `/n`.
    #[inline(always)]
    fn host_mask(n: u32) -> Self {
        match n {
            0 => V6Key {
                hi: u64::MAX,
                lo: u64::MAX,
            },
            1..64 => V6Key {
                hi: u64::MAX >> n,
                lo: u64::MAX,
            },
            _ => V6Key {
                hi: 0,
                lo: u64::MAX >> (n - 64),
            },
        }
    }
}

impl Key for V6Key {
    const BITS: u32 = 128;
    const ZERO: Self = V6Key { hi: 0, lo: 0 };

    #[inline(always)]
    fn chunk(self, offset: u32, width: u32) -> usize {
        (self.shl(offset).hi >> (64 - width)) as usize
    }

    #[inline(always)]
    fn masked(self, len: u8) -> Self {
        if u32::from(len) >= Self::BITS {
            return self;
        }
        let host = Self::host_mask(u32::from(len));
        V6Key {
            hi: self.hi & !host.hi,
            lo: self.lo & !host.lo,
        }
    }

    #[inline(always)]
    fn last(self, len: u8) -> Self {
        if u32::from(len) >= Self::BITS {
            return self;
        }
        let host = Self::host_mask(u32::from(len));
        V6Key {
            hi: self.hi | host.hi,
            lo: self.lo | host.lo,
        }
    }

    #[inline(always)]
    fn from_top(top: usize, s: u32) -> Self {
        V6Key {
            hi: top as u64,
            lo: 0,
        }
        .shl(Self::BITS - s)
    }
}

/// The nexthop group of the longest IPv6 prefix containing `dst`, if any.
#[inline(always)]
pub fn lookup_v6(half: Half, dst: V6Key) -> Option<u32> {
    let trie = Trie {
        half,
        direct: &V6_DIRECT,
        direct_bits: V6_DIRECT_BITS,
        nodes: &V6_NODES,
        leaves: &V6_LEAVES,
    };
    let group = lpm::lookup(&trie, V6_DIRECT_BITS, dst);
    (group != NO_ROUTE).then_some(group)
}

/// The member that a flow with this hash takes of the group a trie leaf
/// names (or the nexthop slot it holds, for a group of one).
#[inline(always)]
pub fn select(half: Half, leaf: u32, hash: u32) -> Option<&'static Nexthop> {
    if leaf & SINGLE_NEXTHOP != 0 {
        return half.nexthop(leaf & !SINGLE_NEXTHOP);
    }
    let buckets = half.group(leaf)?;
    let slot = *buckets.0.get(bucket_of(hash, BUCKETS) & (BUCKETS - 1))?;
    half.nexthop(slot)
}
