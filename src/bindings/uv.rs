//! Waiting for a socket on Node's own event loop, and calling JavaScript from there.
//!
//! A worker's answer reaches JavaScript fastest the way a forked child's does: Node's thread
//! sleeps in its loop's epoll with the socket in it, wakes when the answer arrives, reads it
//! and calls JavaScript. Read on a tokio thread instead, the same answer costs a second
//! wake-up (the tokio thread's, then Node's through a threadsafe function), which measured as
//! much as the rest of a small round trip. So the channel of a worker is watched with a libuv
//! poll handle on Node's loop ([`watch_readable`]); Node exports libuv's functions, declared
//! here as they are in `uv.h`.
//!
//! Why it is shaped this way:
//! - Only the handle's size is taken from libuv (`uv_handle_size`); its fields are never
//!   touched, so no struct layout of libuv is copied here.
//! - Only on the main thread's loop (`uv_default_loop`). A worker thread's loop is closed when
//!   the thread ends, and Node aborts if a handle is still open then; there the caller keeps to
//!   tokio ([`watch_readable`] says no).
//! - The poll is unreferenced: it never keeps Node alive by itself (a running supervisor does,
//!   through its threadsafe function), and it is closed once the callback says the socket is
//!   done. The callback owns what keeps the socket open, and is dropped only in the close
//!   callback, after libuv let go of the descriptor, so libuv never polls a closed or reused fd.
//! - JavaScript is called with `napi_make_callback` ([`call_back`]) inside a handle scope, as
//!   Node calls its own I/O callbacks: `process.nextTick` callbacks and promise reactions run
//!   when it returns, and an exception is the process's uncaught exception.

use std::alloc::{alloc, dealloc, Layout};
use std::ffi::{c_int, c_void};
use std::os::fd::RawFd;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi::Env;

/// A libuv handle, seen only through pointers.
#[repr(C)]
struct UvHandle {
  _opaque: [u8; 0],
}

/// `UV_POLL` of `uv_handle_type`, and `UV_READABLE` of `uv_poll_event` (uv.h).
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

type PollCallback = unsafe extern "C" fn(handle: *mut UvHandle, status: c_int, events: c_int);
type CloseCallback = unsafe extern "C" fn(handle: *mut UvHandle);

extern "C" {
  fn uv_default_loop() -> *mut sys::uv_loop_s;
  fn uv_handle_size(kind: c_int) -> usize;
  fn uv_poll_init(event_loop: *mut sys::uv_loop_s, handle: *mut UvHandle, fd: c_int) -> c_int;
  fn uv_poll_start(handle: *mut UvHandle, events: c_int, callback: PollCallback) -> c_int;
  fn uv_poll_stop(handle: *mut UvHandle) -> c_int;
  fn uv_close(handle: *mut UvHandle, callback: CloseCallback);
  fn uv_unref(handle: *mut UvHandle);
  fn uv_handle_set_data(handle: *mut UvHandle, data: *mut c_void);
  fn uv_handle_get_data(handle: *const UvHandle) -> *mut c_void;
}

/// Called on the loop's thread each time the socket is readable; returns whether to go on
/// watching it.
pub type OnReadable = Box<dyn FnMut() -> bool>;

/// Calls `on_readable` on the JS thread whenever `fd` is readable, until it returns false;
/// then closes the poll and drops `on_readable`. `fd` must stay open as long as `on_readable`
/// lives. Gives `on_readable` back when it cannot watch on this thread's loop (not the main
/// thread's, or libuv refused), for the caller to read some other way.
pub fn watch_readable(
  env: &Env,
  fd: RawFd,
  on_readable: OnReadable,
) -> std::result::Result<(), OnReadable> {
  let mut event_loop = ptr::null_mut();
  // SAFETY: `env` is this thread's live environment; libuv's default loop exists in any Node
  // process.
  let on_main_loop = unsafe {
    sys::napi_get_uv_event_loop(env.raw(), &mut event_loop) == sys::Status::napi_ok
      && event_loop == uv_default_loop()
  };
  if !on_main_loop {
    return Err(on_readable);
  }
  let layout = handle_layout();
  // SAFETY: the layout has a non-zero size (a poll handle's).
  let handle = unsafe { alloc(layout) }.cast::<UvHandle>();
  if handle.is_null() {
    std::alloc::handle_alloc_error(layout);
  }
  // SAFETY: `handle` is fresh memory of the size libuv asks for a poll handle, and this is the
  // loop's own thread (the env's).
  if unsafe { uv_poll_init(event_loop, handle, fd) } != 0 {
    // SAFETY: allocated above with this layout; libuv did not keep it.
    unsafe { dealloc(handle.cast(), layout) };
    return Err(on_readable);
  }
  let data = Box::into_raw(Box::new(on_readable));
  // SAFETY: `handle` was initialised above. Its data is the boxed callback, which the poll
  // and close callbacks below read back, and which only `on_closed` frees.
  unsafe {
    uv_handle_set_data(handle, data.cast());
    uv_unref(handle);
    if uv_poll_start(handle, UV_READABLE, on_poll) != 0 {
      uv_close(handle, on_closed);
    }
  }
  Ok(())
}

fn handle_layout() -> Layout {
  // SAFETY: a plain query of a constant of libuv.
  let size = unsafe { uv_handle_size(UV_POLL) };
  Layout::from_size_align(size, std::mem::align_of::<u128>()).expect("libuv's handle size")
}

unsafe extern "C" fn on_poll(handle: *mut UvHandle, status: c_int, _events: c_int) {
  // SAFETY: the data was set by `watch_readable` and is freed only in `on_closed`, which
  // libuv calls after this handle's last poll callback; no other reference to it exists while
  // this runs (libuv does not re-enter a handle's callback).
  let on_readable = unsafe { &mut *uv_handle_get_data(handle).cast::<OnReadable>() };
  let go_on = on_readable();
  // libuv stops the poll itself after reporting an error.
  if !go_on || status < 0 {
    // SAFETY: an open poll handle on its loop's thread; closing from its own callback is
    // allowed, and nothing touches it after this.
    unsafe {
      uv_poll_stop(handle);
      uv_close(handle, on_closed);
    }
  }
}

unsafe extern "C" fn on_closed(handle: *mut UvHandle) {
  // SAFETY: libuv is done with the handle; its data and memory were made by `watch_readable`
  // and are freed here once.
  unsafe {
    drop(Box::from_raw(
      uv_handle_get_data(handle).cast::<OnReadable>(),
    ));
    dealloc(handle.cast(), handle_layout());
  }
}

/// Calls the function `callback` refers to with the value `arg` makes, from a libuv callback
/// on the JS thread (see the module comment). An exception it throws, or a failure to make the
/// argument, is the process's uncaught exception, as from any I/O callback.
pub fn call_back(
  env: &Env,
  callback: sys::napi_ref,
  arg: impl FnOnce() -> Result<sys::napi_value>,
) {
  let raw = env.raw();
  let mut scope = ptr::null_mut();
  // SAFETY: `env` is this thread's live environment and no scope is open in a libuv callback;
  // the scope is closed below.
  if unsafe { sys::napi_open_handle_scope(raw, &mut scope) } != sys::Status::napi_ok {
    return;
  }
  let called = (|| -> Result<()> {
    let arg = arg()?;
    let mut function = ptr::null_mut();
    let mut global = ptr::null_mut();
    let mut returned = ptr::null_mut();
    // SAFETY: `callback` is a live reference of this env (the caller deletes it only after
    // this returns); the values are made within the open scope.
    let status = unsafe {
      check_status!(sys::napi_get_reference_value(raw, callback, &mut function))?;
      check_status!(sys::napi_get_global(raw, &mut global))?;
      sys::napi_make_callback(
        raw,
        ptr::null_mut(),
        global,
        function,
        1,
        &arg,
        &mut returned,
      )
    };
    check_status!(status)
  })();
  if let Err(error) = called {
    // SAFETY: within the scope opened above. The pending exception, if any (else `undefined`),
    // is taken and raised as uncaught, as Node does for one thrown from an I/O callback.
    unsafe {
      let mut exception = ptr::null_mut();
      let mut kind = sys::ValueType::napi_undefined;
      sys::napi_get_and_clear_last_exception(raw, &mut exception);
      sys::napi_typeof(raw, exception, &mut kind);
      if kind == sys::ValueType::napi_undefined {
        exception = JsError::from(error).into_value(raw);
      }
      sys::napi_fatal_exception(raw, exception);
    }
  }
  // SAFETY: the scope opened above, on the same thread.
  unsafe { sys::napi_close_handle_scope(raw, scope) };
}
