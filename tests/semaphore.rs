//! `SemaphoreBulkhead`: permits, waiting, fairness and the ceiling.
//!
//! Ported in spirit from resilience4j's `SemaphoreBulkheadTest` (acquire up to the limit,
//! reject past it, wait at most `maxWaitDuration`), Hystrix's semaphore-isolation tests
//! ("semaphore thread-safety": the ceiling holds however many threads race), the MicroProfile
//! Fault Tolerance TCK's semaphore bulkhead (`@Bulkhead(n)` admits exactly n at once) and a
//! regression from failsafe-rs, whose waiters that timed out kept their permits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadManager, EventKind, OwnedPermit, SemaphoreBulkhead, SemaphoreConfig};

mod common;
use common::wait_until;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

fn semaphore(name: &str, config: SemaphoreConfig) -> Arc<SemaphoreBulkhead> {
    Arc::new(SemaphoreBulkhead::new(name, config).expect("a valid configuration"))
}

/// Sizes shrink under miri, as crossbeam's do.
fn scaled(n: usize) -> usize {
    if cfg!(miri) { n.min(50) } else { n }
}

// ---------------------------------------------------------------------------------------------
// The three tiers
// ---------------------------------------------------------------------------------------------

#[test]
fn try_acquire_admits_up_to_the_limit_and_rejects_past_it() {
    let sem = semaphore("db", SemaphoreConfig::new(3));
    let permits: Vec<_> = (0..3)
        .map(|_| sem.try_acquire().expect("a free permit"))
        .collect();
    assert_eq!(permits[0].bulkhead(), "db");
    let err = sem.try_acquire().unwrap_err();
    assert!(err.is_rejected(), "{err:?}");
    assert_eq!(err.bulkhead(), "db");
    assert!(err.to_string().contains("'db'"), "{err}");
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (3, 0));
    assert_eq!((stats.permitted, stats.rejected), (3, 1));

    drop(permits);
    assert_eq!(sem.stats().running, 0);
    let again: Vec<_> = (0..3).map(|_| sem.try_acquire().unwrap()).collect();
    assert!(sem.try_acquire().is_err());
    drop(again);
}

#[test]
fn call_runs_on_the_callers_thread_under_a_permit() {
    let sem = semaphore("inline", SemaphoreConfig::new(1));
    let caller = thread::current().id();
    let (thread, running) = sem
        .call(|| (thread::current().id(), sem.stats().running))
        .unwrap();
    assert_eq!(thread, caller);
    assert_eq!(running, 1, "the call did not hold a permit");
    assert_eq!(sem.stats().running, 0, "the permit outlived the call");

    let held = sem.try_acquire().unwrap();
    let ran = AtomicBool::new(false);
    let err = sem.call(|| ran.store(true, Ordering::SeqCst)).unwrap_err();
    assert!(err.is_rejected());
    assert!(!ran.load(Ordering::SeqCst), "a rejected call ran");
    drop(held);
    assert_eq!(sem.call(|| 5).unwrap(), 5);
    let stats = sem.stats();
    assert_eq!((stats.permitted, stats.rejected), (3, 1));
}

#[test]
fn acquire_without_max_wait_rejects_at_once() {
    let no_wait = semaphore("no-wait", SemaphoreConfig::new(1));
    let held = no_wait.acquire().unwrap();
    let start = Instant::now();
    assert!(no_wait.acquire().unwrap_err().is_rejected());
    assert!(
        no_wait
            .acquire_timeout(Duration::ZERO)
            .unwrap_err()
            .is_rejected()
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(held);
    assert!(no_wait.acquire().is_ok());
}

#[test]
fn a_call_waits_up_to_max_wait_then_is_rejected() {
    let max_wait = Duration::from_millis(100);
    let sem = semaphore("patient", SemaphoreConfig::new(1).max_wait(max_wait));
    let held = sem.try_acquire().unwrap();

    let ran = AtomicBool::new(false);
    let start = Instant::now();
    let err = sem.call(|| ran.store(true, Ordering::SeqCst)).unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_rejected(), "{err:?}");
    assert!(!ran.load(Ordering::SeqCst));
    assert!(waited >= max_wait, "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");

    let start = Instant::now();
    assert!(sem.acquire().unwrap_err().is_rejected());
    assert!(start.elapsed() >= max_wait);

    let explicit = Duration::from_millis(30);
    let start = Instant::now();
    assert!(sem.acquire_timeout(explicit).unwrap_err().is_rejected());
    let waited = start.elapsed();
    assert!(
        waited >= explicit && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    assert_eq!(
        sem.stats().waiting,
        0,
        "a waiter that gave up stayed queued"
    );
    drop(held);
}

#[test]
fn a_waiting_call_runs_when_a_permit_frees_within_max_wait() {
    let sem = semaphore("handoff", SemaphoreConfig::new(1).max_wait(LONG));
    let held = sem.try_acquire().unwrap();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.call(|| "served"))
    };
    wait_until(LONG, "the call waits", || sem.stats().waiting == 1);
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), "served");
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting, stats.rejected), (0, 0, 0));
    assert_eq!(stats.permitted, 2);
}

// ---------------------------------------------------------------------------------------------
// RAII permits
// ---------------------------------------------------------------------------------------------

#[test]
fn a_permit_is_released_when_dropped() {
    let sem = semaphore("raii", SemaphoreConfig::new(2));
    {
        let _a = sem.try_acquire().unwrap();
        let _b = sem.try_acquire().unwrap();
        assert_eq!(sem.stats().running, 2);
    }
    assert_eq!(sem.stats().running, 0);
    // A permit moved to another thread is released there.
    let permit = sem.try_acquire().unwrap();
    thread::scope(|s| {
        s.spawn(move || drop(permit));
    });
    assert_eq!(sem.stats().running, 0);
}

#[test]
fn a_panic_inside_call_unwinds_to_the_caller_and_releases_the_permit() {
    let sem = semaphore("unwind", SemaphoreConfig::new(1));
    let result = catch_unwind(AssertUnwindSafe(|| {
        sem.call(|| -> u32 { panic!("boom inside call") })
    }));
    let payload = result.expect_err("the panic did not reach the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom inside call"));
    assert_eq!(sem.stats().running, 0, "the permit leaked on unwinding");
    assert_eq!(sem.call(|| 1).unwrap(), 1);

    // The same for a permit held by hand.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _permit = sem.try_acquire().unwrap();
        panic!("boom while holding a permit");
    }));
    assert!(result.is_err());
    assert_eq!(sem.stats().running, 0);
    assert!(sem.try_acquire().is_ok());
}

#[test]
fn a_panic_inside_call_hands_the_permit_to_a_waiter() {
    let sem = semaphore("unwind-waiter", SemaphoreConfig::new(1).max_wait(LONG));
    let (inside_tx, inside) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let panicker = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || {
            sem.call(|| {
                inside_tx.send(()).unwrap();
                let _ = go.recv_timeout(LONG);
                panic!("panics while someone waits");
            })
        })
    };
    inside.recv_timeout(LONG).unwrap();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.call(|| "after the panic"))
    };
    wait_until(LONG, "the second call waits", || sem.stats().waiting == 1);
    go_tx.send(()).unwrap();
    assert!(panicker.join().is_err(), "the panic did not unwind");
    assert_eq!(waiter.join().unwrap().unwrap(), "after the panic");
    assert_eq!(sem.stats().running, 0);
}

// ---------------------------------------------------------------------------------------------
// Owned permits
// ---------------------------------------------------------------------------------------------

// The issue: `manager.semaphore("db").try_acquire()?` borrows the temporary `Arc` the manager
// returns, so the permit cannot be kept past the statement. An owned permit can.
#[test]
fn an_owned_permit_outlives_the_temporary_arc_it_was_taken_from() {
    let manager = BulkheadManager::new();
    let permit = manager.semaphore("db").try_acquire_owned().unwrap();
    assert_eq!(permit.bulkhead(), "db");
    assert_eq!(format!("{permit:?}"), r#"OwnedPermit { bulkhead: "db" }"#);
    let sem = manager.semaphore("db");
    assert!(Arc::ptr_eq(permit.semaphore(), &sem));
    assert_eq!(sem.stats().running, 1);
    drop(permit);
    assert_eq!(sem.stats().running, 0);
}

#[test]
fn an_owned_permit_keeps_its_semaphore_alive_and_then_lets_it_go() {
    let sem = semaphore("alive", SemaphoreConfig::new(1));
    let weak = Arc::downgrade(&sem);
    let permit = sem.try_acquire_owned().unwrap();
    drop(sem);
    let alive = weak
        .upgrade()
        .expect("the permit keeps the semaphore alive");
    assert_eq!(alive.stats().running, 1);
    drop(alive);
    drop(permit);
    assert!(weak.upgrade().is_none(), "the permit leaked its semaphore");
}

#[test]
fn an_owned_permit_dropped_on_another_thread_goes_to_a_waiter_on_this_one() {
    let sem = semaphore("cross-thread", SemaphoreConfig::new(1));
    let permit = sem.try_acquire_owned().unwrap();
    let holder = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || {
            // Release only once the main thread waits, so the hand-off is what is tested.
            wait_until(LONG, "the main thread waits", || sem.stats().waiting == 1);
            drop(permit);
        })
    };
    let got = sem.acquire_owned_timeout(LONG);
    holder.join().unwrap();
    let got = got.expect("the permit released on the other thread reached the waiter");
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (1, 0));
    assert_eq!((stats.permitted, stats.rejected), (2, 0));
    drop(got);
    assert_eq!(sem.stats().running, 0);
}

#[test]
fn an_owned_permit_is_released_during_unwinding() {
    let sem = semaphore("owned-unwind", SemaphoreConfig::new(1));
    // On another thread that panics while holding it...
    let permit = sem.try_acquire_owned().unwrap();
    let panicker = thread::spawn(move || {
        let _permit = permit;
        panic!("boom while holding an owned permit");
    });
    assert!(panicker.join().is_err(), "the panic did not unwind");
    assert_eq!(sem.stats().running, 0, "the permit leaked on unwinding");
    // ...and on this one.
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _permit = sem.try_acquire_owned().unwrap();
        assert_eq!(sem.stats().running, 1);
        panic!("boom here");
    }));
    assert!(result.is_err());
    assert_eq!(sem.stats().running, 0);
    let again = sem.try_acquire_owned().expect("the permit is usable again");
    drop(again);
    assert_eq!(sem.stats().permitted, 3);
}

#[test]
fn owned_and_borrowed_permits_keep_one_set_of_books() {
    let sem = semaphore("books", SemaphoreConfig::new(2));
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = Arc::clone(&events);
        sem.on_event(move |e| events.lock().unwrap().push(e.kind));
    }
    let owned = sem.try_acquire_owned().unwrap();
    let borrowed = sem.try_acquire().unwrap();
    // Full: both kinds are refused, each refusal counted once.
    assert!(sem.try_acquire_owned().unwrap_err().is_rejected());
    assert!(sem.try_acquire().unwrap_err().is_rejected());
    assert!(
        sem.acquire_owned_timeout(Duration::from_millis(5))
            .unwrap_err()
            .is_rejected()
    );
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (2, 0));
    assert_eq!((stats.permitted, stats.rejected), (2, 3));

    // A waiter that is served is booked with its wait, whichever kind it asked for.
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.acquire_owned_timeout(LONG).map(drop))
    };
    wait_until(LONG, "the owned waiter waits", || sem.stats().waiting == 1);
    drop(owned);
    waiter.join().unwrap().expect("served");
    drop(borrowed);
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (0, 0));
    assert_eq!((stats.permitted, stats.rejected), (3, 3));
    // Every permit is in the wait summary, the fast ones as zero waits; one waited.
    assert_eq!(stats.wait.count, 3);
    assert!(stats.wait.max > Duration::ZERO, "{:?}", stats.wait);

    let events = events.lock().unwrap();
    let permitted: Vec<Duration> = events
        .iter()
        .filter_map(|k| match k {
            EventKind::Permitted { waited } => Some(*waited),
            _ => None,
        })
        .collect();
    let rejected = events
        .iter()
        .filter(|k| matches!(k, EventKind::Rejected))
        .count();
    assert_eq!(permitted.len(), 3, "{events:?}");
    assert_eq!(&permitted[..2], &[Duration::ZERO, Duration::ZERO]);
    assert!(permitted[2] > Duration::ZERO, "{events:?}");
    assert_eq!(rejected, 3, "{events:?}");
}

#[test]
fn an_owned_wait_gives_up_after_its_timeout_and_leaves_nothing_behind() {
    let max_wait = Duration::from_millis(50);
    let sem = semaphore("owned-timeout", SemaphoreConfig::new(1).max_wait(max_wait));
    let held = sem.try_acquire_owned().unwrap();

    let explicit = Duration::from_millis(30);
    let start = Instant::now();
    let err = sem.acquire_owned_timeout(explicit).unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_rejected(), "{err:?}");
    assert_eq!(err.bulkhead(), "owned-timeout");
    assert!(
        waited >= explicit && waited < Duration::from_secs(5),
        "gave up after {waited:?}"
    );

    // The configured tier waits `max_wait`.
    let start = Instant::now();
    assert!(sem.acquire_owned().unwrap_err().is_rejected());
    let waited = start.elapsed();
    assert!(
        waited >= max_wait && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    let stats = sem.stats();
    assert_eq!(
        (stats.running, stats.waiting),
        (1, 0),
        "a waiter stayed queued"
    );
    assert_eq!((stats.permitted, stats.rejected), (1, 2));
    drop(held);
    assert!(sem.try_acquire_owned().is_ok());
}

// The owned and borrowed waits are one wait: one FIFO queue, and no barging by either kind.
#[test]
fn owned_and_borrowed_waiters_share_one_fifo_queue() {
    let sem = semaphore("mixed-fifo", SemaphoreConfig::new(1));
    let held = sem.try_acquire_owned().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let (shared, order) = (Arc::clone(&sem), Arc::clone(&order));
        waiters.push(thread::spawn(move || {
            if i % 2 == 0 {
                let permit = shared.acquire_timeout(LONG).expect("served");
                order.lock().unwrap().push(i);
                drop(permit);
            } else {
                let permit = shared.acquire_owned_timeout(LONG).expect("served");
                order.lock().unwrap().push(i);
                drop(permit);
            }
        }));
        wait_until(LONG, "the waiter is queued", || {
            sem.stats().waiting == i + 1
        });
    }
    // While they wait, a newcomer of either kind is turned away.
    assert!(sem.try_acquire_owned().unwrap_err().is_rejected());
    assert!(sem.try_acquire().unwrap_err().is_rejected());
    drop(held);
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (0, 0));
    assert_eq!((stats.permitted, stats.rejected), (5, 2));
}

/// What a user keeps an owned permit in: a value with a `'static` bound.
struct Lease {
    id: u32,
    _permit: OwnedPermit,
}

fn keep<T: Send + 'static>(value: T) -> T {
    value
}

#[test]
fn an_owned_permit_can_be_stored_in_a_static_struct_and_moved_into_a_thread() {
    let sem = semaphore("lease", SemaphoreConfig::new(1));
    let lease = keep(Lease {
        id: 7,
        _permit: Arc::clone(&sem).try_acquire_owned().unwrap(),
    });
    // std::thread::spawn requires 'static: a borrowed Permit could not go here.
    let worker = thread::spawn(move || {
        assert_eq!(lease.id, 7);
        lease
    });
    let lease = worker.join().unwrap();
    assert_eq!(
        sem.stats().running,
        1,
        "the permit travelled with the lease"
    );
    assert!(sem.try_acquire().is_err());
    drop(lease);
    assert_eq!(sem.stats().running, 0);
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

#[test]
fn a_waiter_is_admitted_as_soon_as_a_permit_frees() {
    let sem = semaphore("prompt", SemaphoreConfig::new(1));
    let held = sem.try_acquire().unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || {
            let permit = sem.acquire_timeout(LONG);
            tx.send((permit.is_ok(), Instant::now())).unwrap();
        })
    };
    wait_until(LONG, "the waiter waits", || sem.stats().waiting == 1);

    let released = Instant::now();
    drop(held);
    let (admitted, at) = rx
        .recv_timeout(LONG)
        .expect("the waiter never got the permit");
    waiter.join().unwrap();
    assert!(admitted);
    // The waiter asked for up to 10 s; it must get the freed permit long before.
    let delay = at.saturating_duration_since(released);
    assert!(
        delay < Duration::from_secs(3),
        "admitted {delay:?} after the release"
    );
}

// Regression (failsafe-rs): a waiter that timed out left its permit accounted as taken, so after
// enough timeouts the bulkhead admitted nobody at all. Here every permit is held, as many
// waiters time out, and afterwards every permit must be usable again.
#[test]
fn waiters_that_time_out_leak_nothing() {
    const PERMITS: usize = 8;
    let sem = semaphore("no-leak", SemaphoreConfig::new(PERMITS));
    let held: Vec<_> = (0..PERMITS).map(|_| sem.try_acquire().unwrap()).collect();

    let barrier = Barrier::new(PERMITS);
    thread::scope(|s| {
        let waiters: Vec<_> = (0..PERMITS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    sem.acquire_timeout(Duration::from_millis(50)).map(drop)
                })
            })
            .collect();
        for waiter in waiters {
            assert!(waiter.join().unwrap().unwrap_err().is_rejected());
        }
    });
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (PERMITS, 0));
    assert_eq!(stats.rejected, PERMITS as u64);

    drop(held);
    assert_eq!(sem.stats().running, 0);
    let again: Vec<_> = (0..PERMITS)
        .map(|i| {
            sem.try_acquire()
                .unwrap_or_else(|e| panic!("permit {i} leaked: {e}"))
        })
        .collect();
    assert!(sem.try_acquire().is_err());
    drop(again);
    assert_eq!(sem.stats().running, 0);
}

// The same, with the releases racing the timeouts: a permit handed to a waiter at the instant
// it gives up must be either used or given back, never lost.
#[test]
fn waiters_timing_out_while_permits_are_released_leak_nothing() {
    const PERMITS: usize = 4;
    const WAITERS: usize = 8;
    let sem = semaphore("no-leak-race", SemaphoreConfig::new(PERMITS));
    for round in 0..scaled(100) {
        let held: Vec<_> = (0..PERMITS).map(|_| sem.try_acquire().unwrap()).collect();
        let barrier = Barrier::new(WAITERS + 1);
        let served = AtomicUsize::new(0);
        thread::scope(|s| {
            for w in 0..WAITERS {
                let (sem, barrier, served) = (&sem, &barrier, &served);
                s.spawn(move || {
                    barrier.wait();
                    // 0..=1.4 ms: some give up before, some during, some after the releases.
                    let timeout = Duration::from_micros(200 * ((round + w) % 8) as u64);
                    if let Ok(permit) = sem.acquire_timeout(timeout) {
                        served.fetch_add(1, Ordering::SeqCst);
                        drop(permit);
                    }
                });
            }
            barrier.wait();
            for permit in held {
                drop(permit);
                thread::yield_now();
            }
        });
        let stats = sem.stats();
        assert_eq!(
            (stats.running, stats.waiting),
            (0, 0),
            "round {round}: {stats:?}"
        );
        let all: Vec<_> = (0..PERMITS)
            .map(|i| {
                sem.try_acquire()
                    .unwrap_or_else(|e| panic!("round {round}: permit {i} leaked: {e}"))
            })
            .collect();
        drop(all);
    }
    let stats = sem.stats();
    // Every attempt was counted once: the round's own permits, the waiters, the checks.
    let rounds = scaled(100) as u64;
    assert_eq!(
        stats.permitted + stats.rejected,
        rounds * (PERMITS + WAITERS + PERMITS) as u64
    );
}

#[test]
fn waiters_get_permits_in_the_order_they_began_to_wait() {
    const WAITERS: usize = 6;
    let sem = semaphore("fifo", SemaphoreConfig::new(1));
    let held = sem.try_acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..WAITERS {
        let (shared, order) = (Arc::clone(&sem), Arc::clone(&order));
        waiters.push(thread::spawn(move || {
            let permit = shared.acquire_timeout(LONG).expect("served within 10 s");
            // Recorded while the permit is held: the next waiter cannot record before us.
            order.lock().unwrap().push(i);
            drop(permit);
        }));
        // Start the next only once this one is queued: the waiting order is then known.
        wait_until(LONG, "the waiter is queued", || {
            sem.stats().waiting == i + 1
        });
    }
    drop(held);
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..WAITERS).collect::<Vec<_>>());
    let stats = sem.stats();
    assert_eq!((stats.running, stats.waiting), (0, 0));
    assert_eq!((stats.permitted, stats.rejected), (WAITERS as u64 + 1, 0));
}

#[test]
fn newcomers_do_not_barge_past_a_waiter() {
    let sem = semaphore("no-barging", SemaphoreConfig::new(1));
    let held = sem.try_acquire().unwrap();
    let (release_tx, release) = mpsc::channel::<()>();
    let (got_tx, got) = mpsc::channel();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || {
            let permit = sem.acquire_timeout(LONG);
            got_tx.send(permit.is_ok()).unwrap();
            let _ = release.recv_timeout(LONG);
            drop(permit);
        })
    };
    wait_until(LONG, "the waiter waits", || sem.stats().waiting == 1);

    // While someone waits, a newcomer is turned away, even before any permit frees...
    assert!(sem.try_acquire().unwrap_err().is_rejected());
    // ...and the freed permit goes to the waiter, not to the newcomer who asks at once.
    drop(held);
    assert!(
        sem.try_acquire().is_err(),
        "a newcomer took the permit released for the waiter"
    );
    assert!(got.recv_timeout(LONG).unwrap(), "the waiter was not served");
    assert_eq!(sem.stats().running, 1);
    release_tx.send(()).unwrap();
    waiter.join().unwrap();
    assert!(sem.try_acquire().is_ok());
}

// ---------------------------------------------------------------------------------------------
// The ceiling
// ---------------------------------------------------------------------------------------------

/// Hystrix's "semaphore thread-safety": many threads race for few permits; the concurrency
/// observed inside never exceeds the limit, and every attempt is either permitted or rejected.
fn hammer(max_wait: Duration) {
    const LIMIT: usize = 5;
    const THREADS: usize = 16;
    let per_thread = scaled(2_000);
    let sem = semaphore("hammer", SemaphoreConfig::new(LIMIT).max_wait(max_wait));
    let current = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    let permitted = AtomicUsize::new(0);
    let rejected = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (sem, current, peak) = (&sem, &current, &peak);
            let (permitted, rejected, barrier) = (&permitted, &rejected, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    let work = || {
                        let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        if i % 4 == 0 {
                            thread::yield_now();
                        }
                        current.fetch_sub(1, Ordering::SeqCst);
                    };
                    // Alternate the tiers and the permit kinds: they share one set of permits.
                    let outcome = match (t + i) % 4 {
                        0 => sem.call(work),
                        1 => sem.try_acquire().map(|_permit| work()),
                        2 => sem.try_acquire_owned().map(|_permit| work()),
                        _ => sem.acquire_owned().map(|_permit| work()),
                    };
                    match outcome {
                        Ok(()) => permitted.fetch_add(1, Ordering::SeqCst),
                        Err(e) if e.is_rejected() => rejected.fetch_add(1, Ordering::SeqCst),
                        Err(e) => panic!("unexpected error {e:?}"),
                    };
                }
            });
        }
    });
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= LIMIT,
        "{peak} calls ran at once; the limit is {LIMIT}"
    );
    assert!(peak >= 1);
    let (permitted, rejected) = (
        permitted.load(Ordering::SeqCst),
        rejected.load(Ordering::SeqCst),
    );
    assert_eq!(permitted + rejected, THREADS * per_thread);
    let stats = sem.stats();
    assert_eq!(stats.permitted, permitted as u64);
    assert_eq!(stats.rejected, rejected as u64);
    assert_eq!((stats.running, stats.waiting), (0, 0));
}

#[test]
fn concurrency_never_exceeds_max_concurrent_without_waiting() {
    hammer(Duration::ZERO);
}

#[test]
fn concurrency_never_exceeds_max_concurrent_with_waiting() {
    hammer(Duration::from_millis(1));
}

// ---------------------------------------------------------------------------------------------
// Stats and construction
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_report_running_waiting_permitted_and_rejected() {
    let sem = semaphore("gauges", SemaphoreConfig::new(2));
    let stats = sem.stats();
    assert_eq!(stats.name, "gauges");
    assert_eq!(stats.max_concurrent, 2);
    assert_eq!(
        (
            stats.running,
            stats.waiting,
            stats.permitted,
            stats.rejected
        ),
        (0, 0, 0, 0)
    );

    let a = sem.try_acquire().unwrap();
    let b = sem.try_acquire().unwrap();
    assert!(sem.try_acquire().is_err());
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.acquire_timeout(LONG).map(drop))
    };
    wait_until(LONG, "the waiter waits", || sem.stats().waiting == 1);
    let stats = sem.stats();
    assert_eq!(
        (
            stats.running,
            stats.waiting,
            stats.permitted,
            stats.rejected
        ),
        (2, 1, 2, 1)
    );

    drop(a);
    waiter.join().unwrap().unwrap();
    drop(b);
    let stats = sem.stats();
    assert_eq!(
        (
            stats.running,
            stats.waiting,
            stats.permitted,
            stats.rejected
        ),
        (0, 0, 3, 1)
    );
    // Display is the manager's table with one row.
    let table = stats.to_string();
    let row = table.lines().nth(1).expect("a header and a row");
    assert!(row.starts_with("gauges"), "{table}");
    assert!(row.contains("semaphore") && row.contains("0/2"), "{table}");
}

#[test]
fn invalid_configurations_are_errors_naming_the_semaphore_and_the_field() {
    let err = SemaphoreBulkhead::new("zero", SemaphoreConfig::new(0)).unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("zero", "max_concurrent"));
    assert!(err.to_string().contains("zero") && err.to_string().contains("max_concurrent"));
    let err = SemaphoreBulkhead::new("", SemaphoreConfig::new(1)).unwrap_err();
    assert_eq!(err.field(), "name");
    let err = SemaphoreBulkhead::new("nul\0name", SemaphoreConfig::new(1)).unwrap_err();
    assert_eq!(err.field(), "name");
    #[cfg(target_pointer_width = "64")]
    {
        let too_many = SemaphoreConfig::MAX_CONCURRENT + 1;
        let err = SemaphoreBulkhead::new("huge", SemaphoreConfig::new(too_many)).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), ("huge", "max_concurrent"));
    }
    // The largest limit is fine and behaves.
    let sem = SemaphoreBulkhead::new("max", SemaphoreConfig::new(SemaphoreConfig::MAX_CONCURRENT))
        .unwrap();
    let permits: Vec<_> = (0..100).map(|_| sem.try_acquire().unwrap()).collect();
    assert_eq!(sem.stats().running, 100);
    drop(permits);
    assert_eq!(sem.stats().running, 0);
}

#[test]
fn a_huge_wait_does_not_overflow() {
    let sem = semaphore("forever", SemaphoreConfig::new(1).max_wait(Duration::MAX));
    let held = sem.try_acquire().unwrap();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.call(|| 9))
    };
    wait_until(LONG, "the call waits", || sem.stats().waiting == 1);
    drop(held);
    assert_eq!(waiter.join().unwrap().unwrap(), 9);
}

#[test]
fn semaphore_bulkheads_and_permits_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<SemaphoreBulkhead>();
    is::<bulkheads::Permit<'static>>();
    is::<OwnedPermit>();
    fn is_owned<T: Send + 'static>() {}
    is_owned::<OwnedPermit>();
}

/// The database issue's item 5: bounded waiting. Past `max_waiting` waiters a call fails at
/// once, as a pool's full queue does, instead of waiting for a permit that comes too late.
#[test]
fn max_waiting_rejects_at_once_past_the_bound_and_waiters_within_it_are_served() {
    let sem = Arc::new(
        SemaphoreBulkhead::new(
            "bounded-wait",
            SemaphoreConfig::new(1)
                .max_wait(Duration::from_secs(10))
                .max_waiting(1),
        )
        .unwrap(),
    );
    let held = sem.try_acquire_owned().unwrap();
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || {
            let got = sem.call(|| 1);
            tx.send(()).unwrap();
            got
        })
    };
    wait_until(Duration::from_secs(10), "the first caller waits", || {
        sem.stats().waiting == 1
    });
    // The one place to wait is taken: the next caller is refused without waiting.
    let start = Instant::now();
    let err = sem.call(|| 2).unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "it waited");
    assert!(rx.try_recv().is_err(), "the waiter is still waiting");
    drop(held);
    assert_eq!(
        waiter.join().unwrap().unwrap(),
        1,
        "the waiter within the bound is served"
    );
    assert_eq!(sem.config().max_waiting_value(), Some(1));
}
