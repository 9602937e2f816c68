//! Interned attribute sets: every distinct (next hop, path attributes) pair
//! is stored once and named by a small [`AttrId`], with a reference count.
//!
//! Owns the sets and their counts; what refers to them (Adj-RIB-In paths,
//! Adj-RIB-Out entries) is the RIB's business. Thousands of prefixes
//! usually share one set, so a path costs an id rather than a copy.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::bgp::wire::{NextHop, PathAttributes};

/// A route's attributes as the RIB keeps them: the next hop apart (from
/// NEXT_HOP or MP_REACH_NLRI), and the path attributes without NEXT_HOP,
/// MP_REACH_NLRI and MP_UNREACH_NLRI.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteAttrs {
    /// The next hop.
    pub next_hop: NextHop,
    /// The other attributes.
    pub attributes: PathAttributes,
}

impl RouteAttrs {
    /// The next hop as an address to forward to: the IPv6 global address,
    /// or the link-local one when the global one is unspecified.
    pub fn next_hop_addr(&self) -> IpAddr {
        match self.next_hop {
            NextHop::Ipv4(a) => IpAddr::V4(a),
            NextHop::Ipv6 { global, link_local } => match link_local {
                Some(ll) if global.is_unspecified() => IpAddr::V6(ll),
                _ => IpAddr::V6(global),
            },
        }
    }
}

/// The name of an interned attribute set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrId(u32);

#[derive(Clone, Debug)]
struct Slot {
    attrs: Arc<RouteAttrs>,
    refs: u32,
}

/// The table of attribute sets.
#[derive(Clone, Debug, Default)]
pub(super) struct Interner {
    ids: BTreeMap<Arc<RouteAttrs>, AttrId>,
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
}

impl Interner {
    /// The id of `attrs`, with one reference taken (give it back with
    /// [`Interner::release`]).
    pub(super) fn intern(&mut self, attrs: RouteAttrs) -> AttrId {
        if let Some(&id) = self.ids.get(&attrs) {
            self.retain(id);
            return id;
        }
        let attrs = Arc::new(attrs);
        let slot = Some(Slot {
            attrs: attrs.clone(),
            refs: 1,
        });
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                AttrId(i)
            }
            None => {
                self.slots.push(slot);
                AttrId((self.slots.len() - 1) as u32)
            }
        };
        self.ids.insert(attrs, id);
        id
    }

    fn slot(&mut self, id: AttrId) -> &mut Slot {
        self.slots[id.0 as usize]
            .as_mut()
            .expect("attribute set in use")
    }

    /// Take one more reference.
    pub(super) fn retain(&mut self, id: AttrId) {
        self.slot(id).refs += 1;
    }

    /// Give one reference back; the set goes with the last one.
    pub(super) fn release(&mut self, id: AttrId) {
        let slot = self.slot(id);
        slot.refs -= 1;
        if slot.refs == 0 {
            let attrs = slot.attrs.clone();
            self.slots[id.0 as usize] = None;
            self.ids.remove(&attrs);
            self.free.push(id.0);
        }
    }

    /// The set named `id`.
    pub(super) fn get(&self, id: AttrId) -> &Arc<RouteAttrs> {
        &self.slots[id.0 as usize]
            .as_ref()
            .expect("attribute set in use")
            .attrs
    }

    /// Distinct sets in use.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn attrs(med: u32) -> RouteAttrs {
        RouteAttrs {
            next_hop: NextHop::Ipv4(Ipv4Addr::new(10, 0, 0, 1)),
            attributes: PathAttributes {
                med: Some(med),
                ..PathAttributes::default()
            },
        }
    }

    #[test]
    fn equal_sets_share_an_id_until_released() {
        let mut t = Interner::default();
        let a = t.intern(attrs(1));
        let b = t.intern(attrs(1));
        let c = t.intern(attrs(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(t.len(), 2);
        t.release(a);
        assert_eq!(t.get(b).attributes.med, Some(1));
        t.release(b);
        assert_eq!(t.len(), 1);
        // The freed slot is reused.
        let d = t.intern(attrs(3));
        assert_eq!(d, a);
        assert_eq!(t.get(c).attributes.med, Some(2));
    }

    #[test]
    fn next_hop_address() {
        let ll: core::net::Ipv6Addr = "fe80::1".parse().unwrap();
        let mut a = attrs(0);
        a.next_hop = NextHop::Ipv6 {
            global: core::net::Ipv6Addr::UNSPECIFIED,
            link_local: Some(ll),
        };
        assert_eq!(a.next_hop_addr(), IpAddr::V6(ll));
    }
}
