//! Launching: a spawn request goes in, a child handle comes out.
//!
//! Why it looks like this: Node's own `child_process` forks the whole Node process, whose cost
//! grows with the memory it holds (Buffers are copied page-table by page-table). Rust's
//! `Command` uses `posix_spawn` (a `CLONE_VM | CLONE_VFORK` clone) as long as it needs no
//! `pre_exec` hook and the program is given as a path, so the command is resolved here against
//! the child's own `PATH` first, as libuv does. The child leads a new process group, so a kill
//! reaches everything it started. Exit is observed through a pidfd, not SIGCHLD: libuv owns
//! the SIGCHLD handler of a Node process and does not chain to others.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use crate::error::Error;
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
  pid: Pid,
  pidfd: AsyncFd<OwnedFd>,
}

impl ProcessGroup {
  pub fn pid(&self) -> u32 {
    self.pid.as_raw() as u32
  }

  /// Waits for the leader to exit and reaps it. Cancel-safe: dropping the future reaps nothing.
  pub async fn wait(&self) -> io::Result<ExitStatus> {
    loop {
      let mut ready = self.pidfd.readable().await?;
      match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => return Ok(ExitStatus::Code(code)),
        Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(ExitStatus::Signal(signal as i32)),
        Ok(_) => ready.clear_ready(),
        Err(nix::errno::Errno::EINTR) => {}
        Err(errno) => return Err(errno.into()),
      }
    }
  }

  /// Sends `signal` to every process of the group. False when nothing was left to signal.
  pub fn signal_group(&self, signal: Signal) -> bool {
    signal_group(self.pid.as_raw(), signal)
  }
}

/// `killpg`, ignoring a group that is already gone.
pub fn signal_group(pgid: i32, signal: Signal) -> bool {
  killpg(Pid::from_raw(pgid), signal).is_ok()
}

/// Whether any process of the group is still there (dead-but-unreaped members count).
pub fn group_exists(pgid: i32) -> bool {
  killpg(Pid::from_raw(pgid), None).is_ok()
}

/// Starts `spec` with the given stdio. Errors are Node-shaped spawn errors.
pub fn launch(spec: &LaunchSpec, stdio: [StdioMode; 3]) -> Result<Launched, Error> {
  let spawn_error = |errno: i32| Error::Spawn {
    errno,
    command: spec.command.clone(),
    args: spec.args.clone(),
  };
  let program = resolve_program(
    &spec.command,
    spec.path_var(),
    spec.cwd.as_deref().map(Path::new),
  )
  .map_err(spawn_error)?;
  let mut command = Command::new(program);
  command
    .arg0(&spec.command)
    .args(&spec.args)
    .env_clear()
    .envs(spec.env.iter().map(|(k, v)| (k, v)))
    .process_group(0);
  if let Some(cwd) = &spec.cwd {
    command.current_dir(cwd);
  }
  let [stdin, stdout, stderr] = [0, 1, 2].map(|fd| match stdio[fd as usize] {
    StdioMode::Pipe => Stdio::piped(),
    StdioMode::Ignore => Stdio::null(),
    StdioMode::Inherit => inherit(fd),
  });
  command.stdin(stdin).stdout(stdout).stderr(stderr);

  let mut child = command
    .spawn()
    .map_err(|e| spawn_error(e.raw_os_error().unwrap_or(libc::EIO)))?;
  let pid = Pid::from_raw(child.id() as i32);
  let pidfd = open_pidfd(pid)
    .and_then(|fd| {
      // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the fd stays open and the same
      // for its whole life.
      unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
    })
    .map_err(|e| spawn_error(e.raw_os_error().unwrap_or(libc::EIO)))?;
  let stdin = child.stdin.take().map(OwnedFd::from);
  let stdout = child.stdout.take().map(OwnedFd::from);
  let stderr = child.stderr.take().map(OwnedFd::from);
  let to_io = |e: io::Error| spawn_error(e.raw_os_error().unwrap_or(libc::EIO));
  Ok(Launched {
    pid: pid.as_raw() as u32,
    stdin: stdin
      .map(pipe::Sender::from_owned_fd)
      .transpose()
      .map_err(to_io)?,
    stdout: stdout.map(read_end).transpose().map_err(to_io)?,
    stderr: stderr.map(read_end).transpose().map_err(to_io)?,
    process: ProcessGroup { pid, pidfd },
  })
}

/// The parent's own fd 0, 1 or 2 for the child. Node marks its stdio close-on-exec, so plain
/// inheritance would leave the child without them: a duplicate is handed over instead, which
/// the spawn places at the same number with close-on-exec cleared (as libuv does).
fn inherit(fd: RawFd) -> Stdio {
  // SAFETY: the fd is only borrowed for the duplication, during which it stays open (0-2 are
  // never closed by this crate); a closed fd makes the duplication fail, nothing worse.
  let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
  match borrowed.try_clone_to_owned() {
    Ok(owned) => Stdio::from(owned),
    Err(_) => Stdio::inherit(),
  }
}

fn read_end(fd: OwnedFd) -> io::Result<pipe::Receiver> {
  // SAFETY: fcntl on a pipe fd we own; failure only leaves the default size.
  unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
  pipe::Receiver::from_owned_fd(fd)
}

fn open_pidfd(pid: Pid) -> io::Result<OwnedFd> {
  // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
  let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
  if fd < 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: the kernel just returned this fd to us and nothing else owns it.
  Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
