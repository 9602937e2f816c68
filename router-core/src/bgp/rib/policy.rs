//! Export policy: which best paths go to a peer, and with what attributes.
//!
//! Owns the per-peer [`Policy`] (prefix lists with ge/le, community
//! matches, local-pref/MED/community sets, FRR route-map style: first
//! matching statement wins) and the rules every BGP speaker applies on
//! export (RFC 4271 §5.1, §9.1.3, RFC 1997): no iBGP-learned routes to iBGP
//! peers, NO_ADVERTISE / NO_EXPORT, our AS prepended and next-hop-self
//! towards eBGP peers, MED and LOCAL_PREF not leaked out of the AS, and —
//! as FRR does — nothing sent to an eBGP peer whose AS is already in the
//! path. Selecting the path and remembering what was sent are the RIB's.

use alloc::vec;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::intern::RouteAttrs;
use crate::bgp::wire::{AsPath, AsSegment, Community, NextHop, SegmentType};

/// One line of a prefix list (FRR `ip prefix-list NAME seq N permit|deny
/// PREFIX [ge G] [le L]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixListEntry {
    /// Permit (else deny) what matches.
    pub permit: bool,
    /// Routes must lie within this prefix.
    pub prefix: IpNet,
    /// Shortest prefix length matched; without ge and le, only the
    /// entry's own length matches.
    pub ge: Option<u8>,
    /// Longest prefix length matched (with ge alone, the family's maximum).
    pub le: Option<u8>,
}

impl PrefixListEntry {
    /// Whether `prefix` matches this line.
    pub fn matches(&self, prefix: IpNet) -> bool {
        let len = prefix.prefix_len();
        let (min, max) = match (self.ge, self.le) {
            (None, None) => (self.prefix.prefix_len(), self.prefix.prefix_len()),
            (Some(ge), None) => (ge, prefix.max_prefix_len()),
            (None, Some(le)) => (self.prefix.prefix_len(), le),
            (Some(ge), Some(le)) => (ge, le),
        };
        self.prefix.contains(&prefix) && (min..=max).contains(&len)
    }
}

/// A prefix list: the first matching line decides; nothing matching is
/// denied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixList {
    /// The lines, in order.
    pub entries: Vec<PrefixListEntry>,
}

impl PrefixList {
    /// Whether the list permits `prefix`.
    pub fn permits(&self, prefix: IpNet) -> bool {
        self.entries
            .iter()
            .find(|e| e.matches(prefix))
            .is_some_and(|e| e.permit)
    }
}

/// How a statement changes the communities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommunitySet {
    /// Replace them (`set community X`).
    Replace(Vec<Community>),
    /// Add these (`set community X additive`).
    Add(Vec<Community>),
}

/// Attribute changes of a permitting statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    /// `set local-preference` (only sent to iBGP peers).
    pub local_pref: Option<u32>,
    /// `set metric` (MULTI_EXIT_DISC).
    pub med: Option<u32>,
    /// `set community`.
    pub communities: Option<CommunitySet>,
}

/// What a statement does with matching routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Do not send.
    Deny,
    /// Send, with these changes.
    Permit(Set),
}

/// One statement: all of its matches must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// `match ip address prefix-list`: the list must permit the prefix.
    pub prefix_list: Option<PrefixList>,
    /// `match community`: the route must carry this community.
    pub community: Option<Community>,
    /// What to do.
    pub action: Action,
}

/// A peer's export policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Statements in order; the first that matches decides.
    pub statements: Vec<Statement>,
    /// What happens to routes no statement matches.
    pub default: Action,
}

impl Default for Policy {
    /// Send everything unchanged (no `ebgp-requires-policy`, as Cilium).
    fn default() -> Self {
        Policy {
            statements: Vec::new(),
            default: Action::Permit(Set::default()),
        }
    }
}

impl Policy {
    /// The statement deciding a route: its index (`None` for the default)
    /// and action.
    pub fn evaluate(&self, prefix: IpNet, attrs: &RouteAttrs) -> (Option<usize>, &Action) {
        let hit = self.statements.iter().position(|s| {
            s.prefix_list.as_ref().is_none_or(|l| l.permits(prefix))
                && s.community
                    .is_none_or(|c| attrs.attributes.communities.contains(&c))
        });
        match hit {
            Some(i) => (Some(i), &self.statements[i].action),
            None => (None, &self.default),
        }
    }
}

/// The peer a route is exported to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    pub(super) ebgp: bool,
    pub(super) asn: u32,
    pub(super) local_v4: Option<Ipv4Addr>,
    pub(super) local_v6: Option<Ipv6Addr>,
    pub(super) next_hop_self: bool,
}

/// Where the exported path came from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Source {
    pub(super) local: bool,
    pub(super) ibgp: bool,
}

/// The rules that hold whatever the policy (RFC 4271 §9.1.3, RFC 1997,
/// FRR's AS loop check towards eBGP peers).
pub(super) fn allowed(target: &Target, source: &Source, attrs: &RouteAttrs) -> bool {
    let a = &attrs.attributes;
    if a.communities.contains(&Community::NO_ADVERTISE) {
        return false;
    }
    if target.ebgp {
        let in_path = a
            .as_path
            .as_ref()
            .is_some_and(|p| p.segments.iter().any(|s| s.asns.contains(&target.asn)));
        !a.communities.contains(&Community::NO_EXPORT) && !in_path
    } else {
        !source.ibgp
    }
}

fn prepend(path: Option<&AsPath>, asn: u32) -> AsPath {
    let mut path = path.cloned().unwrap_or_default();
    match path.segments.first_mut() {
        Some(s) if s.kind == SegmentType::Sequence && s.asns.len() < 255 => s.asns.insert(0, asn),
        _ => path.segments.insert(
            0,
            AsSegment {
                kind: SegmentType::Sequence,
                asns: vec![asn],
            },
        ),
    }
    path
}

/// The attributes sent to `target`, or `None` when the route cannot be
/// sent there (no local address of the route's family for the next hop).
pub(super) fn transform(
    target: &Target,
    source: &Source,
    attrs: &RouteAttrs,
    set: &Set,
    local_as: u32,
    default_local_pref: u32,
) -> Option<RouteAttrs> {
    let mut a = attrs.attributes.clone();
    a.unknown = a
        .unknown
        .iter()
        .filter_map(|r| r.for_propagation())
        .collect();
    a.as4_path = None;
    a.as4_aggregator = None;
    let self_next_hop = || match attrs.next_hop {
        NextHop::Ipv4(_) => target.local_v4.map(NextHop::Ipv4),
        NextHop::Ipv6 { .. } => target.local_v6.map(|global| NextHop::Ipv6 {
            global,
            link_local: None,
        }),
    };
    let next_hop = if target.ebgp {
        a.as_path = Some(prepend(a.as_path.as_ref(), local_as));
        a.local_pref = None;
        if !source.local {
            a.med = None;
        }
        self_next_hop()?
    } else {
        a.local_pref = Some(
            set.local_pref
                .or(a.local_pref)
                .unwrap_or(default_local_pref),
        );
        if a.as_path.is_none() {
            a.as_path = Some(AsPath::default());
        }
        if source.local || target.next_hop_self {
            self_next_hop()?
        } else {
            attrs.next_hop
        }
    };
    if let Some(med) = set.med {
        a.med = Some(med);
    }
    match &set.communities {
        Some(CommunitySet::Replace(c)) => a.communities = c.clone(),
        Some(CommunitySet::Add(c)) => {
            for &x in c {
                if !a.communities.contains(&x) {
                    a.communities.push(x);
                }
            }
        }
        None => {}
    }
    Some(RouteAttrs {
        next_hop,
        attributes: a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{Origin, PathAttributes};

    fn entry(permit: bool, prefix: &str, ge: Option<u8>, le: Option<u8>) -> PrefixListEntry {
        PrefixListEntry {
            permit,
            prefix: prefix.parse().unwrap(),
            ge,
            le,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_list_ge_le() {
        let exact = entry(true, "10.0.0.0/16", None, None);
        assert!(exact.matches(net("10.0.0.0/16")));
        assert!(!exact.matches(net("10.0.1.0/24")));
        let ge = entry(true, "10.0.0.0/16", Some(24), None);
        assert!(ge.matches(net("10.0.1.0/24")) && ge.matches(net("10.0.1.1/32")));
        assert!(!ge.matches(net("10.0.0.0/20")));
        let le = entry(true, "10.0.0.0/16", None, Some(24));
        assert!(le.matches(net("10.0.0.0/16")) && le.matches(net("10.0.4.0/22")));
        assert!(!le.matches(net("10.0.0.0/25")));
        let both = entry(true, "10.0.0.0/8", Some(20), Some(24));
        assert!(both.matches(net("10.9.0.0/20")) && !both.matches(net("10.9.0.0/16")));
        assert!(!both.matches(net("11.0.0.0/24")));
        assert!(!both.matches(net("2001:db8::/32")));
        // First match decides; no match denies.
        let list = PrefixList {
            entries: vec![
                entry(false, "10.0.5.0/24", None, None),
                entry(true, "10.0.0.0/16", None, Some(32)),
            ],
        };
        assert!(list.permits(net("10.0.4.0/24")));
        assert!(!list.permits(net("10.0.5.0/24")));
        assert!(!list.permits(net("192.168.0.0/24")));
    }

    fn attrs(path: Vec<u32>) -> RouteAttrs {
        RouteAttrs {
            next_hop: NextHop::Ipv4(Ipv4Addr::new(192, 168, 10, 1)),
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::sequence(path)),
                med: Some(5),
                local_pref: Some(200),
                ..PathAttributes::default()
            },
        }
    }

    const EBGP: Target = Target {
        ebgp: true,
        asn: 65100,
        local_v4: Some(Ipv4Addr::new(192, 168, 10, 200)),
        local_v6: None,
        next_hop_self: false,
    };
    const IBGP: Target = Target {
        ebgp: false,
        asn: 65000,
        local_v4: Some(Ipv4Addr::new(10, 255, 0, 1)),
        local_v6: None,
        next_hop_self: false,
    };
    const LEARNED_EBGP: Source = Source {
        local: false,
        ibgp: false,
    };

    #[test]
    fn default_rules() {
        let a = attrs(vec![65001]);
        assert!(allowed(&EBGP, &LEARNED_EBGP, &a));
        assert!(!allowed(&EBGP, &LEARNED_EBGP, &attrs(vec![65001, 65100])));
        let from_ibgp = Source {
            local: false,
            ibgp: true,
        };
        assert!(!allowed(&IBGP, &from_ibgp, &a));
        assert!(allowed(&IBGP, &LEARNED_EBGP, &a));
        assert!(allowed(&EBGP, &from_ibgp, &a));
        let mut no_export = a.clone();
        no_export.attributes.communities = vec![Community::NO_EXPORT];
        assert!(!allowed(&EBGP, &LEARNED_EBGP, &no_export));
        assert!(allowed(&IBGP, &LEARNED_EBGP, &no_export));
        no_export.attributes.communities = vec![Community::NO_ADVERTISE];
        assert!(!allowed(&IBGP, &LEARNED_EBGP, &no_export));
    }

    #[test]
    fn ebgp_export_prepends_and_sets_next_hop_self() {
        let out = transform(
            &EBGP,
            &LEARNED_EBGP,
            &attrs(vec![65001]),
            &Set::default(),
            65000,
            100,
        )
        .unwrap();
        assert_eq!(
            out.next_hop,
            NextHop::Ipv4(Ipv4Addr::new(192, 168, 10, 200))
        );
        assert_eq!(
            out.attributes.as_path,
            Some(AsPath::sequence(vec![65000, 65001]))
        );
        assert_eq!(
            (out.attributes.med, out.attributes.local_pref),
            (None, None)
        );
        // No local address of the family: not sent.
        let mut v6 = attrs(vec![65001]);
        v6.next_hop = NextHop::Ipv6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: None,
        };
        assert_eq!(
            transform(&EBGP, &LEARNED_EBGP, &v6, &Set::default(), 65000, 100),
            None
        );
    }

    #[test]
    fn ibgp_export_keeps_next_hop_and_sets_local_pref() {
        let mut a = attrs(vec![65001]);
        a.attributes.local_pref = None;
        let out = transform(&IBGP, &LEARNED_EBGP, &a, &Set::default(), 65000, 100).unwrap();
        assert_eq!(out.next_hop, a.next_hop);
        assert_eq!(out.attributes.local_pref, Some(100));
        assert_eq!(out.attributes.med, Some(5));
        let set = Set {
            local_pref: Some(300),
            med: Some(7),
            communities: Some(CommunitySet::Add(vec![Community::new(65000, 1)])),
        };
        let local = Source {
            local: true,
            ibgp: false,
        };
        let out = transform(&IBGP, &local, &a, &set, 65000, 100).unwrap();
        assert_eq!(out.attributes.local_pref, Some(300));
        assert_eq!(out.attributes.med, Some(7));
        assert_eq!(out.attributes.communities, vec![Community::new(65000, 1)]);
        assert_eq!(out.next_hop, NextHop::Ipv4(Ipv4Addr::new(10, 255, 0, 1)));
    }

    #[test]
    fn policy_first_match() {
        let policy = Policy {
            statements: vec![
                Statement {
                    prefix_list: None,
                    community: Some(Community::new(65000, 666)),
                    action: Action::Deny,
                },
                Statement {
                    prefix_list: Some(PrefixList {
                        entries: vec![entry(true, "10.0.0.0/8", None, Some(24))],
                    }),
                    community: None,
                    action: Action::Permit(Set {
                        communities: Some(CommunitySet::Replace(vec![Community::new(1, 2)])),
                        ..Set::default()
                    }),
                },
            ],
            default: Action::Deny,
        };
        let mut a = attrs(vec![]);
        assert_eq!(policy.evaluate(net("10.1.0.0/24"), &a).0, Some(1));
        assert_eq!(
            policy.evaluate(net("10.1.0.0/25"), &a),
            (None, &Action::Deny)
        );
        a.attributes.communities = vec![Community::new(65000, 666)];
        assert_eq!(
            policy.evaluate(net("10.1.0.0/24"), &a),
            (Some(0), &Action::Deny)
        );
    }
}
