//! Policy versions: numbered per tenant from 1, every one kept, the newest
//! in force, files in the order given.

use super::*;
use crate::catalog::{PolicyFileText, PolicyVersion};

fn file(name: &str, text: &str) -> PolicyFileText {
    PolicyFileText {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

pub fn policy_versions(cat: &dyn Catalog) {
    let (tenant, _, _) = namespace(cat);
    let (other, _, _) = namespace(cat);
    assert_eq!(cat.read(|r| r.policy(tenant, None)).unwrap(), None);
    assert!(cat.read(|r| r.policy_history(tenant)).unwrap().is_empty());

    // Files keep the order given, not their names' order.
    let first = [
        file("z.toml", "tenant = 1"),
        file("a.toml", "é\n\"quoted\""),
    ];
    assert_eq!(
        cat.write(|w| w.add_policy_version(tenant, 1_000, &first))
            .unwrap(),
        1
    );
    let second = [file("z.toml", "tenant = 2")];
    assert_eq!(
        cat.write(|w| w.add_policy_version(tenant, 2_000, &second))
            .unwrap(),
        2
    );
    // Another tenant counts on its own.
    assert_eq!(
        cat.write(|w| w.add_policy_version(other, 3_000, &second))
            .unwrap(),
        1
    );

    let v2 = PolicyVersion {
        version: 2,
        applied_unix_ms: 2_000,
        files: second.to_vec(),
    };
    assert_eq!(cat.read(|r| r.policy(tenant, None)).unwrap(), Some(v2));
    let v1 = cat.read(|r| r.policy(tenant, Some(1))).unwrap().unwrap();
    assert_eq!((v1.applied_unix_ms, v1.files), (1_000, first.to_vec()));
    assert_eq!(cat.read(|r| r.policy(tenant, Some(3))).unwrap(), None);

    let history = cat.read(|r| r.policy_history(tenant)).unwrap();
    let names: Vec<(u64, Vec<&str>)> = history
        .iter()
        .map(|v| (v.version, v.files.iter().map(|f| f.name.as_str()).collect()))
        .collect();
    assert_eq!(names, [(1, vec!["z.toml", "a.toml"]), (2, vec!["z.toml"])]);
    assert!(
        history
            .iter()
            .flat_map(|v| &v.files)
            .all(|f| f.text.is_empty())
    );

    // Refusals, and a failed unit of work that records nothing.
    let err = cat
        .write(|w| w.add_policy_version(tenant, 4_000, &[]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err:?}");
    let err = cat
        .write(|w| w.add_policy_version(TenantId(i64::MAX), 4_000, &second))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    let failed = cat.write(|w| {
        w.add_policy_version(tenant, 5_000, &second)?;
        Err::<(), _>(CatalogError::Conflict {
            what: "test",
            key: "policy".to_owned(),
            reason: "rolled back".to_owned(),
        })
    });
    assert!(failed.is_err());
    assert_eq!(
        cat.read(|r| r.policy(tenant, None))
            .unwrap()
            .map(|v| v.version),
        Some(2)
    );
}

/// Applies from several threads (hub processes, over `cats`) each get a
/// number of their own.
pub fn concurrent_policy_applies(cats: &[&dyn Catalog]) {
    let (tenant, _, _) = namespace(cats[0]);
    let mut versions: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let cat = cats[t % cats.len()];
                scope.spawn(move || {
                    (0..5)
                        .map(|i| {
                            let f = [file("p.toml", &format!("{t}-{i}"))];
                            cat.write(|w| w.add_policy_version(tenant, 1, &f)).unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
}
