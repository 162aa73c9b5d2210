//! [`CircuitBreaker`]: stop calling a dependency that keeps failing, and probe it before
//! trusting it again — resilience4j's state machine, with permits that cannot leak.
//!
//! The design note is `README.md` beside this file. In short: the state, its generation
//! and the free half-open places share one atomic word ([`state`]), so `try_acquire` in the
//! closed state is one atomic load and a clock reading (a coarse one, where it cannot matter:
//! [`coarse`]); an outcome takes the breaker's one lock for as long as it takes to add it to
//! the window ([`window`]) and compare two counts; and every transition happens under that
//! lock, storing a word of a new generation.

mod config;
#[cfg(all(test, bulkheads_loom))]
mod loom_models;
mod metrics;
mod permit;
mod state;
mod window;

use std::fmt;
use std::time::{Duration, Instant};

use crate::clock::coarse;
use crate::error::{BulkheadError, ConfigError};
use crate::event::{Event, EventKind, Listener, Listeners};
use crate::policy::PolicyError;
use crate::sync::plain::{AtomicU64 as Counter, Ordering as CounterOrdering};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

pub use config::{CircuitBreakerConfig, SlidingWindow};
pub use metrics::CircuitMetrics;
pub use permit::CallPermit;
pub use state::CircuitState;

#[cfg(feature = "serde")]
pub(crate) use metrics::state_label;
pub(crate) use metrics::{append_prometheus, write_table};

use permit::Start;
use state::{PLACE, generation_of, pack, places_of, state_of};
use window::{Outcome, Verdict, Window};

/// A circuit breaker: counts recent outcomes of calls to one dependency and, when too many
/// fail or are slow, refuses calls for a while instead of letting them pile up.
///
/// States and rules are resilience4j's ([`CircuitState`]): closed, it records every
/// outcome in a sliding window and opens when the failure rate or the slow-call rate reaches
/// its threshold (judged once `minimum_calls` are in the window); open, it refuses calls
/// with [`BulkheadError::CircuitOpen`] until `wait_in_open` has passed, when the next
/// [`try_acquire`](Self::try_acquire) moves it to half-open; half-open, it admits exactly
/// `half_open_calls` probes and closes or opens again on their outcomes. Refused calls never
/// enter the window. Forced-open, disabled and metrics-only are manual states.
///
/// Transitions happen on calls (and on [`transition_to`](Self::transition_to) and
/// [`reset`](Self::reset)): no timer thread, so [`state`](Self::state) of an idle open
/// breaker reads `Open` after its wait until somebody asks to call.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock, SlidingWindow};
///
/// let clock = ManualClock::new();
/// let breaker = CircuitBreaker::new(
///     "email",
///     CircuitBreakerConfig::new()
///         .sliding_window(SlidingWindow::Count(4))
///         .wait_in_open(Duration::from_secs(30))
///         .half_open_calls(1)
///         .clock(Arc::new(clock.clone())),
/// )?;
///
/// for _ in 0..4 {
///     let _ = breaker.call(|| Err::<(), _>("smtp: 451 try again later"));
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// let refused = breaker.call(|| Ok::<_, &str>("sent")).unwrap_err();
/// assert!(refused.is_circuit_open()); // the call never ran
///
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(breaker.call(|| Ok::<_, &str>("sent")).ok(), Some("sent")); // the probe
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CircuitBreaker {
    name: Arc<str>,
    config: CircuitBreakerConfig,
    /// The instant that nanosecond offsets count from (the clock's `now` at creation): the
    /// deadlines below are atomics, and an `Instant` is not.
    origin: Instant,
    /// Whether calls are timed on the coarse clock ([`coarse`]) rather than on the
    /// configured one: with the default clock and a slow-call threshold of at least
    /// [`COARSE_TICKS`] of its ticks, where being a tick out cannot change a verdict that
    /// matters, and reading it costs under a quarter of what `Instant::now` does.
    coarse: bool,
    /// `slow_call_duration` in nanoseconds, for the coarse clock's readings.
    slow_nanos: u64,
    /// State, free half-open places and generation ([`state`] has the layout). Acquire and
    /// release: a reader that sees a word also sees the deadlines stored before it.
    word: AtomicU64,
    /// When the open state ends, in nanoseconds since `origin` (meaningful while open).
    open_until: Counter,
    /// When a half-open state gives up on its probes (`u64::MAX`: never).
    half_open_until: Counter,
    /// Refusals since the window was last reset (resilience4j's `numberOfNotPermittedCalls`).
    not_permitted: Counter,
    /// Refusals since the breaker was made; only grows.
    not_permitted_total: Counter,
    core: Mutex<Core>,
    /// Listeners of transitions and refusals; called with no lock held.
    listeners: Listeners,
}

/// A transition made under the lock, to announce once it is released.
type Moved = Option<(CircuitState, CircuitState)>;

/// What the breaker's lock guards.
#[derive(Debug)]
struct Core {
    window: Window,
    /// The calls the window must hold before its rates count: `minimum_calls` (capped by a
    /// count window) for the closed window, `half_open_calls` for the half-open one. The
    /// open state keeps the window, and this, of the state it came from.
    minimum: u64,
    /// Openings in a row since the breaker last closed: the growing wait's exponent.
    attempts: u32,
    /// The thresholds as counts for the window's current number of calls.
    verdict: Verdict,
    lifetime: Lifetime,
}

/// How many ticks of the coarse clock the slow-call threshold must span before calls are
/// timed on it: a tick out is then a thousandth of the threshold.
const COARSE_TICKS: u32 = 1000;

/// The instant an outcome is recorded at, in nanoseconds since the breaker's origin, read
/// from the breaker's clock only if something needs it (a time window, a transition): a
/// count window in the closed state records a call without reading it.
struct Now<'a> {
    breaker: &'a CircuitBreaker,
    /// Known already when the call was timed on the breaker's clock: its end.
    nanos: Option<u64>,
}

impl Now<'_> {
    /// What `window` files the call at: the instant for a time window, nothing (0) for a
    /// count window, which never reads it.
    fn for_window(&mut self, window: &Window) -> u64 {
        if window.is_timed() { self.get() } else { 0 }
    }

    fn get(&mut self) -> u64 {
        let breaker = self.breaker;
        *self
            .nanos
            .get_or_insert_with(|| breaker.nanos(breaker.config.clock.now()))
    }
}

/// Counters since the breaker was made; they only grow.
#[derive(Debug, Default, Clone, Copy)]
struct Lifetime {
    successes: u64,
    failures: u64,
    slow: u64,
    ignored: u64,
    transitions: u64,
}

impl CircuitBreaker {
    /// A closed breaker called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field when the configuration is invalid
    /// (see [`CircuitBreakerConfig::validate`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig};
    ///
    /// let err = CircuitBreaker::new("db", CircuitBreakerConfig::new().half_open_calls(0)).unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("db", "half_open_calls"));
    /// ```
    pub fn new(name: &str, config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        config.validate(name)?;
        let origin = config.clock.now();
        let coarse = config.default_clock
            && coarse::resolution()
                .and_then(|tick| tick.checked_mul(COARSE_TICKS))
                .is_some_and(|span| config.slow_call_duration >= span);
        Ok(Self {
            name: Arc::from(name),
            origin,
            coarse,
            slow_nanos: u64::try_from(config.slow_call_duration.as_nanos()).unwrap_or(u64::MAX),
            word: AtomicU64::new(pack(CircuitState::Closed, 0, 0)),
            open_until: Counter::new(0),
            half_open_until: Counter::new(u64::MAX),
            not_permitted: Counter::new(0),
            not_permitted_total: Counter::new(0),
            core: Mutex::new(Core {
                window: Window::new(config.sliding_window, 0),
                minimum: config.effective_minimum() as u64,
                attempts: 0,
                verdict: Verdict::new(
                    config.failure_rate_threshold,
                    config.slow_call_rate_threshold,
                ),
                lifetime: Lifetime::default(),
            }),
            listeners: Listeners::new("circuit_breaker"),
            config,
        })
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The breaker's configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    /// The current state. Reading it changes nothing: an open breaker whose wait has
    /// passed reads `Open` until the next [`try_acquire`](Self::try_acquire).
    pub fn state(&self) -> CircuitState {
        state_of(self.word.load(Ordering::Acquire))
    }

    /// Asks to make one call: a [`CallPermit`] that measures it and must be told its
    /// outcome, or a refusal.
    ///
    /// Never blocks. In the open state, the first call after `wait_in_open` moves the
    /// breaker to half-open; in the half-open state, the first call after
    /// `max_wait_in_half_open` (if set) opens it again.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::CircuitOpen`] when the breaker is open (with the time left in
    /// [`retry_after`](BulkheadError::retry_after)), forced open, or half-open with all its
    /// probes out. A refusal is counted in `not_permitted_calls` and never enters the
    /// window.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig};
    ///
    /// let breaker = CircuitBreaker::new("inventory", CircuitBreakerConfig::new())?;
    /// let permit = breaker.try_acquire()?;
    /// let stock = 42; // the call
    /// permit.success();
    /// assert_eq!(breaker.metrics().buffered_calls, 1);
    /// # let _ = stock;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<CallPermit<'_>, BulkheadError> {
        // The closed state inline, so the permit is built in the caller's registers; the
        // rest out of line.
        let word = self.word.load(Ordering::Acquire);
        if state_of(word) == CircuitState::Closed {
            return Ok(self.permit(word, false, self.start()));
        }
        self.try_acquire_slow()
    }

    /// [`try_acquire`](Self::try_acquire) in any state.
    fn try_acquire_slow(&self) -> Result<CallPermit<'_>, BulkheadError> {
        loop {
            let word = self.word.load(Ordering::Acquire);
            match state_of(word) {
                // CLOSED / METRICS_ONLY: admit, measure.
                CircuitState::Closed | CircuitState::MetricsOnly => {
                    return Ok(self.permit(word, false, self.start()));
                }
                // DISABLED: admit; nothing is recorded, so nothing is measured.
                CircuitState::Disabled => return Ok(self.permit(word, false, Start::Untimed)),
                // FORCED_OPEN: refuse, with no end in sight.
                CircuitState::ForcedOpen => return Err(self.refuse(CircuitState::ForcedOpen, None)),
                // OPEN: refuse until the wait has passed, then the first caller moves the
                // breaker to half-open and everybody looks again.
                CircuitState::Open => {
                    let now = self.nanos(self.config.clock.now());
                    let until = self.open_until.load(CounterOrdering::Relaxed);
                    if now < until {
                        let left = Duration::from_nanos(until - now);
                        return Err(self.refuse(CircuitState::Open, Some(left)));
                    }
                    self.transition_from(word, CircuitState::HalfOpen, now);
                }
                // HALF_OPEN: take one of the free places, if any, by a CAS on the word of
                // this generation.
                CircuitState::HalfOpen => {
                    let give_up = self.half_open_until.load(CounterOrdering::Relaxed);
                    if give_up != u64::MAX {
                        let now = self.nanos(self.config.clock.now());
                        if now >= give_up {
                            self.transition_from(word, CircuitState::Open, now);
                            continue;
                        }
                    }
                    if places_of(word) == 0 {
                        return Err(self.refuse(CircuitState::HalfOpen, None));
                    }
                    if self
                        .word
                        .compare_exchange_weak(
                            word,
                            word - PLACE,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        )
                        .is_ok()
                    {
                        return Ok(self.permit(word, true, self.start()));
                    }
                }
            }
        }
    }

    /// Runs `f` under a permit: `Ok` is a success, `Err` a failure, a panic a failure (and
    /// the panic goes on unwinding to the caller).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Bulkhead`] with [`BulkheadError::CircuitOpen`] when the breaker
    /// refuses (`f` does not run); [`PolicyError::Inner`] with `f`'s own error.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, PolicyError};
    ///
    /// let breaker = CircuitBreaker::new("parser", CircuitBreakerConfig::new())?;
    /// let err = breaker.call(|| "x1".parse::<u32>()).unwrap_err();
    /// assert!(matches!(err, PolicyError::Inner(_)));
    /// assert_eq!(breaker.metrics().failed_calls, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, PolicyError<E>> {
        let permit = self.try_acquire()?;
        match f() {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(err) => {
                permit.failure();
                Err(PolicyError::Inner(err))
            }
        }
    }

    /// The window's figures now, with the state they belong to.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, SlidingWindow};
    ///
    /// let breaker = CircuitBreaker::new(
    ///     "db",
    ///     CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(10)).minimum_calls(2),
    /// )?;
    /// breaker.try_acquire()?.failure();
    /// assert_eq!(breaker.metrics().failure_rate, None); // below the minimum
    /// breaker.try_acquire()?.success();
    /// let m = breaker.metrics();
    /// assert_eq!((m.buffered_calls, m.failed_calls, m.failure_rate), (2, 1, Some(50.0)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metrics(&self) -> CircuitMetrics {
        let now = self.nanos(self.config.clock.now());
        let mut core = self.core.lock();
        let totals = core.window.totals(now);
        let judged = totals.calls > 0 && totals.calls >= core.minimum;
        let lifetime = core.lifetime;
        let state = state_of(self.word.load(Ordering::Acquire));
        drop(core);
        CircuitMetrics {
            name: self.name.to_string(),
            state,
            failure_rate: judged.then(|| totals.failure_rate()),
            slow_call_rate: judged.then(|| totals.slow_call_rate()),
            buffered_calls: totals.calls as usize,
            failed_calls: totals.failed as usize,
            successful_calls: (totals.calls - totals.failed) as usize,
            slow_calls: totals.slow as usize,
            not_permitted_calls: self.not_permitted.load(CounterOrdering::Relaxed),
            successes_total: lifetime.successes,
            failures_total: lifetime.failures,
            slow_total: lifetime.slow,
            ignored_total: lifetime.ignored,
            not_permitted_total: self.not_permitted_total.load(CounterOrdering::Relaxed),
            transitions_total: lifetime.transitions,
        }
    }

    /// Moves the breaker to `state` by hand, as resilience4j's `transitionTo…State`.
    ///
    /// Every move but a state to itself is allowed, except closed → half-open,
    /// metrics-only → half-open and metrics-only → open ([`CircuitState::can_move_to`]).
    /// Moving to open starts a wait in the open state; to half-open, a fresh set of probes;
    /// to any other state, a fresh window. Outcomes of permits taken before the move are
    /// not counted in the new state.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] with field `"state"` for an illegal move; the state is unchanged.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new("db", CircuitBreakerConfig::new())?;
    /// let err = breaker.transition_to(CircuitState::HalfOpen).unwrap_err();
    /// assert_eq!(err.to_string(), "invalid configuration for bulkhead 'db': state cannot move from closed to half-open");
    /// breaker.transition_to(CircuitState::ForcedOpen)?;
    /// assert!(breaker.try_acquire().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transition_to(&self, state: CircuitState) -> Result<(), ConfigError> {
        let now = self.nanos(self.config.clock.now());
        let mut core = self.core.lock();
        let from = state_of(self.word.load(Ordering::Acquire));
        if !from.can_move_to(state) {
            return Err(ConfigError::new(
                &self.name,
                "state",
                format!("cannot move from {from} to {state}"),
            ));
        }
        let moved = self.transition_locked(&mut core, state, now);
        drop(core);
        self.announce(moved);
        Ok(())
    }

    /// Closes the breaker with an empty window, whatever its state, and forgets earlier
    /// openings (the growing wait starts again). Counters ending in `_total` keep counting.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new("db", CircuitBreakerConfig::new())?;
    /// breaker.try_acquire()?.failure();
    /// breaker.transition_to(CircuitState::Open)?;
    /// breaker.reset();
    /// assert_eq!(breaker.state(), CircuitState::Closed);
    /// assert_eq!(breaker.metrics().buffered_calls, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self) {
        let now = self.nanos(self.config.clock.now());
        let mut core = self.core.lock();
        let moved = self.transition_locked(&mut core, CircuitState::Closed, now);
        drop(core);
        self.announce(moved);
    }

    /// Calls `listener` for every transition
    /// ([`EventKind::CircuitStateChanged`]) and every refused call
    /// ([`EventKind::CircuitNotPermitted`]) of this breaker, on the thread where it happens
    /// and with no lock held. A manager's listeners get them too, for the breakers it holds.
    /// Its panics are caught and dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new())?;
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&log);
    /// breaker.on_event(move |e| seen.lock().unwrap().push(e.to_string()));
    /// breaker.transition_to(CircuitState::Open)?;
    /// let _ = breaker.try_acquire();
    /// assert_eq!(
    ///     *log.lock().unwrap(),
    ///     ["email: circuit closed -> open", "email: call not permitted: circuit open"]
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_event<L>(&self, listener: L)
    where
        L: Fn(&Event<'_>) + Send + Sync + 'static,
    {
        self.listeners.add(Arc::new(listener));
    }

    pub(crate) fn add_listener(&self, listener: Listener) {
        self.listeners.add(listener);
    }

    fn announce(&self, moved: Moved) {
        if let Some((from, to)) = moved {
            self.listeners
                .emit(&self.name, EventKind::CircuitStateChanged { from, to });
        }
    }

    /// The start of a call, on the clock calls are timed with.
    #[inline]
    fn start(&self) -> Start {
        if self.coarse {
            Start::Coarse(coarse::now_nanos())
        } else {
            Start::Clock(self.nanos(self.config.clock.now()))
        }
    }

    #[inline]
    fn permit(&self, word: u64, holds_place: bool, start: Start) -> CallPermit<'_> {
        CallPermit {
            breaker: self,
            generation: generation_of(word),
            holds_place,
            start,
        }
    }

    fn refuse(&self, state: CircuitState, retry_after: Option<Duration>) -> BulkheadError {
        self.not_permitted.fetch_add(1, CounterOrdering::Relaxed);
        self.not_permitted_total
            .fetch_add(1, CounterOrdering::Relaxed);
        self.listeners
            .emit(&self.name, EventKind::CircuitNotPermitted { state });
        BulkheadError::CircuitOpen {
            name: Arc::clone(&self.name),
            state,
            retry_after,
        }
    }

    /// Nanoseconds from the breaker's origin to `t` (0 before it, saturating after 584 years).
    pub(super) fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Moves to `to` if the breaker is still in the state and generation of `seen`: of the
    /// callers that find the wait over at once, one moves it.
    fn transition_from(&self, seen: u64, to: CircuitState, now: u64) {
        let mut core = self.core.lock();
        let word = self.word.load(Ordering::Acquire);
        let moved =
            if generation_of(word) == generation_of(seen) && state_of(word) == state_of(seen) {
                self.transition_locked(&mut core, to, now)
            } else {
                None
            };
        drop(core);
        self.announce(moved);
    }

    /// Every transition goes through here, under the lock: sets up the new state's books,
    /// then publishes a word of the next generation.
    fn transition_locked(&self, core: &mut Core, to: CircuitState, now: u64) -> Moved {
        let old = self.word.load(Ordering::Acquire);
        let mut places = 0;
        match to {
            CircuitState::Open => {
                // The window stays: an open breaker shows the figures that opened it.
                core.attempts = core.attempts.saturating_add(1);
                let wait = self.config.wait_for_attempt(core.attempts);
                let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.open_until
                    .store(now.saturating_add(wait), CounterOrdering::Relaxed);
            }
            CircuitState::HalfOpen => {
                places = self.config.half_open_calls;
                core.window = Window::new(SlidingWindow::Count(places), now);
                core.minimum = places as u64;
                let give_up = self.config.max_wait_in_half_open.map_or(u64::MAX, |d| {
                    now.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                });
                self.half_open_until
                    .store(give_up, CounterOrdering::Relaxed);
                self.not_permitted.store(0, CounterOrdering::Relaxed);
            }
            CircuitState::Closed
            | CircuitState::Disabled
            | CircuitState::MetricsOnly
            | CircuitState::ForcedOpen => {
                // Forced open remembers the openings (leaving it for open keeps growing
                // the wait, as resilience4j's); the others start afresh.
                if to != CircuitState::ForcedOpen {
                    core.attempts = 0;
                }
                core.window = Window::new(self.config.sliding_window, now);
                core.minimum = self.config.effective_minimum() as u64;
                self.not_permitted.store(0, CounterOrdering::Relaxed);
            }
        }
        core.lifetime.transitions += 1;
        let generation = generation_of(old).wrapping_add(1);
        // A swap, not a store: a half-open place may be taken or given back by a CAS at
        // this very moment, and the new word must come after it in the word's order (a
        // read-modify-write always does; loom, at least, lets a plain store lose to a
        // concurrent CAS that read the value before it). Under the lock nothing else
        // changes the word, so the state and generation the swap replaces are `old`'s.
        let replaced = self
            .word
            .swap(pack(to, places, generation), Ordering::AcqRel);
        debug_assert_eq!(generation_of(replaced), generation_of(old));
        Some((state_of(old), to))
    }

    /// Records an outcome of a permit of `generation` started at `start`.
    fn record(&self, generation: u32, start: Start, failed: bool) {
        let (slow, end) = match start {
            Start::Coarse(start) => (
                coarse::now_nanos().saturating_sub(start) > self.slow_nanos,
                None,
            ),
            Start::Clock(start) => {
                // Both since the origin, which no reading of a clock that never goes back
                // precedes: the difference is the call's duration on the clock, exactly.
                let end = self.nanos(self.config.clock.now());
                (end.saturating_sub(start) > self.slow_nanos, Some(end))
            }
            Start::Untimed => return,
        };
        let mut now = Now {
            breaker: self,
            nanos: end,
        };
        if matches!(self.config.sliding_window, SlidingWindow::Time(_)) {
            // A time window files the call by when it ended: read the clock before taking
            // the lock rather than under it.
            now.get();
        }
        let mut core = self.core.lock();
        let moved = self.record_locked(&mut core, generation, &mut now, Outcome { failed, slow });
        drop(core);
        self.announce(moved);
    }

    fn record_locked(
        &self,
        core: &mut Core,
        generation: u32,
        now: &mut Now<'_>,
        outcome: Outcome,
    ) -> Moved {
        let Outcome { failed, slow } = outcome;
        if failed {
            core.lifetime.failures += 1;
        } else {
            core.lifetime.successes += 1;
        }
        core.lifetime.slow += u64::from(slow);
        let word = self.word.load(Ordering::Acquire);
        if generation_of(word) != generation {
            // A permit of an earlier state: its outcome says nothing about this one (a call
            // admitted while closed must not decide a half-open state's probes).
            return None;
        }
        match state_of(word) {
            CircuitState::Closed => {
                let at = now.for_window(&core.window);
                let totals = core.window.record(at, outcome);
                if totals.calls >= core.minimum && core.verdict.exceeded(totals) {
                    return self.transition_locked(core, CircuitState::Open, now.get());
                }
                None
            }
            CircuitState::MetricsOnly => {
                let at = now.for_window(&core.window);
                core.window.record(at, outcome);
                None
            }
            CircuitState::HalfOpen => {
                let at = now.for_window(&core.window);
                let totals = core.window.record(at, outcome);
                if totals.calls >= core.minimum {
                    let to = if core.verdict.exceeded(totals) {
                        CircuitState::Open
                    } else {
                        CircuitState::Closed
                    };
                    return self.transition_locked(core, to, now.get());
                }
                None
            }
            // Only admitting states hand out permits, and a permit of this generation was
            // handed out by this very state.
            CircuitState::Open | CircuitState::ForcedOpen | CircuitState::Disabled => None,
        }
    }

    /// Gives a half-open place back to the generation that lent it, if it is still current.
    fn release_place(&self, generation: u32) {
        let mut word = self.word.load(Ordering::Acquire);
        while generation_of(word) == generation && state_of(word) == CircuitState::HalfOpen {
            match self.word.compare_exchange_weak(
                word,
                word + PLACE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    fn ignored(&self) {
        self.core.lock().lifetime.ignored += 1;
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &&*self.name)
            .field("state", &self.state())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn breaker(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new("t", config.clock(Arc::new(clock.clone()))).unwrap();
        (b, clock)
    }

    #[test]
    fn a_stale_permit_neither_decides_half_open_nor_takes_its_place() {
        let (b, _clock) = breaker(CircuitBreakerConfig::new().half_open_calls(1));
        let stale = b.try_acquire().unwrap(); // closed, generation 0
        b.transition_to(CircuitState::Open).unwrap();
        b.transition_to(CircuitState::HalfOpen).unwrap();
        let probe = b.try_acquire().unwrap();
        stale.success(); // must not close the breaker on the probe's behalf
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.metrics().buffered_calls, 0);
        probe.failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.metrics().successes_total, 1);
    }

    #[test]
    fn a_place_given_back_late_goes_nowhere() {
        let (b, _clock) = breaker(CircuitBreakerConfig::new().half_open_calls(1));
        b.transition_to(CircuitState::Open).unwrap();
        b.transition_to(CircuitState::HalfOpen).unwrap();
        let old_probe = b.try_acquire().unwrap();
        b.transition_to(CircuitState::Open).unwrap();
        b.transition_to(CircuitState::HalfOpen).unwrap();
        drop(old_probe); // its half-open state is gone: the new one keeps exactly 1 place
        let w = b.word.load(Ordering::Acquire);
        assert_eq!(places_of(w), 1);
    }

    #[test]
    fn disabled_measures_nothing() {
        let (b, _clock) = breaker(CircuitBreakerConfig::new());
        b.transition_to(CircuitState::Disabled).unwrap();
        let p = b.try_acquire().unwrap();
        assert_eq!(p.elapsed(), Duration::ZERO);
        p.failure();
        assert_eq!(b.metrics().failures_total, 0);
    }

    #[test]
    fn only_the_default_clock_with_a_long_threshold_times_calls_coarsely() {
        let long = CircuitBreakerConfig::new().slow_call_duration(Duration::from_secs(60));
        let tick = coarse::resolution();
        let on_coarse =
            |config: CircuitBreakerConfig| CircuitBreaker::new("t", config).unwrap().coarse;
        // The default clock and a minute: coarse wherever there is a coarse clock.
        assert_eq!(on_coarse(long.clone()), tick.is_some());
        // A threshold of a few ticks: exact.
        let short = tick.map_or(Duration::from_millis(1), |t| t * 10);
        assert!(!on_coarse(long.clone().slow_call_duration(short)));
        // Any configured clock, even the system's own: exact.
        assert!(!on_coarse(
            long.clone().clock(Arc::new(crate::clock::SystemClock))
        ));
        let (manual, _clock) = breaker(long);
        assert!(!manual.coarse);
    }

    #[test]
    fn a_coarsely_timed_breaker_still_counts_and_opens() {
        let b = CircuitBreaker::new(
            "t",
            CircuitBreakerConfig::new()
                .sliding_window(SlidingWindow::Count(4))
                .minimum_calls(4),
        )
        .unwrap();
        for _ in 0..3 {
            b.try_acquire().unwrap().success();
        }
        let p = b.try_acquire().unwrap();
        assert!(p.elapsed() < Duration::from_secs(60));
        p.failure();
        let m = b.metrics();
        assert_eq!((m.buffered_calls, m.failed_calls, m.slow_calls), (4, 1, 0));
        assert_eq!(b.state(), CircuitState::Closed);
        b.try_acquire().unwrap().failure(); // evicts a success: 2 of 4 failed, 50 %
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.metrics().failure_rate, Some(50.0));
    }
}
