//! Signal names as Node spells them (`'SIGTERM'`) and numbers, both ways.

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::Error;
use crate::options::{describe, Value};

/// Reads a signal given by name (`'SIGKILL'`) or number (`9`).
pub fn parse(value: &Value, name: &str) -> Result<Signal, Error> {
  match value {
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

/// The Node name of a signal number that ended a process, e.g. 15 → `SIGTERM`.
pub fn name_of(signo: i32) -> String {
  match Signal::try_from(signo) {
    Ok(signal) => signal.as_str().to_string(),
    Err(_) => format!("SIG{signo}"),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn names_and_numbers_both_parse() {
    let s = |v: &str| Value::String(v.into());
    assert_eq!(parse(&s("SIGKILL"), "x").unwrap(), Signal::SIGKILL);
    assert_eq!(parse(&Value::Number(15.0), "x").unwrap(), Signal::SIGTERM);
    assert_eq!(
      parse(&s("sigterm"), "x").unwrap_err().code(),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      parse(&Value::Number(0.0), "x").unwrap_err().code(),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      parse(&Value::Number(9.5), "x").unwrap_err().code(),
      "ERR_INVALID_ARG_VALUE"
    );
    assert_eq!(
      parse(&Value::Null, "x").unwrap_err().code(),
      "ERR_INVALID_ARG_TYPE"
    );
  }

  #[test]
  fn exit_signals_get_node_names() {
    assert_eq!(name_of(9), "SIGKILL");
    assert_eq!(name_of(libc::SIGSEGV), "SIGSEGV");
  }
}
