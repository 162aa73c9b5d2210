//! The isolation property, end to end: when one dependency falls sick, per-dependency
//! bulkheads keep the healthy dependencies' throughput; one shared pool of the same total
//! size loses it.
//!
//! The scenario is the order service of `examples/order_service`, in process: each order
//! checks stock (inventory), charges the card (payment) and sends a confirmation (email).
//! The healthy dependencies simulate their latency with a short sleep inside the task; the
//! sick email blocks on a gate that the test opens when it ends. Load is offered on a fixed
//! schedule by a few callers, and throughput is the count of orders shipped within a fixed
//! window, compared with the same window before email fell sick. The bounds are generous
//! (at least half kept with bulkheads, at most 30% with the shared pool) so that a noisy
//! two-core machine does not make the test flaky; measured values are near 100% and 0%.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadManager, PoolConfig, ThreadPoolBulkhead};
use crossbeam_channel::Receiver;

/// The callers: the service's request threads.
const CALLERS: u32 = 8;
/// Each caller is offered one order per period: 400 orders/s in all.
const PERIOD: Duration = Duration::from_millis(20);
/// The window throughput is counted over, before and after email falls sick.
const WINDOW: Duration = Duration::from_millis(1_000);
/// How long any wait for a state may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);
/// Deadlines of the calls: generous for inventory and payment, short for best-effort email.
const STOCK_DEADLINE: Duration = Duration::from_millis(100);
const CHARGE_DEADLINE: Duration = Duration::from_millis(100);
const EMAIL_DEADLINE: Duration = Duration::from_millis(10);

/// The tests measure throughput on a shared two-core machine: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Polls `cond` about every millisecond until it holds; fails the test after `PATIENCE`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// The bulkhead each dependency's calls go through.
struct Compartments {
    inventory: Arc<ThreadPoolBulkhead>,
    payment: Arc<ThreadPoolBulkhead>,
    email: Arc<ThreadPoolBulkhead>,
}

/// The email dependency: healthy, or sick and blocking until the gate opens.
#[derive(Clone)]
struct Email {
    sick: Arc<AtomicBool>,
    /// Never sent to: dropping its sender opens it. The wait is bounded so that a failed
    /// test never leaves a worker blocked for ever.
    gate: Receiver<()>,
}

impl Email {
    fn send(&self) {
        if self.sick.load(Ordering::Relaxed) {
            let _ = self.gate.recv_timeout(PATIENCE);
        } else {
            thread::sleep(Duration::from_millis(1)); // simulated latency
        }
    }
}

/// Places one order; true when it shipped. A failed email never stops an order.
fn place_order(pools: &Compartments, email: &Email) -> bool {
    let email = email.clone();
    let shipped = pools
        .inventory
        .execute_timeout(STOCK_DEADLINE, || {
            thread::sleep(Duration::from_millis(1)) // simulated latency
        })
        .and_then(|()| {
            pools.payment.execute_timeout(CHARGE_DEADLINE, || {
                thread::sleep(Duration::from_millis(2)) // simulated latency
            })
        })
        .is_ok();
    if shipped {
        // Best effort: rejected or timed out means "send later".
        let _send_later = pools
            .email
            .execute_timeout(EMAIL_DEADLINE, move || email.send())
            .is_err();
    }
    shipped
}

/// Runs the scenario and returns (orders shipped in the healthy window, in the sick window).
/// `email_full` says when the sick email has filled what it can fill.
fn shipped_before_and_after(
    pools: Compartments,
    email_full: impl Fn(&Compartments) -> bool,
) -> (u64, u64) {
    let pools = Arc::new(pools);
    let (gate_open, gate) = crossbeam_channel::bounded::<()>(0);
    let email = Email {
        sick: Arc::new(AtomicBool::new(false)),
        gate,
    };
    let shipped = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (pools, email) = (Arc::clone(&pools), email.clone());
            let (shipped, stop) = (Arc::clone(&shipped), Arc::clone(&stop));
            thread::spawn(move || {
                // Staggered so the callers do not all arrive at the same instant.
                let offset = PERIOD * caller / CALLERS;
                for k in 0_u32.. {
                    // Bounded in time even if the test thread never says stop.
                    if stop.load(Ordering::Relaxed) || start.elapsed() > PATIENCE * 3 {
                        break;
                    }
                    // Open loop: a caller held up catches up on the orders it missed.
                    let due = start + offset + PERIOD * k;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait); // pacing the load, not synchronising
                    }
                    if place_order(&pools, &email) {
                        shipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let count = || shipped.load(Ordering::Relaxed);
    wait_until("the first orders shipped", || count() >= u64::from(CALLERS));
    let before = count();
    thread::sleep(WINDOW); // counting over a fixed window of time
    let healthy = count() - before;

    email.sick.store(true, Ordering::Relaxed);
    wait_until("the sick email filled what it can", || email_full(&pools));
    let before = count();
    thread::sleep(WINDOW);
    let sick = count() - before;

    stop.store(true, Ordering::Relaxed);
    drop(gate_open); // the sick email calls return
    for caller in callers {
        caller.join().expect("caller panicked");
    }
    (healthy, sick)
}

fn report(layout: &str, healthy: u64, sick: u64) -> f64 {
    let kept = sick as f64 / healthy as f64;
    eprintln!(
        "{layout}: {healthy} orders shipped in {WINDOW:?} with email healthy, {sick} with email sick: {:.0}% kept",
        kept * 100.0
    );
    assert!(
        healthy >= 40,
        "{layout}: only {healthy} orders shipped in the healthy window; the machine is too busy to tell"
    );
    kept
}

#[test]
fn per_dependency_bulkheads_keep_healthy_throughput_while_one_dependency_is_sick() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // Each healthy pool admits as many calls as there are callers; email has two threads
    // and no queue, so a sick email call past those two is rejected at once.
    let manager = BulkheadManager::builder()
        .pool("inventory", PoolConfig::new(4).queue_capacity(4))
        .pool("payment", PoolConfig::new(4).queue_capacity(4))
        .pool("email", PoolConfig::new(2))
        .build()
        .unwrap();
    let pools = Compartments {
        inventory: manager.pool("inventory"),
        payment: manager.pool("payment"),
        email: manager.pool("email"),
    };
    let (healthy, sick) = shipped_before_and_after(pools, |pools| pools.email.stats().running == 2);
    let kept = report("per-dependency bulkheads", healthy, sick);
    assert!(
        kept >= 0.5,
        "with a bulkhead per dependency, a sick email must not take the orders down: kept {:.0}%\n{}",
        kept * 100.0,
        manager.stats()
    );
    let email = manager.pool("email").stats();
    assert!(
        email.rejected > 0,
        "the sick email compartment never filled: {email:?}"
    );
    assert!(manager.shutdown(PATIENCE));
}

#[test]
fn one_shared_pool_of_the_same_size_loses_healthy_throughput_while_one_dependency_is_sick() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // The same total: 4 + 4 + 2 threads, 4 + 4 + 0 queue.
    let shared =
        Arc::new(ThreadPoolBulkhead::new("shared", PoolConfig::new(10).queue_capacity(8)).unwrap());
    let pools = Compartments {
        inventory: Arc::clone(&shared),
        payment: Arc::clone(&shared),
        email: Arc::clone(&shared),
    };
    let (healthy, sick) =
        shipped_before_and_after(pools, |pools| pools.email.stats().running == 10);
    let kept = report("one shared pool", healthy, sick);
    assert!(
        kept <= 0.3,
        "with one shared pool, a sick email should take the orders down: kept {:.0}%\n{}",
        kept * 100.0,
        shared.stats()
    );
    shared.shutdown();
    assert!(shared.await_termination(PATIENCE));
}
