//! The one place that names atomics and locks.
//!
//! Everything else imports its synchronisation primitives from here, so a model checker can
//! swap them for its own instrumented versions under `cfg(loom)` without touching the
//! protocol code (the approach of tokio's `loom` shim and crossbeam-utils' `primitive`).
//!
//! The locks are `parking_lot`'s: no poisoning (a panicking task never poisons the pool's
//! books, because no lock is held while user code runs) and a one-CAS uncontended path.

pub(crate) use parking_lot::{Condvar, Mutex, RwLock};
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
