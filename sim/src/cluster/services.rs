//! LoadBalancer services on the nodes, as Cilium's kube-proxy replacement
//! programs them: every node serves every LoadBalancer ingress address of a
//! service with endpoints, through its netstack service stage
//! ([`nexthop_netstack::host::service`]). With `externalTrafficPolicy: Cluster`
//! the backends are all the service's pods (another node's pod is reached with
//! SNAT to this node's InternalIP); with `Local` only this node's pods, and a
//! node without one drops the traffic. Also the `kubectl get svc` rows.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddrV4};

use nexthop_netstack::host::service::{Backend, Frontend, Protocol};

use super::Cluster;

impl Cluster {
    /// Allocate LB addresses, program every node's frontends and bring the
    /// nodes' control planes in line.
    pub(super) fn settle(&mut self) -> Result<(), String> {
        self.lb
            .reconcile(&self.cilium.lb_pools, self.workloads.services());
        self.program_services();
        self.reconcile_nodes();
        Ok(())
    }

    /// Each node's frontends: the ingress addresses of LoadBalancer services.
    fn program_services(&mut self) {
        let nodes: Vec<String> = self
            .workloads
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect();
        for node in nodes {
            let snat = self.address_of(&node);
            let mut wanted = Vec::new();
            for svc in self.workloads.services() {
                let ips = self.lb.addresses(svc.namespace(), &svc.metadata.name);
                let pods = self.workloads.endpoints(svc);
                for ip in ips {
                    let IpAddr::V4(ip) = ip else { continue };
                    for sp in &svc.spec.ports {
                        let protocol = match sp.protocol.as_deref() {
                            Some("UDP") => Protocol::Udp,
                            _ => Protocol::Tcp,
                        };
                        let target = super::workloads::target_port(sp);
                        let backends = pods
                            .iter()
                            .filter(|p| !svc.external_traffic_local() || p.node == node)
                            .map(|p| Backend {
                                addr: SocketAddrV4::new(p.ip, target),
                                local: p.node == node,
                            })
                            .collect();
                        let frontend = Frontend {
                            addr: SocketAddrV4::new(ip, sp.port),
                            protocol,
                        };
                        wanted.push((frontend, backends));
                    }
                }
            }
            let id = self.hosts[&node];
            let services = self.engine.node_mut(id).host.services_mut();
            services.set_snat_address(snat);
            let keep: BTreeSet<Frontend> = wanted.iter().map(|(f, _)| *f).collect();
            let gone: Vec<Frontend> = services
                .frontends()
                .map(|(f, _)| *f)
                .filter(|f| !keep.contains(f))
                .collect();
            for f in gone {
                services.remove(&f);
            }
            for (f, backends) in wanted {
                services.set(f, backends);
            }
        }
    }

    /// `kubectl get svc`: NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S).
    /// No NodePort is allocated in the simulator, so PORT(S) shows `port/PROTO`.
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
                    .map(|p| format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")))
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

    /// Flows each node's service stage opened so far, by node name.
    pub fn service_flows(&self) -> Vec<(String, u64)> {
        self.workloads
            .nodes()
            .iter()
            .filter_map(|n| {
                let h = self.host(&n.name)?;
                Some((n.name.clone(), h.host.services().counters().flows))
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
