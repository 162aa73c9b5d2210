//! [`Backoff`] and [`Jitter`]: how long a retry waits.

use std::time::Duration;

use crate::error::ConfigError;

/// How long to wait before each retry, before [`Jitter`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::Backoff;
///
/// let b = Backoff::exponential(Duration::from_millis(100), 2.0).max(Duration::from_millis(350));
/// assert_eq!(b.delay(1), Duration::from_millis(100));
/// assert_eq!(b.delay(2), Duration::from_millis(200));
/// assert_eq!(b.delay(3), Duration::from_millis(350)); // 400, capped
/// assert_eq!(Backoff::fixed(Duration::from_secs(1)).delay(9), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub(super) initial: Duration,
    multiplier: f64,
    pub(super) max: Option<Duration>,
}

impl Backoff {
    /// The same wait before every retry. Must not be zero.
    #[must_use]
    pub fn fixed(delay: Duration) -> Self {
        Self {
            initial: delay,
            multiplier: 1.0,
            max: None,
        }
    }

    /// `initial` before the first retry, multiplied by `multiplier` before each next one
    /// (resilience4j's `IntervalFunction.ofExponentialBackoff`). `initial` must not be zero;
    /// `multiplier` must be finite and at least 1.
    #[must_use]
    pub fn exponential(initial: Duration, multiplier: f64) -> Self {
        Self {
            initial,
            multiplier,
            max: None,
        }
    }

    /// The longest wait, however many retries came before.
    ///
    /// Defaults to none. Must not be below the initial delay.
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }

    /// The wait before retry number `retry` (1 for the first retry, that is the second
    /// attempt), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.max.unwrap_or(Duration::MAX);
        if self.multiplier == 1.0 {
            return self.initial.min(cap);
        }
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        // In nanoseconds, rounded: 10 ms × 3² is 90 ms exactly, not 89.999999 ms.
        let nanos = self.initial.as_nanos() as f64 * self.multiplier.powi(exponent);
        if !nanos.is_finite() || nanos >= cap.as_nanos() as f64 || nanos >= u64::MAX as f64 {
            return cap;
        }
        Duration::from_nanos(nanos.round() as u64).min(cap)
    }

    pub(super) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if self.initial.is_zero() {
            return Err(ConfigError::new(
                name,
                "backoff",
                "initial delay must not be zero (immediate retries are a retry storm)",
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(ConfigError::new(
                name,
                "backoff",
                format!(
                    "multiplier must be finite and at least 1 (got {})",
                    self.multiplier
                ),
            ));
        }
        if let Some(max) = self.max.filter(|&max| max < self.initial) {
            return Err(ConfigError::new(
                name,
                "backoff",
                format!(
                    "max must not be below the initial delay ({:?}) (got {max:?})",
                    self.initial
                ),
            ));
        }
        Ok(())
    }
}

/// How much randomness to add to each wait, so that callers that failed together do not
/// retry together. `None`, `Full`, `Equal` and `Decorrelated` are the formulas of AWS's
/// "Exponential Backoff And Jitter"; `Proportional` is resilience4j's randomized interval.
///
/// With `d` the [`Backoff`]'s delay for this retry:
///
/// | jitter | wait |
/// | --- | --- |
/// | `None` | `d` |
/// | `Full` | uniform in `[0, d]` |
/// | `Equal` | `d/2` + uniform in `[0, d/2]` |
/// | `Decorrelated` | uniform in `[initial, 3 × previous wait]`, at most the back-off's `max` |
/// | `Proportional(f)` | uniform in `[d × (1 − f), d × (1 + f)]`, `f` in `[0, 1]` |
///
/// `Decorrelated` uses only the back-off's initial delay (as AWS's `base`, and as the first
/// "previous wait") and its `max` (as `cap`); it grows by itself.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::{Backoff, Jitter, Retry};
///
/// let retry = Retry::new(5)
///     .backoff(Backoff::exponential(Duration::from_millis(100), 2.0).max(Duration::from_secs(2)))
///     .jitter(Jitter::Full);
/// assert!(retry.validate("search").is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: exactly the back-off's delay.
    #[default]
    None,
    /// AWS's "Full Jitter": anywhere between zero and the delay.
    Full,
    /// AWS's "Equal Jitter": half the delay, plus up to half again.
    Equal,
    /// AWS's "Decorrelated Jitter": up to three times the previous wait.
    Decorrelated,
    /// resilience4j's randomization factor: the delay, give or take this fraction of it.
    Proportional(f64),
}
