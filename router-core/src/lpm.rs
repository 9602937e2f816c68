//! Longest-prefix-match walk over a compiled poptrie: the layout and the lookup.
//!
//! Owns the node layout, the key arithmetic and the lookup loop, written
//! without allocation or unbounded loops so that the userspace FIB and the eBPF
//! program (reading the same arrays from maps) run the very same code. Building
//! and updating the arrays is [`crate::fib::poptrie`]'s job.
//!
//! ```text
//!  direct[top s bits] ──┬─ LEAF_FLAG | value   → answer
//!                       └─ node index ─────────┐
//!                                              v
//!  Node (24 bytes, #[repr(C)])
//!  +---------------------------------------------------------------+
//!  | vector  (u64): bit i set ⇔ child i is an internal node         |
//!  | leafvec (u64): bit i set ⇔ a run of equal leaves starts at i   |
//!  | base0   (u32): index of this node's first leaf in `leaves`     |
//!  | base1   (u32): index of this node's first child in `nodes`     |
//!  +---------------------------------------------------------------+
//!  child i internal: nodes[base1 + popcnt(vector  & mask(i)) - 1]
//!  child i leaf:     leaves[base0 + popcnt(leafvec & mask(i)) - 1]
//! ```

use core::fmt::Debug;

/// Stride of every internal node, in key bits (64 children: one `u64` bitmap).
pub const STRIDE: u32 = 6;

/// Set in a direct-table entry when it holds a leaf value rather than a node index.
pub const LEAF_FLAG: u32 = 1 << 31;

/// Leaf value meaning "no route". Callers store their values as non-zero `u32`s below [`LEAF_FLAG`].
pub const NO_ROUTE: u32 = 0;

/// An unsigned integer key: `u32` for IPv4, `u128` for IPv6.
pub trait Key: Copy + Ord + Debug {
    /// Width of the key in bits.
    const BITS: u32;
    /// The all-zero key.
    const ZERO: Self;
    /// `width` bits starting `offset` bits below the most significant bit,
    /// zero-padded past the end of the key. `offset < BITS`, `width <= 6`.
    fn chunk(self, offset: u32, width: u32) -> usize;
    /// The key with all but its top `len` bits cleared.
    fn masked(self, len: u8) -> Self;
    /// The key with its low `BITS - len` bits set (last key of the prefix).
    fn last(self, len: u8) -> Self;
    /// The key whose top `s` bits are `top` and whose other bits are zero.
    fn from_top(top: usize, s: u32) -> Self;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            #[inline(always)]
            fn chunk(self, offset: u32, width: u32) -> usize {
                ((self << offset) >> (Self::BITS - width)) as usize
            }
            #[inline(always)]
            fn masked(self, len: u8) -> Self {
                match u32::from(len) {
                    0 => 0,
                    l if l >= Self::BITS => self,
                    l => self & !(<$t>::MAX >> l),
                }
            }
            #[inline(always)]
            fn last(self, len: u8) -> Self {
                match u32::from(len) {
                    0 => <$t>::MAX,
                    l if l >= Self::BITS => self,
                    l => self | (<$t>::MAX >> l),
                }
            }
            #[inline(always)]
            fn from_top(top: usize, s: u32) -> Self {
                (top as $t) << (Self::BITS - s)
            }
        }
    };
}
impl_key!(u32);
impl_key!(u128);

/// One internal node of stride [`STRIDE`]. See the module docs for the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Bit `i` set: child `i` is an internal node.
    pub vector: u64,
    /// Bit `i` set: a run of identical leaves starts at child `i`.
    pub leafvec: u64,
    /// Index in the leaf array of this node's first leaf.
    pub base0: u32,
    /// Index in the node array of this node's first child node.
    pub base1: u32,
}

/// Bits `0..=i` of a `u64`.
#[inline(always)]
pub fn mask_upto(i: usize) -> u64 {
    u64::MAX >> (63 - i)
}

/// Read access to the three arrays of a compiled trie (slices, or eBPF maps).
pub trait Arrays {
    /// Entry `i` of the direct table.
    fn direct(&self, i: usize) -> Option<u32>;
    /// Node `i`.
    fn node(&self, i: u32) -> Option<Node>;
    /// Leaf `i`.
    fn leaf(&self, i: u32) -> Option<u32>;
}

/// Most node levels below a `direct_bits` direct table for `K`: the walk's loop bound.
pub const fn max_levels(key_bits: u32, direct_bits: u32) -> u32 {
    (key_bits - direct_bits).div_ceil(STRIDE)
}

/// The leaf value of the longest prefix containing `key`, or [`NO_ROUTE`]
/// (also when an index is out of bounds, which a well-formed trie never has).
#[inline(always)]
pub fn lookup<K: Key>(arrays: &impl Arrays, direct_bits: u32, key: K) -> u32 {
    let Some(entry) = arrays.direct(key.chunk(0, direct_bits)) else {
        return NO_ROUTE;
    };
    if entry & LEAF_FLAG != 0 {
        return entry & !LEAF_FLAG;
    }
    let Some(mut node) = arrays.node(entry) else {
        return NO_ROUTE;
    };
    let mut offset = direct_bits;
    for _ in 0..max_levels(K::BITS, direct_bits) {
        let i = key.chunk(offset, STRIDE);
        let below = mask_upto(i);
        if node.vector & (1 << i) != 0 {
            let idx = node.base1 + (node.vector & below).count_ones() - 1;
            let Some(next) = arrays.node(idx) else {
                return NO_ROUTE;
            };
            node = next;
            offset += STRIDE;
        } else {
            let idx = node.base0 + (node.leafvec & below).count_ones() - 1;
            return arrays.leaf(idx).unwrap_or(NO_ROUTE);
        }
    }
    NO_ROUTE
}
