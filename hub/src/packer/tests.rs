use super::*;
use crate::blobstore::{BoxFuture, LocalDirStore};
use crate::catalog::{BlobOwner, CatalogExt, SqliteCatalog};
use crate::pack::parse_pack;
use crate::stored_filter;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn BlobStore>,
    catalog: Arc<dyn Catalog>,
    /// A site of each of two tenants.
    a: BlobOwner,
    b: BlobOwner,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalDirStore::open(dir.path().join("pool")).unwrap());
    let catalog = Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
    let owner = |tenant_name: &str| {
        let tenant = catalog.write(|w| w.create_tenant(tenant_name)).unwrap();
        let site = catalog
            .write(|w| w.create_site(tenant, "site-a", &rand::random()))
            .unwrap();
        BlobOwner { tenant, site }
    };
    let (a, b) = (owner("tenant-a"), owner("tenant-b"));
    Fixture {
        _dir: dir,
        store,
        catalog,
        a,
        b,
    }
}

fn packer(f: &Fixture, config: PackerConfig) -> Packer {
    Packer::start(
        Arc::clone(&f.store),
        Arc::clone(&f.catalog),
        "pool-1".to_owned(),
        config,
    )
}

fn blob(seed: u8, len: usize) -> PackBlob {
    PackBlob {
        id: BlobId([seed; 32]),
        kind: BlobKind::Data,
        flags: 0,
        header_id: BlobId([0xAA; 32]),
        data: vec![seed; len].into(),
    }
}

fn ids(blobs: &[PackBlob]) -> Vec<BlobId> {
    blobs.iter().map(|b| b.id).collect()
}

#[tokio::test]
async fn the_stored_filter_learns_what_is_recorded_and_answers_as_the_catalog() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    let stored = p.stored().clone();
    for _ in 0..500 {
        if stored.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stored.is_ready(), "filter not built within 5 s");
    let (old, new) = (blob(7, 10), blob(8, 10));
    assert!(stored.absent(f.a, &old.id));
    p.store(f.a, vec![old.clone()]).await.unwrap();
    assert!(
        !stored.absent(f.a, &old.id),
        "recorded, so not surely absent"
    );
    assert!(stored.absent(f.a, &new.id));
    let asked = [new.id, old.id, new.id];
    assert_eq!(
        stored_filter::missing_blobs(&*f.catalog, &stored, f.a, &asked).unwrap(),
        f.catalog.missing_blobs(f.a, &asked).unwrap()
    );
    assert_eq!(
        stored_filter::missing_blobs(&*f.catalog, &stored, f.a, &asked).unwrap(),
        vec![new.id]
    );
}

#[tokio::test]
async fn concurrent_stores_share_one_pack() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    let (a, b) = (vec![blob(1, 100), blob(2, 50)], vec![blob(3, 10)]);
    let (ra, rb) = tokio::join!(p.store(f.a, a.clone()), p.store(f.a, b.clone()));
    assert_eq!(
        ra.unwrap(),
        StoreOutcome {
            stored: 2,
            already_present: 0
        }
    );
    assert_eq!(
        rb.unwrap(),
        StoreOutcome {
            stored: 1,
            already_present: 0
        }
    );
    assert_eq!(f.catalog.list_packs().unwrap().len(), 1);
    let all: Vec<BlobId> = ids(&a).into_iter().chain(ids(&b)).collect();
    assert!(f.catalog.missing_blobs(f.a, &all).unwrap().is_empty());
}

#[tokio::test]
async fn storing_twice_stores_nothing_new() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    // A duplicate inside one call is stored once.
    let blobs = vec![blob(1, 10), blob(2, 20), blob(1, 10)];
    assert_eq!(
        p.store(f.a, blobs.clone()).await.unwrap(),
        StoreOutcome {
            stored: 2,
            already_present: 1
        }
    );
    assert_eq!(
        p.store(f.a, blobs).await.unwrap(),
        StoreOutcome {
            stored: 0,
            already_present: 3
        }
    );
    let mixed = vec![blob(2, 20), blob(9, 5)];
    assert_eq!(
        p.store(f.a, mixed).await.unwrap(),
        StoreOutcome {
            stored: 1,
            already_present: 1
        }
    );
    assert_eq!(f.catalog.list_packs().unwrap().len(), 2);
    assert_eq!(f.store.list("packs/").await.unwrap().len(), 2);
    assert_eq!(
        p.store(f.a, Vec::new()).await.unwrap(),
        StoreOutcome::default()
    );
}

#[tokio::test]
async fn stored_blobs_read_back_and_the_pack_parses() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    let header_bytes = b"age-encryption.org/v1 header bytes".to_vec();
    let header = PackBlob {
        id: BlobId::of_public(&header_bytes),
        kind: BlobKind::SessionHeader,
        flags: 0,
        header_id: BlobId::of_public(&header_bytes),
        data: header_bytes.into(),
    };
    let blobs = vec![header, blob(4, 1000), blob(5, 0)];
    p.store(f.a, blobs.clone()).await.unwrap();

    let locs = f.catalog.blob_locations(f.a, &ids(&blobs)).unwrap();
    assert_eq!(locs.len(), blobs.len());
    for (b, loc) in blobs.iter().zip(&locs) {
        assert_eq!((loc.pool.as_str(), loc.kind), ("pool-1", b.kind));
        assert_eq!(read_blob(f.store.as_ref(), loc).await.unwrap(), b.data);
    }

    let pack = f.catalog.list_packs().unwrap().remove(0);
    let bytes = f.store.get(&pack_object_name(&pack.name)).await.unwrap();
    assert_eq!(
        (bytes.len() as u64, *blake3::hash(&bytes).as_bytes()),
        (pack.size, pack.hash)
    );
    let index = parse_pack(&bytes).unwrap();
    assert_eq!(index.tenant, "tenant-a");
    assert_eq!(
        ids(&blobs),
        index.entries.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn concurrent_duplicates_of_one_tenant_store_once() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    let (ra, rb) = tokio::join!(
        p.store(f.a, vec![blob(1, 10), blob(2, 10)]),
        p.store(f.a, vec![blob(2, 10)])
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.stored + rb.stored, 2);
    assert_eq!(ra.already_present + rb.already_present, 1);
    let pack = f.catalog.list_packs().unwrap().remove(0);
    let bytes = f.store.get(&pack_object_name(&pack.name)).await.unwrap();
    assert_eq!(parse_pack(&bytes).unwrap().entries.len(), 2);
}

#[tokio::test]
async fn dedup_is_per_tenant() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    let stored = |n| StoreOutcome {
        stored: n,
        already_present: 0,
    };
    // The same id for two tenants in one group: one copy each, in a pack
    // of each tenant's own that names it.
    let mut b_copy = blob(1, 10);
    b_copy.data = vec![0xB1; 12].into();
    let (ra, rb) = tokio::join!(
        p.store(f.a, vec![blob(1, 10)]),
        p.store(f.b, vec![b_copy.clone()])
    );
    assert_eq!((ra.unwrap(), rb.unwrap()), (stored(1), stored(1)));
    let id = [blob(1, 10).id];
    let loc_a = f.catalog.blob_locations(f.a, &id).unwrap().remove(0);
    let loc_b = f.catalog.blob_locations(f.b, &id).unwrap().remove(0);
    assert_ne!(loc_a.pack, loc_b.pack);
    for (loc, tenant) in [(&loc_a, "tenant-a"), (&loc_b, "tenant-b")] {
        let bytes = f.store.get(&pack_object_name(&loc.pack)).await.unwrap();
        assert_eq!(parse_pack(&bytes).unwrap().tenant, tenant);
    }
    assert_eq!(
        read_blob(f.store.as_ref(), &loc_a).await.unwrap(),
        blob(1, 10).data
    );
    assert_eq!(
        read_blob(f.store.as_ref(), &loc_b).await.unwrap(),
        b_copy.data
    );

    // B uploading under an id first (say, to poison A's dedup) does not
    // make it present for A: A stores its own copy and reads it back.
    let mut poison = blob(2, 20);
    poison.data = bytes::Bytes::from_static(b"not what A will upload");
    assert_eq!(p.store(f.b, vec![poison.clone()]).await.unwrap(), stored(1));
    let id = [poison.id];
    assert_eq!(f.catalog.missing_blobs(f.a, &id).unwrap(), id);
    let loc_b = f.catalog.blob_locations(f.b, &id).unwrap();
    assert_eq!(p.store(f.a, vec![blob(2, 20)]).await.unwrap(), stored(1));
    let loc_a = f.catalog.blob_locations(f.a, &id).unwrap().remove(0);
    assert_ne!(loc_a.pack, loc_b[0].pack);
    assert_eq!(
        read_blob(f.store.as_ref(), &loc_a).await.unwrap(),
        blob(2, 20).data
    );
    assert_eq!(f.catalog.blob_locations(f.b, &id).unwrap(), loc_b);
    // Now each tenant's copy dedups against itself.
    for t in [f.a, f.b] {
        assert_eq!(
            p.store(t, vec![blob(2, 20)]).await.unwrap(),
            StoreOutcome {
                stored: 0,
                already_present: 1
            }
        );
    }
    assert_eq!(f.catalog.list_packs().unwrap().len(), 4);
}

#[tokio::test]
async fn small_max_pack_bytes_splits_groups() {
    let f = fixture();
    let config = PackerConfig {
        max_pack_bytes: 100,
        ..PackerConfig::default()
    };
    let p = packer(&f, config);
    let (r1, r2, r3) = tokio::join!(
        p.store(f.a, vec![blob(1, 60)]),
        p.store(f.a, vec![blob(2, 60)]),
        p.store(f.a, vec![blob(3, 30)])
    );
    for r in [r1, r2, r3] {
        assert_eq!(r.unwrap().stored, 1);
    }
    assert_eq!(f.catalog.list_packs().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_session_header_is_refused() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    let mut bad = blob(7, 10);
    bad.kind = BlobKind::SessionHeader;
    let err = p.store(f.a, vec![blob(8, 1), bad]).await.unwrap_err();
    assert!(
        matches!(err, PackerError::HeaderIdMismatch { .. }),
        "{err:?}"
    );
    assert!(f.catalog.list_packs().unwrap().is_empty());
}

/// A pool whose writes always fail.
struct FailingStore;

impl BlobStore for FailingStore {
    fn put<'a>(
        &'a self,
        name: &'a str,
        _data: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            Err(BlobStoreError::Backend {
                op: "put",
                name: name.to_owned(),
                source: "disk full".into(),
            })
        })
    }
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        Box::pin(async move {
            Err(BlobStoreError::NotFound {
                name: name.to_owned(),
            })
        })
    }
    fn get_range<'a>(
        &'a self,
        name: &'a str,
        _: u64,
        _: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        self.get(name)
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, BlobStoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async { Ok(()) })
    }
    fn size<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, BlobStoreError>> {
        Box::pin(async move {
            Err(BlobStoreError::NotFound {
                name: name.to_owned(),
            })
        })
    }
}

#[tokio::test]
async fn failed_write_fails_every_request_and_records_nothing() {
    let f = fixture();
    let p = Packer::start(
        Arc::new(FailingStore),
        Arc::clone(&f.catalog),
        "pool-1".to_owned(),
        PackerConfig::default(),
    );
    let (a, b) = (vec![blob(1, 10)], vec![blob(2, 10)]);
    let (ra, rb) = tokio::join!(p.store(f.a, a.clone()), p.store(f.a, b.clone()));
    for r in [ra, rb] {
        let err = r.unwrap_err();
        assert!(matches!(err, PackerError::Put { .. }), "{err:?}");
    }
    let all: Vec<BlobId> = ids(&a).into_iter().chain(ids(&b)).collect();
    assert_eq!(f.catalog.missing_blobs(f.a, &all).unwrap(), all);
    assert!(f.catalog.list_packs().unwrap().is_empty());
    // The packer keeps serving after a failure.
    assert!(p.store(f.a, vec![blob(3, 1)]).await.is_err());
    p.shutdown().await;
}

#[tokio::test]
async fn read_blob_reports_missing_pack() {
    let f = fixture();
    let loc = BlobLocation {
        id: BlobId([1; 32]),
        kind: BlobKind::Data,
        flags: 0,
        header_id: BlobId([2; 32]),
        pool: "pool-1".to_owned(),
        pack: "ab".repeat(32),
        offset: 8,
        length: 4,
        site: crate::catalog::SiteId::UNKNOWN,
        verified: false,
    };
    let err = read_blob(f.store.as_ref(), &loc).await.unwrap_err();
    assert!(
        matches!(&err, PackerError::Read { source, .. } if source.is_not_found()),
        "{err:?}"
    );
}

#[tokio::test]
async fn store_after_shutdown_of_task_is_closed() {
    let f = fixture();
    let p = packer(&f, PackerConfig::default());
    // Queued requests die with the task: their callers see Closed.
    p.task.abort();
    let err = p.store(f.a, vec![blob(1, 1)]).await.unwrap_err();
    assert!(matches!(err, PackerError::Closed), "{err:?}");
}

/// A pool whose puts wait for the test to open the gate, counting them.
struct GatedStore {
    inner: LocalDirStore,
    gate: tokio::sync::Semaphore,
    puts: std::sync::Mutex<Vec<usize>>,
}

impl BlobStore for GatedStore {
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            self.puts.lock().unwrap().push(data.len());
            let _open = self.gate.acquire().await.unwrap();
            self.inner.put(name, data).await
        })
    }
    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        self.inner.get(name)
    }
    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        self.inner.get_range(name, offset, len)
    }
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BlobStoreError>> {
        self.inner.list(prefix)
    }
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        self.inner.delete(name)
    }
    fn size<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, BlobStoreError>> {
        self.inner.size(name)
    }
}

/// The packer holds at most `queue_bytes` of blobs: a second request that
/// would pass it waits outside until the first is answered, instead of
/// queuing (or joining the group being written).
#[tokio::test]
async fn the_packer_holds_at_most_its_queue_bytes() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(GatedStore {
        inner: LocalDirStore::open(dir.path()).unwrap(),
        gate: tokio::sync::Semaphore::new(0),
        puts: Default::default(),
    });
    let config = PackerConfig {
        queue_bytes: 4 << 10,
        ..PackerConfig::default()
    };
    let p = Arc::new(Packer::start(
        store.clone(),
        Arc::clone(&f.catalog),
        "pool-1".to_owned(),
        config,
    ));
    let first = tokio::spawn({
        let p = p.clone();
        let a = f.a;
        async move { p.store(a, vec![blob(1, 3 << 10)]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let second = tokio::spawn({
        let p = p.clone();
        let a = f.a;
        async move { p.store(a, vec![blob(2, 3 << 10)]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    {
        let puts = store.puts.lock().unwrap();
        assert_eq!(puts.len(), 1, "the second request got in: {puts:?}");
        assert!(puts[0] < 6 << 10, "the two were grouped: {puts:?}");
    }
    store.gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap().stored, 1);
    assert_eq!(second.await.unwrap().unwrap().stored, 1);
    assert_eq!(store.puts.lock().unwrap().len(), 2);
}
