//! A key's gate: the count of its calls in flight and its idle time, in two words, and the
//! protocol that lets an evictor close an idle key without ever closing a busy one.
//!
//! A caller raises the count with a compare-and-swap that fails once the key is closed, so
//! a caller that reaches a key through a stale reference (this thread's cache, a lookup
//! that raced eviction) learns that it must look again; the evictor closes a key with a
//! compare-and-swap from exactly "nothing in flight". The two are serialised by the count's
//! single modification order, so no lock is needed between them: callers raise the count
//! under the registry's read lock or none at all.

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The count's top bit: the key is closed (evicted); no call may enter again.
const CLOSED: usize = 1 << (usize::BITS - 1);

pub(super) struct Gate {
    /// Calls in flight (and waiting for a permit), with [`CLOSED`] once evicted.
    state: AtomicUsize,
    /// When the last call left, in the registry's nanoseconds.
    last_used: AtomicU64,
}

impl Gate {
    /// An open gate with one call in flight (the one that created the key).
    pub(super) fn entered(now: u64) -> Self {
        Self {
            state: AtomicUsize::new(1),
            last_used: AtomicU64::new(now),
        }
    }

    /// Counts one more call in flight; false if the key is closed (the caller must look the
    /// key up again).
    #[inline]
    pub(super) fn enter(&self) -> bool {
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & CLOSED != 0 {
                return false;
            }
            // Relaxed suffices: the evictor's compare-and-swap from 0 fails on any count
            // this one raised, whatever it has seen of the rest.
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => s = now,
            }
        }
    }

    /// Books the end of a call counted by [`enter`](Self::enter), at `now`.
    #[inline]
    pub(super) fn exit(&self, now: u64) {
        // A load and a store, not a read-modify-write: on the coarse clock most calls of a
        // tick store nothing. Two callers leaving at once may move it back by as long as
        // the later one took between its clock reading and this line.
        if now > self.last_used.load(Ordering::Relaxed) {
            self.last_used.store(now, Ordering::Relaxed);
        }
        // Release: whoever sees the count fall sees the time above and everything the call
        // did before (its semaphore's counters).
        self.state.fetch_sub(1, Ordering::Release);
    }

    /// Closes the gate if nothing is in flight and the last call left at least `ttl` before
    /// `now`; true if it did (the key is evicted and will never be entered again).
    pub(super) fn try_close(&self, now: u64, ttl: u64) -> bool {
        if now.saturating_sub(self.last_used.load(Ordering::Relaxed)) < ttl {
            return false;
        }
        // Acquire: the count's 0 comes with the last leaver's time and counters.
        if self
            .state
            .compare_exchange(0, CLOSED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // The time read above may predate a call that entered and left since; now that the
        // count is ours, read it again and reopen if the key was used after all. A caller
        // that found the gate closed in between looks again, and the registry's write lock
        // (held by whoever closes) makes it wait until this is settled.
        if now.saturating_sub(self.last_used.load(Ordering::Relaxed)) < ttl {
            self.state.store(0, Ordering::Release);
            return false;
        }
        true
    }
}

#[cfg(all(test, bulkheads_loom))]
mod loom_models {
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    /// A caller enters and leaves (at time 8) while an evictor at time 10 with a ttl of 5
    /// tries to close the key (last used at 0). Whatever the interleaving, exactly one of
    /// the two wins: the caller got in, or the key was closed — never a close while the
    /// caller is in, nor after it left at 8 (2 < 5: not idle), nor a refusal of the caller
    /// by a gate that then stays open.
    #[test]
    fn loom_keyed_eviction_races_a_call() {
        loom::model(|| {
            let gate = Arc::new(Gate::entered(0));
            gate.exit(0); // created at 0 and left: idle since 0
            let caller = {
                let gate = Arc::clone(&gate);
                thread::spawn(move || {
                    let entered = gate.enter();
                    if entered {
                        gate.exit(8);
                    }
                    entered
                })
            };
            let closed = gate.try_close(10, 5);
            let entered = caller.join().unwrap();
            assert!(closed != entered, "closed {closed}, entered {entered}");
            if closed {
                assert!(!gate.enter(), "a closed key let a call in");
            } else {
                assert_eq!(
                    gate.state.load(Ordering::Acquire),
                    0,
                    "open, nothing in flight"
                );
            }
        });
    }

    /// Two callers and an evictor: a closed key never had a call in flight when it closed,
    /// and a key whose callers got in stays open.
    #[test]
    fn loom_keyed_eviction_races_two_calls() {
        loom::model(|| {
            let gate = Arc::new(Gate::entered(0));
            gate.exit(0);
            let callers: Vec<_> = [6, 7]
                .into_iter()
                .map(|at| {
                    let gate = Arc::clone(&gate);
                    thread::spawn(move || {
                        let entered = gate.enter();
                        if entered {
                            gate.exit(at);
                        }
                        entered
                    })
                })
                .collect();
            let closed = gate.try_close(10, 5);
            let entered: Vec<bool> = callers.into_iter().map(|h| h.join().unwrap()).collect();
            if closed {
                assert_eq!(entered, [false, false], "closed over a call");
            } else {
                assert!(entered.iter().any(|&e| e), "refused, yet left open");
            }
        });
    }
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_busy_gate_never_closes_and_an_idle_one_closes_for_good() {
        let gate = Gate::entered(0);
        assert!(!gate.try_close(100, 10), "closed with a call in flight");
        gate.exit(50);
        assert!(!gate.try_close(55, 10), "closed before its ttl");
        assert!(gate.try_close(60, 10));
        assert!(!gate.enter());
        assert!(!gate.try_close(100, 10), "closed twice");
    }

    #[test]
    fn a_late_leaver_with_an_earlier_reading_keeps_the_later_time() {
        let gate = Gate::entered(0);
        assert!(gate.enter());
        gate.exit(40);
        gate.exit(30); // a caller that read the clock earlier leaves later
        assert!(
            !gate.try_close(45, 10),
            "idle time measured from the earlier leaver"
        );
        assert!(gate.try_close(50, 10));
    }
}
