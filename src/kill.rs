//! Ending a process group on purpose, the same way for every caller (timeout, maxBuffer, abort):
//! `killSignal` to the whole group at once, and SIGKILL to the group when `forceKillAfter` has
//! passed and the leader is still there. What is left of a signalled group once its leader died
//! is SIGKILLed by the launcher (see `ProcessGroup::signal_group`).
//!
//! The [`Killer`] only keeps the clock; the caller's select loop owns the waiting, so it can be
//! driven alongside pipes, timers and the reaper.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::launch::ProcessGroup;
use crate::options::KillPolicy;

/// A deadline far enough away to stand for "never" in a `select!` timer.
pub fn never() -> Instant {
  Instant::now() + Duration::from_secs(86400 * 365)
}

/// The kill escalation of one process group.
#[derive(Debug)]
pub struct Killer {
  policy: KillPolicy,
  begun: bool,
  /// When SIGKILL is due; `None` before `begin` and after the SIGKILL was sent.
  force_at: Option<Instant>,
}

impl Killer {
  pub fn new(policy: KillPolicy) -> Self {
    Killer {
      policy,
      begun: false,
      force_at: None,
    }
  }

  /// Sends the kill signal to the group and starts the grace period. Only the first call does
  /// anything; it returns whether this call was that first one.
  pub fn begin(&mut self, group: &ProcessGroup) -> bool {
    if self.begun {
      return false;
    }
    self.begun = true;
    group.signal_group(self.policy.signal);
    if self.policy.signal != Signal::SIGKILL {
      self.force_at = Some(Instant::now() + self.policy.force_after);
    }
    true
  }

  pub fn begun(&self) -> bool {
    self.begun
  }

  /// When the SIGKILL is due: the deadline for the caller's timer, far away when none is.
  pub fn force_deadline(&self) -> Instant {
    self.force_at.unwrap_or_else(never)
  }

  /// Whether a SIGKILL is still to be sent (guard for the caller's timer branch).
  pub fn force_pending(&self) -> bool {
    self.force_at.is_some()
  }

  /// The grace period is over: SIGKILL the group.
  pub fn force(&mut self, group: &ProcessGroup) {
    self.force_at = None;
    group.signal_group(Signal::SIGKILL);
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::launch::{self, ExitStatus, StdioMode};
  use crate::options::{parse_stream, Value};
  use crate::test_support::block_on;
  use tokio::time::sleep_until;

  async fn start(script: &str) -> launch::Launched {
    crate::test_support::launcher_in_place();
    let args = Value::Array(vec![
      Value::String("-c".into()),
      Value::String(script.into()),
    ]);
    let plan = parse_stream(
      &Value::String("sh".into()),
      &args,
      &Value::Undefined,
      std::env::vars(),
    )
    .unwrap();
    launch::launch(&plan.launch, [StdioMode::Ignore; 3], Vec::new())
      .await
      .unwrap_or_else(|e| panic!("{e}"))
  }

  #[test]
  fn begin_signals_once_and_force_kills_after_the_grace_period() {
    block_on(async {
      let child = start("trap '' TERM; sleep 30").await;
      tokio::time::sleep(Duration::from_millis(50)).await;
      let mut killer = Killer::new(policy(Signal::SIGTERM));
      assert!(killer.begin(&child.process));
      assert!(!killer.begin(&child.process), "only the first call counts");
      assert!(killer.force_pending());
      sleep_until(killer.force_deadline()).await;
      killer.force(&child.process);
      assert!(!killer.force_pending());
      assert_eq!(
        child.process.wait().await.unwrap(),
        ExitStatus::Signal(libc::SIGKILL)
      );
    })
  }

  #[test]
  fn sigkill_needs_no_grace_period() {
    block_on(async {
      let child = start("sleep 30").await;
      let mut killer = Killer::new(policy(Signal::SIGKILL));
      assert!(killer.begin(&child.process));
      assert!(!killer.force_pending());
      assert_eq!(
        child.process.wait().await.unwrap(),
        ExitStatus::Signal(libc::SIGKILL)
      );
    })
  }

  fn policy(signal: Signal) -> KillPolicy {
    KillPolicy {
      signal,
      force_after: Duration::from_millis(50),
    }
  }

  #[test]
  fn nothing_is_pending_before_begin() {
    let killer = Killer::new(policy(Signal::SIGTERM));
    assert!(!killer.begun());
    assert!(!killer.force_pending());
    assert!(killer.force_deadline() > Instant::now() + Duration::from_secs(3600));
  }
}
