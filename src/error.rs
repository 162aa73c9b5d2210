//! Errors: [`BulkheadError`] for calls, [`ConfigError`] for configuration.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::CircuitState;
use crate::sync::plain::Mutex;

/// Why a call through a bulkhead did not produce the task's value.
///
/// Every variant carries the name of the bulkhead, so a log line says which compartment is
/// sick. The error is cheap to clone: the name is shared, never copied, and building a
/// [`Rejected`](BulkheadError::Rejected) error allocates nothing.
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let pool = ThreadPoolBulkhead::new("email", PoolConfig::new(1))?;
/// let err = pool.execute(|| -> u32 { panic!("smtp down") }).unwrap_err();
/// assert!(err.is_panicked());
/// assert_eq!(err.bulkhead(), "email");
/// assert_eq!(err.to_string(), "task in bulkhead 'email' panicked: smtp down");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BulkheadError {
    /// The bulkhead was full: every thread busy and the queue full (pool), or no permit free
    /// within the allowed wait (semaphore). The call was not admitted and never runs.
    #[error("bulkhead '{name}' is full ({capacity} calls in flight): call rejected")]
    #[non_exhaustive]
    Rejected {
        /// The bulkhead's name.
        name: Arc<str>,
        /// How many calls the bulkhead admits at once.
        capacity: usize,
    },
    /// The caller's deadline passed before the task finished. A task that had not started
    /// was cancelled and never runs; one that had started runs to its end in its own slot.
    #[error("call in bulkhead '{name}' timed out after {timeout:?}")]
    #[non_exhaustive]
    Timeout {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The deadline the caller gave, measured from submission.
        timeout: Duration,
    },
    /// The task panicked. The worker thread survived and the slot was freed.
    #[error("task in bulkhead '{name}' panicked: {message}")]
    #[non_exhaustive]
    Panicked {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The panic's message (`&str` and `String` payloads), or a placeholder.
        message: String,
        /// The original payload, reachable through [`BulkheadError::into_panic`].
        payload: PanicPayload,
    },
    /// The bulkhead was shut down: the call was not admitted, or it was still queued when
    /// `shutdown_now` discarded the queue.
    #[error("bulkhead '{name}' is shut down")]
    #[non_exhaustive]
    Shutdown {
        /// The bulkhead's name.
        name: Arc<str>,
    },
    /// The task was cancelled through [`TaskHandle::cancel`](crate::TaskHandle::cancel)
    /// before it started; it never ran.
    #[error("task in bulkhead '{name}' was cancelled before it started")]
    #[non_exhaustive]
    Cancelled {
        /// The bulkhead's name.
        name: Arc<str>,
    },
    /// The operating system refused to start a worker thread and no other worker could take
    /// the task. The task never ran.
    #[error("bulkhead '{name}' could not start a worker thread: {message}")]
    #[non_exhaustive]
    Spawn {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The kind of the operating system's error.
        kind: std::io::ErrorKind,
        /// The operating system's error message.
        message: String,
    },
    /// A [`ProcessBulkhead`](crate::ProcessBulkhead) could not start the program: it was not
    /// found, is not an executable file, or the OS refused a process or a thread. Nothing
    /// runs and the slot is free again. Also with resource limits, which start the
    /// program through a shell: the program is checked first, so this is never the
    /// shell's exit status 127.
    #[error("bulkhead '{name}' could not start {program}: {message}")]
    #[non_exhaustive]
    Start {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The program, as the command names it.
        program: String,
        /// The kind of the operating system's error (`NotFound`, `PermissionDenied`, …).
        kind: std::io::ErrorKind,
        /// The operating system's error message.
        message: String,
    },
    /// A [`ConnectionPoolBulkhead`](crate::ConnectionPoolBulkhead)'s worker had no
    /// connection and could not open one: the call did not run. The driver's error is the
    /// [`source`](std::error::Error::source) (and its text is in `message`); the next call
    /// on that worker tries to connect again.
    #[error("bulkhead '{name}' could not connect: {message}")]
    #[non_exhaustive]
    Connect {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The driver's error message.
        message: String,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// There is no bulkhead of that name, and none could be created: the name is not a
    /// valid bulkhead name, or the manager already holds its
    /// [`max_bulkheads`](crate::BulkheadManagerBuilder::max_bulkheads). Returned by
    /// [`BulkheadManager::execute`](crate::BulkheadManager::execute), whose name may come
    /// from user data; the call never ran.
    ///
    /// The text carries the field and the reason; [`BulkheadError::config_error`] gives the
    /// [`ConfigError`] itself (kept out of `source()`, whose text would repeat them).
    #[error("no bulkhead '{name}' and none can be created: {} {}", .error.field(), .error.reason())]
    #[non_exhaustive]
    Config {
        /// The name asked for.
        name: Arc<str>,
        /// Why no bulkhead of that name could be created.
        error: ConfigError,
    },
    /// A [`CircuitBreaker`](crate::CircuitBreaker) refused the call: it is open, forced
    /// open, or half-open with every probe already out. The call never ran, took no
    /// bulkhead slot and did not enter the breaker's window.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use bulkheads::{CircuitBreaker, CircuitBreakerConfig, CircuitState, ManualClock};
    ///
    /// let clock = Arc::new(ManualClock::new());
    /// let breaker = CircuitBreaker::new("email", CircuitBreakerConfig::new().clock(clock))?;
    /// breaker.transition_to(CircuitState::Open)?;
    /// let err = breaker.try_acquire().unwrap_err();
    /// assert!(err.is_circuit_open());
    /// assert_eq!(err.bulkhead(), "email");
    /// assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "circuit breaker 'email' is open: call not permitted (retry after 60s)"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error("circuit breaker '{name}' is {state}: call not permitted{}", RetryAfter(*.retry_after))]
    #[non_exhaustive]
    CircuitOpen {
        /// The breaker's name.
        name: Arc<str>,
        /// The state that refused the call.
        state: CircuitState,
        /// How long until the breaker lets probes through again (open state); `None` when
        /// no time is known (forced open, or half-open with every probe out).
        retry_after: Option<Duration>,
    },
    /// The coordinator that a fleet-wide bulkhead keeps its books in could not be reached or
    /// answered with an error (a `RedisSemaphore`, feature `redis`, whose Redis is
    /// down, refuses the connection or does not answer within the connect timeout). The call
    /// was not admitted: a fleet-wide limit fails closed.
    #[error("bulkhead '{name}' could not reach its coordinator: {message}")]
    #[non_exhaustive]
    Unavailable {
        /// The bulkhead's name.
        name: Arc<str>,
        /// The client's error message.
        message: String,
    },
}

/// Formats an optional retry-after as " (retry after 4.5s)" or nothing.
struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " (retry after {d:?})"),
            None => Ok(()),
        }
    }
}

impl BulkheadError {
    /// The name of the bulkhead that produced this error.
    pub fn bulkhead(&self) -> &str {
        match self {
            Self::Rejected { name, .. }
            | Self::Timeout { name, .. }
            | Self::Panicked { name, .. }
            | Self::Shutdown { name }
            | Self::Cancelled { name }
            | Self::Spawn { name, .. }
            | Self::Start { name, .. }
            | Self::Connect { name, .. }
            | Self::Config { name, .. }
            | Self::CircuitOpen { name, .. }
            | Self::Unavailable { name, .. } => name,
        }
    }

    /// True for [`BulkheadError::Rejected`]: the bulkhead was full.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }

    /// True for [`BulkheadError::Timeout`]: the caller's deadline passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// True for [`BulkheadError::Panicked`]: the task panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// True for [`BulkheadError::Shutdown`]: the bulkhead was shut down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, Self::Shutdown { .. })
    }

    /// True for [`BulkheadError::Start`]: a process bulkhead could not start the program.
    pub fn is_start(&self) -> bool {
        matches!(self, Self::Start { .. })
    }

    /// True for [`BulkheadError::Cancelled`]: the task was cancelled before it started.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }

    /// True for [`BulkheadError::Config`]: no bulkhead of that name exists and none could
    /// be created (an invalid name, or a full manager).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::BulkheadManager;
    ///
    /// let manager = BulkheadManager::builder().max_bulkheads(0).build()?;
    /// let err = manager.execute("tenant-7", || 1).unwrap_err();
    /// assert!(err.is_config());
    /// assert_eq!(err.bulkhead(), "tenant-7");
    /// assert_eq!(err.config_error().map(|e| e.field()), Some("max_bulkheads"));
    /// assert!(err.to_string().contains("'tenant-7'"));
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config { .. })
    }

    /// True for [`BulkheadError::Connect`]: a worker could not open its connection.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// True for [`BulkheadError::CircuitOpen`]: a circuit breaker refused the call.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Self::CircuitOpen { .. })
    }

    /// True for [`BulkheadError::Unavailable`]: a fleet-wide bulkhead could not reach its
    /// coordinator, and the call was not admitted.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// How long until the refusing breaker lets calls through again, for a
    /// [`CircuitOpen`](BulkheadError::CircuitOpen) error from an open breaker; `None`
    /// otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CircuitOpen { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The [`ConfigError`] of a [`Config`](BulkheadError::Config) error: the field at
    /// fault (`"name"` or `"max_bulkheads"`) and why; `None` for other variants.
    pub fn config_error(&self) -> Option<&ConfigError> {
        match self {
            Self::Config { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Takes the original panic payload out of a [`Panicked`](BulkheadError::Panicked)
    /// error, for example to resume the panic with [`std::panic::resume_unwind`].
    ///
    /// Clones of one error share the payload: the first to call this gets it, later calls
    /// and other variants get `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    ///
    /// let pool = ThreadPoolBulkhead::new("parser", PoolConfig::new(1))?;
    /// let err = pool.execute(|| std::panic::panic_any(42_u32)).unwrap_err();
    /// let payload = err.into_panic().expect("a panic payload");
    /// assert_eq!(payload.downcast_ref::<u32>(), Some(&42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            Self::Panicked { payload, .. } => payload.take(),
            _ => None,
        }
    }
}

/// The payload of a task's panic, shared by clones of one [`BulkheadError`].
///
/// Take it with [`BulkheadError::into_panic`] or [`PanicPayload::take`].
#[derive(Clone)]
pub struct PanicPayload(Arc<PayloadSlot>);

/// The shared slot of a [`PanicPayload`].
struct PayloadSlot(Mutex<Option<Box<dyn Any + Send + 'static>>>);

// An error is passed around and inspected inside `catch_unwind` as often as not. The slot's
// lock guards a single `Option::take`: no invariant can be left half-done by an unwind, so
// the error is unwind-safe like the std error types.
impl std::panic::UnwindSafe for PayloadSlot {}
impl std::panic::RefUnwindSafe for PayloadSlot {}

impl PanicPayload {
    pub(crate) fn new(payload: Box<dyn Any + Send + 'static>) -> Self {
        Self(Arc::new(PayloadSlot(Mutex::new(Some(payload)))))
    }

    /// Takes the payload; `None` if it was already taken.
    pub fn take(&self) -> Option<Box<dyn Any + Send + 'static>> {
        self.0.0.lock().take()
    }
}

impl fmt::Debug for PanicPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanicPayload(<any>)")
    }
}

/// The message of a panic payload: the `&str` or `String` it carries, or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// An invalid configuration, naming the bulkhead and the field at fault.
///
/// Returned by [`PoolConfig`](crate::PoolConfig) and [`SemaphoreConfig`](crate::SemaphoreConfig)
/// validation, [`ThreadPoolBulkhead::new`](crate::ThreadPoolBulkhead::new),
/// [`SemaphoreBulkhead::new`](crate::SemaphoreBulkhead::new) and the manager's builder. No
/// configuration is ever clamped silently or turned into a panic.
///
/// # Examples
///
/// ```
/// use bulkheads::{PoolConfig, ThreadPoolBulkhead};
///
/// let err = ThreadPoolBulkhead::new("inventory", PoolConfig::new(0)).unwrap_err();
/// assert_eq!(err.bulkhead(), "inventory");
/// assert_eq!(err.field(), "max_threads");
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration for bulkhead 'inventory': max_threads must be at least 1 (got 0)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration for bulkhead '{bulkhead}': {field} {reason}")]
pub struct ConfigError {
    bulkhead: String,
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(bulkhead: &str, field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            bulkhead: bulkhead.to_owned(),
            field,
            reason: reason.into(),
        }
    }

    /// The name of the bulkhead whose configuration is invalid (may be empty when the name
    /// itself is the problem).
    pub fn bulkhead(&self) -> &str {
        &self.bulkhead
    }

    /// The configuration field at fault, such as `"max_threads"` or `"name"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with the field's value.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A connection driver's error inside [`BulkheadError::Connect`], shared so the error can be
/// cloned with the outcome.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use bulkheads::{ConnectionPoolBulkhead, PoolConfig};
///
/// let db = ConnectionPoolBulkhead::new("db", PoolConfig::new(1), || {
///     Err::<(), _>(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no server"))
/// })?;
/// let err = db.execute(|_conn: &mut ()| ()).unwrap_err();
/// assert!(err.is_connect());
/// assert_eq!(err.to_string(), "bulkhead 'db' could not connect: no server");
/// let driver = err.source().expect("the driver's error");
/// assert!(driver.to_string().contains("no server"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DriverError(
    // Only read after it is made, so a panic elsewhere cannot leave it half-changed: safe
    // to observe across an unwind, whatever the driver's type says.
    std::panic::AssertUnwindSafe<Arc<dyn std::error::Error + Send + Sync>>,
);

impl DriverError {
    pub(crate) fn new(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self(std::panic::AssertUnwindSafe(Arc::from(error)))
    }

    /// The driver's error, to downcast (`get_ref().downcast_ref::<postgres::Error>()`).
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &**self.0
    }
}

impl Clone for DriverError {
    fn clone(&self) -> Self {
        Self(std::panic::AssertUnwindSafe(Arc::clone(&self.0)))
    }
}

impl fmt::Debug for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self.0, f)
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self.0, f)
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}
