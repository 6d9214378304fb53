//! The connected worker as three threads see it: the caller's, which writes messages and
//! registers requests; the driver's, which opens and closes the connection and times requests
//! out; and the worker's reader, which hands answers back.
//!
//! It is one lock, not messages between tasks, because a request must be registered before its
//! bytes leave (the answer may be read before the write returns), and an answer, a timeout and
//! the worker's death race for the same request: whoever takes it from [`Link::requests`]
//! settles it, so it is settled exactly once.
//!
//! [`ConnectionWatch`] is the reader's side: the Supervisor's [`Watcher`] of its worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;

use super::channel::Channel;
use super::lock;
use super::machine::Event;
use super::notice::{CallId, Listener, Notice};
use super::worker::Watcher;
use crate::error::Error;
use crate::ipc::{Received, Serialization};
use crate::vocabulary::exit::Reaped;
use crate::vocabulary::stdio::StreamName;

pub struct Connection {
  link: Mutex<Link>,
  /// How messages cross every worker's channel.
  pub serialization: Serialization,
  /// Whether the driver has a use for the next sign of life: the restart count is above zero
  /// or a ping awaits its pong. Otherwise readers do not wake the driver for every message.
  wants_sign_of_life: AtomicBool,
  /// Batches of messages handed to the driver (see [`Report::Messages`]) that it has not yet
  /// passed on to the listener; while there are any, later ones take the same way, so none
  /// overtakes them.
  via_driver: AtomicUsize,
}

pub struct Link {
  /// The connected worker's channel; `None` whenever the driver says no worker is connected.
  pub channel: Option<Arc<Channel>>,
  /// Requests waiting for an answer, by request id.
  pub requests: HashMap<u64, InFlight>,
  next_request_id: u64,
}

/// A request written to the worker and not answered yet.
pub struct InFlight {
  /// The `request()` call its answer settles.
  pub call: CallId,
  pub timeout: Option<Duration>,
}

impl Link {
  /// A new request id: positive, and unique for the connection's life.
  pub fn next_request_id(&mut self) -> u64 {
    let id = self.next_request_id;
    self.next_request_id += 1;
    id
  }
}

impl Connection {
  /// Not connected, nothing in flight.
  pub fn new(serialization: Serialization) -> Self {
    Connection {
      serialization,
      link: Mutex::new(Link {
        channel: None,
        requests: HashMap::new(),
        next_request_id: 1,
      }),
      wants_sign_of_life: AtomicBool::new(false),
      via_driver: AtomicUsize::new(0),
    }
  }

  pub fn lock(&self) -> MutexGuard<'_, Link> {
    lock(&self.link)
  }

  /// Takes request `id` out, for the one who settles it; `None` when another already did.
  pub fn take_request(&self, id: u64) -> Option<InFlight> {
    self.lock().requests.remove(&id)
  }

  /// Says whether the next word from the worker is worth telling the driver.
  pub fn want_sign_of_life(&self, wanted: bool) {
    self.wants_sign_of_life.store(wanted, Ordering::Release);
  }

  /// Called by the reader on any word from the worker: true once for each time the driver
  /// asked to hear of it.
  pub fn take_sign_of_life(&self) -> bool {
    self.wants_sign_of_life.swap(false, Ordering::AcqRel)
  }

  /// Called by the driver once it passed a [`Report::Messages`] batch on to the listener.
  pub fn passed_on(&self) {
    self.via_driver.fetch_sub(1, Ordering::AcqRel);
  }
}

/// What a worker's reader tells the supervisor's driver, in this order.
#[derive(Debug)]
pub enum Report {
  /// Messages that the driver passes on to the listener after applying what they change:
  /// `alive` when the driver asked to hear of a sign of life, which may reset the restart
  /// count — the new count must reach JavaScript before the message that reset it.
  Messages {
    alive: bool,
    notices: Vec<Notice>,
  },
  ChannelClosed,
  /// The last report. `Err` when the launcher died, which takes the worker with it.
  Exited(Result<Reaped, Error>),
}

/// The supervisor's watcher of its worker: messages, output and answers go to the listener
/// as they come, so a message read on JavaScript's thread (see
/// [`super::worker::ChannelHost`]) is delivered there and then; the
/// driver hears that the worker is alive only when it asked to (see
/// [`Connection::take_sign_of_life`]), so busy traffic does not wake it. Those messages, and
/// any read while the driver still holds some, go through the driver, so what they change
/// (the restart count) is told before them. Reports carry no
/// worker id: a worker's last report is its exit, and the driver starts no next worker before
/// that.
pub struct ConnectionWatch {
  pub connection: Arc<Connection>,
  pub listener: Arc<dyn Listener>,
  pub reports: mpsc::UnboundedSender<Report>,
}

impl ConnectionWatch {
  fn report(&self, report: Report) {
    // The driver outlives every worker task it started, so this cannot fail in practice.
    let _ = self.reports.send(report);
  }
}

impl Watcher for ConnectionWatch {
  /// The user's messages as they are, answers as the settlement of their request; through
  /// the driver when it asked to hear that the worker is alive.
  fn messages(&self, messages: Vec<Result<Received, Error>>) {
    let mut notices = Vec::new();
    for message in messages {
      match message {
        Ok(Received::User(payload)) => notices.push(Notice::Message(payload)),
        Ok(Received::Response { id, outcome }) => {
          // An answer after its timeout finds nothing: the caller was already told.
          if let Some(request) = self.connection.take_request(id) {
            notices.push(Notice::Settled {
              call: request.call,
              outcome,
            });
          }
        }
        Ok(Received::Pong | Received::NodeInternal) => {}
        Err(malformed) => notices.push(Notice::Event(Event::Error(malformed))),
      }
    }
    // Any word from the worker, even one that could not be parsed, shows it is alive.
    let alive = self.connection.take_sign_of_life();
    // Only this reader adds to the count, so a zero read here stays zero until it does: every
    // batch the driver held was passed on, and these may go straight to the listener.
    if alive || self.connection.via_driver.load(Ordering::Acquire) > 0 {
      self.connection.via_driver.fetch_add(1, Ordering::AcqRel);
      self.report(Report::Messages { alive, notices });
    } else if !notices.is_empty() {
      self.listener.notify(notices);
    }
  }

  fn output(&self, stream: StreamName, chunk: Vec<u8>) {
    self.listener.notify(vec![Notice::Output { stream, chunk }]);
  }

  fn sends_settled(&self, settled: Vec<Notice>) {
    self.listener.notify(settled);
  }

  fn channel_closed(&self) {
    self.report(Report::ChannelClosed);
  }

  fn exited(&self, reaped: Result<Reaped, Error>) {
    self.report(Report::Exited(reaped));
  }
}
