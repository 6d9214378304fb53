//! The supervisor's rules as a pure state machine: what happened goes in as an [`Input`], what
//! to do comes out as a list of [`Action`]s, in order. It owns no process, socket or clock, so
//! every rule — backoff, exhaustion, health checks, the stop phases — is tested without them.
//!
//! The driver's side of the contract:
//! - Carry out the actions in the order given. `Spawn` is answered by exactly one `Spawned` or
//!   `SpawnFailed`; a spawned worker's end is reported once, as `Exited`, after it was reaped.
//! - Timers are four slots ([`Timer`]): `SetTimer` (re)arms a slot, `ClearTimer` disarms it, and
//!   a slot that runs out is fed back as `TimerFired`. A stale firing is ignored, so a timer that
//!   races with its own clearing does no harm.
//! - Feed `MessageReceived` for every message read from the worker (pongs and responses
//!   included): any sign of life resets the crash count and answers the health check.
//! - `ChannelClosed` when the channel reaches EOF; the worker may live on without it.
//!
//! Inputs that make no sense in the current state (an `Exited` while idle, a second `Spawned`)
//! change nothing: the machine never panics and never reaches a state the design does not have.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::Error;
use crate::options::{RestartPolicy, SupervisorPolicy};
use crate::vocabulary::exit::ExitStatus;

/// The `state` property, as JavaScript sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
  Idle,
  Starting,
  Running,
  Restarting,
  Stopping,
  Stopped,
  Exhausted,
}

impl State {
  pub fn as_str(self) -> &'static str {
    match self {
      State::Idle => "idle",
      State::Starting => "starting",
      State::Running => "running",
      State::Restarting => "restarting",
      State::Stopping => "stopping",
      State::Stopped => "stopped",
      State::Exhausted => "exhausted",
    }
  }

  /// No worker, no spawn and no timer belong to these states: nothing the supervisor does
  /// needs the host process to stay alive until `start()` is called again.
  pub fn is_at_rest(self) -> bool {
    matches!(self, State::Idle | State::Stopped | State::Exhausted)
  }
}

/// The driver's timer slots; each is armed at most once at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
  /// Time to ping the worker.
  HealthCheck,
  /// The pong to the last ping is overdue.
  HealthDeadline,
  /// Time to start the next worker after a crash.
  Restart,
  /// The next escalation of `stop()`.
  Stop,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
  StartRequested,
  StopRequested,
  /// The worker asked for by `Spawn` is running.
  Spawned {
    pid: u32,
  },
  /// The worker asked for by `Spawn` could not be started.
  SpawnFailed(Error),
  /// The worker was reaped.
  Exited(ExitStatus),
  /// The worker's IPC channel reached EOF.
  ChannelClosed,
  /// Anything arrived from the worker: a message, a pong, a response.
  MessageReceived,
  TimerFired(Timer),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
  /// Start a worker (with a new IPC channel) and answer with `Spawned` or `SpawnFailed`.
  Spawn,
  /// Write `{type:'ping'}` to the channel.
  SendPing,
  /// Write `{type:'shutdown'}` to the channel.
  SendShutdown,
  /// Signal the worker's whole process group.
  KillGroup(Signal),
  SetTimer {
    timer: Timer,
    after: Duration,
  },
  ClearTimer(Timer),
  Emit(Event),
  /// Reject every request still waiting for an answer with this error.
  RejectInFlight(Error),
  /// Resolve every pending `start()`.
  ResolveStart,
  /// Reject every pending `start()`.
  RejectStart(Error),
  /// Resolve every pending `stop()`.
  ResolveStop,
}

/// The events JavaScript sees (except 'message', 'stdout' and 'stderr', which carry data the
/// machine never looks at).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
  Spawn {
    pid: u32,
  },
  /// Every worker's end, whatever follows it.
  Exit {
    status: ExitStatus,
  },
  /// A worker ended by a non-zero code or a signal, or was killed as unresponsive.
  /// `restart_count` is the number of consecutive restarts before this crash.
  Crashed {
    status: ExitStatus,
    restart_count: u64,
  },
  Restarting {
    delay: Duration,
    attempt: u64,
  },
  Exhausted {
    message: String,
    restart_count: u64,
  },
  Unresponsive {
    pid: u32,
  },
  /// A restart failed to spawn; it counts as a crash.
  Error(Error),
}

/// `restartDelay × 2^(attempt−1)`, capped at `maxRestartDelay`; attempt 1 is the base delay.
pub fn restart_delay(policy: &SupervisorPolicy, attempt: u64) -> Duration {
  let cap = policy.max_restart_delay;
  let mut delay = policy.restart_delay;
  // Doubling stops at the cap (or at zero), so this loop runs at most ~128 times for any
  // attempt, and `saturating_mul` keeps it from overflowing on the way.
  for _ in 1..attempt {
    if delay >= cap || delay.is_zero() {
      break;
    }
    delay = delay.saturating_mul(2);
  }
  delay.min(cap)
}

/// A worker process that exists (spawned and not yet reaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Worker {
  pid: u32,
  connected: bool,
  /// A ping went out and neither a pong nor anything else came back yet.
  awaiting_pong: bool,
  /// It was SIGKILLed for missing a pong; its exit is a crash whatever its status.
  killed_unresponsive: bool,
}

impl Worker {
  fn new(pid: u32) -> Self {
    Worker {
      pid,
      connected: true,
      awaiting_pong: false,
      killed_unresponsive: false,
    }
  }
}

/// How far `stop()` has escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopStep {
  /// stop() came while a worker was being spawned; its turn comes once it is there.
  AwaitingSpawn,
  ShutdownSent,
  KillSignalSent,
  SigkillSent,
}

/// The state with the data that exists only in it, so that, e.g., a pid outside a live worker
/// cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
  Idle,
  /// The first worker is being spawned for `start()`.
  Starting,
  Running(Worker),
  /// Waiting for the restart timer, then (`spawning`) for the new worker.
  Restarting {
    spawning: bool,
  },
  /// `worker` is `None` only in `AwaitingSpawn`; `start_pending` when that spawn was `start()`'s.
  Stopping {
    worker: Option<Worker>,
    step: StopStep,
    start_pending: bool,
  },
  Stopped,
  Exhausted,
}

#[derive(Debug)]
pub struct Machine {
  policy: SupervisorPolicy,
  phase: Phase,
  /// Consecutive restarts since the worker last showed it was alive.
  restart_count: u64,
}

impl Machine {
  pub fn new(policy: SupervisorPolicy) -> Self {
    Machine {
      policy,
      phase: Phase::Idle,
      restart_count: 0,
    }
  }

  pub fn state(&self) -> State {
    match self.phase {
      Phase::Idle => State::Idle,
      Phase::Starting => State::Starting,
      Phase::Running(_) => State::Running,
      Phase::Restarting { .. } => State::Restarting,
      Phase::Stopping { .. } => State::Stopping,
      Phase::Stopped => State::Stopped,
      Phase::Exhausted => State::Exhausted,
    }
  }

  /// The live worker's pid; `None` whenever no worker process exists.
  pub fn pid(&self) -> Option<u32> {
    self.worker().map(|w| w.pid)
  }

  /// Whether a worker's IPC channel is open, i.e. `send()` can work.
  pub fn connected(&self) -> bool {
    self.worker().is_some_and(|w| w.connected)
  }

  pub fn restart_count(&self) -> u64 {
    self.restart_count
  }

  /// What `send()`/`request()` check before writing: no connected worker is
  /// `ERR_IPC_CHANNEL_CLOSED`.
  pub fn ensure_connected(&self) -> Result<(), Error> {
    if self.connected() {
      Ok(())
    } else {
      Err(Error::ChannelClosed)
    }
  }

  fn worker(&self) -> Option<&Worker> {
    match &self.phase {
      Phase::Running(worker) => Some(worker),
      Phase::Stopping { worker, .. } => worker.as_ref(),
      _ => None,
    }
  }

  /// Applies one input; returns what the driver must do, in order.
  pub fn handle(&mut self, input: Input) -> Vec<Action> {
    let mut actions = Vec::new();
    match input {
      Input::StartRequested => self.start(&mut actions),
      Input::StopRequested => self.stop(&mut actions),
      Input::Spawned { pid } => self.spawned(pid, &mut actions),
      Input::SpawnFailed(error) => self.spawn_failed(error, &mut actions),
      Input::Exited(status) => self.exited(status, &mut actions),
      Input::ChannelClosed => self.channel_closed(&mut actions),
      Input::MessageReceived => self.message_received(&mut actions),
      Input::TimerFired(timer) => self.timer_fired(timer, &mut actions),
    }
    actions
  }

  fn start(&mut self, actions: &mut Vec<Action>) {
    match self.phase {
      Phase::Idle | Phase::Stopped | Phase::Exhausted => {
        self.restart_count = 0;
        self.phase = Phase::Starting;
        actions.push(Action::Spawn);
      }
      // Resolved with the spawn already under way.
      Phase::Starting => {}
      Phase::Running(_) | Phase::Restarting { .. } => actions.push(Action::ResolveStart),
      Phase::Stopping { .. } => actions.push(Action::RejectStart(Error::InvalidState {
        action: "start",
        state: State::Stopping.as_str(),
      })),
    }
  }

  fn stop(&mut self, actions: &mut Vec<Action>) {
    match self.phase {
      Phase::Idle | Phase::Stopped | Phase::Exhausted => actions.push(Action::ResolveStop),
      // A spawn cannot be taken back: stop the worker as soon as it exists.
      Phase::Starting => {
        self.phase = Phase::Stopping {
          worker: None,
          step: StopStep::AwaitingSpawn,
          start_pending: true,
        }
      }
      Phase::Restarting { spawning: true } => {
        self.phase = Phase::Stopping {
          worker: None,
          step: StopStep::AwaitingSpawn,
          start_pending: false,
        }
      }
      Phase::Restarting { spawning: false } => {
        actions.push(Action::ClearTimer(Timer::Restart));
        self.phase = Phase::Stopped;
        actions.push(Action::ResolveStop);
      }
      Phase::Running(worker) => {
        self.clear_health_timers(&worker, actions);
        self.begin_stop(worker, false, actions);
      }
      // Resolved with the stop already under way.
      Phase::Stopping { .. } => {}
    }
  }

  /// The first step of `stop()` for a live worker: ask it to shut down if it can be asked,
  /// otherwise signal it at once.
  fn begin_stop(&mut self, worker: Worker, start_pending: bool, actions: &mut Vec<Action>) {
    let step = if worker.connected {
      actions.push(Action::SendShutdown);
      actions.push(Action::SetTimer {
        timer: Timer::Stop,
        after: self.policy.stop_timeout / 2,
      });
      StopStep::ShutdownSent
    } else {
      actions.push(Action::KillGroup(self.policy.kill_signal));
      actions.push(Action::SetTimer {
        timer: Timer::Stop,
        after: self.policy.stop_timeout,
      });
      StopStep::KillSignalSent
    };
    self.phase = Phase::Stopping {
      worker: Some(worker),
      step,
      start_pending,
    };
  }

  fn spawned(&mut self, pid: u32, actions: &mut Vec<Action>) {
    let worker = Worker::new(pid);
    match self.phase {
      Phase::Starting | Phase::Restarting { spawning: true } => {
        let first = self.phase == Phase::Starting;
        self.phase = Phase::Running(worker);
        actions.push(Action::Emit(Event::Spawn { pid }));
        if first {
          actions.push(Action::ResolveStart);
        }
        if let Some(health) = self.policy.health_check {
          actions.push(Action::SetTimer {
            timer: Timer::HealthCheck,
            after: health.interval,
          });
        }
      }
      Phase::Stopping {
        worker: None,
        start_pending,
        ..
      } => {
        actions.push(Action::Emit(Event::Spawn { pid }));
        if start_pending {
          actions.push(Action::ResolveStart);
        }
        self.begin_stop(worker, false, actions);
      }
      _ => {}
    }
  }

  fn spawn_failed(&mut self, error: Error, actions: &mut Vec<Action>) {
    match self.phase {
      // start() reports it; nothing was running, so there is nothing to restart.
      Phase::Starting => {
        self.phase = Phase::Stopped;
        actions.push(Action::RejectStart(error));
      }
      Phase::Restarting { spawning: true } => {
        actions.push(Action::Emit(Event::Error(error)));
        self.after_crash(actions);
      }
      Phase::Stopping {
        worker: None,
        start_pending,
        ..
      } => {
        self.phase = Phase::Stopped;
        if start_pending {
          actions.push(Action::RejectStart(error));
        }
        actions.push(Action::ResolveStop);
      }
      _ => {}
    }
  }

  fn exited(&mut self, status: ExitStatus, actions: &mut Vec<Action>) {
    match self.phase {
      Phase::Running(worker) => {
        self.clear_health_timers(&worker, actions);
        actions.push(Action::RejectInFlight(Error::WorkerExited {
          pid: worker.pid,
        }));
        actions.push(Action::Emit(Event::Exit { status }));
        let crashed = worker.killed_unresponsive || status != ExitStatus::Code(0);
        if crashed {
          actions.push(Action::Emit(Event::Crashed {
            status,
            restart_count: self.restart_count,
          }));
          self.after_crash(actions);
        } else {
          match self.policy.restart {
            RestartPolicy::OnFailure => self.phase = Phase::Stopped,
            // A clean exit is no crash: the next start is a first attempt again.
            RestartPolicy::Always => {
              self.restart_count = 0;
              self.schedule_restart(actions);
            }
          }
        }
      }
      Phase::Stopping {
        worker: Some(worker),
        step,
        ..
      } => {
        if matches!(step, StopStep::ShutdownSent | StopStep::KillSignalSent) {
          actions.push(Action::ClearTimer(Timer::Stop));
        }
        actions.push(Action::RejectInFlight(Error::WorkerExited {
          pid: worker.pid,
        }));
        actions.push(Action::Emit(Event::Exit { status }));
        self.phase = Phase::Stopped;
        actions.push(Action::ResolveStop);
      }
      _ => {}
    }
  }

  /// One more consecutive crash: restart, or give up after `maxRestarts` restarts.
  fn after_crash(&mut self, actions: &mut Vec<Action>) {
    if self.restart_count >= self.policy.max_restarts {
      self.phase = Phase::Exhausted;
      actions.push(Action::Emit(Event::Exhausted {
        message: format!(
          "The worker crashed {} times in a row; maxRestarts ({}) reached, not restarting",
          self.restart_count.saturating_add(1),
          self.policy.max_restarts
        ),
        restart_count: self.restart_count,
      }));
    } else {
      self.schedule_restart(actions);
    }
  }

  fn schedule_restart(&mut self, actions: &mut Vec<Action>) {
    self.restart_count = self.restart_count.saturating_add(1);
    let delay = restart_delay(&self.policy, self.restart_count);
    self.phase = Phase::Restarting { spawning: false };
    actions.push(Action::Emit(Event::Restarting {
      delay,
      attempt: self.restart_count,
    }));
    actions.push(Action::SetTimer {
      timer: Timer::Restart,
      after: delay,
    });
  }

  fn channel_closed(&mut self, actions: &mut Vec<Action>) {
    let health_on = self.policy.health_check.is_some();
    match &mut self.phase {
      Phase::Running(worker) if worker.connected => {
        // Nothing can be pinged any more; the worker is still watched through its exit.
        if health_on {
          actions.push(Action::ClearTimer(Timer::HealthCheck));
        }
        if worker.awaiting_pong {
          actions.push(Action::ClearTimer(Timer::HealthDeadline));
        }
        worker.connected = false;
        worker.awaiting_pong = false;
        // EOF usually comes just before the exit is seen; nobody can answer these any more.
        actions.push(Action::RejectInFlight(Error::WorkerExited {
          pid: worker.pid,
        }));
      }
      Phase::Stopping {
        worker: Some(worker),
        ..
      } if worker.connected => {
        worker.connected = false;
        actions.push(Action::RejectInFlight(Error::WorkerExited {
          pid: worker.pid,
        }));
      }
      _ => {}
    }
  }

  fn message_received(&mut self, actions: &mut Vec<Action>) {
    if let Phase::Running(worker) = &mut self.phase {
      // A worker already being killed proves nothing by a last word.
      if worker.killed_unresponsive {
        return;
      }
      self.restart_count = 0;
      if worker.awaiting_pong {
        worker.awaiting_pong = false;
        actions.push(Action::ClearTimer(Timer::HealthDeadline));
      }
    }
  }

  fn timer_fired(&mut self, timer: Timer, actions: &mut Vec<Action>) {
    match (timer, &mut self.phase) {
      (Timer::HealthCheck, Phase::Running(worker))
        if worker.connected && !worker.killed_unresponsive =>
      {
        let Some(health) = self.policy.health_check else {
          return;
        };
        // One ping at a time: while one is unanswered its deadline stands.
        if !worker.awaiting_pong {
          worker.awaiting_pong = true;
          actions.push(Action::SendPing);
          actions.push(Action::SetTimer {
            timer: Timer::HealthDeadline,
            after: health.timeout,
          });
        }
        actions.push(Action::SetTimer {
          timer: Timer::HealthCheck,
          after: health.interval,
        });
      }
      (Timer::HealthDeadline, Phase::Running(worker)) if worker.awaiting_pong => {
        worker.awaiting_pong = false;
        worker.killed_unresponsive = true;
        actions.push(Action::ClearTimer(Timer::HealthCheck));
        actions.push(Action::Emit(Event::Unresponsive { pid: worker.pid }));
        actions.push(Action::KillGroup(Signal::SIGKILL));
      }
      (Timer::Restart, Phase::Restarting { spawning }) if !*spawning => {
        *spawning = true;
        actions.push(Action::Spawn);
      }
      (
        Timer::Stop,
        Phase::Stopping {
          worker: Some(_),
          step,
          ..
        },
      ) => match step {
        StopStep::ShutdownSent => {
          *step = StopStep::KillSignalSent;
          actions.push(Action::KillGroup(self.policy.kill_signal));
          actions.push(Action::SetTimer {
            timer: Timer::Stop,
            after: self.policy.stop_timeout - self.policy.stop_timeout / 2,
          });
        }
        StopStep::KillSignalSent => {
          *step = StopStep::SigkillSent;
          actions.push(Action::KillGroup(Signal::SIGKILL));
        }
        StopStep::AwaitingSpawn | StopStep::SigkillSent => {}
      },
      _ => {}
    }
  }

  fn clear_health_timers(&self, worker: &Worker, actions: &mut Vec<Action>) {
    if self.policy.health_check.is_some() && worker.connected && !worker.killed_unresponsive {
      actions.push(Action::ClearTimer(Timer::HealthCheck));
    }
    if worker.awaiting_pong {
      actions.push(Action::ClearTimer(Timer::HealthDeadline));
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::options::HealthCheck;

  const PID: u32 = 100;
  const KILLED: ExitStatus = ExitStatus::Signal(libc::SIGKILL);

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  fn policy() -> SupervisorPolicy {
    SupervisorPolicy {
      restart: RestartPolicy::OnFailure,
      max_restarts: 3,
      restart_delay: ms(100),
      max_restart_delay: ms(1_000),
      health_check: Some(HealthCheck {
        interval: ms(1_000),
        timeout: ms(500),
      }),
      stop_timeout: ms(4_000),
      kill_signal: Signal::SIGTERM,
    }
  }

  fn without_health() -> SupervisorPolicy {
    SupervisorPolicy {
      health_check: None,
      ..policy()
    }
  }

  fn running(policy: SupervisorPolicy) -> Machine {
    let mut machine = Machine::new(policy);
    machine.handle(Input::StartRequested);
    machine.handle(Input::Spawned { pid: PID });
    assert_eq!(machine.state(), State::Running);
    machine
  }

  fn exited_worker(pid: u32) -> Action {
    Action::RejectInFlight(Error::WorkerExited { pid })
  }

  fn events(actions: &[Action]) -> Vec<&Event> {
    actions
      .iter()
      .filter_map(|a| match a {
        Action::Emit(event) => Some(event),
        _ => None,
      })
      .collect()
  }

  fn restarting_delay(actions: &[Action]) -> Option<(Duration, u64)> {
    events(actions).into_iter().find_map(|e| match e {
      Event::Restarting { delay, attempt } => Some((*delay, *attempt)),
      _ => None,
    })
  }

  /// Crashes the running worker, lets the restart timer run out and spawns the next one;
  /// returns the delay and attempt the crash scheduled.
  fn crash_and_restart(machine: &mut Machine, pid: u32) -> (Duration, u64) {
    let actions = machine.handle(Input::Exited(ExitStatus::Code(1)));
    let scheduled = restarting_delay(&actions).expect("a restart is scheduled");
    assert_eq!(machine.state(), State::Restarting);
    assert_eq!(machine.pid(), None);
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::Restart)),
      [Action::Spawn]
    );
    assert_eq!(machine.state(), State::Restarting);
    assert_eq!(machine.pid(), None);
    machine.handle(Input::Spawned { pid });
    assert_eq!(machine.state(), State::Running);
    assert_eq!(machine.pid(), Some(pid));
    scheduled
  }

  #[test]
  fn start_spawns_and_resolves_once_running() {
    let mut machine = Machine::new(policy());
    assert_eq!(machine.state(), State::Idle);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::StartRequested), [Action::Spawn]);
    assert_eq!(machine.state(), State::Starting);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::StartRequested), []);
    assert_eq!(
      machine.handle(Input::Spawned { pid: 42 }),
      [
        Action::Emit(Event::Spawn { pid: 42 }),
        Action::ResolveStart,
        Action::SetTimer {
          timer: Timer::HealthCheck,
          after: ms(1_000)
        },
      ]
    );
    assert_eq!(machine.state(), State::Running);
    assert_eq!(machine.pid(), Some(42));
    assert!(machine.connected());
    assert_eq!(machine.restart_count(), 0);
    assert_eq!(
      machine.handle(Input::StartRequested),
      [Action::ResolveStart]
    );
  }

  #[test]
  fn a_first_spawn_failure_rejects_start_and_restarts_nothing() {
    let mut machine = Machine::new(policy());
    machine.handle(Input::StartRequested);
    let error = Error::Spawn {
      errno: libc::ENOENT,
      command: "nope".into(),
      args: vec![],
    };
    assert_eq!(
      machine.handle(Input::SpawnFailed(error.clone())),
      [Action::RejectStart(error)]
    );
    assert_eq!(machine.state(), State::Stopped);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::TimerFired(Timer::Restart)), []);
  }

  #[test]
  fn a_crash_is_reported_then_restarted_after_the_base_delay() {
    let mut machine = running(policy());
    assert_eq!(
      machine.handle(Input::Exited(ExitStatus::Code(3))),
      [
        Action::ClearTimer(Timer::HealthCheck),
        exited_worker(PID),
        Action::Emit(Event::Exit {
          status: ExitStatus::Code(3)
        }),
        Action::Emit(Event::Crashed {
          status: ExitStatus::Code(3),
          restart_count: 0
        }),
        Action::Emit(Event::Restarting {
          delay: ms(100),
          attempt: 1
        }),
        Action::SetTimer {
          timer: Timer::Restart,
          after: ms(100)
        },
      ]
    );
    assert_eq!(machine.state(), State::Restarting);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.restart_count(), 1);
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::Restart)),
      [Action::Spawn]
    );
    // A second firing of the same slot must not spawn twice.
    assert_eq!(machine.handle(Input::TimerFired(Timer::Restart)), []);
    assert_eq!(
      machine.handle(Input::Spawned { pid: 101 }),
      [
        Action::Emit(Event::Spawn { pid: 101 }),
        Action::SetTimer {
          timer: Timer::HealthCheck,
          after: ms(1_000)
        },
      ]
    );
    assert_eq!(machine.pid(), Some(101));
  }

  #[test]
  fn death_by_signal_is_a_crash() {
    let mut machine = running(without_health());
    let status = ExitStatus::Signal(libc::SIGSEGV);
    let actions = machine.handle(Input::Exited(status));
    assert!(events(&actions).contains(&&Event::Crashed {
      status,
      restart_count: 0
    }));
    assert_eq!(machine.state(), State::Restarting);
  }

  #[test]
  fn delays_double_up_to_the_cap_then_the_supervisor_is_exhausted() {
    let mut machine = running(SupervisorPolicy {
      max_restarts: 6,
      ..without_health()
    });
    let delays: Vec<(Duration, u64)> = (1..=6)
      .map(|i| crash_and_restart(&mut machine, PID + i))
      .collect();
    assert_eq!(
      delays,
      [
        (ms(100), 1),
        (ms(200), 2),
        (ms(400), 3),
        (ms(800), 4),
        (ms(1_000), 5),
        (ms(1_000), 6),
      ]
    );
    assert_eq!(machine.restart_count(), 6);
    let actions = machine.handle(Input::Exited(ExitStatus::Code(1)));
    assert_eq!(
      events(&actions),
      [
        &Event::Exit {
          status: ExitStatus::Code(1)
        },
        &Event::Crashed {
          status: ExitStatus::Code(1),
          restart_count: 6
        },
        &Event::Exhausted {
          message: "The worker crashed 7 times in a row; maxRestarts (6) reached, not restarting"
            .into(),
          restart_count: 6
        },
      ]
    );
    assert!(!actions
      .iter()
      .any(|a| matches!(a, Action::SetTimer { .. } | Action::Spawn)));
    assert_eq!(machine.state(), State::Exhausted);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::TimerFired(Timer::Restart)), []);
  }

  #[test]
  fn max_restarts_counts_restarts_not_spawns() {
    // maxRestarts 3: 4 spawns, the 4th consecutive crash exhausts.
    let mut machine = running(without_health());
    let mut spawns = 1;
    while machine.state() != State::Exhausted {
      machine.handle(Input::Exited(ExitStatus::Code(1)));
      if machine.state() == State::Restarting {
        machine.handle(Input::TimerFired(Timer::Restart));
        machine.handle(Input::Spawned { pid: PID + spawns });
        spawns += 1;
      }
    }
    assert_eq!(spawns, 4);

    let mut machine = running(SupervisorPolicy {
      max_restarts: 0,
      ..without_health()
    });
    machine.handle(Input::Exited(ExitStatus::Code(1)));
    assert_eq!(machine.state(), State::Exhausted);
  }

  #[test]
  fn infinite_restarts_never_exhaust_and_stay_capped() {
    let mut machine = running(SupervisorPolicy {
      max_restarts: u64::MAX,
      ..without_health()
    });
    for i in 0..200 {
      let (delay, attempt) = crash_and_restart(&mut machine, PID + i);
      assert_eq!(attempt, u64::from(i) + 1);
      assert!(delay <= ms(1_000));
    }
  }

  #[test]
  fn restart_delay_never_overflows() {
    let p = policy();
    assert_eq!(restart_delay(&p, 0), ms(100));
    assert_eq!(restart_delay(&p, 1), ms(100));
    assert_eq!(restart_delay(&p, 2), ms(200));
    assert_eq!(restart_delay(&p, 4), ms(800));
    for attempt in [5, 31, 32, 33, 64, 65, 1 << 40, u64::MAX] {
      assert_eq!(restart_delay(&p, attempt), ms(1_000), "{attempt}");
    }
    let huge = SupervisorPolicy {
      restart_delay: Duration::from_secs(u64::MAX / 4),
      max_restart_delay: Duration::MAX,
      ..policy()
    };
    assert_eq!(restart_delay(&huge, 10), Duration::MAX);
    let above_cap = SupervisorPolicy {
      restart_delay: ms(5_000),
      ..policy()
    };
    assert_eq!(restart_delay(&above_cap, 1), ms(1_000));
    let zero = SupervisorPolicy {
      restart_delay: Duration::ZERO,
      ..policy()
    };
    assert_eq!(restart_delay(&zero, 40), Duration::ZERO);
  }

  #[test]
  fn a_message_resets_the_count_so_the_next_restart_is_attempt_one() {
    let mut machine = running(without_health());
    crash_and_restart(&mut machine, 101);
    crash_and_restart(&mut machine, 102);
    assert_eq!(machine.restart_count(), 2);
    assert_eq!(machine.handle(Input::MessageReceived), []);
    assert_eq!(machine.restart_count(), 0);
    assert_eq!(crash_and_restart(&mut machine, 103), (ms(100), 1));
  }

  #[test]
  fn on_failure_treats_exit_zero_as_done() {
    let mut machine = running(policy());
    crash_and_restart(&mut machine, 101);
    assert_eq!(
      machine.handle(Input::Exited(ExitStatus::Code(0))),
      [
        Action::ClearTimer(Timer::HealthCheck),
        exited_worker(101),
        Action::Emit(Event::Exit {
          status: ExitStatus::Code(0)
        }),
      ]
    );
    assert_eq!(machine.state(), State::Stopped);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::StopRequested), [Action::ResolveStop]);
  }

  #[test]
  fn always_restarts_a_clean_exit_as_a_first_attempt() {
    let mut machine = running(SupervisorPolicy {
      restart: RestartPolicy::Always,
      ..without_health()
    });
    crash_and_restart(&mut machine, 101);
    crash_and_restart(&mut machine, 102);
    let actions = machine.handle(Input::Exited(ExitStatus::Code(0)));
    assert_eq!(
      events(&actions),
      [
        &Event::Exit {
          status: ExitStatus::Code(0)
        },
        &Event::Restarting {
          delay: ms(100),
          attempt: 1
        },
      ]
    );
    assert_eq!(machine.state(), State::Restarting);
    // Clean exits alone never exhaust the supervisor.
    for i in 0..20 {
      machine.handle(Input::TimerFired(Timer::Restart));
      machine.handle(Input::Spawned { pid: 200 + i });
      let actions = machine.handle(Input::Exited(ExitStatus::Code(0)));
      assert_eq!(restarting_delay(&actions), Some((ms(100), 1)));
    }
  }

  #[test]
  fn a_healthy_worker_is_pinged_every_interval_and_never_flagged() {
    let mut machine = running(policy());
    for _ in 0..10 {
      assert_eq!(
        machine.handle(Input::TimerFired(Timer::HealthCheck)),
        [
          Action::SendPing,
          Action::SetTimer {
            timer: Timer::HealthDeadline,
            after: ms(500)
          },
          Action::SetTimer {
            timer: Timer::HealthCheck,
            after: ms(1_000)
          },
        ]
      );
      assert_eq!(
        machine.handle(Input::MessageReceived),
        [Action::ClearTimer(Timer::HealthDeadline)]
      );
      // A deadline that fired while its clearing was on the way changes nothing.
      assert_eq!(machine.handle(Input::TimerFired(Timer::HealthDeadline)), []);
    }
    assert_eq!(machine.state(), State::Running);
    assert_eq!(machine.pid(), Some(PID));
  }

  #[test]
  fn an_unanswered_ping_is_not_repeated() {
    let mut machine = running(SupervisorPolicy {
      health_check: Some(HealthCheck {
        interval: ms(100),
        timeout: ms(500),
      }),
      ..policy()
    });
    machine.handle(Input::TimerFired(Timer::HealthCheck));
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::HealthCheck)),
      [Action::SetTimer {
        timer: Timer::HealthCheck,
        after: ms(100)
      }]
    );
  }

  #[test]
  fn an_unresponsive_worker_is_killed_and_its_exit_is_a_crash() {
    let mut machine = running(policy());
    crash_and_restart(&mut machine, 101);
    machine.handle(Input::TimerFired(Timer::HealthCheck));
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::HealthDeadline)),
      [
        Action::ClearTimer(Timer::HealthCheck),
        Action::Emit(Event::Unresponsive { pid: 101 }),
        Action::KillGroup(Signal::SIGKILL),
      ]
    );
    // Until it is reaped, it is still the worker; late words from it change nothing.
    assert_eq!(machine.pid(), Some(101));
    assert_eq!(machine.handle(Input::MessageReceived), []);
    assert_eq!(machine.restart_count(), 1);
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthCheck)), []);
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthDeadline)), []);
    assert_eq!(
      machine.handle(Input::Exited(KILLED)),
      [
        exited_worker(101),
        Action::Emit(Event::Exit { status: KILLED }),
        Action::Emit(Event::Crashed {
          status: KILLED,
          restart_count: 1
        }),
        Action::Emit(Event::Restarting {
          delay: ms(200),
          attempt: 2
        }),
        Action::SetTimer {
          timer: Timer::Restart,
          after: ms(200)
        },
      ]
    );
  }

  #[test]
  fn a_worker_killed_as_unresponsive_crashed_even_if_it_exited_zero() {
    let mut machine = running(policy());
    machine.handle(Input::TimerFired(Timer::HealthCheck));
    machine.handle(Input::TimerFired(Timer::HealthDeadline));
    let actions = machine.handle(Input::Exited(ExitStatus::Code(0)));
    assert!(events(&actions)
      .iter()
      .any(|e| matches!(e, Event::Crashed { .. })));
    assert_eq!(machine.state(), State::Restarting);
  }

  #[test]
  fn health_checks_off_means_no_timers_and_no_pings() {
    let mut machine = Machine::new(without_health());
    machine.handle(Input::StartRequested);
    assert_eq!(
      machine.handle(Input::Spawned { pid: PID }),
      [
        Action::Emit(Event::Spawn { pid: PID }),
        Action::ResolveStart
      ]
    );
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthCheck)), []);
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthDeadline)), []);
  }

  #[test]
  fn a_closed_channel_ends_pings_and_rejects_requests_but_not_the_worker() {
    let mut machine = running(policy());
    machine.handle(Input::TimerFired(Timer::HealthCheck));
    assert_eq!(
      machine.handle(Input::ChannelClosed),
      [
        Action::ClearTimer(Timer::HealthCheck),
        Action::ClearTimer(Timer::HealthDeadline),
        exited_worker(PID),
      ]
    );
    assert_eq!(machine.state(), State::Running);
    assert_eq!(machine.pid(), Some(PID));
    assert!(!machine.connected());
    assert_eq!(machine.ensure_connected(), Err(Error::ChannelClosed));
    assert_eq!(machine.handle(Input::ChannelClosed), []);
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthCheck)), []);
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthDeadline)), []);
    assert_eq!(
      machine.handle(Input::Exited(ExitStatus::Code(0))),
      [
        exited_worker(PID),
        Action::Emit(Event::Exit {
          status: ExitStatus::Code(0)
        }),
      ]
    );
  }

  #[test]
  fn send_needs_a_connected_worker() {
    let mut machine = Machine::new(policy());
    assert_eq!(machine.ensure_connected(), Err(Error::ChannelClosed));
    machine.handle(Input::StartRequested);
    assert_eq!(machine.ensure_connected(), Err(Error::ChannelClosed));
    machine.handle(Input::Spawned { pid: PID });
    assert_eq!(machine.ensure_connected(), Ok(()));
    machine.handle(Input::Exited(KILLED));
    assert_eq!(machine.state(), State::Restarting);
    assert_eq!(machine.ensure_connected(), Err(Error::ChannelClosed));
    assert!(!machine.connected());
  }

  #[test]
  fn stop_asks_then_signals_then_kills_within_stop_timeout() {
    let mut machine = running(policy());
    assert_eq!(
      machine.handle(Input::StopRequested),
      [
        Action::ClearTimer(Timer::HealthCheck),
        Action::SendShutdown,
        Action::SetTimer {
          timer: Timer::Stop,
          after: ms(2_000)
        },
      ]
    );
    assert_eq!(machine.state(), State::Stopping);
    assert_eq!(machine.pid(), Some(PID));
    assert_eq!(machine.handle(Input::StopRequested), []);
    assert_eq!(
      machine.handle(Input::StartRequested),
      [Action::RejectStart(Error::InvalidState {
        action: "start",
        state: "stopping"
      })]
    );
    assert_eq!(machine.handle(Input::TimerFired(Timer::HealthCheck)), []);
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::Stop)),
      [
        Action::KillGroup(Signal::SIGTERM),
        Action::SetTimer {
          timer: Timer::Stop,
          after: ms(2_000)
        },
      ]
    );
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::Stop)),
      [Action::KillGroup(Signal::SIGKILL)]
    );
    assert_eq!(machine.handle(Input::TimerFired(Timer::Stop)), []);
    // Death by the signal it was sent is no crash: nothing restarts.
    assert_eq!(
      machine.handle(Input::Exited(KILLED)),
      [
        exited_worker(PID),
        Action::Emit(Event::Exit { status: KILLED }),
        Action::ResolveStop,
      ]
    );
    assert_eq!(machine.state(), State::Stopped);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::TimerFired(Timer::Restart)), []);
  }

  #[test]
  fn a_worker_that_obeys_shutdown_ends_the_stop_early() {
    let mut machine = running(without_health());
    machine.handle(Input::StopRequested);
    assert_eq!(machine.handle(Input::ChannelClosed), [exited_worker(PID)]);
    assert_eq!(
      machine.handle(Input::Exited(ExitStatus::Code(0))),
      [
        Action::ClearTimer(Timer::Stop),
        exited_worker(PID),
        Action::Emit(Event::Exit {
          status: ExitStatus::Code(0)
        }),
        Action::ResolveStop,
      ]
    );
    assert_eq!(machine.handle(Input::TimerFired(Timer::Stop)), []);
  }

  #[test]
  fn stop_without_a_channel_signals_at_once() {
    let mut machine = running(without_health());
    machine.handle(Input::ChannelClosed);
    assert_eq!(
      machine.handle(Input::StopRequested),
      [
        Action::KillGroup(Signal::SIGTERM),
        Action::SetTimer {
          timer: Timer::Stop,
          after: ms(4_000)
        },
      ]
    );
    assert_eq!(
      machine.handle(Input::TimerFired(Timer::Stop)),
      [Action::KillGroup(Signal::SIGKILL)]
    );
  }

  #[test]
  fn the_stop_phases_add_up_to_stop_timeout() {
    for timeout in [ms(0), ms(1), ms(5), ms(4_001)] {
      let mut machine = running(SupervisorPolicy {
        stop_timeout: timeout,
        kill_signal: Signal::SIGINT,
        ..without_health()
      });
      let mut total = Duration::ZERO;
      let mut signals = Vec::new();
      for action in machine
        .handle(Input::StopRequested)
        .into_iter()
        .chain(machine.handle(Input::TimerFired(Timer::Stop)))
        .chain(machine.handle(Input::TimerFired(Timer::Stop)))
      {
        match action {
          Action::SetTimer { after, .. } => total += after,
          Action::KillGroup(signal) => signals.push(signal),
          _ => {}
        }
      }
      assert_eq!(total, timeout);
      assert_eq!(signals, [Signal::SIGINT, Signal::SIGKILL]);
    }
  }

  #[test]
  fn stop_while_restarting_cancels_the_restart() {
    let mut machine = running(without_health());
    machine.handle(Input::Exited(ExitStatus::Code(1)));
    assert_eq!(
      machine.handle(Input::StopRequested),
      [Action::ClearTimer(Timer::Restart), Action::ResolveStop]
    );
    assert_eq!(machine.state(), State::Stopped);
    assert_eq!(machine.pid(), None);
    assert_eq!(machine.handle(Input::TimerFired(Timer::Restart)), []);
  }

  #[test]
  fn stop_while_a_restart_is_spawning_stops_the_new_worker() {
    let mut machine = running(policy());
    machine.handle(Input::Exited(ExitStatus::Code(1)));
    machine.handle(Input::TimerFired(Timer::Restart));
    assert_eq!(machine.handle(Input::StopRequested), []);
    assert_eq!(machine.state(), State::Stopping);
    assert_eq!(machine.pid(), None);
    assert_eq!(
      machine.handle(Input::Spawned { pid: 101 }),
      [
        Action::Emit(Event::Spawn { pid: 101 }),
        Action::SendShutdown,
        Action::SetTimer {
          timer: Timer::Stop,
          after: ms(2_000)
        },
      ]
    );
    assert_eq!(machine.pid(), Some(101));
    let actions = machine.handle(Input::Exited(ExitStatus::Code(0)));
    assert_eq!(actions.last(), Some(&Action::ResolveStop));
    assert_eq!(machine.state(), State::Stopped);
  }

  #[test]
  fn stop_while_starting_resolves_start_then_stops() {
    let mut machine = Machine::new(policy());
    machine.handle(Input::StartRequested);
    assert_eq!(machine.handle(Input::StopRequested), []);
    assert_eq!(
      machine.handle(Input::Spawned { pid: PID }),
      [
        Action::Emit(Event::Spawn { pid: PID }),
        Action::ResolveStart,
        Action::SendShutdown,
        Action::SetTimer {
          timer: Timer::Stop,
          after: ms(2_000)
        },
      ]
    );

    let mut machine = Machine::new(policy());
    machine.handle(Input::StartRequested);
    machine.handle(Input::StopRequested);
    let error = Error::Spawn {
      errno: libc::EACCES,
      command: "x".into(),
      args: vec![],
    };
    assert_eq!(
      machine.handle(Input::SpawnFailed(error.clone())),
      [Action::RejectStart(error), Action::ResolveStop]
    );
    assert_eq!(machine.state(), State::Stopped);
  }

  #[test]
  fn stop_with_nothing_running_resolves_at_once() {
    let mut machine = Machine::new(policy());
    assert_eq!(machine.handle(Input::StopRequested), [Action::ResolveStop]);
    assert_eq!(machine.state(), State::Idle);

    let mut machine = running(SupervisorPolicy {
      max_restarts: 0,
      ..without_health()
    });
    machine.handle(Input::Exited(ExitStatus::Code(1)));
    assert_eq!(machine.state(), State::Exhausted);
    assert_eq!(machine.handle(Input::StopRequested), [Action::ResolveStop]);
    assert_eq!(machine.state(), State::Exhausted);
  }

  #[test]
  fn start_after_stop_or_exhaustion_begins_afresh() {
    let mut machine = running(SupervisorPolicy {
      max_restarts: 1,
      ..without_health()
    });
    crash_and_restart(&mut machine, 101);
    machine.handle(Input::Exited(ExitStatus::Code(1)));
    assert_eq!(machine.state(), State::Exhausted);
    assert_eq!(machine.handle(Input::StartRequested), [Action::Spawn]);
    assert_eq!(machine.restart_count(), 0);
    machine.handle(Input::Spawned { pid: 102 });
    assert_eq!(crash_and_restart(&mut machine, 103), (ms(100), 1));
  }

  #[test]
  fn a_failed_restart_spawn_counts_as_a_crash() {
    let mut machine = running(SupervisorPolicy {
      max_restarts: 2,
      ..without_health()
    });
    let error = Error::Spawn {
      errno: libc::EAGAIN,
      command: "node".into(),
      args: vec![],
    };
    machine.handle(Input::Exited(ExitStatus::Code(1)));
    machine.handle(Input::TimerFired(Timer::Restart));
    let actions = machine.handle(Input::SpawnFailed(error.clone()));
    assert_eq!(
      actions,
      [
        Action::Emit(Event::Error(error.clone())),
        Action::Emit(Event::Restarting {
          delay: ms(200),
          attempt: 2
        }),
        Action::SetTimer {
          timer: Timer::Restart,
          after: ms(200)
        },
      ]
    );
    machine.handle(Input::TimerFired(Timer::Restart));
    let actions = machine.handle(Input::SpawnFailed(error));
    assert!(matches!(
      events(&actions)[1],
      Event::Exhausted {
        restart_count: 2,
        ..
      }
    ));
    assert_eq!(machine.state(), State::Exhausted);
  }

  #[test]
  fn inputs_out_of_place_change_nothing() {
    let mut machine = Machine::new(policy());
    for input in [
      Input::Spawned { pid: 1 },
      Input::SpawnFailed(Error::Aborted),
      Input::Exited(ExitStatus::Code(1)),
      Input::ChannelClosed,
      Input::MessageReceived,
      Input::TimerFired(Timer::HealthCheck),
      Input::TimerFired(Timer::HealthDeadline),
      Input::TimerFired(Timer::Restart),
      Input::TimerFired(Timer::Stop),
    ] {
      assert_eq!(machine.handle(input.clone()), [], "{input:?}");
      assert_eq!(machine.state(), State::Idle);
    }
    let mut machine = running(policy());
    assert_eq!(machine.handle(Input::Spawned { pid: 7 }), []);
    assert_eq!(machine.pid(), Some(PID));
    assert_eq!(machine.handle(Input::SpawnFailed(Error::Aborted)), []);
    assert_eq!(machine.handle(Input::TimerFired(Timer::Restart)), []);
    assert_eq!(machine.handle(Input::TimerFired(Timer::Stop)), []);
  }

  /// Any sequence of inputs keeps the invariants: a pid exactly while a worker exists, a
  /// channel only with a worker, `restartCount` within `maxRestarts`.
  #[test]
  fn random_input_sequences_keep_the_invariants() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
      seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
      (seed >> 33) % n
    };
    for _ in 0..200 {
      let mut machine = Machine::new(policy());
      for step in 0..500u32 {
        let input = match next(12) {
          0 => Input::StartRequested,
          1 => Input::StopRequested,
          2 => Input::Spawned { pid: step + 1 },
          3 => Input::SpawnFailed(Error::Aborted),
          4 => Input::Exited(ExitStatus::Code(next(3) as i32)),
          5 => Input::Exited(KILLED),
          6 => Input::ChannelClosed,
          7 => Input::MessageReceived,
          8 => Input::TimerFired(Timer::HealthCheck),
          9 => Input::TimerFired(Timer::HealthDeadline),
          10 => Input::TimerFired(Timer::Restart),
          _ => Input::TimerFired(Timer::Stop),
        };
        machine.handle(input);
        let has_worker = matches!(
          machine.phase,
          Phase::Running(_)
            | Phase::Stopping {
              worker: Some(_),
              ..
            }
        );
        assert_eq!(machine.pid().is_some(), has_worker);
        if machine.pid().is_none() {
          assert!(!machine.connected());
        }
        if machine.state().is_at_rest() {
          assert_eq!(machine.pid(), None);
        }
        assert!(machine.restart_count() <= policy().max_restarts);
      }
    }
  }

  #[test]
  fn states_have_their_javascript_names() {
    let names: Vec<&str> = [
      State::Idle,
      State::Starting,
      State::Running,
      State::Restarting,
      State::Stopping,
      State::Stopped,
      State::Exhausted,
    ]
    .map(State::as_str)
    .to_vec();
    assert_eq!(
      names,
      [
        "idle",
        "starting",
        "running",
        "restarting",
        "stopping",
        "stopped",
        "exhausted"
      ]
    );
  }
}
