//! Bad input, by property: over arbitrary configurations and names, every constructor returns
//! a working bulkhead or a `ConfigError` that names the bulkhead and the field at fault —
//! never a panic, never a silent clamp (promise 9).
//!
//! Each property checks the library against a model of the documented rules
//! (`PoolConfig::validate`, `SemaphoreConfig::validate`): a configuration is accepted exactly
//! when the model finds nothing wrong, and a rejection names a field the model also finds at
//! fault. Every call into the library runs under `catch_unwind`: a panic fails the property
//! with the input that caused it. Sizes include the edges (0, the documented maxima and one
//! past them, `usize::MAX`, huge queues), durations include zero and `Duration::MAX`, and
//! strings include empty ones, NUL bytes, long ones and arbitrary Unicode.

use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use bulkheads::{
    BulkheadManager, ConfigError, PoolConfig, SemaphoreBulkhead, SemaphoreConfig,
    ThreadPoolBulkhead,
};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// Inputs and the model of the rules
// ---------------------------------------------------------------------------------------------

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// Every field a `ConfigError` may name.
const KNOWN_FIELDS: &[&str] = &[
    "name",
    "max_threads",
    "core_threads",
    "queue_capacity",
    "keep_alive",
    "default_timeout",
    "thread_name_prefix",
    "stack_size",
    "max_concurrent",
    "max_wait",
    "max_bulkheads",
];

/// A stack this large may be refused by the OS when the first worker starts; that is a
/// runtime `Spawn` error, not a configuration error, and not a panic.
const HUGE_STACK: usize = 1 << 30;

/// The name the manager's builder gives its default configurations in errors.
const DEFAULT_NAME: &str = "<default>";

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // No regression files in the source tree: a failure prints its minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The setters to call on a `PoolConfig` (`None`: leave the default).
#[derive(Debug, Clone)]
struct PoolInput {
    max_threads: usize,
    core_threads: Option<usize>,
    queue_capacity: Option<usize>,
    keep_alive: Option<Duration>,
    default_timeout: Option<Duration>,
    thread_name_prefix: Option<String>,
    stack_size: Option<usize>,
}

impl PoolInput {
    fn config(&self) -> PoolConfig {
        let mut config = PoolConfig::new(self.max_threads);
        if let Some(n) = self.core_threads {
            config = config.core_threads(n);
        }
        if let Some(n) = self.queue_capacity {
            config = config.queue_capacity(n);
        }
        if let Some(d) = self.keep_alive {
            config = config.keep_alive(d);
        }
        if let Some(d) = self.default_timeout {
            config = config.default_timeout(d);
        }
        if let Some(prefix) = &self.thread_name_prefix {
            config = config.thread_name_prefix(prefix.clone());
        }
        if let Some(bytes) = self.stack_size {
            config = config.stack_size(bytes);
        }
        config
    }

    /// The fields the documented rules find at fault for a pool called `name`.
    fn faults(&self, name: &str) -> Vec<&'static str> {
        let mut faults = name_faults(name);
        if self.max_threads == 0 || self.max_threads > PoolConfig::MAX_THREADS {
            faults.push("max_threads");
        }
        if self
            .core_threads
            .is_some_and(|core| core > self.max_threads)
        {
            faults.push("core_threads");
        }
        if self.keep_alive == Some(Duration::ZERO) {
            faults.push("keep_alive");
        }
        if self.default_timeout == Some(Duration::ZERO) {
            faults.push("default_timeout");
        }
        if self
            .thread_name_prefix
            .as_ref()
            .is_some_and(|p| p.is_empty() || p.contains('\0'))
        {
            faults.push("thread_name_prefix");
        }
        if self.stack_size == Some(0) {
            faults.push("stack_size");
        }
        faults
    }
}

#[derive(Debug, Clone)]
struct SemaphoreInput {
    max_concurrent: usize,
    max_wait: Option<Duration>,
}

impl SemaphoreInput {
    fn config(&self) -> SemaphoreConfig {
        let config = SemaphoreConfig::new(self.max_concurrent);
        match self.max_wait {
            Some(d) => config.max_wait(d),
            None => config,
        }
    }

    fn faults(&self, name: &str) -> Vec<&'static str> {
        let mut faults = name_faults(name);
        if self.max_concurrent == 0 || self.max_concurrent > SemaphoreConfig::MAX_CONCURRENT {
            faults.push("max_concurrent");
        }
        faults
    }
}

fn name_faults(name: &str) -> Vec<&'static str> {
    if name.is_empty() || name.contains('\0') {
        vec!["name"]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Names and thread-name prefixes: ordinary, empty, with NUL, long, arbitrary Unicode.
fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => "[a-z][a-z0-9-]{0,14}",
        1 => Just(String::new()),
        1 => Just("\0".to_owned()),
        1 => ("[a-z]{0,4}", "[a-z]{0,4}").prop_map(|(a, b)| format!("{a}\0{b}")),
        1 => "[a-z]{16,300}",
        2 => "\\PC{1,40}",
        1 => any::<String>(),
    ]
}

fn max_threads() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 1..=4_usize,
        2 => Just(0_usize),
        1 => 5..=8_usize,
        1 => Just(PoolConfig::MAX_THREADS),
        1 => Just(PoolConfig::MAX_THREADS + 1),
        1 => Just(usize::MAX),
        1 => any::<usize>(),
    ]
}

fn counts() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0..=4_usize,
        1 => 5..=8_usize,
        1 => Just(usize::MAX),
        1 => any::<usize>(),
    ]
}

fn queue_capacities() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0..=16_usize,
        2 => Just(usize::MAX),
        1 => Just(usize::MAX - 1),
        // Around the most tasks the pool's books can count in flight (2^40 - 1).
        1 => (1_usize << 39)..(1_usize << 41),
        1 => any::<usize>(),
    ]
}

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        1 => Just(Duration::ZERO),
        1 => (1_u64..1_000).prop_map(Duration::from_nanos),
        4 => (1_u64..2_000).prop_map(Duration::from_millis),
        1 => Just(Duration::MAX),
        1 => (any::<u64>(), 0_u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn stack_sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        1 => Just(0_usize),
        1 => 1..=65_536_usize,
        3 => (64_usize << 10)..=(8 << 20),
        1 => Just(usize::MAX),
        1 => any::<usize>(),
    ]
}

prop_compose! {
    fn pool_inputs()(
        max_threads in max_threads(),
        core_threads in option::of(counts()),
        queue_capacity in option::of(queue_capacities()),
        keep_alive in option::of(durations()),
        default_timeout in option::of(durations()),
        thread_name_prefix in option::weighted(0.3, names()),
        stack_size in option::weighted(0.3, stack_sizes()),
    ) -> PoolInput {
        PoolInput {
            max_threads,
            core_threads,
            queue_capacity,
            keep_alive,
            default_timeout,
            thread_name_prefix,
            stack_size,
        }
    }
}

prop_compose! {
    fn semaphore_inputs()(
        max_concurrent in prop_oneof![
            6 => 0..=6_usize,
            1 => Just(SemaphoreConfig::MAX_CONCURRENT),
            1 => Just(SemaphoreConfig::MAX_CONCURRENT + 1),
            1 => Just(usize::MAX),
            1 => any::<usize>(),
        ],
        max_wait in option::of(durations()),
    ) -> SemaphoreInput {
        SemaphoreInput { max_concurrent, max_wait }
    }
}

/// Names for the manager: a few fixed ones so that duplicates happen, and arbitrary ones.
fn manager_names() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("a".to_owned()),
        2 => Just("b".to_owned()),
        3 => names(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// Runs `f`, turning a panic into a failure of the property that names `what`.
fn no_panic<T>(what: impl FnOnce() -> String, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| TestCaseError::fail(format!("panicked: {}", what())))
}

/// A rejection names `bulkhead`, a known field among `faults`, and says so in its message.
fn check_error(
    err: &ConfigError,
    bulkhead: &str,
    faults: &[&'static str],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.bulkhead(), bulkhead, "{:?}", err);
    prop_assert!(
        KNOWN_FIELDS.contains(&err.field()),
        "unknown field: {:?}",
        err
    );
    prop_assert!(
        faults.contains(&err.field()),
        "the error names a field the rules find no fault with: {:?} (faults: {:?})",
        err,
        faults
    );
    prop_assert!(!err.reason().is_empty(), "{:?}", err);
    let shown = err.to_string();
    prop_assert!(shown.contains(err.field()), "{}", shown);
    prop_assert!(shown.contains(&format!("'{bulkhead}'")), "{}", shown);
    Ok(())
}

/// The deadline of `execute` could pass on a slow machine before the task runs: only a
/// default timeout this long guarantees a value.
fn value_guaranteed(input: &PoolInput) -> bool {
    input.default_timeout.is_none_or(|d| d >= LONG)
}

/// Runs one task through a valid small pool and shuts it down.
fn exercise_pool(pool: &ThreadPoolBulkhead, input: &PoolInput) -> Result<(), TestCaseError> {
    let result = no_panic(
        || format!("execute on {input:?}"),
        || pool.execute(|| 42_u32),
    )?;
    match result {
        Ok(value) => prop_assert_eq!(value, 42),
        Err(err) if err.is_timeout() && !value_guaranteed(input) => {}
        Err(err) if input.stack_size.is_some_and(|s| s >= HUGE_STACK) => {
            // The OS may refuse a thread with a stack this large: a clear runtime error.
            prop_assert!(
                err.to_string().contains("could not start a worker thread"),
                "{:?}",
                err
            );
        }
        Err(err) => prop_assert!(false, "execute failed on {:?}: {:?}", input, err),
    }
    no_panic(|| format!("shutdown of {input:?}"), || pool.shutdown())?;
    let terminated = no_panic(
        || format!("await_termination on {input:?}"),
        || pool.await_termination(LONG),
    )?;
    prop_assert!(terminated, "the pool did not terminate: {:?}", input);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn a_pool_config_gives_a_pool_or_a_config_error(name in names(), input in pool_inputs()) {
        let config = input.config();
        let faults = input.faults(&name);
        let capacity = no_panic(|| format!("capacity of {input:?}"), || config.capacity())?;
        prop_assert_eq!(
            capacity,
            input.max_threads.saturating_add(input.queue_capacity.unwrap_or(0))
        );
        let validated = no_panic(
            || format!("validate({name:?}) of {input:?}"),
            || config.validate(&name),
        )?;
        let built = no_panic(
            || format!("ThreadPoolBulkhead::new({name:?}, {input:?})"),
            || ThreadPoolBulkhead::new(name.clone(), config.clone()),
        )?;
        match built {
            Ok(pool) => {
                prop_assert!(faults.is_empty(), "accepted despite {:?}: {:?}", faults, input);
                prop_assert!(validated.is_ok(), "new() accepted what validate() refused");
                prop_assert_eq!(pool.name(), name.as_str());
                prop_assert_eq!(&pool.config(), &config);
                let stats = no_panic(|| format!("stats of {input:?}"), || pool.stats())?;
                prop_assert_eq!(stats.max_threads, input.max_threads);
                prop_assert_eq!(
                    stats.core_threads,
                    input.core_threads.unwrap_or(input.max_threads)
                );
                prop_assert_eq!(stats.queue_capacity, input.queue_capacity.unwrap_or(0));
                prop_assert_eq!((stats.live_threads, stats.running, stats.queued), (0, 0, 0));
                if input.max_threads <= 4 {
                    exercise_pool(&pool, &input)?;
                }
            }
            Err(err) => {
                prop_assert!(!faults.is_empty(), "refused a valid config: {:?}", err);
                check_error(&err, &name, &faults)?;
                prop_assert_eq!(validated, Err(err), "validate() and new() disagree");
            }
        }
    }

    #[test]
    fn a_semaphore_config_gives_a_semaphore_or_a_config_error(
        name in names(),
        input in semaphore_inputs(),
    ) {
        let config = input.config();
        let faults = input.faults(&name);
        let validated = no_panic(
            || format!("validate({name:?}) of {input:?}"),
            || config.validate(&name),
        )?;
        let built = no_panic(
            || format!("SemaphoreBulkhead::new({name:?}, {input:?})"),
            || SemaphoreBulkhead::new(name.clone(), config.clone()),
        )?;
        match built {
            Ok(semaphore) => {
                prop_assert!(faults.is_empty(), "accepted despite {:?}: {:?}", faults, input);
                prop_assert!(validated.is_ok(), "new() accepted what validate() refused");
                prop_assert_eq!(semaphore.name(), name.as_str());
                let value = no_panic(|| format!("call on {input:?}"), || semaphore.call(|| 7_u32))?;
                prop_assert_eq!(value.ok(), Some(7));
                let stats = semaphore.stats();
                prop_assert_eq!(stats.max_concurrent, input.max_concurrent);
                prop_assert_eq!((stats.running, stats.permitted), (0, 1));
                {
                    let permit = no_panic(
                        || format!("try_acquire on {input:?}"),
                        || semaphore.try_acquire(),
                    )?;
                    prop_assert!(permit.is_ok());
                    prop_assert_eq!(semaphore.stats().running, 1);
                }
                prop_assert_eq!(semaphore.stats().running, 0);
            }
            Err(err) => {
                prop_assert!(!faults.is_empty(), "refused a valid config: {:?}", err);
                check_error(&err, &name, &faults)?;
                prop_assert_eq!(validated, Err(err), "validate() and new() disagree");
            }
        }
    }

    #[test]
    fn a_manager_builder_gives_a_manager_or_a_config_error(
        default_pool in option::weighted(0.3, pool_inputs()),
        default_semaphore in option::weighted(0.3, semaphore_inputs()),
        pools in prop::collection::vec((manager_names(), pool_inputs()), 0..=3),
        semaphores in prop::collection::vec((manager_names(), semaphore_inputs()), 0..=3),
    ) {
        // What the rules say may be named in an error: (bulkhead, field).
        let mut faults: Vec<(String, &'static str)> = Vec::new();
        if let Some(input) = &default_pool {
            // The defaults are named "<default>"; that name itself is valid.
            faults.extend(input.faults(DEFAULT_NAME).into_iter().map(|f| (DEFAULT_NAME.to_owned(), f)));
        }
        if let Some(input) = &default_semaphore {
            faults.extend(input.faults(DEFAULT_NAME).into_iter().map(|f| (DEFAULT_NAME.to_owned(), f)));
        }
        for (i, (name, input)) in pools.iter().enumerate() {
            faults.extend(input.faults(name).into_iter().map(|f| (name.clone(), f)));
            if pools[..i].iter().any(|(other, _)| other == name) {
                faults.push((name.clone(), "name"));
            }
        }
        for (i, (name, input)) in semaphores.iter().enumerate() {
            faults.extend(input.faults(name).into_iter().map(|f| (name.clone(), f)));
            if semaphores[..i].iter().any(|(other, _)| other == name) {
                faults.push((name.clone(), "name"));
            }
        }

        let built = no_panic(
            || format!("build() of {default_pool:?} {default_semaphore:?} {pools:?} {semaphores:?}"),
            || {
                let mut builder = BulkheadManager::builder();
                if let Some(input) = &default_pool {
                    builder = builder.default_pool_config(input.config());
                }
                if let Some(input) = &default_semaphore {
                    builder = builder.default_semaphore_config(input.config());
                }
                for (name, input) in &pools {
                    builder = builder.pool(name.clone(), input.config());
                }
                for (name, input) in &semaphores {
                    builder = builder.semaphore(name.clone(), input.config());
                }
                builder.build()
            },
        )?;
        match built {
            Ok(manager) => {
                prop_assert!(faults.is_empty(), "accepted despite {:?}", faults);
                for (name, input) in &pools {
                    let pool = no_panic(|| format!("pool({name:?})"), || manager.get_pool(name))?;
                    let pool = pool.expect("a configured pool is registered");
                    prop_assert_eq!(&pool.config(), &input.config());
                    if input.max_threads <= 4 {
                        let result = no_panic(
                            || format!("execute on {input:?}"),
                            || pool.execute(|| 42_u32),
                        )?;
                        match result {
                            Ok(value) => prop_assert_eq!(value, 42),
                            Err(err) => prop_assert!(
                                (err.is_timeout() && !value_guaranteed(input))
                                    || input.stack_size.is_some_and(|s| s >= HUGE_STACK),
                                "execute failed on {:?}: {:?}",
                                input,
                                err
                            ),
                        }
                    }
                }
                for (name, input) in &semaphores {
                    let semaphore = manager.get_semaphore(name).expect("registered");
                    prop_assert_eq!(semaphore.stats().max_concurrent, input.max_concurrent);
                    prop_assert_eq!(semaphore.call(|| 7_u32).ok(), Some(7));
                }
                let shut = no_panic(|| "manager shutdown".to_owned(), || manager.shutdown(LONG))?;
                prop_assert!(shut, "the manager's pools did not terminate");
            }
            Err(err) => {
                prop_assert!(!faults.is_empty(), "refused a valid configuration: {:?}", err);
                prop_assert!(KNOWN_FIELDS.contains(&err.field()), "unknown field: {:?}", err);
                prop_assert!(
                    faults.iter().any(|(b, f)| b == err.bulkhead() && *f == err.field()),
                    "the error names no fault the rules find: {:?} (faults: {:?})",
                    err,
                    faults
                );
                let shown = err.to_string();
                prop_assert!(shown.contains(err.field()), "{}", shown);
            }
        }
    }
}

// Not a property, but the edges of the one field the rules check least: any non-zero stack
// size is accepted, so the smallest and the largest must still give a value (a panic caught
// on a tiny stack included) or a clear error.
#[test]
fn stack_sizes_at_the_edges_give_a_value_or_a_clear_error() {
    // The task's panic is expected: keep it out of the output.
    struct QuietPanic;
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<QuietPanic>().is_none() {
            default(info);
        }
    }));
    for bytes in [
        1,
        4096,
        16 << 10,
        64 << 10,
        1 << 40,
        usize::MAX / 2,
        usize::MAX,
    ] {
        let pool = ThreadPoolBulkhead::new("stack", PoolConfig::new(1).stack_size(bytes))
            .unwrap_or_else(|err| panic!("stack_size({bytes}) refused: {err}"));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            (
                pool.execute(|| 42_u32),
                pool.execute(|| -> u32 { panic::panic_any(QuietPanic) }),
            )
        }))
        .unwrap_or_else(|_| panic!("execute panicked with stack_size({bytes})"));
        match outcome {
            (Ok(value), Err(panicked)) => {
                assert_eq!(value, 42);
                assert!(panicked.is_panicked(), "stack_size({bytes}): {panicked:?}");
            }
            (Err(err), Err(again)) if bytes >= HUGE_STACK => {
                for err in [err, again] {
                    assert!(
                        err.to_string().contains("could not start a worker thread"),
                        "stack_size({bytes}): {err}"
                    );
                }
            }
            outcome => panic!("stack_size({bytes}): {outcome:?}"),
        }
        pool.shutdown();
        assert!(pool.await_termination(LONG), "stack_size({bytes})");
    }
}
