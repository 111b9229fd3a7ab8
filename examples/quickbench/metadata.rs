//! Section `metadata` (feature `onnx`): loading a model with 20 000 custom metadata
//! entries — default limits (the first 1 024 kept) and limits raised to read all of
//! them — against the same model with none. The models are written in memory by the
//! tests' protobuf encoder (`tests/onnx_graphs`).

use std::time::Instant;

use bluegreen::onnx::OnnxConfig;

use crate::common;
use crate::onnx_graphs;
use crate::{Opts, Out};

/// Custom metadata entries of the hostile model (the case reported at 30 s per load).
const ENTRIES: usize = 20_000;

/// Load times (median of rounds, configurations interleaved) and their ratios.
pub fn metadata(opts: &Opts, out: &mut Out) {
    common::onnx::environment();
    let plain = onnx_graphs::plain_classifier(&[]);
    let heavy = onnx_graphs::plain_classifier(&onnx_graphs::metadata(ENTRIES, 10));
    let load = |bytes: &[u8], all: bool| {
        let mut config = OnnxConfig::new().pool_size(1);
        if all {
            config = config.metadata_limits(ENTRIES, 1 << 20);
        }
        let started = Instant::now();
        let model = config.load_from_memory(bytes).expect("loads");
        let ms = started.elapsed().as_secs_f64() * 1e3;
        drop(model);
        ms
    };
    let (mut none, mut default, mut all) = (Vec::new(), Vec::new(), Vec::new());
    let (mut r_default, mut r_all) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds.max(5) {
        let n = load(&plain, false);
        let d = load(&heavy, false);
        let a = load(&heavy, true);
        none.push(n);
        default.push(d);
        all.push(a);
        r_default.push(d / n);
        r_all.push(a / n);
    }
    out.ms("load_no_metadata", common::median(&none));
    out.ms("load_20k_metadata_default_limits", common::median(&default));
    let all_ms = common::median(&all);
    out.ms("load_20k_metadata_all_read", all_ms);
    out.ratio(
        "load_20k_metadata_default_over_none",
        common::median(&r_default),
    );
    out.ratio("load_20k_metadata_all_over_none", common::median(&r_all));
    out.target("load_20k_metadata_under_1s", all_ms < 1000.0);
}
