//! The cost of isolation: a bulkhead's hot paths against the baseline it should approach
//! (the naive design: std threads on a crossbeam `bounded` queue, a `bounded(1)` channel per
//! result) and the alternatives a user would pick instead (tokio's `spawn_blocking`, the
//! `threadpool` crate), all in the same group.
//!
//! `cargo bench --bench overhead`. Compare ratios within one run, on a quiet machine; for
//! one table of every target with PASS/MISS, `cargo run --release --example overhead`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/naive.rs"]
mod naive;
use cpu::{Hogs, callers_cpu_ns, cpu_ns_since, thread_cpu_ns};
use naive::{NaivePool, run_callers};

/// Thread counts to measure, capped at the machine's cores (and at least 2).
fn thread_counts() -> Vec<usize> {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    [1, 2, 4, 8, 16]
        .into_iter()
        .filter(|&n| n <= cores.max(2))
        .collect()
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a tokio runtime")
}

/// A round trip through the `threadpool` crate: submit, then wait on a channel.
fn threadpool_execute(pool: &threadpool::ThreadPool) -> u64 {
    let (tx, rx) = crossbeam_channel::bounded(1);
    pool.execute(move || {
        let _ = tx.send(black_box(1_u64));
    });
    rx.recv().expect("a result")
}

/// One no-op `execute` round trip, one caller, back to back.
fn execute_hot(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute_noop_hot");
    let rt = tokio_runtime();
    for threads in thread_counts() {
        let id = |name| BenchmarkId::new(name, threads);
        let pool = ThreadPoolBulkhead::new("bench", PoolConfig::new(threads)).expect("valid");
        group.bench_function(id("bulkheads"), |b| {
            b.iter(|| pool.execute(|| black_box(1_u64)).expect("admitted"))
        });
        let naive = NaivePool::new(threads, threads);
        group.bench_function(id("naive"), |b| {
            b.iter(|| naive.execute(|| black_box(1_u64)))
        });
        let tp = threadpool::ThreadPool::new(threads);
        group.bench_function(id("threadpool"), |b| b.iter(|| threadpool_execute(&tp)));
        group.bench_function(id("tokio_spawn_blocking"), |b| {
            b.iter(|| {
                rt.block_on(rt.spawn_blocking(|| black_box(1_u64)))
                    .expect("ran")
            })
        });
    }
    group.finish();
}

/// The same round trip after 200 µs idle: the workers are asleep, as a service calling a
/// dependency of milliseconds sees them.
fn execute_cold(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute_noop_cold");
    let idle = Duration::from_micros(200);
    let pool = ThreadPoolBulkhead::new("bench", PoolConfig::new(1)).expect("valid");
    group.bench_function("bulkheads", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                thread::sleep(idle);
                let start = Instant::now();
                black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
                total += start.elapsed();
            }
            total
        })
    });
    let naive = NaivePool::new(1, 1);
    group.bench_function("naive", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                thread::sleep(idle);
                let start = Instant::now();
                black_box(naive.execute(|| black_box(1_u64)));
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

/// Tiny tasks from 4 callers through pools of 2 and 4 threads.
fn tiny_throughput(c: &mut Criterion) {
    const CALLERS: usize = 4;
    let mut group = c.benchmark_group("tiny_tasks_4_callers");
    group.throughput(Throughput::Elements(CALLERS as u64));
    let rt = Arc::new(tokio_runtime());
    for threads in [2_usize, 4] {
        let id = |name| BenchmarkId::new(name, threads);
        let pool = Arc::new(
            ThreadPoolBulkhead::new("tp", PoolConfig::new(threads).queue_capacity(CALLERS))
                .expect("valid"),
        );
        group.bench_function(id("bulkheads"), |b| {
            b.iter_custom(|iters| {
                let p = Arc::clone(&pool);
                run_callers(
                    CALLERS,
                    iters,
                    Arc::new(move || {
                        black_box(p.execute(|| black_box(1_u64)).expect("admitted"));
                    }),
                )
            })
        });
        let naive = Arc::new(NaivePool::new(threads, CALLERS));
        group.bench_function(id("naive"), |b| {
            b.iter_custom(|iters| {
                let p = Arc::clone(&naive);
                run_callers(
                    CALLERS,
                    iters,
                    Arc::new(move || {
                        black_box(p.execute(|| black_box(1_u64)));
                    }),
                )
            })
        });
        let tp = Arc::new(threadpool::ThreadPool::new(threads));
        group.bench_function(id("threadpool"), |b| {
            b.iter_custom(|iters| {
                let tp = Arc::clone(&tp);
                run_callers(
                    CALLERS,
                    iters,
                    Arc::new(move || {
                        black_box(threadpool_execute(&tp));
                    }),
                )
            })
        });
        group.bench_function(id("tokio_spawn_blocking"), |b| {
            b.iter_custom(|iters| {
                let r = Arc::clone(&rt);
                run_callers(
                    CALLERS,
                    iters,
                    Arc::new(move || {
                        black_box(
                            r.block_on(r.spawn_blocking(|| black_box(1_u64)))
                                .expect("ran"),
                        );
                    }),
                )
            })
        });
    }
    group.finish();
}

/// A call to a full pool: the fail-fast path.
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

/// `try_acquire` + drop, uncontended, against the bare atomic pair it should approach.
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

/// `manager.pool(name).execute(f)` from 4 threads against a pool held in a variable.
fn manager_lookup(c: &mut Criterion) {
    const CALLERS: usize = 4;
    let mut group = c.benchmark_group("manager_lookup_4_callers");
    group.throughput(Throughput::Elements(CALLERS as u64));
    let manager = Arc::new(
        BulkheadManager::builder()
            .pool("db", PoolConfig::new(4).queue_capacity(4))
            .build()
            .expect("valid"),
    );
    group.bench_function("manager_pool_execute", |b| {
        b.iter_custom(|iters| {
            let m = Arc::clone(&manager);
            run_callers(
                CALLERS,
                iters,
                Arc::new(move || {
                    black_box(m.pool("db").execute(|| black_box(1_u64)).expect("admitted"));
                }),
            )
        })
    });
    group.bench_function("manager_execute", |b| {
        b.iter_custom(|iters| {
            let m = Arc::clone(&manager);
            run_callers(
                CALLERS,
                iters,
                Arc::new(move || {
                    black_box(m.execute("db", || black_box(1_u64)).expect("admitted"));
                }),
            )
        })
    });
    let held = manager.pool("db");
    group.bench_function("held_pool_execute", |b| {
        b.iter_custom(|iters| {
            let p = Arc::clone(&held);
            run_callers(
                CALLERS,
                iters,
                Arc::new(move || {
                    black_box(p.execute(|| black_box(1_u64)).expect("admitted"));
                }),
            )
        })
    });
    group.finish();
}

/// A trickle: one call every 2 ms. The figure is the process's CPU time per call, not wall
/// time: what spinning before sleeping costs when calls are far apart.
fn trickle_cpu(c: &mut Criterion) {
    let mut group = c.benchmark_group("trickle_cpu_per_call");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    let pool = ThreadPoolBulkhead::new("trickle", PoolConfig::new(2)).expect("valid");
    let naive = NaivePool::new(2, 2);
    let trickle = |call: &dyn Fn(), iters: u64| {
        let cpu = thread_cpu_ns();
        let mut next = Instant::now();
        for _ in 0..iters {
            next += Duration::from_millis(2);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            call();
        }
        Duration::from_nanos(cpu_ns_since(&cpu))
    };
    group.bench_function("bulkheads", |b| {
        b.iter_custom(|iters| {
            trickle(
                &|| {
                    black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
                },
                iters,
            )
        })
    });
    group.bench_function("naive", |b| {
        b.iter_custom(|iters| {
            trickle(
                &|| {
                    black_box(naive.execute(|| black_box(1_u64)));
                },
                iters,
            )
        })
    });
    group.finish();
}

/// A call a caller thread makes, shared by all of them.
type Call = Arc<dyn Fn() + Send + Sync>;

/// The process's CPU per call of a 1-ms blocking task from 8 callers on 8 workers: what
/// waiting costs when a spin cannot win. The figure is CPU time, not wall time.
fn slow_call_cpu(c: &mut Criterion) {
    const CALLERS: usize = 8;
    let mut group = c.benchmark_group("slow_call_cpu_8_callers");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let task = || thread::sleep(Duration::from_millis(1));
    let pool = Arc::new(
        ThreadPoolBulkhead::new("slow", PoolConfig::new(CALLERS).queue_capacity(CALLERS))
            .expect("valid"),
    );
    let naive = Arc::new(NaivePool::new(CALLERS, CALLERS));
    let contenders: [(&str, Call); 2] = [
        ("bulkheads", {
            let pool = Arc::clone(&pool);
            Arc::new(move || pool.execute(task).expect("admitted"))
        }),
        ("naive", {
            let naive = Arc::clone(&naive);
            Arc::new(move || naive.execute(task))
        }),
    ];
    for (name, call) in &contenders {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                // `iters` calls in all, spread over the callers.
                let per_caller = iters.div_ceil(CALLERS as u64);
                let ns = callers_cpu_ns(CALLERS, per_caller, Arc::clone(call));
                Duration::from_nanos(ns * iters / (per_caller * CALLERS as u64))
            })
        });
    }
    group.finish();
}

/// The hot no-op round trip while two threads keep the CPUs busy.
fn execute_hot_contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute_noop_hot_2_hogs");
    let pool = ThreadPoolBulkhead::new("contended", PoolConfig::new(1)).expect("valid");
    let naive = NaivePool::new(1, 1);
    let hogs = Hogs::start(2);
    group.bench_function("bulkheads", |b| {
        b.iter(|| pool.execute(|| black_box(1_u64)).expect("admitted"))
    });
    group.bench_function("naive", |b| b.iter(|| naive.execute(|| black_box(1_u64))));
    drop(hogs);
    group.finish();
}

/// From inside a tokio runtime: 64 tasks at once, each awaiting `pool.submit(f)?` in a
/// loop, against the same tasks awaiting `tokio::task::spawn_blocking(f)`.
fn async_bridge(c: &mut Criterion) {
    const TASKS: u64 = 64;
    let mut group = c.benchmark_group("async_64_tasks");
    group.throughput(Throughput::Elements(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a tokio runtime");
    let pool = Arc::new(
        ThreadPoolBulkhead::new("async", PoolConfig::new(4).queue_capacity(64)).expect("valid"),
    );
    // `iters` calls in all, spread over the tasks.
    let run = |iters: u64, bulkhead: bool| {
        let per_task = iters.div_ceil(TASKS);
        let pool = Arc::clone(&pool);
        rt.block_on(async move {
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            let v = if bulkhead {
                                pool.submit(|| black_box(1_u64))
                                    .expect("admitted")
                                    .await
                                    .expect("ran")
                            } else {
                                tokio::task::spawn_blocking(|| black_box(1_u64))
                                    .await
                                    .expect("ran")
                            };
                            black_box(v);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("a tokio task");
            }
            start.elapsed() * iters as u32 / (per_task * TASKS) as u32
        })
    };
    group.bench_function("bulkheads_submit_await", |b| {
        b.iter_custom(|iters| run(iters, true))
    });
    group.bench_function("tokio_spawn_blocking", |b| {
        b.iter_custom(|iters| run(iters, false))
    });
    group.finish();
}

criterion_group!(
    benches,
    execute_hot,
    execute_cold,
    tiny_throughput,
    rejection,
    semaphore,
    manager_lookup,
    trickle_cpu,
    slow_call_cpu,
    execute_hot_contended,
    async_bridge
);
criterion_main!(benches);
