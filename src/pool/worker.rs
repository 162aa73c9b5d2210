//! The worker: spawn, the run loop, panic containment, retirement.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use crate::pool::Shared;
use crate::pool::admission::Idle;
use crate::pool::queue::Popped;
use crate::sync::Arc;
use crate::sync::plain::Ordering;

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
    let mut builder = thread::Builder::new().name(format!("{}-{id}", shared.thread_prefix));
    if let Some(bytes) = shared.stack_size {
        builder = builder.stack_size(bytes);
    }
    let worker_shared = Arc::clone(shared);
    // Spawn under the lock of the handle list: `await_termination` takes the same lock, so
    // it cannot miss the handle of a worker that started and retired before the push.
    let mut threads = shared.threads.lock();
    let handle = builder.spawn(move || run(&worker_shared))?;
    // Handles of workers that retired on keep-alive would pile up in a long-lived pool.
    threads.retain(|h| !h.is_finished());
    threads.push(handle);
    Ok(())
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
    let mut sentinel = Sentinel {
        shared,
        armed: true,
    };
    // Look before the first wait: a worker started after shutdown got no wake-up.
    let mut why = Idle::Woken;
    loop {
        if let Some(after) = shared.admission.try_retire(why) {
            // EXITING: uncounted already; nothing of the pool's is touched after this.
            sentinel.armed = false;
            shared.worker_exited(after);
            return;
        }
        // IDLE: wait for a task. The queue spins briefly before the worker sleeps, which is
        // what makes a back-to-back hand-off cheap.
        why = match shared.queue.pop(shared.keep_alive) {
            Popped::Task(job) => {
                // BUSY. A task's panic is caught inside `run`; this catch is a second line
                // for anything else that unwinds out of it, which must not kill the worker.
                let _ = catch_unwind(AssertUnwindSafe(|| job.run(shared)));
                Idle::Woken
            }
            Popped::Woken => Idle::Woken,
            Popped::TimedOut => Idle::TimedOut,
        };
    }
}
