//! A pool's fleet-wide budget ([`PoolConfig::global_limit`], feature `redis`): each task takes
//! a lease of the Redis semaphore on its worker, after admission and before it runs.

use std::time::Instant;

use super::Shared;
use crate::config::PoolConfig;
use crate::error::BulkheadError;
use crate::stats::PoolCounters;

/// What a running task holds of the fleet-wide budget: a lease, or nothing (no global
/// limit, or Redis down and the semaphore failing open).
/// Released when the task has run ([`Held::release`]), or when dropped.
pub(crate) struct Held(
    // Kept for its `Drop`, which gives the lease back.
    #[cfg(feature = "redis")]
    #[allow(dead_code)]
    pub(crate) Option<crate::redis::Lease>,
);

impl Held {
    /// Gives the lease back now (a round trip to Redis), if there is one.
    pub(crate) fn release(self) {}
}

impl Shared {
    /// Puts `config`'s global limit in force for tasks that start from now on.
    pub(crate) fn set_global(&self, config: &PoolConfig) {
        #[cfg(feature = "redis")]
        {
            *self.global.lock() = config.global.as_ref().map(|g| g.0.clone());
            self.global_on.store(
                config.global.is_some(),
                crate::sync::plain::Ordering::Relaxed,
            );
        }
        #[cfg(not(feature = "redis"))]
        let _ = config;
    }

    /// The lease a task about to start needs, waiting never past `deadline`; an error
    /// (naming the pool) if it may not run.
    pub(crate) fn global_lease(&self, deadline: Option<Instant>) -> Result<Held, BulkheadError> {
        #[cfg(feature = "redis")]
        {
            if !self.global_on.load(crate::sync::plain::Ordering::Relaxed) {
                return Ok(Held(None));
            }
            // Cloned out: the wait for the lease must not hold the lock.
            let Some(semaphore) = self.global.lock().clone() else {
                return Ok(Held(None));
            };
            semaphore.lease_for(&self.name, deadline).map(Held)
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = deadline;
            Ok(Held())
        }
    }

    /// A task got no lease and will not run: count it and free its slot.
    pub(crate) fn task_refused_globally(&self) {
        PoolCounters::bump(&self.counters.global_refused);
        self.admission.release();
    }
}
