//! Turns a job's input source into shards.
//!
//! [`list_inputs`] names every input file and gives it a content identity
//! (I/O: it walks and hashes local directories). [`cut`] is pure: it filters
//! the files by the spec's glob, sorts them by name, chunks them by batch size
//! and keys each shard by the identities of its inputs, so re-running a job
//! over the same data yields the same keys, lands on the same nodes and hits
//! their input caches.

mod ipfs;
mod list;
mod s3;

use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};
use shoal_node::protocol::job::InputItem;

pub use ipfs::list_ipfs;
pub use list::{InputFile, list_inputs};
pub use s3::list_s3;

/// Most shards one job may have.
pub const MAX_SHARDS: usize = 1_000_000;

/// Domain separation for placement keys; bump when the derivation changes.
const KEY_DOMAIN: &[u8] = b"shoal/placement-key/1";

/// One unit of work: a batch of inputs run together on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Position of the shard in the job, from 0.
    pub index: u32,
    /// The shard's inputs, sorted by name.
    pub inputs: Vec<InputItem>,
    /// sha256 over the inputs' content identities; ranks nodes for placement.
    pub placement_key: [u8; 32],
}

/// Why a job's inputs could not be listed or cut.
#[derive(Debug, thiserror::Error)]
pub enum ShardingError {
    /// `inputs.local.path` does not exist.
    #[error("inputs.local.path `{path}` does not exist")]
    NotFound { path: String },
    /// `inputs.local.path` is not a directory.
    #[error("inputs.local.path `{path}` is not a directory")]
    NotADirectory { path: String },
    /// A file or directory under the input root could not be read.
    #[error("cannot read input `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An input's path is not UTF-8, so it cannot be named in a job.
    #[error("input `{path}` has a name that is not valid UTF-8; rename it")]
    NonUtf8Name { path: String },
    /// Listing an S3 prefix failed, or a key cannot be an input name.
    #[error("inputs.s3: {0}")]
    S3(String),
    /// Listing an IPFS directory failed.
    #[error("inputs.ipfs: {0}")]
    Ipfs(String),
    /// The glob does not parse.
    #[error("sharding.glob `{glob}` is not a valid glob: {message}")]
    InvalidGlob { glob: String, message: String },
    /// `batch_size` was 0.
    #[error("sharding.batch_size: must be at least 1")]
    ZeroBatchSize,
    /// The glob selected nothing.
    #[error("sharding.glob `{glob}` matched none of the {total} inputs")]
    NoMatches { glob: String, total: usize },
    /// More than [`MAX_SHARDS`] shards.
    #[error(
        "{inputs} inputs in batches of {batch_size} make {shards} shards, more than the limit of {MAX_SHARDS}; set sharding.batch_size to at least {min_batch_size}"
    )]
    TooManyShards {
        inputs: usize,
        batch_size: u32,
        shards: usize,
        min_batch_size: usize,
    },
}

/// The matcher for a spec's `sharding.glob`: `*` and `?` stay within one
/// path segment, `**` crosses segments.
pub fn glob_matcher(glob: &str) -> Result<GlobMatcher, globset::Error> {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
}

/// Cuts `files` into shards of up to `batch_size` inputs whose names match
/// `glob`, in name order.
pub fn cut(
    files: Vec<InputFile>,
    glob: &str,
    batch_size: u32,
) -> Result<Vec<Shard>, ShardingError> {
    if batch_size == 0 {
        return Err(ShardingError::ZeroBatchSize);
    }
    let matcher = glob_matcher(glob).map_err(|e| ShardingError::InvalidGlob {
        glob: glob.to_owned(),
        message: e.kind().to_string(),
    })?;
    let total = files.len();
    let mut selected: Vec<InputFile> = files
        .into_iter()
        .filter(|f| matcher.is_match(f.item.name()))
        .collect();
    if selected.is_empty() {
        return Err(ShardingError::NoMatches {
            glob: glob.to_owned(),
            total,
        });
    }
    let batch = batch_size as usize;
    let shards = selected.len().div_ceil(batch);
    if shards > MAX_SHARDS {
        return Err(ShardingError::TooManyShards {
            inputs: selected.len(),
            batch_size,
            shards,
            min_batch_size: selected.len().div_ceil(MAX_SHARDS),
        });
    }
    selected.sort_by(|a, b| a.item.name().cmp(b.item.name()));

    let mut out = Vec::with_capacity(shards);
    let mut files = selected.into_iter().peekable();
    let mut index: u32 = 0;
    while files.peek().is_some() {
        let chunk: Vec<InputFile> = files.by_ref().take(batch).collect();
        let placement_key = placement_key(chunk.iter().map(|f| f.identity.as_str()));
        out.push(Shard {
            index,
            inputs: chunk.into_iter().map(|f| f.item).collect(),
            placement_key,
        });
        index += 1;
    }
    Ok(out)
}

/// sha256 over a domain tag and each identity, length-prefixed so that no two
/// different lists of identities hash the same bytes.
fn placement_key<'a>(identities: impl Iterator<Item = &'a str>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(KEY_DOMAIN);
    for identity in identities {
        hasher.update((identity.len() as u64).to_be_bytes());
        hasher.update(identity.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(name: &str, content: &str) -> InputFile {
        InputFile::inline(name, content)
    }

    fn names(shard: &Shard) -> Vec<&str> {
        shard.inputs.iter().map(|i| i.name()).collect()
    }

    #[test]
    fn shards_are_cut_in_name_order_by_batch_size() {
        let files = ["d", "b", "a", "e", "c"].map(|n| inline(n, n)).to_vec();
        let shards = cut(files, "**", 2).unwrap();
        assert_eq!(shards.len(), 3);
        assert_eq!(names(&shards[0]), ["a", "b"]);
        assert_eq!(names(&shards[1]), ["c", "d"]);
        assert_eq!(names(&shards[2]), ["e"]);
        let indexes: Vec<u32> = shards.iter().map(|s| s.index).collect();
        assert_eq!(indexes, [0, 1, 2]);
    }

    #[test]
    fn single_star_does_not_cross_directories() {
        let files = vec![inline("top.txt", "1"), inline("sub/deep.txt", "2")];
        let shards = cut(files, "*.txt", 1).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(names(&shards[0]), ["top.txt"]);
    }

    #[test]
    fn double_star_crosses_directories() {
        let files = vec![
            inline("top.txt", "1"),
            inline("sub/deep.txt", "2"),
            inline("sub/skip.csv", "3"),
        ];
        let shards = cut(files, "**/*.txt", 1).unwrap();
        let all: Vec<&str> = shards.iter().flat_map(names).collect();
        assert_eq!(all, ["sub/deep.txt", "top.txt"]);
    }

    #[test]
    fn a_glob_matching_nothing_is_an_error_naming_the_glob_and_count() {
        let files = vec![inline("a.csv", "1"), inline("b.csv", "2")];
        let err = cut(files, "*.txt", 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sharding.glob `*.txt` matched none of the 2 inputs"
        );
    }

    #[test]
    fn an_invalid_glob_is_an_error() {
        let err = cut(vec![inline("a", "1")], "a[", 1).unwrap_err();
        assert!(matches!(err, ShardingError::InvalidGlob { .. }), "{err}");
    }

    #[test]
    fn batch_size_zero_is_an_error_not_a_panic() {
        let err = cut(vec![inline("a", "1")], "**", 0).unwrap_err();
        assert!(matches!(err, ShardingError::ZeroBatchSize));
    }

    #[test]
    fn more_than_a_million_shards_is_an_error_suggesting_a_batch_size() {
        let files: Vec<InputFile> = (0..MAX_SHARDS + 1)
            .map(|i| InputFile {
                item: InputItem::Url {
                    name: i.to_string(),
                    url: String::new(),
                },
                identity: String::new(),
            })
            .collect();
        let err = cut(files, "**", 1).unwrap_err();
        assert!(
            matches!(
                err,
                ShardingError::TooManyShards {
                    shards: 1_000_001,
                    min_batch_size: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("at least 2"), "{err}");
    }

    #[test]
    fn placement_key_depends_only_on_the_inputs_content() {
        let first = cut(vec![inline("a", "same"), inline("b", "other")], "**", 1).unwrap();
        let again = cut(vec![inline("b", "other"), inline("a", "same")], "**", 1).unwrap();
        assert_eq!(first, again);
        let renamed = cut(vec![inline("z", "same")], "**", 1).unwrap();
        assert_eq!(renamed[0].placement_key, first[0].placement_key);
        assert_ne!(first[0].placement_key, first[1].placement_key);
    }

    #[test]
    fn placement_key_separates_identities() {
        let joined = placement_key(["ab", "c"].into_iter());
        let split = placement_key(["a", "bc"].into_iter());
        assert_ne!(joined, split);
    }
}
