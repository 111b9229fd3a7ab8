//! The content of a version directory: the files that make it up, a cheap fingerprint of
//! them (names, sizes, modification times) and their BLAKE3 hash — what
//! [`Repository::identity`](crate::repository::Repository::identity) reports.
//!
//! The files are every regular file under the directory, followed through symlinks,
//! except the completion marker at its top and anything hidden (a name starting with
//! `.`: temporary files of an upload in progress, a Kubernetes volume's `..data`, whose
//! files are reached through their visible links). They are hashed in the order of their
//! relative paths, each as its path, its length and its bytes, streamed — memory stays
//! bounded whatever the model's size. A directory deeper than [`MAX_DEPTH`] or with more
//! than [`MAX_FILES`] files (a symlink loop, a mount of the wrong thing) is refused.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::slot::ContentHash;

/// Deepest nesting followed below a version directory.
pub(crate) const MAX_DEPTH: usize = 16;

/// Most files hashed for one version.
pub(crate) const MAX_FILES: usize = 10_000;

/// One file of a version, with what its fingerprint needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub(crate) relative: String,
    pub(crate) len: u64,
    pub(crate) modified: Option<SystemTime>,
}

/// Why a version's content could not be read.
#[derive(Debug)]
pub(crate) enum ContentError {
    Io(PathBuf, io::Error),
    TooLarge(PathBuf, String),
}

/// The files of the version at `root` (see the module docs), sorted by relative path.
pub(crate) fn files(root: &Path, marker: &str) -> Result<Vec<(PathBuf, FileStamp)>, ContentError> {
    let mut out = Vec::new();
    walk(root, root, marker, 0, &mut out)?;
    out.sort_by(|a, b| a.1.relative.cmp(&b.1.relative));
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    marker: &str,
    depth: usize,
    out: &mut Vec<(PathBuf, FileStamp)>,
) -> Result<(), ContentError> {
    if depth > MAX_DEPTH {
        return Err(ContentError::TooLarge(
            dir.to_path_buf(),
            format!("nested deeper than {MAX_DEPTH} directories (a symlink loop?)"),
        ));
    }
    let entries = fs::read_dir(dir).map_err(|e| ContentError::Io(dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ContentError::Io(dir.to_path_buf(), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || (depth == 0 && name == marker) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a file may be a link into the data it names.
        let meta = fs::metadata(&path).map_err(|e| ContentError::Io(path.clone(), e))?;
        if meta.is_dir() {
            walk(root, &path, marker, depth + 1, out)?;
        } else if meta.is_file() {
            if out.len() >= MAX_FILES {
                return Err(ContentError::TooLarge(
                    root.to_path_buf(),
                    format!("more than {MAX_FILES} files"),
                ));
            }
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((
                path,
                FileStamp {
                    relative,
                    len: meta.len(),
                    modified: meta.modified().ok(),
                },
            ));
        }
    }
    Ok(())
}

/// The BLAKE3 hash of `files` (from [`files`]): for each, in order, the length of its path,
/// the path, its length and its bytes — an encoding no two file sets share.
pub(crate) fn hash(files: &[(PathBuf, FileStamp)]) -> Result<ContentHash, ContentError> {
    let mut hasher = blake3::Hasher::new();
    for (path, stamp) in files {
        let mut f = fs::File::open(path).map_err(|e| ContentError::Io(path.clone(), e))?;
        let len = f
            .metadata()
            .map_err(|e| ContentError::Io(path.clone(), e))?
            .len();
        hasher.update(&(stamp.relative.len() as u64).to_le_bytes());
        hasher.update(stamp.relative.as_bytes());
        hasher.update(&len.to_le_bytes());
        let mut counting = Counting {
            inner: &mut hasher,
            bytes: 0,
        };
        io::copy(&mut (&mut f).take(len), &mut counting)
            .map_err(|e| ContentError::Io(path.clone(), e))?;
        if counting.bytes != len {
            return Err(ContentError::Io(
                path.clone(),
                io::Error::other("the file changed while it was being hashed"),
            ));
        }
    }
    Ok(ContentHash::from_hasher(&hasher))
}

/// Feeds a hasher, counting bytes.
struct Counting<'a> {
    inner: &'a mut blake3::Hasher,
    bytes: u64,
}

impl io::Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
