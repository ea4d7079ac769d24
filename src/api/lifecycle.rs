//! The Drift lifecycle as data: every way a Drift's phase may change, in one
//! table ([`TRANSITIONS`]), and the order in which one reconcile takes the
//! inputs that change it ([`STEPS`]). The planner asks [`next`] before it
//! moves a Drift, so a move the table lacks cannot happen; the book's state
//! diagram (`docs/reference/lifecycle.md`) is rendered from the same table.

use super::{DriftPhase, DriftStatus};

/// Where a Drift stands: its phase, with the two kinds of Ignored told apart
/// (they leave differently), and `New` for a field that has no Drift yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    New,
    Open,
    Snoozed,
    /// Ignored by a person (`arcadia.cloud/ignore`), for as long as the live value stays the one ignored.
    Ignored,
    /// Ignored by a rule (`spec.ignore` or a DriftPolicy), named in `status.ignored`.
    IgnoredByRule,
    Accepted,
    Stale,
    Reverting,
    Reverted,
    RevertFailed,
}

impl State {
    pub const ALL: [State; 10] = [
        State::New,
        State::Open,
        State::Snoozed,
        State::Ignored,
        State::IgnoredByRule,
        State::Accepted,
        State::Stale,
        State::Reverting,
        State::Reverted,
        State::RevertFailed,
    ];

    pub fn of(status: Option<&DriftStatus>) -> State {
        let Some(s) = status else { return State::New };
        match s.phase {
            DriftPhase::Open => State::Open,
            DriftPhase::Snoozed => State::Snoozed,
            DriftPhase::Ignored if s.ignored.is_empty() => State::Ignored,
            DriftPhase::Ignored => State::IgnoredByRule,
            DriftPhase::Accepted => State::Accepted,
            DriftPhase::Stale => State::Stale,
            DriftPhase::Reverting => State::Reverting,
            DriftPhase::Reverted => State::Reverted,
            DriftPhase::RevertFailed => State::RevertFailed,
        }
    }

    /// The phase a Drift in this state shows; `None` for `New`.
    pub fn phase(self) -> Option<DriftPhase> {
        Some(match self {
            State::New => return None,
            State::Open => DriftPhase::Open,
            State::Snoozed => DriftPhase::Snoozed,
            State::Ignored | State::IgnoredByRule => DriftPhase::Ignored,
            State::Accepted => DriftPhase::Accepted,
            State::Stale => DriftPhase::Stale,
            State::Reverting => DriftPhase::Reverting,
            State::Reverted => DriftPhase::Reverted,
            State::RevertFailed => DriftPhase::RevertFailed,
        })
    }

    /// The name the diagram and the table show.
    pub fn name(self) -> &'static str {
        match self {
            State::IgnoredByRule => "IgnoredByRule",
            s => s.shown(),
        }
    }

    /// What a Drift in this state shows as its phase (`New` before it has one).
    pub fn shown(self) -> &'static str {
        self.phase().map_or("New", DriftPhase::as_str)
    }
}

/// What moves a Drift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// `arcadia.cloud/accept=true`.
    Accept,
    /// `arcadia.cloud/snooze-until`.
    Snooze,
    /// `arcadia.cloud/ignore=true`.
    Ignore,
    /// `arcadia.cloud/revert=<digest>`, approved.
    Revert,
    /// A running saga while reverting is turned off: no reverter will end it.
    RevertingTurnedOff,
    /// The field differs, and its Drift does not already hold the difference.
    Drifts,
    /// The field still differs, and its Drift holds it (following a moved value).
    StillDrifts,
    /// The snooze's time passed and the field still differs.
    SnoozeEnded,
    /// An ignore rule now covers the field.
    RuleIgnores,
    /// The field matches again (on fresh inventory).
    InSync,
    /// `spec.desired` moved to the live value (an accept made in Git).
    SpecMovedToLive,
    /// The saga finished and the field matches.
    RevertSucceeded,
    /// The saga failed, or finished yet the field still differs.
    RevertFailed,
    /// The saga failed and so did its compensation.
    CompensationFailed,
    /// The object lost its status; the decision journal kept a snooze.
    RestoredSnooze,
    /// The object lost its status; the decision journal kept an ignore.
    RestoredIgnore,
}

/// The parts of one reconcile that may move a Drift, in [`STEPS`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The accept annotations; the only step that changes `spec.desired`.
    Accept,
    /// The snooze and ignore annotations.
    Annotate,
    /// The revert approvals, and sagas no reverter will end.
    Revert,
    /// The comparison of `spec.desired` with the live value.
    Compare,
}

impl Trigger {
    pub fn step(self) -> Step {
        match self {
            Trigger::Accept => Step::Accept,
            Trigger::Snooze | Trigger::Ignore => Step::Annotate,
            Trigger::Revert | Trigger::RevertingTurnedOff => Step::Revert,
            _ => Step::Compare,
        }
    }

    /// A person's decision, carried by an annotation.
    pub fn is_decision(self) -> bool {
        matches!(self, Trigger::Accept | Trigger::Snooze | Trigger::Ignore | Trigger::Revert)
    }
}

impl Step {
    /// Whether the step reads `spec.desired` (with the accepts laid over it).
    pub fn reads_desired(self) -> bool {
        matches!(self, Step::Revert | Step::Compare)
    }

    pub fn writes_desired(self) -> bool {
        self == Step::Accept
    }
}

/// The order of one reconcile. Why this one, as tests check it: the step that
/// writes `spec.desired` runs before those that read it, and no decision
/// leads a Drift into a state a later decision starts from, so each Drift
/// takes at most one decision per reconcile; the comparison comes last, over
/// what the decisions made.
pub const STEPS: [Step; 4] = [Step::Accept, Step::Annotate, Step::Revert, Step::Compare];

/// One row of the lifecycle.
#[derive(Debug, PartialEq)]
pub struct Transition {
    pub from: &'static [State],
    pub on: Trigger,
    pub to: State,
    /// The Event's reason (on the Drift or its CloudProvisioned); empty when it moves quietly.
    pub event: &'static str,
    /// The episode ends: `status.resolvedTime` is set and a snooze is cleared.
    pub ends_episode: bool,
    /// When the row applies, in words, for the book.
    pub when: &'static str,
}

use State::*;

const ACTIVE: &[State] = &[Open, Snoozed];

pub const TRANSITIONS: &[Transition] = &[
    row(
        &[Open, Snoozed, Ignored, RevertFailed, Accepted],
        Trigger::Accept,
        Accepted,
        "DriftAccepted",
        true,
        "the live value is adopted (spec or overlay mode); an accept again is idempotent",
    ),
    row(ACTIVE, Trigger::Snooze, Snoozed, "DriftSnoozed", false, "the time is in the future"),
    row(ACTIVE, Trigger::Ignore, Ignored, "DriftIgnored", false, "with arcadia.cloud/ignore-reason"),
    row(
        &[Open, RevertFailed],
        Trigger::Revert,
        Reverting,
        "RevertStarted",
        false,
        "the digest names the plan shown, on fresh inventory, with no conflicting claim",
    ),
    row(
        &[Reverting],
        Trigger::RevertingTurnedOff,
        RevertFailed,
        "RevertFailed",
        false,
        "the controller runs without --enable-revert or without the provider's credentials",
    ),
    row(
        &[New, Accepted, Stale, Reverted, IgnoredByRule],
        Trigger::Drifts,
        Open,
        "DriftDetected",
        false,
        "a new episode; the earlier one moves to status.history",
    ),
    row(
        &[Ignored, RevertFailed],
        Trigger::Drifts,
        Open,
        "DriftDetected",
        false,
        "the live value is no longer the one ignored, or the one the failed revert left",
    ),
    row(
        &[Open],
        Trigger::StillDrifts,
        Open,
        "DriftChanged",
        false,
        "the Event only when the live or desired value moved",
    ),
    row(&[Snoozed], Trigger::StillDrifts, Snoozed, "", false, "follows the live value quietly"),
    row(&[Reverting], Trigger::StillDrifts, Reverting, "", false, "follows the live value while the saga runs"),
    row(&[Ignored], Trigger::StillDrifts, Ignored, "", false, "the live value is the one ignored"),
    row(&[RevertFailed], Trigger::StillDrifts, RevertFailed, "", false, "the live value is the one the revert left"),
    row(&[Snoozed], Trigger::SnoozeEnded, Open, "SnoozeEnded", false, "arcadia.cloud/snooze-until passed"),
    row(ACTIVE, Trigger::RuleIgnores, IgnoredByRule, "DriftIgnored", true, "spec.ignore or a DriftPolicy"),
    row(
        &[Open, Snoozed, Ignored, Reverting, RevertFailed],
        Trigger::InSync,
        Stale,
        "DriftResolved",
        true,
        "fresh inventory; a Reverting drift only once its saga failed",
    ),
    row(
        &[Open, Snoozed, Ignored, Reverting, RevertFailed],
        Trigger::SpecMovedToLive,
        Accepted,
        "DriftAccepted",
        true,
        "fresh inventory; spec.desired now asks for the live value",
    ),
    row(&[Reverting], Trigger::RevertSucceeded, Reverted, "Reverted", true, "the saga succeeded"),
    row(
        &[Reverting],
        Trigger::RevertFailed,
        RevertFailed,
        "RevertFailed",
        false,
        "status.message has the provider's answer",
    ),
    row(
        &[Reverting],
        Trigger::CompensationFailed,
        RevertFailed,
        "RevertCompensationFailed",
        false,
        "the resource may be left powered off",
    ),
    row(
        &[New],
        Trigger::RestoredSnooze,
        Snoozed,
        "DecisionRestored",
        false,
        "the decision journal kept the snooze, and the live value is the one snoozed",
    ),
    row(
        &[New],
        Trigger::RestoredIgnore,
        Ignored,
        "DecisionRestored",
        false,
        "the decision journal kept the ignore, and the live value is the one ignored",
    ),
];

const fn row(
    from: &'static [State],
    on: Trigger,
    to: State,
    event: &'static str,
    ends_episode: bool,
    when: &'static str,
) -> Transition {
    Transition { from, on, to, event, ends_episode, when }
}

/// Where `on` takes a Drift in `from`, or `None` when the lifecycle does not allow it.
pub fn next(from: State, on: Trigger) -> Option<&'static Transition> {
    TRANSITIONS.iter().find(|t| t.on == on && t.from.contains(&from))
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
