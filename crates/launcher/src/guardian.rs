//! The guardian: the launcher's parent, and the subreaper above it.
//!
//! The launcher adopts what its children leave behind: a background job of a call that already
//! ended, a grandchild that called `setsid()`. Were the launcher SIGKILLed (by the OOM killer,
//! or by hand), those would be re-parented to init and live on, and the addon cannot kill them:
//! it never learned their pids. So the process the addon starts forks once; the child becomes
//! the launcher, and this parent stays behind, a subreaper too, doing nothing but waiting. When
//! the launcher dies, everything it had adopted is re-parented here, and the guardian kills it
//! all (sparing deliberate daemons, whose sessions the launcher tells it through a pipe) and
//! exits. Killing the guardian instead is the case the launcher already handles: its
//! parent-death signal makes it kill everything and exit. Only both dying at once lets a
//! descendant escape.
//!
//! The guardian holds neither of the addon's sockets, so the addon sees the launcher's death as
//! before (the sockets close) and reaps the guardian once it has swept.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

use crate::descendants::sweep;

/// The name the guardian shows in `ps` and `/proc/<pid>/comm` (the launcher keeps its own).
const NAME: &std::ffi::CStr = c"tethered-guard";

/// Waits for `launcher` to die, then kills whatever was re-parented here and returns.
/// `daemon_sessions` is the read end of the pipe on which the launcher writes the session id of
/// every deliberate daemon it starts, as a native-endian `i32`.
pub fn guard(launcher: Pid, daemon_sessions: OwnedFd, signals: &SignalFd) -> io::Result<()> {
  let _ = nix::sys::prctl::set_name(NAME);
  let mut sessions = DaemonSessions::new(daemon_sessions);
  loop {
    let (sessions_ready, signal_ready) = {
      let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
      if let Some(pipe) = sessions.pipe() {
        fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
      }
      match poll(&mut fds, PollTimeout::NONE) {
        Err(Errno::EINTR) => continue,
        other => other?,
      };
      let ready = |fd: Option<&PollFd>| fd.and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
      (ready(fds.get(1)), ready(fds.first()))
    };
    if sessions_ready {
      sessions.read_some();
    }
    if signal_ready && launcher_reaped(launcher, signals)? {
      // What the launcher wrote before dying is still in the pipe, ahead of its end.
      sessions.read_to_end();
      sweep(getpid(), &sessions.known);
      return Ok(());
    }
  }
}

/// Drains the signals and reaps every exited child (the launcher is the only one while it
/// lives); true once the launcher was among them. Signals other than SIGCHLD (the parent-death
/// one, terminal ones) only wake us: the launcher sees Node go through its sockets and exits,
/// and that is when we act.
fn launcher_reaped(launcher: Pid, signals: &SignalFd) -> io::Result<bool> {
  while signals.read_signal()?.is_some() {}
  let mut reaped = false;
  loop {
    match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
      Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(reaped),
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(e.into()),
      Ok(status) => reaped |= status.pid() == Some(launcher),
    }
  }
}

/// The sessions of deliberate daemons, as the launcher reports them.
struct DaemonSessions {
  pipe: Option<std::fs::File>,
  partial: Vec<u8>,
  known: HashSet<i32>,
}

impl DaemonSessions {
  fn new(pipe: OwnedFd) -> Self {
    DaemonSessions {
      pipe: Some(pipe.into()),
      partial: Vec::new(),
      known: HashSet::new(),
    }
  }

  fn pipe(&self) -> Option<&std::fs::File> {
    self.pipe.as_ref()
  }

  /// One read (the pipe is readable); closes our end at EOF.
  fn read_some(&mut self) {
    let Some(pipe) = self.pipe.as_mut() else {
      return;
    };
    let mut buf = [0u8; 4096];
    match pipe.read(&mut buf) {
      Ok(0) => self.pipe = None,
      Ok(n) => self.take(&buf[..n]),
      Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
      Err(_) => self.pipe = None,
    }
  }

  /// Everything left, once the writer is gone (so this ends at EOF).
  fn read_to_end(&mut self) {
    if let Some(mut pipe) = self.pipe.take() {
      let mut rest = Vec::new();
      let _ = pipe.read_to_end(&mut rest);
      self.take(&rest);
    }
  }

  fn take(&mut self, bytes: &[u8]) {
    self.partial.extend_from_slice(bytes);
    let whole = self.partial.len() / 4 * 4;
    for id in self.partial[..whole].chunks_exact(4) {
      self
        .known
        .insert(i32::from_ne_bytes(id.try_into().expect("4 bytes")));
    }
    self.partial.drain(..whole);
  }
}
