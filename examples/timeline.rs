//! Draws the load test's timeline: latency (p50, p99) and throughput (requests/s, non-2xx)
//! per interval, with every admin event as a vertical marker — as an SVG, through plotters'
//! SVG backend (no gnuplot, no fonts to install).
//!
//! ```text
//! cargo run --release --example timeline -- --requests DIR --events FILE --out timeline.svg
//! ```
//!
//! `scripts/loadtest.sh` runs it after its measurement. Its inputs come from that run:
//!
//! - `--requests DIR`: every request the load generator made, one line each, written by the
//!   load generator itself (wrk, through the script's Lua hooks, one connection per wrk
//!   thread so that each answer is matched to its request): `END_US LATENCY_US STATUS`,
//!   microseconds on the monotonic clock. One file per wrk run and thread, named
//!   `<NN>-<phase>.<thread>.tsv` (`03-churn.2.tsv`); the phase names the span drawn behind
//!   the curves.
//! - `--events FILE`: admin events, tab-separated `T_US KIND SOURCE VERSIONS DETAIL` on the
//!   same clock: `stage`, `swap`, `rollback`, `refused` (timed by the admin client as the
//!   service answered), `auto-rollback` (the service's own record of it, read from
//!   `/admin/.../status`) and `stable` (a bake window passed, seen by polling the status).
//!   Events whose SOURCE is `churn` are drawn as thin unlabelled ticks: there are hundreds.
//!
//! Per interval (`--bin-ms`, default 100 ms) an hdrhistogram of the latencies of the
//! requests that *finished* in it gives p50 and p99; requests/s divides the count by the
//! time within the interval during which the load generator ran (so the gaps between wrk
//! runs do not show as dips). `--csv` writes the series it drew.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Longest line accepted in an input file.
const MAX_LINE: u64 = 4096;
/// Most intervals drawn (an hour at 100 ms): the span of the input is bounded by this.
const MAX_BINS: usize = 36_000;
/// Latencies above this (µs, a minute; wrk's timeout is 5 s) are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Draw the load test's timeline as an SVG
#[derive(Debug, Parser)]
#[command(name = "timeline")]
struct Flags {
    /// Directory of per-request records (`<NN>-<phase>.<thread>.tsv`)
    #[arg(long, value_name = "DIR")]
    requests: PathBuf,
    /// Admin events (`T_US KIND SOURCE VERSIONS DETAIL`, tab-separated)
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// The SVG to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the series drawn, as CSV
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Interval length
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    bin_ms: u64,
    /// Draw only the span of the runs of this phase (e.g. `scenario`)
    #[arg(long, value_name = "NAME")]
    phase: Option<String>,
    /// Title above the plot
    #[arg(long, default_value = "bluegreen serve under load")]
    title: String,
    /// Picture width in pixels
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(300..=10_000))]
    width: u32,
    /// Picture height in pixels
    #[arg(long, default_value_t = 620, value_parser = clap::value_parser!(u32).range(200..=10_000))]
    height: u32,
}

/// Why no picture was drawn.
#[derive(Debug, thiserror::Error)]
enum TimelineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why}")]
    Parse {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{0}: not a request file name (expected <NN>-<phase>.<thread>.tsv)")]
    FileName(PathBuf),
    #[error("no request records in {0}")]
    Empty(PathBuf),
    #[error("no runs of phase {0:?} in the request records")]
    NoPhase(String),
    #[error("the records span more than {MAX_BINS} intervals")]
    TooLong,
    #[error("drawing: {0}")]
    Draw(String),
}

/// One interval's requests.
struct Bin {
    latency: Histogram<u32>,
    count: u64,
    non2xx: u64,
}

/// One wrk run (all its threads): its phase and the time it generated load.
#[derive(Debug, Clone)]
struct Run {
    phase: String,
    start: u64,
    end: u64,
}

/// One admin event.
#[derive(Debug, Clone)]
struct Event {
    t: u64,
    kind: String,
    source: String,
    versions: String,
}

const KINDS: &[&str] = &[
    "stage",
    "swap",
    "rollback",
    "auto-rollback",
    "refused",
    "stable",
];

/// Reads `path` line by line (each at most `MAX_LINE` bytes), calling `f(line_no, text)`.
fn each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), String>,
) -> Result<(), TimelineError> {
    let io = |source| TimelineError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut buf = Vec::new();
    for line in 1.. {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        let parse = |why: String| TimelineError::Parse {
            path: path.to_owned(),
            line,
            why,
        };
        if n as u64 > MAX_LINE {
            return Err(parse(format!("line longer than {MAX_LINE} bytes")));
        }
        let text = std::str::from_utf8(&buf).map_err(|e| parse(e.to_string()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.is_empty() {
            f(line, text).map_err(parse)?;
        }
    }
    Ok(())
}

/// `03-churn.2.tsv` → ("03-churn", "churn").
fn run_of(path: &Path) -> Option<(String, String)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".tsv")?;
    let (run, thread) = name.rsplit_once('.')?;
    let (seq, phase) = run.split_once('-')?;
    let ok = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    (ok(seq, b"") && ok(phase, b"_-") && thread.bytes().all(|c| c.is_ascii_digit()))
        .then(|| (run.to_owned(), phase.to_owned()))
}

/// Reads every request file: the intervals (keyed by absolute interval number) and the runs.
fn read_requests(dir: &Path, bin_us: u64) -> Result<(BTreeMap<u64, Bin>, Vec<Run>), TimelineError> {
    let io = |source| TimelineError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    files.retain(|p| p.extension().is_some_and(|e| e == "tsv"));
    files.sort();
    let mut bins: BTreeMap<u64, Bin> = BTreeMap::new();
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    for path in &files {
        let (run, phase) = run_of(path).ok_or_else(|| TimelineError::FileName(path.clone()))?;
        let mut too_long = false;
        each_line(path, |_, text| {
            let mut fields = text.split_ascii_whitespace();
            let mut next = |what: &str| -> Result<u64, String> {
                let f = fields.next().ok_or_else(|| format!("missing {what}"))?;
                f.parse().map_err(|e| format!("{what} {f:?}: {e}"))
            };
            let end = next("end time")?;
            let latency = next("latency")?;
            let status = next("status")?;
            if fields.next().is_some() {
                return Err("more than three fields".to_owned());
            }
            if !(100..=599).contains(&status) {
                return Err(format!("status {status} is not an HTTP status"));
            }
            let start = end
                .checked_sub(latency)
                .ok_or_else(|| format!("latency {latency} µs is longer than the clock"))?;
            let r = runs.entry(run.clone()).or_insert_with(|| Run {
                phase: phase.clone(),
                start,
                end,
            });
            r.start = r.start.min(start);
            r.end = r.end.max(end);
            let bin = match bins.entry(end / bin_us) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    if too_long {
                        return Ok(());
                    }
                    v.insert(Bin {
                        latency: Histogram::new(2).map_err(|e| e.to_string())?,
                        count: 0,
                        non2xx: 0,
                    })
                }
            };
            // Auto-resizing: a histogram grows only as far as the largest latency it holds.
            bin.latency
                .record(latency.clamp(1, MAX_LATENCY_US))
                .map_err(|e| format!("latency {latency} µs: {e}"))?;
            bin.count += 1;
            bin.non2xx += u64::from(!(200..300).contains(&status));
            too_long = bins.len() >= MAX_BINS;
            Ok(())
        })?;
        if too_long {
            return Err(TimelineError::TooLong);
        }
    }
    if bins.is_empty() {
        return Err(TimelineError::Empty(dir.to_owned()));
    }
    let mut runs: Vec<Run> = runs.into_values().collect();
    runs.sort_by_key(|r| r.start);
    Ok((bins, runs))
}

fn read_events(path: &Path) -> Result<Vec<Event>, TimelineError> {
    let mut events = Vec::new();
    each_line(path, |_, text| {
        let f: Vec<&str> = text.split('\t').collect();
        if f.len() != 5 {
            return Err(format!("{} fields; expected 5, tab-separated", f.len()));
        }
        let t = f[0].parse().map_err(|e| format!("time {:?}: {e}", f[0]))?;
        if !KINDS.contains(&f[1]) {
            return Err(format!("unknown event kind {:?}", f[1]));
        }
        events.push(Event {
            t,
            kind: f[1].to_owned(),
            source: f[2].to_owned(),
            versions: f[3].to_owned(),
        });
        Ok(())
    })?;
    events.sort_by_key(|e| e.t);
    Ok(events)
}

/// One drawn interval: seconds from the start of the picture.
struct Point {
    t: f64,
    rps: f64,
    non2xx_ps: f64,
    p50_ms: f64,
    p99_ms: f64,
    phase: String,
}

/// The intervals between `from` and `to` (µs), with rates over the time wrk ran in each.
fn points(bins: &BTreeMap<u64, Bin>, runs: &[Run], bin_us: u64, from: u64, to: u64) -> Vec<Point> {
    let mut out = Vec::new();
    for (&k, bin) in bins.range(from / bin_us..=to / bin_us) {
        let (b0, b1) = (k * bin_us, (k + 1) * bin_us);
        let covered: u64 = runs
            .iter()
            .map(|r| r.end.min(b1).saturating_sub(r.start.max(b0)))
            .sum::<u64>()
            .min(bin_us);
        // An interval that wrk ran in for less than a tenth of it says little.
        if covered * 10 < bin_us {
            continue;
        }
        let secs = covered as f64 / 1e6;
        let phase = runs
            .iter()
            .find(|r| r.start < b1 && r.end > b0)
            .map_or("", |r| r.phase.as_str());
        out.push(Point {
            t: (b0 + bin_us / 2).saturating_sub(from) as f64 / 1e6,
            rps: bin.count as f64 / secs,
            non2xx_ps: bin.non2xx as f64 / secs,
            p50_ms: bin.latency.value_at_quantile(0.50) as f64 / 1e3,
            p99_ms: bin.latency.value_at_quantile(0.99) as f64 / 1e3,
            phase: phase.to_owned(),
        });
    }
    out
}

fn phase_color(phase: &str) -> RGBColor {
    match phase {
        "churn" => RGBColor(255, 170, 60),
        "scenario" => RGBColor(90, 150, 255),
        "warmup" => RGBColor(160, 160, 160),
        _ => RGBColor(200, 200, 200),
    }
}

fn event_style(kind: &str) -> (RGBColor, u32) {
    match kind {
        "swap" => (RGBColor(0, 150, 0), 2),
        "rollback" => (RGBColor(90, 90, 90), 2),
        "auto-rollback" => (RGBColor(220, 0, 0), 3),
        "refused" => (RGBColor(150, 0, 180), 2),
        "stable" => (RGBColor(0, 120, 170), 1),
        _ => (RGBColor(170, 170, 170), 1),
    }
}

fn draw(
    flags: &Flags,
    pts: &[Point],
    runs: &[Run],
    events: &[Event],
    from: u64,
    to: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let x_end = ((to - from) as f64 / 1e6).max(0.1);
    let sec = |t: u64| t.saturating_sub(from) as f64 / 1e6;
    // Room above the curves for the event labels (a log axis: a factor, not a margin).
    let lat_max = pts.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 6.0;
    let lat_min = pts
        .iter()
        .map(|p| p.p50_ms)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, 1.0)
        * 0.7;
    let rps_max = pts
        .iter()
        .map(|p| p.rps.max(p.non2xx_ps))
        .fold(1.0, f64::max)
        * 1.15;

    let root = SVGBackend::new(&flags.out, (flags.width, flags.height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&flags.title, ("sans-serif", 18))?;
    let (top, bottom) = root.split_vertically((flags.height - 30) * 3 / 5);

    let mut lat = ChartBuilder::on(&top)
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end, (lat_min..lat_max).log_scale())?;
    lat.configure_mesh()
        .y_desc("latency (ms), per interval")
        .x_labels(12)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let mut thr = ChartBuilder::on(&bottom)
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end, 0.0..rps_max)?;
    thr.configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_labels(12)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    // Phases behind the curves, named along the bottom.
    for r in runs.iter().filter(|r| r.end > from && r.start < to) {
        let (x0, x1) = (sec(r.start.max(from)), sec(r.end.min(to)));
        let fill = phase_color(&r.phase).mix(0.13).filled();
        lat.draw_series([Rectangle::new([(x0, lat_min), (x1, lat_max)], fill)])?;
        thr.draw_series([Rectangle::new([(x0, 0.0), (x1, rps_max)], fill)])?;
        thr.draw_series([Text::new(
            r.phase.clone(),
            (x0 + 0.05, rps_max * 0.04),
            ("sans-serif", 11)
                .into_font()
                .color(&RGBColor(110, 110, 110)),
        )])?;
    }

    // Events: every one a vertical line; outside the churn windows also labelled.
    let mut labelled = 0usize;
    for e in events.iter().filter(|e| e.t >= from && e.t <= to) {
        let churn = e.source == "churn";
        if churn && e.kind != "swap" {
            continue; // its stage and rollback are milliseconds away: one tick per cycle
        }
        let x = sec(e.t);
        let (color, width) = if churn {
            (RGBColor(255, 140, 0), 1)
        } else {
            event_style(&e.kind)
        };
        let style = color
            .mix(if churn { 0.35 } else { 0.9 })
            .stroke_width(width);
        lat.draw_series([PathElement::new([(x, lat_min), (x, lat_max)], style)])?;
        thr.draw_series([PathElement::new([(x, 0.0), (x, rps_max)], style)])?;
        if !churn && e.kind != "stage" {
            // Stagger labels over four rows so that close events stay readable.
            let row = (labelled % 4) as f64;
            let y = lat_max / 1.12 / 1.35f64.powf(row);
            let label = format!("{} {}", e.kind, e.versions);
            // Right of its line, or left of it near the right edge.
            let (pos, dx) = if x > x_end * 0.85 {
                (Pos::new(HPos::Right, VPos::Top), -x_end * 0.003)
            } else {
                (Pos::new(HPos::Left, VPos::Top), x_end * 0.003)
            };
            let font = ("sans-serif", 12).into_font().color(&color).pos(pos);
            lat.draw_series([Text::new(label, (x + dx, y), font)])?;
            labelled += 1;
        }
    }

    // A line per run of consecutive intervals: no line drawn across a gap without load.
    let gap = flags.bin_ms as f64 / 1e3 * 1.5;
    let mut segments: Vec<&[Point]> = Vec::new();
    let mut begin = 0;
    for i in 1..=pts.len() {
        if i == pts.len() || pts[i].t - pts[i - 1].t > gap {
            segments.push(&pts[begin..i]);
            begin = i;
        }
    }
    type Value = fn(&Point) -> f64;
    let lines: [(&str, RGBColor, Value, bool); 4] = [
        ("p99", RGBColor(230, 110, 0), |p| p.p99_ms, true),
        ("p50", RGBColor(30, 90, 200), |p| p.p50_ms, true),
        ("requests/s", RGBColor(0, 130, 70), |p| p.rps, false),
        ("non-2xx/s", RED, |p| p.non2xx_ps, false),
    ];
    for (name, color, value, latency) in lines {
        for (k, seg) in segments.iter().enumerate() {
            let style = color.stroke_width(2);
            let drawn = if latency {
                let series = seg.iter().map(|p| (p.t, value(p).max(lat_min)));
                lat.draw_series(LineSeries::new(series, style))?
            } else {
                thr.draw_series(LineSeries::new(seg.iter().map(|p| (p.t, value(p))), style))?
            };
            if k == 0 {
                drawn
                    .label(name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
            }
        }
    }
    lat.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    thr.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

fn csv(pts: &[Point]) -> String {
    let mut s = String::from("t_s,requests_per_s,non2xx_per_s,p50_ms,p99_ms,phase\n");
    for p in pts {
        let _ = writeln!(
            s,
            "{:.3},{:.1},{:.1},{:.3},{:.3},{}",
            p.t, p.rps, p.non2xx_ps, p.p50_ms, p.p99_ms, p.phase
        );
    }
    s
}

fn run(flags: &Flags) -> Result<String, TimelineError> {
    let bin_us = flags.bin_ms * 1000;
    let (bins, runs) = read_requests(&flags.requests, bin_us)?;
    let events = match &flags.events {
        Some(path) => read_events(path)?,
        None => Vec::new(),
    };
    let chosen: Vec<&Run> = match &flags.phase {
        Some(phase) => runs.iter().filter(|r| &r.phase == phase).collect(),
        None => runs.iter().collect(),
    };
    let (Some(from), Some(to)) = (
        chosen.iter().map(|r| r.start).min(),
        chosen.iter().map(|r| r.end).max(),
    ) else {
        return Err(TimelineError::NoPhase(
            flags.phase.clone().unwrap_or_default(),
        ));
    };
    let pts = points(&bins, &runs, bin_us, from, to);
    draw(flags, &pts, &runs, &events, from, to).map_err(|e| TimelineError::Draw(e.to_string()))?;
    if let Some(path) = &flags.csv {
        std::fs::write(path, csv(&pts)).map_err(|source| TimelineError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let shown = events.iter().filter(|e| e.t >= from && e.t <= to).count();
    Ok(format!(
        "{}: {:.1} s, {} intervals of {} ms, {} events",
        flags.out.display(),
        (to - from) as f64 / 1e6,
        pts.len(),
        flags.bin_ms,
        shown
    ))
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(&flags) {
        Ok(summary) => {
            println!("timeline: wrote {summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("timeline: {e}");
            ExitCode::FAILURE
        }
    }
}
