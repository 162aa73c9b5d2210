//! The registry behind [`BulkheadManager`](super::BulkheadManager): one generic
//! [`Registry`] per kind of bulkhead, what it needs of that kind ([`Member`]), and the cap
//! on them all ([`Cap`]).

use std::fmt;

use crate::config::{PoolConfig, SemaphoreConfig, validate_name};
use crate::error::ConfigError;
use crate::event::Listener;
use crate::pool::ThreadPoolBulkhead;
#[cfg(unix)]
use crate::process::{ProcessBulkhead, ProcessConfig};
use crate::recent;
use crate::semaphore::SemaphoreBulkhead;
use crate::stats::BulkheadStats;
use crate::sync::Arc;
use crate::sync::plain::{AtomicUsize, Ordering, RegistryLock};

use super::{BulkheadManager, Map};

// ---------------------------------------------------------------------------------------------
// The registry, generic over the kind of bulkhead
// ---------------------------------------------------------------------------------------------

/// What a [`Registry`] needs of its kind of bulkhead.
pub(super) trait Member: Send + Sync + Sized + 'static {
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
pub(super) trait Kind: Member + recent::Cached {
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
pub(super) struct Registry<T: Member> {
    /// The configuration of bulkheads created on first use.
    pub(super) default: T::Config,
    pub(super) entries: RegistryLock<Entries<T>>,
}

/// A registry's state, under its lock. Listeners and the closed flag live beside the map
/// under the same lock, so creating a bulkhead and adding a listener (or closing) are
/// mutually exclusive: a bulkhead created concurrently with `on_event` gets that listener
/// exactly once, and one created concurrently with `shutdown` is either in the list
/// `shutdown` closes or closed at its birth.
pub(super) struct Entries<T> {
    pub(super) map: Map<Arc<T>>,
    /// The manager's listeners, given to every bulkhead created from now on.
    pub(super) listeners: Vec<Listener>,
    /// Set by `manager.shutdown`: bulkheads created from now on are closed at birth.
    pub(super) closed: bool,
}

impl<T: Member> Registry<T> {
    pub(super) fn new(default: T::Config, map: Map<Arc<T>>) -> Self {
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
    pub(super) fn get(&self, name: &str) -> Option<(Arc<str>, Arc<T>)> {
        self.entries
            .read()
            .map
            .get_key_value(name)
            .map(|(key, item)| (Arc::clone(key), Arc::clone(item)))
    }

    /// The bulkhead called `name` with the registry's key, created from the default
    /// configuration if it is new, `name` is valid, and `cap` has room.
    pub(super) fn get_or_create(
        &self,
        name: &str,
        cap: &Cap,
    ) -> Result<(Arc<str>, Arc<T>), ConfigError> {
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
    pub(super) fn add_listener(&self, listener: &Listener) {
        let mut entries = self.entries.write();
        entries.listeners.push(Arc::clone(listener));
        for item in entries.map.values() {
            item.add_listener(Arc::clone(listener));
        }
    }

    /// Marks the registry closed (bulkheads created from now on are closed at birth) and
    /// returns every bulkhead created before, for the caller to close.
    pub(super) fn close(&self) -> Vec<Arc<T>> {
        let mut entries = self.entries.write();
        entries.closed = true;
        entries.map.values().cloned().collect()
    }

    /// Every bulkhead's stats, taken after the lock is released.
    pub(super) fn snapshot(&self) -> Vec<BulkheadStats> {
        let items: Vec<Arc<T>> = self.entries.read().map.values().cloned().collect();
        items.iter().map(|item| item.stats()).collect()
    }

    /// The registered names, sorted.
    pub(super) fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self.entries.read().map.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The cap on a manager's bulkheads, pools and semaphores together. It only grows (the
/// registries are append-only), except to give back a reservation whose build failed.
pub(super) struct Cap {
    pub(super) max: usize,
    pub(super) used: AtomicUsize,
    /// [`strict_names`](BulkheadManagerBuilder::strict_names): no bulkhead is created on
    /// first use.
    pub(super) strict: bool,
}

impl Cap {
    pub(super) fn new(max: usize, used: usize) -> Self {
        Self {
            max,
            used: AtomicUsize::new(used),
            strict: false,
        }
    }

    pub(super) fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    pub(super) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(super) fn full(&self, name: &str, held: usize) -> ConfigError {
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
    pub(super) fn check(&self, name: &str) -> Result<(), ConfigError> {
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
    pub(super) fn reserve(&self, name: &str) -> Result<(), ConfigError> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map(drop)
            .map_err(|held| self.full(name, held))
    }

    /// Gives back a reservation whose bulkhead could not be built.
    pub(super) fn release(&self) {
        self.used.fetch_sub(1, Ordering::Relaxed);
    }
}
