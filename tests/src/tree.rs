//! Describes a directory tree completely (names, kinds, modes, owners,
//! mtimes, symlink targets, hard-link groups and content hashes), so two
//! trees can be compared for a byte- and metadata-identical restore.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `f`ile, `d`irectory, `l`ink, `p`ipe, `c`har or `b`lock device (its
    /// number the content), `s`ocket.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub content: String,
    /// For a further hard link: the first path (in walk order) of its inode.
    pub link_of: Option<Vec<u8>>,
    /// Extended attributes (POSIX ACLs among them), by name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every extended attribute of `path`, not following a symlink.
pub fn xattrs_of(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let Ok(len) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return BTreeMap::new();
    };
    names[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|name| {
            let mut value = vec![0u8; 65536];
            let key = std::ffi::OsStr::from_bytes(name);
            let n = rustix::fs::lgetxattr(path, key, &mut value[..]).unwrap();
            value.truncate(n);
            (name.to_vec(), value)
        })
        .collect()
}

/// Every entry below `root` (not `root` itself), by relative path bytes.
pub fn describe(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    try_describe(root).unwrap()
}

/// As [`describe`], for a tree something else may be changing (a replica
/// being written): an entry gone between its listing and its reading
/// gives the error.
pub fn try_describe(root: &Path) -> std::io::Result<BTreeMap<Vec<u8>, Node>> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<u8>> = HashMap::new();
    walk(root, root, &mut out, &mut inodes)?;
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<Vec<u8>, Node>,
    inodes: &mut HashMap<u64, Vec<u8>>,
) -> std::io::Result<()> {
    let mut items = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    items.sort();
    for path in items {
        let meta = std::fs::symlink_metadata(&path)?;
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = meta.file_type();
        let (kind, content) = if ft.is_dir() {
            ('d', String::new())
        } else if ft.is_symlink() {
            (
                'l',
                String::from_utf8_lossy(std::fs::read_link(&path)?.as_os_str().as_bytes())
                    .into_owned(),
            )
        } else if ft.is_file() {
            (
                'f',
                blake3::hash(&std::fs::read(&path)?).to_hex().to_string(),
            )
        } else {
            use std::os::unix::fs::FileTypeExt;
            match () {
                () if ft.is_fifo() => ('p', String::new()),
                () if ft.is_char_device() => ('c', meta.rdev().to_string()),
                () if ft.is_block_device() => ('b', meta.rdev().to_string()),
                () => ('s', String::new()),
            }
        };
        let link_of = if kind == 'f' && meta.nlink() > 1 {
            match inodes.get(&meta.ino()) {
                Some(first) => Some(first.clone()),
                None => {
                    inodes.insert(meta.ino(), rel.clone());
                    None
                }
            }
        } else {
            None
        };
        out.insert(
            rel,
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                size: if kind == 'f' || kind == 'l' {
                    meta.len()
                } else {
                    0
                },
                content,
                link_of,
                xattrs: xattrs_of(&path),
            },
        );
        if kind == 'd' {
            walk(root, &path, out, inodes)?;
        }
    }
    Ok(())
}

/// Asserts two descriptions are equal, naming the first differences.
pub fn assert_same(
    expected: &BTreeMap<Vec<u8>, Node>,
    actual: &BTreeMap<Vec<u8>, Node>,
    what: &str,
) {
    let mut problems = Vec::new();
    for (path, node) in expected {
        match actual.get(path) {
            None => problems.push(format!("missing {}", String::from_utf8_lossy(path))),
            Some(other) if other != node => problems.push(format!(
                "differs {}: expected {node:?}, got {other:?}",
                String::from_utf8_lossy(path)
            )),
            _ => {}
        }
    }
    for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
        problems.push(format!("unexpected {}", String::from_utf8_lossy(path)));
    }
    assert!(
        problems.is_empty(),
        "{what}: {} differences, first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Total size of regular files below `dir`.
pub fn du(dir: &Path) -> u64 {
    files_with_extension(dir, "")
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Regular files below `dir` whose name ends with `.ext` (every file for "").
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(items) = std::fs::read_dir(&d) else {
            continue;
        };
        for item in items.flatten() {
            let path = item.path();
            match item.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t)
                    if t.is_file()
                        && (ext.is_empty() || path.extension().is_some_and(|e| e == ext)) =>
                {
                    out.push(path)
                }
                _ => {}
            }
        }
    }
    out.sort();
    out
}
