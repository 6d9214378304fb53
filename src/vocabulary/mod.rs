//! The crate's shared words: the types and constants more than one part of tethered speaks in.
//!
//! They live here, apart from the code that produces or consumes them, so that dependencies run
//! one way. A module that needs `ExitStatus` or the read size should not have to import the
//! launcher client or `collect` to get it, and two modules that both need a word should not end
//! up importing each other. So nothing under `vocabulary` imports anything of the crate outside
//! `vocabulary`, and each file here is plain data with, at most, a few lines of behaviour that
//! belong to the data itself (a name, a lookup).

pub mod confinement;
pub mod exit;
pub mod kill_policy;
pub mod launch_spec;
pub mod limits;
pub mod signals;
pub mod stdio;
pub mod value;
