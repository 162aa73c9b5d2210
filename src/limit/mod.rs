//! Adaptive concurrency limits: algorithms that learn how many calls a dependency can take at
//! once from how long its calls take and whether they fail.
//!
//! A fixed bulkhead size is a guess made at start-up. A [`LimitAlgorithm`] revises that guess
//! from each finished call, reported as a [`Sample`] (its round-trip time, the calls in flight
//! when it finished, and whether it was dropped: timed out, rejected downstream, overloaded).
//! The rules and defaults are those of Netflix's
//! [concurrency-limits](https://github.com/Netflix/concurrency-limits) library, re-expressed in
//! Rust, so that the sequences its unit tests assert hold here too:
//!
//! - [`Aimd`] (Netflix's `AIMDLimit`): loss based. One more per healthy call while the limit is
//!   in use, a multiplicative cut on a drop or a call slower than a timeout.
//! - [`Vegas`] (`VegasLimit`): delay based, after TCP Vegas. Estimates the queue from the
//!   minimum (no-load) round-trip time and grows or shrinks to keep it small.
//! - [`Gradient2`] (`Gradient2Limit`): delay based, comparing each call's time with a long,
//!   exponentially smoothed average; tolerant of bursty latencies.
//! - [`Windowed`] (`WindowedLimit`): wraps any of them (or your own) so that samples are
//!   aggregated per time window — the average or a percentile of the window's times — and the
//!   inner algorithm updates once per window rather than once per call.
//!
//! The algorithms are pure: they hold no lock and start no thread. A bulkhead drives one
//! when it is made adaptive ([`PoolConfig::adaptive`](crate::PoolConfig::adaptive),
//! [`SemaphoreConfig::adaptive`](crate::SemaphoreConfig::adaptive)): it feeds a sample per
//! finished call and runs at most the algorithm's limit of calls at once. Inside a call,
//! [`report_overload`] tells it the dependency pushed back (an HTTP 429 or 503).
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use bulkheads::limit::{Aimd, LimitAlgorithm, Sample};
//!
//! let mut aimd = Aimd::new().initial_limit(10).min_limit(1).max_limit(100);
//! aimd.validate("inventory")?;
//! // A healthy call while at least half the limit was in use: one more.
//! assert_eq!(aimd.update(Sample::new(Duration::from_millis(3), 10, false)), 11);
//! // A dropped call: cut by the backoff ratio (0.9), rounded down.
//! assert_eq!(aimd.update(Sample::new(Duration::from_millis(3), 10, true)), 9);
//! # Ok::<(), bulkheads::ConfigError>(())
//! ```

use std::time::Duration;

use crate::error::ConfigError;

mod aimd;
mod control;
mod gradient2;
mod vegas;
mod window;

pub use aimd::Aimd;
pub use control::report_overload;
pub use gradient2::Gradient2;
pub use vegas::Vegas;
pub use window::{Aggregate, Windowed};

pub(crate) use control::{SharedLimit, enter_call, sample};

/// An algorithm that revises a concurrency limit from the outcome of each finished call.
///
/// Implement it to plug your own rule into [`Windowed`] (and, later, into the bulkheads).
/// `update` is called once per sample, in the order the calls finished; it must not panic for
/// any sample, and should keep its limit at least 1.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::limit::{LimitAlgorithm, Sample};
///
/// /// Halve on a drop, otherwise keep the limit.
/// struct Halve(usize);
///
/// impl LimitAlgorithm for Halve {
///     fn limit(&self) -> usize {
///         self.0
///     }
///     fn update(&mut self, sample: Sample) -> usize {
///         if sample.dropped {
///             self.0 = (self.0 / 2).max(1);
///         }
///         self.0
///     }
/// }
///
/// let mut halve = Halve(8);
/// assert_eq!(halve.update(Sample::new(Duration::from_millis(1), 8, true)), 4);
/// assert_eq!(halve.limit(), 4);
/// ```
pub trait LimitAlgorithm: Send + 'static {
    /// The limit in force: how many calls may be in flight at once.
    fn limit(&self) -> usize;

    /// Takes one finished call into account and returns the limit now in force.
    fn update(&mut self, sample: Sample) -> usize;

    /// Checks the algorithm's settings for a bulkhead called `name`; a bulkhead made
    /// adaptive with it calls this when its configuration is validated.
    ///
    /// Defaults to accepting any settings.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the invalid field.
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let _ = name;
        Ok(())
    }
}

impl<L: LimitAlgorithm + ?Sized> LimitAlgorithm for Box<L> {
    fn limit(&self) -> usize {
        (**self).limit()
    }

    fn update(&mut self, sample: Sample) -> usize {
        (**self).update(sample)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        (**self).validate(name)
    }
}

/// One finished call, as a [`LimitAlgorithm`] sees it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::limit::Sample;
///
/// let sample = Sample::new(Duration::from_millis(12), 4, false);
/// assert_eq!(sample.rtt, Duration::from_millis(12));
/// assert_eq!(sample.in_flight, 4);
/// assert!(!sample.dropped);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Sample {
    /// How long the call took, from admission to completion.
    pub rtt: Duration,
    /// How many calls were in flight when it finished, counting this one (as Netflix's
    /// limiter counts them).
    pub in_flight: usize,
    /// Whether the call was dropped: timed out, overran its deadline, or was reported as
    /// overloaded by the dependency (an HTTP 429 or 503, "too many connections").
    pub dropped: bool,
}

impl Sample {
    /// A sample of a call that took `rtt`, finished with `in_flight` calls in flight
    /// (itself included), and was or was not `dropped`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::Sample;
    ///
    /// assert!(Sample::new(Duration::from_secs(5), 1, true).dropped);
    /// ```
    #[must_use]
    pub fn new(rtt: Duration, in_flight: usize, dropped: bool) -> Self {
        Self {
            rtt,
            in_flight,
            dropped,
        }
    }
}

/// The checks every algorithm shares: limits of at least 1, `min <= max`, and the initial
/// limit within them (Netflix only logs a warning for the last; the issue asks for an error
/// rather than a silent clamp).
pub(crate) fn check_limits(
    name: &str,
    initial: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    crate::config::validate_name(name)?;
    if min == 0 {
        return Err(ConfigError::new(
            name,
            "min_limit",
            "must be at least 1 (got 0)",
        ));
    }
    if max == 0 {
        return Err(ConfigError::new(
            name,
            "max_limit",
            "must be at least 1 (got 0)",
        ));
    }
    if min > max {
        return Err(ConfigError::new(
            name,
            "min_limit",
            format!("must not exceed max_limit ({max}) (got {min})"),
        ));
    }
    if initial < min || initial > max {
        return Err(ConfigError::new(
            name,
            "initial_limit",
            format!("must lie within min_limit and max_limit, [{min}, {max}] (got {initial})"),
        ));
    }
    Ok(())
}

/// A smoothing factor must be a number in (0, 1]: 0 would freeze the limit, above 1 would
/// overshoot the new estimate, NaN would poison it.
pub(crate) fn check_smoothing(name: &str, smoothing: f64) -> Result<(), ConfigError> {
    if smoothing.is_nan() || smoothing <= 0.0 || smoothing > 1.0 {
        return Err(ConfigError::new(
            name,
            "smoothing",
            format!("must be in (0, 1] (got {smoothing})"),
        ));
    }
    Ok(())
}

/// Clamps `value` into `[min, max]` the way Netflix does, `min(max, max(min, value))`: when a
/// misconfigured `min` exceeds `max`, `max` wins. Never panics (unlike `Ord::clamp`).
pub(crate) fn clamp_usize(value: usize, min: usize, max: usize) -> usize {
    max.min(min.max(value))
}

/// [`clamp_usize`] for the algorithms that keep a fractional estimate.
pub(crate) fn clamp_f64(value: f64, min: usize, max: usize) -> f64 {
    (max as f64).min((min as f64).max(value))
}
