//! Whether an approved revert may run. Detection is read-only, so any
//! namespace may watch any resource; a revert writes to the cloud, so it runs
//! only where the resource's owner allows it, where no other team asks for a
//! different value, and only for the exact plan the person saw.

use super::Preview;
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
    /// The plan the person saw: `status.revertPlan` when they approved.
    pub shown: &'a [ProviderCall],
    /// The plan the live state gives now, or why there is none.
    pub current: Result<&'a Preview, &'a str>,
    pub resource_tags: &'a [String],
    /// Other CloudProvisioneds (`namespace/name`) naming the same resource with a different desired value for the field.
    pub conflicts: &'a [String],
}

/// The tag that lets `namespace` revert a resource.
pub fn claim_tag(namespace: &str) -> String {
    format!("{CLAIM_TAG_PREFIX}{namespace}")
}

/// The peers (`(namespace/name, desired value)`) that want another value for the field.
pub fn conflicts(own: &Value, peers: impl IntoIterator<Item = (String, Value)>) -> Vec<String> {
    peers.into_iter().filter(|(_, theirs)| !loosely_equal(own, theirs)).map(|(name, _)| name).collect()
}

/// Why the approval may not run, or `None` when it may.
pub fn refusal(a: &Approval<'_>, settings: &RevertSettings) -> Option<String> {
    let refused = |why: String| Some(format!("revert refused: {why}; nothing was changed"));
    if !a.value.eq_ignore_ascii_case("true") {
        return refused(format!("{ANNOTATION_REVERT} must be \"true\", not {:?}", a.value));
    }
    if !settings.enabled {
        return refused("reverting is off in this controller (start it with --enable-revert, chart value revert.enabled, and a token with write scopes)".into());
    }
    if !matches!(a.phase, DriftPhase::Open | DriftPhase::RevertFailed) {
        return refused(format!("the drift is {}, and only an Open or RevertFailed drift can be reverted", a.phase));
    }
    let current = match a.current {
        Ok(current) => current,
        Err(why) => return refused(why.to_owned()),
    };
    if !a.conflicts.is_empty() {
        return refused(format!(
            "rule DesiredConflict: {} also name this resource with a different desired {}; agree on one value first",
            a.conflicts.join(", "),
            a.field
        ));
    }
    if settings.claim == Claim::Tag && !a.resource_tags.contains(&claim_tag(a.namespace)) {
        return refused(format!(
            "rule --revert-claim=tag: the resource does not carry the DigitalOcean tag {}, by which its owner lets namespace {} revert it",
            claim_tag(a.namespace),
            a.namespace
        ));
    }
    if a.shown != current.calls.as_slice() {
        return refused(
            "the live state moved since the plan was made; status.revertPlan now shows the new plan: review it and approve again".into(),
        );
    }
    if current.downtime && !a.allow_downtime {
        return refused(format!(
            "this revert powers the resource off for a while (see status.revertPlan); approve it with {ANNOTATION_REVERT_ALLOW_DOWNTIME}=true as well"
        ));
    }
    None
}
