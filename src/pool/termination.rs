//! Termination: the worker threads' handles, and waiting until every one has been joined.
//!
//! The books say when the last worker has uncounted itself (`live == 0` after shutdown, in
//! the admission word). That is not yet "terminated": the thread may still be running its
//! thread-local destructors (a connection closed by a thread-local's `Drop`, say). So
//! `await_termination` answers true only once every worker thread has been *joined*. The
//! joins run on a short-lived reaper thread when a thread is still on its way out, so that a
//! slow exit cannot hold a caller past its timeout; concurrent callers share the one reaper.

use std::io;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pool::Shared;
use crate::sync::Arc;
use crate::sync::plain::{Condvar, Mutex, MutexGuard};

/// Where joining stands.
#[derive(Debug, Default)]
struct Reaping {
    /// A reaper (or a caller) is joining the threads.
    started: bool,
    /// Every thread has been joined.
    joined: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Termination {
    /// The handles of workers started and not yet joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    reaping: Mutex<Reaping>,
    /// Notified when the last worker uncounts itself, and when the joins are done.
    changed: Condvar,
}

/// Waits on `condvar` until notified or `deadline`; false if the deadline passed.
fn wait_until<T>(
    condvar: &Condvar,
    guard: &mut MutexGuard<'_, T>,
    deadline: Option<Instant>,
) -> bool {
    match deadline {
        None => {
            condvar.wait(guard);
            true
        }
        Some(deadline) => !condvar.wait_until(guard, deadline).timed_out(),
    }
}

impl Termination {
    /// Starts a worker thread with `spawn` and keeps its handle.
    ///
    /// Spawns under the lock of the handle list: `await_termination` takes the same lock, so
    /// it cannot miss the handle of a worker that started and retired before the push.
    pub(crate) fn start(
        &self,
        spawn: impl FnOnce() -> io::Result<JoinHandle<()>>,
    ) -> io::Result<()> {
        let mut threads = self.threads.lock();
        let handle = spawn()?;
        // Handles of workers that retired on keep-alive would pile up in a long-lived pool.
        threads.retain(|h| !h.is_finished());
        threads.push(handle);
        Ok(())
    }

    /// The last worker has uncounted itself: wake whoever awaits termination.
    pub(crate) fn last_worker_exited(&self) {
        let _guard = self.reaping.lock();
        self.changed.notify_all();
    }

    /// Joins every worker thread (no worker can start after termination, so these are all
    /// there will be), then tells the waiters.
    fn reap(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
        self.reaping.lock().joined = true;
        self.changed.notify_all();
    }

    /// Waits until the pool is shut down and every worker has been joined, at most
    /// `timeout`; true only once every thread has been joined.
    pub(crate) fn wait(shared: &Arc<Shared>, timeout: Duration) -> bool {
        let this = &shared.termination;
        let deadline = Instant::now().checked_add(timeout);
        let mut reaping = this.reaping.lock();
        // The books first: every worker has uncounted itself.
        while !reaping.joined && !shared.admission.load().is_terminated() {
            if !wait_until(&this.changed, &mut reaping, deadline) {
                // Regression: this used to answer `is_terminated()` here, true before any
                // thread was joined (tests/shutdown.rs checks that a true answer means the
                // workers' thread-locals are gone).
                if !shared.admission.load().is_terminated() {
                    return reaping.joined;
                }
                break;
            }
        }
        if !reaping.started {
            reaping.started = true;
            drop(reaping);
            // `is_finished` is no shortcut: it turns true when a thread's loop returns,
            // before its thread-local destructors have run. Only a join says it is gone.
            if this.threads.lock().is_empty() {
                // Never started a thread, or already joined them all.
                this.reap();
            } else {
                let reaper = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-reaper", shared.spawn_settings.lock().prefix))
                    .spawn(move || reaper.termination.reap());
                if spawned.is_err() {
                    // No thread for the reaper: join here, past the deadline if need be.
                    this.reap();
                }
            }
            reaping = this.reaping.lock();
        }
        while !reaping.joined {
            if !wait_until(&this.changed, &mut reaping, deadline) {
                return reaping.joined;
            }
        }
        true
    }
}
