//! [`PoolConfig`] and [`SemaphoreConfig`]: consuming builders, validated in one place.

use std::time::Duration;

use crate::error::ConfigError;
use crate::limit::{LimitAlgorithm, SharedLimit};

/// How a [`ThreadPoolBulkhead`](crate::ThreadPoolBulkhead) is sized.
///
/// A pool admits at most `max_threads + queue_capacity` calls at once. Workers start lazily,
/// one per call that finds no idle worker, up to `max_threads`; a call waits in the queue only
/// while all `max_threads` workers are busy. Workers above `core_threads` retire after
/// `keep_alive` without work.
///
/// Setters never fail; [`validate`](PoolConfig::validate) (called by every constructor) checks
/// the whole configuration at once and names the field at fault.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::PoolConfig;
///
/// let config = PoolConfig::new(50)
///     .core_threads(10)
///     .queue_capacity(10)
///     .keep_alive(Duration::from_secs(30))
///     .default_timeout(Duration::from_millis(500));
/// assert_eq!(config.max_threads_value(), 50);
/// assert_eq!(config.capacity(), 60);
/// assert!(config.validate("inventory").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub(crate) max_threads: usize,
    pub(crate) core_threads: Option<usize>,
    pub(crate) queue_capacity: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) default_timeout: Option<Duration>,
    pub(crate) thread_name_prefix: Option<String>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) prestart: bool,
    pub(crate) adaptive: Option<SharedLimit>,
    #[cfg(feature = "redis")]
    pub(crate) global: Option<crate::redis::GlobalLimit>,
}

impl PoolConfig {
    /// The largest `max_threads` a pool accepts. A pool of more OS threads than this is
    /// almost certainly a configuration mistake, and the bound lets the pool keep its books
    /// in one atomic word.
    pub const MAX_THREADS: usize = (1 << 15) - 1;

    /// The default keep-alive of workers above `core_threads`: 60 seconds.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);

    /// A pool of `max_threads` workers and no queue: a call that finds every worker busy is
    /// rejected at once (pure fail-fast, like Hystrix's default).
    ///
    /// `core_threads` defaults to `max_threads` (started workers stay), `keep_alive` to 60
    /// seconds, no default timeout, threads named after the pool.
    #[must_use]
    pub fn new(max_threads: usize) -> Self {
        Self {
            max_threads,
            core_threads: None,
            queue_capacity: 0,
            keep_alive: Self::DEFAULT_KEEP_ALIVE,
            default_timeout: None,
            thread_name_prefix: None,
            stack_size: None,
            prestart: false,
            adaptive: None,
            #[cfg(feature = "redis")]
            global: None,
        }
    }

    /// The number of workers that stay alive once started, however long they are idle.
    ///
    /// Defaults to `max_threads`. Must not exceed `max_threads`; zero means every worker
    /// retires after `keep_alive` idle.
    #[must_use]
    pub fn core_threads(mut self, core_threads: usize) -> Self {
        self.core_threads = Some(core_threads);
        self
    }

    /// How many calls may wait while all `max_threads` workers are busy.
    ///
    /// Defaults to 0 for [`PoolConfig::new`] (no queue) and 5 for [`PoolConfig::default`].
    /// The capacity is a limit, not a preallocation: `usize::MAX` is accepted and means
    /// "unbounded" (memory runs out long before the counter could).
    #[must_use]
    pub fn queue_capacity(mut self, queue_capacity: usize) -> Self {
        self.queue_capacity = queue_capacity;
        self
    }

    /// How long a worker above `core_threads` waits for work before it retires.
    ///
    /// Defaults to 60 seconds. Must not be zero.
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The deadline [`execute`](crate::ThreadPoolBulkhead::execute) applies, measured from
    /// submission.
    ///
    /// Defaults to none: `execute` waits for the task however long it takes. Must not be
    /// zero.
    #[must_use]
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// The start of each worker thread's name; the worker's number follows after a dash.
    ///
    /// Defaults to the pool's name, so `top -H` and `ps -L` (which show 15 bytes) show
    /// `inventory-3`. Must not contain a NUL byte.
    #[must_use]
    pub fn thread_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name_prefix = Some(prefix.into());
        self
    }

    /// The stack size of each worker thread, in bytes.
    ///
    /// Defaults to the standard library's default (2 MiB, or `RUST_MIN_STACK`). Must not
    /// be zero.
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Whether the pool starts its `core_threads` workers when it is created, instead of one
    /// by one as calls arrive. A service that must not pay thread starts on its first
    /// requests, or that wants its threads (and their stacks) in place before it takes
    /// traffic, turns it on — as `ThreadPoolExecutor::prestartAllCoreThreads` does. A thread
    /// the OS refuses at that moment is started on demand later.
    ///
    /// Defaults to false: workers start lazily.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("db", PoolConfig::new(4).core_threads(2).prestart(true))?;
    /// assert_eq!(pool.stats().live_threads, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn prestart(mut self, prestart: bool) -> Self {
        self.prestart = prestart;
        self
    }

    /// Makes the pool adaptive: it runs at most `algorithm`'s limit of calls at once (never
    /// more than `max_threads`, never fewer than one), and feeds the algorithm one
    /// [`Sample`](crate::limit::Sample) per finished task: its run time, the tasks running
    /// when it ended (itself included), and whether it was dropped — it overran its caller's
    /// deadline (the caller timed out), or it called [`limit::report_overload`].
    ///
    /// The limit acts as `max_threads` does after [`reconfigure`](crate::ThreadPoolBulkhead::reconfigure):
    /// the pool admits `limit + queue_capacity` calls; lowering it takes nothing back (a
    /// worker above the limit leaves when it is between tasks, and no task starts while
    /// `limit` run); raising it starts queued tasks on new workers at once.
    /// [`PoolStats::limit`](crate::PoolStats::limit) shows the limit in force, and each
    /// change is an [`EventKind::LimitChanged`](crate::EventKind::LimitChanged) event.
    /// Wrap the algorithm in [`Windowed`](crate::limit::Windowed) to update it once per
    /// window instead of once per task.
    ///
    /// Clones of this configuration share the one algorithm: `pool.config()` hands back the
    /// algorithm in force, so `reconfigure(pool.config().queue_capacity(8))` keeps what it
    /// has learnt. Defaults to none: a fixed pool.
    ///
    /// [`limit::report_overload`]: crate::limit::report_overload
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::Aimd;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let config = PoolConfig::new(16).adaptive(Aimd::new().initial_limit(4).min_limit(2));
    /// let db = ThreadPoolBulkhead::new("db", config)?;
    /// assert_eq!(db.stats().limit, 4);
    /// assert_eq!(db.stats().max_threads, 16);
    /// // A call that overran its deadline is a drop: Aimd cuts 4 → 3 (ratio 0.9, rounded down).
    /// let _ = db.execute_timeout(Duration::from_millis(1), || {
    ///     std::thread::sleep(Duration::from_millis(20))
    /// });
    /// // The worker feeds the sample when the task ends, after the caller gave up.
    /// while db.stats().completed == 0 {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(db.stats().limit, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.adaptive = Some(SharedLimit::new(algorithm));
        self
    }

    /// Each task also takes a lease of `semaphore`, a budget shared by every process that
    /// names it (feature `redis`), before it runs, inside the pool's own limits: the worker
    /// waits for the lease at most the semaphore's
    /// [`max_wait`](crate::RedisSemaphoreConfig::max_wait) and never past the task's
    /// deadline, holds it while the task runs and releases it when the task ends. A task
    /// that gets no lease does not run: its caller gets [`BulkheadError::Rejected`] (no
    /// permit in time) or, with Redis unavailable and the semaphore failing closed (the
    /// default, see [`Outage`](crate::Outage)), [`BulkheadError::Unavailable`] — both naming
    /// the pool — and [`PoolStats::global_refused`](crate::PoolStats::global_refused) counts
    /// it. A fail-open semaphore runs the task without a lease instead.
    ///
    /// The wait for a lease holds a worker, as a wait for a database connection would:
    /// the pool's `max_threads` bounds how many calls of this process wait on the fleet.
    /// Defaults to none.
    ///
    /// [`BulkheadError::Rejected`]: crate::BulkheadError::Rejected
    /// [`BulkheadError::Unavailable`]: crate::BulkheadError::Unavailable
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, RedisSemaphore, RedisSemaphoreConfig, ThreadPoolBulkhead};
    ///
    /// // Port 1: nothing listens, so Redis is "down" and the pool fails closed.
    /// let budget = RedisSemaphore::new(
    ///     "partner-db",
    ///     RedisSemaphoreConfig::new("redis://127.0.0.1:1/", 100)
    ///         .connect_timeout(Duration::from_millis(100)),
    /// )?;
    /// let pool = ThreadPoolBulkhead::new(
    ///     "reports",
    ///     PoolConfig::new(4).global_limit(Arc::new(budget)),
    /// )?;
    /// let err = pool.execute(|| "ran").unwrap_err();
    /// assert!(err.is_unavailable());
    /// assert_eq!(err.bulkhead(), "reports");
    /// assert_eq!(pool.stats().global_refused, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn global_limit(mut self, semaphore: crate::sync::Arc<crate::RedisSemaphore>) -> Self {
        self.global = Some(crate::redis::GlobalLimit(semaphore));
        self
    }

    /// True if the pool's limit is set by an adaptive algorithm ([`adaptive`](Self::adaptive)).
    pub fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// The configured maximum number of worker threads.
    pub fn max_threads_value(&self) -> usize {
        self.max_threads
    }

    /// The number of core threads this configuration resolves to.
    pub fn core_threads_value(&self) -> usize {
        self.core_threads.unwrap_or(self.max_threads)
    }

    /// The configured queue capacity.
    pub fn queue_capacity_value(&self) -> usize {
        self.queue_capacity
    }

    /// How many calls the pool admits at once: `max_threads + queue_capacity`, saturating.
    pub fn capacity(&self) -> usize {
        self.max_threads.saturating_add(self.queue_capacity)
    }

    /// Checks the configuration for a bulkhead called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the first invalid field: an empty or NUL-bearing
    /// `name` or `thread_name_prefix`, `max_threads` of zero or above
    /// [`MAX_THREADS`](PoolConfig::MAX_THREADS), `core_threads` above `max_threads`, or a
    /// zero `keep_alive`, `default_timeout` or `stack_size`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::PoolConfig;
    ///
    /// let err = PoolConfig::new(4).core_threads(8).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "core_threads");
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        validate_name(name)?;
        if self.max_threads == 0 {
            return Err(ConfigError::new(
                name,
                "max_threads",
                "must be at least 1 (got 0)",
            ));
        }
        if self.max_threads > Self::MAX_THREADS {
            return Err(ConfigError::new(
                name,
                "max_threads",
                format!(
                    "must be at most {} (got {})",
                    Self::MAX_THREADS,
                    self.max_threads
                ),
            ));
        }
        if let Some(core) = self.core_threads.filter(|&core| core > self.max_threads) {
            return Err(ConfigError::new(
                name,
                "core_threads",
                format!(
                    "must not exceed max_threads ({}) (got {core})",
                    self.max_threads
                ),
            ));
        }
        if self.keep_alive.is_zero() {
            return Err(ConfigError::new(name, "keep_alive", "must not be zero"));
        }
        if self.default_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                name,
                "default_timeout",
                "must not be zero",
            ));
        }
        if let Some(prefix) = &self.thread_name_prefix {
            if prefix.is_empty() {
                return Err(ConfigError::new(
                    name,
                    "thread_name_prefix",
                    "must not be empty",
                ));
            }
            if prefix.contains('\0') {
                return Err(ConfigError::new(
                    name,
                    "thread_name_prefix",
                    "must not contain a NUL byte",
                ));
            }
        }
        if self.stack_size == Some(0) {
            return Err(ConfigError::new(name, "stack_size", "must not be zero"));
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate(name)?;
        }
        Ok(())
    }
}

impl Default for PoolConfig {
    /// The textbook starting point: 10 threads and a queue of 5.
    ///
    /// This is what [`BulkheadManager::pool`](crate::BulkheadManager::pool) uses for a name
    /// it was not configured with, unless the manager's builder set another default.
    fn default() -> Self {
        Self::new(10).queue_capacity(5)
    }
}

/// How a [`SemaphoreBulkhead`](crate::SemaphoreBulkhead) is sized.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::SemaphoreConfig;
///
/// let config = SemaphoreConfig::new(25).max_wait(Duration::from_millis(20));
/// assert_eq!(config.max_concurrent_value(), 25);
/// assert!(config.validate("cache").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreConfig {
    pub(crate) max_concurrent: usize,
    pub(crate) max_wait: Duration,
    pub(crate) max_waiting: Option<usize>,
    pub(crate) adaptive: Option<SharedLimit>,
    #[cfg(feature = "redis")]
    pub(crate) global: Option<crate::redis::GlobalLimit>,
}

impl SemaphoreConfig {
    /// The largest `max_concurrent` a semaphore accepts.
    pub const MAX_CONCURRENT: usize = u32::MAX as usize;

    /// A semaphore of `max_concurrent` permits that never waits: a call that finds no free
    /// permit is rejected at once.
    #[must_use]
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            max_concurrent,
            max_wait: Duration::ZERO,
            max_waiting: None,
            adaptive: None,
            #[cfg(feature = "redis")]
            global: None,
        }
    }

    /// The most callers that may wait for a permit at once; past it a call is rejected at
    /// once, as a pool's full queue rejects.
    ///
    /// Defaults to no bound (waits are bounded by [`max_wait`](Self::max_wait) only). Bound
    /// it: 20 waiters that each get a permit too late to finish are worse than 8 fast
    /// rejections. The rule is the pool's: a caller waits about `waiting × run time ÷
    /// max_concurrent` for its permit, so a bound above `max_concurrent × deadline ÷ run
    /// time` only admits calls that will time out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let db = std::sync::Arc::new(SemaphoreBulkhead::new(
    ///     "db",
    ///     SemaphoreConfig::new(1).max_wait(Duration::from_secs(10)).max_waiting(0),
    /// )?);
    /// let held = db.try_acquire()?;
    /// // No place to wait: rejected at once although max_wait is 10 s.
    /// assert!(db.call(|| ()).unwrap_err().is_rejected());
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn max_waiting(mut self, max_waiting: usize) -> Self {
        self.max_waiting = Some(max_waiting);
        self
    }

    /// The configured bound on waiting callers, if any.
    pub fn max_waiting_value(&self) -> Option<usize> {
        self.max_waiting
    }

    /// How long [`call`](crate::SemaphoreBulkhead::call) waits for a permit before it is
    /// rejected.
    ///
    /// Defaults to zero: no wait.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Makes the semaphore adaptive: it grants at most `algorithm`'s limit of permits at
    /// once (never more than `max_concurrent`, never fewer than one), and feeds the
    /// algorithm one [`Sample`](crate::limit::Sample) per released permit: how long it was
    /// held, the permits held when it was released (itself included), and whether the call
    /// was dropped — a [`call_timeout`](crate::SemaphoreBulkhead::call_timeout) that overran
    /// its deadline, or a [`limit::report_overload`](crate::limit::report_overload) on the
    /// thread that held the permit.
    ///
    /// The limit acts as `max_concurrent` does after
    /// [`set_max_concurrent`](crate::SemaphoreBulkhead::set_max_concurrent): lowering it takes
    /// no permit back, raising it grants waiters at once.
    /// [`SemaphoreStats::limit`](crate::SemaphoreStats::limit) shows it. Clones of this
    /// configuration share the one algorithm. Defaults to none: a fixed semaphore.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{self, Aimd};
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let api = SemaphoreBulkhead::new(
    ///     "partner",
    ///     SemaphoreConfig::new(20).adaptive(Aimd::new().initial_limit(10).min_limit(1)),
    /// )?;
    /// assert_eq!(api.stats().limit, 10);
    /// api.call(limit::report_overload)?; // the partner answered 429
    /// assert_eq!(api.stats().limit, 9);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.adaptive = Some(SharedLimit::new(algorithm));
        self
    }

    /// Each [`call`](crate::SemaphoreBulkhead::call) and
    /// [`call_timeout`](crate::SemaphoreBulkhead::call_timeout) also takes a lease of
    /// `semaphore` (feature `redis`) after its local permit, waiting at most the Redis
    /// semaphore's `max_wait` and never past the call's deadline, and holds it while `f`
    /// runs; without one `f` does not run and the caller gets `Rejected` or `Unavailable`
    /// naming this semaphore, as [`PoolConfig::global_limit`] describes. Permits taken with
    /// `try_acquire` / `acquire` are local only. Defaults to none.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn global_limit(mut self, semaphore: crate::sync::Arc<crate::RedisSemaphore>) -> Self {
        self.global = Some(crate::redis::GlobalLimit(semaphore));
        self
    }

    /// True if the semaphore's limit is set by an adaptive algorithm.
    pub fn is_adaptive(&self) -> bool {
        self.adaptive.is_some()
    }

    /// The configured number of permits.
    pub fn max_concurrent_value(&self) -> usize {
        self.max_concurrent
    }

    /// The configured maximum wait.
    pub fn max_wait_value(&self) -> Duration {
        self.max_wait
    }

    /// Checks the configuration for a bulkhead called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field: an empty or NUL-bearing `name`, or a
    /// `max_concurrent` of zero or above [`MAX_CONCURRENT`](SemaphoreConfig::MAX_CONCURRENT).
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        validate_name(name)?;
        if self.max_concurrent == 0 {
            return Err(ConfigError::new(
                name,
                "max_concurrent",
                "must be at least 1 (got 0)",
            ));
        }
        if self.max_concurrent > Self::MAX_CONCURRENT {
            return Err(ConfigError::new(
                name,
                "max_concurrent",
                format!(
                    "must be at most {} (got {})",
                    Self::MAX_CONCURRENT,
                    self.max_concurrent
                ),
            ));
        }
        if let Some(adaptive) = &self.adaptive {
            adaptive.validate(name)?;
        }
        Ok(())
    }
}

impl Default for SemaphoreConfig {
    /// 25 permits and no wait (resilience4j's default).
    fn default() -> Self {
        Self::new(25)
    }
}

pub(crate) fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::new(name, "name", "must not be empty"));
    }
    if name.contains('\0') {
        return Err(ConfigError::new(
            name,
            "name",
            "must not contain a NUL byte",
        ));
    }
    Ok(())
}
