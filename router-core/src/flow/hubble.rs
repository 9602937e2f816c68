//! Flows as `hubble observe` shows them: names, filters, text and JSON.
//!
//! Owns what an operator sees of a flow: an [`Observed`] flow carries the
//! names the observing node resolved for its two addresses (namespace, pod,
//! security identity), [`Filter`] is `hubble observe`'s selection flags, and
//! [`compact`] and [`Json`] are its two output layouts:
//!
//! ```text
//! Jan  1 00:00:05.123: default/curl-pod:49152 (ID:256) -> default/webpod-x:80 (ID:257) to-network FORWARDED (TCP Flags: SYN)
//! ^ time (StampMilli)   ^ source (namespace/pod:port, identity)  ^ destination  ^ point or drop reason, verdict, summary
//! ```
//! A reply is printed destination first with `<-`; a socket's translation
//! events, whose direction is not known, with `<>`. Does not own how names
//! are found (the runtime's endpoint tables) nor where flows are kept.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::net::IpAddr;

use ipnet::IpNet;

use super::{DropReason, Flow, L4, Point, Verdict, tcp_flags};

/// Cilium's reserved security identities.
pub mod identity {
    /// The local node (`reserved:host`).
    pub const HOST: u32 = 1;
    /// Anything outside the cluster (`reserved:world`).
    pub const WORLD: u32 = 2;
    /// An endpoint whose labels are not known yet (`reserved:init`).
    pub const INIT: u32 = 5;
    /// Another node of the cluster (`reserved:remote-node`).
    pub const REMOTE_NODE: u32 = 6;

    /// The name Hubble prints for a reserved identity.
    pub fn reserved_name(id: u32) -> Option<&'static str> {
        match id {
            HOST => Some("host"),
            WORLD => Some("world"),
            INIT => Some("init"),
            REMOTE_NODE => Some("remote-node"),
            _ => None,
        }
    }
}

/// What the observing node knows about one address of a flow.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Security identity.
    pub identity: u32,
    /// Kubernetes namespace (empty if not a pod).
    pub namespace: String,
    /// Pod name (empty if not a pod).
    pub pod: String,
    /// The identity's labels (`k8s:app=webpod`).
    pub labels: Vec<String>,
}

impl Endpoint {
    /// An address that is not a pod, with its reserved identity.
    pub fn reserved(identity: u32) -> Self {
        Endpoint {
            identity,
            ..Endpoint::default()
        }
    }
}

/// A flow with the node that saw it and the names it resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The node that made the event.
    pub node: String,
    /// The event.
    pub flow: Flow,
    /// The source address's endpoint.
    pub source: Endpoint,
    /// The destination address's endpoint.
    pub destination: Endpoint,
}

/// `Mon _2 15:04:05.000` (Go's `time.StampMilli`) of a time in
/// microseconds since the Unix epoch, in UTC.
pub fn timestamp(micros: i64) -> String {
    let (_, month, day, h, m, s, us) = civil(micros);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {day:>2} {h:02}:{m:02}:{s:02}.{:03}",
        MONTHS[usize::from(month - 1)],
        us / 1000
    )
}

/// RFC 3339 with microseconds, as Hubble's JSON `time`.
pub fn rfc3339(micros: i64) -> String {
    let (year, month, day, h, m, s, us) = civil(micros);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}Z")
}

/// Year, month, day, hour, minute, second and microsecond of a Unix time
/// (the days-to-civil conversion of the proleptic Gregorian calendar).
fn civil(micros: i64) -> (i64, u8, u8, i64, i64, i64, i64) {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, us)
}

/// `namespace/pod:port`, or the address when it is no pod; no port when 0.
fn host(addr: IpAddr, port: u16, e: &Endpoint) -> String {
    let name = if e.pod.is_empty() {
        addr.to_string()
    } else if e.namespace.is_empty() {
        e.pod.clone()
    } else {
        format!("{}/{}", e.namespace, e.pod)
    };
    match (port, addr) {
        (0, _) => name,
        (p, IpAddr::V6(_)) if e.pod.is_empty() => format!("[{name}]:{p}"),
        (p, _) => format!("{name}:{p}"),
    }
}

/// `(ID:256)`, or `(world)` for a reserved identity.
fn identity_label(id: u32) -> String {
    match identity::reserved_name(id) {
        Some(name) => format!("({name})"),
        None => format!("(ID:{id})"),
    }
}

/// Hubble's summary of a flow: `TCP Flags: SYN, ACK`, `UDP`,
/// `ICMPv4 EchoRequest`; the protocol alone for a socket's events.
pub fn summary(flow: &Flow) -> String {
    let sock = matches!(
        flow.observation.point,
        Some(Point::PreXlateFwd | Point::PostXlateFwd)
    );
    match flow.packet.l4 {
        L4::Tcp { .. } if sock => "TCP".into(),
        L4::Udp { .. } if sock => "UDP".into(),
        L4::Tcp { flags, .. } => {
            let names: Vec<&str> = tcp_flags::ORDER
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|(_, name)| *name)
                .collect();
            format!("TCP Flags: {}", names.join(", "))
        }
        L4::Udp { .. } => "UDP".into(),
        L4::Icmp4 { kind, code } => format!("ICMPv4 {}", icmp4_name(kind, code)),
        L4::Icmp6 { kind, code } => format!("ICMPv6 {}", icmp6_name(kind, code)),
        L4::Other(proto) => format!("IP protocol {proto}"),
    }
}

fn icmp4_name(kind: u8, code: u8) -> String {
    match (kind, code) {
        (0, _) => "EchoReply".into(),
        (8, _) => "EchoRequest".into(),
        (3, 0) => "DestinationUnreachable(Net)".into(),
        (3, 1) => "DestinationUnreachable(Host)".into(),
        (3, 3) => "DestinationUnreachable(Port)".into(),
        (3, 4) => "DestinationUnreachable(FragmentationNeeded)".into(),
        (3, c) => format!("DestinationUnreachable({c})"),
        (11, 0) => "TimeExceeded(TTLExceeded)".into(),
        (k, c) => format!("{k}({c})"),
    }
}

fn icmp6_name(kind: u8, code: u8) -> String {
    match (kind, code) {
        (128, _) => "EchoRequest".into(),
        (129, _) => "EchoReply".into(),
        (1, c) => format!("DestinationUnreachable({c})"),
        (2, _) => "PacketTooBig".into(),
        (3, 0) => "TimeExceeded(HopLimitExceeded)".into(),
        (k, c) => format!("{k}({c})"),
    }
}

/// What Hubble prints in its type column: the observation point, or the
/// drop reason's description.
fn kind(flow: &Flow) -> &'static str {
    match (flow.observation.point, flow.observation.verdict) {
        (_, Verdict::Dropped(why)) => why.description(),
        (Some(point), _) => point.name(),
        (None, _) => "UNKNOWN",
    }
}

/// One line in `hubble observe`'s default (compact) layout; with
/// `print_node`, the node name after the time (`--print-node-name`).
pub fn compact(o: &Observed, print_node: bool) -> String {
    let p = &o.flow.packet;
    let (sport, dport) = p.l4.ports().unwrap_or((0, 0));
    let src = format!(
        "{} {}",
        host(p.src, sport, &o.source),
        identity_label(o.source.identity)
    );
    let dst = format!(
        "{} {}",
        host(p.dst, dport, &o.destination),
        identity_label(o.destination.identity)
    );
    let (first, arrow, second) = match o.flow.reply {
        Some(true) => (dst, "<-", src),
        Some(false) => (src, "->", dst),
        None => (src, "<>", dst),
    };
    let mut line = timestamp(o.flow.micros);
    if print_node {
        let _ = write!(line, " [{}]", o.node);
    }
    let _ = write!(
        line,
        ": {first} {arrow} {second} {} {} ({})",
        kind(&o.flow),
        o.flow.observation.verdict.name(),
        summary(&o.flow)
    );
    line
}

/// Which side of a flow a selector looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Either,
    From,
    To,
}

impl Dir {
    fn test(self, o: &Observed, f: impl Fn(IpAddr, u16, &Endpoint) -> bool) -> bool {
        let p = &o.flow.packet;
        let (sport, dport) = p.l4.ports().unwrap_or((0, 0));
        let from = || f(p.src, sport, &o.source);
        let to = || f(p.dst, dport, &o.destination);
        match self {
            Dir::Either => from() || to(),
            Dir::From => from(),
            Dir::To => to(),
        }
    }
}

/// One selector of a [`Filter`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Selector {
    /// `--pod [NAMESPACE/]PREFIX` (namespace `default` when not given).
    Pod(Dir, String, String),
    /// `--namespace NAMESPACE`.
    Namespace(Dir, String),
    /// `--ip ADDR|CIDR`.
    Ip(Dir, IpNet),
    /// `--port PORT`.
    Port(Dir, u16),
    /// `--protocol tcp|udp|icmp|icmpv4|icmpv6`.
    Protocol(String),
    /// `--verdict FORWARDED|DROPPED|TRANSLATED|TRACED`.
    Verdict(String),
    /// `--node-name NAME`.
    Node(String),
    /// `--type trace[:POINT]|drop|trace-sock`.
    Type(String, Option<Point>),
}

impl Selector {
    /// The flag's family: selectors of one family are alternatives, of
    /// different families all must hold (as in `hubble observe`).
    fn family(&self) -> String {
        match self {
            Selector::Pod(d, ..) => format!("pod{d:?}"),
            Selector::Namespace(d, _) => format!("ns{d:?}"),
            Selector::Ip(d, _) => format!("ip{d:?}"),
            Selector::Port(d, _) => format!("port{d:?}"),
            Selector::Protocol(_) => "protocol".into(),
            Selector::Verdict(_) => "verdict".into(),
            Selector::Node(_) => "node".into(),
            Selector::Type(..) => "type".into(),
        }
    }

    fn matches(&self, o: &Observed) -> bool {
        match self {
            Selector::Pod(dir, ns, prefix) => dir.test(o, |_, _, e| {
                !e.pod.is_empty() && e.namespace == *ns && e.pod.starts_with(prefix.as_str())
            }),
            Selector::Namespace(dir, ns) => dir.test(o, |_, _, e| e.namespace == *ns),
            Selector::Ip(dir, net) => dir.test(o, |a, _, _| net.contains(&a)),
            Selector::Port(dir, port) => dir.test(o, |_, p, _| p == *port),
            Selector::Protocol(proto) => {
                let have = o.flow.packet.l4.protocol();
                have == proto || (proto == "icmp" && have.starts_with("icmp"))
            }
            Selector::Verdict(v) => o.flow.observation.verdict.name() == v,
            Selector::Node(n) => o.node == *n,
            Selector::Type(t, point) => {
                let obs = o.flow.observation;
                let sock = matches!(obs.point, Some(Point::PreXlateFwd | Point::PostXlateFwd));
                match t.as_str() {
                    "drop" => matches!(obs.verdict, Verdict::Dropped(_)),
                    "trace-sock" => sock,
                    _ => {
                        !sock
                            && !matches!(obs.verdict, Verdict::Dropped(_))
                            && point.is_none_or(|p| obs.point == Some(p))
                    }
                }
            }
        }
    }
}

/// How flows are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// One line per flow ([`compact`]).
    #[default]
    Compact,
    /// One JSON object per line ([`Json`]).
    Json,
}

/// `hubble observe`'s flags: selectors, `--last N`, the output layout.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Filter {
    selectors: Vec<Selector>,
    /// `--last N`: only the last N matching flows.
    pub last: Option<usize>,
    /// `--print-node-name`.
    pub print_node: bool,
    /// `-o json` / `--output json` (default compact).
    pub output: Output,
    /// `-f` / `--follow`: keep printing flows as they come.
    pub follow: bool,
}

/// A flag `hubble observe` does not take, or a bad value, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError(pub String);

impl core::fmt::Display for FilterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Filter {
    /// Parse `hubble observe`'s flags, e.g. `--protocol tcp --pod curl-pod`.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Filter, FilterError> {
        let mut filter = Filter::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let (flag, inline) = match flag.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v)),
                _ => (flag, None),
            };
            match flag {
                "--print-node-name" => filter.print_node = true,
                "-f" | "--follow" => filter.follow = true,
                _ => {
                    let value = inline
                        .or_else(|| args.next())
                        .ok_or_else(|| FilterError(format!("{flag}: needs a value")))?;
                    filter.flag(flag, value)?;
                }
            }
        }
        Ok(filter)
    }

    fn flag(&mut self, flag: &str, value: &str) -> Result<(), FilterError> {
        let bad = |what: &str| Err(FilterError(format!("{flag}: {value:?} is not {what}")));
        if flag == "-o" || flag == "--output" {
            self.output = match value {
                "compact" => Output::Compact,
                "json" | "jsonpb" => Output::Json,
                _ => return bad("compact or json"),
            };
            return Ok(());
        }
        let dir = if flag.starts_with("--from-") {
            Dir::From
        } else if flag.starts_with("--to-") {
            Dir::To
        } else {
            Dir::Either
        };
        let base = flag
            .trim_start_matches("--from-")
            .trim_start_matches("--to-")
            .trim_start_matches("--");
        let selector = match (base, dir) {
            ("pod", _) => {
                let (ns, prefix) = value.split_once('/').unwrap_or(("default", value));
                Selector::Pod(dir, ns.into(), prefix.into())
            }
            ("namespace", _) => Selector::Namespace(dir, value.into()),
            ("ip", _) => match value.parse::<IpNet>() {
                Ok(net) => Selector::Ip(dir, net),
                Err(_) => match value.parse::<IpAddr>() {
                    Ok(a) => Selector::Ip(dir, IpNet::from(a)),
                    Err(_) => return bad("an address or CIDR"),
                },
            },
            ("port", _) => match value.parse() {
                Ok(p) => Selector::Port(dir, p),
                Err(_) => return bad("a port"),
            },
            ("protocol", Dir::Either) => match value.to_ascii_lowercase().as_str() {
                p @ ("tcp" | "udp" | "icmp" | "icmpv4" | "icmpv6") => Selector::Protocol(p.into()),
                _ => return bad("tcp, udp, icmp, icmpv4 or icmpv6"),
            },
            ("verdict", Dir::Either) => match value.to_ascii_uppercase().as_str() {
                v @ ("FORWARDED" | "DROPPED" | "TRANSLATED" | "TRACED") => {
                    Selector::Verdict(v.into())
                }
                _ => return bad("FORWARDED, DROPPED, TRANSLATED or TRACED"),
            },
            ("node-name", Dir::Either) => Selector::Node(value.into()),
            ("type", Dir::Either) => match value.split_once(':') {
                None if matches!(value, "trace" | "drop" | "trace-sock") => {
                    Selector::Type(value.into(), None)
                }
                Some(("trace", point)) => match Point::ALL.iter().find(|p| p.name() == point) {
                    Some(&p) => Selector::Type("trace".into(), Some(p)),
                    None => return bad("trace:POINT with a known observation point"),
                },
                _ => return bad("trace, trace:POINT, drop or trace-sock"),
            },
            ("last", Dir::Either) => match value.parse() {
                Ok(n) => {
                    self.last = Some(n);
                    return Ok(());
                }
                Err(_) => return bad("a count"),
            },
            _ => return Err(FilterError(format!("unknown flag {flag}"))),
        };
        self.selectors.push(selector);
        Ok(())
    }

    /// Whether `o` passes every family of selectors (one of each family's).
    pub fn matches(&self, o: &Observed) -> bool {
        let mut families: Vec<String> = self.selectors.iter().map(Selector::family).collect();
        families.sort();
        families.dedup();
        families.iter().all(|family| {
            self.selectors
                .iter()
                .filter(|s| s.family() == *family)
                .any(|s| s.matches(o))
        })
    }

    /// The flows of `flows` the filter selects, `--last N` applied.
    pub fn select<'a>(&self, flows: &'a [Observed]) -> Vec<&'a Observed> {
        let mut out: Vec<&Observed> = flows.iter().filter(|o| self.matches(o)).collect();
        if let Some(n) = self.last {
            out.drain(..out.len().saturating_sub(n));
        }
        out
    }

    /// The selected flows printed in the chosen layout, one per line
    /// (JSON through `to_json`, which the caller's serializer provides).
    pub fn print(&self, flows: &[Observed], to_json: impl Fn(&Json) -> String) -> Vec<String> {
        self.select(flows)
            .into_iter()
            .map(|o| match self.output {
                Output::Compact => compact(o, self.print_node),
                Output::Json => to_json(&Json::of(o)),
            })
            .collect()
    }
}

/// One flow in Hubble's JSON layout (`hubble observe -o json`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Json {
    /// The flow.
    pub flow: JsonFlow,
    /// The node that saw it.
    pub node_name: String,
    /// When.
    pub time: String,
}

/// The `flow` object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct JsonFlow {
    /// RFC 3339 time.
    pub time: String,
    /// `FORWARDED`, `DROPPED`, …
    pub verdict: &'static str,
    /// The drop reason's number (0 unless dropped).
    pub drop_reason: u8,
    /// The drop reason's name, for drops.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub drop_reason_desc: Option<&'static str>,
    /// Addresses.
    #[cfg_attr(feature = "serde", serde(rename = "IP"))]
    pub ip: JsonIp,
    /// Transport.
    pub l4: JsonL4,
    /// Source endpoint.
    pub source: JsonEndpoint,
    /// Destination endpoint.
    pub destination: JsonEndpoint,
    /// `L3_L4`, or `SOCK` for a socket's events.
    #[cfg_attr(feature = "serde", serde(rename = "Type"))]
    pub kind: &'static str,
    /// The node.
    pub node_name: String,
    /// The observation point of a trace.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub trace_observation_point: Option<&'static str>,
    /// The translation point of a socket's event.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub sock_xlate_point: Option<&'static str>,
    /// Whether the packet is a reply (absent where not known).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub is_reply: Option<bool>,
    /// The compact layout's summary.
    #[cfg_attr(feature = "serde", serde(rename = "Summary"))]
    pub summary: String,
}

/// The `IP` object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct JsonIp {
    /// Source address.
    pub source: String,
    /// Destination address.
    pub destination: String,
    /// `IPv4` or `IPv6`.
    #[cfg_attr(feature = "serde", serde(rename = "ipVersion"))]
    pub ip_version: &'static str,
}

/// The `l4` object: one key naming the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum JsonL4 {
    /// TCP.
    #[allow(clippy::upper_case_acronyms)]
    TCP {
        /// Source port.
        source_port: u16,
        /// Destination port.
        destination_port: u16,
        /// Flags set, by name (`{"SYN": true}`).
        flags: alloc::collections::BTreeMap<&'static str, bool>,
    },
    /// UDP.
    #[allow(clippy::upper_case_acronyms)]
    UDP {
        /// Source port.
        source_port: u16,
        /// Destination port.
        destination_port: u16,
    },
    /// ICMPv4.
    ICMPv4 {
        /// Type.
        #[cfg_attr(feature = "serde", serde(rename = "type"))]
        kind: u8,
        /// Code.
        code: u8,
    },
    /// ICMPv6.
    ICMPv6 {
        /// Type.
        #[cfg_attr(feature = "serde", serde(rename = "type"))]
        kind: u8,
        /// Code.
        code: u8,
    },
    /// Another protocol.
    Other {
        /// Its number.
        protocol: u8,
    },
}

/// An endpoint object.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct JsonEndpoint {
    /// Security identity.
    pub identity: u32,
    /// Namespace (empty if none).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub namespace: String,
    /// Labels.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub labels: Vec<String>,
    /// Pod name (empty if none).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "String::is_empty"))]
    pub pod_name: String,
}

impl JsonEndpoint {
    fn of(e: &Endpoint) -> Self {
        let mut labels = e.labels.clone();
        if let Some(name) = identity::reserved_name(e.identity) {
            labels.push(format!("reserved:{name}"));
        }
        JsonEndpoint {
            identity: e.identity,
            namespace: e.namespace.clone(),
            labels,
            pod_name: e.pod.clone(),
        }
    }
}

impl Json {
    /// The JSON record of `o`.
    pub fn of(o: &Observed) -> Self {
        let f = &o.flow;
        let p = &f.packet;
        let l4 = match p.l4 {
            L4::Tcp { src, dst, flags } => JsonL4::TCP {
                source_port: src,
                destination_port: dst,
                flags: tcp_flags::ORDER
                    .iter()
                    .filter(|(bit, _)| flags & bit != 0)
                    .map(|(_, name)| (*name, true))
                    .collect(),
            },
            L4::Udp { src, dst } => JsonL4::UDP {
                source_port: src,
                destination_port: dst,
            },
            L4::Icmp4 { kind, code } => JsonL4::ICMPv4 { kind, code },
            L4::Icmp6 { kind, code } => JsonL4::ICMPv6 { kind, code },
            L4::Other(protocol) => JsonL4::Other { protocol },
        };
        let drop = match f.observation.verdict {
            Verdict::Dropped(why) => Some(why),
            _ => None,
        };
        let sock = matches!(
            f.observation.point,
            Some(Point::PreXlateFwd | Point::PostXlateFwd)
        );
        let point = f.observation.point.map(Point::json_name);
        Json {
            flow: JsonFlow {
                time: rfc3339(f.micros),
                verdict: f.observation.verdict.name(),
                drop_reason: drop.map_or(0, |d| d as u8),
                drop_reason_desc: drop.map(DropReason::json_name),
                ip: JsonIp {
                    source: p.src.to_string(),
                    destination: p.dst.to_string(),
                    ip_version: if p.src.is_ipv4() { "IPv4" } else { "IPv6" },
                },
                l4,
                source: JsonEndpoint::of(&o.source),
                destination: JsonEndpoint::of(&o.destination),
                kind: if sock { "SOCK" } else { "L3_L4" },
                node_name: o.node.clone(),
                trace_observation_point: point.filter(|_| !sock),
                sock_xlate_point: point.filter(|_| sock),
                is_reply: f.reply,
                summary: summary(f),
            },
            node_name: o.node.clone(),
            time: rfc3339(f.micros),
        }
    }
}
