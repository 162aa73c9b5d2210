//! Additive increase, multiplicative decrease: Netflix's `AIMDLimit`.

use std::time::Duration;

use super::{LimitAlgorithm, Sample, check_limits, clamp_usize};
use crate::error::ConfigError;

/// A loss-based limit: one more per healthy call while at least half the limit is in use, a
/// cut by [`backoff_ratio`](Aimd::backoff_ratio) on a drop or on a call slower than
/// [`timeout`](Aimd::timeout). The rules and defaults of Netflix's `AIMDLimit`.
///
/// The rule, for a sample with limit `L`:
/// - dropped, or `rtt > timeout`: `L = floor(L × backoff_ratio)`;
/// - else if `in_flight × 2 >= L`: `L = L + 1`;
/// - else unchanged (an idle dependency says nothing about its capacity);
///
/// and then `L` is kept within `[min_limit, max_limit]`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample};
///
/// let mut aimd = Aimd::new().initial_limit(30);
/// assert_eq!(aimd.limit(), 30);
/// assert_eq!(aimd.update(Sample::new(Duration::ZERO, 0, true)), 27);
/// // A call slower than the timeout (5 s) counts as a drop.
/// assert_eq!(aimd.update(Sample::new(Duration::from_secs(6), 27, false)), 24);
/// ```
#[derive(Debug, Clone)]
pub struct Aimd {
    initial_limit: usize,
    min_limit: usize,
    max_limit: usize,
    backoff_ratio: f64,
    timeout: Duration,
    limit: usize,
}

impl Aimd {
    /// An AIMD limit with Netflix's defaults: initial and minimum 20, maximum 200, backoff
    /// ratio 0.9, timeout 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Aimd, LimitAlgorithm};
    ///
    /// assert_eq!(Aimd::new().limit(), 20);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
            limit: 20,
        }
    }

    /// The limit to start from. Defaults to 20. Setting it also resets the limit in force.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Aimd, LimitAlgorithm};
    ///
    /// assert_eq!(Aimd::new().initial_limit(10).limit(), 10);
    /// ```
    #[must_use]
    pub fn initial_limit(mut self, n: usize) -> Self {
        self.initial_limit = n;
        self.limit = n;
        self
    }

    /// The floor the limit never drops below. Defaults to 20 (Netflix's default, which keeps
    /// a loss-based limit from collapsing on a burst of errors).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample};
    ///
    /// let mut aimd = Aimd::new().initial_limit(2).min_limit(2);
    /// assert_eq!(aimd.update(Sample::new(Duration::ZERO, 2, true)), 2);
    /// ```
    #[must_use]
    pub fn min_limit(mut self, n: usize) -> Self {
        self.min_limit = n;
        self
    }

    /// The ceiling the limit never rises above. Defaults to 200.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample};
    ///
    /// let mut aimd = Aimd::new().initial_limit(21).max_limit(21);
    /// assert_eq!(aimd.update(Sample::new(Duration::from_millis(1), 21, false)), 21);
    /// ```
    #[must_use]
    pub fn max_limit(mut self, n: usize) -> Self {
        self.max_limit = n;
        self
    }

    /// The factor the limit is multiplied by on a drop, in [0.5, 1). Defaults to 0.9.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample};
    ///
    /// let mut aimd = Aimd::new().initial_limit(100).backoff_ratio(0.5);
    /// assert_eq!(aimd.update(Sample::new(Duration::ZERO, 1, true)), 50);
    /// ```
    #[must_use]
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A call slower than this counts as a drop. Defaults to 5 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample};
    ///
    /// let mut aimd = Aimd::new().initial_limit(30).timeout(Duration::from_millis(100));
    /// assert_eq!(aimd.update(Sample::new(Duration::from_millis(150), 30, false)), 27);
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings, naming the bulkhead `name` in the error.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a `min_limit` or `max_limit` of 0, `min_limit`
    /// above `max_limit`, an `initial_limit` outside them, a `backoff_ratio` outside
    /// [0.5, 1) (or NaN), a zero `timeout`, or an invalid `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::Aimd;
    ///
    /// assert!(Aimd::new().validate("db").is_ok());
    /// let err = Aimd::new().backoff_ratio(1.0).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "backoff_ratio");
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        check_limits(name, self.initial_limit, self.min_limit, self.max_limit)?;
        // Netflix's range: below 0.5 one error halves the limit more than once over; at 1
        // nothing ever backs off.
        if !(0.5..1.0).contains(&self.backoff_ratio) {
            return Err(ConfigError::new(
                name,
                "backoff_ratio",
                format!("must be in [0.5, 1) (got {})", self.backoff_ratio),
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(name, "timeout", "must not be zero"));
        }
        Ok(())
    }
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl LimitAlgorithm for Aimd {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        Aimd::validate(self, name)
    }

    fn limit(&self) -> usize {
        self.limit
    }

    fn update(&mut self, sample: Sample) -> usize {
        let mut next = self.limit;
        if sample.dropped || sample.rtt > self.timeout {
            // `as` saturates and maps NaN to 0, so even an unvalidated ratio cannot panic;
            // the clamp below restores the floor.
            next = (next as f64 * self.backoff_ratio) as usize;
        } else if sample.in_flight.saturating_mul(2) >= next {
            next = next.saturating_add(1);
        }
        self.limit = clamp_usize(next, self.min_limit, self.max_limit);
        self.limit
    }
}
