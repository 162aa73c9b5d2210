//! [`Deadline`]: the time a call has left, readable from inside the task.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    /// The deadline of the task this thread is running, if it has one.
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline of the call a pool's worker is running: the instant its caller stops
/// waiting.
///
/// A call made with [`execute_timeout`](crate::ThreadPoolBulkhead::execute_timeout) (or
/// with a pool's [`default_timeout`](crate::PoolConfig::default_timeout)) has a deadline
/// that starts at submission, so time spent in the queue is already gone when the task
/// starts. A started task cannot be stopped from outside — threads cannot be killed — but it
/// can stop itself: set a socket or statement timeout from [`remaining`](Deadline::remaining)
/// instead of a fixed one, and check [`is_expired`](Deadline::is_expired) between steps of
/// a long loop. Then a task whose caller has given up frees its worker soon after, instead of
/// holding it for as long as a sick dependency takes.
///
/// [`Deadline::current`] reads it anywhere on the worker's thread, however deep in the call
/// stack (a database wrapper, an HTTP client), with no parameter to thread through. It is
/// `None` outside a task, and inside a task without a deadline (`execute` without a default
/// timeout, `submit`). A nested call to another bulkhead does not inherit it on its own:
/// pass `remaining()` as that call's timeout to carry it on.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{Deadline, PoolConfig, ThreadPoolBulkhead};
///
/// let db = ThreadPoolBulkhead::new("db", PoolConfig::new(2))?;
/// let statement_timeout = db.execute_timeout(Duration::from_millis(500), || {
///     // Whatever the queue took is already subtracted.
///     let deadline = Deadline::current().expect("called with a timeout");
///     deadline.remaining()
/// })?;
/// assert!(statement_timeout <= Duration::from_millis(500));
///
/// // Without a timeout there is no deadline; outside a task neither.
/// assert_eq!(db.execute(|| Deadline::current())?, None);
/// assert_eq!(Deadline::current(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// The deadline of the task running on this thread, if it has one.
    pub fn current() -> Option<Deadline> {
        CURRENT
            .try_with(Cell::get)
            .ok()
            .flatten()
            .map(|at| Deadline { at })
    }

    /// The instant the caller stops waiting.
    pub fn instant(self) -> Instant {
        self.at
    }

    /// The time left until the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed: the caller has stopped waiting (or is about to),
    /// and the result will be dropped.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.at
    }
}

/// Makes `deadline` this thread's current one until the guard drops (also on unwinding),
/// then puts back the one before.
pub(crate) fn enter(deadline: Option<Instant>) -> Entered {
    let before = CURRENT.try_with(|c| c.replace(deadline)).ok().flatten();
    Entered { before }
}

pub(crate) struct Entered {
    before: Option<Instant>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.before));
    }
}
