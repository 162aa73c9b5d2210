//! [`BulkheadManagerBuilder`]: the manager's configuration, validated as a whole by
//! [`build`](BulkheadManagerBuilder::build).

use crate::breaker::{CircuitBreaker, CircuitBreakerConfig};
use crate::config::{PoolConfig, SemaphoreConfig};
use crate::error::ConfigError;
use crate::pool::ThreadPoolBulkhead;
#[cfg(unix)]
use crate::process::ProcessConfig;
use crate::recent;
use crate::retry::Retry;
use crate::sync::Arc;

use super::registry::*;
use super::{AnyBulkhead, BulkheadManager, DEFAULT_MAX_BULKHEADS, DEFAULT_NAME, Map, on_demand};

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
    keyed: Vec<(String, crate::KeyedConfig)>,
    /// Connection pools built by the caller: their name, their thread pool, themselves.
    connection_pools: Vec<(String, Arc<ThreadPoolBulkhead>, AnyBulkhead)>,
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

    /// A [`ConnectionPoolBulkhead`](crate::ConnectionPoolBulkhead) the caller built (it
    /// needs the driver's `connect`, and its connection type), held by the manager under its
    /// name: get it back with [`BulkheadManager::connection_pool`]. Its thread pool is one
    /// of the manager's pools — in [`stats`](BulkheadManager::stats) (its
    /// `connect_failures` counted), the table, the Prometheus text, the manager's event
    /// listeners, [`shutdown`](BulkheadManager::shutdown) (connections close as their workers
    /// exit) and `max_bulkheads` — and [`BulkheadManager::pool`] with its name gives that
    /// thread pool (for tasks that need no connection).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bulkheads::{BulkheadManager, ConnectionPoolBulkhead, PoolConfig};
    ///
    /// struct Conn;
    /// let db = Arc::new(ConnectionPoolBulkhead::new("orders-db", PoolConfig::new(2), || {
    ///     Ok::<_, std::io::Error>(Conn)
    /// })?);
    /// let manager = BulkheadManager::builder().connection_pool(Arc::clone(&db)).build()?;
    /// let same = manager.connection_pool::<Conn>("orders-db").expect("registered");
    /// same.execute(|_conn: &mut Conn| ())?;
    /// assert_eq!(manager.stats().pool("orders-db").unwrap().completed, 1);
    /// assert!(manager.shutdown(std::time::Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connection_pool<C: 'static>(
        mut self,
        bulkhead: Arc<crate::ConnectionPoolBulkhead<C>>,
    ) -> Self {
        let pool = bulkhead.pool_arc();
        self.connection_pools
            .push((bulkhead.name().to_owned(), pool, bulkhead));
        self
    }

    /// A keyed semaphore called `name` (a compartment per tenant, customer or API key),
    /// held by the manager: get it with [`BulkheadManager::keyed`]. Its aggregate row and
    /// its most rejected keys are in the manager's stats, table and Prometheus text — not
    /// one series per key. Keyed semaphores do not count against
    /// [`max_bulkheads`](Self::max_bulkheads) (they bound their keys with `max_keys`).
    pub fn keyed(mut self, name: impl Into<String>, config: crate::KeyedConfig) -> Self {
        self.keyed.push((name.into(), config));
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
        let mut keyed = std::collections::BTreeMap::new();
        for (name, config) in self.keyed {
            if keyed.contains_key(name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    "name",
                    "is configured twice as a keyed semaphore",
                ));
            }
            let semaphore = crate::KeyedSemaphore::new(name.clone(), config)?;
            keyed.insert(Arc::from(name), Arc::new(semaphore));
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
        let mut pools = configured(self.pools)?;
        let mut connection_pools = std::collections::BTreeMap::new();
        for (name, pool, bulkhead) in self.connection_pools {
            if pools.contains_key(name.as_str()) {
                return Err(ConfigError::new(
                    &name,
                    "name",
                    "is configured twice as a pool (a connection pool's thread pool is one)",
                ));
            }
            pools.insert(Arc::from(name.as_str()), pool);
            connection_pools.insert(Arc::from(name), bulkhead);
        }
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
            keyed,
            connection_pools,
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
