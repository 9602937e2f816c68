//! Three nodes' announcers over one lease store, on seed 002's objects
//! (scenarios 14–18): who announces what, failover, and never two nodes
//! answering for one address.

use alloc::collections::VecDeque;
use alloc::string::ToString;

use smoltcp::time::Duration;

use super::*;
use crate::cilium::objects::tests::parse;
use crate::lease::{MemoryStore, Response};

const NODES: &str = "
apiVersion: v1
kind: Node
metadata: { name: k8s-ctr }
---
apiVersion: v1
kind: Node
metadata: { name: k8s-w1 }
---
apiVersion: v1
kind: Node
metadata: { name: k8s-w0 }
";

const WEBPOD: &str = "
apiVersion: v1
kind: Service
metadata: { name: webpod, labels: { app: webpod } }
spec: { type: LoadBalancer, clusterIP: 10.96.129.95, ports: [{ port: 80 }], selector: { app: webpod } }
status: { loadBalancer: { ingress: [{ ip: 192.168.10.211 }] } }
";

/// Seed 002 §1.10, `policy1` (verbatim but for the service label).
const POLICY1: &str = "
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: { name: policy1 }
spec:
  serviceSelector: { matchLabels: { app: webpod } }
  nodeSelector:
    matchExpressions:
      - { key: kubernetes.io/hostname, operator: NotIn, values: [k8s-w0] }
  interfaces: ['^eth[1-9]+']
  externalIPs: true
  loadBalancerIPs: true
";

fn fast() -> Timings {
    Timings {
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

struct Lab {
    now: Instant,
    objects: Objects,
    store: MemoryStore,
    nodes: Vec<(String, Option<L2Announcer>, Vec<Interface>)>,
    wire: VecDeque<(Instant, usize, String, u64, Response)>,
    /// Lease requests each node sent.
    requests: Vec<u64>,
}

impl Lab {
    fn new(yaml: &str, seed: u64) -> Lab {
        let objects = parse(yaml).unwrap();
        let now = Instant::from_secs(10);
        let nodes = ["k8s-ctr", "k8s-w1", "k8s-w0"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let (a, warnings) = L2Announcer::new(n, fast(), seed ^ i as u64);
                assert!(warnings.is_empty());
                let ifs = ["eth0", "eth1"]
                    .iter()
                    .map(|name| Interface {
                        name: name.to_string(),
                        up: true,
                    })
                    .collect();
                (n.to_string(), Some(a), ifs)
            })
            .collect();
        let mut lab = Lab {
            now,
            objects,
            store: MemoryStore::default(),
            nodes,
            wire: VecDeque::new(),
            requests: alloc::vec![0; 3],
        };
        lab.reconcile();
        lab
    }

    fn carry(&mut self, node: usize, actions: Vec<Action>) {
        for a in actions {
            if let Action::Lease { lease, id, request } = a {
                self.requests[node] += 1;
                let response = self.store.apply(&lease, request);
                let at = self.now + Duration::from_millis(5);
                self.wire.push_back((at, node, lease, id, response));
            }
        }
    }

    fn reconcile(&mut self) {
        for i in 0..self.nodes.len() {
            let (_, a, ifs) = &mut self.nodes[i];
            if let Some(a) = a {
                let actions = a.reconcile(self.now, &self.objects, ifs);
                self.carry(i, actions);
            }
        }
    }

    fn apply(&mut self, yaml: &str) {
        for (_, o) in parse(yaml).unwrap().services {
            self.objects.insert(crate::cilium::Object::Service(o));
        }
        self.reconcile();
    }

    /// Who announces each address, checked never to be two nodes.
    fn announcers(&self) -> BTreeMap<IpAddr, Vec<&str>> {
        let mut by_ip: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for (name, a, _) in &self.nodes {
            let Some(a) = a else { continue };
            let ips: BTreeSet<IpAddr> = a.entries().iter().map(|e| e.ip).collect();
            for ip in ips {
                by_ip.entry(ip).or_default().push(name);
            }
        }
        by_ip
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(10);
            while self.wire.front().is_some_and(|w| w.0 <= self.now) {
                let (_, node, lease, id, response) = self.wire.pop_front().unwrap();
                if let Some(a) = self.nodes[node].1.as_mut() {
                    let actions = a.handle(self.now, &lease, id, response);
                    self.carry(node, actions);
                }
            }
            for i in 0..self.nodes.len() {
                if let Some(a) = self.nodes[i].1.as_mut() {
                    let actions = a.tick(self.now);
                    self.carry(i, actions);
                }
            }
            for (ip, nodes) in self.announcers() {
                assert!(
                    nodes.len() <= 1,
                    "{ip} announced by {nodes:?} at {}",
                    self.now
                );
            }
        }
    }

    fn table(&self, node: usize) -> Vec<String> {
        let a = self.nodes[node].1.as_ref().unwrap();
        a.entries()
            .iter()
            .map(|e| alloc::format!("{} {}", e.ip, e.interface))
            .collect()
    }

    fn holder(&self, lease: &str) -> String {
        self.store
            .leases()
            .find(|(l, _)| *l == lease)
            .map(|(_, v)| v.record.holder.clone())
            .unwrap_or_default()
    }

    fn leader(&self, ip: &str) -> Option<usize> {
        let ip: IpAddr = ip.parse().unwrap();
        let name = *self.announcers().get(&ip)?.first()?;
        self.nodes.iter().position(|(n, _, _)| n == name)
    }
}

fn seed_lab(seed: u64) -> Lab {
    Lab::new(&alloc::format!("{NODES}---{WEBPOD}---{POLICY1}"), seed)
}

#[test]
fn policy1_makes_one_of_ctr_and_w1_announce_the_lb_ip_on_eth1_only() {
    for seed in 0..20 {
        let mut lab = seed_lab(seed);
        lab.run(Duration::from_secs(2));
        let leader = lab.leader("192.168.10.211").expect("announced");
        assert_ne!(leader, 2, "k8s-w0 is excluded by the node selector");
        assert_eq!(lab.table(leader), ["192.168.10.211 eth1"], "seed {seed}");
        assert_eq!(
            lab.holder("cilium-l2announce-default-webpod"),
            lab.nodes[leader].0
        );
        assert_eq!(lab.requests[2], 0, "k8s-w0 never takes part");
    }
}

#[test]
fn without_a_policy_nobody_announces_and_no_lease_is_written() {
    let mut lab = Lab::new(&alloc::format!("{NODES}---{WEBPOD}"), 1);
    lab.run(Duration::from_secs(2));
    assert!(lab.announcers().is_empty());
    assert_eq!(lab.requests, [0, 0, 0]);
}

#[test]
fn a_dead_leader_is_replaced_within_the_lease_bound() {
    let t = fast();
    let bound = t.duration + t.retry_period * 22 / 10 + Duration::from_millis(30);
    for seed in 0..20 {
        let mut lab = seed_lab(seed);
        lab.run(Duration::from_secs(3));
        let old = lab.leader("192.168.10.211").unwrap();
        lab.nodes[old].1 = None;
        let died = lab.now;
        let mut took = None;
        while lab.now < died + Duration::from_secs(6) {
            lab.run(Duration::from_millis(10));
            if took.is_none() && lab.leader("192.168.10.211").is_some() {
                took = Some(lab.now - died);
            }
        }
        let new = lab.leader("192.168.10.211").unwrap();
        assert_ne!(new, old);
        let took = took.unwrap();
        assert!(took <= bound, "seed {seed}: {took} > {bound}");
    }
}

#[test]
fn a_leader_whose_interface_goes_down_steps_down_at_once() {
    let t = fast();
    let bound = t.retry_period * 22 / 10 + Duration::from_millis(50);
    for seed in 0..20 {
        let mut lab = seed_lab(seed);
        lab.run(Duration::from_secs(3));
        let old = lab.leader("192.168.10.211").unwrap();
        lab.nodes[old].2[1].up = false;
        lab.reconcile();
        assert!(lab.table(old).is_empty(), "withdrawn at once");
        let down = lab.now;
        let mut took = None;
        while lab.now < down + Duration::from_secs(2) {
            lab.run(Duration::from_millis(10));
            if took.is_none() && lab.leader("192.168.10.211").is_some() {
                took = Some(lab.now - down);
            }
        }
        assert_ne!(lab.leader("192.168.10.211"), Some(old));
        let took = took.expect("taken over");
        assert!(took <= bound, "seed {seed}: {took} > {bound}");
    }
}

#[test]
fn services_sharing_an_address_have_one_leader_for_both() {
    let shared = "
apiVersion: v1
kind: Service
metadata: { name: netshoot-web, labels: { app: netshoot-web } }
spec: { type: LoadBalancer, ports: [{ port: 80 }] }
status: { loadBalancer: { ingress: [{ ip: 192.168.10.215 }] } }
---
apiVersion: v1
kind: Service
metadata: { name: netshoot-web2, labels: { app: netshoot-web } }
spec: { type: LoadBalancer, ports: [{ port: 8080 }] }
status: { loadBalancer: { ingress: [{ ip: 192.168.10.215 }] } }
---
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: { name: policy2 }
spec:
  serviceSelector: { matchLabels: { app: netshoot-web } }
  interfaces: ['^eth1$']
  loadBalancerIPs: true
";
    for seed in 0..20 {
        let mut lab = Lab::new(&alloc::format!("{NODES}---{shared}"), seed);
        lab.run(Duration::from_secs(3));
        let leader = lab.leader("192.168.10.215").unwrap();
        let name = lab.nodes[leader].0.clone();
        assert_eq!(lab.holder("cilium-l2announce-default-netshoot-web"), name);
        assert_eq!(
            lab.holder("cilium-l2announce-default-netshoot-web2"),
            name,
            "seed {seed}"
        );
        // The leader dies: the address moves with the group's first lease;
        // the second lease follows once the new leader has seen it unrenewed
        // for its duration.
        lab.nodes[leader].1 = None;
        lab.run(Duration::from_secs(4));
        let new = lab.leader("192.168.10.215").unwrap();
        let name = lab.nodes[new].0.clone();
        assert_eq!(lab.holder("cilium-l2announce-default-netshoot-web"), name);
        lab.run(Duration::from_secs(4));
        assert_eq!(
            lab.holder("cilium-l2announce-default-netshoot-web2"),
            name,
            "seed {seed}"
        );
    }
}

#[test]
fn external_traffic_local_keeps_nodes_without_a_local_endpoint_out() {
    let local = "
apiVersion: v1
kind: Service
metadata: { name: webpod, labels: { app: webpod } }
spec: { type: LoadBalancer, externalTrafficPolicy: Local, ports: [{ port: 80 }] }
status: { loadBalancer: { ingress: [{ ip: 192.168.10.211 }] } }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: webpod-abc, labels: { kubernetes.io/service-name: webpod } }
addressType: IPv4
endpoints:
  - { addresses: [172.20.1.10], nodeName: k8s-w1, conditions: { ready: true } }
";
    for seed in 0..10 {
        let mut lab = Lab::new(&alloc::format!("{NODES}---{local}---{POLICY1}"), seed);
        lab.run(Duration::from_secs(2));
        assert_eq!(lab.leader("192.168.10.211"), Some(1), "seed {seed}");
        assert_eq!(lab.requests[0], 0);
    }
}

#[test]
fn a_deleted_service_is_withdrawn_and_its_lease_freed() {
    let mut lab = seed_lab(3);
    lab.run(Duration::from_secs(2));
    let leader = lab.leader("192.168.10.211").unwrap();
    lab.objects.services.clear();
    lab.reconcile();
    assert!(lab.table(leader).is_empty());
    lab.run(Duration::from_secs(1));
    assert_eq!(lab.holder("cilium-l2announce-default-webpod"), "");
    let a = lab.nodes[leader].1.as_ref().unwrap();
    assert_eq!(a.leases().count(), 0, "the finished election is gone");
}

#[test]
fn a_bad_interface_expression_is_a_policy_condition_and_nothing_else_stops() {
    let bad = "
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata: { name: broken }
spec:
  interfaces: ['eth[1-']
  loadBalancerIPs: true
";
    let mut lab = Lab::new(&alloc::format!("{NODES}---{WEBPOD}---{POLICY1}---{bad}"), 1);
    lab.run(Duration::from_secs(2));
    assert!(
        lab.leader("192.168.10.211").is_some(),
        "policy1 still works"
    );
    let a = lab.nodes[0].1.as_ref().unwrap();
    let c = &a.conditions()[0];
    assert_eq!((c.policy.as_str(), c.kind), ("broken", BAD_INTERFACE_REGEX));
    assert!(c.message.contains("\"eth[1-\""), "{}", c.message);
}

#[test]
fn a_foreign_class_and_a_pending_service_are_not_elected() {
    let mut lab = Lab::new(&alloc::format!("{NODES}---{POLICY1}"), 1);
    lab.apply(
        "
apiVersion: v1
kind: Service
metadata: { name: webpod, labels: { app: webpod } }
spec: { type: LoadBalancer, loadBalancerClass: io.cilium/bgp-control-plane }
status: { loadBalancer: { ingress: [{ ip: 192.168.10.211 }] } }
---
apiVersion: v1
kind: Service
metadata: { name: pending, labels: { app: webpod } }
spec: { type: LoadBalancer }
",
    );
    lab.run(Duration::from_secs(1));
    assert!(lab.announcers().is_empty());
    assert_eq!(lab.requests, [0, 0, 0]);
    // Given an address, the pending one is elected.
    lab.apply(
        "
apiVersion: v1
kind: Service
metadata: { name: pending, labels: { app: webpod } }
spec: { type: LoadBalancer }
status: { loadBalancer: { ingress: [{ ip: 192.168.10.212 }] } }
",
    );
    lab.run(Duration::from_secs(1));
    assert!(lab.leader("192.168.10.212").is_some());
}

#[test]
fn go_regex_semantics_for_interface_names() {
    let r = interface_regex("^eth[1-9]+").unwrap();
    assert!(r.is_match("eth1") && r.is_match("eth12x") && !r.is_match("eth0"));
    let r = interface_regex(r"ens\d").unwrap();
    assert!(r.is_match("xens3") && !r.is_match("ens"));
}
