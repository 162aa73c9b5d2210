//! [`acquire_all`]: permits of several semaphores at once, all or nothing (service →
//! endpoint → tenant).
//!
//! Deadlock freedom comes from one global order: the semaphores are taken in the order of
//! their addresses, whatever order the caller names them in, so two callers can never each
//! hold what the other waits for. One deadline covers every wait; on any failure the permits
//! taken so far are dropped before the error is returned.

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::BulkheadError;
use crate::semaphore::{Permit, SemaphoreBulkhead};

/// The permits [`acquire_all`] took; all are released when it is dropped.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{acquire_all, SemaphoreBulkhead, SemaphoreConfig};
///
/// let service = SemaphoreBulkhead::new("service", SemaphoreConfig::new(10))?;
/// let endpoint = SemaphoreBulkhead::new("service/search", SemaphoreConfig::new(2))?;
/// let permits = acquire_all(&[&service, &endpoint], Duration::ZERO)?;
/// assert_eq!(permits.len(), 2);
/// assert_eq!(endpoint.stats().running, 1);
/// drop(permits);
/// assert_eq!(endpoint.stats().running, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the permits are released as soon as they are dropped"]
pub struct Permits<'a> {
    permits: Vec<Permit<'a>>,
}

impl fmt::Debug for Permits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.permits.iter().map(Permit::bulkhead))
            .finish()
    }
}

impl Permits<'_> {
    /// How many permits are held.
    pub fn len(&self) -> usize {
        self.permits.len()
    }

    /// Whether no permit is held (`acquire_all` of an empty list).
    pub fn is_empty(&self) -> bool {
        self.permits.is_empty()
    }

    /// The names of the bulkheads whose permits are held, in the order they were taken.
    pub fn bulkheads(&self) -> Vec<&str> {
        self.permits.iter().map(Permit::bulkhead).collect()
    }
}

/// Takes a permit of every semaphore in `semaphores`, or none: waits at most `timeout` in
/// all, in one global order (the semaphores' addresses), so callers that name the same
/// semaphores in different orders cannot deadlock. A semaphore named twice gives two
/// permits. `Duration::ZERO` never waits.
///
/// # Errors
///
/// The first refusal (`Rejected`, naming that semaphore) once the deadline has passed;
/// every permit taken before it has been given back.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{acquire_all, SemaphoreBulkhead, SemaphoreConfig};
///
/// let a = SemaphoreBulkhead::new("a", SemaphoreConfig::new(1))?;
/// let b = SemaphoreBulkhead::new("b", SemaphoreConfig::new(1))?;
/// let held = b.try_acquire()?;
/// let err = acquire_all(&[&a, &b], Duration::ZERO).unwrap_err();
/// assert_eq!(err.bulkhead(), "b");
/// // Nothing of `a` was kept.
/// assert_eq!(a.stats().running, 0);
/// drop(held);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn acquire_all<'a>(
    semaphores: &[&'a SemaphoreBulkhead],
    timeout: Duration,
) -> Result<Permits<'a>, BulkheadError> {
    let deadline = Instant::now().checked_add(timeout);
    let mut order: Vec<&'a SemaphoreBulkhead> = semaphores.to_vec();
    order.sort_by_key(|s| std::ptr::from_ref::<SemaphoreBulkhead>(*s) as usize);
    let mut permits = Vec::with_capacity(order.len());
    for semaphore in order {
        let left = match deadline {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            // No representable deadline: wait as long as a Duration can say.
            None => Duration::MAX,
        };
        // On error `permits` is dropped here, giving back everything taken.
        permits.push(semaphore.acquire_timeout(left)?);
    }
    Ok(Permits { permits })
}
