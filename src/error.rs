//! The one error type of the crate. Every failure a caller can see is a variant here, and
//! `bindings` is the only place that turns it into a JavaScript error object.

use std::fmt;

use crate::vocabulary::exit::Ending;
use crate::vocabulary::launch_spec::LaunchSpec;
use crate::vocabulary::stdio::StreamName;

/// Which JavaScript constructor an error is shown with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsKind {
  Error,
  TypeError,
  RangeError,
  AbortError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
  /// A value of the wrong type: `ERR_INVALID_ARG_TYPE`.
  InvalidArgType {
    name: String,
    expected: &'static str,
    received: String,
  },
  /// A value of the right type that is not allowed: `ERR_INVALID_ARG_VALUE`.
  InvalidArgValue {
    name: String,
    reason: String,
    received: String,
  },
  /// A number outside its range: `ERR_OUT_OF_RANGE`.
  OutOfRange {
    name: String,
    expected: &'static str,
    received: String,
  },
  /// The program could not be started; shaped like Node's spawn errors.
  Spawn {
    errno: i32,
    command: String,
    args: Vec<String>,
  },
  /// The program could not be started because its working directory could not be entered:
  /// Node's spawn error shape, with the directory named in the message and in `cwd`.
  SpawnCwd {
    errno: i32,
    command: String,
    args: Vec<String>,
    cwd: String,
  },
  /// An output stream passed its limit; the group was killed.
  MaxBuffer { stream: StreamName, limit: usize },
  /// The run was cancelled through its AbortSignal; the group was killed.
  Aborted,
  /// The launcher helper process died mid-call.
  LauncherExited { detail: String },
  /// The launcher helper process could not be started, or died at once too often lately.
  LauncherStart { detail: String },
  /// The run passed its `timeout`; the group was killed.
  Timeout { after: std::time::Duration },
  /// `send()`/`request()` with no worker connected, as Node's `subprocess.send` reports it.
  ChannelClosed,
  /// A request was in flight when its worker exited or closed its channel.
  WorkerExited { pid: u32 },
  /// `request()` got no answer within its `timeout`; the worker is left running.
  RequestTimeout { after: std::time::Duration },
  /// The worker answered a request with `error: { message, code? }`.
  WorkerRequestFailed {
    message: String,
    code: Option<String>,
  },
  /// A line from the worker's channel that is not JSON; the messages after it still arrive.
  MalformedMessage { reason: String },
  /// A message from the worker is longer than `maxMessageSize`; the worker is killed for it.
  MessageTooLarge { limit: usize },
  /// A method called in a state where it cannot work, e.g. `start()` while stopping.
  InvalidState {
    action: &'static str,
    state: &'static str,
  },
  /// A read or write on one of the child's pipes failed (e.g. `EPIPE`); shaped like Node's
  /// system errors (`write EPIPE`).
  Io { errno: i32, syscall: &'static str },
  /// A Pool's queue held `maxQueue` requests; the request was not admitted.
  PoolQueueFull,
  /// A Pool's request waited its `queueTimeout` for a worker.
  PoolQueueTimeout { after: std::time::Duration },
  /// A Pool's request was in flight when its worker died, with no attempt left. Carries what
  /// an operator needs: how many workers it was in flight for, the last one's pid and exit,
  /// and that worker's last stderr output when stderr was piped.
  PoolWorkerExited {
    pid: u32,
    exit_code: Option<i32>,
    signal: Option<String>,
    attempts: u32,
    stderr_tail: Option<String>,
  },
  /// The Pool gave up after too many crashes within its restart window.
  PoolExhausted,
  /// The Pool was closed (or could not start its workers).
  PoolClosed,
}

impl Error {
  /// The stable `err.code` seen by JavaScript.
  pub fn code(&self) -> String {
    match self {
      Error::InvalidArgType { .. } => "ERR_INVALID_ARG_TYPE".into(),
      Error::InvalidArgValue { .. } => "ERR_INVALID_ARG_VALUE".into(),
      Error::OutOfRange { .. } => "ERR_OUT_OF_RANGE".into(),
      Error::Spawn { errno, .. } | Error::SpawnCwd { errno, .. } => errno_name(*errno),
      Error::MaxBuffer { .. } => "ERR_MAX_BUFFER".into(),
      Error::Aborted => "ABORT_ERR".into(),
      Error::Timeout { .. } | Error::RequestTimeout { .. } => "ERR_TIMEOUT".into(),
      Error::ChannelClosed => "ERR_IPC_CHANNEL_CLOSED".into(),
      Error::WorkerExited { .. } | Error::PoolWorkerExited { .. } => "ERR_WORKER_EXITED".into(),
      Error::WorkerRequestFailed { code, .. } => code
        .clone()
        .unwrap_or_else(|| "ERR_WORKER_REQUEST_FAILED".into()),
      Error::MalformedMessage { .. } => "ERR_IPC_MALFORMED_MESSAGE".into(),
      Error::MessageTooLarge { .. } => "ERR_IPC_MESSAGE_TOO_LARGE".into(),
      Error::InvalidState { .. } => "ERR_INVALID_STATE".into(),
      Error::Io { errno, .. } => errno_name(*errno),
      Error::LauncherExited { .. } => "ERR_LAUNCHER_EXITED".into(),
      Error::LauncherStart { .. } => "ERR_LAUNCHER_START".into(),
      Error::PoolQueueFull => "ERR_POOL_QUEUE_FULL".into(),
      Error::PoolQueueTimeout { .. } => "ERR_POOL_QUEUE_TIMEOUT".into(),
      Error::PoolExhausted => "ERR_POOL_EXHAUSTED".into(),
      Error::PoolClosed => "ERR_POOL_CLOSED".into(),
    }
  }

  pub fn js_kind(&self) -> JsKind {
    match self {
      Error::InvalidArgType { .. } | Error::InvalidArgValue { .. } => JsKind::TypeError,
      Error::OutOfRange { .. } => JsKind::RangeError,
      Error::Aborted => JsKind::AbortError,
      _ => JsKind::Error,
    }
  }

  pub fn invalid_type(name: impl Into<String>, expected: &'static str, received: String) -> Self {
    Error::InvalidArgType {
      name: name.into(),
      expected,
      received,
    }
  }

  pub fn invalid_value(
    name: impl Into<String>,
    reason: impl Into<String>,
    received: String,
  ) -> Self {
    Error::InvalidArgValue {
      name: name.into(),
      reason: reason.into(),
      received,
    }
  }

  pub fn out_of_range(name: impl Into<String>, expected: &'static str, received: String) -> Self {
    Error::OutOfRange {
      name: name.into(),
      expected,
      received,
    }
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Error::InvalidArgType {
        name,
        expected,
        received,
      } => write!(
        f,
        "The \"{name}\" argument must be {expected}. Received {received}"
      ),
      Error::InvalidArgValue {
        name,
        reason,
        received,
      } => write!(f, "The \"{name}\" argument {reason}. Received {received}"),
      Error::OutOfRange {
        name,
        expected,
        received,
      } => write!(
        f,
        "The value of \"{name}\" is out of range. It must be {expected}. Received {received}"
      ),
      Error::Spawn { errno, command, .. } => write!(f, "spawn {command} {}", errno_name(*errno)),
      Error::SpawnCwd {
        errno,
        command,
        cwd,
        ..
      } => {
        let why = match *errno {
          libc::ENOENT => "does not exist",
          libc::ENOTDIR => "is not a directory",
          libc::EACCES => "cannot be entered (permission denied)",
          _ => "cannot be entered",
        };
        write!(
          f,
          "spawn {command} {}: cwd '{cwd}' {why}",
          errno_name(*errno)
        )
      }
      Error::MaxBuffer { stream, limit } => {
        write!(
          f,
          "{} maxBuffer length exceeded ({limit} bytes); the process group was killed",
          stream.as_str()
        )
      }
      Error::Aborted => write!(f, "The operation was aborted"),
      Error::LauncherExited { detail } => {
        write!(f, "The tethered launcher process exited: {detail}")
      }
      Error::LauncherStart { detail } => {
        write!(
          f,
          "The tethered launcher process could not be started: {detail}"
        )
      }
      Error::Timeout { after } => write!(
        f,
        "Timed out after {} ms; the process group was killed",
        after.as_millis()
      ),
      Error::ChannelClosed => write!(f, "Channel closed"),
      Error::WorkerExited { pid } => write!(
        f,
        "The worker (pid {pid}) exited or closed its IPC channel before answering"
      ),
      Error::RequestTimeout { after } => write!(
        f,
        "The worker did not answer the request within {} ms",
        after.as_millis()
      ),
      Error::WorkerRequestFailed { message, .. } => write!(f, "{message}"),
      Error::MalformedMessage { reason } => {
        write!(f, "A message from the worker is not valid JSON: {reason}")
      }
      Error::MessageTooLarge { limit } => write!(
        f,
        "A message from the worker is longer than maxMessageSize ({limit} bytes); the worker was killed"
      ),
      Error::InvalidState { action, state } => {
        write!(f, "Invalid state: cannot {action}() while {state}")
      }
      Error::Io { errno, syscall } => write!(f, "{syscall} {}", errno_name(*errno)),
      Error::PoolQueueFull => write!(
        f,
        "The pool's queue is full (maxQueue); the request was not queued"
      ),
      Error::PoolQueueTimeout { after } => write!(
        f,
        "The request waited {} ms in the pool's queue without reaching a worker",
        after.as_millis()
      ),
      Error::PoolWorkerExited {
        pid,
        exit_code,
        signal,
        attempts,
        ..
      } => {
        let how = match (exit_code, signal) {
          (_, Some(signal)) => format!("was killed by {signal}"),
          (Some(code), None) => format!("exited with code {code}"),
          (None, None) => "exited".to_string(),
        };
        let tries = if *attempts == 1 { "worker" } else { "workers" };
        write!(
          f,
          "The worker (pid {pid}) {how} before answering; the request was in flight in \
           {attempts} {tries} that died"
        )
      }
      Error::PoolExhausted => write!(
        f,
        "The pool is exhausted: its workers crashed more than maxRestarts times within \
         restartWindow"
      ),
      Error::PoolClosed => write!(f, "The pool is closed"),
    }
  }
}

impl std::error::Error for Error {}

impl From<Ending> for Error {
  /// The error a caller is told when tethered ended the process for this reason.
  fn from(ending: Ending) -> Self {
    match ending {
      Ending::Timeout(after) => Error::Timeout { after },
      Ending::MaxBuffer { stream, limit } => Error::MaxBuffer { stream, limit },
      Ending::Aborted => Error::Aborted,
    }
  }
}

impl Error {
  /// `spec` could not be started: fork or exec failed, or what the child needs (its pipes, its
  /// channel) could not be made.
  pub fn spawn(spec: &LaunchSpec, errno: i32) -> Self {
    Error::Spawn {
      errno,
      command: spec.command.clone(),
      args: spec.args.clone(),
    }
  }

  /// `spec` could not be started because its directory could not be entered.
  pub fn spawn_in_cwd(spec: &LaunchSpec, errno: i32) -> Self {
    Error::SpawnCwd {
      errno,
      command: spec.command.clone(),
      args: spec.args.clone(),
      cwd: spec
        .cwd
        .as_deref()
        .map_or_else(String::new, |cwd| cwd.to_string_lossy().into_owned()),
    }
  }

  /// A failed pipe operation; an error without an OS code counts as `EIO`.
  pub fn io(error: &std::io::Error, syscall: &'static str) -> Self {
    Error::Io {
      errno: error.raw_os_error().unwrap_or(libc::EIO),
      syscall,
    }
  }
}

/// The names Node gives errno values on Linux, by number. Aliases (`EWOULDBLOCK`, `EDEADLOCK`,
/// `EOPNOTSUPP`) share a number with the name listed, which is the one Node shows.
const ERRNO_NAMES: &[(i32, &str)] = &[
  (libc::EPERM, "EPERM"),
  (libc::ENOENT, "ENOENT"),
  (libc::ESRCH, "ESRCH"),
  (libc::EINTR, "EINTR"),
  (libc::EIO, "EIO"),
  (libc::ENXIO, "ENXIO"),
  (libc::E2BIG, "E2BIG"),
  (libc::ENOEXEC, "ENOEXEC"),
  (libc::EBADF, "EBADF"),
  (libc::ECHILD, "ECHILD"),
  (libc::EAGAIN, "EAGAIN"),
  (libc::ENOMEM, "ENOMEM"),
  (libc::EACCES, "EACCES"),
  (libc::EFAULT, "EFAULT"),
  (libc::ENOTBLK, "ENOTBLK"),
  (libc::EBUSY, "EBUSY"),
  (libc::EEXIST, "EEXIST"),
  (libc::EXDEV, "EXDEV"),
  (libc::ENODEV, "ENODEV"),
  (libc::ENOTDIR, "ENOTDIR"),
  (libc::EISDIR, "EISDIR"),
  (libc::EINVAL, "EINVAL"),
  (libc::ENFILE, "ENFILE"),
  (libc::EMFILE, "EMFILE"),
  (libc::ENOTTY, "ENOTTY"),
  (libc::ETXTBSY, "ETXTBSY"),
  (libc::EFBIG, "EFBIG"),
  (libc::ENOSPC, "ENOSPC"),
  (libc::ESPIPE, "ESPIPE"),
  (libc::EROFS, "EROFS"),
  (libc::EMLINK, "EMLINK"),
  (libc::EPIPE, "EPIPE"),
  (libc::EDOM, "EDOM"),
  (libc::ERANGE, "ERANGE"),
  (libc::EDEADLK, "EDEADLK"),
  (libc::ENAMETOOLONG, "ENAMETOOLONG"),
  (libc::ENOLCK, "ENOLCK"),
  (libc::ENOSYS, "ENOSYS"),
  (libc::ENOTEMPTY, "ENOTEMPTY"),
  (libc::ELOOP, "ELOOP"),
  (libc::ENOMSG, "ENOMSG"),
  (libc::EIDRM, "EIDRM"),
  (libc::ENOSTR, "ENOSTR"),
  (libc::ENODATA, "ENODATA"),
  (libc::ETIME, "ETIME"),
  (libc::ENOSR, "ENOSR"),
  (libc::EREMOTE, "EREMOTE"),
  (libc::ENOLINK, "ENOLINK"),
  (libc::EPROTO, "EPROTO"),
  (libc::EMULTIHOP, "EMULTIHOP"),
  (libc::EBADMSG, "EBADMSG"),
  (libc::EOVERFLOW, "EOVERFLOW"),
  (libc::EILSEQ, "EILSEQ"),
  (libc::EUSERS, "EUSERS"),
  (libc::ENOTSOCK, "ENOTSOCK"),
  (libc::EDESTADDRREQ, "EDESTADDRREQ"),
  (libc::EMSGSIZE, "EMSGSIZE"),
  (libc::EPROTOTYPE, "EPROTOTYPE"),
  (libc::ENOPROTOOPT, "ENOPROTOOPT"),
  (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
  (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
  (libc::ENOTSUP, "ENOTSUP"),
  (libc::EPFNOSUPPORT, "EPFNOSUPPORT"),
  (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
  (libc::EADDRINUSE, "EADDRINUSE"),
  (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
  (libc::ENETDOWN, "ENETDOWN"),
  (libc::ENETUNREACH, "ENETUNREACH"),
  (libc::ENETRESET, "ENETRESET"),
  (libc::ECONNABORTED, "ECONNABORTED"),
  (libc::ECONNRESET, "ECONNRESET"),
  (libc::ENOBUFS, "ENOBUFS"),
  (libc::EISCONN, "EISCONN"),
  (libc::ENOTCONN, "ENOTCONN"),
  (libc::ESHUTDOWN, "ESHUTDOWN"),
  (libc::ETOOMANYREFS, "ETOOMANYREFS"),
  (libc::ETIMEDOUT, "ETIMEDOUT"),
  (libc::ECONNREFUSED, "ECONNREFUSED"),
  (libc::EHOSTDOWN, "EHOSTDOWN"),
  (libc::EHOSTUNREACH, "EHOSTUNREACH"),
  (libc::EALREADY, "EALREADY"),
  (libc::EINPROGRESS, "EINPROGRESS"),
  (libc::ESTALE, "ESTALE"),
  (libc::EDQUOT, "EDQUOT"),
  (libc::ECANCELED, "ECANCELED"),
  (libc::EOWNERDEAD, "EOWNERDEAD"),
  (libc::ENOTRECOVERABLE, "ENOTRECOVERABLE"),
];

/// `ENOENT` for 2, as Node names errno values; for a number it has no name for, what Node's
/// `util.getSystemErrorName` says of it (`Unknown system error -<n>`, the negative errno).
pub fn errno_name(errno: i32) -> String {
  match ERRNO_NAMES.iter().find(|(number, _)| *number == errno) {
    Some((_, name)) => (*name).to_string(),
    None => format!("Unknown system error -{errno}"),
  }
}

/// The C library's description of an errno value, e.g. "No such file or directory".
pub fn errno_description(errno: i32) -> &'static str {
  nix::errno::Errno::from_raw(errno).desc()
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn errno_names_match_node() {
    assert_eq!(errno_name(libc::ENOENT), "ENOENT");
    assert_eq!(errno_name(libc::EACCES), "EACCES");
    assert_eq!(errno_name(libc::ENOTDIR), "ENOTDIR");
    assert_eq!(errno_name(libc::E2BIG), "E2BIG");
    assert_eq!(errno_name(libc::EWOULDBLOCK), "EAGAIN");
    assert_eq!(errno_name(libc::EOPNOTSUPP), "ENOTSUP");
    assert_eq!(errno_name(4095), "Unknown system error -4095");
  }

  #[test]
  fn every_errno_has_one_name() {
    let mut numbers: Vec<i32> = ERRNO_NAMES.iter().map(|(number, _)| *number).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), ERRNO_NAMES.len(), "a number listed twice");
  }

  #[test]
  fn spawn_error_message_is_nodes() {
    let err = Error::Spawn {
      errno: libc::ENOENT,
      command: "nope".into(),
      args: vec![],
    };
    assert_eq!(err.to_string(), "spawn nope ENOENT");
    assert_eq!(err.code(), "ENOENT");
    assert_eq!(err.js_kind(), JsKind::Error);
  }

  #[test]
  fn pipe_errors_read_like_nodes() {
    let err = Error::io(&std::io::Error::from_raw_os_error(libc::EPIPE), "write");
    assert_eq!(err.to_string(), "write EPIPE");
    assert_eq!(err.code(), "EPIPE");
  }

  #[test]
  fn argument_errors_name_the_option_and_value() {
    let err = Error::out_of_range("options.timeout", "a non-negative integer", "-1".into());
    assert_eq!(err.js_kind(), JsKind::RangeError);
    assert_eq!(err.code(), "ERR_OUT_OF_RANGE");
    let text = err.to_string();
    assert!(
      text.contains("options.timeout") && text.contains("-1"),
      "{text}"
    );
  }

  #[test]
  fn supervisor_errors_have_their_codes() {
    assert_eq!(Error::ChannelClosed.code(), "ERR_IPC_CHANNEL_CLOSED");
    let too_large = Error::MessageTooLarge { limit: 1024 };
    assert_eq!(too_large.code(), "ERR_IPC_MESSAGE_TOO_LARGE");
    assert!(too_large
      .to_string()
      .contains("maxMessageSize (1024 bytes)"));
    assert_eq!(Error::ChannelClosed.to_string(), "Channel closed");
    let exited = Error::WorkerExited { pid: 42 };
    assert_eq!(exited.code(), "ERR_WORKER_EXITED");
    assert!(exited.to_string().contains("42"));
    let failed = |code: Option<&str>| Error::WorkerRequestFailed {
      message: "bad jpeg".into(),
      code: code.map(str::to_string),
    };
    assert_eq!(failed(None).code(), "ERR_WORKER_REQUEST_FAILED");
    assert_eq!(failed(Some("EBADJPEG")).code(), "EBADJPEG");
    assert_eq!(failed(None).to_string(), "bad jpeg");
    let timeout = Error::RequestTimeout {
      after: std::time::Duration::from_millis(250),
    };
    assert_eq!(timeout.code(), "ERR_TIMEOUT");
    assert!(!timeout.to_string().contains("killed"), "{timeout}");
    let state = Error::InvalidState {
      action: "start",
      state: "stopping",
    };
    assert_eq!(state.code(), "ERR_INVALID_STATE");
    assert_eq!(state.js_kind(), JsKind::Error);
  }

  #[test]
  fn pool_errors_have_their_codes() {
    assert_eq!(Error::PoolQueueFull.code(), "ERR_POOL_QUEUE_FULL");
    let waited = Error::PoolQueueTimeout {
      after: std::time::Duration::from_millis(30),
    };
    assert_eq!(waited.code(), "ERR_POOL_QUEUE_TIMEOUT");
    assert!(waited.to_string().contains("30 ms"), "{waited}");
    assert_eq!(Error::PoolExhausted.code(), "ERR_POOL_EXHAUSTED");
    assert_eq!(Error::PoolClosed.code(), "ERR_POOL_CLOSED");
    let died = Error::PoolWorkerExited {
      pid: 7,
      exit_code: None,
      signal: Some("SIGKILL".into()),
      attempts: 2,
      stderr_tail: None,
    };
    assert_eq!(died.code(), "ERR_WORKER_EXITED");
    let text = died.to_string();
    assert!(
      text.contains("pid 7") && text.contains("SIGKILL") && text.contains("2 workers"),
      "{text}"
    );
  }
}
