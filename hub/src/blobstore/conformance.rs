//! The conformance suite every [`BlobStore`] must pass.
//!
//! Each behaviour is a plain `pub async fn` over `&dyn BlobStore`, so the
//! local store's unit test and a future S3 integration test run the same
//! checks. Every function works under its own random prefix, so the suite can
//! run against a shared bucket that holds other data. Failures panic: this is
//! test code, compiled always so other crates and backends can call it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a conformance failure is a test failure"
)]

use super::{BlobStore, BlobStoreError};

/// Runs every check in this module against `store`.
pub async fn run_all(store: &dyn BlobStore) {
    put_get(store).await;
    put_is_idempotent(store).await;
    get_range(store).await;
    list(store).await;
    delete(store).await;
    not_found(store).await;
    name_validation(store).await;
}

/// A fresh prefix so runs never see each other's objects.
fn scratch(test: &str) -> String {
    format!("conformance/{test}-{:016x}", rand::random::<u64>())
}

/// A stored object reads back whole, with its size; empty objects work.
pub async fn put_get(store: &dyn BlobStore) {
    let base = scratch("put-get");
    let name = format!("{base}/ab/object.pack");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    store.put(&name, data.clone()).await.unwrap();
    assert_eq!(store.get(&name).await.unwrap(), data);
    assert_eq!(store.size(&name).await.unwrap(), data.len() as u64);

    let empty = format!("{base}/empty");
    store.put(&empty, Vec::new()).await.unwrap();
    assert!(store.get(&empty).await.unwrap().is_empty());
    assert_eq!(store.size(&empty).await.unwrap(), 0);
}

/// Putting the same name again succeeds and leaves one object.
pub async fn put_is_idempotent(store: &dyn BlobStore) {
    let base = scratch("idempotent");
    let name = format!("{base}/x");
    store.put(&name, b"same bytes".to_vec()).await.unwrap();
    store.put(&name, b"same bytes".to_vec()).await.unwrap();
    assert_eq!(store.get(&name).await.unwrap(), b"same bytes");
    assert_eq!(store.list(&base).await.unwrap(), [name]);
}

/// Ranged reads return exactly the bytes asked for, and refuse ranges that
/// reach past the end instead of returning short data.
pub async fn get_range(store: &dyn BlobStore) {
    let name = format!("{}/r", scratch("range"));
    let data: Vec<u8> = (0..=255u8).collect();
    store.put(&name, data.clone()).await.unwrap();

    assert_eq!(store.get_range(&name, 0, 256).await.unwrap(), data);
    assert_eq!(store.get_range(&name, 10, 5).await.unwrap(), &data[10..15]);
    assert_eq!(store.get_range(&name, 255, 1).await.unwrap(), [255]);
    assert!(store.get_range(&name, 256, 0).await.unwrap().is_empty());

    for (offset, len) in [
        (0, 257),
        (250, 7),
        (256, 1),
        (1000, 0),
        (u64::MAX, 1),
        (1, u64::MAX),
    ] {
        let err = store.get_range(&name, offset, len).await.unwrap_err();
        assert!(
            matches!(err, BlobStoreError::OutOfRange { .. }),
            "range {offset}+{len}: expected OutOfRange, got {err:?}"
        );
    }
    let err = store
        .get_range(&format!("{name}-missing"), 0, 1)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// Listing returns full names, sorted, filtered by prefix.
pub async fn list(store: &dyn BlobStore) {
    let base = scratch("list");
    assert!(store.list(&base).await.unwrap().is_empty());
    let names = [
        format!("{base}/a/1"),
        format!("{base}/a/2"),
        format!("{base}/b/1"),
        format!("{base}/c"),
    ];
    for name in names.iter().rev() {
        store.put(name, name.as_bytes().to_vec()).await.unwrap();
    }
    assert_eq!(store.list(&base).await.unwrap(), names);
    assert_eq!(
        store.list(&format!("{base}/a/")).await.unwrap(),
        &names[..2]
    );
    assert_eq!(
        store.list(&format!("{base}/b")).await.unwrap(),
        &names[2..3]
    );
    let all = store.list("").await.unwrap();
    assert!(
        names.iter().all(|n| all.contains(n)),
        "unprefixed listing misses objects"
    );
}

/// Deleted objects are gone; deleting twice or deleting a missing name is fine.
pub async fn delete(store: &dyn BlobStore) {
    let base = scratch("delete");
    let (keep, gone) = (format!("{base}/keep"), format!("{base}/gone"));
    store.put(&keep, b"k".to_vec()).await.unwrap();
    store.put(&gone, b"g".to_vec()).await.unwrap();
    store.delete(&gone).await.unwrap();
    assert!(store.get(&gone).await.unwrap_err().is_not_found());
    assert_eq!(
        store.list(&base).await.unwrap(),
        std::slice::from_ref(&keep)
    );
    store.delete(&gone).await.unwrap();
    store.delete(&format!("{base}/never")).await.unwrap();
    assert_eq!(store.get(&keep).await.unwrap(), b"k");
}

/// Reads of a missing object, or of a name that is only a prefix of other
/// objects, fail with NotFound naming it.
pub async fn not_found(store: &dyn BlobStore) {
    let base = scratch("not-found");
    let missing = format!("{base}/missing");
    for err in [
        store.get(&missing).await.unwrap_err(),
        store.size(&missing).await.unwrap_err(),
        store.get_range(&missing, 0, 0).await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, BlobStoreError::NotFound { name } if *name == missing),
            "expected NotFound({missing}), got {err:?}"
        );
    }
    store
        .put(&format!("{base}/dir/obj"), b"x".to_vec())
        .await
        .unwrap();
    let prefix_only = format!("{base}/dir");
    assert!(store.get(&prefix_only).await.unwrap_err().is_not_found());
    assert!(store.size(&prefix_only).await.unwrap_err().is_not_found());
}

/// Every operation refuses names that could escape the store or that break
/// the naming rules, before touching storage.
pub async fn name_validation(store: &dyn BlobStore) {
    let bad = [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../escape",
        "a//b",
        "trailing/",
        ".hidden",
        "a/.tmp-1",
        "UPPER",
        "sp ace",
        "back\\slash",
    ];
    for name in bad {
        let results = [
            store.put(name, b"x".to_vec()).await.err(),
            store.get(name).await.err(),
            store.get_range(name, 0, 1).await.err(),
            store.delete(name).await.err(),
            store.size(name).await.err(),
        ];
        for (op, err) in ["put", "get", "get_range", "delete", "size"]
            .iter()
            .zip(results)
        {
            assert!(
                matches!(err, Some(BlobStoreError::InvalidName { .. })),
                "{op}({name:?}): expected InvalidName, got {err:?}"
            );
        }
    }
}
