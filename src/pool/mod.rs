//! [`ThreadPoolBulkhead`]: a dedicated, bounded pool of OS threads for one dependency.

pub(crate) mod admission;
pub(crate) mod handle;
pub(crate) mod queue;
pub(crate) mod worker;

use std::fmt;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::config::PoolConfig;
use crate::error::{BulkheadError, ConfigError, PanicPayload, panic_message};
use crate::event::{Event, EventKind, Listeners};
use crate::histogram::Histogram;
use crate::stats::{PoolCounters, PoolStats};
use crate::sync::Arc;
use crate::sync::plain::{AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

use admission::{Admission, Admit, State};
pub use handle::TaskHandle;
use handle::{Slot, Task};
use queue::Queue;

pub(crate) use admission::MAX_IN_FLIGHT;

/// Where `await_termination` stands: threads being joined, threads joined.
#[derive(Debug, Default)]
struct Termination {
    reaping: bool,
    joined: bool,
}

/// Waits on `condvar` until notified or `deadline`; false if the deadline passed.
fn wait_until<T>(
    condvar: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<Instant>,
) -> bool {
    match deadline {
        None => {
            condvar.wait(guard);
            true
        }
        Some(deadline) => !condvar.wait_until(guard, deadline).timed_out(),
    }
}

/// State shared by the pool's face, its workers and its task handles.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) admission: Admission,
    pub(crate) counters: PoolCounters,
    /// Time from submission to start, per task.
    queue_wait: Histogram,
    /// Time a task ran, per task.
    run_time: Histogram,
    pub(crate) listeners: Listeners,
    rejection_log: crate::trace::RejectionLog,
    config: PoolConfig,
    pub(crate) queue: Queue,
    pub(crate) keep_alive: Duration,
    pub(crate) thread_prefix: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) next_worker_id: AtomicUsize,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Spawns still to refuse: a test hook for the OS refusing a thread.
    pub(crate) failing_spawns: AtomicUsize,
    termination: Mutex<Termination>,
    terminated: Condvar,
}

impl Shared {
    pub(crate) fn shutdown_error(&self) -> BulkheadError {
        BulkheadError::Shutdown {
            name: self.name.clone(),
        }
    }

    /// A task ran: free its slot, count it, and turn a panic into the caller's error.
    pub(crate) fn task_finished<T>(
        &self,
        outcome: std::thread::Result<T>,
    ) -> Result<T, BulkheadError> {
        // Count the outcome before freeing the slot: whoever sees the pool quiet (the
        // release is ordered before their acquire load of the word) sees the books complete.
        let outcome = match outcome {
            Ok(value) => {
                PoolCounters::bump(&self.counters.completed);
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
    pub(crate) fn task_finished_detached(&self, panicked: bool) {
        let counter = if panicked {
            &self.counters.panicked
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
    pub(crate) fn task_stopped(&self, started: Instant, panicked: bool) {
        let run_time = started.elapsed();
        self.run_time.record(run_time);
        let kind = if panicked {
            EventKind::Panicked { run_time }
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

    /// Waits for `slot` until `deadline`; on timeout cancels it if it has not started.
    pub(crate) fn wait_deadline<T>(
        &self,
        slot: &dyn Slot<T>,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<T, BulkheadError> {
        if slot.wait(deadline) {
            return slot.take(self);
        }
        if slot.abandon() {
            // EXPIRED: it was still queued; it frees its slot now and never runs.
            PoolCounters::bump(&self.counters.expired);
            self.admission.release();
            self.listeners.emit(&self.name, EventKind::Expired);
            self.queue.cancelled();
        } else if slot.is_finished() {
            // It finished in the instant between the deadline and the cancel: the value is
            // here, so hand it over rather than report a timeout.
            return slot.take(self);
        }
        PoolCounters::bump(&self.counters.timed_out);
        self.listeners
            .emit(&self.name, EventKind::TimedOut { waited: timeout });
        Err(BulkheadError::Timeout {
            name: self.name.clone(),
            timeout,
        })
    }

    /// Joins every worker thread of a terminated pool (no worker can start after
    /// termination, so these are all there will be), then tells `await_termination`.
    fn reap(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
        self.termination.lock().joined = true;
        self.terminated.notify_all();
    }

    /// A worker left; wake the next one (shutdown) and anyone awaiting termination.
    pub(crate) fn worker_exited(&self, after: State) {
        if !after.is_shutdown() {
            return;
        }
        if after.live() > 0 {
            // Belt and braces: each exit during shutdown wakes one more idle worker, so the
            // chain reaches every worker even if a wake-up was consumed by a busy one.
            self.queue.wake(1);
        } else {
            let _guard = self.termination.lock();
            self.terminated.notify_all();
        }
    }

    /// Makes sure the task just queued will be served, after the OS refused a thread (`err`)
    /// or while the task may be counting on a worker whose spawn is in flight.
    ///
    /// Waits for every spawn in flight to get its verdict, then checks invariant (I). If a
    /// worker is missing it starts one; if the OS refuses that too, the task is served by the
    /// workers that exist (it waits its turn), or — with no worker at all — completed with a
    /// [`BulkheadError::Spawn`] that is returned to the caller. Never waits for a task, only
    /// for thread starts, so no caller can hang here.
    ///
    /// Regression (tests/faults.rs): a task admitted while another caller's spawn was about
    /// to be refused counted on that worker, reached the queue after the refusing caller had
    /// failed what was queued, and waited forever with no worker alive.
    fn ensure_served(
        self: &Arc<Self>,
        task: &Arc<dyn handle::Job>,
        mut refused: Option<std::io::Error>,
    ) -> Result<(), BulkheadError> {
        loop {
            let s = self.admission.load();
            match self.admission.needs_worker(s) {
                Some(false) => return Ok(()),
                // A worker's thread is being started: its verdict decides.
                None => std::thread::yield_now(),
                Some(true) => {
                    if let Some(err) = &refused {
                        if s.live() > 0 {
                            // Serve from the workers that exist: the task waits its turn.
                            return Ok(());
                        }
                        let error = BulkheadError::Spawn {
                            name: self.name.clone(),
                            kind: err.kind(),
                            message: err.to_string(),
                        };
                        // A worker may have claimed it meanwhile; then it is served.
                        return if task.discard(self, error.clone()) {
                            Err(error)
                        } else {
                            Ok(())
                        };
                    }
                    if self.admission.try_add_worker(s) {
                        if let Err(err) = worker::spawn(self) {
                            self.admission.spawn_failed();
                            refused = Some(err);
                        }
                    }
                }
            }
        }
    }
}

/// A bulkhead that runs each call on a dedicated, bounded pool of OS threads.
///
/// At most `max_threads + queue_capacity` calls are admitted at once; the next is rejected
/// at once with [`BulkheadError::Rejected`], without allocating, locking or blocking.
/// Workers start lazily, up to `max_threads`, and a call waits in the FIFO queue only while
/// every worker is busy. A panicking task gives its caller [`BulkheadError::Panicked`]; the
/// worker survives.
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let inventory = ThreadPoolBulkhead::new("inventory", PoolConfig::new(4).queue_capacity(2))?;
/// let stock = inventory.execute(|| 42)?;
/// assert_eq!(stock, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Rejection when the compartment is full:
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("payment", PoolConfig::new(1))?;
/// let (tx, rx) = std::sync::mpsc::channel::<()>();
/// let busy = pool.submit(move || rx.recv().ok())?; // takes the only slot
/// let err = pool.execute(|| ()).unwrap_err();
/// assert!(err.is_rejected());
/// tx.send(()).unwrap();
/// busy.join()?;
/// assert_eq!(pool.stats().rejected, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Closures must be `Send`:
///
/// ```compile_fail
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("x", PoolConfig::new(1)).unwrap();
/// let not_send = std::rc::Rc::new(1);
/// pool.execute(move || *not_send);
/// ```
pub struct ThreadPoolBulkhead {
    /// Padded to its own cache line: a manager hands out one `Arc<ThreadPoolBulkhead>` to
    /// every caller, and the `Arc`'s reference count (written on every clone and drop) sits
    /// just before this field. Unpadded, every call's read of `shared` would miss on the line
    /// the other threads' clones keep stealing.
    shared: CachePadded<Arc<Shared>>,
}

impl fmt::Debug for ThreadPoolBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPoolBulkhead")
            .field("name", &&*self.shared.name)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl ThreadPoolBulkhead {
    /// Creates a pool called `name`. No thread starts until the first call.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field if the configuration is invalid (see
    /// [`PoolConfig::validate`]).
    pub fn new(name: impl Into<String>, config: PoolConfig) -> Result<Self, ConfigError> {
        let name: String = name.into();
        config.validate(&name)?;
        let core = config.core_threads_value();
        let capacity = config.capacity();
        let thread_prefix = config
            .thread_name_prefix
            .clone()
            .unwrap_or_else(|| name.clone());
        let shared = Shared {
            name: Arc::from(name),
            admission: Admission::new(config.max_threads, core, capacity),
            counters: PoolCounters::default(),
            queue_wait: Histogram::default(),
            run_time: Histogram::default(),
            listeners: Listeners::default(),
            rejection_log: crate::trace::RejectionLog::default(),
            queue: Queue::new(),
            keep_alive: config.keep_alive,
            thread_prefix,
            stack_size: config.stack_size,
            next_worker_id: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            failing_spawns: AtomicUsize::new(0),
            termination: Mutex::new(Termination::default()),
            terminated: Condvar::new(),
            config,
        };
        Ok(Self {
            shared: CachePadded::new(Arc::new(shared)),
        })
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// Runs `f` on one of the pool's threads and waits for its result, at most the
    /// configured [`default_timeout`](PoolConfig::default_timeout) if there is one.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] at once if the pool is full, [`BulkheadError::Shutdown`]
    /// if it is shut down, [`BulkheadError::Panicked`] if `f` panicked,
    /// [`BulkheadError::Timeout`] if the default timeout passed, and
    /// [`BulkheadError::Spawn`] if the OS refused the only worker thread it needed.
    pub fn execute<F, T>(&self, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.shared.config.default_timeout {
            Some(timeout) => self.execute_timeout(timeout, f),
            None => {
                let task = self.start(f, None)?;
                task.wait(None);
                task.take(&self.shared)
            }
        }
    }

    /// Runs `f` on one of the pool's threads and waits at most `timeout`, counted from this
    /// call, for its result.
    ///
    /// If the time runs out while `f` is still queued, it is cancelled: it frees its slot at
    /// once, never runs, and is counted as `expired`. If `f` has started it keeps its slot and
    /// runs to its end (threads cannot be killed); its result is dropped.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Timeout`] when the time is up, and the errors of
    /// [`execute`](ThreadPoolBulkhead::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("payment", PoolConfig::new(1))?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let err = pool
    ///     .execute_timeout(Duration::from_millis(20), move || rx.recv().ok())
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// tx.send(()).unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_timeout<F, T>(&self, timeout: Duration, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // The clock starts at submission, not when the task starts.
        let deadline = Instant::now().checked_add(timeout);
        let task = self.start(f, deadline)?;
        self.shared.wait_deadline(&*task, deadline, timeout)
    }

    /// Submits `f` and returns a [`TaskHandle`] to join, join with a timeout, or cancel.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] at once if the pool is full, [`BulkheadError::Shutdown`]
    /// if it is shut down, [`BulkheadError::Spawn`] if the OS refused the only worker thread
    /// it needed.
    pub fn submit<F, T>(&self, f: F) -> Result<TaskHandle<T>, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let submitted_at = Instant::now();
        let task = self.start(f, None)?;
        Ok(TaskHandle::new(
            task,
            Arc::clone(&self.shared),
            submitted_at,
        ))
    }

    /// Admits `f`, queues it, and starts a worker for it if every worker is assigned.
    /// `deadline` is what [`crate::Deadline::current`] will read inside `f`.
    fn start<F, T>(&self, f: F, deadline: Option<Instant>) -> Result<Arc<Task<F, T>>, BulkheadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = &self.shared;
        let (spawn, racing_spawn) = match shared.admission.try_admit() {
            Admit::Admitted {
                spawn,
                running,
                racing_spawn,
            } => {
                shared.counters.observe_running(running);
                (spawn, racing_spawn)
            }
            // REJECTED: no allocation (the name is shared), no lock, no wait.
            Admit::Full => {
                PoolCounters::bump(&shared.counters.rejected);
                shared.listeners.emit(&shared.name, EventKind::Rejected);
                let capacity = shared.admission.capacity();
                shared.rejection_log.rejected(&shared.name, capacity);
                return Err(BulkheadError::Rejected {
                    name: shared.name.clone(),
                    capacity,
                });
            }
            // Counted apart from `rejected`: a deploy's refusals must not look like a full
            // compartment to an alert on `rejected`.
            Admit::Shutdown => {
                PoolCounters::bump(&shared.counters.shutdown_refused);
                shared
                    .listeners
                    .emit(&shared.name, EventKind::ShutdownRefused);
                return Err(shared.shutdown_error());
            }
        };
        PoolCounters::bump(&shared.counters.submitted);
        shared.listeners.emit(
            &shared.name,
            EventKind::Permitted {
                waited: Duration::ZERO,
            },
        );
        let task = Arc::new(Task::new(
            f,
            Instant::now(),
            deadline,
            crate::trace::call_span(&shared.name),
        ));
        // The queue has no bound of its own: the bound lives in the admission word.
        shared.queue.push(task.clone());
        if spawn {
            // The worker itself reports success (`spawn_succeeded`) as its first act, before
            // it can retire; only a refusal is reported here.
            if let Err(err) = worker::spawn(shared) {
                shared.admission.spawn_failed();
                shared.ensure_served(&(task.clone() as Arc<dyn handle::Job>), Some(err))?;
            }
        } else if racing_spawn {
            // Rare: admitted while another worker's thread was being started.
            shared.ensure_served(&(task.clone() as Arc<dyn handle::Job>), None)?;
        }
        Ok(task)
    }

    /// A snapshot of the pool's gauges and counters.
    pub fn stats(&self) -> PoolStats {
        let shared = &self.shared;
        let state = shared.admission.load();
        let config = &shared.config;
        PoolStats::new(
            &shared.name,
            config.max_threads,
            config.core_threads_value(),
            config.queue_capacity,
            state.live(),
            shared.admission.gauges(state),
            state.is_shutdown(),
            &shared.counters,
            (shared.queue_wait.summary(), shared.run_time.summary()),
        )
    }

    /// Calls `listener` for every [`Event`] of this pool from now on: admitted, rejected,
    /// started (with its queue wait), finished or panicked (with its run time), timed out,
    /// expired, cancelled. A rejection fires exactly one event. See [`Event`] for where
    /// listeners run; with none set, events cost one relaxed load.
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.shared.listeners.add(Arc::new(listener));
    }

    pub(crate) fn add_listener(&self, listener: crate::event::Listener) {
        self.shared.listeners.add(listener);
    }

    /// Stops admitting calls. Queued and running tasks still run to their end; then the
    /// workers exit. Idempotent, and never blocks: use
    /// [`await_termination`](ThreadPoolBulkhead::await_termination) to wait.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("batch", PoolConfig::new(1).queue_capacity(1))?;
    /// let queued = pool.submit(|| 7)?;
    /// pool.shutdown();
    /// assert!(pool.execute(|| 8).unwrap_err().is_shutdown());
    /// assert_eq!(queued.join()?, 7);
    /// assert!(pool.await_termination(Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&self) {
        let before = self.shared.admission.shutdown(false);
        self.wake_workers(before);
    }

    /// Stops admitting calls and discards the queue: every task that has not started
    /// completes with [`BulkheadError::Shutdown`] (counted as `cancelled`). Running tasks run
    /// to their end. Idempotent; never blocks.
    pub fn shutdown_now(&self) {
        let shared = &self.shared;
        let before = shared.admission.shutdown(true);
        for job in shared.queue.drain() {
            job.discard(shared, shared.shutdown_error());
        }
        self.wake_workers(before);
    }

    fn wake_workers(&self, before: State) {
        // One wake-up per worker alive at the moment admission stopped; no worker can start
        // after that moment.
        self.shared.queue.wake(before.live());
    }

    /// True once the pool is shut down and every worker has exited.
    pub fn is_terminated(&self) -> bool {
        self.shared.admission.load().is_terminated()
    }

    /// True once [`shutdown`](ThreadPoolBulkhead::shutdown) or
    /// [`shutdown_now`](ThreadPoolBulkhead::shutdown_now) was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.admission.load().is_shutdown()
    }

    /// Waits until the pool is shut down and every worker thread has exited, at most
    /// `timeout`. Returns false at the timeout (for example when a task never returns, or
    /// when the pool was never shut down).
    ///
    /// "Exited" is strict: the threads have been joined, so their thread-local destructors
    /// have run. The joins happen on a short-lived helper thread, so that a thread slow to
    /// exit cannot hold this call past its timeout; concurrent callers all wait for the same
    /// joins.
    pub fn await_termination(&self, timeout: Duration) -> bool {
        let shared = &self.shared;
        let deadline = Instant::now().checked_add(timeout);
        let mut termination = shared.termination.lock();
        // The books first: every worker has uncounted itself.
        while !termination.joined && !shared.admission.load().is_terminated() {
            if !wait_until(&shared.terminated, &mut termination, deadline) {
                return termination.joined || shared.admission.load().is_terminated();
            }
        }
        if !termination.reaping && shared.threads.lock().is_empty() {
            // Never started a thread, or already joined them all: nothing to wait for.
            termination.reaping = true;
            termination.joined = true;
        }
        if !termination.reaping {
            termination.reaping = true;
            drop(termination);
            let reaper_shared = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name(format!("{}-reaper", shared.thread_prefix))
                .spawn(move || reaper_shared.reap());
            if spawned.is_err() {
                // No thread for the reaper: join here, past the deadline if need be.
                shared.reap();
            }
            termination = shared.termination.lock();
        }
        while !termination.joined {
            if !wait_until(&shared.terminated, &mut termination, deadline) {
                return termination.joined;
            }
        }
        true
    }

    /// Makes the next `n` worker spawns fail as if the OS refused a thread. For tests of the
    /// failure path; not part of the stable API.
    #[doc(hidden)]
    pub fn inject_spawn_failures(&self, n: usize) {
        self.shared.failing_spawns.store(n, Ordering::Relaxed);
    }
}

impl Drop for ThreadPoolBulkhead {
    /// Shuts the pool down gracefully without waiting: queued tasks still run and every
    /// handle still gets its outcome; the workers exit when the queue is empty.
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<ThreadPoolBulkhead>();
    is::<TaskHandle<u32>>();
    is::<BulkheadError>();
    fn unwind_safe<T: std::panic::UnwindSafe + std::panic::RefUnwindSafe>() {}
    unwind_safe::<BulkheadError>();
}
