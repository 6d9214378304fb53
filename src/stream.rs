//! Streaming: a started child whose pipes are read and written on demand, for output too big
//! to collect.
//!
//! Why it looks like this: backpressure has to reach the child, so nothing here reads a pipe on
//! its own. Every read is asked for by the consumer (the JS stream's `_read`), and between two of
//! them the pipe simply fills up (1 MiB, see `launch`) until the child's `write` blocks. Memory
//! therefore stays at one read per stream in flight, whatever the child writes.
//!
//! Reading is split in three so that the bytes land directly in memory the consumer owns, on the
//! consumer's thread: [`StreamChild::poll_output`] says how much the pipe holds (`FIONREAD`, or
//! EOF), [`StreamChild::read_now`] reads that into the caller's buffer without waiting, and only
//! when the pipe is empty does [`StreamChild::readable`] wait for it in the runtime. For Node this
//! means a chunk is one JS-owned Buffer filled by `read(2)` on the event-loop thread — what libuv
//! does for `child_process`, with reads of up to 1 MiB instead of 64 KiB — and a round trip
//! through the runtime only when the consumer is faster than the child. [`StreamChild::read`]
//! puts the three together for Rust callers. Writes have the same shape:
//! [`StreamChild::try_write`] takes what fits now, [`StreamChild::write`] waits for room.
//!
//! The pipes are registered with the runtime's poller only while something waits on them. A
//! registered pipe that is read or written elsewhere still wakes the poller on every write the
//! child makes (the registration is edge-triggered, and a pipe signals an edge per write):
//! hundreds of thousands of useless thread wake-ups per gigabyte. Registering an fd the poller
//! already holds fails (`EEXIST`), so each pipe takes its waiters one at a time (`Slot::turn`):
//! two reads of one stream at once, or two writes, queue instead of failing, and the bytes of
//! two writes never interleave. `lib/child.js` asks for one read and one write per stream at a
//! time anyway (Node streams call `_read` and `_write` so); correctness does not depend on it.
//!
//! Closing is a separate concern from reading: each pipe sits in a `Slot` that can be closed at
//! any time (the consumer destroyed its stream, the child exited and stdin is closed for the
//! user). A pending wait on a closed slot returns at once, and the fd is closed as soon as the
//! last user lets go of it — not when JavaScript garbage-collects the child.
//!
//! A [`StreamChild`] exists before its process does: [`StreamChild::new`], then
//! [`StreamChild::start`], which waits for the launcher's answer on the calling thread (Node code
//! reads `pid` as soon as `spawn()` returns). Until the start completes, reads find nothing,
//! waits and writes wait for the start, `kill` is queued, and a pipe closed early is closed as
//! soon as it exists. A child that cannot start reports why to every waiter.
//!
//! [`StreamChild::exited`] waits for the leader and runs everything that ends a child early
//! (timeout, abort, the kill escalation of `crate::kill::EarlyEnd`). When the leader is reaped it closes stdin
//! and lets go of the process handle.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{oneshot, watch, Mutex as AsyncMutex};

use crate::error::Error;
use crate::kill::{EarlyEnd, Spawned};
use crate::launch::{self, ProcessGroup};
use crate::options::StreamPlan;
use crate::vocabulary::confinement::{Limit, ResourceLimits};
use crate::vocabulary::exit::{Ending, ExitStatus, ResourceUsage};
use crate::vocabulary::kill_policy::KillPolicy;
use crate::vocabulary::limits::READ_CHUNK;
use crate::vocabulary::stdio::{StdioMode, StreamName};

/// What an output pipe holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
  /// This many bytes can be read without waiting.
  Data(usize),
  /// End of the stream (every writer closed it), or the stream was closed by the consumer.
  Eof,
  /// Nothing to read right now.
  Empty,
}

/// How a streaming child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
  pub status: ExitStatus,
  /// Set when tethered ended it (timeout or abort).
  pub ended_by: Option<Ending>,
  /// The limit the kernel ended it for, if it says so.
  pub limit: Option<Limit>,
  pub usage: ResourceUsage,
}

/// One end of a pipe that can be closed while someone is using it.
struct Slot {
  fd: Mutex<Option<Arc<OwnedFd>>>,
  closed: watch::Sender<bool>,
  /// Held by whoever waits on the pipe through the poller (and by a whole `write`).
  turn: AsyncMutex<()>,
}

impl Slot {
  /// A slot for a pipe that does not exist yet (the child is starting).
  fn new() -> Self {
    Slot {
      fd: Mutex::new(None),
      closed: watch::Sender::new(false),
      turn: AsyncMutex::new(()),
    }
  }

  /// Puts the pipe in place once the child started; `None` (no pipe) closes the slot. A slot
  /// closed meanwhile stays closed, and the fd is closed at once.
  fn install(&self, fd: Option<OwnedFd>) {
    let mut slot = lock(&self.fd);
    match fd {
      Some(fd) if !*self.closed.borrow() => *slot = Some(Arc::new(fd)),
      _ => {
        drop(slot);
        self.close();
      }
    }
  }

  /// The pipe and a way to learn that it was closed meanwhile; `None` once closed.
  fn get(&self) -> Option<(Arc<OwnedFd>, watch::Receiver<bool>)> {
    let fd = lock(&self.fd);
    // Subscribed under the lock `close` takes, so a close cannot slip in unseen.
    fd.as_ref().map(|fd| (fd.clone(), self.closed.subscribe()))
  }

  /// Lets go of the pipe and wakes whoever waits on it; the fd closes with the last user.
  fn close(&self) {
    let fd = lock(&self.fd).take();
    self.closed.send_replace(true);
    drop(fd);
  }
}

/// A poisoned lock only means a panic elsewhere; the data (an `Option`) is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves once the slot behind `closed` was closed.
async fn closed(closed: &mut watch::Receiver<bool>) {
  // An error means the slot itself is gone, which closes it too.
  let _ = closed.wait_for(|closed| *closed).await;
}

/// A streamed child, from the moment it is asked for: the launcher starts it asynchronously, and
/// every operation here works before that too (reads find nothing yet, writes wait, a kill is
/// sent once it started, closing a pipe closes it as soon as it exists).
pub struct StreamChild {
  /// `None` while starting; then the pid, or why it could not start.
  started: watch::Sender<Option<Result<u32, Error>>>,
  /// The leader, from its start until it was reaped.
  process: Mutex<Option<Arc<ProcessGroup>>>,
  /// Signals asked for while the child was starting, sent once it started.
  early_signals: Mutex<Vec<Signal>>,
  stdin: Slot,
  stdout: Slot,
  stderr: Slot,
  kill: KillPolicy,
  timeout: Option<Duration>,
  limits: ResourceLimits,
  waited: AtomicBool,
}

impl StreamChild {
  /// A child that is not started yet: call [`start`](Self::start) once.
  pub fn new(plan: &StreamPlan) -> Self {
    StreamChild {
      started: watch::Sender::new(None),
      process: Mutex::new(None),
      early_signals: Mutex::new(Vec::new()),
      stdin: Slot::new(),
      stdout: Slot::new(),
      stderr: Slot::new(),
      kill: plan.kill,
      timeout: plan.timeout,
      limits: plan.launch.confinement.limits,
      waited: AtomicBool::new(false),
    }
  }

  /// A child that will never start, for `error` (e.g. an AbortSignal that had already fired).
  pub fn failed(plan: &StreamPlan, error: Error) -> Self {
    let child = StreamChild::new(plan);
    child.fail(error);
    child
  }

  fn fail(&self, error: Error) {
    for slot in [&self.stdin, &self.stdout, &self.stderr] {
      slot.close();
    }
    self.started.send_replace(Some(Err(error)));
  }

  /// Starts the plan's command through the launcher, waiting on this thread for its answer
  /// (one round trip). Must be called inside the tokio runtime's context.
  pub fn start(&self, plan: &StreamPlan) {
    let child = match launch::launch_now(&plan.launch, plan.stdio) {
      Ok(child) => child,
      Err(error) => return self.fail(error),
    };
    debug_assert_eq!(child.stdin.is_some(), plan.stdio[0] == StdioMode::Pipe);
    // The pipes leave the runtime's poller (see `wait_for`), staying non-blocking.
    let stdin = child.stdin.map(|p| p.into_nonblocking_fd()).transpose();
    let stdout = child.stdout.map(|p| p.into_nonblocking_fd()).transpose();
    let stderr = child.stderr.map(|p| p.into_nonblocking_fd()).transpose();
    let (stdin, stdout, stderr) = match (stdin, stdout, stderr) {
      (Ok(i), Ok(o), Ok(e)) => (i, o, e),
      (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
        // Not handed out, so ended here; the launcher reaps it.
        child.process.signal_group(Signal::SIGKILL);
        return self.fail(Error::spawn(
          &plan.launch,
          e.raw_os_error().unwrap_or(libc::EIO),
        ));
      }
    };
    self.stdin.install(stdin);
    self.stdout.install(stdout);
    self.stderr.install(stderr);
    let group = Arc::new(child.process);
    *lock(&self.process) = Some(group.clone());
    // Published under the lock `kill` queues with, so no early signal is left behind.
    let mut early = lock(&self.early_signals);
    for signal in early.drain(..) {
      group.signal_group(signal);
    }
    self.started.send_replace(Some(Ok(child.pid)));
  }

  /// The pid (also the process group id) once started.
  pub fn pid(&self) -> Option<u32> {
    self.started.borrow().as_ref()?.as_ref().ok().copied()
  }

  /// Why the child could not start, once that is known.
  pub fn start_error(&self) -> Option<Error> {
    self.started.borrow().as_ref()?.as_ref().err().cloned()
  }

  fn is_starting(&self) -> bool {
    self.started.borrow().is_none()
  }

  /// Resolves once the child started (its pid) or could not (why).
  pub async fn started(&self) -> Result<u32, Error> {
    let mut started = self.started.subscribe();
    let outcome = started
      .wait_for(Option::is_some)
      .await
      .map(|outcome| outcome.clone());
    match outcome {
      Ok(Some(outcome)) => outcome,
      // The sender lives in `self`, so neither can happen while we borrow it.
      _ => unreachable!("the start outcome is kept with the child"),
    }
  }

  fn output(&self, which: StreamName) -> &Slot {
    match which {
      StreamName::Stdout => &self.stdout,
      StreamName::Stderr => &self.stderr,
    }
  }

  /// What an output pipe holds right now, without reading it (`Empty` while the child is
  /// starting, `Eof` if it could not start). EOF closes the read end.
  pub fn poll_output(&self, which: StreamName) -> io::Result<Pending> {
    if self.is_starting() {
      return Ok(Pending::Empty);
    }
    let slot = self.output(which);
    let Some((pipe, _)) = slot.get() else {
      return Ok(Pending::Eof);
    };
    let pending = pending(pipe.as_raw_fd());
    if matches!(pending, Ok(Pending::Eof) | Err(_)) {
      drop(pipe);
      slot.close();
    }
    pending
  }

  /// One non-blocking read into `buf`, which may be uninitialised: the bytes read (the first
  /// that many of `buf` are then initialised), 0 at EOF (or when the stream was closed),
  /// `WouldBlock` when there is nothing. Meant for right after
  /// [`poll_output`](Self::poll_output) reported data, on the thread that will use the bytes:
  /// the caller owns the memory.
  pub fn read_now(&self, which: StreamName, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    if self.is_starting() {
      return Err(io::ErrorKind::WouldBlock.into());
    }
    let slot = self.output(which);
    let Some((pipe, _)) = slot.get() else {
      return Ok(0);
    };
    loop {
      // SAFETY: `buf` is memory we may write for the whole call; read(2) writes at most
      // `buf.len()` bytes into it and never reads it.
      let n = unsafe { libc::read(pipe.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
      if n >= 0 {
        return Ok(n as usize);
      }
      let e = io::Error::last_os_error();
      if e.kind() != io::ErrorKind::Interrupted {
        return Err(e);
      }
    }
  }

  /// Waits until [`poll_output`](Self::poll_output) would not say `Empty`: data, EOF, or the
  /// stream closed meanwhile.
  pub async fn readable(&self, which: StreamName) -> io::Result<()> {
    let slot = self.output(which);
    let mut closed_rx = slot.closed.subscribe();
    tokio::select! {
      biased;
      () = closed(&mut closed_rx) => return Ok(()),
      _ = self.started() => {}
    }
    let Some((pipe, mut closed_rx)) = slot.get() else {
      return Ok(());
    };
    let fd = pipe.as_raw_fd();
    tokio::select! {
      biased;
      () = closed(&mut closed_rx) => Ok(()),
      ready = async {
        let _turn = slot.turn.lock().await;
        wait_for(&pipe, Interest::READABLE, || Ok(pending(fd)? != Pending::Empty)).await
      } => ready,
    }
  }

  /// Reads at most `max` bytes (capped at [`READ_CHUNK`]) once some are there, into a buffer of
  /// the size read. `None` at EOF or when the stream was closed.
  pub async fn read(&self, which: StreamName, max: usize) -> io::Result<Option<Vec<u8>>> {
    loop {
      match self.poll_output(which)? {
        Pending::Eof => return Ok(None),
        Pending::Empty => self.readable(which).await?,
        Pending::Data(n) => {
          let mut buf = Vec::with_capacity(n.min(max.clamp(1, READ_CHUNK)));
          match self.read_now(which, buf.spare_capacity_mut()) {
            Ok(0) => return Ok(None),
            Ok(n) => {
              // SAFETY: read_now initialised the first `n` bytes of the spare capacity.
              unsafe { buf.set_len(n) };
              return Ok(Some(buf));
            }
            Err(e) if retry(&e) => {}
            Err(e) => return Err(e),
          }
        }
      }
    }
  }

  /// Writes all of `data` to stdin, waiting for the start and for room as needed. `EPIPE` when
  /// the child closed its end, stdin was closed meanwhile, or the child could not start (see
  /// [`start_error`](Self::start_error)).
  pub async fn write(&self, data: &[u8]) -> io::Result<()> {
    let mut closed_rx = self.stdin.closed.subscribe();
    tokio::select! {
      biased;
      () = closed(&mut closed_rx) => return Err(io::Error::from_raw_os_error(libc::EPIPE)),
      _ = self.started() => {}
    }
    let Some((pipe, mut closed_rx)) = self.stdin.get() else {
      return Err(io::Error::from_raw_os_error(libc::EPIPE));
    };
    let _turn = tokio::select! {
      biased;
      () = closed(&mut closed_rx) => return Err(io::Error::from_raw_os_error(libc::EPIPE)),
      turn = self.stdin.turn.lock() => turn,
    };
    let fd = pipe.as_raw_fd();
    // What fits now needs no poller.
    let mut rest = &data[self.try_write(data)?..];
    if rest.is_empty() {
      return Ok(());
    }
    // One registration for the rest of this write (see `wait_for` on why not for longer).
    // SAFETY: the AsyncFd owns a clone of the Arc, which keeps the same open fd for as long as
    // the AsyncFd lives.
    let registered = unsafe { AsyncFd::register_with_interest(pipe.clone(), Interest::WRITABLE) }
      .map_err(io::Error::from)?;
    while !rest.is_empty() {
      let mut ready = tokio::select! {
        biased;
        () = closed(&mut closed_rx) => return Err(io::Error::from_raw_os_error(libc::EPIPE)),
        ready = registered.writable() => ready?,
      };
      // A WouldBlock here makes the guard forget the readiness, and the loop waits again.
      if let Ok(written) = ready.try_io(|_| write_from(fd, rest)) {
        match written {
          Ok(n) => rest = &rest[n..],
          Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
          Err(e) => return Err(e),
        }
      }
    }
    Ok(())
  }

  /// A write that never waits: how many bytes of `data` the pipe took right now (maybe 0, and 0
  /// while the child is starting).
  pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
    if self.is_starting() && !*self.stdin.closed.borrow() {
      return Ok(0);
    }
    let Some((pipe, _)) = self.stdin.get() else {
      return Err(io::Error::from_raw_os_error(libc::EPIPE));
    };
    let mut written = 0;
    while written < data.len() {
      match write_from(pipe.as_raw_fd(), &data[written..]) {
        Ok(n) => written += n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
        Err(e) => return Err(e),
      }
    }
    Ok(written)
  }

  /// Closes stdin: the child reads EOF. A write in progress fails with `EPIPE`.
  pub fn close_stdin(&self) {
    self.stdin.close();
  }

  /// Closes tethered's read end of an output pipe: a pending read returns `None`, and the child
  /// gets `EPIPE` (or SIGPIPE) the next time it writes there. Nothing is signalled.
  pub fn close_output(&self, which: StreamName) {
    self.output(which).close();
  }

  /// Whether the leader was started and not reaped yet: what `kill(0)` asks.
  pub fn is_running(&self) -> bool {
    lock(&self.process)
      .as_ref()
      .is_some_and(|group| group.is_running())
  }

  /// Sends `signal` to the child's process group. While the child is starting the signal is
  /// queued and sent as soon as it started (true). False once the leader was reaped, or when it
  /// never started.
  pub fn kill(&self, signal: Signal) -> bool {
    let mut early = lock(&self.early_signals);
    if let Some(group) = lock(&self.process).as_ref() {
      return group.signal_group(signal);
    }
    if self.is_starting() {
      early.push(signal);
      return true;
    }
    false
  }

  /// Waits for the start, then for the leader, ending it on timeout or when `abort` fires, until
  /// it is reaped; then closes stdin. `Err` when it could not start or the launcher died. Call
  /// once: a second call returns `None` at once.
  pub async fn exited(&self, abort: Option<oneshot::Receiver<()>>) -> Option<Result<Exit, Error>> {
    if !self.claim_exit() {
      return None;
    }
    Some(self.run_to_exit(abort).await)
  }

  /// Claims the one wait for the exit; `false` when it was claimed already. Callers that run the
  /// wait on another thread claim it first, on their own, so which of two calls wins is the
  /// order of the calls, not of the threads.
  pub fn claim_exit(&self) -> bool {
    !self.waited.swap(true, Ordering::SeqCst)
  }

  /// The wait for the exit, for a caller that claimed it with [`StreamChild::claim_exit`].
  pub async fn run_to_exit(&self, abort: Option<oneshot::Receiver<()>>) -> Result<Exit, Error> {
    self.started().await?;
    let group = lock(&self.process)
      .clone()
      .expect("a started child has its process until exited() ends");
    let reaped = EarlyEnd::new(&*group, self.kill, self.timeout, abort)
      .until_reaped()
      .await;
    lock(&self.process).take();
    self.stdin.close();
    let (reaped, ended_by) = reaped?;
    Ok(Exit {
      status: reaped.status,
      ended_by,
      limit: self.limits.ended(reaped.status, ended_by),
      usage: reaped.usage,
    })
  }
}

/// Waits until `check` says `fd` is ready for `interest`. The fd is registered with the runtime's
/// poller only for the wait: a pipe that stayed registered while it is read or written on
/// another thread would wake the poller on every write the child makes (edge-triggered events
/// fire per write), hundreds of thousands of wake-ups per gigabyte for nothing. The caller holds
/// the pipe's `Slot::turn`: a second registration of the same fd would fail.
async fn wait_for(
  fd: &Arc<OwnedFd>,
  interest: Interest,
  check: impl Fn() -> io::Result<bool>,
) -> io::Result<()> {
  // SAFETY: the AsyncFd owns a clone of the Arc, which keeps the same open fd for as long as the
  // AsyncFd lives.
  let registered =
    unsafe { AsyncFd::register_with_interest(fd.clone(), interest) }.map_err(io::Error::from)?;
  loop {
    let mut guard = registered.ready(interest).await?;
    if check()? {
      return Ok(());
    }
    guard.clear_ready();
  }
}

fn retry(e: &io::Error) -> bool {
  matches!(
    e.kind(),
    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
  )
}

/// How much the pipe `fd` holds (`FIONREAD`); when nothing, whether that is EOF (`POLLHUP`).
fn pending(fd: RawFd) -> io::Result<Pending> {
  loop {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD stores an int through the pointer, which points at a live local.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut bytes) } < 0 {
      return Err(io::Error::last_os_error());
    }
    if bytes > 0 {
      return Ok(Pending::Data(bytes as usize));
    }
    let mut poll = libc::pollfd {
      fd,
      events: libc::POLLIN,
      revents: 0,
    };
    // SAFETY: one pollfd that lives across the call; a zero timeout never blocks.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready < 0 {
      let e = io::Error::last_os_error();
      if e.kind() == io::ErrorKind::Interrupted {
        continue;
      }
      return Err(e);
    }
    if poll.revents & libc::POLLIN != 0 {
      // Data arrived between the two calls: count it.
      continue;
    }
    if poll.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
      return Ok(Pending::Eof);
    }
    return Ok(Pending::Empty);
  }
}

/// One `write(2)` of `data`.
fn write_from(fd: RawFd, data: &[u8]) -> io::Result<usize> {
  // SAFETY: `data` is a live slice for the whole call and write(2) only reads it.
  let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
  if n < 0 {
    return Err(io::Error::last_os_error());
  }
  Ok(n as usize)
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::options::parse_stream;
  use crate::test_support::{block_on, launcher_in_place, living_members};
  use crate::vocabulary::value::Value;

  fn plan(command: &str, args: &[&str], options: Vec<(&str, Value)>) -> StreamPlan {
    let args = Value::Array(args.iter().map(|a| Value::String(a.to_string())).collect());
    let options = Value::Object(
      options
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    parse_stream(
      &Value::String(command.into()),
      &args,
      &options,
      std::env::vars_os(),
      &Default::default(),
    )
    .unwrap()
  }

  async fn start(plan: StreamPlan) -> StreamChild {
    launcher_in_place();
    let child = StreamChild::new(&plan);
    child.start(&plan);
    assert!(child.start_error().is_none(), "{:?}", child.start_error());
    child
  }

  async fn read_all(child: &StreamChild, which: StreamName) -> Vec<u8> {
    let mut all = Vec::new();
    while let Some(chunk) = child.read(which, READ_CHUNK).await.unwrap() {
      all.extend_from_slice(&chunk);
    }
    all
  }

  #[test]
  fn reads_stdout_and_stderr_to_eof() {
    block_on(async {
      let child = start(plan(
        "sh",
        &["-c", "printf out; printf err >&2; exit 3"],
        vec![],
      ))
      .await;
      let (out, err, exit) = tokio::join!(
        read_all(&child, StreamName::Stdout),
        read_all(&child, StreamName::Stderr),
        child.exited(None)
      );
      assert_eq!(out, b"out");
      assert_eq!(err, b"err");
      let exit = exit.unwrap().unwrap();
      assert_eq!(exit.status, ExitStatus::Code(3));
      assert_eq!(exit.ended_by, None);
      assert!(child.exited(None).await.is_none(), "exited runs once");
    })
  }

  #[test]
  fn stdin_round_trips_and_closes_with_eof() {
    block_on(async {
      let child = start(plan("cat", &[], vec![])).await;
      let data = vec![7u8; 3 * READ_CHUNK + 5];
      let write = async {
        child.write(&data).await.unwrap();
        child.close_stdin();
      };
      let (_, out) = tokio::join!(write, read_all(&child, StreamName::Stdout));
      assert_eq!(out, data);
      assert_eq!(
        child.exited(None).await.unwrap().unwrap().status,
        ExitStatus::Code(0)
      );
      assert_eq!(
        child.write(b"late").await.unwrap_err().raw_os_error(),
        Some(libc::EPIPE)
      );
    })
  }

  #[test]
  fn a_child_that_is_not_read_blocks_and_a_read_resumes_it() {
    block_on(async {
      let child = start(plan("head", &["-c", "4000000", "/dev/zero"], vec![])).await;
      let mut exited = std::pin::pin!(child.exited(None));
      // Nothing reads: the child fills the pipe and blocks in write(2); it does not exit.
      let early = tokio::time::timeout(Duration::from_millis(300), &mut exited).await;
      assert!(early.is_err(), "the child should be blocked on a full pipe");
      let (out, exit) = tokio::join!(read_all(&child, StreamName::Stdout), exited);
      assert_eq!(out.len(), 4_000_000);
      assert_eq!(exit.unwrap().unwrap().status, ExitStatus::Code(0));
    })
  }

  #[test]
  fn poll_and_read_now_see_data_empty_and_eof() {
    block_on(async {
      let child = start(plan("sh", &["-c", "printf hi; read x"], vec![])).await;
      child.readable(StreamName::Stdout).await.unwrap();
      assert_eq!(
        child.poll_output(StreamName::Stdout).unwrap(),
        Pending::Data(2)
      );
      let mut buf = [MaybeUninit::new(0u8); 16];
      assert_eq!(child.read_now(StreamName::Stdout, &mut buf).unwrap(), 2);
      assert_eq!(
        // SAFETY: read_now initialised the first two bytes (and all were initialised anyway).
        unsafe { [buf[0].assume_init(), buf[1].assume_init()] },
        *b"hi"
      );
      assert_eq!(
        child.poll_output(StreamName::Stdout).unwrap(),
        Pending::Empty
      );
      assert_eq!(
        child
          .read_now(StreamName::Stdout, &mut buf)
          .unwrap_err()
          .kind(),
        io::ErrorKind::WouldBlock
      );
      assert_eq!(child.try_write(b"\n").unwrap(), 1);
      child.exited(None).await.unwrap().unwrap();
      child.readable(StreamName::Stdout).await.unwrap();
      assert_eq!(child.poll_output(StreamName::Stdout).unwrap(), Pending::Eof);
      assert_eq!(child.read_now(StreamName::Stdout, &mut buf).unwrap(), 0);
    })
  }

  #[test]
  fn readable_does_not_spin_on_stale_readiness() {
    block_on(async {
      let child = start(plan("sh", &["-c", "printf a; sleep 0.3; printf b"], vec![])).await;
      let mut buf = [MaybeUninit::new(0u8); 4];
      child.readable(StreamName::Stdout).await.unwrap();
      assert_eq!(child.read_now(StreamName::Stdout, &mut buf).unwrap(), 1);
      // Read behind the runtime's back: it must notice the pipe is empty again and wait.
      let started = std::time::Instant::now();
      child.readable(StreamName::Stdout).await.unwrap();
      assert!(started.elapsed() >= Duration::from_millis(100));
      assert_eq!(
        child.poll_output(StreamName::Stdout).unwrap(),
        Pending::Data(1)
      );
      child.exited(None).await.unwrap().unwrap();
    })
  }

  #[test]
  fn two_waits_on_one_pipe_take_turns() {
    block_on(async {
      let child = start(plan("sh", &["-c", "sleep 0.2; printf x; read x"], vec![])).await;
      let (first, second) = tokio::join!(
        child.readable(StreamName::Stdout),
        child.readable(StreamName::Stdout)
      );
      first.unwrap();
      second.unwrap();
      assert_eq!(
        child.poll_output(StreamName::Stdout).unwrap(),
        Pending::Data(1)
      );
      child.close_stdin();
      child.exited(None).await.unwrap().unwrap();
    })
  }

  #[test]
  fn two_writes_at_once_do_not_interleave() {
    block_on(async {
      let child = start(plan("cat", &[], vec![])).await;
      let a = vec![b'a'; 3 * READ_CHUNK];
      let b = vec![b'b'; 3 * READ_CHUNK];
      let writes = async {
        let (wrote_a, wrote_b) = tokio::join!(child.write(&a), child.write(&b));
        wrote_a.unwrap();
        wrote_b.unwrap();
        child.close_stdin();
      };
      let ((), out) = tokio::join!(writes, read_all(&child, StreamName::Stdout));
      assert_eq!(out.len(), a.len() + b.len());
      let first = out[0];
      let switch = out.iter().position(|&byte| byte != first).unwrap();
      assert_eq!(switch, a.len(), "one write's bytes, then the other's");
      assert!(out[switch..].iter().all(|&byte| byte != first));
      child.exited(None).await.unwrap().unwrap();
    })
  }

  #[test]
  fn closing_an_output_ends_a_pending_read_and_the_writer_gets_sigpipe() {
    block_on(async {
      let child = start(plan("sh", &["-c", "sleep 0.2; exec yes"], vec![])).await;
      let pending = child.read(StreamName::Stdout, READ_CHUNK);
      let close = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        child.close_output(StreamName::Stdout);
      };
      let (read, ()) = tokio::join!(pending, close);
      assert_eq!(read.unwrap(), None);
      let exit = child.exited(None).await.unwrap().unwrap();
      assert_eq!(exit.status, ExitStatus::Signal(libc::SIGPIPE));
    })
  }

  #[test]
  fn timeout_kills_the_group_and_escalates() {
    block_on(async {
      let child = start(plan(
        "sh",
        &["-c", "trap '' TERM; sleep 30 & wait; sleep 30"],
        vec![
          ("timeout", Value::Number(100.0)),
          ("forceKillAfter", Value::Number(100.0)),
        ],
      ))
      .await;
      let started = std::time::Instant::now();
      let exit = child.exited(None).await.unwrap().unwrap();
      assert_eq!(exit.status, ExitStatus::Signal(libc::SIGKILL));
      assert_eq!(
        exit.ended_by,
        Some(Ending::Timeout(Duration::from_millis(100)))
      );
      assert!(started.elapsed() < Duration::from_secs(10));
      // Orphaned members may linger as zombies (this machine's init does not reap them), so count
      // the living ones.
      tokio::time::sleep(Duration::from_millis(50)).await;
      assert_eq!(living_members(child.pid().unwrap() as i32), 0);
    })
  }

  #[test]
  fn abort_kills_the_group() {
    block_on(async {
      let child = start(plan("sleep", &["30"], vec![])).await;
      let (tx, rx) = oneshot::channel();
      tx.send(()).unwrap();
      let exit = child.exited(Some(rx)).await.unwrap().unwrap();
      assert_eq!(exit.status, ExitStatus::Signal(libc::SIGTERM));
      assert_eq!(exit.ended_by, Some(Ending::Aborted));
      assert!(!child.kill(Signal::SIGTERM), "nothing left to signal");
    })
  }

  #[test]
  fn inherit_hands_over_our_fd_even_when_it_is_close_on_exec() {
    block_on(async {
      // Node marks its fds 0-2 close-on-exec; do the same to our stderr.
      // SAFETY: fcntl on fd 2, which stays open; only its close-on-exec flag changes.
      unsafe { libc::fcntl(2, libc::F_SETFD, libc::FD_CLOEXEC) };
      let child = start(plan(
        "sh",
        &["-c", "[ -e /proc/self/fd/2 ]"],
        vec![(
          "stdio",
          Value::Array(vec![
            Value::String("ignore".into()),
            Value::String("ignore".into()),
            Value::String("inherit".into()),
          ]),
        )],
      ))
      .await;
      assert_eq!(
        child.exited(None).await.unwrap().unwrap().status,
        ExitStatus::Code(0)
      );
    })
  }

  #[test]
  fn everything_works_before_the_start_completes() {
    block_on(async {
      launcher_in_place();
      // A write waits for the start; a kill is queued and sent once started.
      let cat = plan("cat", &[], vec![]);
      let child = StreamChild::new(&cat);
      assert_eq!(child.pid(), None);
      assert_eq!(
        child.poll_output(StreamName::Stdout).unwrap(),
        Pending::Empty
      );
      assert_eq!(child.try_write(b"early").unwrap(), 0);
      let write = async {
        child.write(b"early\n").await.unwrap();
        child.close_stdin();
      };
      let start = async {
        // Lets the write and the read begin waiting first.
        tokio::task::yield_now().await;
        child.start(&cat);
      };
      let (_, (), out) = tokio::join!(write, start, read_all(&child, StreamName::Stdout));
      assert_eq!(out, b"early\n");
      assert!(child.pid().is_some());
      child.exited(None).await.unwrap().unwrap();

      let sleep = plan("sleep", &["30"], vec![]);
      let child = StreamChild::new(&sleep);
      assert!(child.kill(Signal::SIGKILL), "queued while starting");
      child.start(&sleep);
      let exit = child.exited(None).await.unwrap().unwrap();
      assert_eq!(exit.status, ExitStatus::Signal(libc::SIGKILL));

      // An output closed before the start is closed as soon as it exists.
      let yes = plan("yes", &[], vec![]);
      let child = StreamChild::new(&yes);
      child.close_output(StreamName::Stdout);
      child.start(&yes);
      assert_eq!(child.poll_output(StreamName::Stdout).unwrap(), Pending::Eof);
      let exit = child.exited(None).await.unwrap().unwrap();
      assert_eq!(exit.status, ExitStatus::Signal(libc::SIGPIPE));
    })
  }

  #[test]
  fn a_command_that_cannot_start_reports_why_everywhere() {
    block_on(async {
      launcher_in_place();
      let missing = plan("tethered-no-such-command", &["x"], vec![]);
      let child = StreamChild::new(&missing);
      child.start(&missing);
      let expected = Error::Spawn {
        errno: libc::ENOENT,
        command: "tethered-no-such-command".into(),
        args: vec!["x".into()],
      };
      assert_eq!(child.start_error(), Some(expected.clone()));
      assert_eq!(child.started().await, Err(expected.clone()));
      assert_eq!(child.pid(), None);
      assert_eq!(child.poll_output(StreamName::Stdout).unwrap(), Pending::Eof);
      assert!(child.write(b"x").await.is_err());
      assert!(!child.kill(Signal::SIGTERM));
      assert_eq!(child.exited(None).await, Some(Err(expected)));
    })
  }

  #[test]
  fn a_missing_cwd_is_told_apart_from_a_missing_command() {
    block_on(async {
      launcher_in_place();
      let gone = std::env::temp_dir().join(format!("tethered-gone-{}", std::process::id()));
      // Found on PATH, so the launcher's chdir is what fails; and not found at all.
      for command in ["true", "tethered-no-such-command"] {
        let missing = plan(
          command,
          &[],
          vec![("cwd", Value::String(gone.display().to_string()))],
        );
        let child = StreamChild::new(&missing);
        child.start(&missing);
        let error = child.start_error().expect("it cannot start");
        assert_eq!(
          error,
          Error::SpawnCwd {
            errno: libc::ENOENT,
            command: command.into(),
            args: vec![],
            cwd: gone.display().to_string(),
          }
        );
        assert!(error.to_string().ends_with("does not exist"), "{error}");
      }
    })
  }

  #[test]
  fn the_child_gets_the_umask_asked_for_and_is_running_until_reaped() {
    block_on(async {
      let mut umask_plan = plan("sh", &["-c", "umask; read x"], vec![]);
      umask_plan.launch.umask = Some(0o027);
      let child = start(umask_plan).await;
      assert!(child.is_running());
      let out = child.read(StreamName::Stdout, 100).await.unwrap().unwrap();
      assert_eq!(out, b"0027\n");
      child.close_stdin();
      child.exited(None).await.unwrap().unwrap();
      assert!(!child.is_running());
    })
  }

  #[test]
  fn ignored_and_inherited_streams_have_no_pipe() {
    block_on(async {
      let child = start(plan(
        "true",
        &[],
        vec![("stdio", Value::String("ignore".into()))],
      ))
      .await;
      assert_eq!(child.read(StreamName::Stdout, 10).await.unwrap(), None);
      assert_eq!(
        child.try_write(b"x").unwrap_err().raw_os_error(),
        Some(libc::EPIPE)
      );
      child.exited(None).await.unwrap().unwrap();
    })
  }
}
