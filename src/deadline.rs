//! [`Deadline`]: the time a call has left, readable from inside the task.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::sync::plain::{AtomicUsize, Ordering};
use crate::sync::{Arc, Condvar, Mutex};

thread_local! {
    /// The deadline of the task this thread is running, if it has one.
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// The pool task this thread is running, whose [`Expiry`] `on_expire` registers with.
    static TASK: RefCell<Option<Arc<dyn HasExpiry>>> = const { RefCell::new(None) };
}

/// The deadline of the call a pool's worker is running: the instant its caller stops
/// waiting.
///
/// A call made with [`execute_timeout`](crate::ThreadPoolBulkhead::execute_timeout) (or
/// with a pool's [`default_timeout`](crate::PoolConfig::default_timeout)) has a deadline
/// that starts at submission, so time spent in the queue is already gone when the task
/// starts. A started task cannot be stopped from outside — threads cannot be killed — but it
/// can stop itself: set a socket or statement timeout from
/// [`remaining_checked`](Deadline::remaining_checked) instead of a fixed one, and check [`is_expired`](Deadline::is_expired) between steps of
/// a long loop. Then a task whose caller has given up frees its worker soon after, instead of
/// holding it for as long as a sick dependency takes.
///
/// [`Deadline::current`] reads it anywhere on the worker's thread, however deep in the call
/// stack (a database wrapper, an HTTP client), with no parameter to thread through. It is
/// `None` outside a task, and inside a task without a deadline (`execute` without a default
/// timeout, `submit`).
///
/// # Nested calls inherit it
///
/// A task with a deadline that calls another bulkhead gets at most that deadline there too:
/// [`ThreadPoolBulkhead::execute`](crate::ThreadPoolBulkhead::execute) without a timeout
/// waits until the outer deadline (as
/// [`execute_until`](crate::ThreadPoolBulkhead::execute_until) would), `execute_timeout`,
/// `execute_until` and a pool's `default_timeout` are cut to it when they end later, and a
/// semaphore's `call` / `call_timeout` wait for a permit no longer than it. The outer
/// caller stops waiting at its deadline whatever the inner call does, so a longer inner
/// wait would only hold two compartments for a result nobody takes. `submit` is left
/// alone: its handle may outlive the task that made it.
///
/// # Reaching the server
///
/// Two tools let the deadline end the work, not only the wait:
/// [`remaining_checked`](Deadline::remaining_checked) for a statement or socket timeout that
/// cannot silently turn into "no timeout", and [`on_expire`](Deadline::on_expire) to fire a
/// driver's cancel token at the moment the caller gives up.
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

    /// The time left, or `None` once the deadline has passed: never a zero.
    ///
    /// Use it, not [`remaining`](Deadline::remaining), wherever a zero means "no limit":
    /// PostgreSQL's `statement_timeout = 0` disables the timeout, and so does a zero in
    /// many drivers' socket and lock timeouts — so a task that starts after its deadline
    /// would run unbounded. `None` makes the caller decide (return at once: its caller has
    /// gone).
    ///
    /// Beware rounding as well: `as_millis()` of 0.4 ms is 0. For a setting in whole
    /// milliseconds use [`remaining_millis_checked`](Deadline::remaining_millis_checked),
    /// which rounds up.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{Deadline, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead};
    ///
    /// let db = ThreadPoolBulkhead::new("db", PoolConfig::new(1))?;
    /// let left = db.execute_timeout(Duration::from_secs(5), || {
    ///     Deadline::current().and_then(|d| d.remaining_checked())
    /// })?;
    /// assert!(left.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(5)));
    ///
    /// // Past its deadline (here a call given no time at all): None, where `remaining`
    /// // says zero — which `statement_timeout` would read as "no limit".
    /// let sem = SemaphoreBulkhead::new("sem", SemaphoreConfig::new(1))?;
    /// let late = sem.call_timeout(Duration::ZERO, || {
    ///     let d = Deadline::current().unwrap();
    ///     (d.remaining(), d.remaining_checked())
    /// })?;
    /// assert_eq!(late, (Duration::ZERO, None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remaining_checked(self) -> Option<Duration> {
        Some(self.remaining()).filter(|left| !left.is_zero())
    }

    /// The time left in whole milliseconds, rounded up (so never 0), or `None` once the
    /// deadline has passed: ready for PostgreSQL's `SET statement_timeout = <ms>`, where
    /// a 0 would mean "no timeout".
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{Deadline, SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let db = SemaphoreBulkhead::new("db", SemaphoreConfig::new(1))?;
    /// let ms = db.call_timeout(Duration::from_millis(1500), || {
    ///     Deadline::current().and_then(|d| d.remaining_millis_checked())
    /// })?;
    /// assert!(ms.is_some_and(|ms| (1..=1500).contains(&ms)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remaining_millis_checked(self) -> Option<u64> {
        let left = self.remaining_checked()?;
        let millis = left.as_nanos().div_ceil(1_000_000);
        Some(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// Registers `f` to run if the caller of the task running on this thread gives up on
    /// it while it still runs — to fire a driver's cancel token, close a socket, or
    /// unblock a wait — so the worker is free at the deadline, not when the work would
    /// have ended.
    ///
    /// When it runs:
    ///
    /// - **Inside a pool's task** ([`ThreadPoolBulkhead`](crate::ThreadPoolBulkhead),
    ///   [`ConnectionPoolBulkhead`](crate::ConnectionPoolBulkhead)): once the caller's
    ///   `execute_timeout`, `execute_until`, deadline-bound `execute` or
    ///   [`TaskHandle::join_timeout`](crate::TaskHandle::join_timeout) returns `Timeout`
    ///   while the task runs. It runs exactly once, on the caller's thread as it gives up
    ///   (or on the worker's, if the task returns before the caller got to it), never
    ///   with a lock of the bulkhead held, and always before the worker frees the slot and
    ///   takes its next task — so a cancel never lands on the next task's query. It never
    ///   runs when the outcome goes to the caller (the task finished in time), nor when the
    ///   handle was only dropped. Several callbacks run in the order registered.
    /// - **If the deadline has already passed** when `on_expire` is called, `f` runs at
    ///   once, on this thread, before `on_expire` returns (the caller is giving up, or
    ///   gave up; it will not run again later). The same if the caller already gave up.
    /// - **Inside a semaphore's** [`call_timeout`](crate::SemaphoreBulkhead::call_timeout)
    ///   on a thread that is not a pool's worker, it never runs later: the closure runs on
    ///   the caller's own thread, so no caller is left waiting to give up while it runs,
    ///   and a timer thread firing it mid-call would cancel work that someone still waits
    ///   for. Use [`remaining_checked`](Deadline::remaining_checked) there for the driver's
    ///   own timeout. (Inside a pool's task, a semaphore call registers with that task.)
    ///
    /// A panic in `f` is caught and dropped, so it cannot unwind into the bulkhead's books
    /// or the caller's `Timeout`. Keep `f` short, and never make it wait for the task
    /// itself: it delays the caller's `Timeout`, and a worker whose task returned while
    /// `f` runs waits for `f` to end before it takes its next task.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use bulkheads::{Deadline, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let db = ThreadPoolBulkhead::new("db", PoolConfig::new(1))?;
    /// // A "query" that blocks until cancelled, as a driver's would until its cancel token fires.
    /// let (cancel, cancelled) = mpsc::channel::<()>();
    /// let err = db
    ///     .execute_timeout(Duration::from_millis(20), move || {
    ///         Deadline::current().unwrap().on_expire(move || {
    ///             let _ = cancel.send(());
    ///         });
    ///         cancelled.recv().is_ok()
    ///     })
    ///     .unwrap_err();
    /// assert!(err.is_timeout());
    /// // The cancelled "query" returns at once, and the worker is free again: the next
    /// // call runs instead of being rejected.
    /// let bound = std::time::Instant::now() + Duration::from_secs(10);
    /// while db.stats().running > 0 && std::time::Instant::now() < bound {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(db.execute(|| 7)?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_expire(&self, f: impl FnOnce() + Send + 'static) {
        if self.is_expired() {
            run_quietly(Box::new(f));
            return;
        }
        let task = TASK.try_with(|t| t.borrow().clone()).ok().flatten();
        match task {
            Some(task) => task.expiry().register(Box::new(f)),
            // Not in a pool's task: nobody can give up while it runs.
            None => drop_quietly(f),
        }
    }
}

/// Makes `deadline` this thread's current one until the guard drops (also on unwinding),
/// then puts back the one before.
pub(crate) fn enter(deadline: Option<Instant>) -> Entered {
    let before = CURRENT.try_with(|c| c.replace(deadline)).ok().flatten();
    Entered {
        before,
        before_task: None,
        task_set: false,
    }
}

/// As [`enter`], and makes `task` the one whose [`Expiry`] `on_expire` registers with.
pub(crate) fn enter_task(deadline: Option<Instant>, task: Arc<dyn HasExpiry>) -> Entered {
    let mut entered = enter(deadline);
    entered.before_task = TASK.try_with(|t| t.replace(Some(task))).ok().flatten();
    entered.task_set = true;
    entered
}

/// `deadline`, cut to the deadline of the task running on this thread if that ends first:
/// a nested call gets at most its caller's time.
pub(crate) fn within_current(deadline: Option<Instant>) -> Option<Instant> {
    let outer = CURRENT.try_with(Cell::get).ok().flatten();
    match (deadline, outer) {
        (Some(own), Some(outer)) => Some(own.min(outer)),
        (own, outer) => own.or(outer),
    }
}

/// The deadline of the task running on this thread, if any.
pub(crate) fn current_instant() -> Option<Instant> {
    CURRENT.try_with(Cell::get).ok().flatten()
}

/// `wait`, cut to the time left before this thread's task's deadline (zero once past).
pub(crate) fn wait_within_current(wait: Duration) -> Duration {
    current_instant().map_or(wait, |outer| {
        wait.min(outer.saturating_duration_since(Instant::now()))
    })
}

pub(crate) struct Entered {
    before: Option<Instant>,
    before_task: Option<Arc<dyn HasExpiry>>,
    task_set: bool,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.before));
        if self.task_set {
            let before = self.before_task.take();
            // The task's `Arc` is dropped out here, not inside the thread-local's borrow.
            let ours = TASK.try_with(|t| t.replace(before)).ok().flatten();
            drop(ours);
        }
    }
}

/// What a task asked to run if its caller gives up on it ([`Deadline::on_expire`]), and
/// who has run it.
///
/// ```text
///  ARMED(callbacks) ──caller gives up (or the worker finds it orphaned)──▶ FIRING ──▶ FIRED
///      └──worker delivers the outcome to a caller still waiting──▶ DISARMED (dropped unrun)
/// ```
///
/// The side that moves it out of ARMED, under the lock, owns the callbacks; it runs them
/// with the lock released. A worker whose task was orphaned waits for a FIRING by the
/// caller to end before it frees the slot, so a callback (a cancel token fired at a
/// connection) never lands on the worker's next task.
pub(crate) struct Expiry {
    state: Mutex<Hook>,
    fired: Condvar,
    /// Callbacks registered so far. Registering and finishing both happen on the worker's
    /// thread, so the worker reads it without ordering, and a task that registered nothing
    /// — nearly all — ends without taking the lock.
    registered: AtomicUsize,
}

enum Hook {
    // ARMED: the task runs (or has not started); these fire if its caller gives up.
    Armed(Vec<Callback>),
    // FIRING: one side took the callbacks and is running them.
    Firing,
    // FIRED: they have run; one registered now runs at once.
    Fired,
    // DISARMED: the outcome went to its caller; nothing will fire.
    Disarmed,
}

type Callback = Box<dyn FnOnce() + Send>;

impl Expiry {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(Hook::Armed(Vec::new())),
            fired: Condvar::new(),
            registered: AtomicUsize::new(0),
        }
    }

    /// Keeps `f` to run if the caller gives up; runs it now (on this thread) if it already
    /// has; drops it if the outcome was already delivered.
    fn register(&self, f: Callback) {
        self.registered.fetch_add(1, Ordering::Relaxed);
        let mut state = self.state.lock();
        match &mut *state {
            Hook::Armed(callbacks) => callbacks.push(f),
            Hook::Firing | Hook::Fired => {
                drop(state);
                run_quietly(f);
            }
            Hook::Disarmed => {
                drop(state);
                drop_quietly(f);
            }
        }
    }

    /// The caller gave up on a running task: runs what it registered, here, once. Returns
    /// at once if the other side already took the callbacks.
    pub(crate) fn fire(&self) {
        let mut state = self.state.lock();
        let callbacks = match &mut *state {
            Hook::Armed(callbacks) => std::mem::take(callbacks),
            // FIRING, FIRED or DISARMED: the other side has them, or nothing will fire.
            _ => return,
        };
        *state = Hook::Firing;
        drop(state);
        for f in callbacks {
            run_quietly(f);
        }
        let mut state = self.state.lock();
        *state = Hook::Fired;
        drop(state);
        self.fired.notify_all();
    }

    /// The worker found its task orphaned: fires what the caller has not fired yet, and
    /// waits for a firing in progress to end.
    pub(crate) fn fire_or_wait(&self) {
        if self.registered.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.fire();
        let mut state = self.state.lock();
        while matches!(*state, Hook::Firing) {
            self.fired.wait(&mut state);
        }
    }

    /// The worker delivers the outcome to a caller still waiting: nothing will fire; the
    /// callbacks are dropped (outside the lock).
    pub(crate) fn disarm(&self) {
        if self.registered.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut state = self.state.lock();
        let before = std::mem::replace(&mut *state, Hook::Disarmed);
        drop(state);
        if let Hook::Armed(callbacks) = before {
            drop_quietly(callbacks);
        }
    }

    /// True once its callbacks have been taken to run (FIRING or FIRED).
    #[cfg(all(test, bulkheads_loom))]
    pub(crate) fn has_fired(&self) -> bool {
        matches!(*self.state.lock(), Hook::Firing | Hook::Fired)
    }
}

/// Runs a callback; its panic is caught here, so it cannot unwind into the books of the
/// side that fired it.
fn run_quietly(f: Callback) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

fn drop_quietly<X>(x: X) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(x)));
}

/// A task that has an [`Expiry`]: what the thread-local points at while it runs.
pub(crate) trait HasExpiry: Send + Sync {
    fn expiry(&self) -> &Expiry;
}
