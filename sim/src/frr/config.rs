//! The subset of FRR's configuration language the seed labs' ToR router uses.
//!
//! Owns parsing and checking `frr.conf` text into [`FrrConfig`], and printing it
//! back as `show running-config` does. Accepted: `frr version|defaults`,
//! `hostname`, `log …`, `service integrated-vtysh-config`, `ip route`, `router
//! bgp ASN` with `bgp router-id`, `[no] bgp ebgp-requires-policy`, `bgp
//! graceful-restart`, `bgp bestpath as-path multipath-relax`, `maximum-paths N`,
//! `network PREFIX`, `neighbor NAME peer-group`, `neighbor NAME|IP remote-as
//! external|internal|ASN`, `neighbor IP peer-group NAME`, `neighbor NAME|IP
//! password|ebgp-multihop|activate|description`, and `address-family ipv4|ipv6
//! unicast` … `exit-address-family` blocks. Anything else is an error naming the
//! line and the reason. Running BGP from it is the router role's job.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// An address family block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `address-family ipv4 unicast` (also the default outside any block).
    Ipv4Unicast,
    /// `address-family ipv6 unicast`.
    Ipv6Unicast,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Ipv4Unicast => "ipv4 unicast",
            Family::Ipv6Unicast => "ipv6 unicast",
        }
    }
}

/// `remote-as`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteAs {
    /// Any AS but ours.
    External,
    /// Our AS.
    Internal,
    /// Exactly this AS.
    Asn(u32),
}

impl fmt::Display for RemoteAs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteAs::External => f.write_str("external"),
            RemoteAs::Internal => f.write_str("internal"),
            RemoteAs::Asn(a) => write!(f, "{a}"),
        }
    }
}

/// Settings of a neighbor or peer group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerSettings {
    /// `remote-as`.
    pub remote_as: Option<RemoteAs>,
    /// The peer group a neighbor belongs to.
    pub peer_group: Option<String>,
    /// TCP MD5 password.
    pub password: Option<String>,
    /// `ebgp-multihop` TTL.
    pub ebgp_multihop: Option<u8>,
    /// `description`.
    pub description: Option<String>,
    /// Families explicitly activated.
    pub activate: Vec<Family>,
}

/// `router bgp ASN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    /// Local AS.
    pub asn: u32,
    /// `bgp router-id`.
    pub router_id: Option<Ipv4Addr>,
    /// `[no] bgp ebgp-requires-policy` (FRR 8's default: required).
    pub ebgp_requires_policy: bool,
    /// `bgp graceful-restart`.
    pub graceful_restart: bool,
    /// `bgp bestpath as-path multipath-relax`.
    pub multipath_relax: bool,
    /// `maximum-paths N` per family (unset: 1).
    pub maximum_paths: BTreeMap<Family, u16>,
    /// `network` statements per family, in order.
    pub networks: Vec<(Family, IpNet)>,
    /// Peer groups by name.
    pub peer_groups: BTreeMap<String, PeerSettings>,
    /// Neighbors by address, in configuration order.
    pub neighbors: Vec<(IpAddr, PeerSettings)>,
}

impl BgpConfig {
    /// `maximum-paths` for a family (1 when unset).
    pub fn maximum_paths(&self, family: Family) -> u16 {
        self.maximum_paths.get(&family).copied().unwrap_or(1)
    }

    /// A neighbor's settings merged with its peer group's (the neighbor's win).
    pub fn effective(&self, addr: IpAddr) -> Option<PeerSettings> {
        let (_, n) = self.neighbors.iter().find(|(a, _)| *a == addr)?;
        let group = n.peer_group.as_ref().and_then(|g| self.peer_groups.get(g));
        let mut s = group.cloned().unwrap_or_default();
        s.peer_group = n.peer_group.clone();
        s.remote_as = n.remote_as.or(s.remote_as);
        s.password = n.password.clone().or(s.password);
        s.ebgp_multihop = n.ebgp_multihop.or(s.ebgp_multihop);
        s.description = n.description.clone().or(s.description);
        s.activate.extend(n.activate.iter().copied());
        Some(s)
    }
}

/// A whole `frr.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrrConfig {
    /// `hostname`.
    pub hostname: Option<String>,
    /// `ip route PREFIX GATEWAY` (staticd).
    pub static_routes: Vec<(IpNet, IpAddr)>,
    /// `router bgp`.
    pub bgp: Option<BgpConfig>,
}

/// A line FRR would reject (or that this subset does not support).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number.
    pub line: usize,
    /// The line's text.
    pub text: String,
    /// Why it is rejected.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {:?}: {}", self.line, self.text, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn asn(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|&a| a != 0)
        .ok_or_else(|| format!("{s:?} is not an AS number (1..4294967295)"))
}

impl FrrConfig {
    /// Parse `frr.conf` text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut cfg = FrrConfig::default();
        let mut in_bgp = false;
        let mut family: Option<Family> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |reason: String| ConfigError {
                line: i + 1,
                text: line.to_string(),
                reason,
            };
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(bgp) = cfg.bgp.as_mut().filter(|_| in_bgp) {
                match bgp_line(bgp, &words, &mut family) {
                    Ok(true) => continue,
                    Ok(false) => {
                        if family.is_some() {
                            return Err(err("not allowed inside an address-family block".into()));
                        }
                        in_bgp = false;
                    }
                    Err(reason) => return Err(err(reason)),
                }
            }
            match words.as_slice() {
                ["frr", "version" | "defaults", ..]
                | ["log", ..]
                | ["service", "integrated-vtysh-config"] => {}
                ["line", "vty"] | ["end"] | ["exit"] => {}
                ["hostname", name] => cfg.hostname = Some(name.to_string()),
                ["ip" | "ipv6", "route", prefix, gw] => {
                    let p: IpNet = prefix
                        .parse()
                        .map_err(|_| err(format!("{prefix:?} is not a prefix")))?;
                    let g: IpAddr = gw
                        .parse()
                        .map_err(|_| err(format!("{gw:?} is not a gateway address")))?;
                    cfg.static_routes.push((p.trunc(), g));
                }
                ["router", "bgp", a] => {
                    if cfg.bgp.is_some() {
                        return Err(err("only one `router bgp` instance is supported".into()));
                    }
                    cfg.bgp = Some(BgpConfig {
                        asn: asn(a).map_err(err)?,
                        router_id: None,
                        ebgp_requires_policy: true,
                        graceful_restart: false,
                        multipath_relax: false,
                        maximum_paths: BTreeMap::new(),
                        networks: Vec::new(),
                        peer_groups: BTreeMap::new(),
                        neighbors: Vec::new(),
                    });
                    in_bgp = true;
                }
                _ => {
                    return Err(err(
                        "not supported by nexthop's FRR subset (see docs/labs.md)".into(),
                    ));
                }
            }
        }
        if family.is_some() {
            return Err(ConfigError {
                line: text.lines().count(),
                text: String::new(),
                reason: "address-family block not closed with exit-address-family".into(),
            });
        }
        if let Some(bgp) = &cfg.bgp {
            for (addr, n) in &bgp.neighbors {
                if bgp.effective(*addr).and_then(|s| s.remote_as).is_none() {
                    // The first line naming it, read as the parser reads
                    // lines (words, the address in any spelling it takes).
                    let at = text
                        .lines()
                        .position(|l| {
                            let mut words = l.split_whitespace();
                            words.next() == Some("neighbor")
                                && words.next().and_then(|w| w.parse().ok()) == Some(*addr)
                        })
                        .map_or(1, |p| p + 1);
                    return Err(ConfigError {
                        line: at,
                        text: format!("neighbor {addr}"),
                        reason: format!(
                            "neighbor {addr} has no remote-as{}",
                            n.peer_group
                                .as_ref()
                                .map_or(String::new(), |g| format!(" (nor has peer-group {g})"))
                        ),
                    });
                }
            }
        }
        Ok(cfg)
    }

    /// The configuration as `show running-config` prints it.
    pub fn running_config(&self) -> String {
        let mut s = String::from(
            "Building configuration...\n\nCurrent configuration:\n!\nfrr version 8.4.4\nfrr defaults traditional\n",
        );
        if let Some(h) = &self.hostname {
            let _ = writeln!(s, "hostname {h}");
        }
        s.push_str("service integrated-vtysh-config\n!\n");
        for (p, g) in &self.static_routes {
            let _ = writeln!(
                s,
                "{} route {p} {g}",
                if p.addr().is_ipv4() { "ip" } else { "ipv6" }
            );
        }
        if !self.static_routes.is_empty() {
            s.push_str("!\n");
        }
        if let Some(b) = &self.bgp {
            let _ = writeln!(s, "router bgp {}", b.asn);
            if let Some(id) = b.router_id {
                let _ = writeln!(s, " bgp router-id {id}");
            }
            if b.graceful_restart {
                s.push_str(" bgp graceful-restart\n");
            }
            if !b.ebgp_requires_policy {
                s.push_str(" no bgp ebgp-requires-policy\n");
            }
            if b.multipath_relax {
                s.push_str(" bgp bestpath as-path multipath-relax\n");
            }
            for (name, g) in &b.peer_groups {
                let _ = writeln!(s, " neighbor {name} peer-group");
                peer_lines(&mut s, name, g);
            }
            for (addr, n) in &b.neighbors {
                if let Some(g) = &n.peer_group {
                    let _ = writeln!(s, " neighbor {addr} peer-group {g}");
                }
                peer_lines(&mut s, &addr.to_string(), n);
            }
            for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
                let nets: Vec<&IpNet> = b
                    .networks
                    .iter()
                    .filter(|(f, _)| *f == fam)
                    .map(|(_, n)| n)
                    .collect();
                let paths = b.maximum_paths.get(&fam);
                if nets.is_empty() && paths.is_none() {
                    continue;
                }
                let _ = writeln!(s, " !\n address-family {}", fam.name());
                for n in nets {
                    let _ = writeln!(s, "  network {n}");
                }
                if let Some(p) = paths {
                    let _ = writeln!(s, "  maximum-paths {p}");
                }
                s.push_str(" exit-address-family\n");
            }
            s.push_str("exit\n!\n");
        }
        s.push_str("end\n");
        s
    }
}

fn peer_lines(s: &mut String, name: &str, p: &PeerSettings) {
    if let Some(r) = p.remote_as {
        let _ = writeln!(s, " neighbor {name} remote-as {r}");
    }
    if let Some(d) = &p.description {
        let _ = writeln!(s, " neighbor {name} description {d}");
    }
    if let Some(t) = p.ebgp_multihop {
        let _ = writeln!(s, " neighbor {name} ebgp-multihop {t}");
    }
    if let Some(pw) = &p.password {
        let _ = writeln!(s, " neighbor {name} password {pw}");
    }
}

/// Apply one line inside `router bgp`; `Ok(false)` if the line ends the block.
fn bgp_line(
    bgp: &mut BgpConfig,
    words: &[&str],
    family: &mut Option<Family>,
) -> Result<bool, String> {
    let fam = family.unwrap_or(Family::Ipv4Unicast);
    match words {
        ["bgp", "router-id", id] => {
            bgp.router_id = Some(
                id.parse()
                    .map_err(|_| format!("{id:?} is not an IPv4 router-id"))?,
            );
        }
        ["no", "bgp", "ebgp-requires-policy"] => bgp.ebgp_requires_policy = false,
        ["bgp", "ebgp-requires-policy"] => bgp.ebgp_requires_policy = true,
        ["bgp", "graceful-restart"] => bgp.graceful_restart = true,
        ["bgp", "bestpath", "as-path", "multipath-relax"] => bgp.multipath_relax = true,
        ["maximum-paths", n] => {
            let n: u16 = n
                .parse()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| format!("maximum-paths {n:?} is not 1..64"))?;
            bgp.maximum_paths.insert(fam, n);
        }
        ["network", p] => {
            let net: IpNet = p.parse().map_err(|_| format!("{p:?} is not a prefix"))?;
            if net != net.trunc() {
                return Err(format!("{p:?} has host bits set"));
            }
            bgp.networks.push((fam, net));
        }
        ["address-family", afi, "unicast"] if family.is_none() => {
            *family = Some(match *afi {
                "ipv4" => Family::Ipv4Unicast,
                "ipv6" => Family::Ipv6Unicast,
                other => {
                    return Err(format!(
                        "address family {other:?} is not supported (ipv4, ipv6)"
                    ));
                }
            });
        }
        ["exit-address-family"] if family.is_some() => *family = None,
        ["neighbor", name, rest @ ..] => neighbor_line(bgp, name, rest, fam)?,
        _ if family.is_some() => return Err("not supported inside an address-family block".into()),
        _ => return Ok(false),
    }
    Ok(true)
}

fn neighbor_line(
    bgp: &mut BgpConfig,
    name: &str,
    rest: &[&str],
    fam: Family,
) -> Result<(), String> {
    if let ["peer-group"] = rest {
        if name.parse::<IpAddr>().is_ok() {
            return Err("a peer-group needs a name, not an address".into());
        }
        bgp.peer_groups.entry(name.to_string()).or_default();
        return Ok(());
    }
    if let ["peer-group", group] = rest
        && !bgp.peer_groups.contains_key(*group)
    {
        return Err(format!("peer-group {group:?} is not defined"));
    }
    let settings = match name.parse::<IpAddr>() {
        Ok(addr) => {
            if let Some(i) = bgp.neighbors.iter().position(|(a, _)| *a == addr) {
                &mut bgp.neighbors[i].1
            } else {
                bgp.neighbors.push((addr, PeerSettings::default()));
                &mut bgp.neighbors.last_mut().expect("just pushed").1
            }
        }
        Err(_) => bgp.peer_groups.get_mut(name).ok_or_else(|| {
            format!("{name:?} is neither an address nor a peer-group defined above")
        })?,
    };
    match rest {
        ["remote-as", "external"] => settings.remote_as = Some(RemoteAs::External),
        ["remote-as", "internal"] => settings.remote_as = Some(RemoteAs::Internal),
        ["remote-as", a] => settings.remote_as = Some(RemoteAs::Asn(asn(a)?)),
        ["peer-group", group] => settings.peer_group = Some(group.to_string()),
        ["password", pw] => settings.password = Some(pw.to_string()),
        ["ebgp-multihop", ttl] => {
            settings.ebgp_multihop = Some(
                ttl.parse()
                    .ok()
                    .filter(|&t| t >= 1)
                    .ok_or_else(|| format!("ebgp-multihop {ttl:?} is not 1..255"))?,
            );
        }
        ["ebgp-multihop"] => settings.ebgp_multihop = Some(255),
        ["activate"] => settings.activate.push(fam),
        ["description", text @ ..] if !text.is_empty() => {
            settings.description = Some(text.join(" "))
        }
        _ => {
            return Err(format!(
                "neighbor option {:?} is not supported",
                rest.join(" ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's frr.conf (seeds_000_001_004.md #8), verbatim but for the comment header.
    const SEED: &str = "log syslog informational\n!\nrouter bgp 65000\n  bgp router-id 192.168.10.200\n  bgp graceful-restart\n  no bgp ebgp-requires-policy\n  bgp bestpath as-path multipath-relax\n  maximum-paths 4\n  network 10.10.1.0/24\n  neighbor CILIUM peer-group\n  neighbor CILIUM remote-as external\n  neighbor 192.168.10.100 peer-group CILIUM\n  neighbor 192.168.10.101 peer-group CILIUM\n  neighbor 192.168.20.100 peer-group CILIUM \n";

    #[test]
    fn parses_the_seed_config() {
        let c = FrrConfig::parse(SEED).unwrap();
        let b = c.bgp.as_ref().unwrap();
        assert_eq!(b.asn, 65000);
        assert_eq!(b.router_id, Some("192.168.10.200".parse().unwrap()));
        assert!(b.graceful_restart && b.multipath_relax && !b.ebgp_requires_policy);
        assert_eq!(b.maximum_paths(Family::Ipv4Unicast), 4);
        assert_eq!(
            b.networks,
            vec![(Family::Ipv4Unicast, "10.10.1.0/24".parse().unwrap())]
        );
        assert_eq!(b.neighbors.len(), 3);
        let n = b.effective("192.168.20.100".parse().unwrap()).unwrap();
        assert_eq!(n.remote_as, Some(RemoteAs::External));
        assert_eq!(n.peer_group.as_deref(), Some("CILIUM"));
    }

    /// Found by fuzzing (`frr_conf`): a neighbor without a remote-as whose
    /// line separates its words with other whitespace than a space was
    /// reported at line 0.
    #[test]
    fn a_neighbor_without_remote_as_is_reported_at_its_line_however_spaced() {
        let text = "router bgp 65000\n  neighbor G peer-group\n  neighbor\x0b\t192.168.10.100  peer-group G\n";
        let e = FrrConfig::parse(text).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.reason.contains("has no remote-as"), "{e}");
    }

    #[test]
    fn running_config_round_trips() {
        let c = FrrConfig::parse(SEED).unwrap();
        let shown = c.running_config();
        assert!(
            shown.contains(" neighbor CILIUM remote-as external\n"),
            "{shown}"
        );
        assert!(shown.contains(" address-family ipv4 unicast\n  network 10.10.1.0/24\n  maximum-paths 4\n exit-address-family\n"), "{shown}");
        let body: String = shown.lines().skip(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(FrrConfig::parse(&body).unwrap(), c);
    }

    #[test]
    fn rejects_what_it_does_not_know_with_the_line() {
        let e = FrrConfig::parse(&SEED.replace(
            "maximum-paths 4",
            "maximum-paths 4\n  bgp bestpath med confed",
        ))
        .unwrap_err();
        assert_eq!(e.line, 9);
        let e = FrrConfig::parse("router ospf\n").unwrap_err();
        assert_eq!((e.line, e.text.as_str()), (1, "router ospf"));
        let e = FrrConfig::parse(&SEED.replace("peer-group CILIUM \n", "peer-group CILLIUM\n"))
            .unwrap_err();
        assert!(e.reason.contains("CILLIUM"), "{e}");
        let e = FrrConfig::parse("router bgp 65000\n neighbor 10.0.0.1 password x\n").unwrap_err();
        assert!(e.reason.contains("no remote-as"), "{e}");
        assert_eq!(e.line, 2);
        let e = FrrConfig::parse("router bgp 0\n").unwrap_err();
        assert!(e.reason.contains("AS number"), "{e}");
        let e = FrrConfig::parse("router bgp 1\n address-family ipv4 unicast\n  network 10.0.0.1/24\n exit-address-family\n").unwrap_err();
        assert!(e.reason.contains("host bits"), "{e}");
    }
}
