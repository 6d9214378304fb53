//! What the pool tells JavaScript, and the one [`Listener`] it tells.
//!
//! Everything reaches the listener as [`Notice`]s, from whichever thread saw it happen: the
//! caller's (a request dispatched at once), a worker's reader (answers, messages, output, a
//! death) or the driver task (timers, spawns). Notices are handed over while the pool's state
//! is locked, so they arrive in the order the machine decided them. The listener is the only
//! way out, so a test that records notices sees all a user would.

use std::sync::Arc;

use crate::error::Error;
use crate::ipc::backlog::Backlog;
use crate::ipc::Payload;
use crate::supervisor::notice::ExitAccount;
use crate::vocabulary::stdio::StreamName;

use super::machine::{Event, State};

/// Identifies one call from JavaScript; its settlement carries the same id. A request's call id
/// is also its request id.
pub type CallId = u64;

/// What decides whether the pool may let Node exit: its state, and whether any of its worker
/// processes is still alive (or being spawned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
  pub state: State,
  pub processes: bool,
}

impl Snapshot {
  pub const IDLE: Snapshot = Snapshot {
    state: State::Idle,
    processes: false,
  };

  /// Nothing of the pool runs, and nothing will until a new call: not started, or over.
  pub fn is_at_rest(&self) -> bool {
    !self.processes && matches!(self.state, State::Idle | State::Closed | State::Exhausted)
  }
}

/// What JavaScript must hear, in order.
#[derive(Debug)]
pub enum Notice {
  /// The state changed, or the last worker process went (or the first came).
  Snapshot(Snapshot),
  /// Any event but `SpawnFailed`, which comes as an [`Notice::Error`].
  Event(Event),
  /// An 'exit' or 'crashed' event, with what the kernel told of that end.
  Ended { event: Event, account: ExitAccount },
  /// An 'error' event: a worker that could not be spawned, a line that is not JSON, a message
  /// over `maxMessageSize` (its worker is killed), the launcher's death.
  Error(Error),
  /// A message from worker slot `worker` (process `pid`), as it wrote it.
  Message {
    worker: usize,
    pid: u32,
    payload: Payload,
  },
  Output {
    worker: usize,
    pid: u32,
    stream: StreamName,
    chunk: Vec<u8>,
  },
  /// A call is over. `Ok(Some(payload))` is the result a request was answered with (see
  /// [`crate::ipc::Received::Response`]).
  Settled {
    call: CallId,
    outcome: Result<Option<Payload>, Error>,
  },
}

/// Where notices go. Called from any thread, with the pool's state locked: must not block and
/// must not call back into the pool. Notices that belong together come in one call.
pub trait Listener: Send + Sync + 'static {
  fn notify(&self, notices: Vec<Notice>);

  /// Where the listener counts the bytes of what workers said that it holds and JavaScript
  /// has not taken yet; readers read only while it has room. A listener that holds nothing
  /// back (a test's recorder) leaves the default, which never fills.
  fn backlog(&self) -> Arc<Backlog> {
    Arc::default()
  }
}

impl Notice {
  /// The bytes of what a worker said that this notice holds: what a flood of messages or
  /// output costs the parent while it waits for JavaScript.
  pub fn worker_bytes(&self) -> usize {
    match self {
      Notice::Message { payload, .. }
      | Notice::Settled {
        outcome: Ok(Some(payload)),
        ..
      } => payload.size(),
      Notice::Output { chunk, .. } => chunk.len(),
      _ => 0,
    }
  }
}
