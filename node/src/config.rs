//! Operator configuration: `<home>/config.toml`.
//!
//! Every setting has a default, so an empty file is a valid config. The file
//! `shoal-node init` writes is [`TEMPLATE`]: every setting, commented, with
//! its default; a unit test keeps the template and [`Config::default`] equal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::protocol::membership::Role;

/// File name of the config inside a node home.
pub const CONFIG_FILE: &str = "config.toml";

/// Why the config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} is missing; run `shoal-node init --home <dir>` to create one")]
    Missing { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole operator configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct Config {
    pub node: NodeSection,
    pub network: NetworkSection,
    pub status: StatusSection,
    pub capacity: CapacitySection,
    pub compute: ComputeSection,
    pub executors: ExecutorsSection,
    pub publishers: PublishersSection,
}

/// How this node takes and runs shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeSection {
    /// Where shards run; empty means `<home>/work`.
    pub work_dir: PathBuf,
    /// Shards accepted but not yet running, beyond which the node declines.
    pub max_queue: u32,
    /// How often the node reports progress on each shard it holds, in ms.
    pub heartbeat_ms: u64,
    /// Requester peer ids this node takes work from; empty means any.
    pub allow_requesters: Vec<String>,
    /// Largest total input a shard may stage, in MiB; 0 means no limit.
    pub max_input_mb: u64,
    /// Directories `inputs: {local: ...}` may read from; empty disables local
    /// inputs, so a job cannot copy (and publish) the node's own files.
    pub local_input_roots: Vec<PathBuf>,
}

/// Which executors the operator enables.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorsSection {
    pub shell: ShellSection,
}

/// The shell executor runs arbitrary programs: off unless enabled.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShellSection {
    pub enabled: bool,
}

/// Publisher drivers and their credentials (which never leave the node).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublishersSection {
    pub local: LocalPublisherSection,
    pub s3: S3PublisherSection,
    pub ipfs: IpfsPublisherSection,
}

/// The S3 driver: publishes outputs and reads inputs with the credentials of
/// this process (the standard AWS chain), which never leave the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3PublisherSection {
    pub enabled: bool,
    /// An S3-compatible endpoint; empty means AWS.
    pub endpoint_url: String,
    pub force_path_style: bool,
    /// Empty means the AWS chain's region, else us-east-1.
    pub region: String,
    /// `bucket` or `bucket/prefix/` entries outputs may be written to.
    pub allow: Vec<String>,
    /// Same form: where S3 inputs may be read from; empty disables them.
    pub read: Vec<String>,
    pub part_size_mb: u64,
    pub concurrency: usize,
}

impl Default for S3PublisherSection {
    fn default() -> Self {
        S3PublisherSection {
            enabled: false,
            endpoint_url: String::new(),
            force_path_style: false,
            region: String::new(),
            allow: Vec::new(),
            read: Vec::new(),
            part_size_mb: 8,
            concurrency: 16,
        }
    }
}

impl S3PublisherSection {
    /// Client settings.
    pub fn settings(&self) -> shoal_publishers::s3::Settings {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        shoal_publishers::s3::Settings {
            endpoint_url: non_empty(&self.endpoint_url),
            force_path_style: self.force_path_style,
            region: non_empty(&self.region),
            credentials: None,
        }
    }
}

/// The IPFS publisher imports outputs into this node's block store
/// (`<home>/blocks.redb`), served over Bitswap and the HTTP gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpfsPublisherSection {
    /// Offer the `ipfs` publisher.
    pub enabled: bool,
    /// Kubo RPC base URL to also push outputs to; empty = no push.
    pub rpc_url: String,
    /// Hours a published output stays pinned; 0 = until unpinned.
    pub pin_hours: u64,
    /// Block store size limit in MiB; 0 = no limit.
    pub max_store_mb: u64,
}

impl Default for IpfsPublisherSection {
    fn default() -> Self {
        IpfsPublisherSection {
            enabled: false,
            rpc_url: String::new(),
            pin_hours: 168,
            max_store_mb: 0,
        }
    }
}

/// The local publisher copies outputs under a directory of this machine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalPublisherSection {
    /// Root directory; empty disables the local publisher.
    pub root: PathBuf,
}

impl Default for ComputeSection {
    fn default() -> Self {
        ComputeSection {
            work_dir: PathBuf::new(),
            max_queue: 1024,
            heartbeat_ms: 2000,
            allow_requesters: Vec::new(),
            max_input_mb: 0,
            local_input_roots: Vec::new(),
        }
    }
}

/// What this node is and how it describes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Roles announced to the network.
    pub roles: Vec<Role>,
    /// Free-form labels that job specs can select on.
    pub labels: BTreeMap<String, String>,
}

/// libp2p transport, discovery and membership settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// Addresses to listen on (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start; their Kademlia tables seed ours.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// How often the node re-announces itself, in milliseconds.
    pub announce_interval_ms: u64,
    /// How long a member stays listed after its last announcement; 0 means
    /// three announce intervals.
    pub ttl_ms: u64,
}

/// The local HTTP status endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct StatusSection {
    /// `HOST:PORT` to serve `GET /status` on; empty disables it.
    pub addr: String,
}

/// Resources this node offers; missing values are detected at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CapacitySection {
    /// CPU cores offered; 0 = all cores of the machine.
    pub cpu: f64,
    /// Memory offered in MiB; 0 = the machine's total memory.
    pub memory_mb: u64,
    /// Scratch disk offered in MiB; 0 = unlimited (not announced as a limit).
    pub disk_mb: u64,
    /// Shards run at once; also the node's weight in placement.
    pub slots: u32,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            roles: vec![Role::Compute],
            labels: BTreeMap::new(),
        }
    }
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("static multiaddr"),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .expect("static multiaddr"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            announce_interval_ms: 5000,
            ttl_ms: 0,
        }
    }
}

impl Default for CapacitySection {
    fn default() -> Self {
        CapacitySection {
            cpu: 0.0,
            memory_mb: 0,
            disk_mb: 0,
            slots: 2,
        }
    }
}

impl NetworkSection {
    /// The announce period.
    pub fn announce_interval(&self) -> Duration {
        Duration::from_millis(self.announce_interval_ms.max(50))
    }

    /// The membership TTL (three intervals unless set).
    pub fn ttl(&self) -> Duration {
        if self.ttl_ms == 0 {
            self.announce_interval() * 3
        } else {
            Duration::from_millis(self.ttl_ms)
        }
    }
}

impl Config {
    /// Reads and validates `path`, naming the file in every error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::Missing {
                    path: path.to_owned(),
                }
            } else {
                ConfigError::Read {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.capacity.slots == 0 {
            return Err("capacity.slots must be at least 1".into());
        }
        if !(self.capacity.cpu.is_finite() && self.capacity.cpu >= 0.0) {
            return Err("capacity.cpu must be a non-negative number".into());
        }
        if self.network.announce_interval_ms < 50 {
            return Err("network.announce_interval_ms must be at least 50".into());
        }
        if self.network.ttl_ms != 0 && self.network.ttl_ms < self.network.announce_interval_ms {
            return Err(
                "network.ttl_ms must be 0 (three intervals) or at least announce_interval_ms"
                    .into(),
            );
        }
        if !self.status.addr.is_empty() && self.status.addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "status.addr {:?} is not HOST:PORT (for example 127.0.0.1:7070)",
                self.status.addr
            ));
        }
        let rpc_url = &self.publishers.ipfs.rpc_url;
        if !(rpc_url.is_empty()
            || rpc_url.starts_with("http://")
            || rpc_url.starts_with("https://"))
        {
            return Err(format!(
                "publishers.ipfs.rpc_url {rpc_url:?} must be an http(s) URL such as http://127.0.0.1:5001"
            ));
        }
        if self.compute.heartbeat_ms < 50 {
            return Err("compute.heartbeat_ms must be at least 50".into());
        }
        let s3 = &self.publishers.s3;
        shoal_publishers::s3::AllowList::parse(&s3.allow)
            .map_err(|e| format!("publishers.s3.allow: {e}"))?;
        shoal_publishers::s3::AllowList::parse(&s3.read)
            .map_err(|e| format!("publishers.s3.read: {e}"))?;
        if s3.part_size_mb < 5 || s3.part_size_mb > 5 * 1024 {
            return Err("publishers.s3.part_size_mb must be between 5 and 5120".into());
        }
        if s3.concurrency == 0 {
            return Err("publishers.s3.concurrency must be at least 1".into());
        }
        if !s3.endpoint_url.is_empty() && url::Url::parse(&s3.endpoint_url).is_err() {
            return Err(format!(
                "publishers.s3.endpoint_url {:?} is not a URL (for example http://127.0.0.1:9000)",
                s3.endpoint_url
            ));
        }
        for peer in &self.compute.allow_requesters {
            if peer.parse::<libp2p::PeerId>().is_err() {
                return Err(format!(
                    "compute.allow_requesters: {peer:?} is not a peer id (12D3KooW...)"
                ));
            }
        }
        Ok(())
    }
}

/// The config file `shoal-node init` writes: every setting with its default.
pub const TEMPLATE: &str = r#"# shoal-node configuration. Every setting is shown with its default.
# Command-line flags (--listen, --bootstrap, --status-addr) override this file.

[node]
# Roles announced to the network: "compute" runs shards, "requester" submits jobs.
roles = ["compute"]
# Free-form labels job specs can select on, e.g. { region = "eu", gpu = "none" }.
labels = {}

[network]
# Multiaddrs to listen on. Port 0 lets the OS pick.
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
# Peers to dial at start, e.g. ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."].
bootstrap = []
# Find peers on the local network with mDNS.
mdns = true
# How often this node re-announces itself on shoal/membership/1, in ms.
announce_interval_ms = 5000
# How long a silent member stays listed, in ms; 0 means 3 x announce_interval_ms.
ttl_ms = 0

[status]
# HOST:PORT for the HTTP status endpoint (GET /status); empty disables it.
addr = ""

[capacity]
# CPU cores offered; 0 means every core of this machine.
cpu = 0.0
# Memory offered, in MiB; 0 means all of this machine's memory.
memory_mb = 0
# Scratch disk offered, in MiB; 0 means no announced limit.
disk_mb = 0
# Shards this node runs at once; also its weight in placement.
slots = 2

[compute]
# Where shards run; empty means <home>/work.
work_dir = ""
# Shards accepted but not yet running; past this the node declines bids.
max_queue = 1024
# How often the node reports progress on each shard it holds, in ms.
heartbeat_ms = 2000
# Requester peer ids this node takes work from; empty means any requester.
allow_requesters = []
# Largest total input one shard may stage, in MiB; 0 means no limit.
max_input_mb = 0
# Directories that `inputs: {local: ...}` may read from (absolute paths).
# Empty disables local inputs, so a job cannot copy this node's own files
# (identity.key, credentials) into its output.
local_input_roots = []

[executors.shell]
# Run shards as local programs (argv, no shell). Off by default: a job spec
# then chooses what runs on this machine, as this node's user.
enabled = false

[publishers.local]
# Copy shard outputs under this directory; empty disables the local publisher.
root = ""

[publishers.s3]
# Publish shard outputs to S3 (and read S3 inputs). Credentials come from the
# standard AWS chain of this process: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
# AWS_PROFILE and ~/.aws, web identity, instance metadata. They never leave
# this machine: not in messages, manifests or logs.
enabled = false
# An S3-compatible endpoint such as "http://127.0.0.1:9000"; empty means AWS.
endpoint_url = ""
# Path-style addressing (endpoint/bucket/key); most S3-compatible stores need it.
force_path_style = false
# Region; empty means the AWS chain's (AWS_REGION, the profile), else us-east-1.
region = ""
# Where outputs may be written: "bucket" or "bucket/key-prefix/"; the bucket
# may be a glob ("team-*"). Empty allows nothing, so the node declines S3 jobs.
allow = []
# Where S3 inputs may be read from, same form. Empty disables S3 inputs, so a
# job cannot read (and publish) private data these credentials can see.
read = []
# Multipart part size in MiB (5 to 5120); smaller files go up in one request.
part_size_mb = 8
# Requests in flight at once, across files and parts.
concurrency = 16

[publishers.ipfs]
# Publish shard outputs into this node's block store (<home>/blocks.redb),
# served over Bitswap on the node's libp2p port, announced in the DHT, and
# served by the trustless gateway on status.addr (/ipfs/CID?format=car).
enabled = false
# Kubo RPC endpoint to also push each output to as a CAR (dag/import, pinned),
# e.g. "http://127.0.0.1:5001"; empty means no push.
rpc_url = ""
# Hours a published output stays pinned; 0 means until unpinned.
# `shoal-node gc` (or the node itself, every 10 minutes) drops expired pins.
pin_hours = 168
# Block store size limit, in MiB; 0 means no limit. When full, unpinned
# blocks are collected first; then publishing fails with a clear error.
max_store_mb = 0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_default_config() {
        assert_eq!(Config::parse(TEMPLATE).unwrap(), Config::default());
    }

    #[test]
    fn empty_file_is_the_default_config() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = Config::parse("[network]\nlisten_on = []\n").unwrap_err();
        assert!(err.contains("listen_on"), "{err}");
    }

    #[test]
    fn bad_multiaddr_is_rejected() {
        let err = Config::parse("[network]\nlisten = [\"not an addr\"]\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn zero_slots_is_rejected() {
        let err = Config::parse("[capacity]\nslots = 0\n").unwrap_err();
        assert!(err.contains("capacity.slots"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        std::fs::write(&path, "[network\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
    }
}
