//! Feature `metrics`: bulkhead events and gauges through the [`metrics`] facade.
//!
//! Counters and histograms are pushed per event by a listener ([`metrics_listener`],
//! registered for a whole manager by [`BulkheadManager::export_metrics`]); gauges are
//! pulled from a snapshot by [`BulkheadManager::publish_gauges`], which the application calls
//! from its scrape or timer loop. Why the split is explained on `publish_gauges`.

use std::time::Duration;

use crate::event::{Event, EventKind};
use crate::manager::BulkheadManager;
use crate::stats::{BulkheadStats, ManagerStats};

const CALLS_TOTAL: &str = "bulkhead_calls_total";
const QUEUE_WAIT: &str = "bulkhead_queue_wait_seconds";
const RUN: &str = "bulkhead_run_seconds";
const PERMIT_WAIT: &str = "bulkhead_permit_wait_seconds";
const RUNNING: &str = "bulkhead_running";
const QUEUED: &str = "bulkhead_queued";
const WAITING: &str = "bulkhead_waiting";
const LIVE_THREADS: &str = "bulkhead_live_threads";
const MAX_THREADS: &str = "bulkhead_max_threads";
const MAX_CONCURRENT: &str = "bulkhead_max_concurrent";

/// A listener that reports every [`Event`] through the [`metrics`] facade, for
/// [`ThreadPoolBulkhead::on_event`](crate::ThreadPoolBulkhead::on_event),
/// [`SemaphoreBulkhead::on_event`](crate::SemaphoreBulkhead::on_event) or
/// [`BulkheadManager::on_event`] (which [`BulkheadManager::export_metrics`] calls for you).
///
/// Every series carries the label `bulkhead` (the bulkhead's name).
///
/// | metric | kind | what |
/// | --- | --- | --- |
/// | `bulkhead_calls_total{bulkhead, outcome}` | counter | one per event; `outcome` is `permitted`, `rejected`, `completed`, `panicked`, `timed_out`, `expired` or `cancelled` |
/// | `bulkhead_queue_wait_seconds{bulkhead}` | histogram | pools: time from submission to start |
/// | `bulkhead_run_seconds{bulkhead}` | histogram | pools: time a task ran, whether it finished or panicked |
/// | `bulkhead_permit_wait_seconds{bulkhead}` | histogram | time a call waited to be admitted; semaphores wait up to their `max_wait`, a pool's admission never waits, so for a pool it is always zero |
///
/// The outcomes mirror the stats counters, and use the names of
/// [`ManagerStats::to_prometheus`]: for a pool, `permitted` counts
/// [`submitted`](crate::PoolStats::submitted) (an [`EventKind::Permitted`]), `completed`
/// counts tasks that returned (an [`EventKind::Finished`]), and `timed_out`, `expired`,
/// `cancelled`, `panicked` and `rejected` count their namesakes — so a caller that timed out while its
/// task was still queued shows as both `timed_out` (the caller) and `expired` (the task).
/// For a semaphore, `permitted` and `rejected` count
/// [`permitted`](crate::SemaphoreStats::permitted) and
/// [`rejected`](crate::SemaphoreStats::rejected).
///
/// The listener runs on the thread where the event happens and resolves the recorder there,
/// as the `metrics` macros do, so install the recorder (the exporter) once at start-up,
/// before load arrives. Each event costs one label set and one recorder look-up per
/// series: about what the recorder charges for any labelled metric.
///
/// # Examples
///
/// A semaphore's events happen on the caller's thread, so a thread-local recorder sees them
/// (pools report from their workers: install a global recorder for those).
///
/// ```
/// # use std::sync::Mutex;
/// use bulkheads::{metrics_listener, SemaphoreBulkhead, SemaphoreConfig};
/// # use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
/// # /// Remembers the series registered, in order.
/// # #[derive(Default)]
/// # struct Series(Mutex<Vec<String>>);
/// # impl Recorder for Series {
/// #     fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
/// #     fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
/// #     fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
/// #     fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
/// #         self.0.lock().unwrap().push(key.to_string());
/// #         Counter::noop()
/// #     }
/// #     fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge { Gauge::noop() }
/// #     fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram { Histogram::noop() }
/// # }
///
/// let cache = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(1))?;
/// cache.on_event(metrics_listener());
/// let recorder = Series::default(); // stands in for an exporter's recorder
/// metrics::with_local_recorder(&recorder, || {
///     let permit = cache.try_acquire().unwrap();
///     assert!(cache.try_acquire().is_err());
///     drop(permit);
/// });
/// let series = recorder.0.lock().unwrap();
/// assert_eq!(
///     *series,
///     [
///         "Key(bulkhead_calls_total, [bulkhead = cache, outcome = permitted])",
///         "Key(bulkhead_calls_total, [bulkhead = cache, outcome = rejected])",
///     ]
/// );
/// # Ok::<(), bulkheads::ConfigError>(())
/// ```
pub fn metrics_listener() -> impl Fn(&Event<'_>) + Send + Sync + 'static {
    |event| record(event)
}

fn record(event: &Event<'_>) {
    let name = event.bulkhead;
    let (outcome, histogram) = match event.kind {
        EventKind::Permitted { waited } => ("permitted", Some((PERMIT_WAIT, waited))),
        EventKind::Rejected => ("rejected", None),
        EventKind::ShutdownRefused => ("shutdown_refused", None),
        // Not an outcome: the call was counted when permitted, and ends with one of the
        // others. Its queue wait is what it brings.
        EventKind::Started { queue_wait } => {
            seconds(QUEUE_WAIT, name, queue_wait);
            return;
        }
        EventKind::Finished { run_time } => ("completed", Some((RUN, run_time))),
        EventKind::Panicked { run_time } => ("panicked", Some((RUN, run_time))),
        EventKind::TimedOut { .. } => ("timed_out", None),
        EventKind::Expired => ("expired", None),
        EventKind::Cancelled => ("cancelled", None),
    };
    metrics::counter!(CALLS_TOTAL, "bulkhead" => name.to_owned(), "outcome" => outcome)
        .increment(1);
    if let Some((metric, d)) = histogram {
        seconds(metric, name, d);
    }
}

fn seconds(metric: &'static str, bulkhead: &str, d: Duration) {
    metrics::histogram!(metric, "bulkhead" => bulkhead.to_owned()).record(d.as_secs_f64());
}

/// Describes every metric to the installed recorder (exporters use it for `# HELP` lines
/// and units).
fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        CALLS_TOTAL,
        Unit::Count,
        "Calls through a bulkhead, by outcome: permitted, rejected, completed, panicked, \
         timed_out, expired, cancelled."
    );
    metrics::describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time a pool's task waited in the queue before a worker started it."
    );
    metrics::describe_histogram!(
        RUN,
        Unit::Seconds,
        "Time a pool's task ran, whether it finished or panicked."
    );
    metrics::describe_histogram!(
        PERMIT_WAIT,
        Unit::Seconds,
        "Time a call waited to be admitted (always zero for a pool)."
    );
    metrics::describe_gauge!(
        RUNNING,
        Unit::Count,
        "Tasks running in a pool, or permits held on a semaphore."
    );
    metrics::describe_gauge!(QUEUED, Unit::Count, "Tasks waiting in a pool's queue.");
    metrics::describe_gauge!(
        WAITING,
        Unit::Count,
        "Callers waiting for a semaphore's permit."
    );
    metrics::describe_gauge!(LIVE_THREADS, Unit::Count, "Worker threads alive in a pool.");
    metrics::describe_gauge!(
        MAX_THREADS,
        Unit::Count,
        "Most worker threads a pool starts."
    );
    metrics::describe_gauge!(MAX_CONCURRENT, Unit::Count, "Permits a semaphore has.");
}

impl BulkheadManager {
    /// Reports the events of every bulkhead of this manager, present and future, through the
    /// [`metrics`] facade: the counters and histograms of [`metrics_listener`], which this
    /// registers with [`on_event`](BulkheadManager::on_event). It also describes every
    /// metric (units and help text) to the recorder installed now. Gauges are published by
    /// [`publish_gauges`](BulkheadManager::publish_gauges).
    ///
    /// Call it once: each call adds another listener, and every event is then counted once
    /// per listener.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{BulkheadManager, PoolConfig};
    ///
    /// // At start-up: install the exporter's recorder, then
    /// let manager = BulkheadManager::builder()
    ///     .pool("inventory", PoolConfig::new(4))
    ///     .build()?;
    /// manager.export_metrics();
    /// // Each call now counts in bulkhead_calls_total{bulkhead="inventory", outcome=...}.
    /// assert_eq!(manager.execute("inventory", || 6 * 7)?, 42);
    /// // In the scrape handler (or a timer), before rendering:
    /// manager.publish_gauges();
    /// assert!(manager.shutdown(Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn export_metrics(&self) {
        describe();
        self.on_event(metrics_listener());
    }

    /// Sets the gauges of every bulkhead from one [`stats`](BulkheadManager::stats)
    /// snapshot, each labelled `bulkhead`: `bulkhead_running` for both kinds;
    /// `bulkhead_queued`, `bulkhead_live_threads` and `bulkhead_max_threads` for pools;
    /// `bulkhead_waiting` and `bulkhead_max_concurrent` for semaphores. The names are those
    /// of [`ManagerStats::to_prometheus`]; see [`BulkheadStats::publish_gauges`].
    ///
    /// Call it where the gauges are read: just before an exporter renders a scrape, or from
    /// a timer for push-based exporters.
    ///
    /// # Why gauges are pulled, not pushed per event
    ///
    /// A snapshot's gauges come from one reading of the pool's admission word, so they are
    /// exact and mutually consistent: `running` never shows more than `max_threads`.
    /// Gauges kept up to date by events would have to be tallied again from `+1` and `-1`
    /// events by the listener: a listener registered while tasks were in flight would see
    /// them finish without having seen them start and drift below zero; the tally would add
    /// work to every call on the hot path for a value that is read once per scrape; and
    /// `live_threads` changes without any event at all (workers start lazily and retire on
    /// keep-alive).
    ///
    /// # Examples
    ///
    /// See [`export_metrics`](BulkheadManager::export_metrics).
    pub fn publish_gauges(&self) {
        self.stats().publish_gauges();
    }
}

impl ManagerStats {
    /// Sets the gauges of every bulkhead in this snapshot, as
    /// [`BulkheadManager::publish_gauges`] does; see [`BulkheadStats::publish_gauges`].
    pub fn publish_gauges(&self) {
        for bulkhead in &self.bulkheads {
            bulkhead.publish_gauges();
        }
    }
}

impl BulkheadStats {
    /// Sets the gauges of this bulkhead from its snapshot, each labelled `bulkhead`:
    ///
    /// | gauge | kind | value |
    /// | --- | --- | --- |
    /// | `bulkhead_running` | both | tasks running (pool), permits held (semaphore) |
    /// | `bulkhead_queued` | pools | tasks waiting in the queue |
    /// | `bulkhead_live_threads` | pools | worker threads alive |
    /// | `bulkhead_max_threads` | pools | `max_threads` |
    /// | `bulkhead_waiting` | semaphores | callers waiting for a permit |
    /// | `bulkhead_max_concurrent` | semaphores | `max_concurrent` |
    ///
    /// A pool and a semaphore with the same name share their series.
    ///
    /// # Examples
    ///
    /// A pool used without a manager publishes its gauges through its own snapshot:
    ///
    /// ```
    /// use bulkheads::{BulkheadStats, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("email", PoolConfig::new(2))?;
    /// assert_eq!(pool.execute(|| 1)?, 1);
    /// let stats = BulkheadStats::Pool(pool.stats());
    /// stats.publish_gauges(); // bulkhead_running{bulkhead="email"} 0, ...
    /// assert_eq!(stats.name(), "email");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish_gauges(&self) {
        let gauge = |metric: &'static str, value: usize| {
            // Gauges are f64; counts of threads and tasks are far below 2^53.
            metrics::gauge!(metric, "bulkhead" => self.name().to_owned()).set(value as f64);
        };
        match self {
            Self::Pool(p) => {
                gauge(RUNNING, p.running);
                gauge(QUEUED, p.queued);
                gauge(LIVE_THREADS, p.live_threads);
                gauge(MAX_THREADS, p.max_threads);
            }
            Self::Semaphore(s) => {
                gauge(RUNNING, s.running);
                gauge(WAITING, s.waiting);
                gauge(MAX_CONCURRENT, s.max_concurrent);
            }
        }
    }
}
