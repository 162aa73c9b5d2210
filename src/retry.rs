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

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{BulkheadError, ConfigError};
use crate::policy::PolicyError;
use crate::sync::Arc;
use crate::sync::plain::{AtomicU64, Ordering};

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
    initial: Duration,
    multiplier: f64,
    max: Option<Duration>,
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

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
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
        if let Some(max) = self.max
            && max < self.initial
        {
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

/// gRPC's retry throttling: a token bucket shared by every call to one dependency, which
/// lets retries through only while most calls succeed.
///
/// The bucket starts full, at `max_tokens`. Each failed attempt (one the retry predicate
/// would retry) takes one token, each success puts back `token_ratio`, never above
/// `max_tokens`. A retry is allowed only while more than half the tokens are left; first
/// attempts always go through. With gRPC's example of 10 tokens and a ratio of 0.1, five
/// failures in a row stop retries, and it takes ten successes to earn back one failure.
/// Tokens are counted in thousandths, as gRPC counts them (only three decimals of
/// `token_ratio` matter).
///
/// Clones share one bucket: give the same budget to every [`Retry`] that calls the
/// dependency.
///
/// # Examples
///
/// ```
/// use bulkheads::RetryBudget;
///
/// let budget = RetryBudget::new(10.0, 0.1);
/// for _ in 0..4 {
///     budget.on_failure();
/// }
/// assert!(budget.allows_retry()); // 6 > 5
/// budget.on_failure();
/// assert!(!budget.allows_retry()); // 5 is not more than half of 10
/// budget.on_success();
/// assert!(budget.allows_retry()); // 5.1
/// assert_eq!(budget.tokens(), 5.1);
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    max_tokens: f64,
    token_ratio: f64,
    max_milli: u64,
    ratio_milli: u64,
    tokens_milli: AtomicU64,
}

impl RetryBudget {
    /// The largest `max_tokens` gRPC accepts.
    pub const MAX_TOKENS: f64 = 1000.0;

    /// A full bucket of `max_tokens` (in (0, 1000], as gRPC's), refilled by `token_ratio`
    /// (at least 0.001) per success.
    #[must_use]
    pub fn new(max_tokens: f64, token_ratio: f64) -> Self {
        let milli = |x: f64| {
            if x.is_finite() && x > 0.0 {
                (x * 1000.0).round().min(u64::MAX as f64) as u64
            } else {
                0
            }
        };
        let max_milli = milli(max_tokens);
        Self {
            inner: Arc::new(BudgetInner {
                max_tokens,
                token_ratio,
                max_milli,
                ratio_milli: milli(token_ratio),
                tokens_milli: AtomicU64::new(max_milli),
            }),
        }
    }

    /// Whether a retry may go now: more than half the tokens are left.
    pub fn allows_retry(&self) -> bool {
        // Relaxed: the bucket is a heuristic shared by racing callers; no other memory
        // depends on its value.
        // `t > max / 2` in integers is `2t > max` for odd and even `max` alike.
        self.inner.tokens_milli.load(Ordering::Relaxed) > self.inner.max_milli / 2
    }

    /// Takes one token for a failed attempt (none below zero).
    pub fn on_failure(&self) {
        let _ = self
            .inner
            .tokens_milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(1000))
            });
    }

    /// Puts back `token_ratio` for a successful attempt (none above `max_tokens`).
    pub fn on_success(&self) {
        let (ratio, max) = (self.inner.ratio_milli, self.inner.max_milli);
        let _ = self
            .inner
            .tokens_milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(ratio).min(max))
            });
    }

    /// The tokens left.
    pub fn tokens(&self) -> f64 {
        self.inner.tokens_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let max = self.inner.max_tokens;
        if !(max > 0.0 && max <= Self::MAX_TOKENS) || self.inner.max_milli == 0 {
            return Err(ConfigError::new(
                name,
                "budget",
                format!("max_tokens must be in (0, 1000] (got {max})"),
            ));
        }
        let ratio = self.inner.token_ratio;
        if !(ratio.is_finite() && ratio > 0.0) || self.inner.ratio_milli == 0 {
            return Err(ConfigError::new(
                name,
                "budget",
                format!("token_ratio must be at least 0.001 (got {ratio})"),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("max_tokens", &self.inner.max_tokens)
            .field("token_ratio", &self.inner.token_ratio)
            .field("tokens", &self.tokens())
            .finish()
    }
}

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
    shared: Arc<Shared>,
}

/// What clones of a `Retry` share: the random state and the counters.
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

    /// Seeds the jitter's random numbers, for waits that repeat from run to run.
    ///
    /// Defaults to a random seed. Clones made before this call keep the old sequence.
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
        if let Jitter::Proportional(f) = self.jitter
            && !(0.0..=1.0).contains(&f)
        {
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
                    if retryable && let Some(budget) = &self.budget {
                        budget.on_failure();
                    }
                    let throttled = retryable
                        && attempt < self.max_attempts
                        && self.budget.as_ref().is_some_and(|b| !b.allows_retry());
                    if throttled {
                        self.shared.throttled.fetch_add(1, Ordering::Relaxed);
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
