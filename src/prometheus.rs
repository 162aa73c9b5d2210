//! Prometheus text exposition (format 0.0.4) of the stats snapshots, with no dependency.
//!
//! Every series carries a `bulkhead` label (the bulkhead's name, escaped: names come from
//! users) and a `kind` label (`pool`, `semaphore` or `process`), so one dashboard query covers both
//! kinds: `sum by (bulkhead) (rate(bulkhead_calls_total{outcome="rejected"}[1m]))` is the
//! rejection rate of every compartment. Each family's `# HELP` and `# TYPE` lines come once,
//! followed by all of its samples, as the format requires; a family with no sample (no
//! semaphore, say) is left out.

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::histogram::LatencyBuckets;

use crate::stats::{BulkheadStats, ManagerStats, PoolStats, ProcessStats, SemaphoreStats};

/// One bulkhead's snapshot, borrowed.
#[derive(Clone, Copy)]
pub(crate) enum Snapshot<'a> {
    Pool(&'a PoolStats),
    Semaphore(&'a SemaphoreStats),
    Process(&'a ProcessStats),
}

impl<'a> Snapshot<'a> {
    pub(crate) fn of(stats: &'a BulkheadStats) -> Self {
        match stats {
            BulkheadStats::Pool(p) => Self::Pool(p),
            BulkheadStats::Semaphore(s) => Self::Semaphore(s),
            BulkheadStats::Process(p) => Self::Process(p),
        }
    }

    pub(crate) fn name(self) -> &'a str {
        match self {
            Self::Pool(p) => &p.name,
            Self::Semaphore(s) => &s.name,
            Self::Process(p) => &p.name,
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Pool(_) => "pool",
            Self::Semaphore(_) => "semaphore",
            Self::Process(_) => "process",
        }
    }
}

/// A sample's value.
#[derive(Clone, Copy)]
pub(crate) enum Value {
    Count(u64),
    /// A limit that is no limit: an unbounded queue.
    Infinite,
}

impl Value {
    fn size(n: usize) -> Self {
        Self::Count(n as u64)
    }

    /// A configured limit; the pool treats capacities at or above `MAX_IN_FLIGHT` as
    /// unbounded (the stats table prints "unbounded" for them), and so does the exposition.
    fn limit(n: usize) -> Self {
        if n >= crate::pool::MAX_IN_FLIGHT {
            Self::Infinite
        } else {
            Self::size(n)
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Infinite => f.write_str("+Inf"),
        }
    }
}

/// The samples of one family for one bulkhead: an optional `outcome` label and the value.
pub(crate) type Samples = Vec<(Option<&'static str>, Value)>;

/// A metric family: its name, help text, type and how to read its samples from a snapshot.
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) samples: fn(Snapshot<'_>) -> Samples,
}

pub(crate) const COUNTER: &str = "counter";
pub(crate) const GAUGE: &str = "gauge";

/// Every family, in the order they are written.
pub(crate) const FAMILIES: &[Family] = &[
    Family {
        name: "bulkhead_calls_total",
        help: "Calls through a bulkhead by outcome. Pools: tasks completed, failed (a \
               fallible task returned an error), panicked, expired (queued when their caller \
               timed out), cancelled or global_refused (no lease from the pool's fleet-wide \
               semaphore), calls rejected (the pool was full), calls \
               shutdown_refused (the pool was shut down), and callers timed_out (their tasks \
               are also counted as completed, failed, panicked or expired). Semaphores: calls \
               permitted and rejected, and failed (permitted calls whose fallible closure \
               returned an error). Processes: programs completed (ended by themselves, \
               exit_failure counts those with a failing status among them), timed_out (stopped \
               at the deadline; killed counts those that needed SIGKILL among them), calls \
               rejected (every slot and queue place taken), expired (the deadline passed in the \
               queue) and start_failed (the program could not be started).",
        kind: COUNTER,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![
                (Some("completed"), Value::Count(p.completed)),
                (Some("failed"), Value::Count(p.failed)),
                (Some("panicked"), Value::Count(p.panicked)),
                (Some("rejected"), Value::Count(p.rejected)),
                (Some("shutdown_refused"), Value::Count(p.shutdown_refused)),
                (Some("timed_out"), Value::Count(p.timed_out)),
                (Some("expired"), Value::Count(p.expired)),
                (Some("cancelled"), Value::Count(p.cancelled)),
                (Some("global_refused"), Value::Count(p.global_refused)),
            ],
            Snapshot::Semaphore(s) => vec![
                (Some("permitted"), Value::Count(s.permitted)),
                (Some("rejected"), Value::Count(s.rejected)),
                (Some("failed"), Value::Count(s.failed)),
            ],
            Snapshot::Process(p) => vec![
                (Some("completed"), Value::Count(p.completed)),
                (Some("exit_failure"), Value::Count(p.exit_failures)),
                (Some("timed_out"), Value::Count(p.timed_out)),
                (Some("killed"), Value::Count(p.killed)),
                (Some("rejected"), Value::Count(p.rejected)),
                (Some("expired"), Value::Count(p.expired)),
                (Some("start_failed"), Value::Count(p.spawn_failed)),
            ],
        },
    },
    Family {
        name: "bulkhead_submitted_total",
        help: "Calls a pool admitted; with the rejected and shutdown_refused calls, every call \
               attempted. Processes: calls that got a slot; with the rejected and expired \
               calls, every call attempted.",
        kind: COUNTER,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::Count(p.submitted))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(p) => vec![(None, Value::Count(p.permitted))],
        },
    },
    Family {
        name: "bulkhead_running",
        help: "Calls running now: tasks assigned to a worker (pool), permits held (semaphore) \
               or slots held by a program (process).",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.running))],
            Snapshot::Semaphore(s) => vec![(None, Value::size(s.running))],
            Snapshot::Process(p) => vec![(None, Value::size(p.running))],
        },
    },
    Family {
        name: "bulkhead_peak_running",
        help: "The most tasks a pool has run at once.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.peak_running))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(_) => Vec::new(),
        },
    },
    Family {
        name: "bulkhead_queued",
        help: "Tasks waiting in a pool's queue for a worker now, or calls waiting for a \
               process bulkhead's slot.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.queued))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(p) => vec![(None, Value::size(p.queued))],
        },
    },
    Family {
        name: "bulkhead_waiting",
        help: "Callers waiting for a semaphore's permit now.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(_) => Vec::new(),
            Snapshot::Semaphore(s) => vec![(None, Value::size(s.waiting))],
            Snapshot::Process(_) => Vec::new(),
        },
    },
    Family {
        name: "bulkhead_live_threads",
        help: "Worker threads of a pool alive now.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.live_threads))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(_) => Vec::new(),
        },
    },
    Family {
        name: "bulkhead_core_threads",
        help: "Worker threads a pool keeps once started, however long they are idle.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.core_threads))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(_) => Vec::new(),
        },
    },
    Family {
        name: "bulkhead_max_threads",
        help: "The most worker threads a pool starts.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.max_threads))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(_) => Vec::new(),
        },
    },
    Family {
        name: "bulkhead_queue_capacity",
        help: "The most tasks a pool's queue holds (+Inf when unbounded), or the most calls \
               waiting for a process bulkhead's slot.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::limit(p.queue_capacity))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(p) => vec![(None, Value::size(p.queue_capacity))],
        },
    },
    Family {
        name: "bulkhead_max_concurrent",
        help: "The permits of a semaphore, or the slots of a process bulkhead: the most calls \
               it runs at once.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(_) => Vec::new(),
            Snapshot::Semaphore(s) => vec![(None, Value::size(s.max_concurrent))],
            Snapshot::Process(p) => vec![(None, Value::size(p.max_concurrent))],
        },
    },
    Family {
        name: "bulkhead_limit",
        help: "The most calls a pool or semaphore runs at once now: its max_threads or \
               max_concurrent, or the limit in force when it is adaptive.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::size(p.limit))],
            Snapshot::Semaphore(s) => vec![(None, Value::size(s.limit))],
            Snapshot::Process(_) => Vec::new(),
        },
    },
    Family {
        name: "bulkhead_shutdown",
        help: "1 once a pool has been shut down, else 0.",
        kind: GAUGE,
        samples: |s| match s {
            Snapshot::Pool(p) => vec![(None, Value::Count(u64::from(p.is_shutdown)))],
            Snapshot::Semaphore(_) => Vec::new(),
            Snapshot::Process(_) => Vec::new(),
        },
    },
];

/// A latency family, written as a Prometheus histogram (`_bucket{le=..}`, `_sum`, `_count`).
pub(crate) struct LatencyFamily {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) histogram: fn(Snapshot<'_>) -> Option<LatencyBuckets>,
}

pub(crate) const LATENCIES: &[LatencyFamily] = &[
    LatencyFamily {
        name: "bulkhead_queue_wait_seconds",
        help: "Time from submission to start of the tasks of a pool, or the time calls to a \
               process bulkhead waited for a slot.",
        histogram: |s| match s {
            Snapshot::Pool(p) => Some(p.queue_wait.histogram),
            Snapshot::Semaphore(_) => None,
            Snapshot::Process(p) => Some(p.queue_wait.histogram),
        },
    },
    LatencyFamily {
        name: "bulkhead_run_seconds",
        help: "Time the tasks of a pool ran (finished or panicked), or the programs of a \
               process bulkhead ran (until their group was stopped and reaped).",
        histogram: |s| match s {
            Snapshot::Pool(p) => Some(p.run_time.histogram),
            Snapshot::Semaphore(_) => None,
            Snapshot::Process(p) => Some(p.run_time.histogram),
        },
    },
    LatencyFamily {
        name: "bulkhead_permit_wait_seconds",
        help: "Time callers of a semaphore that found no free permit waited until they got one. \
               Calls that took a free permit never wait and are not in it.",
        histogram: |s| match s {
            Snapshot::Pool(_) => None,
            Snapshot::Semaphore(s) => Some(s.wait.histogram),
            Snapshot::Process(_) => None,
        },
    },
];

/// Writes `d` in seconds, exactly: the whole seconds, then up to nine decimals with the
/// trailing zeros left out (`0.000004096`, `1.5`, `0`). Exact decimals keep a sum that grew
/// by one nanosecond from printing as the same or a smaller float.
fn write_seconds(f: &mut impl fmt::Write, d: Duration) -> fmt::Result {
    write!(f, "{}", d.as_secs())?;
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        write!(f, ".{}", digits.trim_end_matches('0'))?;
    }
    Ok(())
}

/// Writes the latency histograms: for each bulkhead, a cumulative bucket per bound of
/// [`LatencyBuckets::BOUNDS`], `+Inf` (equal to `_count`), then `_sum` and `_count`.
fn write_latencies(f: &mut fmt::Formatter<'_>, snapshots: &[Snapshot<'_>]) -> fmt::Result {
    for family in LATENCIES {
        let mut header_written = false;
        for &snapshot in snapshots {
            let Some(h) = (family.histogram)(snapshot) else {
                continue;
            };
            if !header_written {
                writeln!(f, "# HELP {} {}", family.name, family.help)?;
                writeln!(f, "# TYPE {} histogram", family.name)?;
                header_written = true;
            }
            let series = |f: &mut fmt::Formatter<'_>, suffix: &str| -> fmt::Result {
                write!(f, "{}{suffix}{{bulkhead=\"", family.name)?;
                write_label_value(f, snapshot.name())?;
                write!(f, "\",kind=\"{}\"", snapshot.kind())
            };
            for (bound, count) in LatencyBuckets::BOUNDS.iter().zip(h.cumulative) {
                series(f, "_bucket")?;
                f.write_str(",le=\"")?;
                write_seconds(f, *bound)?;
                writeln!(f, "\"}} {count}")?;
            }
            series(f, "_bucket")?;
            writeln!(f, ",le=\"+Inf\"}} {}", h.count)?;
            series(f, "_sum")?;
            f.write_str("} ")?;
            write_seconds(f, h.sum)?;
            f.write_char('\n')?;
            series(f, "_count")?;
            writeln!(f, "}} {}", h.count)?;
        }
    }
    Ok(())
}

/// The exposition of some snapshots; rendered through `Display` so that no write to the
/// output string needs an `unwrap`.
struct Exposition<'a>(Vec<Snapshot<'a>>);

impl fmt::Display for Exposition<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for family in FAMILIES {
            let mut header_written = false;
            for &snapshot in &self.0 {
                for (outcome, value) in (family.samples)(snapshot) {
                    if !header_written {
                        writeln!(f, "# HELP {} {}", family.name, family.help)?;
                        writeln!(f, "# TYPE {} {}", family.name, family.kind)?;
                        header_written = true;
                    }
                    write!(f, "{}{{bulkhead=\"", family.name)?;
                    write_label_value(f, snapshot.name())?;
                    write!(f, "\",kind=\"{}\"", snapshot.kind())?;
                    if let Some(outcome) = outcome {
                        write!(f, ",outcome=\"{outcome}\"")?;
                    }
                    writeln!(f, "}} {value}")?;
                }
            }
        }
        write_latencies(f, &self.0)
    }
}

/// Writes a label value escaped as the text format requires: backslash, double quote and
/// line feed become `\\`, `\"` and `\n`. Everything else, any UTF-8, passes as it is.
pub(crate) fn write_label_value(f: &mut impl fmt::Write, value: &str) -> fmt::Result {
    for c in value.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

impl ManagerStats {
    /// The snapshot in the Prometheus text exposition format (version 0.0.4), ready to serve
    /// on a `/metrics` endpoint with the content type `text/plain; version=0.0.4`.
    ///
    /// Every series is labelled with `bulkhead` (the name, escaped) and `kind` (`pool`,
    /// `semaphore`, or `process` for a [`ProcessStats`] added to the snapshot). The families:
    ///
    /// | family | type | series |
    /// | --- | --- | --- |
    /// | `bulkhead_calls_total` | counter | by `outcome`: pools `completed`, `failed`, `panicked`, `rejected`, `shutdown_refused`, `timed_out`, `expired`, `cancelled`, `global_refused`; semaphores `permitted`, `rejected`, `failed`; processes `completed`, `exit_failure`, `timed_out`, `killed`, `rejected`, `expired`, `start_failed` |
    /// | `bulkhead_submitted_total` | counter | pools; processes: calls that got a slot |
    /// | `bulkhead_running` | gauge | every kind |
    /// | `bulkhead_peak_running` | gauge | pools |
    /// | `bulkhead_queued` | gauge | pools, processes |
    /// | `bulkhead_waiting` | gauge | semaphores |
    /// | `bulkhead_live_threads`, `bulkhead_core_threads`, `bulkhead_max_threads` | gauge | pools |
    /// | `bulkhead_queue_capacity` | gauge | pools (`+Inf` when unbounded), processes |
    /// | `bulkhead_max_concurrent` | gauge | semaphores, processes |
    /// | `bulkhead_limit` | gauge | pools, semaphores: the limit in force (the adaptive one, or `max_threads` / `max_concurrent`) |
    /// | `bulkhead_shutdown` | gauge | pools: 1 once shut down |
    /// | `bulkhead_queue_wait_seconds` | histogram | pools: submission to start; processes: wait for a slot |
    /// | `bulkhead_run_seconds` | histogram | pools: time tasks ran (finished, failed or panicked); processes: time programs ran |
    /// | `bulkhead_permit_wait_seconds` | histogram | semaphores: waits of the callers that found no free permit |
    ///
    /// The latencies are Prometheus histograms, so they aggregate across bulkheads and
    /// replicas (`histogram_quantile(0.99, sum by (le) (rate(bulkhead_run_seconds_bucket[5m])))`),
    /// which summaries cannot. Every histogram has the same buckets, the bounds of
    /// [`LatencyBuckets::BOUNDS`](crate::LatencyBuckets::BOUNDS): `le` is `2^k` nanoseconds
    /// written in seconds, for `k` in 12..=35 (`0.000004096`, `0.000008192`, …,
    /// `34.359738368`), then `+Inf`. The bounds are edges of the bulkhead's own log-linear
    /// buckets, so each cumulative count is exact; `_sum` is the exact sum, to the
    /// nanosecond.
    ///
    /// Every counter, bucket, `_sum` and `_count` only ever grows from one scrape to the
    /// next, also while calls run concurrently with the scrape, and within one scrape
    /// `_count` equals the `+Inf` bucket.
    ///
    /// A pool's outcomes overlap in one place: a caller that timed out is counted in
    /// `timed_out`, and its task again in `completed`, `failed`, `panicked` or `expired`
    /// (and a semaphore's `failed` calls are also `permitted`). Attempted
    /// calls are `submitted + rejected + shutdown_refused` for a pool and
    /// `permitted + rejected` for a semaphore. A family with no series (no semaphore, say) is left out.
    ///
    /// The manager's circuit breakers follow, labelled `kind="circuit_breaker"`: see
    /// [`CircuitMetrics::to_prometheus`](crate::CircuitMetrics::to_prometheus).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{BulkheadManager, PoolConfig, SemaphoreConfig};
    ///
    /// let manager = BulkheadManager::builder()
    ///     .pool("inventory", PoolConfig::new(4).queue_capacity(2))
    ///     .semaphore("cache", SemaphoreConfig::new(8))
    ///     .build()?;
    /// manager.pool("inventory").execute(|| ())?;
    /// manager.semaphore("cache").call(|| ())?;
    ///
    /// let text = manager.stats().to_prometheus();
    /// assert!(text.contains("# TYPE bulkhead_calls_total counter\n"));
    /// assert!(text.contains(
    ///     "bulkhead_calls_total{bulkhead=\"inventory\",kind=\"pool\",outcome=\"completed\"} 1\n"
    /// ));
    /// assert!(text.contains(
    ///     "bulkhead_calls_total{bulkhead=\"cache\",kind=\"semaphore\",outcome=\"permitted\"} 1\n"
    /// ));
    /// assert!(text.contains("bulkhead_max_threads{bulkhead=\"inventory\",kind=\"pool\"} 4\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        let mut text = Exposition(self.bulkheads.iter().map(Snapshot::of).collect()).to_string();
        crate::breaker::append_prometheus(&mut text, &self.circuit_breakers);
        crate::keyed::append_prometheus(&mut text, &self.keyed);
        crate::retry::append_prometheus(&mut text, &self.retries);
        text
    }
}

impl PoolStats {
    /// This pool's snapshot in the Prometheus text exposition format (version 0.0.4): the
    /// pool's series of [`ManagerStats::to_prometheus`], with their `# HELP` and `# TYPE`
    /// lines. To expose several bulkheads, use [`ManagerStats::to_prometheus`]: each family's
    /// header must appear once.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("email", PoolConfig::new(2))?;
    /// pool.execute(|| ())?;
    /// let text = pool.stats().to_prometheus();
    /// assert!(text.contains("bulkhead_submitted_total{bulkhead=\"email\",kind=\"pool\"} 1\n"));
    /// assert!(text.contains("bulkhead_queue_capacity{bulkhead=\"email\",kind=\"pool\"} 0\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        Exposition(vec![Snapshot::Pool(self)]).to_string()
    }
}

impl ProcessStats {
    /// This process bulkhead's snapshot in the Prometheus text exposition format (version
    /// 0.0.4); see [`ManagerStats::to_prometheus`] for the families. Its `kind` label is
    /// `process`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(unix)] {
    /// use std::process::Command;
    /// use bulkheads::{ProcessBulkhead, ProcessConfig};
    ///
    /// let sh = ProcessBulkhead::new("sh", ProcessConfig::new(2))?;
    /// sh.run(Command::new("false"))?;
    /// let text = sh.stats().to_prometheus();
    /// assert!(text.contains(
    ///     "bulkhead_calls_total{bulkhead=\"sh\",kind=\"process\",outcome=\"exit_failure\"} 1\n"
    /// ));
    /// assert!(text.contains("bulkhead_max_concurrent{bulkhead=\"sh\",kind=\"process\"} 2\n"));
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        Exposition(vec![Snapshot::Process(self)]).to_string()
    }
}

impl SemaphoreStats {
    /// This semaphore's snapshot in the Prometheus text exposition format (version 0.0.4);
    /// see [`ManagerStats::to_prometheus`] for the families.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let sem = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(1))?;
    /// let permit = sem.try_acquire()?;
    /// assert!(sem.try_acquire().is_err());
    /// let text = sem.stats().to_prometheus();
    /// assert!(text.contains(
    ///     "bulkhead_calls_total{bulkhead=\"cache\",kind=\"semaphore\",outcome=\"rejected\"} 1\n"
    /// ));
    /// assert!(text.contains("bulkhead_running{bulkhead=\"cache\",kind=\"semaphore\"} 1\n"));
    /// drop(permit);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        Exposition(vec![Snapshot::Semaphore(self)]).to_string()
    }
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;
    use crate::{BulkheadManager, PoolConfig, SemaphoreConfig};

    /// The samples of `text` as (series, value) pairs, comments left out.
    fn samples(text: &str) -> Vec<(&str, &str)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').expect("a sample line has a value"))
            .collect()
    }

    fn value<'a>(text: &'a str, series: &str) -> &'a str {
        samples(text)
            .into_iter()
            .find(|(s, _)| *s == series)
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .1
    }

    /// A manager with one pool and one semaphore, a little traffic through each: one
    /// completed and one panicked task, one rejected pool call, one permitted and one
    /// rejected semaphore call.
    fn busy_manager() -> BulkheadManager {
        let manager = BulkheadManager::builder()
            .pool("inventory", PoolConfig::new(3).core_threads(1))
            .semaphore("cache", SemaphoreConfig::new(1))
            .build()
            .unwrap();
        let pool = manager.pool("inventory");
        pool.execute(|| ()).unwrap();
        assert!(pool.execute(|| panic!("boom")).unwrap_err().is_panicked());
        let sem = manager.semaphore("cache");
        let permit = sem.try_acquire().unwrap();
        assert!(sem.try_acquire().unwrap_err().is_rejected());
        drop(permit);
        manager
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_label_value(&mut out, "a\\b\"c\nd é").unwrap();
        assert_eq!(out, "a\\\\b\\\"c\\nd é");
    }

    #[test]
    fn user_names_cannot_break_the_format() {
        let manager = BulkheadManager::new();
        manager.semaphore("evil\"} 1\n# TYPE x counter\nx{a=\"\\");
        let text = manager.stats().to_prometheus();
        assert!(text.contains(
            "bulkhead_running{bulkhead=\"evil\\\"} 1\\n# TYPE x counter\\nx{a=\\\"\\\\\",kind=\"semaphore\"} 0\n"
        ));
        // Every line is still a comment or one series with a value.
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP bulkhead_")
                    || line.starts_with("# TYPE bulkhead_")
                    || line.starts_with("bulkhead_"),
                "stray line {line:?}"
            );
        }
    }

    #[test]
    fn latencies_are_histograms_with_exact_cumulative_buckets() {
        let text = busy_manager().stats().to_prometheus();
        for family in LATENCIES {
            let ty = format!("# TYPE {} histogram\n", family.name);
            assert_eq!(text.matches(&ty).count(), 1, "{}", family.name);
        }
        let pool = busy_manager().pool("inventory").stats();
        let exposed = pool.to_prometheus();
        let series = |suffix: &str, le: Option<&str>| {
            let le = le.map_or(String::new(), |le| format!(",le=\"{le}\""));
            format!("bulkhead_run_seconds{suffix}{{bulkhead=\"inventory\",kind=\"pool\"{le}}}")
        };
        let count = pool.run_time.histogram.count;
        assert_eq!(count, 2);
        assert_eq!(value(&exposed, &series("_count", None)), "2");
        assert_eq!(value(&exposed, &series("_bucket", Some("+Inf"))), "2");
        assert_eq!(
            value(&exposed, &series("_bucket", Some("0.000004096"))).len(),
            1
        );
        assert!(exposed.contains(&series("_bucket", Some("34.359738368"))));
        let mut sum = String::new();
        write_seconds(&mut sum, pool.run_time.histogram.sum).unwrap();
        assert_eq!(value(&exposed, &series("_sum", None)), sum);
        assert!(!exposed.contains("quantile="));
        assert!(!exposed.contains("bulkhead_permit_wait_seconds"));
    }

    #[test]
    fn seconds_are_written_exactly() {
        let text = |d: Duration| {
            let mut out = String::new();
            write_seconds(&mut out, d).unwrap();
            out
        };
        assert_eq!(text(Duration::ZERO), "0");
        assert_eq!(text(Duration::from_nanos(4096)), "0.000004096");
        assert_eq!(text(Duration::from_millis(1500)), "1.5");
        assert_eq!(text(Duration::from_nanos(34_359_738_368)), "34.359738368");
        assert_eq!(text(Duration::new(7, 1)), "7.000000001");
    }

    #[test]
    fn every_family_appears_once_with_help_and_type() {
        let text = busy_manager().stats().to_prometheus();
        for family in FAMILIES {
            let help = format!("# HELP {} ", family.name);
            let ty = format!("# TYPE {} {}\n", family.name, family.kind);
            assert_eq!(text.matches(&help).count(), 1, "{}", family.name);
            assert_eq!(text.matches(&ty).count(), 1, "{}", family.name);
            // Counters end in _total, as Prometheus' naming convention asks.
            assert_eq!(family.kind == COUNTER, family.name.ends_with("_total"));
        }
        // Each family's samples follow its own header, and no other family's.
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
            } else if !line.starts_with('#') {
                let name = line.split('{').next().unwrap();
                let base = name
                    .strip_suffix("_bucket")
                    .or_else(|| name.strip_suffix("_sum"))
                    .or_else(|| name.strip_suffix("_count"))
                    .filter(|_| text.contains(&format!("# TYPE {current} histogram")))
                    .unwrap_or(name);
                assert_eq!(base, current, "sample outside its family: {line}");
            }
        }
    }

    #[test]
    fn values_match_the_snapshot() {
        let text = busy_manager().stats().to_prometheus();
        let pool = |family: &str| format!("{family}{{bulkhead=\"inventory\",kind=\"pool\"}}");
        let sem = |family: &str| format!("{family}{{bulkhead=\"cache\",kind=\"semaphore\"}}");
        let call = |name: &str, kind: &str, outcome: &str| {
            format!(
                "bulkhead_calls_total{{bulkhead=\"{name}\",kind=\"{kind}\",outcome=\"{outcome}\"}}"
            )
        };
        for (outcome, expected) in [
            ("completed", "1"),
            ("failed", "0"),
            ("panicked", "1"),
            ("rejected", "0"),
            ("timed_out", "0"),
            ("expired", "0"),
            ("cancelled", "0"),
            ("global_refused", "0"),
        ] {
            assert_eq!(value(&text, &call("inventory", "pool", outcome)), expected);
        }
        assert_eq!(value(&text, &call("cache", "semaphore", "permitted")), "1");
        assert_eq!(value(&text, &call("cache", "semaphore", "rejected")), "1");
        assert_eq!(value(&text, &call("cache", "semaphore", "failed")), "0");
        assert_eq!(value(&text, &pool("bulkhead_submitted_total")), "2");
        assert_eq!(value(&text, &pool("bulkhead_running")), "0");
        assert_eq!(value(&text, &pool("bulkhead_queued")), "0");
        assert_eq!(value(&text, &pool("bulkhead_max_threads")), "3");
        assert_eq!(value(&text, &pool("bulkhead_core_threads")), "1");
        assert_eq!(value(&text, &pool("bulkhead_queue_capacity")), "0");
        assert_eq!(value(&text, &pool("bulkhead_peak_running")), "1");
        assert_eq!(value(&text, &pool("bulkhead_shutdown")), "0");
        let live: usize = value(&text, &pool("bulkhead_live_threads"))
            .parse()
            .unwrap();
        assert!((1..=3).contains(&live));
        assert_eq!(value(&text, &sem("bulkhead_running")), "0");
        assert_eq!(value(&text, &sem("bulkhead_waiting")), "0");
        assert_eq!(value(&text, &sem("bulkhead_max_concurrent")), "1");
        // Neither is adaptive: the limit in force is the maximum.
        assert_eq!(value(&text, &pool("bulkhead_limit")), "3");
        assert_eq!(value(&text, &sem("bulkhead_limit")), "1");
        // 9 pool outcomes + 3 semaphore outcomes + 10 other pool series + 4 other semaphore
        // series + 3 latency histograms of their buckets, +Inf, a sum and a count: nothing
        // else.
        let histogram = crate::histogram::BOUNDS + 3;
        assert_eq!(samples(&text).len(), 9 + 3 + 10 + 4 + 3 * histogram);
    }

    #[test]
    fn pool_exposition_matches_the_managers_rows() {
        let manager = busy_manager();
        let stats = manager.stats();
        let alone = stats.pool("inventory").unwrap().to_prometheus();
        let together = stats.to_prometheus();
        for (series, value) in samples(&alone) {
            assert!(series.contains("bulkhead=\"inventory\""));
            assert!(together.contains(&format!("{series} {value}\n")));
        }
        assert!(!alone.contains("bulkhead_waiting"));
        let sem = stats.semaphore("cache").unwrap().to_prometheus();
        assert!(sem.contains("# TYPE bulkhead_max_concurrent gauge\n"));
        assert!(!sem.contains("bulkhead_queued"));
    }

    #[test]
    fn unbounded_queue_is_infinite_and_shutdown_shows() {
        let manager = BulkheadManager::builder()
            .pool("batch", PoolConfig::new(1).queue_capacity(usize::MAX))
            .build()
            .unwrap();
        manager.pool("batch").shutdown();
        let text = manager.stats().to_prometheus();
        assert_eq!(
            value(
                &text,
                "bulkhead_queue_capacity{bulkhead=\"batch\",kind=\"pool\"}"
            ),
            "+Inf"
        );
        assert_eq!(
            value(&text, "bulkhead_shutdown{bulkhead=\"batch\",kind=\"pool\"}"),
            "1"
        );
    }

    #[test]
    fn empty_manager_exposes_nothing() {
        assert_eq!(ManagerStats::default().to_prometheus(), "");
    }
}
