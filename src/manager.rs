//! [`BulkheadManager`]: the registry of named bulkheads.
//!
//! Pools, semaphores and (on Unix) process bulkheads live in registries of one generic
//! type, [`Registry`]; what a
//! registry needs of its kind of bulkhead is the [`Member`] trait. A lookup goes through the
//! calling thread's cache first (`recent.rs`), so a repeat lookup takes no lock.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::config::{PoolConfig, SemaphoreConfig, validate_name};
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, Listener};
use crate::pool::ThreadPoolBulkhead;
#[cfg(unix)]
use crate::process::{ProcessBulkhead, ProcessConfig};
use crate::recent;
use crate::retry::Retry;
use crate::semaphore::SemaphoreBulkhead;
use crate::stats::{BulkheadStats, ManagerStats};
use crate::sync::Arc;
use crate::sync::plain::{AtomicUsize, Ordering, RegistryLock};

/// A registry's map. Its hasher is foldhash's: a lookup that misses the per-thread cache
/// runs on `manager.pool(name)`, where SipHash alone cost as much as the rest of the lookup,
/// and the registry holds at most `max_bulkheads` names, so flooding attacks on the hash have
/// little to work with (foldhash is still seeded per process).
///
/// Keys are `Arc<str>` so that the per-thread lookup cache can keep one without copying it.
type Map<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;

/// The name [`ConfigError`]s use for the manager's default configurations.
const DEFAULT_NAME: &str = "<default>";

/// The default cap on the number of bulkheads a manager holds.
pub const DEFAULT_MAX_BULKHEADS: usize = 1024;

/// The registry of a service's bulkheads, one per dependency, looked up by name.
///
/// Configure the known dependencies up front with the [builder](BulkheadManager::builder);
/// [`pool`](BulkheadManager::pool) and [`semaphore`](BulkheadManager::semaphore) create any
/// other name on first use from the default configuration, and return the same bulkhead
/// (the same `Arc`) for the same name every time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{BulkheadManager, PoolConfig};
///
/// let manager = BulkheadManager::builder()
///     .pool("inventory", PoolConfig::new(4).queue_capacity(2))
///     .pool("payment", PoolConfig::new(2))
///     .build()?;
/// let stock = manager.pool("inventory").execute(|| 12)?;
/// assert_eq!(stock, 12);
/// let receipt = manager
///     .pool("payment")
///     .execute_timeout(Duration::from_millis(500), || "paid")?;
/// assert_eq!(receipt, "paid");
/// println!("{}", manager.stats());
/// assert!(manager.shutdown(Duration::from_secs(5)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BulkheadManager {
    /// Process-unique: keys this manager's entries in the per-thread lookup cache.
    id: u64,
    /// Bulkheads of every kind together, against `max_bulkheads`.
    cap: Cap,
    pools: Registry<ThreadPoolBulkhead>,
    semaphores: Registry<SemaphoreBulkhead>,
    #[cfg(unix)]
    processes: Registry<ProcessBulkhead>,
    /// The configured circuit breakers, by name; fixed at build, so read without a lock.
    breakers: std::collections::BTreeMap<Arc<str>, Arc<CircuitBreaker>>,
    /// The configured retries, by name; fixed at build. Clones share their counters and
    /// listeners, so `retry(name)` hands out clones.
    retries: std::collections::BTreeMap<Arc<str>, Retry>,
    /// `(pattern, pool name)` in the order configured: [`pool_for`](Self::pool_for).
    routes: Vec<(Box<str>, Box<str>)>,
}

impl fmt::Debug for BulkheadManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BulkheadManager");
        d.field("default_pool", &self.pools.default)
            .field("default_semaphore", &self.semaphores.default)
            .field("max_bulkheads", &self.cap.max)
            .field("pools", &self.pools.names())
            .field("semaphores", &self.semaphores.names())
            .field(
                "circuit_breakers",
                &self.breakers.keys().collect::<Vec<_>>(),
            )
            .field("retries", &self.retries.keys().collect::<Vec<_>>());
        #[cfg(unix)]
        d.field("processes", &self.processes.names());
        d.finish()
    }
}

/// Where [`BulkheadManager::pool_for`] sends a key that no route matches.
const DEFAULT_ROUTE: &str = "default";

impl Default for BulkheadManager {
    fn default() -> Self {
        Self::new()
    }
}

impl BulkheadManager {
    /// A manager with no configured bulkheads: every name gets
    /// [`PoolConfig::default`] (its idle workers retiring, see
    /// [`default_pool_config`](BulkheadManagerBuilder::default_pool_config)) or
    /// [`SemaphoreConfig::default`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::BulkheadManager;
    ///
    /// let manager = BulkheadManager::new();
    /// let stats = manager.pool("anything").stats();
    /// assert_eq!((stats.max_threads, stats.queue_capacity, stats.core_threads), (10, 5, 0));
    /// ```
    pub fn new() -> Self {
        Self {
            id: recent::next_manager_id(),
            cap: Cap::new(DEFAULT_MAX_BULKHEADS, 0),
            pools: Registry::new(on_demand(PoolConfig::default()), Map::default()),
            semaphores: Registry::new(SemaphoreConfig::default(), Map::default()),
            #[cfg(unix)]
            processes: Registry::new(ProcessConfig::default(), Map::default()),
            breakers: std::collections::BTreeMap::new(),
            retries: std::collections::BTreeMap::new(),
            routes: Vec::new(),
        }
    }

    /// The pool a key is routed to: the pool of the first
    /// [`route`](BulkheadManagerBuilder::route) whose pattern matches all of `key`, else the
    /// pool named `"default"` — never a pool named after the key, so keys from outside
    /// (URLs, tenant ids) cannot grow the registry.
    ///
    /// # Panics
    ///
    /// As [`pool`](Self::pool) for the routed name: only if that name is not configured and
    /// cannot be created (a full manager, or [`strict_names`](BulkheadManagerBuilder::strict_names)
    /// without it configured). The key itself never causes a panic.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, PoolConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .pool("search", PoolConfig::new(4))
    ///     .route("/search*", "search")
    ///     .build()?;
    /// assert_eq!(manager.pool_for("/search?q=hull").name(), "search");
    /// assert_eq!(manager.pool_for("/checkout").name(), "default");
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn pool_for(&self, key: &str) -> Arc<ThreadPoolBulkhead> {
        let name = self
            .routes
            .iter()
            .find(|(pattern, _)| crate::route::glob_match(pattern, key))
            .map_or(DEFAULT_ROUTE, |(_, name)| &**name);
        self.pool(name)
    }

    /// A builder for a manager with named configurations.
    pub fn builder() -> BulkheadManagerBuilder {
        BulkheadManagerBuilder::default()
    }

    /// The pool called `name`, created from the default configuration on first use.
    ///
    /// # Panics
    ///
    /// If `name` is new and not a valid bulkhead name (empty, or containing a NUL byte), or
    /// the manager already holds [`max_bulkheads`](BulkheadManagerBuilder::max_bulkheads).
    /// Configured names never panic. Names that come from outside the program (tenant ids,
    /// URLs) should go through [`try_pool`](BulkheadManager::try_pool).
    ///
    /// # Cost
    ///
    /// Each thread remembers the bulkheads it looked up recently (up to 64 pools and 64
    /// semaphores), so a repeat lookup is a name comparison (and a hash, when the thread
    /// alternates between names) plus the `Arc` clone, with no lock; a first lookup reads
    /// the registry under a read lock. Holding the `Arc` is still cheaper on the hottest
    /// paths. The cache keeps no bulkhead alive: it holds weak references.
    pub fn pool(&self, name: &str) -> Arc<ThreadPoolBulkhead> {
        self.try_pool(name).unwrap_or_else(|err| panic!("{err}"))
    }

    /// The pool called `name`, created from the default configuration on first use.
    ///
    /// After [`shutdown`](BulkheadManager::shutdown), a new name still gets its pool (the
    /// same one every time), but it is shut down from birth: it refuses every call with
    /// [`BulkheadError::Shutdown`] and never starts a thread.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `name` is not a valid bulkhead name (field `name`), or if it is
    /// new and the manager already holds
    /// [`max_bulkheads`](BulkheadManagerBuilder::max_bulkheads) (field `max_bulkheads`).
    /// A full manager refuses before it builds anything.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::BulkheadManager;
    ///
    /// let manager = BulkheadManager::new();
    /// assert_eq!(manager.try_pool("tenant-42")?.name(), "tenant-42");
    /// assert_eq!(manager.try_pool("").unwrap_err().field(), "name");
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn try_pool(&self, name: &str) -> Result<Arc<ThreadPoolBulkhead>, ConfigError> {
        self.lookup(name)
    }

    /// The pool called `name` if it exists; never creates one.
    pub fn get_pool(&self, name: &str) -> Option<Arc<ThreadPoolBulkhead>> {
        self.find(name)
    }

    /// Runs `f` in the pool called `name` (created on first use) and waits for its result:
    /// `manager.try_pool(name)?.execute(f)`, in one call that never panics, whatever the
    /// name.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Config`] if there is no pool called `name` and none can be created
    /// (an invalid name, or a full manager; see [`try_pool`](BulkheadManager::try_pool)),
    /// and those of [`ThreadPoolBulkhead::execute`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, PoolConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .pool("inventory", PoolConfig::new(4))
    ///     .build()?;
    /// assert_eq!(manager.execute("inventory", || 6 * 7)?, 42);
    /// assert_eq!(manager.stats().pool("inventory").map(|p| p.completed), Some(1));
    /// let err = manager.execute("", || 0).unwrap_err();
    /// assert_eq!(err.config_error().map(|e| e.field()), Some("name"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute<F, T>(&self, name: &str, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.try_pool(name).map_err(|error| BulkheadError::Config {
            name: Arc::from(name),
            error,
        })?;
        pool.execute(f)
    }

    /// The semaphore called `name`, created from the default configuration on first use.
    ///
    /// # Panics
    ///
    /// If `name` is new and not a valid bulkhead name, or the manager is full; see
    /// [`try_semaphore`](BulkheadManager::try_semaphore).
    pub fn semaphore(&self, name: &str) -> Arc<SemaphoreBulkhead> {
        self.try_semaphore(name)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// The semaphore called `name`, created from the default configuration on first use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `name` is not a valid bulkhead name, or if it is new and the
    /// manager already holds [`max_bulkheads`](BulkheadManagerBuilder::max_bulkheads).
    pub fn try_semaphore(&self, name: &str) -> Result<Arc<SemaphoreBulkhead>, ConfigError> {
        self.lookup(name)
    }

    /// The semaphore called `name` if it exists; never creates one.
    pub fn get_semaphore(&self, name: &str) -> Option<Arc<SemaphoreBulkhead>> {
        self.find(name)
    }

    /// The process bulkhead called `name` (Unix only), created from the default
    /// configuration ([`ProcessConfig::on_demand`] unless the builder's
    /// [`default_process_config`](BulkheadManagerBuilder::default_process_config) set one)
    /// on first use.
    ///
    /// # Panics
    ///
    /// If `name` is new and not a valid bulkhead name, or the manager is full; see
    /// [`try_process`](BulkheadManager::try_process).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::process::Command;
    /// use std::time::Duration;
    /// use bulkheads::{BulkheadManager, ProcessConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .process("convert", ProcessConfig::new(2).timeout(Duration::from_secs(5)))
    ///     .build()?;
    /// let out = manager.process("convert").run(Command::new("true"))?;
    /// assert!(out.status.success());
    /// assert_eq!(manager.stats().process("convert").map(|p| p.completed), Some(1));
    /// assert!(manager.stats().to_string().contains("process"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(unix)]
    pub fn process(&self, name: &str) -> Arc<ProcessBulkhead> {
        self.try_process(name).unwrap_or_else(|err| panic!("{err}"))
    }

    /// The process bulkhead called `name` (Unix only), created from the default
    /// configuration on first use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `name` is not a valid bulkhead name, or if it is new and the
    /// manager already holds [`max_bulkheads`](BulkheadManagerBuilder::max_bulkheads).
    #[cfg(unix)]
    pub fn try_process(&self, name: &str) -> Result<Arc<ProcessBulkhead>, ConfigError> {
        self.lookup(name)
    }

    /// The process bulkhead called `name` (Unix only) if it exists; never creates one.
    #[cfg(unix)]
    pub fn get_process(&self, name: &str) -> Option<Arc<ProcessBulkhead>> {
        self.find(name)
    }

    /// The bulkhead called `name`, from this thread's cache or the registry of its kind,
    /// created on first use.
    fn lookup<T: Kind>(&self, name: &str) -> Result<Arc<T>, ConfigError> {
        recent::lookup(self.id, name, || {
            T::registry(self).get_or_create(name, &self.cap)
        })
    }

    /// The bulkhead called `name` if it exists, from this thread's cache or the registry.
    fn find<T: Kind>(&self, name: &str) -> Option<Arc<T>> {
        recent::lookup(self.id, name, || T::registry(self).get(name).ok_or(())).ok()
    }

    /// How many bulkheads (pools and semaphores) the manager holds.
    pub fn len(&self) -> usize {
        self.cap.used()
    }

    /// True if the manager holds no bulkhead.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `listener` for every [`Event`] of every bulkhead of this manager, those that
    /// exist now and those created later (also while this call runs: each bulkhead gets
    /// the listener exactly once).
    ///
    /// The listener runs with no lock of the manager held, so it may call back into the
    /// manager (read [`stats`](BulkheadManager::stats), add a listener); see [`Event`] for
    /// where it runs. Its panics are caught and dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use bulkheads::{BulkheadManager, EventKind};
    ///
    /// let manager = BulkheadManager::new();
    /// let rejected = Arc::new(AtomicUsize::new(0));
    /// let count = Arc::clone(&rejected);
    /// manager.on_event(move |e| {
    ///     if e.kind == EventKind::Rejected {
    ///         count.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// let cache = manager.semaphore("cache"); // created after the listener
    /// let permits: Vec<_> = (0..25).map(|_| cache.try_acquire().unwrap()).collect();
    /// assert!(cache.try_acquire().is_err());
    /// assert_eq!(rejected.load(Ordering::Relaxed), 1);
    /// # drop(permits);
    /// ```
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        let listener: Listener = Arc::new(listener);
        self.pools.add_listener(&listener);
        self.semaphores.add_listener(&listener);
        #[cfg(unix)]
        self.processes.add_listener(&listener);
        for breaker in self.breakers.values() {
            breaker.add_listener(Arc::clone(&listener));
        }
        for retry in self.retries.values() {
            retry.add_listener(Arc::clone(&listener));
        }
    }

    /// The retry configured as `name` with [`retry`](BulkheadManagerBuilder::retry), if
    /// there is one: a clone sharing its counters and listeners, to give to a
    /// [`Policy`](crate::Policy). Its events ([`RetryScheduled`](crate::EventKind::RetryScheduled),
    /// [`RetryThrottled`](crate::EventKind::RetryThrottled)) reach the manager's listeners,
    /// and its counters are in [`stats`](Self::stats) (the table and the Prometheus text).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::time::Duration;
    /// use bulkheads::{Backoff, BulkheadManager, EventKind, ManualClock, PolicyError, Retry};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .retry(
    ///         "search",
    ///         Retry::new(3)
    ///             .backoff(Backoff::fixed(Duration::from_millis(10)))
    ///             .clock(Arc::new(ManualClock::new())),
    ///     )
    ///     .build()?;
    /// let scheduled = Arc::new(AtomicUsize::new(0));
    /// let seen = Arc::clone(&scheduled);
    /// manager.on_event(move |e| {
    ///     if matches!(e.kind, EventKind::RetryScheduled { .. }) {
    ///         seen.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// });
    /// let retry = manager.retry("search").expect("configured");
    /// let _ = retry.call(|| Err::<(), _>(PolicyError::Inner("503")));
    /// assert_eq!(scheduled.load(Ordering::Relaxed), 2);
    /// let text = manager.stats().to_prometheus();
    /// assert!(text.contains("bulkhead_retry_attempts_total{bulkhead=\"search\",kind=\"retry\"} 2\n"));
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn retry(&self, name: &str) -> Option<Retry> {
        self.retries.get(name).cloned()
    }

    /// The circuit breaker configured as `name` with
    /// [`circuit_breaker`](BulkheadManagerBuilder::circuit_breaker), if there is one. Its
    /// events reach the manager's listeners, and its snapshot is in
    /// [`stats`](Self::stats) (the table and the Prometheus text).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, CircuitBreakerConfig, CircuitState};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .circuit_breaker("email", CircuitBreakerConfig::new())
    ///     .build()?;
    /// let breaker = manager.circuit_breaker("email").expect("configured");
    /// breaker.transition_to(CircuitState::ForcedOpen)?;
    /// let stats = manager.stats();
    /// assert_eq!(stats.circuit_breakers[0].state, CircuitState::ForcedOpen);
    /// assert!(stats.to_string().contains("forced open"));
    /// assert!(manager.circuit_breaker("payment").is_none());
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn circuit_breaker(&self, name: &str) -> Option<Arc<CircuitBreaker>> {
        self.breakers.get(name).cloned()
    }

    /// A snapshot of every bulkhead, ordered by name; its `Display` is a table.
    pub fn stats(&self) -> ManagerStats {
        let mut bulkheads = self.pools.snapshot();
        bulkheads.extend(self.semaphores.snapshot());
        #[cfg(unix)]
        bulkheads.extend(self.processes.snapshot());
        bulkheads.sort_by(|a, b| a.name().cmp(b.name()));
        let circuit_breakers = self.breakers.values().map(|b| b.metrics()).collect();
        let retries = self
            .retries
            .iter()
            .map(|(name, r)| crate::retry::RetryStats::new(name, r.metrics()))
            .collect();
        ManagerStats {
            bulkheads,
            circuit_breakers,
            retries,
        }
    }

    /// Shuts every pool down (queued work still runs) and waits at most `timeout` in all
    /// for their threads to exit. Returns true if every pool terminated in time.
    ///
    /// From then on the manager hands out no live pool: a pool created afterwards (by
    /// [`pool`](BulkheadManager::pool) with a new name, or concurrently with this call) is
    /// shut down before anyone gets it, so it refuses every call with
    /// [`BulkheadError::Shutdown`] and never starts a thread. Semaphores and process
    /// bulkheads run on their callers' threads and have no shutdown; they keep working.
    /// Idempotent.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::BulkheadManager;
    ///
    /// let manager = BulkheadManager::new();
    /// assert_eq!(manager.execute("before", || 1)?, 1);
    /// assert!(manager.shutdown(Duration::from_secs(5)));
    /// assert!(manager.execute("before", || 2).unwrap_err().is_shutdown());
    /// assert!(manager.execute("after", || 3).unwrap_err().is_shutdown());
    /// assert_eq!(manager.stats().pool("after").map(|p| p.live_threads), Some(0));
    /// # Ok::<(), bulkheads::BulkheadError>(())
    /// ```
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let pools = self.pools.close();
        for pool in &pools {
            pool.shutdown();
        }
        let deadline = Instant::now().checked_add(timeout);
        pools.iter().all(|pool| {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            pool.await_termination(left)
        })
    }
}

/// A default pool configuration as the manager applies it to pools created on first use:
/// `core_threads` 0 unless the configuration set it. Core workers never retire, and names
/// created on demand can be many (up to `max_bulkheads`), so with the usual default (core =
/// max) every such pool kept its threads for the manager's life: 1,024 pools of
/// `PoolConfig::default()` could hold 10,240 idle threads.
fn on_demand(config: PoolConfig) -> PoolConfig {
    match config.core_threads {
        Some(_) => config,
        None => config.core_threads(0),
    }
}

/// Builds a [`BulkheadManager`]; see [`BulkheadManager::builder`].
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, PoolConfig, SemaphoreConfig};
///
/// let err = BulkheadManager::builder()
///     .pool("payment", PoolConfig::new(4).core_threads(5))
///     .build()
///     .unwrap_err();
/// assert_eq!((err.bulkhead(), err.field()), ("payment", "core_threads"));
///
/// let manager = BulkheadManager::builder()
///     .default_pool_config(PoolConfig::new(2))
///     .semaphore("cache", SemaphoreConfig::new(8))
///     .build()?;
/// assert_eq!(manager.pool("anything").stats().max_threads, 2);
/// # Ok::<(), bulkheads::ConfigError>(())
/// ```
#[derive(Debug, Default)]
#[must_use = "a builder does nothing until .build() is called"]
pub struct BulkheadManagerBuilder {
    max_bulkheads: Option<usize>,
    strict_names: bool,
    default_pool: Option<PoolConfig>,
    default_semaphore: Option<SemaphoreConfig>,
    pools: Vec<(String, PoolConfig)>,
    semaphores: Vec<(String, SemaphoreConfig)>,
    #[cfg(unix)]
    default_process: Option<ProcessConfig>,
    #[cfg(unix)]
    processes: Vec<(String, ProcessConfig)>,
    circuit_breakers: Vec<(String, CircuitBreakerConfig)>,
    retries: Vec<(String, Retry)>,
    routes: Vec<(String, String)>,
}

impl BulkheadManagerBuilder {
    /// The configuration of pools created on first use by name.
    ///
    /// Defaults to [`PoolConfig::default`]: 10 threads and a queue of 5. Unless `config`
    /// sets [`core_threads`](PoolConfig::core_threads) explicitly, such pools get
    /// `core_threads` 0: every worker retires after
    /// [`keep_alive`](PoolConfig::keep_alive) idle (60 seconds by default), so pools that
    /// users' names created hold threads only while they work. (A pool configured by name
    /// with [`pool`](BulkheadManagerBuilder::pool) keeps `PoolConfig`'s own default, core =
    /// max.)
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, PoolConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .default_pool_config(PoolConfig::new(4))
    ///     .pool("db", PoolConfig::new(4))
    ///     .build()?;
    /// assert_eq!(manager.pool("tenant-9").stats().core_threads, 0);
    /// assert_eq!(manager.pool("db").stats().core_threads, 4);
    ///
    /// let kept = BulkheadManager::builder()
    ///     .default_pool_config(PoolConfig::new(4).core_threads(1))
    ///     .build()?;
    /// assert_eq!(kept.pool("tenant-9").stats().core_threads, 1);
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn default_pool_config(mut self, config: PoolConfig) -> Self {
        self.default_pool = Some(config);
        self
    }

    /// The configuration of semaphores created on first use by name.
    ///
    /// Defaults to [`SemaphoreConfig::default`]: 25 permits, no wait.
    pub fn default_semaphore_config(mut self, config: SemaphoreConfig) -> Self {
        self.default_semaphore = Some(config);
        self
    }

    /// The most bulkheads (pools and semaphores, configured or created on first use) the
    /// manager holds. Past it, [`BulkheadManager::try_pool`] and
    /// [`try_semaphore`](BulkheadManager::try_semaphore) return an error for a new name (at
    /// once, building nothing), so names that come from users cannot grow the registry
    /// without bound.
    ///
    /// It bounds bulkheads, not threads. A manager's threads are bounded by the sum of its
    /// pools' `max_threads` — for pools created on first use, `max_bulkheads ×` the default
    /// config's `max_threads` — and those pools' idle workers retire after `keep_alive`
    /// (see [`default_pool_config`](BulkheadManagerBuilder::default_pool_config)).
    ///
    /// Defaults to [`DEFAULT_MAX_BULKHEADS`] (1,024). Must be at least the number of
    /// configured bulkheads.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::BulkheadManager;
    ///
    /// let manager = BulkheadManager::builder().max_bulkheads(2).build()?;
    /// manager.try_pool("tenant-1")?;
    /// manager.try_semaphore("tenant-2")?;
    /// let err = manager.try_pool("tenant-3").unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("tenant-3", "max_bulkheads"));
    /// assert!(manager.try_pool("tenant-1").is_ok()); // existing names still resolve
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn max_bulkheads(mut self, max: usize) -> Self {
        self.max_bulkheads = Some(max);
        self
    }

    /// With `true`, the manager serves only the names it was built with: a name that was
    /// not configured is an error (`try_pool`, `try_semaphore`, `manager.execute`) instead
    /// of a default-sized compartment created by a typo. `pool(name)` and `semaphore(name)`
    /// panic for such a name, as they do for invalid ones; configured names never do.
    ///
    /// Defaults to `false` (bulkheads are created on first use).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, PoolConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .pool("inventory", PoolConfig::new(8))
    ///     .strict_names(true)
    ///     .build()?;
    /// assert!(manager.try_pool("inventory").is_ok());
    /// let err = manager.try_pool("inventroy").unwrap_err(); // the typo is caught
    /// assert_eq!((err.bulkhead(), err.field()), ("inventroy", "name"));
    /// assert!(manager.execute("inventroy", || 1).unwrap_err().is_config());
    /// assert!(manager.get_pool("inventroy").is_none(), "nothing was created");
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn strict_names(mut self, strict: bool) -> Self {
        self.strict_names = strict;
        self
    }

    /// A pool called `name` with its own configuration.
    pub fn pool(mut self, name: impl Into<String>, config: PoolConfig) -> Self {
        self.pools.push((name.into(), config));
        self
    }

    /// Routes keys matching `pattern` to the pool `bulkhead_name`, for
    /// [`BulkheadManager::pool_for`]. The pattern is a glob covering the whole key: `*`
    /// matches any run of characters, also an empty one; every other character matches
    /// itself. Routes are tried in the order added; the first match wins.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, PoolConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .pool("users", PoolConfig::new(2))
    ///     .pool("orders", PoolConfig::new(2))
    ///     .route("/users/*/orders", "orders")
    ///     .route("/users/*", "users")
    ///     .build()?;
    /// assert_eq!(manager.pool_for("/users/7/orders").name(), "orders");
    /// assert_eq!(manager.pool_for("/users/7").name(), "users");
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn route(mut self, pattern: impl Into<String>, bulkhead_name: impl Into<String>) -> Self {
        self.routes.push((pattern.into(), bulkhead_name.into()));
        self
    }

    /// A semaphore called `name` with its own configuration.
    pub fn semaphore(mut self, name: impl Into<String>, config: SemaphoreConfig) -> Self {
        self.semaphores.push((name.into(), config));
        self
    }

    /// A process bulkhead called `name` with its own configuration (Unix only).
    #[cfg(unix)]
    pub fn process(mut self, name: impl Into<String>, config: ProcessConfig) -> Self {
        self.processes.push((name.into(), config));
        self
    }

    /// The configuration of process bulkheads created on first use by name (Unix only).
    ///
    /// Defaults to [`ProcessConfig::on_demand`]: 4 slots, a queue of 4, a 30-second
    /// deadline.
    #[cfg(unix)]
    pub fn default_process_config(mut self, config: ProcessConfig) -> Self {
        self.default_process = Some(config);
        self
    }

    /// A circuit breaker called `name`, held by the manager: get it with
    /// [`BulkheadManager::circuit_breaker`]. Breakers are not bulkheads: they do not count
    /// against [`max_bulkheads`](Self::max_bulkheads), and names are not created on first
    /// use.
    pub fn circuit_breaker(
        mut self,
        name: impl Into<String>,
        config: CircuitBreakerConfig,
    ) -> Self {
        self.circuit_breakers.push((name.into(), config));
        self
    }

    /// A retry called `name`, held by the manager: get it (a clone sharing its counters
    /// and listeners) with [`BulkheadManager::retry`] and give it to a
    /// [`Policy`](crate::Policy). Its events reach the manager's listeners and its counters
    /// are in the manager's stats. Retries are not bulkheads: they do not count against
    /// [`max_bulkheads`](Self::max_bulkheads).
    pub fn retry(mut self, name: impl Into<String>, retry: Retry) -> Self {
        self.retries.push((name.into(), retry));
        self
    }

    /// Validates every configuration and builds the manager. Configured pools start no
    /// thread until their first call.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`]: an invalid configuration (the default ones are named
    /// `<default>`), or a name configured twice for the same kind of bulkhead (or twice as
    /// a circuit breaker).
    pub fn build(self) -> Result<BulkheadManager, ConfigError> {
        for (pattern, name) in &self.routes {
            if name.is_empty() || name.contains('\0') {
                return Err(ConfigError::new(
                    name,
                    "route",
                    format!("pattern {pattern:?} routes to an invalid bulkhead name"),
                ));
            }
        }
        let mut retries = std::collections::BTreeMap::new();
        for (name, retry) in self.retries {
            if retries.contains_key(name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    "name",
                    "is configured twice as a retry",
                ));
            }
            retry.validate(&name)?;
            let retry = retry.name(name.clone());
            retries.insert(Arc::from(name), retry);
        }
        let mut breakers = std::collections::BTreeMap::new();
        for (name, config) in self.circuit_breakers {
            if breakers.contains_key(name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    "name",
                    "is configured twice as a circuit breaker",
                ));
            }
            let breaker = CircuitBreaker::new(&name, config)?;
            breakers.insert(Arc::from(name), Arc::new(breaker));
        }
        let default_pool = self.default_pool.unwrap_or_default();
        default_pool.validate(DEFAULT_NAME)?;
        let default_semaphore = self.default_semaphore.unwrap_or_default();
        default_semaphore.validate(DEFAULT_NAME)?;
        let pools = configured(self.pools)?;
        let semaphores = configured(self.semaphores)?;
        #[cfg(unix)]
        let default_process = self.default_process.unwrap_or_default();
        #[cfg(unix)]
        default_process.validate(DEFAULT_NAME)?;
        #[cfg(unix)]
        let processes = configured(self.processes)?;
        #[cfg(unix)]
        let process_count = processes.len();
        #[cfg(not(unix))]
        let process_count = 0;
        let max_bulkheads = self.max_bulkheads.unwrap_or(DEFAULT_MAX_BULKHEADS);
        let registered = pools.len() + semaphores.len() + process_count;
        if registered > max_bulkheads {
            return Err(ConfigError::new(
                "<manager>",
                "max_bulkheads",
                format!(
                    "must be at least the {registered} bulkheads configured (got {max_bulkheads})"
                ),
            ));
        }
        Ok(BulkheadManager {
            id: recent::next_manager_id(),
            cap: Cap::new(max_bulkheads, registered).strict(self.strict_names),
            pools: Registry::new(on_demand(default_pool), pools),
            semaphores: Registry::new(default_semaphore, semaphores),
            #[cfg(unix)]
            processes: Registry::new(default_process, processes),
            breakers,
            retries,
            routes: self
                .routes
                .into_iter()
                .map(|(p, n)| (p.into_boxed_str(), n.into_boxed_str()))
                .collect(),
        })
    }
}

/// The configured bulkheads of one kind, built; a name configured twice is an error.
fn configured<T: Member>(configs: Vec<(String, T::Config)>) -> Result<Map<Arc<T>>, ConfigError> {
    let mut built = Map::default();
    for (name, config) in configs {
        if built.contains_key(name.as_str()) {
            return Err(ConfigError::new(
                &name,
                "name",
                format!("is configured twice as a {}", T::KIND),
            ));
        }
        let member = T::build(&name, config)?;
        built.insert(Arc::from(name), Arc::new(member));
    }
    Ok(built)
}

// ---------------------------------------------------------------------------------------------
// The registry, generic over the kind of bulkhead
// ---------------------------------------------------------------------------------------------

/// What a [`Registry`] needs of its kind of bulkhead.
trait Member: Send + Sync + Sized + 'static {
    /// The kind's configuration.
    type Config: Clone + fmt::Debug;
    /// The kind's name in errors: "pool", "semaphore", "process bulkhead".
    const KIND: &'static str;
    fn build(name: &str, config: Self::Config) -> Result<Self, ConfigError>;
    fn add_listener(&self, listener: Listener);
    fn stats(&self) -> BulkheadStats;
    /// Shuts down a bulkhead created after its registry was closed, before it is published.
    fn close(&self);
    /// The configuration of a bulkhead created after its registry was closed: nothing in it
    /// may start work (a pool's prestarted threads would only start to exit).
    fn closed_config(config: Self::Config) -> Self::Config {
        config
    }
}

impl Member for ThreadPoolBulkhead {
    type Config = PoolConfig;
    const KIND: &'static str = "pool";
    fn build(name: &str, config: PoolConfig) -> Result<Self, ConfigError> {
        Self::new(name, config)
    }
    fn add_listener(&self, listener: Listener) {
        ThreadPoolBulkhead::add_listener(self, listener);
    }
    fn stats(&self) -> BulkheadStats {
        BulkheadStats::Pool(ThreadPoolBulkhead::stats(self))
    }
    fn close(&self) {
        // Before its first call: admission refuses everything and no worker ever starts.
        self.shutdown();
    }
    fn closed_config(config: PoolConfig) -> PoolConfig {
        config.prestart(false)
    }
}

#[cfg(unix)]
impl Member for ProcessBulkhead {
    type Config = ProcessConfig;
    const KIND: &'static str = "process bulkhead";
    fn build(name: &str, config: ProcessConfig) -> Result<Self, ConfigError> {
        Self::new(name, config)
    }
    fn add_listener(&self, listener: Listener) {
        ProcessBulkhead::add_listener(self, listener);
    }
    fn stats(&self) -> BulkheadStats {
        BulkheadStats::Process(ProcessBulkhead::stats(self))
    }
    fn close(&self) {
        // Calls run on their callers' threads, each reaping its own child: nothing to stop.
    }
}

impl Member for SemaphoreBulkhead {
    type Config = SemaphoreConfig;
    const KIND: &'static str = "semaphore";
    fn build(name: &str, config: SemaphoreConfig) -> Result<Self, ConfigError> {
        Self::new(name, config)
    }
    fn add_listener(&self, listener: Listener) {
        SemaphoreBulkhead::add_listener(self, listener);
    }
    fn stats(&self) -> BulkheadStats {
        BulkheadStats::Semaphore(SemaphoreBulkhead::stats(self))
    }
    fn close(&self) {
        // Semaphores run on their callers' threads; there is nothing to shut down.
    }
}

/// A kind of bulkhead the manager holds: which of its registries, and the per-thread cache.
trait Kind: Member + recent::Cached {
    fn registry(manager: &BulkheadManager) -> &Registry<Self>;
}

impl Kind for ThreadPoolBulkhead {
    fn registry(manager: &BulkheadManager) -> &Registry<Self> {
        &manager.pools
    }
}

impl Kind for SemaphoreBulkhead {
    fn registry(manager: &BulkheadManager) -> &Registry<Self> {
        &manager.semaphores
    }
}

#[cfg(unix)]
impl Kind for ProcessBulkhead {
    fn registry(manager: &BulkheadManager) -> &Registry<Self> {
        &manager.processes
    }
}

/// The named bulkheads of one kind. Append-only: a name, once registered, keeps its
/// bulkhead for the registry's life (the per-thread cache relies on it).
///
/// Locking: the write lock is taken to create a bulkhead, to add a listener and to close;
/// under it the code builds a bulkhead and adds listeners to bulkheads (short locks of their
/// own lists), and never runs user code or waits for anything a listener could hold. A
/// listener runs with no lock held, so it may read the registry (`manager.stats()`) or write
/// it (`manager.on_event`) without deadlock.
struct Registry<T: Member> {
    /// The configuration of bulkheads created on first use.
    default: T::Config,
    entries: RegistryLock<Entries<T>>,
}

/// A registry's state, under its lock. Listeners and the closed flag live beside the map
/// under the same lock, so creating a bulkhead and adding a listener (or closing) are
/// mutually exclusive: a bulkhead created concurrently with `on_event` gets that listener
/// exactly once, and one created concurrently with `shutdown` is either in the list
/// `shutdown` closes or closed at its birth.
struct Entries<T> {
    map: Map<Arc<T>>,
    /// The manager's listeners, given to every bulkhead created from now on.
    listeners: Vec<Listener>,
    /// Set by `manager.shutdown`: bulkheads created from now on are closed at birth.
    closed: bool,
}

impl<T: Member> Registry<T> {
    fn new(default: T::Config, map: Map<Arc<T>>) -> Self {
        Self {
            default,
            entries: RegistryLock::new(Entries {
                map,
                listeners: Vec::new(),
                closed: false,
            }),
        }
    }

    /// The bulkhead called `name` with the registry's key, if there is one.
    fn get(&self, name: &str) -> Option<(Arc<str>, Arc<T>)> {
        self.entries
            .read()
            .map
            .get_key_value(name)
            .map(|(key, item)| (Arc::clone(key), Arc::clone(item)))
    }

    /// The bulkhead called `name` with the registry's key, created from the default
    /// configuration if it is new, `name` is valid, and `cap` has room.
    fn get_or_create(&self, name: &str, cap: &Cap) -> Result<(Arc<str>, Arc<T>), ConfigError> {
        if let Some(entry) = self.get(name) {
            return Ok(entry);
        }
        validate_name(name)?;
        // A full manager fed new names (from user data, say) refuses each at once: no
        // bulkhead built and dropped per call, no write lock stalling other lookups.
        cap.check(name)?;
        let mut entries = self.entries.write();
        if let Some((key, item)) = entries.map.get_key_value(name) {
            return Ok((Arc::clone(key), Arc::clone(item)));
        }
        cap.reserve(name)?;
        let config = if entries.closed {
            T::closed_config(self.default.clone())
        } else {
            self.default.clone()
        };
        let item = match T::build(name, config) {
            Ok(item) => Arc::new(item),
            Err(err) => {
                cap.release();
                return Err(err);
            }
        };
        for listener in &entries.listeners {
            item.add_listener(Arc::clone(listener));
        }
        if entries.closed {
            item.close();
        }
        let key: Arc<str> = Arc::from(name);
        entries.map.insert(Arc::clone(&key), Arc::clone(&item));
        Ok((key, item))
    }

    /// Gives `listener` to every bulkhead, present and future.
    fn add_listener(&self, listener: &Listener) {
        let mut entries = self.entries.write();
        entries.listeners.push(Arc::clone(listener));
        for item in entries.map.values() {
            item.add_listener(Arc::clone(listener));
        }
    }

    /// Marks the registry closed (bulkheads created from now on are closed at birth) and
    /// returns every bulkhead created before, for the caller to close.
    fn close(&self) -> Vec<Arc<T>> {
        let mut entries = self.entries.write();
        entries.closed = true;
        entries.map.values().cloned().collect()
    }

    /// Every bulkhead's stats, taken after the lock is released.
    fn snapshot(&self) -> Vec<BulkheadStats> {
        let items: Vec<Arc<T>> = self.entries.read().map.values().cloned().collect();
        items.iter().map(|item| item.stats()).collect()
    }

    /// The registered names, sorted.
    fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.entries.read().map.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The cap on a manager's bulkheads, pools and semaphores together. It only grows (the
/// registries are append-only), except to give back a reservation whose build failed.
struct Cap {
    max: usize,
    used: AtomicUsize,
    /// [`strict_names`](BulkheadManagerBuilder::strict_names): no bulkhead is created on
    /// first use.
    strict: bool,
}

impl Cap {
    fn new(max: usize, used: usize) -> Self {
        Self {
            max,
            used: AtomicUsize::new(used),
            strict: false,
        }
    }

    fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn full(&self, name: &str, held: usize) -> ConfigError {
        ConfigError::new(
            name,
            "max_bulkheads",
            format!(
                "cannot be created: the manager already holds {held} bulkheads, its max_bulkheads"
            ),
        )
    }

    /// An early refusal, before any work: the cap is full now. A pass is only a hint;
    /// [`reserve`](Cap::reserve) decides.
    fn check(&self, name: &str) -> Result<(), ConfigError> {
        if self.strict {
            return Err(ConfigError::new(
                name,
                "name",
                "is not configured, and this manager creates no bulkhead on first use (strict names)",
            ));
        }
        let used = self.used();
        if used >= self.max {
            return Err(self.full(name, used));
        }
        Ok(())
    }

    /// Counts one more bulkhead, if there is room.
    fn reserve(&self, name: &str) -> Result<(), ConfigError> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map(drop)
            .map_err(|held| self.full(name, held))
    }

    /// Gives back a reservation whose bulkhead could not be built.
    fn release(&self) {
        self.used.fetch_sub(1, Ordering::Relaxed);
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<BulkheadManager>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A member that counts how many times it was built.
    struct Probe;

    impl Member for Probe {
        type Config = Arc<AtomicUsize>;
        const KIND: &'static str = "probe";
        fn build(_: &str, built: Self::Config) -> Result<Self, ConfigError> {
            built.fetch_add(1, Ordering::Relaxed);
            Ok(Probe)
        }
        fn add_listener(&self, _: Listener) {}
        fn stats(&self) -> BulkheadStats {
            unreachable!("not asked for in these tests")
        }
        fn close(&self) {}
    }

    // A full manager fed unknown names (from user data) built a bulkhead for every one,
    // under the registry's write lock, and only then found the cap full and dropped it. It
    // must refuse before building anything or taking the write lock.
    #[test]
    fn a_full_registry_refuses_a_new_name_without_building_or_locking() {
        let built = Arc::new(AtomicUsize::new(0));
        let registry = Registry::<Probe>::new(Arc::clone(&built), Map::default());
        let cap = Cap::new(1, 0);
        let (key, first) = registry.get_or_create("a", &cap).unwrap();
        assert_eq!((&*key, built.load(Ordering::Relaxed)), ("a", 1));
        for i in 0..1_000 {
            let err = registry.get_or_create(&format!("new-{i}"), &cap).err();
            assert_eq!(err.map(|e| e.field()), Some("max_bulkheads"));
        }
        assert_eq!(
            built.load(Ordering::Relaxed),
            1,
            "built bulkheads for a full cap"
        );
        let (_, again) = registry.get_or_create("a", &cap).unwrap();
        assert!(Arc::ptr_eq(&first, &again));

        // No write lock either: with a reader holding the registry, the refusal still comes
        // back (a writer would wait for the reader, who waits for the answer).
        let reader = registry.entries.read();
        let (answer_tx, answer) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let refused = registry.get_or_create("locked-out", &cap).is_err();
                answer_tx.send(refused).unwrap();
            });
            let refused = answer.recv_timeout(Duration::from_secs(10));
            drop(reader);
            assert_eq!(refused, Ok(true), "the refusal waited for the write lock");
        });
        assert_eq!(cap.used(), 1);
    }

    #[test]
    fn a_failed_build_gives_its_reservation_back() {
        struct Failing;
        impl Member for Failing {
            type Config = ();
            const KIND: &'static str = "failing";
            fn build(name: &str, (): ()) -> Result<Self, ConfigError> {
                Err(ConfigError::new(
                    name,
                    "max_threads",
                    "refused for the test",
                ))
            }
            fn add_listener(&self, _: Listener) {}
            fn stats(&self) -> BulkheadStats {
                unreachable!("never built")
            }
            fn close(&self) {}
        }
        let registry = Registry::<Failing>::new((), Map::default());
        let cap = Cap::new(1, 0);
        for _ in 0..3 {
            let err = registry.get_or_create("x", &cap).err();
            assert_eq!(err.map(|e| e.field()), Some("max_threads"));
        }
        assert_eq!(cap.used(), 0);
        assert!(registry.get("x").is_none());
    }
}
