//! The capacity counter: one atomic word that keeps the pool's books.
//!
//! See `README.md` beside this file for the state machine and why it is safe. In short, the
//! word packs
//!
//! ```text
//!  63        62         61..47      46..32          31..0
//! [NOW]  [SHUTDOWN]  [spawning]  [live workers]  [in flight]
//! ```
//!
//! `in flight` counts admitted tasks that have neither finished nor been cancelled: the ones
//! running and the ones queued. Because a task queues only while every worker is busy, the
//! gauges follow from it: `running = min(in_flight, max_threads)` (after a lowered
//! `max_threads`, `min(in_flight, max(max_threads, live))`: workers above the new limit
//! finish what they started) and
//! `queued = in_flight - running`. Admission, the spawn-or-not decision, keep-alive
//! retirement, cancellation and shutdown are each one compare-and-swap on this word, so no
//! snapshot ever shows more than the compartment holds.
//!
//! `live` counts workers from the moment admission decides to start one; `spawning` counts
//! those whose thread the OS has not yet granted or refused. The invariant (I):
//!
//! ```text
//!     live >= min(in_flight, max_threads)
//! ```
//!
//! holds whenever no spawn is in flight, so every admitted task that should be running has a
//! worker, and a queued task always has a worker that will reach it. A refused spawn breaks
//! it for a moment; every caller whose task may have counted on that worker (it was
//! admitted while `spawning > 0`) waits for the verdict and repairs (I) before it returns
//! (see `Shared::ensure_served`).

use crate::sync::{AtomicU64, AtomicUsize, Ordering, fence};

const INFLIGHT_BITS: u32 = 32;
const INFLIGHT_MASK: u64 = (1 << INFLIGHT_BITS) - 1;
const LIVE_SHIFT: u32 = INFLIGHT_BITS;
const LIVE_ONE: u64 = 1 << LIVE_SHIFT;
const THREAD_BITS: u32 = 15;
const LIVE_MASK: u64 = ((1 << THREAD_BITS) - 1) << LIVE_SHIFT;
const SPAWNING_SHIFT: u32 = LIVE_SHIFT + THREAD_BITS;
const SPAWNING_ONE: u64 = 1 << SPAWNING_SHIFT;
const SPAWNING_MASK: u64 = ((1 << THREAD_BITS) - 1) << SPAWNING_SHIFT;

/// The most workers the word can count.
pub(crate) const MAX_WORKERS: usize = (1 << THREAD_BITS) - 1;
const SHUTDOWN: u64 = 1 << 62;
const SHUTDOWN_NOW: u64 = 1 << 63;

/// The most tasks the word can count in flight. A capacity above this is unbounded in
/// practice: four billion queued closures (hundreds of gigabytes) do not fit in memory.
pub(crate) const MAX_IN_FLIGHT: usize = INFLIGHT_MASK as usize;

/// One reading of the word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State(u64);

impl State {
    /// Admitted tasks that have neither finished nor been cancelled.
    pub(crate) fn in_flight(self) -> usize {
        (self.0 & INFLIGHT_MASK) as usize
    }

    /// Worker threads started and not yet retired.
    pub(crate) fn live(self) -> usize {
        ((self.0 & LIVE_MASK) >> LIVE_SHIFT) as usize
    }

    /// Workers counted whose thread the OS has not yet granted or refused.
    pub(crate) fn spawning(self) -> usize {
        ((self.0 & SPAWNING_MASK) >> SPAWNING_SHIFT) as usize
    }

    /// `shutdown` or `shutdown_now` was called.
    pub(crate) fn is_shutdown(self) -> bool {
        self.0 & SHUTDOWN != 0
    }

    /// `shutdown_now` was called: tasks not yet started complete with `Shutdown`.
    pub(crate) fn is_shutdown_now(self) -> bool {
        self.0 & SHUTDOWN_NOW != 0
    }

    /// Shut down and every worker gone.
    pub(crate) fn is_terminated(self) -> bool {
        self.is_shutdown() && self.live() == 0
    }
}

/// What [`Admission::try_admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The task holds a slot. When `spawn` is true the caller must start one worker (the
    /// word already counts it) or report the failure through [`Admission::spawn_failed`].
    Admitted {
        /// Start a worker for this task.
        spawn: bool,
        /// The running gauge after this admission, for the peak.
        running: usize,
        /// Another worker's spawn was in flight and this task did not start its own: it
        /// may be counting on a worker the OS has yet to grant, so its caller must check
        /// ([`Admission::needs_worker`]) once the verdict is in.
        racing_spawn: bool,
        /// It queued under a `max_threads` that was raised meanwhile, and the raise may
        /// have missed it: its caller must [`Admission::try_grow`] once it is queued.
        grow: bool,
    },
    /// Every slot is taken.
    Full,
    /// The pool is shut down.
    Shutdown,
}

/// Why a worker asks to retire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// It waited `keep_alive` and no task came.
    TimedOut,
    /// It just finished a task or was woken.
    Woken,
}

/// The pool's books in one atomic word.
#[derive(Debug)]
///
/// The limits can change at run time ([`Admission::set_limits`], `reconfigure`): each is a
/// number read on its own by every decision, so a decision racing a change sees the old
/// limit or the new one and is ordered before or after the change accordingly. What a change
/// cannot do is take back what the word already holds: after lowering, tasks in flight keep
/// their slots and workers above `max_threads` leave as soon as they are between tasks.
pub(crate) struct Admission {
    state: AtomicU64,
    max_threads: AtomicUsize,
    core_threads: AtomicUsize,
    capacity: AtomicUsize,
}

impl Admission {
    /// Books for `max_threads` workers admitting `capacity` tasks at once.
    ///
    /// `capacity` is clamped to [`MAX_IN_FLIGHT`]; `max_threads` must be validated to fit
    /// the live field (at most 65,535).
    pub(crate) fn new(max_threads: usize, core_threads: usize, capacity: usize) -> Self {
        debug_assert!((1..=MAX_WORKERS).contains(&max_threads));
        debug_assert!(core_threads <= max_threads);
        Self {
            state: AtomicU64::new(0),
            max_threads: AtomicUsize::new(max_threads),
            core_threads: AtomicUsize::new(core_threads),
            capacity: AtomicUsize::new(capacity.min(MAX_IN_FLIGHT)),
        }
    }

    /// How many tasks may be in flight at once (`max_threads + queue_capacity`, clamped to
    /// [`MAX_IN_FLIGHT`]).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The most workers the pool runs at once.
    pub(crate) fn max_threads(&self) -> usize {
        self.max_threads.load(Ordering::Relaxed)
    }

    /// Workers that stay once started.
    pub(crate) fn core_threads(&self) -> usize {
        self.core_threads.load(Ordering::Relaxed)
    }

    /// New limits (validated by the caller). Raising `max_threads` leaves the workers the
    /// queued tasks now need to [`Admission::try_grow`].
    ///
    /// The order of the stores keeps every reader's view safe: when growing, capacity comes
    /// last (no task is admitted beyond what the new thread count will serve before the
    /// threads may grow); when shrinking, capacity comes first (admission tightens before
    /// the thread limit does).
    pub(crate) fn set_limits(&self, max_threads: usize, core_threads: usize, capacity: usize) {
        debug_assert!((1..=MAX_WORKERS).contains(&max_threads));
        debug_assert!(core_threads <= max_threads);
        let capacity = capacity.min(MAX_IN_FLIGHT);
        if capacity >= self.capacity() {
            self.max_threads.store(max_threads, Ordering::SeqCst);
            self.core_threads.store(core_threads, Ordering::SeqCst);
            self.capacity.store(capacity, Ordering::SeqCst);
        } else {
            self.capacity.store(capacity, Ordering::SeqCst);
            self.core_threads.store(core_threads, Ordering::SeqCst);
            self.max_threads.store(max_threads, Ordering::SeqCst);
        }
    }

    /// Counts the workers that tasks already in flight lack under the current
    /// `max_threads` (after it was raised: queued tasks start on new workers at once), and
    /// returns how many the caller must start. Zero when shut down or nothing is missing.
    pub(crate) fn try_grow(&self) -> usize {
        // Pairs with the fence of a racing admission (see `try_admit`).
        fence(Ordering::SeqCst);
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let state = State(s);
            let want = state.in_flight().min(self.max_threads());
            if state.is_shutdown() || state.live() >= want {
                return 0;
            }
            let n = (want - state.live()) as u64;
            match self.state.compare_exchange_weak(
                s,
                s + n * (LIVE_ONE + SPAWNING_ONE),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return n as usize,
                Err(actual) => s = actual,
            }
        }
    }

    /// The word now. Acquire pairs with the release half of every update, so a reader that
    /// sees `live == 0` after shutdown also sees everything the last worker did.
    pub(crate) fn load(&self) -> State {
        State(self.state.load(Ordering::Acquire))
    }

    /// The gauges `(running, queued)` of one reading.
    ///
    /// A task queues only while every worker the limit allows is busy, so the tasks in
    /// flight beyond `max_threads` are queued — except after `max_threads` was lowered,
    /// while workers above the new limit finish the tasks they had started: those are
    /// running, so the bound is the live workers then.
    pub(crate) fn gauges(&self, s: State) -> (usize, usize) {
        let running = s.in_flight().min(self.max_threads().max(s.live()));
        (running, s.in_flight() - running)
    }

    /// Takes a slot for a new task if one is free: the single decision behind promise 1.
    ///
    /// On success the word also counts the worker the task needs when every live worker is
    /// already assigned (`in_flight >= live`) and the pool may still grow.
    pub(crate) fn try_admit(&self) -> Admit {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let state = State(s);
            if state.is_shutdown() {
                return Admit::Shutdown;
            }
            let in_flight = state.in_flight();
            if in_flight >= self.capacity() {
                return Admit::Full;
            }
            let live = state.live();
            let max_threads = self.max_threads();
            // Every live worker is (or is about to be) busy with one of the tasks in flight:
            // this task needs a worker of its own, if the pool may still grow.
            let spawn = in_flight >= live && live < max_threads;
            let next = s + 1 + if spawn { LIVE_ONE + SPAWNING_ONE } else { 0 };
            // AcqRel: the admission must be ordered with shutdown's fetch_or on the same
            // word (a task admitted "before" shutdown is one the drain will see).
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    // Queued (every worker busy) under the limit read above: if the limit
                    // was raised meanwhile, the raise's `try_grow` may have read the word
                    // before this task was in it. The fences pair with the one in
                    // `try_grow`: of the two, at least one sees the other.
                    let queued = !spawn && in_flight >= live;
                    let grow = queued && {
                        fence(Ordering::SeqCst);
                        self.max_threads() > max_threads
                    };
                    return Admit::Admitted {
                        spawn,
                        running: (in_flight + 1).min(max_threads.max(live)),
                        racing_spawn: !spawn && state.spawning() > 0,
                        grow,
                    };
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// Frees one slot: a task finished, or was cancelled before it started.
    ///
    /// Release: the slot is freed before the task's result is published, and a caller that
    /// sees the result and submits again must find the slot free.
    pub(crate) fn release(&self) -> State {
        let prev = self.state.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            State(prev).in_flight() > 0,
            "release without a task in flight"
        );
        State(prev - 1)
    }

    /// The OS granted the thread of a worker counted as spawning.
    pub(crate) fn spawn_succeeded(&self) {
        let prev = self.state.fetch_sub(SPAWNING_ONE, Ordering::AcqRel);
        debug_assert!(State(prev).spawning() > 0);
    }

    /// The OS refused the thread of a worker counted as spawning: uncount it.
    pub(crate) fn spawn_failed(&self) -> State {
        let prev = self
            .state
            .fetch_sub(LIVE_ONE + SPAWNING_ONE, Ordering::AcqRel);
        debug_assert!(State(prev).live() > 0 && State(prev).spawning() > 0);
        State(prev - LIVE_ONE - SPAWNING_ONE)
    }

    /// Whether the tasks in flight lack a worker, once every spawn has its verdict:
    /// `Some(true)` if (I) is broken, `Some(false)` if it holds, `None` while spawns are in
    /// flight (ask again).
    pub(crate) fn needs_worker(&self, s: State) -> Option<bool> {
        let confirmed = s.live() - s.spawning();
        if confirmed >= s.in_flight().min(self.max_threads()) {
            Some(false)
        } else if s.spawning() > 0 {
            None
        } else {
            Some(true)
        }
    }

    /// Counts one more (spawning) worker if (I) is broken and no spawn is in flight; the
    /// caller must then start it. False if the state changed or no worker is needed.
    pub(crate) fn try_add_worker(&self, s: State) -> bool {
        if self.needs_worker(s) != Some(true) || s.live() >= self.max_threads() {
            return false;
        }
        self.state
            .compare_exchange(
                s.0,
                s.0 + LIVE_ONE + SPAWNING_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Counts one more (spawning) worker for [`PoolConfig::prestart`] while the pool has
    /// fewer than `core_threads` and is not shut down; the caller must then start it. It
    /// will be idle, which (I) allows: an idle worker is never needed, only waiting.
    ///
    /// [`PoolConfig::prestart`]: crate::PoolConfig::prestart
    pub(crate) fn try_add_idle_worker(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let state = State(s);
            if state.is_shutdown() || state.live() >= self.core_threads() {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s + LIVE_ONE + SPAWNING_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Asks whether an idle worker may exit, and if so uncounts it in the same step.
    ///
    /// A worker may exit when it is surplus (`in_flight < live`, so (I) still holds after it
    /// leaves) and either the pool is shut down, or it waited `keep_alive` in vain and the pool
    /// has more than `core_threads` workers. And a worker between tasks exits whenever the
    /// pool has more than `max_threads` workers (the limit was lowered), queued tasks or not:
    /// (I) asks for no more than `max_threads`, and no task may start while as many run. Deciding this on the same word that admission
    /// updates is what keeps a task from being stranded by a worker that timed out at the
    /// instant the task was admitted (tokio issue 8056).
    ///
    /// Returns the state after the exit, or `None` if the worker must stay.
    pub(crate) fn try_retire(&self, why: Idle) -> Option<State> {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let state = State(s);
            let live = state.live();
            let over_limit = live > self.max_threads();
            let may_leave =
                state.is_shutdown() || (why == Idle::TimedOut && live > self.core_threads());
            if !over_limit && (!may_leave || state.in_flight() >= live) {
                return None;
            }
            let next = s - LIVE_ONE;
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(State(next)),
                Err(actual) => s = actual,
            }
        }
    }

    /// Uncounts a worker that is exiting for a reason of its own (its loop unwound).
    pub(crate) fn worker_lost(&self) -> State {
        let prev = self.state.fetch_sub(LIVE_ONE, Ordering::AcqRel);
        State(prev - LIVE_ONE)
    }

    /// Stops admission; with `now`, tasks not yet started will complete with `Shutdown`.
    /// Returns the state before.
    pub(crate) fn shutdown(&self, now: bool) -> State {
        let bits = if now {
            SHUTDOWN | SHUTDOWN_NOW
        } else {
            SHUTDOWN
        };
        State(self.state.fetch_or(bits, Ordering::AcqRel))
    }
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;

    /// Admits one task as the pool does, granting any worker it starts.
    fn admit(a: &Admission) -> Admit {
        let admit = a.try_admit();
        if let Admit::Admitted { spawn: true, .. } = admit {
            a.spawn_succeeded();
        }
        admit
    }

    fn admitted(a: &Admission) -> bool {
        matches!(admit(a), Admit::Admitted { .. })
    }

    fn ok(spawn: bool, running: usize) -> Admit {
        Admit::Admitted {
            spawn,
            running,
            racing_spawn: false,
            grow: false,
        }
    }

    #[test]
    fn admits_exactly_capacity() {
        let a = Admission::new(2, 2, 5);
        for _ in 0..5 {
            assert!(admitted(&a));
        }
        assert_eq!(a.try_admit(), Admit::Full);
        assert_eq!(a.gauges(a.load()), (2, 3));
        a.release();
        assert!(admitted(&a));
        assert_eq!(a.try_admit(), Admit::Full);
    }

    #[test]
    fn spawns_only_when_every_worker_is_assigned() {
        let a = Admission::new(3, 3, 10);
        assert_eq!(admit(&a), ok(true, 1));
        assert_eq!(admit(&a), ok(true, 2));
        a.release();
        a.release();
        // Two idle workers: the next two tasks reuse them.
        assert_eq!(admit(&a), ok(false, 1));
        assert_eq!(admit(&a), ok(false, 2));
        assert_eq!(admit(&a), ok(true, 3));
        // At max_threads: queue, never spawn.
        assert_eq!(admit(&a), ok(false, 3));
        assert_eq!(a.load().live(), 3);
    }

    #[test]
    fn a_task_admitted_during_a_spawn_is_told_to_check_it() {
        let a = Admission::new(1, 1, 4);
        assert_eq!(a.try_admit(), ok(true, 1));
        // The first worker's thread is not granted yet: the second task counts on it.
        assert_eq!(
            a.try_admit(),
            Admit::Admitted {
                spawn: false,
                running: 1,
                racing_spawn: true,
                grow: false,
            }
        );
        assert_eq!(a.needs_worker(a.load()), None);
        // The OS refuses it: both tasks are without a worker, and one may be added.
        let s = a.spawn_failed();
        assert_eq!((s.live(), s.spawning(), s.in_flight()), (0, 0, 2));
        assert_eq!(a.needs_worker(s), Some(true));
        assert!(a.try_add_worker(s));
        assert!(!a.try_add_worker(a.load()), "one spawn in flight is enough");
        a.spawn_succeeded();
        assert_eq!(a.needs_worker(a.load()), Some(false));
    }

    #[test]
    fn retirement_keeps_a_worker_for_every_task() {
        let a = Admission::new(2, 0, 4);
        assert!(admitted(&a));
        assert!(admitted(&a));
        assert_eq!(a.load().live(), 2);
        // Both workers are needed: neither may leave.
        assert_eq!(a.try_retire(Idle::TimedOut), None);
        a.release();
        assert_eq!(a.try_retire(Idle::TimedOut).map(State::live), Some(1));
        assert_eq!(a.try_retire(Idle::TimedOut), None);
        a.release();
        assert_eq!(a.try_retire(Idle::TimedOut).map(State::live), Some(0));
    }

    #[test]
    fn core_threads_stay_after_keep_alive() {
        let a = Admission::new(2, 1, 2);
        assert!(admitted(&a));
        assert!(admitted(&a));
        a.release();
        a.release();
        assert!(a.try_retire(Idle::TimedOut).is_some());
        assert_eq!(a.try_retire(Idle::TimedOut), None);
        assert_eq!(a.try_retire(Idle::Woken), None);
    }

    #[test]
    fn shutdown_rejects_and_lets_surplus_workers_go() {
        let a = Admission::new(2, 2, 2);
        assert!(admitted(&a));
        a.shutdown(false);
        assert_eq!(a.try_admit(), Admit::Shutdown);
        // The one task in flight still has its worker.
        assert_eq!(a.try_retire(Idle::Woken), None);
        a.release();
        let s = a.try_retire(Idle::Woken).expect("may leave");
        assert!(s.is_terminated());
    }

    #[test]
    fn huge_capacity_neither_overflows_nor_aborts() {
        let a = Admission::new(1, 1, usize::MAX);
        for _ in 0..1000 {
            assert!(admitted(&a));
        }
        assert_eq!(a.gauges(a.load()), (1, 999));
    }
}

/// Loom models of the admission word: `RUSTFLAGS="--cfg bulkheads_loom" cargo test --lib --release loom`.
#[cfg(all(test, bulkheads_loom))]
mod loom_models {
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    fn holds_invariant(a: &Admission, s: State) {
        assert!(s.in_flight() <= a.capacity(), "over capacity: {s:?}");
        assert!(
            s.live() >= s.in_flight().min(a.max_threads()),
            "a task without a worker: {s:?}"
        );
    }

    /// Raising the limits while a task is admitted: whichever limits the admission read, a
    /// task that should run gets a worker (from its own spawn or from `try_grow`), and the
    /// pool never counts more workers than the new limit.
    #[test]
    fn raise_vs_admission() {
        loom::model(|| {
            let a = Arc::new(Admission::new(1, 0, 2));
            assert!(matches!(a.try_admit(), Admit::Admitted { spawn: true, .. }));
            a.spawn_succeeded();
            let grower = {
                let a = Arc::clone(&a);
                thread::spawn(move || {
                    a.set_limits(2, 0, 3);
                    let n = a.try_grow();
                    for _ in 0..n {
                        a.spawn_succeeded();
                    }
                })
            };
            let admitted = a.try_admit();
            match admitted {
                Admit::Admitted { spawn: true, .. } => a.spawn_succeeded(),
                Admit::Admitted { grow: true, .. } => {
                    for _ in 0..a.try_grow() {
                        a.spawn_succeeded();
                    }
                }
                _ => {}
            }
            grower.join().unwrap();
            assert!(matches!(admitted, Admit::Admitted { .. }), "{admitted:?}");
            let s = a.load();
            assert_eq!(s.spawning(), 0);
            assert_eq!(s.in_flight(), 2);
            assert_eq!(
                s.live(),
                2,
                "two tasks, a limit of two: a worker each {s:?}"
            );
        });
    }

    /// Lowering the limits while a task is admitted and an idle worker decides whether to
    /// leave: invariant (I) holds under the new limit, nothing admitted is lost, and no more
    /// tasks are in flight than the larger of the two capacities allowed.
    #[test]
    fn shrink_vs_admission_and_worker_exit() {
        loom::model(|| {
            let a = Arc::new(Admission::new(2, 0, 3));
            for _ in 0..2 {
                assert!(matches!(a.try_admit(), Admit::Admitted { spawn: true, .. }));
                a.spawn_succeeded();
            }
            a.release(); // one worker idle, one busy
            let shrinker = {
                let a = Arc::clone(&a);
                thread::spawn(move || a.set_limits(1, 0, 1))
            };
            let worker = {
                let a = Arc::clone(&a);
                thread::spawn(move || a.try_retire(Idle::Woken).is_some())
            };
            let admitted = a.try_admit();
            shrinker.join().unwrap();
            let retired = worker.join().unwrap();
            let s = a.load();
            let expected = 1 + usize::from(matches!(admitted, Admit::Admitted { .. }));
            assert_eq!(s.in_flight(), expected);
            assert_eq!(s.live(), 2 - usize::from(retired));
            assert!(
                s.live() >= s.in_flight().min(a.max_threads()),
                "a task without a worker: {s:?}"
            );
            if !retired {
                // It stayed: on its next look it is over the new limit and leaves, unless
                // the tasks in flight need it.
                let again = a.try_retire(Idle::Woken).is_some();
                assert!(again, "a worker above the lowered limit stayed: {s:?}");
            }
        });
    }

    /// A worker's keep-alive exit racing a new task's admission: the task either reuses the
    /// worker (which then may not leave) or spawns its own (because the worker left).
    #[test]
    fn admission_vs_keep_alive_exit() {
        loom::model(|| {
            let a = Arc::new(Admission::new(2, 0, 2));
            assert!(matches!(a.try_admit(), Admit::Admitted { spawn: true, .. }));
            a.spawn_succeeded();
            a.release(); // one idle worker
            let submitter = {
                let a = Arc::clone(&a);
                thread::spawn(move || a.try_admit())
            };
            let retired = a.try_retire(Idle::TimedOut).is_some();
            let admitted = submitter.join().unwrap();
            match admitted {
                Admit::Admitted { spawn, .. } => assert_eq!(spawn, retired),
                other => panic!("not admitted: {other:?}"),
            }
            holds_invariant(&a, a.load());
        });
    }

    /// Two submitters racing for the last slot, and a shutdown: never over capacity, and
    /// nothing admitted after the shutdown bit.
    #[test]
    fn racing_submitters_and_shutdown() {
        loom::model(|| {
            let a = Arc::new(Admission::new(1, 1, 2));
            assert!(matches!(a.try_admit(), Admit::Admitted { spawn: true, .. }));
            a.spawn_succeeded();
            let submitters: Vec<_> = (0..2)
                .map(|_| {
                    let a = Arc::clone(&a);
                    thread::spawn(move || a.try_admit())
                })
                .collect();
            let before = a.shutdown(false);
            let outcomes: Vec<_> = submitters.into_iter().map(|t| t.join().unwrap()).collect();
            let admitted = outcomes
                .iter()
                .filter(|o| matches!(o, Admit::Admitted { .. }))
                .count();
            assert!(admitted <= 1, "two tasks took the last slot");
            let after = a.load();
            // Everything admitted was admitted before the bit: it shows in `before`.
            assert_eq!(after.in_flight(), before.in_flight());
            holds_invariant(&a, after);
        });
    }

    /// Shutdown with one task running and one idle worker: both workers get out, in any
    /// order of finishing, waking and exiting, and the last one out sees termination.
    #[test]
    fn shutdown_lets_every_worker_go() {
        loom::model(|| {
            let a = Arc::new(Admission::new(2, 2, 2));
            assert!(matches!(a.try_admit(), Admit::Admitted { spawn: true, .. }));
            a.spawn_succeeded();
            assert!(matches!(a.try_admit(), Admit::Admitted { spawn: true, .. }));
            a.spawn_succeeded();
            a.release(); // worker 2 is idle, worker 1 still runs its task
            let busy = {
                let a = Arc::clone(&a);
                thread::spawn(move || {
                    a.release();
                    a.try_retire(Idle::Woken)
                })
            };
            a.shutdown(false);
            let idle = a.try_retire(Idle::Woken);
            let busy = busy.join().unwrap();
            // The idle one may only have been refused while the busy one still held a task;
            // then it retries after its next wake-up, as the worker loop does.
            let idle = idle.or_else(|| a.try_retire(Idle::Woken));
            let busy = busy.or_else(|| a.try_retire(Idle::Woken));
            assert!(idle.is_some() && busy.is_some());
            assert!(a.load().is_terminated());
        });
    }

    /// A refused spawn racing a second admission (max one worker): the second task counted
    /// on the refused worker. Whatever the interleaving, once both callers have run the
    /// repair protocol of `Shared::ensure_served` (the second spawn is granted), every task
    /// in flight has a worker. Regression for the stranded task found by tests/faults.rs.
    #[test]
    fn refused_spawn_vs_racing_admission() {
        loom::model(|| {
            let a = Arc::new(Admission::new(1, 1, 2));
            // The repair protocol, with the OS granting every further thread.
            fn repair(a: &Admission) {
                loop {
                    let s = a.load();
                    match a.needs_worker(s) {
                        Some(false) => return,
                        None => thread::yield_now(),
                        Some(true) => {
                            if a.try_add_worker(s) {
                                a.spawn_succeeded();
                            }
                        }
                    }
                }
            }
            let second = {
                let a = Arc::clone(&a);
                thread::spawn(move || match a.try_admit() {
                    Admit::Admitted { spawn: true, .. } => a.spawn_succeeded(),
                    Admit::Admitted {
                        racing_spawn: true, ..
                    } => repair(&a),
                    Admit::Admitted { .. } => {}
                    other => panic!("not admitted: {other:?}"),
                })
            };
            match a.try_admit() {
                Admit::Admitted { spawn: true, .. } => {
                    a.spawn_failed(); // the OS refuses the first thread
                    repair(&a);
                }
                Admit::Admitted {
                    racing_spawn: true, ..
                } => repair(&a),
                Admit::Admitted { .. } => {}
                other => panic!("not admitted: {other:?}"),
            }
            second.join().unwrap();
            let s = a.load();
            assert_eq!(s.spawning(), 0);
            assert_eq!(s.in_flight(), 2);
            assert_eq!(s.live(), 1, "both tasks have the one worker: {s:?}");
        });
    }
}
