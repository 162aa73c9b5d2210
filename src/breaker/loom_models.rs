//! Loom models of the half-open places: the part of the breaker that is a protocol on one
//! atomic word rather than a lock. Run with
//! `RUSTFLAGS="--cfg bulkheads_loom" cargo test --lib --release --target-dir target/loom loom`.

use super::*;
use loom::thread;
use std::sync::Arc;

fn half_open(places: usize) -> Arc<CircuitBreaker> {
    let b = CircuitBreaker::new("model", CircuitBreakerConfig::new().half_open_calls(places))
        .expect("valid");
    b.transition_to(CircuitState::Open).expect("closed -> open");
    b.transition_to(CircuitState::HalfOpen)
        .expect("open -> half-open");
    Arc::new(b)
}

/// Two callers race for one probe place; the one that wins gives it back. Whatever the
/// interleaving, at most one holds it at a time, and the place is free at the end.
#[test]
fn two_callers_one_place() {
    loom::model(|| {
        let b = half_open(1);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = Arc::clone(&b);
                thread::spawn(move || b.try_acquire().map(CallPermit::ignore).is_ok())
            })
            .collect();
        let admitted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert!(admitted >= 1, "a free place refused both callers");
        let w = b.word.load(Ordering::Acquire);
        assert_eq!((state_of(w), places_of(w)), (CircuitState::HalfOpen, 1));
    });
}

/// A probe given back while another thread moves the breaker to open and half-open again:
/// the new half-open state has exactly its own places, never one more.
#[test]
fn a_late_release_cannot_add_a_place() {
    loom::model(|| {
        let b = half_open(1);
        let probe = b.try_acquire().expect("the one place");
        let mover = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                b.transition_to(CircuitState::Open).unwrap();
                b.transition_to(CircuitState::HalfOpen).unwrap();
            })
        };
        probe.ignore(); // gives the place back, to whichever generation is current
        mover.join().unwrap();
        let w = b.word.load(Ordering::Acquire);
        assert_eq!((state_of(w), places_of(w)), (CircuitState::HalfOpen, 1));
    });
}

/// The one probe succeeds (closing the breaker) while another caller asks to call: the
/// caller is refused (the place is taken) or admitted by the closed state, never by a second
/// half-open place, and the breaker ends closed having moved exactly once more.
#[test]
fn a_probe_closing_races_a_caller() {
    loom::model(|| {
        let b = half_open(1);
        let probe = b.try_acquire().expect("the one place");
        let caller = {
            let b = Arc::clone(&b);
            thread::spawn(move || match b.try_acquire() {
                Ok(permit) => {
                    let admitted_by = b.state();
                    permit.success();
                    Some(admitted_by)
                }
                Err(_) => None,
            })
        };
        probe.success();
        let admitted_by = caller.join().unwrap();
        assert!(matches!(admitted_by, None | Some(CircuitState::Closed)));
        let m = b.metrics();
        assert_eq!((m.state, m.transitions_total), (CircuitState::Closed, 3));
    });
}
