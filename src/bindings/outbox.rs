//! The [`Outbox`]: how a driver's notices reach JavaScript, and why Node exits exactly when it
//! should. The Supervisor and the Pool each have one, for their own notice type.
//!
//! - Notices queue up in the outbox. The first one queued schedules one call of a threadsafe
//!   function; that call takes the whole queue on the JS thread ([`Outbox::deliver`]) and hands
//!   it to the JS callback as one array, so a burst of 10,000 messages costs a few JS calls.
//! - The threadsafe function exists only while there is work under way: from the call that
//!   brings the callback ([`Outbox::attach`]) until the driver is at rest with every call
//!   settled. It is a strong one — a running worker keeps Node alive, as a forked child does —
//!   and it is released on the JS thread, as the last step of a delivery, as soon as a
//!   delivered batch leaves the driver at rest with no call unsettled ([`Unsettled`] counts
//!   them). (A weak one would lose queued notices when Node exits; one kept for ever would
//!   keep Node alive for ever.) Holding no callback at rest also lets an unused supervisor or
//!   pool be garbage-collected (its driver then ends).
//! - The outbox is also the [`ChannelHost`] of its workers' channels: each is watched on
//!   Node's loop (see `uv.rs`), and what a read brings is delivered there and then, with a
//!   direct call of the same callback ([`Outbox::read_and_deliver`]) — a message from a worker
//!   is one wake-up of the JS thread, not a tokio thread's and then Node's. It is still the one
//!   way out: the read's notices go through the same queue, taking along whatever other
//!   threads queued before them, in order. A channel handed over on another thread is watched
//!   from the next delivery on (`adopting`).
//! - What workers said is counted in a [`Backlog`] from when it is queued here until a
//!   delivery hands it to JavaScript; workers' readers stop reading while it is full, so a JS
//!   thread that is busy, or slower than a worker writes, holds the worker back rather than
//!   letting the queue grow.
//! - A call that does not finish at once returns an id; its outcome is a `settled` notice in
//!   line with the events. Call ids are JavaScript numbers counted up from 1; exact below 2^53,
//!   they never repeat in a driver's life, so a settlement always finds its call.

use std::ptr;
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue};

use super::uv;
use crate::ipc::backlog::Backlog;
use crate::ipc::Payload;
use crate::supervisor::worker::{ChannelHost, ChannelReader, ReadOutcome};

/// The most reads of one channel per wake-up of the JS thread before its notices are
/// delivered: a 1 MiB message in one delivery, and other handles still served in between.
const READS_PER_WAKE: usize = 4;

/// What an outbox needs to know of the notices it carries.
pub trait Deliverable: Sized + Send + 'static {
  /// What the getters and the release decision read, as of the last delivered batch.
  type Snapshot: Copy + Send + 'static;
  /// The snapshot before any notice.
  const INITIAL: Self::Snapshot;
  fn snapshot(&self) -> Option<Self::Snapshot>;
  /// The call this notice settles, if it settles one.
  fn settles(&self) -> Option<u64>;
  /// The bytes of what a worker said that this notice holds, counted in the backlog.
  fn bytes(&self) -> usize;
  fn is_at_rest(snapshot: &Self::Snapshot) -> bool;
  /// The notices of one delivery as the JS callback receives them.
  fn to_js(env: &Env, notices: Vec<Self>) -> Result<Array<'_>>;
}

/// Delivers the queued notices when Node runs it: the JS callback receives them as one array.
type Delivery<N> = ThreadsafeFunction<(), (), Batch<N>, Status, false>;

/// The notices on their way to JavaScript, and what the JS thread knows from those delivered.
pub struct Outbox<N: Deliverable> {
  deliveries: Mutex<Deliveries<N>>,
  backlog: Arc<Backlog>,
}

struct Deliveries<N: Deliverable> {
  queue: Vec<N>,
  /// A delivery call is queued with Node and will take everything queued here.
  flush_scheduled: bool,
  /// Present while work is under way (see the module comment).
  delivery: Option<Delivery<N>>,
  /// The same callback, for deliveries made on the JS thread directly; present with
  /// `delivery`.
  callback: Option<CallbackRef>,
  /// Channels handed over and not watched yet: the next delivery starts watching them.
  adopting: Vec<Arc<ChannelReader>>,
  /// As of the last delivered batch.
  snapshot: N::Snapshot,
  unsettled: Unsettled,
}

/// A reference to the JS callback, made, used and deleted on the JS thread only.
struct CallbackRef(sys::napi_ref);

// SAFETY: the reference is only created, read and deleted on the JS thread (in `attach` and in
// deliveries); other threads only move the struct holding it.
unsafe impl Send for CallbackRef {}

/// The calls whose `settled` notice has not been delivered yet; while there are any, the
/// driver keeps Node alive. Counted here alone: up when a call is made, down when its
/// settlement is delivered.
#[derive(Default)]
struct Unsettled(usize);

impl Unsettled {
  fn add(&mut self) {
    // Every call holds a JS promise, so memory runs out long before the count could.
    self.0 = self.0.saturating_add(1);
  }

  /// Takes in a delivered settlement. One for a call never counted is a bug of this crate: it
  /// is reported, and the count stays at zero rather than wrapping to a count that would keep
  /// Node alive for ever.
  fn settle(&mut self, call: u64) -> std::result::Result<(), String> {
    match self.0.checked_sub(1) {
      Some(left) => {
        self.0 = left;
        Ok(())
      }
      None => Err(format!(
        "tethered: a settlement for call {call} arrived while no call was waiting for one"
      )),
    }
  }

  fn is_zero(&self) -> bool {
    self.0 == 0
  }
}

impl<N: Deliverable> Outbox<N> {
  pub fn new() -> Arc<Self> {
    Arc::new(Outbox {
      deliveries: Mutex::new(Deliveries {
        queue: Vec::new(),
        flush_scheduled: false,
        delivery: None,
        callback: None,
        adopting: Vec::new(),
        snapshot: N::INITIAL,
        unsettled: Unsettled::default(),
      }),
      backlog: Arc::default(),
    })
  }

  /// Counts what is queued here and not yet delivered; for the readers of the workers whose
  /// notices come here.
  pub fn backlog(&self) -> Arc<Backlog> {
    self.backlog.clone()
  }

  fn lock(&self) -> MutexGuard<'_, Deliveries<N>> {
    // A panic while holding the lock leaves the queue usable: recover it rather than poison
    // every later call.
    self.deliveries.lock().unwrap_or_else(|e| e.into_inner())
  }

  /// Makes `on_notices` the callback of every delivery until the driver is at rest again, if
  /// there is none yet. Called by every method that may bring work.
  pub fn attach(self: &Arc<Self>, env: &Env, on_notices: Function<Batch<N>, ()>) -> Result<()> {
    let mut deliveries = self.lock();
    if deliveries.delivery.is_none() {
      let mut callback = ptr::null_mut();
      // SAFETY: on the JS thread, with a live function of this env; the reference is deleted
      // when the delivery function is released (`deliver`).
      check_status!(unsafe {
        sys::napi_create_reference(env.raw(), on_notices.raw(), 1, &mut callback)
      })?;
      // Weak: the outbox owns the delivery function, which must not keep it alive.
      let outbox = Arc::downgrade(self);
      let delivery = on_notices
        .build_threadsafe_function::<()>()
        .callee_handled::<false>()
        .build_callback(move |ctx| {
          let batch = outbox.upgrade().map(|outbox| outbox.deliver(&ctx.env));
          Ok(batch.unwrap_or_default())
        })?;
      deliveries.delivery = Some(delivery);
      deliveries.callback = Some(CallbackRef(callback));
    }
    Ok(())
  }

  /// Counts `call`, made and accepted, as waiting for its `settled` notice (until then the
  /// driver keeps Node alive), and gives its id to JavaScript. Counting after the call is made
  /// is early enough: a settlement is taken in only by a delivery, and deliveries run on the
  /// JS thread, after the call returns.
  pub fn settled_later(&self, call: u64) -> f64 {
    self.lock().unsettled.add();
    call_id_to_js(call)
  }

  pub fn snapshot(&self) -> N::Snapshot {
    self.lock().snapshot
  }

  /// Whether the driver may have work or calls under way.
  pub fn is_busy(&self) -> bool {
    self.lock().delivery.is_some()
  }

  /// Queues notices, and schedules a delivery if none is on its way.
  pub fn push(&self, notices: Vec<N>) {
    self.backlog.add(notices.iter().map(N::bytes).sum());
    let mut deliveries = self.lock();
    deliveries.queue.extend(notices);
    deliveries.schedule();
  }

  /// One delivery, run on the JS thread when Node calls the delivery function: starts
  /// watching the channels handed over, takes in every queued notice, then releases the
  /// delivery function if they leave nothing under way.
  fn deliver(self: &Arc<Self>, env: &Env) -> Batch<N> {
    let (batch, released) = self.take_in(env);
    release(env, released);
    batch
  }

  /// What a delivery takes in (see [`Outbox::deliver`]), and the delivery function and
  /// callback to release once the batch is handed over.
  fn take_in(self: &Arc<Self>, env: &Env) -> (Batch<N>, Option<Released<N>>) {
    let (batch, released, adopting) = {
      let mut deliveries = self.lock();
      let batch = deliveries.take_batch();
      let adopting = std::mem::take(&mut deliveries.adopting);
      (batch, deliveries.release_if_done(), adopting)
    };
    for reader in adopting {
      self.watch(env, reader);
    }
    self
      .backlog
      .remove(batch.notices.iter().map(N::bytes).sum());
    (batch, released)
  }

  /// Watches `reader`'s channel on Node's loop; where that cannot be (see `uv.rs`), a tokio
  /// task reads it.
  fn watch(self: &Arc<Self>, env: &Env, reader: Arc<ChannelReader>) {
    let outbox = Arc::downgrade(self);
    let raw_env = env.raw();
    let host_reader = reader.clone();
    let on_readable = Box::new(move || {
      let env = Env::from_raw(raw_env);
      match outbox.upgrade() {
        Some(outbox) => outbox.read_and_deliver(&env, &host_reader),
        // Nobody listens any more; the channel is read to its end all the same.
        None => host_reader.read() != ReadOutcome::Finished,
      }
    });
    if uv::watch_readable(env, reader.fd(), on_readable).is_err() {
      napi::bindgen_prelude::spawn(reader.read_in_task(self.backlog.clone()));
    }
  }

  /// On the JS thread, when `reader`'s channel is readable: reads what it has, then delivers
  /// the queue at once, with what the reads added. Returns whether to go on watching.
  fn read_and_deliver(self: &Arc<Self>, env: &Env, reader: &ChannelReader) -> bool {
    // What other threads queue meanwhile schedules no delivery call: this one takes it.
    self.lock().flush_scheduled = true;
    let mut outcome = ReadOutcome::Read;
    for _ in 0..READS_PER_WAKE {
      outcome = reader.read();
      if outcome != ReadOutcome::Read {
        break;
      }
    }
    let callback = {
      let mut deliveries = self.lock();
      match &deliveries.callback {
        Some(callback) if !deliveries.queue.is_empty() || !deliveries.adopting.is_empty() => {
          Some(callback.0)
        }
        _ => {
          deliveries.flush_scheduled = false;
          None
        }
      }
    };
    if let Some(callback) = callback {
      let (batch, released) = self.take_in(env);
      uv::call_back(env, callback, || {
        // SAFETY: on the JS thread, inside the handle scope `call_back` opened.
        unsafe { Batch::to_napi_value(env.raw(), batch) }
      });
      release(env, released);
    }
    outcome != ReadOutcome::Finished
  }
}

/// The delivery function and the callback's reference, no longer needed: nothing of the
/// driver is under way.
type Released<N> = (Delivery<N>, CallbackRef);

/// Drops what a delivery released, on the JS thread, outside the lock; from here on nothing of
/// this driver keeps Node alive.
fn release<N: Deliverable>(env: &Env, released: Option<Released<N>>) {
  if let Some((delivery, callback)) = released {
    drop(delivery);
    // SAFETY: on the JS thread; the reference was made by `attach` and is deleted once, here,
    // after it was taken out of the outbox.
    unsafe { sys::napi_delete_reference(env.raw(), callback.0) };
  }
}

impl<N: Deliverable> ChannelHost for Outbox<N> {
  fn adopt(&self, reader: Arc<ChannelReader>) {
    let mut deliveries = self.lock();
    deliveries.adopting.push(reader);
    deliveries.schedule();
  }
}

impl<N: Deliverable> Deliveries<N> {
  /// Has Node call the delivery function, unless a call is on its way already.
  fn schedule(&mut self) {
    if self.flush_scheduled {
      return;
    }
    if let Some(delivery) = &self.delivery {
      // Fails only while Node is shutting down, when nobody is left to tell. The queue is
      // taken when Node runs the call, so everything queued until then rides along.
      let status = delivery.call((), ThreadsafeFunctionCallMode::NonBlocking);
      self.flush_scheduled = status == Status::Ok;
    }
  }

  /// Takes the queue, and takes in what the JS thread must know of it: the latest snapshot
  /// and which calls are settled.
  fn take_batch(&mut self) -> Batch<N> {
    self.flush_scheduled = false;
    let notices = std::mem::take(&mut self.queue);
    let mut warnings = Vec::new();
    for notice in &notices {
      if let Some(snapshot) = notice.snapshot() {
        self.snapshot = snapshot;
      }
      if let Some(call) = notice.settles() {
        if let Err(bug) = self.unsettled.settle(call) {
          warnings.push(bug);
        }
      }
    }
    Batch { notices, warnings }
  }

  /// The delivery function and the callback's reference, handed over to be dropped, once the
  /// driver is at rest with every call settled: nothing is left to deliver until a call brings
  /// a new one.
  fn release_if_done(&mut self) -> Option<Released<N>> {
    if N::is_at_rest(&self.snapshot) && self.unsettled.is_zero() {
      self.delivery.take().zip(self.callback.take())
    } else {
      None
    }
  }
}

/// The notices of one delivery, and reports of bugs found while taking them in.
pub struct Batch<N> {
  notices: Vec<N>,
  warnings: Vec<String>,
}

impl<N> Default for Batch<N> {
  fn default() -> Self {
    Batch {
      notices: Vec::new(),
      warnings: Vec::new(),
    }
  }
}

impl<N: Deliverable> ToNapiValue for Batch<N> {
  // A plain conversion: what a delivery does to the outbox was done by `Outbox::deliver`.
  unsafe fn to_napi_value(raw_env: sys::napi_env, batch: Self) -> Result<sys::napi_value> {
    let env = Env::from_raw(raw_env);
    let mut notices = N::to_js(&env, batch.notices)?;
    for warning in batch.warnings {
      let mut obj = Object::new(&env)?;
      obj.set("kind", "warning")?;
      obj.set("value", warning)?;
      notices.insert(obj)?;
    }
    Ok(notices.raw())
  }
}

pub fn call_id_to_js(call: u64) -> f64 {
  call as f64
}

/// A message's payload for JavaScript: JSON text as a string, a v8 payload as a Buffer that
/// takes over the bytes (no copy).
pub fn payload_to_js(env: &Env, payload: Payload) -> Result<Unknown<'_>> {
  match payload {
    Payload::Json(json) => json_text(env, json),
    Payload::Advanced(bytes) => Buffer::from(bytes).into_unknown(env),
  }
}

/// JSON text as a JS string. ASCII, which most JSON is, goes over as Latin-1: V8 copies that
/// as it is instead of decoding UTF-8 (a measurable part of receiving a 1 MiB message).
fn json_text(env: &Env, json: String) -> Result<Unknown<'_>> {
  if json.is_ascii() {
    Latin1String::from(json).into_unknown(env)
  } else {
    json.into_unknown(env)
  }
}
