//! The latency gate: candidate p99 per single-example call against a budget.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::golden_gates::Shared;
use crate::model::Model;
use crate::validation::validate::{Bound, Context, Validator, Verdict};

/// What the candidate's p99 latency is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatencyBudget {
    /// p99 per call at most this long.
    Absolute(Duration),
    /// p99 at most this multiple of the live model's p99, measured in the same run on the
    /// same examples (robust to a noisy or slower machine).
    RelativeToLive(f64),
}

/// Gate: candidate p99 latency per single-example call within a [`LatencyBudget`]. From
/// [`GoldenGates::latency`](super::GoldenGates::latency).
///
/// Calls alternate between the candidate and (for a relative budget) the live model, one
/// golden example at a time, so both see the same machine conditions. Both are warmed
/// first. The gate runs on a validator thread, not on request threads, but it does use a
/// core for its duration.
pub struct LatencyGate<M: Model> {
    shared: Arc<Shared<M>>,
    budget: LatencyBudget,
    samples: usize,
}

impl<M: Model> LatencyGate<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, budget: LatencyBudget) -> Self {
        Self {
            shared,
            budget,
            samples: 300,
        }
    }

    /// How many timed calls per model (default 300; golden examples are reused in turn).
    pub fn samples(mut self, samples: usize) -> Self {
        self.samples = samples.max(1);
        self
    }
}

const WARMUP_CALLS: usize = 20;

/// The exact nearest-rank p99 of a few hundred timed calls: sorting them is exact and
/// cheaper than filling an `hdrhistogram` (whose buckets would round the figure the gate
/// compares against its budget).
fn p99(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    let idx = ((times.len() as f64) * 0.99).ceil() as usize;
    times[idx.clamp(1, times.len()) - 1]
}

impl<M: Model> Validator<M> for LatencyGate<M> {
    fn name(&self) -> &str {
        "latency"
    }

    fn warm_up_inputs(&self) -> Vec<M::Input> {
        self.shared.warm_up_inputs()
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let golden = &self.shared.golden;
        let inputs: Vec<M::Input> = golden
            .batches(1)
            .take(self.samples.min(golden.len()))
            .map(|(_, row)| self.shared.binding.input(row))
            .collect();
        let compare = matches!(self.budget, LatencyBudget::RelativeToLive(_));
        let time = |model: &M, input: &M::Input| -> Result<Duration, String> {
            let t = Instant::now();
            model.predict(input).map_err(|e| e.to_string())?;
            Ok(t.elapsed())
        };
        for input in inputs.iter().cycle().take(WARMUP_CALLS) {
            if let Err(e) = time(cx.candidate(), input) {
                return Verdict::fail(format!("candidate failed: {e}"));
            }
            if compare && let Err(e) = time(cx.live(), input) {
                return Verdict::fail(format!("live model failed: {e}"));
            }
        }
        let (mut cand, mut live) = (Vec::new(), Vec::new());
        for input in inputs.iter().cycle().take(self.samples) {
            match time(cx.candidate(), input) {
                Ok(d) => cand.push(d),
                Err(e) => return Verdict::fail(format!("candidate failed: {e}")),
            }
            if compare {
                match time(cx.live(), input) {
                    Ok(d) => live.push(d),
                    Err(e) => return Verdict::fail(format!("live model failed: {e}")),
                }
            }
        }
        let cand_p99 = p99(cand);
        match self.budget {
            LatencyBudget::Absolute(budget) => Verdict::measure(
                cand_p99.as_secs_f64() * 1e6,
                Bound::AtMost(budget.as_secs_f64() * 1e6),
            )
            .with_detail(format!(
                "candidate p99 {cand_p99:.1?} over {} calls (µs)",
                self.samples
            )),
            LatencyBudget::RelativeToLive(k) => {
                let live_p99 = p99(live);
                let ratio = cand_p99.as_secs_f64() / live_p99.as_secs_f64().max(1e-9);
                Verdict::measure(ratio, Bound::AtMost(k)).with_detail(format!(
                    "candidate p99 {cand_p99:.1?} vs live {} p99 {live_p99:.1?} over {} calls each",
                    cx.live_version(),
                    self.samples
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_nearest_rank_percentile() {
        let times: Vec<_> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(p99(times), Duration::from_micros(99));
        assert_eq!(
            p99(vec![Duration::from_micros(7)]),
            Duration::from_micros(7)
        );
    }
}
