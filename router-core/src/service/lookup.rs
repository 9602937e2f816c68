//! The allocation-free half of backend selection, shared with eBPF: the flow
//! hash Cilium's datapath computes for a service flow, the Maglev lookup
//! `table[hash % M]`, and [`select`], which picks a new flow's backend by
//! `random` or Maglev, and [`select_for_socket`], the socket-level choice.
//!
//! Owns the hash (Bob Jenkins' `jhash` as the Linux kernel and Cilium's
//! `bpf/lib/jhash.h` define it), the fields Cilium feeds it
//! (`bpf/lib/hash.h` `__hash_from_tuple_v4`/`_v6`, called from
//! `lb4_select_backend_id_maglev` in `bpf/lib/lb.h`), and the lookup walk
//! over a [`Lut`], a context trait implemented by a slice here and by an
//! array map in the eBPF program. Building the table is
//! `maglev`'s job (it needs allocation); conntrack and NAT are the datapath's.
//!
//! ```text
//!  a = client address            (the service address is left out on purpose:
//!  b = service port << 16        a client reaches the same backend on every
//!      | client port (0 with     address of the service)
//!        session affinity)
//!  c = protocol
//!  h = jhash_3words(a, b, c, HASH_INIT4_SEED)        (IPv6: two mixes, seed 6)
//!
//!  Lut: M backend IDs (M prime)  ──  backend = Lut[h % M]   (0: none)
//! ```
//!
//! Words are read the way Cilium reads them on a little-endian machine: an
//! address or port is taken as the little-endian integer of its wire bytes
//! (`HASH_WORD32_LE`/`HASH_WORD16_LE`), so the result is the same on every
//! host and equals what the eBPF program computes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `JHASH_INITVAL`, the golden-ratio start value of `jhash`.
pub const JHASH_INITVAL: u32 = 0xdead_beef;

/// The backend ID meaning "no backend" (Cilium's backend IDs start at 1).
pub const NO_BACKEND: u32 = 0;

/// `__jhash_mix`: mix three words reversibly.
#[inline(always)]
pub fn jhash_mix(mut a: u32, mut b: u32, mut c: u32) -> (u32, u32, u32) {
    a = a.wrapping_sub(c) ^ c.rotate_left(4);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a) ^ a.rotate_left(6);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b) ^ b.rotate_left(8);
    b = b.wrapping_add(a);
    a = a.wrapping_sub(c) ^ c.rotate_left(16);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a) ^ a.rotate_left(19);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b) ^ b.rotate_left(4);
    b = b.wrapping_add(a);
    (a, b, c)
}

/// `__jhash_final`: the final avalanche of three words; the hash is the third.
#[inline(always)]
pub fn jhash_final(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    (c ^ b).wrapping_sub(b.rotate_left(24))
}

/// `jhash_3words(a, b, c, initval)`.
#[inline(always)]
pub fn jhash_3words(a: u32, b: u32, c: u32, initval: u32) -> u32 {
    let init = initval.wrapping_add(JHASH_INITVAL).wrapping_add(3 << 2);
    jhash_final(
        a.wrapping_add(init),
        b.wrapping_add(init),
        c.wrapping_add(init),
    )
}

/// The ports word: service port in the high half, client port in the low,
/// each as the little-endian value of its two wire bytes.
#[inline(always)]
fn ports_word(client_port: u16, service_port: u16) -> u32 {
    let le = |port: u16| u32::from(u16::from_le_bytes(port.to_be_bytes()));
    (le(service_port) << 16) | le(client_port)
}

/// Cilium's flow hash of an IPv4 service flow (`__hash_from_tuple_v4`):
/// `jhash_3words(client address, service port << 16 | client port,
/// protocol, seed)`. `seed` is `HASH_INIT4_SEED` (`maglev::Config`'s
/// `seed_jhash0`). With session affinity Cilium passes client port 0, so all
/// of a client's connections hash alike.
#[inline(always)]
pub fn flow_hash_v4(
    seed: u32,
    client: Ipv4Addr,
    client_port: u16,
    service_port: u16,
    protocol: u8,
) -> u32 {
    jhash_3words(
        u32::from_le_bytes(client.octets()),
        ports_word(client_port, service_port),
        u32::from(protocol),
        seed,
    )
}

/// Cilium's flow hash of an IPv6 service flow (`__hash_from_tuple_v6`): the
/// client address's four words, then ports and protocol, mixed, with `seed`
/// (`HASH_INIT6_SEED`, `seed_jhash1`) added before the final round.
#[inline(always)]
pub fn flow_hash_v6(
    seed: u32,
    client: Ipv6Addr,
    client_port: u16,
    service_port: u16,
    protocol: u8,
) -> u32 {
    let o = client.octets();
    let word = |i: usize| u32::from_le_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
    let (a, b, c) = jhash_mix(word(0), word(1), word(2));
    let (a, b, c) = jhash_mix(
        a.wrapping_add(word(3)),
        b.wrapping_add(ports_word(client_port, service_port)),
        c.wrapping_add(u32::from(protocol)),
    );
    jhash_final(a.wrapping_add(seed), b, c)
}

/// Read access to one service's Maglev lookup table (a slice, or the inner
/// array map of Cilium's `cilium_lb4_maglev` in eBPF).
pub trait Lut {
    /// The table size M (a prime; 0 for a service without backends).
    fn size(&self) -> u32;
    /// Entry `index` (a backend ID), or `None` past the end.
    fn entry(&self, index: u32) -> Option<u32>;
}

impl Lut for [u32] {
    #[inline(always)]
    fn size(&self) -> u32 {
        u32::try_from(self.len()).unwrap_or(u32::MAX)
    }
    #[inline(always)]
    fn entry(&self, index: u32) -> Option<u32> {
        self.get(usize::try_from(index).ok()?).copied()
    }
}

/// The backend ID for a flow hash: `table[hash % M]`, or [`NO_BACKEND`] for
/// an empty table or an out-of-bounds read (which a well-formed table never
/// has), as Cilium's `map_array_get_32` returns 0.
#[inline(always)]
pub fn maglev_backend<L: Lut + ?Sized>(lut: &L, hash: u32) -> u32 {
    match lut.size() {
        0 => NO_BACKEND,
        m => lut.entry(hash % m).unwrap_or(NO_BACKEND),
    }
}

/// How a new flow picks its backend (`loadBalancer.algorithm`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// A random active backend (Cilium's default).
    #[default]
    Random,
    /// Maglev consistent hashing: every node picks the same backend.
    Maglev,
}

impl Algorithm {
    /// The name Cilium's `loadBalancer.algorithm` and `--bpf-lb-algorithm` use.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Random => "random",
            Algorithm::Maglev => "maglev",
        }
    }

    /// The algorithm Cilium names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Algorithm::Random, Algorithm::Maglev]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// What [`select`] knows about a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The client's address.
    pub client: IpAddr,
    /// The client's port (Maglev hashes 0 instead under session affinity,
    /// so all of a client's connections land alike).
    pub client_port: u16,
    /// The frontend's port.
    pub service_port: u16,
    /// The IP protocol number.
    pub protocol: u8,
    /// Whether the frontend has session affinity.
    pub affinity: bool,
}

/// The backend ID a new `flow` gets from a backend set: `active` holds the
/// set's active IDs (the slots `random` picks from, as
/// `lb4_select_backend_id_random`: `random % count`), `maglev` its Maglev
/// table (hashed with `seeds`: `HASH_INIT4_SEED`, `HASH_INIT6_SEED`).
/// [`NO_BACKEND`] when the set is empty.
#[inline(always)]
pub fn select<A: Lut + ?Sized, M: Lut + ?Sized>(
    algorithm: Algorithm,
    active: &A,
    maglev: &M,
    seeds: [u32; 2],
    flow: &Flow,
    random: u32,
) -> u32 {
    match algorithm {
        Algorithm::Random => match active.size() {
            0 => NO_BACKEND,
            n => active.entry(random % n).unwrap_or(NO_BACKEND),
        },
        Algorithm::Maglev => {
            let client_port = if flow.affinity { 0 } else { flow.client_port };
            let hash = match flow.client {
                IpAddr::V4(client) => flow_hash_v4(
                    seeds[0],
                    client,
                    client_port,
                    flow.service_port,
                    flow.protocol,
                ),
                IpAddr::V6(client) => flow_hash_v6(
                    seeds[1],
                    client,
                    client_port,
                    flow.service_port,
                    flow.protocol,
                ),
            };
            maglev_backend(maglev, hash)
        }
    }
}

/// The slot number of a socket's `connect()` or `sendmsg()` to a frontend
/// (Cilium's `sock_select_slot` in `bpf/bpf_sock.c`): the call's random
/// number for TCP, the socket's cookie for UDP, so that every datagram one
/// UDP socket sends to the service reaches the same backend.
#[inline(always)]
pub fn socket_slot(protocol: u8, random: u32, cookie: u64) -> u64 {
    const TCP: u8 = 6;
    if protocol == TCP {
        u64::from(random)
    } else {
        cookie
    }
}

/// The backend ID Cilium's socket-level balancer gives a socket with slot
/// number `slot` ([`socket_slot`]): the active backend at `slot % count`,
/// whatever the algorithm. Maglev is for packets: at `connect()` the
/// socket has no source address yet to hash. [`NO_BACKEND`] when no
/// backend is active.
#[inline(always)]
pub fn select_for_socket<A: Lut + ?Sized>(active: &A, slot: u64) -> u32 {
    match active.size() {
        0 => NO_BACKEND,
        n => active
            .entry((slot % u64::from(n)) as u32)
            .unwrap_or(NO_BACKEND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from a C build of the `__jhash_mix`/`__jhash_final`
    // macros and `jhash_3words` of Cilium's bpf/lib/jhash.h, transcribed
    // independently of this file, run on x86-64 (little-endian).
    #[test]
    fn jhash_3words_matches_the_c_macros() {
        assert_eq!(jhash_3words(0, 0, 0, 0), 0x1b68_e557);
        assert_eq!(jhash_3words(1, 2, 3, 0xcafe), 0x3d70_b548);
    }

    #[test]
    fn flow_hashes_match_the_c_macros() {
        // 10.0.0.1:40000 → port 80, TCP, seed 0xcafe (Cilium's BPF test seed).
        let v4 = flow_hash_v4(0xcafe, Ipv4Addr::new(10, 0, 0, 1), 40000, 80, 6);
        assert_eq!(v4, 0x6586_fe5b);
        let v6 = flow_hash_v6(0xeb9f, "fd00::1".parse().unwrap(), 40000, 80, 6);
        assert_eq!(v6, 0xeb12_4c96);
    }

    #[test]
    fn destination_is_not_hashed_and_affinity_drops_the_client_port() {
        let client = Ipv4Addr::new(192, 168, 1, 7);
        let a = flow_hash_v4(1, client, 1000, 80, 6);
        assert_ne!(a, flow_hash_v4(1, client, 1001, 80, 6));
        assert_ne!(a, flow_hash_v4(1, client, 1000, 443, 6));
        assert_ne!(a, flow_hash_v4(2, client, 1000, 80, 6));
        assert_ne!(a, flow_hash_v4(1, client, 1000, 80, 17));
        assert_eq!(
            flow_hash_v4(1, client, 0, 80, 6),
            flow_hash_v4(1, client, 0, 80, 6)
        );
    }

    #[test]
    fn lookup_is_hash_mod_m() {
        let table: [u32; 7] = [11, 12, 13, 14, 15, 16, 17];
        assert_eq!(maglev_backend(&table[..], 0), 11);
        assert_eq!(maglev_backend(&table[..], 9), 13);
        assert_eq!(
            maglev_backend(&table[..], u32::MAX),
            table[(u32::MAX % 7) as usize]
        );
        assert_eq!(maglev_backend(&[][..], 5), NO_BACKEND);
    }

    #[test]
    fn random_takes_random_mod_count_and_maglev_ignores_it() {
        let active: [u32; 3] = [4, 7, 9];
        let lut: [u32; 7] = [4, 7, 9, 4, 7, 9, 4];
        let flow = Flow {
            client: IpAddr::from([10, 0, 0, 1]),
            client_port: 40000,
            service_port: 80,
            protocol: 6,
            affinity: false,
        };
        let pick = |algorithm, random| {
            select(algorithm, &active[..], &lut[..], [0xcafe, 0], &flow, random)
        };
        assert_eq!(pick(Algorithm::Random, 4), 7);
        assert_eq!(
            pick(Algorithm::Random, u32::MAX),
            active[(u32::MAX % 3) as usize]
        );
        let hash = flow_hash_v4(0xcafe, Ipv4Addr::new(10, 0, 0, 1), 40000, 80, 6);
        assert_eq!(pick(Algorithm::Maglev, 1), lut[(hash % 7) as usize]);
        assert_eq!(pick(Algorithm::Maglev, 1), pick(Algorithm::Maglev, 2));
        let empty: [u32; 0] = [];
        assert_eq!(
            select(Algorithm::Random, &empty[..], &empty[..], [0, 0], &flow, 3),
            NO_BACKEND
        );
    }

    #[test]
    fn a_socket_takes_the_active_backend_at_its_slot() {
        let active: [u32; 3] = [3, 7, 9];
        // TCP: the random number; UDP: the cookie, all 64 bits of it.
        assert_eq!(socket_slot(6, 4, 1 << 40), 4);
        assert_eq!(socket_slot(17, 4, (1 << 40) + 2), (1 << 40) + 2);
        assert_eq!(select_for_socket(&active[..], 4), 7);
        assert_eq!(select_for_socket(&active[..], (1 << 40) + 2), 3);
        let empty: [u32; 0] = [];
        assert_eq!(select_for_socket(&empty[..], 4), NO_BACKEND);
    }
}
