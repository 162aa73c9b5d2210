//! [`CircuitBreakerConfig`] and [`SlidingWindow`]: resilience4j's settings and defaults,
//! validated in one place.

use std::fmt;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::validate_name;
use crate::error::ConfigError;
use crate::sync::Arc;

/// Which recent calls a [`CircuitBreaker`](crate::CircuitBreaker) judges in its closed state.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{CircuitBreakerConfig, SlidingWindow};
///
/// let by_count = CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(20));
/// let by_time = CircuitBreakerConfig::new().sliding_window(SlidingWindow::Time(Duration::from_secs(10)));
/// assert!(by_count.validate("a").is_ok() && by_time.validate("b").is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlidingWindow {
    /// The last `n` recorded calls (resilience4j's `COUNT_BASED`). At least 1 and at most
    /// [`SlidingWindow::MAX_COUNT`].
    Count(usize),
    /// The calls recorded in the last `d` (resilience4j's `TIME_BASED`). The window is kept
    /// in buckets of one second (of `d / ceil(d in seconds)` when `d` is not a whole number
    /// of seconds; one bucket when it is under a second, at most
    /// [`SlidingWindow::MAX_BUCKETS`] buckets), so a call leaves the window when its bucket
    /// does, between `d - bucket` and `d` after it was recorded. Must not be zero.
    Time(Duration),
}

impl SlidingWindow {
    /// The largest count window: the window keeps one byte per call.
    pub const MAX_COUNT: usize = 1 << 20;

    /// The most buckets a time window is cut into; a longer window gets longer buckets.
    pub const MAX_BUCKETS: u64 = 3600;
}

impl Default for SlidingWindow {
    /// `Count(100)`, resilience4j's default.
    fn default() -> Self {
        Self::Count(100)
    }
}

/// How a [`CircuitBreaker`](crate::CircuitBreaker) decides, with resilience4j's defaults.
///
/// Setters never fail; [`validate`](CircuitBreakerConfig::validate) (called by
/// [`CircuitBreaker::new`](crate::CircuitBreaker::new)) checks the whole configuration at once
/// and names the field at fault.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{CircuitBreakerConfig, SlidingWindow};
///
/// let config = CircuitBreakerConfig::new()
///     .failure_rate_threshold(25.0)
///     .sliding_window(SlidingWindow::Count(20))
///     .minimum_calls(10)
///     .wait_in_open(Duration::from_secs(5))
///     .half_open_calls(3);
/// assert!(config.validate("payment").is_ok());
/// assert_eq!(config.half_open_calls_value(), 3);
/// ```
#[derive(Clone)]
pub struct CircuitBreakerConfig {
    pub(crate) failure_rate_threshold: f64,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) slow_call_duration: Duration,
    pub(crate) sliding_window: SlidingWindow,
    pub(crate) minimum_calls: usize,
    pub(crate) wait_in_open: Duration,
    /// `(multiplier, max)`: the n-th opening in a row waits `wait_in_open * multiplier^(n-1)`,
    /// at most `max`.
    pub(crate) growing_wait: Option<(f64, Duration)>,
    pub(crate) half_open_calls: usize,
    pub(crate) max_wait_in_half_open: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether `clock` is the default [`SystemClock`] rather than one set by
    /// [`clock`](Self::clock): only then may the breaker time calls on the coarse clock.
    pub(crate) default_clock: bool,
}

impl CircuitBreakerConfig {
    /// The most probes a half-open breaker admits (the count shares one atomic word with
    /// the state).
    pub const MAX_HALF_OPEN_CALLS: usize = (1 << 24) - 1;

    /// resilience4j's defaults: failure rate threshold 50 %, slow-call rate threshold 100 %,
    /// slow calls longer than 60 s, a count window of 100 calls, judged once 100 are in it,
    /// 60 s in the open state, 10 probes in the half-open state with no limit on how long
    /// they may take, and the system clock.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{CircuitBreakerConfig, SlidingWindow};
    ///
    /// let config = CircuitBreakerConfig::new();
    /// assert_eq!(config.failure_rate_threshold_value(), 50.0);
    /// assert_eq!(config.sliding_window_value(), SlidingWindow::Count(100));
    /// assert_eq!(config.wait_in_open_value(), Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Duration::from_secs(60),
            sliding_window: SlidingWindow::Count(100),
            minimum_calls: 100,
            wait_in_open: Duration::from_secs(60),
            growing_wait: None,
            half_open_calls: 10,
            max_wait_in_half_open: None,
            clock: Arc::new(SystemClock),
            default_clock: true,
        }
    }

    /// The failure rate, in percent of the calls in the window, at or above which the
    /// breaker opens.
    ///
    /// Defaults to 50. Must be in (0, 100].
    #[must_use]
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate_threshold = percent;
        self
    }

    /// The rate of slow calls, in percent of the calls in the window, at or above which the
    /// breaker opens (whether they succeeded or not).
    ///
    /// Defaults to 100: only a window of nothing but slow calls opens it. Must be in (0, 100].
    #[must_use]
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.slow_call_rate_threshold = percent;
        self
    }

    /// A call that takes strictly longer than this, measured from `try_acquire` to its
    /// outcome on the breaker's clock, is slow.
    ///
    /// Defaults to 60 seconds. Must not be zero.
    ///
    /// With the default clock, on Linux, a threshold at least a thousand kernel ticks long
    /// (4 s at the common 250 Hz) is timed on `CLOCK_MONOTONIC_COARSE`, which is read for a
    /// fraction of what [`Instant::now`](std::time::Instant::now) costs and steps once a
    /// tick: a call is then judged slow to within a tick, a thousandth of the threshold.
    /// Shorter thresholds, other systems and any clock set by [`clock`](Self::clock) are
    /// timed exactly.
    #[must_use]
    pub fn slow_call_duration(mut self, d: Duration) -> Self {
        self.slow_call_duration = d;
        self
    }

    /// The window of recent calls judged in the closed (and metrics-only) state.
    ///
    /// Defaults to [`SlidingWindow::Count(100)`](SlidingWindow::Count).
    #[must_use]
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.sliding_window = window;
        self
    }

    /// How many calls the window must hold before rates are computed and judged. With a
    /// count window, a minimum above the window's size means the window's size.
    ///
    /// Defaults to 100. Must be at least 1.
    #[must_use]
    pub fn minimum_calls(mut self, n: usize) -> Self {
        self.minimum_calls = n;
        self
    }

    /// How long the breaker stays open before the next `try_acquire` moves it to half-open.
    ///
    /// Defaults to 60 seconds. Must not be zero.
    #[must_use]
    pub fn wait_in_open(mut self, d: Duration) -> Self {
        self.wait_in_open = d;
        self
    }

    /// Makes the wait in the open state grow while probes keep failing: the n-th time in a
    /// row the breaker opens (counting from the last time it closed) it waits
    /// `wait_in_open * multiplier^(n-1)`, at most `max` — resilience4j's
    /// `waitIntervalFunctionInOpenState` with an exponential interval.
    ///
    /// Defaults to none: every opening waits `wait_in_open`. `multiplier` must be finite
    /// and at least 1; `max` must not be below `wait_in_open`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::CircuitBreakerConfig;
    ///
    /// // 5 s, 10 s, 20 s, 40 s, then 60 s for as long as the probes fail.
    /// let config = CircuitBreakerConfig::new()
    ///     .wait_in_open(Duration::from_secs(5))
    ///     .growing_wait_in_open(2.0, Duration::from_secs(60));
    /// assert!(config.validate("search").is_ok());
    /// ```
    #[must_use]
    pub fn growing_wait_in_open(mut self, multiplier: f64, max: Duration) -> Self {
        self.growing_wait = Some((multiplier, max));
        self
    }

    /// How many probe calls the half-open state admits, exactly; it decides on their
    /// outcomes once all have reported.
    ///
    /// Defaults to 10. Must be in 1..=[`MAX_HALF_OPEN_CALLS`](Self::MAX_HALF_OPEN_CALLS).
    #[must_use]
    pub fn half_open_calls(mut self, n: usize) -> Self {
        self.half_open_calls = n;
        self
    }

    /// How long the breaker may stay half-open waiting for its probes; after that, the
    /// next `try_acquire` opens it again (a probe that never reports cannot keep it
    /// half-open for ever).
    ///
    /// Defaults to none: half-open until the probes decide. Must not be zero.
    #[must_use]
    pub fn max_wait_in_half_open(mut self, d: Duration) -> Self {
        self.max_wait_in_half_open = Some(d);
        self
    }

    /// The clock the breaker measures calls and waits on.
    ///
    /// Defaults to [`SystemClock`]; tests pass a [`ManualClock`](crate::ManualClock). A
    /// clock set here is read for every measurement; only the default may time calls on the
    /// system's coarse clock (see [`slow_call_duration`](Self::slow_call_duration)).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self.default_clock = false;
        self
    }

    /// The configured failure rate threshold, in percent.
    pub fn failure_rate_threshold_value(&self) -> f64 {
        self.failure_rate_threshold
    }

    /// The configured slow-call rate threshold, in percent.
    pub fn slow_call_rate_threshold_value(&self) -> f64 {
        self.slow_call_rate_threshold
    }

    /// The configured slow-call duration.
    pub fn slow_call_duration_value(&self) -> Duration {
        self.slow_call_duration
    }

    /// The configured sliding window.
    pub fn sliding_window_value(&self) -> SlidingWindow {
        self.sliding_window
    }

    /// The configured minimum number of calls.
    pub fn minimum_calls_value(&self) -> usize {
        self.minimum_calls
    }

    /// The configured wait in the open state (the first, when it grows).
    pub fn wait_in_open_value(&self) -> Duration {
        self.wait_in_open
    }

    /// The configured number of half-open probes.
    pub fn half_open_calls_value(&self) -> usize {
        self.half_open_calls
    }

    /// The configured longest stay in the half-open state, if any.
    pub fn max_wait_in_half_open_value(&self) -> Option<Duration> {
        self.max_wait_in_half_open
    }

    /// The number of calls the window must hold before rates are judged: `minimum_calls`,
    /// or the size of a smaller count window.
    pub(crate) fn effective_minimum(&self) -> usize {
        match self.sliding_window {
            SlidingWindow::Count(n) => self.minimum_calls.min(n),
            SlidingWindow::Time(_) => self.minimum_calls,
        }
    }

    /// The wait of the `attempt`-th opening in a row (1 for the first).
    pub(crate) fn wait_for_attempt(&self, attempt: u32) -> Duration {
        let Some((multiplier, max)) = self.growing_wait else {
            return self.wait_in_open;
        };
        let exponent = attempt.saturating_sub(1);
        // powi of a multiplier >= 1 only grows; once it passes `max` (or overflows to
        // infinity) the cap applies, so the float never reaches `Duration` unbounded.
        let factor = multiplier.powi(i32::try_from(exponent).unwrap_or(i32::MAX));
        // In nanoseconds, rounded, so that 5 s × 1.5 is 7.5 s exactly.
        let nanos = self.wait_in_open.as_nanos() as f64 * factor;
        if !nanos.is_finite() || nanos >= max.as_nanos() as f64 || nanos >= u64::MAX as f64 {
            max
        } else {
            Duration::from_nanos(nanos.round() as u64).min(max)
        }
    }

    /// Checks the configuration for a breaker called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the first invalid field: an empty or NUL-bearing
    /// `name`; a rate threshold outside (0, 100] (or NaN); a zero `slow_call_duration`,
    /// `wait_in_open` or `max_wait_in_half_open`; a count window of 0 or above
    /// [`SlidingWindow::MAX_COUNT`], or a zero time window; `minimum_calls` of 0;
    /// `half_open_calls` of 0 or above [`MAX_HALF_OPEN_CALLS`](Self::MAX_HALF_OPEN_CALLS);
    /// a growing wait whose multiplier is below 1 or not finite, or whose cap is below
    /// `wait_in_open`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::CircuitBreakerConfig;
    ///
    /// let err = CircuitBreakerConfig::new().failure_rate_threshold(0.0).validate("db").unwrap_err();
    /// assert_eq!(err.bulkhead(), "db");
    /// assert_eq!(err.field(), "failure_rate_threshold");
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        validate_name(name)?;
        check_rate(name, "failure_rate_threshold", self.failure_rate_threshold)?;
        check_rate(
            name,
            "slow_call_rate_threshold",
            self.slow_call_rate_threshold,
        )?;
        if self.slow_call_duration.is_zero() {
            return Err(ConfigError::new(
                name,
                "slow_call_duration",
                "must not be zero",
            ));
        }
        match self.sliding_window {
            SlidingWindow::Count(0) => {
                return Err(ConfigError::new(
                    name,
                    "sliding_window",
                    "must hold at least 1 call (got Count(0))",
                ));
            }
            SlidingWindow::Count(n) if n > SlidingWindow::MAX_COUNT => {
                return Err(ConfigError::new(
                    name,
                    "sliding_window",
                    format!(
                        "must hold at most {} calls (got Count({n}))",
                        SlidingWindow::MAX_COUNT
                    ),
                ));
            }
            SlidingWindow::Time(d) if d.is_zero() => {
                return Err(ConfigError::new(
                    name,
                    "sliding_window",
                    "must not be zero (got Time(0ns))",
                ));
            }
            _ => {}
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new(
                name,
                "minimum_calls",
                "must be at least 1 (got 0)",
            ));
        }
        if self.wait_in_open.is_zero() {
            return Err(ConfigError::new(name, "wait_in_open", "must not be zero"));
        }
        if let Some((multiplier, max)) = self.growing_wait {
            if !multiplier.is_finite() || multiplier < 1.0 {
                return Err(ConfigError::new(
                    name,
                    "growing_wait_in_open",
                    format!("multiplier must be finite and at least 1 (got {multiplier})"),
                ));
            }
            if max < self.wait_in_open {
                return Err(ConfigError::new(
                    name,
                    "growing_wait_in_open",
                    format!(
                        "max must not be below wait_in_open ({:?}) (got {max:?})",
                        self.wait_in_open
                    ),
                ));
            }
        }
        if self.half_open_calls == 0 || self.half_open_calls > Self::MAX_HALF_OPEN_CALLS {
            return Err(ConfigError::new(
                name,
                "half_open_calls",
                format!(
                    "must be in 1..={} (got {})",
                    Self::MAX_HALF_OPEN_CALLS,
                    self.half_open_calls
                ),
            ));
        }
        if self.max_wait_in_half_open.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                name,
                "max_wait_in_half_open",
                "must not be zero",
            ));
        }
        Ok(())
    }
}

fn check_rate(name: &str, field: &'static str, percent: f64) -> Result<(), ConfigError> {
    // Written so that NaN fails too: every comparison with NaN is false.
    if percent > 0.0 && percent <= 100.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            name,
            field,
            format!("must be in (0, 100] percent (got {percent})"),
        ))
    }
}

impl Default for CircuitBreakerConfig {
    /// The same as [`CircuitBreakerConfig::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("slow_call_rate_threshold", &self.slow_call_rate_threshold)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("sliding_window", &self.sliding_window)
            .field("minimum_calls", &self.minimum_calls)
            .field("wait_in_open", &self.wait_in_open)
            .field("growing_wait", &self.growing_wait)
            .field("half_open_calls", &self.half_open_calls)
            .field("max_wait_in_half_open", &self.max_wait_in_half_open)
            .field("clock", &"<clock>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_resilience4j_s() {
        let c = CircuitBreakerConfig::new();
        assert_eq!(c.failure_rate_threshold, 50.0);
        assert_eq!(c.slow_call_rate_threshold, 100.0);
        assert_eq!(c.slow_call_duration, Duration::from_secs(60));
        assert_eq!(c.sliding_window, SlidingWindow::Count(100));
        assert_eq!(c.minimum_calls, 100);
        assert_eq!(c.wait_in_open, Duration::from_secs(60));
        assert_eq!(c.half_open_calls, 10);
        assert_eq!(c.max_wait_in_half_open, None);
        assert!(c.validate("x").is_ok());
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = CircuitBreakerConfig::new;
        let cases: Vec<(CircuitBreakerConfig, &str)> = vec![
            (base().failure_rate_threshold(0.0), "failure_rate_threshold"),
            (
                base().failure_rate_threshold(100.5),
                "failure_rate_threshold",
            ),
            (
                base().failure_rate_threshold(f64::NAN),
                "failure_rate_threshold",
            ),
            (
                base().slow_call_rate_threshold(-1.0),
                "slow_call_rate_threshold",
            ),
            (
                base().slow_call_duration(Duration::ZERO),
                "slow_call_duration",
            ),
            (
                base().sliding_window(SlidingWindow::Count(0)),
                "sliding_window",
            ),
            (
                base().sliding_window(SlidingWindow::Count(SlidingWindow::MAX_COUNT + 1)),
                "sliding_window",
            ),
            (
                base().sliding_window(SlidingWindow::Time(Duration::ZERO)),
                "sliding_window",
            ),
            (base().minimum_calls(0), "minimum_calls"),
            (base().wait_in_open(Duration::ZERO), "wait_in_open"),
            (
                base().growing_wait_in_open(0.5, Duration::from_secs(600)),
                "growing_wait_in_open",
            ),
            (
                base().growing_wait_in_open(f64::INFINITY, Duration::from_secs(600)),
                "growing_wait_in_open",
            ),
            (
                base().growing_wait_in_open(2.0, Duration::from_secs(1)),
                "growing_wait_in_open",
            ),
            (base().half_open_calls(0), "half_open_calls"),
            (
                base().half_open_calls(CircuitBreakerConfig::MAX_HALF_OPEN_CALLS + 1),
                "half_open_calls",
            ),
            (
                base().max_wait_in_half_open(Duration::ZERO),
                "max_wait_in_half_open",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate("svc").expect_err(field);
            assert_eq!(err.field(), field, "{err}");
            assert_eq!(err.bulkhead(), "svc");
            assert!(err.to_string().contains("'svc'"), "{err}");
        }
        assert_eq!(base().validate("").unwrap_err().field(), "name");
    }

    #[test]
    fn effective_minimum_is_capped_by_a_count_window() {
        let c = CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(5));
        assert_eq!(c.effective_minimum(), 5);
        let t = c.sliding_window(SlidingWindow::Time(Duration::from_secs(5)));
        assert_eq!(t.effective_minimum(), 100);
    }

    #[test]
    fn growing_wait_multiplies_and_caps() {
        let c = CircuitBreakerConfig::new()
            .wait_in_open(Duration::from_secs(5))
            .growing_wait_in_open(1.5, Duration::from_secs(12));
        assert_eq!(c.wait_for_attempt(1), Duration::from_secs(5));
        assert_eq!(c.wait_for_attempt(2), Duration::from_millis(7_500));
        assert_eq!(c.wait_for_attempt(3), Duration::from_millis(11_250));
        assert_eq!(c.wait_for_attempt(4), Duration::from_secs(12));
        assert_eq!(c.wait_for_attempt(u32::MAX), Duration::from_secs(12));
        let fixed = CircuitBreakerConfig::new();
        assert_eq!(fixed.wait_for_attempt(7), Duration::from_secs(60));
    }
}
