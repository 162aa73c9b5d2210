//! Deadlines and cancellation: `execute_timeout`, `join_timeout`, `cancel`, `default_timeout`,
//! and `Deadline::current()` inside the task.
//!
//! Promise 5: a caller gets `Timeout` within its deadline (counted from submission) plus
//! scheduling noise; a task still queued when its caller gives up never runs and frees its
//! slot at once (`expired` / `cancelled`); a task that already started keeps its slot until it
//! really finishes.
//!
//! Ported in spirit from the MicroProfile Fault Tolerance TCK: `TimeoutUninterruptableTest`
//! (`testTimeoutAsyncBulkhead`, `testTimeoutAsyncBulkheadQueueTimed`) and
//! `AsyncCancellationTest` (`testCancelledButRemainsInBulkhead`, `testCancelledWhileQueued`).
//!
//! Timing asserts are generous upper bounds only (deadline + 2 s): the machine may be slow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadError, Deadline, PoolConfig, TaskHandle, ThreadPoolBulkhead};

mod common;
use common::{Gate, Latch, assert_books_balance, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long any wait in this file may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// The scheduling noise a deadline may overrun by before a test calls it late.
const NOISE: Duration = Duration::from_secs(2);

fn pool(name: &str, config: PoolConfig) -> ThreadPoolBulkhead {
    ThreadPoolBulkhead::new(name, config).expect("valid configuration")
}

/// Submits a task that reports when it starts and then blocks on `latch`; returns once the
/// task is running.
fn start_blocker(pool: &ThreadPoolBulkhead, latch: &Latch) -> TaskHandle<bool> {
    let (tx, rx) = mpsc::channel();
    let latch = latch.clone();
    let handle = pool
        .submit(move || {
            tx.send(()).unwrap();
            latch.wait()
        })
        .expect("room for the blocker");
    rx.recv_timeout(PATIENCE).expect("the blocker should start");
    handle
}

/// A closure that records whether it ever ran.
fn flagging(ran: &Arc<AtomicBool>) -> impl FnOnce() + Send + 'static {
    let ran = Arc::clone(ran);
    move || ran.store(true, Ordering::SeqCst)
}

/// On a pool of one worker, runs one more task and waits for it: the FIFO queue guarantees
/// that every message queued before it (including abandoned tasks) has been dealt with.
fn drain_one_worker(pool: &ThreadPoolBulkhead) {
    assert_eq!(pool.execute(|| 1).expect("drain call"), 1);
}

fn assert_timeout(err: &BulkheadError, name: &str, timeout: Duration) {
    assert!(err.is_timeout(), "expected Timeout, got {err:?}");
    assert_eq!(err.bulkhead(), name);
    assert!(err.to_string().contains(name), "{err}");
    match err {
        BulkheadError::Timeout { timeout: t, .. } => assert_eq!(*t, timeout),
        other => panic!("expected Timeout, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// execute_timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn execute_timeout_returns_timeout_within_the_deadline() {
    let pool = pool("deadline", PoolConfig::new(1));
    let latch = Gate::new();
    let deadline = Duration::from_millis(100);
    let l = latch.clone();
    let before = Instant::now();
    let err = pool
        .execute_timeout(deadline, move || l.wait())
        .unwrap_err();
    let took = before.elapsed();
    assert_timeout(&err, "deadline", deadline);
    assert!(took < deadline + NOISE, "Timeout came late: {took:?}");
    assert_eq!(pool.stats().timed_out, 1);

    latch.open();
    // The task either started (and now completes) or was still queued (and expired).
    wait_until(PATIENCE, "the timed-out task is accounted for", || {
        let s = pool.stats();
        s.completed + s.expired == 1
    });
    assert_books_balance(&pool);
}

#[test]
fn a_task_that_beats_its_deadline_returns_its_value() {
    let pool = pool("quick", PoolConfig::new(2));
    for i in 0..100 {
        assert_eq!(pool.execute_timeout(PATIENCE, move || i).unwrap(), i);
    }
    let s = pool.stats();
    assert_eq!((s.completed, s.timed_out, s.expired), (100, 0, 0));
}

#[test]
fn a_huge_deadline_means_no_deadline_and_does_not_overflow() {
    let pool = pool("forever", PoolConfig::new(1));
    assert_eq!(pool.execute_timeout(Duration::MAX, || 5).unwrap(), 5);
    let handle = pool.submit(|| 6).unwrap();
    assert_eq!(handle.join_timeout(Duration::MAX).unwrap(), 6);
    let pool = ThreadPoolBulkhead::new(
        "forever-default",
        PoolConfig::new(1).default_timeout(Duration::MAX),
    )
    .unwrap();
    assert_eq!(pool.execute(|| 7).unwrap(), 7);
}

#[test]
fn a_zero_deadline_never_hangs_and_keeps_the_books() {
    let pool = pool("zero", PoolConfig::new(1).queue_capacity(1));
    let mut timeouts = 0;
    for i in 0..100 {
        match pool.execute_timeout(Duration::ZERO, move || i) {
            Ok(v) => assert_eq!(v, i),
            Err(e) => {
                assert_timeout(&e, "zero", Duration::ZERO);
                timeouts += 1;
            }
        }
        // A timed-out task may still be running; let it leave before the next call.
        wait_until(PATIENCE, "the pool is quiet", || {
            let s = pool.stats();
            s.running == 0 && s.queued == 0
        });
    }
    let s = pool.stats();
    assert_eq!(s.timed_out, timeouts);
    assert_books_balance(&pool);
}

#[test]
fn the_clock_starts_at_submission_and_an_expired_task_never_runs() {
    // The task is queued behind a worker that stays busy for the whole test: if the clock
    // started when the task starts, this caller would never get an answer.
    let pool = pool("queued", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let blocker = start_blocker(&pool, &latch);

    let ran = Arc::new(AtomicBool::new(false));
    let deadline = Duration::from_millis(100);
    let before = Instant::now();
    let err = pool.execute_timeout(deadline, flagging(&ran)).unwrap_err();
    let took = before.elapsed();
    assert_timeout(&err, "queued", deadline);
    assert!(took < deadline + NOISE, "Timeout came late: {took:?}");

    // The queued task freed its slot at once: the queue has room again while the worker is
    // still busy.
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (1, 0));
    assert_eq!(
        (s.timed_out, s.expired),
        (1, 1),
        "caller timed out, task expired"
    );
    let refill = pool
        .submit(|| "refill")
        .expect("the expired task's slot is free");

    latch.open();
    assert!(blocker.join().unwrap());
    assert_eq!(refill.join().unwrap(), "refill");
    drain_one_worker(&pool);
    assert!(
        !ran.load(Ordering::SeqCst),
        "an expired task must never run"
    );
    let s = pool.stats();
    assert_eq!((s.expired, s.timed_out, s.cancelled), (1, 1, 0));
    assert_books_balance(&pool);
}

#[test]
fn every_queued_caller_that_times_out_is_expired_and_never_runs() {
    let queue = 3;
    let pool = pool("many", PoolConfig::new(1).queue_capacity(queue));
    let latch = Gate::new();
    let blocker = start_blocker(&pool, &latch);
    let flags: Vec<Arc<AtomicBool>> = (0..queue).map(|_| Arc::default()).collect();
    let deadline = Duration::from_millis(50);
    thread::scope(|s| {
        for flag in &flags {
            let pool = &pool;
            s.spawn(move || {
                let before = Instant::now();
                let err = pool.execute_timeout(deadline, flagging(flag)).unwrap_err();
                assert_timeout(&err, "many", deadline);
                assert!(before.elapsed() < deadline + NOISE);
            });
        }
    });
    let s = pool.stats();
    assert_eq!((s.timed_out, s.expired, s.queued), (3, 3, 0));
    latch.open();
    assert!(blocker.join().unwrap());
    drain_one_worker(&pool);
    for (i, flag) in flags.iter().enumerate() {
        assert!(!flag.load(Ordering::SeqCst), "expired task {i} ran");
    }
    let s = pool.stats();
    assert_eq!((s.submitted, s.completed, s.expired), (5, 2, 3));
    assert_books_balance(&pool);
}

#[test]
fn a_task_that_waited_in_the_queue_still_times_out_counted_from_submission() {
    // MP FT TCK testTimeoutAsyncBulkheadQueueTimed, in spirit: B waits in the queue behind A,
    // then A finishes, B starts and never returns; B's caller gets Timeout within B's
    // deadline of its submission (plus noise), even though B spent part of it queued.
    let pool = pool("qtimed", PoolConfig::new(1).queue_capacity(1));
    let latch_a = Gate::new();
    let latch_b = Gate::new();
    let a = start_blocker(&pool, &latch_a);
    let deadline = Duration::from_secs(1);
    let (b_started_tx, b_started) = mpsc::channel();
    let (err, took) = thread::scope(|s| {
        let caller = s.spawn(|| {
            let l = latch_b.clone();
            let before = Instant::now();
            let r = pool.execute_timeout(deadline, move || {
                b_started_tx.send(()).unwrap();
                l.wait()
            });
            (r.unwrap_err(), before.elapsed())
        });
        wait_until(PATIENCE, "B is queued", || pool.stats().queued == 1);
        latch_a.open();
        caller.join().unwrap()
    });
    assert_timeout(&err, "qtimed", deadline);
    assert!(took < deadline + NOISE, "Timeout came late: {took:?}");
    assert!(a.join().unwrap());

    let s = pool.stats();
    assert_eq!(s.timed_out, 1);
    if s.expired == 0 {
        // B started before its deadline: it runs on, holding its slot, until released.
        b_started.recv_timeout(PATIENCE).expect("B started");
        assert_eq!(
            pool.stats().running,
            1,
            "B keeps its slot after its caller gave up"
        );
        latch_b.open();
        wait_until(PATIENCE, "B has finished", || pool.stats().completed == 2);
    } else {
        // A very slow machine: B was still queued at its deadline, so it expired.
        assert_eq!(s.expired, 1);
        latch_b.open();
        drain_one_worker(&pool);
        assert!(
            b_started.try_recv().is_err(),
            "an expired task must never run"
        );
    }
    assert_books_balance(&pool);
}

#[test]
fn a_started_task_keeps_its_slot_until_it_really_finishes() {
    // execute_timeout version: the task must have started before the deadline for this to
    // test anything, which a slow machine may not manage; then the attempt is repeated.
    for _attempt in 0..5 {
        let pool = pool("keepslot", PoolConfig::new(1));
        drain_one_worker(&pool); // the worker exists and is idle
        let latch = Gate::new();
        let (started_tx, started) = mpsc::channel();
        let l = latch.clone();
        let deadline = Duration::from_millis(300);
        let err = pool
            .execute_timeout(deadline, move || {
                started_tx.send(()).unwrap();
                l.wait()
            })
            .unwrap_err();
        assert_timeout(&err, "keepslot", deadline);
        if pool.stats().expired == 1 {
            latch.open();
            continue; // never started in time; nothing to see
        }
        started.recv_timeout(PATIENCE).expect("the task started");
        // Threads cannot be killed: the timed-out task still occupies the only slot.
        let s = pool.stats();
        assert_eq!((s.running, s.timed_out, s.expired), (1, 1, 0));
        for _ in 0..3 {
            assert!(
                pool.execute(|| ()).unwrap_err().is_rejected(),
                "the compartment must stay full while the timed-out task runs"
            );
        }
        latch.open();
        wait_until(PATIENCE, "the timed-out task has finished", || {
            pool.stats().completed == 2
        });
        assert_eq!(pool.execute(|| 9).unwrap(), 9, "the slot is free again");
        assert_books_balance(&pool);
        return;
    }
    panic!("in five attempts the task never started within 300 ms of an idle worker");
}

#[test]
fn a_timed_out_running_task_s_result_is_dropped_when_it_ends() {
    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let pool = pool("dropres", PoolConfig::new(1));
    let latch = Gate::new();
    let (tx, rx) = mpsc::channel();
    let drops = Arc::new(AtomicUsize::new(0));
    let (l, d) = (latch.clone(), Arc::clone(&drops));
    let handle = pool
        .submit(move || {
            tx.send(()).unwrap();
            l.wait();
            Counted(d)
        })
        .unwrap();
    rx.recv_timeout(PATIENCE).unwrap();
    let err = handle.join_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_timeout());
    latch.open();
    wait_until(PATIENCE, "the abandoned result is dropped", || {
        drops.load(Ordering::SeqCst) == 1
    });
    wait_until(PATIENCE, "its slot is free", || pool.stats().running == 0);
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// join_timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn join_timeout_hands_back_the_value_of_a_task_that_finishes_in_time() {
    let pool = pool("jt-ok", PoolConfig::new(1));
    let latch = Gate::new();
    let l = latch.clone();
    let handle = pool
        .submit(move || {
            l.wait();
            "done"
        })
        .unwrap();
    latch.open();
    assert_eq!(handle.join_timeout(PATIENCE).unwrap(), "done");
    let done = pool.submit(|| 3).unwrap();
    wait_until(PATIENCE, "the task has finished", || done.is_finished());
    assert_eq!(done.join_timeout(Duration::from_millis(1)).unwrap(), 3);
    assert_eq!(pool.stats().timed_out, 0);
}

#[test]
fn join_timeout_of_a_running_task_times_out_and_the_task_runs_on() {
    let pool = pool("jt-run", PoolConfig::new(1));
    let latch = Gate::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (l, f) = (latch.clone(), Arc::clone(&finished));
    let handle = pool
        .submit(move || {
            tx.send(()).unwrap();
            l.wait();
            f.store(true, Ordering::SeqCst);
        })
        .unwrap();
    rx.recv_timeout(PATIENCE).unwrap();
    let timeout = Duration::from_millis(30);
    let before = Instant::now();
    let err = handle.join_timeout(timeout).unwrap_err();
    assert_timeout(&err, "jt-run", timeout);
    assert!(before.elapsed() < timeout + NOISE);
    let s = pool.stats();
    assert_eq!((s.timed_out, s.expired, s.running), (1, 0, 1));
    latch.open();
    wait_until(PATIENCE, "the task ran to its end", || {
        finished.load(Ordering::SeqCst)
    });
    wait_until(PATIENCE, "its slot is free", || pool.stats().completed == 1);
    assert_books_balance(&pool);
}

#[test]
fn join_timeout_of_a_queued_task_expires_it() {
    let pool = pool("jt-queue", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let blocker = start_blocker(&pool, &latch);
    let ran = Arc::new(AtomicBool::new(false));
    let queued = pool.submit(flagging(&ran)).unwrap();
    let timeout = Duration::from_millis(30);
    let err = queued.join_timeout(timeout).unwrap_err();
    assert_timeout(&err, "jt-queue", timeout);
    let s = pool.stats();
    assert_eq!((s.timed_out, s.expired, s.queued), (1, 1, 0));
    latch.open();
    assert!(blocker.join().unwrap());
    drain_one_worker(&pool);
    assert!(
        !ran.load(Ordering::SeqCst),
        "an expired task must never run"
    );
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// cancel
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_withdraws_a_queued_task() {
    let pool = pool("cancel-q", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let blocker = start_blocker(&pool, &latch);
    let ran = Arc::new(AtomicBool::new(false));
    let queued = pool.submit(flagging(&ran)).unwrap();
    assert!(
        pool.submit(|| ()).unwrap_err().is_rejected(),
        "queue is full"
    );

    assert!(queued.cancel(), "a queued task can be cancelled");
    assert!(!queued.cancel(), "but only once");
    assert!(queued.is_finished());
    // Its slot is free at once, while the worker is still busy.
    let s = pool.stats();
    assert_eq!(
        (s.queued, s.cancelled, s.expired, s.timed_out),
        (0, 1, 0, 0)
    );
    let next = pool
        .submit(|| "next")
        .expect("the cancelled task's slot is free");

    let err = queued.join().unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(err.bulkhead(), "cancel-q");
    assert!(err.to_string().contains("cancel-q"), "{err}");

    latch.open();
    assert!(blocker.join().unwrap());
    assert_eq!(next.join().unwrap(), "next");
    drain_one_worker(&pool);
    assert!(
        !ran.load(Ordering::SeqCst),
        "a cancelled task must never run"
    );
    assert_eq!(pool.stats().cancelled, 1);
    assert_books_balance(&pool);
}

#[test]
fn cancel_refuses_a_running_or_finished_task() {
    let pool = pool("cancel-r", PoolConfig::new(1));
    let latch = Gate::new();
    let running = start_blocker(&pool, &latch);
    assert!(!running.cancel(), "a running task cannot be cancelled");
    assert!(!running.is_finished());
    latch.open();
    assert!(
        running.join().unwrap(),
        "it runs to its end and gives its value"
    );

    let done = pool.submit(|| 5).unwrap();
    wait_until(PATIENCE, "the task has finished", || done.is_finished());
    assert!(!done.cancel(), "a finished task cannot be cancelled");
    assert_eq!(done.join().unwrap(), 5);
    assert_eq!(pool.stats().cancelled, 0);
    assert_books_balance(&pool);
}

#[test]
fn join_timeout_of_a_cancelled_task_reports_cancelled() {
    let pool = pool("cancel-jt", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let blocker = start_blocker(&pool, &latch);
    let queued = pool.submit(|| ()).unwrap();
    assert!(queued.cancel());
    let err = queued.join_timeout(Duration::from_millis(1)).unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(
        pool.stats().timed_out,
        0,
        "a cancelled task is not a timeout"
    );
    latch.open();
    assert!(blocker.join().unwrap());
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// default_timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn default_timeout_applies_to_execute() {
    let timeout = Duration::from_millis(100);
    let pool = pool("default-to", PoolConfig::new(1).default_timeout(timeout));
    assert_eq!(pool.execute(|| 1).unwrap(), 1, "a quick call is unaffected");

    let latch = Gate::new();
    let l = latch.clone();
    let before = Instant::now();
    let err = pool.execute(move || l.wait()).unwrap_err();
    assert_timeout(&err, "default-to", timeout);
    assert!(before.elapsed() < timeout + NOISE);
    assert_eq!(pool.stats().timed_out, 1);
    latch.open();
    wait_until(PATIENCE, "the timed-out task is accounted for", || {
        let s = pool.stats();
        s.completed + s.expired == 2
    });
}

#[test]
fn default_timeout_does_not_bound_join() {
    // join waits however long the task takes; only execute uses the default deadline.
    let timeout = Duration::from_millis(50);
    let pool = pool("default-join", PoolConfig::new(1).default_timeout(timeout));
    let latch = Gate::new();
    let l = latch.clone();
    let handle = pool
        .submit(move || {
            l.wait();
            "late"
        })
        .unwrap();
    let opener = {
        let latch = latch.clone();
        thread::spawn(move || {
            // Time must pass here (past the default timeout); nothing is synchronised by it.
            thread::sleep(timeout * 4);
            latch.open();
        })
    };
    assert_eq!(handle.join().unwrap(), "late");
    opener.join().unwrap();
    assert_eq!(pool.stats().timed_out, 0);
}

// ---------------------------------------------------------------------------------------------
// Counters: timed_out counts exactly the callers that got Timeout
// ---------------------------------------------------------------------------------------------

#[test]
fn timed_out_counts_exactly_the_callers_that_got_timeout() {
    // Tasks that take about as long as their deadline, so that finishing and timing out race.
    let rounds = if cfg!(miri) { 10 } else { 1_000 };
    let pool = pool("race", PoolConfig::new(1));
    let deadline = Duration::from_micros(200);
    let mut timeouts = 0_u64;
    for i in 0..rounds {
        let spin = Duration::from_micros(150 + (i % 100));
        let outcome = pool.execute_timeout(deadline, move || {
            let start = Instant::now();
            while start.elapsed() < spin {
                std::hint::spin_loop();
            }
        });
        match outcome {
            Ok(()) => {}
            Err(e) => {
                assert!(e.is_timeout(), "{e}");
                timeouts += 1;
                // Let the timed-out task leave its slot before the next call.
                wait_until(PATIENCE, "the slot is free", || pool.stats().running == 0);
            }
        }
    }
    let s = pool.stats();
    assert_eq!(
        s.timed_out, timeouts,
        "timed_out must count the callers that got Timeout, and only them"
    );
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// MicroProfile Fault Tolerance TCK ports
// ---------------------------------------------------------------------------------------------

#[test]
fn mp_tck_timeout_async_bulkhead() {
    // TimeoutUninterruptableTest.testTimeoutAsyncBulkhead: @Bulkhead(value = 1,
    // waitingTaskQueue = 1) + @Timeout(500 ms) around a method that ignores interruption.
    let timeout = Duration::from_millis(300);
    let pool = pool("mp-tck", PoolConfig::new(1).queue_capacity(1));
    let executions = Arc::new(AtomicUsize::new(0));
    let latch = Gate::new();
    let call = {
        let executions = Arc::clone(&executions);
        let latch = latch.clone();
        move || {
            let (executions, latch) = (Arc::clone(&executions), latch.clone());
            move || {
                executions.fetch_add(1, Ordering::SeqCst);
                latch.wait()
            }
        }
    };

    // A: starts, times out, keeps running (it cannot be interrupted).
    let (tx, rx) = mpsc::channel();
    let a_body = call();
    let a = pool
        .submit(move || {
            tx.send(()).unwrap();
            a_body()
        })
        .unwrap();
    rx.recv_timeout(PATIENCE).unwrap();
    let before = Instant::now();
    assert_timeout(&a.join_timeout(timeout).unwrap_err(), "mp-tck", timeout);
    assert!(before.elapsed() < timeout + NOISE);
    assert_eq!(executions.load(Ordering::SeqCst), 1, "after the first call");

    // B: A still runs, so B is queued, and times out without ever running.
    let before = Instant::now();
    let err = pool.execute_timeout(timeout, call()).unwrap_err();
    assert_timeout(&err, "mp-tck", timeout);
    assert!(before.elapsed() < timeout + NOISE);
    assert_eq!(
        executions.load(Ordering::SeqCst),
        1,
        "after the second call"
    );

    // C is queued and eventually times out; D finds the queue full.
    let c = pool.submit(call()).unwrap();
    let d = pool.submit(call()).unwrap_err();
    assert!(d.is_rejected(), "{d}");
    assert_timeout(&c.join_timeout(timeout).unwrap_err(), "mp-tck", timeout);
    assert_eq!(
        executions.load(Ordering::SeqCst),
        1,
        "after the fourth call"
    );

    // Let A finish: nothing that timed out in the queue runs afterwards.
    latch.open();
    drain_one_worker(&pool);
    assert_eq!(
        executions.load(Ordering::SeqCst),
        1,
        "after completing all tasks"
    );
    let s = pool.stats();
    assert_eq!(
        (s.timed_out, s.expired, s.rejected, s.completed),
        (3, 2, 1, 2)
    );
    assert_books_balance(&pool);
}

#[test]
fn mp_tck_cancelled_but_remains_in_bulkhead() {
    // AsyncCancellationTest.testCancelledButRemainsInBulkhead: cancelling a running task
    // without interrupting it leaves it in the bulkhead; the queued task does not start.
    let pool = pool("mp-remain", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let task1 = start_blocker(&pool, &latch);
    let task2_started = Arc::new(AtomicBool::new(false));
    let task2 = pool.submit(flagging(&task2_started)).unwrap();

    assert!(!task1.cancel(), "a running task cannot be withdrawn");
    assert!(!task1.is_finished());
    // Task 2 does not start, because task 1 still holds the only worker.
    assert!(!task2_started.load(Ordering::SeqCst));
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (1, 1));
    assert!(pool.submit(|| ()).unwrap_err().is_rejected(), "still full");

    latch.open();
    assert!(task1.join().unwrap());
    task2.join().unwrap();
    assert!(task2_started.load(Ordering::SeqCst));
    assert_books_balance(&pool);
}

#[test]
fn mp_tck_cancelled_while_queued() {
    // AsyncCancellationTest.testCancelledWhileQueued: a task cancelled while in the bulkhead
    // queue does not start, even after the running task completes.
    let pool = pool("mp-queued", PoolConfig::new(1).queue_capacity(1));
    let latch = Gate::new();
    let task1 = start_blocker(&pool, &latch);
    let task2_started = Arc::new(AtomicBool::new(false));
    let task2 = pool.submit(flagging(&task2_started)).unwrap();

    assert!(task2.cancel());
    latch.open();
    assert!(task1.join().unwrap());
    drain_one_worker(&pool);
    assert!(
        !task2_started.load(Ordering::SeqCst),
        "a task cancelled in the queue must not start"
    );
    assert!(task2.join().unwrap_err().is_cancelled());
    assert_eq!(pool.stats().cancelled, 1);
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// Deadline::current(): the time a call has left, seen from inside the task
// ---------------------------------------------------------------------------------------------

#[test]
fn a_task_sees_the_deadline_its_caller_waits_on() {
    let pool = pool("dl-seen", PoolConfig::new(1));
    let timeout = Duration::from_secs(30);
    let before = Instant::now();
    let (deadline, seen_at) = pool
        .execute_timeout(timeout, || (Deadline::current(), Instant::now()))
        .unwrap();
    let after = Instant::now();
    let deadline = deadline.expect("a call with a timeout has a deadline");
    // The deadline is the caller's: submission + timeout, not the task's start + timeout.
    assert!(deadline.instant() >= before + timeout);
    assert!(deadline.instant() <= after + timeout);
    assert!(deadline.instant() <= seen_at + timeout);
    assert!(!deadline.is_expired());
    assert!(deadline.remaining() <= timeout);
    assert!(deadline.remaining() > timeout - NOISE);
}

#[test]
fn time_spent_in_the_queue_is_already_gone_when_the_task_starts() {
    let pool = Arc::new(pool("dl-queue", PoolConfig::new(1).queue_capacity(1)));
    let latch = Gate::new();
    let blocker = start_blocker(&pool, &latch);
    let timeout = Duration::from_secs(60);
    let queued_at = Instant::now();
    let caller = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            pool.execute_timeout(timeout, || {
                let deadline = Deadline::current().expect("a deadline");
                (deadline.instant(), Instant::now())
            })
        })
    };
    wait_until(PATIENCE, "the call is queued", || pool.stats().queued == 1);
    // Hold the queue long enough to tell a deadline counted from the start from one
    // counted from submission.
    thread::sleep(Duration::from_millis(50));
    latch.open();
    let (deadline, started) = caller.join().unwrap().unwrap();
    assert!(blocker.join().unwrap());
    assert!(started >= queued_at + Duration::from_millis(50));
    assert!(
        deadline < started + timeout - Duration::from_millis(40),
        "the queue's 50 ms must already be spent"
    );
}

#[test]
fn there_is_no_deadline_without_a_timeout_nor_outside_a_task() {
    let pool = pool("dl-none", PoolConfig::new(1));
    assert_eq!(Deadline::current(), None, "the test thread runs no task");
    assert_eq!(pool.execute(Deadline::current).unwrap(), None);
    assert_eq!(
        pool.submit(Deadline::current).unwrap().join().unwrap(),
        None
    );
    // join_timeout bounds the wait, not the task: it is decided after submission.
    let handle = pool.submit(Deadline::current).unwrap();
    assert_eq!(handle.join_timeout(PATIENCE).unwrap(), None);
}

#[test]
fn the_worker_forgets_a_deadline_when_its_task_ends_even_by_panicking() {
    // One worker runs everything, so a deadline left behind would show in the next task.
    let pool = pool("dl-reset", PoolConfig::new(1));
    assert!(
        pool.execute_timeout(PATIENCE, || Deadline::current().is_some())
            .unwrap()
    );
    assert_eq!(pool.execute(Deadline::current).unwrap(), None);
    let err = pool
        .execute_timeout(PATIENCE, || -> () {
            assert!(Deadline::current().is_some());
            panic!("boom")
        })
        .unwrap_err();
    assert!(err.is_panicked());
    assert_eq!(pool.execute(Deadline::current).unwrap(), None);
    assert_eq!(
        pool.stats().live_threads,
        1,
        "the same worker ran every task"
    );
}

#[test]
fn a_default_timeout_gives_execute_a_deadline() {
    let timeout = Duration::from_secs(45);
    let pool = pool("dl-default", PoolConfig::new(1).default_timeout(timeout));
    let remaining = pool
        .execute(|| Deadline::current().map(Deadline::remaining))
        .unwrap()
        .expect("the default timeout is a deadline");
    assert!(remaining <= timeout && remaining > timeout - NOISE);
}

#[test]
fn a_task_can_stop_itself_once_its_caller_has_given_up() {
    // The cooperative half of promise 5: the task cannot be killed, but it can watch its
    // deadline and give its worker back soon after the caller's Timeout.
    let pool = pool("dl-stop", PoolConfig::new(1));
    let (report, stopped) = mpsc::channel();
    let timeout = Duration::from_millis(50);
    let outcome = pool.execute_timeout(timeout, move || {
        let deadline = Deadline::current().expect("a deadline");
        let patience = Instant::now() + PATIENCE;
        // A long job in small steps, checking the deadline between them.
        while !deadline.is_expired() && Instant::now() < patience {
            thread::sleep(Duration::from_millis(1));
        }
        report.send(deadline.is_expired()).unwrap();
    });
    // The task stops at the instant the caller gives up: whichever of the two the caller
    // sees first decides between the unit value and Timeout. Both are right.
    if let Err(err) = outcome {
        assert_timeout(&err, "dl-stop", timeout);
    }
    assert!(
        stopped.recv_timeout(PATIENCE).unwrap(),
        "the task saw its deadline pass"
    );
    wait_until(PATIENCE, "the worker is free again", || {
        pool.stats().running == 0
    });
    assert_eq!(Deadline::current(), None);
    assert_books_balance(&pool);
}

#[test]
fn a_huge_timeout_has_no_deadline_rather_than_an_overflow() {
    let pool = pool("dl-huge", PoolConfig::new(1));
    assert_eq!(
        pool.execute_timeout(Duration::MAX, Deadline::current)
            .unwrap(),
        None
    );
}

/// The database issue's item 3, in part: a caller holding an absolute deadline, and a
/// semaphore call that tells its task how long is left.
#[test]
fn execute_until_and_call_timeout_carry_the_callers_deadline() {
    use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    let pool = ThreadPoolBulkhead::new("until", PoolConfig::new(1)).unwrap();
    let at = Instant::now() + Duration::from_secs(5);
    let seen = pool
        .execute_until(at, || Deadline::current().map(Deadline::instant))
        .unwrap();
    assert_eq!(seen, Some(at));
    // A deadline already past: no time to wait. A task that blocks cannot be awaited, so
    // the call times out at once, and the pool frees its slot when the task ends.
    let gate = Gate::new();
    let g = Arc::clone(&gate);
    let start = Instant::now();
    let err = pool
        .execute_until(Instant::now() - Duration::from_millis(1), move || g.wait())
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "it waited");
    gate.open();
    wait_until(Duration::from_secs(10), "the detached task ends", || {
        pool.stats().running == 0
    });
    assert_eq!(pool.execute(|| 2).unwrap(), 2);

    let sem = SemaphoreBulkhead::new("sem-deadline", SemaphoreConfig::new(1)).unwrap();
    let left = sem
        .call_timeout(Duration::from_secs(5), || {
            Deadline::current().map(Deadline::remaining)
        })
        .unwrap()
        .expect("a deadline inside the call");
    assert!(
        left > Duration::ZERO && left <= Duration::from_secs(5),
        "{left:?}"
    );
    assert!(
        Deadline::current().is_none(),
        "the deadline ends with the call"
    );
    let held = sem.try_acquire().unwrap();
    let start = Instant::now();
    let err = sem
        .call_timeout(Duration::from_millis(20), || 3)
        .unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert!(
        start.elapsed() >= Duration::from_millis(20),
        "it waited its timeout"
    );
    drop(held);
}
