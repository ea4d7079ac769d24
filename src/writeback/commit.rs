//! What a write-back commit says and where it goes: the message and its
//! trailer, the author and the review branch's name.
//! Pure.

use crate::detect::render_value;
use serde_json::Value;

/// The trailer that identifies an accept in Git history, so that a restarted
/// controller finds its own commit instead of making a second one.
pub const TRAILER: &str = "Arcadia-Drift-Accept";

/// One accepted value to commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub namespace: String,
    pub name: String,
    pub field: String,
    /// The accepted value.
    pub value: Value,
    /// The value the spec held when the accept was made.
    pub spec_value: Value,
    pub drift: String,
    pub accepted_by: String,
    /// `<drift uid>/<detectedTime>`: the accepted episode.
    pub accept_id: String,
}

impl Change {
    pub fn trailer(&self) -> String {
        format!("{TRAILER}: {}", self.accept_id)
    }

    pub fn message(&self) -> String {
        let (old, new) = (render_value(&self.spec_value), render_value(&self.value));
        format!(
            "arcadia-drift: accept {field} of {ns}/{name}: {old} -> {new}\n\n\
             CloudProvisioned {ns}/{name} drifted: spec.desired.{field} asked for {old}, the\n\
             live value is {new}. {who} accepted the live value (Drift {drift}).\n\n{trailer}\n",
            field = self.field,
            ns = self.namespace,
            name = self.name,
            who = self.accepted_by,
            drift = self.drift,
            trailer = self.trailer(),
        )
    }

    /// The review branch for this change from a template such as
    /// `arcadia-drift/{namespace}-{name}-{field}`, made a valid ref name.
    pub fn review_branch(&self, template: &str) -> String {
        let raw = template
            .replace("{namespace}", &self.namespace)
            .replace("{name}", &self.name)
            .replace("{field}", &self.field);
        let cleaned: String =
            raw.chars().map(|c| if c.is_ascii_alphanumeric() || "-_./".contains(c) { c } else { '-' }).collect();
        let parts: Vec<&str> = cleaned.split('/').map(|p| p.trim_matches('.')).filter(|p| !p.is_empty()).collect();
        parts.join("/").replace("..", ".")
    }
}

/// A commit author from `Name <email>`.
pub fn parse_author(text: &str) -> Result<(String, String), NotAnAuthor> {
    let not_one = || NotAnAuthor(text.to_owned());
    let (name, rest) = text.split_once('<').ok_or_else(not_one)?;
    let email = rest.strip_suffix('>').ok_or_else(not_one)?;
    let name = name.trim();
    if name.is_empty() || email.trim().is_empty() {
        return Err(not_one());
    }
    Ok((name.to_owned(), email.trim().to_owned()))
}

/// `--git-author` that is not `Name <email>`.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{0:?} is not of the form `Name <email>`")]
pub struct NotAnAuthor(String);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A change of `size_slug` of team-a/web-1 from s-1vcpu-1gb to s-2vcpu-4gb.
    pub(crate) fn change() -> Change {
        Change {
            namespace: "team-a".into(),
            name: "web-1".into(),
            field: "size_slug".into(),
            value: json!("s-2vcpu-4gb"),
            spec_value: json!("s-1vcpu-1gb"),
            drift: "web-1-size-slug-1a2b3c4d".into(),
            accepted_by: "alice".into(),
            accept_id: "8c1e/2026-11-30T02:00:00Z".into(),
        }
    }

    #[test]
    fn the_message_names_object_field_values_drift_actor_and_ends_with_the_trailer() {
        let message = change().message();
        assert!(message.starts_with("arcadia-drift: accept size_slug of team-a/web-1: s-1vcpu-1gb -> s-2vcpu-4gb\n\n"));
        assert!(message.contains("alice accepted the live value (Drift web-1-size-slug-1a2b3c4d)"));
        assert!(message.ends_with("\n\nArcadia-Drift-Accept: 8c1e/2026-11-30T02:00:00Z\n"), "{message}");
    }

    #[test]
    fn review_branches_are_valid_ref_names() {
        assert_eq!(
            change().review_branch("arcadia-drift/{namespace}-{name}-{field}"),
            "arcadia-drift/team-a-web-1-size_slug"
        );
        let odd = Change { field: "a b:c..d".into(), ..change() };
        assert_eq!(odd.review_branch("review//{field}/"), "review/a-b-c.d");
    }

    #[test]
    fn authors_are_checked() {
        assert_eq!(
            parse_author("arcadia-drift <arcadia-drift@localhost>"),
            Ok(("arcadia-drift".into(), "arcadia-drift@localhost".into()))
        );
        assert!(parse_author("nobody").is_err());
    }
}
