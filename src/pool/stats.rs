//! `stats()` beyond what the machine counts: request latency over a sliding window, and each
//! worker's RSS, uptime and what its slot's last exited process used, which only the driver
//! sees.
//!
//! The latency window is a fixed ring of the last [`WINDOW`] resolved requests, so recording
//! costs a store and the percentiles are computed only when asked for, from a sorted copy of at
//! most a thousand numbers — cheap enough for a status page polled every second.

use std::time::Duration;

use super::machine::{Stats, WorkerStats};
use crate::vocabulary::exit::ResourceUsage;

/// How many resolved requests the latency percentiles look back on.
pub const WINDOW: usize = 1_000;

/// `stats().latencyMs`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
  pub p50: f64,
  pub p99: f64,
}

/// Request-to-answer times of the last [`WINDOW`] resolved requests.
#[derive(Debug, Default)]
pub struct Latency {
  samples: Vec<Duration>,
  /// Where the next sample goes once the ring is full.
  next: usize,
}

impl Latency {
  pub fn record(&mut self, took: Duration) {
    if self.samples.len() < WINDOW {
      self.samples.push(took);
    } else {
      self.samples[self.next] = took;
      self.next = (self.next + 1) % WINDOW;
    }
  }

  /// Nearest-rank percentiles; `None` before the first resolved request.
  pub fn percentiles(&self) -> Option<Percentiles> {
    if self.samples.is_empty() {
      return None;
    }
    let mut sorted = self.samples.clone();
    sorted.sort_unstable();
    let rank = |q: f64| {
      let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
      sorted[index].as_secs_f64() * 1_000.0
    };
    Some(Percentiles {
      p50: rank(0.50),
      p99: rank(0.99),
    })
  }
}

/// Everything `stats()` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
  pub machine: Stats,
  pub latency: Option<Percentiles>,
  /// One per row of `machine.workers`, in the same order.
  pub workers: Vec<WorkerRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
  pub stats: WorkerStats,
  /// The RSS of the worker's process group at the last sample; `None` before one (or when
  /// `maxMemory` is not set, which is when samples are taken).
  pub rss: Option<u64>,
  /// Since the worker was spawned; `None` while there is no process.
  pub uptime: Option<Duration>,
  /// What the slot's last process that exited used; `None` before one did (or when the
  /// launcher died before telling).
  pub last_exit_usage: Option<ResourceUsage>,
}

#[cfg(test)]
mod tests {
  use super::*;

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  #[test]
  fn percentiles_are_nearest_rank_over_the_last_thousand() {
    let mut latency = Latency::default();
    assert_eq!(latency.percentiles(), None);
    for n in 1..=100 {
      latency.record(ms(n));
    }
    assert_eq!(
      latency.percentiles(),
      Some(Percentiles {
        p50: 50.0,
        p99: 99.0
      })
    );
    // A thousand fast answers push the slow ones out of the window.
    for _ in 0..WINDOW {
      latency.record(ms(2));
    }
    assert_eq!(
      latency.percentiles(),
      Some(Percentiles { p50: 2.0, p99: 2.0 })
    );
  }
}
