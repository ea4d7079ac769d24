//! The pure half of the DigitalOcean actions feed: from the newest page of
//! `GET /v2/actions` and the position reached so far, decide which resources
//! to read again, where the position moves, and whether the page leaves a gap
//! that only a full listing can close. The account records every action
//! (resize, rename, power, snapshot, volume attach and resize, ...), so a
//! change is seen in one poll instead of one full sync.

use super::DoType;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// One DigitalOcean action, as `GET /v2/actions` lists it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DoAction {
    pub id: u64,
    /// `in-progress`, `completed` or `errored`.
    pub status: String,
    #[serde(default)]
    pub resource_id: Option<u64>,
    #[serde(default)]
    pub resource_type: String,
    /// `resize`, `power_on`, ... (the reverter matches its own calls by it).
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub started_at: Option<String>,
}

/// Where the feed stands: the newest action id read, and the actions seen in
/// progress (with the resource each acts on, when mirrored), read again until they end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    pub last_seen: Option<u64>,
    pub in_progress: BTreeMap<u64, Option<(DoType, String)>>,
}

/// What one poll decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedPlan {
    /// Resources to read again: `(type, id)`.
    pub refresh: BTreeSet<(DoType, String)>,
    /// Types whose actions may have scrolled past the page: list them whole.
    pub full_listing: BTreeSet<DoType>,
    pub position: Position,
}

/// Plans one poll. `page` is the newest page, in either order; `page_size`
/// tells whether it was full; `waited` are the actions in progress at the last
/// poll that have left the page, read one by one, and `gone` those of them the
/// API no longer knows (404): they are dropped, and their resource read
/// again. On the first poll (no position yet) nothing is read again: the feed
/// starts at the newest action, never re-reading history.
pub fn plan_poll(
    position: &Position,
    page: &[DoAction],
    (waited, gone): (&[DoAction], &[u64]),
    page_size: usize,
    mirrored: &[DoType],
) -> FeedPlan {
    let newest = page.iter().map(|a| a.id).max();
    let mut plan = FeedPlan::default();
    let resource_of = |a: &DoAction| Some((mirrored_type(&a.resource_type, mirrored)?, a.resource_id?.to_string()));
    let Some(last_seen) = position.last_seen else {
        plan.position.last_seen = newest;
        plan.position.in_progress =
            page.iter().filter(|a| a.status == "in-progress").map(|a| (a.id, resource_of(a))).collect();
        return plan;
    };
    let unseen: Vec<&DoAction> = page.iter().filter(|a| a.id > last_seen).collect();
    // A full page of nothing but new actions may have pushed older new ones
    // off it, of any type: every mirrored type is listed whole.
    if page.len() >= page_size && page.iter().all(|a| a.id > last_seen) {
        plan.full_listing.extend(mirrored.iter().copied());
    }
    let mut in_progress = position.in_progress.clone();
    let known = page.iter().chain(waited).filter(|a| a.id <= last_seen && position.in_progress.contains_key(&a.id));
    for action in unseen.iter().copied().chain(known) {
        let Some(resource) = resource_of(action) else {
            in_progress.remove(&action.id);
            continue;
        };
        if action.status == "in-progress" {
            in_progress.insert(action.id, Some(resource));
            continue;
        }
        in_progress.remove(&action.id);
        plan.refresh.insert(resource);
    }
    for id in gone {
        if let Some(Some(resource)) = in_progress.remove(id) {
            plan.refresh.insert(resource);
        }
    }
    plan.position = Position { last_seen: Some(newest.unwrap_or(last_seen).max(last_seen)), in_progress };
    plan
}

/// The actions in progress at the last poll that `page` no longer shows.
pub fn left_the_page(position: &Position, page: &[DoAction]) -> Vec<u64> {
    position.in_progress.keys().copied().filter(|id| !page.iter().any(|a| a.id == *id)).collect()
}

/// The mirrored type an action's `resource_type` names (`droplet`, `volume`, ...).
fn mirrored_type(resource_type: &str, mirrored: &[DoType]) -> Option<DoType> {
    DoType::parse(resource_type).filter(|t| mirrored.contains(t))
}

/// The position as one annotation value:
/// `<last seen>[;<in-progress id>[:<type>:<resource id>],...]`.
pub fn encode(position: &Position) -> String {
    let last = position.last_seen.map(|id| id.to_string()).unwrap_or_default();
    if position.in_progress.is_empty() {
        return last;
    }
    let waiting: Vec<String> = position
        .in_progress
        .iter()
        .map(|(id, resource)| match resource {
            Some((t, rid)) => format!("{id}:{}:{rid}", t.word()),
            None => id.to_string(),
        })
        .collect();
    format!("{last};{}", waiting.join(","))
}

/// Reads [`encode`]'s form (and the older one, ids only); anything unreadable
/// starts the feed afresh.
pub fn decode(text: &str) -> Position {
    let (last, waiting) = text.split_once(';').unwrap_or((text, ""));
    let entry = |item: &str| {
        let mut parts = item.trim().splitn(3, ':');
        let id = parts.next()?.parse().ok()?;
        let resource = match (parts.next().and_then(DoType::parse), parts.next()) {
            (Some(t), Some(rid)) if !rid.is_empty() => Some((t, rid.to_owned())),
            _ => None,
        };
        Some((id, resource))
    };
    Position { last_seen: last.trim().parse().ok(), in_progress: waiting.split(',').filter_map(entry).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: u64, status: &str, resource_id: u64, resource_type: &str) -> DoAction {
        DoAction {
            id,
            status: status.into(),
            resource_id: Some(resource_id),
            resource_type: resource_type.into(),
            ..Default::default()
        }
    }

    const TYPES: [DoType; 2] = [DoType::Droplet, DoType::Volume];

    #[test]
    fn the_first_poll_starts_at_the_newest_action_without_reading_history() {
        let page = [action(12, "completed", 1, "droplet"), action(11, "completed", 2, "droplet")];
        let plan = plan_poll(&Position::default(), &page, (&[], &[]), 50, &TYPES);
        assert!(plan.refresh.is_empty());
        assert_eq!(plan.position.last_seen, Some(12));
    }

    #[test]
    fn new_completed_actions_refresh_their_resources_in_either_order() {
        let position = Position { last_seen: Some(10), ..Default::default() };
        let newest_first = [
            action(13, "errored", 3, "volume"),
            action(12, "completed", 1, "droplet"),
            action(10, "completed", 9, "droplet"),
        ];
        let mut oldest_first = newest_first.clone();
        oldest_first.reverse();
        for page in [&newest_first[..], &oldest_first[..]] {
            let plan = plan_poll(&position, page, (&[], &[]), 50, &TYPES);
            let refresh: Vec<_> = plan.refresh.iter().cloned().collect();
            assert_eq!(refresh, [(DoType::Droplet, "1".to_string()), (DoType::Volume, "3".to_string())]);
            assert_eq!(plan.position.last_seen, Some(13));
            assert!(plan.full_listing.is_empty());
        }
    }

    #[test]
    fn an_action_in_progress_is_read_again_when_it_ends() {
        let start = Position { last_seen: Some(10), ..Default::default() };
        let running = plan_poll(
            &start,
            &[action(11, "in-progress", 5, "droplet"), action(10, "completed", 1, "droplet")],
            (&[], &[]),
            50,
            &TYPES,
        );
        assert!(running.refresh.is_empty());
        let droplet_5 = Some((DoType::Droplet, "5".to_string()));
        assert_eq!(running.position.in_progress, BTreeMap::from([(11, droplet_5.clone())]));
        let done = plan_poll(
            &running.position,
            &[action(11, "completed", 5, "droplet"), action(10, "completed", 1, "droplet")],
            (&[], &[]),
            50,
            &TYPES,
        );
        assert_eq!(done.refresh, BTreeSet::from([(DoType::Droplet, "5".to_string())]));
        assert!(done.position.in_progress.is_empty());
        // An action that scrolled off the page while in progress is read by itself.
        let newer: Vec<DoAction> = (20..22).map(|id| action(id, "completed", 7, "volume")).collect();
        assert_eq!(left_the_page(&running.position, &newer), [11]);
        let ended = plan_poll(&running.position, &newer, (&[action(11, "errored", 5, "droplet")], &[]), 50, &TYPES);
        assert!(ended.refresh.contains(&(DoType::Droplet, "5".to_string())));
        assert!(ended.position.in_progress.is_empty());
    }

    #[test]
    fn an_action_in_progress_that_the_api_forgets_is_dropped_and_its_resource_read_again() {
        let position = Position {
            last_seen: Some(11),
            in_progress: BTreeMap::from([(11, Some((DoType::Volume, "v-1".to_string())))]),
        };
        let newer: Vec<DoAction> = (20..22).map(|id| action(id, "completed", 7, "droplet")).collect();
        let plan = plan_poll(&position, &newer, (&[], &[11]), 50, &TYPES);
        assert!(plan.position.in_progress.is_empty(), "not waited on for ever");
        assert!(plan.refresh.contains(&(DoType::Volume, "v-1".to_string())));
    }

    #[test]
    fn a_full_page_of_new_actions_falls_back_to_full_listings_of_every_type() {
        let position = Position { last_seen: Some(1), ..Default::default() };
        // A burst of droplet actions may hide a volume resize behind it.
        let page: Vec<DoAction> = (100..102).map(|id| action(id, "completed", id, "droplet")).collect();
        let plan = plan_poll(&position, &page, (&[], &[]), 2, &TYPES);
        assert_eq!(plan.full_listing, BTreeSet::from(TYPES));
        let not_full = plan_poll(&position, &page, (&[], &[]), 50, &TYPES);
        assert!(not_full.full_listing.is_empty());
    }

    #[test]
    fn unmirrored_types_and_unreadable_positions_are_harmless() {
        let position = Position { last_seen: Some(1), ..Default::default() };
        let plan = plan_poll(&position, &[action(2, "completed", 7, "image")], (&[], &[]), 50, &TYPES);
        assert!(plan.refresh.is_empty());
        let p = Position {
            last_seen: Some(42),
            in_progress: BTreeMap::from([(43, None), (44, Some((DoType::Volume, "v-1".to_string())))]),
        };
        assert_eq!(decode(&encode(&p)), p);
        // The wire form is pinned: positions saved by a running release must read back.
        assert_eq!(encode(&p), "42;43,44:volume:v-1");
        assert_eq!(decode("42;43,44").in_progress.keys().copied().collect::<Vec<_>>(), [43, 44], "the older form");
        assert_eq!(decode("garbage"), Position::default());
    }
}
