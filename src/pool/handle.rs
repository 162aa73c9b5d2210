//! [`TaskHandle`]: the caller's handle on a submitted task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::BulkheadError;
use crate::pool::Shared;
use crate::pool::task::Awaited;
use crate::sync::Arc;

/// A handle to a task submitted with [`ThreadPoolBulkhead::submit`].
///
/// [`join`](TaskHandle::join) waits for the outcome, [`join_timeout`](TaskHandle::join_timeout)
/// waits at most a given time, and [`cancel`](TaskHandle::cancel) withdraws a task that has
/// not started. Dropping the handle detaches the task, as with
/// [`std::thread::JoinHandle`]: it still runs, and its result is dropped.
///
/// # In async code
///
/// A `TaskHandle` is also a [`Future`] of the same outcome, with no runtime behind it: an
/// async task awaits `pool.submit(f)?` as a bounded, named, fail-fast `spawn_blocking`, and
/// the worker wakes it once the outcome is in. It is `Send` when `T` is, so
/// `tokio::spawn` can hold it. Dropping it, awaited or not, detaches the task as above —
/// as dropping tokio's `JoinHandle` does, and unlike smol's `Task`, which cancels: a
/// blocking call cannot be stopped once it started. So `tokio::time::timeout(d, handle)`
/// stops the *waiting* at `d`; the task keeps its slot until it ends (call
/// [`cancel`](TaskHandle::cancel) first to withdraw one that has not started).
///
/// Never call [`join`](TaskHandle::join) or [`join_timeout`](TaskHandle::join_timeout)
/// from async code: they block the runtime's thread, and every task scheduled on it, until
/// the outcome comes. Await the handle instead.
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("files", PoolConfig::new(2))?;
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let len = rt.block_on(async {
///     // Rejected at once with `BulkheadError::Rejected` when the compartment is full.
///     pool.submit(|| std::fs::read("Cargo.toml").map(|b| b.len()))?.await
/// })??;
/// assert!(len > 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("reports", PoolConfig::new(2))?;
/// let handles: Vec<_> = (0..2).map(|i| pool.submit(move || i * 10)).collect::<Result<_, _>>()?;
/// let results: Vec<i32> = handles.into_iter().map(|h| h.join()).collect::<Result<_, _>>()?;
/// assert_eq!(results, [0, 10]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`ThreadPoolBulkhead::submit`]: crate::ThreadPoolBulkhead::submit
#[must_use = "dropping a TaskHandle detaches the task; join it to get its result"]
pub struct TaskHandle<T> {
    task: Arc<dyn Awaited<T>>,
    shared: Arc<Shared>,
    submitted_at: Instant,
    /// The future has returned its outcome (a poll after that is a bug in the caller).
    polled_out: bool,
}

impl<T> std::fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("bulkhead", &&*self.shared.name)
            .field("submitted_at", &self.submitted_at)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for TaskHandle<T> {
    /// Detaches the task: it still runs, and the worker drops its outcome before it frees
    /// the task's slot. An outcome already delivered is dropped here, on the caller's thread.
    fn drop(&mut self) {
        self.task.detach();
    }
}

impl<T: Send + 'static> TaskHandle<T> {
    pub(crate) fn new(
        task: Arc<dyn Awaited<T>>,
        shared: Arc<Shared>,
        submitted_at: Instant,
    ) -> Self {
        Self {
            task,
            shared,
            submitted_at,
            polled_out: false,
        }
    }

    /// Waits for the task and returns its outcome.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Panicked`] if the task panicked, [`BulkheadError::Cancelled`] if it
    /// was cancelled, [`BulkheadError::Shutdown`] if `shutdown_now` discarded it before it
    /// started.
    pub fn join(self) -> Result<T, BulkheadError> {
        self.task.wait(None, Some(&self.shared.spin));
        self.task.take(&self.shared)
    }

    /// Waits at most `timeout` for the task, counted from this call.
    ///
    /// On timeout a task that has not started is cancelled (it frees its slot at once, never
    /// runs, and is counted as `expired`); one that has started runs to its end in its slot,
    /// and its result is dropped.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Timeout`] when the time is up, and the errors of
    /// [`join`](TaskHandle::join).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("search", PoolConfig::new(1))?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let slow = pool.submit(move || rx.recv().ok())?;
    /// let err = slow.join_timeout(Duration::from_millis(10)).unwrap_err();
    /// assert!(err.is_timeout());
    /// tx.send(()).unwrap(); // let the started task finish
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join_timeout(self, timeout: Duration) -> Result<T, BulkheadError> {
        let deadline = Instant::now().checked_add(timeout);
        self.shared.wait_deadline(&*self.task, deadline, timeout)
    }

    /// Cancels the task if it has not started: it frees its slot at once and never runs, and
    /// `join` then returns [`BulkheadError::Cancelled`]. Returns false if the task had already
    /// started (it runs to its end), finished, or been cancelled.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("jobs", PoolConfig::new(1).queue_capacity(1))?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let busy = pool.submit(move || rx.recv().ok())?;
    /// let queued = pool.submit(|| "never runs")?;
    /// assert!(queued.cancel());
    /// assert!(queued.join().unwrap_err().is_cancelled());
    /// tx.send(()).unwrap();
    /// busy.join()?;
    /// assert_eq!(pool.stats().cancelled, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel(&self) -> bool {
        if self.task.abandon() {
            self.shared.task_cancelled();
            true
        } else {
            false
        }
    }

    /// True once the task has an outcome (or was cancelled): `join` will not block.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// The name of the bulkhead running the task.
    pub fn bulkhead(&self) -> &str {
        &self.shared.name
    }
}

impl<T: Send + 'static> Future for TaskHandle<T> {
    type Output = Result<T, BulkheadError>;

    /// Ready with the task's outcome, the same one [`join`](TaskHandle::join) returns.
    /// Pending until then: the waker of the latest poll is kept (one poll from another
    /// async task replaces it) and woken once, after the outcome is published.
    ///
    /// # Panics
    ///
    /// If polled again after it returned `Ready` (as tokio's `JoinHandle` does); wrap it in
    /// `futures::future::Fuse` to poll it past its end.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.polled_out,
            "bulkheads: a TaskHandle of bulkhead {:?} polled after it returned its outcome",
            &*this.shared.name
        );
        if this.task.poll_finished(cx.waker()) {
            this.polled_out = true;
            Poll::Ready(this.task.take(&this.shared))
        } else {
            Poll::Pending
        }
    }
}
