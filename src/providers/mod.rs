//! Cloud providers, each a folder that implements the [`contract`], and the
//! registry the rest of the crate dispatches through on
//! `CloudResource.spec.provider`. Adding a provider is a folder and its
//! name in the [`register!`] call below (which declares its module too); `tests/layers.rs` keeps every provider's
//! name inside its folder.
//!
//! A provider's folder exports `PLANNER` (its [`Planner`]), `Flags` (its
//! command-line flags, flattened into `arcadia-drift run`, with
//! `configure`), `CREDENTIALS` (how it is given them, for messages) and
//! `LEGACY_METRIC_PREFIX` (the names its request metrics had before
//! `provider_*`, if any).

pub mod contract;

use contract::{Common, Planner, Setup};
use std::sync::Arc;

/// Declares the registered providers: their flags, planners and legacy metrics.
macro_rules! register {
    ($($name:ident),+ $(,)?) => {
        $(pub mod $name;)+

        /// Every provider's command-line flags.
        #[derive(clap::Args, Clone, Debug)]
        pub struct ProviderFlags {
            $(
                #[command(flatten)]
                pub $name: $name::Flags,
            )+
        }

        /// Every registered provider's planner.
        static PLANNERS: &[&dyn Planner] = &[$(&$name::PLANNER),+];

        /// (provider, metric prefix) of the request metrics kept for one release.
        pub fn legacy_metrics() -> Vec<(&'static str, &'static str)> {
            let mut all = Vec::new();
            $(
                if let Some(prefix) = $name::LEGACY_METRIC_PREFIX {
                    all.push(($name::PLANNER.provider(), prefix));
                }
            )+
            all
        }

        impl ProviderFlags {
            /// The providers these flags configure (a provider with no
            /// credentials is not configured), or what is wrong with them.
            pub fn configure(&self, common: Common) -> Result<Vec<Arc<dyn Setup>>, contract::SetupError> {
                let mut all: Vec<Arc<dyn Setup>> = Vec::new();
                $(
                    if let Some(setup) = self.$name.configure(common)? {
                        all.push(setup);
                    }
                )+
                if common.revert && all.is_empty() {
                    let ways = [$($name::CREDENTIALS),+];
                    return Err(contract::SetupError::NothingToRevert(ways.join("; or ")));
                }
                one_source_each(&all)?;
                Ok(all)
            }
        }
    };
}

register!(digitalocean, aws);

/// A source names one provider's CloudResources and feed cursor: two
/// providers sharing one would collect and overwrite each other's.
fn one_source_each(setups: &[Arc<dyn Setup>]) -> Result<(), contract::SetupError> {
    for (i, a) in setups.iter().enumerate() {
        if let Some(b) = setups[..i].iter().find(|b| b.source() == a.source()) {
            return Err(contract::SetupError::SharedSource {
                first: b.provider().to_string(),
                second: a.provider().to_string(),
                inventory_source: a.source().to_string(),
            });
        }
    }
    Ok(())
}

/// Every registered planner.
pub fn planners() -> impl Iterator<Item = &'static dyn Planner> {
    PLANNERS.iter().copied()
}

/// The planner of `provider`, or why there is none.
pub fn planner(provider: &str) -> Result<&'static dyn Planner, contract::NotRevertible> {
    PLANNERS.iter().copied().find(|p| p.provider() == provider).ok_or_else(|| {
        let known: Vec<&str> = PLANNERS.iter().map(|p| p.display()).collect();
        contract::NotRevertible::UnknownProvider { provider: provider.to_owned(), known: known.join(" and ") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Named(&'static str, &'static str);

    impl Setup for Named {
        fn provider(&self) -> &'static str {
            self.0
        }
        fn source(&self) -> &str {
            self.1
        }
        fn feed_interval(&self) -> Option<std::time::Duration> {
            None
        }
        fn endpoint(&self) -> String {
            String::new()
        }
        fn build(&self) -> futures::future::BoxFuture<'_, Result<contract::Built, contract::ProviderError>> {
            unreachable!("never built here")
        }
    }

    #[test]
    fn two_providers_may_not_share_a_source() {
        let ok: Vec<Arc<dyn Setup>> = vec![Arc::new(Named("a", "a")), Arc::new(Named("b", "b"))];
        assert!(one_source_each(&ok).is_ok());
        let shared: Vec<Arc<dyn Setup>> = vec![Arc::new(Named("a", "main")), Arc::new(Named("b", "main"))];
        let why = one_source_each(&shared).unwrap_err().to_string();
        assert_eq!(why, "a and b both use the inventory source \"main\": give each provider a source of its own");
    }

    #[test]
    fn each_provider_is_found_by_its_name_and_no_other() {
        for p in PLANNERS {
            assert_eq!(planner(p.provider()).unwrap().provider(), p.provider());
        }
        let why = planner("gcp").err().unwrap();
        assert_eq!(why.to_string(), "only DigitalOcean and AWS resources can be reverted, not gcp");
        let mut names: Vec<&str> = PLANNERS.iter().map(|p| p.provider()).collect();
        names.dedup();
        assert_eq!(names.len(), PLANNERS.len(), "one registration per provider");
    }
}
