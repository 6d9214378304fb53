//! Sizes and durations that several modules must agree on, each defined once.

use std::time::Duration;

/// The most read from a child's pipe at once, by `collect` and by `stream` (and so by
/// `lib/child.js`, which asks the native side for chunks of up to this size).
pub const READ_CHUNK: usize = 1 << 20;

/// Every pipe to or from a child is widened to this size: fewer wake-ups per megabyte moved.
/// 1 MiB is the unprivileged maximum of `/proc/sys/fs/pipe-max-size` by default, and equal to
/// [`READ_CHUNK`], so one read can empty a full pipe.
pub const PIPE_SIZE: usize = READ_CHUNK;

/// How long output is still read after the leader was reaped, for descendants that keep its
/// pipes open: a grandchild holding a pipe never makes a call hang.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);
