//! Option normalisation: a plain-Rust view of the JavaScript arguments is checked once, every
//! default is filled in one place, and the result is a typed plan the rest of the crate trusts.
//! The napi layer only converts JS values into [`Value`]; everything else here is unit-tested
//! without Node.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::Error;
use crate::launch::StdioMode;
use crate::signals;

/// A JavaScript value as the option parser sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
  Undefined,
  Null,
  Bool(bool),
  Number(f64),
  String(String),
  /// A `Uint8Array` (Buffer included).
  Bytes(Vec<u8>),
  Array(Vec<Value>),
  /// A plain object's own enumerable properties, in order.
  Object(Vec<(String, Value)>),
  /// An `AbortSignal`; the bindings keep the JS object itself.
  AbortSignal {
    aborted: bool,
  },
  /// Anything else, described as Node describes a received value (e.g. `function f`).
  Other(String),
}

impl Value {
  fn get(&self, key: &str) -> &Value {
    match self {
      Value::Object(entries) => entries
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or(&Value::Undefined),
      _ => &Value::Undefined,
    }
  }
}

/// How Node's `ERR_INVALID_ARG_TYPE` messages end: "Received type number (5)".
pub fn describe(value: &Value) -> String {
  fn short(s: &str) -> String {
    if s.chars().count() > 28 {
      format!("{}...", s.chars().take(25).collect::<String>())
    } else {
      s.to_string()
    }
  }
  match value {
    Value::Undefined => "undefined".into(),
    Value::Null => "null".into(),
    Value::Bool(b) => format!("type boolean ({b})"),
    Value::Number(n) => format!("type number ({})", format_number(*n)),
    Value::String(s) => format!("type string ('{}')", short(s).replace('\0', "\\u0000")),
    Value::Bytes(_) => "an instance of Uint8Array".into(),
    Value::Array(_) => "an instance of Array".into(),
    Value::Object(_) => "an instance of Object".into(),
    Value::AbortSignal { .. } => "an instance of AbortSignal".into(),
    Value::Other(what) => what.clone(),
  }
}

fn format_number(n: f64) -> String {
  if n.is_nan() {
    "NaN".into()
  } else if n.is_infinite() {
    if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
  } else if n.fract() == 0.0 && n.abs() < 1e21 {
    format!("{}", n as i128)
  } else {
    format!("{n}")
  }
}

/// How a call's output is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
  Utf8,
  Buffer,
}

/// What to start: the program, its arguments, where and with which environment.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
  pub command: String,
  pub args: Vec<String>,
  pub cwd: Option<String>,
  /// The complete environment of the child, in order.
  pub env: Vec<(String, String)>,
  pub kill_on_parent_exit: bool,
}

impl LaunchSpec {
  /// The `PATH` the child will see, which is where its command is looked up (as libuv does).
  pub fn path_var(&self) -> Option<&str> {
    self
      .env
      .iter()
      .find(|(k, _)| k == "PATH")
      .map(|(_, v)| v.as_str())
  }
}

/// How a process group is ended when tethered ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillPolicy {
  pub signal: Signal,
  /// From `signal` to SIGKILL of the group.
  pub force_after: Duration,
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
/// process's environment, which `options.env` is merged over unless `extendEnv` is false.
pub fn parse_collect(
  command: &Value,
  args: &Value,
  options: &Value,
  parent_env: impl IntoIterator<Item = (String, String)>,
) -> Result<CollectPlan, Error> {
  let base = parse_spawn_options(command, args, options, parent_env)?;
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
  let encoding = match options.get("encoding") {
    Value::Undefined => Encoding::Utf8,
    Value::String(s) if s == "utf8" || s == "utf-8" => Encoding::Utf8,
    Value::String(s) if s == "buffer" => Encoding::Buffer,
    v @ Value::String(_) => {
      return Err(Error::invalid_value(
        "options.encoding",
        "must be 'utf8' or 'buffer'",
        describe(v),
      ))
    }
    v => {
      return Err(Error::invalid_type(
        "options.encoding",
        "of type string",
        describe(v),
      ))
    }
  };
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
/// `stdio`. Unlike `spawnCollect`, a stream has no timeout unless one is given.
pub fn parse_stream(
  command: &Value,
  args: &Value,
  options: &Value,
  parent_env: impl IntoIterator<Item = (String, String)>,
) -> Result<StreamPlan, Error> {
  let (args, options) = shift_options(args, options);
  let base = parse_spawn_options(command, args, options, parent_env)?;
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

/// `fn(command, options)` is accepted as `fn(command, [], options)`, as Node and execa do.
fn shift_options<'a>(args: &'a Value, options: &'a Value) -> (&'a Value, &'a Value) {
  match (args, options) {
    (Value::Object(_), Value::Undefined | Value::Null) => (&Value::Undefined, args),
    _ => (args, options),
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
  parent_env: impl IntoIterator<Item = (String, String)>,
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
  let args = match args {
    Value::Undefined | Value::Null => Vec::new(),
    Value::Array(items) => items
      .iter()
      .enumerate()
      .map(|(i, item)| match item {
        Value::String(s) => no_nul(s, &format!("args[{i}]")),
        v => Err(Error::invalid_type(
          format!("args[{i}]"),
          "of type string",
          describe(v),
        )),
      })
      .collect::<Result<_, _>>()?,
    v => {
      return Err(Error::invalid_type(
        "args",
        "an instance of Array",
        describe(v),
      ))
    }
  };
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
  let cwd = match options.get("cwd") {
    Value::Undefined => None,
    Value::String(s) => Some(no_nul(s, "options.cwd")?),
    v => {
      return Err(Error::invalid_type(
        "options.cwd",
        "of type string",
        describe(v),
      ))
    }
  };
  let extend_env = boolean(options.get("extendEnv"), "options.extendEnv", true)?;
  let env = build_env(options.get("env"), extend_env, parent_env)?;
  let kill_on_parent_exit = boolean(
    options.get("killOnParentExit"),
    "options.killOnParentExit",
    true,
  )?;
  let timeout = match options.get("timeout") {
    Value::Undefined => None,
    v => Some(match integer(v, "options.timeout", 0)? {
      0 => None,
      ms => Some(Duration::from_millis(ms)),
    }),
  };
  let signal = match options.get("killSignal") {
    Value::Undefined => Signal::SIGTERM,
    v => signals::parse(v, "options.killSignal")?,
  };
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
      env,
      kill_on_parent_exit,
    },
    kill: KillPolicy {
      signal,
      force_after,
    },
    timeout,
    abort_signal,
  })
}

fn build_env(
  env: &Value,
  extend_env: bool,
  parent_env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, Error> {
  let mut merged: BTreeMap<String, String> = if extend_env {
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
            merged.remove(key);
          }
          Value::String(s) => {
            merged.insert(key.clone(), no_nul(s, &name)?);
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
    assert_eq!(plan.launch.path_var(), Some("/bin"));
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
    let plan = parse_stream(
      &s("cat"),
      &obj(&[("stdio", s("ignore"))]),
      &Value::Undefined,
      vec![],
    )
    .unwrap();
    assert_eq!(plan.stdio, [StdioMode::Ignore; 3]);
  }

  #[test]
  fn received_values_are_described_like_node() {
    assert_eq!(describe(&Value::Number(-1.0)), "type number (-1)");
    assert_eq!(describe(&Value::Number(1.5)), "type number (1.5)");
    assert_eq!(describe(&s("abc")), "type string ('abc')");
    assert_eq!(describe(&Value::Null), "null");
  }
}
