//! Helpers for the unit tests that start real processes. Children are started by the launcher
//! binary, which the addon looks for next to the file its code was loaded from — for a unit
//! test, the test executable in `target/<profile>/deps/`. It is another crate of the workspace, which
//! nothing guarantees is built when these tests run, so they build it themselves and copy it
//! there: `cargo test` needs nothing built beforehand.
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
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::net::unix::pipe;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::watch;

use crate::error::Error;
use crate::kill::Spawned;
use crate::launch::Launched;
use crate::vocabulary::exit::{ExitStatus, Reaped, ResourceUsage};
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

/// `sh -c <script>` as the leader of a new process group, started without the launcher.
pub struct PlainChild {
  pid: u32,
  exit: watch::Receiver<Option<Reaped>>,
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
    let child = command.spawn().expect("sh starts");
    // The child has its copies of the pipe ends; ours must go, or no EOF is ever read.
    drop(command);
    let [stdin, stdout, stderr] = ours;
    let pid = child.id();
    let (report, exit) = watch::channel(None);
    std::thread::spawn(move || {
      report.send_replace(Some(reap(child)));
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

/// Waits for `child` with `wait4`, as the launcher does, for its resource usage too.
fn reap(child: std::process::Child) -> Reaped {
  let mut status = 0;
  // SAFETY: an all-zero rusage is a valid out-parameter.
  let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
  // SAFETY: wait4 writes into the two locals; the child is ours and waited for only here.
  let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
  assert_eq!(reaped, child.id() as i32, "the child is reaped");
  let status = std::process::ExitStatus::from_raw(status);
  let time = |t: libc::timeval| {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
  };
  Reaped {
    status: match status.signal() {
      Some(signo) => ExitStatus::Signal(signo),
      None => ExitStatus::Code(status.code().unwrap_or_default()),
    },
    usage: ResourceUsage {
      max_rss_bytes: usage.ru_maxrss as u64 * 1024,
      user_cpu: time(usage.ru_utime),
      system_cpu: time(usage.ru_stime),
    },
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

  fn wait(&self) -> impl Future<Output = Result<Reaped, Error>> + Send {
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

/// For property tests of stream decoders: `bytes` cut at the given points, in order.
pub fn split<'a>(bytes: &'a [u8], cuts: &[proptest::sample::Index]) -> Vec<&'a [u8]> {
  let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
  at.extend([0, bytes.len()]);
  at.sort_unstable();
  at.windows(2).map(|pair| &bytes[pair[0]..pair[1]]).collect()
}

/// Up to 23 cut points, for [`split`].
pub fn cuts() -> impl proptest::strategy::Strategy<Value = Vec<proptest::sample::Index>> {
  proptest::collection::vec(proptest::arbitrary::any::<proptest::sample::Index>(), 0..24)
}
