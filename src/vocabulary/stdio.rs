//! A child's standard streams: what each is connected to, and the names of the two it writes.

/// What each of the child's standard streams is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
  Pipe,
  Ignore,
  Inherit,
}

/// One of the child's output streams: which pipe to read, which one passed `maxBuffer`, where a
/// worker's output chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamName {
  Stdout,
  Stderr,
}

impl StreamName {
  pub fn as_str(self) -> &'static str {
    match self {
      StreamName::Stdout => "stdout",
      StreamName::Stderr => "stderr",
    }
  }
}
