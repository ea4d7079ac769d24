//! EC2's objects as CloudResource status, in the words AWS users write
//! (Terraform's: `instance_type`, `vpc_security_group_ids`, `ingress`, ...).
//! Tags become `tagMap`, compared as a map; a security group's rules are
//! flattened to one [`Rule`] per protocol, port range and source, so that how
//! AWS groups them (or in what order) never makes a drift. Pure.

use super::AwsType;
use crate::api::{CloudResourceStatus, Fields};
use crate::providers::contract::LiveResource;
use aws_sdk_ec2::types::{Instance, IpPermission, SecurityGroup, Tag, Volume};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One security group rule: a protocol, a port range and exactly one source
/// (or, for egress, destination). `-1` is every protocol, with no ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, a protocol number, or `-1` for all.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    /// An IPv4 range, e.g. `10.0.0.0/8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr_ipv6: Option<String>,
    /// Another security group's id, e.g. `sg-0abc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_group: Option<String>,
    /// A managed prefix list's id, e.g. `pl-0abc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_list: Option<String>,
}

/// A desired security-group rule that is not one.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{value} is not a rule: {why}")]
pub struct NotARule {
    pub value: String,
    pub why: RuleProblem,
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RuleProblem {
    /// serde's words: an unknown field, a missing one, a wrong type.
    #[error("{0}")]
    Unreadable(String),
    #[error("give exactly one of cidr, cidr_ipv6, security_group or prefix_list")]
    NotOneSource,
    #[error("protocol {0} needs from_port and to_port")]
    NoPorts(String),
}

impl Rule {
    /// A rule as `spec.desired` gives it, or why it is not one.
    pub fn parse(value: &Value) -> Result<Rule, NotARule> {
        let not_one = |why: RuleProblem| NotARule { value: value.to_string(), why };
        let rule: Rule =
            serde_json::from_value(value.clone()).map_err(|e| not_one(RuleProblem::Unreadable(e.to_string())))?;
        rule.check().map_err(not_one)?;
        Ok(rule)
    }

    /// Exactly one source, and ports unless the rule is for every protocol.
    pub fn check(&self) -> Result<(), RuleProblem> {
        let sources = [&self.cidr, &self.cidr_ipv6, &self.security_group, &self.prefix_list];
        if sources.iter().filter(|s| s.is_some()).count() != 1 {
            return Err(RuleProblem::NotOneSource);
        }
        if self.protocol != "-1" && (self.from_port.is_none() || self.to_port.is_none()) {
            return Err(RuleProblem::NoPorts(self.protocol.clone()));
        }
        Ok(())
    }

    /// The rule in EC2's own shape, for an authorize or revoke call.
    pub fn to_permission(&self) -> IpPermission {
        use aws_sdk_ec2::types::{IpRange, Ipv6Range, PrefixListId, UserIdGroupPair};
        let mut p = IpPermission::builder().ip_protocol(&self.protocol).set_from_port(self.from_port).set_to_port(self.to_port);
        if let Some(c) = &self.cidr {
            p = p.ip_ranges(IpRange::builder().cidr_ip(c).build());
        }
        if let Some(c) = &self.cidr_ipv6 {
            p = p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build());
        }
        if let Some(g) = &self.security_group {
            p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build());
        }
        if let Some(l) = &self.prefix_list {
            p = p.prefix_list_ids(PrefixListId::builder().prefix_list_id(l).build());
        }
        p.build()
    }
}

/// Every rule one permission holds, one per source; descriptions are left
/// out (they are not what a rule allows).
pub fn flatten(permission: &IpPermission) -> Vec<Rule> {
    let protocol = permission.ip_protocol().unwrap_or("-1").to_owned();
    let all = protocol == "-1";
    let base = Rule {
        protocol,
        from_port: permission.from_port().filter(|_| !all),
        to_port: permission.to_port().filter(|_| !all),
        cidr: None,
        cidr_ipv6: None,
        security_group: None,
        prefix_list: None,
    };
    let mut rules = Vec::new();
    for r in permission.ip_ranges() {
        rules.push(Rule { cidr: r.cidr_ip().map(str::to_owned), ..base.clone() });
    }
    for r in permission.ipv6_ranges() {
        rules.push(Rule { cidr_ipv6: r.cidr_ipv6().map(str::to_owned), ..base.clone() });
    }
    for r in permission.user_id_group_pairs() {
        rules.push(Rule { security_group: r.group_id().map(str::to_owned), ..base.clone() });
    }
    for r in permission.prefix_list_ids() {
        rules.push(Rule { prefix_list: r.prefix_list_id().map(str::to_owned), ..base.clone() });
    }
    rules
}

/// A group's rules in one direction, flattened, sorted and without duplicates.
fn rule_list(permissions: &[IpPermission]) -> Value {
    let mut rules: Vec<Rule> = permissions.iter().flat_map(flatten).collect();
    rules.sort();
    rules.dedup();
    serde_json::to_value(rules).unwrap_or_default()
}

/// The tags a user may set: AWS's own `aws:` tags (a launch template's, an
/// Auto Scaling group's, CloudFormation's) are left out, since no one can
/// set or remove them and comparing them would be drift forever.
fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|t| !t.key().is_some_and(|k| k.starts_with("aws:")))
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
        .collect()
}

/// Inserts only the values AWS gave: an absent value stays absent.
fn attrs(pairs: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Fields {
    Fields::from(present(pairs))
}

/// The pairs whose value AWS gave, as a JSON object.
fn present(pairs: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Map<String, Value> {
    pairs.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect()
}

fn text(s: Option<&str>) -> Option<Value> {
    s.map(|s| Value::String(s.to_owned()))
}

/// An instance, unless it has no id.
pub fn instance(region: &str, i: &Instance) -> Option<LiveResource> {
    let id = i.instance_id()?.to_owned();
    let tags = tag_map(i.tags());
    let instance_type = i.instance_type().map(|t| t.as_str().to_owned());
    let groups: Vec<Value> = i.security_groups().iter().filter_map(|g| text(g.group_id())).collect();
    let attrs = attrs([
        ("instance_type", instance_type.clone().map(Value::String)),
        ("vpc_security_group_ids", Some(Value::Array(groups))),
        ("subnet_id", text(i.subnet_id())),
        ("vpc_id", text(i.vpc_id())),
        ("ami", text(i.image_id())),
        ("private_ip", text(i.private_ip_address())),
        ("public_ip", text(i.public_ip_address())),
        ("ebs_optimized", i.ebs_optimized().map(Value::Bool)),
        ("monitoring", i.monitoring().and_then(|m| m.state()).map(|s| json!(s.as_str() == "enabled"))),
        ("availability_zone", text(i.placement().and_then(|p| p.availability_zone()))),
    ]);
    let status = CloudResourceStatus {
        name: tags.get("Name").cloned(),
        region: Some(region.to_owned()),
        status: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()),
        size: instance_type,
        tag_map: Some(tags),
        attrs: Some(attrs),
        ..CloudResourceStatus::default()
    };
    Some(LiveResource { type_: AwsType::Instance.word(), region: Some(region.to_owned()), id, status })
}

/// An EBS volume, unless it has no id. Its `size` (GiB) stays in the
/// attributes: `status.size` would win over it and read as a text.
pub fn volume(region: &str, v: &Volume) -> Option<LiveResource> {
    let id = v.volume_id()?.to_owned();
    let tags = tag_map(v.tags());
    let attachments: Vec<Value> = v
        .attachments()
        .iter()
        .map(|a| {
            let pairs = [
                ("instance_id", text(a.instance_id())),
                ("device", text(a.device())),
                ("state", text(a.state().map(|s| s.as_str()))),
            ];
            Value::Object(present(pairs))
        })
        .collect();
    let attrs = attrs([
        ("size", v.size().map(|s| json!(s))),
        ("type", text(v.volume_type().map(|t| t.as_str()))),
        ("iops", v.iops().map(|s| json!(s))),
        ("throughput", v.throughput().map(|s| json!(s))),
        ("encrypted", v.encrypted().map(Value::Bool)),
        ("availability_zone", text(v.availability_zone())),
        ("attachments", Some(Value::Array(attachments))),
    ]);
    let status = CloudResourceStatus {
        name: tags.get("Name").cloned(),
        region: Some(region.to_owned()),
        status: v.state().map(|s| s.as_str().to_owned()),
        tag_map: Some(tags),
        attrs: Some(attrs),
        ..CloudResourceStatus::default()
    };
    Some(LiveResource { type_: AwsType::Volume.word(), region: Some(region.to_owned()), id, status })
}

/// A security group, unless it has no id.
pub fn security_group(region: &str, g: &SecurityGroup) -> Option<LiveResource> {
    let id = g.group_id()?.to_owned();
    let attrs = attrs([
        ("description", text(g.description())),
        ("vpc_id", text(g.vpc_id())),
        ("ingress", Some(rule_list(g.ip_permissions()))),
        ("egress", Some(rule_list(g.ip_permissions_egress()))),
    ]);
    let status = CloudResourceStatus {
        name: g.group_name().map(str::to_owned),
        region: Some(region.to_owned()),
        tag_map: Some(tag_map(g.tags())),
        attrs: Some(attrs),
        ..CloudResourceStatus::default()
    };
    Some(LiveResource { type_: AwsType::SecurityGroup.word(), region: Some(region.to_owned()), id, status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{IpRange, UserIdGroupPair};

    fn permission(protocol: &str, ports: Option<(i32, i32)>, cidrs: &[&str], groups: &[&str]) -> IpPermission {
        let mut p = IpPermission::builder().ip_protocol(protocol);
        if let Some((from, to)) = ports {
            p = p.from_port(from).to_port(to);
        }
        for c in cidrs {
            p = p.ip_ranges(IpRange::builder().cidr_ip(*c).description("office").build());
        }
        for g in groups {
            p = p.user_id_group_pairs(UserIdGroupPair::builder().group_id(*g).user_id("123456789012").build());
        }
        p.build()
    }

    #[test]
    fn grouping_and_order_of_permissions_never_change_the_rules() {
        let grouped = [permission("tcp", Some((22, 22)), &["10.0.0.0/8", "192.168.0.0/16"], &["sg-1"])];
        let split = [
            permission("tcp", Some((22, 22)), &[], &["sg-1"]),
            permission("tcp", Some((22, 22)), &["192.168.0.0/16"], &[]),
            permission("tcp", Some((22, 22)), &["10.0.0.0/8"], &[]),
        ];
        assert_eq!(rule_list(&grouped), rule_list(&split));
        assert_eq!(
            rule_list(&grouped),
            json!([
                {"protocol": "tcp", "from_port": 22, "to_port": 22, "security_group": "sg-1"},
                {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"},
                {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "192.168.0.0/16"},
            ])
        );
    }

    #[test]
    fn every_protocol_has_no_ports() {
        let all = permission("-1", Some((0, 65535)), &["0.0.0.0/0"], &[]);
        assert_eq!(flatten(&all), [Rule::parse(&json!({"protocol": "-1", "cidr": "0.0.0.0/0"})).unwrap()]);
    }

    #[test]
    fn a_desired_rule_names_one_source_and_its_ports() {
        let two = Rule::parse(&json!({"protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "a", "security_group": "b"}));
        assert!(two.unwrap_err().to_string().contains("exactly one of cidr"));
        let portless = Rule::parse(&json!({"protocol": "tcp", "cidr": "10.0.0.0/8"}));
        assert!(portless.unwrap_err().to_string().contains("protocol tcp needs from_port and to_port"));
        let odd = Rule::parse(&json!({"protocol": "tcp", "port": 22, "cidr": "10.0.0.0/8"}));
        assert!(odd.unwrap_err().to_string().contains("unknown field `port`"));
    }

    #[test]
    fn an_instance_in_terraform_words() {
        let i = Instance::builder()
            .instance_id("i-0abc")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .tags(Tag::builder().key("Name").value("web-1").build())
            .tags(Tag::builder().key("arcadia-ns").value("team-a").build())
            .tags(Tag::builder().key("aws:autoscaling:groupName").value("web").build())
            .subnet_id("subnet-1")
            .build();
        let live = instance("eu-west-1", &i).unwrap();
        assert_eq!(live.id, "i-0abc");
        assert_eq!(live.status.name.as_deref(), Some("web-1"));
        assert_eq!(live.status.size.as_deref(), Some("t3.micro"));
        assert_eq!(live.status.region.as_deref(), Some("eu-west-1"));
        assert_eq!(live.status.tag_map.as_ref().unwrap()["arcadia-ns"], "team-a");
        assert_eq!(live.status.tag_map.as_ref().unwrap().len(), 2, "AWS's own aws: tags are left out");
        let attrs = live.status.attrs.unwrap();
        assert_eq!(attrs.get("instance_type"), Some(json!("t3.micro")));
        assert_eq!(attrs.get("subnet_id"), Some(json!("subnet-1")));
        assert_eq!(attrs.get("public_ip"), None, "absent stays absent");
    }
}
