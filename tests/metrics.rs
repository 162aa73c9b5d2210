//! Feature `metrics`: what reaches a `metrics` recorder, with which names and labels.
//!
//! One recorder is installed globally for the whole file (pools report from their worker
//! threads, which a thread-local recorder would not see), so every test uses bulkhead names
//! of its own. Every test calls `recorder()` before its first call: events that happen
//! before a recorder is installed go to the facade's no-op recorder and are lost for good
//! (the first version of `bulkheads_created_after_export_are_reported_too` read the
//! recorder only at its first assertion, and failed whenever it ran first).
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use bulkheads::{
    BulkheadManager, BulkheadStats, PoolConfig, SemaphoreConfig, ThreadPoolBulkhead,
    metrics_listener,
};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// A histogram that keeps every value.
#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder that keeps every series by `name{label=value,...}` (labels sorted by key).
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// `AtomicU64` implements `GaugeFn` by storing the `f64`'s bits.
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
    descriptions: Mutex<HashMap<String, (Option<Unit>, String)>>,
}

fn series(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={:?}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.descriptions
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned(), (unit, description.into_owned()));
    }

    fn counter(&self, series: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(series)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn gauge(&self, series: &str) -> Option<f64> {
        let gauges = self.gauges.lock().unwrap();
        gauges
            .get(series)
            .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    }

    fn histogram(&self, series: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap()
            .get(series)
            .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
    }

    /// Every series whose label set names `bulkhead`, so tests see only their own.
    fn series_of(&self, bulkhead: &str) -> Vec<String> {
        let needle = format!("bulkhead={bulkhead:?}");
        let mut all: Vec<String> = self
            .counters
            .lock()
            .unwrap()
            .keys()
            .chain(self.gauges.lock().unwrap().keys())
            .chain(self.histograms.lock().unwrap().keys())
            .filter(|s| {
                let labels = s
                    .split_once('{')
                    .map_or("", |(_, l)| l.trim_end_matches('}'));
                labels.split(',').any(|l| l == needle)
            })
            .cloned()
            .collect();
        all.sort();
        all
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(counters.entry(series(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        Gauge::from_arc(Arc::clone(gauges.entry(series(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(histograms.entry(series(key)).or_default()))
    }
}

/// The process-wide recorder, installed on first use (before any test builds a bulkhead).
fn recorder() -> &'static TestRecorder {
    static RECORDER: OnceLock<&'static TestRecorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let recorder: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
        recorder
    })
}

fn calls(bulkhead: &str, kind: &str, outcome: &str) -> u64 {
    recorder().counter(&format!(
        "bulkhead_calls_total{{bulkhead={bulkhead:?},kind={kind:?},outcome={outcome:?}}}"
    ))
}

fn histogram(family: &str, bulkhead: &str, kind: &str) -> Vec<f64> {
    recorder().histogram(&format!("{family}{{bulkhead={bulkhead:?},kind={kind:?}}}"))
}

/// Polls `done` for at most 5 s: for states reached on another thread with no event to wait
/// on (a caller parked waiting for a permit).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Submits a task to `pool` that runs until the returned sender is used or dropped, and
/// waits until it has started.
fn block(pool: &ThreadPoolBulkhead) -> (mpsc::Sender<()>, bulkheads::TaskHandle<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let handle = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        })
        .unwrap();
    started_rx.recv().unwrap();
    (release_tx, handle)
}

#[test]
fn calls_a_rejection_and_a_panic_are_counted_by_outcome() {
    let recorder = recorder();
    let manager = BulkheadManager::builder()
        .pool("metrics-orders", PoolConfig::new(1))
        .build()
        .unwrap();
    manager.export_metrics();
    let pool = manager.pool("metrics-orders");

    for i in 0..3 {
        assert_eq!(pool.execute(move || i * 2).unwrap(), i * 2);
    }
    let (release, blocker) = block(&pool);
    assert!(pool.execute(|| ()).unwrap_err().is_rejected());
    release.send(()).unwrap();
    blocker.join().unwrap();
    let err = pool.execute(|| -> u8 { panic!("boom") }).unwrap_err();
    assert!(err.to_string().contains("boom"));
    pool.shutdown();
    assert!(pool.execute(|| ()).unwrap_err().is_shutdown());
    manager.publish();

    let pool_series = |name: &str| format!("{name}{{bulkhead=\"metrics-orders\",kind=\"pool\"}}");
    assert_eq!(
        recorder.counter(&pool_series("bulkhead_submitted_total")),
        5
    );
    assert_eq!(calls("metrics-orders", "pool", "completed"), 4);
    assert_eq!(calls("metrics-orders", "pool", "rejected"), 1);
    assert_eq!(calls("metrics-orders", "pool", "shutdown_refused"), 1);
    assert_eq!(calls("metrics-orders", "pool", "panicked"), 1);
    for outcome in ["timed_out", "expired", "cancelled"] {
        assert_eq!(calls("metrics-orders", "pool", outcome), 0, "{outcome}");
    }
    // Finished and Panicked fire on the worker before the caller gets its result, so the
    // histograms are complete once the calls have returned.
    let run = histogram("bulkhead_run_seconds", "metrics-orders", "pool");
    assert_eq!(run.len(), 5, "one run time per task that ran");
    assert!(run.iter().all(|&s| (0.0..60.0).contains(&s)), "{run:?}");
    let queue = histogram("bulkhead_queue_wait_seconds", "metrics-orders", "pool");
    assert_eq!(queue.len(), 5, "one queue wait per task that started");
    // A pool's admission never waits: no permit-wait series for it.
    assert!(
        !recorder
            .series_of("metrics-orders")
            .iter()
            .any(|s| s.starts_with("bulkhead_permit_wait_seconds"))
    );
    assert!(manager.shutdown(Duration::from_secs(5)));
}

#[test]
fn semaphores_report_permits_rejections_and_waits() {
    recorder();
    let manager = BulkheadManager::builder()
        .semaphore(
            "metrics-cache",
            SemaphoreConfig::new(1).max_wait(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    manager.export_metrics();
    let cache = manager.semaphore("metrics-cache");

    let held = cache.try_acquire().unwrap();
    assert!(cache.try_acquire().unwrap_err().is_rejected());
    let waiter = {
        let cache = Arc::clone(&cache);
        thread::spawn(move || cache.call(|| "waited").unwrap())
    };
    eventually("the waiter to park", || cache.stats().waiting == 1);
    drop(held);
    assert_eq!(waiter.join().unwrap(), "waited");
    manager.publish();

    assert_eq!(calls("metrics-cache", "semaphore", "permitted"), 2);
    assert_eq!(calls("metrics-cache", "semaphore", "rejected"), 1);
    // The free permit never waited and is not in the histogram; the waiter is.
    let waits = histogram("bulkhead_permit_wait_seconds", "metrics-cache", "semaphore");
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(waits[0] > 0.0, "the second waited for the first: {waits:?}");
    assert_eq!(cache.stats().wait.histogram.count, 1);
}

#[test]
fn bulkheads_created_after_export_are_reported_too() {
    recorder();
    let manager = BulkheadManager::new();
    manager.export_metrics();
    manager.pool("metrics-late").execute(|| ()).unwrap();
    assert!(manager.semaphore("metrics-late-sem").call(|| ()).is_ok());
    manager.publish();
    assert_eq!(calls("metrics-late", "pool", "completed"), 1);
    assert_eq!(calls("metrics-late-sem", "semaphore", "permitted"), 1);
    assert_eq!(
        histogram("bulkhead_run_seconds", "metrics-late", "pool").len(),
        1
    );
    assert!(manager.shutdown(Duration::from_secs(5)));
}

#[test]
fn a_standalone_pool_reports_through_its_own_listener() {
    recorder();
    let pool = ThreadPoolBulkhead::new("metrics-standalone", PoolConfig::new(2)).unwrap();
    pool.on_event(metrics_listener());
    pool.execute(|| ()).unwrap();
    BulkheadStats::Pool(pool.stats()).publish();
    assert_eq!(calls("metrics-standalone", "pool", "completed"), 1);
    let queue = histogram("bulkhead_queue_wait_seconds", "metrics-standalone", "pool");
    assert_eq!(queue.len(), 1);
}

#[test]
fn gauges_are_published_from_a_snapshot() {
    let recorder = recorder();
    let manager = BulkheadManager::builder()
        .pool("metrics-gauges", PoolConfig::new(2).queue_capacity(2))
        .semaphore("metrics-gauges-sem", SemaphoreConfig::new(3))
        .build()
        .unwrap();
    let pool = manager.pool("metrics-gauges");
    let sem = manager.semaphore("metrics-gauges-sem");
    let gauge = |metric: &str, bulkhead: &str, kind: &str| {
        recorder.gauge(&format!("{metric}{{bulkhead={bulkhead:?},kind={kind:?}}}"))
    };
    // Nothing is published until asked: gauges are pulled, not pushed.
    assert_eq!(gauge("bulkhead_running", "metrics-gauges", "pool"), None);

    let (release_a, a) = block(&pool);
    let (release_b, b) = block(&pool);
    let queued = pool.submit(|| ()).unwrap();
    let permit = sem.try_acquire().unwrap();
    manager.publish_gauges();
    assert_eq!(
        gauge("bulkhead_running", "metrics-gauges", "pool"),
        Some(2.0)
    );
    assert_eq!(
        gauge("bulkhead_queued", "metrics-gauges", "pool"),
        Some(1.0)
    );
    assert_eq!(
        gauge("bulkhead_live_threads", "metrics-gauges", "pool"),
        Some(2.0)
    );
    assert_eq!(
        gauge("bulkhead_max_threads", "metrics-gauges", "pool"),
        Some(2.0)
    );
    assert_eq!(
        gauge("bulkhead_running", "metrics-gauges-sem", "semaphore"),
        Some(1.0)
    );
    assert_eq!(
        gauge("bulkhead_waiting", "metrics-gauges-sem", "semaphore"),
        Some(0.0)
    );
    assert_eq!(
        gauge("bulkhead_max_concurrent", "metrics-gauges-sem", "semaphore"),
        Some(3.0)
    );
    // publish_gauges sets no counter.
    assert!(
        !recorder
            .series_of("metrics-gauges")
            .iter()
            .any(|s| s.starts_with("bulkhead_calls_total"))
    );

    release_a.send(()).unwrap();
    release_b.send(()).unwrap();
    a.join().unwrap();
    b.join().unwrap();
    queued.join().unwrap();
    drop(permit);
    // A snapshot taken by the caller publishes the same way.
    manager.stats().publish_gauges();
    assert_eq!(
        gauge("bulkhead_running", "metrics-gauges", "pool"),
        Some(0.0)
    );
    assert_eq!(
        gauge("bulkhead_queued", "metrics-gauges", "pool"),
        Some(0.0)
    );
    assert_eq!(
        gauge("bulkhead_running", "metrics-gauges-sem", "semaphore"),
        Some(0.0)
    );
    assert!(manager.shutdown(Duration::from_secs(5)));
}

// Regression: the facade named and labelled its series differently from the text
// exposition (a pool's admissions were `bulkhead_calls_total{outcome="permitted"}` there and
// `bulkhead_submitted_total` here, and no series had `kind`), so a dashboard built on one
// exporter showed nothing on the other. Every series, its labels, type and value must now be
// the same in both.
#[test]
fn the_facade_and_the_text_exposition_agree() {
    let recorder = recorder();
    let manager = BulkheadManager::builder()
        .pool("metrics-agree", PoolConfig::new(1).queue_capacity(1))
        .semaphore(
            "metrics-agree",
            SemaphoreConfig::new(1).max_wait(Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    manager.export_metrics();
    let pool = manager.pool("metrics-agree");
    let sem = manager.semaphore("metrics-agree");
    pool.execute(|| ()).unwrap();
    assert!(pool.execute(|| panic!("boom")).unwrap_err().is_panicked());
    let held = sem.try_acquire().unwrap();
    let waiter = {
        let sem = Arc::clone(&sem);
        thread::spawn(move || sem.call(|| ()).unwrap())
    };
    eventually("the waiter to park", || sem.stats().waiting == 1);
    drop(held);
    waiter.join().unwrap();

    let stats = manager.stats();
    stats.publish();
    let text = common::exposition::parse(&stats.to_prometheus());
    let mut histograms = Vec::new();
    for (series, value) in &text.samples {
        let name = series.split('{').next().unwrap();
        let family = text.family_of(name);
        match text.types[family].as_str() {
            "counter" => assert_eq!(recorder.counter(series) as f64, *value, "{series}"),
            "gauge" => assert_eq!(recorder.gauge(series), Some(*value), "{series}"),
            "histogram" if name.ends_with("_count") => {
                let labels = &series[name.len()..];
                let facade = recorder.histogram(&format!("{family}{labels}"));
                assert_eq!(facade.len() as f64, *value, "{series}");
                histograms.push(format!("{family}{labels}"));
            }
            "histogram" => {}
            other => panic!("{series}: unexpected type {other}"),
        }
    }
    // ...and the facade has nothing the text does not.
    for series in recorder.series_of("metrics-agree") {
        let in_text = text.samples.contains_key(&series) || histograms.contains(&series);
        assert!(in_text, "{series} is not in the text exposition");
    }
    assert_eq!(histograms.len(), 3, "{histograms:?}");
    assert!(manager.shutdown(Duration::from_secs(5)));
}

#[test]
fn every_metric_is_described_with_its_unit() {
    let recorder = recorder();
    BulkheadManager::new().export_metrics();
    let descriptions = recorder.descriptions.lock().unwrap();
    let unit = |name: &str| descriptions.get(name).map(|(unit, _)| *unit);
    for counter in ["bulkhead_calls_total", "bulkhead_submitted_total"] {
        assert_eq!(unit(counter), Some(Some(Unit::Count)), "{counter}");
    }
    for histogram in [
        "bulkhead_queue_wait_seconds",
        "bulkhead_run_seconds",
        "bulkhead_permit_wait_seconds",
    ] {
        assert_eq!(unit(histogram), Some(Some(Unit::Seconds)), "{histogram}");
    }
    for gauge in [
        "bulkhead_running",
        "bulkhead_queued",
        "bulkhead_waiting",
        "bulkhead_live_threads",
        "bulkhead_max_threads",
        "bulkhead_max_concurrent",
        "bulkhead_peak_running",
        "bulkhead_core_threads",
        "bulkhead_queue_capacity",
        "bulkhead_shutdown",
    ] {
        assert_eq!(unit(gauge), Some(Some(Unit::Count)), "{gauge}");
    }
    assert!(descriptions.values().all(|(_, help)| !help.is_empty()));
}

/// A process bulkhead's run times are its own series (`kind="process"`), as in the
/// Prometheus text, never under a pool's label; a killed program is counted once.
#[cfg(unix)]
#[test]
fn process_bulkheads_report_under_their_own_kind() {
    recorder();
    let manager = BulkheadManager::builder()
        .process(
            "metrics-proc",
            bulkheads::ProcessConfig::new(1)
                .timeout(Duration::from_millis(200))
                .kill_grace(Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    manager.export_metrics();
    let proc = manager.process("metrics-proc");
    assert!(
        proc.run(std::process::Command::new("true"))
            .unwrap()
            .status
            .success()
    );
    // Ignores SIGTERM: killed after the grace.
    let mut stubborn = std::process::Command::new("sh");
    stubborn.args(["-c", "trap '' TERM; sleep 30"]);
    assert!(proc.run(stubborn).unwrap().timed_out);
    let runs = histogram("bulkhead_run_seconds", "metrics-proc", "process");
    assert_eq!(
        runs.len(),
        2,
        "one per program, the killed one once: {runs:?}"
    );
    assert_eq!(
        histogram("bulkhead_queue_wait_seconds", "metrics-proc", "process").len(),
        2
    );
    assert!(histogram("bulkhead_run_seconds", "metrics-proc", "pool").is_empty());
    assert!(histogram("bulkhead_permit_wait_seconds", "metrics-proc", "semaphore").is_empty());
}
