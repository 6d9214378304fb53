//! How tethered ends a process group when it decides to: the options parse it, the kill
//! escalation (`crate::kill`) carries it out.

use std::time::Duration;

use nix::sys::signal::Signal;

/// The signal sent to the whole group first, and how long the group gets before SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillPolicy {
  pub signal: Signal,
  /// From `signal` to SIGKILL of the group.
  pub force_after: Duration,
}
