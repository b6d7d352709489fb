#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed assertion
//! Policy files applied to a hub with `ferry-hub policy`: a bad set is
//! rejected whole with file:line:column and the policy in force stays;
//! `diff` shows what an apply would change; every version is kept, and
//! `recover` brings them all back from the pool.

use std::path::{Path, PathBuf};
use std::process::Output;

struct HubDir {
    config: PathBuf,
    data: PathBuf,
}

impl HubDir {
    fn new(w: &Path) -> Self {
        let config = w.join("hub.toml");
        let pool = w.join("pool");
        std::fs::write(
            &config,
            format!("[[pool]]\nname = \"disk\"\ndir = \"{}\"\n", pool.display()),
        )
        .unwrap();
        HubDir {
            config,
            data: w.join("hub"),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(ferry_tests::bin("ferry-hub"))
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; gives its JSON output.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

const ACME: &str = r#"tenant = "acme"

[retention]
keep-last = 3
keep-daily = 7
timezone = "Europe/Berlin"

[compliance]
mode = "governance"
retain-days = { all = 2 }

[[schedule]]
cron = "0 */6 * * *"
"#;

const PHOTOS: &str = "tenant = \"acme\"\n\n[bucket.photos.retention]\nkeep-dayly = 30\n";

#[test]
fn a_policy_set_is_checked_whole_applied_versioned_and_recovered() {
    let w = tempfile::tempdir().unwrap();
    let hub = HubDir::new(w.path());
    hub.json(&["tenant", "add", "acme"]);
    let acme = w.path().join("acme.toml");
    let photos = w.path().join("photos.toml");
    std::fs::write(&acme, ACME).unwrap();
    std::fs::write(&photos, PHOTOS).unwrap();
    let (acme_s, photos_s) = (acme.to_str().unwrap(), photos.to_str().unwrap());

    // One bad file rejects the set: placed, explained, nothing applied.
    let out = hub.run(&["policy", "apply", acme_s, photos_s]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{photos_s}:4:1: unknown field `keep-dayly`")),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    let out = hub.run(&["policy", "show", "--tenant", "acme"]);
    assert!(!out.status.success(), "no policy is in force yet");

    // A diff applies nothing; the apply makes version 1.
    let diff = hub.json(&["policy", "diff", acme_s]);
    assert_eq!(diff["applied"], false);
    assert_eq!(
        diff["tenants"][0]["changes"],
        serde_json::json!([
            "+ tenant: retention keep-last 3, keep-daily 7 (Europe/Berlin)",
            "+ tenant: compliance governance mode, retain all 2d",
            "+ tenant: backups at 0 */6 * * * (UTC)"
        ])
    );
    assert!(
        hub.run(&["policy", "show", "--tenant", "acme"])
            .status
            .code()
            != Some(0)
    );
    let applied = hub.json(&["policy", "apply", acme_s]);
    assert_eq!(applied["tenants"][0]["version"], 1);
    // The same set again changes nothing and makes no version.
    let again = hub.json(&["policy", "apply", acme_s]);
    assert_eq!(again["tenants"][0]["changed"], false);
    assert_eq!(again["tenants"][0]["version"], 1);

    // Fixed, the second file joins: version 2, and the diff says what came.
    std::fs::write(&photos, PHOTOS.replace("dayly", "daily")).unwrap();
    let applied = hub.json(&["policy", "apply", acme_s, photos_s]);
    assert_eq!(applied["tenants"][0]["version"], 2);
    assert_eq!(
        applied["tenants"][0]["changes"],
        serde_json::json!(["+ bucket photos: retention keep-daily 30 (UTC)"])
    );
    let shown = hub.json(&["policy", "show", "--tenant", "acme"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["policy"].as_array().unwrap().len(), 4);
    let first = hub.json(&["policy", "show", "--tenant", "acme", "--version", "1"]);
    assert_eq!(first["files"][0]["text"], ACME);

    // The catalog is lost; the pool brings every version back.
    let history = hub.json(&["policy", "history", "--tenant", "acme"]);
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    for entry in std::fs::read_dir(&hub.data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("catalog")
        {
            std::fs::remove_file(&path).unwrap();
        }
    }
    hub.json(&["recover"]);
    assert_eq!(
        hub.json(&["policy", "history", "--tenant", "acme"]),
        history
    );
    assert_eq!(hub.json(&["policy", "show", "--tenant", "acme"]), shown);
}
