//! [`ThreadPoolBulkhead`]: a dedicated, bounded pool of OS threads for one dependency.

pub(crate) mod adaptive;
pub(crate) mod admission;
pub(crate) mod global;
pub(crate) mod handle;
pub(crate) mod queue;
pub(crate) mod spin;
pub(crate) mod task;
pub(crate) mod termination;
pub(crate) mod worker;

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::config::PoolConfig;
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, EventKind, Listeners};
use crate::histogram::Histogram;
use crate::policy::PolicyError;
use crate::stats::{PoolCounters, PoolStats};
use crate::sync::Arc;
use crate::sync::plain::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

use admission::{Admission, Admit, State};
pub use handle::TaskHandle;
use queue::Queue;
use spin::SpinPolicy;
use task::{Awaited, Job, Task};
use termination::Termination;
use worker::SpawnVerdicts;

pub(crate) use admission::MAX_IN_FLIGHT;

/// State shared by the pool's face, its workers and its task handles.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) admission: Admission,
    pub(crate) counters: PoolCounters,
    /// Time from submission to start, per task.
    queue_wait: Histogram,
    /// Time a task ran, per task.
    run_time: Histogram,
    pub(crate) listeners: Listeners,
    rejection_log: crate::trace::RejectionLog,
    /// The configuration in force. Its lock also orders `reconfigure` calls.
    config: Mutex<PoolConfig>,
    pub(crate) queue: Queue,
    /// `keep_alive` and `default_timeout` in nanoseconds (the latter `NO_TIMEOUT` when none):
    /// read on every idle wait and every `execute`, so not behind the config's lock.
    keep_alive: AtomicU64,
    default_timeout: AtomicU64,
    /// The name prefix and stack size of threads started from now on.
    pub(crate) spawn_settings: Mutex<SpawnSettings>,
    pub(crate) next_worker_id: AtomicUsize,
    /// Whether a waiting caller spins before it parks.
    pub(crate) spin: SpinPolicy,
    pub(crate) spawn_verdicts: SpawnVerdicts,
    pub(crate) termination: Termination,
    /// Spawns still to refuse: a test hook for the OS refusing a thread.
    pub(crate) failing_spawns: AtomicUsize,
    /// When the pool was built: its stats' `uptime` counts from here.
    created: Instant,
    /// Whether the configuration in force is adaptive: read once per finished task.
    pub(crate) adaptive_on: AtomicBool,
    /// The pool's own `Arc`, for the workers that start others when an adaptive limit rises.
    pub(crate) this: std::sync::Weak<Shared>,
    /// The fleet-wide semaphore each task takes a lease of, if any (`global.rs`).
    #[cfg(feature = "redis")]
    pub(crate) global: Mutex<Option<Arc<crate::RedisSemaphore>>>,
    /// Whether `global` is set: read once per task, so pools without a global limit take
    /// no lock for it.
    #[cfg(feature = "redis")]
    pub(crate) global_on: AtomicBool,
}

/// How new worker threads are made: `<prefix>-<n>`, with this stack size.
#[derive(Debug, Clone)]
pub(crate) struct SpawnSettings {
    pub(crate) prefix: String,
    pub(crate) stack_size: Option<usize>,
}

impl SpawnSettings {
    fn of(name: &str, config: &PoolConfig) -> Self {
        Self {
            prefix: config
                .thread_name_prefix
                .clone()
                .unwrap_or_else(|| name.to_owned()),
            stack_size: config.stack_size,
        }
    }
}

/// `default_timeout` of none.
const NO_TIMEOUT: u64 = u64::MAX;

/// A duration as the nanoseconds kept in an atomic, saturating below [`NO_TIMEOUT`]
/// (585 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).map_or(NO_TIMEOUT - 1, |n| n.min(NO_TIMEOUT - 1))
}

impl Shared {
    /// How long an idle worker above `core_threads` waits for a task before it retires.
    pub(crate) fn keep_alive(&self) -> Duration {
        Duration::from_nanos(self.keep_alive.load(Ordering::Relaxed))
    }

    fn default_timeout(&self) -> Option<Duration> {
        match self.default_timeout.load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Stores the settings read outside the config's lock.
    fn apply_settings(&self, config: &PoolConfig) {
        self.keep_alive
            .store(nanos(config.keep_alive), Ordering::Relaxed);
        self.default_timeout.store(
            config.default_timeout.map_or(NO_TIMEOUT, nanos),
            Ordering::Relaxed,
        );
        *self.spawn_settings.lock() = SpawnSettings::of(&self.name, config);
    }

    /// Starts the workers that tasks in flight lack under the current `max_threads`.
    fn grow(self: &Arc<Self>) {
        for _ in 0..self.admission.try_grow() {
            if worker::spawn(self).is_err() {
                // The tasks are served by the workers there are (a task queues only while
                // some run); the next admission or change tries again.
                self.spawn_failed();
            }
        }
    }

    pub(crate) fn shutdown_error(&self) -> BulkheadError {
        BulkheadError::Shutdown {
            name: self.name.clone(),
        }
    }

    /// A worker left; wake the next one (shutdown) and anyone awaiting termination.
    pub(crate) fn worker_exited(&self, after: State) {
        if !after.is_shutdown() {
            return;
        }
        if after.live() > 0 {
            // Belt and braces: each exit during shutdown wakes one more idle worker, so the
            // chain reaches every worker even if a wake-up was consumed by a busy one.
            self.queue.wake(1);
        } else {
            self.termination.last_worker_exited();
        }
    }
}

/// A bulkhead that runs each call on a dedicated, bounded pool of OS threads.
///
/// At most `max_threads + queue_capacity` calls are admitted at once; the next is rejected
/// at once with [`BulkheadError::Rejected`], without allocating, locking or blocking.
/// Workers start lazily, up to `max_threads`, and a call waits in the FIFO queue only while
/// every worker is busy. A panicking task gives its caller [`BulkheadError::Panicked`]; the
/// worker survives.
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let inventory = ThreadPoolBulkhead::new("inventory", PoolConfig::new(4).queue_capacity(2))?;
/// let stock = inventory.execute(|| 42)?;
/// assert_eq!(stock, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Rejection when the compartment is full:
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("payment", PoolConfig::new(1))?;
/// let (tx, rx) = std::sync::mpsc::channel::<()>();
/// let busy = pool.submit(move || rx.recv().ok())?; // takes the only slot
/// let err = pool.execute(|| ()).unwrap_err();
/// assert!(err.is_rejected());
/// tx.send(()).unwrap();
/// busy.join()?;
/// assert_eq!(pool.stats().rejected, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Closures must be `Send`:
///
/// ```compile_fail
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("x", PoolConfig::new(1)).unwrap();
/// let not_send = std::rc::Rc::new(1);
/// pool.execute(move || *not_send);
/// ```
pub struct ThreadPoolBulkhead {
    /// Padded to its own cache line: a manager hands out one `Arc<ThreadPoolBulkhead>` to
    /// every caller, and the `Arc`'s reference count (written on every clone and drop) sits
    /// just before this field. Unpadded, every call's read of `shared` would miss on the line
    /// the other threads' clones keep stealing.
    shared: CachePadded<Arc<Shared>>,
}

impl fmt::Debug for ThreadPoolBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBulkhead")
            .field("name", &&*self.shared.name)
            .field("config", &*self.shared.config.lock())
            .finish_non_exhaustive()
    }
}

impl ThreadPoolBulkhead {
    /// Creates a pool called `name`. No thread starts until the first call.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field if the configuration is invalid (see
    /// [`PoolConfig::validate`]).
    pub fn new(name: impl Into<String>, config: PoolConfig) -> Result<Self, ConfigError> {
        let name: String = name.into();
        config.validate(&name)?;
        let (max, core, capacity) = adaptive::limits(&config);
        let spawn_settings = SpawnSettings::of(&name, &config);
        let shared = Arc::new_cyclic(|this| Shared {
            name: Arc::from(name),
            admission: Admission::new(max, core, capacity),
            counters: PoolCounters::default(),
            queue_wait: Histogram::default(),
            run_time: Histogram::default(),
            listeners: Listeners::new("pool"),
            rejection_log: crate::trace::RejectionLog::default(),
            queue: Queue::new(),
            keep_alive: AtomicU64::new(nanos(config.keep_alive)),
            default_timeout: AtomicU64::new(config.default_timeout.map_or(NO_TIMEOUT, nanos)),
            spawn_settings: Mutex::new(spawn_settings),
            next_worker_id: AtomicUsize::new(0),
            spin: SpinPolicy::default(),
            spawn_verdicts: SpawnVerdicts::default(),
            termination: Termination::default(),
            failing_spawns: AtomicUsize::new(0),
            created: Instant::now(),
            adaptive_on: AtomicBool::new(config.adaptive.is_some()),
            this: this.clone(),
            #[cfg(feature = "redis")]
            global: Mutex::new(config.global.as_ref().map(|g| g.0.clone())),
            #[cfg(feature = "redis")]
            global_on: AtomicBool::new(config.global.is_some()),
            config: Mutex::new(config),
        });
        let pool = Self {
            shared: CachePadded::new(shared),
        };
        if pool.shared.config.lock().prestart {
            pool.prestart();
        }
        Ok(pool)
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration in force: the one the pool was built with, or the last one
    /// [`reconfigure`](ThreadPoolBulkhead::reconfigure) applied.
    pub fn config(&self) -> PoolConfig {
        self.shared.config.lock().clone()
    }

    /// Applies a whole new configuration at once: `max_threads`, `core_threads`,
    /// `queue_capacity`, `keep_alive` and `default_timeout` now; the thread name prefix and
    /// stack size to threads started from now on (`prestart` starts missing core threads
    /// now, if set).
    ///
    /// It is validated as a whole first, so an invalid configuration changes nothing, and
    /// no order of changes can fail halfway (raising `core_threads` above the old
    /// `max_threads` is one change, not two). It never blocks the caller on the pool's work:
    ///
    /// - **Raising takes effect at once.** Calls are admitted up to the new capacity, and
    ///   queued tasks start on new workers before this returns.
    /// - **Lowering takes nothing back.** Running and queued tasks keep their places and
    ///   get their single outcome; new calls are admitted once the tasks in flight fall
    ///   under the new capacity. No task starts while `max_threads` or more run: workers
    ///   above the new limit finish the task they have and leave, so `running` exceeds the
    ///   new `max_threads` only by tasks that had already started, and only until they end.
    /// - **Stats show the new limits at once**, and concurrent calls leave the last one
    ///   applied, whole.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`PoolConfig::validate`], naming the pool and the field; the
    /// pool keeps its configuration.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("reports", PoolConfig::new(2).queue_capacity(4))?;
    /// pool.reconfigure(PoolConfig::new(8).core_threads(4).queue_capacity(16))?;
    /// assert_eq!(pool.stats().max_threads, 8);
    /// assert_eq!(pool.config().queue_capacity_value(), 16);
    ///
    /// // Invalid as a whole: nothing changes.
    /// let err = pool.reconfigure(PoolConfig::new(2).core_threads(3)).unwrap_err();
    /// assert_eq!(err.field(), "core_threads");
    /// assert_eq!(pool.stats().max_threads, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reconfigure(&self, config: PoolConfig) -> Result<(), ConfigError> {
        let shared = &self.shared;
        config.validate(&shared.name)?;
        let mut current = shared.config.lock();
        let old_keep_alive = current.keep_alive;
        shared.apply_settings(&config);
        shared.set_global(&config);
        let prestart = config.prestart;
        let keep_alive_changed = config.keep_alive != old_keep_alive;
        *current = config;
        // Still under the lock, so that a concurrent change cannot interleave its workers
        // with these: put the limits in force and start what queued tasks now lack.
        let (from, to) = shared.apply_limits(&current);
        let adaptive = current.adaptive.is_some();
        drop(current);
        if keep_alive_changed {
            // Idle workers re-read it: wake them all.
            shared.queue.wake(shared.admission.load().live());
        } else {
            // Idle workers above the new limit: wake them to leave.
            shared.wake_surplus();
        }
        if adaptive && from != to {
            shared
                .listeners
                .emit(&shared.name, EventKind::LimitChanged { from, to });
        }
        if prestart {
            self.prestart();
        }
        Ok(())
    }

    /// Sets `max_threads` (and lowers `core_threads` to it if need be); the rest of
    /// [`reconfigure`](ThreadPoolBulkhead::reconfigure) applies.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the pool and `max_threads` if `n` is invalid (zero, or above
    /// the most threads a pool can count); nothing changes then.
    pub fn set_max_threads(&self, n: usize) -> Result<(), ConfigError> {
        let mut config = self.config();
        config.max_threads = n;
        if config.core_threads.is_some_and(|core| core > n) {
            config.core_threads = Some(n);
        }
        self.reconfigure(config)
    }

    /// Sets `queue_capacity`; the rest of [`reconfigure`](ThreadPoolBulkhead::reconfigure)
    /// applies.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the pool and `queue_capacity` if `n` is invalid; nothing
    /// changes then.
    pub fn set_queue_capacity(&self, n: usize) -> Result<(), ConfigError> {
        let mut config = self.config();
        config.queue_capacity = n;
        self.reconfigure(config)
    }

    /// Runs `f` on one of the pool's threads and waits for its result, at most the
    /// configured [`default_timeout`](PoolConfig::default_timeout) if there is one.
    ///
    /// Called from inside a task that has a deadline (another pool's
    /// `execute_timeout`, say), it waits at most until that deadline, and
    /// [`Deadline::current`](crate::Deadline::current) inside `f` is that one, even with no
    /// timeout of its own: the outer caller stops waiting then anyway (see
    /// [`Deadline`](crate::Deadline)'s "nested calls").
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] at once if the pool is full, [`BulkheadError::Shutdown`]
    /// if it is shut down, [`BulkheadError::Panicked`] if `f` panicked,
    /// [`BulkheadError::Timeout`] if the default timeout passed, and
    /// [`BulkheadError::Spawn`] if the OS refused the only worker thread it needed.
    pub fn execute<F, T>(&self, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_counting(None, f, never_failed)
    }

    /// Runs `f`, waiting at most `timeout` (or the configured default); a value
    /// `is_failure` picks out is counted as `failed`.
    ///
    /// The clock starts at submission, not when the task starts. Nested in a task with a
    /// deadline, that one ends the wait if it comes first, with or without a timeout here
    /// (`Deadline`'s "nested calls").
    pub(crate) fn run_counting<F, T>(
        &self,
        timeout: Option<Duration>,
        f: F,
        is_failure: fn(&T) -> bool,
    ) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let own = timeout.or_else(|| self.shared.default_timeout());
        // No deadline at all (none given, no default, none inherited): no clock to read, so
        // a rejection costs half as much.
        let now =
            (own.is_some() || crate::deadline::current_instant().is_some()).then(Instant::now);
        let deadline = now
            .and_then(|now| crate::deadline::within_current(own.and_then(|t| now.checked_add(t))));
        let (Some(at), Some(now)) = (deadline, now) else {
            let task = self.start(f, None, is_failure)?;
            task.wait(None, Some(&self.shared.spin));
            return task.take(&self.shared);
        };
        let left = at.saturating_duration_since(now);
        let timeout = own.map_or(left, |t| t.min(left));
        let task = self.start(f, deadline, is_failure)?;
        self.shared.wait_deadline(&*task, deadline, timeout)
    }

    /// Runs a fallible `f` as [`execute`](ThreadPoolBulkhead::execute) does, with one flat
    /// result: `f`'s error is [`PolicyError::Inner`], the bulkhead's (rejected, timed out,
    /// panicked, shut down) is [`PolicyError::Bulkhead`] — no `Result<Result<..>>` to
    /// unpack. An `Err` from `f` is counted as [`failed`](crate::PoolStats::failed) (not
    /// `completed`) and fires [`EventKind::Failed`](crate::EventKind::Failed), so a statement the database cancelled
    /// shows in the stats, the events, the Prometheus text and the table.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Inner`] with `f`'s error; [`PolicyError::Bulkhead`] with those of
    /// [`execute`](ThreadPoolBulkhead::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PolicyError, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let db = ThreadPoolBulkhead::new("orders-db", PoolConfig::new(2))?;
    /// assert_eq!(db.execute_fallible(|| Ok::<_, String>(3)).unwrap(), 3);
    /// let err = db.execute_fallible(|| Err::<u32, _>("canceling statement".to_owned()));
    /// assert!(matches!(err, Err(PolicyError::Inner(ref e)) if e == "canceling statement"));
    /// let stats = db.stats();
    /// assert_eq!((stats.completed, stats.failed), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_fallible<F, T, E>(&self, f: F) -> Result<T, PolicyError<E>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        flatten(self.run_counting(None, f, Result::is_err))
    }

    /// [`execute_fallible`](ThreadPoolBulkhead::execute_fallible), waiting at most
    /// `timeout` as [`execute_timeout`](ThreadPoolBulkhead::execute_timeout) does.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Inner`] with `f`'s error; [`PolicyError::Bulkhead`] with those of
    /// [`execute_timeout`](ThreadPoolBulkhead::execute_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let db = ThreadPoolBulkhead::new("db", PoolConfig::new(1))?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let err = db
    ///     .execute_fallible_timeout(Duration::from_millis(10), move || rx.recv())
    ///     .unwrap_err();
    /// assert!(err.bulkhead_error().is_some_and(|e| e.is_timeout()));
    /// tx.send(()).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_fallible_timeout<F, T, E>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<T, PolicyError<E>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        flatten(self.run_counting(Some(timeout), f, Result::is_err))
    }

    /// Runs `f` on one of the pool's threads and waits at most `timeout`, counted from this
    /// call, for its result — or until the deadline of the task this is called from, if
    /// that comes first.
    ///
    /// If the time runs out while `f` is still queued, it is cancelled: it frees its slot at
    /// once, never runs, and is counted as `expired`. If `f` has started it keeps its slot and
    /// runs to its end (threads cannot be killed); its result is dropped.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Timeout`] when the time is up, and the errors of
    /// [`execute`](ThreadPoolBulkhead::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("payment", PoolConfig::new(1))?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let err = pool
    ///     .execute_timeout(Duration::from_millis(20), move || rx.recv().ok())
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// tx.send(()).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_timeout<F, T>(&self, timeout: Duration, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_counting(Some(timeout), f, never_failed)
    }

    /// As [`execute_timeout`](ThreadPoolBulkhead::execute_timeout), for a caller that holds
    /// an absolute deadline (one computed once for a whole request): waits until
    /// `deadline` (or the deadline of the task this is called from, if earlier), and
    /// [`Deadline::current`](crate::Deadline::current) inside `f` ends there. A deadline already past is `execute_timeout` with no time at all: the call is
    /// admitted, and unless its task is done the moment the caller looks, it is a `Timeout`
    /// (a task not yet started is cancelled then and never runs).
    ///
    /// # Errors
    ///
    /// Those of [`execute_timeout`](ThreadPoolBulkhead::execute_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use bulkheads::{Deadline, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("search", PoolConfig::new(1))?;
    /// let request_deadline = Instant::now() + Duration::from_secs(2);
    /// let ends = pool.execute_until(request_deadline, || Deadline::current().map(|d| d.instant()))?;
    /// assert_eq!(ends, Some(request_deadline));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_until<F, T>(&self, deadline: Instant, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.run_until_counting(deadline, f, never_failed)
    }

    /// [`execute_fallible`](ThreadPoolBulkhead::execute_fallible) until an absolute
    /// `deadline`, as [`execute_until`](ThreadPoolBulkhead::execute_until).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Inner`] with `f`'s error; [`PolicyError::Bulkhead`] with those of
    /// [`execute_until`](ThreadPoolBulkhead::execute_until).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use bulkheads::{PolicyError, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("search", PoolConfig::new(1))?;
    /// let until = Instant::now() + Duration::from_secs(5);
    /// let err = pool.execute_fallible_until(until, || Err::<(), _>("no index")).unwrap_err();
    /// assert!(matches!(err, PolicyError::Inner("no index")));
    /// assert_eq!(pool.stats().failed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_fallible_until<F, T, E>(
        &self,
        deadline: Instant,
        f: F,
    ) -> Result<T, PolicyError<E>>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        flatten(self.run_until_counting(deadline, f, Result::is_err))
    }

    /// Runs `f` until `deadline` (cut to this thread's task's, if earlier); a value
    /// `is_failure` picks out is counted as `failed`.
    pub(crate) fn run_until_counting<F, T>(
        &self,
        deadline: Instant,
        f: F,
        is_failure: fn(&T) -> bool,
    ) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let deadline = crate::deadline::within_current(Some(deadline)).unwrap_or(deadline);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let task = self.start(f, Some(deadline), is_failure)?;
        self.shared.wait_deadline(&*task, Some(deadline), timeout)
    }

    /// Submits `f` and returns a [`TaskHandle`] to join, join with a timeout, or cancel.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] at once if the pool is full, [`BulkheadError::Shutdown`]
    /// if it is shut down, [`BulkheadError::Spawn`] if the OS refused the only worker thread
    /// it needed.
    pub fn submit<F, T>(&self, f: F) -> Result<TaskHandle<T>, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The task's own submission time: one clock reading, after admission (a rejection
        // reads none).
        let task = self.start(f, None, never_failed)?;
        let submitted_at = task.submitted();
        Ok(TaskHandle::new(
            task,
            Arc::clone(&self.shared),
            submitted_at,
        ))
    }

    /// Admits `f`, queues it, and starts a worker for it if every worker is assigned.
    /// `deadline` is what [`crate::Deadline::current`] will read inside `f`.
    /// `is_failure` picks out the values counted as `failed`.
    fn start<F, T>(
        &self,
        f: F,
        deadline: Option<Instant>,
        is_failure: fn(&T) -> bool,
    ) -> Result<Arc<Task<F, T>>, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = &self.shared;
        let (spawn, racing_spawn, grow) = match shared.admission.try_admit() {
            Admit::Admitted {
                spawn,
                running,
                racing_spawn,
                grow,
            } => {
                shared.counters.observe_running(running);
                (spawn, racing_spawn, grow)
            }
            // REJECTED: no allocation (the name is shared), no lock, no wait.
            Admit::Full => {
                PoolCounters::bump(&shared.counters.rejected);
                shared.listeners.emit(&shared.name, EventKind::Rejected);
                let capacity = shared.admission.capacity();
                shared.rejection_log.rejected(&shared.name, capacity);
                return Err(BulkheadError::Rejected {
                    name: shared.name.clone(),
                    capacity,
                });
            }
            // Counted apart from `rejected`: a deploy's refusals must not look like a full
            // compartment to an alert on `rejected`.
            Admit::Shutdown => {
                PoolCounters::bump(&shared.counters.shutdown_refused);
                shared
                    .listeners
                    .emit(&shared.name, EventKind::ShutdownRefused);
                return Err(shared.shutdown_error());
            }
        };
        PoolCounters::bump(&shared.counters.submitted);
        shared.listeners.emit(
            &shared.name,
            EventKind::Permitted {
                waited: Duration::ZERO,
            },
        );
        let task = Arc::new(
            Task::new(
                f,
                Instant::now(),
                deadline,
                crate::trace::call_span(&shared.name),
            )
            .counting_failures(is_failure),
        );
        // The queue has no bound of its own: the bound lives in the admission word.
        shared.queue.push(task.clone());
        if spawn {
            // The worker itself reports success (`spawn_succeeded`) as its first act, before
            // it can retire; only a refusal is reported here.
            if let Err(err) = worker::spawn(shared) {
                shared.spawn_failed();
                shared.ensure_served(&(task.clone() as Arc<dyn Job>), Some(err))?;
            }
        } else if racing_spawn {
            // Rare: admitted while another worker's thread was being started.
            shared.ensure_served(&(task.clone() as Arc<dyn Job>), None)?;
        }
        if grow {
            // Rarer: queued while `reconfigure` raised `max_threads`.
            shared.grow();
        }
        Ok(task)
    }

    /// A snapshot of the pool's gauges and counters.
    pub fn stats(&self) -> PoolStats {
        let shared = &self.shared;
        let state = shared.admission.load();
        let (max_threads, core_threads, queue_capacity) = {
            let config = shared.config.lock();
            (
                config.max_threads,
                config.core_threads_value(),
                config.queue_capacity,
            )
        };
        let mut stats = PoolStats::new(
            &shared.name,
            max_threads,
            core_threads,
            queue_capacity,
            state.live(),
            shared.admission.gauges(state),
            state.is_shutdown(),
            &shared.counters,
            (shared.queue_wait.summary(), shared.run_time.summary()),
            shared.created.elapsed(),
        );
        stats.limit = shared.admission.max_threads();
        stats
    }

    /// Calls `listener` for every [`Event`] of this pool from now on: admitted, rejected,
    /// started (with its queue wait), finished or panicked (with its run time), timed out,
    /// expired, cancelled. A rejection fires exactly one event. See [`Event`] for where
    /// listeners run; with none set, events cost one relaxed load.
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.shared.listeners.add(Arc::new(listener));
    }

    pub(crate) fn add_listener(&self, listener: crate::event::Listener) {
        self.shared.listeners.add(listener);
    }

    /// Stops admitting calls. Queued and running tasks still run to their end; then the
    /// workers exit. Idempotent, and never blocks: use
    /// [`await_termination`](ThreadPoolBulkhead::await_termination) to wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("batch", PoolConfig::new(1).queue_capacity(1))?;
    /// let queued = pool.submit(|| 7)?;
    /// pool.shutdown();
    /// assert!(pool.execute(|| 8).unwrap_err().is_shutdown());
    /// assert_eq!(queued.join()?, 7);
    /// assert!(pool.await_termination(Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self) {
        let before = self.shared.admission.shutdown(false);
        self.wake_workers(before);
    }

    /// Stops admitting calls and discards the queue: every task that has not started
    /// completes with [`BulkheadError::Shutdown`] (counted as `cancelled`). Running tasks run
    /// to their end. Idempotent; never blocks.
    pub fn shutdown_now(&self) {
        let shared = &self.shared;
        let before = shared.admission.shutdown(true);
        for job in shared.queue.drain() {
            job.discard(shared, shared.shutdown_error());
        }
        self.wake_workers(before);
    }

    fn wake_workers(&self, before: State) {
        // One wake-up per worker alive at the moment admission stopped; no worker can start
        // after that moment.
        self.shared.queue.wake(before.live());
    }

    /// True once the pool is shut down and every worker has exited.
    pub fn is_terminated(&self) -> bool {
        self.shared.admission.load().is_terminated()
    }

    /// True once [`shutdown`](ThreadPoolBulkhead::shutdown) or
    /// [`shutdown_now`](ThreadPoolBulkhead::shutdown_now) was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.admission.load().is_shutdown()
    }

    /// Waits until the pool is shut down and every worker thread has exited, at most
    /// `timeout`. Returns false at the timeout (for example when a task never returns, or
    /// when the pool was never shut down).
    ///
    /// "Exited" is strict: the threads have been joined, so their thread-local destructors
    /// have run. The joins happen on a short-lived helper thread, so that a thread slow to
    /// exit cannot hold this call past its timeout; concurrent callers all wait for the same
    /// joins.
    pub fn await_termination(&self, timeout: Duration) -> bool {
        Termination::wait(&self.shared, timeout)
    }

    /// Starts `core_threads` workers now ([`PoolConfig::prestart`]). Best effort: a thread
    /// the OS refuses is started on demand later, as any other.
    fn prestart(&self) {
        let shared = &self.shared;
        while shared.admission.try_add_idle_worker() {
            if worker::spawn(shared).is_err() {
                shared.spawn_failed();
                break;
            }
        }
    }

    /// Makes the next `n` worker spawns fail as if the OS refused a thread. For tests of the
    /// failure path only: it exists only with the hidden `__test-hooks` feature, which the
    /// crate's own tests turn on, and is not part of the API.
    #[cfg(feature = "__test-hooks")]
    #[doc(hidden)]
    pub fn inject_spawn_failures(&self, n: usize) {
        self.shared
            .failing_spawns
            .store(n, crate::sync::plain::Ordering::Relaxed);
    }
}

/// A plain task's value is never a failure.
fn never_failed<T>(_: &T) -> bool {
    false
}

/// One flat result for a fallible call: its own error, or the bulkhead's.
pub(crate) fn flatten<T, E>(
    outcome: Result<Result<T, E>, BulkheadError>,
) -> Result<T, PolicyError<E>> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(PolicyError::Inner(e)),
        Err(e) => Err(PolicyError::Bulkhead(e)),
    }
}

impl ThreadPoolBulkhead {
    /// The state its workers and handles share (a connection pool counts its failed
    /// connects in its counters).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }
}

impl Drop for ThreadPoolBulkhead {
    /// Shuts the pool down gracefully without waiting: queued tasks still run and every
    /// handle still gets its outcome; the workers exit when the queue is empty.
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ThreadPoolBulkhead>();
    is::<TaskHandle<u32>>();
    is::<BulkheadError>();
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    unwind_safe::<BulkheadError>();
}
