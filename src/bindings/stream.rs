//! The native half of the streaming `spawn()`: a `NativeChild` object whose methods are the
//! pull-based pipe operations of [`StreamChild`]. `lib/child.js` builds the Node streams on top.
//!
//! Invalid arguments throw synchronously from `spawnStream`. The child is started before
//! `spawnStream` returns — the JavaScript thread waits for the launcher's answer, one round trip
//! on a socket of its own (`launch::launch_now`) — so `pid` is there at once, as Node code
//! expects, or undefined when it could not start; `wait()` then rejects with the spawn error —
//! one path for every failure on the JS side.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use tokio::sync::oneshot;

use super::{
  exit_fields, js_error_caused, limit_and_usage_fields, parent_env, parent_state,
  read_call_arguments, reject, reject_with, throw, to_value, AbortListener, CallArguments,
};
use crate::error::Error as TetheredError;
use crate::options;
use crate::stream::{Exit, Pending, StreamChild};
use crate::vocabulary::exit::Ending;
use crate::vocabulary::limits::READ_CHUNK;
use crate::vocabulary::stdio::{StdioMode, StreamName};
use crate::vocabulary::value::Value;

/// A streaming child as JavaScript sees it (internal: use `spawn()`).
#[napi]
pub struct NativeChild {
  child: Arc<StreamChild>,
  /// The `options.signal` listener and what it fires, until `wait()` takes them.
  abort: RefCell<Option<(AbortListener, oneshot::Receiver<()>)>>,
  /// Which of stdin, stdout, stderr are pipes (the JS side makes streams for those).
  piped: [bool; 3],
}

/// Starts `command` for streaming (internal: `spawn()` in lib/child.js wraps it). Throws for
/// invalid arguments only.
#[napi]
pub fn spawn_stream(
  env: &Env,
  command: Unknown,
  args: Option<Unknown>,
  // Not an `Option`, which would read `null` as absent: Node's spawn() refuses null options.
  options: Unknown,
) -> Result<NativeChild> {
  let CallArguments {
    command,
    args,
    options: options_value,
    options_object: options,
  } = read_call_arguments(env, command, args, Some(options))?;
  let plan = options::parse_stream(
    &command,
    &args,
    &options_value,
    parent_env(),
    &parent_state(),
  )
  .map_err(|e| throw(env, &e))?;
  let piped = plan.stdio.map(|mode| mode == StdioMode::Pipe);
  // Listened to even when it already fired: its `reason` becomes the AbortError's `cause`.
  let abort = match (plan.abort_signal, options) {
    (Some(_), Some(options)) => Some(AbortListener::attach(env, options)?),
    _ => None,
  };
  let child = if plan.abort_signal == Some(true) {
    StreamChild::failed(&plan, TetheredError::Aborted)
  } else {
    let child = StreamChild::new(&plan);
    within_runtime_if_available(|| child.start(&plan));
    child
  };
  let child = Arc::new(child);
  Ok(NativeChild {
    child,
    abort: RefCell::new(abort),
    piped,
  })
}

#[napi]
impl NativeChild {
  /// The child's pid (also its process group id); undefined when it could not start.
  #[napi(getter)]
  pub fn pid(&self) -> Option<u32> {
    self.child.pid()
  }

  /// `[stdin, stdout, stderr]`: whether each is a pipe.
  #[napi(getter, ts_return_type = "[boolean, boolean, boolean]")]
  pub fn piped(&self) -> Vec<bool> {
    self.piped.to_vec()
  }

  /// Settles when the leader is reaped: `{ exitCode, signal, timedOut, limit, resourceUsage }`.
  /// Rejects with the spawn error when the command did not start, with an AbortError (carrying
  /// `exitCode`, `signal`, `pid`) when `options.signal` ended it, and with `ERR_LAUNCHER_EXITED`
  /// if the launcher died. Call once.
  #[napi(
    ts_return_type = "Promise<{ exitCode: number | null; signal: string | null; timedOut: boolean; limit: 'cpuTime' | 'fileSize' | null; resourceUsage: { maxRss: number; userCpuMs: number; systemCpuMs: number } }>"
  )]
  pub fn wait<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, Unknown<'env>>> {
    let (listener, abort) = match self.abort.borrow_mut().take() {
      Some((listener, rx)) => (Some(listener), Some(rx)),
      None => (None, None),
    };
    let child = self.child.clone();
    // Claimed here, on the JS thread: of two wait() calls, the first one made is the one served.
    let claimed = child.claim_exit();
    let run = async move {
      let exit = if claimed {
        Some(child.run_to_exit(abort).await)
      } else {
        None
      };
      Ok((exit, child.pid()))
    };
    env.spawn_future_with_callback(run, move |env, (exit, pid)| {
      let abort_reason = match listener {
        Some(listener) => {
          let reason = listener.reason(env)?;
          listener.detach(env)?;
          Some(reason)
        }
        None => None,
      };
      let reject = |error| reject_with(js_error_caused(env, &error, abort_reason));
      match exit {
        None => Err(reject(TetheredError::InvalidState {
          action: "wait",
          state: "already waiting",
        })),
        Some(Err(error)) => Err(reject(error)),
        Some(Ok(exit)) => exit_result(env, exit, pid.unwrap_or_default(), abort_reason),
      }
    })
  }

  /// Reads what fd 1 or 2 holds right now, up to one read's worth (`READ_CHUNK`, the pipe's
  /// size), without waiting: a Buffer (JS-owned, filled by read(2) directly), null at EOF,
  /// undefined when there is nothing yet.
  #[napi(ts_return_type = "Buffer | null | undefined")]
  pub fn try_read<'env>(
    &self,
    env: &'env Env,
    fd: u32,
  ) -> Result<Either3<Unknown<'env>, Null, ()>> {
    let which = output(env, fd)?;
    let child = &self.child;
    let read_error = |e: std::io::Error| throw(env, &TetheredError::io(&e, "read"));
    loop {
      let len = match child.poll_output(which).map_err(read_error)? {
        Pending::Eof => return Ok(Either3::B(Null)),
        Pending::Empty => return Ok(Either3::C(())),
        Pending::Data(n) => n.min(READ_CHUNK),
      };
      let (buffer, data) = new_buffer(env, len)?;
      // SAFETY: napi_create_buffer gave `len` bytes at `data`, owned by `buffer`, which the
      // current handle scope keeps alive for the rest of this call; nothing else has seen them.
      let bytes = unsafe { std::slice::from_raw_parts_mut(data.as_ptr(), len) };
      match child.read_now(which, bytes) {
        Ok(0) => return Ok(Either3::B(Null)),
        Ok(n) if n == len => return Ok(Either3::A(buffer)),
        // Nothing else reads this pipe, so a short read cannot happen; if it did, keep the bytes.
        Ok(n) => {
          // SAFETY: read_now initialised the first `n` bytes.
          let read = unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<u8>(), n) };
          return Ok(Either3::A(Buffer::from(read).into_unknown(env)?));
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
        Err(e) => return Err(read_error(e)),
      }
    }
  }

  /// Resolves once fd 1 or 2 has data or reached EOF (then `tryRead` has something to say).
  #[napi(ts_return_type = "Promise<void>")]
  pub fn wait_readable<'env>(&self, env: &'env Env, fd: u32) -> Result<PromiseRaw<'env, ()>> {
    let which = output(env, fd)?;
    let child = self.child.clone();
    let run = async move { Ok(child.readable(which).await) };
    env.spawn_future_with_callback(run, |env, ready| {
      ready.map_err(|e| reject(env, &TetheredError::io(&e, "read")))
    })
  }

  /// Writes all of `data` to stdin (after the start); rejects with `EPIPE` when the child's
  /// stdin is closed, and with the spawn error when it did not start.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn write<'env>(&self, env: &'env Env, data: Buffer) -> Result<PromiseRaw<'env, ()>> {
    let child = self.child.clone();
    let run = async move {
      let written = child.write(&data).await;
      Ok(written.map_err(|e| {
        child
          .start_error()
          .unwrap_or(TetheredError::io(&e, "write"))
      }))
    };
    env.spawn_future_with_callback(run, |env, written| written.map_err(|e| reject(env, &e)))
  }

  /// Writes as much of `data` to stdin as fits right now (nothing while the child is starting);
  /// returns how many bytes that was. Throws the spawn error when it did not start.
  #[napi]
  pub fn try_write(&self, env: &Env, data: BufferSlice) -> Result<u32> {
    if let Some(error) = self.child.start_error() {
      return Err(throw(env, &error));
    }
    self
      .child
      .try_write(&data)
      .map(|n| n as u32)
      .map_err(|e| throw(env, &TetheredError::io(&e, "write")))
  }

  /// Closes stdin (the child reads EOF).
  #[napi]
  pub fn close_stdin(&self) {
    self.child.close_stdin();
  }

  /// Closes tethered's end of fd 1 or 2; a pending read resolves null. Signals nothing.
  #[napi]
  pub fn close_output(&self, env: &Env, fd: u32) -> Result<()> {
    self.child.close_output(output(env, fd)?);
    Ok(())
  }

  /// Sends `signal` (default SIGTERM) to the child's process group; whether it was delivered.
  /// `0` sends nothing and says whether the leader still runs, as `kill(pid, 0)` would.
  #[napi(ts_args_type = "signal?: NodeJS.Signals | number")]
  pub fn kill(&self, env: &Env, signal: Option<Unknown>) -> Result<bool> {
    let signal = to_value(env, signal, 0)?;
    if signal == Value::Number(0.0) {
      return Ok(self.child.is_running());
    }
    let signal = options::signal_or_sigterm(&signal, "signal").map_err(|e| throw(env, &e))?;
    Ok(self.child.kill(signal))
  }
}

/// A new JS-owned Buffer of `len` bytes (`napi_create_buffer`: Node's allocator, not zeroed) and
/// a pointer to its memory, for `read(2)` to fill. Being JS-owned, it is freed by the
/// young-generation GC like the Buffers `child_process` produces. When there is no memory for
/// it, the read fails as a read without memory does: `ENOMEM`.
fn new_buffer(env: &Env, len: usize) -> Result<(Unknown<'_>, NonNull<MaybeUninit<u8>>)> {
  let mut data = std::ptr::null_mut();
  let mut value = std::ptr::null_mut();
  // SAFETY: `env` is the live env of the current call and both out-pointers are valid locals.
  let status = unsafe { sys::napi_create_buffer(env.raw(), len, &mut data, &mut value) };
  let no_memory = || {
    let error = std::io::Error::from_raw_os_error(libc::ENOMEM);
    throw(env, &TetheredError::io(&error, "read"))
  };
  if status != sys::Status::napi_ok {
    return Err(no_memory());
  }
  let data = NonNull::new(data.cast::<MaybeUninit<u8>>())
    .filter(|_| len > 0)
    .ok_or_else(no_memory)?;
  // SAFETY: `value` is the Buffer napi_create_buffer just created in `env`.
  let buffer = unsafe { Unknown::from_raw_unchecked(env.raw(), value) };
  Ok((buffer, data))
}

fn output(env: &Env, fd: u32) -> Result<StreamName> {
  match fd {
    1 => Ok(StreamName::Stdout),
    2 => Ok(StreamName::Stderr),
    _ => Err(throw(
      env,
      &TetheredError::out_of_range("fd", "1 or 2", fd.to_string()),
    )),
  }
}

/// `{ exitCode, signal, timedOut, limit, resourceUsage }`, or the AbortError when the
/// AbortSignal ended the child.
fn exit_result<'env>(
  env: &'env Env,
  exit: Exit,
  pid: u32,
  abort_reason: Option<Unknown<'env>>,
) -> Result<Unknown<'env>> {
  if exit.ended_by == Some(Ending::Aborted) {
    let mut error = js_error_caused(env, &TetheredError::Aborted, abort_reason)?;
    exit_fields(&mut error, exit.status, "exitCode")?;
    limit_and_usage_fields(env, &mut error, exit.limit, Some(exit.usage))?;
    error.set("pid", pid)?;
    return Err(napi::Error::from(error.to_unknown()));
  }
  let mut obj = Object::new(env)?;
  exit_fields(&mut obj, exit.status, "exitCode")?;
  obj.set(
    "timedOut",
    matches!(exit.ended_by, Some(Ending::Timeout(_))),
  )?;
  limit_and_usage_fields(env, &mut obj, exit.limit, Some(exit.usage))?;
  Ok(obj.to_unknown())
}
