//! The driver task: it owns a [`Machine`] and carries out what it decides — starts workers,
//! writes pings and the shutdown message, signals process groups, runs the timers and the
//! request deadlines, and settles `start`, `stop` and the requests a worker's end leaves
//! unanswered — telling one [`Listener`] everything JavaScript must hear, in order.
//!
//! Why it is shaped this way:
//! - One task owns the machine, so its inputs are applied one at a time, in the order they
//!   happened. The notices of one step reach the listener in one call, so a state change and
//!   the events it causes are never split between two deliveries.
//! - It is not on the path of messages (see [`super::handle`] and [`super::worker`]): it hears
//!   from a worker's reader only that the worker is alive when that matters to the machine (a
//!   ping awaits its pong, or the restart count is to be reset), that its channel ended, and
//!   that it exited. The messages that bring such a sign of life come with it and are passed on
//!   after the snapshot they cause, so a 'message' listener reads the reset restart count.
//! - Every call that does not finish at once (`start`, `stop`, a queued `send`, `request`) is
//!   settled exactly once by a [`Notice::Settled`], in line with the events: a `start()`
//!   resolves after its 'spawn' event. When a worker goes, its channel settles whatever it
//!   still held, and its requests are rejected, so no call is ever left hanging.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::connection::{Connection, ConnectionWatch, Report};
use super::handle::{Command, Handle};
use super::machine::{Action, Event, Input, Machine, Timer};
use super::notice::{CallId, ExitAccount, Listener, Notice, Snapshot};
use super::worker::{ChannelHost, Worker, WorkerSpec};
use crate::error::Error;
use crate::ipc::{Frame, Payload};
use crate::kill::Spawned;
use crate::options::SupervisorPlan;
use crate::vocabulary::confinement::ResourceLimits;
use crate::vocabulary::exit::ExitStatus;

/// Builds the driver of `plan`: the handle commands it; the future, run on a tokio runtime,
/// does the work. It ends once the handle is dropped and the supervisor is at rest (a worker
/// still running then is stopped first). `host`, when given, reads the workers' channels
/// (see [`ChannelHost`]); tokio tasks do otherwise.
pub fn driver(
  plan: SupervisorPlan,
  listener: Arc<dyn Listener>,
  host: Option<Arc<dyn ChannelHost>>,
) -> (Handle, impl Future<Output = ()> + Send) {
  let (commands_tx, commands) = mpsc::unbounded_channel();
  let (reports_tx, reports) = mpsc::unbounded_channel();
  let connection = Arc::new(Connection::new(plan.serialization));
  let driver = Driver {
    machine: Machine::new(plan.policy),
    limits: plan.launch.confinement.limits,
    exiting: None,
    spec: WorkerSpec::new(
      plan.launch,
      plan.stdio,
      plan.serialization,
      plan.max_message_size,
      listener.backlog(),
      host,
    ),
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
  let handle = Handle::new(commands_tx, connection);
  (handle, driver.run(commands, reports))
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

struct Driver {
  machine: Machine,
  /// The workers' limits, to tell which one ended a worker.
  limits: ResourceLimits,
  /// The account of the worker whose exit is being applied, for its 'exit' and 'crashed'.
  exiting: Option<ExitAccount>,
  spec: WorkerSpec,
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
      Report::Messages { alive, notices } => {
        if alive {
          self.apply(Input::MessageReceived).await;
        }
        self.notices.extend(notices);
        // Handed over now, not at the end of the step: the reader sends later messages
        // straight to the listener as soon as it sees this batch passed on.
        self.listener.notify(std::mem::take(&mut self.notices));
        self.connection.passed_on();
      }
      Report::ChannelClosed => self.apply(Input::ChannelClosed).await,
      Report::Exited(reaped) => {
        let (status, account) = match reaped {
          Ok(reaped) => (reaped.status, ExitAccount::of(&reaped, &self.limits)),
          Err(launcher_gone) => {
            self.notify(Notice::Event(Event::Error(launcher_gone)));
            // The launcher SIGKILLs every group when it dies.
            let killed = ExitStatus::Signal(Signal::SIGKILL as i32);
            (killed, ExitAccount::default())
          }
        };
        let gone = self.worker.take();
        self.exiting = Some(account);
        self.apply(Input::Exited(status)).await;
        self.exiting = None;
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
            self.connection.want_sign_of_life(true);
            self.write_control(self.connection.serialization.ping());
          }
          Action::SendShutdown => self.write_control(self.connection.serialization.shutdown()),
          Action::KillGroup(signal) => {
            if let Some(worker) = &self.worker {
              worker.group.signal_group(signal);
            }
          }
          Action::SetTimer { timer, after } => {
            self.timers[slot(timer)] = Some(Instant::now() + after);
          }
          Action::ClearTimer(timer) => self.timers[slot(timer)] = None,
          // Only an exit makes the machine emit these, so its account is at hand.
          Action::Emit(event @ (Event::Exit { .. } | Event::Crashed { .. })) => {
            let account = self.exiting.unwrap_or_default();
            self.notify(Notice::Ended { event, account });
          }
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
      self.connection.want_sign_of_life(wanted);
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
  fn write_control(&self, frame: Frame) {
    if let Some(channel) = &self.connection.lock().channel {
      // A failed write needs nothing here: the reader sees the channel's end.
      let _ = channel.write(frame, None);
    }
  }

  /// Starts a worker; the outcome is the machine's next input.
  async fn spawn_worker(&mut self) -> Input {
    match self.spec.spawn().await {
      Ok((worker, watch)) => {
        watch.start(Arc::new(ConnectionWatch {
          connection: self.connection.clone(),
          listener: self.listener.clone(),
          reports: self.reports.clone(),
        }));
        let pid = worker.pid;
        self.worker = Some(worker);
        Input::Spawned { pid }
      }
      Err(error) => Input::SpawnFailed(error),
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
      // An answer that came first already took it out.
      if let Some(request) = self.connection.take_request(id) {
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

  fn settle(&mut self, call: CallId, outcome: Result<Option<Payload>, Error>) {
    self.notify(Notice::Settled { call, outcome });
  }

  fn notify(&mut self, notice: Notice) {
    self.notices.push(notice);
  }
}

#[cfg(test)]
mod tests {
  //! The driver seen through its listener, as JavaScript sees it, with real workers started
  //! by the launcher: `sh` scripts that write the channel's bytes themselves (fd 3) where the
  //! test needs exact control of what crosses, Node where it needs Node's own IPC.

  use std::sync::Mutex;
  use std::time::Duration;

  use tokio::sync::Notify;
  use tokio::task::JoinHandle;

  use super::*;
  use crate::options::parse_supervisor;
  use crate::supervisor::channel::{Sent, DIRECT_WRITE};
  use crate::test_support::{block_on, launcher_in_place, living_members};
  use crate::vocabulary::confinement::Limit;
  use crate::vocabulary::value::Value;

  /// How long any one expected notice may take on a busy machine.
  const WAIT: Duration = Duration::from_secs(15);

  /// The call id every test starts with.
  const START: CallId = 1;

  /// Collects every notice, in order.
  #[derive(Default)]
  struct Recorder {
    notices: Mutex<Vec<Notice>>,
    arrived: Notify,
  }

  impl Listener for Recorder {
    fn notify(&self, notices: Vec<Notice>) {
      self.notices.lock().unwrap().extend(notices);
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
          panic!("no {what} within {WAIT:?}; got {}", self.summary());
        }
      }
    }

    fn check<T>(&self, look: impl FnOnce(&[Notice]) -> T) -> T {
      look(&self.notices.lock().unwrap())
    }

    /// The notices so far, each cut short, for a failure message.
    fn summary(&self) -> String {
      self.check(|notices| {
        let lines: Vec<String> = notices
          .iter()
          .map(|notice| format!("{notice:?}").chars().take(160).collect())
          .collect();
        lines.join("\n  ")
      })
    }
  }

  fn settlements(notices: &[Notice], of: CallId) -> Vec<&Result<Option<Payload>, Error>> {
    notices
      .iter()
      .filter_map(|notice| match notice {
        Notice::Settled { call, outcome } if *call == of => Some(outcome),
        _ => None,
      })
      .collect()
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

  /// The accounts the 'exit' and 'crashed' events carry, in order.
  fn accounts(notices: &[Notice]) -> Vec<(&Event, ExitAccount)> {
    notices
      .iter()
      .filter_map(|notice| match notice {
        Notice::Ended { event, account } => Some((event, *account)),
        _ => None,
      })
      .collect()
  }

  fn spawned_pids(notices: &[Notice]) -> Vec<u32> {
    events(notices)
      .into_iter()
      .filter_map(|event| match event {
        Event::Spawn { pid } => Some(*pid),
        _ => None,
      })
      .collect()
  }

  fn messages(notices: &[Notice]) -> Vec<&str> {
    notices
      .iter()
      .filter_map(|notice| match notice {
        Notice::Message(Payload::Json(json)) => Some(json.as_str()),
        _ => None,
      })
      .collect()
  }

  /// Where an event is among the events, to compare orders.
  fn position(notices: &[Notice], matches: impl Fn(&Event) -> bool) -> Option<usize> {
    events(notices).into_iter().position(matches)
  }

  /// A started supervisor of one worker.
  struct Supervised {
    handle: Handle,
    driver: JoinHandle<()>,
    recorder: Arc<Recorder>,
  }

  /// Starts supervising `command args` with fast restarts and stops, plus `options`, and
  /// waits until `start()` is settled.
  async fn supervise(command: &str, args: &[&str], options: Vec<(&str, f64)>) -> Supervised {
    let options = options
      .into_iter()
      .map(|(key, n)| (key, Value::Number(n)))
      .collect();
    supervise_with(command, args, options).await
  }

  /// [`supervise`] with options of any kind.
  async fn supervise_with(command: &str, args: &[&str], options: Vec<(&str, Value)>) -> Supervised {
    launcher_in_place();
    let args = args.iter().map(|&a| Value::String(a.into())).collect();
    let mut fields = vec![
      ("command".to_string(), Value::String(command.into())),
      ("args".to_string(), Value::Array(args)),
      ("stdio".to_string(), Value::String("pipe".into())),
      ("restartDelay".to_string(), Value::Number(20.0)),
      ("stopTimeout".to_string(), Value::Number(400.0)),
    ];
    fields.extend(
      options
        .into_iter()
        .map(|(key, value)| (key.to_string(), value)),
    );
    let plan = parse_supervisor(&Value::Object(fields), std::env::vars_os(), "node").unwrap();
    let recorder = Arc::new(Recorder::default());
    let (handle, run) = driver(plan, recorder.clone(), None);
    let driver = tokio::spawn(run);
    handle.start(START).unwrap();
    recorder
      .until("settled start()", |n| !settlements(n, START).is_empty())
      .await;
    recorder.check(|n| assert!(matches!(settlements(n, START)[..], [Ok(None)])));
    Supervised {
      handle,
      driver,
      recorder,
    }
  }

  impl Supervised {
    /// Drops the handle, which stops the worker; the driver must then end, and no worker it
    /// started may be left running.
    async fn finish(self) {
      drop(self.handle);
      tokio::time::timeout(WAIT, self.driver)
        .await
        .expect("the driver ends once its handle is gone")
        .unwrap();
      for pid in self.recorder.check(spawned_pids) {
        assert_eq!(living_members(pid as i32), 0, "worker {pid} left running");
      }
    }
  }

  #[test]
  fn every_timer_has_its_own_slot() {
    let slots: BTreeSet<usize> = TIMERS.iter().map(|&t| slot(t)).collect();
    assert_eq!(slots.len(), TIMERS.len());
  }

  #[test]
  fn a_crash_mid_request_rejects_it_and_restarts_the_worker() {
    block_on(async {
      let script = "read -r request <&3; exit 3";
      let s = supervise("sh", &["-c", script], vec![]).await;
      s.handle.request(br#"{"n":1}"#, None, 2).unwrap();
      s.recorder
        .until("a second worker", |n| spawned_pids(n).len() == 2)
        .await;
      s.recorder.check(|n| {
        let first = spawned_pids(n)[0];
        assert!(
          matches!(settlements(n, 2)[..], [Err(Error::WorkerExited { pid })] if *pid == first),
          "{:?}",
          settlements(n, 2)
        );
        let crashed = position(n, |e| {
          matches!(
            e,
            Event::Crashed {
              status: ExitStatus::Code(3),
              restart_count: 0
            }
          )
        });
        let restarting = position(n, |e| matches!(e, Event::Restarting { attempt: 1, .. }));
        let respawned = position(n, |e| matches!(e, Event::Spawn { pid } if *pid != first));
        assert!(crashed.is_some(), "no crash event in {:?}", events(n));
        assert!(
          crashed < restarting && restarting < respawned,
          "{:?}",
          events(n)
        );
      });
      s.finish().await;
    })
  }

  #[test]
  fn a_worker_ended_by_its_cpu_limit_says_so_with_what_it_used() {
    block_on(async {
      let limits = Value::Object(vec![("cpuTime".into(), Value::Number(1.0))]);
      let spin = "while :; do :; done";
      let s = supervise_with("sh", &["-c", spin], vec![("limits", limits)]).await;
      s.recorder
        .until("the crash", |n| {
          events(n).iter().any(|e| matches!(e, Event::Crashed { .. }))
        })
        .await;
      s.recorder.check(|n| {
        let accounts = accounts(n);
        let [(Event::Exit { status: exit }, exit_account), (Event::Crashed { status, .. }, account)] =
          accounts[..]
        else {
          panic!("not an exit then a crash: {accounts:?}");
        };
        assert_eq!((*exit, *status), (ExitStatus::Signal(libc::SIGXCPU), ExitStatus::Signal(libc::SIGXCPU)));
        assert_eq!(exit_account, account);
        assert_eq!(account.limit, Some(Limit::CpuTime));
        let usage = account.usage.expect("the launcher told");
        let cpu = usage.user_cpu + usage.system_cpu;
        // The kernel's accounting on a busy virtual machine can read under the second.
        assert!(cpu >= Duration::from_millis(500), "{usage:?}");
        assert!(usage.max_rss_bytes > 0, "{usage:?}");
      });
      s.finish().await;
    })
  }

  #[test]
  fn a_worker_that_does_not_answer_pings_is_killed_and_restarted() {
    block_on(async {
      let options = vec![
        ("healthCheckInterval", 100.0),
        ("healthCheckTimeout", 100.0),
      ];
      let s = supervise("sh", &["-c", "exec sleep 30"], options).await;
      s.recorder
        .until("a second worker", |n| spawned_pids(n).len() == 2)
        .await;
      s.recorder.check(|n| {
        let first = spawned_pids(n)[0];
        let unresponsive = position(n, |e| matches!(e, Event::Unresponsive { pid } if *pid == first));
        let killed = position(n, |e| {
          matches!(e, Event::Crashed { status: ExitStatus::Signal(signal), .. } if *signal == libc::SIGKILL)
        });
        let respawned = position(n, |e| matches!(e, Event::Spawn { pid } if *pid != first));
        assert!(unresponsive.is_some(), "not unresponsive: {:?}", events(n));
        assert!(unresponsive < killed && killed < respawned, "{:?}", events(n));
      });
      s.finish().await;
    })
  }

  #[test]
  fn a_message_written_in_pieces_arrives_whole() {
    block_on(async {
      // The second message is split inside the two bytes of 'é'.
      let script = r#"printf '{"part":' >&3; sleep 0.2
        printf '1}\n{"word":"caf\303' >&3; sleep 0.2
        printf '\251"}\n' >&3; exec sleep 30"#;
      let s = supervise("sh", &["-c", script], vec![]).await;
      s.recorder
        .until("two messages", |n| messages(n).len() == 2)
        .await;
      s.recorder.check(|n| {
        assert_eq!(messages(n), [r#"{"part":1}"#, r#"{"word":"café"}"#]);
        assert!(
          !events(n).iter().any(|e| matches!(e, Event::Error(_))),
          "{:?}",
          events(n)
        );
      });
      s.finish().await;
    })
  }

  #[test]
  fn a_5_mb_message_crosses_both_ways_intact() {
    block_on(async {
      let echo = "process.on('message', (message) => process.send(message))";
      let s = supervise("node", &["-e", echo], vec![]).await;
      let text: String = (0..5_000_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
      let json = format!("\"{text}\"");
      assert!(json.len() > DIRECT_WRITE);
      // More than is written on the caller's thread: the rest is queued, and the send settled
      // once it is all written.
      assert_eq!(
        s.handle.send(json.clone().into_bytes(), 2).unwrap(),
        Sent::Queued
      );
      s.recorder
        .until("the echo", |n| !messages(n).is_empty())
        .await;
      s.recorder.check(|n| {
        assert!(matches!(settlements(n, 2)[..], [Ok(None)]));
        let echoed = messages(n);
        assert_eq!(echoed.len(), 1);
        assert_eq!(echoed[0].len(), json.len());
        assert!(echoed[0] == json, "the echo differs from what was sent");
      });
      s.finish().await;
    })
  }

  #[test]
  fn an_answer_after_the_deadline_is_dropped_and_the_request_times_out_once() {
    block_on(async {
      // Answers request 1 at once, request 2 too late, then says it is done.
      let script = r#"read -r first <&3
        printf '{"tethered":"response","id":1,"result":{"ok":true}}\n' >&3
        read -r second <&3; sleep 0.5
        printf '{"tethered":"response","id":2,"result":"late"}\n{"done":true}\n' >&3
        exec sleep 30"#;
      let s = supervise("sh", &["-c", script], vec![]).await;
      s.handle
        .request(b"1", Some(Duration::from_secs(10)), 2)
        .unwrap();
      s.recorder
        .until("the first answer", |n| !settlements(n, 2).is_empty())
        .await;
      let deadline = Duration::from_millis(100);
      s.handle.request(b"2", Some(deadline), 3).unwrap();
      s.recorder
        .until("the worker's last message", |n| !messages(n).is_empty())
        .await;
      s.recorder.check(|n| {
        assert!(matches!(
          settlements(n, 2)[..],
          [Ok(Some(Payload::Json(result)))] if result == r#"{"ok":true}"#
        ));
        assert!(
          matches!(settlements(n, 3)[..], [Err(Error::RequestTimeout { after })] if *after == deadline),
          "{:?}",
          settlements(n, 3)
        );
        assert_eq!(messages(n), [r#"{"done":true}"#], "the late answer is not a message");
        assert_eq!(spawned_pids(n).len(), 1, "a timeout leaves the worker running");
      });
      s.finish().await;
    })
  }
}
