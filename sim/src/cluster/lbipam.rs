//! LB-IPAM on the simulated cluster: `CiliumLoadBalancerIPPool` objects and the
//! ingress addresses of `LoadBalancer` services, handed out by router-core's
//! [`LbIpam`] (lowest free, `lbipam.cilium.io/ips`, `lbipam.cilium.io/sharing-key`).
//!
//! The pools' `serviceSelector`s are evaluated here (router-core leaves label
//! matching to the runtime). A pool whose blocks overlap a pool earlier in name
//! order is conflicting and serves nothing, as Cilium marks it. Services are
//! (re)assigned in (namespace, name) order after every change, so an address
//! once held is kept. `kubectl get ippools` and `kubectl get svc` tables come
//! from this state.

use std::collections::BTreeMap;
use std::net::IpAddr;

use router_core::ipam::lb::{Block, LbIpam, Pending, Pool, Request, ServiceKey};

use super::workloads::ServiceInfo;
use crate::lab::kube::{LbPoolSpec, Meta};

/// Annotation asking for given addresses.
const IPS_ANNOTATION: &str = "lbipam.cilium.io/ips";
/// Annotation letting services share an address.
const SHARING_ANNOTATION: &str = "lbipam.cilium.io/sharing-key";

/// The pools applied and what each LoadBalancer service got.
#[derive(Debug, Default)]
pub struct LoadBalancers {
    pools: BTreeMap<String, LbPoolSpec>,
    ipam: LbIpam,
    assigned: BTreeMap<ServiceKey, Result<Vec<IpAddr>, Pending>>,
}

fn blocks(spec: &LbPoolSpec) -> Vec<Block> {
    let allow = spec.allow_first_last_ips.as_deref() == Some("Yes");
    spec.blocks
        .iter()
        .filter_map(|b| match (b.cidr, b.start, b.stop) {
            (Some(net), _, _) => Some(Block::cidr(net, allow)),
            (None, Some(start), Some(stop)) => Block::range(start, stop),
            _ => None,
        })
        .collect()
}

impl LoadBalancers {
    /// Add or replace a pool.
    pub fn apply_pool(&mut self, meta: &Meta, spec: &LbPoolSpec) {
        self.pools.insert(meta.name.clone(), spec.clone());
    }

    /// Remove a pool.
    pub fn delete_pool(&mut self, meta: &Meta) {
        self.pools.remove(&meta.name);
        self.ipam.remove_pool(&meta.name);
    }

    /// Whether `name`'s blocks overlap those of a pool earlier in name order.
    fn conflicting(&self, name: &str) -> bool {
        let Some(mine) = self.pools.get(name).map(blocks) else {
            return false;
        };
        self.pools
            .iter()
            .take_while(|(n, _)| n.as_str() < name)
            .flat_map(|(_, p)| blocks(p))
            .any(|b| {
                mine.iter()
                    .any(|m| m.contains(b.first) || m.contains(b.last) || b.contains(m.first))
            })
    }

    /// Bring pools and assignments in line with the pools and `services`.
    pub fn reconcile<'a>(&mut self, services: impl Iterator<Item = &'a ServiceInfo>) {
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in &names {
            if self.conflicting(name) {
                self.ipam.remove_pool(name);
            } else {
                let spec = &self.pools[name];
                let pool = Pool {
                    blocks: blocks(spec),
                    disabled: spec.disabled,
                };
                self.ipam.set_pool(name, pool);
            }
        }
        let mut assigned = BTreeMap::new();
        for svc in services {
            let key = (svc.namespace.clone(), svc.name.clone());
            if svc.kind != "LoadBalancer" {
                self.ipam.release(&key);
                continue;
            }
            let mut labels = svc.labels.clone();
            labels.insert("io.kubernetes.service.name".into(), svc.name.clone());
            labels.insert(
                "io.kubernetes.service.namespace".into(),
                svc.namespace.clone(),
            );
            let pools = self
                .pools
                .iter()
                .filter(|(n, p)| {
                    !self.conflicting(n)
                        && p.service_selector
                            .as_ref()
                            .is_none_or(|s| s.matches(&labels))
                })
                .map(|(n, _)| n.clone())
                .collect();
            let requested = svc
                .annotations
                .get(IPS_ANNOTATION)
                .map(|v| v.split(',').filter_map(|a| a.trim().parse().ok()).collect())
                .unwrap_or_default();
            let ports = svc
                .ports
                .iter()
                .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
                .collect();
            let request = Request {
                service: key.clone(),
                pools,
                requested,
                sharing_key: svc.annotations.get(SHARING_ANNOTATION).cloned(),
                ports,
            };
            assigned.insert(key, self.ipam.assign(&request));
        }
        for key in self.assigned.keys() {
            if !assigned.contains_key(key) {
                self.ipam.release(key);
            }
        }
        self.assigned = assigned;
    }

    /// The ingress addresses of a LoadBalancer service (empty while pending).
    pub fn addresses(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        match self
            .assigned
            .get(&(namespace.to_string(), name.to_string()))
        {
            Some(Ok(ips)) => ips.clone(),
            _ => Vec::new(),
        }
    }

    /// The pools' status conditions as Cilium writes them (seed 002 R30):
    /// POOL, TYPE, STATUS, REASON, MESSAGE.
    pub fn pool_conditions(&self) -> Vec<[String; 5]> {
        let mut rows = Vec::new();
        for name in self.pools.keys() {
            let status = self.ipam.status(name).filter(|_| !self.conflicting(name));
            let (total, available, used) =
                status.map_or((0, 0, 0), |s| (s.total, s.available, s.used));
            for (kind, value) in [
                ("IPsTotal", total),
                ("IPsAvailable", available),
                ("IPsUsed", used),
            ] {
                rows.push([
                    name.clone(),
                    format!("cilium.io/{kind}"),
                    "Unknown".into(),
                    "noreason".into(),
                    value.to_string(),
                ]);
            }
            let conflict = self.conflicting(name);
            rows.push([
                name.clone(),
                "cilium.io/PoolConflict".into(),
                if conflict { "True" } else { "False" }.into(),
                if conflict { "cidr_overlap" } else { "resolved" }.into(),
                String::new(),
            ]);
        }
        rows
    }

    /// The `cilium.io/IPAMRequestSatisfied` condition of a LoadBalancer service:
    /// STATUS, REASON, MESSAGE (seed 002 R30).
    pub fn request_condition(&self, namespace: &str, name: &str) -> [String; 3] {
        match self
            .assigned
            .get(&(namespace.to_string(), name.to_string()))
        {
            Some(Ok(_)) => ["True".into(), "satisfied".into(), String::new()],
            Some(Err(why)) => ["False".into(), "no_pool".into(), format!("{why:?}")],
            None => ["Unknown".into(), "pending".into(), String::new()],
        }
    }

    /// `kubectl get ippools`: NAME, DISABLED, CONFLICTING, IPS AVAILABLE.
    pub fn pool_rows(&self) -> Vec<[String; 4]> {
        self.pools
            .iter()
            .map(|(name, spec)| {
                let conflicting = self.conflicting(name);
                let available = if conflicting {
                    "0".to_string()
                } else {
                    self.ipam
                        .status(name)
                        .map_or("0".into(), |s| s.available.to_string())
                };
                [
                    name.clone(),
                    spec.disabled.to_string(),
                    if conflicting { "True" } else { "False" }.into(),
                    available,
                ]
            })
            .collect()
    }
}
