//! Executors: run one shard's program under the node's limits.
//!
//! Every executor takes an [`ExecRequest`] (what to run, where its inputs and
//! output live, the limits) and a cancellation token, and answers with an
//! [`ExecOutcome`] (how the program ended, the tails of its streams) or an
//! [`ExecError`] when it could not be run at all. A program that runs and
//! fails is an `Ok(outcome)` whose [`ExecOutcome::failure_reason`] is the
//! message shown to the user; an `Err` is a problem with the request or the
//! node. The shell executor lives in [`shell`]; a wasm executor is meant to
//! share these types.

pub mod shell;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use shell::run_shell;

/// How many bytes of stdout and stderr an outcome keeps.
pub const TAIL_BYTES: usize = 4096;

/// Prefix of the environment variables shoal sets; a job's env may not use it.
pub const RESERVED_ENV_PREFIX: &str = "SHOAL_";

/// Everything an executor needs to run one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments; run directly, never through a shell.
    pub command: Vec<String>,
    /// Extra environment from the job spec.
    pub env: BTreeMap<String, String>,
    /// Directory holding the staged inputs (`$SHOAL_INPUTS`).
    pub inputs_dir: PathBuf,
    /// Directory the program writes its output to (`$SHOAL_OUTPUT`).
    pub output_dir: PathBuf,
    /// Working directory and `$HOME`; stdout.log and stderr.log land here.
    pub work_dir: PathBuf,
    /// Shard label for the program (`$SHOAL_SHARD`), e.g. `job/3`.
    pub shard: String,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Address-space limit in bytes (0 = none).
    pub memory_limit: u64,
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit code when the program exited by itself.
    pub exit_code: Option<i32>,
    /// Signal that ended the program, if any.
    pub signal: Option<i32>,
    /// The program was killed because it ran past its timeout.
    pub timed_out: bool,
    /// The program was killed because the shard was cancelled.
    pub cancelled: bool,
    /// Last [`TAIL_BYTES`] of stdout, decoded lossily.
    pub stdout_tail: String,
    /// Last [`TAIL_BYTES`] of stderr, decoded lossily.
    pub stderr_tail: String,
    /// Wall-clock time from spawn to exit.
    pub duration: Duration,
    /// The timeout the program ran under, for messages.
    pub timeout: Duration,
    /// The memory limit the program ran under (0 = none), for messages.
    pub memory_limit: u64,
}

/// Most bytes of stderr quoted in a failure reason.
const REASON_STDERR_BYTES: usize = 512;

impl ExecOutcome {
    /// True when the program exited with code 0 by itself.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// Why the run failed, worded for the user; `None` on success.
    pub fn failure_reason(&self) -> Option<String> {
        if self.success() {
            return None;
        }
        if self.cancelled {
            return Some("cancelled".to_string());
        }
        if self.timed_out {
            return Some(format!("timed out after {}", human_duration(self.timeout)));
        }
        let mut reason = match (self.exit_code, self.signal) {
            (Some(code), _) => {
                let mut r = format!("exit code {code}");
                if self.memory_limit > 0 && mentions_memory(&self.stderr_tail) {
                    r.push_str(&format!(
                        " (memory limit {} reached?)",
                        human_bytes(self.memory_limit)
                    ));
                }
                r
            }
            (None, Some(sig)) => {
                let mut r = format!("killed by signal {sig}");
                if let Some(name) = signal_name(sig) {
                    r.push_str(&format!(" ({name})"));
                }
                if self.memory_limit > 0 && signal_may_mean_oom(sig) {
                    r.push_str(&format!(
                        " (memory limit {}?)",
                        human_bytes(self.memory_limit)
                    ));
                }
                r
            }
            (None, None) => "ended without an exit code or signal".to_string(),
        };
        let stderr = last_bytes(self.stderr_tail.trim(), REASON_STDERR_BYTES);
        if stderr.is_empty() {
            reason.push_str("; stderr was empty");
        } else {
            reason.push_str("; stderr: ");
            reason.push_str(stderr);
        }
        Some(reason)
    }
}

/// Why an executor could not run a program at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the command is empty; give at least a program to run")]
    EmptyCommand,
    #[error("command argument {index} contains a NUL byte")]
    NulInArgument { index: usize },
    #[error("environment variable {key:?}: {reason}")]
    InvalidEnv { key: String, reason: String },
    #[error(
        "program {program:?} not found (PATH={path}); install it on the node or give an absolute path"
    )]
    ProgramNotFound { program: String, path: String },
    #[error("program {program:?} is not executable (permission denied)")]
    NotExecutable { program: String },
    #[error("could not start {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program:?}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Words programs commonly print when an allocation fails.
fn mentions_memory(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    [
        "memoryerror",
        "out of memory",
        "cannot allocate memory",
        "memory allocation",
        "bad_alloc",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

/// Signals a process typically dies of when its allocations fail or the
/// kernel's OOM killer picks it.
fn signal_may_mean_oom(sig: i32) -> bool {
    use nix::sys::signal::Signal;
    [
        Signal::SIGKILL,
        Signal::SIGSEGV,
        Signal::SIGABRT,
        Signal::SIGBUS,
    ]
    .iter()
    .any(|s| *s as i32 == sig)
}

fn signal_name(sig: i32) -> Option<&'static str> {
    nix::sys::signal::Signal::try_from(sig)
        .ok()
        .map(|s| s.as_str())
}

/// The end of `s`, at most `max` bytes, cut on a char boundary.
fn last_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `30s`, `1.5s`, `300ms`, `2m`, `1h30m`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if !ms.is_multiple_of(1000) && secs < 60 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// `512 MiB`, `1.5 GiB`, `100 bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> ExecOutcome {
        ExecOutcome {
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            cancelled: false,
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            duration: Duration::from_millis(10),
            timeout: Duration::from_secs(30),
            memory_limit: 0,
        }
    }

    #[test]
    fn exit_zero_is_success_without_reason() {
        assert!(outcome().success());
        assert_eq!(outcome().failure_reason(), None);
    }

    #[test]
    fn nonzero_exit_reason_quotes_stderr() {
        let o = ExecOutcome {
            exit_code: Some(3),
            stderr_tail: "warming up\nboom: bad input\n".into(),
            ..outcome()
        };
        assert!(!o.success());
        assert_eq!(
            o.failure_reason().unwrap(),
            "exit code 3; stderr: warming up\nboom: bad input"
        );
    }

    #[test]
    fn nonzero_exit_reason_says_when_stderr_is_empty() {
        let o = ExecOutcome {
            exit_code: Some(1),
            ..outcome()
        };
        assert_eq!(o.failure_reason().unwrap(), "exit code 1; stderr was empty");
    }

    #[test]
    fn reason_quotes_only_the_end_of_a_long_stderr() {
        let o = ExecOutcome {
            exit_code: Some(1),
            stderr_tail: format!("{}THE END", "x".repeat(2000)),
            ..outcome()
        };
        let reason = o.failure_reason().unwrap();
        assert!(reason.ends_with("THE END"));
        assert!(reason.len() < REASON_STDERR_BYTES + 40, "{reason}");
    }

    #[test]
    fn timeout_reason_names_the_limit() {
        let o = ExecOutcome {
            exit_code: None,
            signal: Some(9),
            timed_out: true,
            duration: Duration::from_millis(30_012),
            ..outcome()
        };
        assert!(!o.success());
        assert_eq!(o.failure_reason().unwrap(), "timed out after 30s");
    }

    #[test]
    fn cancelled_run_is_not_a_success() {
        let o = ExecOutcome {
            exit_code: None,
            signal: Some(9),
            cancelled: true,
            ..outcome()
        };
        assert!(!o.success());
        assert_eq!(o.failure_reason().unwrap(), "cancelled");
    }

    #[test]
    fn signal_reason_hints_at_memory_limit() {
        let o = ExecOutcome {
            exit_code: None,
            signal: Some(9),
            memory_limit: 512 << 20,
            ..outcome()
        };
        assert_eq!(
            o.failure_reason().unwrap(),
            "killed by signal 9 (SIGKILL) (memory limit 512 MiB?); stderr was empty"
        );
    }

    #[test]
    fn exit_reason_hints_at_memory_limit_when_stderr_says_so() {
        let o = ExecOutcome {
            exit_code: Some(1),
            memory_limit: 64 << 20,
            stderr_tail: "Traceback ...\nMemoryError\n".into(),
            ..outcome()
        };
        assert!(
            o.failure_reason()
                .unwrap()
                .starts_with("exit code 1 (memory limit 64 MiB reached?); stderr:")
        );
    }

    #[test]
    fn durations_and_sizes_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(100), "100 bytes");
    }

    #[test]
    fn last_bytes_cuts_on_a_char_boundary() {
        assert_eq!(last_bytes("héllo", 4), "llo");
        assert_eq!(last_bytes("abc", 10), "abc");
    }
}
