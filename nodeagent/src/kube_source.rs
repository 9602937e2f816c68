//! The Kubernetes API source: the agent's objects from the API server, the
//! alternative to the configuration directory ([`crate::config`]).
//!
//! It owns the watches (one kube `watcher` per entry of [`resources`]: list,
//! then watch with bookmarks; a watch that expires (410 Gone) makes kube's
//! watcher list again, and a failed request is retried after kube's default
//! backoff), the objects they currently hold, and handing a full [`Objects`]
//! snapshot on a `tokio::sync::watch` channel after each change, once every
//! resource has been listed.
//!
//! It does not own decoding: every object goes through [`config::decode`],
//! exactly as a document of the directory does, and an object whose kind
//! router-core does not read is dropped there without a word. Nor does it own
//! what the objects mean: the controller reconciles each snapshot as it does
//! a directory reload (`cli`). It never writes to the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, TypeMeta};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, DefaultBackoff, Event};
use kube::{Client, Config};
use router_core::cilium::kube::BGP_SECRETS_NAMESPACE;
use router_core::cilium::{Kind, Object, Objects};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{self, Decoded};

/// A resource the source watches.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Its group, version, kind and plural.
    pub api: ApiResource,
    /// The one namespace watched; `None`: every namespace (or cluster-scoped).
    pub namespace: Option<&'static str>,
}

/// What the source watches: every kind router-core reads (`Kind::ALL`), each
/// decoded through [`config::decode`]. Secrets are watched in the BGP
/// secrets namespace only, the one Cilium reads them from;
/// `CiliumL2AnnouncementPolicy` at v2alpha1, the version Cilium serves it at.
pub fn resources() -> Vec<Resource> {
    let all = |api| Resource {
        api,
        namespace: None,
    };
    let cilium_at = |version: &str, kind: &str, plural: &str| {
        all(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cilium.io", version, kind),
            plural,
        ))
    };
    let cilium = |kind: &str, plural: &str| cilium_at("v2", kind, plural);
    vec![
        all(ApiResource::erase::<Node>(&())),
        all(ApiResource::erase::<Service>(&())),
        all(ApiResource::erase::<EndpointSlice>(&())),
        Resource {
            api: ApiResource::erase::<Secret>(&()),
            namespace: Some(BGP_SECRETS_NAMESPACE),
        },
        cilium("CiliumNode", "ciliumnodes"),
        cilium("CiliumEndpoint", "ciliumendpoints"),
        cilium("CiliumBGPClusterConfig", "ciliumbgpclusterconfigs"),
        cilium("CiliumBGPPeerConfig", "ciliumbgppeerconfigs"),
        cilium("CiliumBGPAdvertisement", "ciliumbgpadvertisements"),
        cilium(
            "CiliumBGPNodeConfigOverride",
            "ciliumbgpnodeconfigoverrides",
        ),
        cilium("CiliumLoadBalancerIPPool", "ciliumloadbalancerippools"),
        cilium_at(
            "v2alpha1",
            "CiliumL2AnnouncementPolicy",
            "ciliuml2announcementpolicies",
        ),
    ]
}

/// A client for the API server of `kubeconfig`, or, without one, of the
/// pod's service account (in-cluster), else of `$KUBECONFIG` or
/// `~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(_) => Config::infer()
                .await
                .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
        },
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

/// Watch `client`'s API server in a task; the receiver holds `None` until
/// every resource has been listed, then each snapshot.
pub fn spawn(client: Client) -> watch::Receiver<Option<Objects>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(Source::new(client).run(sender));
    receiver
}

/// The watches of [`resources`] on one API server.
pub struct Source {
    client: Client,
    resources: Vec<Resource>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// The source of [`resources`] on `client`'s API server.
    pub fn new(client: Client) -> Source {
        Source {
            client,
            resources: resources(),
        }
    }

    /// Watch until every receiver of `snapshots` is gone, with kube's default
    /// backoff between failed requests (as `WatchStreamExt::default_backoff`).
    pub async fn run(self, snapshots: watch::Sender<Option<Objects>>) {
        self.run_with(DefaultBackoff::default, snapshots).await;
    }

    async fn run_with<B>(self, backoff: fn() -> B, snapshots: watch::Sender<Option<Objects>>)
    where
        B: Backoff + 'static,
    {
        let watches = self.resources.iter().enumerate().map(|(index, r)| {
            let api = match r.namespace {
                Some(ns) => Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &r.api),
                None => Api::all_with(self.client.clone(), &r.api),
            };
            // The default configuration asks for bookmarks; kube's watcher
            // lists again when a watch answers 410 Gone.
            watcher::watcher(api, watcher::Config::default())
                .backoff(backoff())
                .map(move |event| (index, event))
                .boxed()
        });
        // What is ready at once is handled as one change.
        let mut batches = stream::select_all(watches).ready_chunks(256);
        let mut state = State::new(self.resources);
        loop {
            let batch = tokio::select! {
                batch = batches.next() => batch,
                () = snapshots.closed() => return,
            };
            let Some(batch) = batch else { return };
            for (index, event) in batch {
                state.handle(index, event);
            }
            state.publish(&snapshots);
        }
    }
}

/// Namespace and name.
type Key = (Option<String>, String);

fn key(object: &DynamicObject) -> Key {
    (
        object.metadata.namespace.clone(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// One resource's objects.
#[derive(Debug, Default)]
struct Store {
    /// The objects that decoded (and are in [`State::objects`]), and their kind.
    held: BTreeMap<Key, Kind>,
    /// During a list: what it returned so far.
    listing: Option<Listing>,
    /// Objects that did not decode, and the `resourceVersion` reported.
    bad: BTreeMap<Key, Option<String>>,
    /// Whether the first list is complete.
    synced: bool,
}

/// A list in progress.
#[derive(Debug, Default)]
struct Listing {
    /// The objects that decoded.
    decoded: Vec<(Key, Kind, Object)>,
    /// Every object listed.
    seen: BTreeSet<Key>,
}

impl Store {
    /// Note that `key` at `version` did not decode; whether to report it
    /// (not when this version was reported already).
    fn note_bad(&mut self, key: Key, version: Option<String>) -> bool {
        self.bad.insert(key, version.clone()) != Some(version)
    }
}

/// Every resource's store, and the objects they hold together.
#[derive(Debug)]
struct State {
    resources: Vec<Resource>,
    stores: Vec<Store>,
    objects: Objects,
}

impl State {
    fn new(resources: Vec<Resource>) -> State {
        let stores = resources.iter().map(|_| Store::default()).collect();
        State {
            resources,
            stores,
            objects: Objects::default(),
        }
    }

    fn handle(&mut self, index: usize, event: Result<Event<DynamicObject>, watcher::Error>) {
        let api = &self.resources[index].api;
        let store = &mut self.stores[index];
        match event {
            Ok(Event::Apply(object)) => {
                let key = key(&object);
                match decode(api, store, object) {
                    Some((kind, object)) => {
                        self.objects.insert(object);
                        store.held.insert(key, kind);
                    }
                    None => {
                        if let Some(kind) = store.held.remove(&key) {
                            self.objects.remove(kind, key.0.as_deref(), &key.1);
                        }
                    }
                }
            }
            Ok(Event::Delete(object)) => {
                let key = key(&object);
                store.bad.remove(&key);
                if let Some(kind) = store.held.remove(&key) {
                    self.objects.remove(kind, key.0.as_deref(), &key.1);
                }
            }
            Ok(Event::Init) => store.listing = Some(Listing::default()),
            Ok(Event::InitApply(object)) => {
                let key = key(&object);
                let decoded = decode(api, store, object);
                let listing = store.listing.get_or_insert_default();
                listing.seen.insert(key.clone());
                if let Some((kind, object)) = decoded {
                    listing.decoded.push((key, kind, object));
                }
            }
            Ok(Event::InitDone) => {
                let listing = store.listing.take().unwrap_or_default();
                for ((namespace, name), kind) in std::mem::take(&mut store.held) {
                    self.objects.remove(kind, namespace.as_deref(), &name);
                }
                for (key, kind, object) in listing.decoded {
                    self.objects.insert(object);
                    store.held.insert(key, kind);
                }
                store.bad.retain(|key, _| listing.seen.contains(key));
                if !store.synced {
                    info!(kind = %api.kind, objects = store.held.len(), "listed");
                }
                store.synced = true;
            }
            Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                if status.code == 404 && !store.synced =>
            {
                warn!(kind = %api.kind, "not served by the API server: none until it is");
                store.synced = true;
            }
            Err(e) => warn!(kind = %api.kind, error = %e, "watch failed; retrying"),
        }
    }

    /// Hand the objects to `snapshots` once every resource is listed, when
    /// they changed.
    fn publish(&self, snapshots: &watch::Sender<Option<Objects>>) {
        if !self.stores.iter().all(|s| s.synced) {
            return;
        }
        snapshots.send_if_modified(|current| {
            if current.as_ref() == Some(&self.objects) {
                return false;
            }
            *current = Some(self.objects.clone());
            true
        });
    }
}

/// Decode `object` of `api` as a document of the directory would be (with
/// `apiVersion` and `kind` from `api` when the API left them out, as in list
/// items); `None` for a kind the agent does not read or, reported once per
/// version, an object that does not decode.
fn decode(
    api: &ApiResource,
    store: &mut Store,
    mut object: DynamicObject,
) -> Option<(Kind, Object)> {
    if object
        .types
        .as_ref()
        .is_none_or(|t| t.api_version.is_empty() || t.kind.is_empty())
    {
        object.types = Some(TypeMeta {
            api_version: api.api_version.clone(),
            kind: api.kind.clone(),
        });
    }
    let key = key(&object);
    let version = object.metadata.resource_version.clone();
    let decoded = serde_json::to_value(&object)
        .map_err(|e| e.to_string())
        .and_then(|value| config::decode(&value).map_err(|e| e.message));
    match decoded {
        Ok(Decoded::Object(kind, object)) => {
            store.bad.remove(&key);
            Some((kind, *object))
        }
        Ok(Decoded::Ignored { .. }) => None,
        Err(message) => {
            if store.note_bad(key.clone(), version) {
                error!(
                    kind = %api.kind,
                    namespace = key.0.as_deref(),
                    name = %key.1,
                    error = %message,
                    "object ignored: it does not decode"
                );
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tokio::sync::Notify;

    /// Retry after 10 ms, forever.
    struct Quick;

    impl Iterator for Quick {
        type Item = Duration;
        fn next(&mut self) -> Option<Duration> {
            Some(Duration::from_millis(10))
        }
    }

    impl Backoff for Quick {
        fn reset(&mut self) {}
    }

    /// What the fake API server answers to one request of a resource.
    enum Reply {
        /// A list (the request must be one) at this `resourceVersion`.
        List(&'static str, Vec<Value>),
        /// A watch (the request must be one) that streams these events once
        /// the gate opens, then ends.
        Watch(Arc<Notify>, Vec<Value>),
        /// A `Status` with this HTTP code.
        Status(u16),
        /// No answer: the connection fails.
        Fail,
    }

    /// The requests the server saw: `list|watch plural query`.
    type Requests = Arc<Mutex<Vec<String>>>;

    /// A client whose API server answers each resource (by plural) from its
    /// script, in order; past the script, lists are empty and watches hang.
    fn server(script: Vec<(&'static str, Vec<Reply>)>) -> (Client, Requests) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let requests = Requests::default();
        let log = requests.clone();
        let mut script: HashMap<&str, VecDeque<Reply>> = script
            .into_iter()
            .map(|(plural, replies)| (plural, replies.into()))
            .collect();
        tokio::spawn(async move {
            let mut hanging = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let uri = request.uri();
                let plural = uri.path().rsplit('/').next().unwrap_or("").to_string();
                let query = uri.query().unwrap_or("").to_string();
                let watch = query.split('&').any(|p| p == "watch=true");
                let verb = if watch { "watch" } else { "list" };
                log.lock().unwrap().push(format!("{verb} {plural} {query}"));
                let body = |code: u16, body: String| {
                    Response::builder()
                        .status(code)
                        .body(Body::from(body.into_bytes()))
                        .unwrap()
                };
                match script
                    .get_mut(plural.as_str())
                    .and_then(VecDeque::pop_front)
                {
                    Some(Reply::List(version, items)) => {
                        assert!(!watch, "{plural}: a watch where the script lists");
                        let list = json!({
                            "apiVersion": "v1",
                            "kind": "List",
                            "metadata": {"resourceVersion": version},
                            "items": items,
                        });
                        respond.send_response(body(200, list.to_string()));
                    }
                    Some(Reply::Watch(gate, events)) => {
                        assert!(watch, "{plural}: a list where the script watches");
                        tokio::spawn(async move {
                            gate.notified().await;
                            let lines: Vec<String> = events.iter().map(Value::to_string).collect();
                            respond.send_response(body(200, lines.join("\n")));
                        });
                    }
                    Some(Reply::Status(code)) => {
                        respond.send_response(body(code, status(code).to_string()));
                    }
                    Some(Reply::Fail) => respond.send_error(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "connection reset",
                    )),
                    None if watch => hanging.push(respond),
                    None => {
                        let empty = json!({"metadata": {"resourceVersion": "1"}, "items": []});
                        respond.send_response(body(200, empty.to_string()));
                    }
                }
            }
        });
        (Client::new(service, "default"), requests)
    }

    /// A source on a server answering `script`, retrying quickly.
    fn start(
        script: Vec<(&'static str, Vec<Reply>)>,
    ) -> (watch::Receiver<Option<Objects>>, Requests) {
        let (client, requests) = server(script);
        let (sender, receiver) = watch::channel(None);
        tokio::spawn(Source::new(client).run_with(|| Quick, sender));
        (receiver, requests)
    }

    /// The first snapshot for which `done` holds.
    async fn snapshot(
        snapshots: &mut watch::Receiver<Option<Objects>>,
        done: impl Fn(&Objects) -> bool,
    ) -> Objects {
        let wait = snapshots.wait_for(|o| o.as_ref().is_some_and(&done));
        let objects = tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("no such snapshot within 5 s")
            .expect("the source ended");
        objects.clone().expect("listed")
    }

    /// The verbs of the requests on `plural`, in order.
    fn verbs(requests: &Requests, plural: &str) -> Vec<String> {
        requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.split(' ').nth(1) == Some(plural))
            .map(|r| r.split(' ').next().unwrap_or("").to_string())
            .collect()
    }

    fn status(code: u16) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "message": "as scripted",
            "code": code,
        })
    }

    fn event(kind: &str, object: Value) -> Value {
        json!({"type": kind, "object": object})
    }

    /// The event a watch streams when its resourceVersion is too old.
    fn gone() -> Value {
        event("ERROR", status(410))
    }

    fn peer(name: &str, version: &str, hold: Value) -> Value {
        json!({
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumBGPPeerConfig",
            "metadata": {"name": name, "resourceVersion": version},
            "spec": {"timers": {"holdTimeSeconds": hold}},
        })
    }

    fn node(name: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "resourceVersion": "1", "labels": {"bgp": "on"}},
            "spec": {"podCIDRs": ["10.244.0.0/24"]},
        })
    }

    /// `object` as a list item: the API leaves out `apiVersion` and `kind`.
    fn item(mut object: Value) -> Value {
        let map = object.as_object_mut().unwrap();
        map.remove("apiVersion");
        map.remove("kind");
        object
    }

    fn peers(objects: &Objects) -> Vec<&str> {
        objects.peer_configs.keys().map(String::as_str).collect()
    }

    fn hold(objects: &Objects, name: &str) -> Option<u32> {
        objects
            .peer_configs
            .get(name)?
            .spec
            .timers
            .hold_time_seconds
    }

    #[tokio::test]
    async fn a_list_then_added_modified_deleted() {
        let gate = Arc::new(Notify::new());
        let slice = json!({
            "metadata": {"name": "web-x1", "namespace": "default", "resourceVersion": "1"},
            "addressType": "IPv4",
            "endpoints": [],
        });
        let (mut snapshots, requests) = start(vec![
            ("nodes", vec![Reply::List("1", vec![item(node("k8s-ctr"))])]),
            ("endpointslices", vec![Reply::List("1", vec![slice])]),
            (
                "ciliumbgppeerconfigs",
                vec![
                    Reply::List(
                        "1",
                        vec![
                            item(peer("a", "1", json!(9))),
                            item(peer("b", "1", json!(9))),
                        ],
                    ),
                    Reply::Watch(
                        gate.clone(),
                        vec![
                            event("ADDED", peer("c", "2", json!(9))),
                            event("MODIFIED", peer("a", "3", json!(30))),
                            event("DELETED", peer("b", "4", json!(9))),
                        ],
                    ),
                ],
            ),
        ]);
        let listed = snapshot(&mut snapshots, |_| true).await;
        assert_eq!(peers(&listed), ["a", "b"]);
        assert_eq!(hold(&listed, "a"), Some(9));
        assert_eq!(listed.nodes["k8s-ctr"].metadata.labels["bgp"], "on");
        assert_eq!(
            listed.nodes["k8s-ctr"].spec.pod_cidrs[0].to_string(),
            "10.244.0.0/24"
        );
        gate.notify_one();
        let watched = snapshot(&mut snapshots, |o| !o.peer_configs.contains_key("b")).await;
        assert_eq!(peers(&watched), ["a", "c"]);
        assert_eq!(hold(&watched, "a"), Some(30));
        assert_eq!(watched.nodes.len(), 1);
        let requests = requests.lock().unwrap();
        let watch = requests
            .iter()
            .find(|r| r.starts_with("watch ciliumbgppeerconfigs "))
            .expect("a watch");
        assert!(watch.contains("allowWatchBookmarks=true"), "{watch}");
        assert!(watch.contains("resourceVersion=1"), "{watch}");
    }

    #[tokio::test]
    async fn a_malformed_object_is_skipped_and_the_rest_stays() {
        let gate = Arc::new(Notify::new());
        let cluster = json!({
            "metadata": {"name": "c", "resourceVersion": "1"},
            "spec": {"bgpInstances": [{"name": "i", "localASN": 65001}]},
        });
        let (mut snapshots, _) = start(vec![
            (
                "ciliumbgpclusterconfigs",
                vec![Reply::List("1", vec![cluster])],
            ),
            (
                "ciliumbgppeerconfigs",
                vec![
                    Reply::List(
                        "1",
                        vec![
                            item(peer("a", "1", json!(9))),
                            item(peer("bad", "1", json!("nine"))),
                        ],
                    ),
                    Reply::Watch(
                        gate.clone(),
                        vec![event("MODIFIED", peer("bad", "2", json!(10)))],
                    ),
                ],
            ),
        ]);
        let listed = snapshot(&mut snapshots, |_| true).await;
        assert_eq!(peers(&listed), ["a"]);
        assert!(listed.cluster_configs.contains_key("c"));
        gate.notify_one();
        let fixed = snapshot(&mut snapshots, |o| o.peer_configs.len() == 2).await;
        assert_eq!(hold(&fixed, "bad"), Some(10));
        assert_eq!(hold(&fixed, "a"), Some(9));
        assert!(fixed.cluster_configs.contains_key("c"));
    }

    /// What tracing wrote, for the log assertions.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn dynamic(object: Value) -> DynamicObject {
        serde_json::from_value(object).unwrap()
    }

    #[test]
    fn every_kind_router_core_reads_is_watched_once() {
        let mut watched: Vec<String> = resources().into_iter().map(|r| r.api.kind).collect();
        watched.sort();
        let mut kinds: Vec<&str> = router_core::cilium::objects::Kind::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        kinds.sort();
        assert_eq!(watched, kinds);
    }

    #[test]
    fn a_malformed_object_is_reported_once_per_version() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let mut state = State::new(resources());
        let index = state
            .resources
            .iter()
            .position(|r| r.api.kind == "CiliumBGPPeerConfig")
            .unwrap();
        let bad = |version| dynamic(item(peer("bad", version, json!("nine"))));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..2 {
                state.handle(index, Ok(Event::Init));
                state.handle(index, Ok(Event::InitApply(bad("1"))));
                state.handle(
                    index,
                    Ok(Event::InitApply(dynamic(item(peer("a", "1", json!(9)))))),
                );
                state.handle(index, Ok(Event::InitDone));
            }
            state.handle(index, Ok(Event::Apply(bad("2"))));
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let reports: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("does not decode"))
            .collect();
        assert_eq!(reports.len(), 2, "{log}");
        for report in &reports {
            assert!(report.contains("kind=CiliumBGPPeerConfig"), "{report}");
            assert!(report.contains("name=bad"), "{report}");
            assert!(
                report.contains("spec.timers.holdTimeSeconds: invalid type"),
                "{report}"
            );
        }
        assert_eq!(peers(&state.objects), ["a"]);
    }

    #[tokio::test]
    async fn a_410_gone_watch_lists_again_and_what_is_gone_goes() {
        let gate = Arc::new(Notify::new());
        let (mut snapshots, requests) = start(vec![(
            "ciliumbgppeerconfigs",
            vec![
                Reply::List(
                    "1",
                    vec![
                        item(peer("a", "1", json!(9))),
                        item(peer("b", "1", json!(9))),
                    ],
                ),
                Reply::Watch(gate.clone(), vec![gone()]),
                Reply::List("5", vec![item(peer("a", "5", json!(20)))]),
            ],
        )]);
        let listed = snapshot(&mut snapshots, |_| true).await;
        assert_eq!(peers(&listed), ["a", "b"]);
        gate.notify_one();
        let relisted = snapshot(&mut snapshots, |o| hold(o, "a") == Some(20)).await;
        assert_eq!(peers(&relisted), ["a"]);
        assert_eq!(
            verbs(&requests, "ciliumbgppeerconfigs")[..3],
            ["list", "watch", "list"]
        );
    }

    #[tokio::test]
    async fn a_dropped_connection_is_retried() {
        let gate = Arc::new(Notify::new());
        gate.notify_one();
        let (mut snapshots, requests) = start(vec![(
            "ciliumbgppeerconfigs",
            vec![
                Reply::Fail,
                Reply::List("1", vec![item(peer("a", "1", json!(9)))]),
                Reply::Fail,
                Reply::Watch(gate, vec![event("ADDED", peer("b", "2", json!(9)))]),
            ],
        )]);
        let recovered = snapshot(&mut snapshots, |o| o.peer_configs.len() == 2).await;
        assert_eq!(peers(&recovered), ["a", "b"]);
        assert_eq!(
            verbs(&requests, "ciliumbgppeerconfigs")[..4],
            ["list", "list", "watch", "watch"]
        );
    }

    #[tokio::test]
    async fn a_resource_the_server_does_not_serve_holds_nothing_up() {
        let (mut snapshots, _) = start(vec![
            ("nodes", vec![Reply::List("1", vec![item(node("k8s-ctr"))])]),
            // Answered 404 for longer than the test waits.
            (
                "ciliumloadbalancerippools",
                (0..1000).map(|_| Reply::Status(404)).collect(),
            ),
        ]);
        let listed = snapshot(&mut snapshots, |_| true).await;
        assert!(listed.nodes.contains_key("k8s-ctr"));
    }

    #[tokio::test]
    async fn the_source_stops_when_no_one_listens() {
        let (client, _) = server(vec![]);
        let (sender, receiver) = watch::channel(None);
        let source = tokio::spawn(Source::new(client).run_with(|| Quick, sender));
        drop(receiver);
        tokio::time::timeout(Duration::from_secs(5), source)
            .await
            .expect("the source still runs")
            .unwrap();
    }
}
