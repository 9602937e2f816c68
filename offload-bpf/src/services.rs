//! router-core's service table as map contents: what the service maps of
//! the XDP object should hold for a `router_core::service::table::ServiceTable`
//! and the service datapath's `Config`.
//!
//! Owns the translation only: frontends and their two scopes as backend
//! sets (identical sets share their slots and Maglev table), backend IDs
//! and addresses, the settings, masquerading's pods and exclusions. Writing them into the kernel, into the half
//! packets do not read, is [`crate::datapath`]'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::Ipv4Net;
use nexthop_offload_bpf_common::service::{
    Backend, BackendSet, L3n4Key, MASQ_PODS, NO_MAGLEV, ServiceConfig, mode, scope,
};
use nexthop_offload_bpf_common::{MAX_PORTS, family};
use router_core::PortId;
use router_core::service::datapath::{Config, Mode};
use router_core::service::lookup::Algorithm;
use router_core::service::masquerade::Masquerade;
use router_core::service::table::{BackendState, L3n4, ServiceTable};

/// Service settings the XDP program cannot carry out (the loader refuses
/// them rather than let the program disagree with router-core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// A pod port's `PortId` is at least [`MAX_PORTS`].
    PodPort(PortId),
    /// Masquerading names more pod CIDRs of this node than [`MASQ_PODS`].
    MasqueradePods(Vec<Ipv4Net>),
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::PodPort(p) => {
                write!(f, "pod port {p}: port ids must be below {MAX_PORTS}")
            }
            Unsupported::MasqueradePods(pods) => write!(
                f,
                "masquerading for {} pod CIDRs ({pods:?}): the datapath holds {MASQ_PODS}",
                pods.len()
            ),
        }
    }
}

impl std::error::Error for Unsupported {}

/// What the service maps hold for one table (one half's worth).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceMaps {
    /// `SVC_CONFIG`.
    pub config: ServiceConfig,
    /// `SVC_FRONTENDS` without the half: (frontend, scope) → set.
    pub frontends: BTreeMap<(L3n4Key, u8), BackendSet>,
    /// `SVC_SLOTS`.
    pub slots: Vec<u32>,
    /// `SVC_MAGLEV`: the tables one after another, M entries each.
    pub maglev: Vec<u32>,
    /// `SVC_IDS`: entry `id` is backend `id`'s address (entry 0 unused).
    pub ids: Vec<L3n4Key>,
    /// `SVC_BACKENDS` without the half.
    pub backends: BTreeMap<L3n4Key, Backend>,
    /// `MASQ_EXCLUDE` without the half: destinations never masqueraded.
    pub exclusions: Vec<Ipv4Net>,
}

/// A backend set as its active IDs and Maglev table.
type SetKey<'a> = (&'a [u32], &'a [u32]);

/// The map key of a router-core address, port and protocol.
pub fn l3n4(a: &L3n4) -> L3n4Key {
    L3n4Key::new(a.addr, a.port, a.protocol)
}

impl ServiceMaps {
    /// The maps for `table` served with `config`; frames arriving on
    /// `pod_ports` are in-cluster traffic.
    pub fn new(
        config: &Config,
        table: &ServiceTable,
        pod_ports: &BTreeSet<PortId>,
    ) -> Result<Self, Unsupported> {
        let mut maps = ServiceMaps {
            config: settings(config, pod_ports)?,
            ..ServiceMaps::default()
        };
        let maglev = config.algorithm == Algorithm::Maglev;
        // Identical sets share their slots and table: (active IDs, table) →
        // (first slot, table index). Equal IDs alone are not enough: a
        // backend listed twice weighs twice in one scope's table.
        let mut sets: BTreeMap<SetKey, (u32, u32)> = BTreeMap::new();
        for (addr, frontend) in table.frontends() {
            let scopes = [
                (scope::INTERNAL, Some(&frontend.internal)),
                (scope::EXTERNAL, frontend.external.as_ref()),
            ];
            for (scope, set) in scopes {
                let Some(set) = set else { continue };
                let next = (
                    maps.slots.len() as u32,
                    (maps.maglev.len() as u32) / maps.config.maglev_size.max(1),
                );
                let key = (&set.active[..], &set.maglev[..]);
                let (first, table_index) = *sets.entry(key).or_insert_with(|| {
                    maps.slots.extend_from_slice(&set.active);
                    if maglev && !set.maglev.is_empty() {
                        maps.maglev.extend_from_slice(&set.maglev);
                        next
                    } else {
                        (next.0, NO_MAGLEV)
                    }
                });
                let entry = BackendSet {
                    first,
                    count: set.active.len() as u32,
                    maglev: table_index,
                    affinity: frontend.affinity_seconds.unwrap_or(0),
                };
                maps.frontends.insert((l3n4(addr), scope), entry);
            }
        }
        maps.ids.push(L3n4Key::default());
        for (id, b) in table.backends() {
            let key = l3n4(&b.addr);
            maps.ids.push(key);
            let (node_family, node) = match b.node {
                Some(IpAddr::V4(a)) => {
                    let mut n = [0; 16];
                    n[..4].copy_from_slice(&a.octets());
                    (family::V4, n)
                }
                Some(IpAddr::V6(a)) => (family::V6, a.octets()),
                None => (0, [0; 16]),
            };
            let backend = Backend {
                id,
                node,
                node_family,
                terminating: u8::from(b.state == BackendState::Terminating),
                local: u8::from(b.local),
                pad: 0,
            };
            maps.backends.insert(key, backend);
        }
        Ok(maps)
    }
}

impl ServiceMaps {
    /// The same maps masquerading local pods' traffic as `masquerade` says
    /// (router-core's `Service::set_masquerade`).
    pub fn with_masquerade(mut self, masquerade: &Masquerade) -> Result<Self, Unsupported> {
        let pods = masquerade.pods();
        if pods.len() > MASQ_PODS {
            return Err(Unsupported::MasqueradePods(pods.to_vec()));
        }
        let c = &mut self.config;
        c.masquerade = 1;
        c.masq_addr = masquerade.addr().octets();
        c.masq_pod_count = pods.len() as u8;
        for (i, p) in pods.iter().enumerate() {
            c.masq_pods[i] = p.network().octets();
            c.masq_pod_lens[i] = p.prefix_len();
        }
        self.exclusions = masquerade.exclusions().to_vec();
        Ok(self)
    }
}

/// `SVC_CONFIG` for `config`.
fn settings(config: &Config, pod_ports: &BTreeSet<PortId>) -> Result<ServiceConfig, Unsupported> {
    let mut pods = [0u64; 4];
    for &p in pod_ports {
        if u32::from(p.0) >= MAX_PORTS {
            return Err(Unsupported::PodPort(p));
        }
        pods[usize::from(p.0 / 64)] |= 1 << (p.0 % 64);
    }
    let t = &config.timeouts;
    let seconds = |secs: u64| u32::try_from(secs).unwrap_or(u32::MAX);
    Ok(ServiceConfig {
        enabled: 1,
        algorithm: u8::from(config.algorithm == Algorithm::Maglev),
        has_snat_v4: u8::from(config.snat_v4.is_some()),
        has_snat_v6: u8::from(config.snat_v6.is_some()),
        maglev_size: config.maglev.table_size,
        seeds: [config.maglev.seed_jhash0, config.maglev.seed_jhash1],
        lifetimes: [
            seconds(t.tcp_syn.secs()),
            seconds(t.tcp_established.secs()),
            seconds(t.tcp_closing.secs()),
            seconds(t.non_tcp.secs()),
        ],
        snat_v4: config.snat_v4.map_or([0; 4], |a| a.octets()),
        snat_v6: config.snat_v6.map_or([0; 16], |a| a.octets()),
        mode: match config.mode {
            Mode::Snat => mode::SNAT,
            Mode::Dsr => mode::DSR,
            Mode::Hybrid => mode::HYBRID,
        },
        pod_ports: pods,
        ..ServiceConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::service::Protocol;
    use router_core::service::maglev;
    use router_core::service::table::{BackendSpec, FrontendKind, FrontendSpec};

    fn addr(a: [u8; 4], port: u16) -> L3n4 {
        L3n4 {
            addr: IpAddr::from(a),
            port,
            protocol: Protocol::Tcp,
        }
    }

    fn backend(a: [u8; 4], local: bool) -> BackendSpec {
        BackendSpec {
            addr: addr(a, 8080),
            state: BackendState::Active,
            local,
            weight: 100,
            node: Some(IpAddr::from([192, 168, 0, 2])),
        }
    }

    fn table(config: &maglev::Config) -> ServiceTable {
        let spec = |kind, external_local| FrontendSpec {
            service: ("default".into(), "web".into()),
            kind,
            external_local,
            internal_local: false,
            affinity_seconds: Some(30),
            backends: vec![backend([10, 0, 1, 5], true), backend([10, 0, 2, 5], false)],
        };
        let frontends = [
            (
                addr([10, 96, 0, 10], 80),
                spec(FrontendKind::ClusterIp, false),
            ),
            (
                addr([192, 168, 0, 1], 30080),
                spec(FrontendKind::NodePort, true),
            ),
        ];
        ServiceTable::new(config, frontends.into_iter().collect())
    }

    #[test]
    fn scopes_share_identical_sets_and_ids_index_addresses() {
        let config = Config {
            algorithm: Algorithm::Maglev,
            snat_v4: Some([192, 168, 0, 1].into()),
            ..Config::default()
        };
        let t = table(&config.maglev);
        let maps = ServiceMaps::new(&config, &t, &BTreeSet::from([PortId(3)])).unwrap();
        // ClusterIP: internal only; NodePort: internal (both) + external (local only).
        assert_eq!(maps.frontends.len(), 3);
        let cluster = maps.frontends[&(l3n4(&addr([10, 96, 0, 10], 80)), scope::INTERNAL)];
        let node_int = maps.frontends[&(l3n4(&addr([192, 168, 0, 1], 30080)), scope::INTERNAL)];
        let node_ext = maps.frontends[&(l3n4(&addr([192, 168, 0, 1], 30080)), scope::EXTERNAL)];
        assert_eq!(cluster, node_int, "one set, one table");
        assert_eq!((cluster.count, node_ext.count), (2, 1));
        assert_ne!(cluster.maglev, node_ext.maglev);
        assert_eq!(cluster.affinity, 30);
        assert_eq!(maps.maglev.len(), 2 * 16381);
        assert_eq!(maps.slots, vec![1, 2, 1]);
        assert_eq!(maps.ids[1], l3n4(&addr([10, 0, 1, 5], 8080)));
        assert_eq!(maps.backends[&maps.ids[2]].local, 0);
        assert_eq!(maps.config.pod_ports[0], 1 << 3);
    }

    #[test]
    fn sets_with_equal_backends_but_other_weights_keep_their_own_tables() {
        // 10.0.2.5 listed twice: once local, once not. The external scope
        // (local only) has it once, the internal scope twice (double weight):
        // the same active IDs, two different Maglev tables.
        let config = Config {
            algorithm: Algorithm::Maglev,
            ..Config::default()
        };
        let mut twice = backend([10, 0, 2, 5], false);
        let spec = FrontendSpec {
            service: ("default".into(), "web".into()),
            kind: FrontendKind::NodePort,
            external_local: true,
            internal_local: false,
            affinity_seconds: None,
            backends: vec![
                backend([10, 0, 1, 5], true),
                backend([10, 0, 2, 5], true),
                {
                    twice.weight = 100;
                    twice
                },
            ],
        };
        let frontend = addr([192, 168, 0, 1], 30080);
        let t = ServiceTable::new(&config.maglev, [(frontend, spec)].into_iter().collect());
        let maps = ServiceMaps::new(&config, &t, &BTreeSet::new()).unwrap();
        let internal = maps.frontends[&(l3n4(&frontend), scope::INTERNAL)];
        let external = maps.frontends[&(l3n4(&frontend), scope::EXTERNAL)];
        assert_eq!((internal.count, external.count), (2, 2));
        assert_ne!(internal.maglev, external.maglev);
        let m = config.maglev.table_size as usize;
        let table = |i: u32| &maps.maglev[i as usize * m..(i as usize + 1) * m];
        assert_eq!(
            table(internal.maglev),
            &t.frontend(&frontend).unwrap().internal.maglev[..]
        );
        assert_eq!(
            table(external.maglev),
            &t.frontend(&frontend)
                .unwrap()
                .external
                .as_ref()
                .unwrap()
                .maglev[..]
        );
    }

    #[test]
    fn random_needs_no_tables_and_a_high_pod_port_is_refused() {
        let config = Config::default();
        let t = table(&config.maglev);
        let maps = ServiceMaps::new(&config, &t, &BTreeSet::new()).unwrap();
        assert!(maps.maglev.is_empty());
        assert!(maps.frontends.values().all(|s| s.maglev == NO_MAGLEV));
        let err = ServiceMaps::new(&config, &t, &BTreeSet::from([PortId(300)])).unwrap_err();
        assert!(err.to_string().contains("pod port"), "{err}");
    }
}
