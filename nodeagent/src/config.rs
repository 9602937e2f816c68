//! The configuration directory: every YAML document of every YAML file in it
//! (symbolic links followed, as in a ConfigMap volume), decoded into
//! router-core's Cilium objects. A document that fails is reported with its
//! file, index and field; while running, its file keeps its last clean
//! version ([`Directory`]). Files are bounded in size and nesting
//! (router-core's `cilium::limits`, the simulator's too).
//! [`decode`] decodes one document; the Kubernetes API source
//! (`kube_source`) decodes every object it watches through it too.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use router_core::cilium::lbipam::{LoadBalancerIpam, with_ingress};
use router_core::cilium::limits::{self, MAX_FILE_BYTES};
use router_core::cilium::meta::TypeMeta;
use router_core::cilium::{Kind, Object, Objects};
use router_core::ipam::lb::Pending;
use serde::{Deserialize, Deserializer};
use tracing::{error, info, warn};

/// The decoded directory.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every object that decoded.
    pub objects: Objects,
    /// Documents that did not.
    pub errors: Vec<DocumentError>,
    /// Documents of kinds the agent does not read.
    pub ignored: Vec<String>,
}

/// A document that was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// The file.
    pub file: PathBuf,
    /// The document's position in the file, from 1.
    pub document: usize,
    /// `Kind name` when known.
    pub object: Option<String>,
    /// The field path and the reason.
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What identifies the directory's current contents: each file's name,
/// length and modification time.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The files of `dir` that hold configuration (`*.yaml`, `*.yml`, `*.json`;
/// not hidden), sorted by name: logs or editor files beside them are ignored.
/// Symbolic links count (a ConfigMap volume is `x.yaml -> ..data/x.yaml`);
/// one that leads nowhere or loops is listed, and reading it says why.
fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let yaml = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x));
        let kind = entry.file_type()?;
        let file = kind.is_file()
            || (kind.is_symlink() && fs::metadata(entry.path()).map_or(true, |m| m.is_file()));
        if yaml && !name.starts_with('.') && file {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The fingerprint of `dir` now (a file that cannot be examined counts as
/// empty: reading it will say why).
pub fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    Ok(files(dir)?
        .into_iter()
        .map(|path| match fs::metadata(&path) {
            Ok(meta) => (path, meta.len(), meta.modified().ok()),
            Err(_) => (path, 0, None),
        })
        .collect())
}

/// One file, decoded.
#[derive(Debug, Default)]
struct FileLoad {
    objects: Vec<Object>,
    errors: Vec<DocumentError>,
    ignored: Vec<String>,
}

/// The configuration directory as `run` follows it: what it read last,
/// LB-IPAM's assignments kept across reloads (an address once held is kept,
/// as Cilium's operator keeps it; `lbipam.cilium.io/ips` pins one), each
/// file's last version that read cleanly, and the documents already
/// reported.
#[derive(Debug)]
pub struct Directory {
    path: PathBuf,
    fingerprint: Option<Fingerprint>,
    /// A changed fingerprint seen once: read when it is seen again.
    settling: Option<Fingerprint>,
    lb: LoadBalancerIpam,
    /// Why each pending service is pending, as last logged.
    pending: BTreeMap<(String, String), Pending>,
    last_good: BTreeMap<PathBuf, Vec<Object>>,
    reported: BTreeSet<String>,
}

impl Directory {
    /// The directory at `path`, not read yet.
    pub fn new(path: &Path) -> Directory {
        Directory {
            path: path.to_path_buf(),
            fingerprint: None,
            settling: None,
            lb: LoadBalancerIpam::default(),
            pending: BTreeMap::new(),
            last_good: BTreeMap::new(),
            reported: BTreeSet::new(),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the directory again if it changed and then stayed unchanged for
    /// one call (a file being written is not read half-way; the first read
    /// does not wait): the objects to run from (LoadBalancer ingress
    /// addresses filled in by LB-IPAM), or `None` when there is nothing new.
    ///
    /// A file that does not read cleanly (unreadable, too large, a syntax or
    /// field error) keeps its last clean version, with a warning; the same
    /// object in two files is a conflict, the first file's wins. Errors are
    /// logged at each read, kinds the agent does not read once per file and
    /// document.
    pub fn reload(&mut self) -> std::io::Result<Option<Objects>> {
        let fingerprint = fingerprint(&self.path)?;
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            self.settling = None;
            return Ok(None);
        }
        if self.fingerprint.is_some() && self.settling.as_ref() != Some(&fingerprint) {
            self.settling = Some(fingerprint);
            return Ok(None);
        }
        self.settling = None;
        let files = files(&self.path)?;
        self.last_good.retain(|f, _| files.contains(f));
        let mut merged = Loaded::default();
        let mut chosen = Vec::new();
        for file in files {
            let load = load_file(&file);
            for e in &load.errors {
                error!("bad document: {e}");
            }
            for i in &load.ignored {
                if self.reported.insert(i.clone()) {
                    info!("document of a kind the agent does not read, ignored: {i}");
                }
            }
            let objects = if load.errors.is_empty() {
                self.last_good.insert(file.clone(), load.objects.clone());
                load.objects
            } else if let Some(good) = self.last_good.get(&file) {
                warn!(
                    file = %file.display(),
                    objects = good.len(),
                    "keeping the file's last version that read cleanly until it reads cleanly again"
                );
                good.clone()
            } else {
                load.objects
            };
            merged.errors.extend(load.errors);
            chosen.push((file, objects));
        }
        for conflict in merge(&chosen, &mut merged.objects) {
            warn!("{conflict}");
        }
        self.fingerprint = Some(fingerprint);
        info!(
            nodes = merged.objects.nodes.len(),
            services = merged.objects.services.len(),
            cluster_configs = merged.objects.cluster_configs.len(),
            peer_configs = merged.objects.peer_configs.len(),
            advertisements = merged.objects.advertisements.len(),
            errors = merged.errors.len(),
            "configuration loaded"
        );
        Ok(Some(self.with_lb_ipam(&merged.objects)))
    }

    /// `objects` with the LoadBalancer ingress addresses router-core's
    /// LB-IPAM assigns from their pools, as Cilium's operator would write
    /// them. A service that stays pending is logged once per reason, with
    /// the reason and message of Cilium's `IPAMRequestSatisfied` condition.
    pub fn with_lb_ipam(&mut self, objects: &Objects) -> Objects {
        let decisions = self.lb.reconcile(objects);
        let pending: BTreeMap<(String, String), Pending> = decisions
            .services
            .iter()
            .filter_map(|(key, a)| Some((key.clone(), a.clone().err()?)))
            .collect();
        for ((namespace, name), why) in &pending {
            if self.pending.get(&(namespace.clone(), name.clone())) != Some(why) {
                warn!(
                    service = %format!("{namespace}/{name}"),
                    reason = why.reason(),
                    "LoadBalancer service pending: {}",
                    why.message()
                );
            }
        }
        self.pending = pending;
        with_ingress(objects, decisions)
    }
}

/// Put every file's objects into `into`, files in order; the same object
/// (kind, namespace, name) in a later file is a conflict and left out.
/// Returns the conflicts, each naming both files.
fn merge(files: &[(PathBuf, Vec<Object>)], into: &mut Objects) -> Vec<String> {
    let mut seen: BTreeMap<(Kind, String, String), &Path> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for (file, objects) in files {
        for object in objects {
            let meta = object.metadata();
            let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
            let key = (object.kind(), namespace, meta.name.clone());
            match seen.get(&key) {
                Some(first) => conflicts.push(format!(
                    "conflict: {} is in {} and in {}; using {}'s",
                    object.id(),
                    first.display(),
                    file.display(),
                    first.display()
                )),
                None => {
                    seen.insert(key, file);
                    into.insert(object.clone());
                }
            }
        }
    }
    conflicts
}

/// Read and decode every document in `dir` (each file as it is now; the
/// same object in two files: the first file's).
pub fn load(dir: &Path) -> std::io::Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut chosen = Vec::new();
    for file in files(dir)? {
        let load = load_file(&file);
        loaded.errors.extend(load.errors);
        loaded.ignored.extend(load.ignored);
        chosen.push((file, load.objects));
    }
    merge(&chosen, &mut loaded.objects);
    Ok(loaded)
}

/// Read and decode one file, within router-core's [`limits`].
fn load_file(file: &Path) -> FileLoad {
    let mut load = FileLoad::default();
    let refuse = |load: &mut FileLoad, message: String| {
        load.errors.push(DocumentError {
            file: file.to_path_buf(),
            document: 0,
            object: None,
            message,
        });
    };
    let mut text = String::new();
    let read =
        fs::File::open(file).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text));
    match read {
        Err(e) => refuse(&mut load, format!("unreadable: {e}")),
        Ok(n) if n as u64 > MAX_FILE_BYTES => refuse(&mut load, limits::too_large(n as u64)),
        Ok(_) => match limits::check(&text) {
            Err(why) => refuse(&mut load, why),
            Ok(()) => load_text(file, &text, &mut load),
        },
    }
    load
}

fn load_text(file: &Path, text: &str, loaded: &mut FileLoad) {
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let error = |object: Option<String>, message: String| DocumentError {
            file: file.to_path_buf(),
            document: index + 1,
            object,
            message,
        };
        let value = match serde_norway::Value::deserialize(doc) {
            Ok(serde_norway::Value::Null) => continue,
            Ok(value) => value,
            Err(e) => {
                // A syntax error ends the stream: the YAML iterator would
                // yield the same error forever.
                loaded.errors.push(error(None, e.to_string()));
                break;
            }
        };
        match decode(&value) {
            Ok(Decoded::Object(_, object)) => loaded.objects.push(*object),
            Ok(Decoded::Ignored { meta, name })
                if Kind::ALL.iter().any(|k| k.name() == meta.kind) =>
            {
                loaded.errors.push(error(
                    Some(format!("{} {name}", meta.kind)),
                    format!(
                        "apiVersion {:?} is not one the agent reads for {}",
                        meta.api_version, meta.kind
                    ),
                ));
            }
            Ok(Decoded::Ignored { meta, name }) => loaded.ignored.push(format!(
                "{}: document {}: {} {name} ({})",
                file.display(),
                index + 1,
                meta.kind,
                meta.api_version
            )),
            Err(e) => loaded.errors.push(error(e.object, e.message)),
        }
    }
}

/// One document, decoded by [`decode`].
#[derive(Debug)]
pub enum Decoded {
    /// An object of a kind the agent reads, and its kind (boxed: objects
    /// are large beside an ignored document's name).
    Object(Kind, Box<Object>),
    /// A document of a kind the agent does not read.
    Ignored {
        /// Its `apiVersion` and `kind`.
        meta: TypeMeta,
        /// Its `metadata.name`, `?` when it has none.
        name: String,
    },
}

/// Why a document did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// `Kind name`, when `apiVersion` and `kind` were read.
    pub object: Option<String>,
    /// The field path and the reason.
    pub message: String,
}

/// Just enough of a document to name it in messages.
#[derive(Default, Deserialize)]
struct Named {
    #[serde(default)]
    metadata: NamedMeta,
}

#[derive(Default, Deserialize)]
struct NamedMeta {
    #[serde(default)]
    name: Option<String>,
}

/// Decode one document: a YAML document of the directory, or an object of
/// the Kubernetes API (`kube_source`). Its `apiVersion` and `kind` pick the
/// kind ([`Kind::of`]), which decodes the whole document; an error names the
/// field path.
pub fn decode<'de, D>(document: D) -> Result<Decoded, DecodeError>
where
    D: Deserializer<'de> + Copy,
{
    let meta =
        serde_path_to_error::deserialize::<_, TypeMeta>(document).map_err(|e| DecodeError {
            object: None,
            message: format!("{}: {}", e.path(), e.inner()),
        })?;
    let name = Named::deserialize(document)
        .ok()
        .and_then(|n| n.metadata.name)
        .unwrap_or_else(|| "?".into());
    let Some(kind) = Kind::of(&meta) else {
        return Ok(Decoded::Ignored { meta, name });
    };
    let mut track = serde_path_to_error::Track::new();
    kind.deserialize(serde_path_to_error::Deserializer::new(document, &mut track))
        .map(|object| Decoded::Object(kind, Box::new(object)))
        .map_err(|e| DecodeError {
            object: Some(format!("{} {name}", meta.kind)),
            message: format!("{}: {e}", track.path()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_ends_the_file_with_one_error() {
        let mut loaded = FileLoad::default();
        load_text(
            Path::new("bad.yaml"),
            "a: [unclosed\n---\nb: 1\n",
            &mut loaded,
        );
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert_eq!(loaded.errors[0].document, 1);
    }

    #[test]
    fn only_yaml_files_are_configuration() {
        let dir = std::env::temp_dir().join(format!("nexthop-agent-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "a.yaml",
            "b.yml",
            "c.json",
            "agent.log",
            ".hidden.yaml",
            "notes.txt",
        ] {
            fs::write(dir.join(name), "").unwrap();
        }
        let names: Vec<String> = files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json"]);
    }

    #[test]
    fn bad_documents_are_named_and_the_rest_loads() {
        let yaml = r#"
apiVersion: v1
kind: Node
metadata: {name: k8s-ctr, labels: {enable-bgp: "true"}}
---
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: cilium-peer}
spec: {timers: {holdTimeSeconds: "nine"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
---
kind: Node
---
apiVersion: cilium.io/v2
kind: CiliumBGPClusterConfig
metadata: {name: c}
spec: {bgpInstances: [{name: i, localASN: 65001, peers: [{name: p, peerAddress: nowhere}]}]}
---
"#;
        let mut loaded = FileLoad::default();
        load_text(Path::new("dir/a.yaml"), yaml, &mut loaded);
        let names: Vec<String> = loaded.objects.iter().map(Object::id).collect();
        assert_eq!(names, ["Node/k8s-ctr"]);
        let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "dir/a.yaml: document 2 (CiliumBGPPeerConfig cilium-peer): spec.timers.holdTimeSeconds: invalid type: string \"nine\""
            ),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("dir/a.yaml: document 4: .: missing field `apiVersion`"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].starts_with(
                "dir/a.yaml: document 5 (CiliumBGPClusterConfig c): spec.bgpInstances[0].peers[0].peerAddress: \"nowhere\""
            ),
            "{}",
            errors[2]
        );
        assert_eq!(
            loaded.ignored,
            ["dir/a.yaml: document 3: ConfigMap other (v1)"]
        );
    }

    #[test]
    fn a_config_dir_gets_lb_ipam_ingress() {
        let dir = std::env::temp_dir().join(format!("nexthop-agent-lbipam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pool = "apiVersion: cilium.io/v2alpha1\nkind: CiliumLoadBalancerIPPool\nmetadata: { name: pool }\nspec:\n  blocks: [{ cidr: 172.16.1.0/24 }]\n";
        let service = "apiVersion: v1\nkind: Service\nmetadata: { name: webpod, namespace: web }\nspec:\n  type: LoadBalancer\n  ports: [{ port: 80 }]\n---\napiVersion: v1\nkind: Service\nmetadata: { name: internal }\nspec: { type: ClusterIP, clusterIP: 10.96.0.10 }\n";
        std::fs::write(dir.join("pool.yaml"), pool).unwrap();
        std::fs::write(dir.join("services.yaml"), service).unwrap();
        let loaded = load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut directory = Directory::new(&dir);
        let objects = directory.with_lb_ipam(&loaded.objects);
        let webpod = &objects.services[&("web".into(), "webpod".into())];
        let ingress: Vec<_> = webpod
            .status
            .load_balancer
            .ingress
            .iter()
            .map(|i| i.ip)
            .collect();
        assert_eq!(ingress, [Some("172.16.1.1".parse().unwrap())]);
        let internal = &objects.services[&("default".into(), "internal".into())];
        assert!(internal.status.load_balancer.ingress.is_empty());
        assert_eq!(
            Directory::new(&dir).with_lb_ipam(&loaded.objects),
            objects,
            "the same files, the same answer"
        );
        // An address once held is kept, as Cilium's operator keeps it: a
        // service sorting earlier that arrives later gets the next one.
        let mut more = loaded.objects.clone();
        let mut early = more.services[&("web".into(), "webpod".into())].clone();
        early.metadata.namespace = Some("aaa".into());
        more.services.insert(("aaa".into(), "webpod".into()), early);
        let again = directory.with_lb_ipam(&more);
        let ip = |o: &Objects, ns: &str| {
            o.services[&(ns.into(), "webpod".into())]
                .status
                .load_balancer
                .ingress[0]
                .ip
        };
        assert_eq!(ip(&again, "web"), Some("172.16.1.1".parse().unwrap()));
        assert_eq!(ip(&again, "aaa"), Some("172.16.1.2".parse().unwrap()));
    }

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("nexthop-agent-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: k8s-ctr}\n";

    #[test]
    fn a_known_kind_at_an_unknown_version_is_an_error() {
        let mut loaded = FileLoad::default();
        let yaml = "apiVersion: cilium.io/v1\nkind: CiliumBGPPeerConfig\nmetadata: {name: p}\n";
        load_text(Path::new("a.yaml"), yaml, &mut loaded);
        let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            errors,
            [
                "a.yaml: document 1 (CiliumBGPPeerConfig p): apiVersion \"cilium.io/v1\" is not one the agent reads for CiliumBGPPeerConfig"
            ]
        );
        assert!(loaded.ignored.is_empty());
    }

    #[test]
    fn a_configmap_volume_is_read_through_its_symlinks_and_a_loop_is_named() {
        use std::os::unix::fs::symlink;
        let dir = Scratch::new("configmap");
        let data = dir.0.join("..2026_12_07_00_00_00.000000001");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("node.yaml"), NODE).unwrap();
        symlink(&data, dir.0.join("..data")).unwrap();
        symlink("..data/node.yaml", dir.0.join("node.yaml")).unwrap();
        symlink("loop.yaml", dir.0.join("loop.yaml")).unwrap();
        let loaded = load(&dir.0).unwrap();
        assert!(loaded.objects.nodes.contains_key("k8s-ctr"));
        let [error] = &loaded.errors[..] else {
            panic!("{:?}", loaded.errors)
        };
        assert!(error.file.ends_with("loop.yaml"), "{error}");
        assert!(error.message.starts_with("unreadable: "), "{error}");
    }

    #[test]
    fn files_too_large_or_too_deep_are_refused_with_a_reason() {
        let dir = Scratch::new("bounds");
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        fs::write(dir.0.join("deep.yaml"), deep).unwrap();
        let big = format!("a: \"{}\"\n", "x".repeat(MAX_FILE_BYTES as usize));
        fs::write(dir.0.join("big.yaml"), big).unwrap();
        fs::write(dir.0.join("node.yaml"), NODE).unwrap();
        let loaded = load(&dir.0).unwrap();
        let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("big.yaml: document 0: 4194305 bytes or more, over the limit"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("deep.yaml: document 0: line 1: nested more than 64"),
            "{errors:?}"
        );
        assert!(loaded.objects.nodes.contains_key("k8s-ctr"));
    }

    #[test]
    fn a_file_that_breaks_keeps_its_last_clean_version_and_conflicts_are_named() {
        let dir = Scratch::new("last-good");
        let peer = "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p}\nspec: {timers: {holdTimeSeconds: 9}}\n";
        fs::write(dir.0.join("a-node.yaml"), NODE).unwrap();
        fs::write(dir.0.join("b-peer.yaml"), peer).unwrap();
        let mut directory = Directory::new(&dir.0);
        let first = directory
            .reload()
            .unwrap()
            .expect("the first read does not wait");
        assert!(first.peer_configs.contains_key("p"));
        // Half-written, then a syntax error: the peer config stays.
        fs::write(
            dir.0.join("b-peer.yaml"),
            "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p\n",
        )
        .unwrap();
        assert_eq!(
            directory.reload().unwrap(),
            None,
            "a change is read once it settles"
        );
        let broken = directory.reload().unwrap().expect("settled");
        assert!(broken.peer_configs.contains_key("p"), "kept: {broken:?}");
        // The same Node in another file: the first file's wins.
        fs::write(
            dir.0.join("c-node.yaml"),
            NODE.replace("k8s-ctr}", "k8s-ctr, labels: {x: y}}"),
        )
        .unwrap();
        let loaded = load(&dir.0).unwrap();
        assert!(loaded.objects.nodes["k8s-ctr"].metadata.labels.is_empty());
        let chosen = vec![
            (
                dir.0.join("a-node.yaml"),
                load_file(&dir.0.join("a-node.yaml")).objects,
            ),
            (
                dir.0.join("c-node.yaml"),
                load_file(&dir.0.join("c-node.yaml")).objects,
            ),
        ];
        let conflicts = merge(&chosen, &mut Objects::default());
        let [conflict] = &conflicts[..] else {
            panic!("{conflicts:?}")
        };
        assert!(
            conflict.starts_with("conflict: Node/k8s-ctr is in "),
            "{conflict}"
        );
        assert!(
            conflict.contains("a-node.yaml and in ") && conflict.contains("c-node.yaml"),
            "{conflict}"
        );
    }
}
