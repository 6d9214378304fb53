//! Launching: a spawn request goes in, a child handle comes out.
//!
//! Every child is started by this process's launcher (`crate::launcher`), never by forking
//! Node: a fork of Node costs time in proportion to the memory it holds, and only a fork lets
//! a child be given a parent-death signal. Here the addon prepares what the child gets — the
//! resolved program, argv, the full environment, and the fds for 0, 1, 2 (pipe ends, /dev/null
//! or this process's own stdio) and for 3, ... (e.g. an IPC socket) — and the launcher forks,
//! puts the child in a new process group (or, for a daemon, a new session), execs it, reaps it
//! and reports its exit. The command is resolved here against the child's own `PATH`, as libuv
//! does.
//!
//! A child that cannot start is told apart by the step that failed: a directory that cannot
//! be entered is `Error::SpawnCwd` (the directory named), not the program's `ENOENT`. The
//! directory is entered before exec, so it is also checked first when the program was not
//! found here.
//!
//! [`launch`] waits for the launcher in the runtime; [`launch_now`] waits on the calling thread,
//! for the streaming `spawn()`, whose `pid` Node code reads as soon as the call returns.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use tokio::net::unix::pipe;

use crate::error::Error;
use crate::kill::Spawned;
use crate::launcher::client::{self, LaunchedChild, SpawnFailure, SpawnRequest, SpawnStep};
use crate::vocabulary::exit::Reaped;
use crate::vocabulary::launch_spec::LaunchSpec;
use crate::vocabulary::limits::PIPE_SIZE;
use crate::vocabulary::stdio::StdioMode;

/// A started child: its pid, the parent's ends of its pipes, and the handle that reaps it —
/// the launcher's [`ProcessGroup`], or in unit tests any other [`Spawned`] group.
pub struct Launched<G = ProcessGroup> {
  pub pid: u32,
  pub stdin: Option<pipe::Sender>,
  pub stdout: Option<pipe::Receiver>,
  pub stderr: Option<pipe::Receiver>,
  pub process: G,
}

/// The child as leader of its process group.
pub struct ProcessGroup {
  child: LaunchedChild,
}

impl ProcessGroup {
  pub fn pid(&self) -> u32 {
    self.child.pid
  }

  /// Whether the leader was not reaped yet.
  pub fn is_running(&self) -> bool {
    self.child.is_running()
  }
}

impl Spawned for ProcessGroup {
  /// Sends `signal` to every process of the group, and SIGKILL to whatever of the group is
  /// left when the leader dies. False when the leader was already reaped.
  fn signal_group(&self, signal: Signal) -> bool {
    self.child.signal_group(signal as i32)
  }

  /// Fails only if the launcher died first.
  fn wait(&self) -> impl Future<Output = Result<Reaped, Error>> + Send {
    self.child.wait()
  }
}

/// The parent's and the child's ends of one standard stream.
enum StdioEnd {
  ToChild(pipe::Sender),
  FromChild(pipe::Receiver),
  None,
}

/// Starts `spec` with the given stdio; `extra_fds` become the child's fds 3, 4, ... in order
/// (e.g. the end of an IPC socket). Errors are Node-shaped spawn errors, or
/// `ERR_LAUNCHER_EXITED` when the launcher is unavailable.
pub async fn launch(
  spec: &LaunchSpec,
  stdio: [StdioMode; 3],
  extra_fds: Vec<OwnedFd>,
) -> Result<Launched, Error> {
  let (request, ends) = prepare(spec, stdio, extra_fds)?;
  let child = client::spawn(request).await;
  launched(spec, ends, child)
}

/// [`launch`], waiting for the launcher's answer on this thread (one round trip, see
/// `client::spawn_now`): for a caller that must know the pid before it returns. Must be called
/// inside the tokio runtime's context.
pub fn launch_now(spec: &LaunchSpec, stdio: [StdioMode; 3]) -> Result<Launched, Error> {
  let (request, ends) = prepare(spec, stdio, Vec::new())?;
  let child = client::spawn_now(request);
  launched(spec, ends, child)
}

/// The request for the launcher and this process's ends of the child's stdio.
fn prepare(
  spec: &LaunchSpec,
  stdio: [StdioMode; 3],
  extra_fds: Vec<OwnedFd>,
) -> Result<(SpawnRequest, [StdioEnd; 3]), Error> {
  let to_spawn_error = |e: io::Error| Error::spawn(spec, e.raw_os_error().unwrap_or(libc::EIO));
  let program = resolve_program(&spec.command, spec.path_var(), spec.cwd.as_deref())
    .map_err(|errno| missing_cwd(spec).unwrap_or_else(|| Error::spawn(spec, errno)))?;

  let mut ours = Vec::with_capacity(3);
  let mut theirs = Vec::with_capacity(3 + extra_fds.len());
  for (fd, mode) in stdio.into_iter().enumerate() {
    let (our_end, their_end) = stdio_ends(fd, mode).map_err(to_spawn_error)?;
    ours.push(our_end);
    theirs.push(their_end);
  }
  let ends: [StdioEnd; 3] = ours.try_into().ok().expect("three streams");
  theirs.extend(extra_fds);

  let mut argv = Vec::with_capacity(spec.args.len() + 1);
  argv.push(spec.command.as_bytes().to_vec());
  argv.extend(spec.args.iter().map(|a| a.as_bytes().to_vec()));
  let request = SpawnRequest {
    program: program.as_os_str().as_bytes().to_vec(),
    argv,
    envp: spec
      .env
      .iter()
      .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
      .collect(),
    cwd: spec.cwd.as_ref().map(|c| c.as_os_str().as_bytes().to_vec()),
    umask: spec.umask,
    detached: !spec.kill_on_parent_exit,
    fds: theirs,
    confinement: spec.confinement,
  };
  Ok((request, ends))
}

/// When the program was not found: the error to report instead if the directory it would run
/// in cannot be entered. The child would have failed there first, as Node's does.
fn missing_cwd(spec: &LaunchSpec) -> Option<Error> {
  let errno = match std::fs::metadata(spec.cwd.as_deref()?) {
    Ok(meta) if meta.is_dir() => return None,
    Ok(_) => libc::ENOTDIR,
    Err(e) => e.raw_os_error().unwrap_or(libc::ENOENT),
  };
  Some(Error::spawn_in_cwd(spec, errno))
}

/// The launcher's answer, made into a started child or the error to report.
fn launched(
  spec: &LaunchSpec,
  [stdin, stdout, stderr]: [StdioEnd; 3],
  child: Result<LaunchedChild, SpawnFailure>,
) -> Result<Launched, Error> {
  let child = child.map_err(|failure| match failure {
    SpawnFailure::Errno {
      errno,
      step: SpawnStep::Chdir,
    } => Error::spawn_in_cwd(spec, errno),
    SpawnFailure::Errno { errno, .. } => Error::spawn(spec, errno),
    SpawnFailure::Launcher(error) => error,
  })?;
  Ok(Launched {
    pid: child.pid,
    stdin: match stdin {
      StdioEnd::ToChild(sender) => Some(sender),
      _ => None,
    },
    stdout: match stdout {
      StdioEnd::FromChild(receiver) => Some(receiver),
      _ => None,
    },
    stderr: match stderr {
      StdioEnd::FromChild(receiver) => Some(receiver),
      _ => None,
    },
    process: ProcessGroup { child },
  })
}

/// This process's end (if any) and the child's fd for standard stream `fd`.
fn stdio_ends(fd: usize, mode: StdioMode) -> io::Result<(StdioEnd, OwnedFd)> {
  match mode {
    StdioMode::Pipe => {
      let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
      widen(&read);
      if fd == 0 {
        Ok((StdioEnd::ToChild(pipe::Sender::from_owned_fd(write)?), read))
      } else {
        Ok((
          StdioEnd::FromChild(pipe::Receiver::from_owned_fd(read)?),
          write,
        ))
      }
    }
    StdioMode::Ignore => Ok((StdioEnd::None, dev_null()?)),
    StdioMode::Inherit => {
      let own = match fd {
        0 => io::stdin().as_fd().try_clone_to_owned()?,
        1 => io::stdout().as_fd().try_clone_to_owned()?,
        _ => io::stderr().as_fd().try_clone_to_owned()?,
      };
      Ok((StdioEnd::None, own))
    }
  }
}

/// A copy of `/dev/null`, opened once: an open is a path lookup on every spawn (a profile of
/// sequential spawns found it on the runtime thread's path), a copy is one `fcntl`.
fn dev_null() -> io::Result<OwnedFd> {
  static DEV_NULL: OnceLock<OwnedFd> = OnceLock::new();
  if let Some(null) = DEV_NULL.get() {
    return null.try_clone();
  }
  let null: OwnedFd = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .open("/dev/null")?
    .into();
  let copy = null.try_clone()?;
  // Another thread may have won the race; its copy and ours are the same file.
  let _ = DEV_NULL.set(null);
  Ok(copy)
}

/// Widens a pipe to [`PIPE_SIZE`] (either end will do: the size belongs to the pipe).
fn widen(pipe_end: &impl AsRawFd) {
  // SAFETY: fcntl on an open pipe fd; failure only leaves the default size.
  unsafe {
    libc::fcntl(
      pipe_end.as_raw_fd(),
      libc::F_SETPIPE_SZ,
      PIPE_SIZE as libc::c_int,
    )
  };
}

/// Finds the file `command` names, the way `execvp` would in the child: a name with a slash is
/// used as it is; otherwise each `PATH` entry is tried (relative entries from `cwd`), and a file
/// found but not executable is `EACCES` only when no later entry has an executable one.
pub fn resolve_program(
  command: &str,
  path_var: Option<&OsStr>,
  cwd: Option<&Path>,
) -> Result<PathBuf, i32> {
  if command.contains('/') {
    return Ok(PathBuf::from(command));
  }
  let mut found_unexecutable = false;
  let path_var = path_var.map_or(b"/usr/local/bin:/usr/bin:/bin".as_slice(), OsStr::as_bytes);
  for dir in path_var.split(|&b| b == b':') {
    let dir = Path::new(OsStr::from_bytes(if dir.is_empty() { b"." } else { dir }));
    let mut candidate = match cwd {
      Some(cwd) if dir.is_relative() => cwd.join(dir),
      _ => dir.to_path_buf(),
    };
    candidate.push(command);
    match std::fs::metadata(&candidate) {
      Ok(meta) if meta.is_file() => {
        if is_executable(&candidate) {
          return Ok(candidate);
        }
        found_unexecutable = true;
      }
      Ok(_) => found_unexecutable = true,
      Err(_) => {}
    }
  }
  Err(if found_unexecutable {
    libc::EACCES
  } else {
    libc::ENOENT
  })
}

fn is_executable(path: &Path) -> bool {
  let Ok(c_path) = std::ffi::CString::new(OsStr::as_bytes(path.as_os_str())) else {
    return false;
  };
  // SAFETY: access() reads a NUL-terminated path that outlives the call.
  unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_name_with_a_slash_is_not_searched() {
    assert_eq!(
      resolve_program("./x", Some("/bin".as_ref()), None),
      Ok(PathBuf::from("./x"))
    );
  }

  #[test]
  fn path_is_searched_in_order() {
    let found = resolve_program("sh", Some("/nonexistent:/bin:/usr/bin".as_ref()), None).unwrap();
    assert_eq!(found, PathBuf::from("/bin/sh"));
    assert_eq!(
      resolve_program("no-such-program-xyz", Some("/bin".as_ref()), None),
      Err(libc::ENOENT)
    );
  }

  #[test]
  fn an_unexecutable_match_is_eacces() {
    let dir = std::env::temp_dir().join(format!("tethered-resolve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plain"), "not a program").unwrap();
    assert_eq!(
      resolve_program("plain", Some(dir.as_os_str()), None),
      Err(libc::EACCES)
    );
    std::fs::remove_dir_all(&dir).unwrap();
  }
}
