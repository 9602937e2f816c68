//! Flow hashing for ECMP: which flow a packet belongs to, as a 32-bit hash.
//!
//! Owns the hash function and the fields each policy covers, like Linux
//! `fib_multipath_hash_policy` 0 (L3: source and destination address) and 1
//! (L4: the 5-tuple). Pure integer arithmetic over fixed-size words with no
//! loops over packet data, so the eBPF programs compile the same code.
//! It does not pick a member (see [`super::buckets`]).

use core::net::IpAddr;

/// Which header fields feed the flow hash (Linux `fib_multipath_hash_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashPolicy {
    /// Policy 0: source and destination address.
    #[default]
    L3,
    /// Policy 1: source and destination address, protocol, source and destination port.
    L4,
}

impl HashPolicy {
    /// The policy for a Linux `fib_multipath_hash_policy` value (0 or 1).
    pub fn from_sysctl(value: u8) -> Option<Self> {
        match value {
            0 => Some(HashPolicy::L3),
            1 => Some(HashPolicy::L4),
            _ => None,
        }
    }
}

/// The fields of a packet that identify its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, …).
    pub protocol: u8,
    /// Transport source port, 0 when the protocol has none.
    pub src_port: u16,
    /// Transport destination port, 0 when the protocol has none.
    pub dst_port: u16,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Absorb one 32-bit word into the running hash (MurmurHash3 x86_32 body round).
#[inline(always)]
pub fn mix(h: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Final avalanche (MurmurHash3 `fmix32`) over the hash and the number of words absorbed.
#[inline(always)]
pub fn finish(h: u32, words: u32) -> u32 {
    let mut h = h ^ (words * 4);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of an IPv4 flow. Addresses are the big-endian (wire order) words.
#[inline(always)]
pub fn hash_v4(policy: HashPolicy, seed: u32, src: u32, dst: u32, l4: (u8, u16, u16)) -> u32 {
    let h = mix(mix(seed, src), dst);
    match policy {
        HashPolicy::L3 => finish(h, 2),
        HashPolicy::L4 => finish(mix(mix(h, u32::from(l4.0)), ports(l4)), 4),
    }
}

/// Hash of an IPv6 flow. Addresses are four big-endian words each.
#[inline(always)]
pub fn hash_v6(
    policy: HashPolicy,
    seed: u32,
    src: [u32; 4],
    dst: [u32; 4],
    l4: (u8, u16, u16),
) -> u32 {
    let mut h = seed;
    h = mix(mix(mix(mix(h, src[0]), src[1]), src[2]), src[3]);
    h = mix(mix(mix(mix(h, dst[0]), dst[1]), dst[2]), dst[3]);
    match policy {
        HashPolicy::L3 => finish(h, 8),
        HashPolicy::L4 => finish(mix(mix(h, u32::from(l4.0)), ports(l4)), 10),
    }
}

/// Bucket index for a flow hash: multiply-shift, no division (cheap in eBPF too).
#[inline(always)]
pub fn bucket_of(hash: u32, buckets: usize) -> usize {
    ((u64::from(hash) * buckets as u64) >> 32) as usize
}

#[inline(always)]
fn ports(l4: (u8, u16, u16)) -> u32 {
    (u32::from(l4.1) << 16) | u32::from(l4.2)
}

fn words(a: core::net::Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    core::array::from_fn(|i| {
        u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
    })
}

impl FlowKey {
    /// The flow hash of this key under `policy` with `seed`. Mixed-family keys hash
    /// the IPv4 address as an IPv4-mapped IPv6 address.
    pub fn hash(&self, policy: HashPolicy, seed: u32) -> u32 {
        let l4 = (self.protocol, self.src_port, self.dst_port);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => hash_v4(policy, seed, s.to_bits(), d.to_bits(), l4),
            (s, d) => hash_v6(policy, seed, words(v6(s)), words(v6(d)), l4),
        }
    }
}

fn v6(a: IpAddr) -> core::net::Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sport: u16) -> FlowKey {
        FlowKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.1.1".parse().unwrap(),
            protocol: 6,
            src_port: sport,
            dst_port: 80,
        }
    }

    #[test]
    fn murmur3_vectors() {
        // MurmurHash3_x86_32 of the little-endian bytes of one word, seed 0:
        // murmur3_32(b"\x00\x00\x00\x00", 0) = 0x2362f9de (reference implementation).
        assert_eq!(finish(mix(0, 0), 1), 0x2362_f9de);
    }

    #[test]
    fn l3_ignores_ports_l4_does_not() {
        assert_eq!(
            key(1000).hash(HashPolicy::L3, 7),
            key(2000).hash(HashPolicy::L3, 7)
        );
        assert_ne!(
            key(1000).hash(HashPolicy::L4, 7),
            key(2000).hash(HashPolicy::L4, 7)
        );
    }

    #[test]
    fn seed_changes_the_hash() {
        assert_ne!(
            key(1).hash(HashPolicy::L4, 1),
            key(1).hash(HashPolicy::L4, 2)
        );
    }

    #[test]
    fn bucket_of_spans_the_table() {
        assert_eq!(bucket_of(0, 256), 0);
        assert_eq!(bucket_of(u32::MAX, 256), 255);
        assert_eq!(bucket_of(1 << 31, 256), 128);
    }

    #[test]
    fn sysctl_values() {
        assert_eq!(HashPolicy::from_sysctl(1), Some(HashPolicy::L4));
        assert_eq!(HashPolicy::from_sysctl(2), None);
    }
}
