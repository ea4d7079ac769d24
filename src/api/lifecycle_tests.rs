use super::*;
use std::collections::BTreeSet;

/// The lifecycle, cell by cell: where each input takes each state (`None`: refused).
#[test]
fn the_lifecycle_as_a_table() {
    let cases: &[(State, Trigger, Option<State>)] = &[
        (Open, Trigger::Accept, Some(Accepted)),
        (Snoozed, Trigger::Accept, Some(Accepted)),
        (Ignored, Trigger::Accept, Some(Accepted)),
        (RevertFailed, Trigger::Accept, Some(Accepted)),
        (Accepted, Trigger::Accept, Some(Accepted)),
        (Reverting, Trigger::Accept, None),
        (IgnoredByRule, Trigger::Accept, None),
        (Stale, Trigger::Accept, None),
        (Reverted, Trigger::Accept, None),
        (New, Trigger::Accept, None),
        (Open, Trigger::Snooze, Some(Snoozed)),
        (Snoozed, Trigger::Snooze, Some(Snoozed)),
        (Ignored, Trigger::Snooze, None),
        (Reverting, Trigger::Snooze, None),
        (Open, Trigger::Ignore, Some(Ignored)),
        (Accepted, Trigger::Ignore, None),
        (RevertFailed, Trigger::Ignore, None),
        (Open, Trigger::Revert, Some(Reverting)),
        (RevertFailed, Trigger::Revert, Some(Reverting)),
        (Snoozed, Trigger::Revert, None),
        (Reverting, Trigger::Revert, None),
        (Reverting, Trigger::RevertingTurnedOff, Some(RevertFailed)),
        (Open, Trigger::RevertingTurnedOff, None),
        (New, Trigger::Drifts, Some(Open)),
        (Stale, Trigger::Drifts, Some(Open)),
        (Ignored, Trigger::Drifts, Some(Open)),
        (Open, Trigger::Drifts, None),
        (Reverting, Trigger::Drifts, None),
        (Open, Trigger::StillDrifts, Some(Open)),
        (Reverting, Trigger::StillDrifts, Some(Reverting)),
        (Stale, Trigger::StillDrifts, None),
        (Snoozed, Trigger::SnoozeEnded, Some(Open)),
        (Open, Trigger::RuleIgnores, Some(IgnoredByRule)),
        (Reverting, Trigger::RuleIgnores, None),
        (Open, Trigger::InSync, Some(Stale)),
        (Reverting, Trigger::InSync, Some(Stale)),
        (IgnoredByRule, Trigger::InSync, None),
        (Accepted, Trigger::InSync, None),
        (Ignored, Trigger::SpecMovedToLive, Some(Accepted)),
        (Reverting, Trigger::RevertSucceeded, Some(Reverted)),
        (Reverting, Trigger::RevertFailed, Some(RevertFailed)),
        (Reverting, Trigger::CompensationFailed, Some(RevertFailed)),
        (New, Trigger::RestoredSnooze, Some(Snoozed)),
        (New, Trigger::RestoredIgnore, Some(Ignored)),
        (Open, Trigger::RestoredIgnore, None),
    ];
    for (from, on, to) in cases {
        assert_eq!(next(*from, *on).map(|t| t.to), *to, "{from:?} on {on:?}");
    }
}

#[test]
fn each_state_and_input_has_at_most_one_row() {
    for from in State::ALL {
        let mut seen = BTreeSet::new();
        for t in TRANSITIONS.iter().filter(|t| t.from.contains(&from)) {
            assert!(seen.insert(t.on), "{from:?} on {:?} has two rows", t.on);
        }
    }
}

#[test]
fn every_state_is_reached_from_new_and_left_again() {
    let mut reached = BTreeSet::from([New]);
    loop {
        let more: BTreeSet<State> =
            TRANSITIONS.iter().filter(|t| t.from.iter().any(|f| reached.contains(f))).map(|t| t.to).collect();
        if more.is_subset(&reached) {
            break;
        }
        reached.extend(more);
    }
    assert_eq!(reached, State::ALL.into_iter().collect());
    for s in State::ALL {
        assert!(TRANSITIONS.iter().any(|t| t.from.contains(&s) && t.to != s), "{s:?} is a dead end");
    }
}

#[test]
fn the_ended_states_only_open_a_new_episode() {
    for s in [Stale, Reverted, IgnoredByRule] {
        let exits: Vec<Trigger> = TRANSITIONS.iter().filter(|t| t.from.contains(&s)).map(|t| t.on).collect();
        assert_eq!(exits, [Trigger::Drifts], "{s:?}");
    }
    // Accepted takes an accept again (a retried annotation) and nothing else.
    let exits: Vec<Trigger> = TRANSITIONS.iter().filter(|t| t.from.contains(&Accepted)).map(|t| t.on).collect();
    assert_eq!(exits, [Trigger::Accept, Trigger::Drifts]);
}

#[test]
fn every_move_is_announced_and_every_ending_state_is_closed() {
    for t in TRANSITIONS {
        if t.from != [t.to] {
            assert!(!t.event.is_empty(), "{:?} -> {:?} on {:?} has no Event", t.from, t.to, t.on);
        }
        if t.ends_episode {
            assert!(matches!(t.to, Accepted | Stale | Reverted | IgnoredByRule), "{t:?}");
        }
    }
}

#[test]
fn a_reverting_drift_takes_no_decision_but_is_never_stuck() {
    for on in [Trigger::Accept, Trigger::Snooze, Trigger::Ignore, Trigger::Revert] {
        assert!(next(Reverting, on).is_none(), "{on:?}");
    }
    assert!(next(Reverting, Trigger::RevertingTurnedOff).is_some());
}

fn steps_of(step: Step) -> impl Iterator<Item = &'static Transition> {
    TRANSITIONS.iter().filter(move |t| t.on.step() == step)
}

#[test]
fn the_steps_run_in_an_order_the_table_justifies() {
    let position = |s: Step| STEPS.iter().position(|x| *x == s).unwrap();
    for t in TRANSITIONS {
        assert!(STEPS.contains(&t.on.step()), "{:?}", t.on);
    }
    assert_eq!(STEPS.len(), 4);
    // spec.desired is written before it is read.
    for (w, r) in STEPS.iter().flat_map(|w| STEPS.iter().map(move |r| (*w, *r))) {
        if w.writes_desired() && r.reads_desired() {
            assert!(position(w) < position(r), "{w:?} writes spec.desired after {r:?} reads it");
        }
    }
    // No decision leads a Drift into a state a later decision starts from.
    for (i, earlier) in STEPS.iter().enumerate() {
        let into: BTreeSet<State> = steps_of(*earlier).filter(|t| t.on.is_decision()).map(|t| t.to).collect();
        for later in &STEPS[i + 1..] {
            for t in steps_of(*later).filter(|t| t.on.is_decision()) {
                assert!(
                    t.from.iter().all(|s| !into.contains(s)),
                    "{earlier:?} leads into a state {:?} starts from",
                    t.on
                );
            }
        }
    }
    assert_eq!(STEPS.last(), Some(&Step::Compare));
}

#[test]
fn a_state_is_read_back_from_its_status() {
    for s in State::ALL.into_iter().filter(|s| *s != New) {
        let mut status = DriftStatus { phase: s.phase().unwrap(), ..Default::default() };
        if s == IgnoredByRule {
            status.ignored =
                vec![crate::api::IgnoredDifference { rule: "spec.ignore[0]".into(), field: "size".into() }];
        }
        assert_eq!(State::of(Some(&status)), s);
    }
    assert_eq!(State::of(None), New);
}
