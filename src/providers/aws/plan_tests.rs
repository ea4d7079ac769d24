use super::*;
use crate::api::Fields;
use crate::detect::IgnoreRule;
use serde_json::json;

fn target<'a>(type_: &'a str, id: &'a str) -> Target<'a> {
    Target { provider: "aws", type_, id }
}

/// The preview, with why none in words (as `status.revertNote` shows it).
fn plan(type_: &str, id: &str, field: &str, desired: Value, live: &LiveView<'_>) -> Result<Preview, String> {
    AwsPlanner.preview(target(type_, id), field, &desired, live, &FieldRules::default()).map_err(|e| e.to_string())
}

fn calls(p: &Preview) -> Vec<(String, Value)> {
    p.calls.iter().map(|c| (c.path.trim_start_matches("/?Action=").to_owned(), c.body.clone())).collect()
}

#[test]
fn tags_change_by_exactly_the_keys_that_differ_and_never_lose_the_claim() {
    let have: BTreeMap<String, String> = [("env", "dev"), ("Name", "web"), ("arcadia-ns", "team-a"), ("old", "x"), ("aws:cloudformation:stack-name", "s")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    let live = LiveView { region: Some("us-east-1"), tag_map: Some(&have), ..LiveView::default() };
    let p = plan("instance", "i-1", "tags", json!({"env": "prod", "Name": "web"}), &live).unwrap();
    assert_eq!(
        calls(&p),
        [
            ("CreateTags".into(), json!({"Region": "us-east-1", "ResourceId": "i-1", "Tags": {"env": "prod"}})),
            ("DeleteTags".into(), json!({"Region": "us-east-1", "ResourceId": "i-1", "Keys": ["old"]})),
        ]
    );
    assert!(!p.downtime);

    let only_the_claim = plan("instance", "i-1", "tags", json!({"env": "dev", "Name": "web", "old": "x"}), &live);
    assert!(only_the_claim.unwrap_err().contains("the claim arcadia-ns"));
    let moved = plan("instance", "i-1", "tags", json!({"env": "prod", "arcadia-ns": "team-b"}), &live);
    assert!(moved.unwrap_err().contains("never moves the claim"), "a revert may not hand the resource to another namespace");
    let paths = ["/old".to_string()];
    let rules = FieldRules { ignore: vec![IgnoreRule { id: "spec.ignore[0]", field: "tags", paths: &paths, values: &[] }], mode: MatchMode::Exact };
    let p = AwsPlanner.preview(target("instance", "i-1"), "tags", &json!({"env": "prod", "Name": "web"}), &live, &rules).unwrap();
    assert_eq!(p.calls.len(), 1, "a key an ignore rule leaves out is never removed");
}

#[test]
fn bad_tags_are_refused_in_words() {
    let live = LiveView { region: Some("us-east-1"), ..LiveView::default() };
    assert!(plan("volume", "vol-1", "tags", json!(["a"]), &live).unwrap_err().contains("not a map of tag keys"));
    assert!(plan("volume", "vol-1", "tags", json!({"aws:x": "y"}), &live).unwrap_err().contains("\"aws:x\" is not a tag key"));
    assert!(plan("volume", "vol-1", "tags", json!({"a": {"b": 1}}), &live).unwrap_err().contains("not a text"));
    let nowhere = LiveView::default();
    assert!(plan("volume", "vol-1", "tags", json!({"a": "b"}), &nowhere).unwrap_err().contains("region is not known"));
}

#[test]
fn an_instance_type_changes_while_stopped() {
    let running = LiveView { region: Some("eu-west-1"), status: Some("running"), size: Some("t3.micro"), ..LiveView::default() };
    let p = plan("instance", "i-1", "instance_type", json!("t3.large"), &running).unwrap();
    let actions: Vec<String> = calls(&p).into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["StopInstances", "ModifyInstanceAttribute", "StartInstances"]);
    assert!(p.downtime, "a stop needs the downtime approval");
    assert!(AwsPlanner.stops(&p.calls[0]) && AwsPlanner.restarts(&p.calls[2]));
    assert!(!AwsPlanner.stops(&p.calls[1]) && !AwsPlanner.restarts(&p.calls[1]));

    let stopped = LiveView { status: Some("stopped"), ..running };
    let p = plan("instance", "i-1", "size", json!("t3.large"), &stopped).unwrap();
    assert_eq!(calls(&p), [("ModifyInstanceAttribute".into(), json!({"Region": "eu-west-1", "InstanceId": "i-1", "InstanceType": "t3.large"}))]);
    assert!(!p.downtime);
    assert!(plan("instance", "i-1", "instance_type", json!("large"), &running).unwrap_err().contains("not an instance type"));
}

#[test]
fn security_group_rules_change_one_by_one_as_sets() {
    let attrs = Fields::try_from(json!({"ingress": [
        {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"},
        {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0"},
    ]}))
    .unwrap();
    let live = LiveView { region: Some("us-east-1"), attrs: Some(&attrs), ..LiveView::default() };
    let desired = json!([
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0"},
        {"protocol": "tcp", "from_port": "22", "to_port": 22, "cidr": "10.0.0.0/8"},
    ]);
    let err = plan("security_group", "sg-1", "ingress", desired, &live).unwrap_err();
    assert!(err.contains("is not a rule"), "ports are numbers: {err}");
    let desired = json!([
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0"},
        {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"},
    ]);
    let p = plan("security_group", "sg-1", "ingress", desired, &live).unwrap();
    let actions: Vec<String> = calls(&p).into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"]);
    assert_eq!(p.calls[0].body["Rule"]["from_port"], 443);
    assert_eq!(p.calls[1].body["Rule"]["from_port"], 80);
    assert_eq!(p.calls[1].description, "revoke ingress tcp 80-80 with 0.0.0.0/0 in sg-1");
    let same = json!([
        {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0"},
        {"protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"},
    ]);
    assert!(plan("security_group", "sg-1", "ingress", same, &live).unwrap_err().contains("already equal"));
}

#[test]
fn a_volume_only_grows() {
    let attrs = Fields::try_from(json!({"size": 20})).unwrap();
    let live = LiveView { region: Some("us-east-1"), attrs: Some(&attrs), ..LiveView::default() };
    let p = plan("volume", "vol-1", "size", json!(40), &live).unwrap();
    assert_eq!(calls(&p), [("ModifyVolume".into(), json!({"Region": "us-east-1", "VolumeId": "vol-1", "Size": 40}))]);
    assert!(p.calls[0].waits_for_action);
    let refused = AwsPlanner.preview(target("volume", "vol-1"), "size", &json!(10), &live, &FieldRules::default());
    assert!(matches!(refused, Err(NotRevertible::Refused(_))), "a shrink is refused, not a bad value: {refused:?}");
    let shrink = plan("volume", "vol-1", "size", json!(10), &live).unwrap_err();
    assert_eq!(shrink, "size: an EBS volume can only grow, and reverting 20 GiB to 10 GiB would shrink it");
    assert!(plan("volume", "vol-1", "size", json!(100_000), &live).unwrap_err().contains("largest EBS volume"));
    assert!(plan("volume", "vol-1", "size", json!("big"), &live).unwrap_err().contains("whole number"));
}

#[test]
fn a_call_addresses_its_one_resource_of_its_kind() {
    let attrs = Fields::try_from(json!({"size": 20})).unwrap();
    let live = LiveView { region: Some("us-east-1"), attrs: Some(&attrs), ..LiveView::default() };
    let grow = &plan("volume", "vol-1", "size", json!(40), &live).unwrap().calls[0];
    assert!(AwsPlanner.addresses(grow, target("volume", "vol-1")));
    assert!(!AwsPlanner.addresses(grow, target("volume", "vol-2")));
    assert!(!AwsPlanner.addresses(grow, target("instance", "vol-1")), "a volume call writes to no instance");
    let mut forged = grow.clone();
    forged.path = "/?Action=DeleteVolume".into();
    assert!(!AwsPlanner.addresses(&forged, target("volume", "vol-1")));
}

#[test]
fn other_fields_are_not_revertible_and_rules_block_a_revert() {
    let live = LiveView { region: Some("us-east-1"), ..LiveView::default() };
    let err = plan("instance", "i-1", "subnet_id", json!("subnet-2"), &live).unwrap_err();
    assert!(err.starts_with("subnet_id of an AWS instance cannot be reverted"));
    let rules = FieldRules { ignore: vec![], mode: MatchMode::Contains };
    let err = AwsPlanner.preview(target("security_group", "sg-1"), "ingress", &json!([]), &live, &rules).unwrap_err();
    assert_eq!(err, NotRevertible::UnderRules { field: "ingress".into() });
}
