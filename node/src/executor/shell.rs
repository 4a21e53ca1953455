//! The shell executor: runs a job's program directly (argv, no shell in
//! between) in the shard's work dir, with a clean environment, a wall-clock
//! timeout, an address-space limit and cancellation.
//!
//! The program runs in its own process group. When the run ends for any
//! reason (exit, timeout, cancel, or the caller dropping the future) the
//! whole group is sent SIGKILL, so background jobs and grandchildren never
//! outlive their shard. stdout and stderr are drained concurrently into
//! `stdout.log` / `stderr.log` in the work dir; the outcome keeps the last
//! [`TAIL_BYTES`] of each for error messages.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{ExecError, ExecOutcome, ExecRequest, RESERVED_ENV_PREFIX, TAIL_BYTES};

/// PATH for the program when the node itself has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How long to keep reading output after the process group is dead. Only a
/// process that escaped the group (setsid) can hold the pipes open longer.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Run `req.command` to completion, timeout or cancellation.
#[tracing::instrument(skip_all, fields(shard = %req.shard))]
pub async fn run_shell(
    req: &ExecRequest,
    cancel: CancellationToken,
) -> Result<ExecOutcome, ExecError> {
    let (program, args) = req.command.split_first().ok_or(ExecError::EmptyCommand)?;
    if let Some(index) = req.command.iter().position(|a| a.contains('\0')) {
        return Err(ExecError::NulInArgument { index });
    }
    let work_dir = absolute(&req.work_dir)?;
    let inputs_dir = absolute(&req.inputs_dir)?;
    let output_dir = absolute(&req.output_dir)?;
    let node_path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let env = child_env(req, &work_dir, &inputs_dir, &output_dir, node_path)?;

    for dir in [&work_dir, &inputs_dir, &output_dir] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| io_error("creating directory", dir, source))?;
    }
    let (stdout_path, stderr_path) = (work_dir.join("stdout.log"), work_dir.join("stderr.log"));
    let stdout_log = create_log(&stdout_path).await?;
    let stderr_log = create_log(&stderr_path).await?;

    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&work_dir)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if req.memory_limit > 0 {
        let limit = req.memory_limit;
        // SAFETY: the closure runs between fork and exec and only makes the
        // setrlimit syscall, which is async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                setrlimit(Resource::RLIMIT_AS, limit, limit).map_err(io::Error::from)
            });
        }
    }

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| spawn_error(program, &work_dir, &env, e))?;
    let mut group = GroupGuard(child.id().map(|pid| Pid::from_raw(pid as i32)));
    tracing::debug!(program = %program, pid = ?child.id(), "started");

    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let stop_pumps = CancellationToken::new();
    let pumps_done = CancellationToken::new();
    let pumps = async {
        let tails = tokio::join!(
            pump(stdout, stdout_log, &stdout_path, &stop_pumps),
            pump(stderr, stderr_log, &stderr_path, &stop_pumps),
        );
        pumps_done.cancel();
        tails
    };
    let supervise = async {
        let (ending, status) = tokio::select! {
            status = child.wait() => (Ending::Exited, Some(status)),
            _ = tokio::time::sleep(req.timeout) => (Ending::TimedOut, None),
            _ = cancel.cancelled() => (Ending::Cancelled, None),
        };
        // Kill whatever is left of the group, stray background jobs included.
        group.kill();
        let status = match status {
            Some(status) => status,
            None => child.wait().await,
        };
        let duration = started.elapsed();
        tokio::select! {
            _ = pumps_done.cancelled() => {}
            _ = tokio::time::sleep(DRAIN_GRACE) => {
                tracing::warn!("output pipes still open after the process group died; giving up on them");
                stop_pumps.cancel();
            }
        }
        (ending, status, duration)
    };
    let ((ending, status, duration), (stdout_tail, stderr_tail)) = tokio::join!(supervise, pumps);

    let status: ExitStatus = status.map_err(|source| ExecError::Wait {
        program: program.clone(),
        source,
    })?;
    let outcome = ExecOutcome {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out: matches!(ending, Ending::TimedOut),
        cancelled: matches!(ending, Ending::Cancelled),
        stdout_tail: stdout_tail?,
        stderr_tail: stderr_tail?,
        duration,
        timeout: req.timeout,
        memory_limit: req.memory_limit,
    };
    tracing::debug!(
        exit_code = ?outcome.exit_code,
        signal = ?outcome.signal,
        timed_out = outcome.timed_out,
        cancelled = outcome.cancelled,
        ?duration,
        "finished"
    );
    Ok(outcome)
}

/// Why supervision stopped waiting.
#[derive(Clone, Copy)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// SIGKILLs the program's process group once: when asked, or when dropped
/// (the caller abandoned the run) before that.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH means the group is already empty, which is the goal.
            if let Err(e) = killpg(pgid, Signal::SIGKILL)
                && e != nix::errno::Errno::ESRCH
            {
                tracing::warn!(%pgid, error = %e, "could not kill the process group");
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The program's whole environment: nothing inherited but PATH.
fn child_env(
    req: &ExecRequest,
    work_dir: &Path,
    inputs_dir: &Path,
    output_dir: &Path,
    node_path: OsString,
) -> Result<BTreeMap<OsString, OsString>, ExecError> {
    let mut env = BTreeMap::new();
    env.insert("PATH".into(), node_path);
    env.insert("HOME".into(), work_dir.into());
    env.insert("LANG".into(), "C.UTF-8".into());
    for (key, value) in &req.env {
        let invalid = |reason: &str| ExecError::InvalidEnv {
            key: key.clone(),
            reason: reason.to_string(),
        };
        if key.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if key.contains('=') || key.contains('\0') {
            return Err(invalid("the name may not contain '=' or NUL"));
        }
        if value.contains('\0') {
            return Err(invalid("the value may not contain NUL"));
        }
        if key.starts_with(RESERVED_ENV_PREFIX) {
            return Err(invalid(
                "names starting with SHOAL_ are set by shoal for every shard; rename it in the job's env",
            ));
        }
        env.insert(key.into(), value.into());
    }
    env.insert("SHOAL_INPUTS".into(), inputs_dir.into());
    env.insert("SHOAL_OUTPUT".into(), output_dir.into());
    env.insert("SHOAL_SHARD".into(), req.shard.clone().into());
    Ok(env)
}

/// Copies one of the program's streams into its log file, keeping the tail.
async fn pump(
    pipe: Option<impl AsyncRead + Unpin>,
    mut log: File,
    log_path: &Path,
    stop: &CancellationToken,
) -> Result<String, ExecError> {
    let mut tail = Tail::new(TAIL_BYTES);
    let Some(mut pipe) = pipe else {
        return Ok(String::new());
    };
    let mut buf = vec![0u8; 16 * 1024];
    // A failed log write must not stop the draining, or the program blocks
    // on a full pipe; the error is reported once the run is over.
    let mut log_error = None;
    loop {
        let read = tokio::select! {
            read = pipe.read(&mut buf) => read,
            _ = stop.cancelled() => break,
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log_error.get_or_insert(e);
                break;
            }
        };
        tail.push(&buf[..n]);
        if log_error.is_none()
            && let Err(e) = log.write_all(&buf[..n]).await
        {
            log_error = Some(e);
        }
    }
    if log_error.is_none()
        && let Err(e) = log.flush().await
    {
        log_error = Some(e);
    }
    match log_error {
        Some(source) => Err(io_error("writing", log_path, source)),
        None => Ok(tail.into_string()),
    }
}

/// The last `cap` bytes of a stream.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Tail {
            buf: Vec::with_capacity(2 * cap),
            cap,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim in batches so a stream of small writes stays linear.
        if self.buf.len() > 2 * self.cap {
            self.buf.drain(..self.buf.len() - self.cap);
        }
    }

    /// Decodes the tail lossily, dropping a UTF-8 sequence cut at the start.
    fn into_string(self) -> String {
        let mut start = self.buf.len().saturating_sub(self.cap);
        if start > 0 {
            let limit = (start + 3).min(self.buf.len());
            while start < limit && self.buf[start] & 0xC0 == 0x80 {
                start += 1;
            }
        }
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

async fn create_log(path: &Path) -> Result<File, ExecError> {
    File::create(path)
        .await
        .map_err(|source| io_error("creating", path, source))
}

fn absolute(path: &Path) -> Result<PathBuf, ExecError> {
    std::path::absolute(path).map_err(|source| io_error("resolving", path, source))
}

fn io_error(what: &'static str, path: &Path, source: io::Error) -> ExecError {
    ExecError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Turns a failed spawn into an error that says what to fix.
fn spawn_error(
    program: &str,
    work_dir: &Path,
    env: &BTreeMap<OsString, OsString>,
    source: io::Error,
) -> ExecError {
    let program = program.to_string();
    match source.kind() {
        io::ErrorKind::NotFound if program.contains('/') && work_dir.join(&program).is_file() => {
            // exec says ENOENT for a missing #! interpreter too.
            ExecError::Spawn {
                program,
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "the file exists but its #! interpreter or loader was not found",
                ),
            }
        }
        io::ErrorKind::NotFound => ExecError::ProgramNotFound {
            program,
            path: env
                .get(&OsString::from("PATH"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        },
        io::ErrorKind::PermissionDenied => ExecError::NotExecutable { program },
        _ => ExecError::Spawn { program, source },
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
