//! Leases in etcd (v3 API, etcd 3.4 and later): one key per lease,
//! `<prefix>/<namespace>/<name>`, whose value is the JSON of the Lease's
//! `spec` as Kubernetes spells it (`holderIdentity`, `leaseDurationSeconds`,
//! `acquireTime`, `renewTime` in RFC 3339 with microseconds,
//! `leaseTransitions`), so `etcdctl get` reads like `kubectl get lease -o
//! json`. A lease's version is its key's `mod_revision`, in decimal.
//!
//! - get: a range read of the key;
//! - create: a transaction `create_revision(key) == 0 → put`, else
//!   [`Response::Conflict`];
//! - update: a transaction `mod_revision(key) == version → put`, else
//!   [`Response::Conflict`] (also for a key that is gone, or a version that
//!   is not a revision: it cannot match).
//!
//! A stored value that does not read as a Lease spec (not JSON, wrong
//! types) is answered [`Response::Unavailable`]`("lease <name>: bad value at
//! <key>: …")`, not treated as absent: the elector then never overwrites
//! what it cannot read (it may be a newer agent's format), and the message
//! tells the operator which key to delete. Such a key blocks only its own
//! lease.
//!
//! Owns: the key layout, the stored value and the transactions. Does not
//! own: the bound on a request ([`super::LeaseStore`] applies it, dropping
//! the request when it passes). The gRPC channel gets that bound as its
//! connect timeout and as its HTTP/2 keep-alive interval and timeout, so a
//! connection to a hung or vanished etcd is noticed and made again.

use std::fmt;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use router_core::lease::{Request, Response, Versioned};
use tracing::warn;

use super::{Clock, from_spec, to_spec};

/// Leases under one prefix and namespace of one etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    kv: KvClient,
    endpoints: Vec<String>,
    /// `<prefix>/<namespace>/`.
    dir: String,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Etcd {
    /// A client of `endpoints` (connecting lazily) for the keys under
    /// `<prefix>/<namespace>/`; connection attempts and keep-alive pings are
    /// bounded by `timeout`.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Etcd, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(timeout, timeout);
        let client = etcd_client::Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| format!("etcd {}: {e}", endpoints.join(",")))?;
        Ok(Etcd {
            kv: client.kv_client(),
            endpoints: endpoints.to_vec(),
            dir: format!("{}/{namespace}/", prefix.trim_end_matches('/')),
        })
    }

    /// The key of lease `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.dir)
    }

    /// `etcd <endpoints>`, for messages.
    pub fn describe(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }

    /// Carry out `request` on lease `name` (unbounded: the caller bounds it).
    pub async fn call(&self, name: &str, request: Request, clock: &Clock) -> Response {
        let key = self.key(name);
        let mut kv = self.kv.clone();
        let unavailable = |e: etcd_client::Error| {
            Response::Unavailable(format!("lease {name}: {}: {e}", self.describe()))
        };
        let (compare, record) = match request {
            Request::Get => {
                return match kv.get(key.as_str(), None).await {
                    Ok(got) => match got.kvs().first() {
                        None => Response::Got(None),
                        Some(kv) => match decode(kv.key(), kv.value(), kv.mod_revision(), clock) {
                            Ok(versioned) => Response::Got(Some(versioned)),
                            Err(e) => Response::Unavailable(format!("lease {name}: {e}")),
                        },
                    },
                    Err(e) => unavailable(e),
                };
            }
            Request::Create(record) => (
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                record,
            ),
            Request::Update { record, version } => {
                let Ok(revision) = version.parse::<i64>() else {
                    return Response::Conflict;
                };
                (
                    Compare::mod_revision(key.as_str(), CompareOp::Equal, revision),
                    record,
                )
            }
        };
        let value = match serde_json::to_vec(&to_spec(&record, clock)) {
            Ok(value) => value,
            Err(e) => return Response::Unavailable(format!("lease {name}: cannot encode: {e}")),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key.as_str(), value, None)]);
        match kv.txn(txn).await {
            Ok(done) if !done.succeeded() => Response::Conflict,
            // The put is the transaction's only write: the key's new
            // mod_revision is the revision the transaction made.
            Ok(done) => match done.header() {
                Some(header) => Response::Written(header.revision().to_string()),
                None => Response::Unavailable(format!(
                    "lease {name}: {}: a transaction answered without a header",
                    self.describe()
                )),
            },
            Err(e) => unavailable(e),
        }
    }

    /// Every lease under the namespace's prefix, by name; values that do not
    /// read are logged and left out.
    pub async fn list(&self, clock: &Clock) -> Result<Vec<(String, Versioned)>, String> {
        let mut kv = self.kv.clone();
        let got = kv
            .get(self.dir.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| format!("{}: {e}", self.describe()))?;
        let mut leases = Vec::new();
        for kv in got.kvs() {
            let name = String::from_utf8_lossy(
                kv.key()
                    .strip_prefix(self.dir.as_bytes())
                    .unwrap_or(kv.key()),
            )
            .into_owned();
            match decode(kv.key(), kv.value(), kv.mod_revision(), clock) {
                Ok(versioned) => leases.push((name, versioned)),
                Err(error) => warn!(lease = %name, %error, "lease left out of the listing"),
            }
        }
        Ok(leases)
    }
}

/// The lease stored at `key` as `value`, at `mod_revision`; `bad value at
/// <key>: …` if it does not read.
fn decode(key: &[u8], value: &[u8], mod_revision: i64, clock: &Clock) -> Result<Versioned, String> {
    let spec: LeaseSpec = serde_json::from_slice(value)
        .map_err(|e| format!("bad value at {}: {e}", String::from_utf8_lossy(key)))?;
    Ok(Versioned {
        record: from_spec(&spec, clock),
        version: mod_revision.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_decode_or_name_the_key() {
        let clock = Clock::start();
        let value = br#"{"holderIdentity":"n2","leaseDurationSeconds":15,"acquireTime":"2026-12-07T05:00:00.000001Z","renewTime":"2026-12-07T05:00:10.500000Z","leaseTransitions":4,"preferredHolder":"x"}"#;
        let got = decode(b"nexthop/leases/kube-system/l", value, 42, &clock).unwrap();
        assert_eq!(got.version, "42");
        assert_eq!(got.record.holder, "n2");
        assert_eq!(got.record.transitions, 4);
        assert_eq!(
            got.record.renewed - got.record.acquired,
            smoltcp::time::Duration::from_micros(10_499_999)
        );
        for bad in [
            &b"not json"[..],
            b"",
            b"[]",
            br#"{"leaseDurationSeconds":"15"}"#,
            br#"{"renewTime":"yesterday"}"#,
            b"\xff\xfe",
        ] {
            let err = decode(b"nexthop/leases/kube-system/l", bad, 7, &clock).unwrap_err();
            assert!(
                err.starts_with("bad value at nexthop/leases/kube-system/l: "),
                "{err}"
            );
        }
    }
}
