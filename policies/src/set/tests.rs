use super::*;

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

const TENANT: &str =
    "tenant = \"acme\"\n[retention]\nkeep-daily = 7\n[[schedule]]\ncron = \"@daily\"\n";
const PHOTOS: &str = "tenant = \"acme\"\n[bucket.photos.retention]\nkeep-last = 3\n[source.\"site-a/cam\"]\nschedule = [{ cron = \"@hourly\" }]\n[hold.case-1]\nbucket = \"photos\"\nreason = \"audit\"\n";

#[test]
fn buckets_and_sources_take_what_they_do_not_set_from_above() {
    let set = parse(&files(&[("tenant.toml", TENANT), ("photos.toml", PHOTOS)]))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let acme = &set.tenants["acme"];
    assert_eq!(acme.files, ["tenant.toml", "photos.toml"]);
    let photos = acme.bucket("photos");
    assert_eq!(photos.retention.and_then(|r| r.keep_last), Some(3));
    assert_eq!(
        photos.retention.and_then(|r| r.keep_daily),
        None,
        "a table replaces the one above whole"
    );
    assert_eq!(photos.schedules[0].cron.as_str(), "@daily", "the tenant's");
    assert_eq!(photos.holds.len(), 1);
    let docs = acme.bucket("docs");
    assert_eq!(docs.retention.and_then(|r| r.keep_daily), Some(7));
    assert!(docs.holds.is_empty());
    assert_eq!(
        acme.source("site-a", "cam", "photos").0[0].cron.as_str(),
        "@hourly"
    );
    assert_eq!(
        acme.source("site-b", "cam", "photos").0[0].cron.as_str(),
        "@daily"
    );
}

#[test]
fn a_thing_defined_twice_is_placed_at_the_second_and_names_the_first() {
    let again = "tenant = \"acme\"\n\n[retention]\nkeep-last = 1\n[bucket.photos.retention]\nkeep-last = 9\n";
    let errors = parse(&files(&[
        ("tenant.toml", TENANT),
        ("photos.toml", PHOTOS),
        ("again.toml", again),
    ]))
    .err()
    .unwrap_or_default();
    let told: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[0].starts_with(
            "again.toml:3:1: tenant acme's [retention] is already defined at tenant.toml:2:1"
        ),
        "{}",
        told[0]
    );
    assert!(
        told[1].contains("bucket acme/photos is already defined at photos.toml:2:9"),
        "{}",
        told[1]
    );
}

#[test]
fn one_bad_file_rejects_the_set_with_every_file_s_errors() {
    let bad = "tenant = \"acme\"\n[bucket.x.retention]\nkeep-lats = 1\n";
    let worse = "tenant = \"beta\"\n[[schedule]]\ncron = \"* * *\"\n";
    let errors = parse(&files(&[
        ("good.toml", TENANT),
        ("bad.toml", bad),
        ("worse.toml", worse),
    ]))
    .err()
    .unwrap_or_default();
    let files: Vec<&str> = errors.iter().map(|e| e.location.file.as_str()).collect();
    assert_eq!(files, ["bad.toml", "worse.toml"]);
}

#[test]
fn describe_and_diff_show_what_an_apply_changes() {
    let before = parse(&files(&[("tenant.toml", TENANT)])).unwrap_or_default();
    let after =
        parse(&files(&[("tenant.toml", TENANT), ("photos.toml", PHOTOS)])).unwrap_or_default();
    let old = before.tenants["acme"].describe();
    assert_eq!(
        old,
        [
            "tenant: retention keep-daily 7 (UTC)",
            "tenant: backups at @daily (UTC)"
        ]
    );
    let changes = diff(&old, &after.tenants["acme"].describe());
    assert_eq!(
        changes,
        [
            "+ bucket photos: retention keep-last 3 (UTC)",
            "+ source site-a/cam: backups at @hourly (UTC)",
            "+ hold case-1 on bucket photos: taken from the first to any later: audit",
        ]
    );
    assert!(diff(&old, &old).is_empty());
}
