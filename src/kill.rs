//! Ending a process group on purpose, the same way for every caller: whatever the reason
//! (timeout, abort, maxBuffer), `killSignal` goes to the whole group at once, and SIGKILL to the
//! group when `forceKillAfter` has passed and the leader is still there. What is left of a
//! signalled group once its leader died is SIGKILLed by the launcher (see
//! `ProcessGroup::signal_group`).
//!
//! The rule is written once, in [`EarlyEnd`], and `collect` and `stream` both drive it. It does
//! not own the waiting for the leader: `collect` waits for the leader alongside its pipes, so
//! [`EarlyEnd::act`] is one cancel-safe step for the caller's `select!` loop, and
//! [`EarlyEnd::until_reaped`] is that loop for a caller with nothing else to wait for.
//!
//! It works on any [`Spawned`] group, not only one the launcher started, so that the rule is
//! tested against plain child processes.

use std::future::{self, Future};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;
use tokio::time::{sleep_until, Instant};

use crate::error::Error;
use crate::vocabulary::exit::{Ending, Reaped};
use crate::vocabulary::kill_policy::KillPolicy;

/// A started process group, as the code that ends it and waits for it needs it.
pub trait Spawned {
  /// Sends `signal` to every process of the group. False when the leader was already reaped
  /// (its group id may belong to someone else by now).
  fn signal_group(&self, signal: Signal) -> bool;

  /// Waits until the leader was reaped. Cancel-safe; may be called again after a cancel.
  fn wait(&self) -> impl Future<Output = Result<Reaped, Error>> + Send;
}

/// A deadline far enough away to stand for "never" in a `select!` timer.
pub fn never() -> Instant {
  Instant::now() + Duration::from_secs(86400 * 365)
}

/// Resolves when the AbortSignal behind `abort` fired (true) or can no longer fire (false);
/// never when there is none.
async fn aborted(abort: &mut Option<oneshot::Receiver<()>>) -> bool {
  match abort {
    Some(fired) => fired.await.is_ok(),
    None => future::pending().await,
  }
}

/// Everything that ends one running group early, and the escalation that follows: the first
/// reason wins, later ones change nothing.
pub struct EarlyEnd<'g, G> {
  group: &'g G,
  policy: KillPolicy,
  timeout: Option<Duration>,
  timeout_at: Instant,
  /// Fires when the caller's AbortSignal does; `None` when there is none, or once it fired.
  abort: Option<oneshot::Receiver<()>>,
  ended_by: Option<Ending>,
  /// When SIGKILL is due; `None` before the end began and after the SIGKILL was sent.
  force_at: Option<Instant>,
}

impl<'g, G: Spawned> EarlyEnd<'g, G> {
  /// Starts the clock of `timeout` (none: no timeout) now.
  pub fn new(
    group: &'g G,
    policy: KillPolicy,
    timeout: Option<Duration>,
    abort: Option<oneshot::Receiver<()>>,
  ) -> Self {
    EarlyEnd {
      group,
      policy,
      timeout,
      timeout_at: timeout
        .and_then(|t| Instant::now().checked_add(t))
        .unwrap_or_else(never),
      abort,
      ended_by: None,
      force_at: None,
    }
  }

  /// Ends the group for `why`: the kill signal to the group, and the grace period starts. Only
  /// the first reason counts.
  pub fn end(&mut self, why: Ending) {
    if self.ended_by.is_some() {
      return;
    }
    self.ended_by = Some(why);
    self.group.signal_group(self.policy.signal);
    if self.policy.signal != Signal::SIGKILL {
      self.force_at = Some(Instant::now() + self.policy.force_after);
    }
  }

  /// Why tethered ended the group, if it did.
  pub fn ended_by(&self) -> Option<Ending> {
    self.ended_by
  }

  /// Waits for the next of: the timeout, the abort, the SIGKILL deadline, and acts on it. Meant
  /// for a `select!` loop that also waits for the leader; cancel-safe. Stop calling it once the
  /// leader was reaped: a timeout or an abort after that ends nothing.
  pub async fn act(&mut self) {
    tokio::select! {
      fired = aborted(&mut self.abort) => {
        self.abort = None;
        if fired {
          self.end(Ending::Aborted);
        }
      }
      () = sleep_until(self.timeout_at), if self.ended_by.is_none() => {
        self.end(Ending::Timeout(self.timeout.unwrap_or_default()));
      }
      () = sleep_until(self.force_at.unwrap_or_else(never)), if self.force_at.is_some() => {
        self.force_at = None;
        self.group.signal_group(Signal::SIGKILL);
      }
    }
  }

  /// Waits for the leader, ending the group early when it is due: how it ended, and why
  /// tethered ended it if it did.
  pub async fn until_reaped(mut self) -> Result<(Reaped, Option<Ending>), Error> {
    let group = self.group;
    let mut wait = std::pin::pin!(group.wait());
    loop {
      tokio::select! {
        exit = &mut wait => return Ok((exit?, self.ended_by)),
        () = self.act() => {}
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::test_support::{block_on, PlainChild};
  use crate::vocabulary::exit::ExitStatus;
  use crate::vocabulary::stdio::StreamName;

  fn policy(signal: Signal) -> KillPolicy {
    KillPolicy {
      signal,
      force_after: Duration::from_millis(100),
    }
  }

  #[test]
  fn a_timeout_signals_the_group_then_force_kills_it() {
    block_on(async {
      let child = PlainChild::start("trap '' TERM; sleep 30 & sleep 30; wait");
      tokio::time::sleep(Duration::from_millis(50)).await;
      let started = std::time::Instant::now();
      let early = EarlyEnd::new(
        &child,
        policy(Signal::SIGTERM),
        Some(Duration::from_millis(50)),
        None,
      );
      let (reaped, ended_by) = early.until_reaped().await.unwrap();
      assert_eq!(reaped.status, ExitStatus::Signal(libc::SIGKILL));
      assert_eq!(ended_by, Some(Ending::Timeout(Duration::from_millis(50))));
      assert!(started.elapsed() >= Duration::from_millis(150));
      assert_eq!(child.living_members(), 0, "SIGKILL reached the whole group");
    })
  }

  #[test]
  fn sigkill_needs_no_grace_period() {
    block_on(async {
      let child = PlainChild::start("sleep 30");
      let mut early = EarlyEnd::new(&child, policy(Signal::SIGKILL), None, None);
      early.end(Ending::Aborted);
      assert_eq!(early.force_at, None);
      let (reaped, ended_by) = early.until_reaped().await.unwrap();
      assert_eq!(reaped.status, ExitStatus::Signal(libc::SIGKILL));
      assert_eq!(ended_by, Some(Ending::Aborted));
    })
  }

  #[test]
  fn the_first_reason_wins() {
    block_on(async {
      let child = PlainChild::start("sleep 30");
      let (fire, abort) = oneshot::channel();
      let mut early = EarlyEnd::new(&child, policy(Signal::SIGTERM), None, Some(abort));
      let overflow = Ending::MaxBuffer {
        stream: StreamName::Stdout,
        limit: 1,
      };
      early.end(overflow);
      fire.send(()).unwrap();
      let (reaped, ended_by) = early.until_reaped().await.unwrap();
      assert_eq!(reaped.status, ExitStatus::Signal(libc::SIGTERM));
      assert_eq!(ended_by, Some(overflow));
    })
  }

  #[test]
  fn a_process_that_exits_by_itself_was_not_ended() {
    block_on(async {
      let child = PlainChild::start("exit 4");
      let (_keep, abort) = oneshot::channel::<()>();
      let early = EarlyEnd::new(
        &child,
        policy(Signal::SIGTERM),
        Some(Duration::from_secs(10)),
        Some(abort),
      );
      let (reaped, ended_by) = early.until_reaped().await.unwrap();
      assert_eq!((reaped.status, ended_by), (ExitStatus::Code(4), None));
    })
  }

  #[test]
  fn a_dropped_abort_signal_ends_nothing() {
    block_on(async {
      let child = PlainChild::start("sleep 0.2");
      let (fire, abort) = oneshot::channel::<()>();
      drop(fire);
      let early = EarlyEnd::new(&child, policy(Signal::SIGTERM), None, Some(abort));
      let (reaped, ended_by) = early.until_reaped().await.unwrap();
      assert_eq!((reaped.status, ended_by), (ExitStatus::Code(0), None));
    })
  }
}
