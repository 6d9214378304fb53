//! The tokio driver: it owns a [`Machine`] and carries out what it decides — starts workers with
//! a Node IPC channel, writes to and reads from that channel, runs the timers, waits for exits —
//! and tells one [`Listener`] everything JavaScript must hear, as [`Notice`]s, in order.
//!
//! Why it is shaped this way:
//! - One task owns the machine, so its inputs are applied one at a time, in the order they
//!   happened. The notices of one step reach the listener in one call, so a state change and
//!   the events it causes are never split between two deliveries.
//! - Messages do not queue behind that task. `send()` writes to the socket at once, from the
//!   caller's thread, when nothing is queued before it — up to 256 KiB, the rest of a larger
//!   message queues for the channel's writer task, as does anything sent while bytes are
//!   queued, so the order is the order of the calls; `request()` registers its id and writes
//!   the same way. (Routing every message through the driver and writer tasks cost two
//!   thread hops per message; writing all of a large message on the caller's thread kept
//!   JavaScript waiting while the kernel copied it.) Each worker's reader task hands messages and request answers to the listener
//!   itself, and tells the machine that the worker is alive only when that matters to it (a
//!   ping awaits its pong, or the restart count is to be reset). A message thus crosses one
//!   socket and one thread hop back to JavaScript, and busy traffic does not wake the driver.
//! - The reader reports in the order things happened: messages and output, then the end of the
//!   channel, then the exit — after a short drain, so nothing a worker wrote before dying
//!   arrives after its 'exit'. Reports need no worker id: a worker's last report is its exit,
//!   and the machine starts the next worker only after that.
//! - Every call that does not finish at once (`start`, `stop`, a queued `send`, `request`) is
//!   settled exactly once by a [`Notice::Settled`], in line with the events: a `start()`
//!   resolves after its 'spawn' event. When a worker goes, its channel settles whatever it still
//!   held, and its requests are rejected, so no call is ever left hanging.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::{sendmsg, setsockopt, sockopt, MsgFlags};
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::unix::pipe;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

use super::machine::{Action, Event, Input, Machine, State, Timer};
use crate::error::Error;
use crate::ipc::{self, Decoder, Incoming, Received};
use crate::kill::Spawned;
use crate::launch::{self, ProcessGroup};
use crate::options::SupervisorPlan;
use crate::vocabulary::exit::ExitStatus;
use crate::vocabulary::launch_spec::LaunchSpec;
use crate::vocabulary::limits::DRAIN_AFTER_EXIT;
use crate::vocabulary::stdio::{StdioMode, StreamName};

/// The worker's end of the IPC socket is its fd 3, as `fork()` would place it with default stdio.
const CHANNEL_FD: &str = "3";

/// The send buffer asked for on both ends of the channel.
const SEND_BUFFER: usize = 4 << 20;

/// The most of a message `send()` writes on the caller's (JavaScript's) thread; the writer task
/// writes the rest, so a 5 MB message does not hold JavaScript up while the kernel copies it.
const DIRECT_WRITE: usize = 256 * 1024;

/// The most read from the channel or a pipe at once.
const READ_CHUNK: usize = 256 * 1024;

/// Identifies one call from JavaScript; its settlement carries the same id.
pub type CallId = u32;

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
  /// A message from the worker, as the JSON text it wrote.
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

/// Where notices go. Called from tokio worker threads and from the thread calling
/// [`Handle::send`]; must not block. Notices that belong together come in one call.
pub trait Listener: Send + Sync + 'static {
  fn notify(&self, notices: Vec<Notice>);
}

/// How a `send()` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
  /// Written to the socket: done.
  Written,
  /// Queued behind earlier bytes; a [`Notice::Settled`] with the call's id follows.
  Queued,
}

/// The caller's side of a driver.
pub struct Handle {
  commands: mpsc::UnboundedSender<Command>,
  connection: Arc<Connection>,
}

impl Handle {
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
    let id = link.next_request_id;
    link.next_request_id += 1;
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

/// Builds the driver of `plan`: the handle commands it; the future, run on a tokio runtime,
/// does the work. It ends once the handle is dropped and the supervisor is at rest (a worker
/// still running then is stopped first).
pub fn driver(
  plan: SupervisorPlan,
  listener: Arc<dyn Listener>,
) -> (Handle, impl Future<Output = ()> + Send) {
  let (commands_tx, commands) = mpsc::unbounded_channel();
  let (reports_tx, reports) = mpsc::unbounded_channel();
  let connection = Arc::new(Connection {
    link: Mutex::new(Link {
      channel: None,
      requests: HashMap::new(),
      next_request_id: 1,
    }),
    wants_sign_of_life: AtomicBool::new(false),
  });
  let driver = Driver {
    machine: Machine::new(plan.policy),
    launch: with_channel_env(plan.launch),
    stdio: plan.stdio,
    listener,
    notices: Vec::new(),
    connection: connection.clone(),
    reports: reports_tx,
    worker: None,
    timers: [None; TIMERS.len()],
    start_waiters: Vec::new(),
    stop_waiters: Vec::new(),
    deadlines: BTreeSet::new(),
    snapshot: Snapshot::IDLE,
  };
  let handle = Handle {
    commands: commands_tx,
    connection,
  };
  (handle, driver.run(commands, reports))
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

/// What the handle asks of the driver task.
#[derive(Debug)]
enum Command {
  Start(CallId),
  Stop(CallId),
  /// Request `id` times out at `at`.
  Deadline {
    id: u64,
    at: Instant,
  },
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

/// What a worker's reader task tells the driver.
enum Report {
  /// Something arrived from the worker.
  Alive,
  ChannelClosed,
  /// `Err` when the launcher died, which takes the worker with it.
  Exited(Result<ExitStatus, Error>),
}

/// The connection to the connected worker, shared by the caller's thread and the driver.
struct Connection {
  link: Mutex<Link>,
  /// Whether the machine has a use for the next sign of life: the restart count is above zero
  /// or a ping awaits its pong. Otherwise readers do not wake the driver for every message.
  wants_sign_of_life: AtomicBool,
}

struct Link {
  /// The connected worker's channel; `None` whenever the machine says no worker is connected.
  channel: Option<Arc<Channel>>,
  /// Requests waiting for an answer, by request id.
  requests: HashMap<u64, InFlight>,
  next_request_id: u64,
}

struct InFlight {
  call: CallId,
  timeout: Option<Duration>,
}

impl Connection {
  fn lock(&self) -> MutexGuard<'_, Link> {
    lock(&self.link)
  }
}

/// Locks `mutex`, also after a panic elsewhere: the data guarded here stays consistent between
/// statements, and a poisoned lock would otherwise fail every later call.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex
    .lock()
    .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One worker's IPC socket and the bytes waiting to be written to it, in order.
struct Channel {
  socket: UnixStream,
  pending: Mutex<Pending>,
  /// Wakes the writer task: bytes were queued, or the channel closed.
  wake: Notify,
}

#[derive(Default)]
struct Pending {
  queue: VecDeque<Outgoing>,
  closed: bool,
}

/// One message for the channel: its line, sent with the terminator after it, of which
/// `written` bytes already are; and the `send()` it settles.
struct Outgoing {
  line: Vec<u8>,
  written: usize,
  settles: Option<CallId>,
}

impl Outgoing {
  fn is_done(&self) -> bool {
    self.written == self.line.len() + ipc::TERMINATOR.len()
  }

  /// One non-blocking write of what is left, at most `limit` bytes of the line; a full socket
  /// is `WouldBlock`. The terminator goes in the same system call as the end of the line.
  fn send_once(&mut self, fd: RawFd, limit: usize) -> io::Result<usize> {
    let (line, terminator) = match self.line.get(self.written..) {
      Some(rest) => (rest, ipc::TERMINATOR),
      None => (&[][..], &ipc::TERMINATOR[self.written - self.line.len()..]),
    };
    let (line, terminator) = if line.len() > limit {
      (&line[..limit], &[][..])
    } else {
      (line, terminator)
    };
    let slices = [IoSlice::new(line), IoSlice::new(terminator)];
    // MSG_NOSIGNAL: a closed peer is an EPIPE error, not a SIGPIPE.
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let sent = loop {
      match sendmsg::<()>(fd, &slices, &[], flags, None) {
        Err(Errno::EINTR) => {}
        other => break other.map_err(io::Error::from)?,
      }
    };
    self.written += sent;
    Ok(sent)
  }
}

impl Channel {
  /// Writes at once what the socket takes (up to [`DIRECT_WRITE`]) when nothing is queued
  /// before it; queues the rest for the writer task.
  fn write(&self, line: Vec<u8>, settles: Option<CallId>) -> Result<Sent, Error> {
    let mut pending = lock(&self.pending);
    if pending.closed {
      return Err(Error::ChannelClosed);
    }
    let mut outgoing = Outgoing {
      line,
      written: 0,
      settles,
    };
    if pending.queue.is_empty() {
      let fd = self.socket.as_raw_fd();
      let mut budget = DIRECT_WRITE;
      while !outgoing.is_done() && budget > 0 {
        match outgoing.send_once(fd, budget) {
          Ok(sent) => budget = budget.saturating_sub(sent),
          Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
          Err(_) => {
            // The worker's end is gone; its reader sees EOF and the driver detaches it.
            pending.closed = true;
            self.wake.notify_one();
            return Err(Error::ChannelClosed);
          }
        }
      }
      if outgoing.is_done() {
        return Ok(Sent::Written);
      }
    }
    pending.queue.push_back(outgoing);
    self.wake.notify_one();
    Ok(Sent::Queued)
  }

  /// Closes the channel for writing; whatever was still queued is settled as not sent.
  fn close(&self) -> Vec<Notice> {
    let mut pending = lock(&self.pending);
    pending.closed = true;
    self.wake.notify_one();
    unsent(&mut pending.queue)
  }
}

/// Settlements for the `send()`s among `queue`'s bytes, which will never be written.
fn unsent(queue: &mut VecDeque<Outgoing>) -> Vec<Notice> {
  queue
    .drain(..)
    .filter_map(|outgoing| outgoing.settles)
    .map(|call| Notice::Settled {
      call,
      outcome: Err(Error::ChannelClosed),
    })
    .collect()
}

/// Writes what [`Channel::write`] queued, waiting for the socket to take it, and settles each
/// queued `send()` once its last byte is written. Ends when the channel closes.
async fn write_queued(channel: Arc<Channel>, listener: Arc<dyn Listener>) {
  loop {
    let wake = channel.wake.notified();
    let mut settled = Vec::new();
    let waiting = {
      let mut pending = lock(&channel.pending);
      if pending.closed {
        settled = unsent(&mut pending.queue);
        None
      } else {
        let fd = channel.socket.as_raw_fd();
        while let Some(front) = pending.queue.front_mut() {
          // Through tokio, so that a full socket clears the readiness waited for below.
          match channel
            .socket
            .try_io(Interest::WRITABLE, || front.send_once(fd, usize::MAX))
          {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
              pending.closed = true;
              break;
            }
          }
          if !front.is_done() {
            continue;
          }
          if let Some(call) = front.settles {
            settled.push(Notice::Settled {
              call,
              outcome: Ok(None),
            });
          }
          pending.queue.pop_front();
        }
        if pending.closed {
          settled.extend(unsent(&mut pending.queue));
        }
        (!pending.closed).then_some(!pending.queue.is_empty())
      }
    };
    if !settled.is_empty() {
      listener.notify(settled);
    }
    match waiting {
      None => return,
      // The socket is full: wait until it takes more (or the channel closes).
      Some(true) => {
        tokio::select! {
          _ = channel.socket.ready(Interest::WRITABLE) => {}
          () = wake => {}
        }
      }
      Some(false) => wake.await,
    }
  }
}

/// The live worker as the driver holds it.
struct Worker {
  group: Arc<ProcessGroup>,
  channel: Arc<Channel>,
}

struct Driver {
  machine: Machine,
  launch: LaunchSpec,
  stdio: StdioMode,
  listener: Arc<dyn Listener>,
  /// Notices of the current step, handed to the listener together when it ends.
  notices: Vec<Notice>,
  connection: Arc<Connection>,
  reports: mpsc::UnboundedSender<Report>,
  worker: Option<Worker>,
  timers: [Option<Instant>; TIMERS.len()],
  start_waiters: Vec<CallId>,
  stop_waiters: Vec<CallId>,
  /// Deadlines of the requests that have a timeout.
  deadlines: BTreeSet<(Instant, u64)>,
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
      Command::Deadline { id, at } => {
        self.deadlines.insert((at, id));
      }
    }
  }

  async fn report(&mut self, report: Report) {
    match report {
      Report::Alive => self.apply(Input::MessageReceived).await,
      Report::ChannelClosed => self.apply(Input::ChannelClosed).await,
      Report::Exited(status) => {
        let status = status.unwrap_or_else(|launcher_gone| {
          self.notify(Notice::Event(Event::Error(launcher_gone)));
          // The launcher SIGKILLs every group when it dies.
          ExitStatus::Signal(Signal::SIGKILL as i32)
        });
        let gone = self.worker.take();
        self.apply(Input::Exited(status)).await;
        // Also a channel the machine never opened to callers: it ends the writer task.
        if let Some(gone) = gone {
          let unsent = gone.channel.close();
          self.notices.extend(unsent);
        }
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
      self.sync_connection();
      for action in actions {
        match action {
          Action::Spawn => inputs.push_back(self.spawn_worker().await),
          Action::SendPing => {
            // Before the ping is written: its pong may be read before this task runs again.
            self
              .connection
              .wants_sign_of_life
              .store(true, Ordering::Release);
            self.write_control(ipc::encode(&ipc::ping()));
          }
          Action::SendShutdown => self.write_control(ipc::encode(&ipc::shutdown())),
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
            let requests = std::mem::take(&mut self.connection.lock().requests);
            for (_, request) in requests {
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
      let awaiting_pong = self.timers[slot(Timer::HealthDeadline)].is_some();
      let wanted = awaiting_pong || self.machine.restart_count() > 0;
      self
        .connection
        .wants_sign_of_life
        .store(wanted, Ordering::Release);
    }
  }

  /// Makes the shared connection follow the machine: the worker's channel is open to callers
  /// exactly while the machine says it is connected. Runs before the actions of an input, so a
  /// request that slips in before the channel closes is among those the actions reject.
  fn sync_connection(&mut self) {
    let connected = self.machine.connected();
    let mut link = self.connection.lock();
    match (&self.worker, link.channel.is_some()) {
      (Some(worker), false) if connected => link.channel = Some(worker.channel.clone()),
      (_, true) if !connected => {
        let channel = link.channel.take().expect("checked above");
        drop(link);
        let unsent = channel.close();
        self.notices.extend(unsent);
      }
      _ => {}
    }
  }

  /// Writes a ping or the shutdown message; the machine asks only while connected.
  fn write_control(&self, bytes: Vec<u8>) {
    if let Some(channel) = &self.connection.lock().channel {
      // A failed write needs nothing here: the reader sees the channel's end.
      let _ = channel.write(bytes, None);
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
    // Roomier send buffers let a large message cross in one write each way instead of in
    // pieces, each a wake-up of the other side. The kernel caps them (net.core.wmem_max); any
    // size works.
    for end in [ours.as_fd(), theirs.as_fd()] {
      let _ = setsockopt(&end, sockopt::SndBuf, &SEND_BUFFER);
    }
    let socket = match ours
      .set_nonblocking(true)
      .and_then(|()| UnixStream::from_std(ours))
    {
      Ok(socket) => socket,
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
    let channel = Arc::new(Channel {
      socket,
      pending: Mutex::new(Pending::default()),
      wake: Notify::new(),
    });
    tokio::spawn(write_queued(channel.clone(), self.listener.clone()));
    tokio::spawn(
      WorkerWatch {
        group: group.clone(),
        channel: channel.clone(),
        connection: self.connection.clone(),
        listener: self.listener.clone(),
        reports: self.reports.clone(),
      }
      .run([launched.stdout, launched.stderr]),
    );
    self.worker = Some(Worker { group, channel });
    Input::Spawned { pid }
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
      // An answer that came first already took it out.
      let request = self.connection.lock().requests.remove(&id);
      if let Some(request) = request {
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
        read = read_socket(&self.channel.socket, &mut buf), if channel_open => match read {
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
        status = &mut wait, if exit.is_none() => {
          exit = Some(status);
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
  /// settlement of their request; then tells the driver the worker is alive.
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
          if let Some(request) = self.connection.lock().requests.remove(&id) {
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
    if any
      && self
        .connection
        .wants_sign_of_life
        .swap(false, Ordering::AcqRel)
    {
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

/// Reads what the socket has; `None` at EOF or on an error, which ends the channel all the same.
async fn read_socket(socket: &UnixStream, buf: &mut [u8]) -> Option<usize> {
  loop {
    if socket.readable().await.is_err() {
      return None;
    }
    match socket.try_read(buf) {
      Ok(0) => return None,
      Ok(n) => return Some(n),
      Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
      }
      Err(_) => return None,
    }
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

  #[test]
  fn every_timer_has_its_own_slot() {
    let slots: BTreeSet<usize> = TIMERS.iter().map(|&t| slot(t)).collect();
    assert_eq!(slots.len(), TIMERS.len());
  }
}
