//! The HTML lab report loads in headless Chromium with no script errors,
//! draws every host, holds every step, and filters its flows.

use std::path::{Path, PathBuf};
use std::process::Command;

fn lab(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/labs")
        .join(name)
}

/// The page's DOM after its scripts ran, and Chromium's log.
fn load(url: &str) -> (String, String) {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom", url])
        .output()
        .expect("chromium runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_bgp_labs_report_loads_in_chromium_with_every_host_and_step() {
    if Command::new("chromium").arg("--version").output().is_err() {
        nexthop_testkit::skip("chromium is not installed (scripts/test-all.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nexthop-sim-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let page = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_nexthop-sim"))
        .args(["run", "--report"])
        .arg(&page)
        .arg(lab("bgp"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let steps = stdout.lines().filter(|l| l.starts_with('[')).count();
    let url = format!("file://{}", page.display());
    let (dom, log) = load(&url);
    let (filtered, _) = load(&format!("{url}#node=k8s-w1&verdict=FORWARDED"));
    std::fs::remove_dir_all(&dir).expect("clean up");

    assert!(dom.contains("<svg id=\"topology\""), "{log}");
    assert!(!dom.contains("data-errors"), "script errors: {dom}");
    assert!(!log.contains("Uncaught"), "{log}");
    for host in [
        "router", "lower", "upper", "k8s-ctr", "k8s-w0", "k8s-w1", "curl-pod",
    ] {
        assert!(
            dom.contains(&format!("data-host=\"{host}\"")),
            "{host} not drawn"
        );
    }
    assert!(steps > 20, "{stdout}");
    for i in 1..=steps {
        assert!(
            dom.contains(&format!("id=\"step-{i}\"")),
            "step {i} missing"
        );
    }
    assert!(dom.contains("<table id=\"bgp\""));
    assert!(
        dom.contains("established"),
        "the BGP timeline shows sessions coming up"
    );
    // The flow filter from the address shows k8s-w1's forwarded flows only.
    let count = |dom: &str| -> (usize, usize) {
        let at = dom.find("id=\"flow-count\">").expect("a flow count") + 16;
        let shown: usize = dom[at..].split('<').next().unwrap().parse().unwrap();
        let total: usize = dom[at..]
            .split(" of ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        (shown, total)
    };
    let (all, total) = count(&dom);
    let (some, same_total) = count(&filtered);
    assert_eq!((all, total), (total, same_total));
    assert!(some > 0 && some < all, "{some} of {all}");
}
