//! Reading a model's custom metadata (`metadata_props`) in one linear pass, within limits.
//!
//! ONNX Runtime offers the custom metadata as a key list plus a lookup per key — and each
//! lookup copies the whole map (ONNX Runtime 1.31's `ModelMetadataLookupCustomMetadataMap`
//! takes it by value), so reading `n` entries that way costs O(n²): 20 000 entries took
//! 30 s. bluegreen reads the entries from the model file itself instead: the top level of
//! a `ModelProto` is a sequence of tagged fields, so the reader walks it, skips every
//! field but `metadata_props` (field 14) by its length without reading it (the graph, the
//! weights), and decodes each entry's `key` (1) and `value` (2).
//!
//! Hostile input is normal input: every declared length is checked against what is left
//! of the file (checked arithmetic), and what is kept is bounded by [`MetadataLimits`] —
//! entries past the count or byte limit are skipped unread and reported, not kept.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Seek, SeekFrom};

use super::config::Source;

/// How much custom metadata a model may make bluegreen keep (see
/// [`OnnxConfig::metadata_limits`](super::OnnxConfig::metadata_limits)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MetadataLimits {
    /// Entries kept at most.
    pub(super) entries: usize,
    /// Bytes kept at most, counted as the entries are stored in the file.
    pub(super) bytes: usize,
}

impl Default for MetadataLimits {
    fn default() -> Self {
        Self {
            entries: 1024,
            bytes: 1 << 20,
        }
    }
}

/// The metadata key under which entries dropped by the limits are reported.
pub(super) const DROPPED_KEY: &str = "bluegreen.metadata_dropped";

/// What was read: the entries kept, and how much was left out.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Custom {
    pub(super) entries: BTreeMap<String, String>,
    pub(super) dropped_entries: u64,
    pub(super) dropped_bytes: u64,
}

impl Custom {
    /// The `bluegreen.metadata_dropped` text, when anything was dropped.
    pub(super) fn dropped_note(&self, limits: MetadataLimits) -> Option<String> {
        (self.dropped_entries > 0).then(|| {
            format!(
                "{} entries ({} bytes) beyond the limits of {} entries / {} bytes were not read",
                self.dropped_entries, self.dropped_bytes, limits.entries, limits.bytes
            )
        })
    }
}

/// Reads the custom metadata of the model in `source`.
pub(super) fn read_custom(source: Source<'_>, limits: MetadataLimits) -> Result<Custom, String> {
    match source {
        Source::Memory(bytes) => walk(Cursor::new(bytes), bytes.len() as u64, limits),
        Source::File(path) => {
            let file = File::open(path).map_err(|e| e.to_string())?;
            let len = file.metadata().map_err(|e| e.to_string())?.len();
            walk(BufReader::new(file), len, limits)
        }
    }
}

const METADATA_PROPS: u64 = 14;

fn walk<R: Read + Seek>(mut r: R, len: u64, limits: MetadataLimits) -> Result<Custom, String> {
    let mut at = 0u64;
    let mut out = Custom::default();
    let mut kept_bytes = 0usize;
    while at < len {
        let tag = varint(&mut r, &mut at)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                varint(&mut r, &mut at)?;
            }
            1 => skip(&mut r, &mut at, len, 8)?,
            5 => skip(&mut r, &mut at, len, 4)?,
            2 => {
                let size = varint(&mut r, &mut at)?;
                let end = at
                    .checked_add(size)
                    .filter(|&end| end <= len)
                    .ok_or_else(|| format!("field {field} runs past the end of the file"))?;
                let fits = usize::try_from(size).ok().filter(|&s| {
                    out.entries.len() < limits.entries && kept_bytes + s <= limits.bytes
                });
                match (field == METADATA_PROPS, fits) {
                    (true, Some(size)) => {
                        let mut entry = vec![0u8; size];
                        r.read_exact(&mut entry).map_err(|e| e.to_string())?;
                        at = end;
                        kept_bytes += size;
                        let (k, v) = entry_fields(&entry)?;
                        out.entries.insert(k, v);
                    }
                    (true, None) => {
                        out.dropped_entries += 1;
                        out.dropped_bytes += size;
                        skip(&mut r, &mut at, len, size)?;
                    }
                    (false, _) => skip(&mut r, &mut at, len, size)?,
                }
            }
            other => return Err(format!("unsupported wire type {other} (field {field})")),
        }
    }
    Ok(out)
}

fn skip<R: Seek>(r: &mut R, at: &mut u64, len: u64, n: u64) -> Result<(), String> {
    let end = at
        .checked_add(n)
        .filter(|&end| end <= len)
        .ok_or("a field runs past the end of the file")?;
    let step = i64::try_from(n).map_err(|_| "a field too large to skip")?;
    r.seek(SeekFrom::Current(step)).map_err(|e| e.to_string())?;
    *at = end;
    Ok(())
}

fn varint<R: Read>(r: &mut R, at: &mut u64) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => "the file ends inside a field".to_owned(),
            _ => e.to_string(),
        })?;
        *at += 1;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] < 0x80 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes".to_owned())
}

/// `StringStringEntryProto`: key (1), value (2); other fields ignored.
fn entry_fields(bytes: &[u8]) -> Result<(String, String), String> {
    let mut r = Cursor::new(bytes);
    let len = bytes.len() as u64;
    let mut at = 0u64;
    let (mut key, mut value) = (String::new(), String::new());
    while at < len {
        let tag = varint(&mut r, &mut at)?;
        match tag & 7 {
            0 => {
                varint(&mut r, &mut at)?;
            }
            1 => skip(&mut r, &mut at, len, 8)?,
            5 => skip(&mut r, &mut at, len, 4)?,
            2 => {
                let size = varint(&mut r, &mut at)?;
                let start = usize::try_from(at).map_err(|_| "entry too large")?;
                skip(&mut r, &mut at, len, size)?;
                let text = String::from_utf8_lossy(&bytes[start..at as usize]).into_owned();
                match tag >> 3 {
                    1 => key = text,
                    2 => value = text,
                    _ => {}
                }
            }
            other => return Err(format!("unsupported wire type {other} in a metadata entry")),
        }
    }
    Ok((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
        out.push((field << 3) | 2);
        out.push(bytes.len() as u8); // < 128 in these tests
        out.extend_from_slice(bytes);
    }

    fn entry(k: &str, v: &str) -> Vec<u8> {
        let mut e = Vec::new();
        field(&mut e, 1, k.as_bytes());
        field(&mut e, 2, v.as_bytes());
        e
    }

    fn model(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut m = vec![0x08, 0x08]; // ir_version = 8
        field(&mut m, 7, b"a graph, skipped unread");
        for (k, v) in entries {
            field(&mut m, 14, &entry(k, v));
        }
        m
    }

    fn read(bytes: &[u8], limits: MetadataLimits) -> Result<Custom, String> {
        read_custom(Source::Memory(bytes), limits)
    }

    #[test]
    fn reads_every_entry_and_skips_the_rest_of_the_model() {
        let m = model(&[("a", "1"), ("b", "2"), ("a", "3")]);
        let c = read(&m, MetadataLimits::default()).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(
            c.entries["a"], "3",
            "a later duplicate wins, as in ONNX Runtime"
        );
        assert_eq!(c.entries["b"], "2");
        assert_eq!(c.dropped_entries, 0);
    }

    #[test]
    fn keeps_at_most_the_limits_and_counts_what_it_dropped() {
        let m = model(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let by_count = MetadataLimits {
            entries: 2,
            bytes: 1 << 20,
        };
        let c = read(&m, by_count).unwrap();
        assert_eq!(c.entries.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((c.dropped_entries, c.dropped_bytes), (1, 6));
        let by_bytes = MetadataLimits {
            entries: 100,
            bytes: 6,
        };
        let c = read(&m, by_bytes).unwrap();
        assert_eq!(c.entries.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!((c.dropped_entries, c.dropped_bytes), (2, 12));
        assert!(
            c.dropped_note(by_bytes)
                .unwrap()
                .starts_with("2 entries (12 bytes)")
        );
    }

    #[test]
    fn declared_lengths_past_the_end_are_errors_not_allocations() {
        let mut m = model(&[("a", "1")]);
        m.extend_from_slice(&[(14 << 3) | 2, 0xff, 0xff, 0xff, 0xff, 0x0f]); // 4 GiB entry
        assert!(
            read(&m, MetadataLimits::default())
                .unwrap_err()
                .contains("past the end")
        );
        let truncated = &model(&[("a", "1")])[..12];
        assert!(read(truncated, MetadataLimits::default()).is_err());
        assert!(read(&[0x80; 20], MetadataLimits::default()).is_err());
    }
}
