//! [`ConnectionPoolBulkhead`]: a pool whose workers own their connections, so threads and
//! connections cannot drift apart.
//!
//! The failure it prevents: two bulkheads of 6 and 8 threads over one shared connection
//! pool of 8 connections. Each compartment looks healthy in its own stats, yet their threads
//! queue for the same connections — one hidden compartment that no stats can show. Here each
//! worker thread opens its own connection, keeps it across tasks, and closes it when it
//! retires: N threads are exactly N connections, and the bulkhead's limit is the database's.
//!
//! The connection lives in a thread-local slot of the worker (keyed by the bulkhead, as a
//! worker serves one pool). The worker closes it as it retires, before it counts as gone and
//! while its other thread-locals still live (a driver may need its own to close: the
//! blocking `postgres::Client` uses its tokio runtime's), so after `await_termination`
//! returns true every connection is closed.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::PoolConfig;
use crate::error::{BulkheadError, ConfigError};
use crate::policy::PolicyError;
use crate::pool::ThreadPoolBulkhead;
use crate::stats::PoolStats;

type Connect<C> = dyn Fn() -> Result<C, Box<dyn std::error::Error + Send + Sync>> + Send + Sync;
type HealthCheck<C> = dyn Fn(&mut C) -> bool + Send + Sync;

/// Gives each bulkhead a key for its workers' thread-local connection slot.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The connections this thread holds, by bulkhead (a worker serves one bulkhead, so one
    /// entry; a map so that nothing breaks if a thread ever served two).
    static CONNECTIONS: RefCell<HashMap<u64, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// Closes the connections the calling thread holds: a worker calls it as it retires, while
/// every thread-local of the thread is still alive (see `worker.rs`). A connection whose
/// `Drop` panics takes nothing else with it.
pub(crate) fn close_this_threads_connections() {
    let connections = CONNECTIONS
        .try_with(|c| std::mem::take(&mut *c.borrow_mut()))
        .unwrap_or_default();
    for (_, connection) in connections {
        // Outside the slot's borrow: a `Drop` that runs a task's code cannot re-enter it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(connection)));
    }
}

/// A thread-pool bulkhead whose every worker owns one connection (to a database, a
/// message broker, a legacy client library), opened on the worker the first time it runs a
/// task, kept across tasks, checked before reuse, and closed when the worker retires.
///
/// Use it instead of a shared connection pool behind one or several bulkheads: a shared
/// pool with fewer connections than the bulkheads' threads is one hidden compartment that
/// no stats can show (threads wait for connections instead of being rejected). Here the
/// thread count is the connection count, so the bulkhead's limit is the database's, and a
/// full compartment rejects in nanoseconds instead of queueing for a connection.
///
/// A failed connect is the outcome of the call that needed it — [`BulkheadError::Connect`]
/// naming the bulkhead, with the driver's error as its `source()` — counted in
/// [`PoolStats::connect_failures`] and, as the call's outcome, in
/// [`PoolStats::failed`]; the next call on that worker tries again. A task that
/// panics gives its connection up (it may be mid-transaction); the worker opens a new one
/// for its next task.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use bulkheads::{ConnectionPoolBulkhead, PoolConfig};
///
/// struct Conn { id: usize, queries: u32 }
/// let opened = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&opened);
/// let db = ConnectionPoolBulkhead::new("orders-db", PoolConfig::new(2), move || {
///     Ok::<_, std::io::Error>(Conn { id: counter.fetch_add(1, Ordering::SeqCst), queries: 0 })
/// })?;
/// for _ in 0..10 {
///     let id = db.execute(|conn: &mut Conn| { conn.queries += 1; conn.id })?;
///     assert!(id < 2, "never more connections than threads");
/// }
/// assert!(opened.load(Ordering::SeqCst) <= 2);
/// db.shutdown();
/// assert!(db.await_termination(std::time::Duration::from_secs(10))); // connections closed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConnectionPoolBulkhead<C> {
    /// Shared with a manager that holds this bulkhead
    /// ([`BulkheadManagerBuilder::connection_pool`](crate::BulkheadManagerBuilder::connection_pool)).
    pool: Arc<ThreadPoolBulkhead>,
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    id: u64,
    /// The bulkhead's name, for errors (made once, not per call).
    name: Arc<str>,
    connect: Box<Connect<C>>,
    health_check: Option<Box<HealthCheck<C>>>,
    /// The pool's books, where failed connects are counted.
    pool: Arc<crate::pool::Shared>,
}

impl<C> fmt::Debug for ConnectionPoolBulkhead<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPoolBulkhead")
            .field("pool", &self.pool)
            .field("health_check", &self.inner.health_check.is_some())
            .finish_non_exhaustive()
    }
}

impl<C: 'static> ConnectionPoolBulkhead<C> {
    /// A bulkhead called `name` with `config`'s threads, each owning one connection made by
    /// `connect`.
    ///
    /// # Errors
    ///
    /// The [`ConfigError`] of [`PoolConfig::validate`], naming the bulkhead and the field.
    pub fn new<F, E>(
        name: impl Into<String>,
        config: PoolConfig,
        connect: F,
    ) -> Result<Self, ConfigError>
    where
        F: Fn() -> Result<C, E> + Send + Sync + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let pool = ThreadPoolBulkhead::new(name, config)?;
        let name: Arc<str> = Arc::from(pool.name());
        let connect: Box<Connect<C>> = Box::new(move || {
            connect().map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        });
        Ok(Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                name,
                connect,
                health_check: None,
                pool: pool.shared(),
            }),
            pool: Arc::new(pool),
        })
    }

    /// Checks a connection before each reuse: `false` closes it and opens a new one for the
    /// task (r2d2's `is_valid` / `has_broken` idea). A fresh connection is not checked.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{ConnectionPoolBulkhead, PoolConfig};
    ///
    /// struct Conn { broken: bool }
    /// let db = ConnectionPoolBulkhead::new("db", PoolConfig::new(1), || {
    ///     Ok::<_, std::io::Error>(Conn { broken: false })
    /// })?
    /// .health_check(|conn: &mut Conn| !conn.broken);
    /// db.execute(|conn: &mut Conn| conn.broken = true)?; // the server dropped it
    /// assert!(!db.execute(|conn: &mut Conn| conn.broken)?, "replaced before reuse");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn health_check(mut self, check: impl Fn(&mut C) -> bool + Send + Sync + 'static) -> Self {
        let inner = Arc::get_mut(&mut self.inner).expect("set before any call");
        inner.health_check = Some(Box::new(check));
        self
    }

    /// Runs `f` with this worker's connection and waits for its result, at most the pool's
    /// [`default_timeout`](PoolConfig::default_timeout) if there is one.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Connect`] if the worker had no connection and could not open one,
    /// and the errors of [`ThreadPoolBulkhead::execute`].
    pub fn execute<F, T>(&self, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce(&mut C) -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = self.task(f);
        self.pool.run_counting(None, task, Result::is_err)?
    }

    /// Runs a fallible `f` with this worker's connection, as
    /// [`ThreadPoolBulkhead::execute_fallible`]: one flat result, and `f`'s `Err` counted as
    /// [`failed`](PoolStats::failed) (a failed connect is `failed` too, as
    /// [`PolicyError::Bulkhead`] with [`BulkheadError::Connect`]).
    ///
    /// # Errors
    ///
    /// [`PolicyError::Inner`] with `f`'s error; [`PolicyError::Bulkhead`] with those of
    /// [`execute`](ConnectionPoolBulkhead::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{ConnectionPoolBulkhead, PolicyError, PoolConfig};
    ///
    /// let db = ConnectionPoolBulkhead::new("db", PoolConfig::new(1), || {
    ///     Ok::<_, std::io::Error>(Vec::<u32>::new())
    /// })?;
    /// let err = db
    ///     .execute_fallible(|rows: &mut Vec<u32>| rows.first().copied().ok_or("no rows"))
    ///     .unwrap_err();
    /// assert!(matches!(err, PolicyError::Inner("no rows")));
    /// assert_eq!(db.stats().failed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_fallible<F, T, E>(&self, f: F) -> Result<T, PolicyError<E>>
    where
        F: FnOnce(&mut C) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let task = self.task(f);
        flatten_connected(self.pool.run_counting(None, task, failed_or_unconnected))
    }

    /// [`execute_fallible`](ConnectionPoolBulkhead::execute_fallible), waiting at most
    /// `timeout` as [`execute_timeout`](ConnectionPoolBulkhead::execute_timeout) does.
    ///
    /// # Errors
    ///
    /// As [`execute_fallible`](ConnectionPoolBulkhead::execute_fallible), and
    /// [`BulkheadError::Timeout`] (as `PolicyError::Bulkhead`) when the time is up.
    pub fn execute_fallible_timeout<F, T, E>(
        &self,
        timeout: Duration,
        f: F,
    ) -> Result<T, PolicyError<E>>
    where
        F: FnOnce(&mut C) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let task = self.task(f);
        flatten_connected(
            self.pool
                .run_counting(Some(timeout), task, failed_or_unconnected),
        )
    }

    /// Runs `f` with this worker's connection and waits at most `timeout` for its result;
    /// as [`ThreadPoolBulkhead::execute_timeout`] (a task still queued at the deadline is
    /// cancelled; one that started keeps its connection and slot until it ends —
    /// [`Deadline::current`](crate::Deadline::current) inside `f` tells how long is left,
    /// for the driver's statement timeout).
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Connect`], and the errors of
    /// [`ThreadPoolBulkhead::execute_timeout`].
    pub fn execute_timeout<F, T>(&self, timeout: Duration, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce(&mut C) -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = self.task(f);
        self.pool
            .run_counting(Some(timeout), task, Result::is_err)?
    }

    /// Runs `f` with this worker's connection until an absolute `deadline`, as
    /// [`ThreadPoolBulkhead::execute_until`]: for a caller holding one deadline for a whole
    /// request; [`Deadline::current`](crate::Deadline::current) inside `f` ends there.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Connect`], and the errors of [`ThreadPoolBulkhead::execute_until`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use bulkheads::{ConnectionPoolBulkhead, Deadline, PoolConfig};
    ///
    /// let db = ConnectionPoolBulkhead::new("db", PoolConfig::new(1), || Ok::<_, std::io::Error>(()))?;
    /// let until = Instant::now() + Duration::from_secs(5);
    /// let seen = db.execute_until(until, |_conn: &mut ()| Deadline::current().map(|d| d.instant()))?;
    /// assert_eq!(seen, Some(until));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_until<F, T>(&self, deadline: Instant, f: F) -> Result<T, BulkheadError>
    where
        F: FnOnce(&mut C) -> T + Send + 'static,
        T: Send + 'static,
    {
        let task = self.task(f);
        self.pool
            .run_until_counting(deadline, task, Result::is_err)?
    }

    /// [`execute_fallible`](ConnectionPoolBulkhead::execute_fallible) until an absolute
    /// `deadline`, as [`execute_until`](ConnectionPoolBulkhead::execute_until).
    ///
    /// # Errors
    ///
    /// As [`execute_fallible`](ConnectionPoolBulkhead::execute_fallible), and
    /// [`BulkheadError::Timeout`] (as `PolicyError::Bulkhead`) at the deadline.
    pub fn execute_fallible_until<F, T, E>(
        &self,
        deadline: Instant,
        f: F,
    ) -> Result<T, PolicyError<E>>
    where
        F: FnOnce(&mut C) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let task = self.task(f);
        flatten_connected(
            self.pool
                .run_until_counting(deadline, task, failed_or_unconnected),
        )
    }

    /// The task the pool runs: `f` with this worker's connection (opened, or checked and
    /// reopened, first).
    fn task<F, T>(&self, f: F) -> impl FnOnce() -> Result<T, BulkheadError> + Send + 'static
    where
        F: FnOnce(&mut C) -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        move || {
            let mut conn = inner.take_connection()?;
            // Given back only if `f` returns: a task that panics leaves its connection to
            // be dropped (it may be mid-transaction), and the next task opens a new one.
            let value = f(&mut conn);
            inner.put_back(conn);
            Ok(value)
        }
    }

    /// The pool's stats, with [`connect_failures`](PoolStats::connect_failures) counted.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        self.pool.name()
    }

    /// The thread pool underneath, for what this type does not wrap (events, resize,
    /// `submit` of tasks that need no connection).
    pub fn pool(&self) -> &ThreadPoolBulkhead {
        &self.pool
    }

    /// The thread pool underneath, shared (for a manager that holds this bulkhead).
    pub(crate) fn pool_arc(&self) -> Arc<ThreadPoolBulkhead> {
        Arc::clone(&self.pool)
    }

    /// As [`ThreadPoolBulkhead::shutdown`]: queued tasks still run; connections close as
    /// their workers exit.
    pub fn shutdown(&self) {
        self.pool.shutdown();
    }

    /// As [`ThreadPoolBulkhead::shutdown_now`].
    pub fn shutdown_now(&self) {
        self.pool.shutdown_now();
    }

    /// As [`ThreadPoolBulkhead::await_termination`]: true once every worker thread has
    /// exited, so every connection has been closed.
    pub fn await_termination(&self, timeout: Duration) -> bool {
        self.pool.await_termination(timeout)
    }
}

impl<C: 'static> Inner<C> {
    /// This thread's connection for this bulkhead, taken out of its slot (checked if
    /// reused), or a new one. Boxed once, when it is opened: reuse moves the box in and out
    /// of the slot, with no allocation per call.
    fn take_connection(&self) -> Result<Box<C>, BulkheadError> {
        let kept = CONNECTIONS.with(|slots| slots.borrow_mut().remove(&self.id));
        if let Some(Ok(mut conn)) = kept.map(|boxed| boxed.downcast::<C>()) {
            let healthy = self
                .health_check
                .as_ref()
                .is_none_or(|check| check(&mut conn));
            if healthy {
                return Ok(conn);
            }
            // Broken: close it here, then open a new one.
            drop(conn);
        }
        match (self.connect)() {
            Ok(conn) => Ok(Box::new(conn)),
            Err(source) => {
                self.pool
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                Err(BulkheadError::Connect {
                    name: Arc::clone(&self.name),
                    message: source.to_string(),
                    source: crate::error::DriverError::new(source),
                })
            }
        }
    }

    fn put_back(&self, conn: Box<C>) {
        CONNECTIONS.with(|slots| {
            slots.borrow_mut().insert(self.id, conn);
        });
    }
}

/// A connection task's value that counts as `failed`: a failed connect, or `f`'s `Err`.
fn failed_or_unconnected<T, E>(value: &Result<Result<T, E>, BulkheadError>) -> bool {
    !matches!(value, Ok(Ok(_)))
}

/// One flat result for a fallible connection task (whose connect can fail too).
fn flatten_connected<T, E>(
    outcome: Result<Result<Result<T, E>, BulkheadError>, BulkheadError>,
) -> Result<T, PolicyError<E>> {
    match outcome {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(e))) => Err(PolicyError::Inner(e)),
        Ok(Err(e)) | Err(e) => Err(PolicyError::Bulkhead(e)),
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    struct NotSync(std::cell::Cell<u8>);
    // The connection itself need not be Send or Sync: it never leaves its worker.
    is::<ConnectionPoolBulkhead<std::rc::Rc<NotSync>>>();
}
