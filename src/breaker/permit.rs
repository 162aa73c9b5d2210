//! [`CallPermit`]: one admitted call, measured on the breaker's clock, that cannot leak.

use std::fmt;
use std::mem::ManuallyDrop;
use std::time::Duration;

use super::CircuitBreaker;

/// When a call started, on whichever clock the breaker times calls with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// Not timed: nothing is recorded (disabled).
    Untimed,
    /// On the breaker's clock, in nanoseconds since the breaker's origin.
    Clock(u64),
    /// On the coarse clock ([`crate::clock::coarse`]), in its nanoseconds.
    Coarse(u64),
}

/// Permission for one call through a [`CircuitBreaker`], measuring it on the breaker's clock.
///
/// Tell it how the call went with [`success`](Self::success), [`failure`](Self::failure) or
/// [`ignore`](Self::ignore) (an outcome that says nothing about the dependency's health,
/// such as a validation error). It cannot leak: dropped without an outcome it is ignored
/// (a half-open probe gives its place back), and dropped while its thread panics it is a
/// failure — so neither a forgotten call nor a panic can leave a breaker stuck half-open
/// (resilience4j #903 and #935).
///
/// # Examples
///
/// ```
/// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// let breaker = CircuitBreaker::new("db", CircuitBreakerConfig::new().half_open_calls(1))?;
/// breaker.transition_to(CircuitState::Open)?;
/// breaker.transition_to(CircuitState::HalfOpen)?;
/// {
///     let _probe = breaker.try_acquire()?;
///     assert!(breaker.try_acquire().is_err()); // the one place is taken
/// } // dropped unrecorded: the place comes back
/// breaker.try_acquire()?.success();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a permit dropped at once is an ignored call; record its outcome"]
pub struct CallPermit<'a> {
    pub(super) breaker: &'a CircuitBreaker,
    /// The generation of the state that admitted it ([`super::state`]).
    pub(super) generation: u32,
    /// Whether it holds a half-open place.
    pub(super) holds_place: bool,
    /// When the call started.
    pub(super) start: Start,
}

impl CallPermit<'_> {
    /// The call succeeded (slow if it took longer than `slow_call_duration`).
    #[inline]
    pub fn success(self) {
        // Consumed without running `Drop` (the outcome is this one, not a dropped permit's):
        // the permit owns nothing that needs dropping.
        ManuallyDrop::new(self).finish(Some(false));
    }

    /// The call failed (and was slow, too, if it took longer than `slow_call_duration`).
    #[inline]
    pub fn failure(self) {
        ManuallyDrop::new(self).finish(Some(true));
    }

    /// The call's outcome is not to be counted: nothing enters the window, and a half-open
    /// probe gives its place back.
    #[inline]
    pub fn ignore(self) {
        ManuallyDrop::new(self).finish(None);
    }

    /// How long the call has taken so far, on the breaker's clock (zero when disabled; to
    /// within a tick when the breaker times calls on the coarse clock, see
    /// [`slow_call_duration`](crate::CircuitBreakerConfig::slow_call_duration)).
    pub fn elapsed(&self) -> Duration {
        match self.start {
            Start::Untimed => Duration::ZERO,
            Start::Clock(start) => Duration::from_nanos(
                self.breaker
                    .nanos(self.breaker.config.clock.now())
                    .saturating_sub(start),
            ),
            Start::Coarse(start) => {
                Duration::from_nanos(crate::clock::coarse::now_nanos().saturating_sub(start))
            }
        }
    }

    /// Records the outcome; called once, by `success`, `failure`, `ignore` (which do not
    /// run `Drop`) or by `Drop`.
    #[inline]
    fn finish(&self, failed: Option<bool>) {
        let timed = !matches!(self.start, Start::Untimed);
        match failed {
            Some(failed) => {
                if timed {
                    self.breaker.record(self.generation, self.start, failed);
                }
            }
            None => {
                if timed {
                    self.breaker.ignored();
                }
                if self.holds_place {
                    self.breaker.release_place(self.generation);
                }
            }
        }
    }
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        let failed = std::thread::panicking().then_some(true);
        self.finish(failed);
    }
}

impl fmt::Debug for CallPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("breaker", &&*self.breaker.name)
            .field("half_open_probe", &self.holds_place)
            .finish_non_exhaustive()
    }
}
