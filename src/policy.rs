//! [`Policy`]: the defensive stack in one value — bulkhead, circuit breaker, retry, timeout
//! and fallback — decorated once and called from any thread; [`PolicyError`]: what it gives
//! back when a call fails.
//!
//! The order is fixed: **fallback(retry(breaker(bulkhead(f))))**, with the timeout as each
//! attempt's deadline inside the bulkhead. Read from the inside out:
//!
//! 1. the **bulkhead** bounds how many attempts run at once, and the **timeout** how long the
//!    caller waits for each (the attempt keeps its slot until it really ends);
//! 2. the **breaker** sees each attempt's outcome, and refuses before the bulkhead is asked,
//!    so a refused call takes no slot; a full bulkhead is not the dependency's failure, so a
//!    rejection is not counted against it (nor for it);
//! 3. the **retry** spaces attempts out, outside the bulkhead and the breaker, so no slot and
//!    no half-open place is held while it sleeps, and it never retries a breaker's refusal;
//! 4. the **fallback** sees the final error, whichever layer it came from, and may answer it.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::breaker::CircuitBreaker;
use crate::config::validate_name;
use crate::error::{BulkheadError, ConfigError};
use crate::pool::ThreadPoolBulkhead;
use crate::retry::{Retry, Retryable};
use crate::semaphore::SemaphoreBulkhead;
use crate::sync::Arc;

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

/// The compartment a policy runs its attempts in.
#[derive(Debug, Clone)]
enum Compartment {
    Pool(Arc<ThreadPoolBulkhead>),
    Semaphore(Arc<SemaphoreBulkhead>),
}

type Fallback<T, E> = dyn Fn(PolicyError<E>) -> Result<T, PolicyError<E>> + Send + Sync;
type RetryIf<E> = dyn Fn(&PolicyError<E>) -> bool + Send + Sync;
type FailureIf<E> = dyn Fn(&E) -> bool + Send + Sync;

/// Builds a [`Policy`]; made by [`Policy::builder`].
///
/// Every layer is optional; [`build`](Self::build) checks them together.
#[must_use = "a builder does nothing until built"]
pub struct PolicyBuilder<T, E> {
    name: String,
    compartment: Option<Compartment>,
    both_compartments: bool,
    breaker: Option<Arc<CircuitBreaker>>,
    breaker_failure_if: Option<Arc<FailureIf<E>>>,
    retry: Option<Retry>,
    retry_if: Option<Arc<RetryIf<E>>>,
    timeout: Option<Duration>,
    fallback: Option<Arc<Fallback<T, E>>>,
}

impl<T, E> PolicyBuilder<T, E> {
    /// Runs each attempt on this thread-pool bulkhead.
    pub fn pool(mut self, pool: impl Into<Arc<ThreadPoolBulkhead>>) -> Self {
        self.both_compartments |= matches!(self.compartment, Some(Compartment::Semaphore(_)));
        self.compartment = Some(Compartment::Pool(pool.into()));
        self
    }

    /// Runs each attempt on the caller's thread under a permit of this semaphore bulkhead.
    pub fn semaphore(mut self, semaphore: impl Into<Arc<SemaphoreBulkhead>>) -> Self {
        self.both_compartments |= matches!(self.compartment, Some(Compartment::Pool(_)));
        self.compartment = Some(Compartment::Semaphore(semaphore.into()));
        self
    }

    /// Guards the attempts with this breaker (share one breaker per dependency).
    pub fn circuit_breaker(mut self, breaker: impl Into<Arc<CircuitBreaker>>) -> Self {
        self.breaker = Some(breaker.into());
        self
    }

    /// Which of the call's own errors count as the dependency's failures for the breaker;
    /// the others count as successes (resilience4j's `recordExceptions`: a `404` is an
    /// answer, not a sick dependency).
    ///
    /// Defaults to every error. A layer's error is judged by the policy: a timeout and a
    /// panic are failures, a full or shut-down bulkhead is neither.
    pub fn breaker_failure_if(
        mut self,
        failure_if: impl Fn(&E) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.breaker_failure_if = Some(Arc::new(failure_if));
        self
    }

    /// Retries failed attempts as `retry` says.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Which errors the retry retries.
    ///
    /// Defaults to [`Retryable`]: the call's own errors, a full bulkhead and a timeout are
    /// retried; a breaker's refusal, a panic and a shutdown are not.
    pub fn retry_if(
        mut self,
        retry_if: impl Fn(&PolicyError<E>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(retry_if));
        self
    }

    /// Each attempt's deadline inside the bulkhead, from its submission: the caller gets
    /// [`BulkheadError::Timeout`] on time, while an attempt that already started keeps its
    /// slot until it ends. Needs a pool (a call on the caller's thread cannot be left).
    ///
    /// Defaults to the pool's `default_timeout`, if any.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Answers the final error: a cached value, a default, a queued "send later". It
    /// receives the error of whichever layer failed and may pass it on.
    pub fn fallback(
        mut self,
        fallback: impl Fn(PolicyError<E>) -> Result<T, PolicyError<E>> + Send + Sync + 'static,
    ) -> Self {
        self.fallback = Some(Arc::new(fallback));
        self
    }

    /// The policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the policy and the field: an empty or NUL-bearing name;
    /// both a pool and a semaphore (`"bulkhead"`); a zero timeout, or a timeout without a
    /// pool (`"timeout"`); an invalid [`Retry`] (see [`Retry::validate`]).
    pub fn build(self) -> Result<Policy<T, E>, ConfigError> {
        let name = &self.name;
        validate_name(name)?;
        if self.both_compartments {
            return Err(ConfigError::new(
                name,
                "bulkhead",
                "a policy runs in one compartment: a pool or a semaphore, not both",
            ));
        }
        if let Some(timeout) = self.timeout {
            if timeout.is_zero() {
                return Err(ConfigError::new(name, "timeout", "must not be zero"));
            }
            if !matches!(self.compartment, Some(Compartment::Pool(_))) {
                return Err(ConfigError::new(
                    name,
                    "timeout",
                    "needs a pool: a call on the caller's thread cannot be abandoned at its deadline",
                ));
            }
        }
        if let Some(retry) = &self.retry {
            retry.validate(name)?;
        }
        // A retry without a name of its own reports as the policy.
        let retry = self.retry.map(|r| r.named_if_unnamed(&self.name));
        Ok(Policy {
            inner: Arc::new(Inner {
                name: self.name,
                compartment: self.compartment,
                breaker: self.breaker,
                breaker_failure_if: self.breaker_failure_if,
                retry,
                retry_if: self.retry_if,
                timeout: self.timeout,
                fallback: self.fallback,
            }),
            _types: PhantomData,
        })
    }
}

impl<T, E> fmt::Debug for PolicyBuilder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("name", &self.name)
            .field("compartment", &self.compartment)
            .field(
                "breaker",
                &self.breaker.as_ref().map(|b| b.name().to_owned()),
            )
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback.as_ref().map(|_| "<closure>"))
            .finish_non_exhaustive()
    }
}

/// The defensive stack for calls to one dependency: **fallback(retry(breaker(bulkhead(f))))**,
/// with `.timeout(d)` as each attempt's deadline inside the bulkhead.
///
/// Build it once with [`Policy::builder`]; [`call`](Self::call) it, or
/// [`decorate`](Self::decorate) a function once and call that, from any thread. Clones share
/// everything. `T` and `E` are the value and the error of the calls it protects.
///
/// A call's error is a [`PolicyError`]: the call's own error, or the layer that refused or
/// lost it. What each layer does with the others' outcomes:
///
/// | attempt ended with | breaker counts | retried by default |
/// | --- | --- | --- |
/// | `Ok` | success | — |
/// | `Err(e)` of the call | failure (see `breaker_failure_if`) | yes |
/// | bulkhead `Timeout`, `Panicked` | failure | timeout yes, panic no |
/// | bulkhead `Rejected` (full) | nothing: not the dependency's fault | yes |
/// | bulkhead `Shutdown` | nothing | no |
/// | breaker's `CircuitOpen` | (refused before the bulkhead: no slot taken) | no |
///
/// With a semaphore (or no bulkhead) the attempt runs on the caller's thread and a panic in
/// it unwinds to the caller, counted by the breaker as a failure on the way.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bulkheads::{
///     Backoff, CircuitBreaker, CircuitBreakerConfig, ManualClock, Policy, PoolConfig, Retry,
///     SlidingWindow, ThreadPoolBulkhead,
/// };
///
/// let clock = Arc::new(ManualClock::new());
/// let email = Policy::builder("email")
///     .pool(ThreadPoolBulkhead::new("email", PoolConfig::new(4))?)
///     .circuit_breaker(CircuitBreaker::new(
///         "email",
///         CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(10)).clock(clock.clone()),
///     )?)
///     .retry(Retry::new(3).backoff(Backoff::fixed(Duration::from_millis(50))).clock(clock.clone()))
///     .timeout(Duration::from_secs(2))
///     .fallback(|err| {
///         eprintln!("email unavailable ({err}); queued for later");
///         Ok("queued")
///     })
///     .build()?;
///
/// let send = email.decorate(|| Ok::<_, std::io::Error>("sent"));
/// assert_eq!(send()?, "sent");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Policy<T, E> {
    inner: Arc<Inner<T, E>>,
    /// `fn() -> (T, E)`: the policy holds no `T` or `E`, so it is `Send + Sync` whatever
    /// they are.
    _types: PhantomData<fn() -> (T, E)>,
}

struct Inner<T, E> {
    name: String,
    compartment: Option<Compartment>,
    breaker: Option<Arc<CircuitBreaker>>,
    breaker_failure_if: Option<Arc<FailureIf<E>>>,
    retry: Option<Retry>,
    retry_if: Option<Arc<RetryIf<E>>>,
    timeout: Option<Duration>,
    fallback: Option<Arc<Fallback<T, E>>>,
}

impl<T, E> Clone for Policy<T, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _types: PhantomData,
        }
    }
}

impl<T, E> fmt::Debug for Policy<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Policy")
            .field("name", &i.name)
            .field("compartment", &i.compartment)
            .field("breaker", &i.breaker)
            .field("retry", &i.retry)
            .field("timeout", &i.timeout)
            .field("fallback", &i.fallback.as_ref().map(|_| "<closure>"))
            .finish_non_exhaustive()
    }
}

impl<T, E> Policy<T, E> {
    /// A builder for a policy called `name` (the name its errors carry).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{Policy, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead};
    ///
    /// let err = Policy::<u32, std::io::Error>::builder("db")
    ///     .pool(ThreadPoolBulkhead::new("db", PoolConfig::new(2))?)
    ///     .semaphore(SemaphoreBulkhead::new("db", SemaphoreConfig::new(2))?)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "bulkhead");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(name: impl Into<String>) -> PolicyBuilder<T, E> {
        PolicyBuilder {
            name: name.into(),
            compartment: None,
            both_compartments: false,
            breaker: None,
            breaker_failure_if: None,
            retry: None,
            retry_if: None,
            timeout: None,
            fallback: None,
        }
    }
}

impl<T, E> Policy<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Runs `f` through the stack once.
    ///
    /// # Errors
    ///
    /// The final [`PolicyError`], after the retries and unless the fallback answered it.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{Policy, SemaphoreBulkhead, SemaphoreConfig};
    ///
    /// let policy = Policy::builder("cache")
    ///     .semaphore(SemaphoreBulkhead::new("cache", SemaphoreConfig::new(8))?)
    ///     .fallback(|_err| Ok(None))
    ///     .build()?;
    /// assert_eq!(policy.call(|| Err::<Option<u8>, _>("miss")).ok(), Some(None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// `f` may run on a pool's worker thread, so it must be `Send` (and `Sync`: the retry
    /// hands it to one attempt after another); a closure holding an `Rc` does not compile:
    ///
    /// ```compile_fail
    /// use std::rc::Rc;
    /// use bulkheads::Policy;
    ///
    /// let policy = Policy::<u8, ()>::builder("p").build().unwrap();
    /// let local = Rc::new(1_u8);
    /// let _ = policy.call(move || Ok(*local));
    /// ```
    pub fn call<F>(&self, f: F) -> Result<T, PolicyError<E>>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
    {
        run(&self.inner, &Arc::new(f))
    }

    /// Wraps `f` in the stack once, for calling many times from any thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{Policy, PoolConfig, ThreadPoolBulkhead};
    ///
    /// let policy = Policy::builder("inventory")
    ///     .pool(ThreadPoolBulkhead::new("inventory", PoolConfig::new(2))?)
    ///     .build()?;
    /// let check = policy.decorate(|| Ok::<u32, std::io::Error>(7));
    /// let t = std::thread::spawn(move || check().map(|n| n * 6));
    /// assert_eq!(t.join().unwrap()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decorate<F>(
        &self,
        f: F,
    ) -> impl Fn() -> Result<T, PolicyError<E>> + Send + Sync + 'static + use<T, E, F>
    where
        F: Fn() -> Result<T, E> + Send + Sync + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let f = Arc::new(f);
        move || run(&inner, &f)
    }
}

/// fallback(retry(breaker(bulkhead(f)))).
fn run<T, E, F>(inner: &Inner<T, E>, f: &Arc<F>) -> Result<T, PolicyError<E>>
where
    T: Send + 'static,
    E: Send + 'static,
    F: Fn() -> Result<T, E> + Send + Sync + 'static,
{
    let attempt = || guarded(inner, f);
    let result = match &inner.retry {
        None => attempt(),
        Some(retry) => match &inner.retry_if {
            Some(retry_if) => retry.call_if(attempt, |e| retry_if(e)),
            None => retry.call_if(attempt, Retryable::is_retryable),
        },
    };
    match (result, &inner.fallback) {
        (Err(err), Some(fallback)) => fallback(err),
        (result, _) => result,
    }
}

/// breaker(bulkhead(f)): one attempt.
fn guarded<T, E, F>(inner: &Inner<T, E>, f: &Arc<F>) -> Result<T, PolicyError<E>>
where
    T: Send + 'static,
    E: Send + 'static,
    F: Fn() -> Result<T, E> + Send + Sync + 'static,
{
    let Some(breaker) = &inner.breaker else {
        return compartment(inner, f);
    };
    // Refused here, before the bulkhead is asked: a refusal takes no slot.
    let permit = breaker.try_acquire()?;
    let result = compartment(inner, f);
    match &result {
        Ok(_) => permit.success(),
        Err(PolicyError::Inner(e)) => match &inner.breaker_failure_if {
            Some(failure_if) if !failure_if(e) => permit.success(),
            _ => permit.failure(),
        },
        Err(PolicyError::Bulkhead(err)) => match err {
            BulkheadError::Timeout { .. } | BulkheadError::Panicked { .. } => permit.failure(),
            // Full, shut down, cancelled, no thread: the compartment's state, not the
            // dependency's health.
            _ => permit.ignore(),
        },
    }
    result
}

/// bulkhead(f), with the timeout: one attempt in the compartment.
fn compartment<T, E, F>(inner: &Inner<T, E>, f: &Arc<F>) -> Result<T, PolicyError<E>>
where
    T: Send + 'static,
    E: Send + 'static,
    F: Fn() -> Result<T, E> + Send + Sync + 'static,
{
    let outcome = match &inner.compartment {
        None => Ok(f()),
        Some(Compartment::Semaphore(sem)) => sem.call(|| f()),
        Some(Compartment::Pool(pool)) => {
            let f = Arc::clone(f);
            match inner.timeout {
                Some(timeout) => pool.execute_timeout(timeout, move || f()),
                None => pool.execute(move || f()),
            }
        }
    };
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(PolicyError::Inner(err)),
        Err(err) => Err(PolicyError::Bulkhead(err)),
    }
}
