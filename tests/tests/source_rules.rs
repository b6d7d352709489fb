#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! A directory source's config rules, end to end: what its exclude
//! patterns, pattern file and CACHEDIR.TAG leave out stays out of the
//! snapshot, and its hooks run around the backup (a failing pre-backup
//! hook stops it before anything is taken).

use ferry_tests::{Hub, Site, check};

fn files_of(root: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path.clone());
            }
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            found.push(rel.into_owned());
        }
    }
    found.sort();
    found
}

#[test]
fn exclude_rules_from_the_config_leave_out_what_they_name() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    for dir in ["build", "docs/build", "logs", ".cache/thumbs", "keep"] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
    }
    for file in [
        "a.txt",
        "scratch.tmp",
        "build/out.o",
        "docs/readme.md",
        "docs/build/page.html",
        "logs/app.log",
        "logs/keep.log",
        "keep/b.tmp",
        ".cache/thumbs/1.png",
    ] {
        std::fs::write(src.join(file), file.as_bytes()).unwrap();
    }
    std::fs::write(
        src.join(".cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    )
    .unwrap();
    let site_dir = w.join("site");
    std::fs::create_dir_all(&site_dir).unwrap();
    std::fs::write(
        site_dir.join("main.exclude"),
        "# from a file\nlogs/*.log\n!logs/keep.log\n",
    )
    .unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &site_dir, &src, "site-a", "docs");
    site.write_config_with(
        &hub.url(),
        &src,
        "exclude = [\"*.tmp\", \"!keep/*.tmp\", \"/build/\"]\n\
         exclude-file = \"main.exclude\"\nexclude-caches = true\n",
    );
    site.backup();
    let out = w.join("restored");
    site.restore(&out, &[]);
    assert_eq!(
        files_of(&out),
        [
            ".cache",
            ".cache/CACHEDIR.TAG",
            "a.txt",
            "docs",
            "docs/build",
            "docs/build/page.html",
            "docs/readme.md",
            "keep",
            "keep/b.tmp",
            "logs",
            "logs/keep.log",
        ],
        "`/build/` is anchored at the root; the cache keeps only its tag"
    );

    // A pattern that does not compile is named with its field, and nothing is sent.
    site.write_config_with(&hub.url(), &src, "exclude = [\"[oops\"]\n");
    let bad = site.agent(&["backup"]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("source[0].exclude") && stderr.contains("[oops"),
        "{stderr}"
    );
}

#[test]
fn hooks_run_around_the_backup_and_a_failing_pre_hook_stops_it() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"data").unwrap();
    let hub = Hub::start(&w.join("hub"));
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    let after = w.join("after");
    // The pre-backup hook puts a file in the source, as a database flush
    // would: it is in the snapshot, so the hook ran before the read.
    site.write_config_with(
        &hub.url(),
        &src,
        &format!(
            "pre-backup = \"echo flushing $FERRY_SOURCE; echo flushed > \\\"$FERRY_SOURCE_PATH/dump.sql\\\"\"\n\
             post-backup = \"rm \\\"$FERRY_SOURCE_PATH/dump.sql\\\"; echo $FERRY_BACKUP_RESULT $FERRY_SNAPSHOT_SEQ > {}\"\n",
            after.display()
        ),
    );
    let out = site.agent(&["backup"]);
    check(&out, "backup with hooks");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("flushing main"),
        "hook output is logged: {log}"
    );
    assert_eq!(std::fs::read_to_string(&after).unwrap(), "ok 1\n");
    assert!(!src.join("dump.sql").exists(), "the post-backup hook ran");
    let restored = w.join("restored");
    site.restore(&restored, &[]);
    assert_eq!(
        std::fs::read(restored.join("dump.sql")).unwrap(),
        b"flushed\n"
    );

    std::fs::remove_file(&after).unwrap();
    site.write_config_with(
        &hub.url(),
        &src,
        &format!(
            "pre-backup = \"echo no snapshot device >&2; exit 4\"\npost-backup = \"touch {}\"\n",
            after.display()
        ),
    );
    let out = site.agent(&["backup"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("pre-backup hook") && stderr.contains("no snapshot device"),
        "{stderr}"
    );
    assert!(
        !after.exists(),
        "no post-backup hook without its pre-backup"
    );
    let list = check(&site.agent(&["--json", "snapshots"]), "snapshots");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(1),
        "no snapshot was taken: {list}"
    );
}
