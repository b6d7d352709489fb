//! The end-to-end tests' dataset, made here from a seed so that a fresh
//! clone needs nothing beside it. Same shape and purpose as the benchmark's
//! datasets, written under one output directory:
//!
//! - `mixed`: files of log-normal sizes (median 256 KiB, clipped to
//!   1 KiB..64 MiB, and to an eighth of the total) up to a total size, in
//!   nested directories; about 30 % of the bytes are text (a Zipf-weighted
//!   word soup that zstd shrinks about threefold), the rest random bytes
//!   that do not compress.
//! - `edit`: `mixed` after a round of edits: ~5 % of its files get 1-3
//!   insertions or deletions inside their middle half (so content shifts,
//!   which content-defined chunking must absorb) and a new mtime, and ~2 %
//!   as many new files appear under `new/`. Every other file keeps `mixed`'s
//!   bytes and mtime, so a sync that compares mtimes rewrites only the edits.
//! - `small`: many files of 1-16 KiB (log-uniform) three directories deep,
//!   about 30 % of them text.
//! - `<tree>.manifest`: `<tree> files=N bytes=B blake3=H`, H over every
//!   file's path, size, mtime and bytes in path order (the benchmark
//!   harness reads `bytes=` from it).
//!
//! Every mtime is fixed and every byte comes from the seed, so the same
//! parameters give identical trees; that is what lets a target dir keep one
//! copy for every test process.

#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Bumped whenever a change makes different bytes for the same parameters,
/// so a dataset cached by an older generator is not reused.
pub const GENERATOR_VERSION: u32 = 1;

/// mtime of every file of `mixed` and `small` (plus the file's index).
pub const BASE_MTIME: u64 = 1_700_000_000;
/// mtime of the files `edit` changes or adds (plus an index).
pub const EDIT_MTIME: u64 = 1_710_000_000;

/// Bounds of a `mixed` file (and of a new file of `edit`).
pub const MIXED_MIN: u64 = KIB;
pub const MIXED_MAX: u64 = 64 * MIB;
const MIXED_MEDIAN: f64 = (256 * KIB) as f64;
/// Spread of ln(size): with the 256 KiB median, most files are 10 KiB-10 MiB
/// and a few are the 64 MiB maximum, so a few files hold most bytes.
const MIXED_SIGMA: f64 = 2.0;
/// Bounds of a `small` file.
pub const SMALL_MIN: u64 = KIB;
pub const SMALL_MAX: u64 = 16 * KIB;
/// How far a single insertion or deletion of `edit` reaches.
pub const EDIT_MAX_BYTES: usize = 4096;

/// What to make.
#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    /// Total size of `mixed` (it ends less than 1 KiB short of it).
    pub mixed_bytes: u64,
    pub small_files: usize,
    /// Share of text: of `mixed`'s bytes, of `small`'s files.
    pub text_share: f64,
    /// Share of `mixed`'s files that `edit` changes (at least one).
    pub edit_modify: f64,
    /// New files in `edit`, as a share of `mixed`'s file count (at least one).
    pub edit_new: f64,
}

impl Params {
    /// The quick dataset the end-to-end tests use: 64 MiB of `mixed`, 2000
    /// small files (what `mkdata.py --mixed-size 64M --small-files 2000` of
    /// the benchmarks makes, in shape).
    pub fn quick() -> Params {
        Params {
            seed: 42,
            mixed_bytes: 64 * MIB,
            small_files: 2000,
            text_share: 0.30,
            edit_modify: 0.05,
            edit_new: 0.02,
        }
    }
}

/// What [`generate`] made, per tree: files and bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub mixed: (usize, u64),
    pub edit: (usize, u64),
    pub small: (usize, u64),
    /// Files of `mixed` that `edit` changed, and files it added.
    pub edited: usize,
    pub added: usize,
}

/// Makes `mixed`, `edit`, `small` and their manifests under `out`, which
/// must not hold them yet (an existing tree is an error, not overwritten).
pub fn generate(out: &Path, params: &Params) -> io::Result<Summary> {
    if !(0.0..=1.0).contains(&params.text_share) {
        return Err(invalid(format!(
            "text_share must be within 0..=1, not {}",
            params.text_share
        )));
    }
    let words = Words::new(params.seed);
    let mixed = plan_mixed(params);
    let sizes: Vec<u64> = mixed.iter().map(|f| f.size).collect();
    let edits = plan_edit(params, &sizes);
    let mut summary = Summary {
        edited: edits.changed.len(),
        added: edits.added.len(),
        ..Summary::default()
    };

    for tree in ["mixed", "edit", "small"] {
        create_new_dir(&out.join(tree))?;
    }
    for (index, file) in mixed.iter().enumerate() {
        let bytes = content(&words, params.seed, "mixed", index, file.size, file.text);
        write_file(&out.join("mixed").join(&file.path), &bytes, file.mtime)?;
        match edits.changed.iter().position(|c| c.file == index) {
            None => write_file(&out.join("edit").join(&file.path), &bytes, file.mtime)?,
            Some(k) => {
                let change = &edits.changed[k];
                let edited = apply_edits(&bytes, change, params.seed);
                write_file(&out.join("edit").join(&file.path), &edited, change.mtime)?;
            }
        }
    }
    for (k, file) in edits.added.iter().enumerate() {
        let bytes = content(&words, params.seed, "new", k, file.size, file.text);
        write_file(&out.join("edit").join(&file.path), &bytes, file.mtime)?;
    }
    for (index, file) in plan_small(params).iter().enumerate() {
        let bytes = content(&words, params.seed, "small", index, file.size, file.text);
        write_file(&out.join("small").join(&file.path), &bytes, file.mtime)?;
    }

    summary.mixed = write_manifest(out, "mixed")?;
    summary.edit = write_manifest(out, "edit")?;
    summary.small = write_manifest(out, "small")?;
    Ok(summary)
}

// ---------------------------------------------------------------- plans ---

/// One file to write: where, how big, which kind of bytes, which mtime.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    path: String,
    size: u64,
    text: bool,
    mtime: u64,
}

fn plan_mixed(params: &Params) -> Vec<Planned> {
    let mut rng = Rng::new(params.seed, "mixed-plan", 0);
    let mut sizes = Vec::new();
    let mut written = 0u64;
    let largest = mixed_largest(params.mixed_bytes);
    // Files below the minimum are not made: the tree may end that short.
    while params.mixed_bytes - written >= MIXED_MIN {
        let size = lognormal(&mut rng, MIXED_MEDIAN, MIXED_SIGMA, MIXED_MIN, largest)
            .min(params.mixed_bytes - written);
        sizes.push(size);
        written += size;
    }
    // A few large files hold most bytes, so a coin per file would land far
    // from the share. Instead, in a random order, a file becomes text while
    // it still fits under the share's bytes: what is left short is smaller
    // than any file that was left random, since each was turned down when
    // more room was left.
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    shuffle(&mut rng, &mut order, sizes.len());
    let room = (written as f64 * params.text_share) as u64;
    let mut text = vec![false; sizes.len()];
    let mut text_written = 0;
    for index in order {
        if text_written + sizes[index] <= room {
            text[index] = true;
            text_written += sizes[index];
        }
    }
    sizes
        .into_iter()
        .zip(text)
        .enumerate()
        .map(|(index, (size, text))| Planned {
            path: mixed_path(index),
            size,
            text,
            mtime: BASE_MTIME + index as u64,
        })
        .collect()
}

/// The largest file of a `mixed` tree of `total` bytes: 64 MiB, or an
/// eighth of the total if less, so that in a small tree (the tests' 64 MiB)
/// no one or two random files hold most bytes and the text share can be met.
pub fn mixed_largest(total: u64) -> u64 {
    (total / 8).clamp(MIXED_MIN, MIXED_MAX)
}

/// Puts `count` distinct items, picked at random, at the front of `items`
/// (a partial Fisher-Yates shuffle; all of them for `items.len()`).
fn shuffle(rng: &mut Rng, items: &mut [usize], count: usize) {
    for i in 0..count.min(items.len()) {
        let j = i + rng.below((items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
}

/// A sixth of the files at the top, the rest one or two levels down.
fn mixed_path(index: usize) -> String {
    match index % 6 {
        0 => format!("f{index:05}.dat"),
        1 | 2 => format!("d{}/f{index:05}.dat", index % 4),
        _ => format!("d{}/e{}/f{index:05}.dat", index % 4, (index / 4) % 3),
    }
}

fn plan_small(params: &Params) -> Vec<Planned> {
    let mut rng = Rng::new(params.seed, "small-plan", 0);
    let (lo, hi) = ((SMALL_MIN as f64).ln(), (SMALL_MAX as f64).ln());
    (0..params.small_files)
        .map(|index| {
            let size = ((lo + (hi - lo) * rng.unit()).exp() as u64).clamp(SMALL_MIN, SMALL_MAX);
            let text = rng.unit() < params.text_share;
            // About a hundred files per leaf directory, three levels deep.
            let leaf = index / 100;
            let path = format!(
                "p{}/q{}/r{}/f{index:06}.{}",
                leaf % 5,
                (leaf / 5) % 4,
                leaf / 20,
                if text { "txt" } else { "bin" }
            );
            Planned {
                path,
                size,
                text,
                mtime: BASE_MTIME + index as u64,
            }
        })
        .collect()
}

/// One insertion (of random bytes) or deletion, at a byte offset of the
/// file as the edits before it left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Insert { at: usize, len: usize },
    Delete { at: usize, len: usize },
}

#[derive(Debug, Clone)]
struct Changed {
    /// Index into `mixed`'s plan.
    file: usize,
    edits: Vec<Edit>,
    mtime: u64,
}

#[derive(Debug, Clone)]
struct EditPlan {
    changed: Vec<Changed>,
    added: Vec<Planned>,
}

/// Plans `edit` from the sizes of `mixed`'s files.
fn plan_edit(params: &Params, sizes: &[u64]) -> EditPlan {
    let mut rng = Rng::new(params.seed, "edit-plan", 0);
    let mixed = sizes.len();
    let count = |share: f64| ((mixed as f64 * share).round() as usize).clamp(1, mixed.max(1));
    let modified = if mixed == 0 {
        0
    } else {
        count(params.edit_modify)
    };
    let new = count(params.edit_new);

    let mut order: Vec<usize> = (0..mixed).collect();
    shuffle(&mut rng, &mut order, modified);
    let mut picked = order[..modified].to_vec();
    picked.sort_unstable();

    let changed = picked
        .into_iter()
        .enumerate()
        .map(|(k, file)| {
            let mut len = sizes[file] as usize;
            let edits = (0..rng.range(1, 3))
                .map(|_| {
                    // Within the middle half, so the first and last quarters
                    // of the file (as it stands) are kept.
                    let (lo, hi) = (len / 4, 3 * len / 4);
                    if rng.unit() < 0.5 {
                        let n = rng.range(1, EDIT_MAX_BYTES as u64) as usize;
                        let at = rng.range(lo as u64, hi as u64) as usize;
                        len += n;
                        Edit::Insert { at, len: n }
                    } else {
                        // At most a quarter of the file, so it stays in the half.
                        let n = rng.range(1, EDIT_MAX_BYTES.min(len / 4).max(1) as u64) as usize;
                        let at = rng.range(lo as u64, hi.saturating_sub(n).max(lo) as u64) as usize;
                        len -= n;
                        Edit::Delete { at, len: n }
                    }
                })
                .collect();
            Changed {
                file,
                edits,
                mtime: EDIT_MTIME + k as u64,
            }
        })
        .collect();

    let added = (0..new)
        .map(|k| Planned {
            path: format!("new/n{k:05}.dat"),
            size: lognormal(
                &mut rng,
                MIXED_MEDIAN,
                MIXED_SIGMA,
                MIXED_MIN,
                mixed_largest(params.mixed_bytes),
            ),
            text: rng.unit() < params.text_share,
            mtime: EDIT_MTIME + 100_000 + k as u64,
        })
        .collect();
    EditPlan { changed, added }
}

fn apply_edits(original: &[u8], change: &Changed, seed: u64) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for (j, edit) in change.edits.iter().enumerate() {
        match *edit {
            Edit::Insert { at, len } => {
                let mut inserted = vec![0; len];
                Rng::new(seed, "edit-insert", (change.file * 4 + j) as u64).fill(&mut inserted);
                bytes.splice(at..at, inserted);
            }
            Edit::Delete { at, len } => {
                bytes.drain(at..at + len);
            }
        }
    }
    bytes
}

// -------------------------------------------------------------- content ---

/// A file's bytes, from a stream of its own: a file does not change when
/// another one's size or kind does.
fn content(words: &Words, seed: u64, tree: &str, index: usize, size: u64, text: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed, tree, index as u64);
    let mut bytes = vec![0; size as usize];
    if text {
        words.fill(&mut rng, &mut bytes);
    } else {
        rng.fill(&mut bytes);
    }
    bytes
}

/// A vocabulary of made-up words with Zipf weights (the n-th word is drawn
/// about 1/n^1.1 as often as the first), so text repeats the way prose and
/// logs do and compresses about as well.
struct Words {
    words: Vec<Vec<u8>>,
    /// Running sum of the integer weights, for a binary search per draw.
    cumulative: Vec<u64>,
}

impl Words {
    const COUNT: usize = 8000;

    fn new(seed: u64) -> Words {
        let mut rng = Rng::new(seed, "words", 0);
        let mut words = Vec::with_capacity(Self::COUNT);
        let mut cumulative = Vec::with_capacity(Self::COUNT);
        let mut sum = 0u64;
        for rank in 0..Self::COUNT {
            let mut word: Vec<u8> = (0..rng.range(2, 10))
                .map(|_| b'a' + rng.below(26) as u8)
                .collect();
            // Punctuation and line breaks at fixed ranks, so some words
            // always end a sentence or a line.
            word.extend_from_slice(match rank {
                r if r % 13 == 0 => b"\n",
                r if r % 7 == 0 => b". ",
                r if r % 5 == 0 => b", ",
                _ => b" ",
            });
            words.push(word);
            sum += (1e9 / ((rank + 1) as f64).powf(1.1)) as u64 + 1;
            cumulative.push(sum);
        }
        Words { words, cumulative }
    }

    fn fill(&self, rng: &mut Rng, out: &mut [u8]) {
        let total = self.cumulative.last().copied().unwrap_or(1);
        let mut at = 0;
        while at < out.len() {
            let draw = rng.below(total);
            let rank = self.cumulative.partition_point(|&c| c <= draw);
            let word = &self.words[rank.min(self.words.len() - 1)];
            let n = word.len().min(out.len() - at);
            out[at..at + n].copy_from_slice(&word[..n]);
            at += n;
        }
    }
}

/// True when every byte could be the word soup's: letters, space, comma,
/// full stop, newline. Random bytes of more than a few bytes never are.
pub fn looks_like_text(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|&b| b.is_ascii_lowercase() || matches!(b, b' ' | b',' | b'.' | b'\n'))
}

// ------------------------------------------------------------------ rng ---

/// SplitMix64: a few lines, fast, and statistically fine for test data
/// (never for keys). Each stream is named by (seed, label, index).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, label: &str, index: u64) -> Rng {
        let mut state = mix(seed ^ 0x6a09_e667_f3bc_c908);
        for byte in label.bytes() {
            state = mix(state ^ u64::from(byte));
        }
        Rng(mix(state ^ index))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (0 for n = 0), by multiply-and-shift: no modulo bias
    /// worth the name at these ranges.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [lo, hi], both included (lo when hi < lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Standard normal, by Box-Muller.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln(0) is never taken
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut pieces = out.chunks_exact_mut(8);
        for piece in &mut pieces {
            piece.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = pieces.into_remainder();
        let last = self.next_u64().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn lognormal(rng: &mut Rng, median: f64, sigma: f64, lo: u64, hi: u64) -> u64 {
    // `as` saturates: a huge draw becomes u64::MAX, then the maximum.
    ((median.ln() + sigma * rng.normal()).exp() as u64).clamp(lo, hi)
}

// ---------------------------------------------------------------- files ---

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Adds the path to an I/O error, which names none by itself.
fn at(path: &Path, what: &str) -> impl FnOnce(io::Error) -> io::Error {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |e| io::Error::new(e.kind(), format!("{what} {path}: {e}"))
}

fn create_new_dir(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(at(parent, "creating"))?;
    }
    fs::create_dir(path).map_err(at(path, "creating"))
}

fn write_file(path: &Path, bytes: &[u8], mtime: u64) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(at(parent, "creating"))?;
    }
    let mut file = fs::File::create_new(path).map_err(at(path, "creating"))?;
    file.write_all(bytes).map_err(at(path, "writing"))?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
    file.set_times(fs::FileTimes::new().set_modified(when))
        .map_err(at(path, "setting the mtime of"))
}

/// Every regular file below `root`, as sorted paths relative to it.
pub fn list_files(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(at(&dir, "listing"))? {
            let entry = entry.map_err(at(&dir, "listing"))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(at(&path, "reading the type of"))?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                out.push(rel.to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `<tree>.manifest` beside the tree; returns its files and bytes.
fn write_manifest(out: &Path, tree: &str) -> io::Result<(usize, u64)> {
    let root = out.join(tree);
    let mut hash = blake3::Hasher::new();
    let mut total = 0;
    let files = list_files(&root)?;
    for rel in &files {
        let path = root.join(rel);
        let meta = fs::metadata(&path).map_err(at(&path, "reading the metadata of"))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        hash.update(format!("{}\0{}\0{mtime}\0", rel.display(), meta.len()).as_bytes());
        hash.update(&fs::read(&path).map_err(at(&path, "reading"))?);
        total += meta.len();
    }
    let line = format!(
        "{tree} files={} bytes={total} blake3={}\n",
        files.len(),
        hash.finalize().to_hex()
    );
    let manifest = out.join(format!("{tree}.manifest"));
    fs::write(&manifest, line).map_err(at(&manifest, "writing"))?;
    Ok((files.len(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Path → (bytes, mtime in seconds) of every file below `root`.
    fn read_tree(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u64)> {
        list_files(root)
            .unwrap()
            .into_iter()
            .map(|rel| {
                let path = root.join(&rel);
                let mtime = fs::metadata(&path)
                    .unwrap()
                    .modified()
                    .unwrap()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                (rel, (fs::read(&path).unwrap(), mtime))
            })
            .collect()
    }

    fn small_params() -> Params {
        Params {
            mixed_bytes: 8 * MIB,
            small_files: 300,
            ..Params::quick()
        }
    }

    #[test]
    fn the_same_seed_makes_identical_trees_and_another_seed_does_not() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let params = small_params();
        let first = generate(a.path(), &params).unwrap();
        let second = generate(b.path(), &params).unwrap();
        assert_eq!(first, second);
        for tree in ["mixed", "edit", "small"] {
            assert_eq!(
                read_tree(&a.path().join(tree)),
                read_tree(&b.path().join(tree)),
                "{tree}"
            );
            let manifest = format!("{tree}.manifest");
            assert_eq!(
                fs::read_to_string(a.path().join(&manifest)).unwrap(),
                fs::read_to_string(b.path().join(&manifest)).unwrap()
            );
        }
        generate(c.path(), &Params { seed: 7, ..params }).unwrap();
        assert_ne!(
            read_tree(&a.path().join("mixed")),
            read_tree(&c.path().join("mixed"))
        );
    }

    #[test]
    fn an_existing_tree_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("mixed")).unwrap();
        let err = generate(dir.path(), &small_params()).unwrap_err();
        assert!(err.to_string().contains("mixed"), "{err}");
    }

    /// The quick dataset itself: sizes, text share, the edit tree's
    /// changes, and the manifests.
    #[test]
    fn the_quick_dataset_has_the_promised_shape() {
        let dir = tempfile::tempdir().unwrap();
        let params = Params::quick();
        let started = std::time::Instant::now();
        let summary = generate(dir.path(), &params).unwrap();
        println!("{summary:?} in {:?}", started.elapsed());

        let mixed = read_tree(&dir.path().join("mixed"));
        let total: u64 = mixed.values().map(|(b, _)| b.len() as u64).sum();
        assert!(
            total <= params.mixed_bytes && total > params.mixed_bytes - MIXED_MIN,
            "mixed holds {total} bytes"
        );
        assert_eq!(summary.mixed, (mixed.len(), total));
        assert!(mixed.len() >= 10, "only {} files in mixed", mixed.len());
        assert!(
            mixed.keys().any(|p| p.components().count() == 3),
            "nested dirs"
        );
        let (mut text_bytes, mut text_packed) = (0, 0);
        for (path, (bytes, mtime)) in &mixed {
            let size = bytes.len() as u64;
            let largest = mixed_largest(params.mixed_bytes);
            assert!((MIXED_MIN..=largest).contains(&size), "{path:?}: {size}");
            assert!(
                (BASE_MTIME..BASE_MTIME + mixed.len() as u64).contains(mtime),
                "{path:?}: mtime {mtime}"
            );
            // Text compresses well (given room for a dictionary to pay
            // off); random bytes do not at all.
            let packed = zstd::bulk::compress(bytes, 3).unwrap().len() as u64;
            if looks_like_text(bytes) {
                text_bytes += size;
                text_packed += packed;
                if size >= 64 * KIB {
                    assert!(packed * 2 < size, "{path:?}: text only {size} -> {packed}");
                }
            } else {
                assert!(packed >= size, "{path:?}: random {size} -> {packed}");
            }
        }
        let share = text_bytes as f64 / total as f64;
        println!(
            "text: {:.1} % of the bytes, zstd -3 shrinks it {:.2}x",
            100.0 * share,
            text_bytes as f64 / text_packed as f64
        );
        assert!((0.25..=0.35).contains(&share), "text share {share}");

        // edit: the planned number of changed and added files, the rest
        // identical in bytes and mtime.
        let edit = read_tree(&dir.path().join("edit"));
        let expect_changed = ((mixed.len() as f64 * params.edit_modify).round() as usize).max(1);
        let expect_added = ((mixed.len() as f64 * params.edit_new).round() as usize).max(1);
        assert_eq!(
            (summary.edited, summary.added),
            (expect_changed, expect_added)
        );
        let added: Vec<_> = edit.keys().filter(|p| !mixed.contains_key(*p)).collect();
        assert_eq!(added.len(), expect_added, "{added:?}");
        assert!(added.iter().all(|p| p.starts_with("new")), "{added:?}");
        assert!(
            mixed.keys().all(|p| edit.contains_key(p)),
            "edit lost a file"
        );
        let mut changed = 0;
        for (path, (before, mtime_before)) in &mixed {
            let (after, mtime_after) = &edit[path];
            if after == before {
                assert_eq!(mtime_after, mtime_before, "{path:?} unchanged, mtime moved");
                continue;
            }
            changed += 1;
            assert!(*mtime_after >= EDIT_MTIME, "{path:?} changed, mtime kept");
            // Edits stay in the middle half: both ends survive (each edit
            // keeps a quarter of the file as it then stood, and deletions
            // take at most a quarter).
            let keep = before.len() / 16;
            assert_eq!(before[..keep], after[..keep], "{path:?}: start changed");
            assert_eq!(
                before[before.len() - keep..],
                after[after.len() - keep..],
                "{path:?}: end changed"
            );
            let grown = after.len().abs_diff(before.len());
            assert!(grown <= 3 * EDIT_MAX_BYTES, "{path:?}: {grown} bytes");
        }
        assert_eq!(changed, expect_changed);

        // small: the count, the size bounds, about 30 % text files.
        let small = read_tree(&dir.path().join("small"));
        assert_eq!(small.len(), params.small_files);
        assert!(small.keys().all(|p| p.components().count() == 4));
        let text = small.values().filter(|(b, _)| looks_like_text(b)).count();
        let share = text as f64 / small.len() as f64;
        assert!((0.25..=0.35).contains(&share), "small text share {share}");
        for (path, (bytes, _)) in &small {
            let size = bytes.len() as u64;
            assert!((SMALL_MIN..=SMALL_MAX).contains(&size), "{path:?}: {size}");
            let named_text = path.extension().is_some_and(|e| e == "txt");
            assert_eq!(named_text, looks_like_text(bytes), "{path:?}");
        }

        // The manifests, in the harness's format.
        for (tree, (files, bytes)) in [
            ("mixed", summary.mixed),
            ("edit", summary.edit),
            ("small", summary.small),
        ] {
            let line = fs::read_to_string(dir.path().join(format!("{tree}.manifest"))).unwrap();
            assert!(
                line.starts_with(&format!("{tree} files={files} bytes={bytes} blake3=")),
                "{line}"
            );
        }
    }

    #[test]
    fn the_rng_is_fixed_and_its_streams_differ() {
        // Pinned: a change here changes every dataset (bump GENERATOR_VERSION).
        let mut rng = Rng::new(42, "mixed", 0);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [4719952555181128887, 1006338325639054585, 418456625594529518]
        );
        let mut again = Rng::new(42, "mixed", 0);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(42, "mixed", 1).next_u64(), first[0]);
        assert_ne!(Rng::new(42, "small", 0).next_u64(), first[0]);
        let mut r = Rng::new(1, "range", 0);
        for _ in 0..10_000 {
            assert!((3..=5).contains(&r.range(3, 5)));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
