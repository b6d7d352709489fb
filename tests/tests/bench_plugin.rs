#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! The benchmark's Ferry plugin (`bench/ferry.peer.sh`) run by the shared
//! harness (`../shared/bench/peers.sh`) on the quick dataset, with the
//! binaries under test: every step must succeed and the restore must match
//! the source under the harness's own `diff -r`. Correctness only: no time
//! is asserted.

use std::collections::BTreeMap;
use std::process::Command;

use ferry_tests::{bin, package_dir, quick_dataset};

const STEPS: [&str; 4] = [
    "backup-initial",
    "backup-incr",
    "backup-small",
    "restore-mixed",
];

#[test]
fn the_bench_plugin_runs_every_step_and_its_restore_verifies() {
    let data = quick_dataset();
    let harness = package_dir().join("../../shared/bench/peers.sh");
    assert!(
        harness.exists(),
        "{} is missing: the tests need ../shared beside the repo",
        harness.display()
    );
    let plugin = package_dir().join("../bench/ferry.peer.sh");
    let binaries = bin("ferry-agent").parent().unwrap().to_path_buf();
    bin("ferry-hub");
    let run = tempfile::tempdir().unwrap();
    let csv = run.path().join("results.csv");
    let output = Command::new("bash")
        .arg(&harness)
        .env("DATA", &data)
        .env("RUN", run.path())
        .env("REPEAT", "1")
        .env("BACKEND", "local")
        .env("PEERS", "ferry")
        .env("PEER_PLUGINS", &plugin)
        .env("FERRY_BIN", &binaries)
        .env("OUT_MD", run.path().join("results.md"))
        .env("OUT_CSV", &csv)
        .output()
        .expect("run bash peers.sh");
    let log = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "peers.sh failed\n{log}");

    // peer,rep,step,input_bytes,wall_s,flush_s,user_s,sys_s,maxrss_kib,repo_bytes,status
    let table = std::fs::read_to_string(&csv).unwrap();
    let mut status: BTreeMap<(String, String), String> = BTreeMap::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 11, "row {line:?}");
        status.insert(
            (fields[0].to_owned(), fields[2].to_owned()),
            fields[10].to_owned(),
        );
    }
    for step in STEPS {
        // The agent's row, and the hub's beside it (its CPU and RSS).
        for peer in ["ferry", "ferry-hub"] {
            let key = (peer.to_owned(), step.to_owned());
            assert_eq!(
                status.get(&key).map(String::as_str),
                Some("ok"),
                "{peer} {step}\n{table}\n{log}"
            );
        }
    }
    let verify = ("ferry".to_owned(), "verify".to_owned());
    assert_eq!(
        status.get(&verify).map(String::as_str),
        Some("ok"),
        "the restore differs from the source\n{table}\n{log}"
    );
}
