//! Events and listeners: what happened to each call, as it happens.
//!
//! A listener is any `Fn(&Event<'_>) + Send + Sync`. It runs on the thread where the event
//! happened — the caller's for `Permitted`, `Rejected`, `TimedOut`, `Expired`, `Cancelled`,
//! the worker's for `Started`, `Finished`, `Failed`, `Panicked` — so it must be quick. It runs with no
//! lock of the bulkhead or its manager held, so it may call back into either (read
//! `manager.stats()`, add a listener). A panicking listener is contained: the panic is
//! dropped, the call's outcome, the worker and the books are untouched, and the listeners
//! after it still run. With no listener set, an event costs one relaxed load.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::breaker::CircuitState;
use crate::sync::Arc;
use crate::sync::plain::{AtomicUsize, Ordering, RwLock};

/// One event of one bulkhead.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bulkheads::{EventKind, PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("inventory", PoolConfig::new(1))?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// pool.on_event(move |e| {
///     if !matches!(e.kind, EventKind::Started { .. }) {
///         log.lock().unwrap().push(format!("{e}"));
///     }
/// });
/// pool.execute(|| ())?;
/// let seen = seen.lock().unwrap();
/// assert_eq!(seen[0], "inventory: permitted");
/// assert!(seen[1].starts_with("inventory: finished after"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event<'a> {
    /// The bulkhead's name.
    pub bulkhead: &'a str,
    /// What happened.
    pub kind: EventKind,
    /// What sort of bulkhead fired it: `"pool"` (a thread pool or a connection pool),
    /// `"semaphore"`, `"process"`, `"circuit_breaker"` or `"retry"` — the `kind` label of
    /// the metrics and the Prometheus text. A manager's listener hears them all; two
    /// bulkheads of different sorts may share a name.
    pub bulkhead_kind: &'static str,
}

/// What happened; durations are measured by the bulkhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A call was admitted (pool) or granted a permit (semaphore), after `waited` for one
    /// (always zero for a pool, whose admission never waits).
    Permitted {
        /// Time spent waiting for a permit.
        waited: Duration,
    },
    /// A call was refused: the bulkhead was full. Exactly one event per rejected call.
    Rejected,
    /// A call was refused because the pool was shut down (not because it was full).
    /// Exactly one event per refused call; counted in `PoolStats::shutdown_refused`.
    ShutdownRefused,
    /// A worker started a task after `queue_wait` since its submission.
    Started {
        /// Time from submission to start.
        queue_wait: Duration,
    },
    /// A task returned after running `run_time`.
    Finished {
        /// Time the task ran.
        run_time: Duration,
    },
    /// An adaptive bulkhead's limit changed (see
    /// [`PoolConfig::adaptive`](crate::PoolConfig::adaptive)): it now runs at most `to`
    /// calls at once.
    LimitChanged {
        /// The limit before.
        from: usize,
        /// The limit now in force.
        to: usize,
    },
    /// A fallible task ([`execute_fallible`](crate::ThreadPoolBulkhead::execute_fallible))
    /// returned `Err` after running `run_time` (counted in `PoolStats::failed`, not
    /// `completed`). Fired by pools only; a semaphore counts its failed calls in
    /// `SemaphoreStats::failed`.
    Failed {
        /// Time the task ran.
        run_time: Duration,
    },
    /// A task panicked after running `run_time`.
    Panicked {
        /// Time the task ran before it panicked.
        run_time: Duration,
    },
    /// A caller's deadline passed after `waited`; it got `Timeout`.
    TimedOut {
        /// Time from submission to the timeout.
        waited: Duration,
    },
    /// A queued task was cancelled because its caller timed out; it never runs.
    Expired,
    /// A task that had not started was cancelled (through its handle, or by
    /// `shutdown_now`); it never runs.
    Cancelled,
    /// A process bulkhead's program was still running (or its group still held its pipes)
    /// a grace after `SIGTERM` at its deadline, and its group got `SIGKILL`; it ran
    /// `run_time` in all (from its start until its group was gone and it was reaped).
    Killed {
        /// Time from the program's start until it was reaped.
        run_time: Duration,
    },
    /// A [`CircuitBreaker`](crate::CircuitBreaker) moved from one state to another (on a
    /// call's outcome, on the first call after a wait, or by hand). Fired on the thread that
    /// made the move, after it.
    CircuitStateChanged {
        /// The state it left.
        from: CircuitState,
        /// The state it entered.
        to: CircuitState,
    },
    /// A [`CircuitBreaker`](crate::CircuitBreaker) refused a call in `state`. Exactly one
    /// event per refused call.
    CircuitNotPermitted {
        /// The state that refused it: open, forced open, or half-open with every probe out.
        state: CircuitState,
    },
    /// A [`Retry`](crate::Retry) is about to wait `wait`, then make attempt number
    /// `attempt` (2 for the first retry). Fired on the caller's thread, before the wait.
    RetryScheduled {
        /// The attempt that follows the wait, counting the first call as 1.
        attempt: u32,
        /// The wait, jitter included.
        wait: Duration,
    },
    /// A [`Retry`](crate::Retry)'s budget refused a retry: too many recent attempts failed.
    RetryThrottled,
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.bulkhead)?;
        match self.kind {
            EventKind::Permitted { waited } if waited.is_zero() => write!(f, "permitted"),
            EventKind::Permitted { waited } => write!(f, "permitted after {waited:?}"),
            EventKind::Rejected => write!(f, "rejected"),
            EventKind::ShutdownRefused => write!(f, "refused: shut down"),
            EventKind::Started { queue_wait } => write!(f, "started after {queue_wait:?} queued"),
            EventKind::Finished { run_time } => write!(f, "finished after {run_time:?}"),
            EventKind::Failed { run_time } => write!(f, "failed after {run_time:?}"),
            EventKind::Panicked { run_time } => write!(f, "panicked after {run_time:?}"),
            EventKind::LimitChanged { from, to } => write!(f, "limit {from} -> {to}"),
            EventKind::TimedOut { waited } => write!(f, "timed out after {waited:?}"),
            EventKind::Expired => write!(f, "expired in the queue"),
            EventKind::Cancelled => write!(f, "cancelled"),
            EventKind::Killed { run_time } => write!(f, "killed after {run_time:?}"),
            EventKind::CircuitStateChanged { from, to } => write!(f, "circuit {from} -> {to}"),
            EventKind::CircuitNotPermitted { state } => {
                write!(f, "call not permitted: circuit {state}")
            }
            EventKind::RetryScheduled { attempt, wait } => {
                write!(f, "attempt {attempt} after {wait:?}")
            }
            EventKind::RetryThrottled => write!(f, "retry throttled by the budget"),
        }
    }
}

/// A shared listener.
pub(crate) type Listener = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The listeners of one bulkhead.
///
/// Listeners run with no lock held. The list is copy-on-write: `add` swaps in a new
/// `Arc<[Listener]>` and `emit` clones the current one under a short read lock, then calls
/// out with the lock released. Calling them under the lock deadlocked: a listener that took
/// another lock (the manager's registry, through `manager.stats()`) waited behind a writer
/// (`manager.on_event`) that waited for this list, and parking_lot's fair `RwLock` also
/// blocks a listener's recursive read (an event fired from inside a listener) behind a
/// waiting writer.
pub(crate) struct Listeners {
    /// How many listeners there are; zero makes `emit` one relaxed load.
    count: AtomicUsize,
    /// Read only when `count > 0`; a plain lock keeps an idle bulkhead small. Held only to
    /// clone or swap the `Arc`, never while a listener runs.
    list: RwLock<Arc<[Listener]>>,
    /// [`Event::bulkhead_kind`] of every event fired here.
    bulkhead_kind: &'static str,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listeners({})", self.count.load(Ordering::Relaxed))
    }
}

impl Listeners {
    /// No listeners yet, for a bulkhead of the sort `bulkhead_kind`.
    pub(crate) fn new(bulkhead_kind: &'static str) -> Self {
        Self {
            count: AtomicUsize::new(0),
            list: RwLock::new(Arc::from(Vec::new())),
            bulkhead_kind,
        }
    }

    pub(crate) fn add(&self, listener: Listener) {
        let mut list = self.list.write();
        let grown: Arc<[Listener]> = list.iter().cloned().chain([listener]).collect();
        let old = std::mem::replace(&mut *list, grown);
        // Release: whoever sees the new count sees the list it counts (the lock orders the
        // list itself; this orders the relaxed load that skips the lock).
        self.count.store(list.len(), Ordering::Release);
        drop(list);
        // After the lock: the old list's listeners are all in the new one, so this drops no
        // listener, but nothing is dropped under a lock on principle.
        drop(old);
    }

    /// True when at least one listener is set: callers skip measuring what nobody hears.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    #[inline]
    pub(crate) fn emit(&self, bulkhead: &str, kind: EventKind) {
        if self.any() {
            self.emit_slow(&Event {
                bulkhead,
                kind,
                bulkhead_kind: self.bulkhead_kind,
            });
        }
    }

    #[cold]
    fn emit_slow(&self, event: &Event<'_>) {
        // The guard is a temporary of this statement: released before any listener runs.
        let list = Arc::clone(&self.list.read());
        for listener in list.iter() {
            // A listener's panic must not unwind into the caller or the pool's bookkeeping.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| listener(event))) {
                contain(payload);
            }
        }
        // `list` may be the last owner of a list `add` replaced meanwhile; dropping it drops
        // no listener (the new list holds them all), so no user code runs here.
    }
}

/// Drops a listener's panic payload, whose own `Drop` is user code that may panic again.
fn contain(payload: Box<dyn std::any::Any + Send>) {
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // A payload whose drop panics, inside a payload whose drop panicked: stop here. The
        // leak is one allocation per such (pathological) listener panic.
        std::mem::forget(again);
    }
}
