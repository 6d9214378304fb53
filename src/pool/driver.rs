//! The pool's I/O: it owns the [`Machine`] and carries out what it decides — spawns workers
//! with the Supervisor's [`WorkerSpec`], writes requests, cancels, pings and shutdowns to their
//! channels, signals their process groups, runs the timers, samples memory — and tells one
//! [`Listener`] everything JavaScript must hear, in order.
//!
//! Why it is shaped this way:
//! - The machine and everything the actions touch sit in one [`Core`] behind one lock, and
//!   whoever learns something feeds it in right there: JavaScript's thread for a request, an
//!   abort or a close; a worker's reader for an answer, a message or a death; the driver task
//!   for a timer or a memory sample. A request is written to its worker from the caller's
//!   thread, and the next queued request from the reader that took the answer, so a request
//!   costs no hop through a task on either way — the hot path is the Supervisor's.
//! - Inputs are applied one at a time under the lock, so the machine sees them in an order
//!   that happened, and the notices of one step are handed to the listener before the lock is
//!   released, so they reach JavaScript in the order they were decided.
//! - The driver task does only what needs waiting: it sleeps until the earliest timer (one
//!   `sleep_until` on the first of a sorted set; whoever arms an earlier one wakes it), starts
//!   spawns, and reads group RSS from /proc on a blocking thread. Timers fire one at a time
//!   under the lock, taken out of the set as they fire, so a timer cleared or re-armed by an
//!   earlier step is never delivered stale (the machine's contract asks for that).
//! - A worker is watched only once the machine knows it is up ([`Watch::start`] after
//!   `Spawned`), so its answers and its exit never arrive before its spawn.
//! - Request bodies stay here, by id, until the request is settled: a request re-dispatched
//!   after a crash is written again from them. Answers are held only for the step that settles
//!   them.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

use super::machine::{
  Action, Event, ExitStatus, Input, Machine, Rejection, RequestId, StartError, Timer, WorkerKey,
};
use super::memory;
use super::notice::{CallId, Listener, Notice, Snapshot};
use super::options::PoolPlan;
use super::policy::RequestLimits;
use super::stats::{Latency, PoolStats, WorkerRow};
use crate::error::Error;
use crate::ipc::{Frame, Payload, Received, Serialization};
use crate::kill::Spawned;
use crate::launch::ProcessGroup;
use crate::supervisor::channel::Channel;
use crate::supervisor::notice::{ExitAccount, Notice as SupervisorNotice};
use crate::supervisor::worker::{ChannelHost, Watch, Watcher, Worker, WorkerSpec};
use crate::vocabulary::confinement::ResourceLimits;
use crate::vocabulary::exit::{Reaped, ResourceUsage};
use crate::vocabulary::signals;
use crate::vocabulary::stdio::{StdioMode, StreamName};

/// The most of a worker's stderr kept for `ERR_WORKER_EXITED`'s `stderrTail`.
const STDERR_TAIL: usize = 4 * 1024;

/// Builds the core of the pool of `plan`, shared with its [`super::handle::Handle`], and the
/// driver task, to run on a tokio runtime. `seed` picks the recycle jitter. The task ends once
/// the handle is dropped and the pool is at rest (a pool still running then is closed, with
/// drain).
pub fn driver(
  plan: PoolPlan,
  seed: u64,
  listener: Arc<dyn Listener>,
  host: Option<Arc<dyn ChannelHost>>,
) -> (Arc<Shared>, impl Future<Output = ()> + Send) {
  let backlog = listener.backlog();
  let memory_check = plan
    .policy
    .max_memory
    .map(|_| plan.policy.memory_check_interval);
  let shared = Arc::new(Shared {
    core: Mutex::new(Core {
      machine: Machine::new(plan.policy, seed),
      listener,
      keeps_stderr: plan.stdio == StdioMode::Pipe,
      serialization: plan.serialization,
      limits: plan.launch.confinement.limits,
      exiting: None,
      last_exit_usage: HashMap::new(),
      workers: HashMap::new(),
      spawning: 0,
      spawns: Vec::new(),
      requests: HashMap::new(),
      answer: None,
      spawn_error: None,
      admitting: None,
      refused: None,
      timers: Timers::default(),
      driver_wakes_at: None,
      start_waiters: Vec::new(),
      close_waiters: Vec::new(),
      latency: Latency::default(),
      aborted_before_call: 0,
      notices: Vec::new(),
      snapshot: Snapshot::IDLE,
      handle_gone: false,
    }),
    wake: Notify::new(),
  });
  let spec = Arc::new(WorkerSpec::new(
    plan.launch,
    plan.stdio,
    plan.serialization,
    plan.max_message_size,
    backlog,
    host,
  ));
  (shared.clone(), run(shared, spec, memory_check))
}

/// What every thread that feeds the pool shares.
pub struct Shared {
  core: Mutex<Core>,
  /// Wakes the driver task: an earlier timer, a spawn to start, or the end.
  wake: Notify,
}

impl Shared {
  /// Runs `step` on the locked core; then, still under the lock, hands its notices to the
  /// listener and wakes the driver task if it has something new to do.
  pub fn with<T>(&self, step: impl FnOnce(&mut Core) -> T) -> T {
    let mut core = self.lock();
    let result = step(&mut core);
    core.publish_snapshot();
    if !core.notices.is_empty() {
      let notices = std::mem::take(&mut core.notices);
      core.listener.notify(notices);
    }
    if core.driver_must_look() {
      self.wake.notify_one();
    }
    result
  }

  fn lock(&self) -> MutexGuard<'_, Core> {
    // A panic elsewhere leaves the core consistent between inputs; keep serving.
    self
      .core
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }
}

/// The machine and everything its actions need.
pub struct Core {
  machine: Machine,
  listener: Arc<dyn Listener>,
  /// stderr is piped, so a dead worker's last stderr output can be shown.
  keeps_stderr: bool,
  serialization: Serialization,
  /// The workers' limits, to tell which one ended a worker.
  limits: ResourceLimits,
  /// The account of the worker whose exit is being applied, for its 'exit' and 'crashed'.
  exiting: Option<ExitAccount>,
  /// What the last process that exited in each slot used, by slot index.
  last_exit_usage: HashMap<usize, ResourceUsage>,
  workers: HashMap<WorkerKey, Running>,
  /// Spawns asked for and not answered yet.
  spawning: usize,
  /// Spawns the driver task has yet to start.
  spawns: Vec<(WorkerKey, usize)>,
  requests: HashMap<RequestId, Pending>,
  /// The answer being fed as `Answered`, for the `Resolve` or `Reject` it causes.
  answer: Option<Result<Option<Payload>, Error>>,
  /// The error of the spawn being fed as `SpawnFailed`.
  spawn_error: Option<Error>,
  /// The request being admitted: a rejection of it on admission goes back to its caller
  /// (`refused`) instead of into a notice.
  admitting: Option<RequestId>,
  refused: Option<Error>,
  timers: Timers,
  /// When the driver task will next wake by itself.
  driver_wakes_at: Option<Instant>,
  start_waiters: Vec<CallId>,
  close_waiters: Vec<CallId>,
  latency: Latency,
  /// Requests refused because their signal had fired before the call; they never reached the
  /// machine, and `stats()` counts them among the aborted.
  aborted_before_call: u64,
  /// Notices of the current step.
  notices: Vec<Notice>,
  /// The last snapshot told to the listener.
  snapshot: Snapshot,
  /// The handle was dropped: nobody can call the pool any more.
  handle_gone: bool,
}

/// A spawned worker, until it is reaped.
struct Running {
  pid: u32,
  group: Arc<ProcessGroup>,
  channel: Arc<Channel>,
  since: Instant,
  rss: Option<u64>,
  /// Set when it exited, with stderr piped.
  stderr_tail: Option<String>,
}

/// An admitted request, until it is settled.
struct Pending {
  /// The request as written to a worker, again after a crash.
  frame: Frame,
  limits: RequestLimits,
  since: Instant,
}

impl Core {
  pub fn start(&mut self, call: CallId) {
    self.start_waiters.push(call);
    self.apply(Input::Start);
  }

  /// Admits request `id` with `body` (see [`Serialization::request`]); `Err` when it is
  /// refused at once (queue full, closed, exhausted, a body that is no request envelope).
  pub fn request(
    &mut self,
    id: RequestId,
    body: &[u8],
    limits: RequestLimits,
  ) -> Result<(), Error> {
    let frame = self.serialization.request(id.0, body)?;
    let since = Instant::now();
    self.requests.insert(
      id,
      Pending {
        frame,
        limits,
        since,
      },
    );
    self.admitting = Some(id);
    self.apply(Input::Request { id, limits });
    self.admitting = None;
    self.refused.take().map_or(Ok(()), Err)
  }

  /// A request whose signal fired before the call: refused, and counted like any abort.
  pub fn refuse_aborted(&mut self) -> Error {
    self.aborted_before_call += 1;
    Error::Aborted
  }

  pub fn abort(&mut self, id: RequestId) {
    self.apply(Input::Abort(id));
  }

  /// `call` is settled once the pool is closed; `None` when nobody waits.
  pub fn close(&mut self, call: Option<CallId>, drain: bool) {
    self.close_waiters.extend(call);
    self.apply(Input::Close { drain });
  }

  pub fn snapshot(&self) -> Snapshot {
    self.snapshot
  }

  pub fn state(&self) -> super::machine::State {
    self.machine.state()
  }

  pub fn size(&self) -> usize {
    self.machine.size()
  }

  pub fn stats(&self) -> PoolStats {
    let mut machine = self.machine.stats();
    machine.rejected.aborted += self.aborted_before_call;
    machine.failed += self.aborted_before_call;
    let workers = machine
      .workers
      .iter()
      .map(|row| {
        let running = row.key.and_then(|key| self.workers.get(&key));
        WorkerRow {
          stats: row.clone(),
          rss: running.and_then(|worker| worker.rss),
          uptime: running.map(|worker| worker.since.elapsed()),
          last_exit_usage: self.last_exit_usage.get(&row.worker).copied(),
        }
      })
      .collect();
    PoolStats {
      machine,
      latency: self.latency.percentiles(),
      workers,
    }
  }

  pub fn handle_dropped(&mut self) {
    self.handle_gone = true;
    self.apply(Input::Close { drain: true });
  }

  /// Feeds `input` to the machine and carries out its actions, in order.
  fn apply(&mut self, input: Input) {
    for action in self.machine.handle(input) {
      self.carry_out(action);
    }
  }

  fn carry_out(&mut self, action: Action) {
    match action {
      Action::Spawn { worker, index } => {
        self.spawning += 1;
        self.spawns.push((worker, index));
      }
      Action::Dispatch { worker, id } => {
        if let Some(request) = self.requests.get(&id) {
          self.write(worker, request.frame.clone());
        }
      }
      Action::SendCancel { worker, id } => self.write(worker, self.serialization.cancel(id.0)),
      Action::SendPing(worker) => self.write(worker, self.serialization.ping()),
      Action::SendShutdown(worker) => self.write(worker, self.serialization.shutdown()),
      Action::Signal { worker, signal } => {
        if let Some(running) = self.workers.get(&worker) {
          running.group.signal_group(signal);
        }
      }
      Action::SetTimer { timer, after } => self.timers.set(timer, Instant::now() + after),
      Action::ClearTimer(timer) => self.timers.clear(timer),
      Action::Resolve(id) => {
        if let Some(request) = self.requests.remove(&id) {
          self.latency.record(request.since.elapsed());
        }
        let outcome = self.answer.take().unwrap_or(Ok(None));
        self.settle_request(id, outcome);
      }
      Action::Reject { id, reason } => {
        let limits = self.requests.remove(&id).map(|request| request.limits);
        let error = self.rejection_error(reason, limits);
        self.settle_request(id, Err(error));
      }
      // Shown as the 'error' with what the spawn failed with.
      Action::Emit(Event::SpawnFailed { .. }) => {
        if let Some(error) = self.spawn_error.clone() {
          self.notices.push(Notice::Error(error));
        }
      }
      // Only an exit makes the machine emit these, so its account is at hand.
      Action::Emit(event @ (Event::Exit { .. } | Event::Crashed { .. })) => {
        let account = self.exiting.unwrap_or_default();
        self.notices.push(Notice::Ended { event, account });
      }
      Action::Emit(event) => self.notices.push(Notice::Event(event)),
      Action::StartSettled(outcome) => {
        let outcome = outcome.map(|()| None).map_err(|error| match error {
          StartError::SpawnFailed => self.spawn_error.clone().unwrap_or(Error::PoolClosed),
          StartError::Closed => Error::PoolClosed,
          StartError::Exhausted => Error::PoolExhausted,
        });
        for call in std::mem::take(&mut self.start_waiters) {
          self.notices.push(Notice::Settled {
            call,
            outcome: outcome.clone(),
          });
        }
      }
      Action::CloseSettled => {
        for call in std::mem::take(&mut self.close_waiters) {
          self.notices.push(Notice::Settled {
            call,
            outcome: Ok(None),
          });
        }
      }
    }
  }

  /// Writes one message to the worker's channel. A write that fails needs nothing here: the
  /// worker's reader sees the channel's end and reports it.
  fn write(&self, worker: WorkerKey, frame: Frame) {
    if let Some(running) = self.workers.get(&worker) {
      let _ = running.channel.write(frame, None);
    }
  }

  fn settle_request(&mut self, id: RequestId, outcome: Result<Option<Payload>, Error>) {
    match outcome {
      Err(error) if self.admitting == Some(id) => self.refused = Some(error),
      outcome => self.notices.push(Notice::Settled {
        call: id.0,
        outcome,
      }),
    }
  }

  fn rejection_error(&mut self, reason: Rejection, limits: Option<RequestLimits>) -> Error {
    match reason {
      Rejection::QueueFull => Error::PoolQueueFull,
      Rejection::QueueTimeout => Error::PoolQueueTimeout {
        after: limits.and_then(|l| l.queue_timeout).unwrap_or_default(),
      },
      Rejection::Timeout => Error::RequestTimeout {
        after: limits.and_then(|l| l.timeout).unwrap_or_default(),
      },
      Rejection::Aborted => Error::Aborted,
      Rejection::WorkerExited {
        worker,
        pid,
        status,
        attempts,
      } => {
        let (exit_code, signal) = match status {
          ExitStatus::Code(code) => (Some(code), None),
          ExitStatus::Signal(signo) => (None, Some(signals::name_of(signo))),
        };
        Error::PoolWorkerExited {
          pid,
          exit_code,
          signal,
          attempts,
          stderr_tail: self
            .workers
            .get(&worker)
            .and_then(|running| running.stderr_tail.clone()),
        }
      }
      Rejection::WorkerError => match self.answer.take() {
        Some(Err(error)) => error,
        _ => Error::WorkerRequestFailed {
          message: "The worker answered with an error".into(),
          code: None,
        },
      },
      Rejection::Exhausted => Error::PoolExhausted,
      Rejection::Closed => Error::PoolClosed,
    }
  }

  fn publish_snapshot(&mut self) {
    let snapshot = Snapshot {
      state: self.machine.state(),
      processes: self.spawning > 0 || !self.workers.is_empty(),
    };
    if snapshot != self.snapshot {
      self.snapshot = snapshot;
      self.notices.push(Notice::Snapshot(snapshot));
    }
  }

  /// Whether the driver task must look again now: a spawn to start, a timer earlier than it
  /// sleeps, or its end.
  fn driver_must_look(&self) -> bool {
    let earlier_timer = match (self.timers.next(), self.driver_wakes_at) {
      (Some(timer), Some(wake)) => timer < wake,
      (Some(_), None) => true,
      (None, _) => false,
    };
    !self.spawns.is_empty() || earlier_timer || self.is_finished()
  }

  fn is_finished(&self) -> bool {
    self.handle_gone && self.snapshot.is_at_rest()
  }

  fn fire_due(&mut self) {
    let now = Instant::now();
    // One at a time: a timer cleared by an earlier one's actions is gone from the set.
    while let Some(timer) = self.timers.pop_due(now) {
      self.apply(Input::TimerFired(timer));
    }
  }

  /// A spawn's outcome; a spawned worker is watched from here on.
  fn spawned(
    &mut self,
    shared: &Arc<Shared>,
    key: WorkerKey,
    index: usize,
    outcome: Result<(Worker, Watch), Error>,
  ) {
    self.spawning -= 1;
    match outcome {
      Ok((worker, watch)) => {
        let pid = worker.pid;
        self.workers.insert(
          key,
          Running {
            pid,
            group: worker.group,
            channel: worker.channel,
            since: Instant::now(),
            rss: None,
            stderr_tail: None,
          },
        );
        self.apply(Input::Spawned { worker: key, pid });
        watch.start(Arc::new(PoolWatch {
          shared: shared.clone(),
          key,
          index,
          pid,
          stderr_tail: self.keeps_stderr.then(|| Mutex::new(Vec::new())),
        }));
      }
      Err(error) => {
        self.spawn_error = Some(error);
        self.apply(Input::SpawnFailed { worker: key });
        self.spawn_error = None;
      }
    }
  }

  fn answered(&mut self, key: WorkerKey, id: u64, outcome: Result<Option<Payload>, Error>) {
    let ok = outcome.is_ok();
    self.answer = Some(outcome);
    self.apply(Input::Answered {
      worker: key,
      id: RequestId(id),
      ok,
    });
    // A late or unknown answer settles nothing.
    self.answer = None;
  }

  /// Worker `key` of slot `index` was reaped (or its launcher died).
  fn exited(
    &mut self,
    key: WorkerKey,
    index: usize,
    reaped: Result<Reaped, Error>,
    stderr_tail: Option<String>,
  ) {
    let (status, account) = match reaped {
      Ok(reaped) => {
        self.last_exit_usage.insert(index, reaped.usage);
        (reaped.status, ExitAccount::of(&reaped, &self.limits))
      }
      Err(launcher_gone) => {
        self.last_exit_usage.remove(&index);
        self.notices.push(Notice::Error(launcher_gone));
        // The launcher SIGKILLs every group when it dies.
        let killed = ExitStatus::Signal(Signal::SIGKILL as i32);
        (killed, ExitAccount::default())
      }
    };
    if let Some(running) = self.workers.get_mut(&key) {
      running.stderr_tail = stderr_tail;
    }
    self.exiting = Some(account);
    self.apply(Input::Exited {
      worker: key,
      status,
    });
    self.exiting = None;
    if let Some(gone) = self.workers.remove(&key) {
      // Ends its writer task; the pool queues no send() that this could settle.
      let _: Vec<SupervisorNotice> = gone.channel.close();
    }
  }
}

/// The driver's timers: each armed at most once, the earliest first.
#[derive(Default)]
struct Timers {
  by_time: BTreeSet<(Instant, Timer)>,
  by_timer: HashMap<Timer, Instant>,
}

impl Timers {
  fn set(&mut self, timer: Timer, at: Instant) {
    if let Some(old) = self.by_timer.insert(timer, at) {
      self.by_time.remove(&(old, timer));
    }
    self.by_time.insert((at, timer));
  }

  fn clear(&mut self, timer: Timer) {
    if let Some(at) = self.by_timer.remove(&timer) {
      self.by_time.remove(&(at, timer));
    }
  }

  fn next(&self) -> Option<Instant> {
    self.by_time.first().map(|&(at, _)| at)
  }

  /// Disarms and returns the earliest timer due by `now`.
  fn pop_due(&mut self, now: Instant) -> Option<Timer> {
    let &(at, timer) = self.by_time.first()?;
    if at > now {
      return None;
    }
    self.by_time.pop_first();
    self.by_timer.remove(&timer);
    Some(timer)
  }
}

/// The driver task: sleeps until the earliest timer, starts spawns, samples memory; ends once
/// the handle is gone and the pool is at rest.
async fn run(shared: Arc<Shared>, spec: Arc<WorkerSpec>, memory_check: Option<Duration>) {
  let mut next_sample = memory_check.map(|every| Instant::now() + every);
  loop {
    let (wake_at, spawns, finished) = shared.with(|core| {
      let wake_at = core.timers.next();
      core.driver_wakes_at = wake_at;
      (
        wake_at,
        std::mem::take(&mut core.spawns),
        core.is_finished(),
      )
    });
    for (key, index) in spawns {
      tokio::spawn(spawn_worker(shared.clone(), spec.clone(), key, index));
    }
    if finished {
      return;
    }
    tokio::select! {
      () = shared.wake.notified() => {}
      () = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
        shared.with(Core::fire_due);
      }
      () = sleep_until(next_sample.unwrap_or_else(Instant::now)), if next_sample.is_some() => {
        sample_memory(&shared).await;
        next_sample = memory_check.map(|every| Instant::now() + every);
      }
    }
  }
}

async fn spawn_worker(shared: Arc<Shared>, spec: Arc<WorkerSpec>, key: WorkerKey, index: usize) {
  let outcome = spec.spawn().await;
  shared.with(|core| core.spawned(&shared, key, index, outcome));
}

/// Reads the RSS of every worker's process group off the caller's thread, and feeds it in.
async fn sample_memory(shared: &Arc<Shared>) {
  let groups: Vec<(WorkerKey, u32)> = shared.with(|core| {
    core
      .workers
      .iter()
      .map(|(&key, running)| (key, running.pid))
      .collect()
  });
  if groups.is_empty() {
    return;
  }
  // A worker leads its own group, so its pid is the group's id.
  let ids: Vec<u32> = groups.iter().map(|&(_, pid)| pid).collect();
  let Ok(sums) = tokio::task::spawn_blocking(move || memory::group_rss(&ids)).await else {
    return;
  };
  shared.with(|core| {
    for (key, pid) in groups {
      let Some(&bytes) = sums.get(&pid) else {
        continue;
      };
      if let Some(running) = core.workers.get_mut(&key) {
        running.rss = Some(bytes);
        core.apply(Input::Rss { worker: key, bytes });
      }
    }
  });
}

/// The pool's watcher of one worker: feeds what it says into the core as it comes.
struct PoolWatch {
  shared: Arc<Shared>,
  key: WorkerKey,
  index: usize,
  pid: u32,
  /// The last [`STDERR_TAIL`] bytes of its stderr, when stderr is piped.
  stderr_tail: Option<Mutex<Vec<u8>>>,
}

impl Watcher for PoolWatch {
  /// Answers go to the machine; the user's messages to JavaScript; and anything that is not
  /// an answer is a sign of life (one per read is enough).
  fn messages(&self, messages: Vec<Result<Received, Error>>) {
    self.shared.with(|core| {
      let mut alive = false;
      for message in messages {
        match message {
          Ok(Received::Response { id, outcome }) => core.answered(self.key, id, outcome),
          Ok(Received::User(payload)) => {
            alive = true;
            core.notices.push(Notice::Message {
              worker: self.index,
              pid: self.pid,
              payload,
            });
          }
          Ok(_) => alive = true,
          Err(malformed) => {
            alive = true;
            core.notices.push(Notice::Error(malformed));
          }
        }
      }
      if alive {
        core.apply(Input::SignOfLife { worker: self.key });
      }
    });
  }

  fn output(&self, stream: StreamName, chunk: Vec<u8>) {
    if let (StreamName::Stderr, Some(tail)) = (stream, &self.stderr_tail) {
      let mut tail = tail.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
      tail.extend_from_slice(&chunk);
      let excess = tail.len().saturating_sub(STDERR_TAIL);
      tail.drain(..excess);
    }
    self.shared.with(|core| {
      core.notices.push(Notice::Output {
        worker: self.index,
        pid: self.pid,
        stream,
        chunk,
      })
    });
  }

  fn sends_settled(&self, _settled: Vec<SupervisorNotice>) {
    // The pool writes with no send() call to settle, so nothing is ever queued that settles
    // one.
  }

  fn channel_closed(&self) {
    self
      .shared
      .with(|core| core.apply(Input::ChannelClosed { worker: self.key }));
  }

  fn exited(&self, reaped: Result<Reaped, Error>) {
    let tail = self.stderr_tail.as_ref().map(|tail| {
      let bytes = std::mem::take(&mut *tail.lock().unwrap_or_else(|p| p.into_inner()));
      String::from_utf8_lossy(&bytes).into_owned()
    });
    self
      .shared
      .with(|core| core.exited(self.key, self.index, reaped, tail));
  }
}

#[cfg(test)]
mod tests {
  //! The driver seen through its listener, as JavaScript sees it, with real Node workers
  //! started by the launcher, speaking Node's IPC protocol by hand (no helper library).

  use super::*;
  use crate::pool::handle::{self, Handle};
  use crate::pool::options::{parse_pool, parse_request};
  use crate::test_support::{block_on, launcher_in_place, living_members};
  use crate::vocabulary::value::Value;

  /// How long any one expected notice may take on a busy machine.
  const WAIT: Duration = Duration::from_secs(20);

  /// A worker answering `{ op: 'echo' }` with its pid, `{ op: 'sleep', ms }` after a while,
  /// dying on `{ op: 'crash' }` (after a word on stderr) and never answering `{ op: 'hang' }`.
  /// With `ANSWER_CANCEL` set it answers a cancel with an error response.
  const WORKER: &str = r#"
    const answer = (id, result) => process.send({ tethered: 'response', id, result: { pid: process.pid, result } })
    process.on('message', (m) => {
      if (m.type === 'shutdown') process.exit(0)
      if (m.tethered === 'cancel' && process.env.ANSWER_CANCEL)
        process.send({ tethered: 'response', id: m.id, error: { message: 'cancelled' } })
      if (m.tethered !== 'request') return
      const body = m.body
      if (body.op === 'echo') answer(m.id, body.value)
      if (body.op === 'sleep') setTimeout(() => answer(m.id, 'slept'), body.ms)
      if (body.op === 'crash') { process.stderr.write('about to die\n'); process.exit(3) }
    })
  "#;

  /// Collects every notice, in order.
  #[derive(Default)]
  struct Recorder {
    notices: Mutex<Vec<Notice>>,
    arrived: Notify,
  }

  impl Listener for Recorder {
    fn notify(&self, notices: Vec<Notice>) {
      // A failed check elsewhere must not turn every later notice into a second panic.
      let mut recorded = self.notices.lock().unwrap_or_else(|e| e.into_inner());
      recorded.extend(notices);
      self.arrived.notify_waiters();
    }
  }

  impl Recorder {
    /// Waits until `done` holds for the notices so far.
    async fn until(&self, what: &str, done: impl Fn(&[Notice]) -> bool) {
      let deadline = Instant::now() + WAIT;
      loop {
        // Made before the check: a notice recorded in between still wakes it.
        let arrived = self.arrived.notified();
        if done(&self.notices.lock().unwrap()) {
          return;
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
          let notices = self.notices.lock().unwrap();
          panic!("no {what} within {WAIT:?}; got {notices:#?}");
        }
      }
    }

    fn check<T>(&self, look: impl FnOnce(&[Notice]) -> T) -> T {
      look(&self.notices.lock().unwrap())
    }
  }

  fn outcome(notices: &[Notice], of: CallId) -> Option<&Result<Option<Payload>, Error>> {
    notices.iter().find_map(|notice| match notice {
      Notice::Settled { call, outcome } if *call == of => Some(outcome),
      _ => None,
    })
  }

  fn settlements(notices: &[Notice], of: CallId) -> usize {
    notices
      .iter()
      .filter(|notice| matches!(notice, Notice::Settled { call, .. } if *call == of))
      .count()
  }

  /// The pid a request was answered by.
  fn answered_by(notices: &[Notice], of: CallId) -> u32 {
    match outcome(notices, of) {
      Some(Ok(Some(Payload::Json(json)))) => {
        let answer: serde_json::Value = serde_json::from_str(json).unwrap();
        answer["pid"].as_u64().unwrap() as u32
      }
      other => panic!("request {of} was not answered: {other:?}"),
    }
  }

  fn events(notices: &[Notice]) -> Vec<&Event> {
    notices
      .iter()
      .filter_map(|notice| match notice {
        Notice::Event(event) | Notice::Ended { event, .. } => Some(event),
        _ => None,
      })
      .collect()
  }

  fn spawned_pids(notices: &[Notice]) -> Vec<u32> {
    events(notices)
      .into_iter()
      .filter_map(|event| match event {
        Event::Spawn { pid, .. } => Some(*pid),
        _ => None,
      })
      .collect()
  }

  struct Pooled {
    handle: Handle,
    driver: tokio::task::JoinHandle<()>,
    recorder: Arc<Recorder>,
  }

  /// A started pool of `node -e WORKER` workers with fast restarts and stops, plus `options`.
  async fn pool(options: Vec<(&str, Value)>, env: Vec<(&str, &str)>) -> Pooled {
    launcher_in_place();
    let mut fields = vec![
      ("command".to_string(), Value::String("node".into())),
      (
        "args".to_string(),
        Value::Array(vec![
          Value::String("-e".into()),
          Value::String(WORKER.into()),
        ]),
      ),
      ("stdio".to_string(), Value::String("pipe".into())),
      ("restartDelay".to_string(), Value::Number(20.0)),
      ("stopTimeout".to_string(), Value::Number(1_000.0)),
    ];
    fields.extend(options.into_iter().map(|(k, v)| (k.to_string(), v)));
    if !env.is_empty() {
      let env = env
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.into())))
        .collect();
      fields.push(("env".to_string(), Value::Object(env)));
    }
    let plan = parse_pool(&Value::Object(fields), std::env::vars_os(), "node", 2).unwrap();
    let recorder = Arc::new(Recorder::default());
    let (handle, run) = handle::pool(plan, 7, recorder.clone(), None);
    let driver = tokio::spawn(run);
    handle.start(1);
    recorder
      .until("settled start()", |n| outcome(n, 1).is_some())
      .await;
    recorder.check(|n| assert!(matches!(outcome(n, 1), Some(Ok(None))), "{n:#?}"));
    Pooled {
      handle,
      driver,
      recorder,
    }
  }

  impl Pooled {
    fn request(&self, call: CallId, body: &str, options: Vec<(&str, f64)>) {
      let options = Value::Object(
        options
          .into_iter()
          .map(|(k, n)| (k.to_string(), Value::Number(n)))
          .collect(),
      );
      let plan = parse_request(&options, self.handle.policy()).unwrap();
      self
        .handle
        .request(call, body.as_bytes(), plan.limits)
        .unwrap();
    }

    async fn settled(&self, calls: &[CallId]) {
      self
        .recorder
        .until("settlements", |n| {
          calls.iter().all(|&c| outcome(n, c).is_some())
        })
        .await;
    }

    /// Closes the pool and drops the handle: close() must settle, the driver end, and no
    /// worker it started be left running; every call was settled exactly once.
    async fn finish(self, drain: bool) {
      self.handle.close(Some(999), drain);
      self.settled(&[999]).await;
      drop(self.handle);
      tokio::time::timeout(WAIT, self.driver)
        .await
        .expect("the driver ends once its handle is gone")
        .unwrap();
      self.recorder.check(|n| {
        for pid in spawned_pids(n) {
          assert_eq!(living_members(pid as i32), 0, "worker {pid} left running");
        }
        for notice in n {
          if let Notice::Settled { call, .. } = notice {
            assert_eq!(settlements(n, *call), 1, "call {call} settled twice");
          }
        }
      });
    }
  }

  #[test]
  fn requests_spread_over_the_workers_within_concurrency() {
    block_on(async {
      let p = pool(vec![("size", Value::Number(2.0))], vec![]).await;
      let sleep = r#"{"op":"sleep","ms":300}"#;
      for call in 10..14 {
        p.request(call, sleep, vec![]);
      }
      // Two at a time: one per worker, the others queued.
      assert_eq!(p.handle.stats().machine.queued, 2);
      p.settled(&[10, 11, 12, 13]).await;
      p.recorder.check(|n| {
        let mut served: HashMap<u32, usize> = HashMap::new();
        for call in 10..14 {
          *served.entry(answered_by(n, call)).or_default() += 1;
        }
        // Never two at once on one worker: two each.
        assert_eq!(served.into_values().collect::<Vec<_>>(), [2, 2]);
      });
      let stats = p.handle.stats();
      assert_eq!(stats.machine.completed, 4);
      assert!(stats.latency.unwrap().p99 >= 300.0, "{:?}", stats.latency);
      assert!(stats.workers.iter().all(|row| row.uptime.is_some()));
      p.finish(true).await;
    })
  }

  #[test]
  fn a_crash_carries_what_the_worker_used_and_its_slot_keeps_it() {
    block_on(async {
      let p = pool(vec![("size", Value::Number(1.0))], vec![]).await;
      p.request(10, r#"{"op":"crash"}"#, vec![]);
      p.settled(&[10]).await;
      p.recorder
        .until("the crash", |n| {
          n.iter().any(|notice| {
            matches!(
              notice,
              Notice::Ended {
                event: Event::Crashed { .. },
                ..
              }
            )
          })
        })
        .await;
      let crash = p.recorder.check(|n| {
        let accounts: Vec<_> = n
          .iter()
          .filter_map(|notice| match notice {
            Notice::Ended { event, account } => Some((event.clone(), *account)),
            _ => None,
          })
          .collect();
        let [(Event::Exit { .. }, exit), (Event::Crashed { status, .. }, crash)] = &accounts[..]
        else {
          panic!("not an exit then a crash: {accounts:?}");
        };
        assert_eq!(*status, ExitStatus::Code(3));
        assert_eq!(exit, crash);
        assert_eq!(crash.limit, None);
        *crash
      });
      // A Node process: some CPU to start, and tens of MB resident at its peak.
      let usage = crash.usage.expect("the launcher told");
      assert!(
        usage.user_cpu + usage.system_cpu > Duration::ZERO,
        "{usage:?}"
      );
      assert!(usage.max_rss_bytes > 10 << 20, "{usage:?}");
      let row = &p.handle.stats().workers[0];
      assert_eq!(row.last_exit_usage, Some(usage));
      p.finish(true).await;
    })
  }

  #[test]
  fn a_crash_redispatches_with_attempts_left_and_queued_requests_survive() {
    block_on(async {
      let p = pool(
        vec![
          ("size", Value::Number(1.0)),
          ("maxAttempts", Value::Number(2.0)),
        ],
        vec![],
      )
      .await;
      p.request(10, r#"{"op":"crash"}"#, vec![]);
      p.request(11, r#"{"op":"echo","value":1}"#, vec![]);
      p.settled(&[10, 11]).await;
      p.recorder.check(|n| {
        let pids = spawned_pids(n);
        // The poison request killed two workers, one per attempt, then was rejected.
        match outcome(n, 10) {
          Some(Err(Error::PoolWorkerExited {
            pid,
            exit_code: Some(3),
            signal: None,
            attempts: 2,
            stderr_tail: Some(tail),
          })) => {
            assert_eq!(*pid, pids[1]);
            assert!(tail.contains("about to die"), "{tail:?}");
          }
          other => panic!("not the crash's error: {other:?}"),
        }
        // The request queued behind it went to the third worker.
        assert_eq!(answered_by(n, 11), pids[2]);
        let crashes = events(n)
          .iter()
          .filter(|e| matches!(e, Event::Crashed { .. }))
          .count();
        assert_eq!(crashes, 2);
      });
      p.finish(true).await;
    })
  }

  #[test]
  fn a_timeout_cancels_and_a_worker_ignoring_the_cancel_is_replaced() {
    block_on(async {
      let p = pool(
        vec![
          ("size", Value::Number(1.0)),
          ("healthCheckTimeout", Value::Number(200.0)),
        ],
        vec![],
      )
      .await;
      let started = Instant::now();
      p.request(10, r#"{"op":"hang"}"#, vec![("timeout", 100.0)]);
      p.settled(&[10]).await;
      assert!(started.elapsed() < Duration::from_secs(2));
      p.recorder.check(|n| {
        assert!(
          matches!(outcome(n, 10), Some(Err(Error::RequestTimeout { after })) if *after == Duration::from_millis(100)),
          "{:?}",
          outcome(n, 10)
        );
      });
      p.recorder
        .until("a replacement", |n| spawned_pids(n).len() == 2)
        .await;
      p.recorder.check(|n| {
        let first = spawned_pids(n)[0];
        let order: Vec<&str> = events(n)
          .iter()
          .filter_map(|e| match e {
            Event::Recycle {
              pid,
              reason: super::super::machine::RecycleReason::Timeout,
              ..
            } if *pid == first => Some("recycle"),
            Event::Crashed { pid, .. } if *pid == first => Some("crashed"),
            Event::Spawn { pid, .. } if *pid != first => Some("spawn"),
            _ => None,
          })
          .collect();
        assert_eq!(order, ["recycle", "crashed", "spawn"]);
      });
      // The replacement serves.
      p.request(11, r#"{"op":"echo","value":2}"#, vec![]);
      p.settled(&[11]).await;
      p.finish(false).await;
    })
  }

  #[test]
  fn a_worker_that_answers_the_cancel_is_kept() {
    block_on(async {
      let p = pool(
        vec![
          ("size", Value::Number(1.0)),
          ("healthCheckTimeout", Value::Number(1_000.0)),
        ],
        vec![("ANSWER_CANCEL", "1")],
      )
      .await;
      // Once Node is up, a cancel is answered well within the deadline.
      p.request(10, r#"{"op":"echo","value":0}"#, vec![]);
      p.settled(&[10]).await;
      p.request(11, r#"{"op":"hang"}"#, vec![("timeout", 50.0)]);
      p.settled(&[11]).await;
      tokio::time::sleep(Duration::from_millis(1_300)).await;
      p.request(12, r#"{"op":"echo","value":3}"#, vec![]);
      p.settled(&[12]).await;
      p.recorder.check(|n| {
        assert_eq!(spawned_pids(n).len(), 1, "{:?}", events(n));
        assert_eq!(answered_by(n, 12), spawned_pids(n)[0]);
        // The answer to the cancelled request is dropped, not settled again.
        assert_eq!(settlements(n, 11), 1);
      });
      p.finish(true).await;
    })
  }

  #[test]
  fn close_without_drain_rejects_what_waits_and_stops_the_workers() {
    block_on(async {
      let p = pool(vec![("size", Value::Number(1.0))], vec![]).await;
      p.request(10, r#"{"op":"sleep","ms":5000}"#, vec![]);
      p.request(11, r#"{"op":"echo","value":4}"#, vec![]);
      p.handle.close(Some(12), false);
      p.settled(&[10, 11, 12]).await;
      p.recorder.check(|n| {
        assert!(
          matches!(outcome(n, 11), Some(Err(Error::PoolClosed))),
          "{:?}",
          outcome(n, 11)
        );
        assert!(
          matches!(outcome(n, 10), Some(Err(Error::PoolWorkerExited { .. }))),
          "{:?}",
          outcome(n, 10)
        );
      });
      let refused = p
        .handle
        .request(13, b"1", p.handle.policy().request_limits());
      assert_eq!(refused, Err(Error::PoolClosed));
      p.finish(false).await;
    })
  }
}
