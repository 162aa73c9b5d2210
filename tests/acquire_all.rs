//! acquire_all: all or nothing, one deadline, and no deadlock whatever the order callers
//! name the semaphores in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bulkheads::{SemaphoreBulkhead, SemaphoreConfig, acquire_all};

fn sem(name: &str, n: usize) -> Arc<SemaphoreBulkhead> {
    Arc::new(SemaphoreBulkhead::new(name, SemaphoreConfig::new(n)).unwrap())
}

#[test]
fn takes_one_permit_of_each() {
    let (a, b, c) = (sem("a", 2), sem("b", 2), sem("c", 2));
    let permits = acquire_all(&[&a, &b, &c], Duration::ZERO).unwrap();
    assert_eq!(permits.len(), 3);
    let mut names = permits.bulkheads();
    names.sort_unstable();
    assert_eq!(names, ["a", "b", "c"]);
    for s in [&a, &b, &c] {
        assert_eq!(s.stats().running, 1);
    }
    drop(permits);
    for s in [&a, &b, &c] {
        assert_eq!(s.stats().running, 0);
    }
    assert!(acquire_all(&[], Duration::ZERO).unwrap().is_empty());
}

#[test]
fn a_failure_gives_back_everything_taken() {
    let (a, b, c) = (sem("a", 1), sem("b", 1), sem("c", 1));
    let _held = b.try_acquire().unwrap();
    for order in [[&a, &b, &c], [&c, &b, &a]] {
        let order: Vec<&SemaphoreBulkhead> = order.iter().map(|s| &***s).collect();
        let err = acquire_all(&order, Duration::from_millis(1)).unwrap_err();
        assert!(err.is_rejected());
        assert_eq!(err.bulkhead(), "b");
        assert_eq!(a.stats().running, 0);
        assert_eq!(c.stats().running, 0);
    }
}

#[test]
fn a_semaphore_named_twice_gives_two_permits() {
    let a = sem("a", 2);
    let p = acquire_all(&[&a, &a], Duration::ZERO).unwrap();
    assert_eq!(a.stats().running, 2);
    assert!(acquire_all(&[&a], Duration::ZERO).is_err());
    drop(p);
}

#[test]
fn reversed_orders_cannot_deadlock() {
    // Two callers, one naming a then b, the other b then a, each semaphore of one permit:
    // taken in the order named, each could hold one and wait for the other for ever. With
    // a very long deadline, a deadlock would hang this test instead of failing quietly.
    const ROUNDS: usize = if cfg!(miri) { 20 } else { 5_000 };
    let (a, b) = (sem("a", 1), sem("b", 1));
    let done = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [false, true]
        .into_iter()
        .map(|reversed| {
            let (a, b, done, barrier) = (
                Arc::clone(&a),
                Arc::clone(&b),
                Arc::clone(&done),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..ROUNDS {
                    let order: [&SemaphoreBulkhead; 2] = if reversed { [&b, &a] } else { [&a, &b] };
                    let permits = acquire_all(&order, Duration::from_secs(3_600)).unwrap();
                    assert_eq!(permits.len(), 2);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(done.load(Ordering::Relaxed), 2 * ROUNDS);
    assert_eq!((a.stats().running, b.stats().running), (0, 0));
}
