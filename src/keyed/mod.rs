//! [`KeyedSemaphore`]: one semaphore compartment per key (tenant, customer, API key).
//!
//! Keys come from outside, so the registry is bounded: at most `max_keys` keys at once, a new
//! key past the cap is refused (existing keys are untouched), and a key idle for `idle_ttl`
//! (no call in flight, none released for that long, on the configured clock) is evicted to
//! make room. A key with calls in flight is never evicted: eviction can never hand a busy
//! key a fresh count (resilience4j users who bolt a cache onto its registry get exactly that).
//!
//! Each key's compartment is a [`SemaphoreBulkhead`] named `"{name}/{key}"`, so its errors
//! and [`stats`](KeyedSemaphore::key_stats) say which tenant was refused.
//!
//! How a call finds its key: first in the calling thread's cache of its last 4 keys (no
//! lock, no reference count raised), then in the registry under its read lock. Each key
//! counts its calls in flight on a gate that eviction closes only from exactly "nothing in
//! flight" (`gate.rs`, checked by loom models), so a cached reference to an evicted key is
//! refused and looked up again, never used. Idle times are read from the coarse clock
//! (`CLOCK_MONOTONIC_COARSE`, a few nanoseconds) when the clock is the default and
//! `idle_ttl` is at least 1000 of its ticks (4 s where a tick is 4 ms); a configured clock
//! is always read instead.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock, coarse};
use crate::config::SemaphoreConfig;
use crate::error::{BulkheadError, ConfigError};
use crate::semaphore::{OwnedPermit, SemaphoreBulkhead};
use crate::stats::SemaphoreStats;
use crate::sync::Arc;
use crate::sync::plain::{AtomicU64, Ordering, RwLock};

mod cache;
mod gate;
mod stats;
use gate::Gate;
pub use stats::{KeyStats, KeyedStats};
pub(crate) use stats::{TOP_REJECTED, append_prometheus, write_table};

/// The registry's map. foldhash, seeded per process, as the manager's registry: keys come
/// from outside, but the cap bounds what a flood can do, and SipHash would be a third of a
/// call's cost.
type Keys = HashMap<Box<str>, Arc<Slot>, foldhash::fast::RandomState>;

/// Gives the permit limit of one key (tiers: a paying tenant gets more).
type LimitFor = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// Makes a new key's semaphore config adaptive, with an algorithm of its own.
type AdaptiveFor = Arc<dyn Fn(&str, SemaphoreConfig) -> SemaphoreConfig + Send + Sync>;

/// The configuration of a [`KeyedSemaphore`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{KeyedConfig, SemaphoreConfig};
///
/// let config = KeyedConfig::new(SemaphoreConfig::new(4))
///     .max_keys(1_000)
///     .idle_ttl(Duration::from_secs(60))
///     .limit_for(|tenant: &str| if tenant.starts_with("gold-") { 16 } else { 4 })
///     .global_limit(200);
/// assert_eq!(config.max_keys_value(), 1_000);
/// ```
#[derive(Clone)]
pub struct KeyedConfig {
    semaphore: SemaphoreConfig,
    max_keys: usize,
    idle_ttl: Duration,
    pub(crate) limit_for: Option<LimitFor>,
    pub(crate) adaptive: Option<AdaptiveFor>,
    global_limit: Option<usize>,
    per_key_metrics: bool,
    clock: Arc<dyn Clock>,
    /// Whether `clock` was set (then it is always read; see the module docs).
    clock_set: bool,
}

impl fmt::Debug for KeyedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedConfig")
            .field("semaphore", &self.semaphore)
            .field("max_keys", &self.max_keys)
            .field("idle_ttl", &self.idle_ttl)
            .field("limit_for", &self.limit_for.as_ref().map(|_| "<closure>"))
            .field("adaptive", &self.adaptive.as_ref().map(|_| "<closure>"))
            .field("global_limit", &self.global_limit)
            .field("per_key_metrics", &self.per_key_metrics)
            .finish_non_exhaustive()
    }
}

impl KeyedConfig {
    /// The default [`max_keys`](Self::max_keys).
    pub const DEFAULT_MAX_KEYS: usize = 10_000;

    /// Every key gets a semaphore configured as `semaphore` (its limit, `max_wait` and
    /// `max_waiting`), unless [`limit_for`](Self::limit_for) says otherwise for the limit.
    #[must_use]
    pub fn new(semaphore: SemaphoreConfig) -> Self {
        Self {
            semaphore,
            max_keys: Self::DEFAULT_MAX_KEYS,
            idle_ttl: Duration::from_secs(300),
            limit_for: None,
            adaptive: None,
            global_limit: None,
            per_key_metrics: false,
            clock: Arc::new(SystemClock),
            clock_set: false,
        }
    }

    /// The most keys held at once; a new key past it is refused. Defaults to
    /// [`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS) (10 000).
    ///
    /// Memory stays within it however many distinct keys arrive, but for one bounded
    /// remainder: each thread's cache of its last 4 keys may keep an evicted key's
    /// compartment (never its count: an evicted key is never used again) until that thread's
    /// next calls push it out — at most 4 compartments per thread.
    #[must_use]
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// How long a key with nothing in flight stays before it may be evicted. Defaults to
    /// 5 minutes.
    #[must_use]
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = ttl;
        self
    }

    /// Each key's permit limit, asked once when the key is created. Defaults to the
    /// semaphore config's `max_concurrent` for every key. A key it gives 0 is refused.
    #[must_use]
    pub fn limit_for<F>(mut self, f: F) -> Self
    where
        F: Fn(&str) -> usize + Send + Sync + 'static,
    {
        self.limit_for = Some(Arc::new(f));
        self
    }

    /// Makes each key's compartment adaptive, with an algorithm of its own made by
    /// `algorithm_for` when the key is created (called with no lock held): one tenant's
    /// overload cuts that tenant's limit, no other's. The algorithm's limit is clamped to
    /// the key's limit (`limit_for`, or the semaphore config's `max_concurrent`) and fed by
    /// [`call`](KeyedSemaphore::call), as [`SemaphoreConfig::adaptive`] describes.
    ///
    /// (An adaptive [`SemaphoreConfig`] given to [`new`](Self::new) is refused: its one
    /// algorithm would be shared by every key.)
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{self, Aimd};
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let config = KeyedConfig::new(SemaphoreConfig::new(16))
    ///     .adaptive(|_tenant: &str| Aimd::new().initial_limit(8).min_limit(1));
    /// let tenants = KeyedSemaphore::new("tenants", config)?;
    /// tenants.call("noisy", limit::report_overload)?; // its backend said 429
    /// tenants.call("quiet", || ())?;
    /// assert_eq!(tenants.key_stats("noisy").unwrap().limit, 7);
    /// assert_eq!(tenants.key_stats("quiet").unwrap().limit, 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn adaptive<F, A>(mut self, algorithm_for: F) -> Self
    where
        F: Fn(&str) -> A + Send + Sync + 'static,
        A: crate::limit::LimitAlgorithm,
    {
        self.adaptive = Some(Arc::new(move |key: &str, config: SemaphoreConfig| {
            config.adaptive(algorithm_for(key))
        }));
        self
    }

    /// A limit over all keys together: a call needs a permit of its key and one of the
    /// global semaphore. Defaults to none.
    #[must_use]
    pub fn global_limit(mut self, n: usize) -> Self {
        self.global_limit = Some(n);
        self
    }

    /// Puts a row per held key ([`KeyStats`]) in the manager's snapshot
    /// ([`KeyedStats::per_key`]), its JSON and its Prometheus text
    /// (`bulkhead_keyed_key_running`, `bulkhead_keyed_key_limit`,
    /// `bulkhead_keyed_key_calls_total`, each labelled `key`): for a bounded set of tenants an
    /// operator does want one by one. Defaults to off — the aggregate row and the 5 most
    /// rejected keys only — since a series per tenant is how a metrics system falls over;
    /// `max_keys` bounds the series when it is on. [`KeyedSemaphore::per_key_stats`] gives
    /// the rows on demand either way.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, KeyedConfig, SemaphoreConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .keyed(
    ///         "partners",
    ///         KeyedConfig::new(SemaphoreConfig::new(2)).max_keys(20).per_key_metrics(true),
    ///     )
    ///     .build()?;
    /// manager.keyed("partners").unwrap().call("acme", || ())?;
    /// let text = manager.stats().to_prometheus();
    /// assert!(text.contains(
    ///     "bulkhead_keyed_key_calls_total{bulkhead=\"partners\",key=\"acme\",outcome=\"permitted\"} 1\n"
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn per_key_metrics(mut self, on: bool) -> Self {
        self.per_key_metrics = on;
        self
    }

    /// Whether [`per_key_metrics`](Self::per_key_metrics) is on.
    pub fn per_key_metrics_value(&self) -> bool {
        self.per_key_metrics
    }

    /// The clock idle time is measured on. Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.clock_set = true;
        self
    }

    /// The configured [`max_keys`](Self::max_keys).
    pub fn max_keys_value(&self) -> usize {
        self.max_keys
    }

    /// Checks the configuration as [`KeyedSemaphore::new`] does.
    ///
    /// # Errors
    ///
    /// A `ConfigError` naming `name` and the field: `max_keys` 0, `idle_ttl` zero,
    /// `global_limit` 0, an adaptive per-key semaphore config (`adaptive`: use
    /// [`KeyedConfig::adaptive`]), or an invalid per-key semaphore config.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::new(name, "name", "must not be empty"));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new(name, "max_keys", "must be at least 1"));
        }
        if self.idle_ttl.is_zero() {
            return Err(ConfigError::new(
                name,
                "idle_ttl",
                "must be greater than zero",
            ));
        }
        if let Some(n) = self.global_limit {
            if n == 0 || n > SemaphoreConfig::MAX_CONCURRENT {
                return Err(ConfigError::new(
                    name,
                    "global_limit",
                    format!("must be in 1..={}", SemaphoreConfig::MAX_CONCURRENT),
                ));
            }
        }
        if self.semaphore.is_adaptive() {
            return Err(ConfigError::new(
                name,
                "adaptive",
                "an adaptive semaphore config would share one algorithm among all keys; \
                 give KeyedConfig::adaptive a function that makes one per key",
            ));
        }
        self.semaphore.validate(name)
    }
}

/// A configuration checked by [`KeyedSemaphore::prepare`], ready to be put in force.
pub(crate) struct Prepared {
    config: KeyedConfig,
    /// The held keys' new semaphore configs (no adaptive algorithm: each keeps its own).
    keys: HashMap<Box<str>, SemaphoreConfig>,
}

/// One key's compartment and its books.
struct Slot {
    key: Box<str>,
    semaphore: Arc<SemaphoreBulkhead>,
    /// Calls in flight and the last use, in the registry's nanoseconds.
    gate: Gate,
}

/// Gives each registry an id for the threads' caches.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

struct Inner {
    /// Unique in the process.
    id: u64,
    name: Arc<str>,
    /// The configuration in force; read where keys are made, swept or counted, never on a
    /// call to an existing key. Replaced whole by `reconfigure` (under the keys' write lock,
    /// so that a key made meanwhile can tell it was made from the old one).
    config: RwLock<Arc<KeyedConfig>>,
    /// The per-key `max_wait`, for the global limit's share of a call's wait.
    max_wait_nanos: AtomicU64,
    /// Fixed at creation, as idle times are measured from `base` on it.
    clock: Arc<dyn Clock>,
    keys: RwLock<Keys>,
    global: Option<Arc<SemaphoreBulkhead>>,
    base: Instant,
    /// The coarse clock's reading at `base`, when idle times are read from it.
    coarse_base: Option<u64>,
    evicted: AtomicU64,
    /// When a new key at the cap last swept (nanoseconds after `base`, `u64::MAX`: never);
    /// written under the write lock.
    last_sweep: AtomicU64,
    keys_refused: AtomicU64,
    /// Permits granted and calls refused by keys since evicted: kept so that the aggregate
    /// counters only ever go up. Written under the write lock, read under the read lock.
    retired_permitted: AtomicU64,
    retired_rejected: AtomicU64,
}

impl Inner {
    #[inline]
    fn now_nanos(&self) -> u64 {
        if let Some(base) = self.coarse_base {
            return coarse::now_nanos().saturating_sub(base);
        }
        let since = self.clock.now().saturating_duration_since(self.base);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    fn config(&self) -> Arc<KeyedConfig> {
        Arc::clone(&self.config.read())
    }
}

/// The global limit's semaphore config: the per-key wait and waiting bound; not the per-key
/// adaptive limit nor its fleet budget, which belong to each key's compartment.
fn global_config(n: usize, per_key: &SemaphoreConfig) -> SemaphoreConfig {
    SemaphoreConfig {
        max_concurrent: n,
        max_wait: per_key.max_wait,
        max_waiting: per_key.max_waiting,
        ..SemaphoreConfig::new(n)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A semaphore compartment per key, created on first use, bounded in number and evicted
/// when idle.
///
/// # Examples
///
/// ```
/// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
///
/// let tenants = KeyedSemaphore::new("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))?;
/// let held = tenants.try_acquire("acme")?;
/// // acme's compartment is full; globex has its own.
/// assert!(tenants.try_acquire("acme").unwrap_err().is_rejected());
/// assert_eq!(tenants.call("globex", || 7)?, 7);
/// assert_eq!(tenants.len(), 2);
/// drop(held);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct KeyedSemaphore {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedSemaphore")
            .field("name", &self.inner.name)
            .field("keys", &self.len())
            .field("config", &*self.inner.config())
            .finish()
    }
}

/// A permit of one key (and of the global limit, if any): owned, `Send + 'static`,
/// released when dropped, on any thread, also while unwinding.
///
/// # Examples
///
/// ```
/// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
///
/// let keyed = KeyedSemaphore::new("api-keys", KeyedConfig::new(SemaphoreConfig::new(1)))?;
/// let permit = keyed.try_acquire("k1")?;
/// assert_eq!(permit.key(), "k1");
/// std::thread::spawn(move || drop(permit)).join().unwrap();
/// assert!(keyed.try_acquire("k1").is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the permit is released as soon as it is dropped"]
pub struct KeyedPermit {
    // Options so that `drop` can give the permits back before it books the end of the
    // call: were the books first, an evictor could close this key while its permit is
    // still out, and a new compartment for the same key would admit one call too many.
    key_permit: Option<OwnedPermit>,
    global_permit: Option<OwnedPermit>,
    slot: Arc<Slot>,
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedPermit")
            .field("bulkhead", &self.inner.name)
            .field("key", &self.slot.key)
            .finish()
    }
}

impl KeyedPermit {
    /// The key this permit belongs to.
    pub fn key(&self) -> &str {
        &self.slot.key
    }
}

impl Drop for KeyedPermit {
    fn drop(&mut self) {
        drop(self.global_permit.take());
        drop(self.key_permit.take());
        self.slot.gate.exit(self.inner.now_nanos());
        cache::put(self.inner.id, Arc::clone(&self.slot));
    }
}

impl KeyedSemaphore {
    /// A keyed semaphore named `name`.
    ///
    /// # Errors
    ///
    /// A `ConfigError` naming the field, as [`KeyedConfig::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let err = KeyedSemaphore::new("t", KeyedConfig::new(SemaphoreConfig::new(1)).max_keys(0))
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "max_keys");
    /// ```
    pub fn new(name: impl Into<String>, config: KeyedConfig) -> Result<Self, ConfigError> {
        let name: String = name.into();
        config.validate(&name)?;
        let global = match config.global_limit {
            Some(n) => Some(Arc::new(SemaphoreBulkhead::new(
                format!("{name}/*"),
                global_config(n, &config.semaphore),
            )?)),
            None => None,
        };
        let base = config.clock.now();
        let coarse_base = coarse::resolution()
            .filter(|tick| !config.clock_set && config.idle_ttl >= *tick * 1000)
            .map(|_| coarse::now_nanos());
        Ok(Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                name: name.into(),
                max_wait_nanos: AtomicU64::new(nanos(config.semaphore.max_wait)),
                clock: Arc::clone(&config.clock),
                config: RwLock::new(Arc::new(config)),
                keys: RwLock::new(Keys::default()),
                global,
                base,
                coarse_base,
                evicted: AtomicU64::new(0),
                last_sweep: AtomicU64::new(u64::MAX),
                keys_refused: AtomicU64::new(0),
                retired_permitted: AtomicU64::new(0),
                retired_rejected: AtomicU64::new(0),
            }),
        })
    }

    /// The keyed semaphore's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The configuration in force (its `limit_for`, `adaptive` and clock included).
    pub fn config(&self) -> KeyedConfig {
        KeyedConfig::clone(&self.inner.config())
    }

    /// Replaces the configuration while calls run, for operators changing limits without a
    /// restart: every held key's compartment is reconfigured at once (its limit from the
    /// new `limit_for` or `max_concurrent`, its `max_wait` and `max_waiting`, as
    /// [`SemaphoreBulkhead::reconfigure`] applies them: lowering takes no permit back), as
    /// is the global limit; new keys are made from the new configuration; `max_keys` and
    /// `idle_ttl` apply from the next key and the next sweep (keys past a lowered cap stay
    /// until they are evicted). Each held key keeps its adaptive algorithm, if it has one;
    /// the new `adaptive` makes those of new keys. `limit_for` is called once per held key,
    /// with no lock held. The clock stays the one the keyed semaphore was created with
    /// (idle times are measured on it from its creation): `config`'s is not used.
    ///
    /// # Errors
    ///
    /// A `ConfigError`, and nothing changes: what [`new`](Self::new) refuses; a
    /// `global_limit` added or removed (field `global_limit`: its value can change, its
    /// presence cannot); a held key's new limit out of range (`limit_for` giving 0, or past
    /// [`SemaphoreConfig::MAX_CONCURRENT`], naming `"{name}/{key}"`).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let tenants = KeyedSemaphore::new("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))?;
    /// let held = tenants.try_acquire("acme")?;
    /// assert!(tenants.try_acquire("acme").is_err());
    /// // Raised while acme holds its one permit: a second one is free at once.
    /// tenants.reconfigure(KeyedConfig::new(SemaphoreConfig::new(2)))?;
    /// let second = tenants.try_acquire("acme")?;
    /// assert_eq!(tenants.key_stats("acme").unwrap().max_concurrent, 2);
    /// # drop((held, second));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reconfigure(&self, config: KeyedConfig) -> Result<(), ConfigError> {
        let prepared = self.prepare(config)?;
        self.apply(prepared);
        Ok(())
    }

    /// Checks `config` as [`reconfigure`](Self::reconfigure) will apply it, with the held
    /// keys' new semaphore configs.
    pub(crate) fn prepare(&self, mut config: KeyedConfig) -> Result<Prepared, ConfigError> {
        let name = &*self.inner.name;
        config.validate(name)?;
        if config.global_limit.is_some() != self.inner.global.is_some() {
            return Err(ConfigError::new(
                name,
                "global_limit",
                "can change its value at run time, but cannot be added or removed",
            ));
        }
        let old = self.inner.config();
        config.clock = Arc::clone(&self.inner.clock);
        config.clock_set = old.clock_set;
        let held: Vec<Arc<Slot>> = self.inner.keys.read().values().cloned().collect();
        let mut keys = HashMap::with_capacity(held.len());
        for slot in held {
            // User code, no lock held.
            let limits = self.key_limits(&config, &slot.key)?;
            limits.validate(&format!("{name}/{}", slot.key))?;
            keys.insert(slot.key.clone(), limits);
        }
        Ok(Prepared { config, keys })
    }

    /// Puts a prepared configuration in force.
    pub(crate) fn apply(&self, prepared: Prepared) {
        let Prepared { config, mut keys } = prepared;
        let (held, old): (Vec<Arc<Slot>>, _) = {
            // Swapped under the keys' write lock: a key made meanwhile either is in `held`
            // or sees the new configuration when it inserts (and is made from it).
            let keys = self.inner.keys.write();
            self.inner
                .max_wait_nanos
                .store(nanos(config.semaphore.max_wait), Ordering::Relaxed);
            let held = keys.values().cloned().collect();
            let old = std::mem::replace(&mut *self.inner.config.write(), Arc::new(config));
            (held, old)
        };
        // The old config's closures (user code, their captures' `Drop`) go with no lock held.
        drop(old);
        let config = self.inner.config();
        if let (Some(global), Some(n)) = (&self.inner.global, config.global_limit) {
            // Valid: checked with the rest by `prepare`.
            let _ = global.reconfigure(global_config(n, &config.semaphore));
        }
        for slot in held {
            // A key made after `prepare` looked gets its limits now (user code, no lock).
            let Some(mut limits) = keys
                .remove(&slot.key)
                .or_else(|| self.key_limits(&config, &slot.key).ok())
            else {
                continue; // its new limit is invalid: it keeps the old one
            };
            limits.adaptive = slot.semaphore.config().adaptive;
            // Valid: checked by `prepare` (or just now, by `key_limits`, for the limit).
            let _ = slot.semaphore.reconfigure(limits);
        }
    }

    /// How many keys are held now.
    pub fn len(&self) -> usize {
        self.inner.keys.read().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the caller's thread under a permit of `key`, waiting at most the per-key
    /// config's `max_wait` (and the rest of it for the global limit), as the key's
    /// [`SemaphoreBulkhead::call`] runs it: inside a pool's task with a deadline, no longer
    /// than it, and with the per-key config's adaptive limit, if any, fed by the call.
    ///
    /// # Errors
    ///
    /// `Rejected` when the key's compartment (or the global limit) stays full;
    /// `Config` when the key is invalid (empty, a NUL byte) or new past `max_keys`.
    pub fn call<F, T>(&self, key: &str, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T,
    {
        let exit = Exit {
            slot: Some(self.enter(key)?),
            inner: &self.inner,
        };
        let semaphore = &exit.slot.as_ref().expect("held until dropped").semaphore;
        // The permits are given back inside, before `exit` books the end of the call.
        match &self.inner.global {
            None => semaphore.call(f),
            Some(global) => {
                let timeout =
                    Duration::from_nanos(self.inner.max_wait_nanos.load(Ordering::Relaxed));
                let since = self.since(timeout);
                semaphore.call(|| {
                    let wait = crate::deadline::wait_within_current(left(since, timeout));
                    let _global_permit = global.acquire_timeout(wait)?;
                    Ok(f())
                })?
            }
        }
    }

    /// The key's slot with a call counted in flight: from this thread's cache if there
    /// (and not evicted), else from the registry.
    #[inline]
    fn enter(&self, key: &str) -> Result<Arc<Slot>, BulkheadError> {
        if let Some(slot) = cache::take(self.inner.id, key) {
            if slot.gate.enter() {
                return Ok(slot);
            }
            // Evicted since this thread cached it: let it go and look again.
        }
        self.slot(key)
    }

    /// A permit of `key` at once, or an error.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call), never waiting.
    pub fn try_acquire(&self, key: &str) -> Result<KeyedPermit, BulkheadError> {
        self.acquire_timeout(key, Duration::ZERO)
    }

    /// A permit of `key`, waiting at most `timeout` for the key's and the global limit
    /// together.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn acquire_timeout(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<KeyedPermit, BulkheadError> {
        let since = self.since(timeout);
        // From here the key's call is counted: `exit` books its end on every error path.
        let mut exit = Exit {
            slot: Some(self.enter(key)?),
            inner: &self.inner,
        };
        let slot = exit.slot.as_ref().expect("held until dropped");
        let key_permit = slot.semaphore.acquire_owned_timeout(timeout)?;
        let global_permit = match &self.inner.global {
            Some(global) => Some(global.acquire_owned_timeout(left(since, timeout))?),
            None => None,
        };
        let slot = exit.slot.take().expect("held until now");
        Ok(KeyedPermit {
            key_permit: Some(key_permit),
            global_permit,
            slot,
            inner: Arc::clone(&self.inner),
        })
    }

    /// When the wait started, if a second wait (the global limit's) will need it.
    fn since(&self, timeout: Duration) -> Option<Instant> {
        (self.inner.global.is_some() && !timeout.is_zero()).then(Instant::now)
    }

    /// The key's slot from the registry with a call counted in flight, created if needed.
    fn slot(&self, key: &str) -> Result<Arc<Slot>, BulkheadError> {
        {
            let keys = self.inner.keys.read();
            if let Some(slot) = keys.get(key) {
                // Always open here: a key is closed and removed under the write lock.
                if slot.gate.enter() {
                    return Ok(Arc::clone(slot));
                }
            }
        }
        self.check_key(key)?;
        loop {
            let config = self.inner.config();
            let now = self.inner.now_nanos();
            if self.inner.keys.read().len() >= config.max_keys && !self.sweep_due(now, &config) {
                // Full, and no sweep due: refused under the read lock, before `limit_for`
                // and any allocation, so a flood of new keys costs little and blocks no one.
                return Err(self.full(key, config.max_keys));
            }
            let semaphore = self
                .key_config(&config, key) // user code: no lock held
                .and_then(|c| SemaphoreBulkhead::new(format!("{}/{key}", self.inner.name), c))
                .map_err(|e| self.refuse(key, e))?;
            // Declared before the lock, so dropped after it: evicted keys' compartments hold
            // user code (an adaptive algorithm) whose `Drop` must not run under the lock.
            let mut evicted = Vec::new();
            let mut keys = self.inner.keys.write();
            if let Some(slot) = keys.get(key) {
                // Another caller created it meanwhile (open: closing happens under this lock).
                if slot.gate.enter() {
                    return Ok(Arc::clone(slot));
                }
            }
            if !Arc::ptr_eq(&config, &self.inner.config.read()) {
                // Reconfigured meanwhile (the swap happens under this lock): make the key
                // from the configuration in force, or `reconfigure` would miss it.
                continue;
            }
            if keys.len() >= config.max_keys && self.sweep_due(now, &config) {
                self.inner.last_sweep.store(now, Ordering::Relaxed);
                self.evict_locked(&mut keys, now, nanos(config.idle_ttl), &mut evicted);
            }
            if keys.len() >= config.max_keys {
                drop(keys);
                return Err(self.full(key, config.max_keys));
            }
            let slot = Arc::new(Slot {
                key: key.into(),
                semaphore: Arc::new(semaphore),
                gate: Gate::entered(now),
            });
            keys.insert(key.into(), Arc::clone(&slot));
            return Ok(slot);
        }
    }

    /// Whether a new key at the cap may sweep: at most once per `idle_ttl / 8`, so that a
    /// flood of new keys at the cap is refused in O(1) each instead of scanning every key
    /// under the write lock each time. The price: a key past its ttl may hold its place up
    /// to `idle_ttl / 8` longer.
    fn sweep_due(&self, now: u64, config: &KeyedConfig) -> bool {
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        let every = nanos(config.idle_ttl / 8);
        last == u64::MAX || now.saturating_sub(last) >= every
    }

    /// Refuses an empty key or one with a NUL byte (it becomes part of a bulkhead's name).
    fn check_key(&self, key: &str) -> Result<(), BulkheadError> {
        let name = &*self.inner.name;
        if key.is_empty() {
            return Err(self.refuse(key, ConfigError::new(name, "key", "must not be empty")));
        }
        if key.contains('\0') {
            return Err(self.refuse(
                key,
                ConfigError::new(name, "key", "must not contain a NUL byte"),
            ));
        }
        Ok(())
    }

    /// A new key's semaphore config under `config`: its limit from `limit_for`, its own
    /// adaptive algorithm (both user code: call with no lock held).
    fn key_config(&self, config: &KeyedConfig, key: &str) -> Result<SemaphoreConfig, ConfigError> {
        let semaphore = self.key_limits(config, key)?;
        Ok(match &config.adaptive {
            Some(adaptive) => adaptive(key, semaphore),
            None => semaphore,
        })
    }

    /// A key's semaphore config under `config` without an adaptive algorithm.
    fn key_limits(&self, config: &KeyedConfig, key: &str) -> Result<SemaphoreConfig, ConfigError> {
        let limit = match &config.limit_for {
            Some(f) => f(key),
            None => config.semaphore.max_concurrent,
        };
        if limit == 0 {
            return Err(ConfigError::new(
                &self.inner.name,
                "limit_for",
                format!("gave the key {key:?} a limit of 0"),
            ));
        }
        Ok(SemaphoreConfig {
            max_concurrent: limit,
            ..config.semaphore.clone()
        })
    }

    fn full(&self, key: &str, max_keys: usize) -> BulkheadError {
        let reason = format!("{max_keys} keys are held already");
        self.refuse(key, ConfigError::new(&self.inner.name, "max_keys", reason))
    }

    fn refuse(&self, key: &str, error: ConfigError) -> BulkheadError {
        self.inner.keys_refused.fetch_add(1, Ordering::Relaxed);
        BulkheadError::Config {
            name: format!("{}/{key}", self.inner.name).into(),
            error,
        }
    }

    /// Evicts every key idle for at least `idle_ttl` with nothing in flight; returns how
    /// many. A new key that finds the cap reached calls it (at most once per `idle_ttl / 8`);
    /// call it on a timer to free memory sooner.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, ManualClock, SemaphoreConfig};
    ///
    /// let clock = ManualClock::new();
    /// let config = KeyedConfig::new(SemaphoreConfig::new(1))
    ///     .idle_ttl(Duration::from_secs(10))
    ///     .clock(Arc::new(clock.clone()));
    /// let keyed = KeyedSemaphore::new("t", config)?;
    /// keyed.call("a", || ())?;
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(keyed.evict_idle(), 1);
    /// assert!(keyed.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn evict_idle(&self) -> usize {
        let ttl = nanos(self.inner.config().idle_ttl);
        let now = self.inner.now_nanos();
        let mut evicted = Vec::new();
        let n = self.evict_locked(&mut self.inner.keys.write(), now, ttl, &mut evicted);
        // Dropped after the lock: they hold user code (an adaptive algorithm).
        drop(evicted);
        n
    }

    /// Evicts the idle keys of `keys`, moving their slots into `evicted` for the caller to
    /// drop once the lock is released.
    fn evict_locked(
        &self,
        keys: &mut Keys,
        now: u64,
        ttl: u64,
        evicted: &mut Vec<Arc<Slot>>,
    ) -> usize {
        let before = keys.len();
        let (mut permitted, mut rejected) = (0, 0);
        keys.retain(|_, slot| {
            // A closed gate comes with the last call's counters (see `gate.rs`).
            let keep = !slot.gate.try_close(now, ttl);
            if !keep {
                // Nothing is in flight and no one can enter the slot again to add to these.
                let s = slot.semaphore.stats();
                permitted += s.permitted;
                rejected += s.rejected;
                evicted.push(Arc::clone(slot));
            }
            keep
        });
        let inner = &self.inner;
        inner
            .retired_permitted
            .fetch_add(permitted, Ordering::Relaxed);
        inner
            .retired_rejected
            .fetch_add(rejected, Ordering::Relaxed);
        let count = before - keys.len();
        self.inner
            .evicted
            .fetch_add(count as u64, Ordering::Relaxed);
        count
    }

    /// One key's statistics, if the key is held.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let keyed = KeyedSemaphore::new("t", KeyedConfig::new(SemaphoreConfig::new(3)))?;
    /// keyed.call("a", || ())?;
    /// let stats = keyed.key_stats("a").unwrap();
    /// assert_eq!((stats.max_concurrent, stats.permitted), (3, 1));
    /// assert!(keyed.key_stats("b").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key_stats(&self, key: &str) -> Option<SemaphoreStats> {
        let slot = self.inner.keys.read().get(key).map(Arc::clone)?;
        Some(slot.semaphore.stats())
    }

    /// The global limit's statistics, if one is configured.
    pub fn global_stats(&self) -> Option<SemaphoreStats> {
        self.inner.global.as_ref().map(|g| g.stats())
    }

    /// The `n` held keys with the most rejections, most first (ties by key): for
    /// dashboards, instead of one time series per tenant.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let keyed = KeyedSemaphore::new("t", KeyedConfig::new(SemaphoreConfig::new(1)))?;
    /// let _held = keyed.try_acquire("noisy")?;
    /// assert!(keyed.try_acquire("noisy").is_err());
    /// keyed.call("quiet", || ())?;
    /// assert_eq!(keyed.top_rejected(1), vec![("noisy".to_string(), 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn top_rejected(&self, n: usize) -> Vec<(String, u64)> {
        let mut rows: Vec<(String, u64)> = self
            .held()
            .into_iter()
            .map(|(k, s)| (k, s.rejected))
            .filter(|(_, r)| *r > 0)
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(n);
        rows
    }

    /// Each held key with its compartment's stats (taken after the registry's lock).
    pub(crate) fn held(&self) -> Vec<(String, SemaphoreStats)> {
        let slots: Vec<Arc<Slot>> = self.inner.keys.read().values().cloned().collect();
        slots
            .into_iter()
            .map(|s| (s.key.to_string(), s.semaphore.stats()))
            .collect()
    }

    /// Aggregate statistics over all keys held now.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let keyed = KeyedSemaphore::new("t", KeyedConfig::new(SemaphoreConfig::new(1)))?;
    /// keyed.call("a", || ())?;
    /// keyed.call("b", || ())?;
    /// let stats = keyed.stats();
    /// assert_eq!((stats.keys, stats.permitted, stats.running), (2, 2, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> KeyedStats {
        let (slots, permitted, rejected) = {
            // The retired counts and the held keys under one read lock, so that no key is
            // counted twice or not at all while it is evicted.
            let keys = self.inner.keys.read();
            let slots: Vec<Arc<Slot>> = keys.values().cloned().collect();
            (
                slots,
                self.inner.retired_permitted.load(Ordering::Relaxed),
                self.inner.retired_rejected.load(Ordering::Relaxed),
            )
        };
        let mut stats = KeyedStats {
            name: self.inner.name.to_string(),
            keys: slots.len(),
            max_keys: self.inner.config().max_keys,
            running: 0,
            permitted,
            rejected,
            evicted: self.inner.evicted.load(Ordering::Relaxed),
            keys_refused: self.inner.keys_refused.load(Ordering::Relaxed),
            top_rejected: Vec::new(),
            per_key: Vec::new(),
        };
        for slot in slots {
            let s = slot.semaphore.stats();
            stats.running += s.running;
            stats.permitted += s.permitted;
            stats.rejected += s.rejected;
        }
        if let Some(global) = self.global_stats() {
            // A call the global limit refused took its key's permit first: it counts as
            // refused, not permitted. Every call is refused by one of the two at most.
            stats.rejected += global.rejected;
            // Saturating: a snapshot taken while calls race may read the two apart.
            stats.permitted = stats.permitted.saturating_sub(global.rejected);
        }
        stats
    }
}

/// What is left of `timeout` since `since` (all of it when there was no need to look).
fn left(since: Option<Instant>, timeout: Duration) -> Duration {
    since.map_or(timeout, |since| timeout.saturating_sub(since.elapsed()))
}

/// Books the end of a counted call when dropped (on an error path, or after `call`'s `f`,
/// also while unwinding), and puts the key's slot back into this thread's cache.
struct Exit<'a> {
    slot: Option<Arc<Slot>>,
    inner: &'a Inner,
}

impl Drop for Exit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.gate.exit(self.inner.now_nanos());
            cache::put(self.inner.id, slot);
        }
    }
}
