//! The `arcadia-drift` command line: argument parsing and the mapping of each
//! subcommand's outcome to an exit code.

use crate::api::AcceptMode;
use crate::check;
use crate::controller::shard::{PROVIDERS_LEASE_SUFFIX, Shard};
use crate::runtime::leader::LeaseConfig;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "arcadia-drift", version, about = "Drift detection for cloud infrastructure, inside Kubernetes")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller against the cluster of KUBECONFIG (or the in-cluster config).
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as multi-document YAML.
    Crds,
    /// Offline one-shot detection over manifests.
    /// Exit 0 in sync, 1 drift (or a missing resource) found, 2 error.
    ///
    /// It compares spec.desired with the inventory as written: it has no Drift
    /// objects, so accept modes and pending Git changes (status.pendingGitChanges)
    /// play no part.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Multi-document YAML of CloudProvisioned objects.
    #[arg(long, value_name = "FILE")]
    pub provisioned: PathBuf,
    /// Multi-document YAML of CloudResource objects.
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// DriftPolicy manifests whose rules apply, as in the cluster (repeatable).
    /// Each object's own spec.ignore and spec.match always apply.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// Write ignore rules that would silence every difference found, each
    /// with `reason: baseline`, as partial CloudProvisioneds to merge.
    #[arg(long, value_name = "FILE")]
    pub write_ignore: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch CloudProvisioned and Drift objects in this namespace only (default: all namespaces).
    #[arg(long, env = "ARCADIA_NAMESPACE")]
    pub namespace: Option<String>,
    /// Periodic re-check of every CloudProvisioned, spread evenly over the interval (e.g. 30s, 5m, 1h).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Inventory synced longer ago than this never closes a drift as Stale.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub max_inventory_age: Duration,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Serve /metrics only to requests with `Authorization: Bearer <this file's contents>`
    /// (read at every scrape, so a rotated Secret applies); /healthz and /readyz stay open.
    #[arg(long, value_name = "PATH")]
    pub metrics_token_file: Option<PathBuf>,
    /// The field names that appear as the `field` label of open_drifts_by
    /// (comma-separated); drifts of any other field count as field="other",
    /// so tenants' field names cannot grow the metric without bound.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "name,region,status,size_slug,tags,image,vcpus,memory,disk,size_gigabytes,instance_type"
    )]
    pub metrics_fields: Vec<String>,
    /// CloudProvisioned objects reconciled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Sustained requests per second to the Kubernetes API.
    #[arg(long, default_value_t = 50.0)]
    pub api_qps: f32,
    /// Requests allowed at once above the sustained rate.
    #[arg(long, default_value_t = 100)]
    pub api_burst: u32,
    /// Handle only the CloudProvisioneds (and their Drifts) labelled
    /// arcadia.cloud/shard=NAME, with a leader of this shard's own (Lease
    /// LEASE_NAME-NAME). Empty: as without it (the rest: see --exclude-shards).
    /// A sharded replica given provider flags runs the syncers and the
    /// reverter only while it holds the Lease LEASE_NAME-providers.
    #[arg(long, value_name = "NAME", conflicts_with = "exclude_shards")]
    pub shard: Option<String>,
    /// On the replicas without --shard: the shards other replicas run
    /// (comma-separated), whose objects these leave to them. Objects labelled
    /// with any other shard name are handled here.
    #[arg(long, value_name = "NAME[,NAME...]", value_delimiter = ',')]
    pub exclude_shards: Vec<String>,
    /// Take part in leader election, so that of several replicas only one writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    #[arg(long, default_value = "arcadia-drift")]
    pub lease_name: String,
    /// Namespace of the Lease (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long a lease lasts without renewal: the takeover time when a leader dies without releasing it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's name in the lease (in a pod: the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How an accept is recorded on CloudProvisioneds without the
    /// arcadia.cloud/accept-mode annotation: spec (write spec.desired), overlay
    /// (hold the value in status.pendingGitChanges until Git has it), or auto
    /// (overlay when a GitOps tool manages the object).
    #[arg(long, default_value = "auto", value_parser = parse_accept_mode)]
    pub accept_mode: AcceptMode,
    /// Field managers that apply manifests from Git (comma-separated); an
    /// object one of them manages is accepted in overlay mode under `auto`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "argocd-controller,argocd-application-controller,kustomize-controller,helm-controller"
    )]
    pub gitops_managers: Vec<String>,
    /// Commit values accepted in overlay mode to the Git repository each
    /// object came from (arcadia.cloud/git-* annotations, its Flux
    /// Kustomization, or its Argo CD Application).
    #[arg(long, default_value_t = false)]
    pub git_writeback: bool,
    /// The Secret (NAMESPACE/NAME, Flux GitRepository format: username and
    /// password) with the push credentials for objects without the
    /// arcadia.cloud/git-credentials annotation.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_secret_ref)]
    pub git_credentials_secret: Option<(String, String)>,
    /// URL prefixes (comma-separated) of the only remotes a write-back goes
    /// to, unless the object names credentials of its own namespace
    /// (arcadia.cloud/git-credentials); any other remote gets no request and
    /// the Drift says why. Empty: only such objects are written back.
    #[arg(long, value_name = "PREFIX[,PREFIX...]", value_delimiter = ',')]
    pub git_allowed_remotes: Vec<String>,
    /// Author and committer of write-back commits.
    #[arg(long, default_value = "arcadia-drift <arcadia-drift@localhost>")]
    pub git_author: String,
    /// Push each write-back to a new branch for review instead of the
    /// object's branch; a template of {namespace}, {name} and {field}, e.g.
    /// arcadia-drift/{namespace}-{name}-{field}.
    #[arg(long, value_name = "TEMPLATE")]
    pub git_push_branch: Option<String>,
    /// Allow sending Git credentials over plain http:// (for tests on loopback).
    #[arg(long, default_value_t = false)]
    pub git_allow_insecure_http: bool,
    /// The namespace of Argo CD Applications named in tracking ids without one.
    #[arg(long, default_value = "argocd")]
    pub argocd_namespace: String,
    /// How often the inventory is listed, jittered by ±10%.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub inventory_sync_interval: Duration,
    #[command(flatten)]
    pub providers: crate::providers::ProviderFlags,
    /// A CloudResource missing from its provider this long that no
    /// CloudProvisioned names is deleted (only when watching every namespace,
    /// the only view that can tell it is named nowhere).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub missing_retention: Duration,
    /// Carry out approved reverts (arcadia.cloud/revert=<plan digest> on a Drift)
    /// through the resource's provider; needs the provider's write credentials
    /// (DigitalOcean: a token with the write scopes in docs/revert.md). Off:
    /// approvals are refused and say so.
    #[arg(long, default_value_t = false)]
    pub enable_revert: bool,
    /// Revert sagas run at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reverts: u16,
    /// How long one revert step may go without an outcome (retries of 429s
    /// and 5xx, and waiting on its action, included) before it fails and the
    /// saga starts a resource it stopped again (a droplet it shut down).
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub revert_step_timeout: Duration,
    /// Which namespaces may revert a resource: tag (the resource carries its
    /// provider's claim tag, on DigitalOcean arcadia-ns:<namespace>) or any
    /// (single-tenant clusters).
    #[arg(long, default_value = "tag", value_parser = parse_revert_claim)]
    pub revert_claim: crate::revert::Claim,
}

pub use crate::runtime::duration::parse_duration;

fn parse_secret_ref(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok((ns.into(), name.into())),
        _ => Err(format!("{text:?} is not NAMESPACE/NAME")),
    }
}

fn parse_revert_claim(word: &str) -> Result<crate::revert::Claim, String> {
    crate::revert::Claim::parse(word.trim()).ok_or_else(|| {
        format!("{word:?} is not a revert claim rule: use one of {}", crate::revert::Claim::WORDS.join(", "))
    })
}

fn parse_accept_mode(word: &str) -> Result<AcceptMode, String> {
    AcceptMode::parse(word)
        .ok_or_else(|| format!("{word:?} is not an accept mode: use one of {}", AcceptMode::WORDS.join(", ")))
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// Exit codes of `check`, part of the command-line contract.
pub const EXIT_IN_SYNC: u8 = 0;
pub const EXIT_DRIFT: u8 = 1;
pub const EXIT_ERROR: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("arcadia-drift: error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The shard this replica handles, and its Leases: one per shard, and on a
/// sharded replica with providers the providers' one (`LEASE_NAME-providers`).
type Leases = (Option<LeaseConfig>, Option<LeaseConfig>);

fn shard_and_leases(args: &RunArgs, identity: &str, has_providers: bool) -> Result<(Shard, Leases), String> {
    let shard = Shard::from_flags(args.shard.as_deref(), &args.exclude_shards).map_err(|e| e.to_string())?;
    let lease = |name: String| {
        let namespace = args.lease_namespace.clone();
        crate::run::lease_config(name, namespace, args.lease_duration, identity.to_owned())
    };
    let own = match shard.name() {
        Some(name) => format!("{}-{name}", args.lease_name),
        None => args.lease_name.clone(),
    };
    let providers = format!("{}-{PROVIDERS_LEASE_SUFFIX}", args.lease_name);
    let election = args.leader_election;
    let providers = (election && shard.is_partial() && has_providers).then(|| lease(providers));
    Ok((shard, (election.then(|| lease(own)), providers)))
}

fn run(cli: Cli) -> Result<u8, String> {
    match cli.command {
        Command::Run(args) => {
            crate::runtime::memory::disable_transparent_huge_pages();
            init_tracing();
            crate::runtime::secrets::forbid_inspection().map_err(|e| e.to_string())?;
            let identity = args.identity.clone().unwrap_or_else(default_identity);
            let inventory = inventory_config(&args)?;
            let writeback = writeback_settings(&args)?;
            let args = *args;
            let decisions_namespace = args.lease_namespace.clone();
            let (shard, (lease, providers_lease)) = shard_and_leases(&args, &identity, inventory.is_some())?;
            let resources = crate::controller::caches::ResourceScope::of(shard.is_partial(), inventory.is_some());
            let config = crate::run::RunConfig {
                api_qps: args.api_qps,
                api_burst: args.api_burst,
                metrics_addr: args.metrics_addr,
                metrics_token_file: args.metrics_token_file,
                lease,
                providers_lease,
                controller: crate::controller::Settings {
                    namespace: args.namespace,
                    resync_interval: args.resync_interval,
                    max_inventory_age: args.max_inventory_age,
                    concurrency: args.concurrency.max(1),
                    identity,
                    accept: crate::accept::AcceptSettings {
                        default_mode: args.accept_mode,
                        gitops_managers: args
                            .gitops_managers
                            .iter()
                            .map(|m| m.trim().to_owned())
                            .filter(|m| !m.is_empty())
                            .collect(),
                    },
                    revert: crate::revert::RevertSettings { enabled: args.enable_revert, claim: args.revert_claim },
                    // Decided against the API server by `run`.
                    streaming_lists: false,
                    metric_fields: args
                        .metrics_fields
                        .iter()
                        .map(|f| f.trim().to_owned())
                        .filter(|f| !f.is_empty())
                        .collect(),
                    decisions_namespace,
                    shard,
                    resources,
                },
                inventory,
                writeback,
            };
            let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the async runtime: {e}"))?;
            runtime.block_on(crate::run::run(config)).map_err(|e| e.to_string())?;
            Ok(EXIT_IN_SYNC)
        }
        Command::Crds => {
            let yaml = crate::api::crds_yaml().map_err(|e| format!("cannot render the CRDs: {e}"))?;
            print_out(&yaml)?;
            Ok(EXIT_IN_SYNC)
        }
        Command::Check(args) => {
            let report =
                check::check_files(&args.provisioned, &args.inventory, &args.policies).map_err(|e| e.to_string())?;
            if let Some(path) = &args.write_ignore {
                check::write_ignore(path, &report).map_err(|e| e.to_string())?;
            }
            let text = match args.output {
                Output::Table => check::render_table(&report),
                Output::Json => {
                    serde_json::to_string_pretty(&report).map_err(|e| format!("cannot render the report: {e}"))? + "\n"
                }
            };
            print_out(&text)?;
            Ok(if report.is_in_sync() { EXIT_IN_SYNC } else { EXIT_DRIFT })
        }
    }
}

/// Writes to stdout without panicking when the reader went away (`| head`).
fn print_out(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("cannot write the output: {e}")),
        _ => Ok(()),
    }
}

/// The configured providers and what their syncers and reverter share.
/// Reads each provider's credentials: call it before any thread starts.
fn inventory_config(args: &RunArgs) -> Result<Option<crate::inventory::InventoryConfig>, String> {
    let common = crate::providers::contract::Common { revert: args.enable_revert };
    let providers = args.providers.configure(common).map_err(|e| e.to_string())?;
    if providers.is_empty() {
        return Ok(None);
    }
    let refresh_after = args.max_inventory_age / 2;
    if args.inventory_sync_interval >= refresh_after {
        return Err(format!(
            "--inventory-sync-interval ({:?}) must be shorter than half of --max-inventory-age ({:?}), or the inventory would go stale between syncs",
            args.inventory_sync_interval, args.max_inventory_age
        ));
    }
    Ok(Some(crate::inventory::InventoryConfig {
        providers,
        sync: crate::inventory::SyncSettings {
            source: String::new(),
            interval: args.inventory_sync_interval,
            feed_interval: None,
            state_namespace: args.lease_namespace.clone(),
            refresh_after,
            missing_retention: args.missing_retention,
        },
        revert: args.enable_revert.then(|| crate::inventory::reverter::ReverterSettings {
            max_concurrent: usize::from(args.max_concurrent_reverts),
            step_timeout: args.revert_step_timeout,
            claim: args.revert_claim,
            ..Default::default()
        }),
    }))
}

fn writeback_settings(args: &RunArgs) -> Result<Option<crate::writeback::WritebackSettings>, String> {
    if !args.git_writeback {
        return Ok(None);
    }
    let (author_name, author_email) =
        crate::writeback::commit::parse_author(&args.git_author).map_err(|e| format!("--git-author: {e}"))?;
    Ok(Some(crate::writeback::WritebackSettings {
        git: crate::writeback::git::GitSettings {
            author_name,
            author_email,
            push_branch: args.git_push_branch.clone(),
            allow_insecure_http: args.git_allow_insecure_http,
            max_attempts: 3,
            timeout: Duration::from_secs(60),
            max_fetch_bytes: crate::writeback::git::GitSettings::MAX_FETCH_BYTES,
        },
        credentials_secret: args.git_credentials_secret.clone(),
        allowed_remotes: allowed_remotes(&args.git_allowed_remotes)?,
        argocd_namespace: args.argocd_namespace.clone(),
    }))
}

/// Each prefix must start a remote git would take (`https://git.example/`,
/// `git@github.com:org/`): a typo must not allow everything.
fn allowed_remotes(prefixes: &[String]) -> Result<Vec<String>, String> {
    let prefixes: Vec<String> = prefixes.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
    for prefix in &prefixes {
        crate::writeback::remote_url::parse(&format!("{prefix}x")).map_err(|_| {
            format!("--git-allowed-remotes: {prefix:?} does not start a remote such as https://git.example/org/ or git@git.example:org/")
        })?;
    }
    Ok(prefixes)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_lease_manager=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    format!("{}-{}", if host.is_empty() { "arcadia-drift" } else { &host }, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_remotes_must_start_a_remote() {
        let ok = allowed_remotes(&["https://git.example/".into(), " git@git.example:org/ ".into(), "".into()]);
        assert_eq!(ok.unwrap(), ["https://git.example/", "git@git.example:org/"]);
        for bad in ["https://", "-u x", "file:///srv", "git.example"] {
            let error = allowed_remotes(&[bad.into()]).unwrap_err();
            assert!(
                error.starts_with("--git-allowed-remotes: ") && error.contains("does not start a remote"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5d").unwrap_err().to_string().contains("unknown unit"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
