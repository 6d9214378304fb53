//! What the supervisor tells JavaScript, and the one [`Listener`] it tells.
//!
//! Everything reaches the listener as [`Notice`]s, from whichever task saw it happen: the
//! driver (state, events, settlements of `start`/`stop`/timeouts), a worker's reader
//! (messages, output, answers) and a channel's writer (queued sends written or dropped). The
//! listener is the only way out, so a test that records notices sees all a user would.

use std::sync::Arc;

use crate::error::Error;
use crate::ipc::backlog::Backlog;
use crate::ipc::Payload;
use crate::vocabulary::confinement::{Limit, ResourceLimits};
use crate::vocabulary::exit::{Reaped, ResourceUsage};
use crate::vocabulary::stdio::StreamName;

use super::machine::{Event, State};

/// Identifies one call from JavaScript; its settlement carries the same id. Wide enough never
/// to repeat: a call that waits for ever (a request without timeout to a worker that never
/// answers) cannot meet a later call with the same id.
pub type CallId = u64;

/// The state as the getters show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
  pub state: State,
  pub pid: Option<u32>,
  pub restart_count: u64,
  pub connected: bool,
}

impl Snapshot {
  pub const IDLE: Snapshot = Snapshot {
    state: State::Idle,
    pid: None,
    restart_count: 0,
    connected: false,
  };
}

/// The kernel's account of a worker's end, which its 'exit' and 'crashed' events carry. The
/// machines decide those events from the exit status alone; the drivers attach this to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitAccount {
  /// `None` when the launcher died before it could tell.
  pub usage: Option<ResourceUsage>,
  /// The limit whose signal ended the worker.
  pub limit: Option<Limit>,
}

impl ExitAccount {
  /// The account of a worker that ran under `limits`. A supervisor sends its workers only
  /// their `killSignal` and SIGKILL, so a limit's signal is taken as the kernel's.
  pub fn of(reaped: &Reaped, limits: &ResourceLimits) -> Self {
    ExitAccount {
      usage: Some(reaped.usage),
      limit: limits.ended(reaped.status, None),
    }
  }
}

/// What JavaScript must hear, in order.
#[derive(Debug)]
pub enum Notice {
  /// The state, pid, restart count or connection changed; comes before the events that follow
  /// from the change, so a listener reading the getters sees the new values.
  Snapshot(Snapshot),
  Event(Event),
  /// An 'exit' or 'crashed' event, with what the kernel told of that end.
  Ended {
    event: Event,
    account: ExitAccount,
  },
  /// A message from the worker, as it wrote it.
  Message(Payload),
  Output {
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

/// Where notices go. Called from tokio worker threads and from the thread calling
/// [`super::handle::Handle::send`]; must not block. Notices that belong together come in one
/// call.
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
  /// The bytes of what the worker said that this notice holds: what a flood of messages or
  /// output costs the parent while it waits for JavaScript.
  pub fn worker_bytes(&self) -> usize {
    match self {
      Notice::Message(payload)
      | Notice::Settled {
        outcome: Ok(Some(payload)),
        ..
      } => payload.size(),
      Notice::Output { chunk, .. } => chunk.len(),
      _ => 0,
    }
  }
}
