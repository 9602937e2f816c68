//! Address management the control planes share.
//!
//! `lb` is LB-IPAM: LoadBalancer addresses from `CiliumLoadBalancerIPPool`s.
//! Pod CIDR allocation (cluster-pool) lives with the simulator's cluster model,
//! since a real agent reads its pod CIDRs from `CiliumNode` instead.

pub mod lb;
