//! [`BulkheadManager::recommend`]: a size for every pool from what it observed, with the
//! arithmetic shown.
//!
//! What is observed, per pool, since it was built (its stats' `uptime`):
//!
//! - the **arrival rate**: every attempt, admitted or not — `submitted + rejected +
//!   shutdown_refused` — over the uptime. Rejected calls are demand the pool turned away,
//!   so they count; leaving them out would make a pool that rejects look less loaded.
//! - the **run-time p99** and mean: how long tasks held a thread (queue wait excluded: that
//!   is the pool's doing, not the dependency's).
//! - `rejected`, and `peak_running`, the most threads ever busy at once.
//!
//! What is recommended: threads by the seed formula, rate × p99 × headroom, rounded up
//! ([`pool_size`](super::pool_size)); then the shortest queue for which the M/M/c/K model —
//! c the recommended threads, service rate one over the mean run time — keeps blocking at
//! most `max_blocking` at the rate the headroom allows for (rate × headroom). With a p99
//! well above the mean, the threads alone often suffice and the queue comes out 0.
//!
//! Rates since start are means: a pool that ran through quiet nights and busy days sees
//! the mean, not the peak, and one that went through an outage carries its slow p99. Read
//! the figures with that in mind, or take the formulas in [`sizing`](super) with a peak
//! rate of your own.

use std::fmt;
use std::time::Duration;

use super::{MmcK, SizingError, pool_size, positive};
use crate::manager::BulkheadManager;
use crate::stats::{BulkheadStats, ManagerStats, PoolStats};

/// The longest queue the recommender considers. A target that needs more is not met by
/// queueing but by threads (or by a dependency that answers); the text says so.
const MAX_QUEUE: usize = 10_000;

/// What a recommendation concludes about a pool's current size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// Fewer threads than the formula recommends, or more rejections than `max_blocking`.
    Undersized,
    /// More than `oversized_ratio` times the recommended threads, with no more threads ever
    /// busy at once than recommended and rejections within `max_blocking`.
    Oversized,
    /// Neither.
    Fine,
    /// Too few calls finished (fewer than `min_samples`) for a p99 to mean anything; the
    /// recommendation is the current size.
    NotEnoughData,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Undersized => "undersized",
            Self::Oversized => "oversized",
            Self::Fine => "fine",
            Self::NotEnoughData => "not enough data",
        })
    }
}

/// How [`BulkheadManager::recommend_with`] sizes: headroom, blocking target and the verdict's
/// band.
///
/// # Examples
///
/// ```
/// use bulkheads::sizing::RecommendationOptions;
///
/// let options = RecommendationOptions::new().headroom(2.0).max_blocking(0.001);
/// assert_eq!(options.headroom_value(), 2.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct RecommendationOptions {
    headroom: f64,
    max_blocking: f64,
    oversized_ratio: f64,
    min_samples: u64,
}

impl Default for RecommendationOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RecommendationOptions {
    /// The defaults: headroom 1.5, blocking at most 1%, oversized beyond 2× the
    /// recommended threads, at least 100 finished calls.
    pub fn new() -> Self {
        Self {
            headroom: 1.5,
            max_blocking: 0.01,
            oversized_ratio: 2.0,
            min_samples: 100,
        }
    }

    /// The factor on rate × p99 for bursts and growth the observation did not show.
    /// Defaults to 1.5.
    pub fn headroom(mut self, headroom: f64) -> Self {
        self.headroom = headroom;
        self
    }

    /// The most blocking (the fraction of calls rejected) the recommended queue should
    /// allow, by M/M/c/K. Defaults to 0.01.
    pub fn max_blocking(mut self, max_blocking: f64) -> Self {
        self.max_blocking = max_blocking;
        self
    }

    /// How many times the recommended threads a pool may have before it is
    /// [`Oversized`](Verdict::Oversized). Defaults to 2.
    pub fn oversized_ratio(mut self, ratio: f64) -> Self {
        self.oversized_ratio = ratio;
        self
    }

    /// Fewest finished calls for a recommendation; below it the verdict is
    /// [`NotEnoughData`](Verdict::NotEnoughData). Defaults to 100 (a p99 needs 100 calls
    /// to be more than the maximum).
    pub fn min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// The headroom set.
    pub fn headroom_value(&self) -> f64 {
        self.headroom
    }

    /// Checks every option.
    ///
    /// # Errors
    ///
    /// `headroom` not finite and positive, `max_blocking` outside (0, 1], or
    /// `oversized_ratio` not finite and at least 1.
    pub fn validate(&self) -> Result<(), SizingError> {
        positive("headroom", self.headroom)?;
        if !(self.max_blocking > 0.0 && self.max_blocking <= 1.0) {
            return Err(SizingError::new(
                "max_blocking",
                format!(
                    "must be a probability above 0 and at most 1 (got {})",
                    self.max_blocking
                ),
            ));
        }
        if !(self.oversized_ratio.is_finite() && self.oversized_ratio >= 1.0) {
            return Err(SizingError::new(
                "oversized_ratio",
                format!(
                    "must be finite and at least 1 (got {})",
                    self.oversized_ratio
                ),
            ));
        }
        Ok(())
    }
}

/// The recommendation for one pool: the size, what it was computed from, and how it
/// compares with the current one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Recommendation {
    /// The pool's name.
    pub name: String,
    /// Recommended `max_threads`.
    pub max_threads: usize,
    /// Recommended `queue_capacity`.
    pub queue_capacity: usize,
    /// The pool's `max_threads` now.
    pub current_max_threads: usize,
    /// The pool's `queue_capacity` now.
    pub current_queue_capacity: usize,
    /// Attempts per second since the pool was built (`submitted + rejected +
    /// shutdown_refused` over its uptime).
    pub arrival_rate: f64,
    /// The run-time p99 observed.
    pub p99: Duration,
    /// The mean run time observed (the M/M/c/K service time).
    pub mean: Duration,
    /// Calls that finished running, on which the p99 and mean rest.
    pub samples: u64,
    /// Calls rejected since start.
    pub rejected: u64,
    /// `rejected` over `submitted + rejected`: the blocking observed.
    pub rejection_rate: f64,
    /// The most threads busy at once since start.
    pub peak_running: usize,
    /// The blocking M/M/c/K predicts for the recommended size at `arrival_rate` × headroom;
    /// `None` without a recommendation.
    pub predicted_blocking: Option<f64>,
    /// The verdict on the current size.
    pub verdict: Verdict,
    /// The arithmetic, in words: "inventory: 212/s × p99 80 ms × 1.5 = 25.4 → 26 threads;
    /// queue 0 keeps blocking ≤ 1% by M/M/c/K ...".
    pub reasoning: String,
}

/// Recommendations for every pool of a manager, ordered by name; its `Display` is a table
/// followed by each pool's arithmetic.
///
/// Semaphores are not in it: the time a permit is held is not measured, so there is no
/// service time to size from.
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, PoolConfig};
///
/// let manager = BulkheadManager::builder()
///     .pool("inventory", PoolConfig::new(4).queue_capacity(2))
///     .build()?;
/// manager.pool("inventory").execute(|| ())?;
/// let recommendations = manager.recommend();
/// let inventory = recommendations.get("inventory").unwrap();
/// // One call is not enough to size from: the current size stands.
/// assert_eq!(inventory.verdict, bulkheads::sizing::Verdict::NotEnoughData);
/// assert_eq!((inventory.max_threads, inventory.queue_capacity), (4, 2));
/// println!("{recommendations}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Recommendations {
    /// One per pool, ordered by name.
    pub pools: Vec<Recommendation>,
}

impl Recommendations {
    /// Recommendations from a snapshot (of [`BulkheadManager::stats`], or one kept from
    /// earlier).
    ///
    /// # Errors
    ///
    /// An invalid option (see [`RecommendationOptions::validate`]).
    pub fn from_stats(
        stats: &ManagerStats,
        options: &RecommendationOptions,
    ) -> Result<Self, SizingError> {
        options.validate()?;
        let pools = stats
            .bulkheads
            .iter()
            .filter_map(|b| match b {
                BulkheadStats::Pool(p) => Some(recommend_pool(p, options)),
                _ => None,
            })
            .collect();
        Ok(Self { pools })
    }

    /// The recommendation for the pool called `name`.
    pub fn get(&self, name: &str) -> Option<&Recommendation> {
        self.pools.iter().find(|r| r.name == name)
    }

    /// Every recommendation, ordered by name.
    pub fn iter(&self) -> std::slice::Iter<'_, Recommendation> {
        self.pools.iter()
    }

    /// How many pools there are.
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    /// True if the manager has no pool.
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}

impl<'a> IntoIterator for &'a Recommendations {
    type Item = &'a Recommendation;
    type IntoIter = std::slice::Iter<'a, Recommendation>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl BulkheadManager {
    /// A recommended size for every pool, from what it observed since it was built, with
    /// the default [`RecommendationOptions`] (headroom 1.5, blocking ≤ 1%).
    ///
    /// See [`sizing`](crate::sizing) for the model and
    /// [`Recommendations`] for an example; the README explains how to read the table.
    pub fn recommend(&self) -> Recommendations {
        Recommendations::from_stats(&self.stats(), &RecommendationOptions::new())
            .unwrap_or_default()
    }

    /// [`recommend`](BulkheadManager::recommend) with options of one's own.
    ///
    /// # Errors
    ///
    /// An invalid option (see [`RecommendationOptions::validate`]).
    pub fn recommend_with(
        &self,
        options: &RecommendationOptions,
    ) -> Result<Recommendations, SizingError> {
        Recommendations::from_stats(&self.stats(), options)
    }
}

/// The shortest queue (up to [`MAX_QUEUE`]) with which `c` threads block at most `target` at
/// `rate`, and that blocking; `None` if no queue reaches it. Blocking falls as the queue
/// grows, so a binary search finds it.
fn shortest_queue(rate: f64, mu: f64, c: usize, target: f64) -> Option<(usize, f64)> {
    let blocking = |q: usize| {
        MmcK::new(rate, mu, c, c.saturating_add(q))
            .ok()
            .map(|m| m.blocking_probability())
    };
    let at_max = blocking(MAX_QUEUE)?;
    if at_max > target {
        return None;
    }
    let (mut lo, mut hi) = (0, MAX_QUEUE); // blocking(hi) ≤ target; find the least such
    if let Some(b) = blocking(0).filter(|&b| b <= target) {
        return Some((0, b));
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match blocking(mid) {
            Some(b) if b <= target => hi = mid,
            _ => lo = mid,
        }
    }
    Some((hi, blocking(hi)?))
}

fn recommend_pool(p: &PoolStats, o: &RecommendationOptions) -> Recommendation {
    let attempts = p.submitted + p.rejected + p.shutdown_refused;
    let uptime = p.uptime.as_secs_f64();
    let rate = if uptime > 0.0 {
        attempts as f64 / uptime
    } else {
        0.0
    };
    let admitted_or_rejected = p.submitted + p.rejected;
    let rejection_rate = if admitted_or_rejected > 0 {
        p.rejected as f64 / admitted_or_rejected as f64
    } else {
        0.0
    };
    let mut r = Recommendation {
        name: p.name.clone(),
        max_threads: p.max_threads,
        queue_capacity: p.queue_capacity,
        current_max_threads: p.max_threads,
        current_queue_capacity: p.queue_capacity,
        arrival_rate: rate,
        p99: p.run_time.p99,
        mean: p.run_time.mean,
        samples: p.run_time.count,
        rejected: p.rejected,
        rejection_rate,
        peak_running: p.peak_running,
        predicted_blocking: None,
        verdict: Verdict::NotEnoughData,
        reasoning: String::new(),
    };
    if r.samples < o.min_samples || uptime <= 0.0 {
        r.reasoning = format!(
            "{}: {} calls finished, fewer than the {} a p99 needs; keeping {} threads, queue {}",
            r.name, r.samples, o.min_samples, r.max_threads, r.queue_capacity
        );
        return r;
    }
    let p99 = r.p99.as_secs_f64();
    let exact = rate * p99 * o.headroom;
    let threads = match pool_size(rate, p99, o.headroom) {
        Ok(n) => n,
        Err(err) => {
            r.reasoning = format!("{}: cannot size: {err}", r.name);
            return r;
        }
    };
    // The mean run time is the M/M/c/K service time; a histogram mean of zero (sub-
    // nanosecond tasks) is taken as one nanosecond.
    let mu = 1.0 / r.mean.as_secs_f64().max(1e-9);
    let surge = rate * o.headroom;
    let mut text = format!(
        "{}: {}/s × p99 {} × {} = {:.1} → {} thread{}",
        r.name,
        fmt_rate(rate),
        fmt_duration(r.p99),
        o.headroom,
        exact,
        threads,
        if threads == 1 { "" } else { "s" },
    );
    let queue = match shortest_queue(surge, mu, threads, o.max_blocking) {
        Some((q, blocking)) => {
            text.push_str(&format!(
                "; queue {q} keeps blocking ≤ {} by M/M/c/K (mean run {}, at {}/s: {})",
                fmt_percent(o.max_blocking),
                fmt_duration(r.mean),
                fmt_rate(surge),
                fmt_percent(blocking)
            ));
            r.predicted_blocking = Some(blocking);
            q
        }
        None => {
            text.push_str(&format!(
                "; no queue up to {MAX_QUEUE} keeps blocking ≤ {} by M/M/c/K at {}/s (mean run \
                 {}): the p99 is below the mean, so size threads from the mean",
                fmt_percent(o.max_blocking),
                fmt_rate(surge),
                fmt_duration(r.mean),
            ));
            p.queue_capacity
        }
    };
    r.max_threads = threads;
    r.queue_capacity = queue;
    let short = p.max_threads < threads;
    let rejecting = rejection_rate > o.max_blocking;
    if short {
        text.push_str(&format!("; has {} threads", p.max_threads));
    }
    if rejecting {
        text.push_str(&format!(
            "; rejected {} of calls (target ≤ {}): too small for what came, or its \
             dependency was sick (a slow p99 says so) — check before growing it",
            fmt_percent(rejection_rate),
            fmt_percent(o.max_blocking)
        ));
    }
    r.verdict = if short || rejecting {
        text.push_str(": undersized");
        Verdict::Undersized
    } else if p.max_threads as f64 > o.oversized_ratio * threads as f64 && p.peak_running <= threads
    {
        text.push_str(&format!(
            "; has {} threads, at most {} ever busy: oversized",
            p.max_threads, p.peak_running
        ));
        Verdict::Oversized
    } else {
        Verdict::Fine
    };
    r.reasoning = text;
    r
}

fn fmt_rate(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    let (value, unit) = if s >= 1.0 {
        (s, "s")
    } else if s >= 1e-3 {
        (s * 1e3, "ms")
    } else {
        (s * 1e6, "µs")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

fn fmt_percent(p: f64) -> String {
    let pct = p * 100.0;
    if pct == 0.0 {
        "0%".to_owned()
    } else if pct >= 1.0 {
        let text = format!("{pct:.1}");
        format!("{}%", text.strip_suffix(".0").unwrap_or(&text))
    } else if pct >= 0.01 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1e}%")
    }
}

const HEADERS: [&str; 8] = [
    "pool",
    "rate/s",
    "p99",
    "threads now → rec",
    "queue now → rec",
    "rejected",
    "peak",
    "verdict",
];

impl fmt::Display for Recommendations {
    /// A table, one row per pool, then each pool's arithmetic on its own line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 8]> = self
            .pools
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    fmt_rate(r.arrival_rate),
                    fmt_duration(r.p99),
                    format!("{} → {}", r.current_max_threads, r.max_threads),
                    format!(
                        "{} → {}",
                        queue(r.current_queue_capacity),
                        queue(r.queue_capacity)
                    ),
                    format!("{} ({})", r.rejected, fmt_percent(r.rejection_rate)),
                    r.peak_running.to_string(),
                    r.verdict.to_string(),
                ]
            })
            .collect();
        let mut widths = HEADERS.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header = HEADERS.map(str::to_owned);
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, &w)) in row.iter().zip(&widths).enumerate() {
                // `{:w$}` pads by chars, which is what the arrows need.
                if i == 0 || i == row.len() - 1 {
                    line.push_str(&format!("{cell:<w$}  "));
                } else {
                    line.push_str(&format!("{cell:>w$}  "));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        for r in &self.pools {
            writeln!(f, "{}", r.reasoning)?;
        }
        Ok(())
    }
}

fn queue(n: usize) -> String {
    if n >= crate::pool::MAX_IN_FLIGHT {
        "unbounded".to_owned()
    } else {
        n.to_string()
    }
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use crate::stats::PoolCounters;
    use crate::sync::plain::Ordering;

    /// A pool's snapshot as if it had run `calls` calls of `run` each over `uptime`.
    fn observed(
        max_threads: usize,
        queue: usize,
        calls: u64,
        rejected: u64,
        run: &[Duration],
        peak: usize,
        uptime: Duration,
    ) -> PoolStats {
        let counters = PoolCounters::default();
        counters.submitted.store(calls, Ordering::Relaxed);
        counters.completed.store(calls, Ordering::Relaxed);
        counters.rejected.store(rejected, Ordering::Relaxed);
        counters.peak_running.store(peak, Ordering::Relaxed);
        let run_time = Histogram::default();
        for i in 0..calls {
            run_time.record(run[i as usize % run.len()]);
        }
        PoolStats::new(
            "inventory",
            max_threads,
            max_threads,
            queue,
            max_threads,
            (0, 0),
            false,
            &counters,
            (Histogram::default().summary(), run_time.summary()),
            uptime,
        )
    }

    fn one(p: PoolStats, options: &RecommendationOptions) -> Recommendation {
        let stats = ManagerStats {
            bulkheads: vec![BulkheadStats::Pool(p)],
            circuit_breakers: Vec::new(),
            retries: Vec::new(),
            keyed: Vec::new(),
        };
        let recs = Recommendations::from_stats(&stats, options).unwrap();
        recs.get("inventory").unwrap().clone()
    }

    #[test]
    fn the_issue_example_sizes_by_the_seed_formula() {
        // 212/s for 100 s, every call 80 ms: p99 80 ms (within the histogram's 12.5%).
        let p = observed(
            8,
            5,
            21_200,
            0,
            &[Duration::from_millis(80)],
            8,
            Duration::from_secs(100),
        );
        let r = one(p, &RecommendationOptions::new());
        assert!((r.arrival_rate - 212.0).abs() < 1e-9);
        let p99 = r.p99.as_secs_f64();
        assert!((p99 - 0.080).abs() <= 0.080 * 0.125, "{p99}");
        assert_eq!(r.max_threads, (212.0 * p99 * 1.5_f64).ceil() as usize);
        assert_eq!(r.verdict, Verdict::Undersized, "8 threads for ~26");
        assert!(
            r.reasoning.starts_with("inventory: 212/s × p99 "),
            "{}",
            r.reasoning
        );
        assert!(r.reasoning.contains("threads; queue "), "{}", r.reasoning);
        // Constant 80 ms calls: p99 = mean, so the threads just match the load at the
        // surge rate (rate × headroom), and the model needs a queue to hold blocking to 1%.
        let blocking = r.predicted_blocking.unwrap();
        assert!(blocking <= 0.01);
        let mu = 1.0 / r.mean.as_secs_f64();
        let c = r.max_threads;
        let check = MmcK::new(212.0 * 1.5, mu, c, c + r.queue_capacity).unwrap();
        assert!((check.blocking_probability() - blocking).abs() < 1e-12);
        if r.queue_capacity > 0 {
            let shorter = MmcK::new(212.0 * 1.5, mu, c, c + r.queue_capacity - 1).unwrap();
            assert!(
                shorter.blocking_probability() > 0.01,
                "the queue is the shortest"
            );
        }
    }

    #[test]
    fn verdicts() {
        let ms = Duration::from_millis;
        let options = RecommendationOptions::new();
        // 100/s × 10 ms × 1.5 = 1.5 → 2 threads.
        let up = Duration::from_secs(10);
        let fine = one(observed(3, 2, 1_000, 0, &[ms(10)], 2, up), &options);
        assert_eq!((fine.max_threads, fine.verdict), (2, Verdict::Fine));
        let over = one(observed(50, 2, 1_000, 0, &[ms(10)], 2, up), &options);
        assert_eq!(over.verdict, Verdict::Oversized, "{}", over.reasoning);
        // Many threads, but once all of them were busy: not oversized.
        let used = one(observed(50, 2, 1_000, 0, &[ms(10)], 50, up), &options);
        assert_eq!(used.verdict, Verdict::Fine, "{}", used.reasoning);
        // Enough threads by the formula, but it rejected 5%: undersized for what came.
        let rejecting = one(observed(3, 0, 1_000, 53, &[ms(10)], 3, up), &options);
        assert_eq!(
            rejecting.verdict,
            Verdict::Undersized,
            "{}",
            rejecting.reasoning
        );
        assert!(
            rejecting.reasoning.contains("sick"),
            "{}",
            rejecting.reasoning
        );
        let few = one(observed(3, 2, 99, 0, &[ms(10)], 1, up), &options);
        assert_eq!(
            (few.verdict, few.max_threads, few.queue_capacity),
            (Verdict::NotEnoughData, 3, 2)
        );
    }

    #[test]
    fn a_long_tail_needs_no_queue() {
        // 99 calls of 1 ms for every one of 200 ms: the p99 is the tail's, the mean is
        // small, so rate × p99 × 1.5 threads leave the model nothing to queue for.
        let ms = Duration::from_millis;
        let mut run = vec![ms(1); 97];
        run.extend([ms(200); 3]);
        let r = one(
            observed(4, 4, 10_000, 0, &run, 4, Duration::from_secs(100)),
            &RecommendationOptions::new(),
        );
        assert_eq!(r.queue_capacity, 0, "{}", r.reasoning);
        assert!(r.predicted_blocking.unwrap() <= 0.01);
    }

    #[test]
    fn bad_options_are_errors() {
        let stats = ManagerStats::default();
        for (options, arg) in [
            (RecommendationOptions::new().headroom(0.0), "headroom"),
            (RecommendationOptions::new().headroom(f64::NAN), "headroom"),
            (
                RecommendationOptions::new().max_blocking(0.0),
                "max_blocking",
            ),
            (
                RecommendationOptions::new().oversized_ratio(0.5),
                "oversized_ratio",
            ),
        ] {
            let err = Recommendations::from_stats(&stats, &options).unwrap_err();
            assert_eq!(err.argument(), arg);
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_duration(Duration::from_millis(80)), "80.0 ms");
        assert_eq!(fmt_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(fmt_duration(Duration::from_millis(1_250)), "1.25 s");
        assert_eq!(fmt_rate(212.3), "212");
        assert_eq!(fmt_percent(0.01), "1%");
        assert_eq!(fmt_percent(0.125), "12.5%");
        assert_eq!(fmt_percent(0.0), "0%");
    }
}
