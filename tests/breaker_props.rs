//! `CircuitBreaker` by property: its windows against a naive model, and its books under
//! arbitrary sequences of calls, outcomes, waits and manual moves.
//!
//! The models are the documented rules, written the slow obvious way: a count window is the
//! last `n` recorded outcomes; a time window of `d` whole seconds keeps a call while the
//! one-second bucket it was recorded in (counted from the breaker's creation) is one of the
//! last `d`. Time comes from a `ManualClock`, so every case is exact and repeatable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bulkheads::{
    CallPermit, CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock, SlidingWindow,
};
use proptest::prelude::*;

const MS: Duration = Duration::from_millis(1);

/// One recorded call: how long to wait before it, whether it fails, whether it is slow.
#[derive(Debug, Clone, Copy)]
struct Call {
    gap_ms: u64,
    failed: bool,
    slow: bool,
}

fn calls(max_gap_ms: u64) -> impl Strategy<Value = Vec<Call>> {
    prop::collection::vec(
        (0..=max_gap_ms, any::<bool>(), any::<bool>()).prop_map(|(gap_ms, failed, slow)| Call {
            gap_ms,
            failed,
            slow,
        }),
        0..120,
    )
}

/// A metrics-only breaker (records, never opens) judging from the first call; a call is
/// slow when it takes more than 1 ms, and a slow call here takes 2 ms.
fn recorder(window: SlidingWindow) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let b = CircuitBreaker::new(
        "prop",
        CircuitBreakerConfig::new()
            .sliding_window(window)
            .minimum_calls(1)
            .slow_call_duration(MS)
            .clock(Arc::new(clock.clone())),
    )
    .unwrap();
    b.transition_to(CircuitState::MetricsOnly).unwrap();
    (b, clock)
}

fn record(b: &CircuitBreaker, clock: &ManualClock, call: Call) {
    clock.advance(Duration::from_millis(call.gap_ms));
    let permit = b.try_acquire().unwrap();
    if call.slow {
        clock.advance(2 * MS);
    }
    if call.failed {
        permit.failure();
    } else {
        permit.success();
    }
}

/// (buffered, failed, slow) as the breaker reports them.
fn reported(b: &CircuitBreaker) -> (usize, usize, usize) {
    let m = b.metrics();
    (m.buffered_calls, m.failed_calls, m.slow_calls)
}

fn totals<'a>(outcomes: impl Iterator<Item = &'a (bool, bool)>) -> (usize, usize, usize) {
    outcomes.fold((0, 0, 0), |(n, f, s), &(failed, slow)| {
        (n + 1, f + usize::from(failed), s + usize::from(slow))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 128 }))]

    #[test]
    fn a_count_window_is_the_last_n_outcomes(n in 1_usize..12, calls in calls(50)) {
        let (b, clock) = recorder(SlidingWindow::Count(n));
        let mut model: VecDeque<(bool, bool)> = VecDeque::new();
        for call in calls {
            record(&b, &clock, call);
            model.push_back((call.failed, call.slow));
            if model.len() > n {
                model.pop_front();
            }
            prop_assert_eq!(reported(&b), totals(model.iter()));
            let m = b.metrics();
            let (calls_in, failed, _) = totals(model.iter());
            prop_assert_eq!(m.failure_rate, Some(failed as f64 * 100.0 / calls_in as f64));
        }
    }

    #[test]
    fn a_time_window_keeps_the_last_d_one_second_buckets(
        d in 1_u64..6,
        calls in calls(1_500),
        tail_ms in 0_u64..8_000,
    ) {
        let (b, clock) = recorder(SlidingWindow::Time(Duration::from_secs(d)));
        // Calls as (milliseconds since the breaker was made, at their outcome; outcome).
        let mut model: Vec<(u64, (bool, bool))> = Vec::new();
        let mut now_ms = 0;
        let in_window = |model: &[(u64, (bool, bool))], now_ms: u64| {
            let now_bucket = now_ms / 1_000;
            totals(
                model
                    .iter()
                    .filter(|(at, _)| at / 1_000 + d > now_bucket)
                    .map(|(_, o)| o),
            )
        };
        for call in calls {
            record(&b, &clock, call);
            now_ms += call.gap_ms + if call.slow { 2 } else { 0 };
            model.push((now_ms, (call.failed, call.slow)));
            prop_assert_eq!(reported(&b), in_window(&model, now_ms));
        }
        // And after an idle tail, with no call to slide the window along.
        clock.advance(Duration::from_millis(tail_ms));
        prop_assert_eq!(reported(&b), in_window(&model, now_ms + tail_ms));
    }
}

/// One step of a random workload against a full breaker.
#[derive(Debug, Clone)]
enum Op {
    /// Ask for a permit and keep it (a call in flight).
    Acquire,
    /// Finish the oldest call in flight: 0 success, 1 failure, 2 ignore, 3 drop unrecorded.
    Finish(u8),
    Advance(u64),
    Move(CircuitState),
    Reset,
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let state = prop_oneof![
        Just(CircuitState::Closed),
        Just(CircuitState::Open),
        Just(CircuitState::HalfOpen),
        Just(CircuitState::Disabled),
        Just(CircuitState::ForcedOpen),
        Just(CircuitState::MetricsOnly),
    ];
    let op = prop_oneof![
        5 => Just(Op::Acquire),
        5 => (0_u8..4).prop_map(Op::Finish),
        2 => (0_u64..3_000).prop_map(Op::Advance),
        3 => state.prop_map(Op::Move),
        1 => Just(Op::Reset),
    ];
    prop::collection::vec(op, 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 1024 }))]

    /// Whatever happens, nothing panics, a half-open breaker never has more probes out than
    /// `half_open_calls`, and every attempt is accounted for exactly once: refused, or
    /// recorded as a success or a failure, or ignored (disabled calls record nothing).
    #[test]
    fn the_books_add_up_whatever_happens(
        window in prop_oneof![
            (1_usize..8).prop_map(SlidingWindow::Count),
            (1_u64..4).prop_map(|s| SlidingWindow::Time(Duration::from_secs(s))),
        ],
        minimum in 1_usize..6,
        half_open in 1_usize..4,
        threshold in 1.0_f64..=100.0,
        ops in ops(),
    ) {
        let clock = ManualClock::new();
        let b = CircuitBreaker::new(
            "prop",
            CircuitBreakerConfig::new()
                .sliding_window(window)
                .minimum_calls(minimum)
                .failure_rate_threshold(threshold)
                .half_open_calls(half_open)
                .wait_in_open(Duration::from_secs(1))
                .max_wait_in_half_open(Duration::from_secs(5))
                .clock(Arc::new(clock.clone())),
        )
        .unwrap();
        // (permit, the state that admitted it, the transitions made before it was admitted)
        let mut in_flight: VecDeque<(CallPermit<'_>, CircuitState, u64)> = VecDeque::new();
        let (mut refused, mut recorded, mut ignored) = (0_u64, 0_u64, 0_u64);
        for op in ops {
            match op {
                Op::Acquire => match b.try_acquire() {
                    Ok(p) => {
                        let admitted_by = b.state();
                        in_flight.push_back((p, admitted_by, b.metrics().transitions_total));
                    }
                    Err(err) => {
                        prop_assert!(err.is_circuit_open());
                        refused += 1;
                    }
                },
                Op::Finish(how) => {
                    if let Some((p, admitted_by, _)) = in_flight.pop_front() {
                        let disabled = admitted_by == CircuitState::Disabled;
                        match how {
                            0 => p.success(),
                            1 => p.failure(),
                            2 => p.ignore(),
                            _ => drop(p),
                        }
                        match (disabled, how) {
                            // Disabled: nothing is recorded or counted, which the
                            // totals below check by leaving these calls out.
                            (true, _) => {}
                            (false, 0 | 1) => recorded += 1,
                            (false, _) => ignored += 1,
                        }
                    }
                }
                Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                Op::Move(to) => {
                    let from = b.state();
                    let moved = b.transition_to(to);
                    prop_assert_eq!(moved.is_ok(), from.can_move_to(to));
                }
                Op::Reset => b.reset(),
            }
            if b.state() == CircuitState::HalfOpen {
                // The probes out in this half-open state (not those of earlier ones, which
                // hold no place in it), plus every place still free, are at most
                // `half_open_calls`: take the free ones to count them.
                let current = b.metrics().transitions_total;
                let probes = in_flight
                    .iter()
                    .filter(|(_, s, t)| *s == CircuitState::HalfOpen && *t == current)
                    .count();
                let mut extra = Vec::new();
                while let Ok(p) = b.try_acquire() {
                    extra.push(p);
                    prop_assert!(
                        probes + extra.len() <= half_open,
                        "{} probes out and {} more admitted, of {half_open} places",
                        probes,
                        extra.len()
                    );
                }
                refused += 1; // the refusal that ended the loop
                for p in extra {
                    p.ignore();
                    ignored += 1;
                }
            }
        }
        let m = b.metrics();
        prop_assert_eq!(m.not_permitted_total, refused);
        prop_assert_eq!(m.successes_total + m.failures_total, recorded);
        prop_assert_eq!(m.ignored_total, ignored);
        prop_assert!(m.buffered_calls as u64 <= recorded);
    }
}
