//! How big should each compartment be: the queueing formulas behind a bulkhead, and
//! recommendations from what the bulkheads observed.
//!
//! # A pool is an M/M/c/K queue
//!
//! A [`ThreadPoolBulkhead`](crate::ThreadPoolBulkhead) with `max_threads` workers and a queue
//! of `queue_capacity` is, in queueing theory's terms, a system with c = `max_threads`
//! servers and room for K = `max_threads + queue_capacity` calls in all (running and
//! queued): a call that arrives when K are in flight is turned away. Its blocking
//! probability, [`MmcK::blocking_probability`], is therefore the fraction of attempts that
//! the pool's `rejected` counter is expected to count. With no queue (`PoolConfig::new(n)`)
//! K = c and the blocking probability is Erlang's loss formula, [`erlang_b`]; with an
//! unbounded queue the chance that a call waits at all is [`erlang_c`].
//! A [`SemaphoreBulkhead`](crate::SemaphoreBulkhead) that does not wait is M/M/c/c as well.
//!
//! # Units
//!
//! Rates and times are plain `f64` in one unit of the caller's choosing: calls per second and
//! seconds, or per hour and hours; the results come back in the same unit. An offered load
//! (arrival rate × mean service time) is in erlangs: the mean number of busy servers it
//! would keep busy with no limit.
//!
//! # Assumptions, and what changes when they fail
//!
//! The M/M/c models assume Poisson arrivals (independent calls, exponentially distributed
//! gaps) and exponentially distributed service times, all servers alike and FIFO.
//!
//! - **Bursty arrivals** (retries in lockstep, batch jobs, a fan-out that calls a dependency
//!   many times per request) queue and block more than the formulas say, because calls come
//!   together while the model spreads them out. Size from the peak rate, not the mean, and
//!   keep headroom.
//! - **Service times less variable than exponential** (a fixed-cost call) wait less than
//!   predicted; **more variable** ones (a long tail) wait more. Erlang B alone is insensitive:
//!   a loss system (no queue) blocks the same for any service-time distribution with that
//!   mean, so [`erlang_b`] holds for a pool with no queue whatever its latency's shape.
//! - **A sick dependency** breaks every steady-state formula: when calls stop returning, the
//!   service rate falls towards zero and the compartment fills however big it is. That is what
//!   a bulkhead is for; sizing only decides how much healthy variation it absorbs.
//!
//! # Bad input
//!
//! Every function checks its arguments: a negative, NaN or infinite rate or time, zero
//! servers, a capacity below the servers or an unstable load where the formula needs a
//! stable one is a [`SizingError`] naming the argument. No function panics, and none returns
//! a NaN or an infinity inside `Ok`.
//!
//! # Examples
//!
//! The seed formula, then what the M/M/c/K model says of the result:
//!
//! ```
//! use bulkheads::sizing::{MmcK, pool_size};
//!
//! // 200 calls/s at peak, p99 latency 80 ms, 50% headroom.
//! let threads = pool_size(200.0, 0.080, 1.5)?;
//! assert_eq!(threads, 24);
//! // With a mean latency of 40 ms (service rate 25/s) and a queue of 5:
//! let pool = MmcK::new(200.0, 25.0, threads, threads + 5)?;
//! assert!(pool.blocking_probability() < 1e-4);
//! # Ok::<(), bulkheads::sizing::SizingError>(())
//! ```

mod erlang;
mod mmck;
mod recommend;
mod shard;

pub use erlang::{erlang_b, erlang_c, servers_for_blocking};
pub use mmck::MmcK;
pub use recommend::{Recommendation, RecommendationOptions, Recommendations, Verdict};
pub use shard::{combinations, shard_overlap};

/// Invalid input to a sizing function: which argument, and why.
///
/// # Examples
///
/// ```
/// use bulkheads::sizing::erlang_c;
///
/// let err = erlang_c(10, 12.0).unwrap_err();
/// assert_eq!(err.argument(), "offered_load");
/// assert!(err.to_string().contains("offered_load"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sizing input: {argument} {reason}")]
#[non_exhaustive]
pub struct SizingError {
    argument: &'static str,
    reason: String,
}

impl SizingError {
    pub(crate) fn new(argument: &'static str, reason: impl Into<String>) -> Self {
        Self {
            argument,
            reason: reason.into(),
        }
    }

    /// The name of the offending argument, as in the function's signature
    /// (`"offered_load"`, `"servers"`, ...).
    pub fn argument(&self) -> &'static str {
        self.argument
    }

    /// Why it was refused, e.g. `"must be finite and non-negative (got NaN)"`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Steps a computation may take before it is refused: the Erlang recursions and the
/// M/M/c/K state sums take one step per server (fewer where the terms vanish first). 2^26
/// steps is well under a second; a load that needs more is tens of millions of busy
/// threads, far beyond any pool.
pub(crate) const MAX_STEPS: usize = 1 << 26;

/// `value` if it is finite and at least zero.
pub(crate) fn non_negative(argument: &'static str, value: f64) -> Result<f64, SizingError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(SizingError::new(
            argument,
            format!("must be finite and non-negative (got {value})"),
        ))
    }
}

/// `value` if it is finite and above zero.
pub(crate) fn positive(argument: &'static str, value: f64) -> Result<f64, SizingError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(SizingError::new(
            argument,
            format!("must be finite and positive (got {value})"),
        ))
    }
}

/// `value` if it is at least one.
pub(crate) fn at_least_one(argument: &'static str, value: usize) -> Result<usize, SizingError> {
    if value == 0 {
        Err(SizingError::new(argument, "must be at least 1 (got 0)"))
    } else {
        Ok(value)
    }
}

/// A result that must be finite, or the error that names the argument that made it grow.
fn finite(argument: &'static str, value: f64) -> Result<f64, SizingError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(SizingError::new(
            argument,
            "is so large that the result overflows an f64",
        ))
    }
}

/// Little's law, L = λW: the mean number of calls in a system is the arrival rate times the
/// mean time each spends in it.
///
/// For a pool, with the arrival rate of admitted calls and their mean time from submission
/// to result (queue wait plus run time), it is the mean number in flight: how many of its
/// `max_threads + queue_capacity` places are taken on average. With the mean run time alone
/// it is the mean number of busy threads.
///
/// # Assumptions
///
/// None about distributions: Little's law holds for any stable system in a steady state
/// (the rate in equals the rate out over the period measured). It fails over periods where
/// the system fills or drains, such as a pool filling up behind a sick dependency.
///
/// # Errors
///
/// `arrival_rate` or `time_in_system` negative, NaN or infinite, or a product that
/// overflows.
///
/// # Examples
///
/// Kleinrock's and every textbook's first example: a store serving 10 customers an hour,
/// each staying half an hour on average, holds 5 customers on average.
///
/// ```
/// use bulkheads::sizing::littles_law;
///
/// assert_eq!(littles_law(10.0, 0.5)?, 5.0);
/// // A pool: 212 calls/s that spend 30 ms each in it keep 6.36 slots busy on average.
/// assert!((littles_law(212.0, 0.030)? - 6.36).abs() < 1e-9);
/// # Ok::<(), bulkheads::sizing::SizingError>(())
/// ```
pub fn littles_law(arrival_rate: f64, time_in_system: f64) -> Result<f64, SizingError> {
    let lambda = non_negative("arrival_rate", arrival_rate)?;
    let w = non_negative("time_in_system", time_in_system)?;
    finite("arrival_rate", lambda * w)
}

/// The seed formula: threads = peak rate × p99 latency × headroom, rounded up (and at least
/// one, since a pool needs a thread).
///
/// By Little's law, peak rate × latency is the number of calls in flight at the peak when
/// every call takes that latency; taking the p99 rather than the mean covers the slow calls
/// that hold threads longest, and the headroom (1.5 is a common choice) covers the bursts
/// and growth that the peak measured did not show. A product within a billionth of an
/// integer counts as that integer, so floating-point noise (100 × 0.07 =
/// 7.000000000000001) does not add a thread.
///
/// # Assumptions
///
/// The rate is the peak, not the mean, in the same time unit as the latency. The formula
/// assumes nothing about distributions, which is both its strength and its limit: it does
/// not say how often a pool of this size still fills. [`MmcK`] answers that, under Poisson
/// arrivals and exponential service; check the result with it.
///
/// # Errors
///
/// Any argument negative, NaN or infinite; `headroom` zero; or a result too large for a
/// `usize`.
///
/// # Examples
///
/// 200 calls/s at peak with a p99 of 80 ms and 50% headroom: 200 × 0.08 × 1.5 = 24 threads.
///
/// ```
/// use bulkheads::sizing::pool_size;
///
/// assert_eq!(pool_size(200.0, 0.080, 1.5)?, 24);
/// assert_eq!(pool_size(212.0, 0.080, 1.5)?, 26); // 25.44, rounded up
/// assert_eq!(pool_size(0.0, 0.080, 1.5)?, 1); // idle, but a pool needs a thread
/// assert_eq!(pool_size(200.0, -1.0, 1.5).unwrap_err().argument(), "p99_latency");
/// # Ok::<(), bulkheads::sizing::SizingError>(())
/// ```
pub fn pool_size(peak_rate: f64, p99_latency: f64, headroom: f64) -> Result<usize, SizingError> {
    let rate = non_negative("peak_rate", peak_rate)?;
    let latency = non_negative("p99_latency", p99_latency)?;
    let headroom = positive("headroom", headroom)?;
    let threads = finite("peak_rate", rate * latency * headroom)?;
    let rounded = round_up(threads);
    // 2^64 as f64 is the first value that does not fit a u64; usize is at most that wide.
    if rounded >= usize::MAX as f64 {
        return Err(SizingError::new(
            "peak_rate",
            format!("gives {threads:.3e} threads, more than a usize holds"),
        ));
    }
    Ok((rounded as usize).max(1))
}

/// `x` rounded up, with values within a relative 1e-9 above an integer counted as it.
pub(crate) fn round_up(x: f64) -> f64 {
    let down = x.floor();
    if x - down <= x.abs() * 1e-9 {
        down
    } else {
        x.ceil()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_up_forgives_floating_point_noise_only() {
        assert_eq!(round_up(100.0 * 0.07), 7.0);
        assert_eq!(round_up(7.0), 7.0);
        assert_eq!(round_up(7.001), 8.0);
        assert_eq!(round_up(0.0), 0.0);
        assert_eq!(round_up(0.3), 1.0);
    }

    #[test]
    fn pool_size_refuses_what_it_cannot_size() {
        assert_eq!(
            pool_size(f64::NAN, 0.1, 1.5).unwrap_err().argument(),
            "peak_rate"
        );
        assert_eq!(
            pool_size(1.0, f64::INFINITY, 1.5).unwrap_err().argument(),
            "p99_latency"
        );
        assert_eq!(pool_size(1.0, 0.1, 0.0).unwrap_err().argument(), "headroom");
        assert_eq!(
            pool_size(1e300, 1e300, 1.0).unwrap_err().argument(),
            "peak_rate"
        );
        assert_eq!(
            pool_size(1e30, 1.0, 1.0).unwrap_err().argument(),
            "peak_rate"
        );
    }

    #[test]
    fn littles_law_refuses_overflow() {
        assert_eq!(
            littles_law(1e300, 1e300).unwrap_err().argument(),
            "arrival_rate"
        );
        assert_eq!(
            littles_law(-1.0, 1.0).unwrap_err().argument(),
            "arrival_rate"
        );
        assert_eq!(
            littles_law(1.0, f64::NAN).unwrap_err().argument(),
            "time_in_system"
        );
    }
}
