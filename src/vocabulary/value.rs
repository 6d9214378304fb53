//! A JavaScript value as tethered's Rust side sees it, and Node's way of describing one in an
//! error message. The bindings convert JS values into [`Value`] and the option parser reads
//! them, so every rule about arguments is tested without Node.

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
  /// A property of an object; `Undefined` when absent or when this is no object.
  pub fn get(&self, key: &str) -> &Value {
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

/// A number as JavaScript prints it (`-1`, `1.5`, `NaN`, `Infinity`).
pub fn format_number(n: f64) -> String {
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn received_values_are_described_like_node() {
    assert_eq!(describe(&Value::Number(-1.0)), "type number (-1)");
    assert_eq!(describe(&Value::Number(1.5)), "type number (1.5)");
    assert_eq!(
      describe(&Value::String("abc".into())),
      "type string ('abc')"
    );
    assert_eq!(describe(&Value::Null), "null");
  }
}
