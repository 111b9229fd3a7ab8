//! Hostile golden files, generated here (no large file is committed): a header declaring
//! a 64 GiB array, a shape whose size overflows, a zip bomb, an entry shorter than it
//! declares, a header disagreeing with its entry, a header nested or sized to exhaust the
//! parser. Each gets its exact typed error, in-process: the test surviving proves the
//! process did not abort, and a counting allocator proves memory stayed bounded by what
//! the file actually held, not by what it declared.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bluegreen::{GoldenError, GoldenSet};
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

// ---------------------------------------------------------------------------------------
// A global allocator that counts the bytes live on each thread and their peak, so a test
// can assert how much one load allocated (other tests' threads do not disturb it).

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn track(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call forwards to `System` unchanged; the bookkeeping touches only
// const-initialized thread-locals of plain integers, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f`; returns its result and the most bytes it had allocated at once on this thread.
fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, i64) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, PEAK.with(Cell::get) - start)
}

const MIB: i64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// Writing .npy entries and .npz archives by hand, so that they can lie.

/// A version-1 `.npy` header as NumPy writes it (padded to 64 bytes), for `shape`.
fn npy_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = match dims.as_slice() {
        [one] => format!("({one},)"),
        many => format!("({})", many.join(", ")),
    };
    npy_header_text(&format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    ))
}

fn npy_header_text(dict: &str) -> Vec<u8> {
    let mut text = dict.as_bytes().to_vec();
    let unpadded = 10 + text.len() + 1;
    text.extend(std::iter::repeat_n(b' ', (64 - unpadded % 64) % 64));
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend(text);
    out
}

/// Writes a `.npz` of `(name, bytes)` entries, each stored or deflated.
fn archive(
    dir: &Path,
    file: &str,
    entries: &[(&str, Vec<u8>)],
    method: CompressionMethod,
) -> PathBuf {
    let path = dir.join(file);
    let mut zip = ZipWriter::new(fs::File::create(&path).unwrap());
    for (name, bytes) in entries {
        let options = SimpleFileOptions::default().compression_method(method);
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Rewrites the uncompressed size the archive declares for its only entry (local header
/// and central directory), leaving the data and its CRC as they are.
fn declare_uncompressed_size(path: &Path, size: u32) {
    let mut bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"PK\x03\x04", "local file header first");
    bytes[22..26].copy_from_slice(&size.to_le_bytes());
    let central = bytes
        .windows(4)
        .position(|w| w == b"PK\x01\x02")
        .expect("central directory header");
    bytes[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_119_kb_file_declaring_a_64_gib_array_is_refused_before_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    // The reported file: a (2^28, 64) float32 header over 119 KB of data.
    let mut entry = npy_header("<f4", &[1 << 28, 64]);
    entry.extend(vec![0u8; 119 * 1024]);
    let path = archive(
        dir.path(),
        "huge.npz",
        &[("inputs", entry)],
        CompressionMethod::Stored,
    );
    assert!(fs::metadata(&path).unwrap().len() < 120 * 1024);

    let (result, peak) = peak_allocation(|| GoldenSet::from_npz(&path));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, GoldenError::TooLarge { array, shape, dtype: "float32", bytes: Some(68_719_476_736), limit: 1_073_741_824, .. }
            if array == "inputs" && shape == &[1 << 28, 64]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "array `inputs` in {} declares shape [268435456, 64] of float32 (68719476736 bytes), over the limit of 1073741824 bytes (NpzSpec::max_bytes)",
            shown(&path)
        )
    );
    assert!(peak < MIB, "loading allocated {peak} bytes at once");

    // Above the limit's reach, the header still disagrees with the entry it is in.
    let err = GoldenSet::npz(&path)
        .max_bytes(u64::MAX)
        .load()
        .unwrap_err();
    assert!(
        matches!(
            err,
            GoldenError::SizeMismatch {
                header_says: 68_719_476_864,
                entry_holds: 121_984,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_shape_whose_byte_size_overflows_64_bits_is_too_large_without_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let entry = npy_header("<f4", &[1 << 40, 1 << 40]);
    let path = archive(
        dir.path(),
        "overflow.npz",
        &[("inputs", entry)],
        CompressionMethod::Stored,
    );
    let err = GoldenSet::npz(&path)
        .max_bytes(u64::MAX)
        .load()
        .unwrap_err();
    assert!(
        matches!(
            err,
            GoldenError::TooLarge {
                bytes: None,
                limit: u64::MAX,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "array `inputs` in {} declares shape [1099511627776, 1099511627776] of float32 (more bytes than 64 bits can count), over the limit of 18446744073709551615 bytes (NpzSpec::max_bytes)",
            shown(&path)
        )
    );
}

#[test]
fn a_zip_bomb_over_the_limit_is_refused_from_its_declared_sizes_without_inflating_it() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MiB of zeros, (32768, 64) float32, deflates to a few KB.
    let mut entry = npy_header("<f4", &[32_768, 64]);
    entry.extend(vec![0u8; 8 << 20]);
    let path = archive(
        dir.path(),
        "bomb.npz",
        &[("inputs", entry)],
        CompressionMethod::Deflated,
    );
    let on_disk = fs::metadata(&path).unwrap().len();
    assert!(on_disk < 64 * 1024, "{on_disk} bytes on disk");

    let (result, peak) = peak_allocation(|| GoldenSet::npz(&path).max_bytes(1 << 20).load());
    let err = result.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "array `inputs` in {} declares shape [32768, 64] of float32 (8388608 bytes), over the limit of 1048576 bytes (NpzSpec::max_bytes)",
            shown(&path)
        )
    );
    assert!(peak < MIB, "refusing allocated {peak} bytes at once");

    // The limit is what refused it: with room for it, the same file loads, and the
    // counter sees the 8 MiB it takes (so the bounds asserted above can fail).
    let (golden, peak) = peak_allocation(|| GoldenSet::npz(&path).max_bytes(8 << 20).load());
    let golden = golden.unwrap();
    assert_eq!((golden.len(), golden.features()), (32_768, 64));
    assert!(peak >= 8 * MIB, "{peak}");
}

#[test]
fn a_header_declaring_more_than_its_entry_holds_is_a_size_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    // 100 × 4 float32 is 1600 bytes; the entry has 800.
    let mut entry = npy_header("<f4", &[100, 4]);
    entry.extend(f32_bytes((0..200).map(|i| i as f32)));
    let path = archive(
        dir.path(),
        "short.npz",
        &[("inputs", entry)],
        CompressionMethod::Stored,
    );
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "array `inputs` in {}: its header declares shape [100, 4] of float32 (1728 bytes with the header), but its zip entry holds 928 bytes",
            shown(&path)
        )
    );
}

#[test]
fn an_entry_ending_before_its_declared_size_is_truncated_having_allocated_only_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    // Header and zip entry both declare (131072, 1024) float32 = 512 MiB (under the
    // default limit); the deflated data holds 64 KiB of it. Its CRC is right for what it
    // holds, so only the early end gives it away.
    let header = npy_header("<f4", &[131_072, 1024]);
    let mut entry = header.clone();
    entry.extend(f32_bytes((0..16_384).map(|i| i as f32)));
    let path = archive(
        dir.path(),
        "truncated.npz",
        &[("inputs", entry)],
        CompressionMethod::Deflated,
    );
    declare_uncompressed_size(&path, (header.len() + (512 << 20)) as u32);

    let (result, peak) = peak_allocation(|| GoldenSet::from_npz(&path));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, GoldenError::Truncated { array, expected: 536_870_912, found: 65_536, .. } if array == "inputs"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "array `inputs` in {} ends after 65536 of its 536870912 data bytes",
            shown(&path)
        )
    );
    assert!(peak < 2 * MIB, "loading allocated {peak} bytes at once");
}

#[test]
fn a_corrupted_payload_fails_its_crc_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut entry = npy_header("<f4", &[2, 2]);
    entry.extend(f32_bytes([1.0, 2.0, 3.0, 4.0]));
    let path = archive(
        dir.path(),
        "crc.npz",
        &[("inputs", entry)],
        CompressionMethod::Stored,
    );
    let mut bytes = fs::read(&path).unwrap();
    // Flip a bit in the last float: stored data follows the 30-byte local header, its
    // name and extra field (lengths at offsets 26 and 28), and the 128-byte .npy header.
    let field = |at: usize| usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
    let last = 30 + field(26) + field(28) + 128 + 15;
    bytes[last] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "golden set {} is not a valid .npz archive (inputs): Invalid checksum",
            shown(&path)
        )
    );
}

#[test]
fn a_header_nested_deeper_than_a_numpy_header_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let nested = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}1,{}, }}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let path = archive(
        dir.path(),
        "nested.npz",
        &[("inputs", npy_header_text(&nested))],
        CompressionMethod::Stored,
    );
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "golden set {} is not a valid .npz archive (inputs): .npy header nests 5001 levels deep (at most 3 are read)",
            shown(&path)
        )
    );
}

#[test]
fn a_header_length_over_the_limit_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    // Format version 2: a 4-byte header length, here 100 MB.
    let mut entry = b"\x93NUMPY\x02\x00".to_vec();
    entry.extend_from_slice(&100_000_000u32.to_le_bytes());
    entry.extend_from_slice(b"{'descr': '<f4'");
    let path = archive(
        dir.path(),
        "long.npz",
        &[("inputs", entry)],
        CompressionMethod::Stored,
    );
    let (result, peak) = peak_allocation(|| GoldenSet::from_npz(&path));
    assert_eq!(
        result.unwrap_err().to_string(),
        format!(
            "golden set {} is not a valid .npz archive (inputs): .npy header declares 100000000 bytes, over the 65536-byte limit",
            shown(&path)
        )
    );
    assert!(peak < MIB, "{peak}");
}

#[test]
fn an_entry_that_is_not_npy_is_corrupt_naming_the_array() {
    let dir = tempfile::tempdir().unwrap();
    let path = archive(
        dir.path(),
        "text.npz",
        &[("inputs", b"hello, not an array".to_vec())],
        CompressionMethod::Stored,
    );
    assert_eq!(
        GoldenSet::from_npz(&path).unwrap_err().to_string(),
        format!(
            "golden set {} is not a valid .npz archive (inputs): not a .npy array (bad magic bytes)",
            shown(&path)
        )
    );
}

#[test]
fn a_wrong_rank_is_refused_from_the_header_before_the_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    // Declares 3-D data it does not hold: refused for its rank, nothing read.
    let entry = npy_header("<f4", &[10, 10, 10]);
    let path = archive(
        dir.path(),
        "rank3.npz",
        &[("inputs", entry)],
        CompressionMethod::Stored,
    );
    assert_eq!(
        GoldenSet::from_npz(&path).unwrap_err().to_string(),
        format!(
            "array `inputs` in {} must be 2-dimensional, but has 3 dimensions",
            shown(&path)
        )
    );
}

#[test]
fn big_endian_and_fortran_order_arrays_load_with_their_values() {
    let dir = tempfile::tempdir().unwrap();
    // Big-endian (3, 2) float32, C order: rows [0, 1], [2, 3], [4, 5].
    let mut be = npy_header(">f4", &[3, 2]);
    be.extend((0..6).flat_map(|i| (i as f32).to_be_bytes()));
    // Little-endian (3, 2) float32 in Fortran order: column-major 0, 2, 4, 1, 3, 5.
    let mut fortran = npy_header_text("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }");
    fortran.extend(f32_bytes([0.0, 2.0, 4.0, 1.0, 3.0, 5.0]));
    let mut labels = npy_header(">i8", &[3]);
    labels.extend([2i64, 0, 1].iter().flat_map(|l| l.to_be_bytes()));
    let path = archive(
        dir.path(),
        "orders.npz",
        &[("inputs", be), ("expected", fortran), ("labels", labels)],
        CompressionMethod::Deflated,
    );
    let g = GoldenSet::npz(&path)
        .labels("labels")
        .expected("expected")
        .load()
        .unwrap();
    let want = ndarray::array![[0f32, 1.0], [2.0, 3.0], [4.0, 5.0]];
    assert_eq!(g.inputs(), want);
    assert_eq!(g.expected().unwrap(), want);
    assert_eq!(g.labels().unwrap(), ndarray::array![2i64, 0, 1]);
}
