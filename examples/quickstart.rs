//! The quick start: three dependencies, each in its own compartment, one of them sick.
//!
//! `cargo run --release --example quickstart` — runs in about a second and prints the
//! stats table.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bulkheads::{BulkheadManager, PoolConfig, SemaphoreConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Arc::new(
        BulkheadManager::builder()
            .pool("inventory", PoolConfig::new(4).queue_capacity(4))
            .pool("payment", PoolConfig::new(4).queue_capacity(4))
            // The sick one: every call takes 200 ms, far longer than the others.
            .pool(
                "email",
                PoolConfig::new(2)
                    .queue_capacity(2)
                    .default_timeout(Duration::from_millis(100)),
            )
            .semaphore("cache", SemaphoreConfig::new(8))
            .build()?,
    );

    let orders = Arc::new(AtomicUsize::new(0));
    let emails_later = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let callers: Vec<_> = (0..8)
        .map(|caller| {
            let manager = Arc::clone(&manager);
            let orders = Arc::clone(&orders);
            let emails_later = Arc::clone(&emails_later);
            thread::spawn(move || {
                while started.elapsed() < Duration::from_millis(800) {
                    let item = caller;
                    let cached = manager.semaphore("cache").call(move || item % 2 == 0);
                    let stock = manager.pool("inventory").execute(move || {
                        thread::sleep(Duration::from_millis(1));
                        item + 10
                    });
                    let charged = manager.pool("payment").execute(|| {
                        thread::sleep(Duration::from_millis(2));
                        true
                    });
                    // Email is sick: rejected or timed out calls become "send later".
                    let sent = manager
                        .pool("email")
                        .execute(|| thread::sleep(Duration::from_millis(200)));
                    if sent.is_err() {
                        emails_later.fetch_add(1, Ordering::Relaxed);
                    }
                    if cached.is_ok() && stock.is_ok() && matches!(charged, Ok(true)) {
                        orders.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().expect("caller thread panicked");
    }

    println!(
        "{} orders shipped in {:?} while email was sick; {} confirmations marked \"send later\"\n",
        orders.load(Ordering::Relaxed),
        started.elapsed(),
        emails_later.load(Ordering::Relaxed)
    );
    println!("{}", manager.stats());
    let clean = manager.shutdown(Duration::from_secs(5));
    println!("shut down cleanly: {clean}");
    Ok(())
}
