//! Git remote URLs, parsed strictly before git ever sees one. A remote comes
//! from tenant-writable places (an annotation, a GitRepository, an
//! Application), and git reads a leading `-` as an option and `ext::` as a
//! program to run: only `https://`, `http://`, `ssh://` and the scp form
//! `user@host:path`, with a host grammar, get through. Pure.

use std::fmt;

/// How git reaches a remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Https,
    /// Plain HTTP: only without credentials, or with `--git-allow-insecure-http`.
    Http,
    /// `ssh://` or the scp form.
    Ssh,
}

impl Transport {
    /// git's name for the protocol, as `protocol.<name>.allow` spells it.
    pub fn protocol(self) -> &'static str {
        match self {
            Transport::Https => "https",
            Transport::Http => "http",
            Transport::Ssh => "ssh",
        }
    }
}

/// A remote that passed [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrl {
    pub transport: Transport,
    /// The host, lower-cased (an IPv6 address keeps its brackets).
    pub host: String,
    text: String,
}

impl RemoteUrl {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// How a push authenticates, as far as choosing a remote is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    /// HTTP basic (username and password or token).
    Basic,
    /// An SSH key with the server's known host keys.
    Ssh,
}

/// Why a remote, its credentials or a branch are refused before git runs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeRemote {
    #[error("refusing to send Git credentials over plain http to {url}; use https, or --git-allow-insecure-http")]
    CredentialsInTheClear { url: String },
    #[error("the credentials are an SSH key (identity), but {url} is an HTTP(S) remote")]
    SshKeyForHttp { url: String },
    #[error(
        "{url} is an SSH remote: its credentials Secret needs `identity` and `known_hosts` (Flux GitRepository format)"
    )]
    SshWithoutKey { url: String },
    #[error("the Git branch {branch:?} is not a valid branch name")]
    BadBranch { branch: String },
}

impl RemoteUrl {
    /// Refuses credentials this remote cannot take safely: basic credentials
    /// over plain `http://` unless insecure HTTP is allowed, an SSH key for an
    /// HTTP(S) remote, and an SSH remote without a key.
    pub fn check_auth(&self, auth: Auth, allow_insecure_http: bool) -> Result<(), UnsafeRemote> {
        let url = self.text.clone();
        match (self.transport, auth) {
            (Transport::Https, Auth::None | Auth::Basic) | (Transport::Http, Auth::None) => Ok(()),
            (Transport::Http, Auth::Basic) if allow_insecure_http => Ok(()),
            (Transport::Http, Auth::Basic) => Err(UnsafeRemote::CredentialsInTheClear { url }),
            (Transport::Http | Transport::Https, Auth::Ssh) => Err(UnsafeRemote::SshKeyForHttp { url }),
            (Transport::Ssh, Auth::Ssh) => Ok(()),
            (Transport::Ssh, _) => Err(UnsafeRemote::SshWithoutKey { url }),
        }
    }
}

/// Refuses a branch name git would not take as a plain branch (or would read
/// as an option or a second refspec).
pub fn check_branch(branch: &str) -> Result<(), UnsafeRemote> {
    let bad = branch.is_empty()
        || branch.starts_with(['-', '/', '.'])
        || branch.ends_with(['/', '.'])
        || branch.ends_with(".lock")
        || branch.contains("..")
        || branch.contains("@{")
        || branch.contains("//")
        || branch.split('/').any(|part| part.starts_with('.'))
        || branch.chars().any(|c| !c.is_ascii_graphic() || ":?*[\\^~".contains(c));
    if bad {
        return Err(UnsafeRemote::BadBranch { branch: branch.to_owned() });
    }
    Ok(())
}

/// Whether `url` is one of the remotes `prefixes` allow (`--git-allowed-remotes`):
/// equal to a prefix, or under it at a path boundary, so that
/// `https://git.example/platform` allows `https://git.example/platform/infra.git`
/// but not `https://git.example/platform-evil/x.git`.
pub fn allowed_by(url: &str, prefixes: &[String]) -> bool {
    prefixes.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).any(|prefix| match url.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with(['/', ':']) || rest.starts_with('/'),
        None => false,
    })
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a remote is refused; the message quotes the remote and says what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "Git remote {url:?} is refused: {reason}; allowed are https://host/path, ssh://[user@]host[:port]/path and user@host:path"
)]
pub struct RemoteUrlError {
    pub url: String,
    pub reason: &'static str,
}

/// Parses `url` strictly.
pub fn parse(url: &str) -> Result<RemoteUrl, RemoteUrlError> {
    let refuse = |reason| Err(RemoteUrlError { url: url.to_owned(), reason });
    if url.is_empty() {
        return refuse("it is empty");
    }
    if url.starts_with('-') {
        return refuse("it starts with '-', which git would read as an option");
    }
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic() || "\"'`\\<>^{}|".contains(*c)) {
        return refuse(if c.is_whitespace() || c.is_control() {
            "it contains white space or a control character"
        } else {
            "it contains a character no Git URL needs (quotes, backslash, <>^{}|)"
        });
    }
    // Clients resolve `..` before sending, so `https://git.example/platform/../other`
    // would reach a repository outside the allowed prefix it textually starts with.
    if has_dot_segment(url) {
        return refuse("its path has a '.' or '..' segment (or an encoded '.' or '/')");
    }
    match url.split_once("://") {
        Some((scheme, rest)) => parse_with_scheme(url, &scheme.to_ascii_lowercase(), rest),
        None => parse_scp(url),
    }
}

fn has_dot_segment(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let path = lower.split_once("://").map_or(lower.as_str(), |(_, rest)| rest);
    lower.contains("%2e")
        || lower.contains("%2f")
        // `..;x` is `..` to servers that drop path parameters (Tomcat, Jetty).
        || path.split(['/', ':']).map(|s| s.split([';', '?', '#']).next().unwrap_or("")).any(|s| s == "." || s == "..")
}

fn parse_with_scheme(url: &str, scheme: &str, rest: &str) -> Result<RemoteUrl, RemoteUrlError> {
    let refuse = |reason| Err(RemoteUrlError { url: url.to_owned(), reason });
    let transport = match scheme {
        "https" => Transport::Https,
        "http" => Transport::Http,
        "ssh" => Transport::Ssh,
        _ => return refuse("its scheme is not https, http or ssh"),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if path.len() < 2 {
        return refuse("it names no repository path");
    }
    let host_port = match authority.rsplit_once('@') {
        Some(_) if transport != Transport::Ssh => {
            return refuse("it carries a user name or password; put credentials in a Secret");
        }
        Some((user, host_port)) if valid_user(user) => host_port,
        Some(_) => return refuse("its user name is not of letters, digits, '.', '_' and '-'"),
        None => authority,
    };
    let host =
        split_port(host_port).ok_or(RemoteUrlError { url: url.to_owned(), reason: "its port is not a number" })?;
    if !valid_host(host) {
        return refuse("its host is not a DNS name or an IP address");
    }
    Ok(RemoteUrl { transport, host: host.to_ascii_lowercase(), text: url.to_owned() })
}

/// `[user@]host:path`, git's scp-like syntax (no `/` before the first `:`).
fn parse_scp(url: &str) -> Result<RemoteUrl, RemoteUrlError> {
    let refuse = |reason| Err(RemoteUrlError { url: url.to_owned(), reason });
    let Some((authority, path)) = url.split_once(':') else {
        return refuse("it is neither a URL nor of the form user@host:path");
    };
    if authority.contains('/') {
        return refuse("it is neither a URL nor of the form user@host:path");
    }
    // `name::address` runs git's remote helper `git-remote-name` (`ext::` runs any command).
    if path.starts_with(':') {
        return refuse("it names a git remote helper (transport::address)");
    }
    let host = match authority.rsplit_once('@') {
        Some((user, host)) if valid_user(user) => host,
        Some(_) => return refuse("its user name is not of letters, digits, '.', '_' and '-'"),
        None => authority,
    };
    if !valid_host(host) || host.starts_with('[') {
        return refuse("its host is not a DNS name or an IPv4 address");
    }
    if path.is_empty() || path.starts_with('-') {
        return refuse("its repository path is empty or starts with '-'");
    }
    Ok(RemoteUrl { transport: Transport::Ssh, host: host.to_ascii_lowercase(), text: url.to_owned() })
}

fn valid_user(user: &str) -> bool {
    !user.is_empty() && !user.starts_with('-') && user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// The host of `host[:port]` or `[v6][:port]`; `None` when the port is not digits.
fn split_port(host_port: &str) -> Option<&str> {
    let (host, port) = if let Some(end) = host_port.strip_prefix('[').and_then(|_| host_port.find(']')) {
        let (host, rest) = host_port.split_at(end + 1);
        (host, rest.strip_prefix(':'))
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    match port {
        Some(p) if p.is_empty() || p.len() > 5 || !p.chars().all(|c| c.is_ascii_digit()) => None,
        _ => Some(host),
    }
}

/// A DNS name (labels of letters, digits and inner `-`), an IPv4 address, or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remotes_users_have_are_accepted() {
        for (url, transport, host) in [
            ("https://github.com/org/infra.git", Transport::Https, "github.com"),
            ("https://GitLab.Example:8443/group/sub/infra", Transport::Https, "gitlab.example"),
            ("http://127.0.0.1:36541/infra.git", Transport::Http, "127.0.0.1"),
            ("ssh://git@127.0.0.1:2222/srv/infra.git", Transport::Ssh, "127.0.0.1"),
            ("ssh://[::1]:22/infra.git", Transport::Ssh, "[::1]"),
            ("git@github.com:org/infra.git", Transport::Ssh, "github.com"),
            ("gitea.internal:infra.git", Transport::Ssh, "gitea.internal"),
        ] {
            let parsed = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((parsed.transport, parsed.host.as_str(), parsed.as_str()), (transport, host, url));
        }
    }

    #[test]
    fn credentials_must_suit_the_remote() {
        let https = parse("https://git.example/r.git").unwrap();
        let http = parse("http://127.0.0.1/r.git").unwrap();
        let ssh = parse("git@github.com:o/r.git").unwrap();
        assert!(https.check_auth(Auth::Basic, false).is_ok());
        assert!(http.check_auth(Auth::None, false).is_ok());
        assert!(http.check_auth(Auth::Basic, false).unwrap_err().to_string().contains("--git-allow-insecure-http"));
        assert!(http.check_auth(Auth::Basic, true).is_ok());
        assert!(ssh.check_auth(Auth::Ssh, false).is_ok());
        assert!(parse("ssh://git@127.0.0.1:2222/r.git").unwrap().check_auth(Auth::Ssh, false).is_ok());
        assert!(
            ssh.check_auth(Auth::Basic, true).unwrap_err().to_string().contains("needs `identity` and `known_hosts`")
        );
        assert!(https.check_auth(Auth::Ssh, false).unwrap_err().to_string().contains("HTTP(S) remote"));
    }

    #[test]
    fn allowed_remotes_are_prefixes_at_a_path_boundary() {
        let allowed = vec!["https://git.example/platform".to_owned(), "git@github.com:org/".to_owned()];
        for url in
            ["https://git.example/platform", "https://git.example/platform/infra.git", "git@github.com:org/infra.git"]
        {
            assert!(allowed_by(url, &allowed), "{url}");
        }
        for url in [
            "https://git.example/platform-evil/x.git",
            "https://git.example.attacker.net/platform/x.git",
            "git@github.com:orgx/infra.git",
            "https://attacker.example/x.git",
        ] {
            assert!(!allowed_by(url, &allowed), "{url}");
        }
        for url in [
            "https://git.example/platform/../other/x.git",
            "https://git.example/platform/./x/../../other.git",
            "https://git.example/platform/%2e%2e/other.git",
            "https://git.example/platform%2F..%2Fother.git",
            "git@github.com:org/../other/infra.git",
            "git@github.com:../org/infra.git",
            "https://git.example/platform/..;/other/x.git",
            "https://git.example/platform/..;x=1/other/x.git",
            "https://git.example/platform/.?/x.git",
            "https://git.example/platform/%2E%2E/other.git",
        ] {
            let error = parse(url).expect_err(url);
            assert!(error.reason.contains("'..' segment"), "{url}: {error}");
        }
        assert!(parse("https://git.example/platform/infra..git").is_ok(), "dots inside a name are fine");
        assert!(!allowed_by("https://git.example/platform", &[]));
        assert!(!allowed_by("https://git.example/platform", &[" ".to_owned()]));
    }

    #[test]
    fn branches_are_plain_names() {
        for ok in ["main", "release/1.2", "arcadia-drift/team-a-web-1-size_slug"] {
            assert!(check_branch(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-f", "main:refs/heads/x", "a..b", "x.lock", "a b", "a/", "/a", "x@{1}", "a/.b", "r*"] {
            assert!(check_branch(bad).unwrap_err().to_string().contains("not a valid branch name"), "{bad}");
        }
    }

    #[test]
    fn option_injection_and_other_transports_are_refused_with_the_reason() {
        for (url, reason) in [
            ("--upload-pack=sh -c 'touch /tmp/x' #@x:y", "starts with '-'"),
            ("-oProxyCommand=x@h:p", "starts with '-'"),
            ("x@h:--upload-pack=touch", "starts with '-'"),
            ("ext::sh -c touch% /tmp/x", "white space"),
            ("ext::sh", "remote helper"),
            ("file:///etc/infra.git", "scheme"),
            ("fd::3", "remote helper"),
            ("/srv/git/infra.git", "neither a URL"),
            ("https://user:token@github.com/o/r.git", "user name or password"),
            ("https://-evil.example/o/r.git", "host"),
            ("https://evil_host/o/r.git", "host"),
            ("https://github.com:x/o/r.git", "port"),
            ("https://github.com", "no repository path"),
            ("ssh://-oProxyCommand=touch@h/r.git", "user name"),
            ("git@h:-u", "starts with '-'"),
            ("git@[::1]:r.git", "remote helper"),
            ("https://github.com/o/r.git\n", "white space"),
            ("https://github.com/o/`id`", "quotes"),
            ("", "empty"),
        ] {
            let error = parse(url).expect_err(url);
            assert!(error.reason.contains(reason), "{url:?}: {error}");
            assert!(error.to_string().contains("allowed are https://"), "{error}");
        }
    }
}
