//! How a node's desired prefixes become BGP, the same in the agent and the
//! simulator: the path attributes an originated route carries, and the export
//! policy that sends a peer exactly the prefixes its advertisements select.
//! Choosing the prefixes is [`super::desired`](mod@super::desired)'s job.

use alloc::collections::BTreeSet;
use alloc::vec;

use ipnet::IpNet;

use super::desired::RouteAttributes;
use crate::bgp::rib::policy::{Action, Policy, PrefixList, PrefixListEntry, Set, Statement};
use crate::bgp::wire::{Origin, PathAttributes};

/// The attributes `route` is originated with (ORIGIN IGP, its communities and
/// LOCAL_PREF); the RIB adds our AS and the next hop per peer on export.
pub fn originated_attributes(route: &RouteAttributes) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        communities: route.communities.iter().copied().collect(),
        large_communities: route.large_communities.iter().copied().collect(),
        local_pref: route.local_preference,
        ..PathAttributes::default()
    }
}

/// The export policy sending exactly `prefixes` (nothing learned from others).
pub fn export_policy(prefixes: &BTreeSet<IpNet>) -> Policy {
    let entries = prefixes
        .iter()
        .map(|&prefix| PrefixListEntry {
            permit: true,
            prefix,
            ge: None,
            le: None,
        })
        .collect();
    Policy {
        statements: vec![Statement {
            prefix_list: Some(PrefixList { entries }),
            community: None,
            action: Action::Permit(Set::default()),
        }],
        default: Action::Deny,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originated_routes_are_igp_with_the_advertisement_attributes() {
        let route = RouteAttributes {
            local_preference: Some(200),
            ..RouteAttributes::default()
        };
        let a = originated_attributes(&route);
        assert_eq!(a.origin, Some(Origin::Igp));
        assert_eq!(a.local_pref, Some(200));
        assert!(a.as_path.is_none());
    }

    #[test]
    fn the_policy_permits_only_the_listed_prefixes() {
        let p: IpNet = "172.20.0.0/24".parse().unwrap();
        let policy = export_policy(&BTreeSet::from([p]));
        assert_eq!(policy.default, Action::Deny);
        let entries = &policy.statements[0].prefix_list.as_ref().unwrap().entries;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].prefix, p);
    }
}
