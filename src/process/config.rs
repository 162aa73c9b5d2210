//! [`ProcessConfig`]: the process bulkhead's builder and its validation.

use std::time::Duration;

use crate::config::{SemaphoreConfig, validate_name};
use crate::error::ConfigError;

/// The configuration of a [`ProcessBulkhead`](crate::ProcessBulkhead): how many programs run
/// at once, how many calls wait, the deadline, and the limits each program runs under.
///
/// The resource limits are POSIX `setrlimit` limits, set in the child before the program
/// starts (see [`ProcessBulkhead`](crate::ProcessBulkhead) for how). Each is set as both the
/// soft and the hard limit, so the program cannot raise it again. What each really limits:
///
/// - [`max_open_files`](ProcessConfig::max_open_files) (`RLIMIT_NOFILE`): the highest file
///   descriptor number the program may open, plus one — so it counts stdin, stdout and
///   stderr, and a dynamically linked program needs a few more to load its libraries.
///   Past it `open`, `socket`, `pipe` fail with `EMFILE`.
/// - [`cpu_time`](ProcessConfig::cpu_time) (`RLIMIT_CPU`): CPU time, user and system,
///   not wall-clock time (a program asleep or blocked on I/O spends none: that is what the
///   [`timeout`](ProcessConfig::timeout) is for). At the limit the program gets `SIGXCPU`,
///   and `SIGKILL` one second later. Each process of the group has its own allowance.
/// - [`address_space`](ProcessConfig::address_space) (`RLIMIT_AS`): the size of the
///   program's virtual address space, **not its memory use**. Reserved but untouched
///   mappings count in full (a JVM or a Go program reserves gigabytes it never uses, and
///   fails to start under a tight limit), while the page cache and shared memory other
///   processes hold do not. Past it `mmap`/`brk` fail (`malloc` returns null; Rust
///   programs abort). For a bound on resident memory use a cgroup (`memory.max`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::ProcessConfig;
///
/// let config = ProcessConfig::new(4)
///     .queue_capacity(8)
///     .timeout(Duration::from_secs(10))
///     .kill_grace(Duration::from_millis(500))
///     .max_output(1 << 20)
///     .max_open_files(64)
///     .cpu_time(Duration::from_secs(5))
///     .address_space(1 << 30);
/// assert_eq!(config.max_concurrent_value(), 4);
/// assert!(config.validate("thumbnails").is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    pub(crate) max_concurrent: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) kill_grace: Duration,
    pub(crate) max_output: usize,
    pub(crate) max_open_files: Option<u64>,
    pub(crate) cpu_time: Option<Duration>,
    pub(crate) address_space: Option<u64>,
}

impl ProcessConfig {
    /// The largest `max_concurrent` (and `queue_capacity`) a process bulkhead accepts.
    pub const MAX_CONCURRENT: usize = SemaphoreConfig::MAX_CONCURRENT;

    /// A bulkhead that runs at most `max_concurrent` programs at once, with no queue: a
    /// call that finds every slot taken is rejected at once.
    #[must_use]
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            max_concurrent,
            queue_capacity: 0,
            timeout: None,
            kill_grace: Duration::from_secs(2),
            max_output: 16 << 20,
            max_open_files: None,
            cpu_time: None,
            address_space: None,
        }
    }

    /// How many calls may wait for a slot while every slot is taken; a call past them is
    /// rejected at once. Waiters start in the order they came (FIFO).
    ///
    /// Defaults to zero: no queue.
    #[must_use]
    pub fn queue_capacity(mut self, queue_capacity: usize) -> Self {
        self.queue_capacity = queue_capacity;
        self
    }

    /// The deadline of each call, measured from the call of
    /// [`run`](crate::ProcessBulkhead::run): time spent waiting for a slot counts. At the
    /// deadline a waiting call gives up, and a running program's whole process group gets
    /// `SIGTERM`, then `SIGKILL` after the [`kill_grace`](ProcessConfig::kill_grace).
    ///
    /// Defaults to none: a call waits for a slot, and a program runs, as long as it takes.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long a program's group has, after `SIGTERM` at the deadline, before `SIGKILL`.
    /// A call that overran returns within `timeout + kill_grace` (plus scheduling noise).
    ///
    /// Defaults to 2 seconds: time to remove a temporary file and exit, short enough for a
    /// caller that is waiting.
    #[must_use]
    pub fn kill_grace(mut self, kill_grace: Duration) -> Self {
        self.kill_grace = kill_grace;
        self
    }

    /// The most bytes kept of each of stdout and stderr. Past it the pipe is still drained
    /// (so the program never blocks on a full pipe) and the rest discarded; the output is
    /// marked [`truncated`](crate::ProcessOutput::truncated).
    ///
    /// Defaults to 16 MiB per stream.
    #[must_use]
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// The program's `RLIMIT_NOFILE`: the highest file descriptor it may hold, plus one
    /// (see the [type's docs](ProcessConfig) for what it really limits).
    ///
    /// Defaults to none: the limit of this process is inherited.
    #[must_use]
    pub fn max_open_files(mut self, n: u64) -> Self {
        self.max_open_files = Some(n);
        self
    }

    /// The program's `RLIMIT_CPU`: CPU seconds, not wall-clock time. The kernel counts whole
    /// seconds, so the limit is rounded up to the next second.
    ///
    /// Defaults to none: the limit of this process is inherited.
    #[must_use]
    pub fn cpu_time(mut self, cpu_time: Duration) -> Self {
        self.cpu_time = Some(cpu_time);
        self
    }

    /// The program's `RLIMIT_AS`, in bytes: its virtual address space, not its memory use
    /// (see the [type's docs](ProcessConfig)). Rounded up to whole KiB, the unit `ulimit -v`
    /// takes.
    ///
    /// Defaults to none: the limit of this process is inherited.
    #[must_use]
    pub fn address_space(mut self, bytes: u64) -> Self {
        self.address_space = Some(bytes);
        self
    }

    /// The configuration of process bulkheads a
    /// [`BulkheadManager`](crate::BulkheadManager) creates on first use by name: 4 slots, a
    /// queue of 4, a 30-second deadline, no resource limits. Programs differ too much for
    /// one default to fit; configure each by name
    /// ([`BulkheadManagerBuilder::process`](crate::BulkheadManagerBuilder::process)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::ProcessConfig;
    ///
    /// let config = ProcessConfig::default();
    /// assert_eq!(config.max_concurrent_value(), 4);
    /// assert_eq!(config.timeout_value(), Some(Duration::from_secs(30)));
    /// ```
    pub fn on_demand() -> Self {
        Self::new(4)
            .queue_capacity(4)
            .timeout(Duration::from_secs(30))
    }

    /// The configured number of slots.
    pub fn max_concurrent_value(&self) -> usize {
        self.max_concurrent
    }

    /// The configured queue capacity.
    pub fn queue_capacity_value(&self) -> usize {
        self.queue_capacity
    }

    /// The configured deadline, if any.
    pub fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    /// The configured grace between `SIGTERM` and `SIGKILL`.
    pub fn kill_grace_value(&self) -> Duration {
        self.kill_grace
    }

    /// The configured cap on each output stream, in bytes.
    pub fn max_output_value(&self) -> usize {
        self.max_output
    }

    /// True when any resource limit is configured (the program then starts through
    /// `/bin/sh`, see [`ProcessBulkhead`](crate::ProcessBulkhead)).
    pub fn has_limits(&self) -> bool {
        self.max_open_files.is_some() || self.cpu_time.is_some() || self.address_space.is_some()
    }

    /// The CPU limit in whole seconds, rounded up.
    pub(crate) fn cpu_seconds(&self) -> Option<u64> {
        self.cpu_time
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }

    /// The address-space limit in KiB, rounded up.
    pub(crate) fn address_space_kib(&self) -> Option<u64> {
        self.address_space.map(|b| b.div_ceil(1024))
    }

    /// Checks the configuration for a bulkhead called `name`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `name` and the field: an empty or NUL-bearing `name`; a
    /// `max_concurrent` of zero; a `max_concurrent` or `queue_capacity` above
    /// [`MAX_CONCURRENT`](ProcessConfig::MAX_CONCURRENT); a zero `timeout`, `kill_grace`
    /// or `max_output`; a zero resource limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bulkheads::ProcessConfig;
    ///
    /// let err = ProcessConfig::new(2).kill_grace(Duration::ZERO).validate("ffmpeg").unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("ffmpeg", "kill_grace"));
    /// ```
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        validate_name(name)?;
        let positive = |field: &'static str, zero: bool| {
            if zero {
                Err(ConfigError::new(name, field, "must be at least 1 (got 0)"))
            } else {
                Ok(())
            }
        };
        positive("max_concurrent", self.max_concurrent == 0)?;
        for (field, n) in [
            ("max_concurrent", self.max_concurrent),
            ("queue_capacity", self.queue_capacity),
        ] {
            if n > Self::MAX_CONCURRENT {
                return Err(ConfigError::new(
                    name,
                    field,
                    format!("must be at most {} (got {n})", Self::MAX_CONCURRENT),
                ));
            }
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                name,
                "timeout",
                "must be longer than zero (leave it unset for no deadline)",
            ));
        }
        if self.kill_grace.is_zero() {
            // A zero grace would make SIGTERM meaningless: the group would be killed before
            // any program could act on it.
            return Err(ConfigError::new(
                name,
                "kill_grace",
                "must be longer than zero: the program needs a moment to act on SIGTERM",
            ));
        }
        positive("max_output", self.max_output == 0)?;
        positive("max_open_files", self.max_open_files == Some(0))?;
        positive("address_space", self.address_space == Some(0))?;
        if self.cpu_time == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                name,
                "cpu_time",
                "must be longer than zero",
            ));
        }
        Ok(())
    }
}

impl Default for ProcessConfig {
    /// [`ProcessConfig::on_demand`]: 4 slots, a queue of 4, a 30-second deadline.
    fn default() -> Self {
        Self::on_demand()
    }
}
