//! One task's life: its closure, its outcome cell, the state machine that decides who owns
//! them, and the caller's wait protocol.
//!
//! A task is one allocation shared by the queue (as `Arc<dyn Job>`) and its caller (as
//! `Arc<dyn Awaited<T>>`). Its `state` decides, one compare-and-swap at a time, who owns the
//! closure and who owns the outcome:
//!
//! ```text
//!  PENDING ──worker claims──▶ RUNNING ──worker delivers──▶ COMPLETING ──outcome stored──▶ DONE
//!     │                          │
//!     │                          └──caller gives up──▶ RUNNING|ORPHANED|TIMED_OUT ──callbacks
//!     │                                                fired, worker drops the outcome,
//!     │                                                then frees the slot──▶ DONE
//!     ├──handle dropped──▶ PENDING|ORPHANED (runs; its outcome is dropped as above)
//!     ├──caller cancels / times out──▶ ABANDONED   (never runs; the caller keeps the books)
//!     └──shutdown_now / no worker────▶ RUNNING ──▶ COMPLETING ──▶ DONE (outcome is an error)
//! ```
//!
//! Whoever wins the CAS out of PENDING, or out of RUNNING, decides the task's one outcome;
//! the slot in the admission word is freed exactly once, by the side that won.
//!
//! `Deadline::on_expire` callbacks ride on the same CAS (`Expiry`, in `deadline.rs`): a
//! caller whose give-up won it (TIMED_OUT) fires them; a worker whose delivery won it
//! disarms them. A worker that lost to a TIMED_OUT caller fires whatever the caller has not
//! taken yet, or waits for the caller's firing to end, before it frees the slot — so a
//! cancel never lands on the worker's next task. A dropped handle (ORPHANED alone) disarms.
//!
//! ORPHANED is a flag, not inferred from `Arc::strong_count`: the count races with a caller
//! that is dropping its clone at that very moment, and a worker that read "still wanted"
//! would free the slot, then find itself dropping the outcome (a connection closed on drop,
//! a large structure freed) outside the compartment. With the flag, the caller that gives up
//! and the worker that delivers race on one CAS from RUNNING; the worker that loses it knows
//! nobody will take the outcome and drops it *before* it frees the slot.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::deadline::{Expiry, HasExpiry};
use crate::error::{BulkheadError, PanicPayload, panic_message};
use crate::event::EventKind;
use crate::pool::Shared;
use crate::pool::spin::SpinPolicy;
use crate::stats::PoolCounters;
use crate::sync::{Arc, AtomicU8, Condvar, Mutex, Ordering, SPIN_BUDGET, Spin};
use crate::trace::{CallSpan, in_span};

// PENDING: queued (or handed to a worker that has not claimed it yet).
const PENDING: u8 = 0;
// RUNNING: a worker owns the closure and is running it.
const RUNNING: u8 = 1;
// COMPLETING: the worker is delivering the outcome: freeing the slot, then storing it. No
// user code runs in this state, so whoever waits for DONE waits a few instructions.
const COMPLETING: u8 = 2;
// DONE: the outcome is in the cell (or was dropped by the worker, if ORPHANED).
const DONE: u8 = 3;
// ABANDONED: the caller cancelled it before it started; it never runs, no outcome comes.
const ABANDONED: u8 = 4;
// ORPHANED (a flag on PENDING or RUNNING): nobody will take the outcome — the caller timed
// out or dropped its handle. The worker drops the outcome before it frees the slot.
const ORPHANED: u8 = 8;
// TIMED_OUT (a flag beside ORPHANED on RUNNING): the caller gave up at its deadline, not by
// dropping its handle, so the task's `on_expire` callbacks fire — by the caller, or by the
// worker if it gets there first — before the slot is freed.
const TIMED_OUT: u8 = 16;

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

/// The caller's view of a task: what `execute`, `join` and a [`TaskHandle`] wait on.
///
/// [`TaskHandle`]: crate::TaskHandle
pub(crate) trait Awaited<T>: Send + Sync {
    /// Waits until the task is done or abandoned, or until `deadline`; true if it is.
    /// `spin` (the pool's) decides whether to spin before parking, and learns whether the
    /// spin won; without it the wait spins the full budget (for waits known to be short).
    fn wait(&self, deadline: Option<Instant>, spin: Option<&SpinPolicy>) -> bool;

    /// True once the task is done or abandoned.
    fn is_finished(&self) -> bool;

    /// PENDING → ABANDONED, dropping the closure; false if it was not pending (or had been
    /// orphaned).
    fn abandon(&self) -> bool;

    /// The caller stops waiting for a task that may still run: RUNNING or PENDING gains
    /// ORPHANED, so the worker drops the outcome inside the compartment. False if the
    /// outcome is already being delivered (COMPLETING or DONE): the caller takes it instead.
    fn orphan(&self) -> bool;

    /// [`orphan`](Awaited::orphan) because the caller's deadline passed: on success the
    /// task's `on_expire` callbacks fire (here, unless the worker already took them).
    fn give_up(&self) -> bool;

    /// The async form of [`wait`](Awaited::wait): true if the task is done or abandoned;
    /// otherwise `waker` is kept (replacing an earlier one that would wake another task)
    /// and woken once the outcome is published.
    fn poll_finished(&self, waker: &Waker) -> bool;

    /// The outcome once [`wait`](Awaited::wait) returned true.
    fn take(&self, shared: &Shared) -> Result<T, BulkheadError>;

    /// Detaches (the handle is dropped): orphans the task, or, if its outcome is delivered
    /// or being delivered, drops that on the calling thread.
    fn detach(&self);
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
    outcome: Mutex<Outcome<T>>,
    done: Condvar,
    /// What `Deadline::on_expire` registered, fired if the caller gives up.
    expiry: Expiry,
    /// Whether a value is a failure (a fallible task's `Err`): counted as `failed`, not
    /// `completed`. Never, for a plain task.
    is_failure: fn(&T) -> bool,
}

impl<F, T> HasExpiry for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn expiry(&self) -> &Expiry {
        &self.expiry
    }
}

/// The outcome cell, and beside it the waker of an async caller (no allocation of its own:
/// a task nobody awaits pays 16 bytes of `None`).
struct Outcome<T> {
    value: Option<Result<T, BulkheadError>>,
    waker: Option<Waker>,
}

impl<F, T> Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// When it was submitted (admitted).
    pub(crate) fn submitted(&self) -> Instant {
        self.submitted
    }

    pub(crate) fn new(f: F, submitted: Instant, deadline: Option<Instant>, span: CallSpan) -> Self {
        Self {
            state: AtomicU8::new(PENDING),
            submitted,
            deadline,
            span,
            func: Mutex::new(Some(f)),
            outcome: Mutex::new(Outcome {
                value: None,
                waker: None,
            }),
            done: Condvar::new(),
            expiry: Expiry::new(),
            is_failure: |_| false,
        }
    }

    /// The task's values that `is_failure` picks out are counted as `failed`.
    pub(crate) fn counting_failures(mut self, is_failure: fn(&T) -> bool) -> Self {
        self.is_failure = is_failure;
        self
    }

    /// True if the task returned a value that counts as a failure.
    fn failed(&self, outcome: &std::thread::Result<T>) -> bool {
        outcome.as_ref().is_ok_and(|value| (self.is_failure)(value))
    }

    /// PENDING (orphaned or not) → RUNNING (keeping the flag): the claim of a worker, or of
    /// a discard. Acquire/Release: the winner owns the closure, whose captured state the
    /// submitting thread published.
    fn claim(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & !ORPHANED != PENDING {
                return false;
            }
            let next = RUNNING | (s & ORPHANED);
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    fn take_func(&self) -> Option<F> {
        self.func.lock().take()
    }

    /// The one way a claimed task ends: `outcome` is its value, its panic, or the error it
    /// was discarded with (already counted, `counted == true`).
    ///
    /// DELIVER: RUNNING → COMPLETING wins the outcome for the caller; the slot is freed
    /// before the outcome is published (promise 5). ORPHANED: the caller is gone; the outcome
    /// is dropped first, while the task still holds its slot, so a slow `Drop` counts
    /// against the compartment — then the slot is freed.
    ///
    /// EXPIRY: a caller that gave up at its deadline (TIMED_OUT) gets its `on_expire`
    /// callbacks fired before the slot is freed — by the worker here if the caller has not
    /// taken them yet, else the worker waits for the caller's firing to end — so a cancel
    /// never reaches the worker's next task. Delivered outcomes and dropped handles disarm
    /// them: they never fire.
    fn finish(&self, shared: &Shared, outcome: std::thread::Result<T>) {
        let delivered =
            self.state
                .compare_exchange(RUNNING, COMPLETING, Ordering::AcqRel, Ordering::Acquire);
        if let Err(state) = delivered {
            // RUNNING|ORPHANED (|TIMED_OUT).
            if state & TIMED_OUT != 0 {
                self.expiry.fire_or_wait();
            } else {
                self.expiry.disarm();
            }
            let (panicked, failed) = (outcome.is_err(), self.failed(&outcome));
            drop_quietly(Some(outcome));
            shared.task_finished_detached(panicked, failed);
            self.state.store(DONE, Ordering::Release);
            return;
        }
        self.expiry.disarm();
        let failed = self.failed(&outcome);
        let outcome = shared.task_finished(outcome, failed);
        self.publish(outcome);
    }

    /// COMPLETING → DONE with `outcome` in the cell; wakes the caller, a blocked one
    /// through the condvar, an async one through its waker — both after the lock is
    /// released, so a waker that polls at once finds the outcome and no lock held.
    fn publish(&self, outcome: Result<T, BulkheadError>) {
        let mut cell = self.outcome.lock();
        cell.value = Some(outcome);
        // Release: a waiter that sees DONE without the lock (spinning) sees the outcome.
        self.state.store(DONE, Ordering::Release);
        let waker = cell.waker.take();
        drop(cell);
        self.done.notify_one();
        if let Some(waker) = waker {
            // A runtime's waker is not ours to let unwind into the worker's books.
            let _ = catch_unwind(AssertUnwindSafe(|| waker.wake()));
        }
    }

    /// Runs the claimed closure with the task's instrumentation around it: span, queue
    /// wait, [`crate::Deadline`], run time, events.
    fn run_claimed(self: &Arc<Self>, shared: &Shared, f: F) -> std::thread::Result<T> {
        in_span(&self.span, || {
            let started = shared.task_started(self.submitted);
            let deadline =
                crate::deadline::enter_task(self.deadline, Arc::clone(self) as Arc<dyn HasExpiry>);
            let call = crate::limit::enter_call();
            let outcome = catch_unwind(AssertUnwindSafe(f));
            let overloaded = call.finish();
            drop(deadline);
            // TASK END: the one spot where it has stopped.
            shared.task_stopped(
                started,
                outcome.is_err(),
                self.failed(&outcome),
                self.deadline,
                overloaded,
            );
            outcome
        })
    }
}

/// Ends a claimed task as panicked if the worker unwinds before the task has its outcome.
struct Unwinding<'a, F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    task: &'a Task<F, T>,
    shared: &'a Shared,
}

impl<F, T> Drop for Unwinding<'_, F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn drop(&mut self) {
        let why: Box<dyn std::any::Any + Send> = Box::new(
            "the bulkhead's instrumentation around the task unwound (a panicking tracing subscriber?)",
        );
        self.task.finish(self.shared, Err(why));
    }
}

/// Drops a closure that will never run, or an outcome nobody will take; a panic in its
/// destructor must not take down the thread that is keeping the books.
fn drop_quietly<X>(x: Option<X>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(x)));
}

impl<F, T> Job for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Arc<Self>, shared: &Shared) {
        if !self.claim() {
            // The caller cancelled it or timed out; it already freed the slot.
            return;
        }
        let Some(f) = self.take_func() else {
            // Unreachable: the closure is taken only by the claim's winner.
            self.finish(
                shared,
                Err(Box::new("bulkheads: a claimed task had no closure")),
            );
            return;
        };
        if shared.admission.load().is_shutdown_now() {
            drop_quietly(Some(f));
            shared.task_discarded();
            self.finish_discarded(shared, shared.shutdown_error());
            return;
        }
        // A fleet-wide budget (feature `redis`): its lease, held while the task runs.
        let lease = match shared.global_lease(self.deadline) {
            Ok(lease) => lease,
            Err(error) => {
                drop_quietly(Some(f));
                shared.task_refused_globally();
                self.finish_discarded(shared, error);
                return;
            }
        };
        // TASK START. The closure's own panic is caught inside `run_claimed`; the guard is
        // for anything else that unwinds between the claim and the outcome (a tracing
        // subscriber panicking as the span is entered, say). Without it the task stayed
        // RUNNING forever with its slot taken, and an `execute` without a timeout waited for
        // ever (regression test in tests/tracing.rs). A guard rather than a second
        // `catch_unwind` around the value: the outcome then passes through no extra frame,
        // which matters for tasks that return megabytes by value on a small stack.
        let guard = Unwinding {
            task: &*self,
            shared,
        };
        let outcome = self.run_claimed(shared, f);
        std::mem::forget(guard);
        // Given back before the outcome is published: a caller that has its result can count
        // on the lease being free for its next call.
        lease.release();
        self.finish(shared, outcome);
    }

    fn discard(&self, shared: &Shared, error: BulkheadError) -> bool {
        if !self.claim() {
            return false;
        }
        drop_quietly(self.take_func());
        shared.task_discarded();
        self.finish_discarded(shared, error);
        true
    }

    fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) & !ORPHANED == PENDING
    }
}

impl<F, T> Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// PENDING or RUNNING gains `flags` (ORPHANED, and TIMED_OUT for a caller that gave up
    /// at its deadline); see [`Awaited::orphan`].
    fn orphan_with(&self, flags: u8) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            match s {
                PENDING | RUNNING => {}
                // Already orphaned, or abandoned: nothing will be delivered to anyone.
                _ if s & ORPHANED != 0 || s == ABANDONED => return true,
                // COMPLETING or DONE: the outcome is (about to be) in the cell.
                _ => return false,
            }
            match self
                .state
                .compare_exchange(s, s | flags, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// A claimed task that never ran ends with `error`; its slot was freed by
    /// [`Shared::task_discarded`].
    fn finish_discarded(&self, _shared: &Shared, error: BulkheadError) {
        if self
            .state
            .compare_exchange(RUNNING, COMPLETING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.publish(Err(error));
        } else {
            // Orphaned: nobody takes the error.
            self.state.store(DONE, Ordering::Release);
        }
    }
}

impl<F, T> Awaited<T> for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn wait(&self, deadline: Option<Instant>, policy: Option<&SpinPolicy>) -> bool {
        // Spin before parking, when a spin can win (see `spin.rs`).
        let budget = policy.map_or(SPIN_BUDGET, SpinPolicy::budget);
        if !budget.is_zero() {
            let mut spin = Spin::new(deadline, budget);
            loop {
                if self.is_finished() {
                    if let Some(policy) = policy {
                        policy.spun(true);
                    }
                    return true;
                }
                if !spin.turn() {
                    break;
                }
            }
            if let Some(policy) = policy {
                policy.spun(false);
            }
        }
        let mut cell = self.outcome.lock();
        loop {
            if self.is_finished() {
                return true;
            }
            match deadline {
                None => self.done.wait(&mut cell),
                Some(deadline) => {
                    if self.done.wait_until(&mut cell, deadline).timed_out() {
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
        if self
            .state
            .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        drop_quietly(self.take_func());
        true
    }

    fn orphan(&self) -> bool {
        self.orphan_with(ORPHANED)
    }

    fn give_up(&self) -> bool {
        if !self.orphan_with(ORPHANED | TIMED_OUT) {
            return false;
        }
        self.expiry.fire();
        true
    }

    fn detach(&self) {
        if self.orphan() {
            return;
        }
        // Being delivered or delivered: drop the outcome here, on the caller's thread, not
        // later on whichever thread lets go of the task last. COMPLETING lasts a few
        // instructions with no user code in it.
        self.wait(None, None);
        let outcome = self.outcome.lock().value.take();
        drop(outcome);
    }

    fn poll_finished(&self, waker: &Waker) -> bool {
        if self.is_finished() {
            return true;
        }
        let mut cell = self.outcome.lock();
        // Under the lock `publish` stores DONE with: either it has (the outcome is here), or
        // it will find this waker.
        if self.is_finished() {
            return true;
        }
        match &cell.waker {
            Some(kept) if kept.will_wake(waker) => {}
            _ => {
                let old = cell.waker.replace(waker.clone());
                drop(cell);
                // The old waker belongs to a task the handle has moved away from.
                drop(old);
            }
        }
        false
    }

    fn take(&self, shared: &Shared) -> Result<T, BulkheadError> {
        if self.state.load(Ordering::Acquire) == ABANDONED {
            return Err(BulkheadError::Cancelled {
                name: shared.name.clone(),
            });
        }
        // Only the one owner of the handle takes, once; the cell is always full at DONE.
        self.outcome
            .lock()
            .value
            .take()
            .unwrap_or_else(|| Err(shared.shutdown_error()))
    }
}

/// The task's books: what each ending of a task does to the counters, the admission word
/// and the events.
impl Shared {
    /// A task ran: free its slot, count it, and turn a panic into the caller's error.
    pub(crate) fn task_finished<T>(
        &self,
        outcome: std::thread::Result<T>,
        failed: bool,
    ) -> Result<T, BulkheadError> {
        // Count the outcome before freeing the slot: whoever sees the pool quiet (the
        // release is ordered before their acquire load of the word) sees the books complete.
        let outcome = match outcome {
            Ok(value) => {
                let counter = if failed {
                    &self.counters.failed
                } else {
                    &self.counters.completed
                };
                PoolCounters::bump(counter);
                Ok(value)
            }
            Err(payload) => {
                PoolCounters::bump(&self.counters.panicked);
                Err(BulkheadError::Panicked {
                    name: self.name.clone(),
                    message: panic_message(&*payload),
                    payload: PanicPayload::new(payload),
                })
            }
        };
        self.admission.release();
        outcome
    }

    /// A task ran and nobody is left to take its outcome (already dropped): count it and
    /// free the slot.
    pub(crate) fn task_finished_detached(&self, panicked: bool, failed: bool) {
        let counter = if panicked {
            &self.counters.panicked
        } else if failed {
            &self.counters.failed
        } else {
            &self.counters.completed
        };
        PoolCounters::bump(counter);
        self.admission.release();
    }

    /// A task that never started was discarded (shutdown_now, no worker).
    pub(crate) fn task_discarded(&self) {
        PoolCounters::bump(&self.counters.cancelled);
        self.admission.release();
        self.listeners.emit(&self.name, EventKind::Cancelled);
    }

    /// A worker is about to run a task submitted at `submitted`: record its queue wait.
    pub(crate) fn task_started(&self, submitted: Instant) -> Instant {
        let started = Instant::now();
        let queue_wait = started.saturating_duration_since(submitted);
        self.queue_wait.record(queue_wait);
        self.listeners
            .emit(&self.name, EventKind::Started { queue_wait });
        started
    }

    /// A task started at `started` has returned or panicked: record its run time.
    /// `failed`: a fallible task's `Err`. `deadline` and `overloaded` (a
    /// [`crate::limit::report_overload`] inside) decide whether an adaptive pool counts it as
    /// a drop.
    pub(crate) fn task_stopped(
        &self,
        started: Instant,
        panicked: bool,
        failed: bool,
        deadline: Option<Instant>,
        overloaded: bool,
    ) {
        let run_time = started.elapsed();
        self.run_time.record(run_time);
        self.spin.observe_run(run_time);
        self.adapt(started, run_time, deadline, overloaded);
        let kind = if panicked {
            EventKind::Panicked { run_time }
        } else if failed {
            EventKind::Failed { run_time }
        } else {
            EventKind::Finished { run_time }
        };
        self.listeners.emit(&self.name, kind);
    }

    /// A task that never started was cancelled through its handle.
    pub(crate) fn task_cancelled(&self) {
        self.task_discarded();
        self.queue.cancelled();
    }

    /// The caller's wait protocol: waits for `task` until `deadline`; on timeout cancels it
    /// if it has not started (EXPIRED), or orphans it if it has (the worker drops its
    /// outcome inside the compartment), or — if its outcome is being delivered at that very
    /// instant — takes the outcome after all.
    pub(crate) fn wait_deadline<T>(
        &self,
        task: &dyn Awaited<T>,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<T, BulkheadError> {
        if task.wait(deadline, Some(&self.spin)) {
            return task.take(self);
        }
        if task.abandon() {
            // EXPIRED: it was still queued; it frees its slot now and never runs.
            PoolCounters::bump(&self.counters.expired);
            self.admission.release();
            self.listeners.emit(&self.name, EventKind::Expired);
            self.queue.cancelled();
        } else if !task.give_up() {
            // It finished in the instant between the deadline and the give-up: the value is
            // here (or a few instructions away), so hand it over rather than report a timeout.
            task.wait(None, None);
            return task.take(self);
        }
        PoolCounters::bump(&self.counters.timed_out);
        self.listeners
            .emit(&self.name, EventKind::TimedOut { waited: timeout });
        Err(BulkheadError::Timeout {
            name: self.name.clone(),
            timeout,
        })
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
    use loom::sync::atomic::{AtomicBool, AtomicUsize};
    use loom::thread;

    /// A task's value that records, when it is dropped, how many tasks the pool held then.
    struct Witness {
        shared: Arc<Shared>,
        in_flight_at_drop: std::sync::Arc<AtomicUsize>,
    }

    impl Drop for Witness {
        fn drop(&mut self) {
            let held = self.shared.admission.load().in_flight();
            self.in_flight_at_drop.store(held + 1, Ordering::SeqCst);
        }
    }

    type BoxedTask<T> = Task<Box<dyn FnOnce() -> T + Send>, T>;

    struct Fixture<T> {
        _pool: ThreadPoolBulkhead,
        shared: Arc<Shared>,
        ran: std::sync::Arc<AtomicBool>,
        task: Arc<BoxedTask<T>>,
    }

    fn fixture_with<T: Send + 'static>(
        make: impl FnOnce(Arc<Shared>) -> Box<dyn FnOnce() -> T + Send>,
    ) -> Fixture<T> {
        fixture_until(make, None)
    }

    /// A fixture whose task has `deadline` (what `Deadline::current` reads inside it).
    fn fixture_until<T: Send + 'static>(
        make: impl FnOnce(Arc<Shared>) -> Box<dyn FnOnce() -> T + Send>,
        deadline: Option<Instant>,
    ) -> Fixture<T> {
        let pool = ThreadPoolBulkhead::new("model", PoolConfig::new(1)).unwrap();
        let shared = Arc::clone(&pool.shared);
        assert!(matches!(
            shared.admission.try_admit(),
            Admit::Admitted { .. }
        ));
        shared.counters.submitted.fetch_add(1, Ordering::Relaxed);
        let ran = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&ran);
        let inner = make(Arc::clone(&shared));
        let f: Box<dyn FnOnce() -> T + Send> = Box::new(move || {
            flag.store(true, Ordering::Relaxed);
            inner()
        });
        Fixture {
            _pool: pool,
            shared,
            ran,
            task: Arc::new(Task::new(f, Instant::now(), deadline, CallSpan::default())),
        }
    }

    fn fixture() -> Fixture<u32> {
        fixture_with(|_| Box::new(|| 7))
    }

    fn worker<T: Send + 'static>(fx: &Fixture<T>) -> thread::JoinHandle<()> {
        let job: Arc<dyn Job> = fx.task.clone();
        let shared = Arc::clone(&fx.shared);
        thread::spawn(move || job.run(&shared))
    }

    /// Exactly one outcome, and the slot freed exactly once.
    fn books_balance<T>(fx: &Fixture<T>) {
        let c = &fx.shared.counters;
        let outcomes = c.completed.load(Ordering::Relaxed)
            + c.failed.load(Ordering::Relaxed)
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

    /// ORPHANED: a caller that gives up while the worker delivers. Whoever ends up dropping
    /// the value, the worker never drops it after freeing the slot (the bug of the
    /// `strong_count == 1` test this state replaced), and the caller gets the value or a
    /// timeout, never a lost outcome.
    #[test]
    fn orphan_vs_delivery() {
        loom::model(|| {
            let dropped_at = std::sync::Arc::new(AtomicUsize::new(0));
            let witness_drop = std::sync::Arc::clone(&dropped_at);
            let fx = fixture_with(move |shared| {
                Box::new(move || Witness {
                    shared,
                    in_flight_at_drop: witness_drop,
                })
            });
            // The worker claims before the caller gives up: the task is RUNNING or later.
            let job: Arc<dyn Job> = fx.task.clone();
            let shared = Arc::clone(&fx.shared);
            let w = thread::spawn(move || job.run(&shared));
            let caller_gave_up = fx.task.orphan();
            w.join().unwrap();
            books_balance(&fx);
            if caller_gave_up && fx.ran.load(Ordering::Relaxed) {
                // Dropped by the worker, with the slot still held (in flight 1, plus 1).
                assert_eq!(dropped_at.load(Ordering::SeqCst), 2);
            } else if !caller_gave_up {
                let value = fx.task.take(&fx.shared).expect("the value is delivered");
                drop(value);
                assert_eq!(dropped_at.load(Ordering::SeqCst), 1);
            }
        });
    }

    /// A task that registers an `on_expire` callback as it starts, counting its runs.
    fn expiring_fixture() -> (Fixture<u32>, std::sync::Arc<AtomicUsize>) {
        let fired = std::sync::Arc::new(AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&fired);
        // Far enough away that registering never finds it expired: the model is about the
        // caller giving up, not about the clock.
        let deadline = Instant::now() + Duration::from_secs(3600);
        let fx = fixture_until(
            move |_| {
                Box::new(move || {
                    let d = crate::Deadline::current().expect("the task has a deadline");
                    d.on_expire(move || {
                        count.fetch_add(1, Ordering::SeqCst);
                    });
                    7
                })
            },
            Some(deadline),
        );
        (fx, fired)
    }

    /// `on_expire`: the caller timing out races the task's start, its registration and its
    /// completion. The callback fires iff the caller observed a timeout of a task that ran
    /// (one expired in the queue never registered anything), at most once, and — whoever
    /// fired it — before the worker freed the slot (the join below then sees it done).
    #[test]
    fn expiry_vs_completion() {
        loom::model(|| {
            let (fx, fired) = expiring_fixture();
            let w = worker(&fx);
            let past = Instant::now();
            let outcome = fx
                .shared
                .wait_deadline(&*fx.task, Some(past), Duration::ZERO);
            w.join().unwrap();
            books_balance(&fx);
            let ran = fx.ran.load(Ordering::Relaxed);
            let fired = fired.load(Ordering::SeqCst);
            assert!(fired <= 1, "fired {fired} times");
            assert_eq!(
                fired == 1,
                outcome.is_err() && ran,
                "outcome {outcome:?}, ran {ran}"
            );
            assert_eq!(fx.task.expiry.has_fired(), fired == 1);
        });
    }

    /// A dropped handle is not a caller giving up at a deadline: the callback never fires.
    #[test]
    fn expiry_vs_detach() {
        loom::model(|| {
            let (fx, fired) = expiring_fixture();
            let w = worker(&fx);
            fx.task.detach();
            w.join().unwrap();
            books_balance(&fx);
            assert_eq!(fired.load(Ordering::SeqCst), 0);
        });
    }

    /// `join` with no deadline never misses the worker's wake-up.
    #[test]
    fn join_vs_worker() {
        loom::model(|| {
            let fx = fixture();
            let w = worker(&fx);
            assert!(fx.task.wait(None, None));
            assert_eq!(fx.task.take(&fx.shared).unwrap(), 7);
            w.join().unwrap();
            books_balance(&fx);
        });
    }

    /// A handle dropped while the worker runs or delivers: one outcome, no hang.
    #[test]
    fn detach_vs_worker() {
        loom::model(|| {
            let fx = fixture();
            let w = worker(&fx);
            fx.task.detach();
            w.join().unwrap();
            books_balance(&fx);
            assert!(fx.ran.load(Ordering::Relaxed));
        });
    }

    /// An async caller's waker: counts its wakes, and whether the outcome was already
    /// published at each one.
    struct CountingWaker {
        task: Arc<BoxedTask<u32>>,
        wakes: AtomicUsize,
        woken_early: AtomicBool,
    }

    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            if !self.task.is_finished() {
                self.woken_early.store(true, Ordering::SeqCst);
            }
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting_waker(fx: &Fixture<u32>) -> (std::sync::Arc<CountingWaker>, Waker) {
        let counter = std::sync::Arc::new(CountingWaker {
            task: Arc::clone(&fx.task),
            wakes: AtomicUsize::new(0),
            woken_early: AtomicBool::new(false),
        });
        let waker = Waker::from(std::sync::Arc::clone(&counter));
        (counter, waker)
    }

    /// A poll racing the worker's delivery: a pending poll is woken exactly once, after
    /// the outcome is published; a ready one is never woken.
    #[test]
    fn poll_vs_completion() {
        loom::model(|| {
            let fx = fixture();
            let (counter, waker) = counting_waker(&fx);
            let w = worker(&fx);
            let ready = fx.task.poll_finished(&waker);
            w.join().unwrap();
            let wakes = counter.wakes.load(Ordering::SeqCst);
            assert_eq!(wakes, usize::from(!ready), "ready at once: {ready}");
            assert!(!counter.woken_early.load(Ordering::SeqCst));
            assert!(fx.task.poll_finished(&waker));
            assert_eq!(fx.task.take(&fx.shared).unwrap(), 7);
            books_balance(&fx);
        });
    }

    /// The handle moves to another async task between two polls while the worker
    /// delivers: only the waker kept last is woken (the first only if the outcome came
    /// before the second poll), once, and never before the outcome is there.
    #[test]
    fn waker_replaced_vs_completion() {
        loom::model(|| {
            let fx = fixture();
            let (first, first_waker) = counting_waker(&fx);
            let (second, second_waker) = counting_waker(&fx);
            let w = worker(&fx);
            let first_ready = fx.task.poll_finished(&first_waker);
            let second_ready = first_ready || fx.task.poll_finished(&second_waker);
            w.join().unwrap();
            let (a, b) = (
                first.wakes.load(Ordering::SeqCst),
                second.wakes.load(Ordering::SeqCst),
            );
            if first_ready {
                assert_eq!((a, b), (0, 0));
            } else if second_ready {
                // Published between the two polls: the first waker was the one kept.
                assert_eq!((a, b), (1, 0));
            } else {
                assert_eq!((a, b), (0, 1), "the replaced waker must not be woken");
            }
            assert!(!first.woken_early.load(Ordering::SeqCst));
            assert!(!second.woken_early.load(Ordering::SeqCst));
            assert_eq!(fx.task.take(&fx.shared).unwrap(), 7);
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
            assert!(fx.task.wait(None, None));
            let outcome = fx.task.take(&fx.shared);
            assert_eq!(outcome.is_ok(), ran);
        });
    }
}
