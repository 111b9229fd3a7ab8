//! The statistics behind the gates, on cases computed by hand (each comment shows the
//! computation) or by an independent method (exact rational arithmetic, a numeric
//! profile-likelihood solve), so the figures in a report can be trusted.

use bluegreen::gates::stats::{self, Paired};
use bluegreen::gates::{Interval, IntervalMethod};

/// z for a two-sided 95 % interval: Φ⁻¹(0.975).
const Z95: f64 = 1.959_963_984_540_054;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-300)
}

fn assert_interval(iv: Interval, low: f64, high: f64, tol: f64) {
    assert!(
        (iv.low - low).abs() <= tol && (iv.high - high).abs() <= tol,
        "{iv:?}: expected [{low}, {high}]"
    );
}

#[test]
fn z_two_sided_is_the_normal_quantile_of_the_upper_tail() {
    assert!((stats::z_two_sided(0.95) - Z95).abs() < 1e-12);
    // Φ⁻¹(0.95) = 1.644854 (a 90 % two-sided interval).
    assert!((stats::z_two_sided(0.90) - 1.644_853_626_951_472).abs() < 1e-12);
    // Φ⁻¹(0.995) = 2.575829.
    assert!((stats::z_two_sided(0.99) - 2.575_829_303_548_901).abs() < 1e-12);
}

#[test]
fn exact_mcnemar_p_values_match_the_binomial_tails_computed_by_hand() {
    // b = 5 against the candidate, c = 0 for it: m = 5 discordant examples.
    // P(X ≥ 5 | Bin(5, ½)) = 1/2⁵ = 0.03125; two-sided 2 · 0.03125 = 0.0625.
    let t = stats::mcnemar(5, 0);
    assert_eq!((t.p_worse, t.p_two_sided), (0.031_25, 0.0625));

    // b = 7, c = 2: m = 9. P(X ≥ 7) = (C(9,7) + C(9,8) + C(9,9)) / 2⁹ = (36 + 9 + 1)/512
    // = 46/512 = 0.08984375; P(X ≤ 7) is larger, so two-sided = 92/512 = 0.1796875.
    let t = stats::mcnemar(7, 2);
    assert!(close(t.p_worse, 46.0 / 512.0, 1e-14), "{t:?}");
    assert!(close(t.p_two_sided, 92.0 / 512.0, 1e-14), "{t:?}");

    // The mirror image b = 2, c = 7: P(X ≥ 2) = 1 − (C(9,0) + C(9,1))/512 = 502/512; the
    // two-sided p-value is the same 92/512.
    let t = stats::mcnemar(2, 7);
    assert!(close(t.p_worse, 502.0 / 512.0, 1e-14), "{t:?}");
    assert!(close(t.p_two_sided, 92.0 / 512.0, 1e-14), "{t:?}");

    // The case: one example more wrong (53/54 vs 52/54 when the others agree):
    // b = 1, c = 0, P(X ≥ 1 | Bin(1, ½)) = ½ — no evidence of a regression at all.
    let t = stats::mcnemar(1, 0);
    assert_eq!((t.p_worse, t.p_two_sided), (0.5, 1.0));

    // No discordant example: nothing to test.
    let t = stats::mcnemar(0, 0);
    assert_eq!((t.p_worse, t.p_two_sided), (1.0, 1.0));
}

#[test]
fn exact_mcnemar_keeps_tiny_tails_that_a_direct_sum_would_underflow_or_round_away() {
    // v1 against v2 on the digits set: 35 only for v2, 4 only for v1 (m = 39).
    // P(X ≥ 35 | Bin(39, ½)) = (C(39,35) + … + C(39,39)) / 2³⁹
    //   = (82251 + 9139 + 741 + 39 + 1) / 549755813888 = 92171 / 549755813888.
    let t = stats::mcnemar(35, 4);
    assert!(
        close(t.p_worse, 92_171.0 / 549_755_813_888.0, 1e-12),
        "{t:?}"
    );
    // m = 1000: 2¹⁰⁰⁰ overflows f64, the log-space sum does not. Reference from exact
    // rational arithmetic (Σ_{i ≥ 600} C(1000, i) / 2¹⁰⁰⁰ with Python integers).
    let t = stats::mcnemar(600, 400);
    assert!(close(t.p_worse, 1.364_232_078_033_009_2e-10, 1e-9), "{t:?}");
    assert!(
        close(t.p_two_sided, 2.728_464_156_066_018_4e-10, 1e-9),
        "{t:?}"
    );
}

#[test]
fn wilson_intervals_match_the_closed_form_by_hand() {
    // 52 of 54, z = 1.959964, z² = 3.841459:
    //   centre = (52 + z²/2) / (54 + z²) = 53.920729 / 57.841459 = 0.932216
    //   half   = z · √(52·2/54 + z²/4) / (54 + z²) = 1.959964 · √2.886291 / 57.841459
    //          = 1.959964 · 1.698909 / 57.841459 = 0.057568
    //   → [0.874648, 0.989784]
    let iv = stats::wilson(52, 54, 0.95);
    assert_interval(iv, 0.874_648_230_827, 0.989_783_632_052, 1e-9);
    assert_eq!((iv.confidence, iv.method), (0.95, IntervalMethod::Wilson));

    // 439 of 450 (digits v2): centre = 440.920729/453.841459 = 0.971530,
    // half = 1.959964 · √(439·11/450 + 0.960365)/453.841459 = 1.959964·3.2252/453.8415
    // = 0.014767 → [0.956764, 0.986297].
    assert_interval(
        stats::wilson(439, 450, 0.95),
        0.956_763_766_928,
        0.986_296_836_465,
        1e-9,
    );

    // 0 of n: [0, z²/(n + z²)] = [0, 3.841459/57.841459] = [0, 0.066414] for n = 54;
    // n of n: [n/(n + z²), 1] = [54/57.841459, 1] = [0.933586, 1].
    assert_interval(stats::wilson(0, 54, 0.95), 0.0, 0.066_413_588_091, 1e-9);
    assert_interval(stats::wilson(54, 54, 0.95), 0.933_586_411_909, 1.0, 1e-9);
    // No examples: nothing is known.
    assert_interval(stats::wilson(0, 0, 0.95), 0.0, 1.0, 0.0);
}

#[test]
fn clopper_pearson_intervals_match_their_closed_forms_and_exact_tails() {
    // 0 of 54: upper = 1 − (α/2)^(1/n) = 1 − 0.025^(1/54) = 1 − e^(−3.688879/54)
    // = 1 − e^(−0.068313) = 0.066032; 54 of 54: lower = 0.025^(1/54) = 0.933968.
    let iv = stats::clopper_pearson(0, 54, 0.95);
    assert_interval(iv, 0.0, 1.0 - 0.025f64.powf(1.0 / 54.0), 1e-9);
    assert_eq!(iv.method, IntervalMethod::ClopperPearson);
    assert_interval(
        stats::clopper_pearson(54, 54, 0.95),
        0.025f64.powf(1.0 / 54.0),
        1.0,
        1e-9,
    );
    // 52 of 54: the p where P(X ≥ 52 | p) = 0.025 and where P(X ≤ 52 | p) = 0.025, solved
    // by bisection on the exact binomial sum: [0.872528, 0.995483]. Wider than Wilson's.
    let iv = stats::clopper_pearson(52, 54, 0.95);
    assert_interval(iv, 0.872_528_227_769, 0.995_482_743_706, 1e-7);
    assert!(iv.width() > stats::wilson(52, 54, 0.95).width());
}

#[test]
fn the_paired_score_interval_is_wilson_when_the_candidate_only_loses() {
    // With no example only the candidate gets right (c = 0), the score equation for the
    // drop δ reduces to (nδ − b)² = z² n δ(1 − δ): the Wilson bound of b of n. So the
    // candidate's gain has lower end −WilsonUpper(b, n).
    for (b, n) in [(1u64, 54u64), (5, 20), (3, 171), (10, 450)] {
        let iv = stats::paired_difference(
            Paired {
                n,
                candidate_only: 0,
                live_only: b,
            },
            0.95,
        );
        let wilson = stats::wilson(b, n, 0.95);
        assert!(
            (iv.low + wilson.high).abs() < 1e-9,
            "b={b} n={n}: {iv:?} vs {wilson:?}"
        );
        assert_eq!(iv.method, IntervalMethod::PairedScore);
    }
    // Nothing discordant in 450: ±z²/(n + z²) = ±3.841459/453.841459 = ±0.008464.
    let iv = stats::paired_difference(
        Paired {
            n: 450,
            candidate_only: 0,
            live_only: 0,
        },
        0.95,
    );
    assert_interval(iv, -0.008_464_318_863, 0.008_464_318_863, 1e-9);
}

#[test]
fn the_paired_score_interval_matches_an_independent_profile_likelihood_solve() {
    // References: the constrained multinomial MLE found numerically (golden-section
    // search on the log-likelihood, not the closed-form root used by the crate), the
    // score statistic (b − c − nδ)/√(n(2q̂ + δ − δ²)) set to ∓z by bisection.
    // Each case is (only candidate right, only live right, n) → the gain's interval.
    for (c, b, n, low, high) in [
        (35u64, 4u64, 450u64, 0.044_381_862_113, 0.098_431_319_588),
        (6, 6, 450, -0.017_188_639_613, 0.017_188_639_563),
        (1, 3, 54, -0.136_112_087_927, 0.050_636_113_547),
        (2, 10, 171, -0.094_396_122_043, -0.008_426_401_233),
    ] {
        let iv = stats::paired_difference(
            Paired {
                n,
                candidate_only: c,
                live_only: b,
            },
            0.95,
        );
        assert_interval(iv, low, high, 1e-7);
    }
}

#[test]
fn the_examples_a_bound_needs_match_the_inequalities_solved_by_hand() {
    // Non-inferiority passes identical predictions when z²/(n + z²) < margin, i.e.
    // n > z²(1 − m)/m: margin 0.01 → n > 3.841459 · 99 = 380.30 → 381;
    // margin 0.02 → n > 3.841459 · 49 = 188.23 → 189.
    assert_eq!(stats::non_inferiority_examples(0.01, 0.95), Some(381));
    assert_eq!(stats::non_inferiority_examples(0.02, 0.95), Some(189));
    assert_eq!(stats::non_inferiority_examples(0.0, 0.95), None);
    // Not-worse refuses only when ½^m < α: α = 0.05 → ½⁴ = 0.0625 ≥ α, ½⁵ = 0.03125 < α
    // → 5; α = 0.01 → ½⁶ = 0.0156, ½⁷ = 0.0078 → 7.
    assert_eq!(stats::not_worse_examples(0.05), Some(5));
    assert_eq!(stats::not_worse_examples(0.01), Some(7));
    assert_eq!(stats::not_worse_examples(0.0), None);
    // A Wilson lower end ≥ 0.95 with all right needs n/(n + z²) ≥ 0.95, i.e.
    // n ≥ 0.95 · 3.841459 / 0.05 = 72.99 → 73 (73/76.84 = 0.95001; 72/75.84 = 0.94935).
    assert_eq!(stats::lower_bound_examples(0.95, 0.95), Some(73));
    assert_eq!(stats::lower_bound_examples(1.0, 0.95), None);
}

#[test]
fn paired_counts_come_from_the_two_models_answers_and_the_truth() {
    let truth = [0, 1, 2, 3, 4, 5];
    let candidate = [0, 1, 2, 9, 9, 5]; // wrong on rows 3, 4
    let live = [0, 9, 2, 3, 9, 9]; // wrong on rows 1, 4, 5
    let p = Paired::count(&candidate, &live, &truth);
    assert_eq!(
        p,
        Paired {
            n: 6,
            candidate_only: 2, // rows 1, 5
            live_only: 1,      // row 3
        }
    );
    assert!((p.difference() - 1.0 / 6.0).abs() < 1e-15);
}
