//! One node's service table: every frontend the node serves and the
//! backends each may send a new flow to, with the Maglev table of each
//! backend set built once.
//!
//! Owns the frontend → backends mapping after the traffic policies are
//! applied, in Cilium's two scopes (`lb4_lookup_service` in `bpf/lib/lb.h`):
//! the *external* set for traffic arriving on the node's uplinks
//! (`externalTrafficPolicy`) and the *internal* set for traffic from this
//! node's pods and host (`internalTrafficPolicy`). A ClusterIP frontend has
//! no external set: Cilium leaves traffic from outside to ClusterIPs alone.
//! Backends get IDs (from 1, in address order) that the Maglev tables hold.
//! Where the frontends and backends come from (Kubernetes objects) is
//! `frontend`'s business; what happens to a packet is [`super::datapath`]'s.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use super::Protocol;
use super::maglev;

/// An address, port and protocol: a frontend, or a backend (Cilium's `L3n4Addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L3n4 {
    /// The address.
    pub addr: IpAddr,
    /// The port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// What kind of address a frontend is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrontendKind {
    /// The service's cluster IP.
    ClusterIp,
    /// A node address with the service's NodePort.
    NodePort,
    /// A `status.loadBalancer.ingress` address.
    LoadBalancer,
    /// One of `spec.externalIPs`.
    ExternalIp,
}

/// A backend's state, from its EndpointSlice conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BackendState {
    /// Ready: takes new flows.
    Active,
    /// Terminating but still serving: keeps its flows, takes no new ones.
    Terminating,
}

/// A backend as a frontend's specification lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Address, port and protocol.
    pub addr: L3n4,
    /// Its state.
    pub state: BackendState,
    /// Whether it runs on this node (what `Local` traffic policies keep).
    pub local: bool,
    /// Its Maglev weight (Cilium gives Kubernetes backends 100).
    pub weight: u16,
    /// The address of the node it runs on, where DSR dispatches requests
    /// (`None` when unknown).
    pub node: Option<IpAddr>,
}

/// Everything the table needs to know about one frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendSpec {
    /// The service's namespace and name.
    pub service: (String, String),
    /// What kind of frontend it is.
    pub kind: FrontendKind,
    /// `externalTrafficPolicy: Local`: outside traffic only to local backends.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`: in-cluster traffic only to local backends.
    pub internal_local: bool,
    /// `sessionAffinity: ClientIP` and its timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// The service's backends for this frontend's port.
    pub backends: Vec<BackendSpec>,
}

/// The backends one scope of a frontend sends new flows to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSet {
    /// Active backends' IDs, ascending (the slots `random` picks from).
    pub active: Vec<u32>,
    /// The Maglev table over `active` (empty when there is none).
    pub maglev: Vec<u32>,
}

impl BackendSet {
    fn new(config: &maglev::Config, ids: &BTreeMap<L3n4, u32>, backends: &[&BackendSpec]) -> Self {
        let members: Vec<maglev::Backend> = backends
            .iter()
            .filter(|b| b.state == BackendState::Active)
            .filter_map(|b| {
                Some(maglev::Backend {
                    id: *ids.get(&b.addr)?,
                    addr: b.addr.addr,
                    port: b.addr.port,
                    protocol: b.addr.protocol,
                    weight: b.weight,
                })
            })
            .collect();
        let mut active: Vec<u32> = members.iter().map(|b| b.id).collect();
        active.sort_unstable();
        active.dedup();
        BackendSet {
            maglev: maglev::lookup_table(config, &members),
            active,
        }
    }
}

/// One frontend of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// The service's namespace and name.
    pub service: (String, String),
    /// What kind of frontend it is.
    pub kind: FrontendKind,
    /// Session affinity timeout, seconds, when `ClientIP`.
    pub affinity_seconds: Option<u32>,
    /// Backends for traffic arriving from outside the node (`None` for a
    /// ClusterIP, which outside traffic does not reach).
    pub external: Option<BackendSet>,
    /// Backends for traffic from this node's pods and host.
    pub internal: BackendSet,
    /// Every backend the service lists for this frontend's port, active or
    /// terminating, in the order listed (what `service list` shows).
    pub backends: Vec<u32>,
}

/// A backend of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Address, port and protocol.
    pub addr: L3n4,
    /// Its state.
    pub state: BackendState,
    /// Whether it runs on this node.
    pub local: bool,
    /// The address of the node it runs on, if known.
    pub node: Option<IpAddr>,
}

/// A node's service table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTable {
    frontends: BTreeMap<L3n4, Frontend>,
    backends: BTreeMap<u32, Backend>,
    ids: BTreeMap<L3n4, u32>,
}

impl ServiceTable {
    /// The table of `frontends`, Maglev tables built with `config`. A
    /// backend listed by several frontends is one backend (one ID); if two
    /// specifications disagree on its state or locality the first wins.
    pub fn new(config: &maglev::Config, frontends: BTreeMap<L3n4, FrontendSpec>) -> Self {
        let mut known: BTreeMap<L3n4, Backend> = BTreeMap::new();
        for spec in frontends.values() {
            for b in &spec.backends {
                known.entry(b.addr).or_insert(Backend {
                    addr: b.addr,
                    state: b.state,
                    local: b.local,
                    node: b.node,
                });
            }
        }
        let ids: BTreeMap<L3n4, u32> = known.keys().zip(1..).map(|(a, id)| (*a, id)).collect();
        let backends = known.values().zip(1..).map(|(b, id)| (id, *b)).collect();
        let frontends = frontends
            .into_iter()
            .map(|(addr, spec)| {
                let scope = |local_only: bool| {
                    let members: Vec<&BackendSpec> = spec
                        .backends
                        .iter()
                        .filter(|b| b.local || !local_only)
                        .collect();
                    BackendSet::new(config, &ids, &members)
                };
                let external =
                    (spec.kind != FrontendKind::ClusterIp).then(|| scope(spec.external_local));
                let frontend = Frontend {
                    backends: spec
                        .backends
                        .iter()
                        .filter_map(|b| ids.get(&b.addr).copied())
                        .collect(),
                    internal: scope(spec.internal_local),
                    external,
                    service: spec.service,
                    kind: spec.kind,
                    affinity_seconds: spec.affinity_seconds,
                };
                (addr, frontend)
            })
            .collect();
        ServiceTable {
            frontends,
            backends,
            ids,
        }
    }

    /// The frontend at `addr`.
    pub fn frontend(&self, addr: &L3n4) -> Option<&Frontend> {
        self.frontends.get(addr)
    }

    /// Every frontend, in address order.
    pub fn frontends(&self) -> impl Iterator<Item = (&L3n4, &Frontend)> {
        self.frontends.iter()
    }

    /// The backend with ID `id`.
    pub fn backend(&self, id: u32) -> Option<&Backend> {
        self.backends.get(&id)
    }

    /// The ID of the backend at `addr`.
    pub fn backend_id(&self, addr: &L3n4) -> Option<u32> {
        self.ids.get(addr).copied()
    }

    /// Every backend by ID (IDs run from 1 without gaps).
    pub fn backends(&self) -> impl Iterator<Item = (u32, &Backend)> {
        self.backends.iter().map(|(id, b)| (*id, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l3n4(addr: [u8; 4], port: u16) -> L3n4 {
        L3n4 {
            addr: IpAddr::from(addr),
            port,
            protocol: Protocol::Tcp,
        }
    }

    fn backend(addr: [u8; 4], state: BackendState, local: bool) -> BackendSpec {
        BackendSpec {
            addr: l3n4(addr, 8080),
            state,
            local,
            weight: maglev::DEFAULT_WEIGHT,
            node: None,
        }
    }

    fn spec(kind: FrontendKind, external_local: bool, internal_local: bool) -> FrontendSpec {
        FrontendSpec {
            service: ("default".into(), "web".into()),
            kind,
            external_local,
            internal_local,
            affinity_seconds: None,
            backends: alloc::vec![
                backend([10, 244, 1, 5], BackendState::Active, true),
                backend([10, 244, 2, 5], BackendState::Active, false),
                backend([10, 244, 1, 6], BackendState::Terminating, true),
            ],
        }
    }

    #[test]
    fn traffic_policies_pick_each_scopes_backends() {
        let config = maglev::Config::new(251, maglev::DEFAULT_HASH_SEED).unwrap();
        let cluster_ip = l3n4([10, 96, 0, 10], 80);
        let node_port = l3n4([192, 168, 10, 1], 30080);
        let table = ServiceTable::new(
            &config,
            [
                (cluster_ip, spec(FrontendKind::ClusterIp, false, true)),
                (node_port, spec(FrontendKind::NodePort, true, false)),
            ]
            .into(),
        );
        let id = |a: [u8; 4]| table.backend_id(&l3n4(a, 8080)).unwrap();
        let (local, remote, terminating) = (
            id([10, 244, 1, 5]),
            id([10, 244, 2, 5]),
            id([10, 244, 1, 6]),
        );
        assert_eq!(
            (local, terminating, remote),
            (1, 2, 3),
            "IDs in address order"
        );
        let c = table.frontend(&cluster_ip).unwrap();
        assert_eq!(c.internal.active, [local], "internalTrafficPolicy: Local");
        assert!(c.external.is_none(), "a ClusterIP has no outside scope");
        let n = table.frontend(&node_port).unwrap();
        assert_eq!(
            n.external.as_ref().unwrap().active,
            [local],
            "externalTrafficPolicy: Local"
        );
        assert_eq!(n.internal.active, [local, remote]);
        assert_eq!(n.internal.maglev.len(), 251);
        assert!(
            n.internal
                .maglev
                .iter()
                .all(|id| [local, remote].contains(id))
        );
        assert_eq!(
            table.backend(terminating).unwrap().state,
            BackendState::Terminating
        );
    }
}
