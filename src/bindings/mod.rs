//! The napi glue, and the only place that touches JavaScript values: arguments are turned
//! into [`Value`]s for `options`, results and [`Error`](TetheredError)s are turned into JS
//! objects here. One file per entry point: `collect` (`spawnCollect`, `runProcess`) and
//! `supervisor` (`NativeSupervisor`); this one holds what they share.
//!
//! What a child inherits from this process at the call — its environment, directory and umask —
//! is read here, on the JavaScript thread, which is where `process.chdir()` and
//! `process.umask()` change them. A `file:` URL given as `cwd` arrives here already made a path
//! (by the JS face, `lib/cwd.js`).

mod collect;
mod outbox;
mod pool;
mod stream;
mod supervisor;
mod uv;

use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use std::sync::Mutex;
use tokio::sync::oneshot;

use std::ffi::OsString;

use crate::error::{Error as TetheredError, JsKind};
use crate::vocabulary::confinement::Limit;
use crate::vocabulary::exit::{ExitStatus, ResourceUsage};
use crate::vocabulary::launch_spec::ParentState;
use crate::vocabulary::signals;
use crate::vocabulary::value::Value;

/// How deep option objects are read (`options.env.NAME` is depth 2).
const OPTION_DEPTH: u8 = 2;

/// `EventTarget.prototype.addEventListener` / `removeEventListener`.
type ListenerMethod<'env> = Function<'env, FnArgs<(String, Function<'env, (), ()>)>, Unknown<'env>>;

/// The `(command, args, options)` of a process call in the option parser's view, and the
/// options object itself (its AbortSignal is listened to).
struct CallArguments<'env> {
  command: Value,
  args: Value,
  options: Value,
  options_object: Option<Unknown<'env>>,
}

fn read_call_arguments<'env>(
  env: &Env,
  command: Unknown<'env>,
  args: Option<Unknown<'env>>,
  options: Option<Unknown<'env>>,
) -> Result<CallArguments<'env>> {
  let (args, options) = shift_options(args, options)?;
  let options_value = to_value(env, options, OPTION_DEPTH)?;
  Ok(CallArguments {
    command: to_value(env, Some(command), 0)?,
    args: to_value(env, args, 1)?,
    options: options_value,
    options_object: options,
  })
}

/// This process's directory and umask now, which a child starts with (as Node's children do).
/// The umask is read from `/proc/self/status`: reading it with `umask(2)` means setting it, a
/// race with every other thread that creates files.
fn parent_state() -> ParentState {
  let umask = std::fs::read_to_string("/proc/self/status")
    .ok()
    .and_then(|status| {
      let line = status.lines().find(|l| l.starts_with("Umask:"))?;
      u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
    });
  ParentState {
    cwd: std::env::current_dir().ok(),
    umask,
  }
}

/// This process's environment as the OS gives it, bytes that are not UTF-8 included. Read on
/// the JS thread, the only thread that changes it.
fn parent_env() -> impl Iterator<Item = (OsString, OsString)> {
  std::env::vars_os()
}

/// `fn(command, options)` is accepted as `fn(command, [], options)`, as Node and execa do.
fn shift_options<'env>(
  args: Option<Unknown<'env>>,
  options: Option<Unknown<'env>>,
) -> Result<(Option<Unknown<'env>>, Option<Unknown<'env>>)> {
  let is_nullish = |v: &Option<Unknown>| -> Result<bool> {
    Ok(match v {
      None => true,
      Some(v) => matches!(v.get_type()?, ValueType::Undefined | ValueType::Null),
    })
  };
  if let Some(candidate) = &args {
    if candidate.get_type()? == ValueType::Object && !candidate.is_array()? && is_nullish(&options)?
    {
      return Ok((None, args));
    }
  }
  Ok((args, options))
}

/// The listener an `options.signal` gets for the life of one call.
struct AbortListener {
  signal: ObjectRef<false>,
  handler: FunctionRef<(), ()>,
}

impl AbortListener {
  fn attach(env: &Env, options: Unknown) -> Result<(Self, oneshot::Receiver<()>)> {
    let signal: Object = options.coerce_to_object()?.get_named_property("signal")?;
    let (tx, rx) = oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let handler = env.create_function_from_closure::<(), (), _>("onAbort", move |_| {
      if let Some(tx) = tx.lock().ok().and_then(|mut tx| tx.take()) {
        let _ = tx.send(());
      }
      Ok(())
    })?;
    let add: ListenerMethod = signal.get_named_property("addEventListener")?;
    add.apply(signal, FnArgs::from(("abort".to_string(), handler)))?;
    Ok((
      AbortListener {
        signal: signal.create_ref()?,
        handler: handler.create_ref()?,
      },
      rx,
    ))
  }

  /// `signal.reason`, what an abort's error carries as its `cause` (as Node's and execa's do).
  fn reason<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
    self.signal.get_value(env)?.get_named_property("reason")
  }

  fn detach(self, env: &Env) -> Result<()> {
    let signal = self.signal.get_value(env)?;
    let handler = self.handler.borrow_back(env)?;
    let remove: ListenerMethod = signal.get_named_property("removeEventListener")?;
    remove.apply(signal, FnArgs::from(("abort".to_string(), handler)))?;
    self.signal.unref(env)?;
    Ok(())
  }
}

fn exit_fields(obj: &mut Object, status: ExitStatus, code_key: &str) -> Result<()> {
  match status {
    ExitStatus::Code(code) => {
      obj.set(code_key, code)?;
      obj.set("signal", Null)?;
    }
    ExitStatus::Signal(signo) => {
      obj.set(code_key, Null)?;
      obj.set("signal", signals::name_of(signo))?;
    }
  }
  Ok(())
}

/// `limit` (the limit the kernel ended the process for, or null) and `resourceUsage` (null when
/// no process ran).
fn limit_and_usage_fields(
  env: &Env,
  obj: &mut Object,
  limit: Option<Limit>,
  usage: Option<ResourceUsage>,
) -> Result<()> {
  obj.set("limit", limit.map(Limit::as_str))?;
  match usage {
    Some(usage) => obj.set("resourceUsage", usage_to_js(env, usage)?)?,
    None => obj.set("resourceUsage", Null)?,
  }
  Ok(())
}

/// `{ maxRss, userCpuMs, systemCpuMs }`: bytes and milliseconds.
fn usage_to_js(env: &Env, usage: ResourceUsage) -> Result<Object<'_>> {
  let mut js = Object::new(env)?;
  // From whole microseconds (the kernel's unit), so 828.44 prints as that, not 828.4399….
  let ms = |cpu: std::time::Duration| cpu.as_micros() as f64 / 1000.0;
  js.set("maxRss", usage.max_rss_bytes as f64)?;
  js.set("userCpuMs", ms(usage.user_cpu))?;
  js.set("systemCpuMs", ms(usage.system_cpu))?;
  Ok(js)
}

/// Builds the JS error object for `error`, with every field Node users look for.
fn js_error<'env>(env: &'env Env, error: &TetheredError) -> Result<Object<'env>> {
  let message = error.to_string();
  let base = napi::Error::new(Status::GenericFailure, message.clone());
  let raw = match error.js_kind() {
    JsKind::TypeError => JsTypeError::from(base).into_unknown(*env),
    JsKind::RangeError => JsRangeError::from(base).into_unknown(*env),
    JsKind::Error | JsKind::AbortError => JsError::from(base).into_unknown(*env),
  };
  let mut obj = raw.coerce_to_object()?;
  obj.set("code", error.code())?;
  if error.js_kind() == JsKind::AbortError {
    obj.set("name", "AbortError")?;
  }
  match error {
    TetheredError::Spawn {
      errno,
      command,
      args,
    } => {
      obj.set("errno", -errno)?;
      obj.set("syscall", format!("spawn {command}"))?;
      obj.set("path", command.as_str())?;
      obj.set("spawnargs", args.clone())?;
    }
    TetheredError::SpawnCwd {
      errno,
      command,
      args,
      cwd,
    } => {
      obj.set("errno", -errno)?;
      obj.set("syscall", format!("spawn {command}"))?;
      obj.set("path", command.as_str())?;
      obj.set("spawnargs", args.clone())?;
      obj.set("cwd", cwd.as_str())?;
    }
    TetheredError::MaxBuffer { stream, .. } => {
      obj.set("stream", stream.as_str())?;
    }
    TetheredError::Io { errno, syscall } => {
      obj.set("errno", -errno)?;
      obj.set("syscall", *syscall)?;
    }
    _ => {}
  }
  Ok(obj)
}

/// [`js_error`], where an AbortError carries `cause`: the AbortSignal's `reason`, as Node's and
/// execa's do.
fn js_error_caused<'env>(
  env: &'env Env,
  error: &TetheredError,
  abort_reason: Option<Unknown<'env>>,
) -> Result<Object<'env>> {
  let mut obj = js_error(env, error)?;
  if let (TetheredError::Aborted, Some(reason)) = (error, abort_reason) {
    obj.set("cause", reason)?;
  }
  Ok(obj)
}

/// An `Err` that rejects a promise (or, returned from a synchronous call, throws) with `obj`.
fn reject_with(obj: Result<Object>) -> napi::Error {
  match obj {
    Ok(obj) => napi::Error::from(obj.to_unknown()),
    Err(e) => e,
  }
}

/// An `Err` that rejects a promise with the JS error object for `error`.
fn reject(env: &Env, error: &TetheredError) -> napi::Error {
  reject_with(js_error(env, error))
}

/// An `Err` that throws the JS error object for `error` from a synchronous call.
fn throw(env: &Env, error: &TetheredError) -> napi::Error {
  reject(env, error)
}

/// Reads a JS value into the option parser's view of it, `depth` levels of objects deep.
fn to_value(env: &Env, value: Option<Unknown>, depth: u8) -> Result<Value> {
  let Some(value) = value else {
    return Ok(Value::Undefined);
  };
  Ok(match value.get_type()? {
    ValueType::Undefined => Value::Undefined,
    ValueType::Null => Value::Null,
    ValueType::Boolean => Value::Bool(value.coerce_to_bool()?),
    ValueType::Number => Value::Number(value.coerce_to_number()?.get_double()?),
    ValueType::String => Value::String(value.coerce_to_string()?.into_utf8()?.into_owned()?),
    ValueType::Function => Value::Other("function".into()),
    ValueType::Symbol => Value::Other("type symbol".into()),
    ValueType::BigInt => Value::Other("type bigint".into()),
    ValueType::Object => object_to_value(env, value, depth)?,
    _ => Value::Other("an unknown value".into()),
  })
}

fn object_to_value(env: &Env, value: Unknown, depth: u8) -> Result<Value> {
  if value.is_array()? {
    // SAFETY: the value was just checked to be an array.
    let array = unsafe { value.cast::<Array>() }?;
    let mut items = Vec::with_capacity(array.len() as usize);
    for i in 0..array.len() {
      items.push(to_value(
        env,
        array.get::<Unknown>(i)?,
        depth.saturating_sub(1),
      )?);
    }
    return Ok(Value::Array(items));
  }
  let object = value.coerce_to_object()?;
  let class = class_name(&object)?;
  if value.is_typedarray()? {
    if class == "Uint8Array" || class == "Buffer" {
      // SAFETY: the value was just checked to be a Uint8Array (a Buffer is one).
      let bytes = unsafe { value.cast::<Uint8Array>() }?;
      return Ok(Value::Bytes(bytes.to_vec()));
    }
    return Ok(Value::Other(format!("an instance of {class}")));
  }
  let global = env.get_global()?;
  let abort_signal: Function<(), ()> = global.get_named_property("AbortSignal")?;
  if object.instanceof(abort_signal)? {
    let aborted: bool = object.get_named_property("aborted")?;
    return Ok(Value::AbortSignal { aborted });
  }
  // Only plain objects (and null-prototype ones) are option bags; class instances such as an
  // AbortController or a Map are shown by their class in errors.
  if depth == 0 || !(class.is_empty() || class == "Object") {
    let shown = if class.is_empty() { "Object" } else { &class };
    return Ok(Value::Other(format!("an instance of {shown}")));
  }
  let keys = object.get_property_names()?;
  // SAFETY: napi_get_property_names returns an array.
  let keys = unsafe { keys.to_unknown().cast::<Array>() }?;
  let mut entries = Vec::with_capacity(keys.len() as usize);
  for i in 0..keys.len() {
    let Some(key) = keys.get::<Unknown>(i)? else {
      continue;
    };
    // Read by the JS key itself: a key with a NUL byte must reach the option parser intact.
    let item: Unknown = object.get_property(key)?;
    let name = key.coerce_to_string()?.into_utf8()?.into_owned()?;
    entries.push((name, to_value(env, Some(item), depth - 1)?));
  }
  Ok(Value::Object(entries))
}

/// `value.constructor.name`, or "" when there is none (e.g. `Object.create(null)`).
fn class_name(object: &Object) -> Result<String> {
  let constructor: Unknown = object.get_named_property("constructor")?;
  if constructor.get_type()? != ValueType::Function {
    return Ok(String::new());
  }
  let name: Unknown = constructor.coerce_to_object()?.get_named_property("name")?;
  if name.get_type()? != ValueType::String {
    return Ok(String::new());
  }
  name.coerce_to_string()?.into_utf8()?.into_owned()
}
