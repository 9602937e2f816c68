//! The node's kernel networking state as router-core tables, for the XDP
//! datapath to mirror: interfaces and addresses, the main routing table and
//! the neighbour table, read from iproute2's JSON output (`ip -json`).
//!
//! Owns the translation only. Ports are the interfaces the datapath is
//! attached to; a route through any other interface, and an `unreachable` or
//! `prohibit` route, becomes a *kernel* nexthop (a gateway at the unspecified
//! address, which never resolves), so its packets are passed to the kernel
//! exactly as a neighbour miss is, and the kernel forwards or answers them.
//! Every address of the node (the `local` table) is a host route to the kernel
//! too. Which routes win is the kernel's business: of several routes for one
//! prefix only the lowest metric is mirrored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;

use ipnet::IpNet;
use router_core::PortId;
use router_core::datapath::{Config, OwnedTables, PortConfig};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour::{self, arp::PortAddrs, ndp::PortAddrsV6};

mod iproute;

pub use iproute::{
    Hop, KernelRoute, Link, Neighbour, Target, parse_links, parse_local, parse_neighbours,
    parse_routes,
};

/// Everything read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Interfaces.
    pub links: Vec<Link>,
    /// Main-table routes, IPv4 then IPv6.
    pub routes: Vec<KernelRoute>,
    /// Addresses of the node (`type local` routes of the local table).
    pub local: Vec<IpAddr>,
    /// Resolved neighbours.
    pub neighbours: Vec<Neighbour>,
    /// `net.ipv4.fib_multipath_hash_policy`.
    pub hash_policy: HashPolicy,
}

/// Run `ip ARGS` (inside `netns` when given); its standard output.
pub fn ip(netns: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut command = match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", path.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let out = command
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}{}: {}",
            args.join(" "),
            netns.map_or(String::new(), |p| format!(" in {}", p.display())),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl KernelState {
    /// Read the state of the calling process's network namespace.
    pub fn read() -> Result<Self, String> {
        let mut routes = parse_routes(
            &ip(None, &["-json", "-4", "route", "show", "table", "main"])?,
            false,
        )?;
        routes.extend(parse_routes(
            &ip(None, &["-json", "-6", "route", "show", "table", "main"])?,
            true,
        )?);
        let mut local = parse_local(
            &ip(None, &["-json", "-4", "route", "show", "table", "local"])?,
            false,
        )?;
        local.extend(parse_local(
            &ip(None, &["-json", "-6", "route", "show", "table", "local"])?,
            true,
        )?);
        let policy = std::fs::read_to_string("/proc/sys/net/ipv4/fib_multipath_hash_policy")
            .unwrap_or_default();
        Ok(KernelState {
            links: parse_links(&ip(None, &["-json", "addr", "show"])?)?,
            routes,
            local,
            neighbours: parse_neighbours(&ip(None, &["-json", "neigh", "show"])?)?,
            hash_policy: if policy.trim() == "0" {
                HashPolicy::L3
            } else {
                HashPolicy::L4
            },
        })
    }
}

/// router-core tables built from a [`KernelState`] for the ports `ports`.
#[derive(Debug)]
pub struct HostTables {
    /// The tables: ports numbered in the order given, no identities (a
    /// mirrored node does not encapsulate).
    pub owned: OwnedTables,
    /// Kernel interface index of every port.
    pub ifindex: BTreeMap<PortId, u32>,
}

/// The nexthop that hands a packet to the kernel: a gateway that never resolves.
fn kernel_nexthop(v6: bool) -> Nexthop {
    let unspecified = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    Nexthop::gateway(unspecified, PortId(0))
}

impl HostTables {
    /// Answer ARP (IPv4) and neighbour solicitations (IPv6) for the
    /// entries of `announced` on their ports (`ports` as given to
    /// [`HostTables::new`]).
    pub fn announce(&mut self, ports: &[String], announced: &crate::l2::Announced) {
        for entry in announced {
            let Some(i) = ports.iter().position(|p| *p == entry.interface) else {
                continue;
            };
            let Some(config) = self.owned.ports.get_mut(&PortId(i as u16)) else {
                continue;
            };
            match entry.ip {
                IpAddr::V4(ip) => config.addrs.announced.push(ip),
                IpAddr::V6(ip) => config.ipv6.announced.push(ip),
            }
        }
    }

    /// The tables for the ports named `ports` (at least one, all present).
    pub fn new(state: &KernelState, ports: &[String]) -> Result<Self, String> {
        if ports.is_empty() {
            return Err("no interfaces to attach to".into());
        }
        let mut by_name = BTreeMap::new();
        let mut port_configs = BTreeMap::new();
        let mut ifindex = BTreeMap::new();
        for (i, name) in ports.iter().enumerate() {
            let link = state
                .links
                .iter()
                .find(|l| &l.name == name)
                .ok_or_else(|| format!("interface {name} does not exist"))?;
            let id = PortId(u16::try_from(i).map_err(|_| "too many interfaces".to_string())?);
            by_name.insert(name.as_str(), id);
            ifindex.insert(id, link.ifindex);
            port_configs.insert(
                id,
                PortConfig {
                    addrs: PortAddrs {
                        mac: link.mac,
                        owned: link.v4.clone(),
                        announced: Vec::new(),
                    },
                    ipv6: PortAddrsV6 {
                        owned: link.v6.clone(),
                        announced: Vec::new(),
                    },
                    mtu: link.mtu,
                },
            );
        }
        let mut best: BTreeMap<IpNet, &KernelRoute> = BTreeMap::new();
        for r in &state.routes {
            let prefix = r.prefix.trunc();
            if best.get(&prefix).is_none_or(|b| r.metric < b.metric) {
                best.insert(prefix, r);
            }
        }
        let mut fib = Fib::new();
        for (prefix, r) in best {
            let v6 = matches!(prefix, IpNet::V6(_));
            let hops: Option<Vec<Nexthop>> = match &r.target {
                Target::Blackhole => Some(vec![Nexthop {
                    kind: NexthopKind::Blackhole,
                    weight: 1,
                }]),
                Target::Kernel => None,
                Target::Unicast(hops) => hops
                    .iter()
                    .map(|h| {
                        let port = *by_name.get(h.dev.as_str())?;
                        let kind = match h.gateway {
                            Some(addr) => NexthopKind::Gateway { addr, port },
                            None => NexthopKind::Connected { port },
                        };
                        Some(Nexthop {
                            kind,
                            weight: h.weight,
                        })
                    })
                    .collect(),
            };
            let hops = hops.unwrap_or_else(|| vec![kernel_nexthop(v6)]);
            fib.insert(prefix, &Route::new(Protocol::Kernel, hops));
        }
        for &addr in &state.local {
            fib.insert(
                IpNet::from(addr),
                &Route::new(Protocol::Kernel, vec![kernel_nexthop(addr.is_ipv6())]),
            );
        }
        let mut neighbours = neighbour::Table::new(neighbour::Config::default());
        for n in &state.neighbours {
            if let Some(&port) = by_name.get(n.dev.as_str()) {
                neighbours.insert_permanent(n.addr, port, n.mac);
            }
        }
        Ok(HostTables {
            owned: OwnedTables {
                fib,
                neighbours,
                ports: port_configs,
                identities: BTreeMap::new(),
                config: Config {
                    hash_policy: state.hash_policy,
                    hash_seed: 0,
                    tunnel: None,
                },
            },
            ifindex,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_core::datapath::{Reason, process};

    // What `ip -json` (iproute2 6.1) printed for a namespace with r0
    // 10.71.1.1/24 and r1 10.71.2.1/24 (veths), an ECMP route, two metrics for
    // one prefix, a blackhole and an unreachable route; trimmed, plus an
    // unmanaged dummy0 with a route and an address, and a few neighbours.
    const LINKS: &str = r#"[{"ifindex":1,"ifname":"lo","mtu":65536,"address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
        {"ifindex":7,"ifname":"r0","mtu":1500,"address":"02:00:00:00:00:01","addr_info":[{"family":"inet","local":"10.71.1.1","prefixlen":24}]},
        {"ifindex":9,"ifname":"r1","mtu":1500,"address":"02:00:00:00:00:02","addr_info":[{"family":"inet","local":"10.71.2.1","prefixlen":24}]},
        {"ifindex":11,"ifname":"dummy0","mtu":1500,"address":"02:00:00:00:00:03","addr_info":[]}]"#;
    const ROUTES: &str = r#"[{"dst":"10.71.1.0/24","dev":"r0","protocol":"kernel","scope":"link","prefsrc":"10.71.1.1","flags":[]},
        {"dst":"10.71.2.0/24","dev":"r1","protocol":"kernel","scope":"link","prefsrc":"10.71.2.1","flags":[]},
        {"dst":"10.80.0.0/16","flags":[],"nexthops":[{"gateway":"10.71.1.2","dev":"r0","weight":1,"flags":[]},{"gateway":"10.71.2.2","dev":"r1","weight":1,"flags":[]}]},
        {"dst":"10.80.5.0/24","gateway":"10.71.2.2","dev":"r1","metric":200,"flags":[]},
        {"dst":"10.80.5.0/24","gateway":"10.71.1.2","dev":"r0","metric":100,"flags":[]},
        {"type":"blackhole","dst":"10.90.0.0/16","flags":[]},
        {"type":"unreachable","dst":"10.91.0.0/16","flags":[]},
        {"dst":"10.92.0.0/16","dev":"dummy0","scope":"link","flags":[]}]"#;
    const LOCAL: &str = r#"[{"type":"local","dst":"10.71.1.1","dev":"r0","protocol":"kernel","scope":"host","prefsrc":"10.71.1.1","flags":[]},
        {"type":"broadcast","dst":"10.71.1.255","dev":"r0","protocol":"kernel","scope":"link","prefsrc":"10.71.1.1","flags":[]},
        {"type":"local","dst":"127.0.0.0/8","dev":"lo","protocol":"kernel","scope":"host","prefsrc":"127.0.0.1","flags":[]},
        {"type":"local","dst":"10.99.0.1","dev":"dummy0","protocol":"kernel","scope":"host","prefsrc":"10.99.0.1","flags":[]}]"#;
    const NEIGHBOURS: &str = r#"[{"dst":"10.71.1.2","dev":"r0","lladdr":"02:aa:00:00:00:01","state":["REACHABLE"]},
        {"dst":"10.71.2.2","dev":"r1","lladdr":"02:bb:00:00:00:01","state":["STALE"]},
        {"dst":"10.71.2.9","dev":"r1","state":["FAILED"]},
        {"dst":"10.71.2.8","dev":"r1","lladdr":"02:bb:00:00:00:08","state":["INCOMPLETE"]}]"#;

    fn state() -> KernelState {
        KernelState {
            links: parse_links(LINKS).unwrap(),
            routes: parse_routes(ROUTES, false).unwrap(),
            local: parse_local(LOCAL, false).unwrap(),
            neighbours: parse_neighbours(NEIGHBOURS).unwrap(),
            hash_policy: HashPolicy::L4,
        }
    }

    fn udp_to(t: &HostTables, dst: [u8; 4]) -> Reason {
        let mut frame = Vec::new();
        frame.extend_from_slice(&t.owned.ports[&PortId(0)].addrs.mac.0);
        frame.extend_from_slice(&[2, 0xcc, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[3] = 28;
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 71, 1, 2]);
        ip[16..20].copy_from_slice(&dst);
        let check = router_core::datapath::checksum::compute(&ip[..20]);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        ip[20..28].copy_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        frame.extend_from_slice(&ip);
        process(&t.owned.tables(), PortId(0), &frame, &mut Vec::new()).reason
    }

    #[test]
    fn kernel_json_parses() {
        let s = state();
        assert_eq!(s.links.len(), 4);
        assert_eq!(s.links[1].v4, vec![Ipv4Addr::new(10, 71, 1, 1)]);
        assert_eq!(s.routes.len(), 8);
        assert_eq!(s.local.len(), 2, "host addresses only: {:?}", s.local);
        assert_eq!(s.neighbours.len(), 2, "usable entries only");
        let Target::Unicast(hops) = &s.routes[2].target else {
            panic!("multipath route")
        };
        assert_eq!(hops.len(), 2);
    }

    #[test]
    fn mirrored_routes_forward_drop_or_go_to_the_kernel() {
        let t = HostTables::new(&state(), &["r0".into(), "r1".into()]).unwrap();
        assert_eq!(t.ifindex[&PortId(1)], 9);
        let cases = [
            ([10, 71, 2, 2], Reason::Forwarded, "connected, resolved"),
            (
                [10, 71, 2, 7],
                Reason::NeighbourMiss,
                "connected, unresolved",
            ),
            ([10, 80, 1, 1], Reason::Forwarded, "ECMP"),
            ([10, 80, 5, 1], Reason::Forwarded, "lowest metric"),
            ([10, 90, 0, 1], Reason::Blackhole, "blackhole"),
            ([10, 91, 0, 1], Reason::NeighbourMiss, "unreachable: kernel"),
            (
                [10, 92, 0, 1],
                Reason::NeighbourMiss,
                "unmanaged device: kernel",
            ),
            (
                [10, 99, 0, 1],
                Reason::NeighbourMiss,
                "another address of the node: kernel",
            ),
            ([10, 71, 1, 1], Reason::Local, "this port's address"),
            ([192, 0, 2, 1], Reason::NoRoute, "no route"),
        ];
        for (dst, reason, why) in cases {
            assert_eq!(udp_to(&t, dst), reason, "{why}");
        }
        let lowest = t.owned.fib.lookup("10.80.5.1".parse().unwrap()).unwrap();
        assert_eq!(
            t.owned.fib.group(lowest).unwrap().members(),
            [Nexthop::gateway("10.71.1.2".parse().unwrap(), PortId(0))]
        );
    }

    #[test]
    fn bad_input_names_the_command_and_entry() {
        let e = parse_routes(
            r#"[{"dst":"10.0.0.0/8","dev":"r0"},{"dst":"nonsense","dev":"r0"}]"#,
            false,
        )
        .unwrap_err();
        assert!(
            e.contains("route show") && e.contains("entry 1") && e.contains("nonsense"),
            "{e}"
        );
        assert!(parse_links("{").unwrap_err().contains("ip -json addr show"));
        let e = parse_routes(r#"[{"dst":"10.0.0.0/8","dev":"r0"}]"#, true).unwrap_err();
        assert_eq!(
            e,
            "ip -json -6 route show table main: entry 0: destination 10.0.0.0/8 is not an IPv6 prefix"
        );
        let missing = HostTables::new(&state(), &["eth7".into()]).unwrap_err();
        assert_eq!(missing, "interface eth7 does not exist");
    }
}
