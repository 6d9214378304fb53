//! The launcher process: one per Node process, started by the addon, tied to it by a socket
//! and a parent-death signal.
//!
//! Why a separate process: forking Node costs time proportional to the memory it holds, and
//! `PR_SET_PDEATHSIG` (which makes a child die with its parent) can only be set between fork
//! and exec, which Node's own spawn path never lets us do cheaply. This process is tiny and
//! single-threaded, so `fork` is cheap and safe here. It:
//! - forks and execs on request, making each child a process-group leader that dies
//!   (`PDEATHSIG`) with the launcher, with the fds the addon sent laid out as 0, 1, 2, ...;
//!   the child itself tells the addon its pid (`Starting`) before it execs: were the launcher
//!   killed between the exec and its own `Spawned`, the program could already have forked,
//!   and the addon, which kills the groups of a dead launcher, would not know that group;
//! - is a child subreaper, so descendants that `setsid()` or double-fork away are reparented
//!   to it rather than to init; its parent, the guardian (the process the addon started, which
//!   forked it), is one too, and kills them all should this process die (`guardian`);
//! - reaps and reports exits, and signals groups only while their leader is unreaped (a zombie
//!   leader pins the group id, so a recycled pid is never hit);
//! - when the addon's socket closes or the guardian dies, kills every group and every remaining
//!   descendant, except deliberate daemons (`detached`), reaps them and exits.
//!
//! A child's confinement (rlimits, group and user ids, no-new-privileges) is applied in the
//! child after its fds and directory are in place and before exec, with raw system calls only:
//! the child shares this process's memory until it execs. The order matters. Rlimits come
//! first, while the child still has the launcher's privileges (a root launcher may raise a hard
//! limit; once the uid is dropped it may not). `RLIMIT_NPROC` is counted against the *real*
//! uid at the moment the uid changes and at exec, so a `processes` limit given with a `uid`
//! applies to that user's processes. Supplementary groups are cleared and the gid set before
//! the uid, because after `setuid` the child may no longer change its groups. A child confined
//! to nothing makes none of these calls.
//!
//! Two sockets tie it to the addon. Spawns arrive on one of their own and are answered there,
//! one request then its reply: the addon waits for that reply on Node's JavaScript thread, so
//! it must not queue behind the stream of exits and signals on the main socket. A spawn is
//! answered on the socket it came on, and its child announces itself (`Starting`) there too,
//! ahead of that answer, so whoever waits for the answer learns the group first; exits are
//! always reported on the main one. The child
//! enters the directory and takes the umask the request names (the Node process's at the time
//! of the call), and a failed spawn says whether `chdir` or the rest failed.
//!
//! Exits are reaped with `wait4`, which returns the leader's resource usage (CPU time, peak
//! RSS) with the reap itself: the accounting costs no extra system call.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::io::{self, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, getppid, ForkResult, Pid};

use crate::descendants::sweep;
use crate::guardian;

use tethered_launcher::protocol::{
  starting_frame, take_frames, Confinement, Reply, Request, Resource, ResourceUsage, SpawnStep,
};

/// The signal the launcher asks for when its parent dies.
const PARENT_DEATH_SIGNAL: Signal = Signal::SIGUSR1;

struct Tracked {
  id: u64,
  terminating: bool,
  detached: bool,
}

/// One socket to the addon, with what arrived on it and is not used yet.
struct Channel {
  socket: UnixStream,
  inbox: Vec<u8>,
  fds: VecDeque<OwnedFd>,
}

impl Channel {
  fn new(socket: OwnedFd) -> Self {
    Channel {
      socket: UnixStream::from(socket),
      inbox: Vec::new(),
      fds: VecDeque::new(),
    }
  }

  fn send(&mut self, reply: Reply) -> io::Result<()> {
    match self.socket.write_all(&reply.encode()) {
      // The addon is gone; its socket's EOF ends the loop.
      Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
      other => other,
    }
  }
}

/// Which of the two sockets a request came on.
#[derive(Clone, Copy)]
enum Socket {
  Main,
  Spawns,
}

struct Launcher {
  /// Signals in, exits out (and spawns, which the addon sends here from its runtime).
  main: Channel,
  /// Spawns the addon waits for on the JavaScript thread.
  spawns: Channel,
  parent: Pid,
  me: Pid,
  /// Children whose leader is not yet reaped, by pid (= pgid).
  children: HashMap<i32, Tracked>,
  by_id: HashMap<u64, i32>,
  /// Sessions of deliberate daemons, spared at shutdown.
  daemon_sessions: HashSet<i32>,
  /// Where the guardian learns those sessions, so it spares them too.
  guardian_pipe: std::fs::File,
  /// The stack each child runs on between clone and exec, reused.
  child_stack: Vec<u8>,
  /// The signals this process ignores, read once at start (see `ignored_signals`).
  ignored_signals: Vec<libc::c_int>,
}

/// Entry point: `tethered-launcher <parent pid>`, with the addon's main socket as fd 0 and its
/// spawn socket as fd 1.
pub fn main() -> ! {
  let parent = std::env::args()
    .nth(1)
    .and_then(|p| p.parse().ok())
    .map(Pid::from_raw)
    .unwrap_or_else(getppid);
  match run(parent) {
    Ok(()) => std::process::exit(0),
    Err(err) => {
      eprintln!("tethered-launcher: {err}");
      std::process::exit(1)
    }
  }
}

fn run(parent: Pid) -> io::Result<()> {
  nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL)?;
  // The parent may have died before the line above took effect.
  if getppid() != parent {
    return Ok(());
  }
  nix::sys::prctl::set_child_subreaper(true)?;

  // The sockets arrive as fds 0 and 1; move them out of the way and leave /dev/null there.
  let main_socket = dup_above(std::io::stdin().as_fd(), 3)?;
  let spawn_socket = dup_above(std::io::stdout().as_fd(), 3)?;
  let dev_null = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .open("/dev/null")?;
  nix::unistd::dup2_stdin(&dev_null)?;
  nix::unistd::dup2_stdout(&dev_null)?;
  drop(dev_null);

  // Signals are read from a signalfd. Terminal and job-control signals are blocked and
  // ignored: the launcher lives exactly as long as its Node process, however that one reacts.
  // Blocked before the fork, so neither process can miss one.
  let mut mask = SigSet::empty();
  for signal in [
    Signal::SIGCHLD,
    PARENT_DEATH_SIGNAL,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
  ] {
    mask.add(signal);
  }
  sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)?;
  let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;

  // This process stays behind as the guardian (see `guardian`); its child is the launcher.
  let guardian = getpid();
  let (daemon_sessions_in, daemon_sessions_out) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
  // SAFETY: this process is single-threaded, so the child may do anything after the fork.
  match unsafe { nix::unistd::fork() }? {
    ForkResult::Parent { child } => {
      drop((main_socket, spawn_socket, daemon_sessions_out));
      return guardian::guard(child, daemon_sessions_in, &signals);
    }
    ForkResult::Child => drop(daemon_sessions_in),
  }
  // Neither attribute survives a fork.
  nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL)?;
  if getppid() != guardian {
    return Ok(());
  }
  nix::sys::prctl::set_child_subreaper(true)?;

  let mut launcher = Launcher {
    main: Channel::new(main_socket),
    spawns: Channel::new(spawn_socket),
    parent: guardian,
    me: getpid(),
    children: HashMap::new(),
    by_id: HashMap::new(),
    daemon_sessions: HashSet::new(),
    guardian_pipe: std::fs::File::from(daemon_sessions_out),
    child_stack: vec![0; CHILD_STACK_SIZE],
    ignored_signals: ignored_signals(),
  };
  launcher.serve(&signals)?;
  sweep(launcher.me, &launcher.shut_down());
  Ok(())
}

impl Launcher {
  /// Handles requests and exits until the addon goes away.
  fn serve(&mut self, signals: &SignalFd) -> io::Result<()> {
    loop {
      let (main_ready, spawns_ready, signal_ready) = {
        let mut fds = [
          PollFd::new(self.main.socket.as_fd(), PollFlags::POLLIN),
          PollFd::new(self.spawns.socket.as_fd(), PollFlags::POLLIN),
          PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
          Err(Errno::EINTR) => continue,
          other => other?,
        };
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]))
      };
      if signal_ready {
        while let Some(info) = signals.read_signal()? {
          let signo = info.ssi_signo as i32;
          if signo == Signal::SIGCHLD as i32 {
            self.reap()?;
          } else if signo == PARENT_DEATH_SIGNAL as i32 && getppid() != self.parent {
            return Ok(());
          }
        }
      }
      // The spawn socket first: a JavaScript thread is blocked on it.
      if spawns_ready && !self.receive(Socket::Spawns)? {
        return Ok(());
      }
      if main_ready && !self.receive(Socket::Main)? {
        return Ok(());
      }
    }
  }

  fn channel(&mut self, from: Socket) -> &mut Channel {
    match from {
      Socket::Main => &mut self.main,
      Socket::Spawns => &mut self.spawns,
    }
  }

  /// Reads what the addon sent on one socket; false once it closed its end.
  fn receive(&mut self, from: Socket) -> io::Result<bool> {
    let mut buf = [0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 64]);
    let (read, fds) = {
      let mut iov = [IoSliceMut::new(&mut buf)];
      let msg = match recvmsg::<()>(
        self.channel(from).socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
      ) {
        Err(Errno::EINTR | Errno::EAGAIN) => return Ok(true),
        // The addon's end is gone: treat like EOF.
        Err(Errno::ECONNRESET) => return Ok(false),
        other => other?,
      };
      let mut fds = Vec::new();
      for message in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = message {
          fds.extend(received);
        }
      }
      (msg.bytes, fds)
    };
    let channel = self.channel(from);
    for fd in fds {
      // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
      channel.fds.push_back(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    if read == 0 {
      return Ok(false);
    }
    channel.inbox.extend_from_slice(&buf[..read]);
    for frame in take_frames(&mut channel.inbox)? {
      match Request::decode(&frame)? {
        Request::Spawn {
          id,
          program,
          argv,
          envp,
          cwd,
          umask,
          detached,
          fd_count,
          confinement,
        } => {
          let received = &mut self.channel(from).fds;
          if received.len() < fd_count as usize {
            return Err(io::Error::new(
              io::ErrorKind::InvalidData,
              "spawn request without its fds",
            ));
          }
          let fds: Vec<OwnedFd> = received.drain(..fd_count as usize).collect();
          let spawn = Spawn::new(
            id,
            program,
            argv,
            envp,
            cwd,
            umask,
            detached,
            fds,
            confinement,
          )
          .map_err(|errno| (SpawnStep::Launch, errno));
          let answer_on = self.channel(from).socket.as_raw_fd();
          let reply = match spawn.and_then(|s| self.spawn(s, answer_on)) {
            Ok(pid) => {
              self.children.insert(
                pid,
                Tracked {
                  id,
                  terminating: false,
                  detached,
                },
              );
              self.by_id.insert(id, pid);
              if detached {
                self.daemon_sessions.insert(pid);
                // A dead guardian is the parent-death signal's business, not this write's.
                let _ = self.guardian_pipe.write_all(&pid.to_ne_bytes());
              }
              Reply::Spawned { id, pid }
            }
            Err((step, errno)) => Reply::SpawnFailed {
              id,
              errno: errno as i32,
              step,
            },
          };
          self.channel(from).send(reply)?;
        }
        Request::Signal {
          id,
          signo,
          terminate,
        } => {
          // Only a group whose leader is unreaped: its pid cannot have been recycled.
          if let Some(&pid) = self.by_id.get(&id) {
            if let Some(child) = self.children.get_mut(&pid) {
              child.terminating |= terminate;
            }
            if let Ok(signal) = Signal::try_from(signo) {
              let _ = killpg(Pid::from_raw(pid), signal);
            }
          }
        }
      }
    }
    Ok(true)
  }

  /// Starts the child the way `posix_spawn` does: `clone(CLONE_VM | CLONE_VFORK)` runs it on
  /// its own small stack in this process's memory, and this thread sleeps until it has exec'd
  /// or exited. No page tables are copied and nothing is copied-on-write afterwards, which
  /// halves what a spawn costs here. A failed step leaves its errno, and which step it was, in
  /// a slot both share. The child only makes system calls on data prepared before (see `Spawn`),
  /// and announces its pid on `answer_on`, the socket the spawn came on.
  fn spawn(&mut self, spawn: Spawn, answer_on: RawFd) -> Result<i32, (SpawnStep, Errno)> {
    let mut context = ChildContext {
      spawn: &spawn,
      launcher: self.me,
      ignored_signals: &self.ignored_signals,
      socket: answer_on,
      errno: 0,
      step: SpawnStep::Launch,
    };
    let stack_top = self.child_stack.as_mut_ptr_range().end as usize & !0xf;
    // SAFETY: the stack is ours and unused while the child runs (CLONE_VFORK suspends this
    // thread until the child execs or exits); `context` outlives the child's use of it; the
    // child runs `run_child`, which never returns into Rust code of this process.
    let pid = unsafe {
      libc::clone(
        run_child,
        stack_top as *mut libc::c_void,
        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
        &mut context as *mut ChildContext as *mut libc::c_void,
      )
    };
    if pid < 0 {
      return Err((SpawnStep::Launch, Errno::last()));
    }
    // SAFETY: the child wrote the slots before it exec'd or exited; read them as memory another
    // task changed.
    let (errno, step) = unsafe {
      (
        std::ptr::read_volatile(&context.errno),
        std::ptr::read_volatile(&context.step),
      )
    };
    if errno != 0 {
      let _ = waitpid(Pid::from_raw(pid), None);
      return Err((step, Errno::from_raw(errno)));
    }
    Ok(pid)
  }

  /// Reaps every exited child. A tracked leader is looked at before it is reaped, while its
  /// zombie still pins the group id, so a terminating group's leftovers can be SIGKILLed safely.
  fn reap(&mut self) -> io::Result<()> {
    loop {
      let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
      let pid = match waitid(Id::All, flags) {
        Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(()),
        Err(Errno::EINTR) => continue,
        Err(e) => return Err(e.into()),
        Ok(status) => match status.pid() {
          Some(pid) => pid,
          None => return Ok(()),
        },
      };
      if self
        .children
        .get(&pid.as_raw())
        .is_some_and(|c| c.terminating)
      {
        let _ = killpg(pid, Signal::SIGKILL);
      }
      let (status, usage) = loop {
        match reap_with_usage(pid) {
          Err(Errno::EINTR) => continue,
          other => break other,
        }
      }
      .map_or((None, ResourceUsage::default()), |(status, usage)| {
        (Some(status), usage)
      });
      if let Some(child) = self.children.remove(&pid.as_raw()) {
        self.by_id.remove(&child.id);
        let (code, signal) = match status {
          Some(WaitStatus::Exited(_, code)) => (code, 0),
          Some(WaitStatus::Signaled(_, signal, _)) => (-1, signal as i32),
          _ => (-1, 0),
        };
        self.main.send(Reply::Exited {
          id: child.id,
          code,
          signal,
          usage,
        })?;
      }
    }
  }

  /// Kills every group except deliberate daemons; returns the daemons' sessions, which the
  /// sweep of the remaining descendants spares too.
  fn shut_down(self) -> HashSet<i32> {
    for (&pid, child) in &self.children {
      if !child.detached {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
      }
    }
    self.daemon_sessions
  }
}

/// Tells the addon, from the cloned child, that group `getpid()` exists for spawn `id`. The
/// launcher is suspended meanwhile (`CLONE_VFORK`), so no other frame is being written. A
/// failed write is left to the launcher: the addon is gone, or the launcher soon will be.
fn announce(socket: RawFd, id: u64) {
  // SAFETY: getpid takes nothing; the raw call, as in everything the child does.
  let pid = unsafe { libc::syscall(libc::SYS_getpid) } as i32;
  let frame = starting_frame(id, pid);
  let mut written = 0;
  while written < frame.len() {
    // SAFETY: send reads the rest of a local buffer; MSG_NOSIGNAL: no SIGPIPE in the child.
    let n = unsafe {
      libc::send(
        socket,
        frame[written..].as_ptr().cast(),
        frame.len() - written,
        libc::MSG_NOSIGNAL,
      )
    };
    if n < 0 {
      if Errno::last() == Errno::EINTR {
        continue;
      }
      return;
    }
    written += n as usize;
  }
}

/// Reaps `pid` with `wait4`: how it ended, and the kernel's accounting of it.
fn reap_with_usage(pid: Pid) -> Result<(WaitStatus, ResourceUsage), Errno> {
  let mut status = 0;
  // SAFETY: an all-zero rusage is a valid out-parameter.
  let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
  // SAFETY: wait4 writes the status and the rusage into the two locals above.
  if unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) } < 0 {
    return Err(Errno::last());
  }
  let micros = |t: libc::timeval| t.tv_sec.max(0) as u64 * 1_000_000 + t.tv_usec.max(0) as u64;
  let usage = ResourceUsage {
    // Linux counts ru_maxrss in KiB.
    max_rss_bytes: usage.ru_maxrss.max(0) as u64 * 1024,
    user_cpu_micros: micros(usage.ru_utime),
    system_cpu_micros: micros(usage.ru_stime),
  };
  Ok((WaitStatus::from_raw(pid, status)?, usage))
}

/// A close-on-exec copy of `fd` at the lowest free number ≥ `floor`.
fn dup_above(fd: std::os::fd::BorrowedFd, floor: RawFd) -> Result<OwnedFd, Errno> {
  let copy = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(floor))?;
  // SAFETY: fcntl just created this fd; nothing else owns it.
  Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// The kernel's `struct sigaction` on x86-64 and arm64 (handler, flags, restorer, mask), which
/// the raw system call takes: all zeros is SIG_DFL with nothing masked.
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
  handler: usize,
  flags: u64,
  restorer: usize,
  mask: u64,
}

/// `rt_sigaction` as the raw system call: the C library's wrapper refuses its own reserved
/// signals (32, 33), which Node's process may have left ignored.
///
/// # Safety
/// `new` and `old` must each be null or point to a valid `KernelSigaction`.
unsafe fn rt_sigaction(
  signo: libc::c_int,
  new: *const KernelSigaction,
  old: *mut KernelSigaction,
) -> libc::c_long {
  // SAFETY: the caller vouches for the two pointers; the size is that of the kernel's mask.
  unsafe { libc::syscall(libc::SYS_rt_sigaction, signo, new, old, 8usize) }
}

/// The signals whose disposition is SIG_IGN in this process: inherited from Node through exec
/// (SIGPIPE, or whatever Node's parent ignored) or set by the Rust runtime (SIGPIPE). The launcher
/// never changes a disposition afterwards, so this list, read once, is what a child must reset:
/// one system call per ignored signal instead of one per signal (64) on every spawn.
fn ignored_signals() -> Vec<libc::c_int> {
  (1..=libc::SIGRTMAX())
    .filter(|&signo| signo != libc::SIGKILL && signo != libc::SIGSTOP)
    .filter(|&signo| {
      let mut current = KernelSigaction::default();
      // SAFETY: reads the disposition into a local; no new action is installed.
      let read = unsafe { rt_sigaction(signo, std::ptr::null(), &mut current) };
      read == 0 && current.handler == libc::SIG_IGN
    })
    .collect()
}

/// Stack of a child between clone and exec (it only makes system calls).
const CHILD_STACK_SIZE: usize = 64 * 1024;

/// The most fds a child can be given (0, 1, 2 and the extra ones).
const MAX_CHILD_FDS: usize = 64;

/// What `run_child` gets: the spawn, the launcher's pid, the signals to reset, the socket the
/// spawn came on (where the child announces itself), and the slots for a failure's errno and step.
struct ChildContext<'a> {
  spawn: &'a Spawn,
  launcher: Pid,
  ignored_signals: &'a [libc::c_int],
  socket: RawFd,
  errno: i32,
  step: SpawnStep,
}

/// The child's entry point after `clone`: exec, or leave the errno and exit.
extern "C" fn run_child(arg: *mut libc::c_void) -> libc::c_int {
  // SAFETY: `arg` is the `ChildContext` the parent passed to clone and keeps alive.
  let context = unsafe { &mut *(arg as *mut ChildContext) };
  let (step, errno) =
    context
      .spawn
      .exec_in_child(context.launcher, context.ignored_signals, context.socket);
  context.step = step;
  context.errno = errno as i32;
  // SAFETY: _exit skips the parent's atexit handlers and buffers, as a failed child must.
  unsafe { libc::_exit(127) }
}

/// Everything a child needs, prepared before `clone` so the child only makes system calls and
/// never allocates (it shares the launcher's memory until it execs).
struct Spawn {
  id: u64,
  program: CString,
  /// Kept for the pointers in `argv_ptrs`/`envp_ptrs`.
  _argv: Vec<CString>,
  _envp: Vec<CString>,
  argv_ptrs: Vec<*const libc::c_char>,
  envp_ptrs: Vec<*const libc::c_char>,
  cwd: Option<CString>,
  umask: Option<libc::mode_t>,
  detached: bool,
  fds: Vec<OwnedFd>,
  /// (resource, limits) for `prlimit64`, in the C library's terms.
  rlimits: Vec<(libc::c_int, libc::rlimit64)>,
  no_new_privileges: bool,
  uid: Option<u32>,
  gid: Option<u32>,
}

impl Spawn {
  #[allow(clippy::too_many_arguments)]
  fn new(
    id: u64,
    program: Vec<u8>,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    cwd: Option<Vec<u8>>,
    umask: Option<u32>,
    detached: bool,
    fds: Vec<OwnedFd>,
    confinement: Confinement,
  ) -> Result<Self, Errno> {
    if fds.len() > MAX_CHILD_FDS {
      return Err(Errno::EMFILE);
    }
    let c = |bytes: Vec<u8>| CString::new(bytes).map_err(|_| Errno::EINVAL);
    let argv: Vec<CString> = argv.into_iter().map(c).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = envp.into_iter().map(c).collect::<Result<_, _>>()?;
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
      strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
    };
    Ok(Spawn {
      id,
      program: c(program)?,
      argv_ptrs: pointers(&argv),
      envp_ptrs: pointers(&envp),
      _argv: argv,
      _envp: envp,
      cwd: cwd.map(c).transpose()?,
      umask: umask.map(|mask| mask as libc::mode_t & 0o777),
      detached,
      fds,
      rlimits: confinement
        .rlimits
        .iter()
        .map(|limit| {
          let resource = match limit.resource {
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::Processes => libc::RLIMIT_NPROC,
            Resource::Core => libc::RLIMIT_CORE,
          };
          let limits = libc::rlimit64 {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
          };
          (resource as libc::c_int, limits)
        })
        .collect(),
      no_new_privileges: confinement.no_new_privileges,
      uid: confinement.uid,
      gid: confinement.gid,
    })
  }

  /// Applies the confinement in the cloned child, in the order the module essay explains.
  /// Raw system calls: the C library's `setuid`/`setgid` would try to reach every thread of
  /// the process, machinery that is not safe in a child sharing the launcher's memory.
  fn confine_in_child(&self) -> Result<(), Errno> {
    let check = |result: libc::c_long| {
      if result < 0 {
        Err(Errno::last())
      } else {
        Ok(())
      }
    };
    for (resource, limits) in &self.rlimits {
      // SAFETY: prlimit64 on this process (pid 0) reads one rlimit64 prepared before the clone.
      check(unsafe {
        libc::syscall(
          libc::SYS_prlimit64,
          0,
          *resource,
          limits as *const libc::rlimit64,
          std::ptr::null_mut::<libc::rlimit64>(),
        )
      })?;
    }
    if self.uid.is_some() || self.gid.is_some() {
      // Drops the launcher's supplementary groups; only a privileged launcher can, and only
      // a privileged one has groups worth dropping, so a failure here is not an error.
      // SAFETY: setgroups with an empty list reads no memory.
      let _ = unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) };
    }
    if let Some(gid) = self.gid {
      // SAFETY: setgid takes only a number.
      check(unsafe { libc::syscall(libc::SYS_setgid, gid) })?;
    }
    if let Some(uid) = self.uid {
      // SAFETY: setuid takes only a number.
      check(unsafe { libc::syscall(libc::SYS_setuid, uid) })?;
    }
    if self.no_new_privileges {
      // SAFETY: prctl with numbers only.
      check(unsafe {
        libc::syscall(
          libc::SYS_prctl,
          libc::PR_SET_NO_NEW_PRIVS,
          1 as libc::c_ulong,
          0 as libc::c_ulong,
          0 as libc::c_ulong,
          0 as libc::c_ulong,
        )
      })?;
    }
    Ok(())
  }

  /// Runs in the cloned child: returns only on failure, with the step and errno to report.
  /// `socket` is the one the spawn came on, where the child announces its pid.
  fn exec_in_child(
    &self,
    launcher: Pid,
    ignored_signals: &[libc::c_int],
    socket: RawFd,
  ) -> (SpawnStep, Errno) {
    let launch = |errno| (SpawnStep::Launch, errno);
    if self.detached {
      if let Err(e) = nix::unistd::setsid() {
        return launch(e);
      }
    } else {
      if let Err(e) = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)) {
        return launch(e);
      }
      if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        return launch(e);
      }
      if getppid() != launcher {
        // SAFETY: the launcher is already gone; leave without running anything.
        unsafe { libc::_exit(127) }
      }
      // Before the fds are laid out: one of them may land on the socket's number.
      announce(socket, self.id);
    }
    // Lay the fds out as 0, 1, 2, ...: first above every target, then down into place (dup2
    // clears close-on-exec on the copy it makes).
    let count = self.fds.len() as RawFd;
    let mut staged = [0 as RawFd; MAX_CHILD_FDS];
    for (slot, fd) in staged.iter_mut().zip(&self.fds) {
      match fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(count.max(3))) {
        Ok(copy) => *slot = copy,
        Err(e) => return launch(e),
      }
    }
    for (target, &fd) in staged[..self.fds.len()].iter().enumerate() {
      // SAFETY: dup2 onto a small fd number that this child is about to hand to the program.
      if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
        return launch(Errno::last());
      }
    }
    if let Some(cwd) = &self.cwd {
      // SAFETY: chdir reads a NUL-terminated path prepared before the clone.
      if unsafe { libc::chdir(cwd.as_ptr()) } < 0 {
        return (SpawnStep::Chdir, Errno::last());
      }
    }
    if let Some(mask) = self.umask {
      // SAFETY: umask takes a number and only changes this (child) process's mask.
      unsafe { libc::umask(mask) };
    }
    if let Err(e) = self.confine_in_child() {
      return launch(e);
    }
    // The program starts with default signal dispositions and nothing blocked. exec resets
    // handled signals itself; only ignored ones survive it, so only those are reset here.
    let default_action = KernelSigaction::default();
    for &signo in ignored_signals {
      // SAFETY: rt_sigaction reads a kernel sigaction prepared above; no old action is written.
      unsafe { rt_sigaction(signo, &default_action, std::ptr::null_mut()) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: NUL-terminated strings and NULL-terminated pointer arrays prepared before the
    // clone, alive until exec replaces this image.
    unsafe {
      libc::execve(
        self.program.as_ptr(),
        self.argv_ptrs.as_ptr(),
        self.envp_ptrs.as_ptr(),
      )
    };
    launch(Errno::last())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn ignored_signals_lists_exactly_the_ignored_ones() {
    // A standard and a real-time signal nothing else in this test binary uses.
    let chosen = [libc::SIGWINCH, libc::SIGRTMIN() + 7];
    let ignore = KernelSigaction {
      handler: libc::SIG_IGN,
      ..Default::default()
    };
    let mut before = [KernelSigaction::default(), KernelSigaction::default()];
    for (signo, old) in chosen.iter().zip(before.iter_mut()) {
      // SAFETY: both pointers are to locals.
      assert_eq!(unsafe { rt_sigaction(*signo, &ignore, old) }, 0);
    }
    let listed = ignored_signals();
    for (signo, old) in chosen.iter().zip(&before) {
      // SAFETY: restores the disposition read above; no old action is written.
      unsafe { rt_sigaction(*signo, old, std::ptr::null_mut()) };
    }
    for signo in chosen {
      assert!(listed.contains(&signo), "{signo} missing from {listed:?}");
    }
    // Whatever was not ignored is left alone: SIGINT's default, SIGKILL never listed.
    assert!(!listed.contains(&libc::SIGKILL));
    assert!(!listed.contains(&libc::SIGCHLD));
  }
}
