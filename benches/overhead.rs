//! The cost of isolation: a bulkhead's hot paths against the baseline it should approach.
//!
//! `cargo bench --bench overhead`. Compare ratios within one run, on a quiet machine.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use bulkheads::{PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

#[path = "support/naive.rs"]
mod naive;
use naive::NaivePool;

fn execute_hot(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute_noop_hot");
    for threads in [1usize, 2] {
        let pool = ThreadPoolBulkhead::new("bench", PoolConfig::new(threads)).expect("valid");
        group.bench_with_input(BenchmarkId::new("bulkheads", threads), &threads, |b, _| {
            b.iter(|| pool.execute(|| black_box(1_u64)).expect("admitted"))
        });
        let naive = NaivePool::new(threads, threads);
        group.bench_with_input(BenchmarkId::new("naive", threads), &threads, |b, _| {
            b.iter(|| naive.execute(|| black_box(1_u64)))
        });
    }
    group.finish();
}

fn rejection(c: &mut Criterion) {
    let mut group = c.benchmark_group("rejection_when_full");
    let pool = ThreadPoolBulkhead::new("full", PoolConfig::new(1)).expect("valid");
    let (release, blocked) = crossbeam_channel::bounded::<()>(0);
    let busy = pool.submit(move || blocked.recv().ok()).expect("admitted");
    group.bench_function("execute_rejected", |b| {
        b.iter(|| black_box(pool.execute(|| 1_u64).is_err()))
    });
    group.finish();
    release.send(()).expect("worker waiting");
    busy.join().expect("finished");
}

fn semaphore(c: &mut Criterion) {
    let mut group = c.benchmark_group("semaphore_uncontended");
    let sem = SemaphoreBulkhead::new("sem", SemaphoreConfig::new(8)).expect("valid");
    group.bench_function("try_acquire_drop", |b| {
        b.iter(|| drop(black_box(sem.try_acquire().expect("free"))))
    });
    let counter = AtomicUsize::new(0);
    group.bench_function("bare_atomic_pair", |b| {
        b.iter(|| {
            let _ = counter.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
            black_box(counter.fetch_sub(1, Ordering::Release));
        })
    });
    group.finish();
}

criterion_group!(benches, execute_hot, rejection, semaphore);
criterion_main!(benches);
