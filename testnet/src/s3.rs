//! A real S3 API server for the testnet and the tests: moto's server
//! (`moto[server]` from PyPI), started on 127.0.0.1 with a port the OS picks.
//!
//! moto keeps its data in memory, so an outage is made with a [`Gate`], a
//! loopback TCP proxy in front of it that can refuse connections and cut the
//! ones in flight, which is what a node sees of a server that went down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Credentials the testnet hands to nodes and the requester. moto accepts
/// any; these are only recognisable.
pub const ACCESS_KEY_ID: &str = "AKIASHOALTESTNET0000";
pub const SECRET_ACCESS_KEY: &str = "shoal-testnet-secret-do-not-leak-0000000";
/// Region the testnet uses.
pub const REGION: &str = "us-east-1";

/// How to install the server, for error messages.
pub const INSTALL_HINT: &str = "run `scripts/setup-test-deps` (creates .venv with moto[server] from PyPI), \
or `pip install 'moto[server]'`, or set SHOAL_MOTO_SERVER to a moto_server executable";

/// A running moto server.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
    pub addr: SocketAddr,
}

/// Finds `moto_server`: `$SHOAL_MOTO_SERVER`, then `.venv/bin/moto_server` in
/// the current directory, beside this crate's workspace or above this binary,
/// then `PATH`.
pub fn find_moto_server() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("SHOAL_MOTO_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_path_buf));
    }
    for root in roots {
        let candidate = root.join(".venv/bin/moto_server");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("moto_server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!("moto_server (a local S3 API server) was not found: {INSTALL_HINT}")
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    /// `env` is extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0` to
    /// make it check credentials).
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<MotoServer> {
        let exe = find_moto_server()?;
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut command = Command::new(&exe);
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            crate::die_with_parent(&mut command);
            let mut child = command
                .spawn()
                .with_context(|| format!("cannot start {}: {INSTALL_HINT}", exe.display()))?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            match wait_listening(addr, &mut child).await {
                Ok(()) => {
                    return Ok(MotoServer {
                        child,
                        endpoint: format!("http://{addr}"),
                        addr,
                    });
                }
                Err(e) => {
                    let _ = child.kill().await;
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_listening(addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("moto_server exited at start ({status}); {INSTALL_HINT}");
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("moto_server did not listen on {addr} within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy on a loopback port that can be closed (connections refused,
/// open ones cut) and opened again on the same port.
pub struct Gate {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    running: Arc<Mutex<Option<JoinSet<()>>>>,
}

impl Gate {
    /// Opens a gate in front of `upstream`.
    pub async fn open_to(upstream: SocketAddr) -> anyhow::Result<Gate> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let gate = Gate {
            addr,
            upstream,
            running: Arc::new(Mutex::new(None)),
        };
        gate.serve(listener).await;
        Ok(gate)
    }

    /// `http://addr`, for clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            // Connection tasks live in this task's set: aborting the accept
            // task drops the set, which cuts every open connection.
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        *self.running.lock().await = Some(tasks);
    }

    /// Refuses new connections and cuts open ones.
    pub async fn close(&self) {
        if let Some(mut tasks) = self.running.lock().await.take() {
            tasks.shutdown().await;
        }
    }

    /// Accepts connections again, on the same port.
    pub async fn open(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context(format!("cannot reopen {}", self.addr)),
            }
        };
        self.serve(listener).await;
        Ok(())
    }
}

/// Environment that points the AWS chain of a node or requester at the
/// testnet's credentials (and keeps it off the EC2 metadata service).
pub fn env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Turns on a node's S3 driver against `endpoint`, allowed to write and
/// read `bucket`.
pub fn configure_node(config: &mut shoal_node::config::Config, endpoint: &str, bucket: &str) {
    let s3 = &mut config.publishers.s3;
    s3.enabled = true;
    s3.endpoint_url = endpoint.to_string();
    s3.force_path_style = true;
    s3.allow = vec![bucket.to_string()];
    s3.read = vec![bucket.to_string()];
}

/// A client for `endpoint` with the testnet's credentials.
pub async fn client(endpoint: &str) -> shoal_publishers::s3::Client {
    client_with(endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY).await
}

/// Client settings for `endpoint` with the given key pair.
pub fn settings_with(endpoint: &str, key: &str, secret: &str) -> shoal_publishers::s3::Settings {
    shoal_publishers::s3::Settings {
        endpoint_url: Some(endpoint.to_string()),
        force_path_style: true,
        region: Some(REGION.to_string()),
        credentials: Some(shoal_publishers::s3::StaticCredentials {
            access_key_id: key.to_string(),
            secret_access_key: secret.to_string(),
        }),
    }
}

/// Client settings for `endpoint` with the testnet's credentials.
pub fn settings(endpoint: &str) -> shoal_publishers::s3::Settings {
    settings_with(endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY)
}

/// A client for `endpoint` with the given key pair.
pub async fn client_with(endpoint: &str, key: &str, secret: &str) -> shoal_publishers::s3::Client {
    shoal_publishers::s3::connect(&settings_with(endpoint, key, secret))
        .await
        .0
}

/// Creates `bucket` (fine if it exists).
pub async fn create_bucket(
    client: &shoal_publishers::s3::Client,
    bucket: &str,
) -> anyhow::Result<()> {
    match client.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "creating bucket {bucket}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )),
    }
}
