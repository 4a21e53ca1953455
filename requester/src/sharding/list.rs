//! Lists the input files of a source, each with a name (its path under
//! `$SHOAL_INPUTS`) and a content identity for placement.
//!
//! Local directories are walked and hashed here, with blocking file I/O:
//! call it from `spawn_blocking` in async code.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use shoal_node::protocol::job::InputItem;

use super::ShardingError;
use crate::spec::InputSource;

/// Longest name given to a URL input; the tail is kept so the extension
/// survives for globs.
const MAX_URL_NAME_LEN: usize = 128;

/// One input file and the identity of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// What a node is told to fetch, and the name it gets.
    pub item: InputItem,
    /// Hex sha256 of the bytes (inline, local) or the URL itself (urls):
    /// equal identities mean a node's cached copy can be reused.
    pub identity: String,
}

impl InputFile {
    /// An inline input, identified by the sha256 of its content.
    pub fn inline(name: &str, content: &str) -> InputFile {
        InputFile {
            item: InputItem::Inline {
                name: name.to_owned(),
                content: content.to_owned(),
            },
            identity: hex::encode(Sha256::digest(content.as_bytes())),
        }
    }
}

/// Every input file of `source`, sorted by name for local directories, in
/// the order given otherwise.
pub fn list_inputs(source: &InputSource) -> Result<Vec<InputFile>, ShardingError> {
    match source {
        InputSource::Local { path } => list_local(path),
        InputSource::Urls(urls) => Ok(name_urls(urls)),
        InputSource::Inline(items) => Ok(items
            .iter()
            .map(|i| InputFile::inline(&i.name, &i.content))
            .collect()),
        InputSource::S3(_) => Err(ShardingError::S3(
            "S3 prefixes are listed with sharding::list_s3 (async)".into(),
        )),
        InputSource::Ipfs(_) => Err(ShardingError::Ipfs(
            "IPFS directories are listed with sharding::list_ipfs (async)".into(),
        )),
    }
}

/// Walks `root` recursively. Regular files are inputs; a symlink counts when
/// it points at a file inside `root`. Symlinked directories are not entered,
/// which keeps the walk free of cycles and of files listed twice.
fn list_local(root: &str) -> Result<Vec<InputFile>, ShardingError> {
    let meta = fs::metadata(root).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ShardingError::NotFound {
            path: root.to_owned(),
        },
        _ => io_error(Path::new(root), e),
    })?;
    if !meta.is_dir() {
        return Err(ShardingError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let canonical_root = fs::canonicalize(root).map_err(|e| io_error(Path::new(root), e))?;
    let base = root.trim_end_matches('/');

    let mut files = Vec::new();
    let mut dirs: Vec<(PathBuf, String)> = vec![(PathBuf::from(root), String::new())];
    while let Some((dir, rel_dir)) = dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| io_error(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            let file_name =
                entry
                    .file_name()
                    .into_string()
                    .map_err(|_| ShardingError::NonUtf8Name {
                        path: path.to_string_lossy().into_owned(),
                    })?;
            let rel = if rel_dir.is_empty() {
                file_name
            } else {
                format!("{rel_dir}/{file_name}")
            };
            let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
            let is_input = if kind.is_dir() {
                dirs.push((path.clone(), rel));
                continue;
            } else if kind.is_file() {
                true
            } else if kind.is_symlink() {
                symlink_to_file_inside(&path, &canonical_root)
            } else {
                false
            };
            if is_input {
                let identity = hash_file(&path)?;
                files.push(InputFile {
                    item: InputItem::Local {
                        path: format!("{base}/{rel}"),
                        name: rel,
                    },
                    identity,
                });
            }
        }
    }
    files.sort_by(|a, b| a.item.name().cmp(b.item.name()));
    Ok(files)
}

fn symlink_to_file_inside(link: &Path, canonical_root: &Path) -> bool {
    let Ok(target) = fs::canonicalize(link) else {
        tracing::debug!(path = %link.display(), "skipping dangling symlink in inputs");
        return false;
    };
    if !target.starts_with(canonical_root) {
        tracing::warn!(path = %link.display(), "skipping symlink that leaves the input directory");
        return false;
    }
    fs::metadata(&target).is_ok_and(|m| m.is_file())
}

fn hash_file(path: &Path) -> Result<String, ShardingError> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(|e| io_error(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

fn io_error(path: &Path, source: io::Error) -> ShardingError {
    ShardingError::Io {
        path: path.to_string_lossy().into_owned(),
        source,
    }
}

/// Names URL inputs after their last path segment; names shared by several
/// URLs get the URL's index in front (`3-data.csv`).
fn name_urls(urls: &[String]) -> Vec<InputFile> {
    let bases: Vec<String> = urls.iter().map(|u| url_base_name(u)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for base in &bases {
        *counts.entry(base).or_default() += 1;
    }
    let mut used: HashSet<String> = HashSet::new();
    let mut files = Vec::with_capacity(urls.len());
    for (i, (url, base)) in urls.iter().zip(&bases).enumerate() {
        let mut name = if counts[base.as_str()] > 1 {
            format!("{i}-{base}")
        } else {
            base.clone()
        };
        // A prefixed name can still equal another URL's plain name.
        while used.contains(&name) {
            name = format!("{i}-{name}");
        }
        used.insert(name.clone());
        files.push(InputFile {
            item: InputItem::Url {
                name,
                url: url.clone(),
            },
            identity: url.clone(),
        });
    }
    files
}

/// The last non-empty path segment of `raw`, restricted to `[A-Za-z0-9._-]`
/// (other characters become `_`), or `input` when nothing usable is left.
fn url_base_name(raw: &str) -> String {
    let segment = url::Url::parse(raw).ok().and_then(|u| {
        u.path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()).map(str::to_owned))
    });
    let Some(segment) = segment else {
        return "input".to_owned();
    };
    let clean: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.chars().all(|c| c == '.') {
        return "input".to_owned();
    }
    // ASCII only by now, so any byte offset is a char boundary.
    clean[clean.len().saturating_sub(MAX_URL_NAME_LEN)..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InlineInput;

    fn names(files: &[InputFile]) -> Vec<&str> {
        files.iter().map(|f| f.item.name()).collect()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn local(dir: &Path) -> InputSource {
        InputSource::Local {
            path: dir.to_str().unwrap().to_owned(),
        }
    }

    #[test]
    fn local_directory_is_walked_recursively_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b/c")).unwrap();
        fs::write(dir.path().join("b/c/deep.txt"), "deep").unwrap();
        fs::write(dir.path().join("z.txt"), "z").unwrap();
        fs::write(dir.path().join("a.txt"), "a").unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();

        let files = list_inputs(&local(dir.path())).unwrap();

        assert_eq!(names(&files), ["a.txt", "b/c/deep.txt", "z.txt"]);
        let root = dir.path().to_str().unwrap();
        assert_eq!(
            files[1].item,
            InputItem::Local {
                name: "b/c/deep.txt".to_owned(),
                path: format!("{root}/b/c/deep.txt"),
            }
        );
    }

    #[test]
    fn local_identity_is_the_sha256_of_the_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.txt"), "hello").unwrap();
        let files = list_inputs(&local(dir.path())).unwrap();
        assert_eq!(files[0].identity, sha256_hex(b"hello"));
    }

    #[test]
    fn missing_local_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = list_inputs(&local(&gone)).unwrap_err();
        assert!(matches!(err, ShardingError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains(gone.to_str().unwrap()), "{err}");
    }

    #[test]
    fn local_path_that_is_a_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = list_inputs(&local(&file)).unwrap_err();
        assert!(matches!(err, ShardingError::NotADirectory { .. }), "{err}");
        assert!(err.to_string().contains(file.to_str().unwrap()), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_leaving_the_directory_are_skipped_and_inside_ones_kept() {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("real.txt"), "r").unwrap();
        symlink(outside.path().join("secret"), dir.path().join("escape")).unwrap();
        symlink(outside.path(), dir.path().join("escape-dir")).unwrap();
        symlink(dir.path().join("real.txt"), dir.path().join("alias.txt")).unwrap();
        symlink(dir.path(), dir.path().join("loop")).unwrap();
        symlink(dir.path().join("nowhere"), dir.path().join("dangling")).unwrap();

        let files = list_inputs(&local(dir.path())).unwrap();

        assert_eq!(names(&files), ["alias.txt", "real.txt"]);
        assert_eq!(files[0].identity, files[1].identity);
    }

    #[test]
    fn inline_inputs_are_named_as_given_and_identified_by_content_hash() {
        let source = InputSource::Inline(vec![InlineInput {
            name: "dir/a.txt".to_owned(),
            content: "hi".to_owned(),
        }]);
        let files = list_inputs(&source).unwrap();
        assert_eq!(names(&files), ["dir/a.txt"]);
        assert_eq!(files[0].identity, sha256_hex(b"hi"));
    }

    #[test]
    fn url_inputs_are_named_by_last_segment_and_identified_by_url() {
        let url = "https://example.org/data/part-1.csv?sig=abc".to_owned();
        let files = list_inputs(&InputSource::Urls(vec![url.clone()])).unwrap();
        assert_eq!(names(&files), ["part-1.csv"]);
        assert_eq!(files[0].identity, url);
    }

    #[test]
    fn url_names_are_sanitised_with_a_fallback() {
        assert_eq!(url_base_name("https://h/a%20b(1).txt"), "a_20b_1_.txt");
        assert_eq!(url_base_name("https://h/dir/"), "dir");
        assert_eq!(url_base_name("https://h/"), "input");
        assert_eq!(url_base_name("https://h"), "input");
        assert_eq!(url_base_name("https://h/..."), "input");
        assert_eq!(url_base_name("not a url"), "input");
        let long = format!("https://h/{}.txt", "x".repeat(500));
        let name = url_base_name(&long);
        assert_eq!(name.len(), MAX_URL_NAME_LEN);
        assert!(name.ends_with(".txt"));
    }

    #[test]
    fn colliding_url_names_are_prefixed_with_their_index() {
        let urls = [
            "https://a/x/data.csv",
            "https://b/data.csv",
            "https://c/other.csv",
            "https://d/1-data.csv",
        ]
        .map(str::to_owned)
        .to_vec();
        let files = list_inputs(&InputSource::Urls(urls)).unwrap();
        assert_eq!(
            names(&files),
            ["0-data.csv", "1-data.csv", "other.csv", "3-1-data.csv"]
        );
    }
}
