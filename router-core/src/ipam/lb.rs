//! LB-IPAM: LoadBalancer addresses from pools, as Cilium's LB-IPAM hands them out.
//!
//! Owns the pools (`CiliumLoadBalancerIPPool` blocks, `allowFirstLastIPs`,
//! `disabled`), which service holds which address, the lowest-free allocation
//! order, requested addresses (`lbipam.cilium.io/ips`), sharing keys
//! (`lbipam.cilium.io/sharing-key`: services with the same key and
//! non-conflicting ports share an address) and the pool counts Cilium reports.
//! It does not evaluate label selectors: the caller says which pools select a
//! service, so the runtime's own Kubernetes types stay outside router-core.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use ipnet::IpNet;

/// An inclusive address range of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Block {
    /// First usable address.
    pub first: IpAddr,
    /// Last usable address.
    pub last: IpAddr,
}

fn bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_bits()),
        IpAddr::V6(a) => a.to_bits(),
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

fn from_bits(like: IpAddr, v: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(core::net::Ipv4Addr::from_bits(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(core::net::Ipv6Addr::from_bits(v)),
    }
}

impl Block {
    /// A `cidr:` block. Without `allow_first_last`, its first and last address
    /// are not handed out (unless the block is a single address or a pair).
    pub fn cidr(net: IpNet, allow_first_last: bool) -> Self {
        let (first, last) = (net.network(), net.broadcast());
        if allow_first_last || bits(last) - bits(first) < 2 {
            Block { first, last }
        } else {
            Block {
                first: from_bits(first, bits(first) + 1),
                last: from_bits(last, bits(last) - 1),
            }
        }
    }

    /// A `start:`/`stop:` block; `None` if the two differ in family or are reversed.
    pub fn range(start: IpAddr, stop: IpAddr) -> Option<Self> {
        (same_family(start, stop) && bits(start) <= bits(stop)).then_some(Block {
            first: start,
            last: stop,
        })
    }

    /// Whether `addr` is in the block.
    pub fn contains(&self, addr: IpAddr) -> bool {
        same_family(addr, self.first) && (bits(self.first)..=bits(self.last)).contains(&bits(addr))
    }

    /// Number of addresses.
    pub fn size(&self) -> u128 {
        (bits(self.last) - bits(self.first)).saturating_add(1)
    }
}

/// A pool of LoadBalancer addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Blocks, searched in order.
    pub blocks: Vec<Block>,
    /// A disabled pool keeps its allocations but hands out no new address.
    pub disabled: bool,
}

/// A service, as LB-IPAM identifies it: `(namespace, name)`.
pub type ServiceKey = (String, String);

/// What a LoadBalancer service asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The service.
    pub service: ServiceKey,
    /// Names of the pools whose `serviceSelector` selects it (the caller evaluates selectors).
    pub pools: Vec<String>,
    /// Addresses asked for with `lbipam.cilium.io/ips`.
    pub requested: Vec<IpAddr>,
    /// `lbipam.cilium.io/sharing-key`.
    pub sharing_key: Option<String>,
    /// The service's `(protocol, port)` pairs (two services sharing an address may not overlap).
    pub ports: Vec<(String, u16)>,
}

/// Why a service has no address (it stays `<pending>`): the
/// `cilium.io/IPAMRequestSatisfied` condition Cilium's operator sets to
/// False, with its reason ([`Pending::reason`]) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// No enabled pool selects the service (`no_pool`).
    NoPool,
    /// Every address of the selecting pools is taken (`out_of_ips`).
    Exhausted,
    /// A requested address is in no enabled pool (`no_pool`).
    RequestedNotInPool(IpAddr),
    /// A requested address is in a pool that does not select the service
    /// (`pool_selector_mismatch`).
    RequestedPoolMismatch(IpAddr),
    /// A requested address is held by a service without a sharing key, or
    /// the request has none (`already_allocated`).
    RequestedTaken(IpAddr),
    /// A requested address is held under a sharing key by a service this one
    /// cannot share with, and why (`already_allocated_incompatible_service`).
    RequestedIncompatible(IpAddr, String),
}

impl Pending {
    /// The condition's reason, as Cilium's operator writes it.
    pub fn reason(&self) -> &'static str {
        match self {
            Pending::NoPool | Pending::RequestedNotInPool(_) => "no_pool",
            Pending::Exhausted => "out_of_ips",
            Pending::RequestedPoolMismatch(_) => "pool_selector_mismatch",
            Pending::RequestedTaken(_) => "already_allocated",
            Pending::RequestedIncompatible(..) => "already_allocated_incompatible_service",
        }
    }

    /// The condition's message, as Cilium's operator writes it.
    pub fn message(&self) -> String {
        match self {
            Pending::NoPool => {
                "There are no enabled CiliumLoadBalancerIPPools that match this service".into()
            }
            Pending::Exhausted => "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs".into(),
            Pending::RequestedNotInPool(a) => alloc::format!("No pool exists with a CIDR containing '{a}'"),
            Pending::RequestedPoolMismatch(a) => {
                alloc::format!("The pool with the CIDR containing '{a}', doesn't select this service")
            }
            Pending::RequestedTaken(a) => {
                alloc::format!("The IP '{a}' is already allocated to another service")
            }
            Pending::RequestedIncompatible(a, why) => alloc::format!(
                "The IP '{a}' is already allocated to an incompatible service. Reason: {why}"
            ),
        }
    }
}

/// The counts Cilium reports on a pool (`cilium.io/IPsTotal`, `IPsAvailable`, `IPsUsed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStatus {
    /// Addresses in the pool.
    pub total: u128,
    /// Addresses held by at least one service.
    pub used: u128,
    /// `total - used`.
    pub available: u128,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Holder {
    service: ServiceKey,
    sharing_key: Option<String>,
    ports: Vec<(String, u16)>,
}

/// The LB-IPAM state of a cluster.
#[derive(Clone, Debug, Default)]
pub struct LbIpam {
    pools: BTreeMap<String, Pool>,
    holders: BTreeMap<IpAddr, Vec<Holder>>,
    assigned: BTreeMap<ServiceKey, Vec<IpAddr>>,
}

impl LbIpam {
    /// Add or replace a pool. Services whose addresses left the pool lose them
    /// (returned, so the caller can re-request).
    pub fn set_pool(&mut self, name: &str, pool: Pool) -> Vec<ServiceKey> {
        self.pools.insert(name.into(), pool);
        self.orphans()
    }

    /// Remove a pool; its services lose their addresses (returned).
    pub fn remove_pool(&mut self, name: &str) -> Vec<ServiceKey> {
        self.pools.remove(name);
        self.orphans()
    }

    /// Release addresses no pool contains any more; the services that held them.
    fn orphans(&mut self) -> Vec<ServiceKey> {
        let gone: Vec<IpAddr> = self
            .holders
            .keys()
            .copied()
            .filter(|&a| self.pool_of(a).is_none())
            .collect();
        let mut services = BTreeSet::new();
        for addr in gone {
            for h in self.holders.remove(&addr).unwrap_or_default() {
                if let Some(ips) = self.assigned.get_mut(&h.service) {
                    ips.retain(|&a| a != addr);
                }
                services.insert(h.service);
            }
        }
        services.into_iter().collect()
    }

    fn pool_of(&self, addr: IpAddr) -> Option<&str> {
        self.pools
            .iter()
            .find(|(_, p)| p.blocks.iter().any(|b| b.contains(addr)))
            .map(|(n, _)| n.as_str())
    }

    /// The addresses a service holds.
    pub fn addresses(&self, service: &ServiceKey) -> &[IpAddr] {
        self.assigned.get(service).map_or(&[], Vec::as_slice)
    }

    /// Give the service its address(es), keeping what it already validly holds.
    pub fn assign(&mut self, req: &Request) -> Result<Vec<IpAddr>, Pending> {
        let eligible: Vec<&str> = req
            .pools
            .iter()
            .filter(|n| self.pools.get(*n).is_some_and(|p| !p.disabled))
            .map(String::as_str)
            .collect();
        let current = self.addresses(&req.service).to_vec();
        let keep = !current.is_empty()
            && (req.requested.is_empty() || sorted(&current) == sorted(&req.requested))
            && current.iter().all(|&a| {
                self.pool_of(a)
                    .is_some_and(|p| req.pools.iter().any(|n| n == p))
            });
        if keep {
            // Annotations may have changed: the holder takes the new key and ports.
            for a in &current {
                for h in self.holders.get_mut(a).into_iter().flatten() {
                    if h.service == req.service {
                        h.sharing_key = req.sharing_key.clone();
                        h.ports = req.ports.clone();
                    }
                }
            }
            return Ok(current);
        }
        self.release(&req.service);
        if eligible.is_empty() {
            return Err(Pending::NoPool);
        }
        let chosen: Vec<IpAddr> = if req.requested.is_empty() {
            let shared = self.shareable(req);
            vec_of(
                shared
                    .or_else(|| self.lowest_free(&eligible))
                    .ok_or(Pending::Exhausted)?,
            )
        } else {
            for &a in &req.requested {
                match self.pool_of(a) {
                    Some(p) if eligible.contains(&p) => {}
                    Some(p) if !self.pools[p].disabled => {
                        return Err(Pending::RequestedPoolMismatch(a));
                    }
                    _ => return Err(Pending::RequestedNotInPool(a)),
                }
                if let Some(conflict) = self.conflict(a, req) {
                    return Err(conflict);
                }
            }
            req.requested.clone()
        };
        for &a in &chosen {
            self.holders.entry(a).or_default().push(Holder {
                service: req.service.clone(),
                sharing_key: req.sharing_key.clone(),
                ports: req.ports.clone(),
            });
        }
        self.assigned.insert(req.service.clone(), chosen.clone());
        Ok(chosen)
    }

    /// Free whatever the service holds.
    pub fn release(&mut self, service: &ServiceKey) {
        for addr in self.assigned.remove(service).unwrap_or_default() {
            if let Some(hs) = self.holders.get_mut(&addr) {
                hs.retain(|h| &h.service != service);
                if hs.is_empty() {
                    self.holders.remove(&addr);
                }
            }
        }
    }

    /// Why `req`'s service may not hold `addr`, if it may not: it may when
    /// the address is free, or shared under the same key without a port in
    /// common.
    fn conflict(&self, addr: IpAddr, req: &Request) -> Option<Pending> {
        let holders = self.holders.get(&addr)?;
        for h in holders.iter().filter(|h| h.service != req.service) {
            let (Some(theirs), Some(ours)) = (&h.sharing_key, &req.sharing_key) else {
                return Some(Pending::RequestedTaken(addr));
            };
            if theirs != ours {
                let why = alloc::format!(
                    "{}/{} has sharing key '{theirs}', this service '{ours}'",
                    h.service.0,
                    h.service.1
                );
                return Some(Pending::RequestedIncompatible(addr, why));
            }
            if let Some((protocol, port)) = h.ports.iter().find(|p| req.ports.contains(p)) {
                let why = alloc::format!(
                    "{}/{} uses port {port}/{protocol} too",
                    h.service.0,
                    h.service.1
                );
                return Some(Pending::RequestedIncompatible(addr, why));
            }
        }
        None
    }

    /// An address already held under the request's sharing key that it may join.
    fn shareable(&self, req: &Request) -> Option<IpAddr> {
        req.sharing_key.as_ref()?;
        self.holders
            .iter()
            .filter(|(_, hs)| hs.iter().any(|h| h.sharing_key == req.sharing_key))
            .map(|(&a, _)| a)
            .find(|&a| {
                self.pool_of(a)
                    .is_some_and(|p| req.pools.iter().any(|n| n == p))
                    && self.conflict(a, req).is_none()
            })
    }

    /// The lowest free address of the eligible pools, pools in name order.
    fn lowest_free(&self, eligible: &[&str]) -> Option<IpAddr> {
        eligible
            .iter()
            .flat_map(|n| &self.pools[*n].blocks)
            .find_map(|b| {
                let mut next = bits(b.first);
                for (&held, _) in self.holders.range(b.first..=b.last) {
                    if bits(held) != next {
                        break;
                    }
                    next += 1;
                }
                (next <= bits(b.last)).then(|| from_bits(b.first, next))
            })
    }

    /// Counts for a pool, or `None` if there is no such pool.
    pub fn status(&self, name: &str) -> Option<PoolStatus> {
        let pool = self.pools.get(name)?;
        let total = pool
            .blocks
            .iter()
            .map(Block::size)
            .fold(0u128, u128::saturating_add);
        let used = pool
            .blocks
            .iter()
            .map(|b| self.holders.range(b.first..=b.last).count() as u128)
            .sum();
        Some(PoolStatus {
            total,
            used,
            available: total - used,
        })
    }
}

fn sorted(v: &[IpAddr]) -> Vec<IpAddr> {
    let mut v = v.to_vec();
    v.sort();
    v
}

fn vec_of(a: IpAddr) -> Vec<IpAddr> {
    alloc::vec![a]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn svc(name: &str) -> ServiceKey {
        ("default".into(), name.into())
    }

    fn req(name: &str) -> Request {
        Request {
            service: svc(name),
            pools: vec!["cilium-lb-ippool".into()],
            requested: Vec::new(),
            sharing_key: None,
            ports: vec![("TCP".into(), 80)],
        }
    }

    /// Seed 002 R28–R32, step by step.
    #[test]
    fn seed_002_lb_ipam_sequence() {
        let mut lb = LbIpam::default();
        assert_eq!(lb.assign(&req("webpod")), Err(Pending::NoPool));
        let block = Block::range(ip("192.168.10.211"), ip("192.168.10.215")).unwrap();
        lb.set_pool(
            "cilium-lb-ippool",
            Pool {
                blocks: vec![block],
                disabled: false,
            },
        );
        let st = lb.status("cilium-lb-ippool").unwrap();
        assert_eq!((st.total, st.used, st.available), (5, 0, 5));
        assert_eq!(lb.assign(&req("webpod")), Ok(vec![ip("192.168.10.211")]));
        assert_eq!(lb.status("cilium-lb-ippool").unwrap().available, 4);
        assert_eq!(
            lb.assign(&req("netshoot-web")),
            Ok(vec![ip("192.168.10.212")])
        );
        let mut asks = req("netshoot-web");
        asks.requested = vec![ip("192.168.10.215")];
        assert_eq!(lb.assign(&asks), Ok(vec![ip("192.168.10.215")]));
        assert_eq!(
            lb.assign(&req("netshoot-web2")),
            Ok(vec![ip("192.168.10.212")])
        );
        // Sharing .215 under key 1234 with non-conflicting ports.
        asks.sharing_key = Some("1234".into());
        assert_eq!(lb.assign(&asks), Ok(vec![ip("192.168.10.215")]));
        let mut second = req("netshoot-web2");
        second.requested = vec![ip("192.168.10.215")];
        second.sharing_key = Some("1234".into());
        second.ports = vec![("TCP".into(), 8080)];
        assert_eq!(lb.assign(&second), Ok(vec![ip("192.168.10.215")]));
        assert_eq!(lb.status("cilium-lb-ippool").unwrap().used, 2);
        // The same port, another key, or no key, cannot share; each says
        // why with Cilium's reason.
        let vip = ip("192.168.10.215");
        let mut clash = req("other");
        clash.requested = vec![vip];
        clash.sharing_key = Some("1234".into());
        let why = lb.assign(&clash).unwrap_err();
        assert_eq!(why.reason(), "already_allocated_incompatible_service");
        assert_eq!(
            why.message(),
            "The IP '192.168.10.215' is already allocated to an incompatible service. \
             Reason: default/netshoot-web uses port 80/TCP too"
        );
        clash.sharing_key = Some("9".into());
        let why = lb.assign(&clash).unwrap_err();
        assert!(
            why.message()
                .ends_with("has sharing key '1234', this service '9'"),
            "{why:?}"
        );
        clash.sharing_key = None;
        assert_eq!(lb.assign(&clash), Err(Pending::RequestedTaken(vip)));
        assert_eq!(
            Pending::RequestedTaken(vip).message(),
            "The IP '192.168.10.215' is already allocated to another service"
        );
    }

    #[test]
    fn requested_addresses_outside_the_pools_say_which_way() {
        let mut lb = LbIpam::default();
        let block = |a, b| Block::range(ip(a), ip(b)).unwrap();
        let pool = |b, disabled| Pool {
            blocks: vec![b],
            disabled,
        };
        lb.set_pool(
            "cilium-lb-ippool",
            pool(block("10.0.0.1", "10.0.0.9"), false),
        );
        lb.set_pool("other", pool(block("10.0.1.1", "10.0.1.9"), false));
        lb.set_pool("off", pool(block("10.0.2.1", "10.0.2.9"), true));
        let mut r = req("web");
        r.requested = vec![ip("10.0.9.9")];
        let why = lb.assign(&r).unwrap_err();
        assert_eq!(
            (why.reason(), why.message().as_str()),
            (
                "no_pool",
                "No pool exists with a CIDR containing '10.0.9.9'"
            )
        );
        r.requested = vec![ip("10.0.2.5")];
        assert_eq!(
            lb.assign(&r),
            Err(Pending::RequestedNotInPool(ip("10.0.2.5")))
        );
        r.requested = vec![ip("10.0.1.5")];
        let why = lb.assign(&r).unwrap_err();
        assert_eq!(why.reason(), "pool_selector_mismatch");
        assert_eq!(
            why.message(),
            "The pool with the CIDR containing '10.0.1.5', doesn't select this service"
        );
        assert_eq!(Pending::Exhausted.reason(), "out_of_ips");
    }

    #[test]
    fn first_and_last_of_a_cidr_are_skipped_unless_allowed() {
        let mut lb = LbIpam::default();
        let net: IpNet = "172.16.1.0/24".parse().unwrap();
        lb.set_pool(
            "p",
            Pool {
                blocks: vec![Block::cidr(net, false)],
                disabled: false,
            },
        );
        let mut r = req("webpod");
        r.pools = vec!["p".into()];
        assert_eq!(lb.assign(&r), Ok(vec![ip("172.16.1.1")]));
        assert_eq!(lb.status("p").unwrap().total, 254);
        assert_eq!(Block::cidr(net, true).first, ip("172.16.1.0"));
        assert_eq!(Block::cidr("10.0.0.7/32".parse().unwrap(), false).size(), 1);
    }

    #[test]
    fn exhaustion_disabled_pools_and_pool_removal() {
        let mut lb = LbIpam::default();
        let one = Block::range(ip("10.9.0.1"), ip("10.9.0.1")).unwrap();
        lb.set_pool(
            "p",
            Pool {
                blocks: vec![one],
                disabled: false,
            },
        );
        let mut a = req("a");
        a.pools = vec!["p".into()];
        let mut b = req("b");
        b.pools = vec!["p".into()];
        assert_eq!(lb.assign(&a), Ok(vec![ip("10.9.0.1")]));
        assert_eq!(lb.assign(&b), Err(Pending::Exhausted));
        lb.release(&a.service);
        assert_eq!(lb.assign(&b), Ok(vec![ip("10.9.0.1")]));
        assert_eq!(lb.remove_pool("p"), vec![b.service.clone()]);
        assert!(lb.addresses(&b.service).is_empty());
        lb.set_pool(
            "p",
            Pool {
                blocks: vec![one],
                disabled: true,
            },
        );
        assert_eq!(lb.assign(&b), Err(Pending::NoPool));
        assert_eq!("p".to_string(), "p");
    }
}
