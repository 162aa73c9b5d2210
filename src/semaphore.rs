//! [`SemaphoreBulkhead`]: a counting semaphore that runs calls on the caller's thread.
//!
//! The state is one atomic word, `waiters << 32 | in_use`. The fast paths (a free permit and
//! nobody waiting; a release with nobody waiting) are one compare-and-swap each and touch
//! no lock. Waiters queue in FIFO order behind a mutex, and a release while anyone waits
//! hands its permit straight to the oldest waiter instead of putting it back, so newcomers
//! never barge past a waiter. The invariant this keeps: `waiters > 0` implies
//! `in_use == max_concurrent` (a waiter registers only when no permit is free, and while
//! anyone waits a release does not lower `in_use`), so no waiter is ever stranded beside a
//! free permit.
//!
//! Resizing (`set_max_concurrent`) keeps a weaker form true at every moment: `waiters > 0`
//! implies `in_use >= max_concurrent`. Raising hands the new permits to the oldest waiters
//! at once, under the queue's lock; lowering takes nothing back: while `in_use` is above the
//! new limit a release puts its permit back instead of handing it on, so no permit is
//! granted until the holders are under the new limit.
//!
//! Two permit types share that machinery: [`Permit`] borrows its semaphore, [`OwnedPermit`]
//! holds an `Arc` of it. Both are taken by `SemaphoreBulkhead::take`, which keeps every book
//! (counters, events, the wait histogram), and both give back through `release`; the types
//! differ only in what they hold.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::SemaphoreConfig;
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, EventKind, Listeners};
use crate::histogram::Histogram;
use crate::stats::{SemaphoreCounters, SemaphoreStats};
use crate::sync::thread::{self, Thread};
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};

const IN_USE_MASK: u64 = u32::MAX as u64;
const WAITER_ONE: u64 = 1 << 32;

fn in_use(s: u64) -> usize {
    (s & IN_USE_MASK) as usize
}

fn waiters(s: u64) -> usize {
    (s >> 32) as usize
}

/// Why [`SemaphoreBulkhead::take_or_refuse`] gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(unix), allow(dead_code))] // only the process bulkhead uses it
pub(crate) enum Refusal {
    /// Every permit held and no place left to wait (or no wait allowed).
    Full,
    /// The caller waited its whole timeout and no permit came.
    WaitedOut,
}

/// One caller parked for a permit.
#[derive(Debug)]
struct Waiter {
    /// Set by the releaser that handed this waiter its permit.
    granted: AtomicBool,
    thread: Thread,
}

/// A bulkhead that limits how many calls run at once on their callers' own threads.
///
/// Use it where a thread hand-off would cost more than the call (an in-process cache, a
/// connection pool that already owns its threads), or where the call must stay on the
/// caller's thread. It offers three tiers: [`try_acquire`](SemaphoreBulkhead::try_acquire)
/// never waits, [`acquire_timeout`](SemaphoreBulkhead::acquire_timeout) waits at most a given
/// time, and [`call`](SemaphoreBulkhead::call) / [`acquire`](SemaphoreBulkhead::acquire) wait
/// at most the configured [`max_wait`](SemaphoreConfig::max_wait). Each tier has an owned
/// form ([`try_acquire_owned`](SemaphoreBulkhead::try_acquire_owned),
/// [`acquire_owned_timeout`](SemaphoreBulkhead::acquire_owned_timeout),
/// [`acquire_owned`](SemaphoreBulkhead::acquire_owned)) whose [`OwnedPermit`] borrows
/// nothing, for a permit that outlives the expression that took it or moves to another
/// thread.
///
/// Waiting is fair: permits are handed to waiters in the order they began to wait (FIFO),
/// and while anyone waits a newcomer cannot take a permit, even through `try_acquire`.
///
/// # Examples
///
/// ```
/// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
///
/// let cache = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(2))?;
/// let value = cache.call(|| "hit")?;
/// assert_eq!(value, "hit");
///
/// let a = cache.try_acquire()?;
/// let b = cache.try_acquire()?;
/// assert!(cache.try_acquire().unwrap_err().is_rejected());
/// drop((a, b));
/// assert!(cache.try_acquire().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SemaphoreBulkhead {
    name: Arc<str>,
    /// The configuration in force; its lock also orders changes to it.
    config: crate::sync::plain::Mutex<SemaphoreConfig>,
    /// `max_concurrent` and `max_wait` (nanoseconds) in force, read by every call.
    max: AtomicUsize,
    max_wait: crate::sync::plain::AtomicU64,
    state: AtomicU64,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    /// The most callers that may wait at once; a caller past it is refused at once. Public
    /// semaphores have no cap (their wait is bounded by time only); the process bulkhead
    /// sets its `queue_capacity` here.
    max_waiters: crate::sync::plain::AtomicUsize,
    counters: SemaphoreCounters,
    /// Waits of the callers that had to wait (the fast path is counted as zero, unrecorded).
    wait: Histogram,
    listeners: Listeners,
    /// Whether the configuration in force is adaptive: read once per `call`.
    adaptive_on: crate::sync::plain::AtomicBool,
    /// The fleet-wide semaphore each `call` takes a lease of, if any (feature `redis`).
    #[cfg(feature = "redis")]
    global: crate::sync::plain::Mutex<Option<Arc<crate::RedisSemaphore>>>,
    /// Whether `global` is set: read once per `call`, so semaphores without a global limit
    /// take no lock for it.
    #[cfg(feature = "redis")]
    global_on: crate::sync::plain::AtomicBool,
}

impl fmt::Debug for SemaphoreBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreBulkhead")
            .field("name", &&*self.name)
            .field("config", &*self.config.lock())
            .finish_non_exhaustive()
    }
}

/// A permit of a [`SemaphoreBulkhead`], released when dropped, also during unwinding.
///
/// # Examples
///
/// ```
/// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
///
/// let sem = SemaphoreBulkhead::new("db", SemaphoreConfig::new(1))?;
/// {
///     let _permit = sem.try_acquire()?;
///     assert_eq!(sem.stats().running, 1);
/// }
/// assert_eq!(sem.stats().running, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a permit is released as soon as it is dropped"]
pub struct Permit<'a> {
    semaphore: &'a SemaphoreBulkhead,
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bulkhead", &&*self.semaphore.name)
            .finish()
    }
}

impl Permit<'_> {
    /// The name of the semaphore this permit belongs to.
    pub fn bulkhead(&self) -> &str {
        &self.semaphore.name
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.semaphore.release();
    }
}

/// A permit of a [`SemaphoreBulkhead`] that borrows nothing: it holds an `Arc` of its
/// semaphore, so it is `Send + 'static` and can be kept in a struct, returned, or moved to
/// another thread. Released when dropped, on whichever thread drops it, also during
/// unwinding — like tokio's `OwnedSemaphorePermit`.
///
/// It is the same permit as a [`Permit`] in every book: it counts in `running`, `permitted`
/// and the wait histogram, emits the same events, and queues with borrowed waiters in one
/// FIFO order.
///
/// # Examples
///
/// [`BulkheadManager::semaphore`](crate::BulkheadManager::semaphore) returns a temporary
/// `Arc`; a borrowed [`Permit`] could not outlive it, an owned one can:
///
/// ```
/// use bulkheads::BulkheadManager;
///
/// let manager = BulkheadManager::new();
/// let permit = manager.semaphore("db").try_acquire_owned()?;
/// assert_eq!(permit.bulkhead(), "db");
/// assert_eq!(manager.semaphore("db").stats().running, 1);
///
/// // Released on the thread that drops it.
/// std::thread::spawn(move || drop(permit)).join().unwrap();
/// assert_eq!(manager.semaphore("db").stats().running, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a permit is released as soon as it is dropped"]
pub struct OwnedPermit {
    semaphore: Arc<SemaphoreBulkhead>,
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("bulkhead", &&*self.semaphore.name)
            .finish()
    }
}

impl OwnedPermit {
    /// The name of the semaphore this permit belongs to.
    pub fn bulkhead(&self) -> &str {
        &self.semaphore.name
    }

    /// The semaphore this permit belongs to (kept alive by the permit).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let sem = Arc::new(SemaphoreBulkhead::new("db", SemaphoreConfig::new(1))?);
    /// let permit = sem.try_acquire_owned()?;
    /// assert!(Arc::ptr_eq(permit.semaphore(), &sem));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn semaphore(&self) -> &Arc<SemaphoreBulkhead> {
        &self.semaphore
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        self.semaphore.release();
    }
}

impl SemaphoreBulkhead {
    /// Creates a semaphore bulkhead called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field if the configuration is invalid (see
    /// [`SemaphoreConfig::validate`]).
    pub fn new(name: impl Into<String>, config: SemaphoreConfig) -> Result<Self, ConfigError> {
        let max_waiters = config.max_waiting.unwrap_or(usize::MAX);
        Self::with_max_waiters(name, config, max_waiters)
    }

    /// A semaphore that lets at most `max_waiters` callers wait at once: a bounded queue in
    /// front of the permits, as a pool's. The waiter count is 32 bits wide, so a larger cap
    /// is no cap.
    #[cfg_attr(not(unix), allow(dead_code))] // only the process bulkhead uses it
    pub(crate) fn with_max_waiters(
        name: impl Into<String>,
        config: SemaphoreConfig,
        max_waiters: usize,
    ) -> Result<Self, ConfigError> {
        let name: String = name.into();
        config.validate(&name)?;
        Ok(Self {
            name: Arc::from(name),
            max: AtomicUsize::new(limit_of(&config)),
            adaptive_on: crate::sync::plain::AtomicBool::new(config.adaptive.is_some()),
            #[cfg(feature = "redis")]
            global: crate::sync::plain::Mutex::new(config.global.as_ref().map(|g| g.0.clone())),
            #[cfg(feature = "redis")]
            global_on: crate::sync::plain::AtomicBool::new(config.global.is_some()),
            max_wait: crate::sync::plain::AtomicU64::new(wait_nanos(config.max_wait)),
            config: crate::sync::plain::Mutex::new(config),
            state: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
            max_waiters: crate::sync::plain::AtomicUsize::new(max_waiters),
            counters: SemaphoreCounters::default(),
            wait: Histogram::default(),
            listeners: Listeners::new("semaphore"),
        })
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration in force: the one it was built with, or as
    /// [`set_max_concurrent`](SemaphoreBulkhead::set_max_concurrent) and
    /// [`set_max_wait`](SemaphoreBulkhead::set_max_wait) changed it.
    pub fn config(&self) -> SemaphoreConfig {
        self.config.lock().clone()
    }

    /// Changes how many calls may hold a permit at once, without blocking.
    ///
    /// Raising hands the new permits to the oldest waiters before it returns. Lowering takes
    /// nothing back: holders keep their permits and waiters their places, and no permit is
    /// granted (to a waiter or a newcomer) until fewer than `n` are held — resilience4j's
    /// shrink blocks the caller until holders finish; this never does. Stats show the new
    /// limit at once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the semaphore and `max_concurrent` if `n` is invalid (zero);
    /// nothing changes then.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let db = SemaphoreBulkhead::new("db", SemaphoreConfig::new(1))?;
    /// let held = db.try_acquire()?;
    /// assert!(db.try_acquire().unwrap_err().is_rejected());
    /// db.set_max_concurrent(2)?;
    /// let second = db.try_acquire()?;
    /// assert_eq!(db.stats().running, 2);
    /// assert_eq!(db.set_max_concurrent(0).unwrap_err().field(), "max_concurrent");
    /// drop((held, second));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_max_concurrent(&self, n: usize) -> Result<(), ConfigError> {
        self.change(|config| config.max_concurrent = n)
    }

    /// Changes how long [`call`](SemaphoreBulkhead::call) and
    /// [`acquire`](SemaphoreBulkhead::acquire) wait for a permit, for callers that start
    /// waiting from now on.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the semaphore and `max_wait` if the configuration would be
    /// invalid; nothing changes then.
    pub fn set_max_wait(&self, max_wait: Duration) -> Result<(), ConfigError> {
        self.change(|config| config.max_wait = max_wait)
    }

    /// Applies a whole new configuration at once, as
    /// [`set_max_concurrent`](SemaphoreBulkhead::set_max_concurrent) and
    /// [`set_max_wait`](SemaphoreBulkhead::set_max_wait) would one after the other, but
    /// validated first as a whole and applied in one step.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`SemaphoreConfig::validate`]; nothing changes then.
    pub fn reconfigure(&self, config: SemaphoreConfig) -> Result<(), ConfigError> {
        self.change(|current| *current = config)
    }

    /// Edits the configuration in force, validates the result, and applies it.
    fn change(&self, edit: impl FnOnce(&mut SemaphoreConfig)) -> Result<(), ConfigError> {
        let mut config = self.config.lock();
        let mut next = config.clone();
        edit(&mut next);
        next.validate(&self.name)?;
        let (from, to) = (self.max(), limit_of(&next));
        let raised = to > from;
        self.max.store(to, Ordering::SeqCst);
        self.adaptive_on.store(
            next.adaptive.is_some(),
            crate::sync::plain::Ordering::Relaxed,
        );
        self.max_wait.store(
            wait_nanos(next.max_wait),
            crate::sync::plain::Ordering::Relaxed,
        );
        if let Some(n) = next.max_waiting {
            // Waiters already queued keep their places; the bound applies to newcomers.
            self.max_waiters
                .store(n, crate::sync::plain::Ordering::Relaxed);
        } else if config.max_waiting.is_some() {
            self.max_waiters
                .store(usize::MAX, crate::sync::plain::Ordering::Relaxed);
        }
        let adaptive = next.adaptive.is_some();
        #[cfg(feature = "redis")]
        {
            *self.global.lock() = next.global.as_ref().map(|g| g.0.clone());
            self.global_on
                .store(next.global.is_some(), crate::sync::plain::Ordering::Relaxed);
        }
        *config = next;
        if raised {
            self.grant_waiters();
        }
        drop(config);
        if adaptive && from != to {
            self.listeners
                .emit(&self.name, EventKind::LimitChanged { from, to });
        }
        Ok(())
    }

    /// Runs `f` under a permit already held, feeding the adaptive algorithm its sample
    /// (`deadline`: the call's, for a drop when it overran).
    fn run_adaptive<F, T>(&self, deadline: Option<Instant>, f: F) -> T
    where
        F: FnOnce() -> T,
    {
        let started = Instant::now();
        let call = crate::limit::enter_call();
        // A panic unwinds past the sample: it says nothing about the dependency's load.
        let value = f();
        let overloaded = call.finish();
        let rtt = started.elapsed();
        let held = in_use(self.state.load(Ordering::Relaxed));
        let sample = crate::limit::sample(started, rtt, held, deadline, overloaded);
        // The algorithm (user code) runs outside the config's lock.
        let (adaptive, ceiling) = {
            let config = self.config.lock();
            match &config.adaptive {
                Some(adaptive) => (adaptive.clone(), config.max_concurrent),
                None => return value,
            }
        };
        let to = adaptive.update(sample, ceiling);
        let from = self.max();
        if to == from {
            return value;
        }
        {
            let config = self.config.lock();
            // A change in between has put its own limit in force: leave it.
            if config.adaptive.as_ref() != Some(&adaptive) || self.max() != from {
                return value;
            }
            // As `set_max_concurrent`: lowering takes no permit back; raising grants
            // waiters at once.
            self.max.store(to, Ordering::SeqCst);
            if to > from {
                self.grant_waiters();
            }
        }
        self.listeners
            .emit(&self.name, EventKind::LimitChanged { from, to });
        value
    }

    /// The fleet-wide lease a `call` needs after its local permit (see
    /// [`SemaphoreConfig::global_limit`]), waiting never past `deadline`.
    fn global_lease(
        &self,
        deadline: Option<Instant>,
    ) -> Result<crate::pool::global::Held, BulkheadError> {
        #[cfg(feature = "redis")]
        {
            if !self.global_on.load(crate::sync::plain::Ordering::Relaxed) {
                return Ok(crate::pool::global::Held(None));
            }
            let Some(semaphore) = self.global.lock().clone() else {
                return Ok(crate::pool::global::Held(None));
            };
            semaphore
                .lease_for(&self.name, deadline)
                .map(crate::pool::global::Held)
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = deadline;
            Ok(crate::pool::global::Held())
        }
    }

    fn is_adaptive(&self) -> bool {
        self.adaptive_on.load(crate::sync::plain::Ordering::Relaxed)
    }

    /// Hands permits the limit now allows to the oldest waiters.
    fn grant_waiters(&self) {
        let mut granted = Vec::new();
        let mut queue = self.queue.lock();
        let mut s = self.state.load(Ordering::Acquire);
        // Under the queue lock the waiter count equals the queue's length.
        while waiters(s) > 0 && in_use(s) < self.max() {
            match self.state.compare_exchange_weak(
                s,
                s + 1 - WAITER_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let waiter = queue.pop_front().expect("a waiter per count");
                    waiter.granted.store(true, Ordering::Release);
                    granted.push(waiter);
                    s = self.state.load(Ordering::Acquire);
                }
                Err(actual) => s = actual,
            }
        }
        drop(queue);
        for waiter in granted {
            waiter.thread.unpark();
        }
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    fn max_waiters(&self) -> usize {
        self.max_waiters.load(crate::sync::plain::Ordering::Relaxed)
    }

    fn default_wait(&self) -> Duration {
        Duration::from_nanos(self.max_wait.load(crate::sync::plain::Ordering::Relaxed))
    }

    fn rejected(&self) -> BulkheadError {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        self.listeners.emit(&self.name, EventKind::Rejected);
        BulkheadError::Rejected {
            name: self.name.clone(),
            capacity: self.max(),
        }
    }

    /// Books a permit taken without waiting.
    fn granted(&self) {
        self.counters.permitted.fetch_add(1, Ordering::Relaxed);
        self.listeners.emit(
            &self.name,
            EventKind::Permitted {
                waited: Duration::ZERO,
            },
        );
    }

    /// Books a permit granted after waiting since `since`.
    fn granted_after(&self, since: Instant) {
        let waited = since.elapsed();
        self.wait.record(waited);
        self.counters.waited.fetch_add(1, Ordering::Relaxed);
        self.counters.permitted.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .emit(&self.name, EventKind::Permitted { waited });
    }

    /// Calls `listener` for every [`Event`] of this semaphore from now on: permitted (with
    /// the time waited) and rejected. See [`Event`] for where listeners run.
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.listeners.add(Arc::new(listener));
    }

    pub(crate) fn add_listener(&self, listener: crate::event::Listener) {
        self.listeners.add(listener);
    }

    /// Takes a permit if one is free and nobody is waiting: one compare-and-swap.
    fn try_take(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if waiters(s) > 0 || in_use(s) >= self.max() {
                return false;
            }
            // Acquire: the permit orders this caller's work after the previous holder's.
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Takes a permit without waiting.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if every permit is held or someone is already waiting.
    pub fn try_acquire(&self) -> Result<Permit<'_>, BulkheadError> {
        self.take(Duration::ZERO)?;
        Ok(Permit { semaphore: self })
    }

    /// Takes a permit, waiting at most the configured
    /// [`max_wait`](SemaphoreConfig::max_wait).
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if no permit came free in time.
    pub fn acquire(&self) -> Result<Permit<'_>, BulkheadError> {
        self.acquire_timeout(self.default_wait())
    }

    /// Takes a permit, waiting at most `timeout` for one. Waiters are served in FIFO order.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if no permit came free within `timeout`. A waiter that
    /// gives up leaves nothing behind: its place in the queue is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let sem = SemaphoreBulkhead::new("api", SemaphoreConfig::new(1))?;
    /// let held = sem.try_acquire()?;
    /// let err = sem.acquire_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_rejected());
    /// drop(held);
    /// assert!(sem.acquire_timeout(Duration::from_millis(10)).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, BulkheadError> {
        self.take(timeout)?;
        Ok(Permit { semaphore: self })
    }

    /// Takes an [`OwnedPermit`] without waiting: [`try_acquire`](Self::try_acquire) for a
    /// permit that borrows nothing.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if every permit is held or someone is already waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bulkheads::{OwnedPermit, SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// struct Job {
    ///     _permit: OwnedPermit, // held as long as the job lives
    /// }
    ///
    /// let sem = Arc::new(SemaphoreBulkhead::new("jobs", SemaphoreConfig::new(1))?);
    /// let job = Job { _permit: sem.try_acquire_owned()? };
    /// assert!(sem.try_acquire_owned().unwrap_err().is_rejected());
    /// drop(job);
    /// assert!(sem.try_acquire_owned().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_acquire_owned(self: &Arc<Self>) -> Result<OwnedPermit, BulkheadError> {
        self.take(Duration::ZERO)?;
        Ok(OwnedPermit {
            semaphore: Arc::clone(self),
        })
    }

    /// Takes an [`OwnedPermit`], waiting at most the configured
    /// [`max_wait`](SemaphoreConfig::max_wait).
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if no permit came free in time.
    pub fn acquire_owned(self: &Arc<Self>) -> Result<OwnedPermit, BulkheadError> {
        self.acquire_owned_timeout(self.default_wait())
    }

    /// Takes an [`OwnedPermit`], waiting at most `timeout` for one: the same wait as
    /// [`acquire_timeout`](Self::acquire_timeout), in the same FIFO queue.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if no permit came free within `timeout`; the waiter's
    /// place in the queue is removed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let sem = Arc::new(SemaphoreBulkhead::new("api", SemaphoreConfig::new(1))?);
    /// let held = sem.acquire_owned_timeout(Duration::from_millis(10))?;
    /// let err = sem.acquire_owned_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_rejected());
    /// drop(held);
    /// assert!(sem.acquire_owned_timeout(Duration::from_millis(10)).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_owned_timeout(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<OwnedPermit, BulkheadError> {
        self.take(timeout)?;
        Ok(OwnedPermit {
            semaphore: Arc::clone(self),
        })
    }

    /// Takes a permit, waiting at most `timeout` (zero: not at all), and books it or the
    /// rejection. Every kind of permit is taken here, so borrowed and owned permits share
    /// one set of books and one queue; on `Ok` the caller must wrap the permit in a type
    /// whose `Drop` calls [`release`](Self::release).
    fn take(&self, timeout: Duration) -> Result<(), BulkheadError> {
        self.take_or_refuse(timeout)
            .map(drop)
            .map_err(|_| self.rejected())
    }

    /// Takes a permit as [`take`](Self::take) does, but leaves the refusal to the caller
    /// to book: the process bulkhead counts a full queue and a deadline spent waiting
    /// apart. `Ok(true)`: the permit came after a wait. On `Ok` the caller must wrap the permit in a type whose `Drop` calls
    /// [`release`](Self::release).
    pub(crate) fn take_or_refuse(&self, timeout: Duration) -> Result<bool, Refusal> {
        if self.try_take() {
            self.granted();
            return Ok(false);
        }
        let max_waiters = self.max_waiters();
        if timeout.is_zero() || max_waiters == 0 {
            return Err(Refusal::Full);
        }
        let since = Instant::now();
        let deadline = since.checked_add(timeout);
        let waiter = Arc::new(Waiter {
            granted: AtomicBool::new(false),
            thread: thread::current(),
        });
        let took = {
            let mut queue = self.queue.lock();
            // Under the queue lock the waiter count equals the queue's length, so a releaser
            // that sees a waiter will find one here (or retry).
            let mut s = self.state.load(Ordering::Relaxed);
            let took = loop {
                let (next, take) = if waiters(s) == 0 && in_use(s) < self.max() {
                    (s + 1, true)
                } else if waiters(s) >= max_waiters {
                    // The queue is full: refused at once, as a pool's full queue.
                    return Err(Refusal::Full);
                } else {
                    (s + WAITER_ONE, false)
                };
                match self.state.compare_exchange_weak(
                    s,
                    next,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break take,
                    Err(actual) => s = actual,
                }
            };
            if !took {
                queue.push_back(Arc::clone(&waiter));
            }
            took
        };
        if took {
            // Booked with the lock released: booking runs the listeners, user code.
            self.granted_after(since);
            return Ok(true);
        }
        loop {
            // Acquire pairs with the releaser's store: the permit's previous holder's work
            // happens before ours.
            if waiter.granted.load(Ordering::Acquire) {
                self.granted_after(since);
                return Ok(true);
            }
            match deadline {
                None => thread::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    thread::park_timeout(deadline - now);
                }
            }
        }
        let mut queue = self.queue.lock();
        // Granted at the last moment: the permit is ours, take it rather than leak it.
        if waiter.granted.load(Ordering::Acquire) {
            drop(queue);
            self.granted_after(since);
            return Ok(true);
        }
        if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, &waiter)) {
            queue.remove(at);
            self.state.fetch_sub(WAITER_ONE, Ordering::Relaxed);
        }
        drop(queue);
        Err(Refusal::WaitedOut)
    }

    /// Takes a permit, waiting at most `timeout` in a queue of at most `max_waiters`, and
    /// says whether it had to wait; the refusal is the caller's to book.
    #[cfg_attr(not(unix), allow(dead_code))] // only the process bulkhead uses it
    pub(crate) fn acquire_or_refuse(
        &self,
        timeout: Duration,
    ) -> Result<(Permit<'_>, bool), Refusal> {
        let waited = self.take_or_refuse(timeout)?;
        Ok((Permit { semaphore: self }, waited))
    }

    fn release(&self) {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            // Above a lowered limit, the permit goes back even if someone waits: granting
            // it would keep the holders above the limit.
            if waiters(s) == 0 || in_use(s) > self.max() {
                // Nobody waits: put the permit back, wake nobody.
                match self.state.compare_exchange_weak(
                    s,
                    s - 1,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(actual) => s = actual,
                }
                continue;
            }
            let mut queue = self.queue.lock();
            if let Some(waiter) = queue.pop_front() {
                // Hand the permit to the oldest waiter: `in_use` stays, one waiter fewer.
                self.state.fetch_sub(WAITER_ONE, Ordering::Relaxed);
                // Grant under the lock: a waiter giving up takes the same lock and must see
                // either its place in the queue or the grant, never neither (the permit
                // would be lost — found by the loom model `release_vs_waiter_timeout`).
                waiter.granted.store(true, Ordering::Release);
                drop(queue);
                waiter.thread.unpark();
                return;
            }
            // The waiter gave up between our look and the lock; look again.
            drop(queue);
            s = self.state.load(Ordering::Relaxed);
        }
    }

    /// Runs `f` on the caller's thread under a permit, waiting for one at most the configured
    /// [`max_wait`](SemaphoreConfig::max_wait) — and, called inside a task with a deadline,
    /// no later than that deadline.
    ///
    /// A panic in `f` unwinds to the caller as any panic would; the permit is released on
    /// the way.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if no permit came free in time; `f` did not run.
    pub fn call<F, T>(&self, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T,
    {
        // Nested in a pool's task with a deadline: no longer than it.
        let _permit =
            self.acquire_timeout(crate::deadline::wait_within_current(self.default_wait()))?;
        let _lease = self.global_lease(crate::Deadline::current().map(crate::Deadline::instant))?;
        if self.is_adaptive() {
            return Ok(self.run_adaptive(None, f));
        }
        Ok(f())
    }

    /// Runs `f` on the caller's thread under a permit, waiting at most `timeout` for one,
    /// with [`Deadline::current`](crate::Deadline::current) inside `f` set to the end of
    /// `timeout` counted from this call (the wait for the permit included), so `f` can give
    /// its driver the time that is left. Inside a task with an earlier deadline, that one
    /// ends both the wait and `Deadline::current`. `f` itself is not stopped at the deadline: it runs
    /// on the caller's thread.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] if no permit came free within `timeout`; `f` did not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{Deadline, SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let db = SemaphoreBulkhead::new("db", SemaphoreConfig::new(4))?;
    /// let left = db.call_timeout(Duration::from_millis(500), || {
    ///     Deadline::current().map(|d| d.remaining())
    /// })?;
    /// assert!(left.is_some_and(|d| d <= Duration::from_millis(500)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_timeout<F, T>(&self, timeout: Duration, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T,
    {
        let now = Instant::now();
        // Nested in a task with an earlier deadline: that one (`Deadline`'s "nested calls").
        let deadline = crate::deadline::within_current(now.checked_add(timeout));
        let wait = deadline.map_or(timeout, |d| d.saturating_duration_since(now).min(timeout));
        let _permit = self.acquire_timeout(wait)?;
        let _lease = self.global_lease(deadline)?;
        let _deadline = crate::deadline::enter(deadline);
        if self.is_adaptive() {
            return Ok(self.run_adaptive(deadline, f));
        }
        Ok(f())
    }

    /// Runs a fallible `f` as [`call`](SemaphoreBulkhead::call) does, with one flat result:
    /// `f`'s error is [`PolicyError::Inner`](crate::PolicyError::Inner), a refused permit
    /// [`PolicyError::Bulkhead`](crate::PolicyError::Bulkhead). An `Err` from `f` is
    /// counted in [`SemaphoreStats::failed`] (the call is also `permitted`).
    ///
    /// # Errors
    ///
    /// `PolicyError::Inner` with `f`'s error; `PolicyError::Bulkhead` with
    /// [`BulkheadError::Rejected`] if no permit came free in time (`f` did not run).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PolicyError, SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let cache = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(2))?;
    /// assert_eq!(cache.call_fallible(|| "7".parse::<u32>())?, 7);
    /// let err = cache.call_fallible(|| "x".parse::<u32>()).unwrap_err();
    /// assert!(matches!(err, PolicyError::Inner(_)));
    /// assert_eq!((cache.stats().permitted, cache.stats().failed), (2, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_fallible<F, T, E>(&self, f: F) -> Result<T, crate::PolicyError<E>>
    where
        F: FnOnce() -> Result<T, E>,
    {
        self.count_failure(crate::pool::flatten(self.call(f)))
    }

    /// [`call_fallible`](SemaphoreBulkhead::call_fallible) with the wait and the
    /// [`Deadline`](crate::Deadline) of [`call_timeout`](SemaphoreBulkhead::call_timeout).
    ///
    /// # Errors
    ///
    /// As [`call_fallible`](SemaphoreBulkhead::call_fallible), with `timeout` as the wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let db = SemaphoreBulkhead::new("db", SemaphoreConfig::new(1))?;
    /// let held = db.try_acquire()?;
    /// let err = db
    ///     .call_fallible_timeout(Duration::from_millis(5), || Ok::<_, std::io::Error>(()))
    ///     .unwrap_err();
    /// assert!(err.bulkhead_error().is_some_and(|e| e.is_rejected()));
    /// drop(held);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_fallible_timeout<F, T, E>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<T, crate::PolicyError<E>>
    where
        F: FnOnce() -> Result<T, E>,
    {
        self.count_failure(crate::pool::flatten(self.call_timeout(timeout, f)))
    }

    fn count_failure<T, E>(
        &self,
        outcome: Result<T, crate::PolicyError<E>>,
    ) -> Result<T, crate::PolicyError<E>> {
        if matches!(outcome, Err(crate::PolicyError::Inner(_))) {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    fn wait_summary(&self) -> crate::histogram::LatencySummary {
        let permitted = self.counters.permitted.load(Ordering::Relaxed);
        let waited = self.counters.waited.load(Ordering::Relaxed);
        self.wait
            .summary_with_zeros(permitted.saturating_sub(waited))
    }

    /// A snapshot of the semaphore's gauges and counters.
    pub fn stats(&self) -> SemaphoreStats {
        let max_concurrent = self.config.lock().max_concurrent;
        let s = self.state.load(Ordering::Relaxed);
        let mut stats = SemaphoreStats::new(
            &self.name,
            max_concurrent,
            in_use(s),
            waiters(s),
            &self.counters,
            self.wait_summary(),
        );
        stats.limit = self.max();
        stats
    }
}

/// A wait as nanoseconds in an atomic (585 years at most).
/// The permits a configuration grants at once: `max_concurrent`, or an adaptive one's limit.
fn limit_of(config: &SemaphoreConfig) -> usize {
    config
        .adaptive
        .as_ref()
        .map_or(config.max_concurrent, |a| a.limit(config.max_concurrent))
}

fn wait_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<SemaphoreBulkhead>();
    is::<Permit<'static>>();
    is::<OwnedPermit>();
    fn is_owned<T: Send + 'static>() {}
    is_owned::<OwnedPermit>();
}

/// Loom models of the semaphore:
/// `RUSTFLAGS="--cfg bulkheads_loom" cargo test --lib --release loom`.
#[cfg(all(test, bulkheads_loom))]
mod loom_models {
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    fn sem(max: usize) -> Arc<SemaphoreBulkhead> {
        Arc::new(SemaphoreBulkhead::new("model", SemaphoreConfig::new(max)).unwrap())
    }

    fn quiet(sem: &SemaphoreBulkhead) {
        let s = sem.state.load(Ordering::Relaxed);
        assert_eq!(
            (in_use(s), waiters(s)),
            (0, 0),
            "leaked a permit or a waiter"
        );
        assert!(sem.queue.lock().is_empty());
        assert!(sem.try_acquire().is_ok(), "the permit is usable again");
    }

    /// A release racing a waiter whose deadline has passed: the permit is either handed to
    /// the waiter (who keeps it) or put back; never lost, never doubled.
    #[test]
    fn release_vs_waiter_timeout() {
        loom::model(|| {
            let sem = sem(1);
            std::mem::forget(sem.try_acquire().unwrap());
            let waiter = {
                let sem = Arc::clone(&sem);
                // A granted permit is dropped at once, inside the model.
                thread::spawn(move || sem.acquire_timeout(Duration::from_nanos(1)).is_ok())
            };
            sem.release();
            let _got = waiter.join().unwrap();
            quiet(&sem);
        });
    }

    /// Raising the limit while a release hands its permit on and a waiter waits: the
    /// waiter is granted (by the raise or the release), nobody is stranded beside a free
    /// permit, and no permit is lost or doubled.
    #[test]
    fn raise_vs_release_and_waiter() {
        loom::model(|| {
            let sem = sem(1);
            std::mem::forget(sem.try_acquire().unwrap());
            let waiter = {
                let sem = Arc::clone(&sem);
                thread::spawn(move || drop(sem.acquire_timeout(Duration::MAX).expect("granted")))
            };
            let raiser = {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.set_max_concurrent(2).unwrap())
            };
            sem.release();
            raiser.join().unwrap();
            waiter.join().unwrap();
            quiet(&sem);
        });
    }

    /// Lowering the limit while two holders release and a caller waits: the waiter is
    /// granted only once the holders are under the new limit, and then exactly once.
    #[test]
    fn shrink_vs_releases_and_waiter() {
        loom::model(|| {
            let sem = sem(2);
            std::mem::forget(sem.try_acquire().unwrap());
            std::mem::forget(sem.try_acquire().unwrap());
            let waiter = {
                let sem = Arc::clone(&sem);
                thread::spawn(move || drop(sem.acquire_timeout(Duration::MAX).expect("granted")))
            };
            let shrinker = {
                let sem = Arc::clone(&sem);
                thread::spawn(move || sem.set_max_concurrent(1).unwrap())
            };
            sem.release();
            sem.release();
            shrinker.join().unwrap();
            waiter.join().unwrap();
            quiet(&sem);
        });
    }

    /// A waiter with no deadline is always woken by a release (no lost wake-up), and a
    /// newcomer racing them never makes two holders of the one permit.
    #[test]
    fn release_hands_off_to_waiter_not_newcomer() {
        loom::model(|| {
            let sem = sem(1);
            std::mem::forget(sem.try_acquire().unwrap());
            // Holders besides the main thread's forgotten permit, which `release` returns.
            let holders = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
            let waiter = {
                let sem = Arc::clone(&sem);
                let holders = Arc::clone(&holders);
                thread::spawn(move || {
                    // Duration::MAX: no deadline; parks until granted.
                    let permit = sem.acquire_timeout(Duration::MAX).expect("granted");
                    assert_eq!(holders.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                    holders.fetch_sub(1, Ordering::Relaxed);
                    drop(permit);
                })
            };
            let newcomer = {
                let sem = Arc::clone(&sem);
                let holders = Arc::clone(&holders);
                thread::spawn(move || {
                    if let Ok(permit) = sem.try_acquire() {
                        assert_eq!(holders.fetch_add(1, Ordering::Relaxed), 0, "two holders");
                        holders.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    }
                })
            };
            sem.release();
            waiter.join().unwrap();
            newcomer.join().unwrap();
            quiet(&sem);
        });
    }
}
