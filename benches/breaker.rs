//! The cost of a circuit breaker on the hot path: `try_acquire` + `success()` on a closed
//! breaker (target: at most 50 ns), beside what it cannot avoid — the two clock readings
//! that time the call, on the coarse clock the default breaker uses (Linux) and on the
//! precise one a short slow-call threshold needs — and the cost of a refusal when open.
//!
//! `cargo bench --bench breaker`. Compare within one run, on a quiet machine.

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Thread counts to measure, capped at the machine's cores (and at least 2).
fn thread_counts() -> Vec<usize> {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    [1, 2, 4, 8]
        .into_iter()
        .filter(|&n| n <= cores.max(2))
        .collect()
}

fn closed(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_closed");
    let breaker = CircuitBreaker::new("bench", CircuitBreakerConfig::new()).expect("valid");
    group.bench_function("try_acquire_success", |b| {
        b.iter(|| breaker.try_acquire().expect("closed").success());
    });
    group.bench_function("call_ok", |b| {
        b.iter(|| {
            breaker
                .call(|| Ok::<_, ()>(black_box(1_u64)))
                .expect("closed")
        });
    });
    // A slow-call threshold too short for the coarse clock: timed on `Instant::now`.
    let exact = CircuitBreaker::new(
        "bench-exact",
        CircuitBreakerConfig::new().slow_call_duration(Duration::from_millis(100)),
    )
    .expect("valid");
    group.bench_function("try_acquire_success_exact_clock", |b| {
        b.iter(|| exact.try_acquire().expect("closed").success());
    });
    let manual = CircuitBreaker::new(
        "bench-manual",
        CircuitBreakerConfig::new().clock(Arc::new(ManualClock::new())),
    )
    .expect("valid");
    group.bench_function("try_acquire_success_manual_clock", |b| {
        b.iter(|| manual.try_acquire().expect("closed").success());
    });
    // The floors: two readings of the clock that times the call.
    #[cfg(target_os = "linux")]
    group.bench_function("baseline_two_coarse_readings", |b| {
        use rustix::time::{ClockId, clock_gettime};
        let nanos = || {
            let t = clock_gettime(ClockId::MonotonicCoarse);
            t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
        };
        b.iter(|| {
            let start = black_box(nanos());
            black_box(nanos().saturating_sub(start))
        });
    });
    group.bench_function("baseline_two_instant_now", |b| {
        b.iter(|| {
            let start = black_box(Instant::now());
            black_box(Instant::now().saturating_duration_since(start))
        });
    });
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_open");
    let breaker = CircuitBreaker::new(
        "bench-open",
        CircuitBreakerConfig::new().wait_in_open(Duration::from_secs(3600)),
    )
    .expect("valid");
    breaker
        .transition_to(CircuitState::Open)
        .expect("closed -> open");
    group.bench_function("try_acquire_refused", |b| {
        b.iter(|| black_box(breaker.try_acquire().is_err()));
    });
    group.finish();
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker_closed_contended");
    for threads in thread_counts() {
        let breaker =
            CircuitBreaker::new("bench-contended", CircuitBreakerConfig::new()).expect("valid");
        group.bench_function(BenchmarkId::new("try_acquire_success", threads), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let start = Instant::now();
                thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                breaker.try_acquire().expect("closed").success();
                            }
                        });
                    }
                });
                // Criterion divides by `iters`; each caller made `iters / threads` calls in
                // the wall time, so this reports the time of one call as its caller sees it
                // (thread starts included, amortised over the calls).
                start.elapsed() * u32::try_from(threads).unwrap_or(1)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, closed, open, contended);
criterion_main!(benches);
