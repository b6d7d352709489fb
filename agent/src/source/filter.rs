//! What a directory source leaves out: exclude patterns (in the config or a
//! file of them), other file systems (`one-file-system`) and cache
//! directories tagged with `CACHEDIR.TAG`.
//!
//! Patterns read as restic's and rsync's do: `*`, `?` and `[...]` match
//! within one path component, `**` across any number; a pattern without a
//! `/` matches a name at any depth, one with a `/` (or starting with one)
//! matches from the source's root; a trailing `/` matches directories
//! only; `!pattern` takes back an earlier exclusion, the last matching
//! pattern deciding. An excluded directory is not walked, so nothing below
//! it can be taken back.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// The first line of a cache directory's tag (https://bford.info/cachedir/).
pub const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("exclude pattern {pattern:?}{}: {reason}", at.as_ref().map(|(f, l)| format!(" ({}, line {l})", f.display())).unwrap_or_default())]
    Pattern {
        pattern: String,
        /// The pattern file and line it came from.
        at: Option<(PathBuf, usize)>,
        reason: String,
    },
    #[error("exclude file {file}: {source}")]
    File {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Rule {
    glob: GlobMatcher,
    dirs_only: bool,
    include: bool,
}

/// A source's exclusions.
#[derive(Default, Clone)]
pub struct Filter {
    rules: Vec<Rule>,
    pub one_file_system: bool,
    pub exclude_caches: bool,
    /// Paths left out whatever the rules say (the agent's own state).
    always: Vec<Vec<u8>>,
}

impl Filter {
    /// The rules of `patterns`, then of `file`'s lines (blank lines and
    /// lines starting with `#` skipped).
    ///
    /// # Errors
    ///
    /// A pattern that does not compile, naming it (and its file and line),
    /// or a file that cannot be read.
    pub fn new(patterns: &[String], file: Option<&Path>) -> Result<Self, FilterError> {
        let mut filter = Self::default();
        for pattern in patterns {
            filter.add(pattern, None)?;
        }
        if let Some(file) = file {
            let text = std::fs::read_to_string(file).map_err(|source| FilterError::File {
                file: file.to_path_buf(),
                source,
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim_end();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                filter.add(line, Some((file.to_path_buf(), n + 1)))?;
            }
        }
        Ok(filter)
    }

    fn add(&mut self, pattern: &str, at: Option<(PathBuf, usize)>) -> Result<(), FilterError> {
        let bad = |reason: &str| FilterError::Pattern {
            pattern: pattern.to_owned(),
            at: at.clone(),
            reason: reason.to_owned(),
        };
        let (include, rest) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let (dirs_only, rest) = match rest.strip_suffix('/') {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let glob = match (rest.strip_prefix('/'), rest.contains('/')) {
            (Some(anchored), _) => anchored.to_owned(),
            (None, true) => rest.to_owned(),
            (None, false) => format!("**/{rest}"),
        };
        if rest.is_empty() || glob.is_empty() {
            return Err(bad("empty"));
        }
        let glob = GlobBuilder::new(&glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| bad(&e.kind().to_string()))?
            .compile_matcher();
        self.rules.push(Rule {
            glob,
            dirs_only,
            include,
        });
        Ok(())
    }

    /// Whether the entry at `rel` (relative to the source root) is left out.
    pub fn excludes(&self, rel: &[u8], is_dir: bool) -> bool {
        use std::os::unix::ffi::OsStrExt;
        if self.always.iter().any(|a| a.as_slice() == rel) {
            return true;
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(rel));
        let mut excluded = false;
        for rule in &self.rules {
            if (!rule.dirs_only || is_dir) && rule.glob.is_match(path) {
                excluded = !rule.include;
            }
        }
        excluded
    }

    /// Leaves out `rel` (and so what is below it), whatever the rules say.
    pub fn always_exclude(&mut self, rel: Vec<u8>) {
        self.always.push(rel);
    }

    /// Whether the directory `dir` is a tagged cache whose contents (all
    /// but the tag) are left out.
    pub fn is_tagged_cache(&self, dir: &Path) -> bool {
        use std::io::Read;
        if !self.exclude_caches {
            return false;
        }
        let mut head = [0u8; CACHEDIR_SIGNATURE.len()];
        std::fs::File::open(dir.join("CACHEDIR.TAG"))
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| head == CACHEDIR_SIGNATURE)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn filter(patterns: &[&str]) -> Filter {
        Filter::new(
            &patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn patterns_read_as_rsyncs_and_restics() {
        let f = filter(&["*.tmp", "/build", "logs/", "docs/**/draft-*", "!keep.tmp"]);
        assert!(f.excludes(b"a.tmp", false));
        assert!(f.excludes(b"deep/down/b.tmp", false), "no slash: any depth");
        assert!(!f.excludes(b"deep/keep.tmp", false), "taken back");
        assert!(f.excludes(b"build", true), "anchored at the root");
        assert!(!f.excludes(b"src/build", true));
        assert!(
            f.excludes(b"logs", true) && !f.excludes(b"logs", false),
            "dirs only"
        );
        assert!(f.excludes(b"app/logs", true));
        assert!(f.excludes(b"docs/a/b/draft-1.md", false));
        assert!(!f.excludes(b"docs/final.md", false));
        assert!(!f.excludes(b"dir.tmp/x", false), "* stays in a component");
        assert!(!filter(&[]).excludes(b"anything", false));
    }

    #[test]
    fn bad_patterns_and_files_are_named() {
        let err = Filter::new(&["[unclosed".into()], None).err().unwrap();
        assert!(err.to_string().contains("[unclosed"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("excludes");
        std::fs::write(&file, "# comment\n\n*.iso\n/a/[b\n").unwrap();
        let err = Filter::new(&[], Some(&file)).err().unwrap();
        assert!(err.to_string().contains("line 4"), "{err}");
        std::fs::write(&file, "# comment\n\n*.iso\n").unwrap();
        assert!(
            Filter::new(&[], Some(&file))
                .unwrap()
                .excludes(b"x/y.iso", false)
        );
        let missing = Filter::new(&[], Some(&dir.path().join("nope")))
            .err()
            .unwrap();
        assert!(matches!(missing, FilterError::File { .. }), "{missing}");
    }
}
