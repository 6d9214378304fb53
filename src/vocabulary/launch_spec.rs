//! What to start: the program, its arguments, its directory and umask, its whole environment,
//! and what it is held to (rlimits, user, group). The options produce it, `launch` turns it into a launcher
//! request.
//!
//! The environment is kept as the OS gives it (bytes): a variable this process inherited is
//! handed on even when it is not valid UTF-8. Only values a user writes in `options.env`
//! are JavaScript strings.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use super::confinement::Confinement;

/// What to start: the program, its arguments, where and with which environment.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
  pub command: String,
  pub args: Vec<String>,
  /// The directory the child starts in; `None` keeps the launcher's.
  pub cwd: Option<PathBuf>,
  /// The child's file-mode creation mask; `None` keeps the launcher's.
  pub umask: Option<u32>,
  /// The complete environment of the child, in order.
  pub env: Vec<(OsString, OsString)>,
  pub kill_on_parent_exit: bool,
  pub confinement: Confinement,
}

/// What a child inherits from this process at the moment it is asked for, as Node's children
/// do: the directory (`process.cwd()`) and the umask (`process.umask()`). Read on the JavaScript
/// thread, the one that changes them; `None` when it cannot be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentState {
  pub cwd: Option<PathBuf>,
  pub umask: Option<u32>,
}

impl LaunchSpec {
  /// The `PATH` the child will see, which is where its command is looked up (as libuv does).
  pub fn path_var(&self) -> Option<&OsStr> {
    self
      .env
      .iter()
      .find(|(k, _)| k == "PATH")
      .map(|(_, v)| v.as_os_str())
  }
}
