//! Panics stay inside (promise 6): the caller gets `Panicked` with the message and the
//! payload, the worker thread survives, the slot is freed, and `panicked` counts it.
//!
//! The pools here are named `pan…`; a panic hook installed once keeps their (expected)
//! panics out of the test output and lets every other panic through to the default hook.

use std::any::Any;
use std::collections::HashSet;
use std::panic;
use std::sync::mpsc;
use std::sync::{Arc, Once};
use std::thread;
use std::time::Duration;

use bulkheads::{BulkheadError, PoolConfig, ThreadPoolBulkhead};

mod common;
use common::{BoundedBarrier, assert_books_balance, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long any wait in this file may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// Silences panics on the pools' worker threads (all named `pan…`), which this file causes
/// on purpose by the thousand; any other panic, a failing assertion included, is reported.
fn quiet_worker_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let on_worker = thread::current()
                .name()
                .is_some_and(|name| name.starts_with("pan"));
            if !on_worker {
                default(info);
            }
        }));
    });
}

fn pool(name: &str, config: PoolConfig) -> ThreadPoolBulkhead {
    assert!(name.starts_with("pan"), "keep the hook's naming convention");
    quiet_worker_panics();
    ThreadPoolBulkhead::new(name, config).expect("valid configuration")
}

fn message_of(err: &BulkheadError) -> &str {
    match err {
        BulkheadError::Panicked { message, .. } => message,
        other => panic!("expected Panicked, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The caller's error
// ---------------------------------------------------------------------------------------------

#[test]
fn a_str_panic_gives_panicked_with_its_message() {
    let pool = pool("pan-str", PoolConfig::new(1));
    let err = pool.execute(|| -> u32 { panic!("smtp down") }).unwrap_err();
    assert!(err.is_panicked());
    assert!(!err.is_rejected() && !err.is_timeout() && !err.is_cancelled());
    assert_eq!(err.bulkhead(), "pan-str");
    assert_eq!(message_of(&err), "smtp down");
    assert_eq!(
        err.to_string(),
        "task in bulkhead 'pan-str' panicked: smtp down"
    );
    let payload = err.into_panic().expect("the payload is kept");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"smtp down"));
    assert_eq!(pool.stats().panicked, 1);
}

#[test]
fn a_string_panic_gives_panicked_with_its_message() {
    let pool = pool("pan-string", PoolConfig::new(1));
    let code = 503;
    let err = pool
        .execute(move || panic!("upstream answered {code}"))
        .unwrap_err();
    assert_eq!(message_of(&err), "upstream answered 503");
    let text = err.to_string();
    assert!(
        text.contains("pan-string") && text.contains("upstream answered 503"),
        "{text}"
    );
    let payload = err.into_panic().expect("the payload is kept");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("upstream answered 503")
    );

    // An explicit String payload, too.
    let err = pool
        .execute(|| panic::panic_any(String::from("owned message")))
        .unwrap_err();
    assert_eq!(message_of(&err), "owned message");
    assert_eq!(
        *err.into_panic().unwrap().downcast::<String>().unwrap(),
        "owned message"
    );
    assert_eq!(pool.stats().panicked, 2);
}

#[test]
fn any_payload_comes_back_through_into_panic() {
    #[derive(Debug, PartialEq)]
    struct Fault {
        code: u16,
    }
    let pool = pool("pan-any", PoolConfig::new(1));
    let err = pool
        .execute(|| panic::panic_any(Fault { code: 418 }))
        .unwrap_err();
    assert!(err.is_panicked());
    // No text to show, but the error still says which bulkhead, and that it panicked.
    assert!(!message_of(&err).is_empty());
    assert!(err.to_string().contains("pan-any"));

    // Clones share the payload: the first to ask gets it, the others get None.
    let clone = err.clone();
    let payload: Box<dyn Any + Send> = clone.into_panic().expect("first taker gets it");
    assert_eq!(payload.downcast_ref::<Fault>(), Some(&Fault { code: 418 }));
    assert!(err.into_panic().is_none(), "the payload is handed out once");

    // resume_unwind carries it on to a caller that wants the panic back.
    let err = pool.execute(|| panic::panic_any(7_u64)).unwrap_err();
    let payload = err.into_panic().unwrap();
    let resumed = panic::catch_unwind(panic::AssertUnwindSafe(move || {
        panic::resume_unwind(payload);
    }))
    .unwrap_err();
    assert_eq!(resumed.downcast_ref::<u64>(), Some(&7));
}

#[test]
fn submit_join_and_join_timeout_report_the_panic() {
    let pool = pool("pan-join", PoolConfig::new(2).queue_capacity(2));
    let h = pool.submit(|| -> i32 { panic!("in join") }).unwrap();
    let err = h.join().unwrap_err();
    assert_eq!(message_of(&err), "in join");
    assert_eq!(err.bulkhead(), "pan-join");

    let h = pool
        .submit(|| -> i32 { panic!("in join_timeout") })
        .unwrap();
    let err = h.join_timeout(PATIENCE).unwrap_err();
    assert_eq!(message_of(&err), "in join_timeout");

    let err = pool
        .execute_timeout(PATIENCE, || -> i32 { panic!("in execute_timeout") })
        .unwrap_err();
    assert_eq!(message_of(&err), "in execute_timeout");

    let h = pool.submit(|| -> i32 { panic!("is finished") }).unwrap();
    wait_until(PATIENCE, "the panicked task is finished", || {
        h.is_finished()
    });
    assert!(h.join().unwrap_err().is_panicked());

    let s = pool.stats();
    assert_eq!((s.panicked, s.completed, s.timed_out), (4, 0, 0));
    assert_books_balance(&pool);
}

// ---------------------------------------------------------------------------------------------
// The worker survives; the slot is freed
// ---------------------------------------------------------------------------------------------

#[test]
fn the_worker_survives_a_panic() {
    let pool = pool("pan-live", PoolConfig::new(1));
    let before = pool.execute(|| thread::current().id()).unwrap();
    let err = pool.execute(|| panic!("worker must not die")).unwrap_err();
    assert!(err.is_panicked());
    let after = pool.execute(|| thread::current().id()).unwrap();
    assert_eq!(
        before, after,
        "the same worker thread served the call after the panic"
    );
    assert_eq!(pool.stats().live_threads, 1);
}

#[test]
fn a_panic_frees_its_slot_before_the_caller_hears_of_it() {
    // One thread, no queue: if the panicked task kept its slot even for an instant after its
    // caller got the error, the next call would be rejected.
    let n = if cfg!(miri) { 20 } else { 1_000 };
    let pool = pool("pan-slot", PoolConfig::new(1));
    for i in 0..n {
        if i % 2 == 0 {
            let err = pool
                .execute(move || -> usize { panic!("odd {i}") })
                .unwrap_err();
            assert!(err.is_panicked(), "call {i}: {err}");
        } else {
            let v = pool
                .execute(move || i)
                .unwrap_or_else(|e| panic!("call {i} after a panic was refused: {e}"));
            assert_eq!(v, i);
        }
    }
    let s = pool.stats();
    assert_eq!((s.panicked, s.completed, s.rejected), (n / 2, n / 2, 0));
    assert_eq!(s.live_threads, 1);
    assert_books_balance(&pool);
}

#[test]
fn queued_tasks_after_a_panicking_one_still_run_in_order() {
    let pool = pool("pan-queue", PoolConfig::new(1).queue_capacity(10));
    let (tx, rx) = mpsc::channel::<()>();
    let gate = pool
        .submit(move || {
            let _ = rx.recv_timeout(PATIENCE);
        })
        .unwrap();
    let handles: Vec<_> = (0..10)
        .map(|i| {
            pool.submit(move || {
                if i % 3 == 0 {
                    panic!("task {i}");
                }
                i
            })
            .unwrap()
        })
        .collect();
    tx.send(()).unwrap();
    gate.join().unwrap();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(v) => assert_eq!(v, i),
            Err(e) => {
                assert_eq!(i % 3, 0, "task {i} should not have failed: {e}");
                assert_eq!(message_of(&e), format!("task {i}"));
            }
        }
    }
    let s = pool.stats();
    assert_eq!((s.panicked, s.completed), (4, 7));
    assert_books_balance(&pool);
}

#[test]
fn a_panic_while_dropping_a_detached_result_does_not_kill_the_worker() {
    // A detached task's result is dropped on the worker; if that drop panics, the worker
    // must survive it as it survives a task's own panic.
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("result dropped");
        }
    }
    let pool = pool("pan-drop", PoolConfig::new(1));
    let worker = pool.execute(|| thread::current().id()).unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let handle = pool
        .submit(move || {
            let _ = rx.recv_timeout(PATIENCE);
            PanicOnDrop
        })
        .unwrap();
    drop(handle); // detach: nobody will take the result
    tx.send(()).unwrap();
    wait_until(PATIENCE, "the detached task has finished", || {
        pool.stats().completed == 2
    });
    let again = pool.execute(|| thread::current().id()).unwrap();
    assert_eq!(worker, again, "the worker survived the panicking drop");
    assert_eq!(pool.stats().live_threads, 1);
}

// ---------------------------------------------------------------------------------------------
// A thousand panics later
// ---------------------------------------------------------------------------------------------

#[test]
fn a_thousand_panics_later_the_pool_still_runs_max_threads_at_once() {
    let max = 4;
    let panics = if cfg!(miri) { 20 } else { 1_000 };
    // A queue, so that a lost worker would show up as a task left waiting rather than as a
    // rejection.
    let pool = pool("pan-many", PoolConfig::new(max).queue_capacity(max));
    // Panics from several callers at once, so that every worker takes its share.
    let per_caller = panics / max;
    thread::scope(|s| {
        for c in 0..max {
            let pool = &pool;
            s.spawn(move || {
                let mut done = 0;
                while done < per_caller {
                    match pool.execute(move || panic!("caller {c} panic {done}")) {
                        Err(e) if e.is_panicked() => done += 1,
                        Err(e) => panic!("unexpected outcome: {e}"),
                        Ok(()) => unreachable!(),
                    }
                }
            });
        }
    });
    let s = pool.stats();
    assert_eq!(s.panicked, (per_caller * max) as u64);
    assert_eq!(s.rejected, 0, "four callers never overfill four slots");
    assert!(s.live_threads <= max);

    // Now prove that max_threads tasks still run at the same time: each waits for all the
    // others, which only works if there are four live workers to run them.
    let together = Arc::new(BoundedBarrier::new(max));
    let handles: Vec<_> = (0..max)
        .map(|_| {
            let together = Arc::clone(&together);
            pool.submit(move || (together.wait(), thread::current().id()))
                .unwrap()
        })
        .collect();
    let mut workers = HashSet::new();
    for h in handles {
        let (all_arrived, worker) = h.join().unwrap();
        assert!(
            all_arrived,
            "{max} tasks should run at the same time after the panics"
        );
        workers.insert(worker);
    }
    assert_eq!(workers.len(), max);
    let s = pool.stats();
    assert_eq!(s.peak_running, max);
    assert_eq!(s.live_threads, max, "no worker was lost or leaked");
    assert_books_balance(&pool);
}
