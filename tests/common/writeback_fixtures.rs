//! What the Git write-back tests share: settings for a loopback server and
//! one accepted change (size_slug of team-a/web-1).

use arcadia_drift::writeback::commit::Change;
use arcadia_drift::writeback::git::GitSettings;
use serde_json::json;
use std::time::Duration;

/// Settings for a server on loopback (plain http allowed), with an optional review-branch template.
pub fn settings(push_branch: Option<&str>) -> GitSettings {
    GitSettings {
        author_name: "arcadia-drift".into(),
        author_email: "arcadia-drift@localhost".into(),
        push_branch: push_branch.map(str::to_owned),
        allow_insecure_http: true,
        max_attempts: 3,
        timeout: Duration::from_secs(30),
        max_fetch_bytes: GitSettings::MAX_FETCH_BYTES,
    }
}

/// An accept of the live `s-2vcpu-4gb` over `s-1vcpu-1gb`, with an accept id of its own.
pub fn change() -> Change {
    Change {
        namespace: "team-a".into(),
        name: "web-1".into(),
        field: "size_slug".into(),
        value: json!("s-2vcpu-4gb"),
        spec_value: json!("s-1vcpu-1gb"),
        drift: "web-1-size-slug-0d3f2a1b".into(),
        accepted_by: "alice".into(),
        accept_id: format!("{}/2026-11-30T02:00:00Z", super::unique_suffix()),
    }
}
