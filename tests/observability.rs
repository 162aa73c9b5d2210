//! Latency summaries and events: what an operator sees of each compartment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, EventKind, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead,
};

mod common;
use common::exposition;

type Log = Arc<Mutex<Vec<(String, EventKind)>>>;

fn record(pool: &ThreadPoolBulkhead) -> Log {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    pool.on_event(move |e| sink.lock().unwrap().push((e.bulkhead.to_owned(), e.kind)));
    log
}

fn kinds(log: &Log) -> Vec<&'static str> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(_, k)| match k {
            EventKind::Permitted { .. } => "permitted",
            EventKind::Rejected => "rejected",
            EventKind::ShutdownRefused => "shutdown_refused",
            EventKind::Started { .. } => "started",
            EventKind::Finished { .. } => "finished",
            EventKind::Panicked { .. } => "panicked",
            EventKind::TimedOut { .. } => "timed_out",
            EventKind::Expired => "expired",
            EventKind::Cancelled => "cancelled",
            _ => "other",
        })
        .collect()
}

#[test]
fn a_call_fires_permitted_started_finished_with_its_durations() {
    let pool = ThreadPoolBulkhead::new("inventory", PoolConfig::new(1)).unwrap();
    let log = record(&pool);
    pool.execute(|| std::thread::sleep(Duration::from_millis(5)))
        .unwrap();
    assert_eq!(kinds(&log), ["permitted", "started", "finished"]);
    let events = log.lock().unwrap();
    assert!(events.iter().all(|(name, _)| name == "inventory"));
    match events[2].1 {
        EventKind::Finished { run_time } => assert!(run_time >= Duration::from_millis(5)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rejection_fires_exactly_one_event() {
    let pool = ThreadPoolBulkhead::new("payment", PoolConfig::new(1)).unwrap();
    let (release, blocked) = mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    let log = record(&pool);
    for _ in 0..3 {
        assert!(pool.execute(|| ()).unwrap_err().is_rejected());
    }
    assert_eq!(kinds(&log), ["rejected", "rejected", "rejected"]);
    release.send(()).unwrap();
    busy.join().unwrap();
}

// Regression: a call refused because the pool was shut down was counted in `rejected` and
// fired `Rejected`, exactly like a full compartment, so an alert on rejections fired on every
// deploy. A refusal at shutdown is now its own counter and its own event.
#[test]
fn a_refusal_after_shutdown_is_not_a_rejection() {
    let pool = ThreadPoolBulkhead::new("deploy", PoolConfig::new(1)).unwrap();
    let (release, blocked) = mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    let log = record(&pool);
    let text = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&text);
    pool.on_event(move |e| sink.lock().unwrap().push(e.to_string()));
    assert!(pool.execute(|| ()).unwrap_err().is_rejected());
    pool.shutdown();
    for _ in 0..2 {
        assert!(pool.execute(|| ()).unwrap_err().is_shutdown());
    }
    assert!(pool.submit(|| ()).unwrap_err().is_shutdown());
    assert_eq!(
        kinds(&log),
        [
            "rejected",
            "shutdown_refused",
            "shutdown_refused",
            "shutdown_refused"
        ]
    );
    let stats = pool.stats();
    assert_eq!(
        (stats.rejected, stats.shutdown_refused),
        (1, 3),
        "{stats:?}"
    );
    assert_eq!(text.lock().unwrap()[1], "deploy: refused: shut down");
    release.send(()).unwrap();
    busy.join().unwrap();
    assert!(pool.await_termination(Duration::from_secs(10)));
    // The one admitted, the one full, the three after shutdown.
    let stats = pool.stats();
    assert_eq!(
        stats.submitted + stats.rejected + stats.shutdown_refused,
        5,
        "{stats:?}"
    );
}

#[test]
fn timeouts_expiry_cancellation_and_panics_are_events() {
    let pool = ThreadPoolBulkhead::new("email", PoolConfig::new(1).queue_capacity(2)).unwrap();
    let log = record(&pool);
    let (release, blocked) = mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    // Queued behind the busy worker: times out, expires in the queue.
    let err = pool
        .execute_timeout(Duration::from_millis(10), || ())
        .unwrap_err();
    assert!(err.is_timeout());
    let queued = pool.submit(|| ()).unwrap();
    assert!(queued.cancel());
    release.send(()).unwrap();
    busy.join().unwrap();
    assert!(
        pool.execute(|| panic!("smtp down"))
            .unwrap_err()
            .is_panicked()
    );
    let seen = kinds(&log);
    for kind in ["timed_out", "expired", "cancelled", "panicked"] {
        assert_eq!(
            seen.iter().filter(|k| **k == kind).count(),
            1,
            "{kind} in {seen:?}"
        );
    }
}

#[test]
fn a_panicking_listener_neither_kills_the_worker_nor_loses_the_outcome() {
    let pool = ThreadPoolBulkhead::new("noisy", PoolConfig::new(1)).unwrap();
    pool.on_event(|_| panic!("listener bug"));
    for i in 0..100 {
        assert_eq!(pool.execute(move || i).unwrap(), i);
    }
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.live_threads), (100, 1));
}

#[test]
fn pool_stats_summarise_queue_wait_and_run_time() {
    let pool = ThreadPoolBulkhead::new("db", PoolConfig::new(1).queue_capacity(1)).unwrap();
    assert_eq!(pool.stats().run_time.count, 0);
    let (release, blocked) = mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    let queued = pool.submit(|| ()).unwrap();
    let held_from = Instant::now();
    // Let the queued task wait a measurable time before the worker is freed.
    while held_from.elapsed() < Duration::from_millis(20) {
        std::thread::yield_now();
    }
    release.send(()).unwrap();
    busy.join().unwrap();
    queued.join().unwrap();
    let stats = pool.stats();
    assert_eq!(stats.queue_wait.count, 2);
    assert_eq!(stats.run_time.count, 2);
    assert!(
        stats.queue_wait.max >= Duration::from_millis(20),
        "{stats:?}"
    );
    assert!(stats.run_time.max >= Duration::from_millis(20), "{stats:?}");
    let s = stats.queue_wait;
    assert!(s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.p999 && s.p999 <= s.max);
}

#[test]
fn semaphore_wait_counts_free_permits_as_zero_and_records_real_waits() {
    let sem = Arc::new(SemaphoreBulkhead::new("cache", SemaphoreConfig::new(1)).unwrap());
    for _ in 0..9 {
        drop(sem.try_acquire().unwrap());
    }
    let held = sem.try_acquire().unwrap();
    let waiter = {
        let sem = Arc::clone(&sem);
        std::thread::spawn(move || {
            let permit = sem.acquire_timeout(Duration::from_secs(10)).map(drop);
            permit.is_ok()
        })
    };
    let start = Instant::now();
    while sem.stats().waiting == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waiter never queued"
        );
        std::thread::yield_now();
    }
    // Counted from when the waiter is seen queued (it began waiting before that), not from
    // the spawn: on a loaded machine the thread may take longer than 20 ms to start, which
    // once made this test see an 8 ms wait.
    let queued = Instant::now();
    while queued.elapsed() < Duration::from_millis(20) {
        std::thread::yield_now();
    }
    drop(held);
    assert!(waiter.join().unwrap());
    let wait = sem.stats().wait;
    assert_eq!(wait.count, 11);
    assert_eq!(wait.p50, Duration::ZERO);
    assert!(wait.max >= Duration::from_millis(15), "{wait:?}");
}

#[test]
fn manager_listeners_hear_every_bulkhead_present_and_future() {
    let manager = BulkheadManager::builder()
        .pool("inventory", PoolConfig::new(1))
        .build()
        .unwrap();
    let rejected = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (r, f) = (Arc::clone(&rejected), Arc::clone(&finished));
    manager.on_event(move |e| match e.kind {
        EventKind::Rejected => {
            r.fetch_add(1, Ordering::Relaxed);
        }
        EventKind::Finished { .. } => {
            f.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    });
    manager.pool("inventory").execute(|| ()).unwrap();
    manager.pool("later").execute(|| ()).unwrap();
    let sem = manager.semaphore("cache");
    let permits: Vec<_> = (0..25).map(|_| sem.try_acquire().unwrap()).collect();
    assert!(sem.try_acquire().is_err());
    drop(permits);
    assert_eq!(finished.load(Ordering::Relaxed), 2);
    assert_eq!(rejected.load(Ordering::Relaxed), 1);
}

// Regression: the exposition's `_sum` was `mean × count` with a truncated mean, and the
// semaphore's fast-path zeros raised `_count` without the sum; scraped 400 times under load,
// a `_sum` went down 131 times, which `rate()` reads as a counter reset. Latencies were
// summaries, which cannot be aggregated across replicas. Now every exported number is a sum
// of monotonic counters each read once, and latencies are histograms with exact buckets.
// (Run against the old exposition, this test failed within a few hundred scrapes:
// `bulkhead_permit_wait_seconds_sum ... went down from 0.009785421 to 0.009785124`.)
#[test]
fn scrapes_under_load_never_see_a_counter_go_down() {
    use std::sync::atomic::AtomicBool;
    use std::thread;

    const SCRAPES: usize = if cfg!(miri) { 5 } else { 400 };
    let manager = Arc::new(
        BulkheadManager::builder()
            // Three callers on room for two: some are rejected.
            .pool("scraped", PoolConfig::new(1).queue_capacity(1))
            // Three callers on one permit, held across a yield: some take it free, some wait.
            .semaphore(
                "scraped-sem",
                SemaphoreConfig::new(1).max_wait(Duration::from_millis(50)),
            )
            .build()
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for t in 0..3_u64 {
        let (manager, stop) = (Arc::clone(&manager), Arc::clone(&stop));
        load.push(thread::spawn(move || {
            let (pool, sem) = (manager.pool("scraped"), manager.semaphore("scraped-sem"));
            let mut i = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Varied run times; rejections when the pool is full.
                let spin = (i * (t + 3)) % 50;
                let _ = pool.execute(move || {
                    for _ in 0..spin * 20 {
                        std::hint::spin_loop();
                    }
                });
                let _ = sem.call(|| {
                    for _ in 0..spin * 20 {
                        std::hint::spin_loop();
                    }
                    thread::yield_now();
                });
            }
        }));
    }
    let mut last: Option<exposition::Exposition> = None;
    for scrape in 0..SCRAPES {
        // `parse` also checks the format: HELP and TYPE once per family, histograms'
        // buckets cumulative up to `+Inf`, and `_count` equal to the `+Inf` bucket.
        let now = exposition::parse(&manager.stats().to_prometheus());
        if let Some(last) = &last {
            for (series, before) in &last.samples {
                if !last.is_monotonic(series) {
                    continue;
                }
                let after = now.samples.get(series).copied().unwrap_or(0.0);
                assert!(
                    after >= *before,
                    "scrape {scrape}: {series} went down from {before} to {after}"
                );
            }
        }
        last = Some(now);
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let last = last.unwrap();
    for family in [
        "bulkhead_queue_wait_seconds",
        "bulkhead_run_seconds",
        "bulkhead_permit_wait_seconds",
    ] {
        assert_eq!(last.types[family], "histogram", "{family}");
    }
    // The load really went through both paths of the semaphore and a full pool.
    let stats = manager.stats();
    let sem = stats.semaphore("scraped-sem").unwrap();
    assert!(sem.wait.histogram.count > 0, "no caller waited: {sem:?}");
    assert!(
        sem.permitted > sem.wait.histogram.count,
        "no free permit: {sem:?}"
    );
    let pool = stats.pool("scraped").unwrap();
    assert!(pool.completed > 0 && pool.rejected > 0, "{pool:?}");
}
