//! A concurrency budget shared by every process that names it, kept in Redis (feature
//! `redis`).
//!
//! # Design
//!
//! Two keys per semaphore, both under the hash tag `{bulkheads:NAME}` so they live in one
//! Redis Cluster slot and one script may touch both:
//!
//! - `{bulkheads:NAME}:holders`, a sorted set: one member per lease (its fence token), scored
//!   by the lease's expiry in the *server's* milliseconds (`TIME`).
//! - `{bulkheads:NAME}:fence`, a counter: `INCR`ed once per grant, so tokens strictly
//!   increase fleet-wide. It never expires; a token is never reused.
//!
//! One Lua script per operation, each atomic on the server and each reading the server's
//! clock, never a client's:
//!
//! - ACQUIRE: drop members whose expiry has passed, admit when fewer than `permits` remain,
//!   `INCR` the fence and add the token with expiry `now + lease`.
//! - RENEW: if the token is still a member and has not expired, push its expiry to
//!   `now + lease`; otherwise remove it and report the lease lost.
//! - RELEASE: `ZREM` (idempotent: releasing twice, or after expiry, is harmless).
//!
//! A lease's renewal thread renews every `lease / 3` on its own connection. The holder's
//! view of validity is conservative: a renewal that succeeds extends `valid_until` to
//! `(the instant the request was sent) + lease` on the local monotonic clock, which is never
//! later than the server's expiry (the server's `now` is read after the request was sent).
//! When `valid_until` passes without a successful renewal, or the server says the token is
//! gone, the lease is marked lost for good.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use redis::{Client, Connection, Script};

use crate::config::validate_name;
use crate::error::{BulkheadError, ConfigError};
use crate::sync::plain::{Condvar, Mutex, Ordering};

mod stats;

pub use stats::RedisSemaphoreStats;
use stats::{Counters, bump};

/// The server's clock in milliseconds, and effect replication for Redis before 5 (where a
/// script that reads `TIME` and then writes is refused without it; a no-op since 5).
const NOW: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// KEYS: holders, fence. ARGV: permits, lease ms. Returns the token, or 0 when full.
const ACQUIRE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), token)
return token
";

/// KEYS: holders. ARGV: token, lease ms. Returns 1 when renewed, 0 when the lease is gone.
const RENEW: &str = r"
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
";

/// KEYS: holders. ARGV: token. Idempotent.
const RELEASE: &str = r"
return redis.call('ZREM', KEYS[1], ARGV[1])
";

/// KEYS: holders. Returns how many unexpired leases are held fleet-wide.
const HELD: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
";

/// The first pause between polls of a full semaphore; doubled after each miss.
const FIRST_POLL: Duration = Duration::from_millis(2);
/// The longest pause between polls: a permit freed elsewhere is seen within this, and a
/// hundred waiting processes cost the server at most a few thousand scripts a second.
const MAX_POLL: Duration = Duration::from_millis(100);
/// The shortest lease: renewal runs every third of it, and a round trip to Redis plus a
/// thread's wake-up must fit well inside that.
const MIN_LEASE: Duration = Duration::from_millis(30);

/// The configuration of a [`RedisSemaphore`]: where Redis is, how many permits the fleet
/// shares, how long a lease lasts unrenewed, and how long a caller may wait.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bulkheads::RedisSemaphoreConfig;
///
/// let config = RedisSemaphoreConfig::new("redis://127.0.0.1:6379/", 100)
///     .lease(Duration::from_secs(5))
///     .max_wait(Duration::from_millis(50));
/// assert_eq!(config.permits(), 100);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisSemaphoreConfig {
    url: String,
    permits: usize,
    lease: Duration,
    max_wait: Duration,
    connect_timeout: Duration,
    on_outage: Outage,
}

/// A bulkhead configuration's fleet-wide semaphore: equal when it is the same semaphore.
#[derive(Clone)]
pub(crate) struct GlobalLimit(pub(crate) Arc<RedisSemaphore>);

impl PartialEq for GlobalLimit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for GlobalLimit {}

impl fmt::Debug for GlobalLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisSemaphore({:?})", &*self.0.shared.name)
    }
}

/// What a bulkhead with a [`global_limit`](crate::PoolConfig::global_limit) does with a call
/// when Redis cannot be reached (or answers with an error).
///
/// A budget that spans the fleet protects the downstream only while the coordinator is up;
/// which failure is worse depends on the downstream. Either way the call waits at most the
/// connect timeout for Redis, and the local compartment's limits still hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Outage {
    /// Refuse the call with [`BulkheadError::Unavailable`] naming the bulkhead: the
    /// downstream's fleet-wide budget is never exceeded, at the price of refusing calls
    /// while Redis is down. The default.
    #[default]
    FailClosed,
    /// Run the call without a lease, held by the local compartment's limits alone (counted
    /// in [`RedisSemaphoreStats::ran_without_lease`]): the service keeps working while
    /// Redis is down, and the fleet may exceed the budget by up to every replica's local
    /// limit meanwhile.
    FailOpen,
}

impl RedisSemaphoreConfig {
    /// A budget of `permits` leases held at once across every process that uses the same
    /// semaphore name against the Redis at `url` (`redis://[user:password@]host[:port][/db]`
    /// or `unix:///path`).
    pub fn new(url: impl Into<String>, permits: usize) -> Self {
        Self {
            url: url.into(),
            permits,
            lease: Duration::from_secs(10),
            max_wait: Duration::ZERO,
            connect_timeout: Duration::from_secs(1),
            on_outage: Outage::FailClosed,
        }
    }

    /// What a bulkhead using this semaphore as its
    /// [`global_limit`](crate::PoolConfig::global_limit) does with a call when Redis is
    /// unreachable. Direct calls of [`RedisSemaphore::acquire_timeout`] always fail closed.
    /// Defaults to [`Outage::FailClosed`].
    pub fn on_outage(mut self, outage: Outage) -> Self {
        self.on_outage = outage;
        self
    }

    /// How long a lease lasts without renewal: the longest a crashed holder keeps its
    /// permit. Renewed every third of it while held. At least 30 ms. Defaults to 10 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long [`RedisSemaphore::acquire`] waits for a permit, polling with back-off.
    /// Defaults to zero: one attempt.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The bound on connecting to Redis and on each command's reply: with Redis unreachable
    /// a call fails within it. Not zero. Defaults to 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The number of permits shared fleet-wide.
    pub fn permits(&self) -> usize {
        self.permits
    }
}

/// A counting semaphore whose permits are shared by every process that names it, kept in
/// Redis: one fleet-wide budget for a downstream with one hard limit (a database that takes
/// 100 connections across 20 replicas, a partner API's concurrency quota).
///
/// A [`Lease`] is a permit with an expiry: renewed in the background while held, released
/// on drop (also while unwinding), and returned by Redis on its own when the holder dies —
/// within one lease time.
///
/// # An efficiency limit, not a lock
///
/// This keeps the fleet *near* its budget; it does not make exceeding it impossible. A
/// holder can pause (a GC-like stall, a swapped-out process, a network partition) past its
/// lease; Redis then hands the permit to someone else while the first holder still believes
/// it holds it — the critique Martin Kleppmann made of Redis-based locks ("How to do
/// distributed locking", 2016). Redis replication is asynchronous, so a failover can lose
/// grants too. [`Lease::is_valid`] reports a lease whose renewal failed, but a check
/// followed by a call is still a race. Where exceeding the budget must be impossible, the
/// downstream must enforce it: the database's own `max_connections`, or a fence token
/// ([`Lease::fence_token`], strictly increasing fleet-wide) that the downstream checks and
/// refuses when older than one it has seen.
///
/// Calls fail closed: with Redis unreachable, no lease is granted
/// ([`BulkheadError::Unavailable`], within the connect timeout).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
///
/// let db = RedisSemaphore::new(
///     "orders-db",
///     RedisSemaphoreConfig::new("redis://127.0.0.1:6379/", 100)
///         .lease(Duration::from_secs(5))
///         .max_wait(Duration::from_millis(50)),
/// )?;
/// let lease = db.acquire_timeout(Duration::from_millis(200))?;
/// assert!(lease.is_valid());
/// println!("querying with fence token {}", lease.fence_token());
/// drop(lease); // the permit is back for the whole fleet
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RedisSemaphore {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    client: Client,
    holders: String,
    fence: String,
    permits: usize,
    lease: Duration,
    max_wait: Duration,
    connect_timeout: Duration,
    on_outage: Outage,
    /// Idle connections, reused by acquire and release; a connection that erred is dropped.
    idle: Mutex<Vec<Connection>>,
    counters: Counters,
    acquire: Script,
    renew: Script,
    release: Script,
    held: Script,
}

impl fmt::Debug for RedisSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisSemaphore")
            .field("name", &s.name)
            .field("permits", &s.permits)
            .field("lease", &s.lease)
            .field("max_wait", &s.max_wait)
            .field("connect_timeout", &s.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisSemaphore {
    /// Checks the configuration and the URL; does not connect (it connects when needed, so
    /// a service starts while Redis is down and its calls fail closed until it is back).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the semaphore: an empty name (`name`), a malformed URL
    /// (`url`), zero permits (`permits`), a lease under 30 ms (`lease`), a zero connect
    /// timeout (`connect_timeout`).
    ///
    /// # Examples
    ///
    /// ```
    /// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
    ///
    /// let err = RedisSemaphore::new("db", RedisSemaphoreConfig::new("no scheme", 5)).unwrap_err();
    /// assert_eq!((err.bulkhead(), err.field()), ("db", "url"));
    ///
    /// // Valid, though nothing listens there: no connection is made yet.
    /// let db = RedisSemaphore::new("db", RedisSemaphoreConfig::new("redis://127.0.0.1:1/", 5))?;
    /// assert_eq!(db.name(), "db");
    /// # Ok::<(), bulkheads::ConfigError>(())
    /// ```
    pub fn new(name: impl Into<String>, config: RedisSemaphoreConfig) -> Result<Self, ConfigError> {
        let name: String = name.into();
        validate_name(&name)?;
        let client = Client::open(config.url.as_str())
            .map_err(|e| ConfigError::new(&name, "url", format!("{:?}: {e}", config.url)))?;
        if config.permits == 0 {
            return Err(ConfigError::new(&name, "permits", "must be at least 1"));
        }
        if config.lease < MIN_LEASE {
            return Err(ConfigError::new(
                &name,
                "lease",
                format!("must be at least {MIN_LEASE:?}, got {:?}", config.lease),
            ));
        }
        if config.connect_timeout.is_zero() {
            return Err(ConfigError::new(
                &name,
                "connect_timeout",
                "must not be zero",
            ));
        }
        let script = |body: &str| Script::new(&format!("{NOW}{body}"));
        Ok(Self {
            shared: Arc::new(Shared {
                holders: format!("{{bulkheads:{name}}}:holders"),
                fence: format!("{{bulkheads:{name}}}:fence"),
                name: name.into(),
                client,
                permits: config.permits,
                lease: config.lease,
                max_wait: config.max_wait,
                connect_timeout: config.connect_timeout,
                on_outage: config.on_outage,
                idle: Mutex::new(Vec::new()),
                counters: Counters::default(),
                acquire: script(ACQUIRE),
                renew: script(RENEW),
                release: script(RELEASE),
                held: script(HELD),
            }),
        })
    }

    /// The semaphore's name, which is also its key in Redis: every process using this name
    /// against the same Redis shares one budget.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The number of permits shared fleet-wide.
    pub fn permits(&self) -> usize {
        self.shared.permits
    }

    /// The lease for one call of the bulkhead `bulkhead` (its
    /// [`global_limit`](crate::PoolConfig::global_limit)), waiting at most `max_wait` and
    /// never past `deadline`. `Ok(None)`: Redis is down and the semaphore fails open. Errors
    /// name the bulkhead, with the semaphore in the message.
    pub(crate) fn lease_for(
        &self,
        bulkhead: &Arc<str>,
        deadline: Option<Instant>,
    ) -> Result<Option<Lease>, BulkheadError> {
        let wait = deadline.map_or(self.shared.max_wait, |d| {
            d.saturating_duration_since(Instant::now())
                .min(self.shared.max_wait)
        });
        match self.acquire_timeout(wait) {
            Ok(lease) => Ok(Some(lease)),
            Err(BulkheadError::Unavailable { .. }) if self.shared.on_outage == Outage::FailOpen => {
                bump(&self.shared.counters.ran_without_lease);
                Ok(None)
            }
            Err(BulkheadError::Unavailable { message, .. }) => Err(BulkheadError::Unavailable {
                name: bulkhead.clone(),
                message: format!(
                    "its fleet-wide semaphore '{}' is unavailable: {message}",
                    self.shared.name
                ),
            }),
            Err(BulkheadError::Rejected { capacity, .. }) => Err(BulkheadError::Rejected {
                name: bulkhead.clone(),
                capacity,
            }),
            Err(other) => Err(other),
        }
    }

    /// Takes a lease, waiting up to the configured
    /// [`max_wait`](RedisSemaphoreConfig::max_wait).
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](RedisSemaphore::acquire_timeout).
    pub fn acquire(&self) -> Result<Lease, BulkheadError> {
        self.acquire_timeout(self.shared.max_wait)
    }

    /// Takes a lease, waiting up to `timeout` for one to be free. A full semaphore is
    /// polled with exponential back-off (2 ms doubling to 100 ms, jittered), never in a
    /// tight loop against the server.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Rejected`] when no permit was free within `timeout`;
    /// [`BulkheadError::Unavailable`] when Redis could not be reached or answered with an
    /// error (fail closed, within the connect timeout); [`BulkheadError::Spawn`] when the
    /// renewal thread could not be started (the lease is released). Each names the
    /// semaphore.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
    ///
    /// let api = RedisSemaphore::new("partner-api", RedisSemaphoreConfig::new("redis://127.0.0.1/", 1))?;
    /// let first = api.acquire_timeout(Duration::ZERO)?;
    /// let second = api.acquire_timeout(Duration::from_millis(20));
    /// assert!(second.unwrap_err().is_rejected());
    /// assert!(first.is_valid());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Lease, BulkheadError> {
        let start = Instant::now();
        let deadline = start.checked_add(timeout);
        let mut pause = FIRST_POLL;
        let mut jitter = std::collections::hash_map::RandomState::new().build_hasher();
        loop {
            let sent = Instant::now();
            let token = self.shared.try_acquire()?;
            if token > 0 {
                return Lease::start(&self.shared, token, sent);
            }
            let now = Instant::now();
            let left = match deadline {
                Some(deadline) if now >= deadline => {
                    bump(&self.shared.counters.rejected);
                    return Err(BulkheadError::Rejected {
                        name: self.shared.name.clone(),
                        capacity: self.shared.permits,
                    });
                }
                Some(deadline) => deadline - now,
                None => MAX_POLL,
            };
            // Half the pause fixed, half random: processes that missed together spread out.
            jitter.write_u64(token);
            let half = pause / 2;
            let spread = half.as_micros().max(1) as u64;
            let pause_now = half + Duration::from_micros(jitter.finish() % spread);
            thread::sleep(pause_now.min(left));
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// A snapshot of this process's counters for the semaphore.
    pub fn stats(&self) -> RedisSemaphoreStats {
        let c = &self.shared.counters;
        RedisSemaphoreStats {
            name: self.shared.name.to_string(),
            permits: self.shared.permits,
            held: c.held.load(Ordering::Relaxed),
            acquired: c.acquired.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            renewals: c.renewals.load(Ordering::Relaxed),
            leases_lost: c.lost.load(Ordering::Relaxed),
            ran_without_lease: c.ran_without_lease.load(Ordering::Relaxed),
        }
    }

    /// How many leases are held fleet-wide right now (expired ones not counted): one round
    /// trip to Redis.
    ///
    /// # Errors
    ///
    /// [`BulkheadError::Unavailable`] when Redis could not be reached.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
    ///
    /// let db = RedisSemaphore::new("db", RedisSemaphoreConfig::new("redis://127.0.0.1/", 5))?;
    /// let lease = db.acquire()?;
    /// assert!(db.held_fleet_wide()? >= 1);
    /// # drop(lease);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn held_fleet_wide(&self) -> Result<usize, BulkheadError> {
        let s = &self.shared;
        s.with_connection(|con| s.held.key(&s.holders).invoke::<usize>(con))
    }
}

impl Shared {
    fn unavailable(&self, error: &redis::RedisError) -> BulkheadError {
        bump(&self.counters.unavailable);
        BulkheadError::Unavailable {
            name: self.name.clone(),
            message: error.to_string(),
        }
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        con.set_read_timeout(Some(self.connect_timeout))?;
        con.set_write_timeout(Some(self.connect_timeout))?;
        Ok(con)
    }

    /// Runs `f` on an idle connection (or a new one), returning it to the idle list unless
    /// it erred.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BulkheadError> {
        let idle = self.idle.lock().pop();
        let mut con = match idle {
            Some(con) => con,
            None => self.connect().map_err(|e| self.unavailable(&e))?,
        };
        match f(&mut con) {
            Ok(value) => {
                self.idle.lock().push(con);
                Ok(value)
            }
            Err(e) => Err(self.unavailable(&e)),
        }
    }

    /// One attempt: the token granted, or 0 when full.
    fn try_acquire(&self) -> Result<u64, BulkheadError> {
        self.with_connection(|con| {
            self.acquire
                .key(&self.holders)
                .key(&self.fence)
                .arg(self.permits)
                .arg(millis(self.lease))
                .invoke::<u64>(con)
        })
    }

    fn release(&self, token: u64) {
        // Best effort: if Redis is unreachable, the lease expires on its own.
        let _ = self.with_connection(|con| {
            self.release
                .key(&self.holders)
                .arg(token)
                .invoke::<u64>(con)
        });
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A permit from a [`RedisSemaphore`], held until dropped: renewed in the background every
/// third of the lease time, released on drop (also while unwinding).
///
/// `Send + 'static`: it may move to another thread or into a task.
///
/// # Examples
///
/// ```no_run
/// use bulkheads::{RedisSemaphore, RedisSemaphoreConfig};
///
/// let db = RedisSemaphore::new("db", RedisSemaphoreConfig::new("redis://127.0.0.1/", 5))?;
/// let lease = db.acquire()?;
/// let token = lease.fence_token();
/// std::thread::spawn(move || {
///     assert!(lease.is_valid());
///     // ... the call, passing `token` to a downstream that checks it ...
/// })
/// .join()
/// .unwrap();
/// assert!(db.acquire()?.fence_token() > token);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "the permit is released when the lease is dropped"]
pub struct Lease {
    shared: Arc<Shared>,
    state: Arc<LeaseState>,
    token: u64,
}

struct LeaseState {
    inner: Mutex<LeaseInner>,
    wake: Condvar,
}

struct LeaseInner {
    // HELD: renewing while `!released && !lost`.
    // RELEASED: the holder dropped the lease; the renewal thread exits.
    released: bool,
    // LOST: a renewal was refused, or `valid_until` passed without one; final.
    lost: bool,
    /// On the local monotonic clock, never later than the server's expiry.
    valid_until: Instant,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("semaphore", &self.shared.name)
            .field("fence_token", &self.token)
            .field("valid", &self.is_valid())
            .finish()
    }
}

impl Lease {
    fn start(shared: &Arc<Shared>, token: u64, sent: Instant) -> Result<Self, BulkheadError> {
        let state = Arc::new(LeaseState {
            inner: Mutex::new(LeaseInner {
                released: false,
                lost: false,
                valid_until: sent + shared.lease,
            }),
            wake: Condvar::new(),
        });
        let spawned = {
            let shared = Arc::clone(shared);
            let state = Arc::clone(&state);
            // Linux shows 15 bytes of a thread's name: the semaphore's name first.
            thread::Builder::new()
                .name(format!("bh-{}-lease", shared.name))
                .spawn(move || renew_loop(&shared, &state, token))
        };
        match spawned {
            Ok(_) => {
                bump(&shared.counters.acquired);
                shared.counters.held.fetch_add(1, Ordering::Relaxed);
                Ok(Self {
                    shared: Arc::clone(shared),
                    state,
                    token,
                })
            }
            Err(e) => {
                shared.release(token);
                Err(BulkheadError::Spawn {
                    name: shared.name.clone(),
                    kind: e.kind(),
                    message: e.to_string(),
                })
            }
        }
    }

    /// This lease's fence token: strictly greater than every token granted before it under
    /// this semaphore's name, fleet-wide. Pass it to a downstream that can refuse a token
    /// older than one it has already seen — the real fence (see [`RedisSemaphore`]).
    pub fn fence_token(&self) -> u64 {
        self.token
    }

    /// True while the lease is known to be held: its last renewal succeeded less than a
    /// lease time ago. False for good once a renewal was refused or none succeeded in time
    /// (Redis unreachable, the process stalled): the permit may have gone to someone else.
    pub fn is_valid(&self) -> bool {
        let inner = self.state.inner.lock();
        !inner.lost && Instant::now() < inner.valid_until
    }

    /// The semaphore's name.
    pub fn semaphore(&self) -> &str {
        &self.shared.name
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut inner = self.state.inner.lock();
            inner.released = true;
        }
        self.state.wake.notify_one();
        // Released here, not by the renewal thread, so the permit is free when drop returns.
        // A renewal racing with this finds the token gone and does nothing.
        self.shared.release(self.token);
        self.shared.counters.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The renewal thread: every third of the lease, on its own connection.
fn renew_loop(shared: &Shared, state: &LeaseState, token: u64) {
    let period = shared.lease / 3;
    let mut con: Option<Connection> = None;
    let mut next = Instant::now() + period;
    loop {
        {
            let mut inner = state.inner.lock();
            while !inner.released && Instant::now() < next {
                state.wake.wait_until(&mut inner, next);
            }
            if inner.released || inner.lost {
                return;
            }
        }
        let sent = Instant::now();
        let renewed = match con.take() {
            Some(c) => Ok(c),
            None => shared.connect(),
        }
        .and_then(|mut c| {
            let r = shared
                .renew
                .key(&shared.holders)
                .arg(token)
                .arg(millis(shared.lease))
                .invoke::<u64>(&mut c);
            if r.is_ok() {
                con = Some(c);
            }
            r
        });
        let mut inner = state.inner.lock();
        if inner.released {
            // Dropped while this renewal was out: its answer (the token may already be gone,
            // released by the holder) says nothing about a lease that no longer exists.
            return;
        }
        match renewed {
            Ok(1) => {
                bump(&shared.counters.renewals);
                inner.valid_until = sent + shared.lease;
                next = sent + period;
            }
            Ok(_) => {
                // The server no longer has the token: it expired, and may be someone else's.
                bump(&shared.counters.lost);
                inner.lost = true;
                return;
            }
            Err(_) => {
                if Instant::now() >= inner.valid_until {
                    bump(&shared.counters.lost);
                    inner.lost = true;
                    return;
                }
                // Try again soon, while the lease still has time left.
                next = Instant::now() + period / 4;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn send_and_sync() {
        assert_send_sync::<RedisSemaphore>();
        assert_send::<Lease>();
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |c: RedisSemaphoreConfig| RedisSemaphore::new("db", c).unwrap_err().field();
        assert_eq!(bad(RedisSemaphoreConfig::new("http://x", 1)), "url");
        assert_eq!(bad(RedisSemaphoreConfig::new("", 1)), "url");
        assert_eq!(bad(RedisSemaphoreConfig::new("redis://h/", 0)), "permits");
        assert_eq!(
            bad(RedisSemaphoreConfig::new("redis://h/", 1).lease(Duration::from_millis(1))),
            "lease"
        );
        assert_eq!(
            bad(RedisSemaphoreConfig::new("redis://h/", 1).connect_timeout(Duration::ZERO)),
            "connect_timeout"
        );
        let err = RedisSemaphore::new("", RedisSemaphoreConfig::new("redis://h/", 1)).unwrap_err();
        assert_eq!(err.field(), "name");
    }

    #[test]
    fn prometheus_names_are_escaped() {
        let s = RedisSemaphore::new("a\"b", RedisSemaphoreConfig::new("redis://h/", 3)).unwrap();
        let text = s.stats().to_prometheus();
        assert!(
            text.contains("bulkhead_global_held{bulkhead=\"a\\\"b\"} 0\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE ").count(), 6);
    }

    #[test]
    fn keys_share_a_hash_tag() {
        let s = RedisSemaphore::new("db", RedisSemaphoreConfig::new("redis://h/", 1)).unwrap();
        assert_eq!(s.shared.holders, "{bulkheads:db}:holders");
        assert_eq!(s.shared.fence, "{bulkheads:db}:fence");
    }
}
