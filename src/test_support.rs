//! Helpers for the unit tests that start real processes. Children are started by the launcher
//! binary, which the addon looks for next to the file its code was loaded from — for a unit
//! test, the test executable in `target/<profile>/deps/`. The binary a build placed at the
//! package root (`npm run build` / `build:debug`) is copied there once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

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

/// Puts the launcher next to the test executable; panics with what to do when none was built.
pub fn launcher_in_place() {
  static PLACED: Once = Once::new();
  PLACED.call_once(|| {
    let exe = std::env::current_exe().expect("the test executable's path");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = [
      root.join(LAUNCHER),
      root.join("target/debug").join(LAUNCHER),
      root.join("target/release").join(LAUNCHER),
    ]
    .into_iter()
    .filter_map(|path| Some((path.metadata().ok()?.modified().ok()?, path)))
    .max()
    .map(|(_, path)| path)
    .unwrap_or_else(|| {
      panic!("no {LAUNCHER} was built: run `npm run build:debug` before `cargo test`")
    });
    // Copied beside, then renamed over: a launcher still running from an earlier test run
    // keeps its (replaced) file.
    let dest = exe.with_file_name(LAUNCHER);
    let partial: PathBuf = exe.with_file_name(format!("{LAUNCHER}.{}", std::process::id()));
    std::fs::copy(&built, &partial).expect("copy the launcher next to the test executable");
    std::fs::rename(&partial, &dest).expect("put the launcher in place");
  });
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
