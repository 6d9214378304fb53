//! Helpers for the unit tests that start real processes. Children are started by the launcher
//! binary, which the addon looks for next to the file its code was loaded from — for a unit
//! test, the test executable in `target/<profile>/deps/`. The binary a build placed at the
//! package root (`npm run build` / `build:debug`) is copied there once.
//!
//! Code that works on any started child (`collect`, `kill`) is tested without the launcher: a
//! [`PlainChild`] is `sh -c` started by std's `Command` as the leader of its own process group,
//! with real pipes, reaped by a thread of its own.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use tokio::net::unix::pipe;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::watch;

use crate::error::Error;
use crate::kill::Spawned;
use crate::launch::Launched;
use crate::vocabulary::exit::ExitStatus;
use crate::vocabulary::stdio::StdioMode;

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

/// `sh -c <script>` as the leader of a new process group, started without the launcher.
pub struct PlainChild {
  pid: u32,
  exit: watch::Receiver<Option<ExitStatus>>,
}

impl PlainChild {
  /// Starts `script` with its stdio ignored. Call inside the runtime.
  pub fn start(script: &str) -> Self {
    Self::launched(script, [StdioMode::Ignore; 3]).process
  }

  /// Starts `script` with pipes where `stdio` says so, handed over as `launch` hands them over.
  /// Call inside the runtime (the pipes register with it).
  pub fn launched(script: &str, stdio: [StdioMode; 3]) -> Launched<PlainChild> {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).process_group(0);
    let mut ours: [Option<OwnedFd>; 3] = Default::default();
    for (fd, mode) in stdio.into_iter().enumerate() {
      let given = match mode {
        StdioMode::Ignore => Stdio::null(),
        StdioMode::Inherit => Stdio::inherit(),
        StdioMode::Pipe => {
          let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("a pipe");
          let (our_end, their_end) = if fd == 0 {
            (write, read)
          } else {
            (read, write)
          };
          ours[fd] = Some(our_end);
          Stdio::from(their_end)
        }
      };
      match fd {
        0 => command.stdin(given),
        1 => command.stdout(given),
        _ => command.stderr(given),
      };
    }
    let mut child = command.spawn().expect("sh starts");
    // The child has its copies of the pipe ends; ours must go, or no EOF is ever read.
    drop(command);
    let [stdin, stdout, stderr] = ours;
    let pid = child.id();
    let (report, exit) = watch::channel(None);
    std::thread::spawn(move || {
      let status = child.wait().expect("the child is reaped");
      let status = match status.signal() {
        Some(signo) => ExitStatus::Signal(signo),
        None => ExitStatus::Code(status.code().unwrap_or_default()),
      };
      report.send_replace(Some(status));
    });
    Launched {
      pid,
      stdin: stdin.map(|fd| pipe::Sender::from_owned_fd(fd).expect("stdin pipe")),
      stdout: stdout.map(|fd| pipe::Receiver::from_owned_fd(fd).expect("stdout pipe")),
      stderr: stderr.map(|fd| pipe::Receiver::from_owned_fd(fd).expect("stderr pipe")),
      process: PlainChild { pid, exit },
    }
  }

  /// Members of its group that are still alive.
  pub fn living_members(&self) -> usize {
    living_members(self.pid as i32)
  }
}

impl Spawned for PlainChild {
  fn signal_group(&self, signal: Signal) -> bool {
    if self.exit.borrow().is_some() {
      return false;
    }
    let group = nix::unistd::Pid::from_raw(self.pid as i32);
    nix::sys::signal::killpg(group, signal).is_ok()
  }

  fn wait(&self) -> impl Future<Output = Result<ExitStatus, Error>> + Send {
    let mut exit = self.exit.clone();
    async move {
      let status = exit
        .wait_for(Option::is_some)
        .await
        .expect("the reaping thread reports");
      Ok(status.expect("waited for Some"))
    }
  }
}
