//! `NativePool`: the JavaScript handle of one pool driver (`crate::pool::driver`);
//! `lib/pool.js` wraps it in an EventEmitter.
//!
//! Notices reach JavaScript through an [`Outbox`] (see `outbox.rs`): the pool is at rest when
//! it was never started, or is closed or exhausted with none of its processes left. Only two
//! calls can bring work, and they bring the callback: `start()`, and `request()` on a pool not
//! started yet (which starts it). Every other call either finds the callback there (the pool
//! is under way) or is answered at once — a request refused on admission (queue full, closed,
//! exhausted) throws, so JavaScript rejects without waiting for a delivery, and a `close()` at
//! rest returns `null`.
//!
//! `state`, `size` and `stats()` read the pool as it is now, not as of the last delivery: they
//! are for status pages and metrics, which want the freshest numbers.

use std::cell::Cell;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::outbox::{call_id_to_js, payload_to_js, Batch, Deliverable, Outbox};
use super::supervisor::outgoing;
use super::{
  exit_fields, js_error, limit_and_usage_fields, parent_env, throw, to_value, usage_to_js,
  OPTION_DEPTH,
};
use crate::error::Error as TetheredError;
use crate::ipc::backlog::Backlog;

use crate::pool::handle::{self, Handle};
use crate::pool::machine::{Event, State};
use crate::pool::notice::{CallId, Listener, Notice, Snapshot};
use crate::pool::options;
use crate::pool::stats::PoolStats;

/// A pool: options are checked when it is made; workers start with `start()` or the first
/// `request()`.
#[napi]
pub struct NativePool {
  pool: Handle,
  outbox: Arc<Outbox<Notice>>,
  /// The id of the last call made.
  last_call: Cell<CallId>,
}

#[napi]
impl NativePool {
  /// Throws a typed error (`ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE`, `ERR_OUT_OF_RANGE`)
  /// for invalid options.
  #[napi(constructor, ts_args_type = "options: PoolOptions")]
  pub fn new(env: Env, options: Unknown) -> Result<Self> {
    let options = to_value(&env, Some(options), OPTION_DEPTH)?;
    let process: Object = env.get_global()?.get_named_property("process")?;
    let exec_path: String = process.get_named_property("execPath")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let plan =
      options::parse_pool(&options, parent_env(), &exec_path, cpus).map_err(|e| throw(&env, &e))?;
    let outbox = Outbox::new();
    let (pool, run) = handle::pool(plan, jitter_seed(), outbox.clone(), Some(outbox.clone()));
    napi::bindgen_prelude::spawn(run);
    Ok(NativePool {
      pool,
      outbox,
      last_call: Cell::new(0),
    })
  }

  /// Starts the pool's minimum of workers. `onNotices` receives every batch of notices until
  /// the pool is at rest again. Returns the id of the call, which its `settled` notice carries.
  #[napi(
    ts_args_type = "onNotices: (notices: PoolNotice[]) => void",
    ts_return_type = "number"
  )]
  pub fn start(&self, env: Env, on_notices: Function<Batch<Notice>, ()>) -> Result<f64> {
    self.outbox.attach(&env, on_notices)?;
    let call = self.next_call();
    self.pool.start(call);
    Ok(self.outbox.settled_later(call))
  }

  /// Sends a request to a worker, or queues it: in json, the JSON text of its body, put in
  /// `{ tethered: 'request', id, body }` here; in advanced, that envelope serialized with a
  /// placeholder id (see `crate::ipc::advanced::request`).
  /// Returns the request's id, which its `settled` notice carries and `abort()` takes. Throws
  /// when the request is refused at once (`ERR_POOL_QUEUE_FULL`, `ERR_POOL_CLOSED`,
  /// `ERR_POOL_EXHAUSTED`, `ABORT_ERR` for a signal that had fired) or its options are invalid.
  /// A signal that fires later is JavaScript's to hear; it calls `abort()`.
  #[napi(
    ts_args_type = "body: string | Buffer | undefined, options: PoolRequestOptions | undefined, onNotices: (notices: PoolNotice[]) => void",
    ts_return_type = "number"
  )]
  pub fn request(
    &self,
    env: Env,
    body: Option<Either<String, BufferSlice>>,
    options: Option<Unknown>,
    on_notices: Function<Batch<Notice>, ()>,
  ) -> Result<f64> {
    let options = to_value(&env, options, 1)?;
    let plan = options::parse_request(&options, self.pool.policy()).map_err(|e| throw(&env, &e))?;
    let body = outgoing(&env, self.pool.serialization(), body)?;
    if plan.aborted {
      return Err(reject(&env, &self.pool.refuse_aborted()));
    }
    // A pool not started yet starts now, so it needs the callback; in any other state the
    // callback is there while work is under way, and a pool at rest refuses the request.
    if self.pool.state() == State::Idle {
      self.outbox.attach(&env, on_notices)?;
    }
    let call = self.next_call();
    self
      .pool
      .request(call, &body, plan.limits)
      .map_err(|e| reject(&env, &e))?;
    Ok(self.outbox.settled_later(call))
  }

  /// The request's AbortSignal fired: a queued request leaves the queue, one in flight is
  /// cancelled; either is rejected with `ABORT_ERR`. Nothing happens to a settled one.
  #[napi]
  pub fn abort(&self, id: f64) {
    self.pool.abort(id as CallId);
  }

  /// Closes the pool (see `close()` in the README). Returns the call id, or `null` when the
  /// pool is at rest and there is nothing to wait for.
  #[napi(
    ts_args_type = "options?: { drain?: boolean }",
    ts_return_type = "number | null"
  )]
  pub fn close(&self, env: Env, options: Option<Unknown>) -> Result<Option<f64>> {
    let options = to_value(&env, options, 1)?;
    let drain = options::parse_close(&options).map_err(|e| throw(&env, &e))?;
    if !self.outbox.is_busy() {
      self.pool.close(None, drain);
      return Ok(None);
    }
    let call = self.next_call();
    self.pool.close(Some(call), drain);
    Ok(Some(self.outbox.settled_later(call)))
  }

  #[napi(ts_return_type = "PoolStats")]
  pub fn stats<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
    stats_to_js(env, self.pool.stats())
  }

  #[napi(getter, ts_return_type = "PoolState")]
  pub fn state(&self) -> &'static str {
    self.pool.state().as_str()
  }

  #[napi(getter)]
  pub fn size(&self) -> u32 {
    u32::try_from(self.pool.size()).unwrap_or(u32::MAX)
  }

  /// How messages cross the workers' channels, as the options said: `'json'` or `'advanced'`.
  #[napi(getter, ts_return_type = "'json' | 'advanced'")]
  pub fn serialization(&self) -> &'static str {
    self.pool.serialization().as_str()
  }
}

impl NativePool {
  fn next_call(&self) -> CallId {
    // A u64 does not run out; the id stays exact as a JS number for 2^53 calls.
    let call = self.last_call.get() + 1;
    self.last_call.set(call);
    call
  }
}

/// A different seed for each pool, cheaply: the standard library seeds every `RandomState`
/// from the OS once and varies it per instance.
fn jitter_seed() -> u64 {
  use std::hash::BuildHasher;
  std::collections::hash_map::RandomState::new().hash_one(0u8)
}

/// The JS error for a pool error: the common fields, and for `ERR_WORKER_EXITED` what an
/// operator needs.
fn pool_error<'env>(env: &'env Env, error: &TetheredError) -> Result<Object<'env>> {
  let mut obj = js_error(env, error)?;
  if let TetheredError::PoolWorkerExited {
    pid,
    exit_code,
    signal,
    attempts,
    stderr_tail,
  } = error
  {
    obj.set("attempts", *attempts)?;
    obj.set("pid", *pid)?;
    match exit_code {
      Some(code) => obj.set("exitCode", *code)?,
      None => obj.set("exitCode", Null)?,
    }
    match signal {
      Some(signal) => obj.set("signal", signal.as_str())?,
      None => obj.set("signal", Null)?,
    }
    if let Some(tail) = stderr_tail {
      obj.set("stderrTail", tail.as_str())?;
    }
  }
  Ok(obj)
}

/// An `Err` that throws the JS error for `error` from a synchronous call.
fn reject(env: &Env, error: &TetheredError) -> napi::Error {
  match pool_error(env, error) {
    Ok(obj) => napi::Error::from(obj.to_unknown()),
    Err(e) => e,
  }
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

  fn bytes(&self) -> usize {
    self.worker_bytes()
  }

  fn settles(&self) -> Option<u64> {
    match self {
      Notice::Settled { call, .. } => Some(*call),
      _ => None,
    }
  }

  fn is_at_rest(snapshot: &Snapshot) -> bool {
    snapshot.is_at_rest()
  }

  fn to_js(env: &Env, batch: Vec<Notice>) -> Result<Array<'_>> {
    let mut notices = env.create_array(0)?;
    // Consecutive messages of one worker travel as one notice with an array of payloads.
    let mut messages: Option<(usize, u32, Array)> = None;
    for notice in batch {
      if let Notice::Message {
        worker,
        pid,
        payload,
      } = notice
      {
        let run = match &mut messages {
          Some((w, p, run)) if *w == worker && *p == pid => run,
          _ => {
            let run = env.create_array(0)?;
            let mut obj = Object::new(env)?;
            obj.set("kind", "messages")?;
            obj.set("worker", worker as u32)?;
            obj.set("pid", pid)?;
            obj.set("data", run)?;
            notices.insert(obj)?;
            &mut messages.insert((worker, pid, run)).2
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

/// `{ kind, ... }` for JavaScript: events carry their payload as `value`, output its worker
/// and pid beside the chunk, settlements their `call` and a result as `data` or an `error`.
/// Snapshots were taken in by the outbox and are not passed on.
fn notice_to_js(env: &Env, notice: Notice) -> Result<Option<Object<'_>>> {
  let mut obj = Object::new(env)?;
  match notice {
    Notice::Snapshot(_) | Notice::Message { .. } => return Ok(None),
    Notice::Event(event) => {
      let Some((kind, value)) = event_to_js(env, event)? else {
        return Ok(None);
      };
      obj.set("kind", kind)?;
      obj.set("value", value)?;
    }
    Notice::Ended { event, account } => {
      let Some((kind, mut value)) = event_to_js(env, event)? else {
        return Ok(None);
      };
      limit_and_usage_fields(env, &mut value, account.limit, account.usage)?;
      obj.set("kind", kind)?;
      obj.set("value", value)?;
    }
    Notice::Error(error) => {
      obj.set("kind", "error")?;
      obj.set("value", pool_error(env, &error)?)?;
    }
    Notice::Output {
      worker,
      pid,
      stream,
      chunk,
    } => {
      obj.set("kind", stream.as_str())?;
      obj.set("value", Buffer::from(chunk))?;
      obj.set("worker", worker as u32)?;
      obj.set("pid", pid)?;
    }
    Notice::Settled { call, outcome } => {
      obj.set("kind", "settled")?;
      obj.set("call", call_id_to_js(call))?;
      match outcome {
        Ok(Some(payload)) => obj.set("data", payload_to_js(env, payload)?)?,
        Ok(None) => {}
        Err(error) => obj.set("error", pool_error(env, &error)?)?,
      }
    }
  }
  Ok(Some(obj))
}

/// The event name and its payload, as the README's Pool section lists them; 'exit' and
/// 'crashed' get their `limit` and `resourceUsage` from their notice.
fn event_to_js(env: &Env, event: Event) -> Result<Option<(&'static str, Object<'_>)>> {
  let mut value = Object::new(env)?;
  let kind = match event {
    Event::Spawn { worker, pid } => {
      value.set("worker", worker as u32)?;
      value.set("pid", pid)?;
      "spawn"
    }
    Event::Exit {
      worker,
      pid,
      status,
    } => {
      value.set("worker", worker as u32)?;
      value.set("pid", pid)?;
      exit_fields(&mut value, status, "code")?;
      "exit"
    }
    Event::Crashed {
      worker,
      pid,
      status,
      restart_count,
    } => {
      value.set("worker", worker as u32)?;
      value.set("pid", pid)?;
      exit_fields(&mut value, status, "code")?;
      value.set("restartCount", restart_count as f64)?;
      "crashed"
    }
    Event::Restarting {
      worker,
      delay,
      attempt,
    } => {
      value.set("worker", worker as u32)?;
      value.set("delay", delay.as_millis() as f64)?;
      value.set("attempt", attempt as f64)?;
      "restarting"
    }
    Event::Unresponsive { worker, pid } => {
      value.set("worker", worker as u32)?;
      value.set("pid", pid)?;
      "unresponsive"
    }
    Event::Recycle {
      worker,
      pid,
      reason,
    } => {
      value.set("worker", worker as u32)?;
      value.set("pid", pid)?;
      value.set("reason", reason.as_str())?;
      "recycle"
    }
    Event::Exhausted {
      message,
      crashes,
      window,
    } => {
      value.set("message", message)?;
      value.set("crashes", crashes as f64)?;
      value.set("window", window.as_millis() as f64)?;
      "exhausted"
    }
    // Delivered as the 'error' it failed with (see the driver).
    Event::SpawnFailed { .. } => return Ok(None),
  };
  Ok(Some((kind, value)))
}

/// `stats()` as the README's Pool section shows it.
fn stats_to_js(env: &Env, stats: PoolStats) -> Result<Object<'_>> {
  let machine = stats.machine;
  let mut obj = Object::new(env)?;
  obj.set("state", machine.state.as_str())?;
  obj.set("queued", machine.queued as f64)?;
  obj.set("inFlight", machine.in_flight as f64)?;
  obj.set("completed", machine.completed as f64)?;
  obj.set("failed", machine.failed as f64)?;
  let counts = machine.rejected;
  let mut rejected = Object::new(env)?;
  for (key, count) in [
    ("queueFull", counts.queue_full),
    ("queueTimeout", counts.queue_timeout),
    ("timeout", counts.timeout),
    ("aborted", counts.aborted),
    ("workerExited", counts.worker_exited),
    ("workerError", counts.worker_error),
    ("exhausted", counts.exhausted),
    ("closed", counts.closed),
  ] {
    rejected.set(key, count as f64)?;
  }
  obj.set("rejected", rejected)?;
  obj.set("crashes", machine.crashes as f64)?;
  obj.set("restarts", machine.restarts as f64)?;
  obj.set("recycles", machine.recycles as f64)?;
  let mut latency = Object::new(env)?;
  match stats.latency {
    Some(percentiles) => {
      latency.set("p50", percentiles.p50)?;
      latency.set("p99", percentiles.p99)?;
    }
    None => {
      latency.set("p50", Null)?;
      latency.set("p99", Null)?;
    }
  }
  obj.set("latencyMs", latency)?;
  let mut workers = env.create_array(0)?;
  for row in stats.workers {
    let mut worker = Object::new(env)?;
    let w = row.stats;
    worker.set("worker", w.worker as u32)?;
    match w.pid {
      Some(pid) => worker.set("pid", pid)?,
      None => worker.set("pid", Null)?,
    }
    worker.set("state", w.state.as_str())?;
    worker.set("inFlight", w.in_flight as f64)?;
    worker.set("served", w.served as f64)?;
    worker.set("crashes", w.crashes as f64)?;
    worker.set("restartCount", w.restart_count as f64)?;
    match row.rss {
      Some(rss) => worker.set("rss", rss as f64)?,
      None => worker.set("rss", Null)?,
    }
    match row.uptime {
      Some(uptime) => worker.set("uptimeMs", uptime.as_millis() as f64)?,
      None => worker.set("uptimeMs", Null)?,
    }
    match row.last_exit_usage {
      Some(usage) => worker.set("lastExitUsage", usage_to_js(env, usage)?)?,
      None => worker.set("lastExitUsage", Null)?,
    }
    workers.insert(worker)?;
  }
  obj.set("workers", workers)?;
  Ok(obj)
}
