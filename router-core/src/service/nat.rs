//! Source NAT of service flows to the node's address (`loadBalancer.mode:
//! snat`): which source port a flow gets, and which flows hold which ports.
//!
//! Owns port allocation as Cilium's `snat_v4_new_mapping` (`bpf/lib/nat.h`)
//! does it: keep the client's port if it lies in the range, else start at a
//! random one; a port is taken only if the same reply tuple (same remote
//! endpoint, protocol, node address and port) is already in use, so one port
//! serves many remote endpoints; on a collision try a random port, then the
//! following ones, up to `SNAT_COLLISION_RETRIES` (128) tries. Ports come
//! from `NODEPORT_PORT_MIN_NAT..=NODEPORT_PORT_MAX_NAT` (32768–65535).
//! A mapping is its connection's reply tuple: a port is free again when no
//! tracked connection has that reply tuple (the caller answers `in_use`
//! from its conntrack table). Rewriting packets is the datapath's.
//!
//! ```text
//!  original  client:cport → backend:bport
//!  SNAT      node:nport   → backend:bport     nport in 32768..=65535
//!  reply     backend:bport → node:nport       (the key that must be unique)
//! ```
//!
//! Randomness comes in as one `u32`: its low half is the first random port
//! (`__snat_try_keep_port`), its high half the second (first retry), where
//! Cilium draws `get_prandom_u32()` twice.

use core::net::IpAddr;

use super::Tuple;

/// First source port for SNAT (`NODEPORT_PORT_MIN_NAT`, one above the NodePort range).
pub const PORT_MIN: u16 = 32768;
/// Last source port for SNAT (`NODEPORT_PORT_MAX_NAT`).
pub const PORT_MAX: u16 = 65535;
/// Ports tried before giving up (`SNAT_COLLISION_RETRIES` on kernels with
/// the large instruction limit).
pub const COLLISION_RETRIES: u32 = 128;

/// No free port was found for a flow (Cilium's `DROP_NAT_NO_MAPPING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exhausted;

/// The source ports SNAT hands out, `min..=max`, and the order it tries
/// them in (allocation-free, shared with eBPF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    min: u16,
    max: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::new(PORT_MIN, PORT_MAX)
    }
}

impl PortRange {
    /// Ports `min..=max` (swapped if `min > max`).
    pub fn new(min: u16, max: u16) -> Self {
        PortRange {
            min: min.min(max),
            max: max.max(min),
        }
    }

    /// `__snat_clamp_port_range`: `val % (max - min) + min`.
    #[inline(always)]
    fn clamp(self, val: u16) -> u16 {
        match self.max - self.min {
            0 => self.min,
            span => val % span + self.min,
        }
    }

    /// The first port tried: the client's own if in the range, else the
    /// low half of `random`.
    #[inline(always)]
    pub fn first(self, client_port: u16, random: u32) -> u16 {
        if (self.min..=self.max).contains(&client_port) {
            client_port
        } else {
            self.clamp(random as u16)
        }
    }

    /// The port tried after `port` collided on try `retry` (from 0): the
    /// high half of `random` after the first, then the following ports.
    #[inline(always)]
    pub fn next(self, port: u16, retry: u32, random: u32) -> u16 {
        self.clamp(if retry == 0 {
            (random >> 16) as u16
        } else {
            port.wrapping_add(1)
        })
    }

    /// Source-NAT `flow` (client → backend, after DNAT) to `node`: the
    /// rewritten tuple with the first port tried whose reply tuple (backend
    /// → node:port) is not `in_use` by a tracked connection.
    #[inline(always)]
    pub fn allocate(
        self,
        flow: &Tuple,
        node: IpAddr,
        random: u32,
        mut in_use: impl FnMut(&Tuple) -> bool,
    ) -> Result<Tuple, Exhausted> {
        let mut port = self.first(flow.src_port, random);
        for retry in 0..COLLISION_RETRIES {
            let translated = Tuple {
                src: node,
                src_port: port,
                ..*flow
            };
            if !in_use(&translated.reversed()) {
                return Ok(translated);
            }
            port = self.next(port, retry, random);
        }
        Err(Exhausted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Protocol;
    use alloc::collections::BTreeSet;

    fn flow(client_port: u16, backend: [u8; 4]) -> Tuple {
        Tuple {
            src: IpAddr::from([203, 0, 113, 7]),
            dst: IpAddr::from(backend),
            src_port: client_port,
            dst_port: 80,
            protocol: Protocol::Tcp,
        }
    }

    const NODE: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 168, 10, 1));

    /// Allocate from `range`, holding the result's reply tuple in `used`.
    fn take(
        range: PortRange,
        used: &mut BTreeSet<Tuple>,
        f: &Tuple,
        random: u32,
    ) -> Result<Tuple, Exhausted> {
        let t = range.allocate(f, NODE, random, |reply| used.contains(reply))?;
        used.insert(t.reversed());
        Ok(t)
    }

    #[test]
    fn keeps_the_client_port_when_in_range_else_a_random_one() {
        let mut used = BTreeSet::new();
        let range = PortRange::default();
        let t = take(range, &mut used, &flow(40000, [10, 244, 1, 5]), 0).unwrap();
        assert_eq!((t.src, t.src_port, t.dst_port), (NODE, 40000, 80));
        let t = take(range, &mut used, &flow(1234, [10, 244, 1, 5]), 5).unwrap();
        assert_eq!(t.src_port, 32768 + 5);
    }

    #[test]
    fn a_port_is_reused_for_another_remote_and_skipped_for_the_same_one() {
        let mut used = BTreeSet::new();
        let range = PortRange::default();
        let a = take(range, &mut used, &flow(40000, [10, 244, 1, 5]), 0).unwrap();
        // Same port, different backend: no collision.
        let b = take(range, &mut used, &flow(40000, [10, 244, 2, 5]), 0).unwrap();
        assert_eq!((a.src_port, b.src_port), (40000, 40000));
        // Another client with the same port to the same backend: the random
        // retry (high half: 7) takes 32768 + 7.
        let mut other = flow(40000, [10, 244, 1, 5]);
        other.src = IpAddr::from([203, 0, 113, 8]);
        let c = take(range, &mut used, &other, 7 << 16).unwrap();
        assert_eq!(c.src_port, 32768 + 7);
        used.remove(&a.reversed());
        let d = take(range, &mut used, &other, 0).unwrap();
        assert_eq!(d.src_port, 40000, "released ports are free again");
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn exhaustion_is_an_error_not_a_panic() {
        let mut used = BTreeSet::new();
        let range = PortRange::new(40000, 40002);
        let mut ok = 0;
        for client in 0..10u8 {
            let mut f = flow(40000, [10, 244, 1, 5]);
            f.src = IpAddr::from([203, 0, 113, client]);
            if let Ok(t) = take(range, &mut used, &f, u32::from(client)) {
                assert!((40000..=40002).contains(&t.src_port));
                ok += 1;
            }
        }
        // 40000 kept once, then the clamp only reaches 40000..=40001.
        assert_eq!(ok, 2);
        assert_eq!(
            take(range, &mut used, &flow(40000, [10, 244, 1, 5]), 1),
            Err(Exhausted)
        );
    }
}
