//! Adaptive bulkheads: `PoolConfig::adaptive` / `SemaphoreConfig::adaptive` drive a
//! `LimitAlgorithm` (DESIGN.md, "Adaptive limits").
//!
//! The algorithms' own rules are tested in `tests/limit.rs` (ports of Netflix's tests).
//! Here: that a bulkhead runs at most the limit in force, feeds one sample per finished
//! call, counts timeouts and `report_overload` as drops, and that each change of the limit
//! keeps resizing's promises — raising starts queued work at once, lowering takes nothing
//! back, the books stay exact. Most tests steer the limit with `Dial`, a user-defined
//! algorithm whose limit the test sets, so that no test depends on timing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use bulkheads::limit::{self, Aimd, LimitAlgorithm, Sample};
use bulkheads::{EventKind, PoolConfig, SemaphoreBulkhead, SemaphoreConfig, ThreadPoolBulkhead};

mod common;
use common::{Gate, OpenOnDrop, assert_books_balance, wait_until};

const LONG: Duration = Duration::from_secs(10);

/// An algorithm whose limit the test sets; it records every sample it is fed.
#[derive(Clone)]
struct Dial {
    limit: Arc<AtomicUsize>,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Dial {
    fn new(limit: usize) -> Self {
        Self {
            limit: Arc::new(AtomicUsize::new(limit)),
            samples: Arc::default(),
        }
    }

    fn set(&self, limit: usize) {
        self.limit.store(limit, Ordering::SeqCst);
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }
}

impl LimitAlgorithm for Dial {
    fn limit(&self) -> usize {
        self.limit.load(Ordering::SeqCst)
    }

    fn update(&mut self, sample: Sample) -> usize {
        self.samples.lock().unwrap().push(sample);
        self.limit()
    }
}

/// Submits a task that reports its start on `started` and blocks until `gate` opens.
fn blocked(
    pool: &ThreadPoolBulkhead,
    gate: &Arc<Gate>,
    started: &mpsc::Sender<usize>,
    id: usize,
) -> bulkheads::TaskHandle<()> {
    let (gate, started) = (gate.clone(), started.clone());
    pool.submit(move || {
        started.send(id).unwrap();
        gate.wait();
    })
    .expect("admitted")
}

#[test]
fn the_limit_bounds_admission_within_max_threads() {
    let dial = Dial::new(2);
    let pool = ThreadPoolBulkhead::new("adaptive-bound", PoolConfig::new(8).adaptive(dial.clone()))
        .unwrap();
    let s = pool.stats();
    assert_eq!((s.limit, s.max_threads), (2, 8));

    let gate = Gate::new();
    let _open = OpenOnDrop(gate.clone());
    let (tx, rx) = mpsc::channel();
    let a = blocked(&pool, &gate, &tx, 0);
    let b = blocked(&pool, &gate, &tx, 1);
    rx.recv_timeout(LONG).unwrap();
    rx.recv_timeout(LONG).unwrap();
    // No queue: a third call past the limit of 2 is rejected at once, although 6 more
    // threads are allowed by max_threads.
    let err = pool.execute(|| ()).unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert_eq!(pool.stats().live_threads, 2);
    gate.open();
    a.join().unwrap();
    b.join().unwrap();
    wait_until(LONG, "both samples fed", || dial.samples().len() == 2);
}

#[test]
fn a_limit_above_max_threads_is_clamped_to_it() {
    // The algorithm may say 100; the pool never runs more than max_threads.
    let pool = ThreadPoolBulkhead::new(
        "adaptive-clamp",
        PoolConfig::new(3).adaptive(Dial::new(100)),
    )
    .unwrap();
    assert_eq!(pool.stats().limit, 3);
    let zero = ThreadPoolBulkhead::new("adaptive-zero", PoolConfig::new(3).adaptive(Dial::new(0)))
        .unwrap();
    assert_eq!(zero.stats().limit, 1, "a limit of 0 would admit nothing");
}

#[test]
fn one_sample_per_finished_task_counting_itself() {
    let dial = Dial::new(4);
    let pool = ThreadPoolBulkhead::new(
        "adaptive-samples",
        PoolConfig::new(4).adaptive(dial.clone()),
    )
    .unwrap();
    for _ in 0..10 {
        pool.execute(|| thread::sleep(Duration::from_millis(1)))
            .unwrap();
    }
    wait_until(LONG, "10 samples", || dial.samples().len() == 10);
    for sample in dial.samples() {
        assert_eq!(sample.in_flight, 1, "one call at a time, itself included");
        assert!(!sample.dropped);
        assert!(sample.rtt >= Duration::from_millis(1), "{:?}", sample.rtt);
    }
}

#[test]
fn report_overload_inside_a_task_is_a_drop() {
    let dial = Dial::new(4);
    let pool = ThreadPoolBulkhead::new(
        "adaptive-overload",
        PoolConfig::new(4).adaptive(dial.clone()),
    )
    .unwrap();
    pool.execute(limit::report_overload).unwrap();
    pool.execute(|| ()).unwrap();
    wait_until(LONG, "2 samples", || dial.samples().len() == 2);
    let dropped: Vec<bool> = dial.samples().iter().map(|s| s.dropped).collect();
    assert_eq!(
        dropped,
        [true, false],
        "the report belongs to its own task only"
    );
    // Outside any bulkhead it does nothing (and does not leak into the next call here).
    limit::report_overload();
    pool.execute(|| ()).unwrap();
    wait_until(LONG, "3 samples", || dial.samples().len() == 3);
    assert!(!dial.samples()[2].dropped);
}

#[test]
fn a_caller_timeout_is_a_drop() {
    let dial = Dial::new(4);
    let pool = ThreadPoolBulkhead::new(
        "adaptive-timeout",
        PoolConfig::new(4).adaptive(dial.clone()),
    )
    .unwrap();
    let gate = Gate::new();
    let _open = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let err = pool
        .execute_timeout(Duration::from_millis(5), move || {
            g.wait();
        })
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    gate.open();
    wait_until(LONG, "the sample", || dial.samples().len() == 1);
    assert!(dial.samples()[0].dropped, "overran its caller's deadline");
    // A call within its deadline is not.
    pool.execute_timeout(LONG, || ()).unwrap();
    wait_until(LONG, "2 samples", || dial.samples().len() == 2);
    assert!(!dial.samples()[1].dropped);
}

#[test]
fn aimd_follows_drops_down_and_healthy_calls_up() {
    let pool = ThreadPoolBulkhead::new(
        "adaptive-aimd",
        PoolConfig::new(16).adaptive(Aimd::new().initial_limit(10).min_limit(2)),
    )
    .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    pool.on_event(move |e| {
        if let EventKind::LimitChanged { from, to } = e.kind {
            seen.lock().unwrap().push((from, to));
        }
    });
    for _ in 0..3 {
        pool.execute(limit::report_overload).unwrap();
    }
    // 10 → 9 → 8 → 7 (backoff 0.9, rounded down), each an event.
    wait_until(LONG, "three cuts", || pool.stats().limit == 7);
    wait_until(LONG, "three events", || events.lock().unwrap().len() == 3);
    assert_eq!(*events.lock().unwrap(), [(10, 9), (9, 8), (8, 7)]);
    // Healthy calls while at least half the limit is in use grow it by one each; with one
    // call at a time that is only below a limit of 2, so grow it from the floor instead.
    for _ in 0..20 {
        pool.execute(limit::report_overload).unwrap();
    }
    wait_until(LONG, "the floor", || pool.stats().limit == 2);
    pool.execute(|| ()).unwrap();
    wait_until(LONG, "one up", || pool.stats().limit == 3);
}

#[test]
fn raising_the_limit_starts_queued_tasks_at_once() {
    let dial = Dial::new(1);
    let pool = ThreadPoolBulkhead::new(
        "adaptive-raise",
        PoolConfig::new(8).queue_capacity(8).adaptive(dial.clone()),
    )
    .unwrap();
    let first_gate = Gate::new();
    let rest_gate = Gate::new();
    let _open = (
        OpenOnDrop(first_gate.clone()),
        OpenOnDrop(rest_gate.clone()),
    );
    let (tx, rx) = mpsc::channel();
    let first = blocked(&pool, &first_gate, &tx, 0);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), 0);
    let rest: Vec<_> = (1..4).map(|i| blocked(&pool, &rest_gate, &tx, i)).collect();
    let s = pool.stats();
    assert_eq!((s.running, s.queued, s.limit), (1, 3, 1));
    // The first task's sample puts 4 in force: its worker takes one queued task and new
    // workers start the other two, without any new call arriving.
    dial.set(4);
    first_gate.open();
    first.join().unwrap();
    let mut started: Vec<usize> = (0..3).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
    started.sort_unstable();
    assert_eq!(started, [1, 2, 3]);
    let s = pool.stats();
    assert_eq!((s.running, s.queued, s.limit), (3, 0, 4));
    rest_gate.open();
    for h in rest {
        h.join().unwrap();
    }
    wait_until(LONG, "quiet", || pool.stats().running == 0);
    assert_books_balance(&pool);
}

#[test]
fn lowering_the_limit_takes_nothing_back_and_starts_nothing_above_it() {
    let dial = Dial::new(4);
    let pool = ThreadPoolBulkhead::new(
        "adaptive-lower",
        PoolConfig::new(4).queue_capacity(4).adaptive(dial.clone()),
    )
    .unwrap();
    // Concurrency recorded at each start.
    let running = Arc::new(AtomicUsize::new(0));
    let at_start = Arc::new(Mutex::new(Vec::new()));
    let gates: Vec<Arc<Gate>> = (0..4).map(|_| Gate::new()).collect();
    let _open: Vec<_> = gates.iter().map(|g| OpenOnDrop(g.clone())).collect();
    let (tx, rx) = mpsc::channel();
    let task = |gate: Arc<Gate>, id: usize| {
        let (running, at_start, tx) = (running.clone(), at_start.clone(), tx.clone());
        move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            at_start.lock().unwrap().push((id, now));
            tx.send(id).unwrap();
            gate.wait();
            running.fetch_sub(1, Ordering::SeqCst);
        }
    };
    let held: Vec<_> = (0..4)
        .map(|i| pool.submit(task(gates[i].clone(), i)).unwrap())
        .collect();
    for _ in 0..4 {
        rx.recv_timeout(LONG).unwrap();
    }
    // Lower to 1 through the next sample: task 0 ends.
    dial.set(1);
    gates[0].open();
    wait_until(LONG, "the limit lowered", || pool.stats().limit == 1);
    // The other three keep running: nothing is taken back.
    let s = pool.stats();
    assert_eq!(s.running, 3, "{s:?}");
    assert_eq!(s.limit, 1);
    // Capacity is now limit + queue = 5, with 3 in flight: two more queue, none starts.
    let late_gate = Gate::new();
    let _late_open = OpenOnDrop(late_gate.clone());
    let late: Vec<_> = (10..12)
        .map(|i| pool.submit(task(late_gate.clone(), i)).unwrap())
        .collect();
    assert_eq!(pool.stats().queued, 2);
    // Release the three; each late task then starts alone (limit 1).
    late_gate.open();
    for gate in &gates[1..] {
        gate.open();
    }
    for h in held.into_iter().chain(late) {
        h.join().unwrap();
    }
    for (id, concurrency) in at_start.lock().unwrap().iter().filter(|(id, _)| *id >= 10) {
        assert!(
            *concurrency <= 3,
            "task {id} started with {concurrency} running after the limit fell to 1"
        );
    }
    wait_until(LONG, "quiet", || pool.stats().running == 0);
    assert_books_balance(&pool);
    wait_until(LONG, "surplus workers gone", || {
        pool.stats().live_threads <= 1
    });
}

#[test]
fn config_carries_the_algorithm_in_force_and_reconfigure_keeps_or_drops_it() {
    let pool = ThreadPoolBulkhead::new(
        "adaptive-config",
        PoolConfig::new(8).adaptive(Aimd::new().initial_limit(6).min_limit(1)),
    )
    .unwrap();
    pool.execute(limit::report_overload).unwrap();
    wait_until(LONG, "the cut", || pool.stats().limit == 5);
    let config = pool.config();
    assert!(config.is_adaptive());
    // Handing back the configuration keeps what the algorithm learnt.
    pool.reconfigure(config.clone().queue_capacity(2)).unwrap();
    let s = pool.stats();
    assert_eq!((s.limit, s.queue_capacity), (5, 2));
    assert_eq!(pool.config(), config.queue_capacity(2));
    // A configuration without an algorithm makes the pool fixed again.
    pool.reconfigure(PoolConfig::new(8)).unwrap();
    assert_eq!(pool.stats().limit, 8);
    pool.execute(limit::report_overload).unwrap();
    assert_eq!(pool.stats().limit, 8, "a fixed pool ignores the report");
}

#[test]
fn an_invalid_algorithm_is_a_config_error_naming_the_pool_and_field() {
    let err = ThreadPoolBulkhead::new(
        "adaptive-bad",
        PoolConfig::new(4).adaptive(Aimd::new().backoff_ratio(0.2)),
    )
    .unwrap_err();
    assert_eq!(
        (err.bulkhead(), err.field()),
        ("adaptive-bad", "backoff_ratio")
    );
    let pool = ThreadPoolBulkhead::new("adaptive-bad2", PoolConfig::new(4)).unwrap();
    let err = pool
        .reconfigure(PoolConfig::new(4).adaptive(Aimd::new().min_limit(9).max_limit(3)))
        .unwrap_err();
    assert_eq!(err.bulkhead(), "adaptive-bad2");
    assert!(
        !pool.config().is_adaptive(),
        "an invalid change changes nothing"
    );
    let err = SemaphoreBulkhead::new(
        "adaptive-bad3",
        SemaphoreConfig::new(4).adaptive(limit::Vegas::new().smoothing(f64::NAN)),
    )
    .unwrap_err();
    assert_eq!(
        (err.bulkhead(), err.field()),
        ("adaptive-bad3", "smoothing")
    );
}

/// An algorithm that panics on its third sample.
struct Faulty(usize);

impl LimitAlgorithm for Faulty {
    fn limit(&self) -> usize {
        2
    }
    fn update(&mut self, _: Sample) -> usize {
        self.0 += 1;
        assert!(self.0 != 3, "faulty algorithm");
        2
    }
}

#[test]
fn a_panicking_algorithm_takes_neither_worker_nor_books() {
    let pool =
        ThreadPoolBulkhead::new("adaptive-faulty", PoolConfig::new(2).adaptive(Faulty(0))).unwrap();
    for i in 0..6 {
        assert_eq!(pool.execute(move || i).unwrap(), i);
    }
    wait_until(LONG, "quiet", || pool.stats().completed == 6);
    assert_eq!(pool.stats().limit, 2);
    assert_books_balance(&pool);
}

#[test]
fn concurrent_calls_and_limit_changes_keep_exact_books() {
    let dial = Dial::new(4);
    let pool = Arc::new(
        ThreadPoolBulkhead::new(
            "adaptive-stress",
            PoolConfig::new(6).queue_capacity(3).adaptive(dial.clone()),
        )
        .unwrap(),
    );
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let calls = if cfg!(miri) { 20 } else { 300 };
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            thread::spawn(move || {
                let mut outcomes = (0u64, 0u64);
                for i in 0..calls {
                    let (running, peak) = (running.clone(), peak.clone());
                    match pool.execute(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        if i % 7 == 0 {
                            limit::report_overload();
                        }
                        thread::yield_now();
                        running.fetch_sub(1, Ordering::SeqCst);
                    }) {
                        Ok(()) => outcomes.0 += 1,
                        Err(e) if e.is_rejected() => outcomes.1 += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                outcomes
            })
        })
        .collect();
    let changer = {
        let dial = dial.clone();
        let pool = pool.clone();
        thread::spawn(move || {
            let mut rng = common::Rng::new(7);
            for _ in 0..200 {
                dial.set(1 + (rng.next() % 8) as usize);
                thread::yield_now();
                if rng.next() % 10 == 0 {
                    pool.set_queue_capacity((rng.next() % 4) as usize).unwrap();
                }
            }
        })
    };
    let (mut ok, mut rejected) = (0, 0);
    for c in callers {
        let (a, b) = c.join().unwrap();
        ok += a;
        rejected += b;
    }
    changer.join().unwrap();
    wait_until(LONG, "quiet", || pool.stats().running == 0);
    let s = pool.stats();
    assert_eq!(ok + rejected, 3 * calls as u64);
    assert_eq!((s.completed, s.rejected), (ok, rejected), "{s:?}");
    assert_books_balance(&pool);
    assert!(peak.load(Ordering::SeqCst) <= 6, "never above max_threads");
    assert!((1..=6).contains(&s.limit));
}

#[test]
fn semaphore_overload_and_overrun_are_drops() {
    let dial = Dial::new(3);
    let sem = SemaphoreBulkhead::new(
        "adaptive-sem",
        SemaphoreConfig::new(5).adaptive(dial.clone()),
    )
    .unwrap();
    let s = sem.stats();
    assert_eq!((s.limit, s.max_concurrent), (3, 5));
    sem.call(limit::report_overload).unwrap();
    sem.call(|| ()).unwrap();
    sem.call_timeout(Duration::from_millis(1), || {
        thread::sleep(Duration::from_millis(5))
    })
    .unwrap();
    let dropped: Vec<bool> = dial.samples().iter().map(|s| s.dropped).collect();
    assert_eq!(dropped, [true, false, true]);
    assert!(dial.samples().iter().all(|s| s.in_flight == 1));
}

#[test]
fn semaphore_limit_bounds_permits_and_raising_grants_waiters() {
    let dial = Dial::new(2);
    let sem = Arc::new(
        SemaphoreBulkhead::new(
            "adaptive-sem-raise",
            SemaphoreConfig::new(4)
                .max_wait(LONG)
                .adaptive(dial.clone()),
        )
        .unwrap(),
    );
    // Two permits in force: one held by a raw permit, one by a call blocked on a gate.
    let raw = sem.try_acquire_owned().unwrap();
    let gate = Gate::new();
    let _open = OpenOnDrop(gate.clone());
    let blocked_call = {
        let (sem, gate) = (sem.clone(), gate.clone());
        thread::spawn(move || sem.call(|| gate.wait()))
    };
    wait_until(LONG, "the call holds its permit", || {
        sem.stats().running == 2
    });
    assert!(sem.try_acquire().is_err(), "the limit of 2 is taken");
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let sem = sem.clone();
            thread::spawn(move || sem.call(|| ()))
        })
        .collect();
    wait_until(LONG, "two waiters", || sem.stats().waiting == 2);
    // The blocked call's sample puts 4 in force: both waiters are granted although the raw
    // permit is still held (its release alone would have granted only one).
    dial.set(4);
    gate.open();
    blocked_call.join().unwrap().unwrap();
    for w in waiters {
        w.join().unwrap().unwrap();
    }
    assert_eq!(sem.stats().limit, 4);
    assert_eq!(sem.stats().running, 1, "only the raw permit");
    drop(raw);
    assert_eq!(sem.stats().running, 0);
}

/// An algorithm that reads its bulkhead's stats from inside `update`, as a user's algorithm
/// logging its decisions might.
struct Introspecting {
    pool: Arc<Mutex<std::sync::Weak<ThreadPoolBulkhead>>>,
    sem: Arc<Mutex<std::sync::Weak<SemaphoreBulkhead>>>,
    seen: Arc<AtomicUsize>,
}

impl LimitAlgorithm for Introspecting {
    fn limit(&self) -> usize {
        2
    }
    fn update(&mut self, _: Sample) -> usize {
        if let Some(pool) = self.pool.lock().unwrap().upgrade() {
            self.seen.fetch_add(pool.stats().limit, Ordering::SeqCst);
        }
        if let Some(sem) = self.sem.lock().unwrap().upgrade() {
            self.seen.fetch_add(sem.stats().limit, Ordering::SeqCst);
        }
        1
    }
}

#[test]
fn an_algorithm_may_read_its_bulkheads_stats() {
    // Regression: the algorithm ran under the bulkhead's config lock, which `stats()` takes:
    // a worker (or a semaphore's caller) deadlocked on its own lock.
    let seen = Arc::new(AtomicUsize::new(0));
    let algorithm = |pool, sem| Introspecting {
        pool,
        sem,
        seen: seen.clone(),
    };
    let pool_slot = Arc::new(Mutex::new(std::sync::Weak::new()));
    let pool = Arc::new(
        ThreadPoolBulkhead::new(
            "adaptive-introspect",
            PoolConfig::new(2).adaptive(algorithm(pool_slot.clone(), Arc::default())),
        )
        .unwrap(),
    );
    *pool_slot.lock().unwrap() = Arc::downgrade(&pool);
    pool.execute_timeout(LONG, || ()).unwrap();
    wait_until(LONG, "the sample and its new limit", || {
        pool.stats().limit == 1
    });
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "read the limit of 2 inside update"
    );

    let sem_slot = Arc::new(Mutex::new(std::sync::Weak::new()));
    let sem = Arc::new(
        SemaphoreBulkhead::new(
            "adaptive-introspect-sem",
            SemaphoreConfig::new(2).adaptive(algorithm(Arc::default(), sem_slot.clone())),
        )
        .unwrap(),
    );
    *sem_slot.lock().unwrap() = Arc::downgrade(&sem);
    sem.call(|| ()).unwrap();
    assert_eq!(sem.stats().limit, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 4);
}
