//! router-core tables as map contents: what every map of the XDP object should
//! hold for a given `router_core::datapath::Tables`.
//!
//! Owns the translation only (trie arrays copied as they are, nexthop groups
//! flattened into per-group bucket tables of nexthop slots, neighbours, ports,
//! local addresses, settings). Writing them into the kernel is [`crate::datapath`]'s job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use nexthop_offload_bpf_common::{
    ArpKey, BUCKETS, Config, FibNode, GroupBuckets, IpKey, LOCAL_FILTER_WORDS, MAX_PORTS, Mac,
    NdpKey, Nexthop, Port, SINGLE_NEXTHOP, V4_DIRECT_BITS, V6_DIRECT_BITS, VNI_FROM_IDENTITY,
    encap, kind, local_filter_bit,
};
use router_core::PortId;
use router_core::datapath::Tables;
use router_core::ecmp::HashPolicy;
use router_core::fib::poptrie::{Key, LEAF_FLAG, NO_ROUTE, Poptrie};
use router_core::fib::{Encap, Fib, GroupId, NexthopKind};
use router_core::neighbour;

use crate::services::ServiceMaps;

/// Tables the XDP program cannot hold (the loader refuses them rather than
/// let the program disagree with router-core).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// A port's `PortId` is at least [`MAX_PORTS`].
    PortId(PortId),
    /// A port has no kernel interface index.
    NoIfindex(PortId),
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::PortId(p) => write!(f, "{p}: port ids must be below {MAX_PORTS}"),
            Unsupported::NoIfindex(p) => write!(f, "{p} has no interface index"),
        }
    }
}

impl std::error::Error for Unsupported {}

/// The three arrays of one compiled trie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trie {
    /// Direct table: `LEAF_FLAG | group id` or a node index.
    pub direct: Vec<u32>,
    /// Nodes.
    pub nodes: Vec<FibNode>,
    /// Leaves (group ids).
    pub leaves: Vec<u32>,
}

impl Trie {
    fn of<K: Key>(trie: &Poptrie<K>) -> Self {
        Trie {
            direct: trie.direct().to_vec(),
            nodes: trie.nodes().iter().copied().map(FibNode).collect(),
            leaves: trie.leaves().to_vec(),
        }
    }

    /// Every group id a lookup can return.
    fn groups(&self) -> impl Iterator<Item = u32> + '_ {
        let direct = self
            .direct
            .iter()
            .filter(|&&d| d & LEAF_FLAG != 0)
            .map(|&d| d & !LEAF_FLAG);
        direct
            .chain(self.leaves.iter().copied())
            .filter(|&g| g != NO_ROUTE)
    }
}

/// The contents of every map for one set of tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// IPv4 trie.
    pub v4: Trie,
    /// IPv6 trie.
    pub v6: Trie,
    /// Bucket table of every group a route uses, by group id.
    pub groups: BTreeMap<u32, GroupBuckets>,
    /// Nexthops, by slot (slot 0 unused).
    pub nexthops: Vec<Nexthop>,
    /// Usable neighbours.
    pub neighbours: BTreeMap<IpKey, Mac>,
    /// Ports, by `PortId`.
    pub ports: BTreeMap<u16, Port>,
    /// Ingress interface index → `PortId`.
    pub ifindex_ports: BTreeMap<u32, u16>,
    /// Addresses of this host.
    pub local: BTreeSet<IpKey>,
    /// The filter over [`Snapshot::local`] (see `local_filter_bit`).
    pub local_filter: Vec<u64>,
    /// (port, IPv4 address) pairs ARP requests are answered for.
    pub arp: BTreeSet<ArpKey>,
    /// (port, IPv6 address) pairs neighbour solicitations are answered for.
    pub ndp: BTreeSet<NdpKey>,
    /// Security identity of source addresses.
    pub identities: BTreeMap<IpKey, u32>,
    /// Settings.
    pub config: Config,
    /// The service stage's tables (`None`: the stage is off).
    pub services: Option<ServiceMaps>,
}

/// The map key of an address.
pub fn ip_key(addr: IpAddr) -> IpKey {
    match addr {
        IpAddr::V4(a) => IpKey::v4(a.octets()),
        IpAddr::V6(a) => IpKey::v6(a.octets()),
    }
}

impl Snapshot {
    /// The map contents for `tables`, with each port's kernel interface index from `ifindex`.
    pub fn new(t: &Tables, ifindex: impl Fn(PortId) -> Option<u32>) -> Result<Self, Unsupported> {
        assert_eq!(router_core::fib::V4_DIRECT_BITS, V4_DIRECT_BITS);
        assert_eq!(router_core::fib::V6_DIRECT_BITS, V6_DIRECT_BITS);
        let tunnel = t.config.tunnel;
        let mut s = Snapshot {
            v4: Trie::of(t.fib.trie_v4()),
            v6: Trie::of(t.fib.trie_v6()),
            config: Config {
                hash_seed: t.config.hash_seed,
                hash_policy: match t.config.hash_policy {
                    HashPolicy::L3 => 0,
                    HashPolicy::L4 => 1,
                },
                tunnel: u8::from(tunnel.is_some()),
                vxlan_port: tunnel.map_or(0, |t| t.vxlan_port),
                tunnel_local: tunnel.map_or([0; 4], |t| t.local.octets()),
                geneve_port: tunnel.map_or(0, |t| t.geneve_port),
                inner_mac: tunnel.map_or([0; 6], |t| t.inner_mac.0),
                dsr: u8::from(tunnel.is_some_and(|t| t.dsr)),
                pad: [0; 3],
                pod_ports: [0; MAX_PORTS as usize / 32],
            },
            identities: t.identities.iter().map(|(&a, &v)| (ip_key(a), v)).collect(),
            ..Snapshot::default()
        };
        if let Some(tunnel) = tunnel {
            s.local.insert(IpKey::v4(tunnel.local.octets()));
        }
        for (&id, port) in t.ports {
            if u32::from(id.0) >= MAX_PORTS {
                return Err(Unsupported::PortId(id));
            }
            let index = ifindex(id).ok_or(Unsupported::NoIfindex(id))?;
            s.ports.insert(
                id.0,
                Port {
                    ifindex: index,
                    mac: port.addrs.mac.0,
                    mtu: port.mtu,
                },
            );
            s.ifindex_ports.insert(index, id.0);
            for a in port.addrs.owned.iter().chain(&port.addrs.announced) {
                s.local.insert(IpKey::v4(a.octets()));
                s.arp.insert(ArpKey {
                    port: id.0,
                    pad: [0; 2],
                    addr: a.octets(),
                });
            }
            for a in port.ipv6.owned.iter().chain(&port.ipv6.announced) {
                s.local.insert(IpKey::v6(a.octets()));
                s.ndp.insert(NdpKey {
                    port: id.0,
                    pad: [0; 2],
                    addr: a.octets(),
                });
            }
        }
        for (&addr, entry) in t.neighbours.entries() {
            if let Some(mac) = entry.mac() {
                s.neighbours.insert(ip_key(addr), Mac(mac.0));
            }
        }
        s.add_groups(t.fib, t.neighbours);
        s.collapse_single_groups();
        s.local_filter = vec![0; LOCAL_FILTER_WORDS as usize];
        for key in &s.local {
            let (word, bit) = local_filter_bit(key);
            s.local_filter[word as usize] |= bit;
        }
        Ok(s)
    }

    /// The same maps with `pods` the ports that face this node's pods
    /// (flow events name their sides by it).
    pub fn with_pod_ports(mut self, pods: &BTreeSet<PortId>) -> Self {
        for p in pods {
            if let Some(word) = self.config.pod_ports.get_mut(usize::from(p.0 / 32)) {
                *word |= 1 << (p.0 % 32);
            }
        }
        self
    }

    /// Flatten every group the tries reach into nexthop slots and bucket
    /// tables; gateways carry their neighbour's MAC when it is resolved, every
    /// nexthop a copy of its port.
    fn add_groups(&mut self, fib: &Fib, neighbours: &neighbour::Table) {
        let ids: BTreeSet<u32> = self.v4.groups().chain(self.v6.groups()).collect();
        self.nexthops.push(Nexthop::default());
        for id in ids {
            let group = fib
                .group(GroupId(id))
                .expect("the trie only holds live groups");
            let first = self.nexthops.len() as u32;
            for member in group.members() {
                self.nexthops.push(match member.kind {
                    NexthopKind::Gateway { addr, port } => {
                        let mac = neighbours.lookup(addr);
                        Nexthop {
                            kind: kind::GATEWAY,
                            port: port.0,
                            addr: ip_key(addr),
                            mac: mac.map_or([0; 6], |m| m.0),
                            resolved: u8::from(mac.is_some()),
                            ..Nexthop::default()
                        }
                    }
                    NexthopKind::Connected { port } => Nexthop {
                        kind: kind::CONNECTED,
                        port: port.0,
                        ..Nexthop::default()
                    },
                    NexthopKind::Blackhole => Nexthop {
                        kind: kind::BLACKHOLE,
                        ..Nexthop::default()
                    },
                    NexthopKind::Tunnel {
                        endpoint,
                        encap: e,
                        vni,
                    } => Nexthop {
                        kind: kind::TUNNEL,
                        encap: match e {
                            Encap::Vxlan => encap::VXLAN,
                            Encap::Geneve => encap::GENEVE,
                        },
                        // Headers carry 24 bits: the mask keeps configured VNIs
                        // apart from VNI_FROM_IDENTITY without changing the bytes sent.
                        vni: vni.map_or(VNI_FROM_IDENTITY, |v| v & 0x00ff_ffff),
                        addr: ip_key(endpoint),
                        ..Nexthop::default()
                    },
                });
            }
            let slots = self.nexthops.len();
            for n in &mut self.nexthops[first as usize..slots] {
                n.egress = self.ports.get(&n.port).copied().unwrap_or_default();
            }
            let mut table = GroupBuckets([first; BUCKETS]);
            if let Some(buckets) = group.buckets() {
                assert_eq!(buckets.as_slice().len(), BUCKETS);
                for (slot, &member) in table.0.iter_mut().zip(buckets.as_slice()) {
                    *slot = first + u32::from(member);
                }
            }
            self.groups.insert(id, table);
        }
    }

    /// Replace every leaf naming a group with one member by that member's
    /// slot marked [`SINGLE_NEXTHOP`], and drop those groups' bucket tables.
    fn collapse_single_groups(&mut self) {
        let single: BTreeMap<u32, u32> = self
            .groups
            .iter()
            .filter(|(_, t)| t.0.iter().all(|&slot| slot == t.0[0]))
            .map(|(&id, t)| (id, SINGLE_NEXTHOP | t.0[0]))
            .collect();
        let collapse = |v: u32| single.get(&v).copied().unwrap_or(v);
        for trie in [&mut self.v4, &mut self.v6] {
            for d in &mut trie.direct {
                if *d & LEAF_FLAG != 0 {
                    *d = LEAF_FLAG | collapse(*d & !LEAF_FLAG);
                }
            }
            for leaf in &mut trie.leaves {
                *leaf = collapse(*leaf);
            }
        }
        self.groups.retain(|id, _| !single.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::datapath::{Config as DpConfig, PortConfig};
    use router_core::fib::{Nexthop as FibNexthop, Protocol, Route};
    use router_core::neighbour;
    use smoltcp::wire::EthernetAddress;

    fn tables_with(
        routes: &[(&str, Vec<FibNexthop>)],
        f: impl FnOnce(&Tables) -> Result<Snapshot, Unsupported>,
    ) -> Result<Snapshot, Unsupported> {
        let mut fib = Fib::new();
        for (prefix, nexthops) in routes {
            fib.insert(
                prefix.parse().unwrap(),
                &Route::new(Protocol::Static, nexthops.clone()),
            );
        }
        let neighbours = neighbour::Table::new(neighbour::Config::default());
        let mut ports = BTreeMap::new();
        ports.insert(
            PortId(1),
            PortConfig {
                addrs: router_core::neighbour::arp::PortAddrs {
                    mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                    owned: vec!["10.0.0.1".parse().unwrap()],
                    announced: vec![],
                },
                ipv6: Default::default(),
                mtu: 1500,
            },
        );
        let identities = BTreeMap::new();
        let config = DpConfig::default();
        f(&Tables {
            fib: &fib,
            neighbours: &neighbours,
            ports: &ports,
            identities: &identities,
            config: &config,
        })
    }

    #[test]
    fn ecmp_groups_become_bucket_tables_of_slots() {
        let gw = |a: &str| FibNexthop::gateway(a.parse().unwrap(), PortId(1));
        let s = tables_with(
            &[("10.1.0.0/16", vec![gw("10.0.0.2"), gw("10.0.0.3")])],
            |t| Snapshot::new(t, |_| Some(7)),
        )
        .unwrap();
        let (&id, table) = s.groups.iter().next().unwrap();
        assert_eq!(s.groups.len(), 1);
        assert_eq!(s.nexthops.len(), 3);
        assert!(table.0.iter().all(|&slot| slot == 1 || slot == 2));
        assert_eq!(
            table.0.iter().filter(|&&slot| slot == 1).count(),
            BUCKETS / 2
        );
        assert_eq!(s.nexthops[1].kind, kind::GATEWAY);
        assert_eq!(s.nexthops[1].addr, IpKey::v4([10, 0, 0, 2]));
        assert_eq!(s.ifindex_ports.get(&7), Some(&1));
        assert!(s.local.contains(&IpKey::v4([10, 0, 0, 1])));
        assert!(id != NO_ROUTE);
    }

    #[test]
    fn tunnel_nexthops_carry_endpoint_encap_and_vni() {
        let tunnel = |encap, vni| FibNexthop {
            kind: NexthopKind::Tunnel {
                endpoint: "192.0.2.1".parse().unwrap(),
                encap,
                vni,
            },
            weight: 1,
        };
        let s = tables_with(
            &[
                ("10.1.0.0/16", vec![tunnel(Encap::Vxlan, None)]),
                ("10.2.0.0/16", vec![tunnel(Encap::Geneve, Some(7))]),
            ],
            |t| Snapshot::new(t, |_| Some(7)),
        )
        .unwrap();
        let hops = &s.nexthops[1..];
        assert!(hops.iter().all(|n| n.kind == kind::TUNNEL));
        assert!(hops.iter().all(|n| n.addr == IpKey::v4([192, 0, 2, 1])));
        assert!(hops.contains(&Nexthop {
            kind: kind::TUNNEL,
            encap: encap::VXLAN,
            port: 0,
            vni: VNI_FROM_IDENTITY,
            addr: IpKey::v4([192, 0, 2, 1]),
            ..Nexthop::default()
        }));
        assert!(hops.iter().any(|n| n.encap == encap::GENEVE && n.vni == 7));
    }

    #[test]
    fn identity_world_is_router_cores() {
        assert_eq!(
            nexthop_offload_bpf_common::IDENTITY_WORLD,
            router_core::datapath::pipeline::IDENTITY_WORLD
        );
    }
}
