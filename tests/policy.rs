//! `Policy`: fallback(retry(breaker(bulkhead(f)))) — the order and what each layer does with
//! the others' outcomes.
//!
//! The rules come from DESIGN.md's "The defensive stack" and issue 12: a bulkhead rejection
//! is not a breaker failure, a breaker refusal takes no bulkhead slot, no slot is held while
//! the retry sleeps, a refusal is never retried, the fallback sees every layer's error.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::clock::{Clock, ManualClock};
use bulkheads::{
    Backoff, CircuitBreaker, CircuitBreakerConfig, CircuitState, Policy, PolicyError, PoolConfig,
    Retry, SemaphoreBulkhead, SemaphoreConfig, SlidingWindow, ThreadPoolBulkhead,
};

#[derive(Debug, Clone, PartialEq)]
enum HttpError {
    Status(u16),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self::Status(code) = self;
        write!(f, "HTTP {code}")
    }
}

fn breaker(window: usize) -> Arc<CircuitBreaker> {
    Arc::new(
        CircuitBreaker::new(
            "email",
            CircuitBreakerConfig::new()
                .sliding_window(SlidingWindow::Count(window))
                .clock(Arc::new(ManualClock::new())),
        )
        .unwrap(),
    )
}

fn manual_retry(attempts: u32) -> Retry {
    Retry::new(attempts)
        .backoff(Backoff::fixed(Duration::from_millis(100)))
        .clock(Arc::new(ManualClock::new()))
}

#[test]
fn a_breaker_refusal_takes_no_bulkhead_slot_and_reaches_the_fallback() {
    let pool = Arc::new(ThreadPoolBulkhead::new("email", PoolConfig::new(2)).unwrap());
    let breaker = breaker(10);
    breaker.transition_to(CircuitState::Open).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let seen_in_fallback = Arc::clone(&seen);
    let policy = Policy::builder("email")
        .pool(Arc::clone(&pool))
        .circuit_breaker(Arc::clone(&breaker))
        .retry(manual_retry(3))
        .fallback(move |err: PolicyError<HttpError>| {
            *seen_in_fallback.lock().unwrap() = Some(err.is_circuit_open());
            Ok("queued")
        })
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let ran_in_call = Arc::clone(&ran);
    let out = policy.call(move || {
        ran_in_call.fetch_add(1, Ordering::SeqCst);
        Ok("sent")
    });
    assert_eq!(out.ok(), Some("queued"));
    assert_eq!(*seen.lock().unwrap(), Some(true));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    // Not submitted, not rejected: the pool never heard of the call.
    let stats = pool.stats();
    assert_eq!((stats.submitted, stats.rejected), (0, 0));
    // Refused once: the retry did not try again.
    assert_eq!(breaker.metrics().not_permitted_calls, 1);
}

#[test]
fn a_bulkhead_rejection_is_not_a_breaker_failure() {
    let pool = Arc::new(ThreadPoolBulkhead::new("email", PoolConfig::new(1)).unwrap());
    let (release, blocked) = mpsc::channel::<()>();
    let busy = pool.submit(move || blocked.recv().ok()).unwrap();
    let breaker = breaker(2);
    let policy = Policy::builder("email")
        .pool(Arc::clone(&pool))
        .circuit_breaker(Arc::clone(&breaker))
        .build()
        .unwrap();
    for _ in 0..5 {
        let err = policy.call(|| Ok::<_, HttpError>(())).unwrap_err();
        assert!(err.is_rejected(), "{err}");
    }
    // Five rejections, and the breaker (which opens on 2 failures) is still closed with an
    // empty window: a full bulkhead says nothing about the dependency.
    let m = breaker.metrics();
    assert_eq!(m.state, CircuitState::Closed);
    assert_eq!((m.buffered_calls, m.ignored_total), (0, 5));
    assert_eq!(pool.stats().rejected, 5);
    release.send(()).unwrap();
    busy.join().unwrap();
}

#[test]
fn failures_open_the_breaker_and_the_retry_stops_at_the_refusal() {
    let pool = Arc::new(ThreadPoolBulkhead::new("email", PoolConfig::new(2)).unwrap());
    let breaker = breaker(2);
    let policy = Policy::builder("email")
        .pool(Arc::clone(&pool))
        .circuit_breaker(Arc::clone(&breaker))
        .retry(manual_retry(5))
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let err = policy
        .call(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(HttpError::Status(503))
        })
        .unwrap_err();
    // Two failed attempts open the breaker; the third is refused and not retried.
    assert!(err.is_circuit_open(), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(pool.stats().submitted, 2);
}

/// A clock whose sleep checks that the compartment holds nothing while the retry waits.
struct CheckingClock {
    time: ManualClock,
    check: Box<dyn Fn() + Send + Sync>,
    sleeps: AtomicUsize,
}

impl Clock for CheckingClock {
    fn now(&self) -> Instant {
        self.time.now()
    }

    fn sleep(&self, d: Duration) {
        (self.check)();
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        self.time.advance(d);
    }
}

#[test]
fn no_slot_or_permit_is_held_while_the_retry_sleeps() {
    let sem = Arc::new(SemaphoreBulkhead::new("db", SemaphoreConfig::new(1)).unwrap());
    let breaker = breaker(10);
    let attempts = Arc::new(AtomicUsize::new(0));
    let (s, b, a) = (
        Arc::clone(&sem),
        Arc::clone(&breaker),
        Arc::clone(&attempts),
    );
    let clock = Arc::new(CheckingClock {
        time: ManualClock::new(),
        check: Box::new(move || {
            assert_eq!(
                s.stats().running,
                0,
                "a semaphore permit held through the sleep"
            );
            // The failed attempt reported to the breaker before the sleep began.
            assert_eq!(b.metrics().buffered_calls, a.load(Ordering::SeqCst));
        }),
        sleeps: AtomicUsize::new(0),
    });
    let policy = Policy::builder("db")
        .semaphore(Arc::clone(&sem))
        .circuit_breaker(Arc::clone(&breaker))
        .retry(Retry::new(3).clock(clock.clone()))
        .build()
        .unwrap();
    let counted = Arc::clone(&attempts);
    let result = policy.call(move || {
        if counted.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(HttpError::Status(503))
        } else {
            Ok(1)
        }
    });
    assert_eq!(result.ok(), Some(1));
    assert_eq!(clock.sleeps.load(Ordering::SeqCst), 2);
    assert_eq!(sem.stats().permitted, 3);
    let m = breaker.metrics();
    assert_eq!((m.failed_calls, m.successful_calls), (2, 1));
}

#[test]
fn each_attempt_has_its_own_deadline_and_a_timeout_is_a_breaker_failure() {
    let pool = Arc::new(ThreadPoolBulkhead::new("api", PoolConfig::new(2)).unwrap());
    let breaker = breaker(10);
    let policy = Policy::builder("api")
        .pool(Arc::clone(&pool))
        .circuit_breaker(Arc::clone(&breaker))
        .retry(manual_retry(2))
        .timeout(Duration::from_millis(30))
        .build()
        .unwrap();
    let (release, stuck) = mpsc::channel::<()>();
    let stuck = Arc::new(Mutex::new(stuck));
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let started = Instant::now();
    let result = policy.call(move || {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            // The first attempt hangs (bounded, so a failed test cannot hang for ever).
            let _ = stuck.lock().unwrap().recv_timeout(Duration::from_secs(30));
        }
        Ok::<_, HttpError>("pong")
    });
    assert_eq!(result.ok(), Some("pong"));
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    // The first attempt's caller gave up at its deadline: well before the 30 s hang.
    assert!(started.elapsed() < Duration::from_secs(10));
    let m = breaker.metrics();
    assert_eq!((m.failed_calls, m.successful_calls), (1, 1));
    assert_eq!(pool.stats().timed_out, 1);
    release.send(()).unwrap();
}

#[test]
fn a_panic_in_the_pool_is_a_breaker_failure_and_is_not_retried() {
    let pool = Arc::new(ThreadPoolBulkhead::new("parser", PoolConfig::new(1)).unwrap());
    let breaker = breaker(10);
    let policy = Policy::builder("parser")
        .pool(Arc::clone(&pool))
        .circuit_breaker(Arc::clone(&breaker))
        .retry(manual_retry(3))
        .build()
        .unwrap();
    let err = policy
        .call(|| -> Result<u8, HttpError> { panic!("bad input") })
        .unwrap_err();
    let layer = err.bulkhead_error().expect("a layer's error");
    assert!(layer.is_panicked());
    assert_eq!(pool.stats().panicked, 1);
    assert_eq!(breaker.metrics().failed_calls, 1);
}

#[test]
fn a_panic_on_the_callers_thread_unwinds_and_counts_as_a_failure() {
    let sem = Arc::new(SemaphoreBulkhead::new("db", SemaphoreConfig::new(1)).unwrap());
    let breaker = breaker(10);
    let policy = Policy::builder("db")
        .semaphore(Arc::clone(&sem))
        .circuit_breaker(Arc::clone(&breaker))
        .build()
        .unwrap();
    let unwound = catch_unwind(AssertUnwindSafe(|| {
        policy.call(|| -> Result<u8, HttpError> { panic!("driver bug") })
    }));
    assert!(unwound.is_err());
    assert_eq!(breaker.metrics().failed_calls, 1);
    assert_eq!(sem.stats().running, 0);
    assert_eq!(policy.call(|| Ok::<_, HttpError>(3)).ok(), Some(3));
}

#[test]
fn breaker_failure_if_counts_answers_as_successes() {
    let breaker = breaker(2);
    let policy = Policy::builder("catalog")
        .circuit_breaker(Arc::clone(&breaker))
        .breaker_failure_if(|e: &HttpError| matches!(e, HttpError::Status(500..)))
        .build()
        .unwrap();
    for _ in 0..4 {
        let err = policy
            .call(|| Err::<(), _>(HttpError::Status(404)))
            .unwrap_err();
        assert_eq!(err.into_inner(), Some(HttpError::Status(404)));
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().failed_calls, 0);
    let _ = policy.call(|| Err::<(), _>(HttpError::Status(503)));
    let _ = policy.call(|| Err::<(), _>(HttpError::Status(502)));
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[test]
fn retry_if_overrides_what_is_retried() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&attempts);
    let policy = Policy::builder("search")
        .retry(manual_retry(4))
        .retry_if(|e: &PolicyError<HttpError>| {
            matches!(e, PolicyError::Inner(HttpError::Status(503)))
        })
        .build()
        .unwrap();
    let _ = policy.call(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>(HttpError::Status(400))
    });
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}

#[test]
fn the_fallback_may_pass_the_error_on() {
    let policy = Policy::builder("email")
        .fallback(|err: PolicyError<HttpError>| match err {
            PolicyError::Inner(HttpError::Status(404)) => Ok("no such mailbox"),
            other => Err(other),
        })
        .build()
        .unwrap();
    assert_eq!(
        policy.call(|| Err(HttpError::Status(404))).ok(),
        Some("no such mailbox")
    );
    let err = policy.call(|| Err(HttpError::Status(500))).unwrap_err();
    assert_eq!(err.into_inner(), Some(HttpError::Status(500)));
}

#[test]
fn decorate_once_call_from_eight_threads_books_add_up() {
    let n = if cfg!(miri) { 10 } else { 500 };
    let pool = Arc::new(ThreadPoolBulkhead::new("inventory", PoolConfig::new(8)).unwrap());
    let breaker = Arc::new(
        CircuitBreaker::new(
            "inventory",
            CircuitBreakerConfig::new().sliding_window(SlidingWindow::Count(100)),
        )
        .unwrap(),
    );
    let policy = Policy::builder("inventory")
        .pool(Arc::clone(&pool))
        .circuit_breaker(Arc::clone(&breaker))
        .build()
        .unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&served);
    let check = policy.decorate(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok::<_, HttpError>(1_u64)
    });
    let barrier = Barrier::new(8);
    let total: u64 = thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    (0..n).map(|_| check().unwrap()).sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, 8 * n as u64);
    assert_eq!(served.load(Ordering::Relaxed), 8 * n);
    assert_eq!(pool.stats().completed, 8 * n as u64);
    assert_eq!(breaker.metrics().successes_total, 8 * n as u64);
}

#[test]
fn bad_policies_are_config_errors_naming_the_policy_and_the_field() {
    let pool = || Arc::new(ThreadPoolBulkhead::new("p", PoolConfig::new(1)).unwrap());
    let sem = || Arc::new(SemaphoreBulkhead::new("s", SemaphoreConfig::new(1)).unwrap());
    let cases: Vec<(Result<Policy<(), HttpError>, _>, &str)> = vec![
        (
            Policy::builder("x").pool(pool()).semaphore(sem()).build(),
            "bulkhead",
        ),
        (
            Policy::builder("x").semaphore(sem()).pool(pool()).build(),
            "bulkhead",
        ),
        (
            Policy::builder("x")
                .semaphore(sem())
                .timeout(Duration::from_secs(1))
                .build(),
            "timeout",
        ),
        (
            Policy::builder("x").timeout(Duration::from_secs(1)).build(),
            "timeout",
        ),
        (
            Policy::builder("x")
                .pool(pool())
                .timeout(Duration::ZERO)
                .build(),
            "timeout",
        ),
        (
            Policy::builder("x").retry(Retry::new(0)).build(),
            "max_attempts",
        ),
        (Policy::builder("").build(), "name"),
    ];
    for (result, field) in cases {
        let err = result.expect_err(field);
        assert_eq!(err.field(), field, "{err}");
    }
    let err = Policy::<(), HttpError>::builder("orders")
        .retry(Retry::new(3).backoff(Backoff::fixed(Duration::ZERO)))
        .build()
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("orders", "backoff"));
}

#[test]
fn policies_are_send_sync_and_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    // Whatever T and E are: the policy holds neither.
    assert_send_sync::<Policy<std::rc::Rc<u8>, std::cell::Cell<u8>>>();
    let policy: Policy<u8, HttpError> = Policy::builder("p").build().unwrap();
    let copy = policy.clone();
    assert_eq!(copy.name(), "p");
}

#[test]
fn a_policys_retry_reports_under_the_policys_name() {
    let names = Arc::new(Mutex::new(Vec::new()));
    let unnamed = manual_retry(2);
    let seen = Arc::clone(&names);
    unnamed.on_event(move |e| seen.lock().unwrap().push(e.bulkhead.to_owned()));
    let policy = Policy::builder("checkout").retry(unnamed).build().unwrap();
    let _ = policy.call(|| Err::<(), _>(HttpError::Status(503)));
    let named = manual_retry(2).name("own-name");
    let seen = Arc::clone(&names);
    named.on_event(move |e| seen.lock().unwrap().push(e.bulkhead.to_owned()));
    let policy = Policy::builder("checkout").retry(named).build().unwrap();
    let _ = policy.call(|| Err::<(), _>(HttpError::Status(503)));
    assert_eq!(*names.lock().unwrap(), ["checkout", "own-name"]);
}
