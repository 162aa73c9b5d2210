//! A per-thread cache of the manager's recent lookups, so that `manager.pool(name)` on a hot
//! path costs a name comparison and the `Arc` clone the contract asks for, not a registry
//! read.
//!
//! The registry is append-only: a manager never removes a bulkhead, so once a name maps to
//! an `Arc` it maps to that `Arc` for the manager's life, and an entry can never go stale
//! while its manager lives. Entries hold a [`Weak`], so a cache keeps no bulkhead alive
//! after its manager and every user handle are gone (the allocation itself, a few hundred
//! bytes, is freed when the entry is evicted or the thread exits). A thread's cache is
//! allocated on its first lookup, for each kind of bulkhead it looks up. Entries are keyed
//! by the manager's process-unique id, never by its address, which a later manager may
//! reuse.
//!
//! What it buys — a repeat lookup costs a name comparison instead of a sharded read lock
//! and a hash-map probe — is measured by `examples/overhead.rs -- manager` (the manager rows,
//! against a pool held in a variable); the figures and their history are in the README and
//! the CHANGELOG, not here, where they would go stale.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};

use crate::pool::ThreadPoolBulkhead;
#[cfg(unix)]
use crate::process::ProcessBulkhead;
use crate::semaphore::SemaphoreBulkhead;
use crate::sync::plain::{AtomicU64, Ordering};

/// Sets of the cache, each holding [`WAYS`] entries: 64 bulkheads of each kind per thread,
/// enough for a request handler that calls every dependency of a service in turn, with room
/// for names that happen to share a set. (A first version kept 4 entries round-robin; a
/// thread cycling through 6 pools then missed on every lookup. 2 ways of 16 sets still
/// thrashed when 3 of 6 names shared a set.)
const SETS: usize = 16;
const WAYS: usize = 4;

/// A process-unique manager id.
pub(crate) fn next_manager_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Entry<T> {
    manager: u64,
    hash: u64,
    /// The registry's own key: shared, never written after insertion, so comparing it
    /// reads no cache line another thread writes (the bulkhead's fields may be).
    name: Arc<str>,
    item: Weak<T>,
}

impl<T> Entry<T> {
    fn is(&self, manager: u64, hash: u64, name: &str) -> bool {
        self.manager == manager && self.hash == hash && *self.name == *name
    }
}

/// One thread's recent lookups of one kind of bulkhead: set-associative, indexed by the
/// name's hash, least recently used way replaced. Allocated on a thread's first lookup, so
/// threads that never look a bulkhead up pay one pointer.
pub(crate) struct Recent<T> {
    /// Each set's ways, most recently used first.
    sets: Option<Box<Sets<T>>>,
    /// The set of the last hit or insertion. Its first way is checked before any hashing:
    /// a thread that calls one dependency again and again pays one name comparison.
    last: usize,
}

type Sets<T> = [[Option<Entry<T>>; WAYS]; SETS];

/// The hash that picks a set; a fixed seed, so that every thread agrees (not that it must).
fn hash(name: &str) -> u64 {
    foldhash::fast::FixedState::default().hash_one(name)
}

fn set_of(hash: u64) -> usize {
    // The high bits: foldhash mixes them best.
    (hash >> (u64::BITS - SETS.trailing_zeros())) as usize
}

impl<T> Recent<T> {
    const fn new() -> Self {
        Self {
            sets: None,
            last: 0,
        }
    }

    fn get(&mut self, manager: u64, name: &str) -> Option<Arc<T>> {
        let sets = self.sets.as_mut()?;
        let last = sets[self.last][0].as_ref();
        if let Some(e) = last.filter(|e| e.manager == manager && *e.name == *name) {
            return e.item.upgrade();
        }
        let hash = hash(name);
        self.last = set_of(hash);
        let set = &mut sets[self.last];
        let way = set
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.is(manager, hash, name)))?;
        if way > 0 {
            // Most recently used first: a move of the entries, no reference count touched.
            set[..=way].rotate_right(1);
        }
        set[0].as_ref()?.item.upgrade()
    }

    fn put(&mut self, manager: u64, name: Arc<str>, item: &Arc<T>) {
        let sets = self
            .sets
            .get_or_insert_with(|| Box::new([const { [const { None }; WAYS] }; SETS]));
        let hash = hash(&name);
        self.last = set_of(hash);
        let set = &mut sets[self.last];
        set.rotate_right(1);
        set[0] = Some(Entry {
            manager,
            hash,
            name,
            item: Arc::downgrade(item),
        });
    }
}

/// Access to one thread's cache for one kind of bulkhead.
pub(crate) trait Cached: Sized + 'static {
    fn with<R>(f: impl FnOnce(&RefCell<Recent<Self>>) -> R) -> Option<R>;
}

thread_local! {
    static POOLS: RefCell<Recent<ThreadPoolBulkhead>> = const { RefCell::new(Recent::new()) };
    static SEMAPHORES: RefCell<Recent<SemaphoreBulkhead>> =
        const { RefCell::new(Recent::new()) };
}

#[cfg(unix)]
thread_local! {
    static PROCESSES: RefCell<Recent<ProcessBulkhead>> = const { RefCell::new(Recent::new()) };
}

#[cfg(unix)]
impl Cached for ProcessBulkhead {
    fn with<R>(f: impl FnOnce(&RefCell<Recent<Self>>) -> R) -> Option<R> {
        PROCESSES.try_with(f).ok()
    }
}

impl Cached for ThreadPoolBulkhead {
    fn with<R>(f: impl FnOnce(&RefCell<Recent<Self>>) -> R) -> Option<R> {
        POOLS.try_with(f).ok()
    }
}

impl Cached for SemaphoreBulkhead {
    fn with<R>(f: impl FnOnce(&RefCell<Recent<Self>>) -> R) -> Option<R> {
        SEMAPHORES.try_with(f).ok()
    }
}

/// The bulkhead called `name` in manager `manager`, from this thread's cache when it was
/// looked up recently. `miss` looks it up in the registry, returning the registry's key
/// with it, and its answer is remembered. During thread teardown (the cache already
/// destroyed) every call is a miss.
pub(crate) fn lookup<T: Cached, E>(
    manager: u64,
    name: &str,
    miss: impl FnOnce() -> Result<(Arc<str>, Arc<T>), E>,
) -> Result<Arc<T>, E> {
    // `try_borrow_mut`: should anything inside `miss` look a bulkhead up on this thread
    // again, that lookup simply misses.
    let hit = T::with(|cell| {
        cell.try_borrow_mut()
            .ok()
            .and_then(|mut recent| recent.get(manager, name))
    })
    .flatten();
    if let Some(item) = hit {
        return Ok(item);
    }
    let (key, item) = miss()?;
    T::with(|cell| {
        if let Ok(mut recent) = cell.try_borrow_mut() {
            recent.put(manager, key, &item);
        }
    });
    Ok(item)
}
