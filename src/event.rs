//! Events and listeners: what happened to each call, as it happens.
//!
//! A listener is any `Fn(&Event<'_>) + Send + Sync`. It runs on the thread where the event
//! happened — the caller's for `Permitted`, `Rejected`, `TimedOut`, `Expired`, `Cancelled`,
//! the worker's for `Started`, `Finished`, `Panicked` — so it must be quick. A panicking
//! listener is contained: the panic is dropped and the books are kept. With no listener set,
//! an event costs one relaxed load.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::sync::Arc;
use crate::sync::plain::{AtomicU64, Ordering, RwLock};

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
            EventKind::Panicked { run_time } => write!(f, "panicked after {run_time:?}"),
            EventKind::TimedOut { waited } => write!(f, "timed out after {waited:?}"),
            EventKind::Expired => write!(f, "expired in the queue"),
            EventKind::Cancelled => write!(f, "cancelled"),
        }
    }
}

/// A shared listener.
pub(crate) type Listener = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The listeners of one bulkhead.
#[derive(Default)]
pub(crate) struct Listeners {
    /// How many listeners there are; zero makes `emit` one relaxed load.
    count: AtomicU64,
    /// Read only when `count > 0`; a plain lock keeps an idle bulkhead small.
    list: RwLock<Vec<Listener>>,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listeners({})", self.count.load(Ordering::Relaxed))
    }
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) {
        self.list.write().push(listener);
        self.count.fetch_add(1, Ordering::Release);
    }

    /// True when at least one listener is set: callers skip measuring what nobody hears.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    #[inline]
    pub(crate) fn emit(&self, bulkhead: &str, kind: EventKind) {
        if self.any() {
            self.emit_slow(&Event { bulkhead, kind });
        }
    }

    #[cold]
    fn emit_slow(&self, event: &Event<'_>) {
        for listener in self.list.read().iter() {
            // A listener's panic must not unwind into the pool's bookkeeping.
            let _ = catch_unwind(AssertUnwindSafe(|| listener(event)));
        }
    }
}
