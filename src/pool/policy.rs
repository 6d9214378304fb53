//! The numbers a Pool runs by, already validated: every limit and delay of DESIGN §6 as a
//! typed value, with "none" and "Infinity" spelled as `Option` rather than as magic numbers.
//!
//! Parsing the JavaScript options into this plan happens elsewhere; the defaults live here,
//! beside the fields they fill, so the parser and the tests agree on them. The backoff rule is
//! here too because it is a rule about these numbers, not about any one state.

use std::time::Duration;

use nix::sys::signal::Signal;

/// How many workers the pool keeps: `min` always (restarted when they crash), up to `max`
/// while requests wait for a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
  pub min: usize,
  pub max: usize,
}

/// What one request may cost: filled from the policy, then overridden by the options of that
/// `request()` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
  /// From each dispatch to the answer; `None` waits for ever.
  pub timeout: Option<Duration>,
  /// From each entry into the queue to the dispatch; `None` waits for ever.
  pub queue_timeout: Option<Duration>,
  /// How many worker deaths the request may be in flight for; at least 1.
  pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPolicy {
  pub size: SizeRange,
  /// How long a worker above `size.min` may hold no request before it is stopped.
  pub idle_timeout: Duration,
  /// Requests one worker holds at once; at least 1.
  pub concurrency: usize,
  /// Requests waiting for a worker; `None` is Infinity.
  pub max_queue: Option<usize>,
  /// The defaults of every request's [`RequestLimits`].
  pub request_timeout: Option<Duration>,
  pub queue_timeout: Option<Duration>,
  pub max_attempts: u32,
  /// More crashes than this within `restart_window`, pool-wide, exhaust the pool;
  /// `u64::MAX` is Infinity.
  pub max_restarts: u64,
  pub restart_window: Duration,
  /// Requests a worker serves before it is replaced (plus up to 10 % jitter); `None` is never.
  pub recycle_after: Option<u64>,
  /// RSS in bytes of a worker's process group above which it is replaced; `None` is no ceiling.
  pub max_memory: Option<u64>,
  /// How often the driver samples RSS for `max_memory`; the machine only sees the samples.
  pub memory_check_interval: Duration,
  /// How often each worker is pinged; `None` is off.
  pub health_check_interval: Option<Duration>,
  /// How long a ping, and a cancelled request, may stay unanswered before the worker is killed.
  pub health_check_timeout: Duration,
  /// The bound of one worker's stop: shutdown message, `kill_signal` at half, SIGKILL at the end.
  pub stop_timeout: Duration,
  pub kill_signal: Signal,
  /// The delay before a slot's first restart; it doubles with every consecutive one.
  pub restart_delay: Duration,
  pub max_restart_delay: Duration,
}

impl PoolPolicy {
  /// The defaults of DESIGN §6 for a pool of `size` workers (`os.availableParallelism()`
  /// unless the user says otherwise).
  pub fn with_size(size: SizeRange) -> Self {
    PoolPolicy {
      size,
      idle_timeout: Duration::from_millis(30_000),
      concurrency: 1,
      max_queue: Some(size.max.saturating_mul(64)),
      request_timeout: Some(Duration::from_millis(60_000)),
      queue_timeout: Some(Duration::from_millis(30_000)),
      max_attempts: 1,
      max_restarts: 10,
      restart_window: Duration::from_millis(60_000),
      recycle_after: None,
      max_memory: None,
      memory_check_interval: Duration::from_millis(1_000),
      health_check_interval: Some(Duration::from_millis(15_000)),
      health_check_timeout: Duration::from_millis(5_000),
      stop_timeout: Duration::from_millis(5_000),
      kill_signal: Signal::SIGTERM,
      restart_delay: Duration::from_millis(1_000),
      max_restart_delay: Duration::from_millis(30_000),
    }
  }

  /// What a `request()` call without options may cost.
  pub fn request_limits(&self) -> RequestLimits {
    RequestLimits {
      timeout: self.request_timeout,
      queue_timeout: self.queue_timeout,
      max_attempts: self.max_attempts,
    }
  }
}

/// `base × 2^(attempt−1)`, capped at `cap`; attempt 1 (and 0) is the base delay.
pub fn backoff(base: Duration, cap: Duration, attempt: u64) -> Duration {
  let mut delay = base;
  // Doubling stops at the cap (or at zero), so the loop is short whatever the attempt.
  for _ in 1..attempt {
    if delay >= cap || delay.is_zero() {
      break;
    }
    delay = delay.saturating_mul(2);
  }
  delay.min(cap)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  #[test]
  fn backoff_doubles_from_the_base_up_to_the_cap() {
    let delays: Vec<Duration> = (1..=7)
      .map(|attempt| backoff(ms(100), ms(1_000), attempt))
      .collect();
    assert_eq!(
      delays,
      [
        ms(100),
        ms(200),
        ms(400),
        ms(800),
        ms(1_000),
        ms(1_000),
        ms(1_000)
      ]
    );
    assert_eq!(backoff(ms(100), ms(1_000), 0), ms(100));
    assert_eq!(backoff(ms(0), ms(1_000), 9), ms(0));
    assert_eq!(backoff(ms(5_000), ms(1_000), 1), ms(1_000));
    assert_eq!(backoff(ms(1), Duration::MAX, u64::MAX), Duration::MAX);
  }

  #[test]
  fn defaults_follow_the_design() {
    let policy = PoolPolicy::with_size(SizeRange { min: 2, max: 4 });
    assert_eq!(policy.max_queue, Some(256));
    assert_eq!(
      policy.request_limits(),
      RequestLimits {
        timeout: Some(ms(60_000)),
        queue_timeout: Some(ms(30_000)),
        max_attempts: 1,
      }
    );
    assert_eq!(policy.max_restarts, 10);
    assert_eq!(policy.restart_window, ms(60_000));
    assert_eq!(policy.health_check_interval, Some(ms(15_000)));
  }
}
