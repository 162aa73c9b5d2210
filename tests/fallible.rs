//! Fallible calls: `FnOnce() -> Result<T, E>` gets one flat `Result<T, PolicyError<E>>`,
//! and its `Err` is counted as `failed` — in the stats (apart from `completed`, one outcome
//! per task, the books still adding up), the events, the Prometheus text and the table.
//!
//! Before this, a statement cancelled by the database came back as `Ok(Err(..))` and was
//! counted as `completed`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkheads::{
    BulkheadError, ConnectionPoolBulkhead, EventKind, PolicyError, PoolConfig, SemaphoreBulkhead,
    SemaphoreConfig, ThreadPoolBulkhead,
};

mod common;
use common::{Gate, OpenOnDrop, assert_books_balance, wait_until};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq)]
struct Cancelled;

#[test]
fn ok_is_completed_and_err_is_failed() {
    let pool = ThreadPoolBulkhead::new("fb-pool", PoolConfig::new(2)).unwrap();
    assert_eq!(pool.execute_fallible(|| Ok::<_, Cancelled>(1)).unwrap(), 1);
    for _ in 0..3 {
        let err = pool
            .execute_fallible(|| Err::<u32, _>(Cancelled))
            .unwrap_err();
        assert!(matches!(err, PolicyError::Inner(Cancelled)), "{err:?}");
    }
    // A plain task returning a Result is still a plain value: completed.
    assert!(pool.execute(|| Err::<u32, _>(Cancelled)).unwrap().is_err());
    let s = pool.stats();
    assert_eq!(
        (s.submitted, s.completed, s.failed, s.panicked),
        (5, 2, 3, 0),
        "{s:?}"
    );
    assert_books_balance(&pool);
}

#[test]
fn a_panic_or_a_rejection_is_the_bulkheads_error() {
    let pool = ThreadPoolBulkhead::new("fb-panic", PoolConfig::new(1)).unwrap();
    let err = pool
        .execute_fallible(|| -> Result<u32, Cancelled> { panic!("driver bug") })
        .unwrap_err();
    assert!(
        err.bulkhead_error().is_some_and(BulkheadError::is_panicked),
        "{err:?}"
    );
    let gate = Gate::new();
    let _open = OpenOnDrop(Arc::clone(&gate));
    let busy = {
        let gate = Arc::clone(&gate);
        pool.submit(move || gate.wait()).unwrap()
    };
    let err = pool
        .execute_fallible(|| Ok::<_, Cancelled>(()))
        .unwrap_err();
    assert!(
        err.bulkhead_error().is_some_and(BulkheadError::is_rejected),
        "{err:?}"
    );
    gate.open();
    assert!(busy.join().unwrap());
    let s = pool.stats();
    assert_eq!((s.panicked, s.failed, s.rejected), (1, 0, 1), "{s:?}");
    assert_books_balance(&pool);
}

#[test]
fn a_timed_out_task_that_fails_later_is_counted_failed_once() {
    let pool = ThreadPoolBulkhead::new("fb-late", PoolConfig::new(1)).unwrap();
    let gate = Gate::new();
    let _open = OpenOnDrop(Arc::clone(&gate));
    let stuck = Arc::clone(&gate);
    let err = pool
        .execute_fallible_timeout(Duration::from_millis(10), move || {
            stuck.wait();
            Err::<(), _>(Cancelled)
        })
        .unwrap_err();
    assert!(
        err.bulkhead_error().is_some_and(BulkheadError::is_timeout),
        "{err:?}"
    );
    // It returns only after its caller is gone: the worker drops the Err and counts it.
    gate.open();
    wait_until(WAIT, "the pool is quiet", || pool.stats().running == 0);
    let s = pool.stats();
    assert_eq!((s.timed_out, s.failed, s.completed), (1, 1, 0), "{s:?}");
    assert_books_balance(&pool);
}

#[test]
fn failures_fire_failed_events() {
    let pool = ThreadPoolBulkhead::new("fb-events", PoolConfig::new(1)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    pool.on_event(move |e| match e.kind {
        EventKind::Finished { .. } => log.lock().unwrap().push("finished"),
        EventKind::Failed { .. } => log.lock().unwrap().push("failed"),
        EventKind::Panicked { .. } => log.lock().unwrap().push("panicked"),
        _ => {}
    });
    pool.execute_fallible(|| Ok::<_, Cancelled>(())).unwrap();
    pool.execute_fallible(|| Err::<(), _>(Cancelled))
        .unwrap_err();
    // The events are fired on the worker before the outcome is handed over.
    assert_eq!(*seen.lock().unwrap(), ["finished", "failed"]);
    let shown = Arc::new(Mutex::new(String::new()));
    let text = Arc::clone(&shown);
    pool.on_event(move |e| {
        if matches!(e.kind, EventKind::Failed { .. }) {
            *text.lock().unwrap() = e.to_string();
        }
    });
    pool.execute_fallible(|| Err::<(), _>(Cancelled))
        .unwrap_err();
    let shown = shown.lock().unwrap().clone();
    assert!(shown.starts_with("fb-events: failed after"), "{shown}");
}

#[test]
fn prometheus_and_the_table_show_failed() {
    let pool = ThreadPoolBulkhead::new("fb-prom", PoolConfig::new(1)).unwrap();
    pool.execute_fallible(|| Err::<(), _>(Cancelled))
        .unwrap_err();
    pool.execute_fallible(|| Err::<(), _>(Cancelled))
        .unwrap_err();
    let text = pool.stats().to_prometheus();
    assert!(
        text.contains(
            "bulkhead_calls_total{bulkhead=\"fb-prom\",kind=\"pool\",outcome=\"failed\"} 2\n"
        ),
        "{text}"
    );
    let table = pool.stats().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].trim_end().ends_with("failed"), "{table}");
    assert_eq!(lines[1].split_whitespace().last(), Some("2"), "{table}");

    let sem = SemaphoreBulkhead::new("fb-sem-prom", SemaphoreConfig::new(1)).unwrap();
    sem.call_fallible(|| Err::<(), _>(Cancelled)).unwrap_err();
    let text = sem.stats().to_prometheus();
    assert!(
        text.contains(
            "bulkhead_calls_total{bulkhead=\"fb-sem-prom\",kind=\"semaphore\",outcome=\"failed\"} 1\n"
        ),
        "{text}"
    );
    assert_eq!(
        sem.stats()
            .to_string()
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().last()),
        Some("1")
    );
}

#[test]
fn semaphore_calls_count_their_failures() {
    let sem = SemaphoreBulkhead::new("fb-sem", SemaphoreConfig::new(1)).unwrap();
    assert_eq!(sem.call_fallible(|| Ok::<_, Cancelled>(4)).unwrap(), 4);
    let err = sem
        .call_fallible_timeout(Duration::from_secs(1), || Err::<u32, _>(Cancelled))
        .unwrap_err();
    assert_eq!(err.into_inner(), Some(Cancelled));
    let held = sem.try_acquire().unwrap();
    let err = sem
        .call_fallible_timeout(Duration::ZERO, || Ok::<_, Cancelled>(()))
        .unwrap_err();
    assert!(err.bulkhead_error().is_some_and(BulkheadError::is_rejected));
    drop(held);
    let s = sem.stats();
    assert_eq!((s.permitted, s.rejected, s.failed), (3, 1, 1), "{s:?}");
}

#[test]
fn connection_calls_count_failures_and_failed_connects() {
    let fail_next = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = Arc::clone(&fail_next);
    let db = ConnectionPoolBulkhead::new("fb-conn", PoolConfig::new(1), move || {
        if flag.swap(false, std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::other("connection refused"))
        } else {
            Ok(0_u32)
        }
    })
    .unwrap();
    let err = db
        .execute_fallible(|conn: &mut u32| Ok::<_, Cancelled>(*conn))
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::Bulkhead(BulkheadError::Connect { .. })),
        "{err:?}"
    );
    let err = db
        .execute_fallible_timeout(WAIT, |_: &mut u32| Err::<(), _>(Cancelled))
        .unwrap_err();
    assert!(matches!(err, PolicyError::Inner(Cancelled)));
    assert_eq!(
        db.execute_fallible(|c: &mut u32| Ok::<_, Cancelled>(*c + 1))
            .unwrap(),
        1
    );
    // The plain form: a failed connect is a failure too.
    let s = db.stats();
    assert_eq!(
        (s.connect_failures, s.failed, s.completed),
        (1, 2, 1),
        "{s:?}"
    );
    assert_books_balance(db.pool());
}

#[test]
fn the_until_forms_count_and_time_out() {
    use std::time::Instant;
    let db = ConnectionPoolBulkhead::new("fb-until", PoolConfig::new(1), || {
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
    let far = Instant::now() + Duration::from_secs(60);
    let err = db
        .execute_fallible_until(far, |_: &mut ()| Err::<(), _>(Cancelled))
        .unwrap_err();
    assert!(matches!(err, PolicyError::Inner(Cancelled)));
    let gate = Gate::new();
    let _open = OpenOnDrop(Arc::clone(&gate));
    let stuck = Arc::clone(&gate);
    let soon = Instant::now() + Duration::from_millis(10);
    let err = db
        .execute_fallible_until(soon, move |_: &mut ()| {
            stuck.wait();
            Ok::<_, Cancelled>(())
        })
        .unwrap_err();
    assert!(
        err.bulkhead_error().is_some_and(BulkheadError::is_timeout),
        "{err:?}"
    );
    gate.open();
    wait_until(WAIT, "the pool is quiet", || db.stats().running == 0);
    let pool = ThreadPoolBulkhead::new("fb-until-p", PoolConfig::new(1)).unwrap();
    let err = pool
        .execute_fallible_until(far, || Err::<(), _>(Cancelled))
        .unwrap_err();
    assert_eq!(err.into_inner(), Some(Cancelled));
    let s = db.stats();
    assert_eq!((s.failed, s.completed, s.timed_out), (1, 1, 1), "{s:?}");
    assert_eq!(pool.stats().failed, 1);
    assert_books_balance(db.pool());
}
