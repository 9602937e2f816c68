//! Tables in the layout of `cilium bgp peers`, `cilium bgp routes`,
//! `cilium-dbg service list`, `cilium-dbg endpoint list` and `db/show l2-announce`:
//! columns separated by at least three spaces, durations as Go prints them.
//! The agent's CLI and the simulator's `bgp` steps print these.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::status::{PeerStatus, RouteStatus, Table};
use crate::service::table::{BackendState, FrontendKind, L3n4, ServiceTable};

/// Lay out rows under a header, each column as wide as its widest cell
/// plus three spaces.
pub fn tabulate(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in core::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + 3 - cell.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration in seconds as Go's `time.Duration` prints it: `18m46s`,
/// `13h35m30s`, `0s`.
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// One endpoint (a pod, or the node's own `reserved:host` endpoint) as
/// `cilium-dbg endpoint list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointRow {
    /// Endpoint ID.
    pub id: u16,
    /// Security identity.
    pub identity: u32,
    /// Labels (`k8s:app=webpod`), one per line.
    pub labels: Vec<String>,
    /// IPv4 address, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// `ready`, `waiting-for-identity`, …
    pub status: String,
}

impl EndpointRow {
    /// Node `node`'s own endpoint (`reserved:host`), its ID drawn as
    /// [`endpoint_id`] draws them, distinct from `used`.
    pub fn host(node: &str, used: &alloc::collections::BTreeSet<u16>) -> Self {
        EndpointRow {
            id: endpoint_id(&alloc::format!("{node}/host"), used),
            identity: crate::flow::hubble::identity::HOST,
            labels: alloc::vec!["reserved:host".into()],
            ipv4: None,
            ipv6: None,
            status: "ready".into(),
        }
    }
}

/// A new endpoint's ID: drawn from `name` (Cilium draws it at random;
/// stable per name here), 1–4000, the next free one when taken.
pub fn endpoint_id(name: &str, used: &alloc::collections::BTreeSet<u16>) -> u16 {
    let mut h = crate::hash::Fnv1a::new();
    h.write(name.as_bytes());
    let mut id = (h.finish() % 4000) as u16 + 1;
    for _ in 0..4000 {
        if !used.contains(&id) {
            break;
        }
        id = id % 4000 + 1;
    }
    id
}

/// `cilium-dbg endpoint list`: ENDPOINT, POLICY (ingress/egress)
/// ENFORCEMENT, IDENTITY, LABELS (one per line, the first on the
/// endpoint's line), IPv6, IPv4, STATUS; sorted by endpoint ID. Policy is
/// not enforced here (`Disabled`).
pub fn endpoint_list(rows: &[EndpointRow]) -> String {
    let mut rows: Vec<&EndpointRow> = rows.iter().collect();
    rows.sort_by_key(|r| r.id);
    let mut lines: Vec<Vec<String>> = vec![vec![
        String::new(),
        "ENFORCEMENT".into(),
        "ENFORCEMENT".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]];
    for r in rows {
        let mut labels = r.labels.iter();
        lines.push(vec![
            r.id.to_string(),
            "Disabled".into(),
            "Disabled".into(),
            r.identity.to_string(),
            labels.next().cloned().unwrap_or_default(),
            r.ipv6.map(|a| a.to_string()).unwrap_or_default(),
            r.ipv4.map(|a| a.to_string()).unwrap_or_default(),
            r.status.clone(),
        ]);
        for l in labels {
            let mut line = vec![String::new(); 8];
            line[4] = l.clone();
            lines.push(line);
        }
    }
    tabulate(
        &[
            "ENDPOINT",
            "POLICY (ingress)",
            "POLICY (egress)",
            "IDENTITY",
            "LABELS (source:key[=value])",
            "IPv6",
            "IPv4",
            "STATUS",
        ],
        &lines,
    )
}

/// `l2-announce` (Cilium's `cilium-dbg shell -- db/show l2-announce`):
/// the addresses a node answers ARP for, and on which interface.
pub fn l2_announce(entries: &[super::l2announce::Entry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| alloc::vec![e.ip.to_string(), e.interface.clone()])
        .collect();
    tabulate(&["IP", "NetworkInterface"], &rows)
}

/// One row of `cilium-dbg service list`: a frontend and its backends.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceRow {
    /// `ADDR:PORT/PROTO` (NodePorts as `0.0.0.0:PORT/PROTO`).
    pub frontend: String,
    /// `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalIPs`.
    pub kind: String,
    /// The backends, in the service's order.
    pub backends: Vec<ServiceBackend>,
}

/// A backend of a [`ServiceRow`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceBackend {
    /// `ADDR:PORT/PROTO`.
    pub address: String,
    /// `active` or `terminating`.
    pub state: String,
}

/// The rows of `cilium-dbg service list` for `table`: one per frontend, the
/// NodePort frontends of a node's addresses as Cilium's one `0.0.0.0:PORT`
/// (`[::]:PORT`) surrogate, in table order.
pub fn service_rows(table: &ServiceTable) -> Vec<ServiceRow> {
    let mut rows = Vec::new();
    let mut node_ports = alloc::collections::BTreeSet::new();
    for (addr, frontend) in table.frontends() {
        let shown = match frontend.kind {
            FrontendKind::NodePort => {
                let any = match addr.addr {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                if !node_ports.insert((any, addr.port, addr.protocol)) {
                    continue;
                }
                L3n4 { addr: any, ..*addr }
            }
            _ => *addr,
        };
        let kind = match frontend.kind {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::LoadBalancer => "LoadBalancer",
            FrontendKind::ExternalIp => "ExternalIPs",
        };
        let backends = frontend
            .backends
            .iter()
            .filter_map(|&id| table.backend(id))
            .map(|b| ServiceBackend {
                address: l3n4(&b.addr),
                state: match b.state {
                    BackendState::Active => "active".into(),
                    BackendState::Terminating => "terminating".into(),
                },
            })
            .collect();
        rows.push(ServiceRow {
            frontend: l3n4(&shown),
            kind: kind.into(),
            backends,
        });
    }
    rows
}

/// `cilium-dbg service list`: ID, Frontend, Service Type, Backend, each
/// backend on a line of its own (`N => ADDR:PORT/PROTO (state)`). IDs count
/// the rows from 1; Cilium numbers services as it creates them.
pub fn service_list(rows: &[ServiceRow]) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    for (id, row) in (1..).zip(rows) {
        let mut backends = row
            .backends
            .iter()
            .zip(1..)
            .map(|(b, n)| format!("{n} => {} ({})", b.address, b.state));
        let first = backends.next().unwrap_or_default();
        lines.push(vec![
            id.to_string(),
            row.frontend.clone(),
            row.kind.clone(),
            first,
        ]);
        for b in backends {
            lines.push(vec![String::new(), String::new(), String::new(), b]);
        }
    }
    tabulate(&["ID", "Frontend", "Service Type", "Backend"], &lines)
}

/// `cilium-dbg bpf lb list`: SERVICE ADDRESS and BACKEND ADDRESS
/// (REVNAT_ID) (SLOT) of every entry of the services map — per frontend a
/// master entry (slot 0: `0.0.0.0:0` with the service's kind, ClusterIPs
/// `non-routable`) and one entry per backend slot. The rev-NAT ID is the
/// row's `service list` ID. Sorted by frontend, then slot (Cilium prints
/// the map's hash order).
pub fn bpf_lb_list(rows: &[ServiceRow]) -> String {
    let mut lines: Vec<Vec<String>> = Vec::new();
    for (id, row) in (1..).zip(rows) {
        let flags = if row.kind == "ClusterIP" {
            format!("[{}, non-routable]", row.kind)
        } else {
            format!("[{}]", row.kind)
        };
        lines.push(vec![
            format!("{} (0)", row.frontend),
            format!("0.0.0.0:0 ({id}) (0) {flags}"),
        ]);
        for (slot, b) in (1..).zip(&row.backends) {
            lines.push(vec![
                format!("{} ({slot})", row.frontend),
                format!("{} ({id}) ({slot})", b.address),
            ]);
        }
    }
    tabulate(
        &["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"],
        &lines,
    )
}

/// What `cilium status --verbose` reports of a node's kube-proxy
/// replacement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeProxyReplacement {
    /// `loadBalancer.mode`.
    pub mode: crate::service::datapath::Mode,
    /// `loadBalancer.algorithm`.
    pub algorithm: crate::service::datapath::Algorithm,
    /// `maglev.tableSize`.
    pub maglev_table_size: u32,
    /// `nodePort.range`.
    pub node_ports: crate::service::nodeport::PortRange,
    /// The node's devices and their addresses, in order.
    pub devices: Vec<(String, Vec<IpAddr>)>,
    /// The device Cilium marks `(Direct Routing)`.
    pub direct_routing: Option<String>,
}

/// The `KubeProxyReplacement Details:` block of `cilium status --verbose`,
/// in Cilium's layout (labels aligned as Go's tabwriter aligns them, the
/// service lines as Cilium writes them, trailing spaces included). The
/// settings nexthop does not model are printed with the values of a
/// default Cilium install: socket LB enabled with full coverage, session
/// affinity enabled, NAT46/64 and XDP acceleration disabled.
pub fn kube_proxy_replacement(k: &KubeProxyReplacement) -> String {
    use crate::service::datapath::{Algorithm, Mode};
    let devices: Vec<String> = k
        .devices
        .iter()
        .map(|(name, addrs)| {
            let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
            let direct = if k.direct_routing.as_deref() == Some(name.as_str()) {
                " (Direct Routing)"
            } else {
                ""
            };
            format!("{name}   {}{direct}", addrs.join(" "))
        })
        .collect();
    let mut rows: Vec<(&str, String)> = vec![
        ("  Status:", "True".into()),
        ("  Socket LB:", "Enabled".into()),
        ("  Socket LB Tracing:", "Enabled".into()),
        ("  Socket LB Coverage:", "Full".into()),
        ("  Devices:", devices.join(", ")),
    ];
    match k.mode {
        Mode::Snat => rows.push(("  Mode:", "SNAT".into())),
        Mode::Dsr | Mode::Hybrid => {
            let mode = if k.mode == Mode::Dsr { "DSR" } else { "Hybrid" };
            rows.push(("  Mode:", mode.into()));
            rows.push(("    DSR Dispatch Mode:", "Geneve".into()));
        }
    }
    rows.push((
        "  Backend Selection:",
        match k.algorithm {
            Algorithm::Random => "Random".into(),
            Algorithm::Maglev => format!("Maglev (Table Size: {})", k.maglev_table_size),
        },
    ));
    rows.push(("  Session Affinity:", "Enabled".into()));
    rows.push(("  NAT46/64 Support:", "Disabled".into()));
    rows.push(("  XDP Acceleration:", "Disabled".into()));
    let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 3;
    let mut out = String::from("KubeProxyReplacement Details:\n");
    for (label, value) in rows {
        out.push_str(&format!("{label:<width$}{value}\n"));
    }
    out.push_str("  Services:\n");
    out.push_str("  - ClusterIP:      Enabled\n");
    out.push_str(&format!(
        "  - NodePort:       Enabled (Range: {}) \n",
        k.node_ports
    ));
    out.push_str("  - LoadBalancer:   Enabled \n");
    out.push_str("  - externalIPs:    Enabled \n");
    out.push_str("  - HostPort:       Enabled\n");
    out.push_str("  Annotations:\n");
    for a in [
        "service.cilium.io/node",
        "service.cilium.io/node-selector",
        "service.cilium.io/proxy-delegation",
        "service.cilium.io/src-ranges-policy",
        "service.cilium.io/type",
    ] {
        out.push_str(&format!("  - {a}\n"));
    }
    out
}

/// `ADDR:PORT/PROTO`, IPv6 addresses in brackets.
fn l3n4(a: &L3n4) -> String {
    let port = format!("{}/{}", a.port, a.protocol.name());
    match a.addr {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// `bgp peers`.
pub fn peers(peers: &[PeerStatus]) -> String {
    let header = [
        "Node",
        "Local AS",
        "Peer AS",
        "Peer Address",
        "Session State",
        "Uptime",
        "Family",
        "Received",
        "Advertised",
    ];
    let mut rows = Vec::new();
    for p in peers {
        let uptime = p.uptime_secs.map_or_else(|| "0s".to_string(), go_duration);
        let families = if p.families.is_empty() {
            vec![None]
        } else {
            p.families.iter().map(Some).collect()
        };
        for (i, f) in families.into_iter().enumerate() {
            let first = i == 0;
            let cell = |s: String| if first { s } else { String::new() };
            rows.push(vec![
                cell(p.node.clone()),
                cell(p.local_asn.to_string()),
                cell(p.peer_asn.map_or_else(|| "0".into(), |a| a.to_string())),
                cell(p.peer_address.to_string()),
                cell(p.state.clone()),
                cell(uptime.clone()),
                f.map_or_else(String::new, |f| format!("{}/{}", f.afi, f.safi)),
                f.map_or_else(String::new, |f| f.received.to_string()),
                f.map_or_else(String::new, |f| f.advertised.to_string()),
            ]);
        }
    }
    tabulate(&header, &rows)
}

/// `bgp routes <table>`: rows grouped by node, the node named on its first
/// row only; advertised and received routes name their peer.
pub fn routes(table: Table, routes: &[&RouteStatus]) -> String {
    let with_peer = table != Table::Available;
    let mut header = vec!["Node", "VRouter"];
    if with_peer {
        header.push("Peer");
    }
    header.extend(["Prefix", "NextHop", "Age", "Attrs"]);
    let mut rows = Vec::new();
    let mut last_node: Option<&str> = None;
    for r in routes {
        let node = if last_node == Some(r.node.as_str()) {
            String::new()
        } else {
            r.node.clone()
        };
        last_node = Some(&r.node);
        let mut row = vec![node, r.vrouter.to_string()];
        if with_peer {
            row.push(r.peer.map(|p| p.to_string()).unwrap_or_default());
        }
        let mut attrs = format!("[{}]", r.attrs.join(" "));
        if r.stale {
            attrs.push_str(" (stale)");
        }
        row.extend([
            r.prefix.to_string(),
            r.next_hop.to_string(),
            go_duration(r.age_secs),
            attrs,
        ]);
        rows.push(row);
    }
    tabulate(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::status::{FamilyStatus, MessageCounts};

    #[test]
    fn endpoint_list_puts_each_label_on_a_line_of_its_own() {
        let rows = [
            EndpointRow {
                id: 3012,
                identity: 21500,
                labels: vec![
                    "k8s:app=curl".into(),
                    "k8s:io.kubernetes.pod.namespace=default".into(),
                ],
                ipv4: Some(Ipv4Addr::new(172, 20, 0, 89)),
                ipv6: None,
                status: "ready".into(),
            },
            EndpointRow {
                id: 212,
                identity: 1,
                labels: vec!["reserved:host".into()],
                ipv4: None,
                ipv6: None,
                status: "ready".into(),
            },
        ];
        let text = endpoint_list(&rows);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][0], "ENDPOINT");
        assert_eq!(lines[1], ["ENFORCEMENT", "ENFORCEMENT"]);
        assert_eq!(
            lines[2],
            ["212", "Disabled", "Disabled", "1", "reserved:host", "ready"]
        );
        assert_eq!(
            lines[3],
            [
                "3012",
                "Disabled",
                "Disabled",
                "21500",
                "k8s:app=curl",
                "172.20.0.89",
                "ready"
            ]
        );
        assert_eq!(lines[4], ["k8s:io.kubernetes.pod.namespace=default"]);
        // The labels column lines up under its header.
        let col = text.lines().next().unwrap().find("LABELS").unwrap();
        assert_eq!(text.lines().nth(4).unwrap().find("k8s:io"), Some(col));
    }

    #[test]
    fn service_list_matches_the_seed_layout() {
        use crate::service::Protocol;
        use crate::service::maglev;
        use crate::service::table::{BackendSpec, FrontendSpec};
        use alloc::collections::BTreeMap;
        let at = |a: &str, port| L3n4 {
            addr: a.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
        };
        let backend = |a, state| BackendSpec {
            addr: at(a, 80),
            state,
            local: false,
            weight: 100,
            node: None,
        };
        let spec = |kind| FrontendSpec {
            service: ("default".into(), "webpod".into()),
            kind,
            external_local: false,
            internal_local: false,
            affinity_seconds: None,
            backends: vec![
                backend("172.20.0.15", BackendState::Active),
                backend("172.20.1.119", BackendState::Terminating),
            ],
        };
        let frontends = BTreeMap::from([
            (at("10.96.54.159", 80), spec(FrontendKind::ClusterIp)),
            (at("192.168.10.100", 32567), spec(FrontendKind::NodePort)),
            (at("10.0.2.15", 32567), spec(FrontendKind::NodePort)),
            (at("172.16.1.1", 80), spec(FrontendKind::LoadBalancer)),
        ]);
        let table = ServiceTable::new(&maglev::Config::default(), frontends);
        assert_eq!(
            service_list(&service_rows(&table)),
            "ID   Frontend              Service Type   Backend\n\
             1    0.0.0.0:32567/TCP     NodePort       1 => 172.20.0.15:80/TCP (active)\n\
             \x20                                         2 => 172.20.1.119:80/TCP (terminating)\n\
             2    10.96.54.159:80/TCP   ClusterIP      1 => 172.20.0.15:80/TCP (active)\n\
             \x20                                         2 => 172.20.1.119:80/TCP (terminating)\n\
             3    172.16.1.1:80/TCP     LoadBalancer   1 => 172.20.0.15:80/TCP (active)\n\
             \x20                                         2 => 172.20.1.119:80/TCP (terminating)\n"
        );
    }

    #[test]
    fn bpf_lb_list_has_a_master_entry_and_a_slot_per_backend() {
        let backend = |a: &str| ServiceBackend {
            address: a.into(),
            state: "active".into(),
        };
        let rows = [ServiceRow {
            frontend: "10.96.129.95:80/TCP".into(),
            kind: "ClusterIP".into(),
            backends: vec![
                backend("172.20.0.131:80/TCP"),
                backend("172.20.1.217:80/TCP"),
            ],
        }];
        assert_eq!(
            bpf_lb_list(&rows),
            "SERVICE ADDRESS           BACKEND ADDRESS (REVNAT_ID) (SLOT)\n\
             10.96.129.95:80/TCP (0)   0.0.0.0:0 (1) (0) [ClusterIP, non-routable]\n\
             10.96.129.95:80/TCP (1)   172.20.0.131:80/TCP (1) (1)\n\
             10.96.129.95:80/TCP (2)   172.20.1.217:80/TCP (1) (2)\n"
        );
    }

    #[test]
    fn kube_proxy_replacement_matches_the_seed_in_both_modes() {
        use crate::service::datapath::{Algorithm, Mode};
        use crate::service::nodeport::PortRange;
        let mut k = KubeProxyReplacement {
            mode: Mode::Snat,
            algorithm: Algorithm::Random,
            maglev_table_size: 16381,
            node_ports: PortRange::DEFAULT,
            devices: vec![("eth1".into(), vec!["192.168.10.101".parse().unwrap()])],
            direct_routing: Some("eth1".into()),
        };
        let snat = kube_proxy_replacement(&k);
        assert!(snat.contains("\n  Status:               True\n"), "{snat}");
        assert!(
            snat.contains("\n  Devices:              eth1   192.168.10.101 (Direct Routing)\n")
        );
        assert!(snat.contains("\n  Mode:                 SNAT\n"));
        assert!(snat.contains("\n  Backend Selection:    Random\n"));
        assert!(snat.contains("\n  - NodePort:       Enabled (Range: 30000-32767) \n"));
        (k.mode, k.algorithm) = (Mode::Dsr, Algorithm::Maglev);
        let dsr = kube_proxy_replacement(&k);
        assert!(
            dsr.contains("\n  Mode:                  DSR\n    DSR Dispatch Mode:   Geneve\n"),
            "{dsr}"
        );
        assert!(dsr.contains("\n  Backend Selection:     Maglev (Table Size: 16381)\n"));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(59), "59s");
        assert_eq!(go_duration(1126), "18m46s");
        assert_eq!(go_duration(48930), "13h35m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
    }

    #[test]
    fn peers_table_matches_the_seed_layout() {
        let peer = PeerStatus {
            node: "k8s-ctr".into(),
            instance: "instance-65001".into(),
            name: "tor-switch".into(),
            local_asn: 65001,
            peer_asn: Some(65000),
            peer_address: "192.168.10.200".parse().unwrap(),
            state: "established".into(),
            uptime_secs: Some(659),
            families: vec![FamilyStatus {
                afi: "ipv4".into(),
                safi: "unicast".into(),
                received: 4,
                advertised: 2,
            }],
            messages_received: MessageCounts::default(),
            messages_sent: MessageCounts::default(),
            last_notification: None,
            applied_timers: None,
        };
        assert_eq!(
            peers(&[peer]),
            "Node      Local AS   Peer AS   Peer Address     Session State   Uptime   Family         Received   Advertised\n\
             k8s-ctr   65001      65000     192.168.10.200   established     10m59s   ipv4/unicast   4          2\n"
        );
    }

    #[test]
    fn routes_table_matches_the_seed_layout() {
        let route = |prefix: &str, age| RouteStatus {
            table: Table::Available,
            node: "k8s-ctr".into(),
            vrouter: 65001,
            peer: None,
            prefix: prefix.parse().unwrap(),
            next_hop: "0.0.0.0".parse().unwrap(),
            age_secs: age,
            attrs: vec!["{Origin: i}".into(), "{Nexthop: 0.0.0.0}".into()],
            stale: false,
        };
        let a = route("172.16.1.1/32", 1025);
        let b = route("172.20.0.0/24", 48930);
        assert_eq!(
            routes(Table::Available, &[&a, &b]),
            "Node      VRouter   Prefix          NextHop   Age         Attrs\n\
             k8s-ctr   65001     172.16.1.1/32   0.0.0.0   17m5s       [{Origin: i} {Nexthop: 0.0.0.0}]\n          \
             65001     172.20.0.0/24   0.0.0.0   13h35m30s   [{Origin: i} {Nexthop: 0.0.0.0}]\n"
        );
    }
}
