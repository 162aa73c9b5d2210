//! The life of one child: spawned as the leader of its own process group, watched, stopped
//! at its deadline, and always reaped.
//!
//! ```text
//! RUNNING ──leader exited, both pipes closed──────────────────────────────▶ SWEEP ─▶ REAPED
//!    │ deadline
//!    ▼
//! TERMINATING (SIGTERM to the group) ──exited, pipes closed within grace──▶ SWEEP
//!    │ grace over
//!    ▼
//! KILLING (SIGKILL to the group) ──leader exited; pipes, at most PIPE_BOUND──▶ SWEEP
//! ```
//!
//! SWEEP sends `SIGKILL` to the group once more, for whatever the program left running
//! (a background process with its output elsewhere) — as systemd kills what is left of a
//! service's control group when its main process exits — so no work of the call outlives
//! its slot. REAPED is the `wait` that collects the leader's status.
//!
//! Pid reuse: every signal goes to the group whose id is the leader's pid, and only while
//! the leader is not yet reaped. An exited, unreaped leader is a zombie that keeps its pid
//! (and so its group id) from being reused, which is why a watcher thread learns of the
//! exit with `waitid(…, WNOWAIT)` — it sees the exit without reaping — and the reaping
//! `wait` comes last, after the last signal.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child as StdChild, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};

use super::pipes::{Capture, drain};
use crate::sync::Arc;

/// How long `run` still waits for the pipes once the whole group has had `SIGKILL`. Only a
/// process that escaped the group (`setsid`, a daemon) can still hold them then, and it
/// could hold them for ever; its output is left to the pipe thread, which ends when it
/// closes. Long enough for killed processes to be scheduled and die on a loaded machine.
const PIPE_BOUND: Duration = Duration::from_millis(250);

/// What the watcher and the pipe threads report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The leader exited (not yet reaped).
    Exited,
    /// One pipe reached its end.
    PipeClosed,
}

/// How one child ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) truncated: bool,
    pub(crate) timed_out: bool,
    pub(crate) killed: bool,
    pub(crate) elapsed: Duration,
}

/// A running child and what watches it. Dropped before [`finish`](Child::finish) (an
/// unwind, a thread the OS refused), it kills the group and reaps the leader.
#[derive(Debug)]
pub(crate) struct Child {
    child: StdChild,
    pid: Pid,
    events: Receiver<Event>,
    stdout: Arc<Capture>,
    stderr: Arc<Capture>,
    exited: bool,
    open_pipes: usize,
    reaped: bool,
    started: Instant,
}

impl Child {
    /// Spawns `command` as the leader of a new process group with both output streams
    /// piped and stdin from `/dev/null`, and starts its watcher and pipe threads (named
    /// after the bulkhead, which comes first: Linux shows 15 bytes of a thread's name).
    pub(crate) fn spawn(name: &str, mut command: Command, max_output: usize) -> io::Result<Self> {
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let started = Instant::now();
        let pid = Pid::from_child(&child);
        let (tx, events) = mpsc::channel();
        let out = child.stdout.take();
        let err = child.stderr.take();
        let mut this = Self {
            child,
            pid,
            events,
            stdout: Arc::default(),
            stderr: Arc::default(),
            exited: false,
            open_pipes: 0,
            reaped: false,
            started,
        };
        // From here on `this` owns the child: an early return drops it, which kills and
        // reaps.
        let watcher = tx.clone();
        std::thread::Builder::new()
            .name(format!("bh-{name}-wait"))
            .spawn(move || {
                wait_exit(pid);
                let _ = watcher.send(Event::Exited);
            })?;
        if let Some(out) = out {
            this.stdout = drain(
                format!("bh-{name}-out"),
                out,
                max_output,
                tx.clone(),
                Event::PipeClosed,
            )?;
            this.open_pipes += 1;
        }
        if let Some(err) = err {
            this.stderr = drain(
                format!("bh-{name}-err"),
                err,
                max_output,
                tx,
                Event::PipeClosed,
            )?;
            this.open_pipes += 1;
        }
        Ok(this)
    }

    /// Waits for the child to end by itself until `deadline`, stops its group if it does
    /// not (`SIGTERM`, then `SIGKILL` after `grace`), and reaps it.
    pub(crate) fn finish(
        mut self,
        deadline: Option<Instant>,
        grace: Duration,
    ) -> io::Result<Finished> {
        let mut timed_out = false;
        let mut killed = false;
        // RUNNING
        if !self.wait_until(deadline) {
            // TERMINATING
            timed_out = true;
            self.signal(Signal::TERM);
            if !self.wait_until(Instant::now().checked_add(grace)) {
                // KILLING
                killed = true;
                self.signal(Signal::KILL);
                self.wait_exited();
                self.wait_until(Some(Instant::now() + PIPE_BOUND));
            }
        }
        // SWEEP
        self.signal(Signal::KILL);
        // REAPED
        self.wait_exited();
        let status = self.child.wait();
        self.reaped = true;
        let status = status?;
        let (stdout, out_cut) = self.stdout.take();
        let (stderr, err_cut) = self.stderr.take();
        Ok(Finished {
            status,
            stdout,
            stderr,
            truncated: out_cut || err_cut,
            timed_out,
            killed,
            elapsed: self.started.elapsed(),
        })
    }

    /// Signals the whole group. Only ever called before the leader is reaped: its zombie
    /// holds the group id, so the signal cannot reach a group that reused it.
    fn signal(&self, signal: Signal) {
        debug_assert!(!self.reaped);
        // ESRCH: every member has exited already; nothing to stop.
        let _ = kill_process_group(self.pid, signal);
    }

    fn note(&mut self, event: Event) {
        match event {
            Event::Exited => self.exited = true,
            Event::PipeClosed => self.open_pipes = self.open_pipes.saturating_sub(1),
        }
    }

    /// Waits until the leader has exited and both pipes are closed (true), or `deadline`
    /// passes (false). `None`: no deadline.
    fn wait_until(&mut self, deadline: Option<Instant>) -> bool {
        loop {
            if self.exited && self.open_pipes == 0 {
                return true;
            }
            let event = match deadline {
                None => self.events.recv().ok(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    match self.events.recv_timeout(deadline - now) {
                        Ok(event) => Some(event),
                        Err(RecvTimeoutError::Timeout) => return false,
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                }
            };
            match event {
                Some(event) => self.note(event),
                // Every thread has reported and gone: nothing more will come.
                None => return true,
            }
        }
    }

    /// Waits for the leader's exit, however long it takes (after `SIGKILL`, not long).
    fn wait_exited(&mut self) {
        while !self.exited {
            match self.events.recv() {
                Ok(event) => self.note(event),
                Err(_) => return,
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(Signal::KILL);
            // The leader has had SIGKILL: this wait is short. Its error (none expected) has
            // nowhere to go from a drop.
            let _ = self.child.wait();
            self.reaped = true;
        }
    }
}

/// Blocks until the process `pid` has exited, without reaping it.
fn wait_exit(pid: Pid) {
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(Errno::INTR) => continue,
            // ECHILD: reaped already, by the drop of a child whose run was abandoned.
            _ => return,
        }
    }
}
