//! Feature `tracing`: a subscriber that panics cannot strand a task or hang its caller.
//!
//! Regression: the worker enters the call's span around the task. A subscriber panicking in
//! `enter` unwound the worker between claiming the task and completing it; the task stayed
//! RUNNING forever with its slot taken, and an `execute` without a timeout never returned.
//! A drop guard now ends such a task as `Panicked`, frees its slot, and wakes its caller.
//! (Its own binary: it installs a global subscriber of its own.)
#![cfg(feature = "tracing")]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use bulkheads::{PoolConfig, ThreadPoolBulkhead};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

mod common;
use common::assert_books_balance;

/// Panics whenever a span is entered on one of the pool's worker threads.
#[derive(Default)]
struct PanicsOnEnter {
    next: AtomicU64,
}

impl Subscriber for PanicsOnEnter {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {
        let on_worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("unwind-"));
        if on_worker {
            panic!("subscriber bug");
        }
    }
    fn exit(&self, _: &Id) {}
}

#[test]
fn a_subscriber_panicking_around_a_task_ends_it_as_panicked_and_frees_its_slot() {
    tracing::subscriber::set_global_default(PanicsOnEnter::default())
        .expect("the only subscriber in this test binary");
    let pool = std::sync::Arc::new(ThreadPoolBulkhead::new("unwind", PoolConfig::new(1)).unwrap());
    for round in 0..3 {
        // `execute` has no timeout: on the old code this call never returned.
        let (tx, rx) = mpsc::channel();
        let caller = {
            let pool = std::sync::Arc::clone(&pool);
            std::thread::spawn(move || tx.send(pool.execute(|| 7)).unwrap())
        };
        let outcome = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| {
                panic!("round {round}: execute hung after the subscriber panicked")
            });
        caller.join().unwrap();
        let err = outcome.expect_err("the task never ran");
        assert!(err.is_panicked(), "{err}");
        assert!(err.to_string().contains("unwind"), "{err}");
        // The slot is free again (a pool of one, no queue): the next round is admitted.
        let stats = pool.stats();
        assert_eq!((stats.running, stats.queued), (0, 0), "{stats:?}");
        assert_eq!(stats.panicked, round + 1);
    }
    assert_books_balance(&pool);
}
