//! Section `shadow`: what shadow traffic costs the caller at 1 thread, on the trivial model
//! (none, saturated, 1 %) and, with the backend, on the real models (none, saturated, real).

use super::series::{Series, interleave, noise_band};
use crate::common::{self, nanos};
use crate::{Opts, Out};

/// What shadow traffic costs the caller at 1 thread: the trivial model with no shadow, a
/// saturated shadow (every call mirrored to a slow worker through a queue of 4) and a 1 %
/// shadow; then (with the backend) the real models, v2 shadowing v1.
pub fn shadow(opts: &Opts, out: &mut Out) {
    use common::{Load, ShadowMode, ShadowPath};

    // `None` twice: the second is the A/A reference for noise.
    let modes = [
        ShadowMode::None,
        ShadowMode::Saturated,
        ShadowMode::OnePercent,
        ShadowMode::None,
    ];
    let paths: Vec<ShadowPath> = modes.iter().map(|m| ShadowPath::new(*m)).collect();
    let chunk_calls: Vec<u64> = paths
        .iter()
        .map(|p| {
            let r = common::run_chunks(p, Load::ONE, 1, 100_000);
            let per_call = r.chunks[0].wall_ns_per_call.max(1e-3);
            ((nanos(opts.chunk) / per_call) as u64).clamp(1_000, 1 << 30)
        })
        .collect();
    let chunks = (opts.window.as_nanos() / opts.chunk.as_nanos()).max(1) as usize;
    let mut series: Vec<Series> = paths.iter().map(|_| Series::default()).collect();
    interleave(paths.len(), 2 * opts.rounds, |i| {
        series[i].record(&common::run_chunks(
            &paths[i],
            Load::ONE,
            chunks,
            chunk_calls[i],
        ));
    });
    let (none, saturated, pct, none_again) = (&series[0], &series[1], &series[2], &series[3]);
    out.ns("shadow_none_1t", none.ns());
    out.ns("shadow_saturated_1t", saturated.ns());
    out.ns("shadow_1pct_1t", pct.ns());
    out.ratio("shadow_saturated_vs_none_1t", saturated.ratio(none));
    out.ratio("shadow_1pct_vs_none_1t", pct.ratio(none));
    out.ratio("shadow_none_aa_1t", none_again.ratio(none));
    out.ratio("shadow_noise_band_1t", noise_band(none, none_again));
    let fewest = series.iter().map(Series::concurrent_chunks).min();
    out.count(
        "shadow_unpreempted_chunks_min_1t",
        fewest.unwrap_or(0) as u64,
    );
    out.ns("shadow_saturated_added_1t", saturated.ns() - none.ns());
    out.ns("shadow_1pct_added_1t", pct.ns() - none.ns());
    for (mode, path) in modes.iter().zip(&paths).skip(1).take(2) {
        let s = path
            .shadow()
            .unwrap_or_else(|| panic!("{} has a shadow", mode.name()));
        out.count(&format!("shadow_{}_mirrored", mode.name()), s.mirrored);
        out.count(&format!("shadow_{}_dropped", mode.name()), s.dropped);
    }
    let dropped = paths[1].shadow().map_or(0, |s| s.dropped);
    out.target("shadow_saturated_dropped_gt_0", dropped > 0);

    #[cfg(feature = "onnx")]
    shadow_onnx(opts, out);
}

/// Digits v1 live, v2 staged: no shadow vs every call mirrored (queue of 4) to a slow
/// worker (saturated), and to the real v2 run flat out on the other core.
#[cfg(feature = "onnx")]
fn shadow_onnx(opts: &Opts, out: &mut Out) {
    use super::onnx::ONNX_CHUNK;
    use common::onnx::{OnnxShadow, OnnxShadowMode};

    common::onnx::environment();
    // `None` twice: the second is the A/A reference for noise.
    let modes = [
        OnnxShadowMode::None,
        OnnxShadowMode::Saturated,
        OnnxShadowMode::Real,
        OnnxShadowMode::None,
    ];
    let shadows: Vec<OnnxShadow> = modes.iter().map(|m| OnnxShadow::new(*m)).collect();
    let chunk_calls = shadows[0].calibrate(ONNX_CHUNK);
    let chunks = (4 * opts.window.as_nanos() / ONNX_CHUNK.as_nanos()).max(1) as usize;
    let mut series: Vec<Series> = shadows.iter().map(|_| Series::default()).collect();
    interleave(shadows.len(), opts.rounds + 3, |i| {
        series[i].record(&shadows[i].run(chunks, chunk_calls));
    });
    let (none, saturated, real, none_again) = (&series[0], &series[1], &series[2], &series[3]);
    out.ns("shadow_onnx_none_1t", none.ns());
    out.ns("shadow_onnx_saturated_1t", saturated.ns());
    out.ns("shadow_onnx_real_1t", real.ns());
    let ratio = saturated.ratio(none);
    out.ratio("shadow_onnx_saturated_vs_none_1t", ratio);
    out.ratio("shadow_onnx_real_vs_none_1t", real.ratio(none));
    out.ratio("shadow_onnx_none_aa_1t", none_again.ratio(none));
    let band = noise_band(none, none_again);
    out.ratio("shadow_onnx_noise_band_1t", band);
    for (mode, shadow) in modes.iter().zip(&shadows).skip(1).take(2) {
        if let Some(s) = shadow.shadow() {
            let name = mode.name();
            out.count(&format!("shadow_onnx_{name}_mirrored"), s.mirrored);
            out.count(&format!("shadow_onnx_{name}_dropped"), s.dropped);
            out.count(&format!("shadow_onnx_{name}_compared"), s.compared);
        }
    }
    if let Some(s) = shadows[2].shadow() {
        out.ratio("shadow_onnx_real_agreement", s.agreement);
    }
    out.ns(
        "shadow_onnx_copy_per_mirror",
        shadows[1].mirror_copy_ns(10_000),
    );
    let dropped = shadows[1].shadow().map_or(0, |s| s.dropped);
    if band.is_nan() || band > 0.10 || dropped == 0 {
        out.inconclusive(
            "shadow_onnx_saturated_within_noise_1t",
            &format!("A/A noise band {band:.3} (> 10 % or no paired rounds), {dropped} dropped"),
        );
    } else {
        out.target("shadow_onnx_saturated_within_noise_1t", ratio - 1.0 <= band);
    }
}
