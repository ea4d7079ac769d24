//! DigitalOcean's command-line flags, flattened into `arcadia-drift run`,
//! and the [`Setup`] they configure.

use super::client::{self, ClientConfig, DoClient};
use super::{DigitalOcean, DoType, NAME};
use crate::providers::contract::{Built, Common, ProviderError, Setup, SetupError};
use crate::runtime::duration::{OptionalDuration, parse_duration, parse_optional_duration};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable read for the token when no file is given.
const TOKEN_VAR: &str = "DIGITALOCEAN_TOKEN";

#[derive(clap::Args, Clone, Debug)]
pub struct Flags {
    /// A file holding the DigitalOcean API token (read scopes; a mounted
    /// Secret's key); when set, `run` also syncs the DigitalOcean inventory into
    /// CloudResource objects. The environment variable DIGITALOCEAN_TOKEN is
    /// still read when no file is given.
    #[arg(long, value_name = "PATH")]
    pub digitalocean_token_file: Option<PathBuf>,
    /// Base URL of the DigitalOcean API.
    #[arg(long, default_value = client::DEFAULT_API_URL)]
    pub digitalocean_api_url: String,
    /// How often the DigitalOcean actions feed is read, so a resize or a rename
    /// shows in seconds rather than at the next full sync; `0` turns it off.
    #[arg(long, default_value = "10s", value_parser = parse_optional_duration)]
    pub digitalocean_actions_interval: OptionalDuration,
    /// Resource types to mirror (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "droplet,volume,load_balancer,database,kubernetes_cluster,firewall"
    )]
    pub digitalocean_types: Vec<String>,
    /// Name of this inventory source: the `arcadia.cloud/source` label of the
    /// CloudResources it writes. Use one per DigitalOcean account.
    #[arg(long, default_value = "digitalocean")]
    pub inventory_source: String,
    /// Sustained DigitalOcean requests per hour this process allows itself
    /// (the account limit is 5,000/hour and 250/minute).
    #[arg(long, default_value_t = 2500)]
    pub digitalocean_requests_per_hour: u32,
    /// How long one DigitalOcean request may take, answer included. A write
    /// with no answer by then may have happened: a revert looks for its action
    /// before sending it again.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub digitalocean_request_timeout: Duration,
}

/// DigitalOcean as the flags configured it.
#[derive(Clone, Debug)]
pub struct DoSetup {
    pub client: ClientConfig,
    pub types: Vec<DoType>,
    pub source: String,
    pub feed_interval: Option<Duration>,
}

impl Flags {
    /// The setup these flags describe; `None` without a token. Reads the
    /// token (see [`Flags::token`]): call it once, before any thread starts.
    /// Without a token DigitalOcean is not configured (`--enable-revert` with
    /// no provider at all is the registry's to refuse); it needs nothing of `_common`.
    pub fn configure(&self, _common: Common) -> Result<Option<Arc<dyn Setup>>, SetupError> {
        let Some(token) = self.token()? else { return Ok(None) };
        let types = self
            .digitalocean_types
            .iter()
            .map(|w| {
                DoType::parse(w.trim()).ok_or_else(|| {
                    let known: Vec<_> = DoType::ALL.iter().map(|t| t.word()).collect();
                    let why = format!("unknown type {w:?}; known: {}", known.join(", "));
                    SetupError::BadValue { flag: "--digitalocean-types", why }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = ClientConfig::new(&self.digitalocean_api_url, client::Token::new(token));
        config.requests_per_second = f64::from(self.digitalocean_requests_per_hour.max(1)) / 3600.0;
        config.timeout = self.digitalocean_request_timeout;
        Ok(Some(Arc::new(DoSetup {
            client: config,
            types,
            source: self.inventory_source.clone(),
            feed_interval: self.digitalocean_actions_interval.0,
        })))
    }

    /// The token from `--digitalocean-token-file`, else from DIGITALOCEAN_TOKEN,
    /// which is then taken out of the environment (and overwritten in the
    /// process's first environment) so no child inherits it and `/proc` shows none.
    fn token(&self) -> Result<Option<String>, SetupError> {
        let from_env = std::env::var(TOKEN_VAR).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        // SAFETY: called from `main` before the async runtime or any other thread starts.
        unsafe { crate::runtime::secrets::scrub_from_environment(TOKEN_VAR) };
        match (&self.digitalocean_token_file, from_env) {
            (Some(path), None) => Ok(Some(crate::runtime::secrets::read_token_file(path, "--digitalocean-token-file")?)),
            (Some(_), Some(_)) => {
                Err(SetupError::TokenTwoWays { flag: "--digitalocean-token-file", variable: TOKEN_VAR })
            }
            (None, token) => Ok(token),
        }
    }
}

impl Setup for DoSetup {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn feed_interval(&self) -> Option<Duration> {
        self.feed_interval
    }

    fn endpoint(&self) -> String {
        self.client.api_url.clone()
    }

    fn build(&self) -> BoxFuture<'_, Result<Built, ProviderError>> {
        let built = DoClient::new(self.client.clone()).map(|client| {
            let account = Arc::new(DigitalOcean::new(client, self.types.clone()));
            Built { inventory: account.clone() as Arc<dyn crate::providers::contract::Inventory>, actuator: account }
        });
        futures::future::ready(built.map_err(ProviderError::from)).boxed()
    }
}
