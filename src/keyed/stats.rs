//! [`KeyedStats`]: one aggregate row for a keyed semaphore, and its Prometheus text with
//! the top N keys by rejections instead of one series per tenant.

use std::fmt::Write as _;

use super::KeyedSemaphore;

/// Aggregate statistics of a [`KeyedSemaphore`]: one row, not one per key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedStats {
    /// The keyed semaphore's name.
    pub name: String,
    /// Keys held now.
    pub keys: usize,
    /// The cap on keys.
    pub max_keys: usize,
    /// Permits out now, over all keys.
    pub running: usize,
    /// Permits granted, over all keys ever held (evicted keys' counts are kept): a counter
    /// that only goes up.
    pub permitted: u64,
    /// Calls refused by their key's compartment (or the global limit's), over all keys ever
    /// held: a counter that only goes up.
    pub rejected: u64,
    /// Keys evicted after `idle_ttl` idle.
    pub evicted: u64,
    /// New keys refused: past `max_keys`, invalid, or given a limit of 0.
    pub keys_refused: u64,
}

impl KeyedSemaphore {
    /// The keyed semaphore in the Prometheus text format: the aggregate families, plus
    /// `bulkhead_keyed_top_rejected` for at most `top_n` keys (the most rejected), so the
    /// number of series stays bounded however many tenants there are. Every series carries
    /// `bulkhead` (the name, escaped); the top-N series carry `key` too.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let keyed = KeyedSemaphore::new("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))?;
    /// let _held = keyed.try_acquire("acme")?;
    /// assert!(keyed.try_acquire("acme").is_err());
    /// let text = keyed.to_prometheus(5);
    /// assert!(text.contains("bulkhead_keyed_calls_total{bulkhead=\"tenants\",outcome=\"rejected\"} 1"));
    /// assert!(text.contains("bulkhead_keyed_top_rejected{bulkhead=\"tenants\",key=\"acme\"} 1"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_prometheus(&self, top_n: usize) -> String {
        let stats = self.stats();
        let mut name = String::new();
        let _ = crate::prometheus::write_label_value(&mut name, &stats.name);
        let mut text = String::new();
        let gauges: [(&str, &str, u64); 3] = [
            (
                "bulkhead_keyed_keys",
                "Keys a keyed semaphore holds now.",
                stats.keys as u64,
            ),
            (
                "bulkhead_keyed_max_keys",
                "The cap on a keyed semaphore's keys.",
                stats.max_keys as u64,
            ),
            (
                "bulkhead_keyed_running",
                "Permits out now, over all keys.",
                stats.running as u64,
            ),
        ];
        for (family, help, value) in gauges {
            let _ = writeln!(
                text,
                "# HELP {family} {help}\n# TYPE {family} gauge\n{family}{{bulkhead=\"{name}\"}} {value}"
            );
        }
        let family = "bulkhead_keyed_calls_total";
        let _ = writeln!(
            text,
            "# HELP {family} Calls on a keyed semaphore, by outcome, over all keys ever held.\n# TYPE {family} counter"
        );
        for (outcome, value) in [("permitted", stats.permitted), ("rejected", stats.rejected)] {
            let _ = writeln!(
                text,
                "{family}{{bulkhead=\"{name}\",outcome=\"{outcome}\"}} {value}"
            );
        }
        let counters: [(&str, &str, u64); 2] = [
            (
                "bulkhead_keyed_evicted_total",
                "Keys evicted after idle_ttl.",
                stats.evicted,
            ),
            (
                "bulkhead_keyed_keys_refused_total",
                "New keys refused: past max_keys, invalid, or given a limit of 0.",
                stats.keys_refused,
            ),
        ];
        for (family, help, value) in counters {
            let _ = writeln!(
                text,
                "# HELP {family} {help}\n# TYPE {family} counter\n{family}{{bulkhead=\"{name}\"}} {value}"
            );
        }
        let family = "bulkhead_keyed_top_rejected";
        let _ = writeln!(
            text,
            "# HELP {family} Rejections of the most rejected keys held now (at most N series).\n# TYPE {family} gauge"
        );
        for (key, rejected) in self.top_rejected(top_n) {
            let mut k = String::new();
            let _ = crate::prometheus::write_label_value(&mut k, &key);
            let _ = writeln!(
                text,
                "{family}{{bulkhead=\"{name}\",key=\"{k}\"}} {rejected}"
            );
        }
        text
    }
}
