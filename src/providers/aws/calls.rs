//! The EC2 writes a revert may send, typed. A saga's record keeps each as a
//! [`ProviderCall`] in the shape of EC2's Query API (`POST /?Action=CreateTags`)
//! with the parameters as JSON; a record is sent only if it reads back as one
//! of these, field for field, so nothing else can be forged into a call. Pure.

use super::model::{Rule, RuleProblem};
use crate::api::ProviderCall;
use crate::providers::contract::CLAIM_KEY;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One EC2 write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "Action", rename_all_fields = "PascalCase", deny_unknown_fields)]
pub enum Ec2Call {
    CreateTags { region: String, resource_id: String, tags: BTreeMap<String, String> },
    DeleteTags { region: String, resource_id: String, keys: Vec<String> },
    StopInstances { region: String, instance_id: String },
    StartInstances { region: String, instance_id: String },
    /// Changes the instance type (the instance must be stopped).
    ModifyInstanceAttribute { region: String, instance_id: String, instance_type: String },
    AuthorizeSecurityGroupIngress { region: String, group_id: String, rule: Rule },
    AuthorizeSecurityGroupEgress { region: String, group_id: String, rule: Rule },
    RevokeSecurityGroupIngress { region: String, group_id: String, rule: Rule },
    RevokeSecurityGroupEgress { region: String, group_id: String, rule: Rule },
    /// Grows a volume to `size` GiB.
    ModifyVolume { region: String, volume_id: String, size: i32 },
}

const PREFIX: &str = "/?Action=";

impl Ec2Call {
    pub fn action(&self) -> &'static str {
        match self {
            Ec2Call::CreateTags { .. } => "CreateTags",
            Ec2Call::DeleteTags { .. } => "DeleteTags",
            Ec2Call::StopInstances { .. } => "StopInstances",
            Ec2Call::StartInstances { .. } => "StartInstances",
            Ec2Call::ModifyInstanceAttribute { .. } => "ModifyInstanceAttribute",
            Ec2Call::AuthorizeSecurityGroupIngress { .. } => "AuthorizeSecurityGroupIngress",
            Ec2Call::AuthorizeSecurityGroupEgress { .. } => "AuthorizeSecurityGroupEgress",
            Ec2Call::RevokeSecurityGroupIngress { .. } => "RevokeSecurityGroupIngress",
            Ec2Call::RevokeSecurityGroupEgress { .. } => "RevokeSecurityGroupEgress",
            Ec2Call::ModifyVolume { .. } => "ModifyVolume",
        }
    }

    pub fn region(&self) -> &str {
        match self {
            Ec2Call::CreateTags { region, .. }
            | Ec2Call::DeleteTags { region, .. }
            | Ec2Call::StopInstances { region, .. }
            | Ec2Call::StartInstances { region, .. }
            | Ec2Call::ModifyInstanceAttribute { region, .. }
            | Ec2Call::AuthorizeSecurityGroupIngress { region, .. }
            | Ec2Call::AuthorizeSecurityGroupEgress { region, .. }
            | Ec2Call::RevokeSecurityGroupIngress { region, .. }
            | Ec2Call::RevokeSecurityGroupEgress { region, .. }
            | Ec2Call::ModifyVolume { region, .. } => region,
        }
    }

    /// The one resource the call writes to, and the types it may be.
    pub fn resource(&self) -> (&str, &'static [&'static str]) {
        const ANY: &[&str] = &["instance", "volume", "security_group"];
        match self {
            Ec2Call::CreateTags { resource_id, .. } | Ec2Call::DeleteTags { resource_id, .. } => (resource_id, ANY),
            Ec2Call::StopInstances { instance_id, .. }
            | Ec2Call::StartInstances { instance_id, .. }
            | Ec2Call::ModifyInstanceAttribute { instance_id, .. } => (instance_id, &["instance"]),
            Ec2Call::AuthorizeSecurityGroupIngress { group_id, .. }
            | Ec2Call::AuthorizeSecurityGroupEgress { group_id, .. }
            | Ec2Call::RevokeSecurityGroupIngress { group_id, .. }
            | Ec2Call::RevokeSecurityGroupEgress { group_id, .. } => (group_id, &["security_group"]),
            Ec2Call::ModifyVolume { volume_id, .. } => (volume_id, &["volume"]),
        }
    }

    /// Starts work that outlasts the answer (an instance stopping or
    /// starting, a volume being modified), followed by its handle.
    pub fn lasts(&self) -> bool {
        matches!(self, Ec2Call::StopInstances { .. } | Ec2Call::StartInstances { .. } | Ec2Call::ModifyVolume { .. })
    }

    /// The call as a saga step records it.
    pub fn to_call(&self, description: String) -> ProviderCall {
        let mut body = serde_json::to_value(self).expect("an EC2 call serializes");
        if let Value::Object(map) = &mut body {
            map.remove("Action");
        }
        ProviderCall {
            method: "POST".into(),
            path: format!("{PREFIX}{}", self.action()),
            body,
            description,
            waits_for_action: self.lasts(),
        }
    }

    /// The EC2 call a recorded step is, or why it is none.
    pub fn parse(call: &ProviderCall) -> Result<Ec2Call, NotAnEc2Call> {
        let not_one = |why: CallProblem| NotAnEc2Call { method: call.method.clone(), path: call.path.clone(), why };
        let action = call.path.strip_prefix(PREFIX).filter(|_| call.method == "POST");
        let action = action.ok_or_else(|| not_one(CallProblem::NotPost))?;
        let Value::Object(mut body) = call.body.clone() else { return Err(not_one(CallProblem::BodyNotAnObject)) };
        body.insert("Action".into(), Value::String(action.to_owned()));
        let parsed: Ec2Call =
            serde_json::from_value(Value::Object(body)).map_err(|e| not_one(CallProblem::Unreadable(e.to_string())))?;
        if parsed.lasts() != call.waits_for_action {
            return Err(not_one(CallProblem::WaitsForAction));
        }
        parsed.check().map_err(not_one)?;
        Ok(parsed)
    }

    /// What the planner guarantees of every call it makes, checked again on
    /// a recorded one: a region's name, no claim or `aws:` tag written, a
    /// whole rule, a size EBS has.
    fn check(&self) -> Result<(), CallProblem> {
        let region = self.region();
        if !super::is_region_name(region) {
            return Err(CallProblem::NotARegion(region.to_owned()));
        }
        let untouchable = |k: &str| k == CLAIM_KEY || k.starts_with("aws:");
        match self {
            Ec2Call::CreateTags { tags, .. } if tags.is_empty() || tags.keys().any(|k| untouchable(k)) => {
                Err(CallProblem::SetsUntouchableTags)
            }
            Ec2Call::DeleteTags { keys, .. } if keys.is_empty() || keys.iter().any(|k| untouchable(k)) => {
                Err(CallProblem::RemovesUntouchableTags)
            }
            Ec2Call::AuthorizeSecurityGroupIngress { rule, .. }
            | Ec2Call::AuthorizeSecurityGroupEgress { rule, .. }
            | Ec2Call::RevokeSecurityGroupIngress { rule, .. }
            | Ec2Call::RevokeSecurityGroupEgress { rule, .. } => Ok(rule.check()?),
            Ec2Call::ModifyVolume { size, .. } if !(1..=super::plan::LARGEST_VOLUME).contains(&i64::from(*size)) => {
                Err(CallProblem::NoVolumeSize(*size))
            }
            _ => Ok(()),
        }
    }
}

/// A recorded step that is not a call arcadia-drift sends: never sent.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{method} {path} is not an EC2 call arcadia-drift sends: {why}")]
pub struct NotAnEc2Call {
    pub method: String,
    pub path: String,
    pub why: CallProblem,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum CallProblem {
    #[error("not POST {PREFIX}<action>")]
    NotPost,
    #[error("its body is not an object")]
    BodyNotAnObject,
    /// serde's words: an unknown action or field, a missing one, a wrong type.
    #[error("{0}")]
    Unreadable(String),
    #[error("waitsForAction does not match the action")]
    WaitsForAction,
    #[error("{0:?} is not a region")]
    NotARegion(String),
    #[error("it sets the claim {CLAIM_KEY}, an aws: tag or nothing")]
    SetsUntouchableTags,
    #[error("it removes the claim {CLAIM_KEY}, an aws: tag or nothing")]
    RemovesUntouchableTags,
    #[error(transparent)]
    Rule(#[from] RuleProblem),
    #[error("{0} GiB is no EBS volume size")]
    NoVolumeSize(i32),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_reads_back_as_itself_and_nothing_else() {
        let call = Ec2Call::ModifyVolume { region: "us-east-1".into(), volume_id: "vol-1".into(), size: 20 };
        let recorded = call.to_call("grow".into());
        assert_eq!(recorded.path, "/?Action=ModifyVolume");
        assert_eq!(recorded.body, json!({"Region": "us-east-1", "VolumeId": "vol-1", "Size": 20}));
        assert!(recorded.waits_for_action);
        assert_eq!(Ec2Call::parse(&recorded), Ok(call));

        let mut extra = recorded.clone();
        extra.body["DryRun"] = json!(false);
        assert!(Ec2Call::parse(&extra).unwrap_err().to_string().contains("unknown field `DryRun`"));
        let mut other = recorded.clone();
        other.path = "/?Action=TerminateInstances".into();
        assert!(Ec2Call::parse(&other).unwrap_err().to_string().contains("unknown variant `TerminateInstances`"));
        let mut quick = recorded.clone();
        quick.waits_for_action = false;
        assert!(Ec2Call::parse(&quick).unwrap_err().to_string().contains("waitsForAction"));
        let mut huge = recorded;
        huge.body["Size"] = json!(1_000_000);
        assert!(Ec2Call::parse(&huge).unwrap_err().to_string().contains("no EBS volume size"));
    }

    #[test]
    fn a_recorded_call_never_touches_the_claim_or_another_region() {
        let untag = |keys: Value, region: &str| ProviderCall {
            method: "POST".into(),
            path: "/?Action=DeleteTags".into(),
            body: json!({"Region": region, "ResourceId": "i-1", "Keys": keys}),
            description: String::new(),
            waits_for_action: false,
        };
        assert!(Ec2Call::parse(&untag(json!(["env"]), "us-east-1")).is_ok());
        assert!(Ec2Call::parse(&untag(json!(["arcadia-ns"]), "us-east-1")).unwrap_err().to_string().contains("the claim"));
        assert!(Ec2Call::parse(&untag(json!(["aws:cloudformation:stack-id"]), "us-east-1")).is_err());
        assert!(Ec2Call::parse(&untag(json!(["env"]), "../evil")).unwrap_err().to_string().contains("is not a region"));
    }

    #[test]
    fn a_rule_in_a_call_is_a_rule() {
        let rule = json!({"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"});
        let body = json!({"Region": "us-east-1", "GroupId": "sg-1", "Rule": rule});
        let call = ProviderCall {
            method: "POST".into(),
            path: "/?Action=AuthorizeSecurityGroupIngress".into(),
            body,
            description: String::new(),
            waits_for_action: false,
        };
        assert!(matches!(Ec2Call::parse(&call), Ok(Ec2Call::AuthorizeSecurityGroupIngress { .. })));
    }
}
