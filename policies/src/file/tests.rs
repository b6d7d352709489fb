use super::*;

const GOOD: &str = r#"tenant = "acme"

[retention]
keep-last = 7
keep-daily = 14
keep-within = "2d"
journal-window = "7d"
timezone = "Europe/Berlin"

[compliance]
mode = "compliance"
retain-days = { all = 7, monthly = 365 }

[[schedule]]
cron = "0 */6 * * *"
timezone = "Europe/Berlin"

[drill]
cron = "0 3 * * sun"
sample-percent = 10

[bucket.photos.retention]
keep-daily = 30

[[bucket.photos.schedule]]
cron = "@hourly"

[source."site-a/home"]
schedule = [{ cron = "*/15 * * * *" }]

[hold.case-17]
bucket = "mail"
reason = "Smith v. Acme"
taken-before = 2026-12-01T00:00:00Z
"#;

#[test]
fn a_whole_file_parses_into_the_model() {
    let f = parse("acme.toml", GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(f.tenant.value, "acme");
    let r = f.defaults.retention.as_ref().map(ToString::to_string);
    assert_eq!(
        r.as_deref(),
        Some("keep-last 7, keep-daily 14, keep-within 2d, journal-window 7d (Europe/Berlin)")
    );
    let c = f.defaults.compliance.as_ref().map(ToString::to_string);
    assert_eq!(
        c.as_deref(),
        Some("compliance mode, retain all 7d, monthly 365d")
    );
    assert_eq!(f.defaults.schedules.len(), 1);
    assert_eq!(
        f.defaults.drill.as_ref().map(|d| d.sample_percent),
        Some(10)
    );
    assert_eq!(
        f.defaults_at["compliance"].line, 10,
        "placed at the table's header"
    );
    assert_eq!(f.buckets[0].value.0, "photos");
    assert_eq!(f.sources[0].value.0, "site-a");
    assert_eq!(f.sources[0].value.1, "home");
    assert_eq!(
        f.holds[0]
            .value
            .taken_before
            .map(|t| t.to_rfc3339())
            .as_deref(),
        Some("2026-12-01T00:00:00+00:00")
    );
}

/// Each bad file, the place its first error is reported at, and what the
/// reason says.
#[test]
fn every_kind_of_bad_file_is_placed_and_explained() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "tenant = \"acme\"\n[retention\nkeep-last = 1\n",
            "f.toml:2:11",
            "expected",
        ),
        (
            "tenant = \"acme\"\n[retention]\nkeep-dayly = 3\n",
            "f.toml:3:1",
            "keep-dayly",
        ),
        ("[retention]\nkeep-last = 3\n", "f.toml:1:1", "tenant"),
        (
            "tenant = \"acme\"\n[retention]\nkeep-last = \"three\"\n",
            "f.toml:3:13",
            "expected u32",
        ),
        (
            "tenant = \"acme\"\n[retention]\nkeep-last = -1\n",
            "f.toml:3:13",
            "",
        ),
        (
            "tenant = \"Acme Corp\"\n",
            "f.toml:1:10",
            "use 1 to 64 of a-z",
        ),
        (
            "tenant = \"acme\"\n[retention]\nkeep-last = 0\n",
            "f.toml:2:1",
            "keeps nothing",
        ),
        (
            "tenant = \"acme\"\n[retention]\nkeep-within = \"2x\"\n",
            "f.toml:3:15",
            "unknown unit 'x'",
        ),
        (
            "tenant = \"acme\"\n[retention]\nkeep-last = 1\ntimezone = \"Mars/Olympus\"\n",
            "f.toml:4:12",
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            "tenant = \"acme\"\n[[schedule]]\ncron = \"61 * * * *\"\n",
            "f.toml:3:8",
            "minute field",
        ),
        (
            "tenant = \"acme\"\n[[schedule]]\ncron = \"0 0 30 2 *\"\n",
            "f.toml:3:8",
            "never fires",
        ),
        (
            "tenant = \"acme\"\n[compliance]\nmode = \"strict\"\n",
            "f.toml:3:8",
            "expected \"governance\" or \"compliance\"",
        ),
        (
            "tenant = \"acme\"\n[compliance]\nmode = \"governance\"\nretain-days = { forever = 1 }\n",
            "f.toml:4:15",
            "unknown class \"forever\"",
        ),
        (
            "tenant = \"acme\"\n[compliance]\nmode = \"governance\"\nretain-days = { daily = 0 }\n",
            "f.toml:4:15",
            "0 days locks nothing",
        ),
        (
            "tenant = \"acme\"\n[drill]\ncron = \"@daily\"\nsample-percent = 0\n",
            "f.toml:4:18",
            "expected 1 to 100",
        ),
        (
            "tenant = \"acme\"\n[source.home]\nschedule = [{ cron = \"@daily\" }]\n",
            "f.toml:2:1",
            "expected \"SITE/SOURCE\"",
        ),
        (
            "tenant = \"acme\"\n[source.\"a/b\"]\nretention = { keep-last = 1 }\n",
            "f.toml:3:1",
            "retention",
        ),
        (
            "tenant = \"acme\"\n[hold.h1]\nbucket = \"mail\"\nreason = \" \"\n",
            "f.toml:4:10",
            "says why",
        ),
        (
            "tenant = \"acme\"\n[hold.h1]\nbucket = \"mail\"\nreason = \"r\"\ntaken-before = 2026-12-01\n",
            "f.toml:5:16",
            "an offset",
        ),
        (
            "tenant = \"acme\"\n[hold.h1]\nbucket = \"mail\"\nreason = \"r\"\ntaken-after = 2026-12-02T00:00:00Z\ntaken-before = 2026-12-01T00:00:00Z\n",
            "f.toml:6:16",
            "cover nothing",
        ),
        (
            "tenant = \"acme\"\n[bucket.Photos.retention]\nkeep-last = 1\n",
            "f.toml:2:9",
            "\"Photos\"",
        ),
    ];
    for (text, place, says) in cases {
        let errors = match parse("f.toml", text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let first = errors[0].to_string();
        assert!(
            first.starts_with(&format!("{place}: ")),
            "want {place}, got {first}\n{text}"
        );
        assert!(first.contains(says), "want {says:?} in {first}");
    }
}

#[test]
fn all_the_errors_of_a_file_are_told_at_once() {
    let text = "tenant = \"acme\"\n[[schedule]]\ncron = \"99 * * * *\"\ntimezone = \"Nowhere\"\n[drill]\ncron = \"x\"\n";
    let errors = parse("f.toml", text).err().unwrap_or_default();
    let places: Vec<String> = errors.iter().map(|e| e.location.to_string()).collect();
    assert_eq!(places, ["f.toml:3:8", "f.toml:4:12", "f.toml:6:8"]);
}
