//! The addon's side of the launcher: starts it on first use, sends it spawn and signal
//! requests, and routes its replies to the calls waiting for them.
//!
//! An exit arrives with the kernel's accounting of the leader (the launcher reaps with `wait4`),
//! so every exit report here is a [`Reaped`]: status and resource usage together. A spawn's
//! confinement goes the other way as the setrlimit calls the launcher makes; how each limit is
//! set (soft and hard) is decided here, in [`rlimits`].
//!
//! Two sockets lead to the launcher. The main one is driven by the runtime: requests are queued
//! to a writer task, replies (spawn results, exits) are read by a reader task and routed to
//! whoever waits. The second carries spawns that the caller waits for where it stands
//! ([`spawn_now`]): the streaming `spawn()` must hand Node code a `pid` before it returns, so the
//! JavaScript thread writes the request and reads the one reply itself, a blocking round trip
//! of about the launcher's fork-and-exec, without waking a runtime thread on either side and
//! without queueing behind the exits on the main socket. One spawn at a time uses it (a lock:
//! worker threads share the addon). The child announces its pid (`Starting`) on the socket its
//! spawn came on, so the caller blocked there knows the group even if no answer follows; the
//! child's exit still arrives on the main socket.
//!
//! The launcher is started by a dedicated thread that lives as long as the process, because
//! the launcher's parent-death signal fires when the *thread* that started it exits.
//!
//! If the launcher dies, the reader still takes every reply it wrote before dying (the socket
//! keeps them ahead of the EOF), so every group whose pid it reported is known; only then is
//! the pending table cleared: every call waiting on it fails with `ERR_LAUNCHER_EXITED`, and
//! every known group is SIGKILLed — the leaders die of their parent-death signal, but the rest
//! of a group would be re-parented to init. Deliberate daemons are spared: they are the user's.
//! The writer leaves the table alone: when a write fails, or the reader saw the end, it stops
//! and hands back the requests that never reached the launcher, so they go to the next one.
//! Both tasks end, and the socket closes.
//!
//! The next spawn starts a new launcher. A launcher that dies before answering anything counts
//! as a failed start; failed starts in a row wait longer and longer before the next, and after
//! [`MAX_FAILED_STARTS`] calls fail with `ERR_LAUNCHER_START` until [`START_COOL_DOWN`] has
//! passed, so a broken launcher binary is not forked in a loop.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{send, sendmsg, ControlMessage, MsgFlags};
pub use tethered_launcher::protocol::SpawnStep;
use tethered_launcher::protocol::{self, take_frames, Reply, Request, Resource, Rlimit};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc as async_mpsc, oneshot, watch, Notify};

use crate::error::Error;
use crate::vocabulary::confinement::{Confinement, ResourceLimits};
use crate::vocabulary::exit::{ExitStatus, Reaped, ResourceUsage};

/// The launcher binary's file name; it is installed next to the `.node` file.
pub const LAUNCHER_FILE: &str = "tethered-launcher";

/// Names another launcher binary, read once (a test hook, e.g. a launcher that dies at once).
const LAUNCHER_PATH_VAR: &str = "TETHERED_LAUNCHER_PATH";

/// Launchers in a row that may die before answering before calls are refused.
const MAX_FAILED_STARTS: u32 = 5;

/// The wait before the start that follows the first failed one; it doubles with each failure.
const FIRST_START_BACKOFF: Duration = Duration::from_millis(50);

/// How long calls are refused after [`MAX_FAILED_STARTS`]; then one call may try again.
const START_COOL_DOWN: Duration = Duration::from_secs(5);

/// What the launcher needs to start one program.
pub struct SpawnRequest {
  pub program: Vec<u8>,
  pub argv: Vec<Vec<u8>>,
  pub envp: Vec<Vec<u8>>,
  pub cwd: Option<Vec<u8>>,
  /// The child's umask; `None` keeps the launcher's.
  pub umask: Option<u32>,
  pub detached: bool,
  /// Laid out as the child's fds 0, 1, 2, ... in this order.
  pub fds: Vec<OwnedFd>,
  pub confinement: Confinement,
}

/// Why a spawn did not produce a child.
pub enum SpawnFailure {
  /// A step of the start failed in the launcher with this errno.
  Errno { errno: i32, step: SpawnStep },
  /// The launcher could not be started or died.
  Launcher(Error),
}

/// A child started by the launcher, until its exit is reported.
pub struct LaunchedChild {
  pub pid: u32,
  id: u64,
  exit: watch::Receiver<Option<Reaped>>,
  connection: Arc<Connection>,
}

impl LaunchedChild {
  /// Resolves once the launcher reaped the leader.
  pub async fn wait(&self) -> Result<Reaped, Error> {
    let mut exit = self.exit.clone();
    let status = exit
      .wait_for(Option::is_some)
      .await
      .map_err(|_| launcher_exited("it died while the process was running"))?;
    Ok(status.expect("waited for Some"))
  }

  /// Whether the leader runs: started, and its exit not reported (nor the launcher gone).
  pub fn is_running(&self) -> bool {
    self.exit.borrow().is_none() && self.connection.alive.load(Ordering::Acquire)
  }

  /// Signals the child's group through the launcher, which does so only while the leader is
  /// unreaped. False when the exit was already reported or the launcher is gone.
  pub fn signal_group(&self, signo: i32) -> bool {
    if self.exit.borrow().is_some() || !self.connection.alive.load(Ordering::Acquire) {
      return false;
    }
    self
      .connection
      .send(Outgoing {
        frame: Request::Signal {
          id: self.id,
          signo,
          terminate: true,
        }
        .encode(),
        fds: Vec::new(),
        written: None,
      })
      .is_ok()
  }
}

/// Starts `request` through the launcher of this process, starting the launcher if needed.
/// A request that never reached a launcher (it had just died) is sent again to a new one.
pub async fn spawn(mut request: SpawnRequest) -> Result<LaunchedChild, SpawnFailure> {
  let mut fds = std::mem::take(&mut request.fds);
  loop {
    let connection = match connection() {
      Ok(connection) => connection,
      Err(Unavailable::NotYet(backoff)) => {
        tokio::time::sleep(backoff).await;
        continue;
      }
      Err(Unavailable::Refused(error)) => return Err(SpawnFailure::Launcher(error)),
    };
    let id = next_id();
    let (spawned_tx, spawned_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    {
      let mut pending = connection.pending.lock().unwrap();
      // Checked under the lock `close` drains the table with: a call added after the drain
      // would wait forever. A dead connection makes `connection()` start a new launcher.
      if !connection.alive.load(Ordering::Acquire) {
        continue;
      }
      pending.insert(
        id,
        Pending {
          spawned: Some(spawned_tx),
          pid: None,
          detached: request.detached,
          exit: exit_tx,
        },
      );
    }
    let frame = spawn_frame(id, &request, fds.len());
    let (done_tx, done_rx) = oneshot::channel();
    let sent = connection.send(Outgoing {
      frame,
      fds,
      written: Some(done_tx),
    });
    // The writer hands the fds back when the frame could not be written at all; a writer
    // already gone never took them.
    let unsent = match sent {
      Err(refused) => Some(refused.fds),
      Ok(()) => done_rx.await.ok().and_then(Result::err),
    };
    if let Some(unsent) = unsent {
      connection.pending.lock().unwrap().remove(&id);
      fds = unsent;
      continue;
    }
    return match spawned_rx.await {
      Ok(Ok(pid)) => Ok(LaunchedChild {
        pid: pid as u32,
        id,
        exit: exit_rx,
        connection,
      }),
      Ok(Err((errno, step))) => Err(SpawnFailure::Errno { errno, step }),
      Err(_) => Err(SpawnFailure::Launcher(launcher_exited(
        "it died before the process started",
      ))),
    };
  }
}

/// Starts `request` like [`spawn`], but waits for the launcher's answer right here, blocking
/// the calling thread for one round trip on the spawn socket. Must be called inside the tokio
/// runtime's context (a new launcher's reader task is spawned there).
///
/// The child announces its group (`Starting`) on this socket ahead of the answer. Should the
/// launcher die before answering, this call kills that group itself: the reader, which kills
/// the groups of a dead launcher, never sees what travels on the spawn socket.
pub fn spawn_now(request: SpawnRequest) -> Result<LaunchedChild, SpawnFailure> {
  loop {
    let connection = match connection() {
      Ok(connection) => connection,
      // Blocks the JavaScript thread, as the spawn itself does; only while launchers keep
      // dying at start, and at most a few hundred ms before calls are refused.
      Err(Unavailable::NotYet(backoff)) => {
        std::thread::sleep(backoff);
        continue;
      }
      Err(Unavailable::Refused(error)) => return Err(SpawnFailure::Launcher(error)),
    };
    let id = next_id();
    let (exit_tx, exit_rx) = watch::channel(None);
    {
      let mut pending = connection.pending.lock().unwrap();
      // As in `spawn`: a call added after `close` drained the table would wait forever.
      if !connection.alive.load(Ordering::Acquire) {
        continue;
      }
      pending.insert(
        id,
        Pending {
          spawned: None,
          pid: None,
          detached: request.detached,
          exit: exit_tx,
        },
      );
    }
    let frame = spawn_frame(id, &request, request.fds.len());
    let mut announced = None;
    let reply = {
      let socket = connection.spawns.lock().unwrap_or_else(|e| e.into_inner());
      match write_frame_now(&socket, &frame, &request.fds) {
        Ok(()) => read_answer_now(&socket, &connection, &mut announced),
        // Nothing reached a launcher (it had just died): send it again, to a new one.
        Err(WriteFailure { partly_sent: false }) => {
          connection.pending.lock().unwrap().remove(&id);
          connection.stop_sending();
          continue;
        }
        Err(WriteFailure { partly_sent: true }) => None,
      }
    };
    let mut pending = connection.pending.lock().unwrap();
    return match reply {
      Some(Reply::Spawned { pid, .. }) => {
        match pending.get_mut(&id) {
          Some(child) => child.pid = Some(pid),
          // The launcher died just after answering and the reader already cleared the table:
          // the group is this call's to kill. The child's wait reports the launcher's death.
          None if !request.detached => kill_group(pid),
          None => {}
        }
        drop(pending);
        Ok(LaunchedChild {
          pid: pid as u32,
          id,
          exit: exit_rx,
          connection,
        })
      }
      Some(Reply::SpawnFailed { errno, step, .. }) => {
        pending.remove(&id);
        Err(SpawnFailure::Errno { errno, step })
      }
      Some(Reply::Starting { .. } | Reply::Exited { .. }) | None => {
        pending.remove(&id);
        drop(pending);
        connection.stop_sending();
        if let (Some(pid), false) = (announced, request.detached) {
          kill_group(pid);
        }
        Err(SpawnFailure::Launcher(launcher_exited(
          "it died before the process started",
        )))
      }
    };
  }
}

/// Reads the replies to one spawn from the blocking spawn socket: the child's `Starting`
/// (its pid goes to `announced`), then the launcher's answer. `None` when the launcher is gone
/// or a reply is corrupt.
fn read_answer_now(
  socket: &StdUnixStream,
  connection: &Connection,
  announced: &mut Option<i32>,
) -> Option<Reply> {
  loop {
    let reply = read_reply_now(socket)?;
    connection.mark_answered();
    match reply {
      Reply::Starting { pid, .. } => *announced = Some(pid),
      answer => return Some(answer),
    }
  }
}

/// SIGKILLs the process group `pid` leads; one already gone is no error.
fn kill_group(pid: i32) {
  let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
}

fn next_id() -> u64 {
  static NEXT_ID: AtomicU64 = AtomicU64::new(1);
  NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn spawn_frame(id: u64, request: &SpawnRequest, fd_count: usize) -> Vec<u8> {
  Request::Spawn {
    id,
    program: request.program.clone(),
    argv: request.argv.clone(),
    envp: request.envp.clone(),
    cwd: request.cwd.clone(),
    umask: request.umask,
    detached: request.detached,
    fd_count: fd_count as u32,
    confinement: wire_confinement(&request.confinement),
  }
  .encode()
}

/// Sends what is left of `frame` after `sent` bytes; the fds travel with the first byte.
fn send_part(fd: RawFd, frame: &[u8], sent: usize, raw_fds: &[RawFd]) -> nix::Result<usize> {
  let rest = &frame[sent..];
  if sent == 0 && !raw_fds.is_empty() {
    let rights = [ControlMessage::ScmRights(raw_fds)];
    sendmsg::<()>(
      fd,
      &[IoSlice::new(rest)],
      &rights,
      MsgFlags::MSG_NOSIGNAL,
      None,
    )
  } else {
    send(fd, rest, MsgFlags::MSG_NOSIGNAL)
  }
}

/// Writes one frame to the blocking spawn socket, its fds with the first byte.
fn write_frame_now(
  socket: &StdUnixStream,
  frame: &[u8],
  fds: &[OwnedFd],
) -> Result<(), WriteFailure> {
  let raw_fds: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
  let mut sent = 0;
  while sent < frame.len() {
    match send_part(socket.as_raw_fd(), frame, sent, &raw_fds) {
      Ok(n) => sent += n,
      Err(nix::errno::Errno::EINTR) => {}
      Err(_) => {
        return Err(WriteFailure {
          partly_sent: sent > 0,
        })
      }
    }
  }
  Ok(())
}

/// Reads the one reply to a spawn from the blocking spawn socket; `None` when the launcher
/// is gone or the reply is corrupt.
fn read_reply_now(mut socket: &StdUnixStream) -> Option<Reply> {
  let mut len = [0u8; 4];
  socket.read_exact(&mut len).ok()?;
  let len = u32::from_le_bytes(len) as usize;
  if len > protocol::MAX_FRAME {
    return None;
  }
  let mut body = vec![0u8; len];
  socket.read_exact(&mut body).ok()?;
  Reply::decode(&body).ok()
}

/// The confinement as the launcher applies it.
fn wire_confinement(confinement: &Confinement) -> protocol::Confinement {
  protocol::Confinement {
    rlimits: rlimits(&confinement.limits),
    no_new_privileges: confinement.no_new_privileges,
    uid: confinement.uid,
    gid: confinement.gid,
  }
}

/// The setrlimit calls for `limits`, none for a limit not set. Each hard limit equals its soft
/// one, so the program cannot raise it again — except for CPU time: at a hard limit the kernel
/// sends SIGKILL, at the soft one SIGXCPU, so the hard limit is one second later. A program
/// that ignores SIGXCPU is killed then.
fn rlimits(limits: &ResourceLimits) -> Vec<Rlimit> {
  let ResourceLimits {
    memory,
    cpu_time,
    open_files,
    file_size,
    processes,
    core_dump,
  } = *limits;
  let same = |resource, limit: Option<u64>| {
    limit.map(|limit| Rlimit {
      resource,
      soft: limit,
      hard: limit,
    })
  };
  [
    same(Resource::Data, memory),
    cpu_time.map(|seconds| Rlimit {
      resource: Resource::Cpu,
      soft: seconds,
      hard: seconds + 1,
    }),
    same(Resource::OpenFiles, open_files),
    same(Resource::FileSize, file_size),
    same(Resource::Processes, processes),
    same(Resource::Core, core_dump),
  ]
  .into_iter()
  .flatten()
  .collect()
}

fn launcher_exited(detail: &str) -> Error {
  Error::LauncherExited {
    detail: detail.to_string(),
  }
}

fn launcher_start(detail: String) -> Error {
  Error::LauncherStart { detail }
}

struct Pending {
  /// Told the launcher's answer to a spawn made on the main socket.
  spawned: Option<oneshot::Sender<Result<i32, (i32, SpawnStep)>>>,
  /// Known once the child reported it is starting (or the launcher that it started).
  pid: Option<i32>,
  /// A deliberate daemon: left running when the launcher dies.
  detached: bool,
  exit: watch::Sender<Option<Reaped>>,
}

struct Outgoing {
  frame: Vec<u8>,
  /// Sent with the frame's first byte, then closed here.
  fds: Vec<OwnedFd>,
  /// Told whether the frame was written; gets the fds back when nothing of it was.
  written: Option<oneshot::Sender<Result<(), Vec<OwnedFd>>>>,
}

struct Connection {
  outgoing: async_mpsc::UnboundedSender<Outgoing>,
  /// The blocking spawn socket, one round trip at a time.
  spawns: Mutex<StdUnixStream>,
  pending: Mutex<HashMap<u64, Pending>>,
  /// False once nothing more may be sent: a write failed or the launcher is gone.
  alive: AtomicBool,
  /// Wakes the writer when the launcher is gone, so that it ends and the socket closes.
  gone: Notify,
  /// Set by the first reply: a launcher that never answered failed to start.
  answered: AtomicBool,
  launcher_pid: u32,
}

impl Connection {
  /// Queues `outgoing` for the writer; gives it back when the writer has ended.
  fn send(&self, outgoing: Outgoing) -> Result<(), Outgoing> {
    self.outgoing.send(outgoing).map_err(|refused| refused.0)
  }

  /// No new request goes to this launcher; the writer ends.
  fn stop_sending(&self) {
    self.alive.store(false, Ordering::Release);
    self.gone.notify_one();
  }

  /// The launcher is gone and every reply it sent was read. Every waiting call learns it:
  /// dropping the senders wakes them. The leaders died with the launcher (parent-death
  /// signal); the rest of their groups are killed here. A group id with members left is
  /// pinned by them; one whose members are all gone is free, but Linux hands a pid out again
  /// only after the pid space wrapped around. A daemon's group is the user's, and stays.
  fn close(&self) {
    self.stop_sending();
    for (_, child) in self.pending.lock().unwrap().drain() {
      if let (Some(pid), false) = (child.pid, child.detached) {
        kill_group(pid);
      }
    }
  }

  /// The launcher answered: it started, so the count of failed starts in a row is over.
  fn mark_answered(&self) {
    if !self.answered.swap(true, Ordering::AcqRel) {
      FAILED_STARTS.lock().unwrap().count = 0;
    }
  }

  fn dispatch(&self, reply: Reply) {
    self.mark_answered();
    let mut pending = self.pending.lock().unwrap();
    match reply {
      // The child's own word, before its exec: enough to kill its group should the launcher die.
      Reply::Starting { id, pid } => {
        if let Some(child) = pending.get_mut(&id) {
          child.pid = Some(pid);
        }
      }
      Reply::Spawned { id, pid } => {
        if let Some(child) = pending.get_mut(&id) {
          child.pid = Some(pid);
          if let Some(spawned) = child.spawned.take() {
            let _ = spawned.send(Ok(pid));
          }
        }
      }
      Reply::SpawnFailed { id, errno, step } => {
        if let Some(spawned) = pending.remove(&id).and_then(|p| p.spawned) {
          let _ = spawned.send(Err((errno, step)));
        }
      }
      Reply::Exited {
        id,
        code,
        signal,
        usage,
      } => {
        if let Some(child) = pending.remove(&id) {
          let status = if signal > 0 {
            ExitStatus::Signal(signal)
          } else {
            ExitStatus::Code(code)
          };
          let usage = ResourceUsage {
            max_rss_bytes: usage.max_rss_bytes,
            user_cpu: Duration::from_micros(usage.user_cpu_micros),
            system_cpu: Duration::from_micros(usage.system_cpu_micros),
          };
          let _ = child.exit.send(Some(Reaped { status, usage }));
        }
      }
    }
  }
}

static CURRENT: Mutex<Option<Arc<Connection>>> = Mutex::new(None);

/// Launchers started in a row that have not answered (all but the newest died so), and when
/// the newest was started.
struct FailedStarts {
  count: u32,
  last: Option<Instant>,
}

static FAILED_STARTS: Mutex<FailedStarts> = Mutex::new(FailedStarts {
  count: 0,
  last: None,
});

/// Why [`connection`] gave no connection.
enum Unavailable {
  /// Launchers died at once lately: try again after this backoff.
  NotYet(Duration),
  /// No launcher can be had now.
  Refused(Error),
}

/// The live connection to this process's launcher, started on first use or after it died.
/// Must be called inside the tokio runtime.
fn connection() -> Result<Arc<Connection>, Unavailable> {
  let mut current = CURRENT.lock().unwrap();
  if let Some(connection) = current.as_ref() {
    if connection.alive.load(Ordering::Acquire) {
      return Ok(connection.clone());
    }
  }
  {
    let mut failed = FAILED_STARTS.lock().unwrap();
    if let (1.., Some(last)) = (failed.count, failed.last) {
      let backoff = if failed.count >= MAX_FAILED_STARTS {
        START_COOL_DOWN
      } else {
        FIRST_START_BACKOFF * 2u32.pow(failed.count - 1)
      };
      let wait = backoff.saturating_sub(last.elapsed());
      if failed.count >= MAX_FAILED_STARTS && !wait.is_zero() {
        return Err(Unavailable::Refused(launcher_start(format!(
          "{} launchers in a row exited before answering; the next attempt is in {} ms",
          failed.count,
          wait.as_millis()
        ))));
      }
      if !wait.is_zero() {
        return Err(Unavailable::NotYet(wait));
      }
    }
    // Counted as failed until it answers.
    failed.count += 1;
    failed.last = Some(Instant::now());
  }
  let refused = |detail: String| Unavailable::Refused(launcher_start(detail));
  let pair = || StdUnixStream::pair().map_err(|e| refused(format!("socketpair failed: {e}")));
  let (ours, theirs) = pair()?;
  let (our_spawns, their_spawns) = pair()?;
  let launcher_pid =
    start_launcher(theirs.into(), their_spawns.into()).map_err(Unavailable::Refused)?;
  ours
    .set_nonblocking(true)
    .map_err(|e| refused(e.to_string()))?;
  let stream = Arc::new(UnixStream::from_std(ours).map_err(|e| refused(e.to_string()))?);
  let (outgoing, requests) = async_mpsc::unbounded_channel();
  let connection = Arc::new(Connection {
    outgoing,
    spawns: Mutex::new(our_spawns),
    pending: Mutex::new(HashMap::new()),
    alive: AtomicBool::new(true),
    gone: Notify::new(),
    answered: AtomicBool::new(false),
    launcher_pid,
  });
  tokio::spawn(write_requests(stream.clone(), requests, connection.clone()));
  tokio::spawn(read_replies(stream, connection.clone()));
  *current = Some(connection.clone());
  Ok(connection)
}

/// Writes requests until a write fails or the launcher is gone. It does not touch the pending
/// table: the launcher may have answered requests before it died, and the reader takes those
/// replies first.
async fn write_requests(
  stream: Arc<UnixStream>,
  mut requests: async_mpsc::UnboundedReceiver<Outgoing>,
  connection: Arc<Connection>,
) {
  loop {
    let next = tokio::select! {
      biased;
      () = connection.gone.notified() => None,
      next = requests.recv() => next,
    };
    let Some(Outgoing {
      frame,
      fds,
      written,
    }) = next
    else {
      break;
    };
    match write_frame(&stream, &frame, &fds).await {
      Ok(()) => {
        if let Some(written) = written {
          let _ = written.send(Ok(()));
        }
      }
      Err(failure) => {
        connection.stop_sending();
        // Nothing of this frame reached the launcher: its caller may send it again to a new one.
        if let (Some(written), false) = (written, failure.partly_sent) {
          let _ = written.send(Err(fds));
        }
        break;
      }
    }
  }
  // Nothing still queued reached the launcher either.
  requests.close();
  while let Ok(queued) = requests.try_recv() {
    if let Some(written) = queued.written {
      let _ = written.send(Err(queued.fds));
    }
  }
}

/// A frame that could not be written; `partly_sent` if the launcher may have seen some of it.
struct WriteFailure {
  partly_sent: bool,
}

async fn write_frame(
  stream: &UnixStream,
  frame: &[u8],
  fds: &[OwnedFd],
) -> Result<(), WriteFailure> {
  let raw_fds: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
  let mut sent = 0;
  let failed = |sent: usize| WriteFailure {
    partly_sent: sent > 0,
  };
  while sent < frame.len() {
    stream.writable().await.map_err(|_| failed(sent))?;
    let result = stream.try_io(Interest::WRITABLE, || {
      send_part(stream.as_raw_fd(), frame, sent, &raw_fds).map_err(io::Error::from)
    });
    match result {
      Ok(n) => sent += n,
      Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
      Err(_) => return Err(failed(sent)),
    }
  }
  Ok(())
}

async fn read_replies(stream: Arc<UnixStream>, connection: Arc<Connection>) {
  let mut inbox = Vec::new();
  let mut chunk = vec![0u8; 16 * 1024];
  loop {
    if stream.readable().await.is_err() {
      break;
    }
    match stream.try_read(&mut chunk) {
      Ok(0) => break,
      Ok(n) => {
        inbox.extend_from_slice(&chunk[..n]);
        let Ok(frames) = take_frames(&mut inbox) else {
          break;
        };
        for frame in frames {
          match Reply::decode(&frame) {
            Ok(reply) => connection.dispatch(reply),
            Err(_) => {
              connection.close();
              return;
            }
          }
        }
      }
      Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
      Err(_) => break,
    }
  }
  connection.close();
  reap_launcher(connection.launcher_pid);
}

/// Messages to the thread that owns the launcher processes.
enum ToStarter {
  /// Start a launcher on these main and spawn sockets.
  Start(OwnedFd, OwnedFd, mpsc::SyncSender<io::Result<u32>>),
  /// The launcher with this pid closed its socket: it is exiting, so waiting is short.
  Reap(u32),
}

fn starter() -> &'static Mutex<mpsc::Sender<ToStarter>> {
  static STARTER: OnceLock<Mutex<mpsc::Sender<ToStarter>>> = OnceLock::new();
  STARTER.get_or_init(|| {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
      .name("tethered-launcher-owner".into())
      .spawn(move || run_starter(rx))
      .expect("the launcher owner thread starts");
    Mutex::new(tx)
  })
}

/// The long-lived thread that starts launchers (so their parent-death signal is tied to the
/// process, not to a short-lived thread) and reaps them when they exit.
fn run_starter(requests: mpsc::Receiver<ToStarter>) {
  let mut launchers: Vec<Child> = Vec::new();
  for request in requests {
    match request {
      ToStarter::Reap(pid) => {
        if let Some(i) = launchers.iter().position(|child| child.id() == pid) {
          let _ = launchers.swap_remove(i).wait();
        }
      }
      ToStarter::Start(socket, spawns, reply) => {
        let started = launcher_path().and_then(|path| {
          // The sockets go in as fds 0 and 1, the two a plain spawn can place; the launcher
          // moves them aside. It never gets Node's stdout, which would only delay EOF for
          // whoever reads that. stderr stays, for the launcher's own fatal errors.
          Command::new(path)
            .arg(std::process::id().to_string())
            .stdin(Stdio::from(socket))
            .stdout(Stdio::from(spawns))
            .spawn()
        });
        let _ = reply.send(started.map(|child| {
          let pid = child.id();
          launchers.push(child);
          pid
        }));
      }
    }
  }
}

fn start_launcher(socket: OwnedFd, spawns: OwnedFd) -> Result<u32, Error> {
  let (reply_tx, reply_rx) = mpsc::sync_channel(1);
  let sent = starter()
    .lock()
    .unwrap()
    .send(ToStarter::Start(socket, spawns, reply_tx));
  if sent.is_err() {
    return Err(launcher_start("the launcher owner thread is gone".into()));
  }
  match reply_rx.recv() {
    Ok(Ok(pid)) => Ok(pid),
    Ok(Err(e)) => Err(launcher_start(format!(
      "cannot start {}: {e}",
      launcher_path().map_or_else(|_| LAUNCHER_FILE.into(), |p| p.display().to_string())
    ))),
    Err(_) => Err(launcher_start("the launcher owner thread is gone".into())),
  }
}

fn reap_launcher(pid: u32) {
  let _ = starter().lock().unwrap().send(ToStarter::Reap(pid));
}

/// The launcher binary: the one `TETHERED_LAUNCHER_PATH` names, or else the one next to the
/// shared library this code was loaded from.
fn launcher_path() -> io::Result<PathBuf> {
  static CHOSEN: OnceLock<Option<PathBuf>> = OnceLock::new();
  let chosen = CHOSEN.get_or_init(|| {
    std::env::var_os(LAUNCHER_PATH_VAR)
      .filter(|path| !path.is_empty())
      .map(PathBuf::from)
  });
  if let Some(path) = chosen {
    return Ok(path.clone());
  }
  // SAFETY: an all-zero Dl_info is a valid out-parameter for dladdr.
  let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
  let here = launcher_path as *const libc::c_void;
  // SAFETY: dladdr only reads the address and fills `info`.
  let found = unsafe { libc::dladdr(here, &mut info) };
  if found == 0 || info.dli_fname.is_null() {
    return Err(io::Error::new(
      io::ErrorKind::NotFound,
      "cannot locate the tethered addon file",
    ));
  }
  // SAFETY: dladdr set dli_fname to a NUL-terminated path owned by the dynamic loader.
  let library = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
  let library = PathBuf::from(std::ffi::OsStr::from_bytes(library.to_bytes()));
  Ok(library.with_file_name(LAUNCHER_FILE))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn only_limits_that_are_set_become_calls() {
    assert_eq!(rlimits(&ResourceLimits::default()), vec![]);
    let limits = ResourceLimits {
      memory: Some(256 << 20),
      cpu_time: Some(2),
      core_dump: Some(0),
      ..Default::default()
    };
    assert_eq!(
      rlimits(&limits),
      vec![
        Rlimit {
          resource: Resource::Data,
          soft: 256 << 20,
          hard: 256 << 20
        },
        Rlimit {
          resource: Resource::Cpu,
          soft: 2,
          hard: 3
        },
        Rlimit {
          resource: Resource::Core,
          soft: 0,
          hard: 0
        },
      ]
    );
  }
}
