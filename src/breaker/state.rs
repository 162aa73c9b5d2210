//! The breaker's states, the moves between them, and the atomic word that publishes them.
//!
//! The word is what `try_acquire` reads without a lock:
//!
//! ```text
//!  63            32 31                 8 7      0
//! ┌────────────────┬────────────────────┬────────┐
//! │   generation   │ half-open places   │ state  │
//! └────────────────┴────────────────────┴────────┘
//! ```
//!
//! Every transition stores a new word with the generation one higher, under the breaker's
//! lock. A half-open place is taken by a compare-and-swap on the whole word, so a place can
//! only be taken from, and given back to, the generation it belongs to: a permit of an older
//! generation finds a different word and gives nothing back to a half-open state it was never
//! admitted by. (The generation wraps after 2^32 transitions; a permit would have to live
//! through all of them for that to matter.)

use std::fmt;

/// The state of a [`CircuitBreaker`](crate::CircuitBreaker): resilience4j's six.
///
/// # Examples
///
/// ```
/// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// let breaker = CircuitBreaker::new("inventory", CircuitBreakerConfig::new())?;
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// assert_eq!(CircuitState::HalfOpen.to_string(), "half-open");
/// # Ok::<(), bulkheads::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls flow and are recorded; the breaker opens when a rate reaches its threshold.
    Closed,
    /// Calls are refused until `wait_in_open` has passed; then the next `try_acquire`
    /// moves the breaker to half-open.
    Open,
    /// Exactly `half_open_calls` probes are admitted; their outcomes close the breaker or
    /// open it again.
    HalfOpen,
    /// Calls flow and nothing is recorded; only a manual transition leaves it.
    Disabled,
    /// Calls are refused, whatever the time; only a manual transition leaves it.
    ForcedOpen,
    /// Calls flow and are recorded, but the breaker never opens: the metrics without the
    /// consequences.
    MetricsOnly,
}

impl CircuitState {
    pub(crate) const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::Disabled => 3,
            Self::ForcedOpen => 4,
            Self::MetricsOnly => 5,
        }
    }

    fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::Disabled,
            4 => Self::ForcedOpen,
            _ => Self::MetricsOnly,
        }
    }

    /// The state's number in the Prometheus gauge: resilience4j's order (closed 0, open 1,
    /// half-open 2, disabled 3, forced open 4, metrics-only 5).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::CircuitState;
    ///
    /// assert_eq!(CircuitState::Open.order(), 1);
    /// ```
    pub fn order(self) -> u8 {
        self.code() as u8
    }

    /// Whether the breaker may move from `self` to `to` on request
    /// ([`transition_to`](crate::CircuitBreaker::transition_to)): resilience4j's table.
    /// A state never moves to itself (use [`reset`](crate::CircuitBreaker::reset) to
    /// clear a closed breaker's window); closed and metrics-only never move to half-open,
    /// and metrics-only never to open.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::CircuitState;
    ///
    /// assert!(CircuitState::Open.can_move_to(CircuitState::HalfOpen));
    /// assert!(!CircuitState::Closed.can_move_to(CircuitState::HalfOpen));
    /// ```
    pub fn can_move_to(self, to: CircuitState) -> bool {
        use CircuitState::*;
        match (self, to) {
            (from, to) if from == to => false,
            (Closed | MetricsOnly, HalfOpen) => false,
            (MetricsOnly, Open) => false,
            _ => true,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::Disabled => "disabled",
            Self::ForcedOpen => "forced open",
            Self::MetricsOnly => "metrics-only",
        })
    }
}

const STATE_MASK: u64 = 0xff;
const PLACES_SHIFT: u32 = 8;
const PLACES_MASK: u64 = 0x00ff_ffff;
const GEN_SHIFT: u32 = 32;
/// One half-open place, in the word's units.
pub(crate) const PLACE: u64 = 1 << PLACES_SHIFT;

/// The word of `state` in `generation` with `places` free half-open places.
pub(crate) fn pack(state: CircuitState, places: usize, generation: u32) -> u64 {
    debug_assert!(places as u64 <= PLACES_MASK);
    (u64::from(generation) << GEN_SHIFT)
        | ((places as u64 & PLACES_MASK) << PLACES_SHIFT)
        | state.code()
}

pub(crate) fn state_of(word: u64) -> CircuitState {
    CircuitState::from_code(word & STATE_MASK)
}

pub(crate) fn places_of(word: u64) -> usize {
    ((word >> PLACES_SHIFT) & PLACES_MASK) as usize
}

pub(crate) fn generation_of(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use CircuitState::*;

    const ALL: [CircuitState; 6] = [Closed, Open, HalfOpen, Disabled, ForcedOpen, MetricsOnly];

    #[test]
    fn the_word_round_trips() {
        for state in ALL {
            for places in [0, 1, 10, PLACES_MASK as usize] {
                for generation in [0, 1, u32::MAX] {
                    let w = pack(state, places, generation);
                    assert_eq!(state_of(w), state);
                    assert_eq!(places_of(w), places);
                    assert_eq!(generation_of(w), generation);
                }
            }
        }
        // Taking a place is a plain subtraction that leaves the rest alone.
        let w = pack(HalfOpen, 4, 9) - PLACE;
        assert_eq!(
            (state_of(w), places_of(w), generation_of(w)),
            (HalfOpen, 3, 9)
        );
    }

    #[test]
    fn the_transition_table_is_resilience4j_s() {
        let allowed: Vec<(CircuitState, CircuitState)> = ALL
            .iter()
            .flat_map(|&a| ALL.iter().map(move |&b| (a, b)))
            .filter(|&(a, b)| a.can_move_to(b))
            .collect();
        // 6 states x 5 others = 30 moves, less Closed->HalfOpen, MetricsOnly->HalfOpen
        // and MetricsOnly->Open.
        assert_eq!(allowed.len(), 27);
        assert!(!Closed.can_move_to(Closed));
        assert!(ForcedOpen.can_move_to(HalfOpen));
        assert!(Disabled.can_move_to(HalfOpen));
        assert!(MetricsOnly.can_move_to(Closed));
        for state in ALL {
            assert_eq!(CircuitState::from_code(state.code()), state);
        }
    }
}
