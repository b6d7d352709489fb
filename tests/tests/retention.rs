#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! `ferry-hub retention run --dry-run` on a hub with real snapshots: what
//! the policy in force would forget, which rules keep each survivor, the
//! lock compliance would give it, a legal hold keeping what the rules
//! drop, and nothing changed by the dry run.

use ferry_tests::{Hub, Site, check};

fn dry_run(hub: &Hub) -> serde_json::Value {
    let out = check(
        &hub.cli(&[
            "--json",
            "retention",
            "run",
            "--dry-run",
            "--tenant",
            "acme",
        ]),
        "retention run --dry-run",
    );
    serde_json::from_str(&out).unwrap()
}

fn apply(hub: &Hub, w: &std::path::Path, text: &str) {
    let file = w.join("acme.toml");
    std::fs::write(&file, text).unwrap();
    check(
        &hub.cli(&["policy", "apply", file.to_str().unwrap()]),
        "policy apply",
    );
}

#[test]
fn a_dry_run_names_what_would_go_and_why_each_survivor_stays() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}.txt")), format!("file {i}")).unwrap();
        site.backup();
    }

    // No policy: the bucket has no rules, and everything stays.
    let out = dry_run(&hub);
    assert!(out["buckets"][0]["rules"].is_null(), "{out}");

    apply(
        &hub,
        w,
        "tenant = \"acme\"\n[retention]\nkeep-last = 2\n\
         [compliance]\nmode = \"governance\"\nretain-days = { last = 3 }\n",
    );
    let out = dry_run(&hub);
    let b = &out["buckets"][0];
    assert_eq!(b["bucket"], "acme/docs", "{out}");
    let seqs = |list: &serde_json::Value| -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&b["forget"]), [1, 2], "{out}");
    assert_eq!(seqs(&b["keep"]), [3, 4], "{out}");
    for kept in b["keep"].as_array().unwrap() {
        assert_eq!(kept["why"], serde_json::json!(["last"]), "{out}");
        let taken = kept["time_unix_ms"].as_i64().unwrap();
        assert_eq!(
            kept["lock_until_unix_ms"].as_i64().unwrap(),
            taken + 3 * 86_400_000
        );
    }

    // A hold on the whole bucket keeps what the rules drop.
    apply(
        &hub,
        w,
        "tenant = \"acme\"\n[retention]\nkeep-last = 2\n\
         [hold.case-1]\nbucket = \"docs\"\nreason = \"litigation\"\n",
    );
    let out = dry_run(&hub);
    let b = &out["buckets"][0];
    assert!(b["forget"].as_array().unwrap().is_empty(), "{out}");
    assert_eq!(
        b["keep"][0]["why"],
        serde_json::json!(["held by case-1"]),
        "{out}"
    );
    assert_eq!(
        b["keep"][3]["why"],
        serde_json::json!(["last", "held by case-1"]),
        "{out}"
    );

    // The text form, and nothing changed.
    let text = check(
        &hub.cli(&["retention", "run", "--dry-run", "--bucket", "acme/docs"]),
        "retention run text",
    );
    assert!(
        text.contains("acme/docs: keep-last 2 (UTC): 4 commits stay, 0 would go"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&check(&site.agent(&["--json", "snapshots"]), "snapshots")).unwrap();
    assert_eq!(listed.len(), 4);
    // A run that would change something is not built yet, and says so.
    let refused = hub.cli(&["retention", "run", "--tenant", "acme"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only --dry-run"));
}
