//! How a process ended, what it used, and why tethered ended it when it did. Every feature
//! (collect, stream, supervisor) reports ends in these terms; the launcher client produces
//! [`Reaped`], from the exit the launcher reported with the kernel's accounting of the leader.

use std::time::Duration;

use super::stdio::StreamName;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
  Code(i32),
  Signal(i32),
}

/// The kernel's accounting of a reaped leader, from `wait4`: its own use and that of the
/// descendants it waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUsage {
  /// Peak resident set size.
  pub max_rss_bytes: u64,
  pub user_cpu: Duration,
  pub system_cpu: Duration,
}

/// A leader that was reaped: how it ended and what it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
  pub status: ExitStatus,
  pub usage: ResourceUsage,
}

/// Why tethered ended the process itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
  Timeout(Duration),
  MaxBuffer { stream: StreamName, limit: usize },
  Aborted,
}
