//! What one process sees of a [`RedisSemaphore`]: counters, their snapshot, and its
//! Prometheus exposition.

use crate::sync::plain::{AtomicU64, AtomicUsize, Ordering};

#[cfg(doc)]
use super::RedisSemaphore;

/// A family: name, type, help, and its samples (an `outcome` label or none, the value).
type Family<'a> = (&'a str, &'a str, &'a str, &'a [(Option<&'a str>, u64)]);

/// Counters of one process's use of a [`RedisSemaphore`]; they only go up, except `held`.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) held: AtomicUsize,
    pub(super) acquired: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) unavailable: AtomicU64,
    pub(super) renewals: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) ran_without_lease: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of one process's use of a [`RedisSemaphore`] (for the fleet-wide count, see
/// [`RedisSemaphore::held_fleet_wide`]).
///
/// # Examples
///
/// ```
/// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
///
/// let db = RedisSemaphore::new("db", RedisSemaphoreConfig::new("redis://127.0.0.1:1/", 5))?;
/// let stats = db.stats();
/// assert_eq!((stats.held, stats.acquired, stats.leases_lost), (0, 0, 0));
/// # Ok::<(), bulkheads::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSemaphoreStats {
    /// The semaphore's name.
    pub name: String,
    /// The fleet-wide budget.
    pub permits: usize,
    /// Leases this process holds now.
    pub held: usize,
    /// Leases granted to this process.
    pub acquired: u64,
    /// Calls refused because no permit was free in time.
    pub rejected: u64,
    /// Calls refused because Redis could not be reached or answered with an error.
    pub unavailable: u64,
    /// Successful lease renewals.
    pub renewals: u64,
    /// Leases reported lost (a renewal refused, or none in time).
    pub leases_lost: u64,
    /// Calls of a fail-open bulkhead ([`Outage::FailOpen`](crate::Outage::FailOpen)) that
    /// ran without a lease while Redis was unavailable (each also counted in `unavailable`).
    pub ran_without_lease: u64,
}

impl RedisSemaphoreStats {
    /// The snapshot in the Prometheus text exposition format (version 0.0.4), every series
    /// labelled with `bulkhead` (the name, escaped): `bulkhead_global_permits` and
    /// `bulkhead_global_held` (gauges, this process's leases), and the counters
    /// `bulkhead_global_leases_total`, `bulkhead_global_calls_total` by `outcome`
    /// (`rejected`, `unavailable`), `bulkhead_global_renewals_total` and
    /// `bulkhead_global_leases_lost_total`. The fleet-wide count costs a round trip to Redis
    /// and is not in the snapshot: see [`RedisSemaphore::held_fleet_wide`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
    ///
    /// let db = RedisSemaphore::new("db", RedisSemaphoreConfig::new("redis://127.0.0.1:1/", 5))?;
    /// let text = db.stats().to_prometheus();
    /// assert!(text.contains("# TYPE bulkhead_global_held gauge\n"));
    /// assert!(text.contains("bulkhead_global_permits{bulkhead=\"db\"} 5\n"));
    /// assert!(text.contains("bulkhead_global_calls_total{bulkhead=\"db\",outcome=\"unavailable\"} 0\n"));
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        use std::fmt::Write as _;
        let mut name = String::new();
        let _ = crate::prometheus::write_label_value(&mut name, &self.name);
        let mut text = String::new();
        let families: [Family<'_>; 6] = [
            (
                "bulkhead_global_permits",
                "gauge",
                "The fleet-wide budget of a Redis semaphore.",
                &[(None, self.permits as u64)],
            ),
            (
                "bulkhead_global_held",
                "gauge",
                "Leases of a Redis semaphore held by this process.",
                &[(None, self.held as u64)],
            ),
            (
                "bulkhead_global_leases_total",
                "counter",
                "Leases of a Redis semaphore granted to this process.",
                &[(None, self.acquired)],
            ),
            (
                "bulkhead_global_calls_total",
                "counter",
                "Calls refused by a Redis semaphore, by outcome; ran_without_lease: calls of a \
                 fail-open bulkhead that ran without a lease while Redis was unavailable.",
                &[
                    (Some("rejected"), self.rejected),
                    (Some("unavailable"), self.unavailable),
                    (Some("ran_without_lease"), self.ran_without_lease),
                ],
            ),
            (
                "bulkhead_global_renewals_total",
                "counter",
                "Successful renewals of this process's leases.",
                &[(None, self.renewals)],
            ),
            (
                "bulkhead_global_leases_lost_total",
                "counter",
                "Leases reported lost: a renewal refused, or none in time.",
                &[(None, self.leases_lost)],
            ),
        ];
        for (family, kind, help, samples) in families {
            let _ = writeln!(text, "# HELP {family} {help}\n# TYPE {family} {kind}");
            for (outcome, value) in samples {
                let _ = match outcome {
                    Some(o) => writeln!(
                        text,
                        "{family}{{bulkhead=\"{name}\",outcome=\"{o}\"}} {value}"
                    ),
                    None => writeln!(text, "{family}{{bulkhead=\"{name}\"}} {value}"),
                };
            }
        }
        text
    }
}
