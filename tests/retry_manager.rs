//! Retries held by a manager: their events reach the manager's listeners, and their
//! counters its stats table and Prometheus text (the defensive-stack issue: "events for
//! every layer reach the manager's listeners and the Prometheus text").

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkheads::clock::ManualClock;
use bulkheads::{
    Backoff, BulkheadManager, EventKind, Policy, PolicyError, PoolConfig, Retry, RetryBudget,
    ThreadPoolBulkhead,
};

mod common;
use common::exposition;

fn manager() -> BulkheadManager {
    BulkheadManager::builder()
        .retry(
            "email",
            Retry::new(3)
                .backoff(Backoff::fixed(Duration::from_millis(10)))
                .clock(Arc::new(ManualClock::new())),
        )
        .build()
        .unwrap()
}

#[test]
fn a_policy_given_the_managers_retry_reports_through_the_manager() {
    let manager = manager();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    manager.on_event(move |e| {
        if matches!(e.kind, EventKind::RetryScheduled { .. }) {
            seen.lock().unwrap().push(e.to_string());
        }
    });
    let policy: Policy<u32, &str> = Policy::builder("email-policy")
        .pool(ThreadPoolBulkhead::new("email", PoolConfig::new(1)).unwrap())
        .retry(manager.retry("email").expect("configured"))
        .build()
        .unwrap();
    let err = policy.call(|| Err("smtp 451")).unwrap_err();
    assert!(matches!(err, PolicyError::Inner("smtp 451")), "{err:?}");
    // Two retries, each announced to the manager's listener under the retry's own name.
    assert_eq!(
        *events.lock().unwrap(),
        ["email: attempt 2 after 10ms", "email: attempt 3 after 10ms"]
    );

    let stats = manager.stats();
    assert_eq!(stats.retries.len(), 1);
    let m = stats.retries[0].metrics;
    assert_eq!((m.failed_with_retry, m.retries), (1, 2));
    let table = stats.to_string();
    assert!(table.contains("retry"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("email")), "{table}");

    let text = stats.to_prometheus();
    let parsed = exposition::parse(&text);
    let labels = "{bulkhead=\"email\",kind=\"retry\"}";
    assert_eq!(
        parsed.samples[&format!("bulkhead_retry_attempts_total{labels}")],
        2.0
    );
    assert_eq!(
        parsed.samples[&format!("bulkhead_retry_throttled_total{labels}")],
        0.0
    );
    assert_eq!(
        parsed.samples["bulkhead_retry_calls_total{bulkhead=\"email\",kind=\"retry\",outcome=\"failed_with_retry\"}"],
        1.0
    );
}

#[test]
fn a_throttled_retry_is_counted_and_announced() {
    let manager = BulkheadManager::builder()
        .retry(
            "search",
            Retry::new(5)
                .backoff(Backoff::fixed(Duration::from_millis(1)))
                .budget(RetryBudget::new(2.0, 0.1))
                .clock(Arc::new(ManualClock::new())),
        )
        .build()
        .unwrap();
    let throttled = Arc::new(Mutex::new(0));
    let seen = Arc::clone(&throttled);
    manager.on_event(move |e| {
        if e.kind == EventKind::RetryThrottled {
            *seen.lock().unwrap() += 1;
        }
    });
    let retry = manager.retry("search").unwrap();
    for _ in 0..3 {
        let _ = retry.call(|| Err::<(), _>(PolicyError::Inner("503")));
    }
    let m = manager.stats().retries[0].metrics;
    assert!(
        m.throttled > 0,
        "a budget of 2 tokens must refuse retries: {m:?}"
    );
    assert_eq!(*throttled.lock().unwrap() as u64, m.throttled);
}

#[test]
fn a_bad_or_repeated_retry_is_a_config_error_naming_it() {
    let err = BulkheadManager::builder()
        .retry("email", Retry::new(0))
        .build()
        .unwrap_err();
    assert_eq!(err.bulkhead(), "email");
    let err = BulkheadManager::builder()
        .retry("email", Retry::new(2))
        .retry("email", Retry::new(3))
        .build()
        .unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("email", "name"));
    assert!(manager().retry("sms").is_none());
}
