//! A lock-free, log-linear latency histogram, its [`LatencySummary`] and the cumulative
//! [`LatencyBuckets`] that the Prometheus text exposition exports.
//!
//! Recording is one relaxed `fetch_add` on the value's bucket and one on the running sum,
//! plus a read (and rarely a `fetch_max`) for the maximum, in the recording thread's shard:
//! no lock, no allocation after a shard's first record. Buckets are 8 per power of two, so a
//! percentile is reported within 12.5% of the true value (values up to 8 ns are exact, but
//! 0 and 1 ns share a bucket). A bucket holds the values above its lower edge up to and
//! including its upper edge, as Prometheus' `le` ("less or equal") does, so that a
//! cumulative count at an edge is exact, not interpolated.
//! Shards are allocated on first use, so an idle bulkhead costs nothing.
//!
//! Exported counts are monotonic, whatever records concurrently: every exported number (a
//! cumulative bucket, the count, the sum) is a sum of monotonic counters each read once, so
//! it lies between the true values at the start and at the end of the reading, and a later
//! reading can only show as much or more. Nothing exported is a difference of counters read
//! at different instants, nor a mean times a count.

use std::sync::OnceLock;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::sync::plain::{AtomicU64, AtomicUsize, Ordering};

/// Sub-buckets per power of two (3 bits of mantissa).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Values are clamped below 2^40 ns (about 18 minutes).
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;
const MAX_VALUE: u64 = (1 << MAX_EXP) - 1;

/// The bucket of `v` nanoseconds: bucket `i` holds the values above its lower edge up to
/// and including its upper edge (bucket 0 holds 0 and 1).
fn index(v: u64) -> usize {
    let v = v.min(MAX_VALUE);
    if v <= SUB as u64 {
        return v.saturating_sub(1) as usize;
    }
    // Indexing `v - 1` with half-open buckets `[lo, hi)` puts `v` in `(lo, hi]`.
    let u = v - 1;
    let exp = 63 - u.leading_zeros();
    let sub = (u >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// About the middle of bucket `i`, in nanoseconds.
fn midpoint(i: usize) -> u64 {
    if i < SUB {
        return i as u64 + 1;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let width = 1_u64 << (exp - SUB_BITS);
    ((SUB as u64 + sub) << (exp - SUB_BITS)) + width / 2 + 1
}

/// The exponents of the exported bucket bounds: `2^k` nanoseconds for `k` in
/// `FIRST_BOUND..=LAST_BOUND`, about 4 µs to 34 s, doubling. Powers of two are upper edges of
/// the log-linear buckets (`k >= 4`), so a cumulative count at one is exact. The span covers
/// a worker hand-off up to a task long past any sensible deadline; values above it are only
/// in `+Inf`.
const FIRST_BOUND: u32 = 12;
const LAST_BOUND: u32 = 35;
/// How many finite bounds [`LatencyBuckets`] has.
pub(crate) const BOUNDS: usize = (LAST_BOUND - FIRST_BOUND + 1) as usize;

const fn bounds() -> [Duration; BOUNDS] {
    let mut out = [Duration::ZERO; BOUNDS];
    let mut i = 0;
    while i < BOUNDS {
        out[i] = Duration::from_nanos(1 << (FIRST_BOUND + i as u32));
        i += 1;
    }
    out
}

/// How many shards a histogram spreads its recorders over.
const SHARDS: usize = 8;

/// One shard: the buckets, sum and maximum of the values its threads recorded.
struct Shard {
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Shard {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

/// The shard of the calling thread: threads are dealt to shards round-robin as they first
/// record, so the workers of one pool (and the callers of one semaphore) mostly write to
/// cache lines of their own.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
    }
    INDEX
        .try_with(|index| {
            if index.get() == usize::MAX {
                index.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
            }
            index.get()
        })
        .unwrap_or(0)
}

/// A histogram of durations, shared by the threads that record into it.
///
/// Sharded: with one shared set of counters, threads recording at once bounce the counters'
/// cache lines between cores and each record costs several times what it costs one thread
/// alone, more than `hdrhistogram` behind a mutex; a shard per thread brings it back to
/// about the single-thread cost (the README's performance notes give the figures).
#[derive(Default)]
pub(crate) struct Histogram {
    shards: [OnceLock<Box<CachePadded<Shard>>>; SHARDS],
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").finish_non_exhaustive()
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let shard =
            self.shards[shard_index()].get_or_init(|| Box::new(CachePadded::new(Shard::new())));
        shard.buckets[index(ns)].fetch_add(1, Ordering::Relaxed);
        // The value itself, not its clamped bucket value: the sum is exact. A shard's sum
        // wraps after 2^64 ns (584 years) of latency recorded through it.
        shard.sum_ns.fetch_add(ns, Ordering::Relaxed);
        if ns > shard.max_ns.load(Ordering::Relaxed) {
            shard.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// The summary, with `zeros` more values of zero that were counted but not recorded
    /// (the semaphore's fast path, which must not pay for a clock read). The zeros are in
    /// `count` and the percentiles, not in [`LatencySummary::histogram`].
    pub(crate) fn summary_with_zeros(&self, zeros: u64) -> LatencySummary {
        let mut counts = vec![0_u64; BUCKETS];
        let (mut sum_ns, mut max_ns) = (0_u64, 0_u64);
        // Each counter is read exactly once; everything below is derived from these reads
        // (see the module's note on monotonic exports).
        for shard in self.shards.iter().filter_map(OnceLock::get) {
            for (total, bucket) in counts.iter_mut().zip(shard.buckets.iter()) {
                *total += bucket.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.saturating_add(shard.sum_ns.load(Ordering::Relaxed));
            max_ns = max_ns.max(shard.max_ns.load(Ordering::Relaxed));
        }
        let recorded: u64 = counts.iter().sum();
        let mut histogram = LatencyBuckets {
            count: recorded,
            sum: Duration::from_nanos(sum_ns),
            ..LatencyBuckets::default()
        };
        let mut below = 0;
        let mut next = 0;
        for (cumulative, bound) in histogram.cumulative.iter_mut().zip(LatencyBuckets::BOUNDS) {
            let last = index(u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX));
            below += counts[next..=last].iter().sum::<u64>();
            next = last + 1;
            *cumulative = below;
        }
        let count = recorded + zeros;
        if count == 0 {
            return LatencySummary::default();
        }
        let max = Duration::from_nanos(max_ns);
        let quantile = |q: f64| -> Duration {
            // The rank of the q-quantile, 1-based, among `count` values sorted ascending.
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            if rank <= zeros {
                return Duration::ZERO;
            }
            let mut seen = zeros;
            for (i, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(midpoint(i)).min(max);
                }
            }
            max
        };
        LatencySummary {
            count,
            sum: histogram.sum,
            mean: Duration::from_nanos(sum_ns / count),
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max,
            histogram,
        }
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        self.summary_with_zeros(0)
    }
}

/// The values of one latency as cumulative counts at fixed bounds: a Prometheus histogram's
/// `_bucket{le=..}`, `_count` and `_sum`.
///
/// The bounds, [`BOUNDS`](LatencyBuckets::BOUNDS), are the same for every bulkhead and
/// every latency: 2^12 ns (about 4.1 µs) to 2^35 ns (about 34.4 s), doubling. They are edges
/// of the histogram's own buckets, so each cumulative count is exact, not interpolated, and
/// buckets of different bulkheads and replicas add up. Within one snapshot the counts never
/// decrease from one bound to the next and never exceed `count`; across snapshots none of
/// them (nor `sum`) ever decreases.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{LatencyBuckets, PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("db", PoolConfig::new(1))?;
/// pool.execute(|| std::thread::sleep(Duration::from_millis(2)))?;
/// let run = pool.stats().run_time.histogram;
/// assert_eq!(run.count, 1);
/// assert!(run.sum >= Duration::from_millis(2));
/// // 2 ms is above 2^20 ns (about 1.05 ms) and at most 2^30 ns (about 1.07 s).
/// let at = |bound: Duration| {
///     let i = LatencyBuckets::BOUNDS.iter().position(|b| *b == bound).unwrap();
///     run.cumulative[i]
/// };
/// assert_eq!(at(Duration::from_nanos(1 << 20)), 0);
/// assert_eq!(at(Duration::from_nanos(1 << 30)), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LatencyBuckets {
    /// `cumulative[i]` is how many values were at most [`BOUNDS`](Self::BOUNDS)`[i]`.
    pub cumulative: [u64; BOUNDS],
    /// How many values were recorded (Prometheus' `+Inf` bucket and `_count`).
    pub count: u64,
    /// Their exact sum, to the nanosecond (Prometheus' `_sum`).
    pub sum: Duration,
}

impl LatencyBuckets {
    /// The upper bounds (inclusive) of the cumulative counts: `2^k` ns for `k` in 12..=35.
    pub const BOUNDS: [Duration; BOUNDS] = bounds();
}

/// Percentiles of one latency of a bulkhead (queue wait, run time, permit wait).
///
/// Percentiles come from a log-linear histogram with 8 buckets per power of two: each is
/// within 12.5% of the true value, and never above `max`, which is exact. All zero when
/// nothing was recorded.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("db", PoolConfig::new(1))?;
/// pool.execute(|| std::thread::sleep(Duration::from_millis(2)))?;
/// let run = pool.stats().run_time;
/// assert_eq!(run.count, 1);
/// assert!(run.max >= Duration::from_millis(2));
/// assert!(run.p50 <= run.max);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LatencySummary {
    /// How many values were recorded.
    pub count: u64,
    /// Their exact sum, to the nanosecond.
    pub sum: Duration,
    /// Their mean (`sum / count`, truncated to the nanosecond).
    pub mean: Duration,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The 99.9th percentile.
    pub p999: Duration,
    /// The largest value recorded (exact).
    pub max: Duration,
    /// The values measured, at the export bounds. For a pool's latencies it holds every value
    /// (`histogram.count == count`). For a semaphore's wait it holds only the callers that
    /// had to wait: those that took a free permit are in `count` and the percentiles as
    /// zeros, but their wait was never measured (the fast path reads no clock).
    pub histogram: LatencyBuckets,
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_in_order() {
        let mut last = 0;
        for v in [
            0,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            1_000,
            123_456,
            1 << 39,
            MAX_VALUE,
        ] {
            let i = index(v);
            assert!(i >= last, "index not monotonic at {v}");
            assert!(i < BUCKETS);
            last = i;
            // The midpoint is within 12.5% of any value in the bucket.
            let m = midpoint(i) as f64;
            assert!((m - v as f64).abs() <= v as f64 * 0.125 + 1.0, "{v} -> {m}");
        }
        assert_eq!(index(u64::MAX), index(MAX_VALUE));
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, Duration::from_millis(100));
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1e3 - ms).abs() <= ms * 0.125;
        assert!(near(s.p50, 50.0), "{s:?}");
        assert!(near(s.p90, 90.0), "{s:?}");
        assert!(near(s.p99, 99.0), "{s:?}");
        assert!(near(s.mean, 50.5), "{s:?}");
    }

    #[test]
    fn zeros_count_but_are_not_recorded() {
        let h = Histogram::default();
        assert_eq!(h.summary_with_zeros(5).count, 5);
        assert_eq!(h.summary_with_zeros(5).p99, Duration::ZERO);
        h.record(Duration::from_millis(10));
        let s = h.summary_with_zeros(99);
        assert_eq!(
            (s.count, s.p50, s.p99),
            (100, Duration::ZERO, Duration::ZERO)
        );
        assert_eq!(s.max, Duration::from_millis(10));
        assert!(s.p999 > Duration::from_millis(8));
    }

    #[test]
    fn every_bound_is_the_upper_edge_of_a_bucket() {
        for bound in LatencyBuckets::BOUNDS {
            let ns = bound.as_nanos() as u64;
            assert_eq!(ns.count_ones(), 1, "{bound:?} is a power of two");
            // The bound is in its bucket, the next nanosecond is not: the bucket ends there.
            assert_ne!(index(ns), index(ns + 1), "{bound:?}");
            // The last bucket below the bound spans (ns - ns/16, ns].
            assert_eq!(index(ns), index(ns - ns / 16 + 1), "{bound:?}");
            assert_ne!(index(ns), index(ns - ns / 16), "{bound:?}");
        }
    }

    #[test]
    fn cumulative_counts_are_exact_at_the_bounds() {
        let h = Histogram::default();
        let mut values = Vec::new();
        for bound in LatencyBuckets::BOUNDS {
            let ns = bound.as_nanos() as u64;
            // At, just below and just above each bound: the values an interpolating
            // histogram would misplace.
            values.extend([ns - 1, ns, ns + 1]);
        }
        values.extend([0, 1, 5, 1 << 45]);
        for &v in &values {
            h.record(Duration::from_nanos(v));
        }
        let buckets = h.summary().histogram;
        assert_eq!(buckets.count, values.len() as u64);
        let sum: u64 = values.iter().sum();
        assert_eq!(buckets.sum, Duration::from_nanos(sum), "the sum is exact");
        for (bound, &cumulative) in LatencyBuckets::BOUNDS.iter().zip(&buckets.cumulative) {
            let at_most = values
                .iter()
                .filter(|&&v| u128::from(v) <= bound.as_nanos());
            assert_eq!(cumulative, at_most.count() as u64, "le {bound:?}");
        }
    }

    #[test]
    fn zeros_are_not_in_the_histogram() {
        let h = Histogram::default();
        h.record(Duration::from_micros(10));
        let s = h.summary_with_zeros(4);
        assert_eq!((s.count, s.histogram.count), (5, 1));
        assert_eq!(s.sum, Duration::from_micros(10));
        assert_eq!(s.histogram.sum, Duration::from_micros(10));
    }

    #[test]
    fn empty_is_all_zero() {
        assert_eq!(Histogram::default().summary(), LatencySummary::default());
    }
}
