//! Lab directories: what a lab is made of, read and checked.
//!
//! A lab is a directory holding `topology.yaml` (hosts, interfaces, links —
//! [`topology`]), `scenario.yaml` (steps and expectations — [`scenario`]),
//! optionally `values.yaml` (Cilium Helm values — [`values`]) and a `k8s/`
//! folder of manifests applied at start in file-name order ([`kube`]), and
//! the FRR configuration files routers name (`frr:`, [`crate::frr::config`]). This
//! module only reads files; [`crate::cluster`] turns a lab into a running
//! simulation. Every error names the file, the line and the key.

pub mod duration;
pub mod error;
pub mod kube;
pub mod scenario;
pub mod topology;
pub mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::frr::config::FrrConfig;

pub use duration::Dur;
pub use error::LabError;
pub use scenario::{Action, Expect, Scenario, Step};
pub use topology::Topology;
pub use values::Values;

/// A manifest file and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Path relative to the lab directory.
    pub path: PathBuf,
    /// The objects, in document order.
    pub objects: Vec<kube::Object>,
}

/// Everything a lab directory holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Lab {
    /// The lab directory.
    pub dir: PathBuf,
    /// Hosts, interfaces and links.
    pub topology: Topology,
    /// Cilium settings.
    pub values: Values,
    /// Manifests applied at start.
    pub manifests: Vec<Manifest>,
    /// FRR configurations by router name.
    pub frr: BTreeMap<String, FrrConfig>,
    /// Steps.
    pub scenario: Scenario,
}

/// Read a file of the lab, naming it on failure.
pub fn read(path: &Path) -> Result<String, LabError> {
    use router_core::cilium::limits::{self, MAX_FILE_BYTES};
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| LabError::file(path, format!("cannot read: {e}")))?;
    if read as u64 > MAX_FILE_BYTES {
        return Err(LabError::file(path, limits::too_large(read as u64)));
    }
    limits::check(&text).map_err(|why| LabError::file(path, why))?;
    Ok(text)
}

/// `text` quoted for an error message, cut to its first 80 characters
/// (with its length) when longer: a message names the place, it does not
/// echo a file.
fn quoted_excerpt(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        None => format!("{text:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes)", &text[..end], text.len()),
    }
}

impl Lab {
    /// Load and check the lab in `dir`.
    pub fn load(dir: &Path) -> Result<Self, LabError> {
        if !dir.is_dir() {
            return Err(LabError::file(dir, "is not a lab directory"));
        }
        let path = dir.join("topology.yaml");
        let topology = Topology::parse(&path, &read(&path)?)?;
        let path = dir.join("values.yaml");
        let values = if path.exists() {
            Values::parse(&path, &read(&path)?)?
        } else {
            Values::default()
        };
        let path = dir.join("scenario.yaml");
        let scenario = Scenario::parse(&path, &read(&path)?)?;
        let mut manifests = Vec::new();
        let k8s = dir.join("k8s");
        if k8s.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&k8s)
                .map_err(|e| LabError::file(&k8s, format!("cannot list: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for file in files {
                manifests.push(Self::manifest(
                    dir,
                    file.strip_prefix(dir).unwrap_or(&file),
                )?);
            }
        }
        let mut frr = BTreeMap::new();
        for (name, node) in &topology.nodes {
            if let Some(file) = &node.frr {
                let path = dir.join(file);
                let text = read(&path)?;
                let config = FrrConfig::parse(&text).map_err(|e| LabError {
                    file: path.clone(),
                    line: Some(e.line),
                    key: None,
                    message: format!("{}: {}", quoted_excerpt(&e.text), e.reason),
                })?;
                frr.insert(name.clone(), config);
            }
        }
        Ok(Lab {
            dir: dir.to_path_buf(),
            topology,
            values,
            manifests,
            frr,
            scenario,
        })
    }

    /// Read a manifest, given relative to `dir` or absolute.
    pub fn manifest(dir: &Path, file: &Path) -> Result<Manifest, LabError> {
        let full = dir.join(file);
        let objects = kube::parse(&full, &read(&full)?)?;
        let path = full.strip_prefix(dir).unwrap_or(&full).to_path_buf();
        Ok(Manifest { path, objects })
    }
}
