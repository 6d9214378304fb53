//! The Pool: many supervised workers behind one bounded request queue (DESIGN §6).
//!
//! Every decision the pool makes — where a request goes, how long it may wait, what a worker's
//! death does to the requests it held, when to restart, recycle, grow, shrink or give up — is
//! taken in [`machine`], a pure state machine with no process, socket or clock, so each rule is
//! tested alone and the whole is hammered with random inputs. [`policy`] holds the validated
//! numbers it runs by. The I/O (spawning, the IPC channel, timers, RSS sampling) belongs to a
//! driver that carries out the machine's actions; it reuses the Supervisor's worker plumbing.

pub mod machine;
pub mod policy;
