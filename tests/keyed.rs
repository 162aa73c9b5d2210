//! KeyedSemaphore: per-key and global limits under concurrency, the key cap, idle eviction
//! on a ManualClock (never of a busy key), bad keys, stats.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use bulkheads::{KeyedConfig, KeyedPermit, KeyedSemaphore, ManualClock, SemaphoreConfig};

fn keyed(limit: usize) -> KeyedSemaphore {
    KeyedSemaphore::new("tenants", KeyedConfig::new(SemaphoreConfig::new(limit))).unwrap()
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send_static<T: Send + 'static>() {}
    send_sync::<KeyedSemaphore>();
    send_static::<KeyedPermit>();
};

#[test]
fn per_key_limit_holds_under_concurrency() {
    const THREADS: usize = 8;
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 2_000 };
    let keyed = keyed(2);
    let peaks: Vec<Arc<(AtomicUsize, AtomicUsize)>> = (0..2)
        .map(|_| Arc::new((AtomicUsize::new(0), AtomicUsize::new(0))))
        .collect();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let keyed = keyed.clone();
            let witness = Arc::clone(&peaks[t % 2]);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                let key = if t % 2 == 0 { "a" } else { "b" };
                let mut ok = 0;
                for _ in 0..ROUNDS {
                    if let Ok(()) = keyed.call(key, || {
                        let now = witness.0.fetch_add(1, Ordering::SeqCst) + 1;
                        witness.1.fetch_max(now, Ordering::SeqCst);
                        witness.0.fetch_sub(1, Ordering::SeqCst);
                    }) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    for p in &peaks {
        assert!(
            p.1.load(Ordering::SeqCst) <= 2,
            "a key ran more than its limit"
        );
    }
    let stats = keyed.stats();
    assert_eq!(stats.permitted, ok as u64);
    assert_eq!(stats.permitted + stats.rejected, (THREADS * ROUNDS) as u64);
    assert_eq!(stats.running, 0);
    assert_eq!(stats.keys, 2);
}

#[test]
fn global_limit_holds_over_all_keys() {
    const THREADS: usize = 8;
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 1_000 };
    let config = KeyedConfig::new(SemaphoreConfig::new(3)).global_limit(4);
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (keyed, now, peak, barrier) = (
                keyed.clone(),
                Arc::clone(&now),
                Arc::clone(&peak),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                let key = format!("k{}", t % 4);
                for _ in 0..ROUNDS {
                    let _ = keyed.call(&key, || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        now.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 4);
    assert_eq!(keyed.global_stats().unwrap().running, 0);
    let stats = keyed.stats();
    assert_eq!(stats.permitted + stats.rejected, (THREADS * ROUNDS) as u64);
    assert_eq!(stats.permitted, keyed.global_stats().unwrap().permitted);
}

#[test]
fn global_limit_refusal_gives_back_the_key_permit() {
    let config = KeyedConfig::new(SemaphoreConfig::new(5)).global_limit(1);
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let held = keyed.try_acquire("a").unwrap();
    let err = keyed.try_acquire("b").unwrap_err();
    assert!(err.is_rejected());
    assert_eq!(err.bulkhead(), "t/*");
    assert_eq!(keyed.key_stats("b").unwrap().running, 0);
    drop(held);
    assert!(keyed.try_acquire("b").is_ok());
    let stats = keyed.stats();
    assert_eq!(
        (stats.permitted, stats.rejected),
        (2, 1),
        "3 attempts: 2 in, 1 out"
    );
}

#[test]
fn aggregate_counters_survive_eviction() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .idle_ttl(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    {
        let _a = keyed.try_acquire("a").unwrap();
        assert!(keyed.try_acquire("a").is_err());
    }
    keyed.call("b", || ()).unwrap();
    let before = keyed.stats();
    assert_eq!((before.permitted, before.rejected), (2, 1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(keyed.evict_idle(), 2);
    let after = keyed.stats();
    assert_eq!((after.keys, after.permitted, after.rejected), (0, 2, 1));
}

#[test]
fn limit_for_gives_tiers() {
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .limit_for(|k| if k.starts_with("gold-") { 3 } else { 1 });
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let gold: Vec<_> = (0..3)
        .map(|_| keyed.try_acquire("gold-1").unwrap())
        .collect();
    assert!(keyed.try_acquire("gold-1").is_err());
    let _basic = keyed.try_acquire("basic-1").unwrap();
    assert!(keyed.try_acquire("basic-1").is_err());
    assert_eq!(keyed.key_stats("gold-1").unwrap().max_concurrent, 3);
    drop(gold);
}

#[test]
fn new_key_past_max_keys_is_refused_and_existing_keys_are_untouched() {
    let keyed =
        KeyedSemaphore::new("t", KeyedConfig::new(SemaphoreConfig::new(1)).max_keys(2)).unwrap();
    let a = keyed.try_acquire("a").unwrap();
    keyed.call("b", || ()).unwrap();
    let err = keyed.try_acquire("c").unwrap_err();
    assert!(err.is_config());
    assert_eq!(err.config_error().unwrap().field(), "max_keys");
    assert_eq!(err.bulkhead(), "t/c");
    // a still holds its count: its compartment is full.
    assert!(keyed.try_acquire("a").unwrap_err().is_rejected());
    assert!(keyed.try_acquire("b").is_ok());
    assert_eq!(keyed.len(), 2);
    assert_eq!(keyed.stats().keys_refused, 1);
    // At the cap, a bad key is still named as a bad key.
    let bad = keyed.try_acquire("").unwrap_err();
    assert_eq!(bad.config_error().unwrap().field(), "key");
    drop(a);
}

#[test]
fn a_flood_of_distinct_keys_never_grows_past_max_keys() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .max_keys(50)
        .idle_ttl(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..5_000 {
        match keyed.call(&format!("tenant-{i}"), || ()) {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(e.config_error().unwrap().field(), "max_keys");
                refused += 1;
            }
        }
        assert!(keyed.len() <= 50);
        if i % 1_000 == 999 {
            // Time passes: the idle keys make room for new ones.
            clock.advance(Duration::from_secs(1));
        }
    }
    assert_eq!(ok, 250, "50 keys per second, five seconds");
    assert_eq!(refused, 4_750);
    assert_eq!(keyed.stats().evicted, 200);
}

#[test]
fn idle_keys_are_evicted_after_the_ttl_but_never_a_busy_one() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .idle_ttl(Duration::from_secs(30))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    keyed.call("idle", || ()).unwrap();
    let busy = keyed.try_acquire("busy").unwrap();
    clock.advance(Duration::from_secs(29));
    assert_eq!(keyed.evict_idle(), 0, "not yet idle for the ttl");
    clock.advance(Duration::from_secs(1));
    assert_eq!(keyed.evict_idle(), 1);
    assert!(keyed.key_stats("idle").is_none());
    // Far past the ttl, the busy key stays, with its count: eviction never resets it.
    clock.advance(Duration::from_secs(3_600));
    assert_eq!(keyed.evict_idle(), 0);
    assert!(keyed.try_acquire("busy").unwrap_err().is_rejected());
    drop(busy);
    // Released just now: idle from now, not from when it was acquired.
    assert_eq!(keyed.evict_idle(), 0);
    clock.advance(Duration::from_secs(30));
    assert_eq!(keyed.evict_idle(), 1);
    assert!(keyed.is_empty());
}

#[test]
fn a_busy_key_survives_eviction_under_concurrent_callers() {
    const THREADS: usize = 5;
    const ROUNDS: usize = if cfg!(miri) { 10 } else { 5_000 };
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .idle_ttl(Duration::from_nanos(1))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (keyed, clock, inside, peak) = (
                keyed.clone(),
                clock.clone(),
                Arc::clone(&inside),
                Arc::clone(&peak),
            );
            thread::spawn(move || {
                for _ in 0..ROUNDS {
                    if t == 0 {
                        clock.advance(Duration::from_nanos(10));
                        keyed.evict_idle();
                    } else if t % 2 == 0 {
                        let _ = keyed.call("hot", || {
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                        });
                    } else if let Ok(permit) = keyed.try_acquire("hot") {
                        // Owned permits too: the permit must be back before the key counts
                        // as idle, or an evictor could make a second compartment for it.
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Had eviction replaced the key while a call was inside, a second compartment would
    // have let two calls in at once.
    assert_eq!(peak.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_keys_and_bad_config_are_clear_errors() {
    let keyed = keyed(1);
    let empty = keyed.try_acquire("").unwrap_err();
    assert_eq!(empty.config_error().unwrap().field(), "key");
    let nul = keyed.call("a\0b", || ()).unwrap_err();
    assert_eq!(nul.config_error().unwrap().field(), "key");
    assert!(nul.to_string().contains("NUL"), "{nul}");
    assert!(keyed.is_empty());

    let zero = KeyedSemaphore::new(
        "t",
        KeyedConfig::new(SemaphoreConfig::new(1)).limit_for(|_| 0),
    )
    .unwrap();
    assert_eq!(
        zero.try_acquire("x")
            .unwrap_err()
            .config_error()
            .unwrap()
            .field(),
        "limit_for"
    );

    let cfg = || KeyedConfig::new(SemaphoreConfig::new(1));
    for (config, field) in [
        (cfg().max_keys(0), "max_keys"),
        (cfg().idle_ttl(Duration::ZERO), "idle_ttl"),
        (cfg().global_limit(0), "global_limit"),
        (KeyedConfig::new(SemaphoreConfig::new(0)), "max_concurrent"),
    ] {
        let err = KeyedSemaphore::new("t", config).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), ("t", field));
    }
    assert_eq!(KeyedSemaphore::new("", cfg()).unwrap_err().field(), "name");
}

#[test]
fn call_waits_the_configured_max_wait_for_its_key() {
    let config = KeyedConfig::new(SemaphoreConfig::new(1).max_wait(Duration::from_secs(30)));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let held = keyed.try_acquire("a").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let keyed = keyed.clone();
        thread::spawn(move || tx.send(keyed.call("a", || 5)).unwrap())
    };
    common::wait_until(Duration::from_secs(10), "the caller waits", || {
        keyed.key_stats("a").unwrap().waiting == 1
    });
    drop(held);
    assert_eq!(rx.recv().unwrap().unwrap(), 5);
    waiter.join().unwrap();
}

#[test]
fn top_rejected_ranks_keys_and_stats_add_up() {
    let keyed = keyed(1);
    let _a = keyed.try_acquire("a").unwrap();
    let _b = keyed.try_acquire("b").unwrap();
    for _ in 0..3 {
        assert!(keyed.try_acquire("a").is_err());
    }
    assert!(keyed.try_acquire("b").is_err());
    keyed.call("c", || ()).unwrap();
    assert_eq!(
        keyed.top_rejected(10),
        vec![("a".to_string(), 3), ("b".to_string(), 1)]
    );
    let stats = keyed.stats();
    assert_eq!((stats.rejected, stats.permitted, stats.running), (4, 3, 2));
}

#[test]
fn a_panic_in_call_gives_the_permit_back_and_keeps_the_books() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .idle_ttl(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        keyed.call("a", || panic!("tenant code failed"))
    }));
    assert!(caught.is_err());
    assert_eq!(keyed.key_stats("a").unwrap().running, 0);
    assert!(keyed.try_acquire("a").is_ok());
    clock.advance(Duration::from_secs(1));
    assert_eq!(keyed.evict_idle(), 1, "nothing left counted in flight");
}

#[test]
fn at_the_cap_new_keys_sweep_at_most_once_per_eighth_of_the_ttl() {
    // A flood of new keys at the cap must not scan every key under the write lock each
    // time: at most one sweep per idle_ttl / 8 (here 1 s).
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .max_keys(1)
        .idle_ttl(Duration::from_secs(8))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let ms = Duration::from_millis;
    keyed.call("a", || ()).unwrap(); // t = 0
    clock.advance(ms(7_000));
    assert!(
        keyed.try_acquire("b").is_err(),
        "swept at 7 s: a idle only 7 s"
    );
    clock.advance(ms(1_500));
    keyed.call("b", || ()).unwrap(); // t = 8.5 s: swept, a evicted
    assert_eq!(keyed.stats().evicted, 1);
    clock.advance(ms(7_900));
    assert!(
        keyed.try_acquire("c").is_err(),
        "swept at 16.4 s: b idle only 7.9 s"
    );
    clock.advance(ms(200));
    // b has now been idle 8.1 s, but the last sweep was 0.2 s ago: refused, no scan.
    assert!(keyed.try_acquire("d").is_err());
    assert_eq!(keyed.stats().evicted, 1);
    clock.advance(ms(800));
    assert!(
        keyed.try_acquire("d").is_ok(),
        "a sweep is due again: b goes"
    );
    assert_eq!(keyed.stats().evicted, 2);
}

#[test]
fn prometheus_text_is_valid_and_bounded_to_the_top_n_keys() {
    let keyed = keyed(1);
    let held: Vec<_> = (0..20)
        .map(|i| keyed.try_acquire(&format!("tenant-\"{i}\"")).unwrap())
        .collect();
    for i in 0..20 {
        for _ in 0..=i {
            assert!(keyed.try_acquire(&format!("tenant-\"{i}\"")).is_err());
        }
    }
    let text = keyed.to_prometheus(3);
    let exposition = common::exposition::parse(&text);
    let top: Vec<_> = exposition
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with("bulkhead_keyed_top_rejected{"))
        .collect();
    assert_eq!(top.len(), 3, "{text}");
    assert_eq!(
        exposition.samples[r#"bulkhead_keyed_top_rejected{bulkhead="tenants",key="tenant-\"19\""}"#],
        20.0,
        "{text}"
    );
    assert_eq!(
        exposition.samples[r#"bulkhead_keyed_calls_total{bulkhead="tenants",outcome="rejected"}"#],
        210.0
    );
    assert_eq!(
        exposition.samples[r#"bulkhead_keyed_keys{bulkhead="tenants"}"#],
        20.0
    );
    drop(held);
}

// The thread's cache of its last keys: never a stale compartment, never another registry's.

#[test]
fn a_key_evicted_while_this_thread_caches_it_starts_afresh() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(1))
        .idle_ttl(Duration::from_secs(10))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    for _ in 0..3 {
        keyed.call("a", || ()).unwrap(); // cached by this thread from the first call
    }
    assert_eq!(keyed.key_stats("a").unwrap().permitted, 3);
    clock.advance(Duration::from_secs(10));
    assert_eq!(keyed.evict_idle(), 1);
    // Had the call used the evicted compartment this thread still caches, the registry
    // would hold no key and the counts would go on from 3.
    keyed.call("a", || ()).unwrap();
    assert_eq!(keyed.len(), 1);
    assert_eq!(keyed.key_stats("a").unwrap().permitted, 1);
    let held = keyed.try_acquire("a").unwrap();
    assert!(
        keyed.call("a", || ()).unwrap_err().is_rejected(),
        "one compartment"
    );
    drop(held);
    let s = keyed.stats();
    assert_eq!((s.evicted, s.permitted, s.rejected), (1, 5, 1));
}

#[test]
fn registries_never_share_a_cached_key() {
    let one = keyed(1);
    let two = keyed(1);
    one.call("a", || ()).unwrap();
    let held = one.try_acquire("a").unwrap();
    // Same key, same thread, another registry: its own compartment.
    two.call("a", || ()).unwrap();
    assert_eq!(two.key_stats("a").unwrap().permitted, 1);
    drop(held);
    // A registry dropped and another made (perhaps at the same address): a fresh key.
    drop(one);
    let three = keyed(1);
    three.call("a", || ()).unwrap();
    assert_eq!(three.key_stats("a").unwrap().permitted, 1);
    assert_eq!(three.len(), 1);
}

#[test]
fn a_call_inside_a_call_on_the_same_key_takes_a_second_permit() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(2))
        .idle_ttl(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config).unwrap();
    let inner = keyed
        .call("a", || {
            let running = keyed.stats().running;
            let (nested, third) = keyed
                .call("a", || (keyed.stats().running, keyed.call("a", || ())))
                .unwrap();
            (running, nested, third.unwrap_err().is_rejected())
        })
        .unwrap();
    assert_eq!(inner, (1, 2, true));
    // Every one of the three calls booked its end: the key is idle and goes.
    clock.advance(Duration::from_secs(1));
    assert_eq!(keyed.evict_idle(), 1);
}

#[test]
fn the_cache_holds_a_few_keys_per_thread_and_any_key_still_works() {
    let keyed = keyed(1);
    // More keys in turn than the cache holds: each call on a key not cached finds it in
    // the registry; the books are the same either way.
    for round in 0..5 {
        for k in 0..10 {
            keyed.call(&format!("k{k}"), || ()).unwrap();
            assert_eq!(
                keyed.key_stats(&format!("k{k}")).unwrap().permitted,
                round + 1
            );
        }
    }
    assert_eq!(keyed.len(), 10);
    assert_eq!(keyed.stats().permitted, 50);
}

// Calls run as the key's semaphore runs them: the current deadline and an adaptive limit.

#[test]
fn call_inside_a_pool_task_waits_no_longer_than_its_deadline() {
    use bulkheads::{PoolConfig, ThreadPoolBulkhead};
    use std::time::Instant;
    let keyed = KeyedSemaphore::new(
        "t",
        KeyedConfig::new(SemaphoreConfig::new(1).max_wait(Duration::from_secs(30))),
    )
    .unwrap();
    let held = keyed.try_acquire("a").unwrap();
    let pool = ThreadPoolBulkhead::new("p", PoolConfig::new(1)).unwrap();
    let k = keyed.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // The task's wait ends at its deadline, the instant its caller gives up too: the caller
    // may get the task's value or `Timeout`, so the task reports through a channel.
    let _ = pool.execute_timeout(Duration::from_millis(200), move || {
        let start = Instant::now();
        let r = k.call("a", || ());
        let _ = tx.send((start.elapsed(), r.is_err_and(|e| e.is_rejected())));
    });
    let (waited, refused) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the keyed call returned");
    assert!(refused);
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?} of max_wait 30 s"
    );
    drop(held);
}

#[test]
fn a_per_key_adaptive_limit_is_fed_by_keyed_calls() {
    use bulkheads::limit::{self, Aimd};
    let keyed = KeyedSemaphore::new(
        "t",
        KeyedConfig::new(SemaphoreConfig::new(16))
            .adaptive(|_: &str| Aimd::new().initial_limit(10).min_limit(2)),
    )
    .unwrap();
    for _ in 0..3 {
        keyed.call("a", limit::report_overload).unwrap();
    }
    // 10 → 9 → 8 → 7 for the key that reported overload; the other key keeps its own.
    assert_eq!(keyed.key_stats("a").unwrap().limit, 7);
    keyed.call("b", || ()).unwrap();
    assert_eq!(keyed.key_stats("b").unwrap().limit, 10);
}

#[test]
fn a_shared_adaptive_config_and_a_bad_per_key_algorithm_are_clear_errors() {
    use bulkheads::limit::Aimd;
    let shared = KeyedConfig::new(SemaphoreConfig::new(16).adaptive(Aimd::new().initial_limit(4)));
    let err = KeyedSemaphore::new("tenants", shared).unwrap_err();
    assert_eq!((err.bulkhead(), err.field()), ("tenants", "adaptive"));
    // An algorithm the factory makes wrong is refused for that key, naming it.
    let keyed = KeyedSemaphore::new(
        "tenants",
        KeyedConfig::new(SemaphoreConfig::new(16)).adaptive(|tenant: &str| {
            let initial = if tenant == "bad" { 0 } else { 4 };
            Aimd::new().initial_limit(initial).min_limit(1)
        }),
    )
    .unwrap();
    let err = keyed.call("bad", || ()).unwrap_err();
    assert!(err.to_string().contains("tenants/bad"), "{err}");
    assert!(keyed.call("good", || ()).is_ok());
    assert_eq!(keyed.len(), 1);
}

// reconfigure: every held key at once, new keys from the new config, errors change nothing.

#[test]
fn reconfigure_raises_and_lowers_every_held_key_at_once() {
    let keyed = keyed(2);
    let a: Vec<_> = (0..2).map(|_| keyed.try_acquire("a").unwrap()).collect();
    keyed.call("b", || ()).unwrap();
    keyed
        .reconfigure(KeyedConfig::new(SemaphoreConfig::new(3)))
        .unwrap();
    let third = keyed
        .try_acquire("a")
        .expect("raised while held: free at once");
    assert_eq!(keyed.key_stats("b").unwrap().max_concurrent, 3);
    // Lowered below what "a" holds: nothing is taken back, nothing more is granted.
    keyed
        .reconfigure(KeyedConfig::new(SemaphoreConfig::new(1)))
        .unwrap();
    assert_eq!(keyed.key_stats("a").unwrap().running, 3);
    drop(third);
    drop(a);
    let one = keyed.try_acquire("a").unwrap();
    assert!(
        keyed.try_acquire("a").unwrap_err().is_rejected(),
        "limit 1 now"
    );
    drop(one);
    // A new key is made from the new configuration.
    keyed.call("c", || ()).unwrap();
    assert_eq!(keyed.key_stats("c").unwrap().max_concurrent, 1);
    assert_eq!(
        keyed.config().max_keys_value(),
        KeyedConfig::DEFAULT_MAX_KEYS
    );
}

#[test]
fn reconfigure_applies_new_tiers_and_global_limit_and_keeps_learnt_limits() {
    use bulkheads::limit::{self, Aimd};
    let config = KeyedConfig::new(SemaphoreConfig::new(4))
        .global_limit(8)
        .adaptive(|_: &str| Aimd::new().initial_limit(4).min_limit(1));
    let keyed = KeyedSemaphore::new("t", config.clone()).unwrap();
    keyed.call("gold-1", limit::report_overload).unwrap(); // learnt: 4 → 3
    keyed.call("free-1", || ()).unwrap();
    keyed
        .reconfigure(
            config
                .limit_for(|t: &str| if t.starts_with("gold-") { 16 } else { 2 })
                .global_limit(3),
        )
        .unwrap();
    let gold = keyed.key_stats("gold-1").unwrap();
    assert_eq!(
        (gold.max_concurrent, gold.limit),
        (16, 3),
        "new ceiling, learnt limit"
    );
    assert_eq!(keyed.key_stats("free-1").unwrap().max_concurrent, 2);
    assert_eq!(keyed.global_stats().unwrap().max_concurrent, 3);
    let held: Vec<_> = (0..3)
        .map(|i| keyed.try_acquire(&format!("k{i}")).unwrap())
        .collect();
    assert!(
        keyed.try_acquire("k9").unwrap_err().is_rejected(),
        "3 over all keys"
    );
    drop(held);
}

#[test]
fn a_refused_reconfigure_changes_nothing_and_names_the_field() {
    let clock = ManualClock::new();
    let config = KeyedConfig::new(SemaphoreConfig::new(2)).clock(Arc::new(clock.clone()));
    let keyed = KeyedSemaphore::new("t", config.clone()).unwrap();
    keyed.call("a", || ()).unwrap();
    keyed.call("b", || ()).unwrap();
    let cases: Vec<(KeyedConfig, &str, &str)> = vec![
        (config.clone().max_keys(0), "t", "max_keys"),
        (config.clone().global_limit(4), "t", "global_limit"),
        (
            config
                .clone()
                .limit_for(|k: &str| if k == "b" { 0 } else { 5 }),
            "t",
            "limit_for",
        ),
    ];
    for (bad, bulkhead, field) in cases {
        let err = keyed.reconfigure(bad).unwrap_err();
        assert_eq!((err.bulkhead(), err.field()), (bulkhead, field), "{err}");
        // Nothing changed, not even the keys before the bad one.
        assert_eq!(keyed.key_stats("a").unwrap().max_concurrent, 2);
        assert_eq!(keyed.key_stats("b").unwrap().max_concurrent, 2);
    }
    // Another clock is not used: idle times stay on the one the keyed semaphore has.
    keyed
        .reconfigure(config.max_keys(5).clock(Arc::new(ManualClock::new())))
        .unwrap();
    assert_eq!(keyed.config().max_keys_value(), 5);
    clock.advance(Duration::from_secs(300));
    assert_eq!(
        keyed.evict_idle(),
        2,
        "idle for 300 s on the original clock"
    );
}

#[test]
fn a_key_made_while_reconfigure_runs_is_made_from_the_new_config() {
    use std::sync::Mutex;
    use std::sync::mpsc;
    // The old config's `limit_for` holds the maker of key "x" (between reading the config
    // and inserting the key) until the reconfigure has run.
    let (inside_tx, inside) = mpsc::channel::<()>();
    let (go, go_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(Some((inside_tx, go_rx)));
    let old = KeyedConfig::new(SemaphoreConfig::new(1)).limit_for(move |_: &str| {
        if let Some((inside, go)) = gate.lock().unwrap().take() {
            inside.send(()).unwrap();
            go.recv_timeout(Duration::from_secs(60)).unwrap();
        }
        1
    });
    let keyed = KeyedSemaphore::new("t", old).unwrap();
    let maker = {
        let keyed = keyed.clone();
        thread::spawn(move || keyed.call("x", || ()).unwrap())
    };
    inside.recv_timeout(Duration::from_secs(60)).unwrap();
    keyed
        .reconfigure(KeyedConfig::new(SemaphoreConfig::new(1)).limit_for(|_: &str| 7))
        .unwrap();
    go.send(()).unwrap();
    maker.join().unwrap();
    // Made from the old config and inserted after the reconfigure looked at the held
    // keys, it would have kept the old limit of 1.
    assert_eq!(keyed.key_stats("x").unwrap().max_concurrent, 7);
}

/// Many callers over more keys than the cap (and than a thread's cache holds), permits owned
/// and borrowed, while a thread moves the clock past the ttl and evicts whatever is idle —
/// keys the callers' caches still hold among them — and reconfigures the cap and the ttl:
/// no key ever runs more than its limit, the global limit holds, the registry never passes
/// its cap, and the books match what callers saw (a call through an evicted compartment
/// would be lost from them).
#[test]
fn keyed_holds_its_limits_and_books_under_churn() {
    use common::Rng;
    use std::sync::atomic::AtomicBool;
    const CALLERS: usize = 6;
    const KEYS: usize = 10;
    const CALLS: usize = if cfg!(miri) { 50 } else { 6_000 };
    const GLOBAL: usize = 6;
    fn limit(i: usize) -> usize {
        i % 3 + 1
    }
    let clock = ManualClock::new();
    let config_clock = clock.clone();
    let config = move |max_keys: usize, ttl_us: u64| {
        KeyedConfig::new(SemaphoreConfig::new(1))
            .clock(Arc::new(config_clock.clone()))
            .limit_for(move |k: &str| limit(k[1..].parse::<usize>().unwrap()))
            .global_limit(GLOBAL)
            .max_keys(max_keys)
            .idle_ttl(Duration::from_micros(ttl_us))
    };
    let keyed = KeyedSemaphore::new("churn", config(8, 1_000)).unwrap();
    let inside: Arc<Vec<AtomicUsize>> = Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect());
    let total = Arc::new(AtomicUsize::new(0));
    let over = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|t| {
            let (keyed, inside, total, over) = (
                keyed.clone(),
                Arc::clone(&inside),
                Arc::clone(&total),
                Arc::clone(&over),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(t as u64);
                let (mut ok, mut rejected, mut refused) = (0_u64, 0_u64, 0_u64);
                for _ in 0..CALLS {
                    let i = rng.below(KEYS as u64) as usize;
                    let key = format!("k{i}");
                    let body = || {
                        let n = inside[i].fetch_add(1, Ordering::SeqCst) + 1;
                        let all = total.fetch_add(1, Ordering::SeqCst) + 1;
                        if n > limit(i) || all > GLOBAL {
                            over.fetch_add(1, Ordering::SeqCst);
                        }
                        thread::yield_now();
                        total.fetch_sub(1, Ordering::SeqCst);
                        inside[i].fetch_sub(1, Ordering::SeqCst);
                    };
                    let outcome = if rng.below(2) == 0 {
                        keyed.call(&key, body)
                    } else {
                        keyed.try_acquire(&key).map(|permit| {
                            body();
                            drop(permit);
                        })
                    };
                    match outcome {
                        Ok(()) => ok += 1,
                        Err(e) if e.is_rejected() => rejected += 1,
                        Err(_) => refused += 1, // a new key past the cap
                    }
                }
                (ok, rejected, refused)
            })
        })
        .collect();
    let changer = {
        let (keyed, done, clock) = (keyed.clone(), Arc::clone(&done), clock.clone());
        thread::spawn(move || {
            let mut flips = 0_u64;
            let mut peak = 0;
            // At least one round, however the threads are scheduled.
            loop {
                let (cap, ttl) = if flips % 2 == 0 {
                    (6, 2_000)
                } else {
                    (8, 1_000)
                };
                keyed.reconfigure(config(cap, ttl)).unwrap();
                clock.advance(Duration::from_micros(2_000));
                keyed.evict_idle();
                peak = peak.max(keyed.len());
                flips += 1;
                if done.load(Ordering::SeqCst) {
                    break (flips, peak);
                }
                thread::yield_now();
            }
        })
    };
    let (mut ok, mut rejected, mut refused) = (0, 0, 0);
    for h in callers {
        let (o, r, f) = h.join().unwrap();
        (ok, rejected, refused) = (ok + o, rejected + r, refused + f);
    }
    done.store(true, Ordering::SeqCst);
    let (flips, peak) = changer.join().unwrap();
    assert_eq!(
        over.load(Ordering::SeqCst),
        0,
        "a key's or the global limit was passed"
    );
    assert!(peak <= 8, "the registry passed its cap: {peak}");
    assert!(
        flips > 0 && ok > 0 && rejected + refused > 0,
        "{flips} {ok} {rejected} {refused}"
    );
    assert!(keyed.stats().evicted > 0, "nothing was evicted");
    let s = keyed.stats();
    assert_eq!(s.running, 0);
    assert_eq!((s.permitted, s.rejected), (ok, rejected), "{s:?}");
    assert_eq!(s.keys_refused, refused);
    assert_eq!(ok + rejected + refused, (CALLERS * CALLS) as u64);
    // Every gate is back at zero: all keys go once idle.
    clock.advance(Duration::from_secs(1));
    keyed.evict_idle();
    assert!(keyed.is_empty(), "a gate was left above zero");
    assert_eq!(keyed.stats().permitted, ok, "evicted keys' counts are kept");
}

#[test]
fn per_key_metrics_put_a_row_per_key_in_the_snapshot_and_the_text_only_when_asked() {
    use bulkheads::BulkheadManager;
    let manager = BulkheadManager::builder()
        .keyed(
            "partners",
            KeyedConfig::new(SemaphoreConfig::new(2))
                .limit_for(|k: &str| if k == "big" { 5 } else { 2 })
                .per_key_metrics(true),
        )
        .keyed("tenants", KeyedConfig::new(SemaphoreConfig::new(1)))
        .build()
        .unwrap();
    let partners = manager.keyed("partners").unwrap();
    let tenants = manager.keyed("tenants").unwrap();
    let held = partners.try_acquire("big").unwrap();
    partners.call("small \"quoted\"", || ()).unwrap();
    let t = tenants.try_acquire("acme").unwrap();
    assert!(tenants.try_acquire("acme").is_err());
    let stats = manager.stats();
    let rows = &stats
        .keyed
        .iter()
        .find(|k| k.name == "partners")
        .unwrap()
        .per_key;
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.key.as_str(), r.limit, r.running, r.permitted))
        .collect();
    assert_eq!(got, [("big", 5, 1, 1), ("small \"quoted\"", 2, 0, 1)]);
    assert!(
        stats
            .keyed
            .iter()
            .find(|k| k.name == "tenants")
            .unwrap()
            .per_key
            .is_empty()
    );
    let text = stats.to_prometheus();
    let exposition = common::exposition::parse(&text);
    let per_key: Vec<_> = exposition
        .samples
        .keys()
        .filter(|k| k.starts_with("bulkhead_keyed_key_"))
        .collect();
    // 2 keys × (running, limit, permitted, rejected); none for the tenants.
    assert_eq!(per_key.len(), 8, "{per_key:?}");
    assert!(per_key.iter().all(|k| k.contains("bulkhead=\"partners\"")));
    assert_eq!(
        exposition.samples[r#"bulkhead_keyed_key_running{bulkhead="partners",key="big"}"#],
        1.0
    );
    assert_eq!(
        exposition.samples[r#"bulkhead_keyed_key_calls_total{bulkhead="partners",key="small \"quoted\"",outcome="permitted"}"#],
        1.0
    );
    drop((held, t));
}

/// An evicted key's user code (here an adaptive algorithm whose `Drop` looks at the keyed
/// semaphore) is dropped with no lock of the registry held: under the write lock its read
/// would deadlock.
#[test]
fn user_code_of_evicted_keys_is_dropped_with_no_lock_held() {
    use bulkheads::limit::{LimitAlgorithm, Sample};
    use std::sync::{Mutex, OnceLock, mpsc};
    struct Peeks(Arc<OnceLock<KeyedSemaphore>>, mpsc::Sender<usize>);
    impl LimitAlgorithm for Peeks {
        fn limit(&self) -> usize {
            2
        }
        fn update(&mut self, _: Sample) -> usize {
            2
        }
    }
    impl Drop for Peeks {
        fn drop(&mut self) {
            if let Some(keyed) = self.0.get() {
                let _ = self.1.send(keyed.len()); // the registry's read lock
            }
        }
    }
    let clock = ManualClock::new();
    let shared: Arc<OnceLock<KeyedSemaphore>> = Arc::new(OnceLock::new());
    let (tx, dropped) = mpsc::channel();
    let make = {
        let (shared, tx) = (Arc::clone(&shared), Mutex::new(tx));
        move |_: &str| Peeks(Arc::clone(&shared), tx.lock().unwrap().clone())
    };
    let config = KeyedConfig::new(SemaphoreConfig::new(2))
        .idle_ttl(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()))
        .adaptive(make);
    let keyed = KeyedSemaphore::new("t", config.clone()).unwrap();
    assert!(shared.set(keyed.clone()).is_ok());
    // Called from a thread that ends, so that no thread's cache still holds the keys.
    let caller = keyed.clone();
    thread::spawn(move || {
        caller.call("a", || ()).unwrap();
        caller.call("b", || ()).unwrap();
    })
    .join()
    .unwrap();
    // Evict on another thread, so that a deadlock fails the test instead of hanging it.
    let evictor = {
        let (keyed, clock) = (keyed.clone(), clock.clone());
        thread::spawn(move || {
            clock.advance(Duration::from_secs(1));
            keyed.evict_idle()
        })
    };
    let seen: Vec<usize> = (0..2)
        .map(|_| {
            dropped
                .recv_timeout(Duration::from_secs(30))
                .expect("dropped, no deadlock")
        })
        .collect();
    assert_eq!(seen, [0, 0], "read after both keys left the registry");
    assert_eq!(evictor.join().unwrap(), 2);
}
