//! The pool's queue: FIFO from callers to workers, with the cancelled tasks swept out.
//!
//! A task cancelled while queued (its caller timed out or called `cancel`) frees its slot
//! at once, but it is still in the queue until someone takes it out. When every worker is
//! stuck — the failure this crate exists for — nobody pops, and callers that keep timing
//! out in the queue would leave one dead task behind each, for as long as the workers stay
//! stuck. So the queue is a `VecDeque` under a lock, and a cancellation sweeps the dead
//! tasks out (in order, keeping FIFO) once they outnumber the live ones and a small floor:
//! dead tasks never exceed `max(SWEEP_FLOOR, live)`, and each sweep's cost is paid for by
//! the cancellations that made it necessary.
//!
//! Idle workers spin briefly on a lock-free length before they sleep, as crossbeam's
//! blocking receive does: on a virtual machine a wake-up costs tens of microseconds, more
//! than a tiny task takes. They spin only while such spins have been finding tasks
//! (`spin::Bets`): when the next task comes later than the spin lasts — an async caller
//! woken through its runtime, a trickle — the spin only takes a CPU from whoever is about
//! to submit it.
//!
//! Sleepers form a stack, and a push wakes the *most recently* idle one (LIFO). Which sleeper
//! to wake is policy with consequences: with one condition variable shared by all (FIFO, as
//! parking_lot wakes its waiters), N idle workers under a trickle of one call every T each
//! got a task every N·T, and none ever reached its keep-alive (reproduced: 4 of 4 workers
//! alive with a call every 30 ms and a keep-alive of 200 ms). Waking the last one to sleep
//! keeps one worker warm and lets the surplus retire, as the JDK's cached thread pool does
//! with its non-fair `SynchronousQueue` (a stack). Each sleeper therefore waits on a
//! condition variable of its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::pool::spin::Bets;
use crate::pool::task::Job;
use crate::sync::{Arc, AtomicBool, AtomicUsize, Backoff, Condvar, Mutex, Ordering};

/// Dead tasks the queue tolerates before a sweep, whatever the number of live ones.
pub(crate) const SWEEP_FLOOR: usize = 64;

/// The most room (in tasks) an empty queue keeps: a burst that queued a million tasks must
/// not hold their 16 MiB for the rest of the pool's life.
pub(crate) const KEEP_ROOM: usize = 1024;

/// What an idle worker got from [`Queue::pop`].
pub(crate) enum Popped {
    /// A task to claim and run.
    Task(Arc<dyn Job>),
    /// Look at the admission word again (shutdown).
    Woken,
    /// Nothing came before the deadline.
    TimedOut,
}

/// One worker's place on the stack of sleepers.
pub(crate) struct Sleeper {
    ready: Condvar,
    /// Set (under the queue's lock) by whoever popped this sleeper off the stack to wake it.
    woken: AtomicBool,
}

impl Sleeper {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            ready: Condvar::new(),
            woken: AtomicBool::new(false),
        })
    }
}

#[derive(Default)]
struct Inner {
    tasks: VecDeque<Arc<dyn Job>>,
    /// Wake-ups not yet taken by a worker.
    wakes: usize,
    /// Workers asleep, the most recently idle last: a push wakes that one.
    sleepers: Vec<Arc<Sleeper>>,
    /// Cancellations since the last sweep: an upper bound on the dead tasks queued.
    cancelled: usize,
}

pub(crate) struct Queue {
    inner: Mutex<Inner>,
    /// Tasks plus wake-ups, written under the lock and read without it by spinning workers.
    pending: AtomicUsize,
    /// Whether idle workers' spins have been finding tasks.
    idle_spins: Bets,
}

impl Queue {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            pending: AtomicUsize::new(0),
            idle_spins: Bets::default(),
        }
    }

    fn publish(&self, inner: &Inner) {
        self.pending
            .store(inner.tasks.len() + inner.wakes, Ordering::Release);
    }

    /// Queues a task behind every task queued before it.
    pub(crate) fn push(&self, job: Arc<dyn Job>) {
        let mut inner = self.inner.lock();
        inner.tasks.push_back(job);
        self.publish(&inner);
        // LIFO: the most recently idle sleeper (see the module's notes for why).
        if let Some(sleeper) = inner.sleepers.pop() {
            Self::rouse(&sleeper);
        }
    }

    /// Wakes a sleeper already taken off the stack (under the lock).
    fn rouse(sleeper: &Sleeper) {
        sleeper.woken.store(true, Ordering::Relaxed);
        sleeper.ready.notify_one();
    }

    /// Wakes `n` workers (shutdown): each wake-up is taken by one worker, after the tasks.
    pub(crate) fn wake(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        inner.wakes += n;
        self.publish(&inner);
        // Every sleeper: a wake-up is rare (shutdown), and one taken by a worker that was
        // busy must not leave another asleep.
        for sleeper in std::mem::take(&mut inner.sleepers) {
            Self::rouse(&sleeper);
        }
    }

    /// Takes every queued task out, oldest first (`shutdown_now`).
    pub(crate) fn drain(&self) -> VecDeque<Arc<dyn Job>> {
        let mut inner = self.inner.lock();
        let tasks = std::mem::take(&mut inner.tasks);
        inner.cancelled = 0;
        self.publish(&inner);
        tasks
    }

    /// A queued task was cancelled: sweep the dead tasks out if there are too many.
    pub(crate) fn cancelled(&self) {
        let mut inner = self.inner.lock();
        inner.cancelled += 1;
        if inner.cancelled > SWEEP_FLOOR.max(inner.tasks.len() / 2) {
            inner.tasks.retain(|job| job.is_pending());
            inner.cancelled = 0;
            self.publish(&inner);
        }
    }

    /// The number of tasks in the queue, dead ones included (for tests).
    #[cfg(all(test, not(bulkheads_loom)))]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().tasks.len()
    }

    /// The room the queue holds on to, in tasks (for tests).
    #[cfg(all(test, not(bulkheads_loom)))]
    pub(crate) fn capacity(&self) -> usize {
        self.inner.lock().tasks.capacity()
    }

    /// The oldest task, or a wake-up, waiting up to `timeout` for one; `me` is the calling
    /// worker's place on the stack of sleepers.
    pub(crate) fn pop(&self, me: &Arc<Sleeper>, keep_alive: impl Fn() -> Duration) -> Popped {
        let entered = Instant::now();
        if self.idle_spins.should_spin() {
            let backoff = Backoff::new();
            while self.pending.load(Ordering::Acquire) == 0 && !backoff.is_completed() {
                backoff.snooze();
            }
            self.idle_spins
                .spun(self.pending.load(Ordering::Acquire) != 0);
        }
        let mut inner = self.inner.lock();
        loop {
            if let Some(popped) = self.take(&mut inner) {
                return popped;
            }
            // SLEEPING: on top of the stack, so the next push wakes this worker first.
            me.woken.store(false, Ordering::Relaxed);
            inner.sleepers.push(Arc::clone(me));
            // Read at every sleep, counted from when the worker went idle: a roused worker
            // that found nothing keeps its place in the wait, and a keep-alive changed by
            // `reconfigure` (which rouses every sleeper) applies to workers already idle. A
            // keep-alive too long for the clock is no deadline at all.
            let deadline = entered.checked_add(keep_alive());
            let timed_out = match deadline {
                Some(deadline) => me.ready.wait_until(&mut inner, deadline).timed_out(),
                None => {
                    me.ready.wait(&mut inner);
                    false
                }
            };
            if !me.woken.load(Ordering::Relaxed) {
                // Timed out (or woke spuriously) while still on the stack: leave it.
                if let Some(at) = inner.sleepers.iter().rposition(|s| Arc::ptr_eq(s, me)) {
                    inner.sleepers.remove(at);
                }
            }
            if timed_out {
                return self.take(&mut inner).unwrap_or(Popped::TimedOut);
            }
        }
    }

    /// The workers asleep, oldest first (for tests).
    #[cfg(test)]
    pub(crate) fn sleepers(&self) -> usize {
        self.inner.lock().sleepers.len()
    }

    fn take(&self, inner: &mut Inner) -> Option<Popped> {
        let popped = if let Some(job) = inner.tasks.pop_front() {
            if inner.tasks.is_empty() && inner.tasks.capacity() > KEEP_ROOM {
                inner.tasks.shrink_to(KEEP_ROOM);
            }
            Popped::Task(job)
        } else if inner.wakes > 0 {
            inner.wakes -= 1;
            Popped::Woken
        } else {
            return None;
        };
        self.publish(inner);
        Some(popped)
    }
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::{KEEP_ROOM, SWEEP_FLOOR};
    use crate::sync::Arc;
    use crate::{PoolConfig, ThreadPoolBulkhead};

    /// Blocks the pool's only worker until the returned sender is used or dropped.
    fn stuck(pool: &ThreadPoolBulkhead) -> mpsc::Sender<()> {
        let (release, blocked) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let detached = pool
            .submit(move || {
                started.send(()).unwrap();
                let _ = blocked.recv();
            })
            .unwrap();
        drop(detached);
        running.recv_timeout(Duration::from_secs(30)).unwrap();
        release
    }

    #[test]
    fn dead_tasks_are_swept_while_every_worker_is_stuck() {
        let pool = ThreadPoolBulkhead::new("stuck", PoolConfig::new(1).queue_capacity(4)).unwrap();
        let release = stuck(&pool);
        for _ in 0..10_000 {
            // Admitted into the queue, expired there: each leaves a dead task behind.
            let err = pool.execute_timeout(Duration::ZERO, || ()).unwrap_err();
            assert!(err.is_timeout());
            let queued = pool.shared.queue.len();
            assert!(queued <= SWEEP_FLOOR + 1, "{queued} tasks queued");
        }
        let stats = pool.stats();
        assert_eq!((stats.expired, stats.queued), (10_000, 0));
        drop(release);
        assert_eq!(pool.execute(|| 7).unwrap(), 7);
    }

    /// Regression: the queue woke the longest-idle sleeper (one condition variable, FIFO),
    /// so under a trickle every idle worker got a task in turn and none reached its
    /// keep-alive. A push must wake the most recently idle one.
    #[test]
    fn a_push_wakes_the_most_recently_idle_sleeper() {
        use super::{Popped, Queue, Sleeper};
        use std::time::Instant;

        struct Mark;
        impl crate::pool::task::Job for Mark {
            fn run(self: Arc<Self>, _: &crate::pool::Shared) {}
            fn discard(&self, _: &crate::pool::Shared, _: crate::BulkheadError) -> bool {
                false
            }
            fn is_pending(&self) -> bool {
                true
            }
        }

        let queue = Arc::new(Queue::new());
        let (got, results) = mpsc::channel();
        let mut workers = Vec::new();
        for id in 0..3 {
            let q = Arc::clone(&queue);
            let got = got.clone();
            workers.push(std::thread::spawn(move || {
                let me = Sleeper::new();
                let popped = q.pop(&me, || Duration::from_secs(30));
                got.send((id, matches!(popped, Popped::Task(_)))).unwrap();
            }));
            // Each one asleep before the next comes, so their order is known.
            let until = Instant::now() + Duration::from_secs(30);
            while queue.sleepers() < id + 1 {
                assert!(Instant::now() < until, "worker {id} never went to sleep");
                std::thread::yield_now();
            }
        }
        queue.push(Arc::new(Mark));
        let first = results.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(first, (2, true), "the last worker to go idle gets the task");
        assert_eq!(queue.sleepers(), 2);
        queue.wake(2);
        for worker in workers {
            worker.join().unwrap();
        }
    }

    #[test]
    fn a_drained_queue_gives_back_the_room_of_a_burst() {
        let burst = 50_000;
        let pool =
            ThreadPoolBulkhead::new("burst", PoolConfig::new(1).queue_capacity(burst)).unwrap();
        let release = stuck(&pool);
        let handles: Vec<_> = (0..burst)
            .map(|i| pool.submit(move || i).unwrap())
            .collect();
        assert!(pool.shared.queue.capacity() >= burst);
        drop(release);
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join().unwrap(), i);
        }
        let room = pool.shared.queue.capacity();
        assert!(
            room <= 2 * KEEP_ROOM,
            "an empty queue keeps room for {room} tasks"
        );
    }

    #[test]
    fn sweeps_keep_the_live_tasks_in_order() {
        let pool = ThreadPoolBulkhead::new("fifo", PoolConfig::new(1).queue_capacity(8)).unwrap();
        let release = stuck(&pool);
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut live = Vec::new();
        for i in 0..8 {
            // Live tasks between runs of dead ones, so that sweeps happen in between.
            for _ in 0..SWEEP_FLOOR * 3 {
                let handle = pool.submit(|| ()).unwrap();
                assert!(handle.cancel());
            }
            if i < 7 {
                let order = Arc::clone(&order);
                live.push(pool.submit(move || order.lock().push(i)).unwrap());
            }
        }
        let queued = pool.shared.queue.len();
        assert!(queued <= 7 + SWEEP_FLOOR + 1, "{queued} tasks queued");
        drop(release);
        for handle in live {
            handle.join().unwrap();
        }
        assert_eq!(*order.lock(), (0..7).collect::<Vec<_>>());
        let stats = pool.stats();
        assert_eq!(stats.cancelled, 8 * 3 * SWEEP_FLOOR as u64);
        assert_eq!(stats.completed, 8);
    }
}

/// Loom models of the wake-up protocol: a worker going to sleep can miss neither a task
/// nor a shutdown wake-up pushed at any point of its way there.
#[cfg(all(test, bulkheads_loom))]
mod loom_models {
    use std::time::Duration;

    use loom::thread;

    use super::{Popped, Queue, Sleeper};
    use crate::error::BulkheadError;
    use crate::pool::Shared;
    use crate::pool::task::Job;
    use crate::sync::Arc;

    struct Noop;

    impl Job for Noop {
        fn run(self: Arc<Self>, _: &Shared) {}
        fn discard(&self, _: &Shared, _: BulkheadError) -> bool {
            false
        }
        fn is_pending(&self) -> bool {
            true
        }
    }

    /// Waits for good: no keep-alive deadline, so a missed wake-up hangs the model.
    fn pop(queue: &Queue) -> Popped {
        queue.pop(&Sleeper::new(), || Duration::MAX)
    }

    #[test]
    fn loom_push_vs_worker_going_to_sleep() {
        loom::model(|| {
            let queue = Arc::new(Queue::new());
            let q = Arc::clone(&queue);
            let worker = thread::spawn(move || matches!(pop(&q), Popped::Task(_)));
            queue.push(Arc::new(Noop));
            assert!(worker.join().unwrap(), "the worker must get the task");
        });
    }

    #[test]
    fn loom_wake_vs_worker_going_to_sleep() {
        loom::model(|| {
            let queue = Arc::new(Queue::new());
            let q = Arc::clone(&queue);
            let worker = thread::spawn(move || matches!(pop(&q), Popped::Woken));
            queue.wake(1);
            assert!(worker.join().unwrap(), "the worker must be woken");
        });
    }

    #[test]
    fn loom_two_workers_share_a_task_and_a_wake_up() {
        loom::model(|| {
            let queue = Arc::new(Queue::new());
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&queue);
                    thread::spawn(move || matches!(pop(&q), Popped::Task(_)))
                })
                .collect();
            queue.push(Arc::new(Noop));
            queue.wake(1);
            let tasks = workers
                .into_iter()
                .map(|w| usize::from(w.join().unwrap()))
                .sum::<usize>();
            assert_eq!(tasks, 1, "one task, one wake-up, one each");
        });
    }

    /// LIFO: with one worker asleep since before another, a push wakes the later one, and
    /// the earlier one stays asleep (its keep-alive runs on). With the old shared condition
    /// variable, which woke the longest sleeper, this fails.
    #[test]
    fn loom_a_push_wakes_the_most_recently_idle_worker() {
        loom::model(|| {
            let queue = Arc::new(Queue::new());
            let first = Sleeper::new();
            let q = Arc::clone(&queue);
            let early = {
                let first = Arc::clone(&first);
                thread::spawn(move || matches!(q.pop(&first, || Duration::MAX), Popped::Task(_)))
            };
            // The early worker is asleep before the later one comes.
            while queue.sleepers() == 0 {
                thread::yield_now();
            }
            let q = Arc::clone(&queue);
            let later = thread::spawn(move || matches!(pop(&q), Popped::Task(_)));
            while queue.sleepers() < 2 {
                thread::yield_now();
            }
            queue.push(Arc::new(Noop));
            assert!(
                later.join().unwrap(),
                "the most recently idle worker gets the task"
            );
            assert_eq!(queue.sleepers(), 1, "the early worker sleeps on");
            assert!(!first.woken.load(crate::sync::Ordering::Relaxed));
            queue.wake(1);
            assert!(
                !early.join().unwrap(),
                "the early worker only got the wake-up"
            );
        });
    }
}
