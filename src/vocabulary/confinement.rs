//! What a child is held to: resource limits (rlimits), the user and group it runs as, and
//! whether exec may grant it privileges. The options produce a [`Confinement`], `launch` hands
//! it to the launcher, which applies it between fork and exec.
//!
//! Which limit ended a process is told only where the kernel says so with a signal of its own:
//! `SIGXCPU` for CPU time, `SIGXFSZ` for file size, and only when that limit was set (a
//! program can also be sent those signals by anyone). Passing `memory`, `openFiles` or
//! `processes` makes a system call fail inside the program (`ENOMEM`, `EMFILE`, `EAGAIN`); what
//! the program does then is its own affair, so no `limit` is claimed for those.

use super::exit::{Ending, ExitStatus};

/// The rlimits a child gets, each `None` when not set. Bytes, seconds and counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceLimits {
  /// `RLIMIT_DATA`: heap and private writable mappings, bytes.
  pub memory: Option<u64>,
  /// `RLIMIT_CPU`: user + system CPU time, seconds.
  pub cpu_time: Option<u64>,
  /// `RLIMIT_NOFILE`: one more than the highest fd number the program may open.
  pub open_files: Option<u64>,
  /// `RLIMIT_FSIZE`: the largest file the program may write, bytes.
  pub file_size: Option<u64>,
  /// `RLIMIT_NPROC`: processes (threads included) of the child's real user.
  pub processes: Option<u64>,
  /// `RLIMIT_CORE`: the largest core dump, bytes (0: none).
  pub core_dump: Option<u64>,
}

/// A limit the kernel ended a process for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
  CpuTime,
  FileSize,
}

impl Limit {
  /// The option's name, as results report it.
  pub fn as_str(self) -> &'static str {
    match self {
      Limit::CpuTime => "cpuTime",
      Limit::FileSize => "fileSize",
    }
  }
}

impl ResourceLimits {
  /// The limit the kernel ended the process for: its signal, for a limit that was set, on a
  /// process tethered did not end itself (`ended_by`).
  pub fn ended(&self, status: ExitStatus, ended_by: Option<Ending>) -> Option<Limit> {
    match (status, ended_by) {
      (ExitStatus::Signal(libc::SIGXCPU), None) if self.cpu_time.is_some() => Some(Limit::CpuTime),
      (ExitStatus::Signal(libc::SIGXFSZ), None) if self.file_size.is_some() => {
        Some(Limit::FileSize)
      }
      _ => None,
    }
  }
}

/// Everything a child is held to besides its environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confinement {
  pub limits: ResourceLimits,
  /// `PR_SET_NO_NEW_PRIVS`: exec never grants privileges (setuid bits, file capabilities).
  pub no_new_privileges: bool,
  pub uid: Option<u32>,
  pub gid: Option<u32>,
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  #[test]
  fn a_limit_is_named_only_by_its_own_signal_when_it_was_set() {
    let cpu = ResourceLimits {
      cpu_time: Some(1),
      ..Default::default()
    };
    let xcpu = ExitStatus::Signal(libc::SIGXCPU);
    let xfsz = ExitStatus::Signal(libc::SIGXFSZ);
    assert_eq!(cpu.ended(xcpu, None), Some(Limit::CpuTime));
    assert_eq!(cpu.ended(xfsz, None), None);
    assert_eq!(cpu.ended(ExitStatus::Signal(libc::SIGKILL), None), None);
    assert_eq!(cpu.ended(ExitStatus::Code(152), None), None);
    let timeout = Some(Ending::Timeout(Duration::from_secs(1)));
    assert_eq!(cpu.ended(xcpu, timeout), None);
    assert_eq!(ResourceLimits::default().ended(xcpu, None), None);
    let size = ResourceLimits {
      file_size: Some(0),
      ..Default::default()
    };
    assert_eq!(size.ended(xfsz, None), Some(Limit::FileSize));
    assert_eq!(Limit::FileSize.as_str(), "fileSize");
  }
}
