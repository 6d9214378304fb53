//! Option normalisation: a plain-Rust view of the JavaScript arguments is checked once, every
//! default is filled in one place, and the result is a typed plan the rest of the crate trusts.
//! The napi layer only converts JS values into [`Value`]; everything else here is unit-tested
//! without Node.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::Error;
use crate::ipc::Serialization;
use crate::vocabulary::confinement::{Confinement, ResourceLimits};
use crate::vocabulary::kill_policy::KillPolicy;
use crate::vocabulary::launch_spec::{LaunchSpec, ParentState};
use crate::vocabulary::stdio::StdioMode;
use crate::vocabulary::value::{describe, format_number, Value};

/// How a call's output is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
  Utf8,
  Buffer,
}

/// Everything `spawnCollect`/`runProcess` need, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectPlan {
  pub launch: LaunchSpec,
  pub kill: KillPolicy,
  pub timeout: Option<Duration>,
  /// Bytes per stream; `None` is Infinity.
  pub max_buffer: Option<usize>,
  pub input: Option<Vec<u8>>,
  pub encoding: Encoding,
  /// The AbortSignal given, and whether it had already fired.
  pub abort_signal: Option<bool>,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_FORCE_KILL_AFTER: Duration = Duration::from_millis(2_000);
pub const DEFAULT_MAX_BUFFER: usize = 10 * 1024 * 1024;

/// Parses `(command, args, options)` of `spawnCollect`/`runProcess`. `parent_env` is this
/// process's environment, which `options.env` is merged over unless `extendEnv` is false;
/// `parent` is its directory and umask now, which the child starts with.
pub fn parse_collect(
  command: &Value,
  args: &Value,
  options: &Value,
  parent_env: impl IntoIterator<Item = (OsString, OsString)>,
  parent: &ParentState,
) -> Result<CollectPlan, Error> {
  let base = parse_spawn_options(command, args, options, parent_env, parent)?;
  let max_buffer = match options.get("maxBuffer") {
    Value::Undefined => Some(DEFAULT_MAX_BUFFER),
    Value::Number(n) if *n == f64::INFINITY => None,
    v => Some(integer(v, "options.maxBuffer", 1)? as usize),
  };
  let input = match options.get("input") {
    Value::Undefined => None,
    Value::String(s) => Some(s.clone().into_bytes()),
    Value::Bytes(b) => Some(b.clone()),
    v => {
      return Err(Error::invalid_type(
        "options.input",
        "of type string or an instance of Uint8Array",
        describe(v),
      ))
    }
  };
  let encoding = choice(
    options.get("encoding"),
    "options.encoding",
    Encoding::Utf8,
    &[
      ("utf8", Encoding::Utf8),
      ("utf-8", Encoding::Utf8),
      ("buffer", Encoding::Buffer),
    ],
  )?;
  Ok(CollectPlan {
    launch: base.launch,
    kill: base.kill,
    timeout: base.timeout.unwrap_or(Some(DEFAULT_TIMEOUT)),
    max_buffer,
    input,
    encoding,
    abort_signal: base.abort_signal,
  })
}

/// Whether a worker that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
  /// Only after a crash; an exit with code 0 means the work is done.
  OnFailure,
  Always,
}

/// Pinging a worker over its channel to catch one that is alive but stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
  pub interval: Duration,
  /// From a ping to the moment a worker that has not answered is killed.
  pub timeout: Duration,
}

/// How a Supervisor restarts its worker and ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorPolicy {
  pub restart: RestartPolicy,
  /// Consecutive restarts allowed before giving up; `u64::MAX` stands for Infinity.
  pub max_restarts: u64,
  /// The delay before the first restart; it doubles with every consecutive one.
  pub restart_delay: Duration,
  pub max_restart_delay: Duration,
  pub health_check: Option<HealthCheck>,
  /// The bound of the whole `stop()`: shutdown message, then `kill_signal`, then SIGKILL.
  pub stop_timeout: Duration,
  pub kill_signal: Signal,
}

/// Everything a `Supervisor` needs, validated. The launch spec is complete except for the IPC
/// channel, which is made for each worker when it is started.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorPlan {
  pub launch: LaunchSpec,
  /// The worker's stdout and stderr; its stdin is always ignored.
  pub stdio: StdioMode,
  /// How messages cross the worker's channel.
  pub serialization: Serialization,
  /// The longest message accepted from the worker, in bytes; a longer one kills it.
  pub max_message_size: usize,
  pub policy: SupervisorPolicy,
}

pub const DEFAULT_MAX_RESTARTS: u64 = 10;
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(1_000);
pub const DEFAULT_MAX_RESTART_DELAY: Duration = Duration::from_millis(30_000);
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(15_000);
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_millis(5_000);
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_millis(5_000);
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Parses the options of `new Supervisor(options)`. `exec_path` is Node's `process.execPath`,
/// which runs a `modulePath` worker; `env` is merged over `parent_env`.
pub fn parse_supervisor(
  options: &Value,
  parent_env: impl IntoIterator<Item = (OsString, OsString)>,
  exec_path: &str,
) -> Result<SupervisorPlan, Error> {
  if !matches!(options, Value::Object(_)) {
    return Err(Error::invalid_type(
      "options",
      "of type object",
      describe(options),
    ));
  }
  let non_empty = |key: &str| -> Result<Option<String>, Error> {
    let name = format!("options.{key}");
    match optional_string(options.get(key), &name)? {
      Some(s) if s.is_empty() => Err(Error::invalid_value(
        name,
        "must be a non-empty string",
        describe(options.get(key)),
      )),
      other => Ok(other),
    }
  };
  let module_path = non_empty("modulePath")?;
  let command = non_empty("command")?;
  let args = string_array(options.get("args"), "options.args")?;
  let exec_argv = string_array(options.get("execArgv"), "options.execArgv")?;
  let (command, args, is_module) = match (module_path, command) {
    (Some(module_path), None) => {
      // As `fork()` runs it: node [execArgv] modulePath [args], so the worker's
      // `process.argv.slice(2)` is `args`.
      let mut argv = exec_argv;
      argv.push(module_path);
      argv.extend(args);
      (exec_path.to_string(), argv, true)
    }
    (None, Some(command)) => {
      if !exec_argv.is_empty() {
        return Err(Error::invalid_value(
          "options.execArgv",
          "can only be used with modulePath",
          describe(options.get("execArgv")),
        ));
      }
      (command, args, false)
    }
    (Some(_), Some(_)) => {
      return Err(Error::invalid_value(
        "options",
        "must have either modulePath or command, not both",
        describe(options),
      ))
    }
    (None, None) => {
      return Err(Error::invalid_value(
        "options",
        "must have a modulePath or a command",
        describe(options),
      ))
    }
  };
  let cwd = optional_string(options.get("cwd"), "options.cwd")?.map(PathBuf::from);
  let env = build_env(options.get("env"), true, parent_env)?;
  let confinement = parse_confinement(options)?;

  let restart = choice(
    options.get("restart"),
    "options.restart",
    RestartPolicy::OnFailure,
    &[
      ("on-failure", RestartPolicy::OnFailure),
      ("always", RestartPolicy::Always),
    ],
  )?;
  let max_restarts = match options.get("maxRestarts") {
    Value::Undefined => DEFAULT_MAX_RESTARTS,
    Value::Number(n) if *n == f64::INFINITY => u64::MAX,
    v => integer(v, "options.maxRestarts", 0)?,
  };
  let millis = |key: &str, min: u64, default: Duration| -> Result<Duration, Error> {
    match options.get(key) {
      Value::Undefined => Ok(default),
      v => integer(v, &format!("options.{key}"), min).map(Duration::from_millis),
    }
  };
  let restart_delay = millis("restartDelay", 0, DEFAULT_RESTART_DELAY)?;
  let max_restart_delay = millis("maxRestartDelay", 0, DEFAULT_MAX_RESTART_DELAY)?;
  // A `command` may be any program, which cannot be expected to answer pings: health checks
  // are on by default only for a Node module, and for a command only when asked for.
  let default_interval = if is_module {
    DEFAULT_HEALTH_CHECK_INTERVAL
  } else {
    Duration::ZERO
  };
  let interval = millis("healthCheckInterval", 0, default_interval)?;
  let timeout = millis("healthCheckTimeout", 1, DEFAULT_HEALTH_CHECK_TIMEOUT)?;
  let health_check = (!interval.is_zero()).then_some(HealthCheck { interval, timeout });
  let stop_timeout = millis("stopTimeout", 0, DEFAULT_STOP_TIMEOUT)?;
  let kill_signal = signal_or_sigterm(options.get("killSignal"), "options.killSignal")?;
  let stdio = choice(
    options.get("stdio"),
    "options.stdio",
    StdioMode::Inherit,
    &[
      ("inherit", StdioMode::Inherit),
      ("pipe", StdioMode::Pipe),
      ("ignore", StdioMode::Ignore),
    ],
  )?;
  let serialization = choice(
    options.get("serialization"),
    "options.serialization",
    Serialization::Json,
    &[
      ("json", Serialization::Json),
      ("advanced", Serialization::Advanced),
    ],
  )?;
  let max_message_size = match options.get("maxMessageSize") {
    Value::Undefined => DEFAULT_MAX_MESSAGE_SIZE,
    v => usize::try_from(integer(v, "options.maxMessageSize", 1)?).unwrap_or(usize::MAX),
  };
  Ok(SupervisorPlan {
    launch: LaunchSpec {
      command,
      args,
      cwd,
      umask: None,
      env,
      kill_on_parent_exit: true,
      confinement,
    },
    stdio,
    serialization,
    max_message_size,
    policy: SupervisorPolicy {
      restart,
      max_restarts,
      restart_delay,
      max_restart_delay,
      health_check,
      stop_timeout,
      kill_signal,
    },
  })
}

/// Parses the options of `supervisor.request(message, options?)`: the `timeout` in ms, where
/// 0 or none means no timeout (the request still ends when its worker does).
pub fn parse_request_options(options: &Value) -> Result<Option<Duration>, Error> {
  match options {
    Value::Undefined | Value::Null | Value::Object(_) => {}
    v => {
      return Err(Error::invalid_type(
        "options",
        "of type object",
        describe(v),
      ))
    }
  }
  Ok(match options.get("timeout") {
    Value::Undefined => None,
    v => match integer(v, "options.timeout", 0)? {
      0 => None,
      ms => Some(Duration::from_millis(ms)),
    },
  })
}

/// Everything the streaming `spawn` needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
  pub launch: LaunchSpec,
  pub kill: KillPolicy,
  /// `None`: no timeout (the default for a stream, which may run as long as it is read).
  pub timeout: Option<Duration>,
  /// The AbortSignal given, and whether it had already fired.
  pub abort_signal: Option<bool>,
  /// stdin, stdout, stderr.
  pub stdio: [StdioMode; 3],
}

/// Parses `(command, args, options)` of the streaming `spawn`: the shared `SpawnOptions` plus
/// `stdio`. Unlike `spawnCollect`, a stream has no timeout unless one is given. As Node's
/// `spawn()`, it refuses `null` options (the collecting calls take them as defaults).
pub fn parse_stream(
  command: &Value,
  args: &Value,
  options: &Value,
  parent_env: impl IntoIterator<Item = (OsString, OsString)>,
  parent: &ParentState,
) -> Result<StreamPlan, Error> {
  if *options == Value::Null {
    return Err(Error::invalid_type(
      "options",
      "of type object",
      describe(options),
    ));
  }
  let base = parse_spawn_options(command, args, options, parent_env, parent)?;
  Ok(StreamPlan {
    launch: base.launch,
    kill: base.kill,
    timeout: base.timeout.flatten(),
    abort_signal: base.abort_signal,
    stdio: parse_stdio(options.get("stdio"))?,
  })
}

/// `stdio`: one of `'pipe' | 'ignore' | 'inherit'` for all three streams, or an array of at most
/// three of them, where a missing, `undefined` or `null` entry is `'pipe'` (as in Node).
fn parse_stdio(value: &Value) -> Result<[StdioMode; 3], Error> {
  fn mode(value: &Value, name: &str) -> Result<StdioMode, Error> {
    match value {
      Value::Undefined | Value::Null => Ok(StdioMode::Pipe),
      Value::String(s) if s == "pipe" => Ok(StdioMode::Pipe),
      Value::String(s) if s == "ignore" => Ok(StdioMode::Ignore),
      Value::String(s) if s == "inherit" => Ok(StdioMode::Inherit),
      v @ Value::String(_) => Err(Error::invalid_value(
        name,
        "must be 'pipe', 'ignore' or 'inherit'",
        describe(v),
      )),
      v => Err(Error::invalid_type(name, "of type string", describe(v))),
    }
  }
  match value {
    Value::Array(items) if items.len() > 3 => Err(Error::invalid_value(
      "options.stdio",
      "must have at most 3 entries (stdin, stdout, stderr)",
      format!("an array of {} entries", items.len()),
    )),
    Value::Array(items) => {
      let mut modes = [StdioMode::Pipe; 3];
      for (i, item) in items.iter().enumerate() {
        modes[i] = mode(item, &format!("options.stdio[{i}]"))?;
      }
      Ok(modes)
    }
    v @ (Value::Undefined | Value::Null | Value::String(_)) => Ok([mode(v, "options.stdio")?; 3]),
    v => Err(Error::invalid_type(
      "options.stdio",
      "of type string or an instance of Array",
      describe(v),
    )),
  }
}

/// The options every entry point shares (`SpawnOptions`).
struct SpawnOptions {
  launch: LaunchSpec,
  kill: KillPolicy,
  /// `None` when not given (each entry point has its own default); `Some(None)` for 0.
  timeout: Option<Option<Duration>>,
  abort_signal: Option<bool>,
}

fn parse_spawn_options(
  command: &Value,
  args: &Value,
  options: &Value,
  parent_env: impl IntoIterator<Item = (OsString, OsString)>,
  parent: &ParentState,
) -> Result<SpawnOptions, Error> {
  let command = match command {
    Value::String(s) if s.is_empty() => {
      return Err(Error::invalid_value(
        "command",
        "must be a non-empty string",
        describe(command),
      ))
    }
    Value::String(s) => no_nul(s, "command")?,
    v => {
      return Err(Error::invalid_type(
        "command",
        "of type string",
        describe(v),
      ))
    }
  };
  let args = string_array(args, "args")?;
  match options {
    Value::Undefined | Value::Null | Value::Object(_) => {}
    v => {
      return Err(Error::invalid_type(
        "options",
        "of type object",
        describe(v),
      ))
    }
  }
  let (command, args) = with_shell(command, args, options.get("shell"))?;
  let cwd = working_directory(options.get("cwd"), parent)?;
  let extend_env = boolean(options.get("extendEnv"), "options.extendEnv", true)?;
  let env = build_env(options.get("env"), extend_env, parent_env)?;
  let kill_on_parent_exit = boolean(
    options.get("killOnParentExit"),
    "options.killOnParentExit",
    true,
  )?;
  let confinement = parse_confinement(options)?;
  let timeout = match options.get("timeout") {
    Value::Undefined => None,
    v => Some(match integer(v, "options.timeout", 0)? {
      0 => None,
      ms => Some(Duration::from_millis(ms)),
    }),
  };
  let signal = signal_or_sigterm(options.get("killSignal"), "options.killSignal")?;
  let force_after = match options.get("forceKillAfter") {
    Value::Undefined => DEFAULT_FORCE_KILL_AFTER,
    v => Duration::from_millis(integer(v, "options.forceKillAfter", 0)?),
  };
  let abort_signal = match options.get("signal") {
    Value::Undefined => None,
    Value::AbortSignal { aborted } => Some(*aborted),
    v => {
      return Err(Error::invalid_type(
        "options.signal",
        "an instance of AbortSignal",
        describe(v),
      ))
    }
  };
  Ok(SpawnOptions {
    launch: LaunchSpec {
      command,
      args,
      cwd,
      umask: parent.umask,
      env,
      kill_on_parent_exit,
      confinement,
    },
    kill: KillPolicy {
      signal,
      force_after,
    },
    timeout,
    abort_signal,
  })
}

/// `shell`: `true` or a shell's path makes `command` one command line, run as
/// `<shell> -c <command>` (`true` is `/bin/sh`); `false`, `''` or none runs `command` itself.
/// `args` cannot come with it: Node would join them to the line unquoted, so an argument
/// holding a space, a quote or `;` would be shell syntax — the injection Node deprecates.
fn with_shell(
  command: String,
  args: Vec<String>,
  shell: &Value,
) -> Result<(String, Vec<String>), Error> {
  let shell = match shell {
    Value::Undefined | Value::Bool(false) => return Ok((command, args)),
    Value::String(s) if s.is_empty() => return Ok((command, args)),
    Value::Bool(true) => "/bin/sh".to_string(),
    Value::String(s) => no_nul(s, "options.shell")?,
    v => {
      return Err(Error::invalid_type(
        "options.shell",
        "of type boolean or string",
        describe(v),
      ))
    }
  };
  if !args.is_empty() {
    return Err(Error::invalid_value(
      "args",
      "cannot be used with options.shell: Node joins them to the command line unquoted, so \
       an argument with a space, a quote or ';' becomes shell syntax (an injection Node \
       deprecates, DEP0190). Pass the whole command line, quoted as the shell needs, as the \
       command",
      format!("{} arguments", args.len()),
    ));
  }
  Ok((shell, vec!["-c".to_string(), command]))
}

/// `cwd`: where the child starts. A relative one is taken from this process's directory *now*
/// (`process.cwd()`), which is also the default; `''` means the default, as in Node.
fn working_directory(value: &Value, parent: &ParentState) -> Result<Option<PathBuf>, Error> {
  Ok(match optional_string(value, "options.cwd")? {
    Some(cwd) if !cwd.is_empty() => {
      let cwd = PathBuf::from(cwd);
      match &parent.cwd {
        Some(here) if cwd.is_relative() => Some(here.join(cwd)),
        _ => Some(cwd),
      }
    }
    _ => parent.cwd.clone(),
  })
}

/// `limits`, `noNewPrivileges`, `uid` and `gid`: what the child is held to.
fn parse_confinement(options: &Value) -> Result<Confinement, Error> {
  let id = |key: &str| -> Result<Option<u32>, Error> {
    let name = format!("options.{key}");
    match options.get(key) {
      Value::Undefined => Ok(None),
      v => match integer(v, &name, 0)? {
        // As Node: a non-negative int32 (-1, "no change", is no id to ask for).
        id if id <= i32::MAX as u64 => Ok(Some(id as u32)),
        id => Err(Error::out_of_range(
          name,
          ">= 0 && <= 2147483647",
          id.to_string(),
        )),
      },
    }
  };
  Ok(Confinement {
    limits: parse_limits(options.get("limits"))?,
    no_new_privileges: boolean(
      options.get("noNewPrivileges"),
      "options.noNewPrivileges",
      false,
    )?,
    uid: id("uid")?,
    gid: id("gid")?,
  })
}

/// `limits: { memory, cpuTime, openFiles, fileSize, processes, coreDump }`: each a safe
/// integer ≥ 0, but `cpuTime` ≥ 1: the kernel counts whole seconds, and a program needs some
/// CPU time to start at all.
fn parse_limits(value: &Value) -> Result<ResourceLimits, Error> {
  const KNOWN: &str =
    "is not a known limit (memory, cpuTime, openFiles, fileSize, processes, coreDump)";
  let entries = match value {
    Value::Undefined | Value::Null => return Ok(ResourceLimits::default()),
    Value::Object(entries) => entries,
    v => {
      return Err(Error::invalid_type(
        "options.limits",
        "of type object",
        describe(v),
      ))
    }
  };
  let mut limits = ResourceLimits::default();
  for (key, value) in entries {
    let name = format!("options.limits.{key}");
    let (slot, min) = match key.as_str() {
      "memory" => (&mut limits.memory, 0),
      "cpuTime" => (&mut limits.cpu_time, 1),
      "openFiles" => (&mut limits.open_files, 0),
      "fileSize" => (&mut limits.file_size, 0),
      "processes" => (&mut limits.processes, 0),
      "coreDump" => (&mut limits.core_dump, 0),
      _ => return Err(Error::invalid_value(name, KNOWN, describe(value))),
    };
    *slot = match value {
      Value::Undefined => None,
      v => Some(integer(v, &name, min)?),
    };
  }
  Ok(limits)
}

fn build_env(
  env: &Value,
  extend_env: bool,
  parent_env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(OsString, OsString)>, Error> {
  let mut merged: BTreeMap<OsString, OsString> = if extend_env {
    parent_env.into_iter().collect()
  } else {
    BTreeMap::new()
  };
  match env {
    Value::Undefined | Value::Null => {}
    Value::Object(entries) => {
      for (key, value) in entries {
        let name = format!("options.env.{key}");
        if key.is_empty() || key.contains('=') || key.contains('\0') {
          return Err(Error::invalid_value(
            "options.env",
            "must not have a key that is empty or contains '=' or a NUL byte",
            describe(&Value::String(key.clone())),
          ));
        }
        match value {
          Value::Undefined => {
            merged.remove(OsStr::new(key));
          }
          Value::String(s) => {
            merged.insert(key.into(), no_nul(s, &name)?.into());
          }
          v => {
            return Err(Error::invalid_type(
              name,
              "of type string or undefined",
              describe(v),
            ))
          }
        }
      }
    }
    v => {
      return Err(Error::invalid_type(
        "options.env",
        "of type object",
        describe(v),
      ))
    }
  }
  Ok(merged.into_iter().collect())
}

/// An array of strings without NUL bytes; absent is empty.
fn string_array(value: &Value, name: &str) -> Result<Vec<String>, Error> {
  match value {
    Value::Undefined | Value::Null => Ok(Vec::new()),
    Value::Array(items) => items
      .iter()
      .enumerate()
      .map(|(i, item)| match item {
        Value::String(s) => no_nul(s, &format!("{name}[{i}]")),
        v => Err(Error::invalid_type(
          format!("{name}[{i}]"),
          "of type string",
          describe(v),
        )),
      })
      .collect(),
    v => Err(Error::invalid_type(
      name,
      "an instance of Array",
      describe(v),
    )),
  }
}

/// A string without NUL bytes, or nothing when not given.
fn optional_string(value: &Value, name: &str) -> Result<Option<String>, Error> {
  match value {
    Value::Undefined => Ok(None),
    Value::String(s) => no_nul(s, name).map(Some),
    v => Err(Error::invalid_type(name, "of type string", describe(v))),
  }
}

/// A string option that must be one of `choices`; `default` when it is absent.
fn choice<T: Copy>(
  value: &Value,
  name: &str,
  default: T,
  choices: &[(&str, T)],
) -> Result<T, Error> {
  match value {
    Value::Undefined => Ok(default),
    Value::String(s) => match choices.iter().find(|(key, _)| key == s) {
      Some(&(_, chosen)) => Ok(chosen),
      None => {
        let quoted: Vec<String> = choices.iter().map(|(key, _)| format!("'{key}'")).collect();
        let (last, rest) = quoted.split_last().expect("choices are never empty");
        Err(Error::invalid_value(
          name,
          format!("must be {} or {last}", rest.join(", ")),
          describe(value),
        ))
      }
    },
    v => Err(Error::invalid_type(name, "of type string", describe(v))),
  }
}

fn no_nul(s: &str, name: &str) -> Result<String, Error> {
  if s.contains('\0') {
    Err(Error::invalid_value(
      name,
      "must be a string without null bytes",
      describe(&Value::String(s.to_string())),
    ))
  } else {
    Ok(s.to_string())
  }
}

fn boolean(value: &Value, name: &str, default: bool) -> Result<bool, Error> {
  match value {
    Value::Undefined => Ok(default),
    Value::Bool(b) => Ok(*b),
    v => Err(Error::invalid_type(name, "of type boolean", describe(v))),
  }
}

/// A signal given by name (`'SIGKILL'`) or number (`9`); SIGTERM when absent. `killSignal`
/// of every entry point and `child.kill(signal)` read it so.
pub fn signal_or_sigterm(value: &Value, name: &str) -> Result<Signal, Error> {
  match value {
    Value::Undefined => Ok(Signal::SIGTERM),
    Value::String(s) => Signal::from_str(s)
      .map_err(|_| Error::invalid_value(name, "must be a known signal name", describe(value))),
    Value::Number(n) if n.fract() == 0.0 && *n >= 1.0 && *n <= 64.0 => Signal::try_from(*n as i32)
      .map_err(|_| Error::invalid_value(name, "must be a known signal number", describe(value))),
    Value::Number(_) => Err(Error::invalid_value(
      name,
      "must be a known signal number",
      describe(value),
    )),
    v => Err(Error::invalid_type(
      name,
      "of type string or number",
      describe(v),
    )),
  }
}

/// A safe integer ≥ `min`, as Node's `validateInteger` checks it.
pub fn integer(value: &Value, name: &str, min: u64) -> Result<u64, Error> {
  const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
  match value {
    Value::Number(n) if n.fract() == 0.0 && *n >= min as f64 && *n <= MAX_SAFE => Ok(*n as u64),
    Value::Number(n) => Err(Error::out_of_range(
      name,
      if min == 0 {
        "a non-negative integer"
      } else {
        "a positive integer"
      },
      format_number(*n),
    )),
    v => Err(Error::invalid_type(name, "of type number", describe(v))),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn obj(entries: &[(&str, Value)]) -> Value {
    Value::Object(
      entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect(),
    )
  }
  fn s(v: &str) -> Value {
    Value::String(v.into())
  }
  /// The parsers as called from a process whose directory and umask are unknown.
  fn parse_collect(
    command: &Value,
    args: &Value,
    options: &Value,
    parent_env: Vec<(OsString, OsString)>,
  ) -> Result<CollectPlan, Error> {
    super::parse_collect(command, args, options, parent_env, &ParentState::default())
  }
  fn parse_stream(
    command: &Value,
    args: &Value,
    options: &Value,
    parent_env: Vec<(OsString, OsString)>,
  ) -> Result<StreamPlan, Error> {
    super::parse_stream(command, args, options, parent_env, &ParentState::default())
  }
  fn parse(options: Value) -> Result<CollectPlan, Error> {
    parse_collect(
      &s("echo"),
      &Value::Array(vec![s("hi")]),
      &options,
      vec![
        ("PATH".into(), "/bin".into()),
        ("HOME".into(), "/root".into()),
      ],
    )
  }
  fn code(r: Result<CollectPlan, Error>) -> String {
    r.unwrap_err().code()
  }

  #[test]
  fn defaults_are_filled_in() {
    let plan = parse(Value::Undefined).unwrap();
    assert_eq!(plan.timeout, Some(DEFAULT_TIMEOUT));
    assert_eq!(plan.max_buffer, Some(DEFAULT_MAX_BUFFER));
    assert_eq!(plan.kill.signal, Signal::SIGTERM);
    assert_eq!(plan.kill.force_after, DEFAULT_FORCE_KILL_AFTER);
    assert_eq!(plan.encoding, Encoding::Utf8);
    assert!(plan.launch.kill_on_parent_exit);
    assert_eq!(plan.launch.args, vec!["hi".to_string()]);
    assert_eq!(plan.launch.path_var(), Some("/bin".as_ref()));
  }

  #[test]
  fn zero_timeout_means_none_and_infinity_buffer_means_unbounded() {
    let plan = parse(obj(&[
      ("timeout", Value::Number(0.0)),
      ("maxBuffer", Value::Number(f64::INFINITY)),
    ]))
    .unwrap();
    assert_eq!(plan.timeout, None);
    assert_eq!(plan.max_buffer, None);
  }

  #[test]
  fn env_merges_unsets_and_can_start_empty() {
    let plan = parse(obj(&[(
      "env",
      obj(&[("FOO", s("1")), ("HOME", Value::Undefined)]),
    )]))
    .unwrap();
    assert_eq!(
      plan.launch.env,
      vec![("FOO".into(), "1".into()), ("PATH".into(), "/bin".into())]
    );
    let plan = parse(obj(&[
      ("env", obj(&[("FOO", s("1"))])),
      ("extendEnv", Value::Bool(false)),
    ]))
    .unwrap();
    assert_eq!(plan.launch.env, vec![("FOO".into(), "1".into())]);
  }

  #[test]
  fn inherited_variables_keep_their_bytes() {
    use std::os::unix::ffi::OsStringExt;
    let not_utf8 = OsString::from_vec(vec![b'a', 0xff, b'b']);
    let inherited = vec![(OsString::from("BYTES"), not_utf8.clone())];
    let plan = parse_collect(&s("echo"), &Value::Undefined, &Value::Undefined, inherited).unwrap();
    assert_eq!(plan.launch.env, vec![(OsString::from("BYTES"), not_utf8)]);
  }

  #[test]
  fn wrong_types_are_type_errors() {
    for (key, value) in [
      ("timeout", s("1")),
      ("maxBuffer", Value::Bool(true)),
      ("cwd", Value::Number(1.0)),
      ("env", s("A=1")),
      ("extendEnv", s("no")),
      ("input", Value::Number(3.0)),
      ("encoding", Value::Number(8.0)),
      ("killSignal", Value::Bool(true)),
      ("signal", obj(&[])),
      ("killOnParentExit", Value::Null),
    ] {
      let err = parse(obj(&[(key, value.clone())])).unwrap_err();
      assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE", "{key}: {value:?}");
      assert!(err.to_string().contains(key), "{err}");
    }
    let err = parse_collect(
      &Value::Number(1.0),
      &Value::Undefined,
      &Value::Undefined,
      vec![],
    );
    assert_eq!(code(err), "ERR_INVALID_ARG_TYPE");
    let err = parse_collect(
      &s("x"),
      &Value::Array(vec![Value::Number(1.0)]),
      &Value::Undefined,
      vec![],
    );
    assert_eq!(code(err), "ERR_INVALID_ARG_TYPE");
    let err = parse_collect(&s("x"), &s("-l"), &Value::Undefined, vec![]);
    assert_eq!(code(err), "ERR_INVALID_ARG_TYPE");
  }

  #[test]
  fn bad_numbers_are_range_errors() {
    for (key, n) in [
      ("timeout", -1.0),
      ("timeout", 1.5),
      ("timeout", f64::NAN),
      ("maxBuffer", 0.0),
      ("maxBuffer", -5.0),
      ("forceKillAfter", f64::INFINITY),
    ] {
      let err = parse(obj(&[(key, Value::Number(n))])).unwrap_err();
      assert_eq!(err.code(), "ERR_OUT_OF_RANGE", "{key}: {n}");
      assert_eq!(err.js_kind(), crate::error::JsKind::RangeError);
    }
  }

  #[test]
  fn bad_values_are_invalid_arg_values() {
    let nul = |v: &str| Value::String(v.into());
    assert_eq!(
      code(parse_collect(
        &nul("ec\0ho"),
        &Value::Undefined,
        &Value::Undefined,
        vec![]
      )),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      code(parse_collect(
        &nul(""),
        &Value::Undefined,
        &Value::Undefined,
        vec![]
      )),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      code(parse_collect(
        &nul("echo"),
        &Value::Array(vec![nul("a\0b")]),
        &Value::Undefined,
        vec![]
      )),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      code(parse(obj(&[("env", obj(&[("A", nul("x\0"))]))]))),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      code(parse(obj(&[("env", obj(&[("A=B", nul("x"))]))]))),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      code(parse(obj(&[("encoding", nul("latin1"))]))),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      code(parse(obj(&[("killSignal", nul("SIGNOPE"))]))),
      "ERR_INVALID_ARG_VALUE"
    );
  }

  fn supervise(options: Value) -> Result<SupervisorPlan, Error> {
    parse_supervisor(
      &options,
      vec![
        ("PATH".into(), "/bin".into()),
        ("HOME".into(), "/root".into()),
      ],
      "/usr/bin/node",
    )
  }

  #[test]
  fn supervisor_defaults_are_filled_in() {
    let plan = supervise(obj(&[("modulePath", s("worker.js"))])).unwrap();
    assert_eq!(plan.launch.command, "/usr/bin/node");
    assert_eq!(plan.launch.args, vec!["worker.js".to_string()]);
    assert_eq!(plan.launch.cwd, None);
    assert!(plan.launch.kill_on_parent_exit);
    assert_eq!(plan.stdio, StdioMode::Inherit);
    assert_eq!(
      plan.policy,
      SupervisorPolicy {
        restart: RestartPolicy::OnFailure,
        max_restarts: 10,
        restart_delay: Duration::from_millis(1_000),
        max_restart_delay: Duration::from_millis(30_000),
        health_check: Some(HealthCheck {
          interval: Duration::from_millis(15_000),
          timeout: Duration::from_millis(5_000),
        }),
        stop_timeout: Duration::from_millis(5_000),
        kill_signal: Signal::SIGTERM,
      }
    );
  }

  #[test]
  fn a_module_runs_as_fork_runs_it() {
    let plan = supervise(obj(&[
      ("modulePath", s("/srv/worker.js")),
      ("execArgv", Value::Array(vec![s("--max-old-space-size=64")])),
      ("args", Value::Array(vec![s("--port"), s("80")])),
      ("cwd", s("/srv")),
    ]))
    .unwrap();
    assert_eq!(plan.launch.command, "/usr/bin/node");
    assert_eq!(
      plan.launch.args,
      ["--max-old-space-size=64", "/srv/worker.js", "--port", "80"]
    );
    assert_eq!(plan.launch.cwd.as_deref(), Some("/srv".as_ref()));
  }

  #[test]
  fn a_command_runs_as_given_without_default_health_checks() {
    let plan = supervise(obj(&[
      ("command", s("redis-server")),
      ("args", Value::Array(vec![s("--port"), s("0")])),
    ]))
    .unwrap();
    assert_eq!(plan.launch.command, "redis-server");
    assert_eq!(plan.launch.args, ["--port", "0"]);
    assert_eq!(plan.policy.health_check, None);
    let plan = supervise(obj(&[
      ("command", s("node")),
      ("healthCheckInterval", Value::Number(100.0)),
    ]))
    .unwrap();
    assert_eq!(
      plan.policy.health_check.map(|h| h.interval),
      Some(Duration::from_millis(100))
    );
  }

  #[test]
  fn supervisor_options_are_all_read() {
    let plan = supervise(obj(&[
      ("modulePath", s("w.js")),
      ("env", obj(&[("FOO", s("1")), ("HOME", Value::Undefined)])),
      ("restart", s("always")),
      ("maxRestarts", Value::Number(0.0)),
      ("restartDelay", Value::Number(0.0)),
      ("maxRestartDelay", Value::Number(250.0)),
      ("healthCheckInterval", Value::Number(0.0)),
      ("healthCheckTimeout", Value::Number(1.0)),
      ("stopTimeout", Value::Number(0.0)),
      ("killSignal", s("SIGINT")),
      ("stdio", s("pipe")),
      ("maxMessageSize", Value::Number(1024.0)),
    ]))
    .unwrap();
    assert_eq!(plan.max_message_size, 1024);
    assert_eq!(
      plan.launch.env,
      vec![("FOO".into(), "1".into()), ("PATH".into(), "/bin".into())]
    );
    assert_eq!(plan.stdio, StdioMode::Pipe);
    assert_eq!(
      plan.policy,
      SupervisorPolicy {
        restart: RestartPolicy::Always,
        max_restarts: 0,
        restart_delay: Duration::ZERO,
        max_restart_delay: Duration::from_millis(250),
        health_check: None,
        stop_timeout: Duration::ZERO,
        kill_signal: Signal::SIGINT,
      }
    );
    let stdio = |v: &str| supervise(obj(&[("command", s("x")), ("stdio", s(v))])).unwrap();
    assert_eq!(stdio("ignore").max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(stdio("ignore").stdio, StdioMode::Ignore);
    assert_eq!(stdio("inherit").stdio, StdioMode::Inherit);
    let plan = supervise(obj(&[
      ("command", s("x")),
      ("maxRestarts", Value::Number(f64::INFINITY)),
      ("restart", s("on-failure")),
    ]))
    .unwrap();
    assert_eq!(plan.policy.max_restarts, u64::MAX);
    assert_eq!(plan.policy.restart, RestartPolicy::OnFailure);
  }

  #[test]
  fn a_worker_is_required_exactly_once() {
    for options in [
      obj(&[]),
      obj(&[("args", Value::Array(vec![]))]),
      obj(&[("modulePath", s("w.js")), ("command", s("node"))]),
      obj(&[("modulePath", s(""))]),
      obj(&[("command", s(""))]),
      obj(&[("command", s("no\0de"))]),
      obj(&[
        ("command", s("x")),
        ("execArgv", Value::Array(vec![s("-e")])),
      ]),
    ] {
      let err = supervise(options.clone()).unwrap_err();
      assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE", "{options:?}");
      assert_eq!(err.js_kind(), crate::error::JsKind::TypeError);
    }
    let err = supervise(obj(&[("modulePath", s(""))])).unwrap_err();
    assert!(err.to_string().contains("options.modulePath"), "{err}");
    for options in [Value::Undefined, Value::Null, s("w.js")] {
      assert_eq!(
        supervise(options).unwrap_err().code(),
        "ERR_INVALID_ARG_TYPE"
      );
    }
  }

  #[test]
  fn supervisor_wrong_types_are_type_errors() {
    for (key, value) in [
      ("modulePath", Value::Number(1.0)),
      ("command", Value::Array(vec![])),
      ("args", s("a b")),
      ("args", Value::Array(vec![Value::Number(1.0)])),
      ("execArgv", Value::Array(vec![Value::Null])),
      ("env", s("A=1")),
      ("cwd", Value::Bool(true)),
      ("restart", Value::Bool(true)),
      ("maxRestarts", s("3")),
      ("restartDelay", s("1")),
      ("maxRestartDelay", Value::Null),
      ("healthCheckInterval", Value::Bool(false)),
      ("healthCheckTimeout", s("5s")),
      ("stopTimeout", obj(&[])),
      ("killSignal", Value::Null),
      ("stdio", Value::Array(vec![s("pipe")])),
      ("maxMessageSize", s("1MB")),
    ] {
      let worker = if key == "modulePath" {
        "command"
      } else {
        "modulePath"
      };
      let err = supervise(obj(&[(worker, s("w")), (key, value.clone())])).unwrap_err();
      assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE", "{key}: {value:?}");
      assert!(err.to_string().contains(key), "{err}");
    }
  }

  #[test]
  fn supervisor_bad_numbers_are_range_errors() {
    for (key, n) in [
      ("maxRestarts", -1.0),
      ("maxRestarts", 2.5),
      ("maxRestarts", f64::NAN),
      ("restartDelay", -1.0),
      ("maxRestartDelay", f64::INFINITY),
      ("healthCheckInterval", 0.5),
      ("healthCheckTimeout", 0.0),
      ("stopTimeout", -5.0),
      ("maxMessageSize", 0.0),
      ("maxMessageSize", 1.5),
    ] {
      let err = supervise(obj(&[("modulePath", s("w.js")), (key, Value::Number(n))])).unwrap_err();
      assert_eq!(err.code(), "ERR_OUT_OF_RANGE", "{key}: {n}");
      assert!(err.to_string().contains(key), "{err}");
    }
  }

  #[test]
  fn supervisor_bad_values_are_invalid_arg_values() {
    for (key, value) in [
      ("restart", s("never")),
      ("stdio", s("inherits")),
      ("killSignal", s("SIGNOPE")),
      ("cwd", s("/tm\0p")),
      ("args", Value::Array(vec![s("a\0")])),
      ("env", obj(&[("A", s("x\0"))])),
    ] {
      let err = supervise(obj(&[("modulePath", s("w.js")), (key, value.clone())])).unwrap_err();
      assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE", "{key}: {value:?}");
      assert!(err.to_string().contains(key), "{err}");
    }
  }

  #[test]
  fn request_timeouts_are_checked() {
    let timeout = |v: Value| parse_request_options(&obj(&[("timeout", v)]));
    assert_eq!(parse_request_options(&Value::Undefined), Ok(None));
    assert_eq!(timeout(Value::Number(0.0)), Ok(None));
    assert_eq!(
      timeout(Value::Number(250.0)),
      Ok(Some(Duration::from_millis(250)))
    );
    assert_eq!(
      timeout(Value::Number(-1.0)).unwrap_err().code(),
      "ERR_OUT_OF_RANGE"
    );
    assert_eq!(timeout(s("1")).unwrap_err().code(), "ERR_INVALID_ARG_TYPE");
    assert_eq!(
      parse_request_options(&Value::Number(5.0))
        .unwrap_err()
        .code(),
      "ERR_INVALID_ARG_TYPE"
    );
  }

  fn parse_s(options: Value) -> Result<StreamPlan, Error> {
    parse_stream(
      &s("cat"),
      &Value::Undefined,
      &options,
      vec![("PATH".into(), "/bin".into())],
    )
  }

  #[test]
  fn a_stream_has_pipes_and_no_timeout_by_default() {
    let plan = parse_s(Value::Undefined).unwrap();
    assert_eq!(plan.stdio, [StdioMode::Pipe; 3]);
    assert_eq!(plan.timeout, None);
    assert_eq!(plan.kill.signal, Signal::SIGTERM);
    assert_eq!(plan.abort_signal, None);
    let plan = parse_s(obj(&[("timeout", Value::Number(250.0))])).unwrap();
    assert_eq!(plan.timeout, Some(Duration::from_millis(250)));
    assert_eq!(
      parse_s(obj(&[("timeout", Value::Number(0.0))]))
        .unwrap()
        .timeout,
      None
    );
  }

  #[test]
  fn stdio_is_one_mode_or_an_array_of_three() {
    use StdioMode::*;
    let stdio = |v: Value| parse_s(obj(&[("stdio", v)])).map(|p| p.stdio);
    assert_eq!(stdio(s("ignore")).unwrap(), [Ignore; 3]);
    assert_eq!(stdio(s("inherit")).unwrap(), [Inherit; 3]);
    assert_eq!(stdio(Value::Null).unwrap(), [Pipe; 3]);
    assert_eq!(
      stdio(Value::Array(vec![s("ignore"), s("pipe"), s("inherit")])).unwrap(),
      [Ignore, Pipe, Inherit]
    );
    assert_eq!(
      stdio(Value::Array(vec![s("inherit"), Value::Null])).unwrap(),
      [Inherit, Pipe, Pipe]
    );
    assert_eq!(stdio(Value::Array(vec![])).unwrap(), [Pipe; 3]);
  }

  #[test]
  fn bad_stdio_names_the_entry() {
    let err = |v: Value| parse_s(obj(&[("stdio", v)])).unwrap_err();
    let e = err(s("ipc"));
    assert_eq!(e.code(), "ERR_INVALID_ARG_VALUE");
    assert!(e.to_string().contains("options.stdio"), "{e}");
    let e = err(Value::Array(vec![s("pipe"), Value::Number(1.0)]));
    assert_eq!(e.code(), "ERR_INVALID_ARG_TYPE");
    assert!(e.to_string().contains("options.stdio[1]"), "{e}");
    let e = err(Value::Array(vec![s("pipe"); 4]));
    assert_eq!(e.code(), "ERR_INVALID_ARG_VALUE");
    assert_eq!(err(Value::Bool(true)).code(), "ERR_INVALID_ARG_TYPE");
  }

  #[test]
  fn stream_options_share_the_spawn_options_checks() {
    let e = parse_s(obj(&[("forceKillAfter", Value::Number(-1.0))])).unwrap_err();
    assert_eq!(e.code(), "ERR_OUT_OF_RANGE");
    let e = parse_s(obj(&[("killSignal", s("SIGNOPE"))])).unwrap_err();
    assert_eq!(e.code(), "ERR_INVALID_ARG_VALUE");
  }

  #[test]
  fn limits_and_privileges_reach_the_launch_spec() {
    let plan = parse(obj(&[
      (
        "limits",
        obj(&[
          ("memory", Value::Number(268435456.0)),
          ("cpuTime", Value::Number(2.0)),
          ("openFiles", Value::Number(64.0)),
          ("fileSize", Value::Number(0.0)),
          ("processes", Value::Number(10.0)),
          ("coreDump", Value::Number(0.0)),
        ]),
      ),
      ("noNewPrivileges", Value::Bool(true)),
      ("uid", Value::Number(65534.0)),
      ("gid", Value::Number(0.0)),
    ]))
    .unwrap();
    assert_eq!(
      plan.launch.confinement,
      Confinement {
        limits: ResourceLimits {
          memory: Some(256 << 20),
          cpu_time: Some(2),
          open_files: Some(64),
          file_size: Some(0),
          processes: Some(10),
          core_dump: Some(0),
        },
        no_new_privileges: true,
        uid: Some(65534),
        gid: Some(0),
      }
    );
    let none = parse(obj(&[("limits", obj(&[("memory", Value::Undefined)]))])).unwrap();
    assert_eq!(none.launch.confinement, Confinement::default());
    assert_eq!(
      parse(Value::Undefined).unwrap().launch.confinement,
      Confinement::default()
    );
    let stream = parse_s(obj(&[("limits", obj(&[("cpuTime", Value::Number(1.0))]))])).unwrap();
    assert_eq!(stream.launch.confinement.limits.cpu_time, Some(1));
    let worker = supervise(obj(&[
      ("modulePath", s("w.js")),
      ("limits", obj(&[("memory", Value::Number(1024.0))])),
      ("uid", Value::Number(1000.0)),
    ]))
    .unwrap();
    assert_eq!(worker.launch.confinement.limits.memory, Some(1024));
    assert_eq!(worker.launch.confinement.uid, Some(1000));
  }

  #[test]
  fn bad_limits_name_the_option() {
    let limits = |key: &str, v: Value| parse(obj(&[("limits", obj(&[(key, v)]))])).unwrap_err();
    for (key, n) in [
      ("memory", -1.0),
      ("memory", 1.5),
      ("openFiles", f64::NAN),
      ("fileSize", f64::INFINITY),
      ("processes", -0.5),
      ("cpuTime", 0.0),
      ("coreDump", 2f64.powi(60)),
    ] {
      let err = limits(key, Value::Number(n));
      assert_eq!(err.code(), "ERR_OUT_OF_RANGE", "{key}: {n}");
      assert!(
        err.to_string().contains(&format!("options.limits.{key}")),
        "{err}"
      );
    }
    for (key, v) in [
      ("memory", s("256m")),
      ("cpuTime", Value::Null),
      ("coreDump", Value::Bool(false)),
    ] {
      let err = limits(key, v);
      assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE", "{key}");
      assert!(err.to_string().contains(&format!("options.limits.{key}")));
    }
    let err = limits("rss", Value::Number(1.0));
    assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE");
    assert!(err.to_string().contains("options.limits.rss"), "{err}");
    for v in [s("1g"), Value::Number(5.0), Value::Array(vec![])] {
      let err = parse(obj(&[("limits", v)])).unwrap_err();
      assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE");
      assert!(err.to_string().contains("options.limits"), "{err}");
    }
    let err = supervise(obj(&[
      ("command", s("x")),
      ("limits", obj(&[("memory", Value::Number(-1.0))])),
    ]))
    .unwrap_err();
    assert_eq!(err.code(), "ERR_OUT_OF_RANGE");
  }

  #[test]
  fn ids_are_non_negative_int32s_as_in_node() {
    for key in ["uid", "gid"] {
      for n in [-1.0, 0.5, 2147483648.0, f64::NAN] {
        let err = parse(obj(&[(key, Value::Number(n))])).unwrap_err();
        assert_eq!(err.code(), "ERR_OUT_OF_RANGE", "{key}: {n}");
        assert!(err.to_string().contains(&format!("options.{key}")), "{err}");
      }
      let err = parse(obj(&[(key, s("root"))])).unwrap_err();
      assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE");
    }
    let err = parse(obj(&[("noNewPrivileges", Value::Number(1.0))])).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE");
    assert!(err.to_string().contains("options.noNewPrivileges"));
  }

  #[test]
  fn signals_are_names_or_numbers() {
    let signal = |v: Value| signal_or_sigterm(&v, "x");
    assert_eq!(signal(Value::Undefined).unwrap(), Signal::SIGTERM);
    assert_eq!(signal(s("SIGKILL")).unwrap(), Signal::SIGKILL);
    assert_eq!(signal(Value::Number(15.0)).unwrap(), Signal::SIGTERM);
    for bad in [s("sigterm"), Value::Number(0.0), Value::Number(9.5)] {
      assert_eq!(signal(bad).unwrap_err().code(), "ERR_INVALID_ARG_VALUE");
    }
    assert_eq!(
      signal(Value::Null).unwrap_err().code(),
      "ERR_INVALID_ARG_TYPE"
    );
  }

  fn here() -> ParentState {
    ParentState {
      cwd: Some("/work/here".into()),
      umask: Some(0o027),
    }
  }

  fn in_here(options: Value) -> Result<CollectPlan, Error> {
    super::parse_collect(&s("pwd"), &Value::Undefined, &options, vec![], &here())
  }

  #[test]
  fn the_child_starts_in_this_process_directory_and_umask_now() {
    let plan = in_here(Value::Undefined).unwrap();
    assert_eq!(plan.launch.cwd, Some("/work/here".into()));
    assert_eq!(plan.launch.umask, Some(0o027));
    let cwd = |v: &str| in_here(obj(&[("cwd", s(v))])).unwrap().launch.cwd;
    assert_eq!(
      cwd(""),
      Some("/work/here".into()),
      "'' is the default, as in Node"
    );
    assert_eq!(cwd("sub/dir"), Some("/work/here/sub/dir".into()));
    assert_eq!(cwd("/abs"), Some("/abs".into()));
    let err = in_here(obj(&[("cwd", Value::Number(1.0))])).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE");
    assert!(err.to_string().contains("options.cwd"), "{err}");
    // A Supervisor keeps the launcher's umask and takes `cwd` as given.
    let plan = supervise(obj(&[("command", s("w")), ("cwd", s("rel"))])).unwrap();
    assert_eq!(
      (plan.launch.cwd, plan.launch.umask),
      (Some("rel".into()), None)
    );
  }

  #[test]
  fn shell_runs_one_command_line() {
    let shell = |shell: Value, args: Value| {
      super::parse_stream(
        &s("echo a | tr a b"),
        &args,
        &obj(&[("shell", shell)]),
        vec![],
        &here(),
      )
    };
    let launch = shell(Value::Bool(true), Value::Undefined).unwrap().launch;
    assert_eq!(launch.command, "/bin/sh");
    assert_eq!(launch.args, vec!["-c", "echo a | tr a b"]);
    let launch = shell(s("/bin/bash"), Value::Array(vec![])).unwrap().launch;
    assert_eq!(launch.command, "/bin/bash");
    assert_eq!(launch.args, vec!["-c", "echo a | tr a b"]);
    for off in [Value::Bool(false), s(""), Value::Undefined] {
      let launch = shell(off, Value::Undefined).unwrap().launch;
      assert_eq!(launch.command, "echo a | tr a b");
      assert!(launch.args.is_empty());
    }
    let err = shell(Value::Bool(true), Value::Array(vec![s("x")])).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE");
    assert_eq!(err.js_kind(), crate::error::JsKind::TypeError);
    assert!(err.to_string().contains("unquoted"), "{err}");
    let err = shell(Value::Number(1.0), Value::Undefined).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE");
    let err = shell(s("/bin/s\0h"), Value::Undefined).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_VALUE");
  }

  #[test]
  fn a_stream_refuses_null_options_as_node_does() {
    let err = parse_s(Value::Null).unwrap_err();
    assert_eq!(err.code(), "ERR_INVALID_ARG_TYPE");
    assert_eq!(
      err.to_string(),
      "The \"options\" argument must be of type object. Received null"
    );
    assert!(
      parse(Value::Null).is_ok(),
      "the collecting calls take null as defaults"
    );
  }
}
