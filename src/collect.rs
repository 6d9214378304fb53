//! Pipes and limits: run a child to completion, collecting its output under `maxBuffer`, with
//! the timeout, abort and kill escalation that end it early — and the rules of what
//! `spawnCollect` and `runProcess` make of the run, so the bindings only convert.
//!
//! A call settles once the leader is reaped and both pipes reached EOF — or, when a descendant
//! still holds a pipe after the leader is gone, once [`DRAIN_AFTER_EXIT`] has passed. Memory per
//! stream is bounded by the limit plus one read: the buffer never grows past `limit + 1` bytes,
//! and the one byte over is how an overflow is seen.
//!
//! [`run`] starts the plan's command through the launcher and hands it to [`collect`], which
//! works on any started child ([`Launched`] over a [`Spawned`] group). That split is what lets
//! the limits, the drain and the escalation be unit-tested against plain child processes,
//! without a launcher binary.

use std::io;
use std::time::{Duration, Instant};

use bytes::BufMut;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant as TokioInstant};

use crate::error::{errno_description, Error};
use crate::kill::{self, EarlyEnd, Spawned};
use crate::launch::{self, Launched};
use crate::options::CollectPlan;
use crate::vocabulary::confinement::Limit;
use crate::vocabulary::exit::{Ending, ExitStatus, ResourceUsage};
use crate::vocabulary::limits::{DRAIN_AFTER_EXIT, READ_CHUNK};
use crate::vocabulary::stdio::{StdioMode, StreamName};

const PAGE: usize = 4096;

/// What a finished call saw.
#[derive(Debug)]
pub struct Outcome {
  pub pid: u32,
  pub stdout: Vec<u8>,
  pub stderr: Vec<u8>,
  pub status: ExitStatus,
  pub ended_by: Option<Ending>,
  /// The limit the kernel ended it for, if it says so.
  pub limit: Option<Limit>,
  pub usage: ResourceUsage,
  pub duration: Duration,
}

impl Outcome {
  pub fn timed_out(&self) -> bool {
    matches!(self.ended_by, Some(Ending::Timeout(_)))
  }

  /// What `spawnCollect` rejects with, carrying the output so far: an overflow or an abort. A
  /// run that timed out resolves (`timedOut: true`), as does any exit of the process's own.
  pub fn rejection(&self) -> Option<Error> {
    match self.ended_by {
      Some(ending @ (Ending::MaxBuffer { .. } | Ending::Aborted)) => Some(ending.into()),
      Some(Ending::Timeout(_)) | None => None,
    }
  }
}

/// What `runProcess` resolves with. It never rejects because of the process: a command that
/// could not start is reported the way a shell reports it — 127 not found, 126 not executable —
/// and a directory that could not be entered as GNU `env --chdir` and `chroot` report their own
/// failure before running anything: 125, so it is never mistaken for a missing command.
#[derive(Debug, PartialEq)]
pub struct ProcessResult {
  pub stdout: Vec<u8>,
  pub stderr: Vec<u8>,
  /// Exit code 0, no signal, not ended by tethered.
  pub ok: bool,
  /// How the process ended; 127 (not found), 126 (not executable) or 125 (its `cwd` could not
  /// be entered) when it could not start, `None` when no process ever ran (aborted before the
  /// start, launcher gone).
  pub status: Option<ExitStatus>,
  pub timed_out: bool,
  pub limit: Option<Limit>,
  /// `None` when no process ran.
  pub usage: Option<ResourceUsage>,
  /// From the call to its end, also when it ended without an outcome (the launcher died).
  pub duration: Duration,
  /// Set only when the run failed outside the process's own exit: could not start, maxBuffer,
  /// timeout, abort.
  pub error: Option<Error>,
}

impl ProcessResult {
  /// `failed_after`: how long the call took when it did not produce a process.
  pub fn from_run(run: Result<Outcome, Error>, failed_after: Duration) -> Self {
    match run {
      Ok(outcome) => ProcessResult {
        ok: outcome.status == ExitStatus::Code(0) && outcome.ended_by.is_none(),
        timed_out: outcome.timed_out(),
        error: outcome.ended_by.map(Error::from),
        status: Some(outcome.status),
        limit: outcome.limit,
        usage: Some(outcome.usage),
        duration: outcome.duration,
        stdout: outcome.stdout,
        stderr: outcome.stderr,
      },
      Err(error) => {
        let code = match &error {
          Error::Spawn { errno, .. } if *errno == libc::EACCES || *errno == libc::ENOEXEC => {
            Some((126, *errno))
          }
          Error::Spawn { errno, .. } => Some((127, *errno)),
          Error::SpawnCwd { errno, .. } => Some((125, *errno)),
          _ => None,
        };
        let (status, stderr) = match code {
          Some((code, errno)) => {
            let message = format!("Failed to spawn: {error} ({})", errno_description(errno));
            (Some(ExitStatus::Code(code)), message.into_bytes())
          }
          None => (None, Vec::new()),
        };
        ProcessResult {
          stdout: Vec::new(),
          stderr,
          ok: false,
          status,
          timed_out: false,
          limit: None,
          usage: None,
          duration: failed_after,
          error: Some(error),
        }
      }
    }
  }
}

/// Starts the plan's command and collects it; `started` is when the call began. `Err` only
/// when it could not be started or was aborted before it started; everything that happens to a
/// started process is in the `Outcome`.
pub async fn run(
  plan: CollectPlan,
  abort: Option<oneshot::Receiver<()>>,
  started: Instant,
) -> Result<Outcome, Error> {
  if plan.abort_signal == Some(true) {
    return Err(Error::Aborted);
  }
  let stdin_mode = match plan.input {
    Some(_) => StdioMode::Pipe,
    None => StdioMode::Ignore,
  };
  let stdio = [stdin_mode, StdioMode::Pipe, StdioMode::Pipe];
  let child = launch::launch(&plan.launch, stdio, Vec::new()).await?;
  collect(child, &plan, abort, started).await
}

/// Collects a started child to its end under the plan's limits, timeout, abort and kill policy;
/// `started` is when the call began (for the duration). The child's stdout and stderr must be
/// pipes, and so must its stdin when the plan has `input`. `Err` only when the leader could not
/// be waited for (the launcher died).
pub async fn collect<G: Spawned>(
  child: Launched<G>,
  plan: &CollectPlan,
  abort: Option<oneshot::Receiver<()>>,
  started: Instant,
) -> Result<Outcome, Error> {
  let mut stdout = Vec::new();
  let mut stderr = Vec::new();
  let reaped;
  let ended_by;
  {
    let out_pipe = child.stdout.expect("stdout is piped");
    let err_pipe = child.stderr.expect("stderr is piped");
    let mut out_read = std::pin::pin!(read_limited(&out_pipe, &mut stdout, plan.max_buffer));
    let mut err_read = std::pin::pin!(read_limited(&err_pipe, &mut stderr, plan.max_buffer));
    let mut write_input = std::pin::pin!(write_input(child.stdin, plan.input.as_deref()));
    let group = &child.process;
    let mut wait = std::pin::pin!(group.wait());
    let mut early = EarlyEnd::new(group, plan.kill, plan.timeout, abort);
    let overflow = |stream| Ending::MaxBuffer {
      stream,
      limit: plan.max_buffer.unwrap_or(usize::MAX),
    };
    let (mut out_done, mut err_done, mut input_done) = (false, false, false);
    let mut reaped_leader = None;
    let mut drain_until = None;

    while reaped_leader.is_none() || !(out_done && err_done) {
      tokio::select! {
        end = &mut out_read, if !out_done => {
          out_done = true;
          if end == ReadEnd::Overflow {
            early.end(overflow(StreamName::Stdout));
          }
        }
        end = &mut err_read, if !err_done => {
          err_done = true;
          if end == ReadEnd::Overflow {
            early.end(overflow(StreamName::Stderr));
          }
        }
        () = &mut write_input, if !input_done => input_done = true,
        exit = &mut wait, if reaped_leader.is_none() => {
          reaped_leader = Some(exit?);
          drain_until = Some(TokioInstant::now() + DRAIN_AFTER_EXIT);
        }
        () = early.act(), if reaped_leader.is_none() => {}
        () = sleep_until(drain_until.unwrap_or_else(kill::never)), if drain_until.is_some() => break,
      }
    }
    reaped = reaped_leader.expect("loop ends only after the leader was reaped");
    ended_by = early.ended_by();
  }
  if let Some(limit) = plan.max_buffer {
    stdout.truncate(limit);
    stderr.truncate(limit);
  }
  Ok(Outcome {
    pid: child.pid,
    stdout,
    stderr,
    status: reaped.status,
    ended_by,
    limit: plan
      .launch
      .confinement
      .limits
      .ended(reaped.status, ended_by),
    usage: reaped.usage,
    duration: started.elapsed(),
  })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
  Eof,
  Overflow,
  Failed,
}

/// Reads `pipe` to EOF into `buf`, stopping once more than `limit` bytes arrived.
///
/// Each read is sized to end on a page boundary of the destination: the kernel copies into
/// page-aligned memory several times faster than into memory a few bytes off (glibc puts large
/// allocations 16 bytes past a page start), so after one short read, reads stay aligned.
/// The pages ahead of the reads are populated in batches (see [`Prefault`]).
async fn read_limited(pipe: &pipe::Receiver, buf: &mut Vec<u8>, limit: Option<usize>) -> ReadEnd {
  let cap_limit = limit.map_or(usize::MAX, |l| l.saturating_add(1));
  let mut prefault = Prefault::default();
  loop {
    if buf.len() == buf.capacity() {
      let wanted = buf
        .len()
        .saturating_mul(2)
        .max(buf.len() + READ_CHUNK.min(64 * 1024));
      let target = wanted.min(cap_limit);
      buf.reserve_exact(target - buf.len());
    }
    prefault.ahead_of(buf);
    let write_at = buf.as_ptr() as usize + buf.len();
    let to_page_end = PAGE - write_at % PAGE;
    let room = buf.capacity() - buf.len();
    let want = if to_page_end == PAGE {
      room.min(READ_CHUNK)
    } else {
      room.min(to_page_end)
    };
    let result: io::Result<usize> = async {
      loop {
        pipe.readable().await?;
        match pipe.try_read_buf(&mut (&mut *buf).limit(want)) {
          Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
          other => return other,
        }
      }
    }
    .await;
    match result {
      Ok(0) => return ReadEnd::Eof,
      Ok(_) if buf.len() > limit.unwrap_or(usize::MAX) => return ReadEnd::Overflow,
      Ok(_) => {}
      Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
      Err(_) => return ReadEnd::Failed,
    }
  }
}

/// Populates the destination's pages a batch ahead of the reads, with one
/// `madvise(MADV_POPULATE_WRITE)` per [`Prefault::BATCH`] (4 MiB) instead of one page fault per 4 KiB
/// page inside `read(2)`. Measured on a 256 MiB collect: the faults (trap, zeroing, accounting)
/// were a fifth of the reading thread's time, half as much as the copy itself. Only up to a batch past what was read is touched,
/// so the peak memory stays the output plus a batch, not the whole doubled capacity. Kernels
/// without it (before 5.14) refuse the advice, and the reads fault the pages in as before.
#[derive(Default)]
struct Prefault {
  /// The buffer's address when last populated (a move starts over), and how far it is.
  base: usize,
  populated: usize,
}

impl Prefault {
  const BATCH: usize = 4 << 20;

  fn ahead_of(&mut self, buf: &mut Vec<u8>) {
    let base = buf.as_ptr() as usize;
    if base != self.base {
      self.base = base;
      self.populated = buf.len();
    }
    // Topped up while at least one read's worth (up to `READ_CHUNK`) is still populated.
    if self.populated >= buf.len() + READ_CHUNK {
      return;
    }
    let start = (base + self.populated.max(buf.len())).next_multiple_of(PAGE);
    let end = (base + buf.capacity()).min(start + Self::BATCH) & !(PAGE - 1);
    if end > start {
      // SAFETY: whole pages inside the Vec's allocation, past its initialised bytes; the advice
      // makes the kernel allocate them now (zero-filled, as a fault would) and changes no
      // memory the program has written.
      unsafe {
        libc::madvise(
          start as *mut libc::c_void,
          end - start,
          libc::MADV_POPULATE_WRITE,
        )
      };
    }
    self.populated = end.max(start) - base;
  }
}

/// Writes `input` to the child's stdin and closes it. A child that exits without reading
/// (EPIPE) is not an error of the call.
async fn write_input(stdin: Option<pipe::Sender>, input: Option<&[u8]>) {
  if let (Some(mut stdin), Some(input)) = (stdin, input) {
    let _ = stdin.write_all(input).await;
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::options::parse_collect;
  use crate::test_support::{block_on, PlainChild};
  use crate::vocabulary::value::Value;

  /// The plan `runProcess` would get for `sh -c script` with these options.
  fn plan(script: &str, options: &[(&str, Value)]) -> CollectPlan {
    let args = Value::Array(vec![
      Value::String("-c".into()),
      Value::String(script.into()),
    ]);
    let options = Value::Object(
      options
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect(),
    );
    parse_collect(
      &Value::String("sh".into()),
      &args,
      &options,
      [],
      &Default::default(),
    )
    .unwrap()
  }

  /// Collects `plan` run by a plain child in its own process group, not by the launcher.
  async fn collect_plain(plan: &CollectPlan, abort: Option<oneshot::Receiver<()>>) -> Outcome {
    let stdin = match plan.input {
      Some(_) => StdioMode::Pipe,
      None => StdioMode::Ignore,
    };
    let script = &plan.launch.args[1];
    let child = PlainChild::launched(script, [stdin, StdioMode::Pipe, StdioMode::Pipe]);
    collect(child, plan, abort, Instant::now()).await.unwrap()
  }

  fn ms(n: f64) -> Value {
    Value::Number(n)
  }

  #[test]
  fn output_exit_and_input_are_collected() {
    block_on(async {
      let plan = plan(
        "cat; printf err >&2; exit 3",
        &[("input", Value::String("in".into()))],
      );
      let outcome = collect_plain(&plan, None).await;
      assert_eq!(outcome.stdout, b"in");
      assert_eq!(outcome.stderr, b"err");
      assert_eq!(outcome.status, ExitStatus::Code(3));
      assert_eq!(outcome.ended_by, None);
    })
  }

  #[test]
  fn a_large_output_arrives_intact_across_prefault_batches() {
    block_on(async {
      // ~13 MiB of numbered lines: several 4 MiB batches and buffer moves, every byte checked.
      let plan = plan(
        "seq 1 1800000",
        &[("maxBuffer", Value::Number((64 << 20) as f64))],
      );
      let outcome = collect_plain(&plan, None).await;
      let expected: String = (1..=1_800_000).map(|n| format!("{n}\n")).collect();
      assert_eq!(outcome.stdout.len(), expected.len());
      assert!(outcome.stdout == expected.as_bytes(), "output differs");
    });
  }

  #[test]
  fn max_buffer_keeps_the_limit_and_kills_the_group() {
    block_on(async {
      let plan = plan("printf ok >&2; exec yes", &[("maxBuffer", ms(1000.0))]);
      let outcome = collect_plain(&plan, None).await;
      assert_eq!(
        outcome.ended_by,
        Some(Ending::MaxBuffer {
          stream: StreamName::Stdout,
          limit: 1000
        })
      );
      assert_eq!(outcome.status, ExitStatus::Signal(libc::SIGTERM));
      assert_eq!(outcome.stdout.len(), 1000);
      assert!(
        outcome.stdout.capacity() <= 1001,
        "memory stays at the limit"
      );
      assert_eq!(outcome.stderr, b"ok");
      assert_eq!(
        outcome.rejection().map(|e| e.code()),
        Some("ERR_MAX_BUFFER".into())
      );
    })
  }

  #[test]
  fn a_grandchild_holding_the_pipes_is_drained_briefly() {
    block_on(async {
      let plan = plan("sleep 30 & echo $!; echo done", &[]);
      let started = std::time::Instant::now();
      let outcome = collect_plain(&plan, None).await;
      let elapsed = started.elapsed();
      let text = String::from_utf8(outcome.stdout).unwrap();
      let grandchild: i32 = text.lines().next().unwrap().parse().unwrap();
      let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(grandchild),
        nix::sys::signal::Signal::SIGKILL,
      );
      assert!(text.ends_with("done\n"), "{text}");
      assert_eq!(outcome.status, ExitStatus::Code(0));
      assert!(elapsed >= DRAIN_AFTER_EXIT, "{elapsed:?}");
      assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    })
  }

  #[test]
  fn a_timeout_escalates_to_sigkill() {
    block_on(async {
      let plan = plan(
        "trap '' TERM; sleep 30",
        &[("timeout", ms(100.0)), ("forceKillAfter", ms(100.0))],
      );
      let outcome = collect_plain(&plan, None).await;
      assert_eq!(outcome.status, ExitStatus::Signal(libc::SIGKILL));
      assert!(outcome.timed_out());
      assert!(outcome.duration >= Duration::from_millis(200));
      assert_eq!(outcome.rejection(), None, "spawnCollect resolves a timeout");
    })
  }

  #[test]
  fn an_abort_ends_the_run() {
    block_on(async {
      let plan = plan("sleep 30", &[]);
      let (fire, abort) = oneshot::channel();
      fire.send(()).unwrap();
      let outcome = collect_plain(&plan, Some(abort)).await;
      assert_eq!(outcome.ended_by, Some(Ending::Aborted));
      assert_eq!(outcome.status, ExitStatus::Signal(libc::SIGTERM));
      assert_eq!(outcome.rejection(), Some(Error::Aborted));
    })
  }

  #[test]
  fn the_kernel_signal_of_a_set_limit_names_it() {
    block_on(async {
      let file = std::env::temp_dir().join(format!("tethered-fsize-{}", std::process::id()));
      // The plain child sets the rlimit itself; the plan says it was asked for.
      let script = format!(
        "ulimit -S -f 0; exec dd if=/dev/zero of={} bs=1k count=1",
        file.display()
      );
      let limits = Value::Object(vec![("fileSize".into(), ms(0.0))]);
      let outcome = collect_plain(&plan(&script, &[("limits", limits)]), None).await;
      let _ = std::fs::remove_file(&file);
      assert_eq!(outcome.status, ExitStatus::Signal(libc::SIGXFSZ));
      assert_eq!(outcome.limit, Some(Limit::FileSize));
      let unasked = collect_plain(&plan(&script, &[]), None).await;
      let _ = std::fs::remove_file(&file);
      assert_eq!(unasked.status, ExitStatus::Signal(libc::SIGXFSZ));
      assert_eq!(
        unasked.limit, None,
        "a limit tethered did not set is not claimed"
      );
    })
  }

  #[test]
  fn the_usage_of_the_leader_is_reported() {
    block_on(async {
      // About 64 MiB touched by the shell itself (a string doubled until it is that long).
      let plan = plan("s=x; while [ ${#s} -lt 67108864 ]; do s=$s$s; done", &[]);
      let outcome = collect_plain(&plan, None).await;
      assert_eq!(outcome.status, ExitStatus::Code(0));
      assert!(
        outcome.usage.max_rss_bytes >= 64 << 20,
        "{:?}",
        outcome.usage
      );
      assert!(outcome.usage.user_cpu + outcome.usage.system_cpu > Duration::ZERO);
    })
  }

  fn outcome(status: ExitStatus, ended_by: Option<Ending>) -> Outcome {
    Outcome {
      pid: 1,
      stdout: b"out".to_vec(),
      stderr: Vec::new(),
      status,
      ended_by,
      limit: None,
      usage: ResourceUsage::default(),
      duration: Duration::from_millis(5),
    }
  }

  #[test]
  fn a_run_process_result_is_ok_only_for_a_clean_exit() {
    let clean = ProcessResult::from_run(Ok(outcome(ExitStatus::Code(0), None)), Duration::ZERO);
    assert!(clean.ok);
    assert_eq!(clean.error, None);
    assert_eq!(clean.stdout, b"out");
    let failed = ProcessResult::from_run(Ok(outcome(ExitStatus::Code(1), None)), Duration::ZERO);
    assert!(!failed.ok);
    assert_eq!(failed.error, None, "a plain non-zero exit has no error");
    let killed = ProcessResult::from_run(Ok(outcome(ExitStatus::Signal(9), None)), Duration::ZERO);
    assert!(!killed.ok);
    assert_eq!(killed.error, None);
    let timeout = Ending::Timeout(Duration::from_millis(10));
    let timed_out = ProcessResult::from_run(
      Ok(outcome(ExitStatus::Code(0), Some(timeout))),
      Duration::ZERO,
    );
    assert!(!timed_out.ok && timed_out.timed_out);
    assert_eq!(
      timed_out.error.map(|e| e.code()),
      Some("ERR_TIMEOUT".into())
    );
  }

  #[test]
  fn a_command_that_cannot_start_reads_like_a_shell() {
    let spawn_error = |errno| {
      ProcessResult::from_run(
        Err(Error::Spawn {
          errno,
          command: "nope".into(),
          args: vec![],
        }),
        Duration::from_millis(3),
      )
    };
    let missing = spawn_error(libc::ENOENT);
    assert_eq!(missing.status, Some(ExitStatus::Code(127)));
    assert_eq!(
      String::from_utf8(missing.stderr).unwrap(),
      "Failed to spawn: spawn nope ENOENT (No such file or directory)"
    );
    assert!(!missing.ok);
    assert_eq!(
      missing.duration,
      Duration::from_millis(3),
      "measured, not 0"
    );
    assert_eq!(missing.error.map(|e| e.code()), Some("ENOENT".into()));
    for errno in [libc::EACCES, libc::ENOEXEC] {
      assert_eq!(spawn_error(errno).status, Some(ExitStatus::Code(126)));
    }
    let no_cwd = ProcessResult::from_run(
      Err(Error::SpawnCwd {
        errno: libc::ENOENT,
        command: "pwd".into(),
        args: vec![],
        cwd: "/gone".into(),
      }),
      Duration::ZERO,
    );
    assert_eq!(no_cwd.status, Some(ExitStatus::Code(125)), "not 127");
    assert_eq!(
      String::from_utf8(no_cwd.stderr).unwrap(),
      "Failed to spawn: spawn pwd ENOENT: cwd '/gone' does not exist (No such file or directory)"
    );
    assert_eq!(no_cwd.error.map(|e| e.code()), Some("ENOENT".into()));
    let aborted = ProcessResult::from_run(Err(Error::Aborted), Duration::ZERO);
    assert_eq!(aborted.status, None);
    assert_eq!(aborted.stderr, b"");
    assert_eq!(aborted.error, Some(Error::Aborted));
  }

  #[test]
  fn a_run_without_an_outcome_still_reports_how_long_it_took() {
    let died = Error::LauncherExited {
      detail: "it died while the process was running".into(),
    };
    let result = ProcessResult::from_run(Err(died.clone()), Duration::from_millis(300));
    assert_eq!(result.duration, Duration::from_millis(300));
    assert_eq!(result.status, None, "no exit to report");
    assert_eq!(result.error, Some(died));
    let started = ProcessResult::from_run(Ok(outcome(ExitStatus::Code(0), None)), Duration::ZERO);
    assert_eq!(
      started.duration,
      Duration::from_millis(5),
      "an outcome has its own"
    );
  }
}
