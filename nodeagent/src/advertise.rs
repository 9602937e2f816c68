//! Originated routes on the wire: the UPDATEs that announce a peer's desired
//! prefixes (next-hop-self, our AS prepended on eBGP, the advertisement's
//! communities) and the diff between two desired sets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use router_core::bgp::wire::{
    AsPath, Family, MpReach, MpUnreach, NextHop, Origin, PathAttributes, Prefixes, Update,
};
use router_core::cilium::desired::RouteAttributes;

/// What the attributes of our routes depend on besides the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speaker {
    /// Our AS.
    pub local_as: u32,
    /// The session is iBGP (LOCAL_PREF sent, no AS prepended).
    pub ibgp: bool,
    /// Our end of the session: the next hop we announce.
    pub local_address: IpAddr,
}

/// The family of a prefix (unicast).
pub fn family_of(prefix: &IpNet) -> Family {
    match prefix {
        IpNet::V4(_) => Family::IPV4_UNICAST,
        IpNet::V6(_) => Family::IPV6_UNICAST,
    }
}

/// The path attributes we send with `route` (prefixes aside), or `None`
/// when the session's address family cannot carry a next hop for it.
pub fn attributes(
    speaker: &Speaker,
    family: Family,
    route: &RouteAttributes,
) -> Option<PathAttributes> {
    let mut attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::sequence(if speaker.ibgp {
            Vec::new()
        } else {
            vec![speaker.local_as]
        })),
        communities: route.communities.iter().copied().collect(),
        large_communities: route.large_communities.iter().copied().collect(),
        local_pref: if speaker.ibgp {
            Some(route.local_preference.unwrap_or(100))
        } else {
            None
        },
        ..PathAttributes::default()
    };
    match (family, speaker.local_address) {
        (Family::IPV4_UNICAST, IpAddr::V4(v4)) => attrs.next_hop = Some(v4),
        (Family::IPV6_UNICAST, IpAddr::V6(v6)) => {
            attrs.mp_reach = Some(MpReach {
                next_hop: NextHop::Ipv6 {
                    global: v6,
                    link_local: None,
                },
                nlri: Prefixes::Ipv6(Vec::new()),
            });
        }
        _ => return None,
    }
    Some(attrs)
}

/// UPDATEs announcing `routes` of `family`: one per distinct attribute set.
/// Routes the session cannot carry are returned apart.
pub fn announce(
    speaker: &Speaker,
    family: Family,
    routes: &BTreeMap<IpNet, RouteAttributes>,
) -> (Vec<Update>, Vec<IpNet>) {
    let mut groups: BTreeMap<PathAttributes, Vec<IpNet>> = BTreeMap::new();
    let mut unsendable = Vec::new();
    for (prefix, route) in routes.iter().filter(|(p, _)| family_of(p) == family) {
        match attributes(speaker, family, route) {
            Some(attrs) => groups.entry(attrs).or_default().push(*prefix),
            None => unsendable.push(*prefix),
        }
    }
    let updates = groups
        .into_iter()
        .map(|(mut attributes, prefixes)| {
            let mut update = Update::default();
            if let Some(reach) = &mut attributes.mp_reach {
                reach.nlri = Prefixes::Ipv6(prefixes.iter().filter_map(v6).collect());
            } else {
                update.nlri = prefixes.iter().filter_map(v4).collect();
            }
            update.attributes = attributes;
            update
        })
        .collect();
    (updates, unsendable)
}

/// The UPDATE withdrawing `prefixes` of `family`, if there are any.
pub fn withdraw(family: Family, prefixes: &[IpNet]) -> Option<Update> {
    let mut update = Update::default();
    if family == Family::IPV4_UNICAST {
        update.withdrawn = prefixes.iter().filter_map(v4).collect();
        (!update.withdrawn.is_empty()).then_some(update)
    } else {
        let withdrawn: Vec<_> = prefixes.iter().filter_map(v6).collect();
        if withdrawn.is_empty() {
            return None;
        }
        update.attributes.mp_unreach = Some(MpUnreach {
            withdrawn: Prefixes::Ipv6(withdrawn),
        });
        Some(update)
    }
}

/// What changed from `old` to `new`: prefixes to withdraw, and routes to
/// (re-)announce because they are new or their attributes changed.
pub fn diff(
    old: &BTreeMap<IpNet, RouteAttributes>,
    new: &BTreeMap<IpNet, RouteAttributes>,
) -> (Vec<IpNet>, BTreeMap<IpNet, RouteAttributes>) {
    let withdrawn = old
        .keys()
        .filter(|p| !new.contains_key(p))
        .copied()
        .collect();
    let changed = new
        .iter()
        .filter(|(p, a)| old.get(p) != Some(a))
        .map(|(p, a)| (*p, a.clone()))
        .collect();
    (withdrawn, changed)
}

fn v4(p: &IpNet) -> Option<ipnet::Ipv4Net> {
    match p {
        IpNet::V4(v) => Some(*v),
        IpNet::V6(_) => None,
    }
}

fn v6(p: &IpNet) -> Option<ipnet::Ipv6Net> {
    match p {
        IpNet::V6(v) => Some(*v),
        IpNet::V4(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::bgp::wire::{Community, DecodeContext, Message};

    fn speaker(local: &str, ibgp: bool) -> Speaker {
        Speaker {
            local_as: 65001,
            ibgp,
            local_address: local.parse().unwrap(),
        }
    }

    fn routes(list: &[(&str, &[Community])]) -> BTreeMap<IpNet, RouteAttributes> {
        list.iter()
            .map(|(p, c)| {
                let attrs = RouteAttributes {
                    communities: c.iter().copied().collect(),
                    ..RouteAttributes::default()
                };
                (p.parse().unwrap(), attrs)
            })
            .collect()
    }

    #[test]
    fn pod_cidr_is_announced_with_next_hop_self_and_our_as() {
        let s = speaker("192.168.20.100", false);
        let r = routes(&[("172.20.2.0/24", &[]), ("fd00::/64", &[])]);
        let (updates, unsendable) = announce(&s, Family::IPV4_UNICAST, &r);
        assert!(unsendable.is_empty());
        let [u] = &updates[..] else {
            panic!("{updates:?}")
        };
        assert_eq!(u.nlri, ["172.20.2.0/24".parse().unwrap()]);
        assert_eq!(
            u.attributes.next_hop,
            Some("192.168.20.100".parse().unwrap())
        );
        assert_eq!(u.attributes.as_path, Some(AsPath::sequence(vec![65001])));
        assert_eq!(u.attributes.local_pref, None);
        let ctx = DecodeContext::new(true, [Family::IPV4_UNICAST]);
        let bytes = Message::Update(Box::new(u.clone())).to_bytes(&ctx).unwrap();
        assert_eq!(
            Message::parse(&bytes, &ctx).unwrap(),
            Message::Update(Box::new(u.clone()))
        );
        let (v6_updates, v6_unsendable) = announce(&s, Family::IPV6_UNICAST, &r);
        assert!(v6_updates.is_empty());
        assert_eq!(v6_unsendable, ["fd00::/64".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn attribute_sets_split_updates_and_ibgp_sends_local_pref() {
        let s = speaker("fd00::1", true);
        let r = routes(&[
            ("fd00:1::/64", &[]),
            ("fd00:2::/64", &[Community::NO_EXPORT]),
            ("fd00:3::/64", &[]),
        ]);
        let (updates, _) = announce(&s, Family::IPV6_UNICAST, &r);
        assert_eq!(updates.len(), 2);
        let reach = updates[0].attributes.mp_reach.as_ref().unwrap();
        assert_eq!(reach.nlri.iter().count(), 2);
        assert_eq!(updates[0].attributes.local_pref, Some(100));
        assert_eq!(
            updates[0].attributes.as_path,
            Some(AsPath::sequence(vec![]))
        );
        assert_eq!(updates[1].attributes.communities, [Community::NO_EXPORT]);
    }

    #[test]
    fn diff_and_withdraw() {
        let old = routes(&[("10.0.0.0/24", &[]), ("10.0.1.0/24", &[])]);
        let new = routes(&[
            ("10.0.1.0/24", &[Community::NO_EXPORT]),
            ("10.0.2.0/24", &[]),
        ]);
        let (gone, changed) = diff(&old, &new);
        assert_eq!(gone, ["10.0.0.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(changed.len(), 2);
        let w = withdraw(Family::IPV4_UNICAST, &gone).unwrap();
        assert_eq!(w.withdrawn, ["10.0.0.0/24".parse().unwrap()]);
        assert!(withdraw(Family::IPV6_UNICAST, &gone).is_none());
        let w6 = withdraw(Family::IPV6_UNICAST, &["fd00::/64".parse().unwrap()]).unwrap();
        assert!(w6.attributes.mp_unreach.is_some());
    }
}
