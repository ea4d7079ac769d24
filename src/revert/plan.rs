//! The preview of a revert, whatever the provider: the plan's digest, how
//! two plans differ, and the one derivation from a CloudProvisioned's desired
//! value and the CloudResource it names; the calls themselves come from the
//! resource's provider ([`crate::providers`]).

use crate::api::{Absence, CloudResource, Fields, ProviderCall};
use crate::detect::{FieldRules, LiveView};
pub use crate::providers::contract::{NotRevertible, Preview, Target};
use serde_json::Value;

/// The digest an approval names: the first 32 hex digits (128 bits) of SHA-256 over the
/// plan's canonical JSON (object keys sorted, no spaces). The same calls
/// always give the same digest; any change to a method, path, body or
/// description gives another.
pub fn digest(calls: &[ProviderCall]) -> String {
    // serde_json's maps are sorted by key (no `preserve_order`), so this is canonical.
    let canonical = serde_json::to_value(calls).map(|v| v.to_string()).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    // 128 bits: a tenant who shapes a plan's bodies cannot find two plans that
    // share a digest (64 bits fell to a birthday search of 2^32 plans).
    hash.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// How `recorded` differs from `derived`, step by step, in words (empty when equal).
pub fn differences(recorded: &[ProviderCall], derived: &[ProviderCall]) -> Vec<String> {
    let show = |c: &ProviderCall| {
        let body = if c.body.is_null() { String::new() } else { format!(" {}", c.body) };
        format!("{} {}{body}", c.method, c.path)
    };
    let mut out = Vec::new();
    for i in 0..recorded.len().max(derived.len()) {
        match (recorded.get(i), derived.get(i)) {
            (Some(r), Some(d)) if r == d => {}
            (Some(r), Some(d)) => out.push(format!("step {}: {} where the plan now has {}", i + 1, show(r), show(d))),
            (Some(r), None) => out.push(format!("step {}: {} is not in the plan now", i + 1, show(r))),
            (None, Some(d)) => out.push(format!("step {}: the plan now also has {}", i + 1, show(d))),
            (None, None) => {}
        }
    }
    out
}

/// The plan for `field` from the object's desired values, the CloudResource
/// it names (`name`) and the field's rules: the one derivation the preview,
/// the approval and the reverter all use, so each arrives at the same calls.
pub fn derive(
    resource: Option<&CloudResource>,
    name: &str,
    field: &str,
    desired: &Fields,
    rules: &FieldRules<'_>,
) -> Result<Preview, NotRevertible> {
    let offers_none = |absence: Absence| {
        NotRevertible::LiveUnknown(format!("CloudResource {name} offers no live value ({})", absence.describe()))
    };
    let resource = resource.ok_or_else(|| offers_none(Absence::NotFound))?;
    let view = resource.live().map_err(offers_none)?;
    let target = Target { provider: &resource.spec.provider, type_: &resource.spec.type_, id: &resource.spec.id };
    let value = desired.get(field).ok_or_else(|| NotRevertible::NoLongerDesired { field: field.to_owned() })?;
    preview(target, field, &value, &view, rules)
}

/// The calls that revert `field` of `target` from `live` to `desired`, by
/// the target's provider, or why none can.
pub fn preview(
    target: Target<'_>,
    field: &str,
    desired: &Value,
    live: &LiveView<'_>,
    rules: &FieldRules<'_>,
) -> Result<Preview, NotRevertible> {
    crate::providers::planner(target.provider)?.preview(target, field, desired, live, rules)
}

/// Whether `call` writes to `target` and to nothing else (by the target's
/// provider; a provider none registered addresses nothing).
pub fn addresses(call: &ProviderCall, target: Target<'_>) -> bool {
    crate::providers::planner(target.provider).is_ok_and(|p| p.addresses(call, target))
}
