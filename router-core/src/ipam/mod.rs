//! Address management the control planes share.
//!
//! `lb` is LB-IPAM: LoadBalancer addresses from `CiliumLoadBalancerIPPool`s;
//! `node` is a node's pod addresses inside its pod CIDR, as the simulator's
//! nodes and the agent (for its CNI plugin) hand them out. Splitting the
//! cluster's pools into node CIDRs (the operator's job) lives with the
//! simulator's cluster model, since a real agent reads its pod CIDRs from
//! `CiliumNode` instead.

pub mod lb;
pub mod node;
