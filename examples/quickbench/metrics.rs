//! Section `metrics` (feature `metrics`): what publishing through the `metrics` facade costs
//! `predict`. Paired, interleaved rounds on the trivial model, at 1 and 2 reader threads:
//!
//! - `off`: a deployment that publishes nothing (`metrics_interval(None)`), the baseline;
//! - `tick_1s`: the default, a collector thread publishing every second;
//! - `tick_1ms`: a collector publishing every millisecond — 1000× the default, so every
//!   ~1 ms chunk overlaps a publish that reads the readers' lanes;
//! - `off` again: the A/A reference for noise.
//!
//! A metrics-exporter-prometheus recorder is installed for the whole run, so the collector
//! really registers and updates series. The request path has no metrics code at all (the
//! lanes are the same with the feature on or off), so what this measures is the cost of a
//! publisher reading the lanes' cache lines while the readers write them.
//! `ns metrics_publish_*` is the wall time of one `publish_metrics()` call.

use std::time::{Duration, Instant};

use bluegreen::BlueGreen;

use super::series::{Series, interleave, noise_band};
use crate::common::{self, Load, ReadPath, Trivial, nanos};
use crate::{Opts, Out};

/// A deployment publishing at `interval` (or not at all).
struct Published(BlueGreen<Trivial>);

impl Published {
    fn new(interval: Option<Duration>) -> Self {
        let bg = BlueGreen::builder()
            .name(match interval {
                None => "bench_off".to_owned(),
                Some(d) => format!("bench_{}us", d.as_micros()),
            })
            .metrics_interval(interval)
            .build("v0", Trivial { tag: 0 })
            .expect("deployment");
        Published(bg)
    }
}

impl ReadPath for Published {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        let Ok(y) = self.0.predict(&x);
        y
    }
    fn replace(&self) {}
}

pub fn metrics(opts: &Opts, out: &mut Out) {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("a recorder for the run");
    let configs = [
        ("off", None),
        ("tick_1s", Some(Duration::from_secs(1))),
        ("tick_1ms", Some(Duration::from_millis(1))),
        ("off_again", None),
    ];
    for load in [Load::ONE, Load::TWO] {
        let paths: Vec<Published> = configs.iter().map(|(_, i)| Published::new(*i)).collect();
        let chunk_calls: Vec<u64> = paths
            .iter()
            .map(|p| {
                let r = common::run_chunks(p, load, 1, 100_000);
                let per_call = r.chunks[0].wall_ns_per_call.max(1e-3);
                ((nanos(opts.chunk) / per_call) as u64).clamp(1_000, 1 << 30)
            })
            .collect();
        let chunks = (opts.window.as_nanos() / opts.chunk.as_nanos()).max(1) as usize;
        let mut series: Vec<Series> = paths.iter().map(|_| Series::default()).collect();
        interleave(paths.len(), 2 * opts.rounds, |i| {
            series[i].record(&common::run_chunks(&paths[i], load, chunks, chunk_calls[i]));
        });
        let l = load.label();
        let (off, tick_1s, tick_1ms, off_again) = (&series[0], &series[1], &series[2], &series[3]);
        for ((name, _), s) in configs.iter().zip(&series) {
            out.ns(&format!("metrics_predict_{name}_{l}"), s.ns());
        }
        let default_ratio = tick_1s.ratio(off);
        out.ratio(&format!("metrics_on_vs_off_{l}"), default_ratio);
        out.ratio(&format!("metrics_tick_1ms_vs_off_{l}"), tick_1ms.ratio(off));
        out.ratio(&format!("metrics_off_aa_{l}"), off_again.ratio(off));
        let band = noise_band(off, off_again);
        out.ratio(&format!("metrics_noise_band_{l}"), band);
        let fewest = series.iter().map(Series::concurrent_chunks).min();
        out.count(
            &format!("metrics_concurrent_chunks_min_{l}"),
            fewest.unwrap_or(0) as u64,
        );
        let target = format!("metrics_predict_unchanged_{l}");
        if band.is_nan() || band > 0.10 || fewest.unwrap_or(0) < crate::MIN_TO_JUDGE {
            out.inconclusive(
                &target,
                &format!(
                    "A/A noise band {band:.3} (> 10 % or no paired rounds), {} concurrent chunks",
                    fewest.unwrap_or(0)
                ),
            );
        } else {
            out.target(&target, (default_ratio - 1.0).abs() <= band);
        }
        // One publish, timed: the lanes of every thread that called this deployment.
        let times: Vec<f64> = (0..200)
            .map(|_| {
                let started = Instant::now();
                paths[0].0.publish_metrics();
                nanos(started.elapsed())
            })
            .collect();
        out.ns(&format!("metrics_publish_{l}"), common::median(&times));
    }
    let rendered = handle.render();
    let series = rendered
        .lines()
        .filter(|l| l.starts_with("bluegreen_") && l.contains("model=\"bench_1000us\""))
        .count();
    out.count("metrics_series_published", series as u64);
}
