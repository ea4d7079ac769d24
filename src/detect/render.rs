//! How a JSON value is shown to people: in tables, status messages and Events.

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
