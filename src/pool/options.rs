//! The options of `new Pool(options)` and of `pool.request(body, options)`, checked once and
//! turned into a [`PoolPlan`] and [`RequestLimits`] the driver trusts.
//!
//! What to run is the Supervisor's business: the same keys (modulePath or command and args,
//! execArgv, env, cwd, stdio, killSignal, stopTimeout, health checks, restart delays) mean the
//! same thing, so they are read by [`parse_supervisor`] itself and only its answers are taken.
//! The pool's own numbers are read here, each with the default [`PoolPolicy::with_size`] gives,
//! and a wrong one fails with a Node-style error naming the option.

use std::ffi::OsString;
use std::time::Duration;

use crate::error::Error;
use crate::ipc::Serialization;
use crate::options::{integer, parse_supervisor};
use crate::vocabulary::launch_spec::LaunchSpec;
use crate::vocabulary::stdio::StdioMode;
use crate::vocabulary::value::{describe, Value};

use super::policy::{PoolPolicy, RequestLimits, SizeRange};

/// Everything a Pool needs, validated. The launch spec is complete except for each worker's
/// IPC channel.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPlan {
  pub launch: LaunchSpec,
  /// The workers' stdout and stderr; their stdin is always ignored.
  pub stdio: StdioMode,
  /// How messages cross each worker's channel.
  pub serialization: Serialization,
  /// The longest message accepted from a worker, in bytes; a longer one kills it.
  pub max_message_size: usize,
  pub policy: PoolPolicy,
}

/// Parses `new Pool(options)`. `default_size` is what `size` is when not given (the number of
/// CPUs this process may use); `exec_path` runs a `modulePath` worker; `env` is merged over
/// `parent_env`.
pub fn parse_pool(
  options: &Value,
  parent_env: impl IntoIterator<Item = (OsString, OsString)>,
  exec_path: &str,
  default_size: usize,
) -> Result<PoolPlan, Error> {
  let supervisor = parse_supervisor(options, parent_env, exec_path)?;
  let field = |key: &str| match options {
    Value::Object(entries) => entries
      .iter()
      .rev()
      .find(|(k, _)| k == key)
      .map_or(&Value::Undefined, |(_, v)| v),
    _ => &Value::Undefined,
  };
  let size = parse_size(field("size"), default_size)?;
  let mut policy = PoolPolicy::with_size(size);
  let millis = |key: &str, min: u64, default: Duration| -> Result<Duration, Error> {
    match field(key) {
      Value::Undefined => Ok(default),
      v => integer(v, &format!("options.{key}"), min).map(Duration::from_millis),
    }
  };
  // 0 turns these off.
  let optional_millis = |key: &str, default: Option<Duration>| -> Result<Option<Duration>, Error> {
    match field(key) {
      Value::Undefined => Ok(default),
      v => Ok(match integer(v, &format!("options.{key}"), 0)? {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
      }),
    }
  };
  policy.idle_timeout = millis("idleTimeout", 0, policy.idle_timeout)?;
  policy.concurrency = match field("concurrency") {
    Value::Undefined => policy.concurrency,
    v => to_usize(integer(v, "options.concurrency", 1)?),
  };
  policy.max_queue = match field("maxQueue") {
    Value::Undefined => policy.max_queue,
    Value::Number(n) if *n == f64::INFINITY => None,
    v => Some(to_usize(integer(v, "options.maxQueue", 0)?)),
  };
  policy.request_timeout = optional_millis("requestTimeout", policy.request_timeout)?;
  policy.queue_timeout = optional_millis("queueTimeout", policy.queue_timeout)?;
  policy.max_attempts = attempts(
    field("maxAttempts"),
    "options.maxAttempts",
    policy.max_attempts,
  )?;
  policy.max_restarts = supervisor.policy.max_restarts;
  policy.restart_window = millis("restartWindow", 0, policy.restart_window)?;
  policy.recycle_after = match field("recycleAfter") {
    Value::Undefined => policy.recycle_after,
    v => match integer(v, "options.recycleAfter", 0)? {
      0 => None,
      n => Some(n),
    },
  };
  policy.max_memory = match field("maxMemory") {
    Value::Undefined => None,
    Value::Number(n) if *n == f64::INFINITY => None,
    v => Some(integer(v, "options.maxMemory", 1)?),
  };
  policy.memory_check_interval = millis("memoryCheckInterval", 1, policy.memory_check_interval)?;
  // The Supervisor drops the timeout when health checks are off; the pool still needs it, as
  // the time a cancelled request may stay unanswered.
  policy.health_check_interval = supervisor.policy.health_check.map(|check| check.interval);
  policy.health_check_timeout = millis("healthCheckTimeout", 1, policy.health_check_timeout)?;
  policy.stop_timeout = supervisor.policy.stop_timeout;
  policy.kill_signal = supervisor.policy.kill_signal;
  policy.restart_delay = supervisor.policy.restart_delay;
  policy.max_restart_delay = supervisor.policy.max_restart_delay;
  Ok(PoolPlan {
    launch: supervisor.launch,
    stdio: supervisor.stdio,
    serialization: supervisor.serialization,
    max_message_size: supervisor.max_message_size,
    policy,
  })
}

/// `size`: a number of workers (at least 1), or `{ min, max }` with `0 ≤ min ≤ max` and
/// `max ≥ 1`.
fn parse_size(value: &Value, default: usize) -> Result<SizeRange, Error> {
  match value {
    Value::Undefined => {
      let n = default.max(1);
      Ok(SizeRange { min: n, max: n })
    }
    Value::Number(_) => {
      let n = to_usize(integer(value, "options.size", 1)?);
      Ok(SizeRange { min: n, max: n })
    }
    Value::Object(entries) => {
      let get = |key: &str| {
        entries
          .iter()
          .rev()
          .find(|(k, _)| k == key)
          .map_or(&Value::Undefined, |(_, v)| v)
      };
      let min = to_usize(integer(get("min"), "options.size.min", 0)?);
      let max = to_usize(integer(get("max"), "options.size.max", 1)?);
      if min > max {
        return Err(Error::out_of_range(
          "options.size.max",
          "an integer at least options.size.min",
          max.to_string(),
        ));
      }
      Ok(SizeRange { min, max })
    }
    v => Err(Error::invalid_type(
      "options.size",
      "of type number or an object { min, max }",
      describe(v),
    )),
  }
}

/// `maxAttempts`: an integer of at least 1.
fn attempts(value: &Value, name: &str, default: u32) -> Result<u32, Error> {
  match value {
    Value::Undefined => Ok(default),
    v => Ok(integer(v, name, 1)?.min(u64::from(u32::MAX)) as u32),
  }
}

/// Counts as large as a safe JavaScript integer do not fit a 32-bit `usize`; they mean "as
/// many as there can be".
fn to_usize(n: u64) -> usize {
  usize::try_from(n).unwrap_or(usize::MAX)
}

/// What one `pool.request(body, options)` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPlan {
  pub limits: RequestLimits,
  /// Its AbortSignal had fired before the call: it is refused, and counted as aborted. (A
  /// signal that fires later is listened to in JavaScript.)
  pub aborted: bool,
}

/// Parses the options of `pool.request(body, options)`: `timeout`, `queueTimeout` (ms, 0 =
/// none) and `maxAttempts` override the pool's defaults for this request; `signal` must be an
/// AbortSignal.
pub fn parse_request(options: &Value, policy: &PoolPolicy) -> Result<RequestPlan, Error> {
  let entries: &[(String, Value)] = match options {
    Value::Undefined | Value::Null => &[],
    Value::Object(entries) => entries,
    v => {
      return Err(Error::invalid_type(
        "options",
        "of type object",
        describe(v),
      ))
    }
  };
  let get = |key: &str| {
    entries
      .iter()
      .rev()
      .find(|(k, _)| k == key)
      .map_or(&Value::Undefined, |(_, v)| v)
  };
  let mut limits = policy.request_limits();
  let optional_millis = |key: &str, default: Option<Duration>| -> Result<Option<Duration>, Error> {
    match get(key) {
      Value::Undefined => Ok(default),
      v => Ok(match integer(v, &format!("options.{key}"), 0)? {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
      }),
    }
  };
  limits.timeout = optional_millis("timeout", limits.timeout)?;
  limits.queue_timeout = optional_millis("queueTimeout", limits.queue_timeout)?;
  limits.max_attempts = attempts(
    get("maxAttempts"),
    "options.maxAttempts",
    limits.max_attempts,
  )?;
  let aborted = match get("signal") {
    Value::Undefined => false,
    Value::AbortSignal { aborted } => *aborted,
    v => {
      return Err(Error::invalid_type(
        "options.signal",
        "an instance of AbortSignal",
        describe(v),
      ))
    }
  };
  Ok(RequestPlan { limits, aborted })
}

/// Parses the options of `pool.close(options)`: `drain`, true unless said otherwise.
pub fn parse_close(options: &Value) -> Result<bool, Error> {
  let drain = match options {
    Value::Undefined | Value::Null => &Value::Undefined,
    Value::Object(entries) => entries
      .iter()
      .rev()
      .find(|(k, _)| k == "drain")
      .map_or(&Value::Undefined, |(_, v)| v),
    v => {
      return Err(Error::invalid_type(
        "options",
        "of type object",
        describe(v),
      ))
    }
  };
  match drain {
    Value::Undefined => Ok(true),
    Value::Bool(drain) => Ok(*drain),
    v => Err(Error::invalid_type(
      "options.drain",
      "of type boolean",
      describe(v),
    )),
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use nix::sys::signal::Signal;

  fn obj(entries: &[(&str, Value)]) -> Value {
    Value::Object(
      entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect(),
    )
  }

  fn n(v: f64) -> Value {
    Value::Number(v)
  }

  fn module(extra: &[(&str, Value)]) -> Value {
    let mut entries = vec![("modulePath", Value::String("worker.js".into()))];
    entries.extend(extra.iter().cloned());
    obj(&entries)
  }

  fn parse(options: Value) -> Result<PoolPlan, Error> {
    parse_pool(
      &options,
      vec![("PATH".into(), "/bin".into())],
      "/usr/bin/node",
      4,
    )
  }

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  #[test]
  fn defaults_follow_the_design() {
    let plan = parse(module(&[])).unwrap();
    assert_eq!(plan.launch.command, "/usr/bin/node");
    assert_eq!(plan.launch.args, ["worker.js"]);
    assert_eq!(plan.stdio, StdioMode::Inherit);
    let policy = plan.policy;
    assert_eq!(policy.size, SizeRange { min: 4, max: 4 });
    assert_eq!(policy.idle_timeout, ms(30_000));
    assert_eq!(policy.concurrency, 1);
    assert_eq!(policy.max_queue, Some(256));
    assert_eq!(policy.request_timeout, Some(ms(60_000)));
    assert_eq!(policy.queue_timeout, Some(ms(30_000)));
    assert_eq!(policy.max_attempts, 1);
    assert_eq!(policy.max_restarts, 10);
    assert_eq!(policy.restart_window, ms(60_000));
    assert_eq!(policy.recycle_after, None);
    assert_eq!(policy.max_memory, None);
    assert_eq!(policy.memory_check_interval, ms(1_000));
    assert_eq!(policy.health_check_interval, Some(ms(15_000)));
    assert_eq!(policy.health_check_timeout, ms(5_000));
    assert_eq!(policy.stop_timeout, ms(5_000));
    assert_eq!(policy.kill_signal, Signal::SIGTERM);
    assert_eq!(policy.restart_delay, ms(1_000));
    assert_eq!(policy.max_restart_delay, ms(30_000));
  }

  #[test]
  fn every_option_is_read() {
    let plan = parse(module(&[
      ("size", obj(&[("min", n(1.0)), ("max", n(3.0))])),
      ("idleTimeout", n(10.0)),
      ("concurrency", n(8.0)),
      ("maxQueue", n(f64::INFINITY)),
      ("requestTimeout", n(0.0)),
      ("queueTimeout", n(5.0)),
      ("maxAttempts", n(3.0)),
      ("maxRestarts", n(2.0)),
      ("restartWindow", n(100.0)),
      ("recycleAfter", n(50.0)),
      ("maxMemory", n(1e9)),
      ("memoryCheckInterval", n(20.0)),
      ("healthCheckInterval", n(0.0)),
      ("healthCheckTimeout", n(40.0)),
      ("stopTimeout", n(30.0)),
      ("killSignal", Value::String("SIGINT".into())),
      ("restartDelay", n(7.0)),
      ("maxRestartDelay", n(9.0)),
      ("stdio", Value::String("pipe".into())),
      ("serialization", Value::String("json".into())),
    ]))
    .unwrap();
    let policy = plan.policy;
    assert_eq!(plan.stdio, StdioMode::Pipe);
    assert_eq!(plan.serialization, Serialization::Json);
    assert_eq!(policy.size, SizeRange { min: 1, max: 3 });
    assert_eq!(policy.idle_timeout, ms(10));
    assert_eq!(policy.concurrency, 8);
    assert_eq!(policy.max_queue, None);
    assert_eq!(policy.request_timeout, None);
    assert_eq!(policy.queue_timeout, Some(ms(5)));
    assert_eq!(policy.max_attempts, 3);
    assert_eq!(policy.max_restarts, 2);
    assert_eq!(policy.restart_window, ms(100));
    assert_eq!(policy.recycle_after, Some(50));
    assert_eq!(policy.max_memory, Some(1_000_000_000));
    assert_eq!(policy.memory_check_interval, ms(20));
    assert_eq!(policy.health_check_interval, None);
    assert_eq!(policy.health_check_timeout, ms(40));
    assert_eq!(policy.stop_timeout, ms(30));
    assert_eq!(policy.kill_signal, Signal::SIGINT);
    assert_eq!(policy.restart_delay, ms(7));
    assert_eq!(policy.max_restart_delay, ms(9));
  }

  #[test]
  fn the_default_queue_bound_follows_the_largest_size() {
    let plan = parse(module(&[(
      "size",
      obj(&[("min", n(0.0)), ("max", n(2.0))]),
    )]))
    .unwrap();
    assert_eq!(plan.policy.max_queue, Some(128));
    assert_eq!(plan.policy.size, SizeRange { min: 0, max: 2 });
  }

  #[test]
  fn invalid_options_fail_with_errors_naming_them() {
    let cases: Vec<(Value, &str, &str)> = vec![
      (n(3.0), "ERR_INVALID_ARG_TYPE", "\"options\""),
      (obj(&[]), "ERR_INVALID_ARG_VALUE", "\"options\""),
      (
        module(&[("size", n(0.0))]),
        "ERR_OUT_OF_RANGE",
        "options.size",
      ),
      (
        module(&[("size", n(1.5))]),
        "ERR_OUT_OF_RANGE",
        "options.size",
      ),
      (
        module(&[("size", Value::String("2".into()))]),
        "ERR_INVALID_ARG_TYPE",
        "options.size",
      ),
      (
        module(&[("size", obj(&[("min", n(3.0)), ("max", n(2.0))]))]),
        "ERR_OUT_OF_RANGE",
        "options.size.max",
      ),
      (
        module(&[("size", obj(&[("min", n(1.0))]))]),
        "ERR_INVALID_ARG_TYPE",
        "options.size.max",
      ),
      (
        module(&[("concurrency", n(0.0))]),
        "ERR_OUT_OF_RANGE",
        "options.concurrency",
      ),
      (
        module(&[("maxQueue", n(-1.0))]),
        "ERR_OUT_OF_RANGE",
        "options.maxQueue",
      ),
      (
        module(&[("requestTimeout", n(f64::NAN))]),
        "ERR_OUT_OF_RANGE",
        "options.requestTimeout",
      ),
      (
        module(&[("queueTimeout", Value::Null)]),
        "ERR_INVALID_ARG_TYPE",
        "options.queueTimeout",
      ),
      (
        module(&[("maxAttempts", n(0.0))]),
        "ERR_OUT_OF_RANGE",
        "options.maxAttempts",
      ),
      (
        module(&[("maxRestarts", n(-2.0))]),
        "ERR_OUT_OF_RANGE",
        "options.maxRestarts",
      ),
      (
        module(&[("restartWindow", n(-1.0))]),
        "ERR_OUT_OF_RANGE",
        "options.restartWindow",
      ),
      (
        module(&[("recycleAfter", n(2.5))]),
        "ERR_OUT_OF_RANGE",
        "options.recycleAfter",
      ),
      (
        module(&[("maxMemory", n(0.0))]),
        "ERR_OUT_OF_RANGE",
        "options.maxMemory",
      ),
      (
        module(&[("memoryCheckInterval", n(0.0))]),
        "ERR_OUT_OF_RANGE",
        "options.memoryCheckInterval",
      ),
      (
        module(&[("idleTimeout", Value::Bool(true))]),
        "ERR_INVALID_ARG_TYPE",
        "options.idleTimeout",
      ),
      (
        module(&[("serialization", Value::String("v8".into()))]),
        "ERR_INVALID_ARG_VALUE",
        "options.serialization",
      ),
      (
        module(&[("killSignal", Value::String("SIGNOPE".into()))]),
        "ERR_INVALID_ARG_VALUE",
        "options.killSignal",
      ),
    ];
    for (options, code, named) in cases {
      let error = parse(options.clone()).unwrap_err();
      assert_eq!(error.code(), code, "{options:?}: {error}");
      assert!(error.to_string().contains(named), "{options:?}: {error}");
    }
  }

  #[test]
  fn request_options_override_the_pool_defaults() {
    let policy = parse(module(&[])).unwrap().policy;
    let plain = parse_request(&Value::Undefined, &policy).unwrap();
    assert_eq!(plain.limits, policy.request_limits());
    assert!(!plain.aborted);
    let limits = parse_request(
      &obj(&[
        ("timeout", n(0.0)),
        ("queueTimeout", n(5.0)),
        ("maxAttempts", n(2.0)),
      ]),
      &policy,
    )
    .unwrap()
    .limits;
    assert_eq!(
      limits,
      RequestLimits {
        timeout: None,
        queue_timeout: Some(ms(5)),
        max_attempts: 2,
      }
    );
    let error = parse_request(&obj(&[("timeout", n(-1.0))]), &policy).unwrap_err();
    assert_eq!(error.code(), "ERR_OUT_OF_RANGE");
    let error = parse_request(&n(1.0), &policy).unwrap_err();
    assert_eq!(error.code(), "ERR_INVALID_ARG_TYPE");
    let fired = obj(&[("signal", Value::AbortSignal { aborted: true })]);
    assert!(parse_request(&fired, &policy).unwrap().aborted);
    let error = parse_request(&obj(&[("signal", Value::String("x".into()))]), &policy).unwrap_err();
    assert_eq!(error.code(), "ERR_INVALID_ARG_TYPE");
    assert!(error.to_string().contains("options.signal"), "{error}");
  }

  #[test]
  fn close_drains_unless_told_not_to() {
    assert_eq!(parse_close(&Value::Undefined), Ok(true));
    assert_eq!(parse_close(&obj(&[])), Ok(true));
    assert_eq!(
      parse_close(&obj(&[("drain", Value::Bool(false))])),
      Ok(false)
    );
    let error = parse_close(&obj(&[("drain", n(0.0))])).unwrap_err();
    assert_eq!(error.code(), "ERR_INVALID_ARG_TYPE");
    assert!(error.to_string().contains("options.drain"), "{error}");
  }
}
