//! Section `memory`: RSS after 10 and after 1000 stage + swap cycles of 1 MiB models, and
//! the most models ever alive (with `stage_with`, and with plain `stage`).

use crate::common::{self, Staging};
use crate::{Opts, Out};

/// RSS growth over 1000 cycles and the most models ever alive.
pub fn memory(_opts: &Opts, out: &mut Out) {
    let run = common::memory_cycles(&[10, 1000], Staging::StageWith, 1);
    let (early, late) = (run.rss_at(10).unwrap_or(0), run.rss_at(1000).unwrap_or(0));
    out.bytes("rss_after_10", early);
    out.bytes("rss_after_1000", late);
    let growth = run.rss_growth(10, 1000);
    out.ratio("rss_after_1000_over_10", growth);
    out.count("max_models_alive", run.max_alive as u64);
    out.count("models_alive_after_drop", run.alive_at_end as u64);
    out.target("rss_after_1000_le_1.05x_after_10", growth <= 1.05);
    out.target("max_models_alive_le_2", run.max_alive <= 2);

    // Plain `stage` builds the candidate before retiring the old standby: 3 for a moment.
    let plain = common::memory_cycles(&[100], Staging::Stage, 1);
    out.count("max_models_alive_plain_stage", plain.max_alive as u64);
}
