//! Cilium's BGP control-plane model, shared by the node agent and the
//! simulator: the Kubernetes and Cilium objects it reads (as their YAML
//! spells them) and the pure selection logic that turns them into what one
//! node runs.
//!
//! - [`meta`]: `apiVersion`/`kind` and `metadata`.
//! - [`selector`]: label selectors.
//! - [`kube`]: `Node`, `CiliumNode`, `CiliumEndpoint`, `Service`,
//!   `EndpointSlice`, `Secret`;
//!   [`lbpool`]: `CiliumLoadBalancerIPPool`.
//! - [`bgp`]: `CiliumBGPClusterConfig`, `CiliumBGPPeerConfig`, `CiliumBGPAdvertisement`.
//! - [`objects`]: the kinds understood and the set of objects.
//! - [`desired`](mod@desired): objects + node name → instances, peers and prefixes.
//! - [`export`]: originated routes' attributes and per-peer export policies.
//! - [`session`]: a desired peer's BGP session settings.
//! - [`lbipam`]: pools + services → each LoadBalancer service's addresses
//!   and the pools' status, as Cilium's operator decides them.
//! - [`l2policy`]: `CiliumL2AnnouncementPolicy`; [`l2announce`]: which
//!   service addresses a node answers ARP/NDP for, one lease per service.
//! - [`limits`]: bounds on YAML input (size, nesting) both runtimes apply.
//! - [`node`]: one node's BGP control plane — reconciles its speakers with
//!   the objects and reports their status; what both runtimes drive.
//! - [`ipcache`]: what a node knows of an address (a pod with its identity,
//!   a node, the world), the names flows are printed with.
//! - [`routing`]: the routes the agent installs for its routing mode
//!   (own pod CIDR, autoDirectNodeRoutes, tunnels).
//! - [`status`]: what a control plane reports about peers and routes;
//!   [`table`]: `bgp peers` / `bgp routes` tables of it.
//!
//! Unknown fields are accepted and ignored, as Kubernetes' structural schema
//! would prune them; a wrong type or a missing required field fails to
//! deserialize at that field (wrap the deserializer in `serde_path_to_error`
//! to get its path).

pub mod bgp;
pub mod desired;
pub mod export;
pub mod ipcache;
pub mod kube;
pub mod l2announce;
pub mod l2policy;
pub mod lbipam;
pub mod lbpool;
pub mod limits;
pub mod meta;
pub mod node;
pub mod objects;
pub mod routing;
pub mod selector;
pub mod session;
pub mod status;
pub mod table;

pub use desired::{
    DesiredFamily, DesiredInstance, DesiredNode, DesiredPeer, LocalEndpoints, desired,
    local_endpoints,
};
pub use objects::{Kind, Object, Objects};
