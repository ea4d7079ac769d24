//! `kubectl drift`: the operator's view of arcadia-drift, as a kubectl plugin
//! (the `kubectl-drift` binary). It reads and annotates the same objects a
//! person would with kubectl, and waits for the controller's outcome.
//!
//! - [`table`]: the list and summary renderings (pure);
//! - [`outcome`]: what an annotated drift's status says happened (pure);
//! - [`commands`]: the commands, which talk to the cluster.

pub mod commands;
pub mod outcome;
pub mod table;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-drift",
    bin_name = "kubectl drift",
    version,
    about = "The operator's view of arcadia-drift: list, summarize, accept, revert and explain drifts"
)]
pub struct Plugin {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// The flags kubectl users expect on every command.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Path to the kubeconfig file (default: KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Act as this user (impersonation, as `kubectl --as`).
    #[arg(long = "as", global = true)]
    pub as_user: Option<String>,
    /// Act with this group (repeatable, as `kubectl --as-group`).
    #[arg(long = "as-group", global = true)]
    pub as_groups: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Drifts as a table grouped by CloudProvisioned.
    List(ListArgs),
    /// The sweep summary of the cluster now: checked, in sync, drifted fields, missing, open drifts per namespace and field.
    Summary(SummaryArgs),
    /// Accept drifts (adopt the live value) and wait for the controller's outcome.
    Accept(ActArgs),
    /// Revert drifts (put the cloud back) and wait for the saga's outcome.
    Revert(RevertArgs),
    /// One drift in full: values, history, Events, and what accept or revert would do.
    Explain(ExplainArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only drifts in this phase (Open, Accepted, Stale, Reverted, Snoozed, Ignored, Reverting, RevertFailed).
    #[arg(long)]
    pub phase: Option<String>,
    /// Only drifts of this severity (critical, warning, info).
    #[arg(long)]
    pub severity: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ActArgs {
    /// Drifts: a Drift's name, or PROVISIONED/FIELD.
    pub targets: Vec<String>,
    /// Every Open drift matching this label selector (e.g. arcadia.cloud/provisioned=web-1).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// How long to wait for the controller's outcome.
    #[arg(long, default_value = "30s", value_parser = crate::runtime::duration::parse_duration)]
    pub timeout: Duration,
    /// Print what would be done, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct RevertArgs {
    #[command(flatten)]
    pub act: ActArgs,
    /// Allow a revert that powers the resource off for a while (a droplet resize).
    #[arg(long)]
    pub allow_downtime: bool,
    /// Approve only the plan with this digest (shown by --dry-run and in
    /// status.revertPlanDigest); without it, the plan the drift shows now.
    #[arg(long)]
    pub digest: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// A Drift's name, or PROVISIONED/FIELD.
    pub target: String,
}

/// Why a command could not do its job. Each names the object or the permission.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error(
        "the {resource} CRD is not installed in this cluster (arcadia.cloud/v1alpha1): install the arcadia-drift chart, or `arcadia-drift crds | kubectl apply --server-side -f -`"
    )]
    MissingCrd { resource: &'static str },
    #[error("you may not {verb} {resource} {scope} (403 Forbidden): {message}")]
    Forbidden { verb: &'static str, resource: &'static str, scope: String, message: String },
    #[error("no Drift named {name} in namespace {namespace}")]
    UnknownDrift { name: String, namespace: String },
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{0}")]
    Usage(String),
}

/// Exit codes: 0 done, 1 refused or failed, 2 an error or a timeout.
pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

pub fn main() -> ExitCode {
    let plugin = Plugin::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match runtime.block_on(commands::run(plugin)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
