//! arcadia-drift: a Kubernetes-native drift detector for cloud infrastructure.
//!
//! - [`api`]: the `arcadia.cloud/v1alpha1` custom resources.
//! - [`detect`]: the pure comparison of desired and live state.
//! - [`controller`]: the reconcile loop behind `arcadia-drift run`.
//! - [`inventory`]: syncers that mirror a cloud into CloudResource objects.
//! - [`manifests`]: reading CloudProvisioned / CloudResource manifests from YAML.
//! - [`check`]: offline one-shot detection over manifests (`arcadia-drift check`).
//! - [`cli`]: the `arcadia-drift` command line.
//! - [`ratelimit`]: client-side request budgets (Kubernetes and DigitalOcean).

pub mod api;
pub mod check;
pub mod cli;
pub mod controller;
pub mod detect;
pub mod inventory;
pub mod manifests;
pub mod ratelimit;
