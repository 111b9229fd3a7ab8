//! Property test: random sequences of operations on a deployment agree, step by step,
//! with a small reference model of the state machine (which model answers, what the
//! candidate and previous slots hold, which error each refused operation returns, the
//! counters, how many models are resident) — in the default and the memory-tight mode.

mod common;

use std::time::Duration;

use bluegreen::{BlueGreen, Error, SlotState};
use common::{Tracked, Tracker, tag_is_good};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

#[derive(Debug, Clone)]
enum Op {
    /// Stage a new model; `good` says whether it passes the gate.
    Stage {
        good: bool,
    },
    /// Stage a model under the active model's label (must be refused).
    StageActiveLabel,
    /// Stage through a loader that fails.
    StageFailingLoader,
    Swap,
    Rollback,
    Unstage,
    Validate,
    StartCanary,
    PromoteCanary,
    AbortCanary,
    Predict,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|b| Op::Stage { good: b }),
        1 => Just(Op::StageActiveLabel),
        1 => Just(Op::StageFailingLoader),
        4 => Just(Op::Swap),
        3 => Just(Op::Rollback),
        1 => Just(Op::Unstage),
        1 => Just(Op::Validate),
        2 => Just(Op::StartCanary),
        1 => Just(Op::PromoteCanary),
        1 => Just(Op::AbortCanary),
        2 => Just(Op::Predict),
    ]
}

/// The reference: what the deployment should look like.
#[derive(Debug, Default)]
struct Reference {
    /// `Builder::memory_tight`: the standby is one slot, retired by every stage.
    tight: bool,
    active: u64,
    /// (tag, state, passes the gate): staged, failed or canary.
    candidate: Option<(u64, SlotState, bool)>,
    /// (tag, state): previous or rolled-back.
    previous: Option<(u64, SlotState)>,
    swaps: u64,
    rollbacks: u64,
    rejections: u64,
}

impl Reference {
    fn canary(&self) -> Option<u64> {
        match self.candidate {
            Some((tag, SlotState::Canary, _)) => Some(tag),
            _ => None,
        }
    }

    /// What `Status::standby` shows: the candidate, else the previous model.
    fn standby(&self) -> Option<(u64, SlotState)> {
        self.candidate.map(|(t, s, _)| (t, s)).or(self.previous)
    }

    /// The models a stage retires, in order, and the slots it empties.
    fn stage_retires(&mut self) -> Vec<String> {
        let mut retired: Vec<String> = self
            .candidate
            .take()
            .map(|(t, _, _)| label(t))
            .into_iter()
            .collect();
        if self.tight || matches!(self.previous, Some((_, SlotState::RolledBack))) {
            retired.extend(self.previous.take().map(|(t, _)| label(t)));
        }
        retired
    }

    /// Checks an operation that validates the staged candidate (`swap`, `start_canary`):
    /// the exact refusal unless a good candidate is staged, whose tag and result it
    /// returns for the caller to check.
    fn qualify<T>(&mut self, res: Result<T, Error>) -> Result<Option<(u64, T)>, TestCaseError> {
        if let Some(canary) = self.canary() {
            let refused = matches!(&res, Err(Error::CanaryInProgress { version }) if *version == label(canary));
            prop_assert!(refused);
            return Ok(None);
        }
        match self.candidate {
            None => match self.previous {
                None => prop_assert!(matches!(res, Err(Error::NothingStaged))),
                Some((_, state)) => {
                    let refused =
                        matches!(res, Err(Error::NotACandidate { state: s, .. }) if s == state);
                    prop_assert!(refused);
                }
            },
            Some((tag, SlotState::Staged, true)) => return Ok(Some((tag, res.unwrap()))),
            Some((tag, SlotState::Staged, false)) => {
                prop_assert!(matches!(res, Err(Error::ValidationFailed(_))));
                self.candidate = Some((tag, SlotState::Failed, false));
                self.rejections += 1;
            }
            Some((_, SlotState::Failed, _)) => {
                let refused = matches!(res, Err(Error::CandidateFailed { .. }));
                prop_assert!(refused);
            }
            Some((_, state, _)) => prop_assert!(false, "unexpected candidate state {state}"),
        }
        Ok(None)
    }

    /// A qualified candidate (or promoted canary) `tag` becomes active.
    fn promote(&mut self, tag: u64) {
        self.previous = Some((self.active, SlotState::Previous));
        self.candidate = None;
        self.active = tag;
        self.swaps += 1;
    }

    fn no_canary(&self, res: Result<impl std::fmt::Debug, Error>) -> Result<(), TestCaseError> {
        let expected = self.standby().map(|(_, s)| s);
        let refused = matches!(res, Err(Error::NoCanary { standby }) if standby == expected);
        prop_assert!(refused);
        Ok(())
    }
}

fn label(tag: u64) -> String {
    format!("m{tag}")
}

fn run(tight: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let t = Tracker::new();
    let bg: BlueGreen<Tracked> = BlueGreen::builder()
        .validator(tag_is_good())
        .drain_timeout(Duration::from_secs(1))
        .memory_tight(tight)
        .build(label(1), t.model(1))
        .unwrap();
    let mut r = Reference {
        tight,
        active: 1,
        ..Reference::default()
    };
    let mut next_tag = 2u64;

    for op in ops {
        match op {
            Op::Stage { good } => {
                let tag = next_tag;
                next_tag += 1;
                let res = bg.stage_with(label(tag), || {
                    let m = t.model(tag);
                    Ok::<_, Error>(if good { m } else { m.bad() })
                });
                if let Some(canary) = r.canary() {
                    let refused = matches!(&res, Err(Error::CanaryInProgress { version }) if *version == label(canary));
                    prop_assert!(refused);
                    continue;
                }
                let retired = r.stage_retires();
                prop_assert_eq!(res.unwrap().retired, retired);
                r.candidate = Some((tag, SlotState::Staged, good));
            }
            Op::StageActiveLabel => {
                let err = bg.stage(label(r.active), t.model(999_999)).unwrap_err();
                if r.canary().is_some() {
                    prop_assert!(matches!(err, Error::CanaryInProgress { .. }), "{}", err);
                } else {
                    prop_assert!(
                        matches!(err, Error::VersionInUse { slot: "active", .. }),
                        "{}",
                        err
                    );
                }
            }
            Op::StageFailingLoader => {
                let tag = next_tag;
                next_tag += 1;
                let err = bg
                    .stage_with(label(tag), || Err::<Tracked, _>("disk on fire"))
                    .unwrap_err();
                if r.canary().is_some() {
                    prop_assert!(matches!(err, Error::CanaryInProgress { .. }), "{}", err);
                    continue;
                }
                prop_assert!(matches!(err, Error::Load { .. }), "{}", err);
                // What the stage retired went before the loader ran; the rollback target
                // survives unless the deployment is memory-tight.
                r.stage_retires();
            }
            Op::Swap => {
                if let Some((tag, rep)) = r.qualify(bg.swap())? {
                    prop_assert_eq!(rep.to, label(tag));
                    prop_assert_eq!(rep.from, label(r.active));
                    r.promote(tag);
                }
            }
            Op::Rollback => {
                let res = bg.rollback();
                match r.previous {
                    Some((tag, SlotState::Previous)) => {
                        let rep = res.unwrap();
                        prop_assert_eq!(rep.to, label(tag));
                        r.previous = Some((r.active, SlotState::RolledBack));
                        r.active = tag;
                        r.rollbacks += 1;
                    }
                    other => {
                        let expected = other.map(|(_, s)| s).or(r.candidate.map(|(_, s, _)| s));
                        let refused = matches!(res, Err(Error::NothingToRollBack { standby }) if standby == expected);
                        prop_assert!(refused);
                    }
                }
            }
            Op::Unstage if r.canary().is_some() => {
                let refused = matches!(bg.unstage(), Err(Error::CanaryInProgress { .. }));
                prop_assert!(refused);
            }
            Op::Unstage => {
                let retired = bg.unstage().unwrap();
                let expected = match r.candidate.take() {
                    Some((tag, _, _)) => Some(tag),
                    None => r.previous.take().map(|(tag, _)| tag),
                };
                prop_assert_eq!(retired, expected.map(label));
            }
            Op::Validate => {
                let res = bg.validate();
                match (r.candidate, r.previous) {
                    (Some((_, SlotState::Staged | SlotState::Failed, good)), _) => {
                        prop_assert_eq!(res.unwrap().passed(), good);
                    }
                    (None, None) => prop_assert!(matches!(res, Err(Error::NothingStaged))),
                    _ => {
                        let refused = matches!(res, Err(Error::NotACandidate { .. }));
                        prop_assert!(refused);
                    }
                }
            }
            Op::StartCanary => {
                if let Some((tag, rep)) = r.qualify(bg.start_canary(25.0))? {
                    prop_assert_eq!(rep.version, label(tag));
                    r.candidate = Some((tag, SlotState::Canary, true));
                }
            }
            Op::PromoteCanary => {
                let res = bg.promote_canary();
                match r.canary() {
                    Some(tag) => {
                        prop_assert_eq!(res.unwrap().to, label(tag));
                        r.promote(tag);
                    }
                    None => r.no_canary(res)?,
                }
            }
            Op::AbortCanary => {
                let res = bg.abort_canary();
                match r.candidate {
                    Some((tag, SlotState::Canary, good)) => {
                        prop_assert!(res.is_ok());
                        r.candidate = Some((tag, SlotState::Failed, good));
                    }
                    _ => r.no_canary(res)?,
                }
            }
            Op::Predict => {}
        }

        // After every step: the right model answers and the status agrees.
        prop_assert_eq!(bg.predict(&5).unwrap(), (r.active, 5));
        // A key in the canary's 25 % ("k7" is in bucket < 2500 iff the canary gets it)
        // goes to the canary exactly while one runs.
        let canary = r.canary();
        let keyed: Vec<u64> = (0..40)
            .map(|k| bg.predict_keyed(format!("k{k}"), &5).unwrap().0)
            .collect();
        prop_assert!(keyed.iter().all(|&m| m == r.active || Some(m) == canary));
        prop_assert_eq!(keyed.iter().any(|&m| Some(m) == canary), canary.is_some());
        let s = bg.status();
        prop_assert_eq!(&s.active.version, &label(r.active));
        let view = |x: Option<bluegreen::SlotStatus>| x.map(|x| (x.version, x.state));
        prop_assert_eq!(
            view(s.standby),
            r.standby().map(|(tag, state)| (label(tag), state))
        );
        prop_assert_eq!(
            view(s.candidate),
            r.candidate.map(|(tag, state, _)| (label(tag), state))
        );
        prop_assert_eq!(
            view(s.previous),
            r.previous.map(|(tag, state)| (label(tag), state))
        );
        prop_assert_eq!(
            (s.swaps, s.rollbacks, s.rejections),
            (r.swaps, r.rollbacks, r.rejections)
        );
        // Resident: the active model and what the two slots hold; a model the last step
        // retired may still be in the retirer's hands for a moment.
        let resident = 1 + usize::from(r.candidate.is_some()) + usize::from(r.previous.is_some());
        prop_assert!(
            common::wait_until(Duration::from_secs(5), || t.alive() == resident),
            "{} models alive, {resident} expected",
            t.alive()
        );
        let most = if tight { 2 } else { 3 };
        prop_assert!(resident <= most);
    }
    drop(bg);
    prop_assert_eq!(t.alive(), 0);
    prop_assert_eq!(t.total_drops(), t.created());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The default deployment: the previous model survives staged, failed and refused
    /// candidates.
    #[test]
    fn deployment_agrees_with_reference_state_machine(ops in proptest::collection::vec(op(), 1..40)) {
        run(false, ops)?;
    }

    /// A memory-tight deployment: one standby slot, at most two models resident.
    #[test]
    fn memory_tight_deployment_agrees_with_reference_state_machine(ops in proptest::collection::vec(op(), 1..40)) {
        run(true, ops)?;
    }
}
