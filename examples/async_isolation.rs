//! One hung dependency in an async service: through tokio's `spawn_blocking` it takes the
//! whole blocking pool, and every other blocking call in the process — `tokio::fs`
//! included — waits behind it; through one bulkhead per dependency the others keep flowing.
//!
//! `cargo run --release --example async_isolation` (about five seconds).
//!
//! The service has three dependencies, all called from async handlers with a 200 ms
//! timeout each:
//!
//! - `reports`: a blocking call that **hangs** (a report generator stuck on a lock), 200/s;
//! - `db`: a blocking 1 ms query, 500/s;
//! - files: `tokio::fs::read` of a small file, 100/s (tokio runs it on its blocking pool).
//!
//! Each phase runs 2 s on a fresh runtime whose blocking pool is capped at 16 threads
//! (tokio's default is 512: the same happens there, 512 hung calls later).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bulkheads::{PoolConfig, ThreadPoolBulkhead};

const PHASE: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_millis(200);
const BLOCKING_THREADS: usize = 16;

/// The hung dependency: blocks until the phase ends (bounded, so nothing outlives the demo).
#[derive(Default)]
struct Hang {
    released: Mutex<bool>,
    cv: Condvar,
}

impl Hang {
    fn call(&self) {
        let guard = self.released.lock().unwrap();
        let _ = self
            .cv
            .wait_timeout_while(guard, Duration::from_secs(30), |released| !*released)
            .unwrap();
    }
    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// What the callers of one dependency saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    timed_out: AtomicU64,
    rejected: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl Tally {
    fn record(&self, started: Instant, outcome: Outcome) {
        match outcome {
            Outcome::Ok => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let us = started.elapsed().as_micros() as u64;
                self.latencies_us.lock().unwrap().push(us);
            }
            Outcome::TimedOut => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Rejected => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn row(&self, what: &str) -> String {
        let mut lat = self.latencies_us.lock().unwrap().clone();
        lat.sort_unstable();
        let p = |q: f64| {
            lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
                .map_or("-".to_string(), |us| format!("{:.1} ms", *us as f64 / 1e3))
        };
        format!(
            "{what:<9} {:>6} {:>10} {:>9} {:>9} {:>9}",
            self.ok.load(Ordering::Relaxed),
            self.timed_out.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            p(0.5),
            p(0.99)
        )
    }
}

enum Outcome {
    Ok,
    TimedOut,
    Rejected,
}

/// Calls `call` every `every` until the phase ends, each with the call timeout.
async fn drive<F, Fut>(every: Duration, tally: Arc<Tally>, call: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let end = tokio::time::Instant::now() + PHASE;
    let mut tick = tokio::time::interval(every);
    let mut calls = Vec::new();
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let tally = Arc::clone(&tally);
        let fut = call();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = match tokio::time::timeout(CALL_TIMEOUT, fut).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::TimedOut,
            };
            tally.record(started, outcome);
        }));
    }
    for c in calls {
        let _ = c.await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_time()
        .build()
        .expect("a runtime")
}

fn db_query() -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    42
}

struct Phase {
    reports: Arc<Tally>,
    db: Arc<Tally>,
    files: Arc<Tally>,
}

/// Runs one phase: `reports` and `db` are how the handlers reach those two dependencies;
/// `hang` is released when the phase ends, so that its threads can go.
fn phase<R, RF, D, DF>(hang: &Hang, reports: R, db: D) -> Phase
where
    R: Fn() -> RF + Send + 'static,
    RF: Future<Output = Outcome> + Send + 'static,
    D: Fn() -> DF + Send + 'static,
    DF: Future<Output = Outcome> + Send + 'static,
{
    let file = std::env::temp_dir().join(format!("bulkheads-async-{}.txt", std::process::id()));
    std::fs::write(&file, b"stock levels\n").expect("a temp file");
    let out = Phase {
        reports: Arc::default(),
        db: Arc::default(),
        files: Arc::default(),
    };
    let rt = runtime();
    rt.block_on(async {
        let r = tokio::spawn(drive(
            Duration::from_millis(5),
            Arc::clone(&out.reports),
            reports,
        ));
        let d = tokio::spawn(drive(Duration::from_millis(2), Arc::clone(&out.db), db));
        let path = file.clone();
        let f = tokio::spawn(drive(
            Duration::from_millis(10),
            Arc::clone(&out.files),
            move || {
                let path = path.clone();
                async move {
                    match tokio::fs::read(&path).await {
                        Ok(_) => Outcome::Ok,
                        Err(e) => panic!("reading {path:?}: {e}"),
                    }
                }
            },
        ));
        for task in [r, d, f] {
            let _ = task.await;
        }
    });
    hang.release();
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_file(&file);
    out
}

fn print(title: &str, p: &Phase) {
    println!("\n{title}");
    println!(
        "{:<9} {:>6} {:>10} {:>9} {:>9} {:>9}",
        "calls", "ok", "timed out", "rejected", "p50", "p99"
    );
    println!("{}", p.reports.row("reports"));
    println!("{}", p.db.row("db"));
    println!("{}", p.files.row("files"));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "One hung dependency (`reports`) in an async service, {} s per phase, \
         blocking pool capped at {BLOCKING_THREADS} threads, {} ms timeout per call.",
        PHASE.as_secs(),
        CALL_TIMEOUT.as_millis()
    );

    // Phase 1: everything through tokio's shared blocking pool.
    let hang = Arc::new(Hang::default());
    let h = Arc::clone(&hang);
    let shared = phase(
        &hang,
        move || {
            let h = Arc::clone(&h);
            async move {
                let _ = tokio::task::spawn_blocking(move || h.call()).await;
                Outcome::Ok
            }
        },
        || async {
            let _ = tokio::task::spawn_blocking(db_query).await;
            Outcome::Ok
        },
    );
    print(
        "1. spawn_blocking for every dependency (one shared pool)",
        &shared,
    );

    // Phase 2: a bulkhead per blocking dependency; tokio::fs keeps tokio's pool.
    let hang = Arc::new(Hang::default());
    let reports_pool = Arc::new(ThreadPoolBulkhead::new(
        "reports",
        PoolConfig::new(4).queue_capacity(0),
    )?);
    let db_pool = Arc::new(ThreadPoolBulkhead::new(
        "db",
        PoolConfig::new(8).queue_capacity(16),
    )?);
    let (h, rp, dp) = (
        Arc::clone(&hang),
        Arc::clone(&reports_pool),
        Arc::clone(&db_pool),
    );
    let isolated = phase(
        &hang,
        move || {
            let h = Arc::clone(&h);
            let submitted = rp.submit(move || h.call());
            async move {
                match submitted {
                    Ok(handle) => match handle.await {
                        Ok(()) => Outcome::Ok,
                        Err(_) => Outcome::TimedOut,
                    },
                    Err(_) => Outcome::Rejected,
                }
            }
        },
        move || {
            let submitted = dp.submit(db_query);
            async move {
                match submitted {
                    Ok(handle) => match handle.await {
                        Ok(_) => Outcome::Ok,
                        Err(_) => Outcome::TimedOut,
                    },
                    Err(_) => Outcome::Rejected,
                }
            }
        },
    );
    print(
        "2. a bulkhead each for reports (4 threads, no queue) and db (8 threads, queue 16)",
        &isolated,
    );
    println!("\nbulkhead stats after phase 2:");
    for pool in [&reports_pool, &db_pool] {
        let s = pool.stats();
        println!(
            "  {:<8} submitted {:>5}  rejected {:>5}  completed {:>5}",
            s.name, s.submitted, s.rejected, s.completed
        );
    }

    let db_ok = |p: &Phase| p.db.ok.load(Ordering::Relaxed);
    let files_ok = |p: &Phase| p.files.ok.load(Ordering::Relaxed);
    println!(
        "\ndb calls served: {} shared, {} isolated; file reads served: {} shared, {} isolated",
        db_ok(&shared),
        db_ok(&isolated),
        files_ok(&shared),
        files_ok(&isolated)
    );
    Ok(())
}
