//! The Pool: many supervised workers behind one bounded request queue (DESIGN §6).
//!
//! Every decision the pool makes — where a request goes, how long it may wait, what a worker's
//! death does to the requests it held, when to restart, recycle, grow, shrink or give up — is
//! taken in [`machine`], a pure state machine with no process, socket or clock, so each rule is
//! tested alone and the whole is hammered with random inputs. [`policy`] holds the validated
//! numbers it runs by, [`options`] reads them from JavaScript's options.
//!
//! The I/O is the [`driver`]'s: it carries out the machine's actions on workers started and
//! watched by the Supervisor's worker plumbing (`crate::supervisor::worker`), runs the timers,
//! and samples each worker group's memory ([`memory`]). [`handle`] is JavaScript's side of it,
//! [`notice`] what it tells JavaScript, [`stats`] what `stats()` adds to the machine's counts.

pub mod driver;
pub mod handle;
pub mod machine;
pub mod memory;
pub mod notice;
pub mod options;
pub mod policy;
pub mod stats;
