//! The BGP RIBs (RFC 4271 §3.2): Adj-RIB-In, Loc-RIB and Adj-RIB-Out, with
//! the decision process, export to peers and the graceful-restart helper's
//! stale routes (RFC 4724 §4.2).
//!
//! Owns every path learned or originated and what was sent to each peer.
//! It is fed what sessions report ([`Rib::apply`] takes a
//! [`fsm::Output`]) and answers with [`Output`]s:
//! UPDATEs for a peer's session to send, and per prefix the ECMP next-hop
//! set for the FIB. Sessions, timers and the FIB itself belong to others.
//!
//! Layout, for memory at a million paths: one ordered map per family from
//! prefix to its paths; a path is (peer, interned attribute set, stale bit),
//! twelve bytes, stored inline when it is the prefix's only one. A peer's
//! Adj-RIB-In is its paths across prefixes; the Loc-RIB is each prefix's
//! selected paths, kept first (best, then the other multipaths); a peer's
//! Adj-RIB-Out maps each prefix sent to the attribute set sent.

pub mod decision;
pub mod intern;
pub mod policy;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use self::decision::{Candidate, Params};
pub use self::intern::RouteAttrs;
use self::intern::{AttrId, Interner};
use self::policy::{Action, Policy, Source, Target};
use super::fsm::{self, Negotiated};
use super::wire::{Family, MpReach, MpUnreach, NextHop, Origin, PathAttributes, Prefixes, Update};
use crate::fib::{self, Nexthop, Protocol};
use crate::port::PortId;

/// A peer of the RIB, named by [`Rib::add_peer`]. [`PeerId::LOCAL`] stands
/// for routes this speaker originates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

impl PeerId {
    /// This speaker: network statements, pod CIDRs.
    pub const LOCAL: PeerId = PeerId(0);
}

/// Settings of the whole RIB.
#[derive(Clone, Copy, Debug)]
pub struct RibConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// `maximum-paths`: next hops per prefix for the FIB (1: no multipath).
    pub maximum_paths: u8,
    /// `bgp bestpath as-path multipath-relax`.
    pub multipath_relax: bool,
    /// LOCAL_PREF assumed for paths without one (eBGP-learned, originated).
    pub default_local_pref: u32,
    /// Report next-hop sets for the FIB ([`Output::Fib`]); off, like
    /// Cilium's agent, when received routes are not installed.
    pub install: bool,
    /// IGP cost to a next hop (decision step 7).
    pub igp_cost: fn(IpAddr) -> u32,
}

impl RibConfig {
    /// No multipath, default LOCAL_PREF 100, routes installed, every next
    /// hop at IGP cost 0.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> RibConfig {
        RibConfig {
            local_as,
            router_id,
            maximum_paths: 1,
            multipath_relax: false,
            default_local_pref: 100,
            install: true,
            igp_cost: |_| 0,
        }
    }
}

/// How the RIB treats one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address (decision step 9, and for displays).
    pub address: IpAddr,
    /// Our address towards the peer: the next hop of IPv4 routes we send
    /// (next-hop-self).
    pub local_v4: Option<Ipv4Addr>,
    /// Our IPv6 address towards the peer: the next hop of IPv6 routes.
    pub local_v6: Option<Ipv6Addr>,
    /// Set ourselves as next hop towards an iBGP peer too.
    pub next_hop_self: bool,
    /// The export policy.
    pub export: Policy,
}

impl PeerConfig {
    /// A peer at `address`, our IPv4 address towards it `local_v4`, the
    /// default (permit-all) policy.
    pub fn new(address: IpAddr, local_v4: Option<Ipv4Addr>) -> PeerConfig {
        PeerConfig {
            address,
            local_v4,
            local_v6: None,
            next_hop_self: false,
            export: Policy::default(),
        }
    }
}

/// The next hops the FIB should use for a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpRoute {
    /// eBGP or iBGP, from the best path.
    pub protocol: Protocol,
    /// The selected paths' next hops, sorted, no duplicates: several make
    /// an ECMP group.
    pub nexthops: Vec<IpAddr>,
}

impl BgpRoute {
    /// The FIB route, with each next hop on the port `resolve` finds for it
    /// (recursively, for multihop peers); unresolved next hops are left
    /// out, and `None` if none resolve.
    pub fn to_fib(&self, mut resolve: impl FnMut(IpAddr) -> Option<PortId>) -> Option<fib::Route> {
        let nexthops: Vec<Nexthop> = self
            .nexthops
            .iter()
            .filter_map(|&a| resolve(a).map(|port| Nexthop::gateway(a, port)))
            .collect();
        (!nexthops.is_empty()).then(|| fib::Route::new(self.protocol, nexthops))
    }
}

/// What the RIB wants done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// The FIB entry of `prefix` changed (`None`: remove it).
    Fib {
        /// The prefix.
        prefix: IpNet,
        /// Its next hops.
        route: Option<BgpRoute>,
    },
    /// Give this UPDATE to the peer's session
    /// ([`fsm::Event::SendUpdate`]).
    Send {
        /// The peer.
        peer: PeerId,
        /// The UPDATE.
        update: Box<Update>,
    },
}

/// One path of a prefix, for displays (`bgp routes`).
#[derive(Clone, Copy, Debug)]
pub struct PathInfo<'a> {
    /// Where it came from.
    pub peer: PeerId,
    /// Its attributes as received (after import).
    pub attrs: &'a RouteAttrs,
    /// The best path.
    pub best: bool,
    /// Selected with the best for multipath (the best included).
    pub selected: bool,
    /// Kept from a restarting peer (graceful restart).
    pub stale: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Path {
    peer: PeerId,
    attrs: AttrId,
    stale: bool,
}

/// A prefix's paths, never empty; one is kept inline.
#[derive(Clone, Debug)]
enum Paths {
    One(Path),
    Many(Vec<Path>),
}

impl Paths {
    fn as_slice(&self) -> &[Path] {
        match self {
            Paths::One(p) => core::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Path] {
        match self {
            Paths::One(p) => core::slice::from_mut(p),
            Paths::Many(v) => v,
        }
    }

    fn push(&mut self, path: Path) {
        match self {
            Paths::One(p) => *self = Paths::Many(alloc::vec![*p, path]),
            Paths::Many(v) => v.push(path),
        }
    }

    /// Remove path `i`; `false` if it is the only one (the caller drops
    /// the prefix).
    fn remove(&mut self, i: usize) -> bool {
        match self {
            Paths::One(_) => false,
            Paths::Many(v) => {
                v.remove(i);
                if v.len() == 1 {
                    *self = Paths::One(v[0]);
                }
                true
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    paths: Paths,
    /// `paths[..selected]` are the best and the other multipaths.
    selected: u8,
}

impl Entry {
    fn selected(&self) -> &[Path] {
        &self.paths.as_slice()[..usize::from(self.selected)]
    }
}

/// What an established session told the RIB about the peer.
#[derive(Clone, Debug)]
struct SessionInfo {
    asn: u32,
    router_id: Ipv4Addr,
    families: BTreeSet<Family>,
}

#[derive(Clone, Debug)]
struct Peer {
    config: PeerConfig,
    /// The last session's view, kept while stale paths remain.
    session: Option<SessionInfo>,
    established: bool,
    adj_out: BTreeMap<IpNet, AttrId>,
    /// Prefixes with a path from this peer.
    received: usize,
    /// Families in which paths from this peer were marked stale and not
    /// purged yet: End-of-RIB walks the table only for these.
    stale: BTreeSet<Family>,
}

/// One change to one prefix's paths.
#[derive(Clone, Copy, Debug)]
enum Change {
    Set(Path),
    Remove(PeerId),
    RemoveStale(PeerId),
    MarkStale(PeerId),
    Reselect,
}

/// Outputs gathered over one call, UPDATEs grouped at the end.
#[derive(Debug, Default)]
struct Batch {
    fib: Vec<Output>,
    /// Per peer and prefix, the attribute set now sent (`None`: withdrawn).
    pending: BTreeMap<(PeerId, IpNet), Option<AttrId>>,
    /// Exported sets by (peer, source set, originated, policy statement),
    /// each holding one reference until the batch ends.
    exported: BTreeMap<(PeerId, AttrId, bool, Option<usize>), Option<AttrId>>,
}

/// The BGP RIBs of one speaker (see the module documentation).
#[derive(Clone, Debug)]
pub struct Rib {
    config: RibConfig,
    peers: Vec<Option<Peer>>,
    attrs: Interner,
    v4: BTreeMap<Ipv4Net, Entry>,
    v6: BTreeMap<Ipv6Net, Entry>,
}

fn same_route(a: Option<&Path>, b: Option<&Path>) -> bool {
    a.map(|p| (p.peer, p.attrs)) == b.map(|p| (p.peer, p.attrs))
}

/// The UPDATE announcing `prefixes` of `family` with `attrs`.
fn announcement(attrs: &RouteAttrs, family: Family, prefixes: Vec<IpNet>) -> Update {
    let mut attributes = attrs.attributes.clone();
    match (family, attrs.next_hop) {
        (Family::IPV4_UNICAST, NextHop::Ipv4(nh)) => {
            attributes.next_hop = Some(nh);
            let nlri = prefixes
                .into_iter()
                .filter_map(|p| match p {
                    IpNet::V4(p) => Some(p),
                    IpNet::V6(_) => None,
                })
                .collect();
            Update {
                attributes,
                nlri,
                ..Update::default()
            }
        }
        (_, next_hop) => {
            attributes.mp_reach = Some(MpReach {
                next_hop,
                nlri: prefixes_of(family, prefixes),
            });
            Update {
                attributes,
                ..Update::default()
            }
        }
    }
}

fn prefixes_of(family: Family, prefixes: Vec<IpNet>) -> Prefixes {
    if family == Family::IPV4_UNICAST {
        Prefixes::Ipv4(
            prefixes
                .into_iter()
                .filter_map(|p| match p {
                    IpNet::V4(p) => Some(p),
                    IpNet::V6(_) => None,
                })
                .collect(),
        )
    } else {
        Prefixes::Ipv6(
            prefixes
                .into_iter()
                .filter_map(|p| match p {
                    IpNet::V6(p) => Some(p),
                    IpNet::V4(_) => None,
                })
                .collect(),
        )
    }
}

/// The UPDATE withdrawing `prefixes` of `family`.
fn withdrawal(family: Family, prefixes: Vec<IpNet>) -> Update {
    if family == Family::IPV4_UNICAST {
        let Prefixes::Ipv4(withdrawn) = prefixes_of(family, prefixes) else {
            unreachable!("IPv4 prefixes")
        };
        Update {
            withdrawn,
            ..Update::default()
        }
    } else {
        Update {
            attributes: PathAttributes {
                mp_unreach: Some(MpUnreach {
                    withdrawn: prefixes_of(family, prefixes),
                }),
                ..PathAttributes::default()
            },
            ..Update::default()
        }
    }
}

/// Rerun the decision process over `entry`, selected paths first.
fn reselect(entry: &mut Entry, attrs: &Interner, peers: &[Option<Peer>], config: &RibConfig) {
    let paths = entry.paths.as_mut_slice();
    if paths.len() == 1 {
        entry.selected = 1;
        return;
    }
    let candidates: Vec<Candidate<'_>> = paths
        .iter()
        .map(|p| candidate(p, attrs, peers, config))
        .collect();
    let params = Params {
        local_as: config.local_as,
        default_local_pref: config.default_local_pref,
        maximum_paths: config.maximum_paths,
        multipath_relax: config.multipath_relax,
    };
    let selected = decision::select(&candidates, &params);
    if let [best] = selected[..] {
        // The same order as below, without a copy: the best first, the
        // others as they were.
        paths[..=best].rotate_right(1);
    } else {
        let order: Vec<Path> = selected
            .iter()
            .copied()
            .chain((0..paths.len()).filter(|i| !selected.contains(i)))
            .map(|i| paths[i])
            .collect();
        paths.copy_from_slice(&order);
    }
    entry.selected = selected.len() as u8;
}

fn candidate<'a>(
    path: &Path,
    attrs: &'a Interner,
    peers: &[Option<Peer>],
    config: &RibConfig,
) -> Candidate<'a> {
    let a = attrs.get(path.attrs);
    let peer = peers.get(path.peer.0 as usize).and_then(Option::as_ref);
    let session = peer.and_then(|p| p.session.as_ref());
    Candidate {
        attrs: a,
        local: path.peer == PeerId::LOCAL,
        ebgp: session.is_some_and(|s| s.asn != config.local_as),
        router_id: session.map_or(config.router_id, |s| s.router_id),
        address: peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.config.address),
        igp_cost: (config.igp_cost)(a.next_hop_addr()),
    }
}

impl Rib {
    /// An empty RIB.
    pub fn new(config: RibConfig) -> Rib {
        Rib {
            config,
            peers: alloc::vec![None],
            attrs: Interner::default(),
            v4: BTreeMap::new(),
            v6: BTreeMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(id.0 as usize)?.as_ref()
    }

    fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id.0 as usize)?.as_mut()
    }

    /// Add a peer; its routes flow once its session is up ([`Rib::peer_up`]).
    pub fn add_peer(&mut self, config: PeerConfig) -> PeerId {
        self.peers.push(Some(Peer {
            config,
            session: None,
            established: false,
            adj_out: BTreeMap::new(),
            received: 0,
            stale: BTreeSet::new(),
        }));
        PeerId((self.peers.len() - 1) as u32)
    }

    /// Set our addresses towards peer `id` (the next hops of what it is
    /// sent), e.g. once its TCP connection shows the local end. Routes
    /// already sent keep theirs until they are exported again.
    pub fn set_local_addresses(&mut self, id: PeerId, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) {
        if let Some(peer) = self.peer_mut(id) {
            peer.config.local_v4 = v4;
            peer.config.local_v6 = v6;
        }
    }

    /// Remove a peer and every route it gave.
    pub fn remove_peer(&mut self, id: PeerId) -> Vec<Output> {
        let out = self.peer_down(id, &BTreeSet::new());
        if let Some(slot) = self.peers.get_mut(id.0 as usize) {
            *slot = None;
        }
        out
    }

    /// Carry out what a session reported about peer `id`.
    pub fn apply(&mut self, id: PeerId, output: &fsm::Output) -> Vec<Output> {
        match output {
            fsm::Output::Established(n) => self.peer_up(id, n),
            fsm::Output::PeerDown { stale } => self.peer_down(id, stale),
            fsm::Output::Announce {
                next_hop,
                attributes,
                prefixes,
                ..
            } => self.announce(id, *next_hop, (**attributes).clone(), prefixes),
            fsm::Output::Withdraw { prefixes, .. } => self.withdraw(id, prefixes),
            fsm::Output::EndOfRib(family) | fsm::Output::PurgeStale(family) => {
                self.purge_stale(id, *family)
            }
            fsm::Output::RefreshRequested(family) => self.refresh(id, *family),
            _ => Vec::new(),
        }
    }

    /// The peer's session is Established: remember what it negotiated and
    /// return its initial UPDATEs — the whole Adj-RIB-Out, then End-of-RIB
    /// for each family (RFC 4724 §2).
    pub fn peer_up(&mut self, id: PeerId, negotiated: &Negotiated) -> Vec<Output> {
        let info = SessionInfo {
            asn: negotiated.peer_as,
            router_id: negotiated.peer_id,
            families: negotiated.families.clone(),
        };
        let Some(peer) = self.peer_mut(id) else {
            return Vec::new();
        };
        let moved = peer
            .session
            .as_ref()
            .is_some_and(|s| (s.asn, s.router_id) != (info.asn, info.router_id));
        let families = info.families.clone();
        peer.session = Some(info);
        peer.established = true;
        let mut batch = Batch::default();
        if moved {
            for prefix in self.prefixes_of_peer(id, None) {
                self.change(prefix, Change::Reselect, &mut batch);
            }
        }
        self.export_all(id, &mut batch);
        let mut out = self.finish(batch);
        for family in families {
            if let Some(eor) = Update::end_of_rib(family) {
                out.push(Output::Send {
                    peer: id,
                    update: Box::new(eor),
                });
            }
        }
        out
    }

    /// The peer's session ended. Its paths of the `stale` families stay,
    /// marked stale, until End-of-RIB or a purge; the others go.
    pub fn peer_down(&mut self, id: PeerId, stale: &BTreeSet<Family>) -> Vec<Output> {
        let Some(peer) = self.peer_mut(id) else {
            return Vec::new();
        };
        peer.established = false;
        peer.stale.extend(stale.iter().copied());
        let sent = core::mem::take(&mut peer.adj_out);
        for attrs in sent.into_values() {
            self.attrs.release(attrs);
        }
        let mut batch = Batch::default();
        for prefix in self.prefixes_of_peer(id, None) {
            let change = if stale.contains(&Family::of(&prefix)) {
                Change::MarkStale(id)
            } else {
                Change::Remove(id)
            };
            self.change(prefix, change, &mut batch);
        }
        self.finish(batch)
    }

    /// Remove the peer's stale paths of `family`: it sent End-of-RIB, or
    /// the restart timer expired.
    pub fn purge_stale(&mut self, id: PeerId, family: Family) -> Vec<Output> {
        if !self.peer_mut(id).is_some_and(|p| p.stale.remove(&family)) {
            return Vec::new();
        }
        let mut batch = Batch::default();
        for prefix in self.prefixes_of_peer(id, Some(family)) {
            self.change(prefix, Change::RemoveStale(id), &mut batch);
        }
        self.finish(batch)
    }

    /// Routes from the peer. Paths whose AS_PATH holds our AS are treated
    /// as withdrawn (RFC 4271 §9.1.2), and LOCAL_PREF from an external peer
    /// is ignored (§5.1.5).
    pub fn announce(
        &mut self,
        id: PeerId,
        next_hop: NextHop,
        mut attributes: PathAttributes,
        prefixes: &[IpNet],
    ) -> Vec<Output> {
        let Some(peer_as) = self
            .peer(id)
            .and_then(|p| p.session.as_ref())
            .map(|s| s.asn)
        else {
            return Vec::new();
        };
        let local_as = self.config.local_as;
        let looped = attributes
            .as_path
            .as_ref()
            .is_some_and(|p| p.segments.iter().any(|s| s.asns.contains(&local_as)));
        if looped {
            return self.withdraw(id, prefixes);
        }
        if peer_as != local_as {
            attributes.local_pref = None;
        }
        self.insert(id, next_hop, attributes, prefixes)
    }

    fn insert(
        &mut self,
        id: PeerId,
        next_hop: NextHop,
        attributes: PathAttributes,
        prefixes: &[IpNet],
    ) -> Vec<Output> {
        let attrs = self.attrs.intern(RouteAttrs {
            next_hop,
            attributes,
        });
        let path = Path {
            peer: id,
            attrs,
            stale: false,
        };
        let mut batch = Batch::default();
        for &prefix in prefixes {
            self.change(prefix.trunc(), Change::Set(path), &mut batch);
        }
        self.attrs.release(attrs);
        self.finish(batch)
    }

    /// The peer withdrew these prefixes.
    pub fn withdraw(&mut self, id: PeerId, prefixes: &[IpNet]) -> Vec<Output> {
        let mut batch = Batch::default();
        for &prefix in prefixes {
            self.change(prefix.trunc(), Change::Remove(id), &mut batch);
        }
        self.finish(batch)
    }

    /// Originate `prefix` (a network statement, a pod CIDR) with
    /// `attributes`; ORIGIN defaults to IGP and the AS_PATH to empty.
    pub fn originate(&mut self, prefix: IpNet, mut attributes: PathAttributes) -> Vec<Output> {
        attributes.origin.get_or_insert(Origin::Igp);
        attributes.as_path.get_or_insert_with(Default::default);
        let next_hop = match prefix {
            IpNet::V4(_) => NextHop::Ipv4(Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => NextHop::Ipv6 {
                global: Ipv6Addr::UNSPECIFIED,
                link_local: None,
            },
        };
        self.insert(PeerId::LOCAL, next_hop, attributes, &[prefix])
    }

    /// Stop originating `prefix`.
    pub fn withdraw_originated(&mut self, prefix: IpNet) -> Vec<Output> {
        self.withdraw(PeerId::LOCAL, &[prefix])
    }

    /// Send the peer our routes of `family` again (ROUTE-REFRESH, RFC 2918).
    pub fn refresh(&mut self, id: PeerId, family: Family) -> Vec<Output> {
        let Some(peer) = self.peer(id) else {
            return Vec::new();
        };
        let mut groups: BTreeMap<AttrId, Vec<IpNet>> = BTreeMap::new();
        for (&prefix, &attrs) in &peer.adj_out {
            if Family::of(&prefix) == family {
                groups.entry(attrs).or_default().push(prefix);
            }
        }
        groups
            .into_iter()
            .map(|(attrs, prefixes)| Output::Send {
                peer: id,
                update: Box::new(announcement(self.attrs.get(attrs), family, prefixes)),
            })
            .collect()
    }

    /// Replace the peer's export policy, sending what changes.
    pub fn set_export_policy(&mut self, id: PeerId, policy: Policy) -> Vec<Output> {
        let Some(peer) = self.peer_mut(id) else {
            return Vec::new();
        };
        peer.config.export = policy;
        let mut batch = Batch::default();
        if peer.established {
            self.export_all(id, &mut batch);
        }
        self.finish(batch)
    }

    /// Prefixes with a path from `id` (of `family` if given).
    fn prefixes_of_peer(&self, id: PeerId, family: Option<Family>) -> Vec<IpNet> {
        self.entries()
            .filter(|(p, e)| {
                family.is_none_or(|f| f == Family::of(p))
                    && e.paths.as_slice().iter().any(|x| x.peer == id)
            })
            .map(|(p, _)| p)
            .collect()
    }

    fn entries(&self) -> impl Iterator<Item = (IpNet, &Entry)> {
        let v4 = self.v4.iter().map(|(k, e)| (IpNet::V4(*k), e));
        let v6 = self.v6.iter().map(|(k, e)| (IpNet::V6(*k), e));
        v4.chain(v6)
    }

    fn entry(&self, prefix: IpNet) -> Option<&Entry> {
        match prefix {
            IpNet::V4(k) => self.v4.get(&k),
            IpNet::V6(k) => self.v6.get(&k),
        }
    }

    /// Apply one change to `prefix`, rerun the decision, report changes.
    fn change(&mut self, prefix: IpNet, change: Change, batch: &mut Batch) {
        let entry = match (prefix, change) {
            (IpNet::V4(k), Change::Set(path)) => Some(self.v4.entry(k).or_insert(Entry {
                paths: Paths::One(path),
                selected: 0,
            })),
            (IpNet::V6(k), Change::Set(path)) => Some(self.v6.entry(k).or_insert(Entry {
                paths: Paths::One(path),
                selected: 0,
            })),
            (IpNet::V4(k), _) => self.v4.get_mut(&k),
            (IpNet::V6(k), _) => self.v6.get_mut(&k),
        };
        let Some(entry) = entry else {
            return;
        };
        // The FIB needs every selected path; exports only the best.
        let install = self.config.install;
        let selected = |e: &Entry| {
            if install {
                e.selected().to_vec()
            } else {
                Vec::new()
            }
        };
        let old_best = entry.selected().first().copied();
        let old = selected(entry);
        let mut released = None;
        let mut emptied = false;
        let fresh = entry.selected == 0;
        let mut counted = 0isize;
        let position =
            |peer: PeerId, e: &Entry| e.paths.as_slice().iter().position(|p| p.peer == peer);
        match change {
            Change::Set(path) => {
                self.attrs.retain(path.attrs);
                match position(path.peer, entry) {
                    Some(i) if !fresh => {
                        let slot = &mut entry.paths.as_mut_slice()[i];
                        released = Some(slot.attrs);
                        *slot = path;
                    }
                    Some(_) => counted = 1,
                    None => {
                        entry.paths.push(path);
                        counted = 1;
                    }
                }
            }
            Change::Remove(peer) | Change::RemoveStale(peer) => {
                let stale_only = matches!(change, Change::RemoveStale(_));
                match position(peer, entry) {
                    Some(i) if !stale_only || entry.paths.as_slice()[i].stale => {
                        released = Some(entry.paths.as_slice()[i].attrs);
                        emptied = !entry.paths.remove(i);
                        counted = -1;
                    }
                    _ => return,
                }
            }
            Change::MarkStale(peer) => {
                for p in entry.paths.as_mut_slice() {
                    if p.peer == peer {
                        p.stale = true;
                    }
                }
                return;
            }
            Change::Reselect => {}
        }
        let source = match change {
            Change::Set(path) => path.peer,
            Change::Remove(peer) | Change::RemoveStale(peer) | Change::MarkStale(peer) => peer,
            Change::Reselect => PeerId::LOCAL,
        };
        if let Some(Some(p)) = self.peers.get_mut(source.0 as usize) {
            p.received = p.received.saturating_add_signed(counted);
        }
        let (new_best, new) = if emptied {
            match prefix {
                IpNet::V4(k) => self.v4.remove(&k),
                IpNet::V6(k) => self.v6.remove(&k),
            };
            (None, Vec::new())
        } else {
            reselect(entry, &self.attrs, &self.peers, &self.config);
            (entry.selected().first().copied(), selected(entry))
        };
        self.report(prefix, (old_best, &old), (new_best, &new), batch);
        if let Some(attrs) = released {
            self.attrs.release(attrs);
        }
    }

    /// The FIB's view of selected paths.
    fn route_of(&self, selected: &[Path]) -> Option<BgpRoute> {
        let best = selected.first()?;
        if best.peer == PeerId::LOCAL {
            return None;
        }
        let ibgp = self
            .peer(best.peer)
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.asn == self.config.local_as);
        let mut nexthops: Vec<IpAddr> = selected
            .iter()
            .map(|p| self.attrs.get(p.attrs).next_hop_addr())
            .collect();
        nexthops.sort_unstable();
        nexthops.dedup();
        Some(BgpRoute {
            protocol: if ibgp { Protocol::Ibgp } else { Protocol::Ebgp },
            nexthops,
        })
    }

    /// Report a prefix's change from `old` to `new`: (best, every selected
    /// path — empty unless the RIB installs routes).
    fn report(
        &mut self,
        prefix: IpNet,
        old: (Option<Path>, &[Path]),
        new: (Option<Path>, &[Path]),
        batch: &mut Batch,
    ) {
        if self.config.install {
            let route = self.route_of(new.1);
            if self.route_of(old.1) != route {
                batch.fib.push(Output::Fib { prefix, route });
            }
        }
        if same_route(old.0.as_ref(), new.0.as_ref()) {
            return;
        }
        let best = new.0;
        for id in 1..self.peers.len() {
            let id = PeerId(id as u32);
            if self.peer(id).is_some_and(|p| p.established) {
                self.export(id, prefix, best, batch);
            }
        }
    }

    /// Bring the peer's Adj-RIB-Out in line with the Loc-RIB.
    fn export_all(&mut self, id: PeerId, batch: &mut Batch) {
        let best: Vec<(IpNet, Path)> = self
            .entries()
            .filter_map(|(p, e)| e.selected().first().map(|b| (p, *b)))
            .collect();
        let stale: Vec<IpNet> = self
            .peer(id)
            .map(|p| {
                p.adj_out
                    .keys()
                    .filter(|k| self.entry(**k).is_none())
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for prefix in stale {
            self.export(id, prefix, None, batch);
        }
        for (prefix, path) in best {
            self.export(id, prefix, Some(path), batch);
        }
    }

    /// Update what peer `id` has for `prefix` now that its best path is `best`.
    fn export(&mut self, id: PeerId, prefix: IpNet, best: Option<Path>, batch: &mut Batch) {
        let family = Family::of(&prefix);
        let negotiated = self
            .peer(id)
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.families.contains(&family));
        if !negotiated {
            return;
        }
        let new = best.and_then(|b| self.exported(id, prefix, b, batch));
        let Some(peer) = self.peer_mut(id) else {
            return;
        };
        let old = match new {
            Some(attrs) if peer.adj_out.get(&prefix) == Some(&attrs) => return,
            Some(attrs) => peer.adj_out.insert(prefix, attrs),
            None => match peer.adj_out.remove(&prefix) {
                Some(old) => Some(old),
                None => return,
            },
        };
        if let Some(attrs) = new {
            self.attrs.retain(attrs);
        }
        if let Some(old) = old {
            self.attrs.release(old);
        }
        batch.pending.insert((id, prefix), new);
    }

    /// The attribute set to send peer `id` for `best`, if it may be sent.
    fn exported(
        &mut self,
        id: PeerId,
        prefix: IpNet,
        best: Path,
        batch: &mut Batch,
    ) -> Option<AttrId> {
        if best.peer == id {
            return None;
        }
        let local_as = self.config.local_as;
        let peer = self.peers.get(id.0 as usize)?.as_ref()?;
        let session = peer.session.as_ref()?;
        let target = Target {
            ebgp: session.asn != local_as,
            asn: session.asn,
            local_v4: peer.config.local_v4,
            local_v6: peer.config.local_v6,
            next_hop_self: peer.config.next_hop_self,
        };
        let source = Source {
            local: best.peer == PeerId::LOCAL,
            ibgp: self
                .peer(best.peer)
                .and_then(|p| p.session.as_ref())
                .is_some_and(|s| s.asn == local_as),
        };
        let attrs = self.attrs.get(best.attrs).clone();
        if !policy::allowed(&target, &source, &attrs) {
            return None;
        }
        let (statement, action) = peer.config.export.evaluate(prefix, &attrs);
        let Action::Permit(set) = action else {
            return None;
        };
        let key = (id, best.attrs, source.local, statement);
        if let Some(&done) = batch.exported.get(&key) {
            return done;
        }
        let sent = policy::transform(
            &target,
            &source,
            &attrs,
            set,
            local_as,
            self.config.default_local_pref,
        );
        let sent = sent.map(|a| self.attrs.intern(a));
        batch.exported.insert(key, sent);
        sent
    }

    /// Turn a batch into outputs: FIB changes, then per peer withdrawals
    /// and announcements grouped by attribute set.
    fn finish(&mut self, batch: Batch) -> Vec<Output> {
        let mut out = batch.fib;
        let mut groups: BTreeMap<(PeerId, Family, Option<AttrId>), Vec<IpNet>> = BTreeMap::new();
        for ((peer, prefix), attrs) in batch.pending {
            groups
                .entry((peer, Family::of(&prefix), attrs))
                .or_default()
                .push(prefix);
        }
        for ((peer, family, attrs), prefixes) in groups {
            let update = match attrs {
                Some(a) => announcement(self.attrs.get(a), family, prefixes),
                None => withdrawal(family, prefixes),
            };
            out.push(Output::Send {
                peer,
                update: Box::new(update),
            });
        }
        for attrs in batch.exported.into_values().flatten() {
            self.attrs.release(attrs);
        }
        out
    }

    /// Every path of `prefix`, selected ones first.
    pub fn paths(&self, prefix: IpNet) -> Vec<PathInfo<'_>> {
        let Some(entry) = self.entry(prefix) else {
            return Vec::new();
        };
        self.infos(entry).collect()
    }

    fn infos<'a>(&'a self, entry: &'a Entry) -> impl Iterator<Item = PathInfo<'a>> + 'a {
        entry
            .paths
            .as_slice()
            .iter()
            .enumerate()
            .map(move |(i, p)| PathInfo {
                peer: p.peer,
                attrs: self.attrs.get(p.attrs),
                best: i == 0,
                selected: i < usize::from(entry.selected),
                stale: p.stale,
            })
    }

    /// The Loc-RIB: each prefix's best path, in prefix order (IPv4 first).
    pub fn loc_rib(&self) -> impl Iterator<Item = (IpNet, PathInfo<'_>)> {
        self.entries()
            .filter_map(|(p, e)| self.infos(e).next().map(|i| (p, i)))
    }

    /// The Adj-RIB-In of peer `id`: its paths, in prefix order.
    pub fn adj_rib_in(&self, id: PeerId) -> impl Iterator<Item = (IpNet, PathInfo<'_>)> {
        self.entries()
            .filter_map(move |(p, e)| self.infos(e).find(|i| i.peer == id).map(|i| (p, i)))
    }

    /// The Adj-RIB-Out of peer `id`: what it was sent, in prefix order.
    pub fn adj_rib_out(&self, id: PeerId) -> impl Iterator<Item = (IpNet, &RouteAttrs)> {
        self.peer(id)
            .into_iter()
            .flat_map(|p| p.adj_out.iter())
            .map(|(&prefix, &a)| (prefix, &**self.attrs.get(a)))
    }

    /// The FIB's view of `prefix`.
    pub fn route(&self, prefix: IpNet) -> Option<BgpRoute> {
        self.route_of(self.entry(prefix)?.selected())
    }

    /// Prefixes with a path from peer `id` (`bgp peers`' received count).
    pub fn received_count(&self, id: PeerId) -> usize {
        self.peer(id).map_or(0, |p| p.received)
    }

    /// Prefixes sent to peer `id` (`bgp peers`' advertised count).
    pub fn advertised_count(&self, id: PeerId) -> usize {
        self.peer(id).map_or(0, |p| p.adj_out.len())
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether there are no paths at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Distinct attribute sets in use (paths and Adj-RIB-Outs).
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }
}
