//! The job spec a user writes (YAML) or posts (JSON): what to run, over which
//! inputs, cut how, with which limits, on how many nodes, published where.
//!
//! [`parse`] and [`JobSpec::from_json`] deserialize and then [`JobSpec::validate`],
//! so a spec that comes out of them is one the requester can run. Every error
//! names the field at fault (`sharding.batch_size: must be at least 1`).
//! Pure: no file or network access happens here.

mod units;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use shoal_node::protocol::job::{Executor, Resources, Target};

pub use units::{ByteSize, Seconds};

/// Longest accepted job name.
pub const MAX_NAME_LEN: usize = 64;

/// A whole job spec, as written by the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Human name of the job, 1-64 chars of `[A-Za-z0-9._-]`.
    pub name: String,
    /// How each shard is run.
    pub executor: Executor,
    /// Where the job's input files come from.
    pub inputs: InputSource,
    /// How the inputs are cut into shards.
    #[serde(default)]
    pub sharding: ShardingSpec,
    /// Limits for one shard.
    #[serde(default)]
    pub resources: ResourceSpec,
    /// How many nodes are asked and how many run each shard.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// Whether replicas' outputs are compared.
    #[serde(default)]
    pub verify: Verify,
    /// Where every shard's output is published; at least one target.
    pub publish: Vec<Target>,
}

/// The single source of a job's inputs (`inputs: {local: ...}` and so on).
///
/// Externally tagged so that new sources (S3 prefixes, IPFS directories) are
/// new keys beside the existing ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum InputSource {
    /// A directory every node can read at the same absolute path.
    Local {
        /// Absolute path of the directory; walked recursively.
        path: String,
    },
    /// http(s) URLs, one input file each.
    Urls(Vec<String>),
    /// Files carried in the spec itself.
    Inline(Vec<InlineInput>),
    /// Every object under an S3 prefix. The requester lists them with its own
    /// credentials; each node reads its shard's objects with its own.
    S3(S3Input),
    /// Every file of a UnixFS directory, fetched by the nodes over Bitswap.
    Ipfs(IpfsInput),
}

/// `inputs: {ipfs: {cid, providers?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfsInput {
    /// CID of a UnixFS directory.
    pub cid: String,
    /// Multiaddrs ending in `/p2p/<peer id>` of nodes that have it; when
    /// empty, providers are looked up in the DHT.
    #[serde(default)]
    pub providers: Vec<String>,
}

/// `inputs: {s3: {bucket, prefix, region?, endpoint_url?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Input {
    pub bucket: String,
    /// Key prefix; an input's name is its key after the prefix's last `/`.
    #[serde(default)]
    pub prefix: String,
    /// The bucket's region, when it differs from the default; nodes use it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// An S3-compatible endpoint the requester lists from (path-style).
    /// Nodes read through their own configured endpoint, never one a job
    /// names, so a job cannot send a node's signed requests elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
}

impl InputSource {
    /// The source's key in the spec (`local`, `urls`, `inline`).
    pub fn kind(&self) -> &'static str {
        match self {
            InputSource::Local { .. } => "local",
            InputSource::Urls(_) => "urls",
            InputSource::Inline(_) => "inline",
            InputSource::S3(_) => "s3",
            InputSource::Ipfs(_) => "ipfs",
        }
    }
}

/// One file given inline: `{name: a.txt, content: "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineInput {
    /// Relative path of the file under `$SHOAL_INPUTS`.
    pub name: String,
    /// The file's text.
    pub content: String,
}

/// `sharding: {glob, batch_size}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardingSpec {
    /// Inputs whose name matches are used; `*` stays within one directory,
    /// `**` crosses directories.
    pub glob: String,
    /// Inputs per shard.
    pub batch_size: u32,
}

impl Default for ShardingSpec {
    fn default() -> Self {
        ShardingSpec {
            glob: "**".to_owned(),
            batch_size: 1,
        }
    }
}

/// `resources: {cpu, memory, disk, timeout}` for one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceSpec {
    /// CPU cores (fractions allowed).
    pub cpu: f64,
    /// Memory limit; 0 means none.
    pub memory: ByteSize,
    /// Scratch disk; 0 means none.
    pub disk: ByteSize,
    /// Wall-clock limit of one attempt.
    pub timeout: Seconds,
}

impl Default for ResourceSpec {
    fn default() -> Self {
        ResourceSpec {
            cpu: 1.0,
            memory: ByteSize(0),
            disk: ByteSize(0),
            timeout: Seconds(600),
        }
    }
}

/// `placement: {bidders, replicas, labels}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementSpec {
    /// Nodes asked to bid on each shard (k).
    pub bidders: u32,
    /// Distinct nodes that run each shard (r).
    pub replicas: u32,
    /// Only nodes carrying all of these labels are eligible.
    pub labels: BTreeMap<String, String>,
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec {
            bidders: 3,
            replicas: 1,
            labels: BTreeMap::new(),
        }
    }
}

/// `verify: none | deterministic`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Each shard runs once and is published at once.
    #[default]
    None,
    /// Each shard runs on `replicas` nodes; the majority CID is published.
    Deterministic,
}

/// What is wrong with a spec, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// Dotted path of the field at fault (`sharding.batch_size`,
    /// `publish[0].local.path`); empty when the document itself is malformed.
    pub field: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl SpecError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for SpecError {}

/// Parses a YAML job spec and validates it.
///
/// Enums (`inputs`, `publish` targets) are written as single-key maps
/// (`local: {path: ...}`), the form users know from other tools, rather than
/// serde_yaml_ng's default of YAML tags (`!local`).
pub fn parse(yaml: &str) -> Result<JobSpec, SpecError> {
    // A malformed document is reported with its line and column only: a
    // field path taken mid-parse would point somewhere arbitrary.
    if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(yaml) {
        return Err(SpecError::new("", e.to_string()));
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_yaml_ng::Deserializer::from_str(yaml);
    let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
    let spec: JobSpec = serde_yaml_ng::with::singleton_map_recursive::deserialize(tracked)
        .map_err(|e| from_yaml_error(&track.path(), e))?;
    spec.validate()?;
    Ok(spec)
}

impl JobSpec {
    /// Parses a JSON job spec (as stored or posted to the API) and validates it.
    pub fn from_json(json: &str) -> Result<JobSpec, SpecError> {
        // Through a Value: syntax errors are told apart from wrong fields, and
        // enums with the wrong number of keys get the same message as in YAML.
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| SpecError::new("", e.to_string()))?;
        let spec: JobSpec = serde_path_to_error::deserialize(value)
            .map_err(|e| refine(field_of(e.path()), &e.into_inner().to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The per-shard limits in the form nodes receive them.
    pub fn resources(&self) -> Resources {
        Resources {
            cpu: self.resources.cpu,
            memory: self.resources.memory.0,
            disk: self.resources.disk.0,
            timeout_secs: self.resources.timeout.0,
        }
    }
}

fn from_yaml_error(path: &serde_path_to_error::Path, err: serde_yaml_ng::Error) -> SpecError {
    // serde_yaml_ng prefixes its own notion of the path; ours (which knows
    // about enum variants) goes in `field`.
    let text = err.to_string();
    refine(field_of(path), strip_path_prefix(&text))
}

fn field_of(path: &serde_path_to_error::Path) -> String {
    let field = path.to_string();
    if field == "." { String::new() } else { field }
}

/// Points serde's messages at the field the user has to fix, in the user's
/// terms.
fn refine(field: String, message: &str) -> SpecError {
    // serde reports a missing or unknown field against the struct that holds
    // it (internally tagged enums lose even the key path); name the field.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let field = match named {
        Some(name) if field.is_empty() => name.to_owned(),
        Some(name) if field.rsplit('.').next() != Some(name) => format!("{field}.{name}"),
        _ => field,
    };
    // An enum written as a map (`inputs: {local: ...}`) with several keys.
    let several_keys = "invalid value: map, expected map with a single key";
    let message = if message.contains(several_keys) {
        let fix = if field == "inputs" {
            "must name exactly one source: `local`, `urls` or `inline`"
        } else {
            "must have exactly one key naming its kind, e.g. `local: {...}`"
        };
        message.replacen(several_keys, fix, 1)
    } else {
        message.to_owned()
    };
    SpecError::new(field, message)
}

/// Drops a leading `some.path: ` that serde_yaml_ng puts before its messages.
fn strip_path_prefix(text: &str) -> &str {
    match text.split_once(": ") {
        Some((head, rest))
            if !head.is_empty()
                && head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-[]".contains(c)) =>
        {
            rest
        }
        _ => text,
    }
}
