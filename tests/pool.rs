//! The thread-pool bulkhead's worker lifecycle and everyday API: lazy spawn, thread names,
//! threads before queue, FIFO, keep-alive retirement, sequential reuse, submit/join.
//!
//! Ported in spirit from resilience4j's `FixedThreadPoolBulkheadTest` (custom settings,
//! defaults, keep-alive of workers above the core size) and from tokio's blocking-pool tests
//! (lazy spawn, idle workers reused, surplus workers retire).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bulkheads::{BulkheadError, PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{BoundedBarrier, Gate, Latch, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long any wait in this file may take before the test fails: generous, because a noisy
/// two-core machine can stall a thread for a long time, and a correct pool never needs it.
const PATIENCE: Duration = Duration::from_secs(10);

/// Submits a task that reports on `started` when it begins and then blocks on `latch`.
fn submit_blocker(
    pool: &ThreadPoolBulkhead,
    latch: &Latch,
    started: &mpsc::Sender<usize>,
    id: usize,
) -> TaskHandle<bool> {
    let latch = latch.clone();
    let started = started.clone();
    pool.submit(move || {
        started.send(id).unwrap();
        latch.wait()
    })
    .expect("the pool has room for the blocker")
}

/// Receives one start report, failing the test if none comes in time.
fn expect_start(started: &mpsc::Receiver<usize>) -> usize {
    started
        .recv_timeout(PATIENCE)
        .expect("a task should have started")
}

/// The number of OS threads of this process whose name starts with `<prefix>-`, or `None`
/// where `/proc` cannot tell (not Linux, or miri). Linux shows 15 bytes of a name, so the
/// prefixes in this file are short.
fn os_threads(prefix: &str) -> Option<usize> {
    if cfg!(miri) || !cfg!(target_os = "linux") {
        return None;
    }
    let wanted = format!("{prefix}-");
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let count = tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(&wanted))
        })
        .count();
    Some(count)
}

fn pool(name: &str, config: PoolConfig) -> ThreadPoolBulkhead {
    ThreadPoolBulkhead::new(name, config).expect("valid configuration")
}

// Compile-time: the public types cross threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ThreadPoolBulkhead>();
    send_sync::<TaskHandle<String>>();
    send_sync::<BulkheadError>();
};

// ---------------------------------------------------------------------------------------------
// Lazy spawn
// ---------------------------------------------------------------------------------------------

#[test]
fn no_thread_starts_before_the_first_call() {
    let pool = pool("lazy", PoolConfig::new(4).queue_capacity(2));
    let stats = pool.stats();
    assert_eq!(stats.live_threads, 0, "no worker before the first call");
    assert_eq!((stats.running, stats.queued, stats.submitted), (0, 0, 0));
    if let Some(n) = os_threads("lazy") {
        assert_eq!(
            n, 0,
            "no OS thread named after the pool before the first call"
        );
    }

    assert_eq!(pool.execute(|| 7).unwrap(), 7);
    // One call needed one worker, not max_threads of them.
    assert_eq!(pool.stats().live_threads, 1);
    if let Some(n) = os_threads("lazy") {
        assert_eq!(n, 1, "exactly one worker thread after one call");
    }
}

#[test]
fn an_idle_worker_is_reused_rather_than_a_new_one_spawned() {
    let pool = pool("reuse", PoolConfig::new(8));
    let mut workers = HashSet::new();
    for _ in 0..200 {
        let id = pool.execute(|| thread::current().id()).unwrap();
        workers.insert(id);
    }
    // Each call found the previous call's worker idle (its slot is freed before the result
    // comes back), so the pool never needed a second thread.
    assert_eq!(workers.len(), 1, "sequential calls should share one worker");
    assert_eq!(pool.stats().live_threads, 1);
    assert_eq!(pool.stats().peak_running, 1);
    if let Some(n) = os_threads("reuse") {
        assert_eq!(n, 1);
    }
}

#[test]
fn workers_spawn_on_demand_up_to_max_threads() {
    let pool = pool("grow", PoolConfig::new(3).queue_capacity(3));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..3 {
        handles.push(submit_blocker(&pool, &latch, &tx, i));
        expect_start(&rx);
        // One more busy task, one more worker: never more than needed.
        assert_eq!(pool.stats().live_threads, i + 1);
    }
    // Past max_threads the pool queues instead of growing.
    for i in 3..6 {
        handles.push(submit_blocker(&pool, &latch, &tx, i));
    }
    let stats = pool.stats();
    assert_eq!(stats.live_threads, 3);
    assert_eq!((stats.running, stats.queued), (3, 3));
    if let Some(n) = os_threads("grow") {
        assert_eq!(n, 3);
    }
    latch.open();
    for handle in handles {
        assert!(handle.join().unwrap());
    }
    assert_eq!(pool.stats().peak_running, 3);
}

// ---------------------------------------------------------------------------------------------
// Thread names
// ---------------------------------------------------------------------------------------------

#[test]
fn worker_threads_are_named_after_the_pool() {
    let pool = pool("inventory", PoolConfig::new(3));
    let name = pool
        .execute(|| thread::current().name().map(str::to_owned))
        .unwrap()
        .expect("workers are named");
    assert!(
        name.starts_with("inventory-"),
        "the pool name comes first, so `top -H` shows it: {name:?}"
    );

    // Three workers busy at once have three distinct names, all with the prefix.
    let together = Arc::new(BoundedBarrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let together = Arc::clone(&together);
            pool.submit(move || {
                assert!(together.wait(), "three workers should run at once");
                thread::current().name().unwrap().to_owned()
            })
            .unwrap()
        })
        .collect();
    let names: HashSet<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(names.len(), 3, "every worker has its own name: {names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("inventory-")),
        "{names:?}"
    );
}

#[test]
fn thread_name_prefix_overrides_the_pool_name() {
    let pool = pool(
        "a-very-long-pool-name",
        PoolConfig::new(1).thread_name_prefix("inv"),
    );
    let name = pool
        .execute(|| thread::current().name().map(str::to_owned))
        .unwrap()
        .unwrap();
    assert!(name.starts_with("inv-"), "{name:?}");
    if let Some(n) = os_threads("inv") {
        assert_eq!(n, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Threads before queue
// ---------------------------------------------------------------------------------------------

#[test]
fn a_task_runs_at_once_while_a_worker_can_still_be_added() {
    // java.util.concurrent would queue here (it grows past the core size only once the queue
    // is full); promise 3 says a task waits only while all max_threads workers are busy.
    let pool = pool("tbq", PoolConfig::new(4).core_threads(1).queue_capacity(4));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for busy in 0..4 {
        // `busy` tasks are blocked; the next one must start without any of them finishing.
        handles.push(submit_blocker(&pool, &latch, &tx, busy));
        assert_eq!(
            expect_start(&rx),
            busy,
            "task {busy} should start while {busy} workers are busy and the pool may grow"
        );
        let stats = pool.stats();
        assert_eq!((stats.running, stats.queued), (busy + 1, 0));
    }
    // Now every worker is busy: the fifth task is queued and does not start.
    handles.push(submit_blocker(&pool, &latch, &tx, 4));
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued, stats.live_threads), (4, 1, 4));
    // Give a misbehaving pool a chance to start it anyway (no synchronisation depends on this).
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "a queued task must not start while every worker is busy"
    );
    latch.open();
    assert_eq!(expect_start(&rx), 4);
    for handle in handles {
        assert!(handle.join().unwrap());
    }
}

#[test]
fn a_free_worker_takes_a_new_task_even_with_others_busy() {
    // Two workers: one blocked, one idle. Calls through the idle one keep completing while the
    // other is stuck: the pool never parks work behind a busy worker when another is free.
    let pool = pool("free", PoolConfig::new(2).queue_capacity(5));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let stuck = submit_blocker(&pool, &latch, &tx, 0);
    expect_start(&rx);
    for i in 0..100 {
        assert_eq!(pool.execute(move || i * 2).unwrap(), i * 2);
    }
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued, stats.live_threads), (1, 0, 2));
    latch.open();
    assert!(stuck.join().unwrap());
}

// Regression: `Job::run` used to free the task's slot (`Admission::release`, which also makes
// the worker count as idle: `in_flight < live`) before the worker dropped the task. For a
// detached task (handle dropped, or an `execute_timeout` caller that timed out while the task
// ran) the result was then dropped on the worker, in `drop(job)` in `worker::run`. While that
// drop ran, `try_admit` saw `in_flight (0) < live (1)`, spawned no worker, and the next task
// waited in the queue behind the drop although `max_threads` allowed another worker (promise
// 3); a drop that never returned stranded every later task. Now a detached task's outcome is
// dropped before its slot is freed.
#[test]
fn a_worker_still_dropping_a_detached_result_is_not_counted_idle() {
    // A detached task's result is dropped on its worker. If that drop takes a while (a
    // connection closed politely, a large structure freed), the worker is still busy; a new
    // task must then get a second worker (max_threads is 2) instead of waiting behind the drop.
    struct SlowDrop {
        dropping: mpsc::Sender<()>,
        release: Latch,
    }
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            let _ = self.dropping.send(());
            self.release.wait();
        }
    }
    let pool = pool("slowdrop", PoolConfig::new(2).queue_capacity(1));
    let go = Gate::new();
    let release = Gate::new();
    let (dropping_tx, dropping) = mpsc::channel();
    let (g, r) = (go.clone(), release.clone());
    let detached = pool
        .submit(move || {
            g.wait();
            SlowDrop {
                dropping: dropping_tx,
                release: r,
            }
        })
        .unwrap();
    drop(detached); // nobody will take the result: the worker drops it
    go.open();
    dropping
        .recv_timeout(PATIENCE)
        .expect("the worker is dropping the result");

    let (tx, rx) = mpsc::channel();
    let next = pool.submit(move || tx.send(()).unwrap()).unwrap();
    let started = rx.recv_timeout(PATIENCE).is_ok();
    release.open();
    next.join().unwrap();
    assert!(
        started,
        "the new task waited behind a worker busy dropping a detached result, though the \
         pool could start another worker (live_threads = {})",
        pool.stats().live_threads
    );
}

#[test]
fn a_worker_dropping_a_timed_out_caller_s_result_is_not_counted_idle() {
    // The same regression through the other way a result loses its taker: the caller's
    // `join_timeout` gave up while the task was running.
    struct SlowDrop {
        dropping: mpsc::Sender<()>,
        release: Latch,
    }
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            let _ = self.dropping.send(());
            self.release.wait();
        }
    }
    let pool = pool("slowto", PoolConfig::new(2).queue_capacity(1));
    let (go, release) = (Gate::new(), Gate::new());
    let (started_tx, started) = mpsc::channel();
    let (dropping_tx, dropping) = mpsc::channel();
    let (g, r) = (go.clone(), release.clone());
    let handle = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            g.wait();
            SlowDrop {
                dropping: dropping_tx,
                release: r,
            }
        })
        .unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    let outcome = handle.join_timeout(Duration::from_millis(1));
    assert!(outcome.is_err_and(|e| e.is_timeout()));
    go.open();
    dropping
        .recv_timeout(PATIENCE)
        .expect("the worker is dropping the result");

    let (tx, rx) = mpsc::channel();
    let next = pool.submit(move || tx.send(()).unwrap()).unwrap();
    let started_next = rx.recv_timeout(PATIENCE).is_ok();
    release.open();
    next.join().unwrap();
    assert!(
        started_next,
        "the new task waited behind a worker busy dropping an abandoned result"
    );
}

// ---------------------------------------------------------------------------------------------
// FIFO
// ---------------------------------------------------------------------------------------------

#[test]
fn queued_tasks_start_in_submission_order() {
    let n = if cfg!(miri) { 10 } else { 200 };
    let pool = pool("fifo", PoolConfig::new(1).queue_capacity(n));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let blocker = submit_blocker(&pool, &latch, &tx, usize::MAX);
    expect_start(&rx);

    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let order = Arc::clone(&order);
            pool.submit(move || order.lock().unwrap().push(i)).unwrap()
        })
        .collect();
    assert_eq!(pool.stats().queued, n);
    latch.open();
    assert!(blocker.join().unwrap());
    for handle in handles {
        handle.join().unwrap();
    }
    let order = order.lock().unwrap();
    assert_eq!(
        *order,
        (0..n).collect::<Vec<_>>(),
        "queued tasks ran out of order"
    );
}

#[test]
fn fifo_order_survives_cancellations_in_the_queue() {
    let n = if cfg!(miri) { 9 } else { 90 };
    let pool = pool("fifoc", PoolConfig::new(1).queue_capacity(n));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let blocker = submit_blocker(&pool, &latch, &tx, usize::MAX);
    expect_start(&rx);

    let order = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let order = Arc::clone(&order);
            pool.submit(move || order.lock().unwrap().push(i)).unwrap()
        })
        .collect();
    // Withdraw every third task while all of them are still waiting.
    for (i, handle) in handles.iter().enumerate() {
        if i % 3 == 1 {
            assert!(handle.cancel(), "task {i} is queued and can be cancelled");
        }
    }
    assert_eq!(pool.stats().queued, n - n / 3);
    latch.open();
    assert!(blocker.join().unwrap());
    for (i, handle) in handles.into_iter().enumerate() {
        let outcome = handle.join();
        if i % 3 == 1 {
            assert!(outcome.unwrap_err().is_cancelled());
        } else {
            outcome.unwrap();
        }
    }
    let expected: Vec<usize> = (0..n).filter(|i| i % 3 != 1).collect();
    assert_eq!(*order.lock().unwrap(), expected);
    assert_eq!(pool.stats().cancelled, (n / 3) as u64);
}

// ---------------------------------------------------------------------------------------------
// Keep-alive
// ---------------------------------------------------------------------------------------------

/// Starts `n` tasks that are all running at the same time (so the pool has `n` workers), waits
/// until the test has seen them all running, and lets them finish.
fn occupy_workers(pool: &ThreadPoolBulkhead, n: usize, check: impl FnOnce()) {
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let handles: Vec<_> = (0..n)
        .map(|i| submit_blocker(pool, &latch, &tx, i))
        .collect();
    for _ in 0..n {
        expect_start(&rx);
    }
    check();
    latch.open();
    for handle in handles {
        assert!(handle.join().unwrap());
    }
}

#[test]
fn workers_above_core_threads_retire_after_keep_alive() {
    // resilience4j's FixedThreadPoolBulkhead test pool: max 2, core 1, keep-alive 10 ms; here
    // four workers over one core, so three must go.
    let keep_alive = Duration::from_millis(50);
    let pool = pool(
        "retire",
        PoolConfig::new(4).core_threads(1).keep_alive(keep_alive),
    );
    occupy_workers(&pool, 4, || {
        assert_eq!(pool.stats().live_threads, 4);
        if let Some(n) = os_threads("retire") {
            assert_eq!(n, 4);
        }
    });
    wait_until(PATIENCE, "the three surplus workers have retired", || {
        pool.stats().live_threads == 1
    });
    if os_threads("retire").is_some() {
        wait_until(PATIENCE, "the retired threads have exited", || {
            os_threads("retire") == Some(1)
        });
    }
    // The core worker stays, however long it is idle. Checking that nothing happens needs
    // time to pass: several keep-alive periods.
    thread::sleep(keep_alive * 6);
    assert_eq!(pool.stats().live_threads, 1, "the core worker must stay");
    if let Some(n) = os_threads("retire") {
        assert_eq!(n, 1);
    }
    // And the pool still works, on the worker that stayed.
    assert_eq!(pool.execute(|| 5).unwrap(), 5);
    assert_eq!(pool.stats().live_threads, 1);
}

#[test]
fn core_threads_default_to_max_threads_and_stay() {
    let keep_alive = Duration::from_millis(20);
    let pool = pool("stay", PoolConfig::new(3).keep_alive(keep_alive));
    assert_eq!(pool.stats().core_threads, 3);
    occupy_workers(&pool, 3, || ());
    // Ten keep-alive periods of idleness: nobody may leave.
    thread::sleep(keep_alive * 10);
    assert_eq!(pool.stats().live_threads, 3);
    if let Some(n) = os_threads("stay") {
        assert_eq!(n, 3);
    }
}

#[test]
fn zero_core_threads_lets_every_worker_retire_and_the_pool_restarts_on_demand() {
    let pool = pool(
        "zcore",
        PoolConfig::new(2)
            .core_threads(0)
            .keep_alive(Duration::from_millis(20)),
    );
    for round in 0..3 {
        occupy_workers(&pool, 2, || assert_eq!(pool.stats().live_threads, 2));
        wait_until(PATIENCE, "every worker has retired", || {
            pool.stats().live_threads == 0
        });
        if os_threads("zcore").is_some() {
            wait_until(PATIENCE, "every worker thread has exited", || {
                os_threads("zcore") == Some(0)
            });
        }
        // A call after full retirement spawns a fresh worker and succeeds.
        assert_eq!(pool.execute(move || round).unwrap(), round);
    }
    let stats = pool.stats();
    assert_eq!(stats.rejected, 0);
    assert_eq!(stats.completed, 3 * 3);
}

// Regression: the queue woke the longest-idle sleeper first, so under a trickle of one call
// every T, N idle workers each got a task every N·T and none ever reached its keep-alive
// (reproduced: 4 of 4 alive with a call every 30 ms and a keep-alive of 200 ms). The most
// recently idle worker is woken now (LIFO), so one stays warm and the surplus retire.
#[test]
fn surplus_workers_retire_under_a_trickle() {
    let keep_alive = Duration::from_millis(200);
    let pool = pool(
        "trickle",
        PoolConfig::new(4).core_threads(0).keep_alive(keep_alive),
    );
    occupy_workers(&pool, 4, || assert_eq!(pool.stats().live_threads, 4));
    // The trickle's pace is the workload, not synchronisation: one call every 30 ms, each
    // far shorter than the keep-alive, until three workers are gone (or the patience ends).
    let until = std::time::Instant::now() + PATIENCE;
    let mut calls = 0_u64;
    while pool.stats().live_threads > 1 {
        assert!(
            std::time::Instant::now() < until,
            "after {calls} trickled calls {} of 4 workers are still alive",
            pool.stats().live_threads
        );
        assert_eq!(pool.execute(|| 1).unwrap(), 1);
        calls += 1;
        thread::sleep(Duration::from_millis(30));
    }
    // Every call was served meanwhile, by the worker that stayed warm.
    let stats = pool.stats();
    assert_eq!(stats.completed, 4 + calls);
    assert_eq!(stats.rejected, 0);
}

#[test]
fn prestart_starts_the_core_workers_before_the_first_call() {
    let pool = pool("pre", PoolConfig::new(4).core_threads(3).prestart(true));
    let stats = pool.stats();
    assert_eq!(
        (stats.live_threads, stats.running, stats.submitted),
        (3, 0, 0)
    );
    if os_threads("pre").is_some() {
        // A new thread names itself as it starts.
        wait_until(PATIENCE, "three prestarted threads named pre-*", || {
            os_threads("pre") == Some(3)
        });
    }
    // The first calls are served by those workers: no new thread starts for them.
    occupy_workers(&pool, 3, || assert_eq!(pool.stats().live_threads, 3));
    // A fourth concurrent call still grows the pool to max_threads.
    occupy_workers(&pool, 4, || assert_eq!(pool.stats().live_threads, 4));
    // Without core threads there is nothing to prestart.
    let none = self::pool("pre0", PoolConfig::new(2).core_threads(0).prestart(true));
    assert_eq!(none.stats().live_threads, 0);
}

// ---------------------------------------------------------------------------------------------
// Sequential reuse: the slot is freed before the result is handed back
// ---------------------------------------------------------------------------------------------

#[test]
fn back_to_back_execute_on_a_one_slot_pool_never_rejects() {
    let n = if cfg!(miri) { 50 } else { 10_000 };
    let pool = pool("seq", PoolConfig::new(1));
    for i in 0..n {
        match pool.execute(move || i) {
            Ok(v) => assert_eq!(v, i),
            Err(err) => panic!("call {i} of a lone caller was refused: {err}"),
        }
    }
    let stats = pool.stats();
    assert_eq!(stats.rejected, 0);
    assert_eq!(stats.completed, n as u64);
    assert_eq!((stats.running, stats.queued), (0, 0));
}

#[test]
fn back_to_back_submit_join_and_execute_timeout_never_reject() {
    let n = if cfg!(miri) { 50 } else { 1_000 };
    let pool = pool("seqj", PoolConfig::new(1));
    for i in 0..n {
        let handle = pool
            .submit(move || i)
            .unwrap_or_else(|e| panic!("submit {i}: {e}"));
        assert_eq!(handle.join().unwrap(), i);
        let v = pool
            .execute_timeout(PATIENCE, move || i + 1)
            .unwrap_or_else(|e| panic!("execute_timeout {i}: {e}"));
        assert_eq!(v, i + 1);
    }
    assert_eq!(pool.stats().rejected, 0);
}

#[test]
fn as_many_sequential_callers_as_slots_are_never_rejected() {
    // Each caller has at most one call in flight and there is a slot for each: a rejection
    // could only come from a caller's own finished task still holding its slot.
    let callers = 4;
    let calls = if cfg!(miri) { 10 } else { 500 };
    let pool = pool("seqm", PoolConfig::new(callers));
    let start = std::sync::Barrier::new(callers);
    thread::scope(|s| {
        for c in 0..callers {
            let (pool, start) = (&pool, &start);
            s.spawn(move || {
                start.wait();
                for i in 0..calls {
                    if let Err(err) = pool.execute(move || i) {
                        panic!("caller {c}, call {i}: {err}");
                    }
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(stats.rejected, 0);
    assert_eq!(stats.completed, (callers * calls) as u64);
    assert!(stats.peak_running <= callers);
}

// ---------------------------------------------------------------------------------------------
// submit / join / is_finished
// ---------------------------------------------------------------------------------------------

#[test]
fn submit_and_join_hand_back_each_task_s_value() {
    let pool = pool("values", PoolConfig::new(3).queue_capacity(10));
    let handles: Vec<TaskHandle<String>> = (0..10)
        .map(|i| pool.submit(move || format!("v{}", i * i)).unwrap())
        .collect();
    for h in &handles {
        assert_eq!(h.bulkhead(), "values");
        let debug = format!("{h:?}");
        assert!(debug.contains("values"), "{debug}");
    }
    let values: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let expected: Vec<String> = (0..10).map(|i| format!("v{}", i * i)).collect();
    assert_eq!(values, expected);

    // Non-Copy, heap-owning values move across intact.
    let big = pool.submit(|| vec![7_u8; 1 << 16]).unwrap().join().unwrap();
    assert_eq!(big.len(), 1 << 16);
    assert!(big.iter().all(|&b| b == 7));

    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.completed), (11, 11));
    assert_eq!(
        stats.submitted,
        stats.completed + stats.panicked + stats.expired + stats.cancelled
    );
}

#[test]
fn a_detached_task_still_runs() {
    let pool = pool("detach", PoolConfig::new(1));
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    drop(
        pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
            .unwrap(),
    );
    wait_until(PATIENCE, "the detached task has run", || {
        ran.load(Ordering::SeqCst) == 1
    });
    wait_until(PATIENCE, "the detached task's slot is free", || {
        pool.stats().completed == 1
    });
    assert_eq!(pool.execute(|| 1).unwrap(), 1);
}

#[test]
fn is_finished_turns_true_once_the_task_has_an_outcome() {
    let pool = pool("fin", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let running = submit_blocker(&pool, &latch, &tx, 0);
    expect_start(&rx);
    let queued = pool.submit(|| 2).unwrap();
    assert!(!running.is_finished(), "a blocked task is not finished");
    assert!(!queued.is_finished(), "a queued task is not finished");

    latch.open();
    wait_until(PATIENCE, "both tasks have finished", || {
        running.is_finished() && queued.is_finished()
    });
    // `join` of a finished task returns without blocking.
    assert!(running.join().unwrap());
    assert_eq!(queued.join().unwrap(), 2);

    // A cancelled task is finished too: join will not block.
    let latch = Gate::new();
    let blocker = submit_blocker(&pool, &latch, &tx, 1);
    expect_start(&rx);
    let withdrawn = pool.submit(|| 3).unwrap();
    assert!(withdrawn.cancel());
    assert!(withdrawn.is_finished());
    assert!(withdrawn.join().unwrap_err().is_cancelled());
    latch.open();
    assert!(blocker.join().unwrap());
}

// ---------------------------------------------------------------------------------------------
// Configuration as reported (resilience4j testCustomSettings / testCreateWithDefaults)
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_and_debug_report_the_configuration() {
    let config = PoolConfig::new(2)
        .core_threads(1)
        .queue_capacity(10)
        .keep_alive(Duration::from_millis(10));
    let pool = pool("test", config.clone());
    assert_eq!(pool.name(), "test");
    assert_eq!(pool.config(), config);
    let stats = pool.stats();
    assert_eq!(stats.name, "test");
    assert_eq!(
        (stats.max_threads, stats.core_threads, stats.queue_capacity),
        (2, 1, 10)
    );
    assert!(!stats.is_shutdown);
    let debug = format!("{pool:?}");
    assert!(debug.contains("test"), "{debug}");

    // The textbook default: 10 threads and a queue of 5.
    let defaults = ThreadPoolBulkhead::new("defaults", PoolConfig::default()).unwrap();
    let stats = defaults.stats();
    assert_eq!(
        (stats.max_threads, stats.core_threads, stats.queue_capacity),
        (10, 10, 5)
    );
    assert_eq!(stats.live_threads, 0);
}

#[test]
fn invalid_configuration_is_an_error_not_a_panic() {
    let cases = [
        (PoolConfig::new(0), "max_threads"),
        (PoolConfig::new(2).core_threads(3), "core_threads"),
        (PoolConfig::new(2).keep_alive(Duration::ZERO), "keep_alive"),
        (
            PoolConfig::new(2).default_timeout(Duration::ZERO),
            "default_timeout",
        ),
        (PoolConfig::new(PoolConfig::MAX_THREADS + 1), "max_threads"),
    ];
    for (config, field) in cases {
        let err = ThreadPoolBulkhead::new("cfg", config.clone()).unwrap_err();
        assert_eq!(err.bulkhead(), "cfg", "{config:?}");
        assert_eq!(err.field(), field, "{config:?}");
        assert!(err.to_string().contains("cfg"), "{err}");
    }
    assert_eq!(
        ThreadPoolBulkhead::new("", PoolConfig::new(1))
            .unwrap_err()
            .field(),
        "name"
    );
}
