//! `spawnCollect` and `runProcess`: arguments in, a promise of the collected run out. What a
//! run resolves or rejects with is decided in `crate::collect`; this file only converts it.

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};
use napi_derive::napi;

use super::{
  exit_fields, js_error, limit_and_usage_fields, parent_env, read_call_arguments, reject,
  reject_with, throw, AbortListener, CallArguments,
};
use crate::collect::{self, Outcome, ProcessResult};
use crate::error::Error as TetheredError;
use crate::options::{self, Encoding};

/// `spawnCollect(command, args?, options?)`: resolves on any exit, rejects when the command
/// could not start, when output passed `maxBuffer`, or on abort.
#[napi(ts_return_type = "Promise<SpawnResult>")]
pub fn spawn_collect<'env>(
  env: &'env Env,
  command: Unknown<'env>,
  args: Option<Unknown<'env>>,
  options: Option<Unknown<'env>>,
) -> Result<PromiseRaw<'env, Unknown<'env>>> {
  start_collect(env, command, args, options, ResultShape::Spawn)
}

/// `runProcess(command, args?, options?)`: never rejects because of the process.
#[napi(ts_return_type = "Promise<ProcessResult>")]
pub fn run_process<'env>(
  env: &'env Env,
  command: Unknown<'env>,
  args: Option<Unknown<'env>>,
  options: Option<Unknown<'env>>,
) -> Result<PromiseRaw<'env, Unknown<'env>>> {
  start_collect(env, command, args, options, ResultShape::Process)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ResultShape {
  Spawn,
  Process,
}

fn start_collect<'env>(
  env: &'env Env,
  command: Unknown<'env>,
  args: Option<Unknown<'env>>,
  options: Option<Unknown<'env>>,
  shape: ResultShape,
) -> Result<PromiseRaw<'env, Unknown<'env>>> {
  let CallArguments {
    command,
    args,
    options: options_value,
    options_object: options,
  } = read_call_arguments(env, command, args, options)?;
  let plan = options::parse_collect(&command, &args, &options_value, parent_env())
    .map_err(|e| throw(env, &e))?;
  let encoding = plan.encoding;
  let (abort_rx, listener) = match (&plan.abort_signal, options) {
    (Some(false), Some(options)) => {
      let (listener, rx) = AbortListener::attach(env, options)?;
      (Some(rx), Some(listener))
    }
    _ => (None, None),
  };
  let run = async move {
    let started = std::time::Instant::now();
    let outcome = collect::run(plan, abort_rx).await;
    Ok((outcome, started.elapsed()))
  };
  env.spawn_future_with_callback(run, move |env, (outcome, elapsed)| {
    if let Some(listener) = listener {
      listener.detach(env)?;
    }
    match shape {
      ResultShape::Spawn => spawn_result(env, outcome, encoding),
      ResultShape::Process => process_result(env, outcome, elapsed, encoding),
    }
  })
}

fn output<'env>(env: &'env Env, bytes: Vec<u8>, encoding: Encoding) -> Result<Unknown<'env>> {
  match encoding {
    Encoding::Utf8 => env
      .create_string(String::from_utf8_lossy(&bytes))
      .map(|s| s.to_unknown()),
    Encoding::Buffer => Buffer::from(bytes).into_unknown(env),
  }
}

fn spawn_result<'env>(
  env: &'env Env,
  outcome: std::result::Result<Outcome, TetheredError>,
  encoding: Encoding,
) -> Result<Unknown<'env>> {
  let outcome = outcome.map_err(|e| reject(env, &e))?;
  if let Some(error) = outcome.rejection() {
    return Err(reject_with_output(env, &error, outcome, encoding));
  }
  let mut obj = Object::new(env)?;
  obj.set("timedOut", outcome.timed_out())?;
  obj.set("stdout", output(env, outcome.stdout, encoding)?)?;
  obj.set("stderr", output(env, outcome.stderr, encoding)?)?;
  exit_fields(&mut obj, outcome.status, "exitCode")?;
  limit_and_usage_fields(env, &mut obj, outcome.limit, Some(outcome.usage))?;
  obj.set("pid", outcome.pid)?;
  obj.set("durationMs", outcome.duration.as_secs_f64() * 1000.0)?;
  Ok(obj.to_unknown())
}

fn process_result<'env>(
  env: &'env Env,
  outcome: std::result::Result<Outcome, TetheredError>,
  elapsed: std::time::Duration,
  encoding: Encoding,
) -> Result<Unknown<'env>> {
  let result = ProcessResult::from_run(outcome, elapsed);
  let mut obj = Object::new(env)?;
  obj.set("stdout", output(env, result.stdout, encoding)?)?;
  obj.set("stderr", output(env, result.stderr, encoding)?)?;
  obj.set("ok", result.ok)?;
  match result.status {
    Some(status) => exit_fields(&mut obj, status, "code")?,
    None => {
      obj.set("code", Null)?;
      obj.set("signal", Null)?;
    }
  }
  obj.set("timedOut", result.timed_out)?;
  limit_and_usage_fields(env, &mut obj, result.limit, result.usage)?;
  obj.set("durationMs", result.duration.as_secs_f64() * 1000.0)?;
  if let Some(error) = &result.error {
    let mut summary = Object::new(env)?;
    summary.set("code", error.code())?;
    summary.set("message", error.to_string())?;
    obj.set("error", summary)?;
  }
  Ok(obj.to_unknown())
}

/// An `Err` that rejects with the JS error for `error`, carrying the output collected so far.
fn reject_with_output(
  env: &Env,
  error: &TetheredError,
  outcome: Outcome,
  encoding: Encoding,
) -> napi::Error {
  let obj = js_error(env, error).and_then(|mut obj| {
    obj.set("stdout", output(env, outcome.stdout, encoding)?)?;
    obj.set("stderr", output(env, outcome.stderr, encoding)?)?;
    exit_fields(&mut obj, outcome.status, "exitCode")?;
    limit_and_usage_fields(env, &mut obj, outcome.limit, Some(outcome.usage))?;
    obj.set("pid", outcome.pid)?;
    Ok(obj)
  });
  reject_with(obj)
}
