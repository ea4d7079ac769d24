//! DigitalOcean: the first provider. Its revert planning lives here ([`plan`]);
//! its API client, inventory model and actions feed move here from
//! `inventory` next (issue 31).

pub mod plan;

/// The name `CloudResource.spec.provider` carries for DigitalOcean.
pub const NAME: &str = "digitalocean";

/// DigitalOcean's planner, as the registry holds it.
pub static PLANNER: plan::DoPlanner = plan::DoPlanner;
