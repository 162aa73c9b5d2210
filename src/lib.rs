//! Bulkheads for blocking Rust.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod error;
mod manager;
mod pool;
mod semaphore;
mod stats;
mod sync;

pub use config::{PoolConfig, SemaphoreConfig};
pub use error::{BulkheadError, ConfigError, PanicPayload};
pub use manager::{BulkheadManager, BulkheadManagerBuilder};
pub use pool::{TaskHandle, ThreadPoolBulkhead};
pub use semaphore::{Permit, SemaphoreBulkhead};
pub use stats::{BulkheadStats, ManagerStats, PoolStats, SemaphoreStats};
