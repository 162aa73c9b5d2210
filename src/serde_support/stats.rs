//! `Serialize` for the snapshots, written by hand so that the stats types carry no serde
//! attributes.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::breaker::CircuitMetrics;
use crate::stats::{BulkheadStats, ManagerStats, PoolStats, ProcessStats, SemaphoreStats};

/// The number of fields `pool_fields` writes.
const POOL_STATS_FIELDS: usize = 22;

fn pool_fields<S: SerializeStruct>(s: &mut S, p: &PoolStats) -> Result<(), S::Error> {
    s.serialize_field("name", &p.name)?;
    s.serialize_field("max_threads", &p.max_threads)?;
    s.serialize_field("limit", &p.limit)?;
    s.serialize_field("core_threads", &p.core_threads)?;
    s.serialize_field("queue_capacity", &p.queue_capacity)?;
    s.serialize_field("live_threads", &p.live_threads)?;
    s.serialize_field("running", &p.running)?;
    s.serialize_field("queued", &p.queued)?;
    s.serialize_field("peak_running", &p.peak_running)?;
    s.serialize_field("submitted", &p.submitted)?;
    s.serialize_field("rejected", &p.rejected)?;
    s.serialize_field("shutdown_refused", &p.shutdown_refused)?;
    s.serialize_field("completed", &p.completed)?;
    s.serialize_field("failed", &p.failed)?;
    s.serialize_field("panicked", &p.panicked)?;
    s.serialize_field("timed_out", &p.timed_out)?;
    s.serialize_field("expired", &p.expired)?;
    s.serialize_field("cancelled", &p.cancelled)?;
    s.serialize_field("global_refused", &p.global_refused)?;
    s.serialize_field("is_shutdown", &p.is_shutdown)?;
    s.serialize_field("queue_wait", &Latency(&p.queue_wait))?;
    s.serialize_field("run_time", &Latency(&p.run_time))
}

/// The number of fields `semaphore_fields` writes.
const SEMAPHORE_STATS_FIELDS: usize = 9;

fn semaphore_fields<S: SerializeStruct>(s: &mut S, p: &SemaphoreStats) -> Result<(), S::Error> {
    s.serialize_field("name", &p.name)?;
    s.serialize_field("max_concurrent", &p.max_concurrent)?;
    s.serialize_field("limit", &p.limit)?;
    s.serialize_field("running", &p.running)?;
    s.serialize_field("waiting", &p.waiting)?;
    s.serialize_field("permitted", &p.permitted)?;
    s.serialize_field("rejected", &p.rejected)?;
    s.serialize_field("failed", &p.failed)?;
    s.serialize_field("wait", &Latency(&p.wait))
}

/// The number of fields `process_fields` writes.
const PROCESS_STATS_FIELDS: usize = 17;

fn process_fields<S: SerializeStruct>(s: &mut S, p: &ProcessStats) -> Result<(), S::Error> {
    s.serialize_field("name", &p.name)?;
    s.serialize_field("max_concurrent", &p.max_concurrent)?;
    s.serialize_field("queue_capacity", &p.queue_capacity)?;
    s.serialize_field("running", &p.running)?;
    s.serialize_field("queued", &p.queued)?;
    s.serialize_field("permitted", &p.permitted)?;
    s.serialize_field("rejected", &p.rejected)?;
    s.serialize_field("expired", &p.expired)?;
    s.serialize_field("spawn_failed", &p.spawn_failed)?;
    s.serialize_field("started", &p.started)?;
    s.serialize_field("completed", &p.completed)?;
    s.serialize_field("exit_failures", &p.exit_failures)?;
    s.serialize_field("timed_out", &p.timed_out)?;
    s.serialize_field("killed", &p.killed)?;
    s.serialize_field("truncated", &p.truncated)?;
    s.serialize_field("queue_wait", &Latency(&p.queue_wait))?;
    s.serialize_field("run_time", &Latency(&p.run_time))
}

/// Writes every field by its name, as a struct (a JSON object). Available with the feature
/// `serde`.
impl Serialize for ProcessStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ProcessStats", PROCESS_STATS_FIELDS)?;
        process_fields(&mut s, self)?;
        s.end()
    }
}

/// Writes every field by its name, as a struct (a JSON object). Available with the feature
/// `serde`.
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("inventory", PoolConfig::new(2))?;
/// pool.execute(|| ())?;
/// let json = serde_json::to_value(pool.stats())?;
/// assert_eq!(json["name"], "inventory");
/// assert_eq!(json["completed"], 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Serialize for PoolStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("PoolStats", POOL_STATS_FIELDS)?;
        pool_fields(&mut s, self)?;
        s.end()
    }
}

/// Writes every field by its name, as a struct (a JSON object). Available with the feature
/// `serde`.
impl Serialize for SemaphoreStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("SemaphoreStats", SEMAPHORE_STATS_FIELDS)?;
        semaphore_fields(&mut s, self)?;
        s.end()
    }
}

/// Writes the snapshot's fields with a `kind` field first, `"pool"`, `"semaphore"` or `"process"` (serde's
/// "internally tagged" form). Available with the feature `serde`.
impl Serialize for BulkheadStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Pool(p) => {
                let mut s = serializer.serialize_struct("PoolStats", 1 + POOL_STATS_FIELDS)?;
                s.serialize_field("kind", "pool")?;
                pool_fields(&mut s, p)?;
                s.end()
            }
            Self::Semaphore(p) => {
                let mut s =
                    serializer.serialize_struct("SemaphoreStats", 1 + SEMAPHORE_STATS_FIELDS)?;
                s.serialize_field("kind", "semaphore")?;
                semaphore_fields(&mut s, p)?;
                s.end()
            }
            Self::Process(p) => {
                let mut s =
                    serializer.serialize_struct("ProcessStats", 1 + PROCESS_STATS_FIELDS)?;
                s.serialize_field("kind", "process")?;
                process_fields(&mut s, p)?;
                s.end()
            }
        }
    }
}

/// Writes `{ "bulkheads": [...] }`, one entry per bulkhead ordered by name, each tagged with
/// its `kind`. Available with the feature `serde`.
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, PoolConfig, SemaphoreConfig};
///
/// let manager = BulkheadManager::builder()
///     .pool("payment", PoolConfig::new(2))
///     .semaphore("cache", SemaphoreConfig::new(4))
///     .build()?;
/// let json = serde_json::to_value(manager.stats())?;
/// assert_eq!(json["bulkheads"][0]["kind"], "semaphore");
/// assert_eq!(json["bulkheads"][0]["name"], "cache");
/// assert_eq!(json["bulkheads"][1]["kind"], "pool");
/// assert_eq!(json["bulkheads"][1]["max_threads"], 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Serialize for ManagerStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // `circuit_breakers` only when there are some: a manager without breakers
        // serializes as it did before they existed.
        let with_breakers = !self.circuit_breakers.is_empty();
        // The same for `retries`.
        let with_retries = !self.retries.is_empty();
        // And for `keyed`.
        let with_keyed = !self.keyed.is_empty();
        let mut s = serializer.serialize_struct(
            "ManagerStats",
            1 + usize::from(with_breakers) + usize::from(with_retries) + usize::from(with_keyed),
        )?;
        s.serialize_field("bulkheads", &self.bulkheads)?;
        if with_breakers {
            s.serialize_field("circuit_breakers", &self.circuit_breakers)?;
        } else {
            s.skip_field("circuit_breakers")?;
        }
        if with_retries {
            s.serialize_field("retries", &self.retries)?;
        } else {
            s.skip_field("retries")?;
        }
        if with_keyed {
            s.serialize_field("keyed", &self.keyed)?;
        } else {
            s.skip_field("keyed")?;
        }
        s.end()
    }
}

/// A keyed semaphore's aggregate row; `top_rejected` as `[{"key": .., "rejected": ..}]`;
/// `per_key` as `[{"key", "limit", "max_concurrent", "running", "permitted", "rejected"}]`
/// (empty unless [`per_key_metrics`](crate::KeyedConfig::per_key_metrics) is on).
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, KeyedConfig, SemaphoreConfig};
///
/// let manager = BulkheadManager::builder()
///     .keyed("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))
///     .build()?;
/// let tenants = manager.keyed("tenants").unwrap();
/// let _held = tenants.try_acquire("acme")?;
/// assert!(tenants.try_acquire("acme").is_err());
/// let json = serde_json::to_value(manager.stats())?;
/// assert_eq!(json["keyed"][0]["name"], "tenants");
/// assert_eq!(json["keyed"][0]["running"], 1);
/// assert_eq!(json["keyed"][0]["top_rejected"][0]["key"], "acme");
/// assert_eq!(json["keyed"][0]["top_rejected"][0]["rejected"], 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Serialize for crate::keyed::KeyedStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Top<'a>(&'a [(String, u64)]);
        impl Serialize for Top<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for (key, rejected) in self.0 {
                    seq.serialize_element(&KeyCount { key, rejected })?;
                }
                seq.end()
            }
        }
        struct KeyCount<'a> {
            key: &'a str,
            rejected: &'a u64,
        }
        impl Serialize for KeyCount<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut s = serializer.serialize_struct("KeyCount", 2)?;
                s.serialize_field("key", self.key)?;
                s.serialize_field("rejected", self.rejected)?;
                s.end()
            }
        }
        struct Row<'a>(&'a crate::keyed::KeyStats);
        impl Serialize for Row<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let r = self.0;
                let mut s = serializer.serialize_struct("KeyStats", 6)?;
                s.serialize_field("key", &r.key)?;
                s.serialize_field("limit", &r.limit)?;
                s.serialize_field("max_concurrent", &r.max_concurrent)?;
                s.serialize_field("running", &r.running)?;
                s.serialize_field("permitted", &r.permitted)?;
                s.serialize_field("rejected", &r.rejected)?;
                s.end()
            }
        }
        let per_key: Vec<Row<'_>> = self.per_key.iter().map(Row).collect();
        let mut s = serializer.serialize_struct("KeyedStats", 10)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("keys", &self.keys)?;
        s.serialize_field("max_keys", &self.max_keys)?;
        s.serialize_field("running", &self.running)?;
        s.serialize_field("permitted", &self.permitted)?;
        s.serialize_field("rejected", &self.rejected)?;
        s.serialize_field("evicted", &self.evicted)?;
        s.serialize_field("keys_refused", &self.keys_refused)?;
        s.serialize_field("top_rejected", &Top(&self.top_rejected))?;
        s.serialize_field("per_key", &per_key)?;
        s.end()
    }
}

/// A retry's snapshot: its name and its six counters, flat.
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, PolicyError, Retry};
///
/// let manager = BulkheadManager::builder().retry("search", Retry::new(2)).build()?;
/// let _ = manager.retry("search").unwrap().call(|| Ok::<_, PolicyError<()>>(1));
/// let json = serde_json::to_value(manager.stats())?;
/// assert_eq!(json["retries"][0]["name"], "search");
/// assert_eq!(json["retries"][0]["succeeded_without_retry"], 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Serialize for crate::retry::RetryStats {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = &self.metrics;
        let mut s = serializer.serialize_struct("RetryStats", 7)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("succeeded_without_retry", &m.succeeded_without_retry)?;
        s.serialize_field("succeeded_with_retry", &m.succeeded_with_retry)?;
        s.serialize_field("failed_without_retry", &m.failed_without_retry)?;
        s.serialize_field("failed_with_retry", &m.failed_with_retry)?;
        s.serialize_field("retries", &m.retries)?;
        s.serialize_field("throttled", &m.throttled)?;
        s.end()
    }
}

/// A breaker's snapshot: its fields, the state in the Prometheus label's spelling
/// (`"half_open"`), rates as numbers or `null` below the minimum.
///
/// # Examples
///
/// ```
/// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new())?;
/// breaker.transition_to(CircuitState::Open)?;
/// let json = serde_json::to_value(breaker.metrics())?;
/// assert_eq!(json["name"], "email");
/// assert_eq!(json["state"], "open");
/// assert!(json["failure_rate"].is_null());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl Serialize for CircuitMetrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("CircuitMetrics", 15)?;
        s.serialize_field("name", &self.name)?;
        s.serialize_field("state", crate::breaker::state_label(self.state))?;
        s.serialize_field("failure_rate", &self.failure_rate)?;
        s.serialize_field("slow_call_rate", &self.slow_call_rate)?;
        s.serialize_field("buffered_calls", &self.buffered_calls)?;
        s.serialize_field("failed_calls", &self.failed_calls)?;
        s.serialize_field("successful_calls", &self.successful_calls)?;
        s.serialize_field("slow_calls", &self.slow_calls)?;
        s.serialize_field("not_permitted_calls", &self.not_permitted_calls)?;
        s.serialize_field("successes_total", &self.successes_total)?;
        s.serialize_field("failures_total", &self.failures_total)?;
        s.serialize_field("slow_total", &self.slow_total)?;
        s.serialize_field("ignored_total", &self.ignored_total)?;
        s.serialize_field("not_permitted_total", &self.not_permitted_total)?;
        s.serialize_field("transitions_total", &self.transitions_total)?;
        s.end()
    }
}

/// A [`LatencySummary`](crate::LatencySummary) as a struct of seconds (floating point), the
/// unit monitoring systems expect.
struct Latency<'a>(&'a crate::LatencySummary);

impl Serialize for Latency<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let l = self.0;
        let mut s = serializer.serialize_struct("LatencySummary", 8)?;
        s.serialize_field("count", &l.count)?;
        s.serialize_field("sum_seconds", &l.sum.as_secs_f64())?;
        s.serialize_field("mean_seconds", &l.mean.as_secs_f64())?;
        s.serialize_field("p50_seconds", &l.p50.as_secs_f64())?;
        s.serialize_field("p90_seconds", &l.p90.as_secs_f64())?;
        s.serialize_field("p99_seconds", &l.p99.as_secs_f64())?;
        s.serialize_field("p999_seconds", &l.p999.as_secs_f64())?;
        s.serialize_field("max_seconds", &l.max.as_secs_f64())?;
        s.end()
    }
}
