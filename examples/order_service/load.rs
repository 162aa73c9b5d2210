//! One run of the load: start the downstreams, build the bulkheads, offer orders at a fixed
//! rate, make email sick halfway, and record every call and order.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{
    BulkheadManager, CircuitBreakerConfig, CircuitState, EventKind, PoolConfig, SlidingWindow,
};

use crate::downstream::Downstream;
use crate::service::{CallSample, Client, Confirmation, Dep, OrderSample, OrderService, Recorder};

type BoxError = Box<dyn std::error::Error>;

/// The service's request threads, like a web server's worker pool. Enough that in run (a)
/// the few callers stuck on email never starve the rest: the front door is not what is
/// measured here.
const HANDLERS: usize = 32;
/// Orders waiting for a request thread; past this an order is shed (counted, not shipped).
const BACKLOG: usize = 64;
/// How slow email becomes mid-run.
pub const SICK_EMAIL: Duration = Duration::from_secs(2);

/// How the dependencies share threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// (a) one bulkhead per dependency.
    PerDependency,
    /// (b) one shared pool with the same total threads and queue.
    Shared,
    /// (c) as (a), with a circuit breaker in front of email's pool.
    PerDependencyBreaker,
}

/// Email's breaker in run (c): opens when half of the last 4 recorded calls failed, probes
/// with 3 calls after 500 ms. The window is small because few calls reach it while email is
/// sick: its two threads admit two calls a second (each waits out its 1 s deadline), and the
/// rest are rejected by the pool, which is not email's failure and is not recorded.
fn email_breaker() -> CircuitBreakerConfig {
    CircuitBreakerConfig::new()
        .sliding_window(SlidingWindow::Count(4))
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .wait_in_open(Duration::from_millis(500))
        .half_open_calls(3)
}

/// Threads and queue of each dependency's pool, in `Dep::ALL` order.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub threads: [usize; 3],
    pub queues: [usize; 3],
}

impl Sizes {
    pub fn total_threads(&self) -> usize {
        self.threads.iter().sum()
    }

    pub fn total_queue(&self) -> usize {
        self.queues.iter().sum()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    pub layout: Layout,
    pub rate: f64,
    pub duration: Duration,
    pub degrade_at: Duration,
    /// When email becomes healthy again, if it does in this run.
    pub recover_at: Option<Duration>,
    pub sizes: Sizes,
}

/// What one run measured.
#[derive(Debug)]
pub struct RunResult {
    pub calls: Vec<CallSample>,
    pub orders: Vec<OrderSample>,
    /// Seconds into the run when email became sick.
    pub degraded_at: f64,
    /// Seconds into the run when email recovered (infinite if it did not).
    pub recovered_at: f64,
    /// Email's breaker's transitions: (seconds into the run, from, to). Run (c) only.
    pub transitions: Vec<(f64, CircuitState, CircuitState)>,
    /// The library's own stats table at the end of the run.
    pub stats: String,
    /// `manager.recommend()` at the end of the run: sizes from what the pools observed.
    pub recommendations: String,
}

/// Starts the three downstreams at their healthy latency.
pub fn start_downstreams() -> Result<Vec<Downstream>, BoxError> {
    Dep::ALL
        .iter()
        .map(|dep| Downstream::start(dep.name(), dep.healthy_latency()))
        .collect()
}

fn client_for(downstreams: &[Downstream]) -> Client {
    Client::new([0, 1, 2].map(|i| downstreams[i].url().to_owned()))
}

/// Measures each healthy downstream's p99 with `calls` sequential calls (no bulkhead).
pub fn measure_p99(calls: usize) -> Result<[Duration; 3], BoxError> {
    let downstreams = start_downstreams()?;
    let client = client_for(&downstreams);
    let mut p99 = [Duration::ZERO; 3];
    for dep in Dep::ALL {
        let mut took = Vec::with_capacity(calls);
        for order in 0..calls as u64 {
            let start = Instant::now();
            client
                .call(dep, order, start + Duration::from_secs(2))
                .map_err(|err| format!("calibrating {}: {err}", dep.name()))?;
            took.push(start.elapsed());
        }
        took.sort();
        p99[dep.index()] = took[(took.len() * 99).div_ceil(100).saturating_sub(1)];
    }
    Ok(p99)
}

/// Runs the load once with the given layout.
pub fn run(config: &RunConfig, label: &str) -> Result<RunResult, BoxError> {
    let downstreams = start_downstreams()?;
    let client = client_for(&downstreams);
    let sizes = config.sizes;
    let per_dependency = || {
        Dep::ALL
            .iter()
            .fold(BulkheadManager::builder(), |builder, dep| {
                let i = dep.index();
                builder.pool(
                    dep.name(),
                    PoolConfig::new(sizes.threads[i]).queue_capacity(sizes.queues[i]),
                )
            })
    };
    let manager = match config.layout {
        Layout::PerDependency => per_dependency().build()?,
        Layout::PerDependencyBreaker => per_dependency()
            .circuit_breaker(Dep::Email.name(), email_breaker())
            .build()?,
        Layout::Shared => BulkheadManager::builder()
            .pool(
                "shared",
                PoolConfig::new(sizes.total_threads()).queue_capacity(sizes.total_queue()),
            )
            .build()?,
    };
    let pools = match config.layout {
        Layout::PerDependency | Layout::PerDependencyBreaker => {
            Dep::ALL.map(|dep| manager.pool(dep.name()))
        }
        Layout::Shared => [(); 3].map(|()| manager.pool("shared")),
    };
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let email_breaker = match config.layout {
        Layout::PerDependencyBreaker => manager.circuit_breaker(Dep::Email.name()),
        _ => None,
    };
    let transitions = Arc::new(Mutex::new(Vec::new()));
    if let Some(breaker) = &email_breaker {
        let log = Arc::clone(&transitions);
        breaker.on_event(move |e| {
            if let EventKind::CircuitStateChanged { from, to } = e.kind {
                let at = started.elapsed().as_secs_f64();
                log.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((at, from, to));
            }
        });
    }
    let service = Arc::new(OrderService {
        pools,
        email_breaker,
        client,
        recorder: Arc::clone(&recorder),
        started,
    });

    let (orders_tx, orders_rx) = crossbeam_channel::bounded::<u64>(BACKLOG);
    let duration = config.duration;
    let handlers = (0..HANDLERS)
        .map(|i| {
            let orders = orders_rx.clone();
            let service = Arc::clone(&service);
            thread::Builder::new()
                .name(format!("handler-{i}"))
                .spawn(move || {
                    for order in orders {
                        // Orders still waiting when the run ends are not started.
                        if service.started.elapsed() >= duration {
                            continue;
                        }
                        let placed = service.place_order(order);
                        service.recorder.order(OrderSample {
                            at: service.started.elapsed().as_secs_f64(),
                            shipped: placed.is_ok(),
                            send_later: placed == Ok(Confirmation::SendLater),
                        });
                    }
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    drop(orders_rx);

    // Open-loop load: orders arrive on schedule whether or not earlier ones are done,
    // as customers do. The loop is bounded by the count of orders the run offers.
    let total = (config.rate * duration.as_secs_f64()).round() as u64;
    let mut progress = Progress::new(label, duration);
    let mut degraded_at = None;
    let mut recovered_at = None;
    for order in 0..total {
        let due = started + Duration::from_secs_f64(order as f64 / config.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait); // pacing the arrivals, not synchronising threads
        }
        let now = started.elapsed();
        if degraded_at.is_none() && now >= config.degrade_at {
            downstreams[Dep::Email.index()].set_latency(SICK_EMAIL);
            degraded_at = Some(now);
        }
        let due = config.recover_at.is_some_and(|at| now >= at);
        if due && recovered_at.is_none() {
            downstreams[Dep::Email.index()].set_latency(Dep::Email.healthy_latency());
            recovered_at = Some(now);
        }
        if orders_tx.try_send(order).is_err() {
            // Every request thread busy and the backlog full: the order is shed.
            recorder.order(OrderSample {
                at: now.as_secs_f64(),
                shipped: false,
                send_later: false,
            });
        }
        let email = match (degraded_at, recovered_at) {
            (_, Some(_)) => "recovered",
            (Some(_), None) => "SICK (2 s a call)",
            (None, None) => "healthy",
        };
        progress.show(now, &recorder, email);
    }
    drop(orders_tx);
    for handler in handlers {
        handler.join().map_err(|_| "a request thread panicked")?;
    }
    progress.finish();

    manager.shutdown(Duration::from_secs(5));
    let stats = manager.stats().to_string();
    let recommendations = manager.recommend().to_string();
    drop(service);
    drop(downstreams);
    let recorder = Arc::try_unwrap(recorder).map_err(|_| "recorder still shared")?;
    Ok(RunResult {
        calls: recorder
            .calls
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        orders: recorder
            .orders
            .into_inner()
            .unwrap_or_else(|e| e.into_inner()),
        degraded_at: degraded_at.map_or(f64::INFINITY, |d| d.as_secs_f64()),
        recovered_at: recovered_at.map_or(f64::INFINITY, |d| d.as_secs_f64()),
        transitions: std::mem::take(
            &mut *transitions.lock().unwrap_or_else(PoisonError::into_inner),
        ),
        stats,
        recommendations,
    })
}

/// The progress line on stderr: rewritten in place on a terminal, one line a second
/// otherwise (so a log stays readable).
struct Progress<'a> {
    label: &'a str,
    duration: Duration,
    tty: bool,
    next: Duration,
}

impl<'a> Progress<'a> {
    fn new(label: &'a str, duration: Duration) -> Self {
        Self {
            label,
            duration,
            tty: std::io::stderr().is_terminal(),
            next: Duration::ZERO,
        }
    }

    fn show(&mut self, now: Duration, recorder: &Recorder, email: &str) {
        if now < self.next {
            return;
        }
        self.next = now
            + if self.tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1)
            };
        let line = format!(
            "{}  {:4.1}/{:.0} s  {:6} orders shipped  email {}",
            self.label,
            now.as_secs_f64(),
            self.duration.as_secs_f64(),
            recorder.shipped.load(std::sync::atomic::Ordering::Relaxed),
            email,
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r{line:<78}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r{:<78}\r", "");
        }
    }
}
