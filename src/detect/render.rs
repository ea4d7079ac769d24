//! How a JSON value is shown: to people in tables, status messages and
//! Events, and as YAML in lines to commit and in files written.

use serde_json::Value;

/// Strings bare, an empty string quoted, a missing value as `<none>`, anything
/// else as compact JSON.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value as YAML text that every YAML reader (1.1, as Kubernetes'
/// own, and 1.2) reads back as the same value: strings bare unless YAML would
/// read them as something else (a number, a boolean, null, an indicator),
/// else double-quoted; everything else as JSON, which is YAML flow style.
pub fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::String(s) if needs_quotes(s) => Value::String(s.clone()).to_string(),
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        other => render_value(other),
    }
}

/// Whether a string must be quoted to read back as the same string, in
/// block or flow context, by YAML 1.1 readers (Kubernetes' own: `on`, `y`,
/// `0755`, `1_000`, `12:30` are not strings there) and 1.2 ones alike. Errs
/// on the side of quoting: only words of letters, digits and `-._/@=+` that
/// start with a letter and are no YAML keyword stay bare.
pub fn needs_quotes(s: &str) -> bool {
    const KEYWORDS: [&str; 12] = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf", "~"];
    let safe = |c: char| c.is_ascii_alphanumeric() || "-._/@=+".contains(c);
    !s.starts_with(|c: char| c.is_ascii_alphabetic())
        || !s.chars().all(safe)
        || KEYWORDS.iter().any(|w| w.eq_ignore_ascii_case(s.trim_start_matches('.')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_json_for_non_strings() {
        assert_eq!(render_value(&json!(["a", 1])), "[\"a\",1]");
        assert_eq!(render_value(&Value::Null), "<none>");
        assert_eq!(render_value(&json!("")), "\"\"");
        assert_eq!(render_value(&json!("s-1vcpu-1gb")), "s-1vcpu-1gb");
    }
}
