//! The commands: each reads (or annotates) through the API server as the
//! user, with kubectl's conventions for kubeconfig, context and namespace.

use super::outcome::{Action, Outcome, outcome};
use super::table::{self, Paint};
use super::{
    ActArgs, Command, EXIT_ERROR, EXIT_OK, EXIT_REFUSED, ExplainArgs, Format, Global, ListArgs, Plugin, PluginError,
    SummaryArgs,
};
use crate::api::{
    ANNOTATION_ACCEPT_MODE, ANNOTATION_ACCEPTED_BY, ANNOTATION_REVERT_ALLOW_DOWNTIME, ANNOTATION_REVERTED_BY,
    CloudProvisioned, Drift, DriftPhase, LABEL_SEVERITY,
};
use crate::detect::render_value;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::await_condition;
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use std::io::IsTerminal;
use std::time::Duration;

/// The cluster, as the user, and the namespace the command is about.
struct Session {
    client: Client,
    namespace: String,
    all: bool,
}

impl Session {
    fn drifts(&self) -> Api<Drift> {
        if self.all { Api::all(self.client.clone()) } else { Api::namespaced(self.client.clone(), &self.namespace) }
    }

    fn provisioned(&self) -> Api<CloudProvisioned> {
        if self.all { Api::all(self.client.clone()) } else { Api::namespaced(self.client.clone(), &self.namespace) }
    }

    fn scope(&self) -> String {
        if self.all { "in any namespace".into() } else { format!("in namespace {}", self.namespace) }
    }
}

pub async fn run(plugin: Plugin) -> Result<u8, PluginError> {
    let session = connect(&plugin.global).await?;
    match plugin.command {
        Command::List(args) => list(&session, &args).await,
        Command::Summary(args) => summary(&session, &args).await,
        Command::Accept(args) => act(&session, Action::Accept, &args, false, None).await,
        Command::Revert(args) => {
            act(&session, Action::Revert, &args.act, args.allow_downtime, args.digest.as_deref()).await
        }
        Command::Explain(args) => explain(&session, &args).await,
    }
}

async fn connect(g: &Global) -> Result<Session, PluginError> {
    let options = KubeConfigOptions { context: g.context.clone(), ..Default::default() };
    let fail = |e: &dyn std::fmt::Display| PluginError::Config(e.to_string());
    let mut config = match &g.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| fail(&e))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| fail(&e))?
        }
        None => Config::from_kubeconfig(&options).await.map_err(|e| fail(&e))?,
    };
    if let Some(user) = &g.as_user {
        config.auth_info.impersonate = Some(user.clone());
        config.auth_info.impersonate_groups = (!g.as_groups.is_empty()).then(|| g.as_groups.clone());
    }
    let namespace = g.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| fail(&e))?;
    Ok(Session { client, namespace, all: g.all_namespaces })
}

/// A clear error for what the API server answered: a missing CRD, a missing
/// permission (naming the verb and the resource), or anything else.
fn api_error(verb: &'static str, resource: &'static str, scope: String, source: kube::Error) -> PluginError {
    match &source {
        kube::Error::Api(s) if s.code == 403 => {
            PluginError::Forbidden { verb, resource, scope, message: s.message.clone() }
        }
        kube::Error::Api(s) if s.code == 404 && verb == "list" => PluginError::MissingCrd { resource },
        _ => PluginError::Api { what: format!("{verb} {resource} {scope}"), source },
    }
}

async fn list_drifts(s: &Session, params: &ListParams) -> Result<Vec<Drift>, PluginError> {
    let list = s.drifts().list(params).await.map_err(|e| api_error("list", "drifts.arcadia.cloud", s.scope(), e))?;
    Ok(list.items)
}

async fn list(s: &Session, args: &ListArgs) -> Result<u8, PluginError> {
    let mut params = ListParams::default();
    if let Some(phase) = &args.phase {
        params = params.fields(&format!("status.phase={phase}"));
    }
    if let Some(severity) = &args.severity {
        params = params.labels(&format!("{LABEL_SEVERITY}={severity}"));
    }
    let drifts = list_drifts(s, &params).await?;
    let rows = table::rows(&drifts, k8s_openapi::jiff::Timestamp::now());
    match args.output {
        Format::Json => print(&(serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n")),
        Format::Table if rows.is_empty() => eprintln!("no drifts {}", s.scope()),
        Format::Table => print(&table::render_rows(&rows, paint())),
    }
    Ok(EXIT_OK)
}

/// Colours only on a terminal, and never with NO_COLOR set.
fn paint() -> Paint {
    Paint(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

fn print(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

async fn summary(s: &Session, args: &SummaryArgs) -> Result<u8, PluginError> {
    let provisioned = s
        .provisioned()
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("list", "cloudprovisioneds.arcadia.cloud", s.scope(), e))?
        .items;
    let drifts = list_drifts(s, &ListParams::default()).await?;
    let summary = table::summary(&provisioned, &drifts);
    match args.output {
        Format::Json => print(&(serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n")),
        Format::Table => print(&table::render_summary(&summary)),
    }
    Ok(EXIT_OK)
}

/// A Drift's name from `NAME` or `PROVISIONED/FIELD`.
fn drift_name(target: &str) -> String {
    match target.split_once('/') {
        Some((provisioned, field)) => Drift::name_for(provisioned, field),
        None => target.to_owned(),
    }
}

async fn get_drift(s: &Session, name: &str) -> Result<Drift, PluginError> {
    let api: Api<Drift> = Api::namespaced(s.client.clone(), &s.namespace);
    match api.get_opt(name).await {
        Ok(Some(d)) => Ok(d),
        Ok(None) => {
            // A missing CRD answers 404 too: tell the two apart.
            list_drifts(s, &ListParams::default().limit(1)).await?;
            Err(PluginError::UnknownDrift { name: name.into(), namespace: s.namespace.clone() })
        }
        Err(e) => Err(api_error("get", "drifts.arcadia.cloud", s.scope(), e)),
    }
}

/// The drifts a command acts on: named ones, or the Open ones a selector picks.
async fn targets(s: &Session, args: &ActArgs) -> Result<Vec<Drift>, PluginError> {
    let mut found = Vec::new();
    for target in &args.targets {
        found.push(get_drift(s, &drift_name(target)).await?);
    }
    if let Some(selector) = &args.selector {
        let params = ListParams::default().labels(selector).fields("status.phase=Open");
        found.extend(list_drifts(s, &params).await?);
    }
    if found.is_empty() {
        return Err(PluginError::Usage("name a drift (NAME or PROVISIONED/FIELD) or give -l SELECTOR".into()));
    }
    Ok(found)
}

/// Who the API server says the user is, to name them as the actor (the
/// chart's admission policy checks that it is really them).
async fn whoami(client: &Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api.create(&PostParams::default(), &SelfSubjectReview::default()).await.ok()?;
    review.status?.user_info?.username
}

async fn act(
    s: &Session,
    action: Action,
    args: &ActArgs,
    allow_downtime: bool,
    reviewed: Option<&str>,
) -> Result<u8, PluginError> {
    let drifts = targets(s, args).await?;
    if args.dry_run {
        drifts.iter().for_each(|d| print(&dry_run(action, d)));
        return Ok(EXIT_OK);
    }
    let who = whoami(&s.client).await;
    let mut code = EXIT_OK;
    for d in &drifts {
        let value = match action {
            Action::Accept => "true".to_owned(),
            Action::Revert => match approval_digest(d, reviewed) {
                Ok(digest) => digest,
                Err(why) => {
                    eprintln!("{}: {why}", d.name_any());
                    code = code.max(EXIT_REFUSED);
                    continue;
                }
            },
        };
        annotate(s, action, d, &value, who.as_deref(), allow_downtime).await?;
        let result = wait(s, action, d, args.timeout).await?;
        let name = d.name_any();
        code = code.max(match result {
            Outcome::Done(message) => {
                print(&format!("{name}: {message}\n"));
                EXIT_OK
            }
            Outcome::Refused(message) => {
                eprintln!("{name}: {message}");
                EXIT_REFUSED
            }
            Outcome::Pending => {
                eprintln!(
                    "{name}: no outcome within {}s; is the arcadia-drift controller running? The annotation stays, and the controller acts on it when it runs (`kubectl get drift {name} -w`)",
                    args.timeout.as_secs()
                );
                EXIT_ERROR
            }
        });
    }
    Ok(code)
}

async fn annotate(
    s: &Session,
    action: Action,
    d: &Drift,
    value: &str,
    who: Option<&str>,
    allow_downtime: bool,
) -> Result<(), PluginError> {
    let mut annotations = serde_json::Map::new();
    annotations.insert(action.annotation().into(), json!(value));
    let actor = match action {
        Action::Accept => ANNOTATION_ACCEPTED_BY,
        Action::Revert => ANNOTATION_REVERTED_BY,
    };
    if let Some(who) = who {
        annotations.insert(actor.into(), json!(who));
    }
    if allow_downtime {
        annotations.insert(ANNOTATION_REVERT_ALLOW_DOWNTIME.into(), json!("true"));
    }
    let namespace = d.namespace().unwrap_or_default();
    let api: Api<Drift> = Api::namespaced(s.client.clone(), &namespace);
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| api_error("patch", "drifts.arcadia.cloud", format!("in namespace {namespace}"), e))?;
    Ok(())
}

async fn wait(s: &Session, action: Action, d: &Drift, timeout: Duration) -> Result<Outcome, PluginError> {
    let namespace = d.namespace().unwrap_or_default();
    let api: Api<Drift> = Api::namespaced(s.client.clone(), &namespace);
    let settled = move |now: Option<&Drift>| now.is_some_and(|now| outcome(action, now) != Outcome::Pending);
    let watched = tokio::time::timeout(timeout, await_condition(api.clone(), &d.name_any(), settled)).await;
    if let Ok(Ok(Some(now))) = watched {
        return Ok(outcome(action, &now));
    }
    // Out of time, the drift gone or the watch refused: one read says which,
    // with the error the API gives for it.
    let now = api.get(&d.name_any()).await.map_err(|e| api_error("get", "drifts.arcadia.cloud", s.scope(), e))?;
    Ok(outcome(action, &now))
}

fn dry_run(action: Action, d: &Drift) -> String {
    let status = d.status.clone().unwrap_or_default();
    let (name, field) = (d.name_any(), &d.spec.field);
    match action {
        Action::Accept => format!(
            "would accept {name}: {field} of CloudProvisioned {} becomes {} (now {}; phase {})\n",
            d.spec.provisioned_ref.name,
            render_value(&status.actual),
            render_value(&status.expected),
            status.phase
        ),
        Action::Revert => revert_preview(&name, &status),
    }
}

/// What a revert approval carries: the digest of the plan the drift shows,
/// computed here from the plan itself; `reviewed` (`--digest`) must be it.
fn approval_digest(d: &Drift, reviewed: Option<&str>) -> Result<String, String> {
    let status = d.status.clone().unwrap_or_default();
    if status.revert_plan.is_empty() {
        return Err(revert_preview(&d.name_any(), &status).trim_end().to_owned());
    }
    let digest = crate::revert::digest(&status.revert_plan);
    if let Some(shown) = status.revert_plan_digest.as_deref().filter(|shown| *shown != digest) {
        return Err(format!(
            "status.revertPlanDigest {shown} is not the digest of status.revertPlan ({digest}); not approving a plan that does not match its digest"
        ));
    }
    match reviewed {
        Some(reviewed) if reviewed != digest => Err(format!(
            "the plan changed since it was reviewed: --digest {reviewed}, and the plan now is {digest}; review it again (--dry-run) and approve with --digest {digest}"
        )),
        _ => Ok(digest),
    }
}

fn revert_preview(name: &str, status: &crate::api::DriftStatus) -> String {
    if status.revert_plan.is_empty() {
        let why = status.revert_note.clone().unwrap_or_else(|| {
            "no plan: reverting is off in the controller (--enable-revert), or the drift is not Open".into()
        });
        return format!("cannot revert {name}: {why}\n");
    }
    let digest = crate::revert::digest(&status.revert_plan);
    let mut out = format!("would revert {name} with {} call(s), plan {digest}:\n", status.revert_plan.len());
    for (i, c) in status.revert_plan.iter().enumerate() {
        let body = if c.body.is_null() { String::new() } else { format!(" {}", c.body) };
        out.push_str(&format!("  {}. {} {}{body}   # {}\n", i + 1, c.method, c.path, c.description));
    }
    if let Some(note) = &status.revert_note {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

async fn explain(s: &Session, args: &ExplainArgs) -> Result<u8, PluginError> {
    let d = get_drift(s, &drift_name(&args.target)).await?;
    let status = d.status.clone().unwrap_or_default();
    let mut out = describe(&d, &status);
    out.push_str(&history(&status));
    out.push_str(&events(s, &d).await?);
    let provisioned: Api<CloudProvisioned> = Api::namespaced(s.client.clone(), &s.namespace);
    let mode = match provisioned.get_opt(&d.spec.provisioned_ref.name).await {
        Ok(Some(p)) => p.annotations().get(ANNOTATION_ACCEPT_MODE).cloned(),
        _ => None,
    };
    out.push_str(&accept_would(&d, &status, mode.as_deref()));
    out.push_str(&format!(
        "\nRevert would:\n  {}",
        revert_preview(&d.name_any(), &status).replace('\n', "\n  ").trim_end()
    ));
    print(&(out + "\n"));
    Ok(EXIT_OK)
}

fn describe(d: &Drift, status: &crate::api::DriftStatus) -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    let since =
        status.detected_time.as_ref().map(|t| format!("{} ({} ago)", t.0, table::age(t.0, now))).unwrap_or_default();
    let mut out = format!(
        "Drift {} in namespace {}\n  CloudProvisioned: {}\n  CloudResource:    {}\n  field:            {}\n  expected:         {}\n  actual:           {}\n  phase:            {}\n  detected:         {since}\n  severity:         {}\n",
        d.name_any(),
        d.namespace().unwrap_or_default(),
        d.spec.provisioned_ref.name,
        d.spec.resource_ref.name,
        d.spec.field,
        render_value(&status.expected),
        render_value(&status.actual),
        status.phase,
        d.labels().get(LABEL_SEVERITY).map(String::as_str).unwrap_or("-"),
    );
    if let Some(by) = &status.resolved_by {
        out.push_str(&format!("  resolved by:      {by}\n"));
    }
    if let Some(message) = &status.message {
        out.push_str(&format!("  message:          {message}\n"));
    }
    out
}

fn history(status: &crate::api::DriftStatus) -> String {
    if status.history.is_empty() {
        return "\nHistory: this is the field's first episode\n".into();
    }
    let mut out = "\nHistory (newest first):\n".to_owned();
    for e in &status.history {
        let at = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().map(|t| t.0.to_string()).unwrap_or_else(|| "-".into())
        };
        out.push_str(&format!(
            "  {:<12} expected {} actual {}, detected {}, resolved {} by {}\n",
            e.phase.as_str(),
            render_value(&e.expected),
            render_value(&e.actual),
            at(&e.detected_time),
            at(&e.resolved_time),
            e.resolved_by.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// The Drift's own Events, and its CloudProvisioned's about this field.
async fn events(s: &Session, d: &Drift) -> Result<String, PluginError> {
    let namespace = d.namespace().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(s.client.clone(), &namespace);
    let mut found = Vec::new();
    for (kind, name) in [("Drift", d.name_any()), ("CloudProvisioned", d.spec.provisioned_ref.name.clone())] {
        let params = ListParams::default().fields(&format!("involvedObject.kind={kind},involvedObject.name={name}"));
        let list =
            api.list(&params).await.map_err(|e| api_error("list", "events", format!("in namespace {namespace}"), e))?;
        // The CloudProvisioned's Events about this field name its Drift as their related object.
        let drift = d.name_any();
        let about = |e: &Event| e.related.as_ref().and_then(|r| r.name.as_deref()) == Some(drift.as_str());
        found.extend(list.items.into_iter().filter(|e| kind == "Drift" || about(e)));
    }
    found.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0).or(e.last_timestamp.as_ref().map(|t| t.0)));
    if found.is_empty() {
        return Ok("\nEvents: none kept (the API server keeps Events for an hour by default)\n".into());
    }
    let mut out = "\nEvents:\n".to_owned();
    for e in found {
        out.push_str(&format!(
            "  {:<8} {:<18} {}\n",
            e.type_.unwrap_or_default(),
            e.reason.unwrap_or_default(),
            e.message.unwrap_or_default()
        ));
    }
    Ok(out)
}

fn accept_would(d: &Drift, status: &crate::api::DriftStatus, mode: Option<&str>) -> String {
    if !matches!(status.phase, DriftPhase::Open | DriftPhase::Snoozed | DriftPhase::RevertFailed) {
        return format!("\nAccept would: nothing; the drift is {}\n", status.phase);
    }
    let value = render_value(&status.actual);
    let (p, field) = (&d.spec.provisioned_ref.name, &d.spec.field);
    let how = match mode {
        Some("spec") => format!("write {value} into spec.desired.{field} of CloudProvisioned {p} (accept mode spec)"),
        Some("overlay") => format!(
            "hold {value} for {field} in status.pendingGitChanges of CloudProvisioned {p} until Git has it (accept mode overlay)"
        ),
        _ => format!(
            "adopt {value} as the desired {field} of CloudProvisioned {p}: in its spec, or (when a GitOps tool applies it, accept mode auto) in status.pendingGitChanges until Git has it"
        ),
    };
    format!("\nAccept would: {how}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DriftSpec, DriftStatus, ProviderCall, ProvisionedRef, ResourceRef};

    fn with_plan(path: &str) -> Drift {
        let spec = DriftSpec {
            provisioned_ref: ProvisionedRef { name: "web-1".into() },
            resource_ref: ResourceRef { name: "r".into() },
            field: "name".into(),
        };
        let mut d = Drift::new("web-1-name-1", spec);
        let call = ProviderCall {
            method: "POST".into(),
            path: path.into(),
            body: json!({"type": "rename", "name": "web-1"}),
            description: "rename the droplet to web-1".into(),
            waits_for_action: true,
        };
        let digest = crate::revert::digest(std::slice::from_ref(&call));
        d.status =
            Some(DriftStatus { revert_plan: vec![call], revert_plan_digest: Some(digest), ..Default::default() });
        d
    }

    #[test]
    fn a_revert_approval_carries_the_digest_computed_from_the_plan() {
        let d = with_plan("/v2/droplets/1/actions");
        let digest = crate::revert::digest(&d.status.as_ref().unwrap().revert_plan);
        assert_eq!(approval_digest(&d, None), Ok(digest.clone()));
        assert_eq!(approval_digest(&d, Some(&digest)), Ok(digest.clone()));
        let changed = approval_digest(&d, Some("0123456789abcdef")).unwrap_err();
        assert!(changed.contains("the plan changed since it was reviewed") && changed.contains(&digest), "{changed}");
        // A digest that does not match the plan beside it is not passed on.
        let mut odd = with_plan("/v2/droplets/1/actions");
        odd.status.as_mut().unwrap().revert_plan[0].path = "@127.0.0.1:9/x".into();
        assert!(approval_digest(&odd, None).unwrap_err().contains("is not the digest of status.revertPlan"));
        let mut none = with_plan("/v2/droplets/1/actions");
        none.status.as_mut().unwrap().revert_plan.clear();
        assert!(approval_digest(&none, None).unwrap_err().starts_with("cannot revert web-1-name-1"));
    }
}
