//! Section `affinity`: what session affinity costs a keyed call on a full table — a new
//! session (which must displace the oldest pin) against a session already pinned: one of
//! the most recently pinned, and one drawn at random from the table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bluegreen::{Affinity, BlueGreen};

use crate::common::{Trivial, median};
use crate::{Opts, Out};

/// Sessions the table holds (the default limit).
const SESSIONS: usize = 1_000_000;
/// Calls per timed batch.
const BATCH: u64 = 2_000;

/// `predict_keyed` with a known session vs a new one, on a table filled to its limit.
pub fn affinity(opts: &Opts, out: &mut Out) {
    let bg = BlueGreen::builder()
        .affinity(Affinity::new(Duration::from_secs(3600)).max_sessions(SESSIONS))
        .build("v0", Trivial { tag: 0 })
        .expect("deployment");
    let fill = Instant::now();
    let mut next = 0u64;
    while bg.status().sessions.unwrap_or(0) < SESSIONS {
        for _ in 0..100_000 {
            next += 1;
            black_box(bg.predict_keyed(next.to_le_bytes(), &next).ok());
        }
    }
    eprintln!(
        "# affinity: {SESSIONS} sessions pinned in {:.1?}",
        fill.elapsed()
    );
    // Known sessions two ways: the most recently pinned (their entries still in cache, the
    // flattering case), and drawn at random from the newest 90 % of the table (as cold as
    // the entry a new session displaces; the rounds below evict far fewer than 10 %).
    let known: Vec<[u8; 8]> = (1..=BATCH).map(|k| (next - k).to_le_bytes()).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    let spread: Vec<[u8; 8]> = (0..BATCH)
        .map(|_| {
            // xorshift64: any spread-out draw will do.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (next - x % (SESSIONS as u64 * 9 / 10)).to_le_bytes()
        })
        .collect();
    let (mut known_ns, mut new_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut spread_ns, mut spread_ratios) = (Vec::new(), Vec::new());
    for _ in 0..opts.rounds.max(5) {
        let started = Instant::now();
        for key in &known {
            black_box(bg.predict_keyed(key, &1).ok());
        }
        let k = started.elapsed().as_nanos() as f64 / BATCH as f64;
        let started = Instant::now();
        for key in &spread {
            black_box(bg.predict_keyed(key, &1).ok());
        }
        let sp = started.elapsed().as_nanos() as f64 / BATCH as f64;
        let started = Instant::now();
        for _ in 0..BATCH {
            next += 1;
            black_box(bg.predict_keyed(next.to_le_bytes(), &1).ok());
        }
        let n = started.elapsed().as_nanos() as f64 / BATCH as f64;
        known_ns.push(k);
        new_ns.push(n);
        ratios.push(n / k);
        spread_ns.push(sp);
        spread_ratios.push(n / sp);
    }
    assert_eq!(
        bg.status().sessions,
        Some(SESSIONS),
        "the table stays at its limit"
    );
    out.ns("affinity_known_key_full_table", median(&known_ns));
    out.ns("affinity_new_key_full_table", median(&new_ns));
    out.ns("affinity_spread_known_key_full_table", median(&spread_ns));
    out.ratio(
        "affinity_new_over_spread_known_key_full_table",
        median(&spread_ratios),
    );
    let ratio = median(&ratios);
    out.ratio("affinity_new_over_known_key_full_table", ratio);
    out.target("affinity_new_key_at_most_3x_known", ratio <= 3.0);
}
