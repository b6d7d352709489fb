#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! Disaster: the hub's catalog is lost and `ferry-hub recover` rebuilds it
//! from the pools alone (a local pool and an S3 pool on Garage), on SQLite
//! and on PostgreSQL; damaged objects are named with what they affect.

use std::path::{Path, PathBuf};

use ferry_hub::records::Segment;
use ferry_tests::garage::Garage;
use ferry_tests::postgres::Postgres;
use ferry_tests::tree::{assert_same, describe, files_with_extension};
use ferry_tests::{Hub, Site, check, noise};

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Runs `ferry-hub recover --json` (and any `extra` flags); returns whether
/// it exited 0 and its report.
fn recover(hub_config: &Path, data_dir: &Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let out = std::process::Command::new(ferry_tests::bin("ferry-hub"))
        .arg("--config")
        .arg(hub_config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--json", "recover"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "recover printed no report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// Deletes the SQLite catalog (and its WAL) of a data dir.
fn delete_sqlite_catalog(data_dir: &Path) {
    let mut gone = 0;
    for entry in std::fs::read_dir(data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("catalog")
        {
            std::fs::remove_file(&path).unwrap();
            gone += 1;
        }
    }
    assert!(gone > 0, "no catalog in {}", data_dir.display());
}

/// A hub under `w/hub` whose one pool is the directory `w/pool`, outside
/// its data dir (so deleting the catalog leaves the pool).
struct DiskHub {
    config: PathBuf,
    pool: PathBuf,
    data_dir: PathBuf,
    hub: Hub,
}

impl DiskHub {
    fn start(w: &Path) -> Self {
        let config = w.join("hub.toml");
        let pool = w.join("pool");
        std::fs::write(
            &config,
            format!("[[pool]]\nname = \"disk\"\ndir = \"{}\"\n", pool.display()),
        )
        .unwrap();
        let data_dir = w.join("hub");
        let hub = Hub::start_with_config(&data_dir, &config);
        Self {
            config,
            pool,
            data_dir,
            hub,
        }
    }
}

/// One source tree of a site, with the states it was backed up in.
struct Source {
    site: Site,
    dir: PathBuf,
    states: Vec<std::collections::BTreeMap<Vec<u8>, ferry_tests::tree::Node>>,
}

fn disaster(engine: &str) {
    let garage = Garage::start();
    garage.create_bucket("hub-packs");
    let pg = (engine == "postgres").then(Postgres::start);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data_dir = w.join("hub");
    let config = w.join("hub.toml");
    let catalog_toml = |db: &str| match &pg {
        Some(pg) => {
            pg.create_database(db);
            ferry_tests::postgres_catalog_toml(w, pg).replace("/ferry\"", &format!("/{db}\""))
        }
        None => String::new(),
    };
    let local = format!(
        "[[pool]]\nname = \"disk\"\ndir = \"{}\"\n",
        w.join("disk-pool").display()
    );
    let s3 = format!(
        "[[pool]]\nname = \"garage\"\ns3 = {}\n",
        garage.s3_toml("hub-packs", "ferry/")
    );
    let first_catalog = catalog_toml("before");
    std::fs::write(&config, format!("{first_catalog}{local}")).unwrap();
    let mut hub = Hub::start_with_config(&data_dir, &config);

    // Two tenants, three buckets, each backed up on the local pool.
    let mut sources: Vec<Source> = [
        ("acme", "site-a", "docs"),
        ("acme", "site-b", "photos"),
        ("globex", "site-g", "files"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (tenant, site, bucket))| {
        let dir = w.join(format!("src-{bucket}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("big.bin"), noise(1 << 20, i as u64 + 1)).unwrap();
        std::fs::write(dir.join("sub/note.txt"), format!("{tenant}/{bucket}")).unwrap();
        let site = Site::create_in(&hub, &w.join(site), &dir, tenant, site, bucket);
        Source {
            site,
            dir,
            states: Vec::new(),
        }
    })
    .collect();
    for s in &mut sources {
        s.site.backup();
        s.states.push(describe(&s.dir));
    }
    // acme's verifier key: a namespace record, so recover restores it.
    let verifier = check(
        &sources[0].site.agent(&[
            "key",
            "verifier",
            "--key",
            sources[0].site.key_file.to_str().unwrap(),
        ]),
        "key verifier",
    );
    check(
        &hub.cli(&["tenant", "verifier", "acme", "--key", verifier.trim()]),
        "tenant verifier",
    );
    // A replica placement: a namespace record too.
    check(
        &hub.cli(&["bucket", "replicas", "acme/docs", "--replica", "site-b"]),
        "bucket replicas",
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = rfc3339_now();

    // The hub gains the S3 pool; the second backups (and a rotated token)
    // go there.
    hub.terminate();
    std::fs::write(&config, format!("{first_catalog}{local}{s3}")).unwrap();
    let hub = Hub::start_with_config(&data_dir, &config);
    let rotated = w.join("site-b/site.token.new");
    hub.rotate_token("acme", "site-b", &rotated);
    std::fs::rename(&rotated, w.join("site-b/site.token")).unwrap();
    for (i, s) in sources.iter_mut().enumerate() {
        s.site.write_config(&hub.url(), &s.dir);
        std::fs::write(s.dir.join("second.bin"), noise(300_000, 10 + i as u64)).unwrap();
        std::fs::write(s.dir.join("sub/note.txt"), "changed").unwrap();
        s.site.backup();
        s.states.push(describe(&s.dir));
    }
    drop(hub);

    // The catalog is lost. A new, empty one takes its place.
    let second_catalog = match engine {
        "postgres" => catalog_toml("after"),
        _ => {
            delete_sqlite_catalog(&data_dir);
            String::new()
        }
    };
    std::fs::write(&config, format!("{second_catalog}{local}{s3}")).unwrap();
    let (clean, report) = recover(&config, &data_dir, &[]);
    assert!(clean, "recover found damage: {report}");
    assert_eq!(
        (
            n(&report, "tenants_added"),
            n(&report, "sites_added"),
            n(&report, "buckets_added"),
            n(&report, "commits_added")
        ),
        (2, 3, 3, 6),
        "{report}"
    );
    assert!(n(&report, "blobs_added") > 0 && n(&report, "packs") > 0);
    // A rerun adds nothing and finds everything there.
    let (clean, again) = recover(&config, &data_dir, &[]);
    assert!(clean, "{again}");
    assert_eq!(
        (
            n(&again, "commits_added"),
            n(&again, "commits_present"),
            n(&again, "blobs_added"),
            n(&again, "tenants_added")
        ),
        (0, 6, 0, 0),
        "{again}"
    );

    // Every snapshot of every bucket restores identical, by number and by
    // time; the rotated token is the one that works.
    let hub = Hub::start_with_config(&data_dir, &config);
    let listed = check(
        &hub.cli(&["--json", "bucket", "list", "--tenant", "acme"]),
        "bucket list",
    );
    assert!(
        listed.contains(r#""bucket":"acme/docs","replicas":["site-b"],"source":"site-a""#),
        "the replica placement is recovered: {listed}"
    );
    for s in &sources {
        s.site.write_config(&hub.url(), &s.dir);
        let name = s.site.bucket.replace('/', "-");
        let latest = w.join(format!("restored-{name}-latest"));
        let restored = s.site.restore(&latest, &[]);
        assert_eq!(n(&restored, "seq"), 2);
        // Verified marks are the catalog's alone, the verifier key is
        // recovered: site a's restore verifies its copies anew.
        if s.site.bucket == "acme/docs" {
            assert!(n(&restored, "copies_verified") > 0, "{restored}");
        }
        assert_same(&s.states[1], &describe(&latest), &format!("{name} latest"));
        let first = w.join(format!("restored-{name}-1"));
        s.site.restore(&first, &["--snapshot", "1"]);
        assert_same(&s.states[0], &describe(&first), &format!("{name} #1"));
        let at = w.join(format!("restored-{name}-at"));
        s.site.restore(&at, &["--at", &between]);
        assert_same(&s.states[0], &describe(&at), &format!("{name} --at"));
    }

    // The next backup uploads only what is new: the rebuilt blob index
    // knows every chunk already stored.
    for (i, s) in sources.iter().enumerate() {
        std::fs::write(s.dir.join("third.txt"), format!("third {i}")).unwrap();
        let third = s.site.backup();
        assert_eq!(n(&third, "seq"), 3, "{third}");
        assert!(
            n(&third, "bytes_sent") < 100_000,
            "the backup after recovery sent {third}"
        );
    }
}

#[test]
fn a_lost_sqlite_catalog_is_rebuilt_from_the_pools() {
    disaster("sqlite");
}

#[test]
fn a_lost_postgres_catalog_is_rebuilt_from_the_pools() {
    disaster("postgres");
}

/// Damage in the pools: a pack whose index is torn and a segment whose
/// bytes were flipped are named, what they affect is reported, and the
/// rest recovers; `--verify-packs` finds damage inside a pack's blobs.
#[test]
fn recover_names_damaged_objects_and_what_they_affect() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("one.bin"), noise(400_000, 1)).unwrap();
    let DiskHub {
        config,
        pool,
        data_dir,
        hub,
    } = DiskHub::start(w);
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.backup();
    let state1 = describe(&src);
    let before: Vec<_> = files_with_extension(&pool, "pack");
    std::fs::write(src.join("two.bin"), noise(500_000, 2)).unwrap();
    site.backup();
    std::fs::write(src.join("three.txt"), "three").unwrap();
    site.backup();
    drop(hub);

    // The largest pack of the second backup holds two.bin: tear its index
    // (its length, in the footer).
    let torn = files_with_extension(&pool, "pack")
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&torn).unwrap();
    let at = bytes.len() - 44;
    bytes[at] ^= 0x01;
    std::fs::write(&torn, &bytes).unwrap();
    // And flip a byte of the third commit's segment.
    let segments = files_with_extension(&pool.join("journal/acme/docs"), "seg");
    assert_eq!(segments.len(), 3, "{segments:?}");
    let third = segments
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("00000000000000000003-")
        })
        .unwrap();
    let mut bytes = std::fs::read(third).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(third, &bytes).unwrap();

    delete_sqlite_catalog(&data_dir);
    let (clean, report) = recover(&config, &data_dir, &[]);
    assert!(!clean, "damage went unnoticed: {report}");
    let damaged: Vec<String> = report["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["object"].as_str().unwrap().to_owned())
        .collect();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        damaged.iter().any(|o| o.ends_with(&name(&torn))),
        "{report}"
    );
    assert!(
        damaged.iter().any(|o| o.ends_with(&name(third))),
        "{report}"
    );
    assert_eq!(damaged.len(), 2, "{report}");
    let affected: Vec<(u64, String)> = report["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (n(a, "seq"), a["problem"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(affected.len(), 2, "{report}");
    assert!(
        affected[0].0 == 2 && affected[0].1.contains("no readable pack"),
        "{report}"
    );
    assert!(
        affected[1].0 == 3 && affected[1].1.contains("lost"),
        "{report}"
    );
    assert_eq!(n(&report, "commits_added"), 2, "{report}");

    // What the damage does not reach restores identical.
    let hub = Hub::start_with_config(&data_dir, &config);
    site.write_config(&hub.url(), &src);
    // Commit 3 is lost, and the site saw it: its agent takes the shorter
    // journal for a rollback until told the loss is known.
    let out = w.join("restored-1");
    let refused = site.agent(&["restore", "--snapshot", "1", "--to", out.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("rolled back"), "{stderr}");
    check(&site.agent(&["forget-head"]), "forget-head");
    site.restore(&out, &["--snapshot", "1"]);
    assert_same(
        &state1,
        &describe(&out),
        "snapshot 1 after a damaged recovery",
    );
    drop(hub);

    // Damage inside a pack's blob area leaves its index readable: only a
    // verifying recovery reads the whole pack and names it.
    let inner = before
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(inner).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(inner, &bytes).unwrap();
    delete_sqlite_catalog(&data_dir);
    let (_, plain) = recover(&config, &data_dir, &[]);
    assert!(!plain.to_string().contains(&name(inner)), "{plain}");
    delete_sqlite_catalog(&data_dir);
    let (_, verified) = recover(&config, &data_dir, &["--verify-packs"]);
    let found = verified["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["object"].as_str().unwrap().ends_with(&name(inner)));
    assert!(found, "{verified}");
}

/// A pack in the pool that the catalog does not know (the hub stopped
/// between putting it and recording it) is indexed when a hub starts: the
/// pools are the truth, and `recover` would index it anyway.
#[test]
fn a_pack_the_catalog_never_recorded_is_adopted_at_start() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), noise(3 << 20, 21)).unwrap();
    let data_dir = w.join("hub");
    let hub = Hub::start(&data_dir);
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.backup();
    drop(hub);
    // The catalog forgets every pack and blob; the pool keeps them.
    let conn = rusqlite::Connection::open(data_dir.join("catalog.db")).unwrap();
    conn.execute_batch("DELETE FROM blobs; DELETE FROM packs;")
        .unwrap();
    drop(conn);
    let hub = Hub::start(&data_dir);
    site.write_config(&hub.url(), &src);
    let adopted = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        hub.log().contains("unrecorded packs adopted")
    });
    assert!(adopted, "{}", hub.log());
    let out = w.join("restored");
    site.restore(&out, &[]);
    assert_same(&describe(&src), &describe(&out), "restore after adoption");
    // A second start finds nothing left to adopt (the log file is the
    // same across starts).
    drop(hub);
    let hub = Hub::start(&data_dir);
    let looked = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        hub.log().contains("no unrecorded packs")
    });
    assert!(looked, "{}", hub.log());
    assert_eq!(
        hub.log().matches("unrecorded packs adopted").count(),
        1,
        "{}",
        hub.log()
    );
}

/// A catalog from before the reference index (as its migration leaves it:
/// the buckets with commits listed for backfill, no references) has them
/// read back from the segments when a hub starts, and restores on.
#[test]
fn an_upgraded_catalog_reads_its_references_back_at_start() {
    let w = tempfile::tempdir().unwrap();
    let w = w.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data.bin"), noise(3 << 20, 22)).unwrap();
    std::fs::write(src.join("small.txt"), b"small").unwrap();
    let data_dir = w.join("hub");
    let hub = Hub::start(&data_dir);
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    site.backup();
    drop(hub);
    let db = data_dir.join("catalog.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |conn: &rusqlite::Connection, table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let references = count(&conn, "bucket_references");
    assert!(references > 1, "{references} references");
    conn.execute_batch(
        "DELETE FROM bucket_references; DELETE FROM bucket_reference_parts;
         INSERT INTO reference_backfill SELECT DISTINCT bucket_id FROM commits;",
    )
    .unwrap();
    drop(conn);
    let hub = Hub::start(&data_dir);
    site.write_config(&hub.url(), &src);
    let indexed = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        hub.log().contains("bucket references indexed")
    });
    assert!(indexed, "{}", hub.log());
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(count(&conn, "reference_backfill"), 0);
    assert_eq!(count(&conn, "bucket_references"), references);
    drop(conn);
    let out = w.join("restored");
    site.restore(&out, &[]);
    assert_same(
        &describe(&src),
        &describe(&out),
        "restore after the backfill",
    );
}

/// An append whose transaction failed after its segment was written leaves
/// a second segment of that number, here written later (another hub's
/// clock ahead): recover takes the one the next commit names as its
/// parent, so the recovered chain verifies and every snapshot restores.
#[test]
fn of_two_segments_of_one_number_recover_takes_the_one_the_next_commit_follows() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let DiskHub {
        config,
        pool,
        data_dir,
        hub,
    } = DiskHub::start(w);
    let site = Site::create(&hub, &w.join("site"), &src, "site-a", "docs");
    std::fs::write(src.join("file.txt"), "one").unwrap();
    site.backup();
    std::fs::write(src.join("file.txt"), "two").unwrap();
    site.backup();
    drop(hub);

    let dir = pool.join("journal/acme/docs");
    let first = files_with_extension(&dir, "seg")
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("00000000000000000001-")
        })
        .unwrap();
    let real = Segment::decode(&std::fs::read(&first).unwrap()).unwrap();
    let never = Segment {
        time_unix_ms: real.time_unix_ms + 3_600_000,
        mac: Some([9; 32]),
        ..real
    };
    let (name, bytes) = never.encode().unwrap();
    std::fs::write(pool.join(&name), bytes).unwrap();

    delete_sqlite_catalog(&data_dir);
    let (clean, report) = recover(&config, &data_dir, &[]);
    assert!(clean, "{report}");
    assert_eq!(n(&report, "superseded_segments"), 1, "{report}");
    let hub = Hub::start_with_config(&data_dir, &config);
    site.write_config(&hub.url(), &src);
    for (seq, text) in [(1, "one"), (2, "two")] {
        let out = w.join(format!("restored-{seq}"));
        site.restore(&out, &["--snapshot", &seq.to_string()]);
        assert_eq!(std::fs::read_to_string(out.join("file.txt")).unwrap(), text);
    }
}
