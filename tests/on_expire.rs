//! `Deadline::on_expire`: a task registers what ends its work when its caller gives up
//! (a driver's cancel token), so the worker is free at the deadline, not when the work
//! would have ended. Also the checked `remaining` forms.
//!
//! The "query" here is a channel receive that only the callback unblocks (bounded at a
//! minute so that a failing test cannot hang): if the callback did not fire at the caller's
//! timeout, the worker would stay busy and the second call would be rejected.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use bulkheads::{
    ConnectionPoolBulkhead, Deadline, PoolConfig, SemaphoreBulkhead, SemaphoreConfig,
    ThreadPoolBulkhead,
};

mod common;
use common::{assert_books_balance, wait_until};

const BOUND: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);

/// A blocking "query" and its cancel token: the token's `cancel` unblocks `run`.
fn query() -> (
    impl FnOnce() + Send + 'static,
    impl FnOnce() -> bool + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<()>();
    let cancel = move || {
        let _ = tx.send(());
    };
    let run = move || rx.recv_timeout(BOUND).is_ok();
    (cancel, run)
}

#[test]
fn the_callback_frees_the_worker_at_the_callers_timeout() {
    let pool = ThreadPoolBulkhead::new("oe-free", PoolConfig::new(1)).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    let fired_on = Arc::new(std::sync::Mutex::new(None));
    let (counter, on) = (Arc::clone(&fired), Arc::clone(&fired_on));
    let (cancel_seen_tx, cancel_seen) = mpsc::channel();
    let err = pool
        .execute_timeout(Duration::from_millis(30), move || {
            let (cancel, run) = query();
            Deadline::current().unwrap().on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                *on.lock().unwrap() = Some(thread::current().id());
                cancel();
            });
            cancel_seen_tx.send(run()).unwrap();
        })
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // The task blocks until the callback runs, so the caller fired it before returning.
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    assert_eq!(*fired_on.lock().unwrap(), Some(thread::current().id()));
    // The query saw its cancel (not the minute-long safety bound).
    assert!(cancel_seen.recv_timeout(WAIT).unwrap());
    wait_until(WAIT, "the worker is free", || pool.stats().running == 0);
    // A second call runs instead of being rejected by the first one's leftover.
    assert_eq!(pool.execute(|| 7).unwrap(), 7);
    assert_books_balance(&pool);
    let s = pool.stats();
    assert_eq!((s.timed_out, s.completed), (1, 2), "{s:?}");
    // Fired once, however the worker ended.
    assert_eq!(fired.load(Ordering::SeqCst), 1);
}

#[test]
fn execute_until_fires_it_too() {
    let pool = ThreadPoolBulkhead::new("oe-until", PoolConfig::new(1)).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fired);
    let until = std::time::Instant::now() + Duration::from_millis(30);
    let err = pool
        .execute_until(until, move || {
            let (cancel, run) = query();
            Deadline::current().unwrap().on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                cancel();
            });
            run()
        })
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    wait_until(WAIT, "the worker is free", || pool.stats().running == 0);
    assert_books_balance(&pool);
}

#[test]
fn join_timeout_fires_a_submitted_tasks_callback() {
    // A submitted task has no deadline of its own; it registers through one it was given
    // (`on_expire` registers with the task running on this thread).
    let sem = SemaphoreBulkhead::new("oe-give", SemaphoreConfig::new(1)).unwrap();
    let given = sem
        .call_timeout(Duration::from_secs(3600), || Deadline::current().unwrap())
        .unwrap();
    let pool = ThreadPoolBulkhead::new("oe-join", PoolConfig::new(1)).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fired);
    let (registered_tx, registered) = mpsc::channel();
    let handle = pool
        .submit(move || {
            let (cancel, run) = query();
            given.on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                cancel();
            });
            registered_tx.send(()).unwrap();
            run()
        })
        .unwrap();
    registered.recv_timeout(WAIT).unwrap();
    let err = handle.join_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    wait_until(WAIT, "the worker is free", || pool.stats().running == 0);
    assert_books_balance(&pool);
}

#[test]
fn never_fired_when_the_task_finishes_in_time() {
    let pool = ThreadPoolBulkhead::new("oe-ok", PoolConfig::new(2)).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    let register = |fired: &Arc<AtomicUsize>| {
        let counter = Arc::clone(fired);
        move || {
            let counter = Arc::clone(&counter);
            if let Some(d) = Deadline::current() {
                d.on_expire(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                });
            }
            5
        }
    };
    for _ in 0..50 {
        assert_eq!(
            pool.execute_timeout(Duration::from_secs(60), register(&fired))
                .unwrap(),
            5
        );
    }
    // A handle joined in time, and one dropped: neither fires.
    let sem = SemaphoreBulkhead::new("oe-ok-d", SemaphoreConfig::new(1)).unwrap();
    let given = sem
        .call_timeout(Duration::from_secs(3600), || Deadline::current().unwrap())
        .unwrap();
    let counter = Arc::clone(&fired);
    let joined = pool
        .submit(move || {
            given.on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        })
        .unwrap();
    joined.join_timeout(Duration::from_secs(60)).unwrap();
    let counter = Arc::clone(&fired);
    let (ran_tx, ran) = mpsc::channel();
    drop(
        pool.submit(move || {
            given.on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            ran_tx.send(()).unwrap();
        })
        .unwrap(),
    );
    ran.recv_timeout(WAIT).unwrap();
    wait_until(WAIT, "the pool is quiet", || pool.stats().running == 0);
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    assert_books_balance(&pool);
}

#[test]
fn a_panicking_callback_does_not_break_the_books() {
    let pool = ThreadPoolBulkhead::new("oe-panic", PoolConfig::new(1)).unwrap();
    let err = pool
        .execute_timeout(Duration::from_millis(20), || {
            let (cancel, run) = query();
            Deadline::current().unwrap().on_expire(move || {
                cancel();
                panic!("the cancel token panicked");
            });
            run()
        })
        .unwrap_err();
    assert!(
        err.is_timeout(),
        "the caller gets its Timeout, not the panic: {err}"
    );
    wait_until(WAIT, "the worker is free", || pool.stats().running == 0);
    assert_eq!(pool.execute(|| 1).unwrap(), 1);
    assert_books_balance(&pool);
    let s = pool.stats();
    assert_eq!((s.panicked, s.timed_out), (0, 1), "{s:?}");
}

#[test]
fn an_expired_deadline_fires_at_once() {
    let sem = SemaphoreBulkhead::new("oe-late", SemaphoreConfig::new(1)).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fired);
    let seen = sem
        .call_timeout(Duration::ZERO, move || {
            Deadline::current().unwrap().on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            // Already run, before on_expire returned.
            fired.load(Ordering::SeqCst)
        })
        .unwrap();
    assert_eq!(seen, 1);
}

#[test]
fn on_a_semaphore_it_never_fires_later() {
    let sem = SemaphoreBulkhead::new("oe-sem", SemaphoreConfig::new(1)).unwrap();
    let fired = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&fired);
    let given = sem
        .call_timeout(Duration::from_secs(3600), move || {
            let d = Deadline::current().unwrap();
            d.on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
            d
        })
        .unwrap();
    assert!(!given.is_expired());
    assert_eq!(fired.load(Ordering::SeqCst), 0);
    assert_eq!(
        Arc::strong_count(&fired),
        1,
        "the callback was dropped unrun"
    );
}

#[test]
fn a_connection_task_cancelled_at_the_deadline_keeps_its_connection() {
    let opened = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&opened);
    let db = ConnectionPoolBulkhead::new("oe-conn", PoolConfig::new(1), move || {
        Ok::<_, std::io::Error>(counter.fetch_add(1, Ordering::SeqCst))
    })
    .unwrap();
    let err = db
        .execute_timeout(Duration::from_millis(20), |_conn: &mut usize| {
            let (cancel, run) = query();
            Deadline::current().unwrap().on_expire(cancel);
            run()
        })
        .unwrap_err();
    assert!(err.is_timeout());
    wait_until(WAIT, "the worker is free", || db.stats().running == 0);
    // The cancelled query returned normally, so the worker kept its connection.
    assert_eq!(db.execute(|conn: &mut usize| *conn).unwrap(), 0);
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

#[test]
fn remaining_checked_is_never_zero() {
    let sem = SemaphoreBulkhead::new("oe-rem", SemaphoreConfig::new(1)).unwrap();
    let (left, ms) = sem
        .call_timeout(Duration::ZERO, || {
            let d = Deadline::current().unwrap();
            (d.remaining_checked(), d.remaining_millis_checked())
        })
        .unwrap();
    assert_eq!((left, ms), (None, None));
    // Half a millisecond left rounds up to 1, never down to "no timeout".
    let ms = sem
        .call_timeout(Duration::from_micros(500), || {
            Deadline::current().unwrap().remaining_millis_checked()
        })
        .unwrap();
    assert!(ms.is_none() || ms == Some(1), "{ms:?}");
    let ms = sem
        .call_timeout(Duration::from_secs(2), || {
            Deadline::current().unwrap().remaining_millis_checked()
        })
        .unwrap();
    assert!(ms.is_some_and(|ms| (1..=2000).contains(&ms)), "{ms:?}");
}

// ---------------------------------------------------------------------------------------------
// Nested calls inherit the caller's deadline
// ---------------------------------------------------------------------------------------------

#[test]
fn a_nested_execute_without_a_timeout_gets_the_outer_deadline() {
    let outer = ThreadPoolBulkhead::new("oe-outer", PoolConfig::new(1)).unwrap();
    let inner = Arc::new(ThreadPoolBulkhead::new("oe-inner", PoolConfig::new(1)).unwrap());
    let nested = Arc::clone(&inner);
    let (mine, theirs, longer, shorter) = outer
        .execute_timeout(Duration::from_secs(600), move || {
            let mine = Deadline::current();
            let theirs = nested.execute(Deadline::current).unwrap();
            // A longer timeout of its own is cut to the outer deadline; a shorter one stays.
            let longer = nested
                .execute_timeout(Duration::from_secs(3600), Deadline::current)
                .unwrap();
            let shorter = nested
                .execute_timeout(Duration::from_secs(1), Deadline::current)
                .unwrap();
            (mine, theirs, longer, shorter)
        })
        .unwrap();
    assert!(mine.is_some());
    assert_eq!(theirs, mine);
    assert_eq!(longer, mine);
    assert!(shorter.unwrap() < mine.unwrap());
    // Outside any task nothing is inherited.
    assert_eq!(inner.execute(Deadline::current).unwrap(), None);
}

#[test]
fn a_nested_call_times_out_at_the_outer_deadline() {
    // The outer call runs on this thread (a semaphore's), so it cannot give up first: what
    // it returns is what the nested call returned.
    let outer = SemaphoreBulkhead::new("oe-sem-outer", SemaphoreConfig::new(1)).unwrap();
    let inner = Arc::new(ThreadPoolBulkhead::new("oe-stuck", PoolConfig::new(1)).unwrap());
    let gate = common::Gate::new();
    let _open = common::OpenOnDrop(Arc::clone(&gate));
    let nested = Arc::clone(&inner);
    let stuck = Arc::clone(&gate);
    let result = outer
        .call_timeout(Duration::from_millis(50), move || {
            nested.execute(move || stuck.wait())
        })
        .unwrap();
    let err = result.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(inner.stats().timed_out, 1);
    gate.open();
    wait_until(WAIT, "the inner pool is quiet", || {
        inner.stats().running == 0
    });
    assert_books_balance(&inner);
}

#[test]
fn a_nested_semaphore_call_waits_no_longer_than_the_outer_deadline() {
    let outer = SemaphoreBulkhead::new("oe-sem-a", SemaphoreConfig::new(1)).unwrap();
    let inner = SemaphoreBulkhead::new(
        "oe-sem-b",
        SemaphoreConfig::new(1).max_wait(Duration::from_secs(3600)),
    )
    .unwrap();
    let held = inner.try_acquire().unwrap();
    let result = outer
        .call_timeout(Duration::from_millis(30), || inner.call(|| ()))
        .unwrap();
    assert!(result.unwrap_err().is_rejected());
    drop(held);
}

#[test]
fn submit_inherits_nothing() {
    let outer = ThreadPoolBulkhead::new("oe-sub-out", PoolConfig::new(1)).unwrap();
    let inner = Arc::new(ThreadPoolBulkhead::new("oe-sub-in", PoolConfig::new(1)).unwrap());
    let nested = Arc::clone(&inner);
    let seen = outer
        .execute_timeout(Duration::from_secs(600), move || {
            nested.submit(Deadline::current).unwrap().join().unwrap()
        })
        .unwrap();
    assert_eq!(seen, None);
}

/// Real threads racing what the loom model `expiry_vs_completion` checks exhaustively: a
/// caller timing out in the instant its task starts, registers or returns. A task that ran
/// and whose caller got `Timeout` has its callback fired exactly once (by whichever side);
/// no callback ever fires twice. (A caller that got its value may still see a fire: a task
/// that registers after its deadline has passed fires at once, as documented.)
#[test]
fn timeouts_racing_completion_fire_exactly_once() {
    let pool = ThreadPoolBulkhead::new("oe-race", PoolConfig::new(2).queue_capacity(4)).unwrap();
    let rounds = if cfg!(miri) { 10 } else { 300 };
    let mut checks = Vec::new();
    for i in 0..rounds {
        let fired = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (counter, flag) = (Arc::clone(&fired), Arc::clone(&ran));
        // Timeouts from 0 to ~200 µs: around the time a hand-off takes.
        let timeout = Duration::from_micros((i % 20) * 10);
        let result = pool.execute_timeout(timeout, move || {
            flag.store(true, Ordering::SeqCst);
            Deadline::current().unwrap().on_expire(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            });
        });
        checks.push((result.is_err(), ran, fired));
    }
    wait_until(WAIT, "the pool is quiet", || pool.stats().running == 0);
    for (i, (timed_out, ran, fired)) in checks.iter().enumerate() {
        let (ran, fired) = (ran.load(Ordering::SeqCst), fired.load(Ordering::SeqCst));
        assert!(fired <= 1, "round {i}: fired {fired} times");
        if *timed_out && ran {
            assert_eq!(fired, 1, "round {i}: timed out while running, never fired");
        }
        if !ran {
            assert_eq!(fired, 0, "round {i}: never ran, yet fired");
        }
    }
    assert_books_balance(&pool);
}
