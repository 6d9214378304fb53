//! The caller's side of a driver, used on JavaScript's thread.
//!
//! `start` and `stop` are commands for the driver task, which alone owns the machine. `send`
//! and `request` do not go through it: they write to the connected worker's channel at once
//! (see [`super::channel`]), so a message crosses one socket and no task on its way out, and
//! busy traffic does not wake the driver. A request is registered in the [`Connection`] before
//! it is written; only its deadline, if it has one, goes to the driver.
//!
//! Every call that does not finish at once is settled exactly once by a
//! [`super::notice::Notice::Settled`] carrying its [`CallId`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::channel::Sent;
use super::connection::{Connection, InFlight};
use super::notice::CallId;
use crate::error::Error;
use crate::ipc::Serialization;

/// What the handle asks of the driver task.
#[derive(Debug)]
pub enum Command {
  Start(CallId),
  Stop(CallId),
  /// Request `id` times out at `at`.
  Deadline {
    id: u64,
    at: Instant,
  },
}

/// The caller's side of a driver; dropping it stops the supervisor and ends the driver.
pub struct Handle {
  commands: mpsc::UnboundedSender<Command>,
  connection: Arc<Connection>,
}

impl Handle {
  pub fn new(commands: mpsc::UnboundedSender<Command>, connection: Arc<Connection>) -> Self {
    Handle {
      commands,
      connection,
    }
  }

  /// How messages cross the channel.
  pub fn serialization(&self) -> Serialization {
    self.connection.serialization
  }

  /// Starts supervising; settled once the first worker runs (or could not be started).
  pub fn start(&self, call: CallId) -> Result<(), Error> {
    self.command(Command::Start(call))
  }

  /// Stops the worker within `stopTimeout`, no restart; settled once it is gone.
  pub fn stop(&self, call: CallId) -> Result<(), Error> {
    self.command(Command::Stop(call))
  }

  /// Sends one message to the worker: in json, one JSON text without a raw newline (what
  /// `JSON.stringify` gives); in advanced, a v8 serializer payload. `ERR_IPC_CHANNEL_CLOSED`
  /// when no worker is connected.
  pub fn send(&self, payload: Vec<u8>, call: CallId) -> Result<Sent, Error> {
    let frame = self.connection.serialization.frame(payload)?;
    let link = self.connection.lock();
    let channel = link.channel.as_ref().ok_or(Error::ChannelClosed)?;
    channel.write(frame, Some(call))
  }

  /// Sends `body` as a request (see [`crate::ipc::Serialization::request`]); settled with the
  /// worker's answer, `ERR_TIMEOUT` after `timeout`, or `ERR_WORKER_EXITED` when the worker
  /// goes first.
  pub fn request(&self, body: &[u8], timeout: Option<Duration>, call: CallId) -> Result<(), Error> {
    let mut link = self.connection.lock();
    let channel = link.channel.clone().ok_or(Error::ChannelClosed)?;
    let id = link.next_request_id();
    let frame = self.connection.serialization.request(id, body)?;
    if let Some(after) = timeout {
      let at = Instant::now() + after;
      self.command(Command::Deadline { id, at })?;
    }
    // Registered before it is written: the answer may be read before `write` returns.
    link.requests.insert(id, InFlight { call, timeout });
    if let Err(error) = channel.write(frame, None) {
      link.requests.remove(&id);
      return Err(error);
    }
    Ok(())
  }

  fn command(&self, command: Command) -> Result<(), Error> {
    self
      .commands
      .send(command)
      .map_err(|_| Error::InvalidState {
        action: "use",
        state: "shut down",
      })
  }
}
