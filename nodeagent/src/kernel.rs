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
use std::process::Command;

use ipnet::IpNet;
use router_core::PortId;
use router_core::datapath::{Config, OwnedTables, PortConfig};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour::{self, arp::PortAddrs, ndp::PortAddrsV6};
use serde_json::Value;
use smoltcp::wire::EthernetAddress;

/// One interface: what `ip -json addr show` says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Kernel interface index.
    pub ifindex: u32,
    /// Name.
    pub name: String,
    /// MAC (all zero for interfaces without one).
    pub mac: EthernetAddress,
    /// MTU.
    pub mtu: u16,
    /// IPv4 addresses.
    pub v4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub v6: Vec<Ipv6Addr>,
}

/// One route of the main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination.
    pub prefix: IpNet,
    /// Metric (lower wins).
    pub metric: u32,
    /// What the route does.
    pub target: Target,
}

/// What a kernel route does with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Unicast through these (gateway or on-link, device, weight) hops.
    Unicast(Vec<Hop>),
    /// `blackhole`: dropped.
    Blackhole,
    /// Anything the kernel answers itself (`unreachable`, `prohibit`, `local`, …).
    Kernel,
}

/// One nexthop of a unicast route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Gateway, or `None` for an on-link destination.
    pub gateway: Option<IpAddr>,
    /// Device name.
    pub dev: String,
    /// ECMP weight.
    pub weight: u16,
}

/// A resolved neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Its address.
    pub addr: IpAddr,
    /// Device name.
    pub dev: String,
    /// Its MAC.
    pub mac: EthernetAddress,
}

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

fn field<'a>(entry: &'a Value, what: &str, i: usize, key: &str) -> Result<&'a str, String> {
    entry
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: entry {i} has no \"{key}\""))
}

fn entries(text: &str, what: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Array(v)) => Ok(v),
        Ok(_) => Err(format!("{what}: expected a JSON array")),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn mac(text: &str) -> Option<EthernetAddress> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).ok())
        .collect::<Option<_>>()?;
    (bytes.len() == 6).then(|| EthernetAddress::from_bytes(&bytes))
}

/// Parse `ip -json addr show`.
pub fn parse_links(text: &str) -> Result<Vec<Link>, String> {
    let what = "ip -json addr show";
    entries(text, what)?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = field(e, what, i, "ifname")?.to_string();
            let ifindex = e
                .get("ifindex")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("{what}: {name} has no ifindex"))?;
            let mtu = e.get("mtu").and_then(Value::as_u64).unwrap_or(1500);
            let mac = e
                .get("address")
                .and_then(Value::as_str)
                .and_then(mac)
                .unwrap_or(EthernetAddress([0; 6]));
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for a in e
                .get("addr_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match a.get("local").and_then(Value::as_str).map(str::parse) {
                    Some(Ok(IpAddr::V4(addr))) => v4.push(addr),
                    Some(Ok(IpAddr::V6(addr))) => v6.push(addr),
                    Some(Err(_)) => return Err(format!("{what}: {name}: bad address {a}")),
                    None => {}
                }
            }
            Ok(Link {
                ifindex,
                name,
                mac,
                mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
                v4,
                v6,
            })
        })
        .collect()
}

fn prefix(dst: &str, v6: bool) -> Result<IpNet, String> {
    match dst {
        "default" if v6 => Ok("::/0".parse().expect("valid")),
        "default" => Ok("0.0.0.0/0".parse().expect("valid")),
        _ if dst.contains('/') => dst.parse().map_err(|_| format!("bad destination {dst}")),
        _ => dst
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad destination {dst}")),
    }
}

fn hop(e: &Value, what: &str, i: usize) -> Result<Hop, String> {
    let gateway = match e.get("gateway").and_then(Value::as_str) {
        Some(g) => Some(
            g.parse()
                .map_err(|_| format!("{what}: entry {i}: bad gateway {g}"))?,
        ),
        None => None,
    };
    let weight = e.get("weight").and_then(Value::as_u64).unwrap_or(1);
    Ok(Hop {
        gateway,
        dev: field(e, what, i, "dev")?.to_string(),
        weight: u16::try_from(weight).unwrap_or(u16::MAX).max(1),
    })
}

/// Parse `ip -json -4|-6 route show table main`.
pub fn parse_routes(text: &str, v6: bool) -> Result<Vec<KernelRoute>, String> {
    let what = if v6 {
        "ip -json -6 route show table main"
    } else {
        "ip -json -4 route show table main"
    };
    entries(text, what)?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let prefix = prefix(field(e, what, i, "dst")?, v6)
                .map_err(|m| format!("{what}: entry {i}: {m}"))?;
            let metric = e.get("metric").and_then(Value::as_u64).unwrap_or(0);
            let target = match e.get("type").and_then(Value::as_str).unwrap_or("unicast") {
                "unicast" => match e.get("nexthops").and_then(Value::as_array) {
                    Some(hops) => Target::Unicast(
                        hops.iter()
                            .map(|h| hop(h, what, i))
                            .collect::<Result<_, _>>()?,
                    ),
                    None => Target::Unicast(vec![hop(e, what, i)?]),
                },
                "blackhole" => Target::Blackhole,
                _ => Target::Kernel,
            };
            Ok(KernelRoute {
                prefix,
                metric: u32::try_from(metric).unwrap_or(u32::MAX),
                target,
            })
        })
        .collect()
}

/// The node's addresses from `ip -json route show table local` (`type local`).
pub fn parse_local(text: &str, v6: bool) -> Result<Vec<IpAddr>, String> {
    let what = "ip -json route show table local";
    let mut out = Vec::new();
    for (i, e) in entries(text, what)?.iter().enumerate() {
        if e.get("type").and_then(Value::as_str) != Some("local") {
            continue;
        }
        let net =
            prefix(field(e, what, i, "dst")?, v6).map_err(|m| format!("{what}: entry {i}: {m}"))?;
        if net.prefix_len() == net.max_prefix_len() {
            out.push(net.addr());
        }
    }
    Ok(out)
}

/// Parse `ip -json neigh show`: entries with a MAC that the kernel would use.
pub fn parse_neighbours(text: &str) -> Result<Vec<Neighbour>, String> {
    let what = "ip -json neigh show";
    let mut out = Vec::new();
    for (i, e) in entries(text, what)?.iter().enumerate() {
        let states: Vec<&str> = e
            .get("state")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let usable = ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"];
        let Some(lladdr) = e.get("lladdr").and_then(Value::as_str) else {
            continue;
        };
        if !states.iter().any(|s| usable.contains(s)) {
            continue;
        }
        let dst = field(e, what, i, "dst")?;
        out.push(Neighbour {
            addr: dst
                .parse()
                .map_err(|_| format!("{what}: entry {i}: bad address {dst}"))?,
            dev: field(e, what, i, "dev")?.to_string(),
            mac: mac(lladdr).ok_or_else(|| format!("{what}: entry {i}: bad lladdr {lladdr}"))?,
        });
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("ip {}: {e}", args.join(" ")))
}

impl KernelState {
    /// Read the state of the calling process's network namespace.
    pub fn read() -> Result<Self, String> {
        let mut routes = parse_routes(
            &ip(&["-json", "-4", "route", "show", "table", "main"])?,
            false,
        )?;
        routes.extend(parse_routes(
            &ip(&["-json", "-6", "route", "show", "table", "main"])?,
            true,
        )?);
        let mut local = parse_local(
            &ip(&["-json", "-4", "route", "show", "table", "local"])?,
            false,
        )?;
        local.extend(parse_local(
            &ip(&["-json", "-6", "route", "show", "table", "local"])?,
            true,
        )?);
        let policy = std::fs::read_to_string("/proc/sys/net/ipv4/fib_multipath_hash_policy")
            .unwrap_or_default();
        Ok(KernelState {
            links: parse_links(&ip(&["-json", "addr", "show"])?)?,
            routes,
            local,
            neighbours: parse_neighbours(&ip(&["-json", "neigh", "show"])?)?,
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
        let missing = HostTables::new(&state(), &["eth7".into()]).unwrap_err();
        assert_eq!(missing, "interface eth7 does not exist");
    }
}
