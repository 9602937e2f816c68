//! `nexthop-agent status`: the agent's health in `cilium status`'s layout,
//! one line per part (Kubernetes, kube-proxy replacement, IPAM, BGP,
//! routing, Hubble, the XDP datapath), with `--verbose` the
//! KubeProxyReplacement details block (router-core's `cilium::table`, the
//! simulator's too) and with `--brief` `OK` or the parts that are not.
//!
//! Owns which parts are reported and when one is not OK. The figures come
//! from their owners: the controller's peers, the endpoints' IPAM, the flow
//! buffer, the kernel's devices.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use router_core::cilium::table::{self, KubeProxyReplacement};
use router_core::service::nodeport::PortRange;

use crate::controller::Controller;
use crate::endpoints::Endpoints;
use crate::hubble::Hubble;
use crate::kernel::KernelState;
use crate::services;

/// What the agent was started with, for its report.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Where the objects come from (`directory /etc/nexthop`, `Kubernetes API`).
    pub source: String,
    /// The interfaces the XDP datapath runs on (none: no datapath).
    pub interfaces: Vec<String>,
    /// The service settings, with `--kube-proxy-replacement`.
    pub kube_proxy_replacement: Option<services::Options>,
    /// Why the XDP datapath stopped, once it has.
    pub datapath: Failure,
}

/// Why a part stopped working, once it has (shared with its owner).
#[derive(Clone, Debug, Default)]
pub struct Failure(Arc<Mutex<Option<String>>>);

impl Failure {
    /// The part stopped, for this reason.
    pub fn fail(&self, why: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Why it stopped, if it has.
    pub fn why(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One part of the report: its name, whether it is OK, what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `IPAM`.
    pub name: &'static str,
    /// Whether the part works.
    pub ok: bool,
    /// Its line after the name.
    pub text: String,
}

/// The parts of the agent's report now.
pub async fn parts(
    setup: &Setup,
    controller: &Controller,
    endpoints: Option<&Endpoints>,
    hubble: Option<&Hubble>,
) -> Vec<Part> {
    let part = |name, ok, text: String| Part { name, ok, text };
    let mut parts = vec![part("Kubernetes", true, format!("Ok   {}", setup.source))];
    let kpr = match &setup.kube_proxy_replacement {
        Some(_) => format!("True   [{}]", setup.interfaces.join(", ")),
        None => "False".to_string(),
    };
    parts.push(part("KubeProxyReplacement", true, kpr));
    parts.push(part(
        "Cilium",
        true,
        format!("Ok   nexthop-agent {}", env!("CARGO_PKG_VERSION")),
    ));
    parts.push(match endpoints.map(Endpoints::ipam) {
        None => part("IPAM", true, "Disabled (no --cni-state-dir)".into()),
        Some(Ok((used, size, cidr))) => part(
            "IPAM",
            true,
            format!("IPv4: {used}/{size} allocated from {cidr}"),
        ),
        Some(Err(e)) => part("IPAM", false, format!("Waiting   {}", e.msg)),
    });
    let peers = controller.peers().await;
    let up = peers.iter().filter(|p| p.state == "established").count();
    parts.push(part(
        "BGP",
        true,
        format!("{up}/{} sessions established", peers.len()),
    ));
    let host = if setup.interfaces.is_empty() {
        "Legacy"
    } else {
        "BPF"
    };
    parts.push(part(
        "Routing",
        true,
        format!("Network: Native   Host: {host}"),
    ));
    parts.push(match hubble {
        None => part("Hubble", true, "Disabled".into()),
        Some(h) => {
            let (kept, bad) = h.counts();
            let capacity = h.capacity();
            let mut text = format!(
                "Ok   Current/Max Flows: {kept}/{capacity} ({:.2}%)",
                100.0 * kept as f64 / capacity as f64
            );
            if bad > 0 {
                text.push_str(&format!(", {bad} bad events"));
            }
            part("Hubble", true, text)
        }
    });
    parts.push(if setup.interfaces.is_empty() {
        part("Datapath", true, "Disabled".into())
    } else if let Some(why) = setup.datapath.why() {
        part("Datapath", false, format!("Failed   {why}"))
    } else {
        let pods = endpoints.map_or(0, |e| e.rows().len().saturating_sub(1));
        part(
            "Datapath",
            true,
            format!(
                "XDP   [{}] and {pods} pod interfaces",
                setup.interfaces.join(", ")
            ),
        )
    });
    parts
}

/// The report's lines: every part, or with `brief` `OK` or the parts that
/// are not; with `verbose` the KubeProxyReplacement details too.
pub fn lines(parts: &[Part], brief: bool, details: Option<String>) -> Vec<String> {
    if brief {
        let failing: Vec<String> = parts
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("{}: {}", p.name, p.text))
            .collect();
        return if failing.is_empty() {
            vec!["OK".into()]
        } else {
            failing
        };
    }
    let mut out: Vec<String> = parts
        .iter()
        .map(|p| format!("{:<25}{}", format!("{}:", p.name), p.text))
        .collect();
    if let Some(details) = details {
        out.extend(details.lines().map(String::from));
    }
    out
}

/// The KubeProxyReplacement details block for `setup`, with the devices'
/// addresses as the kernel has them now (the first with an address is the
/// direct-routing device).
pub fn details(setup: &Setup) -> Option<String> {
    let options = setup.kube_proxy_replacement.as_ref()?;
    let state = KernelState::read().ok();
    let devices: Vec<(String, Vec<IpAddr>)> = setup
        .interfaces
        .iter()
        .map(|name| {
            let addrs = state
                .as_ref()
                .and_then(|s| s.links.iter().find(|l| &l.name == name))
                .map(|l| {
                    let v4 = l.v4.iter().copied().map(IpAddr::V4);
                    v4.chain(l.v6.iter().copied().map(IpAddr::V6)).collect()
                })
                .unwrap_or_default();
            (name.clone(), addrs)
        })
        .collect();
    let direct_routing = devices
        .iter()
        .find(|(_, addrs)| !addrs.is_empty())
        .map(|(name, _)| name.clone());
    Some(table::kube_proxy_replacement(&KubeProxyReplacement {
        mode: options.mode,
        algorithm: options.algorithm,
        maglev_table_size: options.maglev.table_size,
        node_ports: PortRange::DEFAULT,
        devices,
        direct_routing,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &'static str, ok: bool, text: &str) -> Part {
        Part {
            name,
            ok,
            text: text.into(),
        }
    }

    #[test]
    fn brief_is_ok_or_the_failing_parts_and_the_full_form_is_aligned() {
        let good = [
            part("Kubernetes", true, "Ok   directory /x"),
            part("IPAM", true, "IPv4: 3/254 allocated from 10.244.1.0/24"),
        ];
        assert_eq!(lines(&good, true, None), ["OK"]);
        assert_eq!(
            lines(&good, false, None),
            [
                "Kubernetes:              Ok   directory /x",
                "IPAM:                    IPv4: 3/254 allocated from 10.244.1.0/24",
            ]
        );
        let bad = [part("IPAM", false, "Waiting   no pod CIDR")];
        assert_eq!(lines(&bad, true, None), ["IPAM: Waiting   no pod CIDR"]);
        let verbose = lines(
            &good,
            false,
            Some("KubeProxyReplacement Details:\n  Mode: x\n".into()),
        );
        assert_eq!(verbose.len(), 4);
    }
}
