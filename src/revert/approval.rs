//! Whether an approved revert may run. Detection is read-only, so any
//! namespace may watch any resource; a revert writes to the cloud, so it runs
//! only where the resource's owner allows it, where no other team asks for a
//! different value, and only for the exact plan the person saw.

use super::{Preview, digest};
use crate::api::{ANNOTATION_REVERT, ANNOTATION_REVERT_ALLOW_DOWNTIME, CLAIM_TAG_PREFIX, DriftPhase, ProviderCall};
use crate::detect::loosely_equal;
use serde_json::Value;

/// Which namespaces may revert a resource (`--revert-claim`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Claim {
    /// The resource carries the DigitalOcean tag `arcadia-ns:<namespace>`.
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
    pub phase: DriftPhase,
    pub allow_downtime: bool,
    /// The plan the drift showed (`status.revertPlan`) when the approval was read.
    pub shown: &'a [ProviderCall],
    /// The plan the live state gives now, or why there is none.
    pub current: Result<&'a Preview, &'a str>,
    pub resource_tags: &'a [String],
    /// Other CloudProvisioneds (`namespace/name`) naming the same resource with a different desired value for the field.
    pub conflicts: &'a [String],
    /// Why the inventory cannot be trusted now (`InventoryFresh=False`), when it cannot.
    pub stale_inventory: Option<&'a str>,
}

/// The tag that lets `namespace` revert a resource.
pub fn claim_tag(namespace: &str) -> String {
    format!("{CLAIM_TAG_PREFIX}{namespace}")
}

/// Whether `namespace` may write to a resource with these tags (`--revert-claim`).
pub fn claim_holds(claim: Claim, namespace: &str, resource_tags: &[String]) -> Result<(), String> {
    if claim == Claim::Tag && !resource_tags.contains(&claim_tag(namespace)) {
        return Err(format!(
            "rule --revert-claim=tag: the resource does not carry the DigitalOcean tag {}, by which its owner lets namespace {namespace} revert it",
            claim_tag(namespace)
        ));
    }
    Ok(())
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
pub fn peer_shown(own_ns: &str, peer_ns: &str, peer: &str, claim: Claim, resource_tags: &[String]) -> Option<String> {
    match claim {
        _ if peer_ns == own_ns => Some(format!("{peer_ns}/{peer}")),
        Claim::Any => Some(format!("{peer_ns}/{peer}")),
        Claim::Tag if resource_tags.contains(&claim_tag(peer_ns)) => {
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
    if !matches!(a.phase, DriftPhase::Open | DriftPhase::RevertFailed) {
        return refused(format!("the drift is {}, and only an Open or RevertFailed drift can be reverted", a.phase));
    }
    if let Some(why) = a.stale_inventory {
        return refused(format!(
            "the inventory is not fresh (condition InventoryFresh=False: {why}), and a plan made from an old copy could write stale values; approve again once it syncs"
        ));
    }
    let current = match a.current {
        Ok(current) => current,
        Err(why) => return refused(why.to_owned()),
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
    if let Err(why) = claim_holds(settings.claim, a.namespace, a.resource_tags) {
        return refused(why);
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
