//! Signal names as Node spells them (`'SIGTERM'`). Parsing a signal given by the user is option
//! validation and lives in `crate::options`.

use nix::sys::signal::Signal;

/// The Node name of a signal number that ended a process, e.g. 15 → `SIGTERM`.
pub fn name_of(signo: i32) -> String {
  match Signal::try_from(signo) {
    Ok(signal) => signal.as_str().to_string(),
    Err(_) => format!("SIG{signo}"),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn exit_signals_get_node_names() {
    assert_eq!(name_of(9), "SIGKILL");
    assert_eq!(name_of(libc::SIGSEGV), "SIGSEGV");
    assert_eq!(name_of(200), "SIG200");
  }
}
