//! Each stage of the backup pipeline alone, beside the machine's raw limits
//! (memcpy, BLAKE3 unkeyed, sequential read, fsync'd write), so it shows
//! which stage bounds the pipeline. `cargo bench -p ferry-agent`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_agent::blob_codec::{compressed, seal_chunk};
use ferry_agent::chunker::{ChunkBuffer, ChunkerParams};
use ferry_crypto::TenantKeys;
use ferry_proto::{BlobId, BlobKind};

const DATA: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

/// A xorshift generator: the data only has to be the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Like the benchmark's "mixed" set (`mkdata.py`): a third text-like, the
/// rest random. The text is the same kind of word soup: 8,000 words of 2-10
/// letters drawn with Zipf weights (1 / rank^1.1). zstd finds a match every
/// few bytes in it, which makes it several times slower to compress than a
/// handful of repeated words would be.
fn mixed_data(len: usize) -> Vec<u8> {
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let words: Vec<Vec<u8>> = (0..8000)
        .map(|i| {
            let letters = 2 + rng.next() % 9;
            let mut word: Vec<u8> = (0..letters)
                .map(|_| b'a' + (rng.next() % 26) as u8)
                .collect();
            word.extend_from_slice(match (i % 13, i % 7) {
                (0, _) => b"\n",
                (_, 0) => b". ",
                _ => b" ",
            });
            word
        })
        .collect();
    let mut cumulative = Vec::with_capacity(words.len());
    let mut total = 0.0;
    for rank in 0..words.len() {
        total += 1.0 / ((rank + 1) as f64).powf(1.1);
        cumulative.push(total);
    }
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if out.len() % (3 * CHUNK) < CHUNK {
            let pick = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
            let rank = cumulative
                .partition_point(|&c| c < pick)
                .min(words.len() - 1);
            out.extend_from_slice(&words[rank]);
        } else {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn stages(c: &mut Criterion) {
    let keys = TenantKeys::generate();
    let (gear, gear_ls) = keys.gear_tables();
    let params = ChunkerParams::new(gear, gear_ls);
    let data = mixed_data(DATA);
    let sealer = keys.sealer().unwrap();

    let mut g = c.benchmark_group("stage");
    g.sample_size(10).throughput(Throughput::Bytes(DATA as u64));
    g.bench_function("chunk (keyed FastCDC)", |b| {
        let mut buffer = ChunkBuffer::new(&params);
        b.iter(|| {
            let mut n = 0usize;
            buffer
                .chunk_reader(&data[..], DATA as u64, |c| -> Result<(), ()> {
                    n += c.len();
                    Ok(())
                })
                .unwrap();
            black_box(n)
        })
    });
    g.bench_function("hash (keyed BLAKE3)", |b| {
        b.iter(|| {
            data.chunks(CHUNK)
                .map(|c| keys.chunk_id(c)[0])
                .fold(0u8, |a, x| a ^ x)
        })
    });
    g.bench_function("compress (zstd 1 or 3 by size, random data skipped)", |b| {
        b.iter(|| {
            data.chunks(CHUNK)
                .map(|c| compressed(c).map_or(0, |z| z.len()))
                .sum::<usize>()
        })
    });
    g.bench_function("encrypt (age payload)", |b| {
        b.iter(|| {
            data.chunks(CHUNK)
                .map(|c| sealer.seal(c).unwrap().len())
                .sum::<usize>()
        })
    });
    g.bench_function("seal (compress + encrypt)", |b| {
        b.iter(|| {
            data.chunks(CHUNK)
                .map(|c| {
                    seal_chunk(&sealer, BlobId::default(), BlobKind::Data, c)
                        .unwrap()
                        .data
                        .len()
                })
                .sum::<usize>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("limit");
    g.sample_size(10).throughput(Throughput::Bytes(DATA as u64));
    let mut target = vec![0u8; DATA];
    g.bench_function("memcpy", |b| {
        b.iter(|| target.copy_from_slice(black_box(&data)))
    });
    g.bench_function("BLAKE3 unkeyed", |b| {
        b.iter(|| blake3::hash(black_box(&data)))
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("read.bin");
    std::fs::write(&file, &data).unwrap();
    g.bench_function("sequential read (page cache)", |b| {
        let mut buf = vec![0u8; 1 << 20];
        b.iter(|| {
            let mut f = std::fs::File::open(&file).unwrap();
            let mut n = 0;
            loop {
                match f.read(&mut buf).unwrap() {
                    0 => break n,
                    k => n += k,
                }
            }
        })
    });
    g.bench_function("durable write (write + fsync)", |b| {
        let path = dir.path().join("write.bin");
        b.iter(|| {
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
