//! The launcher alone, without Node: how fast tethered's launcher starts `/bin/true` when a
//! plain blocking client drives it, doing what `spawnCollect('/bin/true')` asks of it (stdin
//! `/dev/null`, stdout and stderr pipes read to their end, the exit awaited), one at a time.
//!
//! Why: `bench/spawn.mjs` puts tethered's sequential rate beside the bare `posix_spawn` loop
//! (`spawn-limit`). This row splits the gap between the two: what the launcher's round trip costs
//! (a request over its socket, its clone and exec, the exit reported back) against what the
//! addon's side adds (the tokio runtime, the threadsafe function, the Promise in Node).
//!
//! `launcher-floor <launcher binary> <count>` prints `{"sequential": ops/s}`.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use tethered_launcher::protocol::{take_frames, Confinement, Reply, Request};

/// A blocking reader of one launcher socket's frames.
struct Replies {
  socket: UnixStream,
  inbox: Vec<u8>,
  frames: std::collections::VecDeque<Vec<u8>>,
}

impl Replies {
  fn next(&mut self) -> io::Result<Reply> {
    loop {
      if let Some(frame) = self.frames.pop_front() {
        return Reply::decode(&frame);
      }
      let mut chunk = [0u8; 4096];
      let n = self.socket.read(&mut chunk)?;
      if n == 0 {
        return Err(io::Error::other("the launcher closed its socket"));
      }
      self.inbox.extend_from_slice(&chunk[..n]);
      self.frames.extend(take_frames(&mut self.inbox)?);
    }
  }
}

/// Sends `frame` with `fds` attached to its first byte.
fn send_with_fds(socket: &UnixStream, frame: &[u8], fds: &[i32]) -> io::Result<()> {
  let space = cmsg_space(fds.len());
  let mut control = vec![0u8; space];
  let mut iov = libc::iovec {
    iov_base: frame.as_ptr() as *mut libc::c_void,
    iov_len: frame.len(),
  };
  // SAFETY: an all-zero msghdr is valid; the fields set below point at live locals.
  let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
  msg.msg_iov = &mut iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.as_mut_ptr().cast();
  msg.msg_controllen = space;
  // SAFETY: the control buffer is CMSG_SPACE(len) bytes, so the first header and its data fit.
  unsafe {
    let header = libc::CMSG_FIRSTHDR(&msg);
    (*header).cmsg_level = libc::SOL_SOCKET;
    (*header).cmsg_type = libc::SCM_RIGHTS;
    (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
    std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(header).cast(), fds.len());
  }
  // SAFETY: msg describes the frame and the control buffer above, both alive for the call.
  let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
  if sent < 0 {
    return Err(io::Error::last_os_error());
  }
  let mut rest = &frame[sent as usize..];
  while !rest.is_empty() {
    let n = io::Write::write(&mut &*socket, rest)?;
    rest = &rest[n..];
  }
  Ok(())
}

fn cmsg_space(fd_count: usize) -> usize {
  // SAFETY: CMSG_SPACE only computes a size.
  unsafe { libc::CMSG_SPACE((fd_count * std::mem::size_of::<i32>()) as u32) as usize }
}

/// A pipe: (read end, write end).
fn pipe() -> io::Result<(std::fs::File, OwnedFd)> {
  let mut fds = [0; 2];
  // SAFETY: pipe2 writes two new fds into the array.
  if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
    return Err(io::Error::last_os_error());
  }
  // SAFETY: both fds were just created and are owned by nothing else.
  Ok(unsafe {
    (
      std::fs::File::from_raw_fd(fds[0]),
      OwnedFd::from_raw_fd(fds[1]),
    )
  })
}

fn run(launcher: &str, count: u32) -> io::Result<f64> {
  let (main, their_main) = UnixStream::pair()?;
  let (spawns, their_spawns) = UnixStream::pair()?;
  let mut child = Command::new(launcher)
    .arg(std::process::id().to_string())
    .stdin(Stdio::from(OwnedFd::from(their_main)))
    .stdout(Stdio::from(OwnedFd::from(their_spawns)))
    .spawn()?;
  let mut exits = Replies {
    socket: main,
    inbox: Vec::new(),
    frames: Default::default(),
  };
  let mut answers = Replies {
    socket: spawns.try_clone()?,
    inbox: Vec::new(),
    frames: Default::default(),
  };
  let dev_null = std::fs::File::open("/dev/null")?;
  let envp: Vec<Vec<u8>> = std::env::vars_os()
    .map(|(k, v)| {
      let mut entry = k.into_encoded_bytes();
      entry.push(b'=');
      entry.extend(v.into_encoded_bytes());
      entry
    })
    .collect();
  let start = Instant::now();
  for id in 1..=u64::from(count) {
    let (mut out, out_w) = pipe()?;
    let (mut err, err_w) = pipe()?;
    let frame = Request::Spawn {
      id,
      program: b"/bin/true".to_vec(),
      argv: vec![b"/bin/true".to_vec()],
      envp: envp.clone(),
      cwd: None,
      umask: None,
      detached: false,
      fd_count: 3,
      confinement: Confinement::default(),
    }
    .encode();
    let fds = [dev_null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    send_with_fds(&spawns, &frame, &fds)?;
    drop((out_w, err_w));
    loop {
      match answers.next()? {
        Reply::Starting { .. } => {}
        Reply::Spawned { .. } => break,
        other => return Err(io::Error::other(format!("spawn answered {other:?}"))),
      }
    }
    let mut sink = Vec::new();
    out.read_to_end(&mut sink)?;
    err.read_to_end(&mut sink)?;
    match exits.next()? {
      Reply::Exited { code: 0, .. } => {}
      other => return Err(io::Error::other(format!("/bin/true ended with {other:?}"))),
    }
  }
  let rate = f64::from(count) / start.elapsed().as_secs_f64();
  drop((exits, answers, spawns));
  let _ = child.wait();
  Ok(rate)
}

fn main() {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let (Some(launcher), Some(count)) = (args.first(), args.get(1).and_then(|c| c.parse().ok()))
  else {
    eprintln!("usage: launcher-floor <launcher binary> <count>");
    std::process::exit(2)
  };
  match run(launcher, count) {
    Ok(rate) => println!("{{\"sequential\":{rate:.1}}}"),
    Err(err) => {
      eprintln!("launcher-floor: {err}");
      std::process::exit(1)
    }
  }
}
