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
//! Idle workers spin briefly on a lock-free length before they sleep on the condition
//! variable, as crossbeam's blocking receive does: on a virtual machine a wake-up costs tens
//! of microseconds, more than a tiny task takes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::pool::handle::Job;
use crate::sync::{Arc, AtomicUsize, Backoff, Condvar, Mutex, Ordering};

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

#[derive(Default)]
struct Inner {
    tasks: VecDeque<Arc<dyn Job>>,
    /// Wake-ups not yet taken by a worker.
    wakes: usize,
    /// Workers asleep on the condition variable.
    sleepers: usize,
    /// Cancellations since the last sweep: an upper bound on the dead tasks queued.
    cancelled: usize,
}

pub(crate) struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// Tasks plus wake-ups, written under the lock and read without it by spinning workers.
    pending: AtomicUsize,
}

impl Queue {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ready: Condvar::new(),
            pending: AtomicUsize::new(0),
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
        if inner.sleepers > 0 {
            self.ready.notify_one();
        }
    }

    /// Wakes `n` workers (shutdown): each wake-up is taken by one worker, after the tasks.
    pub(crate) fn wake(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        inner.wakes += n;
        self.publish(&inner);
        if inner.sleepers > 0 {
            self.ready.notify_all();
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

    /// The oldest task, or a wake-up, waiting up to `timeout` for one.
    pub(crate) fn pop(&self, timeout: Duration) -> Popped {
        // A keep-alive too long for the clock is no deadline at all.
        let deadline = Instant::now().checked_add(timeout);
        let backoff = Backoff::new();
        while self.pending.load(Ordering::Acquire) == 0 && !backoff.is_completed() {
            backoff.snooze();
        }
        let mut inner = self.inner.lock();
        loop {
            if let Some(popped) = self.take(&mut inner) {
                return popped;
            }
            inner.sleepers += 1;
            let timed_out = match deadline {
                Some(deadline) => self.ready.wait_until(&mut inner, deadline).timed_out(),
                None => {
                    self.ready.wait(&mut inner);
                    false
                }
            };
            inner.sleepers -= 1;
            if timed_out {
                return self.take(&mut inner).unwrap_or(Popped::TimedOut);
            }
        }
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

    use super::{Popped, Queue};
    use crate::error::BulkheadError;
    use crate::pool::Shared;
    use crate::pool::handle::Job;
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
        queue.pop(Duration::MAX)
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
}
