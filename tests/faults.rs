//! Fault injection: the operating system refusing a thread, a task that never returns, the
//! manager dropped mid-flight, and destructors that panic where nobody is watching.
//!
//! A bulkhead is a safety device, so each of these must end in a clear error or a served
//! task — never a hang, never a panic, never a lost outcome or a leaked slot. The OS refusing
//! a thread is simulated with the pool's hidden test hook,
//! `ThreadPoolBulkhead::inject_spawn_failures(n)`, which makes the next `n` worker spawns
//! fail as `std::thread::Builder::spawn` does when `pthread_create` returns `EAGAIN`. (tokio's
//! blocking pool panics there, or hands out a handle that never completes: the failure modes
//! STYLE.md tells this crate to avoid.) One test has the OS refuse for real: a worker stack of
//! half the address space, which the configuration accepts and no kernel grants.

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Once, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadError, BulkheadManager, PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{Gate, OpenOnDrop, threads_named, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// A task that reports on `started` once it runs, blocks on `gate`, then returns `value`.
fn blocker(
    gate: &Arc<Gate>,
    started: &mpsc::Sender<()>,
    value: u32,
) -> impl FnOnce() -> u32 + Send + 'static {
    let gate = Arc::clone(gate);
    let started = started.clone();
    move || {
        let _ = started.send(());
        gate.wait();
        value
    }
}

fn expect_started(started: &mpsc::Receiver<()>, n: usize) {
    for i in 0..n {
        started
            .recv_timeout(LONG)
            .unwrap_or_else(|_| panic!("blocker {i} of {n} never started"));
    }
}

/// Waits, boundedly, until no thread named `<prefix>-…` is left. The pool's own threads are
/// joined once `await_termination` says true, but a joined thread lingers in /proc for the
/// moment the kernel takes to reap it, and the pool's short-lived reaper thread (named after
/// the pool too) may still be on its way out.
fn await_no_threads_named(prefix: &str) {
    wait_until(LONG, &format!("no thread named {prefix}-* is left"), || {
        threads_named(prefix) == 0
    });
}

/// The payload of the panics this file raises on purpose; the panic hook keeps them quiet.
struct FaultPanic;

fn quiet_fault_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<FaultPanic>().is_none() {
                default(info);
            }
        }));
    });
}

/// Panics when dropped, after counting the drop.
struct PanicOnDrop(Arc<AtomicUsize>);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic::panic_any(FaultPanic);
    }
}

/// Asserts `err` is the clear error of a refused spawn, naming `bulkhead`.
fn assert_spawn_error(err: &BulkheadError, bulkhead: &str) {
    let BulkheadError::Spawn { name, message, .. } = err else {
        panic!("expected BulkheadError::Spawn, got {err:?}");
    };
    assert_eq!(&**name, bulkhead);
    assert_eq!(err.bulkhead(), bulkhead);
    assert!(!message.is_empty(), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains(&format!("'{bulkhead}'")), "{shown}");
    assert!(shown.contains("could not start a worker thread"), "{shown}");
    assert!(shown.contains(message.as_str()), "{shown}");
    // None of the other kinds of failure.
    assert!(
        !(err.is_rejected()
            || err.is_timeout()
            || err.is_panicked()
            || err.is_shutdown()
            || err.is_cancelled()),
        "{err:?}"
    );
}

/// The books of a quiet pool add up, for `attempts` calls in all.
fn assert_books(pool: &ThreadPoolBulkhead, attempts: u64) {
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (0, 0), "{s:?}");
    assert_eq!(s.submitted + s.rejected, attempts, "{s:?}");
    assert_eq!(
        s.submitted,
        s.completed + s.panicked + s.expired + s.cancelled,
        "{s:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The OS refuses a thread
// ---------------------------------------------------------------------------------------------

#[test]
fn a_refused_spawn_with_no_worker_alive_is_a_clear_error_and_the_pool_recovers() {
    let pool = ThreadPoolBulkhead::new(
        "payments",
        PoolConfig::new(2)
            .queue_capacity(2)
            .thread_name_prefix("flt-clear"),
    )
    .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    // Dropped with the closure: a strong count of one means the closure is gone for good.
    let token = Arc::new(());
    let task = || {
        let ran = Arc::clone(&ran);
        let token = Arc::clone(&token);
        move || {
            let _token = token;
            ran.store(true, Ordering::SeqCst);
            1_u32
        }
    };

    // Each way to call: the caller gets the error at once, and nothing is left behind.
    pool.inject_spawn_failures(1);
    let err = pool.execute(task()).unwrap_err();
    assert_spawn_error(&err, "payments");
    pool.inject_spawn_failures(1);
    let err = pool.execute_timeout(LONG, task()).unwrap_err();
    assert_spawn_error(&err, "payments");
    pool.inject_spawn_failures(1);
    let err = pool.submit(task()).unwrap_err();
    assert_spawn_error(&err, "payments");

    assert!(!ran.load(Ordering::SeqCst), "a refused task ran");
    assert_eq!(Arc::strong_count(&token), 1, "a refused closure was kept");
    let s = pool.stats();
    assert_eq!(
        (s.submitted, s.cancelled, s.rejected, s.completed),
        (3, 3, 0, 0),
        "a refused task counts as admitted, then cancelled: {s:?}"
    );
    assert_eq!((s.live_threads, s.running, s.queued), (0, 0, 0), "{s:?}");
    assert_eq!(threads_named("flt-clear"), 0);
    assert_books(&pool, 3);

    // Spawns succeed again: the next calls run, on a worker started for them.
    assert_eq!(pool.execute(|| 7).unwrap(), 7);
    assert_eq!(pool.submit(|| 8).unwrap().join().unwrap(), 8);
    assert_eq!(pool.execute_timeout(LONG, task()).unwrap(), 1);
    assert!(ran.load(Ordering::SeqCst));
    let s = pool.stats();
    assert!(s.live_threads >= 1, "{s:?}");
    assert_eq!((s.completed, s.cancelled), (3, 3), "{s:?}");
    assert_books(&pool, 6);

    pool.shutdown();
    assert!(pool.await_termination(LONG));
    await_no_threads_named("flt-clear");
}

#[test]
fn a_refused_spawn_with_workers_alive_is_served_by_them() {
    let pool = ThreadPoolBulkhead::new(
        "served",
        PoolConfig::new(4)
            .queue_capacity(2)
            .thread_name_prefix("flt-served"),
    )
    .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let busy = pool.submit(blocker(&gate, &started_tx, 10)).unwrap();
    expect_started(&started, 1);
    assert_eq!(pool.stats().live_threads, 1);

    // The next call needs a second worker; the OS refuses it. The caller is not told of a
    // failure that does not concern it: its task waits for the worker that exists.
    pool.inject_spawn_failures(1);
    let served = pool.submit(|| 20).unwrap();
    let s = pool.stats();
    assert_eq!(
        s.live_threads, 1,
        "the refused worker must not be counted: {s:?}"
    );
    assert!(s.live_threads < s.max_threads);
    assert_eq!(threads_named("flt-served"), 1);
    assert!(!served.is_finished(), "it ran without a worker");

    gate.open();
    assert_eq!(busy.join_timeout(LONG).unwrap(), 10);
    assert_eq!(
        served
            .join_timeout(LONG)
            .expect("served by the existing worker"),
        20
    );
    let s = pool.stats();
    assert_eq!((s.submitted, s.completed, s.cancelled), (2, 2, 0), "{s:?}");
    assert!(s.live_threads < s.max_threads, "{s:?}");
    assert_books(&pool, 2);

    // And the pool grows again once the OS agrees.
    let gate = Gate::new();
    let _release_again = OpenOnDrop(Arc::clone(&gate));
    let both: Vec<_> = (0..2)
        .map(|i| pool.submit(blocker(&gate, &started_tx, i)).unwrap())
        .collect();
    expect_started(&started, 2);
    assert_eq!(pool.stats().live_threads, 2);
    gate.open();
    for (i, handle) in both.into_iter().enumerate() {
        assert_eq!(handle.join_timeout(LONG).unwrap(), i as u32);
    }
    pool.shutdown();
    assert!(pool.await_termination(LONG));
    await_no_threads_named("flt-served");
}

#[test]
fn the_os_really_refusing_a_thread_is_the_same_clear_error_every_time() {
    // No hook this time: a stack of half the address space is a thread no kernel grants
    // (`pthread_create` fails with EAGAIN), yet the configuration is valid (any non-zero
    // stack size is). Every call fails the same clean way, and nothing is left behind.
    let pool = Arc::new(
        ThreadPoolBulkhead::new(
            "no-room",
            PoolConfig::new(2)
                .queue_capacity(2)
                .stack_size(usize::MAX / 2)
                .thread_name_prefix("flt-noroom"),
        )
        .unwrap(),
    );
    let ran = Arc::new(AtomicUsize::new(0));
    let attempts = 4 * 25;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
            thread::spawn(move || {
                for i in 0..25 {
                    let ran = Arc::clone(&ran);
                    let task = move || ran.fetch_add(1, Ordering::SeqCst);
                    // Bounded waits only: a caller left waiting shows as a Timeout, which
                    // `assert_spawn_error` refuses, instead of hanging the test.
                    let result = if i % 2 == 0 {
                        pool.execute_timeout(LONG, task)
                    } else {
                        pool.submit(task).and_then(|h| h.join_timeout(LONG))
                    };
                    match result {
                        Err(err) if err.is_rejected() => {}
                        Err(err) => assert_spawn_error(&err, "no-room"),
                        Ok(_) => panic!("a task ran on a thread the OS refused"),
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().expect("a caller panicked");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    let s = pool.stats();
    assert_eq!(s.cancelled, s.submitted, "{s:?}");
    assert_eq!((s.live_threads, s.completed), (0, 0), "{s:?}");
    assert_books(&pool, attempts);
    assert_eq!(threads_named("flt-noroom"), 0);
    pool.shutdown();
    assert!(pool.await_termination(LONG));
}

/// One round of callers racing into a pool whose first spawns the OS refuses.
fn refused_spawn_round(round: usize, callers: usize) {
    let max_threads = 1 + round % 2;
    let pool = Arc::new(
        ThreadPoolBulkhead::new(
            "crowd",
            PoolConfig::new(max_threads)
                .queue_capacity(callers)
                .thread_name_prefix("flt-crowd"),
        )
        .unwrap(),
    );
    // Refuse every worker the pool would start for the crowd.
    pool.inject_spawn_failures(max_threads);
    let barrier = Arc::new(Barrier::new(callers));
    let outcomes: Vec<_> = (0..callers)
        .map(|i| {
            let pool = Arc::clone(&pool);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<usize, BulkheadError> {
                barrier.wait();
                let handle: TaskHandle<usize> = pool.submit(move || i)?;
                handle.join_timeout(LONG)
            })
        })
        .collect();
    let mut values = 0;
    let mut refused = 0;
    for (i, caller) in outcomes.into_iter().enumerate() {
        match caller.join().expect("a caller panicked") {
            Ok(value) => {
                assert_eq!(value, i, "round {round}: caller {i} got another's value");
                values += 1;
            }
            Err(err) if err.is_timeout() => panic!(
                "round {round} (max_threads {max_threads}): caller {i} waited {LONG:?} for a \
                 task queued behind a refused spawn: {:?}",
                pool.stats()
            ),
            Err(err) => {
                assert_spawn_error(&err, "crowd");
                refused += 1;
            }
        }
    }
    let s = pool.stats();
    assert_eq!(s.completed, values, "round {round}: {s:?}");
    assert_eq!(s.cancelled, refused, "round {round}: {s:?}");
    assert_eq!((s.expired, s.timed_out, s.rejected), (0, 0, 0), "{s:?}");
    assert_books(&pool, callers as u64);
    // Spawns succeed again: the pool serves.
    assert_eq!(pool.execute(move || round).unwrap(), round);
    pool.shutdown();
    assert!(pool.await_termination(LONG), "round {round}: {s:?}");
}

#[test]
fn tasks_queued_behind_a_refused_spawn_with_no_worker_all_get_an_outcome() {
    // Many short rounds, each with a crowd arriving at once, so that callers are admitted
    // before, during and after the refused spawn is undone. The narrowest race here (a caller
    // admitted while the refused worker is still counted, whose task reaches the queue after
    // the failing caller emptied it) is rarely hit this way; the ignored regression test
    // below widens that window on purpose and hits it every time.
    let rounds = if cfg!(miri) { 4 } else { 400 };
    for round in 0..rounds {
        refused_spawn_round(round, 8);
    }
    wait_until(LONG, "every crowd worker exits", || {
        threads_named("flt-crowd") == 0
    });
}

/// Runs `submit(task)` on a thread of its own with a large stack (the tasks below return large
/// values), after `ready` is passed and once `admitted_first` holds; joins the task with a
/// generous bound and returns the first byte of its value.
fn spawn_caller<T: AsRef<[u8]> + Send + 'static>(
    pool: &Arc<ThreadPoolBulkhead>,
    ready: &Arc<Barrier>,
    task: impl Fn() -> T + Send + Clone + 'static,
    admitted_first: impl Fn(&ThreadPoolBulkhead) -> bool + Send + 'static,
) -> thread::JoinHandle<Result<u8, BulkheadError>> {
    let pool = Arc::clone(pool);
    let ready = Arc::clone(ready);
    thread::Builder::new()
        .stack_size(BALLAST_STACK)
        .spawn(move || {
            // Touch the stack pages `submit` needs for a task of this size once, so that the
            // real call below spends its time after admission, not before it.
            let warm =
                ThreadPoolBulkhead::new("warm", PoolConfig::new(1).stack_size(BALLAST_STACK))
                    .unwrap();
            let _ = warm.submit(task.clone()).unwrap().join();
            ready.wait();
            let deadline = Instant::now() + LONG;
            while !admitted_first(&pool) {
                assert!(
                    Instant::now() < deadline,
                    "the first caller was never admitted"
                );
                std::hint::spin_loop();
            }
            pool.submit(task)?
                .join_timeout(LONG)
                .map(|value| value.as_ref()[0])
        })
        .unwrap()
}

/// Stack for the threads that handle the large results below (a debug build copies a value
/// several times on its way through `submit` and `run`).
const BALLAST_STACK: usize = 64 << 20;

// Regression (found by this test): a task admitted while a refused spawn was being undone
// was stranded in the queue with no worker, and its caller waited for ever (`join`,
// `execute`) or timed out.
//
// The story. `max_threads = 1`, no worker alive, the OS refuses the next spawn. Caller A is
// admitted and counts a worker (live 0 -> 1); between its admission and the undo of the
// refused spawn (live 1 -> 0, then "no worker at all: drain the queue with Spawn errors") there
// was a window. Caller B, admitted inside it, saw live == 1 == max_threads and did not spawn:
// the worker it counted on was A's, which would never exist. If B's task reached the channel
// after A had drained it, nothing ever took it. Invariant (I) of src/pool/README.md was broken
// and the gauges lied meanwhile (running 1, live_threads 0).
//
// The fix: the admission word counts spawns in flight, so B learns at admission that it may be
// counting on a worker whose thread is not granted yet; it then waits for the verdict and
// repairs (I) itself (start a worker, or with none alive and the OS refusing, complete its own
// task with the Spawn error) before `submit` returns. Modelled by the loom model
// `refused_spawn_vs_racing_admission`.
//
// The window is a few instructions wide for small tasks; to hit it every time this test
// widens it on B's side only: B's task returns a 4 MiB value, so `start` spends a millisecond
// allocating and copying the `Task` between B's admission and its `send`, while A's small
// task is handled quickly. B submits as soon as A's admission is visible in the stats. Before
// the fix this stranded B within the first dozen rounds (observed: rounds 0 to 11), so 50
// rounds make a reliable reproduction.
#[test]
fn a_task_admitted_while_a_refused_spawn_is_undone_is_not_stranded() {
    const SMALL: usize = 64 << 10;
    const BIG: usize = 4 << 20;
    for round in 0..50 {
        let pool = Arc::new(
            ThreadPoolBulkhead::new(
                "window",
                PoolConfig::new(1)
                    .queue_capacity(4)
                    .stack_size(BALLAST_STACK)
                    .thread_name_prefix("flt-window"),
            )
            .unwrap(),
        );
        pool.inject_spawn_failures(1);
        let ready = Arc::new(Barrier::new(2));
        let a = spawn_caller(&pool, &ready, || vec![1_u8; SMALL], |_| true);
        let b = spawn_caller(
            &pool,
            &ready,
            || [2_u8; BIG],
            |pool| pool.stats().submitted > 0,
        );
        let a = a.join().expect("caller A panicked");
        let b = b.join().expect("caller B panicked");
        // A asked for the worker the OS refused: its clear error, or its value if B's
        // admission came late enough to start a worker that served both.
        match &a {
            Ok(value) => assert_eq!(*value, 1),
            Err(err) => assert_spawn_error(err, "window"),
        }
        match &b {
            Ok(value) => assert_eq!(*value, 2),
            Err(err) if err.is_timeout() => panic!(
                "round {round}: B's task was stranded for {LONG:?} with no worker: {:?}",
                pool.stats()
            ),
            Err(err) => assert_spawn_error(err, "window"),
        }
        assert_books(&pool, 2);
        pool.shutdown();
        assert!(pool.await_termination(LONG));
    }
    await_no_threads_named("flt-window");
}

#[test]
fn refused_spawns_during_a_storm_never_hang_nor_panic_and_the_books_add_up() {
    // Callers keep coming while the OS refuses one spawn in three: every caller gets its
    // value, a Spawn error or a rejection, and the books balance.
    const CALLERS: usize = 6;
    const PER_CALLER: usize = 300;
    let pool = Arc::new(
        ThreadPoolBulkhead::new(
            "storm",
            PoolConfig::new(3)
                .core_threads(0)
                .queue_capacity(3)
                // Short, so that workers retire mid-storm and spawns keep happening.
                .keep_alive(Duration::from_millis(1))
                .thread_name_prefix("flt-storm"),
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let injector = {
        let pool = Arc::clone(&pool);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut injected = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                pool.inject_spawn_failures(1);
                injected += 1;
                thread::yield_now();
            }
            injected
        })
    };
    let callers: Vec<_> = (0..CALLERS)
        .map(|k| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || {
                let (mut ok, mut spawn, mut rejected) = (0_u64, 0_u64, 0_u64);
                for i in 0..PER_CALLER {
                    let id = k * PER_CALLER + i;
                    let result = if i % 2 == 0 {
                        pool.execute_timeout(LONG, move || id)
                    } else {
                        pool.submit(move || id)
                            .and_then(|handle| handle.join_timeout(LONG))
                    };
                    match result {
                        Ok(value) => {
                            assert_eq!(value, id);
                            ok += 1;
                        }
                        Err(err) if err.is_rejected() => rejected += 1,
                        Err(err) => {
                            assert!(!err.is_timeout(), "caller {k} was left waiting: {err:?}");
                            assert_spawn_error(&err, "storm");
                            spawn += 1;
                        }
                    }
                }
                (ok, spawn, rejected)
            })
        })
        .collect();
    let (mut ok, mut spawn, mut rejected) = (0, 0, 0);
    for caller in callers {
        let (o, s, r) = caller.join().expect("a caller panicked");
        ok += o;
        spawn += s;
        rejected += r;
    }
    stop.store(true, Ordering::SeqCst);
    let injected = injector.join().unwrap();
    pool.inject_spawn_failures(0);
    let s = pool.stats();
    assert_eq!(ok + spawn + rejected, (CALLERS * PER_CALLER) as u64);
    assert_eq!(s.completed, ok, "{s:?}");
    assert_eq!(s.cancelled, spawn, "{s:?}");
    assert_eq!(s.rejected, rejected, "{s:?}");
    assert!(s.live_threads <= s.max_threads, "{s:?}");
    assert_books(&pool, (CALLERS * PER_CALLER) as u64);
    assert!(injected > 0);
    assert_eq!(pool.execute(|| 1).unwrap(), 1);
    pool.shutdown();
    assert!(pool.await_termination(LONG));
    await_no_threads_named("flt-storm");
}

// ---------------------------------------------------------------------------------------------
// A task that never returns
// ---------------------------------------------------------------------------------------------

#[test]
fn a_task_that_never_returns_holds_termination_until_it_is_released() {
    let pool = ThreadPoolBulkhead::new(
        "stuck",
        PoolConfig::new(2)
            .queue_capacity(2)
            .thread_name_prefix("flt-stuck"),
    )
    .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let stuck = pool.submit(blocker(&gate, &started_tx, 1)).unwrap();
    expect_started(&started, 1);
    let finished = pool.submit(|| 2).unwrap();
    assert_eq!(finished.join_timeout(LONG).unwrap(), 2);

    pool.shutdown();

    // Well past any shutdown of an idle worker: only the stuck task can hold it.
    let timeout = Duration::from_millis(300);
    let begun = Instant::now();
    assert!(
        !pool.await_termination(timeout),
        "terminated with a task still running"
    );
    let waited = begun.elapsed();
    assert!(
        waited >= timeout,
        "await_termination gave up early, after {waited:?}"
    );
    assert!(
        waited < timeout + LONG,
        "await_termination overran its timeout: {waited:?}"
    );
    assert!(!pool.is_terminated());
    // Asking again is no different; the idle worker left, the stuck one stays.
    assert!(!pool.await_termination(Duration::from_millis(10)));
    wait_until(LONG, "the idle worker retires and is gone", || {
        pool.stats().live_threads == 1 && threads_named("flt-stuck") == 1
    });
    assert_eq!(pool.stats().running, 1);

    gate.open();
    assert_eq!(stuck.join_timeout(LONG).unwrap(), 1);
    assert!(pool.await_termination(LONG));
    assert!(pool.is_terminated());
    await_no_threads_named("flt-stuck");
    assert_books(&pool, 2);
}

#[test]
fn shutdown_now_with_a_task_that_never_returns_discards_the_queue_but_waits_for_the_task() {
    let pool = ThreadPoolBulkhead::new(
        "stuck-now",
        PoolConfig::new(1)
            .queue_capacity(3)
            .thread_name_prefix("flt-stnow"),
    )
    .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let stuck = pool.submit(blocker(&gate, &started_tx, 1)).unwrap();
    expect_started(&started, 1);
    let queued: Vec<_> = (0..3).map(|i| pool.submit(move || i).unwrap()).collect();

    pool.shutdown_now();

    for handle in queued {
        let err = handle.join_timeout(LONG).unwrap_err();
        assert!(err.is_shutdown(), "{err:?}");
    }
    let begun = Instant::now();
    assert!(!pool.await_termination(Duration::from_millis(200)));
    assert!(begun.elapsed() >= Duration::from_millis(200));
    assert_eq!(pool.stats().running, 1);

    gate.open();
    assert_eq!(
        stuck.join_timeout(LONG).unwrap(),
        1,
        "a running task keeps its outcome"
    );
    assert!(pool.await_termination(LONG));
    let s = pool.stats();
    assert_eq!((s.completed, s.cancelled), (1, 3), "{s:?}");
    assert_books(&pool, 4);
    await_no_threads_named("flt-stnow");
}

// ---------------------------------------------------------------------------------------------
// Dropping the manager mid-flight
// ---------------------------------------------------------------------------------------------

#[test]
fn dropping_the_manager_mid_flight_neither_blocks_nor_loses_any_callers_outcome() {
    let manager = BulkheadManager::builder()
        // Callers blocked in `execute` hold this one.
        .pool(
            "held",
            PoolConfig::new(2)
                .queue_capacity(2)
                .thread_name_prefix("flt-held"),
        )
        // Nobody but the manager holds this one: it goes with the manager.
        .pool(
            "orphan",
            PoolConfig::new(1)
                .queue_capacity(3)
                .thread_name_prefix("flt-orph"),
        )
        .build()
        .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();

    // Two callers blocked in execute on running tasks, two more on queued ones.
    let held = manager.pool("held");
    let (running_tx, running_rx) = mpsc::channel();
    let callers: Vec<_> = (0..4_u32)
        .map(|i| {
            let pool = Arc::clone(&held);
            let task = blocker(&gate, &started_tx, i);
            let running_tx = running_tx.clone();
            thread::spawn(move || {
                let _ = running_tx.send(());
                pool.execute(task)
            })
        })
        .collect();
    for _ in 0..4 {
        running_rx.recv_timeout(LONG).unwrap();
    }
    wait_until(LONG, "two tasks run and two are queued", || {
        let s = held.stats();
        (s.running, s.queued) == (2, 2)
    });
    drop(held);

    // The orphan: one task running, two queued behind it, one of them detached.
    let orphan = manager.pool("orphan");
    let orphan_running = orphan.submit(blocker(&gate, &started_tx, 10)).unwrap();
    let orphan_queued = orphan.submit(|| 11).unwrap();
    let detached_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&detached_ran);
    drop(
        orphan
            .submit(move || flag.store(true, Ordering::SeqCst))
            .unwrap(),
    );
    drop(orphan);
    expect_started(&started, 3);

    let (dropped_tx, dropped) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(manager);
        dropped_tx.send(()).unwrap();
    });
    dropped
        .recv_timeout(LONG)
        .expect("dropping the manager blocked on running tasks");
    dropper.join().unwrap();
    assert!(
        !gate.is_open(),
        "the drop must have returned while tasks still ran"
    );

    gate.open();
    let mut values: Vec<u32> = callers
        .into_iter()
        .map(|caller| {
            caller
                .join()
                .expect("a caller panicked")
                .expect("a caller lost its outcome")
        })
        .collect();
    values.sort_unstable();
    assert_eq!(values, [0, 1, 2, 3]);
    assert_eq!(orphan_running.join_timeout(LONG).unwrap(), 10);
    assert_eq!(
        orphan_queued.join_timeout(LONG).unwrap(),
        11,
        "a queued task of a dropped pool still runs (graceful shutdown)"
    );
    wait_until(LONG, "the detached task runs", || {
        detached_ran.load(Ordering::SeqCst)
    });
    // Once their last owner let go, both pools shut down and their workers left.
    wait_until(LONG, "the dropped pools' workers exit", || {
        threads_named("flt-held") + threads_named("flt-orph") == 0
    });
}

// ---------------------------------------------------------------------------------------------
// Destructors that panic
// ---------------------------------------------------------------------------------------------

#[test]
fn a_panicking_drop_of_a_closure_that_never_runs_kills_no_worker_and_leaks_no_slot() {
    quiet_fault_panics();
    let pool = Arc::new(
        ThreadPoolBulkhead::new(
            "drop-closure",
            PoolConfig::new(1)
                .queue_capacity(1)
                .thread_name_prefix("flt-dclos"),
        )
        .unwrap(),
    );
    let drops = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let doomed = || {
        let bomb = PanicOnDrop(Arc::clone(&drops));
        let ran = Arc::clone(&ran);
        move || {
            let _bomb = &bomb;
            ran.fetch_add(1, Ordering::SeqCst);
        }
    };
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();

    // Three ways a queued closure is dropped without running: cancel, a caller's deadline,
    // shutdown_now. The first two happen on the caller's thread.
    let busy = pool.submit(blocker(&gate, &started_tx, 1)).unwrap();
    expect_started(&started, 1);
    let queued = pool.submit(doomed()).unwrap();
    assert!(queued.cancel(), "a queued task is cancellable");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the closure was dropped");
    assert!(queued.join().unwrap_err().is_cancelled());
    // The slot is free again: the queue of one takes another task at once.
    let queued = pool.submit(doomed()).unwrap();
    let err = queued.join_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    let err = pool
        .execute_timeout(Duration::from_millis(20), doomed())
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    let s = pool.stats();
    assert_eq!((s.cancelled, s.expired, s.queued), (1, 2, 0), "{s:?}");

    // The worker survives them all and serves the next task.
    gate.open();
    assert_eq!(busy.join_timeout(LONG).unwrap(), 1);
    assert_eq!(pool.execute_timeout(LONG, || 5).unwrap(), 5);
    assert_eq!(pool.stats().live_threads, 1);
    assert_eq!(threads_named("flt-dclos"), 1);

    // shutdown_now drops a queued closure on the thread that discards it.
    let gate = Gate::new();
    let _release_again = OpenOnDrop(Arc::clone(&gate));
    let busy = pool.submit(blocker(&gate, &started_tx, 2)).unwrap();
    expect_started(&started, 1);
    let queued = pool.submit(doomed()).unwrap();
    pool.shutdown_now();
    assert!(queued.join_timeout(LONG).unwrap_err().is_shutdown());
    assert_eq!(drops.load(Ordering::SeqCst), 4);
    gate.open();
    assert_eq!(busy.join_timeout(LONG).unwrap(), 2);
    assert!(pool.await_termination(LONG));

    assert_eq!(ran.load(Ordering::SeqCst), 0, "a dropped closure ran");
    let s = pool.stats();
    assert_eq!((s.cancelled, s.expired, s.completed), (2, 2, 3), "{s:?}");
    assert_books(&pool, 7);
}

#[test]
fn a_panicking_drop_of_a_detached_tasks_result_kills_no_worker_and_leaks_no_slot() {
    quiet_fault_panics();
    let pool = ThreadPoolBulkhead::new(
        "drop-result",
        PoolConfig::new(1)
            .queue_capacity(4)
            .thread_name_prefix("flt-dres"),
    )
    .unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let busy = pool.submit(blocker(&gate, &started_tx, 1)).unwrap();
    expect_started(&started, 1);

    // Queued behind the blocker and detached before they run: nobody is left to take their
    // results, so the worker drops them — and each drop panics.
    for _ in 0..3 {
        let drops = Arc::clone(&drops);
        drop(pool.submit(move || PanicOnDrop(drops)).unwrap());
    }
    assert_eq!(pool.stats().queued, 3);
    gate.open();
    assert_eq!(busy.join_timeout(LONG).unwrap(), 1);
    wait_until(LONG, "the detached tasks ran and were dropped", || {
        drops.load(Ordering::SeqCst) == 3
    });
    wait_until(LONG, "the pool is quiet", || {
        let s = pool.stats();
        (s.running, s.queued) == (0, 0)
    });

    // A caller that gave up on a running task leaves its result to the worker as well.
    let gate = Gate::new();
    let _release_again = OpenOnDrop(Arc::clone(&gate));
    let abandoned = {
        let (gate, started, drops) = (Arc::clone(&gate), started_tx.clone(), Arc::clone(&drops));
        pool.submit(move || {
            let _ = started.send(());
            gate.wait();
            PanicOnDrop(drops)
        })
        .unwrap()
    };
    expect_started(&started, 1);
    let err = match abandoned.join_timeout(Duration::from_millis(20)) {
        Err(err) => err,
        Ok(bomb) => {
            std::mem::forget(bomb);
            panic!("the caller got a value from a task blocked on a closed gate");
        }
    };
    assert!(err.is_timeout(), "{err:?}");
    gate.open();
    wait_until(LONG, "the abandoned result was dropped", || {
        drops.load(Ordering::SeqCst) == 4
    });
    wait_until(LONG, "the pool is quiet", || {
        let s = pool.stats();
        (s.running, s.queued) == (0, 0)
    });

    // The one worker is still there, every slot is free again, and the results count as
    // completed (the tasks returned; only their results' destructors panicked).
    let s = pool.stats();
    assert_eq!(s.live_threads, 1, "the worker died: {s:?}");
    assert_eq!(threads_named("flt-dres"), 1);
    assert_eq!((s.completed, s.panicked, s.expired), (5, 0, 0), "{s:?}");
    let handles: Vec<_> = (0..5).map(|i| pool.submit(move || i).unwrap()).collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join_timeout(LONG).unwrap(), i);
    }
    assert_books(&pool, 10);
    pool.shutdown();
    assert!(pool.await_termination(LONG));
    await_no_threads_named("flt-dres");
}
