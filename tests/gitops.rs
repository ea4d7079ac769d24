//! Accept modes against the real API server, with the GitOps tools' own ways
//! of applying: Flux (server-side apply, forced, manager
//! `kustomize-controller`), Argo CD (server-side apply as `argocd-controller`,
//! and client-side `kubectl apply` with its tracking annotation), and a
//! person committing the live value to Git.

mod common;

use arcadia_drift::api::{
    ANNOTATION_ACCEPT, ANNOTATION_ACCEPTED_BY, AcceptedInto, CloudProvisioned, CloudResource, CloudResourceSpec,
    CloudResourceStatus, Drift, DriftPhase, FIELD_MANAGER, now,
};
use common::controller::ControllerProcess;
use common::eventually;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// Two resyncs of the test controllers (`--resync-interval 3s`).
const TWO_RESYNCS: Duration = Duration::from_secs(7);

async fn droplet(client: &Client, size: &str) -> String {
    let id = common::unique_suffix();
    let name = format!("digitalocean-droplet-{id}");
    let api: Api<CloudResource> = Api::all(client.clone());
    let spec = CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id, region: None };
    api.create(&PostParams::default(), &CloudResource::new(&name, spec)).await.unwrap();
    let status = CloudResourceStatus {
        region: Some("nyc3".into()),
        size_slug: Some(size.into()),
        synced_time: Some(now()),
        ..Default::default()
    };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    api.patch_status(&name, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body)).await.unwrap();
    name
}

/// The manifest as it stands in Git.
fn manifest(resource: &str, size: &str, metadata: &str) -> String {
    format!(
        "apiVersion: arcadia.cloud/v1alpha1\nkind: CloudProvisioned\nmetadata:\n  name: web-1\n{metadata}spec:\n  resourceRef: {{name: {resource}}}\n  desired: {{size_slug: {size}, region: nyc3}}\n"
    )
}

/// `kubectl apply` of `manifest` into `ns` with the tool's own flags; panics with kubectl's words on failure.
fn apply(ns: &str, manifest: &str, flags: &[&str]) {
    let file = std::env::temp_dir().join(format!("arcadia-gitops-{ns}-{}.yaml", common::unique_suffix()));
    std::fs::write(&file, manifest).unwrap();
    let mut args = vec!["apply", "-n", ns, "-f", file.to_str().unwrap()];
    args.extend_from_slice(flags);
    common::kubectl_ok(&args);
}

/// The namespace's one Drift, once there is one.
async fn drift(client: &Client, ns: &str) -> Option<Drift> {
    let mut all = Api::<Drift>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    assert!(all.len() <= 1, "one Drift per field: {all:?}");
    all.pop()
}

async fn the_drift(client: &Client, ns: &str) -> Drift {
    drift(client, ns).await.expect("a Drift")
}

fn phase(d: &Drift) -> Option<DriftPhase> {
    d.status.as_ref().map(|s| s.phase)
}

async fn wait_phase(client: &Client, ns: &str, want: DriftPhase) -> Drift {
    eventually(WAIT, &format!("the drift {want}"), || async {
        let d = drift(client, ns).await?;
        (phase(&d) == Some(want) && !d.annotations().contains_key(ANNOTATION_ACCEPT)).then_some(d)
    })
    .await
}

async fn annotate_accept(client: &Client, ns: &str, drift: &str) {
    let patch = json!({"metadata": {"annotations": {ANNOTATION_ACCEPT: "true", ANNOTATION_ACCEPTED_BY: "alice"}}});
    Api::<Drift>::namespaced(client.clone(), ns)
        .patch(drift, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

async fn cprov(client: &Client, ns: &str) -> CloudProvisioned {
    Api::<CloudProvisioned>::namespaced(client.clone(), ns).get("web-1").await.unwrap()
}

async fn events(client: &Client, ns: &str, reason: &str) -> Vec<Event> {
    let all = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    all.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

fn git_in_sync(p: &CloudProvisioned) -> (String, String, String) {
    let c = p.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "GitInSync").expect("GitInSync");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// The controller's own writes to CloudProvisioned specs (its status writes are counted apart).
fn spec_writes(controller: &ControllerProcess) -> f64 {
    controller.metric("arcadia_drift_api_writes_total{kind=\"cloudprovisioned\"}")
}

/// One GitOps tool's whole story: drift, overlay accept, the tool syncs the
/// old manifest again (twice, and across a failover to a second replica) without
/// undoing the accept, then Git catches up and the pending change merges.
async fn an_overlay_accept_survives_syncs(prefix: &str, metadata: &str, flags: &[&str]) {
    let client = common::client().await;
    let ns = common::namespace(&client, prefix).await;
    let resource = droplet(&client, "s-2vcpu-4gb").await;
    let in_git = manifest(&resource, "s-1vcpu-1gb", metadata);
    apply(&ns, &in_git, flags);
    let mut controller_a = ControllerProcess::start(&ns, &["--identity", "replica-a"]);
    let open = wait_phase(&client, &ns, DriftPhase::Open).await;
    annotate_accept(&client, &ns, &open.name_any()).await;

    let accepted = wait_phase(&client, &ns, DriftPhase::Accepted).await;
    let status = accepted.status.unwrap();
    assert_eq!((status.accept_mode, status.resolved_by.as_deref()), (Some(AcceptedInto::Overlay), Some("alice")));
    let message = status.message.unwrap();
    assert!(message.contains("in overlay mode (auto, from --accept-mode"), "{message}");
    let p = cprov(&client, &ns).await;
    assert_eq!(p.metadata.generation, Some(1), "the spec was not written");
    assert_eq!(p.spec.desired.get("size_slug").unwrap_or_default(), json!("s-1vcpu-1gb"));
    let pending = &p.status.as_ref().unwrap().pending_git_changes;
    assert_eq!((pending.len(), &pending[0].value), (1, &json!("s-2vcpu-4gb")));
    let (state, reason, message) = git_in_sync(&p);
    assert_eq!((state.as_str(), reason.as_str()), ("False", "AcceptedNotInGit"));
    assert!(message.contains("spec.desired.size_slug: s-2vcpu-4gb"), "{message}");
    let columns = common::kubectl_ok(&["get", "cprov", "web-1", "-n", &ns]);
    assert!(columns.lines().next().unwrap().contains("PENDING-GIT") && columns.contains("size_slug"), "{columns}");

    // The tool syncs the unchanged manifest: no conflict (kubectl_ok), the accept holds.
    apply(&ns, &in_git, flags);
    tokio::time::sleep(TWO_RESYNCS).await;
    assert_eq!(phase(&the_drift(&client, &ns).await), Some(DriftPhase::Accepted), "no Open drift reappears");
    // A second replica takes over from a killed leader: the overlay lives in the API.
    let controller = ControllerProcess::start(&ns, &["--identity", "replica-b"]);
    controller_a.kill();
    eventually(WAIT, "the second replica leads", || async {
        (controller.metric("arcadia_drift_leader") == 1.0).then_some(())
    })
    .await;
    apply(&ns, &in_git, flags);
    tokio::time::sleep(TWO_RESYNCS).await;
    assert_eq!(phase(&the_drift(&client, &ns).await), Some(DriftPhase::Accepted), "the overlay lives in the API");
    let p = cprov(&client, &ns).await;
    assert!(p.managed_fields().iter().all(|m| m.manager.as_deref() != Some(FIELD_MANAGER) || m.subresource.is_some()));
    assert_eq!(spec_writes(&controller), 0.0, "the controller never writes the spec in overlay mode");

    // Git catches up.
    apply(&ns, &manifest(&resource, "s-2vcpu-4gb", metadata), flags);
    let merged = eventually(WAIT, "the pending change merged", || async {
        let p = cprov(&client, &ns).await;
        (git_in_sync(&p).0 == "True").then_some(p)
    })
    .await;
    assert!(merged.status.unwrap().pending_git_changes.is_empty());
    eventually(WAIT, "an AcceptMerged Event", || async { events(&client, &ns, "AcceptMerged").await.pop() }).await;
    assert_eq!(phase(&the_drift(&client, &ns).await), Some(DriftPhase::Accepted));
    assert_eq!(controller.metric("arcadia_drift_reconcile_errors_total"), 0.0, "{}", controller.log_text());
}

#[tokio::test]
async fn flux_server_side_apply_with_force() {
    let labels = "  labels:\n    kustomize.toolkit.fluxcd.io/name: infra\n    kustomize.toolkit.fluxcd.io/namespace: flux-system\n";
    an_overlay_accept_survives_syncs(
        "flux",
        labels,
        &["--server-side", "--force-conflicts", "--field-manager", "kustomize-controller"],
    )
    .await;
}

#[tokio::test]
async fn argo_cd_server_side_apply_with_force() {
    an_overlay_accept_survives_syncs(
        "argo-ssa",
        "",
        &["--server-side", "--force-conflicts", "--field-manager", "argocd-controller"],
    )
    .await;
}

#[tokio::test]
async fn argo_cd_client_side_apply_with_its_tracking_id() {
    let annotations =
        "  annotations:\n    argocd.argoproj.io/tracking-id: infra:arcadia.cloud/CloudProvisioned:ns/web-1\n";
    an_overlay_accept_survives_syncs("argo-csa", annotations, &[]).await;
}

#[tokio::test]
async fn a_live_value_that_moves_after_an_overlay_accept_opens_a_new_episode() {
    let client = common::client().await;
    let ns = common::namespace(&client, "overlay-moves").await;
    let resource = droplet(&client, "s-2vcpu-4gb").await;
    let flags = ["--server-side", "--force-conflicts", "--field-manager", "kustomize-controller"];
    apply(&ns, &manifest(&resource, "s-1vcpu-1gb", ""), &flags);
    let _controller = ControllerProcess::start(&ns, &[]);
    let open = wait_phase(&client, &ns, DriftPhase::Open).await;
    annotate_accept(&client, &ns, &open.name_any()).await;
    wait_phase(&client, &ns, DriftPhase::Accepted).await;

    let status = CloudResourceStatus {
        region: Some("nyc3".into()),
        size_slug: Some("s-8vcpu-16gb".into()),
        synced_time: Some(now()),
        ..Default::default()
    };
    let body = json!({"apiVersion": "arcadia.cloud/v1alpha1", "kind": "CloudResource", "status": status});
    Api::<CloudResource>::all(client.clone())
        .patch_status(&resource, &PatchParams::apply("test-syncer").force(), &Patch::Apply(body))
        .await
        .unwrap();
    let reopened = wait_phase(&client, &ns, DriftPhase::Open).await.status.unwrap();
    assert_eq!((reopened.expected, reopened.actual), (json!("s-2vcpu-4gb"), json!("s-8vcpu-16gb")));
    assert_eq!(reopened.history[0].phase, DriftPhase::Accepted);
}

#[tokio::test]
async fn committing_the_live_value_to_git_is_an_accept_by_its_field_manager() {
    let client = common::client().await;
    let ns = common::namespace(&client, "git-accept").await;
    let resource = droplet(&client, "s-2vcpu-4gb").await;
    let flags = ["--server-side", "--force-conflicts", "--field-manager", "kustomize-controller"];
    apply(&ns, &manifest(&resource, "s-1vcpu-1gb", ""), &flags);
    let controller = ControllerProcess::start(&ns, &[]);
    wait_phase(&client, &ns, DriftPhase::Open).await;

    apply(&ns, &manifest(&resource, "s-2vcpu-4gb", ""), &flags);
    let accepted = wait_phase(&client, &ns, DriftPhase::Accepted).await.status.unwrap();
    assert_eq!(accepted.resolved_by.as_deref(), Some("spec change by field manager kustomize-controller"));
    assert_eq!(accepted.message.as_deref(), Some("accepted by a spec change at generation 2"));
    assert_eq!(controller.metric("arcadia_drift_resolved_stale_total"), 0.0, "not Stale: the desired state moved");
}

#[tokio::test]
async fn a_spec_mode_accept_undone_by_a_forced_sync_is_reported_and_not_fought() {
    let client = common::client().await;
    let ns = common::namespace(&client, "spec-undone").await;
    let resource = droplet(&client, "s-2vcpu-4gb").await;
    let metadata = "  annotations:\n    arcadia.cloud/accept-mode: spec\n";
    let in_git = manifest(&resource, "s-1vcpu-1gb", metadata);
    let flags = ["--server-side", "--force-conflicts", "--field-manager", "gitops"];
    apply(&ns, &in_git, &flags);
    let controller = ControllerProcess::start(&ns, &[]);
    let open = wait_phase(&client, &ns, DriftPhase::Open).await;
    annotate_accept(&client, &ns, &open.name_any()).await;
    let accepted = wait_phase(&client, &ns, DriftPhase::Accepted).await.status.unwrap();
    assert_eq!(accepted.accept_mode, Some(AcceptedInto::Spec));
    assert_eq!(cprov(&client, &ns).await.spec.desired.get("size_slug").unwrap_or_default(), json!("s-2vcpu-4gb"));

    apply(&ns, &in_git, &flags);
    let warning =
        eventually(WAIT, "an AcceptReverted Event", || async { events(&client, &ns, "AcceptReverted").await.pop() })
            .await;
    let note = warning.note.unwrap_or_default();
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(note.contains("taken back by gitops") && note.contains("accept-mode=overlay"), "{note}");
    wait_phase(&client, &ns, DriftPhase::Open).await;
    tokio::time::sleep(TWO_RESYNCS).await;
    assert_eq!(
        cprov(&client, &ns).await.spec.desired.get("size_slug").unwrap_or_default(),
        json!("s-1vcpu-1gb"),
        "not fought for"
    );
    assert_eq!(events(&client, &ns, "AcceptReverted").await.len(), 1, "said once");
    assert_eq!(spec_writes(&controller), 1.0, "the one write of the accept");
}

#[tokio::test]
async fn an_unknown_accept_mode_is_refused_with_its_name_and_nothing_changes() {
    let client = common::client().await;
    let ns = common::namespace(&client, "bad-mode").await;
    let resource = droplet(&client, "s-2vcpu-4gb").await;
    let metadata = "  annotations:\n    arcadia.cloud/accept-mode: overlayy\n";
    apply(&ns, &manifest(&resource, "s-1vcpu-1gb", metadata), &["--server-side"]);
    let _controller = ControllerProcess::start(&ns, &[]);
    let open = wait_phase(&client, &ns, DriftPhase::Open).await;
    annotate_accept(&client, &ns, &open.name_any()).await;
    let refused = eventually(WAIT, "the refusal", || async {
        let d = drift(&client, &ns).await?;
        let message = d.status.as_ref()?.message.clone()?;
        (!d.annotations().contains_key(ANNOTATION_ACCEPT)).then_some((d, message))
    })
    .await;
    assert_eq!(phase(&refused.0), Some(DriftPhase::Open));
    assert!(
        refused.1.contains(
            "arcadia.cloud/accept-mode \"overlayy\" on CloudProvisioned web-1 is not one of spec, overlay, auto"
        ),
        "{}",
        refused.1
    );
    let p = cprov(&client, &ns).await;
    assert_eq!(
        (p.metadata.generation, p.spec.desired.get("size_slug").unwrap_or_default()),
        (Some(1), json!("s-1vcpu-1gb"))
    );
    assert!(p.status.unwrap().pending_git_changes.is_empty());
    eventually(WAIT, "an AcceptRefused Event", || async { events(&client, &ns, "AcceptRefused").await.pop() }).await;
}
