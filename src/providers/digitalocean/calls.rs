//! What the client sends, and where. A request's URL is the configured base
//! with a path set on it (never the two strings joined: a "path" such as
//! `@attacker.example/x` would then name another host and receive the token),
//! and a write must have one of the shapes a revert plan is made of.

use http::Uri;

/// The base URL with `path_and_query` set as its path (after the base's own
/// path, if it has one). Anything that is not an absolute path is refused,
/// and so is a result whose host is not the base's.
pub fn url(base: &Uri, path_and_query: &str) -> Result<Uri, BadPath> {
    let path = path_and_query.to_owned();
    if !path_and_query.starts_with('/') || path_and_query.starts_with("//") {
        return Err(BadPath::NotAbsolute(path));
    }
    if path_and_query.contains(['\\', '#', '@']) || path_and_query.split(['/', '?']).any(|s| s == "..") {
        return Err(BadPath::ForbiddenPart(path));
    }
    let prefix = base.path().trim_end_matches('/');
    let mut parts = base.clone().into_parts();
    let unparsable = |detail: String| BadPath::Unparsable { path: path.clone(), detail };
    parts.path_and_query =
        Some(format!("{prefix}{path_and_query}").parse().map_err(|e: http::uri::InvalidUri| unparsable(e.to_string()))?);
    let uri = Uri::from_parts(parts).map_err(|e| unparsable(e.to_string()))?;
    if uri.authority() != base.authority() || uri.scheme() != base.scheme() {
        return Err(BadPath::LeavesHost(path));
    }
    Ok(uri)
}

/// Why a path is not sent to the API's host.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error("{0:?} is not an absolute path on the API's host")]
    NotAbsolute(String),
    #[error("{0:?} holds a character or segment that is never in a DigitalOcean API path")]
    ForbiddenPart(String),
    #[error("{detail}")]
    Unparsable { path: String, detail: String },
    #[error("{0:?} would leave the API's host")]
    LeavesHost(String),
}

/// A write that has none of the [`WRITE_SHAPES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{method} {path} is not a call a revert makes (only {})", known_shapes())]
pub struct NotARevertCall {
    pub method: String,
    pub path: String,
}

fn known_shapes() -> String {
    WRITE_SHAPES.iter().map(|(m, p)| format!("{m} {p}")).collect::<Vec<_>>().join(", ")
}

/// The writes a revert plan is made of (see `crate::revert::plan`): a method
/// and a path pattern each. Anything else is refused before it is sent.
pub const WRITE_SHAPES: [(&str, &str); 6] = [
    ("POST", "/v2/droplets/{id}/actions"),
    ("POST", "/v2/volumes/{id}/actions"),
    ("POST", "/v2/tags"),
    ("POST", "/v2/tags/{tag}/resources"),
    ("DELETE", "/v2/tags/{tag}/resources"),
    ("PUT", "/v2/firewalls/{id}"),
];

/// `Ok` when `method path` has one of [`WRITE_SHAPES`], with an id or a tag
/// name of the provider's own form in each placeholder.
pub fn permitted(method: &str, path: &str) -> Result<(), NotARevertCall> {
    let fits = |pattern: &str| {
        let (want, have): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
        want.len() == have.len() && want.iter().zip(&have).all(|(w, h)| segment_fits(w, h))
    };
    if WRITE_SHAPES.iter().any(|(m, pattern)| *m == method && fits(pattern)) {
        return Ok(());
    }
    Err(NotARevertCall { method: method.to_owned(), path: path.to_owned() })
}

fn segment_fits(pattern: &str, segment: &str) -> bool {
    match pattern {
        // Droplet ids are numbers; volume and firewall ids are UUIDs.
        "{id}" => (1..=64).contains(&segment.len()) && segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'),
        // DigitalOcean's tag names: letters, digits, `_`, `-`, `:`, at most 255.
        "{tag}" => {
            (1..=255).contains(&segment.len())
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b))
        }
        literal => literal == segment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Uri {
        url.parse().unwrap()
    }

    #[test]
    fn a_path_is_set_on_the_base_and_never_changes_its_host() {
        let api = base("http://127.0.0.1:8080");
        assert_eq!(url(&api, "/v2/droplets?page=2").unwrap().to_string(), "http://127.0.0.1:8080/v2/droplets?page=2");
        let proxied = base("https://proxy.internal/digitalocean/");
        assert_eq!(
            url(&proxied, "/v2/actions/7").unwrap().to_string(),
            "https://proxy.internal/digitalocean/v2/actions/7"
        );
        for hostile in [
            "@127.0.0.1:9999/x",
            "@attacker.example/v2/droplets",
            "//attacker.example/v2/droplets",
            "/v2/@attacker.example",
            "http://attacker.example/v2/droplets",
            "v2/droplets",
            "",
            "/v2/../../x",
            "/v2/droplets#x",
            "/v2\\droplets",
        ] {
            assert!(url(&api, hostile).is_err(), "{hostile:?} must be refused");
        }
    }

    #[test]
    fn only_the_calls_a_revert_makes_are_permitted() {
        for (method, path) in [
            ("POST", "/v2/droplets/3164444/actions"),
            ("POST", "/v2/volumes/506f78a4-e098-11e5-ad9f-000f53306ae1/actions"),
            ("POST", "/v2/tags"),
            ("POST", "/v2/tags/env:prod/resources"),
            ("DELETE", "/v2/tags/arcadia-ns:team_a/resources"),
            ("PUT", "/v2/firewalls/bb4b2611-3d72-467b-8602-280330ecd65c"),
        ] {
            assert_eq!(permitted(method, path), Ok(()), "{method} {path}");
        }
        for (method, path) in [
            ("DELETE", "/v2/droplets/3164444"),
            ("POST", "/v2/droplets"),
            ("PUT", "/v2/droplets/3164444/actions"),
            ("GET", "/v2/account/keys"),
            ("POST", "@127.0.0.1:9999/x"),
            ("POST", "/v2/droplets/3164444/actions?x=1"),
            ("POST", "/v2/droplets/3164444/actions/"),
            ("POST", "/v2/droplets/../account/actions"),
            ("POST", "/v2/tags/a%2Fb/resources"),
            ("post", "/v2/tags"),
        ] {
            let refused = permitted(method, path).unwrap_err().to_string();
            assert!(refused.contains("is not a call a revert makes"), "{refused}");
        }
    }
}
