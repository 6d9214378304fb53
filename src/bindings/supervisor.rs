//! `NativeSupervisor`: the JavaScript handle of one supervisor driver
//! (`crate::supervisor::driver`); `lib/supervisor.js` wraps it in an EventEmitter.
//!
//! Notices reach JavaScript through an [`Outbox`] (see `outbox.rs` for how, and why Node
//! exits exactly when it should): the supervisor is at rest when idle, stopped or exhausted.
//! At rest nothing is left to deliver: `stop()` is done at once, `send()`/`request()` fail at
//! once with `ERR_IPC_CHANNEL_CLOSED`, and only `start()`, which brings the callback, leaves
//! rest. A `start()` resolves after its 'spawn' event. Getters read the state as of the last
//! delivered batch, so they agree with the events JavaScript has seen.

use std::cell::Cell;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::outbox::{call_id_to_js, payload_to_js, Batch, Deliverable, Outbox};
use super::{
  exit_fields, js_error, limit_and_usage_fields, parent_env, throw, to_value, OPTION_DEPTH,
};
use crate::error::Error as TetheredError;
use crate::ipc::backlog::Backlog;
use crate::ipc::Serialization;
use crate::options;
use crate::supervisor::channel::Sent;
use crate::supervisor::driver;
use crate::supervisor::handle::Handle;
use crate::supervisor::machine::Event;
use crate::supervisor::notice::{CallId, Listener, Notice, Snapshot};
use crate::vocabulary::value::{describe, Value};

/// A supervisor: options are checked when it is made; the worker starts with `start()`.
#[napi]
pub struct NativeSupervisor {
  driver: Handle,
  outbox: Arc<Outbox<Notice>>,
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
    let outbox = Outbox::new();
    let (driver, run) = driver::driver(plan, outbox.clone(), Some(outbox.clone()));
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
  pub fn start(&self, env: Env, on_notices: Function<Batch<Notice>, ()>) -> Result<f64> {
    self.outbox.attach(&env, on_notices)?;
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

  /// Sends one message to the worker: in json, its JSON text (`JSON.stringify(message)`); in
  /// advanced, its v8 serializer payload. Returns `null` when it was written at once, else the
  /// call id its `settled` notice carries. Throws `ERR_IPC_CHANNEL_CLOSED` when no worker is
  /// connected.
  #[napi(
    ts_args_type = "message: string | Buffer | undefined",
    ts_return_type = "number | null"
  )]
  pub fn send(
    &self,
    env: Env,
    message: Option<Either<String, BufferSlice>>,
  ) -> Result<Option<f64>> {
    let payload = outgoing(&env, self.driver.serialization(), message)?;
    let call = self.next_call();
    match self.driver.send(payload, call) {
      Ok(Sent::Written) => Ok(None),
      Ok(Sent::Queued) => Ok(Some(self.settled_later(call))),
      Err(error) => Err(throw(&env, &error)),
    }
  }

  /// Sends a request: in json, the JSON text of its body, put in `{ tethered: 'request', id,
  /// body }` here; in advanced, that envelope serialized with a placeholder id (see
  /// `crate::ipc::advanced::request`). The `settled` notice carries the result (json: the JSON
  /// text of `result`; advanced: the whole response), or the error.
  #[napi(
    ts_args_type = "body: string | Buffer | undefined, options?: { timeout?: number }",
    ts_return_type = "number"
  )]
  pub fn request(
    &self,
    env: Env,
    body: Option<Either<String, BufferSlice>>,
    options: Option<Unknown>,
  ) -> Result<f64> {
    let options = to_value(&env, options, 1)?;
    let timeout = options::parse_request_options(&options).map_err(|e| throw(&env, &e))?;
    let body = outgoing(&env, self.driver.serialization(), body)?;
    let call = self.next_call();
    self
      .driver
      .request(&body, timeout, call)
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

  /// How messages cross the channel, as the options said: `'json'` or `'advanced'`.
  #[napi(getter, ts_return_type = "'json' | 'advanced'")]
  pub fn serialization(&self) -> &'static str {
    self.driver.serialization().as_str()
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
    self.outbox.settled_later(call)
  }
}

/// A message from JavaScript as the bytes of its payload, checked against the serialization:
/// JSON text in json, a v8 serializer payload (a Buffer) in advanced.
pub(super) fn outgoing(
  env: &Env,
  serialization: Serialization,
  message: Option<Either<String, BufferSlice>>,
) -> Result<Vec<u8>> {
  match (serialization, message) {
    (Serialization::Json, Some(Either::A(json))) => Ok(message_text(env, Some(json))?.into_bytes()),
    (Serialization::Json, None) => message_text(env, None).map(String::into_bytes),
    (Serialization::Advanced, Some(Either::B(payload))) => Ok(payload.to_vec()),
    (_, message) => {
      let received = match message {
        Some(Either::A(_)) => "type string",
        Some(Either::B(_)) => "an instance of Buffer",
        None => "undefined",
      };
      let expected = match serialization {
        Serialization::Json => "of type string (JSON text)",
        Serialization::Advanced => "a Buffer (a v8 serializer payload)",
      };
      let error = TetheredError::invalid_type("message", expected, received.into());
      Err(throw(env, &error))
    }
  }
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

impl Listener for Outbox<Notice> {
  fn notify(&self, notices: Vec<Notice>) {
    self.push(notices);
  }

  fn backlog(&self) -> Arc<Backlog> {
    Outbox::backlog(self)
  }
}

impl Deliverable for Notice {
  type Snapshot = Snapshot;
  const INITIAL: Snapshot = Snapshot::IDLE;

  fn snapshot(&self) -> Option<Snapshot> {
    match self {
      Notice::Snapshot(snapshot) => Some(*snapshot),
      _ => None,
    }
  }

  fn settles(&self) -> Option<u64> {
    match self {
      Notice::Settled { call, .. } => Some(*call),
      _ => None,
    }
  }

  fn bytes(&self) -> usize {
    self.worker_bytes()
  }

  fn is_at_rest(snapshot: &Snapshot) -> bool {
    snapshot.state.is_at_rest()
  }

  fn to_js(env: &Env, batch: Vec<Notice>) -> Result<Array<'_>> {
    let mut notices = env.create_array(0)?;
    // Consecutive messages travel as one notice with an array of payloads: a burst costs one
    // object, not one per message.
    let mut messages: Option<Array> = None;
    for notice in batch {
      if let Notice::Message(payload) = notice {
        let run = match &mut messages {
          Some(run) => run,
          None => {
            let run = env.create_array(0)?;
            let mut obj = Object::new(env)?;
            obj.set("kind", "messages")?;
            obj.set("data", run)?;
            notices.insert(obj)?;
            messages.insert(run)
          }
        };
        run.insert(payload_to_js(env, payload)?)?;
        continue;
      }
      messages = None;
      if let Some(notice) = notice_to_js(env, notice)? {
        notices.insert(notice)?;
      }
    }
    Ok(notices)
  }
}

/// `{ kind, ... }` for JavaScript: events carry their payload as `value`, settlements their
/// `call` and a result as `data` or an `error`. Snapshots were taken in by the outbox and are not
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
    Notice::Ended { event, account } => {
      let (kind, mut value) = event_to_js(env, event)?;
      limit_and_usage_fields(env, &mut value, account.limit, account.usage)?;
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
        Ok(Some(payload)) => obj.set("data", payload_to_js(env, payload)?)?,
        Ok(None) => {}
        Err(error) => obj.set("error", js_error(env, &error)?)?,
      }
    }
  }
  Ok(Some(obj))
}

/// The event name and its payload, as the README's `new Supervisor(options)` section lists
/// them; 'exit' and 'crashed' get their `limit` and `resourceUsage` from their notice.
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
