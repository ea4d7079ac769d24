//! What a cloud provider implements, and what the rest of the crate may know
//! of it. Pure: the types and traits here do no I/O.
//!
//! A provider is three parts, each a trait here: its [`Inventory`] (what
//! the syncer mirrors, with an optional [`ChangeFeed`]), its [`Planner`]
//! (pure: the calls that revert a field) and its [`Actuator`] (sends those
//! calls and follows what they started). `docs/providers.md` holds the
//! contracts a new provider must keep.

use crate::api::{CloudResourceStatus, ProviderCall};
use crate::detect::{FieldRules, LiveView};
use futures::future::BoxFuture;
use serde_json::Value;

/// One live resource as a provider reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveResource {
    /// The provider's own word for the type, e.g. `droplet`, `load_balancer`.
    pub type_: &'static str,
    /// The region in the resource's identity (`CloudResource.spec.region`),
    /// where ids are regional (AWS); `None` where they are global (DigitalOcean).
    pub region: Option<String>,
    pub id: String,
    /// The live state; `missing` and `synced_time` are set by the sync.
    pub status: CloudResourceStatus,
}

/// What a failed request to a provider means for whoever sent it: every
/// provider's errors come in these three classes, and the saga acts on the
/// class alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Refused: sending it again changes nothing (401, 403, any other 4xx but
    /// 429, or refused before it was sent).
    Permanent,
    /// Nothing happened, and asking again later may work (429; a 5xx, a
    /// garbled answer or no answer to a read).
    Transient,
    /// A write whose effect may have happened: no answer, a timeout, a 5xx
    /// or a garbled 2xx. Look before sending it again.
    Unknown,
}

/// The resource a revert writes to.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The provider's name, as `CloudResource.spec.provider` spells it.
    pub provider: &'a str,
    /// The provider's type word, e.g. `droplet`.
    pub type_: &'a str,
    pub id: &'a str,
}

/// The calls, in order, and whether they stop the resource for a while.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preview {
    pub calls: Vec<ProviderCall>,
    /// Needs `arcadia.cloud/revert-allow-downtime=true` (a droplet resize powers it off).
    pub downtime: bool,
}

/// A provider's revert planning: pure, so the controller's preview, the
/// approval check and the reverter all derive the same calls from the same
/// inputs.
pub trait Planner: Send + Sync {
    /// The name `CloudResource.spec.provider` carries, e.g. `digitalocean`.
    fn provider(&self) -> &'static str;
    /// The name people read in messages, e.g. `DigitalOcean`.
    fn display(&self) -> &'static str;
    /// The calls that revert `field` of `target` from `live` to `desired`,
    /// or why none can (in words that name the field and the type).
    fn preview(
        &self,
        target: Target<'_>,
        field: &str,
        desired: &Value,
        live: &LiveView<'_>,
        rules: &FieldRules<'_>,
    ) -> Result<Preview, NotRevertible>;
    /// Whether `call` writes to `target` and to nothing else: what keeps a
    /// forged or resumed record from reaching another resource.
    fn addresses(&self, call: &ProviderCall, target: Target<'_>) -> bool;
    /// Whether `call` stops the resource (a droplet's shutdown): a saga that
    /// may have sent it must not end without the plan's restart.
    fn stops(&self, call: &ProviderCall) -> bool;
    /// Whether `call` starts the resource again (a droplet's power_on): the
    /// compensation a failed saga appends after a stop.
    fn restarts(&self, call: &ProviderCall) -> bool;
    /// The mark, in this provider's own tagging, by which a resource's owner
    /// lets `namespace` revert it (`--revert-claim=tag`), as messages name
    /// it. Key/value tagging by default: the tag `arcadia-ns=<namespace>`.
    fn claim(&self, namespace: &str) -> String {
        format!("the tag {CLAIM_KEY}={namespace}")
    }
    /// Whether `live` carries [`Planner::claim`] for `namespace`.
    fn claimed(&self, namespace: &str, live: &LiveView<'_>) -> bool {
        live.tag_map.and_then(|tags| tags.get(CLAIM_KEY)).is_some_and(|owner| owner == namespace)
    }
}

/// Why no call can revert a field, in words that name the field and the
/// type: the Drift shows it as `status.revertNote`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotRevertible {
    /// No provider is registered under the resource's `spec.provider`.
    #[error("only {known} resources can be reverted, not {provider}")]
    UnknownProvider { provider: String, known: String },
    /// Compared under ignore rules or a match mode: a revert would also write what they leave out.
    #[error(
        "{field} is compared under ignore rules or a match mode, so a revert would also write what they leave out; revert it by hand"
    )]
    UnderRules { field: String },
    /// The provider has no call for this field of this type.
    #[error("{0}")]
    NoCall(String),
    /// The desired value is not one the provider takes.
    #[error("{0}")]
    BadDesired(String),
    /// The calls would do harm (a shrink, a moved claim) or nothing.
    #[error("{0}")]
    Refused(String),
    /// The calls need what the inventory does not know (a region, a name, the resource itself).
    #[error("{0}")]
    LiveUnknown(String),
    /// The field was taken out of `spec.desired`.
    #[error("{field} is no longer in spec.desired")]
    NoLongerDesired { field: String },
}

/// A field compared under ignore rules or a match mode is reverted only when
/// it is a tag list or map, whose planners leave out what the rules cover:
/// anything else would also write what the rules leave out.
pub fn only_exact_rules(field: &str, rules: &FieldRules<'_>) -> Result<(), NotRevertible> {
    use crate::detect::MatchMode;
    if field != "tags" && (!rules.ignore.is_empty() || rules.mode != MatchMode::Exact) {
        return Err(NotRevertible::UnderRules { field: field.to_owned() });
    }
    Ok(())
}

/// The key of the claim in key/value tagging: `arcadia-ns=<namespace>`.
pub const CLAIM_KEY: &str = "arcadia-ns";

/// A failed request to a provider: what it means ([`ErrorClass`]), a
/// bounded label for metrics, and the provider's own words for people.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    /// A bounded metric label, e.g. `unauthorized`, `rate_limited`.
    pub kind: &'static str,
    /// Not sent: the fence closed (this replica no longer leads) right before it left.
    pub fenced: bool,
    pub message: String,
}

impl ProviderError {
    /// A refusal before anything was sent.
    pub fn refused(kind: &'static str, message: String) -> Self {
        ProviderError { class: ErrorClass::Permanent, kind, fenced: false, message }
    }
}

/// One type's complete listing.
#[derive(Debug, Default)]
pub struct Listing {
    pub items: Vec<LiveResource>,
    /// The listing may have missed an item (the provider said there are more
    /// than it returned): no absence is trusted from it.
    pub short: bool,
}

/// What a provider's request budget and its own rate-limit answers say.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budget {
    /// Requests sent since start, every try counted.
    pub requests_sent: u64,
    /// The sustained rate this process allows itself.
    pub requests_per_second: f64,
    /// The provider's own limit and what is left of it, from its last answer.
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

/// What a provider has: listed whole, read one by one, and (optionally)
/// followed through a feed of changes. Reads only; every future is
/// cancellable at any await (the syncer drops it on shutdown).
pub trait Inventory: Send + Sync {
    /// The name `CloudResource.spec.provider` carries.
    fn provider(&self) -> &'static str;
    /// The type words this inventory is configured to mirror.
    fn types(&self) -> &[&'static str];
    /// Every resource of `type_`, paged and within the budget. An error
    /// means nothing is known of the type this time, never "none".
    fn list<'a>(&'a self, type_: &'a str) -> BoxFuture<'a, Result<Listing, ProviderError>>;
    /// One resource; `Ok(None)` only when the provider says it does not
    /// exist (a 404), which the syncer takes as proof it is gone.
    fn get<'a>(&'a self, type_: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<LiveResource>, ProviderError>>;
    /// The feed of changes, when the provider has one.
    fn feed(&self) -> Option<&dyn ChangeFeed>;
    fn budget(&self) -> Budget;
}

/// What one poll of a change feed found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedPoll {
    /// Resources to read again: `(type, id)`.
    pub refresh: Vec<(String, String)>,
    /// Types whose changes may have been missed: list them whole.
    pub full_listing: Vec<String>,
    /// Where the next poll starts; the syncer keeps it across restarts.
    pub cursor: String,
}

/// A provider's feed of changes, read from an opaque cursor the syncer
/// persists. An empty cursor (the first poll) starts at the newest change and
/// refreshes nothing; a cursor the feed cannot read counts as empty.
pub trait ChangeFeed: Send + Sync {
    /// The feed's metric label, e.g. `actions`.
    fn name(&self) -> &'static str;
    /// The cursor's name in the syncer's state ConfigMap (an annotation key).
    fn cursor_key(&self) -> &'static str;
    /// Reads the changes since `cursor` to the mirrored types. An error
    /// moves nothing: the same cursor is polled again.
    fn poll<'a>(&'a self, cursor: &'a str) -> BoxFuture<'a, Result<FeedPoll, ProviderError>>;
}

/// What a sent call started at the provider (an action, an operation), in
/// the provider's own opaque words: kept in the saga's record, so it must
/// still mean the same thing to a reverter started after a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handle(pub String);

impl From<u64> for Handle {
    fn from(id: u64) -> Self {
        Handle(id.to_string())
    }
}

/// Where the work behind a [`Handle`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Running,
    Ended { succeeded: bool },
}

/// The only writer to a provider: sends the calls a [`Planner`] made and
/// follows them. The saga knows no provider: it drives these over handles.
pub trait Actuator: Send + Sync {
    /// The planner whose calls this actuator sends.
    fn planner(&self) -> &'static dyn Planner;
    /// Sends `call`; the handle of what it started, or `None` when it is done
    /// on the answer. `fence` is asked right before the request leaves: false
    /// sends nothing and answers an error with `fenced` set. A lost answer is
    /// [`ErrorClass::Unknown`]: the saga then looks with [`Actuator::started_since`].
    fn send<'a>(
        &'a self,
        call: &'a ProviderCall,
        fence: &'a (dyn Fn() -> bool + Sync),
    ) -> BoxFuture<'a, Result<Option<Handle>, ProviderError>>;
    /// Where `handle` stands; `Ok(None)` when the provider no longer knows it.
    fn progress<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<Option<Progress>, ProviderError>>;
    /// Work of the resource's own in progress that a call would collide
    /// with, described for people; `None` when it is idle.
    fn busy<'a>(&'a self, target: Target<'a>) -> BoxFuture<'a, Result<Option<String>, ProviderError>>;
    /// The work `call` would have started on `target` at or after `since`
    /// (Unix seconds), if the provider shows one: how a call whose answer was
    /// lost, or whose sender crashed, is adopted instead of sent twice.
    fn started_since<'a>(
        &'a self,
        target: Target<'a>,
        call: &'a ProviderCall,
        since: i64,
    ) -> BoxFuture<'a, Result<Option<Handle>, ProviderError>>;
    /// How long after a send with no answer the work it started may take to
    /// show (the request timeout, and a margin for the provider's own lag):
    /// until then, finding none does not prove it was not sent.
    fn answer_window(&self) -> std::time::Duration;
    /// `handle` in people's words, e.g. `DigitalOcean action 42`.
    fn describe(&self, handle: &Handle) -> String;
    /// Requests sent since start, every try counted.
    fn requests_sent(&self) -> u64;
}

/// A provider as its command-line flags configured it; built into clients
/// once the process runs.
pub trait Setup: Send + Sync + std::fmt::Debug {
    /// The name `CloudResource.spec.provider` carries.
    fn provider(&self) -> &'static str;
    /// The `arcadia.cloud/source` label of what its syncer writes.
    fn source(&self) -> &str;
    /// How often its change feed is polled; `None`: not at all.
    fn feed_interval(&self) -> Option<std::time::Duration>;
    /// Where it reads and writes, for the log.
    fn endpoint(&self) -> String;
    /// The clients (an SDK may resolve its configuration asynchronously).
    fn build(&self) -> BoxFuture<'_, Result<Built, ProviderError>>;
}

/// A provider's clients, ready to run.
pub struct Built {
    pub inventory: std::sync::Arc<dyn Inventory>,
    pub actuator: std::sync::Arc<dyn Actuator>,
}

/// Provider flags that configure nothing usable; the controller does not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A flag's value is not one the provider takes.
    #[error("{flag}: {why}")]
    BadValue { flag: &'static str, why: String },
    #[error("both {flag} and {variable} are set: give the token one way only")]
    TokenTwoWays { flag: &'static str, variable: &'static str },
    #[error(
        "--aws-endpoint-url names one endpoint, which serves one region, and --aws-regions names {0}: run a controller per region with its endpoint"
    )]
    OneEndpointManyRegions(usize),
    #[error(transparent)]
    Secret(#[from] crate::runtime::secrets::SecretError),
    #[error("--enable-revert needs a provider to write to: {0}")]
    NothingToRevert(String),
    #[error(
        "{first} and {second} both use the inventory source {inventory_source:?}: give each provider a source of its own"
    )]
    SharedSource { first: String, second: String, inventory_source: String },
}
/// What a provider's flags may depend on among the common ones.
#[derive(Clone, Copy, Debug)]
pub struct Common {
    /// `--enable-revert`: the provider's actuator will be used.
    pub revert: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A provider with key/value tags and nothing else: the claim's defaults.
    struct KeyValueTags;

    impl Planner for KeyValueTags {
        fn provider(&self) -> &'static str {
            "key-value"
        }
        fn display(&self) -> &'static str {
            "Key-Value"
        }
        fn preview(
            &self,
            _: Target<'_>,
            _: &str,
            _: &Value,
            _: &LiveView<'_>,
            _: &FieldRules<'_>,
        ) -> Result<Preview, NotRevertible> {
            Err(NotRevertible::NoCall("none".into()))
        }
        fn addresses(&self, _: &ProviderCall, _: Target<'_>) -> bool {
            false
        }
        fn stops(&self, _: &ProviderCall) -> bool {
            false
        }
        fn restarts(&self, _: &ProviderCall) -> bool {
            false
        }
    }

    #[test]
    fn key_value_tagging_claims_with_one_key() {
        let tags: BTreeMap<String, String> = [("arcadia-ns".to_string(), "team-a".to_string())].into();
        let live = LiveView { tag_map: Some(&tags), ..LiveView::default() };
        assert!(KeyValueTags.claimed("team-a", &live));
        assert!(!KeyValueTags.claimed("team-b", &live), "the value names the one namespace");
        assert!(!KeyValueTags.claimed("team-a", &LiveView::default()), "no tags, no claim");
        let plain = vec!["arcadia-ns=team-a".to_string()];
        let plain = LiveView { tags: Some(&plain), ..LiveView::default() };
        assert!(!KeyValueTags.claimed("team-a", &plain), "a plain tag is not a key/value claim");
        assert_eq!(KeyValueTags.claim("team-a"), "the tag arcadia-ns=team-a");
    }
}
