//! Time that tests can control: [`Clock`], [`SystemClock`], [`ManualClock`].
//!
//! Everything in the crate that decides by time — a circuit breaker's sliding window and its
//! wait in the open state, a retry's back-off — reads the time and sleeps through a
//! [`Clock`] taken from its configuration. [`SystemClock`] is the default everywhere; a test
//! hands the same [`ManualClock`] to the breaker and to itself, and moves time forward with
//! [`advance`](ManualClock::advance) instead of sleeping, so a scenario that spans minutes
//! runs in microseconds and gives the same answer every time.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bulkheads::clock::{Clock, ManualClock};
//!
//! let clock = ManualClock::new();
//! let shared: Arc<dyn Clock> = Arc::new(clock.clone());
//! let start = shared.now();
//! clock.advance(Duration::from_secs(90));
//! assert_eq!(shared.now() - start, Duration::from_secs(90));
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use crate::sync::Arc;
use crate::sync::plain::{AtomicU64, Ordering};

/// A source of time: what "now" is, and how to wait.
///
/// Implement it to drive time-based decisions from something else than the system's
/// monotonic clock; the crate ships [`SystemClock`] and [`ManualClock`]. Implementations are
/// shared between threads (`Send + Sync`) and must never go backwards.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use bulkheads::clock::{Clock, SystemClock};
///
/// fn deadline_in(clock: &dyn Clock, d: Duration) -> Instant {
///     clock.now() + d
/// }
/// let clock = SystemClock;
/// assert!(deadline_in(&clock, Duration::from_secs(1)) > clock.now());
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Waits for `d` to pass on this clock.
    fn sleep(&self, d: Duration);
}

/// The system's monotonic clock: [`Instant::now`] and [`std::thread::sleep`].
///
/// The default clock of every configuration.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::clock::{Clock, SystemClock};
///
/// let start = SystemClock.now();
/// SystemClock.sleep(Duration::from_millis(1));
/// assert!(SystemClock.now() - start >= Duration::from_millis(1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that moves only when told to: for tests.
///
/// It starts at the instant it was created and stays there until [`advance`](Self::advance)
/// moves it forward. Its [`sleep`](Clock::sleep) advances it by the requested time and
/// returns at once, so code that backs off for seconds runs instantly and the test can see
/// how long it would have slept. Clones share one time: advancing any of them advances all.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let other = clock.clone();
/// let t0 = clock.now();
/// other.sleep(Duration::from_secs(5)); // returns at once
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now() - t0, Duration::from_millis(5_250));
/// assert_eq!(other.elapsed(), Duration::from_millis(5_250));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    origin: Instant,
    /// Nanoseconds advanced since `origin`. An atomic rather than a lock: `now` is read on
    /// every call through a breaker under test, from many threads at once. 2^64 ns is 584
    /// years; `advance` saturates there rather than wrapping.
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the current instant, which moves only through
    /// [`advance`](Self::advance) and [`sleep`](Clock::sleep).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// assert_eq!(clock.now(), clock.now());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ManualInner {
                origin: Instant::now(),
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock (and every clone of it) forward by `d`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let t0 = clock.now();
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(clock.now().duration_since(t0), Duration::from_secs(60));
    /// ```
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: the offset is a value on its own; a thread that must see an advance made
        // by another learns of it through whatever told it the advance happened.
        let _ = self
            .inner
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(old.saturating_add(nanos))
            });
    }

    /// How far the clock has moved since it was created (by `advance` and `sleep`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::clock::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// clock.sleep(Duration::from_millis(100));
    /// clock.sleep(Duration::from_millis(200));
    /// assert_eq!(clock.elapsed(), Duration::from_millis(300));
    /// ```
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.inner.offset_nanos.load(Ordering::Relaxed))
    }
}

impl Default for ManualClock {
    /// The same as [`ManualClock::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.origin + self.elapsed()
    }

    /// Advances the clock by `d` and returns at once.
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

/// A cheap monotonic clock of coarse resolution, for timing that a few milliseconds cannot
/// change: Linux's `CLOCK_MONOTONIC_COARSE`, read through the vDSO (no system call), which
/// moves once per kernel tick (1 to 10 ms) and costs a fraction of [`Instant::now`].
///
/// Not a [`Clock`]: its readings are nanoseconds since an unspecified start, only to be
/// subtracted from one another. The circuit breaker times calls with it when its clock is the
/// default [`SystemClock`] and its slow-call threshold is far longer than a tick; a
/// configured clock (a [`ManualClock`] in tests) is always read instead.
pub(crate) mod coarse {
    use std::sync::OnceLock;
    use std::time::Duration;

    /// The current reading, in nanoseconds since an unspecified start.
    #[cfg(target_os = "linux")]
    #[inline]
    pub(crate) fn now_nanos() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        (t.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec as u64)
    }

    /// Where there is no coarse clock: the precise one, so a caller is never wrong, only
    /// slower ([`resolution`] says `None` there, and the breaker does not ask).
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn now_nanos() -> u64 {
        static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(std::time::Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How far apart its readings step (the kernel's tick); `None` where there is no coarse
    /// clock.
    pub(crate) fn resolution() -> Option<Duration> {
        static RESOLUTION: OnceLock<Option<Duration>> = OnceLock::new();
        *RESOLUTION.get_or_init(|| {
            #[cfg(target_os = "linux")]
            {
                let r = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
                let nanos = (r.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(r.tv_nsec as u64);
                (nanos > 0).then(|| Duration::from_nanos(nanos))
            }
            #[cfg(not(target_os = "linux"))]
            {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_stands_still_until_advanced() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        std::thread::yield_now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_nanos(1));
        assert_eq!(clock.now() - t0, Duration::from_nanos(1));
    }

    #[test]
    fn manual_sleep_advances_instead_of_blocking() {
        let clock = ManualClock::new();
        let wall = Instant::now();
        clock.sleep(Duration::from_secs(3600));
        assert_eq!(clock.elapsed(), Duration::from_secs(3600));
        // An hour of clock time, far less than an hour of wall time: the sleep did not block.
        assert!(wall.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn clones_share_one_time_across_threads() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = clock.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.advance(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Every advance from every clone counted, none lost to a race.
        assert_eq!(clock.now() - t0, Duration::from_secs(4));
    }

    #[test]
    fn advance_saturates_instead_of_wrapping() {
        let clock = ManualClock::new();
        clock.advance(Duration::MAX);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.elapsed(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn works_as_a_trait_object() {
        let clock = ManualClock::new();
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let t0 = dyn_clock.now();
        dyn_clock.sleep(Duration::from_secs(2));
        assert_eq!(clock.now() - t0, Duration::from_secs(2));
        assert!(format!("{clock:?}").contains("2s"));
    }

    #[test]
    fn the_coarse_clock_moves_by_its_resolution() {
        let Some(res) = coarse::resolution() else {
            return; // no coarse clock here: nothing uses it
        };
        assert!(
            res > Duration::ZERO && res < Duration::from_secs(1),
            "{res:?}"
        );
        let t0 = coarse::now_nanos();
        // A bounded wait for it to step: a few ticks of sleep, not a timing assertion.
        let mut t1 = t0;
        for _ in 0..1000 {
            std::thread::sleep(res);
            t1 = coarse::now_nanos();
            if t1 > t0 {
                break;
            }
        }
        assert!(t1 > t0, "the coarse clock never moved");
        // It never runs ahead of the precise clock it is a coarse copy of by more than a tick.
        let precise = Instant::now();
        let coarse_then = coarse::now_nanos();
        std::thread::sleep(Duration::from_millis(1));
        let coarse_elapsed = coarse::now_nanos() - coarse_then;
        assert!(Duration::from_nanos(coarse_elapsed) <= precise.elapsed() + res);
    }

    #[test]
    fn system_clock_moves() {
        let t0 = SystemClock.now();
        SystemClock.sleep(Duration::from_millis(2));
        assert!(SystemClock.now() - t0 >= Duration::from_millis(2));
    }
}
