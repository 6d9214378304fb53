//! The caller's (JavaScript's) side of a pool.
//!
//! Each call feeds one input into the driver's core on the caller's thread, and what follows
//! is done there and then — a request that finds a free worker is written to it before the
//! call returns. Calls that do not finish at once (`start`, `request`, `close`) are settled
//! exactly once by a [`super::notice::Notice::Settled`] carrying their [`CallId`]; a request
//! refused on admission is refused by the call itself.

use std::future::Future;
use std::sync::Arc;

use super::driver::{self, Shared};
use super::machine::{RequestId, State};
use super::notice::{CallId, Listener, Snapshot};
use super::options::PoolPlan;
use super::policy::{PoolPolicy, RequestLimits};
use super::stats::PoolStats;
use crate::error::Error;
use crate::ipc::Serialization;
use crate::supervisor::worker::ChannelHost;

/// The caller's side of a pool; dropping it closes the pool (with drain) and lets the driver
/// task end once all is over.
pub struct Handle {
  shared: Arc<Shared>,
  policy: PoolPolicy,
  serialization: Serialization,
}

/// Builds the pool of `plan`: the handle is JavaScript's side; the future, run on a tokio
/// runtime, is the driver task (see [`driver::driver`]). `seed` picks the recycle jitter;
/// `host`, when given, reads the workers' channels.
pub fn pool(
  plan: PoolPlan,
  seed: u64,
  listener: Arc<dyn Listener>,
  host: Option<Arc<dyn ChannelHost>>,
) -> (Handle, impl Future<Output = ()> + Send) {
  let policy = plan.policy;
  let serialization = plan.serialization;
  let (shared, run) = driver::driver(plan, seed, listener, host);
  let handle = Handle {
    shared,
    policy,
    serialization,
  };
  (handle, run)
}

impl Handle {
  /// The pool's numbers, e.g. the defaults of a request's limits.
  pub fn policy(&self) -> &PoolPolicy {
    &self.policy
  }

  /// How messages cross the workers' channels.
  pub fn serialization(&self) -> Serialization {
    self.serialization
  }

  /// Starts the pool's `size.min` workers; settled once they are up.
  pub fn start(&self, call: CallId) {
    self.shared.with(|core| core.start(call));
  }

  /// Sends `body` (see [`crate::ipc::Serialization::request`]) to a worker, or queues it;
  /// settled with the answer or the reason it failed. `call` is also the request's id, for
  /// [`Handle::abort`]. Refused at once, with no settlement to follow, when the queue is full
  /// or the pool closed or exhausted.
  pub fn request(&self, call: CallId, body: &[u8], limits: RequestLimits) -> Result<(), Error> {
    self
      .shared
      .with(|core| core.request(RequestId(call), body, limits))
  }

  /// Refuses a request whose AbortSignal fired before the call, counting it as aborted.
  pub fn refuse_aborted(&self) -> Error {
    self.shared.with(|core| core.refuse_aborted())
  }

  /// The request's AbortSignal fired; a request already settled is left alone.
  pub fn abort(&self, call: CallId) {
    self.shared.with(|core| core.abort(RequestId(call)));
  }

  /// Closes the pool; `call`, if given, is settled once nothing of it runs any more.
  pub fn close(&self, call: Option<CallId>, drain: bool) {
    self.shared.with(|core| core.close(call, drain));
  }

  pub fn stats(&self) -> PoolStats {
    self.shared.with(|core| core.stats())
  }

  pub fn state(&self) -> State {
    self.shared.with(|core| core.state())
  }

  /// Live workers.
  pub fn size(&self) -> usize {
    self.shared.with(|core| core.size())
  }

  /// As of the last notice handed to the listener.
  pub fn snapshot(&self) -> Snapshot {
    self.shared.with(|core| core.snapshot())
  }
}

impl Drop for Handle {
  fn drop(&mut self) {
    self.shared.with(|core| core.handle_dropped());
  }
}
