//! [`RetryBudget`]: gRPC's retry throttling, a token bucket shared by a dependency's calls.

use std::fmt;

use crate::error::ConfigError;
use crate::sync::Arc;
use crate::sync::plain::{AtomicU64, Ordering};

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
/// Clones share one bucket: give the same budget to every [`Retry`](super::Retry) that calls the
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

    pub(super) fn validate(&self, name: &str) -> Result<(), ConfigError> {
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
