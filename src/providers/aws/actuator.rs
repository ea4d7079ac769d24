//! AWS as an [`Actuator`]. Most EC2 writes are done on the answer; stopping
//! or starting an instance and modifying a volume go on afterwards, and
//! their handle says what to watch for: `<region>/<instance>/stopped`,
//! `<region>/<instance>/running` or `<region>/<volume>/size/<GiB>`. The
//! instance's state and the volume's modifications show what is in progress
//! and what a call whose answer was lost started.

use super::calls::Ec2Call;
use super::model::Rule;
use super::client::{RegionClient, classify, refused};
use super::{Aws, AwsType, PLANNER};
use crate::api::ProviderCall;
use crate::providers::contract::{Actuator, ErrorClass, Handle, Planner, Progress, ProviderError, Target};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{AttributeValue, Tag, VolumeModificationState};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use futures::FutureExt;
use futures::future::BoxFuture;

/// One modification of a volume: (target size in GiB, state, start time in Unix seconds).
type Modification = (i32, VolumeModificationState, i64);

/// What a handle waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Awaited {
    /// The instance reaches this state (`stopped` or `running`).
    Instance { region: String, id: String, state: String },
    /// The volume's modification to this size ends.
    Volume { region: String, id: String, size: i32 },
}

impl Awaited {
    fn handle(&self) -> Handle {
        match self {
            Awaited::Instance { region, id, state } => Handle(format!("{region}/{id}/{state}")),
            Awaited::Volume { region, id, size } => Handle(format!("{region}/{id}/size/{size}")),
        }
    }

    fn parse(handle: &Handle) -> Result<Awaited, ProviderError> {
        let parts: Vec<&str> = handle.0.split('/').collect();
        match parts.as_slice() {
            [region, id, state @ ("stopped" | "running")] => {
                Ok(Awaited::Instance { region: (*region).into(), id: (*id).into(), state: (*state).into() })
            }
            [region, id, "size", size] if size.parse::<i32>().is_ok() => {
                Ok(Awaited::Volume { region: (*region).into(), id: (*id).into(), size: size.parse().unwrap_or_default() })
            }
            _ => Err(refused(&format!("{:?} is not an AWS handle arcadia-drift made", handle.0))),
        }
    }

    /// What `call` starts, if it goes on after the answer.
    fn of(call: &Ec2Call) -> Option<Awaited> {
        let instance = |region: &str, id: &str, state: &str| Awaited::Instance { region: region.into(), id: id.into(), state: state.into() };
        match call {
            Ec2Call::StopInstances { region, instance_id } => Some(instance(region, instance_id, "stopped")),
            Ec2Call::StartInstances { region, instance_id } => Some(instance(region, instance_id, "running")),
            Ec2Call::ModifyVolume { region, volume_id, size } => Some(Awaited::Volume { region: region.clone(), id: volume_id.clone(), size: *size }),
            _ => None,
        }
    }
}

/// The type an EC2 id names, by its prefix.
fn type_of(id: &str) -> Option<AwsType> {
    match id.split_once('-')?.0 {
        "i" => Some(AwsType::Instance),
        "vol" => Some(AwsType::Volume),
        "sg" => Some(AwsType::SecurityGroup),
        _ => None,
    }
}

/// Where an instance on its way to `want` stands, by its state now.
fn instance_progress(want: &str, state: &str) -> Progress {
    match (want, state) {
        (w, s) if w == s => Progress::Ended { succeeded: true },
        (_, "terminated" | "shutting-down") => Progress::Ended { succeeded: false },
        _ => Progress::Running,
    }
}

fn volume_progress(state: &VolumeModificationState) -> Progress {
    match state {
        VolumeModificationState::Modifying => Progress::Running,
        // The new size can be used while the volume is optimized.
        VolumeModificationState::Optimizing | VolumeModificationState::Completed => Progress::Ended { succeeded: true },
        _ => Progress::Ended { succeeded: false },
    }
}

impl Aws {
    /// An instance's state name; `None` when EC2 no longer knows it.
    async fn instance_state(&self, r: &RegionClient, id: &str) -> Result<Option<String>, ProviderError> {
        self.ec2.permit().await;
        match r.reads.describe_instances().instance_ids(id).send().await {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|res| res.instances())
                .find_map(|i| Some(i.state()?.name()?.as_str().to_owned()))),
            Err(e) if super::client::not_found(&e) => Ok(None),
            Err(e) => Err(classify(e, &format!("DescribeInstances {id} in {}", r.name), false)),
        }
    }

    /// A volume's modifications: (target size, state, start time in Unix
    /// seconds); `None` when EC2 no longer knows the volume.
    async fn modifications(&self, r: &RegionClient, id: &str) -> Result<Option<Vec<Modification>>, ProviderError> {
        self.ec2.permit().await;
        match r.reads.describe_volumes_modifications().volume_ids(id).send().await {
            Ok(out) => Ok(Some(
                out.volumes_modifications()
                    .iter()
                    .filter_map(|m| {
                        let started = m.start_time().map_or(0, |t| t.secs());
                        Some((m.target_size()?, m.modification_state()?.clone(), started))
                    })
                    .collect(),
            )),
            Err(e) if super::client::not_found(&e) => Ok(None),
            Err(e) => Err(classify(e, &format!("DescribeVolumesModifications {id} in {}", r.name), false)),
        }
    }

    async fn progress_of(&self, awaited: &Awaited) -> Result<Option<Progress>, ProviderError> {
        match awaited {
            Awaited::Instance { region, id, state } => {
                let now = self.instance_state(self.ec2.region(region)?, id).await?;
                Ok(now.map(|now| instance_progress(state, &now)))
            }
            Awaited::Volume { region, id, size } => {
                let Some(all) = self.modifications(self.ec2.region(region)?, id).await? else { return Ok(None) };
                let newest = all.iter().filter(|(s, _, _)| s == size).max_by_key(|(_, _, t)| *t);
                // EC2 may list a modification a little after it accepted it: not shown yet is still running.
                Ok(Some(newest.map_or(Progress::Running, |(_, state, _)| volume_progress(state))))
            }
        }
    }

    /// The region a call writes in, refused unless it is where the resource
    /// lives: a recorded call never reaches another region's namesake.
    async fn home_checked(&self, call: &Ec2Call) -> Result<&RegionClient, ProviderError> {
        let named = self.ec2.region(call.region())?;
        let (id, _) = call.resource();
        let Some(t) = type_of(id) else { return Err(refused(&format!("{id:?} is no EC2 id arcadia-drift writes to"))) };
        match self.home_of(t, id).await? {
            Some(home) if home.name != named.name => Err(refused(&format!(
                "EC2 {} names {id} in {}, and it lives in {}: nothing was sent",
                call.action(),
                named.name,
                home.name
            ))),
            _ => Ok(named),
        }
    }

    /// Sends one write on the region's write client (never retried there).
    async fn send_call(&self, call: &Ec2Call, fence: &(dyn Fn() -> bool + Sync)) -> Result<(), ProviderError> {
        let r = self.home_checked(call).await?;
        self.ec2.permit().await;
        if !fence() {
            return Err(ProviderError {
                class: ErrorClass::Permanent,
                kind: "fenced",
                fenced: true,
                message: format!("EC2 {} was not sent: this replica no longer leads", call.action()),
            });
        }
        let request = format!("{} {} in {}", call.action(), call.resource().0, r.name);
        let w = &r.writes;
        // A rule authorized or revoked already is the effect wanted: a step
        // sent again after a lost answer meets exactly that.
        const THERE: &[&str] = &["InvalidPermission.Duplicate"];
        const GONE: &[&str] = &["InvalidPermission.NotFound"];
        match call {
            Ec2Call::CreateTags { resource_id, tags, .. } => {
                let tags = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
                written(w.create_tags().resources(resource_id).set_tags(Some(tags)).send().await, &request, &[])
            }
            Ec2Call::DeleteTags { resource_id, keys, .. } => {
                let tags = keys.iter().map(|k| Tag::builder().key(k).build()).collect();
                written(w.delete_tags().resources(resource_id).set_tags(Some(tags)).send().await, &request, &[])
            }
            Ec2Call::StopInstances { instance_id, .. } => {
                written(w.stop_instances().instance_ids(instance_id).send().await, &request, &[])
            }
            Ec2Call::StartInstances { instance_id, .. } => {
                written(w.start_instances().instance_ids(instance_id).send().await, &request, &[])
            }
            Ec2Call::ModifyInstanceAttribute { instance_id, instance_type, .. } => {
                let value = AttributeValue::builder().value(instance_type).build();
                let modify = w.modify_instance_attribute().instance_id(instance_id).instance_type(value);
                written(modify.send().await, &request, &[])
            }
            Ec2Call::ModifyVolume { volume_id, size, .. } => {
                written(w.modify_volume().volume_id(volume_id).size(*size).send().await, &request, &[])
            }
            Ec2Call::AuthorizeSecurityGroupIngress { group_id, rule, .. } => {
                let send = w.authorize_security_group_ingress().group_id(group_id).ip_permissions(rule.to_permission());
                written(send.send().await, &request, THERE)
            }
            Ec2Call::AuthorizeSecurityGroupEgress { group_id, rule, .. } => {
                let send = w.authorize_security_group_egress().group_id(group_id).ip_permissions(rule.to_permission());
                written(send.send().await, &request, THERE)
            }
            Ec2Call::RevokeSecurityGroupIngress { group_id, rule, .. } => {
                let send = w.revoke_security_group_ingress().group_id(group_id).ip_permissions(rule.to_permission());
                let out = send.send().await;
                let unmatched = out.as_ref().is_ok_and(|o| !o.unknown_ip_permissions().is_empty());
                written(out, &request, GONE)?;
                if unmatched { self.revoked(r, group_id, rule, "ingress").await } else { Ok(()) }
            }
            Ec2Call::RevokeSecurityGroupEgress { group_id, rule, .. } => {
                let send = w.revoke_security_group_egress().group_id(group_id).ip_permissions(rule.to_permission());
                let out = send.send().await;
                let unmatched = out.as_ref().is_ok_and(|o| !o.unknown_ip_permissions().is_empty());
                written(out, &request, GONE)?;
                if unmatched { self.revoked(r, group_id, rule, "egress").await } else { Ok(()) }
            }
        }
    }

    /// EC2 answered a revoke with rules it did not match: done when the rule
    /// is gone (revoked before, as when a step is sent again), refused when
    /// it is still there (a rule naming another account's group, say).
    async fn revoked(&self, r: &RegionClient, group: &str, rule: &Rule, field: &str) -> Result<(), ProviderError> {
        let live = self.get_in(r, AwsType::SecurityGroup, group).await?;
        let rules = live.and_then(|g| g.status.attrs?.get(field)).unwrap_or_default();
        let rule = serde_json::to_value(rule).unwrap_or_default();
        if rules.as_array().is_some_and(|all| all.contains(&rule)) {
            return Err(refused(&format!(
                "EC2 matched no {field} rule {rule} of {group} to revoke, and it is still there; revoke it by hand"
            )));
        }
        Ok(())
    }
}

/// A write's outcome: done, done already (EC2 answered one of `already`), or what its failure means.
fn written<T, E>(result: Result<T, SdkError<E, HttpResponse>>, request: &str, already: &[&str]) -> Result<(), ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.as_service_error().and_then(|s| s.code()).is_some_and(|c| already.contains(&c)) => Ok(()),
        Err(e) => Err(classify(e, request, true)),
    }
}

impl Actuator for Aws {
    fn planner(&self) -> &'static dyn Planner {
        &PLANNER
    }

    fn send<'a>(
        &'a self,
        call: &'a ProviderCall,
        fence: &'a (dyn Fn() -> bool + Sync),
    ) -> BoxFuture<'a, Result<Option<Handle>, ProviderError>> {
        async move {
            let call = Ec2Call::parse(call).map_err(|why| refused(&why.to_string()))?;
            self.send_call(&call, fence).await?;
            Ok(Awaited::of(&call).map(|a| a.handle()))
        }
        .boxed()
    }

    fn progress<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<Option<Progress>, ProviderError>> {
        async move { self.progress_of(&Awaited::parse(handle)?).await }.boxed()
    }

    fn busy<'a>(&'a self, target: Target<'a>) -> BoxFuture<'a, Result<Option<String>, ProviderError>> {
        async move {
            let Some(t) = AwsType::parse(target.type_) else { return Ok(None) };
            let Some(r) = self.home_of(t, target.id).await? else { return Ok(None) };
            let id = target.id;
            match t {
                AwsType::Instance => {
                    let state = self.instance_state(r, id).await?;
                    let moving = state.filter(|s| matches!(s.as_str(), "pending" | "stopping" | "shutting-down"));
                    Ok(moving.map(|s| format!("the instance {id} is {s}")))
                }
                AwsType::Volume => {
                    let all = self.modifications(r, id).await?.unwrap_or_default();
                    let modifying = all.into_iter().find(|(_, s, _)| *s == VolumeModificationState::Modifying);
                    Ok(modifying.map(|(size, _, _)| format!("the volume {id} is being modified to {size} GiB")))
                }
                AwsType::SecurityGroup => Ok(None),
            }
        }
        .boxed()
    }

    fn started_since<'a>(&'a self, _target: Target<'a>, call: &'a ProviderCall, since: i64) -> BoxFuture<'a, Result<Option<Handle>, ProviderError>> {
        async move {
            let call = Ec2Call::parse(call).map_err(|why| refused(&why.to_string()))?;
            let Some(awaited) = Awaited::of(&call) else { return Ok(None) };
            let started = match &awaited {
                Awaited::Instance { region, id, state } => {
                    let now = self.instance_state(self.ec2.region(region)?, id).await?.unwrap_or_default();
                    let on_its_way = if state == "stopped" { ["stopping", "stopped"] } else { ["pending", "running"] };
                    on_its_way.contains(&now.as_str())
                }
                Awaited::Volume { region, id, size } => {
                    let all = self.modifications(self.ec2.region(region)?, id).await?.unwrap_or_default();
                    all.iter().any(|(s, _, t)| s == size && *t >= since)
                }
            };
            Ok(started.then(|| awaited.handle()))
        }
        .boxed()
    }

    fn answer_window(&self) -> std::time::Duration {
        self.ec2.config.timeout + std::time::Duration::from_secs(10)
    }

    fn describe(&self, handle: &Handle) -> String {
        match Awaited::parse(handle) {
            Ok(Awaited::Instance { id, state, .. }) => format!("the EC2 instance {id} becoming {state}"),
            Ok(Awaited::Volume { id, size, .. }) => format!("the EBS volume {id} growing to {size} GiB"),
            Err(_) => format!("AWS work {:?}", handle.0),
        }
    }

    fn requests_sent(&self) -> u64 {
        self.ec2.requests_sent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_says_what_it_waits_for_and_reads_back() {
        let stop = Awaited::Instance { region: "us-east-1".into(), id: "i-1".into(), state: "stopped".into() };
        assert_eq!(stop.handle(), Handle("us-east-1/i-1/stopped".into()));
        assert_eq!(Awaited::parse(&stop.handle()), Ok(stop));
        let grow = Awaited::Volume { region: "eu-west-1".into(), id: "vol-1".into(), size: 40 };
        assert_eq!(Awaited::parse(&Handle("eu-west-1/vol-1/size/40".into())), Ok(grow));
        for forged in ["us-east-1/i-1/terminated", "i-1", "us-east-1/vol-1/size/big", "3164444"] {
            let why = Awaited::parse(&Handle(forged.into())).unwrap_err();
            assert_eq!(why.class, ErrorClass::Permanent, "{forged}");
        }
    }

    #[test]
    fn an_instance_on_its_way_runs_until_it_arrives_or_is_gone() {
        assert_eq!(instance_progress("stopped", "stopping"), Progress::Running);
        assert_eq!(instance_progress("stopped", "stopped"), Progress::Ended { succeeded: true });
        assert_eq!(instance_progress("running", "pending"), Progress::Running);
        assert_eq!(instance_progress("running", "terminated"), Progress::Ended { succeeded: false });
        assert_eq!(volume_progress(&VolumeModificationState::Optimizing), Progress::Ended { succeeded: true });
        assert_eq!(volume_progress(&VolumeModificationState::Failed), Progress::Ended { succeeded: false });
    }
}
