//! Admission: exact capacity, fail-fast rejection, and the books that count it.
//!
//! Ported in spirit from Polly's bulkhead scenario matrix (`BulkheadScenarios` /
//! `BulkheadSpecsBase.Should_control_executions_per_specification`), Hystrix's
//! `testRejectedThreadWithNoFallback`, and resilience4j's thread-pool bulkhead
//! ("bulkhead full" on a pool with a synchronous queue and with a bounded queue).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadError, PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{Gate, Latch, assert_books_balance};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long any wait in this file may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn pool(name: &str, config: PoolConfig) -> ThreadPoolBulkhead {
    ThreadPoolBulkhead::new(name, config).expect("valid configuration")
}

// ---------------------------------------------------------------------------------------------
// Exact capacity
// ---------------------------------------------------------------------------------------------

#[test]
fn a_simultaneous_burst_admits_exactly_threads_plus_queue_every_round() {
    const WORKERS: usize = 5;
    const QUEUE: usize = 5;
    const CALLERS: usize = 15;
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for round in 0..rounds {
        // A fresh pool each round, so admission races with workers that are just starting.
        let pool = pool("burst", PoolConfig::new(WORKERS).queue_capacity(QUEUE));
        let latch = Gate::new();
        let start = Barrier::new(CALLERS);
        let outcomes: Vec<Result<TaskHandle<bool>, BulkheadError>> = thread::scope(|s| {
            let callers: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let (pool, latch, start) = (&pool, latch.clone(), &start);
                    s.spawn(move || {
                        start.wait();
                        pool.submit(move || latch.wait())
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
        let rejected = outcomes
            .iter()
            .filter(|o| o.as_ref().is_err_and(BulkheadError::is_rejected))
            .count();
        assert_eq!(
            (accepted, rejected),
            (WORKERS + QUEUE, CALLERS - WORKERS - QUEUE),
            "round {round}: the compartment must hold exactly {} calls",
            WORKERS + QUEUE
        );
        let stats = pool.stats();
        assert_eq!((stats.submitted, stats.rejected), (10, 5), "round {round}");
        assert_eq!(
            (stats.running, stats.queued),
            (WORKERS, QUEUE),
            "round {round}"
        );

        latch.open();
        for handle in outcomes.into_iter().flatten() {
            assert!(handle.join().unwrap(), "round {round}");
        }
        assert_books_balance(&pool);
        assert_eq!(pool.stats().completed, 10);
    }
}

#[test]
fn capacity_is_full_before_any_worker_has_started() {
    // Submitted back to back from one thread, the calls outrun the workers they spawn: the
    // capacity must not depend on workers having taken tasks off the queue (a bounded
    // channel's try_send would reject early here), nor admit more while they start.
    let rounds = if cfg!(miri) { 3 } else { 200 };
    let mut rejected_before_any_start = 0;
    for round in 0..rounds {
        let pool = pool("early", PoolConfig::new(2).queue_capacity(3));
        let latch = Gate::new();
        let started = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let (latch, started) = (latch.clone(), Arc::clone(&started));
                pool.submit(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    latch.wait()
                })
                .unwrap_or_else(|e| panic!("round {round}: call {i} refused below capacity: {e}"))
            })
            .collect();
        let err = pool.submit(|| false).unwrap_err();
        if started.load(Ordering::SeqCst) == 0 {
            rejected_before_any_start += 1;
        }
        assert!(err.is_rejected(), "round {round}: {err}");
        latch.open();
        for handle in handles {
            assert!(handle.join().unwrap());
        }
        assert_books_balance(&pool);
    }
    // Not asserted (it depends on the scheduler), but worth seeing with --nocapture.
    println!("{rejected_before_any_start}/{rounds} rejections happened before any task started");
}

#[test]
fn a_slot_freed_is_a_slot_reusable_and_no_more() {
    let pool = pool("refill", PoolConfig::new(2).queue_capacity(2));
    let latches: Vec<Latch> = (0..6).map(|_| Gate::new()).collect();
    let mut handles = Vec::new();
    for latch in &latches[..4] {
        let latch = latch.clone();
        handles.push(pool.submit(move || latch.wait()).unwrap());
    }
    assert!(pool.submit(|| true).unwrap_err().is_rejected());
    // Free exactly one slot: exactly one more call fits.
    latches[0].open();
    assert!(handles.remove(0).join().unwrap());
    let latch = latches[4].clone();
    handles.push(pool.submit(move || latch.wait()).unwrap());
    assert!(pool.submit(|| true).unwrap_err().is_rejected());
    for latch in &latches {
        latch.open();
    }
    for handle in handles {
        assert!(handle.join().unwrap());
    }
    assert_eq!(pool.stats().rejected, 2);
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// The Rejected error and its counting
// ---------------------------------------------------------------------------------------------

#[test]
fn rejected_names_the_bulkhead_and_counts_once() {
    let pool = pool("payment", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let l = latch.clone();
    let busy = pool.submit(move || l.wait()).unwrap();
    let l = latch.clone();
    let queued = pool.submit(move || l.wait()).unwrap();

    let ran = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&ran);
    let err = pool
        .execute(move || r.store(true, Ordering::SeqCst))
        .unwrap_err();
    assert!(err.is_rejected());
    assert!(!err.is_timeout() && !err.is_panicked() && !err.is_shutdown());
    assert_eq!(err.bulkhead(), "payment");
    let text = err.to_string();
    assert!(
        text.contains("payment"),
        "Display names the bulkhead: {text}"
    );
    match &err {
        BulkheadError::Rejected { name, capacity, .. } => {
            assert_eq!(&**name, "payment");
            assert_eq!(*capacity, 2, "capacity is max_threads + queue_capacity");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(pool.stats().rejected, 1, "one refusal, counted once");
    assert_eq!(err.clone().to_string(), text, "clones say the same");
    assert!(err.into_panic().is_none());

    // Each way in counts exactly once too.
    assert!(pool.submit(|| ()).unwrap_err().is_rejected());
    assert_eq!(pool.stats().rejected, 2);
    assert!(
        pool.execute_timeout(PATIENCE, || ())
            .unwrap_err()
            .is_rejected()
    );
    assert_eq!(pool.stats().rejected, 3);
    assert_eq!(pool.stats().submitted, 2, "a refused call is not submitted");

    latch.open();
    assert!(busy.join().unwrap());
    assert!(queued.join().unwrap());
    assert!(!ran.load(Ordering::SeqCst), "a rejected call never runs");
    assert_books_balance(&pool);
}

#[test]
fn a_rejected_closure_is_dropped_not_kept() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let pool = pool("dropme", PoolConfig::new(1));
    let latch = Gate::new();
    let l = latch.clone();
    let busy = pool.submit(move || l.wait()).unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let guard = Dropped(Arc::clone(&drops));
    let err = pool
        .submit(move || {
            let _keep = &guard;
        })
        .unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the refused closure was dropped"
    );
    latch.open();
    assert!(busy.join().unwrap());
}

#[test]
fn bulkhead_error_is_a_std_error_and_crosses_threads() {
    fn check<E: std::error::Error + Clone + Send + Sync + 'static>() {}
    check::<BulkheadError>();
    let pool = pool("errs", PoolConfig::new(1));
    let latch = Gate::new();
    let l = latch.clone();
    let busy = pool.submit(move || l.wait()).unwrap();
    let err = pool.execute(|| ()).unwrap_err();
    // Moves across threads and boxes as a dyn Error.
    let boxed: Box<dyn std::error::Error + Send + Sync> =
        thread::spawn(move || Box::new(err) as _).join().unwrap();
    assert!(boxed.to_string().contains("errs"));
    latch.open();
    busy.join().unwrap();
}

#[test]
fn submitted_plus_rejected_equals_attempts_under_contention() {
    let callers = 4;
    let attempts = if cfg!(miri) { 20 } else { 500 };
    let pool = pool("attempts", PoolConfig::new(2).queue_capacity(2));
    let start = Barrier::new(callers + 1);
    let stop = AtomicBool::new(false);
    let (ok, refused) = thread::scope(|s| {
        // A watcher: no snapshot, at any instant, shows more than the compartment holds.
        let watcher = s.spawn(|| {
            start.wait();
            let mut snapshots = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                let st = pool.stats();
                assert!(st.running <= 2 && st.queued <= 2, "over capacity: {st:?}");
                snapshots += 1;
            }
            snapshots
        });
        let workers: Vec<_> = (0..callers)
            .map(|c| {
                let (pool, start) = (&pool, &start);
                s.spawn(move || {
                    start.wait();
                    let (mut ok, mut refused) = (0_u64, 0_u64);
                    for i in 0..attempts {
                        // Mix of tasks that return at once and ones that yield for a moment.
                        match pool.execute(move || {
                            if (i + c) % 3 == 0 {
                                thread::yield_now();
                            }
                            i
                        }) {
                            Ok(v) => {
                                assert_eq!(v, i);
                                ok += 1;
                            }
                            Err(e) => {
                                assert!(e.is_rejected(), "{e}");
                                refused += 1;
                            }
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        let totals = workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        stop.store(true, Ordering::SeqCst);
        assert!(watcher.join().unwrap() > 0);
        totals
    });
    let stats = pool.stats();
    assert_eq!(stats.submitted, ok, "submitted counts the admitted calls");
    assert_eq!(stats.rejected, refused, "rejected counts the refused calls");
    assert_eq!(
        stats.submitted + stats.rejected,
        (callers * attempts) as u64,
        "submitted + rejected == attempts"
    );
    assert_eq!(stats.completed, ok);
    assert!(stats.peak_running <= 2);
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// Ports: Hystrix, resilience4j
// ---------------------------------------------------------------------------------------------

#[test]
fn hystrix_rejected_thread_with_no_fallback() {
    // Hystrix HystrixCommandTest.testRejectedThreadWithNoFallback: a single-thread pool with
    // a queue of one; the first command runs, the second waits, the third is rejected at
    // once (it never runs); the first two then complete successfully and the metrics show
    // one rejection and two successes.
    let pool = pool("hystrix", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let (started_tx, started) = mpsc::channel();
    let l = latch.clone();
    let first = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            l.wait();
            "first"
        })
        .unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    let second = pool.submit(|| "second").unwrap();

    let third_ran = Arc::new(AtomicBool::new(false));
    let t = Arc::clone(&third_ran);
    let before = Instant::now();
    let third = pool.execute(move || {
        t.store(true, Ordering::SeqCst);
        "third"
    });
    let waited = before.elapsed();
    let err = third.unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert!(
        waited < Duration::from_secs(2),
        "rejection is fail-fast, took {waited:?}"
    );

    latch.open();
    assert_eq!(first.join().unwrap(), "first");
    assert_eq!(second.join().unwrap(), "second");
    assert!(!third_ran.load(Ordering::SeqCst));
    let stats = pool.stats();
    assert_eq!(
        (stats.submitted, stats.completed, stats.rejected),
        (2, 2, 1)
    );
    assert_books_balance(&pool);
}

#[test]
fn resilience4j_full_with_a_synchronous_queue() {
    // resilience4j ThreadPoolBulkhead with queueCapacity 0 and one thread: a second call while
    // the first runs gets BulkheadFullException naming the bulkhead.
    let pool = pool("sync-queue", PoolConfig::new(1));
    assert_eq!(pool.stats().queue_capacity, 0);
    let latch = Gate::new();
    let l = latch.clone();
    let busy = pool.submit(move || l.wait()).unwrap();
    let err = pool.submit(|| true).unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(err.bulkhead(), "sync-queue");
    let stats = pool.stats();
    assert_eq!((stats.running, stats.queued), (1, 0));
    latch.open();
    assert!(busy.join().unwrap());
    // Once the slot is free the next call goes through.
    assert!(pool.execute(|| true).unwrap());
}

#[test]
fn resilience4j_queue_depth_and_remaining_capacity() {
    // resilience4j's metrics: queue depth, remaining queue capacity, thread pool size.
    let pool = pool("r4j", PoolConfig::new(2).core_threads(1).queue_capacity(10));
    let latch = Gate::new();
    let mut handles = Vec::new();
    for n in 1..=12 {
        let l = latch.clone();
        handles.push(pool.submit(move || l.wait()).unwrap());
        let s = pool.stats();
        assert_eq!(s.running, n.min(2));
        assert_eq!(s.queued, n.saturating_sub(2), "queue depth after {n} calls");
        assert_eq!(s.queue_capacity - s.queued, 10 - n.saturating_sub(2));
    }
    assert!(pool.submit(|| true).unwrap_err().is_rejected());
    latch.open();
    for h in handles {
        assert!(h.join().unwrap());
    }
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// Huge queue capacity
// ---------------------------------------------------------------------------------------------

#[test]
fn a_usize_max_queue_neither_aborts_nor_overflows() {
    let config = PoolConfig::new(2).queue_capacity(usize::MAX);
    assert_eq!(
        config.capacity(),
        usize::MAX,
        "max_threads + queue saturates"
    );
    let pool = pool("huge", config);
    assert_eq!(pool.stats().queue_capacity, usize::MAX);

    let queued = if cfg!(miri) { 20 } else { 2_000 };
    let latch = Gate::new();
    let handles: Vec<_> = (0..2 + queued)
        .map(|i| {
            let l = latch.clone();
            pool.submit(move || {
                l.wait();
                i
            })
            .unwrap_or_else(|e| panic!("call {i} refused by an unbounded pool: {e}"))
        })
        .collect();
    let s = pool.stats();
    assert_eq!((s.running, s.queued, s.rejected), (2, queued, 0));
    latch.open();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i);
    }
    assert_books_balance(&pool);

    // The largest pool with the largest queue is accepted as well (no threads start).
    let widest = ThreadPoolBulkhead::new(
        "widest",
        PoolConfig::new(PoolConfig::MAX_THREADS).queue_capacity(usize::MAX),
    )
    .unwrap();
    assert_eq!(widest.stats().queue_capacity, usize::MAX);
    assert_eq!(widest.stats().live_threads, 0);
}

// ---------------------------------------------------------------------------------------------
// Polly's scenario matrix
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queuing,
    Executing,
    Completed,
    Cancelled,
    Rejected,
}

enum Command {
    Complete,
    /// Polly cancels an executing action through its cancellation token; a thread cannot be
    /// stopped from outside, so here the task is told to give up, co-operatively.
    CancelCooperatively,
}

struct Action {
    status: Arc<Mutex<Status>>,
    command: mpsc::Sender<Command>,
    handle: Option<TaskHandle<()>>,
}

impl Action {
    fn status(&self) -> Status {
        *self.status.lock().unwrap()
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    queuing: usize,
    executing: usize,
    completed: usize,
    cancelled: usize,
    rejected: usize,
    /// Free worker slots as the pool reports them: `max_threads - running`.
    bulkhead_free: usize,
    /// Free queue slots as the pool reports them: `queue_capacity - queued`.
    queue_free: usize,
}

fn tally(actions: &[Action], pool: &ThreadPoolBulkhead) -> Tally {
    let mut t = Tally::default();
    for a in actions {
        match a.status() {
            Status::Queuing => t.queuing += 1,
            Status::Executing => t.executing += 1,
            Status::Completed => t.completed += 1,
            Status::Cancelled => t.cancelled += 1,
            Status::Rejected => t.rejected += 1,
        }
    }
    let s = pool.stats();
    t.bulkhead_free = s.max_threads - s.running;
    t.queue_free = s.queue_capacity - s.queued;
    t
}

fn expect_tally(actions: &[Action], pool: &ThreadPoolBulkhead, expected: Tally, scenario: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let actual = tally(actions, pool);
        if actual == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{scenario}: expected {expected:?}, got {actual:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Polly's `Should_control_executions_per_specification`, on the thread-pool bulkhead.
fn run_polly_scenario(
    max_parallelization: usize,
    max_queuing: usize,
    total: usize,
    mut cancel_queuing: bool,
    mut cancel_executing: bool,
    description: &str,
) {
    let scenario = format!(
        "MaxParallelization {max_parallelization}; MaxQueuing {max_queuing}; TotalActions \
         {total}; CancelQueuing {cancel_queuing}; CancelExecuting {cancel_executing}: \
         {description}"
    );
    let pool = pool(
        "polly",
        PoolConfig::new(max_parallelization).queue_capacity(max_queuing),
    );

    // Throw every action at the bulkhead.
    let mut actions: Vec<Action> = (0..total)
        .map(|_| {
            let status = Arc::new(Mutex::new(Status::Queuing));
            let (command, orders) = mpsc::channel();
            let s = Arc::clone(&status);
            let handle = pool.submit(move || {
                *s.lock().unwrap() = Status::Executing;
                let outcome = match orders.recv_timeout(PATIENCE * 2) {
                    Ok(Command::CancelCooperatively) => Status::Cancelled,
                    Ok(Command::Complete) | Err(_) => Status::Completed,
                };
                *s.lock().unwrap() = outcome;
            });
            let handle = match handle {
                Ok(h) => Some(h),
                Err(e) => {
                    assert!(e.is_rejected(), "{scenario}: {e}");
                    *status.lock().unwrap() = Status::Rejected;
                    None
                }
            };
            Action {
                status,
                command,
                handle,
            }
        })
        .collect();

    let mut expected = Tally {
        executing: total.min(max_parallelization),
        rejected: total.saturating_sub(max_parallelization + max_queuing),
        queuing: max_queuing.min(total.saturating_sub(max_parallelization)),
        ..Tally::default()
    };
    expected.bulkhead_free = max_parallelization - expected.executing;
    expected.queue_free = max_queuing - expected.queuing;
    expect_tally(&actions, &pool, expected, &scenario);

    let mut cancelled_queued = 0_u64;
    // Complete or cancel actions one by one; queued ones take the freed places.
    while expected.executing > 0 {
        if cancel_queuing {
            let action = actions
                .iter()
                .find(|a| a.status() == Status::Queuing)
                .expect("an action is queuing");
            assert!(
                action.handle.as_ref().unwrap().cancel(),
                "{scenario}: a queued action can be cancelled"
            );
            *action.status.lock().unwrap() = Status::Cancelled;
            cancelled_queued += 1;
            expected.cancelled += 1;
            expected.queuing -= 1;
            expected.queue_free += 1;
            cancel_queuing = false;
        } else {
            let action = actions
                .iter()
                .find(|a| a.status() == Status::Executing)
                .expect("an action is executing");
            // A running task cannot be withdrawn from outside: cancel() says so.
            assert!(!action.handle.as_ref().unwrap().cancel(), "{scenario}");
            if cancel_executing {
                action.command.send(Command::CancelCooperatively).unwrap();
                expected.cancelled += 1;
                cancel_executing = false;
            } else {
                action.command.send(Command::Complete).unwrap();
                expected.completed += 1;
            }
            if expected.queuing > 0 {
                expected.queuing -= 1;
                expected.queue_free += 1;
            } else {
                expected.executing -= 1;
                expected.bulkhead_free += 1;
            }
        }
        expect_tally(&actions, &pool, expected, &scenario);
    }

    // Every admitted action has exactly one outcome for its handle.
    for action in &mut actions {
        if let Some(handle) = action.handle.take() {
            match handle.join() {
                Ok(()) => assert!(
                    matches!(action.status(), Status::Completed | Status::Cancelled),
                    "{scenario}"
                ),
                Err(e) => assert!(e.is_cancelled(), "{scenario}: {e}"),
            }
        }
    }
    let s = pool.stats();
    assert_eq!(s.rejected, expected.rejected as u64, "{scenario}");
    assert_eq!(s.cancelled, cancelled_queued, "{scenario}");
    assert_eq!(
        s.completed,
        (expected.completed + expected.cancelled) as u64 - cancelled_queued,
        "{scenario}: co-operatively cancelled tasks still complete"
    );
    assert_books_balance(&pool);
}

#[test]
fn polly_bulkhead_scenarios() {
    // Polly's BulkheadScenarios, one for one.
    run_polly_scenario(
        5,
        0,
        3,
        false,
        false,
        "A bulkhead, with no queue, not even oversubscribed.",
    );
    run_polly_scenario(
        20,
        0,
        3,
        false,
        true,
        "A high capacity bulkhead, with no queue, not even oversubscribed; cancel some executing.",
    );
    run_polly_scenario(
        3,
        0,
        4,
        false,
        false,
        "A bulkhead, with no queue, oversubscribed.",
    );
    run_polly_scenario(
        3,
        1,
        5,
        false,
        false,
        "A bulkhead, with not enough queue to avoid rejections, oversubscribed.",
    );
    run_polly_scenario(
        6,
        3,
        9,
        true,
        true,
        "A bulkhead, with not enough queue to avoid rejections, oversubscribed; cancel some \
         queuing, and some executing.",
    );
    run_polly_scenario(
        5,
        3,
        8,
        false,
        false,
        "A bulkhead, with enough queue to avoid rejections, oversubscribed.",
    );
    run_polly_scenario(
        6,
        3,
        9,
        true,
        true,
        "A bulkhead, with enough queue to avoid rejections, oversubscribed; cancel some \
         queuing, and some executing.",
    );
    run_polly_scenario(
        1,
        6,
        5,
        true,
        true,
        "A very tight capacity bulkhead, but which allows a huge queue; enough for all \
         actions to be gradually processed; cancel some queuing, and some executing.",
    );
}

#[test]
fn execution_and_queue_matrix() {
    // The same expectations over a grid of sizes and loads, including the edges (no queue,
    // exactly full, one over).
    let pairs: &[(usize, usize)] = &[(1, 0), (1, 1), (2, 3), (4, 0), (3, 5)];
    for &(threads, queue) in pairs {
        for total in 0..=threads + queue + 2 {
            let cancel_queuing = total > threads && queue > 0;
            run_polly_scenario(threads, queue, total, cancel_queuing, total > 0, "matrix");
        }
    }
}
