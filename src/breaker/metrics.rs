//! [`CircuitMetrics`]: a breaker's snapshot, for programs, for people (the rows under the
//! manager's table) and for Prometheus (the `bulkhead_circuit_*` families).

use std::fmt::{self, Write as _};

use super::CircuitState;
use crate::prometheus::write_label_value;

/// A snapshot of a [`CircuitBreaker`](super::CircuitBreaker)'s window and counters.
///
/// The window's figures (`buffered_calls` … `not_permitted_calls`) belong to the current
/// state, as resilience4j's: they start afresh when the breaker closes, goes half-open or
/// is moved by hand, and an open breaker shows the figures that opened it. The `_total`
/// counters count since the breaker was made and only grow, for monitoring.
///
/// # Examples
///
/// ```
/// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// let breaker = CircuitBreaker::new("db", CircuitBreakerConfig::new().minimum_calls(1))?;
/// breaker.try_acquire()?.success();
/// let m = breaker.metrics();
/// assert_eq!(m.state, CircuitState::Closed);
/// assert_eq!((m.buffered_calls, m.successful_calls, m.failure_rate), (1, 1, Some(0.0)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CircuitMetrics {
    /// The breaker's name.
    pub name: String,
    /// The state at the time of the snapshot.
    pub state: CircuitState,
    /// Percent of the window's calls that failed; `None` until the window holds its
    /// minimum number of calls.
    pub failure_rate: Option<f64>,
    /// Percent of the window's calls that were slow; `None` until the window holds its
    /// minimum number of calls.
    pub slow_call_rate: Option<f64>,
    /// Calls in the window.
    pub buffered_calls: usize,
    /// Failed calls in the window.
    pub failed_calls: usize,
    /// Successful calls in the window.
    pub successful_calls: usize,
    /// Slow calls in the window, successful or not.
    pub slow_calls: usize,
    /// Calls refused since the window started.
    pub not_permitted_calls: u64,
    /// Successes recorded since the breaker was made (also those of permits taken before a
    /// transition, which the window does not count).
    pub successes_total: u64,
    /// Failures recorded since the breaker was made.
    pub failures_total: u64,
    /// Slow calls recorded since the breaker was made.
    pub slow_total: u64,
    /// Permits ignored or dropped without an outcome since the breaker was made.
    pub ignored_total: u64,
    /// Calls refused since the breaker was made.
    pub not_permitted_total: u64,
    /// State transitions since the breaker was made (`reset` counts as one).
    pub transitions_total: u64,
}

impl PartialEq for CircuitMetrics {
    /// Field by field; the rates compare by their bits, so equality is total (the rates are
    /// never NaN) and snapshots can be `Eq` like the other stats.
    fn eq(&self, other: &Self) -> bool {
        let bits = |r: Option<f64>| r.map(f64::to_bits);
        self.name == other.name
            && self.state == other.state
            && bits(self.failure_rate) == bits(other.failure_rate)
            && bits(self.slow_call_rate) == bits(other.slow_call_rate)
            && self.buffered_calls == other.buffered_calls
            && self.failed_calls == other.failed_calls
            && self.successful_calls == other.successful_calls
            && self.slow_calls == other.slow_calls
            && self.not_permitted_calls == other.not_permitted_calls
            && self.successes_total == other.successes_total
            && self.failures_total == other.failures_total
            && self.slow_total == other.slow_total
            && self.ignored_total == other.ignored_total
            && self.not_permitted_total == other.not_permitted_total
            && self.transitions_total == other.transitions_total
    }
}

impl Eq for CircuitMetrics {}

const STATES: [CircuitState; 6] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::Disabled,
    CircuitState::ForcedOpen,
    CircuitState::MetricsOnly,
];

/// The label value of a state: snake case, as Prometheus labels usually are.
pub(crate) fn state_label(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half_open",
        CircuitState::Disabled => "disabled",
        CircuitState::ForcedOpen => "forced_open",
        CircuitState::MetricsOnly => "metrics_only",
    }
}

/// A sample's extra label and value.
enum Sample {
    Count(Option<(&'static str, &'static str)>, u64),
    Rate(f64),
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: fn(&CircuitMetrics) -> Vec<Sample>,
}

const FAMILIES: &[Family] = &[
    Family {
        name: "bulkhead_circuit_state",
        help: "The state of a circuit breaker: 1 for the state it is in, 0 for the others.",
        kind: "gauge",
        samples: |m| {
            STATES
                .iter()
                .map(|&s| Sample::Count(Some(("state", state_label(s))), u64::from(m.state == s)))
                .collect()
        },
    },
    Family {
        name: "bulkhead_circuit_calls_total",
        help: "Calls through a circuit breaker by outcome, since it was made: successful and \
               failed (recorded), ignored (no outcome counted) and not_permitted (refused).",
        kind: "counter",
        samples: |m| {
            vec![
                Sample::Count(Some(("outcome", "successful")), m.successes_total),
                Sample::Count(Some(("outcome", "failed")), m.failures_total),
                Sample::Count(Some(("outcome", "ignored")), m.ignored_total),
                Sample::Count(Some(("outcome", "not_permitted")), m.not_permitted_total),
            ]
        },
    },
    Family {
        name: "bulkhead_circuit_slow_calls_total",
        help: "Calls through a circuit breaker slower than its slow_call_duration, since it \
               was made.",
        kind: "counter",
        samples: |m| vec![Sample::Count(None, m.slow_total)],
    },
    Family {
        name: "bulkhead_circuit_transitions_total",
        help: "State transitions of a circuit breaker, since it was made.",
        kind: "counter",
        samples: |m| vec![Sample::Count(None, m.transitions_total)],
    },
    Family {
        name: "bulkhead_circuit_buffered_calls",
        help: "Calls in a circuit breaker's current window.",
        kind: "gauge",
        samples: |m| vec![Sample::Count(None, m.buffered_calls as u64)],
    },
    Family {
        name: "bulkhead_circuit_failure_rate",
        help: "Percent of the calls in a circuit breaker's window that failed; absent until \
               the window holds its minimum number of calls.",
        kind: "gauge",
        samples: |m| m.failure_rate.map(Sample::Rate).into_iter().collect(),
    },
    Family {
        name: "bulkhead_circuit_slow_call_rate",
        help: "Percent of the calls in a circuit breaker's window that were slow; absent \
               until the window holds its minimum number of calls.",
        kind: "gauge",
        samples: |m| m.slow_call_rate.map(Sample::Rate).into_iter().collect(),
    },
];

struct Exposition<'a>(&'a [CircuitMetrics]);

impl fmt::Display for Exposition<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for family in FAMILIES {
            let mut header_written = false;
            for m in self.0 {
                for sample in (family.samples)(m) {
                    if !header_written {
                        writeln!(f, "# HELP {} {}", family.name, family.help)?;
                        writeln!(f, "# TYPE {} {}", family.name, family.kind)?;
                        header_written = true;
                    }
                    write!(f, "{}{{bulkhead=\"", family.name)?;
                    write_label_value(f, &m.name)?;
                    f.write_str("\",kind=\"circuit_breaker\"")?;
                    match sample {
                        Sample::Count(label, n) => {
                            if let Some((key, value)) = label {
                                write!(f, ",{key}=\"{value}\"")?;
                            }
                            writeln!(f, "}} {n}")?;
                        }
                        Sample::Rate(r) => writeln!(f, "}} {r}")?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Appends the breakers' families to an exposition (nothing for no breaker).
pub(crate) fn append_prometheus(text: &mut String, breakers: &[CircuitMetrics]) {
    // Writing to a String cannot fail.
    let _ = write!(text, "{}", Exposition(breakers));
}

impl CircuitMetrics {
    /// This breaker's snapshot in the Prometheus text exposition format (version 0.0.4).
    /// To expose several, hold them in a manager and use
    /// [`ManagerStats::to_prometheus`](crate::ManagerStats::to_prometheus): each family's
    /// header must appear once.
    ///
    /// Every series is labelled `bulkhead` (the breaker's name) and
    /// `kind="circuit_breaker"`:
    ///
    /// | family | type | series |
    /// | --- | --- | --- |
    /// | `bulkhead_circuit_state` | gauge | by `state` (`closed`, `open`, `half_open`, `disabled`, `forced_open`, `metrics_only`): 1 for the current state |
    /// | `bulkhead_circuit_calls_total` | counter | by `outcome`: `successful`, `failed`, `ignored`, `not_permitted` |
    /// | `bulkhead_circuit_slow_calls_total` | counter | |
    /// | `bulkhead_circuit_transitions_total` | counter | |
    /// | `bulkhead_circuit_buffered_calls` | gauge | calls in the window |
    /// | `bulkhead_circuit_failure_rate`, `bulkhead_circuit_slow_call_rate` | gauge | percent; absent below the minimum |
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
    ///
    /// let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new())?;
    /// breaker.transition_to(CircuitState::Open)?;
    /// let _ = breaker.try_acquire();
    /// let text = breaker.metrics().to_prometheus();
    /// assert!(text.contains(
    ///     "bulkhead_circuit_state{bulkhead=\"email\",kind=\"circuit_breaker\",state=\"open\"} 1\n"
    /// ));
    /// assert!(text.contains(
    ///     "bulkhead_circuit_calls_total{bulkhead=\"email\",kind=\"circuit_breaker\",outcome=\"not_permitted\"} 1\n"
    /// ));
    /// assert!(text.contains("bulkhead_circuit_transitions_total{bulkhead=\"email\",kind=\"circuit_breaker\"} 1\n"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_prometheus(&self) -> String {
        Exposition(std::slice::from_ref(self)).to_string()
    }
}

const HEADERS: [&str; 7] = [
    "breaker",
    "state",
    "failure rate",
    "slow rate",
    "buffered",
    "not permitted",
    "transitions",
];

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}%"))
}

/// The breakers' table, under the bulkheads' one (nothing for no breaker).
pub(crate) fn write_table(f: &mut fmt::Formatter<'_>, breakers: &[CircuitMetrics]) -> fmt::Result {
    if breakers.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 7]> = breakers
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.state.to_string(),
                rate(m.failure_rate),
                rate(m.slow_call_rate),
                m.buffered_calls.to_string(),
                m.not_permitted_total.to_string(),
                m.transitions_total.to_string(),
            ]
        })
        .collect();
    writeln!(f)?;
    crate::stats::write_aligned(f, HEADERS, &rows)
}
