//! Starting one worker with a Node IPC channel, and watching it until it is gone.
//!
//! Why the watching is shaped this way:
//! - Each worker has one reader task. It hands messages, answers and output to the listener
//!   itself, so a message crosses one socket and one thread hop back to JavaScript; it tells
//!   the driver that the worker is alive only when the driver asked to hear it (see
//!   [`Connection::take_sign_of_life`]), so busy traffic does not wake the driver.
//! - It reports in the order things happened: messages and output, then the end of the
//!   channel, then the exit — after a short drain, so nothing a worker wrote before dying
//!   arrives after its 'exit'. Reports carry no worker id: a worker's last report is its exit,
//!   and the driver starts no next worker before that.
//! - The worker's end of the socket is closed here once the launcher has it, so the worker's
//!   exit (or disconnect) reads as EOF on ours.

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::channel::{self, Channel};
use super::connection::Connection;
use super::machine::Event;
use super::notice::{Listener, Notice};
use crate::error::Error;
use crate::ipc::{Decoder, Incoming, Received};
use crate::kill::Spawned;
use crate::launch::{self, ProcessGroup};
use crate::vocabulary::exit::ExitStatus;
use crate::vocabulary::launch_spec::LaunchSpec;
use crate::vocabulary::limits::DRAIN_AFTER_EXIT;
use crate::vocabulary::stdio::{StdioMode, StreamName};

/// The worker's end of the IPC socket is its fd 3, as `fork()` would place it with default stdio.
const CHANNEL_FD: &str = "3";

/// The most read from the channel or a pipe at once.
const READ_CHUNK: usize = 256 * 1024;

/// What a worker's reader task tells the driver, in this order.
#[derive(Debug)]
pub enum Report {
  /// Something arrived from the worker, and the driver asked to hear of it.
  Alive,
  ChannelClosed,
  /// The last report. `Err` when the launcher died, which takes the worker with it.
  Exited(Result<ExitStatus, Error>),
}

/// How to start a worker: the program, with the environment that opens Node's IPC channel, and
/// where its stdout and stderr go (its stdin is ignored).
pub struct WorkerSpec {
  launch: LaunchSpec,
  stdio: StdioMode,
}

/// A running worker.
pub struct Worker {
  pub pid: u32,
  pub group: Arc<ProcessGroup>,
  pub channel: Arc<Channel>,
}

impl WorkerSpec {
  pub fn new(launch: LaunchSpec, stdio: StdioMode) -> Self {
    WorkerSpec {
      launch: with_channel_env(launch),
      stdio,
    }
  }

  /// Starts a worker with a fresh IPC channel, and its reader and writer tasks: the reader
  /// sends `reports` until the worker's exit, the writer runs until the channel is closed.
  pub async fn spawn(
    &self,
    connection: Arc<Connection>,
    listener: Arc<dyn Listener>,
    reports: mpsc::UnboundedSender<Report>,
  ) -> Result<Worker, Error> {
    let (channel, theirs) = Channel::pair()
      .map_err(|e| Error::spawn(&self.launch, e.raw_os_error().unwrap_or(libc::EIO)))?;
    let stdio = [StdioMode::Ignore, self.stdio, self.stdio];
    let launched = launch::launch(&self.launch, stdio, vec![theirs.into()]).await?;
    let group = Arc::new(launched.process);
    let channel = Arc::new(channel);
    tokio::spawn(channel::write_queued(channel.clone(), listener.clone()));
    tokio::spawn(
      WorkerWatch {
        group: group.clone(),
        channel: channel.clone(),
        connection,
        listener,
        reports,
      }
      .run([launched.stdout, launched.stderr]),
    );
    Ok(Worker {
      pid: launched.pid,
      group,
      channel,
    })
  }
}

/// The environment that makes Node open the channel: `NODE_CHANNEL_FD` names the socket's fd,
/// and json serialization is what the decoder speaks.
fn with_channel_env(mut launch: LaunchSpec) -> LaunchSpec {
  const FD: &str = "NODE_CHANNEL_FD";
  const MODE: &str = "NODE_CHANNEL_SERIALIZATION_MODE";
  launch.env.retain(|(key, _)| key != FD && key != MODE);
  launch.env.push((FD.into(), CHANNEL_FD.into()));
  launch.env.push((MODE.into(), "json".into()));
  launch
}

/// What a worker's reader task needs.
struct WorkerWatch {
  group: Arc<ProcessGroup>,
  channel: Arc<Channel>,
  connection: Arc<Connection>,
  listener: Arc<dyn Listener>,
  reports: mpsc::UnboundedSender<Report>,
}

impl WorkerWatch {
  /// Reads the worker's channel and output pipes and waits for its exit. Messages, answers and
  /// output go to the listener as they come; the driver hears that the worker is alive, that
  /// the channel ended, and last the exit — once the channel and pipes reached EOF or
  /// [`DRAIN_AFTER_EXIT`] passed (a descendant may hold them open).
  async fn run(self, [mut stdout, mut stderr]: [Option<pipe::Receiver>; 2]) {
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let mut channel_open = true;
    let mut exit = None;
    let mut drain_until = None;
    let wait = self.group.wait();
    tokio::pin!(wait);
    loop {
      if exit.is_some() && !channel_open && stdout.is_none() && stderr.is_none() {
        break;
      }
      tokio::select! {
        read = self.channel.read(&mut buf), if channel_open => match read {
          Some(n) => {
            decoder.feed(&buf[..n]);
            self.take_messages(&mut decoder);
          }
          None => {
            channel_open = false;
            self.report(Report::ChannelClosed);
          }
        },
        chunk = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match chunk {
          Some(chunk) => self.output(StreamName::Stdout, chunk),
          None => stdout = None,
        },
        chunk = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match chunk {
          Some(chunk) => self.output(StreamName::Stderr, chunk),
          None => stderr = None,
        },
        reaped = &mut wait, if exit.is_none() => {
          exit = Some(reaped.map(|reaped| reaped.status));
          drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
        }
        () = sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => break,
      }
    }
    self.report(Report::Exited(
      exit.expect("the loop ends only after the exit"),
    ));
  }

  /// Hands every complete message to the listener: the user's as they are, answers as the
  /// settlement of their request; then tells the driver the worker is alive, if it asked.
  fn take_messages(&self, decoder: &mut Decoder) {
    let mut notices = Vec::new();
    let mut any = false;
    while let Some(message) = decoder.next_message() {
      any = true;
      let Received { incoming, json } = match message {
        Ok(received) => received,
        Err(malformed) => {
          notices.push(Notice::Event(Event::Error(malformed)));
          continue;
        }
      };
      match incoming {
        Incoming::User => notices.push(Notice::Message(json)),
        Incoming::Response { id, outcome } => {
          // An answer after its timeout finds nothing: the caller was already told.
          if let Some(request) = self.connection.take_request(id) {
            notices.push(Notice::Settled {
              call: request.call,
              outcome: outcome.map(|result| result.map(|value| value.to_string())),
            });
          }
        }
        Incoming::Pong | Incoming::NodeInternal => {}
      }
    }
    if !notices.is_empty() {
      self.listener.notify(notices);
    }
    // Any word from the worker, even one that could not be parsed, shows it is alive.
    if any && self.connection.take_sign_of_life() {
      self.report(Report::Alive);
    }
  }

  fn output(&self, stream: StreamName, chunk: Vec<u8>) {
    self.listener.notify(vec![Notice::Output { stream, chunk }]);
  }

  fn report(&self, report: Report) {
    // The driver outlives every worker task it started, so this cannot fail in practice.
    let _ = self.reports.send(report);
  }
}

/// The next chunk from an output pipe; `None` at EOF or on an error.
async fn read_some(pipe: &mut Option<pipe::Receiver>, buf: &mut [u8]) -> Option<Vec<u8>> {
  match pipe.as_mut()?.read(buf).await {
    Ok(n) if n > 0 => Some(buf[..n].to_vec()),
    _ => None,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn the_channel_env_replaces_inherited_values() {
    let launch = LaunchSpec {
      command: "node".into(),
      args: vec![],
      cwd: None,
      env: vec![
        ("NODE_CHANNEL_FD".into(), "7".into()),
        ("PATH".into(), "/bin".into()),
        ("NODE_CHANNEL_SERIALIZATION_MODE".into(), "advanced".into()),
      ],
      kill_on_parent_exit: true,
      confinement: Default::default(),
    };
    let env = with_channel_env(launch).env;
    assert_eq!(
      env,
      [
        ("PATH".into(), "/bin".into()),
        ("NODE_CHANNEL_FD".into(), "3".into()),
        ("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()),
      ]
    );
  }
}
