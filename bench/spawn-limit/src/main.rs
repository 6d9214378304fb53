//! The physical limit that `bench/spawn.mjs` compares tethered with: a loop that starts
//! `/bin/true` with `posix_spawn` and waits for it, once sequentially and once with a fixed
//! number in flight, in a process that holds almost no memory.
//!
//! Why this shape: any spawner, tethered included, pays at least what the C library's
//! `posix_spawn` (a `clone(CLONE_VM | CLONE_VFORK)` then `execve`) and the kernel's exec, exit
//! and reap cost. Measuring that floor in the same run as the Node contenders turns "3× faster
//! than child_process" into "this fraction of what the machine can do", which stays meaningful
//! on a busy machine where absolute rates drift. No pipes are made and no output is read:
//! anything tethered does beyond the bare spawn and wait is its own cost.
//!
//! `spawn-limit <sequential count> <concurrent count> <in flight>` prints one JSON line:
//! `{"sequential": ops/s, "concurrent": ops/s}`.

use std::ffi::CStr;
use std::io;
use std::time::Instant;

const PROGRAM: &CStr = c"/bin/true";

extern "C" {
  /// The C library's environment block, passed on as a spawner passes its own.
  static environ: *const *mut libc::c_char;
}

/// Starts `/bin/true`; its pid.
fn spawn_true() -> io::Result<libc::pid_t> {
  let argv = [PROGRAM.as_ptr() as *mut libc::c_char, std::ptr::null_mut()];
  let mut pid = 0;
  // SAFETY: a NUL-terminated path, a NULL-terminated argv that outlives the call, and the
  // process's own environment; no file actions or attributes (NULL is allowed for both).
  let result = unsafe {
    libc::posix_spawn(
      &mut pid,
      PROGRAM.as_ptr(),
      std::ptr::null(),
      std::ptr::null(),
      argv.as_ptr(),
      environ,
    )
  };
  if result != 0 {
    return Err(io::Error::from_raw_os_error(result));
  }
  Ok(pid)
}

/// Waits for `pid` (-1: any child) and checks it exited 0; the pid reaped.
fn reap(pid: libc::pid_t) -> io::Result<libc::pid_t> {
  let mut status = 0;
  loop {
    // SAFETY: waitpid writes the status into the local above.
    let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
    if reaped > 0 {
      if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
          "/bin/true ended with status {status:#x}"
        )));
      }
      return Ok(reaped);
    }
    let err = io::Error::last_os_error();
    if err.kind() != io::ErrorKind::Interrupted {
      return Err(err);
    }
  }
}

/// Spawns and waits `total` times, one at a time; ops/s.
fn sequential(total: u32) -> io::Result<f64> {
  let start = Instant::now();
  for _ in 0..total {
    reap(spawn_true()?)?;
  }
  Ok(f64::from(total) / start.elapsed().as_secs_f64())
}

/// Spawns `total` children keeping `in_flight` running: one starts as soon as one is reaped.
fn concurrent(total: u32, in_flight: u32) -> io::Result<f64> {
  let start = Instant::now();
  let mut started = 0;
  let mut running = 0;
  while started < total || running > 0 {
    while started < total && running < in_flight {
      spawn_true()?;
      started += 1;
      running += 1;
    }
    reap(-1)?;
    running -= 1;
  }
  Ok(f64::from(total) / start.elapsed().as_secs_f64())
}

fn main() {
  let numbers: Vec<u32> = std::env::args()
    .skip(1)
    .filter_map(|a| a.parse().ok())
    .collect();
  let [seq, conc, in_flight] = numbers[..] else {
    eprintln!("usage: spawn-limit <sequential count> <concurrent count> <in flight>");
    std::process::exit(2)
  };
  match sequential(seq).and_then(|s| Ok((s, concurrent(conc, in_flight.max(1))?))) {
    Ok((seq, conc)) => println!("{{\"sequential\":{seq:.1},\"concurrent\":{conc:.1}}}"),
    Err(err) => {
      eprintln!("spawn-limit: {err}");
      std::process::exit(1)
    }
  }
}
