//! Property test: random sequences of operations on a deployment agree, step by step,
//! with a small reference model of the state machine (which model answers, what the
//! standby slot holds, which error each refused operation returns, the counters).

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
    active: u64,
    /// (tag, state, passes the gate)
    standby: Option<(u64, SlotState, bool)>,
    swaps: u64,
    rollbacks: u64,
    rejections: u64,
}

impl Reference {
    /// Checks an operation that validates the staged candidate (`swap`, `start_canary`):
    /// the exact refusal unless a good candidate is staged, whose tag and result it
    /// returns for the caller to check.
    fn qualify<T>(&mut self, res: Result<T, Error>) -> Result<Option<(u64, T)>, TestCaseError> {
        match self.standby {
            None => prop_assert!(matches!(res, Err(Error::NothingStaged))),
            Some((tag, SlotState::Staged, true)) => return Ok(Some((tag, res.unwrap()))),
            Some((tag, SlotState::Staged, false)) => {
                prop_assert!(matches!(res, Err(Error::ValidationFailed(_))));
                self.standby = Some((tag, SlotState::Failed, false));
                self.rejections += 1;
            }
            Some((_, SlotState::Failed, _)) => {
                let refused = matches!(res, Err(Error::CandidateFailed { .. }));
                prop_assert!(refused);
            }
            Some((_, state, _)) => {
                let refused =
                    matches!(res, Err(Error::NotACandidate { state: s, .. }) if s == state);
                prop_assert!(refused);
            }
        }
        Ok(None)
    }
}

fn label(tag: u64) -> String {
    format!("m{tag}")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn deployment_agrees_with_reference_state_machine(ops in proptest::collection::vec(op(), 1..40)) {
        let t = Tracker::new();
        let bg: BlueGreen<Tracked> = BlueGreen::builder()
            .validator(tag_is_good())
            .drain_timeout(Duration::from_secs(1))
            .build(label(1), t.model(1))
            .unwrap();
        let mut r = Reference { active: 1, ..Reference::default() };
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
                    if let Some((canary, SlotState::Canary, _)) = r.standby {
                        let refused = matches!(&res, Err(Error::CanaryInProgress { version }) if *version == label(canary));
                        prop_assert!(refused);
                        continue;
                    }
                    prop_assert_eq!(res.unwrap().retired, r.standby.map(|(s, _, _)| label(s)));
                    r.standby = Some((tag, SlotState::Staged, good));
                }
                Op::StageActiveLabel => {
                    let err = bg.stage(label(r.active), t.model(999_999)).unwrap_err();
                    if matches!(r.standby, Some((_, SlotState::Canary, _))) {
                        prop_assert!(matches!(err, Error::CanaryInProgress { .. }), "{}", err);
                    } else {
                        prop_assert!(matches!(err, Error::VersionInUse { slot: "active", .. }), "{}", err);
                    }
                }
                Op::StageFailingLoader => {
                    let tag = next_tag;
                    next_tag += 1;
                    let err = bg
                        .stage_with(label(tag), || Err::<Tracked, _>("disk on fire"))
                        .unwrap_err();
                    if matches!(r.standby, Some((_, SlotState::Canary, _))) {
                        prop_assert!(matches!(err, Error::CanaryInProgress { .. }), "{}", err);
                        continue;
                    }
                    prop_assert!(matches!(err, Error::Load { .. }), "{}", err);
                    // The old standby was retired before the loader ran.
                    r.standby = None;
                }
                Op::Swap => {
                    if let Some((tag, rep)) = r.qualify(bg.swap())? {
                        prop_assert_eq!(rep.to, label(tag));
                        prop_assert_eq!(rep.from, label(r.active));
                        r.standby = Some((r.active, SlotState::Previous, true));
                        r.active = tag;
                        r.swaps += 1;
                    }
                }
                Op::Rollback => {
                    let res = bg.rollback();
                    match r.standby {
                        Some((tag, SlotState::Previous, good)) => {
                            let rep = res.unwrap();
                            prop_assert_eq!(rep.to, label(tag));
                            r.standby = Some((r.active, SlotState::RolledBack, good));
                            r.active = tag;
                            r.rollbacks += 1;
                        }
                        other => {
                            let expected = other.map(|(_, s, _)| s);
                            let refused = matches!(res, Err(Error::NothingToRollBack { standby }) if standby == expected);
                            prop_assert!(refused);
                        }
                    }
                }
                Op::Unstage if matches!(r.standby, Some((_, SlotState::Canary, _))) => {
                    let refused = matches!(bg.unstage(), Err(Error::CanaryInProgress { .. }));
                    prop_assert!(refused);
                }
                Op::Unstage => {
                    let retired = bg.unstage().unwrap();
                    prop_assert_eq!(retired, r.standby.map(|(s, _, _)| label(s)));
                    r.standby = None;
                }
                Op::Validate => {
                    let res = bg.validate();
                    match r.standby {
                        None => prop_assert!(matches!(res, Err(Error::NothingStaged))),
                        Some((_, SlotState::Staged | SlotState::Failed, good)) => {
                            prop_assert_eq!(res.unwrap().passed(), good);
                        }
                        Some(_) => {
                            let refused = matches!(res, Err(Error::NotACandidate { .. }));
                            prop_assert!(refused);
                        }
                    }
                }
                Op::StartCanary => {
                    if let Some((tag, rep)) = r.qualify(bg.start_canary(25.0))? {
                        prop_assert_eq!(rep.version, label(tag));
                        r.standby = Some((tag, SlotState::Canary, true));
                    }
                }
                Op::PromoteCanary => {
                    let res = bg.promote_canary();
                    match r.standby {
                        Some((tag, SlotState::Canary, good)) => {
                            prop_assert_eq!(res.unwrap().to, label(tag));
                            r.standby = Some((r.active, SlotState::Previous, good));
                            r.active = tag;
                            r.swaps += 1;
                        }
                        other => {
                            let expected = other.map(|(_, s, _)| s);
                            let refused = matches!(res, Err(Error::NoCanary { standby }) if standby == expected);
                            prop_assert!(refused);
                        }
                    }
                }
                Op::AbortCanary => {
                    let res = bg.abort_canary();
                    match r.standby {
                        Some((tag, SlotState::Canary, good)) => {
                            prop_assert!(res.is_ok());
                            r.standby = Some((tag, SlotState::Failed, good));
                        }
                        other => {
                            let expected = other.map(|(_, s, _)| s);
                            let refused = matches!(res, Err(Error::NoCanary { standby }) if standby == expected);
                            prop_assert!(refused);
                        }
                    }
                }
                Op::Predict => {}
            }

            // After every step: the right model answers and the status agrees.
            prop_assert_eq!(bg.predict(&5).unwrap(), (r.active, 5));
            // A key in the canary's 25 % ("k7" is in bucket < 2500 iff the canary gets it)
            // goes to the canary exactly while one runs.
            let canary = match r.standby {
                Some((tag, SlotState::Canary, _)) => Some(tag),
                _ => None,
            };
            let keyed: Vec<u64> = (0..40).map(|k| bg.predict_keyed(format!("k{k}"), &5).unwrap().0).collect();
            prop_assert!(keyed.iter().all(|&m| m == r.active || Some(m) == canary));
            prop_assert_eq!(keyed.iter().any(|&m| Some(m) == canary), canary.is_some());
            let s = bg.status();
            prop_assert_eq!(&s.active.version, &label(r.active));
            prop_assert_eq!(
                s.standby.map(|x| (x.version, x.state)),
                r.standby.map(|(tag, state, _)| (label(tag), state))
            );
            prop_assert_eq!((s.swaps, s.rollbacks, s.rejections), (r.swaps, r.rollbacks, r.rejections));
            prop_assert!(t.alive() <= 2, "stage_with never lets a third model exist");
        }
        drop(bg);
        prop_assert_eq!(t.alive(), 0);
        prop_assert_eq!(t.total_drops(), t.created());
    }
}
