//! The sliding windows a breaker judges: the last `n` calls, or the calls of the last `d`.
//!
//! Both keep running totals beside their slots, so recording a call and reading the totals
//! are O(1) (a time window that was idle for a while clears at most its bucket count once).
//! They are plain data: the breaker keeps its window behind its one lock, and time comes in
//! as nanoseconds since the breaker's origin, so the windows never read a clock themselves.

use std::time::Duration;

use super::config::SlidingWindow;

/// What one recorded call was: failed or not, slow or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) failed: bool,
    pub(crate) slow: bool,
}

impl Outcome {
    fn bits(self) -> u8 {
        u8::from(self.failed) | (u8::from(self.slow) << 1)
    }

    fn from_bits(bits: u8) -> Self {
        Self {
            failed: bits & 1 != 0,
            slow: bits & 2 != 0,
        }
    }
}

/// The totals of a window at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) slow: u64,
}

impl Totals {
    fn add(&mut self, o: Outcome) {
        self.calls += 1;
        self.failed += u64::from(o.failed);
        self.slow += u64::from(o.slow);
    }

    fn remove(&mut self, other: Totals) {
        self.calls -= other.calls;
        self.failed -= other.failed;
        self.slow -= other.slow;
    }

    /// Percent of the calls that failed; `calls` must not be zero.
    pub(crate) fn failure_rate(&self) -> f64 {
        percent(self.failed, self.calls)
    }

    /// Percent of the calls that were slow; `calls` must not be zero.
    pub(crate) fn slow_call_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }
}

/// `part` in percent of `calls`: the one formula every rate, and every verdict, uses.
fn percent(part: u64, calls: u64) -> f64 {
    part as f64 * 100.0 / calls as f64
}

/// Whether a window's rates reach the thresholds, decided by counts: for a number of calls
/// it finds once the fewest failed (and slow) calls whose rate reaches its threshold, and
/// then compares counts. Exactly `failure_rate() >= threshold || slow_call_rate() >= ..`,
/// since a rate only grows with its count, without two divisions per recorded call (a full
/// count window judges the same number of calls every time).
#[derive(Debug)]
pub(crate) struct Verdict {
    failure_threshold: f64,
    slow_threshold: f64,
    /// The number of calls the counts below are for; 0 before the first verdict.
    calls: u64,
    failed: u64,
    slow: u64,
}

impl Verdict {
    /// Thresholds in percent, in (0, 100] (validated by the configuration).
    pub(crate) fn new(failure_threshold: f64, slow_threshold: f64) -> Self {
        Self {
            failure_threshold,
            slow_threshold,
            calls: 0,
            failed: 0,
            slow: 0,
        }
    }

    /// Whether either rate of `totals` reaches its threshold; `totals.calls` must not be 0.
    #[inline]
    pub(crate) fn exceeded(&mut self, totals: Totals) -> bool {
        if totals.calls != self.calls {
            self.calls = totals.calls;
            self.failed = fewest(totals.calls, self.failure_threshold);
            self.slow = fewest(totals.calls, self.slow_threshold);
        }
        totals.failed >= self.failed || totals.slow >= self.slow
    }
}

/// The fewest of `calls` whose [`percent`] reaches `threshold` (`calls + 1` if none does).
fn fewest(calls: u64, threshold: f64) -> u64 {
    // The exact answer is within a step or two of the real-number one; the loops settle it
    // by the very formula the rates use.
    let guess = (threshold * calls as f64 / 100.0).ceil();
    let mut k = if guess >= 0.0 {
        (guess as u64).min(calls + 1)
    } else {
        0
    };
    while k > 0 && percent(k - 1, calls) >= threshold {
        k -= 1;
    }
    while k <= calls && percent(k, calls) < threshold {
        k += 1;
    }
    k
}

/// A count window or a time window.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// An empty window of the configured kind, starting at `now` (nanoseconds since the
    /// breaker's origin).
    pub(crate) fn new(kind: SlidingWindow, now: u64) -> Self {
        match kind {
            SlidingWindow::Count(n) => Self::Count(CountWindow::new(n)),
            SlidingWindow::Time(d) => Self::Time(TimeWindow::new(d, now)),
        }
    }

    /// Records one call at `now` and returns the totals with it.
    #[inline]
    pub(crate) fn record(&mut self, now: u64, outcome: Outcome) -> Totals {
        match self {
            Self::Count(w) => w.record(outcome),
            Self::Time(w) => w.record(now, outcome),
        }
    }

    /// Whether it files calls by time (so [`record`](Self::record) needs `now`).
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Self::Time(_))
    }

    /// The totals at `now` (a time window drops what has slid out).
    pub(crate) fn totals(&mut self, now: u64) -> Totals {
        match self {
            Self::Count(w) => w.totals,
            Self::Time(w) => {
                w.slide(now);
                w.totals
            }
        }
    }
}

/// The last `capacity` calls, one byte each in a ring.
#[derive(Debug)]
pub(crate) struct CountWindow {
    /// Grows to `capacity` as calls arrive (so a large window costs nothing until used),
    /// then is overwritten in place from `head`.
    ring: Vec<u8>,
    capacity: usize,
    head: usize,
    totals: Totals,
}

impl CountWindow {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            ring: Vec::new(),
            capacity: capacity.max(1),
            head: 0,
            totals: Totals::default(),
        }
    }

    #[inline]
    fn record(&mut self, outcome: Outcome) -> Totals {
        if self.ring.len() < self.capacity {
            self.ring.push(outcome.bits());
        } else {
            let old = Outcome::from_bits(self.ring[self.head]);
            let mut gone = Totals::default();
            gone.add(old);
            self.totals.remove(gone);
            self.ring[self.head] = outcome.bits();
            // A compare, not `%`: this runs on every recorded call, and a division costs
            // more than the rest of the record.
            self.head += 1;
            if self.head == self.capacity {
                self.head = 0;
            }
        }
        self.totals.add(outcome);
        self.totals
    }
}

/// The calls of the last `d`, in buckets of equal width aligned to the breaker's origin.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Vec<Totals>,
    width: u64,
    /// The absolute index (`now / width`) of the newest bucket.
    epoch: u64,
    totals: Totals,
}

impl TimeWindow {
    pub(crate) fn new(d: Duration, now: u64) -> Self {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        // One-second buckets as resilience4j's (it keys them by epoch second), so its
        // scenarios hold here to the millisecond; a longer window than MAX_BUCKETS seconds
        // gets longer buckets rather than an unbounded array.
        let n = nanos
            .div_ceil(1_000_000_000)
            .clamp(1, SlidingWindow::MAX_BUCKETS);
        let width = nanos.div_ceil(n);
        Self {
            buckets: vec![Totals::default(); n as usize],
            width,
            epoch: now / width,
            totals: Totals::default(),
        }
    }

    /// Clears the buckets that have slid out of the window by `now`.
    fn slide(&mut self, now: u64) {
        let epoch = now / self.width;
        if epoch <= self.epoch {
            return;
        }
        let n = self.buckets.len() as u64;
        let steps = (epoch - self.epoch).min(n);
        for i in 1..=steps {
            let index = ((self.epoch + i) % n) as usize;
            let gone = std::mem::take(&mut self.buckets[index]);
            self.totals.remove(gone);
        }
        self.epoch = epoch;
    }

    fn record(&mut self, now: u64, outcome: Outcome) -> Totals {
        self.slide(now);
        let n = self.buckets.len() as u64;
        self.buckets[(self.epoch % n) as usize].add(outcome);
        self.totals.add(outcome);
        self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Outcome = Outcome {
        failed: false,
        slow: false,
    };
    const ERR: Outcome = Outcome {
        failed: true,
        slow: false,
    };
    const SLOW_OK: Outcome = Outcome {
        failed: false,
        slow: true,
    };
    const SLOW_ERR: Outcome = Outcome {
        failed: true,
        slow: true,
    };
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn t(calls: u64, failed: u64, slow: u64) -> Totals {
        Totals {
            calls,
            failed,
            slow,
        }
    }

    #[test]
    fn count_window_evicts_the_oldest_call() {
        let mut w = Window::new(SlidingWindow::Count(2), 0);
        assert_eq!(w.record(0, SLOW_ERR), t(1, 1, 1));
        assert_eq!(w.record(0, SLOW_OK), t(2, 1, 2));
        assert_eq!(w.record(0, OK), t(2, 0, 1));
        assert_eq!(w.record(0, OK), t(2, 0, 0));
        assert_eq!(w.record(0, ERR), t(2, 1, 0));
        // Time does not matter to a count window.
        assert_eq!(w.totals(u64::MAX), t(2, 1, 0));
    }

    #[test]
    fn count_window_ring_wraps_many_times() {
        let mut w = CountWindow::new(3);
        for i in 0..100_u64 {
            w.record(if i % 3 == 0 { ERR } else { OK });
        }
        // The last three calls are i = 97, 98, 99: 99 is the only multiple of 3.
        assert_eq!(w.totals, t(3, 1, 0));
        assert_eq!(w.ring.len(), 3);
    }

    #[test]
    fn time_window_buckets_are_whole_seconds_from_the_start() {
        let w = TimeWindow::new(Duration::from_secs(5), 0);
        assert_eq!(w.buckets.len(), 5);
        assert_eq!(w.width, S);
        let short = TimeWindow::new(Duration::from_millis(300), 0);
        assert_eq!((short.buckets.len(), short.width), (1, 300 * MS));
        let long = TimeWindow::new(Duration::from_secs(7200), 0);
        assert_eq!((long.buckets.len(), long.width), (3600, 2 * S));
    }

    #[test]
    fn time_window_drops_a_bucket_as_it_slides_out() {
        let mut w = Window::new(SlidingWindow::Time(Duration::from_secs(2)), 0);
        w.record(0, ERR);
        w.record(999 * MS, OK);
        assert_eq!(w.totals(S), t(2, 1, 0));
        w.record(S + 500 * MS, SLOW_OK);
        assert_eq!(w.totals(2 * S - 1), t(3, 1, 1));
        // At 2 s the first second's bucket leaves; the call at 1.5 s stays.
        assert_eq!(w.totals(2 * S), t(1, 0, 1));
        // A long idle gap clears everything, however many buckets it spans.
        assert_eq!(w.totals(1_000 * S), t(0, 0, 0));
        assert_eq!(w.record(1_000 * S, ERR), t(1, 1, 0));
    }

    #[test]
    fn time_window_started_late_aligns_to_the_origin() {
        // A window made at 3.7 s (say, when the breaker closed again) holds 3.7 s in the
        // bucket of second 3, which slides out at 3 s + window.
        let mut w = Window::new(SlidingWindow::Time(Duration::from_secs(3)), 3_700 * MS);
        w.record(3_700 * MS, ERR);
        assert_eq!(w.totals(5_999 * MS), t(1, 1, 0));
        assert_eq!(w.totals(6 * S), t(0, 0, 0));
    }

    #[test]
    fn a_verdict_by_counts_is_the_verdict_by_rates() {
        let thresholds = [
            100.0,
            50.0,
            1.0 / 3.0 * 100.0,
            2.0 / 3.0 * 100.0,
            66.67,
            12.5,
            0.1,
            1e-9,
            99.999,
            f64::MIN_POSITIVE,
        ];
        for &failure in &thresholds {
            for &slow in &thresholds {
                let mut verdict = Verdict::new(failure, slow);
                for calls in (1..=300).chain([1 << 20]) {
                    for failed in [0, 1, calls / 3, calls / 2, calls * 2 / 3, calls - 1, calls] {
                        for slow_calls in [0, calls / 2, calls] {
                            let totals = t(calls, failed, slow_calls);
                            let by_rates =
                                totals.failure_rate() >= failure || totals.slow_call_rate() >= slow;
                            assert_eq!(
                                verdict.exceeded(totals),
                                by_rates,
                                "{totals:?} {failure} {slow}"
                            );
                        }
                    }
                }
            }
        }
        // Every count of a small window, on both sides of each threshold.
        for &threshold in &thresholds {
            for calls in 1..=100_u64 {
                let k = fewest(calls, threshold);
                assert!(k <= calls, "a rate of 100 % reaches every threshold");
                assert!(percent(k, calls) >= threshold);
                assert!(k == 0 || percent(k - 1, calls) < threshold);
            }
        }
    }

    #[test]
    fn rates_are_percentages() {
        let totals = t(4, 1, 3);
        assert_eq!(totals.failure_rate(), 25.0);
        assert_eq!(totals.slow_call_rate(), 75.0);
    }
}
