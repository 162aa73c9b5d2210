//! One task: its closure, its result slot, and the [`TaskHandle`] its caller holds.
//!
//! A task is one allocation shared by the queue (as `Arc<dyn Job>`) and the caller (as
//! `Arc<dyn Slot<T>>`). Its `state` decides, with one compare-and-swap, who owns the closure:
//!
//! ```text
//!  PENDING ──worker claims──▶ RUNNING ──result stored──▶ DONE
//!     │
//!     ├──caller cancels / times out──▶ ABANDONED   (caller keeps the books, no result)
//!     └──shutdown_now / no worker────▶ DONE        (result is an error)
//! ```
//!
//! Whoever wins the CAS out of PENDING frees the slot in the admission word exactly once, so
//! every admitted task has exactly one outcome.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::error::BulkheadError;
use crate::pool::Shared;
use crate::sync::{Arc, AtomicU8, Condvar, Mutex, Ordering, Spin};
use crate::trace::{CallSpan, in_span};

// PENDING: queued (or handed to a worker that has not claimed it yet).
const PENDING: u8 = 0;
// RUNNING: a worker owns the closure and is running it.
const RUNNING: u8 = 1;
// DONE: the result is in the slot.
const DONE: u8 = 2;
// ABANDONED: the caller cancelled it before it started; it never runs, no result comes.
const ABANDONED: u8 = 3;

/// The worker's view of a task.
pub(crate) trait Job: Send + Sync {
    /// Claims and runs the task, or skips it if its caller gave up.
    fn run(self: Arc<Self>, shared: &Shared);

    /// Completes a task that has not started with `error` instead of running it; false if
    /// it had already started or been cancelled.
    fn discard(&self, shared: &Shared, error: BulkheadError) -> bool;

    /// True while nobody has claimed, cancelled or discarded the task.
    fn is_pending(&self) -> bool;
}

/// The caller's view of a task.
pub(crate) trait Slot<T>: Send + Sync {
    /// Waits until the task is done or abandoned, or until `deadline`; true if it is.
    fn wait(&self, deadline: Option<Instant>) -> bool;

    /// True once the task is done or abandoned.
    fn is_finished(&self) -> bool;

    /// Moves PENDING to ABANDONED and drops the closure; false if it was not pending.
    fn abandon(&self) -> bool;

    /// The outcome once [`wait`](Slot::wait) returned true.
    fn take(&self, shared: &Shared) -> Result<T, BulkheadError>;

    /// Drops the outcome, if there is one, on the calling thread.
    fn drop_outcome(&self);
}

pub(crate) struct Task<F, T> {
    state: AtomicU8,
    /// When the caller submitted it: the queue-wait clock and deadlines start here.
    submitted: Instant,
    /// When its caller stops waiting, if it has a deadline ([`crate::Deadline`]).
    deadline: Option<Instant>,
    /// The caller's context, carried to the worker (feature `tracing`; nothing otherwise).
    span: CallSpan,
    func: Mutex<Option<F>>,
    result: Mutex<Option<Result<T, BulkheadError>>>,
    done: Condvar,
}

impl<F, T> Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    pub(crate) fn new(f: F, submitted: Instant, deadline: Option<Instant>, span: CallSpan) -> Self {
        Self {
            state: AtomicU8::new(PENDING),
            submitted,
            deadline,
            span,
            func: Mutex::new(Some(f)),
            result: Mutex::new(None),
            done: Condvar::new(),
        }
    }

    /// PENDING → `to`. Acquire/Release: the winner of the claim owns the closure, and the
    /// closure's captured state was published by the submitting thread.
    fn leave_pending(&self, to: u8) -> bool {
        self.state
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn take_func(&self) -> Option<F> {
        self.func.lock().take()
    }

    fn complete(&self, outcome: Result<T, BulkheadError>) {
        let mut slot = self.result.lock();
        *slot = Some(outcome);
        // Release: a waiter that sees DONE without the lock (spinning) sees the result.
        self.state.store(DONE, Ordering::Release);
        drop(slot);
        self.done.notify_one();
    }
}

/// Drops a closure that will never run; a panic in its destructor must not take down the
/// thread that is keeping the books.
fn drop_quietly<F>(f: Option<F>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(f)));
}

impl<F, T> Job for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Arc<Self>, shared: &Shared) {
        if !self.leave_pending(RUNNING) {
            // The caller cancelled it or timed out; it already freed the slot.
            return;
        }
        let Some(f) = self.take_func() else {
            return;
        };
        if shared.admission.load().is_shutdown_now() {
            drop_quietly(Some(f));
            let error = shared.shutdown_error();
            shared.task_discarded();
            self.complete(Err(error));
            return;
        }
        // TASK START: the one spot where a task begins to run.
        let outcome = in_span(&self.span, || {
            let started = shared.task_started(self.submitted);
            let deadline = crate::deadline::enter(self.deadline);
            let outcome = catch_unwind(AssertUnwindSafe(f));
            drop(deadline);
            // TASK END: the one spot where it has stopped.
            shared.task_stopped(started, outcome.is_err());
            outcome
        });
        if Arc::strong_count(&self) == 1 {
            // DETACHED: no handle and no caller is left to take the outcome (handles cannot
            // be cloned, and the queue gave up its reference). Dropping it is still this
            // task's work — a connection closed on drop, a large structure freed — so it
            // happens while the task holds its slot, and the worker does not look idle to
            // admission while it is busy (regression test in tests/pool.rs).
            let panicked = outcome.is_err();
            drop_quietly(Some(outcome));
            shared.task_finished_detached(panicked);
            return;
        }
        // Free the slot before the result is handed back (promise 5).
        let outcome = shared.task_finished(outcome);
        self.complete(outcome);
    }

    fn discard(&self, shared: &Shared, error: BulkheadError) -> bool {
        if !self.leave_pending(RUNNING) {
            return false;
        }
        drop_quietly(self.take_func());
        shared.task_discarded();
        self.complete(Err(error));
        true
    }

    fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }
}

impl<F, T> Slot<T> for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn wait(&self, deadline: Option<Instant>) -> bool {
        // Spin before parking (see `sync::SPIN_BUDGET` for why, and for how long).
        let mut spin = Spin::new(deadline);
        loop {
            if self.is_finished() {
                return true;
            }
            if !spin.turn() {
                break;
            }
        }
        let mut slot = self.result.lock();
        loop {
            if self.is_finished() {
                return true;
            }
            match deadline {
                None => self.done.wait(&mut slot),
                Some(deadline) => {
                    if self.done.wait_until(&mut slot, deadline).timed_out() {
                        return self.is_finished();
                    }
                }
            }
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), DONE | ABANDONED)
    }

    fn abandon(&self) -> bool {
        if !self.leave_pending(ABANDONED) {
            return false;
        }
        drop_quietly(self.take_func());
        true
    }

    fn drop_outcome(&self) {
        let outcome = self.result.lock().take();
        drop(outcome);
    }

    fn take(&self, shared: &Shared) -> Result<T, BulkheadError> {
        if self.state.load(Ordering::Acquire) == ABANDONED {
            return Err(BulkheadError::Cancelled {
                name: shared.name.clone(),
            });
        }
        // Only the one owner of the handle takes, once; the slot is always full at DONE.
        self.result
            .lock()
            .take()
            .unwrap_or_else(|| Err(shared.shutdown_error()))
    }
}

/// A handle to a task submitted with [`ThreadPoolBulkhead::submit`].
///
/// [`join`](TaskHandle::join) waits for the outcome, [`join_timeout`](TaskHandle::join_timeout)
/// waits at most a given time, and [`cancel`](TaskHandle::cancel) withdraws a task that has
/// not started. Dropping the handle detaches the task, as with
/// [`std::thread::JoinHandle`]: it still runs, and its result is dropped.
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
    slot: Arc<dyn Slot<T>>,
    shared: Arc<Shared>,
    submitted_at: Instant,
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
    /// Detaches the task. An outcome already delivered is dropped here, on the caller's
    /// thread, not later on a worker.
    fn drop(&mut self) {
        if self.slot.is_finished() {
            self.slot.drop_outcome();
        }
    }
}

impl<T: Send + 'static> TaskHandle<T> {
    pub(crate) fn new(slot: Arc<dyn Slot<T>>, shared: Arc<Shared>, submitted_at: Instant) -> Self {
        Self {
            slot,
            shared,
            submitted_at,
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
        self.slot.wait(None);
        self.slot.take(&self.shared)
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
        self.shared.wait_deadline(&*self.slot, deadline, timeout)
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
        if self.slot.abandon() {
            self.shared.task_cancelled();
            true
        } else {
            false
        }
    }

    /// True once the task has an outcome (or was cancelled): `join` will not block.
    pub fn is_finished(&self) -> bool {
        self.slot.is_finished()
    }

    /// The name of the bulkhead running the task.
    pub fn bulkhead(&self) -> &str {
        &self.shared.name
    }
}

/// Loom models of one task's life:
/// `RUSTFLAGS="--cfg bulkheads_loom" cargo test --lib --release loom`.
///
/// They drive the real `Task`, `Shared` and admission word; the worker is played by a loom
/// thread calling `Job::run` as the worker's loop does (the queue's wake-ups have models of
/// their own, in `queue.rs`).
#[cfg(all(test, bulkheads_loom))]
mod loom_models {
    use super::*;
    use crate::pool::admission::Admit;
    use crate::{PoolConfig, ThreadPoolBulkhead};
    use loom::sync::atomic::AtomicBool;
    use loom::thread;

    struct Fixture {
        _pool: ThreadPoolBulkhead,
        shared: Arc<Shared>,
        ran: std::sync::Arc<AtomicBool>,
        task: Arc<Task<Box<dyn FnOnce() -> u32 + Send>, u32>>,
    }

    fn fixture() -> Fixture {
        let pool = ThreadPoolBulkhead::new("model", PoolConfig::new(1)).unwrap();
        let shared = Arc::clone(&pool.shared);
        assert!(matches!(
            shared.admission.try_admit(),
            Admit::Admitted { .. }
        ));
        shared.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let ran = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&ran);
        let f: Box<dyn FnOnce() -> u32 + Send> = Box::new(move || {
            flag.store(true, Ordering::Relaxed);
            7
        });
        Fixture {
            _pool: pool,
            shared,
            ran,
            task: Arc::new(Task::new(f, Instant::now(), None, CallSpan::default())),
        }
    }

    fn worker(fx: &Fixture) -> thread::JoinHandle<()> {
        let job: Arc<dyn Job> = fx.task.clone();
        let shared = Arc::clone(&fx.shared);
        thread::spawn(move || job.run(&shared))
    }

    /// Exactly one outcome, and the slot freed exactly once.
    fn books_balance(fx: &Fixture) {
        let c = &fx.shared.counters;
        let outcomes = c.completed.load(Ordering::Relaxed)
            + c.expired.load(Ordering::Relaxed)
            + c.cancelled.load(Ordering::Relaxed)
            + c.panicked.load(Ordering::Relaxed);
        assert_eq!(outcomes, 1, "a task must have exactly one outcome");
        assert_eq!(
            fx.shared.admission.load().in_flight(),
            0,
            "slot not freed once"
        );
    }

    /// The caller's deadline passing while the worker claims the task.
    #[test]
    fn timeout_vs_worker() {
        loom::model(|| {
            let fx = fixture();
            let w = worker(&fx);
            let past = Instant::now();
            let outcome = fx
                .shared
                .wait_deadline(&*fx.task, Some(past), Duration::ZERO);
            w.join().unwrap();
            books_balance(&fx);
            let c = &fx.shared.counters;
            let ran = fx.ran.load(Ordering::Relaxed);
            match outcome {
                Ok(v) => assert!(v == 7 && ran),
                Err(e) => {
                    assert!(e.is_timeout());
                    assert_eq!(c.timed_out.load(Ordering::Relaxed), 1);
                    // Either it expired in the queue and never ran, or it had started.
                    assert_eq!(c.expired.load(Ordering::Relaxed) == 1, !ran);
                }
            }
        });
    }

    /// `join` with no deadline never misses the worker's wake-up.
    #[test]
    fn join_vs_worker() {
        loom::model(|| {
            let fx = fixture();
            let w = worker(&fx);
            assert!(fx.task.wait(None));
            assert_eq!(fx.task.take(&fx.shared).unwrap(), 7);
            w.join().unwrap();
            books_balance(&fx);
        });
    }

    /// `cancel`, `shutdown_now`'s discard and the worker's claim, all at once.
    #[test]
    fn cancel_vs_discard_vs_worker() {
        loom::model(|| {
            let fx = fixture();
            let w = worker(&fx);
            let discarder = {
                let job: Arc<dyn Job> = fx.task.clone();
                let shared = Arc::clone(&fx.shared);
                thread::spawn(move || {
                    let error = shared.shutdown_error();
                    job.discard(&shared, error)
                })
            };
            let cancelled = fx.task.abandon();
            if cancelled {
                fx.shared.task_cancelled();
            }
            let discarded = discarder.join().unwrap();
            w.join().unwrap();
            books_balance(&fx);
            let ran = fx.ran.load(Ordering::Relaxed);
            assert_eq!(
                usize::from(cancelled) + usize::from(discarded) + usize::from(ran),
                1
            );
            assert!(fx.task.wait(None));
            let outcome = fx.task.take(&fx.shared);
            assert_eq!(outcome.is_ok(), ran);
        });
    }
}
