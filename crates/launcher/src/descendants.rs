//! Killing everything below a subreaper. Both launcher processes end this way: the launcher
//! when the addon goes, the guardian when the launcher dies. A subreaper learns of an orphaned
//! descendant only when it becomes its child, and a process becomes an orphan only when its
//! parent dies; so the sweep kills the direct children, reaps, and looks again, until no child
//! is left (or a deadline passes: a process stuck in the kernel cannot be waited for forever).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a sweep keeps hunting descendants before it gives up.
pub const SWEEP_LIMIT: Duration = Duration::from_secs(5);

/// SIGKILLs and reaps every descendant of `me` (a subreaper) except the sessions in `spared`
/// (deliberate daemons, which are the user's), until none is left or [`SWEEP_LIMIT`] passed.
pub fn sweep(me: Pid, spared: &HashSet<i32>) {
  let deadline = Instant::now() + SWEEP_LIMIT;
  loop {
    let mut left = 0;
    for pid in direct_children(me) {
      if spared.contains(&session_of(pid)) {
        continue;
      }
      left += 1;
      let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
      if status == WaitStatus::StillAlive {
        break;
      }
    }
    if left == 0 || Instant::now() > deadline {
      return;
    }
    std::thread::sleep(Duration::from_millis(5));
  }
}

/// The children of `me` (a single-threaded process), from `/proc`.
fn direct_children(me: Pid) -> Vec<i32> {
  let path = format!("/proc/{0}/task/{0}/children", me);
  std::fs::read_to_string(path)
    .unwrap_or_default()
    .split_whitespace()
    .filter_map(|p| p.parse().ok())
    .collect()
}

/// The session id of `pid`, from `/proc/<pid>/stat` (0 when it cannot be read).
fn session_of(pid: i32) -> i32 {
  let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
  // Fields after the parenthesised command: state ppid pgrp session ...
  stat
    .rsplit_once(')')
    .and_then(|(_, rest)| rest.split_whitespace().nth(3))
    .and_then(|s| s.parse().ok())
    .unwrap_or(0)
}
