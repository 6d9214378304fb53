//! Helpers for the unit tests that start real processes. Children are started by the launcher
//! binary, which the addon looks for next to the file its code was loaded from — for a unit
//! test, the test executable in `target/<profile>/deps/`. It is another crate of the workspace, which
//! nothing guarantees is built when these tests run, so they build it themselves and copy it
//! there: `cargo test` needs nothing built beforehand.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Once, OnceLock};

use serde_json::Value;
use tokio::runtime::{Builder, Runtime};

const LAUNCHER: &str = "tethered-launcher";

/// Runs `future` on the one runtime all these tests share. The launcher connection is
/// process-wide and lives in the runtime that opened it (in Node, napi's), so a runtime per test
/// would take it down with the first test that ends.
pub fn block_on<F: Future>(future: F) -> F::Output {
  static RUNTIME: OnceLock<Runtime> = OnceLock::new();
  RUNTIME
    .get_or_init(|| {
      Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
    })
    .block_on(future)
}

/// Puts an up-to-date launcher next to the test executable, once per test process.
pub fn launcher_in_place() {
  static PLACED: Once = Once::new();
  PLACED.call_once(|| {
    let built = build_launcher();
    // Copied beside, then renamed over: a launcher still running from an earlier test run
    // keeps its (replaced) file.
    let exe = std::env::current_exe().expect("the test executable's path");
    let dest = exe.with_file_name(LAUNCHER);
    let partial: PathBuf = exe.with_file_name(format!("{LAUNCHER}.{}", std::process::id()));
    std::fs::copy(&built, &partial).expect("copy the launcher next to the test executable");
    std::fs::rename(&partial, &dest).expect("put the launcher in place");
  });
}

/// Builds the launcher with the cargo that runs these tests (cargo does nothing when the binary
/// is up to date) and returns the path cargo reports for it, whatever the target directory.
fn build_launcher() -> PathBuf {
  let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
  let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
  let output = Command::new(cargo)
    .args([
      "build",
      "--package",
      LAUNCHER,
      "--message-format=json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .output()
    .expect("run cargo to build the launcher");
  assert!(
    output.status.success(),
    "building {LAUNCHER} failed:\n{}",
    String::from_utf8_lossy(&output.stderr)
  );
  output
    .stdout
    .split(|&byte| byte == b'\n')
    .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
    .filter(|message| {
      message["reason"] == "compiler-artifact" && message["target"]["name"] == LAUNCHER
    })
    .find_map(|message| message["executable"].as_str().map(PathBuf::from))
    .unwrap_or_else(|| panic!("cargo built no {LAUNCHER} executable"))
}

/// Processes of group `pgid` that are not zombies, from /proc (this machine's init may leave
/// orphaned zombies around, which still count as group members for `kill`).
pub fn living_members(pgid: i32) -> usize {
  std::fs::read_dir("/proc")
    .expect("/proc")
    .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
    .filter(|stat| {
      // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
      let fields: Vec<&str> = stat[stat.rfind(')').unwrap_or(0) + 1..]
        .split_whitespace()
        .collect();
      fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
    .count()
}
