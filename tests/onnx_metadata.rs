//! A model's custom metadata is read in one pass and within limits: a hostile model with
//! tens of thousands of entries (or huge ones) loads, keeps what the limits allow, and
//! says what it left out. The models are written at test time (`onnx_graphs`).
#![cfg(feature = "onnx")]

mod onnx_graphs;

use bluegreen::Model;
use bluegreen::onnx::{Inputs, OnnxConfig, ndarray::Array2};

const DROPPED: &str = "bluegreen.metadata_dropped";

fn config() -> OnnxConfig {
    OnnxConfig::new().pool_size(1)
}

#[test]
fn twenty_thousand_metadata_entries_load_and_only_the_first_1024_are_kept() {
    let bytes = onnx_graphs::plain_classifier(&onnx_graphs::metadata(20_000, 10));
    let model = config().load_from_memory(&bytes).expect("loads");
    let meta = model.info().metadata;
    let custom: Vec<&String> = meta.keys().filter(|k| k.starts_with("key")).collect();
    assert_eq!(custom.len(), 1024);
    assert_eq!(custom.first().map(|k| k.as_str()), Some("key000000"));
    assert_eq!(custom.last().map(|k| k.as_str()), Some("key001023"));
    assert_eq!(meta["key000007"], "value7....");
    assert_eq!(
        meta[DROPPED],
        "18976 entries (436448 bytes) beyond the limits of 1024 entries / 1048576 bytes were not read"
    );
    assert_eq!(meta["onnx.producer_name"], "bluegreen-tests");
    // The model itself is unaffected.
    let out = model
        .predict(&Inputs::single(Array2::<f32>::zeros((2, 64))))
        .expect("predict");
    assert_eq!(out.i64("label").unwrap().len(), 2);
}

#[test]
fn raised_limits_read_every_one_of_twenty_thousand_entries_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    let entries = onnx_graphs::metadata(20_000, 10);
    std::fs::write(&path, onnx_graphs::plain_classifier(&entries)).unwrap();
    let model = config()
        .metadata_limits(20_000, 1 << 20)
        .load(&path)
        .expect("loads");
    let meta = model.info().metadata;
    assert!(!meta.contains_key(DROPPED), "{:?}", meta.get(DROPPED));
    for (k, v) in &entries {
        assert_eq!(meta.get(k), Some(v), "{k}");
    }
}

#[test]
fn huge_metadata_values_are_dropped_by_the_byte_limit_unread() {
    let big = onnx_graphs::metadata(10, 300_000); // 10 × ~300 KB
    let bytes = onnx_graphs::plain_classifier(&big);
    let model = config().load_from_memory(&bytes).expect("loads");
    let meta = model.info().metadata;
    let kept = meta.keys().filter(|k| k.starts_with("key")).count();
    assert_eq!(kept, 3, "3 × 300 KB fit in 1 MiB, a fourth does not");
    assert!(
        meta[DROPPED].starts_with("7 entries ("),
        "{}",
        meta[DROPPED]
    );
    let kept_bytes: usize = meta
        .iter()
        .filter(|(k, _)| k.starts_with("key"))
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert!(kept_bytes <= 1 << 20);
}

#[test]
fn metadata_limits_of_zero_keep_no_custom_entries_but_still_the_standard_fields() {
    let bytes = onnx_graphs::plain_classifier(&onnx_graphs::metadata(5, 4));
    let model = config()
        .metadata_limits(0, 0)
        .load_from_memory(&bytes)
        .expect("loads");
    let meta = model.info().metadata;
    assert!(!meta.keys().any(|k| k.starts_with("key")));
    assert!(meta[DROPPED].starts_with("5 entries ("));
    assert_eq!(meta["onnx.producer_name"], "bluegreen-tests");
}
