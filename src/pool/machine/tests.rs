//! Each rule of DESIGN §6 alone, then a randomized run of everything at once. All inputs go
//! through [`Pool`], a stand-in for the driver that checks every action against the contract
//! as it is carried out: no dispatch beyond `concurrency` or to a worker being stopped or
//! cancelling, no timer armed twice or cleared when not armed, no request settled twice.

use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::pool::policy::SizeRange;

fn ms(n: u64) -> Duration {
  Duration::from_millis(n)
}

fn policy() -> PoolPolicy {
  PoolPolicy {
    size: SizeRange { min: 2, max: 2 },
    idle_timeout: ms(5_000),
    concurrency: 1,
    max_queue: Some(3),
    request_timeout: Some(ms(1_000)),
    queue_timeout: Some(ms(500)),
    max_attempts: 1,
    max_restarts: 3,
    restart_window: ms(10_000),
    recycle_after: None,
    max_memory: None,
    memory_check_interval: ms(1_000),
    health_check_interval: None,
    health_check_timeout: ms(300),
    stop_timeout: ms(400),
    kill_signal: Signal::SIGTERM,
    restart_delay: ms(100),
    max_restart_delay: ms(1_000),
  }
}

fn limits(policy: &PoolPolicy) -> RequestLimits {
  policy.request_limits()
}

/// What the driver knows of one spawned worker process.
#[derive(Debug, Default)]
struct Process {
  pid: u32,
  /// Dispatched and not answered.
  holding: BTreeSet<RequestId>,
  /// Cancel sent and not answered.
  cancels: BTreeSet<RequestId>,
  /// Sent a shutdown or a signal: no request may follow.
  ending: bool,
}

/// The machine with a strict driver around it.
struct Pool {
  machine: Machine,
  policy: PoolPolicy,
  armed: BTreeSet<Timer>,
  cleared: Vec<Timer>,
  pending_spawns: BTreeSet<WorkerKey>,
  processes: BTreeMap<WorkerKey, Process>,
  dead: Vec<WorkerKey>,
  sent: BTreeMap<RequestId, RequestLimits>,
  settled: HashMap<RequestId, Action>,
  /// Worker deaths each unsettled request was in flight for, as the driver saw it.
  deaths: HashMap<RequestId, u32>,
  next_id: u64,
  next_pid: u32,
  start_settled: Vec<Result<(), StartError>>,
  close_settled: usize,
}

impl Pool {
  fn new(policy: PoolPolicy) -> Self {
    Pool {
      machine: Machine::new(policy, 7),
      policy,
      armed: BTreeSet::new(),
      cleared: Vec::new(),
      pending_spawns: BTreeSet::new(),
      processes: BTreeMap::new(),
      dead: Vec::new(),
      sent: BTreeMap::new(),
      settled: HashMap::new(),
      deaths: HashMap::new(),
      next_id: 1,
      next_pid: 100,
      start_settled: Vec::new(),
      close_settled: 0,
    }
  }

  /// A pool started with every initial worker up.
  fn running(policy: PoolPolicy) -> Self {
    let mut pool = Pool::new(policy);
    pool.handle(Input::Start);
    pool.spawn_all();
    assert_eq!(pool.machine.state(), State::Running);
    pool
  }

  fn handle(&mut self, input: Input) -> Vec<Action> {
    if let Input::Exited { worker, .. } = input {
      if let Some(process) = self.processes.get(&worker) {
        for id in &process.holding {
          if !self.settled.contains_key(id) {
            let deaths = self.deaths.entry(*id).or_default();
            *deaths += 1;
            assert!(
              *deaths <= self.sent[id].max_attempts,
              "{id:?} killed too many"
            );
          }
        }
      }
    }
    let actions = self.machine.handle(input.clone());
    match input {
      Input::Spawned { worker, pid } if self.pending_spawns.remove(&worker) => {
        self.processes.insert(
          worker,
          Process {
            pid,
            ..Process::default()
          },
        );
      }
      Input::SpawnFailed { worker } if self.pending_spawns.remove(&worker) => {
        self.dead.push(worker)
      }
      Input::Exited { worker, .. } if self.processes.remove(&worker).is_some() => {
        self.dead.push(worker)
      }
      Input::Answered { worker, id, .. } => {
        if let Some(process) = self.processes.get_mut(&worker) {
          process.holding.remove(&id);
          process.cancels.remove(&id);
        }
      }
      _ => {}
    }
    for action in &actions {
      self.carry_out(action);
    }
    self.check_invariants();
    actions
  }

  fn carry_out(&mut self, action: &Action) {
    match action {
      Action::Spawn { worker, .. } => {
        assert!(!self.dead.contains(worker) && !self.processes.contains_key(worker));
        assert!(
          self.pending_spawns.insert(*worker),
          "{worker:?} spawned twice"
        );
      }
      Action::Dispatch { worker, id } => {
        let process = self
          .processes
          .get_mut(worker)
          .expect("dispatch to a live worker");
        assert!(!process.ending, "dispatch to a stopping worker");
        assert!(
          process.cancels.is_empty(),
          "dispatch while a cancel is pending"
        );
        assert!(process.holding.insert(*id));
        assert!(process.holding.len() <= self.policy.concurrency);
        assert!(
          !self.settled.contains_key(id),
          "dispatch of a settled request"
        );
      }
      Action::SendCancel { worker, id } => {
        let process = self
          .processes
          .get_mut(worker)
          .expect("cancel to a live worker");
        assert!(process.holding.contains(id));
        assert!(process.cancels.insert(*id));
        assert!(self.settled.contains_key(id), "cancel before the rejection");
      }
      Action::SendPing(worker) => assert!(self.processes.contains_key(worker)),
      Action::SendShutdown(worker) | Action::Signal { worker, .. } => {
        self
          .processes
          .get_mut(worker)
          .expect("a live worker")
          .ending = true;
      }
      Action::SetTimer { timer, .. } => {
        assert!(self.armed.insert(*timer), "{timer:?} armed twice");
      }
      Action::ClearTimer(timer) => {
        assert!(self.armed.remove(timer), "{timer:?} cleared, not armed");
        self.cleared.push(*timer);
      }
      Action::Resolve(id) | Action::Reject { id, .. } => {
        assert!(self.sent.contains_key(id), "{id:?} was never sent");
        let earlier = self.settled.insert(*id, action.clone());
        assert!(
          earlier.is_none(),
          "{id:?} settled twice: {earlier:?} {action:?}"
        );
      }
      Action::Emit(_) => {}
      Action::StartSettled(result) => self.start_settled.push(*result),
      Action::CloseSettled => self.close_settled += 1,
    }
  }

  fn check_invariants(&self) {
    let machine = &self.machine;
    assert_eq!(armed_timers(machine), self.armed, "timer bookkeeping");
    for worker in machine.workers.values() {
      assert!(worker.in_flight.len() <= self.policy.concurrency);
      assert_eq!(worker.pid.is_none(), worker.phase == WorkerPhase::Starting);
    }
    // `max_queue` bounds admission; requests back from a dead worker come on top of it.
    if let Some(max) = self.policy.max_queue {
      let fresh = machine
        .queue
        .values()
        .filter(|id| machine.requests[id].deaths == 0)
        .count();
      assert!(fresh <= max, "{fresh} fresh requests queued, max {max}");
    }
    // Requests the machine holds are exactly those sent and not settled.
    for id in machine.requests.keys() {
      assert!(!self.settled.contains_key(id));
    }
    for id in self.sent.keys() {
      if !self.settled.contains_key(id) {
        assert!(
          machine.requests.contains_key(id),
          "{id:?} lost without settling"
        );
      }
    }
    // Dispatch never leaves a request waiting next to a worker that could take it.
    if !machine.queue.is_empty() {
      assert_eq!(machine.dispatchable_worker(), None);
    }
    // Restart intensity: more crashes than `max_restarts` in the window is the end.
    if machine.state() != State::Exhausted && self.policy.max_restarts != u64::MAX {
      assert!(machine.recent_crashes.len() as u64 <= self.policy.max_restarts);
    }
    assert!(machine.slots.len() <= self.policy.size.max);
    if machine.state() == State::Running {
      assert!(machine.slots.len() >= self.policy.size.min);
    }
    if matches!(
      machine.state(),
      State::Closed | State::Exhausted | State::Idle
    ) {
      assert!(machine.slots.is_empty() && machine.queue.is_empty());
    }
  }

  fn request_with(&mut self, limits: RequestLimits) -> (RequestId, Vec<Action>) {
    let id = RequestId(self.next_id);
    self.next_id += 1;
    self.sent.insert(id, limits);
    (id, self.handle(Input::Request { id, limits }))
  }

  fn request(&mut self) -> (RequestId, Vec<Action>) {
    self.request_with(limits(&self.policy))
  }

  fn spawn_all(&mut self) -> Vec<WorkerKey> {
    let keys: Vec<WorkerKey> = self.pending_spawns.iter().copied().collect();
    for &worker in &keys {
      let pid = self.next_pid;
      self.next_pid += 1;
      self.handle(Input::Spawned { worker, pid });
    }
    keys
  }

  fn fire(&mut self, timer: Timer) -> Vec<Action> {
    assert!(self.armed.remove(&timer), "{timer:?} is not armed");
    self.handle(Input::TimerFired(timer))
  }

  fn answer(&mut self, worker: WorkerKey, id: RequestId) -> Vec<Action> {
    self.handle(Input::Answered {
      worker,
      id,
      ok: true,
    })
  }

  fn exit(&mut self, worker: WorkerKey, status: ExitStatus) -> Vec<Action> {
    self.handle(Input::Exited { worker, status })
  }

  fn pid(&self, worker: WorkerKey) -> u32 {
    self.processes[&worker].pid
  }

  fn holder(&self, id: RequestId) -> Option<WorkerKey> {
    self
      .processes
      .iter()
      .find(|(_, process)| process.holding.contains(&id))
      .map(|(&key, _)| key)
  }

  fn outcome(&self, id: RequestId) -> Option<&Action> {
    self.settled.get(&id)
  }

  fn worker_row(&self, key: WorkerKey) -> WorkerStats {
    self
      .machine
      .stats()
      .workers
      .into_iter()
      .find(|row| row.key == Some(key))
      .expect("a row for the worker")
  }
}

/// The timers the machine's state says are armed; the driver's view must match it exactly.
fn armed_timers(machine: &Machine) -> BTreeSet<Timer> {
  let mut timers = BTreeSet::new();
  for (&id, request) in &machine.requests {
    match request.place {
      Place::Queued(_) if request.limits.queue_timeout.is_some() => {
        timers.insert(Timer::QueueTimeout(id));
      }
      Place::InFlight(_) if request.limits.timeout.is_some() => {
        timers.insert(Timer::RequestTimeout(id));
      }
      _ => {}
    }
  }
  for (&key, worker) in &machine.workers {
    if worker.is_watched() {
      if machine.policy.health_check_interval.is_some() {
        timers.insert(Timer::HealthCheck(key));
      }
      if worker.awaiting_pong {
        timers.insert(Timer::HealthDeadline(key));
      }
      for &id in &worker.cancelled {
        timers.insert(Timer::CancelDeadline(id));
      }
    }
    if matches!(
      worker.phase,
      WorkerPhase::Stopping(LastSent::Shutdown | LastSent::KillSignal)
    ) {
      timers.insert(Timer::Stop(key));
    }
    if worker.idle_armed {
      timers.insert(Timer::Idle(key));
    }
  }
  for (&index, slot) in &machine.slots {
    if slot.is_restarting() {
      timers.insert(Timer::Restart(index));
    }
  }
  for &crash in &machine.recent_crashes {
    timers.insert(Timer::CrashForgotten(crash));
  }
  timers
}

fn events(actions: &[Action]) -> Vec<&Event> {
  actions
    .iter()
    .filter_map(|action| match action {
      Action::Emit(event) => Some(event),
      _ => None,
    })
    .collect()
}

fn dispatches(actions: &[Action]) -> Vec<(WorkerKey, RequestId)> {
  actions
    .iter()
    .filter_map(|action| match action {
      Action::Dispatch { worker, id } => Some((*worker, *id)),
      _ => None,
    })
    .collect()
}

fn spawns(actions: &[Action]) -> Vec<(WorkerKey, usize)> {
  actions
    .iter()
    .filter_map(|action| match action {
      Action::Spawn { worker, index } => Some((*worker, *index)),
      _ => None,
    })
    .collect()
}

fn rejection(pool: &Pool, id: RequestId) -> Option<Rejection> {
  match pool.outcome(id) {
    Some(Action::Reject { reason, .. }) => Some(*reason),
    _ => None,
  }
}

const CRASH: ExitStatus = ExitStatus::Code(1);
const K0: WorkerKey = WorkerKey(0);
const K1: WorkerKey = WorkerKey(1);

#[test]
fn start_spawns_the_minimum_and_settles_once_all_are_up() {
  let mut pool = Pool::new(policy());
  let actions = pool.handle(Input::Start);
  assert_eq!(
    actions,
    [
      Action::Spawn {
        worker: K0,
        index: 0
      },
      Action::Spawn {
        worker: K1,
        index: 1
      },
    ]
  );
  assert_eq!(pool.machine.state(), State::Starting);
  assert_eq!(pool.handle(Input::Start), []);
  assert_eq!(
    pool.handle(Input::Spawned {
      worker: K0,
      pid: 10
    }),
    [Action::Emit(Event::Spawn { worker: 0, pid: 10 })]
  );
  assert_eq!(pool.machine.size(), 1);
  let actions = pool.handle(Input::Spawned {
    worker: K1,
    pid: 11,
  });
  assert_eq!(actions.last(), Some(&Action::StartSettled(Ok(()))));
  assert_eq!(pool.machine.state(), State::Running);
  assert_eq!(pool.machine.size(), 2);
  assert_eq!(pool.handle(Input::Start), [Action::StartSettled(Ok(()))]);
}

#[test]
fn a_request_before_start_starts_the_pool_and_waits_for_a_worker() {
  let mut pool = Pool::new(policy());
  let (id, actions) = pool.request();
  assert_eq!(spawns(&actions).len(), 2);
  assert_eq!(pool.machine.stats().queued, 1);
  let actions = pool.handle(Input::Spawned {
    worker: K1,
    pid: 11,
  });
  assert_eq!(dispatches(&actions), [(K1, id)]);
  assert!(actions.contains(&Action::ClearTimer(Timer::QueueTimeout(id))));
  assert!(actions.contains(&Action::SetTimer {
    timer: Timer::RequestTimeout(id),
    after: ms(1_000)
  }));
}

#[test]
fn dispatch_picks_the_least_loaded_ready_worker_within_concurrency() {
  let mut pool = Pool::running(PoolPolicy {
    concurrency: 2,
    ..policy()
  });
  let mut placed = Vec::new();
  for _ in 0..4 {
    let (_, actions) = pool.request();
    placed.extend(dispatches(&actions).into_iter().map(|(worker, _)| worker));
  }
  assert_eq!(placed, [K0, K1, K0, K1]);
  let (fifth, actions) = pool.request();
  assert_eq!(dispatches(&actions), []);
  assert_eq!(pool.worker_row(K0).state, WorkerState::Busy);
  // The first worker to free a place gets the waiting request.
  let held = *pool.processes[&K1].holding.first().unwrap();
  let actions = pool.answer(K1, held);
  assert_eq!(actions[1], Action::Resolve(held));
  assert_eq!(dispatches(&actions), [(K1, fifth)]);
}

#[test]
fn the_queue_is_fifo_and_rejects_at_once_when_full() {
  let mut pool = Pool::running(policy());
  pool.request();
  pool.request();
  let queued: Vec<RequestId> = (0..3).map(|_| pool.request().0).collect();
  let (full, actions) = pool.request();
  assert_eq!(
    actions,
    [Action::Reject {
      id: full,
      reason: Rejection::QueueFull
    }]
  );
  for &id in &queued {
    let (worker, held) = pool
      .processes
      .iter()
      .find_map(|(&k, p)| p.holding.first().map(|&id| (k, id)))
      .unwrap();
    let actions = pool.answer(worker, held);
    assert_eq!(dispatches(&actions), [(worker, id)]);
  }
  assert_eq!(pool.machine.stats().rejected.queue_full, 1);
}

#[test]
fn max_queue_zero_rejects_whatever_cannot_be_dispatched_at_once() {
  let mut pool = Pool::running(PoolPolicy {
    max_queue: Some(0),
    ..policy()
  });
  pool.request();
  pool.request();
  let (id, _) = pool.request();
  assert_eq!(rejection(&pool, id), Some(Rejection::QueueFull));
  let mut unbounded = Pool::running(PoolPolicy {
    max_queue: None,
    ..policy()
  });
  for _ in 0..100 {
    unbounded.request();
  }
  assert_eq!(unbounded.machine.stats().queued, 98);
}

#[test]
fn a_queue_timeout_rejects_without_touching_any_worker() {
  let mut pool = Pool::running(policy());
  pool.request();
  pool.request();
  let (id, _) = pool.request();
  let actions = pool.fire(Timer::QueueTimeout(id));
  assert_eq!(
    actions,
    [Action::Reject {
      id,
      reason: Rejection::QueueTimeout
    }]
  );
  assert_eq!(pool.machine.stats().queued, 0);
}

#[test]
fn aborting_a_queued_request_touches_no_worker() {
  let mut pool = Pool::running(policy());
  pool.request();
  pool.request();
  let (id, _) = pool.request();
  assert_eq!(
    pool.handle(Input::Abort(id)),
    [
      Action::ClearTimer(Timer::QueueTimeout(id)),
      Action::Reject {
        id,
        reason: Rejection::Aborted
      },
    ]
  );
  assert_eq!(pool.handle(Input::Abort(id)), []);
}

#[test]
fn a_cancelled_worker_keeps_its_slot_until_it_answers_and_the_late_answer_is_dropped() {
  let mut pool = Pool::running(policy());
  let (first, _) = pool.request();
  let worker = pool.holder(first).unwrap();
  assert_eq!(
    pool.fire(Timer::RequestTimeout(first)),
    [
      Action::Reject {
        id: first,
        reason: Rejection::Timeout
      },
      Action::SendCancel { worker, id: first },
      Action::SetTimer {
        timer: Timer::CancelDeadline(first),
        after: ms(300)
      },
    ]
  );
  // The other worker takes the next one; the third waits rather than go to the cancelling one.
  let (second, actions) = pool.request();
  assert_ne!(dispatches(&actions)[0].0, worker);
  let (third, actions) = pool.request();
  assert_eq!(dispatches(&actions), []);
  let actions = pool.answer(worker, first);
  assert_eq!(actions[0], Action::ClearTimer(Timer::CancelDeadline(first)));
  assert!(!actions.contains(&Action::Resolve(first)));
  assert_eq!(dispatches(&actions), [(worker, third)]);
  assert_eq!(
    pool.outcome(first),
    Some(&Action::Reject {
      id: first,
      reason: Rejection::Timeout
    })
  );
  assert!(pool.outcome(second).is_none());
}

#[test]
fn aborting_in_flight_rejects_at_once_and_sends_a_cancel() {
  let mut pool = Pool::running(policy());
  let (id, _) = pool.request();
  let worker = pool.holder(id).unwrap();
  assert_eq!(
    pool.handle(Input::Abort(id)),
    [
      Action::ClearTimer(Timer::RequestTimeout(id)),
      Action::Reject {
        id,
        reason: Rejection::Aborted
      },
      Action::SendCancel { worker, id },
      Action::SetTimer {
        timer: Timer::CancelDeadline(id),
        after: ms(300)
      },
    ]
  );
  assert_eq!(pool.machine.stats().rejected.aborted, 1);
}

#[test]
fn a_cancel_left_unanswered_kills_the_worker_as_a_timeout_recycle_and_a_crash() {
  let mut pool = Pool::running(PoolPolicy {
    concurrency: 2,
    max_attempts: 2,
    ..policy()
  });
  let (hung, _) = pool.request();
  let worker = pool.holder(hung).unwrap();
  let (other, _) = pool.request();
  let (same, _) = pool.request();
  assert_eq!(pool.holder(same), Some(worker));
  pool.fire(Timer::RequestTimeout(hung));
  let pid = pool.pid(worker);
  let actions = pool.fire(Timer::CancelDeadline(hung));
  assert_eq!(
    actions,
    [
      Action::Emit(Event::Recycle {
        worker: 0,
        pid,
        reason: RecycleReason::Timeout
      }),
      Action::Signal {
        worker,
        signal: Signal::SIGKILL
      },
    ]
  );
  let actions = pool.exit(worker, ExitStatus::Signal(libc::SIGKILL));
  // Its other request goes to the other worker; the slot restarts with backoff.
  assert!(matches!(
    events(&actions)[1],
    Event::Crashed { worker: 0, .. }
  ));
  assert_eq!(dispatches(&actions), [(pool.holder(other).unwrap(), same)]);
  assert!(actions.contains(&Action::SetTimer {
    timer: Timer::Restart(0),
    after: ms(100)
  }));
  let stats = pool.machine.stats();
  assert_eq!((stats.crashes, stats.recycles), (1, 0));
}

#[test]
fn a_crash_without_attempts_left_rejects_with_what_an_operator_needs() {
  let mut pool = Pool::running(policy());
  let (id, _) = pool.request();
  pool.request();
  let (queued, _) = pool.request();
  let worker = pool.holder(id).unwrap();
  let pid = pool.pid(worker);
  let status = ExitStatus::Signal(libc::SIGSEGV);
  let actions = pool.exit(worker, status);
  assert_eq!(
    rejection(&pool, id),
    Some(Rejection::WorkerExited {
      worker,
      pid,
      status,
      attempts: 1
    })
  );
  assert_eq!(
    events(&actions),
    [
      &Event::Exit {
        worker: 0,
        pid,
        status
      },
      &Event::Crashed {
        worker: 0,
        pid,
        status,
        restart_count: 0
      },
      &Event::Restarting {
        worker: 0,
        delay: ms(100),
        attempt: 1
      },
    ]
  );
  // The queued request is untouched by the death.
  assert!(pool.outcome(queued).is_none());
  assert_eq!(pool.machine.stats().queued, 1);
  assert_eq!(pool.worker_row(K1).state, WorkerState::Busy);
  let restarting = pool.machine.stats().workers[0].clone();
  assert_eq!(
    (restarting.worker, restarting.state, restarting.crashes),
    (0, WorkerState::Restarting, 1)
  );
}

#[test]
fn a_crash_with_attempts_left_sends_the_request_to_the_front_even_when_the_queue_is_full() {
  let mut pool = Pool::running(PoolPolicy {
    max_attempts: 2,
    ..policy()
  });
  let (retried, _) = pool.request();
  pool.request();
  let queued: Vec<RequestId> = (0..3).map(|_| pool.request().0).collect();
  let worker = pool.holder(retried).unwrap();
  pool.exit(worker, CRASH);
  let order: Vec<RequestId> = pool.machine.queue.values().copied().collect();
  assert_eq!(order, [retried, queued[0], queued[1], queued[2]]);
  assert!(pool.armed.contains(&Timer::QueueTimeout(retried)));
  // Admission is still bounded: the queue is over `max_queue` only by the returned request.
  let (late, _) = pool.request();
  assert_eq!(rejection(&pool, late), Some(Rejection::QueueFull));
  // The restarted worker takes the returned request first.
  pool.fire(Timer::Restart(0));
  let actions = pool.spawn_all();
  assert_eq!(pool.holder(retried), Some(actions[0]));
}

#[test]
fn a_poison_request_kills_exactly_max_attempts_workers() {
  let mut pool = Pool::running(PoolPolicy {
    max_attempts: 3,
    max_restarts: 10,
    ..policy()
  });
  let (poison, _) = pool.request();
  let mut killed = 0;
  while let Some(worker) = pool.holder(poison) {
    pool.exit(worker, ExitStatus::Signal(libc::SIGSEGV));
    killed += 1;
    for index in [0, 1] {
      if pool.armed.contains(&Timer::Restart(index)) {
        pool.fire(Timer::Restart(index));
      }
    }
    pool.spawn_all();
  }
  assert_eq!(killed, 3);
  assert!(matches!(
    rejection(&pool, poison),
    Some(Rejection::WorkerExited { attempts: 3, .. })
  ));
}

#[test]
fn restarts_back_off_and_a_sign_of_life_resets_the_backoff() {
  let mut pool = Pool::running(PoolPolicy {
    max_restarts: 100,
    ..policy()
  });
  let mut delays = Vec::new();
  let mut worker = K0;
  for _ in 0..5 {
    let actions = pool.exit(worker, CRASH);
    delays.extend(
      events(&actions)
        .into_iter()
        .filter_map(|event| match event {
          Event::Restarting { delay, .. } => Some(*delay),
          _ => None,
        }),
    );
    pool.fire(Timer::Restart(0));
    worker = pool.spawn_all()[0];
  }
  assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1_000)]);
  assert_eq!(pool.worker_row(worker).restart_count, 5);
  pool.handle(Input::SignOfLife { worker });
  assert_eq!(pool.worker_row(worker).restart_count, 0);
  let actions = pool.exit(worker, CRASH);
  assert!(actions.contains(&Action::SetTimer {
    timer: Timer::Restart(0),
    after: ms(100)
  }));
  assert_eq!(pool.machine.stats().restarts, 5);
}

#[test]
fn more_crashes_than_max_restarts_within_the_window_exhaust_the_pool() {
  let mut pool = Pool::running(PoolPolicy {
    max_attempts: 5,
    ..policy()
  });
  let (in_flight, _) = pool.request();
  pool.request();
  let (queued, _) = pool.request();
  let survivor = K1;
  // Three crashes of slot 0 stay within maxRestarts (3)...
  for _ in 0..3 {
    let worker = pool.machine.slots[&0].occupant.unwrap();
    pool.exit(worker, CRASH);
    pool.fire(Timer::Restart(0));
    pool.spawn_all();
  }
  assert_eq!(pool.machine.state(), State::Running);
  // ...and a fourth within the window is one too many.
  let holder = pool.holder(in_flight).unwrap();
  let actions = pool.exit(holder, CRASH);
  assert!(events(&actions).iter().any(|event| matches!(
    event,
    Event::Exhausted {
      crashes: 4,
      window,
      ..
    } if *window == ms(10_000)
  )));
  assert_eq!(pool.machine.state(), State::Exhausted);
  assert_eq!(rejection(&pool, in_flight), Some(Rejection::Exhausted));
  assert_eq!(rejection(&pool, queued), Some(Rejection::Exhausted));
  assert!(actions.contains(&Action::SendShutdown(survivor)) || holder == survivor);
  let (later, _) = pool.request();
  assert_eq!(rejection(&pool, later), Some(Rejection::Exhausted));
  assert_eq!(
    pool.handle(Input::Start),
    [Action::StartSettled(Err(StartError::Exhausted))]
  );
  // close() waits for the last worker, then the pool has nothing left.
  assert_eq!(pool.handle(Input::Close { drain: true }), []);
  let left: Vec<WorkerKey> = pool.processes.keys().copied().collect();
  for worker in left {
    pool.exit(worker, ExitStatus::Code(0));
  }
  assert_eq!(pool.close_settled, 1);
  assert!(pool.armed.is_empty());
  assert_eq!(
    pool.handle(Input::Close { drain: true }),
    [Action::CloseSettled]
  );
}

#[test]
fn crashes_older_than_the_window_are_forgotten() {
  let mut pool = Pool::running(PoolPolicy {
    max_restarts: 1,
    ..policy()
  });
  pool.exit(K0, CRASH);
  pool.fire(Timer::CrashForgotten(0));
  pool.exit(K1, CRASH);
  assert_eq!(pool.machine.state(), State::Running);
  pool.fire(Timer::Restart(0));
  let worker = pool.spawn_all()[0];
  pool.exit(worker, CRASH);
  assert_eq!(pool.machine.state(), State::Exhausted);
  assert!(pool.armed.is_empty());
}

#[test]
fn a_worker_that_misses_a_pong_is_killed_as_unresponsive_and_crashes() {
  let mut pool = Pool::running(PoolPolicy {
    health_check_interval: Some(ms(1_000)),
    ..policy()
  });
  assert!(pool.armed.contains(&Timer::HealthCheck(K0)));
  assert_eq!(
    pool.fire(Timer::HealthCheck(K0)),
    [
      Action::SendPing(K0),
      Action::SetTimer {
        timer: Timer::HealthDeadline(K0),
        after: ms(300)
      },
      Action::SetTimer {
        timer: Timer::HealthCheck(K0),
        after: ms(1_000)
      },
    ]
  );
  assert_eq!(
    pool.handle(Input::SignOfLife { worker: K0 }),
    [Action::ClearTimer(Timer::HealthDeadline(K0))]
  );
  pool.fire(Timer::HealthCheck(K0));
  let pid = pool.pid(K0);
  assert_eq!(
    pool.fire(Timer::HealthDeadline(K0)),
    [
      Action::Emit(Event::Unresponsive { worker: 0, pid }),
      Action::ClearTimer(Timer::HealthCheck(K0)),
      Action::Signal {
        worker: K0,
        signal: Signal::SIGKILL
      },
    ]
  );
  // A last word from a worker being killed changes nothing; its exit is a crash whatever the code.
  assert_eq!(pool.handle(Input::SignOfLife { worker: K0 }), []);
  let actions = pool.exit(K0, ExitStatus::Code(0));
  assert!(matches!(events(&actions)[1], Event::Crashed { .. }));
}

#[test]
fn a_lost_channel_kills_the_worker_and_its_exit_is_a_crash() {
  let mut pool = Pool::running(policy());
  assert_eq!(
    pool.handle(Input::ChannelClosed { worker: K0 }),
    [Action::Signal {
      worker: K0,
      signal: Signal::SIGKILL
    }]
  );
  assert_eq!(pool.handle(Input::ChannelClosed { worker: K0 }), []);
  let actions = pool.exit(K0, ExitStatus::Code(0));
  assert!(matches!(events(&actions)[1], Event::Crashed { .. }));
}

#[test]
fn recycling_by_count_spawns_the_replacement_first_and_drains_the_old_worker() {
  let mut pool = Pool::running(PoolPolicy {
    size: SizeRange { min: 1, max: 1 },
    concurrency: 2,
    recycle_after: Some(20),
    ..policy()
  });
  let threshold = pool.machine.workers[&K0].recycle_at.unwrap();
  assert!((20..=22).contains(&threshold), "{threshold}");
  for _ in 0..threshold - 1 {
    let (id, _) = pool.request();
    pool.answer(K0, id);
  }
  let (kept, _) = pool.request();
  let (last, _) = pool.request();
  let actions = pool.answer(K0, last);
  let pid = pool.pid(K0);
  assert_eq!(
    events(&actions),
    [&Event::Recycle {
      worker: 0,
      pid,
      reason: RecycleReason::Requests
    }]
  );
  let replacement = spawns(&actions)[0].0;
  // Until the replacement is up, the old worker still serves.
  let (meanwhile, actions) = pool.request();
  assert_eq!(dispatches(&actions), [(K0, meanwhile)]);
  assert_eq!(pool.machine.stats().recycles, 1);
  // Once it is up, the old worker takes nothing new and finishes what it holds.
  pool.spawn_all();
  assert_eq!(pool.worker_row(K0).state, WorkerState::Recycling);
  let (next, actions) = pool.request();
  assert_eq!(dispatches(&actions), [(replacement, next)]);
  pool.answer(K0, kept);
  let actions = pool.answer(K0, meanwhile);
  assert_eq!(
    &actions[actions.len() - 2..],
    [
      Action::SendShutdown(K0),
      Action::SetTimer {
        timer: Timer::Stop(K0),
        after: ms(200)
      },
    ]
  );
  assert_eq!(pool.machine.size(), 1);
  let actions = pool.exit(K0, ExitStatus::Code(0));
  assert_eq!(events(&actions).len(), 1, "a stopped worker is no crash");
  assert_eq!(pool.machine.stats().crashes, 0);
  assert_eq!(pool.worker_row(replacement).worker, 0);
}

#[test]
fn recycling_by_memory_goes_one_worker_at_a_time() {
  let mut pool = Pool::running(PoolPolicy {
    max_memory: Some(1_000),
    ..policy()
  });
  assert_eq!(
    pool.handle(Input::Rss {
      worker: K0,
      bytes: 1_000
    }),
    []
  );
  let first = pool.handle(Input::Rss {
    worker: K0,
    bytes: 1_001,
  });
  assert!(matches!(
    events(&first)[0],
    Event::Recycle {
      worker: 0,
      reason: RecycleReason::Memory,
      ..
    }
  ));
  assert_eq!(
    pool.handle(Input::Rss {
      worker: K1,
      bytes: 5_000
    }),
    []
  );
  pool.spawn_all();
  // The old worker held nothing: it stops at once, and the next recycle begins.
  assert_eq!(pool.worker_row(K0).state, WorkerState::Stopping);
  assert_eq!(pool.machine.size(), 2);
  assert!(pool.machine.slots[&1].replacement.is_some());
  assert_eq!(pool.machine.stats().recycles, 2);
}

#[test]
fn a_failed_replacement_counts_as_a_crash_and_the_worker_serves_on() {
  let mut pool = Pool::running(PoolPolicy {
    max_memory: Some(1_000),
    ..policy()
  });
  let actions = pool.handle(Input::Rss {
    worker: K0,
    bytes: 2_000,
  });
  let replacement = spawns(&actions)[0].0;
  let actions = pool.handle(Input::SpawnFailed {
    worker: replacement,
  });
  assert_eq!(events(&actions), [&Event::SpawnFailed { worker: 0 }]);
  assert_eq!(pool.machine.stats().crashes, 1);
  let (id, actions) = pool.request();
  assert_eq!(dispatches(&actions), [(K0, id)]);
}

#[test]
fn the_pool_grows_while_requests_wait_and_shrinks_after_idle_timeout() {
  let mut pool = Pool::running(PoolPolicy {
    size: SizeRange { min: 1, max: 4 },
    concurrency: 2,
    max_queue: None,
    ..policy()
  });
  pool.request();
  pool.request();
  // Five wait: three more workers would take them, but only three fit under max.
  let mut grown = Vec::new();
  for _ in 0..5 {
    grown.extend(spawns(&pool.request().1));
  }
  assert_eq!(
    grown.iter().map(|&(_, index)| index).collect::<Vec<_>>(),
    [1, 2, 3]
  );
  let actions = pool.spawn_all();
  assert_eq!(actions.len(), 3);
  assert_eq!(pool.machine.stats().queued, 0);
  assert_eq!(pool.machine.size(), 4);
  // Idle workers above the minimum are stopped after idle_timeout; the minimum stays.
  let holders: Vec<(WorkerKey, RequestId)> = pool
    .processes
    .iter()
    .flat_map(|(&key, p)| p.holding.iter().map(move |&id| (key, id)))
    .collect();
  for (worker, id) in holders {
    pool.answer(worker, id);
  }
  let idle = |pool: &Pool| -> Vec<Timer> {
    pool
      .armed
      .iter()
      .copied()
      .filter(|timer| matches!(timer, Timer::Idle(_)))
      .collect()
  };
  assert_eq!(idle(&pool).len(), 4);
  let mut stopped = 0;
  while let Some(&timer) = idle(&pool).first() {
    let actions = pool.fire(timer);
    stopped += actions
      .iter()
      .filter(|action| matches!(action, Action::SendShutdown(_)))
      .count();
  }
  // Down to the minimum, where the last idle timer was cleared rather than run out.
  assert_eq!(stopped, 3);
  assert_eq!(pool.machine.slots.len(), 1);
  assert_eq!(pool.machine.size(), 1);
}

#[test]
fn a_request_arriving_clears_the_idle_timer() {
  let mut pool = Pool::running(PoolPolicy {
    size: SizeRange { min: 0, max: 1 },
    ..policy()
  });
  let (id, actions) = pool.request();
  let worker = spawns(&actions)[0].0;
  pool.spawn_all();
  let actions = pool.answer(worker, id);
  assert_eq!(
    actions.last(),
    Some(&Action::SetTimer {
      timer: Timer::Idle(worker),
      after: ms(5_000)
    })
  );
  let (_, actions) = pool.request();
  assert_eq!(
    actions.last(),
    Some(&Action::ClearTimer(Timer::Idle(worker)))
  );
}

#[test]
fn the_stop_schedule_is_shutdown_then_kill_signal_then_sigkill_within_stop_timeout() {
  for stop_timeout in [ms(0), ms(1), ms(401)] {
    let mut pool = Pool::running(PoolPolicy {
      stop_timeout,
      kill_signal: Signal::SIGINT,
      ..policy()
    });
    let mut total = Duration::ZERO;
    let mut steps = Vec::new();
    let mut actions = pool.handle(Input::Close { drain: true });
    for _ in 0..3 {
      for action in &actions {
        match action {
          Action::SetTimer {
            timer: Timer::Stop(K0),
            after,
          } => total += *after,
          Action::SendShutdown(K0) => steps.push(None),
          Action::Signal { worker: K0, signal } => steps.push(Some(*signal)),
          _ => {}
        }
      }
      actions = if pool.armed.contains(&Timer::Stop(K0)) {
        pool.fire(Timer::Stop(K0))
      } else {
        Vec::new()
      };
    }
    assert_eq!(total, stop_timeout);
    assert_eq!(steps, [None, Some(Signal::SIGINT), Some(Signal::SIGKILL)]);
  }
}

#[test]
fn close_with_drain_finishes_queued_and_in_flight_requests_first() {
  let mut pool = Pool::running(policy());
  let (a, _) = pool.request();
  let (b, _) = pool.request();
  let (queued, _) = pool.request();
  assert_eq!(pool.handle(Input::Close { drain: true }), []);
  assert_eq!(pool.machine.state(), State::Closing);
  let (late, _) = pool.request();
  assert_eq!(rejection(&pool, late), Some(Rejection::Closed));
  let holder_a = pool.holder(a).unwrap();
  let actions = pool.answer(holder_a, a);
  // Busy again with the queued one: nothing stops yet.
  assert_eq!(dispatches(&actions), [(holder_a, queued)]);
  let holder_b = pool.holder(b).unwrap();
  let actions = pool.answer(holder_b, b);
  assert!(actions.contains(&Action::SendShutdown(holder_b)));
  let actions = pool.answer(holder_a, queued);
  assert!(actions.contains(&Action::SendShutdown(holder_a)));
  pool.exit(holder_a, ExitStatus::Code(0));
  assert_eq!(pool.close_settled, 0);
  let actions = pool.exit(holder_b, ExitStatus::Signal(libc::SIGTERM));
  assert_eq!(actions.last(), Some(&Action::CloseSettled));
  assert_eq!(pool.machine.state(), State::Closed);
  assert!(pool.armed.is_empty());
  let stats = pool.machine.stats();
  assert_eq!((stats.completed, stats.failed, stats.crashes), (3, 1, 0));
  assert_eq!(
    pool.handle(Input::Close { drain: false }),
    [Action::CloseSettled]
  );
  assert_eq!(
    pool.handle(Input::Start),
    [Action::StartSettled(Err(StartError::Closed))]
  );
}

#[test]
fn close_without_drain_rejects_the_queue_and_stops_workers_at_once() {
  let mut pool = Pool::running(PoolPolicy {
    max_attempts: 3,
    ..policy()
  });
  let (a, _) = pool.request();
  pool.request();
  let (queued, _) = pool.request();
  let holder = pool.holder(a).unwrap();
  let actions = pool.handle(Input::Close { drain: false });
  assert_eq!(rejection(&pool, queued), Some(Rejection::Closed));
  assert!(actions.contains(&Action::SendShutdown(K0)));
  assert!(actions.contains(&Action::SendShutdown(K1)));
  // In flight until its worker is gone; then rejected, never retried.
  assert!(pool.outcome(a).is_none());
  let pid = pool.pid(holder);
  pool.exit(holder, ExitStatus::Code(0));
  assert_eq!(
    rejection(&pool, a),
    Some(Rejection::WorkerExited {
      worker: holder,
      pid,
      status: ExitStatus::Code(0),
      attempts: 1
    })
  );
  let other = *pool.processes.keys().next().unwrap();
  let actions = pool.exit(other, ExitStatus::Code(0));
  assert_eq!(actions.last(), Some(&Action::CloseSettled));
  assert!(pool.armed.is_empty());
}

#[test]
fn close_while_starting_rejects_start_and_stops_workers_as_they_come_up() {
  let mut pool = Pool::new(policy());
  pool.handle(Input::Start);
  assert_eq!(
    pool.handle(Input::Close { drain: true }),
    [Action::StartSettled(Err(StartError::Closed))]
  );
  let actions = pool.handle(Input::Spawned {
    worker: K0,
    pid: 10,
  });
  assert!(actions.contains(&Action::SendShutdown(K0)));
  pool.handle(Input::SpawnFailed { worker: K1 });
  let actions = pool.exit(K0, ExitStatus::Code(0));
  assert_eq!(actions.last(), Some(&Action::CloseSettled));
  let mut idle = Pool::new(policy());
  assert_eq!(
    idle.handle(Input::Close { drain: true }),
    [Action::CloseSettled]
  );
  assert_eq!(idle.machine.state(), State::Closed);
}

#[test]
fn a_spawn_failure_during_start_fails_start_and_closes_the_pool() {
  let mut pool = Pool::new(policy());
  let (served, _) = pool.request();
  pool.handle(Input::Spawned {
    worker: K1,
    pid: 11,
  });
  assert_eq!(
    pool.holder(served),
    Some(K1),
    "served by the worker that is up"
  );
  let (waiting, _) = pool.request();
  let actions = pool.handle(Input::SpawnFailed { worker: K0 });
  assert_eq!(
    actions[0],
    Action::StartSettled(Err(StartError::SpawnFailed))
  );
  assert_eq!(rejection(&pool, waiting), Some(Rejection::Closed));
  assert!(actions.contains(&Action::SendShutdown(K1)));
  pool.exit(K1, ExitStatus::Code(0));
  assert!(matches!(
    rejection(&pool, served),
    Some(Rejection::WorkerExited { .. })
  ));
  assert_eq!(pool.machine.state(), State::Closed);
}

#[test]
fn a_restart_that_fails_to_spawn_is_a_crash_and_backs_off() {
  let mut pool = Pool::running(policy());
  pool.exit(K0, CRASH);
  let actions = pool.fire(Timer::Restart(0));
  let worker = spawns(&actions)[0].0;
  let actions = pool.handle(Input::SpawnFailed { worker });
  assert_eq!(
    events(&actions),
    [
      &Event::SpawnFailed { worker: 0 },
      &Event::Restarting {
        worker: 0,
        delay: ms(200),
        attempt: 2
      }
    ]
  );
  assert_eq!(pool.machine.stats().crashes, 2);
}

#[test]
fn inputs_about_unknown_or_gone_workers_and_requests_change_nothing() {
  let mut pool = Pool::running(PoolPolicy {
    health_check_interval: Some(ms(1_000)),
    ..policy()
  });
  let (id, _) = pool.request();
  let holder = pool.holder(id).unwrap();
  let gone = WorkerKey(99);
  for input in [
    Input::Spawned {
      worker: holder,
      pid: 5,
    },
    Input::SpawnFailed { worker: holder },
    Input::Answered {
      worker: gone,
      id,
      ok: true,
    },
    Input::Answered {
      worker: holder,
      id: RequestId(77),
      ok: true,
    },
    Input::SignOfLife { worker: gone },
    Input::ChannelClosed { worker: gone },
    Input::Exited {
      worker: gone,
      status: CRASH,
    },
    Input::Rss {
      worker: holder,
      bytes: u64::MAX,
    },
    Input::Abort(RequestId(77)),
    Input::TimerFired(Timer::QueueTimeout(id)),
    Input::TimerFired(Timer::HealthDeadline(holder)),
    Input::TimerFired(Timer::Stop(holder)),
    Input::TimerFired(Timer::Idle(holder)),
    Input::TimerFired(Timer::Restart(0)),
    Input::TimerFired(Timer::CancelDeadline(id)),
    Input::TimerFired(Timer::CrashForgotten(3)),
    Input::TimerFired(Timer::HealthCheck(gone)),
  ] {
    assert_eq!(pool.handle(input.clone()), [], "{input:?}");
  }
  // A repeated id is ignored rather than settled twice.
  assert_eq!(
    pool.handle(Input::Request {
      id,
      limits: limits(&policy())
    }),
    []
  );
}

#[test]
fn stats_count_every_outcome_and_describe_every_worker() {
  let mut pool = Pool::running(policy());
  let (ok, _) = pool.request();
  let (failing, _) = pool.request();
  let (waiting, _) = pool.request();
  pool.handle(Input::Abort(waiting));
  pool.answer(pool.holder(ok).unwrap(), ok);
  pool.handle(Input::Answered {
    worker: pool.holder(failing).unwrap(),
    id: failing,
    ok: false,
  });
  let stats = pool.machine.stats();
  assert_eq!(stats.state, State::Running);
  assert_eq!((stats.completed, stats.failed), (1, 2));
  assert_eq!(
    stats.rejected,
    RejectionCounts {
      worker_error: 1,
      aborted: 1,
      ..RejectionCounts::default()
    }
  );
  assert_eq!(stats.workers.len(), 2);
  assert_eq!(
    stats.workers[0],
    WorkerStats {
      worker: 0,
      key: Some(K0),
      pid: Some(pool.pid(K0)),
      state: WorkerState::Ready,
      in_flight: 0,
      served: 1,
      crashes: 0,
      restart_count: 0,
    }
  );
}

#[test]
fn names_are_those_javascript_sees() {
  let states = [
    State::Idle,
    State::Starting,
    State::Running,
    State::Closing,
    State::Closed,
    State::Exhausted,
  ]
  .map(State::as_str);
  assert_eq!(
    states,
    [
      "idle",
      "starting",
      "running",
      "closing",
      "closed",
      "exhausted"
    ]
  );
  let workers = [
    WorkerState::Starting,
    WorkerState::Ready,
    WorkerState::Busy,
    WorkerState::Recycling,
    WorkerState::Stopping,
    WorkerState::Restarting,
  ]
  .map(WorkerState::as_str);
  assert_eq!(
    workers,
    [
      "starting",
      "ready",
      "busy",
      "recycling",
      "stopping",
      "restarting"
    ]
  );
  let reasons = [
    RecycleReason::Requests,
    RecycleReason::Memory,
    RecycleReason::Timeout,
  ]
  .map(RecycleReason::as_str);
  assert_eq!(reasons, ["requests", "memory", "timeout"]);
}

/// A small seeded generator (PCG-style LCG), so a failing run can be replayed.
struct Dice(u64);

impl Dice {
  fn below(&mut self, n: u64) -> u64 {
    self.0 = self
      .0
      .wrapping_mul(6_364_136_223_846_793_005)
      .wrapping_add(1_442_695_040_888_963_407);
    (self.0 >> 33) % n
  }

  fn chance(&mut self, percent: u64) -> bool {
    self.below(100) < percent
  }

  fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
  }
}

fn random_policy(dice: &mut Dice) -> PoolPolicy {
  let min = dice.below(3) as usize;
  let max = (min + dice.below(3) as usize).max(1);
  let some_ms = |dice: &mut Dice, n: u64| dice.chance(70).then(|| ms(1 + dice.below(n)));
  PoolPolicy {
    size: SizeRange { min, max },
    idle_timeout: ms(dice.below(100)),
    concurrency: 1 + dice.below(3) as usize,
    max_queue: dice.chance(80).then(|| dice.below(6) as usize),
    request_timeout: some_ms(dice, 100),
    queue_timeout: some_ms(dice, 100),
    max_attempts: 1 + dice.below(3) as u32,
    max_restarts: if dice.chance(10) {
      u64::MAX
    } else {
      2 + dice.below(8)
    },
    restart_window: ms(1 + dice.below(500)),
    recycle_after: dice.chance(40).then(|| 1 + dice.below(6)),
    max_memory: dice.chance(40).then_some(1_000),
    memory_check_interval: ms(100),
    health_check_interval: some_ms(dice, 100),
    health_check_timeout: ms(dice.below(50)),
    stop_timeout: ms(dice.below(50)),
    kill_signal: Signal::SIGTERM,
    restart_delay: ms(dice.below(20)),
    max_restart_delay: ms(dice.below(100)),
  }
}

/// One random input the driver could feed now, or now and then a stale one.
fn random_step(pool: &mut Pool, dice: &mut Dice) {
  let live: Vec<WorkerKey> = pool.processes.keys().copied().collect();
  let pending: Vec<WorkerKey> = pool.pending_spawns.iter().copied().collect();
  let sent: Vec<RequestId> = pool.sent.keys().copied().collect();
  let armed: Vec<Timer> = pool.armed.iter().copied().collect();
  match dice.below(100) {
    0..=19 => {
      let mut limits = pool.policy.request_limits();
      limits.max_attempts = 1 + dice.below(3) as u32;
      if dice.chance(30) {
        limits.timeout = None;
      }
      pool.request_with(limits);
    }
    20..=23 => {
      if let Some(id) = dice.pick(&sent) {
        pool.handle(Input::Abort(id));
      }
    }
    24 => {
      pool.handle(Input::Start);
    }
    25..=34 => {
      if let Some(worker) = dice.pick(&pending) {
        if dice.chance(8) {
          pool.handle(Input::SpawnFailed { worker });
        } else {
          let pid = pool.next_pid;
          pool.next_pid += 1;
          pool.handle(Input::Spawned { worker, pid });
        }
      }
    }
    35..=51 => {
      let held: Vec<(WorkerKey, RequestId)> = pool
        .processes
        .iter()
        .flat_map(|(&key, p)| p.holding.iter().map(move |&id| (key, id)))
        .collect();
      if let Some((worker, id)) = dice.pick(&held) {
        let ok = dice.chance(80);
        pool.handle(Input::Answered { worker, id, ok });
      }
    }
    52..=54 => {
      if let Some(worker) = dice.pick(&live) {
        pool.handle(Input::SignOfLife { worker });
      }
    }
    55 => {
      if let Some(worker) = dice.pick(&live) {
        pool.handle(Input::ChannelClosed { worker });
      }
    }
    56..=59 => {
      if let Some(worker) = dice.pick(&live) {
        let status = match dice.below(3) {
          0 => ExitStatus::Code(0),
          1 => CRASH,
          _ => ExitStatus::Signal(libc::SIGKILL),
        };
        pool.exit(worker, status);
      }
    }
    60..=65 => {
      let ending: Vec<WorkerKey> = pool
        .processes
        .iter()
        .filter(|(_, p)| p.ending)
        .map(|(&k, _)| k)
        .collect();
      if let Some(worker) = dice.pick(&ending) {
        pool.exit(worker, ExitStatus::Signal(libc::SIGTERM));
      }
    }
    66..=67 => {
      if let Some(worker) = dice.pick(&live) {
        let bytes = 900 + dice.below(200);
        pool.handle(Input::Rss { worker, bytes });
      }
    }
    68..=89 => {
      if let Some(timer) = dice.pick(&armed) {
        pool.fire(timer);
      }
    }
    // Rare, so that most runs serve for a while before their close.
    90 => {
      if dice.chance(15) {
        let drain = dice.chance(50);
        pool.handle(Input::Close { drain });
      }
    }
    _ => stale_step(pool, dice),
  }
}

/// An input about something gone or never there: it must change nothing at all.
fn stale_step(pool: &mut Pool, dice: &mut Dice) {
  let stale_timers: Vec<Timer> = pool
    .cleared
    .iter()
    .copied()
    .filter(|timer| !pool.armed.contains(timer))
    .collect();
  let dead = dice.pick(&pool.dead).unwrap_or(WorkerKey(u64::MAX));
  let sent: Vec<RequestId> = pool.sent.keys().copied().collect();
  let id = dice.pick(&sent).unwrap_or(RequestId(0));
  let input = match dice.below(6) {
    0 => match dice.pick(&stale_timers) {
      Some(timer) => Input::TimerFired(timer),
      None => return,
    },
    1 => Input::Answered {
      worker: dead,
      id,
      ok: true,
    },
    2 => Input::Exited {
      worker: dead,
      status: CRASH,
    },
    3 => Input::Spawned {
      worker: dead,
      pid: 1,
    },
    4 => Input::SignOfLife { worker: dead },
    _ => Input::Rss {
      worker: dead,
      bytes: u64::MAX,
    },
  };
  assert_eq!(pool.handle(input.clone()), [], "{input:?} was stale");
}

/// Closes the pool and plays the driver until nothing of it is left: every spawn answered,
/// every request answered, every process that was told to end ended, every timer run out.
fn wind_down(pool: &mut Pool, dice: &mut Dice) {
  let drain = dice.chance(50);
  pool.handle(Input::Close { drain });
  for _ in 0..100_000 {
    if let Some(&worker) = pool.pending_spawns.first() {
      let pid = pool.next_pid;
      pool.next_pid += 1;
      pool.handle(Input::Spawned { worker, pid });
      continue;
    }
    let held = pool
      .processes
      .iter()
      .find_map(|(&key, p)| p.holding.first().map(|&id| (key, id)));
    if let Some((worker, id)) = held {
      pool.answer(worker, id);
      continue;
    }
    let ending = pool
      .processes
      .iter()
      .find(|(_, p)| p.ending)
      .map(|(&key, _)| key);
    if let Some(worker) = ending {
      pool.exit(worker, ExitStatus::Code(0));
      continue;
    }
    // Health checks re-arm themselves for as long as a worker is up: run them last.
    let timer = pool
      .armed
      .iter()
      .find(|timer| !matches!(timer, Timer::HealthCheck(_)))
      .or_else(|| pool.armed.first())
      .copied();
    match timer {
      Some(timer) => {
        pool.fire(timer);
      }
      None => break,
    }
  }
  assert!(
    matches!(pool.machine.state(), State::Closed | State::Exhausted),
    "{:?}",
    pool.machine.state()
  );
  assert!(pool.processes.is_empty() && pool.pending_spawns.is_empty());
  assert!(pool.armed.is_empty(), "timers left: {:?}", pool.armed);
  assert!(pool.machine.workers.is_empty() && pool.machine.requests.is_empty());
  assert!(pool.close_settled >= 1);
  for id in pool.sent.keys() {
    assert!(pool.settled.contains_key(id), "{id:?} never settled");
  }
  let stats = pool.machine.stats();
  assert_eq!(
    stats.completed + stats.failed,
    pool.sent.len() as u64,
    "every request counted once"
  );
}

/// Any sequence of inputs keeps the invariants after every step (checked by [`Pool::handle`]),
/// and once the pool is closed and everything ran out, every request ended exactly once.
#[test]
fn random_input_sequences_end_every_request_exactly_once() {
  let mut dice = Dice(0x5eed_1234_abcd_0001);
  for _ in 0..300 {
    let policy = random_policy(&mut dice);
    let mut pool = Pool::new(policy);
    pool.machine = Machine::new(policy, dice.below(u64::MAX));
    if dice.chance(80) {
      pool.handle(Input::Start);
    }
    for _ in 0..400 {
      random_step(&mut pool, &mut dice);
    }
    wind_down(&mut pool, &mut dice);
  }
}
