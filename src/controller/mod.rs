//! The controller: reconciles each CloudProvisioned against the live
//! inventory and keeps its Drift objects true.

pub mod index;
pub mod plan;
