//! Forwarding information base: every candidate route, the winner per prefix,
//! and longest-prefix match over the winners.
//!
//! Owns the RIB (all candidates per prefix, from every protocol), route
//! selection (administrative distance, then metric), the nexthop groups the
//! winners use, and the compiled [`poptrie`] lookup tables for IPv4 and IPv6.
//! It does not resolve neighbours, hash flows or touch packets.

pub mod nexthop;
pub mod poptrie;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use nexthop::{Encap, Group, GroupId, GroupTable, Nexthop, NexthopKind};
use poptrie::{Key, Poptrie};

use crate::port::PortId;

/// Direct-table bits of the IPv4 trie: 2^18 entries (1 MiB), so /18–/24 resolve in one node.
pub const V4_DIRECT_BITS: u32 = 18;
/// Direct-table bits of the IPv6 trie.
pub const V6_DIRECT_BITS: u32 = 16;
/// Direct-table bits of [`Fib::compact`]'s tries.
pub const COMPACT_DIRECT_BITS: u32 = 8;

/// Where a route came from. The order is the tie-break after distance and metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// The prefix of an address on a port (`proto kernel scope link`).
    Connected,
    /// Configured static route.
    Static,
    /// Learned from the kernel routing table.
    Kernel,
    /// External BGP.
    Ebgp,
    /// Internal BGP.
    Ibgp,
}

impl Protocol {
    /// The usual administrative distance (FRR's defaults).
    pub fn default_distance(self) -> u8 {
        match self {
            Protocol::Connected | Protocol::Kernel => 0,
            Protocol::Static => 1,
            Protocol::Ebgp => 20,
            Protocol::Ibgp => 200,
        }
    }

    /// The name `ip route` prints after `proto`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Connected => "kernel",
            Protocol::Static => "static",
            Protocol::Kernel => "kernel",
            Protocol::Ebgp | Protocol::Ibgp => "bgp",
        }
    }
}

/// A route as a protocol offers it to the FIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Source protocol.
    pub protocol: Protocol,
    /// Administrative distance: lower wins.
    pub distance: u8,
    /// Metric within the same distance: lower wins.
    pub metric: u32,
    /// One or more nexthops; several make an ECMP group.
    pub nexthops: Vec<Nexthop>,
}

impl Route {
    /// A route with the protocol's default distance and metric 0.
    pub fn new(protocol: Protocol, nexthops: Vec<Nexthop>) -> Self {
        Route {
            protocol,
            distance: protocol.default_distance(),
            metric: 0,
            nexthops,
        }
    }
}

/// A route as the RIB stores it: its nexthops interned as a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Source protocol.
    pub protocol: Protocol,
    /// Administrative distance.
    pub distance: u8,
    /// Metric.
    pub metric: u32,
    /// The interned nexthop group.
    pub group: GroupId,
}

impl Candidate {
    fn rank(&self) -> (u8, u32, Protocol) {
        (self.distance, self.metric, self.protocol)
    }
}

/// The candidates of one prefix, best first. One per `(protocol, distance)`.
/// Most prefixes have a single candidate, kept inline (no allocation per prefix).
#[derive(Clone, Debug)]
enum Candidates {
    One(Candidate),
    Many(Vec<Candidate>),
}

impl Candidates {
    fn as_slice(&self) -> &[Candidate] {
        match self {
            Candidates::One(c) => core::slice::from_ref(c),
            Candidates::Many(v) => v,
        }
    }

    fn winner(&self) -> Option<&Candidate> {
        self.as_slice().first()
    }

    /// Change the candidates as a `Vec`, then store them back compactly.
    fn edit<R>(&mut self, f: impl FnOnce(&mut Vec<Candidate>) -> R) -> R {
        let mut v = match core::mem::replace(self, Candidates::Many(Vec::new())) {
            Candidates::One(c) => alloc::vec![c],
            Candidates::Many(v) => v,
        };
        let r = f(&mut v);
        *self = match v.as_slice() {
            [one] => Candidates::One(*one),
            _ => Candidates::Many(v),
        };
        r
    }
}

fn winner_leaf(c: &Candidates) -> Option<u32> {
    c.winner().map(|w| w.group.0)
}

/// What an insert or removal did to the prefix's winner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The winner (and so forwarding) changed.
    WinnerChanged,
    /// Only a losing candidate changed.
    Unchanged,
}

/// The RIB and compiled trie of one address family.
#[derive(Clone, Debug)]
struct Table<K: Key> {
    rib: BTreeMap<(K, u8), Candidates>,
    trie: Poptrie<K>,
}

impl<K: Key> Table<K> {
    fn new(direct_bits: u32) -> Self {
        Table {
            rib: BTreeMap::new(),
            trie: Poptrie::new(direct_bits),
        }
    }

    fn recompile(&mut self, key: K, len: u8) {
        let src = (&self.rib, winner_leaf as fn(&Candidates) -> Option<u32>);
        self.trie.update(&src, key, len);
    }

    fn insert(&mut self, groups: &mut GroupTable, key: K, len: u8, route: &Route) -> Change {
        let entry = self
            .rib
            .entry((key, len))
            .or_insert(Candidates::Many(Vec::new()));
        let before = entry.winner().copied();
        let same = |c: &&Candidate| c.protocol == route.protocol && c.distance == route.distance;
        let previous = entry
            .as_slice()
            .iter()
            .find(same)
            .or(before.as_ref())
            .map(|c| c.group);
        let candidate = Candidate {
            protocol: route.protocol,
            distance: route.distance,
            metric: route.metric,
            group: groups.acquire(&route.nexthops, previous),
        };
        entry.edit(|v| {
            if let Some(i) = v.iter().position(|c| same(&c)) {
                groups.release(v.remove(i).group);
            }
            let at = v.partition_point(|c| c.rank() <= candidate.rank());
            v.insert(at, candidate);
        });
        let changed = before != entry.winner().copied();
        if changed {
            self.recompile(key, len);
            Change::WinnerChanged
        } else {
            Change::Unchanged
        }
    }

    fn remove(
        &mut self,
        groups: &mut GroupTable,
        key: K,
        len: u8,
        protocol: Protocol,
        distance: u8,
    ) -> Option<Change> {
        let entry = self.rib.get_mut(&(key, len))?;
        let i = entry
            .as_slice()
            .iter()
            .position(|c| c.protocol == protocol && c.distance == distance)?;
        let removed = entry.edit(|v| v.remove(i));
        groups.release(removed.group);
        if entry.as_slice().is_empty() {
            self.rib.remove(&(key, len));
        }
        if i == 0 {
            self.recompile(key, len);
            Some(Change::WinnerChanged)
        } else {
            Some(Change::Unchanged)
        }
    }
}

/// The forwarding information base of one host, IPv4 and IPv6.
#[derive(Clone, Debug)]
pub struct Fib {
    v4: Table<u32>,
    v6: Table<u128>,
    groups: GroupTable,
}

impl Default for Fib {
    fn default() -> Self {
        Self::new()
    }
}

/// One installed (winning) route, for display and export.
#[derive(Clone, Copy, Debug)]
pub struct Installed<'a> {
    /// The prefix.
    pub prefix: IpNet,
    /// The winning candidate.
    pub route: &'a Candidate,
    /// Its nexthop group.
    pub group: &'a Group,
}

impl Fib {
    /// An empty FIB sized for full tables (the layout the eBPF maps use).
    pub fn new() -> Self {
        Self::with_direct_bits(V4_DIRECT_BITS, V6_DIRECT_BITS)
    }

    /// An empty FIB for hosts with a handful of routes (pods, simulated hosts):
    /// 256-entry direct tables (1 KiB) instead of 1 MiB, so a default route
    /// paints 256 slots, not 2^18. Lookups walk a level or two more.
    pub fn compact() -> Self {
        Self::with_direct_bits(COMPACT_DIRECT_BITS, COMPACT_DIRECT_BITS)
    }

    /// An empty FIB whose tries resolve the top `v4`/`v6` bits in their direct tables.
    pub fn with_direct_bits(v4: u32, v6: u32) -> Self {
        Fib {
            v4: Table::new(v4),
            v6: Table::new(v6),
            groups: GroupTable::default(),
        }
    }

    /// Add or replace the candidate of `route.protocol` at `route.distance` for `prefix`.
    /// Host bits of `prefix` are ignored.
    pub fn insert(&mut self, prefix: IpNet, route: &Route) -> Change {
        assert!(
            !route.nexthops.is_empty(),
            "a route needs at least one nexthop"
        );
        match prefix.trunc() {
            IpNet::V4(p) => {
                let (k, l) = v4_key(p);
                self.v4.insert(&mut self.groups, k, l, route)
            }
            IpNet::V6(p) => {
                let (k, l) = v6_key(p);
                self.v6.insert(&mut self.groups, k, l, route)
            }
        }
    }

    /// Remove the candidate of `protocol` at `distance` for `prefix`; `None` if there was none.
    pub fn remove(&mut self, prefix: IpNet, protocol: Protocol, distance: u8) -> Option<Change> {
        match prefix.trunc() {
            IpNet::V4(p) => {
                let (k, l) = v4_key(p);
                self.v4.remove(&mut self.groups, k, l, protocol, distance)
            }
            IpNet::V6(p) => {
                let (k, l) = v6_key(p);
                self.v6.remove(&mut self.groups, k, l, protocol, distance)
            }
        }
    }

    /// Longest-prefix match: the nexthop group of the most specific route containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<GroupId> {
        let leaf = match addr {
            IpAddr::V4(a) => self.v4.trie.lookup(a.to_bits()),
            IpAddr::V6(a) => self.v6.trie.lookup(a.to_bits()),
        };
        (leaf != poptrie::NO_ROUTE).then_some(GroupId(leaf))
    }

    /// [`Fib::lookup`] for IPv4, returning the raw leaf (group id, 0 for no route).
    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> u32 {
        self.v4.trie.lookup(addr.to_bits())
    }

    /// [`Fib::lookup`] for IPv6, returning the raw leaf (group id, 0 for no route).
    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> u32 {
        self.v6.trie.lookup(addr.to_bits())
    }

    /// The nexthop group with this id.
    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(id)
    }

    /// The nexthop groups.
    pub fn groups(&self) -> &GroupTable {
        &self.groups
    }

    /// The candidates for exactly `prefix`, best first.
    pub fn candidates(&self, prefix: IpNet) -> &[Candidate] {
        let c = match prefix.trunc() {
            IpNet::V4(p) => self.v4.rib.get(&v4_key(p)),
            IpNet::V6(p) => self.v6.rib.get(&v6_key(p)),
        };
        c.map_or(&[], Candidates::as_slice)
    }

    /// Installed routes, IPv4 then IPv6, each in prefix order.
    pub fn routes(&self) -> impl Iterator<Item = Installed<'_>> {
        let v4 = self.v4.rib.iter().filter_map(|(&(k, l), c)| {
            let net = Ipv4Net::new(Ipv4Addr::from_bits(k), l).expect("stored lengths are valid");
            Some((IpNet::V4(net), c.winner()?))
        });
        let v6 = self.v6.rib.iter().filter_map(|(&(k, l), c)| {
            let net = Ipv6Net::new(Ipv6Addr::from_bits(k), l).expect("stored lengths are valid");
            Some((IpNet::V6(net), c.winner()?))
        });
        v4.chain(v6).map(|(prefix, route)| Installed {
            prefix,
            route,
            group: self
                .groups
                .get(route.group)
                .expect("winners hold their group"),
        })
    }

    /// Number of prefixes with at least one candidate.
    pub fn len(&self) -> usize {
        self.v4.rib.len() + self.v6.rib.len()
    }

    /// Whether the FIB has no routes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The compiled IPv4 lookup table (for copying into eBPF maps).
    pub fn trie_v4(&self) -> &Poptrie<u32> {
        &self.v4.trie
    }

    /// The compiled IPv6 lookup table.
    pub fn trie_v6(&self) -> &Poptrie<u128> {
        &self.v6.trie
    }
}

fn v4_key(p: Ipv4Net) -> (u32, u8) {
    (p.network().to_bits(), p.prefix_len())
}

fn v6_key(p: Ipv6Net) -> (u128, u8) {
    (p.network().to_bits(), p.prefix_len())
}

impl Installed<'_> {
    /// Write the route as one `ip route` line (ECMP groups as `nexthop` lines),
    /// naming ports with `port_name`.
    pub fn write_ip_route(
        &self,
        f: &mut impl fmt::Write,
        port_name: impl Fn(PortId) -> alloc::string::String,
    ) -> fmt::Result {
        if self.prefix.prefix_len() == self.prefix.max_prefix_len() {
            write!(f, "{}", self.prefix.addr())?;
        } else {
            write!(f, "{}", self.prefix)?;
        }
        let one = |f: &mut dyn fmt::Write, n: &Nexthop| match n.kind {
            NexthopKind::Gateway { addr, port } => write!(f, "via {addr} dev {}", port_name(port)),
            NexthopKind::Connected { port } => write!(f, "dev {}", port_name(port)),
            NexthopKind::Tunnel {
                endpoint, encap, ..
            } => write!(f, "encap {encap:?} dst {endpoint}"),
            NexthopKind::Blackhole => write!(f, "blackhole"),
        };
        let route = self.route;
        let members = self.group.members();
        let tail = |f: &mut dyn fmt::Write| {
            write!(f, " proto {}", route.protocol.name())?;
            if let [
                Nexthop {
                    kind: NexthopKind::Connected { .. },
                    ..
                },
            ] = members
            {
                f.write_str(" scope link")?;
            }
            if route.metric != 0 {
                write!(f, " metric {}", route.metric)?;
            }
            Ok(())
        };
        match members {
            [n] => {
                f.write_char(' ')?;
                one(f, n)?;
                tail(f)
            }
            members => {
                tail(f)?;
                for n in members {
                    f.write_str("\n\tnexthop ")?;
                    one(f, n)?;
                    write!(f, " weight {}", n.weight)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Installed<'_> {
    /// `ip route`-style line with ports shown as `portN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_ip_route(f, |p| alloc::format!("{p}"))
    }
}

#[cfg(test)]
mod tests;
