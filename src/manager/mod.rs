//! [`BulkheadManager`]: the registry of named bulkheads.
//!
//! Pools, semaphores and (on Unix) process bulkheads live in registries of one generic
//! type, `Registry` (`registry.rs`, with what a registry needs of its kind of bulkhead, the
//! `Member` trait, and the cap on them all); `builder.rs` holds
//! [`BulkheadManagerBuilder`]. A lookup goes through the calling thread's cache first
//! (`recent.rs`), so a repeat lookup takes no lock.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::breaker::CircuitBreaker;
use crate::config::{PoolConfig, SemaphoreConfig};
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, Listener};
use crate::pool::ThreadPoolBulkhead;
#[cfg(unix)]
use crate::process::{ProcessBulkhead, ProcessConfig};
use crate::recent;
use crate::retry::Retry;
use crate::semaphore::SemaphoreBulkhead;
use crate::stats::ManagerStats;
use crate::sync::Arc;

mod builder;
mod registry;

pub use builder::BulkheadManagerBuilder;
use registry::*;

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
    /// The configured keyed semaphores, by name; fixed at build.
    keyed: std::collections::BTreeMap<Arc<str>, Arc<crate::KeyedSemaphore>>,
    /// The connection pools the builder was given (each an
    /// `Arc<ConnectionPoolBulkhead<C>>` of its own `C`), by name; fixed at build. Their
    /// thread pools are in `pools`.
    connection_pools: std::collections::BTreeMap<Arc<str>, AnyBulkhead>,
}

/// A bulkhead of a type the manager cannot name (a connection pool of some `C`).
pub(crate) type AnyBulkhead = Arc<dyn std::any::Any + Send + Sync>;

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
            .field("retries", &self.retries.keys().collect::<Vec<_>>())
            .field("keyed", &self.keyed.keys().collect::<Vec<_>>())
            .field(
                "connection_pools",
                &self.connection_pools.keys().collect::<Vec<_>>(),
            );
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
            keyed: std::collections::BTreeMap::new(),
            connection_pools: std::collections::BTreeMap::new(),
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

    /// The connection pool called `name` with connections of type `C`, if the builder was
    /// given one ([`BulkheadManagerBuilder::connection_pool`]); `None` for another name or
    /// another connection type.
    pub fn connection_pool<C: 'static>(
        &self,
        name: &str,
    ) -> Option<Arc<crate::ConnectionPoolBulkhead<C>>> {
        let any = Arc::clone(self.connection_pools.get(name)?);
        any.downcast::<crate::ConnectionPoolBulkhead<C>>().ok()
    }

    /// The keyed semaphore called `name`, if the builder configured one
    /// ([`BulkheadManagerBuilder::keyed`]). Its aggregate row (with its 5 most rejected
    /// keys) is in the manager's stats, table and Prometheus text.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, KeyedConfig, SemaphoreConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .keyed("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))
    ///     .build()?;
    /// let tenants = manager.keyed("tenants").expect("configured");
    /// let _held = tenants.try_acquire("acme")?;
    /// assert!(tenants.try_acquire("acme").is_err());
    /// let stats = manager.stats();
    /// assert_eq!(stats.keyed[0].top_rejected, [("acme".to_owned(), 1)]);
    /// let text = stats.to_prometheus();
    /// assert!(text.contains("bulkhead_keyed_top_rejected{bulkhead=\"tenants\",key=\"acme\"} 1\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn keyed(&self, name: &str) -> Option<Arc<crate::KeyedSemaphore>> {
        self.keyed.get(name).cloned()
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
        let keyed = self
            .keyed
            .values()
            .map(|k| k.stats_for_manager(crate::keyed::TOP_REJECTED))
            .collect();
        ManagerStats {
            bulkheads,
            circuit_breakers,
            retries,
            keyed,
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
#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<BulkheadManager>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::BulkheadStats;
    use crate::sync::plain::{AtomicUsize, Ordering};
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
