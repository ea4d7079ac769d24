//! Kustomize layouts: from the searched folder's kustomization file, which
//! files of the repository make up what the GitOps tool applies (its
//! `resources:` and `components:`, followed into `../base` and the like), and
//! whether anything on the way (a patch, a replacement, a plugin) may change
//! the field, in which case the plain manifest must not be edited.
//!
//! Pure: the tree listing and the texts come in, the files to read next and
//! the decision go out. git.rs reads in rounds: [`Walk::to_read`] names the
//! kustomization (and patch) files to read, [`Walk::feed`] takes their texts,
//! until nothing is left to read; [`Walk::finish`] gives the [`Plan`].
//! Everything read stays inside the repository and within the [`Limits`] of
//! tree.rs, all files together.

use super::commit::Change;
use super::edit::read_json;
use super::files::{self, Decision};
use super::tree::{self, Blob, Limits, TreeError};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The names kustomize looks for in a folder, in its order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Kustomizations followed below the searched one, at most.
pub const MAX_DEPTH: usize = 10;

/// Where a patch's (or a replacement's) text is.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Inline(String),
    File(String),
    /// Named, but not a readable file of the repository.
    Missing(String),
}

/// Something in a kustomization that may change resources.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// A strategic-merge or JSON 6902 patch (told apart by its text), with its `target`.
    Patch { target: Option<Value>, source: Source },
    /// `replacements:` (inline, or the file that holds them).
    Replacements(Source),
    /// A `transformers:` or `generators:` plugin: what it changes cannot be told.
    Plugin,
    /// The kustomization file itself cannot be read.
    Unreadable(String),
}

/// One entry of a kustomization file that may change resources.
#[derive(Clone, Debug, PartialEq)]
pub struct Modifier {
    /// The kustomization file.
    pub origin: String,
    /// Which entry, e.g. `patches[0]`.
    pub entry: String,
    pub what: What,
}

/// What was found: the manifests to decide over, and what may change them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Plain manifests (resources), to read and decide over.
    pub manifests: Vec<Blob>,
    /// Every file read, in order (kustomization and patch files too).
    pub searched: Vec<String>,
    pub passed_over: Vec<(String, &'static str)>,
    pub modifiers: Vec<Modifier>,
    /// The texts of patch and replacement files.
    pub texts: BTreeMap<String, String>,
    /// The namespace a kustomization's `namespace:` gives a manifest's documents.
    pub namespaces: BTreeMap<String, String>,
}

/// The walk from the searched path through its kustomizations.
pub struct Walk {
    index: BTreeMap<String, Blob>,
    root: String,
    limits: Limits,
    /// Kustomization files to read next, with where they stand.
    queued: Vec<(Blob, Level)>,
    /// Patch and replacement files to read next.
    wanted: Vec<Blob>,
    /// Handed out by `to_read`, not fed yet (`Some`: a kustomization file).
    awaiting: Vec<(Blob, Option<Level>)>,
    visited: BTreeSet<String>,
    bytes: u64,
    plan: Plan,
}

/// Where a kustomization stands: how deep, and the namespace an outer one
/// (or itself) gives every resource it includes; the outermost one wins.
#[derive(Clone, Debug, Default, PartialEq)]
struct Level {
    depth: usize,
    namespace: Option<String>,
}

/// Whether `root` is a folder with a kustomization file.
pub fn is_kustomized(blobs: &[Blob], root: &str) -> bool {
    FILE_NAMES.iter().any(|name| blobs.iter().any(|b| b.path == join(root, name)))
}

impl Walk {
    /// Without a kustomization file in `root`, every YAML file under it is a manifest.
    pub fn new(blobs: Vec<Blob>, root: &str, limits: Limits) -> Result<Walk, TreeError> {
        let index: BTreeMap<String, Blob> = blobs.into_iter().map(|b| (b.path.clone(), b)).collect();
        let mut walk = Walk {
            index,
            root: root.to_owned(),
            limits,
            queued: Vec::new(),
            wanted: Vec::new(),
            awaiting: Vec::new(),
            visited: BTreeSet::from([root.to_owned()]),
            bytes: 0,
            plan: Plan::default(),
        };
        if let Some(file) = walk.kustomization_of(root) {
            walk.visited.insert(file.path.clone());
            walk.queued.push((file, Level::default()));
        } else {
            let selection = tree::select(walk.index.values().cloned().collect(), root, &limits)?;
            walk.plan.searched = selection.read.iter().map(|b| b.path.clone()).collect();
            walk.plan.manifests = selection.read;
            walk.plan.passed_over = selection.passed_over;
        }
        Ok(walk)
    }

    /// The files to read now; empty when the walk is done.
    pub fn to_read(&mut self) -> Result<Vec<Blob>, TreeError> {
        let mut out = Vec::new();
        for (blob, level) in std::mem::take(&mut self.queued) {
            match self.admit(&blob)? {
                None => {
                    out.push(blob.clone());
                    self.awaiting.push((blob, Some(level)));
                }
                Some(why) => self.unreadable(&blob.path, why),
            }
        }
        for blob in std::mem::take(&mut self.wanted) {
            match self.admit(&blob)? {
                None => {
                    out.push(blob.clone());
                    self.awaiting.push((blob, None));
                }
                // Its text stays unknown: the patch is taken to change anything.
                Some(why) => self.plan.passed_over.push((blob.path, why)),
            }
        }
        Ok(out)
    }

    /// The texts of the files `to_read` named (a file that is not UTF-8 is missing).
    pub fn feed(&mut self, texts: Vec<(String, String)>) -> Result<(), TreeError> {
        let mut texts: BTreeMap<String, String> = texts.into_iter().collect();
        for (blob, level) in std::mem::take(&mut self.awaiting) {
            match (level, texts.remove(&blob.path)) {
                (Some(level), Some(text)) => self.expand(&blob.path, level, &text)?,
                (Some(_), None) => self.unreadable(&blob.path, "not UTF-8 text"),
                (None, Some(text)) => drop(self.plan.texts.insert(blob.path, text)),
                (None, None) => {}
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Plan {
        self.plan
    }

    fn kustomization_of(&self, dir: &str) -> Option<Blob> {
        FILE_NAMES.iter().find_map(|name| self.index.get(&join(dir, name))).cloned()
    }

    fn is_dir(&self, path: &str) -> bool {
        let prefix = if path.is_empty() { String::new() } else { format!("{path}/") };
        self.index.range(prefix.clone()..).next().is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    /// `Some(reason)` when `blob` is not read; an error when the search's bounds are passed.
    fn admit(&mut self, blob: &Blob) -> Result<Option<&'static str>, TreeError> {
        if let Some(why) = tree::pass_over_reason(blob, blob.path.matches('/').count(), &self.limits) {
            return Ok(Some(why));
        }
        if self.plan.searched.len() == self.limits.files {
            return Err(TreeError::TooManyFiles { path: self.root.clone(), limit: self.limits.files });
        }
        self.bytes += blob.size;
        if self.bytes > self.limits.total_bytes {
            return Err(TreeError::TooManyBytes { path: self.root.clone(), limit: self.limits.total_bytes });
        }
        self.plan.searched.push(blob.path.clone());
        Ok(None)
    }

    fn unreadable(&mut self, origin: &str, why: impl Into<String>) {
        let what = What::Unreadable(why.into());
        self.plan.modifiers.push(Modifier { origin: origin.to_owned(), entry: String::new(), what });
    }

    /// Follows a kustomization file's resources and records what may change them.
    fn expand(&mut self, file: &str, level: Level, text: &str) -> Result<(), TreeError> {
        let doc = match read_json(text) {
            Ok(docs) => docs.into_iter().next().unwrap_or(Value::Null),
            Err(error) => {
                self.unreadable(file, format!("not valid YAML: {error}"));
                return Ok(());
            }
        };
        let Some(map) = doc.as_object() else {
            self.unreadable(file, "not a map");
            return Ok(());
        };
        let dir = parent(file).to_owned();
        let own = text_of(&doc, "namespace").map(str::to_owned);
        let level = Level { namespace: level.namespace.or(own), ..level };
        for key in ["resources", "components", "bases"] {
            for (i, entry) in list(map.get(key)).iter().enumerate() {
                match entry.as_str() {
                    Some(entry) => self.include(&dir, entry, &level)?,
                    None => self.unreadable(file, format!("{key}[{i}] is not a path")),
                }
            }
        }
        self.record(file, &dir, map);
        Ok(())
    }

    /// One `resources:` entry: a file is a manifest, a folder a kustomization to follow.
    fn include(&mut self, dir: &str, entry: &str, level: &Level) -> Result<(), TreeError> {
        if is_remote(entry) {
            self.plan.passed_over.push((entry.to_owned(), "a remote resource, not followed"));
            return Ok(());
        }
        let Ok(path) = resolve(dir, entry) else {
            self.plan.passed_over.push((join(dir, entry), "outside the repository, not followed"));
            return Ok(());
        };
        if !self.visited.insert(path.clone()) {
            return Ok(()); // a cycle, or a base included twice
        }
        if let Some(blob) = self.index.get(&path).cloned() {
            match self.admit(&blob)? {
                None => {
                    if let Some(namespace) = &level.namespace {
                        self.plan.namespaces.insert(path, namespace.clone());
                    }
                    self.plan.manifests.push(blob);
                }
                Some(why) => self.plan.passed_over.push((path, why)),
            }
        } else if !self.is_dir(&path) {
            let why = if looks_remote(entry) { "a remote resource, not followed" } else { "not in the repository" };
            self.plan.passed_over.push((path, why));
        } else if level.depth >= MAX_DEPTH {
            self.plan.passed_over.push((path, "more kustomizations deep than are followed"));
        } else if let Some(file) = self.kustomization_of(&path) {
            // Listed as a resource too, it is still no manifest.
            self.visited.insert(file.path.clone());
            self.queued.push((file, Level { depth: level.depth + 1, ..level.clone() }));
        } else {
            self.plan.passed_over.push((path, "a folder without a kustomization file, not followed"));
        }
        Ok(())
    }

    /// The entries of a kustomization that may change resources.
    fn record(&mut self, file: &str, dir: &str, map: &serde_json::Map<String, Value>) {
        let add = |walk: &mut Walk, entry: String, what: What| {
            walk.plan.modifiers.push(Modifier { origin: file.to_owned(), entry, what });
        };
        for key in ["patches", "patchesJson6902"] {
            for (i, patch) in list(map.get(key)).iter().enumerate() {
                let source = match (text_of(patch, "patch"), text_of(patch, "path")) {
                    (Some(text), _) => Source::Inline(text.to_owned()),
                    (None, Some(path)) => self.want(dir, path),
                    (None, None) => Source::Missing(String::new()),
                };
                let what = What::Patch { target: patch.get("target").cloned(), source };
                add(self, format!("{key}[{i}]"), what);
            }
        }
        for (i, patch) in list(map.get("patchesStrategicMerge")).iter().enumerate() {
            let text = patch.as_str().unwrap_or_default();
            let file = resolve(dir, text).ok().filter(|p| self.index.contains_key(p));
            let source = match file {
                Some(_) => self.want(dir, text),
                None if text.contains('\n') || text.contains(": ") => Source::Inline(text.to_owned()),
                None => Source::Missing(text.to_owned()),
            };
            add(self, format!("patchesStrategicMerge[{i}]"), What::Patch { target: None, source });
        }
        for (i, replacement) in list(map.get("replacements")).iter().enumerate() {
            let source = match text_of(replacement, "path") {
                Some(path) => self.want(dir, path),
                None => Source::Inline(Value::Array(vec![replacement.clone()]).to_string()),
            };
            add(self, format!("replacements[{i}]"), What::Replacements(source));
        }
        for key in ["transformers", "generators"] {
            for i in 0..list(map.get(key)).len() {
                add(self, format!("{key}[{i}]"), What::Plugin);
            }
        }
    }

    /// A patch or replacement file of the repository, to read in the next round.
    fn want(&mut self, dir: &str, path: &str) -> Source {
        match resolve(dir, path).ok().and_then(|p| self.index.get(&p).cloned()) {
            Some(blob) => {
                if self.visited.insert(blob.path.clone()) {
                    self.wanted.push(blob.clone());
                }
                Source::File(blob.path)
            }
            None => Source::Missing(path.to_owned()),
        }
    }
}

/// The searched object's field is changed on the way: the refusal, naming the entry.
pub fn touching(plan: &Plan, change: &Change) -> Option<String> {
    let field = format!("spec.desired.{} of CloudProvisioned {}/{}", change.field, change.namespace, change.name);
    plan.modifiers.iter().find_map(|m| {
        let verb = match effect(m, &plan.texts, change)? {
            Effect::Sets => "is changed",
            Effect::May => "may be changed",
        };
        Some(match &m.what {
            What::Unreadable(why) => format!(
                "whether {field} is changed cannot be told: {} cannot be read ({why}); it is left for a person",
                m.origin
            ),
            _ => format!("{field} {verb} by {}: change it there, it is left for a person", describe(m)),
        })
    })
}

/// The decision over the manifests read, unless something on the way changes the field.
pub fn decide(
    plan: &Plan,
    files: &[(String, String)],
    change: &Change,
    searched: &str,
    default_namespace: Option<&str>,
) -> Decision {
    if let Some(why) = touching(plan, change) {
        return Decision::NotWritable(why);
    }
    // A kustomization moves these documents into another namespace: none is the object.
    let elsewhere = |path: &str| plan.namespaces.get(path).is_some_and(|ns| *ns != change.namespace);
    let files: Vec<(String, String)> = files.iter().filter(|(path, _)| !elsewhere(path)).cloned().collect();
    files::decide(&files, &plan.searched, change, searched, default_namespace)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// The entry writes the field itself.
    Sets,
    /// The entry writes around it (a parent, a directive) or cannot be read: taken as a change.
    May,
}

fn describe(m: &Modifier) -> String {
    let (noun, source) = match &m.what {
        What::Patch { source, .. } => ("patch", source),
        What::Replacements(source) => ("replacements", source),
        _ => return format!("the plugin in {} ({}), whose changes cannot be told", m.origin, m.entry),
    };
    match source {
        Source::Inline(_) => format!("the {noun} in {} ({})", m.origin, m.entry),
        Source::File(path) => format!("the {noun} {path} ({} of {})", m.entry, m.origin),
        Source::Missing(path) => {
            format!("the {noun} {path:?} ({} of {}), which cannot be read", m.entry, m.origin)
        }
    }
}

fn effect(m: &Modifier, texts: &BTreeMap<String, String>, change: &Change) -> Option<Effect> {
    let text = |source: &Source| match source {
        Source::Inline(text) => Some(text.clone()),
        Source::File(path) => texts.get(path).cloned(),
        Source::Missing(_) => None,
    };
    match &m.what {
        What::Plugin | What::Unreadable(_) => Some(Effect::May),
        What::Patch { target, source } => {
            if target.as_ref().is_some_and(|t| !selects(t, change)) {
                return None;
            }
            text(source).map_or(Some(Effect::May), |t| patch_effect(&t, target.is_some(), change))
        }
        What::Replacements(source) => text(source).map_or(Some(Effect::May), |t| replacements_effect(&t, change)),
    }
}

/// A patch's effect on the field: a list is JSON 6902 operations, a map a strategic-merge patch.
fn patch_effect(text: &str, targeted: bool, change: &Change) -> Option<Effect> {
    let Ok(docs) = read_json(text) else { return Some(Effect::May) };
    docs.iter().find_map(|doc| match doc {
        Value::Array(ops) => ops.iter().find_map(|op| operation_effect(op, &change.field)),
        Value::Object(_) if targeted || is_about(doc, change) => merge_effect(doc, &change.field),
        Value::Object(_) | Value::Null => None,
        _ => Some(Effect::May),
    })
}

/// Whether an untargeted strategic-merge patch names this object (a missing kind or name may).
fn is_about(doc: &Value, change: &Change) -> bool {
    let kind = doc.get("kind").and_then(Value::as_str);
    let name = doc.pointer("/metadata/name").and_then(Value::as_str);
    kind.is_none_or(|k| k == "CloudProvisioned") && name.is_none_or(|n| n == change.name)
}

fn merge_effect(doc: &Value, field: &str) -> Option<Effect> {
    let directive = |map: &serde_json::Map<String, Value>| map.keys().any(|k| k.starts_with('$'));
    if doc.as_object().is_some_and(directive) {
        return Some(Effect::May);
    }
    let spec = doc.get("spec")?;
    let Some(spec) = spec.as_object().filter(|s| !directive(s)) else { return Some(Effect::May) };
    let Some(desired) = spec.get("desired")?.as_object() else { return Some(Effect::May) };
    if desired.contains_key(field) {
        Some(Effect::Sets)
    } else if directive(desired) {
        Some(Effect::May)
    } else {
        None
    }
}

/// A JSON 6902 operation on the field, below it (`Sets`) or on a parent (`May`).
fn operation_effect(op: &Value, field: &str) -> Option<Effect> {
    if op.get("op").and_then(Value::as_str) == Some("test") {
        return None;
    }
    let wanted = ["spec", "desired", field];
    let paths = ["path", "from"].into_iter().filter_map(|k| op.get(k));
    let mut effect = op.get("path").is_none().then_some(Effect::May);
    for path in paths {
        let Some(tokens) = path.as_str().map(pointer_tokens) else { return Some(Effect::May) };
        if tokens.len() >= wanted.len() && tokens[..wanted.len()] == wanted {
            return Some(Effect::Sets);
        }
        if wanted.starts_with(&tokens.iter().map(String::as_str).collect::<Vec<_>>()) {
            effect = Some(Effect::May);
        }
    }
    effect
}

fn pointer_tokens(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.trim_start_matches('/').split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

/// Replacements whose targets select this object and whose field paths reach the field.
fn replacements_effect(text: &str, change: &Change) -> Option<Effect> {
    let Ok(docs) = read_json(text) else { return Some(Effect::May) };
    let replacements = docs.iter().flat_map(|d| match d {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    });
    let mut effect = None;
    for replacement in replacements {
        let Some(targets) = replacement.get("targets").and_then(Value::as_array) else { return Some(Effect::May) };
        for target in targets {
            if target.get("select").is_some_and(|s| !selects(s, change)) {
                continue;
            }
            let Some(paths) = target.get("fieldPaths").and_then(Value::as_array) else { return Some(Effect::May) };
            for path in paths {
                match path.as_str().map_or(Some(Effect::May), |p| field_path_effect(p, &change.field)) {
                    Some(Effect::Sets) => return Some(Effect::Sets),
                    Some(Effect::May) => effect = Some(Effect::May),
                    None => {}
                }
            }
        }
    }
    effect
}

/// A kustomize field path (`spec.desired.size_slug`, `spec.*`, `a.[name=x].b`) against the field.
fn field_path_effect(path: &str, field: &str) -> Option<Effect> {
    let wanted = ["spec", "desired", field];
    let segments = field_path_segments(path);
    let matches = |(s, w): (&String, &&str)| s == w || s == "*" || s.starts_with('[');
    if !segments.iter().zip(wanted.iter()).all(matches) {
        return None;
    }
    if segments.len() >= wanted.len() { Some(Effect::Sets) } else { Some(Effect::May) }
}

/// Splits at dots outside brackets.
fn field_path_segments(path: &str) -> Vec<String> {
    let (mut segments, mut current, mut depth) = (Vec::new(), String::new(), 0usize);
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                segments.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    segments.push(current);
    segments
}

/// Whether a kustomize selector may select this object: a kind or name is a
/// regular expression, so only a plain word that differs rules it out;
/// namespaces, groups and label selectors are taken to match.
fn selects(selector: &Value, change: &Change) -> bool {
    let plain = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let allows = |key: &str, actual: &str| match selector.get(key).and_then(Value::as_str) {
        Some(v) if plain(v) => v == actual,
        _ => true,
    };
    allows("kind", "CloudProvisioned") && allows("name", &change.name)
}

fn list(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn text_of<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// An entry kustomize fetches from elsewhere (`https://…`, `git@…`, `?ref=`).
fn is_remote(entry: &str) -> bool {
    entry.contains("://") || entry.starts_with("git@") || entry.contains("?ref=") || entry.contains("//")
}

/// An entry not in the repository whose first part is a host name (`github.com/org/repo`).
fn looks_remote(entry: &str) -> bool {
    let Some((first, _)) = entry.split_once('/') else { return false };
    first.contains('.') && first != "." && first != ".."
}

/// `rel` from `dir`, inside the repository: `..` above its root is refused.
fn resolve(dir: &str, rel: &str) -> Result<String, TreeError> {
    if rel.starts_with('/') {
        return Err(TreeError::NotPlain(rel.to_owned()));
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.pop().is_none() => return Err(TreeError::Escapes(rel.to_owned())),
            ".." => {}
            part => parts.push(part),
        }
    }
    tree::normalize(&parts.join("/"))
}

#[cfg(test)]
mod tests;
