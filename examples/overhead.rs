//! The overhead budget: every performance target, measured against its reference in one run.
//!
//! `cargo run --release --example overhead` — under a minute; name sections after `--`
//! (`-- manager trickle`) to run only those. Run it on a quiet
//! machine (check `uptime` first): contenders are interleaved round by round and each row
//! reports the median, but a benchmark beside another still gives meaningless ratios.

#[path = "../benches/support/cpu.rs"]
mod cpu;
#[path = "../benches/support/naive.rs"]
mod naive;

use std::fs;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, KeyedConfig, KeyedSemaphore, PoolConfig, SemaphoreBulkhead, SemaphoreConfig,
    ThreadPoolBulkhead,
};
use cpu::{Hogs, callers_cpu_ns, cpu_ns_since, thread_cpu_ns};
use naive::NaivePool;

/// A row of the report: the figure, its reference, and the target it must meet.
struct Row {
    figure: String,
    measured: String,
    /// Whether the target is met; `None` for a row that only informs.
    pass: Option<bool>,
    target: &'static str,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nanoseconds per call of `f`, timed over `batch` calls.
fn ns_per_call(batch: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..batch {
        f();
    }
    start.elapsed().as_nanos() as f64 / batch as f64
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a tokio runtime")
}

fn hot(rows: &mut Vec<Row>) {
    let pool = ThreadPoolBulkhead::new("hot", PoolConfig::new(1)).expect("valid");
    let naive = NaivePool::new(1, 1);
    let rt = tokio_runtime();
    let (mut b, mut n, mut t) = (vec![], vec![], vec![]);
    for _ in 0..31 {
        b.push(ns_per_call(2000, || {
            black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
        }));
        n.push(ns_per_call(2000, || {
            black_box(naive.execute(|| black_box(1_u64)));
        }));
        t.push(ns_per_call(2000, || {
            black_box(
                rt.block_on(rt.spawn_blocking(|| black_box(1_u64)))
                    .expect("ran"),
            );
        }));
    }
    let (b, n, t) = (median(b), median(n), median(t));
    rows.push(Row {
        figure: "execute() no-op, hot, vs naive".into(),
        measured: format!("{b:.0} ns vs {n:.0} ns = {:.2}x", b / n),
        pass: Some(b <= 1.2 * n),
        target: "<= 1.2x",
    });
    rows.push(Row {
        figure: "execute() no-op, hot, vs tokio spawn_blocking + block_on per call".into(),
        measured: format!("{b:.0} ns vs {t:.0} ns = {:.2}x", b / t),
        pass: Some(b <= 0.25 * t),
        target: "<= 0.25x",
    });
}

fn cold(rows: &mut Vec<Row>) {
    let pool = ThreadPoolBulkhead::new("cold", PoolConfig::new(1)).expect("valid");
    let naive = NaivePool::new(1, 1);
    let (mut b, mut n) = (vec![], vec![]);
    for _ in 0..300 {
        thread::sleep(Duration::from_micros(200));
        let start = Instant::now();
        black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
        b.push(start.elapsed().as_nanos() as f64);
        thread::sleep(Duration::from_micros(200));
        let start = Instant::now();
        black_box(naive.execute(|| black_box(1_u64)));
        n.push(start.elapsed().as_nanos() as f64);
    }
    let (b, n) = (median(b), median(n));
    rows.push(Row {
        figure: "execute() no-op after 200 us idle (cold), vs naive".into(),
        measured: format!("{b:.0} ns vs {n:.0} ns = {:.2}x", b / n),
        pass: Some(b <= 1.1 * n),
        target: "<= 1.1x",
    });
}

/// Calls per second of `call` from `callers` threads, each making `per_caller` calls.
fn throughput(callers: usize, per_caller: usize, call: Arc<dyn Fn() + Send + Sync>) -> f64 {
    let elapsed = naive::run_callers(callers, per_caller as u64, call);
    (callers * per_caller) as f64 / elapsed.as_secs_f64()
}

fn tiny_throughput(rows: &mut Vec<Row>) {
    for threads in [2_usize, 4] {
        let pool = ThreadPoolBulkhead::new("tp", PoolConfig::new(threads).queue_capacity(4))
            .expect("valid");
        let naive = NaivePool::new(threads, 4);
        let rt = tokio_runtime();
        let contenders: [Arc<dyn Fn() + Send + Sync>; 3] = [
            Arc::new(move || {
                black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
            }),
            Arc::new(move || {
                black_box(naive.execute(|| black_box(1_u64)));
            }),
            Arc::new(move || {
                black_box(
                    rt.block_on(rt.spawn_blocking(|| black_box(1_u64)))
                        .expect("ran"),
                );
            }),
        ];
        let per_round = paired_rounds(7, 5000, &contenders);
        let rate = median(per_round.iter().map(|r| r[0]).collect());
        for (i, peer, target, factor) in [
            (1, "naive", ">= 0.85x", 0.85),
            (2, "tokio + block_on per call", ">= 3x", 3.0),
        ] {
            let (mid, low, high) = quartiles(per_round.iter().map(|r| r[0] / r[i]).collect());
            rows.push(Row {
                figure: format!("tiny tasks, 4 callers, {threads} threads, vs {peer}"),
                measured: format!(
                    "{mid:.2}x, quartiles {low:.2}-{high:.2}x of 7 paired rounds ({:.0}k/s)",
                    rate / 1e3
                ),
                pass: Some(mid >= factor),
                target,
            });
        }
    }
}

fn rejection(rows: &mut Vec<Row>) {
    let pool = ThreadPoolBulkhead::new("full", PoolConfig::new(1)).expect("valid");
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).expect("admitted");
    let mut r = vec![];
    for _ in 0..31 {
        r.push(ns_per_call(20_000, || {
            black_box(pool.execute(|| 1_u64).is_err());
        }));
    }
    release.send(()).expect("worker waiting");
    busy.join().expect("finished");
    let r = median(r);
    rows.push(Row {
        figure: "rejection when full (execute)".into(),
        measured: format!("{r:.1} ns"),
        pass: Some(r <= 50.0),
        target: "<= 50 ns",
    });
}

fn semaphore(rows: &mut Vec<Row>) {
    let sem = SemaphoreBulkhead::new("sem", SemaphoreConfig::new(8)).expect("valid");
    let counter = AtomicUsize::new(0);
    let (mut s, mut a) = (vec![], vec![]);
    for _ in 0..31 {
        s.push(ns_per_call(100_000, || {
            drop(black_box(sem.try_acquire().expect("free")));
        }));
        a.push(ns_per_call(100_000, || {
            let _ =
                black_box(&counter).compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed);
            black_box(counter.fetch_sub(1, Ordering::Release));
        }));
    }
    let (s, a) = (median(s), median(a));
    rows.push(Row {
        figure: "semaphore try_acquire + drop vs bare atomic pair".into(),
        measured: format!("{s:.1} ns vs {a:.1} ns = {:.2}x", s / a),
        pass: Some(s <= 2.5 * a),
        target: "<= 2.5x",
    });
}

/// `keyed.call(key, f)` on an existing key (among 1 000) against a plain semaphore's
/// `call`: the price of the key's lookup and its in-flight books.
fn keyed(rows: &mut Vec<Row>) {
    let sem = SemaphoreBulkhead::new("sem", SemaphoreConfig::new(8)).expect("valid");
    let keyed =
        KeyedSemaphore::new("tenants", KeyedConfig::new(SemaphoreConfig::new(8))).expect("valid");
    for i in 0..1_000 {
        keyed.call(&format!("tenant-{i}"), || ()).expect("free");
    }
    let (mut k, mut s) = (vec![], vec![]);
    for _ in 0..31 {
        k.push(ns_per_call(100_000, || {
            black_box(
                keyed
                    .call(black_box("tenant-421"), || black_box(1))
                    .expect("free"),
            );
        }));
        s.push(ns_per_call(100_000, || {
            black_box(sem.call(|| black_box(1)).expect("free"));
        }));
    }
    // The same key again and again is a hit in the thread's cache of its last 4 keys; a
    // thread that serves 64 tenants in turn misses it every time and looks the key up in
    // the registry (its read lock, a reference count).
    let tenants: Vec<String> = (0..64).map(|i| format!("tenant-{i}")).collect();
    let mut m = vec![];
    for _ in 0..31 {
        let mut next = tenants.iter().cycle();
        m.push(ns_per_call(100_000, || {
            let key = next.next().expect("endless");
            black_box(keyed.call(black_box(key), || black_box(1)).expect("free"));
        }));
    }
    let (k, s, m) = (median(k), median(s), median(m));
    rows.push(Row {
        figure: "keyed.call(existing key) vs semaphore.call".into(),
        measured: format!("{k:.1} ns vs {s:.1} ns = {:.2}x", k / s),
        pass: Some(k <= 2.0 * s),
        target: "<= 2x",
    });
    rows.push(Row {
        figure: "keyed.call, 64 keys in turn (cache misses) vs semaphore.call".into(),
        measured: format!("{m:.1} ns vs {s:.1} ns = {:.2}x", m / s),
        pass: None,
        target: "none",
    });
}

/// Throughput of each contender in each of `rounds` rounds, 4 callers making `per_caller`
/// calls each. The order rotates every round (whichever runs first meets the workers
/// asleep), and the rounds are paired: a ratio taken within one round cancels the drift of
/// a shared machine's load, which swings single throughput figures here by ±15%.
fn paired_rounds(
    rounds: usize,
    per_caller: usize,
    contenders: &[Arc<dyn Fn() + Send + Sync>],
) -> Vec<Vec<f64>> {
    let mut per_round = vec![vec![0.0; contenders.len()]; rounds];
    for (round, figures) in per_round.iter_mut().enumerate() {
        for k in 0..contenders.len() {
            let i = (round + k) % contenders.len();
            figures[i] = throughput(4, per_caller, Arc::clone(&contenders[i]));
        }
    }
    per_round
}

/// The median, lower and upper quartile of `v`.
fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| v[(v.len() - 1) * q / 4];
    (at(2), at(1), at(3))
}

fn manager_lookup(rows: &mut Vec<Row>) {
    let manager = Arc::new(
        BulkheadManager::builder()
            .pool("db", PoolConfig::new(4).queue_capacity(4))
            .build()
            .expect("valid"),
    );
    let held = manager.pool("db");
    let by_name: Arc<dyn Fn() + Send + Sync> = {
        let mgr = Arc::clone(&manager);
        Arc::new(move || {
            black_box(
                mgr.pool("db")
                    .execute(|| black_box(1_u64))
                    .expect("admitted"),
            );
        })
    };
    let through_manager: Arc<dyn Fn() + Send + Sync> = {
        let mgr = Arc::clone(&manager);
        Arc::new(move || {
            black_box(mgr.execute("db", || black_box(1_u64)).expect("admitted"));
        })
    };
    let in_variable = |p: Arc<ThreadPoolBulkhead>| -> Arc<dyn Fn() + Send + Sync> {
        Arc::new(move || {
            black_box(p.execute(|| black_box(1_u64)).expect("admitted"));
        })
    };
    // The last contender is the reference run a second time: its ratio to the first is
    // the noise floor, what a ratio of two identical contenders reads in this run.
    let contenders = [
        by_name,
        through_manager,
        in_variable(Arc::clone(&held)),
        in_variable(held),
    ];
    let per_round = paired_rounds(25, 5000, &contenders);
    let ratio = |i: usize| quartiles(per_round.iter().map(|r| r[i] / r[2]).collect());
    let held_rate = median(per_round.iter().map(|r| r[2]).collect());
    for (i, figure) in [
        (
            0,
            "manager.pool(name).execute, 4 threads, vs pool in a variable",
        ),
        (
            1,
            "manager.execute(name, f), 4 threads, vs pool in a variable",
        ),
        (3, "pool in a variable vs itself (the noise floor)"),
    ] {
        let (mid, low, high) = ratio(i);
        rows.push(Row {
            figure: figure.into(),
            measured: format!(
                "{mid:.2}x, quartiles {low:.2}-{high:.2}x of 25 paired rounds ({:.0}k/s held)",
                held_rate / 1e3
            ),
            pass: (i != 3).then_some(mid >= 0.9),
            target: if i == 3 { "none" } else { ">= 0.9x" },
        });
    }
}

fn trickle(rows: &mut Vec<Row>) {
    let pool = ThreadPoolBulkhead::new("trickle", PoolConfig::new(2)).expect("valid");
    let naive = NaivePool::new(2, 2);
    let run = |call: &dyn Fn()| {
        let cpu = thread_cpu_ns();
        let start = Instant::now();
        let mut next = start;
        while start.elapsed() < Duration::from_secs(1) {
            call();
            next += Duration::from_millis(2);
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        cpu_ns_since(&cpu) as f64
    };
    // Warm both pools so thread start-up is not counted.
    pool.execute(|| ()).expect("admitted");
    naive.execute(|| ());
    let b = run(&|| {
        black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
    });
    let n = run(&|| {
        black_box(naive.execute(|| black_box(1_u64)));
    });
    rows.push(Row {
        figure: "trickle, one call every 2 ms for 1 s: process CPU".into(),
        measured: format!("{:.1} ms vs {:.1} ms = {:.2}x", b / 1e6, n / 1e6, b / n),
        pass: Some(b <= 1.5 * n),
        target: "<= 1.5x",
    });
}

/// The process's CPU per call of a 1-ms blocking task (a database round trip) from 8 callers
/// on 8 workers: what waiting costs when no spin can win. Rounds alternate which contender
/// goes first; the row is the median of the ratios paired within a round.
fn slow_calls(rows: &mut Vec<Row>) {
    const CALLERS: usize = 8;
    const PER_CALLER: u64 = 40;
    let pool = Arc::new(
        ThreadPoolBulkhead::new("slow", PoolConfig::new(CALLERS).queue_capacity(CALLERS))
            .expect("valid"),
    );
    let naive = Arc::new(NaivePool::new(CALLERS, CALLERS));
    let task = || thread::sleep(Duration::from_millis(1));
    let contenders: [Arc<dyn Fn() + Send + Sync>; 2] = [
        {
            let pool = Arc::clone(&pool);
            Arc::new(move || pool.execute(task).expect("admitted"))
        },
        {
            let naive = Arc::clone(&naive);
            Arc::new(move || naive.execute(task))
        },
    ];
    // Start every worker and let the pool learn its tasks' run time.
    for c in &contenders {
        callers_cpu_ns(CALLERS, 4, Arc::clone(c));
    }
    let calls = (CALLERS as u64 * PER_CALLER) as f64;
    let (mut b, mut n, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..9 {
        let mut per = [0.0; 2];
        for k in 0..2 {
            let i = (round + k) % 2;
            per[i] = callers_cpu_ns(CALLERS, PER_CALLER, Arc::clone(&contenders[i])) as f64 / calls;
        }
        b.push(per[0]);
        n.push(per[1]);
        ratios.push(per[0] / per[1]);
    }
    let (ratio, lo, hi) = quartiles(ratios);
    rows.push(Row {
        figure: "CPU per 1-ms call, 8 callers, vs naive".into(),
        measured: format!(
            "{:.1} us vs {:.1} us = {ratio:.2}x (IQR {lo:.2}-{hi:.2})",
            median(b) / 1e3,
            median(n) / 1e3
        ),
        pass: Some(ratio <= 1.0),
        target: "<= 1.0x",
    });
}

/// The hot round trip while two threads keep the CPUs busy: a caller that spins now
/// delays the worker it waits for.
fn contended(rows: &mut Vec<Row>) {
    let pool = ThreadPoolBulkhead::new("contended", PoolConfig::new(1)).expect("valid");
    let naive = NaivePool::new(1, 1);
    pool.execute(|| ()).expect("admitted");
    naive.execute(|| ());
    let hogs = Hogs::start(2);
    let (mut b, mut n, mut ratios) = (vec![], vec![], vec![]);
    for round in 0..21 {
        let mut per = [0.0; 2];
        for k in 0..2 {
            let i = (round + k) % 2;
            per[i] = if i == 0 {
                ns_per_call(300, || {
                    black_box(pool.execute(|| black_box(1_u64)).expect("admitted"));
                })
            } else {
                ns_per_call(300, || {
                    black_box(naive.execute(|| black_box(1_u64)));
                })
            };
        }
        b.push(per[0]);
        n.push(per[1]);
        ratios.push(per[0] / per[1]);
    }
    drop(hogs);
    let (ratio, lo, hi) = quartiles(ratios);
    rows.push(Row {
        figure: "execute() no-op, hot, 2 CPU hogs running, vs naive".into(),
        measured: format!(
            "{:.0} ns vs {:.0} ns = {ratio:.2}x (IQR {lo:.2}-{hi:.2})",
            median(b),
            median(n)
        ),
        pass: Some(ratio <= 1.2),
        target: "<= 1.2x",
    });
}

/// Latencies of `calls` sequential awaits of `call()` from each of `tasks` tokio tasks, and
/// the wall time for all of them.
fn async_calls<F, Fut>(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    calls: usize,
    call: F,
) -> (Vec<f64>, Duration)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = u64> + Send,
{
    rt.block_on(async move {
        let start = Instant::now();
        let spawned: Vec<_> = (0..tasks)
            .map(|_| {
                let call = call.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(calls);
                    for _ in 0..calls {
                        let t = Instant::now();
                        black_box(call().await);
                        lat.push(t.elapsed().as_nanos() as f64);
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::with_capacity(tasks * calls);
        for task in spawned {
            all.extend(task.await.expect("a tokio task"));
        }
        (all, start.elapsed())
    })
}

/// The 99th percentile of `v`.
fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) * 99 / 100]
}

/// From inside a tokio runtime: tasks awaiting `pool.submit(f)?` against tasks awaiting
/// `tokio::task::spawn_blocking(f)`, the call async code makes today — one task in a loop
/// (the round trip) and 64 at once (throughput and p99). Rounds alternate which goes first.
fn async_bridge(rows: &mut Vec<Row>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a tokio runtime");
    let pool = Arc::new(
        ThreadPoolBulkhead::new("async", PoolConfig::new(4).queue_capacity(64)).expect("valid"),
    );
    let ours = {
        let pool = Arc::clone(&pool);
        move || {
            let handle = pool.submit(|| black_box(1_u64));
            async move { handle.expect("admitted").await.expect("ran") }
        }
    };
    let theirs = || async {
        tokio::task::spawn_blocking(|| black_box(1_u64))
            .await
            .expect("ran")
    };
    for (tasks, calls, rounds) in [(1_usize, 2000_usize, 15), (64, 100, 9)] {
        let (mut ratio, mut p99s, mut b_rate, mut t_rate) = (vec![], vec![], vec![], vec![]);
        let (mut b_p99, mut t_p99) = (vec![], vec![]);
        for round in 0..rounds {
            let mut runs = [(Vec::new(), Duration::ZERO), (Vec::new(), Duration::ZERO)];
            for k in 0..2 {
                let i = (round + k) % 2;
                runs[i] = if i == 0 {
                    async_calls(&rt, tasks, calls, ours.clone())
                } else {
                    async_calls(&rt, tasks, calls, theirs)
                };
            }
            let rate = |d: Duration| (tasks * calls) as f64 / d.as_secs_f64();
            let (b, t) = (rate(runs[0].1), rate(runs[1].1));
            let (bp, tp) = (p99(runs[0].0.clone()), p99(runs[1].0.clone()));
            ratio.push(b / t);
            p99s.push(bp / tp);
            b_rate.push(b);
            t_rate.push(t);
            b_p99.push(bp);
            t_p99.push(tp);
        }
        let (r, rlo, rhi) = quartiles(ratio);
        let (q, qlo, qhi) = quartiles(p99s);
        let what = if tasks == 1 {
            "async round trip, 1 task".to_string()
        } else {
            format!("async, {tasks} tasks at once")
        };
        rows.push(Row {
            figure: format!("{what}: submit().await vs spawn_blocking, calls/s"),
            measured: format!(
                "{:.0}k/s vs {:.0}k/s = {r:.2}x (IQR {rlo:.2}-{rhi:.2})",
                median(b_rate) / 1e3,
                median(t_rate) / 1e3
            ),
            // The throughput target is for many tasks at once; one task in a loop
            // is two wake-ups a call for both, and is reported for reference.
            pass: (tasks > 1).then_some(r >= 1.0),
            target: if tasks > 1 { ">= 1.0x" } else { "none" },
        });
        rows.push(Row {
            figure: format!("{what}: submit().await vs spawn_blocking, p99"),
            measured: format!(
                "{:.1} us vs {:.1} us = {q:.2}x (IQR {qlo:.2}-{qhi:.2})",
                median(b_p99) / 1e3,
                median(t_p99) / 1e3
            ),
            pass: Some(q <= 1.0),
            target: "<= 1.0x",
        });
    }
}

/// The defensive stack's hot path: `try_acquire` + `success()` on a closed breaker.
fn breaker(rows: &mut Vec<Row>) {
    use bulkheads::{CircuitBreaker, CircuitBreakerConfig};
    // The default: timed on the coarse clock (Linux). A slow-call threshold too short for
    // it: timed on `Instant::now`, for reference.
    let breaker = CircuitBreaker::new("hot", CircuitBreakerConfig::new()).expect("valid");
    let exact = CircuitBreaker::new(
        "hot-exact",
        CircuitBreakerConfig::new().slow_call_duration(Duration::from_millis(100)),
    )
    .expect("valid");
    let (mut r, mut e, mut floor) = (vec![], vec![], vec![]);
    // Interleaved round by round, as the other sections.
    for _ in 0..31 {
        r.push(ns_per_call(20_000, || {
            breaker.try_acquire().expect("closed").success();
        }));
        e.push(ns_per_call(20_000, || {
            exact.try_acquire().expect("closed").success();
        }));
        // The exact breaker's floor: the two readings of the system clock that time it.
        floor.push(ns_per_call(20_000, || {
            let start = black_box(Instant::now());
            black_box(Instant::now().saturating_duration_since(start));
        }));
    }
    let ns = median(r);
    rows.push(Row {
        figure: "two Instant::now() (the exact breaker's floor)".into(),
        measured: format!("{:.1} ns", median(floor)),
        pass: None,
        target: "none",
    });
    rows.push(Row {
        figure: "breaker try_acquire + success(), closed, slow_call 100 ms".into(),
        measured: format!("{:.1} ns", median(e)),
        pass: None,
        target: "none",
    });
    rows.push(Row {
        figure: "circuit breaker try_acquire + success(), closed".into(),
        measured: format!("{ns:.1} ns"),
        pass: Some(ns <= 50.0),
        target: "<= 50 ns",
    });
}

fn threads_now() -> usize {
    fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn resident_bytes() -> u64 {
    fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn idle_pools(rows: &mut Vec<Row>) {
    let threads = threads_now();
    let rss = resident_bytes();
    let mut builder = BulkheadManager::builder();
    for i in 0..1000 {
        builder = builder.pool(format!("tenant-{i}"), PoolConfig::new(8).queue_capacity(8));
    }
    let manager = builder.build().expect("valid");
    let started = threads_now() - threads;
    let grown = resident_bytes().saturating_sub(rss);
    rows.push(Row {
        figure: "1,000 configured idle pools".into(),
        measured: format!(
            "{started} threads, {:.0} KiB resident ({:.2} KiB/pool)",
            grown as f64 / 1024.0,
            grown as f64 / 1024.0 / 1000.0
        ),
        pass: Some(started == 0),
        target: "0 threads",
    });
    drop(manager);
}

/// An adaptive pool against a fixed one of the same size: the cost of one sample per task.
/// The algorithm's range is pinned to the pool's size, so the limit never moves and the
/// rows measure the bookkeeping alone.
fn adaptive(rows: &mut Vec<Row>) {
    let pinned = |n: usize| {
        bulkheads::limit::Aimd::new()
            .initial_limit(n)
            .min_limit(n)
            .max_limit(n)
    };
    let fixed = ThreadPoolBulkhead::new("fixed", PoolConfig::new(1)).expect("valid");
    let adaptive =
        ThreadPoolBulkhead::new("adaptive", PoolConfig::new(1).adaptive(pinned(1))).expect("valid");
    let (mut a, mut f) = (vec![], vec![]);
    for _ in 0..31 {
        a.push(ns_per_call(2000, || {
            black_box(adaptive.execute(|| black_box(1_u64)).expect("admitted"));
        }));
        f.push(ns_per_call(2000, || {
            black_box(fixed.execute(|| black_box(1_u64)).expect("admitted"));
        }));
    }
    let (a, f) = (median(a), median(f));
    rows.push(Row {
        figure: "execute() no-op, hot, adaptive pool vs fixed".into(),
        measured: format!("{a:.0} ns vs {f:.0} ns = {:.2}x", a / f),
        pass: Some(a <= 1.2 * f),
        target: "<= 1.2x",
    });

    let fixed =
        ThreadPoolBulkhead::new("fixed4", PoolConfig::new(2).queue_capacity(4)).expect("valid");
    let adaptive = ThreadPoolBulkhead::new(
        "adaptive4",
        PoolConfig::new(2).queue_capacity(4).adaptive(pinned(2)),
    )
    .expect("valid");
    let contenders: [Arc<dyn Fn() + Send + Sync>; 2] = [
        Arc::new(move || {
            black_box(adaptive.execute(|| black_box(1_u64)).expect("admitted"));
        }),
        Arc::new(move || {
            black_box(fixed.execute(|| black_box(1_u64)).expect("admitted"));
        }),
    ];
    let per_round = paired_rounds(7, 5000, &contenders);
    let (mid, low, high) = quartiles(per_round.iter().map(|r| r[0] / r[1]).collect());
    rows.push(Row {
        figure: "tiny tasks, 4 callers, 2 threads, adaptive vs fixed".into(),
        measured: format!("{mid:.2}x, quartiles {low:.2}-{high:.2}x of 7 paired rounds"),
        pass: Some(mid >= 0.9),
        target: ">= 0.9x",
    });

    // `reconfigure` under load: 4 callers call a pool whose size a fifth thread moves
    // between 2 and 8 threads every 200 us; every call must get its one outcome, and the
    // calls' p99 is set beside that of the same load with no changes.
    let run = |changing: bool| {
        let pool = Arc::new(
            ThreadPoolBulkhead::new("resized", PoolConfig::new(4).queue_capacity(64))
                .expect("valid"),
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let changer = changing.then(|| {
            let (pool, stop) = (pool.clone(), stop.clone());
            thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let threads = if n % 2 == 0 { 2 } else { 8 };
                    pool.reconfigure(PoolConfig::new(threads).queue_capacity(64))
                        .expect("valid");
                    thread::sleep(Duration::from_micros(200));
                }
                n
            })
        });
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let mut latencies = Vec::with_capacity(5000);
                    let mut outcomes = 0_u64;
                    for _ in 0..5000 {
                        let start = Instant::now();
                        // Each call ends in exactly one of these: a value or a rejection.
                        match pool.execute(|| black_box(1_u64)) {
                            Ok(_) => latencies.push(start.elapsed().as_nanos() as f64),
                            Err(e) => assert!(e.is_rejected(), "{e}"),
                        }
                        outcomes += 1;
                    }
                    (latencies, outcomes)
                })
            })
            .collect();
        let (mut latencies, mut outcomes) = (vec![], 0);
        for c in callers {
            let (l, o) = c.join().expect("caller");
            latencies.extend(l);
            outcomes += o;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let changes = changer.map_or(0, |c| c.join().expect("changer"));
        let s = pool.stats();
        let lost = outcomes.abs_diff(s.completed + s.rejected);
        (p99(latencies), lost, changes)
    };
    let (quiet_p99, quiet_lost, _) = run(false);
    let (p99_changing, lost, changes) = run(true);
    rows.push(Row {
        figure: "reconfigure under load (4 callers, 2 <-> 8 threads)".into(),
        measured: format!(
            "{changes} changes, {} calls lost; p99 {:.1} us vs {:.1} us unchanged",
            lost + quiet_lost,
            p99_changing / 1e3,
            quiet_p99 / 1e3
        ),
        pass: Some(lost + quiet_lost == 0),
        target: "0 lost",
    });
}

/// A section of the report: measures and appends its rows.
type Section = fn(&mut Vec<Row>);

fn main() {
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "bulkheads overhead, {} CPUs, load average {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    // `-- manager trickle` runs only the sections whose names contain one of the words.
    let only: Vec<String> = std::env::args().skip(1).collect();
    let sections: [(&str, Section); 14] = [
        ("idle_pools", idle_pools),
        ("hot", hot),
        ("cold", cold),
        ("tiny_throughput", tiny_throughput),
        ("rejection", rejection),
        ("semaphore", semaphore),
        ("keyed", keyed),
        ("manager", manager_lookup),
        ("trickle", trickle),
        ("slow_calls", slow_calls),
        ("contended", contended),
        ("async_bridge", async_bridge),
        ("breaker", breaker),
        ("adaptive", adaptive),
    ];
    let mut rows = Vec::new();
    for (name, section) in sections {
        if only.is_empty() || only.iter().any(|word| name.contains(word.as_str())) {
            section(&mut rows);
        }
    }

    let width = rows.iter().map(|r| r.figure.len()).max().unwrap_or(0);
    let mwidth = rows.iter().map(|r| r.measured.len()).max().unwrap_or(0);
    for row in &rows {
        println!(
            "{:<width$}  {:<mwidth$}  {:<9}  {}",
            row.figure,
            row.measured,
            row.target,
            match row.pass {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "INFO",
            }
        );
    }
    let targets: Vec<bool> = rows.iter().filter_map(|r| r.pass).collect();
    let met = targets.iter().filter(|&&pass| pass).count();
    println!("{met} of {} targets met", targets.len());
}
