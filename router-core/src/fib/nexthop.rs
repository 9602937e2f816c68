//! Nexthops and nexthop groups.
//!
//! Owns what a route points at (a gateway on a port, a directly connected port, a
//! tunnel endpoint, a blackhole) and the interned, reference-counted groups of
//! weighted nexthops with their ECMP bucket tables. It does not choose routes
//! (see [`super::Fib`]) nor hash flows (see [`crate::ecmp`]).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::ecmp::{Buckets, FlowKey, HashPolicy};
use crate::port::PortId;

/// Encapsulation used to reach a tunnel endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Encap {
    /// VXLAN (RFC 7348).
    Vxlan,
    /// Geneve (RFC 8926).
    Geneve,
}

/// Where one nexthop sends a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NexthopKind {
    /// Via a gateway address reachable on `port`.
    Gateway {
        /// The gateway's address (IPv4, or IPv6 for RFC 8950-style routes).
        addr: IpAddr,
        /// The port the gateway is on.
        port: PortId,
    },
    /// The destination is on the link of `port` (connected route).
    Connected {
        /// The port whose link holds the destination.
        port: PortId,
    },
    /// Encapsulated to a tunnel endpoint.
    Tunnel {
        /// Outer destination address.
        endpoint: IpAddr,
        /// VXLAN or Geneve.
        encap: Encap,
        /// Configured VNI, or `None` to carry the source security identity.
        vni: Option<u32>,
    },
    /// Drop silently (`ip route add blackhole`).
    Blackhole,
}

/// One member of a nexthop group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nexthop {
    /// Where packets go.
    pub kind: NexthopKind,
    /// Relative ECMP weight, at least 1.
    pub weight: u16,
}

impl Nexthop {
    /// A weight-1 nexthop via `addr` on `port`.
    pub fn gateway(addr: IpAddr, port: PortId) -> Self {
        Nexthop {
            kind: NexthopKind::Gateway { addr, port },
            weight: 1,
        }
    }
    /// A weight-1 connected nexthop on `port`.
    pub fn connected(port: PortId) -> Self {
        Nexthop {
            kind: NexthopKind::Connected { port },
            weight: 1,
        }
    }
}

/// Identifier of an interned nexthop group. Never 0 (the FIB's "no route").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u32);

/// A set of weighted nexthops and its bucket table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    members: Vec<Nexthop>,
    buckets: Option<Buckets>,
    refs: u32,
}

impl Group {
    /// The members, in canonical (sorted) order.
    pub fn members(&self) -> &[Nexthop] {
        &self.members
    }
    /// The bucket table; `None` for single-member groups.
    pub fn buckets(&self) -> Option<&Buckets> {
        self.buckets.as_ref()
    }
    /// The member a flow with this hash takes.
    pub fn select_by_hash(&self, hash: u32) -> &Nexthop {
        let m = self.buckets.as_ref().map_or(0, |b| b.select(hash));
        &self.members[m]
    }
    /// The member a flow takes under `policy` with `seed`.
    pub fn select(&self, flow: &FlowKey, policy: HashPolicy, seed: u32) -> &Nexthop {
        self.select_by_hash(flow.hash(policy, seed))
    }
}

/// Interned nexthop groups: equal member sets share one [`GroupId`].
#[derive(Clone, Debug, Default)]
pub struct GroupTable {
    groups: Vec<Option<Group>>,
    by_members: BTreeMap<Vec<Nexthop>, GroupId>,
    free: Vec<GroupId>,
}

impl GroupTable {
    /// The group with this id, if it exists.
    pub fn get(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(id.0 as usize - 1)?.as_ref()
    }

    /// Take a reference on the group for `members` (order and duplicates do not
    /// matter), creating it if needed. A new group's buckets are derived from
    /// `previous`'s, so flows of members the two share keep their nexthop.
    pub fn acquire(&mut self, members: &[Nexthop], previous: Option<GroupId>) -> GroupId {
        let mut key: Vec<Nexthop> = members.to_vec();
        key.sort();
        key.dedup();
        if let Some(&id) = self.by_members.get(&key) {
            self.slot(id).refs += 1;
            return id;
        }
        let weights: Vec<u16> = key.iter().map(|n| n.weight.max(1)).collect();
        let buckets = (key.len() > 1).then(|| match previous.and_then(|p| self.get(p)) {
            Some(old) => {
                let map: Vec<Option<usize>> = old
                    .members
                    .iter()
                    .map(|o| key.iter().position(|n| n.kind == o.kind))
                    .collect();
                match &old.buckets {
                    Some(b) => b.rebalance(&map, &weights),
                    None => Buckets::single().rebalance(&map, &weights),
                }
            }
            None => Buckets::new(&weights),
        });
        let group = Group {
            members: key.clone(),
            buckets,
            refs: 1,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.groups[id.0 as usize - 1] = Some(group);
                id
            }
            None => {
                self.groups.push(Some(group));
                GroupId(self.groups.len() as u32)
            }
        };
        self.by_members.insert(key, id);
        id
    }

    /// Drop one reference; the group is freed when none are left.
    pub fn release(&mut self, id: GroupId) {
        let g = self.slot(id);
        g.refs -= 1;
        if g.refs == 0 {
            let members = core::mem::take(&mut g.members);
            self.groups[id.0 as usize - 1] = None;
            self.by_members.remove(&members);
            self.free.push(id);
        }
    }

    /// Number of live groups.
    pub fn len(&self) -> usize {
        self.by_members.len()
    }

    /// Whether there are no live groups.
    pub fn is_empty(&self) -> bool {
        self.by_members.is_empty()
    }

    fn slot(&mut self, id: GroupId) -> &mut Group {
        self.groups[id.0 as usize - 1]
            .as_mut()
            .expect("group id refers to a live group")
    }
}
