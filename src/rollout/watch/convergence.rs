//! How far a watcher is from its target, counted in its own looks: the look that first read
//! the current target, the look at the end of which it was first live, and the refusal that
//! stands between them. A fleet's controller reads the refusal (deploy/k8s: the
//! `bluegreen_target_refused` gauge of the example service), and the look numbers bound
//! convergence by state, without a clock.

use super::events::{Refusal, WatchStatus};

/// The watcher thread's record; it writes the convergence fields of [`WatchStatus`].
#[derive(Debug, Default)]
pub(super) struct Convergence {
    /// The target as of the last look.
    target: Option<String>,
    /// The last refusal, and the look it happened in.
    refusal: Option<(u64, Refusal)>,
}

impl Convergence {
    /// A candidate was refused during look number `scan`.
    pub(super) fn refused(&mut self, refusal: &Refusal, scan: u64) {
        self.refusal = Some((scan, refusal.clone()));
    }

    /// At the end of look number `scan`, with `active` serving: updates
    /// [`WatchStatus::target_since_scan`], [`WatchStatus::converged_since_scan`] and
    /// [`WatchStatus::refusing`].
    pub(super) fn after_look(&mut self, st: &mut WatchStatus, active: &str, scan: u64) {
        if st.target != self.target {
            self.target.clone_from(&st.target);
            st.target_since_scan = st.target.as_ref().map(|_| scan);
            st.converged_since_scan = None;
        }
        let converged = st.target.as_deref().is_none_or(|t| t == active);
        if converged {
            self.refusal = None;
            st.converged_since_scan.get_or_insert(scan);
        } else {
            st.converged_since_scan = None;
        }
        // A refusal stands for the target it refused, from the look that read that target
        // on; an older one belongs to an earlier time the target was asked for.
        let since = st.target_since_scan.unwrap_or(0);
        st.refusing = self
            .refusal
            .as_ref()
            .filter(|(at, r)| *at >= since && st.target.as_ref() == Some(&r.version))
            .map(|(_, r)| r.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::{Backend, RefusalKind, WatchPolicy};

    fn status() -> WatchStatus {
        WatchStatus::before_first_look(
            "r".into(),
            None,
            WatchPolicy::AutoPromote,
            Backend::Poll,
            None,
        )
    }

    fn refusal(version: &str) -> Refusal {
        Refusal {
            version: version.to_owned(),
            kind: RefusalKind::Validation,
            reason: "accuracy".to_owned(),
            report: None,
            at: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn a_refusal_stands_until_the_target_changes_and_a_new_ask_starts_clean() {
        let mut c = Convergence::default();
        let mut st = status();
        st.target = Some("2".into());
        c.after_look(&mut st, "2", 1);
        assert_eq!(
            (st.target_since_scan, st.converged_since_scan),
            (Some(1), Some(1))
        );
        assert!(st.refusing.is_none());

        // Look 2 reads target 3 and refuses it: refusing, not converged.
        st.target = Some("3".into());
        c.refused(&refusal("3"), 2);
        c.after_look(&mut st, "2", 2);
        assert_eq!(st.target_since_scan, Some(2));
        assert_eq!(st.converged_since_scan, None);
        assert_eq!(st.refusing.as_ref().map(|r| r.version.as_str()), Some("3"));
        c.after_look(&mut st, "2", 3);
        assert!(st.refusing.is_some(), "stands on later looks");

        // Back to 2 (converged at once), then 3 again: the old refusal does not stand for
        // the new ask until the watcher refuses again.
        st.target = Some("2".into());
        c.after_look(&mut st, "2", 4);
        assert!(st.refusing.is_none());
        assert_eq!(st.converged_since_scan, Some(4));
        st.target = Some("3".into());
        c.after_look(&mut st, "2", 5);
        assert!(st.refusing.is_none(), "an earlier ask's refusal");
        assert_eq!(
            (st.target_since_scan, st.converged_since_scan),
            (Some(5), None)
        );
        c.refused(&refusal("3"), 6);
        c.after_look(&mut st, "2", 6);
        assert!(st.refusing.is_some());
    }

    #[test]
    fn converged_since_keeps_the_first_look_that_found_the_target_live() {
        let mut c = Convergence::default();
        let mut st = status();
        st.target = Some("4".into());
        c.after_look(&mut st, "3", 7);
        c.after_look(&mut st, "4", 8);
        c.after_look(&mut st, "4", 9);
        assert_eq!(
            (st.target_since_scan, st.converged_since_scan),
            (Some(7), Some(8))
        );
        // Moved away by hand: not converged any more.
        c.after_look(&mut st, "3", 10);
        assert_eq!(st.converged_since_scan, None);
    }
}
