//! A lab brought to life: hosts, links and Kubernetes workloads on the engine.
//!
//! `ipam` hands out pod CIDRs and addresses; `workloads` keeps the Kubernetes
//! objects and scheduling decisions. Building hosts from them comes next.

pub mod ipam;
pub mod routes;
pub mod workloads;
