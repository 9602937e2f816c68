//! Cilium's `CiliumLoadBalancerIPPool` (cilium.io/v2 and v2alpha1): the
//! address blocks LB-IPAM hands out to `LoadBalancer` services, and which
//! services a pool serves. What the pools decide is [`super::lbipam`]'s.

use core::net::IpAddr;

use alloc::vec::Vec;
use ipnet::IpNet;
use serde::Deserialize;

use super::meta::{ObjectMeta, option_from_str};
use super::selector::LabelSelector;
use crate::ipam::lb::Block;

/// A `CiliumLoadBalancerIPPool`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct LoadBalancerIPPool {
    /// The pool's name (pools are cluster-scoped).
    pub metadata: ObjectMeta,
    /// Blocks, selector and switches.
    #[serde(default)]
    pub spec: LoadBalancerIPPoolSpec,
}

/// `CiliumLoadBalancerIPPool.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIPPoolSpec {
    /// The address blocks, searched in order.
    #[serde(default)]
    pub blocks: Vec<PoolBlock>,
    /// `Yes` hands out the first and last address of `cidr` blocks too
    /// (absent means `No`).
    #[serde(default, rename = "allowFirstLastIPs")]
    pub allow_first_last_ips: Option<YesNo>,
    /// A disabled pool keeps its allocations but hands out no new address.
    #[serde(default)]
    pub disabled: bool,
    /// The services the pool serves; absent means every service.
    #[serde(default)]
    pub service_selector: Option<LabelSelector>,
}

/// `allowFirstLastIPs`: Cilium's CRD takes exactly `Yes` or `No`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum YesNo {
    /// `Yes`.
    Yes,
    /// `No`.
    No,
}

/// One `spec.blocks` entry: a `cidr`, or a `start`/`stop` range of one
/// family in order (anything else fails to deserialize at the entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawBlock")]
pub enum PoolBlock {
    /// `cidr: 172.16.1.0/24`.
    Cidr(IpNet),
    /// `start: 192.168.10.211`, `stop: 192.168.10.215`.
    Range(Block),
}

/// A block as written, before it is checked.
#[derive(Deserialize)]
struct RawBlock {
    #[serde(default, deserialize_with = "option_from_str")]
    cidr: Option<IpNet>,
    #[serde(default, deserialize_with = "option_from_str")]
    start: Option<IpAddr>,
    #[serde(default, deserialize_with = "option_from_str")]
    stop: Option<IpAddr>,
}

impl TryFrom<RawBlock> for PoolBlock {
    type Error = &'static str;

    fn try_from(raw: RawBlock) -> Result<Self, Self::Error> {
        const WHY: &str = "a block is a cidr, or a start and a stop of one family in order";
        match (raw.cidr, raw.start, raw.stop) {
            (Some(net), None, None) => Ok(PoolBlock::Cidr(net)),
            (None, Some(start), Some(stop)) => {
                Block::range(start, stop).map(PoolBlock::Range).ok_or(WHY)
            }
            _ => Err(WHY),
        }
    }
}

impl LoadBalancerIPPool {
    /// The allocator's blocks: `cidr` blocks without their first and last
    /// address unless `allowFirstLastIPs: Yes`.
    pub fn blocks(&self) -> Vec<Block> {
        let allow = self.spec.allow_first_last_ips == Some(YesNo::Yes);
        self.spec
            .blocks
            .iter()
            .map(|b| match *b {
                PoolBlock::Cidr(net) => Block::cidr(net, allow),
                PoolBlock::Range(block) => block,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::cilium::objects::tests::parse;

    const POOL: &str = "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: { name: cilium-pool }\nspec:\n  allowFirstLastIPs: \"No\"\n  blocks:\n  - cidr: 172.16.1.0/24\n  - { start: 192.168.10.211, stop: 192.168.10.215 }\n  serviceSelector: { matchLabels: { app: webpod } }\n";

    #[test]
    fn reads_blocks_of_both_shapes_and_both_versions() {
        for version in ["cilium.io/v2", "cilium.io/v2alpha1"] {
            let objects = parse(&POOL.replace("cilium.io/v2", version)).unwrap();
            let pool = &objects.lb_pools["cilium-pool"];
            let blocks = pool.blocks();
            assert_eq!(blocks.len(), 2);
            assert_eq!(
                blocks[0].first,
                "172.16.1.1".parse::<core::net::IpAddr>().unwrap()
            );
            assert_eq!(blocks[1].size(), 5);
            assert!(pool.spec.service_selector.is_some());
        }
    }

    #[test]
    fn bad_blocks_and_switches_fail_at_their_field() {
        let reversed = POOL.replace("stop: 192.168.10.215", "stop: 192.168.10.1");
        let e = parse(&reversed).unwrap_err();
        assert!(e.starts_with("spec.blocks[1]: a block is a cidr"), "{e}");
        let both = POOL.replace(
            "- cidr: 172.16.1.0/24",
            "- { cidr: 172.16.1.0/24, start: 10.0.0.1 }",
        );
        assert!(parse(&both).unwrap_err().starts_with("spec.blocks[0]"));
        let maybe = POOL.replace("\"No\"", "maybe");
        assert!(
            parse(&maybe)
                .unwrap_err()
                .starts_with("spec.allowFirstLastIPs")
        );
        let bad_cidr = POOL.replace("172.16.1.0/24", "172.16.1.0/33");
        assert!(
            parse(&bad_cidr)
                .unwrap_err()
                .starts_with("spec.blocks[0].cidr")
        );
    }
}
