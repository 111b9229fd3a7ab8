//! A model repository on disk, and the rule that says when a version in it is complete.
//!
//! A repository is a directory with one sub-directory per version:
//!
//! ```text
//! models/digits/
//! ├── golden.npz          (files at the top level are not versions)
//! ├── 1/model.onnx
//! ├── 2/model.onnx  2/READY
//! ├── 3/model.onnx        (still being copied: no READY marker, never loaded automatically)
//! └── .4.partial/…        (hidden: never a version)
//! ```
//!
//! # The completion rule
//!
//! A version directory is **complete** when it contains the completion marker, a file
//! called `READY` by default ([`Repository::with_marker`] changes the name). Whoever
//! publishes a version writes every other file first and the marker **last** (or calls
//! [`Repository::mark_complete`], which writes it atomically). Automatic readers — the
//! repository watcher (`bluegreen::watch`, cargo feature `watch`) and its desired-version
//! manifest mode — act only on complete versions, so a half-copied version is never loaded
//! (the failure TF Serving users hit, tensorflow/serving#1086: its file-system poller loads
//! a version folder as soon as it appears).
//!
//! Publishing by **atomic rename** works with the same rule: copy into a hidden directory
//! (`.3.tmp/`, any name starting with `.` is ignored), write the marker inside it, then
//! `rename` it to `3/` — the version appears complete in one step.
//!
//! Re-writing the marker of a version (a new modification time) tells the watcher the
//! version was published again, e.g. after fixing a broken upload; it is then retried.
//!
//! # Content identity
//!
//! A version is its name **and** its bytes: [`Repository::identity`] hashes every file of
//! a version directory (BLAKE3; the marker and hidden files left out) into an
//! [`Identity`] to stage it with, so a version folder replaced in place — new bytes, same
//! name — is told from the one loaded ([`BlueGreen::check_content`](crate::BlueGreen::check_content)),
//! and a ban in the journal holds for the bytes it was given, not for a fixed re-upload.
//!
//! # Version names and order
//!
//! A version name is 1–128 characters from `A–Z a–z 0–9 . _ -`, not starting with `.`.
//! Anything else in the repository is skipped. Versions are ordered *naturally*: names of
//! digits only compare as numbers (`9 < 10`) and come before other names, which compare as
//! strings. "Newest" means greatest in this order.

use std::cmp::Ordering;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[cfg(feature = "watch")]
use super::content::FileStamp;
use super::content::{self, ContentError};
use crate::slot::Identity;

/// The default completion marker's file name.
pub const DEFAULT_MARKER: &str = "READY";

/// Longest accepted version directory name.
const MAX_NAME: usize = 128;

/// Largest desired-version manifest read (a version name and a few comment lines).
const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// Why a repository or a desired-version manifest could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// The name cannot be a version directory (empty, a path, hidden, odd characters).
    #[error("invalid version name {version:?}: {reason}")]
    InvalidVersion {
        /// The name given.
        version: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The repository has no directory for this version.
    #[error("version {version} not found: {} is not a directory", path.display())]
    NotFound {
        /// The version asked for.
        version: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A version directory's content cannot be hashed: it is deeper or has more files
    /// than a model version plausibly has (a symlink loop, the wrong mount).
    #[error("cannot hash {}: {reason}", path.display())]
    TooLarge {
        /// The directory.
        path: PathBuf,
        /// What limit it passed.
        reason: String,
    },
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The desired-version manifest names no valid version.
    #[error("desired-version manifest {}: {reason}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Identifies one writing of a completion marker (its modification time and size), so a
/// re-published version can be told from the one seen before.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkerStamp {
    /// The marker's modification time, where the file system reports it.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::opt_unix_secs")
    )]
    pub modified: Option<SystemTime>,
    /// The marker's size in bytes.
    pub len: u64,
}

/// One version directory of a [`Repository`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    /// The version name (the directory's name).
    pub version: String,
    /// The directory.
    pub path: PathBuf,
    /// The completion marker, if it has been written: `None` means incomplete.
    pub marker: Option<MarkerStamp>,
}

impl VersionDir {
    /// Whether the version's completion marker exists.
    pub fn is_complete(&self) -> bool {
        self.marker.is_some()
    }

    /// A file inside the version directory, e.g. `dir.file("model.onnx")`.
    pub fn file(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

/// A directory of model versions, one sub-directory each; see the [module docs](self) for
/// the layout and the completion rule.
///
/// ```
/// use bluegreen::repository::Repository;
///
/// let dir = tempfile::tempdir()?;
/// std::fs::create_dir(dir.path().join("1"))?;
/// std::fs::create_dir(dir.path().join("2"))?;
/// let repo = Repository::new(dir.path());
/// repo.mark_complete("1")?;
///
/// let versions = repo.versions()?;
/// assert_eq!(versions.len(), 2);
/// assert!(versions[0].is_complete() && !versions[1].is_complete());
/// assert_eq!(repo.latest_complete()?.unwrap().version, "1"); // 2 is still being copied
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    root: PathBuf,
    marker: String,
}

impl Repository {
    /// The repository at `root`, with the default marker `READY`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            marker: DEFAULT_MARKER.to_owned(),
        }
    }

    /// Uses `name` as the completion marker's file name instead of `READY`.
    #[must_use]
    pub fn with_marker(mut self, name: impl Into<String>) -> Self {
        self.marker = name.into();
        self
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The completion marker's file name.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// Every version directory, complete or not, oldest first (natural order). Hidden
    /// entries, files and names that are not valid versions are skipped.
    ///
    /// # Errors
    /// [`RepositoryError::Io`] when the repository directory cannot be listed.
    pub fn versions(&self) -> Result<Vec<VersionDir>, RepositoryError> {
        let entries = fs::read_dir(&self.root).map_err(|source| RepositoryError::Io {
            path: self.root.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| RepositoryError::Io {
                path: self.root.clone(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_version_name(&name).is_err() {
                continue;
            }
            // Follows symlinks: a version may be a link to a directory elsewhere.
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            out.push(self.describe(name, path));
        }
        out.sort_by(|a, b| compare_versions(&a.version, &b.version));
        Ok(out)
    }

    /// The newest complete version, if any.
    ///
    /// # Errors
    /// As [`versions`](Self::versions).
    pub fn latest_complete(&self) -> Result<Option<VersionDir>, RepositoryError> {
        Ok(self.versions()?.into_iter().rev().find(|v| v.is_complete()))
    }

    /// The directory of `version`, complete or not.
    ///
    /// # Errors
    /// [`RepositoryError::InvalidVersion`] for a name that cannot be a version directory
    /// (so a request cannot reach outside the repository with `../`),
    /// [`RepositoryError::NotFound`] when it does not exist.
    pub fn version(&self, version: &str) -> Result<VersionDir, RepositoryError> {
        check_version_name(version).map_err(|reason| RepositoryError::InvalidVersion {
            version: version.to_owned(),
            reason,
        })?;
        let path = self.root.join(version);
        if !path.is_dir() {
            return Err(RepositoryError::NotFound {
                version: version.to_owned(),
                path,
            });
        }
        Ok(self.describe(version.to_owned(), path))
    }

    /// Writes the completion marker of `version` atomically (a temporary file renamed into
    /// place), after everything else has been written. Re-marking a version gives it a new
    /// [`MarkerStamp`].
    ///
    /// # Errors
    /// As [`version`](Self::version), or [`RepositoryError::Io`] if writing fails.
    pub fn mark_complete(&self, version: &str) -> Result<MarkerStamp, RepositoryError> {
        let dir = self.version(version)?;
        let marker = dir.path.join(&self.marker);
        let tmp = dir.path.join(format!(".{}.tmp", self.marker));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RepositoryError::Io { path, source }
        };
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        writeln!(
            f,
            "complete {}.{:09}",
            stamp.as_secs(),
            stamp.subsec_nanos()
        )
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, &marker).map_err(io_err(&marker))?;
        Ok(self
            .describe(version.to_owned(), dir.path)
            .marker
            .unwrap_or(MarkerStamp {
                modified: None,
                len: 0,
            }))
    }

    /// The identity of `dir`: its version name and the hash of its files (see the [module
    /// docs](self#content-identity)). Reads every file once; use it with
    /// [`stage_with`](crate::BlueGreen::stage_with) so the deployment knows what it loaded.
    ///
    /// ```
    /// use bluegreen::repository::Repository;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let repo = Repository::new(dir.path());
    /// std::fs::create_dir(dir.path().join("1"))?;
    /// std::fs::write(dir.path().join("1/model.onnx"), b"weights")?;
    /// repo.mark_complete("1")?;
    /// let before = repo.identity(&repo.version("1")?)?;
    /// assert_eq!(before.version(), "1");
    ///
    /// repo.mark_complete("1")?; // re-marking changes nothing that is hashed
    /// assert_eq!(repo.identity(&repo.version("1")?)?, before);
    /// std::fs::write(dir.path().join("1/model.onnx"), b"other weights")?;
    /// assert_ne!(repo.identity(&repo.version("1")?)?, before, "replaced in place");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RepositoryError::Io`] when a file cannot be read, [`RepositoryError::TooLarge`]
    /// past the limits.
    pub fn identity(&self, dir: &VersionDir) -> Result<Identity, RepositoryError> {
        let files = content::files(&dir.path, &self.marker).map_err(repository_error)?;
        let hash = content::hash(&files).map_err(repository_error)?;
        Ok(Identity::new(dir.version.clone()).with_content(hash))
    }

    /// A cheap fingerprint of `dir`'s files — names, sizes, modification times — that
    /// changes whenever what [`identity`](Self::identity) hashes is likely to.
    #[cfg(feature = "watch")]
    pub(crate) fn fingerprint(&self, dir: &VersionDir) -> Result<Vec<FileStamp>, RepositoryError> {
        let files = content::files(&dir.path, &self.marker).map_err(repository_error)?;
        Ok(files.into_iter().map(|(_, stamp)| stamp).collect())
    }

    fn describe(&self, version: String, path: PathBuf) -> VersionDir {
        let marker = fs::metadata(path.join(&self.marker))
            .ok()
            .filter(fs::Metadata::is_file)
            .map(|m| MarkerStamp {
                modified: m.modified().ok(),
                len: m.len(),
            });
        VersionDir {
            version,
            path,
            marker,
        }
    }
}

impl From<PathBuf> for Repository {
    fn from(root: PathBuf) -> Self {
        Self::new(root)
    }
}

impl From<&Path> for Repository {
    fn from(root: &Path) -> Self {
        Self::new(root)
    }
}

impl From<&str> for Repository {
    fn from(root: &str) -> Self {
        Self::new(root)
    }
}

fn repository_error(e: ContentError) -> RepositoryError {
    match e {
        ContentError::Io(path, source) => RepositoryError::Io { path, source },
        ContentError::TooLarge(path, reason) => RepositoryError::TooLarge { path, reason },
    }
}

/// Whether `name` can be a version directory: 1–128 characters from `A–Z a–z 0–9 . _ -`,
/// not starting with `.`. Returns the reason when it cannot.
///
/// ```
/// use bluegreen::repository::check_version_name;
/// assert!(check_version_name("2").is_ok());
/// assert!(check_version_name("2024-11-26_a").is_ok());
/// assert!(check_version_name("../etc").is_err());
/// assert!(check_version_name(".3.tmp").is_err());
/// ```
pub fn check_version_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.len() > MAX_NAME {
        Err("must be at most 128 characters")
    } else if name.starts_with('.') {
        Err("must not start with '.' (hidden directories are never versions)")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Err("may only contain letters, digits, '.', '_' and '-'")
    } else {
        Ok(())
    }
}

/// Natural order of version names: all-digit names compare as numbers and come first;
/// other names compare as strings.
///
/// ```
/// use std::cmp::Ordering;
/// use bluegreen::repository::compare_versions;
/// assert_eq!(compare_versions("9", "10"), Ordering::Less);
/// assert_eq!(compare_versions("10", "b"), Ordering::Less);
/// assert_eq!(compare_versions("a", "b"), Ordering::Less);
/// ```
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => {
            let (ta, tb) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            ta.len()
                .cmp(&tb.len())
                .then_with(|| ta.cmp(tb))
                .then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

/// Reads a desired-version manifest: the version a fleet of replicas should serve.
///
/// The file (typically a Kubernetes ConfigMap key mounted as a file) holds the version
/// name; blank lines and lines starting with `#` are skipped, and the first other line is
/// either the name alone (`3`) or `version: 3` / `version = 3`.
///
/// # Errors
/// [`RepositoryError::Io`] when the file cannot be read, [`RepositoryError::Manifest`] when
/// it names no valid version.
pub fn read_desired_version(path: &Path) -> Result<String, RepositoryError> {
    let io_err = |source| RepositoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    fs::File::open(path)
        .map_err(io_err)?
        .take(MAX_MANIFEST_BYTES)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    let manifest_err = |reason: String| RepositoryError::Manifest {
        path: path.to_path_buf(),
        reason,
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| manifest_err("names no version (the file is empty)".to_owned()))?;
    let value = line
        .strip_prefix("version")
        .map(str::trim_start)
        .and_then(|rest| rest.strip_prefix(':').or_else(|| rest.strip_prefix('=')))
        .map_or(line, str::trim);
    let value = value.trim_matches(|c| c == '"' || c == '\'');
    check_version_name(value).map_err(|reason| {
        manifest_err(format!("{value:?} is not a valid version name: {reason}"))
    })?;
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_puts_numbers_first_and_by_value() {
        let mut v = vec!["b", "10", "9", "a", "010", "1"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["1", "9", "010", "10", "a", "b"]);
    }

    #[test]
    fn version_names_that_could_escape_the_repository_are_refused() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", "x\0"] {
            assert!(check_version_name(bad).is_err(), "{bad:?}");
        }
        for good in ["1", "v2", "2024-11-26", "3.1_rc-1"] {
            assert!(check_version_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn manifest_accepts_bare_and_keyed_forms_and_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desired");
        for (text, want) in [
            ("3\n", "3"),
            ("# rollout 42\n\nversion: 7\n", "7"),
            ("version = \"v8\"", "v8"),
            ("  12  ", "12"),
        ] {
            fs::write(&path, text).unwrap();
            assert_eq!(read_desired_version(&path).unwrap(), want, "{text:?}");
        }
        for bad in ["", "# only a comment\n", "../1", "version: a b"] {
            fs::write(&path, bad).unwrap();
            assert!(
                matches!(
                    read_desired_version(&path),
                    Err(RepositoryError::Manifest { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn versions_skip_hidden_files_and_invalid_names_and_see_markers() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["1", "10", "2", ".3.tmp", "bad name"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        fs::write(dir.path().join("golden.npz"), b"x").unwrap();
        let repo = Repository::new(dir.path());
        repo.mark_complete("2").unwrap();
        let v = repo.versions().unwrap();
        let names: Vec<_> = v.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(names, ["1", "2", "10"]);
        assert_eq!(
            v.iter().map(VersionDir::is_complete).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(repo.latest_complete().unwrap().unwrap().version, "2");
        assert!(matches!(
            repo.version("../x"),
            Err(RepositoryError::InvalidVersion { .. })
        ));
        assert!(matches!(
            repo.version("4"),
            Err(RepositoryError::NotFound { .. })
        ));
    }
}
