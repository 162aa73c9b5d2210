//! How a bulkhead drives a [`LimitAlgorithm`]: the shared algorithm a configuration carries,
//! and the task-local overload report.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use super::{LimitAlgorithm, Sample};
use crate::sync::Arc;
use crate::sync::plain::{AtomicUsize, Mutex, Ordering};

/// A configuration's adaptive algorithm. Clones share one algorithm, so the configuration a
/// bulkhead returns from `config()` carries the limit in force, and handing it back to
/// `reconfigure` keeps the algorithm's learning.
///
/// The algorithm is user code: it runs only in [`update`](Self::update), under its own lock
/// and no bulkhead's. The limit it last gave is kept beside it, so that a bulkhead putting
/// limits in force under its configuration's lock reads a number, not the algorithm.
#[derive(Clone)]
pub(crate) struct SharedLimit {
    inner: Arc<Inner>,
}

struct Inner {
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    /// The algorithm's limit after its last update (unclamped).
    current: AtomicUsize,
}

impl SharedLimit {
    pub(crate) fn new(algorithm: impl LimitAlgorithm) -> Self {
        let current = AtomicUsize::new(algorithm.limit());
        Self {
            inner: Arc::new(Inner {
                algorithm: Mutex::new(Box::new(algorithm)),
                current,
            }),
        }
    }

    /// The algorithm's own checks ([`LimitAlgorithm::validate`]).
    pub(crate) fn validate(&self, name: &str) -> Result<(), crate::error::ConfigError> {
        self.inner.algorithm.lock().validate(name)
    }

    /// The algorithm's limit after its last update, at least 1 and at most `ceiling`.
    pub(crate) fn limit(&self, ceiling: usize) -> usize {
        clamp(self.inner.current.load(Ordering::Relaxed), ceiling)
    }

    /// Feeds one finished call; returns the limit now in force, within `[1, ceiling]`.
    /// Call it with no bulkhead lock held: the algorithm is user code.
    ///
    /// A panic in the algorithm is caught (the limit then stays as it was), so a faulty
    /// algorithm cannot take a worker or the caller's thread with it.
    pub(crate) fn update(&self, sample: Sample, ceiling: usize) -> usize {
        let mut algorithm = self.inner.algorithm.lock();
        if let Ok(limit) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| algorithm.update(sample)))
        {
            self.inner.current.store(limit, Ordering::Relaxed);
        }
        drop(algorithm);
        self.limit(ceiling)
    }
}

fn clamp(limit: usize, ceiling: usize) -> usize {
    limit.clamp(1, ceiling.max(1))
}

impl PartialEq for SharedLimit {
    /// The same algorithm (a clone of one configuration's), not an equal one.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for SharedLimit {}

impl fmt::Debug for SharedLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = self.inner.current.load(Ordering::Relaxed);
        write!(f, "Adaptive {{ limit: {limit} }}")
    }
}

/// Outside any bulkhead call; inside one; inside one that reported overload.
const OUTSIDE: u8 = 0;
const INSIDE: u8 = 1;
const REPORTED: u8 = 2;

thread_local! {
    static OVERLOAD: Cell<u8> = const { Cell::new(OUTSIDE) };
}

/// Marks this thread as running a bulkhead's call until the guard drops; the guard then
/// tells whether the call reported overload. Nested calls (a task calling a semaphore inside)
/// each see their own report.
pub(crate) fn enter_call() -> CallScope {
    let before = OVERLOAD.try_with(|c| c.replace(INSIDE)).unwrap_or(OUTSIDE);
    CallScope { before }
}

pub(crate) struct CallScope {
    before: u8,
}

impl CallScope {
    /// Ends the call: true if it reported overload.
    pub(crate) fn finish(self) -> bool {
        let reported = OVERLOAD
            .try_with(|c| c.replace(self.before) == REPORTED)
            .unwrap_or(false);
        std::mem::forget(self);
        reported
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        let _ = OVERLOAD.try_with(|c| c.set(self.before));
    }
}

/// Reports, from inside a bulkhead's call, that the dependency said it is overloaded (an
/// HTTP 429 or 503, a "too many connections", a driver's back-pressure error): an adaptive
/// bulkhead counts the call as a drop, as it does a timeout, and lowers its limit by its
/// algorithm's rule. Outside a bulkhead's call (a pool's task, a semaphore's `call`) it does
/// nothing; on a bulkhead that is not adaptive it changes nothing.
///
/// # Examples
///
/// ```
/// use bulkheads::limit::{self, Aimd};
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let api = ThreadPoolBulkhead::new(
///     "partner-api",
///     PoolConfig::new(16).adaptive(Aimd::new().initial_limit(10).min_limit(1)),
/// )?;
/// let status = api.execute(|| {
///     let status = 503; // the partner's answer
///     if status == 429 || status == 503 {
///         limit::report_overload();
///     }
///     status
/// })?;
/// assert_eq!(status, 503);
/// // Aimd cut the limit by its backoff ratio (0.9): 10 → 9.
/// assert_eq!(api.stats().limit, 9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn report_overload() {
    let _ = OVERLOAD.try_with(|c| {
        if c.get() != OUTSIDE {
            c.set(REPORTED);
        }
    });
}

/// The sample of a call that ran `rtt` from `started` and ended with `in_flight` calls in
/// flight (itself included); dropped if it overran its `deadline` (its caller has given up
/// by then, or will) or reported overload.
pub(crate) fn sample(
    started: Instant,
    rtt: Duration,
    in_flight: usize,
    deadline: Option<Instant>,
    overloaded: bool,
) -> Sample {
    let overran = deadline.is_some_and(|d| started.checked_add(rtt).is_some_and(|end| end > d));
    Sample::new(rtt, in_flight.max(1), overran || overloaded)
}
