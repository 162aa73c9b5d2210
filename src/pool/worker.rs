//! The worker: spawn, spawn repair, the run loop, panic containment, retirement.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;
use std::time::Duration;

use crate::error::BulkheadError;
use crate::pool::Shared;
use crate::pool::admission::Idle;
use crate::pool::queue::{Popped, Sleeper};
use crate::pool::task::Job;
use crate::sync::Arc;
use crate::sync::plain::{Condvar, Mutex, Ordering};

/// Starts one worker thread, named `<prefix>-<n>`.
///
/// The caller has already counted the worker in the admission word; on error it must
/// uncount it ([`Shared::spawn_failed`]).
pub(crate) fn spawn(shared: &Arc<Shared>) -> io::Result<()> {
    if shared
        .failing_spawns
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(io::Error::other(
            "thread spawn refused (injected for a test)",
        ));
    }
    let id = shared.next_worker_id.fetch_add(1, Ordering::Relaxed);
    let settings = shared.spawn_settings.lock().clone();
    let mut builder = thread::Builder::new().name(format!("{}-{id}", settings.prefix));
    if let Some(bytes) = settings.stack_size {
        builder = builder.stack_size(bytes);
    }
    let worker_shared = Arc::clone(shared);
    shared
        .termination
        .start(|| builder.spawn(move || run(&worker_shared)))
}

/// Uncounts the worker if its loop unwinds (a bug, not a task's panic: those are caught).
/// It does not respawn: a replacement would be started from a `Drop`, on an unwinding thread.
struct Sentinel<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for Sentinel<'_> {
    fn drop(&mut self) {
        if self.armed {
            let after = self.shared.admission.worker_lost();
            self.shared.worker_exited(after);
        }
    }
}

fn run(shared: &Shared) {
    // SPAWNED: the thread exists; until now admission counted it as "spawning".
    shared.admission.spawn_succeeded();
    shared.spawn_verdicts.announce();
    let mut sentinel = Sentinel {
        shared,
        armed: true,
    };
    // Look before the first wait: a worker started after shutdown got no wake-up.
    let mut why = Idle::Woken;
    // This worker's place on the queue's stack of sleepers (the most recently idle is woken
    // first, so surplus workers really reach their keep-alive).
    let sleeper = Sleeper::new();
    loop {
        if let Some(after) = shared.admission.try_retire(why) {
            // EXITING: uncounted already; nothing of the pool's is touched after this.
            sentinel.armed = false;
            // Close this worker's connections (a `ConnectionPoolBulkhead`'s) now, while the
            // thread's other thread-locals are alive: a driver's `Drop` may need its own
            // (the blocking `postgres::Client` closes through its tokio runtime's), and
            // from the slot's destructor at thread exit it found them destroyed and aborted
            // the process. Before `worker_exited`, so termination still means "all closed".
            crate::connection::close_this_threads_connections();
            shared.worker_exited(after);
            return;
        }
        // IDLE: wait for a task. The queue spins briefly before the worker sleeps, which is
        // what makes a back-to-back hand-off cheap.
        why = match shared.queue.pop(&sleeper, || shared.keep_alive()) {
            Popped::Task(job) => {
                // BUSY. A task's panic is caught inside `run`; this catch is a second line
                // for anything else that unwinds out of it, which must not kill the worker.
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job.run(shared))) {
                    // The payload's own `Drop` may panic too; not out here.
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                }
                Idle::Woken
            }
            Popped::Woken => Idle::Woken,
            Popped::TimedOut => Idle::TimedOut,
        };
    }
}

/// Verdicts on thread starts (granted by the new worker, refused by the spawning caller),
/// for the callers that must wait for one in [`Shared::ensure_served`].
#[derive(Debug, Default)]
pub(crate) struct SpawnVerdicts {
    /// Verdicts given so far: a waiter that saw generation `g` waits until it moves.
    generation: Mutex<u64>,
    changed: Condvar,
}

impl SpawnVerdicts {
    /// A spawn has its verdict (already recorded in the admission word).
    pub(crate) fn announce(&self) {
        *self.generation.lock() += 1;
        self.changed.notify_all();
    }

    fn generation(&self) -> u64 {
        *self.generation.lock()
    }

    /// Waits until a verdict newer than generation `seen` is announced. Each wait is capped,
    /// so the caller re-reads the word at least that often even if it missed a wake-up.
    fn wait_past(&self, seen: u64) {
        /// A thread start takes tens of microseconds; this only bounds a missed wake-up.
        const RECHECK: Duration = Duration::from_millis(50);
        let mut generation = self.generation.lock();
        if *generation == seen {
            let _ = self.changed.wait_for(&mut generation, RECHECK);
        }
    }
}

impl Shared {
    /// Makes sure the task just queued will be served, after the OS refused a thread (`err`)
    /// or while the task may be counting on a worker whose spawn is in flight.
    ///
    /// Waits for every spawn in flight to get its verdict, then checks invariant (I). If a
    /// worker is missing it starts one; if the OS refuses that too, the task is served by the
    /// workers that exist (it waits its turn), or — with no worker at all — completed with a
    /// [`BulkheadError::Spawn`] that is returned to the caller. Never waits for a task, only
    /// for thread starts (on a condition variable, not a `yield_now` loop), so no caller can
    /// hang here.
    ///
    /// Regression (tests/faults.rs): a task admitted while another caller's spawn was about
    /// to be refused counted on that worker, reached the queue after the refusing caller had
    /// failed what was queued, and waited forever with no worker alive.
    pub(crate) fn ensure_served(
        self: &Arc<Self>,
        task: &Arc<dyn Job>,
        mut refused: Option<io::Error>,
    ) -> Result<(), BulkheadError> {
        loop {
            // The generation before the word: a verdict given after this read moves it.
            let seen = self.spawn_verdicts.generation();
            let s = self.admission.load();
            match self.admission.needs_worker(s) {
                Some(false) => return Ok(()),
                // A worker's thread is being started: its verdict decides.
                None => self.spawn_verdicts.wait_past(seen),
                Some(true) => {
                    if let Some(err) = &refused {
                        if s.live() > 0 {
                            // Serve from the workers that exist: the task waits its turn.
                            return Ok(());
                        }
                        let error = BulkheadError::Spawn {
                            name: self.name.clone(),
                            kind: err.kind(),
                            message: err.to_string(),
                        };
                        // A worker may have claimed it meanwhile; then it is served.
                        return if task.discard(self, error.clone()) {
                            Err(error)
                        } else {
                            Ok(())
                        };
                    }
                    if self.admission.try_add_worker(s) {
                        if let Err(err) = spawn(self) {
                            self.spawn_failed();
                            refused = Some(err);
                        }
                    }
                }
            }
        }
    }

    /// The OS refused the thread of a worker counted as spawning: uncount it and tell the
    /// callers waiting for the verdict.
    pub(crate) fn spawn_failed(&self) {
        self.admission.spawn_failed();
        self.spawn_verdicts.announce();
    }
}
