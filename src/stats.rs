//! Counters, snapshots and the stats table.
//!
//! Counters are monotonic atomics updated with `Relaxed` ordering: each is a tally, and
//! nothing else is published through them. The gauges (`running`, `queued`, `live_threads`)
//! come from one reading of the pool's admission word, so they are mutually consistent and
//! never exceed the configured limits.

use std::fmt;
use std::time::Duration;

use crate::breaker::CircuitMetrics;
use crate::histogram::LatencySummary;
use crate::sync::plain::{AtomicU64, AtomicUsize, Ordering};

/// The counters of one pool, kept in one place so later features (histograms, events) hook
/// into the same spots.
#[derive(Debug, Default)]
pub(crate) struct PoolCounters {
    pub(crate) submitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Calls refused because the pool was shut down (not counted in `rejected`).
    pub(crate) shutdown_refused: AtomicU64,
    pub(crate) completed: AtomicU64,
    /// Fallible tasks that returned `Err` (not counted in `completed`).
    pub(crate) failed: AtomicU64,
    pub(crate) panicked: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// Tasks refused at their start by the pool's fleet-wide semaphore (feature `redis`).
    pub(crate) global_refused: AtomicU64,
    /// Failed connects of a [`ConnectionPoolBulkhead`](crate::ConnectionPoolBulkhead)'s
    /// workers (zero for a plain pool).
    pub(crate) connect_failures: AtomicU64,
    pub(crate) peak_running: AtomicUsize,
}

impl PoolCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Raises the peak; the load first keeps the common case (no new peak) read-only.
    pub(crate) fn observe_running(&self, running: usize) {
        if running > self.peak_running.load(Ordering::Relaxed) {
            self.peak_running.fetch_max(running, Ordering::Relaxed);
        }
    }
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A snapshot of one [`ThreadPoolBulkhead`](crate::ThreadPoolBulkhead).
///
/// The gauges (`live_threads`, `running`, `queued`) are one consistent reading: `running`
/// never exceeds `max_threads` and `queued` never exceeds `queue_capacity` — except after
/// [`reconfigure`](crate::ThreadPoolBulkhead::reconfigure) lowered them, which takes nothing
/// back: then they exceed the new limits by what was already running or queued, until it
/// ends. The limits shown are the ones in force. A task counts as
/// running from the moment a worker is assigned to it. The counters are exact once the pool
/// is quiet: then `running == 0`, `queued == 0` and
/// `submitted == completed + failed + panicked + expired + cancelled`; at every moment
/// `submitted + rejected + shutdown_refused` is the number of calls attempted.
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("inventory", PoolConfig::new(2))?;
/// assert_eq!(pool.execute(|| 1 + 1)?, 2);
/// let stats = pool.stats();
/// assert_eq!((stats.submitted, stats.completed, stats.running), (1, 1, 0));
/// assert_eq!(
///     stats.submitted,
///     stats.completed + stats.failed + stats.panicked + stats.expired + stats.cancelled
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Most workers the pool starts.
    pub max_threads: usize,
    /// Most tasks that run at once now: `max_threads`, or the adaptive limit in force for a
    /// pool made [`adaptive`](crate::PoolConfig::adaptive) (within `1..=max_threads`).
    pub limit: usize,
    /// Workers that stay once started.
    pub core_threads: usize,
    /// Most tasks that wait while every worker is busy.
    pub queue_capacity: usize,
    /// Worker threads alive now.
    pub live_threads: usize,
    /// Tasks assigned to a worker now.
    pub running: usize,
    /// Tasks waiting for a worker now.
    pub queued: usize,
    /// The most tasks ever running at once.
    pub peak_running: usize,
    /// Calls admitted.
    pub submitted: u64,
    /// Calls refused because the pool was full (its compartment held `max_threads +
    /// queue_capacity` tasks). Refusals after shutdown are not in it: they are
    /// [`shutdown_refused`](PoolStats::shutdown_refused), so an alert on `rejected` does not
    /// fire on every deploy.
    pub rejected: u64,
    /// Calls refused because the pool had been shut down
    /// ([`BulkheadError::Shutdown`](crate::BulkheadError::Shutdown) at submission).
    pub shutdown_refused: u64,
    /// Connections a [`ConnectionPoolBulkhead`](crate::ConnectionPoolBulkhead)'s workers
    /// failed to open (each the outcome of the call that needed it); 0 for plain pools.
    pub connect_failures: u64,
    /// Tasks that ran and returned — for a fallible call
    /// ([`execute_fallible`](crate::ThreadPoolBulkhead::execute_fallible)), returned `Ok`.
    pub completed: u64,
    /// Fallible tasks that ran and returned `Err` (a statement the database cancelled, a
    /// refused request), and a [`ConnectionPoolBulkhead`](crate::ConnectionPoolBulkhead)'s
    /// calls that could not open their connection. One outcome, apart from `completed`:
    /// tasks that return a plain value are never counted here.
    pub failed: u64,
    /// Tasks that ran and panicked.
    pub panicked: u64,
    /// Callers that got [`Timeout`](crate::BulkheadError::Timeout).
    pub timed_out: u64,
    /// Queued tasks cancelled because their caller timed out; they never ran.
    pub expired: u64,
    /// Tasks that never ran because they were cancelled through their handle, discarded by
    /// `shutdown_now`, or left without a worker when the OS refused a thread.
    pub cancelled: u64,
    /// Tasks that never ran because the pool's fleet-wide semaphore
    /// (`PoolConfig::global_limit`, feature `redis`)
    /// gave no lease in time, or Redis was unavailable and the semaphore fails closed; their
    /// callers got [`BulkheadError::Rejected`](crate::BulkheadError::Rejected) or
    /// [`BulkheadError::Unavailable`](crate::BulkheadError::Unavailable). Always 0 without
    /// a global limit.
    pub global_refused: u64,
    /// `shutdown` or `shutdown_now` was called.
    pub is_shutdown: bool,
    /// Time from submission to start, over every task started.
    pub queue_wait: LatencySummary,
    /// Time tasks ran (finished or panicked).
    pub run_time: LatencySummary,
    /// Time since the pool was built: the counters divided by it are rates since start
    /// (what [`BulkheadManager::recommend`](crate::BulkheadManager::recommend) uses).
    pub uptime: Duration,
}

impl PoolStats {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: &str,
        max_threads: usize,
        core_threads: usize,
        queue_capacity: usize,
        live_threads: usize,
        (running, queued): (usize, usize),
        is_shutdown: bool,
        c: &PoolCounters,
        (queue_wait, run_time): (LatencySummary, LatencySummary),
        uptime: Duration,
    ) -> Self {
        Self {
            name: name.to_owned(),
            max_threads,
            limit: max_threads,
            core_threads,
            queue_capacity,
            live_threads,
            running,
            queued,
            peak_running: c.peak_running.load(Ordering::Relaxed),
            submitted: read(&c.submitted),
            rejected: read(&c.rejected),
            shutdown_refused: read(&c.shutdown_refused),
            connect_failures: read(&c.connect_failures),
            completed: read(&c.completed),
            failed: read(&c.failed),
            panicked: read(&c.panicked),
            timed_out: read(&c.timed_out),
            expired: read(&c.expired),
            cancelled: read(&c.cancelled),
            global_refused: read(&c.global_refused),
            is_shutdown,
            queue_wait,
            run_time,
            uptime,
        }
    }
}

/// The counters of one semaphore.
#[derive(Debug, Default)]
pub(crate) struct SemaphoreCounters {
    pub(crate) permitted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Permits granted after waiting (their waits are in the histogram).
    pub(crate) waited: AtomicU64,
    /// `call_fallible` closures that returned `Err`.
    pub(crate) failed: AtomicU64,
}

/// A snapshot of one [`SemaphoreBulkhead`](crate::SemaphoreBulkhead).
///
/// # Examples
///
/// ```
/// use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
///
/// let sem = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(1))?;
/// let permit = sem.try_acquire()?;
/// assert!(sem.try_acquire().is_err());
/// let stats = sem.stats();
/// assert_eq!((stats.running, stats.permitted, stats.rejected), (1, 1, 1));
/// drop(permit);
/// assert_eq!(sem.stats().running, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SemaphoreStats {
    /// The semaphore's name.
    pub name: String,
    /// Permits in all.
    pub max_concurrent: usize,
    /// Permits granted at once now: `max_concurrent`, or the adaptive limit in force for a
    /// semaphore made [`adaptive`](crate::SemaphoreConfig::adaptive).
    pub limit: usize,
    /// Permits held now.
    pub running: usize,
    /// Callers waiting for a permit now.
    pub waiting: usize,
    /// Permits granted.
    pub permitted: u64,
    /// Calls refused: no permit within the allowed wait.
    pub rejected: u64,
    /// Calls through [`call_fallible`](crate::SemaphoreBulkhead::call_fallible) (or its
    /// `_timeout` form) whose closure returned `Err`; they are also counted in `permitted`.
    pub failed: u64,
    /// Time callers waited for their permit (zero for those that took a free one).
    pub wait: LatencySummary,
}

impl SemaphoreStats {
    pub(crate) fn new(
        name: &str,
        max_concurrent: usize,
        running: usize,
        waiting: usize,
        c: &SemaphoreCounters,
        wait: LatencySummary,
    ) -> Self {
        Self {
            name: name.to_owned(),
            max_concurrent,
            limit: max_concurrent,
            running,
            waiting,
            permitted: read(&c.permitted),
            rejected: read(&c.rejected),
            failed: read(&c.failed),
            wait,
        }
    }
}

/// The counters of one process bulkhead.
#[derive(Debug, Default)]
#[cfg_attr(not(unix), allow(dead_code))] // only the process bulkhead (Unix) keeps them
pub(crate) struct ProcessCounters {
    pub(crate) rejected: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) spawn_failed: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) exit_failures: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) killed: AtomicU64,
    pub(crate) truncated: AtomicU64,
}

/// A snapshot of one [`ProcessBulkhead`](crate::ProcessBulkhead) (Unix only; the type
/// exists everywhere so that code matching on [`BulkheadStats`] builds everywhere).
///
/// Once the bulkhead is quiet (`running == 0`, `queued == 0`) the books add up:
/// `permitted == started + spawn_failed` and `started == completed + timed_out`; every call
/// of `run` is one of `permitted`, `rejected` or `expired`.
///
/// # Examples
///
/// ```
/// # #[cfg(unix)] {
/// use std::process::Command;
/// use bulkheads::{ProcessBulkhead, ProcessConfig};
///
/// let sh = ProcessBulkhead::new("sh", ProcessConfig::new(1))?;
/// sh.run(Command::new("true"))?;
/// sh.run(Command::new("false"))?;
/// let stats = sh.stats();
/// assert_eq!((stats.started, stats.completed, stats.exit_failures), (2, 2, 1));
/// assert_eq!(stats.started, stats.completed + stats.timed_out);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessStats {
    /// The bulkhead's name.
    pub name: String,
    /// Most programs running at once.
    pub max_concurrent: usize,
    /// Most calls waiting for a slot.
    pub queue_capacity: usize,
    /// Calls holding a slot now: starting a program, running it, or stopping its group.
    pub running: usize,
    /// Calls waiting for a slot now.
    pub queued: usize,
    /// Calls that got a slot.
    pub permitted: u64,
    /// Calls refused at once: every slot taken and the queue full.
    pub rejected: u64,
    /// Calls whose deadline passed while they waited for a slot; no program started.
    pub expired: u64,
    /// Calls whose program could not be started (not found, not executable, the OS
    /// refused a process or a thread).
    pub spawn_failed: u64,
    /// Programs started.
    pub started: u64,
    /// Programs that ended by themselves before the deadline, whatever their status.
    pub completed: u64,
    /// Of the `completed`, those whose status was not success (a non-zero exit code, or a
    /// signal that was not the bulkhead's).
    pub exit_failures: u64,
    /// Programs stopped at their deadline: their group got `SIGTERM`.
    pub timed_out: u64,
    /// Of the `timed_out`, those whose group was still there after the grace and got
    /// `SIGKILL`.
    pub killed: u64,
    /// Calls whose output went past `max_output` and was cut.
    pub truncated: u64,
    /// Time calls waited for a slot (zero for those that found one free).
    pub queue_wait: LatencySummary,
    /// Time programs ran, from spawn until their group was stopped and reaped.
    pub run_time: LatencySummary,
}

impl ProcessStats {
    #[cfg_attr(not(unix), allow(dead_code))] // only the process bulkhead (Unix) builds one
    pub(crate) fn new(
        name: &str,
        (max_concurrent, queue_capacity): (usize, usize),
        (running, queued, permitted): (usize, usize, u64),
        c: &ProcessCounters,
        (queue_wait, run_time): (LatencySummary, LatencySummary),
    ) -> Self {
        Self {
            name: name.to_owned(),
            max_concurrent,
            queue_capacity,
            running,
            queued,
            permitted,
            rejected: read(&c.rejected),
            expired: read(&c.expired),
            spawn_failed: read(&c.spawn_failed),
            started: read(&c.started),
            completed: read(&c.completed),
            exit_failures: read(&c.exit_failures),
            timed_out: read(&c.timed_out),
            killed: read(&c.killed),
            truncated: read(&c.truncated),
            queue_wait,
            run_time,
        }
    }
}

/// A snapshot of one bulkhead of either kind.
// A pool's snapshot carries two latency histograms (~800 bytes) and a semaphore's one;
// boxing would change the variants' public shape to save bytes on a value built once per
// scrape.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BulkheadStats {
    /// A thread-pool bulkhead.
    Pool(PoolStats),
    /// A semaphore bulkhead.
    Semaphore(SemaphoreStats),
    /// A process bulkhead (Unix only).
    Process(ProcessStats),
}

impl BulkheadStats {
    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Pool(s) => &s.name,
            Self::Semaphore(s) => &s.name,
            Self::Process(s) => &s.name,
        }
    }
}

/// A snapshot of every bulkhead of a [`BulkheadManager`](crate::BulkheadManager), ordered by
/// name. Its `Display` is a table, one row per bulkhead.
///
/// # Examples
///
/// ```
/// use bulkheads::{BulkheadManager, PoolConfig, SemaphoreConfig};
///
/// let manager = BulkheadManager::builder()
///     .pool("payment", PoolConfig::new(2))
///     .semaphore("cache", SemaphoreConfig::new(4))
///     .build()?;
/// manager.pool("payment").execute(|| ())?;
/// let stats = manager.stats();
/// assert_eq!(stats.pool("payment").map(|p| p.completed), Some(1));
/// let table = stats.to_string();
/// assert!(table.lines().nth(1).unwrap().starts_with("cache"));
/// assert!(table.lines().nth(2).unwrap().starts_with("payment"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ManagerStats {
    /// One snapshot per bulkhead, ordered by name.
    pub bulkheads: Vec<BulkheadStats>,
    /// One snapshot per circuit breaker the manager holds, ordered by name.
    pub circuit_breakers: Vec<CircuitMetrics>,
    /// One snapshot per retry the manager holds, ordered by name.
    pub retries: Vec<crate::retry::RetryStats>,
    /// One aggregate row per keyed semaphore the manager holds, ordered by name, each with
    /// its 5 most rejected keys (not one row per tenant).
    pub keyed: Vec<crate::keyed::KeyedStats>,
}

impl ManagerStats {
    /// The snapshot of the pool called `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolStats> {
        self.bulkheads.iter().find_map(|b| match b {
            BulkheadStats::Pool(p) if p.name == name => Some(p),
            _ => None,
        })
    }

    /// The snapshot of the semaphore called `name`.
    pub fn semaphore(&self, name: &str) -> Option<&SemaphoreStats> {
        self.bulkheads.iter().find_map(|b| match b {
            BulkheadStats::Semaphore(s) if s.name == name => Some(s),
            _ => None,
        })
    }

    /// The snapshot of the process bulkhead called `name`.
    pub fn process(&self, name: &str) -> Option<&ProcessStats> {
        self.bulkheads.iter().find_map(|b| match b {
            BulkheadStats::Process(s) if s.name == name => Some(s),
            _ => None,
        })
    }
}

const HEADERS: [&str; 9] = [
    "bulkhead",
    "kind",
    "running/max",
    "queued/capacity",
    "submitted",
    "rejected",
    "timed out",
    "panicked",
    "failed",
];

fn limit(n: usize) -> String {
    if n >= crate::pool::MAX_IN_FLIGHT {
        "unbounded".to_owned()
    } else {
        n.to_string()
    }
}

impl BulkheadStats {
    fn row(&self) -> [String; 9] {
        match self {
            Self::Pool(p) => [
                p.name.clone(),
                "pool".to_owned(),
                in_force(p.running, p.limit, p.max_threads),
                format!("{}/{}", p.queued, limit(p.queue_capacity)),
                p.submitted.to_string(),
                p.rejected.to_string(),
                p.timed_out.to_string(),
                p.panicked.to_string(),
                p.failed.to_string(),
            ],
            Self::Semaphore(s) => [
                s.name.clone(),
                "semaphore".to_owned(),
                in_force(s.running, s.limit, s.max_concurrent),
                format!("{} waiting", s.waiting),
                s.permitted.to_string(),
                s.rejected.to_string(),
                "-".to_owned(),
                "-".to_owned(),
                s.failed.to_string(),
            ],
            // Columns as for a pool: started programs as submitted, expired waits with the
            // programs stopped at their deadline; a process cannot panic; a failing exit
            // status is its failure.
            Self::Process(p) => [
                p.name.clone(),
                "process".to_owned(),
                format!("{}/{}", p.running, p.max_concurrent),
                format!("{}/{}", p.queued, p.queue_capacity),
                p.started.to_string(),
                p.rejected.to_string(),
                (p.timed_out + p.expired).to_string(),
                "-".to_owned(),
                p.exit_failures.to_string(),
            ],
        }
    }
}

fn write_table(f: &mut fmt::Formatter<'_>, rows: &[[String; 9]]) -> fmt::Result {
    write_aligned(f, HEADERS, rows)
}

/// `running/max`, or `running/limit of max` while an adaptive limit is below the maximum.
fn in_force(running: usize, limit: usize, max: usize) -> String {
    if limit == max {
        format!("{running}/{max}")
    } else {
        format!("{running}/{limit} of {max}")
    }
}

/// A table of `headers` and `rows`: the first column left-aligned, the others right-aligned,
/// each as wide as its widest cell. Shared by the bulkheads', breakers' and retries' tables.
pub(crate) fn write_aligned<const N: usize>(
    f: &mut fmt::Formatter<'_>,
    headers: [&str; N],
    rows: &[[String; N]],
) -> fmt::Result {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header = headers.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 0 {
                line.push_str(&format!("{cell:<w$}"));
            } else {
                line.push_str(&format!("  {cell:>w$}"));
            }
        }
        writeln!(f, "{}", line.trim_end())?;
    }
    Ok(())
}

impl fmt::Display for ManagerStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<_> = self.bulkheads.iter().map(BulkheadStats::row).collect();
        write_table(f, &rows)?;
        crate::breaker::write_table(f, &self.circuit_breakers)?;
        crate::retry::write_table(f, &self.retries)?;
        crate::keyed::write_table(f, &self.keyed)
    }
}

impl fmt::Display for PoolStats {
    /// The same table as [`ManagerStats`], with this pool's one row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, &[BulkheadStats::Pool(self.clone()).row()])
    }
}

impl fmt::Display for ProcessStats {
    /// The same table as [`ManagerStats`], with this process bulkhead's one row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, &[BulkheadStats::Process(self.clone()).row()])
    }
}

impl fmt::Display for SemaphoreStats {
    /// The same table as [`ManagerStats`], with this semaphore's one row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, &[BulkheadStats::Semaphore(self.clone()).row()])
    }
}
