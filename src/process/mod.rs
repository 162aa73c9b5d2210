//! [`ProcessBulkhead`] (Unix only): a compartment of child processes, whose deadline really
//! stops the work.
//!
//! Admission is the semaphore's (`crate::semaphore`): a call runs on its caller's thread
//! under a permit, waiting for one in a FIFO queue of at most `queue_capacity` callers, so
//! the compartment holds `max_concurrent + queue_capacity` calls, as a pool's does. A
//! pool's worker threads would add nothing here: the work runs in the child, and the
//! caller waits for it in any case. The child's life (group, signals, reaping) is in
//! `child.rs`, the pipes in `pipes.rs`, the resource limits in `limits.rs`.

mod child;
mod config;
mod limits;
mod pipes;

use std::fmt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

pub use config::ProcessConfig;

use crate::config::SemaphoreConfig;
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, EventKind, Listeners};
use crate::histogram::Histogram;
use crate::semaphore::{Refusal, SemaphoreBulkhead};
use crate::stats::{ProcessCounters, ProcessStats};
use crate::sync::Arc;
use crate::sync::plain::Ordering;
use child::{Child, Finished};
use limits::{Limits, still_runnable};

/// What a program run through a [`ProcessBulkhead`] produced.
///
/// # Examples
///
/// ```
/// use std::process::Command;
/// use bulkheads::{ProcessBulkhead, ProcessConfig};
///
/// let sh = ProcessBulkhead::new("sh", ProcessConfig::new(1))?;
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
/// let out = sh.run(cmd)?;
/// assert_eq!(out.status.code(), Some(3));
/// assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"out\n"[..], &b"err\n"[..]));
/// assert!(!out.truncated && !out.timed_out);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessOutput {
    /// The program's status, as `wait` reported it. After a timeout it is usually a
    /// signal (`status.signal()` from `std::os::unix::process::ExitStatusExt`): `SIGTERM`,
    /// or `SIGKILL` if the grace ran out.
    pub status: ExitStatus,
    /// What the program wrote to stdout, at most `max_output` bytes.
    pub stdout: Vec<u8>,
    /// What the program wrote to stderr, at most `max_output` bytes.
    pub stderr: Vec<u8>,
    /// Either stream went past `max_output`: the rest was read and discarded.
    pub truncated: bool,
    /// The deadline passed before the program's group was done, and the group was
    /// stopped; the output is what it wrote until then.
    pub timed_out: bool,
    /// Of a timed-out run: the group was still there after the grace and got `SIGKILL`.
    pub killed: bool,
    /// Time from the program's start until its group was stopped and it was reaped (the
    /// wait for a slot is not in it).
    pub elapsed: Duration,
}

/// A bulkhead for child processes (Unix only): at most `max_concurrent` programs at once, a
/// bounded queue, a deadline that kills, and resource limits.
///
/// A thread cannot be killed, so a pool's deadline frees the caller but not the worker. A
/// child process can be: here the deadline stops the work. [`run`](ProcessBulkhead::run)
/// starts the command as the leader of a new process group, reads its stdout and stderr
/// at once (a thread for each, so a child filling one while the other is read never
/// blocks), and waits for it. At the deadline — [`timeout`](ProcessConfig::timeout) after
/// the call, time in the queue included — the whole group gets `SIGTERM`, and `SIGKILL`
/// after [`kill_grace`](ProcessConfig::kill_grace); grandchildren go with it. The slot is
/// free when the group is gone, and `run` returns after that, so the compartment never
/// holds more programs than it admits.
///
/// Guarantees:
///
/// - **No zombies.** Every child is reaped before `run` returns, also when it times out,
///   when a thread for it cannot be started, and when `run` unwinds; nothing outlives
///   `run`, so dropping the bulkhead leaves nothing behind.
/// - **Signals never hit a stranger.** The group is signalled only while its leader is
///   not yet reaped: its zombie keeps the pid, and so the group id, from being reused.
/// - **A grandchild holding a pipe cannot hang `run`.** When the program exits, whatever
///   it left running in its group is killed (as systemd does with what is left of a
///   service); at the deadline the group is stopped; after `SIGKILL`, `run` waits at most a
///   moment for pipes that a process which escaped the group (`setsid`) still holds.
/// - **Bounded output.** At most [`max_output`](ProcessConfig::max_output) bytes of each
///   stream are kept; the rest is drained and discarded, and the output marked
///   [`truncated`](ProcessOutput::truncated).
///
/// The child's stdin is `/dev/null`; stdout and stderr are the bulkhead's pipes. Without
/// a timeout a call waits for a slot, and for the pipes to close, as long as it takes (as
/// [`Command::output`] does).
///
/// # Resource limits
///
/// [`max_open_files`](ProcessConfig::max_open_files), [`cpu_time`](ProcessConfig::cpu_time)
/// and [`address_space`](ProcessConfig::address_space) (see [`ProcessConfig`] for what each
/// really limits) are set in the child before the program starts. Setting them between
/// `fork` and `exec` would take `unsafe` code (`CommandExt::pre_exec`), which this crate
/// forbids, so with any limit configured the program runs as
/// `/bin/sh -c 'ulimit …; exec "$0" "$@"' PROGRAM ARGS…`: the shell sets the limits and
/// replaces itself with the program, which keeps the pid, the group and the pipes. What
/// carries over from the command is what [`Command`] lets anyone read back: the program,
/// the arguments, the environment set or removed, the working directory. Settings it does
/// not let anyone read (`env_clear`, `uid`/`gid`, `arg0`, `pre_exec`) are lost; without
/// limits the command runs as it is. The program is looked up (in the command's `PATH`)
/// and checked to be an executable file first, so a missing program is an
/// [`Err`](BulkheadError::Start), not the shell's exit status 127; its `argv[0]` is then the
/// path found.
///
/// # Examples
///
/// ```
/// use std::process::Command;
/// use std::time::{Duration, Instant};
/// use bulkheads::{ProcessBulkhead, ProcessConfig};
///
/// let converter = ProcessBulkhead::new(
///     "convert",
///     ProcessConfig::new(2)
///         .timeout(Duration::from_millis(300))
///         .kill_grace(Duration::from_millis(100))
///         .max_open_files(64),
/// )?;
///
/// let mut ok = Command::new("sh");
/// ok.args(["-c", "ulimit -n"]);
/// assert_eq!(converter.run(ok)?.stdout, b"64\n");
///
/// // A hung program, and the child it started, are stopped at the deadline.
/// let started = Instant::now();
/// let mut hung = Command::new("sh");
/// hung.args(["-c", "sleep 100 & sleep 100"]);
/// let out = converter.run(hung)?;
/// assert!(out.timed_out);
/// assert!(started.elapsed() < Duration::from_secs(10));
///
/// let err = converter.run(Command::new("no-such-converter")).unwrap_err();
/// assert!(err.is_start());
/// assert_eq!(converter.stats().running, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProcessBulkhead {
    name: Arc<str>,
    config: ProcessConfig,
    limits: Limits,
    /// The admission: `max_concurrent` permits, a queue of `queue_capacity` waiters.
    slots: SemaphoreBulkhead,
    counters: ProcessCounters,
    run_time: Histogram,
    listeners: Listeners,
}

impl fmt::Debug for ProcessBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessBulkhead")
            .field("name", &&*self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ProcessBulkhead {
    /// Creates a process bulkhead called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field if the configuration is invalid (see
    /// [`ProcessConfig::validate`]), or if a resource limit is above this process's own
    /// hard limit (which a child inherits and cannot raise).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{ProcessBulkhead, ProcessConfig};
    ///
    /// let err = ProcessBulkhead::new("ffmpeg", ProcessConfig::new(0)).unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("ffmpeg", "max_concurrent"));
    /// ```
    pub fn new(name: impl Into<String>, config: ProcessConfig) -> Result<Self, ConfigError> {
        let name: String = name.into();
        config.validate(&name)?;
        let limits = Limits::of(&config);
        limits.check_hard(&name)?;
        let slots = SemaphoreBulkhead::with_max_waiters(
            name.as_str(),
            SemaphoreConfig::new(config.max_concurrent),
            config.queue_capacity,
        )?;
        Ok(Self {
            name: Arc::from(name),
            config,
            limits,
            slots,
            counters: ProcessCounters::default(),
            run_time: Histogram::default(),
            listeners: Listeners::new("process"),
        })
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration the bulkhead was built with.
    pub fn config(&self) -> &ProcessConfig {
        &self.config
    }

    /// Calls `listener` for every [`Event`] of this bulkhead from now on: permitted (with
    /// the time waited for a slot), rejected, started, finished, timed out, expired (the
    /// deadline passed in the queue) and killed. See [`Event`] for where listeners run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::process::Command;
    /// use std::sync::{Arc, Mutex};
    /// use bulkheads::{ProcessBulkhead, ProcessConfig};
    ///
    /// let sh = ProcessBulkhead::new("sh", ProcessConfig::new(1))?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// sh.on_event(move |e| log.lock().unwrap().push(e.to_string()));
    /// sh.run(Command::new("true"))?;
    /// let seen = seen.lock().unwrap();
    /// assert_eq!(seen[0], "sh: permitted");
    /// assert!(seen.last().unwrap().starts_with("sh: finished after"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.listeners.add(Arc::new(listener));
    }

    pub(crate) fn add_listener(&self, listener: crate::event::Listener) {
        self.listeners.add(listener);
    }

    /// Runs `command` in a slot of this bulkhead and returns its output, waiting for a slot
    /// at most until the deadline. The child is reaped and its slot free before this
    /// returns.
    ///
    /// A program that overruns its deadline is not an error: its output so far comes back
    /// with [`timed_out`](ProcessOutput::timed_out) set. A program that fails (a non-zero
    /// status) is not an error either; look at [`status`](ProcessOutput::status).
    ///
    /// # Errors
    ///
    /// - [`BulkheadError::Rejected`]: every slot taken and the queue full; nothing ran.
    /// - [`BulkheadError::Timeout`]: the deadline passed while the call waited for a slot;
    ///   nothing ran.
    /// - [`BulkheadError::Start`]: the program could not be started (not found, not
    ///   executable, the OS refused); the slot is free again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::process::ExitStatusExt;
    /// use std::process::Command;
    /// use std::time::Duration;
    /// use bulkheads::{ProcessBulkhead, ProcessConfig};
    ///
    /// let render = ProcessBulkhead::new(
    ///     "render",
    ///     ProcessConfig::new(1)
    ///         .timeout(Duration::from_millis(200))
    ///         .kill_grace(Duration::from_millis(200)),
    /// )?;
    /// let mut cmd = Command::new("sh");
    /// cmd.args(["-c", "echo page 1; sleep 100"]);
    /// let out = render.run(cmd)?;
    /// assert!(out.timed_out);
    /// assert_eq!(out.stdout, b"page 1\n"); // the output so far is kept
    /// assert_eq!(out.status.signal(), Some(15)); // SIGTERM sufficed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, command: Command) -> Result<ProcessOutput, BulkheadError> {
        let submitted = Instant::now();
        let timeout = self.config.timeout;
        let deadline = timeout.and_then(|t| submitted.checked_add(t));
        let (permit, waited_for_slot) = match self
            .slots
            .acquire_or_refuse(timeout.unwrap_or(Duration::MAX))
        {
            Ok(granted) => granted,
            Err(Refusal::Full) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.listeners.emit(&self.name, EventKind::Rejected);
                return Err(BulkheadError::Rejected {
                    name: self.name.clone(),
                    capacity: self.capacity(),
                });
            }
            Err(Refusal::WaitedOut) => {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                let waited = submitted.elapsed();
                self.listeners
                    .emit(&self.name, EventKind::TimedOut { waited });
                self.listeners.emit(&self.name, EventKind::Expired);
                return Err(BulkheadError::Timeout {
                    name: self.name.clone(),
                    timeout: timeout.unwrap_or(waited),
                });
            }
        };
        // Zero for a call that found a slot free, as a semaphore's permit reports it.
        let queue_wait = if waited_for_slot {
            submitted.elapsed()
        } else {
            Duration::ZERO
        };
        self.listeners
            .emit(&self.name, EventKind::Permitted { waited: queue_wait });
        let result = self.run_admitted(command, deadline, queue_wait);
        // The slot is free before the result is handed back: a caller that runs again at
        // once is never rejected by its own finished call.
        drop(permit);
        let finished = result?;
        if finished.timed_out {
            let waited = submitted.elapsed();
            self.listeners
                .emit(&self.name, EventKind::TimedOut { waited });
        }
        if finished.killed {
            self.listeners.emit(
                &self.name,
                EventKind::Killed {
                    run_time: finished.elapsed,
                },
            );
        }
        self.listeners.emit(
            &self.name,
            EventKind::Finished {
                run_time: finished.elapsed,
            },
        );
        Ok(finished)
    }

    /// Starts, watches and reaps the program of an admitted call, and keeps the books.
    fn run_admitted(
        &self,
        command: Command,
        deadline: Option<Instant>,
        queue_wait: Duration,
    ) -> Result<ProcessOutput, BulkheadError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let spawned = self.limits.wrap(command).and_then(|(command, checked)| {
            Child::spawn(&self.name, command, self.config.max_output).map(|child| (child, checked))
        });
        let (child, checked) = match spawned {
            Ok(spawned) => spawned,
            Err(err) => return Err(self.start_failed(program, &err)),
        };
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .emit(&self.name, EventKind::Started { queue_wait });
        let finished = match child.finish(deadline, self.config.kill_grace) {
            Ok(finished) => finished,
            // `wait` failed: only when something else reaped our child (SIGCHLD ignored).
            Err(err) => {
                self.counters.completed.fetch_add(1, Ordering::Relaxed);
                self.counters.exit_failures.fetch_add(1, Ordering::Relaxed);
                return Err(self.start_error(program, &err));
            }
        };
        let output = self.book(finished);
        // The wrapper shell exits 126/127 when its `exec` fails: that is a program that
        // could not start if the program checked before the spawn is gone now.
        let exec_failed = checked.as_deref().is_some_and(|checked| {
            !output.timed_out
                && matches!(output.status.code(), Some(126 | 127))
                && !still_runnable(checked)
        });
        if exec_failed {
            let err = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the program was removed or changed before it could start",
            );
            return Err(self.start_error(program, &err));
        }
        Ok(output)
    }

    fn book(&self, f: Finished) -> ProcessOutput {
        let c = &self.counters;
        self.run_time.record(f.elapsed);
        if f.timed_out {
            c.timed_out.fetch_add(1, Ordering::Relaxed);
        } else {
            c.completed.fetch_add(1, Ordering::Relaxed);
            if !f.status.success() {
                c.exit_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if f.killed {
            c.killed.fetch_add(1, Ordering::Relaxed);
        }
        if f.truncated {
            c.truncated.fetch_add(1, Ordering::Relaxed);
        }
        ProcessOutput {
            status: f.status,
            stdout: f.stdout,
            stderr: f.stderr,
            truncated: f.truncated,
            timed_out: f.timed_out,
            killed: f.killed,
            elapsed: f.elapsed,
        }
    }

    fn start_error(&self, program: String, err: &std::io::Error) -> BulkheadError {
        BulkheadError::Start {
            name: self.name.clone(),
            program,
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    fn start_failed(&self, program: String, err: &std::io::Error) -> BulkheadError {
        self.counters.spawn_failed.fetch_add(1, Ordering::Relaxed);
        self.start_error(program, err)
    }

    /// How many calls the bulkhead holds at once: the slots and the queue.
    fn capacity(&self) -> usize {
        self.config
            .max_concurrent
            .saturating_add(self.config.queue_capacity)
    }

    /// A snapshot of the bulkhead's gauges and counters.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::process::Command;
    /// use bulkheads::{ProcessBulkhead, ProcessConfig};
    ///
    /// let sh = ProcessBulkhead::new("sh", ProcessConfig::new(1).queue_capacity(2))?;
    /// sh.run(Command::new("true"))?;
    /// let stats = sh.stats();
    /// assert_eq!((stats.max_concurrent, stats.queue_capacity), (1, 2));
    /// assert_eq!((stats.permitted, stats.completed, stats.running), (1, 1, 0));
    /// assert!(stats.to_string().contains("process"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> ProcessStats {
        let slots = self.slots.stats();
        ProcessStats::new(
            &self.name,
            (self.config.max_concurrent, self.config.queue_capacity),
            (slots.running, slots.waiting, slots.permitted),
            &self.counters,
            (slots.wait, self.run_time.summary()),
        )
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ProcessBulkhead>();
    is::<ProcessOutput>();
}
