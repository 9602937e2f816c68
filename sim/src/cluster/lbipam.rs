//! LB-IPAM on the simulated cluster: the `CiliumLoadBalancerIPPool`s applied
//! and the cluster's services, handed to router-core's [`LoadBalancerIpam`]
//! (which decides every address, as the agent does), and the `kubectl get
//! ippools` / status tables printed from its decisions.

use std::collections::BTreeMap;
use std::net::IpAddr;

use router_core::cilium::kube::Service;
use router_core::cilium::lbipam::{Decisions, LoadBalancerIpam};
use router_core::cilium::lbpool::LoadBalancerIPPool;
use router_core::cilium::{Object, Objects};

/// LB-IPAM's state.
#[derive(Debug, Default)]
pub struct LoadBalancers {
    ipam: LoadBalancerIpam,
}

impl LoadBalancers {
    /// Bring assignments in line with `pools` and `services`.
    pub fn reconcile<'a>(
        &mut self,
        pools: &BTreeMap<String, LoadBalancerIPPool>,
        services: impl Iterator<Item = &'a Service>,
    ) {
        let mut objects = Objects {
            lb_pools: pools.clone(),
            ..Objects::default()
        };
        for svc in services {
            objects.insert(Object::Service(svc.clone()));
        }
        self.ipam.reconcile(&objects);
    }

    /// What the last reconcile decided.
    pub fn decisions(&self) -> &Decisions {
        self.ipam.decisions()
    }

    /// The ingress addresses of a LoadBalancer service (empty while pending).
    pub fn addresses(&self, namespace: &str, name: &str) -> Vec<IpAddr> {
        self.decisions().addresses(namespace, name).to_vec()
    }

    /// The pools' status conditions as Cilium writes them (seed 002 R30):
    /// POOL, TYPE, STATUS, REASON, MESSAGE.
    pub fn pool_conditions(&self) -> Vec<[String; 5]> {
        let mut rows = Vec::new();
        for (name, pool) in &self.decisions().pools {
            let c = pool.counts;
            for (kind, value) in [
                ("IPsTotal", c.total),
                ("IPsAvailable", c.available),
                ("IPsUsed", c.used),
            ] {
                rows.push([
                    name.clone(),
                    format!("cilium.io/{kind}"),
                    "Unknown".into(),
                    "noreason".into(),
                    value.to_string(),
                ]);
            }
            rows.push([
                name.clone(),
                "cilium.io/PoolConflict".into(),
                if pool.conflicting { "True" } else { "False" }.into(),
                if pool.conflicting {
                    "cidr_overlap"
                } else {
                    "resolved"
                }
                .into(),
                String::new(),
            ]);
        }
        rows
    }

    /// The `cilium.io/IPAMRequestSatisfied` condition of a LoadBalancer service:
    /// STATUS, REASON, MESSAGE (seed 002 R30).
    pub fn request_condition(&self, namespace: &str, name: &str) -> [String; 3] {
        let key = (namespace.to_string(), name.to_string());
        match self.decisions().services.get(&key) {
            Some(Ok(_)) => ["True".into(), "satisfied".into(), String::new()],
            Some(Err(why)) => ["False".into(), why.reason().into(), why.message()],
            None => ["Unknown".into(), "pending".into(), String::new()],
        }
    }

    /// `kubectl get ippools`: NAME, DISABLED, CONFLICTING, IPS AVAILABLE.
    pub fn pool_rows(&self) -> Vec<[String; 4]> {
        self.decisions()
            .pools
            .iter()
            .map(|(name, pool)| {
                [
                    name.clone(),
                    pool.disabled.to_string(),
                    if pool.conflicting { "True" } else { "False" }.into(),
                    pool.counts.available.to_string(),
                ]
            })
            .collect()
    }
}
