//! BGP wire codec: every generated message survives emit then parse
//! unchanged, under every session context; the decoder never panics on
//! arbitrary or corrupted bytes, and what it accepts cleanly re-encodes to
//! the same value.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use router_core::bgp::wire::{
    Afi, Aggregator, AsPath, AsSegment, AttributeFlags, Capability, Community, DecodeContext,
    ErrorCode, ExtendedNextHop, Family, GracefulRestart, GracefulRestartFamily, LargeCommunity,
    Message, MpReach, MpUnreach, NextHop, Notification, Open, Origin, PathAttributes, Prefixes,
    RawAttribute, RefreshSubtype, RouteRefresh, SegmentType, Update,
};

/// Type codes the codec decodes: never generated as raw attributes.
const KNOWN_ATTRIBUTES: [u8; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 17, 18, 32];
/// Capability codes the codec decodes: never generated as unknown ones.
const KNOWN_CAPABILITIES: [u8; 5] = [1, 2, 5, 64, 65];

fn context() -> impl Strategy<Value = DecodeContext> {
    (any::<bool>(), any::<bool>()).prop_map(|(four_octet_as, extended)| {
        let mut ctx =
            DecodeContext::new(four_octet_as, [Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        if extended {
            ctx.extended_next_hop.insert(Family::IPV4_UNICAST);
        }
        ctx
    })
}

fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
}

fn family() -> impl Strategy<Value = Family> {
    (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family::new(afi, safi))
}

/// AS numbers that fit the session's AS_PATH encoding.
fn asn(four_octet: bool) -> BoxedStrategy<u32> {
    if four_octet {
        any::<u32>().boxed()
    } else {
        (0u32..=0xffff).boxed()
    }
}

fn as_path(four_octet: bool) -> impl Strategy<Value = AsPath> {
    let kind = prop_oneof![
        Just(SegmentType::Set),
        Just(SegmentType::Sequence),
        Just(SegmentType::ConfedSequence),
        Just(SegmentType::ConfedSet),
    ];
    vec(
        (kind, vec(asn(four_octet), 1..8)).prop_map(|(kind, asns)| AsSegment { kind, asns }),
        0..4,
    )
    .prop_map(|segments| AsPath { segments })
}

fn aggregator(four_octet: bool) -> impl Strategy<Value = Aggregator> {
    (asn(four_octet), any::<u32>()).prop_map(|(asn, a)| Aggregator {
        asn,
        address: Ipv4Addr::from(a),
    })
}

fn ipv6_next_hop() -> impl Strategy<Value = NextHop> {
    (any::<u128>(), option::of(any::<u128>())).prop_map(|(g, ll)| NextHop::Ipv6 {
        global: Ipv6Addr::from(g),
        link_local: ll.map(Ipv6Addr::from),
    })
}

fn mp_reach(extended_next_hop: bool) -> BoxedStrategy<MpReach> {
    let v4 = || vec(ipv4_net(), 0..6).prop_map(Prefixes::Ipv4);
    let v6 = vec(ipv6_net(), 0..6).prop_map(Prefixes::Ipv6);
    let v4_next_hop = any::<u32>().prop_map(|a| NextHop::Ipv4(Ipv4Addr::from(a)));
    let plain = prop_oneof![
        (v4_next_hop, v4()).prop_map(|(next_hop, nlri)| MpReach { next_hop, nlri }),
        (ipv6_next_hop(), v6).prop_map(|(next_hop, nlri)| MpReach { next_hop, nlri }),
    ];
    if extended_next_hop {
        prop_oneof![
            plain,
            (ipv6_next_hop(), v4()).prop_map(|(next_hop, nlri)| MpReach { next_hop, nlri }),
        ]
        .boxed()
    } else {
        plain.boxed()
    }
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        vec(ipv4_net(), 0..6).prop_map(Prefixes::Ipv4),
        vec(ipv6_net(), 0..6).prop_map(Prefixes::Ipv6),
    ]
    .prop_map(|withdrawn| MpUnreach { withdrawn })
}

fn raw_attributes() -> impl Strategy<Value = Vec<RawAttribute>> {
    let code = any::<u8>().prop_filter("decoded type code", |c| !KNOWN_ATTRIBUTES.contains(c));
    btree_map(
        code,
        (any::<bool>(), any::<bool>(), vec(any::<u8>(), 0..300)),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(type_code, (transitive, partial, value))| {
                let mut flags = AttributeFlags::OPTIONAL;
                flags.set(AttributeFlags::TRANSITIVE, transitive);
                flags.set(AttributeFlags::PARTIAL, partial);
                RawAttribute {
                    flags,
                    type_code,
                    value,
                }
            })
            .collect()
    })
}

fn attributes(ctx: &DecodeContext) -> impl Strategy<Value = PathAttributes> + use<> {
    let four = ctx.four_octet_as;
    let origin = prop_oneof![
        Just(Origin::Igp),
        Just(Origin::Egp),
        Just(Origin::Incomplete)
    ];
    // AS4_* are only ever carried to 2-octet speakers.
    let as4_path = if four {
        Just(None).boxed()
    } else {
        option::of(as_path(true)).boxed()
    };
    let as4_aggregator = if four {
        Just(None).boxed()
    } else {
        option::of(aggregator(true)).boxed()
    };
    let large = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(g, a, b)| LargeCommunity {
        global_admin: g,
        local_data_1: a,
        local_data_2: b,
    });
    (
        (
            option::of(origin),
            option::of(as_path(four)),
            option::of(any::<u32>().prop_map(Ipv4Addr::from)),
            option::of(any::<u32>()),
            option::of(any::<u32>()),
            any::<bool>(),
            option::of(aggregator(four)),
        ),
        (
            vec(any::<u32>().prop_map(Community), 0..6),
            option::of(mp_reach(!ctx.extended_next_hop.is_empty())),
            option::of(mp_unreach()),
            as4_path,
            as4_aggregator,
            vec(large, 0..4),
            raw_attributes(),
        ),
    )
        .prop_map(
            |(
                (origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator),
                (communities, mp_reach, mp_unreach, as4_path, as4_aggregator, large, unknown),
            )| PathAttributes {
                origin,
                as_path,
                next_hop,
                med,
                local_pref,
                atomic_aggregate,
                aggregator,
                communities,
                mp_reach,
                mp_unreach,
                as4_path,
                as4_aggregator,
                large_communities: large,
                unknown,
            },
        )
}

/// A well-formed UPDATE: mandatory attributes present whenever prefixes are announced.
fn update(ctx: &DecodeContext) -> impl Strategy<Value = Update> + use<> {
    (
        vec(ipv4_net(), 0..8),
        attributes(ctx),
        vec(ipv4_net(), 0..8),
    )
        .prop_map(|(withdrawn, mut attributes, nlri)| {
            let mp_nlri = attributes
                .mp_reach
                .as_ref()
                .is_some_and(|m| !m.nlri.is_empty());
            if !nlri.is_empty() || mp_nlri {
                attributes.origin.get_or_insert(Origin::Igp);
                attributes.as_path.get_or_insert_with(AsPath::default);
            }
            if !nlri.is_empty() {
                attributes
                    .next_hop
                    .get_or_insert(Ipv4Addr::new(192, 0, 2, 1));
            }
            Update {
                withdrawn,
                attributes,
                nlri,
                errors: Vec::new(),
            }
        })
}

fn capability() -> impl Strategy<Value = Capability> {
    let gr_family = (family(), any::<bool>()).prop_map(|(family, forwarding_preserved)| {
        GracefulRestartFamily {
            family,
            forwarding_preserved,
        }
    });
    let unknown_code =
        any::<u8>().prop_filter("decoded capability", |c| !KNOWN_CAPABILITIES.contains(c));
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        vec(
            (family(), any::<u16>()).prop_map(|(nlri, nh)| ExtendedNextHop {
                nlri,
                next_hop_afi: Afi::from(nh),
            }),
            1..4,
        )
        .prop_map(Capability::ExtendedNextHop),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            vec(gr_family, 0..4)
        )
            .prop_map(|(restarting, notification, restart_time, families)| {
                Capability::GracefulRestart(GracefulRestart {
                    restarting,
                    notification,
                    restart_time,
                    families,
                })
            }),
        (1u32..).prop_map(Capability::FourOctetAs),
        (unknown_code, vec(any::<u8>(), 0..40))
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    (
        1u16..,
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        vec(capability(), 0..12),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            my_as,
            hold_time,
            bgp_identifier: Ipv4Addr::from(id),
            capabilities,
        })
}

fn message(ctx: &DecodeContext) -> impl Strategy<Value = Message> + use<> {
    prop_oneof![
        1 => open().prop_map(Message::Open),
        4 => update(ctx).prop_map(|u| Message::Update(Box::new(u))),
        1 => (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..40)).prop_map(|(c, s, data)| {
            Message::Notification(Notification::new(ErrorCode::new(c, s), data))
        }),
        1 => Just(Message::Keepalive),
        1 => (family(), any::<u8>()).prop_map(|(family, s)| Message::RouteRefresh(RouteRefresh {
            family,
            subtype: RefreshSubtype::from(s),
        })),
    ]
}

fn context_and_message() -> impl Strategy<Value = (DecodeContext, Message)> {
    context().prop_flat_map(|ctx| {
        let m = message(&ctx);
        (Just(ctx), m)
    })
}

/// Re-encoding what decoded cleanly gives the same value back.
fn reencodes(message: &Message, ctx: &DecodeContext) -> Result<(), TestCaseError> {
    if let Message::Update(u) = message
        && !u.errors.is_empty()
    {
        return Ok(());
    }
    let bytes = message
        .to_bytes(ctx)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&Message::parse(&bytes, ctx).unwrap(), message);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// emit then parse is the identity for well-formed messages.
    #[test]
    fn emit_then_parse_is_identity((ctx, message) in context_and_message()) {
        let bytes = message.to_bytes(&ctx).unwrap();
        prop_assert_eq!(Message::parse(&bytes, &ctx).unwrap(), message);
    }

    /// Arbitrary bytes behind a valid header: never a panic; a clean decode re-encodes.
    #[test]
    fn arbitrary_bodies_never_panic(
        ctx in context(),
        kind in 1u8..=5,
        body in vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        if let Ok(message) = Message::parse(&bytes, &ctx) {
            reencodes(&message, &ctx)?;
        }
    }

    /// Valid messages with a few octets overwritten: never a panic.
    #[test]
    fn corrupted_messages_never_panic(
        (ctx, message) in context_and_message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate in option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = message.to_bytes(&ctx).unwrap();
        // Keep the header intact half of the time so the body parsers get exercised.
        for (at, value) in edits {
            let i = at.index(bytes.len());
            if i >= 19 || value & 1 == 0 {
                bytes[i] = value;
            }
        }
        if let Some(t) = truncate {
            bytes.truncate(t.index(bytes.len() + 1));
        }
        if let Ok(decoded) = Message::parse(&bytes, &ctx) {
            reencodes(&decoded, &ctx)?;
        }
    }

    /// Any bytes at all: never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(ctx in context(), bytes in vec(any::<u8>(), 0..100)) {
        let _ = Message::parse(&bytes, &ctx);
    }
}
