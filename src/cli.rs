//! The `arcadia-drift` command line: argument parsing and the mapping of each
//! subcommand's outcome to an exit code.

use crate::check;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "arcadia-drift",
    version,
    about = "Drift detection for cloud infrastructure, inside Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every CustomResourceDefinition as multi-document YAML.
    Crds,
    /// Offline one-shot detection over manifests.
    /// Exit 0 in sync, 1 drift (or a missing resource) found, 2 error.
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
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
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

fn run(cli: Cli) -> Result<u8, String> {
    match cli.command {
        Command::Crds => {
            let yaml =
                crate::api::crds_yaml().map_err(|e| format!("cannot render the CRDs: {e}"))?;
            print_out(&yaml)?;
            Ok(EXIT_IN_SYNC)
        }
        Command::Check(args) => {
            let report = check::check_files(&args.provisioned, &args.inventory)
                .map_err(|e| e.to_string())?;
            let text = match args.output {
                Output::Table => check::render_table(&report),
                Output::Json => {
                    serde_json::to_string_pretty(&report)
                        .map_err(|e| format!("cannot render the report: {e}"))?
                        + "\n"
                }
            };
            print_out(&text)?;
            Ok(if report.is_in_sync() {
                EXIT_IN_SYNC
            } else {
                EXIT_DRIFT
            })
        }
    }
}

/// Writes to stdout without panicking when the reader went away (`| head`).
fn print_out(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the output: {e}"))
        }
        _ => Ok(()),
    }
}
