//! When a waiting caller spins before it parks.
//!
//! A spin is a bet that the worker will finish on another core within the budget
//! ([`SPIN_BUDGET`]), sooner than a park and wake-up would cost. It wins big for tiny tasks
//! (the hot round trip) and loses in two cases, where it only burns the CPU the call was
//! waiting for:
//!
//! - **The task takes longer than the budget.** A 1-ms database call cannot finish inside
//!   a 50 µs spin, so every caller paid the full budget for nothing (the overhead example's
//!   "CPU per 1-ms call, 8 callers" row measures it against the naive design). The pool
//!   keeps a running mean of its tasks' run times, and callers do not spin while it is above
//!   the budget.
//! - **Every core is busy.** Then the worker cannot run while the caller spins, and the
//!   spin delays the very thread it waits for. That is seen in what spins achieve: a spin
//!   that ends with the outcome still missing is a lost bet. After `k` lost bets in a row a
//!   caller spins only on one wait in `2^k` (at most one in 64), a probe that finds out when
//!   spinning pays again; one won bet restores spinning on every wait. This is the adaptive
//!   mutex's rule (glibc's `PTHREAD_MUTEX_ADAPTIVE_NP` adjusts its spin count by the same
//!   evidence), applied per pool.
//!
//! The same evidence decides whether an idle *worker* spins for its next task before it
//! sleeps ([`Bets`], used by the queue): that spin wins when callers submit back to back,
//! and loses when the next task comes later than the spin lasts — after an async caller's
//! wake-up through a runtime, or under a trickle. A lost idle spin is not free on a busy
//! host: it takes a CPU from the very thread (a runtime's worker, the caller) that is about
//! to submit the next task.
//!
//! Both are heuristics on relaxed atomics: a lost update costs one wrong guess, never
//! correctness, and the waits themselves never depend on them.

use std::time::Duration;

use crate::sync::SPIN_BUDGET;
use crate::sync::plain::{AtomicU64, Ordering};

/// The run-time mean counts in units of 256 ns, times 8 (three fractional bits for the
/// 1/8 weight): integer arithmetic with no drift to zero for microsecond tasks.
const UNIT_SHIFT: u32 = 8;
/// The weight of a new sample in the mean: 1/8, i.e. about the last 8 tasks.
const WEIGHT_SHIFT: u32 = 3;
/// Lost bets in a row after which spinning stays at its rarest (one wait in 64).
const MAX_STREAK: u64 = 6;
/// The streak lives in the low byte of `misses`; waits since the streak grew, above it.
const STREAK_MASK: u64 = 0xff;
const ONE_WAIT: u64 = 1 << 8;

#[derive(Debug, Default)]
pub(crate) struct SpinPolicy {
    /// 8 × the recent mean run time, in 256-ns units.
    run_mean: AtomicU64,
    /// The callers' spins: how they have been paying lately.
    bets: Bets,
}

/// A record of lost spins: after `k` in a row, spin on one wait in `2^k` (at most one in
/// 64); one win restores spinning on every wait.
#[derive(Debug, Default)]
pub(crate) struct Bets {
    /// Lost spins in a row (low byte) and waits since (the rest).
    misses: AtomicU64,
}

impl Bets {
    /// Whether the next wait should spin.
    #[inline]
    pub(crate) fn should_spin(&self) -> bool {
        let misses = self.misses.load(Ordering::Relaxed);
        let streak = misses & STREAK_MASK;
        if streak == 0 {
            return true;
        }
        // Losing: spin on one wait in 2^streak, to learn when spinning pays again.
        let waits = self.misses.fetch_add(ONE_WAIT, Ordering::Relaxed) >> 8;
        waits % (1 << streak) == 0
    }

    /// A wait spun; `won` if what it waited for came during the spin.
    #[inline]
    pub(crate) fn spun(&self, won: bool) {
        let misses = self.misses.load(Ordering::Relaxed);
        let streak = misses & STREAK_MASK;
        if won {
            // The hot path: nothing to write while bets keep winning.
            if streak != 0 {
                self.misses.store(0, Ordering::Relaxed);
            }
        } else {
            // The next probe comes after 2^streak waits (the count starts at 1).
            let streak = (streak + 1).min(MAX_STREAK);
            self.misses.store(ONE_WAIT | streak, Ordering::Relaxed);
        }
    }
}

impl SpinPolicy {
    /// How long the next wait should spin: the budget, or zero when a spin cannot win.
    #[inline]
    pub(crate) fn budget(&self) -> Duration {
        let mean_units = self.run_mean.load(Ordering::Relaxed) >> WEIGHT_SHIFT;
        if (mean_units << UNIT_SHIFT) > SPIN_BUDGET.as_nanos() as u64 {
            return Duration::ZERO;
        }
        if self.bets.should_spin() {
            SPIN_BUDGET
        } else {
            Duration::ZERO
        }
    }

    /// A wait spun; `won` if the outcome arrived during the spin.
    #[inline]
    pub(crate) fn spun(&self, won: bool) {
        self.bets.spun(won);
    }

    /// A task ran for `run_time`: fold it into the mean. Writes only when the mean changes,
    /// so a pool of steady tiny tasks does not bounce this line between its workers and
    /// the callers reading it.
    #[inline]
    pub(crate) fn observe_run(&self, run_time: Duration) {
        let units = u64::try_from(run_time.as_nanos() >> UNIT_SHIFT).unwrap_or(u64::MAX >> 8);
        let mean = self.run_mean.load(Ordering::Relaxed);
        let next = (mean - (mean >> WEIGHT_SHIFT)).saturating_add(units.min(u64::MAX >> 8));
        if next != mean {
            self.run_mean.store(next, Ordering::Relaxed);
        }
    }

    /// The mean run time it bets on (for tests).
    #[cfg(all(test, not(bulkheads_loom)))]
    fn mean(&self) -> Duration {
        Duration::from_nanos((self.run_mean.load(Ordering::Relaxed) >> WEIGHT_SHIFT) << UNIT_SHIFT)
    }
}

#[cfg(all(test, not(bulkheads_loom)))]
mod tests {
    use super::*;

    #[test]
    fn tiny_tasks_spin_and_long_tasks_do_not() {
        let p = SpinPolicy::default();
        assert_eq!(p.budget(), SPIN_BUDGET, "a new pool bets on a spin");
        for _ in 0..64 {
            p.observe_run(Duration::from_micros(2));
        }
        assert!(p.mean() < Duration::from_micros(3), "{:?}", p.mean());
        assert_eq!(p.budget(), SPIN_BUDGET);
        // A 1-ms dependency: after a few tasks the mean passes the budget.
        for _ in 0..16 {
            p.observe_run(Duration::from_millis(1));
        }
        assert!(p.mean() > SPIN_BUDGET, "{:?}", p.mean());
        assert_eq!(p.budget(), Duration::ZERO, "no spin can win a 1-ms task");
        // It gets fast again: spinning comes back.
        for _ in 0..64 {
            p.observe_run(Duration::from_micros(1));
        }
        assert_eq!(p.budget(), SPIN_BUDGET);
    }

    #[test]
    fn lost_bets_make_spins_rare_and_one_win_restores_them() {
        let p = SpinPolicy::default();
        for _ in 0..10 {
            p.spun(false);
        }
        let spins = (0..640).filter(|_| !p.budget().is_zero()).count();
        assert_eq!(
            spins, 10,
            "one probe in 64 waits after a long losing streak"
        );
        p.spun(true);
        assert!((0..100).all(|_| p.budget() == SPIN_BUDGET));
    }

    #[test]
    fn a_single_lost_bet_probes_again_soon() {
        let p = SpinPolicy::default();
        p.spun(false);
        let spins: Vec<bool> = (0..4).map(|_| !p.budget().is_zero()).collect();
        assert_eq!(spins, [false, true, false, true]);
    }
}
