//! Poptrie: the longest-prefix-match lookup structure behind the FIB.
//!
//! Owns only the compiled lookup arrays (direct table, nodes, leaves) and their
//! free lists. It does not own routes: every update reads the winning routes
//! from a [`LeafSource`] (the FIB's RIB) and recompiles the affected part.
//!
//! The layout follows Asai & Ohara, "Poptrie: A Compressed Trie with Population
//! Count for Fast and Scalable Software IP Routing Table Lookup" (SIGCOMM 2015):
//! a direct-pointing table indexed by the top `s` bits of the key, then internal
//! nodes of stride 6 whose children are found with a population count, with
//! runs of equal leaves stored once.
//!
//! Every array is flat and index-linked; the layout and the walk live in
//! [`crate::lpm`] (alloc-free) so the eBPF program walks its maps the same way.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::lpm::{self, Arrays};
pub use crate::lpm::{Key, LEAF_FLAG, NO_ROUTE, Node, STRIDE};

/// Where the trie reads the winning routes from: prefixes are `(masked key, length)`.
pub trait LeafSource<K: Key> {
    /// The leaf value of exactly this prefix, if it has a route.
    fn leaf(&self, key: K, len: u8) -> Option<u32>;
    /// Every prefix whose masked key lies in `lo..=hi`, in `(key, len)` order.
    fn prefixes_in(&self, lo: K, hi: K) -> impl Iterator<Item = (K, u8, u32)>;
}

impl<K: Key, V> LeafSource<K> for (&BTreeMap<(K, u8), V>, fn(&V) -> Option<u32>) {
    fn leaf(&self, key: K, len: u8) -> Option<u32> {
        self.0.get(&(key, len)).and_then(self.1)
    }
    fn prefixes_in(&self, lo: K, hi: K) -> impl Iterator<Item = (K, u8, u32)> {
        let f = self.1;
        self.0
            .range((lo, 0)..=(hi, u8::MAX))
            .filter_map(move |(&(k, l), v)| f(v).map(|leaf| (k, l, leaf)))
    }
}

/// A compiled longest-prefix-match table over keys of type `K`.
#[derive(Debug, Clone)]
pub struct Poptrie<K: Key> {
    direct_bits: u32,
    direct: Vec<u32>,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    free_nodes: Vec<Vec<u32>>,
    free_leaves: Vec<Vec<u32>>,
    _key: core::marker::PhantomData<K>,
}

impl<K: Key> Poptrie<K> {
    /// An empty table whose direct-pointing level uses the top `direct_bits` bits.
    pub fn new(direct_bits: u32) -> Self {
        assert!((1..=24).contains(&direct_bits) && direct_bits < K::BITS);
        Poptrie {
            direct_bits,
            direct: vec![LEAF_FLAG | NO_ROUTE; 1 << direct_bits],
            nodes: Vec::new(),
            leaves: Vec::new(),
            free_nodes: vec![Vec::new(); 65],
            free_leaves: vec![Vec::new(); 65],
            _key: core::marker::PhantomData,
        }
    }

    /// Longest-prefix match: the leaf value of the longest prefix containing `key`, or [`NO_ROUTE`].
    #[inline]
    pub fn lookup(&self, key: K) -> u32 {
        lpm::lookup(self, self.direct_bits, key)
    }

    /// Recompile everything the prefix `key/len` affects, reading routes from `src`.
    /// Call after the prefix's winning route was added, changed or removed.
    pub fn update(&mut self, src: &impl LeafSource<K>, key: K, len: u8) {
        let s = self.direct_bits;
        let block_len = (u32::from(len)).min(s) as u8;
        let block_key = key.masked(block_len);
        let default = (0..block_len)
            .rev()
            .find_map(|l| src.leaf(block_key.masked(l), l))
            .unwrap_or(NO_ROUTE);
        let first_slot = block_key.chunk(0, s);
        let slots = 1usize << (s - u32::from(block_len));

        // Paint the direct level with every prefix no longer than `s` inside the block.
        let inside: Vec<(K, u8, u32)> = src
            .prefixes_in(block_key, block_key.last(block_len))
            .filter(|&(_, l, _)| l >= block_len)
            .collect();
        let mut painted = vec![default; slots];
        let mut short: Vec<(u8, usize, u32)> = inside
            .iter()
            .filter(|&&(_, l, _)| u32::from(l) <= s)
            .map(|&(k, l, v)| (l, k.chunk(0, s) - first_slot, v))
            .collect();
        short.sort_by_key(|&(l, _, _)| l);
        for (l, start, v) in short {
            let n = 1usize << (s - u32::from(l));
            painted[start..start + n].fill(v);
        }

        // Slots holding longer prefixes get a node; the rest a direct leaf. `inside`
        // is in key order, so each slot's long prefixes are one run.
        let mut long = inside
            .into_iter()
            .filter(|&(_, l, _)| u32::from(l) > s)
            .peekable();
        for (i, &leaf) in painted.iter().enumerate() {
            let slot = first_slot + i;
            let mut mine = Vec::new();
            while let Some(p) = long.next_if(|p| p.0.chunk(0, s) == slot) {
                mine.push(p);
            }
            let old = self.direct[slot];
            if old & LEAF_FLAG == 0 {
                self.free_below(old);
                self.free_nodes[1].push(old);
            }
            self.direct[slot] = if mine.is_empty() {
                LEAF_FLAG | leaf
            } else {
                let idx = self.alloc_nodes(1);
                self.build(idx, s, leaf, &mine);
                idx
            };
        }
    }

    /// Compile node `idx` at key depth `depth` from `prefixes` (all longer than
    /// `depth`, inside the node's range, in key order) over the inherited `default`.
    fn build(&mut self, idx: u32, depth: u32, default: u32, prefixes: &[(K, u8, u32)]) {
        let end = depth + STRIDE;
        let mut leaf = [default; 64];
        let mut short: Vec<(u8, usize, u32)> = prefixes
            .iter()
            .filter(|&&(_, l, _)| u32::from(l) <= end)
            .map(|&(k, l, v)| (l, k.chunk(depth, STRIDE), v))
            .collect();
        short.sort_by_key(|&(l, _, _)| l);
        for (l, start, v) in short {
            let n = 1usize << (end - u32::from(l));
            leaf[start..start + n].fill(v);
        }

        // Runs of children that need their own node, in child order.
        let mut children: Vec<(usize, usize, usize)> = Vec::new();
        let mut vector = 0u64;
        let mut i = 0;
        while i < prefixes.len() {
            if u32::from(prefixes[i].1) <= end {
                i += 1;
                continue;
            }
            let c = prefixes[i].0.chunk(depth, STRIDE);
            let start = i;
            while i < prefixes.len() && prefixes[i].0.chunk(depth, STRIDE) == c {
                i += 1;
            }
            vector |= 1 << c;
            children.push((c, start, i));
        }

        let mut leafvec = 0u64;
        let mut runs: Vec<u32> = Vec::new();
        for (c, &v) in leaf.iter().enumerate() {
            if vector & (1 << c) == 0 && runs.last() != Some(&v) {
                leafvec |= 1 << c;
                runs.push(v);
            }
        }
        let base0 = self.alloc_leaves(runs.len());
        self.leaves[base0 as usize..base0 as usize + runs.len()].copy_from_slice(&runs);
        let base1 = self.alloc_nodes(children.len());
        self.nodes[idx as usize] = Node {
            vector,
            leafvec,
            base0,
            base1,
        };
        for (n, &(c, start, stop)) in children.iter().enumerate() {
            let sub: Vec<(K, u8, u32)> = prefixes[start..stop]
                .iter()
                .copied()
                .filter(|&(_, l, _)| u32::from(l) > end)
                .collect();
            self.build(base1 + n as u32, end, leaf[c], &sub);
        }
    }

    /// Free everything below node `idx` (its child blocks and leaf runs), not `idx` itself.
    fn free_below(&mut self, idx: u32) {
        let node = self.nodes[idx as usize];
        let children = node.vector.count_ones();
        for n in 0..children {
            self.free_below(node.base1 + n);
        }
        if children > 0 {
            self.free_nodes[children as usize].push(node.base1);
        }
        let leaves = node.leafvec.count_ones();
        if leaves > 0 {
            let at = node.base0 as usize;
            self.leaves[at..at + leaves as usize].fill(NO_ROUTE);
            self.free_leaves[leaves as usize].push(node.base0);
        }
        self.nodes[idx as usize] = Node::default();
    }

    fn alloc_nodes(&mut self, n: usize) -> u32 {
        if n == 0 {
            return 0;
        }
        self.free_nodes[n].pop().unwrap_or_else(|| {
            let at = self.nodes.len();
            self.nodes.resize(at + n, Node::default());
            at as u32
        })
    }

    fn alloc_leaves(&mut self, n: usize) -> u32 {
        if n == 0 {
            return 0;
        }
        self.free_leaves[n].pop().unwrap_or_else(|| {
            let at = self.leaves.len();
            self.leaves.resize(at + n, NO_ROUTE);
            at as u32
        })
    }

    /// Bits of the key resolved by the direct-pointing table.
    pub fn direct_bits(&self) -> u32 {
        self.direct_bits
    }
    /// The direct-pointing table: `LEAF_FLAG | value`, or a node index.
    pub fn direct(&self) -> &[u32] {
        &self.direct
    }
    /// The node array (including freed, zeroed nodes awaiting reuse).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// The leaf array (freed runs hold [`NO_ROUTE`], so every other value is a live leaf).
    pub fn leaves(&self) -> &[u32] {
        &self.leaves
    }
    /// Bytes held by the lookup arrays.
    pub fn memory_bytes(&self) -> usize {
        self.direct.capacity() * 4
            + self.nodes.capacity() * core::mem::size_of::<Node>()
            + self.leaves.capacity() * 4
    }
}

impl<K: Key> Arrays for Poptrie<K> {
    #[inline(always)]
    fn direct(&self, i: usize) -> Option<u32> {
        self.direct.get(i).copied()
    }
    #[inline(always)]
    fn node(&self, i: u32) -> Option<Node> {
        self.nodes.get(i as usize).copied()
    }
    #[inline(always)]
    fn leaf(&self, i: u32) -> Option<u32> {
        self.leaves.get(i as usize).copied()
    }
}
