//! Behaviour of the shell executor against real processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::*;

fn request(dir: &TempDir, command: &[&str]) -> ExecRequest {
    ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        inputs_dir: dir.path().join("inputs"),
        output_dir: dir.path().join("output"),
        work_dir: dir.path().join("work"),
        shard: "job/3".to_string(),
        timeout: Duration::from_secs(20),
        memory_limit: 0,
    }
}

async fn run(req: &ExecRequest) -> ExecOutcome {
    run_shell(req, CancellationToken::new()).await.unwrap()
}

/// Polls `check` until it holds or `within` runs out.
async fn eventually(within: Duration, check: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// True once `pid` has exited; a zombie nobody reaped counts as gone.
fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

#[tokio::test]
async fn exit_code_zero_is_success() {
    let dir = TempDir::new().unwrap();
    let outcome = run(&request(&dir, &["true"])).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(0));
}

#[tokio::test]
async fn nonzero_exit_code_is_reported_with_stderr() {
    let dir = TempDir::new().unwrap();
    let outcome = run(&request(
        &dir,
        &["sh", "-c", "echo 'no such column' >&2; exit 3"],
    ))
    .await;
    assert!(!outcome.success());
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(
        outcome.failure_reason().unwrap(),
        "exit code 3; stderr: no such column"
    );
}

#[tokio::test]
async fn environment_is_exactly_path_home_lang_shoal_vars_and_spec_env() {
    let dir = TempDir::new().unwrap();
    let mut req = request(&dir, &["env"]);
    req.env.insert("GREETING".into(), "hello world".into());
    let outcome = run(&req).await;
    assert!(outcome.success(), "{outcome:?}");

    let env: BTreeMap<&str, &str> = outcome
        .stdout_tail
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let keys: BTreeSet<&str> = env.keys().copied().collect();
    let expected = [
        "GREETING",
        "HOME",
        "LANG",
        "PATH",
        "SHOAL_INPUTS",
        "SHOAL_OUTPUT",
        "SHOAL_SHARD",
    ];
    assert_eq!(keys, expected.into_iter().collect());
    let abs = |p: &Path| std::path::absolute(p).unwrap().display().to_string();
    assert_eq!(env["HOME"], abs(&req.work_dir));
    assert_eq!(env["LANG"], "C.UTF-8");
    assert_eq!(env["SHOAL_INPUTS"], abs(&req.inputs_dir));
    assert_eq!(env["SHOAL_OUTPUT"], abs(&req.output_dir));
    assert_eq!(env["SHOAL_SHARD"], "job/3");
    assert_eq!(env["GREETING"], "hello world");
}

#[tokio::test]
async fn spec_env_cannot_override_shoal_variables() {
    let dir = TempDir::new().unwrap();
    let mut req = request(&dir, &["true"]);
    req.env.insert("SHOAL_OUTPUT".into(), "/etc".into());
    let err = run_shell(&req, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(&err, ExecError::InvalidEnv { key, .. } if key == "SHOAL_OUTPUT"));
    assert!(err.to_string().contains("SHOAL_OUTPUT"), "{err}");
}

#[tokio::test]
async fn program_runs_in_work_dir_and_writes_to_output_dir() {
    let dir = TempDir::new().unwrap();
    let req = request(
        &dir,
        &["sh", "-c", "pwd; echo result > \"$SHOAL_OUTPUT/out.txt\""],
    );
    let outcome = run(&req).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(
        outcome.stdout_tail.trim(),
        std::path::absolute(&req.work_dir)
            .unwrap()
            .display()
            .to_string()
    );
    let out = std::fs::read_to_string(req.output_dir.join("out.txt")).unwrap();
    assert_eq!(out, "result\n");
}

#[tokio::test]
async fn argv_is_passed_without_a_shell() {
    let dir = TempDir::new().unwrap();
    let outcome = run(&request(&dir, &["echo", "$HOME", "a;b", "*"])).await;
    assert_eq!(outcome.stdout_tail, "$HOME a;b *\n");
}

#[tokio::test]
async fn streams_are_logged_in_full_and_tails_keep_only_the_end() {
    let dir = TempDir::new().unwrap();
    // ~170 KiB on stderr before anything on stdout: more than a pipe holds,
    // so this only finishes if both streams are read at the same time.
    let req = request(&dir, &["sh", "-c", "seq 1 30000 >&2; seq 1 30000"]);
    let outcome = run(&req).await;
    assert!(outcome.success(), "{outcome:?}");

    let full: String = (1..=30000).map(|i| format!("{i}\n")).collect();
    for (tail, log) in [
        (&outcome.stdout_tail, "stdout.log"),
        (&outcome.stderr_tail, "stderr.log"),
    ] {
        assert_eq!(
            std::fs::read_to_string(req.work_dir.join(log)).unwrap(),
            full
        );
        assert_eq!(tail.len(), TAIL_BYTES);
        assert!(full.ends_with(tail.as_str()));
        assert!(tail.ends_with("\n29999\n30000\n"));
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = TempDir::new().unwrap();
    let mut req = request(
        &dir,
        &["sh", "-c", "sleep 100 & echo $! > grandchild.pid; wait"],
    );
    req.timeout = Duration::from_millis(500);
    let outcome = run(&req).await;

    assert!(outcome.timed_out);
    assert!(!outcome.success());
    assert_eq!(outcome.signal, Some(9));
    assert!(outcome.duration < Duration::from_secs(10), "{outcome:?}");
    assert_eq!(outcome.failure_reason().unwrap(), "timed out after 500ms");
    let grandchild = read_pid(&req.work_dir.join("grandchild.pid"));
    assert!(
        eventually(Duration::from_secs(5), || process_is_gone(grandchild)).await,
        "grandchild {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn background_jobs_do_not_outlive_the_program() {
    let dir = TempDir::new().unwrap();
    let req = request(&dir, &["sh", "-c", "sleep 100 & echo $! > background.pid"]);
    let outcome = run(&req).await;

    assert!(outcome.success(), "{outcome:?}");
    assert!(outcome.duration < Duration::from_secs(10), "{outcome:?}");
    let background = read_pid(&req.work_dir.join("background.pid"));
    assert!(
        eventually(Duration::from_secs(5), || process_is_gone(background)).await,
        "background job {background} outlived the program"
    );
}

#[tokio::test]
async fn cancel_kills_the_program() {
    let dir = TempDir::new().unwrap();
    let req = request(&dir, &["sh", "-c", "echo $$ > started.pid; exec sleep 100"]);
    let cancel = CancellationToken::new();
    let run = tokio::spawn({
        let (req, cancel) = (req.clone(), cancel.clone());
        async move { run_shell(&req, cancel).await }
    });
    let pid_file = req.work_dir.join("started.pid");
    // The pid is written before exec, so wait for a complete line.
    let started = || std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'));
    assert!(
        eventually(Duration::from_secs(10), started).await,
        "program never started"
    );
    cancel.cancel();

    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run_shell did not return after cancel")
        .unwrap()
        .unwrap();
    assert!(outcome.cancelled);
    assert!(!outcome.timed_out);
    assert!(!outcome.success());
    assert_eq!(outcome.failure_reason().unwrap(), "cancelled");
    let pid = read_pid(&pid_file);
    assert!(eventually(Duration::from_secs(5), || process_is_gone(pid)).await);
}

#[tokio::test]
async fn memory_limit_makes_a_large_allocation_fail() {
    let Some(python) = python() else {
        eprintln!("skipped: no python3 found");
        return;
    };
    let dir = TempDir::new().unwrap();
    let limit = 64 << 20;

    // Under the same limit a small allocation works, so the failure below is
    // the allocation and not the interpreter failing to start.
    let mut small = request(&dir, &[python, "-c", "x = bytearray(1024)"]);
    small.memory_limit = limit;
    let outcome = run(&small).await;
    assert!(outcome.success(), "{outcome:?}");

    let mut big = request(&dir, &[python, "-c", "x = bytearray(512*1024*1024)"]);
    big.memory_limit = limit;
    let outcome = run(&big).await;
    assert!(!outcome.success());
    let reason = outcome.failure_reason().unwrap();
    assert!(reason.contains("memory limit 64 MiB"), "{reason}");
    assert!(reason.contains("MemoryError"), "{reason}");
}

#[tokio::test]
async fn missing_program_is_an_error_naming_it() {
    let dir = TempDir::new().unwrap();
    let req = request(&dir, &["shoal-no-such-program", "--help"]);
    let err = run_shell(&req, CancellationToken::new()).await.unwrap_err();
    assert!(
        matches!(&err, ExecError::ProgramNotFound { program, .. } if program == "shoal-no-such-program")
    );
    assert!(
        err.to_string()
            .contains("\"shoal-no-such-program\" not found"),
        "{err}"
    );
}

#[tokio::test]
async fn program_without_execute_permission_is_an_error() {
    let dir = TempDir::new().unwrap();
    let req = request(&dir, &["./script.sh"]);
    std::fs::create_dir_all(&req.work_dir).unwrap();
    std::fs::write(req.work_dir.join("script.sh"), "#!/bin/sh\ntrue\n").unwrap();
    let err = run_shell(&req, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(&err, ExecError::NotExecutable { program } if program == "./script.sh"));
}

#[tokio::test]
async fn empty_command_is_an_error() {
    let dir = TempDir::new().unwrap();
    let err = run_shell(&request(&dir, &[]), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::EmptyCommand));
}

#[test]
fn tail_drops_a_utf8_sequence_cut_at_the_start() {
    let mut tail = Tail::new(4);
    tail.push("aé".as_bytes());
    tail.push("bcd".as_bytes());
    // The last 4 bytes begin inside 'é'; the cut half is dropped, not shown as U+FFFD.
    assert_eq!(tail.into_string(), "bcd");

    let mut tail = Tail::new(8);
    tail.push(b"short");
    assert_eq!(tail.into_string(), "short");
}
