//! The overhead budget: every performance target, measured against its reference in one run.
//!
//! `cargo run --release --example overhead` — about fifteen seconds. Run it on a quiet
//! machine (check `uptime` first): contenders are interleaved round by round and each row
//! reports the median, but a benchmark beside another still gives meaningless ratios.

#[path = "../benches/support/naive.rs"]
mod naive;

use std::collections::HashMap;
use std::fs;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead,
};
use naive::NaivePool;

/// A row of the report: the figure, its reference, and the target it must meet.
struct Row {
    figure: String,
    measured: String,
    pass: bool,
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
        pass: b <= 1.2 * n,
        target: "<= 1.2x",
    });
    rows.push(Row {
        figure: "execute() no-op, hot, vs tokio spawn_blocking".into(),
        measured: format!("{b:.0} ns vs {t:.0} ns = {:.2}x", b / t),
        pass: b <= 0.25 * t,
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
        pass: b <= 1.1 * n,
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
        let pool = Arc::new(
            ThreadPoolBulkhead::new("tp", PoolConfig::new(threads).queue_capacity(4))
                .expect("valid"),
        );
        let naive = Arc::new(NaivePool::new(threads, 4));
        let rt = Arc::new(tokio_runtime());
        let (mut b, mut n, mut t) = (vec![], vec![], vec![]);
        for _ in 0..7 {
            let p = Arc::clone(&pool);
            b.push(throughput(
                4,
                5000,
                Arc::new(move || {
                    black_box(p.execute(|| black_box(1_u64)).expect("admitted"));
                }),
            ));
            let p = Arc::clone(&naive);
            n.push(throughput(
                4,
                5000,
                Arc::new(move || {
                    black_box(p.execute(|| black_box(1_u64)));
                }),
            ));
            let r = Arc::clone(&rt);
            t.push(throughput(
                4,
                5000,
                Arc::new(move || {
                    black_box(
                        r.block_on(r.spawn_blocking(|| black_box(1_u64)))
                            .expect("ran"),
                    );
                }),
            ));
        }
        let (b, n, t) = (median(b), median(n), median(t));
        rows.push(Row {
            figure: format!("tiny tasks, 4 callers, {threads} threads, vs naive"),
            measured: format!("{:.0}k/s vs {:.0}k/s = {:.2}x", b / 1e3, n / 1e3, b / n),
            pass: b >= 0.85 * n,
            target: ">= 0.85x",
        });
        rows.push(Row {
            figure: format!("tiny tasks, 4 callers, {threads} threads, vs tokio"),
            measured: format!("{:.0}k/s vs {:.0}k/s = {:.2}x", b / 1e3, t / 1e3, b / t),
            pass: b >= 3.0 * t,
            target: ">= 3x",
        });
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
        pass: r <= 50.0,
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
        pass: s <= 2.5 * a,
        target: "<= 2.5x",
    });
}

fn manager_lookup(rows: &mut Vec<Row>) {
    let manager = Arc::new(
        BulkheadManager::builder()
            .pool("db", PoolConfig::new(4).queue_capacity(4))
            .build()
            .expect("valid"),
    );
    let held = manager.pool("db");
    let (mut m, mut e, mut v) = (vec![], vec![], vec![]);
    let calls = |call: Arc<dyn Fn() + Send + Sync>| throughput(4, 20_000, call);
    for round in 0..9 {
        // Rotate the order each round: whichever runs first meets the workers asleep.
        for k in 0..3 {
            match (round + k) % 3 {
                0 => {
                    let mgr = Arc::clone(&manager);
                    m.push(calls(Arc::new(move || {
                        black_box(
                            mgr.pool("db")
                                .execute(|| black_box(1_u64))
                                .expect("admitted"),
                        );
                    })));
                }
                1 => {
                    let mgr = Arc::clone(&manager);
                    e.push(calls(Arc::new(move || {
                        black_box(mgr.execute("db", || black_box(1_u64)).expect("admitted"));
                    })));
                }
                _ => {
                    let p = Arc::clone(&held);
                    v.push(calls(Arc::new(move || {
                        black_box(p.execute(|| black_box(1_u64)).expect("admitted"));
                    })));
                }
            }
        }
    }
    let (m, e, v) = (median(m), median(e), median(v));
    rows.push(Row {
        figure: "manager.pool(name).execute, 4 threads, vs pool in a variable".into(),
        measured: format!("{:.0}k/s vs {:.0}k/s = {:.2}x", m / 1e3, v / 1e3, m / v),
        pass: m >= 0.9 * v,
        target: ">= 0.9x",
    });
    rows.push(Row {
        figure: "manager.execute(name, f), 4 threads, vs pool in a variable".into(),
        measured: format!("{:.0}k/s vs {:.0}k/s = {:.2}x", e / 1e3, v / 1e3, e / v),
        pass: e >= 0.9 * v,
        target: ">= 0.9x",
    });
}

/// CPU time of each live thread of the process so far, in nanoseconds, by thread id.
fn thread_cpu_ns() -> HashMap<String, u64> {
    let mut times = HashMap::new();
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(stat) = fs::read_to_string(task.path().join("schedstat")) {
                let ns = stat
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                times.insert(task.file_name().to_string_lossy().into_owned(), ns);
            }
        }
    }
    times
}

/// CPU time the process spent since `before`: threads that started since count whole,
/// threads that exited since (the previous rows' pools winding down) are left out.
fn cpu_ns_since(before: &HashMap<String, u64>) -> u64 {
    thread_cpu_ns()
        .iter()
        .map(|(tid, &now)| now.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum()
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
        pass: b <= 1.5 * n,
        target: "<= 1.5x",
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
        pass: started == 0,
        target: "0 threads",
    });
    drop(manager);
}

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
    let mut rows = Vec::new();
    idle_pools(&mut rows);
    hot(&mut rows);
    cold(&mut rows);
    tiny_throughput(&mut rows);
    rejection(&mut rows);
    semaphore(&mut rows);
    manager_lookup(&mut rows);
    trickle(&mut rows);

    let width = rows.iter().map(|r| r.figure.len()).max().unwrap_or(0);
    let mwidth = rows.iter().map(|r| r.measured.len()).max().unwrap_or(0);
    for row in &rows {
        println!(
            "{:<width$}  {:<mwidth$}  {:<9}  {}",
            row.figure,
            row.measured,
            row.target,
            if row.pass { "PASS" } else { "MISS" }
        );
    }
    let missed = rows.iter().filter(|r| !r.pass).count();
    println!("{} of {} targets met", rows.len() - missed, rows.len());
}
