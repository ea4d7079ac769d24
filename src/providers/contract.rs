//! What a cloud provider implements, and what the rest of the crate may know
//! of it. Pure: the types and traits here do no I/O.
//!
//! Today a provider plans reverts ([`Planner`]); its inventory source and its
//! actuator (listing, feeds, sending calls, polling them) move behind the same
//! contract next (issue 31, `docs/providers.md`).

use crate::api::{CloudResourceStatus, ProviderCall};
use crate::detect::{FieldRules, LiveView};
use serde_json::Value;

/// One live resource as a provider reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveResource {
    /// The provider's own word for the type, e.g. `droplet`, `load_balancer`.
    pub type_: &'static str,
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
    ) -> Result<Preview, String>;
    /// Whether `call` writes to `target` and to nothing else: what keeps a
    /// forged or resumed record from reaching another resource.
    fn addresses(&self, call: &ProviderCall, target: Target<'_>) -> bool;
    /// Whether `call` stops the resource (a droplet's shutdown): a saga that
    /// may have sent it must not end without the plan's restart.
    fn stops(&self, call: &ProviderCall) -> bool;
    /// Whether `call` starts the resource again (a droplet's power_on): the
    /// compensation a failed saga appends after a stop.
    fn restarts(&self, call: &ProviderCall) -> bool;
}
