//! Node's IPC channel in `advanced` serialization mode, as bytes: each message is a 4-byte
//! big-endian length, then that many bytes of a v8 `ValueSerializer` payload (header included),
//! written by Node's child-process serializer, which sends an `ArrayBufferView` as a host object
//! (`0`, then Node's own type index, length and bytes) and any other host object as `1` and a
//! plain copy of it.
//!
//! Why this side never builds a value: JavaScript deserializes every payload anyway (only V8 can
//! make a Map or a Buffer), so a payload is passed on as the bytes it arrived as — to JavaScript,
//! in one piece, with no copy past the one out of the socket. What the supervisor must know is
//! only which messages are its own (pongs, responses, Node's internal ones), and that is decided
//! by [`sniff`]: a walk over the payload that reads the few top-level fields of an envelope and
//! skips everything else by its length, without allocating — a 1 MiB Buffer is skipped in one
//! step. The walk keeps its nesting on a heap stack, so no payload can exhaust the thread's
//! stack; a payload it cannot follow is a malformed message, as a line that is not JSON is.
//!
//! The few messages tethered writes itself (ping, shutdown, cancel) are small objects of strings
//! and integers, encoded here. A request's envelope is serialized by JavaScript, with V8's own
//! serializer, around an id placeholder of fixed width ([`REQUEST_PREFIX`]); the id is written
//! into it here, once the request has one — so the body is serialized exactly once, by V8, and
//! object references inside it (which count objects from the start of the payload) stay right.

use std::borrow::Cow;

use super::{EnvelopeFields, Kind, Payload, Received, WorkerErrorField};
use crate::error::Error;

/// The largest message accepted from a worker whatever `maxMessageSize` says. Node's framing
/// allows up to 4 GiB; a length beyond this is taken for a broken or hostile stream rather than
/// honoured with the memory.
pub const MAX_MESSAGE: usize = 1 << 30;

/// Memory reserved at once for a message whose length header has arrived: a header claims, the
/// bytes prove, so a larger message grows its buffer as its bytes come.
const RESERVE_AT_ONCE: usize = 16 << 20;

/// The length header before every payload.
const HEADER: usize = 4;

/// The serialization format version written on tethered's own messages (what Node 20 and later
/// write; V8 reads every older version).
const FORMAT_VERSION: u8 = 15;

/// `{ tethered: 'request', id: <f64>` as V8 serializes it after its version header: the part
/// of a request's envelope that comes before the 8 bytes of the id.
pub const REQUEST_PREFIX: &[u8] = b"o\"\x08tethered\"\x07request\"\x02idN";

/// Turns the bytes read from the channel into payloads, then sorts them. Holds at most the
/// unfinished message; a complete one leaves as the `Vec` its bytes were gathered in.
#[derive(Debug)]
pub struct Decoder {
  /// The longest payload accepted, at most [`MAX_MESSAGE`].
  limit: usize,
  /// The length header of the next message, as far as it has arrived.
  header: [u8; HEADER],
  header_len: usize,
  /// The payload being gathered, once its header is complete.
  payload: Option<(Vec<u8>, usize)>,
  /// Complete payloads not handed out yet.
  ready: std::collections::VecDeque<Vec<u8>>,
  /// Set once a header claimed more than `limit`: the stream cannot be followed past it, so
  /// everything after is dropped (the error was reported once).
  lost: Option<usize>,
}

impl Default for Decoder {
  fn default() -> Self {
    Decoder::with_limit(MAX_MESSAGE)
  }
}

impl Decoder {
  /// A decoder that refuses payloads longer than `limit` bytes (or [`MAX_MESSAGE`]).
  pub fn with_limit(limit: usize) -> Self {
    Decoder {
      limit: limit.min(MAX_MESSAGE),
      header: [0; HEADER],
      header_len: 0,
      payload: None,
      ready: Default::default(),
      lost: None,
    }
  }

  /// Adds bytes read from the channel; any split is fine.
  pub fn feed(&mut self, mut chunk: &[u8]) {
    while !chunk.is_empty() && self.lost.is_none() {
      match &mut self.payload {
        None => {
          let take = (HEADER - self.header_len).min(chunk.len());
          self.header[self.header_len..self.header_len + take].copy_from_slice(&chunk[..take]);
          self.header_len += take;
          chunk = &chunk[take..];
          if self.header_len == HEADER {
            self.header_len = 0;
            let len = u32::from_be_bytes(self.header) as usize;
            if len > self.limit {
              self.lost = Some(len);
            } else {
              let payload = Vec::with_capacity(len.min(RESERVE_AT_ONCE));
              self.payload = Some((payload, len));
            }
          }
        }
        Some((payload, len)) => {
          let take = (*len - payload.len()).min(chunk.len());
          // Grow by doubling, but never past the length the header gave (itself within the
          // limit): the buffer never holds more than the message it is for.
          if payload.capacity() - payload.len() < take {
            let wanted = (payload.capacity() * 2).max(payload.len() + take).min(*len);
            payload.reserve_exact(wanted - payload.len());
          }
          payload.extend_from_slice(&chunk[..take]);
          chunk = &chunk[take..];
        }
      }
      if let Some((payload, len)) = &self.payload {
        if payload.len() == *len {
          let (payload, _) = self.payload.take().expect("checked above");
          self.ready.push_back(payload);
        }
      }
    }
  }

  /// The next complete message, in order, or `None` until more bytes are fed. A payload that
  /// cannot be followed is an `Err` item, and so, once, is a length over the limit
  /// ([`Error::MessageTooLarge`]).
  pub fn next_message(&mut self) -> Option<Result<Received, Error>> {
    if let Some(payload) = self.ready.pop_front() {
      return Some(sort(payload));
    }
    self.lost.filter(|&len| len != usize::MAX)?;
    // Reported once; `usize::MAX` marks it told.
    self.lost = Some(usize::MAX);
    Some(Err(Error::MessageTooLarge { limit: self.limit }))
  }
}

/// What one payload is, with the payload itself where it must reach JavaScript.
fn sort(payload: Vec<u8>) -> Result<Received, Error> {
  let fields = sniff(&payload).map_err(|reason| Error::MalformedMessage {
    reason: format!("an advanced-serialization payload {reason}"),
  })?;
  Ok(match fields.map_or(Kind::User, |fields| fields.kind()) {
    Kind::User => Received::User(Payload::Advanced(payload)),
    Kind::Pong => Received::Pong,
    Kind::NodeInternal => Received::NodeInternal,
    // The result stays inside the whole response, which JavaScript deserializes: it cannot be
    // cut out, as object references count from the start of the payload.
    Kind::Response { id, error: None } => Received::Response {
      id,
      outcome: Ok(Some(Payload::Advanced(payload))),
    },
    Kind::Response {
      id,
      error: Some(error),
    } => Received::Response {
      id,
      outcome: Err(error),
    },
  })
}

/// The frame of `payload`: its length header. `Err` for a payload Node's framing cannot carry.
pub fn header(payload: &[u8]) -> Result<[u8; HEADER], Error> {
  u32::try_from(payload.len())
    .map(u32::to_be_bytes)
    .map_err(|_| Error::MalformedMessage {
      reason: format!(
        "a message of {} bytes is over the 4 GiB Node's framing can carry",
        payload.len()
      ),
    })
}

/// A field of a message tethered writes itself.
pub enum Field<'a> {
  Str(&'a str),
  Int(u64),
}

/// The payload of a plain object of `fields`, as V8 would serialize it.
pub fn object(fields: &[(&str, Field)]) -> Vec<u8> {
  let mut out = vec![0xFF, FORMAT_VERSION, b'o'];
  for (key, value) in fields {
    one_byte_string(&mut out, key);
    match value {
      Field::Str(s) => one_byte_string(&mut out, s),
      // Integers beyond an int32 are doubles in V8, exact up to 2^53 (every id is below).
      Field::Int(n) => match i32::try_from(*n) {
        Ok(n) => {
          out.push(b'I');
          varint(&mut out, ((n << 1) ^ (n >> 31)) as u32 as u64);
        }
        Err(_) => {
          out.push(b'N');
          out.extend_from_slice(&(*n as f64).to_le_bytes());
        }
      },
    }
  }
  out.push(b'{');
  varint(&mut out, fields.len() as u64);
  out
}

/// `s`, ASCII, as a one-byte string.
fn one_byte_string(out: &mut Vec<u8>, s: &str) {
  debug_assert!(s.is_ascii());
  out.push(b'"');
  varint(out, s.len() as u64);
  out.extend_from_slice(s.as_bytes());
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
  while n >= 0x80 {
    out.push((n as u8) | 0x80);
    n >>= 7;
  }
  out.push(n as u8);
}

/// A request's payload: `envelope`, serialized by JavaScript as `{ tethered: 'request', id,
/// body }` with a double for `id`, with `id` written into it.
pub fn request(id: u64, envelope: &[u8]) -> Result<Vec<u8>, Error> {
  let not_an_envelope = || Error::MalformedMessage {
    reason: "a request's payload is not a tethered request envelope".into(),
  };
  let mut reader = Reader::new(envelope);
  reader.version().map_err(|_| not_an_envelope())?;
  let at = reader.pos + REQUEST_PREFIX.len();
  if envelope.get(reader.pos..at) != Some(REQUEST_PREFIX) || envelope.len() < at + 8 {
    return Err(not_an_envelope());
  }
  let mut payload = envelope.to_vec();
  payload[at..at + 8].copy_from_slice(&(id as f64).to_le_bytes());
  Ok(payload)
}

/// Why a payload could not be followed.
type Malformed = &'static str;

/// Reads the envelope fields of a payload whose top-level value is a plain object (`None` for
/// any other value), checking that the payload can be followed to its end.
fn sniff(payload: &[u8]) -> Result<Option<EnvelopeFields>, Malformed> {
  let mut reader = Reader::new(payload);
  reader.version()?;
  let fields = match reader.tag()? {
    b'o' => {
      let mut fields = EnvelopeFields::default();
      reader.object_fields(|reader, key| {
        match key {
          "cmd" => fields.cmd = reader.scalar()?.into_string(),
          "type" => fields.kind = reader.scalar()?.into_string(),
          "tethered" => fields.tethered = reader.scalar()?.into_string(),
          "id" => fields.id = reader.scalar()?.request_id(),
          "error" => fields.error = reader.error_field()?,
          _ => reader.skip_value()?,
        }
        Ok(())
      })?;
      Some(fields)
    }
    tag => {
      reader.skip_from(tag)?;
      None
    }
  };
  if reader.pos != payload.len() {
    return Err("has bytes after its value");
  }
  Ok(fields)
}

/// A value as far as the envelope needs it.
enum Scalar<'a> {
  Str(Cow<'a, str>),
  Number(f64),
  Bool(bool),
  /// `null` or `undefined`.
  Nothing,
  /// An object, array or anything else not read.
  Other,
}

impl Scalar<'_> {
  fn into_string(self) -> Option<String> {
    match self {
      Scalar::Str(s) => Some(s.into_owned()),
      _ => None,
    }
  }

  /// A positive safe integer, as a request id must be.
  fn request_id(self) -> Option<u64> {
    match self {
      Scalar::Number(n) if (1.0..=9_007_199_254_740_991.0).contains(&n) && n.fract() == 0.0 => {
        Some(n as u64)
      }
      _ => None,
    }
  }

  /// How a non-object error is shown, as JSON would write it.
  fn describe(&self) -> String {
    match self {
      Scalar::Str(s) => serde_json::Value::String(s.to_string()).to_string(),
      Scalar::Number(n) => n.to_string(),
      Scalar::Bool(b) => b.to_string(),
      Scalar::Nothing => "null".into(),
      Scalar::Other => "a value that is not an Error".into(),
    }
  }
}

/// Where a container's items end, and what follows each.
#[derive(Clone, Copy, PartialEq)]
enum Open {
  Object,
  SparseArray,
  DenseArray,
  Map,
  Set,
  Error,
}

struct Reader<'a> {
  bytes: &'a [u8],
  pos: usize,
  version: u64,
}

impl<'a> Reader<'a> {
  fn new(bytes: &'a [u8]) -> Self {
    Reader {
      bytes,
      pos: 0,
      version: 0,
    }
  }

  fn byte(&mut self) -> Result<u8, Malformed> {
    let byte = *self.bytes.get(self.pos).ok_or("ends early")?;
    self.pos += 1;
    Ok(byte)
  }

  fn peek(&self) -> Option<u8> {
    self.bytes.get(self.pos).copied()
  }

  fn take(&mut self, n: u64) -> Result<&'a [u8], Malformed> {
    let end = usize::try_from(n)
      .ok()
      .and_then(|n| self.pos.checked_add(n))
      .filter(|&end| end <= self.bytes.len())
      .ok_or("ends early")?;
    let taken = &self.bytes[self.pos..end];
    self.pos = end;
    Ok(taken)
  }

  fn varint(&mut self) -> Result<u64, Malformed> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
      let byte = self.byte()?;
      n |= u64::from(byte & 0x7F) << shift;
      if byte & 0x80 == 0 {
        return Ok(n);
      }
    }
    Err("has a varint that does not end")
  }

  fn double(&mut self) -> Result<f64, Malformed> {
    let bytes = self.take(8)?;
    Ok(f64::from_le_bytes(bytes.try_into().expect("8 bytes")))
  }

  /// The version header, which every payload Node writes starts with.
  fn version(&mut self) -> Result<(), Malformed> {
    if self.byte()? != 0xFF {
      return Err("has no version header");
    }
    self.version = self.varint()?;
    Ok(())
  }

  /// The next tag, past the padding V8 puts before aligned data.
  fn tag(&mut self) -> Result<u8, Malformed> {
    loop {
      match self.byte()? {
        0 => {}
        tag => return Ok(tag),
      }
    }
  }

  /// The string whose tag was just read, if `tag` is a string's.
  fn string(&mut self, tag: u8) -> Result<Option<Cow<'a, str>>, Malformed> {
    Ok(Some(match tag {
      b'"' => {
        let bytes = self.take_len()?;
        match std::str::from_utf8(bytes) {
          Ok(ascii) if bytes.is_ascii() => Cow::Borrowed(ascii),
          _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
        }
      }
      b'S' => Cow::Owned(String::from_utf8_lossy(self.take_len()?).into_owned()),
      b'c' => {
        let bytes = self.take_len()?;
        let units = bytes
          .chunks_exact(2)
          .map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
        Cow::Owned(
          char::decode_utf16(units)
            .map(|c| c.unwrap_or('\u{FFFD}'))
            .collect(),
        )
      }
      _ => return Ok(None),
    }))
  }

  fn take_len(&mut self) -> Result<&'a [u8], Malformed> {
    let len = self.varint()?;
    self.take(len)
  }

  /// The next value if it is a string, number, boolean, null or undefined; any other value is
  /// skipped and is [`Scalar::Other`].
  fn scalar(&mut self) -> Result<Scalar<'a>, Malformed> {
    let tag = self.tag()?;
    self.scalar_from(tag)
  }

  /// [`Reader::scalar`] of the value whose tag was just read.
  fn scalar_from(&mut self, tag: u8) -> Result<Scalar<'a>, Malformed> {
    if let Some(s) = self.string(tag)? {
      return Ok(Scalar::Str(s));
    }
    Ok(match tag {
      b'I' => {
        let n = self.varint()? as u32;
        Scalar::Number(f64::from((n >> 1) as i32 ^ -((n & 1) as i32)))
      }
      b'U' => Scalar::Number(f64::from(self.varint()? as u32)),
      b'N' => Scalar::Number(self.double()?),
      b'T' => Scalar::Bool(true),
      b'F' => Scalar::Bool(false),
      b'0' | b'_' => Scalar::Nothing,
      tag => {
        self.skip_from(tag)?;
        Scalar::Other
      }
    })
  }

  /// The key/value pairs of the plain object whose `o` was just read, to its end: `field` is
  /// called with each string key and must read that key's value.
  fn object_fields(
    &mut self,
    mut field: impl FnMut(&mut Self, &str) -> Result<(), Malformed>,
  ) -> Result<(), Malformed> {
    loop {
      let tag = self.tag()?;
      if tag == b'{' {
        self.varint()?;
        return Ok(());
      }
      match self.string(tag)? {
        Some(key) => field(self, &key)?,
        // A number key (`{ 1: x }`) is none of the envelope's.
        None => {
          self.skip_from(tag)?;
          self.skip_value()?;
        }
      }
    }
  }

  /// A response's `error`: `None` when absent, null or undefined; an object's `message` and
  /// `code`, or an `Error`'s message; anything else shown as JSON would show it.
  fn error_field(&mut self) -> Result<Option<WorkerErrorField>, Malformed> {
    let mut error = WorkerErrorField::default();
    match self.tag()? {
      b'o' => self.object_fields(|reader, key| {
        match key {
          "message" => error.message = reader.scalar()?.into_string(),
          "code" => error.code = reader.scalar()?.into_string(),
          _ => reader.skip_value()?,
        }
        Ok(())
      })?,
      b'r' => error.message = self.error_object()?,
      tag => match self.scalar_from(tag)? {
        Scalar::Nothing => return Ok(None),
        other => error.shown = other.describe(),
      },
    }
    if error.shown.is_empty() {
      error.shown = "an error without a message".into();
    }
    Ok(Some(error))
  }

  /// The message of the `Error` whose `r` was just read, read to its end.
  fn error_object(&mut self) -> Result<Option<String>, Malformed> {
    let mut message = None;
    loop {
      match self.byte()? {
        // The prototype: EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError.
        b'E' | b'R' | b'F' | b'S' | b'T' | b'U' => {}
        b'm' => message = self.scalar()?.into_string(),
        b's' | b'c' => self.skip_value()?,
        b'.' => return Ok(message),
        _ => return Err("has an Error it cannot follow"),
      }
    }
  }

  fn skip_value(&mut self) -> Result<(), Malformed> {
    let tag = self.tag()?;
    self.skip_from(tag)
  }

  /// Skips the value whose tag was just read, with everything inside it. Nesting is kept on a
  /// heap stack, not the thread's.
  fn skip_from(&mut self, first: u8) -> Result<(), Malformed> {
    let mut open: Vec<Open> = Vec::new();
    let mut tag = first;
    loop {
      self.skip_one(tag, &mut open)?;
      // Close what ends here, until a value follows or nothing is open.
      loop {
        let Some(&top) = open.last() else {
          return Ok(());
        };
        if top == Open::Error {
          match self.byte()? {
            b'E' | b'R' | b'F' | b'S' | b'T' | b'U' => continue,
            b'm' | b's' | b'c' => {
              tag = self.tag()?;
              break;
            }
            b'.' => {
              open.pop();
              continue;
            }
            _ => return Err("has an Error it cannot follow"),
          }
        }
        let next = self.tag()?;
        let ends = match (top, next) {
          (Open::Object, b'{') | (Open::Map, b':') | (Open::Set, b',') => 1,
          (Open::SparseArray, b'@') | (Open::DenseArray, b'$') => 2,
          _ => 0,
        };
        if ends == 0 {
          tag = next;
          break;
        }
        for _ in 0..ends {
          self.varint()?;
        }
        open.pop();
      }
    }
  }

  /// Reads what belongs to `tag` itself; a container is pushed on `open`, to be closed by its
  /// end tag.
  fn skip_one(&mut self, tag: u8, open: &mut Vec<Open>) -> Result<(), Malformed> {
    if self.string(tag)?.is_some() {
      return Ok(());
    }
    match tag {
      // undefined, null, true, false, the hole of a dense array, Boolean objects.
      b'_' | b'0' | b'T' | b'F' | b'-' | b'y' | b'x' => {}
      // int32, uint32, object reference, transferred or shared buffers.
      b'I' | b'U' | b't' | b'u' | b'p' => {
        self.varint()?;
        self.array_buffer_view()?;
      }
      // double, Date, Number object.
      b'N' | b'D' | b'n' => {
        self.double()?;
      }
      b'^' => {
        self.varint()?;
        self.array_buffer_view()?;
      }
      // BigInt and BigInt object: a bit field whose upper bits are the length of the digits.
      b'Z' | b'z' => {
        let bitfield = self.varint()?;
        self.take(bitfield >> 1)?;
      }
      // String object.
      b's' => {
        let inner = self.tag()?;
        self
          .string(inner)?
          .ok_or("has a String object it cannot follow")?;
      }
      // RegExp: its source, then its flags.
      b'R' => {
        let inner = self.tag()?;
        self.string(inner)?.ok_or("has a RegExp it cannot follow")?;
        self.varint()?;
      }
      b'B' => {
        self.take_len()?;
        self.array_buffer_view()?;
      }
      // Resizable ArrayBuffer: length, maximum length, bytes.
      b'~' => {
        let len = self.varint()?;
        self.varint()?;
        self.take(len)?;
        self.array_buffer_view()?;
      }
      // Node's host objects: a view's type, length and bytes, or a plain copy of the object.
      b'\\' => match self.varint()? {
        0 => {
          self.varint()?;
          self.take_len()?;
        }
        1 => {
          let inner = self.tag()?;
          self.skip_one(inner, open)?;
        }
        _ => return Err("has a host object it cannot follow"),
      },
      b'o' => open.push(Open::Object),
      b';' => open.push(Open::Map),
      b'\'' => open.push(Open::Set),
      b'a' => {
        self.varint()?;
        open.push(Open::SparseArray);
      }
      b'A' => {
        self.varint()?;
        open.push(Open::DenseArray);
      }
      b'r' => open.push(Open::Error),
      _ => return Err("has a tag it cannot follow"),
    }
    Ok(())
  }

  /// The view V8 writes right after the buffer it looks into, if there is one.
  fn array_buffer_view(&mut self) -> Result<(), Malformed> {
    if self.peek() != Some(b'V') {
      return Ok(());
    }
    self.pos += 1;
    // Its type, byte offset and byte length; from format version 14 on, its flags too.
    let fields = if self.version >= 14 { 4 } else { 3 };
    for _ in 0..fields {
      self.varint()?;
    }
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// `payload` as it crosses the channel.
  fn frame(payload: &[u8]) -> Vec<u8> {
    [&header(payload).unwrap()[..], payload].concat()
  }

  fn drain(decoder: &mut Decoder) -> Vec<Result<Received, Error>> {
    std::iter::from_fn(|| decoder.next_message()).collect()
  }

  fn user(payload: &[u8]) -> Received {
    Received::User(Payload::Advanced(payload.to_vec()))
  }

  fn kind(payload: &[u8]) -> Received {
    sort(payload.to_vec()).unwrap()
  }

  // Each of these is what `new ChildProcessSerializer()` of Node 20 wrote for the value named.
  /// `{ type: 'pong' }`
  const PONG: &[u8] = b"\xff\x0fo\"\x04type\"\x04pong{\x01";
  /// `{ cmd: 'NODE_HANDLE', type: 'net.Socket' }`
  const NODE_HANDLE: &[u8] = b"\xff\x0fo\"\x03cmd\"\x0bNODE_HANDLE\"\x04type\"\x0anet.Socket{\x02";
  /// `{ tethered: 'response', id: 3, result: Buffer.from('hi') }`
  const RESPONSE: &[u8] =
    b"\xff\x0fo\"\x08tethered\"\x08response\"\x02idI\x06\"\x06result\\\x00\x0a\x02hi{\x03";
  /// `{ tethered: 'response', id: 4, error: { message: 'bad jpeg', code: 'EJPEG' } }`
  const FAILED: &[u8] = b"\xff\x0fo\"\x08tethered\"\x08response\"\x02idI\x08\"\x05erroro\"\x07message\"\x08bad jpeg\"\x04code\"\x05EJPEG{\x02{\x03";

  #[test]
  fn payloads_of_any_split_arrive_whole_and_in_order() {
    let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
    let payloads = [PONG.to_vec(), big, RESPONSE.to_vec(), FAILED.to_vec()];
    let bytes: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
    for step in [1, 2, 3, 5, 4096, 65_537, bytes.len()] {
      let mut decoder = Decoder::default();
      let mut got = Vec::new();
      for chunk in bytes.chunks(step) {
        decoder.feed(chunk);
        got.extend(drain(&mut decoder));
      }
      assert_eq!(got.len(), 4, "step {step}");
      assert_eq!(got[0], Ok(Received::Pong));
      // Not a v8 payload at all: malformed, and the next message is unaffected.
      assert_eq!(
        got[1].as_ref().unwrap_err().code(),
        "ERR_IPC_MALFORMED_MESSAGE"
      );
      assert!(matches!(&got[2], Ok(Received::Response { id: 3, .. })));
      assert!(matches!(
        &got[3],
        Ok(Received::Response {
          id: 4,
          outcome: Err(_)
        })
      ));
    }
  }

  #[test]
  fn a_partial_header_waits_for_the_rest() {
    let bytes = frame(PONG);
    let mut decoder = Decoder::default();
    decoder.feed(&bytes[..2]);
    assert_eq!(decoder.next_message(), None);
    decoder.feed(&bytes[2..4]);
    assert_eq!(decoder.next_message(), None);
    decoder.feed(&bytes[4..bytes.len() - 1]);
    assert_eq!(decoder.next_message(), None);
    decoder.feed(&bytes[bytes.len() - 1..]);
    assert_eq!(decoder.next_message(), Some(Ok(Received::Pong)));
    assert_eq!(decoder.next_message(), None);
  }

  #[test]
  fn an_empty_payload_is_malformed_and_does_not_stall_the_stream() {
    let mut decoder = Decoder::default();
    decoder.feed(&[0, 0, 0, 0]);
    decoder.feed(&frame(PONG));
    let got = drain(&mut decoder);
    assert_eq!(got.len(), 2);
    assert!(got[0].is_err());
    assert_eq!(got[1], Ok(Received::Pong));
  }

  #[test]
  fn an_oversize_length_is_reported_once_and_nothing_is_reserved_for_it() {
    let mut decoder = Decoder::default();
    decoder.feed(&frame(PONG));
    let over = u32::try_from(MAX_MESSAGE + 1).unwrap().to_be_bytes();
    decoder.feed(&over);
    decoder.feed(&[0xAB; 100_000]);
    decoder.feed(&frame(PONG));
    let got = drain(&mut decoder);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], Ok(Received::Pong));
    let err = got[1].as_ref().unwrap_err();
    assert_eq!(err.code(), "ERR_IPC_MESSAGE_TOO_LARGE");
    decoder.feed(&frame(PONG));
    assert_eq!(
      decoder.next_message(),
      None,
      "reported once; the stream is lost"
    );
    assert!(decoder.payload.is_none());
  }

  #[test]
  fn a_large_length_grows_its_buffer_as_bytes_come() {
    let mut decoder = Decoder::default();
    let len = u32::try_from(MAX_MESSAGE).unwrap();
    decoder.feed(&len.to_be_bytes());
    let (payload, expected) = decoder.payload.as_ref().unwrap();
    assert_eq!(*expected, MAX_MESSAGE);
    assert!(payload.capacity() <= RESERVE_AT_ONCE);
  }

  #[test]
  fn envelopes_are_sorted_like_json_ones() {
    assert_eq!(kind(PONG), Received::Pong);
    assert_eq!(kind(NODE_HANDLE), Received::NodeInternal);
    assert_eq!(
      kind(RESPONSE),
      Received::Response {
        id: 3,
        outcome: Ok(Some(Payload::Advanced(RESPONSE.to_vec())))
      }
    );
    let Received::Response { id: 4, outcome } = kind(FAILED) else {
      panic!("not a response")
    };
    let err = outcome.unwrap_err();
    assert_eq!(err.code(), "EJPEG");
    assert_eq!(err.to_string(), "bad jpeg");
  }

  #[test]
  fn user_messages_pass_untouched() {
    // `{ type: 'ping' }`, `'pong'`, `[{ type: 'pong' }]`, `new Map([['type', 'pong']])`.
    for payload in [
      &b"\xff\x0fo\"\x04type\"\x04ping{\x01"[..],
      b"\xff\x0f\"\x04pong",
      b"\xff\x0fA\x01o\"\x04type\"\x04pong{\x01$\x00\x01",
      b"\xff\x0f;\"\x04type\"\x04pong:\x02",
    ] {
      assert_eq!(kind(payload), user(payload));
    }
  }

  #[test]
  fn ids_are_positive_safe_integers_however_written() {
    let response = |id: &[u8]| {
      [
        &b"\xff\x0fo\"\x08tethered\"\x08response\"\x02id"[..],
        id,
        b"{\x02",
      ]
      .concat()
    };
    assert!(matches!(
      kind(&response(b"I\x02")),
      Received::Response { id: 1, .. }
    ));
    assert!(matches!(
      kind(&response(b"U\x05")),
      Received::Response { id: 5, .. }
    ));
    let big = [&b"N"[..], &(4_294_967_296f64).to_le_bytes()].concat();
    assert!(matches!(
      kind(&response(&big)),
      Received::Response {
        id: 4_294_967_296,
        ..
      }
    ));
    for not_an_id in [
      &b"I\x00"[..],
      b"I\x01",
      b"\"\x011",
      &[&b"N"[..], &1.5f64.to_le_bytes()].concat(),
    ] {
      let payload = response(not_an_id);
      assert_eq!(kind(&payload), user(&payload));
    }
  }

  #[test]
  fn nested_values_of_every_kind_are_skipped() {
    // `{ a: [1, , 'x'], m: new Map([[1n, new Set([new Date(0)])]]), r: /x/g, e: new Error('e'),
    //    f: new Float64Array(2), s: new String('s'), o: { deep: { deeper: {} } },
    //    tethered: 'response', id: 9 }`
    let payload: &[u8] = b"\xff\x0fo\"\x01aA\x03I\x02-\"\x01x$\x00\x03\"\x01m;Z\x10\x01\x00\x00\x00\x00\x00\x00\x00'D\x00\x00\x00\x00\x00\x00\x00\x00,\x01:\x02\"\x01rR\"\x01x\x01\"\x01er\x6d\"\x01e.\"\x01f\\\x00\x05\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\"\x01ss\"\x01s\"\x01oo\"\x04deepo\"\x06deepero{\x00{\x01{\x01\"\x08tethered\"\x08response\"\x02idI\x12{\x09";
    assert!(matches!(kind(payload), Received::Response { id: 9, .. }));
  }

  #[test]
  fn deep_nesting_does_not_use_the_threads_stack() {
    let depth = 1_000_000;
    let mut payload = b"\xff\x0f".to_vec();
    payload.extend(std::iter::repeat_n(*b"A\x01", depth).flatten());
    payload.push(b'0');
    payload.extend(std::iter::repeat_n(*b"$\x00\x01", depth).flatten());
    assert_eq!(kind(&payload), user(&payload));
  }

  #[test]
  fn payloads_that_cannot_be_followed_are_malformed() {
    for bad in [
      &b""[..],
      b"\x0fo{\x00",
      b"\xff\x0fo\"\x04type",
      b"\xff\x0fo\"\x04type\"\x04pong",
      b"\xff\x0f\"\xff\xff\xff\xff\x0fx",
      b"\xff\x0f!",
      b"\xff\x0fI\x02extra",
    ] {
      let err = sort(bad.to_vec()).unwrap_err();
      assert_eq!(err.code(), "ERR_IPC_MALFORMED_MESSAGE", "{bad:?}");
    }
  }

  #[test]
  fn written_objects_read_back() {
    let ping = object(&[("type", Field::Str("ping"))]);
    assert_eq!(ping, b"\xff\x0fo\"\x04type\"\x04ping{\x01");
    let cancel = object(&[("tethered", Field::Str("cancel")), ("id", Field::Int(3))]);
    assert_eq!(
      cancel,
      b"\xff\x0fo\"\x08tethered\"\x06cancel\"\x02idI\x06{\x02"
    );
    let far = object(&[("id", Field::Int(1 << 40))]);
    let fields = sniff(&far).unwrap().unwrap();
    assert_eq!(fields.id, Some(1 << 40));
  }

  #[test]
  fn a_request_gets_its_id_written_in() {
    // `{ tethered: 'request', id: 0.5, body: Buffer.from('hi') }` from JavaScript.
    let envelope: &[u8] = b"\xff\x0fo\"\x08tethered\"\x07request\"\x02idN\x00\x00\x00\x00\x00\x00\xe0\x3f\"\x04body\\\x00\x0a\x02hi{\x03";
    let payload = request(12, envelope).unwrap();
    assert_eq!(payload.len(), envelope.len());
    let fields = sniff(&payload).unwrap().unwrap();
    assert_eq!(fields.id, Some(12));
    assert_eq!(fields.tethered.as_deref(), Some("request"));
    for wrong in [
      &envelope[..30],
      PONG,
      b"\xff\x0fo\"\x08tethered\"\x07request\"\x02idI\x02{\x02",
    ] {
      assert!(request(1, wrong).is_err());
    }
  }

  #[test]
  fn a_length_over_the_given_limit_is_too_large() {
    let mut decoder = Decoder::with_limit(PONG.len() - 1);
    decoder.feed(&frame(PONG));
    assert_eq!(
      drain(&mut decoder),
      [Err(Error::MessageTooLarge {
        limit: PONG.len() - 1
      })]
    );
    let mut decoder = Decoder::with_limit(PONG.len());
    decoder.feed(&frame(PONG));
    assert_eq!(drain(&mut decoder), [Ok(Received::Pong)]);
  }
}

/// Property tests of the advanced decoder, fed as a worker's reader feeds it: a chunk, then
/// every message it completes. Payloads are built the way V8's serializer lays values out, so
/// the walk in [`sniff`] meets every kind of value it must skip; hostile streams mix them with
/// payloads tampered with, random bytes and lengths over the limit.
#[cfg(test)]
mod properties {
  use proptest::prelude::*;
  use proptest::sample::Index;

  use super::*;
  use crate::test_support::{cuts, split};

  /// What a worker's reader gets from the decoder after each chunk, all in order.
  type Items = Vec<Result<Received, Error>>;

  fn varint_of(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(&mut out, n);
    out
  }

  fn tagged(tag: u8, n: u64) -> Vec<u8> {
    [vec![tag], varint_of(n)].concat()
  }

  /// An int32 as V8 writes it: `I`, then the number zigzag-encoded.
  fn int32(n: i32) -> Vec<u8> {
    tagged(b'I', ((n << 1) ^ (n >> 31)) as u32 as u64)
  }

  /// A tag, then the length of `bytes` and `bytes`.
  fn with_len(tag: u8, bytes: &[u8]) -> Vec<u8> {
    [tagged(tag, bytes.len() as u64), bytes.to_vec()].concat()
  }

  fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
  }

  /// A string in each of V8's three forms: one-byte (Latin-1), two-byte (UTF-16, after the
  /// padding V8 may put before it), and the UTF-8 form older versions wrote.
  fn string() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec!["pong", "response", "NODE_HANDLE", "type", "id"]);
    prop_oneof![
      known.prop_map(|s| with_len(b'"', s.as_bytes())),
      bytes(12).prop_map(|latin1| with_len(b'"', &latin1)),
      (any::<String>(), any::<bool>()).prop_map(|(s, padded)| {
        let units: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        [&[0][..usize::from(padded)], &with_len(b'c', &units)].concat()
      }),
      any::<String>().prop_map(|s| with_len(b'S', s.as_bytes())),
    ]
  }

  /// A value that holds no other value (a String object or an Error holds a string only).
  fn leaf() -> impl Strategy<Value = Vec<u8>> {
    let double = |tag: u8| any::<f64>().prop_map(move |n| [&[tag][..], &n.to_le_bytes()].concat());
    prop_oneof![
      prop::sample::select(vec![b'_', b'0', b'T', b'F']).prop_map(|tag| vec![tag]),
      any::<i32>().prop_map(int32),
      any::<u32>().prop_map(|n| tagged(b'U', n.into())),
      double(b'N'),
      double(b'D'),
      string(),
      // BigInt: sign bit, then the digits' byte length.
      (any::<bool>(), bytes(16)).prop_map(|(negative, digits)| {
        let bitfield = (digits.len() as u64) << 1 | u64::from(negative);
        [tagged(b'Z', bitfield), digits].concat()
      }),
      // A Buffer or typed array, as Node's serializer writes it: a host object.
      (0..12u64, bytes(24)).prop_map(|(kind, data)| {
        [
          tagged(b'\\', 0),
          varint_of(kind),
          varint_of(data.len() as u64),
          data,
        ]
        .concat()
      }),
      // An ArrayBuffer, possibly with a view into it.
      (bytes(16), any::<bool>()).prop_map(|(data, viewed)| {
        let view: &[u8] = if viewed { b"V?\x00\x02\x00" } else { b"" };
        [with_len(b'B', &data), view.to_vec()].concat()
      }),
      any::<u8>().prop_map(|n| tagged(b'^', n.into())),
      (string(), any::<u8>()).prop_map(|(source, flags)| [
        vec![b'R'],
        source,
        varint_of(flags.into())
      ]
      .concat()),
      string().prop_map(|s| [vec![b's'], s].concat()),
      (prop::sample::select(b"ERFSTU".to_vec()), string()).prop_map(|(prototype, message)| {
        [vec![b'r', prototype, b'm'], message, vec![b'.']].concat()
      }),
    ]
  }

  /// Any value V8 could write, containers nested in containers.
  fn value() -> impl Strategy<Value = Vec<u8>> {
    leaf().prop_recursive(3, 32, 5, |inner| {
      let key = prop_oneof![string(), any::<i32>().prop_map(int32)];
      prop_oneof![
        prop::collection::vec((key, inner.clone()), 0..5).prop_map(|fields| {
          let n = fields.len() as u64;
          [
            vec![b'o'],
            fields
              .into_iter()
              .flat_map(|(k, v)| [k, v].concat())
              .collect(),
            tagged(b'{', n),
          ]
          .concat()
        }),
        prop::collection::vec(prop_oneof![inner.clone(), Just(vec![b'-'])], 0..5).prop_map(
          |items| {
            let n = items.len() as u64;
            [
              tagged(b'A', n),
              items.concat(),
              tagged(b'$', 0),
              varint_of(n),
            ]
            .concat()
          }
        ),
        // A sparse array: index/value pairs, in an array longer than any u16 index.
        prop::collection::vec((any::<u16>(), inner.clone()), 0..5).prop_map(|items| {
          let n = items.len() as u64;
          let pairs: Vec<u8> = items
            .into_iter()
            .flat_map(|(index, v)| [tagged(b'U', index.into()), v].concat())
            .collect();
          [
            tagged(b'a', 1 << 16),
            pairs,
            tagged(b'@', n),
            varint_of(1 << 16),
          ]
          .concat()
        }),
        prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(|entries| {
          let n = entries.len() as u64;
          [
            vec![b';'],
            entries
              .into_iter()
              .flat_map(|(k, v)| [k, v].concat())
              .collect(),
            tagged(b':', 2 * n),
          ]
          .concat()
        }),
        prop::collection::vec(inner, 0..4).prop_map(|items| {
          let n = items.len() as u64;
          [vec![b'\''], items.concat(), tagged(b',', n)].concat()
        }),
      ]
    })
  }

  /// A top-level object with the envelope's keys, so that pongs, responses (with ids and
  /// errors of every shape) and Node's messages are made as well as the user's.
  fn envelope() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
      "cmd", "type", "tethered", "id", "error", "result", "x",
    ]);
    let id = prop_oneof![
      (1..100i32).prop_map(int32),
      any::<f64>().prop_map(|n| [&b"N"[..], &n.to_le_bytes()].concat()),
    ];
    let field_value = prop_oneof![string(), id, value()];
    prop::collection::vec((key, field_value), 0..5).prop_map(|fields| {
      let n = fields.len() as u64;
      let body: Vec<u8> = fields
        .into_iter()
        .flat_map(|(k, v)| [with_len(b'"', k.as_bytes()), v].concat())
        .collect();
      [vec![b'o'], body, tagged(b'{', n)].concat()
    })
  }

  /// A whole payload: the version header, then one value.
  fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![value(), envelope()].prop_map(|v| [&[0xFF, FORMAT_VERSION][..], &v].concat())
  }

  fn framed(payload: &[u8]) -> Vec<u8> {
    [&header(payload).unwrap()[..], payload].concat()
  }

  /// One piece of a hostile stream.
  fn hostile_piece() -> impl Strategy<Value = Vec<u8>> {
    // A valid payload cut short, lengthened or with one byte changed, framed with its new
    // length: the frame is whole, only its content is wrong.
    let tampered = (payload(), any::<Index>(), bytes(6), any::<u8>(), 0..3u8).prop_map(
      |(mut payload, at, tail, byte, how)| {
        let at = at.index(payload.len());
        match how {
          0 => payload.truncate(at),
          1 => payload.extend_from_slice(if tail.is_empty() { &[0] } else { &tail }),
          _ => payload[at] = byte,
        }
        framed(&payload)
      },
    );
    prop_oneof![
      3 => payload().prop_map(|payload| framed(&payload)),
      3 => tampered,
      1 => bytes(40).prop_map(|payload| framed(&payload)),
      1 => any::<u32>().prop_map(|len| len.to_be_bytes().to_vec()),
      1 => bytes(6),
    ]
  }

  /// What `bytes` (all that arrived so far) give, read whole: each complete frame's payload
  /// sorted, until a length over `limit`, which is one `MessageTooLarge` and the end.
  fn read_whole(bytes: &[u8], limit: usize) -> Items {
    let mut items = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
      let len = u32::from_be_bytes(bytes[at..at + HEADER].try_into().unwrap()) as usize;
      if len > limit {
        items.push(Err(Error::MessageTooLarge { limit }));
        break;
      }
      if bytes.len() - at - HEADER < len {
        break;
      }
      items.push(sort(bytes[at + HEADER..at + HEADER + len].to_vec()));
      at += HEADER + len;
    }
    items
  }

  /// Feeds `pieces` one by one, draining after each, and checks after each that what came out
  /// is what the bytes so far give and that the decoder holds no more than it must.
  fn feed_and_check(pieces: &[&[u8]], limit: usize) -> Result<Items, TestCaseError> {
    let mut decoder = Decoder::with_limit(limit);
    let mut got = Vec::new();
    let mut fed = Vec::new();
    for piece in pieces {
      decoder.feed(piece);
      fed.extend_from_slice(piece);
      got.extend(std::iter::from_fn(|| decoder.next_message()));
      prop_assert_eq!(&got, &read_whole(&fed, decoder.limit));
      prop_assert!(decoder.ready.is_empty());
      if let Some((payload, len)) = &decoder.payload {
        prop_assert!(payload.len() < *len && *len <= decoder.limit);
        // Never more than the message: up front no more than RESERVE_AT_ONCE, past that at
        // most twice what arrived (doubling), and never past the header's length.
        prop_assert!(payload.capacity() <= *len);
        prop_assert!(payload.capacity() <= RESERVE_AT_ONCE.max(2 * payload.len()));
      }
      if decoder.lost.is_some() {
        prop_assert!(decoder.payload.is_none());
      }
    }
    Ok(got)
  }

  proptest! {
    /// Every payload V8 could write arrives whole and unchanged, however it is split; the ones
    /// that reach JavaScript carry exactly the bytes that were sent.
    #[test]
    fn payloads_split_anywhere_arrive_unchanged(
      payloads in prop::collection::vec(payload(), 1..6),
      cuts in cuts(),
    ) {
      let stream: Vec<u8> = payloads.iter().flat_map(|payload| framed(payload)).collect();
      let got = feed_and_check(&split(&stream, &cuts), MAX_MESSAGE)?;
      prop_assert_eq!(got.len(), payloads.len());
      for (item, payload) in got.iter().zip(&payloads) {
        match item {
          Ok(Received::User(Payload::Advanced(bytes)))
          | Ok(Received::Response { outcome: Ok(Some(Payload::Advanced(bytes))), .. }) => {
            prop_assert_eq!(bytes, payload);
          }
          Ok(_) => {}
          Err(error) => prop_assert!(false, "{:?} for {:?}", error, payload),
        }
      }
    }

    /// Hostile streams, split anywhere, under any limit: no panic; every payload and every
    /// error (a payload that cannot be followed, a length over the limit) comes out as soon as
    /// its bytes are in, in order; a length over the limit is refused from its header alone.
    #[test]
    fn hostile_streams_split_anywhere_give_what_they_hold(
      pieces in prop::collection::vec(hostile_piece(), 0..8),
      cuts in cuts(),
      limit in prop_oneof![Just(MAX_MESSAGE), 0..200usize],
    ) {
      feed_and_check(&split(&pieces.concat(), &cuts), limit)?;
    }

    /// Any bytes as a payload: sorted or malformed, never a panic.
    #[test]
    fn any_payload_is_sorted_or_malformed(payload in prop_oneof![bytes(64), payload()]) {
      if let Err(error) = sort(payload) {
        prop_assert_eq!(error.code(), "ERR_IPC_MALFORMED_MESSAGE");
      }
    }
  }
}
