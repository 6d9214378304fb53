//! One worker's IPC socket: messages written in the order of the calls, and bytes read.
//!
//! Reading is plain non-blocking reads ([`Channel::recv`]), so that the thread which waits for
//! the socket may be tokio's or JavaScript's own (see [`super::worker::ChannelHost`]).
//!
//! Why writing is shaped this way:
//! - A message does not queue behind any task. [`Channel::write`] writes to the socket at once,
//!   on the caller's thread, when nothing is queued before it — up to [`DIRECT_WRITE`]; the
//!   rest of a larger message queues for the writer task ([`write_queued`]), as does anything
//!   written while bytes are queued, so the order on the wire is the order of the calls.
//!   (Routing every message through a task cost a thread hop per message. Handing all but
//!   the first 256 KiB of a large message to the task spared JavaScript the kernel's copy, but
//!   the task's wake-up, on a machine whose cores are busy, cost the round trip more: a 1 MiB
//!   round trip went from 0.8-0.9x `fork()`'s rate to 1.0x when written whole, as `fork()`
//!   writes it.)
//! - A queued `send()` is settled by the writer once its last byte is written, or as not sent
//!   when the channel closes first, so no call waits on a channel that is gone.
//! - Writes never block and never raise SIGPIPE: a full socket queues, a closed peer closes
//!   the channel, and the worker's reader sees the end and reports it.
//! - The socket is not kept in tokio's reactor. Registered there, every message each way woke
//!   a tokio thread (the socket turned readable, or writable again once the worker read),
//!   for nobody, stealing a core from the worker and from JavaScript. The writer task
//!   registers a copy of the descriptor only while it waits for a full socket to take more,
//!   and a tokio reader (when JavaScript's thread does not read) registers one for its life.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{recv, sendmsg, setsockopt, shutdown, sockopt, MsgFlags, Shutdown};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use super::lock;
use super::notice::{CallId, Notice};
use crate::error::Error;
use crate::ipc::Frame;

/// How long the writer waits before it tries again to register a full socket with tokio.
const RETRY_REGISTRATION: Duration = Duration::from_millis(10);

/// The send buffer asked for on both ends of the channel.
const SEND_BUFFER: usize = 4 << 20;

/// The most of a message [`Channel::write`] writes on the caller's (JavaScript's) thread, the
/// size of the send buffer: whatever the socket takes at once; the writer task writes the rest.
pub const DIRECT_WRITE: usize = SEND_BUFFER;

/// How a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
  /// Written to the socket: done.
  Written,
  /// Queued behind earlier bytes; a [`Notice::Settled`] for the call follows.
  Queued,
}

/// One worker's IPC socket and the bytes waiting to be written to it, in order.
pub struct Channel {
  socket: UnixStream,
  pending: Mutex<Pending>,
  /// Wakes the writer task: bytes were queued, or the channel closed.
  wake: Notify,
}

#[derive(Default)]
struct Pending {
  queue: VecDeque<Outgoing>,
  closed: bool,
}

/// One message for the channel, framed, of which `written` bytes already are; and the
/// `send()` it settles.
struct Outgoing {
  frame: Frame,
  written: usize,
  settles: Option<CallId>,
}

impl Outgoing {
  fn is_done(&self) -> bool {
    self.written == self.frame.len()
  }

  /// One non-blocking write of what is left, at most `limit` bytes; a full socket is
  /// `WouldBlock`. The frame's parts go in one system call.
  fn send_once(&mut self, fd: RawFd, limit: usize) -> io::Result<usize> {
    let mut skip = self.written;
    let mut budget = limit;
    let mut slices = [IoSlice::new(&[]); 3];
    for (slice, part) in slices.iter_mut().zip(self.frame.parts()) {
      let rest = &part[skip.min(part.len())..];
      skip = skip.saturating_sub(part.len());
      let rest = &rest[..rest.len().min(budget)];
      budget -= rest.len();
      *slice = IoSlice::new(rest);
    }
    // MSG_NOSIGNAL: a closed peer is an EPIPE error, not a SIGPIPE.
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    let sent = loop {
      match sendmsg::<()>(fd, &slices, &[], flags, None) {
        Err(Errno::EINTR) => {}
        other => break other.map_err(io::Error::from)?,
      }
    };
    self.written += sent;
    Ok(sent)
  }
}

impl Channel {
  /// A connected socket pair: ours as a channel, and the worker's end, to be handed to the
  /// worker and closed here once it has it (so the worker's exit reads as EOF on ours).
  pub fn pair() -> io::Result<(Channel, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    // Roomier send buffers let a large message cross in one write each way instead of in
    // pieces, each a wake-up of the other side. The kernel caps them (net.core.wmem_max); any
    // size works.
    for end in [ours.as_fd(), theirs.as_fd()] {
      let _ = setsockopt(&end, sockopt::SndBuf, &SEND_BUFFER);
    }
    ours.set_nonblocking(true)?;
    let channel = Channel {
      socket: ours,
      pending: Mutex::new(Pending::default()),
      wake: Notify::new(),
    };
    Ok((channel, theirs))
  }

  /// Writes at once what the socket takes (up to [`DIRECT_WRITE`]) when nothing is queued
  /// before it; queues the rest for the writer task. `settles` is the `send()` a queued write
  /// settles when it is done.
  pub fn write(&self, frame: Frame, settles: Option<CallId>) -> Result<Sent, Error> {
    let mut pending = lock(&self.pending);
    if pending.closed {
      return Err(Error::ChannelClosed);
    }
    let mut outgoing = Outgoing {
      frame,
      written: 0,
      settles,
    };
    if pending.queue.is_empty() {
      let fd = self.socket.as_raw_fd();
      let mut budget = DIRECT_WRITE;
      while !outgoing.is_done() && budget > 0 {
        match outgoing.send_once(fd, budget) {
          Ok(sent) => budget = budget.saturating_sub(sent),
          Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
          Err(_) => {
            // The worker's end is gone; its reader sees EOF and reports the channel's end.
            pending.closed = true;
            self.wake.notify_one();
            return Err(Error::ChannelClosed);
          }
        }
      }
      if outgoing.is_done() {
        return Ok(Sent::Written);
      }
    }
    pending.queue.push_back(outgoing);
    self.wake.notify_one();
    Ok(Sent::Queued)
  }

  /// Closes the channel for writing, which ends the writer task; whatever was still queued is
  /// settled as not sent, by the notices returned.
  pub fn close(&self) -> Vec<Notice> {
    let mut pending = lock(&self.pending);
    pending.closed = true;
    self.wake.notify_one();
    unsent(&mut pending.queue)
  }

  /// The socket's descriptor, for a reader that waits for it outside tokio (see
  /// [`super::worker::ChannelHost`]). It stays open as long as the channel.
  pub fn raw_fd(&self) -> RawFd {
    self.socket.as_raw_fd()
  }

  /// One non-blocking read of what the socket has: `Ok(0)` at EOF, `WouldBlock` when it has
  /// nothing. Any thread may call it; it does not touch tokio's view of the socket.
  pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
    loop {
      match recv(self.socket.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
        Err(Errno::EINTR) => {}
        other => return other.map_err(io::Error::from),
      }
    }
  }

  /// A copy of the descriptor in tokio's reactor, to wait on from a tokio task for `interest`
  /// (see the module comment). Needs a tokio runtime.
  pub fn in_reactor(&self, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    let copy = self.socket.as_fd().try_clone_to_owned()?;
    // SAFETY: the `OwnedFd` is the copy's only owner and moves into the `AsyncFd`, so the
    // descriptor stays open, and the same, for the `AsyncFd`'s whole life.
    unsafe { AsyncFd::register_with_interest(copy, interest) }.map_err(io::Error::from)
  }

  /// Whether bytes wait in the socket, unread.
  pub fn has_unread(&self) -> bool {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_PEEK;
    matches!(recv(self.socket.as_raw_fd(), &mut [0u8], flags), Ok(1))
  }

  /// Ends reading: whoever waits for the socket to be readable is woken, and reads EOF once
  /// what is queued is read.
  pub fn shut_reading(&self) {
    let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Read);
  }
}

/// Settlements for the `send()`s among `queue`'s bytes, which will never be written.
fn unsent(queue: &mut VecDeque<Outgoing>) -> Vec<Notice> {
  queue
    .drain(..)
    .filter_map(|outgoing| outgoing.settles)
    .map(|call| Notice::Settled {
      call,
      outcome: Err(Error::ChannelClosed),
    })
    .collect()
}

/// The writer task: writes what [`Channel::write`] queued, waiting for the socket to take it,
/// and hands `settle` the settlement of each queued `send()` once its last byte is written.
/// Ends when the channel closes.
pub async fn write_queued(channel: Arc<Channel>, settle: impl Fn(Vec<Notice>)) {
  loop {
    let wake = channel.wake.notified();
    let mut settled = Vec::new();
    let waiting = {
      let mut pending = lock(&channel.pending);
      if pending.closed {
        settled = unsent(&mut pending.queue);
        None
      } else {
        let fd = channel.socket.as_raw_fd();
        while let Some(front) = pending.queue.front_mut() {
          match front.send_once(fd, usize::MAX) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {
              pending.closed = true;
              break;
            }
          }
          if !front.is_done() {
            continue;
          }
          if let Some(call) = front.settles {
            settled.push(Notice::Settled {
              call,
              outcome: Ok(None),
            });
          }
          pending.queue.pop_front();
        }
        if pending.closed {
          settled.extend(unsent(&mut pending.queue));
        }
        (!pending.closed).then_some(!pending.queue.is_empty())
      }
    };
    if !settled.is_empty() {
      settle(settled);
    }
    match waiting {
      None => return,
      // The socket is full: wait until it takes more (or the channel closes).
      // Registered after the write that found the socket full, so room made since then is
      // reported at once.
      Some(true) => match channel.in_reactor(Interest::WRITABLE) {
        Ok(socket) => {
          tokio::select! {
            _ = socket.writable() => {}
            () = wake => {}
          }
        }
        // Out of descriptors for the copy: look again shortly rather than spin.
        Err(_) => {
          tokio::select! {
            () = tokio::time::sleep(RETRY_REGISTRATION) => {}
            () = wake => {}
          }
        }
      },
      Some(false) => wake.await,
    }
  }
}
