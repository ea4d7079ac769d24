//! Reads and writes the decision journal (see [`super::plan::journal`]):
//! [`PARTS`] ConfigMaps `arcadia-drift-decisions-N` in the controller's own
//! namespace (`arcadia-drift-decisions-SHARD-N` for a named shard, whose
//! leader writes its own), a tenant namespace's entries all in one of them (by a hash of
//! its name). Only the leader writes them, so what it has read or written is
//! kept in memory and each part is read once per leadership.

use super::plan::journal::{Entry, MAX_ENTRIES};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub const PARTS: u32 = 16;
pub const NAME_PREFIX: &str = "arcadia-drift-decisions-";
/// An entry larger than this is not kept (a huge live value), with a warning.
const MAX_ENTRY_BYTES: usize = 4096;
/// A part is kept under this many bytes (a ConfigMap holds 1 MiB), oldest entries out first.
const MAX_PART_BYTES: usize = 900 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("reading the decision journal ConfigMap {namespace}/{name}: {source}")]
    Read { namespace: String, name: String, source: kube::Error },
    #[error("writing the decision journal ConfigMap {namespace}/{name}: {source}")]
    Write { namespace: String, name: String, source: kube::Error },
}

impl JournalError {
    pub fn source_error(&self) -> &kube::Error {
        let (JournalError::Read { source, .. } | JournalError::Write { source, .. }) = self;
        source
    }
}

pub struct Journal {
    api: Api<ConfigMap>,
    namespace: String,
    /// Each part's entries by key, once read; a lock per part, held across
    /// its read or write so the copy in memory stays the ConfigMap's.
    parts: Vec<tokio::sync::Mutex<Option<BTreeMap<String, Entry>>>>,
    /// The shard whose journal this is (`None`: the unnamed one).
    shard: Option<String>,
}

fn part_of(namespace: &str) -> u32 {
    crate::api::fnv1a(namespace) % PARTS
}

/// The ConfigMap of one part: per shard, since each shard's leader keeps
/// its own copy in memory and would not see another's writes.
pub fn part_name(shard: Option<&str>, part: u32) -> String {
    match shard {
        Some(shard) => format!("{NAME_PREFIX}{shard}-{part}"),
        None => format!("{NAME_PREFIX}{part}"),
    }
}

impl Journal {
    pub fn new(client: kube::Client, namespace: &str, shard: Option<&str>) -> Self {
        let parts = (0..PARTS).map(|_| tokio::sync::Mutex::new(None)).collect();
        let shard = shard.map(str::to_owned);
        Journal { api: Api::namespaced(client, namespace), namespace: namespace.to_owned(), shard, parts }
    }

    /// The entries kept for a tenant namespace.
    pub async fn entries(&self, tenant: &str) -> Result<BTreeMap<String, Entry>, JournalError> {
        let part = part_of(tenant);
        let mut guard = self.parts[part as usize].lock().await;
        let all = match guard.as_mut() {
            Some(all) => all,
            None => guard.insert(self.read(part).await?),
        };
        let prefix = format!("{tenant}.");
        Ok(all.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, e)| (k.clone(), e.clone())).collect())
    }

    async fn read(&self, part: u32) -> Result<BTreeMap<String, Entry>, JournalError> {
        let name = part_name(self.shard.as_deref(), part);
        let map = self.api.get_opt(&name).await.map_err(|source| JournalError::Read {
            namespace: self.namespace.clone(),
            name: name.clone(),
            source,
        })?;
        let data = map.and_then(|m| m.data).unwrap_or_default();
        Ok(data
            .into_iter()
            .filter_map(|(k, v)| match serde_json::from_str::<Entry>(&v) {
                Ok(entry) => Some((k, entry)),
                Err(error) => {
                    tracing::warn!(key = %k, %error, "an unreadable decision journal entry is left out");
                    None
                }
            })
            .collect())
    }

    /// Writes the changed entries of a tenant namespace (`None` removes one);
    /// past [`MAX_ENTRIES`] the oldest go.
    pub async fn apply(&self, tenant: &str, changes: BTreeMap<String, Option<Entry>>) -> Result<(), JournalError> {
        if changes.is_empty() {
            return Ok(());
        }
        let part = part_of(tenant);
        let mut guard = self.parts[part as usize].lock().await;
        let all = match guard.as_mut() {
            Some(all) => all,
            None => guard.insert(self.read(part).await?),
        };
        let mut next = all.clone();
        let mut data = Map::new();
        for (k, v) in changes {
            let text = v.as_ref().map(|e| serde_json::to_string(e).expect("an entry serializes"));
            if text.as_ref().is_some_and(|t| t.len() > MAX_ENTRY_BYTES) {
                tracing::warn!(key = %k, "a decision too large to keep in the journal (over 4 KiB); it will not survive a restore");
                continue;
            }
            match v {
                Some(entry) => next.insert(k.clone(), entry),
                None => next.remove(&k),
            };
            data.insert(k, text.map_or(Value::Null, Value::String));
        }
        if data.is_empty() {
            return Ok(());
        }
        for k in evict(&mut next, tenant) {
            data.insert(k, Value::Null);
        }
        self.write(part, data).await?;
        *all = next;
        Ok(())
    }

    async fn write(&self, part: u32, data: Map<String, Value>) -> Result<(), JournalError> {
        let name = part_name(self.shard.as_deref(), part);
        let fail = |source| JournalError::Write { namespace: self.namespace.clone(), name: name.clone(), source };
        let params = PatchParams { field_manager: Some(crate::api::FIELD_MANAGER.into()), ..Default::default() };
        match self.api.patch(&name, &params, &Patch::Merge(json!({"data": data}))).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let data: BTreeMap<String, String> =
                    data.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect();
                let map = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "arcadia-drift".to_owned(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &map).await.map(|_| ()).map_err(fail)
            }
            Err(source) => Err(fail(source)),
        }
    }
}

/// Removes the oldest entries of `tenant` past [`MAX_ENTRIES`], then the
/// oldest of the part past [`MAX_PART_BYTES`]; their keys.
fn evict(all: &mut BTreeMap<String, Entry>, tenant: &str) -> Vec<String> {
    let prefix = format!("{tenant}.");
    let by_age = |all: &BTreeMap<String, Entry>, mine: bool| {
        let mut keys: Vec<(k8s_openapi::jiff::Timestamp, String)> = all
            .iter()
            .filter(|(k, _)| !mine || k.starts_with(&prefix))
            .map(|(k, e)| (e.kept_time.0, k.clone()))
            .collect();
        keys.sort();
        keys
    };
    let mine = by_age(all, true);
    let mut gone: Vec<String> =
        mine.iter().take(mine.len().saturating_sub(MAX_ENTRIES)).map(|(_, k)| k.clone()).collect();
    gone.iter().for_each(|k| {
        all.remove(k);
    });
    let size = |e: &Entry| serde_json::to_string(e).map_or(0, |t| t.len());
    let mut bytes: usize = all.iter().map(|(k, e)| k.len() + size(e)).sum();
    for (_, k) in by_age(all, false) {
        if bytes <= MAX_PART_BYTES {
            break;
        }
        if let Some(e) = all.remove(&k) {
            bytes -= k.len() + size(&e);
            gone.push(k);
        }
    }
    gone
}
