//! tethered: `child_process` for production servers.
//!
//! One module per concern: `options` (argument validation), `signals` (names and numbers),
//! `launch` (starting a process group), `kill` (the kill escalation every early end shares),
//! `collect` (pipes, limits, timeouts), `stream` (pipes read and written on demand), `ipc`
//! (Node's IPC wire format and tethered's messages on it), `supervisor` (keeping a worker
//! alive), `error` (the one error type) and `bindings` (the napi glue, the only JS-facing code).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod collect;
pub mod error;
pub mod ipc;
pub mod kill;
pub mod launch;
pub mod launcher;
pub mod options;
pub mod pool;
pub mod signals;
pub mod stream;
pub mod supervisor;
#[cfg(test)]
mod test_support;

// napi-derive registers nothing in test builds, so the glue would look unused there.
#[cfg(not(test))]
mod bindings;
