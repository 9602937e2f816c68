//! `nexthop-agent datapath`: the XDP datapath (nexthop-offload-bpf) mirroring
//! the node's kernel routing state on chosen interfaces.
//!
//! `run` loads the datapath pinned under a bpffs directory, syncs it from
//! [`crate::kernel`] every interval (only when something changed; the sync
//! itself never shows packets a mix of old and new tables), attaches it to the
//! interfaces once the first sync succeeded, and exits leaving it attached:
//! forwarding continues until the next `run` takes over the pinned maps and
//! links, or `remove` detaches it. Inside `nexthop-agent run` it also serves
//! the node's services (`--kube-proxy-replacement`: the XDP service stage,
//! fed the controller's table). `stats` reads the per-reason counters of
//! the pinned datapath. Owns the loop and the two queries, not the tables.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aya::programs::XdpMode;
use nexthop_offload_bpf::datapath::{
    self, Capacity, Datapath, pinned_flow_counters, pinned_reason_counts, remove_pins,
};
use nexthop_offload_bpf::flows::Limit;
use nexthop_offload_bpf::snapshot::Snapshot;
use router_core::PortId;
use router_core::datapath::Reason;
use tracing::{info, warn};

use crate::hubble::Hubble;
use crate::kernel::{HostTables, KernelState};
use crate::l2::Announced;
use crate::services::Served;
use nexthop_offload_bpf::services::ServiceMaps;
use tokio::sync::watch;

/// The default pin directory.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/nexthop";

/// What `datapath run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Interfaces to attach to, in port order.
    pub interfaces: Vec<String>,
    /// Those of them that face this node's pods (in-cluster traffic).
    pub pod_interfaces: Vec<String>,
    /// Where maps and links are pinned.
    pub pin_dir: PathBuf,
    /// How often the kernel state is read.
    pub interval: Duration,
    /// XDP attach mode.
    pub mode: XdpMode,
    /// Map sizes (must equal those of the datapath already pinned, if any).
    pub capacity: Capacity,
    /// Serve Prometheus metrics (packets per exit reason) on this address.
    pub metrics: Option<SocketAddr>,
    /// Attach socket-level load-balancing to this cgroup (v2) directory:
    /// a `connect()` or `sendmsg()` to a service from a process in it goes
    /// to a backend (`--kube-proxy-replacement`).
    pub cgroup: Option<PathBuf>,
    /// Record flow events into this buffer (`--enable-hubble`); `None`
    /// switches them off.
    pub flows: Option<Flows>,
}

/// Where the datapath's flow events go, and at what rate.
#[derive(Debug, Clone)]
pub struct Flows {
    /// The node's flow buffer.
    pub hubble: Hubble,
    /// Events each CPU may send.
    pub limit: Limit,
}

/// What the controller feeds the datapath loop inside `nexthop-agent run`.
#[derive(Debug, Default)]
pub struct Feeds {
    /// The addresses L2 announcements lead.
    pub announced: Option<watch::Receiver<Announced>>,
    /// The service table and settings (`--kube-proxy-replacement`); `None`
    /// inside until the controller first read the objects.
    pub services: Option<watch::Receiver<Option<Served>>>,
    /// The pods' `lxc` interfaces as the CNI plugin adds and deletes them:
    /// attached as pod interfaces once they exist.
    pub pods: Option<watch::Receiver<BTreeSet<String>>>,
}

/// The snapshot of the kernel state now, with the addresses L2
/// announcements lead answered on their interfaces and the services served;
/// the ports are `opts`' interfaces and those of `pods` that exist (a pod's
/// interface may be gone before its CNI DEL). Also the number of routes and
/// the ports.
fn snapshot(
    opts: &RunOptions,
    pods: &BTreeSet<String>,
    announced: &Announced,
    served: Option<&Served>,
) -> Result<(Snapshot, usize, Vec<String>), String> {
    let state = KernelState::read()?;
    let existing = pods
        .iter()
        .filter(|p| state.links.iter().any(|l| &l.name == *p));
    let interfaces: Vec<String> = opts
        .interfaces
        .iter()
        .chain(existing.clone())
        .cloned()
        .collect();
    let pod_interfaces: Vec<&String> = opts.pod_interfaces.iter().chain(existing).collect();
    let mut tables = HostTables::new(&state, &interfaces)?;
    tables.announce(&interfaces, announced);
    tables.owned.config.tunnel = served.and_then(|s| s.tunnel);
    let pods: BTreeSet<PortId> = (interfaces.iter().enumerate())
        .filter(|(_, name)| pod_interfaces.contains(name))
        .map(|(i, _)| PortId(i as u16))
        .collect();
    let mut snapshot = Snapshot::new(&tables.owned.tables(), |id| {
        tables.ifindex.get(&id).copied()
    })
    .map_err(|e| e.to_string())?
    .with_pod_ports(&pods);
    snapshot.services = served
        .map(|s| {
            let maps = ServiceMaps::new(&s.config, &s.table, &pods)?;
            match &s.masquerade {
                Some(m) => maps.with_masquerade(m),
                None => Ok(maps),
            }
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((snapshot, state.routes.len(), interfaces))
}

/// The ports a datapath runs on and what is attached.
struct Ports {
    /// The pods' interfaces (the CNI's endpoints).
    pods: BTreeSet<String>,
    /// The interfaces the program is attached to.
    attached: BTreeSet<String>,
}

/// Sync when the kernel state changed (the number of routes and entries
/// written), then attach to the ports that have none yet and forget the
/// pods' interfaces that are gone.
fn sync(
    dp: &mut Datapath,
    opts: &RunOptions,
    ports: &mut Ports,
    announced: &Announced,
    served: Option<&Served>,
    last: &mut Option<Snapshot>,
) -> Result<Option<(usize, usize)>, String> {
    let (snapshot, routes, interfaces) = snapshot(opts, &ports.pods, announced, served)?;
    let written = if last.as_ref() == Some(&snapshot) {
        None
    } else {
        let written = dp.sync(&snapshot).map_err(|e| e.to_string())?;
        *last = Some(snapshot);
        Some((routes, written))
    };
    for interface in &interfaces {
        if !ports.attached.contains(interface) {
            dp.attach(interface, opts.mode)
                .map_err(|e| format!("attaching to {interface}: {e}"))?;
            ports.attached.insert(interface.clone());
            info!(interface, "datapath attached");
        }
    }
    let gone: Vec<String> = ports
        .attached
        .iter()
        .filter(|i| !interfaces.contains(i))
        .cloned()
        .collect();
    for interface in gone {
        dp.forget(&interface).map_err(|e| e.to_string())?;
        ports.attached.remove(&interface);
        info!(interface, "pod interface gone");
    }
    Ok(written)
}

/// `datapath run`; inside `nexthop-agent run`, `feeds.announced` carries
/// the addresses L2 announcements lead, synced as soon as they change, and
/// withdrawn when the loop ends (the sender dropped, or a signal);
/// `feeds.services` the services to serve, synced as soon as they change
/// and left in place when the loop ends (the pinned datapath goes on
/// serving them, its connections included, until the next run).
pub async fn run(opts: &RunOptions, feeds: Feeds) -> Result<(), String> {
    let Feeds {
        mut announced,
        mut services,
        pods: mut pod_feed,
    } = feeds;
    let pods_now = |p: &Option<watch::Receiver<BTreeSet<String>>>| {
        p.as_ref().map(|r| r.borrow().clone()).unwrap_or_default()
    };
    let mut ports = Ports {
        pods: pods_now(&pod_feed),
        attached: BTreeSet::new(),
    };
    let led = |a: &Option<watch::Receiver<Announced>>| {
        a.as_ref().map(|r| r.borrow().clone()).unwrap_or_default()
    };
    let served =
        |s: &Option<watch::Receiver<Option<Served>>>| s.as_ref().and_then(|r| r.borrow().clone());
    // A datapath taken over from an earlier run serves its services and
    // their connections meanwhile: wait for the table rather than sync none.
    if let Some(rx) = &mut services {
        while rx.borrow().is_none() {
            if rx.changed().await.is_err() {
                return Err("the controller stopped before it read the objects".into());
            }
        }
    }
    let root = Path::new("/sys/fs/bpf");
    if opts.pin_dir.starts_with(root) {
        datapath::mount_bpffs(root).map_err(|e| e.to_string())?;
    }
    let mut dp = Datapath::load_pinned(&opts.capacity, &opts.pin_dir).map_err(|e| e.to_string())?;
    info!(pin_dir = %opts.pin_dir.display(), half = dp.active_half(), "datapath loaded");
    // Set either way: a pinned datapath keeps an earlier run's setting.
    dp.set_flows(opts.flows.as_ref().map(|f| f.limit))
        .map_err(|e| format!("flow events: {e}"))?;
    let reader = match (&opts.flows, dp.take_flow_reader()) {
        (Some(flows), Some(reader)) => {
            let hubble = flows.hubble.clone();
            info!(limit = ?flows.limit, "flow events on");
            Some(tokio::spawn(crate::hubble::read(reader, hubble)))
        }
        _ => None,
    };
    let mut last = None;
    let (routes, written) = sync(
        &mut dp,
        opts,
        &mut ports,
        &led(&announced),
        served(&services).as_ref(),
        &mut last,
    )?
    .expect("a first sync always writes");
    info!(routes, written, "kernel state mirrored");
    info!(interfaces = ?ports.attached, "datapath running");
    if let Some(cgroup) = &opts.cgroup {
        dp.attach_sockets(cgroup)
            .map_err(|e| format!("attaching socket-level load-balancing: {e}"))?;
        info!(cgroup = %cgroup.display(), "socket-level load-balancing attached");
    }
    let metrics = opts.metrics.map(|addr| {
        let pin_dir = opts.pin_dir.clone();
        tokio::spawn(async move {
            crate::metrics::serve_page(addr, move || {
                let counts = pinned_reason_counts(&pin_dir)
                    .and_then(|c| Ok((c, pinned_flow_counters(&pin_dir)?)));
                let page = match counts {
                    Ok((counts, flows)) => crate::metrics::render_datapath(&counts, &flows),
                    Err(e) => format!("# counters unavailable: {e}\n"),
                };
                std::future::ready(page)
            })
            .await
        })
    });
    let mut interval = tokio::time::interval(opts.interval);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        let changed = async {
            match &mut announced {
                Some(a) => a.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let table = async {
            match &mut services {
                Some(s) => s.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let pods_changed = async {
            match &mut pod_feed {
                Some(p) => p.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let cause = tokio::select! {
            _ = interval.tick() => "kernel state",
            following = changed => if following {
                "L2 announcements"
            } else {
                break;
            },
            following = table => if following {
                "the service table"
            } else {
                break;
            },
            following = pods_changed => if following {
                ports.pods = pods_now(&pod_feed);
                "the pods"
            } else {
                break;
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        let serving = served(&services);
        match sync(
            &mut dp,
            opts,
            &mut ports,
            &led(&announced),
            serving.as_ref(),
            &mut last,
        ) {
            Ok(Some((routes, written))) => info!(
                routes,
                written,
                half = dp.active_half(),
                "{cause} changed: synced"
            ),
            Ok(None) => {}
            Err(e) => warn!("kernel state not synced (the datapath keeps the last tables): {e}"),
        }
        if let Some(m) = &metrics
            && m.is_finished()
        {
            break;
        }
    }
    if announced.is_some() {
        // Nobody renews the leases once the agent is gone: the datapath
        // that stays attached must not go on answering for their addresses.
        let serving = served(&services);
        match sync(
            &mut dp,
            opts,
            &mut ports,
            &Announced::new(),
            serving.as_ref(),
            &mut last,
        ) {
            Ok(_) => info!("L2 announcements withdrawn from the datapath"),
            Err(e) => warn!("L2 announcements not withdrawn from the datapath: {e}"),
        }
    }
    if let Some(reader) = reader {
        // Nobody reads them once the agent is gone.
        reader.abort();
        if let Err(e) = dp.set_flows(None) {
            warn!("flow events not switched off: {e}");
        }
    }
    if let Some(m) = metrics
        && m.is_finished()
        && let Ok(Err(e)) = m.await
    {
        return Err(format!("metrics: {e}"));
    }
    info!(
        pin_dir = %opts.pin_dir.display(),
        "exiting; the datapath stays attached until the next run or `nexthop-agent datapath remove`"
    );
    Ok(())
}

/// [`run`] inside `nexthop-agent run`, on a thread of its own with its own
/// runtime: writing the maps (a first sync writes hundreds of thousands of
/// entries, a second second) must never stall the task that renews leases
/// and keeps BGP sessions alive. With feeds it ends when their senders are
/// dropped (the controller stopped), withdrawing L2 announcements first.
pub fn spawn(
    opts: RunOptions,
    feeds: Feeds,
) -> std::io::Result<std::thread::JoinHandle<Result<(), String>>> {
    std::thread::Builder::new()
        .name("datapath".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the datapath's runtime: {e}"))?;
            runtime.block_on(run(&opts, feeds))
        })
}

/// `datapath stats`: the per-reason counters as a table (with the flow
/// events sent and lost) or JSON.
pub fn stats(pin_dir: &Path, json: bool) -> Result<String, String> {
    let counts = pinned_reason_counts(pin_dir).map_err(|e| e.to_string())?;
    let rows: Vec<(Reason, u64)> = (0..Reason::COUNT as u8)
        .filter_map(|i| Some((Reason::from_index(i)?, counts[usize::from(i)])))
        .collect();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(r, n)| (format!("{r:?}"), (*n).into()))
            .collect();
        return Ok(serde_json::to_string_pretty(&map).expect("JSON of integers") + "\n");
    }
    let mut out = format!("{:<22} {:<9} {:>14}\n", "REASON", "ACTION", "PACKETS");
    for (reason, n) in rows {
        let action = format!("{:?}", reason.action()).to_lowercase();
        out.push_str(&format!(
            "{:<22} {action:<9} {n:>14}\n",
            format!("{reason:?}")
        ));
    }
    let flows = pinned_flow_counters(pin_dir).map_err(|e| e.to_string())?;
    out.push_str(&format!(
        "Flow events: {} sent, {} lost ({} rate-limited, {} ring full)\n",
        flows.sent,
        flows.lost(),
        flows.rate_limited,
        flows.ring_full
    ));
    Ok(out)
}

/// `datapath remove`: detach and free everything pinned under `pin_dir`.
pub fn remove(pin_dir: &Path) -> Result<(), String> {
    remove_pins(pin_dir).map_err(|e: datapath::Error| e.to_string())
}
