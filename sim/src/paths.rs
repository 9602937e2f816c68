//! Where a packet to an address would go: a walk of the hosts' FIBs.
//!
//! Owns following routes from host to host without sending anything: from a
//! host, the longest match for the destination; each ECMP member's gateway
//! (or the destination itself on a connected route, or the tunnel endpoint)
//! names the next host by the addresses hosts hold; a host that holds the
//! destination, or whose service datapath serves it (a cluster IP, a
//! LoadBalancer or NodePort address), ends the walk, as does a host that
//! does not forward, a route that points nowhere known, or a host met twice
//! (a loop). A gateway of the host's own (`cilium_host`) delivers to itself.
//! Link state is not looked at. Used by `explore`'s loop invariant and by
//! `kit::Sim::paths`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use router_core::fib::NexthopKind;

use crate::cluster::Cluster;
use crate::cluster::host::Role;

/// How a walk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    /// At a host holding the address.
    Reached,
    /// At a node whose service datapath serves the address.
    Served,
    /// Nowhere to go: no route, a blackhole route, a gateway no host holds,
    /// or a host that does not forward.
    Dropped,
    /// Back at a host already passed.
    Loop,
}

/// One walk: the hosts passed, in order (the first is where it started; a
/// loop's last is the one met again), and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path {
    /// Host names.
    pub hosts: Vec<String>,
    /// How it ended.
    pub end: End,
}

/// Every address a host holds → the hosts holding it.
fn owners(cluster: &Cluster) -> BTreeMap<IpAddr, BTreeSet<&str>> {
    let mut owners: BTreeMap<IpAddr, BTreeSet<&str>> = BTreeMap::new();
    for name in cluster.host_names() {
        if let Some(h) = cluster.host(name) {
            for port in h.host.ports() {
                for a in &port.addrs {
                    owners.entry(a.addr()).or_default().insert(name);
                }
            }
        }
    }
    owners
}

/// Whether a host of this role forwards packets.
pub fn forwards(role: &Role) -> bool {
    matches!(role, Role::K8sNode | Role::Router)
}

/// Every path from host `from` towards `dst`, one per ECMP branch, in order.
pub fn paths(cluster: &Cluster, from: &str, dst: IpAddr) -> Vec<Path> {
    let owners = owners(cluster);
    let mut out = Vec::new();
    walk(cluster, &owners, dst, &mut vec![from], &mut out);
    out
}

/// [`paths`] for many destinations at once (the address table built once).
pub fn paths_to(cluster: &Cluster, from: &str, dsts: &[IpAddr]) -> Vec<(IpAddr, Vec<Path>)> {
    let owners = owners(cluster);
    dsts.iter()
        .map(|&dst| {
            let mut out = Vec::new();
            walk(cluster, &owners, dst, &mut vec![from], &mut out);
            (dst, out)
        })
        .collect()
}

fn walk<'a>(
    cluster: &'a Cluster,
    owners: &BTreeMap<IpAddr, BTreeSet<&'a str>>,
    dst: IpAddr,
    path: &mut Vec<&'a str>,
    out: &mut Vec<Path>,
) {
    let done = |path: &[&str], end| Path {
        hosts: path.iter().map(|s| s.to_string()).collect(),
        end,
    };
    let Some(here) = path.last().copied() else {
        return;
    };
    let Some(h) = cluster.host(here) else {
        return out.push(done(path, End::Dropped));
    };
    if owners.get(&dst).is_some_and(|o| o.contains(here)) {
        return out.push(done(path, End::Reached));
    }
    if h.host
        .services()
        .table()
        .frontends()
        .any(|(f, _)| f.addr == dst)
    {
        return out.push(done(path, End::Served));
    }
    if !forwards(&h.role) || path.len() > 64 {
        return out.push(done(path, End::Dropped));
    }
    let fib = h.host.fib();
    let Some(group) = fib.lookup(dst).and_then(|g| fib.group(g)) else {
        return out.push(done(path, End::Dropped));
    };
    let mut next: BTreeSet<&'a str> = BTreeSet::new();
    for member in group.members() {
        let towards = match member.kind {
            NexthopKind::Gateway { addr, .. } => addr,
            NexthopKind::Connected { .. } => dst,
            NexthopKind::Tunnel { endpoint, .. } => endpoint,
            NexthopKind::Blackhole => continue,
        };
        next.extend(owners.get(&towards).into_iter().flatten().copied());
    }
    // A gateway of this host's own (`cilium_host`) delivers to itself.
    let own = next.remove(here);
    if own {
        out.push(done(path, End::Reached));
    }
    if next.is_empty() {
        if !own {
            out.push(done(path, End::Dropped));
        }
        return;
    }
    for n in next {
        path.push(n);
        if path[..path.len() - 1].contains(&n) {
            out.push(done(path, End::Loop));
        } else {
            walk(cluster, owners, dst, path, out);
        }
        path.pop();
    }
}
