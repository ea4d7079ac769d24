//! arcadia-drift: a Kubernetes-native drift detector for cloud infrastructure.
//!
//! The modules, in dependency order (each imports only those above it; a test
//! in `tests/layers.rs` holds the line):
//!
//! - [`detect`]: the pure comparison of desired and live state; no I/O, no Kubernetes types.
//! - [`api`]: the `arcadia.cloud/v1alpha1` custom resources, built on [`detect`]'s values.
//! - [`providers`]: each cloud provider in a folder behind one contract, and the
//!   registry that dispatches on `CloudResource.spec.provider`; pure today (revert planning).
//! - [`runtime`]: process plumbing (HTTP endpoints, health, leader election,
//!   shutdown, metrics registry, rate limits, jitter); it imports no other module.
//! - [`manifests`]: reading CloudProvisioned / CloudResource manifests from YAML.
//! - [`accept`]: accept modes (spec, overlay, auto) and pending Git changes, pure;
//!   [`writeback`]: Git write-back of overlay accepts (built on `accept`).
//! - [`controller`]: the reconcile loop; [`inventory`]: syncers that mirror a cloud
//!   into CloudResources. Neither imports the other.
//! - [`check`]: offline one-shot detection over manifests (`arcadia-drift check`);
//!   [`plugin`]: `kubectl drift`, the operator's command line (the `kubectl-drift` binary).
//! - [`run`] and [`cli`]: the wiring and the command line, the only modules that see everything.

pub mod accept;
pub mod api;
pub mod check;
pub mod cli;
pub mod controller;
pub mod detect;
pub mod inventory;
pub mod manifests;
pub mod plugin;
pub mod policy;
pub mod providers;
pub mod revert;
pub mod run;
pub mod runtime;
pub mod writeback;
