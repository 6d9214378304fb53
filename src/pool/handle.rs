//! The caller's (JavaScript's) side of a pool.
//!
//! Each call feeds one input into the driver's core on the caller's thread, and what follows
//! is done there and then — a request that finds a free worker is written to it before the
//! call returns. Calls that do not finish at once (`start`, `request`, `close`) are settled
//! exactly once by a [`super::notice::Notice::Settled`] carrying their [`CallId`]; a request
//! refused on admission is refused by the call itself.

use std::sync::Arc;

use super::driver::Shared;
use super::machine::{RequestId, State};
use super::notice::{CallId, Snapshot};
use super::policy::{PoolPolicy, RequestLimits};
use super::stats::PoolStats;
use crate::error::Error;

/// The caller's side of a pool; dropping it closes the pool (with drain) and lets the driver
/// task end once all is over.
pub struct Handle {
  shared: Arc<Shared>,
  policy: PoolPolicy,
}

impl Handle {
  pub(super) fn new(shared: Arc<Shared>, policy: PoolPolicy) -> Self {
    Handle { shared, policy }
  }

  /// The pool's numbers, e.g. the defaults of a request's limits.
  pub fn policy(&self) -> &PoolPolicy {
    &self.policy
  }

  /// Starts the pool's `size.min` workers; settled once they are up.
  pub fn start(&self, call: CallId) {
    self.shared.with(|core| core.start(call));
  }

  /// Sends `body_json` (one JSON text without a raw newline) to a worker, or queues it;
  /// settled with the answer or the reason it failed. `call` is also the request's id, for
  /// [`Handle::abort`]. Refused at once, with no settlement to follow, when the queue is full
  /// or the pool closed or exhausted.
  pub fn request(
    &self,
    call: CallId,
    body_json: String,
    limits: RequestLimits,
  ) -> Result<(), Error> {
    self
      .shared
      .with(|core| core.request(RequestId(call), body_json, limits))
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
