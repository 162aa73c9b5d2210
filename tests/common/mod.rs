//! Helpers shared by the test files.

#![allow(dead_code)] // each test binary uses its own subset

pub mod exposition;

use std::sync::{Arc, Condvar, Mutex};

use bulkheads::{PoolStats, ThreadPoolBulkhead};
use std::thread;
use std::time::{Duration, Instant};

/// Polls `cond` every millisecond until it holds; fails the test, saying what it waited
/// for, once `timeout` has passed. A bounded wait for a state to be reached — never a sleep
/// standing in for synchronisation.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// A latch that tasks block on until the test opens it. The wait is bounded (a minute, far
/// past any assertion here) so that a failed test cannot leave a worker blocked for ever.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    pub fn is_open(&self) -> bool {
        *self.open.lock().unwrap()
    }

    /// Blocks until the gate opens (true) or the safety bound passes (false).
    pub fn wait(&self) -> bool {
        let open = self.open.lock().unwrap();
        let (open, _) = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open)
            .unwrap();
        *open
    }
}

/// A shared [`Gate`]: clones open and wait on the same gate.
pub type Latch = Arc<Gate>;

/// Opens the gate when dropped, so that an assertion failing before the test opens it does not
/// leave threads blocked behind it.
pub struct OpenOnDrop(pub Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// How many threads of this process are named `<prefix>-…` now (Linux).
///
/// Comparing names, not the total count of threads, keeps this exact while other tests of
/// the same binary start and stop their own threads in parallel. Linux shows 15 bytes of a
/// name, so prefixes are short.
pub fn threads_named(prefix: &str) -> usize {
    let prefix = format!("{prefix}-");
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task is readable")
        .filter_map(Result::ok)
        // A thread may exit between the listing and the read: it then simply does not count.
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|name| name.starts_with(&prefix))
        })
        .count()
}

/// xorshift64: tiny, seeded, good enough to mix operations; no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Promise 8's identity for a quiet pool: nothing running or queued, and every submitted
/// task counted in exactly one outcome.
pub fn assert_books_balance(pool: &ThreadPoolBulkhead) {
    let s = pool.stats();
    assert_eq!((s.running, s.queued), (0, 0), "pool not quiet: {s:?}");
    assert_eq!(
        s.submitted,
        s.completed + s.failed + s.panicked + s.expired + s.cancelled + s.global_refused,
        "books do not balance: {s:?}"
    );
}

/// Promise 8's identity for attempts: every call attempted was admitted (`submitted`),
/// refused because the pool was full (`rejected`) or refused because it was shut down
/// (`shutdown_refused`), exactly once. `who` says where in a failure.
///
/// Until `shutdown_refused` existed, refusals after shutdown were counted in `rejected`, and
/// an alert on `rejected` fired on every deploy; this helper keeps the two apart.
pub fn assert_attempts_balance(who: &str, s: &PoolStats, attempts: u64) {
    assert_eq!(
        s.submitted + s.rejected + s.shutdown_refused,
        attempts,
        "{who}: attempts do not balance: {s:?}"
    );
}

/// A barrier whose wait gives up after ten seconds, so that a proof that tasks run at once
/// fails instead of hanging when they do not.
pub struct BoundedBarrier {
    arrived: Mutex<usize>,
    all_here: Condvar,
    parties: usize,
}

impl BoundedBarrier {
    pub fn new(parties: usize) -> Self {
        Self {
            arrived: Mutex::new(0),
            all_here: Condvar::new(),
            parties,
        }
    }

    /// True if every party arrived in time.
    pub fn wait(&self) -> bool {
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.all_here.notify_all();
        let (arrived, _) = self
            .all_here
            .wait_timeout_while(arrived, Duration::from_secs(10), |n| *n < self.parties)
            .unwrap();
        *arrived >= self.parties
    }
}

/// Promise 8 on one snapshot taken while the pool runs: no gauge over its ceiling, and no
/// counter lower than in `last`, an earlier snapshot of the same pool (they only grow).
/// `who` names the pool in a failure.
pub fn assert_snapshot_sane(who: &str, stats: &PoolStats, last: Option<&PoolStats>) {
    let (max, queue) = (stats.max_threads, stats.queue_capacity);
    assert!(
        stats.running <= max,
        "{who}: running over the ceiling: {stats:?}"
    );
    assert!(
        stats.queued <= queue,
        "{who}: queued over the capacity: {stats:?}"
    );
    assert!(
        stats.live_threads <= max,
        "{who}: too many threads: {stats:?}"
    );
    assert!(
        stats.peak_running <= max,
        "{who}: peak over the ceiling: {stats:?}"
    );
    let Some(last) = last else { return };
    let counters = |s: &PoolStats| {
        [
            s.submitted,
            s.rejected,
            s.shutdown_refused,
            s.completed,
            s.panicked,
            s.timed_out,
            s.expired,
            s.cancelled,
        ]
    };
    for (now, before) in counters(stats).into_iter().zip(counters(last)) {
        assert!(
            now >= before,
            "{who}: a counter went down: {last:?} then {stats:?}"
        );
    }
}
