//! Starting one worker with a Node IPC channel, and watching it until it is gone.
//!
//! Why the watching is shaped this way:
//! - Each worker has one watch task. It hands what it sees — output chunks, the exit — to the
//!   worker's [`Watcher`], which decides where they go: the Supervisor sends messages and
//!   answers straight to its listener and wakes its driver only when that matters; the Pool
//!   routes answers into its machine. So this file holds no supervision rule, and both drive
//!   workers through it.
//! - The channel is read by a [`ChannelReader`], on whichever thread waits for the socket: a
//!   [`ChannelHost`] when there is one — JavaScript's own thread, through Node's event loop, so
//!   a worker's answer reaches JavaScript as a forked child's does, with no thread in between
//!   (a read on a tokio thread then a wake-up of JavaScript's cost as much again as the round
//!   trip itself) — else a tokio task.
//! - It reports in the order things happened: messages and output, then the end of the
//!   channel, then the exit — after a short drain, so nothing a worker wrote before dying
//!   arrives after its 'exit'. The watch task waits for the reader to reach the channel's EOF;
//!   when the drain ends first, it stops the reader under the reader's lock, so no message is
//!   told after the exit. The drain waits for what a descendant still writes, not for
//!   JavaScript: its clock stops while the reader is held back (a full backlog, or a host that
//!   has not read since).
//! - Watching starts when the caller says ([`Watch::start`]), not inside [`WorkerSpec::spawn`]:
//!   a caller that must record the new worker before hearing anything from it (the Pool, whose
//!   machine must see `Spawned` before that worker's first answer or its exit) does so first.
//! - The worker's end of the socket is closed here once the launcher has it, so the worker's
//!   exit (or disconnect) reads as EOF on ours.
//! - The worker is untrusted: what it writes costs the parent memory only within bounds. Its
//!   pipes, and its channel when tokio reads it, are read only while the [`Backlog`] of bytes
//!   not yet taken by JavaScript has room (a host on JavaScript's thread hands each read to
//!   JavaScript before it reads again), so a worker that writes faster blocks on its own full pipe or
//!   socket; and a message longer than `maxMessageSize` is refused before the rest of it is
//!   kept, and the worker's group is killed for it — the stream cannot be followed past a
//!   message it did not keep, and the user hears of it as an error and a crash.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::unix::pipe;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

use super::channel::{self, Channel};
use super::lock;
use super::notice::Notice;
use crate::error::Error;
use crate::ipc::backlog::Backlog;
use crate::ipc::{Decoder, Received, Serialization};
use crate::kill::Spawned;
use crate::launch::{self, ProcessGroup};
use crate::vocabulary::exit::Reaped;
use crate::vocabulary::launch_spec::LaunchSpec;
use crate::vocabulary::limits::DRAIN_AFTER_EXIT;
use crate::vocabulary::stdio::{StdioMode, StreamName};

/// The worker's end of the IPC socket is its fd 3, as `fork()` would place it with default stdio.
const CHANNEL_FD: &str = "3";

/// The most read from the channel or a pipe at once.
const READ_CHUNK: usize = 256 * 1024;

/// Where a worker's reader and writer tasks hand what they see, in the order it happened; the
/// last call is `exited`. Called from tokio worker threads, and from a [`ChannelHost`]'s
/// thread; must not block.
pub trait Watcher: Send + Sync + 'static {
  /// The messages completed by one read, in order; a line that is not JSON as its error.
  fn messages(&self, messages: Vec<Result<Received, Error>>);
  fn output(&self, stream: StreamName, chunk: Vec<u8>);
  /// Settlements of queued `send()`s: written, or dropped because the channel closed.
  fn sends_settled(&self, settled: Vec<Notice>);
  fn channel_closed(&self);
  /// How it ended and what it used; `Err` when the launcher died, which takes the worker with
  /// it.
  fn exited(&self, reaped: Result<Reaped, Error>);
}

/// A thread outside tokio that waits for workers' channels to be readable and reads them:
/// JavaScript's, through Node's event loop (`bindings/uv.rs`).
pub trait ChannelHost: Send + Sync + 'static {
  /// From now on, on the host's thread, calls [`ChannelReader::read`] whenever the channel
  /// is readable, until it returns [`ReadOutcome::Finished`]. Called from any thread.
  fn adopt(&self, reader: Arc<ChannelReader>);
}

/// How to start a worker: the program, with the environment that opens Node's IPC channel in
/// `serialization`, and where its stdout and stderr go (its stdin is ignored); how much of
/// what it says the parent holds (see the module comment); and who reads its channel.
pub struct WorkerSpec {
  launch: LaunchSpec,
  stdio: StdioMode,
  serialization: Serialization,
  max_message_size: usize,
  backlog: Arc<Backlog>,
  host: Option<Arc<dyn ChannelHost>>,
}

/// A running worker.
pub struct Worker {
  pub pid: u32,
  pub group: Arc<ProcessGroup>,
  pub channel: Arc<Channel>,
}

/// A started worker nobody reads yet: its channel, output pipes and exit wait for
/// [`Watch::start`].
pub struct Watch {
  group: Arc<ProcessGroup>,
  channel: Arc<Channel>,
  output: [Option<pipe::Receiver>; 2],
  decoder: Decoder,
  backlog: Arc<Backlog>,
  host: Option<Arc<dyn ChannelHost>>,
}

impl WorkerSpec {
  /// `backlog` is the one the listener's outbox counts what it queues for JavaScript in;
  /// `host`, when given, reads the channels, else tokio tasks do.
  pub fn new(
    launch: LaunchSpec,
    stdio: StdioMode,
    serialization: Serialization,
    max_message_size: usize,
    backlog: Arc<Backlog>,
    host: Option<Arc<dyn ChannelHost>>,
  ) -> Self {
    WorkerSpec {
      launch: with_channel_env(launch, serialization),
      stdio,
      serialization,
      max_message_size,
      backlog,
      host,
    }
  }

  /// Starts a worker with a fresh IPC channel; what it says is read once the [`Watch`] is
  /// started. Needs a tokio runtime.
  pub async fn spawn(&self) -> Result<(Worker, Watch), Error> {
    let (channel, theirs) = Channel::pair()
      .map_err(|e| Error::spawn(&self.launch, e.raw_os_error().unwrap_or(libc::EIO)))?;
    let stdio = [StdioMode::Ignore, self.stdio, self.stdio];
    let launched = launch::launch(&self.launch, stdio, vec![theirs.into()]).await?;
    let group = Arc::new(launched.process);
    let channel = Arc::new(channel);
    let worker = Worker {
      pid: launched.pid,
      group: group.clone(),
      channel: channel.clone(),
    };
    let watch = Watch {
      group,
      channel,
      output: [launched.stdout, launched.stderr],
      decoder: Decoder::new(self.serialization, self.max_message_size),
      backlog: self.backlog.clone(),
      host: self.host.clone(),
    };
    Ok((worker, watch))
  }
}

impl Watch {
  /// Starts reading the worker's channel (on the host, or in a tokio task), its watch task,
  /// which tells `watcher` everything else until the worker's exit, and its writer task,
  /// which runs until the channel is closed. Needs a tokio runtime.
  pub fn start(self, watcher: Arc<dyn Watcher>) {
    let settle = watcher.clone();
    tokio::spawn(channel::write_queued(
      self.channel.clone(),
      move |settled| settle.sends_settled(settled),
    ));
    let reader = Arc::new(ChannelReader {
      channel: self.channel,
      group: self.group.clone(),
      watcher: watcher.clone(),
      state: Mutex::new(ReadState {
        decoder: self.decoder,
        buf: vec![0u8; READ_CHUNK],
        done: false,
      }),
      reads: AtomicU64::new(0),
      finished: AtomicBool::new(false),
      on_finish: Notify::new(),
    });
    match &self.host {
      Some(host) => host.adopt(reader.clone()),
      None => {
        tokio::spawn(reader.clone().read_in_task(self.backlog.clone()));
      }
    }
    tokio::spawn(
      WorkerWatch {
        group: self.group,
        reader,
        watcher,
        backlog: self.backlog,
      }
      .run(self.output),
    );
  }
}

/// The environment that makes Node open the channel: `NODE_CHANNEL_FD` names the socket's fd,
/// and the serialization is the one the decoder speaks.
fn with_channel_env(mut launch: LaunchSpec, serialization: Serialization) -> LaunchSpec {
  const FD: &str = "NODE_CHANNEL_FD";
  const MODE: &str = "NODE_CHANNEL_SERIALIZATION_MODE";
  launch.env.retain(|(key, _)| key != FD && key != MODE);
  launch.env.push((FD.into(), CHANNEL_FD.into()));
  launch
    .env
    .push((MODE.into(), serialization.as_str().into()));
  launch
}

/// Reads one worker's channel and tells its watcher what each read completes, on whichever
/// thread calls [`ChannelReader::read`]; one read at a time, under its lock.
pub struct ChannelReader {
  channel: Arc<Channel>,
  group: Arc<ProcessGroup>,
  watcher: Arc<dyn Watcher>,
  state: Mutex<ReadState>,
  /// Reads that brought bytes, for the drain to see whether the reader keeps up.
  reads: AtomicU64,
  /// The reader is done: it reached EOF, or it was stopped.
  finished: AtomicBool,
  on_finish: Notify,
}

struct ReadState {
  decoder: Decoder,
  buf: Vec<u8>,
  done: bool,
}

/// What one [`ChannelReader::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
  /// Bytes, and what they completed was told; more may wait (the read filled its buffer).
  Read,
  /// Bytes, told, and no more waited: the read did not fill its buffer. (Reading again at
  /// once would only find the socket empty, a system call for nothing.)
  Drained,
  /// Nothing to read now.
  Empty,
  /// The reader is done: EOF, an error, or stopped after the drain. Nothing more is told.
  Finished,
}

impl ChannelReader {
  /// The channel's socket, to wait on; open as long as the reader.
  pub fn fd(&self) -> RawFd {
    self.channel.raw_fd()
  }

  /// One non-blocking read: the messages it completes go to the watcher; a message over
  /// `maxMessageSize` kills the worker's group; EOF or an error ends the channel.
  pub fn read(&self) -> ReadOutcome {
    let mut state = lock(&self.state);
    let ReadState { decoder, buf, done } = &mut *state;
    if *done {
      return ReadOutcome::Finished;
    }
    match self.channel.recv(buf) {
      Ok(0) => {}
      Ok(n) => {
        self.reads.fetch_add(1, Ordering::Release);
        decoder.feed(&buf[..n]);
        let messages: Vec<_> = std::iter::from_fn(|| decoder.next_message()).collect();
        let too_large = messages
          .iter()
          .any(|message| matches!(message, Err(Error::MessageTooLarge { .. })));
        if too_large {
          self.group.signal_group(Signal::SIGKILL);
        }
        if !messages.is_empty() {
          self.watcher.messages(messages);
        }
        return if n == buf.len() {
          ReadOutcome::Read
        } else {
          ReadOutcome::Drained
        };
      }
      Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return ReadOutcome::Empty,
      // An error ends the channel all the same.
      Err(_) => {}
    }
    *done = true;
    self.watcher.channel_closed();
    self.finish();
    ReadOutcome::Finished
  }

  /// Ends the channel as EOF would, for a reader that cannot read it.
  fn end(&self) {
    let mut state = lock(&self.state);
    if !state.done {
      state.done = true;
      self.watcher.channel_closed();
      self.finish();
    }
  }

  /// Reads on a tokio task, while the backlog has room, until the reader is done. Needs a
  /// tokio runtime.
  pub async fn read_in_task(self: Arc<Self>, backlog: Arc<Backlog>) {
    let socket = match self.channel.in_reactor(Interest::READABLE) {
      Ok(socket) => socket,
      // Out of descriptors: the channel cannot be watched, which ends it.
      Err(_) => {
        self.end();
        return;
      }
    };
    loop {
      backlog.room().await;
      let Ok(mut ready) = socket.readable().await else {
        // The runtime is going away; nobody is left to tell.
        return;
      };
      match self.read() {
        ReadOutcome::Read => {}
        // tokio keeps readiness that arrived after the read it reported.
        ReadOutcome::Drained | ReadOutcome::Empty => ready.clear_ready(),
        ReadOutcome::Finished => return,
      }
    }
  }

  /// Stops the reader: a read under way completes first, none follows, and whoever waits for
  /// the socket wakes to find it [`ReadOutcome::Finished`].
  fn stop(&self) {
    let mut state = lock(&self.state);
    if !state.done {
      state.done = true;
      self.finish();
      self.channel.shut_reading();
    }
  }

  fn finish(&self) {
    self.finished.store(true, Ordering::Release);
    self.on_finish.notify_waiters();
  }

  /// Returns once the reader is done.
  async fn finished(&self) {
    loop {
      let notified = self.on_finish.notified();
      tokio::pin!(notified);
      // Registered before the check, so a `finish` in between still wakes it.
      notified.as_mut().enable();
      if self.finished.load(Ordering::Acquire) {
        return;
      }
      notified.await;
    }
  }
}

/// What a worker's watch task needs.
struct WorkerWatch {
  group: Arc<ProcessGroup>,
  reader: Arc<ChannelReader>,
  watcher: Arc<dyn Watcher>,
  backlog: Arc<Backlog>,
}

impl WorkerWatch {
  /// Reads the worker's output pipes and waits for its exit and the channel's end, telling
  /// the watcher as things come, and last the exit — once the channel and pipes reached EOF or
  /// [`DRAIN_AFTER_EXIT`] of reading passed (a descendant may hold them open).
  async fn run(self, [mut stdout, mut stderr]: [Option<pipe::Receiver>; 2]) {
    let mut out_buf = vec![0u8; READ_CHUNK];
    let mut err_buf = vec![0u8; READ_CHUNK];
    let mut channel_open = true;
    let mut exit = None;
    let mut drain_until = None;
    let mut reads_seen = 0;
    let wait = self.group.wait();
    tokio::pin!(wait);
    loop {
      if exit.is_some() && !channel_open && stdout.is_none() && stderr.is_none() {
        break;
      }
      // Checked once a turn: a read that overshoots the limit is the last until JavaScript
      // takes the backlog in.
      let room = self.backlog.has_room();
      let turn = Instant::now();
      tokio::select! {
        () = self.reader.finished(), if channel_open => channel_open = false,
        chunk = read_some(&mut stdout, &mut out_buf), if stdout.is_some() && room => match chunk {
          Some(chunk) => self.watcher.output(StreamName::Stdout, chunk),
          None => stdout = None,
        },
        chunk = read_some(&mut stderr, &mut err_buf), if stderr.is_some() && room => match chunk {
          Some(chunk) => self.watcher.output(StreamName::Stderr, chunk),
          None => stderr = None,
        },
        reaped = &mut wait, if exit.is_none() => {
          exit = Some(reaped);
          drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
          reads_seen = self.reader.reads.load(Ordering::Acquire);
        }
        // The drain waits for what a descendant still writes, not for JavaScript: its clock
        // stops while the readers cannot read.
        () = self.backlog.room(), if !room => {
          if let Some(until) = &mut drain_until {
            *until += turn.elapsed();
          }
        }
        () = sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() && room => {
          // Bytes wait that the channel's reader has not read a byte of since the last look:
          // its thread was busy, so the drain has not really begun for the channel.
          let reads = self.reader.reads.load(Ordering::Acquire);
          if channel_open && reads == reads_seen && self.reader.channel.has_unread() {
            drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
          } else {
            break;
          }
          reads_seen = reads;
        }
      }
    }
    self.reader.stop();
    self
      .watcher
      .exited(exit.expect("the loop ends only after the exit"));
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
      umask: None,
      env: vec![
        ("NODE_CHANNEL_FD".into(), "7".into()),
        ("PATH".into(), "/bin".into()),
        ("NODE_CHANNEL_SERIALIZATION_MODE".into(), "json".into()),
      ],
      kill_on_parent_exit: true,
      confinement: Default::default(),
    };
    let env = with_channel_env(launch, Serialization::Advanced).env;
    assert_eq!(
      env,
      [
        ("PATH".into(), "/bin".into()),
        ("NODE_CHANNEL_FD".into(), "3".into()),
        ("NODE_CHANNEL_SERIALIZATION_MODE".into(), "advanced".into()),
      ]
    );
  }
}
