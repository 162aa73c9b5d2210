//! `BulkheadManager`: the registry of named bulkheads, its builder and its stats table.
//!
//! Ported in spirit from resilience4j's `BulkheadRegistryTest` and
//! `ThreadPoolBulkheadRegistryTest` ("shouldReturnTheCorrectName", "shouldBeTheSameBulkhead",
//! "shouldBeNotTheSameBulkhead", "shouldReturnCustomConfig", "canBuildRegistryWithDefault
//! Config", "getAllBulkheads") and from the configuration checks of the MicroProfile Fault
//! Tolerance TCK (an invalid `@Bulkhead` is a definition error, never a runtime surprise).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, BulkheadManagerBuilder, BulkheadStats, ConfigError, EventKind, PoolConfig,
    SemaphoreConfig, ThreadPoolBulkhead,
};

mod common;
use common::{Gate, OpenOnDrop, threads_named, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// A task that reports on `started` once it runs, then blocks on `gate` and returns `value`.
fn blocking_task(
    gate: &Arc<Gate>,
    started: &mpsc::Sender<()>,
    value: u32,
) -> impl FnOnce() -> u32 + Send + 'static {
    let (gate, started) = (Arc::clone(gate), started.clone());
    move || {
        let _ = started.send(());
        gate.wait();
        value
    }
}

/// Builds, and fails the test with a clear message if the builder panics instead of returning.
fn try_build(case: &str, builder: BulkheadManagerBuilder) -> Result<BulkheadManager, ConfigError> {
    catch_unwind(AssertUnwindSafe(|| builder.build()))
        .unwrap_or_else(|_| panic!("{case}: build() panicked instead of returning an error"))
}

// ---------------------------------------------------------------------------------------------
// Builder and lookup
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_registers_named_pools_and_semaphores_with_their_own_config() {
    let manager = BulkheadManager::builder()
        .pool("inventory", PoolConfig::new(4).queue_capacity(2))
        .pool("payment", PoolConfig::new(2))
        .semaphore("cache", SemaphoreConfig::new(8))
        .build()
        .unwrap();

    // Configured bulkheads exist before first use ("getAllBulkheads").
    let names: Vec<String> = manager
        .stats()
        .bulkheads
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    assert_eq!(names, ["cache", "inventory", "payment"]);

    let inventory = manager.get_pool("inventory").expect("configured");
    assert_eq!(inventory.name(), "inventory");
    let stats = inventory.stats();
    assert_eq!((stats.max_threads, stats.queue_capacity), (4, 2));
    assert_eq!(
        stats.live_threads, 0,
        "a configured pool started a thread early"
    );
    assert_eq!(manager.pool("payment").stats().max_threads, 2);
    assert_eq!(manager.pool("payment").stats().queue_capacity, 0);
    let cache = manager.semaphore("cache");
    assert_eq!(cache.name(), "cache");
    assert_eq!(cache.stats().max_concurrent, 8);

    assert_eq!(inventory.execute(|| 41 + 1).unwrap(), 42);
    assert_eq!(cache.call(|| "hit").unwrap(), "hit");
    assert!(manager.shutdown(LONG));
}

#[test]
fn a_manager_without_configuration_uses_the_textbook_defaults() {
    for manager in [BulkheadManager::new(), BulkheadManager::default()] {
        assert!(manager.stats().bulkheads.is_empty());
        let stats = manager.pool("anything").stats();
        assert_eq!((stats.max_threads, stats.queue_capacity), (10, 5));
        assert_eq!(stats.max_threads, PoolConfig::default().max_threads_value());
        assert_eq!(manager.semaphore("anything").stats().max_concurrent, 25);
        assert_eq!(manager.stats().bulkheads.len(), 2);
    }
    let manager = BulkheadManager::builder().build().unwrap();
    assert_eq!(manager.pool("x").stats().max_threads, 10);
}

#[test]
fn unconfigured_names_get_the_default_config_and_configured_names_keep_theirs() {
    let manager = BulkheadManager::builder()
        .default_pool_config(PoolConfig::new(3).queue_capacity(1))
        .default_semaphore_config(SemaphoreConfig::new(2))
        .pool("custom", PoolConfig::new(1))
        .semaphore("custom-sem", SemaphoreConfig::new(7))
        .build()
        .unwrap();

    let stats = manager.pool("fresh").stats();
    assert_eq!((stats.max_threads, stats.queue_capacity), (3, 1));
    let stats = manager.pool("custom").stats();
    assert_eq!((stats.max_threads, stats.queue_capacity), (1, 0));
    assert_eq!(manager.semaphore("fresh-sem").stats().max_concurrent, 2);
    assert_eq!(manager.semaphore("custom-sem").stats().max_concurrent, 7);

    // The default really governs admission: 3 threads + 1 queued, then rejection.
    let pool = manager.pool("fresh");
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let handles: Vec<_> = (0..4)
        .map(|i| pool.submit(blocking_task(&gate, &started_tx, i)).unwrap())
        .collect();
    assert!(pool.submit(|| 0).unwrap_err().is_rejected());
    for _ in 0..3 {
        started.recv_timeout(LONG).unwrap();
    }
    gate.open();
    let values: Vec<u32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(values, [0, 1, 2, 3]);
}

#[test]
fn pool_is_get_or_create_and_returns_the_same_arc_for_the_same_name() {
    let manager = BulkheadManager::new();
    let a = manager.pool("a");
    assert_eq!(a.name(), "a");
    assert!(Arc::ptr_eq(&a, &manager.pool("a")), "not the same pool");
    assert!(Arc::ptr_eq(&a, &manager.try_pool("a").unwrap()));
    assert!(Arc::ptr_eq(&a, &manager.get_pool("a").unwrap()));
    let b = manager.pool("b");
    assert!(!Arc::ptr_eq(&a, &b), "two names share a pool");

    // State lives in the one pool, whichever handle ran the call.
    manager.pool("a").execute(|| ()).unwrap();
    a.execute(|| ()).unwrap();
    assert_eq!(manager.pool("a").stats().completed, 2);
    assert_eq!(b.stats().completed, 0);

    let s = manager.semaphore("s");
    assert_eq!(s.name(), "s");
    assert!(Arc::ptr_eq(&s, &manager.semaphore("s")));
    assert!(Arc::ptr_eq(&s, &manager.try_semaphore("s").unwrap()));
    assert!(Arc::ptr_eq(&s, &manager.get_semaphore("s").unwrap()));
    assert!(!Arc::ptr_eq(&s, &manager.semaphore("t")));
    let _permit = s.try_acquire().unwrap();
    assert_eq!(manager.semaphore("s").stats().running, 1);
}

#[test]
fn sixteen_threads_racing_on_a_new_name_get_one_pool() {
    const THREADS: usize = 16;
    for round in 0..20 {
        let manager = BulkheadManager::new();
        let name = format!("racy-{round}");
        let barrier = Barrier::new(THREADS);
        let pools: Vec<Arc<ThreadPoolBulkhead>> = thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        manager.pool(&name)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for pool in &pools[1..] {
            assert!(
                Arc::ptr_eq(&pools[0], pool),
                "round {round}: two threads got different pools"
            );
        }
        let stats = manager.stats();
        assert_eq!(stats.bulkheads.len(), 1, "round {round}: {stats:?}");
        assert_eq!(stats.bulkheads[0].name(), name);
        assert!(matches!(stats.bulkheads[0], BulkheadStats::Pool(_)));
    }
}

#[test]
fn sixteen_threads_racing_on_a_new_semaphore_name_get_one_semaphore() {
    const THREADS: usize = 16;
    let manager = BulkheadManager::new();
    let barrier = Barrier::new(THREADS);
    let sems: Vec<_> = thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    manager.semaphore("racy")
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(sems.iter().all(|s| Arc::ptr_eq(s, &sems[0])));
    assert_eq!(manager.stats().bulkheads.len(), 1);
}

#[test]
fn get_pool_returns_none_for_unknown_names_and_does_not_create() {
    let manager = BulkheadManager::builder()
        .pool("known", PoolConfig::new(1))
        .build()
        .unwrap();
    assert!(manager.get_pool("ghost").is_none());
    assert!(manager.get_pool("ghost").is_none());
    assert!(manager.get_semaphore("ghost").is_none());
    assert!(
        manager.get_semaphore("known").is_none(),
        "pools and semaphores are apart"
    );
    assert!(manager.stats().pool("ghost").is_none());
    assert_eq!(manager.stats().bulkheads.len(), 1);

    let created = manager.pool("ghost");
    let found = manager.get_pool("ghost").expect("created by pool()");
    assert!(Arc::ptr_eq(&created, &found));
    assert_eq!(manager.stats().bulkheads.len(), 2);
}

#[test]
fn invalid_names_at_lookup_are_config_errors_and_create_nothing() {
    let manager = BulkheadManager::new();
    let err = manager.try_pool("").unwrap_err();
    assert_eq!(err.field(), "name");
    let err = manager.try_pool("nul\0byte").unwrap_err();
    assert_eq!(err.field(), "name");
    assert_eq!(manager.try_semaphore("").unwrap_err().field(), "name");
    assert!(manager.stats().bulkheads.is_empty());
    // `pool("")` is documented to panic (names from outside belong in `try_pool`); it must
    // name the field, and leave the manager usable.
    let panic = catch_unwind(AssertUnwindSafe(|| manager.pool(""))).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("name"), "{message:?}");
    assert_eq!(manager.pool("ok").execute(|| 1).unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_invalid_configuration_is_a_config_error_naming_the_bulkhead_and_the_field() {
    let b = BulkheadManager::builder;
    let cases: Vec<(&str, BulkheadManagerBuilder, &str, &str)> = vec![
        (
            "max_threads 0",
            b().pool("inv", PoolConfig::new(0)),
            "inv",
            "max_threads",
        ),
        (
            "max_threads above MAX_THREADS",
            b().pool("huge", PoolConfig::new(PoolConfig::MAX_THREADS + 1)),
            "huge",
            "max_threads",
        ),
        (
            "max_threads usize::MAX",
            b().pool("huger", PoolConfig::new(usize::MAX)),
            "huger",
            "max_threads",
        ),
        (
            "core above max",
            b().pool("core", PoolConfig::new(4).core_threads(5)),
            "core",
            "core_threads",
        ),
        (
            "empty pool name",
            b().pool("", PoolConfig::new(1)),
            "",
            "name",
        ),
        (
            "NUL in pool name",
            b().pool("a\0b", PoolConfig::new(1)),
            "a\0b",
            "name",
        ),
        (
            "keep_alive zero",
            b().pool("ka", PoolConfig::new(1).keep_alive(Duration::ZERO)),
            "ka",
            "keep_alive",
        ),
        (
            "default_timeout zero",
            b().pool("dt", PoolConfig::new(1).default_timeout(Duration::ZERO)),
            "dt",
            "default_timeout",
        ),
        (
            "NUL in thread_name_prefix",
            b().pool("tp", PoolConfig::new(1).thread_name_prefix("bad\0prefix")),
            "tp",
            "thread_name_prefix",
        ),
        (
            "empty thread_name_prefix",
            b().pool("tp2", PoolConfig::new(1).thread_name_prefix("")),
            "tp2",
            "thread_name_prefix",
        ),
        (
            "stack_size 0",
            b().pool("st", PoolConfig::new(1).stack_size(0)),
            "st",
            "stack_size",
        ),
        (
            "semaphore max_concurrent 0",
            b().semaphore("sem", SemaphoreConfig::new(0)),
            "sem",
            "max_concurrent",
        ),
        (
            "empty semaphore name",
            b().semaphore("", SemaphoreConfig::new(1)),
            "",
            "name",
        ),
        (
            "pool configured twice",
            b().pool("twice", PoolConfig::new(1))
                .pool("twice", PoolConfig::new(2)),
            "twice",
            "name",
        ),
        (
            "semaphore configured twice",
            b().semaphore("twice", SemaphoreConfig::new(1))
                .semaphore("twice", SemaphoreConfig::new(1)),
            "twice",
            "name",
        ),
        (
            "invalid default pool config",
            b().default_pool_config(PoolConfig::new(0)),
            "<default>",
            "max_threads",
        ),
        (
            "invalid default semaphore config",
            b().default_semaphore_config(SemaphoreConfig::new(0)),
            "<default>",
            "max_concurrent",
        ),
        (
            "one bad pool among good ones",
            b().pool("good", PoolConfig::new(2))
                .pool("bad", PoolConfig::new(2).core_threads(3))
                .semaphore("fine", SemaphoreConfig::new(1)),
            "bad",
            "core_threads",
        ),
    ];
    for (case, builder, bulkhead, field) in cases {
        let err = match try_build(case, builder) {
            Ok(_) => panic!("{case}: accepted"),
            Err(err) => err,
        };
        assert_eq!(err.bulkhead(), bulkhead, "{case}: {err}");
        assert_eq!(err.field(), field, "{case}: {err}");
        let message = err.to_string();
        assert!(message.contains(field), "{case}: {message}");
        if !bulkhead.is_empty() {
            assert!(message.contains(bulkhead), "{case}: {message}");
        }
        assert!(!err.reason().is_empty(), "{case}");
    }
}

#[test]
fn the_same_errors_come_from_the_constructors() {
    let err = ThreadPoolBulkhead::new("direct", PoolConfig::new(0)).unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("direct", "max_threads"));
    let err = ThreadPoolBulkhead::new("direct", PoolConfig::new(2).core_threads(3)).unwrap_err();
    assert_eq!(err.field(), "core_threads");
    let err = ThreadPoolBulkhead::new("", PoolConfig::new(1)).unwrap_err();
    assert_eq!(err.field(), "name");
    let err = PoolConfig::new(1).stack_size(0).validate("v").unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("v", "stack_size"));
    let err = SemaphoreConfig::new(0).validate("v").unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("v", "max_concurrent"));
}

#[test]
fn edge_configurations_that_are_valid_are_accepted() {
    let manager = try_build(
        "edges",
        BulkheadManager::builder()
            .pool("unbounded", PoolConfig::new(1).queue_capacity(usize::MAX))
            .pool("widest", PoolConfig::new(PoolConfig::MAX_THREADS))
            .pool("no-core", PoolConfig::new(2).core_threads(0))
            .pool("all-core", PoolConfig::new(2).core_threads(2))
            .pool(
                "long",
                PoolConfig::new(1)
                    .keep_alive(Duration::MAX)
                    .default_timeout(Duration::MAX),
            )
            .pool("one", PoolConfig::new(1))
            // The same name as a pool and as a semaphore: two kinds, two registries.
            .semaphore("one", SemaphoreConfig::new(1)),
    )
    .expect("valid configurations");
    assert_eq!(
        manager.pool("widest").stats().max_threads,
        PoolConfig::MAX_THREADS
    );
    assert_eq!(manager.pool("widest").stats().live_threads, 0);
    assert_eq!(manager.pool("long").execute(|| 3).unwrap(), 3);
    assert_eq!(manager.pool("no-core").execute(|| 4).unwrap(), 4);

    // A queue capacity is a limit, not a preallocation: usize::MAX neither aborts nor
    // overflows max_threads + queue_capacity, and a long queue is admitted.
    let unbounded = manager.pool("unbounded");
    assert_eq!(unbounded.stats().queue_capacity, usize::MAX);
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let blocker = unbounded
        .submit(blocking_task(&gate, &started_tx, 0))
        .unwrap();
    started.recv_timeout(LONG).unwrap();
    let queued: Vec<_> = (1..=1000)
        .map(|i| {
            unbounded
                .submit(move || i)
                .expect("an unbounded queue admits")
        })
        .collect();
    let stats = unbounded.stats();
    assert_eq!((stats.running, stats.queued, stats.rejected), (1, 1000, 0));
    let table = manager.stats().to_string();
    assert!(table.contains("1000/unbounded"), "{table}");
    gate.open();
    assert_eq!(blocker.join().unwrap(), 0);
    let sum: u64 = queued.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 500_500);
    assert!(manager.shutdown(LONG));
}

// ---------------------------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------------------------

#[test]
fn stats_are_ordered_by_name() {
    let manager = BulkheadManager::builder()
        .pool("zeta", PoolConfig::new(1))
        .semaphore("beta", SemaphoreConfig::new(1))
        .pool("mid", PoolConfig::new(1))
        .build()
        .unwrap();
    manager.semaphore("alpha");
    manager.pool("omega");
    manager.pool("Capital");
    let names: Vec<String> = manager
        .stats()
        .bulkheads
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    assert_eq!(names, ["Capital", "alpha", "beta", "mid", "omega", "zeta"]);
    let table = manager.stats().to_string();
    let first_cells: Vec<&str> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(first_cells, names);
}

#[test]
fn stats_display_is_a_table_with_a_header_and_one_row_per_bulkhead() {
    let manager = BulkheadManager::builder()
        .pool("beta", PoolConfig::new(1).queue_capacity(2))
        .semaphore("alpha", SemaphoreConfig::new(4))
        .build()
        .unwrap();
    let beta = manager.pool("beta");

    // beta: 2 panics, 1 timeout (of a queued task, which expires), 1 running, 2 queued,
    // 3 rejections: 6 submitted.
    for _ in 0..2 {
        let err = beta
            .execute(|| -> u32 { panic!("table test") })
            .unwrap_err();
        assert!(err.is_panicked());
    }
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let running = beta.submit(blocking_task(&gate, &started_tx, 0)).unwrap();
    started.recv_timeout(LONG).unwrap();
    let err = beta
        .execute_timeout(Duration::from_millis(20), || 9)
        .unwrap_err();
    assert!(err.is_timeout());
    let queued = [beta.submit(|| 1).unwrap(), beta.submit(|| 2).unwrap()];
    for _ in 0..3 {
        assert!(beta.execute(|| 0).unwrap_err().is_rejected());
    }
    // alpha: every one of its 4 permits held, 5 granted in all, 1 rejected.
    let alpha = manager.semaphore("alpha");
    alpha.call(|| ()).unwrap();
    let held: Vec<_> = (0..4).map(|_| alpha.try_acquire().unwrap()).collect();
    assert!(alpha.try_acquire().is_err());

    let table = manager.stats().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{table}");
    for column in [
        "bulkhead",
        "kind",
        "running/max",
        "queued/capacity",
        "submitted",
        "rejected",
        "timed out",
        "panicked",
        "failed",
    ] {
        assert!(lines[0].contains(column), "no {column:?} column:\n{table}");
    }
    assert!(lines[0].starts_with("bulkhead"), "{table}");
    let alpha_row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(alpha_row[..3], ["alpha", "semaphore", "4/4"], "{table}");
    assert!(
        alpha_row.contains(&"5") && alpha_row.contains(&"1"),
        "{table}"
    );
    let beta_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        beta_row,
        ["beta", "pool", "1/1", "2/2", "6", "3", "1", "2", "0"],
        "columns: name, kind, running/max, queued/capacity, submitted, rejected, timed out, \
         panicked, failed\n{table}"
    );
    // A table: the columns line up, so every line (last column right-aligned) ends at the
    // same place.
    let width = lines[0].chars().count();
    assert!(
        lines.iter().all(|l| l.chars().count() == width),
        "ragged table:\n{table}"
    );
    drop(held);

    gate.open();
    assert_eq!(running.join().unwrap(), 0);
    let [q1, q2] = queued;
    assert_eq!((q1.join().unwrap(), q2.join().unwrap()), (1, 2));
}

#[test]
fn stats_expose_each_bulkhead_by_kind_and_name() {
    let manager = BulkheadManager::builder()
        .pool("p", PoolConfig::new(2))
        .semaphore("s", SemaphoreConfig::new(3))
        .build()
        .unwrap();
    manager.pool("p").execute(|| ()).unwrap();
    manager.semaphore("s").call(|| ()).unwrap();
    let stats = manager.stats();
    assert_eq!(
        stats.pool("p").map(|p| (p.completed, p.max_threads)),
        Some((1, 2))
    );
    assert_eq!(
        stats
            .semaphore("s")
            .map(|s| (s.permitted, s.max_concurrent)),
        Some((1, 3))
    );
    assert!(stats.pool("s").is_none());
    assert!(stats.semaphore("p").is_none());
}

// ---------------------------------------------------------------------------------------------
// Shutdown and drop
// ---------------------------------------------------------------------------------------------

#[test]
fn manager_shutdown_is_true_once_every_pool_drains() {
    let manager = BulkheadManager::builder()
        .pool("a", PoolConfig::new(2).queue_capacity(4))
        .pool("b", PoolConfig::new(1).queue_capacity(5))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..6)
        .flat_map(|i| {
            [
                manager.pool("a").submit(move || i).unwrap(),
                manager.pool("b").submit(move || i * 10).unwrap(),
            ]
        })
        .collect();
    manager.pool("never-used");
    assert!(manager.shutdown(LONG));
    for name in ["a", "b", "never-used"] {
        let pool = manager.get_pool(name).unwrap();
        assert!(pool.is_terminated(), "{name} not terminated");
        assert!(pool.execute(|| 0).unwrap_err().is_shutdown());
    }
    let sum: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 15 + 150);
    // Idempotent.
    assert!(manager.shutdown(Duration::ZERO));
}

#[test]
fn manager_shutdown_is_false_while_a_task_is_stuck() {
    let manager = BulkheadManager::builder()
        .pool("fine", PoolConfig::new(1))
        .pool("stuck", PoolConfig::new(1))
        .build()
        .unwrap();
    manager.pool("fine").execute(|| ()).unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let stuck = manager
        .pool("stuck")
        .submit(blocking_task(&gate, &started_tx, 8))
        .unwrap();
    started.recv_timeout(LONG).unwrap();

    let timeout = Duration::from_millis(100);
    let start = Instant::now();
    assert!(!manager.shutdown(timeout));
    let waited = start.elapsed();
    assert!(waited >= timeout, "gave up early, after {waited:?}");
    assert!(
        waited < Duration::from_secs(5),
        "the timeout is for all pools: {waited:?}"
    );
    assert!(manager.get_pool("fine").unwrap().is_terminated());
    assert!(!manager.get_pool("stuck").unwrap().is_terminated());

    gate.open();
    assert_eq!(stuck.join().unwrap(), 8);
    assert!(manager.shutdown(LONG));
}

#[test]
fn dropping_the_manager_while_tasks_run_neither_blocks_nor_loses_an_outcome() {
    const PREFIX: &str = "mgr-drop";
    let manager = BulkheadManager::builder()
        .pool(
            "slow",
            PoolConfig::new(1)
                .queue_capacity(2)
                .thread_name_prefix(PREFIX),
        )
        .build()
        .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    let pool = manager.pool("slow");
    let running = pool.submit(blocking_task(&gate, &started_tx, 1)).unwrap();
    started.recv_timeout(LONG).unwrap();
    let queued = pool.submit(|| 2).unwrap();
    // A caller blocked in execute, holding its own Arc of the pool.
    let caller = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.execute(|| 3))
    };
    wait_until(LONG, "the caller's task is queued", || {
        pool.stats().queued == 2
    });
    drop(pool);

    let (dropped_tx, dropped) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(manager);
        dropped_tx.send(()).unwrap();
    });
    dropped
        .recv_timeout(Duration::from_secs(5))
        .expect("dropping the manager blocked on a running task");
    dropper.join().unwrap();

    gate.open();
    assert_eq!(running.join_timeout(LONG).unwrap(), 1);
    assert_eq!(queued.join_timeout(LONG).unwrap(), 2);
    assert_eq!(caller.join().unwrap().unwrap(), 3);
    // Once the last owner let go, the pool shut down and its worker left.
    #[cfg(target_os = "linux")]
    wait_until(LONG, "the dropped pool's worker exits", || {
        threads_named(PREFIX) == 0
    });
}

#[test]
fn a_pool_outlives_the_manager_while_someone_holds_it() {
    let manager = BulkheadManager::new();
    let pool = manager.pool("kept");
    drop(manager);
    // The registry is gone, the compartment is not: it still serves its holder.
    assert!(!pool.is_shutdown());
    assert_eq!(pool.execute(|| "still here").unwrap(), "still here");
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    pool.execute(move || flag.store(true, Ordering::SeqCst))
        .unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn the_manager_is_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<BulkheadManager>();
    is::<Arc<ThreadPoolBulkhead>>();
}

// Names that come from users (tenant ids, URLs) must not grow the manager without bound.
#[test]
fn the_cap_on_bulkheads_refuses_new_names_but_not_configured_or_existing_ones() {
    let manager = BulkheadManager::builder()
        .max_bulkheads(3)
        .pool("db", PoolConfig::new(1))
        .semaphore("cache", SemaphoreConfig::new(1))
        .build()
        .unwrap();
    assert_eq!(manager.len(), 2);
    assert!(manager.try_pool("tenant-1").is_ok());
    assert_eq!(manager.len(), 3);
    for name in ["tenant-2", "tenant-3"] {
        let err = manager.try_pool(name).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), (name, "max_bulkheads"));
        assert!(err.to_string().contains(name));
        let err = manager.try_semaphore(name).unwrap_err();
        assert_eq!(err.field(), "max_bulkheads");
    }
    // Configured and existing names still resolve, through the panicking lookups too.
    assert_eq!(manager.pool("db").name(), "db");
    assert_eq!(manager.semaphore("cache").name(), "cache");
    assert_eq!(manager.pool("tenant-1").name(), "tenant-1");
    assert!(manager.get_pool("tenant-2").is_none());
    assert_eq!(manager.stats().bulkheads.len(), 3);
}

#[test]
fn more_configured_bulkheads_than_the_cap_is_a_config_error() {
    let err = BulkheadManager::builder()
        .max_bulkheads(1)
        .pool("a", PoolConfig::new(1))
        .pool("b", PoolConfig::new(1))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_bulkheads");
}

#[test]
fn racing_new_names_at_the_cap_create_exactly_the_cap() {
    let manager = Arc::new(BulkheadManager::builder().max_bulkheads(5).build().unwrap());
    let barrier = Arc::new(Barrier::new(16));
    let created: usize = (0..16)
        .map(|i| {
            let manager = Arc::clone(&manager);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                usize::from(manager.try_pool(&format!("tenant-{i}")).is_ok())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(created, 5);
    assert_eq!(manager.len(), 5);
    assert_eq!(manager.stats().bulkheads.len(), 5);
}

#[test]
fn manager_execute_runs_in_the_named_pool_and_keeps_its_rules() {
    let manager = BulkheadManager::builder()
        .pool("db", PoolConfig::new(1))
        .pool(
            "slow",
            PoolConfig::new(1).default_timeout(Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    assert_eq!(manager.execute("db", || 6 * 7).unwrap(), 42);
    let stats = manager.stats();
    assert_eq!(
        stats.pool("db").map(|p| (p.submitted, p.completed)),
        Some((1, 1))
    );

    // The pool's capacity holds: one slot, taken.
    let (release, blocked) = mpsc::channel::<()>();
    let busy = manager
        .pool("db")
        .submit(move || blocked.recv().ok())
        .unwrap();
    let err = manager.execute("db", || ()).unwrap_err();
    assert!(err.is_rejected() && err.bulkhead() == "db");
    release.send(()).unwrap();
    busy.join().unwrap();

    // The pool's default timeout applies.
    let (release, blocked) = mpsc::channel::<()>();
    let err = manager
        .execute("slow", move || blocked.recv().ok())
        .unwrap_err();
    assert!(err.is_timeout());
    release.send(()).unwrap();

    // Panics stay inside; unknown names get a pool from the default config.
    assert!(
        manager
            .execute("db", || panic!("boom"))
            .unwrap_err()
            .is_panicked()
    );
    assert_eq!(manager.execute("fresh", || "made").unwrap(), "made");
    assert_eq!(manager.get_pool("fresh").unwrap().stats().max_threads, 10);
}

// The per-thread lookup cache (src/recent.rs): a repeat lookup skips the registry, and must
// still answer exactly what the registry would.

#[test]
fn lookups_on_one_thread_tell_managers_apart_even_at_a_reused_address() {
    // Each manager's "db" differs in size. Dropping one manager and building the next lets
    // the allocator hand the new one the old one's address: the cache must key on more than
    // the address, or the new manager would answer with the old manager's pool.
    for round in 1..=20_usize {
        let manager = Box::new(
            BulkheadManager::builder()
                .pool("db", PoolConfig::new(round))
                .build()
                .unwrap(),
        );
        for _ in 0..3 {
            assert_eq!(manager.pool("db").stats().max_threads, round);
            assert_eq!(manager.get_pool("db").unwrap().stats().max_threads, round);
        }
    }
    let (first, second) = (BulkheadManager::new(), BulkheadManager::new());
    let a = first.semaphore("s");
    let b = second.semaphore("s");
    assert!(!Arc::ptr_eq(&a, &b), "two managers share a semaphore");
    assert!(Arc::ptr_eq(&a, &first.semaphore("s")));
    assert!(Arc::ptr_eq(&b, &second.semaphore("s")));
}

#[test]
fn more_names_than_the_cache_holds_still_get_their_own_bulkheads() {
    let manager = BulkheadManager::new();
    // 150 names: more than a thread's cache holds (64 of each kind), and many sharing a set.
    let names: Vec<String> = (0..150).map(|i| format!("dep-{i}")).collect();
    let pools: Vec<_> = names.iter().map(|n| manager.pool(n)).collect();
    let semaphores: Vec<_> = names.iter().map(|n| manager.semaphore(n)).collect();
    // Round-robin over more names than a thread remembers, and in a shuffled order, so
    // that entries are evicted and refilled many times.
    let mut rng = common::Rng::new(7);
    for _ in 0..5_000 {
        let i = rng.below(names.len() as u64) as usize;
        assert!(
            Arc::ptr_eq(&pools[i], &manager.pool(&names[i])),
            "{}",
            names[i]
        );
        assert!(Arc::ptr_eq(&semaphores[i], &manager.semaphore(&names[i])));
        assert!(Arc::ptr_eq(
            &pools[i],
            &manager.get_pool(&names[i]).unwrap()
        ));
    }
    // Names that share a prefix or differ only in length are different names.
    let short = manager.pool("dep-1");
    assert!(!Arc::ptr_eq(&short, &manager.pool("dep-10")));
    assert_eq!(manager.pool("dep-10").name(), "dep-10");
}

#[test]
fn a_miss_is_not_remembered() {
    let manager = BulkheadManager::new();
    assert!(manager.get_pool("later").is_none());
    assert!(manager.get_semaphore("later").is_none());
    // Created by another thread: this thread must see it, not a remembered absence.
    thread::scope(|s| {
        s.spawn(|| {
            manager.pool("later");
            manager.semaphore("later");
        });
    });
    let pool = manager
        .get_pool("later")
        .expect("created by the other thread");
    assert!(Arc::ptr_eq(&pool, &manager.pool("later")));
    assert!(manager.get_semaphore("later").is_some());
    assert!(
        manager.try_pool("").is_err(),
        "an invalid name is never remembered"
    );
}

#[test]
fn remembered_lookups_keep_no_pool_alive_after_its_manager() {
    // core_threads defaults to max_threads, so the worker stays until the pool shuts down,
    // and the pool shuts down when its last strong reference goes. Were the cache to hold
    // one, the worker would outlive the manager (it only retires after an hour idle).
    const PREFIX: &str = "cachekeep";
    let manager = BulkheadManager::builder()
        .pool(
            "cached",
            PoolConfig::new(1)
                .keep_alive(Duration::from_secs(3600))
                .thread_name_prefix(PREFIX),
        )
        .build()
        .unwrap();
    for _ in 0..5 {
        manager.pool("cached").execute(|| ()).unwrap();
        assert!(manager.get_pool("cached").is_some());
    }
    assert_eq!(threads_named(PREFIX), 1);
    drop(manager);
    wait_until(
        Duration::from_secs(30),
        "the dropped manager's worker exits",
        || threads_named(PREFIX) == 0,
    );
}

// ---------------------------------------------------------------------------------------------
// Hardening: threads, the cap, shutdown, names from user data, listeners
// ---------------------------------------------------------------------------------------------

// Regression: `core_threads` defaults to `max_threads`, so every pool that `manager.pool(name)`
// created from the default config kept each worker it ever started for the manager's life:
// 1,024 names (the default cap) of the default config could hold 10,240 idle threads, while
// the docs said `max_bulkheads` bounded them. Pools created from the default config now get
// core 0 unless the config set `core_threads`, so their idle workers retire after keep_alive.
#[test]
fn pools_created_on_first_use_retire_their_idle_workers() {
    const ON_DEMAND: &str = "ondemand";
    const CONFIGURED: &str = "configd";
    let keep_alive = Duration::from_millis(20);
    let manager = BulkheadManager::builder()
        .default_pool_config(
            PoolConfig::new(3)
                .keep_alive(keep_alive)
                .thread_name_prefix(ON_DEMAND),
        )
        .pool(
            "configured",
            PoolConfig::new(1)
                .keep_alive(keep_alive)
                .thread_name_prefix(CONFIGURED),
        )
        .build()
        .unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(Arc::clone(&gate));
    let (started_tx, started) = mpsc::channel();
    // Every thread of two on-demand pools busy at once, so that each starts all three.
    let handles: Vec<_> = ["tenant-a", "tenant-b"]
        .iter()
        .flat_map(|name| {
            let pool = manager.pool(name);
            assert_eq!(pool.stats().core_threads, 0, "{name}");
            (0..3)
                .map(|i| pool.submit(blocking_task(&gate, &started_tx, i)).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    for _ in 0..6 {
        started.recv_timeout(LONG).unwrap();
    }
    assert_eq!(manager.execute("configured", || 1).unwrap(), 1);
    assert_eq!(manager.pool("tenant-a").stats().live_threads, 3);
    gate.open();
    for handle in handles {
        handle.join().unwrap();
    }

    wait_until(LONG, "the on-demand pools' idle workers retire", || {
        ["tenant-a", "tenant-b"]
            .iter()
            .all(|name| manager.pool(name).stats().live_threads == 0)
    });
    #[cfg(target_os = "linux")]
    wait_until(LONG, "the retired workers' threads exit", || {
        threads_named(ON_DEMAND) == 0
    });
    // A pool configured by name keeps PoolConfig's own default, core = max: its worker stays.
    let configured = manager.pool("configured").stats();
    assert_eq!((configured.core_threads, configured.live_threads), (1, 1));
    #[cfg(target_os = "linux")]
    assert_eq!(threads_named(CONFIGURED), 1);

    // A default config that sets core_threads keeps it.
    let manager = BulkheadManager::builder()
        .default_pool_config(PoolConfig::new(3).core_threads(2))
        .build()
        .unwrap();
    assert_eq!(manager.pool("tenant-c").stats().core_threads, 2);
    assert_eq!(BulkheadManager::new().pool("x").stats().core_threads, 0);
}

#[test]
fn a_full_manager_refuses_every_new_name_and_registers_none() {
    let manager = BulkheadManager::builder()
        .max_bulkheads(2)
        .pool("db", PoolConfig::new(1))
        .semaphore("cache", SemaphoreConfig::new(1))
        .build()
        .unwrap();
    let rounds = if cfg!(miri) { 20 } else { 5_000 };
    for i in 0..rounds {
        let name = format!("tenant-{i}");
        let err = manager.try_pool(&name).unwrap_err();
        assert_eq!(
            (err.bulkhead(), err.field()),
            (name.as_str(), "max_bulkheads")
        );
        let err = manager.try_semaphore(&name).unwrap_err();
        assert_eq!(err.field(), "max_bulkheads");
        assert!(manager.get_pool(&name).is_none());
    }
    assert_eq!(manager.len(), 2);
    let names: Vec<String> = manager
        .stats()
        .bulkheads
        .iter()
        .map(|b| b.name().to_owned())
        .collect();
    assert_eq!(names, ["cache", "db"]);
    assert_eq!(manager.execute("db", || 5).unwrap(), 5);
}

// Regression: `manager.execute(name, f)` went through `manager.pool(name)`, which panics on a
// new name that is invalid or past `max_bulkheads`, so a name taken from a request could
// crash the caller. It now returns a `BulkheadError` naming the bulkhead and the field.
#[test]
fn manager_execute_never_panics_whatever_the_name() {
    let manager = BulkheadManager::builder()
        .max_bulkheads(1)
        .pool("db", PoolConfig::new(1))
        .build()
        .unwrap();
    let cases = [
        ("", "name"),
        ("nul\0byte", "name"),
        ("tenant-1", "max_bulkheads"),
    ];
    for (name, field) in cases {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            manager.execute(name, move || flag.store(true, Ordering::SeqCst))
        }))
        .unwrap_or_else(|_| panic!("execute({name:?}) panicked"));
        let err = outcome.unwrap_err();
        assert!(err.is_config(), "{name:?}: {err:?}");
        assert!(!err.is_rejected() && !err.is_shutdown());
        assert_eq!(err.bulkhead(), name);
        let config = err.config_error().expect("the ConfigError");
        assert_eq!((config.bulkhead(), config.field()), (name, field));
        let message = err.to_string();
        assert!(message.contains(&format!("'{name}'")), "{message}");
        assert!(message.contains(field), "{message}");
        assert!(!ran.load(Ordering::SeqCst), "{name:?}: the task ran");
        // Clone + Send + Sync, as every BulkheadError.
        let copy = err.clone();
        thread::spawn(move || assert!(copy.is_config()))
            .join()
            .unwrap();
    }
    assert_eq!(manager.len(), 1);
    assert_eq!(manager.execute("db", || 8).unwrap(), 8);
}

// Regression: after `manager.shutdown`, `manager.pool(new_name)` built a live pool from the
// default config: the manager had shut down, yet handed out a compartment that started
// threads and ran work.
#[test]
fn after_shutdown_the_manager_hands_out_only_shut_down_pools() {
    const PREFIX: &str = "postshut";
    let manager = BulkheadManager::builder()
        .default_pool_config(
            // Prestarted core workers too: a pool born closed must start none of them.
            PoolConfig::new(2)
                .core_threads(2)
                .prestart(true)
                .thread_name_prefix(PREFIX),
        )
        .pool("configured", PoolConfig::new(1))
        .build()
        .unwrap();
    assert_eq!(manager.execute("early", || 1).unwrap(), 1);
    assert!(manager.shutdown(LONG));
    // The early pool's workers are joined; its short-lived reaper thread carries the prefix
    // too.
    #[cfg(target_os = "linux")]
    wait_until(LONG, "the early pool's threads are gone", || {
        threads_named(PREFIX) == 0
    });

    let late = manager.pool("late");
    assert!(late.is_shutdown(), "a pool created after shutdown is live");
    let err = late.execute(|| 2).unwrap_err();
    assert!(err.is_shutdown() && err.bulkhead() == "late", "{err:?}");
    assert!(late.submit(|| 3).unwrap_err().is_shutdown());
    assert!(manager.execute("later", || 4).unwrap_err().is_shutdown());
    assert!(manager.try_pool("latest").unwrap().is_shutdown());
    // The same pool every time, never a fresh live one.
    assert!(Arc::ptr_eq(&late, &manager.pool("late")));
    for name in ["early", "configured"] {
        assert!(manager.execute(name, || 5).unwrap_err().is_shutdown());
    }
    assert_eq!(late.stats().live_threads, 0);
    #[cfg(target_os = "linux")]
    assert_eq!(
        threads_named(PREFIX),
        0,
        "a pool started a thread after shutdown"
    );
    assert!(late.await_termination(LONG));
    // Semaphores have no shutdown: they run on their callers' threads.
    assert_eq!(manager.semaphore("sem").call(|| 6).unwrap(), 6);
    assert!(manager.shutdown(LONG));
}

// The race with `shutdown`: pools created while it runs must be shut down too. Shutdown
// closes the registry and lists its pools under the registry's write lock, the lock a
// creation holds, so a pool is either in the list or created already closed; were the flag
// checked outside that lock, a pool created in between would be live and never shut down.
#[test]
fn pools_created_while_the_manager_shuts_down_are_shut_down() {
    const CREATORS: usize = 4;
    for round in 0..10 {
        let manager = BulkheadManager::builder()
            .max_bulkheads(usize::MAX)
            .build()
            .unwrap();
        let barrier = Barrier::new(CREATORS + 1);
        let pools: Vec<Arc<ThreadPoolBulkhead>> = thread::scope(|s| {
            let creators: Vec<_> = (0..CREATORS)
                .map(|c| {
                    let (manager, barrier) = (&manager, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut pools = Vec::new();
                        // Until this thread has seen a shut-down pool, then a few more.
                        let mut after = 0;
                        for i in 0..100_000 {
                            let pool = manager.pool(&format!("r{round}-c{c}-{i}"));
                            after += usize::from(pool.is_shutdown());
                            pools.push(pool);
                            if after == 8 {
                                break;
                            }
                        }
                        pools
                    })
                })
                .collect();
            barrier.wait();
            wait_until(LONG, "the creators have made some pools", || {
                manager.len() >= 16
            });
            assert!(manager.shutdown(LONG), "round {round}");
            creators
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        });
        assert!(pools.len() >= 16);
        for pool in &pools {
            assert!(
                pool.is_shutdown(),
                "round {round}: {} is live after shutdown",
                pool.name()
            );
        }
        assert!(manager.pool("after").is_shutdown());
    }
}

// Listeners and creation race: `on_event` and a new name's creation take the same registry
// lock, so a bulkhead created while `on_event` runs gets the listener exactly once — not zero
// times (created after `on_event` walked the registry, before the listener was recorded for
// later bulkheads) and not twice (recorded for later and found in the walk).
#[test]
fn a_bulkhead_created_during_on_event_hears_each_listener_exactly_once() {
    const LISTENERS: usize = 50;
    const POOLS: usize = 50;
    let manager = BulkheadManager::new();
    let heard = Arc::new(AtomicUsize::new(0));
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        s.spawn(|| {
            barrier.wait();
            for _ in 0..LISTENERS {
                let heard = Arc::clone(&heard);
                manager.on_event(move |e| {
                    if matches!(e.kind, EventKind::Permitted { .. }) {
                        heard.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        s.spawn(|| {
            barrier.wait();
            for i in 0..POOLS {
                manager.pool(&format!("p{i}"));
                manager.semaphore(&format!("s{i}"));
            }
        });
    });
    for i in 0..POOLS {
        manager.pool(&format!("p{i}")).execute(|| ()).unwrap();
        manager.semaphore(&format!("s{i}")).call(|| ()).unwrap();
    }
    // One Permitted event per call, heard by every listener once.
    assert_eq!(heard.load(Ordering::Relaxed), 2 * POOLS * LISTENERS);
    assert!(manager.shutdown(LONG));
}

/// The database issue's item 4: under strict names a typo is an error, not a default-sized
/// compartment created on first use; configured names work as before.
#[test]
fn strict_names_refuse_every_name_that_was_not_configured() {
    let manager = BulkheadManager::builder()
        .pool("inventory", PoolConfig::new(2))
        .semaphore("cache", SemaphoreConfig::new(2))
        .strict_names(true)
        .build()
        .unwrap();
    assert_eq!(manager.pool("inventory").execute(|| 1).unwrap(), 1);
    assert!(manager.semaphore("cache").try_acquire().is_ok());
    for err in [
        manager.try_pool("inventroy").unwrap_err(),
        manager.try_semaphore("cahce").unwrap_err(),
    ] {
        assert_eq!(err.field(), "name", "{err}");
        assert!(err.reason().contains("strict"), "{err}");
    }
    let err = manager.execute("payment", || 1).unwrap_err();
    assert!(err.is_config(), "{err}");
    // `pool(name)` panics for such a name, as for an invalid one (documented).
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = manager.pool("typo");
    }));
    assert!(panicked.is_err());
    assert_eq!(manager.len(), 2, "nothing was created");
    assert!(manager.get_pool("payment").is_none());
}
