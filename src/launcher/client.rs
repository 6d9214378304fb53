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
//! worker threads share the addon). The child's exit still arrives on the main socket.
//!
//! The launcher is started by a dedicated thread that lives as long as the process, because
//! the launcher's parent-death signal fires when the *thread* that started it exits. If the
//! launcher dies, every call waiting on it fails with `ERR_LAUNCHER_EXITED` (its children die
//! with it) and the next spawn starts a new one.

use std::collections::HashMap;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::socket::{send, sendmsg, ControlMessage, MsgFlags};
pub use tethered_launcher::protocol::SpawnStep;
use tethered_launcher::protocol::{self, take_frames, Reply, Request, Resource, Rlimit};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::{mpsc as async_mpsc, oneshot, watch};

use crate::error::Error;
use crate::vocabulary::confinement::{Confinement, ResourceLimits};
use crate::vocabulary::exit::{ExitStatus, Reaped, ResourceUsage};

/// The launcher binary's file name; it is installed next to the `.node` file.
pub const LAUNCHER_FILE: &str = "tethered-launcher";

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
    self.connection.send(Outgoing {
      frame: Request::Signal {
        id: self.id,
        signo,
        terminate: true,
      }
      .encode(),
      fds: Vec::new(),
      written: None,
    })
  }
}

/// Starts `request` through the launcher of this process, starting the launcher if needed.
/// A request that never reached a launcher (it had just died) is sent again to a new one.
pub async fn spawn(mut request: SpawnRequest) -> Result<LaunchedChild, SpawnFailure> {
  let mut fds = std::mem::take(&mut request.fds);
  loop {
    let connection = connection().map_err(SpawnFailure::Launcher)?;
    let id = next_id();
    let (spawned_tx, spawned_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = watch::channel(None);
    connection.pending.lock().unwrap().insert(
      id,
      Pending {
        spawned: Some(spawned_tx),
        pid: None,
        exit: exit_tx,
      },
    );
    let frame = spawn_frame(id, &request, fds.len());
    let (done_tx, done_rx) = oneshot::channel();
    connection.send(Outgoing {
      frame,
      fds,
      written: Some(done_tx),
    });
    // The writer hands the fds back when the frame could not be written at all.
    if let Ok(Err(unsent)) = done_rx.await {
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
pub fn spawn_now(request: SpawnRequest) -> Result<LaunchedChild, SpawnFailure> {
  loop {
    let connection = connection().map_err(SpawnFailure::Launcher)?;
    let id = next_id();
    let (exit_tx, exit_rx) = watch::channel(None);
    connection.pending.lock().unwrap().insert(
      id,
      Pending {
        spawned: None,
        pid: None,
        exit: exit_tx,
      },
    );
    let frame = spawn_frame(id, &request, request.fds.len());
    let reply = {
      let socket = connection.spawns.lock().unwrap_or_else(|e| e.into_inner());
      match write_frame_now(&socket, &frame, &request.fds) {
        Ok(()) => read_reply_now(&socket),
        // Nothing reached a launcher (it had just died): send it again, to a new one.
        Err(WriteFailure { partly_sent: false }) => {
          connection.pending.lock().unwrap().remove(&id);
          connection.close();
          continue;
        }
        Err(WriteFailure { partly_sent: true }) => None,
      }
    };
    let mut pending = connection.pending.lock().unwrap();
    return match reply {
      Some(Reply::Spawned { pid, .. }) => {
        if let Some(child) = pending.get_mut(&id) {
          child.pid = Some(pid);
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
      Some(Reply::Exited { .. }) | None => {
        pending.remove(&id);
        drop(pending);
        connection.close();
        Err(SpawnFailure::Launcher(launcher_exited(
          "it died before the process started",
        )))
      }
    };
  }
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

/// Writes one frame to the blocking spawn socket, its fds with the first byte.
fn write_frame_now(
  socket: &StdUnixStream,
  frame: &[u8],
  fds: &[OwnedFd],
) -> Result<(), WriteFailure> {
  let raw_fds: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
  let mut sent = 0;
  while sent < frame.len() {
    let rest = &frame[sent..];
    let fd = socket.as_raw_fd();
    let n = if sent == 0 && !raw_fds.is_empty() {
      let rights = [ControlMessage::ScmRights(&raw_fds)];
      sendmsg::<()>(
        fd,
        &[IoSlice::new(rest)],
        &rights,
        MsgFlags::MSG_NOSIGNAL,
        None,
      )
    } else {
      send(fd, rest, MsgFlags::MSG_NOSIGNAL)
    };
    match n {
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

struct Pending {
  /// Told the launcher's answer to a spawn made on the main socket.
  spawned: Option<oneshot::Sender<Result<i32, (i32, SpawnStep)>>>,
  /// Known once the launcher reported the child started.
  pid: Option<i32>,
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
  alive: AtomicBool,
  launcher_pid: u32,
}

impl Connection {
  fn send(&self, outgoing: Outgoing) -> bool {
    self.outgoing.send(outgoing).is_ok()
  }

  /// Every waiting call learns the launcher is gone: dropping the senders wakes them. The
  /// leaders died with the launcher (parent-death signal); the rest of their groups are
  /// killed here. Each group id is still pinned by those members, so it cannot be recycled.
  fn close(&self) {
    self.alive.store(false, Ordering::Release);
    for (_, child) in self.pending.lock().unwrap().drain() {
      if let Some(pid) = child.pid {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
      }
    }
  }

  fn dispatch(&self, reply: Reply) {
    let mut pending = self.pending.lock().unwrap();
    match reply {
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

/// The live connection to this process's launcher, started on first use or after it died.
/// Must be called inside the tokio runtime.
fn connection() -> Result<Arc<Connection>, Error> {
  let mut current = CURRENT.lock().unwrap();
  if let Some(connection) = current.as_ref() {
    if connection.alive.load(Ordering::Acquire) {
      return Ok(connection.clone());
    }
  }
  let pair =
    || StdUnixStream::pair().map_err(|e| launcher_exited(&format!("socketpair failed: {e}")));
  let (ours, theirs) = pair()?;
  let (our_spawns, their_spawns) = pair()?;
  let launcher_pid = start_launcher(theirs.into(), their_spawns.into())?;
  ours
    .set_nonblocking(true)
    .map_err(|e| launcher_exited(&e.to_string()))?;
  let stream = Arc::new(UnixStream::from_std(ours).map_err(|e| launcher_exited(&e.to_string()))?);
  let (outgoing, requests) = async_mpsc::unbounded_channel();
  let connection = Arc::new(Connection {
    outgoing,
    spawns: Mutex::new(our_spawns),
    pending: Mutex::new(HashMap::new()),
    alive: AtomicBool::new(true),
    launcher_pid,
  });
  tokio::spawn(write_requests(stream.clone(), requests, connection.clone()));
  tokio::spawn(read_replies(stream, connection.clone()));
  *current = Some(connection.clone());
  Ok(connection)
}

async fn write_requests(
  stream: Arc<UnixStream>,
  mut requests: async_mpsc::UnboundedReceiver<Outgoing>,
  connection: Arc<Connection>,
) {
  while let Some(Outgoing {
    frame,
    fds,
    written,
  }) = requests.recv().await
  {
    match write_frame(&stream, &frame, &fds).await {
      Ok(()) => {
        if let Some(written) = written {
          let _ = written.send(Ok(()));
        }
      }
      Err(failure) => {
        connection.close();
        // Nothing of this frame, nor of those queued behind it, reached the launcher: their
        // callers may send them again to a new one.
        if let (Some(written), false) = (written, failure.partly_sent) {
          let _ = written.send(Err(fds));
        }
        requests.close();
        while let Some(queued) = requests.recv().await {
          if let Some(written) = queued.written {
            let _ = written.send(Err(queued.fds));
          }
        }
        return;
      }
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
      let fd = stream.as_raw_fd();
      let rest = &frame[sent..];
      let n = if sent == 0 && !raw_fds.is_empty() {
        let rights = [ControlMessage::ScmRights(&raw_fds)];
        sendmsg::<()>(
          fd,
          &[IoSlice::new(rest)],
          &rights,
          MsgFlags::MSG_NOSIGNAL,
          None,
        )
      } else {
        send(fd, rest, MsgFlags::MSG_NOSIGNAL)
      };
      n.map_err(io::Error::from)
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
    return Err(launcher_exited("the launcher owner thread is gone"));
  }
  match reply_rx.recv() {
    Ok(Ok(pid)) => Ok(pid),
    Ok(Err(e)) => Err(launcher_exited(&format!(
      "cannot start {}: {e}",
      launcher_path().map_or_else(|_| LAUNCHER_FILE.into(), |p| p.display().to_string())
    ))),
    Err(_) => Err(launcher_exited("the launcher owner thread is gone")),
  }
}

fn reap_launcher(pid: u32) {
  let _ = starter().lock().unwrap().send(ToStarter::Reap(pid));
}

/// The launcher binary next to the shared library this code was loaded from.
fn launcher_path() -> io::Result<PathBuf> {
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
