//! The HTML lab report (`nexthop-sim run LAB --report FILE`): one
//! self-contained page (inline CSS, SVG and script; nothing is fetched when
//! it is opened) with the topology drawn, every step with its output, checks
//! and routing-table changes, curl spreads as bars, the BGP timeline and the
//! flows, filterable by node and verdict (also from the address:
//! `report.html#node=k8s-ctr&verdict=DROPPED`).
//!
//! Owns recording what the page shows while the scenario runs
//! ([`run_recorded`]) and writing the page ([`render`]). What a step does and
//! prints is [`crate::run`]'s; this only lays it out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use nexthop_netstack::apps::bgp::BgpEvent;
use router_core::bgp::speaker::Report as SessionReport;
use router_core::flow::hubble::{Observed, compact};
use smoltcp::time::Instant;

use crate::cluster::{Cluster, Role};
use crate::lab::topology::NodeKind;
use crate::run::{self, Report};

/// What the page shows beyond the run's report.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    steps: Vec<StepRecord>,
    topology: Topology,
}

/// One step's routing-table changes, BGP events and flows.
#[derive(Debug, Clone, Default)]
struct StepRecord {
    /// (host, `+` or `-`, `ip route` line).
    routes: Vec<(String, char, String)>,
    /// (seconds, host, what happened).
    bgp: Vec<(String, String, String)>,
    flows: Vec<Observed>,
}

/// One host as drawn: its name, row and the lines under the name.
#[derive(Debug, Clone)]
struct HostBox {
    name: String,
    row: usize,
    lines: Vec<String>,
}

/// The lab's hosts and links as drawn.
#[derive(Debug, Clone, Default)]
struct Topology {
    boxes: Vec<HostBox>,
    /// Pairs of box names.
    links: Vec<(String, String)>,
}

/// Run the lab's scenario like [`run::run`], recording after each step
/// what the page shows.
pub fn run_recorded(cluster: &mut Cluster, seed: u64) -> (Report, Recording) {
    let steps = cluster.lab.scenario.steps.clone();
    let mut events = 0;
    let mut tables = route_tables(cluster);
    let mut reports = Vec::new();
    let mut records = Vec::new();
    for step in &steps {
        reports.push(run::run_step(cluster, step, &mut events));
        let now = route_tables(cluster);
        let mut record = StepRecord {
            routes: changes(&tables, &now),
            ..StepRecord::default()
        };
        tables = now;
        if !step.action.looks_back() {
            record.flows = cluster.flows.last.clone();
            record.bgp = cluster.flows.bgp.iter().map(bgp_line).collect();
        }
        records.push(record);
    }
    let recording = Recording {
        steps: records,
        topology: topology(cluster),
    };
    (run::report(cluster, seed, reports, events), recording)
}

/// Every host's (not pods') `ip route` lines.
fn route_tables(cluster: &Cluster) -> BTreeMap<String, BTreeSet<String>> {
    cluster
        .host_names()
        .filter_map(|name| {
            let h = cluster.host(name)?;
            (!matches!(h.role, Role::Pod { .. }))
                .then(|| (name.clone(), run::route_lines(h).into_iter().collect()))
        })
        .collect()
}

/// Lines added (`+`) and removed (`-`) per host between two snapshots.
fn changes(
    before: &BTreeMap<String, BTreeSet<String>>,
    after: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<(String, char, String)> {
    let empty = BTreeSet::new();
    let hosts: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut out = Vec::new();
    for host in hosts {
        let (b, a) = (
            before.get(host).unwrap_or(&empty),
            after.get(host).unwrap_or(&empty),
        );
        out.extend(b.difference(a).map(|l| (host.clone(), '-', l.clone())));
        out.extend(a.difference(b).map(|l| (host.clone(), '+', l.clone())));
    }
    out
}

fn seconds(at: Instant) -> String {
    format!("{:.3}", at.total_micros() as f64 / 1e6)
}

/// One BGP event as the timeline shows it.
fn bgp_line((at, host, event): &(Instant, String, BgpEvent)) -> (String, String, String) {
    let what = match event {
        BgpEvent::Route { prefix, via } if via.is_empty() => format!("route {prefix} removed"),
        BgpEvent::Route { prefix, via } => {
            let via: Vec<String> = via.iter().map(ToString::to_string).collect();
            format!("route {prefix} via {}", via.join(", "))
        }
        BgpEvent::Session { peer, report, .. } => {
            let what = match report {
                SessionReport::State { from, to } => format!("{} → {}", from.name(), to.name()),
                SessionReport::Established(_) => "session established".into(),
                SessionReport::Notification { sent, notification } => format!(
                    "NOTIFICATION {} {}",
                    if *sent { "sent" } else { "received" },
                    notification.describe()
                ),
                SessionReport::Down { kept, .. } => {
                    format!("session down, {kept} routes kept stale")
                }
                SessionReport::Announced(n) => format!("UPDATE: {n} prefixes announced"),
                SessionReport::Withdrawn(n) => format!("UPDATE: {n} prefixes withdrawn"),
                SessionReport::EndOfRib(_) => "End-of-RIB".into(),
                SessionReport::PurgedStale(_) => "stale routes purged".into(),
                other => format!("{other:?}"),
            };
            format!("peer {peer}: {what}")
        }
    };
    (seconds(*at), host.clone(), what)
}

/// Hosts in rows (routers and outside hosts, switches, nodes, pods) and
/// the links between them.
fn topology(cluster: &Cluster) -> Topology {
    let mut t = Topology::default();
    for (name, spec) in &cluster.lab.topology.nodes {
        let row = match spec.kind {
            NodeKind::Router | NodeKind::External => 0,
            NodeKind::Bridge => 1,
            NodeKind::K8sNode => 2,
        };
        let lines = spec
            .interfaces
            .iter()
            .map(|(i, s)| {
                let addrs: Vec<String> =
                    [s.ipv4.map(|a| a.to_string()), s.ipv6.map(|a| a.to_string())]
                        .into_iter()
                        .flatten()
                        .collect();
                format!("{i} {}", addrs.join(" "))
            })
            .collect();
        t.boxes.push(HostBox {
            name: name.clone(),
            row,
            lines,
        });
    }
    for link in &cluster.lab.topology.links {
        let ends: Vec<String> = link
            .endpoints
            .iter()
            .map(|e| e.split(':').next().unwrap_or(e).to_string())
            .collect();
        t.links.push((ends[0].clone(), ends[1].clone()));
    }
    let mut pods: Vec<_> = cluster.workloads.pods().collect();
    pods.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    for pod in pods {
        t.boxes.push(HostBox {
            name: pod.name.clone(),
            row: 3,
            lines: vec![format!("eth0 {}", pod.ip)],
        });
        t.links.push((pod.node.clone(), pod.name.clone()));
    }
    t
}

/// Escape text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const BOX_W: usize = 190;
const ROW_H: usize = 150;

/// The topology as an SVG drawing.
fn svg(t: &Topology) -> String {
    let mut rows: BTreeMap<usize, Vec<&HostBox>> = BTreeMap::new();
    for b in &t.boxes {
        rows.entry(b.row).or_default().push(b);
    }
    let widest = rows.values().map(Vec::len).max().unwrap_or(1);
    let width = widest * (BOX_W + 20) + 20;
    let mut at: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for (r, (_, boxes)) in rows.iter().enumerate() {
        for (i, b) in boxes.iter().enumerate() {
            let x = (2 * i + 1) * width / (2 * boxes.len());
            let h = 24 + 14 * b.lines.len();
            at.insert(&b.name, (x, 30 + r * ROW_H, h));
        }
    }
    let height = 10 + rows.len() * ROW_H;
    let mut s = format!(
        "<svg id=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for (a, b) in &t.links {
        if let (Some(&(x1, y1, h1)), Some(&(x2, y2, h2))) = (at.get(a.as_str()), at.get(b.as_str()))
        {
            let _ = write!(
                s,
                "<line x1=\"{x1}\" y1=\"{}\" x2=\"{x2}\" y2=\"{}\" class=\"link\"/>",
                y1 + h1 / 2,
                y2 + h2 / 2
            );
        }
    }
    for HostBox { name, row, lines } in &t.boxes {
        let (x, y, h) = at[name.as_str()];
        let _ = write!(
            s,
            "<g class=\"host row{row}\" data-host=\"{}\"><rect x=\"{}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{h}\" rx=\"6\"/><text x=\"{x}\" y=\"{}\" class=\"name\">{}</text>",
            esc(name),
            x - BOX_W / 2,
            y + 16,
            esc(name)
        );
        for (i, line) in lines.iter().enumerate() {
            let _ = write!(
                s,
                "<text x=\"{x}\" y=\"{}\" class=\"addr\">{}</text>",
                y + 32 + 14 * i,
                esc(line)
            );
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

/// A step's curl spread (`N  Hostname: NAME` lines) as bars.
fn bars(output: &[String]) -> String {
    let spread: Vec<(u32, &str)> = output
        .iter()
        .filter_map(|l| {
            let (n, who) = l.trim().split_once("  Hostname: ")?;
            Some((n.trim().parse().ok()?, who))
        })
        .collect();
    let total: u32 = spread.iter().map(|(n, _)| n).sum();
    if total == 0 {
        return String::new();
    }
    let mut s = String::from("<div class=\"bars\">");
    for (n, who) in spread {
        let _ = write!(
            s,
            "<div class=\"bar\"><span class=\"who\">{}</span><span class=\"fill\" style=\"width:{}%\"></span><span class=\"n\">{n}</span></div>",
            esc(who),
            n * 100 / total
        );
    }
    s.push_str("</div>");
    s
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}\
.step{border-left:4px solid #3a3;padding-left:1em;margin:1.2em 0}.step.fail{border-color:#c33}\
.fail h3 .mark{color:#c33}.mark{color:#3a3}\
.link{stroke:#999;stroke-width:1.5}.host rect{fill:#eef;stroke:#557}.row0 rect{fill:#fed}\
.row1 rect{fill:#eee}.row3 rect{fill:#efe}.name{font-weight:bold;font-size:13px;text-anchor:middle}\
.addr{font-size:10px;text-anchor:middle;font-family:monospace}\
.routes .add{color:#262}.routes .del{color:#a22}\
.bars .bar{display:flex;align-items:center;gap:.5em;font-size:12px}.bars .who{width:22em}\
.bars .fill{background:#58c;height:12px;display:inline-block}\
table{border-collapse:collapse;font-size:12px}td,th{border-bottom:1px solid #ddd;padding:2px 6px;text-align:left}\
.flows td{font-family:monospace}";

const SCRIPT: &str = "window.addEventListener('error',function(e){document.body.dataset.errors=(document.body.dataset.errors||'')+e.message+';';});\
function filterFlows(){var n=document.getElementById('flow-node').value,v=document.getElementById('flow-verdict').value,shown=0;\
document.querySelectorAll('#flows tbody tr').forEach(function(r){var ok=(!n||r.dataset.node===n)&&(!v||r.dataset.verdict===v);r.style.display=ok?'':'none';if(ok)shown++;});\
document.getElementById('flow-count').textContent=shown;}\
document.addEventListener('DOMContentLoaded',function(){var h=new URLSearchParams(location.hash.slice(1));if(h.get('node'))document.getElementById('flow-node').value=h.get('node');if(h.get('verdict'))document.getElementById('flow-verdict').value=h.get('verdict');filterFlows();});";

/// The whole page.
pub fn render(report: &Report, recording: &Recording) -> String {
    let mut s = String::new();
    let title = format!("lab {} (seed {})", report.lab, report.seed);
    let passed = report.steps.iter().filter(|st| st.passed()).count();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body><h1>{t}</h1>",
        t = esc(&title)
    );
    let _ = write!(
        s,
        "<p id=\"summary\">{passed} passed, {} failed; {:.3} virtual seconds, {} events, {} frames, trace hash <code>{}</code></p>",
        report.steps.len() - passed,
        report.virtual_seconds,
        report.events,
        report.frames,
        esc(&report.trace_hash)
    );
    s.push_str("<h2>Topology</h2>");
    s.push_str(&svg(&recording.topology));
    s.push_str("<h2>Steps</h2>");
    for (i, (step, rec)) in report.steps.iter().zip(&recording.steps).enumerate() {
        let ok = step.passed();
        let _ = write!(
            s,
            "<section class=\"step{}\" id=\"step-{}\"><h3><span class=\"mark\">{}</span> [{}] {} <small>(t={}s, scenario.yaml:{})</small></h3>",
            if ok { "" } else { " fail" },
            i + 1,
            if ok { "ok" } else { "FAIL" },
            i + 1,
            esc(&step.name),
            esc(&step.time),
            step.line
        );
        if !step.output.is_empty() {
            let _ = write!(s, "<pre>{}</pre>", esc(&step.output.join("\n")));
        }
        s.push_str(&bars(&step.output));
        if !step.checks.is_empty() || step.error.is_some() {
            s.push_str("<ul class=\"checks\">");
            for c in &step.checks {
                let _ = write!(
                    s,
                    "<li>{} expect {}: got {}</li>",
                    if c.passed { "ok" } else { "FAIL" },
                    esc(&c.expected),
                    esc(&c.actual)
                );
            }
            if let Some(e) = &step.error {
                let _ = write!(s, "<li>FAIL {}</li>", esc(e));
            }
            s.push_str("</ul>");
        }
        if !rec.routes.is_empty() {
            s.push_str("<details class=\"routes\"><summary>routing-table changes</summary><pre>");
            for (host, sign, line) in &rec.routes {
                let class = if *sign == '+' { "add" } else { "del" };
                let _ = writeln!(
                    s,
                    "<span class=\"{class}\">{sign} {}: {}</span>",
                    esc(host),
                    esc(line)
                );
            }
            s.push_str("</pre></details>");
        }
        s.push_str("</section>");
    }
    s.push_str("<h2>BGP timeline</h2><table id=\"bgp\"><thead><tr><th>t (s)</th><th>host</th><th>event</th><th>step</th></tr></thead><tbody>");
    for (i, rec) in recording.steps.iter().enumerate() {
        for (t, host, what) in &rec.bgp {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td><a href=\"#step-{}\">{}</a></td></tr>",
                esc(t),
                esc(host),
                esc(what),
                i + 1,
                i + 1
            );
        }
    }
    s.push_str("</tbody></table>");
    let flows: Vec<(usize, &Observed)> = recording
        .steps
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.flows.iter().map(move |f| (i + 1, f)))
        .collect();
    let nodes: BTreeSet<&str> = flows.iter().map(|(_, f)| f.node.as_str()).collect();
    s.push_str("<h2>Flows</h2><p>node <select id=\"flow-node\" onchange=\"filterFlows()\"><option value=\"\">all</option>");
    for n in &nodes {
        let _ = write!(s, "<option>{}</option>", esc(n));
    }
    s.push_str("</select> verdict <select id=\"flow-verdict\" onchange=\"filterFlows()\"><option value=\"\">all</option>");
    for v in ["FORWARDED", "DROPPED", "TRANSLATED", "TRACED"] {
        let _ = write!(s, "<option>{v}</option>");
    }
    let _ = write!(
        s,
        "</select> <span id=\"flow-count\">{}</span> of {} flows</p><table id=\"flows\" class=\"flows\"><thead><tr><th>step</th><th>node</th><th>flow</th></tr></thead><tbody>",
        flows.len(),
        flows.len()
    );
    for (step, f) in &flows {
        let _ = write!(
            s,
            "<tr data-node=\"{}\" data-verdict=\"{}\"><td><a href=\"#step-{step}\">{step}</a></td><td>{}</td><td>{}</td></tr>",
            esc(&f.node),
            f.flow.observation.verdict.name(),
            esc(&f.node),
            esc(&compact(f, false))
        );
    }
    s.push_str("</tbody></table></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_changes_are_lines_added_and_removed_per_host() {
        let snap = |lines: &[&str]| -> BTreeMap<String, BTreeSet<String>> {
            [(
                "r".to_string(),
                lines.iter().map(|l| l.to_string()).collect(),
            )]
            .into()
        };
        let c = changes(&snap(&["a", "b"]), &snap(&["b", "c"]));
        assert_eq!(
            c,
            [
                ("r".to_string(), '-', "a".to_string()),
                ("r".to_string(), '+', "c".to_string())
            ]
        );
    }

    #[test]
    fn curl_spreads_become_bars_and_text_is_escaped() {
        let out = [
            "30 x curl webpod".to_string(),
            "   20  Hostname: a<b".to_string(),
            "   10  Hostname: c".to_string(),
        ];
        let b = bars(&out);
        assert!(b.contains("width:66%") && b.contains("width:33%"), "{b}");
        assert!(b.contains("a&lt;b"), "{b}");
        assert_eq!(bars(&["no curl here".to_string()]), "");
    }
}
