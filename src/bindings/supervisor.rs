//! `NativeSupervisor`: the JavaScript handle of one supervisor driver
//! (`crate::supervisor::driver`); `lib/supervisor.js` wraps it in an EventEmitter.
//!
//! How notices reach JavaScript, and why Node exits exactly when it should:
//! - The driver's notices queue up in an [`Outbox`]. The first one queued schedules one call
//!   of a threadsafe function; that call takes the whole queue on the JS thread ([`Outbox::
//!   deliver`]) and hands it to the JS callback as one array, so a burst of 10,000 messages
//!   costs a few JS calls.
//! - The threadsafe function exists only while the supervisor has work under way: from a
//!   `start()` until it is at rest (idle, stopped or exhausted) with every call settled. It is
//!   a strong one — a running worker keeps Node alive, as a forked child does — and it is
//!   released on the JS thread, as the last step of a delivery, as soon as a delivered batch
//!   leaves the supervisor at rest with no call unsettled ([`Unsettled`] counts them). (A
//!   weak one would lose queued notices when Node exits; one kept for ever would keep Node
//!   alive for ever.) At rest nothing is left to deliver: `stop()` is done at once,
//!   `send()`/`request()` fail at once with `ERR_IPC_CHANNEL_CLOSED`, and only `start()`, which
//!   brings the callback, leaves rest. Holding no callback at rest also lets an unused
//!   supervisor be garbage-collected (its driver then ends).
//! - A call that does not finish at once returns an id; its outcome is a `settled` notice in
//!   line with the events, so a `start()` resolves after its 'spawn' event. Getters read the
//!   state as of the last delivered batch, so they agree with the events JavaScript has seen.
//! - Call ids are JavaScript numbers counted up from 1; exact below 2^53, they never repeat in
//!   a supervisor's life, so a settlement always finds its call.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue};
use napi_derive::napi;

use super::{exit_fields, js_error, parent_env, throw, to_value, OPTION_DEPTH};
use crate::error::Error as TetheredError;
use crate::options;
use crate::supervisor::channel::Sent;
use crate::supervisor::driver;
use crate::supervisor::handle::Handle;
use crate::supervisor::machine::Event;
use crate::supervisor::notice::{CallId, Listener, Notice, Snapshot};
use crate::vocabulary::value::{describe, Value};

/// Delivers the queued notices when Node runs it: the JS callback receives them as one array.
type Delivery = ThreadsafeFunction<(), (), Batch, Status, false>;

/// A supervisor: options are checked when it is made; the worker starts with `start()`.
#[napi]
pub struct NativeSupervisor {
  driver: Handle,
  outbox: Arc<Outbox>,
  /// The id of the last call made.
  last_call: Cell<CallId>,
}

#[napi]
impl NativeSupervisor {
  /// Throws a typed error (`ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`)
  /// for invalid options.
  #[napi(constructor, ts_args_type = "options: SupervisorOptions")]
  pub fn new(env: Env, options: Unknown) -> Result<Self> {
    let options = to_value(&env, Some(options), OPTION_DEPTH)?;
    let process: Object = env.get_global()?.get_named_property("process")?;
    let exec_path: String = process.get_named_property("execPath")?;
    let plan =
      options::parse_supervisor(&options, parent_env(), &exec_path).map_err(|e| throw(&env, &e))?;
    let outbox = Arc::new(Outbox {
      deliveries: Mutex::new(Deliveries::default()),
    });
    let (driver, run) = driver::driver(plan, outbox.clone());
    napi::bindgen_prelude::spawn(run);
    Ok(NativeSupervisor {
      driver,
      outbox,
      last_call: Cell::new(0),
    })
  }

  /// Starts the worker. `onNotices` receives every batch of notices until the supervisor is
  /// at rest again. Returns the id of the call, which its `settled` notice carries.
  #[napi(
    ts_args_type = "onNotices: (notices: SupervisorNotice[]) => void",
    ts_return_type = "number"
  )]
  pub fn start(&self, env: Env, on_notices: Function<Batch, ()>) -> Result<f64> {
    {
      let mut deliveries = self.outbox.lock();
      if deliveries.delivery.is_none() {
        // Weak: the outbox owns the delivery function, which must not keep it alive.
        let outbox = Arc::downgrade(&self.outbox);
        let delivery = on_notices
          .build_threadsafe_function::<()>()
          .callee_handled::<false>()
          .build_callback(move |_| {
            let batch = outbox.upgrade().map(|outbox| outbox.deliver());
            Ok(batch.unwrap_or_default())
          })?;
        deliveries.delivery = Some(delivery);
      }
    }
    let call = self.next_call();
    self.driver.start(call).map_err(|e| throw(&env, &e))?;
    Ok(self.settled_later(call))
  }

  /// Stops the worker (see `stop()` in the README). Returns the call id, or `null` when the
  /// supervisor is already at rest and there is nothing to wait for.
  #[napi(ts_return_type = "number | null")]
  pub fn stop(&self, env: Env) -> Result<Option<f64>> {
    if !self.outbox.is_busy() {
      return Ok(None);
    }
    let call = self.next_call();
    self.driver.stop(call).map_err(|e| throw(&env, &e))?;
    Ok(Some(self.settled_later(call)))
  }

  /// Sends one JSON text (`JSON.stringify(message)`) to the worker. Returns `null` when it was
  /// written at once, else the call id its `settled` notice carries. Throws
  /// `ERR_IPC_CHANNEL_CLOSED` when no worker is connected.
  #[napi(
    ts_args_type = "json: string | undefined",
    ts_return_type = "number | null"
  )]
  pub fn send(&self, env: Env, json: Option<String>) -> Result<Option<f64>> {
    let json = message_text(&env, json)?;
    let call = self.next_call();
    match self.driver.send(json, call) {
      Ok(Sent::Written) => Ok(None),
      Ok(Sent::Queued) => Ok(Some(self.settled_later(call))),
      Err(error) => Err(throw(&env, &error)),
    }
  }

  /// Sends `{ tethered: 'request', id, body }` around one JSON text; the `settled` notice
  /// carries the JSON text of the result, or the error.
  #[napi(
    ts_args_type = "json: string | undefined, options?: { timeout?: number }",
    ts_return_type = "number"
  )]
  pub fn request(&self, env: Env, json: Option<String>, options: Option<Unknown>) -> Result<f64> {
    let options = to_value(&env, options, 1)?;
    let timeout = options::parse_request_options(&options).map_err(|e| throw(&env, &e))?;
    let body_json = message_text(&env, json)?;
    let call = self.next_call();
    self
      .driver
      .request(&body_json, timeout, call)
      .map_err(|e| throw(&env, &e))?;
    Ok(self.settled_later(call))
  }

  #[napi(getter, ts_return_type = "SupervisorState")]
  pub fn state(&self) -> &'static str {
    self.outbox.snapshot().state.as_str()
  }

  #[napi(getter)]
  pub fn pid(&self) -> Option<u32> {
    self.outbox.snapshot().pid
  }

  #[napi(getter)]
  pub fn restart_count(&self) -> f64 {
    self.outbox.snapshot().restart_count as f64
  }

  #[napi(getter)]
  pub fn connected(&self) -> bool {
    self.outbox.snapshot().connected
  }
}

impl NativeSupervisor {
  fn next_call(&self) -> CallId {
    // A u64 does not run out; the id stays exact as a JS number for 2^53 calls.
    let call = self.last_call.get() + 1;
    self.last_call.set(call);
    call
  }

  /// Counts `call`, made and accepted, as waiting for its `settled` notice (until then the
  /// supervisor keeps Node alive), and gives its id to JavaScript. Counting after the call is
  /// made is early enough: a settlement is taken in only by a delivery, and deliveries run on
  /// this (the JS) thread, after this call returns.
  fn settled_later(&self, call: CallId) -> f64 {
    self.outbox.lock().unsettled.add();
    call_id_to_js(call)
  }
}

fn call_id_to_js(call: CallId) -> f64 {
  call as f64
}

/// A message as JSON text, checked: `JSON.stringify` gives `undefined` for what JSON cannot
/// carry, and a raw newline would split the message on the wire.
fn message_text(env: &Env, json: Option<String>) -> Result<String> {
  let json = json.ok_or_else(|| {
    let error = TetheredError::invalid_type(
      "message",
      "a value JSON can represent",
      "undefined (or a function or symbol)".into(),
    );
    throw(env, &error)
  })?;
  if json.contains('\n') {
    let error = TetheredError::invalid_value(
      "json",
      "must be one JSON text without a raw newline",
      describe(&Value::String(json)),
    );
    return Err(throw(env, &error));
  }
  Ok(json)
}

/// The notices on their way to JavaScript, and what the JS thread knows from those delivered.
pub struct Outbox {
  deliveries: Mutex<Deliveries>,
}

#[derive(Default)]
struct Deliveries {
  queue: Vec<Notice>,
  /// A delivery call is queued with Node and will take everything queued here.
  flush_scheduled: bool,
  /// Present while the supervisor has work under way (see the module comment).
  delivery: Option<Delivery>,
  /// As of the last delivered batch.
  snapshot: Option<Snapshot>,
  unsettled: Unsettled,
}

/// The calls whose `settled` notice has not been delivered yet; while there are any, the
/// supervisor keeps Node alive. Counted here alone: up when a call is made, down when its
/// settlement is delivered.
#[derive(Default)]
struct Unsettled(usize);

impl Unsettled {
  fn add(&mut self) {
    // Every call holds a JS promise, so memory runs out long before the count could.
    self.0 = self.0.saturating_add(1);
  }

  /// Takes in a delivered settlement. One for a call never counted is a bug of this crate: it
  /// is reported, and the count stays at zero rather than wrapping to a count that would keep
  /// Node alive for ever.
  fn settle(&mut self, call: CallId) -> std::result::Result<(), String> {
    match self.0.checked_sub(1) {
      Some(left) => {
        self.0 = left;
        Ok(())
      }
      None => Err(format!(
        "tethered: a settlement for call {call} arrived while no call was waiting for one"
      )),
    }
  }

  fn is_zero(&self) -> bool {
    self.0 == 0
  }
}

impl Outbox {
  fn lock(&self) -> std::sync::MutexGuard<'_, Deliveries> {
    // A panic while holding the lock leaves the queue usable: recover it rather than poison
    // every later call.
    self.deliveries.lock().unwrap_or_else(|e| e.into_inner())
  }

  fn snapshot(&self) -> Snapshot {
    self.lock().snapshot.unwrap_or(Snapshot::IDLE)
  }

  /// Whether the supervisor may have a worker or calls under way.
  fn is_busy(&self) -> bool {
    self.lock().delivery.is_some()
  }

  /// One delivery, run on the JS thread when Node calls the delivery function: takes in every
  /// queued notice, then releases the delivery function if they leave nothing under way.
  fn deliver(&self) -> Batch {
    let (batch, released) = {
      let mut deliveries = self.lock();
      let batch = deliveries.take_batch();
      (batch, deliveries.release_if_done())
    };
    // Dropped outside the lock; from here on nothing of this supervisor keeps Node alive.
    drop(released);
    batch
  }
}

impl Deliveries {
  /// Takes the queue, and takes in what the JS thread must know of it: the latest snapshot
  /// and which calls are settled.
  fn take_batch(&mut self) -> Batch {
    self.flush_scheduled = false;
    let notices = std::mem::take(&mut self.queue);
    let mut warnings = Vec::new();
    for notice in &notices {
      match notice {
        Notice::Snapshot(snapshot) => self.snapshot = Some(*snapshot),
        Notice::Settled { call, .. } => {
          if let Err(bug) = self.unsettled.settle(*call) {
            warnings.push(bug);
          }
        }
        _ => {}
      }
    }
    Batch { notices, warnings }
  }

  /// The delivery function, handed over to be dropped, once the supervisor is at rest with
  /// every call settled: nothing is left to deliver until `start()` brings a new one.
  fn release_if_done(&mut self) -> Option<Delivery> {
    let at_rest = self.snapshot.unwrap_or(Snapshot::IDLE).state.is_at_rest();
    if at_rest && self.unsettled.is_zero() {
      self.delivery.take()
    } else {
      None
    }
  }
}

impl Listener for Outbox {
  fn notify(&self, notices: Vec<Notice>) {
    let mut deliveries = self.lock();
    deliveries.queue.extend(notices);
    if deliveries.flush_scheduled {
      return;
    }
    if let Some(delivery) = &deliveries.delivery {
      // Fails only while Node is shutting down, when nobody is left to tell. The queue is
      // taken when Node runs the call, so everything queued until then rides along.
      let status = delivery.call((), ThreadsafeFunctionCallMode::NonBlocking);
      deliveries.flush_scheduled = status == Status::Ok;
    }
  }
}

/// The notices of one delivery, and reports of bugs found while taking them in.
#[derive(Default)]
pub struct Batch {
  notices: Vec<Notice>,
  warnings: Vec<String>,
}

impl ToNapiValue for Batch {
  // A plain conversion: what a delivery does to the outbox was done by `Outbox::deliver`.
  unsafe fn to_napi_value(raw_env: sys::napi_env, batch: Self) -> Result<sys::napi_value> {
    let env = Env::from_raw(raw_env);
    let mut notices = env.create_array(0)?;
    // Consecutive messages travel as one notice with an array of texts: a burst costs one
    // object, not one per message.
    let mut messages: Option<Array> = None;
    for notice in batch.notices {
      if let Notice::Message(json) = notice {
        let run = match &mut messages {
          Some(run) => run,
          None => {
            let run = env.create_array(0)?;
            let mut obj = Object::new(&env)?;
            obj.set("kind", "messages")?;
            obj.set("json", run)?;
            notices.insert(obj)?;
            messages.insert(run)
          }
        };
        run.insert(json_text(&env, json)?)?;
        continue;
      }
      messages = None;
      if let Some(notice) = notice_to_js(&env, notice)? {
        notices.insert(notice)?;
      }
    }
    for warning in batch.warnings {
      let mut obj = Object::new(&env)?;
      obj.set("kind", "warning")?;
      obj.set("value", warning)?;
      notices.insert(obj)?;
    }
    Ok(notices.raw())
  }
}

/// `{ kind, ... }` for JavaScript: events carry their payload as `value`, settlements their
/// `call` and a `json` result or an `error`. Snapshots were taken in by the outbox and are not
/// passed on; messages are grouped by the caller.
fn notice_to_js(env: &Env, notice: Notice) -> Result<Option<Object<'_>>> {
  let mut obj = Object::new(env)?;
  match notice {
    Notice::Snapshot(_) => return Ok(None),
    Notice::Event(event) => {
      let (kind, value) = event_to_js(env, event)?;
      obj.set("kind", kind)?;
      obj.set("value", value)?;
    }
    Notice::Message(_) => return Ok(None),
    Notice::Output { stream, chunk } => {
      obj.set("kind", stream.as_str())?;
      obj.set("value", Buffer::from(chunk))?;
    }
    Notice::Settled { call, outcome } => {
      obj.set("kind", "settled")?;
      obj.set("call", call_id_to_js(call))?;
      match outcome {
        Ok(Some(json)) => obj.set("json", json_text(env, json)?)?,
        Ok(None) => {}
        Err(error) => obj.set("error", js_error(env, &error)?)?,
      }
    }
  }
  Ok(Some(obj))
}

/// JSON text as a JS string. ASCII, which most JSON is, goes over as Latin-1: V8 copies that
/// as it is instead of decoding UTF-8 (a measurable part of receiving a 1 MiB message).
fn json_text(env: &Env, json: String) -> Result<Unknown<'_>> {
  if json.is_ascii() {
    Latin1String::from(json).into_unknown(env)
  } else {
    json.into_unknown(env)
  }
}

/// The event name and its payload, as the README's `new Supervisor(options)` section lists
/// them.
fn event_to_js(env: &Env, event: Event) -> Result<(&'static str, Object<'_>)> {
  let mut value = Object::new(env)?;
  let kind = match event {
    Event::Spawn { pid } => {
      value.set("pid", pid)?;
      "spawn"
    }
    Event::Exit { status } => {
      exit_fields(&mut value, status, "code")?;
      "exit"
    }
    Event::Crashed {
      status,
      restart_count,
    } => {
      exit_fields(&mut value, status, "code")?;
      value.set("restartCount", restart_count as f64)?;
      "crashed"
    }
    Event::Restarting { delay, attempt } => {
      value.set("delay", delay.as_millis() as f64)?;
      value.set("attempt", attempt as f64)?;
      "restarting"
    }
    Event::Exhausted {
      message,
      restart_count,
    } => {
      value.set("message", message)?;
      value.set("restartCount", restart_count as f64)?;
      "exhausted"
    }
    Event::Unresponsive { pid } => {
      value.set("pid", pid)?;
      "unresponsive"
    }
    Event::Error(error) => return Ok(("error", js_error(env, &error)?)),
  };
  Ok((kind, value))
}
