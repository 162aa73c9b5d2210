//! Soak: promises 7 and 8 held for a long time, across many pools, while pools come and go.
//!
//! Ignored by default; run it for a bounded time with
//!
//! ```text
//! BULKHEADS_SOAK_SECS=60 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! (5 seconds when `BULKHEADS_SOAK_SECS` is unset; `BULKHEADS_SOAK_SEED` replays a seed, as far
//! as thread scheduling lets a seed replay anything.)
//!
//! Eight submitter threads call the current pool with a random mix of `execute`,
//! `execute_timeout`, `submit` + `join`, `submit` + `join_timeout`, `submit` + `cancel`,
//! `submit` + drop (detach), some of the tasks panicking. Now and then a cycler thread puts a
//! fresh pool of a random size in place of the current one and shuts the old one down —
//! `shutdown_now` mostly, `shutdown` sometimes — while callers are still inside it. Each pool
//! carries its own books, kept by its callers (what each call returned) and its tasks (each
//! counts its run); a checker thread reconciles them with the pool's counters once the pool
//! has terminated and its last caller has left. A sampler thread checks every snapshot's
//! gauges against the pool's limits. At the end: no thread left behind (`/proc/self/task`)
//! and no unbounded growth of the resident set (`/proc/self/statm`).

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkheads::{BulkheadError, PoolConfig, PoolStats, ThreadPoolBulkhead};

mod common;
use common::{Rng, assert_attempts_balance, assert_snapshot_sane, wait_until};

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

const SUBMITTERS: usize = 8;

/// How long a test waits for something that should happen at once. Only a bug gets near it.
const LONG: Duration = Duration::from_secs(10);

/// Resident-set growth allowed between the end of the warm-up and any later sample. Generous:
/// the allocator keeps freed memory, and thread stacks and channel blocks come and go; what
/// this catches is a leak per call or per pool, which over a soak runs to hundreds of MiB.
const RSS_GROWTH_LIMIT: u64 = 64 << 20;

/// How long a pool serves, at most, before the cycler replaces it.
const MAX_POOL_LIFE: Duration = Duration::from_millis(400);

fn soak_duration() -> Duration {
    let secs = match std::env::var("BULKHEADS_SOAK_SECS") {
        Ok(secs) => secs
            .trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("BULKHEADS_SOAK_SECS={secs:?} is not a whole number")),
        Err(_) => 5,
    };
    Duration::from_secs(secs.max(1))
}

fn soak_seed() -> u64 {
    match std::env::var("BULKHEADS_SOAK_SEED") {
        Ok(seed) => {
            let seed = seed.trim();
            let parsed = match seed.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => seed.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("BULKHEADS_SOAK_SEED={seed:?} is not a number"))
        }
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A builder for one of the soak's own threads, named for the panic messages.
fn named(name: &str) -> thread::Builder {
    thread::Builder::new().name(name.to_owned())
}

/// Threads of this process, as the kernel lists them.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable")
        .count()
}

/// Resident set size in bytes: the second field of /proc/self/statm, in 4 KiB pages.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm is readable");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The payload of the panics the tasks raise on purpose: the panic hook keeps them quiet, and
/// each caller checks that the payload it got back is its own task's.
struct SoakPanic(u64);

fn quiet_soak_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<SoakPanic>().is_none() {
                default(info);
            }
        }));
    });
}

/// Stops the whole soak if the thread holding it panics, so that a failed invariant ends the
/// run at once instead of after the full duration.
struct StopOnPanic(Arc<AtomicBool>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One pool's life and books
// ---------------------------------------------------------------------------------------------

/// What callers of one pool saw, and what its tasks did. One counter per kind of outcome.
#[derive(Default)]
struct Book {
    attempts: AtomicU64,
    /// The task's own value.
    value: AtomicU64,
    /// `Panicked`, with the task's own payload.
    panicked: AtomicU64,
    /// `Timeout`, from `execute_timeout` or `join_timeout`.
    timeout: AtomicU64,
    /// `cancel()` said true and `join` said `Cancelled`.
    cancelled: AtomicU64,
    /// `Shutdown` from a handle: admitted, then discarded by `shutdown_now`.
    discarded: AtomicU64,
    /// `Shutdown` from `execute`/`execute_timeout`: refused or discarded, the caller cannot
    /// tell which.
    call_shutdown: AtomicU64,
    /// `Rejected` at admission.
    rejected: AtomicU64,
    /// `Shutdown` from `submit`: refused at admission.
    submit_shutdown: AtomicU64,
    /// The handle was dropped: nobody sees this outcome.
    detached: AtomicU64,
    /// Tasks that ran and returned.
    ran_ok: AtomicU64,
    /// Tasks that ran and panicked.
    ran_panicked: AtomicU64,
    /// Callers inside an attempt on this pool now.
    active: AtomicUsize,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One pool and its books.
struct Generation {
    id: u64,
    pool: ThreadPoolBulkhead,
    max_threads: usize,
    queue_capacity: usize,
    book: Arc<Book>,
    /// Set by the cycler when it retires the pool: how.
    retired_now: AtomicBool,
}

impl Generation {
    /// A pool of a random shape: small, so that it fills, queues and rejects; sometimes with
    /// a keep-alive short enough that workers retire and start again under load.
    fn new(id: u64, rng: &mut Rng) -> Self {
        let max_threads = 1 + rng.below(6) as usize;
        let queue_capacity = rng.below(9) as usize;
        let mut config = PoolConfig::new(max_threads)
            .queue_capacity(queue_capacity)
            .thread_name_prefix("soak");
        if rng.below(2) == 0 {
            config = config
                .core_threads(rng.below(max_threads as u64 + 1) as usize)
                .keep_alive(Duration::from_millis(1 + rng.below(20)));
        }
        Self {
            id,
            pool: ThreadPoolBulkhead::new(format!("soak-{id}"), config).unwrap(),
            max_threads,
            queue_capacity,
            book: Arc::new(Book::default()),
            retired_now: AtomicBool::new(false),
        }
    }
}

/// A caller's hold on the current pool for one attempt; the checker waits for every hold on a
/// retired pool to end before it reconciles the books.
struct Lease(Arc<Generation>);

impl Lease {
    fn take(current: &RwLock<Arc<Generation>>) -> Self {
        let generation = current.read().unwrap();
        // Under the read lock: once the cycler has swapped the pool out (under the write lock),
        // no new lease on the old one can start, and every lease that did start is counted.
        generation.book.active.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(&generation))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Release: the checker that sees zero sees every outcome this caller recorded.
        self.0.book.active.fetch_sub(1, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// The callers
// ---------------------------------------------------------------------------------------------

/// The task of attempt `id`: counts its run, works a little, maybe panics. `token` is dropped
/// with the closure, so its strong count tells whether the closure is gone for good.
fn task(
    book: &Arc<Book>,
    id: u64,
    work: Duration,
    panics: bool,
    token: &Arc<()>,
) -> impl FnOnce() -> u64 + Send + 'static {
    let book = Arc::clone(book);
    let token = Arc::clone(token);
    move || {
        let _token = token;
        bump(if panics {
            &book.ran_panicked
        } else {
            &book.ran_ok
        });
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
            panic::panic_any(SoakPanic(id));
        }
        id
    }
}

/// Where a result came from: a call (`execute*`) or a handle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Site {
    Call,
    Handle,
}

/// Counts one result in `book`, checking it against the task it came from. Returns true for
/// a rejection (the caller then paces itself).
fn record(
    book: &Book,
    id: u64,
    panics: bool,
    site: Site,
    token: &Arc<()>,
    result: Result<u64, BulkheadError>,
) -> bool {
    // A task whose outcome is known and final has had its closure dropped: run, or never to
    // run. Only after a timeout may a started task still hold it.
    let closure_gone = || {
        assert_eq!(
            Arc::strong_count(token),
            1,
            "task {id}: its closure outlived its outcome"
        );
    };
    match result {
        Ok(value) => {
            assert_eq!(value, id, "task {id} was handed another task's value");
            assert!(!panics, "task {id} should have panicked");
            closure_gone();
            bump(&book.value);
        }
        Err(err) if err.is_panicked() => {
            assert!(panics, "task {id} panicked unexpectedly: {err}");
            let payload = err.into_panic().expect("the payload is kept");
            let owner = payload.downcast_ref::<SoakPanic>().map(|p| p.0);
            assert_eq!(owner, Some(id), "task {id} was handed another panic");
            closure_gone();
            bump(&book.panicked);
        }
        Err(err) if err.is_timeout() => bump(&book.timeout),
        Err(err) if err.is_rejected() => {
            assert!(site == Site::Call, "task {id}: a handle said Rejected");
            closure_gone();
            bump(&book.rejected);
            return true;
        }
        Err(err) if err.is_shutdown() => {
            closure_gone();
            bump(match site {
                Site::Call => &book.call_shutdown,
                Site::Handle => &book.discarded,
            });
        }
        Err(err) => panic!("task {id}: unexpected {err:?}"),
    }
    false
}

/// One attempt of a random kind on `generation`'s pool. Returns true if it was rejected.
fn attempt(generation: &Generation, rng: &mut Rng, id: u64) -> bool {
    let (pool, book) = (&generation.pool, &*generation.book);
    bump(&book.attempts);
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
    let token = Arc::new(());
    let f = task(&generation.book, id, work, panics, &token);
    let call = |result| record(book, id, panics, Site::Call, &token, result);
    let handle = |result| record(book, id, panics, Site::Handle, &token, result);
    match op {
        0 => {
            let result = pool.execute(f);
            assert!(
                !result.as_ref().is_err_and(BulkheadError::is_timeout),
                "task {id}: no deadline, yet Timeout"
            );
            call(result)
        }
        1 => call(pool.execute_timeout(deadline, f)),
        _ => match pool.submit(f) {
            Err(err) if err.is_rejected() => call(Err(err)),
            Err(err) if err.is_shutdown() => {
                assert_eq!(Arc::strong_count(&token), 1, "task {id}: refused, yet kept");
                bump(&book.submit_shutdown);
                false
            }
            Err(err) => panic!("task {id}: unexpected {err:?} from submit"),
            Ok(task) => match op {
                2 => {
                    let result = task.join();
                    assert!(
                        !result.as_ref().is_err_and(BulkheadError::is_timeout),
                        "task {id}: join said Timeout"
                    );
                    handle(result)
                }
                3 => handle(task.join_timeout(deadline)),
                4 => {
                    if task.cancel() {
                        // It never runs: the closure is gone already, and join says so.
                        assert_eq!(Arc::strong_count(&token), 1, "task {id}: cancelled, kept");
                        let err = task.join().expect_err("a cancelled task has no value");
                        assert!(err.is_cancelled(), "task {id}: cancelled, then {err:?}");
                        bump(&book.cancelled);
                        false
                    } else {
                        let result = task.join();
                        assert!(
                            !result.as_ref().is_err_and(BulkheadError::is_timeout),
                            "task {id}: join said Timeout"
                        );
                        handle(result)
                    }
                }
                _ => {
                    drop(task);
                    bump(&book.detached);
                    false
                }
            },
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// Totals over every pool of the soak.
#[derive(Default, Debug)]
struct Totals {
    pools: u64,
    pools_shutdown_now: u64,
    attempts: u64,
    value: u64,
    panicked: u64,
    timeout: u64,
    cancelled: u64,
    discarded: u64,
    call_shutdown: u64,
    rejected: u64,
    submit_shutdown: u64,
    detached: u64,
    submitted: u64,
    completed: u64,
    pool_panicked: u64,
    expired: u64,
    pool_cancelled: u64,
    pool_rejected: u64,
}

/// Checks one snapshot of the current pool against its configuration and limits, and its
/// counters against the previous snapshot of the same pool.
fn check_sample(generation: &Generation, stats: &PoolStats, last: Option<&PoolStats>) {
    assert_eq!(stats.max_threads, generation.max_threads);
    assert_eq!(stats.queue_capacity, generation.queue_capacity);
    assert_snapshot_sane(&format!("pool {}", generation.id), stats, last);
}

/// Reconciles a terminated pool's counters with what its callers and tasks recorded: every
/// admitted task had exactly one outcome, and the books add up.
fn verify(generation: &Generation, totals: &mut Totals) {
    let id = generation.id;
    let s = generation.pool.stats();
    let b = &*generation.book;
    let (attempts, value, panicked, timeout) = (
        read(&b.attempts),
        read(&b.value),
        read(&b.panicked),
        read(&b.timeout),
    );
    let (cancelled, discarded, call_shutdown, rejected) = (
        read(&b.cancelled),
        read(&b.discarded),
        read(&b.call_shutdown),
        read(&b.rejected),
    );
    let (submit_shutdown, detached, ran_ok, ran_panicked) = (
        read(&b.submit_shutdown),
        read(&b.detached),
        read(&b.ran_ok),
        read(&b.ran_panicked),
    );
    let now = generation.retired_now.load(Ordering::SeqCst);
    let ctx = || format!("pool {id} (shutdown_now: {now}): {s:?}");

    assert!(
        s.is_shutdown && generation.pool.is_terminated(),
        "{}",
        ctx()
    );
    assert_eq!(
        (s.running, s.queued, s.live_threads),
        (0, 0, 0),
        "{}",
        ctx()
    );
    // Every caller's attempt ended in exactly one of the outcomes it can see.
    assert_eq!(
        value
            + panicked
            + timeout
            + cancelled
            + discarded
            + call_shutdown
            + rejected
            + submit_shutdown
            + detached,
        attempts,
        "{}",
        ctx()
    );
    // Promise 8: the books add up.
    assert_attempts_balance(&ctx(), &s, attempts);
    assert_eq!(
        s.submitted,
        s.completed + s.panicked + s.expired + s.cancelled,
        "{}",
        ctx()
    );
    assert_eq!(s.timed_out, timeout, "{}", ctx());
    // Tasks counted their own runs: each run is one `completed` or one `panicked`.
    assert_eq!(s.completed, ran_ok, "{}", ctx());
    assert_eq!(s.panicked, ran_panicked, "{}", ctx());
    // ...and the callers' outcomes agree with the pool's.
    // A full pool's rejections and a shut-down pool's refusals are counted apart: every
    // `Rejected` a caller saw is one `rejected`; a call refused at shutdown is one
    // `shutdown_refused`, seen as `Shutdown` by `submit` or by `execute` (which also sees it
    // for a task that `shutdown_now` discarded).
    assert_eq!(s.rejected, rejected, "{}", ctx());
    let refused = submit_shutdown;
    assert!(
        s.shutdown_refused >= refused && s.shutdown_refused <= refused + call_shutdown,
        "{}",
        ctx()
    );
    let seen_admitted = value + panicked + timeout + cancelled + discarded + detached;
    let discarded_calls = s
        .submitted
        .checked_sub(seen_admitted)
        .unwrap_or_else(|| panic!("more admitted outcomes than admissions: {}", ctx()));
    assert_eq!(
        discarded_calls + (s.shutdown_refused - refused),
        call_shutdown,
        "{}",
        ctx()
    );
    assert!(value <= s.completed && panicked <= s.panicked, "{}", ctx());
    // Whatever ran was seen as a value or a panic, or ran for a caller that had timed out, or
    // for nobody (detached).
    assert!(
        s.completed + s.panicked <= value + panicked + timeout + detached,
        "{}",
        ctx()
    );
    assert!(s.expired <= timeout, "{}", ctx());
    assert!(s.cancelled >= cancelled + discarded, "{}", ctx());
    assert!(s.peak_running <= generation.max_threads, "{}", ctx());
    if !now {
        // A graceful shutdown discards nothing: queued work, detached work included, still ran.
        assert_eq!((discarded, discarded_calls), (0, 0), "{}", ctx());
        assert_eq!(s.cancelled, cancelled, "{}", ctx());
        assert_eq!(s.shutdown_refused, refused + call_shutdown, "{}", ctx());
    }

    totals.pools += 1;
    totals.pools_shutdown_now += u64::from(now);
    totals.attempts += attempts;
    totals.value += value;
    totals.panicked += panicked;
    totals.timeout += timeout;
    totals.cancelled += cancelled;
    totals.discarded += discarded;
    totals.call_shutdown += call_shutdown;
    totals.rejected += rejected;
    totals.submit_shutdown += submit_shutdown;
    totals.detached += detached;
    totals.submitted += s.submitted;
    totals.completed += s.completed;
    totals.pool_panicked += s.panicked;
    totals.expired += s.expired;
    totals.pool_cancelled += s.cancelled;
    totals.pool_rejected += s.rejected;
}

/// Waits until a retired pool has terminated and its last caller has left, then verifies it.
fn retire(generation: &Generation, totals: &mut Totals) {
    assert!(
        generation.pool.await_termination(LONG),
        "pool {} did not terminate: {:?}",
        generation.id,
        generation.pool.stats()
    );
    wait_until(LONG, "the retired pool's last caller leaves", || {
        generation.book.active.load(Ordering::Acquire) == 0
    });
    verify(generation, totals);
}

// ---------------------------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------------------------

/// What the sampler saw.
#[derive(Default)]
struct Samples {
    count: u64,
    rss_warm: u64,
    rss_max: u64,
    threads_max: usize,
}

#[test]
#[ignore = "soak: run with BULKHEADS_SOAK_SECS=<n> cargo test --release --test soak -- --ignored"]
fn soak() {
    quiet_soak_panics();
    let duration = soak_duration();
    let seed = soak_seed();
    let warm_up = duration / 5;
    println!(
        "soak: seed {seed:#x} (BULKHEADS_SOAK_SEED), {duration:?} (BULKHEADS_SOAK_SECS), \
         {SUBMITTERS} submitters"
    );
    let threads_start = thread_count();
    let rss_start = rss_bytes();
    let began = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let mut rng = Rng::new(seed);
    let current = Arc::new(RwLock::new(Arc::new(Generation::new(0, &mut rng))));
    let (retired_tx, retired_rx) = mpsc::channel::<Arc<Generation>>();

    // The checker: reconciles each retired pool's books.
    let checker = {
        let stop = Arc::clone(&stop);
        named("checker")
            .spawn(move || {
                let _stop = StopOnPanic(stop);
                let mut totals = Totals::default();
                for generation in retired_rx {
                    retire(&generation, &mut totals);
                }
                totals
            })
            .expect("the checker starts")
    };

    // The sampler: every snapshot of the current pool within its limits; RSS and threads.
    let sampler =
        {
            let (stop, current) = (Arc::clone(&stop), Arc::clone(&current));
            named("sampler").spawn(move || {
            let _stop = StopOnPanic(Arc::clone(&stop));
            let mut samples = Samples::default();
            let mut last: Option<(u64, PoolStats)> = None;
            while !stop.load(Ordering::SeqCst) {
                let generation = Arc::clone(&current.read().unwrap());
                let stats = generation.pool.stats();
                let previous = last
                    .as_ref()
                    .filter(|(id, _)| *id == generation.id)
                    .map(|(_, s)| s);
                check_sample(&generation, &stats, previous);
                last = Some((generation.id, stats));
                samples.count += 1;
                if samples.count % 64 == 0 {
                    samples.threads_max = samples.threads_max.max(thread_count());
                    if began.elapsed() >= warm_up {
                        let rss = rss_bytes();
                        if samples.rss_warm == 0 {
                            samples.rss_warm = rss;
                        }
                        samples.rss_max = samples.rss_max.max(rss);
                        assert!(
                            rss.saturating_sub(samples.rss_warm) < RSS_GROWTH_LIMIT,
                            "the resident set grew from {:.1} MiB after warm-up to {:.1} MiB",
                            mib(samples.rss_warm),
                            mib(rss)
                        );
                    }
                }
                thread::yield_now();
            }
            samples
        }).expect("the sampler starts")
        };

    // The cycler: now and then a fresh pool replaces the current one, which is shut down
    // while its callers are still inside it.
    let (cycler_stop_tx, cycler_stop) = mpsc::channel::<()>();
    let cycler = {
        let (stop, current, retired_tx) =
            (Arc::clone(&stop), Arc::clone(&current), retired_tx.clone());
        let mut rng = Rng::new(seed ^ 0xC7C1E);
        named("cycler")
            .spawn(move || {
                let _stop = StopOnPanic(Arc::clone(&stop));
                let mut next_id = 1;
                loop {
                    // A timer, not a synchronisation: the pool's life is random.
                    let life =
                        Duration::from_millis(20 + rng.below(MAX_POOL_LIFE.as_millis() as u64));
                    match cycler_stop.recv_timeout(life) {
                        Err(mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => {}
                        _ => return next_id - 1,
                    }
                    let fresh = Arc::new(Generation::new(next_id, &mut rng));
                    next_id += 1;
                    let old = std::mem::replace(&mut *current.write().unwrap(), fresh);
                    if rng.below(4) == 0 {
                        old.pool.shutdown();
                    } else {
                        old.retired_now.store(true, Ordering::SeqCst);
                        old.pool.shutdown_now();
                    }
                    if retired_tx.send(old).is_err() {
                        return next_id - 1;
                    }
                }
            })
            .expect("the cycler starts")
    };

    // The submitters.
    let (done_tx, done) = mpsc::channel::<usize>();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|k| {
            let (stop, current, done_tx) =
                (Arc::clone(&stop), Arc::clone(&current), done_tx.clone());
            let mut rng = Rng::new(seed ^ ((k as u64 + 1) << 32));
            named(&format!("submitter-{k}"))
                .spawn(move || {
                    let _stop = StopOnPanic(Arc::clone(&stop));
                    let mut i = 0_u64;
                    while !stop.load(Ordering::Relaxed) {
                        // A batch of attempts on one pool: a batch that outlives its pool's
                        // retirement meets a shut-down pool at admission.
                        let lease = Lease::take(&current);
                        for _ in 0..1 + rng.below(16) {
                            let id = (k as u64) << 48 | i;
                            i += 1;
                            if attempt(&lease.0, &mut rng, id) {
                                // Pacing, not synchronisation: without it the submitters spin
                                // through their attempts on rejections while the long tasks sleep.
                                thread::sleep(Duration::from_micros(50));
                            }
                        }
                    }
                    let _ = done_tx.send(k);
                })
                .expect("a submitter starts")
        })
        .collect();
    drop(done_tx);

    // Run for the duration, or until a thread fails.
    while began.elapsed() < duration && !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    // No caller may hang: each must notice the stop within a bound, however its last call
    // went. (A hung caller fails the test here rather than hanging it.)
    for _ in 0..SUBMITTERS {
        if done.recv_timeout(LONG).is_err() {
            let generation = Arc::clone(&current.read().unwrap());
            panic!(
                "a submitter did not finish within {LONG:?} of the stop (seed {seed:#x}); \
                 current pool {}: {:?}",
                generation.id,
                generation.pool.stats()
            );
        }
    }
    for submitter in submitters {
        submitter.join().unwrap_or_else(|p| panic::resume_unwind(p));
    }
    drop(cycler_stop_tx);
    let cycled = cycler.join().unwrap_or_else(|p| panic::resume_unwind(p));
    let samples = sampler.join().unwrap_or_else(|p| panic::resume_unwind(p));
    // The last pool: a graceful shutdown, so its detached work drains, then the same checks.
    let last = Arc::clone(&current.read().unwrap());
    drop(current);
    last.pool.shutdown();
    // If the checker has failed already, its panic (joined below) tells why.
    let _ = retired_tx.send(last);
    drop(retired_tx);
    let totals = checker.join().unwrap_or_else(|p| panic::resume_unwind(p));
    let elapsed = began.elapsed();

    // Every pool is terminated and dropped, and every thread of ours joined: the process is
    // back to the threads it started with. A joined thread lingers in /proc for the moment
    // the kernel takes to reap it, and a pool's short-lived reaper thread may still be leaving.
    let deadline = Instant::now() + LONG;
    let mut threads_end = thread_count();
    while threads_end > threads_start && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
        threads_end = thread_count();
    }
    let rss_end = rss_bytes();

    println!(
        "soak: {elapsed:.1?}, {} attempts ({:.0}/s), {} pools ({cycled} cycled: {} by shutdown_now, \
         the rest by shutdown), {} samples",
        totals.attempts,
        totals.attempts as f64 / elapsed.as_secs_f64(),
        totals.pools,
        totals.pools_shutdown_now,
        samples.count
    );
    println!(
        "  callers saw: value {}, panicked {}, timeout {}, cancelled {}, discarded {}, \
         shutdown (execute) {}, rejected {}, refused at submit {}, detached {}",
        totals.value,
        totals.panicked,
        totals.timeout,
        totals.cancelled,
        totals.discarded,
        totals.call_shutdown,
        totals.rejected,
        totals.submit_shutdown,
        totals.detached
    );
    println!(
        "  pools counted: submitted {}, rejected {}, completed {}, panicked {}, expired {}, \
         cancelled {}",
        totals.submitted,
        totals.pool_rejected,
        totals.completed,
        totals.pool_panicked,
        totals.expired,
        totals.pool_cancelled
    );
    println!(
        "  rss: start {:.1} MiB, after warm-up {:.1} MiB, max {:.1} MiB, end {:.1} MiB",
        mib(rss_start),
        mib(samples.rss_warm),
        mib(samples.rss_max),
        mib(rss_end)
    );
    println!(
        "  threads: start {threads_start}, max seen {}, end {threads_end}",
        samples.threads_max
    );

    assert_eq!(totals.pools, cycled + 1, "a retired pool was not checked");
    assert!(totals.attempts > 0 && samples.count > 0);
    assert!(
        totals.value > 0 && totals.panicked > 0 && totals.cancelled > 0,
        "the mix did not exercise every outcome: {totals:?}"
    );
    assert!(
        threads_end <= threads_start,
        "threads leaked: {threads_start} at the start, {threads_end} after every pool terminated"
    );
    assert!(samples.rss_warm > 0, "no resident-set sample after warm-up");
    assert!(
        rss_end.saturating_sub(samples.rss_warm) < RSS_GROWTH_LIMIT,
        "the resident set grew from {:.1} MiB after warm-up to {:.1} MiB at the end",
        mib(samples.rss_warm),
        mib(rss_end)
    );
}
