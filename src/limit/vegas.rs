//! A delay-based limit after TCP Vegas: Netflix's `VegasLimit`.

use std::time::Duration;

use super::{LimitAlgorithm, Sample, check_limits, check_smoothing, clamp_f64};
use crate::error::ConfigError;

/// How many samples, in multiples of the limit, pass between probes for a new no-load
/// round-trip time (Netflix's `probeMultiplier` default).
const PROBE_MULTIPLIER: f64 = 30.0;

/// The probe jitter's seed when none is given: any fixed odd constant will do; this is the
/// golden-ratio increment SplitMix64 itself uses.
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// A delay-based limit after TCP Vegas: it keeps the least round-trip time seen as the
/// no-load time, estimates the queue as `ceil(L × (1 − rtt_noload / rtt))`, and grows the
/// limit `L` while the queue is short and shrinks it when the queue is long. The rules and
/// defaults of Netflix's `VegasLimit`.
///
/// With `log(L)` standing for `max(1, floor(log10 L))` (Netflix's `Log10RootFunction`):
/// - a dropped call: `L − log(L)`;
/// - fewer than half the limit in flight: unchanged (no evidence either way);
/// - queue `<= log(L)`: `L + beta` (aggressive growth while nothing queues);
/// - queue `< alpha`: `L + log(L)`;
/// - queue `> beta`: `L − log(L)`;
/// - otherwise unchanged;
///
/// and the new value, kept within `[min_limit, max_limit]`, is blended with the old by
/// [`smoothing`](Vegas::smoothing). `alpha` defaults to `3 × log(L)` and `beta` to
/// `6 × log(L)`; [`alpha`](Vegas::alpha) and [`beta`](Vegas::beta) fix them.
///
/// The first sample only records the no-load time, and so does any sample faster than it.
/// A sample with a zero `rtt` carries no timing and is ignored (Netflix rejects it).
///
/// # Probing, deterministically
///
/// The no-load time can only fall, so a dependency that became slower for good would be
/// seen as forever queueing. Like Netflix, every `jitter × 30 × L` samples the limit takes
/// the current sample's time as the new no-load time, with `jitter` drawn from [0.5, 1) so
/// that many limiters do not probe in step. Netflix draws it from a thread-local random
/// source; here it comes from a small seeded generator (SplitMix64), so a given seed and
/// sample sequence always give the same limits. The seed is fixed unless
/// [`probe_seed`](Vegas::probe_seed) sets one; give each limiter its own to spread the probes.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::limit::{LimitAlgorithm, Sample, Vegas};
///
/// let mut vegas = Vegas::new().initial_limit(10).max_limit(20).alpha(3).beta(6);
/// let ms = Duration::from_millis;
/// assert_eq!(vegas.update(Sample::new(ms(10), 10, false)), 10); // learns the no-load time
/// assert_eq!(vegas.update(Sample::new(ms(10), 11, false)), 16); // no queue: + beta
/// assert_eq!(vegas.update(Sample::new(ms(50), 16, false)), 15); // long queue: − log(16)
/// ```
#[derive(Debug, Clone)]
pub struct Vegas {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    alpha: Option<usize>,
    beta: Option<usize>,
    smoothing: f64,
    estimate: f64,
    rtt_noload: Duration,
    probe_count: usize,
    probe_jitter: f64,
    rng: u64,
}

impl Vegas {
    /// A Vegas limit with Netflix's defaults: initial 20, minimum 1, maximum 1000, smoothing
    /// 1.0, `alpha` and `beta` scaled with the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{LimitAlgorithm, Vegas};
    ///
    /// assert_eq!(Vegas::new().limit(), 20);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        let mut vegas = Self {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            alpha: None,
            beta: None,
            smoothing: 1.0,
            estimate: 20.0,
            rtt_noload: Duration::ZERO,
            probe_count: 0,
            probe_jitter: 0.0,
            rng: DEFAULT_SEED,
        };
        vegas.reset_probe_jitter();
        vegas
    }

    /// The limit to start from. Defaults to 20. Setting it also resets the limit in force.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{LimitAlgorithm, Vegas};
    ///
    /// assert_eq!(Vegas::new().initial_limit(10).limit(), 10);
    /// ```
    #[must_use]
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.initial_limit = n;
        self.estimate = n as f64;
        self
    }

    /// The floor the limit never drops below. Defaults to 1 (Netflix's fixed floor).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{LimitAlgorithm, Sample, Vegas};
    ///
    /// let mut vegas = Vegas::new().initial_limit(5).min_limit(5);
    /// vegas.update(Sample::new(Duration::from_millis(10), 5, false));
    /// assert_eq!(vegas.update(Sample::new(Duration::from_millis(10), 5, true)), 5);
    /// ```
    #[must_use]
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The ceiling the limit never rises above (Netflix's `maxConcurrency`). Defaults to 1000.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{LimitAlgorithm, Sample, Vegas};
    ///
    /// let mut vegas = Vegas::new().initial_limit(10).max_limit(12);
    /// vegas.update(Sample::new(Duration::from_millis(10), 10, false));
    /// assert_eq!(vegas.update(Sample::new(Duration::from_millis(10), 10, false)), 12);
    /// ```
    #[must_use]
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// Fixes `alpha`, the queue length below which the limit grows. Defaults to
    /// `3 × log(L)`, scaled with the limit `L`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Vegas;
    ///
    /// assert!(Vegas::new().alpha(3).beta(6).validate("db").is_ok());
    /// ```
    #[must_use]
    pub fn alpha(mut self, n: usize) -> Self {
        self.alpha = Some(n);
        self
    }

    /// Fixes `beta`, the queue length above which the limit shrinks (and the step of the
    /// aggressive growth while nothing queues). Defaults to `6 × log(L)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Vegas;
    ///
    /// let err = Vegas::new().alpha(6).beta(3).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "beta");
    /// ```
    #[must_use]
    pub fn beta(mut self, n: usize) -> Self {
        self.beta = Some(n);
        self
    }

    /// How much of each new estimate replaces the old, in (0, 1]. Defaults to 1.0 (the new
    /// estimate entirely).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{LimitAlgorithm, Sample, Vegas};
    ///
    /// let mut vegas = Vegas::new().initial_limit(100).max_limit(200).smoothing(0.5);
    /// vegas.update(Sample::new(Duration::from_millis(10), 100, false));
    /// // Long queue: the estimate is 100 − 2 = 98, and half of the step is taken.
    /// assert_eq!(vegas.update(Sample::new(Duration::from_millis(20), 100, false)), 99);
    /// ```
    #[must_use]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Seeds the generator of the probe jitter (see "Probing, deterministically" above).
    /// Defaults to a fixed seed, the same for every limiter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{LimitAlgorithm, Sample, Vegas};
    ///
    /// let run = |seed| {
    ///     let mut vegas = Vegas::new().probe_seed(seed);
    ///     (1..2_000u64)
    ///         .map(|i| vegas.update(Sample::new(Duration::from_micros(1_000 + i % 7), 20, false)))
    ///         .collect::<Vec<_>>()
    /// };
    /// assert_eq!(run(7), run(7)); // the same seed, the same limits
    /// ```
    #[must_use]
    pub fn probe_seed(mut self, seed: u64) -> Self {
        self.rng = seed;
        self.reset_probe_jitter();
        self
    }

    /// Checks the settings, naming the bulkhead `name` in the error.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a `min_limit` or `max_limit` of 0, `min_limit`
    /// above `max_limit`, an `initial_limit` outside them, a `smoothing` outside (0, 1] or
    /// NaN, an `alpha` or `beta` of 0, `alpha` above `beta`, or an invalid `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Vegas;
    ///
    /// let err = Vegas::new().smoothing(f64::NAN).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "smoothing");
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        check_limits(name, self.initial_limit, self.min_limit, self.max_limit)?;
        check_smoothing(name, self.smoothing)?;
        if self.alpha == Some(0) {
            return Err(ConfigError::new(
                name,
                "alpha",
                "must be at least 1 (got 0)",
            ));
        }
        if self.beta == Some(0) {
            return Err(ConfigError::new(name, "beta", "must be at least 1 (got 0)"));
        }
        if let (Some(alpha), Some(beta)) = (self.alpha, self.beta) {
            if alpha > beta {
                return Err(ConfigError::new(
                    name,
                    "beta",
                    format!("must not be below alpha ({alpha}) (got {beta})"),
                ));
            }
        }
        Ok(())
    }

    /// The no-load round-trip time in use: the least seen since the last probe (zero before
    /// the first sample).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{LimitAlgorithm, Sample, Vegas};
    ///
    /// let mut vegas = Vegas::new();
    /// vegas.update(Sample::new(Duration::from_millis(4), 1, false));
    /// vegas.update(Sample::new(Duration::from_millis(3), 1, false));
    /// assert_eq!(vegas.rtt_noload(), Duration::from_millis(3));
    /// ```
    pub fn rtt_noload(&self) -> Duration {
        self.rtt_noload
    }

    /// SplitMix64 (Steele, Lea and Flood): one 64-bit state word, good enough for a jitter.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn reset_probe_jitter(&mut self) {
        // The top 53 bits as a fraction in [0, 1), mapped onto [0.5, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.probe_jitter = 0.5 + 0.5 * unit;
    }

    fn should_probe(&self) -> bool {
        self.probe_jitter * PROBE_MULTIPLIER * self.estimate <= self.probe_count as f64
    }
}

/// Netflix's `Log10RootFunction` (with the later fix that uses log10 above 1000 too):
/// `max(1, floor(log10 n))`.
fn log10_root(n: usize) -> usize {
    if n == 0 {
        1
    } else {
        (n.ilog10() as usize).max(1)
    }
}

impl Default for Vegas {
    fn default() -> Self {
        Self::new()
    }
}

impl LimitAlgorithm for Vegas {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        Vegas::validate(self, name)
    }

    fn limit(&self) -> usize {
        // Netflix truncates its fractional estimate the same way.
        self.estimate as usize
    }

    fn update(&mut self, sample: Sample) -> usize {
        let rtt = sample.rtt;
        if rtt.is_zero() {
            return self.limit();
        }
        self.probe_count = self.probe_count.saturating_add(1);
        if self.should_probe() {
            self.reset_probe_jitter();
            self.probe_count = 0;
            self.rtt_noload = rtt;
            return self.limit();
        }
        if self.rtt_noload.is_zero() || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return self.limit();
        }

        let estimate = self.estimate;
        let current = self.limit();
        // rtt >= rtt_noload > 0 here, so the ratio lies in (0, 1] and the queue is >= 0.
        let ratio = self.rtt_noload.as_secs_f64() / rtt.as_secs_f64();
        let queue = (estimate * (1.0 - ratio)).ceil() as usize;
        let log = log10_root(current);

        let next = if sample.dropped {
            estimate - log as f64
        } else if (sample.in_flight as f64) * 2.0 < estimate {
            return current;
        } else {
            let alpha = self.alpha.unwrap_or(3 * log);
            let beta = self.beta.unwrap_or(6 * log);
            if queue <= log {
                estimate + beta as f64
            } else if queue < alpha {
                estimate + log as f64
            } else if queue > beta {
                estimate - log as f64
            } else {
                return current;
            }
        };
        let next = clamp_f64(next, self.min_limit, self.max_limit);
        let next = (1.0 - self.smoothing) * estimate + self.smoothing * next;
        // Netflix clamps only before smoothing; a blend of two values within the bounds is
        // within them too, except by rounding (0.9 × 1 + 0.1 × 1 may land a hair below 1,
        // which truncates to 0), so clamp again.
        let next = clamp_f64(next, self.min_limit, self.max_limit);
        // Only a NaN smoothing (rejected by `validate`) could make this non-finite.
        if next.is_finite() {
            self.estimate = next;
        }
        self.limit()
    }
}
