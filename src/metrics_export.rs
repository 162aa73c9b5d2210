//! Feature `metrics`: bulkhead metrics through the [`metrics`] facade, with the names,
//! labels and types of the Prometheus text exposition
//! ([`ManagerStats::to_prometheus`]).
//!
//! Counters and gauges are pulled from a snapshot by [`BulkheadManager::publish`] (which
//! the application calls from its scrape or timer loop), from the same table of families
//! that writes the text exposition, so the two cannot drift apart. The latency histograms
//! need every value, so a listener ([`metrics_listener`], registered for a whole manager by
//! [`BulkheadManager::export_metrics`]) records them as the events happen. Why the split is
//! explained on `publish`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use crate::event::{Event, EventKind};
use crate::manager::BulkheadManager;
use crate::prometheus::{COUNTER, FAMILIES, LATENCIES, Snapshot, Value};
use crate::stats::{BulkheadStats, ManagerStats};

/// The latency families, as indices into [`LATENCIES`].
const QUEUE_WAIT: usize = 0;
const RUN: usize = 1;
const PERMIT_WAIT: usize = 2;

thread_local! {
    /// The histogram handles this thread has registered, by bulkhead name: one recorder
    /// look-up (and one copy of the name) per thread, bulkhead and family, then none.
    static HANDLES: RefCell<HashMap<Box<str>, [Option<metrics::Histogram>; 3]>> =
        RefCell::new(HashMap::new());
}

/// Records `d` in the latency family `family` of the bulkhead `bulkhead` of kind `kind`.
fn seconds(family: usize, kind: &'static str, bulkhead: &str, d: Duration) {
    let register = || {
        metrics::histogram!(
            LATENCIES[family].name,
            "bulkhead" => bulkhead.to_owned(),
            "kind" => kind
        )
    };
    let recorded = HANDLES.try_with(|handles| {
        let mut handles = handles.borrow_mut();
        if !handles.contains_key(bulkhead) {
            handles.insert(bulkhead.into(), Default::default());
        }
        let slots = handles.get_mut(bulkhead).expect("inserted above");
        slots[family]
            .get_or_insert_with(register)
            .record(d.as_secs_f64());
    });
    // A thread being torn down has no cache left: register for this one value.
    if recorded.is_err() {
        register().record(d.as_secs_f64());
    }
}

/// A listener that records the latency histograms of every [`Event`] through the
/// [`metrics`] facade, for
/// [`ThreadPoolBulkhead::on_event`](crate::ThreadPoolBulkhead::on_event),
/// [`SemaphoreBulkhead::on_event`](crate::SemaphoreBulkhead::on_event) or
/// [`BulkheadManager::on_event`] (which [`BulkheadManager::export_metrics`] calls for you).
///
/// | metric | type | labels | values |
/// | --- | --- | --- | --- |
/// | `bulkhead_queue_wait_seconds` | histogram | `bulkhead`, `kind="pool"` or `"process"` | time from submission to start |
/// | `bulkhead_run_seconds` | histogram | `bulkhead`, `kind="pool"` or `"process"` | time a task (or program) ran, whether it finished, failed or panicked (or was killed) |
/// | `bulkhead_permit_wait_seconds` | histogram | `bulkhead`, `kind="semaphore"` | time a caller that found no free permit waited for one |
///
/// These are the histograms of [`ManagerStats::to_prometheus`], with the same names,
/// labels and values (a call that took a free permit never waited, and is in neither).
/// Counters and gauges are not pushed per event: [`BulkheadManager::publish`] sets them
/// from a snapshot.
///
/// Each thread registers a handle once per bulkhead and family and reuses it, so an event
/// costs a look-up in a thread-local map and the recorder's own `record`, with no
/// allocation. Handles belong to the recorder installed when they were registered: install
/// the recorder (the exporter) once at start-up, before load arrives.
///
/// # Examples
///
/// ```
/// use bulkheads::{metrics_listener, PoolConfig, ThreadPoolBulkhead};
///
/// // At start-up: install the exporter's recorder, then
/// let pool = ThreadPoolBulkhead::new("email", PoolConfig::new(2))?;
/// pool.on_event(metrics_listener());
/// assert_eq!(pool.execute(|| 6 * 7)?, 42); // its queue wait and run time are recorded
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn metrics_listener() -> impl Fn(&Event<'_>) + Send + Sync + 'static {
    |event| record(event)
}

fn record(event: &Event<'_>) {
    let name = event.bulkhead;
    let kind = event.bulkhead_kind;
    match event.kind {
        // Pools and process bulkheads start tasks; semaphores wait to admit a call. (A
        // pool's `Permitted` never waited, and neither did a semaphore's free permit; their
        // counts come from `publish`.)
        EventKind::Started { queue_wait } => seconds(QUEUE_WAIT, kind, name, queue_wait),
        // (A killed program's `Killed` comes with its `Finished`: counted once.)
        EventKind::Finished { run_time }
        | EventKind::Failed { run_time }
        | EventKind::Panicked { run_time } => {
            seconds(RUN, kind, name, run_time);
        }
        // A process bulkhead's `Permitted` carries its queue wait, counted from `Started`.
        EventKind::Permitted { waited } if !waited.is_zero() && kind == "semaphore" => {
            seconds(PERMIT_WAIT, kind, name, waited);
        }
        _ => {}
    }
}

/// Describes every metric to the installed recorder (exporters use it for `# HELP` lines
/// and units), with the help texts of the Prometheus exposition.
fn describe() {
    use metrics::Unit;
    for family in FAMILIES {
        if family.kind == COUNTER {
            metrics::describe_counter!(family.name, Unit::Count, family.help);
        } else {
            metrics::describe_gauge!(family.name, Unit::Count, family.help);
        }
    }
    for family in LATENCIES {
        metrics::describe_histogram!(family.name, Unit::Seconds, family.help);
    }
}

impl BulkheadManager {
    /// Records the latency histograms of every bulkhead of this manager, present and
    /// future, through the [`metrics`] facade: registers [`metrics_listener`] with
    /// [`on_event`](BulkheadManager::on_event), and describes every metric (units and help
    /// text) to the recorder installed now. Counters and gauges are set by
    /// [`publish`](BulkheadManager::publish).
    ///
    /// Call it once: each call adds another listener, and every value is then recorded once
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
    /// // Each call now records its queue wait and run time.
    /// assert_eq!(manager.execute("inventory", || 6 * 7)?, 42);
    /// // In the scrape handler (or a timer), before rendering: the counters and gauges,
    /// // e.g. bulkhead_calls_total{bulkhead="inventory",kind="pool",outcome="completed"} 1.
    /// manager.publish();
    /// assert!(manager.shutdown(Duration::from_secs(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn export_metrics(&self) {
        describe();
        self.on_event(metrics_listener());
    }

    /// Sets every counter and gauge of every bulkhead from one
    /// [`stats`](BulkheadManager::stats) snapshot: the families of
    /// [`ManagerStats::to_prometheus`] other than the latency histograms, with the same
    /// names, labels (`bulkhead`, `kind`, and `outcome` on `bulkhead_calls_total`), types
    /// and values. Counters are set with [`metrics::Counter::absolute`]; an unbounded
    /// queue's capacity is `f64::INFINITY`.
    ///
    /// Call it where the metrics are read: just before an exporter renders a scrape, or from
    /// a timer for push-based exporters.
    ///
    /// # Why counters and gauges are pulled, not pushed per event
    ///
    /// A snapshot's gauges come from one reading of the pool's admission word, so they are
    /// exact and mutually consistent: `running` never shows more than `max_threads`.
    /// Gauges kept up to date by events would have to be tallied again from `+1` and `-1`
    /// events by the listener: a listener registered while tasks were in flight would see
    /// them finish without having seen them start and drift below zero; and `live_threads`
    /// changes without any event at all (workers start lazily and retire on keep-alive).
    /// The counters are the bulkhead's own, which it keeps anyway: publishing them costs
    /// nothing per call, they count from the bulkhead's creation (not from when a listener
    /// was added), and they carry the `kind` label, which an event does not tell for
    /// admissions and rejections.
    ///
    /// # Examples
    ///
    /// See [`export_metrics`](BulkheadManager::export_metrics).
    pub fn publish(&self) {
        self.stats().publish();
    }

    /// Sets only the gauges of every bulkhead from one snapshot; see
    /// [`publish`](BulkheadManager::publish), which sets the counters too.
    pub fn publish_gauges(&self) {
        self.stats().publish_gauges();
    }
}

impl ManagerStats {
    /// Sets the counters and gauges of every bulkhead in this snapshot, as
    /// [`BulkheadManager::publish`] does; see [`BulkheadStats::publish`].
    pub fn publish(&self) {
        for bulkhead in &self.bulkheads {
            bulkhead.publish();
        }
    }

    /// Sets the gauges of every bulkhead in this snapshot, as
    /// [`BulkheadManager::publish_gauges`] does; see [`BulkheadStats::publish_gauges`].
    pub fn publish_gauges(&self) {
        for bulkhead in &self.bulkheads {
            bulkhead.publish_gauges();
        }
    }
}

impl BulkheadStats {
    /// Sets the counters and gauges of this bulkhead from its snapshot: every family of
    /// [`ManagerStats::to_prometheus`] but the latency histograms, with its names, labels,
    /// types and values.
    ///
    /// # Examples
    ///
    /// A pool used without a manager publishes through its own snapshot:
    ///
    /// ```
    /// use bulkheads::{BulkheadStats, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("email", PoolConfig::new(2))?;
    /// assert_eq!(pool.execute(|| 1)?, 1);
    /// let stats = BulkheadStats::Pool(pool.stats());
    /// // bulkhead_submitted_total{bulkhead="email",kind="pool"} 1,
    /// // bulkhead_running{bulkhead="email",kind="pool"} 0, ...
    /// stats.publish();
    /// assert_eq!(stats.name(), "email");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish(&self) {
        self.publish_families(true);
    }

    /// Sets only the gauges of this bulkhead from its snapshot (`bulkhead_running`,
    /// `bulkhead_queued`, `bulkhead_live_threads`, …: the gauge families of
    /// [`ManagerStats::to_prometheus`]); see [`publish`](BulkheadStats::publish).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadStats, SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let sem = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(2))?;
    /// let stats = BulkheadStats::Semaphore(sem.stats());
    /// stats.publish_gauges(); // bulkhead_max_concurrent{bulkhead="cache",kind="semaphore"} 2, ...
    /// assert_eq!(stats.name(), "cache");
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn publish_gauges(&self) {
        self.publish_families(false);
    }

    fn publish_families(&self, counters: bool) {
        let snapshot = Snapshot::of(self);
        let (name, kind) = (snapshot.name(), snapshot.kind());
        for family in FAMILIES {
            let is_counter = family.kind == COUNTER;
            if is_counter && !counters {
                continue;
            }
            for (outcome, value) in (family.samples)(snapshot) {
                // Per publish, not per call: one copy of the name per series is fine here.
                let mut labels = vec![
                    metrics::Label::new("bulkhead", name.to_owned()),
                    metrics::Label::from_static_parts("kind", kind),
                ];
                if let Some(outcome) = outcome {
                    labels.push(metrics::Label::from_static_parts("outcome", outcome));
                }
                match (is_counter, value) {
                    (true, Value::Count(n)) => {
                        metrics::counter!(family.name, labels).absolute(n);
                    }
                    (true, Value::Infinite) => {}
                    // Gauges are f64; counts of threads and tasks are far below 2^53.
                    (false, Value::Count(n)) => metrics::gauge!(family.name, labels).set(n as f64),
                    (false, Value::Infinite) => {
                        metrics::gauge!(family.name, labels).set(f64::INFINITY);
                    }
                }
            }
        }
    }
}
