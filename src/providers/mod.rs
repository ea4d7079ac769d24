//! Cloud providers, each a folder that implements the [`contract`], and the
//! registry the rest of the crate dispatches through on
//! `CloudResource.spec.provider`. Adding a provider is a folder and one line in
//! [`PLANNERS`]; `tests/layers.rs` keeps every provider's name inside its folder.

pub mod contract;
pub mod digitalocean;

use contract::Planner;

/// Every registered provider's planner: one line per provider.
static PLANNERS: &[&dyn Planner] = &[&digitalocean::PLANNER];

/// Every registered planner.
pub fn planners() -> impl Iterator<Item = &'static dyn Planner> {
    PLANNERS.iter().copied()
}

/// The planner of `provider`, or why there is none.
pub fn planner(provider: &str) -> Result<&'static dyn Planner, String> {
    PLANNERS.iter().copied().find(|p| p.provider() == provider).ok_or_else(|| {
        let known: Vec<&str> = PLANNERS.iter().map(|p| p.display()).collect();
        format!("only {} resources can be reverted, not {provider}", known.join(" and "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_is_found_by_its_name_and_no_other() {
        for p in PLANNERS {
            assert_eq!(planner(p.provider()).unwrap().provider(), p.provider());
        }
        let why = planner("aws").err().unwrap();
        assert_eq!(why, "only DigitalOcean resources can be reverted, not aws");
        let mut names: Vec<&str> = PLANNERS.iter().map(|p| p.provider()).collect();
        names.dedup();
        assert_eq!(names.len(), PLANNERS.len(), "one registration per provider");
    }
}
