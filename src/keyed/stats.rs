//! [`KeyedStats`]: one aggregate row for a keyed semaphore, and its Prometheus text with
//! the top N keys by rejections instead of one series per tenant.

use std::fmt;
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
    /// The most rejected keys held now, with their rejections, most first: as many as the
    /// snapshot asked for ([`KeyedSemaphore::stats_with_top`]; a manager's snapshot takes
    /// 5); empty from [`KeyedSemaphore::stats`].
    pub top_rejected: Vec<(String, u64)>,
}

/// How many of each keyed semaphore's most rejected keys a manager's snapshot (and so its
/// Prometheus text) carries: enough to name the noisy tenants, few enough that the series
/// stay bounded however many tenants there are.
pub(crate) const TOP_REJECTED: usize = 5;

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
        let mut text = String::new();
        append_prometheus(&mut text, &[self.stats_with_top(top_n)]);
        text
    }

    /// [`stats`](Self::stats) with the `top_n` most rejected keys in
    /// [`KeyedStats::top_rejected`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let keyed = KeyedSemaphore::new("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))?;
    /// let _held = keyed.try_acquire("acme")?;
    /// assert!(keyed.try_acquire("acme").is_err());
    /// assert_eq!(keyed.stats_with_top(3).top_rejected, [("acme".to_owned(), 1)]);
    /// assert!(keyed.stats().top_rejected.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats_with_top(&self, top_n: usize) -> KeyedStats {
        let mut stats = self.stats();
        stats.top_rejected = self.top_rejected(top_n);
        stats
    }
}

/// A family of one series per keyed semaphore: name, help, the value of a snapshot.
type Family = (&'static str, &'static str, fn(&KeyedStats) -> u64);

/// Writes the keyed semaphores' families, each family once with a series per semaphore (and
/// per top key for `bulkhead_keyed_top_rejected`). Nothing for none.
pub(crate) fn append_prometheus(text: &mut String, all: &[KeyedStats]) {
    if all.is_empty() {
        return;
    }
    let names: Vec<String> = all
        .iter()
        .map(|s| {
            let mut name = String::new();
            let _ = crate::prometheus::write_label_value(&mut name, &s.name);
            name
        })
        .collect();
    let gauges: [Family; 3] = [
        (
            "bulkhead_keyed_keys",
            "Keys a keyed semaphore holds now.",
            |s| s.keys as u64,
        ),
        (
            "bulkhead_keyed_max_keys",
            "The cap on a keyed semaphore's keys.",
            |s| s.max_keys as u64,
        ),
        (
            "bulkhead_keyed_running",
            "Permits out now, over all keys.",
            |s| s.running as u64,
        ),
    ];
    for (family, help, value) in gauges {
        let _ = writeln!(text, "# HELP {family} {help}\n# TYPE {family} gauge");
        for (s, name) in all.iter().zip(&names) {
            let _ = writeln!(text, "{family}{{bulkhead=\"{name}\"}} {}", value(s));
        }
    }
    let family = "bulkhead_keyed_calls_total";
    let _ = writeln!(
        text,
        "# HELP {family} Calls on a keyed semaphore, by outcome, over all keys ever held.\n# TYPE {family} counter"
    );
    for (s, name) in all.iter().zip(&names) {
        for (outcome, value) in [("permitted", s.permitted), ("rejected", s.rejected)] {
            let _ = writeln!(
                text,
                "{family}{{bulkhead=\"{name}\",outcome=\"{outcome}\"}} {value}"
            );
        }
    }
    let counters: [Family; 2] = [
        (
            "bulkhead_keyed_evicted_total",
            "Keys evicted after idle_ttl.",
            |s| s.evicted,
        ),
        (
            "bulkhead_keyed_keys_refused_total",
            "New keys refused: past max_keys, invalid, or given a limit of 0.",
            |s| s.keys_refused,
        ),
    ];
    for (family, help, value) in counters {
        let _ = writeln!(text, "# HELP {family} {help}\n# TYPE {family} counter");
        for (s, name) in all.iter().zip(&names) {
            let _ = writeln!(text, "{family}{{bulkhead=\"{name}\"}} {}", value(s));
        }
    }
    let family = "bulkhead_keyed_top_rejected";
    let _ = writeln!(
        text,
        "# HELP {family} Rejections of the most rejected keys held now (at most N series).\n# TYPE {family} gauge"
    );
    for (s, name) in all.iter().zip(&names) {
        for (key, rejected) in &s.top_rejected {
            let mut k = String::new();
            let _ = crate::prometheus::write_label_value(&mut k, key);
            let _ = writeln!(
                text,
                "{family}{{bulkhead=\"{name}\",key=\"{k}\"}} {rejected}"
            );
        }
    }
}

/// The keyed semaphores' table under the bulkheads' in a manager's `Display`: one row each,
/// with its most rejected keys.
pub(crate) fn write_table(f: &mut fmt::Formatter<'_>, all: &[KeyedStats]) -> fmt::Result {
    if all.is_empty() {
        return Ok(());
    }
    const HEADERS: [&str; 7] = [
        "keyed",
        "keys",
        "running",
        "permitted",
        "rejected",
        "evicted",
        "most rejected",
    ];
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|s| {
            let top: Vec<String> = s
                .top_rejected
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(key, n)| format!("{key} ({n})"))
                .collect();
            [
                s.name.clone(),
                format!("{}/{}", s.keys, s.max_keys),
                s.running.to_string(),
                s.permitted.to_string(),
                s.rejected.to_string(),
                s.evicted.to_string(),
                if top.is_empty() {
                    "-".to_owned()
                } else {
                    top.join(", ")
                },
            ]
        })
        .collect();
    writeln!(f)?;
    crate::stats::write_aligned(f, HEADERS, &rows)
}
