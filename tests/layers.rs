//! The crate's architecture, enforced: which module may import which, that the
//! detection core stays free of Kubernetes, and that no function grows past
//! what a reader takes in at once.
//!
//! `detect` <- `api` <- {`controller`, `inventory`, `check`}; the pure
//! capability modules (`accept`, `writeback`, `policy`, `revert`) between `api` and `controller`; `runtime`
//! below `controller` and `inventory`, importing nothing; only `run` and
//! `cli` see everything. Code that names a cloud provider belongs in
//! `src/providers/<name>/` (issue 31); until it all moves there, the files that
//! still name one are counted, and the counts may only go down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module => the crate modules it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("detect", &[]),
    ("api", &["detect"]),
    ("runtime", &[]),
    ("manifests", &["api"]),
    ("accept", &["api", "detect"]),
    ("writeback", &["accept", "api", "detect", "runtime"]),
    ("policy", &["api", "detect"]),
    // A provider's client uses the shared rate limiter and HTTP plumbing.
    ("providers", &["api", "detect", "runtime"]),
    ("revert", &["api", "detect", "providers"]),
    ("controller", &["accept", "api", "detect", "policy", "providers", "revert", "runtime", "writeback"]),
    // The reverter derives a revert's calls with the same pure functions as the
    // controller's preview: the rules (policy) and the trusted overlay (accept).
    ("inventory", &["accept", "api", "detect", "policy", "providers", "revert", "runtime"]),
    ("check", &["api", "detect", "manifests", "policy"]),
    // `kubectl drift revert` computes the plan's digest as the controller does.
    ("plugin", &["api", "detect", "providers", "revert", "runtime"]),
];
/// The wiring, which may import anything.
const WIRING: &[&str] = &["run", "cli", "lib", "main", "bin"];
const MAX_FUNCTION_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/controller/plan.rs` => `controller`; `src/run.rs` => `run`.
fn top_module(path: &Path) -> String {
    let relative = path.strip_prefix(src()).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// Every crate module a file names through `crate::`, braces included
/// (`use crate::{api, detect::X}`), with the line it is named on.
fn crate_imports(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                group.split(',').map(|g| g.trim().split("::").next().unwrap_or("")).collect()
            } else {
                vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("")]
            };
            found.extend(names.into_iter().filter(|m| !m.is_empty()).map(|m| (m.to_owned(), n + 1)));
        }
    }
    found
}

fn all_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(files.len() > 10, "found only {} source files under {}", files.len(), src().display());
    files
}

#[test]
fn modules_import_only_along_the_layers() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut violations = Vec::new();
    for file in all_files() {
        let module = top_module(&file);
        if WIRING.contains(&module.as_str()) {
            continue;
        }
        let permitted = allowed.get(module.as_str()).unwrap_or_else(|| {
            panic!("{}: module `{module}` has no place in the layer table of tests/layers.rs", file.display())
        });
        let text = std::fs::read_to_string(&file).unwrap();
        for (imported, line) in crate_imports(&text) {
            if imported != module && !permitted.contains(&imported.as_str()) {
                let shown = file.strip_prefix(src()).unwrap().display();
                violations.push(format!("src/{shown}:{line}: `{module}` imports `{imported}` against the layers"));
            }
        }
    }
    assert!(violations.is_empty(), "layer violations:\n{}", violations.join("\n"));
}

#[test]
fn the_detection_core_knows_no_kubernetes() {
    let mut violations = Vec::new();
    for file in all_files().into_iter().filter(|f| top_module(f) == "detect") {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if ["kube::", "k8s_openapi::", "tokio::"].iter().any(|k| line.contains(k)) {
                violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(violations.is_empty(), "detect must stay pure:\n{}", violations.join("\n"));
}

/// Lengths of the functions in rustfmt-formatted text: from the `fn` line to
/// the closing brace at the same indentation.
fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let after_qualifiers = ["pub(crate) ", "pub(super) ", "pub ", "async ", "const ", "unsafe "]
            .iter()
            .fold(trimmed, |t, q| t.strip_prefix(q).unwrap_or(t));
        let Some(signature) = after_qualifiers.strip_prefix("fn ") else { continue };
        let name = signature.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("").to_owned();
        // A signature ends at the first line ending in `{` (a body) or `;` (a declaration).
        let signature_end = lines[start..].iter().map(|l| l.trim_end()).find(|l| l.ends_with('{') || l.ends_with(';'));
        if signature_end.is_some_and(|l| l.ends_with(';')) {
            continue; // a declaration without a body
        }
        let closing = format!("{indent}}}");
        if let Some(end) = lines[start..].iter().position(|l| *l == closing) {
            out.push((name, start + 1, end + 1));
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_a_screen() {
    let mut long = Vec::new();
    for file in all_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, line, length) in function_lengths(&text) {
            if length > MAX_FUNCTION_LINES {
                long.push(format!("{}:{line}: fn {name} has {length} lines", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_FUNCTION_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_checks_themselves_see_violations() {
    let imports = crate_imports("use crate::{api::X, detect};\nlet x = crate::controller::f(); // crate::cli");
    let names: Vec<&str> = imports.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["api", "detect", "controller"]);
    let body = (0..90).map(|_| "    x();\n").collect::<String>();
    let lengths = function_lengths(&format!("pub async fn big() {{\n{body}}}\nfn small() {{}}\n"));
    assert_eq!(lengths[0], ("big".to_owned(), 1, 92));
    let declared = function_lengths("trait T {\n    fn f(\n        a: u8,\n    ) -> u8;\n}\nfn g() {\n}\n");
    assert_eq!(declared, [("g".to_owned(), 6, 2)], "a declaration over several lines has no body");
    let named = "let p = \"digitalocean\"; // DoType\n// a droplet\nlet t = DoType::Droplet;\n#[cfg(test)]\nmod properties;\nconst U: &str = \"https://api.digitalocean.com\";\n#[cfg(test)]\nmod tests {\n    const D: &str = \"droplet\";\n}\n";
    assert_eq!(lines_naming_a_provider(named), 3, "code lines only, URLs included, above the unit tests");
}

/// What names a provider in code: its name, and the words of its API that
/// only its own folder should know (`"/v2/` paths, `DoType`, the claim tag, the
/// action types a saga compensates with, its resource types). Lower case.
const PROVIDER_WORDS: &[&str] = &[
    "digitalocean",
    "\"/v2/",
    "dotype",
    "doerror",
    "doclient",
    "arcadia-ns:",
    "\"shutdown\"",
    "\"power_on\"",
    "droplet",
];

/// Files outside `src/providers/` allowed to name a provider, with how many
/// of their lines may (comments and unit tests aside). Empty since the
/// provider interface: keep it so.
const STILL_NAMES_A_PROVIDER: &[(&str, usize)] = &[];

/// Lines of `text` whose code (before a `//` comment, above the unit tests'
/// `mod tests`) names a provider.
fn lines_naming_a_provider(text: &str) -> usize {
    text.lines()
        .take_while(|line| !line.trim_start().starts_with("mod tests"))
        .map(|line| without_comment(line).to_lowercase())
        .filter(|code| PROVIDER_WORDS.iter().any(|w| code.contains(w)))
        .count()
}

/// `line` up to its `//` comment; the `//` of a URL (`https://`) starts none.
fn without_comment(line: &str) -> &str {
    let mut from = 0;
    while let Some(at) = line[from..].find("//").map(|i| i + from) {
        if !line[..at].ends_with(':') {
            return &line[..at];
        }
        from = at + 2;
    }
    line
}

#[test]
fn only_provider_folders_name_a_provider() {
    let allowed: BTreeMap<&str, usize> = STILL_NAMES_A_PROVIDER.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut seen = Vec::new();
    for file in all_files() {
        let relative = file.strip_prefix(src()).unwrap().to_string_lossy().into_owned();
        seen.push(relative.clone());
        let name = file.file_name().unwrap().to_string_lossy();
        if relative.starts_with("providers/") || name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let found = lines_naming_a_provider(&std::fs::read_to_string(&file).unwrap());
        let budget = allowed.get(relative.as_str()).copied().unwrap_or(0);
        if found > budget {
            wrong.push(format!("src/{relative}: {found} lines name a provider (at most {budget}); that code belongs in src/providers/<name>/"));
        } else if found < budget {
            wrong.push(format!("src/{relative}: {found} lines name a provider now: lower its count in STILL_NAMES_A_PROVIDER to {found}"));
        }
    }
    for gone in allowed.keys().filter(|f| !seen.iter().any(|s| s == *f)) {
        wrong.push(format!("src/{gone} is gone: remove it from STILL_NAMES_A_PROVIDER"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
