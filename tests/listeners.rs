//! Listeners: user code called on every event, which must never be able to wedge or break a
//! bulkhead or its manager.

use std::panic::panic_any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use bulkheads::{BulkheadManager, EventKind, PoolConfig, SemaphoreConfig};

mod common;
use common::{assert_books_balance, threads_named};

/// A bound on work that takes milliseconds when nothing is wrong; only a deadlock gets near it.
const GENEROUS: Duration = Duration::from_secs(60);

// Regression: a listener that reads `manager.stats()` deadlocked against a concurrent
// `manager.on_event(..)` within a few hundred operations. Listeners ran under their list's
// read lock; `on_event` held the registry's write locks while it waited for that list's write
// lock; the listener, inside the read lock, waited for the registry's read lock behind
// `on_event`'s write. Each side held what the other waited for. Listeners now run with no
// lock held (a copy-on-write list), and `on_event` waits for nothing a listener can hold.
#[test]
fn a_listener_reading_the_manager_never_deadlocks_with_a_concurrent_on_event() {
    let operations = if cfg!(miri) { 50 } else { 2_000 };
    let manager = Arc::new(
        BulkheadManager::builder()
            .pool("db", PoolConfig::new(2).queue_capacity(2))
            .semaphore("cache", SemaphoreConfig::new(4))
            .build()
            .unwrap(),
    );
    let observed = Arc::new(AtomicUsize::new(0));
    {
        let (weak, observed) = (Arc::downgrade(&manager), Arc::clone(&observed));
        manager.on_event(move |_| {
            // A weak reference: the listener, held by the manager's bulkheads, must not keep
            // the manager alive.
            if weak
                .upgrade()
                .is_some_and(|manager| manager.stats().bulkheads.len() == 2)
            {
                observed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    let (done_tx, done) = mpsc::channel();
    let start = Arc::new(Barrier::new(2));
    let subscriber = {
        let (manager, start, done_tx) = (Arc::clone(&manager), Arc::clone(&start), done_tx.clone());
        thread::spawn(move || {
            start.wait();
            for _ in 0..operations {
                manager.on_event(|_| {});
            }
            done_tx.send("on_event").unwrap();
        })
    };
    let caller = {
        let manager = Arc::clone(&manager);
        thread::spawn(move || {
            let (pool, cache) = (manager.pool("db"), manager.semaphore("cache"));
            start.wait();
            for i in 0..operations {
                assert_eq!(pool.execute(move || i).unwrap(), i);
                assert_eq!(cache.call(|| i).unwrap(), i);
            }
            done_tx.send("calls").unwrap();
        })
    };

    for _ in 0..2 {
        done.recv_timeout(GENEROUS).unwrap_or_else(|_| {
            panic!(
                "no progress in {GENEROUS:?}: a listener reading manager.stats() deadlocked \
                 with on_event ({} events observed)",
                observed.load(Ordering::Relaxed)
            )
        });
    }
    subscriber.join().unwrap();
    caller.join().unwrap();
    // Every call fires Permitted, Started and Finished (pool) and Permitted (semaphore).
    assert_eq!(observed.load(Ordering::Relaxed), 4 * operations);
    assert!(manager.shutdown(GENEROUS));
    assert_books_balance(&manager.pool("db"));
}

/// A panic payload whose own `Drop` panics: dropping the caught payload is user code too.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("the payload's drop panicked too");
        }
    }
}

// A listener that panics — even with a payload whose drop panics again — is contained where
// the listener is called: the call still gets its outcome, the worker survives, and the books
// balance. (The payload was dropped outside the `catch_unwind`, so its second panic unwound
// out of the event into the worker's task bookkeeping, and the caller never got an outcome.)
#[test]
fn a_panicking_listener_leaves_the_outcome_the_worker_and_the_books_intact() {
    const PREFIX: &str = "lsnpanic";
    const CALLS: u32 = 5;
    let manager = Arc::new(
        BulkheadManager::builder()
            .pool("p", PoolConfig::new(1).thread_name_prefix(PREFIX))
            .semaphore("s", SemaphoreConfig::new(1))
            .build()
            .unwrap(),
    );
    let heard = Arc::new(AtomicUsize::new(0));
    manager.on_event(|e| match e.kind {
        EventKind::Permitted { .. } => panic!("listener panics on {e}"),
        _ => panic_any(PanicsOnDrop),
    });
    {
        // A second listener, after the panicking one, still hears every event.
        let heard = Arc::clone(&heard);
        manager.on_event(move |_| {
            heard.fetch_add(1, Ordering::Relaxed);
        });
    }

    // On a thread of its own: the failure this guards against was a caller waiting for ever.
    let (done_tx, done) = mpsc::channel();
    let calls = {
        let manager = Arc::clone(&manager);
        thread::spawn(move || {
            let pool = manager.pool("p");
            for i in 0..CALLS {
                assert_eq!(pool.execute(move || i * 2).unwrap(), i * 2);
            }
            let err = pool
                .execute(|| -> u32 { panic!("the task's own panic") })
                .unwrap_err();
            assert!(err.is_panicked(), "{err}");
            assert_eq!(pool.execute(|| 7).unwrap(), 7);

            let semaphore = manager.semaphore("s");
            assert_eq!(semaphore.call(|| "cached").unwrap(), "cached");
            let held = semaphore.try_acquire().unwrap();
            assert!(semaphore.try_acquire().unwrap_err().is_rejected());
            drop(held);
            done_tx.send(()).unwrap();
        })
    };
    done.recv_timeout(GENEROUS)
        .expect("a call through a bulkhead with a panicking listener never returned");
    calls.join().expect("a listener's panic reached the caller");

    let pool = manager.pool("p");
    let stats = pool.stats();
    let calls = u64::from(CALLS);
    assert_eq!(
        (stats.completed, stats.panicked),
        (calls + 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.live_threads, 1, "the worker died: {stats:?}");
    #[cfg(target_os = "linux")]
    assert_eq!(threads_named(PREFIX), 1, "the worker thread died");
    assert_books_balance(&pool);
    let stats = manager.semaphore("s").stats();
    assert_eq!((stats.permitted, stats.rejected, stats.running), (2, 1, 0));
    // Pool: Permitted, Started, Finished or Panicked for each of CALLS + 2 calls; semaphore:
    // two Permitted and one Rejected.
    let pool_events = 3 * (CALLS as usize + 2);
    assert_eq!(heard.load(Ordering::Relaxed), pool_events + 3);
    assert!(manager.shutdown(GENEROUS));
}

#[test]
fn every_event_says_what_sort_of_bulkhead_fired_it() {
    use bulkheads::{CircuitBreakerConfig, CircuitState};
    use std::sync::Mutex;
    // One name for a pool, a semaphore and a breaker: the kind tells them apart.
    let manager = BulkheadManager::builder()
        .pool("dep", PoolConfig::new(1))
        .semaphore("dep", SemaphoreConfig::new(1))
        .circuit_breaker("dep", CircuitBreakerConfig::new())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    manager.on_event(move |e| {
        sink.lock()
            .unwrap()
            .push((e.bulkhead.to_owned(), e.bulkhead_kind))
    });
    manager.pool("dep").execute(|| ()).unwrap();
    manager.semaphore("dep").call(|| ()).unwrap();
    manager
        .circuit_breaker("dep")
        .unwrap()
        .transition_to(CircuitState::Open)
        .unwrap();
    let kinds: std::collections::BTreeSet<&str> =
        seen.lock().unwrap().iter().map(|(_, k)| *k).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["circuit_breaker", "pool", "semaphore"]
    );
    assert!(seen.lock().unwrap().iter().all(|(name, _)| name == "dep"));
}
