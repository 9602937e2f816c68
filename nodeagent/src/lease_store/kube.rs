//! Leases as Kubernetes `coordination.k8s.io/v1` Lease objects in one
//! namespace, through the API server (the `kube` client of
//! [`crate::kube_source::client`]). A lease's version is the object's
//! `metadata.resourceVersion`.
//!
//! - get: `GET …/leases/<name>`; 404 is [`Response::Got`]`(None)`;
//! - create: `POST …/leases`; 409 (AlreadyExists) is [`Response::Conflict`];
//! - update: `PUT …/leases/<name>` with `metadata.resourceVersion` = the
//!   version; 409 (Conflict: another version) and 404 (gone) are
//!   [`Response::Conflict`], as [`router_core::lease::MemoryStore`] answers an
//!   update of a lease that is not there.
//!
//! Any other failure (a status, a refused connection, an object without a
//! `resourceVersion`) is [`Response::Unavailable`] naming the lease.
//!
//! Owns: the Lease objects' shape and the status codes' meaning. Does not
//! own: the client's settings ([`crate::kube_source::client`]) or the bound
//! on a request ([`super::LeaseStore`]).

use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use router_core::lease::{Record, Request, Response, Versioned};

use super::{Clock, from_spec, to_spec};

/// The verbs a running agent uses on Leases (get, create, update above);
/// `nexthop-agent lease list`, an operator's query, also lists them.
pub const AGENT_VERBS: [&str; 3] = ["get", "create", "update"];

/// The Leases of one namespace.
#[derive(Clone)]
pub struct Leases {
    api: Api<Lease>,
    namespace: String,
}

impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// The Leases in `namespace` of `client`'s API server.
    pub fn new(client: kube::Client, namespace: &str) -> Leases {
        Leases {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
        }
    }

    /// `Kubernetes API, namespace <ns>`, for messages.
    pub fn describe(&self) -> String {
        format!("Kubernetes API, namespace {}", self.namespace)
    }

    /// Carry out `request` on the Lease `name` (unbounded: the caller bounds
    /// it).
    pub async fn call(&self, name: &str, request: Request, clock: &Clock) -> Response {
        let unavailable = |e: kube::Error| {
            Response::Unavailable(format!("lease {name}: {}: {e}", self.describe()))
        };
        match request {
            Request::Get => match self.api.get_opt(name).await {
                Ok(None) => Response::Got(None),
                Ok(Some(lease)) => match versioned(&lease, clock) {
                    Ok(v) => Response::Got(Some(v)),
                    Err(e) => Response::Unavailable(format!("lease {name}: {e}")),
                },
                Err(e) => unavailable(e),
            },
            Request::Create(record) => {
                let lease = self.lease(name, &record, None, clock);
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(written) => self.written(name, &written),
                    Err(kube::Error::Api(status)) if status.code == 409 => Response::Conflict,
                    Err(e) => unavailable(e),
                }
            }
            Request::Update { record, version } => {
                let lease = self.lease(name, &record, Some(version), clock);
                match self.api.replace(name, &PostParams::default(), &lease).await {
                    Ok(written) => self.written(name, &written),
                    Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {
                        Response::Conflict
                    }
                    Err(e) => unavailable(e),
                }
            }
        }
    }

    /// Every Lease of the namespace, by name; one without a
    /// `resourceVersion` is left out.
    pub async fn list(&self, clock: &Clock) -> Result<Vec<(String, Versioned)>, String> {
        let leases = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("{}: {e}", self.describe()))?;
        Ok(leases
            .items
            .iter()
            .filter_map(|lease| {
                let name = lease.metadata.name.clone()?;
                versioned(lease, clock).ok().map(|v| (name, v))
            })
            .collect())
    }

    fn lease(&self, name: &str, record: &Record, version: Option<String>, clock: &Clock) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(self.namespace.clone()),
                resource_version: version,
                ..ObjectMeta::default()
            },
            spec: Some(to_spec(record, clock)),
        }
    }

    fn written(&self, name: &str, lease: &Lease) -> Response {
        match &lease.metadata.resource_version {
            Some(version) => Response::Written(version.clone()),
            None => Response::Unavailable(format!(
                "lease {name}: {}: the written Lease has no resourceVersion",
                self.describe()
            )),
        }
    }
}

/// A Lease as the elector sees it; a Lease without a spec is a free one.
fn versioned(lease: &Lease, clock: &Clock) -> Result<Versioned, String> {
    let version = lease
        .metadata
        .resource_version
        .clone()
        .ok_or("the Lease has no resourceVersion")?;
    Ok(Versioned {
        record: from_spec(&lease.spec.clone().unwrap_or_default(), clock),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io;
    use std::sync::{Arc, Mutex};

    use http::{Request as HttpRequest, Response as HttpResponse};
    use kube::client::Body;
    use serde_json::{Value, json};
    use smoltcp::time::{Duration, Instant};

    /// The fake API server's answer to one request.
    enum Reply {
        /// 200 (or 201) with this Lease (metadata.resourceVersion given).
        Lease(u16, &'static str),
        /// A `Status` with this code and reason.
        Status(u16, &'static str),
        /// The connection fails.
        Fail,
        /// Never answers.
        Hang,
    }

    /// The requests the server saw: `METHOD path` and the body.
    type Seen = Arc<Mutex<Vec<(String, Value)>>>;

    const SPEC: &str = r#"{"holderIdentity":"n2","leaseDurationSeconds":3,"acquireTime":"2026-12-07T05:00:00.000000Z","renewTime":"2026-12-07T05:00:01.250000Z","leaseTransitions":1}"#;

    fn server(replies: Vec<Reply>) -> (Leases, Seen) {
        let (service, mut handle) =
            tower_test::mock::pair::<HttpRequest<Body>, HttpResponse<Body>>();
        let seen = Seen::default();
        let log = seen.clone();
        let mut replies: VecDeque<Reply> = replies.into();
        tokio::spawn(async move {
            let mut hanging = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let line = format!("{} {}", request.method(), request.uri().path());
                let bytes = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                log.lock().unwrap().push((line, body));
                let answer = |code: u16, body: Value| {
                    HttpResponse::builder()
                        .status(code)
                        .body(Body::from(body.to_string().into_bytes()))
                        .unwrap()
                };
                match replies.pop_front() {
                    Some(Reply::Lease(code, version)) => {
                        let lease = json!({
                            "apiVersion": "coordination.k8s.io/v1",
                            "kind": "Lease",
                            "metadata": {"name": "l", "namespace": "kube-system", "resourceVersion": version},
                            "spec": serde_json::from_str::<Value>(SPEC).unwrap(),
                        });
                        respond.send_response(answer(code, lease));
                    }
                    Some(Reply::Status(code, reason)) => {
                        let status = json!({
                            "apiVersion": "v1",
                            "kind": "Status",
                            "metadata": {},
                            "status": "Failure",
                            "message": "as scripted",
                            "reason": reason,
                            "code": code,
                        });
                        respond.send_response(answer(code, status));
                    }
                    Some(Reply::Fail) | None => respond.send_error(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connection refused",
                    )),
                    Some(Reply::Hang) => hanging.push(respond),
                }
            }
        });
        (
            Leases::new(kube::Client::new(service, "default"), "kube-system"),
            seen,
        )
    }

    fn record(holder: &str) -> Record {
        Record {
            holder: holder.into(),
            duration: Duration::from_secs(3),
            acquired: Instant::from_secs(1),
            renewed: Instant::from_secs(2),
            transitions: 1,
        }
    }

    const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

    #[tokio::test]
    async fn get_reads_a_lease_or_its_absence() {
        let clock = Clock::start();
        let (leases, seen) = server(vec![
            Reply::Lease(200, "812"),
            Reply::Status(404, "NotFound"),
        ]);
        let Response::Got(Some(got)) = leases.call("l", Request::Get, &clock).await else {
            panic!("no lease");
        };
        assert_eq!(got.version, "812");
        assert_eq!(got.record.holder, "n2");
        assert_eq!(got.record.duration, Duration::from_secs(3));
        assert_eq!(got.record.transitions, 1);
        assert_eq!(
            got.record.renewed - got.record.acquired,
            Duration::from_millis(1250)
        );
        assert_eq!(
            leases.call("l", Request::Get, &clock).await,
            Response::Got(None)
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].0, format!("GET {PATH}/l"));
    }

    #[tokio::test]
    async fn create_posts_the_spec_and_conflicts_when_it_exists() {
        let clock = Clock::start();
        let (leases, seen) = server(vec![
            Reply::Lease(201, "900"),
            Reply::Status(409, "AlreadyExists"),
        ]);
        assert_eq!(
            leases
                .call("l", Request::Create(record("n1")), &clock)
                .await,
            Response::Written("900".into())
        );
        assert_eq!(
            leases
                .call("l", Request::Create(record("n1")), &clock)
                .await,
            Response::Conflict
        );
        let seen = seen.lock().unwrap();
        let (line, body) = &seen[0];
        assert_eq!(line, &format!("POST {PATH}"));
        assert_eq!(body["metadata"]["name"], "l");
        assert_eq!(body["metadata"]["namespace"], "kube-system");
        assert!(body["metadata"].get("resourceVersion").is_none());
        assert_eq!(body["spec"]["holderIdentity"], "n1");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 3);
        assert_eq!(body["spec"]["leaseTransitions"], 1);
        let renewed = body["spec"]["renewTime"].as_str().unwrap();
        assert_eq!(
            renewed,
            super::super::rfc3339(clock.to_wall(Instant::from_secs(2)))
        );
    }

    #[tokio::test]
    async fn update_replaces_at_the_version_and_conflicts_otherwise() {
        let clock = Clock::start();
        let (leases, seen) = server(vec![
            Reply::Lease(200, "901"),
            Reply::Status(409, "Conflict"),
            Reply::Status(404, "NotFound"),
        ]);
        let update = || Request::Update {
            record: record("n1"),
            version: "900".into(),
        };
        assert_eq!(
            leases.call("l", update(), &clock).await,
            Response::Written("901".into())
        );
        assert_eq!(leases.call("l", update(), &clock).await, Response::Conflict);
        assert_eq!(leases.call("l", update(), &clock).await, Response::Conflict);
        let seen = seen.lock().unwrap();
        let (line, body) = &seen[0];
        assert_eq!(line, &format!("PUT {PATH}/l"));
        assert_eq!(body["metadata"]["resourceVersion"], "900");
        assert_eq!(body["spec"]["holderIdentity"], "n1");
    }

    #[tokio::test]
    async fn failures_are_unavailable_and_name_the_lease() {
        let clock = Clock::start();
        let (leases, _) = server(vec![
            Reply::Status(500, "InternalError"),
            Reply::Status(403, "Forbidden"),
            Reply::Fail,
            Reply::Status(503, "ServiceUnavailable"),
        ]);
        for request in [
            Request::Get,
            Request::Create(record("n1")),
            Request::Update {
                record: record("n1"),
                version: "1".into(),
            },
            Request::Get,
        ] {
            match leases.call("l", request, &clock).await {
                Response::Unavailable(message) => assert!(
                    message.starts_with("lease l: Kubernetes API, namespace kube-system: "),
                    "{message}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_hanging_server_is_cut_off_at_the_bound() {
        let clock = Clock::start();
        let (leases, _) = server(vec![Reply::Hang]);
        let store = super::super::LeaseStore {
            backend: super::super::Backend::Kubernetes(leases),
            clock,
            timeout: std::time::Duration::from_millis(50),
        };
        let started = std::time::Instant::now();
        let Response::Unavailable(message) = store.call("l", Request::Get).await else {
            panic!("answered");
        };
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            message,
            "lease l: Kubernetes API, namespace kube-system: no answer within 50ms"
        );
    }

    #[tokio::test]
    async fn list_reads_every_lease() {
        let (service, mut handle) =
            tower_test::mock::pair::<HttpRequest<Body>, HttpResponse<Body>>();
        tokio::spawn(async move {
            if let Some((_, respond)) = handle.next_request().await {
                let lease = |name: &str, version: Option<&str>| {
                    json!({
                        "metadata": {"name": name, "namespace": "kube-system", "resourceVersion": version},
                        "spec": {"holderIdentity": name},
                    })
                };
                let list = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "LeaseList",
                    "metadata": {"resourceVersion": "77"},
                    "items": [lease("a", Some("5")), lease("b", None), lease("c", Some("6"))],
                });
                respond.send_response(
                    HttpResponse::builder()
                        .status(200)
                        .body(Body::from(list.to_string().into_bytes()))
                        .unwrap(),
                );
            }
        });
        let leases = Leases::new(kube::Client::new(service, "default"), "kube-system");
        let listed = leases.list(&Clock::start()).await.unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|(n, v)| (n.as_str(), v.record.holder.as_str(), v.version.as_str()))
            .collect();
        assert_eq!(names, [("a", "a", "5"), ("c", "c", "6")]);
    }
}
