//! Node's IPC channel, as bytes, in either of Node's serialization modes, and the messages
//! tethered itself exchanges with a worker over it.
//!
//! `json` (this file): each message is one JSON value followed by `'\n'` (what `process.send`
//! writes and `process.on('message')` parses). A newline is a safe separator: `JSON.stringify`
//! escapes every control character inside strings, so a raw `'\n'` only ever ends a message, and
//! in UTF-8 the byte `0x0A` never occurs inside a multi-byte character. So the decoder splits
//! bytes, not characters: a chunk boundary anywhere — inside a character, inside a 5 MB message —
//! needs no special care, and text is decoded once per complete message.
//!
//! `advanced` ([`advanced`]): a length header, then a v8 serializer payload.
//!
//! On top of either framing sit the messages tethered itself exchanges with a worker (health
//! checks, the request/response envelope, cancel, shutdown) and Node's own `NODE_*` messages;
//! the decoders tell them apart from the user's messages by the same few top-level fields
//! ([`EnvelopeFields`]), so both modes sort alike. Only those fields are built: the rest of a
//! message is checked and passed on as the text or bytes it arrived as, which JavaScript parses
//! anyway — building it here too would cost a copy of every large message.

pub mod advanced;
pub mod backlog;

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::Error;

/// Above this capacity, an emptied buffer is given back rather than kept, so one huge message
/// does not pin its size in memory for the life of the channel.
const RETAINED_CAPACITY: usize = 1 << 20;

/// How messages cross the channel, as Node's `fork()` option `serialization` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serialization {
  #[default]
  Json,
  /// Node's v8 serializer: Buffers, typed arrays, Map, Set, Date, BigInt cross unchanged.
  Advanced,
}

/// A message's content as it travels between JavaScript and a worker, untouched here.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
  /// JSON text, exactly as written (so nothing of it — not even the order of object keys —
  /// changes).
  Json(String),
  /// A v8 serializer payload (version header included, no length header).
  Advanced(Vec<u8>),
}

impl Payload {
  /// Its size in bytes.
  pub fn size(&self) -> usize {
    match self {
      Payload::Json(json) => json.len(),
      Payload::Advanced(bytes) => bytes.len(),
    }
  }
}

/// One message from a worker, as far as the supervisor is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
  /// Anything not tethered's or Node's: emitted to the user as 'message'.
  User(Payload),
  /// The answer to a health check; consumed, never shown to the user.
  Pong,
  /// The answer to `request()` number `id`; consumed, never shown as a 'message'. An `Ok`
  /// carries the result: in json, the JSON text of `result` (`None` when it was `undefined`,
  /// which JSON drops); in advanced, the whole response, whose `result` JavaScript takes.
  Response {
    id: u64,
    outcome: Result<Option<Payload>, Error>,
  },
  /// One of Node's own messages (`cmd: 'NODE_…'`, e.g. handle passing); ignored.
  NodeInternal,
}

/// Turns a byte stream into messages, in the channel's serialization.
#[derive(Debug)]
pub enum Decoder {
  Json(Lines),
  Advanced(advanced::Decoder),
}

impl Decoder {
  /// A decoder that refuses messages longer than `max_message_size` bytes: the first such is
  /// an [`Error::MessageTooLarge`] item, and nothing after it is read (the stream cannot be
  /// followed past a message it did not keep).
  pub fn new(serialization: Serialization, max_message_size: usize) -> Self {
    match serialization {
      Serialization::Json => Decoder::Json(Lines::with_limit(max_message_size)),
      Serialization::Advanced => Decoder::Advanced(advanced::Decoder::with_limit(max_message_size)),
    }
  }

  /// Adds bytes read from the channel; any split is fine.
  pub fn feed(&mut self, chunk: &[u8]) {
    match self {
      Decoder::Json(lines) => lines.feed(chunk),
      Decoder::Advanced(frames) => frames.feed(chunk),
    }
  }

  /// The next complete message, in order, or `None` until more bytes are fed. A message that
  /// cannot be read is an `Err` item; the messages after it are unaffected.
  pub fn next_message(&mut self) -> Option<Result<Received, Error>> {
    match self {
      Decoder::Json(lines) => lines.next_message(),
      Decoder::Advanced(frames) => frames.next_message(),
    }
  }
}

/// The json decoder. Holds at most the unfinished message plus the latest chunk, so memory
/// follows the largest message, not the traffic — and the largest message is at most `limit`
/// bytes: a line that runs past it is refused before the rest of it is kept.
#[derive(Debug)]
pub struct Lines {
  /// The longest line accepted, newline not counted.
  limit: usize,
  /// A line ran past `limit` and was reported: nothing after it is kept.
  too_large: bool,
  buffer: Vec<u8>,
  /// Bytes before this index were already handed out.
  consumed: usize,
  /// No `'\n'` lies in `consumed..scanned`: a message arriving in many chunks is scanned once.
  scanned: usize,
}

impl Default for Lines {
  fn default() -> Self {
    Lines::with_limit(usize::MAX)
  }
}

impl Lines {
  fn with_limit(limit: usize) -> Self {
    Lines {
      limit,
      too_large: false,
      buffer: Vec::new(),
      consumed: 0,
      scanned: 0,
    }
  }

  fn feed(&mut self, chunk: &[u8]) {
    if self.too_large {
      return;
    }
    if self.consumed > 0 {
      self.buffer.drain(..self.consumed);
      self.scanned -= self.consumed;
      self.consumed = 0;
    }
    self.buffer.extend_from_slice(chunk);
  }

  /// A line that is not JSON is an `Err` item. Blank lines are skipped.
  fn next_message(&mut self) -> Option<Result<Received, Error>> {
    if self.too_large {
      return None;
    }
    loop {
      let newline = memchr::memchr(b'\n', &self.buffer[self.scanned..]).map(|i| self.scanned + i);
      let Some(end) = newline else {
        if self.buffer.len() - self.consumed > self.limit {
          return self.report_too_large();
        }
        self.scanned = self.buffer.len();
        self.release_if_empty();
        return None;
      };
      if end - self.consumed > self.limit {
        return self.report_too_large();
      }
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

  /// The error for a line over the limit; the buffer is given back, as nothing more will be
  /// read into it.
  fn report_too_large(&mut self) -> Option<Result<Received, Error>> {
    self.too_large = true;
    self.buffer = Vec::new();
    self.consumed = 0;
    self.scanned = 0;
    Some(Err(Error::MessageTooLarge { limit: self.limit }))
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

/// One message ready for the wire: its payload with the framing around it (a length header
/// before it, or a newline after it), written as three slices so the payload is not copied to
/// add them.
#[derive(Debug, Clone)]
pub struct Frame {
  head: [u8; 4],
  head_len: usize,
  payload: Vec<u8>,
  tail: &'static [u8],
}

impl Frame {
  /// The bytes on the wire, in order.
  pub fn parts(&self) -> [&[u8]; 3] {
    [&self.head[..self.head_len], &self.payload, self.tail]
  }

  /// The bytes on the wire; never zero, as every frame has a header or a terminator.
  #[allow(clippy::len_without_is_empty)]
  pub fn len(&self) -> usize {
    self.head_len + self.payload.len() + self.tail.len()
  }
}

impl Serialization {
  /// The value of `NODE_CHANNEL_SERIALIZATION_MODE` that makes a Node worker speak it.
  pub fn as_str(self) -> &'static str {
    match self {
      Serialization::Json => "json",
      Serialization::Advanced => "advanced",
    }
  }

  /// `payload` framed: in json, one JSON text without a raw newline (what `JSON.stringify`
  /// gives — the caller checks); in advanced, a v8 serializer payload.
  pub fn frame(self, payload: Vec<u8>) -> Result<Frame, Error> {
    Ok(match self {
      Serialization::Json => Frame {
        head: [0; 4],
        head_len: 0,
        payload,
        tail: b"\n",
      },
      Serialization::Advanced => Frame {
        head: advanced::header(&payload)?,
        head_len: 4,
        payload,
        tail: b"",
      },
    })
  }

  /// The health check the supervisor sends; a worker answers `{ type: 'pong' }`.
  pub fn ping(self) -> Frame {
    self.own_message(&[("type", advanced::Field::Str("ping"))])
  }

  /// Asks the worker to finish and exit on its own (the first step of `stop()`).
  pub fn shutdown(self) -> Frame {
    self.own_message(&[("type", advanced::Field::Str("shutdown"))])
  }

  /// Tells the worker the pool gave up on request `id`: `{ tethered: 'cancel', id }`.
  pub fn cancel(self, id: u64) -> Frame {
    self.own_message(&[
      ("tethered", advanced::Field::Str("cancel")),
      ("id", advanced::Field::Int(id)),
    ])
  }

  /// Request `id`, whose answer carries the same `id`. `body` is what JavaScript gave: in
  /// json, the JSON text of the body, put in the envelope `{ tethered: 'request', id, body }`
  /// here; in advanced, that envelope already serialized (see [`advanced::request`]).
  pub fn request(self, id: u64, body: &[u8]) -> Result<Frame, Error> {
    let payload = match self {
      Serialization::Json => {
        let mut line = format!("{{\"tethered\":\"request\",\"id\":{id},\"body\":").into_bytes();
        line.reserve(body.len() + 1);
        line.extend_from_slice(body);
        line.push(b'}');
        line
      }
      Serialization::Advanced => advanced::request(id, body)?,
    };
    self.frame(payload)
  }

  /// A small object of tethered's own, in this serialization.
  fn own_message(self, fields: &[(&str, advanced::Field)]) -> Frame {
    let payload = match self {
      Serialization::Json => {
        let object: Map<String, Value> = fields
          .iter()
          .map(|(key, value)| {
            let value = match value {
              advanced::Field::Str(s) => Value::from(*s),
              advanced::Field::Int(n) => Value::from(*n),
            };
            (key.to_string(), value)
          })
          .collect();
        Value::Object(object).to_string().into_bytes()
      }
      Serialization::Advanced => advanced::object(fields),
    };
    self
      .frame(payload)
      .expect("tethered's own messages are small")
  }
}

/// The top-level fields of a message that decide what it is; in either serialization, only
/// these are read.
#[derive(Debug, Default)]
struct EnvelopeFields {
  cmd: Option<String>,
  /// `type`.
  kind: Option<String>,
  tethered: Option<String>,
  /// `id`, when it is a positive safe integer.
  id: Option<u64>,
  /// `error`, unless absent, `null` or `undefined`.
  error: Option<WorkerErrorField>,
}

/// A response's `error` as far as the rejection needs it.
#[derive(Debug, Default)]
struct WorkerErrorField {
  message: Option<String>,
  code: Option<String>,
  /// How the error is shown when it has no string `message` (a worker that threw a non-Error,
  /// `throw 'oops'`, is still heard).
  shown: String,
}

/// What the fields say a message is.
enum Kind {
  User,
  Pong,
  NodeInternal,
  /// `error` is the rejection the worker answered with.
  Response {
    id: u64,
    error: Option<Error>,
  },
}

impl EnvelopeFields {
  /// Only a well-formed envelope (`id` a positive integer) is taken as a response; anything
  /// less is the user's own message and reaches them untouched.
  fn kind(self) -> Kind {
    // Node's own test (`isInternal` in `lib/internal/child_process.js`): a string `cmd` longer
    // than the prefix that starts with `NODE_`.
    if matches!(&self.cmd, Some(cmd) if cmd.len() > "NODE_".len() && cmd.starts_with("NODE_")) {
      return Kind::NodeInternal;
    }
    if self.kind.as_deref() == Some("pong") {
      return Kind::Pong;
    }
    match self.id {
      Some(id) if self.tethered.as_deref() == Some("response") => Kind::Response {
        id,
        error: self.error.map(|error| Error::WorkerRequestFailed {
          message: error.message.unwrap_or(error.shown),
          code: error.code,
        }),
      },
      _ => Kind::User,
    }
  }
}

/// Checks that `line` is one JSON value and sorts it.
fn parse_line(line: &[u8]) -> Result<Received, Error> {
  let malformed = |reason: String| Error::MalformedMessage { reason };
  let Envelope(fields) = serde_json::from_slice(line).map_err(|e| malformed(e.to_string()))?;
  // serde_json skips the strings it does not build without checking their UTF-8: done here.
  let json = String::from_utf8(line.to_vec()).map_err(|e| malformed(e.to_string()))?;
  let Some(mut fields) = fields else {
    return Ok(Received::User(Payload::Json(json)));
  };
  let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
  let envelope = EnvelopeFields {
    cmd: text(fields.get("cmd")),
    kind: text(fields.get("type")),
    tethered: text(fields.get("tethered")),
    id: fields
      .get("id")
      .and_then(Value::as_u64)
      .filter(|&id| id > 0),
    error: match fields.remove("error") {
      None | Some(Value::Null) => None,
      Some(error) => Some(WorkerErrorField {
        message: text(error.get("message")),
        code: text(error.get("code")),
        shown: error.to_string(),
      }),
    },
  };
  Ok(match envelope.kind() {
    Kind::User => Received::User(Payload::Json(json)),
    Kind::Pong => Received::Pong,
    Kind::NodeInternal => Received::NodeInternal,
    Kind::Response { id, error } => Received::Response {
      id,
      outcome: match error {
        Some(error) => Err(error),
        None => Ok(
          fields
            .remove("result")
            .map(|result| Payload::Json(result.to_string())),
        ),
      },
    },
  })
}

/// The top-level fields [`parse_line`] looks at; the others are never built.
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

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn drain(decoder: &mut Decoder) -> Vec<Result<Received, Error>> {
    std::iter::from_fn(|| decoder.next_message()).collect()
  }

  fn json(received: &Received) -> &str {
    match received {
      Received::User(Payload::Json(json)) => json,
      other => panic!("not a user message: {other:?}"),
    }
  }

  fn value(received: &Received) -> Value {
    serde_json::from_str(json(received)).unwrap()
  }

  fn values(items: Vec<Result<Received, Error>>) -> Vec<Value> {
    items
      .iter()
      .map(|item| value(item.as_ref().unwrap()))
      .collect()
  }

  /// How the decoder sorts `message`.
  fn incoming(message: Value) -> Received {
    parse_line(message.to_string().as_bytes()).unwrap()
  }

  fn bytes(frame: Frame) -> Vec<u8> {
    frame.parts().concat()
  }

  /// The bytes a writer puts on the wire for `message`.
  fn wire(message: &Value) -> Vec<u8> {
    bytes(
      Serialization::Json
        .frame(message.to_string().into_bytes())
        .unwrap(),
    )
  }

  fn decoder() -> Decoder {
    Decoder::new(Serialization::Json, usize::MAX)
  }

  fn lines(decoder: &Decoder) -> &Lines {
    match decoder {
      Decoder::Json(lines) => lines,
      Decoder::Advanced(_) => unreachable!(),
    }
  }

  #[test]
  fn a_result_keeps_the_order_of_its_keys() {
    let line = br#"{"tethered":"response","id":1,"result":{"z":1,"a":{"y":2,"b":3}}}"#;
    let Received::Response { outcome, .. } = parse_line(line).unwrap() else {
      panic!("not a response")
    };
    let Some(Payload::Json(result)) = outcome.unwrap() else {
      panic!("no result")
    };
    assert_eq!(result, r#"{"z":1,"a":{"y":2,"b":3}}"#);
  }

  #[test]
  fn decodes_what_was_encoded_in_order() {
    let sent: Vec<Value> = (0..10_000).map(|i| json!({ "seq": i })).collect();
    let mut decoder = decoder();
    decoder.feed(&sent.iter().flat_map(wire).collect::<Vec<u8>>());
    assert_eq!(values(drain(&mut decoder)), sent);
    assert_eq!(decoder.next_message(), None);
  }

  #[test]
  fn every_split_of_multi_byte_text_decodes_the_same() {
    let message = json!({ "text": "héllo 👋🏽 世界 \u{2028} ok", "emoji": "🧵" });
    let bytes = [wire(&message), wire(&json!("second"))].concat();
    for split in 0..=bytes.len() {
      let mut decoder = decoder();
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
    let mut decoder = decoder();
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
    let mut decoder = decoder();
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
    let mut decoder = decoder();
    let big = wire(&json!("x".repeat(4 * RETAINED_CAPACITY)));
    let mut got = Vec::new();
    for chunk in big.chunks(4096) {
      decoder.feed(chunk);
      assert!(lines(&decoder).buffer.len() <= big.len());
      got.extend(drain(&mut decoder));
    }
    assert_eq!(got.len(), 1);
    assert_eq!(
      lines(&decoder).buffer.capacity(),
      0,
      "a huge buffer is released"
    );
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
        lines(&decoder).buffer.capacity() < 64,
        "steady traffic does not grow the buffer"
      );
    }
  }

  #[test]
  fn a_malformed_line_is_an_error_item_and_the_rest_still_arrives() {
    let mut decoder = decoder();
    decoder.feed(b"{\"ok\":1}\n{not json}\n\xff\xfe\n\"fine\"\n");
    let got = drain(&mut decoder);
    assert_eq!(got.len(), 4);
    assert_eq!(value(got[0].as_ref().unwrap()), json!({ "ok": 1 }));
    for bad in &got[1..3] {
      let err = bad.as_ref().unwrap_err();
      assert_eq!(err.code(), "ERR_IPC_MALFORMED_MESSAGE");
    }
    assert_eq!(json(got[3].as_ref().unwrap()), "\"fine\"");
  }

  #[test]
  fn blank_lines_and_crlf_are_tolerated() {
    let mut decoder = decoder();
    decoder.feed(b"\n  \n1\r\n");
    assert_eq!(values(drain(&mut decoder)), vec![json!(1)]);
  }

  #[test]
  fn an_unfinished_message_waits_for_its_newline() {
    let mut decoder = decoder();
    decoder.feed(b"{\"a\":1}");
    assert_eq!(decoder.next_message(), None);
    decoder.feed(b"\n");
    let received = decoder.next_message().unwrap().unwrap();
    assert_eq!(value(&received), json!({ "a": 1 }));
  }

  #[test]
  fn the_text_is_passed_on_as_written() {
    let line = "{\"z\":1,\"a\":[2.50,\"\\u00e9\"],\"m\":{\"b\":0,\"a\":0}}";
    let mut decoder = decoder();
    decoder.feed(format!("{line}\n").as_bytes());
    let received = decoder.next_message().unwrap().unwrap();
    assert_eq!(json(&received), line);
    assert_eq!(value(&received)["a"][1], "é");
  }

  #[test]
  fn envelopes_have_the_documented_shape() {
    let read = |frame: Frame| {
      let bytes = bytes(frame);
      assert_eq!(bytes.last(), Some(&b'\n'));
      serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    let json = Serialization::Json;
    assert_eq!(read(json.ping()), json!({ "type": "ping" }));
    assert_eq!(read(json.shutdown()), json!({ "type": "shutdown" }));
    assert_eq!(
      read(json.cancel(9)),
      json!({ "tethered": "cancel", "id": 9 })
    );
    assert_eq!(
      read(json.request(7, br#"{"resize":[1,2]}"#).unwrap()),
      json!({ "tethered": "request", "id": 7, "body": { "resize": [1, 2] } })
    );
  }

  #[test]
  fn advanced_frames_carry_a_length_header() {
    let frame = Serialization::Advanced.frame(vec![7; 300]).unwrap();
    assert_eq!(frame.len(), 304);
    assert_eq!(bytes(frame)[..4], [0, 0, 1, 44]);
    let ping = bytes(Serialization::Advanced.ping());
    let mut decoder = Decoder::new(Serialization::Advanced, usize::MAX);
    decoder.feed(&ping);
    // A ping is not the supervisor's to consume: only pongs are.
    assert!(matches!(
      decoder.next_message(),
      Some(Ok(Received::User(_)))
    ));
  }

  #[test]
  fn pongs_and_node_internals_are_not_user_messages() {
    assert_eq!(incoming(json!({ "type": "pong" })), Received::Pong);
    assert_eq!(
      incoming(json!({ "type": "pong", "pid": 3 })),
      Received::Pong
    );
    assert_eq!(
      incoming(json!({ "cmd": "NODE_HANDLE", "type": "net.Socket" })),
      Received::NodeInternal
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
      assert!(
        matches!(incoming(user.clone()), Received::User(_)),
        "{user}"
      );
    }
  }

  #[test]
  fn responses_carry_a_result_or_an_error() {
    assert_eq!(
      incoming(json!({ "tethered": "response", "id": 3, "result": { "ok": true } })),
      Received::Response {
        id: 3,
        outcome: Ok(Some(Payload::Json(r#"{"ok":true}"#.into())))
      }
    );
    assert_eq!(
      incoming(json!({ "tethered": "response", "id": 4 })),
      Received::Response {
        id: 4,
        outcome: Ok(None)
      }
    );
    assert_eq!(
      incoming(json!({ "tethered": "response", "id": 5, "result": null, "error": null })),
      Received::Response {
        id: 5,
        outcome: Ok(Some(Payload::Json("null".into())))
      }
    );
    let Received::Response { id, outcome } =
      incoming(json!({ "tethered": "response", "id": 6, "error": { "message": "bad jpeg" } }))
    else {
      panic!("not a response")
    };
    let err = outcome.unwrap_err();
    assert_eq!(id, 6);
    assert_eq!(err.code(), "ERR_WORKER_REQUEST_FAILED");
    assert_eq!(err.to_string(), "bad jpeg");
    let Received::Response { outcome, .. } = incoming(json!({
      "tethered": "response", "id": 7, "error": { "message": "gone", "code": "ENOENT" }
    })) else {
      panic!("not a response")
    };
    assert_eq!(outcome.unwrap_err().code(), "ENOENT");
    let Received::Response { outcome, .. } =
      incoming(json!({ "tethered": "response", "id": 8, "error": "oops" }))
    else {
      panic!("not a response")
    };
    assert_eq!(outcome.unwrap_err().to_string(), "\"oops\"");
  }

  #[test]
  fn only_top_level_keys_count_however_they_are_spelled() {
    let sort = |line: &[u8]| parse_line(line);
    assert_eq!(sort(br#"{"t\u0079pe":"pong"}"#), Ok(Received::Pong));
    assert_eq!(
      sort(br#"{"type":"ping","type":"pong"}"#),
      Ok(Received::Pong)
    );
    assert!(matches!(
      sort(br#"{"type":"pong","type":"ping"}"#),
      Ok(Received::User(_))
    ));
    assert!(matches!(
      sort(br#"{"echo":{"type":"pong"}}"#),
      Ok(Received::User(_))
    ));
    assert!(matches!(
      sort(br#"[{"type":"pong"}]"#),
      Ok(Received::User(_))
    ));
    for user in [
      &br#""pong""#[..],
      b"12.5",
      b"-3",
      b"true",
      b"null",
      b"[]",
      b"{}",
    ] {
      assert!(matches!(sort(user), Ok(Received::User(_))));
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
      assert!(
        matches!(incoming(user.clone()), Received::User(_)),
        "{user}"
      );
    }
  }

  #[test]
  fn a_line_over_the_limit_is_refused_before_its_end_arrives() {
    let mut decoder = Decoder::new(Serialization::Json, 8);
    decoder.feed(b"[1,2,3]\n[1,2,");
    assert_eq!(
      values(vec![decoder.next_message().unwrap()]),
      [json!([1, 2, 3])]
    );
    assert_eq!(decoder.next_message(), None, "5 bytes so far");
    decoder.feed(b"333,4");
    assert_eq!(
      decoder.next_message(),
      Some(Err(Error::MessageTooLarge { limit: 8 }))
    );
    decoder.feed(&[b'x'; 100_000]);
    decoder.feed(b"\n[4]\n");
    assert_eq!(decoder.next_message(), None, "the stream is lost after it");
    assert_eq!(lines(&decoder).buffer.capacity(), 0, "and nothing is kept");
  }

  #[test]
  fn a_complete_line_over_the_limit_is_too_large_too() {
    let mut decoder = Decoder::new(Serialization::Json, 8);
    decoder.feed(b"[1,2,3,44]\n[5]\n");
    assert_eq!(
      drain(&mut decoder),
      [Err(Error::MessageTooLarge { limit: 8 })]
    );
    let mut decoder = Decoder::new(Serialization::Json, 8);
    decoder.feed(b"[1,2,34]\n");
    assert_eq!(values(drain(&mut decoder)), [json!([1, 2, 34])]);
  }
}

/// Property tests of the json decoder, fed as a worker's reader feeds it: a chunk, then every
/// message it completes. What the bytes fed so far should give is worked out by reading them
/// whole ([`properties::read_whole`]); after every chunk, exactly that must have come out.
#[cfg(test)]
mod properties {
  use proptest::prelude::*;
  use serde_json::{Map, Value};

  use super::*;
  use crate::test_support::{cuts, split};

  /// What a worker's reader gets from the decoder after each chunk, all in order.
  type Items = Vec<Result<Received, Error>>;

  /// Any JSON value, with strings of any characters (control characters, U+2028, astral
  /// planes) and objects that may use the envelope's keys, so some are sorted as tethered's.
  fn json_value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
      any::<String>(),
      prop::sample::select(vec!["pong", "response", "NODE_HANDLE", "NODE_", "héllo 👋🏽"])
        .prop_map(str::to_string),
    ];
    let leaf = prop_oneof![
      Just(Value::Null),
      any::<bool>().prop_map(Value::from),
      any::<i64>().prop_map(Value::from),
      any::<u64>().prop_map(Value::from),
      any::<f64>().prop_map(Value::from),
      text.clone().prop_map(Value::from),
    ];
    let key = prop_oneof![
      text,
      prop::sample::select(ENVELOPE_KEYS.to_vec()).prop_map(str::to_string),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
      prop_oneof![
        prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
        prop::collection::vec((key.clone(), inner), 0..6)
          .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
      ]
    })
  }

  /// One line as a worker may write it, without its newline: JSON text, a blank line, or bytes
  /// that are not JSON (invalid UTF-8 included).
  fn line() -> impl Strategy<Value = Vec<u8>> {
    let not_newline = any::<u8>().prop_filter("not a newline", |&b| b != b'\n');
    prop_oneof![
      6 => json_value().prop_map(|value| value.to_string().into_bytes()),
      1 => prop::collection::vec(prop::sample::select(b" \t\r\x0c".to_vec()), 0..4),
      2 => prop::collection::vec(not_newline, 1..24),
    ]
  }

  /// A stream of lines, the last one possibly unfinished.
  fn stream() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(line(), 0..8), any::<bool>()).prop_map(|(lines, finished)| {
      let mut stream = lines.join(&b'\n');
      if finished && !lines.is_empty() {
        stream.push(b'\n');
      }
      stream
    })
  }

  /// What `bytes` (all that arrived so far) give, read whole: each finished non-blank line
  /// checked and sorted, until a line — finished or not — longer than `limit`, which is one
  /// `MessageTooLarge` and the end of the stream.
  fn read_whole(bytes: &[u8], limit: usize) -> Items {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let unfinished = lines.pop().expect("split gives at least one piece");
    let mut items = Vec::new();
    for line in lines {
      if line.len() > limit {
        items.push(Err(Error::MessageTooLarge { limit }));
        return items;
      }
      if !line.iter().all(u8::is_ascii_whitespace) {
        items.push(parse_line(line));
      }
    }
    if unfinished.len() > limit {
      items.push(Err(Error::MessageTooLarge { limit }));
    }
    items
  }

  /// Feeds `pieces` one by one, draining after each, and checks after each that what came out
  /// is what the bytes so far give and that the decoder holds no more than it must.
  fn feed_and_check(pieces: &[&[u8]], limit: usize) -> Result<Items, TestCaseError> {
    let mut decoder = Decoder::new(Serialization::Json, limit);
    let mut got = Vec::new();
    let mut fed = Vec::new();
    for piece in pieces {
      decoder.feed(piece);
      fed.extend_from_slice(piece);
      got.extend(std::iter::from_fn(|| decoder.next_message()));
      prop_assert_eq!(&got, &read_whole(&fed, limit));
      let Decoder::Json(lines) = &decoder else {
        unreachable!()
      };
      if lines.too_large {
        prop_assert_eq!(lines.buffer.capacity(), 0, "kept bytes past a refused line");
      } else {
        // The unfinished line, within the limit, and what was read out of this piece.
        prop_assert!(lines.buffer.len() - lines.consumed <= limit);
        prop_assert!(lines.buffer.len() <= limit.saturating_add(piece.len()));
      }
    }
    Ok(got)
  }

  proptest! {
    /// Each value arrives as the text it was written, whatever the split (inside a multi-byte
    /// character included), with no limit in the way.
    #[test]
    fn messages_split_anywhere_arrive_as_written(
      values in prop::collection::vec(json_value(), 1..8),
      cuts in cuts(),
    ) {
      let texts: Vec<String> = values.iter().map(Value::to_string).collect();
      let stream: Vec<u8> = texts
        .iter()
        .flat_map(|text| Serialization::Json.frame(text.clone().into_bytes()).unwrap().parts().concat())
        .collect();
      let got = feed_and_check(&split(&stream, &cuts), usize::MAX)?;
      prop_assert_eq!(got.len(), texts.len());
      for (item, text) in got.iter().zip(&texts) {
        prop_assert!(item.is_ok(), "{:?} from {}", item, text);
        if let Ok(Received::User(payload)) = item {
          prop_assert_eq!(payload, &Payload::Json(text.clone()));
        }
      }
    }

    /// Any lines, split anywhere, under any limit: no panic; every message and every error
    /// (a malformed line, a line over the limit) comes out as soon as its bytes are in, in
    /// order; a line over the limit is refused once it passes the limit, before its end.
    #[test]
    fn any_lines_split_anywhere_give_what_they_hold(
      stream in stream(),
      cuts in cuts(),
      limit in prop_oneof![Just(usize::MAX), 0..40usize],
    ) {
      feed_and_check(&split(&stream, &cuts), limit)?;
    }

    /// Bytes of any kind, newlines sprinkled in: no panic, and the same agreement.
    #[test]
    fn any_bytes_split_anywhere_give_what_they_hold(
      stream in prop::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'\n')], 0..200),
      cuts in cuts(),
      limit in prop_oneof![Just(usize::MAX), 0..40usize],
    ) {
      feed_and_check(&split(&stream, &cuts), limit)?;
    }
  }
}
