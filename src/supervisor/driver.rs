//! The tokio driver: it owns a [`Machine`] and carries out what it decides — starts workers with
//! a Node IPC channel, writes to and reads from that channel, runs the timers, waits for exits —
//! and tells one [`Listener`] everything JavaScript must hear, as [`Notice`]s, in order.
//!
//! Why it is shaped this way:
//! - One task owns the machine, so inputs are applied one at a time in the order they happened;
//!   everything else talks to it through channels ([`Command`]s in, worker reports back).
//! - Each worker has one task that reads its channel and pipes and waits for its exit, and
//!   reports in the order things happened: messages and output, then the end of the channel,
//!   then the exit — after a short drain, so nothing a worker wrote before dying arrives after
//!   its 'exit'. Reports need no worker id: a worker's last report is its exit, and the machine
//!   starts the next worker only after that.
//! - Each worker has one writer task, so writes reach the socket in the order they were asked
//!   for; it settles a `send()` once its bytes are in the socket. When the worker is gone the
//!   writer settles everything still queued, so no call is ever left hanging.
//! - Every call (`start`, `stop`, `send`, `request`) is settled exactly once, by a
//!   [`Notice::Settled`], never by a return value: the listener sees settlements in line with
//!   the events, so a `start()` resolves after its 'spawn' event.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{pipe, OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use super::machine::{Action, Event, Input, Machine, State, Timer};
use crate::collect::DRAIN_AFTER_EXIT;
use crate::error::{Error, StreamName};
use crate::ipc::{self, Decoder, Incoming, Received};
use crate::launch::{self, ExitStatus, ProcessGroup, StdioMode};
use crate::options::{LaunchSpec, SupervisorPlan};

/// The worker's end of the IPC socket is its fd 3, as `fork()` would place it with default stdio.
const CHANNEL_FD: &str = "3";

/// The most read from the channel or a pipe at once.
const READ_CHUNK: usize = 256 * 1024;

/// Queued small messages are written together up to this many bytes: one system call for a
/// burst instead of one per message.
const WRITE_BATCH: usize = 256 * 1024;

/// Identifies one call from JavaScript; its settlement carries the same id.
pub type CallId = u32;

/// What JavaScript asks of the supervisor.
#[derive(Debug)]
pub enum Command {
  Start(CallId),
  Stop(CallId),
  /// `json` is one JSON text without a raw newline (what `JSON.stringify` gives).
  Send {
    call: CallId,
    json: String,
  },
  Request {
    call: CallId,
    body_json: String,
    timeout: Option<Duration>,
  },
}

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

/// What JavaScript must hear, in order.
#[derive(Debug)]
pub enum Notice {
  /// The state, pid, restart count or connection changed; comes before the events that follow
  /// from the change, so a listener reading the getters sees the new values.
  Snapshot(Snapshot),
  Event(Event),
  /// A message from the worker, as one JSON text.
  Message(String),
  Output {
    stream: StreamName,
    chunk: Vec<u8>,
  },
  /// A call is over. `Ok(Some(json))` is the result a request was answered with.
  Settled {
    call: CallId,
    outcome: Result<Option<String>, Error>,
  },
}

/// Where notices go. Called from tokio worker threads; must not block. The notices of one step
/// of the driver come in one call, so a state change and the events it causes are never split
/// between two deliveries.
pub trait Listener: Send + Sync + 'static {
  fn notify(&self, notices: Vec<Notice>);
}

/// Builds the driver of `plan`: commands go into the sender; the future, run on a tokio runtime,
/// does the work. It ends once the sender is dropped and the supervisor is at rest (a worker
/// still running then is stopped first).
pub fn driver(
  plan: SupervisorPlan,
  listener: Arc<dyn Listener>,
) -> (
  mpsc::UnboundedSender<Command>,
  impl Future<Output = ()> + Send,
) {
  let (commands_tx, commands) = mpsc::unbounded_channel();
  let (reports_tx, reports) = mpsc::unbounded_channel();
  let driver = Driver {
    machine: Machine::new(plan.policy),
    launch: with_channel_env(plan.launch),
    stdio: plan.stdio,
    listener,
    notices: Vec::new(),
    reports: reports_tx,
    worker: None,
    timers: [None; TIMERS.len()],
    start_waiters: Vec::new(),
    stop_waiters: Vec::new(),
    requests: HashMap::new(),
    deadlines: BTreeSet::new(),
    next_request_id: 1,
    snapshot: Snapshot::IDLE,
  };
  (commands_tx, driver.run(commands, reports))
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

/// Timer slots in the order they are checked when several are due at once.
const TIMERS: [Timer; 4] = [
  Timer::HealthCheck,
  Timer::HealthDeadline,
  Timer::Restart,
  Timer::Stop,
];

fn slot(timer: Timer) -> usize {
  TIMERS
    .iter()
    .position(|&t| t == timer)
    .expect("every timer has a slot")
}

/// What a worker's task reports to the driver.
enum Report {
  Messages(Vec<Result<Received, Error>>),
  Output(StreamName, Vec<u8>),
  ChannelClosed,
  /// `Err` when the launcher died, which takes the worker with it.
  Exited(Result<ExitStatus, Error>),
}

/// The live worker as the driver holds it.
struct Worker {
  group: Arc<ProcessGroup>,
  outgoing: mpsc::UnboundedSender<Outgoing>,
  /// Dropped with the worker: tells its writer to give up on whatever it still holds.
  _gone: oneshot::Sender<()>,
}

/// Bytes for the channel, and the `send()` they settle once written.
struct Outgoing {
  bytes: Vec<u8>,
  settles: Option<CallId>,
}

struct InFlight {
  call: CallId,
  timeout: Option<Duration>,
}

struct Driver {
  machine: Machine,
  launch: LaunchSpec,
  stdio: StdioMode,
  listener: Arc<dyn Listener>,
  /// Notices of the current step, handed to the listener together when it ends.
  notices: Vec<Notice>,
  reports: mpsc::UnboundedSender<Report>,
  worker: Option<Worker>,
  timers: [Option<Instant>; TIMERS.len()],
  start_waiters: Vec<CallId>,
  stop_waiters: Vec<CallId>,
  /// Requests waiting for an answer, by request id.
  requests: HashMap<u64, InFlight>,
  /// Deadlines of the requests that have a timeout.
  deadlines: BTreeSet<(Instant, u64)>,
  next_request_id: u64,
  /// The last snapshot told to the listener.
  snapshot: Snapshot,
}

impl Driver {
  async fn run(
    mut self,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut reports: mpsc::UnboundedReceiver<Report>,
  ) {
    let mut commands_open = true;
    while commands_open || !self.machine.state().is_at_rest() {
      let wake_at = self.next_wake();
      tokio::select! {
        command = commands.recv(), if commands_open => match command {
          Some(command) => self.command(command).await,
          // Nobody can call stop() any more: stop now, and end once at rest.
          None => {
            commands_open = false;
            self.apply(Input::StopRequested).await;
          }
        },
        // The driver holds a sender itself, so this never yields `None`.
        Some(report) = reports.recv() => self.report(report).await,
        () = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
          self.fire_due().await;
        }
      }
      if !self.notices.is_empty() {
        self.listener.notify(std::mem::take(&mut self.notices));
      }
    }
  }

  async fn command(&mut self, command: Command) {
    match command {
      Command::Start(call) => {
        self.start_waiters.push(call);
        self.apply(Input::StartRequested).await;
      }
      Command::Stop(call) => {
        self.stop_waiters.push(call);
        self.apply(Input::StopRequested).await;
      }
      Command::Send { call, json } => {
        if let Err(error) = self.machine.ensure_connected() {
          self.settle(call, Err(error));
        } else {
          self.write(ipc::encode_text(json), Some(call));
        }
      }
      Command::Request {
        call,
        body_json,
        timeout,
      } => {
        if let Err(error) = self.machine.ensure_connected() {
          self.settle(call, Err(error));
          return;
        }
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.requests.insert(id, InFlight { call, timeout });
        if let Some(after) = timeout {
          self.deadlines.insert((Instant::now() + after, id));
        }
        // A failed write needs nothing here: the worker is gone or going, and its end rejects
        // every request in flight.
        self.write(ipc::encode_request(id, &body_json), None);
      }
    }
  }

  async fn report(&mut self, report: Report) {
    match report {
      Report::Messages(messages) => {
        for message in messages {
          let Received { value, json } = match message {
            Ok(received) => received,
            Err(malformed) => {
              self.notify(Notice::Event(Event::Error(malformed)));
              continue;
            }
          };
          match ipc::classify(value) {
            Incoming::User(_) => self.notify(Notice::Message(json)),
            Incoming::Response { id, outcome } => {
              // An answer after its timeout finds nothing: the caller was already told.
              if let Some(request) = self.requests.remove(&id) {
                let result = outcome.map(|result| result.map(|value| value.to_string()));
                self.settle(request.call, result);
              }
            }
            Incoming::Pong | Incoming::NodeInternal => {}
          }
        }
        // Any word from the worker, even one that could not be parsed, shows it is alive.
        self.apply(Input::MessageReceived).await;
      }
      Report::Output(stream, chunk) => self.notify(Notice::Output { stream, chunk }),
      Report::ChannelClosed => self.apply(Input::ChannelClosed).await,
      Report::Exited(status) => {
        // Dropping the worker ends its writer, which settles whatever it still held.
        self.worker = None;
        let status = status.unwrap_or_else(|launcher_gone| {
          self.notify(Notice::Event(Event::Error(launcher_gone)));
          // The launcher SIGKILLs every group when it dies.
          ExitStatus::Signal(Signal::SIGKILL as i32)
        });
        self.apply(Input::Exited(status)).await;
      }
    }
  }

  /// Feeds `input` to the machine and carries out the actions, including those of the inputs
  /// the actions themselves produce (a spawn's outcome).
  async fn apply(&mut self, input: Input) {
    let mut inputs = VecDeque::from([input]);
    while let Some(input) = inputs.pop_front() {
      let answers_start = input == Input::StartRequested;
      let actions = self.machine.handle(input);
      self.publish_snapshot();
      for action in actions {
        match action {
          Action::Spawn => inputs.push_back(self.spawn_worker().await),
          Action::SendPing => {
            self.write(ipc::encode(&ipc::ping()), None);
          }
          Action::SendShutdown => {
            self.write(ipc::encode(&ipc::shutdown()), None);
          }
          Action::KillGroup(signal) => {
            if let Some(worker) = &self.worker {
              worker.group.signal_group(signal);
            }
          }
          Action::SetTimer { timer, after } => {
            self.timers[slot(timer)] = Some(Instant::now() + after);
          }
          Action::ClearTimer(timer) => self.timers[slot(timer)] = None,
          Action::Emit(event) => self.notify(Notice::Event(event)),
          Action::RejectInFlight(error) => {
            self.deadlines.clear();
            for (_, request) in std::mem::take(&mut self.requests) {
              self.settle(request.call, Err(error.clone()));
            }
          }
          Action::ResolveStart => {
            for call in std::mem::take(&mut self.start_waiters) {
              self.settle(call, Ok(None));
            }
          }
          // A start() refused outright (while stopping) is the answer to this call alone;
          // earlier start() calls still wait for the spawn under way.
          Action::RejectStart(error) if answers_start => {
            if let Some(call) = self.start_waiters.pop() {
              self.settle(call, Err(error));
            }
          }
          Action::RejectStart(error) => {
            for call in std::mem::take(&mut self.start_waiters) {
              self.settle(call, Err(error.clone()));
            }
          }
          Action::ResolveStop => {
            for call in std::mem::take(&mut self.stop_waiters) {
              self.settle(call, Ok(None));
            }
          }
        }
      }
    }
  }

  /// Starts a worker with a fresh IPC channel; the outcome is the machine's next input.
  async fn spawn_worker(&mut self) -> Input {
    let spawn_error = |e: io::Error| Error::Spawn {
      errno: e.raw_os_error().unwrap_or(libc::EIO),
      command: self.launch.command.clone(),
      args: self.launch.args.clone(),
    };
    let (ours, theirs) = match StdUnixStream::pair() {
      Ok(pair) => pair,
      Err(e) => return Input::SpawnFailed(spawn_error(e)),
    };
    let channel = match ours
      .set_nonblocking(true)
      .and_then(|()| UnixStream::from_std(ours))
    {
      Ok(channel) => channel,
      Err(e) => return Input::SpawnFailed(spawn_error(e)),
    };
    let stdio = [StdioMode::Ignore, self.stdio, self.stdio];
    // `theirs` travels to the launcher and is closed here once sent, so the worker's exit (or
    // disconnect) reads as EOF on our end.
    let launched = match launch::launch(&self.launch, stdio, vec![theirs.into()]).await {
      Ok(launched) => launched,
      Err(error) => return Input::SpawnFailed(error),
    };
    let pid = launched.pid;
    let group = Arc::new(launched.process);
    let (reader, writer) = channel.into_split();
    let (outgoing, queue) = mpsc::unbounded_channel();
    let (gone_tx, gone) = oneshot::channel();
    tokio::spawn(write_channel(writer, queue, gone, self.listener.clone()));
    tokio::spawn(watch_worker(
      group.clone(),
      reader,
      [launched.stdout, launched.stderr],
      self.reports.clone(),
    ));
    self.worker = Some(Worker {
      group,
      outgoing,
      _gone: gone_tx,
    });
    Input::Spawned { pid }
  }

  /// Queues bytes for the worker's channel. A `send()` without a writer to take it is settled
  /// here as a closed channel.
  fn write(&mut self, bytes: Vec<u8>, settles: Option<CallId>) {
    let queued = match &self.worker {
      Some(worker) => worker.outgoing.send(Outgoing { bytes, settles }).is_ok(),
      None => false,
    };
    if let (false, Some(call)) = (queued, settles) {
      self.settle(call, Err(Error::ChannelClosed));
    }
  }

  /// The earliest armed timer or request deadline.
  fn next_wake(&self) -> Option<Instant> {
    let timers = self.timers.iter().flatten().copied();
    let deadline = self.deadlines.first().map(|&(at, _)| at);
    timers.chain(deadline).min()
  }

  async fn fire_due(&mut self) {
    let now = Instant::now();
    for timer in TIMERS {
      if self.timers[slot(timer)].is_some_and(|at| at <= now) {
        self.timers[slot(timer)] = None;
        self.apply(Input::TimerFired(timer)).await;
      }
    }
    while let Some(&(at, id)) = self.deadlines.first() {
      if at > now {
        break;
      }
      self.deadlines.pop_first();
      if let Some(request) = self.requests.remove(&id) {
        let after = request.timeout.unwrap_or_default();
        self.settle(request.call, Err(Error::RequestTimeout { after }));
      }
    }
  }

  fn publish_snapshot(&mut self) {
    let snapshot = Snapshot {
      state: self.machine.state(),
      pid: self.machine.pid(),
      restart_count: self.machine.restart_count(),
      connected: self.machine.connected(),
    };
    if snapshot != self.snapshot {
      self.snapshot = snapshot;
      self.notify(Notice::Snapshot(snapshot));
    }
  }

  fn settle(&mut self, call: CallId, outcome: Result<Option<String>, Error>) {
    self.notify(Notice::Settled { call, outcome });
  }

  fn notify(&mut self, notice: Notice) {
    self.notices.push(notice);
  }
}

/// Writes queued bytes in order, settling each `send()` once its bytes are written. Ends when
/// the driver drops the worker (or the socket fails), settling everything it still holds as a
/// closed channel.
async fn write_channel(
  mut socket: OwnedWriteHalf,
  mut queue: mpsc::UnboundedReceiver<Outgoing>,
  mut gone: oneshot::Receiver<()>,
  listener: Arc<dyn Listener>,
) {
  let mut batch: Vec<Outgoing> = Vec::new();
  let mut joined = Vec::new();
  loop {
    let first = tokio::select! {
      next = queue.recv() => next,
      _ = &mut gone => None,
    };
    let Some(first) = first else { break };
    let mut size = first.bytes.len();
    batch.push(first);
    while size < WRITE_BATCH {
      let Ok(next) = queue.try_recv() else { break };
      size += next.bytes.len();
      batch.push(next);
    }
    let bytes = if let [only] = batch.as_slice() {
      &only.bytes
    } else {
      joined.clear();
      for outgoing in &batch {
        joined.extend_from_slice(&outgoing.bytes);
      }
      &joined
    };
    let written = tokio::select! {
      result = socket.write_all(bytes) => result.is_ok(),
      // A worker that died with a full socket buffer (or left it to a descendant that does
      // not read) would leave this write pending for ever.
      _ = &mut gone => false,
    };
    let outcome = || {
      if written {
        Ok(None)
      } else {
        Err(Error::ChannelClosed)
      }
    };
    let settled = batch
      .drain(..)
      .filter_map(|outgoing| outgoing.settles)
      .map(|call| Notice::Settled {
        call,
        outcome: outcome(),
      })
      .collect::<Vec<_>>();
    if !settled.is_empty() {
      listener.notify(settled);
    }
    if !written {
      break;
    }
    if joined.capacity() > WRITE_BATCH * 4 {
      joined = Vec::new();
    }
  }
  queue.close();
  let mut settled = Vec::new();
  while let Some(outgoing) = queue.recv().await {
    if let Some(call) = outgoing.settles {
      settled.push(Notice::Settled {
        call,
        outcome: Err(Error::ChannelClosed),
      });
    }
  }
  if !settled.is_empty() {
    listener.notify(settled);
  }
}

/// Reads a worker's channel and output pipes and waits for its exit, reporting each in order.
/// The exit is reported last, once the channel and pipes reached EOF or [`DRAIN_AFTER_EXIT`]
/// passed (a descendant may hold them open).
async fn watch_worker(
  group: Arc<ProcessGroup>,
  mut channel: OwnedReadHalf,
  [mut stdout, mut stderr]: [Option<pipe::Receiver>; 2],
  reports: mpsc::UnboundedSender<Report>,
) {
  let report = |report: Report| {
    // The driver outlives every worker task it started, so this cannot fail in practice.
    let _ = reports.send(report);
  };
  let mut decoder = Decoder::new();
  let mut buf = vec![0u8; READ_CHUNK];
  let mut out_buf = vec![0u8; READ_CHUNK];
  let mut err_buf = vec![0u8; READ_CHUNK];
  let mut channel_open = true;
  let mut exit = None;
  let mut drain_until = None;
  let wait = group.wait();
  tokio::pin!(wait);
  loop {
    if exit.is_some() && !channel_open && stdout.is_none() && stderr.is_none() {
      break;
    }
    tokio::select! {
      read = channel.read(&mut buf), if channel_open => match read {
        Ok(n) if n > 0 => {
          decoder.feed(&buf[..n]);
          let messages: Vec<_> = std::iter::from_fn(|| decoder.next_message()).collect();
          if !messages.is_empty() {
            report(Report::Messages(messages));
          }
        }
        // EOF, or an error that ends the channel all the same.
        _ => {
          channel_open = false;
          report(Report::ChannelClosed);
        }
      },
      chunk = read_some(&mut stdout, &mut out_buf), if stdout.is_some() => match chunk {
        Some(chunk) => report(Report::Output(StreamName::Stdout, chunk)),
        None => stdout = None,
      },
      chunk = read_some(&mut stderr, &mut err_buf), if stderr.is_some() => match chunk {
        Some(chunk) => report(Report::Output(StreamName::Stderr, chunk)),
        None => stderr = None,
      },
      status = &mut wait, if exit.is_none() => {
        exit = Some(status);
        drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
      }
      () = sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => break,
    }
  }
  report(Report::Exited(
    exit.expect("the loop ends only after the exit"),
  ));
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
    };
    let env = with_channel_env(launch).env;
    assert_eq!(
      env,
      [
        ("PATH".to_string(), "/bin".to_string()),
        ("NODE_CHANNEL_FD".to_string(), "3".to_string()),
        (
          "NODE_CHANNEL_SERIALIZATION_MODE".to_string(),
          "json".to_string()
        ),
      ]
    );
  }

  #[test]
  fn every_timer_has_its_own_slot() {
    let slots: BTreeSet<usize> = TIMERS.iter().map(|&t| slot(t)).collect();
    assert_eq!(slots.len(), TIMERS.len());
  }
}
