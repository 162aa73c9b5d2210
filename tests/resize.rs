//! Resizing a pool at run time: `reconfigure`, `set_max_threads`, `set_queue_capacity`.
//!
//! The promises are DESIGN.md's "Elastic compartments", written against what peers got
//! wrong: resilience4j's semaphore shrink blocks the caller until holders finish, and its
//! thread-pool bulkhead cannot be resized at all (#2186); Hystrix threw when `coreSize` was
//! raised above the old `maximumSize` (#1897). Here a change never blocks, raising takes
//! effect at once, lowering takes nothing back, and an invalid change changes nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{Gate, OpenOnDrop, threads_named, wait_until};

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// Counts the tasks running now, and the most that ever ran at once among those that
/// started after [`Concurrency::watch`].
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    watching: std::sync::atomic::AtomicBool,
    most_seen: AtomicUsize,
}

impl Concurrency {
    fn watch(&self) {
        self.watching.store(true, Ordering::SeqCst);
    }

    /// Runs `body` counted as running.
    fn run<T>(&self, body: impl FnOnce() -> T) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        if self.watching.load(Ordering::SeqCst) {
            self.most_seen.fetch_max(now, Ordering::SeqCst);
        }
        let out = body();
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

/// Submits a task that says when it starts, then waits for `gate`.
fn blocker(
    pool: &ThreadPoolBulkhead,
    gate: &Arc<Gate>,
    started: &mpsc::Sender<u32>,
    conc: &Arc<Concurrency>,
    value: u32,
) -> TaskHandle<u32> {
    let (gate, started, conc) = (Arc::clone(gate), started.clone(), Arc::clone(conc));
    pool.submit(move || {
        conc.run(|| {
            let _ = started.send(value);
            gate.wait();
            value
        })
    })
    .expect("admitted")
}

fn expect_started(rx: &mpsc::Receiver<u32>, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| {
            rx.recv_timeout(LONG)
                .unwrap_or_else(|_| panic!("only {i} of {n} tasks started"))
        })
        .collect()
}

#[test]
fn raising_max_threads_starts_queued_tasks_on_new_workers_at_once() {
    let pool = ThreadPoolBulkhead::new("grow", PoolConfig::new(1).queue_capacity(4)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (tx, rx) = mpsc::channel();
    let conc = Arc::new(Concurrency::default());
    let handles: Vec<_> = (0..4)
        .map(|i| blocker(&pool, &gate, &tx, &conc, i))
        .collect();
    assert_eq!(expect_started(&rx, 1), [0]);
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (1, 3));

    pool.set_max_threads(4).unwrap();
    // The three queued tasks start while the first still holds its worker.
    let mut late = expect_started(&rx, 3);
    late.sort_unstable();
    assert_eq!(late, [1, 2, 3]);
    let s = pool.stats();
    assert_eq!((s.max_threads, s.running, s.queued), (4, 4, 0));
    assert_eq!(pool.config().max_threads_value(), 4);

    gate.open();
    let values: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(values, [0, 1, 2, 3]);
}

#[test]
fn raising_queue_capacity_admits_more_calls_at_once() {
    let pool = ThreadPoolBulkhead::new("deeper", PoolConfig::new(1).queue_capacity(0)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (tx, rx) = mpsc::channel();
    let conc = Arc::new(Concurrency::default());
    let first = blocker(&pool, &gate, &tx, &conc, 1);
    expect_started(&rx, 1);
    assert!(pool.submit(|| 0).unwrap_err().is_rejected());

    pool.set_queue_capacity(2).unwrap();
    let queued: Vec<_> = (2..4).map(|i| pool.submit(move || i).unwrap()).collect();
    assert!(
        pool.submit(|| 0).unwrap_err().is_rejected(),
        "2 queued is full"
    );
    assert_eq!(pool.stats().queue_capacity, 2);
    assert_eq!(pool.stats().queued, 2);

    gate.open();
    assert_eq!(first.join().unwrap(), 1);
    let rest: Vec<u32> = queued.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(rest, [2, 3]);
}

#[test]
fn lowering_takes_nothing_back_and_no_task_starts_while_the_new_limit_runs() {
    let pool = ThreadPoolBulkhead::new("shrink", PoolConfig::new(4).queue_capacity(4)).unwrap();
    let first = Gate::new();
    let second = Gate::new();
    let _release = (
        OpenOnDrop(Arc::clone(&first)),
        OpenOnDrop(Arc::clone(&second)),
    );
    let (tx, rx) = mpsc::channel();
    let conc = Arc::new(Concurrency::default());
    let running: Vec<_> = (0..4)
        .map(|i| blocker(&pool, &first, &tx, &conc, i))
        .collect();
    expect_started(&rx, 4);
    let queued: Vec<_> = (4..8)
        .map(|i| blocker(&pool, &second, &tx, &conc, i))
        .collect();
    assert_eq!(pool.stats().queued, 4);

    // Never blocks, although every worker is busy.
    let start = Instant::now();
    pool.reconfigure(PoolConfig::new(2).queue_capacity(1))
        .unwrap();
    assert!(start.elapsed() < LONG);
    let s = pool.stats();
    assert_eq!((s.max_threads, s.queue_capacity), (2, 1));
    // Nothing taken back: the four keep running (above the new limit: they had started),
    // the four queued stay queued.
    assert_eq!((s.running, s.queued), (4, 4));
    assert_eq!(s.cancelled + s.expired, 0);
    // In flight (8) is above the new capacity (3): new calls wait for it to fall.
    assert!(pool.submit(|| 0).unwrap_err().is_rejected());

    conc.watch();
    first.open();
    // The started four finish; the queued start, at most two at a time.
    expect_started(&rx, 2);
    wait_until(LONG, "the workers above the limit leave", || {
        pool.stats().live_threads == 2
    });
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (2, 2), "{s:?}");
    // A window for a third to start if the limit did not hold (the assertion is on what
    // each task saw at its start, not on this wait).
    thread::sleep(Duration::from_millis(20));
    assert_eq!(conc.most_seen.load(Ordering::SeqCst), 2);

    second.open();
    let mut values: Vec<u32> = running
        .into_iter()
        .chain(queued)
        .map(|h| h.join().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(values, (0..8).collect::<Vec<_>>(), "one outcome each");
    assert!(conc.most_seen.load(Ordering::SeqCst) <= 2);
    let s = pool.stats();
    assert_eq!((s.completed, s.submitted), (8, 8));
    // The compartment admits again, at its new size.
    assert_eq!(pool.execute(|| 9).unwrap(), 9);
}

#[test]
fn an_invalid_change_is_an_error_naming_the_pool_and_field_and_changes_nothing() {
    let config = PoolConfig::new(4).queue_capacity(2);
    let pool = ThreadPoolBulkhead::new("strict", config.clone()).unwrap();
    let err = pool.set_max_threads(0).unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("strict", "max_threads"));
    let err = pool
        .reconfigure(PoolConfig::new(2).core_threads(3))
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("strict", "core_threads"));
    assert_eq!(pool.config(), config);
    let s = pool.stats();
    assert_eq!((s.max_threads, s.queue_capacity), (4, 2));
}

#[test]
fn raising_core_threads_above_the_old_max_is_one_valid_change() {
    // Hystrix #1897: coreSize raised above the old maximumSize threw, because the two were
    // set one after the other.
    let pool = ThreadPoolBulkhead::new("hystrix-1897", PoolConfig::new(2).core_threads(2)).unwrap();
    pool.reconfigure(PoolConfig::new(10).core_threads(8).prestart(true))
        .unwrap();
    let s = pool.stats();
    assert_eq!((s.max_threads, s.core_threads), (10, 8));
    wait_until(LONG, "prestart starts the new core threads", || {
        pool.stats().live_threads == 8
    });
    // set_max_threads below core lowers core with it instead of failing.
    pool.set_max_threads(3).unwrap();
    assert_eq!(pool.config().core_threads_value(), 3);
    wait_until(LONG, "idle workers above the new limit leave", || {
        pool.stats().live_threads == 3
    });
}

#[test]
fn a_shorter_keep_alive_reaches_workers_already_idle() {
    let pool = ThreadPoolBulkhead::new(
        "keepalive",
        PoolConfig::new(2)
            .core_threads(0)
            .keep_alive(Duration::from_secs(3600)),
    )
    .unwrap();
    let gate = Gate::new();
    let (tx, rx) = mpsc::channel();
    let conc = Arc::new(Concurrency::default());
    let a = blocker(&pool, &gate, &tx, &conc, 1);
    let b = blocker(&pool, &gate, &tx, &conc, 2);
    expect_started(&rx, 2);
    gate.open();
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(pool.stats().live_threads, 2, "idle, waiting out an hour");

    pool.reconfigure(pool.config().keep_alive(Duration::from_millis(10)))
        .unwrap();
    wait_until(
        LONG,
        "the idle workers retire at the new keep-alive",
        || pool.stats().live_threads == 0,
    );
}

#[test]
fn a_new_default_timeout_applies_to_the_next_execute_and_a_new_prefix_to_new_threads() {
    let pool = ThreadPoolBulkhead::new("timeouts", PoolConfig::new(2).thread_name_prefix("before"))
        .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    pool.execute(|| ()).unwrap();
    assert_eq!(threads_named("before"), 1);

    pool.reconfigure(
        PoolConfig::new(2)
            .thread_name_prefix("after")
            .default_timeout(Duration::from_millis(20)),
    )
    .unwrap();
    let g = Arc::clone(&gate);
    let err = pool.execute(move || g.wait()).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The second worker was started after the change, under the new prefix.
    let g = Arc::clone(&gate);
    let held = pool.submit(move || g.wait()).unwrap();
    wait_until(LONG, "a second worker starts", || {
        threads_named("after") == 1
    });
    gate.open();
    held.join().unwrap();
}

#[test]
fn concurrent_changes_and_calls_leave_the_last_change_whole_and_the_books_exact() {
    let pool =
        Arc::new(ThreadPoolBulkhead::new("churn", PoolConfig::new(4).queue_capacity(4)).unwrap());
    let applied = Arc::new(Mutex::new(Vec::new()));
    let changers: Vec<_> = (0..2)
        .map(|t| {
            let (pool, applied) = (Arc::clone(&pool), Arc::clone(&applied));
            thread::spawn(move || {
                for i in 0..200_usize {
                    let config = PoolConfig::new(1 + (i * 7 + t) % 6).queue_capacity((i + t) % 5);
                    // The lock orders the record with the change, so the last recorded is
                    // the last applied.
                    let mut log = applied.lock().unwrap();
                    pool.reconfigure(config.clone()).unwrap();
                    log.push(config);
                }
            })
        })
        .collect();
    let outcomes = Arc::new(AtomicUsize::new(0));
    let rejected = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, outcomes, rejected) = (
                Arc::clone(&pool),
                Arc::clone(&outcomes),
                Arc::clone(&rejected),
            );
            thread::spawn(move || {
                for i in 0..500_u64 {
                    match pool.submit(move || i) {
                        Ok(h) => {
                            assert_eq!(h.join().unwrap(), i);
                            outcomes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert!(e.is_rejected(), "{e}");
                            rejected.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for t in changers.into_iter().chain(callers) {
        t.join().unwrap();
    }
    let last = applied.lock().unwrap().last().cloned().unwrap();
    assert_eq!(pool.config(), last);
    let s = pool.stats();
    assert_eq!(
        (s.max_threads, s.queue_capacity),
        (last.max_threads_value(), last.queue_capacity_value())
    );
    assert_eq!(
        outcomes.load(Ordering::SeqCst) + rejected.load(Ordering::SeqCst),
        1500
    );
    assert_eq!(s.submitted as usize, outcomes.load(Ordering::SeqCst));
    assert_eq!(s.rejected as usize, rejected.load(Ordering::SeqCst));
    assert_eq!(s.completed, s.submitted);
    assert_eq!((s.running, s.queued), (0, 0));
    wait_until(LONG, "workers above the last limit leave", || {
        pool.stats().live_threads <= last.max_threads_value()
    });
}

// ---------------------------------------------------------------------------------------------
// Semaphores: `set_max_concurrent`, `set_max_wait`
// ---------------------------------------------------------------------------------------------

use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};

/// A thread waiting (with no deadline worth the name) for a permit of `sem`, which it holds
/// until `hold` opens; reports on the returned channel once granted.
fn semaphore_waiter(
    sem: &Arc<SemaphoreBulkhead>,
    hold: &Arc<Gate>,
) -> (mpsc::Receiver<()>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let (sem, hold) = (Arc::clone(sem), Arc::clone(hold));
    let t = thread::spawn(move || {
        let permit = sem.acquire_timeout(LONG).expect("granted");
        tx.send(()).unwrap();
        hold.wait();
        drop(permit);
    });
    (rx, t)
}

#[test]
fn raising_a_semaphore_hands_the_new_permits_to_its_waiters_at_once() {
    let sem = Arc::new(SemaphoreBulkhead::new("sem-grow", SemaphoreConfig::new(1)).unwrap());
    let held = sem.try_acquire().unwrap();
    let hold = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&hold));
    let (granted, waiter) = semaphore_waiter(&sem, &hold);
    wait_until(LONG, "the caller waits", || sem.stats().waiting == 1);

    sem.set_max_concurrent(2).unwrap();
    granted
        .recv_timeout(LONG)
        .expect("the waiter got the new permit while the first is held");
    let s = sem.stats();
    assert_eq!((s.max_concurrent, s.running, s.waiting), (2, 2, 0));
    assert_eq!(sem.config().max_concurrent_value(), 2);
    hold.open();
    waiter.join().unwrap();
    drop(held);
}

#[test]
fn lowering_a_semaphore_never_blocks_and_grants_nothing_until_holders_are_under_it() {
    let sem = Arc::new(SemaphoreBulkhead::new("sem-shrink", SemaphoreConfig::new(3)).unwrap());
    let mut held: Vec<_> = (0..3).map(|_| sem.try_acquire_owned().unwrap()).collect();
    let start = Instant::now();
    sem.set_max_concurrent(1).unwrap();
    assert!(start.elapsed() < LONG, "the shrink waited for holders");
    let s = sem.stats();
    assert_eq!((s.max_concurrent, s.running), (1, 3), "nothing taken back");
    assert!(sem.try_acquire().unwrap_err().is_rejected());

    let hold = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&hold));
    let (granted, waiter) = semaphore_waiter(&sem, &hold);
    wait_until(LONG, "the caller waits", || sem.stats().waiting == 1);
    // Two of three holders leave: one is still held, the limit's worth; the waiter waits.
    held.pop();
    held.pop();
    let s = sem.stats();
    assert_eq!((s.running, s.waiting), (1, 1), "{s:?}");
    assert!(
        granted.try_recv().is_err(),
        "granted above the lowered limit"
    );
    // The last leaves: its permit goes to the waiter, in order.
    held.pop();
    granted.recv_timeout(LONG).expect("granted under the limit");
    assert_eq!(sem.stats().running, 1);
    hold.open();
    waiter.join().unwrap();
    let s = sem.stats();
    assert_eq!((s.running, s.waiting, s.permitted), (0, 0, 4));
}

#[test]
fn a_new_max_wait_applies_to_callers_that_start_waiting_afterwards() {
    let sem = Arc::new(
        SemaphoreBulkhead::new("sem-wait", SemaphoreConfig::new(1).max_wait(Duration::ZERO))
            .unwrap(),
    );
    let held = sem.try_acquire_owned().unwrap();
    assert!(
        sem.call(|| ()).unwrap_err().is_rejected(),
        "no wait at first"
    );

    sem.set_max_wait(LONG).unwrap();
    assert_eq!(sem.config().max_wait_value(), LONG);
    let caller = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.call(|| 7))
    };
    wait_until(LONG, "the call waits", || sem.stats().waiting == 1);
    drop(held);
    assert_eq!(caller.join().unwrap().unwrap(), 7);

    let err = sem.set_max_concurrent(0).unwrap_err();
    assert_eq!(
        (err.bulkhead(), err.field()),
        ("sem-wait", "max_concurrent")
    );
    assert_eq!(
        sem.stats().max_concurrent,
        1,
        "an invalid change changes nothing"
    );
}

// --- resilience4j's SemaphoreBulkheadTest, the changeConfig scenarios ----------------------
//
// Re-expressed from resilience4j-bulkhead's `internal/SemaphoreBulkheadTest.java`
// (`changePermissionsInIdleState`, `changeWaitTimeInIdleState`,
// `changePermissionsCountWhileOneThreadIsRunningWithThisPermission`,
// `changePermissionsCountWhileOneThreadIsWaitingForPermission`,
// `changeWaitingTimeWhileOneThreadIsWaitingForPermission`, `changePermissionsConcurrently`).
// One deliberate difference: where resilience4j's lowering blocks the changing thread until
// holders finish, ours returns at once and the lower limit applies as permits come back
// (DESIGN.md: a change never blocks the caller).

mod r4j_change_config {
    use super::*;
    use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};

    fn available(sem: &SemaphoreBulkhead) -> usize {
        let s = sem.stats();
        s.limit.saturating_sub(s.running)
    }

    #[test]
    fn change_permissions_in_idle_state() {
        let wait = Duration::from_millis(5000);
        let sem =
            SemaphoreBulkhead::new("r4j-idle", SemaphoreConfig::new(3).max_wait(wait)).unwrap();
        assert_eq!(sem.config().max_concurrent_value(), 3);
        sem.set_max_concurrent(5).unwrap();
        assert_eq!(
            (
                sem.config().max_concurrent_value(),
                sem.config().max_wait_value()
            ),
            (5, wait)
        );
        sem.set_max_concurrent(2).unwrap();
        assert_eq!(
            (
                sem.config().max_concurrent_value(),
                sem.config().max_wait_value()
            ),
            (2, wait)
        );
        sem.set_max_concurrent(2).unwrap(); // the same change again is harmless
        assert_eq!(available(&sem), 2);
    }

    #[test]
    fn change_wait_time_in_idle_state() {
        let sem = SemaphoreBulkhead::new(
            "r4j-wait",
            SemaphoreConfig::new(3).max_wait(Duration::from_millis(5000)),
        )
        .unwrap();
        for ms in [3000, 7000, 7000] {
            sem.set_max_wait(Duration::from_millis(ms)).unwrap();
            assert_eq!(sem.config().max_wait_value(), Duration::from_millis(ms));
            assert_eq!(sem.config().max_concurrent_value(), 3);
        }
    }

    #[test]
    fn change_permissions_while_a_thread_runs_with_its_permit() {
        let sem = Arc::new(SemaphoreBulkhead::new("r4j-running", SemaphoreConfig::new(1)).unwrap());
        assert_eq!(available(&sem), 1);
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let holder = {
            let sem = sem.clone();
            thread::spawn(move || {
                let permit = sem.try_acquire_owned().unwrap();
                held_tx.send(()).unwrap();
                go_rx.recv_timeout(LONG).ok();
                drop(permit);
            })
        };
        held_rx.recv_timeout(LONG).unwrap();
        assert_eq!(available(&sem), 0);
        assert!(sem.try_acquire().is_err());

        sem.set_max_concurrent(2).unwrap();
        assert_eq!(sem.config().max_concurrent_value(), 2);
        assert_eq!(available(&sem), 1);
        let mine = sem.try_acquire().unwrap();
        assert_eq!(available(&sem), 0);
        assert!(sem.try_acquire().is_err());

        // Lowering to 1 while both permits are out: returns at once (r4j blocks here).
        let changer = {
            let sem = sem.clone();
            thread::spawn(move || sem.set_max_concurrent(1))
        };
        changer.join().unwrap().unwrap();
        assert_eq!(sem.config().max_concurrent_value(), 1);

        go_tx.send(()).unwrap();
        holder.join().unwrap();
        // One permit still out (this thread's) against a limit of 1: none available.
        assert_eq!(available(&sem), 0);
        assert!(sem.try_acquire().is_err());
        drop(mine);
        assert_eq!(available(&sem), 1);
        assert_eq!(sem.config().max_concurrent_value(), 1);
    }

    #[test]
    fn change_permissions_while_a_thread_waits_for_one() {
        let sem = Arc::new(
            SemaphoreBulkhead::new(
                "r4j-waiting",
                SemaphoreConfig::new(1).max_wait(Duration::from_secs(500)),
            )
            .unwrap(),
        );
        let mine = sem.try_acquire_owned().unwrap();
        assert_eq!(available(&sem), 0);
        let waiter = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire().map(drop))
        };
        wait_until(LONG, "the waiter queued", || sem.stats().waiting == 1);
        sem.set_max_concurrent(2).unwrap();
        // The new permit goes to the waiter at once; it finishes.
        waiter.join().unwrap().unwrap();
        assert_eq!(sem.config().max_concurrent_value(), 2);
        assert_eq!(available(&sem), 1, "this thread still holds one");
        drop(mine);
    }

    #[test]
    fn change_wait_time_while_a_thread_waits() {
        let sem = Arc::new(
            SemaphoreBulkhead::new(
                "r4j-wait-change",
                SemaphoreConfig::new(1).max_wait(Duration::from_secs(500)),
            )
            .unwrap(),
        );
        let mine = sem.try_acquire_owned().unwrap();
        let waiter = {
            let sem = sem.clone();
            thread::spawn(move || sem.acquire().map(drop))
        };
        wait_until(LONG, "the waiter queued", || sem.stats().waiting == 1);
        sem.set_max_wait(Duration::ZERO).unwrap();
        // A new caller no longer waits...
        let start = Instant::now();
        assert!(sem.acquire().unwrap_err().is_rejected());
        assert!(start.elapsed() < LONG);
        // ...and the caller already waiting keeps its place and its wait.
        assert_eq!(sem.stats().waiting, 1);
        drop(mine);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn change_permissions_concurrently() {
        let sem =
            Arc::new(SemaphoreBulkhead::new("r4j-concurrent", SemaphoreConfig::new(3)).unwrap());
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let holder = {
            let sem = sem.clone();
            thread::spawn(move || {
                let permit = sem.try_acquire_owned().unwrap();
                held_tx.send(()).unwrap();
                go_rx.recv_timeout(LONG).ok();
                drop(permit);
            })
        };
        held_rx.recv_timeout(LONG).unwrap();
        assert_eq!(available(&sem), 2);
        let mine = sem.try_acquire().unwrap();
        assert_eq!(available(&sem), 1);
        // Two changers: to 1, then to 4. Neither blocks (r4j's first waits for holders and
        // the second for the first); the last applied is whole.
        for n in [1, 4] {
            let sem = sem.clone();
            thread::spawn(move || sem.set_max_concurrent(n))
                .join()
                .unwrap()
                .unwrap();
        }
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(sem.config().max_concurrent_value(), 4);
        assert_eq!(available(&sem), 3, "this thread still holds one");
        drop(mine);
    }
}
