//! The wire protocol between the addon and its launcher process, shared by both sides.
//!
//! A frame is a little-endian `u32` length, then that many bytes: a one-byte tag and the
//! fields, which fill it exactly (a byte left over is as corrupt as one missing). The file descriptors a `Spawn` lays out in the child travel with the frame's first
//! byte as one `SCM_RIGHTS` message; `fd_count` says how many to take. Plain std, no I/O:
//! each side reads and writes its socket its own way (the addon through tokio, the launcher
//! with blocking calls and `poll`).
//!
//! Spawns travel on a socket of their own, request then reply, so the addon can wait for the
//! reply on the JavaScript thread (Node code expects `child.pid` as soon as `spawn()` returns)
//! without queueing behind the exits and signals of the main socket. A spawn carries the
//! directory and umask the child starts with, read from the Node process at the moment of the
//! call: the launcher's own were fixed when it started. A failed spawn says which step failed,
//! so a missing directory is not mistaken for a missing program (both are `ENOENT`).
//!
//! A spawn carries its [`Confinement`] (rlimits, privileges) as a list of what to set, so a
//! child confined to nothing costs two bytes and no system call; an exit carries the leader's
//! [`ResourceUsage`], which the launcher's `wait4` gets with the reap itself.

use std::io;

/// What the addon asks of the launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
  /// Fork, lay out `fd_count` received fds as the child's fds 0.., exec `program`.
  Spawn {
    id: u64,
    program: Vec<u8>,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    cwd: Option<Vec<u8>>,
    /// The file-mode creation mask the child starts with; `None` keeps the launcher's.
    umask: Option<u32>,
    /// A deliberate daemon: a new session, no parent-death signal, spared at shutdown.
    detached: bool,
    fd_count: u32,
    confinement: Confinement,
  },
  /// Send `signo` to the group of child `id`, if its leader has not been reaped. With
  /// `terminate`, whatever is left of the group is SIGKILLed when the leader dies.
  Signal {
    id: u64,
    signo: i32,
    terminate: bool,
  },
}

/// What the launcher tells the addon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
  /// Written by the child itself, once it leads its group and before it execs: should the
  /// launcher die before its `Spawned`, the addon still knows which group to kill. A
  /// `Spawned` or `SpawnFailed` follows.
  Starting {
    id: u64,
    pid: i32,
  },
  Spawned {
    id: u64,
    pid: i32,
  },
  SpawnFailed {
    id: u64,
    errno: i32,
    step: SpawnStep,
  },
  /// The leader was reaped: `code` ≥ 0 for an exit code, or `signal` > 0.
  Exited {
    id: u64,
    code: i32,
    signal: i32,
    usage: ResourceUsage,
  },
}

/// The step of a spawn that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnStep {
  /// Entering the requested directory (`chdir`).
  Chdir = 1,
  /// Anything else: clone, the fd layout, the confinement, exec.
  Launch = 2,
}

impl SpawnStep {
  fn from_wire(tag: u8) -> io::Result<Self> {
    match tag {
      1 => Ok(SpawnStep::Chdir),
      2 => Ok(SpawnStep::Launch),
      _ => Err(corrupt()),
    }
  }
}

/// What the child is held to, applied between fork and exec: each rlimit in order, then the
/// group and user ids, then `no_new_privileges`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
  pub rlimits: Vec<Rlimit>,
  /// `PR_SET_NO_NEW_PRIVS`: exec never grants privileges (setuid bits, file capabilities).
  pub no_new_privileges: bool,
  pub uid: Option<u32>,
  pub gid: Option<u32>,
}

/// One `setrlimit`: the soft limit (where the kernel's signal or error starts) and the hard one
/// (which an unprivileged child cannot raise again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
  pub resource: Resource,
  pub soft: u64,
  pub hard: u64,
}

/// The resources tethered limits, named on the wire apart from the C library's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
  /// `RLIMIT_DATA`
  Data = 1,
  /// `RLIMIT_CPU`
  Cpu = 2,
  /// `RLIMIT_NOFILE`
  OpenFiles = 3,
  /// `RLIMIT_FSIZE`
  FileSize = 4,
  /// `RLIMIT_NPROC`
  Processes = 5,
  /// `RLIMIT_CORE`
  Core = 6,
}

impl Resource {
  fn from_wire(tag: u8) -> io::Result<Self> {
    Ok(match tag {
      1 => Resource::Data,
      2 => Resource::Cpu,
      3 => Resource::OpenFiles,
      4 => Resource::FileSize,
      5 => Resource::Processes,
      6 => Resource::Core,
      _ => return Err(corrupt()),
    })
  }
}

/// The kernel's accounting of a reaped leader (and of the descendants it waited for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUsage {
  pub max_rss_bytes: u64,
  pub user_cpu_micros: u64,
  pub system_cpu_micros: u64,
}

const SPAWN: u8 = 1;
const SIGNAL: u8 = 2;
const SPAWNED: u8 = 3;
const SPAWN_FAILED: u8 = 4;
const EXITED: u8 = 5;
const STARTING: u8 = 6;

/// The length of a `Starting` frame: length, tag, id, pid.
pub const STARTING_FRAME_LEN: usize = 4 + 1 + 8 + 4;

/// The `Starting` frame, built without allocating: the launcher's child writes it between
/// clone and exec, while it shares the launcher's memory.
pub fn starting_frame(id: u64, pid: i32) -> [u8; STARTING_FRAME_LEN] {
  let mut frame = [0u8; STARTING_FRAME_LEN];
  frame[..4].copy_from_slice(&((STARTING_FRAME_LEN - 4) as u32).to_le_bytes());
  frame[4] = STARTING;
  frame[5..13].copy_from_slice(&id.to_le_bytes());
  frame[13..].copy_from_slice(&pid.to_le_bytes());
  frame
}

/// Bits of a confinement's flag byte.
const NO_NEW_PRIVILEGES: u8 = 1;
const UID: u8 = 2;
const GID: u8 = 4;

/// The largest frame accepted: args and environment are bounded by the kernel's `ARG_MAX`
/// anyway, so anything bigger is a corrupt stream.
pub const MAX_FRAME: usize = 64 << 20;

struct Writer(Vec<u8>);

impl Writer {
  fn new(tag: u8) -> Self {
    Writer(vec![0, 0, 0, 0, tag])
  }
  fn u8(&mut self, v: u8) {
    self.0.push(v);
  }
  fn u32(&mut self, v: u32) {
    self.0.extend_from_slice(&v.to_le_bytes());
  }
  fn i32(&mut self, v: i32) {
    self.0.extend_from_slice(&v.to_le_bytes());
  }
  fn u64(&mut self, v: u64) {
    self.0.extend_from_slice(&v.to_le_bytes());
  }
  fn bytes(&mut self, v: &[u8]) {
    self.u32(v.len() as u32);
    self.0.extend_from_slice(v);
  }
  fn list(&mut self, items: &[Vec<u8>]) {
    self.u32(items.len() as u32);
    for item in items {
      self.bytes(item);
    }
  }
  fn confinement(&mut self, confinement: &Confinement) {
    self.u8(confinement.rlimits.len() as u8);
    for rlimit in &confinement.rlimits {
      self.u8(rlimit.resource as u8);
      self.u64(rlimit.soft);
      self.u64(rlimit.hard);
    }
    let flags = (confinement.no_new_privileges as u8 * NO_NEW_PRIVILEGES)
      | (confinement.uid.is_some() as u8 * UID)
      | (confinement.gid.is_some() as u8 * GID);
    self.u8(flags);
    for id in [confinement.uid, confinement.gid].into_iter().flatten() {
      self.u32(id);
    }
  }
  fn finish(mut self) -> Vec<u8> {
    let len = (self.0.len() - 4) as u32;
    self.0[..4].copy_from_slice(&len.to_le_bytes());
    self.0
  }
}

struct Reader<'a>(&'a [u8]);

fn corrupt() -> io::Error {
  io::Error::new(io::ErrorKind::InvalidData, "corrupt launcher frame")
}

impl Reader<'_> {
  fn take(&mut self, n: usize) -> io::Result<&[u8]> {
    if self.0.len() < n {
      return Err(corrupt());
    }
    let (head, rest) = self.0.split_at(n);
    self.0 = rest;
    Ok(head)
  }
  fn u8(&mut self) -> io::Result<u8> {
    Ok(self.take(1)?[0])
  }
  fn u32(&mut self) -> io::Result<u32> {
    Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
  }
  fn i32(&mut self) -> io::Result<i32> {
    Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
  }
  fn u64(&mut self) -> io::Result<u64> {
    Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
  }
  fn bytes(&mut self) -> io::Result<Vec<u8>> {
    let len = self.u32()? as usize;
    Ok(self.take(len)?.to_vec())
  }
  fn confinement(&mut self) -> io::Result<Confinement> {
    let count = self.u8()?;
    let rlimits = (0..count)
      .map(|_| {
        Ok(Rlimit {
          resource: Resource::from_wire(self.u8()?)?,
          soft: self.u64()?,
          hard: self.u64()?,
        })
      })
      .collect::<io::Result<_>>()?;
    let flags = self.u8()?;
    let mut id = |bit: u8| -> io::Result<Option<u32>> {
      if flags & bit != 0 {
        self.u32().map(Some)
      } else {
        Ok(None)
      }
    };
    let uid = id(UID)?;
    let gid = id(GID)?;
    Ok(Confinement {
      rlimits,
      no_new_privileges: flags & NO_NEW_PRIVILEGES != 0,
      uid,
      gid,
    })
  }
  /// The frame's length and its fields must agree: bytes left over mean the two sides do not
  /// read the frame alike, so nothing in it can be trusted.
  fn end(&self) -> io::Result<()> {
    if self.0.is_empty() {
      Ok(())
    } else {
      Err(corrupt())
    }
  }
  fn list(&mut self) -> io::Result<Vec<Vec<u8>>> {
    let count = self.u32()? as usize;
    // Each item is at least its 4-byte length, which bounds a corrupt count.
    if count > self.0.len() / 4 {
      return Err(corrupt());
    }
    (0..count).map(|_| self.bytes()).collect()
  }
}

impl Request {
  pub fn encode(&self) -> Vec<u8> {
    match self {
      Request::Spawn {
        id,
        program,
        argv,
        envp,
        cwd,
        umask,
        detached,
        fd_count,
        confinement,
      } => {
        let mut w = Writer::new(SPAWN);
        w.u64(*id);
        w.bytes(program);
        w.list(argv);
        w.list(envp);
        match cwd {
          Some(cwd) => {
            w.u8(1);
            w.bytes(cwd);
          }
          None => w.u8(0),
        }
        match umask {
          Some(mask) => {
            w.u8(1);
            w.u32(*mask);
          }
          None => w.u8(0),
        }
        w.u8(*detached as u8);
        w.u32(*fd_count);
        w.confinement(confinement);
        w.finish()
      }
      Request::Signal {
        id,
        signo,
        terminate,
      } => {
        let mut w = Writer::new(SIGNAL);
        w.u64(*id);
        w.i32(*signo);
        w.u8(*terminate as u8);
        w.finish()
      }
    }
  }

  /// Decodes one frame body (without its length prefix).
  pub fn decode(body: &[u8]) -> io::Result<Self> {
    let mut r = Reader(body);
    let request = match r.u8()? {
      SPAWN => Request::Spawn {
        id: r.u64()?,
        program: r.bytes()?,
        argv: r.list()?,
        envp: r.list()?,
        cwd: match r.u8()? {
          0 => None,
          _ => Some(r.bytes()?),
        },
        umask: match r.u8()? {
          0 => None,
          _ => Some(r.u32()?),
        },
        detached: r.u8()? != 0,
        fd_count: r.u32()?,
        confinement: r.confinement()?,
      },
      SIGNAL => Request::Signal {
        id: r.u64()?,
        signo: r.i32()?,
        terminate: r.u8()? != 0,
      },
      _ => return Err(corrupt()),
    };
    r.end()?;
    Ok(request)
  }
}

impl Reply {
  pub fn encode(&self) -> Vec<u8> {
    match *self {
      Reply::Starting { id, pid } => starting_frame(id, pid).to_vec(),
      Reply::Spawned { id, pid } => {
        let mut w = Writer::new(SPAWNED);
        w.u64(id);
        w.i32(pid);
        w.finish()
      }
      Reply::SpawnFailed { id, errno, step } => {
        let mut w = Writer::new(SPAWN_FAILED);
        w.u64(id);
        w.i32(errno);
        w.u8(step as u8);
        w.finish()
      }
      Reply::Exited {
        id,
        code,
        signal,
        usage,
      } => {
        let mut w = Writer::new(EXITED);
        w.u64(id);
        w.i32(code);
        w.i32(signal);
        w.u64(usage.max_rss_bytes);
        w.u64(usage.user_cpu_micros);
        w.u64(usage.system_cpu_micros);
        w.finish()
      }
    }
  }

  pub fn decode(body: &[u8]) -> io::Result<Self> {
    let mut r = Reader(body);
    let reply = match r.u8()? {
      STARTING => Reply::Starting {
        id: r.u64()?,
        pid: r.i32()?,
      },
      SPAWNED => Reply::Spawned {
        id: r.u64()?,
        pid: r.i32()?,
      },
      SPAWN_FAILED => Reply::SpawnFailed {
        id: r.u64()?,
        errno: r.i32()?,
        step: SpawnStep::from_wire(r.u8()?)?,
      },
      EXITED => Reply::Exited {
        id: r.u64()?,
        code: r.i32()?,
        signal: r.i32()?,
        usage: ResourceUsage {
          max_rss_bytes: r.u64()?,
          user_cpu_micros: r.u64()?,
          system_cpu_micros: r.u64()?,
        },
      },
      _ => return Err(corrupt()),
    };
    r.end()?;
    Ok(reply)
  }
}

/// Splits complete frames off the front of `buf`, leaving a partial frame in place.
pub fn take_frames(buf: &mut Vec<u8>) -> io::Result<Vec<Vec<u8>>> {
  let mut frames = Vec::new();
  let mut start = 0;
  while buf.len() - start >= 4 {
    let len = u32::from_le_bytes(buf[start..start + 4].try_into().unwrap()) as usize;
    if len > MAX_FRAME {
      return Err(corrupt());
    }
    if buf.len() - start - 4 < len {
      break;
    }
    frames.push(buf[start + 4..start + 4 + len].to_vec());
    start += 4 + len;
  }
  buf.drain(..start);
  Ok(frames)
}

#[cfg(test)]
mod tests {
  use super::*;

  fn spawn_request() -> Request {
    Request::Spawn {
      id: 7,
      program: b"/bin/echo".to_vec(),
      argv: vec![b"echo".to_vec(), "héllo".as_bytes().to_vec(), vec![]],
      envp: vec![b"A=1".to_vec()],
      cwd: Some(b"/tmp".to_vec()),
      umask: Some(0o027),
      detached: false,
      fd_count: 3,
      confinement: Confinement::default(),
    }
  }

  fn confined_request() -> Request {
    let Request::Spawn {
      id,
      program,
      argv,
      envp,
      cwd,
      detached,
      fd_count,
      ..
    } = spawn_request()
    else {
      unreachable!()
    };
    Request::Spawn {
      id,
      program,
      argv,
      envp,
      cwd,
      umask: None,
      detached,
      fd_count,
      confinement: Confinement {
        rlimits: vec![
          Rlimit {
            resource: Resource::Cpu,
            soft: 1,
            hard: 2,
          },
          Rlimit {
            resource: Resource::Data,
            soft: 256 << 20,
            hard: 256 << 20,
          },
          Rlimit {
            resource: Resource::Core,
            soft: 0,
            hard: 0,
          },
        ],
        no_new_privileges: true,
        uid: None,
        gid: Some(65534),
      },
    }
  }

  #[test]
  fn requests_and_replies_round_trip() {
    let requests = [
      spawn_request(),
      confined_request(),
      Request::Signal {
        id: 9,
        signo: 15,
        terminate: true,
      },
    ];
    for request in requests {
      let mut frame = request.encode();
      let bodies = take_frames(&mut frame).unwrap();
      assert_eq!(Request::decode(&bodies[0]).unwrap(), request);
      assert!(frame.is_empty());
    }
    for reply in [
      Reply::Starting { id: 7, pid: 41 },
      Reply::Spawned { id: 1, pid: 42 },
      Reply::SpawnFailed {
        id: 2,
        errno: 2,
        step: SpawnStep::Chdir,
      },
      Reply::SpawnFailed {
        id: 4,
        errno: 13,
        step: SpawnStep::Launch,
      },
      Reply::Exited {
        id: 3,
        code: -1,
        signal: 9,
        usage: ResourceUsage {
          max_rss_bytes: 100 << 20,
          user_cpu_micros: 212_345,
          system_cpu_micros: 7,
        },
      },
    ] {
      let mut frame = reply.encode();
      let bodies = take_frames(&mut frame).unwrap();
      assert_eq!(Reply::decode(&bodies[0]).unwrap(), reply);
    }
  }

  #[test]
  fn an_unconfined_spawn_costs_two_bytes() {
    let frame = spawn_request().encode();
    // No rlimits, no flags: the last two bytes, after the fd count.
    assert_eq!(&frame[frame.len() - 6..], &[3, 0, 0, 0, 0, 0]);
    let Request::Spawn { confinement, .. } = Request::decode(&frame[4..]).unwrap() else {
      unreachable!()
    };
    assert_eq!(confinement, Confinement::default());
  }

  #[test]
  fn an_unknown_resource_is_corrupt() {
    let mut frame = confined_request().encode();
    let first_resource = frame.len() - (1 + 3 * 17 + 1 + 4) + 1;
    assert_eq!(frame[first_resource], Resource::Cpu as u8);
    frame[first_resource] = 99;
    assert!(Request::decode(&frame[4..]).is_err());
  }

  #[test]
  fn partial_frames_wait_for_the_rest() {
    let whole = [
      spawn_request().encode(),
      Reply::Spawned { id: 1, pid: 2 }.encode(),
    ]
    .concat();
    let mut buf = Vec::new();
    let mut decoded = 0;
    for byte in whole {
      buf.push(byte);
      decoded += take_frames(&mut buf).unwrap().len();
    }
    assert_eq!(decoded, 2);
    assert!(buf.is_empty());
  }

  #[test]
  fn the_umask_and_the_failed_step_travel_exactly() {
    let Request::Spawn { umask, .. } = Request::decode(&spawn_request().encode()[4..]).unwrap()
    else {
      unreachable!()
    };
    assert_eq!(umask, Some(0o027));
    let mut frame = Reply::SpawnFailed {
      id: 1,
      errno: 2,
      step: SpawnStep::Chdir,
    }
    .encode();
    let last = frame.len() - 1;
    assert_eq!(frame[last], SpawnStep::Chdir as u8);
    frame[last] = 9;
    assert!(
      Reply::decode(&frame[4..]).is_err(),
      "an unknown step is corrupt"
    );
  }

  #[test]
  fn corrupt_frames_are_errors_not_panics() {
    assert!(Request::decode(&[]).is_err());
    assert!(Request::decode(&[SPAWN, 1, 2]).is_err());
    assert!(Request::decode(&[99]).is_err());
    let mut huge = vec![0xff, 0xff, 0xff, 0xff];
    assert!(take_frames(&mut huge).is_err());
    // A list count far beyond the bytes present.
    let mut body = vec![SPAWN];
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(Request::decode(&body).is_err());
  }

  /// Found by `any_body_decodes_completely_or_is_an_error` (tests/protocol_properties.rs): a
  /// body with bytes after its last field decoded as if they were not there.
  #[test]
  fn bytes_after_the_last_field_are_corrupt() {
    let mut body = Request::Signal {
      id: 0,
      signo: 0,
      terminate: false,
    }
    .encode()[4..]
      .to_vec();
    body.push(0);
    assert!(Request::decode(&body).is_err());
    let mut body = Reply::Spawned { id: 1, pid: 2 }.encode()[4..].to_vec();
    body.push(0);
    assert!(Reply::decode(&body).is_err());
    let mut body = spawn_request().encode()[4..].to_vec();
    body.push(0);
    assert!(Request::decode(&body).is_err());
  }
}
