//! The pure half of an inventory sync: from one complete listing of one
//! resource type and the CloudResources that already mirror it, decide what to
//! write and which objects the listing no longer contains.

use crate::api::{CloudResource, CloudResourceSpec, CloudResourceStatus, LABEL_SOURCE};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub use crate::providers::contract::LiveResource;

/// `<provider>-<type>-<id>`, made a valid object name: lowercase, and `_`
/// (which the API's type names use, but object names may not) becomes `-`.
pub fn resource_name(provider: &str, type_: &str, id: &str) -> String {
    format!("{provider}-{type_}-{id}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c.to_ascii_lowercase() } else { '-' })
        .collect()
}

#[derive(Debug, PartialEq)]
pub struct Write {
    pub name: String,
    pub spec: CloudResourceSpec,
    pub status: CloudResourceStatus,
}

#[derive(Debug, Default, PartialEq)]
pub struct SyncPlan {
    pub writes: Vec<Write>,
    /// Mirrored objects the listing no longer contains: to be confirmed gone.
    pub absent: Vec<String>,
}

/// Plans the writes for one type. An unchanged resource is rewritten only to
/// refresh its `syncedTime` once it is older than `refresh_after`, so a quiet
/// account costs few writes while the controller still sees fresh inventory.
pub fn plan_sync(
    source: &str,
    provider: &str,
    type_: &str,
    listed: Vec<LiveResource>,
    existing: &[Arc<CloudResource>],
    now: &Time,
    refresh_after: Duration,
) -> SyncPlan {
    // Keyed by name: a sync is linear in the listing, not listing × mirrored.
    let mirrored: HashMap<String, &Arc<CloudResource>> = existing
        .iter()
        .filter(|r| r.spec.provider == provider && r.spec.type_ == type_)
        .filter(|r| r.labels().get(LABEL_SOURCE).map(String::as_str) == Some(source))
        .map(|r| (r.name_any(), r))
        .collect();
    let mut plan = SyncPlan::default();
    let mut listed_names = HashSet::with_capacity(listed.len());
    for o in listed {
        let name = resource_name(provider, o.type_, &o.id);
        listed_names.insert(name.clone());
        let current = mirrored.get(&name).and_then(|r| r.status.as_ref());
        let mut status = o.status;
        status.missing = false;
        status.synced_time = current.and_then(|c| c.synced_time.clone());
        let unchanged = current == Some(&status);
        let fresh = status
            .synced_time
            .as_ref()
            .is_some_and(|t| now.0.as_second() - t.0.as_second() < refresh_after.as_secs() as i64);
        if unchanged && fresh {
            continue;
        }
        status.synced_time = Some(now.clone());
        plan.writes.push(Write {
            name,
            spec: CloudResourceSpec { provider: provider.into(), type_: o.type_.into(), region: o.region, id: o.id },
            status,
        });
    }
    plan.absent = mirrored
        .iter()
        .filter(|(_, r)| !r.status.as_ref().is_some_and(|s| s.missing))
        .map(|(name, _)| name.clone())
        .filter(|n| !listed_names.contains(n))
        .collect();
    plan.absent.sort();
    plan
}

/// The `missing` CloudResources of this source that no CloudProvisioned
/// names and that have been missing (since their last `syncedTime`) longer
/// than `retention`, by name. The cache holds no uid or resourceVersion, and
/// may be behind: each is read again and deleted on what
/// [`deletion_preconditions`] says of that copy.
pub fn collectable(
    source: &str,
    existing: &[Arc<CloudResource>],
    referenced: &HashSet<String>,
    now: &Time,
    retention: Duration,
) -> Vec<String> {
    let mut out: Vec<String> = existing
        .iter()
        .filter(|r| missing_long_enough(source, r, now, retention))
        .map(|r| r.name_any())
        .filter(|name| !referenced.contains(name))
        .collect();
    out.sort();
    out
}

/// The uid and resourceVersion to delete a freshly read CloudResource on,
/// when it is still this source's and still missing long enough: a resource
/// recreated, or seen again, since the cache showed it stays.
pub fn deletion_preconditions(
    source: &str,
    fresh: &CloudResource,
    now: &Time,
    retention: Duration,
) -> Option<(String, String)> {
    if !missing_long_enough(source, fresh, now, retention) {
        return None;
    }
    Some((fresh.metadata.uid.clone()?, fresh.metadata.resource_version.clone()?))
}

fn missing_long_enough(source: &str, r: &CloudResource, now: &Time, retention: Duration) -> bool {
    let old_enough = |t: &Time| now.0.as_second() - t.0.as_second() > retention.as_secs() as i64;
    r.labels().get(LABEL_SOURCE).map(String::as_str) == Some(source)
        && r.status.as_ref().is_some_and(|s| s.missing && s.synced_time.as_ref().is_some_and(old_enough))
}

/// A reading asked for at `read` is older than the newest one written for
/// the same resource: writing it would put an older state over a newer one.
pub fn superseded(read: &k8s_openapi::jiff::Timestamp, newest: Option<&k8s_openapi::jiff::Timestamp>) -> bool {
    newest.is_some_and(|newest| read < newest)
}

/// The status that marks a mirrored resource gone, keeping its last known state.
pub fn missing_status(r: &CloudResource, now: &Time) -> CloudResourceStatus {
    CloudResourceStatus { missing: true, synced_time: Some(now.clone()), ..r.status.clone().unwrap_or_default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + s).unwrap())
    }

    #[test]
    fn an_older_reading_never_replaces_a_newer_one() {
        let (listing_started, refreshed) = (at(10).0, at(11).0);
        assert!(superseded(&listing_started, Some(&refreshed)), "the listing answered after the refresh");
        assert!(!superseded(&refreshed, Some(&listing_started)));
        assert!(!superseded(&refreshed, Some(&refreshed)), "the same reading may be written again");
        assert!(!superseded(&listing_started, None), "nothing written yet");
    }

    fn observed(id: &str, size: &str) -> LiveResource {
        LiveResource {
            type_: "droplet",
            region: None,
            id: id.into(),
            status: CloudResourceStatus { size_slug: Some(size.into()), ..Default::default() },
        }
    }

    fn mirrored(id: &str, size: &str, synced: Time, missing: bool) -> Arc<CloudResource> {
        let mut r = CloudResource::new(
            &resource_name("digitalocean", "droplet", id),
            CloudResourceSpec { provider: "digitalocean".into(), type_: "droplet".into(), id: id.into(), region: None },
        );
        r.status = Some(CloudResourceStatus {
            size_slug: Some(size.into()),
            missing,
            synced_time: Some(synced),
            ..Default::default()
        });
        r.metadata.labels = Some([(LABEL_SOURCE.to_string(), "do".to_string())].into());
        Arc::new(r)
    }

    const REFRESH: Duration = Duration::from_secs(1800);

    #[test]
    fn a_missing_resource_nobody_names_is_collected_after_the_retention() {
        // As the controller caches them: no uid, no resourceVersion.
        let existing = [
            mirrored("1", "a", at(0), true),
            mirrored("2", "a", at(0), true),
            mirrored("3", "a", at(0), false),
            mirrored("4", "a", at(90_000), true),
        ];
        let referenced = HashSet::from(["digitalocean-droplet-2".to_string()]);
        let day = Duration::from_secs(86_400);
        let gone = collectable("do", &existing, &referenced, &at(90_000), day);
        assert_eq!(gone, ["digitalocean-droplet-1"], "referenced, live and recent stay");
        assert!(collectable("other-source", &existing, &referenced, &at(90_000), day).is_empty());
        assert!(collectable("do", &existing, &referenced, &at(80_000), day).is_empty(), "not a day yet");
    }

    #[test]
    fn a_candidate_is_deleted_on_its_fresh_copy_only_if_that_is_still_collectable() {
        let day = Duration::from_secs(86_400);
        let read = |r: Arc<CloudResource>| {
            let mut r = (*r).clone();
            r.metadata.uid = Some("u1".into());
            r.metadata.resource_version = Some("42".into());
            r
        };
        let fresh = read(mirrored("1", "a", at(0), true));
        assert_eq!(deletion_preconditions("do", &fresh, &at(90_000), day), Some(("u1".into(), "42".into())));
        let seen_again = read(mirrored("1", "a", at(89_000), false));
        assert_eq!(deletion_preconditions("do", &seen_again, &at(90_000), day), None, "seen since the cache showed it");
        assert_eq!(deletion_preconditions("other", &fresh, &at(90_000), day), None, "relabelled to another source");
        let mut no_uid = fresh.clone();
        no_uid.metadata.uid = None;
        assert_eq!(deletion_preconditions("do", &no_uid, &at(90_000), day), None, "never deleted unconditionally");
    }

    #[test]
    fn names_are_valid_object_names() {
        assert_eq!(resource_name("digitalocean", "droplet", "3164444"), "digitalocean-droplet-3164444");
        assert_eq!(
            resource_name("digitalocean", "load_balancer", "4DE7AC8B-495B"),
            "digitalocean-load-balancer-4de7ac8b-495b"
        );
    }

    #[test]
    fn writes_new_and_changed_and_skips_unchanged() {
        let existing = [mirrored("1", "a", at(0), false), mirrored("2", "b", at(0), false)];
        let plan = plan_sync(
            "do",
            "digitalocean",
            "droplet",
            vec![observed("1", "a"), observed("2", "changed"), observed("3", "new")],
            &existing,
            &at(60),
            REFRESH,
        );
        let names: Vec<_> = plan.writes.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["digitalocean-droplet-2", "digitalocean-droplet-3"]);
        assert!(plan.writes.iter().all(|w| w.status.synced_time == Some(at(60)) && !w.status.missing));
        assert!(plan.absent.is_empty());
    }

    #[test]
    fn unchanged_resources_are_refreshed_once_their_sync_time_ages() {
        let existing = [mirrored("1", "a", at(0), false)];
        let plan = plan_sync("do", "digitalocean", "droplet", vec![observed("1", "a")], &existing, &at(1801), REFRESH);
        assert_eq!(plan.writes.len(), 1);
    }

    #[test]
    fn absent_resources_are_listed_for_confirmation_and_missing_ones_reappear() {
        let existing =
            [mirrored("1", "a", at(0), false), mirrored("2", "b", at(0), true), mirrored("9", "z", at(0), false)];
        let plan = plan_sync("do", "digitalocean", "droplet", vec![observed("2", "b")], &existing, &at(10), REFRESH);
        assert_eq!(plan.absent, ["digitalocean-droplet-1", "digitalocean-droplet-9"]);
        assert_eq!(plan.writes.len(), 1, "a missing resource listed again is written back as present");
        assert!(!plan.writes[0].status.missing);
    }

    #[test]
    fn other_types_and_providers_are_not_touched() {
        let mut volume = (*mirrored("1", "a", at(0), false)).clone();
        volume.spec.type_ = "volume".into();
        let plan = plan_sync("do", "digitalocean", "droplet", vec![], &[Arc::new(volume)], &at(10), REFRESH);
        assert!(plan.absent.is_empty());
    }
}

#[test]
fn objects_of_another_source_are_never_absent() {
    let mut theirs = (*tests_support::mirrored_other_source()).clone();
    theirs.metadata.labels = Some([(LABEL_SOURCE.to_string(), "other-account".to_string())].into());
    let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap());
    let plan = plan_sync("do", "digitalocean", "droplet", vec![], &[Arc::new(theirs)], &now, Duration::from_secs(60));
    assert!(plan.absent.is_empty());
}

#[cfg(test)]
mod tests_support {
    use super::*;
    pub fn mirrored_other_source() -> Arc<CloudResource> {
        Arc::new(CloudResource::new(
            "digitalocean-droplet-1",
            CloudResourceSpec {
                provider: "digitalocean".into(),
                type_: "droplet".into(),
                id: "1".into(),
                region: None,
            },
        ))
    }
}
