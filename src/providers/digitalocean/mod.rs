//! DigitalOcean, the first provider: its API client ([`client`], with the
//! call shapes it may send in [`calls`]), the resource models ([`model`]),
//! the actions feed ([`feed`]), the revert planning ([`plan`]), and the
//! provider contract's traits over them ([`inventory`], [`actuator`]).

pub mod actuator;
pub mod calls;
pub mod client;
pub mod feed;
pub mod flags;
pub mod inventory;
pub mod model;
pub mod plan;

use crate::providers::contract::LiveResource;
use client::{DoClient, DoError};
use serde::de::DeserializeOwned;

/// The name `CloudResource.spec.provider` carries for DigitalOcean.
pub const NAME: &str = "digitalocean";

pub use flags::Flags;

/// How DigitalOcean is configured, for messages that need a provider.
pub const CREDENTIALS: &str =
    "a DigitalOcean token (--digitalocean-token-file or DIGITALOCEAN_TOKEN) with the write scopes in docs/revert.md";

/// The names DigitalOcean's request metrics had before `provider_*`.
pub const LEGACY_METRIC_PREFIX: Option<&str> = Some("digitalocean");

/// DigitalOcean's planner, as the registry holds it.
pub static PLANNER: plan::DoPlanner = plan::DoPlanner;

/// The name `CloudResource.spec.provider` carries for DigitalOcean.
pub const PROVIDER: &str = NAME;

/// A resource type the syncer mirrors, in the API's own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DoType {
    Droplet,
    Volume,
    LoadBalancer,
    Database,
    KubernetesCluster,
    Firewall,
}

impl DoType {
    pub const ALL: [DoType; 6] = [
        DoType::Droplet,
        DoType::Volume,
        DoType::LoadBalancer,
        DoType::Database,
        DoType::KubernetesCluster,
        DoType::Firewall,
    ];

    pub fn word(self) -> &'static str {
        match self {
            DoType::Droplet => "droplet",
            DoType::Volume => "volume",
            DoType::LoadBalancer => "load_balancer",
            DoType::Database => "database",
            DoType::KubernetesCluster => "kubernetes_cluster",
            DoType::Firewall => "firewall",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.word() == word)
    }

    /// (collection path, list key, single-object key)
    fn endpoint(self) -> (&'static str, &'static str, &'static str) {
        match self {
            DoType::Droplet => ("/v2/droplets", "droplets", "droplet"),
            DoType::Volume => ("/v2/volumes", "volumes", "volume"),
            DoType::LoadBalancer => ("/v2/load_balancers", "load_balancers", "load_balancer"),
            DoType::Database => ("/v2/databases", "databases", "database"),
            DoType::KubernetesCluster => ("/v2/kubernetes/clusters", "kubernetes_clusters", "kubernetes_cluster"),
            DoType::Firewall => ("/v2/firewalls", "firewalls", "firewall"),
        }
    }
}

/// One type's complete listing.
#[derive(Debug)]
pub struct TypeListing {
    pub items: Vec<LiveResource>,
    pub requests: u32,
    /// The listing may have missed an item (see [`client::Listing::short`]).
    pub short: bool,
}

/// One DigitalOcean account: its client and the types mirrored from it.
pub struct DigitalOcean {
    pub client: DoClient,
    types: Vec<DoType>,
    type_words: Vec<&'static str>,
}

impl DigitalOcean {
    pub fn new(client: DoClient, types: Vec<DoType>) -> Self {
        let type_words = types.iter().map(|t| t.word()).collect();
        Self { client, types, type_words }
    }

    pub async fn list(&self, t: DoType) -> Result<TypeListing, DoError> {
        match t {
            // GPU droplets are only listed with type=gpus.
            DoType::Droplet => {
                let mut all = self.list_as::<model::Droplet>(t, "").await?;
                let gpus = self.list_as::<model::Droplet>(t, "type=gpus").await?;
                for item in gpus.items {
                    if !all.items.iter().any(|o| o.id == item.id) {
                        all.items.push(item);
                    }
                }
                all.requests += gpus.requests;
                all.short |= gpus.short;
                Ok(all)
            }
            DoType::Volume => self.list_as::<model::Volume>(t, "").await,
            DoType::LoadBalancer => self.list_as::<model::LoadBalancer>(t, "").await,
            DoType::Database => self.list_as::<model::Database>(t, "").await,
            DoType::KubernetesCluster => self.list_as::<model::KubernetesCluster>(t, "").await,
            DoType::Firewall => self.list_as::<model::Firewall>(t, "").await,
        }
    }

    async fn list_as<M>(&self, t: DoType, query: &str) -> Result<TypeListing, DoError>
    where
        M: DeserializeOwned + Into<LiveResource>,
    {
        let (path, key, _) = t.endpoint();
        let listing = self.client.list::<M>(path, key, query).await?;
        Ok(TypeListing {
            items: listing.items.into_iter().map(Into::into).collect(),
            requests: listing.requests,
            short: listing.short,
        })
    }

    /// The newest page of the account's actions (`GET /v2/actions`).
    pub async fn actions(&self, per_page: u32) -> Result<Vec<feed::DoAction>, DoError> {
        self.client.first_page("/v2/actions", "actions", per_page).await
    }

    /// One action by id (`GET /v2/actions/{id}`); `None` on 404.
    pub async fn action(&self, id: u64) -> Result<Option<feed::DoAction>, DoError> {
        self.client.get(&format!("/v2/actions/{id}"), "action").await
    }

    /// The actions of one droplet or volume (`GET /v2/droplets/{id}/actions`),
    /// newest first. The API documents no order for this list, so every page
    /// is read (200 actions a page) and the actions are sorted here: the
    /// reverter's wait and recovery must see the newest.
    pub async fn resource_actions(&self, t: DoType, id: &str) -> Result<Vec<feed::DoAction>, DoError> {
        let (path, _, _) = t.endpoint();
        let mut actions: Vec<feed::DoAction> =
            self.client.list(&format!("{path}/{id}/actions"), "actions", "").await?.items;
        actions.sort_by_key(|a| std::cmp::Reverse(a.id));
        Ok(actions)
    }

    /// Sends one revert call; the id of the action it started, when it starts one.
    /// `fence` is asked right before the request leaves: false sends nothing.
    pub async fn call(
        &self,
        call: &crate::api::ProviderCall,
        fence: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<u64>, DoError> {
        let body = self.client.write(&call.method, &call.path, &call.body, fence).await?;
        if !call.waits_for_action {
            return Ok(None);
        }
        let malformed = |detail: String| DoError::Malformed {
            request: format!("{} {}", call.method, call.path),
            detail,
            write: true,
        };
        let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| malformed(e.to_string()))?;
        let id = answer.pointer("/action/id").and_then(serde_json::Value::as_u64);
        id.map(Some).ok_or_else(|| malformed("no `action.id` in the answer".into()))
    }

    /// One resource by id; `None` when the API answers 404.
    pub async fn get(&self, t: DoType, id: &str) -> Result<Option<LiveResource>, DoError> {
        let (path, _, key) = t.endpoint();
        let path = format!("{path}/{id}");
        Ok(match t {
            DoType::Droplet => self.client.get::<model::Droplet>(&path, key).await?.map(Into::into),
            DoType::Volume => self.client.get::<model::Volume>(&path, key).await?.map(Into::into),
            DoType::LoadBalancer => self.client.get::<model::LoadBalancer>(&path, key).await?.map(Into::into),
            DoType::Database => self.client.get::<model::Database>(&path, key).await?.map(Into::into),
            DoType::KubernetesCluster => self.client.get::<model::KubernetesCluster>(&path, key).await?.map(Into::into),
            DoType::Firewall => self.client.get::<model::Firewall>(&path, key).await?.map(Into::into),
        })
    }
}
