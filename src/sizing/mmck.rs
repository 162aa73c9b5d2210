//! [`MmcK`]: the M/M/c/K queue, the model of a pool with `c = max_threads` workers and
//! room for `K = max_threads + queue_capacity` calls.
//!
//! The state probabilities are p_n ∝ w_n with w_n = A^n / n! for n ≤ c and
//! w_n = w_c·ρ^(n−c) for c < n ≤ K (A = λ/μ, ρ = A/c). Every sum is kept as a logarithm: the
//! head (n ≤ c) by a running log-sum-exp, one step per server, and the tail (n > c), a
//! geometric series, in closed form — so K may be `usize::MAX`, ρ may be far above one,
//! and nothing overflows or loses the small terms that blocking is made of. ρ = 1 takes the
//! series' limits (T = K − c, mean (K − c + 1)/2) exactly, not a 0/0.

use super::{MAX_STEPS, SizingError, at_least_one, non_negative, positive};

/// Head terms further than this below the largest (in natural log) are dropped once past
/// the mode: e^-745 is below the smallest `f64`, and the margin covers the tail's and the
/// server count's factors (at most e^45 each) that multiply them.
const NEGLIGIBLE: f64 = 900.0;

/// A running log(Σ e^x): the sum is kept relative to its largest term.
#[derive(Clone, Copy)]
struct LogSum {
    max: f64,
    sum: f64,
}

impl LogSum {
    const EMPTY: Self = Self {
        max: f64::NEG_INFINITY,
        sum: 0.0,
    };

    fn add(&mut self, x: f64) {
        if x == f64::NEG_INFINITY {
            return;
        }
        if x > self.max {
            self.sum = self.sum * (self.max - x).exp() + 1.0;
            self.max = x;
        } else {
            self.sum += (x - self.max).exp();
        }
    }

    fn ln(self) -> f64 {
        if self.sum == 0.0 {
            f64::NEG_INFINITY
        } else {
            self.max + self.sum.ln()
        }
    }
}

/// ln(e^x − 1) for x > 0, without overflow for large x.
fn ln_expm1(x: f64) -> f64 {
    if x > 30.0 {
        x + (-(-x).exp()).ln_1p()
    } else {
        x.exp_m1().ln()
    }
}

/// ln Σ e^x over `xs`.
fn ln_sum_exp(xs: &[f64]) -> f64 {
    let mut sum = LogSum::EMPTY;
    for &x in xs {
        sum.add(x);
    }
    sum.ln()
}

/// The tail n = c+1..=K relative to w_c, for m = K − c ≥ 1 and x = −ln ρ.
///
/// Returns `(offset, ln_rel, mean)`: ln Σ_{j=1..m} ρ^j = offset + ln_rel, where `offset` is
/// ln ρ^m = m·ln ρ when ρ > 1 (the tail's largest term, which may be ~10^20 in log for
/// K = `usize::MAX`) and 0 otherwise, so that `ln_rel` keeps its digits; and the mean of j
/// under weights ρ^j (the mean queue length, given a queue).
fn tail(m: f64, x: f64) -> (f64, f64, f64) {
    if x == 0.0 {
        return (0.0, m.ln(), (m + 1.0) / 2.0);
    }
    let (offset, ln_rel) = if x > 0.0 {
        // ρ < 1: Σ ρ^j = (1 − ρ^m) / (e^x − 1).
        (0.0, (-(-m * x).exp_m1()).ln() - ln_expm1(x))
    } else {
        // ρ > 1, y = ln ρ: Σ ρ^j = ρ^m · ρ (1 − ρ^−m) / (ρ − 1).
        let y = -x;
        (m * y, y + (-(-m * y).exp()).ln_1p() - ln_expm1(y))
    };
    // Mean of a geometric distribution truncated to 1..=m: 1 + f(x) − m·f(mx) with
    // f(z) = 1 / (e^z − 1). Near ρ = 1 the two terms cancel; there the series
    // (m + 1)/2 − (m² − 1)x/12, whose next term is O(m⁴x³), is exact to rounding.
    let mean = if (m * x).abs() < 1e-4 {
        (m + 1.0) / 2.0 - (m * m - 1.0) * x / 12.0
    } else {
        let f = |z: f64| 1.0 / z.exp_m1();
        1.0 + f(x) - m * f(m * x)
    };
    (offset, ln_rel, mean.clamp(1.0, m))
}

/// An M/M/c/K queue: Poisson arrivals at `arrival_rate`, `servers` servers each completing
/// work at `service_rate`, and room for `capacity` calls in all (served and waiting); an
/// arrival that finds `capacity` calls present is turned away.
///
/// # A pool is M/M/c/K
///
/// A [`ThreadPoolBulkhead`](crate::ThreadPoolBulkhead) is this queue with c = `max_threads`
/// and K = `max_threads + queue_capacity`; `service_rate` is one over the mean run time.
/// [`blocking_probability`](MmcK::blocking_probability) is then the expected fraction of
/// calls the pool rejects (its `rejected` over all attempts),
/// [`mean_wait`](MmcK::mean_wait) its mean queue wait and
/// [`mean_response`](MmcK::mean_response) the mean time from submission to result, for the
/// calls it admits.
///
/// # Assumptions
///
/// Poisson arrivals, exponential service, FIFO, servers alike, a steady state. The queue is
/// bounded, so a steady state exists at any load, also ρ = λ/(cμ) ≥ 1: the excess is
/// blocked. With bursty arrivals or long-tailed service both blocking and waits come out
/// higher than computed here; with fixed-cost service, waits lower. When the dependency
/// stalls, μ falls and the queue fills; the model describes the healthy regime.
///
/// # Examples
///
/// A fast-food take-out with 2 servers and room for 4 customers in all (M/M/2/4), 3
/// customers a minute arriving and 30 s to serve each (μ = 2/min). By hand: A = 1.5, ρ = 0.75, the unnormalised state
/// weights are 1, 1.5, 1.125, 0.84375, 0.6328125, summing to 5.1015625, so
/// P0 = 0.19602, P4 = 0.12404 and L = 8.8125 / 5.1015625 = 1.72741.
///
/// ```
/// use bulkheads::sizing::MmcK;
///
/// let q = MmcK::new(3.0, 2.0, 2, 4)?;
/// assert!((q.idle_probability() - 0.19602).abs() < 1e-5);
/// assert!((q.blocking_probability() - 0.12404).abs() < 1e-5);
/// assert!((q.mean_in_system() - 1.72741).abs() < 1e-5);
/// // Little's law, with the admitted rate λ(1 − P4):
/// let admitted = 3.0 * (1.0 - q.blocking_probability());
/// assert!((q.throughput() - admitted).abs() < 1e-12);
/// assert!((q.mean_in_system() - admitted * q.mean_response()).abs() < 1e-12);
/// // Exactly at ρ = 1 (λ = cμ): no 0/0.
/// let full = MmcK::new(4.0, 2.0, 2, 4)?;
/// assert!(full.blocking_probability().is_finite());
/// # Ok::<(), bulkheads::sizing::SizingError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmcK {
    arrival_rate: f64,
    service_rate: f64,
    servers: usize,
    capacity: usize,
    idle: f64,
    blocking: f64,
    /// Mean busy servers: λ(1 − p_K)/μ.
    busy: f64,
    /// Mean calls waiting.
    queued: f64,
}

impl MmcK {
    /// The queue with arrival rate λ = `arrival_rate`, `servers` servers of service rate
    /// μ = `service_rate` each, and room for `capacity` calls in all.
    ///
    /// Everything is computed here, in one pass over the servers (fewer where the terms
    /// vanish); the accessors only read.
    ///
    /// # Errors
    ///
    /// `arrival_rate` negative, NaN or infinite; `service_rate` zero, negative, NaN,
    /// infinite or so small that its mean service time 1/μ overflows; `servers` zero;
    /// `capacity` below `servers`; λ/μ overflowing; or a model too large to compute (tens
    /// of millions of busy servers) or whose waits overflow an `f64`.
    pub fn new(
        arrival_rate: f64,
        service_rate: f64,
        servers: usize,
        capacity: usize,
    ) -> Result<Self, SizingError> {
        let lambda = non_negative("arrival_rate", arrival_rate)?;
        let mu = positive("service_rate", service_rate)?;
        if !(1.0 / mu).is_finite() {
            return Err(SizingError::new(
                "service_rate",
                format!("is so small that the mean service time 1/{mu} overflows"),
            ));
        }
        let c = at_least_one("servers", servers)?;
        if capacity < c {
            return Err(SizingError::new(
                "capacity",
                format!("must be at least servers ({c}) (got {capacity})"),
            ));
        }
        let a = lambda / mu;
        if !a.is_finite() {
            return Err(SizingError::new(
                "arrival_rate",
                format!("over service_rate overflows ({lambda} / {mu})"),
            ));
        }
        let cf = c as f64;
        // The head loop stops by about 2A + 1,300 servers (past 2A each term halves);
        // refuse what would take longer.
        if cf.min(2.0 * a + 1_300.0) > MAX_STEPS as f64 {
            return Err(SizingError::new(
                "servers",
                format!(
                    "{c} at an offered load of {a} erlangs take more than {MAX_STEPS} steps \
                     to compute"
                ),
            ));
        }
        let mut q = Self {
            arrival_rate: lambda,
            service_rate: mu,
            servers: c,
            capacity,
            idle: 1.0,
            blocking: 0.0,
            busy: 0.0,
            queued: 0.0,
        };
        if a == 0.0 {
            // Nobody arrives: always empty. (Also λ so small that λ/μ underflows.)
            return Ok(q);
        }
        let ln_a = a.ln();

        // Head: w_0..w_c as logs; `moment` sums n·w_n for n < c (mean busy servers).
        let mut head = LogSum::EMPTY;
        head.add(0.0);
        let mut moment = LogSum::EMPTY;
        let mut lw = 0.0_f64;
        let mut ln_wc = f64::NEG_INFINITY;
        for n in 1..=c {
            let ln_n = (n as f64).ln();
            lw += ln_a - ln_n;
            if n == c {
                ln_wc = lw;
                break;
            }
            if n as f64 > a && lw < head.max - NEGLIGIBLE {
                // Past the mode and negligible: so is every later term and the tail, which
                // only shrinks from here (ρ < 1). w_c stays −∞: no blocking, no queue.
                break;
            }
            head.add(lw);
            moment.add(lw + ln_n);
        }
        let m = (capacity - c) as f64;
        if ln_wc == f64::NEG_INFINITY {
            // Cut short above: every server busy is negligible, and so is the queue.
            let ln_total = head.ln();
            q.idle = (-ln_total).exp().clamp(0.0, 1.0);
            q.busy = (moment.ln() - ln_total).exp().clamp(0.0, cf);
            return Ok(q);
        }
        // Logs are taken relative to `base` = ln w_c + offset (ln w_K when ρ > 1), so the
        // figures that matter are differences of moderate numbers even when ρ^(K−c) is
        // astronomically large.
        let (offset, ln_tail, mean_tail, ln_rho_m) = if m == 0.0 {
            (0.0, f64::NEG_INFINITY, 0.0, 0.0)
        } else {
            // −ln ρ, with ρ = A/c; exactly 0 at A = c.
            let x = -((a - cf) / cf).ln_1p();
            let (offset, ln_rel, mean) = tail(m, x);
            // ln(ρ^m) − offset: 0 when ρ > 1, −m·x otherwise.
            let ln_rho_m = if x < 0.0 { 0.0 } else { -m * x };
            (offset, ln_rel, mean, ln_rho_m)
        };
        let base = ln_wc + offset;
        // w_c·(1 + Σ ρ^j), relative to `base`: the weight of "every server busy".
        let all_busy = ln_sum_exp(&[-offset, ln_tail]);
        let total = ln_sum_exp(&[head.ln() - base, all_busy]);
        let busy = ln_sum_exp(&[moment.ln() - base, cf.ln() + all_busy]);

        q.idle = (-base - total).exp().clamp(0.0, 1.0);
        q.blocking = (ln_rho_m - total).exp().clamp(0.0, 1.0);
        q.busy = (busy - total).exp().clamp(0.0, cf);
        q.queued = ((ln_tail - total).exp() * mean_tail).clamp(0.0, m);
        if !(q.mean_wait().is_finite() && q.mean_response().is_finite()) {
            return Err(SizingError::new(
                "service_rate",
                "gives waits that overflow an f64",
            ));
        }
        Ok(q)
    }

    /// λ, as given.
    pub fn arrival_rate(&self) -> f64 {
        self.arrival_rate
    }

    /// μ, as given.
    pub fn service_rate(&self) -> f64 {
        self.service_rate
    }

    /// c, as given.
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// K, as given.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The offered load A = λ/μ in erlangs: the busy servers it would take with no limit.
    pub fn offered_load(&self) -> f64 {
        self.arrival_rate / self.service_rate
    }

    /// p_K: the probability that the system is full, which by PASTA (Poisson arrivals see
    /// time averages) is the fraction of arrivals turned away — for a pool, the expected
    /// `rejected / (submitted + rejected)`.
    pub fn blocking_probability(&self) -> f64 {
        self.blocking
    }

    /// p_0: the probability that the system is empty (every thread idle, nothing queued).
    pub fn idle_probability(&self) -> f64 {
        self.idle
    }

    /// The admitted rate λ(1 − p_K): the calls per unit of time that get in and complete.
    pub fn throughput(&self) -> f64 {
        if self.blocking < 0.5 {
            self.arrival_rate * (1.0 - self.blocking)
        } else {
            // Near p_K = 1, 1 − p_K loses its digits; the busy servers keep them.
            self.busy * self.service_rate
        }
    }

    /// The mean fraction of servers busy, λ(1 − p_K)/(cμ): how hard the pool's threads
    /// work.
    pub fn utilization(&self) -> f64 {
        self.busy / self.servers as f64
    }

    /// L: the mean number of calls present, served and waiting (a pool's mean
    /// `running + queued`).
    pub fn mean_in_system(&self) -> f64 {
        self.queued + self.busy
    }

    /// L_q: the mean number of calls waiting for a server (a pool's mean `queued`).
    pub fn mean_queued(&self) -> f64 {
        self.queued
    }

    /// W_q: the mean wait in the queue of an admitted call, L_q / (λ(1 − p_K)); zero when
    /// nothing arrives.
    pub fn mean_wait(&self) -> f64 {
        let throughput = self.throughput();
        if throughput > 0.0 {
            self.queued / throughput
        } else {
            0.0
        }
    }

    /// W: the mean time an admitted call spends in the system, W_q + 1/μ
    /// (= L / (λ(1 − p_K)) by Little's law).
    pub fn mean_response(&self) -> f64 {
        self.mean_wait() + 1.0 / self.service_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state probabilities by brute force, for small K.
    fn brute(lambda: f64, mu: f64, c: usize, k: usize) -> Vec<f64> {
        let mut w = vec![1.0_f64];
        for n in 1..=k {
            let rate_out = mu * n.min(c) as f64;
            w.push(w[n - 1] * lambda / rate_out);
        }
        let s: f64 = w.iter().sum();
        w.iter().map(|x| x / s).collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_systems() {
        for (lambda, mu, c, k) in [
            (3.0, 2.0, 2, 4),
            (1.0, 1.0, 1, 1),
            (5.0, 1.0, 3, 10),
            (2.0, 1.0, 2, 7),
            (9.0, 1.0, 2, 30),
            (0.3, 1.0, 4, 4),
            (7.999, 1.0, 8, 20),
        ] {
            let p = brute(lambda, mu, c, k);
            let q = MmcK::new(lambda, mu, c, k).unwrap();
            let l: f64 = p.iter().enumerate().map(|(n, p)| n as f64 * p).sum();
            let lq: f64 = p
                .iter()
                .enumerate()
                .map(|(n, p)| n.saturating_sub(c) as f64 * p)
                .sum();
            let ctx = format!("λ={lambda} μ={mu} c={c} K={k}");
            assert!((q.idle_probability() - p[0]).abs() < 1e-12, "{ctx}");
            assert!((q.blocking_probability() - p[k]).abs() < 1e-12, "{ctx}");
            assert!((q.mean_in_system() - l).abs() < 1e-9, "{ctx}");
            assert!((q.mean_queued() - lq).abs() < 1e-9, "{ctx}");
        }
    }

    #[test]
    fn rho_one_exactly_and_nearby_agree() {
        // λ = cμ exactly, and a hair either side: the tail's closed form switches branch
        // (ρ < 1, ρ = 1, ρ > 1), and the answers must not jump.
        let at = MmcK::new(4.0, 1.0, 4, 50).unwrap();
        for eps in [1e-7, -1e-7, 1e-12, -1e-12] {
            let near = MmcK::new(4.0 + eps, 1.0, 4, 50).unwrap();
            assert!((near.blocking_probability() - at.blocking_probability()).abs() < 1e-6);
            assert!((near.mean_queued() - at.mean_queued()).abs() < 1e-4);
        }
        let p = brute(4.0, 1.0, 4, 50);
        assert!((at.blocking_probability() - p[50]).abs() < 1e-12);
    }

    #[test]
    fn huge_capacity_and_overload_stay_finite() {
        let unbounded = MmcK::new(5.0, 1.0, 10, usize::MAX).unwrap();
        assert!(unbounded.blocking_probability() == 0.0);
        let over = MmcK::new(50.0, 1.0, 10, usize::MAX).unwrap();
        assert!(over.blocking_probability() > 0.0 && over.blocking_probability() <= 1.0);
        assert!(over.mean_queued().is_finite() && over.mean_wait().is_finite());
        assert!(
            (over.throughput() - 10.0).abs() < 1e-9,
            "all 10 servers busy"
        );
        let many = MmcK::new(10.0, 1.0, 1_000_000_000, 2_000_000_000).unwrap();
        assert_eq!(many.blocking_probability(), 0.0);
        assert!((many.mean_in_system() - 10.0).abs() < 1e-9);
    }
}
