//! DigitalOcean's revert planning: for one drifted field, the exact calls
//! that put the live value back to the desired one, or why no call can. Built
//! from DigitalOcean's API document (droplet actions, tags, volume actions,
//! firewalls); anything else is not revertible. Pure.

use crate::api::ProviderCall;
use crate::detect::rules::glob_match;
use crate::detect::{FieldRules, LiveView, MatchMode, loosely_equal};
use crate::providers::contract::{NotRevertible, Planner, Preview, Target};
use serde_json::{Value, json};

/// DigitalOcean's [`Planner`].
pub struct DoPlanner;

impl Planner for DoPlanner {
    fn provider(&self) -> &'static str {
        super::NAME
    }

    fn display(&self) -> &'static str {
        "DigitalOcean"
    }

    fn preview(
        &self,
        target: Target<'_>,
        field: &str,
        desired: &Value,
        live: &LiveView<'_>,
        rules: &FieldRules<'_>,
    ) -> Result<Preview, NotRevertible> {
        preview(target, field, desired, live, rules)
    }

    fn addresses(&self, call: &ProviderCall, target: Target<'_>) -> bool {
        addresses(call, target)
    }

    fn stops(&self, call: &ProviderCall) -> bool {
        action_type(call) == Some("shutdown")
    }

    fn restarts(&self, call: &ProviderCall) -> bool {
        action_type(call) == Some("power_on")
    }

    fn claim(&self, namespace: &str) -> String {
        format!("the DigitalOcean tag {}", claim_tag(namespace))
    }

    fn claimed(&self, namespace: &str, live: &LiveView<'_>) -> bool {
        live.tags.is_some_and(|tags| tags.contains(&claim_tag(namespace)))
    }
}

/// DigitalOcean's tags are plain strings, so the claim is one: `arcadia-ns:<namespace>`.
pub const CLAIM_TAG_PREFIX: &str = "arcadia-ns:";

/// The tag that lets `namespace` revert a resource.
pub fn claim_tag(namespace: &str) -> String {
    format!("{CLAIM_TAG_PREFIX}{namespace}")
}

/// A droplet action's `type`, for a call that posts one.
fn action_type(call: &ProviderCall) -> Option<&str> {
    call.body.get("type")?.as_str()
}

/// Whether `call` writes to `target` and to nothing else (creating a tag
/// writes to no resource).
pub fn addresses(call: &ProviderCall, target: Target<'_>) -> bool {
    let collection = match target.type_ {
        "droplet" => "droplets",
        "volume" => "volumes",
        "firewall" => "firewalls",
        _ => return false,
    };
    if [format!("/v2/{collection}/{}/actions", target.id), format!("/v2/{collection}/{}", target.id)]
        .contains(&call.path)
    {
        return true;
    }
    let resources = json!({"resources": [{"resource_id": target.id, "resource_type": target.type_}]});
    call.path == "/v2/tags" || (call.path.starts_with("/v2/tags/") && call.body == resources)
}

/// The calls that revert `field` of `target` from `live` to `desired`, or why none can.
pub fn preview(
    target: Target<'_>,
    field: &str,
    desired: &Value,
    live: &LiveView<'_>,
    rules: &FieldRules<'_>,
) -> Result<Preview, NotRevertible> {
    crate::providers::contract::only_exact_rules(field, rules)?;
    match (target.type_, field) {
        ("droplet", "name") => Ok(one(rename(target, text(field, desired)?))),
        ("droplet", "status") => power(target, text(field, desired)?),
        ("droplet", "size" | "size_slug" | "sizeSlug") => resize(target, text(field, desired)?, live),
        ("droplet" | "volume", "tags") => tags(target, desired, live, rules),
        ("volume", "size_gigabytes") => grow_volume(target, desired, live),
        ("firewall", "inbound_rules" | "outbound_rules") => firewall(target, field, desired, live),
        (type_, _) => Err(NotRevertible::NoCall(format!(
            "{field} of a {type_} cannot be reverted: arcadia-drift reverts a droplet's name, tags, status and size_slug, a volume's size_gigabytes and tags, and a firewall's inbound_rules and outbound_rules"
        ))),
    }
}

fn one(call: ProviderCall) -> Preview {
    Preview { calls: vec![call], downtime: false }
}

fn text<'v>(field: &str, desired: &'v Value) -> Result<&'v str, NotRevertible> {
    desired.as_str().ok_or_else(|| NotRevertible::BadDesired(format!("{field}: the desired value {desired} is not a string")))
}

fn droplet_action(target: Target<'_>, body: Value, description: String) -> ProviderCall {
    ProviderCall {
        method: "POST".into(),
        path: format!("/v2/droplets/{}/actions", target.id),
        body,
        description,
        waits_for_action: true,
    }
}

fn rename(target: Target<'_>, name: &str) -> ProviderCall {
    droplet_action(target, json!({"type": "rename", "name": name}), format!("rename the droplet to {name}"))
}

fn power_on(target: Target<'_>) -> ProviderCall {
    droplet_action(target, json!({"type": "power_on"}), "power the droplet on".into())
}

fn shutdown(target: Target<'_>) -> ProviderCall {
    droplet_action(target, json!({"type": "shutdown"}), "shut the droplet down gracefully".into())
}

fn power(target: Target<'_>, desired: &str) -> Result<Preview, NotRevertible> {
    match desired {
        "active" => Ok(one(power_on(target))),
        "off" => Ok(one(shutdown(target))),
        other => {
            Err(NotRevertible::BadDesired(format!("status: only \"active\" (power on) and \"off\" (shut down) can be reverted to, not {other:?}")))
        }
    }
}

/// A droplet resizes only when off: shutdown, resize (CPU and RAM only, so it
/// can be undone), power on. A droplet that is off already just resizes.
fn resize(target: Target<'_>, size: &str, live: &LiveView<'_>) -> Result<Preview, NotRevertible> {
    let resize = droplet_action(
        target,
        json!({"type": "resize", "size": size, "disk": false}),
        format!("resize the droplet to {size} (CPU and RAM only; the disk is not grown, so this can be undone)"),
    );
    if live.status == Some("off") {
        return Ok(one(resize));
    }
    Ok(Preview { calls: vec![shutdown(target), resize, power_on(target)], downtime: true })
}

/// Tags are added (creating a missing tag first) and, under exact matching,
/// removed; a tag that an ignore rule leaves out of the comparison is never removed.
fn tags(target: Target<'_>, desired: &Value, live: &LiveView<'_>, rules: &FieldRules<'_>) -> Result<Preview, NotRevertible> {
    let want = tag_list(desired)?;
    let have: Vec<String> = live.tags.map(<[String]>::to_vec).unwrap_or_default();
    let resources = json!({"resources": [{"resource_id": target.id, "resource_type": target.type_}]});
    let mut calls = Vec::new();
    for tag in want.iter().filter(|t| !have.contains(t)) {
        calls.push(ProviderCall {
            method: "POST".into(),
            path: "/v2/tags".into(),
            body: json!({"name": tag}),
            description: format!("create the tag {tag} (a tag that exists already is left as it is)"),
            waits_for_action: false,
        });
        calls.push(tag_call("POST", tag, &resources, format!("tag the {} with {tag}", target.type_)));
    }
    if rules.mode == MatchMode::Exact {
        let kept_by_rule =
            |t: &str| rules.ignore.iter().any(|r| r.paths.is_empty() && r.values.iter().any(|g| glob_match(g, t)));
        for tag in have.iter().filter(|t| !want.contains(t) && !kept_by_rule(t)) {
            calls.push(tag_call("DELETE", tag, &resources, format!("remove the tag {tag} from the {}", target.type_)));
        }
    }
    Ok(Preview { calls, downtime: false })
}

fn tag_list(desired: &Value) -> Result<Vec<String>, NotRevertible> {
    let bad = || NotRevertible::BadDesired(format!("tags: the desired value {desired} is not a list of DigitalOcean tag names"));
    let list = desired.as_array().ok_or_else(bad)?;
    let mut tags = Vec::new();
    for t in list {
        let t = t.as_str().ok_or_else(bad)?;
        // DigitalOcean's tag names: letters, digits, `_`, `-`, `:`, at most 255.
        let valid =
            !t.is_empty() && t.len() <= 255 && t.chars().all(|c| c.is_ascii_alphanumeric() || "_-:".contains(c));
        if !valid {
            return Err(NotRevertible::BadDesired(format!("tags: {t:?} is not a valid DigitalOcean tag name (letters, digits, _ - :)")));
        }
        tags.push(t.to_owned());
    }
    Ok(tags)
}

fn tag_call(method: &str, tag: &str, resources: &Value, description: String) -> ProviderCall {
    ProviderCall {
        method: method.into(),
        path: format!("/v2/tags/{tag}/resources"),
        body: resources.clone(),
        description,
        waits_for_action: false,
    }
}

/// Volumes only grow (DigitalOcean cannot shrink one).
fn grow_volume(target: Target<'_>, desired: &Value, live: &LiveView<'_>) -> Result<Preview, NotRevertible> {
    let want =
        desired.as_u64().ok_or_else(|| NotRevertible::BadDesired(format!("size_gigabytes: the desired value {desired} is not a whole number")))?;
    let have = live.attrs.and_then(|a| a.get("size_gigabytes")).as_ref().and_then(Value::as_u64);
    let region = live.region.ok_or_else(|| NotRevertible::LiveUnknown("size_gigabytes: the volume's region is not known, and a resize must name it".into()))?;
    match have {
        Some(have) if want < have => Err(NotRevertible::Refused(format!(
            "size_gigabytes: a volume can only grow, and reverting {have} GiB to {want} GiB would shrink it"
        ))),
        _ if want > 16_384 => {
            Err(NotRevertible::BadDesired(format!("size_gigabytes: {want} GiB is above DigitalOcean's largest volume (16,384 GiB)")))
        }
        _ => Ok(one(ProviderCall {
            method: "POST".into(),
            path: format!("/v2/volumes/{}/actions", target.id),
            body: json!({"type": "resize", "size_gigabytes": want, "region": region}),
            description: format!("grow the volume to {want} GiB"),
            waits_for_action: true,
        })),
    }
}

/// A firewall update replaces the whole firewall, so the call carries every
/// other attribute as it is live.
fn firewall(target: Target<'_>, field: &str, desired: &Value, live: &LiveView<'_>) -> Result<Preview, NotRevertible> {
    if !desired.is_array() {
        return Err(NotRevertible::BadDesired(format!("{field}: the desired value {desired} is not a list of rules")));
    }
    let name = live.name.ok_or_else(|| NotRevertible::LiveUnknown("the firewall's name is not known, and an update must carry it".into()))?;
    let attr = |key: &str| live.attrs.and_then(|a| a.get(key)).unwrap_or_else(|| json!([]));
    let mut body = json!({
        "name": name,
        "inbound_rules": attr("inbound_rules"),
        "outbound_rules": attr("outbound_rules"),
        "droplet_ids": attr("droplet_ids"),
        "tags": live.tags.map(<[String]>::to_vec).unwrap_or_default(),
    });
    body[field] = desired.clone();
    if loosely_equal(&attr(field), desired) {
        return Err(NotRevertible::Refused(format!("{field}: the live rules already equal the desired ones")));
    }
    Ok(one(ProviderCall {
        method: "PUT".into(),
        path: format!("/v2/firewalls/{}", target.id),
        body,
        description: format!(
            "replace the firewall's {field} with the desired ones (every other attribute as it is live)"
        ),
        waits_for_action: false,
    }))
}
