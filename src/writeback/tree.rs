//! Which manifests of a fetched tree to read, from `git ls-tree` output alone.
//! Repository content is data: symbolic links and submodules are never
//! followed, the search stays under the configured path (`..` is refused), and
//! it is bounded in files, bytes and depth so a hostile repository cannot
//! exhaust the controller. Pure.

/// Bounds of one manifest search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// YAML files read at most.
    pub files: usize,
    /// A larger file is not read (and named in the refusal if nothing else matches).
    pub file_bytes: u64,
    /// All files read together.
    pub total_bytes: u64,
    /// Folders below the searched path.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { files: 2_000, file_bytes: 1 << 20, total_bytes: 16 << 20, depth: 16 }
    }
}

/// One regular file of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub path: String,
    pub mode: String,
    pub oid: String,
    pub size: u64,
}

/// The files to read, and those passed over with the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub read: Vec<Blob>,
    pub passed_over: Vec<(String, &'static str)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("the Git path {0:?} leaves the repository ('..' is not allowed)")]
    Escapes(String),
    #[error("the Git path {0:?} is not a plain relative path")]
    NotPlain(String),
    #[error("the search under {path:?} stopped: more than {limit} YAML files")]
    TooManyFiles { path: String, limit: usize },
    #[error("the search under {path:?} stopped: the YAML files there hold more than {limit} bytes")]
    TooManyBytes { path: String, limit: u64 },
    #[error("git ls-tree printed an entry that cannot be read: {0:?}")]
    Garbled(String),
}

/// `path` as a tree path: no leading `/` or `./`, no `.` parts; `""` is the root.
pub fn normalize(path: &str) -> Result<String, TreeError> {
    let mut parts = Vec::new();
    for part in path.trim().split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(TreeError::Escapes(path.to_owned())),
            p if p.chars().any(|c| c.is_control()) || p.starts_with(':') => {
                return Err(TreeError::NotPlain(path.to_owned()));
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Parses `git ls-tree -r -z --long` output.
pub fn parse_ls_tree(output: &[u8]) -> Result<Vec<Blob>, TreeError> {
    let garbled = |entry: &[u8]| TreeError::Garbled(String::from_utf8_lossy(entry).chars().take(200).collect());
    let mut blobs = Vec::new();
    for entry in output.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let text = std::str::from_utf8(entry).map_err(|_| garbled(entry))?;
        let (meta, path) = text.split_once('\t').ok_or_else(|| garbled(entry))?;
        let mut fields = meta.split_ascii_whitespace();
        let (Some(mode), Some(kind), Some(oid), Some(size)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(garbled(entry));
        };
        if kind != "blob" {
            continue;
        }
        let size = size.parse().map_err(|_| garbled(entry))?;
        blobs.push(Blob { path: path.to_owned(), mode: mode.to_owned(), oid: oid.to_owned(), size });
    }
    Ok(blobs)
}

/// The YAML files under `root` (a normalized tree path: a file or a folder) to read.
pub fn select(blobs: Vec<Blob>, root: &str, limits: &Limits) -> Result<Selection, TreeError> {
    let mut selection = Selection::default();
    let mut total = 0u64;
    for blob in blobs {
        let Some(rest) = below(&blob.path, root) else { continue };
        let yaml = blob.path.ends_with(".yaml") || blob.path.ends_with(".yml");
        if !yaml && !rest.is_empty() {
            continue;
        }
        if let Some(why) = pass_over_reason(&blob, rest.matches('/').count(), limits) {
            selection.passed_over.push((blob.path, why));
            continue;
        }
        total += blob.size;
        if selection.read.len() == limits.files {
            return Err(TreeError::TooManyFiles { path: root.to_owned(), limit: limits.files });
        }
        if total > limits.total_bytes {
            return Err(TreeError::TooManyBytes { path: root.to_owned(), limit: limits.total_bytes });
        }
        selection.read.push(blob);
    }
    Ok(selection)
}

/// Why `blob`, `depth` folders below the searched path, is not read; `None`: it is.
pub fn pass_over_reason(blob: &Blob, depth: usize, limits: &Limits) -> Option<&'static str> {
    match blob.mode.as_str() {
        "120000" => Some("a symbolic link, not followed"),
        "100644" | "100755" if depth >= limits.depth => Some("deeper than the search goes"),
        "100644" | "100755" if blob.size > limits.file_bytes => Some("larger than a manifest may be"),
        "100644" | "100755" => None,
        _ => Some("not a regular file"),
    }
}

/// The part of `path` below `root`; `Some("")` when `path` is `root` itself.
fn below<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    if root.is_empty() {
        return Some(path);
    }
    match path.strip_prefix(root)? {
        "" => Some(""),
        rest => rest.strip_prefix('/'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(mode: &str, path: &str, size: u64) -> Blob {
        Blob { path: path.into(), mode: mode.into(), oid: format!("oid-{path}"), size }
    }

    fn ls_tree(entries: &[Blob]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in entries {
            out.extend(format!("{} blob {} {:>7}\t{}\0", b.mode, b.oid, b.size, b.path).bytes());
        }
        out
    }

    #[test]
    fn paths_are_confined_to_the_repository() {
        assert_eq!(normalize("./apps/").unwrap(), "apps");
        assert_eq!(normalize("/apps//web.yaml").unwrap(), "apps/web.yaml");
        assert_eq!(normalize(".").unwrap(), "");
        assert_eq!(normalize("apps/../../etc").unwrap_err(), TreeError::Escapes("apps/../../etc".into()));
        assert!(normalize(":(glob)**").unwrap_err().to_string().contains("not a plain relative path"));
    }

    #[test]
    fn ls_tree_output_is_parsed_and_trees_and_submodules_are_left_out() {
        let mut out = ls_tree(&[blob("100644", "apps/web.yaml", 120), blob("120000", "apps/loop", 1)]);
        out.extend(b"160000 commit 0123abcd       -\tvendor/lib\x00040000 tree 4567 -\tapps\x00");
        let blobs = parse_ls_tree(&out).unwrap();
        assert_eq!(blobs, [blob("100644", "apps/web.yaml", 120), blob("120000", "apps/loop", 1)]);
        assert!(parse_ls_tree(b"100644 blob x\tno-size\0").unwrap_err().to_string().contains("cannot be read"));
    }

    #[test]
    fn symbolic_links_large_and_deep_files_are_passed_over_with_the_reason() {
        let deep = format!("apps/{}x.yaml", "d/".repeat(16));
        let blobs = vec![
            blob("100644", "apps/web.yaml", 100),
            blob("120000", "apps/all.yaml", 1),
            blob("100644", "apps/huge.yaml", 2 << 20),
            blob("100644", &deep, 10),
            blob("100644", "apps/README.md", 10),
            blob("100644", "other/web.yaml", 10),
            blob("100644", "apps-old/web.yaml", 10),
        ];
        let selection = select(blobs, "apps", &Limits::default()).unwrap();
        assert_eq!(selection.read, [blob("100644", "apps/web.yaml", 100)]);
        assert_eq!(
            selection.passed_over,
            [
                ("apps/all.yaml".to_owned(), "a symbolic link, not followed"),
                ("apps/huge.yaml".to_owned(), "larger than a manifest may be"),
                (deep, "deeper than the search goes"),
            ]
        );
    }

    #[test]
    fn a_file_path_selects_that_file_and_the_root_selects_all() {
        let blobs = vec![blob("100644", "apps/web.yaml", 1), blob("100644", "web.yml", 1)];
        assert_eq!(select(blobs.clone(), "apps/web.yaml", &Limits::default()).unwrap().read.len(), 1);
        assert_eq!(select(blobs, "", &Limits::default()).unwrap().read.len(), 2);
    }

    #[test]
    fn too_many_files_or_bytes_stop_the_search() {
        let limits = Limits { files: 2, total_bytes: 100, ..Limits::default() };
        let many: Vec<Blob> = (0..3).map(|i| blob("100644", &format!("m{i}.yaml"), 1)).collect();
        assert_eq!(
            select(many, "", &limits).unwrap_err().to_string(),
            "the search under \"\" stopped: more than 2 YAML files"
        );
        let big = vec![blob("100644", "a.yaml", 60), blob("100644", "b.yaml", 60)];
        assert!(matches!(select(big, "", &limits), Err(TreeError::TooManyBytes { limit: 100, .. })));
    }
}
