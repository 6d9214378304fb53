//! The Supervisor: keeps one worker process alive over a Node IPC channel.
//!
//! Its rules (restart policy, backoff, health checks, the bounded stop) live in [`machine`], a
//! pure state machine unit-tested without processes or time. The rest is I/O, one job per
//! module, and only [`driver`] knows the machine:
//! - [`worker`] starts a worker with its IPC channel and watches it: messages, output, the
//!   channel's end and the exit, handed to a [`worker::Watcher`] in the order they happened.
//!   The channel is read on JavaScript's own thread when a [`worker::ChannelHost`] is given
//!   (the bindings' outbox, on Node's loop), else by a tokio task.
//! - [`channel`] is one worker's socket: non-blocking reads, and writes in call order — at
//!   once from the caller's thread when the socket takes them, else through a writer task.
//! - [`connection`] is what the caller's thread, the driver and the worker's reader share: the
//!   channel while it is open to callers, the requests awaiting answers, and the watcher that
//!   settles them.
//! - [`handle`] is the caller's (JavaScript's) side: commands for the driver, and `send` and
//!   `request` written straight to the channel.
//! - [`driver`] is the task that owns the machine and the timers and carries out the actions.
//! - [`notice`] is what all of them tell the one [`notice::Listener`], which is also the seam
//!   the driver's tests observe it through.
//!
//! The worker-level parts (worker, channel) hold no supervision rule: the Pool drives its
//! workers through them with a watcher of its own.

pub mod channel;
pub mod connection;
pub mod driver;
pub mod handle;
pub mod machine;
pub mod notice;
pub mod worker;

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, also after a panic elsewhere: the data guarded in these modules stays
/// consistent between statements, and a poisoned lock would otherwise fail every later call.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}
