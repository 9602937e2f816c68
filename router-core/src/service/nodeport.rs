//! NodePort allocation: which port on every node each port of a `NodePort`
//! or `LoadBalancer` service gets, as the API server would assign it but
//! deterministically from a seed, so every runtime and every run agree.
//!
//! Owns the range (`--service-node-port-range`, 30000–32767 by default, or
//! Cilium's `nodePort.range`), the ports services fix themselves
//! (`spec.ports[].nodePort`, honoured if inside the range and free; reported
//! with the service's name otherwise) and the choice for the others: a
//! seed-derived start in the range, then the next free port. Services are
//! taken in (namespace, name) order, fixed ports first. Which frontends a
//! NodePort makes is `frontend`'s business.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::cilium::Objects;
use crate::hash::{Fnv1a, splitmix64};

/// A service's (namespace, name).
pub type ServiceName = (String, String);

/// The ports NodePorts come from, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (`>= first`).
    pub last: u16,
}

impl PortRange {
    /// Kubernetes' default `--service-node-port-range`, 30000–32767.
    pub const DEFAULT: PortRange = PortRange {
        first: 30000,
        last: 32767,
    };

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn len(&self) -> u32 {
        u32::from(self.last.saturating_sub(self.first)) + 1
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Why a service port got no NodePort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The service fixes a NodePort outside the range.
    OutOfRange {
        /// The service.
        service: ServiceName,
        /// The port it asked for.
        node_port: u16,
        /// The range.
        range: PortRange,
    },
    /// The service fixes a NodePort another service holds.
    Taken {
        /// The service.
        service: ServiceName,
        /// The port it asked for.
        node_port: u16,
        /// The service holding it.
        holder: ServiceName,
    },
    /// Every port of the range is taken.
    Exhausted {
        /// The service.
        service: ServiceName,
        /// The range.
        range: PortRange,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::OutOfRange {
                service: (ns, name),
                node_port,
                range,
            } => write!(
                f,
                "service {ns}/{name}: nodePort {node_port} is outside the NodePort range {range}"
            ),
            Problem::Taken {
                service: (ns, name),
                node_port,
                holder: (hns, hname),
            } => write!(
                f,
                "service {ns}/{name}: nodePort {node_port} is already allocated to {hns}/{hname}"
            ),
            Problem::Exhausted {
                service: (ns, name),
                range,
            } => write!(f, "service {ns}/{name}: no free NodePort left in {range}"),
        }
    }
}

/// The NodePorts of every service port that has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodePorts {
    ports: BTreeMap<(ServiceName, usize), u16>,
}

impl NodePorts {
    /// The NodePort of port `index` (in `spec.ports`) of service `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str, index: usize) -> Option<u16> {
        let key = ((String::from(namespace), String::from(name)), index);
        self.ports.get(&key).copied()
    }
}

/// Allocate the NodePorts of `objects`' services from `range`, choices
/// derived from `seed`; what could not be honoured is in the problems.
pub fn allocate(objects: &Objects, range: PortRange, seed: u64) -> (NodePorts, Vec<Problem>) {
    let mut holders: BTreeMap<u16, ServiceName> = BTreeMap::new();
    let mut out = NodePorts::default();
    let mut problems = Vec::new();
    let services: Vec<(&ServiceName, &crate::cilium::kube::Service)> = objects
        .services
        .iter()
        .filter(|(_, s)| s.has_node_ports())
        .collect();
    for (key, service) in &services {
        for (index, port) in service.spec.ports.iter().enumerate() {
            let Some(node_port) = port.node_port else {
                continue;
            };
            if !range.contains(node_port) {
                problems.push(Problem::OutOfRange {
                    service: (*key).clone(),
                    node_port,
                    range,
                });
                continue;
            }
            match holders.get(&node_port) {
                Some(holder) if holder != *key => problems.push(Problem::Taken {
                    service: (*key).clone(),
                    node_port,
                    holder: holder.clone(),
                }),
                _ => {
                    holders.insert(node_port, (*key).clone());
                    out.ports.insert(((*key).clone(), index), node_port);
                }
            }
        }
    }
    for (key, service) in &services {
        for (index, port) in service.spec.ports.iter().enumerate() {
            if port.node_port.is_some() {
                continue;
            }
            let mut hash = Fnv1a::new();
            for part in [key.0.as_bytes(), b"/", key.1.as_bytes(), b"/"] {
                hash.write(part);
            }
            hash.write(&(index as u64).to_be_bytes());
            let mut state = seed ^ hash.finish();
            let start = (splitmix64(&mut state) % u64::from(range.len())) as u32;
            let free = (0..range.len())
                .map(|k| range.first + ((start + k) % range.len()) as u16)
                .find(|p| !holders.contains_key(p));
            match free {
                Some(node_port) => {
                    holders.insert(node_port, (*key).clone());
                    out.ports.insert(((*key).clone(), index), node_port);
                }
                None => problems.push(Problem::Exhausted {
                    service: (*key).clone(),
                    range,
                }),
            }
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::objects::tests::parse;
    use alloc::format;

    const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  type: NodePort
  ports: [ { port: 80 }, { port: 443, nodePort: 30443 } ]
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: prod }
spec:
  type: LoadBalancer
  ports: [ { port: 8080, nodePort: 30443 }, { port: 9090, nodePort: 40000 } ]
---
apiVersion: v1
kind: Service
metadata: { name: internal }
spec:
  ports: [ { port: 80 } ]
";

    #[test]
    fn fixed_ports_are_honoured_or_reported_and_the_rest_allocated() {
        let objects = parse(SERVICES).unwrap();
        let (ports, problems) = allocate(&objects, PortRange::DEFAULT, 7);
        let messages: Vec<String> = problems.iter().map(|p| format!("{p}")).collect();
        // default/web comes first in (namespace, name) order and keeps 30443.
        assert_eq!(
            messages,
            [
                "service prod/api: nodePort 30443 is already allocated to default/web",
                "service prod/api: nodePort 40000 is outside the NodePort range 30000-32767",
            ]
        );
        assert_eq!(ports.get("default", "web", 1), Some(30443));
        let chosen = ports.get("default", "web", 0).unwrap();
        assert!(PortRange::DEFAULT.contains(chosen) && chosen != 30443);
        assert_eq!(ports.get("prod", "api", 0), None);
        assert_eq!(ports.get("default", "internal", 0), None, "ClusterIP only");
        // Same seed, same choice; another seed, most likely another port.
        assert_eq!(allocate(&objects, PortRange::DEFAULT, 7).0, ports);
        assert_ne!(allocate(&objects, PortRange::DEFAULT, 8).0, ports);
    }

    #[test]
    fn a_full_range_is_reported() {
        let objects = parse(SERVICES).unwrap();
        let range = PortRange {
            first: 30443,
            last: 30443,
        };
        let (ports, problems) = allocate(&objects, range, 1);
        assert_eq!(ports.get("default", "web", 1), Some(30443));
        assert!(problems.contains(&Problem::Exhausted {
            service: ("default".into(), "web".into()),
            range,
        }));
    }
}
