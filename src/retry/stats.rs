//! [`RetryStats`]: a named retry's counters in the manager's snapshot, its table and its
//! Prometheus text.

use std::fmt::{self, Write as _};

use super::RetryMetrics;
use crate::prometheus::write_label_value;

/// A snapshot of one retry the manager holds
/// ([`BulkheadManagerBuilder::retry`](crate::BulkheadManagerBuilder::retry)).
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, PolicyError, Retry};
///
/// let manager = BulkheadManager::builder().retry("search", Retry::new(2)).build()?;
/// let retry = manager.retry("search").expect("configured");
/// let _ = retry.call(|| Ok::<_, PolicyError<()>>(1));
/// let stats = manager.stats();
/// assert_eq!(stats.retries[0].name, "search");
/// assert_eq!(stats.retries[0].metrics.succeeded_without_retry, 1);
/// # Ok::<(), bulkheads::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// The retry's name (its events carry it too).
    pub name: String,
    /// Its counters.
    pub metrics: RetryMetrics,
}

impl RetryStats {
    pub(crate) fn new(name: &str, metrics: RetryMetrics) -> Self {
        Self {
            name: name.to_owned(),
            metrics,
        }
    }
}

/// The families, in the order they are written; every series is labelled `bulkhead` (the
/// retry's name) and `kind="retry"`.
const FAMILIES: [(&str, &str); 3] = [
    (
        "bulkhead_retry_calls_total",
        "Calls through a retry by outcome: succeeded or failed, with or without a retry.",
    ),
    (
        "bulkhead_retry_attempts_total",
        "Retries a retry made (waits it slept before another attempt).",
    ),
    (
        "bulkhead_retry_throttled_total",
        "Retries a retry's budget refused because too many recent attempts failed.",
    ),
];

/// Appends the retries' families to an exposition (nothing for no retry).
pub(crate) fn append_prometheus(text: &mut String, retries: &[RetryStats]) {
    if retries.is_empty() {
        return;
    }
    for (i, (family, help)) in FAMILIES.iter().enumerate() {
        let _ = writeln!(text, "# HELP {family} {help}");
        let _ = writeln!(text, "# TYPE {family} counter");
        for r in retries {
            let m = &r.metrics;
            let samples: Vec<(Option<&str>, u64)> = match i {
                0 => vec![
                    (Some("succeeded_without_retry"), m.succeeded_without_retry),
                    (Some("succeeded_with_retry"), m.succeeded_with_retry),
                    (Some("failed_without_retry"), m.failed_without_retry),
                    (Some("failed_with_retry"), m.failed_with_retry),
                ],
                1 => vec![(None, m.retries)],
                _ => vec![(None, m.throttled)],
            };
            for (outcome, n) in samples {
                let _ = write!(text, "{family}{{bulkhead=\"");
                let _ = write_label_value(text, &r.name);
                text.push_str("\",kind=\"retry\"");
                if let Some(outcome) = outcome {
                    let _ = write!(text, ",outcome=\"{outcome}\"");
                }
                let _ = writeln!(text, "}} {n}");
            }
        }
    }
}

const HEADERS: [&str; 7] = [
    "retry",
    "ok first",
    "ok retried",
    "failed first",
    "failed retried",
    "retries",
    "throttled",
];

/// The retries' table, under the others (nothing for no retry).
pub(crate) fn write_table(f: &mut fmt::Formatter<'_>, retries: &[RetryStats]) -> fmt::Result {
    if retries.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 7]> = retries
        .iter()
        .map(|r| {
            let m = &r.metrics;
            [
                r.name.clone(),
                m.succeeded_without_retry.to_string(),
                m.succeeded_with_retry.to_string(),
                m.failed_without_retry.to_string(),
                m.failed_with_retry.to_string(),
                m.retries.to_string(),
                m.throttled.to_string(),
            ]
        })
        .collect();
    writeln!(f)?;
    crate::stats::write_aligned(f, HEADERS, &rows)
}
