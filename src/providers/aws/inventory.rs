//! AWS as an [`Inventory`]: each type listed page by page in every
//! configured region. EC2 ids are unique across regions, so an id is the
//! resource's name; the region it was listed in is remembered for reading it
//! again (and every region is asked for one never listed). No change feed.

use super::client::{Ec2, RegionClient, classify, not_found};
use super::{AwsType, NAME, model};
use crate::providers::contract::{Budget, ChangeFeed, ErrorClass, Inventory, Listing, LiveResource, ProviderError};
use aws_sdk_ec2::types::Filter;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Mutex;

/// Every state but `terminated`: a terminated instance is gone.
const LIVE_STATES: [&str; 5] = ["pending", "running", "shutting-down", "stopping", "stopped"];

/// One AWS account: its EC2 clients and the types mirrored from it.
pub struct Aws {
    pub ec2: Ec2,
    type_words: Vec<&'static str>,
    /// id → region, from the listings.
    regions_of: Mutex<HashMap<String, String>>,
}

impl Aws {
    pub fn new(ec2: Ec2, types: Vec<AwsType>) -> Self {
        let type_words = types.iter().map(|t| t.word()).collect();
        Self { ec2, type_words, regions_of: Mutex::new(HashMap::new()) }
    }

    /// Every resource of `t` in every region.
    pub async fn list_all(&self, t: AwsType) -> Result<Vec<LiveResource>, ProviderError> {
        let mut items = Vec::new();
        for region in &self.ec2.regions {
            let found = match t {
                AwsType::Instance => self.list_instances(region).await?,
                AwsType::Volume => self.list_volumes(region).await?,
                AwsType::SecurityGroup => self.list_security_groups(region).await?,
            };
            let mut regions_of = self.regions_of.lock().expect("region index lock poisoned");
            for item in &found {
                regions_of.insert(item.id.clone(), region.name.clone());
            }
            items.extend(found);
        }
        Ok(items)
    }

    async fn list_instances(&self, r: &RegionClient) -> Result<Vec<LiveResource>, ProviderError> {
        let (mut items, mut token) = (Vec::new(), None);
        let live = Filter::builder().name("instance-state-name").set_values(Some(LIVE_STATES.map(String::from).to_vec()));
        loop {
            self.ec2.permit().await;
            let page = r.reads.describe_instances().filters(live.clone().build()).max_results(self.ec2.config.page_size);
            let out = page.set_next_token(token.clone()).send().await;
            let out = out.map_err(|e| classify(e, &format!("DescribeInstances in {}", r.name), false))?;
            let instances = out.reservations().iter().flat_map(|res| res.instances());
            items.extend(instances.filter_map(|i| model::instance(&r.name, i)));
            token = next_page(token, out.next_token(), &r.name)?;
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    async fn list_volumes(&self, r: &RegionClient) -> Result<Vec<LiveResource>, ProviderError> {
        let (mut items, mut token) = (Vec::new(), None);
        loop {
            self.ec2.permit().await;
            let page = r.reads.describe_volumes().max_results(self.ec2.config.page_size.min(500));
            let out = page.set_next_token(token.clone()).send().await;
            let out = out.map_err(|e| classify(e, &format!("DescribeVolumes in {}", r.name), false))?;
            items.extend(out.volumes().iter().filter_map(|v| model::volume(&r.name, v)));
            token = next_page(token, out.next_token(), &r.name)?;
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    async fn list_security_groups(&self, r: &RegionClient) -> Result<Vec<LiveResource>, ProviderError> {
        let (mut items, mut token) = (Vec::new(), None);
        loop {
            self.ec2.permit().await;
            let page = r.reads.describe_security_groups().max_results(self.ec2.config.page_size);
            let out = page.set_next_token(token.clone()).send().await;
            let out = out.map_err(|e| classify(e, &format!("DescribeSecurityGroups in {}", r.name), false))?;
            items.extend(out.security_groups().iter().filter_map(|g| model::security_group(&r.name, g)));
            token = next_page(token, out.next_token(), &r.name)?;
            if token.is_none() {
                return Ok(items);
            }
        }
    }

    /// The region `id` lives in: as listed, else found by reading it in
    /// each region (as after a restart, before the first listing). `None`
    /// when no region has it.
    pub async fn home_of(&self, t: AwsType, id: &str) -> Result<Option<&RegionClient>, ProviderError> {
        let known = self.regions_of.lock().expect("region index lock poisoned").get(id).cloned();
        if let Some(name) = known {
            return Ok(self.ec2.regions.iter().find(|r| r.name == name));
        }
        Ok(self.get_one(t, id).await?.and_then(|found| {
            let name = found.region?;
            self.ec2.regions.iter().find(|r| r.name == name)
        }))
    }

    /// One resource by id: from the region it was listed in, else from the
    /// first region that has it. `None` when no region does.
    pub async fn get_one(&self, t: AwsType, id: &str) -> Result<Option<LiveResource>, ProviderError> {
        let known = self.regions_of.lock().expect("region index lock poisoned").get(id).cloned();
        let regions: Vec<&RegionClient> = match known {
            Some(name) => vec![self.ec2.region(&name)?],
            None => self.ec2.regions.iter().collect(),
        };
        for r in regions {
            if let Some(found) = self.get_in(r, t, id).await? {
                self.regions_of.lock().expect("region index lock poisoned").insert(id.to_owned(), r.name.clone());
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// One resource in one region; `None` on EC2's `*.NotFound` (and for a terminated instance).
    pub async fn get_in(&self, r: &RegionClient, t: AwsType, id: &str) -> Result<Option<LiveResource>, ProviderError> {
        self.ec2.permit().await;
        let request = |op: &str| format!("{op} {id} in {}", r.name);
        match t {
            AwsType::Instance => match r.reads.describe_instances().instance_ids(id).send().await {
                Ok(out) => Ok(out
                    .reservations()
                    .iter()
                    .flat_map(|res| res.instances())
                    .filter(|i| i.state().and_then(|s| s.name()).is_none_or(|n| n.as_str() != "terminated"))
                    .find_map(|i| model::instance(&r.name, i))),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(classify(e, &request("DescribeInstances"), false)),
            },
            AwsType::Volume => match r.reads.describe_volumes().volume_ids(id).send().await {
                Ok(out) => Ok(out.volumes().iter().find_map(|v| model::volume(&r.name, v))),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(classify(e, &request("DescribeVolumes"), false)),
            },
            AwsType::SecurityGroup => match r.reads.describe_security_groups().group_ids(id).send().await {
                Ok(out) => Ok(out.security_groups().iter().find_map(|g| model::security_group(&r.name, g))),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(classify(e, &request("DescribeSecurityGroups"), false)),
            },
        }
    }
}

/// The token of the next page, `None` after the last; an error when EC2
/// hands back the token just used (which would page forever).
fn next_page(used: Option<String>, next: Option<&str>, region: &str) -> Result<Option<String>, ProviderError> {
    let next = next.filter(|t| !t.is_empty()).map(str::to_owned);
    if next.is_some() && next == used {
        return Err(ProviderError {
            class: ErrorClass::Transient,
            kind: "malformed",
            fenced: false,
            message: format!("EC2 in {region} gave the same NextToken twice; the listing is not trusted"),
        });
    }
    Ok(next)
}

/// A type word this provider does not have: a refusal, never "none".
fn unknown_type(word: &str) -> ProviderError {
    let message = format!("AWS has no resource type {word:?} here; known: instance, volume, security_group");
    ProviderError::refused("unknown_type", message)
}

impl Inventory for Aws {
    fn provider(&self) -> &'static str {
        NAME
    }

    fn types(&self) -> &[&'static str] {
        &self.type_words
    }

    fn list<'a>(&'a self, type_: &'a str) -> BoxFuture<'a, Result<Listing, ProviderError>> {
        async move {
            let t = AwsType::parse(type_).ok_or_else(|| unknown_type(type_))?;
            Ok(Listing { items: self.list_all(t).await?, short: false })
        }
        .boxed()
    }

    fn get<'a>(&'a self, type_: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<LiveResource>, ProviderError>> {
        async move {
            let t = AwsType::parse(type_).ok_or_else(|| unknown_type(type_))?;
            self.get_one(t, id).await
        }
        .boxed()
    }

    fn feed(&self) -> Option<&dyn ChangeFeed> {
        None
    }

    fn budget(&self) -> Budget {
        Budget {
            requests_sent: self.ec2.requests_sent(),
            requests_per_second: self.ec2.config.requests_per_second,
            limit: None,
            remaining: None,
        }
    }
}
