//! Prometheus metrics in the text exposition format, served over plain
//! HTTP: for `run`, sessions by state, messages in and out, prefixes
//! received and advertised, endpoints, pod addresses and kept flows; for `datapath run`, packets per exit reason
//! and flow events sent and lost.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::debug;

use nexthop_offload_bpf::flows::Counters;
use router_core::datapath::Reason;

use crate::controller::Controller;
use crate::endpoints::Endpoints;
use crate::hubble::Hubble;
use crate::status::{MessageCounts, PeerStatus};

const STATES: [&str; 6] = [
    "idle",
    "connect",
    "active",
    "opensent",
    "openconfirm",
    "established",
];

/// The metrics page for these peers.
pub fn render(peers: &[PeerStatus]) -> String {
    let mut out = String::new();
    out.push_str("# HELP nexthop_bgp_sessions BGP sessions by FSM state.\n");
    out.push_str("# TYPE nexthop_bgp_sessions gauge\n");
    for state in STATES {
        let n = peers.iter().filter(|p| p.state == state).count();
        let _ = writeln!(out, "nexthop_bgp_sessions{{state=\"{state}\"}} {n}");
    }
    out.push_str("# HELP nexthop_bgp_messages_total BGP messages by peer, direction and type.\n");
    out.push_str("# TYPE nexthop_bgp_messages_total counter\n");
    for p in peers {
        for (direction, counts) in [("in", &p.messages_received), ("out", &p.messages_sent)] {
            for (kind, n) in by_type(counts) {
                let _ = writeln!(
                    out,
                    "nexthop_bgp_messages_total{{{},direction=\"{direction}\",type=\"{kind}\"}} {n}",
                    labels(p)
                );
            }
        }
    }
    out.push_str("# HELP nexthop_bgp_prefixes Prefixes by peer, family and direction.\n");
    out.push_str("# TYPE nexthop_bgp_prefixes gauge\n");
    for p in peers {
        for f in &p.families {
            let family = format!("{}/{}", f.afi, f.safi);
            for (direction, n) in [("received", f.received), ("advertised", f.advertised)] {
                let _ = writeln!(
                    out,
                    "nexthop_bgp_prefixes{{{},family=\"{family}\",direction=\"{direction}\"}} {n}",
                    labels(p)
                );
            }
        }
    }
    out
}

/// The datapath's metrics page for these per-reason counters (index:
/// `Reason as usize`) and flow event counters.
pub fn render_datapath(counts: &[u64; Reason::COUNT], flows: &Counters) -> String {
    let mut out = String::new();
    out.push_str("# HELP nexthop_flow_events_total Flow events of the XDP datapath: sent to the agent, or lost.
");
    out.push_str(
        "# TYPE nexthop_flow_events_total counter
",
    );
    for (outcome, n) in [
        ("sent", flows.sent),
        ("rate_limited", flows.rate_limited),
        ("ring_full", flows.ring_full),
    ] {
        let _ = writeln!(
            out,
            "nexthop_flow_events_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    out.push_str("# HELP nexthop_datapath_packets_total Packets the XDP datapath handled, by exit reason and action.\n");
    out.push_str("# TYPE nexthop_datapath_packets_total counter\n");
    for (i, n) in (0u8..).zip(counts) {
        let Some(reason) = Reason::from_index(i) else {
            continue;
        };
        let _ = writeln!(
            out,
            "nexthop_datapath_packets_total{{reason=\"{}\",action=\"{}\"}} {n}",
            format!("{reason:?}").to_lowercase(),
            format!("{:?}", reason.action()).to_lowercase()
        );
    }
    out
}

fn labels(p: &PeerStatus) -> String {
    format!(
        "instance=\"{}\",peer=\"{}\",peer_address=\"{}\"",
        p.instance, p.name, p.peer_address
    )
}

fn by_type(c: &MessageCounts) -> [(&'static str, u64); 5] {
    [
        ("open", c.open),
        ("update", c.update),
        ("notification", c.notification),
        ("keepalive", c.keepalive),
        ("route_refresh", c.route_refresh),
    ]
}

/// The agent's own metrics: its endpoints, its pod addresses, the flows
/// it keeps (each family only when that part runs).
pub fn render_agent(endpoints: Option<&Endpoints>, hubble: Option<&Hubble>) -> String {
    let mut out = String::new();
    if let Some(e) = endpoints {
        out.push_str("# HELP nexthop_endpoints Pods the agent set up through CNI.\n");
        out.push_str("# TYPE nexthop_endpoints gauge\n");
        let pods = e.rows().len().saturating_sub(1);
        let _ = writeln!(out, "nexthop_endpoints {pods}");
        if let Ok((used, size, _)) = e.ipam() {
            out.push_str(
                "# HELP nexthop_ipam_addresses Addresses of the node's pod CIDR, used and free.\n",
            );
            out.push_str("# TYPE nexthop_ipam_addresses gauge\n");
            let _ = writeln!(out, "nexthop_ipam_addresses{{state=\"used\"}} {used}");
            let free = size.saturating_sub(used as u64);
            let _ = writeln!(out, "nexthop_ipam_addresses{{state=\"free\"}} {free}");
        }
    }
    if let Some(h) = hubble {
        let (kept, bad) = h.counts();
        out.push_str("# HELP nexthop_hubble_flows Flows kept for observe.\n");
        out.push_str("# TYPE nexthop_hubble_flows gauge\n");
        let _ = writeln!(out, "nexthop_hubble_flows {kept}");
        out.push_str(
            "# HELP nexthop_hubble_bad_events_total Flow events that could not be decoded.\n",
        );
        out.push_str("# TYPE nexthop_hubble_bad_events_total counter\n");
        let _ = writeln!(out, "nexthop_hubble_bad_events_total {bad}");
    }
    out
}

/// Serve the agent's metrics page (BGP, endpoints, flows) on `addr` to any
/// HTTP GET.
pub async fn serve(
    addr: SocketAddr,
    controller: Controller,
    endpoints: Option<Endpoints>,
    hubble: Option<Hubble>,
) -> std::io::Result<()> {
    serve_page(addr, move || {
        let (controller, endpoints, hubble) =
            (controller.clone(), endpoints.clone(), hubble.clone());
        async move {
            render(&controller.peers().await) + &render_agent(endpoints.as_ref(), hubble.as_ref())
        }
    })
    .await
}

/// Serve the page `page` renders on `addr` to any HTTP GET.
pub async fn serve_page<F>(
    addr: SocketAddr,
    page: impl Fn() -> F + Send + Sync + 'static,
) -> std::io::Result<()>
where
    F: Future<Output = String> + Send,
{
    let listener = TcpListener::bind(addr).await?;
    let page = Arc::new(page);
    loop {
        let (mut stream, _) = listener.accept().await?;
        let page = page.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let body = page().await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(error = %e, "metrics client went away");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::FamilyStatus;

    #[test]
    fn datapath_packets_by_reason() {
        let mut counts = [0; Reason::COUNT];
        counts[Reason::Forwarded as usize] = 12;
        counts[Reason::NoRoute as usize] = 3;
        let flows = Counters {
            sent: 5,
            rate_limited: 2,
            ring_full: 0,
        };
        let page = render_datapath(&counts, &flows);
        assert!(page.contains("nexthop_flow_events_total{outcome=\"rate_limited\"} 2\n"));
        assert!(page.contains(
            "nexthop_datapath_packets_total{reason=\"forwarded\",action=\"transmit\"} 12\n"
        ));
        assert!(
            page.contains("nexthop_datapath_packets_total{reason=\"noroute\",action=\"pass\"} 3\n")
        );
        assert_eq!(page.lines().count(), 2 + 3 + 2 + Reason::COUNT);
    }

    #[test]
    fn endpoints_and_flows_only_when_they_run() {
        assert_eq!(render_agent(None, None), "");
        let hubble = Hubble::new("n1", 10);
        let page = render_agent(None, Some(&hubble));
        assert!(page.contains("nexthop_hubble_flows 0\n"), "{page}");
        assert!(!page.contains("nexthop_endpoints"), "{page}");
    }

    #[test]
    fn sessions_messages_and_prefixes() {
        let peer = PeerStatus {
            node: "n".into(),
            instance: "i".into(),
            name: "tor".into(),
            local_asn: 65001,
            peer_asn: Some(65000),
            peer_address: "192.168.10.200".parse().unwrap(),
            state: "established".into(),
            uptime_secs: Some(1),
            families: vec![FamilyStatus {
                afi: "ipv4".into(),
                safi: "unicast".into(),
                received: 4,
                advertised: 2,
            }],
            messages_received: MessageCounts {
                keepalive: 7,
                ..MessageCounts::default()
            },
            messages_sent: MessageCounts::default(),
            last_notification: None,
            applied_timers: None,
        };
        let page = render(&[peer]);
        assert!(page.contains("nexthop_bgp_sessions{state=\"established\"} 1\n"));
        assert!(page.contains("nexthop_bgp_sessions{state=\"idle\"} 0\n"));
        assert!(page.contains(
            "nexthop_bgp_messages_total{instance=\"i\",peer=\"tor\",peer_address=\"192.168.10.200\",direction=\"in\",type=\"keepalive\"} 7\n"
        ));
        assert!(page.contains(
            "nexthop_bgp_prefixes{instance=\"i\",peer=\"tor\",peer_address=\"192.168.10.200\",family=\"ipv4/unicast\",direction=\"received\"} 4\n"
        ));
    }
}
