//! A gradient of short against long round-trip times: Netflix's `Gradient2Limit`.

use super::{LimitAlgorithm, Sample, check_limits, check_smoothing, clamp_f64};
use crate::error::ConfigError;

/// How many samples the long average takes the minimum of before it starts smoothing
/// (Netflix's `ExpAvgMeasurement` warm-up window for `Gradient2Limit`).
const WARMUP: usize = 10;

/// A delay-based limit comparing each call's round-trip time (the short RTT) with an
/// exponentially smoothed long-term average of them (the long RTT). The rules and defaults
/// of Netflix's `Gradient2Limit`.
///
/// For each sample, with limit estimate `L`:
/// 1. the long RTT takes in the sample (the minimum of the first 10, then an exponential
///    average over [`long_window`](Gradient2::long_window) samples); if it exceeds twice the
///    short RTT — latency has recovered after a long overload — it is cut by 5% so the
///    limit need not wait for the average to decay;
/// 2. with fewer than `L / 2` calls in flight the limit is left alone (the caller, not the
///    dependency, is what limits the load);
/// 3. `gradient = clamp(tolerance × long / short, 0.5, 1)`, the new estimate is
///    `L × gradient + queue_size`, blended with the old by
///    [`smoothing`](Gradient2::smoothing) and kept within `[min_limit, max_limit]`.
///
/// Drops are not a signal here (Netflix's `Gradient2Limit` ignores them too); wrap an
/// [`Aimd`](super::Aimd) or [`Vegas`](super::Vegas) where timeouts must cut the limit. A
/// sample with a zero `rtt` carries no timing and is ignored.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::limit::{Gradient2, LimitAlgorithm, Sample};
///
/// let mut g = Gradient2::new().initial_limit(20).min_limit(1).smoothing(1.0);
/// let ms = Duration::from_millis;
/// // Steady latency: the gradient is 1, the limit grows by queue_size (4).
/// assert_eq!(g.update(Sample::new(ms(10), 20, false)), 24);
/// // Latency four times the long average (10 ms): the gradient is clamped to 0.5.
/// assert_eq!(g.update(Sample::new(ms(40), 24, false)), 16);
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2 {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    smoothing: f64,
    tolerance: f64,
    queue_size: usize,
    long_window: usize,
    estimate: f64,
    long_rtt: f64,
    long_count: usize,
}

impl Gradient2 {
    /// A gradient limit with Netflix's defaults: initial and minimum 20, maximum 200,
    /// smoothing 0.2, tolerance 1.5, queue size 4, long window 600 samples.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm};
    ///
    /// assert_eq!(Gradient2::new().limit(), 20);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            tolerance: 1.5,
            queue_size: 4,
            long_window: 600,
            estimate: 20.0,
            long_rtt: 0.0,
            long_count: 0,
        }
    }

    /// The limit to start from. Defaults to 20. Setting it also resets the limit in force.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm};
    ///
    /// assert_eq!(Gradient2::new().initial_limit(50).limit(), 50);
    /// ```
    #[must_use]
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.initial_limit = n;
        self.estimate = n as f64;
        self
    }

    /// The floor the limit never drops below. Defaults to 20.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Gradient2;
    ///
    /// let err = Gradient2::new().min_limit(300).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "min_limit");
    /// ```
    #[must_use]
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The ceiling the limit never rises above (Netflix's `maxConcurrency`). Defaults to 200.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm, Sample};
    ///
    /// let mut g = Gradient2::new().initial_limit(20).max_limit(22).smoothing(1.0);
    /// assert_eq!(g.update(Sample::new(Duration::from_millis(5), 20, false)), 22);
    /// ```
    #[must_use]
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// How much of each new estimate replaces the old, in (0, 1]. Defaults to 0.2.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm, Sample};
    ///
    /// let mut g = Gradient2::new().initial_limit(20).smoothing(0.5);
    /// // The estimate 24 is taken half-way: 22.
    /// assert_eq!(g.update(Sample::new(Duration::from_millis(5), 20, false)), 22);
    /// ```
    #[must_use]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How far the short RTT may rise above the long one before the limit shrinks, as a
    /// factor of at least 1 (2.0 accepts a doubling). Defaults to 1.5.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Gradient2;
    ///
    /// let err = Gradient2::new().tolerance(0.9).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "tolerance");
    /// ```
    #[must_use]
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// How much the estimate may grow per update while latency stays low: the calls allowed
    /// to queue. Defaults to 4.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm, Sample};
    ///
    /// let mut g = Gradient2::new().initial_limit(20).queue_size(10).smoothing(1.0);
    /// assert_eq!(g.update(Sample::new(Duration::from_millis(5), 20, false)), 30);
    /// ```
    #[must_use]
    pub fn queue_size(mut self, n: usize) -> Self {
        self.queue_size = n;
        self
    }

    /// How many samples the long RTT averages over (its smoothing factor is
    /// `2 / (long_window + 1)`). Defaults to 600.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Gradient2;
    ///
    /// let err = Gradient2::new().long_window(0).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "long_window");
    /// ```
    #[must_use]
    pub fn long_window(mut self, n: usize) -> Self {
        self.long_window = n;
        self
    }

    /// Checks the settings, naming the bulkhead `name` in the error.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a `min_limit` or `max_limit` of 0, `min_limit`
    /// above `max_limit`, an `initial_limit` outside them, a `smoothing` outside (0, 1] or
    /// NaN, a `tolerance` below 1 or not finite, a `long_window` of 0, or an invalid `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Gradient2;
    ///
    /// assert!(Gradient2::new().validate("db").is_ok());
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        check_limits(name, self.initial_limit, self.min_limit, self.max_limit)?;
        check_smoothing(name, self.smoothing)?;
        if !(self.tolerance.is_finite() && self.tolerance >= 1.0) {
            return Err(ConfigError::new(
                name,
                "tolerance",
                format!(
                    "must be a finite number of at least 1 (got {})",
                    self.tolerance
                ),
            ));
        }
        if self.long_window == 0 {
            return Err(ConfigError::new(
                name,
                "long_window",
                "must be at least 1 (got 0)",
            ));
        }
        Ok(())
    }

    /// The long-term average round-trip time in seconds (0 before the first sample).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm, Sample};
    ///
    /// let mut g = Gradient2::new();
    /// g.update(Sample::new(Duration::from_millis(30), 1, false));
    /// g.update(Sample::new(Duration::from_millis(20), 1, false));
    /// assert_eq!(g.long_rtt(), 0.02); // the warm-up keeps the minimum
    /// ```
    pub fn long_rtt(&self) -> f64 {
        self.long_rtt
    }

    /// Netflix's `ExpAvgMeasurement(long_window, 10)` with its minimum accumulator.
    fn add_long(&mut self, rtt: f64) -> f64 {
        if self.long_count == 0 {
            self.long_count = 1;
            self.long_rtt = rtt;
        } else if self.long_count < WARMUP {
            self.long_count += 1;
            self.long_rtt = self.long_rtt.min(rtt);
        } else {
            let factor = 2.0 / (self.long_window as f64 + 1.0);
            self.long_rtt = self.long_rtt * (1.0 - factor) + rtt * factor;
        }
        self.long_rtt
    }
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self::new()
    }
}

impl LimitAlgorithm for Gradient2 {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        Gradient2::validate(self, name)
    }

    fn limit(&self) -> usize {
        self.estimate as usize
    }

    fn update(&mut self, sample: Sample) -> usize {
        if sample.rtt.is_zero() {
            return self.limit();
        }
        let queue = self.queue_size as f64;
        let short = sample.rtt.as_secs_f64();
        let long = self.add_long(short);

        if long / short > 2.0 {
            self.long_rtt *= 0.95;
        }

        if (sample.in_flight as f64) < self.estimate / 2.0 {
            return self.limit();
        }

        // Never more than halve on one sample (outliers), never grow on the gradient alone.
        // Only an unvalidated NaN tolerance gives a NaN ratio: treat it as no queueing.
        let ratio = self.tolerance * long / short;
        let gradient = if ratio.is_nan() {
            1.0
        } else {
            ratio.clamp(0.5, 1.0)
        };
        let estimate = self.estimate;
        let next = estimate * gradient + queue;
        let next = estimate * (1.0 - self.smoothing) + next * self.smoothing;
        let next = clamp_f64(next, self.min_limit, self.max_limit);
        if next.is_finite() {
            self.estimate = next;
        }
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Netflix's `ExpAvgMeasurementTest.testWarmup`
    /// (concurrency-limits-core/src/test/java/com/netflix/concurrency/limits/limit/ExpAvgMeasurementTest.java):
    /// the warm-up keeps the minimum, then one sample of 100 moves a 100-sample average
    /// from 10 to about 11.78.
    #[test]
    fn long_rtt_warms_up_on_the_minimum() {
        let mut g = Gradient2::new().long_window(100);
        for i in 0..10 {
            let value = g.add_long(f64::from(i + 10));
            assert!((value - 10.0).abs() < 0.01, "sample {i}: {value}");
        }
        let value = g.add_long(100.0);
        assert!((value - 11.7).abs() < 0.1, "{value}");
    }
}
