//! The configuration directory: every YAML document of every YAML file in it,
//! decoded into router-core's Cilium objects. A document that fails is
//! reported with its file, index and field, and left out; the rest stands.
//! [`decode`] decodes one document; the Kubernetes API source
//! (`kube_source`) decodes every object it watches through it too.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use router_core::cilium::lbipam::{LoadBalancerIpam, with_ingress};
use router_core::cilium::meta::TypeMeta;
use router_core::cilium::{Kind, Object, Objects};
use serde::{Deserialize, Deserializer};
use tracing::{error, info};

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
fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let yaml = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x));
        if yaml && !name.starts_with('.') && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// The fingerprint of `dir` now.
pub fn fingerprint(dir: &Path) -> std::io::Result<Fingerprint> {
    files(dir)?
        .into_iter()
        .map(|path| {
            let meta = fs::metadata(&path)?;
            Ok((path, meta.len(), meta.modified().ok()))
        })
        .collect()
}

/// The configuration directory as `run` follows it: what it read last,
/// LB-IPAM's assignments kept across reloads (an address once held is kept,
/// as Cilium's operator keeps it; `lbipam.cilium.io/ips` pins one), and the
/// documents already reported.
#[derive(Debug)]
pub struct Directory {
    path: PathBuf,
    fingerprint: Option<Fingerprint>,
    lb: LoadBalancerIpam,
    reported: BTreeSet<String>,
}

impl Directory {
    /// The directory at `path`, not read yet.
    pub fn new(path: &Path) -> Directory {
        Directory {
            path: path.to_path_buf(),
            fingerprint: None,
            lb: LoadBalancerIpam::default(),
            reported: BTreeSet::new(),
        }
    }

    /// Read the directory again if it changed: the objects to run from
    /// (LoadBalancer ingress addresses filled in by LB-IPAM), or `None`
    /// when nothing changed. Bad documents are logged at each read, kinds
    /// the agent does not read once per file and document.
    pub fn reload(&mut self) -> std::io::Result<Option<Objects>> {
        let fingerprint = fingerprint(&self.path)?;
        if self.fingerprint.as_ref() == Some(&fingerprint) {
            return Ok(None);
        }
        let loaded = load(&self.path)?;
        self.fingerprint = Some(fingerprint);
        for e in &loaded.errors {
            error!("bad document ignored: {e}");
        }
        for i in &loaded.ignored {
            if self.reported.insert(i.clone()) {
                info!("document of a kind the agent does not read, ignored: {i}");
            }
        }
        info!(
            nodes = loaded.objects.nodes.len(),
            services = loaded.objects.services.len(),
            cluster_configs = loaded.objects.cluster_configs.len(),
            peer_configs = loaded.objects.peer_configs.len(),
            advertisements = loaded.objects.advertisements.len(),
            errors = loaded.errors.len(),
            "configuration loaded"
        );
        Ok(Some(self.with_lb_ipam(&loaded.objects)))
    }

    /// `objects` with the LoadBalancer ingress addresses router-core's
    /// LB-IPAM assigns from their pools, as Cilium's operator would write
    /// them.
    pub fn with_lb_ipam(&mut self, objects: &Objects) -> Objects {
        with_ingress(objects, self.lb.reconcile(objects))
    }
}

/// Read and decode every document in `dir`.
pub fn load(dir: &Path) -> std::io::Result<Loaded> {
    let mut loaded = Loaded::default();
    for file in files(dir)? {
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) => {
                loaded.errors.push(DocumentError {
                    file,
                    document: 0,
                    object: None,
                    message: format!("unreadable: {e}"),
                });
                continue;
            }
        };
        load_text(&file, &text, &mut loaded);
    }
    Ok(loaded)
}

fn load_text(file: &Path, text: &str, loaded: &mut Loaded) {
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
            Ok(Decoded::Object(_, object)) => loaded.objects.insert(*object),
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
        let mut loaded = Loaded::default();
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
        let mut loaded = Loaded::default();
        load_text(Path::new("dir/a.yaml"), yaml, &mut loaded);
        assert!(loaded.objects.nodes.contains_key("k8s-ctr"));
        assert!(loaded.objects.peer_configs.is_empty());
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
}
