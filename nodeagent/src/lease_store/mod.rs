//! The agent's lease stores: router-core's lease elector
//! ([`router_core::lease`]) asks with [`Request`] values, and a
//! [`LeaseStore`] carries each out against a real store and answers with a
//! [`Response`] — never an error, never later than its bound
//! ([`DEFAULT_TIMEOUT`], or [`LeaseStore::with_timeout`]).
//!
//! Two stores, the same rules as [`router_core::lease::MemoryStore`]
//! (create only if absent, update only if the version is unchanged, else
//! [`Response::Conflict`]; anything else that goes wrong, a timeout
//! included, is [`Response::Unavailable`] with a message naming the lease
//! and the store):
//! - [`etcd`]: one key per lease, `<prefix>/<namespace>/<name>`, holding the
//!   JSON of the Lease's `spec` as Kubernetes spells it; the version is the
//!   key's `mod_revision`.
//! - [`kube`]: `coordination.k8s.io/v1` Leases in `<namespace>` through the
//!   API server; the version is the Lease's `resourceVersion`.
//!
//! Times: the elector's [`Record`] times are [`smoltcp::time::Instant`]s on
//! the agent's runtime clock (microseconds since an epoch taken when the
//! agent starts, as the controller counts them); stores hold wall-clock
//! times. [`Clock`] is the one conversion between the two. The times in a
//! record are informational only (the elector judges expiry by its own
//! clock, from when it saw a version change), so a skewed or wrong
//! conversion cannot change who leads; it only changes what `lease list`
//! prints.
//!
//! Owns: reaching a store, the stored format, the time conversion, and the
//! `--lease-store` option ([`StoreConfig`]). Does not own: the election (the
//! elector), which leases exist, or when to ask (the caller that drives the
//! elector).

pub mod etcd;
pub mod kube;

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use router_core::lease::{Record, Request, Response, Versioned};
use smoltcp::time::Instant;

/// How long one request may take before it is answered
/// [`Response::Unavailable`]: 1 s, the shortest renew deadline Cilium
/// accepts (a leader steps down at its renew deadline anyway, so waiting
/// longer could never help it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The namespace of the leases (Cilium keeps its L2 announcement leases in
/// `kube-system`).
pub const DEFAULT_NAMESPACE: &str = "kube-system";

/// The etcd key prefix of the leases.
pub const DEFAULT_ETCD_PREFIX: &str = "nexthop/leases";

/// Which store `--lease-store` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// `etcd:http://HOST:PORT[,http://HOST:PORT…]`: these etcd endpoints.
    Etcd(Vec<String>),
    /// `kubernetes`: the API server of the agent's Kubernetes settings.
    Kubernetes,
}

impl std::str::FromStr for StoreConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreConfig, String> {
        const SYNTAX: &str = "expected etcd:http://HOST:PORT[,http://HOST:PORT...] or kubernetes";
        if s == "kubernetes" {
            return Ok(StoreConfig::Kubernetes);
        }
        let Some(endpoints) = s.strip_prefix("etcd:") else {
            return Err(format!("{SYNTAX}, not {s:?}"));
        };
        let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
        for endpoint in &endpoints {
            let Some(address) = endpoint.strip_prefix("http://") else {
                return Err(format!(
                    "etcd endpoint {endpoint:?}: only http:// endpoints are supported (no TLS); {SYNTAX}"
                ));
            };
            let address = address.strip_suffix('/').unwrap_or(address);
            let port = address
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(_))) if !host.is_empty() && !host.contains('/')) {
                return Err(format!(
                    "etcd endpoint {endpoint:?}: expected http://HOST:PORT; {SYNTAX}"
                ));
            }
        }
        Ok(StoreConfig::Etcd(endpoints))
    }
}

impl fmt::Display for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::Etcd(endpoints) => write!(f, "etcd:{}", endpoints.join(",")),
            StoreConfig::Kubernetes => f.write_str("kubernetes"),
        }
    }
}

/// The agent's runtime clock (what the elector's [`Instant`]s count) and
/// the wall clock, read at the same moment: an [`Instant`] is the
/// microseconds since `epoch`, and `epoch` was `wall` on the wall clock.
/// The controller's clock is the same (`Instant` = time since its epoch), so
/// a controller that takes its epoch from a [`Clock`] converts exactly.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
    /// The wall clock at `epoch`, in microseconds since the Unix epoch.
    wall: i64,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn start() -> Clock {
        let wall = match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
        };
        Clock {
            epoch: std::time::Instant::now(),
            wall,
        }
    }

    /// Now, on the runtime clock.
    pub fn now(&self) -> Instant {
        Instant::from_micros(i64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(i64::MAX))
    }

    /// When `at` (on the runtime clock) comes, for tokio's timers; an `at`
    /// before the epoch is the epoch.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        let micros = u64::try_from(at.total_micros()).unwrap_or(0);
        tokio::time::Instant::from_std(self.epoch + Duration::from_micros(micros))
    }

    /// `at` on the wall clock (clamped to the years -9999..=9999).
    pub fn to_wall(&self, at: Instant) -> Timestamp {
        let micros = self.wall.saturating_add(at.total_micros());
        Timestamp::from_microsecond(micros).unwrap_or(if micros < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
    }

    /// A wall-clock time on the runtime clock (before the epoch: negative).
    pub fn from_wall(&self, at: Timestamp) -> Instant {
        Instant::from_micros(at.as_microsecond().saturating_sub(self.wall))
    }
}

/// `at` as Kubernetes writes a `MicroTime`: RFC 3339, UTC, microseconds.
pub fn rfc3339(at: Timestamp) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%S%.6fZ", at)
        .unwrap_or_else(|_| at.to_string())
}

/// A record as a Lease's `spec`. The duration is rounded up to whole
/// seconds (`leaseDurationSeconds`), so a stored lease never lasts less than
/// the elector meant; transitions past `i32::MAX` stay at `i32::MAX`.
pub fn to_spec(record: &Record, clock: &Clock) -> LeaseSpec {
    let seconds = record.duration.total_micros().div_ceil(1_000_000);
    LeaseSpec {
        holder_identity: Some(record.holder.clone()),
        lease_duration_seconds: Some(i32::try_from(seconds).unwrap_or(i32::MAX)),
        acquire_time: Some(MicroTime(clock.to_wall(record.acquired))),
        renew_time: Some(MicroTime(clock.to_wall(record.renewed))),
        lease_transitions: Some(i32::try_from(record.transitions).unwrap_or(i32::MAX)),
        ..LeaseSpec::default()
    }
}

/// A Lease's `spec` as a record, read as client-go reads it: a missing
/// holder is none (`""`), a missing or negative duration or transition count
/// is 0 (a lease of duration 0 has expired: anyone may take it), a missing
/// time is the Unix epoch.
pub fn from_spec(spec: &LeaseSpec, clock: &Clock) -> Record {
    let time =
        |t: &Option<MicroTime>| clock.from_wall(t.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0));
    let seconds = spec.lease_duration_seconds.unwrap_or(0).max(0);
    Record {
        holder: spec.holder_identity.clone().unwrap_or_default(),
        duration: smoltcp::time::Duration::from_secs(seconds.unsigned_abs().into()),
        acquired: time(&spec.acquire_time),
        renewed: time(&spec.renew_time),
        transitions: spec.lease_transitions.unwrap_or(0).max(0).unsigned_abs(),
    }
}

/// Leases as a table: NAME, HOLDER (`<none>` when free), DURATION,
/// TRANSITIONS, ACQUIRED, RENEWED (RFC 3339, UTC) and VERSION.
pub fn table(leases: &[(String, Versioned)], clock: &Clock) -> String {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|(name, lease)| {
            let r = &lease.record;
            vec![
                name.clone(),
                if r.holder.is_empty() {
                    "<none>".into()
                } else {
                    r.holder.clone()
                },
                format!("{}s", r.duration.secs()),
                r.transitions.to_string(),
                rfc3339(clock.to_wall(r.acquired)),
                rfc3339(clock.to_wall(r.renewed)),
                lease.version.clone(),
            ]
        })
        .collect();
    router_core::cilium::table::tabulate(
        &[
            "NAME",
            "HOLDER",
            "DURATION",
            "TRANSITIONS",
            "ACQUIRED",
            "RENEWED",
            "VERSION",
        ],
        &rows,
    )
}

/// A store of leases, in one namespace, answering within its bound. Cheap to
/// clone: clones share the connection.
#[derive(Clone, Debug)]
pub struct LeaseStore {
    backend: Backend,
    clock: Clock,
    timeout: Duration,
}

#[derive(Clone, Debug)]
enum Backend {
    Etcd(etcd::Etcd),
    Kubernetes(kube::Leases),
}

impl LeaseStore {
    /// The store `config` names, for leases in `namespace`: etcd keys under
    /// `etcd_prefix`, or Leases through the client of `kubeconfig` (without
    /// one: in-cluster, else `$KUBECONFIG` or `~/.kube/config`, as `run
    /// --kubernetes`). Connecting is lazy: an unreachable store fails the
    /// requests, not this.
    pub async fn connect(
        config: &StoreConfig,
        namespace: &str,
        etcd_prefix: &str,
        kubeconfig: Option<&Path>,
        clock: Clock,
    ) -> Result<LeaseStore, String> {
        match config {
            StoreConfig::Etcd(endpoints) => {
                LeaseStore::etcd(endpoints, etcd_prefix, namespace, clock).await
            }
            StoreConfig::Kubernetes => {
                let client = crate::kube_source::client(kubeconfig).await?;
                Ok(LeaseStore::kubernetes(client, namespace, clock))
            }
        }
    }

    /// Leases as keys `<prefix>/<namespace>/<name>` in the etcd cluster of
    /// `endpoints` (`http://HOST:PORT`).
    pub async fn etcd(
        endpoints: &[String],
        prefix: &str,
        namespace: &str,
        clock: Clock,
    ) -> Result<LeaseStore, String> {
        let etcd = etcd::Etcd::connect(endpoints, prefix, namespace, DEFAULT_TIMEOUT).await?;
        Ok(LeaseStore {
            backend: Backend::Etcd(etcd),
            clock,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// `coordination.k8s.io/v1` Leases in `namespace` through `client`.
    pub fn kubernetes(client: ::kube::Client, namespace: &str, clock: Clock) -> LeaseStore {
        LeaseStore {
            backend: Backend::Kubernetes(kube::Leases::new(client, namespace)),
            clock,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same store, answering within `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> LeaseStore {
        self.timeout = timeout;
        self
    }

    /// The clock the store converts record times with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Carry out the elector's `request` on the lease `name`. Never fails:
    /// whatever goes wrong, a timeout included, is
    /// [`Response::Unavailable`] naming the lease and the store.
    pub async fn call(&self, name: &str, request: Request) -> Response {
        let work = async {
            match &self.backend {
                Backend::Etcd(etcd) => etcd.call(name, request, &self.clock).await,
                Backend::Kubernetes(leases) => leases.call(name, request, &self.clock).await,
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(response) => response,
            Err(_) => Response::Unavailable(format!(
                "lease {name}: {}: no answer within {:?}",
                self.describe(),
                self.timeout
            )),
        }
    }

    /// Every lease of the namespace, by name. A lease that does not read is
    /// left out (an etcd value that is not a Lease spec is also named in the
    /// log; a Lease object without a `resourceVersion` is not).
    pub async fn list(&self) -> Result<Vec<(String, Versioned)>, String> {
        let work = async {
            match &self.backend {
                Backend::Etcd(etcd) => etcd.list(&self.clock).await,
                Backend::Kubernetes(leases) => leases.list(&self.clock).await,
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(listed) => listed,
            Err(_) => Err(format!(
                "{}: no answer within {:?}",
                self.describe(),
                self.timeout
            )),
        }
    }

    /// The store, for messages: `etcd http://…` or `Kubernetes API`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Etcd(etcd) => etcd.describe(),
            Backend::Kubernetes(leases) => leases.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_option_parses() {
        assert_eq!("kubernetes".parse(), Ok(StoreConfig::Kubernetes));
        assert_eq!(
            "etcd:http://127.0.0.1:2379".parse(),
            Ok(StoreConfig::Etcd(vec!["http://127.0.0.1:2379".into()]))
        );
        assert_eq!(
            "etcd:http://10.0.0.1:2379,http://etcd-2:2379/".parse(),
            Ok(StoreConfig::Etcd(vec![
                "http://10.0.0.1:2379".into(),
                "http://etcd-2:2379/".into()
            ]))
        );
        for bad in [
            "",
            "etcd",
            "etcd:",
            "etcd:127.0.0.1:2379",
            "etcd:https://127.0.0.1:2379",
            "etcd:http://127.0.0.1",
            "etcd:http://127.0.0.1:99999",
            "etcd:http://:2379",
            "etcd:http://127.0.0.1:2379,",
            "Kubernetes",
            "consul:http://127.0.0.1:8500",
        ] {
            let err = bad.parse::<StoreConfig>().unwrap_err();
            assert!(
                err.contains("expected etcd:http://HOST:PORT"),
                "{bad:?}: {err}"
            );
        }
        let config: StoreConfig = "etcd:http://127.0.0.1:2379".parse().unwrap();
        assert_eq!(config.to_string(), "etcd:http://127.0.0.1:2379");
    }

    #[test]
    fn leases_print_as_a_table() {
        let clock = Clock {
            epoch: std::time::Instant::now(),
            wall: 1_796_000_000_000_000,
        };
        let lease = |holder: &str, version: &str| Versioned {
            record: Record {
                holder: holder.into(),
                duration: smoltcp::time::Duration::from_secs(15),
                acquired: Instant::from_secs(1),
                renewed: Instant::from_millis(2500),
                transitions: 3,
            },
            version: version.into(),
        };
        let leases = [
            (
                "cilium-l2announce-default-web".to_string(),
                lease("k8s-w1", "41"),
            ),
            ("cilium-l2announce-default-db".to_string(), lease("", "7")),
        ];
        assert_lines(
            &table(&leases, &clock),
            &[
                "NAME                            HOLDER   DURATION   TRANSITIONS   ACQUIRED                      RENEWED                       VERSION",
                "cilium-l2announce-default-web   k8s-w1   15s        3             2026-11-30T00:53:21.000000Z   2026-11-30T00:53:22.500000Z   41",
                "cilium-l2announce-default-db    <none>   15s        3             2026-11-30T00:53:21.000000Z   2026-11-30T00:53:22.500000Z   7",
            ],
        );
    }

    /// `text`'s lines, trailing spaces dropped, are `lines`.
    fn assert_lines(text: &str, lines: &[&str]) {
        let got: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(got, lines, "\n{text}");
    }

    #[test]
    fn clock_converts_both_ways() {
        let clock = Clock {
            epoch: std::time::Instant::now(),
            wall: 1_796_000_000_123_456,
        };
        let at = Instant::from_micros(2_500_001);
        let wall = clock.to_wall(at);
        assert_eq!(wall.as_microsecond(), 1_796_000_002_623_457);
        assert_eq!(rfc3339(wall), "2026-11-30T00:53:22.623457Z");
        assert_eq!(clock.from_wall(wall), at);
        assert_eq!(
            clock.from_wall(Timestamp::UNIX_EPOCH),
            Instant::from_micros(-1_796_000_000_123_456_i64)
        );
        assert_eq!(
            clock.to_wall(Instant::from_micros(i64::MAX)),
            Timestamp::MAX
        );
        assert_eq!(
            clock.to_wall(Instant::from_micros(i64::MIN)),
            Timestamp::MIN
        );
        let started = Clock::start();
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let now = started.to_wall(started.now()).as_microsecond();
        assert!((since - now).abs() < 1_000_000, "{since} vs {now}");
    }

    #[test]
    fn records_round_trip_as_kubernetes_spells_them() {
        let clock = Clock {
            epoch: std::time::Instant::now(),
            wall: 1_796_000_000_000_000,
        };
        let record = Record {
            holder: "n1".into(),
            duration: smoltcp::time::Duration::from_secs(3),
            acquired: Instant::from_micros(1_000_007),
            renewed: Instant::from_micros(4_200_000),
            transitions: 2,
        };
        let spec = to_spec(&record, &clock);
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            serde_json::json!({
                "holderIdentity": "n1",
                "leaseDurationSeconds": 3,
                "acquireTime": "2026-11-30T00:53:21.000007Z",
                "renewTime": "2026-11-30T00:53:24.200000Z",
                "leaseTransitions": 2,
            })
        );
        assert_eq!(from_spec(&spec, &clock), record);
        let short = Record {
            duration: smoltcp::time::Duration::from_millis(1500),
            ..record.clone()
        };
        assert_eq!(to_spec(&short, &clock).lease_duration_seconds, Some(2));
        let empty = from_spec(&LeaseSpec::default(), &clock);
        assert_eq!(empty.holder, "");
        assert_eq!(empty.duration, smoltcp::time::Duration::ZERO);
        assert_eq!(empty.transitions, 0);
        assert_eq!(clock.to_wall(empty.renewed), Timestamp::UNIX_EPOCH);
        let negative = LeaseSpec {
            lease_duration_seconds: Some(-5),
            lease_transitions: Some(-1),
            ..LeaseSpec::default()
        };
        let negative = from_spec(&negative, &clock);
        assert_eq!(negative.duration, smoltcp::time::Duration::ZERO);
        assert_eq!(negative.transitions, 0);
    }
}
