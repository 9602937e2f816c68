//! Tables in the formats operators read: `ip route`, `ip neigh`, kubectl's AGE.
//!
//! Owns only formatting. Route order follows Linux: by network address, and
//! for equal networks the longer prefix first.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::IpNet;
use router_core::PortId;
use router_core::fib::{Fib, Installed, NexthopKind};
use router_core::neighbour::{self, State};
use smoltcp::time::Duration;
use smoltcp::wire::EthernetAddress;

/// What `ip route` prints beside a route that the FIB does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteNote {
    /// Preferred source address (`src`).
    pub src: Option<Ipv4Addr>,
    /// Route MTU (`mtu`).
    pub mtu: Option<u16>,
    /// What `ip route` shows as the nexthop, when the kernel's view differs from
    /// the FIB's (Cilium's tunnel routes show `via CILIUM_HOST dev cilium_host`).
    pub shown_as: Option<String>,
}

/// A MAC address as Linux prints it.
pub fn mac(m: EthernetAddress) -> String {
    let b = m.as_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

/// `ip route` lines for `fib`. `name` names ports; `notes` add `src`/`mtu`
/// (connected routes get the port's address as `src`); `hide` filters routes
/// out (e.g. per-endpoint routes Cilium keeps in eBPF maps, not in the table).
pub fn ip_route(
    fib: &Fib,
    name: &dyn Fn(PortId) -> String,
    notes: &BTreeMap<IpNet, RouteNote>,
    hide: &dyn Fn(&Installed) -> bool,
) -> Vec<String> {
    let mut routes: Vec<Installed> = fib.routes().filter(|r| !hide(r)).collect();
    routes.sort_by_key(|r| (r.prefix.network(), Reverse(r.prefix.prefix_len())));
    routes
        .iter()
        .map(|r| {
            let note = notes.get(&r.prefix).cloned().unwrap_or_default();
            let mut line = String::new();
            match &note.shown_as {
                Some(nexthop) => {
                    line = format!("{} {nexthop} proto {}", r.prefix, r.route.protocol.name())
                }
                None => r
                    .write_ip_route(&mut line, name)
                    .expect("writing to a String"),
            }
            if let Some(src) = note.src {
                line.push_str(&format!(" src {src}"));
            }
            if let Some(mtu) = note.mtu {
                line.push_str(&format!(" mtu {mtu}"));
            }
            line
        })
        .collect()
}

/// `ip route get ADDR` on `host` at `now`: the route the kernel would take
/// (the longest prefix, its first nexthop), with the preferred source and,
/// on a second line, the route's MTU (`cache mtu 1450` for Cilium's tunnel
/// routes) or a path MTU learnt from "fragmentation needed" (`cache
/// expires 596sec mtu 1400`).
pub fn ip_route_get(
    host: &nexthop_netstack::Host,
    notes: &BTreeMap<IpNet, RouteNote>,
    addr: std::net::IpAddr,
    now: smoltcp::time::Instant,
) -> Vec<String> {
    let name = |p: PortId| host.ports()[usize::from(p.0)].name.clone();
    if host.addresses().any(|a| a == addr) {
        return vec![
            format!("local {addr} dev lo src {addr} uid 0"),
            "    cache <local>".into(),
        ];
    }
    let Some(route) = host
        .fib()
        .routes()
        .filter(|r| r.prefix.contains(&addr))
        .max_by_key(|r| r.prefix.prefix_len())
    else {
        return vec!["RTNETLINK answers: Network is unreachable".into()];
    };
    let note = notes.get(&route.prefix).cloned().unwrap_or_default();
    let src = note
        .src
        .map(std::net::IpAddr::V4)
        .or_else(|| host.source_address(addr));
    let member = route.group.members().first().map(|m| m.kind);
    let mut line = match (member, &note.shown_as) {
        // A route shown through another device (Cilium's tunnel routes via
        // cilium_host): the kernel names that device.
        (_, Some(shown)) => {
            let dev = shown.split_once("dev ").map_or("", |(_, d)| d);
            format!("{addr} dev {}", dev.split(' ').next().unwrap_or(dev))
        }
        (Some(NexthopKind::Gateway { addr: gw, port }), None) => {
            format!("{addr} via {gw} dev {}", name(port))
        }
        (Some(NexthopKind::Connected { port }), None) => format!("{addr} dev {}", name(port)),
        (Some(NexthopKind::Blackhole), None) => {
            return vec!["RTNETLINK answers: Invalid argument".into()];
        }
        (Some(NexthopKind::Tunnel { .. }) | None, None) => format!("{addr}"),
    };
    if let Some(src) = src {
        line.push_str(&format!(" src {src}"));
    }
    line.push_str(" uid 0");
    let cache = match (host.path_mtu(now, addr), note.mtu) {
        (Some((mtu, left)), _) => format!(
            "    cache expires {}sec mtu {mtu}",
            left.total_micros().div_ceil(1_000_000)
        ),
        (None, Some(mtu)) => format!("    cache mtu {mtu}"),
        (None, None) => "    cache".into(),
    };
    vec![line, cache]
}

/// `ip -br addr` lines: each interface's name, state (`UP`, `DOWN`,
/// `UNKNOWN`) and addresses, in iproute2's columns.
pub fn ip_br_addr(rows: &[(String, &str, Vec<IpNet>)]) -> Vec<String> {
    rows.iter()
        .map(|(name, state, addrs)| {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            format!("{name:<16} {state:<14} {}", addrs.join(" "))
                .trim_end()
                .to_string()
        })
        .collect()
}

/// `ip neigh` lines for `table`.
pub fn ip_neigh(table: &neighbour::Table, name: &dyn Fn(PortId) -> String) -> Vec<String> {
    table
        .entries()
        .map(|(addr, e)| {
            let dev = name(e.port);
            match e.state {
                State::Reachable { mac: m, .. } => {
                    format!("{addr} dev {dev} lladdr {} REACHABLE", mac(m))
                }
                State::Stale { mac: m, .. } => format!("{addr} dev {dev} lladdr {} STALE", mac(m)),
                State::Permanent { mac: m } => {
                    format!("{addr} dev {dev} lladdr {} PERMANENT", mac(m))
                }
                State::Incomplete { .. } => format!("{addr} dev {dev} INCOMPLETE"),
                State::Failed { .. } => format!("{addr} dev {dev} FAILED"),
            }
        })
        .collect()
}

/// A table with columns padded like kubectl's (three spaces between columns).
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("   ").trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out
}

/// Collapse runs of whitespace, so expectations compare like the seed digests do.
pub fn normalise(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the (normalised) `line` is what the expected line `pattern`
/// says: the same fields, where a pattern field may hold placeholders
/// among its literal text: `{n}` stands for any number (a counter whose
/// value depends on the seed), `{age}` for any age or uptime (`4s`,
/// `2m56s`, `3h17m`, FRR's `00:00:02`), which depends on when the step
/// runs, and `{*}` for any text within the field (a generated pod name's
/// suffix, a time of day): `default/curl-pod:{n}`, `webpod-{*}:80`.
pub fn matches(pattern: &str, line: &str) -> bool {
    let (mut want, mut have) = (pattern.split(' '), line.split(' '));
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if field(w, h) => {}
            _ => return false,
        }
    }
}

/// The characters a placeholder takes.
type CharClass = fn(char) -> bool;

/// Whether the pattern field `want` (literals and placeholders) matches
/// all of `have`.
fn field(want: &str, have: &str) -> bool {
    // (placeholder, fewest characters it takes, which characters)
    let placeholders: [(&str, usize, CharClass); 3] = [
        ("{n}", 1, |c| c.is_ascii_digit()),
        ("{age}", 1, |c| c.is_ascii_digit() || "smhdwy:".contains(c)),
        ("{*}", 0, |_| true),
    ];
    for (name, least, takes) in placeholders {
        if let Some(rest) = want.strip_prefix(name) {
            // An age starts with a digit.
            if name == "{age}" && !have.starts_with(|c: char| c.is_ascii_digit()) {
                return false;
            }
            let longest = have.find(|c: char| !takes(c)).unwrap_or(have.len());
            return (least..=longest)
                .rev()
                .filter(|&n| have.is_char_boundary(n))
                .any(|n| field(rest, &have[n..]));
        }
    }
    match (want.chars().next(), have.chars().next()) {
        (None, None) => true,
        (Some(w), Some(h)) if w == h => field(&want[w.len_utf8()..], &have[h.len_utf8()..]),
        _ => false,
    }
}

/// An age as `kubectl` prints it (`AGE`): `45s`, `2m56s`, `19m`, `3h17m`,
/// `2d4h` (apimachinery's `HumanDuration`).
pub fn age(d: Duration) -> String {
    let seconds = d.total_micros() / 1_000_000;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    let days = hours / 24;
    match () {
        _ if seconds < 120 => format!("{seconds}s"),
        _ if minutes < 10 && seconds.is_multiple_of(60) => format!("{minutes}m"),
        _ if minutes < 10 => format!("{minutes}m{}s", seconds % 60),
        _ if minutes < 180 => format!("{minutes}m"),
        _ if hours < 8 && minutes.is_multiple_of(60) => format!("{hours}h"),
        _ if hours < 8 => format!("{hours}h{}m", minutes % 60),
        _ if hours < 48 => format!("{hours}h"),
        _ if days < 8 && hours.is_multiple_of(24) => format!("{days}d"),
        _ if days < 8 => format!("{days}d{}h", hours % 24),
        _ if days < 730 => format!("{days}d"),
        _ if days < 2920 && days.is_multiple_of(365) => format!("{}y", days / 365),
        _ if days < 2920 => format!("{}y{}d", days / 365, days % 365),
        _ => format!("{}y", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_placeholder_matches_any_number_and_nothing_else() {
        let line = "192.168.20.100 4 0 14 13 0 0 0 never Idle 0 N/A";
        assert!(matches(
            "192.168.20.100 4 0 {n} {n} 0 0 0 never Idle 0 N/A",
            line
        ));
        assert!(matches(line, line));
        assert!(!matches(
            "192.168.20.100 4 0 {n} {n} 0 0 0 never Active 0 N/A",
            line
        ));
        assert!(!matches(
            "192.168.20.100 4 0 {n} 0 0 0 never Idle 0 N/A",
            line
        ));
        assert!(!matches("{n} Idle", "never Idle"));
    }

    #[test]
    fn an_age_placeholder_matches_any_age_or_uptime() {
        let pattern = "k8s-w0 65001 established {age} ipv4/unicast";
        for age in ["4s", "2m56s", "3h17m", "00:00:02", "1d02h03m"] {
            assert!(matches(
                pattern,
                &format!("k8s-w0 65001 established {age} ipv4/unicast")
            ));
        }
        assert!(!matches(
            pattern,
            "k8s-w0 65001 established never ipv4/unicast"
        ));
        assert!(!matches(pattern, "k8s-w0 65001 established - ipv4/unicast"));
        assert!(matches(
            "* via 10.0.0.1, eth1, {age}",
            "* via 10.0.0.1, eth1, 00:05:02"
        ));
        assert!(matches("weight 1, {age}, x", "weight 1, 00:00:02, x"));
    }

    #[test]
    fn placeholders_match_within_a_field() {
        let line = "Jan 1 00:00:17.190: default/curl-pod:52104 (ID:257) -> default/webpod-kfps5nfdjx-shcj4:80 (ID:256) to-network FORWARDED (TCP Flags: SYN)";
        let pattern = "{*} {*} {*}: default/curl-pod:{n} (ID:{n}) -> default/webpod-{*}:80 (ID:{n}) to-network FORWARDED (TCP Flags: SYN)";
        assert!(matches(pattern, line));
        assert!(!matches(&pattern.replace(":80", ":8080"), line));
        assert!(!matches(&pattern.replace("SYN)", "SYN, ACK)"), line));
        assert!(
            !matches("curl-pod:{n}", "curl-pod:"),
            "a number has a digit"
        );
        assert!(!matches("curl-pod:{n}", "curl-pod:12a"));
        assert!(matches("a{*}b{*}c", "abbbc"));
        assert!(matches("{*}", ""));
    }

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        let cases = [
            (45, "45s"),
            (119, "119s"),
            (176, "2m56s"),
            (1140, "19m"),
            (6960, "116m"),
            (11820, "3h17m"),
            (86400 * 3 + 3600 * 4, "3d4h"),
        ];
        for (secs, shown) in cases {
            assert_eq!(age(Duration::from_secs(secs)), shown);
        }
    }
}
