//! The intervals mean what they say: on simulated golden sets (fixed seeds), a 95 %
//! interval contains the true rate in about 95 % of draws, and the exact McNemar test
//! refuses a candidate that is truly no worse at most about `alpha` of the time. Bounds
//! are generous (nominal minus several standard errors of the simulation), so a pass is
//! not luck and a failure is a real miscalibration.

use bluegreen::gates::stats::{self, Paired};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

/// SplitMix64: a small, fixed, well-mixed generator for the simulations inside a case.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Successes in `n` trials of probability `p`.
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        (0..n).filter(|_| self.unit() < p).count() as u64
    }
}

/// Simulated golden sets per case; the coverage estimate's standard error is
/// √(0.95 · 0.05 / 400) ≈ 0.011.
const DRAWS: u32 = 400;

fn config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: 12,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0001))]

    #[test]
    fn wilson_95_covers_the_true_accuracy_in_about_95_percent_of_golden_sets(
        n in 30u64..500,
        p in 0.10f64..0.99,
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix(seed);
        let covered = (0..DRAWS)
            .filter(|_| stats::wilson(rng.binomial(n, p), n, 0.95).contains(p))
            .count() as f64
            / f64::from(DRAWS);
        // Wilson's coverage dips a little below nominal for some (n, p): allow 0.90.
        prop_assert!(covered >= 0.90, "n={n} p={p}: covered {covered}");
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0002))]

    #[test]
    fn clopper_pearson_95_covers_the_true_accuracy_at_least_as_often_as_stated(
        n in 30u64..500,
        p in 0.10f64..0.99,
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix(seed);
        let covered = (0..DRAWS)
            .filter(|_| stats::clopper_pearson(rng.binomial(n, p), n, 0.95).contains(p))
            .count() as f64
            / f64::from(DRAWS);
        // Guaranteed ≥ 0.95 in truth; 0.92 leaves three standard errors of simulation.
        prop_assert!(covered >= 0.92, "n={n} p={p}: covered {covered}");
    }
}

/// One simulated golden set of `n` examples: each is right only for the candidate with
/// probability `gain`, only for live with probability `loss`, else concordant.
fn paired_draw(rng: &mut SplitMix, n: u64, gain: f64, loss: f64) -> Paired {
    let (mut candidate_only, mut live_only) = (0, 0);
    for _ in 0..n {
        let u = rng.unit();
        if u < gain {
            candidate_only += 1;
        } else if u < gain + loss {
            live_only += 1;
        }
    }
    Paired {
        n,
        candidate_only,
        live_only,
    }
}

proptest! {
    #![proptest_config(config(0x5EED_0003))]

    #[test]
    fn the_paired_interval_covers_the_true_accuracy_difference_in_about_95_percent(
        n in 50u64..500,
        gain in 0.0f64..0.15,
        loss in 0.0f64..0.15,
        seed in any::<u64>(),
    ) {
        let mut rng = SplitMix(seed);
        let truth = gain - loss;
        let covered = (0..DRAWS)
            .filter(|_| stats::paired_difference(paired_draw(&mut rng, n, gain, loss), 0.95).contains(truth))
            .count() as f64
            / f64::from(DRAWS);
        prop_assert!(covered >= 0.90, "n={n} gain={gain} loss={loss}: covered {covered}");
    }

    #[test]
    fn exact_mcnemar_refuses_a_candidate_no_worse_than_live_at_most_about_alpha(
        n in 50u64..500,
        discordance in 0.01f64..0.2,
        seed in any::<u64>(),
    ) {
        // Equally good models: each discordant example is as likely to favour either.
        let mut rng = SplitMix(seed);
        let half = discordance / 2.0;
        let refused = (0..DRAWS)
            .filter(|_| {
                let p = paired_draw(&mut rng, n, half, half);
                stats::mcnemar(p.live_only, p.candidate_only).p_worse < 0.05
            })
            .count() as f64
            / f64::from(DRAWS);
        // The exact test is conservative (≤ 0.05 in truth); 0.085 is three standard
        // errors above.
        prop_assert!(refused <= 0.085, "n={n} d={discordance}: refused {refused}");
    }
}
