//! Revert end to end: the real `arcadia-drift run` with `--enable-revert`
//! against the fake DigitalOcean API (which runs actions with state, refuses
//! what DigitalOcean refuses, and checks every body against the documented
//! shapes) and the local control plane.

mod common;

use arcadia_drift::api::{
    ANNOTATION_REVERT, ANNOTATION_REVERT_ALLOW_DOWNTIME, ANNOTATION_REVERTED_BY, CloudProvisioned, Drift, DriftPhase,
    DriftStatus, SagaState, StepState,
};
use common::controller::ControllerProcess;
use common::fake_do::{FakeDo, TOKEN, droplet};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64 % 1_000_000_000;
    base * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Env {
    fake: FakeDo,
    client: kube::Client,
    ns: String,
    source: String,
}

impl Env {
    async fn new(prefix: &str) -> Self {
        let fake = FakeDo::start().await;
        let client = common::client().await;
        let ns = common::namespace(&client, prefix).await;
        Env { fake, client, ns, source: format!("revert-{}", common::unique_suffix()) }
    }

    fn claim_tag(&self) -> String {
        format!("arcadia-ns:{}", self.ns)
    }

    async fn provision(&self, name: &str, id: u64, desired: Value) {
        let body = json!({
            "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": name},
            "spec": {"resourceRef": {"name": format!("digitalocean-droplet-{id}")}, "desired": desired},
        });
        let api: Api<CloudProvisioned> = Api::namespaced(self.client.clone(), &self.ns);
        api.patch(name, &PatchParams::apply("test"), &Patch::Apply(body)).await.unwrap();
    }

    fn controller(&self, extra: &[&str]) -> ControllerProcess {
        let mut args = vec![
            "--digitalocean-api-url",
            &self.fake.url,
            "--inventory-sync-interval",
            "5m",
            "--digitalocean-actions-interval",
            "1s",
            "--inventory-source",
            &self.source,
        ];
        args.extend_from_slice(extra);
        ControllerProcess::start_with_env(&self.ns, &args, &[("DIGITALOCEAN_TOKEN", TOKEN)])
    }

    fn drifts(&self) -> Api<Drift> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// The Drift of `field` once `check` holds for its status.
    async fn drift(&self, field: &str, what: &str, check: impl Fn(&DriftStatus) -> bool) -> Drift {
        let drifts = self.drifts();
        common::eventually(Duration::from_secs(60), what, || async {
            let all = drifts.list(&ListParams::default()).await.ok()?.items;
            all.into_iter().find(|d| d.spec.field == field && d.status.as_ref().is_some_and(&check))
        })
        .await
    }

    async fn annotate(&self, drift: &Drift, annotations: Value) {
        let name = drift.metadata.name.clone().unwrap();
        let patch = json!({"metadata": {"annotations": annotations}});
        self.drifts().patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    }

    fn writes(&self) -> Vec<(String, String, Value)> {
        self.fake.writes().into_iter().map(|w| (w.method, w.path, w.body)).collect()
    }
}

fn phase(p: DriftPhase) -> impl Fn(&DriftStatus) -> bool {
    move |s| s.phase == p
}

/// An approval of the plan `drift` shows: its digest (`true` when it has no plan).
fn approve(drift: &Drift, who: &str) -> Value {
    let digest = drift.status.as_ref().and_then(|s| s.revert_plan_digest.clone()).unwrap_or_else(|| "true".into());
    json!({ANNOTATION_REVERT: digest, ANNOTATION_REVERTED_BY: who})
}

fn action_types(fake: &FakeDo, id: u64) -> Vec<String> {
    fake.actions_of(id).iter().map(|a| a["type"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test]
async fn a_resized_droplet_is_reverted_through_shutdown_resize_power_on() {
    let env = Env::new("revert-resize").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = env.controller(&["--enable-revert"]);

    let open = env
        .drift("size_slug", "an Open drift with a three-call plan", |s| {
            s.phase == DriftPhase::Open && s.revert_plan.len() == 3
        })
        .await;
    let status = open.status.clone().unwrap();
    let path = format!("/v2/droplets/{id}/actions");
    let planned: Vec<(String, String, Value)> =
        status.revert_plan.iter().map(|c| (c.method.clone(), c.path.clone(), c.body.clone())).collect();
    let expected = vec![
        ("POST".to_string(), path.clone(), json!({"type": "shutdown"})),
        ("POST".to_string(), path.clone(), json!({"type": "resize", "size": "s-1vcpu-1gb", "disk": false})),
        ("POST".to_string(), path.clone(), json!({"type": "power_on"})),
    ];
    assert_eq!(planned, expected, "the preview is the exact calls");
    assert!(status.revert_note.unwrap().contains(ANNOTATION_REVERT_ALLOW_DOWNTIME));

    // Without downtime allowed: refused, nothing sent.
    env.annotate(&open, approve(&open, "alice")).await;
    let refused = env
        .drift("size_slug", "a refusal", |s| s.message.as_deref().is_some_and(|m| m.contains("revert refused")))
        .await;
    assert!(refused.status.unwrap().message.unwrap().contains(ANNOTATION_REVERT_ALLOW_DOWNTIME));
    assert!(env.writes().is_empty(), "a refused revert sends nothing");

    let mut yes = approve(&open, "alice");
    yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&open, yes).await;
    let done = env.drift("size_slug", "Reverted", phase(DriftPhase::Reverted)).await;
    let status = done.status.unwrap();
    assert_eq!(status.resolved_by.as_deref(), Some("alice"));
    let record = status.revert.expect("the saga's record");
    assert_eq!(record.state, SagaState::Succeeded);
    assert!(record.steps.iter().all(|s| s.state == StepState::Completed && s.action_id.is_some()), "{record:?}");
    assert_eq!(env.writes(), expected, "exactly the previewed calls, once each");
    assert_eq!(action_types(&env.fake, id), ["shutdown", "resize", "power_on"]);
    let live = env.fake.droplet(id);
    assert_eq!((live["size_slug"].as_str(), live["status"].as_str()), (Some("s-1vcpu-1gb"), Some("active")));
    let (drifts, name) = (env.drifts(), done.metadata.name.clone().unwrap());
    common::eventually(Duration::from_secs(30), "the approval consumed once the saga ended", || async {
        let d = drifts.get(&name).await.ok()?;
        (!d.metadata.annotations.unwrap_or_default().contains_key(ANNOTATION_REVERT)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tags_and_a_name_are_reverted_and_a_missing_tag_is_created() {
    let env = Env::new("revert-tags").await;
    let id = fresh_id();
    let claim = env.claim_tag();
    env.fake.add("/v2/droplets", droplet(id, "web-renamed", "s-1vcpu-1gb", "nyc3", &[&claim, "manual"]));
    env.fake.with(|s| s.tags.extend([claim.clone(), "manual".to_string()]));
    env.provision("web-1", id, json!({"name": "web-1", "tags": [claim, "env:prod"]})).await;
    let _controller = env.controller(&["--enable-revert"]);

    let with_plan = |s: &DriftStatus| s.phase == DriftPhase::Open && !s.revert_plan.is_empty();
    let open = env.drift("tags", "an Open drift with a plan", with_plan).await;
    env.annotate(&open, approve(&open, "bob")).await;
    env.drift("tags", "Reverted", phase(DriftPhase::Reverted)).await;

    // A revert waits while the droplet has an action of its own in progress.
    let open = env.drift("name", "an Open drift with a plan", with_plan).await;
    let reboot = env.fake.record_action(id, "droplet", "reboot", "in-progress");
    env.annotate(&open, approve(&open, "bob")).await;
    let waiting = format!("waiting for DigitalOcean action {reboot} (reboot)");
    env.drift("name", "waiting for the reboot", |s| {
        s.revert.as_ref().and_then(|r| r.message.as_deref()).is_some_and(|m| m.contains(&waiting))
    })
    .await;
    assert_eq!(env.writes().len(), 3, "no rename while the reboot runs");
    env.fake.finish_action(reboot, "completed");
    env.drift("name", "Reverted", phase(DriftPhase::Reverted)).await;
    let resources = json!({"resources": [{"resource_id": id.to_string(), "resource_type": "droplet"}]});
    let writes = env.writes();
    assert_eq!(
        writes[..3].to_vec(),
        vec![
            ("POST".to_string(), "/v2/tags".to_string(), json!({"name": "env:prod"})),
            ("POST".to_string(), "/v2/tags/env:prod/resources".to_string(), resources.clone()),
            ("DELETE".to_string(), "/v2/tags/manual/resources".to_string(), resources),
        ]
    );
    assert_eq!(writes[3].2, json!({"type": "rename", "name": "web-1"}));
    let live = env.fake.droplet(id);
    assert_eq!(live["name"], "web-1");
    let mut tags: Vec<&str> = live["tags"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    tags.sort();
    assert_eq!(tags, [env.claim_tag().as_str(), "env:prod"]);
}

#[tokio::test]
async fn what_may_not_be_reverted_is_refused_with_the_rule_that_refused_it() {
    let env = Env::new("revert-refused").await;
    let (unclaimed, shared) = (fresh_id(), fresh_id());
    env.fake.add("/v2/droplets", droplet(unclaimed, "a", "s-1vcpu-1gb", "nyc3", &[]));
    env.fake.add("/v2/droplets", droplet(shared, "b", "s-1vcpu-1gb", "nyc3", &[&env.claim_tag()]));
    env.provision("unclaimed", unclaimed, json!({"name": "a-wanted", "region": "ams3"})).await;
    env.provision("team-a", shared, json!({"name": "b-one"})).await;
    env.provision("team-b", shared, json!({"name": "b-two"})).await;
    let volume = format!("506f78a4-e098-11e5-ad9f-{:012x}", fresh_id() % (1 << 48));
    env.fake.add("/v2/volumes", json!({
        "id": volume, "name": "data", "region": {"slug": "nyc1", "name": "New York 1"}, "size_gigabytes": 100,
        "droplet_ids": [], "tags": [env.claim_tag()], "filesystem_type": "ext4", "created_at": "2020-03-02T17:00:49Z",
    }));
    let body = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": "data"},
        "spec": {"resourceRef": {"name": format!("digitalocean-volume-{volume}")}, "desired": {"size_gigabytes": 50}},
    });
    Api::<CloudProvisioned>::namespaced(env.client.clone(), &env.ns)
        .patch("data", &PatchParams::apply("test"), &Patch::Apply(body))
        .await
        .unwrap();
    let _controller = env.controller(&["--enable-revert"]);

    // Not claimed by the namespace's tag.
    let open = env
        .drift("name", "the unclaimed drift", |s| s.phase == DriftPhase::Open && s.expected == json!("a-wanted"))
        .await;
    env.annotate(&open, approve(&open, "carol")).await;
    let why = |d: Drift| d.status.unwrap().message.unwrap_or_default();
    let refused =
        env.drift("name", "refused by the claim", |s| s.expected == json!("a-wanted") && s.message.is_some()).await;
    assert!(why(refused).contains("rule --revert-claim=tag"));
    // Not revertible at all: the preview says why.
    let region = env.drift("region", "the region drift", phase(DriftPhase::Open)).await;
    assert!(region.status.clone().unwrap().revert_plan.is_empty());
    assert!(region.status.clone().unwrap().revert_note.unwrap().contains("cannot be reverted"));
    env.annotate(&region, approve(&region, "carol")).await;
    let refused = env.drift("region", "refused as not revertible", |s| s.message.is_some()).await;
    assert!(why(refused).contains("region of a droplet cannot be reverted"));
    // Two CloudProvisioneds want different names for one droplet.
    let conflicted = env.drift("name", "team-a's drift", |s| s.expected == json!("b-one")).await;
    env.annotate(&conflicted, approve(&conflicted, "carol")).await;
    let refused =
        env.drift("name", "refused by the conflict", |s| s.expected == json!("b-one") && s.message.is_some()).await;
    assert!(why(refused).contains(&format!("DesiredConflict: {}/team-b", env.ns)));
    let provisioned: Api<CloudProvisioned> = Api::namespaced(env.client.clone(), &env.ns);
    for (name, other) in [("team-a", "team-b"), ("team-b", "team-a")] {
        let p = provisioned.get(name).await.unwrap();
        let condition = p.status.unwrap().conditions.into_iter().find(|c| c.type_ == "DesiredConflict").unwrap();
        assert_eq!(condition.status, "True");
        assert!(condition.message.contains(&format!("{}/{other}", env.ns)), "{}", condition.message);
    }
    // A volume only grows: a shrink has no plan, and its approval is refused.
    let shrink = env.drift("size_gigabytes", "the shrink drift", phase(DriftPhase::Open)).await;
    assert!(shrink.status.clone().unwrap().revert_note.unwrap().contains("can only grow"));
    env.annotate(&shrink, approve(&shrink, "carol")).await;
    let refused = env.drift("size_gigabytes", "the shrink refused", |s| s.message.is_some()).await;
    assert!(why(refused).contains("a volume can only grow"));
    assert!(env.writes().is_empty(), "nothing was sent to DigitalOcean");
}

#[tokio::test]
async fn without_enable_revert_an_approval_is_refused_and_says_how_to_turn_it_on() {
    let env = Env::new("revert-off").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-x", "s-1vcpu-1gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"name": "web-1"})).await;
    let _controller = env.controller(&[]);
    let open = env.drift("name", "an Open drift", phase(DriftPhase::Open)).await;
    assert!(open.status.clone().unwrap().revert_plan.is_empty(), "no preview while reverting is off");
    env.annotate(&open, approve(&open, "dave")).await;
    let refused = env.drift("name", "refused", |s| s.message.is_some()).await;
    let status = refused.status.unwrap();
    assert_eq!(status.phase, DriftPhase::Open, "nothing else changed");
    assert!(status.message.unwrap().contains("--enable-revert"));
    // The status is written before the annotation is removed.
    let (drifts, name) = (env.drifts(), open.metadata.name.clone().unwrap());
    common::eventually(Duration::from_secs(30), "the refused approval removed", || async {
        let d = drifts.get(&name).await.ok()?;
        (!d.metadata.annotations.unwrap_or_default().contains_key(ANNOTATION_REVERT)).then_some(())
    })
    .await;
    assert!(env.writes().is_empty());
}

#[tokio::test]
async fn an_errored_resize_ends_revert_failed_with_the_droplet_powered_on_again() {
    let env = Env::new("revert-errored").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.fake.fail_next_action("resize");
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = env.controller(&["--enable-revert"]);
    let open =
        env.drift("size_slug", "an Open drift", |s| s.phase == DriftPhase::Open && s.revert_plan.len() == 3).await;
    let mut yes = approve(&open, "erin");
    yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&open, yes).await;
    let failed = env.drift("size_slug", "RevertFailed", phase(DriftPhase::RevertFailed)).await;
    let status = failed.status.unwrap();
    assert!(status.message.as_deref().unwrap().contains("ended errored"), "{:?}", status.message);
    let record = status.revert.unwrap();
    let states: Vec<(StepState, bool)> = record.steps.iter().map(|s| (s.state, s.compensation)).collect();
    assert_eq!(
        states,
        [
            (StepState::Completed, false),
            (StepState::Failed, false),
            (StepState::Skipped, false),
            (StepState::Completed, true)
        ]
    );
    assert_eq!(action_types(&env.fake, id), ["shutdown", "resize", "power_on"]);
    assert_eq!(env.fake.droplet(id)["status"], "active", "powered on again");

    // Every approval is a new attempt: approved again, a new saga runs from its first step.
    let drifts = env.drifts();
    let name = failed.metadata.name.clone().unwrap();
    common::eventually(Duration::from_secs(30), "the first approval consumed", || async {
        let d = drifts.get(&name).await.ok()?;
        (!d.metadata.annotations.unwrap_or_default().contains_key(ANNOTATION_REVERT)).then_some(())
    })
    .await;
    let failed = drifts.get(&name).await.unwrap();
    let mut again = approve(&failed, "erin");
    again[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&failed, again).await;
    env.drift("size_slug", "Reverted on the second attempt", phase(DriftPhase::Reverted)).await;
    assert_eq!(action_types(&env.fake, id), ["shutdown", "resize", "power_on", "shutdown", "resize", "power_on"]);
    assert_eq!(env.fake.droplet(id)["size_slug"], "s-1vcpu-1gb");
}

/// Reads of `GET /v2/actions/{id}` the fake received.
fn action_reads(fake: &FakeDo) -> usize {
    fake.requests().iter().filter(|r| r.starts_with("/v2/actions/")).count()
}

/// A token that lost its scope for reading actions once the shutdown was
/// accepted: the saga cannot learn whether the droplet is off, so it powers
/// it on, cannot learn that either, and says so loudly, without retrying a 403.
#[tokio::test]
async fn a_403_on_every_action_read_ends_revert_failed_with_the_power_on_sent_and_said_loudly() {
    let env = Env::new("revert-forbidden").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.fake.with(|s| s.forbid_action_reads_after = Some("shutdown".into()));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = env.controller(&["--enable-revert", "--revert-step-timeout", "60s"]);
    let open = env.drift("size_slug", "an Open drift", |s| s.revert_plan.len() == 3).await;
    let mut yes = approve(&open, "erin");
    yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&open, yes).await;
    let failed = env.drift("size_slug", "RevertFailed", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("403") && message.contains("the compensation failed"), "{message}");
    assert!(message.contains("may be left powered off"), "{message}");
    assert_eq!(action_types(&env.fake, id), ["shutdown", "power_on"], "the resize was never sent");
    assert_eq!(action_reads(&env.fake), 2, "one read of each action: a 403 is not asked again");
    common::eventually(Duration::from_secs(10), "the power_on carried out", || async {
        (env.fake.droplet(id)["status"] == "active").then_some(())
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), &env.ns);
    common::eventually(Duration::from_secs(30), "a RevertCompensationFailed Event", || async {
        let all = events.list(&ListParams::default()).await.ok()?.items;
        all.into_iter().find(|e| e.reason.as_deref() == Some("RevertCompensationFailed"))
    })
    .await;
}

/// The answer to the resize is lost after DigitalOcean started it: the saga
/// finds the action it started instead of resizing twice.
#[tokio::test]
async fn a_resize_whose_answer_is_lost_is_adopted_not_sent_again() {
    let env = Env::new("revert-lost-answer").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.fake.with(|s| s.hold_answer = Some(("resize".into(), Duration::from_secs(6))));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = env.controller(&["--enable-revert", "--digitalocean-request-timeout", "2s"]);
    let open = env.drift("size_slug", "an Open drift", |s| s.revert_plan.len() == 3).await;
    let mut yes = approve(&open, "erin");
    yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&open, yes).await;
    env.drift("size_slug", "Reverted", phase(DriftPhase::Reverted)).await;
    assert_eq!(action_types(&env.fake, id), ["shutdown", "resize", "power_on"], "one resize in all");
    let writes: Vec<String> =
        env.writes().iter().map(|(_, _, b)| b["type"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(writes, ["shutdown", "resize", "power_on"], "each call sent once");
}

/// Reverting turned off while a saga is pending: it ends RevertFailed, with why, and nothing is sent.
#[tokio::test]
async fn with_enable_revert_turned_off_a_pending_saga_ends_revert_failed_with_why() {
    let env = Env::new("revert-turned-off").await;
    let Stopped { .. } = stopped_while_waiting(&env).await;
    let _second = env.controller(&[]);
    let failed = env.drift("name", "RevertFailed", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("--enable-revert") && message.contains("nothing more is sent"), "{message}");
    assert!(env.writes().is_empty(), "{:?}", env.writes());
    // The approval is spent, so a later reconcile does not replace the message with a refusal.
    let name = failed.metadata.name.unwrap();
    common::eventually(Duration::from_secs(30), "the approval consumed", || async {
        let d = env.drifts().get(&name).await.ok()?;
        (!d.annotations().contains_key(ANNOTATION_REVERT)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let message = env.drifts().get(&name).await.unwrap().status.unwrap().message.unwrap();
    assert!(message.contains("nothing more is sent"), "{message}");
}

/// Kill -9 while each step of the resize saga waits on its action: the next
/// controller resumes from the record, and each step runs exactly once.
#[tokio::test]
async fn a_controller_killed_at_each_step_of_the_saga_resumes_without_repeating_a_step() {
    for step in 0..3 {
        let env = Env::new(&format!("revert-kill-{step}")).await;
        env.fake.with(|s| s.action_delay = Duration::from_secs(3));
        let id = fresh_id();
        env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
        env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
        let mut first = env.controller(&["--enable-revert"]);
        let open =
            env.drift("size_slug", "an Open drift", |s| s.phase == DriftPhase::Open && s.revert_plan.len() == 3).await;
        let mut yes = approve(&open, "frank");
        yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
        env.annotate(&open, yes).await;
        env.drift("size_slug", &format!("step {step} in progress"), |s| {
            s.revert.as_ref().is_some_and(|r| r.steps.get(step).is_some_and(|x| x.state == StepState::InProgress))
        })
        .await;
        first.kill();
        let _second = env.controller(&["--enable-revert"]);
        env.drift("size_slug", "Reverted after the restart", phase(DriftPhase::Reverted)).await;
        assert_eq!(
            action_types(&env.fake, id),
            ["shutdown", "resize", "power_on"],
            "one action per step (killed at step {step})"
        );
    }
}

/// A listener standing in for the attacker's host: counts every connection.
async fn attacker() -> (u16, std::sync::Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(AtomicU64::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

/// Writes `status` into a Drift through the status subresource, as anyone
/// granted `drifts/status` can, under a field manager of their own.
async fn forge(env: &Env, drift: &Drift, status: Value) {
    let params = PatchParams { field_manager: Some("tenant-forger".into()), ..Default::default() };
    let patch = json!({"status": status});
    env.drifts().patch_status(&drift.metadata.name.clone().unwrap(), &params, &Patch::Merge(patch)).await.unwrap();
}

fn call(method: &str, path: &str, body: Value) -> Value {
    json!({"method": method, "path": path, "body": body, "description": "forged", "waitsForAction": false})
}

#[tokio::test]
async fn calls_forged_into_drift_status_are_never_sent() {
    let env = Env::new("revert-forged").await;
    let (port, hits) = attacker().await;
    let id = fresh_id();
    let claim = env.claim_tag();
    env.fake.add("/v2/droplets", droplet(id, "web-x", "s-2vcpu-4gb", "nyc3", &[&claim]));
    env.fake.with(|s| s.tags.insert(claim.clone()));
    let desired = json!({"size_slug": "s-1vcpu-1gb", "name": "web-1", "tags": [claim, "env:prod"]});
    env.provision("web-1", id, desired).await;
    let _controller = env.controller(&["--enable-revert"]);
    let with_plan = |s: &DriftStatus| s.phase == DriftPhase::Open && s.revert_plan_digest.is_some();
    let size = env.drift("size_slug", "the size drift with a plan", with_plan).await;
    let name = env.drift("name", "the name drift with a plan", with_plan).await;
    let tags = env.drift("tags", "the tags drift with a plan", with_plan).await;
    let to_attacker = call("POST", &format!("@127.0.0.1:{port}/x"), json!({"type": "power_off"}));
    let destroy = call("DELETE", &format!("/v2/droplets/{id}"), Value::Null);

    // A saga record nobody approved, with the calls the forger wants.
    let episode = serde_json::to_value(&size.status.as_ref().unwrap().detected_time).unwrap();
    let record = json!({
        "episode": episode, "approvedBy": "mallory", "startedTime": episode, "state": "Running",
        "steps": [{"call": to_attacker, "state": "Pending"}, {"call": destroy, "state": "Pending"}],
    });
    forge(&env, &size, json!({"phase": "Reverting", "revertPlan": [to_attacker, destroy], "revert": record})).await;
    let failed = env.drift("size_slug", "the forged record refused", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("status.revert was written by tenant-forger"), "{message}");
    assert!(message.contains("nothing was sent"), "{message}");

    // A phase and a plan, no record: a phase written into status approves nothing.
    forge(
        &env,
        &name,
        json!({"phase": "Reverting", "revertPlan": [to_attacker], "revertPlanDigest": "0123456789abcdef"}),
    )
    .await;
    let failed = env.drift("name", "the forged phase refused", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("carries no approval"), "{message}");
    // The derived plan shows again, and approving it runs it, once.
    let name = env
        .drift("name", "the derived rename shown again", |s| {
            s.revert_plan.len() == 1 && s.revert_plan[0].path == format!("/v2/droplets/{id}/actions")
        })
        .await;
    env.annotate(&name, approve(&name, "alice")).await;
    env.drift("name", "Reverted", phase(DriftPhase::Reverted)).await;

    // The same plan forged into an Open drift: the controller shows the derived plan again.
    forge(&env, &tags, json!({"revertPlan": [to_attacker], "revertPlanDigest": "0123456789abcdef"})).await;
    let shown = env
        .drift("tags", "the derived plan shown again", |s| {
            s.revert_plan_digest.as_ref().is_some_and(|d| d != "0123456789abcdef") && s.revert_plan.len() == 2
        })
        .await;
    assert_eq!(shown.status.as_ref().unwrap().revert_plan_digest, tags.status.as_ref().unwrap().revert_plan_digest);
    env.annotate(&shown, approve(&shown, "alice")).await;
    env.drift("tags", "Reverted", phase(DriftPhase::Reverted)).await;

    let resources = json!({"resources": [{"resource_id": id.to_string(), "resource_type": "droplet"}]});
    assert_eq!(
        env.writes(),
        vec![
            ("POST".to_string(), format!("/v2/droplets/{id}/actions"), json!({"type": "rename", "name": "web-1"})),
            ("POST".to_string(), "/v2/tags".to_string(), json!({"name": "env:prod"})),
            ("POST".to_string(), "/v2/tags/env:prod/resources".to_string(), resources),
        ],
        "only the derived plans, once each"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the attacker's listener");
    assert!(env.fake.requests().iter().all(|r| !r.contains('@')), "{:?}", env.fake.requests());
}

#[tokio::test]
async fn an_approval_names_its_plan_and_a_plan_changed_since_review_is_refused() {
    let env = Env::new("revert-digest").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = env.controller(&["--enable-revert"]);
    let reviewed =
        env.drift("size_slug", "the reviewed plan", |s| s.phase == DriftPhase::Open && s.revert_plan.len() == 3).await;
    let digest = reviewed.status.clone().unwrap().revert_plan_digest.unwrap();
    assert_eq!(digest, arcadia_drift::revert::digest(&reviewed.status.clone().unwrap().revert_plan));

    // `true` approves no plan in particular.
    let mut yes =
        json!({ANNOTATION_REVERT: "true", ANNOTATION_REVERTED_BY: "alice", ANNOTATION_REVERT_ALLOW_DOWNTIME: "true"});
    env.annotate(&reviewed, yes.clone()).await;
    let refused = env
        .drift("size_slug", "true refused", |s| s.message.as_deref().is_some_and(|m| m.contains("names no plan")))
        .await;
    let message = refused.status.unwrap().message.unwrap();
    assert!(message.contains(&format!("approve this plan with arcadia.cloud/revert={digest}")), "{message}");

    // The tenant changes the desired size after the review; the admin approves what they reviewed.
    env.provision("web-1", id, json!({"size_slug": "s-32vcpu-192gb"})).await;
    let changed =
        env.drift("size_slug", "the new plan", |s| s.revert_plan_digest.as_ref().is_some_and(|d| *d != digest)).await;
    let new_digest = changed.status.unwrap().revert_plan_digest.unwrap();
    yes[ANNOTATION_REVERT] = json!(digest);
    env.annotate(&reviewed, yes).await;
    let refused = env
        .drift("size_slug", "the old digest refused", |s| {
            s.message.as_deref().is_some_and(|m| m.contains("the plan changed since it was reviewed"))
        })
        .await;
    let status = refused.status.unwrap();
    let message = status.message.unwrap();
    assert!(message.contains("s-32vcpu-192gb") && message.contains(&new_digest), "{message}");
    assert_eq!(status.phase, DriftPhase::Open);
    let (drifts, name) = (env.drifts(), reviewed.metadata.name.clone().unwrap());
    common::eventually(Duration::from_secs(30), "the refused approval removed", || async {
        let d = drifts.get(&name).await.ok()?;
        (!d.metadata.annotations.unwrap_or_default().contains_key(ANNOTATION_REVERT)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.writes().is_empty(), "nothing was sent: {:?}", env.writes());
    assert_eq!(env.fake.droplet(id)["size_slug"], "s-2vcpu-4gb");
}

#[tokio::test]
async fn a_pending_git_change_forged_into_status_does_not_change_the_desired_value() {
    let env = Env::new("revert-pending").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let _controller = env.controller(&["--enable-revert"]);
    let open =
        env.drift("size_slug", "an Open drift", |s| s.phase == DriftPhase::Open && s.revert_plan.len() == 3).await;
    let digest = open.status.clone().unwrap().revert_plan_digest;

    let forged = json!({"status": {"pendingGitChanges": [{
        "field": "size_slug", "value": "s-32vcpu-192gb", "drift": open.metadata.name.clone().unwrap(),
        "acceptedBy": "admin", "acceptedTime": "2026-01-01T00:00:00Z", "specValue": "s-1vcpu-1gb",
    }]}});
    let params = PatchParams { field_manager: Some("tenant-forger".into()), ..Default::default() };
    let provisioned: Api<CloudProvisioned> = Api::namespaced(env.client.clone(), &env.ns);
    provisioned.patch_status("web-1", &params, &Patch::Merge(forged)).await.unwrap();

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), &env.ns);
    let event = common::eventually(Duration::from_secs(30), "the PendingChangesIgnored Event", || async {
        let all = events.list(&ListParams::default()).await.ok()?.items;
        all.into_iter().find(|e| e.reason.as_deref() == Some("PendingChangesIgnored"))
    })
    .await;
    assert!(event.note.unwrap_or_default().contains("written by tenant-forger"));
    common::eventually(Duration::from_secs(30), "the forged list removed", || async {
        let p = provisioned.get("web-1").await.ok()?;
        p.status.is_some_and(|s| s.pending_git_changes.is_empty()).then_some(())
    })
    .await;
    let d = env.drifts().get(&open.metadata.name.clone().unwrap()).await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(
        (status.phase, &status.expected),
        (DriftPhase::Open, &json!("s-1vcpu-1gb")),
        "compared against the spec"
    );
    assert_eq!(status.revert_plan_digest, digest, "the plan still resizes to the spec's value");
    assert!(status.revert_plan.iter().all(|c| !c.body.to_string().contains("s-32vcpu-192gb")));
}

/// A rename approved while the droplet is busy with a reboot, and the
/// controller killed while its saga waits: its record is left to be resumed.
struct Stopped {
    open: Drift,
    waiting: Drift,
    reboot: u64,
}

async fn stopped_while_waiting(env: &Env) -> Stopped {
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-x", "s-1vcpu-1gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"name": "web-1"})).await;
    let mut first = env.controller(&["--enable-revert"]);
    let open = env.drift("name", "an Open drift with a plan", |s| s.revert_plan_digest.is_some()).await;
    let reboot = env.fake.record_action(id, "droplet", "reboot", "in-progress");
    env.annotate(&open, approve(&open, "alice")).await;
    let waiting = env
        .drift("name", "the saga waiting for the reboot", |s| {
            s.revert.as_ref().and_then(|r| r.message.as_deref()).is_some_and(|m| m.contains("waiting for"))
        })
        .await;
    first.kill();
    Stopped { open, waiting, reboot }
}

/// The reverter's own record, changed while no reverter runs, is not resumed.
#[tokio::test]
async fn a_saga_record_forged_between_two_reverters_is_not_resumed() {
    let env = Env::new("revert-forged-resume").await;
    let (port, hits) = attacker().await;
    let Stopped { open, waiting, reboot } = stopped_while_waiting(&env).await;

    let mut record = serde_json::to_value(waiting.status.unwrap().revert.unwrap()).unwrap();
    record["steps"][0]["call"]["path"] = json!(format!("@127.0.0.1:{port}/x"));
    forge(&env, &open, json!({"revert": record})).await;
    let _second = env.controller(&["--enable-revert"]);
    env.fake.finish_action(reboot, "completed");
    let failed = env.drift("name", "the forged record refused", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("status.revert was written by tenant-forger"), "{message}");
    assert!(env.writes().is_empty(), "nothing was sent: {:?}", env.writes());
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the attacker's listener");
}

/// `kubectl drift` with the control plane's kubeconfig, off the async workers.
async fn kubectl_drift(args: Vec<String>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-drift"))
            .arg("--kubeconfig")
            .arg(common::kubeconfig())
            .args(&args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("cannot run kubectl-drift")
    })
    .await
    .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn kubectl_drift_revert_approves_the_plan_by_its_digest() {
    let env = Env::new("revert-plugin").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-x", "s-1vcpu-1gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"name": "web-1"})).await;
    let _controller = env.controller(&["--enable-revert"]);
    let open = env.drift("name", "an Open drift with a plan", |s| s.revert_plan_digest.is_some()).await;
    let digest = open.status.unwrap().revert_plan_digest.unwrap();
    let args = |extra: &[&str]| {
        let mut all = vec!["revert".to_string(), "web-1/name".into(), "--namespace".into(), env.ns.clone()];
        all.extend(extra.iter().map(|s| s.to_string()));
        all
    };

    let (code, out, _) = kubectl_drift(args(&["--dry-run"])).await;
    assert_eq!(code, 0);
    assert!(out.contains(&format!("plan {digest}")), "{out}");
    let (code, _, err) = kubectl_drift(args(&["--digest", "0123456789abcdef"])).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the plan changed since it was reviewed") && err.contains(&digest), "{err}");
    assert!(env.writes().is_empty(), "a refused approval sends nothing");

    let (code, out, err) = kubectl_drift(args(&["--digest", &digest])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Reverted"), "{out}");
    let renamed =
        vec![("POST".to_string(), format!("/v2/droplets/{id}/actions"), json!({"type": "rename", "name": "web-1"}))];
    assert_eq!(env.writes(), renamed, "the approved plan, once");
}

/// The plan changes between the approval and the saga's start (the tenant
/// edits the spec while no reverter runs): the reverter derives the plan
/// again, and the approval names another one.
#[tokio::test]
async fn a_spec_changed_after_the_approval_is_refused_by_the_reverter() {
    let env = Env::new("revert-late-change").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let mut first = env.controller(&["--enable-revert"]);
    let open = env.drift("size_slug", "the reviewed plan", |s| s.revert_plan.len() == 3).await;
    first.kill();

    // Approved, and Reverting as the controller records an approval; then the spec changes.
    let mut yes = approve(&open, "alice");
    yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&open, yes).await;
    let params = PatchParams { field_manager: Some(arcadia_drift::api::FIELD_MANAGER.into()), ..Default::default() };
    let reverting = json!({"status": {"phase": "Reverting", "resolvedBy": "alice"}});
    env.drifts().patch_status(&open.metadata.name.clone().unwrap(), &params, &Patch::Merge(reverting)).await.unwrap();
    env.provision("web-1", id, json!({"size_slug": "s-32vcpu-192gb"})).await;

    let _second = env.controller(&["--enable-revert"]);
    let failed = env.drift("size_slug", "refused by the reverter", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("the plan changed since it was approved"), "{message}");
    assert!(message.contains("nothing was sent"), "{message}");
    assert!(env.writes().is_empty(), "nothing was sent: {:?}", env.writes());
    assert_eq!(env.fake.droplet(id)["size_slug"], "s-2vcpu-4gb");
}

/// A writer who names itself the reverter's field manager still cannot make
/// a resumed saga send other calls: the steps must be the plan the approval names.
#[tokio::test]
async fn a_record_forged_under_the_reverters_own_field_manager_is_not_resumed() {
    let env = Env::new("revert-spoofed").await;
    let (port, hits) = attacker().await;
    let Stopped { open, waiting, reboot } = stopped_while_waiting(&env).await;

    // The record as if its step were being sent, with the forger's call, and a digest that matches it.
    let mut record = waiting.status.unwrap().revert.unwrap();
    record.steps[0].call.path = format!("@127.0.0.1:{port}/x");
    record.steps[0].state = StepState::Sending;
    let calls: Vec<_> = record.steps.iter().map(|s| s.call.clone()).collect();
    record.approved_digest = Some(arcadia_drift::revert::digest(&calls));
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "Drift", "status": {"revert": record}});
    let params = PatchParams::apply(arcadia_drift::api::REVERTER_FIELD_MANAGER).force();
    env.drifts().patch_status(&open.metadata.name.clone().unwrap(), &params, &Patch::Apply(body)).await.unwrap();

    let _second = env.controller(&["--enable-revert"]);
    env.fake.finish_action(reboot, "completed");
    let failed = env.drift("name", "the forged record refused", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("and the approval names plan"), "{message}");
    assert!(env.writes().is_empty(), "nothing was sent: {:?}", env.writes());
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the attacker's listener");
}

/// A droplet attached to the firewall after the inventory's copy was made:
/// the approved PUT would detach it, so the reverter refuses, naming the
/// difference; the plan made again carries the current droplets.
#[tokio::test]
async fn a_firewall_changed_since_the_sync_is_never_written_back_stale() {
    let env = Env::new("revert-firewall").await;
    let fw = format!("{:08x}-3d72-467b-8602-280330ecd65c", fresh_id() % 0xffff_ffff);
    let ssh = json!([{"protocol": "tcp", "ports": "22", "sources": {"addresses": ["0.0.0.0/0"]}}]);
    let https = json!([{"protocol": "tcp", "ports": "443", "sources": {"addresses": ["0.0.0.0/0"]}}]);
    env.fake.add(
        "/v2/firewalls",
        json!({"id": fw, "name": "web-fw", "status": "succeeded", "inbound_rules": ssh, "outbound_rules": [],
            "droplet_ids": [8043964], "tags": [env.claim_tag()], "created_at": "2026-11-30T00:00:00Z"}),
    );
    let body = json!({
        "apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudProvisioned", "metadata": {"name": "web-fw"},
        "spec": {"resourceRef": {"name": format!("digitalocean-firewall-{fw}")}, "desired": {"inbound_rules": https}},
    });
    let api: Api<CloudProvisioned> = Api::namespaced(env.client.clone(), &env.ns);
    api.patch("web-fw", &PatchParams::apply("test"), &Patch::Apply(body)).await.unwrap();
    let _controller = env.controller(&["--enable-revert"]);
    let open = env.drift("inbound_rules", "an Open drift with a plan", |s| s.revert_plan.len() == 1).await;
    assert_eq!(open.status.as_ref().unwrap().revert_plan[0].body["droplet_ids"], json!([8043964]));

    // Attached by hand between the sync and the approval.
    env.fake.with(|s| {
        let firewall = s.collection_mut("/v2/firewalls").iter_mut().find(|f| f["id"] == fw).unwrap();
        firewall["droplet_ids"] = json!([8043964, 8043965]);
    });
    env.annotate(&open, approve(&open, "erin")).await;
    let refused = env.drift("inbound_rules", "RevertFailed", phase(DriftPhase::RevertFailed)).await;
    let message = refused.status.unwrap().message.unwrap();
    assert!(
        message.contains("the resource changed since the plan was made") && message.contains("8043965"),
        "{message}"
    );
    assert!(env.writes().is_empty(), "nothing was sent: {:?}", env.writes());

    // The reverter read the firewall again: the new plan keeps both droplets, and runs.
    let replanned = env
        .drift("inbound_rules", "a plan with both droplets", |s| {
            s.revert_plan.first().is_some_and(|c| c.body["droplet_ids"] == json!([8043964, 8043965]))
        })
        .await;
    let drifts = env.drifts();
    let name = replanned.metadata.name.clone().unwrap();
    common::eventually(Duration::from_secs(30), "the first approval consumed", || async {
        let d = drifts.get(&name).await.ok()?;
        (!d.annotations().contains_key(ANNOTATION_REVERT)).then_some(())
    })
    .await;
    let replanned = drifts.get(&name).await.unwrap();
    env.annotate(&replanned, approve(&replanned, "erin")).await;
    env.drift("inbound_rules", "Reverted", phase(DriftPhase::Reverted)).await;
    let writes = env.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].2["droplet_ids"], json!([8043964, 8043965]), "never the old droplet list");
}

/// A listing that started before a revert answers after the reverter read
/// the resource again: its older reading never replaces the newer one, so
/// the Reverted drift is not reopened by a stale copy.
#[tokio::test]
async fn a_listing_older_than_the_refresh_after_a_revert_never_replaces_it() {
    let env = Env::new("revert-older-listing").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-x", "s-1vcpu-1gb", "nyc3", &[&env.claim_tag()]));
    env.provision("web-1", id, json!({"name": "web-1"})).await;
    let mut args = vec!["--enable-revert"];
    let source = env.source.clone();
    let url = env.fake.url.clone();
    args.extend(["--inventory-sync-interval", "3s"]);
    let _controller = ControllerProcess::start_with_env(
        &env.ns,
        &[
            &["--digitalocean-api-url", &url, "--digitalocean-actions-interval", "1s", "--inventory-source", &source],
            args.as_slice(),
        ]
        .concat(),
        &[("DIGITALOCEAN_TOKEN", TOKEN)],
    );
    let open = env.drift("name", "an Open drift with a plan", |s| s.revert_plan_digest.is_some()).await;
    // The next listing reads web-x now and answers only after the revert has ended.
    env.fake.with(|s| s.hold_listing = Some(Duration::from_secs(10)));
    common::eventually(Duration::from_secs(30), "a held listing", || async {
        (env.fake.with(|s| s.held_listings) == 1).then_some(())
    })
    .await;
    env.annotate(&open, approve(&open, "alice")).await;
    env.drift("name", "Reverted", phase(DriftPhase::Reverted)).await;
    // Past the held listing's answer, and one more sync.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let resources: Api<arcadia_drift::api::CloudResource> = Api::all(env.client.clone());
    let mirrored = resources.get(&format!("digitalocean-droplet-{id}")).await.unwrap();
    assert_eq!(mirrored.status.unwrap().name.as_deref(), Some("web-1"), "the older listing was not written");
    let drifts = env.drifts().list(&ListParams::default()).await.unwrap().items;
    let phases: Vec<DriftPhase> = drifts.iter().filter_map(|d| d.status.as_ref().map(|s| s.phase)).collect();
    assert_eq!(phases, [DriftPhase::Reverted], "no drift reopened");
}

/// Two replicas, the leader with a resize saga waiting on the shutdown.
struct Pair {
    env: Env,
    id: u64,
    leader: ControllerProcess,
    standby: ControllerProcess,
}

async fn pair_with_a_step_in_flight(prefix: &str) -> Pair {
    let env = Env::new(prefix).await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-1", "s-2vcpu-4gb", "nyc3", &[&env.claim_tag()]));
    env.fake.with(|s| s.action_delay = Duration::from_secs(8));
    env.provision("web-1", id, json!({"size_slug": "s-1vcpu-1gb"})).await;
    let leader = env.controller(&["--enable-revert", "--lease-duration", "3s"]);
    common::eventually(Duration::from_secs(20), "the first replica leads", || async {
        (leader.metric("arcadia_drift_leader") == 1.0).then_some(())
    })
    .await;
    let standby = env.controller(&["--enable-revert", "--lease-duration", "3s"]);
    let open = env.drift("size_slug", "an Open drift", |s| s.revert_plan.len() == 3).await;
    let mut yes = approve(&open, "erin");
    yes[ANNOTATION_REVERT_ALLOW_DOWNTIME] = json!("true");
    env.annotate(&open, yes).await;
    env.drift("size_slug", "the shutdown in flight", |s| {
        s.revert.as_ref().is_some_and(|r| r.steps.first().is_some_and(|s| s.state == StepState::InProgress))
    })
    .await;
    assert_eq!(standby.metric("arcadia_drift_leader"), 0.0, "the second replica stands by");
    Pair { env, id, leader, standby }
}

/// The leader is paused past its lease while a step is in flight; the
/// standby takes over and goes on with the saga; the old leader, resumed,
/// finds its fence closed and stops acting (it steps down and exits) without
/// sending anything: every call of the saga reaches DigitalOcean once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_sends_nothing_after_it_wakes() {
    let Pair { env, id, mut leader, standby } = pair_with_a_step_in_flight("revert-paused-leader").await;
    leader.signal("STOP");
    common::eventually(Duration::from_secs(30), "the standby leads", || async {
        (standby.metric("arcadia_drift_leader") == 1.0).then_some(())
    })
    .await;
    leader.signal("CONT");
    let exit = tokio::task::block_in_place(|| leader.wait_exit(Duration::from_secs(20)));
    assert!(exit.is_some(), "the old leader stops; log:\n{}", leader.log_text());
    let log = leader.log_text();
    assert!(log.contains("stepping down") || log.contains("lost the leader lease"), "{log}");
    env.drift("size_slug", "Reverted by the new leader", phase(DriftPhase::Reverted)).await;
    assert_eq!(action_types(&env.fake, id), ["shutdown", "resize", "power_on"], "each call once");
    assert_eq!(env.writes().len(), 3, "{:?}", env.writes());
}

/// SIGTERM while a step is in flight: the saga stops at a safe point before
/// the lease is let go, and the standby resumes it without a second call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_step_in_flight_hands_the_saga_over_without_a_second_call() {
    let Pair { env, id, mut leader, standby } = pair_with_a_step_in_flight("revert-sigterm").await;
    let code = tokio::task::block_in_place(|| leader.terminate());
    assert_eq!(code, Some(0), "a clean exit; log:\n{}", leader.log_text());
    assert!(leader.log_text().contains("stops at a safe point"), "{}", leader.log_text());
    common::eventually(Duration::from_secs(30), "the standby leads", || async {
        (standby.metric("arcadia_drift_leader") == 1.0).then_some(())
    })
    .await;
    env.drift("size_slug", "Reverted by the new leader", phase(DriftPhase::Reverted)).await;
    assert_eq!(action_types(&env.fake, id), ["shutdown", "resize", "power_on"], "each call once");
    assert_eq!(env.writes().len(), 3, "{:?}", env.writes());
}

/// An action that never ends holds no saga for ever: past
/// --revert-step-timeout the step fails, saying so, and the drift is RevertFailed.
#[tokio::test]
async fn an_action_stuck_in_progress_fails_its_step_at_the_deadline() {
    let env = Env::new("revert-stuck").await;
    let id = fresh_id();
    env.fake.add("/v2/droplets", droplet(id, "web-x", "s-1vcpu-1gb", "nyc3", &[&env.claim_tag()]));
    env.fake.with(|s| s.action_delay = Duration::from_secs(3600));
    env.provision("web-1", id, json!({"name": "web-1"})).await;
    let _controller = env.controller(&["--enable-revert", "--revert-step-timeout", "4s"]);
    let open = env.drift("name", "an Open drift with a plan", |s| s.revert_plan_digest.is_some()).await;
    env.annotate(&open, approve(&open, "alice")).await;
    let failed = env.drift("name", "RevertFailed", phase(DriftPhase::RevertFailed)).await;
    let message = failed.status.unwrap().message.unwrap();
    assert!(message.contains("no outcome within --revert-step-timeout (4s)"), "{message}");
    assert_eq!(action_types(&env.fake, id), ["rename"], "sent once, never again");
}
