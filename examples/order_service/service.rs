//! The order service: three dependencies, each call through a bulkhead with a deadline,
//! over a real HTTP client whose socket timeout is whatever is left of that deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bulkheads::{BulkheadError, CircuitBreaker, Deadline, ThreadPoolBulkhead};

/// A downstream the order service calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dep {
    Inventory,
    Payment,
    Email,
}

impl Dep {
    pub const ALL: [Dep; 3] = [Dep::Inventory, Dep::Payment, Dep::Email];

    pub fn name(self) -> &'static str {
        match self {
            Dep::Inventory => "inventory",
            Dep::Payment => "payment",
            Dep::Email => "email",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// How long the downstream takes to answer when it is healthy. Card charges are the
    /// slow step of a healthy order; stock checks and mail hand-off are quick.
    pub fn healthy_latency(self) -> Duration {
        match self {
            Dep::Inventory => Duration::from_millis(2),
            Dep::Payment => Duration::from_millis(10),
            Dep::Email => Duration::from_millis(2),
        }
    }

    /// Each call's deadline: far above the healthy p99 (so noise does not fail calls), far
    /// below what a sick downstream takes (so a sick call gives its thread back).
    pub fn deadline(self) -> Duration {
        match self {
            Dep::Inventory => Duration::from_millis(250),
            Dep::Payment => Duration::from_millis(500),
            Dep::Email => Duration::from_millis(1000),
        }
    }
}

/// How one call ended, as the order service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The compartment was full: refused at once, never sent.
    Rejected,
    /// The deadline passed: in the queue, or on the socket.
    TimedOut,
    /// Anything else (an HTTP error, a panic, a shut-down pool).
    Failed,
    /// The dependency's circuit breaker refused the call: never sent, no thread taken.
    NotPermitted,
}

/// Why an HTTP call failed.
#[derive(Debug)]
pub enum HttpError {
    /// The deadline had passed before the request could be sent.
    DeadlinePassed,
    /// The socket timeout (the time left of the deadline) ran out.
    TimedOut,
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::DeadlinePassed => f.write_str("deadline passed before the call"),
            HttpError::TimedOut => f.write_str("socket timeout"),
            HttpError::Other(message) => f.write_str(message),
        }
    }
}

impl From<ureq::Error> for HttpError {
    fn from(err: ureq::Error) -> Self {
        match err {
            ureq::Error::Timeout(_) => HttpError::TimedOut,
            other => HttpError::Other(other.to_string()),
        }
    }
}

/// A blocking HTTP client for the three downstreams; cheap to clone (one shared agent).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    urls: Arc<[String; 3]>,
}

impl Client {
    pub fn new(urls: [String; 3]) -> Self {
        let agent = ureq::Agent::config_builder()
            // Keep connections for every call that can be in flight at once, so a burst
            // reuses them instead of opening new sockets.
            .max_idle_connections(256)
            .max_idle_connections_per_host(64)
            .build()
            .into();
        Self {
            agent,
            urls: Arc::new(urls),
        }
    }

    /// One HTTP call to `dep` that gives up at `deadline`: the socket timeout is the time
    /// left, so a call that started keeps its thread no longer than its caller waits.
    pub fn call(&self, dep: Dep, order: u64, deadline: Instant) -> Result<(), HttpError> {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(HttpError::DeadlinePassed)?;
        let base = &self.urls[dep.index()];
        let response = match dep {
            Dep::Inventory => self
                .agent
                .get(format!("{base}/stock?item={}", order % 97))
                .config()
                .timeout_global(Some(left))
                .build()
                .call(),
            Dep::Payment => self
                .agent
                .post(format!("{base}/charge"))
                .config()
                .timeout_global(Some(left))
                .build()
                .send(format!("order={order}&amount_cents=4200")),
            Dep::Email => self
                .agent
                .post(format!("{base}/send"))
                .config()
                .timeout_global(Some(left))
                .build()
                .send(format!("order={order}&template=confirmation")),
        };
        let _body = response?.body_mut().read_to_string()?;
        Ok(())
    }
}

/// What became of an order's confirmation email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    Sent,
    /// The email compartment was full or the call timed out: the order still ships, and a
    /// background job sends the confirmation later.
    SendLater,
}

/// One call as recorded: when it started (seconds into the run), how long the caller
/// waited, and how it ended.
#[derive(Debug, Clone, Copy)]
pub struct CallSample {
    pub dep: Dep,
    pub at: f64,
    pub waited: Duration,
    pub outcome: Outcome,
}

/// One order as recorded: when it finished (seconds into the run) and how.
#[derive(Debug, Clone, Copy)]
pub struct OrderSample {
    pub at: f64,
    pub shipped: bool,
    pub send_later: bool,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<CallSample>>,
    pub orders: Mutex<Vec<OrderSample>>,
    /// Orders shipped so far, for the progress line.
    pub shipped: AtomicU64,
}

impl Recorder {
    pub fn call(&self, sample: CallSample) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
    }

    pub fn order(&self, sample: OrderSample) {
        if sample.shipped {
            self.shipped.fetch_add(1, Ordering::Relaxed);
        }
        self.orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sample);
    }
}

/// The order service: for each dependency the bulkhead its calls go through (three pools in
/// run (a); the same shared pool three times in run (b)).
pub struct OrderService {
    pub pools: [Arc<ThreadPoolBulkhead>; 3],
    /// Run (c): email's circuit breaker, asked before email's pool.
    pub email_breaker: Option<Arc<CircuitBreaker>>,
    pub client: Client,
    pub recorder: Arc<Recorder>,
    pub started: Instant,
}

impl OrderService {
    /// Places one order: check stock, charge the card, then send the confirmation.
    /// Stock and payment must succeed for the order to ship; the email is best effort.
    pub fn place_order(&self, order: u64) -> Result<Confirmation, Outcome> {
        self.call(Dep::Inventory, order)
            .and_then(|()| self.call(Dep::Payment, order))
            .map(|()| {
                // The fallback: a full or timed-out email compartment, or email's open
                // breaker, means "send later".
                self.call(Dep::Email, order)
                    .map_or(Confirmation::SendLater, |()| Confirmation::Sent)
            })
    }

    /// One call to `dep` through its bulkhead, with that dependency's deadline.
    fn call(&self, dep: Dep, order: u64) -> Result<(), Outcome> {
        let budget = dep.deadline();
        let submitted = Instant::now();
        let breaker = self.email_breaker.as_deref().filter(|_| dep == Dep::Email);
        // Asked before the pool: a refused call takes no thread and is not sent.
        let permit = match breaker.map(CircuitBreaker::try_acquire) {
            Some(Err(_)) => return self.record(dep, submitted, Outcome::NotPermitted),
            Some(Ok(permit)) => Some(permit),
            None => None,
        };
        let client = self.client.clone();
        let result = self.pools[dep.index()].execute_timeout(budget, move || {
            // The deadline the caller waits on, with the time spent queued already gone:
            // the socket timeout is what is left of it.
            let deadline = Deadline::current().map_or(submitted + budget, Deadline::instant);
            client.call(dep, order, deadline)
        });
        let outcome = match result {
            Ok(Ok(())) => Outcome::Ok,
            Ok(Err(HttpError::TimedOut | HttpError::DeadlinePassed)) => Outcome::TimedOut,
            Ok(Err(HttpError::Other(_))) => Outcome::Failed,
            Err(err) => classify(&err),
        };
        if let Some(permit) = permit {
            match outcome {
                Outcome::Ok => permit.success(),
                // A full compartment says nothing about email's health.
                Outcome::Rejected => permit.ignore(),
                _ => permit.failure(),
            }
        }
        self.record(dep, submitted, outcome)
    }

    fn record(&self, dep: Dep, submitted: Instant, outcome: Outcome) -> Result<(), Outcome> {
        self.recorder.call(CallSample {
            dep,
            at: submitted.duration_since(self.started).as_secs_f64(),
            waited: submitted.elapsed(),
            outcome,
        });
        match outcome {
            Outcome::Ok => Ok(()),
            failed => Err(failed),
        }
    }
}

fn classify(err: &BulkheadError) -> Outcome {
    if err.is_rejected() {
        Outcome::Rejected
    } else if err.is_timeout() {
        Outcome::TimedOut
    } else {
        Outcome::Failed
    }
}
