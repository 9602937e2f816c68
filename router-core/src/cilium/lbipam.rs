//! LB-IPAM as Cilium's operator runs it, decided once for both runtimes:
//! from the `CiliumLoadBalancerIPPool`s and `Service`s of [`Objects`], which
//! address(es) each `LoadBalancer` service gets (or why it stays pending)
//! and what each pool reports.
//!
//! It owns the decisions above the allocator ([`crate::ipam::lb::LbIpam`],
//! which owns addresses, sharing and counts):
//! - which pools select a service (`serviceSelector` over the service's
//!   labels plus `io.kubernetes.service.name`/`namespace`, as Cilium adds
//!   them; no selector selects every service);
//! - conflicting pools: a pool whose blocks overlap those of a pool earlier
//!   in name order serves nothing and reports `cidr_overlap`;
//! - (re)assignment in (namespace, name) order on every reconcile, keeping
//!   what a service already validly holds, so an address once held is kept;
//! - the `lbipam.cilium.io/ips` and `lbipam.cilium.io/sharing-key`
//!   annotations;
//! - which services are LB-IPAM's at all: type `LoadBalancer`, without a
//!   `loadBalancerClass` or with one of Cilium's.
//!
//! [`LoadBalancerIpam`] is the state machine (objects in, [`Decisions`]
//! out); [`with_ingress`] writes the decisions into the services'
//! `status.loadBalancer.ingress` where Cilium's operator would write them.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use super::kube::{BGP_LOAD_BALANCER_CLASS, LoadBalancerIngress, Service};
use super::objects::Objects;
use crate::ipam::lb::{Block, LbIpam, Pending, Pool, PoolStatus, Request, ServiceKey};

/// Annotation asking for given addresses (comma-separated).
pub const IPS_ANNOTATION: &str = "lbipam.cilium.io/ips";
/// Annotation letting services with the same key share an address.
pub const SHARING_KEY_ANNOTATION: &str = "lbipam.cilium.io/sharing-key";
/// The load-balancer class of Cilium's L2 announcements (LB-IPAM serves it
/// as it serves [`BGP_LOAD_BALANCER_CLASS`]).
pub const L2_LOAD_BALANCER_CLASS: &str = "io.cilium/l2-announcer";

/// What LB-IPAM decided for one service: its addresses, or why it is pending.
pub type Assignment = Result<Vec<IpAddr>, Pending>;

/// What a pool reports (`kubectl get ippools` and its status conditions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolState {
    /// `spec.disabled`.
    pub disabled: bool,
    /// Overlaps a pool earlier in name order (`cilium.io/PoolConflict`).
    pub conflicting: bool,
    /// `IPsTotal`, `IPsUsed`, `IPsAvailable`; all zero while conflicting.
    pub counts: PoolStatus,
}

/// Every decision of one reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Each LoadBalancer service LB-IPAM serves, by (namespace, name).
    pub services: BTreeMap<ServiceKey, Assignment>,
    /// Each pool, by name.
    pub pools: BTreeMap<String, PoolState>,
}

impl Decisions {
    /// A service's addresses (empty while pending or not LB-IPAM's).
    pub fn addresses(&self, namespace: &str, name: &str) -> &[IpAddr] {
        let key = (String::from(namespace), String::from(name));
        match self.services.get(&key) {
            Some(Ok(ips)) => ips,
            _ => &[],
        }
    }
}

/// LB-IPAM's state across reconciles: the allocator and the pools it holds.
#[derive(Clone, Debug, Default)]
pub struct LoadBalancerIpam {
    ipam: LbIpam,
    pools: BTreeSet<String>,
    decisions: Decisions,
}

/// Whether LB-IPAM assigns the service's addresses: a `LoadBalancer`
/// without a class or with one of Cilium's.
pub fn serves(service: &Service) -> bool {
    let class_ok = service
        .spec
        .load_balancer_class
        .as_deref()
        .is_none_or(|c| c == BGP_LOAD_BALANCER_CLASS || c == L2_LOAD_BALANCER_CLASS);
    service.spec.kind.as_deref() == Some("LoadBalancer") && class_ok
}

/// Whether any block of `a` overlaps any block of `b`.
fn overlap(a: &[Block], b: &[Block]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.contains(y.first) || x.contains(y.last) || y.contains(x.first))
    })
}

/// The pools overlapping a pool earlier in name order.
fn conflicting(blocks: &BTreeMap<&str, Vec<Block>>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, (name, mine)) in blocks.iter().enumerate() {
        if blocks
            .values()
            .take(i)
            .any(|earlier| overlap(mine, earlier))
        {
            out.insert(String::from(*name));
        }
    }
    out
}

/// The request a service makes.
fn request(key: &ServiceKey, service: &Service, pools: Vec<String>) -> Request {
    let annotations = &service.metadata.annotations;
    let requested = annotations
        .get(IPS_ANNOTATION)
        .map(|v| v.split(',').filter_map(|a| a.trim().parse().ok()).collect())
        .unwrap_or_default();
    let ports = service
        .spec
        .ports
        .iter()
        .map(|p| (String::from(p.protocol()), p.port))
        .collect();
    Request {
        service: key.clone(),
        pools,
        requested,
        sharing_key: annotations.get(SHARING_KEY_ANNOTATION).cloned(),
        ports,
    }
}

impl LoadBalancerIpam {
    /// Bring pools and assignments in line with `objects`' pools and
    /// services: pools gone are removed, conflicting pools serve nothing,
    /// then every service is (re)assigned in (namespace, name) order.
    pub fn reconcile(&mut self, objects: &Objects) -> &Decisions {
        let blocks: BTreeMap<&str, Vec<Block>> = objects
            .lb_pools
            .iter()
            .map(|(name, pool)| (name.as_str(), pool.blocks()))
            .collect();
        let conflicting = conflicting(&blocks);
        for gone in self
            .pools
            .iter()
            .filter(|n| !blocks.contains_key(n.as_str()))
        {
            self.ipam.remove_pool(gone);
        }
        self.pools = blocks.keys().map(|&n| String::from(n)).collect();
        for (name, pool_blocks) in &blocks {
            if conflicting.contains(*name) {
                self.ipam.remove_pool(name);
            } else {
                let pool = Pool {
                    blocks: pool_blocks.clone(),
                    disabled: objects.lb_pools[*name].spec.disabled,
                };
                self.ipam.set_pool(name, pool);
            }
        }
        let mut services = BTreeMap::new();
        for (key, service) in &objects.services {
            if !serves(service) {
                self.ipam.release(key);
                continue;
            }
            let labels = service.selector_labels();
            let pools = objects
                .lb_pools
                .iter()
                .filter(|(name, pool)| {
                    !conflicting.contains(*name)
                        && pool
                            .spec
                            .service_selector
                            .as_ref()
                            .is_none_or(|s| s.matches(&labels))
                })
                .map(|(name, _)| name.clone())
                .collect();
            let assignment = self.ipam.assign(&request(key, service, pools));
            services.insert(key.clone(), assignment);
        }
        for key in self.decisions.services.keys() {
            if !services.contains_key(key) {
                self.ipam.release(key);
            }
        }
        let pools = objects
            .lb_pools
            .iter()
            .map(|(name, pool)| {
                let conflicting = conflicting.contains(name);
                let counts = self.ipam.status(name).filter(|_| !conflicting);
                let state = PoolState {
                    disabled: pool.spec.disabled,
                    conflicting,
                    counts: counts.unwrap_or(PoolStatus {
                        total: 0,
                        used: 0,
                        available: 0,
                    }),
                };
                (name.clone(), state)
            })
            .collect();
        self.decisions = Decisions { services, pools };
        &self.decisions
    }

    /// The decisions of the last reconcile.
    pub fn decisions(&self) -> &Decisions {
        &self.decisions
    }
}

/// A copy of `objects` whose services LB-IPAM serves carry its addresses in
/// `status.loadBalancer.ingress` (none while pending), as Cilium's operator
/// writes them; other services are left as they are.
pub fn with_ingress(objects: &Objects, decisions: &Decisions) -> Objects {
    let mut out = objects.clone();
    for (key, service) in &mut out.services {
        if !serves(service) {
            continue;
        }
        let ips = match decisions.services.get(key) {
            Some(Ok(ips)) => ips.as_slice(),
            _ => &[],
        };
        service.status.load_balancer.ingress = ips
            .iter()
            .map(|&ip| LoadBalancerIngress { ip: Some(ip) })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::objects::tests::parse;
    use alloc::vec;

    const POOLS: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: { name: a-pool }
spec:
  blocks: [{ start: 192.168.10.211, stop: 192.168.10.215 }]
---
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: { name: b-overlapping }
spec:
  blocks: [{ cidr: 192.168.10.208/29 }]
---
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: { name: c-web-only }
spec:
  blocks: [{ cidr: 172.16.1.0/30 }]
  serviceSelector: { matchLabels: { app: web } }
"#;

    fn service(name: &str, extra: &str) -> String {
        alloc::format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n{extra}spec:\n  type: LoadBalancer\n  ports: [{{ port: 80 }}]\n"
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pools_select_conflict_and_report() {
        let yaml = [
            POOLS,
            &service("netshoot", ""),
            &service("web", "  labels: { app: web }\n"),
        ]
        .concat();
        let objects = parse(&yaml).unwrap();
        let mut lb = LoadBalancerIpam::default();
        let d = lb.reconcile(&objects).clone();
        assert_eq!(d.addresses("default", "netshoot"), [ip("192.168.10.211")]);
        // Pools in name order: a-pool before c-web-only, lowest free first.
        assert_eq!(d.addresses("default", "web"), [ip("192.168.10.212")]);
        let b = d.pools["b-overlapping"];
        assert!(b.conflicting);
        assert_eq!(b.counts.total, 0);
        let a = d.pools["a-pool"];
        assert_eq!(
            (a.counts.total, a.counts.used, a.counts.available),
            (5, 2, 3)
        );
        assert_eq!(d.pools["c-web-only"].counts.total, 2);
    }

    #[test]
    fn assignments_stay_put_and_pending_has_a_reason() {
        let one = POOLS.replace("192.168.10.215", "192.168.10.211");
        let mut objects = parse(&[one.as_str(), &service("zeta", "")].concat()).unwrap();
        let mut lb = LoadBalancerIpam::default();
        assert_eq!(
            lb.reconcile(&objects).addresses("default", "zeta"),
            [ip("192.168.10.211")]
        );
        // A service earlier in name order does not take zeta's address.
        let alpha = parse(&service("alpha", "")).unwrap();
        objects.services.extend(alpha.services);
        let d = lb.reconcile(&objects);
        assert_eq!(d.addresses("default", "zeta"), [ip("192.168.10.211")]);
        assert_eq!(
            d.services[&("default".into(), "alpha".into())],
            Err(Pending::Exhausted)
        );
        // Removing the pool leaves both pending with no pool.
        objects.lb_pools.clear();
        let d = lb.reconcile(&objects);
        assert_eq!(
            d.services[&("default".into(), "zeta".into())],
            Err(Pending::NoPool)
        );
    }

    #[test]
    fn annotations_request_and_share_addresses() {
        let ask = "  annotations:\n    lbipam.cilium.io/ips: 192.168.10.215\n    lbipam.cilium.io/sharing-key: k\n";
        let second = service("second", ask).replace("port: 80", "port: 8080");
        let yaml = [POOLS, &service("first", ask), &second].concat();
        let objects = parse(&yaml).unwrap();
        let d = LoadBalancerIpam::default().reconcile(&objects).clone();
        assert_eq!(d.addresses("default", "first"), [ip("192.168.10.215")]);
        assert_eq!(d.addresses("default", "second"), [ip("192.168.10.215")]);
        assert_eq!(d.pools["a-pool"].counts.used, 1);
    }

    #[test]
    fn ingress_is_written_only_for_services_lb_ipam_serves() {
        let other = "  labels: { app: web }\n";
        let yaml = [
            POOLS,
            &service("mine", ""),
            &service("theirs", other).replace(
                "type: LoadBalancer",
                "type: LoadBalancer\n  loadBalancerClass: metallb\n",
            ),
        ]
        .concat();
        let mut objects = parse(&yaml).unwrap();
        let theirs = ("default".into(), "theirs".into());
        let kept = vec![LoadBalancerIngress {
            ip: Some(ip("10.0.0.1")),
        }];
        let svc = objects.services.get_mut(&theirs).unwrap();
        svc.status.load_balancer.ingress = kept.clone();
        let decisions = LoadBalancerIpam::default().reconcile(&objects).clone();
        let out = with_ingress(&objects, &decisions);
        let mine = &out.services[&("default".into(), "mine".into())];
        assert_eq!(mine.load_balancer_ips(), [ip("192.168.10.211")]);
        assert_eq!(out.services[&theirs].status.load_balancer.ingress, kept);
        assert!(!decisions.services.contains_key(&theirs));
    }
}
