//! The Supervisor: keeps one worker process alive over a Node IPC channel.
//!
//! Its rules (restart policy, backoff, health checks, the bounded stop) live in [`machine`], a
//! pure state machine unit-tested without processes or time; [`driver`] carries out what it
//! decides with tokio, and is the only part that touches processes, sockets and clocks.

pub mod driver;
pub mod machine;
