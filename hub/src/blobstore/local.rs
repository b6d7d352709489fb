//! A pool in a local directory.
//!
//! Object `a/b/c` is the file `<root>/a/b/c`. Writes go to a temporary file
//! (`.tmp-<random>`) in the object's directory, are fsynced, renamed over the
//! final name and the directory is fsynced, so an object is never seen half
//! written and survives a crash once `put` returns. All file I/O runs on
//! Tokio's blocking pool.
//!
//! Unlike S3, a name cannot be both an object and a prefix of other objects
//! (`a` and `a/b`): a file and a directory cannot share a path. Pool layouts
//! (`packs/xx/<name>.pack`) never need that.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_direct::DirectReader;

use super::{BlobStore, BlobStoreError, BoxFuture, validate_name};

/// A [`BlobStore`] in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: Arc<PathBuf>,
    /// Fan-out directories known to be durable: created and their parent
    /// fsynced by this process, or found fsynced once. A put into any other
    /// directory fsyncs its parent first, even when the directory exists:
    /// it may be another writer's, created a moment ago and not yet synced.
    durable_dirs: Arc<std::sync::Mutex<std::collections::HashSet<PathBuf>>>,
}

impl LocalDirStore {
    /// Opens the store at `root`, creating the directory if needed.
    ///
    /// # Errors
    ///
    /// [`BlobStoreError::Io`] if the directory cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlobStoreError> {
        let root = root.into();
        // Packs are ciphertext, but who stores what, and how much, is the
        // hub's to know: owner only.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(io_err("create store directory", &root))?;
        Ok(Self {
            root: Arc::new(root),
            durable_dirs: Arc::default(),
        })
    }

    /// Removes temp files (`.tmp-*`) last written more than `older_than`
    /// ago: what a crash between writing and renaming leaves. Readers
    /// never see them; they only take space. Returns how many went.
    /// Blocks: call it from a blocking thread.
    ///
    /// # Errors
    /// A directory cannot be listed or a temp file cannot be removed.
    pub fn sweep_temp_files(
        &self,
        older_than: std::time::Duration,
    ) -> Result<usize, BlobStoreError> {
        let mut swept = 0;
        let mut dirs = vec![self.root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).map_err(io_err("list directory", &dir))? {
                let entry = entry.map_err(io_err("list directory", &dir))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(io_err("stat", &path))?;
                if meta.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let is_temp = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(".tmp-"));
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= older_than);
                if meta.is_file() && is_temp && old {
                    fs::remove_file(&path).map_err(io_err("remove temp file", &path))?;
                    swept += 1;
                }
            }
        }
        Ok(swept)
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps a validated object name to its path under the root.
    fn path_for(&self, name: &str) -> Result<PathBuf, BlobStoreError> {
        validate_name(name)?;
        Ok(name
            .split('/')
            .fold(self.root.to_path_buf(), |p, c| p.join(c)))
    }

    /// Runs blocking file I/O on Tokio's blocking pool.
    async fn blocking<T, F>(op: &'static str, name: &str, f: F) -> Result<T, BlobStoreError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, BlobStoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BlobStoreError::Backend {
                op,
                name: name.to_owned(),
                source: Box::new(e),
            })?
    }
}

impl BlobStore for LocalDirStore {
    fn put<'a>(
        &'a self,
        name: &'a str,
        data: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            let path = self.path_for(name)?;
            let root = Arc::clone(&self.root);
            let durable = Arc::clone(&self.durable_dirs);
            Self::blocking("put", name, move || {
                put_blocking(&root, &durable, &path, &data)
            })
            .await
        })
    }

    fn get<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        Box::pin(async move {
            let path = self.path_for(name)?;
            let owned = name.to_owned();
            Self::blocking("get", name, move || {
                let (mut file, size) = open_object(&owned, &path)?;
                let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                file.read_to_end(&mut buf).map_err(io_err("read", &path))?;
                Ok(buf)
            })
            .await
        })
    }

    fn get_range<'a>(
        &'a self,
        name: &'a str,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, BlobStoreError>> {
        Box::pin(async move {
            let path = self.path_for(name)?;
            let owned = name.to_owned();
            Self::blocking("get_range", name, move || {
                get_range_blocking(&owned, &path, offset, len)
            })
            .await
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<String>, BlobStoreError>> {
        Box::pin(async move {
            let root = Arc::clone(&self.root);
            let owned_prefix = prefix.to_owned();
            Self::blocking("list", prefix, move || {
                let mut names = Vec::new();
                list_dir(&root, "", &owned_prefix, &mut names)?;
                names.sort();
                Ok(names)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), BlobStoreError>> {
        Box::pin(async move {
            let path = self.path_for(name)?;
            Self::blocking("delete", name, move || match fs::remove_file(&path) {
                Ok(()) => sync_parent(&path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err("delete", &path)(e)),
            })
            .await
        })
    }

    fn size<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u64, BlobStoreError>> {
        Box::pin(async move {
            let path = self.path_for(name)?;
            let owned = name.to_owned();
            Self::blocking("size", name, move || Ok(open_object(&owned, &path)?.1)).await
        })
    }
}

/// Writes `data` to `path` atomically and durably (see the module docs).
fn put_blocking(
    root: &Path,
    durable: &std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    path: &Path,
    data: &[u8],
) -> Result<(), BlobStoreError> {
    let dir = path.parent().unwrap_or(root);
    let known = durable
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .contains(dir);
    if !known {
        create_dirs_durably(root, dir)?;
        durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dir.to_path_buf());
    }

    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        // Past the page cache where possible: see ferry_direct.
        let file = ferry_direct::write_new_file(&tmp, 0o600, data)
            .map_err(io_err("write temp file", &tmp))?;
        file.sync_all().map_err(io_err("fsync temp file", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename temp file to", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: the temp file is invisible to readers either way.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and any missing ancestors below `root`, and fsyncs the
/// parent of each, so the directories survive a crash. A directory that
/// exists gets its parent fsynced too: another writer may have created it
/// a moment ago and not synced it yet.
fn create_dirs_durably(root: &Path, dir: &Path) -> Result<(), BlobStoreError> {
    if dir == root {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(root);
    create_dirs_durably(root, parent)?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(io_err("create directory", dir)(e)),
    }
    sync_dir(parent)
}

/// Opens object `name` at `path` and returns it with its size. A directory
/// (a name that is only a prefix of other names) is not an object, as on S3.
fn open_object(name: &str, path: &Path) -> Result<(File, u64), BlobStoreError> {
    let file = File::open(path).map_err(|e| not_found_or(e, name, "open", path))?;
    let size = object_size(name, path, &file)?;
    Ok((file, size))
}

/// The size of the open object; a directory is not an object.
fn object_size(name: &str, path: &Path, file: &File) -> Result<u64, BlobStoreError> {
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if !meta.is_file() {
        return Err(BlobStoreError::NotFound {
            name: name.to_owned(),
        });
    }
    Ok(meta.len())
}

fn get_range_blocking(
    name: &str,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, BlobStoreError> {
    // Past the page cache where possible, as packs are written (ferry_direct).
    let reader = DirectReader::open(path).map_err(|e| not_found_or(e, name, "open", path))?;
    let size = object_size(name, path, reader.file())?;
    let out_of_range = || BlobStoreError::OutOfRange {
        name: name.to_owned(),
        offset,
        len,
        size,
    };
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(out_of_range());
    }
    let len_usize = usize::try_from(len).map_err(|_| out_of_range())?;
    reader.read_exact_at(offset, len_usize).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            // The file shrank between the size check and the read.
            out_of_range()
        } else {
            io_err("read", path)(e)
        }
    })
}

/// Appends to `out` the names of the files under `dir` (whose object-name
/// prefix is `rel`) that start with `prefix`. Skips dot entries (temp files)
/// and anything that is not a valid object name.
fn list_dir(
    dir: &Path,
    rel: &str,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<(), BlobStoreError> {
    let entries = fs::read_dir(dir).map_err(io_err("list directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(dir = %dir.display(), "skipping a non-UTF-8 entry in a blob store");
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let name = if rel.is_empty() {
            file_name
        } else {
            format!("{rel}/{file_name}")
        };
        // Only descend where some name below could still match the prefix.
        let could_match = name.starts_with(prefix) || prefix.starts_with(&format!("{name}/"));
        if !could_match {
            continue;
        }
        let file_type = entry.file_type().map_err(io_err("stat", &entry.path()))?;
        if file_type.is_dir() {
            list_dir(&entry.path(), &name, prefix, out)?;
        } else if file_type.is_file() && name.starts_with(prefix) && validate_name(&name).is_ok() {
            out.push(name);
        }
    }
    Ok(())
}

fn sync_parent(path: &Path) -> Result<(), BlobStoreError> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Fsyncs a directory so renames and new entries in it are durable.
fn sync_dir(dir: &Path) -> Result<(), BlobStoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BlobStoreError {
    let path = path.to_path_buf();
    move |source| BlobStoreError::Io { op, path, source }
}

fn not_found_or(e: io::Error, name: &str, op: &'static str, path: &Path) -> BlobStoreError {
    if e.kind() == io::ErrorKind::NotFound {
        BlobStoreError::NotFound {
            name: name.to_owned(),
        }
    } else {
        io_err(op, path)(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobstore::conformance;

    #[tokio::test]
    async fn conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path().join("pool")).unwrap();
        conformance::run_all(&store).await;
    }

    #[tokio::test]
    async fn conformance_suite_via_arc_dyn() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn BlobStore> = Arc::new(LocalDirStore::open(dir.path()).unwrap());
        conformance::run_all(store.as_ref()).await;
    }

    #[tokio::test]
    async fn put_leaves_no_temp_files_and_maps_names_to_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        store
            .put("packs/ab/abcd.pack", b"x".to_vec())
            .await
            .unwrap();
        let packs = dir.path().join("packs").join("ab");
        let names: Vec<_> = fs::read_dir(&packs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["abcd.pack"]);
        assert_eq!(fs::read(packs.join("abcd.pack")).unwrap(), b"x");
    }

    #[tokio::test]
    async fn old_temp_files_are_swept_and_objects_and_new_temp_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        store.put("a/b", b"1".to_vec()).await.unwrap();
        let (old, new) = (dir.path().join("a/.tmp-old"), dir.path().join("a/.tmp-new"));
        fs::write(&old, b"partial").unwrap();
        fs::write(&new, b"being written").unwrap();
        let hour_ago = filetime::FileTime::from_system_time(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        );
        filetime::set_file_mtime(&old, hour_ago).unwrap();
        let swept = store
            .sweep_temp_files(std::time::Duration::from_secs(600))
            .unwrap();
        assert_eq!(swept, 1);
        assert!(!old.exists() && new.exists());
        assert_eq!(store.get("a/b").await.unwrap(), b"1");
    }

    #[tokio::test]
    async fn list_skips_stray_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        store.put("a/b", b"1".to_vec()).await.unwrap();
        // A crash between create and rename leaves a temp file behind.
        fs::write(dir.path().join("a").join(".tmp-0123"), b"partial").unwrap();
        assert_eq!(store.list("").await.unwrap(), ["a/b"]);
    }
}
