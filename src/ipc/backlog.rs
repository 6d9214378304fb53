//! The [`Backlog`]: how many bytes of what workers said wait to be taken by JavaScript, and the
//! brake that keeps that number bounded.
//!
//! A worker's reader reads its channel and pipes as fast as the worker writes; JavaScript takes
//! what was read only when its thread is free. Without a brake, a worker that writes faster
//! than a busy or slow JS thread takes in grows the parent's memory without limit. So the
//! outbox adds every notice's bytes when it queues it and takes them off when a delivery hands
//! the batch to JavaScript, and readers stop reading while the count is at the limit: the
//! worker's writes then fill the pipe or socket and block it, the kernel's own backpressure.
//!
//! It counts bytes, not notices, because bytes are what cost memory; one count per Supervisor
//! or Pool, shared by its workers, because they share one JS thread. A reader checks before it
//! reads, so the count overshoots the limit by at most what one read completes (a read's
//! chunk, or a whole message up to `maxMessageSize`).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The bytes queued for JavaScript above which readers stop reading.
pub const BACKLOG_LIMIT: usize = 4 << 20;

#[derive(Debug)]
pub struct Backlog {
  queued: AtomicUsize,
  limit: usize,
  /// Wakes readers when the count falls below the limit.
  drained: Notify,
}

impl Default for Backlog {
  fn default() -> Self {
    Backlog::with_limit(BACKLOG_LIMIT)
  }
}

impl Backlog {
  pub fn with_limit(limit: usize) -> Self {
    Backlog {
      queued: AtomicUsize::new(0),
      limit,
      drained: Notify::new(),
    }
  }

  /// `bytes` were queued for JavaScript.
  pub fn add(&self, bytes: usize) {
    if bytes > 0 {
      self.queued.fetch_add(bytes, Ordering::AcqRel);
    }
  }

  /// `bytes` were handed to JavaScript; never more than were added.
  pub fn remove(&self, bytes: usize) {
    if bytes == 0 {
      return;
    }
    let before = self.queued.fetch_sub(bytes, Ordering::AcqRel);
    if before - bytes < self.limit {
      self.drained.notify_waiters();
    }
  }

  pub fn has_room(&self) -> bool {
    self.queued.load(Ordering::Acquire) < self.limit
  }

  /// Returns once the count is below the limit.
  pub async fn room(&self) {
    loop {
      let drained = self.drained.notified();
      tokio::pin!(drained);
      // Registered before the check, so a `remove` between the two still wakes it.
      drained.as_mut().enable();
      if self.has_room() {
        return;
      }
      drained.await;
    }
  }
}

#[cfg(test)]
mod tests {
  use std::sync::Arc;
  use std::time::Duration;

  use super::*;

  #[test]
  fn room_follows_the_count() {
    let backlog = Backlog::with_limit(10);
    assert!(backlog.has_room());
    backlog.add(10);
    assert!(!backlog.has_room());
    backlog.remove(1);
    assert!(backlog.has_room());
  }

  #[tokio::test]
  async fn a_waiting_reader_wakes_when_javascript_takes_the_batch() {
    let backlog = Arc::new(Backlog::with_limit(10));
    backlog.add(25);
    let waiter = tokio::spawn({
      let backlog = backlog.clone();
      async move { backlog.room().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished(), "no room while 25 bytes are queued");
    backlog.remove(25);
    tokio::time::timeout(Duration::from_secs(5), waiter)
      .await
      .expect("woken once the bytes were taken")
      .unwrap();
  }
}

/// Property test of the brake: over any run of reads queued and batches taken, room is exactly
/// "below the limit", and a reader waiting for room is woken by the batch that makes it.
#[cfg(test)]
mod properties {
  use std::future::Future;
  use std::pin::Pin;
  use std::sync::atomic::AtomicBool;
  use std::sync::Arc;
  use std::task::{Context, Poll, Wake, Waker};

  use proptest::prelude::*;
  use proptest::sample::Index;

  use super::*;

  /// A waker that remembers being woken.
  #[derive(Default)]
  struct Woken(AtomicBool);

  impl Wake for Woken {
    fn wake(self: Arc<Self>) {
      self.0.store(true, Ordering::SeqCst);
    }
  }

  #[derive(Debug, Clone)]
  enum Step {
    /// A read queued this many bytes.
    Queue(usize),
    /// A delivery took this share of what was queued (a batch never holds more).
    Take(Index),
  }

  fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
      (0..40usize).prop_map(Step::Queue),
      any::<Index>().prop_map(Step::Take),
    ]
  }

  proptest! {
    #[test]
    fn room_is_below_the_limit_and_a_waiting_reader_wakes_when_it_comes(
      limit in 1..64usize,
      steps in prop::collection::vec(step(), 0..40),
    ) {
      let backlog = Backlog::with_limit(limit);
      let mut queued = 0;
      let woken = Arc::new(Woken::default());
      let waker = Waker::from(woken.clone());
      let mut context = Context::from_waker(&waker);
      // The reader that found no room, parked until it is woken.
      let mut waiting: Option<Pin<Box<dyn Future<Output = ()> + '_>>> = None;
      for step in steps {
        match step {
          Step::Queue(bytes) => {
            backlog.add(bytes);
            queued += bytes;
          }
          Step::Take(share) => {
            let bytes = share.index(queued + 1);
            backlog.remove(bytes);
            queued -= bytes;
          }
        }
        prop_assert_eq!(backlog.has_room(), queued < limit);
        if let Some(waiter) = &mut waiting {
          if queued < limit {
            prop_assert!(woken.0.load(Ordering::SeqCst), "room came but the reader sleeps");
            prop_assert!(waiter.as_mut().poll(&mut context).is_ready());
            waiting = None;
          }
        } else {
          let mut waiter = Box::pin(backlog.room());
          woken.0.store(false, Ordering::SeqCst);
          match waiter.as_mut().poll(&mut context) {
            Poll::Ready(()) => prop_assert!(queued < limit),
            Poll::Pending => {
              prop_assert!(queued >= limit);
              waiting = Some(waiter);
            }
          }
        }
      }
    }
  }
}
