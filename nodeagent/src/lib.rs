//! The node agent (`nexthop-agent`): Cilium's BGP control plane and the XDP
//! datapath on a real Linux node. `run` reads Kubernetes/Cilium YAML from a directory (or watches the Kubernetes API), runs the
//! BGP sessions that select this node over kernel TCP (router-core's
//! sans-IO session), originates the node's pod CIDRs and reloads when the
//! files change; `bgp peers` and `bgp routes` query a running agent.
//!
//! - [`cli`]: the command line.
//! - [`config`]: the configuration directory; [`kube_source`]: the Kubernetes API instead.
//! - [`controller`]: the task that owns the node's BGP control plane
//!   (router-core's `cilium::node`) and carries out its actions; status.
//! - [`connection`]: connections as tasks that only move bytes;
//!   [`transport`]: kernel TCP (MD5, TTL).
//! - [`status`], [`api`], [`output`], [`metrics`]: queries and their answers;
//!   [`report`]: `status`, the agent's health as `cilium status` reports it.
//! - [`lease_store`]: leases for router-core's lease elector, in etcd or as
//!   Kubernetes Leases (`--lease-store`; `lease get|list`).
//! - [`kernel`]: the node's routes, neighbours and interfaces as router-core tables;
//!   [`routing`]: the routes the agent installs for its routing mode;
//!   [`offload`]: `datapath run|stats|remove`, the XDP datapath mirroring them.
//! - [`services`]: the node's service table (`service list`).
//! - [`hubble`]: the datapath's flow events, named and kept (`observe`).
//! - [`cni`]: the CNI plugin (`nexthop-cni`); [`endpoints`]: the pods it
//!   sets up through the agent (addresses, veths, routes; `endpoint list`).

pub mod api;
pub mod cli;
pub mod cni;
pub mod config;
pub mod connection;
pub mod controller;
pub mod endpoints;
pub mod hubble;
pub mod kernel;
pub mod kube_source;
pub mod l2;
pub mod lease_store;
pub mod metrics;
pub mod offload;
pub mod output;
pub mod report;
pub mod routing;
pub mod services;
pub mod status;
pub mod transport;
