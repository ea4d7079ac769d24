use super::approval::refusal;
use super::saga::{self, Move};
use super::*;
use crate::api::{SagaState, StepState};
use crate::detect::{FieldRules, Fields, IgnoreRule, LiveView, MatchMode};
use crate::providers::contract::Handle;
use crate::providers::digitalocean::PLANNER as DO;
use crate::providers::digitalocean::plan::claim_tag;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

const DROPLET: Target<'static> = Target { provider: "digitalocean", type_: "droplet", id: "3164444" };

fn running<'a>(tags: &'a [String]) -> LiveView<'a> {
    LiveView {
        name: Some("web-1"),
        status: Some("active"),
        size: Some("s-2vcpu-4gb"),
        region: Some("nyc3"),
        tags: Some(tags),
        ..Default::default()
    }
}

fn exact() -> FieldRules<'static> {
    FieldRules::default()
}

fn bodies(p: &Preview) -> Vec<(String, String, serde_json::Value)> {
    p.calls.iter().map(|c| (c.method.clone(), c.path.clone(), c.body.clone())).collect()
}

#[test]
fn a_running_droplet_resizes_through_shutdown_resize_power_on_with_downtime() {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    assert!(p.downtime);
    let path = "/v2/droplets/3164444/actions".to_string();
    assert_eq!(
        bodies(&p),
        vec![
            ("POST".into(), path.clone(), json!({"type": "shutdown"})),
            ("POST".into(), path.clone(), json!({"type": "resize", "size": "s-1vcpu-1gb", "disk": false})),
            ("POST".into(), path, json!({"type": "power_on"})),
        ]
    );
    assert!(p.calls.iter().all(|c| c.waits_for_action));
}

#[test]
fn a_droplet_that_is_off_resizes_without_downtime() {
    let live = LiveView { status: Some("off"), ..running(&[]) };
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &live, &exact()).unwrap();
    assert!(!p.downtime);
    assert_eq!(p.calls.len(), 1);
}

#[test]
fn rename_and_power_are_one_action_each() {
    let p = preview(DROPLET, "name", &json!("web-2"), &running(&[]), &exact()).unwrap();
    assert_eq!(p.calls[0].body, json!({"type": "rename", "name": "web-2"}));
    let p = preview(DROPLET, "status", &json!("active"), &LiveView { status: Some("off"), ..running(&[]) }, &exact())
        .unwrap();
    assert_eq!(p.calls[0].body, json!({"type": "power_on"}));
    let e = preview(DROPLET, "status", &json!("archive"), &running(&[]), &exact()).unwrap_err().to_string();
    assert!(e.contains("\"archive\""), "{e}");
}

#[test]
fn tags_are_created_attached_and_detached_but_ignored_ones_are_kept() {
    let live = vec!["env:prod".to_string(), "manual".to_string(), "k8s:node".to_string()];
    let values = vec!["k8s:*".to_string()];
    let rules = FieldRules {
        ignore: vec![IgnoreRule { id: "spec.ignore[0]", field: "tags", paths: &[], values: &values }],
        mode: MatchMode::Exact,
    };
    let p = preview(DROPLET, "tags", &json!(["env:prod", "team:web"]), &running(&live), &rules).unwrap();
    let resources = json!({"resources": [{"resource_id": "3164444", "resource_type": "droplet"}]});
    assert_eq!(
        bodies(&p),
        vec![
            ("POST".into(), "/v2/tags".into(), json!({"name": "team:web"})),
            ("POST".into(), "/v2/tags/team:web/resources".into(), resources.clone()),
            ("DELETE".into(), "/v2/tags/manual/resources".into(), resources),
        ]
    );
    let contains = FieldRules { ignore: vec![], mode: MatchMode::Contains };
    let p = preview(DROPLET, "tags", &json!(["env:prod", "team:web"]), &running(&live), &contains).unwrap();
    assert!(p.calls.iter().all(|c| c.method == "POST"), "contains mode never removes a tag");
    let e = preview(DROPLET, "tags", &json!(["no spaces"]), &running(&live), &exact()).unwrap_err().to_string();
    assert!(e.contains("not a valid DigitalOcean tag name"), "{e}");
}

#[test]
fn volumes_only_grow() {
    let attrs = Fields::try_from(json!({"size_gigabytes": 100})).unwrap();
    let live = LiveView { region: Some("nyc1"), attrs: Some(&attrs), ..Default::default() };
    let volume = Target { provider: "digitalocean", type_: "volume", id: "7724db7c" };
    let p = preview(volume, "size_gigabytes", &json!(200), &live, &exact()).unwrap();
    assert_eq!(p.calls[0].body, json!({"type": "resize", "size_gigabytes": 200, "region": "nyc1"}));
    assert_eq!(p.calls[0].path, "/v2/volumes/7724db7c/actions");
    let e = preview(volume, "size_gigabytes", &json!(50), &live, &exact()).unwrap_err().to_string();
    assert!(e.contains("can only grow"), "{e}");
}

#[test]
fn a_firewall_update_carries_the_whole_firewall() {
    let rules = json!([{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0"]}}]);
    let attrs =
        Fields::try_from(json!({"inbound_rules": rules, "outbound_rules": [], "droplet_ids": [8043964]})).unwrap();
    let tags = vec!["frontend".to_string()];
    let live = LiveView { name: Some("fw"), tags: Some(&tags), attrs: Some(&attrs), ..Default::default() };
    let desired = json!([{"protocol": "tcp", "ports": "443", "sources": {"addresses": ["0.0.0.0/0"]}}]);
    let p = preview(
        Target { provider: "digitalocean", type_: "firewall", id: "bb4b2611" },
        "inbound_rules",
        &desired,
        &live,
        &exact(),
    )
    .unwrap();
    assert_eq!((p.calls[0].method.as_str(), p.calls[0].path.as_str()), ("PUT", "/v2/firewalls/bb4b2611"));
    assert_eq!(
        p.calls[0].body,
        json!({"name": "fw", "inbound_rules": desired, "outbound_rules": [], "droplet_ids": [8043964], "tags": ["frontend"]})
    );
}

#[test]
fn other_fields_and_ruled_fields_are_not_revertible_and_say_why() {
    let e = preview(DROPLET, "region", &json!("ams3"), &running(&[]), &exact()).unwrap_err().to_string();
    assert!(e.contains("region of a droplet cannot be reverted"), "{e}");
    let paths = vec!["/0".to_string()];
    let rules = FieldRules {
        ignore: vec![IgnoreRule { id: "r", field: "name", paths: &paths, values: &[] }],
        mode: MatchMode::Exact,
    };
    let e = preview(DROPLET, "name", &json!("x"), &running(&[]), &rules).unwrap_err().to_string();
    assert!(e.contains("ignore rules"), "{e}");
}

fn t(second: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap())
}

fn resize_record() -> crate::api::RevertRecord {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    saga::start(&p.calls, &t(0), "alice", &t(1))
}

#[test]
fn the_saga_runs_each_step_once_and_resumes_from_its_record() {
    let mut r = resize_record();
    assert_eq!(saga::next(&r), Move::Send(0));
    saga::sending(&mut r, 0, &t(2));
    // A reverter that stopped here looks for the action before sending again.
    assert_eq!(saga::next(&r), Move::Recover(0));
    saga::sent(&mut r, 0, Some(Handle::from(11)));
    assert_eq!(saga::next(&r), Move::Poll(0, Handle::from(11)));
    saga::action_ended(&mut r, &DO, 0, true);
    assert_eq!(saga::next(&r), Move::Send(1));
    for (i, id) in [(1, 12), (2, 13)] {
        saga::sending(&mut r, i, &t(3));
        saga::sent(&mut r, i, Some(Handle::from(id)));
        saga::action_ended(&mut r, &DO, i, true);
    }
    assert_eq!(saga::next(&r), Move::Finish(SagaState::Succeeded));
    saga::finish(&mut r, SagaState::Succeeded, &t(9));
    assert_eq!(saga::next(&r), Move::Done);
}

#[test]
fn a_failed_resize_powers_the_droplet_on_again_and_ends_failed() {
    let mut r = resize_record();
    saga::sending(&mut r, 0, &t(2));
    saga::sent(&mut r, 0, Some(Handle::from(11)));
    saga::action_ended(&mut r, &DO, 0, true);
    saga::sending(&mut r, 1, &t(3));
    saga::sent(&mut r, 1, Some(Handle::from(12)));
    saga::action_ended(&mut r, &DO, 1, false);
    assert_eq!(r.steps[2].state, StepState::Skipped);
    assert!(r.steps[3].compensation && r.steps[3].call.body == json!({"type": "power_on"}));
    assert_eq!(saga::next(&r), Move::Send(3));
    saga::sending(&mut r, 3, &t(4));
    saga::sent(&mut r, 3, Some(Handle::from(14)));
    saga::action_ended(&mut r, &DO, 3, true);
    assert_eq!(saga::next(&r), Move::Finish(SagaState::Failed));
    assert!(r.message.as_deref().unwrap().contains("action 12 ended errored"), "{:?}", r.message);
}

#[test]
fn a_failed_shutdown_needs_no_compensation() {
    let mut r = resize_record();
    saga::sending(&mut r, 0, &t(2));
    saga::fail(&mut r, &DO, 0, "422 unprocessable_entity: the droplet is locked".into());
    assert_eq!(r.steps.len(), 3, "nothing to undo");
    assert_eq!(saga::next(&r), Move::Finish(SagaState::Failed));
}

fn approval<'a>(value: &'a str, preview: &'a Preview, tags: &'a [String]) -> Approval<'a> {
    Approval {
        value,
        namespace: "team-a",
        field: "size_slug",
        state: crate::api::lifecycle::State::Open,
        allow_downtime: true,
        shown: &preview.calls,
        current: Ok(preview),
        resource: Some(Owned { planner: &DO, live: LiveView { tags: Some(tags), ..LiveView::default() } }),
        conflicts: &[],
        stale_inventory: None,
    }
}

#[test]
fn approvals_are_refused_with_the_rule_that_refused_them() {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    let d = digest(&p.calls);
    let tags = vec![claim_tag("team-a")];
    let on = RevertSettings { enabled: true, claim: Claim::Tag };
    assert_eq!(refusal(&approval(&d, &p, &tags), &on), None);
    let why = |a: &Approval<'_>, s: &RevertSettings| refusal(a, s).unwrap();
    assert!(why(&approval(&d, &p, &tags), &RevertSettings::default()).contains("--enable-revert"));
    assert!(
        why(&Approval { state: crate::api::lifecycle::State::Accepted, ..approval(&d, &p, &tags) }, &on)
            .contains("is Accepted")
    );
    assert!(why(&approval(&d, &p, &[]), &on).contains("rule --revert-claim=tag"));
    assert_eq!(refusal(&approval(&d, &p, &[]), &RevertSettings { enabled: true, claim: Claim::Any }), None);
    assert!(why(&Approval { allow_downtime: false, ..approval(&d, &p, &tags) }, &on).contains("revert-allow-downtime"));
    let stale = Approval { stale_inventory: Some("last synced 2h ago"), ..approval(&d, &p, &tags) };
    assert!(why(&stale, &on).contains("InventoryFresh=False: last synced 2h ago"));
    let peers = vec!["team-b/web".to_string()];
    assert!(
        why(&Approval { conflicts: &peers, ..approval(&d, &p, &tags) }, &on).contains("DesiredConflict: team-b/web")
    );
    let no_call = NotRevertible::NoCall("region cannot be reverted".into());
    assert!(why(&Approval { current: Err(&no_call), ..approval(&d, &p, &tags) }, &on).contains("region cannot"));
}

#[test]
fn an_approval_names_the_digest_of_the_plan_it_approves() {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    let d = digest(&p.calls);
    assert!(approval::is_digest(&d) && d.len() == 32, "128 bits: {d}");
    // A 64-bit digest of an earlier release names no plan now.
    assert!(!approval::is_digest(&d[..16]));
    let tags = vec![claim_tag("team-a")];
    let on = RevertSettings { enabled: true, claim: Claim::Tag };
    for unnamed in ["true", "TRUE", "yes", ""] {
        let why = refusal(&approval(unnamed, &p, &tags), &on).unwrap();
        assert!(why.contains(&format!("approve this plan with arcadia.cloud/revert={d}")), "{why}");
    }
    // The tenant changed spec.desired after the review: the reviewed digest names the old plan.
    let bigger = preview(DROPLET, "size_slug", &json!("s-32vcpu-192gb"), &running(&[]), &exact()).unwrap();
    let why = refusal(&Approval { current: Ok(&bigger), ..approval(&d, &p, &tags) }, &on).unwrap();
    assert!(why.contains("the plan changed since it was reviewed"), "{why}");
    assert!(why.contains("s-32vcpu-192gb") && why.contains(&digest(&bigger.calls)), "{why}");
    // Already showing the new plan: it is described whole.
    let why = refusal(&approval(&d, &bigger, &tags), &on).unwrap();
    assert!(why.contains("it now is: shut the droplet down") && why.contains("s-32vcpu-192gb"), "{why}");
}

/// Approvals name a plan by this digest: moving the planning behind a
/// provider interface must not change a single one.
#[test]
fn the_digest_of_a_droplet_resize_is_pinned() {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    assert_eq!(digest(&p.calls), "e45fba3b17cec97f4d19e9732dfd9809");
}

#[test]
fn a_digest_is_stable_and_changes_with_any_part_of_a_call() {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    assert_eq!(digest(&p.calls), digest(&p.calls.clone()));
    assert_eq!(digest(&p.calls).len(), 32);
    let mut other = p.calls.clone();
    other[1].body["size"] = json!("s-32vcpu-192gb");
    assert_ne!(digest(&p.calls), digest(&other));
    let mut other = p.calls.clone();
    other[0].path = "@127.0.0.1:9/x".into();
    assert_ne!(digest(&p.calls), digest(&other));
    assert_ne!(digest(&p.calls), digest(&p.calls[..2]));
    // Key order in a body does not matter: the JSON is canonical.
    let mut reordered = p.calls.clone();
    reordered[1].body = serde_json::from_str(r#"{"disk": false, "size": "s-1vcpu-1gb", "type": "resize"}"#).unwrap();
    assert_eq!(digest(&p.calls), digest(&reordered));
}

#[test]
fn differences_name_each_step_that_differs() {
    let p = preview(DROPLET, "size_slug", &json!("s-1vcpu-1gb"), &running(&[]), &exact()).unwrap();
    assert!(differences(&p.calls, &p.calls).is_empty());
    let mut forged = p.calls.clone();
    forged[0].path = "@127.0.0.1:9/x".into();
    forged.pop();
    let found = differences(&forged, &p.calls);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("step 1: POST @127.0.0.1:9/x") && found[0].contains("/v2/droplets/3164444/actions"));
    assert!(found[1].starts_with("step 3: the plan now also has POST"), "{}", found[1]);
}

#[test]
fn conflicts_are_peers_that_want_another_value() {
    let (a, b) = (json!("s-1"), json!("s-2"));
    let found = conflicts(&json!("s-1"), vec![("ns/a".to_string(), a), ("ns/b".to_string(), b)]);
    assert_eq!(found, vec!["ns/b".to_string()]);
}

#[test]
fn a_record_of_an_earlier_approval_is_not_the_current_one() {
    let mut failed = resize_record();
    saga::finish(&mut failed, SagaState::Failed, &t(3));
    let mut status = crate::api::DriftStatus { detected_time: Some(t(0)), revert: Some(failed), ..Default::default() };
    assert!(current_record(&status).is_some(), "the record of this episode");
    // Approved again after it failed: the old record is history until the reverter starts a new one.
    status.revert_approved_time = Some(t(10));
    assert!(current_record(&status).is_none());
    status.revert = Some(saga::start(&[], &t(0), "alice", &t(10)));
    assert!(current_record(&status).is_some(), "a record started at the approval is current");
    status.detected_time = Some(t(20));
    assert!(current_record(&status).is_none(), "a record of an earlier episode is history");
}

#[test]
fn a_write_with_no_answer_stays_sending_and_is_looked_for_before_it_is_sent_again() {
    let mut r = resize_record();
    saga::sending(&mut r, 0, &t(2));
    saga::unanswered(&mut r, 0, "POST /v2/droplets/3164444/actions: no answer".into());
    assert_eq!(saga::next(&r), Move::Recover(0));
    // A 429 did nothing: the step is sent again, and its deadline still runs from the first send.
    let mut r = resize_record();
    saga::sending(&mut r, 0, &t(2));
    saga::retry_later(&mut r, 0, "429".into());
    assert_eq!(saga::next(&r), Move::Send(0));
    saga::sending(&mut r, 0, &t(50));
    assert_eq!(r.steps[0].sent_time, Some(t(2)));
}

#[test]
fn a_step_is_overdue_only_while_open_and_past_its_deadline() {
    let timeout = std::time::Duration::from_secs(60);
    let mut r = resize_record();
    assert!(!saga::overdue(&r, 0, &t(1000), timeout), "never sent");
    saga::sending(&mut r, 0, &t(2));
    assert!(!saga::overdue(&r, 0, &t(62), timeout));
    assert!(saga::overdue(&r, 0, &t(63), timeout));
    saga::sent(&mut r, 0, Some(Handle::from(11)));
    saga::action_ended(&mut r, &DO, 0, true);
    assert!(!saga::overdue(&r, 0, &t(1000), timeout), "ended");
}

#[test]
fn a_shutdown_given_up_without_an_outcome_is_compensated() {
    let mut r = resize_record();
    saga::sending(&mut r, 0, &t(2));
    saga::sent(&mut r, 0, Some(Handle::from(11)));
    saga::abandon(&mut r, &DO, 0, "cannot read DigitalOcean action 11: 403".into());
    assert!(saga::may_be_left_off(&r, &DO));
    assert_eq!(r.steps.len(), 4);
    assert!(r.steps[3].compensation && r.steps[3].call.body == json!({"type": "power_on"}));
    assert_eq!(saga::next(&r), Move::Send(3));
    saga::sending(&mut r, 3, &t(4));
    saga::sent(&mut r, 3, Some(Handle::from(14)));
    saga::abandon(&mut r, &DO, 3, "cannot read DigitalOcean action 14: 403".into());
    assert_eq!(saga::next(&r), Move::Finish(SagaState::Failed));
    assert!(saga::compensation_failed(&r));
    assert!(saga::may_be_left_off(&r, &DO));
    let message = r.message.unwrap();
    assert!(message.contains("then the compensation failed") && message.contains("powered off"), "{message}");
}

#[test]
fn a_shutdown_refused_outright_leaves_nothing_to_power_on() {
    let mut r = resize_record();
    saga::sending(&mut r, 0, &t(2));
    saga::fail(&mut r, &DO, 0, "403 forbidden".into());
    assert!(!saga::may_be_left_off(&r, &DO));
    assert!(!saga::compensation_failed(&r));
    // A completed power_on after the shutdown leaves it on.
    let mut r = resize_record();
    for (i, id) in [(0, 11), (1, 12), (2, 13)] {
        saga::sending(&mut r, i, &t(3));
        saga::sent(&mut r, i, Some(Handle::from(id)));
        saga::action_ended(&mut r, &DO, i, true);
    }
    assert!(!saga::may_be_left_off(&r, &DO));
}
