//! `Retry`: attempts, back-off, jitter, the budget, and what is never retried.
//!
//! Ported from resilience4j, re-expressed for this API, with the waits observed through a
//! recording `Clock` instead of resilience4j's swapped-in `sleepFunction`:
//! - `resilience4j-retry/src/test/java/io/github/resilience4j/retry/internal/SupplierRetryTest.java`
//!   (the `r4j_*` tests: the scenarios resilience4j runs against its `RetryImpl`; there is no
//!   file named `RetryImplTest`, this is the suite that exercises `RetryImpl` directly);
//! - `resilience4j-retry/src/test/java/io/github/resilience4j/retry/IntervalFunctionTest.java`
//!   (the interval tests: exponential growth, a randomization factor's bounds and range).
//!
//! The budget follows gRPC's retry throttling (gRFC A6, "Retry Throttling"): its worked
//! example of 10 tokens and a ratio of 0.1 is `budget_*` below.

use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::clock::{Clock, ManualClock};
use bulkheads::{
    Backoff, BulkheadError, CircuitBreaker, CircuitBreakerConfig, CircuitState, Jitter,
    PolicyError, PoolConfig, Retry, RetryBudget, Retryable, SlidingWindow, ThreadPoolBulkhead,
};

const MS: Duration = Duration::from_millis(1);

/// A clock that records every sleep and advances a manual clock by it.
#[derive(Default)]
struct RecordingClock {
    time: ManualClock,
    sleeps: Mutex<Vec<Duration>>,
}

impl Clock for RecordingClock {
    fn now(&self) -> Instant {
        self.time.now()
    }

    fn sleep(&self, d: Duration) {
        self.sleeps.lock().unwrap().push(d);
        self.time.advance(d);
    }
}

impl RecordingClock {
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }

    fn slept(&self) -> Duration {
        self.sleeps().iter().sum()
    }
}

fn recorded(retry: Retry) -> (Retry, Arc<RecordingClock>) {
    let clock = Arc::new(RecordingClock::default());
    (retry.clock(clock.clone()), clock)
}

/// The error of the service under test.
#[derive(Debug, PartialEq)]
struct HelloWorldError;

impl Retryable for HelloWorldError {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// A service that answers from a script of outcomes, then keeps repeating the last one.
struct Script {
    outcomes: Vec<Result<&'static str, HelloWorldError>>,
    calls: usize,
}

impl Script {
    fn new(outcomes: Vec<Result<&'static str, HelloWorldError>>) -> Self {
        Self { outcomes, calls: 0 }
    }

    fn call(&mut self) -> Result<&'static str, HelloWorldError> {
        let i = self.calls.min(self.outcomes.len() - 1);
        self.calls += 1;
        match &self.outcomes[i] {
            Ok(v) => Ok(v),
            Err(_) => Err(HelloWorldError),
        }
    }
}

const DEFAULT_WAIT: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// SupplierRetryTest
// ---------------------------------------------------------------------------------------------

#[test]
fn r4j_should_not_retry_a_success() {
    let (retry, clock) = recorded(Retry::default());
    let mut service = Script::new(vec![Ok("Hello world")]);
    assert_eq!(retry.call(|| service.call()), Ok("Hello world"));
    assert_eq!(service.calls, 1);
    assert_eq!(clock.slept(), Duration::ZERO);
    assert_eq!(retry.metrics().succeeded_without_retry, 1);
}

#[test]
fn r4j_should_retry_once_then_succeed() {
    let (retry, clock) = recorded(Retry::default());
    let mut service = Script::new(vec![Err(HelloWorldError), Ok("Hello world")]);
    assert_eq!(retry.call(|| service.call()), Ok("Hello world"));
    assert_eq!(service.calls, 2);
    assert_eq!(clock.sleeps(), vec![DEFAULT_WAIT]);
}

#[test]
fn r4j_should_retry_on_each_invocation_of_one_retry() {
    let (retry, clock) = recorded(Retry::default());
    let mut service = Script::new(vec![
        Err(HelloWorldError),
        Ok("Hello world"),
        Err(HelloWorldError),
        Ok("Hello world"),
    ]);
    assert_eq!(retry.call(|| service.call()), Ok("Hello world"));
    assert_eq!(retry.call(|| service.call()), Ok("Hello world"));
    assert_eq!(service.calls, 4);
    assert_eq!(clock.slept(), DEFAULT_WAIT * 2);
    assert_eq!(retry.metrics().succeeded_with_retry, 2);
}

#[test]
fn r4j_should_return_after_three_attempts() {
    let (retry, clock) = recorded(Retry::default());
    let mut service = Script::new(vec![Err(HelloWorldError)]);
    assert_eq!(retry.call(|| service.call()), Err(HelloWorldError));
    assert_eq!(service.calls, 3);
    assert_eq!(clock.slept(), DEFAULT_WAIT * 2);
}

#[test]
fn r4j_should_return_after_one_attempt() {
    let (retry, clock) = recorded(Retry::new(1));
    let mut service = Script::new(vec![Err(HelloWorldError)]);
    assert_eq!(retry.call(|| service.call()), Err(HelloWorldError));
    assert_eq!(service.calls, 1);
    assert_eq!(clock.slept(), Duration::ZERO);
    assert_eq!(retry.metrics().failed_without_retry, 1);
}

#[test]
fn r4j_should_return_after_one_attempt_when_the_predicate_says_no() {
    let (retry, clock) = recorded(Retry::default());
    let mut service = Script::new(vec![Err(HelloWorldError)]);
    // resilience4j's retryOnException(e -> !(e instanceof HelloWorldException)).
    let result = retry.call_if(|| service.call(), |_: &HelloWorldError| false);
    assert_eq!(result, Err(HelloWorldError));
    // The error went back at once.
    assert_eq!(service.calls, 1);
    assert_eq!(clock.slept(), Duration::ZERO);
}

#[test]
fn r4j_should_return_after_three_attempts_and_recover() {
    let (retry, clock) = recorded(Retry::default());
    let mut service = Script::new(vec![Err(HelloWorldError)]);
    let result = retry
        .call(|| service.call())
        .unwrap_or("Hello world from recovery function");
    assert_eq!(result, "Hello world from recovery function");
    assert_eq!(retry.metrics().failed_with_retry, 1);
    assert_eq!(service.calls, 3);
    assert_eq!(clock.slept(), DEFAULT_WAIT * 2);
}

#[test]
fn r4j_should_take_the_backoff_into_account() {
    // resilience4j: intervalFunction(IntervalFunction.ofExponentialBackoff(500, 2.0)).
    let (retry, clock) = recorded(Retry::default().backoff(Backoff::exponential(500 * MS, 2.0)));
    let mut service = Script::new(vec![Err(HelloWorldError)]);
    let _ = retry.call(|| service.call());
    assert_eq!(service.calls, 3);
    assert_eq!(clock.sleeps(), vec![DEFAULT_WAIT, DEFAULT_WAIT * 2]);
}

// ---------------------------------------------------------------------------------------------
// IntervalFunctionTest
// ---------------------------------------------------------------------------------------------

#[test]
fn r4j_exponential_intervals_grow() {
    let b = Backoff::exponential(100 * MS, 1.5);
    let mut previous = b.delay(1);
    assert_eq!(previous, 100 * MS);
    for n in 2..50 {
        let d = b.delay(n);
        assert!(d > previous, "delay({n}) = {d:?} after {previous:?}");
        previous = d;
    }
}

#[test]
fn r4j_randomized_intervals_stay_within_the_factor() {
    let (retry, clock) = recorded(
        Retry::new(50)
            .backoff(Backoff::fixed(100 * MS))
            .jitter(Jitter::Proportional(0.5)),
    );
    let _ = retry.call(|| Err::<(), _>(HelloWorldError));
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 49);
    for d in &sleeps {
        assert!((50 * MS..=150 * MS).contains(d), "{d:?}");
    }
    // Random, not constant.
    assert!(sleeps.iter().any(|d| *d != sleeps[0]));
}

#[test]
fn r4j_exponential_random_intervals_stay_within_the_factor() {
    let (retry, clock) = recorded(
        Retry::new(30)
            .backoff(Backoff::exponential(100 * MS, 1.5))
            .jitter(Jitter::Proportional(0.5)),
    );
    let _ = retry.call(|| Err::<(), _>(HelloWorldError));
    let mut expected = 100 * MS;
    for d in clock.sleeps() {
        assert!(
            d >= expected.mul_f64(0.5) && d <= expected.mul_f64(1.5),
            "{d:?} not within half of {expected:?}"
        );
        expected = expected.mul_f64(1.5);
    }
}

#[test]
fn r4j_rejects_bad_intervals_factors_and_multipliers() {
    let cases = [
        (
            Retry::new(3).backoff(Backoff::fixed(Duration::ZERO)),
            "backoff",
        ),
        (
            Retry::new(3).backoff(Backoff::exponential(100 * MS, 0.9999)),
            "backoff",
        ),
        (
            Retry::new(3).backoff(Backoff::exponential(100 * MS, f64::NAN)),
            "backoff",
        ),
        (
            Retry::new(3).backoff(Backoff::exponential(100 * MS, 2.0).max(50 * MS)),
            "backoff",
        ),
        (
            Retry::new(3).jitter(Jitter::Proportional(-0.0001)),
            "jitter",
        ),
        (Retry::new(3).jitter(Jitter::Proportional(1.0001)), "jitter"),
        (Retry::new(0), "max_attempts"),
        (Retry::new(3).budget(RetryBudget::new(0.0, 0.1)), "budget"),
        (
            Retry::new(3).budget(RetryBudget::new(1001.0, 0.1)),
            "budget",
        ),
        (Retry::new(3).budget(RetryBudget::new(10.0, 0.0)), "budget"),
    ];
    for (retry, field) in cases {
        let err = retry.validate("inventory").expect_err(field);
        assert_eq!((err.bulkhead(), err.field()), ("inventory", field), "{err}");
    }
    for factor in [0.0, 0.25, 0.5, 0.75, 1.0] {
        assert!(
            Retry::new(3)
                .jitter(Jitter::Proportional(factor))
                .validate("x")
                .is_ok()
        );
    }
}

#[test]
fn an_invalid_retry_runs_the_call_once() {
    let (retry, clock) = recorded(Retry::new(5).backoff(Backoff::exponential(MS, 0.5)));
    let mut calls = 0;
    let _ = retry.call(|| {
        calls += 1;
        Err::<(), _>(HelloWorldError)
    });
    assert_eq!(calls, 1);
    assert!(clock.sleeps().is_empty());
}

// ---------------------------------------------------------------------------------------------
// AWS's jitter formulas
// ---------------------------------------------------------------------------------------------

fn sleeps_with(jitter: Jitter, backoff: Backoff, attempts: u32, seed: u64) -> Vec<Duration> {
    let (retry, clock) = recorded(
        Retry::new(attempts)
            .backoff(backoff)
            .jitter(jitter)
            .seed(seed),
    );
    let _ = retry.call(|| Err::<(), _>(HelloWorldError));
    clock.sleeps()
}

#[test]
fn full_jitter_is_between_zero_and_the_delay() {
    let backoff = Backoff::exponential(100 * MS, 2.0).max(Duration::from_secs(1));
    let mut below_half = 0;
    for seed in 0..50 {
        let sleeps = sleeps_with(Jitter::Full, backoff, 8, seed);
        for (n, d) in sleeps.iter().enumerate() {
            let cap = backoff.delay(n as u32 + 1);
            assert!(*d <= cap, "retry {}: {d:?} > {cap:?}", n + 1);
            below_half += usize::from(*d < cap / 2);
        }
    }
    // Uniform over [0, d]: about half of 350 waits fall below d/2.
    assert!((100..250).contains(&below_half), "{below_half}");
}

#[test]
fn equal_jitter_keeps_at_least_half_the_delay() {
    let backoff = Backoff::exponential(100 * MS, 2.0);
    for seed in 0..50 {
        for (n, d) in sleeps_with(Jitter::Equal, backoff, 6, seed)
            .iter()
            .enumerate()
        {
            let full = backoff.delay(n as u32 + 1);
            assert!(
                *d >= full / 2 && *d <= full,
                "retry {}: {d:?} vs {full:?}",
                n + 1
            );
        }
    }
}

#[test]
fn decorrelated_jitter_grows_from_base_up_to_three_times_the_last_wait_and_caps() {
    let base = 100 * MS;
    let cap = Duration::from_secs(2);
    let backoff = Backoff::exponential(base, 2.0).max(cap);
    let mut reached_cap = false;
    for seed in 0..50 {
        let sleeps = sleeps_with(Jitter::Decorrelated, backoff, 20, seed);
        let mut previous = base;
        for d in sleeps {
            assert!(d >= base.min(cap), "{d:?} below base");
            assert!(d <= (previous * 3).min(cap), "{d:?} above 3 x {previous:?}");
            reached_cap |= d == cap;
            previous = d;
        }
    }
    assert!(reached_cap);
}

#[test]
fn no_jitter_is_exactly_the_backoff() {
    let backoff = Backoff::exponential(10 * MS, 3.0).max(500 * MS);
    let sleeps = sleeps_with(Jitter::None, backoff, 6, 1);
    assert_eq!(sleeps, vec![10 * MS, 30 * MS, 90 * MS, 270 * MS, 500 * MS]);
}

// ---------------------------------------------------------------------------------------------
// The retry budget (gRPC retry throttling)
// ---------------------------------------------------------------------------------------------

#[test]
fn budget_stops_retries_once_half_the_tokens_are_gone() {
    let budget = RetryBudget::new(10.0, 0.1);
    let (retry, clock) = recorded(Retry::new(3).budget(budget.clone()));
    let mut attempts = 0;
    // Each call: the first attempt fails (one token), the retry fails (one more), ...
    for _ in 0..2 {
        let _ = retry.call(|| {
            attempts += 1;
            Err::<(), _>(HelloWorldError)
        });
    }
    // 3 + 2 attempts: after the 5th failure 5 tokens are left, which is not more than half.
    assert_eq!(attempts, 5);
    assert_eq!(budget.tokens(), 5.0);
    assert_eq!(retry.metrics().throttled, 1);
    // From here on only first attempts go out: no retry storm.
    attempts = 0;
    for _ in 0..10 {
        let _ = retry.call(|| {
            attempts += 1;
            Err::<(), _>(HelloWorldError)
        });
    }
    assert_eq!(attempts, 10);
    assert_eq!(budget.tokens(), 0.0);
    assert_eq!(clock.sleeps().len(), 3);
}

#[test]
fn budget_is_earned_back_by_successes() {
    let budget = RetryBudget::new(10.0, 0.1);
    for _ in 0..5 {
        budget.on_failure();
    }
    assert!(!budget.allows_retry());
    // Ten successes per failure: one success lifts it just over the line.
    budget.on_success();
    assert!(budget.allows_retry());
    assert!((budget.tokens() - 5.1).abs() < 1e-9);
    for _ in 0..100 {
        budget.on_success();
    }
    assert_eq!(budget.tokens(), 10.0);
}

#[test]
fn a_budget_shared_by_threads_counts_every_outcome() {
    let budget = RetryBudget::new(1000.0, 1.0);
    let barrier = Barrier::new(8);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..100 {
                    budget.on_failure();
                }
            });
        }
    });
    // 800 failures from eight threads, none lost: 200 of 1000 left.
    assert_eq!(budget.tokens(), 200.0);
    assert!(!budget.allows_retry());
}

#[test]
fn non_retryable_errors_cost_no_tokens() {
    let budget = RetryBudget::new(10.0, 0.1);
    let retry = Retry::new(3)
        .budget(budget.clone())
        .clock(Arc::new(ManualClock::new()));
    let _ = retry.call_if(|| Err::<(), _>(HelloWorldError), |_| false);
    assert_eq!(budget.tokens(), 10.0);
}

// ---------------------------------------------------------------------------------------------
// What is retried by default
// ---------------------------------------------------------------------------------------------

#[test]
fn a_breaker_refusal_is_never_retried_by_default() {
    let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new()).unwrap();
    breaker.transition_to(CircuitState::Open).unwrap();
    let (retry, clock) = recorded(Retry::new(5));
    let mut attempts = 0;
    let err = retry
        .call(|| {
            attempts += 1;
            breaker.call(|| Ok::<_, HelloWorldError>("sent"))
        })
        .unwrap_err();
    assert!(err.is_circuit_open());
    assert_eq!(attempts, 1);
    assert!(clock.sleeps().is_empty());
    assert_eq!(breaker.metrics().not_permitted_calls, 1);
}

#[test]
fn a_full_bulkhead_is_retried_and_gets_in_once_there_is_room() {
    let pool = ThreadPoolBulkhead::new("api", PoolConfig::new(1)).unwrap();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    // The clock's sleep frees the pool's one thread during the first wait.
    struct FreeOnSleep {
        time: ManualClock,
        release: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        busy: Mutex<Option<bulkheads::TaskHandle<Option<()>>>>,
    }
    impl Clock for FreeOnSleep {
        fn now(&self) -> Instant {
            self.time.now()
        }
        fn sleep(&self, d: Duration) {
            if let Some(tx) = self.release.lock().unwrap().take() {
                tx.send(()).unwrap();
                // The slot is free once the task's result is handed back.
                self.busy.lock().unwrap().take().unwrap().join().unwrap();
            }
            self.time.advance(d);
        }
    }
    let clock = Arc::new(FreeOnSleep {
        time: ManualClock::new(),
        release: Mutex::new(Some(release)),
        busy: Mutex::new(Some(busy)),
    });
    let retry = Retry::new(3).clock(clock);
    let mut attempts = 0;
    let result: Result<u32, BulkheadError> = retry.call(|| {
        attempts += 1;
        pool.execute(|| 42)
    });
    assert_eq!(result.unwrap(), 42);
    assert_eq!(attempts, 2);
    assert_eq!(pool.stats().rejected, 1);
}

#[test]
fn retryable_classifies_the_crates_errors() {
    let breaker = CircuitBreaker::new(
        "b",
        CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(1)),
    )
    .unwrap();
    breaker.transition_to(CircuitState::ForcedOpen).unwrap();
    let refusal = breaker.try_acquire().unwrap_err();
    assert!(!refusal.is_retryable());
    assert!(!PolicyError::<()>::Bulkhead(refusal).is_retryable());
    assert!(PolicyError::Inner(()).is_retryable());
    let pool = ThreadPoolBulkhead::new("p", PoolConfig::new(1)).unwrap();
    let panicked = pool.execute(|| -> u8 { panic!("bug") }).unwrap_err();
    assert!(!panicked.is_retryable()); // a bug, not a transient failure
    pool.shutdown();
    assert!(!pool.execute(|| 1).unwrap_err().is_retryable());
}

#[test]
fn retry_is_send_sync_and_shared_by_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Retry>();
    assert_send_sync::<RetryBudget>();
    let retry = Retry::new(2).clock(Arc::new(ManualClock::new()));
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..100 {
                    let _ = retry.call(|| Err::<(), _>(HelloWorldError));
                }
            });
        }
    });
    let m = retry.metrics();
    assert_eq!((m.failed_with_retry, m.retries), (800, 800));
}

#[test]
fn waits_and_throttled_retries_are_events() {
    use bulkheads::EventKind;
    let budget = RetryBudget::new(4.0, 0.1);
    let (retry, clock) = recorded(Retry::new(3).name("search").budget(budget));
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    retry.on_event(move |e| {
        assert_eq!(e.bulkhead, "search");
        seen.lock().unwrap().push(e.kind);
    });
    retry.on_event(|_| panic!("a broken listener"));
    // 4 tokens: the first failure leaves 3 (> 2, retry), the second 2 (not > 2: throttled).
    let _ = retry.call(|| Err::<(), _>(HelloWorldError));
    assert_eq!(
        *log.lock().unwrap(),
        [
            EventKind::RetryScheduled {
                attempt: 2,
                wait: DEFAULT_WAIT
            },
            EventKind::RetryThrottled,
        ]
    );
    assert_eq!(clock.sleeps(), vec![DEFAULT_WAIT]);
}
