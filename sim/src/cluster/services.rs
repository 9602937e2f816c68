//! Services on the nodes, as Cilium's kube-proxy replacement programs
//! them: every node serves router-core's service table for it
//! (`router_core::service::frontend`: cluster IPs, NodePorts on the node's
//! address, LoadBalancer ingress addresses and external IPs, with the
//! backends of the services' EndpointSlices and their traffic policies),
//! through router-core's service datapath in its netstack. NodePorts are
//! allocated once for the cluster (`router_core::service::nodeport`,
//! deterministically from the lab's seed). Also the `kubectl get svc` rows.

use std::collections::BTreeSet;
use std::net::IpAddr;

use router_core::cilium::Objects;
use router_core::cilium::table::KubeProxyReplacement;
use router_core::service::datapath::{self, Counters};
use router_core::service::frontend;
use router_core::service::masquerade::Masquerade;
use router_core::service::nodeport;

use super::Cluster;
use crate::lab::values::RoutingMode;

impl Cluster {
    /// Allocate LB addresses, program every node's frontends and bring the
    /// nodes' control planes in line.
    pub(super) fn settle(&mut self) -> Result<(), String> {
        self.lb
            .reconcile(&self.cilium.lb_pools, self.workloads.services());
        let objects = self.node_objects();
        self.program_services(&objects);
        self.reconcile_bgp(&objects);
        self.reconcile_l2(&objects);
        Ok(())
    }

    /// Each node's service table, and the cluster's NodePorts.
    fn program_services(&mut self, objects: &Objects) {
        let values = self.lab.values.services.clone();
        let (node_ports, problems) =
            nodeport::allocate(objects, values.node_ports, self.node_port_seed);
        let mut seen: BTreeSet<String> = problems.iter().map(ToString::to_string).collect();

        let nodes: Vec<String> = self
            .workloads
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        let tunnel = self.lab.values.routing_mode == RoutingMode::Tunnel;
        let masquerade = self.lab.values.masquerade();
        for node in nodes {
            // Outside traffic to a remote backend is SNATed to the node's
            // InternalIP in native routing, to its cilium_host address in
            // tunnel mode (as seed 002 §2.7 observes), so replies come back
            // through the tunnel.
            let address = self.address_of(&node);
            let snat = if tunnel {
                self.workloads.node(&node).map(|n| n.router_ip)
            } else {
                address
            };
            let (table, problems) =
                frontend::node_table(objects, &node, &node_ports, &values.maglev);
            seen.extend(problems.iter().map(ToString::to_string));
            let id = self.hosts[&node];
            let services = self.engine.node_mut(id).host.services_mut();
            services.configure(datapath::Config {
                algorithm: values.algorithm,
                mode: values.mode,
                maglev: values.maglev,
                snat_v4: snat,
                ..datapath::Config::default()
            });
            services.set_table(table);
            // Pod traffic leaving through the node's InternalIP device is
            // masqueraded to that address (Cilium's IPV4_MASQUERADE).
            let masquerade = (masquerade.as_ref())
                .and_then(|settings| Masquerade::for_objects(objects, &node, settings));
            services.set_masquerade(masquerade);
        }
        self.node_ports = node_ports;
        self.service_problems = seen.into_iter().collect();
    }

    /// What `cilium status --verbose` says of `node`'s kube-proxy
    /// replacement: the lab's settings and the node's native devices (its
    /// pods' `lxc` ports and Cilium's own `cilium_*` devices left out; the
    /// interface of its InternalIP does the direct routing).
    pub fn kube_proxy_replacement(&self, node: &str) -> Result<KubeProxyReplacement, String> {
        let host = self
            .host(node)
            .ok_or_else(|| format!("no k8s-node named {node:?}"))?;
        let internal = self.address_of(node).map(IpAddr::V4);
        let devices: Vec<(String, Vec<IpAddr>)> = host
            .host
            .ports()
            .iter()
            .filter(|p| !p.name.starts_with("lxc") && !p.name.starts_with("cilium_"))
            .map(|p| (p.name.clone(), p.addrs.iter().map(|a| a.addr()).collect()))
            .collect();
        let direct_routing = devices
            .iter()
            .find(|(_, addrs)| internal.is_some_and(|i| addrs.contains(&i)))
            .map(|(name, _)| name.clone());
        let values = &self.lab.values.services;
        Ok(KubeProxyReplacement {
            mode: values.mode,
            algorithm: values.algorithm,
            maglev_table_size: values.maglev.table_size,
            node_ports: values.node_ports,
            devices,
            direct_routing,
        })
    }

    /// What could not be served, each problem once (a service's name and why).
    pub fn service_problems(&self) -> &[String] {
        &self.service_problems
    }

    /// `kubectl get svc`: NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S)
    /// (`port:nodePort/PROTO` for NodePort and LoadBalancer services).
    pub fn service_rows(&self) -> Vec<[String; 5]> {
        self.workloads
            .services()
            .map(|svc| {
                let kind = svc.spec.kind.clone().unwrap_or_default();
                let external = if kind == "LoadBalancer" {
                    let ips = self.lb.addresses(svc.namespace(), &svc.metadata.name);
                    if ips.is_empty() {
                        "<pending>".to_string()
                    } else {
                        ips.iter()
                            .map(IpAddr::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    }
                } else {
                    "<none>".to_string()
                };
                let ports = svc
                    .spec
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let protocol = p.protocol.as_deref().unwrap_or("TCP");
                        match self.node_ports.get(svc.namespace(), &svc.metadata.name, i) {
                            Some(node_port) => format!("{}:{node_port}/{protocol}", p.port),
                            None => format!("{}/{protocol}", p.port),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                [
                    svc.metadata.name.clone(),
                    kind,
                    svc.spec.cluster_ip.clone().unwrap_or_default(),
                    external,
                    ports,
                ]
            })
            .collect()
    }

    /// `kubectl get ippools` rows.
    pub fn pool_rows(&self) -> Vec<[String; 4]> {
        self.lb.pool_rows()
    }

    /// The pools' status conditions: POOL, TYPE, STATUS, REASON, MESSAGE.
    pub fn pool_conditions(&self) -> Vec<[String; 5]> {
        self.lb.pool_conditions()
    }

    /// LoadBalancer services' `cilium.io/IPAMRequestSatisfied` condition and
    /// `status.loadBalancer.ingress`: NAME, STATUS, REASON, INGRESS, MESSAGE.
    pub fn service_conditions(&self) -> Vec<[String; 5]> {
        self.workloads
            .services()
            .filter(|svc| svc.spec.kind.as_deref() == Some("LoadBalancer"))
            .map(|svc| {
                let (namespace, name) = (svc.namespace(), &svc.metadata.name);
                let [status, reason, message] = self.lb.request_condition(namespace, name);
                let ingress: Vec<String> = self
                    .lb
                    .addresses(namespace, name)
                    .iter()
                    .map(|ip| format!("{{ip: {ip}, ipMode: VIP}}"))
                    .collect();
                [
                    name.clone(),
                    status,
                    reason,
                    format!("[{}]", ingress.join(", ")),
                    message,
                ]
            })
            .collect()
    }

    /// Each node's service datapath counters so far (flows opened, replies
    /// translated, ...), by node name.
    pub fn service_counters(&self) -> Vec<(String, Counters)> {
        self.workloads
            .nodes()
            .iter()
            .filter_map(|n| {
                let h = self.host(&n.name)?;
                Some((n.name.clone(), h.host.services().counters()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::cluster::Cluster;
    use crate::engine::EngineConfig;
    use crate::lab::Lab;

    fn external_ip(cluster: &Cluster) -> String {
        let rows = cluster.service_rows();
        let webpod = rows.iter().find(|r| r[0] == "webpod").expect("webpod");
        webpod[3].clone()
    }

    #[test]
    fn pools_applied_and_deleted_drive_the_ingress() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/bgp");
        let mut cluster = Cluster::build(Lab::load(&dir).unwrap(), EngineConfig::new(1)).unwrap();
        let manifest = |file: &str| Lab::manifest(&dir, Path::new(file)).unwrap().objects;
        let pool = manifest("lb/pool.yaml");
        for o in manifest("lb/webpod-lb.yaml") {
            cluster.apply(&o).unwrap();
        }
        assert_eq!(external_ip(&cluster), "<pending>");
        cluster.apply(&pool[0]).unwrap();
        assert_eq!(external_ip(&cluster), "172.16.1.1");
        assert_eq!(cluster.pool_rows()[0][3], "253");
        cluster.delete(&pool[0]).unwrap();
        assert_eq!(external_ip(&cluster), "<pending>");
        assert!(cluster.pool_rows().is_empty());
        let [condition] = cluster.service_conditions().try_into().unwrap();
        assert_eq!(condition[1..3], ["False", "no_pool"]);
    }
}
