//! DigitalOcean as an [`Actuator`]: a call that starts an action answers
//! with its id, which is the handle; the action is read by id until it ends,
//! and a droplet's or a volume's own actions show what is in progress on it
//! and what a lost answer started.

use super::{DigitalOcean, DoType, PLANNER};
use crate::api::ProviderCall;
use crate::providers::contract::{Actuator, Handle, Planner, Progress, ProviderError, Target};
use futures::FutureExt;
use futures::future::BoxFuture;

/// Only droplets and volumes have actions of their own to wait on or adopt.
fn with_actions(type_: &str) -> Option<DoType> {
    DoType::parse(type_).filter(|t| matches!(t, DoType::Droplet | DoType::Volume))
}

fn action_id(handle: &Handle) -> Result<u64, ProviderError> {
    handle.0.parse().map_err(|_| ProviderError {
        class: crate::providers::contract::ErrorClass::Permanent,
        kind: "bad_handle",
        fenced: false,
        message: format!("{:?} is not a DigitalOcean action id", handle.0),
    })
}

impl Actuator for DigitalOcean {
    fn planner(&self) -> &'static dyn Planner {
        &PLANNER
    }

    fn send<'a>(
        &'a self,
        call: &'a ProviderCall,
        fence: &'a (dyn Fn() -> bool + Sync),
    ) -> BoxFuture<'a, Result<Option<Handle>, ProviderError>> {
        async move { Ok(self.call(call, fence).await?.map(Handle::from)) }.boxed()
    }

    fn progress<'a>(&'a self, handle: &'a Handle) -> BoxFuture<'a, Result<Option<Progress>, ProviderError>> {
        async move {
            let action = self.action(action_id(handle)?).await?;
            Ok(action.map(|a| match a.status.as_str() {
                "in-progress" => Progress::Running,
                status => Progress::Ended { succeeded: status == "completed" },
            }))
        }
        .boxed()
    }

    fn busy<'a>(&'a self, target: Target<'a>) -> BoxFuture<'a, Result<Option<String>, ProviderError>> {
        async move {
            let Some(t) = with_actions(target.type_) else { return Ok(None) };
            let actions = self.resource_actions(t, target.id).await?;
            Ok(actions
                .into_iter()
                .find(|a| a.status == "in-progress")
                .map(|a| format!("DigitalOcean action {} ({})", a.id, a.kind)))
        }
        .boxed()
    }

    fn started_since<'a>(
        &'a self,
        target: Target<'a>,
        call: &'a ProviderCall,
        since: i64,
    ) -> BoxFuture<'a, Result<Option<Handle>, ProviderError>> {
        async move {
            let Some(t) = with_actions(target.type_) else { return Ok(None) };
            // An action's type is the call's `type`; a volume's carries a suffix.
            let kind = call.body.get("type").and_then(|t| t.as_str()).unwrap_or_default();
            let started = |a: &super::feed::DoAction| {
                a.started_at
                    .as_deref()
                    .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .is_some_and(|t| t.as_second() >= since)
            };
            let actions = self.resource_actions(t, target.id).await?;
            let found = actions.iter().find(|a| (a.kind == kind || a.kind == format!("{kind}_volume")) && started(a));
            Ok(found.map(|a| Handle::from(a.id)))
        }
        .boxed()
    }

    fn answer_window(&self) -> std::time::Duration {
        // DigitalOcean may list an action a little after it answers for it.
        self.client.timeout() + std::time::Duration::from_secs(30)
    }

    fn describe(&self, handle: &Handle) -> String {
        format!("DigitalOcean action {}", handle.0)
    }

    fn requests_sent(&self) -> u64 {
        self.client.requests_sent()
    }
}
