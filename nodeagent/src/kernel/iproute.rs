//! iproute2's JSON output (`ip -json`) read into plain values: interfaces
//! and addresses, routes, local addresses, neighbours.
//!
//! Owns the parsing only, and every refusal names the command and the entry:
//! turning these into the datapath's tables is [`super`]'s. Self-contained
//! (serde_json, ipnet, smoltcp's MAC type), so the fuzz target builds it on
//! its own.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
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

/// A route's destination, which must be of the family asked for (`-6`).
fn prefix(dst: &str, v6: bool) -> Result<IpNet, String> {
    let net = match dst {
        "default" if v6 => "::/0".parse().expect("valid"),
        "default" => "0.0.0.0/0".parse().expect("valid"),
        _ if dst.contains('/') => dst.parse().map_err(|_| format!("bad destination {dst}"))?,
        _ => dst
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("bad destination {dst}"))?,
    };
    match (net, v6) {
        (IpNet::V4(_), false) | (IpNet::V6(_), true) => Ok(net),
        _ => Err(format!(
            "destination {dst} is not an IPv{} prefix",
            if v6 { 6 } else { 4 }
        )),
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
