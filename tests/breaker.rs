//! `CircuitBreaker`: states, transitions, windows, permits that cannot leak, and books that
//! add up under contention.
//!
//! Ported from resilience4j, re-expressed for this API and driven by `ManualClock`:
//! - `resilience4j-circuitbreaker/src/test/java/io/github/resilience4j/circuitbreaker/internal/CircuitBreakerStateMachineTest.java`
//!   (the `r4j_*` state-machine tests: its `setUp` is `r4j_breaker` below);
//! - `resilience4j-core/src/test/java/io/github/resilience4j/core/metrics/FixedSizeSlidingWindowMetricsTest.java`
//!   and `SlidingTimeWindowMetricsTest.java` (the `count_window_*` and `time_window_*`
//!   tests, through a metrics-only breaker, which records without ever opening).
//!
//! Two differences in how the scenarios are written. resilience4j's `onSuccess(5, SECONDS)`
//! reports a duration without moving time; here a permit measures its call on the clock, so
//! a slow call is a permit taken, the clock advanced, then the outcome. Where that would
//! slide a time window, the permits are taken together first (the calls overlap), which
//! keeps every outcome inside the window as in the original. And resilience4j's
//! `tryAcquirePermission()` leaves a half-open place taken until `onSuccess`; here the place
//! is held by a `CallPermit`, so the tests keep their permits in a `Vec`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bulkheads::{
    BulkheadError, CallPermit, CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock,
    PolicyError, SlidingWindow,
};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn with_clock(config: CircuitBreakerConfig) -> (CircuitBreaker, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::new("testName", config.clock(Arc::new(clock.clone())))
        .expect("a valid configuration");
    (breaker, clock)
}

/// resilience4j's `setUp`: failure rate 50 %, 4 half-open probes, slow beyond 4 s, slow-call
/// rate 50 %, a 5 s time window judged from 5 calls, 5 s in the open state.
fn r4j_breaker() -> (CircuitBreaker, ManualClock) {
    with_clock(
        CircuitBreakerConfig::new()
            .failure_rate_threshold(50.0)
            .half_open_calls(4)
            .slow_call_duration(secs(4))
            .slow_call_rate_threshold(50.0)
            .sliding_window(SlidingWindow::Time(secs(5)))
            .minimum_calls(5)
            .wait_in_open(secs(5)),
    )
}

/// resilience4j's `assertCircuitBreakerMetricsEqualTo(rate, successes, buffered, failed,
/// notPermitted)`, where its -1 (below the minimum) is `None`.
#[track_caller]
fn assert_metrics(
    b: &CircuitBreaker,
    failure_rate: Option<f64>,
    successful: usize,
    buffered: usize,
    failed: usize,
    not_permitted: u64,
) {
    let m = b.metrics();
    assert_eq!(
        (
            m.failure_rate,
            m.successful_calls,
            m.buffered_calls,
            m.failed_calls,
            m.not_permitted_calls
        ),
        (failure_rate, successful, buffered, failed, not_permitted),
        "(failure_rate, successful, buffered, failed, not_permitted) in {m:?}"
    );
}

#[track_caller]
fn assert_reset(b: &CircuitBreaker) {
    assert_metrics(b, None, 0, 0, 0, 0);
}

#[track_caller]
fn acquire(b: &CircuitBreaker) -> CallPermit<'_> {
    b.try_acquire().expect("the breaker should admit this call")
}

#[track_caller]
fn refused(b: &CircuitBreaker) -> BulkheadError {
    match b.try_acquire() {
        Ok(_) => panic!("the breaker should refuse this call (state {})", b.state()),
        Err(err) => {
            assert!(err.is_circuit_open(), "{err}");
            err
        }
    }
}

/// resilience4j's `tryAcquirePermission()` as a boolean; an admitted permit is held in
/// `held` as resilience4j's permission is held until its outcome.
fn try_hold<'a>(b: &'a CircuitBreaker, held: &mut Vec<CallPermit<'a>>) -> bool {
    match b.try_acquire() {
        Ok(p) => {
            held.push(p);
            true
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// CircuitBreakerStateMachineTest
// ---------------------------------------------------------------------------------------------

#[test]
fn r4j_should_return_the_correct_name() {
    let (b, _) = r4j_breaker();
    assert_eq!(b.name(), "testName");
}

#[test]
fn r4j_should_refuse_when_open() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    let err = refused(&b);
    assert_eq!(err.bulkhead(), "testName");
    assert_eq!(err.retry_after(), Some(secs(5)));
    assert_eq!(b.metrics().not_permitted_calls, 1);
}

#[test]
fn r4j_should_refuse_when_forced_open() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::ForcedOpen).unwrap();
    let err = refused(&b);
    assert_eq!(err.retry_after(), None);
    assert!(err.to_string().contains("forced open"), "{err}");
    assert_eq!(b.metrics().not_permitted_calls, 1);
}

#[test]
fn r4j_should_give_a_place_back_on_release() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        assert!(try_hold(&b, &mut held));
    }
    assert!(!try_hold(&b, &mut held));
    assert!(!try_hold(&b, &mut held));
    // resilience4j's releasePermission(): here, a permit ignored (or dropped) unrecorded.
    held.pop().unwrap().ignore();
    assert!(try_hold(&b, &mut held));
    assert!(!try_hold(&b, &mut held));
}

#[test]
fn r4j_should_refuse_when_no_further_probes_are_permitted() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        assert!(try_hold(&b, &mut held));
    }
    let err = refused(&b);
    assert!(err.to_string().contains("half-open"), "{err}");
    assert_eq!(b.metrics().not_permitted_calls, 1);
}

#[test]
fn r4j_should_only_permit_four_calls_in_half_open() {
    let (b, _) = r4j_breaker();
    assert_reset(&b);
    let mut held = Vec::new();
    for _round in 0..2 {
        b.transition_to(CircuitState::Open).unwrap();
        b.transition_to(CircuitState::HalfOpen).unwrap();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        for _ in 0..4 {
            assert!(try_hold(&b, &mut held));
        }
        assert!(!try_hold(&b, &mut held));
        assert!(!try_hold(&b, &mut held));
    }
}

#[test]
fn r4j_should_open_after_failure_rate_threshold_exceeded() {
    let (b, _) = r4j_breaker();
    // A call that reports nothing changes nothing.
    drop(acquire(&b));
    assert_eq!(b.state(), CircuitState::Closed);
    assert_reset(&b);

    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_metrics(&b, None, 0, 1, 1, 0);
    acquire(&b).failure();
    assert_metrics(&b, None, 0, 2, 2, 0);
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_metrics(&b, None, 0, 3, 3, 0);
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_metrics(&b, None, 1, 4, 3, 0);
    // The fifth call reaches the minimum: 3 of 5 failed, 60 % >= 50 %.
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::Open);
    assert_metrics(&b, Some(60.0), 2, 5, 3, 0);

    refused(&b);
    assert_metrics(&b, Some(60.0), 2, 5, 3, 1);
}

#[test]
fn r4j_should_open_after_slow_call_rate_threshold_exceeded() {
    let (b, clock) = r4j_breaker();
    assert_reset(&b);
    // Five overlapping calls: three take 4.1 s (slow: strictly longer than 4 s), two 100 ms.
    let slow_failure = acquire(&b);
    let slow_success = acquire(&b);
    let fast_failure = acquire(&b);
    let fast_success = acquire(&b);
    let slow_last = acquire(&b);
    clock.advance(100 * MS);
    fast_failure.failure();
    fast_success.success();
    clock.advance(4 * SEC);
    slow_failure.failure();
    assert_eq!(b.state(), CircuitState::Closed);
    slow_success.success();
    assert_eq!(b.state(), CircuitState::Closed);
    slow_last.success();

    // Failure rate 40 % (below 50), slow-call rate 60 % (at or above 50): open.
    assert_eq!(b.state(), CircuitState::Open);
    let m = b.metrics();
    assert_eq!((m.buffered_calls, m.slow_calls), (5, 3));
    assert_eq!(m.slow_call_rate, Some(60.0));
    assert_eq!(m.failure_rate, Some(40.0));
}

#[test]
fn r4j_should_move_to_half_open_after_the_wait() {
    let (b, clock) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    assert_reset(&b);
    assert_eq!(b.state(), CircuitState::Open);
    refused(&b);

    clock.advance(secs(3));
    // Still open: 3 of the 5 seconds have passed.
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(refused(&b).retry_after(), Some(secs(2)));
    assert_metrics(&b, None, 0, 0, 0, 2);

    clock.advance(secs(3));
    let _probe = acquire(&b);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // A fresh half-open window.
    assert_reset(&b);
}

#[test]
fn r4j_should_move_to_half_open_after_a_growing_wait() {
    // resilience4j: waitIntervalFunctionInOpenState(IntervalFunction.ofExponentialBackoff(5000)),
    // whose multiplier defaults to 1.5.
    let (b, clock) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(5))
            .half_open_calls(4)
            .wait_in_open(secs(5))
            .growing_wait_in_open(1.5, secs(3600)),
    );
    b.transition_to(CircuitState::Open).unwrap();
    refused(&b);
    clock.advance(secs(3));
    assert_eq!(b.state(), CircuitState::Open);
    refused(&b);
    assert_metrics(&b, None, 0, 0, 0, 2);
    clock.advance(secs(3));
    drop(acquire(&b));
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_reset(&b);

    // Opening again from half-open: the second opening in a row waits 7.5 s.
    b.transition_to(CircuitState::Open).unwrap();
    clock.advance(secs(6));
    assert_eq!(refused(&b).retry_after(), Some(1500 * MS));
    clock.advance(secs(5));
    drop(acquire(&b));
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_reset(&b);
}

#[test]
fn r4j_should_reopen_when_probes_fail_above_the_threshold() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    assert_metrics(&b, None, 0, 0, 0, 0);
    acquire(&b).failure();
    acquire(&b).failure();
    acquire(&b).success();
    acquire(&b).failure();
    // All four probes reported: 75 % failed.
    assert_eq!(b.state(), CircuitState::Open);
    assert_metrics(&b, Some(75.0), 1, 4, 3, 0);
}

#[test]
fn r4j_should_reopen_when_probes_are_slow_above_the_threshold() {
    let (b, clock) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    let probes: Vec<_> = (0..4).map(|_| acquire(&b)).collect();
    let mut probes = probes.into_iter();
    let fast = probes.next().unwrap();
    clock.advance(SEC);
    fast.success();
    clock.advance(secs(4));
    for slow in probes {
        slow.success();
    }
    assert_eq!(b.state(), CircuitState::Open);
    let m = b.metrics();
    assert_eq!(m.slow_calls, 3);
    assert_eq!(m.slow_call_rate, Some(75.0));
    assert_eq!(m.failure_rate, Some(0.0));
}

#[test]
fn r4j_should_close_when_probes_fail_below_the_threshold() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    acquire(&b).failure();
    acquire(&b).success();
    acquire(&b).success();
    acquire(&b).success();
    // 25 % failed: closed, with a fresh window.
    drop(acquire(&b));
    assert_eq!(b.state(), CircuitState::Closed);
    assert_reset(&b);
    acquire(&b).success();
    assert_metrics(&b, None, 1, 1, 0, 0);
}

#[test]
fn r4j_should_reset_metrics() {
    let (b, _) = r4j_breaker();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_reset(&b);
    acquire(&b).success();
    acquire(&b).failure();
    assert_metrics(&b, None, 1, 2, 1, 0);
    b.reset();
    assert_reset(&b);
}

#[test]
fn r4j_should_disable_the_breaker() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Disabled).unwrap();
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_reset(&b);
    acquire(&b).success();
    for _ in 0..4 {
        acquire(&b).failure();
    }
    // Nothing recorded, nothing opened.
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_reset(&b);
}

#[test]
fn r4j_should_force_the_breaker_open() {
    let (b, clock) = r4j_breaker();
    b.transition_to(CircuitState::ForcedOpen).unwrap();
    assert_eq!(b.state(), CircuitState::ForcedOpen);
    refused(&b);
    clock.advance(secs(6));
    // Past wait_in_open, and still no probe: only a manual transition leaves forced open.
    refused(&b);
    assert_eq!(b.state(), CircuitState::ForcedOpen);
    assert_metrics(&b, None, 0, 0, 0, 2);
}

#[test]
fn r4j_should_give_a_place_back_when_the_outcome_is_ignored() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    for n in 1..=3 {
        acquire(&b).success();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_metrics(&b, None, n, n, 0, 0);
    }
    // resilience4j's ignored exception: the place comes back, nothing is counted.
    acquire(&b).ignore();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_metrics(&b, None, 3, 3, 0, 0);
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_reset(&b);
}

#[test]
fn r4j_should_ignore_outcomes_and_then_close() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    for _ in 0..4 {
        acquire(&b).ignore();
        assert_eq!(b.state(), CircuitState::HalfOpen);
    }
    assert_reset(&b);
    for _ in 0..3 {
        acquire(&b).success();
        assert_eq!(b.state(), CircuitState::HalfOpen);
    }
    assert_metrics(&b, None, 3, 3, 0, 0);
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_reset(&b);
}

#[test]
fn r4j_should_not_allow_closed_to_half_open() {
    let (b, _) = r4j_breaker();
    let err = b.transition_to(CircuitState::HalfOpen).unwrap_err();
    assert_eq!(err.bulkhead(), "testName");
    assert_eq!(err.field(), "state");
    assert_eq!(err.reason(), "cannot move from closed to half-open");
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn r4j_should_not_allow_closed_to_closed() {
    let (b, _) = r4j_breaker();
    let err = b.transition_to(CircuitState::Closed).unwrap_err();
    assert_eq!(err.reason(), "cannot move from closed to closed");
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn r4j_should_reset_to_closed() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::Open).unwrap();
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert!(b.try_acquire().is_ok());
}

#[test]
fn r4j_should_reset_the_closed_state() {
    let (b, _) = r4j_breaker();
    acquire(&b).success();
    acquire(&b).success();
    assert_eq!(b.metrics().successful_calls, 2);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().successful_calls, 0);
    // The lifetime counters keep counting across a reset.
    assert_eq!(b.metrics().successes_total, 2);
}

#[test]
fn r4j_should_reset_metrics_on_moving_to_metrics_only() {
    let (b, _) = r4j_breaker();
    acquire(&b).success();
    acquire(&b).success();
    assert_eq!(b.metrics().successful_calls, 2);
    b.transition_to(CircuitState::MetricsOnly).unwrap();
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_eq!(b.metrics().successful_calls, 0);
}

#[test]
fn r4j_should_record_but_never_open_in_metrics_only() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::MetricsOnly).unwrap();
    drop(acquire(&b));
    assert_reset(&b);
    acquire(&b).failure();
    assert_metrics(&b, None, 0, 1, 1, 0);
    acquire(&b).failure();
    acquire(&b).failure();
    assert_metrics(&b, None, 0, 3, 3, 0);
    acquire(&b).success();
    assert_metrics(&b, None, 1, 4, 3, 0);
    acquire(&b).success();
    // The window holds its minimum and 60 % failed, yet the breaker stays metrics-only.
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_metrics(&b, Some(60.0), 2, 5, 3, 0);
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::MetricsOnly);
    assert_eq!(b.metrics().transitions_total, 1);
}

#[test]
fn metrics_only_refuses_moves_to_open_and_half_open() {
    let (b, _) = r4j_breaker();
    b.transition_to(CircuitState::MetricsOnly).unwrap();
    for to in [CircuitState::Open, CircuitState::HalfOpen] {
        let err = b.transition_to(to).unwrap_err();
        assert_eq!(err.field(), "state");
        assert_eq!(b.state(), CircuitState::MetricsOnly);
    }
    b.transition_to(CircuitState::Closed).unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}

// ---------------------------------------------------------------------------------------------
// Rules DESIGN.md pins that the ported scenarios leave implicit
// ---------------------------------------------------------------------------------------------

#[test]
fn defaults_judge_a_count_window_of_100_at_50_percent() {
    let (b, _) = with_clock(CircuitBreakerConfig::new());
    for _ in 0..49 {
        acquire(&b).success();
    }
    for _ in 0..50 {
        acquire(&b).failure();
    }
    // 99 calls: below the minimum of 100, however bad.
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().failure_rate, None);
    acquire(&b).success();
    // 100 calls, 50 failed: 50 % reaches the threshold (at or above opens).
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().failure_rate, Some(50.0));
}

#[test]
fn a_count_window_smaller_than_minimum_calls_is_judged_when_full() {
    let (b, _) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(3))
            .minimum_calls(100),
    );
    acquire(&b).failure();
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Closed);
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn the_oldest_outcomes_leave_a_count_window() {
    let (b, _) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(4))
            .failure_rate_threshold(75.0),
    );
    for _ in 0..2 {
        acquire(&b).failure();
    }
    for _ in 0..10 {
        acquire(&b).success();
    }
    // The two failures have slid out; two more still make only 50 %.
    acquire(&b).failure();
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().failure_rate, Some(50.0));
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn failures_that_slid_out_of_a_time_window_do_not_count() {
    let (b, clock) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Time(secs(10)))
            .minimum_calls(4),
    );
    for _ in 0..3 {
        acquire(&b).failure();
    }
    clock.advance(secs(10));
    // The three failures are older than the window: this is the window's first call.
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().buffered_calls, 1);
    for _ in 0..3 {
        acquire(&b).failure();
    }
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn slow_means_strictly_longer_than_the_slow_call_duration() {
    let (b, clock) = with_clock(
        CircuitBreakerConfig::new()
            .slow_call_duration(secs(2))
            .minimum_calls(1)
            .sliding_window(SlidingWindow::Count(10)),
    );
    let p = acquire(&b);
    clock.advance(secs(2));
    assert_eq!(p.elapsed(), secs(2));
    p.success();
    assert_eq!(b.metrics().slow_calls, 0);
    let p = acquire(&b);
    clock.advance(secs(2) + Duration::from_nanos(1));
    p.success();
    assert_eq!(b.metrics().slow_calls, 1);
    assert_eq!(b.metrics().slow_call_rate, Some(50.0));
}

#[test]
fn refused_calls_never_enter_the_window() {
    let (b, _) = with_clock(CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(2)));
    acquire(&b).failure();
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Open);
    for _ in 0..5 {
        refused(&b);
    }
    let m = b.metrics();
    assert_eq!((m.buffered_calls, m.not_permitted_calls), (2, 5));
}

#[test]
fn half_open_gives_up_after_max_wait_and_opens_again() {
    let (b, clock) = with_clock(
        CircuitBreakerConfig::new()
            .half_open_calls(2)
            .wait_in_open(secs(5))
            .max_wait_in_half_open(secs(30)),
    );
    b.transition_to(CircuitState::Open).unwrap();
    clock.advance(secs(5));
    // Two probes that never report (a call stuck on a dead socket).
    let stuck: Vec<_> = (0..2).map(|_| acquire(&b)).collect();
    assert_eq!(b.state(), CircuitState::HalfOpen);
    clock.advance(secs(29));
    refused(&b);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    clock.advance(SEC);
    // 30 s half-open: the next caller opens the breaker again, and is refused.
    let err = refused(&b);
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(err.retry_after(), Some(secs(5)));
    drop(stuck);
    clock.advance(secs(5));
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[test]
fn a_probe_dropped_unrecorded_frees_its_place() {
    let (b, _) = with_clock(CircuitBreakerConfig::new().half_open_calls(1));
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    for _ in 0..100 {
        let probe = acquire(&b);
        refused(&b);
        drop(probe);
    }
    // A hundred forgotten probes later the breaker is still half-open with its place free
    // (resilience4j #903: a lost permission kept a breaker half-open for good).
    assert_eq!(b.state(), CircuitState::HalfOpen);
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.metrics().ignored_total, 100);
}

#[test]
fn a_permit_dropped_while_panicking_is_a_failure() {
    let (b, _) = with_clock(CircuitBreakerConfig::new().half_open_calls(1));
    b.transition_to(CircuitState::Open).unwrap();
    b.transition_to(CircuitState::HalfOpen).unwrap();
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        let _probe = acquire(&b);
        panic!("driver bug");
    }));
    assert!(unwound.is_err());
    // The panicking probe counted as the failed probe: open again, not stuck half-open
    // (resilience4j #935).
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.metrics().failures_total, 1);
}

#[test]
fn call_records_ok_err_and_panic() {
    let (b, _) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(10))
            .minimum_calls(10),
    );
    assert_eq!(b.call(|| Ok::<_, ()>(7)).unwrap(), 7);
    let err = b.call(|| Err::<(), _>("bad gateway")).unwrap_err();
    assert!(matches!(err, PolicyError::Inner("bad gateway")));
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        b.call(|| -> Result<(), ()> { panic!("boom") })
    }));
    assert!(unwound.is_err());
    let m = b.metrics();
    assert_eq!(
        (m.buffered_calls, m.successful_calls, m.failed_calls),
        (3, 1, 2)
    );
}

#[test]
fn call_does_not_run_when_refused() {
    let (b, _) = with_clock(CircuitBreakerConfig::new());
    b.transition_to(CircuitState::ForcedOpen).unwrap();
    let mut ran = false;
    let err = b
        .call(|| {
            ran = true;
            Ok::<_, ()>(())
        })
        .unwrap_err();
    assert!(!ran);
    assert!(err.is_circuit_open());
}

#[test]
fn outcomes_of_permits_from_an_earlier_state_are_not_counted() {
    let (b, _) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(2))
            .half_open_calls(2),
    );
    let late = acquire(&b);
    acquire(&b).failure();
    acquire(&b).failure();
    assert_eq!(b.state(), CircuitState::Open);
    b.transition_to(CircuitState::HalfOpen).unwrap();
    // A call admitted while closed ends during half-open: it was not a probe.
    late.success();
    assert_reset(&b);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    acquire(&b).success();
    acquire(&b).success();
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn bad_configuration_names_the_breaker_and_the_field() {
    for (config, field) in [
        (
            CircuitBreakerConfig::new().failure_rate_threshold(101.0),
            "failure_rate_threshold",
        ),
        (
            CircuitBreakerConfig::new().slow_call_rate_threshold(0.0),
            "slow_call_rate_threshold",
        ),
        (
            CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(0)),
            "sliding_window",
        ),
        (
            CircuitBreakerConfig::new().minimum_calls(0),
            "minimum_calls",
        ),
        (
            CircuitBreakerConfig::new().wait_in_open(Duration::ZERO),
            "wait_in_open",
        ),
        (
            CircuitBreakerConfig::new().half_open_calls(0),
            "half_open_calls",
        ),
        (
            CircuitBreakerConfig::new().growing_wait_in_open(0.9, secs(600)),
            "growing_wait_in_open",
        ),
    ] {
        let err = CircuitBreaker::new("payment", config).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), ("payment", field));
    }
}

// ---------------------------------------------------------------------------------------------
// FixedSizeSlidingWindowMetricsTest and SlidingTimeWindowMetricsTest
// ---------------------------------------------------------------------------------------------

/// A breaker that records into `window` and never opens, judging from the first call, with
/// calls slower than 50 ms slow (the originals' "slow" outcomes take 100 ms, the others are
/// recorded at once).
fn metrics_window(window: SlidingWindow) -> (CircuitBreaker, ManualClock) {
    let (b, clock) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(window)
            .minimum_calls(1)
            .slow_call_duration(50 * MS),
    );
    b.transition_to(CircuitState::MetricsOnly).unwrap();
    (b, clock)
}

#[derive(Clone, Copy)]
enum Rec {
    Ok,
    Err,
    SlowOk,
    SlowErr,
}

/// Records one call. A slow call's 100 ms pass during the call, so they move the clock.
fn record(b: &CircuitBreaker, clock: &ManualClock, rec: Rec) {
    let p = acquire(b);
    if matches!(rec, Rec::SlowOk | Rec::SlowErr) {
        clock.advance(100 * MS);
    }
    match rec {
        Rec::Ok | Rec::SlowOk => p.success(),
        Rec::Err | Rec::SlowErr => p.failure(),
    }
}

/// (buffered, successful, failed, slow)
#[track_caller]
fn assert_window(b: &CircuitBreaker, expected: (usize, usize, usize, usize)) {
    let m = b.metrics();
    assert_eq!(
        (
            m.buffered_calls,
            m.successful_calls,
            m.failed_calls,
            m.slow_calls
        ),
        expected,
        "(buffered, successful, failed, slow) in {m:?}"
    );
}

#[test]
fn count_window_starts_empty() {
    let (b, _) = metrics_window(SlidingWindow::Count(5));
    assert_window(&b, (0, 0, 0, 0));
    assert_eq!(b.metrics().failure_rate, None);
}

#[test]
fn count_window_records_each_kind_of_outcome() {
    for (rec, expected, failure_rate) in [
        (Rec::Ok, (1, 1, 0, 0), 0.0),
        (Rec::Err, (1, 0, 1, 0), 100.0),
        (Rec::SlowOk, (1, 1, 0, 1), 0.0),
        (Rec::SlowErr, (1, 0, 1, 1), 100.0),
    ] {
        let (b, clock) = metrics_window(SlidingWindow::Count(5));
        record(&b, &clock, rec);
        assert_window(&b, expected);
        assert_eq!(b.metrics().failure_rate, Some(failure_rate));
    }
}

#[test]
fn count_window_slow_call_percentage() {
    let (b, clock) = metrics_window(SlidingWindow::Count(5));
    for rec in [Rec::SlowOk, Rec::SlowErr, Rec::Ok, Rec::Ok, Rec::Ok] {
        record(&b, &clock, rec);
    }
    assert_window(&b, (5, 4, 1, 2));
    assert_eq!(b.metrics().slow_call_rate, Some(40.0));
}

#[test]
fn count_window_slides() {
    let (b, clock) = metrics_window(SlidingWindow::Count(4));
    let steps = [
        (Rec::Err, (1, 0, 1, 0), 100.0),
        (Rec::Ok, (2, 1, 1, 0), 50.0),
        (Rec::Ok, (3, 2, 1, 0), 100.0 / 3.0),
        (Rec::Ok, (4, 3, 1, 0), 25.0),
        // The window holds 4: the failure slides out.
        (Rec::Ok, (4, 4, 0, 0), 0.0),
    ];
    for (rec, expected, rate) in steps {
        record(&b, &clock, rec);
        assert_window(&b, expected);
        let got = b.metrics().failure_rate.unwrap();
        assert!((got - rate).abs() < 1e-9, "{got} != {rate}");
    }
}

#[test]
fn count_window_slides_slow_calls_out() {
    let (b, clock) = metrics_window(SlidingWindow::Count(2));
    let steps = [
        (Rec::SlowErr, (1, 0, 1, 1), 100.0),
        (Rec::SlowOk, (2, 1, 1, 2), 50.0),
        (Rec::Ok, (2, 2, 0, 1), 0.0),
        (Rec::Ok, (2, 2, 0, 0), 0.0),
        (Rec::Ok, (2, 2, 0, 0), 0.0),
    ];
    for (rec, expected, rate) in steps {
        record(&b, &clock, rec);
        assert_window(&b, expected);
        assert_eq!(b.metrics().failure_rate, Some(rate));
    }
}

#[test]
fn time_window_starts_empty() {
    let (b, _) = metrics_window(SlidingWindow::Time(secs(5)));
    assert_window(&b, (0, 0, 0, 0));
}

#[test]
fn time_window_records_each_kind_of_outcome() {
    for (rec, expected, failure_rate) in [
        (Rec::Ok, (1, 1, 0, 0), 0.0),
        (Rec::Err, (1, 0, 1, 0), 100.0),
        (Rec::SlowOk, (1, 1, 0, 1), 0.0),
    ] {
        let (b, clock) = metrics_window(SlidingWindow::Time(secs(5)));
        record(&b, &clock, rec);
        assert_window(&b, expected);
        assert_eq!(b.metrics().failure_rate, Some(failure_rate));
    }
}

#[test]
fn time_window_slow_call_percentage() {
    let (b, clock) = metrics_window(SlidingWindow::Time(secs(5)));
    for rec in [Rec::SlowOk, Rec::SlowErr, Rec::Ok, Rec::Ok, Rec::Ok] {
        record(&b, &clock, rec);
    }
    assert_window(&b, (5, 4, 1, 2));
    assert_eq!(b.metrics().slow_call_rate, Some(40.0));
}

#[test]
fn time_window_clears_when_everything_slid_out() {
    let (b, clock) = metrics_window(SlidingWindow::Time(secs(5)));
    record(&b, &clock, Rec::Err);
    assert_window(&b, (1, 0, 1, 0));
    assert_eq!(b.metrics().failure_rate, Some(100.0));
    clock.advance(100 * MS);
    record(&b, &clock, Rec::Ok);
    assert_window(&b, (2, 1, 1, 0));
    assert_eq!(b.metrics().failure_rate, Some(50.0));
    clock.advance(700 * MS);
    record(&b, &clock, Rec::Ok);
    assert_window(&b, (3, 2, 1, 0));
    // 4.8 s: all three (recorded in the first second) are still inside 5 s.
    clock.advance(secs(4));
    assert_window(&b, (3, 2, 1, 0));
    // 5.8 s: the first second's bucket has left.
    clock.advance(SEC);
    assert_window(&b, (0, 0, 0, 0));
    assert_eq!(b.metrics().failure_rate, None);
    clock.advance(100 * MS);
    record(&b, &clock, Rec::Ok);
    assert_window(&b, (1, 1, 0, 0));
    assert_eq!(b.metrics().failure_rate, Some(0.0));
}

#[test]
fn time_window_slides_bucket_by_bucket() {
    let (b, clock) = metrics_window(SlidingWindow::Time(secs(5)));
    // (advance before the call, outcome, (buffered, successful, failed))
    let steps = [
        (Duration::ZERO, Rec::Err, (1, 0, 1)),
        (100 * MS, Rec::Ok, (2, 1, 1)),
        (100 * MS, Rec::Ok, (3, 2, 1)),
        (SEC, Rec::Ok, (4, 3, 1)),
        (SEC, Rec::Ok, (5, 4, 1)),
        (SEC, Rec::Err, (6, 4, 2)),
        (SEC, Rec::Ok, (7, 5, 2)),
        // 5.2 s: the first second (one failure, two successes) slides out.
        (SEC, Rec::Ok, (5, 4, 1)),
        (SEC, Rec::Ok, (5, 4, 1)),
        // 11.2 s: everything before 7 s has gone.
        (secs(5), Rec::Ok, (1, 1, 0)),
    ];
    for (advance, rec, (buffered, successful, failed)) in steps {
        clock.advance(advance);
        record(&b, &clock, rec);
        assert_window(&b, (buffered, successful, failed, 0));
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency: one breaker, eight threads, exact books
// ---------------------------------------------------------------------------------------------

const THREADS: usize = 8;

fn per_thread() -> usize {
    if cfg!(miri) { 50 } else { 5_000 }
}

#[test]
fn eight_threads_counts_add_up_exactly() {
    let n = per_thread();
    let total = THREADS * n;
    // A window as large as all the calls, judged only when full, at a rate never reached:
    // every outcome stays in the window and the breaker stays closed.
    let (b, _) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(total))
            .minimum_calls(total)
            .failure_rate_threshold(100.0),
    );
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (b, barrier) = (&b, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..n {
                    let p = b.try_acquire().expect("closed");
                    match (t + i) % 4 {
                        0 => p.failure(),
                        1 => p.ignore(),
                        _ => p.success(),
                    }
                }
            });
        }
    });
    let m = b.metrics();
    let quarter = total / 4;
    assert_eq!(m.state, CircuitState::Closed);
    assert_eq!(m.buffered_calls, total - quarter);
    assert_eq!(m.failed_calls, quarter);
    assert_eq!(m.successful_calls, total - 2 * quarter);
    assert_eq!(m.failures_total, quarter as u64);
    assert_eq!(m.successes_total, (total - 2 * quarter) as u64);
    assert_eq!(m.ignored_total, quarter as u64);
    assert_eq!(m.failure_rate, None); // a quarter ignored: the window never filled
}

#[test]
fn eight_threads_opening_it_lose_no_outcome_and_open_it_once() {
    let n = per_thread();
    let (b, _) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(100))
            .minimum_calls(100),
    );
    let barrier = Barrier::new(THREADS);
    let counts: Vec<(u64, u64)> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (b, barrier) = (&b, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let (mut recorded, mut refused) = (0, 0);
                    for _ in 0..n {
                        match b.call(|| Err::<(), _>("down")) {
                            Err(PolicyError::Inner(_)) => recorded += 1,
                            Err(err) => {
                                assert!(err.is_circuit_open(), "{err}");
                                refused += 1;
                            }
                            Ok(()) => unreachable!(),
                        }
                    }
                    (recorded, refused)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let recorded: u64 = counts.iter().map(|c| c.0).sum();
    let refused: u64 = counts.iter().map(|c| c.1).sum();
    let m = b.metrics();
    assert_eq!(recorded + refused, (THREADS * n) as u64);
    assert_eq!(m.failures_total, recorded);
    assert_eq!(m.not_permitted_total, refused);
    assert_eq!(m.not_permitted_calls, refused);
    // The clock never moves, so it opened exactly once and stayed open, with the window
    // that opened it: 100 calls, all failed.
    assert_eq!(m.state, CircuitState::Open);
    assert_eq!(m.transitions_total, 1);
    assert_eq!((m.buffered_calls, m.failed_calls), (100, 100));
    // At least the 100 that filled the window ran; those in flight as it opened did too.
    assert!(
        (100..100 + THREADS as u64).contains(&recorded),
        "{recorded}"
    );
}

#[test]
fn eight_threads_racing_for_three_probes_get_exactly_three() {
    for _round in 0..if cfg!(miri) { 2 } else { 200 } {
        let (b, _) = with_clock(CircuitBreakerConfig::new().half_open_calls(3));
        b.transition_to(CircuitState::Open).unwrap();
        b.transition_to(CircuitState::HalfOpen).unwrap();
        let start = Barrier::new(THREADS);
        let taken = Barrier::new(THREADS);
        let admitted: usize = thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (b, start, taken) = (&b, &start, &taken);
                    s.spawn(move || {
                        start.wait();
                        let permit = b.try_acquire().ok();
                        // Hold the probes until every thread has tried.
                        taken.wait();
                        let got = usize::from(permit.is_some());
                        if let Some(p) = permit {
                            p.success();
                        }
                        got
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 3);
        assert_eq!(b.metrics().not_permitted_total, (THREADS - 3) as u64);
        assert_eq!(b.state(), CircuitState::Closed);
    }
}

#[test]
fn breakers_and_permits_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CircuitBreaker>();
    assert_send_sync::<CallPermit<'static>>();
    assert_send_sync::<CircuitBreakerConfig>();
    assert_send_sync::<PolicyError<std::io::Error>>();
}

// ---------------------------------------------------------------------------------------------
// Events, the manager, the exposition
// ---------------------------------------------------------------------------------------------

#[test]
fn transitions_and_refusals_are_events_fired_with_no_lock_held() {
    use bulkheads::EventKind;
    use std::sync::Mutex;
    use std::sync::mpsc;

    let (b, clock) = with_clock(
        CircuitBreakerConfig::new()
            .sliding_window(SlidingWindow::Count(2))
            .half_open_calls(1)
            .wait_in_open(secs(1)),
    );
    let b = Arc::new(b);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (seen, inner) = (Arc::clone(&log), Arc::clone(&b));
    b.on_event(move |e| {
        // Reading the breaker from its own listener would deadlock were a lock held.
        let buffered = inner.metrics().buffered_calls;
        seen.lock().unwrap().push((e.kind, buffered));
    });
    b.on_event(|_| panic!("a broken listener"));
    let (done, finished) = mpsc::channel();
    let worker = Arc::clone(&b);
    let run = thread::spawn(move || {
        acquire(&worker).failure();
        acquire(&worker).failure(); // opens
        refused(&worker);
        clock.advance(secs(1));
        acquire(&worker).success(); // half-open, then closed on the one probe
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("a listener deadlocked on the breaker's lock");
    run.join().unwrap();
    use CircuitState::*;
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (
                EventKind::CircuitStateChanged {
                    from: Closed,
                    to: Open
                },
                2
            ),
            (EventKind::CircuitNotPermitted { state: Open }, 2),
            (
                EventKind::CircuitStateChanged {
                    from: Open,
                    to: HalfOpen
                },
                0
            ),
            (
                EventKind::CircuitStateChanged {
                    from: HalfOpen,
                    to: Closed
                },
                0
            ),
        ]
    );
    // The panicking listener changed nothing.
    assert_eq!(b.state(), Closed);
}

#[test]
fn a_managers_breakers_reach_its_listeners_table_and_exposition() {
    use bulkheads::{BulkheadManager, EventKind, PoolConfig};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let manager = BulkheadManager::builder()
        .pool("email", PoolConfig::new(1))
        .circuit_breaker(
            "email",
            CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(2)),
        )
        .circuit_breaker("a\"b", CircuitBreakerConfig::new())
        .build()
        .unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&opened);
    manager.on_event(move |e| {
        if let EventKind::CircuitStateChanged {
            to: CircuitState::Open,
            ..
        } = e.kind
        {
            assert_eq!(e.bulkhead, "email");
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    let breaker = manager.circuit_breaker("email").unwrap();
    for _ in 0..2 {
        let _ = breaker.call(|| Err::<(), _>("smtp 451"));
    }
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    let _ = breaker.try_acquire();

    let stats = manager.stats();
    let names: Vec<_> = stats
        .circuit_breakers
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["a\"b", "email"]);
    let table = stats.to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with("email ") && l.contains("open"))
        .unwrap();
    assert!(row.contains("100.0%"), "{row}");

    let text = stats.to_prometheus();
    for line in [
        "# TYPE bulkhead_circuit_state gauge",
        "bulkhead_circuit_state{bulkhead=\"email\",kind=\"circuit_breaker\",state=\"open\"} 1",
        "bulkhead_circuit_state{bulkhead=\"email\",kind=\"circuit_breaker\",state=\"closed\"} 0",
        "bulkhead_circuit_state{bulkhead=\"a\\\"b\",kind=\"circuit_breaker\",state=\"closed\"} 1",
        "bulkhead_circuit_calls_total{bulkhead=\"email\",kind=\"circuit_breaker\",outcome=\"failed\"} 2",
        "bulkhead_circuit_calls_total{bulkhead=\"email\",kind=\"circuit_breaker\",outcome=\"not_permitted\"} 1",
        "bulkhead_circuit_transitions_total{bulkhead=\"email\",kind=\"circuit_breaker\"} 1",
        "bulkhead_circuit_failure_rate{bulkhead=\"email\",kind=\"circuit_breaker\"} 100",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Each family's header once, with both breakers' samples under it.
    assert_eq!(text.matches("# TYPE bulkhead_circuit_state ").count(), 1);
    // The breaker with too few calls has no rate sample.
    assert!(!text.contains("bulkhead_circuit_failure_rate{bulkhead=\"a\\\"b\""));
    // The pools' families are still there.
    assert!(text.contains("bulkhead_max_threads{bulkhead=\"email\",kind=\"pool\"} 1"));
}

#[test]
fn a_breaker_configured_twice_is_a_config_error() {
    let err = bulkheads::BulkheadManager::builder()
        .circuit_breaker("email", CircuitBreakerConfig::new())
        .circuit_breaker("email", CircuitBreakerConfig::new())
        .build()
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("email", "name"));
    let err = bulkheads::BulkheadManager::builder()
        .circuit_breaker("db", CircuitBreakerConfig::new().minimum_calls(0))
        .build()
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("db", "minimum_calls"));
}

#[cfg(feature = "serde")]
#[test]
fn a_managers_breakers_serialize_beside_its_bulkheads() {
    let manager = bulkheads::BulkheadManager::builder()
        .circuit_breaker("email", CircuitBreakerConfig::new().half_open_calls(2))
        .build()
        .unwrap();
    let breaker = manager.circuit_breaker("email").unwrap();
    breaker.transition_to(CircuitState::Open).unwrap();
    breaker.transition_to(CircuitState::HalfOpen).unwrap();
    acquire(&breaker).failure();
    let json = serde_json::to_value(manager.stats()).unwrap();
    let b = &json["circuit_breakers"][0];
    assert_eq!(b["name"], "email");
    assert_eq!(b["state"], "half_open");
    assert_eq!(b["failed_calls"], 1);
    assert_eq!(b["transitions_total"], 2);
    assert!(b["failure_rate"].is_null()); // 1 of its 2 probes reported
    // A manager without breakers serializes as before.
    let plain = serde_json::to_value(bulkheads::BulkheadManager::new().stats()).unwrap();
    assert!(plain.get("circuit_breakers").is_none());
}
