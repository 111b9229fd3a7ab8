//! Reading arrays out of a `.npz` archive without trusting anything it declares.
//!
//! A `.npz` is a zip archive of `.npy` files. Both layers declare sizes: the zip entry its
//! uncompressed length, the `.npy` header its shape and element type. A crafted file can
//! declare anything, so before a byte of payload is read:
//!
//! * the `.npy` header's own length is bounded ([`MAX_HEADER`]) and its nesting depth
//!   checked, then the header is parsed (by ndarray-npy's parser, which would otherwise
//!   allocate whatever length the file claims);
//! * element type and rank are checked against what the caller wants;
//! * shape × element size is computed with checked arithmetic and held to the caller's
//!   limit ([`GoldenError::TooLarge`]);
//! * that size plus the header must be exactly the zip entry's declared size
//!   ([`GoldenError::SizeMismatch`]).
//!
//! The payload is then read in bounded chunks through `take(declared)`: memory grows with
//! the bytes that actually arrive, never with what was declared, so an entry that holds
//! less than it claims ends in [`GoldenError::Truncated`] having allocated only what it
//! held. One more read must find the end of the entry, which also makes the zip reader
//! verify the entry's CRC.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use ndarray::{Array1, Array2, ShapeBuilder};
use ndarray_npy::npy::header::{Header, Layout};
use zip::ZipArchive;
use zip::result::ZipError;

use super::GoldenError;

/// The longest `.npy` header read (NumPy itself refuses headers over 10 000 bytes).
pub(crate) const MAX_HEADER: usize = 64 * 1024;

/// Deepest bracket nesting a header may have: `{` of the dict and `(` of the shape, with
/// room for one more. ndarray-npy's parser recurses per level; a header of 64 KiB of `(`
/// would otherwise exhaust the stack.
const MAX_HEADER_DEPTH: usize = 3;

/// Payload bytes read per chunk.
const CHUNK: usize = 64 * 1024;

/// An element type a golden set holds, as `.npy` spells it.
pub(crate) trait NpyElement: Copy + Sized {
    /// NumPy's name for the type, for messages (`float32`, `int64`).
    const NAME: &'static str;
    /// `.npy` type character and size (`f`, 4 for float32).
    const KIND: char;
    /// Size in bytes.
    const SIZE: usize;
    /// One element from its bytes in the file's byte order.
    fn decode(bytes: &[u8], little_endian: bool) -> Self;
}

impl NpyElement for f32 {
    const NAME: &'static str = "float32";
    const KIND: char = 'f';
    const SIZE: usize = 4;
    fn decode(bytes: &[u8], little_endian: bool) -> Self {
        let b = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if little_endian {
            f32::from_le_bytes(b)
        } else {
            f32::from_be_bytes(b)
        }
    }
}

impl NpyElement for i64 {
    const NAME: &'static str = "int64";
    const KIND: char = 'i';
    const SIZE: usize = 8;
    fn decode(bytes: &[u8], little_endian: bool) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        if little_endian {
            i64::from_le_bytes(b)
        } else {
            i64::from_be_bytes(b)
        }
    }
}

/// An open `.npz` archive; arrays are read from it one at a time.
pub(crate) struct Npz {
    zip: ZipArchive<BufReader<File>>,
    path: String,
    names: Vec<String>,
    max_bytes: u64,
}

impl Npz {
    /// Opens the archive at `path` (`shown` is how errors name it). Arrays larger than
    /// `max_bytes` are refused before they are read.
    pub(crate) fn open(path: &Path, shown: &str, max_bytes: u64) -> Result<Self, GoldenError> {
        let file = File::open(path).map_err(|source| GoldenError::Io {
            path: shown.to_owned(),
            source,
        })?;
        let zip = ZipArchive::new(BufReader::new(file)).map_err(|e| corrupt(shown, "-", e))?;
        let names = zip
            .file_names()
            .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_owned())
            .collect();
        Ok(Self {
            zip,
            path: shown.to_owned(),
            names,
            max_bytes,
        })
    }

    /// The arrays in the archive (entry names without `.npy`), in archive order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the archive holds an array called `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The 2-D array `name`.
    pub(crate) fn matrix<T: NpyElement>(&mut self, name: &str) -> Result<Array2<T>, GoldenError> {
        let (shape, fortran, data) = self.read::<T>(name, 2)?;
        let dim = (shape[0], shape[1]);
        let array = if fortran {
            Array2::from_shape_vec(dim.f(), data)
        } else {
            Array2::from_shape_vec(dim, data)
        };
        // `read` returned exactly shape[0] × shape[1] elements.
        array.map_err(|e| self.corrupt_msg(name, e.to_string()))
    }

    /// The 1-D array `name`.
    pub(crate) fn vector<T: NpyElement>(&mut self, name: &str) -> Result<Array1<T>, GoldenError> {
        let (_, _, data) = self.read::<T>(name, 1)?;
        Ok(Array1::from(data))
    }

    fn corrupt_msg(&self, array: &str, message: String) -> GoldenError {
        GoldenError::Corrupt {
            path: self.path.clone(),
            array: array.to_owned(),
            message,
        }
    }

    /// Shape, Fortran order and elements of the array `name`, checked as the module docs say.
    fn read<T: NpyElement>(
        &mut self,
        name: &str,
        rank: usize,
    ) -> Result<(Vec<usize>, bool, Vec<T>), GoldenError> {
        if !self.has(name) {
            return Err(GoldenError::MissingArray {
                path: self.path.clone(),
                array: name.to_owned(),
                available: self.names.clone(),
            });
        }
        let path = self.path.clone();
        let entry_name = if self.zip.index_for_name(name).is_some() {
            name.to_owned()
        } else {
            format!("{name}.npy")
        };
        let mut entry = self
            .zip
            .by_name(&entry_name)
            .map_err(|e| corrupt(&path, name, e))?;
        let entry_size = entry.size();

        let (header, header_bytes) = read_header(&mut entry).map_err(|m| GoldenError::Corrupt {
            path: path.clone(),
            array: name.to_owned(),
            message: m,
        })?;
        let little_endian =
            element_order::<T>(header.type_descriptor.as_string()).ok_or_else(|| {
                GoldenError::WrongDtype {
                    path: path.clone(),
                    array: name.to_owned(),
                    expected: T::NAME,
                    message: format!("the file declares {}", header.type_descriptor),
                }
            })?;
        if header.shape.len() != rank {
            return Err(GoldenError::WrongRank {
                path,
                array: name.to_owned(),
                expected: rank,
                found: header.shape.len(),
            });
        }
        let bytes = header
            .shape
            .iter()
            .try_fold(T::SIZE as u64, |acc, &d| acc.checked_mul(d as u64));
        match bytes {
            Some(b) if b <= self.max_bytes => {}
            _ => {
                return Err(GoldenError::TooLarge {
                    path,
                    array: name.to_owned(),
                    shape: header.shape,
                    dtype: T::NAME,
                    bytes,
                    limit: self.max_bytes,
                });
            }
        }
        let data_bytes = bytes.unwrap_or(0);
        let declared = (header_bytes as u64).checked_add(data_bytes);
        if declared != Some(entry_size) {
            return Err(GoldenError::SizeMismatch {
                path,
                array: name.to_owned(),
                shape: header.shape,
                dtype: T::NAME,
                header_says: declared.unwrap_or(u64::MAX),
                entry_holds: entry_size,
            });
        }

        let data = read_elements::<T>(&mut entry, data_bytes, little_endian).map_err(
            |(found, e)| match e {
                None => GoldenError::Truncated {
                    path: path.clone(),
                    array: name.to_owned(),
                    expected: data_bytes,
                    found,
                },
                Some(e) => GoldenError::Corrupt {
                    path: path.clone(),
                    array: name.to_owned(),
                    message: format!("after {found} of {data_bytes} data bytes: {e}"),
                },
            },
        )?;
        // The entry must end here; reading its end also makes zip check the CRC.
        let mut probe = [0u8; 1];
        match entry.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(GoldenError::Corrupt {
                    path,
                    array: name.to_owned(),
                    message: format!("the entry holds more than its declared {entry_size} bytes"),
                });
            }
            Err(e) => {
                return Err(GoldenError::Corrupt {
                    path,
                    array: name.to_owned(),
                    message: e.to_string(),
                });
            }
        }
        Ok((header.shape, header.layout == Layout::Fortran, data))
    }
}

fn corrupt(path: &str, array: &str, e: ZipError) -> GoldenError {
    GoldenError::Corrupt {
        path: path.to_owned(),
        array: array.to_owned(),
        message: e.to_string(),
    }
}

/// Reads and parses the `.npy` header; returns it with its length in bytes (magic,
/// version and length fields included).
fn read_header(r: &mut impl Read) -> Result<(Header, usize), String> {
    let mut prefix = [0u8; 12];
    r.read_exact(&mut prefix[..8])
        .map_err(|e| format!("no .npy header: {e}"))?;
    if &prefix[..6] != b"\x93NUMPY" {
        return Err("not a .npy array (bad magic bytes)".to_owned());
    }
    let (len_bytes, header_len) = match prefix[6] {
        1 => {
            r.read_exact(&mut prefix[8..10])
                .map_err(|e| format!("no .npy header: {e}"))?;
            (2, usize::from(u16::from_le_bytes([prefix[8], prefix[9]])))
        }
        2 | 3 => {
            r.read_exact(&mut prefix[8..12])
                .map_err(|e| format!("no .npy header: {e}"))?;
            let n = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
            (4, usize::try_from(n).unwrap_or(usize::MAX))
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    if header_len > MAX_HEADER {
        return Err(format!(
            ".npy header declares {header_len} bytes, over the {MAX_HEADER}-byte limit"
        ));
    }
    let fixed = 8 + len_bytes;
    let mut bytes = Vec::with_capacity(fixed + header_len);
    bytes.extend_from_slice(&prefix[..fixed]);
    r.take(header_len as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the .npy header: {e}"))?;
    if bytes.len() != fixed + header_len {
        return Err(format!(
            ".npy header ends after {} of its {header_len} bytes",
            bytes.len() - fixed
        ));
    }
    let depth = nesting_depth(&bytes[fixed..]);
    if depth > MAX_HEADER_DEPTH {
        return Err(format!(
            ".npy header nests {depth} levels deep (at most {MAX_HEADER_DEPTH} are read)"
        ));
    }
    let header = Header::from_reader(&mut Cursor::new(&bytes))
        .map_err(|e| format!("bad .npy header: {e}"))?;
    Ok((header, bytes.len()))
}

/// Deepest bracket nesting in `text` (brackets inside strings count too: stricter).
fn nesting_depth(text: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The byte order `descr` declares for `T` (`true` little-endian), or `None` if `descr`
/// is not `T`.
fn element_order<T: NpyElement>(descr: Option<&String>) -> Option<bool> {
    let s = descr?;
    let mut chars = s.chars();
    let order = chars.next()?;
    let rest: String = chars.collect();
    if rest != format!("{}{}", T::KIND, T::SIZE) {
        return None;
    }
    match order {
        '<' => Some(true),
        '>' => Some(false),
        '=' => Some(cfg!(target_endian = "little")),
        _ => None,
    }
}

/// Reads `bytes` bytes of elements in chunks. On failure: bytes read, and the I/O error
/// (`None` when the entry simply ended early).
fn read_elements<T: NpyElement>(
    r: &mut impl Read,
    bytes: u64,
    little_endian: bool,
) -> Result<Vec<T>, (u64, Option<io::Error>)> {
    // Capacity grows with what arrives: at most one chunk ahead of the data.
    let first = usize::try_from(bytes).unwrap_or(usize::MAX).min(CHUNK) / T::SIZE;
    let mut out: Vec<T> = Vec::with_capacity(first);
    let mut chunk = vec![0u8; CHUNK];
    let mut limited = r.take(bytes);
    let mut done: u64 = 0;
    let mut carry = 0usize; // bytes of a partial element at the start of `chunk`
    loop {
        let n = match limited.read(&mut chunk[carry..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((done, Some(e))),
        };
        done += n as u64;
        let filled = carry + n;
        let whole = filled / T::SIZE * T::SIZE;
        out.extend(
            chunk[..whole]
                .chunks_exact(T::SIZE)
                .map(|b| T::decode(b, little_endian)),
        );
        chunk.copy_within(whole..filled, 0);
        carry = filled - whole;
    }
    if done != bytes {
        return Err((done, None));
    }
    Ok(out)
}
