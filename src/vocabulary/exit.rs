//! How a process ended, and why tethered ended it when it did. Every feature (collect, stream,
//! supervisor) reports ends in these terms; the launcher client produces [`ExitStatus`].

use std::time::Duration;

use super::stdio::StreamName;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
  Code(i32),
  Signal(i32),
}

/// Why tethered ended the process itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
  Timeout(Duration),
  MaxBuffer { stream: StreamName, limit: usize },
  Aborted,
}
