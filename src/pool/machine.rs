//! The pool's rules as a pure state machine: what happened goes in as an [`Input`], what to do
//! comes out as a list of [`Action`]s, in order. It owns no process, socket or clock, so every
//! rule of DESIGN §6 is tested without them, and a randomized test drives it through any mix of
//! crashes, hangs, timeouts, aborts, recycling and close against the invariant that matters
//! most: every request ends exactly once.
//!
//! The driver's side of the contract:
//! - Carry out the actions in the order given. `Spawn { worker, index }` starts a worker for
//!   slot `index` and is answered by exactly one `Spawned` or `SpawnFailed` for that key; a
//!   spawned worker's end is reported once, as `Exited`, after it was reaped.
//! - Worker keys are chosen here and never reused: a slot's replacement gets a new key, so an
//!   input about a worker that is gone is recognised and ignored. Request ids are chosen by the
//!   driver and must be unique for the pool's life (a repeated id is ignored).
//! - Timers are keyed ([`Timer`]): `SetTimer` arms (or re-arms) one, `ClearTimer` disarms it, and
//!   one that runs out is fed back as `TimerFired`. The driver must not deliver a firing of a
//!   timer that was cleared or re-armed after it ran out (a generation per key does it): a
//!   request's queue timer, for one, is armed anew each time the request enters the queue.
//! - Feed `SignOfLife` for every message from a worker that is not an answer (pongs included),
//!   `Answered` for every answer to a request, `ChannelClosed` at the channel's EOF, and `Rss`
//!   for every sample of a worker's group RSS (every `memory_check_interval`, when `max_memory`
//!   is set).
//! - `Resolve(id)` resolves with the answer just fed as `Answered`; `Reject` with
//!   [`Rejection::WorkerError`] rejects with the error that answer carried. The driver keeps
//!   request bodies and answers; the machine only sees ids.
//! - `StartSettled` settles every pending `start()`, `CloseSettled` every pending `close()`;
//!   either may come when none is pending.
//!
//! Choices the design leaves open, made here:
//! - Any exit that was not asked for is a crash, code 0 included: a pool worker has no reason
//!   to end on its own. A worker whose channel closes is killed (its group, SIGKILL) and its
//!   exit is a crash too: it can no longer answer.
//! - A spawn that fails while `start()` waits for the first `size.min` workers fails `start()`
//!   and closes the pool (queued requests reject `Closed`); later it counts as a crash.
//! - Growing spawns, in one step, one worker per `concurrency` requests waiting beyond what the
//!   workers already on their way (starting or restarting) will take, up to `size.max`.
//! - A recycled worker keeps taking requests until its replacement is up, then drains; the
//!   recycle is over when the old worker starts its stop, and only then may the next begin. A
//!   replacement that fails to spawn counts as a crash and abandons that recycle.
//! - `stats().recycles` counts graceful recycles; a 'recycle' with reason 'timeout' is a kill
//!   and counts among the crashes.
//! - Crashes count towards exhaustion while the pool serves (starting, running, draining);
//!   after `close({ drain: false })` they no longer can exhaust it.
//!
//! The invariants the randomized test checks after every input: every request ends exactly
//! once (resolved or rejected, never both; never neither once the pool is closed or exhausted
//! and every timer ran out); no worker holds more than `concurrency`; no request goes to a
//! worker that is starting, replaced, stopping or awaiting a cancel; the requests in the queue
//! that never were in flight number at most `max_queue` (requests back from a dead worker come
//! on top of it); a request is in flight for at most its `max_attempts` worker deaths; the
//! timers armed are exactly those the state calls for.
//!
//! Inputs that make no sense in the current state change nothing: the machine never panics.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::policy::{backoff, PoolPolicy, RequestLimits};

/// One worker process (or its spawn), unique for the pool's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerKey(pub u64);

/// A request, as numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// How a worker ended, as reported by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
  Code(i32),
  Signal(i32),
}

/// The `state` property, as JavaScript sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
  Idle,
  Starting,
  Running,
  Closing,
  Closed,
  Exhausted,
}

impl State {
  pub fn as_str(self) -> &'static str {
    match self {
      State::Idle => "idle",
      State::Starting => "starting",
      State::Running => "running",
      State::Closing => "closing",
      State::Closed => "closed",
      State::Exhausted => "exhausted",
    }
  }
}

/// A worker's `state` in `stats()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
  Starting,
  /// Up, holding no request.
  Ready,
  /// Up, holding at least one request.
  Busy,
  /// Replaced: takes no new request, finishes what it holds.
  Recycling,
  /// Being stopped or killed.
  Stopping,
  /// The slot waits out its backoff before the next spawn.
  Restarting,
}

impl WorkerState {
  pub fn as_str(self) -> &'static str {
    match self {
      WorkerState::Starting => "starting",
      WorkerState::Ready => "ready",
      WorkerState::Busy => "busy",
      WorkerState::Recycling => "recycling",
      WorkerState::Stopping => "stopping",
      WorkerState::Restarting => "restarting",
    }
  }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecycleReason {
  /// It served `recycle_after` requests (plus jitter).
  Requests,
  /// Its group's RSS passed `max_memory`.
  Memory,
  /// It did not answer a cancelled request within `health_check_timeout`; it is killed.
  Timeout,
}

impl RecycleReason {
  pub fn as_str(self) -> &'static str {
    match self {
      RecycleReason::Requests => "requests",
      RecycleReason::Memory => "memory",
      RecycleReason::Timeout => "timeout",
    }
  }
}

/// The driver's timers, one per key; each is armed at most once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
  /// The request has waited its `queue_timeout` since it entered the queue.
  QueueTimeout(RequestId),
  /// The request has been in flight its `timeout` since its dispatch.
  RequestTimeout(RequestId),
  /// The worker has not answered this cancelled request within `health_check_timeout`.
  CancelDeadline(RequestId),
  /// Time to ping the worker.
  HealthCheck(WorkerKey),
  /// The pong to the worker's last ping is overdue.
  HealthDeadline(WorkerKey),
  /// The next escalation of the worker's stop.
  Stop(WorkerKey),
  /// The worker, above `size.min`, has idled for `idle_timeout`.
  Idle(WorkerKey),
  /// The slot's backoff is over: spawn its next worker.
  Restart(usize),
  /// A crash leaves the restart window (the number is the crash's, in order).
  CrashForgotten(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
  /// `start()`.
  Start,
  /// `request()`; starts the pool if it is idle.
  Request {
    id: RequestId,
    limits: RequestLimits,
  },
  /// The request's AbortSignal fired.
  Abort(RequestId),
  Close {
    drain: bool,
  },
  Spawned {
    worker: WorkerKey,
    pid: u32,
  },
  SpawnFailed {
    worker: WorkerKey,
  },
  /// The worker answered request `id`: with a result (`ok`) or with an error.
  Answered {
    worker: WorkerKey,
    id: RequestId,
    ok: bool,
  },
  /// A message or a pong from the worker.
  SignOfLife {
    worker: WorkerKey,
  },
  /// The worker's IPC channel reached EOF.
  ChannelClosed {
    worker: WorkerKey,
  },
  /// The worker was reaped.
  Exited {
    worker: WorkerKey,
    status: ExitStatus,
  },
  /// A sample of the RSS of the worker's process group, in bytes.
  Rss {
    worker: WorkerKey,
    bytes: u64,
  },
  TimerFired(Timer),
}

/// Why a request was rejected; each maps to one error code and one `stats().rejected` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
  /// `ERR_POOL_QUEUE_FULL`.
  QueueFull,
  /// `ERR_POOL_QUEUE_TIMEOUT`.
  QueueTimeout,
  /// `ERR_TIMEOUT`.
  Timeout,
  /// `ABORT_ERR`.
  Aborted,
  /// `ERR_WORKER_EXITED`; the driver adds the tail of `worker`'s stderr.
  WorkerExited {
    worker: WorkerKey,
    pid: u32,
    status: ExitStatus,
    /// How many worker deaths the request was in flight for.
    attempts: u32,
  },
  /// The worker answered with an error; the driver rejects with it.
  WorkerError,
  /// `ERR_POOL_EXHAUSTED`.
  Exhausted,
  /// `ERR_POOL_CLOSED`.
  Closed,
}

/// Why `start()` rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartError {
  /// With the spawn error of the `SpawnFailed` being handled.
  SpawnFailed,
  Closed,
  Exhausted,
}

/// The events JavaScript sees, except those that only carry a worker's data ('message',
/// 'stdout', 'stderr'). `worker` is the slot's index, kept by replacements.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
  Spawn {
    worker: usize,
    pid: u32,
  },
  Exit {
    worker: usize,
    pid: u32,
    status: ExitStatus,
  },
  /// `restart_count` is the slot's consecutive restarts before this crash.
  Crashed {
    worker: usize,
    pid: u32,
    status: ExitStatus,
    restart_count: u64,
  },
  Restarting {
    worker: usize,
    delay: Duration,
    attempt: u64,
  },
  Unresponsive {
    worker: usize,
    pid: u32,
  },
  Recycle {
    worker: usize,
    pid: u32,
    reason: RecycleReason,
  },
  Exhausted {
    message: String,
    crashes: u64,
    window: Duration,
  },
  /// A worker for this slot could not be spawned; the driver emits 'error' with the error it
  /// got. It counts as a crash.
  SpawnFailed {
    worker: usize,
  },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
  /// Start a worker for slot `index`, with a new IPC channel; answer `Spawned` or `SpawnFailed`.
  Spawn {
    worker: WorkerKey,
    index: usize,
  },
  /// Send `{ tethered: 'request', id, body }` to the worker.
  Dispatch {
    worker: WorkerKey,
    id: RequestId,
  },
  /// Send `{ tethered: 'cancel', id }` to the worker.
  SendCancel {
    worker: WorkerKey,
    id: RequestId,
  },
  /// Send `{ type: 'ping' }`.
  SendPing(WorkerKey),
  /// Send `{ type: 'shutdown' }`.
  SendShutdown(WorkerKey),
  /// Signal the worker's whole process group.
  Signal {
    worker: WorkerKey,
    signal: Signal,
  },
  SetTimer {
    timer: Timer,
    after: Duration,
  },
  ClearTimer(Timer),
  Resolve(RequestId),
  Reject {
    id: RequestId,
    reason: Rejection,
  },
  Emit(Event),
  StartSettled(Result<(), StartError>),
  CloseSettled,
}

/// `stats().rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectionCounts {
  pub queue_full: u64,
  pub queue_timeout: u64,
  pub timeout: u64,
  pub aborted: u64,
  pub worker_exited: u64,
  pub worker_error: u64,
  pub exhausted: u64,
  pub closed: u64,
}

impl RejectionCounts {
  fn count(&mut self, reason: &Rejection) {
    let counter = match reason {
      Rejection::QueueFull => &mut self.queue_full,
      Rejection::QueueTimeout => &mut self.queue_timeout,
      Rejection::Timeout => &mut self.timeout,
      Rejection::Aborted => &mut self.aborted,
      Rejection::WorkerExited { .. } => &mut self.worker_exited,
      Rejection::WorkerError => &mut self.worker_error,
      Rejection::Exhausted => &mut self.exhausted,
      Rejection::Closed => &mut self.closed,
    };
    *counter += 1;
  }

  pub fn total(&self) -> u64 {
    self.queue_full
      + self.queue_timeout
      + self.timeout
      + self.aborted
      + self.worker_exited
      + self.worker_error
      + self.exhausted
      + self.closed
  }
}

/// The machine's part of `stats()`; latency, RSS and uptime are the driver's.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
  pub state: State,
  pub queued: usize,
  /// Requests dispatched and not yet settled.
  pub in_flight: usize,
  pub completed: u64,
  pub failed: u64,
  pub rejected: RejectionCounts,
  pub crashes: u64,
  pub restarts: u64,
  pub recycles: u64,
  /// One row per worker process, and one per slot waiting to restart; by index.
  pub workers: Vec<WorkerStats>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStats {
  pub worker: usize,
  /// `None` for a slot waiting to restart.
  pub key: Option<WorkerKey>,
  pub pid: Option<u32>,
  pub state: WorkerState,
  /// Requests the worker holds, cancelled ones it has not answered yet included.
  pub in_flight: usize,
  pub served: u64,
  /// The slot's crashes and consecutive restarts.
  pub crashes: u64,
  pub restart_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
  Idle,
  Starting,
  Running,
  Closing {
    drain: bool,
  },
  Closed,
  /// `close_pending`: a `close()` waits for the last worker to be gone.
  Exhausted {
    close_pending: bool,
  },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
  /// At this position of the queue.
  Queued(i64),
  InFlight(WorkerKey),
}

#[derive(Debug, Clone, Copy)]
struct Request {
  limits: RequestLimits,
  /// Worker deaths the request was in flight for.
  deaths: u32,
  place: Place,
}

/// How far a worker's stop has escalated: what it sent last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastSent {
  Shutdown,
  KillSignal,
  Sigkill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WorkerPhase {
  /// Spawn asked for, no pid yet.
  Starting,
  /// Takes requests (while it is its slot's occupant).
  Serving,
  /// Replaced by a recycle: finishes what it holds, then stops.
  Draining,
  Stopping(LastSent),
  /// SIGKILLed as unresponsive, for a cancel left unanswered or a lost channel; its exit is a
  /// crash.
  Killed,
}

#[derive(Debug, Clone)]
struct Worker {
  /// The slot's index, shown to JavaScript as `worker`.
  index: usize,
  /// `None` exactly while `Starting`.
  pid: Option<u32>,
  phase: WorkerPhase,
  /// Dispatched and not answered, in dispatch order; cancelled ones included.
  in_flight: Vec<RequestId>,
  /// Rejected already; their answers are awaited only to free the worker.
  cancelled: Vec<RequestId>,
  served: u64,
  /// `served` at which it is recycled.
  recycle_at: Option<u64>,
  recycle_due: Option<RecycleReason>,
  awaiting_pong: bool,
  idle_armed: bool,
}

impl Worker {
  fn starting(index: usize) -> Self {
    Worker {
      index,
      pid: None,
      phase: WorkerPhase::Starting,
      in_flight: Vec::new(),
      cancelled: Vec::new(),
      served: 0,
      recycle_at: None,
      recycle_due: None,
      awaiting_pong: false,
      idle_armed: false,
    }
  }

  /// Pinged and watched for cancels: it is up and nobody is ending it.
  fn is_watched(&self) -> bool {
    matches!(self.phase, WorkerPhase::Serving | WorkerPhase::Draining)
  }
}

/// One of the pool's `size` places. Its index outlives the processes that fill it.
#[derive(Debug, Clone, Default)]
struct Slot {
  /// The worker serving for the slot (or being spawned for it); `None` while the slot waits out
  /// its backoff, or for a replacement whose predecessor died.
  occupant: Option<WorkerKey>,
  /// A recycle's replacement being spawned; it becomes the occupant once up.
  replacement: Option<WorkerKey>,
  crashes: u64,
  /// Consecutive restarts since a worker of the slot last showed it was alive.
  restart_count: u64,
}

impl Slot {
  fn is_restarting(&self) -> bool {
    self.occupant.is_none() && self.replacement.is_none()
  }
}

#[derive(Debug)]
pub struct Machine {
  policy: PoolPolicy,
  phase: Phase,
  slots: BTreeMap<usize, Slot>,
  workers: BTreeMap<WorkerKey, Worker>,
  next_worker: u64,
  /// Requests admitted and not yet settled.
  requests: HashMap<RequestId, Request>,
  /// Positions grow at the back and shrink at the front, so both ends are cheap and removal
  /// from the middle (abort, queue timeout) is too.
  queue: BTreeMap<i64, RequestId>,
  queue_front: i64,
  queue_back: i64,
  /// The initial spawns `start()` waits for.
  awaiting_start: BTreeSet<WorkerKey>,
  /// The crashes inside the restart window, each with its `CrashForgotten` timer armed.
  recent_crashes: BTreeSet<u64>,
  next_crash: u64,
  /// Drives the recycle jitter; seeded by the driver so the machine stays deterministic.
  jitter_state: u64,
  completed: u64,
  rejected: RejectionCounts,
  crashes: u64,
  restarts: u64,
  recycles: u64,
}

impl Machine {
  /// `seed` picks each worker's recycle jitter.
  pub fn new(policy: PoolPolicy, seed: u64) -> Self {
    Machine {
      policy,
      phase: Phase::Idle,
      slots: BTreeMap::new(),
      workers: BTreeMap::new(),
      next_worker: 0,
      requests: HashMap::new(),
      queue: BTreeMap::new(),
      queue_front: 0,
      queue_back: 0,
      awaiting_start: BTreeSet::new(),
      recent_crashes: BTreeSet::new(),
      next_crash: 0,
      jitter_state: seed,
      completed: 0,
      rejected: RejectionCounts::default(),
      crashes: 0,
      restarts: 0,
      recycles: 0,
    }
  }

  pub fn state(&self) -> State {
    match self.phase {
      Phase::Idle => State::Idle,
      Phase::Starting => State::Starting,
      Phase::Running => State::Running,
      Phase::Closing { .. } => State::Closing,
      Phase::Closed => State::Closed,
      Phase::Exhausted { .. } => State::Exhausted,
    }
  }

  /// The `size` property: slots whose worker is up.
  pub fn size(&self) -> usize {
    self
      .slots
      .values()
      .filter_map(|slot| slot.occupant)
      .filter(|key| self.workers[key].phase == WorkerPhase::Serving)
      .count()
  }

  pub fn stats(&self) -> Stats {
    let mut workers: Vec<WorkerStats> = self
      .workers
      .iter()
      .map(|(&key, worker)| {
        let slot = self.slots.get(&worker.index);
        WorkerStats {
          worker: worker.index,
          key: Some(key),
          pid: worker.pid,
          state: match worker.phase {
            WorkerPhase::Starting => WorkerState::Starting,
            WorkerPhase::Serving if worker.in_flight.is_empty() => WorkerState::Ready,
            WorkerPhase::Serving => WorkerState::Busy,
            WorkerPhase::Draining => WorkerState::Recycling,
            WorkerPhase::Stopping(_) | WorkerPhase::Killed => WorkerState::Stopping,
          },
          in_flight: worker.in_flight.len(),
          served: worker.served,
          crashes: slot.map_or(0, |s| s.crashes),
          restart_count: slot.map_or(0, |s| s.restart_count),
        }
      })
      .chain(
        self
          .slots
          .iter()
          .filter(|(_, slot)| slot.is_restarting())
          .map(|(&index, slot)| WorkerStats {
            worker: index,
            key: None,
            pid: None,
            state: WorkerState::Restarting,
            in_flight: 0,
            served: 0,
            crashes: slot.crashes,
            restart_count: slot.restart_count,
          }),
      )
      .collect();
    workers.sort_by_key(|row| (row.worker, row.key));
    Stats {
      state: self.state(),
      queued: self.queue.len(),
      in_flight: self.requests.len() - self.queue.len(),
      completed: self.completed,
      failed: self.rejected.total(),
      rejected: self.rejected,
      crashes: self.crashes,
      restarts: self.restarts,
      recycles: self.recycles,
      workers,
    }
  }

  /// Applies one input; returns what the driver must do, in order.
  pub fn handle(&mut self, input: Input) -> Vec<Action> {
    let mut actions = Vec::new();
    match input {
      Input::Start => self.start(&mut actions),
      Input::Request { id, limits } => self.request(id, limits, &mut actions),
      Input::Abort(id) => self.end_early(id, Rejection::Aborted, &mut actions),
      Input::Close { drain } => self.close(drain, &mut actions),
      Input::Spawned { worker, pid } => self.spawned(worker, pid, &mut actions),
      Input::SpawnFailed { worker } => self.spawn_failed(worker, &mut actions),
      Input::Answered { worker, id, ok } => self.answered(worker, id, ok, &mut actions),
      Input::SignOfLife { worker } => self.sign_of_life(worker, &mut actions),
      Input::ChannelClosed { worker } => {
        if self.workers.get(&worker).is_some_and(Worker::is_watched) {
          self.kill(worker, &mut actions);
        }
      }
      Input::Exited { worker, status } => self.exited(worker, status, &mut actions),
      Input::Rss { worker, bytes } => self.rss(worker, bytes),
      Input::TimerFired(timer) => self.timer_fired(timer, &mut actions),
    }
    self.settle_consequences(&mut actions);
    actions
  }

  fn start(&mut self, actions: &mut Vec<Action>) {
    match self.phase {
      Phase::Idle => self.begin_start(actions),
      // Settled once the spawns under way are up.
      Phase::Starting => {}
      Phase::Running => actions.push(Action::StartSettled(Ok(()))),
      Phase::Closing { .. } | Phase::Closed => {
        actions.push(Action::StartSettled(Err(StartError::Closed)))
      }
      Phase::Exhausted { .. } => actions.push(Action::StartSettled(Err(StartError::Exhausted))),
    }
  }

  fn begin_start(&mut self, actions: &mut Vec<Action>) {
    self.phase = Phase::Starting;
    for index in 0..self.policy.size.min {
      self.slots.insert(index, Slot::default());
      let key = self.spawn(index, actions);
      self.slots.get_mut(&index).expect("just inserted").occupant = Some(key);
      self.awaiting_start.insert(key);
    }
    if self.awaiting_start.is_empty() {
      self.phase = Phase::Running;
      actions.push(Action::StartSettled(Ok(())));
    }
  }

  /// A new worker for slot `index`; the caller makes it the slot's occupant or replacement.
  fn spawn(&mut self, index: usize, actions: &mut Vec<Action>) -> WorkerKey {
    let key = WorkerKey(self.next_worker);
    self.next_worker += 1;
    self.workers.insert(key, Worker::starting(index));
    actions.push(Action::Spawn { worker: key, index });
    key
  }

  fn request(&mut self, id: RequestId, limits: RequestLimits, actions: &mut Vec<Action>) {
    match self.phase {
      Phase::Idle => self.begin_start(actions),
      Phase::Starting | Phase::Running => {}
      Phase::Closing { .. } | Phase::Closed => return self.reject(id, Rejection::Closed, actions),
      Phase::Exhausted { .. } => return self.reject(id, Rejection::Exhausted, actions),
    }
    if self.requests.contains_key(&id) {
      return;
    }
    // Whenever the queue holds anything, no worker can take more; so a free worker means an
    // empty queue, and the request overtakes nobody.
    if let Some(worker) = self.dispatchable_worker() {
      self.requests.insert(
        id,
        Request {
          limits,
          deaths: 0,
          place: Place::InFlight(worker),
        },
      );
      self.dispatch(id, worker, actions);
    } else if self
      .policy
      .max_queue
      .is_some_and(|max| self.queue.len() >= max)
    {
      self.reject(id, Rejection::QueueFull, actions);
    } else {
      self.requests.insert(
        id,
        Request {
          limits,
          deaths: 0,
          place: Place::Queued(0),
        },
      );
      self.enqueue(id, false, actions);
    }
  }

  /// Puts an admitted request into the queue, at the back or (re-dispatch) the front, and
  /// starts its queue timeout.
  fn enqueue(&mut self, id: RequestId, front: bool, actions: &mut Vec<Action>) {
    let position = if front {
      self.queue_front -= 1;
      self.queue_front
    } else {
      self.queue_back += 1;
      self.queue_back
    };
    self.queue.insert(position, id);
    let request = self.requests.get_mut(&id).expect("admitted request");
    request.place = Place::Queued(position);
    if let Some(after) = request.limits.queue_timeout {
      actions.push(Action::SetTimer {
        timer: Timer::QueueTimeout(id),
        after,
      });
    }
  }

  fn dispatch(&mut self, id: RequestId, key: WorkerKey, actions: &mut Vec<Action>) {
    let request = self.requests.get_mut(&id).expect("admitted request");
    request.place = Place::InFlight(key);
    let timeout = request.limits.timeout;
    self
      .workers
      .get_mut(&key)
      .expect("dispatchable worker")
      .in_flight
      .push(id);
    actions.push(Action::Dispatch { worker: key, id });
    if let Some(after) = timeout {
      actions.push(Action::SetTimer {
        timer: Timer::RequestTimeout(id),
        after,
      });
    }
  }

  /// The ready worker with the fewest requests in flight (the lowest index among equals), if
  /// any can take one more.
  fn dispatchable_worker(&self) -> Option<WorkerKey> {
    if !matches!(
      self.phase,
      Phase::Starting | Phase::Running | Phase::Closing { drain: true }
    ) {
      return None;
    }
    self
      .slots
      .values()
      .filter_map(|slot| slot.occupant)
      .filter(|key| {
        let worker = &self.workers[key];
        worker.phase == WorkerPhase::Serving
          && worker.cancelled.is_empty()
          && worker.in_flight.len() < self.policy.concurrency
      })
      .min_by_key(|key| self.workers[key].in_flight.len())
  }

  fn resolve(&mut self, id: RequestId, actions: &mut Vec<Action>) {
    self.requests.remove(&id);
    self.completed += 1;
    actions.push(Action::Resolve(id));
  }

  fn reject(&mut self, id: RequestId, reason: Rejection, actions: &mut Vec<Action>) {
    self.requests.remove(&id);
    self.rejected.count(&reason);
    actions.push(Action::Reject { id, reason });
  }

  /// An abort, or a timeout that ran out: a queued request leaves the queue untouched by any
  /// worker; one in flight is rejected at once and its worker asked to cancel it.
  fn end_early(&mut self, id: RequestId, reason: Rejection, actions: &mut Vec<Action>) {
    let Some(request) = self.requests.get(&id) else {
      return;
    };
    let limits = request.limits;
    match request.place {
      Place::Queued(position) => {
        self.queue.remove(&position);
        if reason != Rejection::QueueTimeout && limits.queue_timeout.is_some() {
          actions.push(Action::ClearTimer(Timer::QueueTimeout(id)));
        }
        self.reject(id, reason, actions);
      }
      Place::InFlight(key) => {
        if reason != Rejection::Timeout && limits.timeout.is_some() {
          actions.push(Action::ClearTimer(Timer::RequestTimeout(id)));
        }
        self.reject(id, reason, actions);
        self.cancel(key, id, actions);
      }
    }
  }

  /// The request was rejected while `key` holds it. A worker that is up is told, and keeps the
  /// slot (taking nothing new) until it answers or the deadline kills it; one being stopped or
  /// killed is only forgotten.
  fn cancel(&mut self, key: WorkerKey, id: RequestId, actions: &mut Vec<Action>) {
    let deadline = self.policy.health_check_timeout;
    let worker = self.workers.get_mut(&key).expect("holder of a request");
    if worker.is_watched() {
      worker.cancelled.push(id);
      actions.push(Action::SendCancel { worker: key, id });
      actions.push(Action::SetTimer {
        timer: Timer::CancelDeadline(id),
        after: deadline,
      });
    } else {
      worker.in_flight.retain(|&held| held != id);
    }
  }

  fn close(&mut self, drain: bool, actions: &mut Vec<Action>) {
    match self.phase {
      Phase::Idle => {
        self.phase = Phase::Closed;
        actions.push(Action::CloseSettled);
      }
      Phase::Closed => actions.push(Action::CloseSettled),
      Phase::Exhausted { .. } if self.workers.is_empty() => actions.push(Action::CloseSettled),
      Phase::Exhausted { .. } => {
        self.phase = Phase::Exhausted {
          close_pending: true,
        }
      }
      // A close without drain overrides one with; the reverse changes nothing.
      Phase::Closing { drain: true } if !drain => {
        self.phase = Phase::Closing { drain: false };
        self.dissolve(Rejection::Closed, actions);
      }
      Phase::Closing { .. } => {}
      Phase::Starting | Phase::Running => {
        if self.phase == Phase::Starting {
          self.awaiting_start.clear();
          actions.push(Action::StartSettled(Err(StartError::Closed)));
        }
        self.phase = Phase::Closing { drain };
        if !drain {
          self.dissolve(Rejection::Closed, actions);
        }
      }
    }
  }

  /// Ends the pool's service at once: queued requests reject with `reason`, slots are given
  /// up, and every worker that is up starts its stop (a starting one stops once up).
  fn dissolve(&mut self, reason: Rejection, actions: &mut Vec<Action>) {
    while let Some((_, id)) = self.queue.pop_first() {
      if self.requests[&id].limits.queue_timeout.is_some() {
        actions.push(Action::ClearTimer(Timer::QueueTimeout(id)));
      }
      self.reject(id, reason, actions);
    }
    for (&index, slot) in &self.slots {
      if slot.is_restarting() {
        actions.push(Action::ClearTimer(Timer::Restart(index)));
      }
    }
    self.slots.clear();
    let up: Vec<WorkerKey> = self
      .workers
      .iter()
      .filter(|(_, worker)| worker.is_watched())
      .map(|(&key, _)| key)
      .collect();
    for key in up {
      self.begin_stop(key, actions);
    }
  }

  fn spawned(&mut self, key: WorkerKey, pid: u32, actions: &mut Vec<Action>) {
    if self
      .workers
      .get(&key)
      .is_none_or(|worker| worker.phase != WorkerPhase::Starting)
    {
      return;
    }
    // Up to 10 % more, never less, so that workers started together drift apart.
    let recycle_at = self
      .policy
      .recycle_after
      .map(|n| n.saturating_add(self.next_jitter() % (n / 10 + 1)));
    let worker = self.workers.get_mut(&key).expect("checked");
    worker.pid = Some(pid);
    worker.phase = WorkerPhase::Serving;
    worker.recycle_at = recycle_at;
    let index = worker.index;
    actions.push(Action::Emit(Event::Spawn { worker: index, pid }));
    if let Some(after) = self.policy.health_check_interval {
      actions.push(Action::SetTimer {
        timer: Timer::HealthCheck(key),
        after,
      });
    }
    if let Some(slot) = self.slots.get_mut(&index) {
      if slot.replacement == Some(key) {
        slot.replacement = None;
        if let Some(old) = slot.occupant.replace(key) {
          let old = self.workers.get_mut(&old).expect("occupant");
          if old.phase == WorkerPhase::Serving {
            old.phase = WorkerPhase::Draining;
          }
        }
      }
    }
    if self.awaiting_start.remove(&key) && self.awaiting_start.is_empty() {
      self.phase = Phase::Running;
      actions.push(Action::StartSettled(Ok(())));
    }
  }

  fn spawn_failed(&mut self, key: WorkerKey, actions: &mut Vec<Action>) {
    let Some(worker) = self.workers.get(&key) else {
      return;
    };
    if worker.phase != WorkerPhase::Starting {
      return;
    }
    let index = worker.index;
    self.workers.remove(&key);
    if self.phase == Phase::Starting && self.awaiting_start.contains(&key) {
      self.awaiting_start.clear();
      actions.push(Action::StartSettled(Err(StartError::SpawnFailed)));
      self.phase = Phase::Closing { drain: false };
      self.dissolve(Rejection::Closed, actions);
      return;
    }
    actions.push(Action::Emit(Event::SpawnFailed { worker: index }));
    self.after_crash(key, index, actions);
  }

  fn answered(&mut self, key: WorkerKey, id: RequestId, ok: bool, actions: &mut Vec<Action>) {
    let Some(worker) = self.workers.get_mut(&key) else {
      return;
    };
    let Some(at) = worker.in_flight.iter().position(|&held| held == id) else {
      return;
    };
    worker.in_flight.remove(at);
    worker.served += 1;
    if let Some(at) = worker.cancelled.iter().position(|&held| held == id) {
      // Already rejected; the late answer only frees the worker.
      worker.cancelled.remove(at);
      if worker.is_watched() {
        actions.push(Action::ClearTimer(Timer::CancelDeadline(id)));
      }
    } else {
      if self.requests[&id].limits.timeout.is_some() {
        actions.push(Action::ClearTimer(Timer::RequestTimeout(id)));
      }
      if ok {
        self.resolve(id, actions);
      } else {
        self.reject(id, Rejection::WorkerError, actions);
      }
    }
    let worker = self.workers.get_mut(&key).expect("still there");
    if worker.phase == WorkerPhase::Serving
      && worker.recycle_due.is_none()
      && worker.recycle_at.is_some_and(|at| worker.served >= at)
    {
      worker.recycle_due = Some(RecycleReason::Requests);
    }
    self.sign_of_life(key, actions);
  }

  /// Anything from the worker proves it alive: the pong is in, and the slot's backoff starts
  /// over.
  fn sign_of_life(&mut self, key: WorkerKey, actions: &mut Vec<Action>) {
    let Some(worker) = self.workers.get_mut(&key) else {
      return;
    };
    // A worker being killed proves nothing by a last word.
    if worker.pid.is_none() || worker.phase == WorkerPhase::Killed {
      return;
    }
    if worker.awaiting_pong {
      worker.awaiting_pong = false;
      actions.push(Action::ClearTimer(Timer::HealthDeadline(key)));
    }
    let index = worker.index;
    if let Some(slot) = self.slots.get_mut(&index) {
      if slot.occupant == Some(key) {
        slot.restart_count = 0;
      }
    }
  }

  fn rss(&mut self, key: WorkerKey, bytes: u64) {
    let Some(worker) = self.workers.get_mut(&key) else {
      return;
    };
    if worker.phase == WorkerPhase::Serving
      && worker.recycle_due.is_none()
      && self.policy.max_memory.is_some_and(|max| bytes > max)
    {
      worker.recycle_due = Some(RecycleReason::Memory);
    }
  }

  fn exited(&mut self, key: WorkerKey, status: ExitStatus, actions: &mut Vec<Action>) {
    let Some(worker) = self.workers.get(&key) else {
      return;
    };
    let Some(pid) = worker.pid else {
      return;
    };
    self.clear_worker_timers(key, actions);
    let worker = self.workers.remove(&key).expect("still there");
    let index = worker.index;
    actions.push(Action::Emit(Event::Exit {
      worker: index,
      pid,
      status,
    }));
    let crashed = !matches!(worker.phase, WorkerPhase::Stopping(_));
    let may_retry = crashed
      && matches!(
        self.phase,
        Phase::Starting | Phase::Running | Phase::Closing { drain: true }
      );
    let mut retries = Vec::new();
    for id in worker.in_flight {
      if worker.cancelled.contains(&id) {
        continue;
      }
      let request = self.requests.get_mut(&id).expect("in flight");
      request.deaths += 1;
      if request.limits.timeout.is_some() {
        actions.push(Action::ClearTimer(Timer::RequestTimeout(id)));
      }
      if may_retry && request.deaths < request.limits.max_attempts {
        retries.push(id);
      } else {
        let attempts = request.deaths;
        self.reject(
          id,
          Rejection::WorkerExited {
            worker: key,
            pid,
            status,
            attempts,
          },
          actions,
        );
      }
    }
    // Back to the front, in the order they were dispatched, even past `max_queue`: they were
    // admitted already.
    for &id in retries.iter().rev() {
      self.enqueue(id, true, actions);
    }
    if crashed {
      let restart_count = self.slots.get(&index).map_or(0, |s| s.restart_count);
      actions.push(Action::Emit(Event::Crashed {
        worker: index,
        pid,
        status,
        restart_count,
      }));
      self.after_crash(key, index, actions);
    }
  }

  /// Counts a crash of worker `key` (gone already) of slot `index`, gives up if the restart
  /// window is full, and otherwise refills the slot.
  fn after_crash(&mut self, key: WorkerKey, index: usize, actions: &mut Vec<Action>) {
    self.crashes += 1;
    if let Some(slot) = self.slots.get_mut(&index) {
      slot.crashes += 1;
    }
    if matches!(
      self.phase,
      Phase::Starting | Phase::Running | Phase::Closing { drain: true }
    ) && self.policy.max_restarts != u64::MAX
    {
      let crash = self.next_crash;
      self.next_crash += 1;
      self.recent_crashes.insert(crash);
      actions.push(Action::SetTimer {
        timer: Timer::CrashForgotten(crash),
        after: self.policy.restart_window,
      });
      if self.recent_crashes.len() as u64 > self.policy.max_restarts {
        return self.exhaust(actions);
      }
    }
    let Some(slot) = self.slots.get_mut(&index) else {
      return;
    };
    // A replaced worker draining its last requests leaves no hole behind.
    if slot.occupant != Some(key) && slot.replacement != Some(key) {
      return;
    }
    if slot.occupant == Some(key) {
      slot.occupant = None;
    }
    if slot.replacement == Some(key) {
      // The recycle is abandoned; the worker it was for serves on.
      slot.replacement = None;
      if let Some(old) = slot.occupant {
        self.workers.get_mut(&old).expect("occupant").recycle_due = None;
      }
    }
    if !slot.is_restarting() {
      return;
    }
    if matches!(self.phase, Phase::Closing { .. }) && self.queue.is_empty() {
      // Draining, and nothing waits that a new worker could serve.
      self.slots.remove(&index);
      return;
    }
    slot.restart_count += 1;
    let attempt = slot.restart_count;
    let delay = backoff(
      self.policy.restart_delay,
      self.policy.max_restart_delay,
      attempt,
    );
    actions.push(Action::Emit(Event::Restarting {
      worker: index,
      delay,
      attempt,
    }));
    actions.push(Action::SetTimer {
      timer: Timer::Restart(index),
      after: delay,
    });
  }

  /// More than `max_restarts` crashes within `restart_window`: every request still open is
  /// rejected, every worker stopped, and nothing is started again.
  fn exhaust(&mut self, actions: &mut Vec<Action>) {
    let close_pending = matches!(self.phase, Phase::Closing { .. });
    if self.phase == Phase::Starting {
      self.awaiting_start.clear();
      actions.push(Action::StartSettled(Err(StartError::Exhausted)));
    }
    self.phase = Phase::Exhausted { close_pending };
    let crashes = self.recent_crashes.len() as u64;
    self.forget_crashes(actions);
    let keys: Vec<WorkerKey> = self.workers.keys().copied().collect();
    for key in keys {
      let worker = self.workers.get_mut(&key).expect("listed");
      let watched = worker.is_watched();
      let held = std::mem::take(&mut worker.in_flight);
      let cancelled = std::mem::take(&mut worker.cancelled);
      for id in held {
        if cancelled.contains(&id) {
          if watched {
            actions.push(Action::ClearTimer(Timer::CancelDeadline(id)));
          }
        } else {
          if self.requests[&id].limits.timeout.is_some() {
            actions.push(Action::ClearTimer(Timer::RequestTimeout(id)));
          }
          self.reject(id, Rejection::Exhausted, actions);
        }
      }
    }
    actions.push(Action::Emit(Event::Exhausted {
      message: format!(
        "{crashes} worker crashes within {} ms; maxRestarts ({}) exceeded, the pool gives up",
        self.policy.restart_window.as_millis(),
        self.policy.max_restarts
      ),
      crashes,
      window: self.policy.restart_window,
    }));
    self.dissolve(Rejection::Exhausted, actions);
  }

  fn forget_crashes(&mut self, actions: &mut Vec<Action>) {
    for crash in std::mem::take(&mut self.recent_crashes) {
      actions.push(Action::ClearTimer(Timer::CrashForgotten(crash)));
    }
  }

  fn timer_fired(&mut self, timer: Timer, actions: &mut Vec<Action>) {
    match timer {
      Timer::QueueTimeout(id) => {
        let armed = self.requests.get(&id).is_some_and(|request| {
          matches!(request.place, Place::Queued(_)) && request.limits.queue_timeout.is_some()
        });
        if armed {
          self.end_early(id, Rejection::QueueTimeout, actions);
        }
      }
      Timer::RequestTimeout(id) => {
        let armed = self.requests.get(&id).is_some_and(|request| {
          matches!(request.place, Place::InFlight(_)) && request.limits.timeout.is_some()
        });
        if armed {
          self.end_early(id, Rejection::Timeout, actions);
        }
      }
      Timer::CancelDeadline(id) => {
        let holder = self
          .workers
          .iter()
          .find(|(_, worker)| worker.is_watched() && worker.cancelled.contains(&id))
          .map(|(&key, worker)| (key, worker.index, worker.pid.expect("up")));
        if let Some((key, index, pid)) = holder {
          // Its deadline has run out, and nothing waits for its answer any more.
          let worker = self.workers.get_mut(&key).expect("found");
          worker.cancelled.retain(|&held| held != id);
          worker.in_flight.retain(|&held| held != id);
          actions.push(Action::Emit(Event::Recycle {
            worker: index,
            pid,
            reason: RecycleReason::Timeout,
          }));
          self.kill(key, actions);
        }
      }
      Timer::HealthCheck(key) => {
        let Some(interval) = self.policy.health_check_interval else {
          return;
        };
        let timeout = self.policy.health_check_timeout;
        let Some(worker) = self.workers.get_mut(&key) else {
          return;
        };
        if !worker.is_watched() {
          return;
        }
        // One ping at a time: while one is unanswered its deadline stands.
        if !worker.awaiting_pong {
          worker.awaiting_pong = true;
          actions.push(Action::SendPing(key));
          actions.push(Action::SetTimer {
            timer: Timer::HealthDeadline(key),
            after: timeout,
          });
        }
        actions.push(Action::SetTimer {
          timer: Timer::HealthCheck(key),
          after: interval,
        });
      }
      Timer::HealthDeadline(key) => {
        let Some(worker) = self.workers.get_mut(&key) else {
          return;
        };
        if worker.is_watched() && worker.awaiting_pong {
          worker.awaiting_pong = false;
          let (index, pid) = (worker.index, worker.pid.expect("up"));
          actions.push(Action::Emit(Event::Unresponsive { worker: index, pid }));
          self.kill(key, actions);
        }
      }
      Timer::Stop(key) => {
        let Some(worker) = self.workers.get_mut(&key) else {
          return;
        };
        match worker.phase {
          WorkerPhase::Stopping(LastSent::Shutdown) => {
            worker.phase = WorkerPhase::Stopping(LastSent::KillSignal);
            actions.push(Action::Signal {
              worker: key,
              signal: self.policy.kill_signal,
            });
            actions.push(Action::SetTimer {
              timer: Timer::Stop(key),
              after: self.policy.stop_timeout - self.policy.stop_timeout / 2,
            });
          }
          WorkerPhase::Stopping(LastSent::KillSignal) => {
            worker.phase = WorkerPhase::Stopping(LastSent::Sigkill);
            actions.push(Action::Signal {
              worker: key,
              signal: Signal::SIGKILL,
            });
          }
          _ => {}
        }
      }
      Timer::Idle(key) => {
        let Some(worker) = self.workers.get_mut(&key) else {
          return;
        };
        if !worker.idle_armed {
          return;
        }
        worker.idle_armed = false;
        if self.may_shrink(key) {
          self.slots.remove(&self.workers[&key].index);
          self.begin_stop(key, actions);
        }
      }
      Timer::Restart(index) => {
        if self.slots.get(&index).is_some_and(Slot::is_restarting) {
          self.restarts += 1;
          let key = self.spawn(index, actions);
          self.slots.get_mut(&index).expect("checked").occupant = Some(key);
        }
      }
      Timer::CrashForgotten(crash) => {
        self.recent_crashes.remove(&crash);
      }
    }
  }

  /// SIGKILLs the worker's group; its exit will be a crash, and what it holds is treated then.
  fn kill(&mut self, key: WorkerKey, actions: &mut Vec<Action>) {
    self.clear_worker_timers(key, actions);
    let worker = self.workers.get_mut(&key).expect("known worker");
    worker.phase = WorkerPhase::Killed;
    worker.awaiting_pong = false;
    worker.idle_armed = false;
    actions.push(Action::Signal {
      worker: key,
      signal: Signal::SIGKILL,
    });
  }

  /// The stop schedule: a shutdown message, `kill_signal` at half of `stop_timeout`, SIGKILL at
  /// the end. The caller has taken the worker out of its slot.
  fn begin_stop(&mut self, key: WorkerKey, actions: &mut Vec<Action>) {
    self.clear_worker_timers(key, actions);
    let worker = self.workers.get_mut(&key).expect("known worker");
    worker.phase = WorkerPhase::Stopping(LastSent::Shutdown);
    worker.awaiting_pong = false;
    worker.idle_armed = false;
    actions.push(Action::SendShutdown(key));
    actions.push(Action::SetTimer {
      timer: Timer::Stop(key),
      after: self.policy.stop_timeout / 2,
    });
  }

  /// Clears every timer armed for the worker in its current phase (its requests' own timers
  /// stay with the requests).
  fn clear_worker_timers(&self, key: WorkerKey, actions: &mut Vec<Action>) {
    let worker = &self.workers[&key];
    if worker.is_watched() {
      if self.policy.health_check_interval.is_some() {
        actions.push(Action::ClearTimer(Timer::HealthCheck(key)));
      }
      if worker.awaiting_pong {
        actions.push(Action::ClearTimer(Timer::HealthDeadline(key)));
      }
      for &id in &worker.cancelled {
        actions.push(Action::ClearTimer(Timer::CancelDeadline(id)));
      }
    }
    if matches!(
      worker.phase,
      WorkerPhase::Stopping(LastSent::Shutdown | LastSent::KillSignal)
    ) {
      actions.push(Action::ClearTimer(Timer::Stop(key)));
    }
    if worker.idle_armed {
      actions.push(Action::ClearTimer(Timer::Idle(key)));
    }
  }

  /// A running pool above `size.min` may stop this worker: it occupies its slot, is up, holds
  /// nothing and is not being replaced.
  fn may_shrink(&self, key: WorkerKey) -> bool {
    let worker = &self.workers[&key];
    self.phase == Phase::Running
      && self.slots.len() > self.policy.size.min
      && worker.phase == WorkerPhase::Serving
      && worker.in_flight.is_empty()
      && self
        .slots
        .get(&worker.index)
        .is_some_and(|slot| slot.occupant == Some(key) && slot.replacement.is_none())
  }

  /// What follows from the state every input leaves, whatever the input was: dispatch, stops,
  /// recycling, growing, idle timers, and the end of a close.
  fn settle_consequences(&mut self, actions: &mut Vec<Action>) {
    self.pump(actions);
    self.stop_the_done(actions);
    self.begin_recycle(actions);
    self.grow(actions);
    self.arm_idle_timers(actions);
    match self.phase {
      Phase::Closing { .. } if self.workers.is_empty() && self.slots.is_empty() => {
        self.phase = Phase::Closed;
        self.forget_crashes(actions);
        actions.push(Action::CloseSettled);
      }
      Phase::Exhausted {
        close_pending: true,
      } if self.workers.is_empty() => {
        self.phase = Phase::Exhausted {
          close_pending: false,
        };
        actions.push(Action::CloseSettled);
      }
      _ => {}
    }
  }

  /// Hands queued requests, in order, to workers that can take them.
  fn pump(&mut self, actions: &mut Vec<Action>) {
    while let Some((&position, &id)) = self.queue.first_key_value() {
      let Some(key) = self.dispatchable_worker() else {
        break;
      };
      self.queue.remove(&position);
      if self.requests[&id].limits.queue_timeout.is_some() {
        actions.push(Action::ClearTimer(Timer::QueueTimeout(id)));
      }
      self.dispatch(id, key, actions);
    }
  }

  /// Stops workers whose work is over: a replaced one that drained, one up without a slot (its
  /// slot was given up while it started), and, in a draining close with nothing queued, every
  /// idle occupant; slots waiting to restart are given up then too.
  fn stop_the_done(&mut self, actions: &mut Vec<Action>) {
    let done: Vec<WorkerKey> = self
      .workers
      .iter()
      .filter(|(&key, worker)| match worker.phase {
        WorkerPhase::Draining => worker.in_flight.is_empty(),
        WorkerPhase::Serving => self
          .slots
          .get(&worker.index)
          .is_none_or(|slot| slot.occupant != Some(key)),
        _ => false,
      })
      .map(|(&key, _)| key)
      .collect();
    for key in done {
      self.begin_stop(key, actions);
    }
    if self.phase != (Phase::Closing { drain: true }) || !self.queue.is_empty() {
      return;
    }
    let indices: Vec<usize> = self.slots.keys().copied().collect();
    for index in indices {
      let slot = &self.slots[&index];
      match slot.occupant {
        None if slot.replacement.is_none() => {
          actions.push(Action::ClearTimer(Timer::Restart(index)));
          self.slots.remove(&index);
        }
        Some(key)
          if self.workers[&key].phase == WorkerPhase::Serving
            && self.workers[&key].in_flight.is_empty() =>
        {
          self.slots.remove(&index);
          self.begin_stop(key, actions);
        }
        _ => {}
      }
    }
  }

  /// Starts the next due recycle, if none is under way: the replacement is spawned first and
  /// the worker serves on until it is up.
  fn begin_recycle(&mut self, actions: &mut Vec<Action>) {
    if self.phase != Phase::Running {
      return;
    }
    let under_way = self.slots.values().any(|slot| slot.replacement.is_some())
      || self
        .workers
        .values()
        .any(|worker| worker.phase == WorkerPhase::Draining);
    if under_way {
      return;
    }
    let due = self.slots.iter().find_map(|(&index, slot)| {
      let key = slot.occupant?;
      let worker = &self.workers[&key];
      let reason = worker.recycle_due?;
      (worker.phase == WorkerPhase::Serving).then(|| (index, worker.pid.expect("up"), reason))
    });
    let Some((index, pid, reason)) = due else {
      return;
    };
    self.recycles += 1;
    actions.push(Action::Emit(Event::Recycle {
      worker: index,
      pid,
      reason,
    }));
    let replacement = self.spawn(index, actions);
    self.slots.get_mut(&index).expect("found").replacement = Some(replacement);
  }

  /// Adds slots while requests wait beyond what the workers on their way will take.
  fn grow(&mut self, actions: &mut Vec<Action>) {
    if self.queue.is_empty()
      || !matches!(
        self.phase,
        Phase::Starting | Phase::Running | Phase::Closing { drain: true }
      )
    {
      return;
    }
    let coming = self
      .slots
      .values()
      .filter(|slot| {
        slot
          .occupant
          .is_none_or(|key| self.workers[&key].phase == WorkerPhase::Starting)
      })
      .count();
    let concurrency = self.policy.concurrency.max(1);
    let unserved = self
      .queue
      .len()
      .saturating_sub(coming.saturating_mul(concurrency));
    let room = self.policy.size.max.saturating_sub(self.slots.len());
    for _ in 0..unserved.div_ceil(concurrency).min(room) {
      let index = (0..)
        .find(|index| !self.slots.contains_key(index))
        .expect("a free index");
      self.slots.insert(index, Slot::default());
      let key = self.spawn(index, actions);
      self.slots.get_mut(&index).expect("just inserted").occupant = Some(key);
    }
  }

  /// The next number of SplitMix64, a small well-mixed generator, for the recycle jitter.
  fn next_jitter(&mut self) -> u64 {
    self.jitter_state = self.jitter_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = self.jitter_state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
  }

  /// Arms the idle timer of every worker that may be shrunk away, and disarms it where that
  /// stopped being so.
  fn arm_idle_timers(&mut self, actions: &mut Vec<Action>) {
    let keys: Vec<WorkerKey> = self.workers.keys().copied().collect();
    for key in keys {
      let wanted = self.may_shrink(key);
      let worker = self.workers.get_mut(&key).expect("listed");
      if wanted == worker.idle_armed {
        continue;
      }
      worker.idle_armed = wanted;
      actions.push(if wanted {
        Action::SetTimer {
          timer: Timer::Idle(key),
          after: self.policy.idle_timeout,
        }
      } else {
        Action::ClearTimer(Timer::Idle(key))
      });
    }
  }
}

#[cfg(test)]
mod tests;
