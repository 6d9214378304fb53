//! Node's IPC channel in `json` serialization mode, as bytes: each message is one JSON value
//! followed by `'\n'` (what `process.send` writes and `process.on('message')` parses).
//!
//! Why a newline is a safe separator: `JSON.stringify` escapes every control character inside
//! strings, so a raw `'\n'` only ever ends a message, and in UTF-8 the byte `0x0A` never occurs
//! inside a multi-byte character. So the decoder splits bytes, not characters: a chunk boundary
//! anywhere — inside a character, inside a 5 MB message — needs no special care, and text is
//! decoded once per complete message.
//!
//! On top of the framing sit the messages tethered itself exchanges with a worker (health checks,
//! the request/response envelope, shutdown) and Node's own `NODE_*` messages; the decoder tells
//! them apart from the user's messages. It builds only the few top-level fields that decide
//! this: the rest of a message is checked and passed on as the text it arrived as, which
//! JavaScript parses anyway — building it here too would cost a copy of every large message.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Value};

use crate::error::Error;

/// Above this capacity, an emptied buffer is given back rather than kept, so one huge message
/// does not pin its size in memory for the life of the channel.
const RETAINED_CAPACITY: usize = 1 << 20;

/// One message as received: what it is, and its JSON text exactly as the worker wrote it
/// (passed on as it is, so nothing of it — not even the order of object keys — changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
  pub incoming: Incoming,
  pub json: String,
}

/// Turns a byte stream into messages. Holds at most the unfinished message plus the latest
/// chunk, so memory follows the largest message, not the traffic.
#[derive(Debug, Default)]
pub struct Decoder {
  buffer: Vec<u8>,
  /// Bytes before this index were already handed out.
  consumed: usize,
  /// No `'\n'` lies in `consumed..scanned`: a message arriving in many chunks is scanned once.
  scanned: usize,
}

impl Decoder {
  pub fn new() -> Self {
    Self::default()
  }

  /// Adds bytes read from the channel; any split is fine.
  pub fn feed(&mut self, chunk: &[u8]) {
    if self.consumed > 0 {
      self.buffer.drain(..self.consumed);
      self.scanned -= self.consumed;
      self.consumed = 0;
    }
    self.buffer.extend_from_slice(chunk);
  }

  /// The next complete message, in order, or `None` until more bytes are fed. A line that is
  /// not JSON is an `Err` item; the messages after it are unaffected. Blank lines are skipped.
  pub fn next_message(&mut self) -> Option<Result<Received, Error>> {
    loop {
      let newline = memchr::memchr(b'\n', &self.buffer[self.scanned..]).map(|i| self.scanned + i);
      let Some(end) = newline else {
        self.scanned = self.buffer.len();
        self.release_if_empty();
        return None;
      };
      let line = &self.buffer[self.consumed..end];
      self.consumed = end + 1;
      self.scanned = self.consumed;
      if line.iter().all(u8::is_ascii_whitespace) {
        continue;
      }
      let parsed = parse_line(line);
      self.release_if_empty();
      return Some(parsed);
    }
  }

  fn release_if_empty(&mut self) {
    if self.consumed == self.buffer.len() {
      self.consumed = 0;
      self.scanned = 0;
      if self.buffer.capacity() > RETAINED_CAPACITY {
        self.buffer = Vec::new();
      } else {
        self.buffer.clear();
      }
    }
  }
}

/// What ends every message on the wire. A writer sends it after each line, so a line already
/// in hand (e.g. the JSON text `JSON.stringify` gave) is written without being copied to add it.
pub const TERMINATOR: &[u8] = b"\n";

/// The line that carries `message`, without its [`TERMINATOR`]. Compact JSON never contains a
/// raw newline.
pub fn encode(message: &Value) -> Vec<u8> {
  message.to_string().into_bytes()
}

/// The health check the supervisor sends; a worker answers `{ type: 'pong' }`.
pub fn ping() -> Value {
  json!({ "type": "ping" })
}

/// Asks the worker to finish and exit on its own (the first step of `stop()`).
pub fn shutdown() -> Value {
  json!({ "type": "shutdown" })
}

/// The line of the envelope `{ tethered: 'request', id, body }` around `body_json` (one JSON
/// text without a raw newline, as `JSON.stringify` gives it), without its [`TERMINATOR`]; the
/// worker answers with a response carrying the same `id`.
pub fn encode_request(id: u64, body_json: &str) -> Vec<u8> {
  format!("{{\"tethered\":\"request\",\"id\":{id},\"body\":{body_json}}}").into_bytes()
}

/// What a message from a worker is, as far as the supervisor is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
  /// The answer to a health check; consumed, never shown to the user.
  Pong,
  /// The answer to `request()` number `id`; consumed, never shown as a 'message'.
  /// `Ok(None)` is a response whose `result` was `undefined` (JSON drops the key).
  Response {
    id: u64,
    outcome: Result<Option<Value>, Error>,
  },
  /// One of Node's own messages (`cmd: 'NODE_…'`, e.g. handle passing); ignored.
  NodeInternal,
  /// Anything else: emitted to the user as 'message'.
  User,
}

/// Checks that `line` is one JSON value and sorts it.
fn parse_line(line: &[u8]) -> Result<Received, Error> {
  let malformed = |reason: String| Error::MalformedMessage { reason };
  let Envelope(fields) = serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
  // serde_json skips the strings it does not build without checking their UTF-8: done here.
  let json = String::from_utf8(line.to_vec()).map_err(|e| malformed(e.to_string()))?;
  let incoming = fields.map_or(Incoming::User, classify);
  Ok(Received { incoming, json })
}

/// The top-level fields [`classify`] looks at; the others are never built.
const ENVELOPE_KEYS: [&str; 6] = ["cmd", "type", "tethered", "id", "result", "error"];

/// A message seen only as far as sorting needs: the [`ENVELOPE_KEYS`] of an object (`None` for
/// anything but an object). Duplicate keys: the last one wins, as in `JSON.parse`.
struct Envelope(Option<Map<String, Value>>);

impl<'de> Deserialize<'de> for Envelope {
  fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
    deserializer.deserialize_any(EnvelopeVisitor)
  }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
  type Value = Envelope;

  fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
    f.write_str("a JSON value")
  }

  fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
    let mut fields = Map::new();
    while let Some(EnvelopeKey(key)) = map.next_key()? {
      match key {
        Some(key) => {
          fields.insert(key.to_string(), map.next_value()?);
        }
        None => {
          map.next_value::<IgnoredAny>()?;
        }
      }
    }
    Ok(Envelope(Some(fields)))
  }

  fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Envelope, A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(Envelope(None))
  }

  fn visit_bool<E: de::Error>(self, _: bool) -> Result<Envelope, E> {
    Ok(Envelope(None))
  }

  fn visit_i64<E: de::Error>(self, _: i64) -> Result<Envelope, E> {
    Ok(Envelope(None))
  }

  fn visit_u64<E: de::Error>(self, _: u64) -> Result<Envelope, E> {
    Ok(Envelope(None))
  }

  fn visit_f64<E: de::Error>(self, _: f64) -> Result<Envelope, E> {
    Ok(Envelope(None))
  }

  fn visit_str<E: de::Error>(self, _: &str) -> Result<Envelope, E> {
    Ok(Envelope(None))
  }

  fn visit_unit<E: de::Error>(self) -> Result<Envelope, E> {
    Ok(Envelope(None))
  }
}

/// A top-level key: which of the [`ENVELOPE_KEYS`] it is, if any (read without allocating).
struct EnvelopeKey(Option<&'static str>);

impl<'de> Deserialize<'de> for EnvelopeKey {
  fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
    deserializer.deserialize_str(EnvelopeKeyVisitor)
  }
}

struct EnvelopeKeyVisitor;

impl Visitor<'_> for EnvelopeKeyVisitor {
  type Value = EnvelopeKey;

  fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
    f.write_str("a key")
  }

  fn visit_str<E: de::Error>(self, key: &str) -> Result<EnvelopeKey, E> {
    Ok(EnvelopeKey(ENVELOPE_KEYS.into_iter().find(|&k| k == key)))
  }
}

/// Sorts a message by its envelope fields. Only a well-formed envelope (`id` a positive
/// integer) is taken as a response; anything less is the user's own message and reaches them
/// untouched.
fn classify(mut fields: Map<String, Value>) -> Incoming {
  if is_node_internal(fields.get("cmd")) {
    return Incoming::NodeInternal;
  }
  if fields.get("type").and_then(Value::as_str) == Some("pong") {
    return Incoming::Pong;
  }
  let is_response = fields.get("tethered").and_then(Value::as_str) == Some("response");
  match fields
    .get("id")
    .and_then(Value::as_u64)
    .filter(|&id| id > 0)
  {
    Some(id) if is_response => {
      let outcome = match fields.remove("error") {
        None | Some(Value::Null) => Ok(fields.remove("result")),
        Some(error) => Err(worker_error(&error)),
      };
      Incoming::Response { id, outcome }
    }
    _ => Incoming::User,
  }
}

/// Node's own test (`isInternal` in `lib/internal/child_process.js`): a string `cmd` longer than
/// the prefix that starts with `NODE_`.
fn is_node_internal(cmd: Option<&Value>) -> bool {
  matches!(cmd, Some(Value::String(cmd)) if cmd.len() > "NODE_".len() && cmd.starts_with("NODE_"))
}

/// The rejection of a request the worker answered with `error: { message, code? }`.
fn worker_error(error: &Value) -> Error {
  let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
  Error::WorkerRequestFailed {
    // A worker that threw a non-Error (`throw 'oops'`) is still heard, in JSON form.
    message: text("message").unwrap_or_else(|| error.to_string()),
    code: text("code"),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn drain(decoder: &mut Decoder) -> Vec<Result<Received, Error>> {
    std::iter::from_fn(|| decoder.next_message()).collect()
  }

  fn value(received: &Received) -> Value {
    serde_json::from_str(&received.json).unwrap()
  }

  fn values(items: Vec<Result<Received, Error>>) -> Vec<Value> {
    items
      .iter()
      .map(|item| value(item.as_ref().unwrap()))
      .collect()
  }

  /// How the decoder sorts `message`.
  fn incoming(message: Value) -> Incoming {
    parse_line(message.to_string().as_bytes()).unwrap().incoming
  }

  /// The bytes a writer puts on the wire for `message`.
  fn wire(message: &Value) -> Vec<u8> {
    [encode(message), TERMINATOR.to_vec()].concat()
  }

  #[test]
  fn encode_is_one_compact_line() {
    let message = json!({ "text": "line one\nline two", "n": [1, 2.5, null] });
    let bytes = encode(&message);
    assert!(!bytes.contains(&b'\n'));
    assert_eq!(
      String::from_utf8(bytes).unwrap(),
      "{\"text\":\"line one\\nline two\",\"n\":[1,2.5,null]}"
    );
  }

  #[test]
  fn a_result_keeps_the_order_of_its_keys() {
    let line = br#"{"tethered":"response","id":1,"result":{"z":1,"a":{"y":2,"b":3}}}"#;
    let Incoming::Response { outcome, .. } = parse_line(line).unwrap().incoming else {
      panic!("not a response")
    };
    let result = outcome.unwrap().unwrap().to_string();
    assert_eq!(result, r#"{"z":1,"a":{"y":2,"b":3}}"#);
  }

  #[test]
  fn decodes_what_was_encoded_in_order() {
    let sent: Vec<Value> = (0..10_000).map(|i| json!({ "seq": i })).collect();
    let mut decoder = Decoder::new();
    decoder.feed(&sent.iter().flat_map(wire).collect::<Vec<u8>>());
    assert_eq!(values(drain(&mut decoder)), sent);
    assert_eq!(decoder.next_message(), None);
  }

  #[test]
  fn every_split_of_multi_byte_text_decodes_the_same() {
    let message = json!({ "text": "héllo 👋🏽 世界 \u{2028} ok", "emoji": "🧵" });
    let bytes = [wire(&message), wire(&json!("second"))].concat();
    for split in 0..=bytes.len() {
      let mut decoder = Decoder::new();
      decoder.feed(&bytes[..split]);
      let mut got = drain(&mut decoder);
      decoder.feed(&bytes[split..]);
      got.extend(drain(&mut decoder));
      assert_eq!(
        values(got),
        vec![message.clone(), json!("second")],
        "{split}"
      );
    }
  }

  #[test]
  fn byte_by_byte_feeding_works() {
    let bytes = wire(&json!({ "a": "ü", "b": [true, false] }));
    let mut decoder = Decoder::new();
    let mut got = Vec::new();
    for byte in &bytes {
      decoder.feed(std::slice::from_ref(byte));
      got.extend(drain(&mut decoder));
    }
    assert_eq!(values(got), vec![json!({ "a": "ü", "b": [true, false] })]);
  }

  #[test]
  fn a_five_megabyte_message_survives_small_chunks() {
    let big = "€".repeat(5 * 1024 * 1024 / 3);
    let bytes = [wire(&json!({ "big": big })), wire(&json!({ "after": 1 }))].concat();
    let mut decoder = Decoder::new();
    let mut got = Vec::new();
    // 64 KiB + 1: chunk edges fall inside the three-byte '€' as well as between characters.
    for chunk in bytes.chunks(65_537) {
      decoder.feed(chunk);
      got.extend(drain(&mut decoder));
    }
    let got = values(got);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["big"].as_str().unwrap(), big);
    assert_eq!(got[1], json!({ "after": 1 }));
  }

  #[test]
  fn memory_follows_the_largest_message_and_is_given_back() {
    let mut decoder = Decoder::new();
    let big = wire(&json!("x".repeat(4 * RETAINED_CAPACITY)));
    let mut got = Vec::new();
    for chunk in big.chunks(4096) {
      decoder.feed(chunk);
      assert!(decoder.buffer.len() <= big.len());
      got.extend(drain(&mut decoder));
    }
    assert_eq!(got.len(), 1);
    assert_eq!(decoder.buffer.capacity(), 0, "a huge buffer is released");
    for _ in 0..10_000 {
      decoder.feed(b"{\"small\":true}\n{\"sm");
      assert_eq!(
        value(&decoder.next_message().unwrap().unwrap())["small"],
        true
      );
      assert!(decoder.next_message().is_none());
      decoder.feed(b"all\":1}\n");
      assert!(decoder.next_message().unwrap().is_ok());
      assert!(
        decoder.buffer.capacity() < 64,
        "steady traffic does not grow the buffer"
      );
    }
  }

  #[test]
  fn a_malformed_line_is_an_error_item_and_the_rest_still_arrives() {
    let mut decoder = Decoder::new();
    decoder.feed(b"{\"ok\":1}\n{not json}\n\xff\xfe\n\"fine\"\n");
    let got = drain(&mut decoder);
    assert_eq!(got.len(), 4);
    assert_eq!(value(got[0].as_ref().unwrap()), json!({ "ok": 1 }));
    for bad in &got[1..3] {
      let err = bad.as_ref().unwrap_err();
      assert_eq!(err.code(), "ERR_IPC_MALFORMED_MESSAGE");
    }
    assert_eq!(got[3].as_ref().unwrap().json, "\"fine\"");
  }

  #[test]
  fn blank_lines_and_crlf_are_tolerated() {
    let mut decoder = Decoder::new();
    decoder.feed(b"\n  \n1\r\n");
    assert_eq!(values(drain(&mut decoder)), vec![json!(1)]);
  }

  #[test]
  fn an_unfinished_message_waits_for_its_newline() {
    let mut decoder = Decoder::new();
    decoder.feed(b"{\"a\":1}");
    assert_eq!(decoder.next_message(), None);
    decoder.feed(b"\n");
    let received = decoder.next_message().unwrap().unwrap();
    assert_eq!(value(&received), json!({ "a": 1 }));
  }

  #[test]
  fn the_text_is_passed_on_as_written() {
    let line = "{\"z\":1,\"a\":[2.50,\"\\u00e9\"],\"m\":{\"b\":0,\"a\":0}}";
    let mut decoder = Decoder::new();
    decoder.feed(format!("{line}\n").as_bytes());
    let received = decoder.next_message().unwrap().unwrap();
    assert_eq!(received.json, line);
    assert_eq!(value(&received)["a"][1], "é");
    assert_eq!(received.incoming, Incoming::User);
  }

  #[test]
  fn envelopes_have_the_documented_shape() {
    assert_eq!(ping(), json!({ "type": "ping" }));
    assert_eq!(shutdown(), json!({ "type": "shutdown" }));
    let line = encode_request(7, r#"{"resize":[1,2]}"#);
    assert_eq!(
      serde_json::from_slice::<Value>(&line).unwrap(),
      json!({ "tethered": "request", "id": 7, "body": { "resize": [1, 2] } })
    );
  }

  #[test]
  fn pongs_and_node_internals_are_not_user_messages() {
    assert_eq!(incoming(json!({ "type": "pong" })), Incoming::Pong);
    assert_eq!(
      incoming(json!({ "type": "pong", "pid": 3 })),
      Incoming::Pong
    );
    assert_eq!(
      incoming(json!({ "cmd": "NODE_HANDLE", "type": "net.Socket" })),
      Incoming::NodeInternal
    );
    for user in [
      json!({ "cmd": "NODE_" }),
      json!({ "cmd": "node_handle" }),
      json!({ "type": "ping" }),
      json!({ "type": "shutdown" }),
      json!("pong"),
      json!(null),
      json!([{ "type": "pong" }]),
    ] {
      assert_eq!(incoming(user.clone()), Incoming::User);
    }
  }

  #[test]
  fn responses_carry_a_result_or_an_error() {
    assert_eq!(
      incoming(json!({ "tethered": "response", "id": 3, "result": { "ok": true } })),
      Incoming::Response {
        id: 3,
        outcome: Ok(Some(json!({ "ok": true })))
      }
    );
    assert_eq!(
      incoming(json!({ "tethered": "response", "id": 4 })),
      Incoming::Response {
        id: 4,
        outcome: Ok(None)
      }
    );
    assert_eq!(
      incoming(json!({ "tethered": "response", "id": 5, "result": null, "error": null })),
      Incoming::Response {
        id: 5,
        outcome: Ok(Some(Value::Null))
      }
    );
    let Incoming::Response { id, outcome } =
      incoming(json!({ "tethered": "response", "id": 6, "error": { "message": "bad jpeg" } }))
    else {
      panic!("not a response")
    };
    let err = outcome.unwrap_err();
    assert_eq!(id, 6);
    assert_eq!(err.code(), "ERR_WORKER_REQUEST_FAILED");
    assert_eq!(err.to_string(), "bad jpeg");
    let Incoming::Response { outcome, .. } = incoming(json!({
      "tethered": "response", "id": 7, "error": { "message": "gone", "code": "ENOENT" }
    })) else {
      panic!("not a response")
    };
    assert_eq!(outcome.unwrap_err().code(), "ENOENT");
    let Incoming::Response { outcome, .. } =
      incoming(json!({ "tethered": "response", "id": 8, "error": "oops" }))
    else {
      panic!("not a response")
    };
    assert_eq!(outcome.unwrap_err().to_string(), "\"oops\"");
  }

  #[test]
  fn only_top_level_keys_count_however_they_are_spelled() {
    let sort = |line: &[u8]| parse_line(line).map(|r| r.incoming);
    assert_eq!(sort(br#"{"t\u0079pe":"pong"}"#), Ok(Incoming::Pong));
    assert_eq!(
      sort(br#"{"type":"ping","type":"pong"}"#),
      Ok(Incoming::Pong)
    );
    assert_eq!(
      sort(br#"{"type":"pong","type":"ping"}"#),
      Ok(Incoming::User)
    );
    assert_eq!(sort(br#"{"echo":{"type":"pong"}}"#), Ok(Incoming::User));
    assert_eq!(sort(br#"[{"type":"pong"}]"#), Ok(Incoming::User));
    for user in [
      &br#""pong""#[..],
      b"12.5",
      b"-3",
      b"true",
      b"null",
      b"[]",
      b"{}",
    ] {
      assert_eq!(sort(user), Ok(Incoming::User));
    }
    // Skipped values are still checked: invalid UTF-8 in a string nobody builds is an error.
    let err = sort(b"{\"skipped\":\"\xff\"}").unwrap_err();
    assert_eq!(err.code(), "ERR_IPC_MALFORMED_MESSAGE");
    assert!(sort(br#"{"skipped":[1,}"#).is_err());
  }

  #[test]
  fn malformed_envelopes_reach_the_user() {
    for user in [
      json!({ "tethered": "response", "result": 1 }),
      json!({ "tethered": "response", "id": 0, "result": 1 }),
      json!({ "tethered": "response", "id": -1, "result": 1 }),
      json!({ "tethered": "response", "id": 1.5, "result": 1 }),
      json!({ "tethered": "response", "id": "1", "result": 1 }),
      json!({ "tethered": "request", "id": 1, "body": 1 }),
    ] {
      assert_eq!(incoming(user.clone()), Incoming::User);
    }
  }
}
