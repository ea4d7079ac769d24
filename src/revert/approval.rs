//! Whether an approved revert may run. Detection is read-only, so any
//! namespace may watch any resource; a revert writes to the cloud, so it runs
//! only where the resource's owner allows it, where no other team asks for a
//! different value, and only for the exact plan the person saw.

use super::{NotRevertible, Preview, digest};
use crate::api::lifecycle::{self, State, Trigger};
use crate::api::{ANNOTATION_REVERT, ANNOTATION_REVERT_ALLOW_DOWNTIME, CloudResource, ProviderCall};
use crate::detect::{LiveView, loosely_equal};
use crate::providers::contract::Planner;
use serde_json::Value;

/// Which namespaces may revert a resource (`--revert-claim`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Claim {
    /// The resource carries its provider's claim tag for the namespace
    /// (DigitalOcean: `arcadia-ns:<namespace>`; key/value tags: `arcadia-ns=<namespace>`).
    #[default]
    Tag,
    /// Any namespace (single-tenant clusters).
    Any,
}

impl Claim {
    pub const WORDS: [&str; 2] = ["tag", "any"];

    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "tag" => Some(Claim::Tag),
            "any" => Some(Claim::Any),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevertSettings {
    /// `--enable-revert`.
    pub enabled: bool,
    pub claim: Claim,
}

/// One approval (`arcadia.cloud/revert`) and what it is judged against.
pub struct Approval<'a> {
    pub value: &'a str,
    pub namespace: &'a str,
    pub field: &'a str,
    /// Where the Drift stands in its lifecycle.
    pub state: State,
    pub allow_downtime: bool,
    /// The plan the drift showed (`status.revertPlan`) when the approval was read.
    pub shown: &'a [ProviderCall],
    /// The plan the live state gives now, or why there is none.
    pub current: Result<&'a Preview, &'a NotRevertible>,
    /// The resource it writes to, when its provider is known.
    pub resource: Option<Owned<'a>>,
    /// Other CloudProvisioneds (`namespace/name`) naming the same resource with a different desired value for the field.
    pub conflicts: &'a [String],
    /// Why the inventory cannot be trusted now (`InventoryFresh=False`), when it cannot.
    pub stale_inventory: Option<&'a str>,
}

/// A resource as the claim rule reads it: its provider's planner, which
/// knows the provider's tagging, and its live state.
#[derive(Clone, Copy)]
pub struct Owned<'a> {
    pub planner: &'a dyn Planner,
    pub live: LiveView<'a>,
}

impl<'a> Owned<'a> {
    /// `resource` with its live state, when a registered provider owns it.
    pub fn of(resource: Option<&'a CloudResource>) -> Option<Self> {
        let r = resource?;
        let planner = crate::providers::planner(&r.spec.provider).ok()?;
        // Never synced: no tags yet, so no claim either.
        Some(Owned { planner, live: r.status.as_ref().map(|s| s.live_view()).unwrap_or_default() })
    }

    fn claimed_by(&self, namespace: &str) -> bool {
        self.planner.claimed(namespace, &self.live)
    }
}

/// Whether `namespace` may write to `resource` (`--revert-claim`).
pub fn claim_holds(claim: Claim, namespace: &str, resource: Option<Owned<'_>>) -> Result<(), NotClaimed> {
    let namespace = namespace.to_owned();
    match resource {
        _ if claim == Claim::Any => Ok(()),
        Some(r) if r.claimed_by(&namespace) => Ok(()),
        Some(r) => Err(NotClaimed::Untagged { tag: r.planner.claim(&namespace).to_string(), namespace }),
        None => Err(NotClaimed::UnknownProvider { namespace }),
    }
}

/// Why `--revert-claim=tag` does not let a namespace revert a resource.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotClaimed {
    #[error(
        "rule --revert-claim=tag: the resource does not carry {tag}, by which its owner lets namespace {namespace} revert it"
    )]
    Untagged { tag: String, namespace: String },
    #[error(
        "rule --revert-claim=tag: the resource's provider is not one this controller knows, so no claim lets namespace {namespace} revert it"
    )]
    UnknownProvider { namespace: String },
}

/// The peers (`(namespace/name, desired value)`) that want another value for the field.
pub fn conflicts(own: &Value, peers: impl IntoIterator<Item = (String, Value)>) -> Vec<String> {
    let mut names: Vec<String> =
        peers.into_iter().filter(|(_, theirs)| !loosely_equal(own, theirs)).map(|(name, _)| name).collect();
    names.dedup();
    names
}

/// How another CloudProvisioned naming the same resource shows in this one's
/// `DesiredConflict`, or `None` when it does not count. Under the tag claim a
/// namespace that does not hold the resource's claim does not count, and no
/// other namespace's object is ever named: detection is open to every
/// namespace, so it must not become a way to list another tenant's objects.
pub fn peer_shown(
    own_ns: &str,
    peer_ns: &str,
    peer: &str,
    claim: Claim,
    resource: Option<Owned<'_>>,
) -> Option<String> {
    match claim {
        _ if peer_ns == own_ns => Some(format!("{peer_ns}/{peer}")),
        Claim::Any => Some(format!("{peer_ns}/{peer}")),
        Claim::Tag if resource.is_some_and(|r| r.claimed_by(peer_ns)) => {
            Some("a CloudProvisioned of the namespace that holds the claim".into())
        }
        Claim::Tag => None,
    }
}

/// Why the approval may not run, or `None` when it may.
pub fn refusal(a: &Approval<'_>, settings: &RevertSettings) -> Option<String> {
    let refused = |why: String| Some(format!("revert refused: {why}; nothing was changed"));
    if !settings.enabled {
        return refused("reverting is off in this controller (start it with --enable-revert, chart value revert.enabled, and a token with write scopes)".into());
    }
    if lifecycle::next(a.state, Trigger::Revert).is_none() {
        return refused(format!(
            "the drift is {}, and only an Open or RevertFailed drift can be reverted",
            a.state.shown()
        ));
    }
    if let Some(why) = a.stale_inventory {
        return refused(format!(
            "the inventory is not fresh (condition InventoryFresh=False: {why}), and a plan made from an old copy could write stale values; approve again once it syncs"
        ));
    }
    let current = match a.current {
        Ok(current) => current,
        Err(why) => return refused(why.to_string()),
    };
    let digest = digest(&current.calls);
    if let Some(why) = unnamed_or_changed(a.value.trim(), &digest, a.shown, current) {
        return refused(why);
    }
    if !a.conflicts.is_empty() {
        return refused(format!(
            "rule DesiredConflict: {} also name this resource with a different desired {}; agree on one value first",
            a.conflicts.join(", "),
            a.field
        ));
    }
    if let Err(why) = claim_holds(settings.claim, a.namespace, a.resource) {
        return refused(why.to_string());
    }
    if current.downtime && !a.allow_downtime {
        return refused(format!(
            "this revert powers the resource off for a while (see status.revertPlan); approve it with {ANNOTATION_REVERT_ALLOW_DOWNTIME}=true as well"
        ));
    }
    None
}

/// An approval must name the digest of the plan it approves: `true` (or any
/// other word) approves no plan in particular, and a digest of an earlier
/// plan approves that plan, not the one that would run now.
fn unnamed_or_changed(value: &str, digest: &str, shown: &[ProviderCall], current: &Preview) -> Option<String> {
    let approve = format!("approve this plan with {ANNOTATION_REVERT}={digest}");
    if !is_digest(value) {
        return Some(format!(
            "{ANNOTATION_REVERT}={value:?} names no plan: an approval names the digest of the plan it approves (status.revertPlanDigest); {approve}"
        ));
    }
    if value == digest {
        return None;
    }
    let what = if super::digest(shown) == value && shown != current.calls.as_slice() {
        super::plan::differences(shown, &current.calls).join("; ")
    } else {
        format!("it now is: {}", describe(&current.calls))
    };
    Some(format!(
        "the plan changed since it was reviewed: the approval names plan {value}, the plan that would run is {digest} ({what}); review status.revertPlan, then {approve}"
    ))
}

/// 32 lowercase hex digits, as [`super::digest`] writes them.
pub fn is_digest(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn describe(calls: &[ProviderCall]) -> String {
    calls.iter().map(|c| c.description.as_str()).collect::<Vec<_>>().join(", then ")
}
