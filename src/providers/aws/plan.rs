//! AWS's revert planning: for one drifted field, the EC2 calls that put the
//! live value back, or why none can. Tags change by exactly the keys that
//! differ, an instance type by stop, modify and start, a security group by
//! exactly the rules that differ (never by replacing it), a volume only by
//! growing. Pure.

use super::calls::Ec2Call;
use super::model::Rule;
use crate::api::ProviderCall;
use crate::detect::{FieldRules, LiveView, MatchMode, loosely_equal};
use crate::providers::contract::{CLAIM_KEY, NotRevertible, Planner, Preview, Target};
use serde_json::Value;
use std::collections::BTreeMap;

/// The largest EBS volume (io2 Block Express), in GiB.
pub const LARGEST_VOLUME: i64 = 65_536;

/// AWS's [`Planner`]; its claim is the default key/value one, the tag `arcadia-ns=<namespace>`.
pub struct AwsPlanner;

impl Planner for AwsPlanner {
    fn provider(&self) -> &'static str {
        super::NAME
    }

    fn display(&self) -> &'static str {
        "AWS"
    }

    fn preview(
        &self,
        target: Target<'_>,
        field: &str,
        desired: &Value,
        live: &LiveView<'_>,
        rules: &FieldRules<'_>,
    ) -> Result<Preview, NotRevertible> {
        crate::providers::contract::only_exact_rules(field, rules)?;
        let region = live.region.ok_or_else(|| {
            NotRevertible::LiveUnknown("the resource's region is not known, and every EC2 call must name it".into())
        })?;
        let at = At { region, id: target.id };
        match (target.type_, field) {
            (_, "tags") => tags(at, desired, live, rules),
            ("instance", "instance_type" | "size") => instance_type(at, desired, live),
            ("security_group", "ingress" | "egress") => security_group_rules(at, field, desired, live),
            ("volume", "size") => grow_volume(at, desired, live),
            (type_, _) => Err(NotRevertible::NoCall(format!(
                "{field} of an AWS {type_} cannot be reverted: arcadia-drift reverts tags, an instance's instance_type, a security group's ingress and egress, and a volume's size"
            ))),
        }
    }

    fn addresses(&self, call: &ProviderCall, target: Target<'_>) -> bool {
        Ec2Call::parse(call).is_ok_and(|c| {
            let (id, types) = c.resource();
            id == target.id && types.contains(&target.type_)
        })
    }

    fn stops(&self, call: &ProviderCall) -> bool {
        matches!(Ec2Call::parse(call), Ok(Ec2Call::StopInstances { .. }))
    }

    fn restarts(&self, call: &ProviderCall) -> bool {
        matches!(Ec2Call::parse(call), Ok(Ec2Call::StartInstances { .. }))
    }
}

/// Where a call writes: a resource in a region.
#[derive(Clone, Copy)]
struct At<'a> {
    region: &'a str,
    id: &'a str,
}

fn one(call: ProviderCall) -> Preview {
    Preview { calls: vec![call], downtime: false }
}

/// Keys whose value differs are set in one `CreateTags`; under exact matching
/// the live keys not desired are removed in one `DeleteTags`, except the
/// claim, AWS's own `aws:` keys and keys an ignore rule leaves out.
fn tags(at: At<'_>, desired: &Value, live: &LiveView<'_>, rules: &FieldRules<'_>) -> Result<Preview, NotRevertible> {
    let want = tag_map(desired)?;
    let empty = BTreeMap::new();
    let have = live.tag_map.unwrap_or(&empty);
    if want.get(CLAIM_KEY).is_some_and(|owner| have.get(CLAIM_KEY) != Some(owner)) {
        return Err(NotRevertible::Refused(format!(
            "tags: the desired {CLAIM_KEY} differs from the live one, and a revert never moves the claim (it says which namespace may revert); change it by hand"
        )));
    }
    let kept = |k: &str| k == CLAIM_KEY || k.starts_with("aws:") || kept_by_rule(rules, k);
    let set: BTreeMap<String, String> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v) && !kept(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let removed: Vec<String> = if rules.mode == MatchMode::Exact {
        have.keys().filter(|k| !want.contains_key(*k) && !kept(k)).cloned().collect()
    } else {
        Vec::new()
    };
    let mut calls = Vec::new();
    if !set.is_empty() {
        let keys: Vec<&str> = set.keys().map(String::as_str).collect();
        let description = format!("set the tags {} on {}", keys.join(", "), at.id);
        calls.push(Ec2Call::CreateTags { region: at.region.into(), resource_id: at.id.into(), tags: set }.to_call(description));
    }
    if !removed.is_empty() {
        let description = format!("remove the tags {} from {} (the claim {CLAIM_KEY} is never removed)", removed.join(", "), at.id);
        calls.push(Ec2Call::DeleteTags { region: at.region.into(), resource_id: at.id.into(), keys: removed }.to_call(description));
    }
    if calls.is_empty() {
        return Err(NotRevertible::Refused(format!(
            "tags: the only differences are in tags a revert never removes (the claim {CLAIM_KEY}, aws: tags, or tags an ignore rule leaves out)"
        )));
    }
    Ok(Preview { calls, downtime: false })
}

/// An ignore rule with the path `/<key>` (or `/*`) leaves that key out, as the comparison reads it.
fn kept_by_rule(rules: &FieldRules<'_>, key: &str) -> bool {
    let token = |p: &str| p.strip_prefix('/').filter(|t| !t.contains('/')).map(|t| t.replace("~1", "/").replace("~0", "~"));
    rules.ignore.iter().flat_map(|r| r.paths).filter_map(|p| token(p)).any(|t| t == "*" || t == key)
}

fn tag_map(desired: &Value) -> Result<BTreeMap<String, String>, NotRevertible> {
    tag_map_in_words(desired).map_err(NotRevertible::BadDesired)
}

fn tag_map_in_words(desired: &Value) -> Result<BTreeMap<String, String>, String> {
    let map = desired.as_object().ok_or_else(|| format!("tags: the desired value {desired} is not a map of tag keys to values"))?;
    let mut tags = BTreeMap::new();
    for (key, value) in map {
        if key.is_empty() || key.len() > 128 || key.starts_with("aws:") {
            return Err(format!("tags: {key:?} is not a tag key AWS lets anyone set (1 to 128 characters, not aws:)"));
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            other => return Err(format!("tags: the value of {key:?} is {other}, not a text")),
        };
        if value.len() > 256 {
            return Err(format!("tags: the value of {key:?} is longer than AWS's 256 characters"));
        }
        tags.insert(key.clone(), value);
    }
    Ok(tags)
}

/// An instance type changes only while the instance is stopped: stop,
/// modify, start. One that is stopped already is only modified.
fn instance_type(at: At<'_>, desired: &Value, live: &LiveView<'_>) -> Result<Preview, NotRevertible> {
    let want = desired.as_str().filter(|t| t.contains('.') && !t.contains(char::is_whitespace));
    let want = want.ok_or_else(|| {
        NotRevertible::BadDesired(format!("instance_type: the desired value {desired} is not an instance type such as \"t3.micro\""))
    })?;
    let (region, instance_id) = (at.region.to_owned(), at.id.to_owned());
    let modify = Ec2Call::ModifyInstanceAttribute { region: region.clone(), instance_id: instance_id.clone(), instance_type: want.into() }
        .to_call(format!("change the instance type of {} to {want}", at.id));
    if live.status == Some("stopped") {
        return Ok(one(modify));
    }
    let stop = Ec2Call::StopInstances { region: region.clone(), instance_id: instance_id.clone() }
        .to_call(format!("stop the instance {}", at.id));
    let start = Ec2Call::StartInstances { region, instance_id }.to_call(format!("start the instance {} again", at.id));
    Ok(Preview { calls: vec![stop, modify, start], downtime: true })
}

/// Exactly the rules that differ: the desired ones missing live are
/// authorized, the live ones not desired revoked, one call per rule.
fn security_group_rules(at: At<'_>, field: &str, desired: &Value, live: &LiveView<'_>) -> Result<Preview, NotRevertible> {
    let bad = |why: String| NotRevertible::BadDesired(format!("{field}: {why}"));
    let want = desired.as_array().ok_or_else(|| bad(format!("the desired value {desired} is not a list of rules")))?;
    let want: Vec<Rule> = want.iter().map(Rule::parse).collect::<Result<_, _>>().map_err(|e| bad(e.to_string()))?;
    let have = live.attrs.and_then(|a| a.get(field)).unwrap_or(Value::Array(Vec::new()));
    let have: Vec<Rule> = serde_json::from_value(have)
        .map_err(|e| NotRevertible::LiveUnknown(format!("{field}: the live rules cannot be read: {e}")))?;
    let absent = |rule: &Rule, among: &[Rule]| {
        let value = serde_json::to_value(rule).unwrap_or_default();
        !among.iter().any(|r| loosely_equal(&serde_json::to_value(r).unwrap_or_default(), &value))
    };
    let (region, group_id) = (at.region.to_owned(), at.id.to_owned());
    let mut calls = Vec::new();
    for rule in want.iter().filter(|r| absent(r, &have)) {
        let words = describe(rule);
        let call = if field == "ingress" {
            Ec2Call::AuthorizeSecurityGroupIngress { region: region.clone(), group_id: group_id.clone(), rule: rule.clone() }
        } else {
            Ec2Call::AuthorizeSecurityGroupEgress { region: region.clone(), group_id: group_id.clone(), rule: rule.clone() }
        };
        calls.push(call.to_call(format!("allow {field} {words} in {}", at.id)));
    }
    for rule in have.iter().filter(|r| absent(r, &want)) {
        let words = describe(rule);
        let call = if field == "ingress" {
            Ec2Call::RevokeSecurityGroupIngress { region: region.clone(), group_id: group_id.clone(), rule: rule.clone() }
        } else {
            Ec2Call::RevokeSecurityGroupEgress { region: region.clone(), group_id: group_id.clone(), rule: rule.clone() }
        };
        calls.push(call.to_call(format!("revoke {field} {words} in {}", at.id)));
    }
    if calls.is_empty() {
        return Err(NotRevertible::Refused(format!("{field}: the live rules already equal the desired ones")));
    }
    Ok(Preview { calls, downtime: false })
}

/// A rule in words: `tcp 22-22 from 10.0.0.0/8`.
fn describe(rule: &Rule) -> String {
    let ports = match (rule.from_port, rule.to_port) {
        (Some(from), Some(to)) => format!(" {from}-{to}"),
        _ => String::new(),
    };
    let source = [&rule.cidr, &rule.cidr_ipv6, &rule.security_group, &rule.prefix_list]
        .into_iter()
        .find_map(|s| s.as_deref())
        .unwrap_or("nowhere");
    let protocol = if rule.protocol == "-1" { "all traffic" } else { &rule.protocol };
    format!("{protocol}{ports} with {source}")
}

/// A volume only grows.
fn grow_volume(at: At<'_>, desired: &Value, live: &LiveView<'_>) -> Result<Preview, NotRevertible> {
    let want = desired.as_i64().or_else(|| desired.as_str().and_then(|s| s.parse().ok()));
    let bad = |why: String| NotRevertible::BadDesired(why);
    let want = want.filter(|w| *w > 0).ok_or_else(|| bad(format!("size: the desired value {desired} is not a whole number of GiB")))?;
    let have = live.attrs.and_then(|a| a.get("size")).and_then(|v| v.as_i64());
    match have {
        Some(have) if want < have => Err(NotRevertible::Refused(format!(
            "size: an EBS volume can only grow, and reverting {have} GiB to {want} GiB would shrink it"
        ))),
        _ if want > LARGEST_VOLUME => Err(bad(format!("size: {want} GiB is above the largest EBS volume ({LARGEST_VOLUME} GiB)"))),
        _ => {
            let size = i32::try_from(want).map_err(|_| bad(format!("size: {want} GiB is out of range")))?;
            let call = Ec2Call::ModifyVolume { region: at.region.into(), volume_id: at.id.into(), size };
            Ok(one(call.to_call(format!("grow the volume {} to {want} GiB", at.id))))
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
