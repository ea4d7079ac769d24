//! Which CloudProvisioneds (and their Drifts) one replica handles, by the
//! label `arcadia.cloud/shard`, as Flux shards its controllers: a replica
//! started with `--shard NAME` handles the objects labelled with that name;
//! one without handles the rest, leaving out the shards `--exclude-shards`
//! names (so an object labelled with a shard nobody runs is still handled).

use crate::api::LABEL_SHARD;

/// The objects one replica handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Shard {
    /// Every object: one replica (or one leader) for the whole cluster.
    #[default]
    Everything,
    /// The objects labelled `arcadia.cloud/shard=NAME`.
    Named(String),
    /// Every object but those of these shards, which other replicas run.
    Rest(Vec<String>),
}

/// Why a shard name cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error(
        "shard name {0:?} is not a label value (at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    NotALabelValue(String),
    #[error("--shard {0:?} is also in --exclude-shards: a replica either runs one shard or the rest")]
    Both(String),
    #[error(
        "shard name {0:?} is reserved: LEASE_NAME-{0} is the Lease of the replica that runs the providers' syncers and reverter"
    )]
    Reserved(String),
}

/// The suffix of the providers' Lease (`LEASE_NAME-providers`), which no
/// shard's Lease may take.
pub const PROVIDERS_LEASE_SUFFIX: &str = "providers";

impl Shard {
    /// The shard of `--shard` and `--exclude-shards`; `--shard ""` is the rest.
    pub fn from_flags(shard: Option<&str>, excluded: &[String]) -> Result<Shard, ShardError> {
        for name in excluded.iter().map(String::as_str).chain(shard) {
            if !name.is_empty() && !is_label_value(name) {
                return Err(ShardError::NotALabelValue(name.to_owned()));
            }
            if name == PROVIDERS_LEASE_SUFFIX {
                return Err(ShardError::Reserved(name.to_owned()));
            }
        }
        let excluded: Vec<String> = excluded.iter().filter(|n| !n.is_empty()).cloned().collect();
        match shard.filter(|s| !s.is_empty()) {
            Some(name) if excluded.iter().any(|e| e == name) => Err(ShardError::Both(name.to_owned())),
            Some(name) => Ok(Shard::Named(name.to_owned())),
            None if excluded.is_empty() => Ok(Shard::Everything),
            None => Ok(Shard::Rest(excluded)),
        }
    }

    /// The label selector of the CloudProvisioned and Drift watches.
    pub fn selector(&self) -> Option<String> {
        match self {
            Shard::Everything => None,
            Shard::Named(name) => Some(format!("{LABEL_SHARD}={name}")),
            Shard::Rest(others) => Some(format!("{LABEL_SHARD} notin ({})", others.join(","))),
        }
    }

    /// True when other replicas handle some objects, so this one's caches
    /// hold only part of the CloudProvisioneds and Drifts.
    pub fn is_partial(&self) -> bool {
        *self != Shard::Everything
    }

    /// The shard's name in object names (its Lease, its decision journal):
    /// `None` for the unnamed one, which keeps the names of an unsharded install.
    pub fn name(&self) -> Option<&str> {
        match self {
            Shard::Named(name) => Some(name),
            Shard::Everything | Shard::Rest(_) => None,
        }
    }

    /// Whether an object with these labels belongs here.
    pub fn holds(&self, labels: Option<&std::collections::BTreeMap<String, String>>) -> bool {
        let label = labels.and_then(|l| l.get(LABEL_SHARD)).map(String::as_str);
        match self {
            Shard::Everything => true,
            Shard::Named(name) => label == Some(name),
            Shard::Rest(others) => label.is_none_or(|l| !others.iter().any(|o| o == l)),
        }
    }
}

/// A Kubernetes label value: at most 63 characters, alphanumerics with `-`,
/// `_` or `.` inside.
fn is_label_value(text: &str) -> bool {
    let bytes = text.as_bytes();
    let inner = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    text.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(shard: Option<&str>) -> std::collections::BTreeMap<String, String> {
        shard.map(|s| (LABEL_SHARD.to_string(), s.to_string())).into_iter().collect()
    }

    #[test]
    fn no_flags_is_everything_and_selects_nothing_out() {
        let shard = Shard::from_flags(None, &[]).unwrap();
        assert_eq!(shard, Shard::Everything);
        assert_eq!(shard.selector(), None);
        assert!(!shard.is_partial() && shard.holds(Some(&labels(Some("a")))) && shard.holds(None));
    }

    #[test]
    fn a_named_shard_holds_only_its_own_label() {
        let shard = Shard::from_flags(Some("eu-1"), &[]).unwrap();
        assert_eq!(shard.selector().as_deref(), Some("arcadia.cloud/shard=eu-1"));
        assert_eq!(shard.name(), Some("eu-1"));
        assert!(shard.holds(Some(&labels(Some("eu-1")))));
        assert!(!shard.holds(Some(&labels(Some("eu-2")))) && !shard.holds(None));
    }

    #[test]
    fn the_rest_holds_unlabelled_objects_and_shards_nobody_runs() {
        let shard = Shard::from_flags(Some(""), &["a".into(), "b".into()]).unwrap();
        assert_eq!(shard.selector().as_deref(), Some("arcadia.cloud/shard notin (a,b)"));
        assert_eq!(shard.name(), None);
        assert!(shard.holds(None) && shard.holds(Some(&labels(Some("typo")))));
        assert!(!shard.holds(Some(&labels(Some("a")))));
    }

    #[test]
    fn bad_names_are_refused_saying_why() {
        for bad in ["-a", "a b", "ä", &"x".repeat(64), "a/b"] {
            let err = Shard::from_flags(Some(bad), &[]).unwrap_err();
            assert_eq!(err, ShardError::NotALabelValue(bad.to_owned()));
            assert!(err.to_string().contains("not a label value"), "{err}");
            assert!(Shard::from_flags(None, &[bad.to_owned()]).is_err());
        }
        let reserved = Shard::from_flags(Some("providers"), &[]).unwrap_err();
        assert!(reserved.to_string().contains("is reserved"), "{reserved}");
        assert!(Shard::from_flags(None, &["providers".into()]).is_err());
        let both = Shard::from_flags(Some("a"), &["a".into()]).unwrap_err();
        assert!(both.to_string().contains("either runs one shard or the rest"), "{both}");
    }
}
