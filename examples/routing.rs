//! Routing: an HTTP client with a bulkhead per endpoint pattern.
//!
//! `cargo run --example routing`
//!
//! A client of the order service's downstreams sends every request through
//! `manager.pool_for(path)`: `/inventory/*` and `/payments/*` have pools of their own,
//! anything else shares the pool `"default"`. The payment provider hangs; its pool fills
//! and refuses at once, while inventory calls and the unrouted ones keep flowing. Paths
//! from outside never create pools: 1 000 distinct unrouted paths share one.

use std::sync::mpsc;
use std::time::Duration;

use bulkheads::{BulkheadManager, PoolConfig};

/// The fake downstream: answers at once, except the payment provider, which hangs until
/// `release` is dropped (a stand-in for a socket that never answers).
fn request(path: &str, hang: &crossbeam_channel::Receiver<()>) -> String {
    if path.starts_with("/payments/") {
        let _ = hang.recv();
        return format!("502 {path}");
    }
    format!("200 {path}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = BulkheadManager::builder()
        .pool("inventory", PoolConfig::new(4))
        .pool("payments", PoolConfig::new(2).queue_capacity(2))
        .default_pool_config(PoolConfig::new(2).queue_capacity(8))
        .route("/inventory/*", "inventory")
        .route("/payments/*", "payments")
        .build()?;
    let (release, hang) = crossbeam_channel::bounded::<()>(0);

    // The payment provider hangs: its 2 threads and queue of 2 fill up.
    let (done_tx, done_rx) = mpsc::channel();
    let mut refused = 0;
    for i in 0..10 {
        let path = format!("/payments/charge/{i}");
        let hang = hang.clone();
        let done = done_tx.clone();
        match manager
            .pool_for(&path)
            .submit(move || done.send(request(&path, &hang)))
        {
            Ok(handle) => drop(handle), // detached: the answer comes through `done`
            Err(e) => {
                assert!(e.is_rejected());
                refused += 1;
            }
        }
    }
    println!("payments: 10 calls, {refused} refused at once (pool of 2 + queue of 2 full)");
    assert_eq!(refused, 6);

    // Meanwhile the other endpoints answer.
    for i in 0..100 {
        let path = format!("/inventory/sku/{i}");
        let hang = hang.clone();
        let answer = manager
            .pool_for(&path)
            .execute_timeout(Duration::from_secs(5), move || request(&path, &hang))?;
        assert!(answer.starts_with("200"));
    }
    for i in 0..1_000 {
        let path = format!("/catalog/{i}");
        let hang = hang.clone();
        let answer = manager
            .pool_for(&path)
            .execute_timeout(Duration::from_secs(5), move || request(&path, &hang))?;
        assert!(answer.starts_with("200"));
    }
    println!("inventory: 100 of 100 answered; 1 000 unrouted paths answered by pool \"default\"");

    drop(release); // the provider comes back (with errors)
    for _ in 0..4 {
        assert!(done_rx.recv()?.starts_with("502"));
    }
    let stats = manager.stats();
    println!("{stats}");
    assert_eq!(
        stats.bulkheads.len(),
        3,
        "inventory, payments, default — no pool per path"
    );
    manager.shutdown(Duration::from_secs(5));
    Ok(())
}
