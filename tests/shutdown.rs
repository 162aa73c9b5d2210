//! Shutdown, termination and drop of a `ThreadPoolBulkhead`.
//!
//! The reference behaviour is `java.util.concurrent.ExecutorService` (`shutdown`,
//! `shutdownNow`, `awaitTermination`, as resilience4j's `FixedThreadPoolBulkhead` and the
//! MicroProfile Fault Tolerance TCK use it) and tokio's blocking pool: shutdown is
//! idempotent, `Drop` signals and never blocks, and no worker thread outlives a terminated
//! pool.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{Gate, OpenOnDrop, threads_named, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// Submits a task that reports on `started` once it runs, then blocks on `gate`.
fn submit_blocker(
    pool: &ThreadPoolBulkhead,
    gate: &Arc<Gate>,
    started: &mpsc::Sender<()>,
    value: u32,
) -> TaskHandle<u32> {
    let gate = Arc::clone(gate);
    let started = started.clone();
    pool.submit(move || {
        let _ = started.send(());
        gate.wait();
        value
    })
    .expect("the blocker is admitted")
}

/// Submits a task that records that it ran and returns `value`.
fn submit_flagged(pool: &ThreadPoolBulkhead, ran: &Arc<AtomicBool>, value: u32) -> TaskHandle<u32> {
    let ran = Arc::clone(ran);
    pool.submit(move || {
        ran.store(true, Ordering::SeqCst);
        value
    })
    .expect("the task is admitted")
}

fn expect_started(started: &mpsc::Receiver<()>, n: usize) {
    for i in 0..n {
        started
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("blocker {i} of {n} never started"));
    }
}

/// Counts its drops: kept in a worker's thread-local storage, it is dropped when the worker
/// thread exits, after the worker has left the pool's books. With `hold`, the drop blocks
/// until the gate opens, which makes a thread that is "still exiting" observable.
struct OnThreadExit {
    exited: Arc<AtomicUsize>,
    hold: Option<Arc<Gate>>,
}

impl Drop for OnThreadExit {
    fn drop(&mut self) {
        if let Some(gate) = &self.hold {
            gate.wait();
        }
        self.exited.fetch_add(1, Ordering::SeqCst);
    }
}

thread_local! {
    static ON_THREAD_EXIT: RefCell<Option<OnThreadExit>> = const { RefCell::new(None) };
}

fn on_thread_exit(exited: &Arc<AtomicUsize>, hold: Option<&Arc<Gate>>) {
    let guard = OnThreadExit {
        exited: Arc::clone(exited),
        hold: hold.cloned(),
    };
    ON_THREAD_EXIT.with(|slot| *slot.borrow_mut() = Some(guard));
}

/// Runs `n` tasks at once, so that the pool starts `n` workers, each of which registers an
/// [`OnThreadExit`].
fn occupy_workers(
    pool: &ThreadPoolBulkhead,
    n: usize,
    exited: &Arc<AtomicUsize>,
    hold: Option<&Arc<Gate>>,
) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let arrived = Arc::clone(&arrived);
            let exited = Arc::clone(exited);
            let hold = hold.cloned();
            pool.submit(move || {
                on_thread_exit(&exited, hold.as_ref());
                arrived.fetch_add(1, Ordering::SeqCst);
                // All n at once: each task holds its own worker.
                wait_until(LONG, "every task holds a worker", || {
                    arrived.load(Ordering::SeqCst) == n
                });
            })
            .expect("admitted")
        })
        .collect();
    for handle in handles {
        handle.join().expect("the task ran");
    }
}

// ---------------------------------------------------------------------------------------------
// shutdown()
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_stops_admitting_with_an_error_naming_the_bulkhead() {
    let pool = ThreadPoolBulkhead::new("orders", PoolConfig::new(2).queue_capacity(2)).unwrap();
    assert_eq!(pool.execute(|| 1).unwrap(), 1);
    assert!(!pool.is_shutdown());

    pool.shutdown();

    assert!(pool.is_shutdown());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let err = pool
        .execute(move || flag.store(true, Ordering::SeqCst))
        .unwrap_err();
    assert!(err.is_shutdown(), "{err:?}");
    assert_eq!(err.bulkhead(), "orders");
    assert!(err.to_string().contains("'orders'"), "{err}");
    assert!(err.to_string().contains("shut down"), "{err}");
    let flag = Arc::clone(&ran);
    let err = pool
        .submit(move || flag.store(true, Ordering::SeqCst))
        .unwrap_err();
    assert!(err.is_shutdown() && err.bulkhead() == "orders", "{err:?}");
    let flag = Arc::clone(&ran);
    let err = pool
        .execute_timeout(LONG, move || flag.store(true, Ordering::SeqCst))
        .unwrap_err();
    assert!(err.is_shutdown() && err.bulkhead() == "orders", "{err:?}");

    assert!(pool.await_termination(LONG));
    assert!(!ran.load(Ordering::SeqCst), "a refused task ran");
    let stats = pool.stats();
    assert!(stats.is_shutdown);
    // Refusals after shutdown are counted apart from a full pool's rejections, so an alert
    // on `rejected` does not fire on every deploy: submitted + rejected + shutdown_refused
    // == attempts.
    assert_eq!(
        (
            stats.submitted,
            stats.rejected,
            stats.shutdown_refused,
            stats.completed
        ),
        (1, 0, 3, 1)
    );
    common::assert_attempts_balance("orders", &stats, 4);
}

#[test]
fn shutdown_lets_queued_work_run_in_order_and_every_handle_gets_its_value() {
    let pool = ThreadPoolBulkhead::new("drain", PoolConfig::new(1).queue_capacity(3)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = submit_blocker(&pool, &gate, &started_tx, 100);
    expect_started(&started, 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let queued: Vec<_> = (1..=3)
        .map(|i| {
            let order = Arc::clone(&order);
            pool.submit(move || {
                order.lock().unwrap().push(i);
                i
            })
            .unwrap()
        })
        .collect();

    pool.shutdown();

    assert!(pool.submit(|| 0).unwrap_err().is_shutdown());
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued), (1, 3));
    assert!(order.lock().unwrap().is_empty(), "queued work ran early");
    assert!(!pool.await_termination(Duration::from_millis(20)));

    gate.open();
    assert_eq!(running.join().unwrap(), 100);
    let values: Vec<u32> = queued.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(values, [1, 2, 3]);
    assert_eq!(
        *order.lock().unwrap(),
        [1, 2, 3],
        "queued work ran out of order"
    );
    assert!(pool.await_termination(LONG));
    assert!(pool.is_terminated());
    let stats = pool.stats();
    // The submission after shutdown is a shutdown refusal, not a full pool's rejection.
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.cancelled,
            stats.rejected,
            stats.shutdown_refused
        ),
        (4, 4, 0, 0, 1)
    );
    assert_eq!((stats.running, stats.queued, stats.live_threads), (0, 0, 0));
}

#[test]
fn a_caller_blocked_in_execute_on_a_queued_task_gets_its_value_after_shutdown() {
    let pool = Arc::new(
        ThreadPoolBulkhead::new("blocked-caller", PoolConfig::new(1).queue_capacity(1)).unwrap(),
    );
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = submit_blocker(&pool, &gate, &started_tx, 1);
    expect_started(&started, 1);
    let caller = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.execute(|| 2))
    };
    wait_until(LONG, "the caller's task is queued", || {
        pool.stats().queued == 1
    });

    pool.shutdown();
    gate.open();

    assert_eq!(running.join().unwrap(), 1);
    assert_eq!(caller.join().unwrap().unwrap(), 2);
    assert!(pool.await_termination(LONG));
}

// ---------------------------------------------------------------------------------------------
// shutdown_now()
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_now_completes_queued_tasks_with_shutdown_and_lets_running_ones_finish() {
    let pool = ThreadPoolBulkhead::new("now", PoolConfig::new(2).queue_capacity(3)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = [
        submit_blocker(&pool, &gate, &started_tx, 10),
        submit_blocker(&pool, &gate, &started_tx, 20),
    ];
    expect_started(&started, 2);
    let ran: Vec<_> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let queued: Vec<_> = ran
        .iter()
        .zip(1..)
        .map(|(ran, i)| submit_flagged(&pool, ran, i))
        .collect();
    assert_eq!(pool.stats().queued, 3);

    pool.shutdown_now();

    // The queued tasks have their outcome at once, while the running ones still block.
    for handle in queued {
        let err = handle.join_timeout(LONG).unwrap_err();
        assert!(err.is_shutdown(), "a queued task got {err:?}");
        assert_eq!(err.bulkhead(), "now");
    }
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued, stats.cancelled), (2, 0, 3));
    assert!(!pool.await_termination(Duration::from_millis(20)));

    gate.open();
    let [a, b] = running;
    assert_eq!((a.join().unwrap(), b.join().unwrap()), (10, 20));
    assert!(pool.await_termination(LONG));
    for (i, ran) in ran.iter().enumerate() {
        assert!(
            !ran.load(Ordering::SeqCst),
            "queued task {i} ran after shutdown_now"
        );
    }
    let stats = pool.stats();
    assert_eq!(
        (
            stats.submitted,
            stats.completed,
            stats.cancelled,
            stats.expired
        ),
        (5, 2, 3, 0)
    );
    assert_eq!(
        stats.submitted,
        stats.completed + stats.panicked + stats.expired + stats.cancelled
    );
}

#[test]
fn shutdown_now_wakes_a_caller_waiting_on_a_queued_task() {
    let pool = Arc::new(
        ThreadPoolBulkhead::new("now-caller", PoolConfig::new(1).queue_capacity(2)).unwrap(),
    );
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = submit_blocker(&pool, &gate, &started_tx, 1);
    expect_started(&started, 1);
    let ran = Arc::new(AtomicBool::new(false));
    let (result_tx, result) = mpsc::channel();
    let callers: Vec<_> = [None, Some(LONG)]
        .into_iter()
        .map(|timeout| {
            let pool = Arc::clone(&pool);
            let ran = Arc::clone(&ran);
            let result_tx = result_tx.clone();
            thread::spawn(move || {
                let task = move || ran.store(true, Ordering::SeqCst);
                let outcome = match timeout {
                    None => pool.execute(task),
                    Some(timeout) => pool.execute_timeout(timeout, task),
                };
                result_tx.send(outcome).unwrap();
            })
        })
        .collect();
    wait_until(LONG, "both callers' tasks are queued", || {
        pool.stats().queued == 2
    });

    pool.shutdown_now();

    // Both callers hear of it while the running task still blocks the only worker.
    for _ in 0..2 {
        let outcome = result
            .recv_timeout(LONG)
            .expect("a caller was left waiting");
        let err = outcome.unwrap_err();
        assert!(err.is_shutdown(), "{err:?}");
    }
    gate.open();
    assert_eq!(running.join().unwrap(), 1);
    for caller in callers {
        caller.join().unwrap();
    }
    assert!(pool.await_termination(LONG));
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(pool.stats().cancelled, 2);
}

#[test]
fn shutdown_now_after_shutdown_discards_what_is_still_queued() {
    let pool = ThreadPoolBulkhead::new("upgrade", PoolConfig::new(1).queue_capacity(2)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = submit_blocker(&pool, &gate, &started_tx, 7);
    expect_started(&started, 1);
    let ran = Arc::new(AtomicBool::new(false));
    let queued = [
        submit_flagged(&pool, &ran, 1),
        submit_flagged(&pool, &ran, 2),
    ];

    pool.shutdown();
    pool.shutdown_now();

    for handle in queued {
        assert!(handle.join_timeout(LONG).unwrap_err().is_shutdown());
    }
    gate.open();
    assert_eq!(running.join().unwrap(), 7);
    assert!(pool.await_termination(LONG));
    assert!(!ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 2));
}

// ---------------------------------------------------------------------------------------------
// await_termination()
// ---------------------------------------------------------------------------------------------

#[test]
fn await_termination_is_true_once_work_drains() {
    let pool = ThreadPoolBulkhead::new("drains", PoolConfig::new(3).queue_capacity(3)).unwrap();
    let handles: Vec<_> = (0..6)
        .map(|i| pool.submit(move || i * 2).unwrap())
        .collect();
    pool.shutdown();
    assert!(pool.await_termination(LONG));
    assert!(pool.is_terminated());
    let values: Vec<i32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(values, [0, 2, 4, 6, 8, 10]);
    let stats = pool.stats();
    assert_eq!((stats.live_threads, stats.running, stats.queued), (0, 0, 0));
    assert_eq!(stats.completed, 6);
    // Once terminated it stays so, and asking again answers at once.
    assert!(pool.await_termination(Duration::ZERO));
}

#[test]
fn await_termination_of_a_pool_that_never_started_a_thread_is_immediate() {
    let pool = ThreadPoolBulkhead::new("idle", PoolConfig::new(4)).unwrap();
    pool.shutdown();
    assert!(pool.await_termination(Duration::ZERO));
    assert!(pool.is_terminated());
}

#[test]
fn await_termination_is_false_at_its_timeout_while_a_task_never_returns() {
    let pool = ThreadPoolBulkhead::new("stuck", PoolConfig::new(1)).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = submit_blocker(&pool, &gate, &started_tx, 5);
    expect_started(&started, 1);
    pool.shutdown();

    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert!(!pool.await_termination(timeout));
    let waited = start.elapsed();
    assert!(waited >= timeout, "gave up early, after {waited:?}");
    assert!(waited < Duration::from_secs(5), "overshot: {waited:?}");
    assert!(!pool.is_terminated());

    gate.open();
    assert_eq!(running.join().unwrap(), 5);
    assert!(pool.await_termination(LONG));
}

#[test]
fn await_termination_is_false_if_the_pool_was_never_shut_down() {
    let pool = ThreadPoolBulkhead::new("running", PoolConfig::new(2)).unwrap();
    // Never used: no thread, but not shut down either.
    assert!(!pool.await_termination(Duration::from_millis(20)));
    assert_eq!(pool.execute(|| 3).unwrap(), 3);
    assert!(!pool.await_termination(Duration::from_millis(20)));
    assert!(!pool.is_terminated());
    // Still serving.
    assert_eq!(pool.execute(|| 4).unwrap(), 4);
    pool.shutdown();
    assert!(pool.await_termination(LONG));
}

// ---------------------------------------------------------------------------------------------
// Idempotence
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_and_shutdown_now_are_idempotent_in_any_order() {
    type Op = fn(&ThreadPoolBulkhead);
    let shutdown: Op = ThreadPoolBulkhead::shutdown;
    let now: Op = ThreadPoolBulkhead::shutdown_now;
    let orders: [&[Op]; 6] = [
        &[shutdown, shutdown, shutdown],
        &[now, now, now],
        &[shutdown, now, shutdown],
        &[now, shutdown, now],
        &[shutdown, shutdown, now, now],
        &[now, now, shutdown, shutdown],
    ];
    for (case, ops) in orders.iter().enumerate() {
        let pool = ThreadPoolBulkhead::new(format!("idem-{case}"), PoolConfig::new(2)).unwrap();
        assert_eq!(pool.execute(move || case).unwrap(), case);
        for op in *ops {
            op(&pool);
            assert!(pool.is_shutdown());
        }
        assert!(pool.await_termination(LONG), "case {case}");
        // And again, on a terminated pool.
        for op in *ops {
            op(&pool);
        }
        assert!(pool.is_terminated(), "case {case}");
        assert!(pool.await_termination(Duration::ZERO), "case {case}");
        assert!(pool.execute(|| 0).unwrap_err().is_shutdown());
        let stats = pool.stats();
        assert_eq!(
            (
                stats.submitted,
                stats.completed,
                stats.rejected,
                stats.shutdown_refused
            ),
            (1, 1, 0, 1),
            "case {case}"
        );
    }
}

#[test]
fn concurrent_shutdown_calls_from_many_threads_keep_the_books() {
    let pool = Arc::new(
        ThreadPoolBulkhead::new("racing-shutdown", PoolConfig::new(2).queue_capacity(4)).unwrap(),
    );
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = [
        submit_blocker(&pool, &gate, &started_tx, 1),
        submit_blocker(&pool, &gate, &started_tx, 2),
    ];
    expect_started(&started, 2);
    let ran = Arc::new(AtomicBool::new(false));
    let queued: Vec<_> = (0..4).map(|i| submit_flagged(&pool, &ran, i)).collect();

    const THREADS: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let callers: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = Arc::clone(&pool);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..20 {
                    if (t + i) % 2 == 0 {
                        pool.shutdown();
                    } else {
                        pool.shutdown_now();
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().expect("a shutdown call panicked");
    }

    for handle in queued {
        assert!(handle.join_timeout(LONG).unwrap_err().is_shutdown());
    }
    gate.open();
    let [a, b] = running;
    assert_eq!((a.join().unwrap(), b.join().unwrap()), (1, 2));
    assert!(pool.await_termination(LONG));
    assert!(!ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    // Each queued task was discarded exactly once, however many threads tried.
    assert_eq!(
        (stats.submitted, stats.completed, stats.cancelled),
        (6, 2, 4)
    );
}

// ---------------------------------------------------------------------------------------------
// No thread outlives a terminated pool
// ---------------------------------------------------------------------------------------------

#[cfg(target_os = "linux")]
#[test]
fn no_worker_thread_outlives_a_terminated_pool() {
    // Unique and short: Linux keeps 15 bytes of a thread's name.
    const PREFIX: &str = "sd-outlive";
    assert_eq!(threads_named(PREFIX), 0);
    let pool = ThreadPoolBulkhead::new(
        "outlive",
        PoolConfig::new(4)
            .queue_capacity(4)
            .thread_name_prefix(PREFIX),
    )
    .unwrap();
    assert_eq!(threads_named(PREFIX), 0, "a thread started before any call");
    occupy_workers(&pool, 4, &Arc::new(AtomicUsize::new(0)), None);
    assert_eq!(threads_named(PREFIX), 4);
    let values: Vec<_> = (0..8).map(|i| pool.submit(move || i).unwrap()).collect();
    for (i, handle) in values.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), i);
    }

    pool.shutdown();
    assert!(pool.await_termination(LONG));

    // A joined thread can linger in /proc for the few microseconds the kernel takes to reap it
    // after waking the joiner; anything longer is a thread still running.
    wait_until(Duration::from_secs(1), "no worker thread is left", || {
        threads_named(PREFIX) == 0
    });
}

#[test]
fn worker_threads_have_exited_when_await_termination_returns_true() {
    // Each worker's thread-local guard is dropped as its thread exits, after the worker has
    // left the pool's books. `await_termination` returning true must mean every worker thread
    // is gone, so every guard has been dropped by then: no polling here.
    let pool = ThreadPoolBulkhead::new("exited", PoolConfig::new(4)).unwrap();
    let exited = Arc::new(AtomicUsize::new(0));
    occupy_workers(&pool, 4, &exited, None);
    assert_eq!(exited.load(Ordering::SeqCst), 0);

    pool.shutdown();
    assert!(pool.await_termination(LONG));

    assert_eq!(exited.load(Ordering::SeqCst), 4);
}

// Regression (found while porting these tests): `await_termination` used to join the worker
// threads after the admission word said "terminated", with `JoinHandle::join`, which has no
// timeout. A worker thread that had left the books but not yet exited (here a thread-local
// destructor is still running, as one that closes a connection would be) kept
// `await_termination(100 ms)` blocked until the thread really exited, however long that took. The joins now run on a reaper thread and the caller
// waits for them with its deadline.
#[test]
fn await_termination_honours_its_timeout_while_a_worker_thread_is_still_exiting() {
    let pool = Arc::new(ThreadPoolBulkhead::new("slow-exit", PoolConfig::new(1)).unwrap());
    let exited = Arc::new(AtomicUsize::new(0));
    let hold = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&hold));
    occupy_workers(&pool, 1, &exited, Some(&hold));
    pool.shutdown();

    let (tx, rx) = mpsc::channel();
    let waiter = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            let start = Instant::now();
            let terminated = pool.await_termination(Duration::from_millis(100));
            tx.send((terminated, start.elapsed())).unwrap();
        })
    };
    let outcome = rx.recv_timeout(Duration::from_secs(5));
    hold.open();
    waiter.join().unwrap();

    let (terminated, waited) =
        outcome.expect("await_termination(100 ms) was still blocked after 5 s");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    assert!(!terminated, "a worker thread was still running its exit");
    assert!(pool.await_termination(LONG));
    assert_eq!(exited.load(Ordering::SeqCst), 1);
}

// Regression (found while porting these tests): the first `await_termination` caller used to
// take the join handles out of the pool; a second, concurrent caller found none left and
// returned true at once, while the worker thread is still
// running (here: still in a thread-local destructor). "true" must mean every worker thread has
// exited, for every caller (two services sharing a pool and each awaiting it, or
// `BulkheadManager::shutdown` racing a direct caller). Now every caller waits for the same
// reaper's "joined".
#[test]
fn concurrent_await_termination_callers_all_wait_for_the_threads_to_exit() {
    let pool = Arc::new(ThreadPoolBulkhead::new("two-waiters", PoolConfig::new(1)).unwrap());
    let exited = Arc::new(AtomicUsize::new(0));
    let hold = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&hold));
    occupy_workers(&pool, 1, &exited, Some(&hold));
    pool.shutdown();

    let (tx, rx) = mpsc::channel();
    let barrier = Arc::new(Barrier::new(2));
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let (pool, tx, barrier) = (Arc::clone(&pool), tx.clone(), Arc::clone(&barrier));
            let exited = Arc::clone(&exited);
            thread::spawn(move || {
                barrier.wait();
                let terminated = pool.await_termination(LONG);
                tx.send((terminated, exited.load(Ordering::SeqCst)))
                    .unwrap();
            })
        })
        .collect();

    // While the worker thread cannot exit, no caller may be told it has.
    let early = rx.recv_timeout(Duration::from_millis(300));
    hold.open();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    if let Ok((terminated, exited_then)) = early {
        assert!(
            !terminated || exited_then == 1,
            "await_termination returned true while the worker thread was still running"
        );
    }
    for (terminated, exited_then) in rx.try_iter() {
        assert!(terminated && exited_then == 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Drop
// ---------------------------------------------------------------------------------------------

#[test]
fn drop_with_running_and_queued_tasks_does_not_block_and_every_handle_gets_its_outcome() {
    const PREFIX: &str = "sd-drop";
    let pool = ThreadPoolBulkhead::new(
        "dropped",
        PoolConfig::new(1)
            .queue_capacity(2)
            .thread_name_prefix(PREFIX),
    )
    .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = submit_blocker(&pool, &gate, &started_tx, 1);
    expect_started(&started, 1);
    let queued = [pool.submit(|| 2).unwrap(), pool.submit(|| 3).unwrap()];

    // Drop on another thread, so that a Drop that blocks fails the test instead of hanging it.
    let (dropped_tx, dropped) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(pool);
        dropped_tx.send(()).unwrap();
    });
    dropped
        .recv_timeout(Duration::from_secs(5))
        .expect("dropping the pool blocked on its running task");
    dropper.join().unwrap();

    gate.open();
    assert_eq!(running.join_timeout(LONG).unwrap(), 1);
    let [q2, q3] = queued;
    assert_eq!(q2.join_timeout(LONG).unwrap(), 2);
    assert_eq!(q3.join_timeout(LONG).unwrap(), 3);
    // The dropped pool was shut down: once the queue drained, its worker exited.
    #[cfg(target_os = "linux")]
    wait_until(LONG, "the dropped pool's worker exits", || {
        threads_named(PREFIX) == 0
    });
}

#[test]
fn drop_never_panics() {
    // After shutdown_now and termination.
    let pool = ThreadPoolBulkhead::new("drop-a", PoolConfig::new(2)).unwrap();
    pool.execute(|| ()).unwrap();
    pool.shutdown_now();
    pool.shutdown();
    assert!(pool.await_termination(LONG));
    drop(pool);

    // Never used.
    drop(ThreadPoolBulkhead::new("drop-b", PoolConfig::default()).unwrap());

    // With a panicking task in flight and its handle dropped.
    let pool = ThreadPoolBulkhead::new("drop-c", PoolConfig::new(1).queue_capacity(1)).unwrap();
    let (panicked_tx, panicked) = mpsc::channel::<()>();
    drop(
        pool.submit(move || {
            let _signal_on_unwind = panicked_tx;
            panic!("task panics while its pool is dropped")
        })
        .unwrap(),
    );
    drop(pool);
    // The task, and the sender it owns, are gone: nothing of the dropped pool is leaked.
    assert_eq!(
        panicked.recv_timeout(LONG),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );

    // By a task, on the pool's own worker thread: the last owner is the task itself.
    let pool = Arc::new(ThreadPoolBulkhead::new("drop-d", PoolConfig::new(1)).unwrap());
    let owner = Arc::clone(&pool);
    let handle = pool
        .submit(move || {
            drop(owner);
            "dropped from inside"
        })
        .unwrap();
    drop(pool);
    assert_eq!(handle.join_timeout(LONG).unwrap(), "dropped from inside");

    // While the dropping thread is already unwinding: a panic in Drop would abort the process.
    let unwinding = thread::spawn(|| {
        let pool = ThreadPoolBulkhead::new("drop-e", PoolConfig::new(1).queue_capacity(1)).unwrap();
        let _detached = pool.submit(|| 1).unwrap();
        panic!("unwinding with a live pool");
    });
    let payload = unwinding.join().unwrap_err();
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"unwinding with a live pool")
    );
}
