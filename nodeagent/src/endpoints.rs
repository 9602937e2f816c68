//! The node's pods as its CNI plugin (`nexthop-cni`) adds them: an address
//! from the node's pod CIDR, a veth pair (`lxc…` on the node, the pod's
//! interface in its network namespace), the pod's default route via the
//! node's router address on `cilium_host`, and the node's route to the pod.
//!
//! Owns the endpoints and their allocations, kept in a state file so that
//! an agent that restarts hands out no address twice and still knows the
//! pods it set up; the set of `lxc` interfaces the XDP datapath attaches to
//! (a watch channel). Which address a pod gets is router-core's
//! `ipam::node` (the simulator's nodes use the same allocator); the pod CIDR
//! is the node's `CiliumNode` or `Node` (`Objects::pod_cidrs`). Does not own
//! the CNI protocol (`cni`) nor the datapath.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::{IpNet, Ipv4Net};
use router_core::cilium::Objects;
use router_core::cilium::ipcache::IpCache;
use router_core::cilium::table::{EndpointRow, endpoint_id};
use router_core::flow::hubble::identity;
use router_core::hash::Fnv1a;
use router_core::ipam::node::NodeIpam;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cni::{CniError, code};
use crate::kernel::ip;

/// The device holding the node's router address (Cilium's name).
pub const CILIUM_HOST: &str = "cilium_host";

/// What the plugin asks for: one container's interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: the path of the pod's network namespace.
    pub netns: PathBuf,
    /// `CNI_IFNAME`: the pod's interface.
    pub ifname: String,
    /// `K8S_POD_NAMESPACE` of `CNI_ARGS`, if given.
    pub namespace: Option<String>,
    /// `K8S_POD_NAME` of `CNI_ARGS`, if given.
    pub pod: Option<String>,
}

/// One pod's endpoint, as set up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Cilium's endpoint ID on this node.
    pub id: u16,
    /// The request it was set up for.
    pub request: EndpointRequest,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The pod's gateway: the node's router address.
    pub gateway: Ipv4Addr,
    /// The node's end of the veth pair.
    pub host_interface: String,
    /// Its MAC.
    pub host_mac: String,
    /// The pod's end's MAC.
    pub mac: String,
}

/// What the state file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    /// The node's router address (on `cilium_host`).
    router: Option<Ipv4Addr>,
    /// Endpoints by container ID.
    endpoints: BTreeMap<String, Endpoint>,
}

#[derive(Debug)]
struct State {
    node: String,
    file: PathBuf,
    saved: Saved,
    ipam: Option<NodeIpam>,
    ipcache: IpCache,
}

/// The node's endpoints, shared by the query socket and the controller.
#[derive(Clone, Debug)]
pub struct Endpoints {
    state: Arc<Mutex<State>>,
    interfaces: watch::Sender<BTreeSet<String>>,
}

/// An index drawn from `name`: the same name, the same pick.
fn draw(name: &str) -> impl FnOnce(u64) -> u64 {
    let mut h = Fnv1a::new();
    h.write(name.as_bytes());
    let value = h.finish();
    move |free| value % free
}

/// The MAC of `interface` (inside `netns` when given).
fn mac_of(netns: Option<&Path>, interface: &str) -> Result<String, String> {
    let out = ip(netns, &["-json", "link", "show", "dev", interface])?;
    let links: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -json link: {e}"))?;
    links[0]["address"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("{interface} has no MAC"))
}

/// `ethtool -K` settings on `interface` inside `netns`: transmit checksum
/// offload off and GRO on, which a veth end needs for the XDP datapath to
/// redirect frames into its peer (docs/datapath.md, "Veth ports").
fn prepare_pod_end(netns: &Path, interface: &str) -> Result<(), String> {
    use nexthop_offload_bpf::datapath::{ethtool, ethtool_set};
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    let interface = interface.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a file we hold open, in a thread of our own
            // that does nothing else and ends here.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "entering {}: {}",
                    netns.display(),
                    std::io::Error::last_os_error()
                ));
            }
            ethtool_set(&interface, ethtool::TX_CHECKSUM, false)
                .and_then(|()| ethtool_set(&interface, ethtool::GRO, true))
                .map_err(|e| format!("ethtool on {interface} in {}: {e}", netns.display()))
        })
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
    })
}

impl Endpoints {
    /// The endpoints of node `node`, kept in `dir` (created if missing):
    /// those an earlier run set up are read back.
    pub fn open(dir: &Path, node: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = dir.join("endpoints.json");
        let saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not an endpoint state file: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let interfaces = saved
            .endpoints
            .values()
            .map(|e| e.host_interface.clone())
            .collect();
        Ok(Endpoints {
            state: Arc::new(Mutex::new(State {
                node: node.into(),
                file,
                saved,
                ipam: None,
                ipcache: IpCache::new(),
            })),
            interfaces: watch::channel(interfaces).0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `lxc` interfaces of the endpoints, as they change.
    pub fn interfaces(&self) -> watch::Receiver<BTreeSet<String>> {
        self.interfaces.subscribe()
    }

    /// Take in the cluster's objects: the node's pod CIDR (its first IPv4
    /// one) and the names of pods for `endpoint list`. A CIDR that no longer
    /// holds an endpoint's address is logged; the endpoint stays.
    pub fn set_objects(&self, objects: &Objects) {
        let mut state = self.lock();
        state.ipcache = IpCache::of(objects);
        let cidr = objects
            .pod_cidrs(&state.node)
            .into_iter()
            .find_map(|c| match c {
                IpNet::V4(v4) => Some(v4),
                IpNet::V6(_) => None,
            });
        if state.ipam.as_ref().map(NodeIpam::cidr) == cidr {
            return;
        }
        let Some(cidr) = cidr else {
            state.ipam = None;
            return;
        };
        let mut ipam = NodeIpam::new(cidr);
        let taken = state.saved.router.into_iter().chain(
            state
                .saved
                .endpoints
                .values()
                .map(|e| e.ip)
                .collect::<Vec<_>>(),
        );
        for addr in taken {
            if !ipam.reserve(addr) {
                warn!(%addr, %cidr, "an endpoint's address is outside the node's pod CIDR");
            }
        }
        info!(%cidr, used = ipam.used().len(), "pod CIDR");
        state.ipam = Some(ipam);
    }

    /// The addresses taken (the router's included), of how many, in which
    /// CIDR; or why there is none.
    pub fn ipam(&self) -> Result<(usize, u64, Ipv4Net), CniError> {
        let summary = self.lock().ipam.as_ref().map(|ipam| {
            let cidr = ipam.cidr();
            let size = (1u64 << (32 - cidr.prefix_len())).saturating_sub(2);
            (ipam.used().len(), size, cidr)
        });
        summary.ok_or_else(|| self.no_cidr())
    }

    /// Whether pods can be added now: the node's pod CIDR is known.
    pub fn ready(&self) -> Result<(), CniError> {
        let known = self.lock().ipam.is_some();
        if known { Ok(()) } else { Err(self.no_cidr()) }
    }

    fn no_cidr(&self) -> CniError {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "no pod CIDR for node {} yet (its CiliumNode spec.ipam.podCIDRs or Node spec.podCIDRs)",
                self.lock().node
            ),
        )
    }

    /// Set up the pod of `request`: its address, interfaces and routes.
    /// Adding a container already set up answers with what it has.
    pub fn add(&self, request: &EndpointRequest) -> Result<Endpoint, CniError> {
        validate(request)?;
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Some(e) = state.saved.endpoints.get(&request.container_id) {
            return Ok(e.clone());
        }
        let Some(ipam) = state.ipam.as_mut() else {
            drop(guard);
            return Err(self.no_cidr());
        };
        let cidr = ipam.cidr();
        let gateway = match state.saved.router {
            Some(router) => router,
            None => {
                let router = ipam.allocate(draw(&state.node)).ok_or_else(|| full(cidr))?;
                state.saved.router = Some(router);
                router
            }
        };
        let addr = ipam
            .allocate(draw(&request.container_id))
            .ok_or_else(|| full(cidr))?;
        let used: BTreeSet<u16> = state.saved.endpoints.values().map(|e| e.id).collect();
        let id = endpoint_id(&request.container_id, &used);
        let host_interface = host_interface(&request.container_id);
        match plumb(request, addr, gateway, &host_interface) {
            Ok((host_mac, mac)) => {
                let endpoint = Endpoint {
                    id,
                    request: request.clone(),
                    ip: addr,
                    gateway,
                    host_interface,
                    host_mac,
                    mac,
                };
                state
                    .saved
                    .endpoints
                    .insert(request.container_id.clone(), endpoint.clone());
                let saved = save(state);
                self.publish(state);
                drop(guard);
                saved?;
                info!(container = %request.container_id, ip = %addr, interface = %endpoint.host_interface, "endpoint added");
                Ok(endpoint)
            }
            Err(e) => {
                if let Some(ipam) = state.ipam.as_mut() {
                    ipam.release(addr);
                }
                drop(guard);
                let _ = ip(None, &["link", "del", &host_interface]);
                Err(CniError::new(code::IO_FAILURE, e))
            }
        }
    }

    /// Tear down the pod of `request`: its interfaces go, its address comes
    /// back. An unknown container is no error (DEL may come twice).
    pub fn del(&self, request: &EndpointRequest) -> Result<(), CniError> {
        let mut state = self.lock();
        let Some(endpoint) = state.saved.endpoints.remove(&request.container_id) else {
            return Ok(());
        };
        if let Some(ipam) = state.ipam.as_mut() {
            ipam.release(endpoint.ip);
        }
        // Deleting the node's end deletes the pair; gone already is fine
        // (the pod's namespace went first).
        let _ = ip(None, &["link", "del", &endpoint.host_interface]);
        let saved = save(&state);
        self.publish(&state);
        drop(state);
        info!(container = %request.container_id, ip = %endpoint.ip, "endpoint deleted");
        saved
    }

    /// Whether the pod of `request` is set up as it should be: known, its
    /// interface in its namespace with its address.
    pub fn check(&self, request: &EndpointRequest) -> Result<Endpoint, CniError> {
        validate(request)?;
        let endpoint = self
            .lock()
            .saved
            .endpoints
            .get(&request.container_id)
            .cloned()
            .ok_or_else(|| {
                CniError::new(
                    code::UNKNOWN_CONTAINER,
                    format!("container {} has no endpoint", request.container_id),
                )
            })?;
        let addrs = ip(
            Some(&request.netns),
            &["-json", "addr", "show", "dev", &request.ifname],
        )
        .map_err(|e| CniError::new(code::IO_FAILURE, e))?;
        if !addrs.contains(&format!("\"{}\"", endpoint.ip)) {
            return Err(CniError::new(
                code::IO_FAILURE,
                format!(
                    "{} in {} does not have {}",
                    request.ifname,
                    request.netns.display(),
                    endpoint.ip
                ),
            ));
        }
        Ok(endpoint)
    }

    /// `endpoint list` rows: the node's own endpoint and its pods, named by
    /// their CiliumEndpoints when the cluster has them.
    pub fn rows(&self) -> Vec<EndpointRow> {
        let state = self.lock();
        let used: BTreeSet<u16> = state.saved.endpoints.values().map(|e| e.id).collect();
        let mut rows = vec![EndpointRow::host(&state.node, &used)];
        for e in state.saved.endpoints.values() {
            let known = state.ipcache.endpoint(&state.node, IpAddr::V4(e.ip));
            let (identity, labels) = if known.pod.is_empty() {
                (identity::INIT, vec!["reserved:init".to_string()])
            } else {
                (known.identity, known.labels)
            };
            rows.push(EndpointRow {
                id: e.id,
                identity,
                labels,
                ipv4: Some(e.ip),
                ipv6: None,
                status: "ready".into(),
            });
        }
        rows
    }

    fn publish(&self, state: &State) {
        let interfaces: BTreeSet<String> = state
            .saved
            .endpoints
            .values()
            .map(|e| e.host_interface.clone())
            .collect();
        self.interfaces.send_if_modified(|current| {
            let changed = *current != interfaces;
            *current = interfaces;
            changed
        });
    }
}

fn full(cidr: Ipv4Net) -> CniError {
    CniError::new(
        code::TRY_AGAIN_LATER,
        format!("no free address left in the pod CIDR {cidr}"),
    )
}

fn validate(request: &EndpointRequest) -> Result<(), CniError> {
    let bad = |what: &str| Err(CniError::new(code::INVALID_ENVIRONMENT, what.to_string()));
    if request.container_id.is_empty() {
        return bad("CNI_CONTAINERID is empty");
    }
    if request.ifname.is_empty() || request.ifname.len() >= 16 || request.ifname.contains('/') {
        return bad("CNI_IFNAME is not an interface name");
    }
    if !request.netns.is_absolute() {
        return bad("CNI_NETNS is not an absolute path");
    }
    if !request.netns.exists() {
        return Err(CniError::new(
            code::IO_FAILURE,
            format!(
                "network namespace {} does not exist",
                request.netns.display()
            ),
        ));
    }
    Ok(())
}

/// The node's end of a container's veth pair: `lxc` and 8 hex digits of
/// its container ID's hash (Cilium's devices are `lxc` + hex too).
fn host_interface(container_id: &str) -> String {
    let mut h = Fnv1a::new();
    h.write(container_id.as_bytes());
    format!("lxc{:08x}", h.finish() as u32)
}

/// Create the veth pair, move the pod's end into its namespace, give it its
/// address and routes, and route the address to the node's end with the
/// pod's MAC as a permanent neighbour; both MACs.
fn plumb(
    request: &EndpointRequest,
    addr: Ipv4Addr,
    gateway: Ipv4Addr,
    host: &str,
) -> Result<(String, String), String> {
    ensure_cilium_host(gateway)?;
    let netns = request.netns.as_path();
    let pod = request.ifname.as_str();
    let temporary = format!("tmp{}", &host[3..]);
    ip(
        None,
        &[
            "link", "add", host, "type", "veth", "peer", "name", &temporary,
        ],
    )?;
    let netns_arg = netns.to_string_lossy();
    ip(None, &["link", "set", &temporary, "netns", &netns_arg])?;
    ip(Some(netns), &["link", "set", &temporary, "name", pod])?;
    ip(
        Some(netns),
        &["addr", "add", &format!("{addr}/32"), "dev", pod],
    )?;
    ip(Some(netns), &["link", "set", pod, "up"])?;
    let gw = gateway.to_string();
    ip(
        Some(netns),
        &["route", "add", &gw, "dev", pod, "scope", "link"],
    )?;
    ip(
        Some(netns),
        &["route", "add", "default", "via", &gw, "dev", pod],
    )?;
    prepare_pod_end(netns, pod)?;
    ip(None, &["link", "set", host, "up"])?;
    ip(None, &["route", "add", &format!("{addr}/32"), "dev", host])?;
    // The pod's MAC is known: a permanent neighbour, so the datapath
    // forwards to the pod from its first packet (Cilium's endpoint map).
    let mac = mac_of(Some(netns), pod)?;
    ip(
        None,
        &[
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac,
            "dev",
            host,
            "nud",
            "permanent",
        ],
    )?;
    Ok((mac_of(None, host)?, mac))
}

/// The node's router address on `cilium_host` (one end of a veth pair
/// with `cilium_net`, as Cilium makes it), up.
fn ensure_cilium_host(router: Ipv4Addr) -> Result<(), String> {
    if ip(None, &["link", "show", "dev", CILIUM_HOST]).is_err() {
        ip(
            None,
            &[
                "link",
                "add",
                CILIUM_HOST,
                "type",
                "veth",
                "peer",
                "name",
                "cilium_net",
            ],
        )?;
        ip(None, &["link", "set", "cilium_net", "up"])?;
    }
    let addrs = ip(None, &["-json", "addr", "show", "dev", CILIUM_HOST])?;
    if !addrs.contains(&format!("\"{router}\"")) {
        ip(
            None,
            &["addr", "add", &format!("{router}/32"), "dev", CILIUM_HOST],
        )?;
    }
    ip(None, &["link", "set", CILIUM_HOST, "up"])?;
    Ok(())
}

fn save(state: &State) -> Result<(), CniError> {
    let text = serde_json::to_vec_pretty(&state.saved).expect("endpoints serialize");
    let tmp = state.file.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &state.file))
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("saving {}: {e}", state.file.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(cidr: &str) -> Objects {
        let mut o = Objects::default();
        let node: router_core::cilium::kube::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDRs": [cidr]},
        }))
        .unwrap();
        o.nodes.insert("n1".into(), node);
        o
    }

    #[test]
    fn no_pod_cidr_is_try_again_later_and_a_cidr_makes_it_ready() {
        let dir = std::env::temp_dir().join(format!("nexthop-ep-{}", std::process::id()));
        let eps = Endpoints::open(&dir, "n1").unwrap();
        let err = eps.ready().unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
        assert!(err.msg.contains("node n1"), "{}", err.msg);
        eps.set_objects(&objects("10.244.1.0/24"));
        assert!(eps.ready().is_ok());
        assert_eq!(eps.rows().len(), 1, "the host's own endpoint");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_requests_name_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("nexthop-ep-bad-{}", std::process::id()));
        let eps = Endpoints::open(&dir, "n1").unwrap();
        eps.set_objects(&objects("10.244.1.0/24"));
        let request = |netns: &str, ifname: &str| EndpointRequest {
            container_id: "c1".into(),
            netns: netns.into(),
            ifname: ifname.into(),
            namespace: None,
            pod: None,
        };
        let e = eps.add(&request("relative", "eth0")).unwrap_err();
        assert_eq!(e.code, code::INVALID_ENVIRONMENT);
        let e = eps.add(&request("/nonexistent/netns", "eth0")).unwrap_err();
        assert!(e.msg.contains("/nonexistent/netns"), "{}", e.msg);
        let e = eps.add(&request("/proc/self/ns/net", "a/b")).unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"), "{}", e.msg);
        assert!(
            eps.del(&request("/nonexistent", "eth0")).is_ok(),
            "DEL of nothing"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("nexthop-ep-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("endpoints.json"), "{not json").unwrap();
        let err = Endpoints::open(&dir, "n1").unwrap_err();
        assert!(err.contains("endpoints.json"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
