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
use crate::ipc;

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

  /// Starts supervising; settled once the first worker runs (or could not be started).
  pub fn start(&self, call: CallId) -> Result<(), Error> {
    self.command(Command::Start(call))
  }

  /// Stops the worker within `stopTimeout`, no restart; settled once it is gone.
  pub fn stop(&self, call: CallId) -> Result<(), Error> {
    self.command(Command::Stop(call))
  }

  /// Sends one JSON text without a raw newline (what `JSON.stringify` gives) to the worker.
  /// `ERR_IPC_CHANNEL_CLOSED` when no worker is connected.
  pub fn send(&self, json: String, call: CallId) -> Result<Sent, Error> {
    let link = self.connection.lock();
    let channel = link.channel.as_ref().ok_or(Error::ChannelClosed)?;
    channel.write(json.into_bytes(), Some(call))
  }

  /// Sends `body_json` as a request; settled with the worker's answer, `ERR_TIMEOUT` after
  /// `timeout`, or `ERR_WORKER_EXITED` when the worker goes first.
  pub fn request(
    &self,
    body_json: &str,
    timeout: Option<Duration>,
    call: CallId,
  ) -> Result<(), Error> {
    let mut link = self.connection.lock();
    let channel = link.channel.clone().ok_or(Error::ChannelClosed)?;
    let id = link.next_request_id();
    if let Some(after) = timeout {
      let at = Instant::now() + after;
      self.command(Command::Deadline { id, at })?;
    }
    // Registered before it is written: the answer may be read before `write` returns.
    link.requests.insert(id, InFlight { call, timeout });
    if let Err(error) = channel.write(ipc::encode_request(id, body_json), None) {
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
