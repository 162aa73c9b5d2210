//! Bulkheads for blocking Rust: one watertight compartment per dependency.
//!
//! When a database, an HTTP API or a file system slows down, every thread that calls it
//! blocks. In a shared pool the slow dependency soon holds every thread, and calls to
//! healthy dependencies cannot run either. `bulkheads` gives each named dependency its own
//! compartment — a dedicated pool of OS threads with a bounded queue
//! ([`ThreadPoolBulkhead`]), or a counting semaphore on the caller's thread
//! ([`SemaphoreBulkhead`]) — so a sick dependency fills only its own compartment: excess
//! calls are rejected at once and counted, and the rest of the service keeps flowing.
//!
//! It is for synchronous code; no async runtime is needed or pulled in.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use bulkheads::{BulkheadManager, PoolConfig};
//!
//! let manager = BulkheadManager::builder()
//!     .pool("inventory", PoolConfig::new(8).queue_capacity(4))
//!     .pool("payment", PoolConfig::new(4))
//!     .build()?;
//!
//! let item = 17;
//! let stock = manager.pool("inventory").execute(move || item * 3)?;
//! assert_eq!(stock, 51);
//!
//! let receipt = manager
//!     .pool("payment")
//!     .execute_timeout(Duration::from_millis(500), || "charged")?;
//! assert_eq!(receipt, "charged");
//!
//! println!("{}", manager.stats()); // one row per compartment
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Rejection: fail fast when the compartment is full
//!
//! A pool admits at most `max_threads + queue_capacity` calls at once, exactly. The next call
//! gets [`BulkheadError::Rejected`] in nanoseconds — no allocation, no lock, no waiting — so
//! the caller can fall back (serve from cache, "send later") instead of piling up.
//!
//! ```
//! use bulkheads::{PoolConfig, ThreadPoolBulkhead};
//!
//! let email = ThreadPoolBulkhead::new("email", PoolConfig::new(1))?;
//! let (release, blocked) = std::sync::mpsc::channel::<()>();
//! let slow = email.submit(move || blocked.recv().ok())?; // the one thread is busy
//!
//! let outcome = email.execute(|| "sent").unwrap_or_else(|err| {
//!     assert!(err.is_rejected());
//!     "queued for later"
//! });
//! assert_eq!(outcome, "queued for later");
//! release.send(()).unwrap();
//! slow.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Deadlines
//!
//! [`execute_timeout`](ThreadPoolBulkhead::execute_timeout) returns
//! [`BulkheadError::Timeout`] on time, with the clock started at submission. A call still
//! queued when its caller gives up is cancelled: it frees its slot at once and never runs.
//! A call that has started keeps its slot until it really finishes — threads cannot be
//! killed, and pretending otherwise would let a sick dependency exceed its compartment.
//!
//! ```
//! use std::time::Duration;
//! use bulkheads::{PoolConfig, ThreadPoolBulkhead};
//!
//! let api = ThreadPoolBulkhead::new("api", PoolConfig::new(1).queue_capacity(1))?;
//! let (release, blocked) = std::sync::mpsc::channel::<()>();
//! let busy = api.submit(move || blocked.recv().ok())?;
//! // Queued behind the busy worker; gives up after 20 ms and never runs.
//! let err = api.execute_timeout(Duration::from_millis(20), || "late").unwrap_err();
//! assert!(err.is_timeout());
//! release.send(()).unwrap();
//! busy.join()?;
//! assert_eq!(api.stats().expired, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A started call can still stop itself in time: [`Deadline::current`], read anywhere on
//! the worker's thread, is the deadline its caller waits on, with the time spent queued
//! already gone. Set the socket or statement timeout from
//! [`remaining`](Deadline::remaining) instead of a fixed one.
//!
//! # Panics stay inside
//!
//! A panicking task gives its caller [`BulkheadError::Panicked`] with the panic's message
//! (and the payload, through [`BulkheadError::into_panic`]); the worker thread survives and
//! the slot is freed.
//!
//! ```
//! use bulkheads::{PoolConfig, ThreadPoolBulkhead};
//!
//! let pool = ThreadPoolBulkhead::new("parser", PoolConfig::new(1))?;
//! let err = pool.execute(|| -> u8 { panic!("bad input") }).unwrap_err();
//! assert!(err.to_string().contains("bad input"));
//! assert_eq!(pool.execute(|| 5)?, 5); // the same worker, still alive
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Shutdown that loses nothing
//!
//! [`shutdown`](ThreadPoolBulkhead::shutdown) stops admitting and lets queued work finish;
//! [`shutdown_now`](ThreadPoolBulkhead::shutdown_now) completes queued work with
//! [`BulkheadError::Shutdown`]. Either way every admitted task has exactly one outcome, and
//! [`await_termination`](ThreadPoolBulkhead::await_termination) waits for the threads.
//!
//! ```
//! use std::time::Duration;
//! use bulkheads::{PoolConfig, ThreadPoolBulkhead};
//!
//! let pool = ThreadPoolBulkhead::new("batch", PoolConfig::new(2).queue_capacity(8))?;
//! let handles: Vec<_> = (0..4).map(|i| pool.submit(move || i)).collect::<Result<_, _>>()?;
//! pool.shutdown();
//! let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
//! assert_eq!(sum, 6);
//! assert!(pool.await_termination(Duration::from_secs(5)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Semaphores: isolation without a thread hop
//!
//! ```
//! use bulkheads::{SemaphoreBulkhead, SemaphoreConfig};
//!
//! let cache = SemaphoreBulkhead::new("cache", SemaphoreConfig::new(16))?;
//! let hit = cache.call(|| Some("value"))?;
//! assert_eq!(hit, Some("value"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A [`Permit`] borrows its semaphore; [`try_acquire_owned`](SemaphoreBulkhead::try_acquire_owned)
//! gives an [`OwnedPermit`] instead, which can be kept in a struct or moved to another thread.
//!
//! # Stats that never lie
//!
//! [`ThreadPoolBulkhead::stats`] and [`BulkheadManager::stats`] take snapshots whose gauges
//! come from one atomic reading: no snapshot shows more running tasks than threads or more
//! queued tasks than the queue holds, and once a pool is quiet
//! `submitted == completed + failed + panicked + expired + cancelled + global_refused`.
//!
//! [`ManagerStats::to_prometheus`] renders them in the Prometheus text format, with no extra
//! dependency:
//!
//! ```
//! use bulkheads::{BulkheadManager, PoolConfig};
//!
//! let manager = BulkheadManager::builder().pool("email", PoolConfig::new(2)).build()?;
//! manager.pool("email").execute(|| ())?;
//! let metrics = manager.stats().to_prometheus(); // serve it on /metrics
//! assert!(metrics.contains(r#"bulkhead_calls_total{bulkhead="email",kind="pool",outcome="completed"} 1"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sizing: how big each compartment should be
//!
//! [`sizing`] has the queueing formulas behind a bulkhead — the seed rule threads = peak
//! rate × p99 × headroom, Little's law, Erlang B and C, and the M/M/c/K queue that a pool
//! is (c = `max_threads`, K = `max_threads + queue_capacity`; its blocking probability is
//! the expected fraction `rejected`) — and
//! [`BulkheadManager::recommend`] sizes every pool from what it observed.
//!
//! ```
//! use bulkheads::sizing::{MmcK, pool_size};
//!
//! let threads = pool_size(200.0, 0.080, 1.5)?; // 200/s × 80 ms × 1.5
//! assert_eq!(threads, 24);
//! // Mean run 60 ms, queue of 5: the fraction rejected at 200/s.
//! let pool = MmcK::new(200.0, 1.0 / 0.060, threads, threads + 5)?;
//! assert!(pool.blocking_probability() < 0.001);
//! # Ok::<(), bulkheads::sizing::SizingError>(())
//! ```
//!
//! # Processes (Unix): a deadline that really stops the work
//!
//! A thread cannot be killed; a child process can. `ProcessBulkhead` (Unix only) runs a
//! [`std::process::Command`] in a slot of its own, in a new process group: at the deadline
//! the whole group gets `SIGTERM`, then `SIGKILL` after a grace, and the call returns what
//! the program wrote so far. Both pipes are drained at once and capped, every child is
//! reaped, and resource limits (open files, CPU seconds, address space) apply in the child.
//!
//! ```
//! # #[cfg(unix)] {
//! use std::process::Command;
//! use std::time::Duration;
//! use bulkheads::{ProcessBulkhead, ProcessConfig};
//!
//! let thumbnails = ProcessBulkhead::new(
//!     "thumbnails",
//!     ProcessConfig::new(2).queue_capacity(4).timeout(Duration::from_millis(200)),
//! )?;
//! let mut hung = Command::new("sh");
//! hung.args(["-c", "sleep 100"]);
//! assert!(thumbnails.run(hung)?.timed_out); // stopped, reaped, slot free
//! assert_eq!(thumbnails.stats().running, 0);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The defensive stack: breaker, retry, fallback
//!
//! A bulkhead keeps a sick dependency from taking every thread; a [`CircuitBreaker`] stops
//! calling it at all while it stays sick (refused calls take no slot), a [`Retry`] with a
//! [`RetryBudget`] rides out brief failures without a retry storm, and a fallback answers
//! what is left. A [`Policy`] puts them together in one fixed order,
//! **fallback(retry(breaker(bulkhead(f))))**, with `.timeout(d)` as each attempt's deadline
//! inside the bulkhead. Time-based decisions read a [`Clock`], which tests
//! replace with a [`ManualClock`].
//!
//! ```
//! use std::time::Duration;
//! use bulkheads::{Backoff, CircuitBreaker, CircuitBreakerConfig, Jitter, Policy, PoolConfig};
//! use bulkheads::{Retry, RetryBudget, ThreadPoolBulkhead};
//!
//! let email = Policy::builder("email")
//!     .pool(ThreadPoolBulkhead::new("email", PoolConfig::new(4).queue_capacity(2))?)
//!     .circuit_breaker(CircuitBreaker::new("email", CircuitBreakerConfig::new())?)
//!     .retry(
//!         Retry::new(3)
//!             .backoff(Backoff::exponential(Duration::from_millis(50), 2.0))
//!             .jitter(Jitter::Full)
//!             .budget(RetryBudget::new(10.0, 0.1)),
//!     )
//!     .timeout(Duration::from_secs(2))
//!     .fallback(|_err| Ok("queued for later"))
//!     .build()?;
//!
//! let send = email.decorate(|| Ok::<_, std::io::Error>("sent"));
//! assert_eq!(send()?, "sent");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! All off by default.
//!
//! - `tracing`: every admitted call gets a `bulkhead_call` span, created in the caller's
//!   context and entered on the worker while the task runs; rejections are logged at `WARN`,
//!   at most once a second per bulkhead.
//! - `metrics`: the metrics of the Prometheus text, with its names, labels and types,
//!   through the `metrics` facade: `BulkheadManager::export_metrics` records the latency
//!   histograms; `publish` sets the counters and gauges from a snapshot.
//! - `serde`: the snapshots implement `Serialize`; [`PoolConfig`] and [`SemaphoreConfig`]
//!   implement `Deserialize` and `Serialize` (durations as `"500ms"`, `"2s"`, `"1m"`); and
//!   `BulkheadManager::from_toml` builds a manager from a TOML document, where a bad entry
//!   gives a [`ConfigError`] naming the bulkhead and the field.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod acquire_all;
mod breaker;
pub mod clock;
mod config;
mod connection;
mod deadline;
mod error;
mod event;
mod histogram;
mod keyed;
pub mod limit;
mod manager;
#[cfg(feature = "metrics")]
mod metrics_export;
mod policy;
mod pool;
#[cfg(unix)]
mod process;
mod prometheus;
mod recent;
#[cfg(feature = "redis")]
mod redis;
mod retry;
mod route;
mod semaphore;
#[cfg(feature = "serde")]
mod serde_support;
mod shard;
pub mod sizing;
mod stats;
mod sync;
mod trace;

pub use acquire_all::{Permits, acquire_all};
pub use breaker::{
    CallPermit, CircuitBreaker, CircuitBreakerConfig, CircuitMetrics, CircuitState, SlidingWindow,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{PoolConfig, SemaphoreConfig};
pub use connection::ConnectionPoolBulkhead;
pub use deadline::Deadline;
pub use error::{BulkheadError, ConfigError, DriverError, PanicPayload};
pub use event::{Event, EventKind};
pub use histogram::{LatencyBuckets, LatencySummary};
pub use keyed::{KeyStats, KeyedConfig, KeyedPermit, KeyedSemaphore, KeyedStats};
pub use manager::{BulkheadManager, BulkheadManagerBuilder, DEFAULT_MAX_BULKHEADS};
#[cfg(feature = "metrics")]
pub use metrics_export::metrics_listener;
pub use policy::{Policy, PolicyBuilder, PolicyError};
pub use pool::{TaskHandle, ThreadPoolBulkhead};
#[cfg(unix)]
pub use process::{ProcessBulkhead, ProcessConfig, ProcessOutput};
#[cfg(feature = "redis")]
pub use redis::{Lease, Outage, RedisSemaphore, RedisSemaphoreConfig, RedisSemaphoreStats};
pub use retry::{Backoff, Jitter, Retry, RetryBudget, RetryMetrics, RetryStats, Retryable};
pub use semaphore::{OwnedPermit, Permit, SemaphoreBulkhead};
pub use shard::ShuffleSharder;
pub use stats::{BulkheadStats, ManagerStats, PoolStats, ProcessStats, SemaphoreStats};
