//! Stress: promises 7 and 8 under a random mix of every way to call a pool.
//!
//! Several submitter threads hammer a small pool (`PoolConfig::new(4).queue_capacity(4)`)
//! with `execute`, `execute_timeout` with short deadlines, `submit` + `join`,
//! `submit` + `join_timeout`, `submit` + `cancel`, detached submissions and panicking tasks,
//! while a sampler thread checks every `stats()` snapshot against the ceiling. Afterwards
//! every attempt's outcome, seen by its caller, is checked against what the task itself
//! recorded (did it run, and how often) and against the pool's counters. In the spirit of
//! crossbeam's channel stress tests and Hystrix's "thread-pool thread-safety" tests.

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Once};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadError, PoolConfig, PoolStats, ThreadPoolBulkhead};

mod common;
use common::{Rng, assert_snapshot_sane, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const MAX_THREADS: usize = 4;
const QUEUE: usize = 4;
const SUBMITTERS: usize = 6;

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// Calls attempted in all, shared among the submitters. Sized to finish in a few seconds on a
/// two-core machine in a debug build; shrunk under miri, as crossbeam's stress sizes are.
fn attempts() -> usize {
    if cfg!(miri) { 60 } else { 20_000 }
}

/// The payload of the panics the tasks raise on purpose: the panic hook keeps them quiet, and
/// each caller checks that the payload it got back is its own task's.
struct StressPanic(usize);

fn quiet_stress_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<StressPanic>().is_none() {
                default(info);
            }
        }));
    });
}

/// What the caller of one attempt saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// `Rejected` at admission.
    Rejected,
    /// `Shutdown` from `submit`: refused at admission.
    ShutdownAtAdmission,
    /// `Shutdown` from a handle: admitted, then discarded by `shutdown_now`.
    Discarded,
    /// `Shutdown` from `execute`/`execute_timeout`: refused or discarded, the caller cannot
    /// tell which.
    ShutdownEither,
    /// The task's own value.
    Value,
    /// `Panicked`, with the task's own payload.
    Panicked,
    /// `Timeout`.
    Timeout,
    /// `cancel()` returned true and `join` said `Cancelled`.
    Cancelled,
    /// The handle was dropped: nobody sees this outcome.
    Detached,
}

#[derive(Debug)]
struct Attempt {
    id: usize,
    op: u64,
    panics: bool,
    outcome: Outcome,
}

/// Where a `Shutdown` error came from.
#[derive(Clone, Copy)]
enum Site {
    Call,
    Handle,
}

fn classify(id: usize, panics: bool, site: Site, result: Result<usize, BulkheadError>) -> Outcome {
    match result {
        Ok(value) => {
            assert_eq!(value, id, "task {id} was handed another task's value");
            assert!(!panics, "task {id} should have panicked");
            Outcome::Value
        }
        Err(err) if err.is_panicked() => {
            assert!(panics, "task {id} panicked unexpectedly: {err}");
            assert_eq!(err.bulkhead(), "stress");
            let payload = err.into_panic().expect("the payload is kept");
            let owner = payload.downcast_ref::<StressPanic>().map(|p| p.0);
            assert_eq!(owner, Some(id), "task {id} was handed another panic");
            Outcome::Panicked
        }
        Err(err) if err.is_timeout() => Outcome::Timeout,
        Err(err) if err.is_rejected() => match site {
            Site::Call => Outcome::Rejected,
            Site::Handle => panic!("task {id}: a handle said Rejected"),
        },
        Err(err) if err.is_shutdown() => match site {
            Site::Call => Outcome::ShutdownEither,
            Site::Handle => Outcome::Discarded,
        },
        Err(err) => panic!("task {id}: unexpected {err:?}"),
    }
}

/// The task of attempt `id`: records that it ran, works a little, maybe panics.
fn task(
    id: usize,
    runs: &Arc<Vec<AtomicU8>>,
    work: Duration,
    panics: bool,
) -> impl FnOnce() -> usize + Send + 'static {
    let runs = Arc::clone(runs);
    move || {
        runs[id].fetch_add(1, Ordering::SeqCst);
        if work > Duration::from_micros(100) {
            // A blocking call: the worker sleeps, as it would on I/O.
            thread::sleep(work);
        } else {
            let end = Instant::now() + work;
            while Instant::now() < end {
                std::hint::spin_loop();
            }
        }
        if panics {
            panic::panic_any(StressPanic(id));
        }
        id
    }
}

/// One attempt of a random kind.
fn attempt(
    pool: &ThreadPoolBulkhead,
    runs: &Arc<Vec<AtomicU8>>,
    id: usize,
    rng: &mut Rng,
) -> Attempt {
    let op = rng.below(6);
    let panics = rng.below(8) == 0;
    // Mostly tiny tasks, some long enough to fill the pool and its queue; the calls with a
    // deadline get more long ones, so that deadlines pass in the queue and while running.
    let long = if op == 1 || op == 3 { 3 } else { 16 };
    let work = Duration::from_micros(if rng.below(long) == 0 {
        200 + rng.below(800)
    } else {
        rng.below(20)
    });
    // Short deadlines, of the order of the work: some pass in the queue, some while the task
    // runs, some not at all.
    let deadline = Duration::from_micros(rng.below(work.as_micros() as u64 + 200));
    let f = task(id, runs, work, panics);
    let outcome = match op {
        0 => classify(id, panics, Site::Call, pool.execute(f)),
        1 => classify(id, panics, Site::Call, pool.execute_timeout(deadline, f)),
        _ => match pool.submit(f) {
            Err(err) if err.is_rejected() => Outcome::Rejected,
            Err(err) if err.is_shutdown() => Outcome::ShutdownAtAdmission,
            Err(err) => panic!("task {id}: unexpected {err:?} from submit"),
            Ok(handle) => match op {
                2 => classify(id, panics, Site::Handle, handle.join()),
                3 => classify(id, panics, Site::Handle, handle.join_timeout(deadline)),
                4 => {
                    let cancelled = handle.cancel();
                    let result = handle.join();
                    if cancelled {
                        let err = result.expect_err("a cancelled task has no value");
                        assert!(err.is_cancelled(), "task {id}: cancelled, then {err:?}");
                        Outcome::Cancelled
                    } else {
                        let outcome = classify(id, panics, Site::Handle, result);
                        assert_ne!(outcome, Outcome::Timeout);
                        outcome
                    }
                }
                _ => {
                    drop(handle);
                    Outcome::Detached
                }
            },
        },
    };
    if op == 0 || op == 2 {
        assert_ne!(
            outcome,
            Outcome::Timeout,
            "task {id}: no deadline, yet Timeout"
        );
    }
    Attempt {
        id,
        op,
        panics,
        outcome,
    }
}

/// Asserts the gauges of one snapshot against the ceiling, and the counters against the
/// previous snapshot (they only grow).
fn check_sample(stats: &PoolStats, last: &PoolStats) {
    assert_eq!(
        (stats.max_threads, stats.queue_capacity),
        (MAX_THREADS, QUEUE)
    );
    assert_snapshot_sane("stress", stats, Some(last));
}

/// Runs the stress; with `shutdown_now_at`, the attempt of that number calls `shutdown_now`.
fn stress(seed: u64, shutdown_now_at: Option<usize>) {
    quiet_stress_panics();
    let pool =
        ThreadPoolBulkhead::new("stress", PoolConfig::new(MAX_THREADS).queue_capacity(QUEUE))
            .unwrap();
    let total = attempts() / SUBMITTERS * SUBMITTERS;
    let per_submitter = total / SUBMITTERS;
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..total).map(|_| AtomicU8::new(0)).collect());
    let started = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(SUBMITTERS + 1);

    let (results, samples) = thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = 0_u64;
            let mut last = pool.stats();
            barrier.wait();
            while !stop.load(Ordering::Acquire) {
                let stats = pool.stats();
                check_sample(&stats, &last);
                last = stats;
                samples += 1;
                thread::yield_now();
            }
            samples
        });
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|k| {
                let (pool, runs, started, barrier) = (&pool, &runs, &started, &barrier);
                s.spawn(move || {
                    let mut rng = Rng::new(seed ^ ((k as u64) << 32));
                    // With the sampler: it is sampling before the first call.
                    barrier.wait();
                    let mut seen = Vec::with_capacity(per_submitter);
                    for i in 0..per_submitter {
                        if started.fetch_add(1, Ordering::SeqCst)
                            == shutdown_now_at.unwrap_or(usize::MAX)
                        {
                            pool.shutdown_now();
                        }
                        let attempt = attempt(pool, runs, k * per_submitter + i, &mut rng);
                        if attempt.outcome == Outcome::Rejected {
                            // Pacing, not synchronisation: without it the submitters spin through
                            // their attempts on rejections while the long tasks sleep.
                            thread::sleep(Duration::from_micros(50));
                        }
                        seen.push(attempt);
                    }
                    seen
                })
            })
            .collect();
        let results: Vec<_> = submitters.into_iter().map(|h| h.join()).collect();
        stop.store(true, Ordering::Release);
        let samples = sampler.join();
        (results, samples)
    });
    let samples = samples.unwrap_or_else(|p| panic::resume_unwind(p));
    let attempts: Vec<Attempt> = results
        .into_iter()
        .flat_map(|r| r.unwrap_or_else(|p| panic::resume_unwind(p)))
        .collect();
    assert_eq!(attempts.len(), total);
    assert!(samples > 0, "the sampler never sampled");

    // Detached tasks may still be queued or running: wait until the pool is quiet.
    wait_until(LONG, "the pool is quiet", || {
        let stats = pool.stats();
        stats.running == 0 && stats.queued == 0
    });
    let stats = pool.stats();
    let runs: Vec<u8> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    verify(&stats, &attempts, &runs, shutdown_now_at.is_some());

    pool.shutdown();
    assert!(pool.await_termination(LONG));
    let after = pool.stats();
    assert_eq!(after.live_threads, 0);
    assert_eq!(
        after.completed, stats.completed,
        "something ran after the pool was quiet"
    );
}

/// Every admitted task had exactly one outcome, and the books agree with the callers.
fn verify(stats: &PoolStats, attempts: &[Attempt], runs: &[u8], shutdown_now: bool) {
    use Outcome::*;
    let count = |f: &dyn Fn(&Attempt) -> bool| attempts.iter().filter(|a| f(a)).count() as u64;
    for a in attempts {
        let ran = runs[a.id];
        let allowed: &[u8] = match a.outcome {
            Rejected | ShutdownAtAdmission | ShutdownEither | Discarded | Cancelled => &[0],
            Value | Panicked => &[1],
            Timeout => &[0, 1],
            Detached if shutdown_now => &[0, 1],
            Detached => &[1],
        };
        assert!(
            allowed.contains(&ran),
            "attempt {a:?} ran {ran} times; its caller saw {:?}",
            a.outcome
        );
        if a.outcome == Timeout {
            assert!(a.op == 1 || a.op == 3, "{a:?}");
        }
    }
    let ran_ok = count(&|a| runs[a.id] == 1 && !a.panics);
    let ran_panicked = count(&|a| runs[a.id] == 1 && a.panics);
    let never_ran = count(&|a| runs[a.id] == 0);
    let total = attempts.len() as u64;

    // Promise 8: the books add up.
    common::assert_attempts_balance("stress", stats, total);
    assert_eq!(
        stats.submitted,
        stats.completed + stats.panicked + stats.expired + stats.cancelled,
        "{stats:?}"
    );
    // ...and agree with what the tasks and their callers saw.
    assert_eq!(stats.completed, ran_ok, "{stats:?}");
    assert_eq!(stats.panicked, ran_panicked, "{stats:?}");
    assert_eq!(
        never_ran,
        stats.rejected + stats.shutdown_refused + stats.expired + stats.cancelled,
        "{stats:?}"
    );
    assert_eq!(
        stats.timed_out,
        count(&|a| a.outcome == Timeout),
        "{stats:?}"
    );
    let expired_seen = count(&|a| a.outcome == Timeout && runs[a.id] == 0);
    // A full pool and a shut-down one are counted apart (`rejected`, `shutdown_refused`).
    assert_eq!(
        stats.rejected,
        count(&|a| a.outcome == Rejected),
        "{stats:?}"
    );
    let refused = count(&|a| a.outcome == ShutdownAtAdmission);
    if shutdown_now {
        // A caller that times out while shutdown_now is discarding its task may see Timeout
        // for a task counted as cancelled.
        assert!(stats.expired <= expired_seen, "{stats:?}");
        let either = count(&|a| a.outcome == ShutdownEither);
        assert!(
            stats.shutdown_refused >= refused && stats.shutdown_refused <= refused + either,
            "{stats:?}"
        );
        assert!(stats.is_shutdown);
    } else {
        assert_eq!(stats.expired, expired_seen, "{stats:?}");
        assert_eq!(
            stats.cancelled,
            count(&|a| a.outcome == Cancelled),
            "{stats:?}"
        );
        assert_eq!(stats.shutdown_refused, refused, "{stats:?}");
        assert_eq!(count(&|a| a.outcome == ShutdownEither), 0);
    }
    assert_eq!((stats.running, stats.queued), (0, 0));
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn every_admitted_task_has_exactly_one_outcome_and_the_books_add_up() {
    stress(0x5eed_0001, None);
}

#[test]
fn the_books_add_up_when_shutdown_now_comes_in_the_middle() {
    stress(0x5eed_0002, Some(attempts() / 2));
}

// Not a stress, but the same property in its smallest form: detached tasks, some panicking,
// still run once each after shutdown, and are counted once.
#[test]
fn detached_tasks_drain_and_are_counted_once() {
    quiet_stress_panics();
    let pool = ThreadPoolBulkhead::new("stress", PoolConfig::new(2).queue_capacity(64)).unwrap();
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..64).map(|_| AtomicU8::new(0)).collect());
    for id in 0..64 {
        let handle = pool
            .submit(task(id, &runs, Duration::from_micros(10), id % 5 == 0))
            .unwrap();
        drop(handle);
    }
    pool.shutdown();
    assert!(pool.await_termination(LONG));
    let stats = pool.stats();
    assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    assert_eq!((stats.completed, stats.panicked), (51, 13));
    assert_eq!(stats.submitted, 64);
}
