//! The revert saga as a pure state machine over its record
//! (`status.revert`). The reverter asks [`next`] what to do, does it, records
//! the result with the functions here, and writes the record before it waits
//! on anything, so a reverter killed at any point resumes from the record and
//! never repeats a step whose action exists.

use crate::api::{ProviderCall, RevertRecord, RevertStep, SagaState, StepState};
use crate::providers::contract::{Handle, Planner};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the reverter does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Move {
    /// Record step `i` as Sending, then send it.
    Send(usize),
    /// Step `i` was being sent when a reverter stopped: look for its action
    /// on the resource before sending it again.
    Recover(usize),
    /// Wait for the work step `i` started, by its handle.
    Poll(usize, Handle),
    /// Every step ran: the saga ends in this state.
    Finish(SagaState),
    /// The saga has ended.
    Done,
}

/// A fresh record for an approved plan.
pub fn start(plan: &[ProviderCall], episode: &Time, approved_by: &str, now: &Time) -> RevertRecord {
    RevertRecord {
        episode: episode.clone(),
        approved_by: approved_by.to_owned(),
        approved_digest: Some(super::digest(plan)),
        started_time: now.clone(),
        state: SagaState::Running,
        steps: plan.iter().cloned().map(|call| step(call, false)).collect(),
        finished_time: None,
        message: None,
    }
}

fn step(call: ProviderCall, compensation: bool) -> RevertStep {
    RevertStep {
        call,
        compensation,
        state: StepState::Pending,
        handle: None,
        action_id: None,
        sent_time: None,
        message: None,
    }
}

impl Move {
    /// The step this move acts on.
    pub fn step(&self) -> Option<usize> {
        match *self {
            Move::Send(i) | Move::Recover(i) | Move::Poll(i, _) => Some(i),
            Move::Finish(_) | Move::Done => None,
        }
    }
}

pub fn next(record: &RevertRecord) -> Move {
    if record.state != SagaState::Running {
        return Move::Done;
    }
    let open = record
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| matches!(s.state, StepState::Pending | StepState::Sending | StepState::InProgress));
    match open {
        Some((i, s)) => match (s.state, s.handle()) {
            (StepState::InProgress, Some(handle)) => Move::Poll(i, Handle(handle)),
            // Calls without an action (tags, a firewall update) set a state: sending one twice is harmless.
            (StepState::Sending, _) if s.call.waits_for_action => Move::Recover(i),
            _ => Move::Send(i),
        },
        None => {
            let failed = record.steps.iter().any(|s| s.state == StepState::Failed);
            Move::Finish(if failed { SagaState::Failed } else { SagaState::Succeeded })
        }
    }
}

/// Step `i` is about to be sent. Its first send time stays: the step's
/// deadline runs from it, and recovery looks for actions started since.
pub fn sending(record: &mut RevertRecord, i: usize, now: &Time) {
    let s = &mut record.steps[i];
    s.state = StepState::Sending;
    s.sent_time.get_or_insert_with(|| now.clone());
}

/// Step `i` was refused for now (429, or a read it needed failed): nothing
/// happened, and it is sent again after a pause.
pub fn retry_later(record: &mut RevertRecord, i: usize, why: String) {
    let s = &mut record.steps[i];
    s.state = StepState::Pending;
    s.message = Some(why);
}

/// Step `i` got no answer that says whether it happened: it stays Sending,
/// so the next move looks for its action before sending it again.
pub fn unanswered(record: &mut RevertRecord, i: usize, why: String) {
    record.steps[i].message = Some(why);
}

/// Step `i` has been open longer than `timeout` since it was first sent.
pub fn overdue(record: &RevertRecord, i: usize, now: &Time, timeout: std::time::Duration) -> bool {
    let Some(sent) = record.steps[i].sent_time.as_ref() else { return false };
    let open = matches!(record.steps[i].state, StepState::Pending | StepState::Sending | StepState::InProgress);
    let elapsed = now.0.as_second().saturating_sub(sent.0.as_second());
    open && elapsed > i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX)
}

/// A stop of this saga (a droplet's shutdown) may have happened and no restart after it has.
pub fn may_be_left_off(record: &RevertRecord, p: &dyn Planner) -> bool {
    let Some(stop) = record.steps.iter().position(|s| p.stops(&s.call) && may_have_happened(s)) else {
        return false;
    };
    !record.steps[stop..].iter().any(|s| p.restarts(&s.call) && s.state == StepState::Completed)
}

/// A compensation failed: the resource may be left as the saga shut it down.
pub fn compensation_failed(record: &RevertRecord) -> bool {
    record.steps.iter().any(|s| s.compensation && s.state == StepState::Failed)
}

/// The provider accepted step `i`; `handle` is the work it started, if any.
pub fn sent(record: &mut RevertRecord, i: usize, handle: Option<Handle>) {
    let s = &mut record.steps[i];
    s.state = if handle.is_some() { StepState::InProgress } else { StepState::Completed };
    s.action_id = handle.as_ref().and_then(|h| h.0.parse().ok());
    s.handle = handle.map(|h| h.0);
}

/// The action of step `i` ended; an errored one fails the step.
pub fn action_ended(record: &mut RevertRecord, p: &dyn Planner, i: usize, completed: bool) {
    if completed {
        record.steps[i].state = StepState::Completed;
    } else {
        let id = record.steps[i].handle().unwrap_or_default();
        fail(record, p, i, format!("{} action {id} ended errored", p.display()));
    }
}

/// Step `i` failed: later steps are skipped, and a resource this saga
/// stopped is started again (the compensation: the plan's own restart), unless
/// the restart is what failed.
pub fn fail(record: &mut RevertRecord, p: &dyn Planner, i: usize, message: String) {
    fail_step(record, p, i, message, false);
}

/// Step `i` is given up without knowing whether it happened (its action
/// could not be read, or the deadline passed): it fails, and when it was a
/// stop the resource may be stopped, so it is started again as well.
pub fn abandon(record: &mut RevertRecord, p: &dyn Planner, i: usize, message: String) {
    fail_step(record, p, i, message, true);
}

fn fail_step(record: &mut RevertRecord, p: &dyn Planner, i: usize, message: String, maybe_done: bool) {
    let failed = &mut record.steps[i];
    failed.state = StepState::Failed;
    failed.message = Some(message.clone());
    let what = failed.call.description.clone();
    let compensating = failed.compensation;
    record.message = Some(match &record.message {
        Some(earlier) => format!(
            "{earlier}; then the compensation failed: {what}: {message}: the resource may be left powered off; check it and power it on once {} answers",
            p.display()
        ),
        None => format!("{what}: {message}"),
    });
    if compensating {
        return;
    }
    for later in record.steps.iter_mut().skip(i + 1).filter(|s| s.state == StepState::Pending) {
        later.state = StepState::Skipped;
    }
    let stopped = record.steps[..i].iter().any(|s| s.state == StepState::Completed && p.stops(&s.call))
        || (maybe_done && p.stops(&record.steps[i].call));
    let restart = record.steps[i + 1..].iter().find(|s| p.restarts(&s.call)).map(|s| s.call.clone());
    if let (true, Some(call)) = (stopped, restart) {
        record.steps.push(step(call, true));
    }
}

fn may_have_happened(s: &RevertStep) -> bool {
    match s.state {
        StepState::Sending | StepState::InProgress | StepState::Completed => true,
        StepState::Failed => s.handle().is_some(),
        _ => false,
    }
}

pub fn finish(record: &mut RevertRecord, state: SagaState, now: &Time) {
    record.state = state;
    record.finished_time = Some(now.clone());
    if state == SagaState::Succeeded {
        record.message = None;
    }
}
