//! tethered: `child_process` for production servers.
//!
//! One module per concern, and dependencies run one way, from the JavaScript edge down to plain
//! words:
//!
//! 1. `bindings` — the napi glue, the only JS-facing code: converts, and decides nothing.
//! 2. The features: `collect` (run to the end under limits, and what `spawnCollect` and
//!    `runProcess` make of it), `stream` (pipes read and written on demand), `supervisor`
//!    (keeping a worker alive), `pool` (many workers behind one bounded queue), with `options` (argument validation into typed plans) and `ipc`
//!    (Node's IPC wire format) beside them.
//! 3. `launch` (starting a process group) and `kill` (the one way tethered ends a group early).
//! 4. `launcher::client` (the addon's side of the launcher process), then the
//!    `tethered_launcher::protocol` crate (the wire format it shares with the launcher binary,
//!    a crate of its own that cannot link napi or tokio).
//! 5. `error` (the one error type), then `vocabulary`: the leaf modules every layer speaks in
//!    (values, names, limits, exit status), which import nothing of the crate.
//!
//! A module imports only from its own layer or from below, so no two modules import each
//! other, and a change low in the list is never shaped by a caller above it.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod collect;
pub mod error;
pub mod ipc;
pub mod kill;
pub mod launch;
pub mod launcher;
pub mod options;
pub mod pool;
pub mod stream;
pub mod supervisor;
#[cfg(test)]
mod test_support;
pub mod vocabulary;

// napi-derive registers nothing in test builds, so the glue would look unused there.
#[cfg(not(test))]
mod bindings;
