//! The connected worker as three threads see it: the caller's, which writes messages and
//! registers requests; the driver's, which opens and closes the connection and times requests
//! out; and the worker's reader, which hands answers back.
//!
//! It is one lock, not messages between tasks, because a request must be registered before its
//! bytes leave (the answer may be read before the write returns), and an answer, a timeout and
//! the worker's death race for the same request: whoever takes it from [`Link::requests`]
//! settles it, so it is settled exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::channel::Channel;
use super::lock;
use super::notice::CallId;

pub struct Connection {
  link: Mutex<Link>,
  /// Whether the driver has a use for the next sign of life: the restart count is above zero
  /// or a ping awaits its pong. Otherwise readers do not wake the driver for every message.
  wants_sign_of_life: AtomicBool,
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

impl Default for Connection {
  /// Not connected, nothing in flight.
  fn default() -> Self {
    Connection {
      link: Mutex::new(Link {
        channel: None,
        requests: HashMap::new(),
        next_request_id: 1,
      }),
      wants_sign_of_life: AtomicBool::new(false),
    }
  }
}

impl Connection {
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
}
