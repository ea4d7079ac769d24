//! DigitalOcean as an [`Inventory`]: the types it mirrors, listed and read
//! through [`DigitalOcean`]'s client, and the account's actions feed as its
//! [`ChangeFeed`], whose cursor is [`feed::encode`]'s form.

use super::client::DoError;
use super::feed::{self, Position};
use super::{DigitalOcean, DoType, NAME};
use crate::providers::contract::{Budget, ChangeFeed, FeedPoll, Inventory, Listing, LiveResource, ProviderError};
use futures::FutureExt;
use futures::future::BoxFuture;

/// How many actions one poll of the feed reads.
pub const FEED_PAGE: u32 = 50;

impl From<DoError> for ProviderError {
    fn from(e: DoError) -> Self {
        ProviderError {
            class: e.class(),
            kind: e.kind(),
            fenced: matches!(e, DoError::Fenced { .. }),
            message: e.to_string(),
        }
    }
}

/// A type word this provider does not have: a refusal, never "none".
fn unknown_type(word: &str) -> ProviderError {
    ProviderError::refused("unknown_type", format!("DigitalOcean has no resource type {word:?}"))
}

impl Inventory for DigitalOcean {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn types(&self) -> &[&'static str] {
        &self.type_words
    }

    fn list<'a>(&'a self, type_: &'a str) -> BoxFuture<'a, Result<Listing, ProviderError>> {
        async move {
            let t = DoType::parse(type_).ok_or_else(|| unknown_type(type_))?;
            let listing = DigitalOcean::list(self, t).await?;
            Ok(Listing { items: listing.items, short: listing.short })
        }
        .boxed()
    }

    fn get<'a>(&'a self, type_: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<LiveResource>, ProviderError>> {
        async move {
            let t = DoType::parse(type_).ok_or_else(|| unknown_type(type_))?;
            Ok(DigitalOcean::get(self, t, id).await?)
        }
        .boxed()
    }

    fn feed(&self) -> Option<&dyn ChangeFeed> {
        Some(self)
    }

    fn budget(&self) -> Budget {
        let limit = self.client.rate_limit();
        Budget {
            requests_sent: self.client.requests_sent(),
            requests_per_second: self.client.requests_per_second(),
            limit: limit.limit,
            remaining: limit.remaining,
        }
    }
}

impl ChangeFeed for DigitalOcean {
    fn name(&self) -> &'static str {
        "actions"
    }

    fn cursor_key(&self) -> &'static str {
        "arcadia.cloud/actions-position"
    }

    fn poll<'a>(&'a self, cursor: &'a str) -> BoxFuture<'a, Result<FeedPoll, ProviderError>> {
        async move {
            let position = feed::decode(cursor);
            let page = self.actions(FEED_PAGE).await?;
            let (waited, gone) = self.actions_left_the_page(&position, &page).await;
            let plan = feed::plan_poll(&position, &page, (&waited, &gone), FEED_PAGE as usize, &self.types);
            Ok(FeedPoll {
                refresh: plan.refresh.into_iter().map(|(t, id)| (t.word().to_owned(), id)).collect(),
                full_listing: plan.full_listing.into_iter().map(|t| t.word().to_owned()).collect(),
                cursor: feed::encode(&plan.position),
            })
        }
        .boxed()
    }
}

impl DigitalOcean {
    /// The actions in progress at the last poll that have left the page,
    /// each read by id: those read, and those the API no longer knows (404).
    /// One that cannot be read now stays in progress, asked again next poll.
    async fn actions_left_the_page(&self, position: &Position, page: &[feed::DoAction]) -> (Vec<feed::DoAction>, Vec<u64>) {
        let (mut waited, mut gone) = (Vec::new(), Vec::new());
        for id in feed::left_the_page(position, page) {
            match self.action(id).await {
                Ok(Some(action)) => waited.push(action),
                Ok(None) => gone.push(id),
                Err(error) => {
                    tracing::info!(%error, action = id, "cannot read an action in progress; asking again next poll")
                }
            }
        }
        (waited, gone)
    }
}
