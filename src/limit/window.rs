//! Samples aggregated per time window before the inner algorithm sees them: Netflix's
//! `WindowedLimit`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{LimitAlgorithm, Sample};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;

/// How a window's round-trip times become the one time the inner algorithm sees.
///
/// # Examples
///
/// ```
/// use bulkheads::limit::{Aggregate, Aimd, Windowed};
///
/// let p90 = Windowed::new(Aimd::new()).aggregate(Aggregate::Percentile(0.9));
/// assert!(p90.validate("db").is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Aggregate {
    /// The mean of the window's times, dropped calls included (Netflix's
    /// `ImmutableAverageSampleWindow`). The default.
    Average,
    /// The given percentile, in (0, 1], of the window's times: the `round(n × p)`-th
    /// smallest of `n` (Netflix's `ImmutablePercentileSampleWindow`).
    Percentile(f64),
}

/// What one window has gathered so far.
#[derive(Debug, Clone)]
struct Window {
    count: usize,
    sum_nanos: u128,
    min_rtt: Option<Duration>,
    max_in_flight: usize,
    dropped: bool,
    /// Every time in the window, kept only for [`Aggregate::Percentile`]; cleared, not
    /// freed, between windows so a busy limiter does not allocate per window.
    rtts: Vec<Duration>,
}

impl Window {
    fn new() -> Self {
        Self {
            count: 0,
            sum_nanos: 0,
            min_rtt: None,
            max_in_flight: 0,
            dropped: false,
            rtts: Vec::new(),
        }
    }

    fn add(&mut self, sample: Sample, keep_rtts: bool) {
        self.count += 1;
        self.sum_nanos += sample.rtt.as_nanos();
        self.min_rtt = Some(self.min_rtt.map_or(sample.rtt, |m| m.min(sample.rtt)));
        self.max_in_flight = self.max_in_flight.max(sample.in_flight);
        self.dropped |= sample.dropped;
        if keep_rtts {
            self.rtts.push(sample.rtt);
        }
    }

    fn tracked_rtt(&mut self, aggregate: Aggregate) -> Duration {
        match aggregate {
            Aggregate::Percentile(p) if !self.rtts.is_empty() => {
                self.rtts.sort_unstable();
                let rank = (self.rtts.len() as f64 * p).round() as usize;
                // Rank 0 (a tiny percentile of few samples) is the smallest, not an error.
                let index = rank.saturating_sub(1).min(self.rtts.len() - 1);
                self.rtts[index]
            }
            _ => {
                let count = self.count.max(1) as u128;
                let mean = self.sum_nanos / count;
                Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX))
            }
        }
    }

    fn clear(&mut self) {
        self.count = 0;
        self.sum_nanos = 0;
        self.min_rtt = None;
        self.max_in_flight = 0;
        self.dropped = false;
        self.rtts.clear();
    }
}

/// Any [`LimitAlgorithm`], updated once per time window instead of once per call: the
/// window's samples are aggregated — the [average or a percentile](Aggregate) of their
/// round-trip times, the most calls in flight, whether any was dropped — into one
/// [`Sample`] for the inner algorithm. The rules and defaults of Netflix's `WindowedLimit`.
///
/// - A sample faster than [`min_rtt`](Windowed::min_rtt) (100 µs) is ignored: it measures
///   the bookkeeping, not the dependency.
/// - A window closes at the first sample after its end that finds at least
///   [`min_samples`](Windowed::min_samples) (10) samples in it; a window with fewer keeps
///   gathering. The first window ends at once, so it closes at its tenth sample.
/// - The next window lasts twice the least round-trip time of the one just closed, kept
///   within [`min_window`](Windowed::min_window) and [`max_window`](Windowed::max_window)
///   (both 1 s by default).
///
/// Time comes from a [`Clock`] ([`SystemClock`] unless [`clock`](Windowed::clock) says
/// otherwise), read once per sample: the sample is taken to finish when it is reported.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use bulkheads::ManualClock;
/// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample, Windowed};
///
/// let clock = Arc::new(ManualClock::new());
/// let mut windowed = Windowed::new(Aimd::new().initial_limit(20)).clock(clock.clone());
/// let ms = Duration::from_millis;
/// for _ in 0..9 {
///     assert_eq!(windowed.update(Sample::new(ms(5), 20, false)), 20); // gathering
/// }
/// assert_eq!(windowed.update(Sample::new(ms(5), 20, false)), 21); // the tenth: one update
/// // The next window lasts 1 s (2 × 5 ms, raised to min_window): no update within it.
/// for _ in 0..20 {
///     assert_eq!(windowed.update(Sample::new(ms(5), 20, false)), 21);
/// }
/// clock.advance(Duration::from_secs(1) + ms(1));
/// assert_eq!(windowed.update(Sample::new(ms(5), 20, false)), 22);
/// ```
#[derive(Clone)]
pub struct Windowed<L> {
    inner: L,
    clock: Arc<dyn Clock>,
    min_window: Duration,
    max_window: Duration,
    min_samples: usize,
    min_rtt: Duration,
    aggregate: Aggregate,
    /// When the current window ends; `None` until the first window closes (Netflix starts
    /// from time 0, which every sample is past).
    window_end: Option<Instant>,
    window: Window,
}

impl<L: LimitAlgorithm> Windowed<L> {
    /// `inner`, updated once per window, with Netflix's defaults: windows of 1 s, at least 10
    /// samples a window, samples under 100 µs ignored, the average time.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Gradient2, LimitAlgorithm, Windowed};
    ///
    /// assert_eq!(Windowed::new(Gradient2::new()).limit(), 20);
    /// ```
    #[must_use]
    pub fn new(inner: L) -> Self {
        Self {
            inner,
            clock: Arc::new(SystemClock),
            min_window: Duration::from_secs(1),
            max_window: Duration::from_secs(1),
            min_samples: 10,
            min_rtt: Duration::from_micros(100),
            aggregate: Aggregate::Average,
            window_end: None,
            window: Window::new(),
        }
    }

    /// The shortest a window lasts. Defaults to 1 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, Windowed};
    ///
    /// let w = Windowed::new(Aimd::new()).min_window(Duration::from_secs(2));
    /// assert_eq!(w.validate("db").unwrap_err().field(), "min_window"); // above max_window
    /// ```
    #[must_use]
    pub fn min_window(mut self, d: Duration) -> Self {
        self.min_window = d;
        self
    }

    /// The longest a window lasts. Defaults to 1 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, Windowed};
    ///
    /// let w = Windowed::new(Aimd::new()).max_window(Duration::from_secs(5));
    /// assert!(w.validate("db").is_ok());
    /// ```
    #[must_use]
    pub fn max_window(mut self, d: Duration) -> Self {
        self.max_window = d;
        self
    }

    /// The fewest samples a window needs before it closes. Defaults to 10.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample, Windowed};
    ///
    /// let mut w = Windowed::new(Aimd::new().initial_limit(20)).min_samples(1);
    /// assert_eq!(w.update(Sample::new(Duration::from_millis(5), 20, false)), 21);
    /// ```
    #[must_use]
    pub fn min_samples(mut self, n: usize) -> Self {
        self.min_samples = n;
        self
    }

    /// Samples faster than this are ignored. Defaults to 100 µs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Sample, Windowed};
    ///
    /// let mut w = Windowed::new(Aimd::new().initial_limit(20)).min_samples(1);
    /// assert_eq!(w.update(Sample::new(Duration::from_micros(50), 20, false)), 20);
    /// ```
    #[must_use]
    pub fn min_rtt(mut self, d: Duration) -> Self {
        self.min_rtt = d;
        self
    }

    /// How a window's times are aggregated. Defaults to [`Aggregate::Average`].
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Aggregate, Aimd, Windowed};
    ///
    /// let w = Windowed::new(Aimd::new()).aggregate(Aggregate::Percentile(1.5));
    /// assert_eq!(w.validate("db").unwrap_err().field(), "aggregate");
    /// ```
    #[must_use]
    pub fn aggregate(mut self, aggregate: Aggregate) -> Self {
        self.aggregate = aggregate;
        self
    }

    /// The clock that times the windows. Defaults to [`SystemClock`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bulkheads::ManualClock;
    /// use bulkheads::limit::{Aimd, Windowed};
    ///
    /// let w = Windowed::new(Aimd::new()).clock(Arc::new(ManualClock::new()));
    /// assert!(w.validate("db").is_ok());
    /// ```
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The inner algorithm.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Aimd, LimitAlgorithm, Windowed};
    ///
    /// assert_eq!(Windowed::new(Aimd::new()).inner().limit(), 20);
    /// ```
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Checks the window's own settings, naming the bulkhead `name` in the error; validate
    /// the inner algorithm with its own `validate`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: a zero `max_window`, `min_window` above
    /// `max_window`, a `min_samples` of 0, a percentile outside (0, 1] or NaN (field
    /// `aggregate`), or an invalid `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::limit::{Aimd, Windowed};
    ///
    /// let err = Windowed::new(Aimd::new()).min_samples(0).validate("db").unwrap_err();
    /// assert_eq!(err.field(), "min_samples");
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        crate::config::validate_name(name)?;
        if self.max_window.is_zero() {
            return Err(ConfigError::new(name, "max_window", "must not be zero"));
        }
        if self.min_window > self.max_window {
            return Err(ConfigError::new(
                name,
                "min_window",
                format!(
                    "must not exceed max_window ({:?}) (got {:?})",
                    self.max_window, self.min_window
                ),
            ));
        }
        if self.min_samples == 0 {
            return Err(ConfigError::new(
                name,
                "min_samples",
                "must be at least 1 (got 0)",
            ));
        }
        if let Aggregate::Percentile(p) = self.aggregate {
            if p.is_nan() || p <= 0.0 || p > 1.0 {
                return Err(ConfigError::new(
                    name,
                    "aggregate",
                    format!("percentile must be in (0, 1] (got {p})"),
                ));
            }
        }
        // The wrapped algorithm's own settings too (through the trait: an `Aimd` inside is
        // checked by `Aimd::validate`).
        LimitAlgorithm::validate(&self.inner, name)
    }
}

impl<L: LimitAlgorithm> LimitAlgorithm for Windowed<L> {
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        Windowed::validate(self, name)
    }

    fn limit(&self) -> usize {
        self.inner.limit()
    }

    fn update(&mut self, sample: Sample) -> usize {
        if sample.rtt < self.min_rtt {
            return self.inner.limit();
        }
        let keep_rtts = matches!(self.aggregate, Aggregate::Percentile(_));
        self.window.add(sample, keep_rtts);

        let now = self.clock.now();
        let window_over = self.window_end.is_none_or(|end| now > end);
        let ready = self.window.count >= self.min_samples.max(1);
        if !(window_over && ready) {
            return self.inner.limit();
        }
        // `ready` means at least one sample, so there is a minimum.
        let least = self.window.min_rtt.unwrap_or(Duration::ZERO);
        let length = least
            .saturating_mul(2)
            .max(self.min_window)
            .min(self.max_window);
        // No deadline on overflow: the window then never ends, as a far one would not.
        self.window_end = now.checked_add(length).or(self.window_end);
        let aggregated = Sample::new(
            self.window.tracked_rtt(self.aggregate),
            self.window.max_in_flight,
            self.window.dropped,
        );
        self.window.clear();
        self.inner.update(aggregated)
    }
}

impl<L: fmt::Debug> fmt::Debug for Windowed<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Windowed")
            .field("inner", &self.inner)
            .field("clock", &"<clock>")
            .field("min_window", &self.min_window)
            .field("max_window", &self.max_window)
            .field("min_samples", &self.min_samples)
            .field("min_rtt", &self.min_rtt)
            .field("aggregate", &self.aggregate)
            .field("window_end", &self.window_end)
            .field("samples_in_window", &self.window.count)
            .finish()
    }
}
