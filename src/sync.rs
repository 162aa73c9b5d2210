//! The one place that names atomics, locks and thread parking.
//!
//! Everything else imports its synchronisation primitives from here, so the model checker
//! swaps them for its own instrumented versions under `cfg(bulkheads_loom)` without touching the
//! protocol code (the approach of tokio's `loom` shim and crossbeam-utils' `primitive`).
//! The cfg is crate-specific rather than the customary `cfg(loom)`: a user who runs their
//! own loom tests with `--cfg loom` must not have this crate (or tokio, which breaks under
//! that flag as a dependency) switch to loom's primitives behind their back.
//!
//! Two families:
//! - the protocol primitives (the root of this module): the admission word, the task state
//!   byte, the result slot's lock and condition variable, the semaphore's word, queue and
//!   parking. These are what loom models.
//! - [`plain`]: statistics counters and bookkeeping locks that carry no protocol state
//!   (thread handles, the registry, panic payloads). They stay the real thing under loom,
//!   which keeps the models' state space to what matters.
//!
//! The locks are `parking_lot`'s: no poisoning (no lock is held while user code runs, so a
//! panicking task cannot poison the books) and a one-CAS uncontended path.

pub(crate) use std::sync::Arc;

#[cfg(not(bulkheads_loom))]
pub(crate) use imp::*;

#[cfg(bulkheads_loom)]
pub(crate) use loom_imp::*;

/// The longest a waiter spins before it parks.
///
/// Waking a parked thread costs tens of microseconds on a virtual machine (the idle vCPU has
/// to be scheduled again), more than a tiny task takes. A waiter that parks after a few
/// microseconds therefore makes its partner park too, and the pair falls into a slow mode
/// where every hand-off pays two wake-ups. Spinning past one wake-up latency keeps the hot
/// path out of that mode; the pool spins only when the bet can win (`pool/spin.rs`).
pub(crate) const SPIN_BUDGET: std::time::Duration = std::time::Duration::from_micros(50);

#[cfg(not(bulkheads_loom))]
mod imp {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    pub(crate) use crossbeam_utils::Backoff;
    pub(crate) use parking_lot::{Condvar, Mutex};
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
    };

    /// A bounded spin before parking: crossbeam's backoff first, then yields until the
    /// budget or the deadline is spent. On a single CPU it does not spin at all: the thread
    /// it waits for cannot run while it spins. Whether to spin at all is the pool's call
    /// (`pool/spin.rs`).
    #[derive(Debug)]
    pub(crate) struct Spin {
        backoff: Backoff,
        until: Instant,
    }

    impl Spin {
        pub(crate) fn new(deadline: Option<Instant>, budget: Duration) -> Self {
            let now = Instant::now();
            let mut until = if multicore() { now + budget } else { now };
            if let Some(deadline) = deadline {
                until = until.min(deadline);
            }
            Self {
                backoff: Backoff::new(),
                until,
            }
        }

        /// Spins one more turn; false once the budget (or the deadline) is spent.
        pub(crate) fn turn(&mut self) -> bool {
            if self.backoff.is_completed() && Instant::now() >= self.until {
                return false;
            }
            self.backoff.snooze();
            true
        }
    }

    fn multicore() -> bool {
        static MULTICORE: OnceLock<bool> = OnceLock::new();
        *MULTICORE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
    }

    pub(crate) mod thread {
        pub(crate) use std::thread::{Thread, current, park, park_timeout};
    }
}

#[cfg(bulkheads_loom)]
mod loom_imp {
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering, fence,
    };

    /// crossbeam's `Backoff`, spent at once: under loom a spin is a speed measure, not part
    /// of the protocol (see [`Spin`]).
    #[derive(Debug, Default)]
    pub(crate) struct Backoff;

    impl Backoff {
        pub(crate) fn new() -> Self {
            Self
        }
        pub(crate) fn is_completed(&self) -> bool {
            true
        }
        pub(crate) fn snooze(&self) {}
    }

    /// Under loom, waiting strategies must not spin: every spin is a scheduling point, and
    /// the spin is a speed measure, not part of the protocol. The spin is spent at once.
    #[derive(Debug, Default)]
    pub(crate) struct Spin;

    impl Spin {
        pub(crate) fn new(_deadline: Option<Instant>, _budget: std::time::Duration) -> Self {
            Self
        }
        pub(crate) fn turn(&mut self) -> bool {
            false
        }
    }

    /// parking_lot's `Mutex` API over loom's.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of [`Mutex`]; an `Option` so that [`Condvar`] can move it in and out.
    #[derive(Debug)]
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(|e| e.into_inner())))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    /// The result of [`Condvar::wait_until`].
    #[derive(Debug)]
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    /// parking_lot's `Condvar` API over loom's.
    ///
    /// Loom does not model time. A wait whose deadline has already passed times out at once
    /// (that is how the models drive the timeout paths: with a deadline in the past); any
    /// other wait is a plain wait.
    #[derive(Debug)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(inner).unwrap_or_else(|e| e.into_inner()));
        }

        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            deadline: Instant,
        ) -> WaitTimeoutResult {
            if Instant::now() >= deadline {
                return WaitTimeoutResult(true);
            }
            self.wait(guard);
            WaitTimeoutResult(false)
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    pub(crate) mod thread {
        pub(crate) use loom::thread::{Thread, current, park};

        /// Loom does not model time: a timed park is a yield, after which the caller looks
        /// at its deadline (already past in the models) and gives up.
        pub(crate) fn park_timeout(_: std::time::Duration) {
            loom::thread::yield_now();
        }
    }
}

/// Counters and bookkeeping locks outside the protocol; never modelled.
pub(crate) mod plain {
    pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    /// A reader-writer lock whose readers touch only their own shard: the manager's registry
    /// is read on every `manager.pool(name)` from every thread and written once per new
    /// name, so an ordinary `RwLock`'s shared reader count would be the hot path's one
    /// contended line.
    pub(crate) struct RegistryLock<T>(crossbeam_utils::sync::ShardedLock<T>);

    impl<T> RegistryLock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(crossbeam_utils::sync::ShardedLock::new(value))
        }

        /// Shared access. The registry holds no invariant a panicking writer could break
        /// half-way (an insert either happened or not), so poisoning is ignored.
        pub(crate) fn read(&self) -> crossbeam_utils::sync::ShardedLockReadGuard<'_, T> {
            self.0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// Exclusive access; poisoning ignored as for [`read`](RegistryLock::read).
        pub(crate) fn write(&self) -> crossbeam_utils::sync::ShardedLockWriteGuard<'_, T> {
            self.0
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}
