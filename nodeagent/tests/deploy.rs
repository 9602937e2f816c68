//! The manifests of `deploy/` (a DaemonSet, RBAC, the agent's flags and CNI
//! configuration, the CRDs it reads): `kubectl kustomize` builds them on the
//! client side, and they name only what the code uses — the resources the
//! agent watches with `list` and `watch`, the verbs it uses on Leases, the
//! flags `nexthop-agent run` takes — and every CRD it reads.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use nexthop_agent::kube_source::resources;
use nexthop_agent::lease_store::kube::AGENT_VERBS;
use serde::Deserialize;
use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent");
const CNI: &str = env!("CARGO_BIN_EXE_nexthop-cni");

/// Every object of `kubectl kustomize deploy/`.
fn manifests() -> Option<Vec<Value>> {
    if nexthop_testkit::skips(&["kubectl"]) {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_norway::Deserializer::from_str(&text)
            .map(|doc| Value::deserialize(doc).expect("a YAML document"))
            .collect(),
    )
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// (group, resource) → verbs of a role's rules.
fn rules(role: &Value) -> BTreeSet<(String, String, BTreeSet<String>)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.insert((group.clone(), resource, strings(&rule["verbs"])));
            }
        }
    }
    out
}

#[test]
fn deploy_manifests_name_only_what_the_agent_uses() {
    let Some(objects) = manifests() else { return };
    let watch: BTreeSet<String> = ["list", "watch"].map(String::from).into();
    let (cluster, namespaced): (Vec<_>, Vec<_>) =
        resources().into_iter().partition(|r| r.namespace.is_none());
    let want_cluster: BTreeSet<_> = cluster
        .iter()
        .map(|r| (r.api.group.clone(), r.api.plural.clone(), watch.clone()))
        .collect();
    assert_eq!(rules(one(&objects, "ClusterRole")), want_cluster);
    let mut want_role: BTreeSet<_> = namespaced
        .iter()
        .map(|r| (r.api.group.clone(), r.api.plural.clone(), watch.clone()))
        .collect();
    want_role.insert((
        "coordination.k8s.io".into(),
        "leases".into(),
        AGENT_VERBS.map(String::from).into(),
    ));
    assert_eq!(rules(one(&objects, "Role")), want_role);

    // A CRD for every cilium.io resource, serving the version watched.
    for r in cluster.iter().filter(|r| r.api.group == "cilium.io") {
        let crd = objects
            .iter()
            .find(|o| {
                o["kind"] == "CustomResourceDefinition"
                    && o["spec"]["names"]["plural"] == r.api.plural.as_str()
            })
            .unwrap_or_else(|| panic!("no CRD for {}", r.api.plural));
        let served = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == r.api.version.as_str() && v["served"] == true);
        assert!(served, "{} {} is served", r.api.plural, r.api.version);
    }

    // The DaemonSet runs the agent as the ServiceAccount, on the host's
    // network, with the bpffs and the CNI directories.
    let ds = one(&objects, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        one(&objects, "ServiceAccount")["metadata"]["name"]
    );
    assert_eq!(pod["hostNetwork"], true);
    let paths: BTreeSet<String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str().map(String::from))
        .collect();
    for path in [
        "/sys/fs/bpf",
        "/opt/cni/bin",
        "/etc/cni/net.d",
        "/var/run/nexthop",
    ] {
        assert!(paths.contains(path), "{path} is mounted: {paths:?}");
    }
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);

    // Every flag given to the agent is one `run` takes.
    let help = Command::new(AGENT)
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let config = &one(&objects, "ConfigMap")["data"];
    let args = pod["containers"][0]["args"][0].as_str().unwrap();
    let flags = config["agent-flags"].as_str().unwrap();
    for word in args.split_whitespace().chain(flags.split_whitespace()) {
        if let Some(flag) = word.strip_prefix("--") {
            let name = flag.split('=').next().unwrap();
            assert!(help.contains(&format!("--{name}")), "run takes no --{name}");
        }
    }

    // The CNI configuration: the plugin answers VERSION for each of its
    // plugins' configuration as the runtime hands it over.
    let conflist: Value =
        serde_json::from_str(config["05-nexthop.conflist"].as_str().unwrap()).unwrap();
    for plugin in conflist["plugins"].as_array().unwrap() {
        assert_eq!(plugin["type"], "nexthop-cni");
        let mut conf = plugin.clone();
        conf["cniVersion"] = conflist["cniVersion"].clone();
        conf["name"] = conflist["name"].clone();
        let mut child = Command::new(CNI)
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let version: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            version["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&conflist["cniVersion"]),
            "{version}"
        );
    }
}
