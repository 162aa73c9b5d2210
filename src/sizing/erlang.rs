//! Erlang's formulas: the loss formula (B), the delay formula (C), and the fewest servers
//! for a target loss.

use super::{MAX_STEPS, SizingError, at_least_one, non_negative};

/// Steps Erlang B's recursion takes at most for an offered load `a`: past 2a servers each
/// step at least halves B, and about 1,075 halvings take any `f64` in [0, 1] to zero, where
/// the recursion stops.
fn steps_for_load(a: f64) -> f64 {
    2.0 * a.ceil() + 1_100.0
}

/// Refuses a computation that would take more than [`MAX_STEPS`] steps.
fn check_steps(servers: usize, offered_load: f64) -> Result<(), SizingError> {
    let steps = (servers as f64).min(steps_for_load(offered_load));
    if steps > MAX_STEPS as f64 {
        return Err(SizingError::new(
            "servers",
            format!(
                "{servers} at an offered load of {offered_load} erlangs take more than \
                 {MAX_STEPS} steps to compute"
            ),
        ));
    }
    Ok(())
}

/// B(c, A) by the recursion B(0) = 1, B(k) = A·B(k-1) / (k + A·B(k-1)), stopping once B
/// reaches zero (it stays there). Every intermediate value lies in [0, 1]: no factorial, no
/// power, nothing to overflow.
fn recursion(servers: usize, a: f64) -> f64 {
    let mut b = 1.0_f64;
    for k in 1..=servers {
        let ab = a * b;
        b = ab / (k as f64 + ab);
        if b == 0.0 {
            break;
        }
    }
    b
}

/// Erlang's loss formula: the probability that a call finds all `servers` busy and is
/// turned away, when there is no queue (M/M/c/c).
///
/// B(c, A) = (A^c / c!) / Σ_{k=0..c} A^k / k!, computed by the stable recursion
/// B(0) = 1, B(k) = A·B(k−1) / (k + A·B(k−1)), which never forms a factorial or a power and
/// so works for thousands of servers and loads. `offered_load` A is the arrival rate times
/// the mean service time, in erlangs.
///
/// For a pool with no queue (`PoolConfig::new(n)`), it is the expected fraction of calls
/// that `rejected` counts.
///
/// # Assumptions
///
/// Poisson arrivals. Uniquely among these formulas, B does not depend on the service-time
/// distribution beyond its mean (the loss system is "insensitive"), so a long-tailed
/// latency changes nothing here. Bursty arrivals block more than B says; smoother ones (a
/// fixed number of steady clients) block less.
///
/// # Errors
///
/// `servers` zero; `offered_load` negative, NaN or infinite; or both so large (tens of
/// millions) that the recursion would take more than 2^26 steps.
///
/// # Examples
///
/// The classic Erlang-B table entry: 10 trunks offered 5 erlangs lose 1.84% of calls;
/// and an Erlang-B calculator's "15 lines carry 8.108 erlangs at 1% blocking".
///
/// ```
/// use bulkheads::sizing::erlang_b;
///
/// assert!((erlang_b(10, 5.0)? - 0.018384).abs() < 1e-6);
/// assert!((erlang_b(15, 8.108)? - 0.01).abs() < 1e-4);
/// // Thousands of servers are no harder than ten.
/// let b = erlang_b(5_000, 4_900.0)?;
/// assert!(b > 0.0 && b < 0.01);
/// # Ok::<(), bulkheads::sizing::SizingError>(())
/// ```
pub fn erlang_b(servers: usize, offered_load: f64) -> Result<f64, SizingError> {
    let c = at_least_one("servers", servers)?;
    let a = non_negative("offered_load", offered_load)?;
    check_steps(c, a)?;
    Ok(recursion(c, a))
}

/// Erlang's delay formula: the probability that a call has to wait, with `servers` servers
/// and an unbounded queue (M/M/c).
///
/// C(c, A) = c·B(c, A) / (c − A·(1 − B(c, A))), from [`erlang_b`]'s stable value; the
/// queue is stable only while the offered load A is below c. The mean wait in queue is then
/// C / (cμ − λ), and the mean number waiting C·A / (c − A).
///
/// For a pool, an unbounded queue is `queue_capacity(usize::MAX)`: nothing is rejected,
/// and C is the fraction of calls that wait for a thread. A bounded queue waits less and
/// rejects instead; see [`MmcK`](super::MmcK).
///
/// # Assumptions
///
/// Poisson arrivals and exponential service. Unlike B, C depends on the service-time
/// distribution: less variable service than exponential waits less, more variable waits
/// more (roughly in proportion to (1 + cv²)/2 for the mean wait, cv being the coefficient of
/// variation).
///
/// # Errors
///
/// `servers` zero; `offered_load` negative, NaN, infinite, or at or above `servers` (the
/// queue grows without bound, and no steady state exists); or a computation too large (see
/// [`erlang_b`]).
///
/// # Examples
///
/// A help desk with 2 agents, calls arriving 2 an hour and each taking 20 minutes (A = 2/3
/// erlang): the chance of waiting is 1/6, the textbook M/M/2 value (P0 = 1/2 gives
/// P(wait) = (A²/2!)·(1/(1 − ρ))·P0 = 1/6).
///
/// ```
/// use bulkheads::sizing::erlang_c;
///
/// assert!((erlang_c(2, 2.0 / 3.0)? - 1.0 / 6.0).abs() < 1e-12);
/// assert_eq!(erlang_c(2, 2.0).unwrap_err().argument(), "offered_load");
/// # Ok::<(), bulkheads::sizing::SizingError>(())
/// ```
pub fn erlang_c(servers: usize, offered_load: f64) -> Result<f64, SizingError> {
    let c = at_least_one("servers", servers)?;
    let a = non_negative("offered_load", offered_load)?;
    let cf = c as f64;
    if a >= cf {
        return Err(SizingError::new(
            "offered_load",
            format!(
                "must be below servers ({c}) for the queue to be stable (got {a}); \
                 bound the queue and use MmcK instead"
            ),
        ));
    }
    check_steps(c, a)?;
    let b = recursion(c, a);
    // c·B / ((c − A) + A·B): the same as B / (1 − ρ(1 − B)) with the cancellation of 1 − ρ
    // near ρ = 1 done exactly, in c − A.
    let p = cf * b / ((cf - a) + a * b);
    Ok(p.clamp(0.0, 1.0))
}

/// The fewest servers (at least one) whose Erlang-B blocking at `offered_load` is at most
/// `max_blocking`: how many threads a pool with no queue needs so that at most that
/// fraction of calls is rejected.
///
/// It walks the recursion of [`erlang_b`] up from one server and stops at the first that
/// meets the target, so it costs one step per server.
///
/// # Assumptions
///
/// Those of [`erlang_b`]: Poisson arrivals, any service-time distribution with the mean
/// behind `offered_load`. A queue lowers the blocking further; with one, check the size with
/// [`MmcK`](super::MmcK).
///
/// # Errors
///
/// `offered_load` negative, NaN, infinite or too large to compute (above about 33 million
/// erlangs); `max_blocking` NaN or outside (0, 1].
///
/// # Examples
///
/// Erlang-B tables: 8.108 erlangs need 15 lines for 1% blocking; 5 erlangs need 11 for 1%
/// (B(10, 5) = 1.84% is too much, B(11, 5) = 0.83% is enough).
///
/// ```
/// use bulkheads::sizing::{erlang_b, servers_for_blocking};
///
/// assert_eq!(servers_for_blocking(8.1, 0.01)?, 15);
/// assert_eq!(servers_for_blocking(5.0, 0.01)?, 11);
/// assert!(erlang_b(10, 5.0)? > 0.01 && erlang_b(11, 5.0)? <= 0.01);
/// # Ok::<(), bulkheads::sizing::SizingError>(())
/// ```
pub fn servers_for_blocking(offered_load: f64, max_blocking: f64) -> Result<usize, SizingError> {
    let a = non_negative("offered_load", offered_load)?;
    if !(max_blocking > 0.0 && max_blocking <= 1.0) {
        return Err(SizingError::new(
            "max_blocking",
            format!("must be a probability above 0 and at most 1 (got {max_blocking})"),
        ));
    }
    if steps_for_load(a) > MAX_STEPS as f64 {
        return Err(SizingError::new(
            "offered_load",
            format!("{a} erlangs need more than {MAX_STEPS} steps to compute"),
        ));
    }
    let mut b = 1.0_f64;
    let mut k = 0_usize;
    loop {
        k += 1;
        let ab = a * b;
        b = ab / (k as f64 + ab);
        // Terminates: B reaches zero within `steps_for_load(a)` steps (see there), and zero
        // meets any target above zero.
        if b <= max_blocking {
            return Ok(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recursion_matches_the_factorial_formula_where_that_one_works() {
        for c in 1..=30_usize {
            for a in [0.1, 1.0, 3.5, 10.0, 25.0] {
                let mut term = 1.0_f64;
                let mut sum = 1.0_f64;
                for k in 1..=c {
                    term *= a / k as f64;
                    sum += term;
                }
                let direct = term / sum;
                let b = erlang_b(c, a).unwrap();
                assert!(
                    (b - direct).abs() <= 1e-12 * direct.max(1e-300),
                    "c={c} a={a}"
                );
            }
        }
    }

    #[test]
    fn zero_load_blocks_nothing_and_needs_one_server() {
        assert_eq!(erlang_b(1, 0.0).unwrap(), 0.0);
        assert_eq!(erlang_c(3, 0.0).unwrap(), 0.0);
        assert_eq!(servers_for_blocking(0.0, 0.01).unwrap(), 1);
    }

    #[test]
    fn enormous_inputs_are_refused_not_hung() {
        let err = erlang_b(usize::MAX, 1e300).unwrap_err();
        assert_eq!(err.argument(), "servers");
        // But many servers at a small load are cheap: the recursion stops at zero.
        assert_eq!(erlang_b(usize::MAX, 10.0).unwrap(), 0.0);
        assert_eq!(erlang_b(3, 1e300).unwrap(), 1.0);
        assert_eq!(
            servers_for_blocking(1e12, 0.5).unwrap_err().argument(),
            "offered_load"
        );
    }

    #[test]
    fn erlang_c_needs_a_stable_load() {
        for (c, a) in [(1, 1.0), (5, 5.0), (5, 7.5)] {
            assert_eq!(erlang_c(c, a).unwrap_err().argument(), "offered_load");
        }
        assert_eq!(erlang_c(0, 0.5).unwrap_err().argument(), "servers");
        // Just below c the probability of waiting tends to 1, and stays a probability.
        let p = erlang_c(10, 10.0 - 1e-9).unwrap();
        assert!(p > 0.999_999 && p <= 1.0, "{p}");
    }
}
