//! The decision process (RFC 4271 §9.1.2): which of a prefix's paths is
//! best, and which others join it for multipath.
//!
//! Owns the comparison only, over plain [`Candidate`] values; the RIB
//! builds them from its paths and peers. Selection is the elimination of
//! RFC 4271 §9.1.2.2 run over the whole set at once — each step keeps the
//! paths best at that step — so the result does not depend on the order
//! paths arrived, even with MEDs compared only within a neighbour AS:
//!
//! 1. highest degree of preference (LOCAL_PREF, or the default);
//! 2. originated by this speaker (FRR's "local route" step);
//! 3. shortest AS_PATH (an AS_SET counts 1, confederation segments 0);
//! 4. lowest ORIGIN (IGP < EGP < INCOMPLETE);
//! 5. lowest MULTI_EXIT_DISC among paths from the same neighbour AS
//!    (missing counts 0; no always-compare-med);
//! 6. eBGP over iBGP;
//! 7. lowest IGP cost to the next hop;
//! 8. lowest BGP Identifier of the peer;
//! 9. lowest peer address.
//!
//! Multipath (`maximum-paths N`): the paths left after step 7 are equal to
//! the best; those with the best's AS_PATH (or, with `as-path
//! multipath-relax`, any AS_PATH of the same length, which step 3 already
//! ensured) join it, in the order of steps 8–9, up to N in all.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use super::intern::RouteAttrs;
use crate::bgp::wire::{Origin, SegmentType};

/// One path as the decision process sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    /// Its attributes.
    pub attrs: &'a RouteAttrs,
    /// Originated by this speaker.
    pub local: bool,
    /// Learned from an external peer.
    pub ebgp: bool,
    /// The peer's BGP Identifier (ours for a local path).
    pub router_id: Ipv4Addr,
    /// The peer's address.
    pub address: IpAddr,
    /// IGP cost to the next hop.
    pub igp_cost: u32,
}

/// Settings of the decision process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Our AS: the neighbour AS of a path with an empty AS_PATH.
    pub local_as: u32,
    /// Degree of preference of a path without LOCAL_PREF.
    pub default_local_pref: u32,
    /// Paths installed per prefix (`maximum-paths`), at least 1.
    pub maximum_paths: u8,
    /// `bgp bestpath as-path multipath-relax`.
    pub multipath_relax: bool,
}

impl Candidate<'_> {
    fn local_pref(&self, p: &Params) -> u32 {
        self.attrs
            .attributes
            .local_pref
            .unwrap_or(p.default_local_pref)
    }

    fn hops(&self) -> usize {
        self.attrs
            .attributes
            .as_path
            .as_ref()
            .map_or(0, |a| a.hop_count())
    }

    fn origin(&self) -> Origin {
        self.attrs.attributes.origin.unwrap_or(Origin::Incomplete)
    }

    /// The leftmost AS of the AS_PATH, or ours for a path without one
    /// (RFC 4271 §9.1.2.2 c).
    fn neighbour_as(&self, p: &Params) -> u32 {
        let first = self.attrs.attributes.as_path.as_ref().and_then(|a| {
            let s = a.segments.first()?;
            (s.kind == SegmentType::Sequence)
                .then(|| s.asns.first().copied())
                .flatten()
        });
        first.unwrap_or(p.local_as)
    }

    fn med(&self) -> u32 {
        self.attrs.attributes.med.unwrap_or(0)
    }
}

/// Keep the indices in `alive` whose `key` is the smallest.
fn keep_min<K: Ord>(alive: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    let Some(min) = alive.iter().map(|&i| key(i)).min() else {
        return;
    };
    alive.retain(|&i| key(i) == min);
}

/// The selected paths of `paths`, as indices: the best first, then the
/// other multipaths. Empty only if `paths` is.
pub fn select(paths: &[Candidate<'_>], p: &Params) -> Vec<usize> {
    let mut alive: Vec<usize> = (0..paths.len()).collect();
    let c = |i: usize| &paths[i];
    keep_min(&mut alive, |i| core::cmp::Reverse(c(i).local_pref(p)));
    keep_min(&mut alive, |i| !c(i).local);
    keep_min(&mut alive, |i| c(i).hops());
    keep_min(&mut alive, |i| c(i).origin());
    let before_med = alive.clone();
    alive.retain(|&i| {
        !before_med
            .iter()
            .any(|&j| c(j).neighbour_as(p) == c(i).neighbour_as(p) && c(j).med() < c(i).med())
    });
    keep_min(&mut alive, |i| !c(i).ebgp);
    keep_min(&mut alive, |i| c(i).igp_cost);
    alive.sort_by_key(|&i| (c(i).router_id, c(i).address));
    let Some(&best) = alive.first() else {
        return alive;
    };
    if c(best).local {
        return alive[..1].to_vec();
    }
    let best_path = &c(best).attrs.attributes.as_path;
    alive.retain(|&i| p.multipath_relax || c(i).attrs.attributes.as_path == *best_path);
    alive.truncate(usize::from(p.maximum_paths.max(1)));
    alive
}
