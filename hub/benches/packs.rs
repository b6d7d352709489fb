//! The hub's write path alone: encoding a pack, the packer storing blobs
//! durably (pack fsynced, catalog committed), and the catalog's check of a
//! commit's references. `cargo bench -p ferry-hub`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_hub::blobstore::{BlobStore, LocalDirStore};
use ferry_hub::catalog::{BlobIndex, BlobOwner, Catalog, CatalogExt, PackRecord, SqliteCatalog};
use ferry_hub::pack::{PackBlob, PackEntry, encode_pack};
use ferry_hub::packer::{Packer, PackerConfig};
use ferry_proto::{BlobId, BlobKind};

const BLOB: usize = 1 << 20;
const BLOBS: usize = 16;

fn blobs(seed: u64) -> Vec<PackBlob> {
    (0..BLOBS as u64)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(seed * 1000 + i).to_le_bytes());
            PackBlob {
                id: BlobId(id),
                kind: BlobKind::Data,
                flags: 0,
                header_id: BlobId([7; 32]),
                data: vec![(i as u8) ^ 0x5a; BLOB].into(),
            }
        })
        .collect()
}

/// A tenant and its one site, whose copies the benchmarks store.
fn bench_owner(catalog: &dyn Catalog) -> BlobOwner {
    let tenant = catalog.write(|w| w.create_tenant("bench")).unwrap();
    let site = catalog
        .write(|w| w.create_site(tenant, "site", &[7; 32]))
        .unwrap();
    BlobOwner { tenant, site }
}

fn packs(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub");
    g.sample_size(10)
        .throughput(Throughput::Bytes((BLOB * BLOBS) as u64));
    let sample = blobs(0);
    g.bench_function("encode pack (16 MiB)", |b| {
        b.iter(|| encode_pack("bench", "site", &sample).unwrap().bytes.len())
    });

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let catalog: Arc<dyn Catalog> =
        Arc::new(SqliteCatalog::open(dir.path().join("catalog.db")).unwrap());
    let owner = bench_owner(&*catalog);
    let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::open(dir.path().join("pool")).unwrap());
    let packer = runtime
        .block_on(async { Packer::start(store, catalog, "local".into(), PackerConfig::default()) });
    let mut seed = 1;
    g.bench_function("store durably (pack + fsync + catalog, 16 MiB)", |b| {
        b.iter(|| {
            seed += 1;
            let batch = blobs(seed);
            runtime.block_on(packer.store(owner, batch)).unwrap()
        })
    });
    g.finish();
}

/// Ids in a commit of the small-files benchmark: one chunk per file.
const REFERENCES: usize = 50_000;

/// The commit-time check that every referenced chunk is stored: one
/// lookup per id, the ids sorted as the agent sends them.
fn reference_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db")).unwrap();
    let owner = bench_owner(&catalog);
    let mut ids: Vec<BlobId> = (0..REFERENCES as u64)
        .map(|i| BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    for (n, pack) in ids.chunks(1000).enumerate() {
        let hash = *blake3::hash(&n.to_le_bytes()).as_bytes();
        let record = PackRecord {
            name: hex::encode(hash),
            pool: "local".into(),
            size: 4096 * pack.len() as u64,
            hash,
        };
        let entries: Vec<_> = (0u64..)
            .zip(pack)
            .map(|(i, id)| {
                let entry = PackEntry {
                    id: *id,
                    kind: BlobKind::Data,
                    flags: 0,
                    header_id: BlobId([7; 32]),
                    offset: 4096 * i,
                    length: 4096,
                };
                (owner, entry)
            })
            .collect();
        catalog.record_pack(&record, &entries).unwrap();
    }
    ids.sort_unstable();
    let mut g = c.benchmark_group("hub");
    g.sample_size(20)
        .throughput(Throughput::Elements(REFERENCES as u64));
    g.bench_function("reference check (50,000 stored ids)", |b| {
        b.iter(|| assert!(catalog.missing_blobs(owner, &ids).unwrap().is_empty()))
    });
    g.finish();
}

criterion_group!(benches, packs, reference_check);
criterion_main!(benches);
