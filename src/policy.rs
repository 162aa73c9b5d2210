//! [`PolicyError`]: what a call through the defensive stack gives back when it fails — the
//! call's own error, or the refusal of one of the layers.

use std::error::Error;
use std::fmt;

use crate::error::BulkheadError;

/// The error of a call through a [`CircuitBreaker`](crate::CircuitBreaker) (and the other
/// layers of the defensive stack): the call's own error, or a layer's refusal.
///
/// Its `Display` and `source` are those of the error it holds.
///
/// # Examples
///
/// ```
/// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState, PolicyError};
///
/// let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new())?;
/// let err = breaker.call(|| Err::<(), _>("mailbox full")).unwrap_err();
/// assert_eq!(err.inner(), Some(&"mailbox full"));
///
/// breaker.transition_to(CircuitState::ForcedOpen)?;
/// let err: PolicyError<&str> = breaker.call(|| Ok(())).unwrap_err();
/// assert!(err.is_circuit_open());
/// assert_eq!(err.bulkhead_error().map(|e| e.bulkhead()), Some("email"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PolicyError<E> {
    /// The call ran and returned this error.
    Inner(E),
    /// A layer refused or lost the call: a bulkhead's rejection, timeout, panic or
    /// shutdown, or a breaker's refusal ([`BulkheadError::CircuitOpen`]).
    Bulkhead(BulkheadError),
}

impl<E> PolicyError<E> {
    /// The call's own error, if that is what this is.
    pub fn inner(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Bulkhead(_) => None,
        }
    }

    /// Takes the call's own error out, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            Self::Bulkhead(_) => None,
        }
    }

    /// The layer's error, if a layer refused or lost the call.
    pub fn bulkhead_error(&self) -> Option<&BulkheadError> {
        match self {
            Self::Inner(_) => None,
            Self::Bulkhead(e) => Some(e),
        }
    }

    /// True when a circuit breaker refused the call.
    pub fn is_circuit_open(&self) -> bool {
        self.bulkhead_error()
            .is_some_and(BulkheadError::is_circuit_open)
    }

    /// True when a bulkhead was full.
    pub fn is_rejected(&self) -> bool {
        self.bulkhead_error()
            .is_some_and(BulkheadError::is_rejected)
    }

    /// Changes the call's own error with `f`; a layer's error stays as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::PolicyError;
    ///
    /// let err: PolicyError<u8> = PolicyError::Inner(4);
    /// assert_eq!(err.map_inner(|n| n * 2).into_inner(), Some(8));
    /// ```
    pub fn map_inner<F>(self, f: impl FnOnce(E) -> F) -> PolicyError<F> {
        match self {
            Self::Inner(e) => PolicyError::Inner(f(e)),
            Self::Bulkhead(e) => PolicyError::Bulkhead(e),
        }
    }
}

impl<E> From<BulkheadError> for PolicyError<E> {
    fn from(err: BulkheadError) -> Self {
        Self::Bulkhead(err)
    }
}

impl<E: fmt::Display> fmt::Display for PolicyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inner(e) => e.fmt(f),
            Self::Bulkhead(e) => e.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for PolicyError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Inner(e) => e.source(),
            Self::Bulkhead(e) => e.source(),
        }
    }
}
