//! A lock-free, log-linear latency histogram and its [`LatencySummary`].
//!
//! Recording is one relaxed `fetch_add` on the value's bucket and one on the running sum,
//! plus a read (and rarely a `fetch_max`) for the maximum, in the recording thread's shard:
//! no lock, no allocation after a shard's first record. Buckets are 8 per power of two, so a
//! percentile is reported within 12.5% of the true value (values below 8 ns are exact).
//! Shards are allocated on first use, so an idle bulkhead costs nothing.

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

fn index(v: u64) -> usize {
    let v = v.min(MAX_VALUE);
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    (exp - SUB_BITS + 1) as usize * SUB + sub
}

/// The middle of bucket `i`, in nanoseconds.
fn midpoint(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let exp = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let width = 1_u64 << (exp - SUB_BITS);
    ((SUB as u64 + sub) << (exp - SUB_BITS)) + width / 2
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
/// Sharded: measured on the 2-vCPU development machine, one shared set of counters cost
/// 40 ns a record with two threads recording at once (the counters' cache lines bounce
/// between cores) — more than `hdrhistogram` behind a mutex (28 ns) — against 6 ns for one
/// thread. With a shard per thread, two threads recording at once cost 7 ns a record.
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
        shard.sum_ns.fetch_add(ns.min(MAX_VALUE), Ordering::Relaxed);
        if ns > shard.max_ns.load(Ordering::Relaxed) {
            shard.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    /// The summary, with `zeros` more values of zero that were counted but not recorded
    /// (the semaphore's fast path, which must not pay for a clock read).
    pub(crate) fn summary_with_zeros(&self, zeros: u64) -> LatencySummary {
        let mut counts = vec![0_u64; BUCKETS];
        let (mut sum_ns, mut max_ns) = (0_u64, 0_u64);
        for shard in self.shards.iter().filter_map(OnceLock::get) {
            for (total, bucket) in counts.iter_mut().zip(shard.buckets.iter()) {
                *total += bucket.load(Ordering::Relaxed);
            }
            sum_ns = sum_ns.saturating_add(shard.sum_ns.load(Ordering::Relaxed));
            max_ns = max_ns.max(shard.max_ns.load(Ordering::Relaxed));
        }
        let recorded: u64 = counts.iter().sum();
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
            mean: Duration::from_nanos(sum_ns / count),
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max,
        }
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        self.summary_with_zeros(0)
    }
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
    /// Their mean.
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
    fn empty_is_all_zero() {
        assert_eq!(Histogram::default().summary(), LatencySummary::default());
    }
}
