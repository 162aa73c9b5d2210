//! [`Retry`]: try a call again after a failure, with [`Backoff`], [`Jitter`] and a
//! [`RetryBudget`] that stops retries when a dependency is sick.
//!
//! A retry multiplies the load on whatever it retries. Three things keep that from becoming a
//! retry storm: the back-off spaces attempts out, the jitter spreads callers that failed
//! together apart (AWS's "Exponential Backoff And Jitter"), and the budget — gRPC's retry
//! throttling — stops retrying altogether once failures outnumber successes, while still
//! letting first attempts through. A breaker's refusal is never retried by default: the
//! breaker is already saying when to come back.
//!
//! Sleeps go through the configured [`Clock`], so a test with a
//! [`ManualClock`](crate::ManualClock) sees exactly how long a retry would have waited,
//! without waiting.

mod backoff;
mod budget;
mod stats;

pub use backoff::{Backoff, Jitter};
pub use budget::RetryBudget;
pub use stats::RetryStats;
pub(crate) use stats::{append_prometheus, write_table};

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, EventKind, Listeners};
use crate::policy::PolicyError;
use crate::sync::Arc;
use crate::sync::plain::{AtomicU64, Ordering};

/// Whether an error is worth another attempt, for [`Retry::call`].
///
/// Implemented for the crate's errors: of [`BulkheadError`], a full bulkhead
/// ([`Rejected`](BulkheadError::Rejected)), a [`Timeout`](BulkheadError::Timeout) and a
/// refused thread ([`Spawn`](BulkheadError::Spawn)) are retried; a breaker's refusal
/// ([`CircuitOpen`](BulkheadError::CircuitOpen)), a panic, a shutdown, a cancellation and a
/// configuration error are not. A [`PolicyError::Inner`] is retried. Implement it for your
/// own error type, or pass a predicate to [`Retry::call_if`].
///
/// # Examples
///
/// ```
/// use bulkheads::Retryable;
///
/// #[derive(Debug)]
/// enum HttpError { Status(u16) }
///
/// impl Retryable for HttpError {
///     fn is_retryable(&self) -> bool {
///         matches!(self, HttpError::Status(429 | 502 | 503 | 504))
///     }
/// }
/// assert!(HttpError::Status(503).is_retryable());
/// assert!(!HttpError::Status(404).is_retryable());
/// ```
pub trait Retryable {
    /// True when another attempt might succeed.
    fn is_retryable(&self) -> bool;
}

impl Retryable for BulkheadError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Rejected { .. } | Self::Timeout { .. } | Self::Spawn { .. }
        )
    }
}

impl<E> Retryable for PolicyError<E> {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Inner(_) => true,
            Self::Bulkhead(err) => err.is_retryable(),
        }
    }
}

/// Runs a call up to `max_attempts` times (the first call included), waiting between
/// attempts as the [`Backoff`] and [`Jitter`] say, while the [`RetryBudget`] (if any) allows.
///
/// resilience4j's defaults: `Retry::default()` makes 3 attempts 500 ms apart. The error
/// returned is the last attempt's. A `Retry` is `Send + Sync` and is used by reference from
/// any number of threads; clones share the counters and the budget.
///
/// A configuration [`validate`](Self::validate) would reject (zero attempts, a zero or
/// shrinking back-off, jitter outside its range, a bad budget) never retries: the call runs
/// once; [`validate`](Self::validate) says why.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bulkheads::{Backoff, ManualClock, Retry};
///
/// let clock = ManualClock::new();
/// let retry = Retry::new(4)
///     .backoff(Backoff::exponential(Duration::from_millis(100), 2.0))
///     .clock(Arc::new(clock.clone()));
///
/// let mut calls = 0;
/// let result = retry.call(|| {
///     calls += 1;
///     if calls < 3 { Err(bulkheads::PolicyError::Inner("connection reset")) } else { Ok("hello") }
/// });
/// assert_eq!(result.unwrap(), "hello");
/// assert_eq!(calls, 3);
/// assert_eq!(clock.elapsed(), Duration::from_millis(300)); // 100 ms, then 200 ms
/// ```
#[derive(Clone)]
pub struct Retry {
    max_attempts: u32,
    backoff: Backoff,
    jitter: Jitter,
    budget: Option<RetryBudget>,
    clock: Arc<dyn Clock>,
    /// The name its events carry; `None` until set (a policy sets its own).
    name: Option<Arc<str>>,
    shared: Arc<Shared>,
}

/// What clones of a `Retry` share: the random state, the counters and the listeners.
struct Shared {
    /// splitmix64's state: one `fetch_add` per random number, so threads never contend on
    /// more than one word and never lock.
    rng: AtomicU64,
    succeeded_first: AtomicU64,
    succeeded_retried: AtomicU64,
    failed_first: AtomicU64,
    failed_retried: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    listeners: Listeners,
}

impl Shared {
    fn new(seed: u64) -> Self {
        Self {
            rng: AtomicU64::new(seed),
            succeeded_first: AtomicU64::new(0),
            succeeded_retried: AtomicU64::new(0),
            failed_first: AtomicU64::new(0),
            failed_retried: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            listeners: Listeners::new("retry"),
        }
    }

    /// A uniform number in [0, 1).
    fn next_unit(&self) -> f64 {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut z = self
            .rng
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits: every such float in [0, 1) equally likely.
        (z >> 11) as f64 / (1_u64 << 53) as f64
    }
}

impl Retry {
    /// `max_attempts` attempts in all (the first call included: 1 means no retry), 500 ms
    /// apart, no jitter, no budget, on the system clock.
    #[must_use]
    pub fn new(max_attempts: u32) -> Self {
        let seed = RandomState::new().hash_one(0x5eed_u64);
        Self {
            max_attempts,
            backoff: Backoff::fixed(Duration::from_millis(500)),
            jitter: Jitter::None,
            budget: None,
            clock: Arc::new(SystemClock),
            name: None,
            shared: Arc::new(Shared::new(seed)),
        }
    }

    /// The waits between attempts.
    ///
    /// Defaults to `Backoff::fixed(500 ms)` (resilience4j's default wait).
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The randomness added to each wait.
    ///
    /// Defaults to [`Jitter::None`]. `Proportional(f)` needs `f` in `[0, 1]`.
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// A token bucket that stops retries while most attempts fail.
    ///
    /// Defaults to none: every retryable failure is retried, up to `max_attempts`.
    #[must_use]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The clock the waits sleep on.
    ///
    /// Defaults to [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The name its [events](Self::on_event) carry.
    ///
    /// Defaults to `"retry"`; a [`Policy`](crate::Policy) gives a retry without a name its
    /// own.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(Arc::from(name.into()));
        self
    }

    pub(crate) fn named_if_unnamed(mut self, name: &str) -> Self {
        if self.name.is_none() {
            self.name = Some(Arc::from(name));
        }
        self
    }

    /// Calls `listener` before every wait ([`EventKind::RetryScheduled`]) and for every
    /// retry the budget refuses ([`EventKind::RetryThrottled`]), on the caller's thread.
    /// Clones share the listeners. Its panics are caught and dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use bulkheads::{Backoff, ManualClock, PolicyError, Retry};
    ///
    /// let retry = Retry::new(3)
    ///     .name("search")
    ///     .backoff(Backoff::fixed(Duration::from_millis(20)))
    ///     .clock(Arc::new(ManualClock::new()));
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&log);
    /// retry.on_event(move |e| seen.lock().unwrap().push(e.to_string()));
    /// let _ = retry.call(|| Err::<(), _>(PolicyError::Inner("503")));
    /// assert_eq!(
    ///     *log.lock().unwrap(),
    ///     ["search: attempt 2 after 20ms", "search: attempt 3 after 20ms"]
    /// );
    /// ```
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.shared.listeners.add(Arc::new(listener));
    }

    pub(crate) fn add_listener(&self, listener: crate::event::Listener) {
        self.shared.listeners.add(listener);
    }

    fn emit(&self, kind: EventKind) {
        let name = self.name.as_deref().unwrap_or("retry");
        self.shared.listeners.emit(name, kind);
    }

    /// Seeds the jitter's random numbers, for waits that repeat from run to run.
    ///
    /// Defaults to a random seed. Clones made before this call keep the old sequence (and
    /// the old counters and listeners: the seed starts a new shared state).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.shared = Arc::new(Shared::new(seed));
        self
    }

    /// The configured number of attempts.
    pub fn max_attempts_value(&self) -> u32 {
        self.max_attempts
    }

    /// Checks the configuration, naming `name` (the policy or dependency it serves) in the
    /// error.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field: `max_attempts` of 0; a `backoff` whose
    /// initial delay is zero, whose multiplier is below 1 or not finite, or whose max is
    /// below its initial delay; a `jitter` factor outside `[0, 1]`; a `budget` whose
    /// `max_tokens` is outside (0, 1000] or whose `token_ratio` is below 0.001.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::{Backoff, Retry};
    ///
    /// let err = Retry::new(3)
    ///     .backoff(Backoff::exponential(Duration::from_millis(10), 0.5))
    ///     .validate("payment")
    ///     .unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("payment", "backoff"));
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::new(
                name,
                "max_attempts",
                "must be at least 1: the first call is an attempt (got 0)",
            ));
        }
        self.backoff.validate(name)?;
        let proportional = match self.jitter {
            Jitter::Proportional(f) => Some(f),
            _ => None,
        };
        if let Some(f) = proportional.filter(|f| !(0.0..=1.0).contains(f)) {
            return Err(ConfigError::new(
                name,
                "jitter",
                format!("Proportional factor must be in [0, 1] (got {f})"),
            ));
        }
        if let Some(budget) = &self.budget {
            budget.validate(name)?;
        }
        Ok(())
    }

    /// Runs `f` until it succeeds, fails with an error that is not
    /// [`Retryable`], runs out of attempts, or the budget stops it; returns its last result.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState, Retry};
    ///
    /// let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new())?;
    /// breaker.transition_to(CircuitState::ForcedOpen)?;
    /// let mut attempts = 0;
    /// let err = Retry::new(5)
    ///     .call(|| {
    ///         attempts += 1;
    ///         breaker.call(|| Ok::<_, std::io::Error>(()))
    ///     })
    ///     .unwrap_err();
    /// assert!(err.is_circuit_open());
    /// assert_eq!(attempts, 1); // a refusal is not retried
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<T, E: Retryable>(&self, f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
        self.call_if(f, E::is_retryable)
    }

    /// As [`call`](Self::call), with `retry_if` deciding which errors are retried.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::{Error, ErrorKind};
    /// use std::sync::Arc;
    /// use bulkheads::{ManualClock, Retry};
    ///
    /// let retry = Retry::new(3).clock(Arc::new(ManualClock::new()));
    /// let mut attempts = 0;
    /// let err = retry
    ///     .call_if(
    ///         || {
    ///             attempts += 1;
    ///             Err::<(), _>(Error::from(ErrorKind::NotFound))
    ///         },
    ///         |e| e.kind() == ErrorKind::TimedOut,
    ///     )
    ///     .unwrap_err();
    /// assert_eq!((err.kind(), attempts), (ErrorKind::NotFound, 1));
    /// ```
    pub fn call_if<T, E>(
        &self,
        mut f: impl FnMut() -> Result<T, E>,
        retry_if: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let valid = self.validate("retry").is_ok();
        let mut attempt: u32 = 1;
        let mut previous_wait = self.backoff.initial;
        loop {
            match f() {
                Ok(value) => {
                    if let Some(budget) = &self.budget {
                        budget.on_success();
                    }
                    let counter = if attempt == 1 {
                        &self.shared.succeeded_first
                    } else {
                        &self.shared.succeeded_retried
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(err) => {
                    let retryable = retry_if(&err);
                    if let (true, Some(budget)) = (retryable, &self.budget) {
                        budget.on_failure();
                    }
                    let throttled = retryable
                        && attempt < self.max_attempts
                        && self.budget.as_ref().is_some_and(|b| !b.allows_retry());
                    if throttled {
                        self.shared.throttled.fetch_add(1, Ordering::Relaxed);
                        self.emit(EventKind::RetryThrottled);
                    }
                    if !valid || !retryable || attempt >= self.max_attempts || throttled {
                        let counter = if attempt == 1 {
                            &self.shared.failed_first
                        } else {
                            &self.shared.failed_retried
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        return Err(err);
                    }
                    // The error is dropped before the wait: whatever it holds (a connection,
                    // a buffer) is not kept through the sleep.
                    drop(err);
                    let wait = self.wait(attempt, previous_wait);
                    previous_wait = wait;
                    self.shared.retries.fetch_add(1, Ordering::Relaxed);
                    self.emit(EventKind::RetryScheduled {
                        attempt: attempt + 1,
                        wait,
                    });
                    self.clock.sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    /// The wait before retry number `retry`, jitter included.
    fn wait(&self, retry: u32, previous: Duration) -> Duration {
        let d = self.backoff.delay(retry);
        let unit = || self.shared.next_unit();
        match self.jitter {
            Jitter::None => d,
            Jitter::Full => scale(d, unit()),
            Jitter::Equal => (d / 2).saturating_add(scale(d / 2, unit())),
            Jitter::Decorrelated => {
                let base = self.backoff.initial;
                let cap = self.backoff.max.unwrap_or(Duration::MAX);
                let high = previous.saturating_mul(3).max(base);
                let span = high - base;
                let secs = base.as_secs_f64() + span.as_secs_f64() * unit();
                Duration::try_from_secs_f64(secs)
                    .unwrap_or(Duration::MAX)
                    .min(cap)
            }
            Jitter::Proportional(f) => scale(d, 1.0 - f + 2.0 * f * unit()),
        }
    }

    /// The counters since the `Retry` was made (shared by its clones).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bulkheads::{ManualClock, PolicyError, Retry};
    ///
    /// let retry = Retry::new(2).clock(Arc::new(ManualClock::new()));
    /// let _ = retry.call(|| Err::<(), _>(PolicyError::Inner("down")));
    /// let m = retry.metrics();
    /// assert_eq!((m.failed_with_retry, m.retries), (1, 1));
    /// ```
    pub fn metrics(&self) -> RetryMetrics {
        let s = &self.shared;
        RetryMetrics {
            succeeded_without_retry: s.succeeded_first.load(Ordering::Relaxed),
            succeeded_with_retry: s.succeeded_retried.load(Ordering::Relaxed),
            failed_without_retry: s.failed_first.load(Ordering::Relaxed),
            failed_with_retry: s.failed_retried.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            throttled: s.throttled.load(Ordering::Relaxed),
        }
    }
}

impl Default for Retry {
    /// resilience4j's default: 3 attempts, 500 ms apart.
    fn default() -> Self {
        Self::new(3)
    }
}

impl fmt::Debug for Retry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("budget", &self.budget)
            .field("name", &self.name)
            .field("clock", &"<clock>")
            .finish_non_exhaustive()
    }
}

/// `d × factor` for a factor in [0, 2], saturating instead of panicking as
/// `Duration::mul_f64` would past `Duration::MAX`.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// A [`Retry`]'s counters, resilience4j's four plus two; they only grow.
///
/// # Examples
///
/// ```
/// use bulkheads::{PolicyError, Retry};
///
/// let retry = Retry::new(3);
/// let _ = retry.call(|| Ok::<_, PolicyError<()>>(1));
/// assert_eq!(retry.metrics().succeeded_without_retry, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RetryMetrics {
    /// Calls that succeeded at the first attempt.
    pub succeeded_without_retry: u64,
    /// Calls that succeeded after one retry or more.
    pub succeeded_with_retry: u64,
    /// Calls that failed at the first attempt and were not retried (the error was not
    /// retryable, there was one attempt, or the budget said no).
    pub failed_without_retry: u64,
    /// Calls that failed after one retry or more.
    pub failed_with_retry: u64,
    /// Retries made (waits slept).
    pub retries: u64,
    /// Retries the budget refused.
    pub throttled: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_units_stay_in_range_and_spread() {
        let s = Shared::new(7);
        let xs: Vec<f64> = (0..10_000).map(|_| s.next_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!(xs.iter().any(|&x| x < 0.01) && xs.iter().any(|&x| x > 0.99));
    }

    #[test]
    fn the_same_seed_gives_the_same_waits() {
        let a = Retry::new(5).jitter(Jitter::Full).seed(42);
        let b = Retry::new(5).jitter(Jitter::Full).seed(42);
        let d = Duration::from_secs(1);
        let wa: Vec<_> = (1..5).map(|n| a.wait(n, d)).collect();
        let wb: Vec<_> = (1..5).map(|n| b.wait(n, d)).collect();
        assert_eq!(wa, wb);
    }

    #[test]
    fn budget_rounds_to_thousandths_and_caps() {
        let b = RetryBudget::new(3.0, 0.3333);
        b.on_success();
        assert_eq!(b.tokens(), 3.0); // already full
        b.on_failure();
        b.on_success();
        assert_eq!(b.tokens(), 2.333);
        for _ in 0..10 {
            b.on_failure();
        }
        assert_eq!(b.tokens(), 0.0);
    }
}
