//! Rejection allocates nothing: a counting global allocator proves it.
//!
//! The allocator counts per thread (a `const`-initialised thread-local, which itself never
//! allocates), so the worker thread's start-up and the test harness's threads do not blur
//! what the rejecting thread does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bulkheads::{PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the slot is gone while the thread tears down its thread-locals.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn rejection_paths_allocate_nothing() {
    let rounds = if cfg!(miri) { 50 } else { 10_000 };
    // The instrument works: one deliberate allocation is seen.
    let before = allocations();
    drop(std::hint::black_box(Box::new(7_u64)));
    assert_eq!(allocations() - before, 1);

    let pool = ThreadPoolBulkhead::new("full", PoolConfig::new(1)).expect("valid");
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).expect("admitted");
    // The first rejection warms anything lazily initialised (nothing should be).
    assert!(pool.execute(|| 1_u64).unwrap_err().is_rejected());

    let before = allocations();
    let mut rejected = 0;
    for _ in 0..rounds {
        match pool.execute(|| 1_u64) {
            Err(e) if e.is_rejected() => rejected += 1,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    let pool_allocations = allocations() - before;

    let sem = SemaphoreBulkhead::new("sem", SemaphoreConfig::new(1)).expect("valid");
    let permit = sem.try_acquire().expect("free");
    let before = allocations();
    for _ in 0..rounds {
        assert!(sem.try_acquire().is_err());
        assert!(sem.call(|| ()).is_err());
    }
    let semaphore_allocations = allocations() - before;
    drop(permit);

    release.send(()).expect("worker waiting");
    busy.join().expect("finished");
    assert_eq!(rejected, rounds);
    assert_eq!(pool_allocations, 0, "pool rejections allocated");
    assert_eq!(
        semaphore_allocations, 0,
        "semaphore rejections allocated: {semaphore_allocations}"
    );
    assert_eq!(pool.stats().rejected, rounds as u64 + 1);
}
