//! Property tests of the launcher's wire protocol, as the two readers of a socket use it:
//! bytes arrive in pieces of any size, `take_frames` cuts whole frames off an inbox, and each
//! frame is decoded as a `Request` (in the launcher) or a `Reply` (in the addon).
//!
//! The hostile streams are built from pieces that look like frames — valid ones, valid ones
//! tampered with, random bodies, lengths over `MAX_FRAME`, loose bytes — because uniformly
//! random bytes almost always start with a length over the limit and stop at the first frame.
//! What a stream should give is worked out by reading it whole, once ([`read_whole`]), and
//! compared with what the inbox gives when the same bytes come split.

use proptest::prelude::*;
use proptest::sample::Index;
use tethered_launcher::protocol::{
  starting_frame, take_frames, Confinement, Reply, Request, Resource, ResourceUsage, Rlimit,
  SpawnStep, MAX_FRAME, STARTING_FRAME_LEN,
};

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
  prop::collection::vec(any::<u8>(), 0..max)
}

fn confinement() -> impl Strategy<Value = Confinement> {
  let resource = prop::sample::select(vec![
    Resource::Data,
    Resource::Cpu,
    Resource::OpenFiles,
    Resource::FileSize,
    Resource::Processes,
    Resource::Core,
  ]);
  let rlimit = (resource, any::<u64>(), any::<u64>()).prop_map(|(resource, soft, hard)| Rlimit {
    resource,
    soft,
    hard,
  });
  (
    prop::collection::vec(rlimit, 0..8),
    any::<bool>(),
    any::<Option<u32>>(),
    any::<Option<u32>>(),
  )
    .prop_map(|(rlimits, no_new_privileges, uid, gid)| Confinement {
      rlimits,
      no_new_privileges,
      uid,
      gid,
    })
}

fn request() -> impl Strategy<Value = Request> {
  let list = || prop::collection::vec(bytes(24), 0..6);
  let spawn = (
    any::<u64>(),
    bytes(32),
    list(),
    list(),
    prop::option::of(bytes(32)),
    any::<Option<u32>>(),
    any::<bool>(),
    any::<u32>(),
    confinement(),
  )
    .prop_map(
      |(id, program, argv, envp, cwd, umask, detached, fd_count, confinement)| Request::Spawn {
        id,
        program,
        argv,
        envp,
        cwd,
        umask,
        detached,
        fd_count,
        confinement,
      },
    );
  let signal = (any::<u64>(), any::<i32>(), any::<bool>()).prop_map(|(id, signo, terminate)| {
    Request::Signal {
      id,
      signo,
      terminate,
    }
  });
  prop_oneof![spawn, signal]
}

fn reply() -> impl Strategy<Value = Reply> {
  let step = prop::sample::select(vec![SpawnStep::Chdir, SpawnStep::Launch]);
  prop_oneof![
    (any::<u64>(), any::<i32>()).prop_map(|(id, pid)| Reply::Starting { id, pid }),
    (any::<u64>(), any::<i32>()).prop_map(|(id, pid)| Reply::Spawned { id, pid }),
    (any::<u64>(), any::<i32>(), step).prop_map(|(id, errno, step)| Reply::SpawnFailed {
      id,
      errno,
      step
    }),
    (any::<u64>(), any::<i32>(), any::<i32>(), any::<[u64; 3]>()).prop_map(
      |(id, code, signal, [max_rss_bytes, user_cpu_micros, system_cpu_micros])| Reply::Exited {
        id,
        code,
        signal,
        usage: ResourceUsage {
          max_rss_bytes,
          user_cpu_micros,
          system_cpu_micros,
        },
      }
    ),
  ]
}

/// `frame` cut at the given points, in order; empty pieces included, as a reader may see them.
fn split<'a>(frame: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
  let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(frame.len() + 1)).collect();
  at.push(0);
  at.push(frame.len());
  at.sort_unstable();
  at.windows(2).map(|pair| &frame[pair[0]..pair[1]]).collect()
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
  prop::collection::vec(any::<Index>(), 0..16)
}

/// A length header and `body`, as `take_frames` reads them.
fn framed(body: &[u8]) -> Vec<u8> {
  [&(body.len() as u32).to_le_bytes()[..], body].concat()
}

/// One piece of a hostile stream.
fn hostile_piece() -> impl Strategy<Value = Vec<u8>> {
  let valid = prop_oneof![
    request().prop_map(|request| request.encode()),
    reply().prop_map(|reply| reply.encode()),
  ];
  // A valid frame's body cut short, lengthened, or with one byte changed, then framed again
  // with its new length: the frame is whole, only its fields are wrong.
  let tampered = (valid.clone(), any::<Index>(), bytes(8), any::<u8>(), 0..3u8).prop_map(
    |(frame, at, tail, byte, how)| {
      let mut body = frame[4..].to_vec();
      let at = at.index(body.len());
      match how {
        0 => body.truncate(at),
        1 => body.extend_from_slice(if tail.is_empty() { &[0] } else { &tail }),
        _ => body[at] = byte,
      }
      framed(&body)
    },
  );
  prop_oneof![
    3 => valid,
    3 => tampered,
    1 => bytes(40).prop_map(|body| framed(&body)),
    1 => ((MAX_FRAME as u32 + 1)..=u32::MAX).prop_map(|len| len.to_le_bytes().to_vec()),
    1 => bytes(6),
  ]
}

/// What a stream holds, read whole: its complete frames in order, then either the offset just
/// past a length header over `MAX_FRAME` (where the stream is corrupt) or the unfinished tail.
struct Whole {
  frames: Vec<Vec<u8>>,
  corrupt_at: Option<usize>,
  tail: Vec<u8>,
}

fn read_whole(stream: &[u8]) -> Whole {
  let mut frames = Vec::new();
  let mut at = 0;
  while stream.len() - at >= 4 {
    let len = u32::from_le_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
    if len > MAX_FRAME {
      return Whole {
        frames,
        corrupt_at: Some(at + 4),
        tail: Vec::new(),
      };
    }
    if stream.len() - at - 4 < len {
      break;
    }
    frames.push(stream[at + 4..at + 4 + len].to_vec());
    at += 4 + len;
  }
  Whole {
    frames,
    corrupt_at: None,
    tail: stream[at..].to_vec(),
  }
}

/// A frame that decodes must be exactly the encoding of what it decoded to, to its last byte:
/// a frame with bytes its fields do not account for is corrupt, not read in part.
fn check_decoded<T: PartialEq + std::fmt::Debug>(
  body: &[u8],
  decoded: std::io::Result<T>,
  encode: impl Fn(&T) -> Vec<u8>,
  decode: impl Fn(&[u8]) -> std::io::Result<T>,
) -> Result<(), TestCaseError> {
  if let Ok(value) = decoded {
    let again = encode(&value);
    prop_assert_eq!(
      again.len(),
      4 + body.len(),
      "{:?} decoded from {} bytes it does not fill",
      value,
      body.len()
    );
    prop_assert_eq!(decode(&again[4..]).unwrap(), value);
  }
  Ok(())
}

proptest! {
  #[test]
  fn requests_split_anywhere_arrive_unchanged(
    requests in prop::collection::vec(request(), 1..6),
    cuts in cuts(),
  ) {
    let stream: Vec<u8> = requests.iter().flat_map(Request::encode).collect();
    let mut inbox = Vec::new();
    let mut got = Vec::new();
    for piece in split(&stream, &cuts) {
      inbox.extend_from_slice(piece);
      for frame in take_frames(&mut inbox).unwrap() {
        got.push(Request::decode(&frame).unwrap());
      }
    }
    prop_assert_eq!(got, requests);
    prop_assert!(inbox.is_empty());
  }

  #[test]
  fn replies_split_anywhere_arrive_unchanged(
    replies in prop::collection::vec(reply(), 1..12),
    cuts in cuts(),
  ) {
    let stream: Vec<u8> = replies.iter().flat_map(Reply::encode).collect();
    let mut inbox = Vec::new();
    let mut got = Vec::new();
    for piece in split(&stream, &cuts) {
      inbox.extend_from_slice(piece);
      for frame in take_frames(&mut inbox).unwrap() {
        got.push(Reply::decode(&frame).unwrap());
      }
    }
    prop_assert_eq!(got, replies);
    prop_assert!(inbox.is_empty());
  }

  #[test]
  fn the_starting_frame_is_a_starting_reply(id in any::<u64>(), pid in any::<i32>()) {
    let mut inbox = starting_frame(id, pid).to_vec();
    prop_assert_eq!(inbox.len(), STARTING_FRAME_LEN);
    let frames = take_frames(&mut inbox).unwrap();
    prop_assert_eq!(frames.len(), 1);
    prop_assert_eq!(Reply::decode(&frames[0]).unwrap(), Reply::Starting { id, pid });
  }

  /// Hostile bytes, split anywhere: no panic; the frames come out as reading the stream whole
  /// finds them; a length over `MAX_FRAME` is an error as soon as its header is in, and until
  /// then the inbox never holds more than part of one frame of at most `MAX_FRAME`.
  #[test]
  fn hostile_streams_split_anywhere_are_framed_or_refused(
    pieces in prop::collection::vec(hostile_piece(), 0..10),
    cuts in cuts(),
  ) {
    let stream = pieces.concat();
    let whole = read_whole(&stream);
    let mut inbox = Vec::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut fed = 0;
    let mut refused_at = None;
    for piece in split(&stream, &cuts) {
      inbox.extend_from_slice(piece);
      fed += piece.len();
      match take_frames(&mut inbox) {
        Ok(frames) => got.extend(frames),
        Err(_) => {
          refused_at = Some((fed - piece.len(), fed));
          break;
        }
      }
      if inbox.len() >= 4 {
        let len = u32::from_le_bytes(inbox[..4].try_into().unwrap()) as usize;
        prop_assert!(len <= MAX_FRAME);
        prop_assert!(inbox.len() < 4 + len, "a whole frame was left in the inbox");
      }
    }
    // The frames taken are those the stream holds, in order; when the stream is refused, the
    // frames completed in the same read as the bad header may be dropped with it.
    prop_assert!(whole.frames.starts_with(&got));
    match whole.corrupt_at {
      Some(corrupt_at) => {
        // Refused by the read that completed the bad header: not before, not after.
        let (start, end) = refused_at.expect("a length over MAX_FRAME is refused");
        prop_assert!(start < corrupt_at && corrupt_at <= end, "refused at {}..{}, not {}", start, end, corrupt_at);
      }
      None => {
        prop_assert_eq!(refused_at, None);
        prop_assert_eq!(&got, &whole.frames);
        prop_assert_eq!(&inbox, &whole.tail);
      }
    }
    for body in &got {
      check_decoded(body, Request::decode(body), Request::encode, Request::decode)?;
      check_decoded(body, Reply::decode(body), Reply::encode, Reply::decode)?;
    }
  }

  /// Any frame body at all decodes to what re-encodes to the same length, or is an error.
  #[test]
  fn any_body_decodes_completely_or_is_an_error(
    body in prop_oneof![bytes(64), hostile_piece().prop_map(|frame| frame[4.min(frame.len())..].to_vec())],
  ) {
    check_decoded(&body, Request::decode(&body), Request::encode, Request::decode)?;
    check_decoded(&body, Reply::decode(&body), Reply::encode, Reply::decode)?;
  }
}
