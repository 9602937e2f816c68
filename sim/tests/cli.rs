//! The `nexthop-sim` command line: exit codes, determinism check, JSON, errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nexthop-sim"))
}

fn lab(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/labs")
        .join(name)
}

/// The native-routing-no-adr lab's files but its scenario, into `dir`.
fn copy_no_adr_lab(dir: &Path) {
    std::fs::create_dir_all(dir.join("k8s")).expect("temp dir");
    let src = lab("native-routing-no-adr");
    for f in [
        "topology.yaml",
        "values.yaml",
        "k8s/00-nodes.yaml",
        "k8s/10-apps.yaml",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
}

#[test]
fn check_determinism_passes_on_a_bundled_lab() {
    let out = sim()
        .args(["run", "--check-determinism"])
        .arg(lab("native-routing-no-adr"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("determinism: second run identical"),
        "{stdout}"
    );
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[test]
fn json_report_parses_and_names_the_seed() {
    let out = sim()
        .args(["run", "--json", "--seed", "7"])
        .arg(lab("native-routing-static"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["seed"], 7);
    assert_eq!(v["lab"], "native-routing-static");
    assert!(v["steps"].as_array().is_some_and(|s| !s.is_empty()));
}

#[test]
fn a_broken_lab_names_file_line_and_key_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("nexthop-sim-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let topology =
        std::fs::read_to_string(lab("native-routing").join("topology.yaml")).expect("read");
    std::fs::write(
        dir.join("topology.yaml"),
        topology.replace("kind: router", "kind: router\n    colour: blue"),
    )
    .expect("write");
    std::fs::copy(
        lab("native-routing").join("scenario.yaml"),
        dir.join("scenario.yaml"),
    )
    .expect("copy");
    let out = sim().arg("run").arg(&dir).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("topology.yaml:34"), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
}

#[test]
fn a_failed_expectation_exits_1_and_prints_the_seed() {
    let dir = std::env::temp_dir().join(format!("nexthop-sim-failing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_no_adr_lab(&dir);
    std::fs::write(
        dir.join("scenario.yaml"),
        "steps:\n  - curl: curl-pod webpod --count 6\n    expect: { ok: 6 }\n",
    )
    .expect("write");
    let out = sim()
        .args(["run", "--seed", "3"])
        .arg(&dir)
        .output()
        .expect("runs");
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("seed 3"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL expect ok = 6"));
}

/// `check` on a copy of the native-routing-no-adr lab with `scenario` as its
/// scenario: its exit code and stderr.
fn check_with_scenario(name: &str, scenario: &str) -> (Option<i32>, String) {
    check_lab(name, scenario, |t| t.to_string())
}

/// `check` on a copy of the native-routing-no-adr lab, its topology passed
/// through `topology`.
fn check_lab(
    name: &str,
    scenario: &str,
    topology: impl Fn(&str) -> String,
) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("nexthop-sim-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_no_adr_lab(&dir);
    std::fs::write(dir.join("scenario.yaml"), scenario).expect("write");
    let text = std::fs::read_to_string(dir.join("topology.yaml")).expect("read");
    std::fs::write(dir.join("topology.yaml"), topology(&text)).expect("write");
    let out = sim().arg("check").arg(&dir).output().expect("runs");
    std::fs::remove_dir_all(&dir).expect("clean up");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_finds_what_run_would_refuse_without_running() {
    let cases = [
        (
            "steps:\n  - converge: 1s\n  - curl: nowhere webpod --count 2\n",
            "scenario.yaml:3: no host or pod named \"nowhere\"",
        ),
        ("steps:\n  - apply: k8s/missing.yaml\n", "scenario.yaml:2: "),
        (
            "steps:\n  - show: routes k8s-w9\n",
            "no host or pod named \"k8s-w9\"",
        ),
        (
            "steps:\n  - link: down k8s-ctr:eth9\n",
            "no interface k8s-ctr:eth9",
        ),
        (
            "steps:\n  - ping: curl-pod 10.0.0.1 --count 70000\n",
            "--count 70000 is more than the most a step allows, 10000",
        ),
    ];
    for (i, (scenario, want)) in cases.iter().enumerate() {
        let (code, stderr) = check_with_scenario(&format!("case{i}"), scenario);
        assert_eq!(code, Some(2), "{scenario}: {stderr}");
        assert!(
            stderr.contains(want),
            "{scenario}: wanted {want:?} in {stderr}"
        );
    }
    let gateway = check_lab("gateway", "steps: []\n", |t| {
        t.replacen(
            "- { dst: 192.168.20.0/24, via: 192.168.10.200 }",
            "- { dst: 192.168.20.0/24, via: 192.0.2.1 }",
            1,
        )
    });
    assert_eq!(gateway.0, Some(2), "{}", gateway.1);
    let want =
        "topology.yaml: nodes.k8s-ctr.routes[0]: gateway 192.0.2.1 is on no connected subnet";
    assert!(gateway.1.contains(want), "{}", gateway.1);
    let (code, stderr) =
        check_with_scenario("good", "steps:\n  - curl: curl-pod webpod --count 2\n");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_pcap_path_that_is_a_file_and_a_huge_frr_line_get_short_placed_errors() {
    let file = std::env::temp_dir().join(format!("nexthop-sim-pcap-file-{}", std::process::id()));
    std::fs::write(&file, "not a directory").expect("write");
    let out = sim()
        .args(["run", "--pcap"])
        .arg(&file)
        .arg(lab("vxlan"))
        .output()
        .expect("runs");
    std::fs::remove_file(&file).expect("clean up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("exists and is not a directory"), "{stderr}");

    let dir = std::env::temp_dir().join(format!("nexthop-sim-frr-line-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = lab("bgp");
    for f in ["topology.yaml", "values.yaml"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy");
    }
    std::fs::write(dir.join("scenario.yaml"), "steps: []\n").expect("write");
    std::fs::write(
        dir.join("frr.conf"),
        format!("router {}\n", "x".repeat(1 << 20)),
    )
    .expect("write");
    let out = sim().arg("check").arg(&dir).output().expect("runs");
    std::fs::remove_dir_all(&dir).expect("clean up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        &stderr[..stderr.len().min(300)]
    );
    assert!(stderr.len() < 1000, "{} bytes of error", stderr.len());
    assert!(
        stderr.contains("frr.conf:1") && stderr.contains("bytes)"),
        "{stderr}"
    );
}

#[test]
fn a_lab_file_nested_too_deep_is_refused_at_once() {
    let dir = std::env::temp_dir().join(format!("nexthop-sim-deep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    std::fs::write(dir.join("topology.yaml"), deep).expect("write");
    let out = sim().arg("check").arg(&dir).output().expect("runs");
    std::fs::remove_dir_all(&dir).expect("clean up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("topology.yaml: line 1: nested more than 64 levels deep"),
        "{stderr}"
    );
}

/// `check` on a copy of the bgp lab after `change` edits it.
fn check_bgp_lab(name: &str, change: impl Fn(&Path)) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!(
        "nexthop-sim-check-bgp-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let copied = Command::new("cp")
        .arg("-r")
        .arg(lab("bgp"))
        .arg(&dir)
        .status()
        .expect("cp runs");
    assert!(copied.success());
    change(&dir);
    let out = sim().arg("check").arg(&dir).output().expect("runs");
    std::fs::remove_dir_all(&dir).expect("clean up");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_finds_frr_passwords_and_bad_pools_in_applied_files() {
    let (code, stderr) = check_bgp_lab("password", |dir| {
        let conf = std::fs::read_to_string(dir.join("frr.conf")).expect("read");
        let conf = conf.replacen(
            " neighbor CILIUM remote-as external\n",
            " neighbor CILIUM remote-as external\n neighbor 192.168.10.100 password s3cret\n",
            1,
        );
        std::fs::write(dir.join("frr.conf"), conf).expect("write");
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("TCP MD5 is not simulated"), "{stderr}");
    let (code, stderr) = check_bgp_lab("pool", |dir| {
        let pool = std::fs::read_to_string(dir.join("lb/pool.yaml")).expect("read");
        std::fs::write(
            dir.join("lb/pool.yaml"),
            pool.replace("172.16.1.0/24", "172.16.1.0/33"),
        )
        .expect("write");
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("lb/pool.yaml") && stderr.contains("blocks[0]"),
        "{stderr}"
    );
}

#[test]
fn flows_are_written_as_hubble_json_lines_and_are_the_same_for_a_seed() {
    let dir = std::env::temp_dir().join(format!("nexthop-sim-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let run = |file: &str| {
        let path = dir.join(file);
        let out = sim()
            .args(["run", "--seed", "4", "--flows"])
            .arg(&path)
            .arg(lab("vxlan"))
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::fs::read_to_string(path).expect("flows written")
    };
    let (first, second) = (run("a.jsonl"), run("b.jsonl"));
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(first, second, "same seed, same flows");
    let flows: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // In tunnel mode the pods' traffic to other nodes goes into the overlay,
    // is delivered to pods on the far side, and nothing leaves natively.
    let points = |p: &str| {
        flows
            .iter()
            .filter(|f| f["flow"]["trace_observation_point"] == p)
            .count()
    };
    assert!(
        points("TO_OVERLAY") > 0 && points("TO_ENDPOINT") > 0,
        "{first}"
    );
    assert_eq!(points("TO_NETWORK"), 0, "{first}");
    assert!(flows.iter().any(|f| f["flow"]["sock_xlate_point"]
        == "SOCK_XLATE_POINT_POST_DIRECTION_FWD"
        && f["flow"]["verdict"] == "TRANSLATED"));
    let times: Vec<&str> = flows
        .iter()
        .map(|f| f["time"].as_str().expect("a time"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
}

#[test]
fn observe_flags_are_checked_when_the_lab_loads() {
    let (code, stderr) = check_with_scenario(
        "observe",
        "steps:\n  - curl: curl-pod webpod\n  - observe: --verdict MAYBE\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("scenario.yaml:3"), "{stderr}");
    assert!(
        stderr.contains("--verdict: \"MAYBE\" is not FORWARDED, DROPPED, TRANSLATED or TRACED"),
        "{stderr}"
    );
    let (code, stderr) = check_with_scenario("follow", "steps:\n  - observe: -f\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--follow is the agent's"), "{stderr}");
}

#[test]
fn helm_upgrades_are_checked_when_the_lab_loads() {
    let (code, stderr) = check_with_scenario(
        "helm",
        "steps:\n  - helm: upgrade --set routingMode=tunnel\n  - helm: upgrade --reuse-values --set ipam.mode=kubernetes\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("scenario.yaml:3"), "{stderr}");
    assert!(
        stderr.contains("--set ipam.mode=kubernetes: changing ipam.mode mid-run is not simulated"),
        "{stderr}"
    );
    let (code, stderr) = check_with_scenario(
        "helm-value",
        "steps:\n  - helm: upgrade --set loadBalancer.mode=sideways\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\"sideways\" is not snat, dsr or hybrid"),
        "{stderr}"
    );
    let (code, stderr) = check_with_scenario(
        "rollout",
        "steps:\n  - rollout: restart deployment/webpod\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("scenario.yaml:2"), "{stderr}");
}
