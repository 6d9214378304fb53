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

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use tokio::net::unix::pipe;

use crate::error::Error;
use crate::launcher::client::{self, LaunchedChild, SpawnFailure, SpawnRequest};
use crate::options::LaunchSpec;

/// Pipes are widened to this size: fewer wake-ups per megabyte read (1 MiB is the
/// unprivileged maximum of `/proc/sys/fs/pipe-max-size` by default).
const PIPE_SIZE: libc::c_int = 1 << 20;

/// What each of the child's standard streams is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
  Pipe,
  Ignore,
  Inherit,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
  Code(i32),
  Signal(i32),
}

/// A started child: its pid, the parent's ends of its pipes, and the handle that reaps it.
pub struct Launched {
  pub pid: u32,
  pub stdin: Option<pipe::Sender>,
  pub stdout: Option<pipe::Receiver>,
  pub stderr: Option<pipe::Receiver>,
  pub process: ProcessGroup,
}

/// The child as leader of its process group.
pub struct ProcessGroup {
  child: LaunchedChild,
}

impl ProcessGroup {
  pub fn pid(&self) -> u32 {
    self.child.pid
  }

  /// Waits until the leader was reaped. Cancel-safe. Fails only if the launcher died first.
  pub async fn wait(&self) -> Result<ExitStatus, Error> {
    self.child.wait().await
  }

  /// Sends `signal` to every process of the group, and SIGKILL to whatever of the group is
  /// left when the leader dies. False when the leader was already reaped.
  pub fn signal_group(&self, signal: Signal) -> bool {
    self.child.signal_group(signal as i32)
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
  let spawn_error = |errno: i32| Error::Spawn {
    errno,
    command: spec.command.clone(),
    args: spec.args.clone(),
  };
  let to_spawn_error = |e: io::Error| spawn_error(e.raw_os_error().unwrap_or(libc::EIO));
  let program = resolve_program(
    &spec.command,
    spec.path_var(),
    spec.cwd.as_deref().map(Path::new),
  )
  .map_err(spawn_error)?;

  let mut ours = Vec::with_capacity(3);
  let mut theirs = Vec::with_capacity(3 + extra_fds.len());
  for (fd, mode) in stdio.into_iter().enumerate() {
    let (our_end, their_end) = stdio_ends(fd, mode).map_err(to_spawn_error)?;
    ours.push(our_end);
    theirs.push(their_end);
  }
  let [stdin, stdout, stderr]: [StdioEnd; 3] = ours.try_into().ok().expect("three streams");
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
      .map(|(k, v)| format!("{k}={v}").into_bytes())
      .collect(),
    cwd: spec.cwd.as_ref().map(|c| c.as_bytes().to_vec()),
    detached: !spec.kill_on_parent_exit,
    fds: theirs,
  };
  let child = client::spawn(request)
    .await
    .map_err(|failure| match failure {
      SpawnFailure::Errno(errno) => spawn_error(errno),
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
      if fd == 0 {
        Ok((StdioEnd::ToChild(pipe::Sender::from_owned_fd(write)?), read))
      } else {
        // SAFETY: fcntl on a pipe fd we own; failure only leaves the default size.
        unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok((
          StdioEnd::FromChild(pipe::Receiver::from_owned_fd(read)?),
          write,
        ))
      }
    }
    StdioMode::Ignore => {
      let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
      Ok((StdioEnd::None, null.into()))
    }
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

/// Finds the file `command` names, the way `execvp` would in the child: a name with a slash is
/// used as it is; otherwise each `PATH` entry is tried (relative entries from `cwd`), and a file
/// found but not executable is `EACCES` only when no later entry has an executable one.
pub fn resolve_program(
  command: &str,
  path_var: Option<&str>,
  cwd: Option<&Path>,
) -> Result<PathBuf, i32> {
  if command.contains('/') {
    return Ok(PathBuf::from(command));
  }
  let mut found_unexecutable = false;
  for dir in path_var
    .unwrap_or("/usr/local/bin:/usr/bin:/bin")
    .split(':')
  {
    let dir = if dir.is_empty() { "." } else { dir };
    let mut candidate = match cwd {
      Some(cwd) if !dir.starts_with('/') => cwd.join(dir),
      _ => PathBuf::from(dir),
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
      resolve_program("./x", Some("/bin"), None),
      Ok(PathBuf::from("./x"))
    );
  }

  #[test]
  fn path_is_searched_in_order() {
    let found = resolve_program("sh", Some("/nonexistent:/bin:/usr/bin"), None).unwrap();
    assert_eq!(found, PathBuf::from("/bin/sh"));
    assert_eq!(
      resolve_program("no-such-program-xyz", Some("/bin"), None),
      Err(libc::ENOENT)
    );
  }

  #[test]
  fn an_unexecutable_match_is_eacces() {
    let dir = std::env::temp_dir().join(format!("tethered-resolve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plain"), "not a program").unwrap();
    let path = dir.to_str().unwrap();
    assert_eq!(
      resolve_program("plain", Some(path), None),
      Err(libc::EACCES)
    );
    std::fs::remove_dir_all(&dir).unwrap();
  }
}
