//! Pipes and limits: run a child to completion, collecting its output under `maxBuffer`, with
//! the timeout, abort and kill escalation that end it early.
//!
//! A call settles once the leader is reaped and both pipes reached EOF — or, when a descendant
//! still holds a pipe after the leader is gone, once [`DRAIN_AFTER_EXIT`] has passed. Memory per
//! stream is bounded by the limit plus one read: the buffer never grows past `limit + 1` bytes,
//! and the one byte over is how an overflow is seen.

use std::io;
use std::time::{Duration, Instant};

use bytes::BufMut;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant as TokioInstant};

use crate::error::{Error, StreamName};
use crate::kill::{self, Killer};
use crate::launch::{self, ExitStatus, StdioMode};
use crate::options::CollectPlan;

/// How long output is still read after the leader was reaped, for descendants that keep the
/// pipes open.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);

const PAGE: usize = 4096;

/// The most read from a pipe at once (the pipe itself is widened to the same size).
const READ_CHUNK: usize = 1 << 20;

/// Why tethered ended the process itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
  Timeout(Duration),
  MaxBuffer { stream: StreamName, limit: usize },
  Aborted,
}

impl Ending {
  /// The error a caller is told when tethered ended the process for this reason.
  pub fn to_error(self) -> Error {
    match self {
      Ending::Timeout(after) => Error::Timeout { after },
      Ending::MaxBuffer { stream, limit } => Error::MaxBuffer { stream, limit },
      Ending::Aborted => Error::Aborted,
    }
  }
}

/// What a finished call saw.
#[derive(Debug)]
pub struct Outcome {
  pub pid: u32,
  pub stdout: Vec<u8>,
  pub stderr: Vec<u8>,
  pub status: ExitStatus,
  pub ended_by: Option<Ending>,
  pub duration: Duration,
}

/// Starts the plan's command and collects it. `Err` only when it could not be started or was
/// aborted before it started; everything that happens to a started process is in the `Outcome`.
pub async fn run(
  plan: CollectPlan,
  abort: Option<oneshot::Receiver<()>>,
) -> Result<Outcome, Error> {
  let started = Instant::now();
  if plan.abort_signal == Some(true) {
    return Err(Error::Aborted);
  }
  let stdin_mode = match plan.input {
    Some(_) => StdioMode::Pipe,
    None => StdioMode::Ignore,
  };
  let stdio = [stdin_mode, StdioMode::Pipe, StdioMode::Pipe];
  let child = launch::launch(&plan.launch, stdio, Vec::new()).await?;
  let pid = child.pid;
  let mut stdout = Vec::new();
  let mut stderr = Vec::new();
  let mut ended_by = None;
  let status;
  {
    let out_pipe = child.stdout.expect("stdout is piped");
    let err_pipe = child.stderr.expect("stderr is piped");
    let mut out_read = std::pin::pin!(read_limited(&out_pipe, &mut stdout, plan.max_buffer));
    let mut err_read = std::pin::pin!(read_limited(&err_pipe, &mut stderr, plan.max_buffer));
    let mut write_input = std::pin::pin!(write_input(child.stdin, plan.input));
    let mut abort = std::pin::pin!(async {
      match abort {
        Some(rx) => rx.await.is_ok(),
        None => false,
      }
    });
    let group = &child.process;
    let mut wait = std::pin::pin!(group.wait());
    let timeout_at = plan
      .timeout
      .and_then(|t| TokioInstant::now().checked_add(t))
      .unwrap_or_else(kill::never);
    let mut killer = Killer::new(plan.kill);
    let mut drain_until = kill::never();
    let (mut out_done, mut err_done, mut input_done, mut abort_done) = (false, false, false, false);
    let mut reaped = None;

    let begin_kill = |why: Ending, ended_by: &mut Option<Ending>, killer: &mut Killer| {
      if ended_by.is_none() {
        *ended_by = Some(why);
        killer.begin(group);
      }
    };

    while reaped.is_none() || !(out_done && err_done) {
      tokio::select! {
        end = &mut out_read, if !out_done => {
          out_done = true;
          if end == ReadEnd::Overflow {
            begin_kill(Ending::MaxBuffer { stream: StreamName::Stdout, limit: plan.max_buffer.unwrap_or(0) }, &mut ended_by, &mut killer);
          }
        }
        end = &mut err_read, if !err_done => {
          err_done = true;
          if end == ReadEnd::Overflow {
            begin_kill(Ending::MaxBuffer { stream: StreamName::Stderr, limit: plan.max_buffer.unwrap_or(0) }, &mut ended_by, &mut killer);
          }
        }
        () = &mut write_input, if !input_done => input_done = true,
        fired = &mut abort, if !abort_done => {
          abort_done = true;
          if fired && reaped.is_none() {
            begin_kill(Ending::Aborted, &mut ended_by, &mut killer);
          }
        }
        exit = &mut wait, if reaped.is_none() => {
          reaped = Some(exit?);
          drain_until = TokioInstant::now() + DRAIN_AFTER_EXIT;
        }
        () = sleep_until(timeout_at), if reaped.is_none() && ended_by.is_none() => {
          begin_kill(Ending::Timeout(plan.timeout.unwrap_or_default()), &mut ended_by, &mut killer);
        }
        () = sleep_until(killer.force_deadline()), if reaped.is_none() && killer.force_pending() => {
          killer.force(group);
        }
        () = sleep_until(drain_until), if reaped.is_some() => break,
      }
    }
    status = reaped.expect("loop ends only after the leader was reaped");
  }
  if let Some(limit) = plan.max_buffer {
    stdout.truncate(limit);
    stderr.truncate(limit);
  }
  Ok(Outcome {
    pid,
    stdout,
    stderr,
    status,
    ended_by,
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
async fn read_limited(pipe: &pipe::Receiver, buf: &mut Vec<u8>, limit: Option<usize>) -> ReadEnd {
  let cap_limit = limit.map_or(usize::MAX, |l| l.saturating_add(1));
  loop {
    if buf.len() == buf.capacity() {
      let wanted = buf
        .len()
        .saturating_mul(2)
        .max(buf.len() + READ_CHUNK.min(64 * 1024));
      let target = wanted.min(cap_limit);
      buf.reserve_exact(target - buf.len());
    }
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

/// Writes `input` to the child's stdin and closes it. A child that exits without reading
/// (EPIPE) is not an error of the call.
async fn write_input(stdin: Option<pipe::Sender>, input: Option<Vec<u8>>) {
  if let (Some(mut stdin), Some(input)) = (stdin, input) {
    let _ = stdin.write_all(&input).await;
  }
}
