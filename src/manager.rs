//! [`BulkheadManager`]: the registry of named bulkheads.

use std::collections::HashMap;

/// The registry's map. Its hasher is foldhash's: a lookup runs on every
/// `manager.pool(name)`, where SipHash alone cost as much as the rest of the lookup, and the
/// registry holds at most `max_bulkheads` names, so flooding attacks on the hash have
/// little to work with (foldhash is still seeded per process).
///
/// Keys are `Arc<str>` so that the per-thread lookup cache can keep one without copying it.
type Registry<V> = HashMap<Arc<str>, V, foldhash::fast::RandomState>;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::{PoolConfig, SemaphoreConfig, validate_name};
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, Listener};
use crate::pool::ThreadPoolBulkhead;
use crate::recent;
use crate::semaphore::SemaphoreBulkhead;
use crate::stats::{BulkheadStats, ManagerStats};
use crate::sync::Arc;
use crate::sync::plain::{AtomicUsize, Mutex, Ordering, RegistryLock};

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
    default_pool: PoolConfig,
    default_semaphore: SemaphoreConfig,
    max_bulkheads: usize,
    /// Pools and semaphores registered, against `max_bulkheads`.
    registered: AtomicUsize,
    /// Listeners for every bulkhead, present and future. Lock order: a registry, then this.
    listeners: Mutex<Vec<Listener>>,
    pools: RegistryLock<Registry<Arc<ThreadPoolBulkhead>>>,
    semaphores: RegistryLock<Registry<Arc<SemaphoreBulkhead>>>,
}

impl fmt::Debug for BulkheadManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut pools: Vec<Arc<str>> = self.pools.read().keys().cloned().collect();
        let mut semaphores: Vec<Arc<str>> = self.semaphores.read().keys().cloned().collect();
        pools.sort();
        semaphores.sort();
        f.debug_struct("BulkheadManager")
            .field("default_pool", &self.default_pool)
            .field("default_semaphore", &self.default_semaphore)
            .field("pools", &pools)
            .field("semaphores", &semaphores)
            .finish()
    }
}

impl Default for BulkheadManager {
    fn default() -> Self {
        Self::new()
    }
}

impl BulkheadManager {
    /// A manager with no configured bulkheads: every name gets
    /// [`PoolConfig::default`] or [`SemaphoreConfig::default`].
    pub fn new() -> Self {
        Self {
            id: recent::next_manager_id(),
            default_pool: PoolConfig::default(),
            default_semaphore: SemaphoreConfig::default(),
            max_bulkheads: DEFAULT_MAX_BULKHEADS,
            registered: AtomicUsize::new(0),
            listeners: Mutex::new(Vec::new()),
            pools: RegistryLock::new(Registry::default()),
            semaphores: RegistryLock::new(Registry::default()),
        }
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
    /// alternates between names) plus the `Arc` clone, with no lock: 14–21 ns on the
    /// development machine for the thread's last name, against 41–51 ns for a registry
    /// read in the same loop. Holding the `Arc` is still cheaper on the hottest paths. The
    /// cache keeps no bulkhead alive: it holds weak references.
    pub fn pool(&self, name: &str) -> Arc<ThreadPoolBulkhead> {
        match self.try_pool(name) {
            Ok(pool) => pool,
            Err(err) => panic!("{err}"),
        }
    }

    /// The pool called `name`, created from the default configuration on first use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `name` is not a valid bulkhead name (field `name`), or if it is
    /// new and the manager already holds
    /// [`max_bulkheads`](BulkheadManagerBuilder::max_bulkheads) (field `max_bulkheads`).
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
        recent::lookup(self.id, name, || self.registered_pool(name))
    }

    /// [`try_pool`](BulkheadManager::try_pool) without the per-thread cache.
    fn registered_pool(
        &self,
        name: &str,
    ) -> Result<(Arc<str>, Arc<ThreadPoolBulkhead>), ConfigError> {
        registered(&self.pools, name, || {
            let pool = Arc::new(ThreadPoolBulkhead::new(name, self.default_pool.clone())?);
            self.register(name)?;
            for listener in self.listeners.lock().iter() {
                pool.add_listener(Arc::clone(listener));
            }
            Ok(pool)
        })
    }

    /// Counts one more bulkhead against the cap.
    fn register(&self, name: &str) -> Result<(), ConfigError> {
        self.registered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_bulkheads).then_some(n + 1)
            })
            .map(drop)
            .map_err(|n| {
                ConfigError::new(
                    name,
                    "max_bulkheads",
                    format!(
                        "cannot be created: the manager already holds {n} bulkheads, its max_bulkheads"
                    ),
                )
            })
    }

    /// How many bulkheads (pools and semaphores) the manager holds.
    pub fn len(&self) -> usize {
        self.registered.load(Ordering::Relaxed)
    }

    /// True if the manager holds no bulkhead.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` in the pool called `name` (created on first use) and waits for its result:
    /// `manager.pool(name).execute(f)`, in one call.
    ///
    /// # Errors
    ///
    /// Those of [`ThreadPoolBulkhead::execute`].
    ///
    /// # Panics
    ///
    /// As [`pool`](BulkheadManager::pool): for a new name that is invalid or past
    /// `max_bulkheads`.
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
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute<F, T>(&self, name: &str, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.pool(name).execute(f)
    }

    /// The pool called `name` if it exists; never creates one.
    pub fn get_pool(&self, name: &str) -> Option<Arc<ThreadPoolBulkhead>> {
        recent::lookup(self.id, name, || existing(&self.pools, name)).ok()
    }

    /// The semaphore called `name`, created from the default configuration on first use.
    ///
    /// # Panics
    ///
    /// If `name` is new and not a valid bulkhead name, or the manager is full; see
    /// [`try_semaphore`](BulkheadManager::try_semaphore).
    pub fn semaphore(&self, name: &str) -> Arc<SemaphoreBulkhead> {
        match self.try_semaphore(name) {
            Ok(semaphore) => semaphore,
            Err(err) => panic!("{err}"),
        }
    }

    /// The semaphore called `name`, created from the default configuration on first use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `name` is not a valid bulkhead name, or if it is new and the
    /// manager already holds [`max_bulkheads`](BulkheadManagerBuilder::max_bulkheads).
    pub fn try_semaphore(&self, name: &str) -> Result<Arc<SemaphoreBulkhead>, ConfigError> {
        recent::lookup(self.id, name, || self.registered_semaphore(name))
    }

    /// [`try_semaphore`](BulkheadManager::try_semaphore) without the per-thread cache.
    fn registered_semaphore(
        &self,
        name: &str,
    ) -> Result<(Arc<str>, Arc<SemaphoreBulkhead>), ConfigError> {
        registered(&self.semaphores, name, || {
            let semaphore = Arc::new(SemaphoreBulkhead::new(
                name,
                self.default_semaphore.clone(),
            )?);
            self.register(name)?;
            for listener in self.listeners.lock().iter() {
                semaphore.add_listener(Arc::clone(listener));
            }
            Ok(semaphore)
        })
    }

    /// The semaphore called `name` if it exists; never creates one.
    pub fn get_semaphore(&self, name: &str) -> Option<Arc<SemaphoreBulkhead>> {
        recent::lookup(self.id, name, || existing(&self.semaphores, name)).ok()
    }

    /// Calls `listener` for every [`Event`] of every bulkhead of this manager, those that
    /// exist now and those created later.
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
        let pools = self.pools.write();
        let semaphores = self.semaphores.write();
        self.listeners.lock().push(Arc::clone(&listener));
        for pool in pools.values() {
            pool.add_listener(Arc::clone(&listener));
        }
        for semaphore in semaphores.values() {
            semaphore.add_listener(Arc::clone(&listener));
        }
    }

    /// A snapshot of every bulkhead, ordered by name; its `Display` is a table.
    pub fn stats(&self) -> ManagerStats {
        let mut bulkheads: Vec<BulkheadStats> = self
            .pools
            .read()
            .values()
            .map(|p| BulkheadStats::Pool(p.stats()))
            .collect();
        bulkheads.extend(
            self.semaphores
                .read()
                .values()
                .map(|s| BulkheadStats::Semaphore(s.stats())),
        );
        bulkheads.sort_by(|a, b| a.name().cmp(b.name()));
        ManagerStats { bulkheads }
    }

    /// Shuts every pool down (queued work still runs) and waits at most `timeout` in all
    /// for their threads to exit. Returns true if every pool terminated in time.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let pools: Vec<_> = self.pools.read().values().cloned().collect();
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
    default_pool: Option<PoolConfig>,
    default_semaphore: Option<SemaphoreConfig>,
    pools: Vec<(String, PoolConfig)>,
    semaphores: Vec<(String, SemaphoreConfig)>,
}

impl BulkheadManagerBuilder {
    /// The configuration of pools created on first use by name.
    ///
    /// Defaults to [`PoolConfig::default`]: 10 threads and a queue of 5.
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
    /// [`try_semaphore`](BulkheadManager::try_semaphore) return an error for a new name, so
    /// names that come from users cannot grow the manager (and its threads) without bound.
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

    /// A pool called `name` with its own configuration.
    pub fn pool(mut self, name: impl Into<String>, config: PoolConfig) -> Self {
        self.pools.push((name.into(), config));
        self
    }

    /// A semaphore called `name` with its own configuration.
    pub fn semaphore(mut self, name: impl Into<String>, config: SemaphoreConfig) -> Self {
        self.semaphores.push((name.into(), config));
        self
    }

    /// Validates every configuration and builds the manager. Configured pools start no
    /// thread until their first call.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`]: an invalid configuration (the default ones are named
    /// `<default>`), or a name configured twice for the same kind of bulkhead.
    pub fn build(self) -> Result<BulkheadManager, ConfigError> {
        let default_pool = self.default_pool.unwrap_or_default();
        default_pool.validate(DEFAULT_NAME)?;
        let default_semaphore = self.default_semaphore.unwrap_or_default();
        default_semaphore.validate(DEFAULT_NAME)?;
        let mut pools = Registry::default();
        for (name, config) in self.pools {
            if pools.contains_key(name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    "name",
                    "is configured twice as a pool",
                ));
            }
            let pool = ThreadPoolBulkhead::new(name.clone(), config)?;
            pools.insert(Arc::from(name), Arc::new(pool));
        }
        let mut semaphores = Registry::default();
        for (name, config) in self.semaphores {
            if semaphores.contains_key(name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    "name",
                    "is configured twice as a semaphore",
                ));
            }
            let semaphore = SemaphoreBulkhead::new(name.clone(), config)?;
            semaphores.insert(Arc::from(name), Arc::new(semaphore));
        }
        let max_bulkheads = self.max_bulkheads.unwrap_or(DEFAULT_MAX_BULKHEADS);
        let registered = pools.len() + semaphores.len();
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
            default_pool,
            default_semaphore,
            max_bulkheads,
            registered: AtomicUsize::new(registered),
            listeners: Mutex::new(Vec::new()),
            pools: RegistryLock::new(pools),
            semaphores: RegistryLock::new(semaphores),
        })
    }
}

/// The entry called `name` in `registry` with the registry's key, if there is one.
fn existing<T>(
    registry: &RegistryLock<Registry<Arc<T>>>,
    name: &str,
) -> Result<(Arc<str>, Arc<T>), ()> {
    registry
        .read()
        .get_key_value(name)
        .map(|(key, item)| (Arc::clone(key), Arc::clone(item)))
        .ok_or(())
}

/// The entry called `name` in `registry` with the registry's key, `create`d (under the
/// registry's write lock) if it is new and `name` is valid.
fn registered<T>(
    registry: &RegistryLock<Registry<Arc<T>>>,
    name: &str,
    create: impl FnOnce() -> Result<Arc<T>, ConfigError>,
) -> Result<(Arc<str>, Arc<T>), ConfigError> {
    if let Ok(entry) = existing(registry, name) {
        return Ok(entry);
    }
    validate_name(name)?;
    let mut entries = registry.write();
    if let Some((key, item)) = entries.get_key_value(name) {
        return Ok((Arc::clone(key), Arc::clone(item)));
    }
    let item = create()?;
    let key: Arc<str> = Arc::from(name);
    entries.insert(Arc::clone(&key), Arc::clone(&item));
    Ok((key, item))
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<BulkheadManager>();
}
