//! The optional `tracing` integration (feature `tracing`).
//!
//! With the feature on, every admitted call gets a `bulkhead_call` span (field `bulkhead`),
//! created on the caller's thread as a child of the caller's current span and entered on the
//! worker while the task runs, so the task's own events and spans nest under the caller's
//! context across the thread hop. Rejections are logged at `WARN`, at most once a second per
//! bulkhead, with the number of rejections folded into each line: a flood of rejections
//! cannot flood the log. With the feature off everything here compiles to nothing.

#[cfg(feature = "tracing")]
use crate::sync::plain::{AtomicU64, Ordering};
#[cfg(feature = "tracing")]
use std::time::Instant;

/// The span a task runs in.
#[cfg(feature = "tracing")]
pub(crate) type CallSpan = tracing::Span;

/// The span a task runs in (nothing, without the `tracing` feature).
#[cfg(not(feature = "tracing"))]
#[derive(Debug, Default)]
pub(crate) struct CallSpan;

/// A span for one call to `bulkhead`, a child of the caller's current span.
#[inline]
pub(crate) fn call_span(bulkhead: &str) -> CallSpan {
    #[cfg(feature = "tracing")]
    {
        // A subscriber's panic here would unwind the caller after admission, with its slot
        // taken and no task queued: the call goes on without a span instead.
        std::panic::catch_unwind(
            || tracing::info_span!(target: "bulkheads", "bulkhead_call", bulkhead = bulkhead),
        )
        .unwrap_or_else(|_| tracing::Span::none())
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = bulkhead;
        CallSpan
    }
}

/// Runs `f` inside `span`.
#[inline]
pub(crate) fn in_span<R>(span: &CallSpan, f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "tracing")]
    {
        span.in_scope(f)
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = span;
        f()
    }
}

/// Logs rejections at most once a second per bulkhead.
#[derive(Debug)]
#[cfg_attr(not(feature = "tracing"), derive(Default))]
pub(crate) struct RejectionLog {
    #[cfg(feature = "tracing")]
    epoch: Instant,
    /// Nanoseconds since `epoch` before which nothing is logged.
    #[cfg(feature = "tracing")]
    next_ns: AtomicU64,
    /// Rejections since the last line.
    #[cfg(feature = "tracing")]
    pending: AtomicU64,
}

#[cfg(feature = "tracing")]
impl Default for RejectionLog {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next_ns: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        }
    }
}

impl RejectionLog {
    /// One rejection by `bulkhead` of `capacity` calls.
    #[inline]
    pub(crate) fn rejected(&self, bulkhead: &str, capacity: usize) {
        #[cfg(feature = "tracing")]
        {
            const INTERVAL_NS: u64 = 1_000_000_000;
            self.pending.fetch_add(1, Ordering::Relaxed);
            let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let next = self.next_ns.load(Ordering::Relaxed);
            // One thread wins the right to log this second; the others only count.
            if now >= next
                && self
                    .next_ns
                    .compare_exchange(
                        next,
                        now + INTERVAL_NS,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                let rejected = self.pending.swap(0, Ordering::Relaxed);
                tracing::warn!(
                    target: "bulkheads",
                    bulkhead,
                    capacity,
                    rejected,
                    "bulkhead full: calls rejected (at most one line a second)"
                );
            }
        }
        #[cfg(not(feature = "tracing"))]
        {
            let _ = (bulkhead, capacity);
        }
    }
}
