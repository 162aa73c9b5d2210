//! An adaptive pool: the limit its [`LimitAlgorithm`](crate::limit::LimitAlgorithm) sets acts
//! as `max_threads` does after a resize (see `README.md`, "Resizing"), so every promise of
//! resizing holds for each change of the limit, and the loom models of resizing cover it.

use std::time::{Duration, Instant};

use super::Shared;
use crate::config::PoolConfig;
use crate::event::EventKind;
use crate::sync::plain::Ordering;

/// The limits a configuration puts in force: `(max_threads, core_threads, capacity)`, with
/// an adaptive configuration's limit in place of `max_threads`.
pub(crate) fn limits(config: &PoolConfig) -> (usize, usize, usize) {
    let max = config
        .adaptive
        .as_ref()
        .map_or(config.max_threads, |a| a.limit(config.max_threads));
    (
        max,
        config.core_threads_value().min(max),
        max.saturating_add(config.queue_capacity),
    )
}

impl Shared {
    /// Puts `config`'s limits in force (under the config's lock, which the caller holds and
    /// which orders every change), starting what queued tasks now lack. Returns the limit
    /// before and after.
    pub(crate) fn apply_limits(&self, config: &PoolConfig) -> (usize, usize) {
        let before = self.admission.max_threads();
        let (max, core, capacity) = limits(config);
        self.admission.set_limits(max, core, capacity);
        self.adaptive_on
            .store(config.adaptive.is_some(), Ordering::Relaxed);
        if let Some(this) = self.this.upgrade() {
            this.grow();
        }
        (before, max)
    }

    /// After a lowered limit: wake the idle workers above it, so they leave.
    pub(crate) fn wake_surplus(&self) {
        let s = self.admission.load();
        let max = self.admission.max_threads();
        if s.live() > max {
            self.queue.wake(s.live() - max);
        }
    }

    /// A task that started at `started` ran `run_time`: feed the adaptive algorithm, if
    /// there is one, and put a changed limit in force.
    pub(crate) fn adapt(
        &self,
        started: Instant,
        run_time: Duration,
        deadline: Option<Instant>,
        overloaded: bool,
    ) {
        // Fixed pools pay this one relaxed load per task.
        if !self.adaptive_on.load(Ordering::Relaxed) {
            return;
        }
        // The tasks running now, this one included (its slot is not freed yet).
        let (running, _) = self.admission.gauges(self.admission.load());
        let sample = crate::limit::sample(started, run_time, running, deadline, overloaded);
        // The algorithm (user code) runs outside the config's lock: a listener or an
        // algorithm that reads `pool.stats()` must not deadlock.
        let (adaptive, ceiling) = {
            let config = self.config.lock();
            match &config.adaptive {
                Some(adaptive) => (adaptive.clone(), config.max_threads),
                None => return,
            }
        };
        if adaptive.update(sample, ceiling) == self.admission.max_threads() {
            return;
        }
        let (from, to) = {
            let config = self.config.lock();
            // A `reconfigure` in between replaced the algorithm (or dropped it): its limits
            // are in force, not this one's.
            if config.adaptive.as_ref() != Some(&adaptive) {
                return;
            }
            let (from, to) = self.apply_limits(&config);
            if from == to {
                return;
            }
            (from, to)
        };
        if to < from {
            self.wake_surplus();
        }
        // With no lock held: listeners are user code.
        self.listeners
            .emit(&self.name, EventKind::LimitChanged { from, to });
    }
}
