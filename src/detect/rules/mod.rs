//! Comparison rules beyond loose equality, for the noise a real account makes:
//! ignore rules (a whole field, JSON-pointer paths inside a value with `*` for
//! any list index, or list members matching globs) and the `contains` match
//! mode (the live list must include every desired member; extra ones are not
//! drift). A field with no rule compares exactly as [`super::detect`] does.

use super::{FieldDrift, LiveView, loosely_equal, observed_equal};
use serde_json::Value;

/// How a field's values compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatchMode {
    /// Loose equality (lists as sets).
    #[default]
    Exact,
    /// The live list includes every desired member.
    Contains,
}

/// One ignore rule, borrowed from wherever it is declared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IgnoreRule<'a> {
    /// Names the rule in counts and messages, e.g. `spec.ignore[0]` or `DriftPolicy/doks/ignore[1]`.
    pub id: &'a str,
    pub field: &'a str,
    /// JSON pointers into the field's value; `*` matches any list index or key.
    pub paths: &'a [String],
    /// Globs (`*` any run of characters) of list members to leave out.
    pub values: &'a [String],
}

impl IgnoreRule<'_> {
    /// A rule with neither paths nor values ignores the whole field.
    pub fn whole_field(&self) -> bool {
        self.paths.is_empty() && self.values.is_empty()
    }
}

/// The rules that apply to one field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldRules<'a> {
    pub ignore: Vec<IgnoreRule<'a>>,
    pub mode: MatchMode,
}

impl FieldRules<'_> {
    /// No rule at all: the field compares by loose equality alone.
    pub fn is_plain(&self) -> bool {
        self.ignore.is_empty() && self.mode == MatchMode::Exact
    }
}

/// What comparing one field under its rules found.
#[derive(Clone, Debug, PartialEq)]
pub enum Compared {
    InSync,
    Drifted(FieldDrift),
    /// In sync only because of these rules: the raw values differ.
    Ignored(Vec<String>),
}

/// Compares one desired field with the live resource under `rules`.
pub fn compare_field(field: &str, expected: &Value, live: &LiveView<'_>, rules: &FieldRules<'_>) -> Compared {
    let observed = live.resolve(field);
    if rules.is_plain() {
        return if observed_equal(expected, &observed) {
            Compared::InSync
        } else {
            Compared::Drifted(FieldDrift {
                field: field.into(),
                expected: expected.clone(),
                actual: observed.to_value(),
            })
        };
    }
    let actual = observed.to_value();
    let raw_equal = matches(expected, &actual, rules.mode);
    if let Some(whole) = rules.ignore.iter().find(|r| r.whole_field()) {
        return if raw_equal { Compared::InSync } else { Compared::Ignored(vec![whole.id.to_owned()]) };
    }
    let (mut want, mut have) = (expected.clone(), actual.clone());
    let mut applied = Vec::new();
    for rule in &rules.ignore {
        let before = (want.clone(), have.clone());
        apply(rule, &mut want);
        apply(rule, &mut have);
        if (&want, &have) != (&before.0, &before.1) {
            applied.push(rule.id.to_owned());
        }
    }
    match (raw_equal, matches(&want, &have, rules.mode)) {
        (true, _) => Compared::InSync,
        (false, true) => Compared::Ignored(applied),
        (false, false) => Compared::Drifted(FieldDrift { field: field.into(), expected: expected.clone(), actual }),
    }
}

fn matches(expected: &Value, actual: &Value, mode: MatchMode) -> bool {
    match (mode, expected, actual) {
        (MatchMode::Contains, Value::Array(want), Value::Array(have)) => {
            want.iter().all(|w| have.iter().any(|h| loosely_equal(w, h)))
        }
        _ => loosely_equal(expected, actual),
    }
}

/// Removes what `rule` ignores from one value (desired or live alike).
fn apply(rule: &IgnoreRule<'_>, value: &mut Value) {
    if rule.paths.is_empty() {
        filter_members(value, rule.values);
        return;
    }
    for path in rule.paths {
        let tokens: Vec<String> = path.split('/').skip(1).map(unescape).collect();
        if rule.values.is_empty() {
            remove_at(value, &tokens);
        } else {
            visit_at(value, &tokens, &mut |list| filter_members(list, rule.values));
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Removes every location `tokens` (with `*` wildcards) points at.
fn remove_at(value: &mut Value, tokens: &[String]) {
    let Some((last, parents)) = tokens.split_last() else { return };
    visit_at(value, parents, &mut |parent| match parent {
        Value::Object(map) if last == "*" => map.clear(),
        Value::Object(map) => {
            map.remove(last.as_str());
        }
        // Blank a list item rather than remove it, so the other indexes keep their meaning.
        Value::Array(items) if last == "*" => items.iter_mut().for_each(|i| *i = Value::Null),
        Value::Array(items) => {
            if let Some(item) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *item = Value::Null;
            }
        }
        _ => {}
    });
}

/// Calls `f` on every value `tokens` (with `*` wildcards) points at.
fn visit_at(value: &mut Value, tokens: &[String], f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = tokens.split_first() else {
        f(value);
        return;
    };
    match value {
        Value::Array(items) if first == "*" => items.iter_mut().for_each(|i| visit_at(i, rest, f)),
        Value::Object(map) if first == "*" => map.values_mut().for_each(|v| visit_at(v, rest, f)),
        Value::Array(items) => {
            if let Some(item) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                visit_at(item, rest, f);
            }
        }
        Value::Object(map) => {
            if let Some(v) = map.get_mut(first.as_str()) {
                visit_at(v, rest, f);
            }
        }
        _ => {}
    }
}

/// Leaves out of a list the members (scalars, by their text) matching any glob.
fn filter_members(value: &mut Value, globs: &[String]) {
    if let Value::Array(items) = value {
        items.retain(|item| {
            let text = match item {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => item.to_string(),
                _ => return true,
            };
            !globs.iter().any(|g| glob_match(g, &text))
        });
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let parts: Vec<&str> = glob.split('*').collect();
    if parts.len() == 1 {
        return glob == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Why a JSON pointer or a glob of an ignore rule is unusable, if it is.
pub fn check_rule(paths: &[String], values: &[String]) -> Result<(), RuleError> {
    if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(RuleError::NotAPointer(bad.clone()));
    }
    if let Some(bad) = values.iter().find(|v| v.is_empty()) {
        return Err(RuleError::EmptyGlob(bad.clone()));
    }
    Ok(())
}

/// What makes an ignore rule unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("path {0:?} is not a JSON pointer (it must start with '/')")]
    NotAPointer(String),
    #[error("value glob {0:?} is empty")]
    EmptyGlob(String),
}

#[cfg(test)]
mod tests;
