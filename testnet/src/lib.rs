//! A local shoal network of real `shoal-node` OS processes on 127.0.0.1.
//!
//! Nodes run from this crate's own binary (hidden subcommand `__node`), so a
//! fresh clone needs no separate build of `shoal-node`. Every node gets a
//! fresh home, OS-picked ports and mDNS off; the first is the bootstrap peer
//! of the rest. Tests under `tests/` use this library too.

pub mod demo;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use shoal_node::config::{CONFIG_FILE, Config};
use shoal_node::daemon::{RUN_FILE, RunInfo};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// `exe __shoal --api API`: the `shoal` CLI of the testnet binary `exe`,
/// pointed at a requester; add the subcommand and run it.
pub fn shoal_cli(exe: &Path, api: &str) -> std::process::Command {
    let mut command = std::process::Command::new(exe);
    command.args([SHOAL_SUBCOMMAND, "--api", api]);
    command
}

/// Every regular file under `dir`, recursively (nothing if it is missing).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Hidden subcommand that runs a node from this binary.
pub const NODE_SUBCOMMAND: &str = "__node";
/// Hidden subcommand that runs the `shoal` CLI (and requester) from this binary.
pub const SHOAL_SUBCOMMAND: &str = "__shoal";

/// One member as `/status` lists it (the fields the testnet reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub peer_id: String,
    #[serde(default)]
    pub free_slots: u32,
}

/// A node's `/status` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub peer_id: String,
    pub members: Vec<Member>,
    #[serde(default)]
    pub dropped_messages: std::collections::BTreeMap<String, u64>,
}

/// A running node process.
pub struct NodeProcess {
    pub name: String,
    pub home: PathBuf,
    pub run: RunInfo,
    child: Option<Child>,
}

impl NodeProcess {
    /// The status URL (`http://host:port/status`).
    pub fn status_url(&self) -> String {
        format!(
            "{}/status",
            self.run.status_url.as_deref().unwrap_or("http://invalid")
        )
    }

    /// The node's TCP multiaddr with its peer id, for bootstrapping others.
    pub fn tcp_multiaddr(&self) -> Option<String> {
        self.run
            .listen_addrs
            .iter()
            .find(|a| a.contains("/tcp/"))
            .map(|a| format!("{a}/p2p/{}", self.run.peer_id))
    }

    /// Sends `signal` to the process (SIGINT to leave, SIGKILL to vanish).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.run.pid as i32);
        nix::sys::signal::kill(pid, signal).with_context(|| format!("cannot signal {}", self.name))
    }

    /// Waits for the process to exit (after a signal).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .with_context(|| format!("{} did not exit within 10 s", self.name))??;
        }
        Ok(())
    }

    /// Whether the process is still ours to stop.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Adjusts node `index`'s config before it starts.
pub type Configure = Box<dyn Fn(usize, &mut Config) + Send + Sync>;
/// Extra environment variables for node `index`.
pub type NodeEnv = Box<dyn Fn(usize) -> Vec<(String, String)> + Send + Sync>;

/// How to build the network.
pub struct Options {
    /// The binary that understands `__node run` (usually this one).
    pub exe: PathBuf,
    /// Where homes go; a temp dir (removed at the end) if `None`.
    pub dir: Option<PathBuf>,
    /// Adjusts each node's config before it starts (index, config).
    pub configure: Configure,
    /// How long to wait for a full membership view.
    pub converge_timeout: Duration,
    /// Extra environment for a node (index -> variables), e.g. test switches.
    pub node_env: NodeEnv,
    /// Environment for every process (nodes and requester), e.g. the S3
    /// endpoint's credentials.
    pub env: Vec<(String, String)>,
}

impl Options {
    /// Defaults for `exe`: 1 s announcements, converge within 60 s.
    pub fn new(exe: PathBuf) -> Self {
        Options {
            exe,
            dir: None,
            configure: Box::new(|_, _| {}),
            converge_timeout: Duration::from_secs(60),
            node_env: Box::new(|_| Vec::new()),
            env: Vec::new(),
        }
    }
}

/// A running local network.
pub struct Testnet {
    pub nodes: Vec<NodeProcess>,
    /// The requester, once [`Testnet::start_requester`] ran.
    pub requester: Option<NodeProcess>,
    options: Options,
    root: PathBuf,
    _temp: Option<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Testnet {
    /// Starts `n` nodes and waits until every node lists all `n`.
    pub async fn start(n: usize, options: Options) -> anyhow::Result<Testnet> {
        if n == 0 {
            bail!("--nodes must be at least 1");
        }
        let (root, temp) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("shoal-testnet-")
                    .tempdir()?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let mut net = Testnet {
            nodes: Vec::new(),
            requester: None,
            options,
            root,
            _temp: temp,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        for _ in 0..n {
            net.add_node().await?;
        }
        net.wait_converged(n).await?;
        Ok(net)
    }

    /// The directory holding every node's home.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts one more node, bootstrapping from the first.
    pub async fn add_node(&mut self) -> anyhow::Result<&NodeProcess> {
        let index = self.nodes.len();
        let name = format!("node-{index}");
        let home = self.root.join(&name);
        shoal_node::daemon::init(&home, true)?;
        let mut config = Config::default();
        config.network.listen = vec![
            "/ip4/127.0.0.1/tcp/0".parse()?,
            "/ip4/127.0.0.1/udp/0/quic-v1".parse()?,
        ];
        config.network.mdns = false;
        config.network.announce_interval_ms = 1000;
        config.status.addr = "127.0.0.1:0".into();
        config.executors.shell.enabled = true;
        config.publishers.local.root = "published".into();
        config.compute.heartbeat_ms = 500;
        // Demo and test inputs live beside the node homes.
        config.compute.local_input_roots = vec![self.root.clone()];
        if let Some(first) = self.nodes.first()
            && let Some(addr) = first.tcp_multiaddr()
        {
            config.network.bootstrap = vec![addr.parse()?];
        }
        (self.options.configure)(index, &mut config);
        std::fs::write(home.join(CONFIG_FILE), toml::to_string(&config)?)?;
        let log = std::fs::File::create(home.join("node.log"))?;
        let mut command = Command::new(&self.options.exe);
        command
            .arg(NODE_SUBCOMMAND)
            .arg("run")
            .arg("--home")
            .arg(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .envs(self.options.env.iter().cloned())
            .envs((self.options.node_env)(index))
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.options.exe.display()))?;
        let run = wait_for_run_file(&home, &mut child, &name).await?;
        self.nodes.push(NodeProcess {
            name,
            home,
            run,
            child: Some(child),
        });
        Ok(self.nodes.last().expect("just pushed"))
    }

    /// Starts the requester (`shoal serve`) bootstrapped from the first node
    /// and waits until it sees every node. `extra` are more `serve` flags.
    pub async fn start_requester(&mut self, extra: &[&str]) -> anyhow::Result<String> {
        let home = self.root.join("requester");
        std::fs::create_dir_all(&home)?;
        let mut command = Command::new(&self.options.exe);
        command
            .arg(SHOAL_SUBCOMMAND)
            .args(["serve", "--home"])
            .arg(&home)
            .args([
                "--api-addr",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
            ])
            .args(extra);
        if let Some(addr) = self.nodes.first().and_then(|n| n.tcp_multiaddr()) {
            command.args(["--bootstrap", &addr]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join("requester.log"))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .envs(self.options.env.iter().cloned())
            .kill_on_drop(true);
        die_with_parent(&mut command);
        let _ = std::fs::remove_file(home.join(RUN_FILE));
        let mut child = command.spawn().context("cannot start the requester")?;
        let run = wait_for_run_file(&home, &mut child, "requester").await?;
        let api = run.status_url.clone().unwrap_or_default();
        self.requester = Some(NodeProcess {
            name: "requester".into(),
            home,
            run,
            child: Some(child),
        });
        let expected = self.nodes.iter().filter(|n| n.is_running()).count() + 1;
        let deadline = Instant::now() + self.options.converge_timeout;
        loop {
            let seen = self
                .http
                .get(format!("{api}/nodes"))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Vec<Member>>());
            if let Some(members) = seen
                && members.await.map(|m| m.len()).unwrap_or(0) >= expected
            {
                return Ok(api);
            }
            if Instant::now() > deadline {
                bail!(
                    "the requester did not see all {expected} members in time; see {}",
                    self.root.join("requester/requester.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the requester with SIGINT and waits for it.
    pub async fn stop_requester(&mut self) -> anyhow::Result<()> {
        if let Some(mut requester) = self.requester.take() {
            requester.signal(nix::sys::signal::Signal::SIGINT)?;
            requester.wait().await?;
        }
        Ok(())
    }

    /// Fetches one node's `/status`.
    pub async fn status(&self, node: &NodeProcess) -> anyhow::Result<Status> {
        Ok(self
            .http
            .get(node.status_url())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits until every running node lists exactly `expected` members.
    pub async fn wait_converged(&self, expected: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.options.converge_timeout;
        loop {
            let mut behind = Vec::new();
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                match self.status(node).await {
                    Ok(s) if s.members.len() == expected => {}
                    Ok(s) => behind.push(format!("{} sees {}", node.name, s.members.len())),
                    Err(e) => behind.push(format!("{}: {e}", node.name)),
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the network did not converge to {expected} members within {:?}: {}; node logs are in {}",
                    self.options.converge_timeout,
                    behind.join(", "),
                    self.root.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls `check` on every running node's status until it holds.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Status) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ok = true;
            for node in self.nodes.iter().filter(|n| n.is_running()) {
                match self.status(node).await {
                    Ok(s) if check(&s) => {}
                    _ => ok = false,
                }
            }
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("timed out after {timeout:?} waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every node with SIGINT (they announce they leave) and waits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop_requester().await?;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let _ = node.signal(nix::sys::signal::Signal::SIGINT);
        }
        for node in &mut self.nodes {
            node.wait().await?;
        }
        Ok(())
    }
}

/// The child is killed when we die, even if we are killed with SIGKILL, so a
/// crashed test or testnet leaves no stray nodes behind.
pub(crate) fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

async fn wait_for_run_file(home: &Path, child: &mut Child, name: &str) -> anyhow::Result<RunInfo> {
    let path = home.join(RUN_FILE);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(run) = serde_json::from_slice::<RunInfo>(&bytes)
        {
            return Ok(run);
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(home.join("node.log")).unwrap_or_default();
            bail!("{name} exited with {status} while starting:\n{log}");
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not start within 30 s; see {}",
                home.join("node.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
