//! Small statistics helpers: nearest-rank median and percentile, durations as `f64`
//! nanoseconds. Exact figures over the few hundred measurements a bench keeps (sorted
//! copies), so no histogram crate: `hdrhistogram` would round them to its buckets.

use std::time::Duration;

/// Median of `xs` (NaN if empty).
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Nearest-rank percentile `p` (0..=100) of `xs` (NaN if empty).
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}
