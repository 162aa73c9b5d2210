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
    /// A row per held key, by key, in a manager's snapshot of a keyed semaphore with
    /// [`per_key_metrics`](crate::KeyedConfig::per_key_metrics) on; empty otherwise.
    pub per_key: Vec<KeyStats>,
}

/// One held key's row ([`KeyedSemaphore::per_key_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key.
    pub key: String,
    /// Its permit limit in force (below `max_concurrent` while an adaptive limit is lower).
    pub limit: usize,
    /// Its configured permit limit.
    pub max_concurrent: usize,
    /// Its permits out now.
    pub running: usize,
    /// Permits it granted since it was created (a key evicted and used again starts anew).
    pub permitted: u64,
    /// Calls its compartment refused since it was created.
    pub rejected: u64,
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

    /// A row per held key, by key: what [`KeyedStats::per_key`] carries when
    /// [`per_key_metrics`](crate::KeyedConfig::per_key_metrics) is on, on demand whether or
    /// not it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{KeyedConfig, KeyedSemaphore, SemaphoreConfig};
    ///
    /// let keyed = KeyedSemaphore::new("t", KeyedConfig::new(SemaphoreConfig::new(2)))?;
    /// let _held = keyed.try_acquire("b")?;
    /// keyed.call("a", || ())?;
    /// let rows = keyed.per_key_stats();
    /// assert_eq!(rows.iter().map(|r| (r.key.as_str(), r.running)).collect::<Vec<_>>(),
    ///            [("a", 0), ("b", 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn per_key_stats(&self) -> Vec<KeyStats> {
        let mut rows: Vec<KeyStats> = self
            .held()
            .into_iter()
            .map(|(key, s)| KeyStats {
                key,
                limit: s.limit,
                max_concurrent: s.max_concurrent,
                running: s.running,
                permitted: s.permitted,
                rejected: s.rejected,
            })
            .collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }

    /// The manager's snapshot: the top `top_n` rejected, and every key if asked for.
    pub(crate) fn stats_for_manager(&self, top_n: usize) -> KeyedStats {
        let mut stats = self.stats_with_top(top_n);
        if self.inner.config().per_key_metrics {
            stats.per_key = self.per_key_stats();
        }
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
    if all.iter().any(|s| !s.per_key.is_empty()) {
        append_per_key(text, all, &names);
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

/// A family of one series per key: name, help, the value of a key's row.
type KeyFamily = (&'static str, &'static str, fn(&KeyStats) -> usize);

/// The per-key families, for the keyed semaphores whose snapshots carry rows per key.
fn append_per_key(text: &mut String, all: &[KeyedStats], names: &[String]) {
    let rows = || {
        all.iter().zip(names).flat_map(|(s, name)| {
            s.per_key.iter().map(move |row| {
                let mut key = String::new();
                let _ = crate::prometheus::write_label_value(&mut key, &row.key);
                (name, key, row)
            })
        })
    };
    let gauges: [KeyFamily; 2] = [
        (
            "bulkhead_keyed_key_running",
            "Permits one key holds now (per_key_metrics).",
            |r| r.running,
        ),
        (
            "bulkhead_keyed_key_limit",
            "One key's permit limit in force (per_key_metrics).",
            |r| r.limit,
        ),
    ];
    for (family, help, value) in gauges {
        let _ = writeln!(text, "# HELP {family} {help}\n# TYPE {family} gauge");
        for (name, key, row) in rows() {
            let _ = writeln!(
                text,
                "{family}{{bulkhead=\"{name}\",key=\"{key}\"}} {}",
                value(row)
            );
        }
    }
    let family = "bulkhead_keyed_key_calls_total";
    let _ = writeln!(
        text,
        "# HELP {family} Calls on one key since it was created, by outcome (per_key_metrics).\n# TYPE {family} counter"
    );
    for (name, key, row) in rows() {
        for (outcome, value) in [("permitted", row.permitted), ("rejected", row.rejected)] {
            let _ = writeln!(
                text,
                "{family}{{bulkhead=\"{name}\",key=\"{key}\",outcome=\"{outcome}\"}} {value}"
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
