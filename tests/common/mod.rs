//! Helpers shared by the test files.

#![allow(dead_code)] // each test binary uses its own subset

use std::thread;
use std::time::{Duration, Instant};

/// Polls `cond` every millisecond until it holds; fails the test, saying what it waited
/// for, once `timeout` has passed. A bounded wait for a state to be reached — never a sleep
/// standing in for synchronisation.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}
