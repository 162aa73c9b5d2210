//! The one place that names atomics and locks.
//!
//! Everything else imports its synchronisation primitives from here, so a model checker can
//! swap them for its own instrumented versions under `cfg(loom)` without touching the
//! protocol code (the approach of tokio's `loom` shim and crossbeam-utils' `primitive`).
//!
//! The locks are `parking_lot`'s: no poisoning (a panicking task never poisons the pool's
//! books, because no lock is held while user code runs) and a one-CAS uncontended path.

pub(crate) use parking_lot::{Condvar, Mutex};

/// A reader-writer lock whose readers touch only their own shard: the manager's registry is
/// read on every `manager.pool(name)` from every thread and written once per new name, so
/// an ordinary `RwLock`'s shared reader count would be the hot path's one contended line.
pub(crate) struct RegistryLock<T>(crossbeam_utils::sync::ShardedLock<T>);

impl<T> RegistryLock<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(crossbeam_utils::sync::ShardedLock::new(value))
    }

    /// Shared access. The registry holds no invariant a panicking writer could break
    /// half-way (an insert either happened or not), so poisoning is ignored.
    pub(crate) fn read(&self) -> crossbeam_utils::sync::ShardedLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Exclusive access; poisoning ignored as for [`read`](RegistryLock::read).
    pub(crate) fn write(&self) -> crossbeam_utils::sync::ShardedLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
